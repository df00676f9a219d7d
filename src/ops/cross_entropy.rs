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

use std::num::NonZeroU64;

use wgpu::util::DeviceExt;

use crate::context::{Context, KernelKey};
use crate::error::{Error, Result};
use crate::ops::validate;
use crate::plan::{LLVMPIPE_LOOP_ITERATIONS, Plan, Strategy, plan};
use crate::shaders::{BindingLayout, Shader};
use crate::shape::Shape;

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

/// The per-dispatch parameters, laid out as the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    groups_x: u32,
    ignore_index: i32,
    label_smoothing: f32,
    padding: [u32; 3],
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

    /// Plans the fused dispatch for `shape` on `ctx`'s device.
    ///
    /// # Errors
    ///
    /// As [`plan`], and [`Error::LimitExceeded`] when the row reduction of the mean or sum
    /// would run longer than the driver lets one invocation loop.
    pub fn plan(&self, ctx: &Context, shape: Shape) -> Result<Plan> {
        let planned = plan(ctx.caps(), shape, self.strategy)?;
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

    /// Runs the op on host data and reads every result back, waiting at most the
    /// context's timeout. The targets are checked before any GPU work.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] for a wrong length of logits, targets, weight or upstream
    /// gradient; [`Error::TargetOutOfRange`] naming the row and value of a bad class index;
    /// [`Error::InvalidProbability`] for a negative or non-finite target probability;
    /// [`Error::InvalidOption`] for a bad option or an upstream gradient with a reduction
    /// other than none; and the errors of [`CrossEntropy::encode`].
    pub fn run(&self, ctx: &Context, input: &CrossEntropyInput<'_>) -> Result<CrossEntropyOutput<f32>> {
        self.check_input(input)?;
        let shape = input.shape;
        self.plan(ctx, shape)?;
        let (rows, len) = (shape.rows, shape.len()?);
        ctx.catching(|| {
            let storage = |data: &[u8], label: &str| {
                ctx.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: data,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                })
            };
            let logits = storage(bytemuck::cast_slice(nonempty_f32(input.logits)), "wgpu-softmax: logits");
            let targets =
                storage(bytemuck::cast_slice(&self.gpu_targets(input.targets)), "wgpu-softmax: targets");
            let targets = match input.targets {
                Targets::Probabilities(_) => TargetBuffer::Probabilities(&targets),
                _ => TargetBuffer::I32(&targets),
            };
            let weight =
                input.weight.map(|w| storage(bytemuck::cast_slice(nonempty_f32(w)), "wgpu-softmax: weight"));
            let grad_output = input
                .grad_output
                .map(|g| storage(bytemuck::cast_slice(nonempty_f32(g)), "wgpu-softmax: grad_output"));
            let loss_len = if self.reduction == Reduction::None { rows } else { 1 };
            let loss = ctx.storage_buffer(loss_len.max(1));
            let grad = (self.gradient == Gradient::Separate).then(|| ctx.storage_buffer(len.max(1)));
            let argmax = self.argmax.then(|| ctx.storage_buffer(rows.max(1)));
            let status = ctx.storage_buffer(STATUS_WORDS);
            let buffers = CrossEntropyBuffers {
                logits: &logits,
                targets,
                weight: weight.as_ref(),
                grad_output: grad_output.as_ref(),
                loss: &loss,
                grad: grad.as_ref(),
                argmax: argmax.as_ref(),
                status: Some(&status),
            };
            let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgpu-softmax: cross_entropy"),
            });
            self.for_host_targets().encode(ctx, &mut encoder, &buffers, shape)?;
            let f32_bytes = |n: usize| crate::transfer::f32_bytes(n);
            let grad_source = match self.gradient {
                Gradient::Separate => grad.as_ref(),
                Gradient::InPlace => Some(&logits),
                Gradient::Skip => None,
            };
            let mut parts =
                vec![(&loss, f32_bytes(if shape.is_empty() { 0 } else { loss_len })), (&status, 16)];
            if let Some(g) = grad_source {
                parts.push((g, f32_bytes(len)));
            }
            if let Some(a) = argmax.as_ref() {
                parts.push((a, f32_bytes(rows)));
            }
            let mut read = ctx.finish_and_read_many(encoder, &parts)?.into_iter();
            let mut next = || read.next().unwrap_or_default();
            let loss_bytes = next();
            let status = CrossEntropyStatus::from_words(&bytemuck::pod_collect_to_vec(&next()));
            if let Some(row) = status.first_bad_target_row {
                // The host checks make this unreachable; if the GPU disagrees, say so
                // in the same terms rather than return NaN silently.
                return Err(target_error(input.targets, row as usize, shape.cols, self.ignore_index));
            }
            let grad = grad_source.map(|_| bytemuck::pod_collect_to_vec(&next()));
            let argmax: Option<Vec<u32>> = argmax.as_ref().map(|_| bytemuck::pod_collect_to_vec(&next()));
            let mut loss: Vec<f32> = bytemuck::pod_collect_to_vec(&loss_bytes);
            if shape.is_empty() {
                loss = self.empty_loss(rows);
            }
            let correct = (self.argmax && !matches!(input.targets, Targets::Probabilities(_)))
                .then_some(status.correct);
            Ok(CrossEntropyOutput { loss, grad, argmax, correct })
        })
    }

    /// What the loss of an empty batch is: nothing per row, 0 for the sum, NaN for the
    /// mean (a mean over no rows, as in PyTorch).
    fn empty_loss(&self, rows: usize) -> Vec<f32> {
        match self.reduction {
            Reduction::None => vec![0.0; rows],
            Reduction::Sum => vec![0.0],
            Reduction::Mean => vec![f32::NAN],
        }
    }

    /// Records the op into the caller's `encoder` over the caller's buffers: the fused
    /// kernel, plus a pass before it (the mean's divisor, for class-index targets) and one
    /// after it (the mean or sum over rows). Submits nothing; returns the plan.
    ///
    /// Class-index targets out of range are not checked on the host here: their rows get
    /// a NaN loss and are counted in the status words ([`CrossEntropyStatus`]).
    ///
    /// # Errors
    ///
    /// [`Error::MissingUsage`] and [`Error::BufferTooSmall`] for a buffer that cannot be
    /// bound as needed, [`Error::InvalidOption`] for options that contradict the buffers
    /// (no grad buffer for [`Gradient::Separate`], an upstream gradient with a reduction,
    /// an `ignore_index` outside i32), [`Error::AliasedBuffers`] when an output is also an
    /// input, and the errors of [`CrossEntropy::plan`].
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        buffers: &CrossEntropyBuffers<'_>,
        shape: Shape,
    ) -> Result<Plan> {
        self.check_options()?;
        let plan = self.plan(ctx, shape)?;
        let checked = self.check_buffers(buffers, shape)?;
        if shape.is_empty() {
            return Ok(plan);
        }
        let ignore_index = i32::try_from(self.ignore_index).map_err(|_| Error::InvalidOption {
            option: "ignore_index",
            problem: format!("{} does not fit in i32, as GPU class-index targets must", self.ignore_index),
        })?;
        let (target_kind, target_buffer) = match buffers.targets {
            TargetBuffer::U32(b) => (0u32, b),
            TargetBuffer::I32(b) => (1, b),
            TargetBuffer::Probabilities(b) => (2, b),
        };
        let class_targets = target_kind != 2;
        let params = Params {
            rows: u32::try_from(shape.rows).unwrap_or(u32::MAX),
            cols: u32::try_from(shape.cols).unwrap_or(u32::MAX),
            groups_x: plan.grid[0],
            ignore_index,
            label_smoothing: self.label_smoothing,
            padding: [0; 3],
        };
        let reduction = match self.reduction {
            Reduction::None => 0u32,
            Reduction::Mean => 1,
            Reduction::Sum => 2,
        };
        let gradient = match self.gradient {
            Gradient::Skip => 0u32,
            Gradient::Separate => 1,
            Gradient::InPlace => 2,
        };
        let has_weight = buffers.weight.is_some();
        let shared_constants = vec![
            ("TARGET_KIND", target_kind),
            ("HAS_WEIGHT", u32::from(has_weight)),
            ("REDUCTION", reduction),
        ];
        let mut main_constants = shared_constants.clone();
        main_constants.extend([
            ("HAS_UPSTREAM", u32::from(buffers.grad_output.is_some())),
            ("GRADIENT", gradient),
            ("ARGMAX", u32::from(self.argmax)),
        ]);
        let (shader, entry_point) = match plan.strategy {
            Strategy::ThreadPerRow => (Shader::CrossEntropy, "cross_entropy_thread_per_row"),
            Strategy::WorkgroupPerRow => (Shader::CrossEntropy, "cross_entropy_workgroup_per_row"),
            Strategy::SubgroupPerRow => {
                main_constants.push(("ROWS_PER_GROUP", plan.rows_per_group));
                (Shader::CrossEntropySubgroup, "cross_entropy_subgroup_per_row")
            }
        };
        let main = ctx.pipeline(&KernelKey { shader, entry_point, constants: main_constants })?;
        let reduce_key = |entry_point| KernelKey {
            shader: Shader::CrossEntropyReduce,
            entry_point,
            constants: shared_constants.clone(),
        };
        let mean_divisor_pass = self.reduction == Reduction::Mean && class_targets;
        let total_weight = if mean_divisor_pass {
            Some(ctx.pipeline(&reduce_key("cross_entropy_total_weight"))?)
        } else {
            None
        };
        let reduce = if self.reduction == Reduction::None {
            None
        } else {
            Some(ctx.pipeline(&reduce_key("cross_entropy_reduce"))?)
        };

        ctx.catching(|| {
            let device = ctx.device();
            let params = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("wgpu-softmax: cross_entropy params"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let scratch = |bytes: u64, label| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes.max(16),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            };
            let status_scratch;
            let status = match buffers.status {
                Some(b) => b,
                None => {
                    status_scratch = scratch(16, "wgpu-softmax: status");
                    &status_scratch
                }
            };
            encoder.clear_buffer(status, 0, Some(16));
            let totals = mean_divisor_pass.then(|| scratch(4, "wgpu-softmax: total weight"));
            let row_losses = (self.reduction != Reduction::None)
                .then(|| scratch(checked.rows_bytes, "wgpu-softmax: row losses"));
            let argmax_scratch = (self.argmax && buffers.argmax.is_none())
                .then(|| scratch(checked.rows_bytes, "wgpu-softmax: argmax"));

            let placeholder = |i: usize| whole(ctx.placeholder(i), 16);
            let targets_binding = whole(target_buffer, checked.targets_bytes);
            let weight_binding =
                buffers.weight.map_or_else(|| placeholder(0), |w| whole(w, checked.cols_bytes));

            if let (Some(pipeline), Some(totals)) = (&total_weight, &totals) {
                let bind_group = ctx.bind_buffers(
                    BindingLayout::CrossEntropyReduce,
                    &[
                        params.as_entire_buffer_binding(),
                        targets_binding.clone(),
                        weight_binding.clone(),
                        placeholder(1),
                        whole(totals, 4),
                        placeholder(2),
                    ],
                );
                Context::dispatch(
                    encoder,
                    "wgpu-softmax: cross_entropy total weight",
                    pipeline,
                    &bind_group,
                    [1, 1],
                );
            }

            let scale_binding = match (buffers.grad_output, &totals) {
                (Some(g), _) => whole(g, checked.rows_bytes),
                (None, Some(t)) => whole(t, 4),
                (None, None) => placeholder(1),
            };
            let grad_binding = match (self.gradient, buffers.grad) {
                (Gradient::Separate, Some(g)) => whole(g, checked.matrix_bytes),
                _ => placeholder(2),
            };
            let row_loss_binding = row_losses
                .as_ref()
                .map_or_else(|| whole(buffers.loss, checked.rows_bytes), |r| whole(r, checked.rows_bytes));
            let argmax_binding = match (buffers.argmax, &argmax_scratch) {
                (Some(a), _) | (None, Some(a)) => whole(a, checked.rows_bytes),
                (None, None) => placeholder(3),
            };
            let bind_group = ctx.bind_buffers(
                BindingLayout::CrossEntropy,
                &[
                    params.as_entire_buffer_binding(),
                    whole(buffers.logits, checked.matrix_bytes),
                    targets_binding.clone(),
                    weight_binding.clone(),
                    scale_binding,
                    grad_binding,
                    row_loss_binding,
                    argmax_binding,
                    whole(status, 16),
                ],
            );
            Context::dispatch(encoder, "wgpu-softmax: cross_entropy", &main, &bind_group, plan.grid);

            if let (Some(pipeline), Some(row_losses)) = (&reduce, &row_losses) {
                let totals_binding = totals.as_ref().map_or_else(|| placeholder(1), |t| whole(t, 4));
                let bind_group = ctx.bind_buffers(
                    BindingLayout::CrossEntropyReduce,
                    &[
                        params.as_entire_buffer_binding(),
                        targets_binding,
                        weight_binding,
                        whole(row_losses, checked.rows_bytes),
                        totals_binding,
                        whole(buffers.loss, 4),
                    ],
                );
                Context::dispatch(
                    encoder,
                    "wgpu-softmax: cross_entropy reduce",
                    pipeline,
                    &bind_group,
                    [1, 1],
                );
            }
            Ok(())
        })?;
        Ok(plan)
    }

    /// Checks every caller buffer's usage and size against the shape and options.
    fn check_buffers(&self, buffers: &CrossEntropyBuffers<'_>, shape: Shape) -> Result<BindingSizes> {
        let matrix_bytes = shape.byte_len()?;
        let rows_bytes = Shape::new(shape.rows, 1).byte_len()?;
        let cols_bytes = Shape::new(shape.cols, 1).byte_len()?;
        validate::storage_buffer("logits", buffers.logits, matrix_bytes)?;
        let (targets, targets_bytes) = match buffers.targets {
            TargetBuffer::U32(b) | TargetBuffer::I32(b) => (b, rows_bytes),
            TargetBuffer::Probabilities(b) => (b, matrix_bytes),
        };
        validate::storage_buffer("targets", targets, targets_bytes)?;
        if let Some(w) = buffers.weight {
            validate::storage_buffer("weight", w, cols_bytes)?;
        }
        if let Some(g) = buffers.grad_output {
            if self.reduction != Reduction::None {
                return Err(Error::InvalidOption {
                    option: "grad_output",
                    problem: "an upstream gradient per row needs reduction none".into(),
                });
            }
            validate::storage_buffer("grad_output", g, rows_bytes)?;
        }
        let loss_bytes = if self.reduction == Reduction::None { rows_bytes } else { 4 };
        validate::storage_buffer("loss", buffers.loss, loss_bytes)?;
        match (self.gradient, buffers.grad) {
            (Gradient::Separate, Some(g)) => validate::storage_buffer("grad", g, matrix_bytes)?,
            (Gradient::Separate, None) => {
                return Err(Error::InvalidOption {
                    option: "gradient",
                    problem: "Gradient::Separate needs a grad buffer; pass one, or use InPlace or Skip"
                        .into(),
                });
            }
            _ => {}
        }
        if let Some(a) = buffers.argmax {
            validate::storage_buffer("argmax", a, rows_bytes)?;
        }
        if let Some(s) = buffers.status {
            validate::storage_buffer("status", s, 16)?;
            if !s.usage().contains(wgpu::BufferUsages::COPY_DST) {
                return Err(Error::MissingUsage { what: "status", missing: wgpu::BufferUsages::COPY_DST });
            }
        }
        let outputs = [Some(buffers.loss), buffers.grad, buffers.argmax, buffers.status];
        let inputs = [Some(buffers.logits), Some(targets), buffers.weight, buffers.grad_output];
        for (i, output) in outputs.iter().flatten().enumerate() {
            for input in inputs.iter().flatten() {
                validate::distinct(input, output)?;
            }
            for other in outputs.iter().flatten().skip(i + 1) {
                validate::distinct(other, output)?;
            }
        }
        Ok(BindingSizes { matrix_bytes, rows_bytes, cols_bytes, targets_bytes })
    }

    /// Checks host inputs completely (shapes, targets, options), as [`CrossEntropy::run`]
    /// does before any GPU work.
    ///
    /// # Errors
    ///
    /// As [`CrossEntropy::run`]'s input errors.
    pub fn check_input(&self, input: &CrossEntropyInput<'_>) -> Result<()> {
        self.check_options()?;
        let shape = input.shape;
        shape.check_len("logits", input.logits.len())?;
        if let Some(w) = input.weight {
            Shape::new(shape.cols, 1).check_len("weight", w.len())?;
        }
        if let Some(g) = input.grad_output {
            if self.reduction != Reduction::None {
                return Err(Error::InvalidOption {
                    option: "grad_output",
                    problem: "an upstream gradient per row needs reduction none".into(),
                });
            }
            Shape::new(shape.rows, 1).check_len("grad_output", g.len())?;
        }
        match input.targets {
            Targets::Probabilities(p) => {
                shape.check_len("targets", p.len())?;
                match p.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
                    Some(index) => Err(Error::InvalidProbability {
                        row: index / shape.cols.max(1),
                        col: index % shape.cols.max(1),
                        value: p[index],
                    }),
                    None => Ok(()),
                }
            }
            Targets::U32(t) => check_class_targets(shape, t.iter().map(|&v| i64::from(v)), self.ignore_index),
            Targets::I32(t) => check_class_targets(shape, t.iter().map(|&v| i64::from(v)), self.ignore_index),
            Targets::I64(t) => check_class_targets(shape, t.iter().copied(), self.ignore_index),
        }
    }

    /// The target words to upload: probabilities as f32 bits, class indices as i32. After
    /// the host checks, every class target is `ignore_index` or in range; ignored rows
    /// become the i32 `ignore_index` the GPU is told about (-1 where it does not fit).
    fn gpu_targets(&self, targets: Targets<'_>) -> Vec<u32> {
        let stand_in = i32::try_from(self.ignore_index).unwrap_or(-1);
        let to_word = |v: i64| {
            let class = if v == self.ignore_index { stand_in } else { i32::try_from(v).unwrap_or(stand_in) };
            class.cast_unsigned()
        };
        let words: Vec<u32> = match targets {
            Targets::Probabilities(p) => p.iter().map(|v| v.to_bits()).collect(),
            Targets::U32(t) => t.iter().map(|&v| to_word(i64::from(v))).collect(),
            Targets::I32(t) => t.iter().map(|&v| to_word(i64::from(v))).collect(),
            Targets::I64(t) => t.iter().map(|&v| to_word(v)).collect(),
        };
        if words.is_empty() { vec![0] } else { words }
    }

    /// The ignore index the GPU sees for host targets (see [`CrossEntropy::gpu_targets`]).
    fn for_host_targets(self) -> Self {
        Self { ignore_index: i64::from(i32::try_from(self.ignore_index).unwrap_or(-1)), ..self }
    }
}

/// Sizes in bytes of the bindings, once checked.
struct BindingSizes {
    matrix_bytes: u64,
    rows_bytes: u64,
    cols_bytes: u64,
    targets_bytes: u64,
}

/// Binds the first `bytes` of `buffer`.
fn whole(buffer: &wgpu::Buffer, bytes: u64) -> wgpu::BufferBinding<'_> {
    wgpu::BufferBinding { buffer, offset: 0, size: NonZeroU64::new(bytes) }
}

/// wgpu cannot create or bind an empty buffer: empty host data uploads one zero instead
/// (never read, as an empty shape dispatches nothing).
fn nonempty_f32(data: &[f32]) -> &[f32] {
    if data.is_empty() { &[0.0] } else { data }
}

fn check_class_targets(
    shape: Shape,
    targets: impl ExactSizeIterator<Item = i64>,
    ignore_index: i64,
) -> Result<()> {
    Shape::new(shape.rows, 1).check_len("targets", targets.len())?;
    let classes = i64::try_from(shape.cols).unwrap_or(i64::MAX);
    for (row, value) in targets.enumerate() {
        if value != ignore_index && !(0..classes).contains(&value) {
            return Err(Error::TargetOutOfRange { row, value, classes: shape.cols, ignore_index });
        }
    }
    Ok(())
}

/// The host's typed error for a row the GPU reported as a bad target.
fn target_error(targets: Targets<'_>, row: usize, classes: usize, ignore_index: i64) -> Error {
    let value = match targets {
        Targets::U32(t) => t.get(row).map(|&v| i64::from(v)),
        Targets::I32(t) => t.get(row).map(|&v| i64::from(v)),
        Targets::I64(t) => t.get(row).copied(),
        Targets::Probabilities(_) => None,
    };
    Error::TargetOutOfRange { row, value: value.unwrap_or(i64::MIN), classes, ignore_index }
}
