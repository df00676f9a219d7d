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

use std::num::NonZeroU64;

use wgpu::util::DeviceExt;

use crate::context::{Context, KernelKey};
use crate::error::Result;
use crate::ops::validate;
use crate::plan::{Plan, Strategy, plan};
use crate::shaders::{BindingLayout, Shader};
use crate::shape::Shape;

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

/// The per-dispatch parameters, laid out as the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    groups_x: u32,
    padding: u32,
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
    /// As [`plan`]: a forced strategy the device lacks, or a matrix too large for one
    /// storage binding.
    pub fn plan(&self, ctx: &Context, shape: Shape) -> Result<Plan> {
        plan(ctx.caps(), shape, self.strategy)
    }

    /// Records the op into the caller's `encoder`: reads `input`, writes `output` (both
    /// row-major `shape`, f32, from offset 0). Submits nothing; returns the plan it used.
    ///
    /// # Errors
    ///
    /// [`crate::Error::MissingUsage`] when a buffer lacks `STORAGE`,
    /// [`crate::Error::BufferTooSmall`] when one is smaller than the shape,
    /// [`crate::Error::AliasedBuffers`] when they are the same buffer,
    /// [`crate::Error::StrategyUnavailable`] and [`crate::Error::LimitExceeded`] as
    /// [`plan`], and [`crate::Error::Validation`] if a pipeline fails to compile.
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
        let pipeline = ctx.pipeline(&self.kernel(&plan))?;
        // Resource creation runs in error scopes: on a caller's device, wgpu's default
        // handler would panic on an error this crate's checks missed.
        let bind_group = ctx.catching(|| Ok(self.bind_group(ctx, input, output, shape, &plan, bytes)))?;
        let label = if self.log { "wgpu-softmax: log_softmax" } else { "wgpu-softmax: softmax" };
        Context::dispatch(encoder, label, &pipeline, &bind_group, plan.grid);
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
        if shape.is_empty() {
            return Ok(Vec::new());
        }
        ctx.catching(|| {
            let input_buffer = ctx.upload(input);
            let output_buffer = ctx.storage_buffer(input.len());
            let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgpu-softmax: softmax"),
            });
            self.encode(ctx, &mut encoder, &input_buffer, &output_buffer, shape)?;
            ctx.finish_and_read(encoder, &output_buffer, input.len())
        })
    }

    fn bind_group(
        &self,
        ctx: &Context,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
        shape: Shape,
        plan: &Plan,
        bytes: u64,
    ) -> wgpu::BindGroup {
        // Both fit in u32: the matrix fits in one storage binding, so rows and cols do.
        let params = Params {
            rows: u32::try_from(shape.rows).unwrap_or(u32::MAX),
            cols: u32::try_from(shape.cols).unwrap_or(u32::MAX),
            groups_x: plan.grid[0],
            padding: 0,
        };
        let params = ctx.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("wgpu-softmax: softmax params"),
            contents: bytemuck::bytes_of(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let size = NonZeroU64::new(bytes);
        ctx.bind_buffers(
            BindingLayout::Unary,
            &[
                params.as_entire_buffer_binding(),
                wgpu::BufferBinding { buffer: input, offset: 0, size },
                wgpu::BufferBinding { buffer: output, offset: 0, size },
            ],
        )
    }

    fn kernel(&self, plan: &Plan) -> KernelKey {
        let log = ("LOG_SOFTMAX", u32::from(self.log));
        match plan.strategy {
            Strategy::ThreadPerRow => KernelKey {
                shader: Shader::Softmax,
                entry_point: "softmax_thread_per_row",
                constants: vec![log],
            },
            Strategy::WorkgroupPerRow => KernelKey {
                shader: Shader::Softmax,
                entry_point: "softmax_workgroup_per_row",
                constants: vec![log],
            },
            Strategy::SubgroupPerRow => KernelKey {
                shader: Shader::SoftmaxSubgroup,
                entry_point: "softmax_subgroup_per_row",
                constants: vec![log, ("ROWS_PER_GROUP", plan.rows_per_group)],
            },
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
