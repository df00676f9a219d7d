//! `--verbose`: after an op command, on stderr, what the planner chose for it on this
//! device, the time of each stage (files against the GPU), and the peak memory.

use std::fmt::Write as _;

use wgpu_softmax::{Context, DType, PlanRequest, Shape};

use crate::profile::explanation_text;
use crate::progress::StageTimes;

/// Prints the report of `command` on stderr: the plan of `request` over `shape` in `dtype`
/// as [`Context::explain`] gives it (or why it has none), `times`, the largest buffer the
/// op made for itself, and the process's peak resident memory where the system says.
pub fn report(
    command: &str,
    ctx: &Context,
    request: Option<PlanRequest>,
    (shape, dtype): (Shape, DType),
    times: &StageTimes,
) {
    let mut out = String::new();
    let _ = writeln!(out, "{command} --verbose:");
    match request.map(|r| ctx.explain(&r, shape, dtype)) {
        Some(Ok(explained)) => {
            for line in explanation_text(&explained, &ctx.describe()).lines() {
                let _ = writeln!(out, "  plan: {line}");
            }
        }
        Some(Err(e)) => {
            let _ = writeln!(out, "  plan: not explained ({e})");
        }
        None => {
            let _ = writeln!(out, "  plan: not explained for this op");
        }
    }
    let gpu = |name: &str| name.contains("GPU");
    let total = |on_gpu: bool| {
        times.0.iter().filter(|(n, _)| gpu(n) == on_gpu).map(|(_, d)| d.as_secs_f64()).sum::<f64>()
    };
    let stages: Vec<String> =
        times.0.iter().map(|(name, d)| format!("{name} {:.3} s", d.as_secs_f64())).collect();
    let _ = writeln!(out, "  time: {}", stages.join(", "));
    let _ = writeln!(
        out,
        "  time: files {:.3} s, GPU {:.3} s (the GPU stage includes making the context and compiling its pipelines)",
        total(false),
        total(true)
    );
    let scratch = size_text(ctx.largest_scratch_bytes());
    let resident = peak_resident_bytes().map_or_else(|| "unknown here".to_owned(), size_text);
    let _ = writeln!(
        out,
        "  memory: the op's largest buffer of its own {scratch}; process peak resident {resident}"
    );
    eprint!("{out}");
}

/// `bytes` in KiB below a MiB, else in MiB.
#[allow(clippy::cast_precision_loss)] // a figure to read
fn size_text(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    }
}

/// The process's peak resident set (`VmHWM` in `/proc/self/status`, Linux only).
fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
