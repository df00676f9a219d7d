//! Softmax and log-softmax over the last axis of a row-major `[rows, cols]` matrix.
//!
//! For a row `x` with max `m` over its finite entries and `s = sum_c exp(x_c - m)`:
//!
//! - `softmax(x)_c = exp(x_c - m) / s`
//! - `log_softmax(x)_c = (x_c - m) - ln(s)`
//!
//! Max and sum come from one online pass over the row (Milakov and Gimelshein, 2018), so
//! no entry overflows whatever its size: offsets of ±1e4 lose nothing.
//!
//! Special values, as PyTorch treats them:
//! - a `-inf` entry is a mask: probability 0 (log-softmax `-inf`);
//! - a row of only `-inf` gives NaN in every entry;
//! - a row holding a NaN or `+inf` gives NaN in every entry.

use crate::context::{Context, KernelKey};
use crate::error::Result;
use crate::ops::autotune;
use crate::ops::{rows, validate};
use crate::plan::{Plan, plan, prefers_split_rows, split_segments};
use crate::rng::SeededRng;
use crate::shaders::Shader;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tune::{self, OpFamily, TuneKey};

/// Softmax or log-softmax, with the strategy to run it by.
///
/// ```no_run
/// # fn main() -> Result<(), wgpu_softmax::Error> {
/// use wgpu_softmax::{Context, Shape, Softmax, Strategy};
/// let ctx = Context::new()?;
/// let logits = [1.0, 2.0, 3.0, 0.0, 0.0, 0.0];
/// let log_probs = Softmax::log()
///     .strategy(Strategy::WorkgroupPerRow)
///     .run(&ctx, &logits, Shape::new(2, 3))?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Softmax {
    log: bool,
    strategy: Option<Strategy>,
}

impl Softmax {
    /// Softmax, with the strategy chosen per shape and device.
    #[must_use]
    pub const fn new() -> Self {
        Self { log: false, strategy: None }
    }

    /// Log-softmax, with the strategy chosen per shape and device.
    #[must_use]
    pub const fn log() -> Self {
        Self { log: true, strategy: None }
    }

    /// Forces a strategy instead of letting the planner choose (for tests and benchmarks).
    #[must_use]
    pub const fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// Whether this is log-softmax.
    #[must_use]
    pub const fn is_log(&self) -> bool {
        self.log
    }

    /// Plans the dispatch for `shape` on `ctx`'s device without recording anything.
    ///
    /// # Errors
    ///
    /// [`crate::Error::StrategyUnavailable`] for a forced strategy this device cannot run for
    /// this shape, [`crate::Error::LimitExceeded`] when a row is too wide for one storage
    /// binding or a grid cannot fit.
    pub fn plan(&self, ctx: &Context, shape: Shape) -> Result<Plan> {
        let row_bytes = [Shape::new(shape.cols, 1).byte_len()?];
        let strategy = match self.strategy {
            None if ctx.autotune() && !shape.is_empty() => Some(self.tuned_strategy(ctx, shape, &row_bytes)?),
            None if prefers_split_rows(ctx.caps(), shape) => Some(Strategy::SplitRow),
            forced => forced,
        };
        match (strategy, plan(ctx.caps(), shape, strategy, &row_bytes)) {
            // Rows too wide for any per-row strategy on this driver still split.
            (None, Err(crate::Error::StrategyUnavailable { .. })) => {
                plan(ctx.caps(), shape, Some(Strategy::SplitRow), &row_bytes)
            }
            (_, planned) => planned,
        }
    }

    /// The autotuned strategy for `shape`'s bucket: each strategy the device can run,
    /// timed on a sample of random rows.
    fn tuned_strategy(&self, ctx: &Context, shape: Shape, row_bytes: &[u64]) -> Result<Strategy> {
        let sample = tune::sample_shape(shape);
        let mut candidates = autotune::candidates(ctx, shape, row_bytes);
        // A row of one segment is a workgroup per row with an extra pass.
        if split_segments(shape.cols) >= 2
            && plan(ctx.caps(), shape, Some(Strategy::SplitRow), row_bytes).is_ok()
        {
            candidates.push(Strategy::SplitRow);
        }
        let input = ctx.upload(&SeededRng::new(0x7E57).logits(sample.len()?, 8.0))?;
        let output = ctx.storage_buffer(sample.len()?)?;
        let key = TuneKey::new(OpFamily::Softmax, shape);
        autotune::tuned(ctx, key, &candidates, &|encoder, strategy| {
            self.strategy(strategy).encode(ctx, encoder, &input, &output, sample).map(|_| ())
        })
    }

    /// Records the op into the caller's `encoder`: reads `input`, writes `output` (both
    /// row-major `shape`, f32, from offset 0). Submits nothing; returns the plan it used.
    /// A matrix larger than one storage binding is split into chunks of rows, bound at
    /// aligned offsets, one dispatch each.
    ///
    /// # Errors
    ///
    /// [`crate::Error::MissingUsage`] when a buffer lacks `STORAGE`,
    /// [`crate::Error::BufferTooSmall`] when one is smaller than the shape,
    /// [`crate::Error::AliasedBuffers`] when they are the same buffer,
    /// the errors of [`Softmax::plan`], and [`crate::Error::Validation`] if a pipeline fails
    /// to compile.
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
        shape: Shape,
    ) -> Result<Plan> {
        let bytes = shape.byte_len()?;
        validate::storage_buffer("input", input, bytes)?;
        validate::storage_buffer("output", output, bytes)?;
        validate::distinct(input, output)?;
        let plan = self.plan(ctx, shape)?;
        if shape.is_empty() {
            return Ok(plan);
        }
        let label = if self.log { "wgpu-softmax: log_softmax" } else { "wgpu-softmax: softmax" };
        // A split row keeps each segment's statistics between its two passes.
        let largest_chunk = plan.chunks.iter().map(|c| c.rows).max().unwrap_or(0);
        let segment_stats = (plan.strategy == Strategy::SplitRow)
            .then(|| ctx.storage_buffer(3 * largest_chunk * split_segments(shape.cols)))
            .transpose()?;
        let kernels = self.kernels(&plan, shape.cols);
        rows::encode_chunks(
            ctx,
            encoder,
            &kernels,
            label,
            (&[input, output], segment_stats.as_ref()),
            shape,
            &plan,
        )?;
        Ok(plan)
    }

    /// Runs the op on host data: uploads `input` (row-major `shape`), computes on the GPU,
    /// and reads the result back, waiting at most the context's timeout.
    ///
    /// # Errors
    ///
    /// [`crate::Error::ShapeMismatch`] when `input.len()` is not `rows * cols`,
    /// [`crate::Error::Timeout`] when the GPU takes longer than the context's timeout,
    /// and the errors of [`Softmax::encode`].
    pub fn run(&self, ctx: &Context, input: &[f32], shape: Shape) -> Result<Vec<f32>> {
        shape.check_len("input", input.len())?;
        // Refuse what cannot run before allocating anything on the device.
        self.plan(ctx, shape)?;
        rows::run_on_host(ctx, &[input], shape, |encoder, inputs, output, piece| {
            self.encode(ctx, encoder, inputs[0], output, piece)
        })
    }

    /// The kernels of `plan`'s strategy: vec4 loads and stores where rows are a multiple
    /// of 4 long (their chunks then start on 16-byte boundaries too).
    fn kernels(&self, plan: &Plan, cols: usize) -> Vec<KernelKey> {
        let log = ("LOG_SOFTMAX", u32::from(self.log));
        let vec4 = cols.is_multiple_of(4);
        let key = |shader, entry_point, constants| KernelKey { shader, entry_point, constants };
        match (plan.strategy, vec4) {
            (Strategy::SplitRow, _) => vec![
                key(Shader::SoftmaxSplit, "softmax_split_stats", vec![log]),
                key(Shader::SoftmaxSplit, "softmax_split_write", vec![log]),
            ],
            (Strategy::ThreadPerRow, false) => {
                vec![key(Shader::Softmax, "softmax_thread_per_row", vec![log])]
            }
            (Strategy::ThreadPerRow, true) => {
                vec![key(Shader::SoftmaxVec4, "softmax_vec4_thread_per_row", vec![log])]
            }
            (Strategy::WorkgroupPerRow, false) => {
                vec![key(Shader::Softmax, "softmax_workgroup_per_row", vec![log])]
            }
            (Strategy::WorkgroupPerRow, true) => {
                vec![key(Shader::SoftmaxVec4, "softmax_vec4_workgroup_per_row", vec![log])]
            }
            (Strategy::SubgroupPerRow, false) => vec![key(
                Shader::SoftmaxSubgroup,
                "softmax_subgroup_per_row",
                vec![log, ("ROWS_PER_GROUP", plan.rows_per_group)],
            )],
            (Strategy::SubgroupPerRow, true) => vec![key(
                Shader::SoftmaxVec4Subgroup,
                "softmax_vec4_subgroup_per_row",
                vec![log, ("ROWS_PER_GROUP", plan.rows_per_group)],
            )],
        }
    }
}

/// Softmax of each row of `input` (row-major `shape`) on the GPU; the strategy is chosen
/// per shape and device. Shorthand for `Softmax::new().run(ctx, input, shape)`.
///
/// # Errors
///
/// As [`Softmax::run`].
pub fn softmax(ctx: &Context, input: &[f32], shape: Shape) -> Result<Vec<f32>> {
    Softmax::new().run(ctx, input, shape)
}

/// Log-softmax of each row of `input` (row-major `shape`) on the GPU. Shorthand for
/// `Softmax::log().run(ctx, input, shape)`.
///
/// # Errors
///
/// As [`Softmax::run`].
pub fn log_softmax(ctx: &Context, input: &[f32], shape: Shape) -> Result<Vec<f32>> {
    Softmax::log().run(ctx, input, shape)
}
