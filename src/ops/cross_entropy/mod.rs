//! Fused softmax cross-entropy: one dispatch reads each row of logits and writes the row's
//! loss, the gradient of the reduced loss with respect to the logits, and optionally the
//! row's argmax, with PyTorch's options (`torch.nn.functional.cross_entropy`).
//!
//! With `logp = log_softmax(x)`, `q = softmax(x)`, `C` classes, class weights `w` (ones
//! by default) and label smoothing `e`:
//!
//! - class-index targets `y`: `loss_n = (1-e) * w[y_n] * -logp[n, y_n] + (e/C) * sum_c w[c] * -logp[n, c]`;
//!   rows whose target is `ignore_index` add no loss and get a zero gradient; the mean
//!   divides by the sum of `w[y_n]` over the rows not ignored (NaN when there are none);
//! - probability targets `p` (same shape as the logits), smoothed to `p' = p*(1-e) + e/C`:
//!   `loss_n = -sum_c w[c] * p'[n, c] * logp[n, c]`; the mean divides by the number of rows;
//! - the gradient is `dloss/dx = q * A - B` per row (`A`, `B` from the targets and
//!   weights, `q - onehot(y)` in the plain case), scaled by `1/divisor` for the mean, 1 for
//!   the sum, and the row's upstream gradient (default 1) for `none`.
//!
//! Options beyond PyTorch's, as Liger Kernel has them: a **logit softcap** `T` (Gemma 2)
//! replaces every logit by `T * tanh(x / T)` before anything else, the gradient chained
//! through `1 - tanh^2`; a **z-loss** `z` (`PaLM`) adds `z * lse^2` to the loss of every row
//! not ignored, unweighted, with gradient `2 * z * lse * q`, and the mean divides its sum
//! by the count of rows not ignored (the cross-entropy part by the summed weights);
//! each row's **logsumexp** `lse` (of the capped logits, ignored rows included) can be
//! written out.
//!
//! The loss is `logsumexp(x) - x[y]`, never the log of a probability: logits `[0, 1000]`
//! with target 0 give exactly 1000. The mean and sum are reduced in a fixed order (by the
//! fused kernel's last workgroup to finish, whichever it is), so the same input gives the
//! same bits on the same adapter. Special values follow softmax: a row
//! with a NaN or `+inf`, or only `-inf`, has a NaN loss and gradient (unless ignored); a
//! target class whose logit is `-inf` has an infinite loss.

mod encode;
mod host;

pub(crate) use encode::{
    MainBindings, Scale, Settings, record_reductions, reduce_dispatch, reduce_spec, totals_bytes,
};
pub(crate) use host::check_class_targets;

use crate::context::Context;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::kernels::{
    GradientMode, OpKernel, STATUS_BAD_ROWS, STATUS_CORRECT, STATUS_FIRST_BAD_ROW, TargetsKind, VectorWidth,
};
use crate::ops::autotune::{self, RowPlanning};
use crate::ops::rows;
use crate::plan::{DeviceCaps, LLVMPIPE_LOOP_ITERATIONS, Plan};
use crate::record::Recorder;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tensor::{BufferRegion, TensorRef};

/// How the per-row losses are reduced, as in PyTorch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reduction {
    /// One loss per row.
    None,
    /// The weighted mean over the rows (the default).
    #[default]
    Mean,
    /// The sum over the rows.
    Sum,
}

/// Where the gradient goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Gradient {
    /// Into a separate `rows x cols` buffer (the default).
    #[default]
    Separate,
    /// Over the logits themselves: no extra `rows x cols` buffer.
    InPlace,
    /// Not at all: the loss only.
    Skip,
}

/// Targets given from the host: class indices of any integer type, or probabilities of
/// the logits' element type (as PyTorch wants them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Targets<'a, T = f32> {
    /// One class index per row.
    U32(&'a [u32]),
    /// One class index per row; negative values other than `ignore_index` are errors.
    I32(&'a [i32]),
    /// One class index per row, as PyTorch's int64 targets.
    I64(&'a [i64]),
    /// A probability per class and row, row-major, the logits' shape.
    Probabilities(&'a [T]),
}

/// Targets already on the GPU.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum TargetBuffer<'a> {
    /// One `u32` class index per row.
    U32(BufferRegion<'a>),
    /// One `i32` class index per row.
    I32(BufferRegion<'a>),
    /// One `i64` class index per row as PyTorch stores them: two 32-bit words per row,
    /// low word first (little-endian). Values outside i32 are bad targets like any other.
    I64(BufferRegion<'a>),
    /// `rows x cols` probabilities, of the logits' storage type.
    Probabilities(TensorRef<'a>),
}

impl<'a> TargetBuffer<'a> {
    /// One `i64` class index per row, as PyTorch stores them (see [`TargetBuffer::I64`]):
    /// a buffer, or a region of one.
    ///
    /// ```no_run
    /// # fn f(targets: &wgpu_softmax::wgpu::Buffer) {
    /// use wgpu_softmax::TargetBuffer;
    /// let targets = TargetBuffer::i64(targets);
    /// # }
    /// ```
    #[must_use]
    pub fn i64(region: impl Into<BufferRegion<'a>>) -> Self {
        Self::I64(region.into())
    }

    /// One `i32` class index per row.
    #[must_use]
    pub fn i32(region: impl Into<BufferRegion<'a>>) -> Self {
        Self::I32(region.into())
    }

    /// One `u32` class index per row.
    #[must_use]
    pub fn u32(region: impl Into<BufferRegion<'a>>) -> Self {
        Self::U32(region.into())
    }

    /// `rows x cols` probabilities of the logits' storage type (an f32 buffer, or a
    /// [`TensorRef`] naming a 16-bit type).
    #[must_use]
    pub fn probabilities(tensor: impl Into<TensorRef<'a>>) -> Self {
        Self::Probabilities(tensor.into())
    }
}

/// The host inputs of a cross-entropy, with logits (and probability targets) of any
/// element type: `f32`, [`crate::f16`](struct@crate::f16) or [`crate::bf16`].
#[derive(Clone, Copy, Debug)]
pub struct CrossEntropyInput<'a, T = f32> {
    /// Row-major logits.
    pub logits: &'a [T],
    /// Their shape: rows are samples, columns classes.
    pub shape: Shape,
    /// The targets.
    pub targets: Targets<'a, T>,
    /// Optional class weights, one per column.
    pub weight: Option<&'a [f32]>,
    /// Optional upstream gradient, one per row, for [`Reduction::None`] (default ones).
    pub grad_output: Option<&'a [f32]>,
}

impl<'a, T: Element> CrossEntropyInput<'a, T> {
    /// Logits of `shape` with their targets, no weights, no upstream gradient.
    #[must_use]
    pub const fn new(logits: &'a [T], shape: Shape, targets: Targets<'a, T>) -> Self {
        Self { logits, shape, targets, weight: None, grad_output: None }
    }

    /// With class weights.
    #[must_use]
    pub const fn weight(mut self, weight: &'a [f32]) -> Self {
        self.weight = Some(weight);
        self
    }

    /// With an upstream gradient per row (reduction none only).
    #[must_use]
    pub const fn grad_output(mut self, grad_output: &'a [f32]) -> Self {
        self.grad_output = Some(grad_output);
        self
    }
}

/// The GPU buffers of a cross-entropy: regions of the caller's buffers, bound as they
/// are. Build one with [`CrossEntropyBuffers::new`] and its `with_*` methods, which take
/// buffers, slices or [`TensorRef`]s.
#[derive(Clone, Copy, Debug)]
pub struct CrossEntropyBuffers<'a> {
    /// `rows x cols` logits (`STORAGE`), of any storage type, laid out as the shape says
    /// (row-major, or PyTorch's `(N, C, d1..dk)`: see [`crate::Shape`]). Overwritten by the
    /// gradient with [`Gradient::InPlace`], read only otherwise.
    pub logits: TensorRef<'a>,
    /// The targets.
    pub targets: TargetBuffer<'a>,
    /// Optional class weights, `cols` f32.
    pub weight: Option<BufferRegion<'a>>,
    /// Optional upstream gradient, `rows` f32, for [`Reduction::None`].
    pub grad_output: Option<BufferRegion<'a>>,
    /// The loss: `rows` f32 for [`Reduction::None`], one f32 otherwise.
    pub loss: BufferRegion<'a>,
    /// The gradient, `rows x cols` of the logits' storage type: needed with
    /// [`Gradient::Separate`].
    pub grad: Option<TensorRef<'a>>,
    /// Per-row argmax, `rows` u32: written when the op computes it.
    pub argmax: Option<BufferRegion<'a>>,
    /// Four u32 status words (`STORAGE | COPY_DST`), cleared and then written by the op:
    /// see [`CrossEntropyStatus`]. Without it, bad targets still give NaN losses.
    pub status: Option<BufferRegion<'a>>,
    /// Per-row logsumexp of the (softcapped) logits, `rows` f32, ignored rows included:
    /// written when given.
    pub lse: Option<BufferRegion<'a>>,
    /// The z-loss's part of the loss on its own, for logging, reduced as the loss is
    /// (`rows` f32 for [`Reduction::None`], ignored rows 0; one f32 otherwise): written
    /// when given (zeros without a z-loss).
    pub z_loss: Option<BufferRegion<'a>>,
}

impl<'a> CrossEntropyBuffers<'a> {
    /// The logits, their targets and where the loss goes; nothing else.
    #[must_use]
    pub fn new(
        logits: impl Into<TensorRef<'a>>,
        targets: TargetBuffer<'a>,
        loss: impl Into<BufferRegion<'a>>,
    ) -> Self {
        Self {
            logits: logits.into(),
            targets,
            weight: None,
            grad_output: None,
            loss: loss.into(),
            grad: None,
            argmax: None,
            status: None,
            lse: None,
            z_loss: None,
        }
    }

    /// With the z-loss's part of the loss on its own.
    #[must_use]
    pub fn with_z_loss(mut self, z_loss: impl Into<BufferRegion<'a>>) -> Self {
        self.z_loss = Some(z_loss.into());
        self
    }

    /// With a logsumexp per row.
    #[must_use]
    pub fn with_lse(mut self, lse: impl Into<BufferRegion<'a>>) -> Self {
        self.lse = Some(lse.into());
        self
    }

    /// With class weights.
    #[must_use]
    pub fn with_weight(mut self, weight: impl Into<BufferRegion<'a>>) -> Self {
        self.weight = Some(weight.into());
        self
    }

    /// With an upstream gradient per row (reduction none only).
    #[must_use]
    pub fn with_grad_output(mut self, grad_output: impl Into<BufferRegion<'a>>) -> Self {
        self.grad_output = Some(grad_output.into());
        self
    }

    /// With a gradient tensor ([`Gradient::Separate`]).
    #[must_use]
    pub fn with_grad(mut self, grad: impl Into<TensorRef<'a>>) -> Self {
        self.grad = Some(grad.into());
        self
    }

    /// With an argmax per row.
    #[must_use]
    pub fn with_argmax(mut self, argmax: impl Into<BufferRegion<'a>>) -> Self {
        self.argmax = Some(argmax.into());
        self
    }

    /// With status words.
    #[must_use]
    pub fn with_status(mut self, status: impl Into<BufferRegion<'a>>) -> Self {
        self.status = Some(status.into());
        self
    }
}

/// What the status words say after a run: the count of correct predictions (argmax equal
/// to the class target) and the rows whose class target was out of range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrossEntropyStatus {
    /// Rows, not ignored, whose argmax equals their target (when argmax was computed).
    pub correct: u32,
    /// Rows whose target was neither `ignore_index` nor in `[0, cols)`.
    pub bad_target_rows: u32,
    /// The first such row.
    pub first_bad_target_row: Option<u32>,
}

/// How many u32 words a status buffer holds.
pub const STATUS_WORDS: usize = 4;

impl CrossEntropyStatus {
    /// Decodes the status words read back from a status buffer.
    #[must_use]
    pub fn from_words(words: &[u32]) -> Self {
        let word = |i: u32| words.get(i as usize).copied().unwrap_or(0);
        let first_bad = word(STATUS_FIRST_BAD_ROW);
        Self {
            correct: word(STATUS_CORRECT),
            bad_target_rows: word(STATUS_BAD_ROWS),
            // Stored as u32::MAX - row, so that zero means none and atomicMax keeps the first.
            first_bad_target_row: (first_bad != 0).then(|| u32::MAX - first_bad),
        }
    }

    /// Reads and decodes a status buffer (`COPY_SRC` needed).
    ///
    /// # Errors
    ///
    /// As [`Context::download`].
    pub fn read(ctx: &Context, status: &wgpu::Buffer) -> Result<Self> {
        Ok(Self::from_words(&ctx.download_u32(status, STATUS_WORDS)?))
    }

    /// `Ok` when every target was in range, else [`Error::TargetsOutOfRangeOnGpu`].
    ///
    /// # Errors
    ///
    /// [`Error::TargetsOutOfRangeOnGpu`] naming the count and the first bad row.
    pub fn check(&self) -> Result<()> {
        match self.first_bad_target_row {
            Some(first_row) if self.bad_target_rows > 0 => {
                Err(Error::TargetsOutOfRangeOnGpu { rows: self.bad_target_rows, first_row })
            }
            _ => Ok(()),
        }
    }
}

/// The results of a cross-entropy: from the GPU, losses in f32 and the gradient in the
/// logits' element type `G`; from the reference, both in f64.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrossEntropyOutput<G, L = G> {
    /// One loss per row for [`Reduction::None`], else one value.
    pub loss: Vec<L>,
    /// The gradient of the reduced loss with respect to the logits, unless skipped.
    pub grad: Option<Vec<G>>,
    /// Per-row argmax (first maximum; NaN counts as the largest), when asked for.
    pub argmax: Option<Vec<u32>>,
    /// Correct predictions among the rows not ignored, when the argmax was asked for with
    /// class-index targets.
    pub correct: Option<u32>,
    /// Per-row logsumexp of the (softcapped) logits, when asked for
    /// ([`CrossEntropy::lse`]): NaN for a row holding NaN or `+inf`, `-inf` for a row of
    /// only `-inf`.
    pub lse: Option<Vec<L>>,
    /// The z-loss's part of [`CrossEntropyOutput::loss`] on its own, reduced the same way
    /// (one per row for [`Reduction::None`], ignored rows 0), for logging: when the op has
    /// a z-loss.
    pub z_loss: Option<Vec<L>>,
}

/// The fused cross-entropy op and its options. Defaults follow PyTorch: mean reduction,
/// `ignore_index = -100`, no label smoothing; plus the gradient into its own buffer, and
/// no argmax.
///
/// ```no_run
/// # fn main() -> Result<(), wgpu_softmax::Error> {
/// use wgpu_softmax::{Context, CrossEntropy, CrossEntropyInput, Shape, Targets};
/// let ctx = Context::new()?;
/// let logits = [0.0, 1000.0, 2.0, 1.0];
/// let input = CrossEntropyInput::new(&logits, Shape::new(2, 2), Targets::I64(&[0, 1]));
/// let out = CrossEntropy::new().argmax(true).run(&ctx, &input)?;
/// println!("loss {}, accuracy {}/2", out.loss[0], out.correct.unwrap_or(0));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropy {
    reduction: Reduction,
    ignore_index: i64,
    label_smoothing: f32,
    gradient: Gradient,
    argmax: bool,
    z_loss: f32,
    softcap: Option<f32>,
    lse: bool,
    strategy: Option<Strategy>,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        Self::new()
    }
}

impl CrossEntropy {
    /// PyTorch's defaults: mean, `ignore_index` -100, no smoothing, no weights.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            reduction: Reduction::Mean,
            ignore_index: -100,
            label_smoothing: 0.0,
            gradient: Gradient::Separate,
            argmax: false,
            z_loss: 0.0,
            softcap: None,
            lse: false,
            strategy: None,
        }
    }

    /// Sets the reduction.
    #[must_use]
    pub const fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Sets the class index whose rows are ignored (default -100).
    #[must_use]
    pub const fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// Sets the label smoothing, in `[0, 1]`.
    #[must_use]
    pub const fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// Sets where the gradient goes (or that it is skipped).
    #[must_use]
    pub const fn gradient(mut self, gradient: Gradient) -> Self {
        self.gradient = gradient;
        self
    }

    /// Computes each row's argmax too, and with class-index targets the count of correct
    /// predictions.
    #[must_use]
    pub const fn argmax(mut self, argmax: bool) -> Self {
        self.argmax = argmax;
        self
    }

    /// Adds the z-loss `z * lse^2` to each row not ignored (the auxiliary loss of `PaLM`, Liger's
    /// `lse_square_scale`); `z >= 0`, default 0 (none).
    #[must_use]
    pub const fn z_loss(mut self, z: f32) -> Self {
        self.z_loss = z;
        self
    }

    /// Caps the logits softly at `t`: each becomes `t * tanh(x / t)` before anything else
    /// (Gemma 2). `t > 0`.
    #[must_use]
    pub const fn softcap(mut self, t: f32) -> Self {
        self.softcap = Some(t);
        self
    }

    /// Returns each row's logsumexp from [`CrossEntropy::run`]
    /// ([`CrossEntropyOutput::lse`]); the GPU-resident API writes it wherever
    /// [`CrossEntropyBuffers::lse`] is given.
    #[must_use]
    pub const fn lse(mut self, lse: bool) -> Self {
        self.lse = lse;
        self
    }

    /// Forces a kernel strategy.
    #[must_use]
    pub const fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// The reduction.
    #[must_use]
    pub const fn get_reduction(&self) -> Reduction {
        self.reduction
    }

    /// The ignored class index.
    #[must_use]
    pub const fn get_ignore_index(&self) -> i64 {
        self.ignore_index
    }

    /// The label smoothing.
    #[must_use]
    pub const fn get_label_smoothing(&self) -> f32 {
        self.label_smoothing
    }

    /// Where the gradient goes.
    #[must_use]
    pub const fn get_gradient(&self) -> Gradient {
        self.gradient
    }

    /// Whether the argmax is computed.
    #[must_use]
    pub const fn get_argmax(&self) -> bool {
        self.argmax
    }

    /// The z-loss coefficient (0 for none).
    #[must_use]
    pub const fn get_z_loss(&self) -> f32 {
        self.z_loss
    }

    /// The logit softcap, if any.
    #[must_use]
    pub const fn get_softcap(&self) -> Option<f32> {
        self.softcap
    }

    /// Whether [`CrossEntropy::run`] returns the logsumexp per row.
    #[must_use]
    pub const fn get_lse(&self) -> bool {
        self.lse
    }

    /// Checks the options that do not depend on the data.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the label smoothing is outside `[0, 1]`, the z-loss
    /// is negative or not finite, or the softcap is not a finite number above 0.
    pub fn check_options(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(Error::InvalidOption {
                option: "label_smoothing",
                problem: format!("{} is outside [0, 1]", self.label_smoothing),
            });
        }
        if !(self.z_loss.is_finite() && self.z_loss >= 0.0) {
            return Err(Error::InvalidOption {
                option: "z_loss",
                problem: format!("{} is not a finite number >= 0; use 0 for no z-loss", self.z_loss),
            });
        }
        if let Some(t) = self.softcap {
            if !(t.is_finite() && t > 0.0) {
                return Err(Error::InvalidOption {
                    option: "softcap",
                    problem: format!("{t} is not a finite number > 0; leave the softcap unset for none"),
                });
            }
        }
        Ok(())
    }

    /// The kernel this op runs with these targets: what its module is composed with.
    pub(crate) const fn kernel(&self, probabilities: bool, packed: bool) -> OpKernel {
        OpKernel::CrossEntropy {
            targets: if probabilities { TargetsKind::Probabilities } else { TargetsKind::Classes },
            gradient: match self.gradient {
                Gradient::Skip => GradientMode::None,
                Gradient::Separate => GradientMode::Separate,
                Gradient::InPlace => GradientMode::InPlace,
            },
            packed,
        }
    }

    /// The kernel this op runs on `ctx`'s device: the packed one where the device cannot
    /// bind the other's storage buffers (see [`rows::takes_fallback`]).
    pub(crate) fn kernel_on(&self, ctx: &Context, probabilities: bool) -> OpKernel {
        self.kernel(probabilities, self.packs_on(ctx, probabilities))
    }

    /// Whether the fused `kernel` sums the row losses itself (the mean or sum folded into
    /// its last workgroup, so that nothing is dispatched after it) for `plan` over `shape`
    /// on a device of `caps`: not for reduction none, not when a z-loss buffer of its own
    /// is reduced too (`z_loss_pass`), not for the packed kernel (no bindings to spare),
    /// and not where the last workgroup's walk over the rows would pass the driver's loop
    /// limit (the separate reduction passes walk them with more invocations).
    pub(crate) fn folds_reduction(
        &self,
        caps: &DeviceCaps,
        kernel: OpKernel,
        plan: &Plan,
        shape: Shape,
        z_loss_pass: bool,
    ) -> bool {
        if self.reduction == Reduction::None || z_loss_pass || !kernel.decl().folds_reduction {
            return false;
        }
        caps.max_loop_iterations.is_none_or(|limit| {
            let walk = (shape.rows as u64).div_ceil(u64::from(plan.workgroup_size())) + 8;
            walk.saturating_add(crate::plan::loop_iterations(caps, plan.strategy(), shape.cols)) < limit
        })
    }

    /// Whether this op runs its packed kernel on `ctx`'s device, and so copies its argmax
    /// and logsumexp out (their buffers need `COPY_DST`).
    pub(crate) fn packs_on(&self, ctx: &Context, probabilities: bool) -> bool {
        rows::takes_fallback(ctx, self.kernel(probabilities, false))
    }

    /// The options that change the kernel's speed, for the autotuner's key.
    const fn tune_variant(&self, probabilities: bool) -> u32 {
        let gradient = match self.gradient {
            Gradient::Skip => 0,
            Gradient::Separate => 1,
            Gradient::InPlace => 2,
        };
        let reduction = match self.reduction {
            Reduction::None => 0,
            Reduction::Mean => 1,
            Reduction::Sum => 2,
        };
        gradient
            | reduction << 2
            | (probabilities as u32) << 4
            | (self.argmax as u32) << 5
            | (self.softcap.is_some() as u32) << 6
    }

    /// Bytes per row of each array bound per chunk: the logits (and gradient, and
    /// probability targets), and at most two words each of class targets (i64), losses,
    /// argmax, upstream gradient, logsumexp.
    fn row_bytes(shape: Shape, dtype: DType) -> [u64; 2] {
        [shape.cols as u64 * dtype.size(), 8]
    }

    /// Plans the fused dispatch of f32 logits of `shape` with class-index targets on
    /// `ctx`'s device.
    ///
    /// # Errors
    ///
    /// [`Error::StrategyUnavailable`] for a forced strategy this op or device lacks for
    /// this shape, [`Error::LimitExceeded`] when a row is too wide for one storage binding
    /// or a grid cannot fit, or the row reduction of the mean or sum would run longer than
    /// the driver lets one invocation loop.
    pub fn plan(&self, ctx: &Context, shape: Shape) -> Result<Plan> {
        self.plan_for(ctx, shape, DType::F32, VectorWidth::Vec4, false)
    }

    pub(crate) fn plan_for(
        &self,
        ctx: &Context,
        shape: Shape,
        dtype: DType,
        vector: VectorWidth,
        probabilities: bool,
    ) -> Result<Plan> {
        let kernel = self.kernel_on(ctx, probabilities);
        let row_bytes = Self::row_bytes(shape, dtype);
        let planning = RowPlanning {
            kernel,
            forced: self.strategy,
            dtype,
            vector,
            variant: self.tune_variant(probabilities),
            row_bytes: &row_bytes,
        };
        // In place would overwrite the sample: time the separate gradient instead.
        let op = if self.gradient == Gradient::InPlace { self.gradient(Gradient::Separate) } else { *self };
        let planned = autotune::plan_op(ctx, shape, planning, &|ctx, encoder, strategy, sample| {
            let targets = if probabilities {
                TargetBuffer::Probabilities(sample.tensor(1))
            } else {
                TargetBuffer::I32(sample.per_row(0).into())
            };
            let mut buffers = CrossEntropyBuffers::new(sample.tensor(0), targets, sample.per_row(1));
            if op.gradient == Gradient::Separate {
                buffers = buffers.with_grad(sample.tensor(2));
            }
            op.strategy(strategy)
                .encode_unchecked(ctx, &mut Recorder::new(encoder), &buffers, sample.shape, vector)
                .map(|_| ())
        })?;
        if let Some(limit) = ctx.caps().max_loop_iterations {
            // One invocation of the reduction kernels walks rows / 256 rows.
            let iterations = u64::try_from(shape.rows.div_ceil(256)).unwrap_or(u64::MAX) + 8;
            if self.reduction != Reduction::None && iterations >= limit {
                return Err(Error::LimitExceeded {
                    limit: "loop iterations per invocation (llvmpipe)",
                    required: iterations,
                    available: LLVMPIPE_LOOP_ITERATIONS,
                });
            }
        }
        Ok(planned)
    }
}
