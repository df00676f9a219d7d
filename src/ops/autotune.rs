//! Autotuning: for an (op family, shape bucket) on a device, time every strategy the
//! device can run, once, and keep the fastest for later calls. Turned on per context
//! ([`Context::with_autotune`]); the planner's heuristics decide otherwise.

use crate::context::Context;
use crate::error::Result;
use crate::plan::{choose_strategy, lanes_per_row, plan};
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::timing::{Timer, median};
use crate::tune::TuneKey;

/// A strategy that gives each row more than this many lanes per column leaves most of its
/// lanes idle on every adapter (256 lanes on 10 columns): it is not worth timing, and on a
/// software adapter timing it costs seconds (4.9 s a run at 65536x10 on lavapipe).
const MAX_LANES_PER_COLUMN: u32 = 8;

/// A candidate whose first run takes this many times the best median so far is dropped
/// without its timed runs.
const DROP_FACTOR: f64 = 4.0;

/// The strategies worth timing for `shape` (whose arrays bind `row_bytes` per row): those
/// the device can run, without most of their lanes idle. The heuristics' choice first, so
/// that the others are measured against a good time.
pub(crate) fn candidates(ctx: &Context, shape: Shape, row_bytes: &[u64]) -> Vec<Strategy> {
    let cols = u32::try_from(shape.cols).unwrap_or(u32::MAX);
    let heuristic = choose_strategy(ctx.caps(), shape);
    let mut found: Vec<Strategy> = Strategy::ALL
        .into_iter()
        .filter(|&s| plan(ctx.caps(), shape, Some(s), row_bytes).is_ok())
        .filter(|&s| {
            s == heuristic || lanes_per_row(ctx.caps(), s) <= cols.saturating_mul(MAX_LANES_PER_COLUMN)
        })
        .collect();
    found.sort_by_key(|&s| s != heuristic);
    found
}

/// The tuned strategy for `key`: the cached one, or the fastest of `candidates` as timed by
/// `time_one` (milliseconds of one run on a sample), then cached. Tuning runs without
/// holding the cache's lock; threads racing on one bucket keep the first answer stored.
pub(crate) fn tuned(
    ctx: &Context,
    key: TuneKey,
    candidates: &[Strategy],
    time_one: &dyn Fn(&mut wgpu::CommandEncoder, Strategy) -> Result<()>,
) -> Result<Strategy> {
    if let Some(found) = ctx.tune_cache().get(&key) {
        return Ok(found);
    }
    let timer = Timer::new(ctx);
    let mut best: Option<(f64, Strategy)> = None;
    for &strategy in candidates {
        let mut record = |encoder: &mut wgpu::CommandEncoder| time_one(encoder, strategy);
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
    let Some((_, chosen)) = best else { return Ok(Strategy::WorkgroupPerRow) };
    Ok(ctx.tune_cache().insert(key, chosen))
}
