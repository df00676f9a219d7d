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

use crate::context::Context;
use crate::dtype::{DType, Element};
use crate::error::Result;
use crate::kernels::{GroupShape, KernelSpec, OpKernel, RowParams, Slot, VectorWidth};
use crate::ops::autotune::{self, RowPlanning};
use crate::ops::rows::{self, RowDispatch};
use crate::ops::validate;
use crate::plan::Plan;
use crate::record::Recorder;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tensor::TensorRef;

/// Softmax or log-softmax, with the strategy to run it by.
///
/// ```no_run
/// # fn main() -> Result<(), wgpu_softmax::Error> {
/// use wgpu_softmax::{Context, Shape, Softmax, Strategy, bf16};
/// let ctx = Context::new()?;
/// let logits = [1.0, 2.0, 3.0, 0.0, 0.0, 0.0];
/// let log_probs = Softmax::log()
///     .strategy(Strategy::WorkgroupPerRow)
///     .run(&ctx, &logits, Shape::new(2, 3))?;
/// // The same in bf16: half the bytes; computed in f32, rounded once when stored.
/// let half: Vec<bf16> = logits.iter().map(|&x| bf16::from_f32(x)).collect();
/// let log_probs_bf16: Vec<bf16> = Softmax::log().run(&ctx, &half, Shape::new(2, 3))?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Softmax {
    log: bool,
    strategy: Option<Strategy>,
}

const KERNEL: OpKernel = OpKernel::Softmax;

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

    /// Plans the dispatch of f32 data of `shape` on `ctx`'s device without recording
    /// anything.
    ///
    /// # Errors
    ///
    /// [`crate::Error::StrategyUnavailable`] for a forced strategy this device cannot run
    /// for this shape, [`crate::Error::LimitExceeded`] when a row is too wide for one
    /// storage binding or a grid cannot fit.
    pub fn plan(&self, ctx: &Context, shape: Shape) -> Result<Plan> {
        self.plan_for(ctx, shape, DType::F32, VectorWidth::Vec4)
    }

    fn plan_for(&self, ctx: &Context, shape: Shape, dtype: DType, vector: VectorWidth) -> Result<Plan> {
        let row_bytes = [shape.cols as u64 * dtype.size(); 2];
        let planning = RowPlanning {
            kernel: KERNEL,
            forced: self.strategy,
            dtype,
            vector,
            variant: 0,
            row_bytes: &row_bytes,
        };
        autotune::plan_op(ctx, shape, planning, &|ctx, encoder, strategy, sample| {
            let dispatch = self.dispatch(ctx, strategy, sample.tensor(0), sample.tensor(1), vector);
            let plan = rows::plan_rows(ctx, (KERNEL, dtype), sample.shape, Some(strategy), &row_bytes)?;
            rows::encode_rows(ctx, &mut Recorder::new(encoder), &dispatch, sample.shape, &plan)
        })
    }

    fn dispatch<'a>(
        &self,
        ctx: &Context,
        strategy: Strategy,
        input: TensorRef<'a>,
        output: TensorRef<'a>,
        vector: VectorWidth,
    ) -> RowDispatch<'a> {
        RowDispatch {
            spec: KernelSpec {
                op: KERNEL,
                strategy,
                dtype: input.dtype(),
                vector,
                cached: rows::keeps_rows(ctx),
                strided: false,
                paired: false,
                group: GroupShape::DEFAULT,
            },
            constants: vec![("LOG_SOFTMAX", u32::from(self.log))],
            tensors: vec![(Slot::Input, input), (Slot::Output, output)],
            per_row: Vec::new(),
            whole: Vec::new(),
            params: RowParams::default(),
            extras: None,
        }
    }

    /// Records the op into the caller's `encoder`: reads `input`, writes `output` (both
    /// row-major `shape`, of one storage type; a buffer or slice is f32, a [`TensorRef`]
    /// says its type). Submits nothing; returns the plan it used. A matrix larger than one
    /// storage binding is split into chunks of rows, bound at aligned offsets, one
    /// dispatch each.
    ///
    /// # Errors
    ///
    /// [`crate::Error::MissingUsage`] when a buffer lacks `STORAGE`,
    /// [`crate::Error::MisalignedOffset`] for a region the device cannot bind from,
    /// [`crate::Error::BufferTooSmall`] when one is smaller than the shape
    /// ([`crate::Error::UntypedHalfTensor`] when an untyped one would hold it in 16 bits),
    /// [`crate::Error::DTypeMismatch`] when the two types differ,
    /// [`crate::Error::AliasedBuffers`] when they are the same buffer,
    /// [`crate::Error::ForeignBuffer`] for a buffer of another device, the errors of
    /// [`Softmax::plan`], and [`crate::Error::Validation`] if a pipeline fails to compile.
    pub fn encode<'a>(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        input: impl Into<TensorRef<'a>>,
        output: impl Into<TensorRef<'a>>,
        shape: Shape,
    ) -> Result<Plan> {
        let (input, output) = (input.into(), output.into());
        let elements = shape.len()? as u64;
        let dtype = input.dtype();
        validate::tensor(ctx, ("input", "input"), &input, dtype, elements)?;
        validate::tensor(ctx, ("output", "input"), &output, dtype, elements)?;
        validate::distinct(input.buffer(), output.buffer())?;
        let vector = rows::vector_width(&[input, output], elements);
        let plan = self.plan_for(ctx, shape, dtype, vector)?;
        let dispatch = self.dispatch(ctx, plan.strategy, input, output, vector);
        rows::encode_rows(ctx, &mut Recorder::new(encoder), &dispatch, shape, &plan)?;
        Ok(plan)
    }

    /// Runs the op on host data of any element type (`f32`, [`crate::f16`](struct@crate::f16),
    /// [`crate::bf16`]): uploads `input` (row-major `shape`), computes on the GPU in f32,
    /// and reads the result back in the same type, waiting at most the context's timeout.
    ///
    /// # Errors
    ///
    /// [`crate::Error::ShapeMismatch`] when `input.len()` is not `rows * cols`,
    /// [`crate::Error::Timeout`] when the GPU takes longer than the context's timeout,
    /// and the errors of [`Softmax::encode`].
    pub fn run<T: Element>(&self, ctx: &Context, input: &[T], shape: Shape) -> Result<Vec<T>> {
        shape.check_len("input", input.len())?;
        // Refuse what cannot run before allocating anything on the device.
        self.plan_for(ctx, shape, T::DTYPE, VectorWidth::Vec4)?;
        rows::run_on_host(ctx, &[input], shape, |encoder, inputs, output, piece| {
            self.encode(ctx, encoder, inputs[0], output, piece)
        })
    }
}

/// Softmax of each row of `input` (row-major `shape`) on the GPU; the strategy is chosen
/// per shape and device. Shorthand for `Softmax::new().run(ctx, input, shape)`.
///
/// # Errors
///
/// As [`Softmax::run`].
pub fn softmax<T: Element>(ctx: &Context, input: &[T], shape: Shape) -> Result<Vec<T>> {
    Softmax::new().run(ctx, input, shape)
}

/// Log-softmax of each row of `input` (row-major `shape`) on the GPU. Shorthand for
/// `Softmax::log().run(ctx, input, shape)`.
///
/// # Errors
///
/// As [`Softmax::run`].
pub fn log_softmax<T: Element>(ctx: &Context, input: &[T], shape: Shape) -> Result<Vec<T>> {
    Softmax::log().run(ctx, input, shape)
}
