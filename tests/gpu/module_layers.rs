//! The library's top-level modules depend on each other one way: no module reaches, through
//! `crate::` paths, a module that reaches back to it. Read from the sources, no GPU.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in a test, a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `path` (or `path` itself), in a stable order.
fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    entries.into_iter().flat_map(|p| rust_files(&p)).collect()
}

/// The code of a file without its comment lines (doc links are not dependencies).
fn code_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers that follow `crate::` in `code`.
fn crate_paths(code: &str) -> Vec<String> {
    code.match_indices("crate::")
        .map(|(at, _)| {
            code[at + "crate::".len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
        })
        .collect()
}

/// The library's modules and the modules each one names through `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name != "lib" {
            modules.entry(name).or_default().extend(rust_files(&path));
        }
    }
    // Names the crate root re-exports (`crate::Error`) count as their module.
    let mut reexports: BTreeMap<String, String> = BTreeMap::new();
    let lib = code_of(&src.join("lib.rs"));
    for statement in lib.split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else { continue };
        let module = rest.split("::").next().unwrap().trim().to_owned();
        let names = rest.split_once("::").map_or("", |(_, names)| names);
        for name in names.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|n| !n.is_empty()) {
            reexports.insert(name.to_owned(), module.clone());
        }
    }
    modules
        .iter()
        .map(|(module, files)| {
            let used: BTreeSet<String> = files
                .iter()
                .flat_map(|file| crate_paths(&code_of(file)))
                .map(|name| reexports.get(&name).cloned().unwrap_or(name))
                .filter(|name| name != module && modules.contains_key(name))
                .collect();
            (module.clone(), used)
        })
        .collect()
}

/// A cycle through `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_modules_depend_one_way() {
    let graph = module_graph();
    for (module, used) in &graph {
        eprintln!("{module} -> {}", used.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    assert!(graph.len() >= 10, "found only {:?}", graph.keys());
    // The layers the library is built on, bottom first.
    for (lower, upper) in [("error", "plan"), ("plan", "context"), ("context", "timing"), ("timing", "ops")] {
        assert!(
            !graph[lower].contains(upper),
            "{lower} names {upper}, which sits above it: {:?}",
            graph[lower]
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let acyclic: BTreeMap<String, BTreeSet<String>> =
        [("a".to_owned(), BTreeSet::from(["b".to_owned()])), ("b".to_owned(), BTreeSet::new())].into();
    assert!(find_cycle(&acyclic).is_none());
}
