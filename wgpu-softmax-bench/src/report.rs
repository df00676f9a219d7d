//! A suite's results: the table, JSON records and an SVG chart of roofline percentage.

use std::fmt::Write as _;

use wgpu_softmax::{DType, Shape, Strategy};

use crate::{BenchOp, KernelKind};

/// One measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The op.
    pub op: BenchOp,
    /// What computed it.
    pub kernel: KernelKind,
    /// The storage type of the class-axis tensors.
    pub dtype: DType,
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
    /// `gbps` as a percentage of the bandwidth of the copy applying `exp` to each element.
    pub exp_copy_pct: f64,
    /// Median wall-clock time of one run, milliseconds, from launching it to the end of a
    /// full wait for the device: how Burn and the CPU kernels are timed, and how this
    /// crate's kernels are timed beside them. `None` where not measured.
    pub wall_ms: Option<f64>,
    /// What the host spends on this crate's kernels: `None` for the other kernels.
    pub host: Option<HostCosts>,
}

/// The host's side of one op on one shape (this crate's kernels): what recording it
/// costs in the steady state, and what its first call costs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostCosts {
    /// Median microseconds the host takes to record the op into an encoder, in the steady
    /// state (after the same call has run before: pipelines compiled, caches warm).
    pub encode_us: f64,
    /// GPU objects (buffers, bind groups, layouts, modules, pipelines) a steady-state
    /// call creates: 0 when every one comes from the context's caches.
    pub created_per_call: u64,
    /// Milliseconds of the first call in the run on this shape and storage type, from
    /// recording to the end of a wait for the device: with the compiling of whatever
    /// pipelines earlier measurements on the same context had not compiled.
    pub first_call_ms: f64,
}

/// The two copy kernels' bandwidths a run measures records against, GB/s.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Rooflines {
    /// The plain vec4 copy (read plus write).
    pub copy_gbps: f64,
    /// The same copy applying `exp` to each element.
    pub exp_copy_gbps: f64,
}

impl Record {
    /// A record from a median time, against the copy kernels of the same run.
    #[must_use]
    pub fn new(
        op: BenchOp,
        kernel: KernelKind,
        dtype: DType,
        shape: Shape,
        median_ms: f64,
        rooflines: Rooflines,
    ) -> Self {
        #[allow(clippy::cast_precision_loss)] // byte counts of one matrix
        let gbps = op.min_bytes(shape, dtype) as f64 / (median_ms * 1e-3) / 1e9;
        Self {
            op,
            kernel,
            dtype,
            rows: shape.rows,
            cols: shape.cols,
            median_ms,
            gbps,
            roofline_pct: 100.0 * gbps / rooflines.copy_gbps,
            exp_copy_pct: 100.0 * gbps / rooflines.exp_copy_gbps,
            wall_ms: (!kernel.on_gpu()).then_some(median_ms),
            host: None,
        }
    }

    /// The same record with the host's costs (see [`HostCosts`]).
    #[must_use]
    pub const fn with_host(self, host: HostCosts) -> Self {
        Self { host: Some(host), ..self }
    }

    /// The same record with a wall-clock median (see [`Record::wall_ms`]).
    #[must_use]
    pub const fn with_wall_ms(self, wall_ms: f64) -> Self {
        Self { wall_ms: Some(wall_ms), ..self }
    }
}

/// The strategy the planner's heuristics pick for a shape, and the one autotuning picks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrategyChoice {
    /// The kernel family: `softmax` (and log-softmax), `cross_entropy`,
    /// `softmax_backward`.
    pub family: &'static str,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// The heuristics' choice.
    pub heuristic: Strategy,
    /// Autotuning's choice.
    pub tuned: Strategy,
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
    /// The record of `kernel` for `op` in `dtype` on `rows x cols`, if measured.
    #[must_use]
    pub fn find(
        &self,
        op: BenchOp,
        kernel: KernelKind,
        dtype: DType,
        rows: usize,
        cols: usize,
    ) -> Option<&Record> {
        self.records.iter().find(|r| {
            r.op == op && r.kernel == kernel && r.dtype == dtype && r.rows == rows && r.cols == cols
        })
    }

    /// The copy kernels this report's records are measured against.
    #[must_use]
    pub const fn rooflines(&self) -> Rooflines {
        Rooflines { copy_gbps: self.copy_gbps, exp_copy_gbps: self.exp_copy_gbps }
    }

    /// How many times faster the fused kernel is than `kernel` for one op and shape, both
    /// in f32, both timed the same way: by the device's clock against the unfused kernels,
    /// by wall clock against the others (Burn, the CPU), which can be timed no other way.
    #[must_use]
    pub fn speedup(&self, op: BenchOp, kernel: KernelKind, rows: usize, cols: usize) -> Option<f64> {
        let fused = self.find(op, KernelKind::Fused, DType::F32, rows, cols)?;
        let other = self.find(op, kernel, DType::F32, rows, cols)?;
        if kernel.on_gpu() {
            Some(other.median_ms / fused.median_ms)
        } else {
            Some(other.wall_ms? / fused.wall_ms?)
        }
    }

    /// Per op and storage type, the fused kernel's lowest and median share of the two
    /// copies, its lowest speedups over the baselines and, in 16 bits, its highest time
    /// per element relative to f32 on the same shape: what the targets are judged on.
    #[must_use]
    pub fn summary(&self) -> Vec<OpSummary> {
        let mut cases: Vec<(BenchOp, DType)> = Vec::new();
        for r in self.records.iter().filter(|r| r.kernel == KernelKind::Fused) {
            if !cases.contains(&(r.op, r.dtype)) {
                cases.push((r.op, r.dtype));
            }
        }
        cases
            .into_iter()
            .map(|(op, dtype)| {
                let fused: Vec<&Record> = self
                    .records
                    .iter()
                    .filter(|r| r.kernel == KernelKind::Fused && r.op == op && r.dtype == dtype)
                    .collect();
                let shares = |share: fn(&Record) -> f64| {
                    let values: Vec<f64> = fused.iter().map(|r| share(r)).collect();
                    (lowest(values.iter().copied()), crate::median(&values))
                };
                let slowest_speedup = |kernel| {
                    let speedups = fused.iter().filter_map(|r| self.speedup(op, kernel, r.rows, r.cols));
                    (dtype == DType::F32).then(|| lowest(speedups)).filter(|s| s.is_finite())
                };
                let relative_to_f32: Vec<f64> = fused
                    .iter()
                    .filter_map(|r| {
                        let f32_record = self.find(op, KernelKind::Fused, DType::F32, r.rows, r.cols)?;
                        Some(r.median_ms / f32_record.median_ms)
                    })
                    .collect();
                OpSummary {
                    op,
                    dtype,
                    shapes: fused.len(),
                    exp_copy_pct: shares(|r| r.exp_copy_pct),
                    copy_pct: shares(|r| r.roofline_pct),
                    unfused_speedup: slowest_speedup(KernelKind::Unfused),
                    burn_speedup: slowest_speedup(KernelKind::Burn),
                    time_vs_f32: (dtype != DType::F32 && !relative_to_f32.is_empty())
                        .then(|| relative_to_f32.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                }
            })
            .collect()
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
                    "| {} | {}x{} | {:?} | {:?} |",
                    c.family, c.rows, c.cols, c.heuristic, c.tuned
                );
            }
            out.push('\n');
        }
        out.push_str(&self.summary_table());
        out.push_str(
            "| op | dtype | shape | kernel | median ms | GB/s | % of copy | % of exp-copy | wall ms | fused is x faster | encode us | created per call | first call ms |\n",
        );
        out.push_str("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.records {
            let speedup = match r.kernel {
                KernelKind::Fused => String::new(),
                other => {
                    self.speedup(r.op, other, r.rows, r.cols).map_or_else(String::new, |s| format!("{s:.2}"))
                }
            };
            let wall = r.wall_ms.map_or_else(String::new, |ms| format!("{ms:.3}"));
            let host = r.host.map_or_else(
                || " | | ".to_owned(),
                |h| format!("{:.1} | {} | {:.1}", h.encode_us, h.created_per_call, h.first_call_ms),
            );
            let _ = writeln!(
                out,
                "| {} | {} | {}x{} | {} | {:.3} | {:.2} | {:.1} | {:.1} | {} | {} | {} |",
                r.op.name(),
                r.dtype.name(),
                r.rows,
                r.cols,
                r.kernel.name(),
                r.median_ms,
                r.gbps,
                r.roofline_pct,
                r.exp_copy_pct,
                wall,
                speedup,
                host
            );
        }
        out
    }

    /// [`Report::summary`] as a Markdown table (empty when nothing fused was measured).
    #[must_use]
    pub fn summary_table(&self) -> String {
        let summary = self.summary();
        if summary.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "| op | dtype | shapes | % of exp-copy, lowest / median | % of copy, lowest / median | \
             fused vs unfused, slowest | fused vs Burn, slowest | time vs f32, worst |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        let times = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"));
        for s in &summary {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {} | {} | {} |",
                s.op.name(),
                s.dtype.name(),
                s.shapes,
                s.exp_copy_pct.0,
                s.exp_copy_pct.1,
                s.copy_pct.0,
                s.copy_pct.1,
                times(s.unfused_speedup),
                times(s.burn_speedup),
                times(s.time_vs_f32),
            );
        }
        out.push('\n');
        out
    }

    /// The records as a JSON list, each with the adapter's name and the copy kernel's
    /// bandwidth (non-finite numbers as `null`).
    #[must_use]
    pub fn to_json(&self) -> String {
        let records: Vec<JsonRecord> = self
            .records
            .iter()
            .map(|r| JsonRecord {
                op: r.op.name().to_owned(),
                kernel: r.kernel.name().to_owned(),
                dtype: Some(r.dtype.name().to_owned()),
                rows: r.rows,
                cols: r.cols,
                median_ms: finite(r.median_ms),
                gbps: finite(r.gbps),
                roofline_pct: finite(r.roofline_pct),
                exp_copy_pct: finite(r.exp_copy_pct),
                wall_ms: r.wall_ms.and_then(finite),
                encode_us: r.host.and_then(|h| finite(h.encode_us)),
                created_per_call: r.host.map(|h| h.created_per_call),
                first_call_ms: r.host.and_then(|h| finite(h.first_call_ms)),
                adapter: self.adapter.clone(),
                backend: self.backend.clone(),
                driver: self.driver.clone(),
                clock: self.clock.clone(),
                copy_gbps: finite(self.copy_gbps),
                exp_copy_gbps: finite(self.exp_copy_gbps),
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&records).unwrap_or_else(|_| "[]".to_owned());
        text.push('\n');
        text
    }

    /// A report read back from [`Report::to_json`]'s output (the adapter and copy
    /// figures from its first record; no strategy choices), to redraw its chart.
    ///
    /// # Errors
    ///
    /// [`crate::BenchError::Json`] for text that is not such a list, or that names an
    /// unknown op or kernel.
    pub fn from_json(text: &str) -> crate::Result<Self> {
        let json_error = |problem: String| crate::BenchError::Json(problem);
        let records: Vec<JsonRecord> = serde_json::from_str(text).map_err(|e| json_error(e.to_string()))?;
        let first = records.first().ok_or_else(|| json_error("no records".to_owned()))?;
        let mut report = Self {
            adapter: first.adapter.clone(),
            backend: first.backend.clone(),
            driver: first.driver.clone(),
            clock: first.clock.clone(),
            copy_gbps: first.copy_gbps.unwrap_or(f64::NAN),
            exp_copy_gbps: first.exp_copy_gbps.unwrap_or(f64::NAN),
            records: Vec::new(),
            strategies: Vec::new(),
        };
        for r in &records {
            let op = BenchOp::from_name(&r.op).ok_or_else(|| json_error(format!("unknown op '{}'", r.op)))?;
            let kernel = KernelKind::from_name(&r.kernel)
                .ok_or_else(|| json_error(format!("unknown kernel '{}'", r.kernel)))?;
            let dtype = match &r.dtype {
                Some(name) => {
                    DType::from_name(name).ok_or_else(|| json_error(format!("unknown dtype '{name}'")))?
                }
                None => DType::F32,
            };
            report.records.push(Record {
                op,
                kernel,
                dtype,
                rows: r.rows,
                cols: r.cols,
                median_ms: r.median_ms.unwrap_or(f64::NAN),
                gbps: r.gbps.unwrap_or(f64::NAN),
                roofline_pct: r.roofline_pct.unwrap_or(f64::NAN),
                // Reports from before this field: the share from the run's exp-copy.
                exp_copy_pct: r
                    .exp_copy_pct
                    .or_else(|| Some(100.0 * r.gbps? / r.exp_copy_gbps?))
                    .unwrap_or(f64::NAN),
                wall_ms: r.wall_ms,
                host: match (r.encode_us, r.created_per_call, r.first_call_ms) {
                    (Some(encode_us), Some(created_per_call), Some(first_call_ms)) => {
                        Some(HostCosts { encode_us, created_per_call, first_call_ms })
                    }
                    _ => None,
                },
            });
        }
        Ok(report)
    }

    /// The roofline chart as SVG: one panel per op, the roofline percentage of each GPU
    /// kernel per shape, with the 100% line (the copy kernel).
    ///
    /// # Errors
    ///
    /// [`crate::BenchError::Chart`] when plotters fails to draw it.
    pub fn to_svg(&self) -> crate::Result<String> {
        crate::chart::roofline_svg(self)
    }
}

/// One record as the JSON holds it: flat, with the run's adapter and copy figures.
#[derive(serde::Serialize, serde::Deserialize)]
struct JsonRecord {
    op: String,
    kernel: String,
    // Absent in reports from before 16-bit storage: f32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dtype: Option<String>,
    rows: usize,
    cols: usize,
    median_ms: Option<f64>,
    gbps: Option<f64>,
    roofline_pct: Option<f64>,
    // Absent in reports from before the exp-copy share and wall-clock times.
    #[serde(default)]
    exp_copy_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wall_ms: Option<f64>,
    // This crate's kernels only; absent in reports from before the host's costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encode_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_per_call: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_call_ms: Option<f64>,
    adapter: String,
    backend: String,
    driver: String,
    clock: String,
    copy_gbps: Option<f64>,
    exp_copy_gbps: Option<f64>,
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// The smallest of `values` (infinity for none).
fn lowest(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(f64::INFINITY, f64::min)
}

/// One op in one storage type over a report's shapes: see [`Report::summary`].
#[derive(Clone, Debug, PartialEq)]
pub struct OpSummary {
    /// The op.
    pub op: BenchOp,
    /// The storage type.
    pub dtype: DType,
    /// Shapes measured.
    pub shapes: usize,
    /// The lowest and the median percentage of the copy applying `exp`.
    pub exp_copy_pct: (f64, f64),
    /// The lowest and the median percentage of the plain copy.
    pub copy_pct: (f64, f64),
    /// The fused kernel's smallest speedup over the unfused one (f32; `None` unmeasured).
    pub unfused_speedup: Option<f64>,
    /// Its smallest speedup over Burn, both by wall clock (f32; `None` unmeasured).
    pub burn_speedup: Option<f64>,
    /// In 16 bits, the largest ratio of its time to the f32 kernel's on the same shape
    /// (above 1: slower per element than f32).
    pub time_vs_f32: Option<f64>,
}
