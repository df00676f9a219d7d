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
//! The loss is `logsumexp(x) - x[y]`, never the log of a probability: logits `[0, 1000]`
//! with target 0 give exactly 1000. The mean and sum are reduced in a fixed order, so the
//! same input gives the same bits on the same adapter. Special values follow softmax: a row
//! with a NaN or `+inf`, or only `-inf`, has a NaN loss and gradient (unless ignored); a
//! target class whose logit is `-inf` has an infinite loss.

mod encode;
mod host;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan::{LLVMPIPE_LOOP_ITERATIONS, Plan, plan};
use crate::shape::Shape;
use crate::strategy::Strategy;

/// How the per-row losses are reduced, as in PyTorch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
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

/// Targets given from the host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Targets<'a> {
    /// One class index per row.
    U32(&'a [u32]),
    /// One class index per row; negative values other than `ignore_index` are errors.
    I32(&'a [i32]),
    /// One class index per row, as PyTorch's int64 targets.
    I64(&'a [i64]),
    /// A probability per class and row, row-major, the logits' shape.
    Probabilities(&'a [f32]),
}

/// Targets already on the GPU.
#[derive(Clone, Copy, Debug)]
pub enum TargetBuffer<'a> {
    /// One `u32` class index per row.
    U32(&'a wgpu::Buffer),
    /// One `i32` class index per row.
    I32(&'a wgpu::Buffer),
    /// `rows x cols` f32 probabilities.
    Probabilities(&'a wgpu::Buffer),
}

/// The host inputs of a cross-entropy.
#[derive(Clone, Copy, Debug)]
pub struct CrossEntropyInput<'a> {
    /// Row-major logits.
    pub logits: &'a [f32],
    /// Their shape: rows are samples, columns classes.
    pub shape: Shape,
    /// The targets.
    pub targets: Targets<'a>,
    /// Optional class weights, one per column.
    pub weight: Option<&'a [f32]>,
    /// Optional upstream gradient, one per row, for [`Reduction::None`] (default ones).
    pub grad_output: Option<&'a [f32]>,
}

impl<'a> CrossEntropyInput<'a> {
    /// Logits of `shape` with their targets, no weights, no upstream gradient.
    #[must_use]
    pub const fn new(logits: &'a [f32], shape: Shape, targets: Targets<'a>) -> Self {
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

/// The GPU buffers of a cross-entropy: the caller's, bound as they are.
#[derive(Clone, Copy, Debug)]
pub struct CrossEntropyBuffers<'a> {
    /// `rows x cols` f32 logits (`STORAGE`). Overwritten by the gradient with
    /// [`Gradient::InPlace`], read only otherwise.
    pub logits: &'a wgpu::Buffer,
    /// The targets.
    pub targets: TargetBuffer<'a>,
    /// Optional class weights, `cols` f32.
    pub weight: Option<&'a wgpu::Buffer>,
    /// Optional upstream gradient, `rows` f32, for [`Reduction::None`].
    pub grad_output: Option<&'a wgpu::Buffer>,
    /// The loss: `rows` f32 for [`Reduction::None`], one f32 otherwise.
    pub loss: &'a wgpu::Buffer,
    /// The gradient, `rows x cols` f32: needed with [`Gradient::Separate`].
    pub grad: Option<&'a wgpu::Buffer>,
    /// Per-row argmax, `rows` u32: written when the op computes it.
    pub argmax: Option<&'a wgpu::Buffer>,
    /// Four u32 status words (`STORAGE | COPY_DST`), cleared and then written by the op:
    /// see [`CrossEntropyStatus`]. Without it, bad targets still give NaN losses.
    pub status: Option<&'a wgpu::Buffer>,
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
        let word = |i: usize| words.get(i).copied().unwrap_or(0);
        Self {
            correct: word(0),
            bad_target_rows: word(1),
            // Stored as u32::MAX - row, so that zero means none and atomicMax keeps the first.
            first_bad_target_row: (word(2) != 0).then(|| u32::MAX - word(2)),
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

/// The results of a cross-entropy, from the GPU (`f32`) or the reference (`f64`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrossEntropyOutput<T> {
    /// One loss per row for [`Reduction::None`], else one value.
    pub loss: Vec<T>,
    /// The gradient of the reduced loss with respect to the logits, unless skipped.
    pub grad: Option<Vec<T>>,
    /// Per-row argmax (first maximum; NaN counts as the largest), when asked for.
    pub argmax: Option<Vec<u32>>,
    /// Correct predictions among the rows not ignored, when the argmax was asked for with
    /// class-index targets.
    pub correct: Option<u32>,
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

    /// Checks the options that do not depend on the data.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the label smoothing is outside `[0, 1]`.
    pub fn check_options(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(Error::InvalidOption {
                option: "label_smoothing",
                problem: format!("{} is outside [0, 1]", self.label_smoothing),
            });
        }
        Ok(())
    }

    /// The autotuned strategy for `shape`'s bucket (see [`Context::with_autotune`]),
    /// timed with this op's options on random logits and class 0 targets.
    fn tuned_strategy(&self, ctx: &Context, shape: Shape, row_bytes: &[u64]) -> Result<Strategy> {
        let sample = crate::tune::sample_shape(shape);
        let candidates = crate::ops::autotune::candidates(ctx, shape, row_bytes);
        let logits = ctx.upload(&crate::rng::SeededRng::new(0x7E57).logits(sample.len()?, 8.0))?;
        let targets = ctx.storage_buffer(sample.rows)?;
        let loss = ctx.storage_buffer(sample.rows)?;
        let grad = ctx.storage_buffer(sample.len()?)?;
        // In place would overwrite the sample: time the separate gradient instead.
        let gradient = if self.gradient == Gradient::InPlace { Gradient::Separate } else { self.gradient };
        let key = crate::tune::TuneKey::new(crate::tune::OpFamily::CrossEntropy, shape);
        crate::ops::autotune::tuned(ctx, key, &candidates, &|encoder, strategy| {
            let buffers = CrossEntropyBuffers {
                logits: &logits,
                targets: TargetBuffer::I32(&targets),
                weight: None,
                grad_output: None,
                loss: &loss,
                grad: (gradient == Gradient::Separate).then_some(&grad),
                argmax: None,
                status: None,
            };
            self.gradient(gradient).strategy(strategy).encode(ctx, encoder, &buffers, sample).map(|_| ())
        })
    }

    /// Plans the fused dispatch for `shape` on `ctx`'s device.
    ///
    /// # Errors
    ///
    /// [`crate::Error::StrategyUnavailable`] for a forced strategy this device cannot run for
    /// this shape, [`crate::Error::LimitExceeded`] when a row is too wide for one storage
    /// binding or a grid cannot fit, or the row reduction of the mean or sum would run longer than the
    /// driver lets one invocation loop.
    pub fn plan(&self, ctx: &Context, shape: Shape) -> Result<Plan> {
        // Per row: the logits (and gradient, probability targets) and one word each of the
        // class targets, losses, argmax and upstream gradient.
        if self.strategy == Some(Strategy::SplitRow) {
            return Err(Error::StrategyUnavailable {
                strategy: Strategy::SplitRow,
                reason: "the row split is implemented for softmax and log-softmax only",
            });
        }
        let row_bytes = [Shape::new(shape.cols, 1).byte_len()?, 4];
        let strategy = match self.strategy {
            None if ctx.autotune() && !shape.is_empty() => Some(self.tuned_strategy(ctx, shape, &row_bytes)?),
            forced => forced,
        };
        let planned = plan(ctx.caps(), shape, strategy, &row_bytes)?;
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
