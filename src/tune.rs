//! Autotuning: for a (op, shape bucket) on a device, time every strategy the device can
//! run, once, and keep the fastest for later calls. Turned on per context
//! ([`crate::Context::with_autotune`]); the planner's heuristics decide otherwise.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::context::Context;
use crate::error::Result;
use crate::plan::{Strategy, plan};
use crate::shape::Shape;
use crate::timer::{Timer, median};

/// Which kernel family a tuned choice is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpFamily {
    /// Softmax and log-softmax.
    Softmax,
    /// Their backward passes.
    SoftmaxBackward,
    /// The fused cross-entropy.
    CrossEntropy,
}

/// A shape bucket: columns and rows rounded up to powers of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TuneKey {
    /// The kernel family.
    pub family: OpFamily,
    /// Columns, rounded up to a power of two.
    pub cols_bucket: usize,
    /// Rows, rounded up to a power of two.
    pub rows_bucket: usize,
}

impl TuneKey {
    /// The bucket of `shape` for `family`.
    #[must_use]
    pub fn new(family: OpFamily, shape: Shape) -> Self {
        Self {
            family,
            cols_bucket: shape.cols.max(1).checked_next_power_of_two().unwrap_or(usize::MAX),
            rows_bucket: shape.rows.max(1).checked_next_power_of_two().unwrap_or(usize::MAX),
        }
    }
}

/// Elements of the sample a bucket is timed on, at most: tuning stays quick.
const SAMPLE_ELEMENTS: usize = 1 << 22;

/// The shape a bucket is timed on: the caller's columns, and as many of its rows as fit
/// in the sample.
#[must_use]
pub(crate) fn sample_shape(shape: Shape) -> Shape {
    Shape::new(shape.rows.min((SAMPLE_ELEMENTS / shape.cols.max(1)).max(1)), shape.cols)
}

/// The strategies the device can run for `shape` (whose arrays bind `row_bytes` per row).
pub(crate) fn candidates(ctx: &Context, shape: Shape, row_bytes: &[u64]) -> Vec<Strategy> {
    Strategy::ALL.into_iter().filter(|&s| plan(ctx.caps(), shape, Some(s), row_bytes).is_ok()).collect()
}

/// The choices made so far on one device.
#[derive(Debug, Default)]
pub(crate) struct TuneCache {
    choices: RwLock<HashMap<TuneKey, Strategy>>,
}

impl Context {
    /// The tuned strategy for `key`: the cached one, or the fastest of `candidates` as
    /// timed by `time_one` (milliseconds of one run on a sample), then cached. Tuning runs
    /// without holding the cache's lock; threads racing on one bucket keep the first
    /// answer stored.
    pub(crate) fn tuned(
        &self,
        key: TuneKey,
        candidates: &[Strategy],
        time_one: &dyn Fn(&mut wgpu::CommandEncoder, Strategy) -> Result<()>,
    ) -> Result<Strategy> {
        let cache = &self.tune_cache().choices;
        if let Some(&found) = cache.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key) {
            return Ok(found);
        }
        let timer = Timer::new(self);
        let mut best: Option<(f64, Strategy)> = None;
        for &strategy in candidates {
            let mut record = |encoder: &mut wgpu::CommandEncoder| time_one(encoder, strategy);
            // One untimed run compiles the pipeline and warms the caches.
            timer.time(self, &mut record)?;
            let times = (0..3).map(|_| timer.time(self, &mut record)).collect::<Result<Vec<f64>>>()?;
            let time = median(&times);
            if best.is_none_or(|(fastest, _)| time < fastest) {
                best = Some((time, strategy));
            }
        }
        let Some((_, chosen)) = best else { return Ok(Strategy::WorkgroupPerRow) };
        let mut choices = cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(*choices.entry(key).or_insert(chosen))
    }

    /// The strategies autotuning has chosen on this device so far.
    #[must_use]
    pub fn tuned_strategies(&self) -> Vec<(TuneKey, Strategy)> {
        let choices = self.tune_cache().choices.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        choices.iter().map(|(&k, &s)| (k, s)).collect()
    }
}
