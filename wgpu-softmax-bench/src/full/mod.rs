//! The GPU report: every section of the benchmarks in one process on one adapter (the
//! row ops over widths, rows and storage types with their plans, the linear
//! cross-entropy, sampling), the copy roofline, and PyTorch's times on the same shapes
//! where it runs on CUDA on the same machine; written as Markdown and JSON.

mod render;
pub mod rows;
pub mod torch;

use std::time::Instant;

use wgpu_softmax::timing::Timer;
use wgpu_softmax::{Context, DType, LinearShape, Shape};

use crate::{
    Bench, LinearConfig, LinearReport, Result, Rooflines, SampleConfig, SampleReport, run_linear_suite,
    run_sample_suite,
};
pub use rows::{RowCase, RowTiming};
pub use torch::TorchSide;

/// The row shapes of the full report (rows x cols): 10 to 262144 columns, 8 to 16384
/// rows, and the widths on each side of 1024, 4096 and 8192.
pub const REPORT_SHAPES: [(usize, usize); 13] = [
    (16384, 10),
    (16384, 128),
    (8192, 1024),
    (8192, 1025),
    (4096, 4096),
    (4096, 4097),
    (16384, 4096),
    (2048, 8192),
    (2048, 8193),
    (1024, 32000),
    (256, 128_256),
    (64, 262_144),
    (8, 262_144),
];

/// The linear cross-entropy's shapes in the full report, `(N, D, V)`.
pub const REPORT_LINEAR_SHAPES: [(usize, usize, usize); 3] =
    [(4096, 2048, 32000), (8192, 4096, 128_256), (16384, 4096, 128_256)];

/// What the report measures and how often.
#[derive(Clone, Debug)]
pub struct FullConfig {
    /// Row shapes.
    pub shapes: Vec<Shape>,
    /// Storage types of the row ops.
    pub dtypes: Vec<DType>,
    /// Row cases.
    pub cases: Vec<RowCase>,
    /// Runs per row case.
    pub timing: RowTiming,
    /// Seed of the row ops' data.
    pub seed: u64,
    /// Bytes the copy kernel moves each way, for the roofline.
    pub copy_bytes: u64,
    /// The linear cross-entropy's section.
    pub linear: LinearConfig,
    /// The sampling section.
    pub sample: SampleConfig,
}

impl FullConfig {
    /// Every shape, storage type and case: sized for minutes on an H100 (see
    /// [`FullConfig::estimate_seconds`]).
    #[must_use]
    pub fn full() -> Self {
        Self {
            shapes: REPORT_SHAPES.iter().map(|&(r, c)| Shape::new(r, c)).collect(),
            dtypes: vec![DType::F32, DType::BF16, DType::F16],
            cases: RowCase::ALL.to_vec(),
            timing: RowTiming { warmup: 3, runs: 20 },
            seed: 0x00BE_4C11,
            copy_bytes: 256 << 20,
            linear: LinearConfig {
                shapes: REPORT_LINEAR_SHAPES.iter().map(|&(n, d, v)| LinearShape::new(n, d, v)).collect(),
                warmup: 1,
                runs: 3,
                ..LinearConfig::full()
            },
            sample: SampleConfig::full(),
        }
    }

    /// Every case and storage type on small shapes from 10 to 262144 columns (both sides
    /// of 1024, 4096 and 8192), the linear and sampling sections' quick configurations:
    /// about a minute on lavapipe.
    #[must_use]
    pub fn quick() -> Self {
        Self {
            shapes: [
                (1024, 10),
                (64, 1024),
                (64, 1025),
                (16, 4096),
                (16, 4097),
                (4, 8192),
                (4, 8193),
                (2, 262_144),
            ]
            .iter()
            .map(|&(r, c)| Shape::new(r, c))
            .collect(),
            timing: RowTiming { warmup: 1, runs: 3 },
            copy_bytes: 16 << 20,
            linear: LinearConfig::quick(),
            sample: SampleConfig::quick(),
            ..Self::full()
        }
    }

    /// The least that still has every section, for tests: one shape, two cases, two runs.
    #[must_use]
    pub fn tiny() -> Self {
        Self {
            shapes: vec![Shape::new(4, 100)],
            dtypes: vec![DType::F32],
            cases: vec![RowCase::ALL[0], RowCase::ALL[3]],
            timing: RowTiming { warmup: 0, runs: 2 },
            copy_bytes: 1 << 20,
            linear: LinearConfig { shapes: vec![LinearShape::new(16, 8, 64)], ..LinearConfig::quick() },
            sample: SampleConfig { batches: vec![1], vocabs: vec![1000], ..SampleConfig::quick() },
            ..Self::full()
        }
    }

    /// How many row records the report takes.
    #[must_use]
    pub fn row_records(&self) -> usize {
        self.shapes.len() * self.dtypes.len() * self.cases.len()
    }

    /// Seconds the measured work takes at `tbps` terabytes per second and `tflops` f32
    /// teraflops, plus `call_ms` per call (submission, wait, timestamps): a lower bound
    /// that leaves out pipeline creation, uploads and the CPU baselines of sampling.
    #[must_use]
    pub fn estimate_seconds(&self, tbps: f64, tflops: f64, call_ms: f64) -> f64 {
        let calls = (1 + self.timing.warmup + self.timing.runs) as f64;
        let mut seconds = 0.0;
        for &shape in &self.shapes {
            for &dtype in &self.dtypes {
                for case in &self.cases {
                    #[allow(clippy::cast_precision_loss)] // bytes of one op
                    let bytes = case.min_bytes(shape, dtype) as f64;
                    seconds += calls * (bytes / (tbps * 1e12) + call_ms * 1e-3);
                }
            }
        }
        let linear_calls =
            (self.linear.warmup + self.linear.runs) as f64 * crate::LinearKernel::ALL.len() as f64;
        for shape in &self.linear.shapes {
            #[allow(clippy::cast_precision_loss)] // multiply-adds of one product
            let flops = 6.0 * (shape.rows * shape.hidden * shape.classes) as f64;
            seconds += linear_calls * flops / (tflops * 1e12);
        }
        seconds
    }
}

/// One row op's measurement.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RowRecord {
    /// The op.
    pub op: &'static str,
    /// Its options (reduction, gradient, label smoothing).
    pub options: String,
    /// The storage type.
    pub dtype: &'static str,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Wall time of the first call in this process for this case, shape and type: its
    /// recording (pipelines created there, unless an earlier record made them), the
    /// submission and the wait, milliseconds.
    pub first_ms: f64,
    /// The steady state: the median of the GPU-timed runs, milliseconds.
    pub median_ms: f64,
    /// The 90th percentile of the timed runs, milliseconds.
    pub p90_ms: f64,
    /// Timed runs.
    pub runs: usize,
    /// The fewest bytes the op must move over the median time, GB/s.
    pub gbps: f64,
    /// `gbps` as a percentage of the copy kernel's.
    pub copy_pct: f64,
    /// The plan's strategy.
    pub strategy: String,
    /// The plan's invocations per workgroup.
    pub workgroup_size: u32,
    /// How often each element of each input is read (`None`: no stored row is read).
    pub reads_per_element: Option<u32>,
    /// Dispatches the planner predicts.
    pub dispatches_planned: usize,
    /// Dispatches one call recorded.
    pub dispatches: u64,
}

/// Wall time of each section, seconds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SectionSeconds {
    /// The copy kernels, before and after.
    pub roofline: f64,
    /// The row ops.
    pub rows: f64,
    /// The linear cross-entropy.
    pub linear: f64,
    /// Sampling.
    pub sampling: f64,
    /// PyTorch's side.
    pub torch: f64,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FullReport {
    /// The adapter's name.
    pub adapter: String,
    /// Its backend.
    pub backend: String,
    /// Its driver.
    pub driver: String,
    /// How times were taken (GPU timestamps, or wall clock).
    pub clock: String,
    /// The copy kernels' bandwidths (the better of before and after).
    #[serde(flatten)]
    pub rooflines: Rooflines,
    /// The row ops.
    pub rows: Vec<RowRecord>,
    /// The linear cross-entropy, fused and unfused.
    pub linear: LinearReport,
    /// Sampling.
    pub sampling: SampleReport,
    /// PyTorch's times on the same shapes, or why they were not taken.
    pub torch: TorchSide,
    /// Wall time of each section.
    pub seconds: SectionSeconds,
    /// What failed (the rest was measured).
    pub errors: Vec<String>,
}

impl FullReport {
    /// The report as pretty JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report as Markdown.
    #[must_use]
    pub fn to_markdown(&self) -> String {
        render::markdown(self)
    }
}

/// The `q` quantile of `times` (nearest rank), 0 for none.
#[must_use]
pub fn percentile(times: &[f64], q: f64) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

/// Runs the whole report on `ctx`: the copy roofline, the row ops, the linear
/// cross-entropy, sampling, the copy again, then PyTorch's side in `scratch` (where it
/// writes the shapes and the script it runs). Calls `progress` with what it is about to
/// do.
///
/// # Errors
///
/// Failing to compile or run the copy kernels. The row ops', linear and sampling
/// sections' errors are kept in [`FullReport::errors`], PyTorch's in
/// [`FullReport::torch`].
pub fn run_full_report(
    ctx: &Context,
    config: &FullConfig,
    scratch: &std::path::Path,
    progress: &mut dyn FnMut(&str),
) -> Result<FullReport> {
    let mut seconds = SectionSeconds::default();
    let started = Instant::now();
    progress("compiling the copy kernels");
    let bench = Bench::new(ctx)?;
    let copy_runs = config.timing.runs.max(3);
    let copy = |progress: &mut dyn FnMut(&str)| -> Result<(f64, f64)> {
        progress("measuring the copy kernel (the roofline)");
        let plain = bench.copy_gbps(config.copy_bytes, config.timing.warmup, copy_runs, false)?;
        let exp = bench.copy_gbps(config.copy_bytes, config.timing.warmup, copy_runs, true)?;
        Ok((plain, exp))
    };
    let before = copy(progress)?;
    seconds.roofline += started.elapsed().as_secs_f64();

    let started = Instant::now();
    let timer = Timer::new(ctx);
    // Minutes of measurements are not thrown away for one failing part: each failure is
    // kept in the report, and the rest measured.
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    for &shape in &config.shapes {
        let data = rows::RowData::new(shape, config.seed);
        for &dtype in &config.dtypes {
            match rows::measure_shape(ctx, &timer, &config.cases, &data, dtype, config.timing, progress) {
                Ok(records) => rows.extend(records),
                Err(e) => errors.push(format!("row ops, {} {shape}: {e}", dtype.name())),
            }
        }
    }
    seconds.rows = started.elapsed().as_secs_f64();

    let info = ctx.adapter_info();
    let clock = timer.clock().name().to_owned();
    let header = (info.name.clone(), format!("{:?}", info.backend), clock.clone());
    let mut kept = |what: &str, error: crate::BenchError| errors.push(format!("{what}: {error}"));
    let started = Instant::now();
    let linear =
        run_linear_suite(ctx, &config.linear, &mut |_, _, what| progress(&format!("linear: {what}")))
            .unwrap_or_else(|e| {
                kept("linear cross-entropy", e);
                let (adapter, backend, clock) = header.clone();
                LinearReport { adapter, backend, clock, records: Vec::new() }
            });
    seconds.linear = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let sampling =
        run_sample_suite(ctx, &config.sample, &mut |_, _, what| progress(&format!("sampling: {what}")))
            .unwrap_or_else(|e| {
                kept("sampling", e);
                let (adapter, backend, clock) = header.clone();
                SampleReport {
                    adapter,
                    backend,
                    clock,
                    records: Vec::new(),
                    long_run_ms: config.sample.long_run_ms,
                    skip_other_filters_ms: config.sample.skip_other_filters_ms,
                }
            });
    seconds.sampling = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let after = copy(progress)?;
    seconds.roofline += started.elapsed().as_secs_f64();
    // A shared machine's bandwidth drifts over a run: the better of before and after.
    let (copy_gbps, exp_copy_gbps) = (before.0.max(after.0), before.1.max(after.1));
    for record in &mut rows {
        record.copy_pct = 100.0 * record.gbps / copy_gbps;
    }

    let started = Instant::now();
    progress("PyTorch on the same shapes");
    let torch = torch::compare(scratch, &rows, &linear);
    seconds.torch = started.elapsed().as_secs_f64();

    Ok(FullReport {
        adapter: info.name.clone(),
        backend: format!("{:?}", info.backend),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_owned(),
        clock,
        rooflines: Rooflines { copy_gbps, exp_copy_gbps },
        rows,
        linear,
        sampling,
        torch,
        seconds,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_the_nearest_rank_in_sorted_order() {
        let times = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 9.0, 8.0, 7.0, 6.0];
        assert!((percentile(&times, 0.5) - 5.0).abs() < 1e-12);
        assert!((percentile(&times, 0.9) - 9.0).abs() < 1e-12);
        assert!((percentile(&[2.5], 0.9) - 2.5).abs() < 1e-12);
        assert!(percentile(&[], 0.9).abs() < 1e-12);
    }

    #[test]
    fn the_full_report_covers_the_issue_shapes_and_fits_its_time() {
        let config = FullConfig::full();
        let cols: Vec<usize> = config.shapes.iter().map(|s| s.cols).collect();
        for width in [10, 1024, 1025, 4096, 4097, 8192, 8193, 262_144] {
            assert!(cols.contains(&width), "no {width} columns");
        }
        let rows: Vec<usize> = config.shapes.iter().map(|s| s.rows).collect();
        assert!(rows.contains(&8) && rows.contains(&16384));
        assert_eq!(config.dtypes, [DType::F32, DType::BF16, DType::F16]);
        // The measured work alone, at an H100's bandwidth and a modest f32 matmul rate,
        // leaves most of the 8 minutes to pipeline creation and the CPU baselines.
        let seconds = config.estimate_seconds(3.0, 10.0, 0.3);
        assert!(seconds < 120.0, "{seconds} s");
    }
}
