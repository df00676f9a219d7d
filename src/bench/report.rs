//! A suite's results: the table, JSON records and an SVG chart of roofline percentage.

use std::fmt::Write as _;

use super::{BenchOp, KernelKind};
use crate::shape::Shape;

/// One measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The op.
    pub op: BenchOp,
    /// What computed it.
    pub kernel: KernelKind,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Median time of one run, milliseconds.
    pub median_ms: f64,
    /// Effective bandwidth: the op's fewest bytes over the median time, GB/s.
    pub gbps: f64,
    /// `gbps` as a percentage of the copy kernel's bandwidth.
    pub roofline_pct: f64,
}

impl Record {
    /// A record from a median time, against the copy kernel's `copy_gbps`.
    #[must_use]
    pub fn new(op: BenchOp, kernel: KernelKind, shape: Shape, median_ms: f64, copy_gbps: f64) -> Self {
        #[allow(clippy::cast_precision_loss)] // byte counts of one matrix
        let gbps = op.min_bytes(shape) as f64 / (median_ms * 1e-3) / 1e9;
        Self {
            op,
            kernel,
            rows: shape.rows,
            cols: shape.cols,
            median_ms,
            gbps,
            roofline_pct: 100.0 * gbps / copy_gbps,
        }
    }
}

/// The strategy the planner's heuristics pick for a shape, and the one autotuning picks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrategyChoice {
    /// The kernel family.
    pub family: crate::tune::OpFamily,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// The heuristics' choice.
    pub heuristic: crate::plan::Strategy,
    /// Autotuning's choice.
    pub tuned: crate::plan::Strategy,
}

/// A suite's results on one adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The adapter's name.
    pub adapter: String,
    /// Its backend.
    pub backend: String,
    /// Its driver.
    pub driver: String,
    /// How times were taken.
    pub clock: String,
    /// The vec4 copy kernel's bandwidth, GB/s (read plus write): the roofline.
    pub copy_gbps: f64,
    /// The same copy applying `exp` to each element, GB/s: how fast exponentials stream.
    pub exp_copy_gbps: f64,
    /// Every measurement.
    pub records: Vec<Record>,
    /// The strategy choices per shape and kernel family.
    pub strategies: Vec<StrategyChoice>,
}

impl Report {
    /// The record of `kernel` for `op` on `rows x cols`, if measured.
    #[must_use]
    pub fn find(&self, op: BenchOp, kernel: KernelKind, rows: usize, cols: usize) -> Option<&Record> {
        self.records.iter().find(|r| r.op == op && r.kernel == kernel && r.rows == rows && r.cols == cols)
    }

    /// How many times faster the fused kernel is than `kernel` for one op and shape.
    #[must_use]
    pub fn speedup(&self, op: BenchOp, kernel: KernelKind, rows: usize, cols: usize) -> Option<f64> {
        let fused = self.find(op, KernelKind::Fused, rows, cols)?;
        let other = self.find(op, kernel, rows, cols)?;
        Some(other.median_ms / fused.median_ms)
    }

    /// A Markdown table: one line per measurement, with the speedup of the fused kernel.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = format!(
            "adapter: {} ({}, {}); times: {}; copy kernel: {:.2} GB/s; copy applying exp: {:.2} GB/s\n\n",
            self.adapter, self.backend, self.driver, self.clock, self.copy_gbps, self.exp_copy_gbps
        );
        if !self.strategies.is_empty() {
            out.push_str("| family | shape | heuristic strategy | autotuned strategy |\n|---|---|---|---|\n");
            for c in &self.strategies {
                let _ = writeln!(
                    out,
                    "| {:?} | {}x{} | {:?} | {:?} |",
                    c.family, c.rows, c.cols, c.heuristic, c.tuned
                );
            }
            out.push('\n');
        }
        out.push_str("| op | shape | kernel | median ms | GB/s | % of copy | fused is x faster |\n");
        out.push_str("|---|---|---|---:|---:|---:|---:|\n");
        for r in &self.records {
            let speedup = match r.kernel {
                KernelKind::Fused => String::new(),
                other => {
                    self.speedup(r.op, other, r.rows, r.cols).map_or_else(String::new, |s| format!("{s:.2}"))
                }
            };
            let _ = writeln!(
                out,
                "| {} | {}x{} | {} | {:.3} | {:.2} | {:.1} | {} |",
                r.op.name(),
                r.rows,
                r.cols,
                r.kernel.name(),
                r.median_ms,
                r.gbps,
                r.roofline_pct,
                speedup
            );
        }
        out
    }

    /// The records as a JSON list, each with the adapter's name and the copy kernel's
    /// bandwidth.
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut out = String::from("[\n");
        for (i, r) in self.records.iter().enumerate() {
            let _ = write!(
                out,
                "  {{\"op\": \"{}\", \"kernel\": \"{}\", \"rows\": {}, \"cols\": {}, \"median_ms\": {}, \"gbps\": {}, \
                 \"roofline_pct\": {}, \"adapter\": {}, \"backend\": {}, \"driver\": {}, \"clock\": {}, \"copy_gbps\": {}, \"exp_copy_gbps\": {}}}",
                r.op.name(),
                r.kernel.name(),
                r.rows,
                r.cols,
                json_number(r.median_ms),
                json_number(r.gbps),
                json_number(r.roofline_pct),
                json_string(&self.adapter),
                json_string(&self.backend),
                json_string(&self.driver),
                json_string(&self.clock),
                json_number(self.copy_gbps),
                json_number(self.exp_copy_gbps),
            );
            out.push_str(if i + 1 < self.records.len() { ",\n" } else { "\n" });
        }
        out.push_str("]\n");
        out
    }

    /// An SVG chart: one panel per op, the roofline percentage of each GPU kernel per
    /// shape, with the 100% line (the copy kernel).
    #[must_use]
    pub fn to_svg(&self) -> String {
        let ops: Vec<BenchOp> =
            BenchOp::ALL.into_iter().filter(|&op| self.records.iter().any(|r| r.op == op)).collect();
        let kernels: Vec<KernelKind> = [KernelKind::Fused, KernelKind::Unfused]
            .into_iter()
            .filter(|&k| self.records.iter().any(|r| r.kernel == k))
            .collect();
        let mut shapes: Vec<(usize, usize)> = Vec::new();
        for r in &self.records {
            if !shapes.contains(&(r.rows, r.cols)) {
                shapes.push((r.rows, r.cols));
            }
        }
        let top = self
            .records
            .iter()
            .filter(|r| r.kernel.on_gpu() && r.roofline_pct.is_finite())
            .map(|r| r.roofline_pct)
            .fold(100.0f64, f64::max)
            .ceil();
        let (panel_w, panel_h, left, bar_w) = (760.0, 170.0, 60.0, 12.0);
        let group_w = (panel_w - left - 20.0) / shapes.len().max(1) as f64;
        let height = 60.0 + panel_h * ops.len() as f64 + 40.0;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{panel_w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"10\" y=\"20\" font-size=\"14\">Effective bandwidth as % of a vec4 copy ({:.1} GB/s) on {}</text>\n",
            self.copy_gbps,
            xml(&self.adapter)
        );
        let colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];
        for (k, kernel) in kernels.iter().enumerate() {
            let x = 10.0 + 110.0 * k as f64;
            let _ = writeln!(
                svg,
                "<rect x=\"{x}\" y=\"30\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"39\">{}</text>",
                colours[k % colours.len()],
                x + 14.0,
                kernel.name()
            );
        }
        for (p, op) in ops.iter().enumerate() {
            let y0 = 60.0 + panel_h * p as f64;
            let plot_h = panel_h - 45.0;
            let base = y0 + 15.0 + plot_h;
            let scale = plot_h / top;
            let _ = writeln!(svg, "<text x=\"10\" y=\"{}\" font-size=\"12\">{}</text>", y0 + 10.0, op.name());
            let hundred = base - 100.0 * scale;
            let _ = writeln!(
                svg,
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{hundred}\" y2=\"{hundred}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"end\">100%</text>\
                 <line x1=\"{left}\" x2=\"{}\" y1=\"{base}\" y2=\"{base}\" stroke=\"black\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"end\">0%</text>",
                panel_w - 20.0,
                left - 4.0,
                hundred + 4.0,
                panel_w - 20.0,
                left - 4.0,
                base + 4.0
            );
            for (s, &(rows, cols)) in shapes.iter().enumerate() {
                let gx = left + group_w * s as f64;
                for (k, &kernel) in kernels.iter().enumerate() {
                    if let Some(r) = self.find(*op, kernel, rows, cols) {
                        let h = (r.roofline_pct.max(0.0) * scale).min(plot_h);
                        let x = gx + group_w / 2.0 - bar_w * kernels.len() as f64 / 2.0 + bar_w * k as f64;
                        let _ = writeln!(
                            svg,
                            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{}\" height=\"{h:.1}\" fill=\"{}\"><title>{} {}x{} {}: {:.1}%</title></rect>",
                            base - h,
                            bar_w - 2.0,
                            colours[k % colours.len()],
                            op.name(),
                            rows,
                            cols,
                            kernel.name(),
                            r.roofline_pct
                        );
                    }
                }
                let _ = writeln!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{rows}x{cols}</text>",
                    gx + group_w / 2.0,
                    base + 14.0
                );
            }
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn json_number(value: f64) -> String {
    if value.is_finite() { format!("{value:.6}") } else { "null".to_owned() }
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
