//! The backward passes of softmax and log-softmax: given the forward output `y` and the
//! upstream gradient `dy` (both row-major `[rows, cols]`), the gradient with respect to
//! the forward input, row by row, without forming the Jacobian:
//!
//! - `softmax_backward(y, dy) = y * (dy - sum(dy * y))`
//! - `log_softmax_backward(y, dy) = dy - exp(y) * sum(dy)`
//!
//! A masked entry of log-softmax (`y = -inf`) counts as probability 0.

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

/// The backward of softmax or of log-softmax, with the strategy to run it by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SoftmaxBackward {
    log: bool,
    strategy: Option<Strategy>,
}

const KERNEL: OpKernel = OpKernel::SoftmaxBackward;

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

    /// Plans the dispatch of f32 data of `shape` on `ctx`'s device.
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
        let row_bytes = [shape.cols as u64 * dtype.size(); 3];
        let planning = RowPlanning {
            kernel: KERNEL,
            forced: self.strategy,
            dtype,
            vector,
            variant: 0,
            row_bytes: &row_bytes,
        };
        autotune::plan_op(ctx, shape, planning, &|ctx, encoder, strategy, sample| {
            let tensors = [sample.tensor(0), sample.tensor(1), sample.tensor(2)];
            let dispatch = self.dispatch(ctx, strategy, tensors, vector);
            let plan = rows::plan_rows(ctx, (KERNEL, dtype), sample.shape, Some(strategy), &row_bytes)?;
            rows::encode_rows(ctx, &mut Recorder::new(encoder), &dispatch, sample.shape, &plan)
        })
    }

    fn dispatch<'a>(
        &self,
        ctx: &Context,
        strategy: Strategy,
        [y, dy, dx]: [TensorRef<'a>; 3],
        vector: VectorWidth,
    ) -> RowDispatch<'a> {
        RowDispatch {
            spec: KernelSpec {
                op: KERNEL,
                strategy,
                dtype: y.dtype(),
                vector,
                cached: rows::keeps_rows(ctx),
                strided: false,
                paired: false,
                group: GroupShape::DEFAULT,
            },
            constants: vec![("LOG_SOFTMAX", u32::from(self.log))],
            tensors: vec![(Slot::Y, y), (Slot::Dy, dy), (Slot::Dx, dx)],
            per_row: Vec::new(),
            whole: Vec::new(),
            params: RowParams::default(),
            extras: None,
        }
    }

    /// Records the op into the caller's `encoder`: reads `y` and `dy`, writes `dx` (all
    /// row-major `shape`, of one storage type). Submits nothing; returns the plan it used.
    /// Split into chunks of rows where the matrices are larger than one storage binding.
    ///
    /// # Errors
    ///
    /// [`crate::Error::MissingUsage`], [`crate::Error::MisalignedOffset`],
    /// [`crate::Error::BufferTooSmall`], [`crate::Error::UntypedHalfTensor`],
    /// [`crate::Error::DTypeMismatch`],
    /// [`crate::Error::AliasedBuffers`] and [`crate::Error::ForeignBuffer`] for buffers
    /// that cannot be bound so, and the errors of [`SoftmaxBackward::plan`].
    pub fn encode<'a>(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        y: impl Into<TensorRef<'a>>,
        dy: impl Into<TensorRef<'a>>,
        dx: impl Into<TensorRef<'a>>,
        shape: Shape,
    ) -> Result<Plan> {
        let tensors = [y.into(), dy.into(), dx.into()];
        let elements = shape.len()? as u64;
        let dtype = tensors[0].dtype();
        for (tensor, what) in tensors.iter().zip(["y", "dy", "dx"]) {
            validate::tensor(ctx, (what, "y"), tensor, dtype, elements)?;
        }
        validate::distinct(tensors[0].buffer(), tensors[2].buffer())?;
        validate::distinct(tensors[1].buffer(), tensors[2].buffer())?;
        let vector = rows::vector_width(&tensors, elements);
        let plan = self.plan_for(ctx, shape, dtype, vector)?;
        rows::encode_rows(
            ctx,
            &mut Recorder::new(encoder),
            &self.dispatch(ctx, plan.strategy, tensors, vector),
            shape,
            &plan,
        )?;
        Ok(plan)
    }

    /// Runs the op on host data of any element type, waiting at most the context's
    /// timeout; `dx` comes back in the same type.
    ///
    /// # Errors
    ///
    /// [`crate::Error::ShapeMismatch`] when `y` or `dy` is not `rows * cols` long, and
    /// the errors of [`SoftmaxBackward::encode`].
    pub fn run<T: Element>(&self, ctx: &Context, y: &[T], dy: &[T], shape: Shape) -> Result<Vec<T>> {
        shape.check_len("y", y.len())?;
        shape.check_len("dy", dy.len())?;
        self.plan_for(ctx, shape, T::DTYPE, VectorWidth::Vec4)?;
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
pub fn softmax_backward<T: Element>(ctx: &Context, y: &[T], dy: &[T], shape: Shape) -> Result<Vec<T>> {
    SoftmaxBackward::new().run(ctx, y, dy, shape)
}

/// The gradient of log-softmax's input from its output `y` and the upstream gradient
/// `dy`. Shorthand for `SoftmaxBackward::log().run(ctx, y, dy, shape)`.
///
/// # Errors
///
/// As [`SoftmaxBackward::run`].
pub fn log_softmax_backward<T: Element>(ctx: &Context, y: &[T], dy: &[T], shape: Shape) -> Result<Vec<T>> {
    SoftmaxBackward::log().run(ctx, y, dy, shape)
}
