//! The GPU report as Markdown.

use std::fmt::Write as _;

use super::FullReport;

/// Writes `report` as Markdown: the adapter and rooflines, then one table per section.
pub fn markdown(report: &FullReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# wgpu-softmax GPU report\n");
    let _ = writeln!(md, "- adapter: {} ({}), driver: {}", report.adapter, report.backend, report.driver);
    let _ = writeln!(md, "- clock: {}", report.clock);
    let _ = writeln!(
        md,
        "- roofline: vec4 copy {:.1} GB/s, the same copy applying exp {:.1} GB/s (better of before and after)",
        report.rooflines.copy_gbps, report.rooflines.exp_copy_gbps
    );
    let s = &report.seconds;
    let _ = writeln!(
        md,
        "- seconds: roofline {:.1}, row ops {:.1}, linear {:.1}, sampling {:.1}, PyTorch {:.1}; total {:.1}\n",
        s.roofline,
        s.rows,
        s.linear,
        s.sampling,
        s.torch,
        s.roofline + s.rows + s.linear + s.sampling + s.torch
    );

    if !report.errors.is_empty() {
        let _ = writeln!(md, "## Errors\n");
        for error in &report.errors {
            let _ = writeln!(md, "- {error}");
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Row ops\n");
    let _ = writeln!(
        md,
        "GB/s counts the fewest bytes each op must move (each class-axis tensor once at the storage width, \
         4-byte targets and losses); % of copy is that over the copy kernel's. First call: wall clock of the \
         first call of that case, shape and type (pipelines created there unless an earlier record made them); \
         median and p90 (the steady state) by the clock above. Dispatches: recorded by one call (planned).\n"
    );
    let _ = writeln!(
        md,
        "| op | options | type | rows x cols | first ms | median ms | p90 ms | GB/s | % copy | strategy | wg | reads/el | dispatches |"
    );
    let _ = writeln!(md, "|---|---|---|---|--:|--:|--:|--:|--:|---|--:|--:|--:|");
    for r in &report.rows {
        let reads = r.reads_per_element.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} x {} | {:.3} | {:.4} | {:.4} | {:.2} | {:.1} | {} | {} | {} | {} ({}) |",
            r.op,
            r.options,
            r.dtype,
            r.rows,
            r.cols,
            r.first_ms,
            r.median_ms,
            r.p90_ms,
            r.gbps,
            r.copy_pct,
            r.strategy,
            r.workgroup_size,
            reads,
            r.dispatches,
            r.dispatches_planned
        );
    }

    let _ = writeln!(md, "\n## Linear cross-entropy\n");
    let _ = writeln!(
        md,
        "| kernel | N | D | V | pass | median ms | runs | TFLOPS | peak MiB ({}) | loss |",
        memory_source(report)
    );
    let _ = writeln!(md, "|---|--:|--:|--:|---|--:|--:|--:|--:|--:|");
    for r in &report.linear.records {
        #[allow(clippy::cast_precision_loss)] // bytes shown in MiB
        let mib = r.peak_bytes as f64 / f64::from(1u32 << 20);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.3} | {} | {:.4} | {:.1} | {:.5} |",
            r.kernel,
            r.rows,
            r.hidden,
            r.classes,
            r.pass,
            r.median_ms,
            r.runs,
            r.gflops / 1e3,
            mib,
            r.loss
        );
    }

    let _ = writeln!(md, "\n## Sampling\n");
    let _ = writeln!(md, "```text\n{}\n```\n", report.sampling.table().trim_end());

    let _ = writeln!(md, "## PyTorch on the same shapes\n");
    let _ = writeln!(md, "{}\n", report.torch.note);
    if report.torch.ran {
        let _ = writeln!(md, "versions: `{}`\n", report.torch.versions);
        let _ =
            writeln!(md, "| library | op | options | type | shape | theirs ms | ours ms | theirs / ours |");
        let _ = writeln!(md, "|---|---|---|---|---|--:|--:|--:|");
        for r in &report.torch.results {
            let shape = if r.hidden > 0 {
                format!("{} x {} x {}", r.rows, r.hidden, r.cols)
            } else {
                format!("{} x {}", r.rows, r.cols)
            };
            let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
            let ratio = r
                .ratio()
                .map_or_else(|| r.error.clone().unwrap_or_else(|| "-".to_owned()), |x| format!("{x:.2}"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.library,
                r.op,
                r.options,
                r.dtype,
                shape,
                ms(r.median_ms),
                ms(r.ours_ms),
                ratio
            );
        }
    }
    md
}

/// How the linear section's memory was weighed.
fn memory_source(report: &FullReport) -> &'static str {
    report.linear.records.first().map_or("-", |r| r.memory_source)
}
