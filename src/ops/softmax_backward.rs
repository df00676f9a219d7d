//! The backward passes of softmax and log-softmax: given the forward output `y` and the
//! upstream gradient `dy` (both row-major `[rows, cols]`), the gradient with respect to
//! the forward input, row by row, without forming the Jacobian:
//!
//! - `softmax_backward(y, dy) = y * (dy - sum(dy * y))`
//! - `log_softmax_backward(y, dy) = dy - exp(y) * sum(dy)`
//!
//! A masked entry of log-softmax (`y = -inf`) counts as probability 0.

use crate::context::{Context, KernelKey};
use crate::error::Result;
use crate::ops::autotune;
use crate::ops::{rows, validate};
use crate::plan::{Plan, plan};
use crate::rng::SeededRng;
use crate::shaders::Shader;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tune::{self, OpFamily, TuneKey};

/// The backward of softmax or of log-softmax, with the strategy to run it by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SoftmaxBackward {
    log: bool,
    strategy: Option<Strategy>,
}

impl SoftmaxBackward {
    /// The backward of softmax: `y` is softmax's output.
    #[must_use]
    pub const fn new() -> Self {
        Self { log: false, strategy: None }
    }

    /// The backward of log-softmax: `y` is log-softmax's output.
    #[must_use]
    pub const fn log() -> Self {
        Self { log: true, strategy: None }
    }

    /// Forces a strategy instead of letting the planner choose.
    #[must_use]
    pub const fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// Whether this is the backward of log-softmax.
    #[must_use]
    pub const fn is_log(&self) -> bool {
        self.log
    }

    /// Plans the dispatch for `shape` on `ctx`'s device.
    ///
    /// # Errors
    ///
    /// [`crate::Error::StrategyUnavailable`] for a forced strategy this device cannot run for
    /// this shape, [`crate::Error::LimitExceeded`] when a row is too wide for one storage
    /// binding or a grid cannot fit (the row split is the softmax's alone).
    pub fn plan(&self, ctx: &Context, shape: Shape) -> Result<Plan> {
        if self.strategy == Some(Strategy::SplitRow) {
            return Err(crate::error::Error::StrategyUnavailable {
                strategy: Strategy::SplitRow,
                reason: "the row split is implemented for softmax and log-softmax only",
            });
        }
        let row_bytes = [Shape::new(shape.cols, 1).byte_len()?];
        let strategy = match self.strategy {
            None if ctx.autotune() && !shape.is_empty() => Some(self.tuned_strategy(ctx, shape, &row_bytes)?),
            forced => forced,
        };
        plan(ctx.caps(), shape, strategy, &row_bytes)
    }

    /// The autotuned strategy for `shape`'s bucket (see [`Context::with_autotune`]).
    fn tuned_strategy(&self, ctx: &Context, shape: Shape, row_bytes: &[u64]) -> Result<Strategy> {
        let sample = tune::sample_shape(shape);
        let candidates = autotune::candidates(ctx, shape, row_bytes);
        let mut rng = SeededRng::new(0x7E57);
        let y = ctx.upload(&rng.logits(sample.len()?, 1.0))?;
        let dy = ctx.upload(&rng.logits(sample.len()?, 1.0))?;
        let dx = ctx.storage_buffer(sample.len()?)?;
        let key = TuneKey::new(OpFamily::SoftmaxBackward, shape);
        autotune::tuned(ctx, key, &candidates, &|encoder, strategy| {
            self.strategy(strategy).encode(ctx, encoder, &y, &dy, &dx, sample).map(|_| ())
        })
    }

    /// Records the op into the caller's `encoder`: reads `y` and `dy`, writes `dx` (all
    /// row-major `shape`, f32). Submits nothing; returns the plan it used. Split into
    /// chunks of rows where the matrices are larger than one storage binding.
    ///
    /// # Errors
    ///
    /// [`crate::Error::MissingUsage`], [`crate::Error::BufferTooSmall`] and
    /// [`crate::Error::AliasedBuffers`] for buffers that cannot be bound so, and the
    /// errors of [`SoftmaxBackward::plan`].
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        y: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        shape: Shape,
    ) -> Result<Plan> {
        let bytes = shape.byte_len()?;
        validate::storage_buffer("y", y, bytes)?;
        validate::storage_buffer("dy", dy, bytes)?;
        validate::storage_buffer("dx", dx, bytes)?;
        validate::distinct(y, dx)?;
        validate::distinct(dy, dx)?;
        let plan = self.plan(ctx, shape)?;
        if shape.is_empty() {
            return Ok(plan);
        }
        let log = ("LOG_SOFTMAX", u32::from(self.log));
        let key = match plan.strategy {
            Strategy::ThreadPerRow => KernelKey {
                shader: Shader::SoftmaxBackward,
                entry_point: "softmax_backward_thread_per_row",
                constants: vec![log],
            },
            Strategy::WorkgroupPerRow => KernelKey {
                shader: Shader::SoftmaxBackward,
                entry_point: "softmax_backward_workgroup_per_row",
                constants: vec![log],
            },
            Strategy::SplitRow => {
                return Err(crate::error::Error::StrategyUnavailable {
                    strategy: Strategy::SplitRow,
                    reason: "the row split is implemented for softmax and log-softmax only",
                });
            }
            Strategy::SubgroupPerRow => KernelKey {
                shader: Shader::SoftmaxBackwardSubgroup,
                entry_point: "softmax_backward_subgroup_per_row",
                constants: vec![log, ("ROWS_PER_GROUP", plan.rows_per_group)],
            },
        };
        let label =
            if self.log { "wgpu-softmax: log_softmax_backward" } else { "wgpu-softmax: softmax_backward" };
        rows::encode_chunks(ctx, encoder, &[key], label, (&[y, dy, dx], None), shape, &plan)?;
        Ok(plan)
    }

    /// Runs the op on host data, waiting at most the context's timeout.
    ///
    /// # Errors
    ///
    /// [`crate::Error::ShapeMismatch`] when `y` or `dy` is not `rows * cols` long, and
    /// the errors of [`SoftmaxBackward::encode`].
    pub fn run(&self, ctx: &Context, y: &[f32], dy: &[f32], shape: Shape) -> Result<Vec<f32>> {
        shape.check_len("y", y.len())?;
        shape.check_len("dy", dy.len())?;
        self.plan(ctx, shape)?;
        rows::run_on_host(ctx, &[y, dy], shape, |encoder, inputs, dx, piece| {
            self.encode(ctx, encoder, inputs[0], inputs[1], dx, piece)
        })
    }
}

/// The gradient of softmax's input from its output `y` and the upstream gradient `dy`.
/// Shorthand for `SoftmaxBackward::new().run(ctx, y, dy, shape)`.
///
/// # Errors
///
/// As [`SoftmaxBackward::run`].
pub fn softmax_backward(ctx: &Context, y: &[f32], dy: &[f32], shape: Shape) -> Result<Vec<f32>> {
    SoftmaxBackward::new().run(ctx, y, dy, shape)
}

/// The gradient of log-softmax's input from its output `y` and the upstream gradient
/// `dy`. Shorthand for `SoftmaxBackward::log().run(ctx, y, dy, shape)`.
///
/// # Errors
///
/// As [`SoftmaxBackward::run`].
pub fn log_softmax_backward(ctx: &Context, y: &[f32], dy: &[f32], shape: Shape) -> Result<Vec<f32>> {
    SoftmaxBackward::log().run(ctx, y, dy, shape)
}
