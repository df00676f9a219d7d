//! The one piece of templating WGSL lacks: keeping or dropping lines by flags set when a
//! module is composed. `#if NAME`, `#if !NAME`, `#else` and `#endif`, each alone on its
//! line, nest; every other line is kept or dropped as the conditions around it say.

/// The lines of `source` whose conditions hold for `flags`.
///
/// # Errors
///
/// A message naming the line of an unknown flag, an unmatched `#else` or `#endif`, or an
/// `#if` left open: a bug in the shader parts.
pub(crate) fn preprocess(source: &str, flags: &[(&str, bool)]) -> Result<String, String> {
    // Per open #if: whether its current branch is kept, given the enclosing ones.
    let mut open: Vec<(bool, bool)> = Vec::new(); // (enclosing kept, condition)
    let mut out = String::with_capacity(source.len());
    for (number, line) in source.lines().enumerate() {
        let trimmed = line.trim();
        let kept = open.last().is_none_or(|&(enclosing, condition)| enclosing && condition);
        if let Some(condition) = trimmed.strip_prefix("#if ") {
            let (negated, name) = match condition.trim().strip_prefix('!') {
                Some(name) => (true, name.trim()),
                None => (false, condition.trim()),
            };
            let value = flags
                .iter()
                .find(|(flag, _)| *flag == name)
                .map(|&(_, value)| value)
                .ok_or_else(|| format!("line {}: unknown flag {name}", number + 1))?;
            open.push((kept, value != negated));
        } else if trimmed == "#else" {
            let (enclosing, condition) =
                open.pop().ok_or_else(|| format!("line {}: #else without #if", number + 1))?;
            open.push((enclosing, !condition));
        } else if trimmed == "#endif" {
            open.pop().ok_or_else(|| format!("line {}: #endif without #if", number + 1))?;
        } else if kept {
            out.push_str(line);
            out.push('\n');
        }
    }
    if open.is_empty() { Ok(out) } else { Err(format!("{} #if left open", open.len())) }
}

#[cfg(test)]
mod tests {
    use super::preprocess;

    #[test]
    fn keeps_the_branches_whose_flags_hold() {
        let source = "a\n#if X\nb\n#if !Y\nc\n#else\nd\n#endif\n#else\ne\n#endif\nf\n";
        assert_eq!(preprocess(source, &[("X", true), ("Y", false)]).unwrap(), "a\nb\nc\nf\n");
        assert_eq!(preprocess(source, &[("X", true), ("Y", true)]).unwrap(), "a\nb\nd\nf\n");
        assert_eq!(preprocess(source, &[("X", false), ("Y", true)]).unwrap(), "a\ne\nf\n");
    }

    #[test]
    fn malformed_conditions_are_errors() {
        assert!(preprocess("#if Z\n#endif\n", &[]).unwrap_err().contains("unknown flag Z"));
        assert!(preprocess("#endif\n", &[]).is_err());
        assert!(preprocess("#else\n", &[]).is_err());
        assert!(preprocess("#if X\n", &[("X", true)]).unwrap_err().contains("left open"));
    }
}
