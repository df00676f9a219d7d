//! The linear cross-entropy's matrix products alone, this crate's product kernel against
//! Burn's matmul (CubeCL, with the `burn` feature) on the same adapter: at the products
//! the op really runs for a shape (its plan's window of rows), the logits `H W^T` of a
//! window, `dH = G W` of a window (k = V) and a window's part of `dW = G^T H`. Both sides
//! are timed by wall clock, from recording (or launching) to the end of a wait for the
//! device, and reported in GFLOP/s.

use std::fmt::Write as _;
use std::time::Instant;

use wgpu_softmax::testing::{SeededRng, record_matmul};
use wgpu_softmax::timing::median;
use wgpu_softmax::wgpu;
use wgpu_softmax::{
    BufferRegion, Context, DType, LinearGradients, LinearShape, PlanRequest, Reduction, Shape,
};

use crate::Result;
use crate::linear::LINEAR_SHAPES;

/// `train_text`'s shape (`N`, `D`, `V`): a batch of 4352 positions, D 32, V 8192.
pub const TRAIN_TEXT_SHAPE: (usize, usize, usize) = (4352, 32, 8192);

/// Which of the linear op's products a case is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProductKind {
    /// The logits of a window, `H W^T`: `m` the window's rows, `n = V`, `k = D`.
    Logits,
    /// The window's `dH = G W`: `m` its rows, `n = D`, `k = V`.
    GradHidden,
    /// The window's part of `dW = G^T H`: `m = V`, `n = D`, `k` its rows.
    GradClassifier,
}

impl ProductKind {
    /// All three, in the order the op runs them.
    pub const ALL: [Self; 3] = [Self::Logits, Self::GradHidden, Self::GradClassifier];

    /// The product's name in reports and JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Logits => "H W^T",
            Self::GradHidden => "dH = G W",
            Self::GradClassifier => "dW = G^T H",
        }
    }
}

/// One product: `c (m x n) = op(a) op(b)`, `a` stored `m x k` (or `k x m` transposed),
/// `b` stored `k x n` (or `n x k` transposed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulCase {
    /// The linear op's shape it comes from.
    pub op_shape: LinearShape,
    /// Which product.
    pub kind: ProductKind,
    /// Rows of `c`.
    pub m: usize,
    /// Columns of `c`.
    pub n: usize,
    /// Terms of each sum.
    pub k: usize,
    /// `a` is stored `k x m`.
    pub a_transposed: bool,
    /// `b` is stored `n x k`.
    pub b_transposed: bool,
}

impl MatmulCase {
    /// The three products the linear op runs per window of `window` rows on `shape`.
    #[must_use]
    pub fn of_window(shape: LinearShape, window: usize) -> [Self; 3] {
        let LinearShape { hidden: d, classes: v, .. } = shape;
        let case = |kind, (m, n, k), (a_transposed, b_transposed)| Self {
            op_shape: shape,
            kind,
            m,
            n,
            k,
            a_transposed,
            b_transposed,
        };
        [
            case(ProductKind::Logits, (window, v, d), (false, true)),
            case(ProductKind::GradHidden, (window, d, v), (false, false)),
            case(ProductKind::GradClassifier, (v, d, window), (true, false)),
        ]
    }

    /// The three products the linear op (every gradient, the default workspace) runs per
    /// window on `ctx`'s device for `shape`.
    ///
    /// # Errors
    ///
    /// The plan's errors.
    pub fn of_op(ctx: &Context, shape: LinearShape) -> Result<[Self; 3]> {
        let request = PlanRequest::LinearCrossEntropy {
            hidden: shape.hidden,
            reduction: Reduction::Mean,
            gradients: LinearGradients::ALL,
            bias: false,
            workspace_bytes: None,
        };
        let explained = ctx.explain(&request, Shape::new(shape.rows, shape.classes), DType::F32)?;
        let window = explained.linear.map_or(shape.rows, |l| l.window_rows).min(shape.rows);
        Ok(Self::of_window(shape, window))
    }

    /// Multiply-adds times two.
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // flop counts
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n) as f64 * self.k as f64
    }
}

/// What a matmul suite measures and how often.
#[derive(Clone, Debug)]
pub struct MatmulConfig {
    /// The linear op's shapes, `(N, D, V)`, whose products are measured.
    pub shapes: Vec<LinearShape>,
    /// Untimed runs first (pipelines compile, Burn autotunes).
    pub warmup: usize,
    /// Timed runs; the median is reported.
    pub runs: usize,
    /// Seed of the operands.
    pub seed: u64,
}

impl MatmulConfig {
    /// [`LINEAR_SHAPES`] and [`TRAIN_TEXT_SHAPE`], one warm-up and three timed runs.
    #[must_use]
    pub fn full() -> Self {
        let mut shapes: Vec<LinearShape> =
            LINEAR_SHAPES.iter().map(|&(n, d, v)| LinearShape::new(n, d, v)).collect();
        let (n, d, v) = TRAIN_TEXT_SHAPE;
        shapes.push(LinearShape::new(n, d, v));
        Self { shapes, warmup: 1, runs: 3, seed: 0x3A7_3A7 }
    }

    /// [`TRAIN_TEXT_SHAPE`] and the first of [`LINEAR_SHAPES`], one warm-up and one timed
    /// run: a couple of minutes on lavapipe.
    #[must_use]
    pub fn quick() -> Self {
        let (n, d, v) = LINEAR_SHAPES[0];
        let (tn, td, tv) = TRAIN_TEXT_SHAPE;
        Self {
            shapes: vec![LinearShape::new(tn, td, tv), LinearShape::new(n, d, v)],
            runs: 1,
            ..Self::full()
        }
    }
}

/// One product, both kernels.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MatmulRecord {
    /// `N x D x V` of the linear op.
    pub op_shape: String,
    /// Which product.
    pub product: &'static str,
    /// Rows of the result.
    pub m: usize,
    /// Columns of the result.
    pub n: usize,
    /// Terms of each sum.
    pub k: usize,
    /// This crate's median wall time, milliseconds.
    pub ours_ms: f64,
    /// This crate's GFLOP/s (2 m n k over the median).
    pub ours_gflops: f64,
    /// Burn's median wall time (`None`: not built with the `burn` feature).
    pub burn_ms: Option<f64>,
    /// Burn's GFLOP/s.
    pub burn_gflops: Option<f64>,
    /// The largest error of ours, over a sample of the outputs, relative to the largest
    /// magnitude of the f64 products there.
    pub ours_error: f64,
    /// The same for Burn's.
    pub burn_error: Option<f64>,
    /// Timed runs behind each median.
    pub runs: usize,
}

/// A matmul suite's results on one adapter.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MatmulReport {
    /// The adapter's name.
    pub adapter: String,
    /// Its backend.
    pub backend: String,
    /// Every product measured.
    pub records: Vec<MatmulRecord>,
}

impl MatmulReport {
    /// The table: per product, both kernels' times and GFLOP/s, and ours over Burn's.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = format!("{} ({}), wall clock with a wait after each run\n", self.adapter, self.backend);
        let _ = writeln!(
            out,
            "{:<16} {:<11} {:>6} {:>6} {:>6} {:>10} {:>8} {:>10} {:>8} {:>7} {:>9}",
            "N x D x V",
            "product",
            "m",
            "n",
            "k",
            "ours ms",
            "GFLOP/s",
            "burn ms",
            "GFLOP/s",
            "ratio",
            "error"
        );
        for r in &self.records {
            let or_dash =
                |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
            let _ = writeln!(
                out,
                "{:<16} {:<11} {:>6} {:>6} {:>6} {:>10.1} {:>8.2} {:>10} {:>8} {:>7} {:>9.1e}",
                r.op_shape,
                r.product,
                r.m,
                r.n,
                r.k,
                r.ours_ms,
                r.ours_gflops,
                or_dash(r.burn_ms, 1),
                or_dash(r.burn_gflops, 2),
                or_dash(r.burn_gflops.map(|b| r.ours_gflops / b), 2),
                r.ours_error,
            );
        }
        if !cfg!(feature = "burn") {
            out.push_str("(built without the `burn` feature: no Burn baseline)\n");
        }
        out.push_str(
            "ratio = ours / Burn's GFLOP/s; error = ours' largest error on sampled outputs, relative\n",
        );
        out
    }

    /// The report as pretty JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// A case's random operands, as stored.
pub(crate) struct Operands {
    pub(crate) a: Vec<f32>,
    pub(crate) b: Vec<f32>,
}

impl Operands {
    fn new(case: &MatmulCase, seed: u64) -> Self {
        let mut rng = SeededRng::new(seed);
        Self { a: rng.logits(case.m * case.k, 1.0), b: rng.logits(case.k * case.n, 1.0) }
    }

    /// `op(a)[i, l] * op(b)[l, j]` summed in f64.
    fn product_at(&self, case: &MatmulCase, i: usize, j: usize) -> f64 {
        let (m, n, k) = (case.m, case.n, case.k);
        (0..k)
            .map(|l| {
                let a = if case.a_transposed { self.a[l * m + i] } else { self.a[i * k + l] };
                let b = if case.b_transposed { self.b[j * k + l] } else { self.b[l * n + j] };
                f64::from(a) * f64::from(b)
            })
            .sum()
    }

    /// The largest error of `c` over a sample of its outputs, relative to the largest f64
    /// product there.
    fn error_of(&self, case: &MatmulCase, c: &[f32]) -> f64 {
        let samples = 256;
        let mut rng = SeededRng::new(0xC4EC);
        let (mut worst, mut scale) = (0.0_f64, f64::MIN_POSITIVE);
        for _ in 0..samples {
            let i = usize::try_from(rng.below(case.m as u64)).unwrap_or(0);
            let j = usize::try_from(rng.below(case.n as u64)).unwrap_or(0);
            let want = self.product_at(case, i, j);
            let got = c.get(i * case.n + j).map_or(f64::NAN, |&v| f64::from(v));
            worst = worst.max((got - want).abs()).max(if got.is_nan() { f64::INFINITY } else { 0.0 });
            scale = scale.max(want.abs());
        }
        worst / scale
    }
}

/// Times `runs` runs of this crate's product of `case` after `warmup` untimed ones;
/// returns the times (ms) and the last run's result.
fn time_ours(
    ctx: &Context,
    case: &MatmulCase,
    operands: &Operands,
    (warmup, runs): (usize, usize),
) -> Result<(Vec<f64>, Vec<f32>)> {
    let a = ctx.upload(&operands.a)?;
    let b = ctx.upload(&operands.b)?;
    let c = ctx.upload(&vec![f32::NAN; (case.m * case.n).max(1)])?;
    let run = || -> Result<f64> {
        let started = Instant::now();
        let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        record_matmul(
            ctx,
            &mut encoder,
            (BufferRegion::new(&a), case.a_transposed),
            (BufferRegion::new(&b), case.b_transposed),
            BufferRegion::new(&c),
            (case.m, case.n, case.k),
            false,
        )?;
        ctx.submit_and_wait(encoder)?;
        Ok(started.elapsed().as_secs_f64() * 1e3)
    };
    for _ in 0..warmup {
        run()?;
    }
    let times = (0..runs.max(1)).map(|_| run()).collect::<Result<Vec<_>>>()?;
    Ok((times, ctx.download(&c, case.m * case.n)?))
}

/// Burn's times and last result, where it is built.
#[allow(clippy::unnecessary_wraps)] // returns Burn's errors when built with it
fn time_burn(
    case: &MatmulCase,
    operands: &Operands,
    (warmup, runs): (usize, usize),
) -> Result<Option<(Vec<f64>, Vec<f32>)>> {
    #[cfg(feature = "burn")]
    return crate::burn::time_matmul(case, operands, warmup, runs).map(Some);
    #[cfg(not(feature = "burn"))]
    {
        let _ = (case, operands, warmup, runs);
        Ok(None)
    }
}

/// Measures ours and Burn's on one case.
///
/// # Errors
///
/// The first device, op or Burn error.
pub fn measure_matmul(ctx: &Context, case: &MatmulCase, config: &MatmulConfig) -> Result<MatmulRecord> {
    let operands = Operands::new(case, config.seed);
    let counts = (config.warmup, config.runs);
    let (ours, ours_c) = time_ours(ctx, case, &operands, counts)?;
    let burn = time_burn(case, &operands, counts)?;
    let gflops = |ms: f64| case.flops() / (ms * 1e-3) / 1e9;
    let ours_ms = median(&ours);
    let burn_ms = burn.as_ref().map(|(times, _)| median(times));
    let LinearShape { rows, hidden, classes } = case.op_shape;
    Ok(MatmulRecord {
        op_shape: format!("{rows}x{hidden}x{classes}"),
        product: case.kind.name(),
        m: case.m,
        n: case.n,
        k: case.k,
        ours_ms,
        ours_gflops: gflops(ours_ms),
        burn_ms,
        burn_gflops: burn_ms.map(gflops),
        ours_error: operands.error_of(case, &ours_c),
        burn_error: burn.as_ref().map(|(_, c)| operands.error_of(case, c)),
        runs: ours.len(),
    })
}

/// Runs a matmul suite: per shape, its three products, ours then Burn's. Calls
/// `progress(done, total, what)` before each product and once at the end.
///
/// # Errors
///
/// The first device, op or Burn error.
pub fn run_matmul_suite(
    ctx: &Context,
    config: &MatmulConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<MatmulReport> {
    let info = ctx.adapter_info();
    let mut report = MatmulReport {
        adapter: info.name.clone(),
        backend: format!("{:?}", info.backend),
        records: Vec::new(),
    };
    let total = config.shapes.len() * ProductKind::ALL.len();
    for &shape in &config.shapes {
        for case in MatmulCase::of_op(ctx, shape)? {
            let what = format!(
                "matmul {} of {}x{}x{}: {}x{}x{}",
                case.kind.name(),
                shape.rows,
                shape.hidden,
                shape.classes,
                case.m,
                case.n,
                case.k
            );
            progress(report.records.len(), total, &what);
            report.records.push(measure_matmul(ctx, &case, config)?);
        }
    }
    progress(total, total, "done");
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test

    use super::*;

    #[test]
    fn the_products_are_the_ops_and_ours_is_right() {
        let ctx = &Context::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
        // 150 rows in windows of 64: odd sizes, every layout the op uses.
        let shape = LinearShape::new(150, 9, 301);
        let config = MatmulConfig { shapes: vec![shape], warmup: 0, runs: 1, seed: 7 };
        let cases = MatmulCase::of_window(shape, 64);
        assert_eq!(
            cases.map(|c| (c.m, c.n, c.k, c.a_transposed, c.b_transposed)),
            [(64, 301, 9, false, true), (64, 9, 301, false, false), (301, 9, 64, true, false)]
        );
        for case in &cases {
            let record = measure_matmul(ctx, case, &config).unwrap();
            assert!(record.ours_error < 1e-5, "{record:?}");
            assert!(record.ours_gflops > 0.0, "{record:?}");
        }
    }
}
