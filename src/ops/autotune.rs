//! Autotuning: for a row op, a storage type, a vector width, its options and a shape
//! bucket, time every strategy the device can run, once, on a sample of the shape, and
//! keep the fastest for later calls. Turned on per context ([`Context::with_autotune`]);
//! the planner's heuristics decide otherwise.

use crate::context::Context;
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::{OpKernel, VectorWidth};
use crate::ops::rows;
use crate::plan::{Plan, choose_strategy, lanes_per_row, plan, split_segments_most};
use crate::rng::SeededRng;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tensor::TensorRef;
use crate::timing::{Timer, median};
use crate::tune::{OpFamily, TuneKey, sample_shape};

/// A strategy that gives each row more than this many lanes per column leaves most of its
/// lanes idle on every adapter (256 lanes on 10 columns): it is not worth timing, and on a
/// software adapter timing it costs seconds (4.9 s a run at 65536x10 on lavapipe).
const MAX_LANES_PER_COLUMN: u32 = 8;

/// A candidate whose first run takes this many times the best median so far is dropped
/// without its timed runs.
const DROP_FACTOR: f64 = 4.0;

/// What a row op is planned for, besides its shape: everything that changes its kernel,
/// the strategy the caller forced, and the bytes per row of the arrays it binds per chunk.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowPlanning<'a> {
    /// The op's kernel (its declaration names its strategies and tuning family).
    pub(crate) kernel: OpKernel,
    /// The strategy the caller forced, if any.
    pub(crate) forced: Option<Strategy>,
    /// The storage type.
    pub(crate) dtype: DType,
    /// The access width.
    pub(crate) vector: VectorWidth,
    /// The op's own options that change its kernel's speed (the cross-entropy's gradient,
    /// reduction and targets), packed by the op; 0 for none.
    pub(crate) variant: u32,
    /// Bytes per row of each array bound per chunk.
    pub(crate) row_bytes: &'a [u64],
}

/// Plans a row op, the one way every row op is planned: the forced strategy; else, on a
/// context that autotunes and for an op whose declaration names a tuning family, the
/// tuned one (timed once per bucket by `time_one`, the op's hook that records one run on
/// the sample); else the planner's heuristics.
///
/// # Errors
///
/// The errors of [`rows::plan_rows`], and those of timing the candidates.
pub(crate) fn plan_op(
    ctx: &Context,
    shape: Shape,
    planning: RowPlanning<'_>,
    time_one: &TimeOne<'_>,
) -> Result<Plan> {
    let family = planning.kernel.decl().family;
    let strategy = match (planning.forced, family) {
        (None, Some(family)) if ctx.autotune() && !shape.is_empty() => {
            Some(tuned_rows(ctx, family, shape, planning, time_one)?)
        }
        (forced, _) => forced,
    };
    rows::plan_rows(ctx, (planning.kernel, planning.dtype), shape, strategy, planning.row_bytes)
}

/// Random data of a sample of the shape, to time strategies on: the op's class-axis
/// tensors (random logits in its storage type) and zeroed per-row arrays of 4 bytes a
/// row (class targets 0, losses).
pub(crate) struct Sample {
    /// The sample's shape: the caller's columns, and as many rows as the sample holds.
    pub(crate) shape: Shape,
    dtype: DType,
    tensors: Vec<wgpu::Buffer>,
    per_row: Vec<wgpu::Buffer>,
}

impl Sample {
    /// The `index`-th class-axis tensor.
    pub(crate) fn tensor(&self, index: usize) -> TensorRef<'_> {
        TensorRef::new(&self.tensors[index.min(self.tensors.len() - 1)], self.dtype)
    }

    /// The `index`-th per-row array.
    pub(crate) fn per_row(&self, index: usize) -> &wgpu::Buffer {
        &self.per_row[index.min(self.per_row.len() - 1)]
    }
}

/// The strategies worth timing for `op` on `shape`: those the op has and the device can
/// run, without most of their lanes idle; the split only where a row is several segments.
/// The heuristics' choice first, so that the others are measured against a good time.
fn candidates(
    ctx: &Context,
    (op, dtype): (OpKernel, DType),
    shape: Shape,
    row_bytes: &[u64],
) -> Vec<Strategy> {
    let cols = u32::try_from(shape.cols).unwrap_or(u32::MAX);
    let heuristic = choose_strategy(ctx.caps(), shape);
    let mut found: Vec<Strategy> = op
        .strategies()
        .iter()
        .copied()
        .filter(|&s| s != Strategy::SplitRow || split_segments_most(shape.cols) >= 2)
        .filter(|&s| plan(ctx.caps(), shape, Some(s), row_bytes).is_ok())
        .filter(|&s| rows::strategy_fits(ctx.caps(), op, s, dtype))
        .filter(|&s| {
            s == heuristic
                || lanes_per_row(ctx.caps(), s, shape.cols) <= cols.saturating_mul(MAX_LANES_PER_COLUMN)
        })
        .collect();
    found.sort_by_key(|&s| s != heuristic);
    found
}

/// Times one run of a strategy on the sample, recording into the encoder.
pub(crate) type TimeOne<'a> =
    dyn Fn(&Context, &mut wgpu::CommandEncoder, Strategy, &Sample) -> Result<()> + 'a;

/// The tuned strategy of `planning` for `shape`: the cached one, or the fastest candidate
/// as timed by `time_one` on a sample, then cached. Tuning runs without holding the
/// cache's lock; threads racing on one bucket keep the first answer stored.
fn tuned_rows(
    ctx: &Context,
    family: OpFamily,
    shape: Shape,
    planning: RowPlanning<'_>,
    time_one: &TimeOne<'_>,
) -> Result<Strategy> {
    let RowPlanning { kernel: op, dtype, row_bytes, .. } = planning;
    let key = TuneKey::new(family, shape)
        .with(dtype, planning.vector.words(), planning.variant)
        .with_cached_rows(ctx.cached_rows());
    if let Some(found) = ctx.tune_cache().get(&key) {
        return Ok(found);
    }
    let sample = make_sample(ctx, op, shape, dtype)?;
    let timer = Timer::new(ctx);
    let mut best: Option<(f64, Strategy)> = None;
    for strategy in candidates(ctx, (op, dtype), shape, row_bytes) {
        let mut record = |encoder: &mut wgpu::CommandEncoder| time_one(ctx, encoder, strategy, &sample);
        // One untimed run compiles the pipeline and warms the caches; a candidate far
        // slower than the best so far stops there.
        let first = timer.time(ctx, &mut record)?;
        if best.is_some_and(|(fastest, _)| first > DROP_FACTOR * fastest) {
            continue;
        }
        let times = (0..3).map(|_| timer.time(ctx, &mut record)).collect::<Result<Vec<f64>>>()?;
        let time = median(&times);
        if best.is_none_or(|(fastest, _)| time < fastest) {
            best = Some((time, strategy));
        }
    }
    let chosen = best.map_or(Strategy::WorkgroupPerRow, |(_, strategy)| strategy);
    Ok(ctx.tune_cache().insert(key, chosen))
}

fn make_sample(ctx: &Context, op: OpKernel, shape: Shape, dtype: DType) -> Result<Sample> {
    let shape = sample_shape(shape);
    let len = shape.len()?;
    let mut rng = SeededRng::new(0x7E57);
    // Three tensors at least, all distinct: a cross-entropy may bind logits, gradient and
    // probability targets, and the autotuner times the separate gradient for in-place.
    let tensors = (0..op.tensors().len().max(3))
        .map(|_| ctx.upload_f32_as(dtype, &rng.logits(len, 8.0)))
        .collect::<Result<Vec<_>>>()?;
    let per_row = (0..3).map(|_| ctx.owned_scratch(4 * shape.rows as u64)).collect::<Result<Vec<_>>>()?;
    Ok(Sample { shape, dtype, tensors, per_row })
}
