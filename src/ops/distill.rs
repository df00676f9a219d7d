//! Knowledge distillation from logits, fused: per row of student logits `s` and teacher
//! logits `t` at temperature `T`, the loss `T^2 KL(softmax(t/T) || softmax(s/T))` and its
//! gradient with respect to the student's logits, `T (softmax(s/T) - softmax(t/T))`,
//! scaled for the reduction. PyTorch's
//! `F.kl_div(F.log_softmax(s / T, dim), F.softmax(t / T, dim), reduction='batchmean') * T * T`.
//!
//! One kernel reads both tensors once per row where a row fits on chip (as the
//! cross-entropy does its logits), writing each row's loss and the gradient; the
//! reductions over rows are the cross-entropy's. Class targets may mask rows: a row whose
//! target is `ignore_index` counts for nothing (loss 0, gradient 0, and not in the
//! batchmean's divisor), as in the cross-entropy.

use crate::context::Context;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::kernels::{
    GroupShape, KernelSpec, OpKernel, RowParams, Slot, TargetsKind, VectorWidth, check_storage_bindings,
};
use crate::ops::autotune::{self, RowPlanning};
use crate::ops::cross_entropy::{
    CrossEntropyStatus, STATUS_WORDS, Settings, TargetBuffer, Targets, check_class_targets,
    record_reductions, reduce_dispatch, reduce_spec, totals_bytes,
};
use crate::ops::rows::{self, RowDispatch};
use crate::ops::validate;
use crate::plan::Plan;
use crate::record::Recorder;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tensor::{BufferRegion, TensorRef};

/// How the distillation's row losses are reduced.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DistillReduction {
    /// The sum over rows divided by the rows counted (all of them, or those not masked):
    /// PyTorch's `batchmean`, the mathematically correct KL of a batch.
    #[default]
    BatchMean,
    /// The sum over rows.
    Sum,
    /// One loss per row.
    None,
}

impl DistillReduction {
    /// The name PyTorch and the command line give it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::BatchMean => "batchmean",
            Self::Sum => "sum",
            Self::None => "none",
        }
    }

    /// The cross-entropy's reduction code the shared passes read: 0 none, 1 mean, 2 sum.
    const fn code(self) -> u32 {
        match self {
            Self::None => 0,
            Self::BatchMean => 1,
            Self::Sum => 2,
        }
    }
}

/// The host inputs of a distillation, of one element type `T` (`f32`,
/// [`crate::f16`](struct@crate::f16) or [`crate::bf16`]).
#[derive(Clone, Copy, Debug)]
pub struct DistillInput<'a, T = f32> {
    /// The student's logits, laid out as `shape` says.
    pub student: &'a [T],
    /// The teacher's logits, the same shape.
    pub teacher: &'a [T],
    /// Rows and classes (the class axis anywhere: [`Shape::of_dims`]).
    pub shape: Shape,
    /// Optional class targets, one per row, masking the rows equal to `ignore_index`
    /// ([`Targets::Probabilities`] is refused).
    pub targets: Option<Targets<'a, T>>,
    /// Optional upstream gradient per row, for [`DistillReduction::None`].
    pub grad_output: Option<&'a [f32]>,
}

impl<'a, T> DistillInput<'a, T> {
    /// Student and teacher logits of `shape`; no mask, no upstream gradient.
    #[must_use]
    pub const fn new(student: &'a [T], teacher: &'a [T], shape: Shape) -> Self {
        Self { student, teacher, shape, targets: None, grad_output: None }
    }

    /// With class targets masking the rows equal to `ignore_index`.
    #[must_use]
    pub const fn targets(mut self, targets: Targets<'a, T>) -> Self {
        self.targets = Some(targets);
        self
    }

    /// With an upstream gradient per row (reduction none only).
    #[must_use]
    pub const fn grad_output(mut self, grad_output: &'a [f32]) -> Self {
        self.grad_output = Some(grad_output);
        self
    }
}

/// The results of a distillation: from the GPU, the loss in f32 and the gradient in the
/// inputs' element type `G`; from the reference, both in f64.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DistillOutput<G, L = G> {
    /// One loss per row for [`DistillReduction::None`], else one value.
    pub loss: Vec<L>,
    /// The gradient with respect to the student's logits, laid out as they are, when
    /// asked for.
    pub grad: Option<Vec<G>>,
}

/// The GPU buffers of a distillation: regions of the caller's buffers.
#[derive(Clone, Copy, Debug)]
pub struct DistillBuffers<'a> {
    /// The student's logits.
    pub student: TensorRef<'a>,
    /// The teacher's logits, of the student's storage type.
    pub teacher: TensorRef<'a>,
    /// Optional class targets masking rows ([`TargetBuffer::Probabilities`] is refused).
    pub targets: Option<TargetBuffer<'a>>,
    /// Optional upstream gradient, one f32 per row, for [`DistillReduction::None`].
    pub grad_output: Option<BufferRegion<'a>>,
    /// The loss: one f32 per row for [`DistillReduction::None`], one f32 otherwise.
    pub loss: BufferRegion<'a>,
    /// The gradient with respect to the student's logits, of their storage type: written
    /// when given.
    pub grad: Option<TensorRef<'a>>,
    /// Four u32 status words (`STORAGE | COPY_DST`), as the cross-entropy's: rows whose
    /// target is neither a class nor `ignore_index`.
    pub status: Option<BufferRegion<'a>>,
}

impl<'a> DistillBuffers<'a> {
    /// Student and teacher logits and where the loss goes; no mask, no gradient.
    #[must_use]
    pub fn new(
        student: impl Into<TensorRef<'a>>,
        teacher: impl Into<TensorRef<'a>>,
        loss: impl Into<BufferRegion<'a>>,
    ) -> Self {
        Self {
            student: student.into(),
            teacher: teacher.into(),
            targets: None,
            grad_output: None,
            loss: loss.into(),
            grad: None,
            status: None,
        }
    }

    /// With class targets masking rows.
    #[must_use]
    pub const fn with_targets(mut self, targets: TargetBuffer<'a>) -> Self {
        self.targets = Some(targets);
        self
    }

    /// With an upstream gradient per row (reduction none only).
    #[must_use]
    pub fn with_grad_output(mut self, grad_output: impl Into<BufferRegion<'a>>) -> Self {
        self.grad_output = Some(grad_output.into());
        self
    }

    /// With the gradient's tensor.
    #[must_use]
    pub fn with_grad(mut self, grad: impl Into<TensorRef<'a>>) -> Self {
        self.grad = Some(grad.into());
        self
    }

    /// With status words.
    #[must_use]
    pub fn with_status(mut self, status: impl Into<BufferRegion<'a>>) -> Self {
        self.status = Some(status.into());
        self
    }
}

/// The fused distillation and its options: temperature 1, batchmean, `ignore_index`
/// -100 (for a mask of class targets), the gradient computed by the host API.
///
/// ```no_run
/// # fn main() -> Result<(), wgpu_softmax::Error> {
/// use wgpu_softmax::{Context, Distill, DistillInput, Shape};
/// let ctx = Context::new()?;
/// let student = [1.0, 2.0, 0.5, -1.0, 0.0, 3.0];
/// let teacher = [1.5, 1.0, 0.0, 0.0, 0.5, 2.0];
/// let input = DistillInput::new(&student, &teacher, Shape::new(2, 3));
/// let out = Distill::new().temperature(2.0).run(&ctx, &input)?;
/// println!("loss {}, d loss / d student {:?}", out.loss[0], out.grad);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Distill {
    temperature: f32,
    reduction: DistillReduction,
    ignore_index: i64,
    gradient: bool,
    strategy: Option<Strategy>,
}

impl Default for Distill {
    fn default() -> Self {
        Self::new()
    }
}

impl Distill {
    /// Temperature 1, batchmean, `ignore_index` -100, with the gradient.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            temperature: 1.0,
            reduction: DistillReduction::BatchMean,
            ignore_index: -100,
            gradient: true,
            strategy: None,
        }
    }

    /// Sets the temperature `T`, finite and above 0.
    #[must_use]
    pub const fn temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }

    /// Sets the reduction.
    #[must_use]
    pub const fn reduction(mut self, reduction: DistillReduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Sets the class target whose rows a mask ignores (default -100).
    #[must_use]
    pub const fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// Whether [`Distill::run`] computes the gradient (the GPU-resident API writes it
    /// when given a buffer for it).
    #[must_use]
    pub const fn gradient(mut self, gradient: bool) -> Self {
        self.gradient = gradient;
        self
    }

    /// Forces a strategy instead of letting the planner choose.
    #[must_use]
    pub const fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// The temperature.
    #[must_use]
    pub const fn get_temperature(&self) -> f32 {
        self.temperature
    }

    /// The reduction.
    #[must_use]
    pub const fn get_reduction(&self) -> DistillReduction {
        self.reduction
    }

    /// The ignored class target.
    #[must_use]
    pub const fn get_ignore_index(&self) -> i64 {
        self.ignore_index
    }

    /// Whether the host API computes the gradient.
    #[must_use]
    pub const fn get_gradient(&self) -> bool {
        self.gradient
    }

    /// Checks the options.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for a temperature that is not finite and above 0, or an
    /// `ignore_index` outside i32 (GPU class targets are 32-bit).
    pub fn check_options(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::InvalidOption {
                option: "temperature",
                problem: format!(
                    "{} is not a finite temperature above 0; give T > 0, as 1 or 2",
                    self.temperature
                ),
            });
        }
        if i32::try_from(self.ignore_index).is_err() {
            return Err(Error::InvalidOption {
                option: "ignore_index",
                problem: format!("{} does not fit in i32, as GPU class targets must", self.ignore_index),
            });
        }
        Ok(())
    }

    /// Plans the dispatch of f32 data of `shape` on `ctx`'s device.
    ///
    /// # Errors
    ///
    /// [`Error::StrategyUnavailable`] for a forced strategy this device cannot run for
    /// this shape, [`Error::LimitExceeded`] when a row is too wide for one storage binding
    /// or a grid cannot fit.
    pub fn plan(&self, ctx: &Context, shape: Shape) -> Result<Plan> {
        self.plan_for(ctx, shape, DType::F32, VectorWidth::Vec4, 8)
    }

    fn plan_for(
        &self,
        ctx: &Context,
        shape: Shape,
        dtype: DType,
        vector: VectorWidth,
        target_bytes: u64,
    ) -> Result<Plan> {
        let tensor = shape.cols as u64 * dtype.size();
        let row_bytes = [tensor, tensor, tensor, target_bytes, 4, 4];
        // Planned for the kernel with the gradient: it binds the most.
        let planning = RowPlanning {
            kernel: OpKernel::Distill { gradient: true },
            forced: self.strategy,
            dtype,
            vector,
            variant: u32::from(self.gradient) | (self.reduction as u32) << 1,
            row_bytes: &row_bytes,
        };
        autotune::plan_op(ctx, shape, planning, &|ctx, encoder, strategy, sample| {
            let op = Self { strategy: Some(strategy), ..*self };
            let mut buffers = DistillBuffers::new(sample.tensor(0), sample.tensor(1), sample.per_row(0));
            if self.gradient {
                buffers = buffers.with_grad(sample.tensor(2));
            }
            op.encode(ctx, encoder, &buffers, sample.shape).map(|_| ())
        })
    }

    /// Records the op into the caller's `encoder` over the caller's buffers: with a mask
    /// and batchmean, the count of rows not ignored; the fused kernel (each row's loss,
    /// and the gradient where a buffer is given); and the reduction over rows. Submits
    /// nothing; returns the plan.
    ///
    /// Class targets that are neither a class nor `ignore_index` are not checked on the
    /// host here: their rows get a NaN loss and are counted in the status words.
    ///
    /// # Errors
    ///
    /// [`Error::MissingUsage`], [`Error::MisalignedOffset`], [`Error::RegionOutOfBounds`]
    /// and [`Error::BufferTooSmall`] for a buffer that cannot be bound as needed;
    /// [`Error::DTypeMismatch`] when the teacher or the gradient is not of the student's
    /// type; [`Error::InvalidOption`] for a bad option, probability targets, or an
    /// upstream gradient with a reduction; [`Error::AliasedBuffers`] when an output
    /// shares a buffer with another buffer of the op; and the errors of
    /// [`Distill::plan`].
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        buffers: &DistillBuffers<'_>,
        shape: Shape,
    ) -> Result<Plan> {
        self.check_options()?;
        self.check_buffers(ctx, buffers, shape)?;
        // The reductions' module must bind on this device too: refuse before recording.
        let available = ctx.device().limits().max_storage_buffers_per_shader_stage;
        check_storage_bindings(reduce_spec(TargetsKind::Classes).storage_bindings(), available)?;
        let elements = shape.len()? as u64;
        let mut tensors = vec![buffers.student, buffers.teacher];
        tensors.extend(buffers.grad);
        let vector = rows::vector_width(&tensors, elements);
        let dtype = buffers.student.dtype();
        let wide = matches!(buffers.targets, Some(TargetBuffer::I64(_)));
        let plan = self.plan_for(ctx, shape, dtype, vector, if wide { 8 } else { 4 })?;
        if shape.is_empty() {
            return Ok(plan);
        }
        let masked = buffers.targets.is_some();
        let divisor_pass = masked && self.reduction == DistillReduction::BatchMean;
        let reduce_pass = self.reduction != DistillReduction::None;
        let settings = self.settings(buffers.targets, shape);
        let chunks: Vec<(usize, usize)> = plan.chunks.iter().map(|c| (c.first_row, c.rows)).collect();
        let rows_bytes = 4 * shape.rows as u64;
        let recorder = &mut Recorder::new(encoder);
        ctx.catching(|| {
            let status_scratch;
            let status = match buffers.status {
                Some(region) => region,
                None => {
                    status_scratch = ctx.scratch_buffer(recorder, 4 * STATUS_WORDS as u64)?;
                    BufferRegion::new(&status_scratch)
                }
            };
            recorder.encoder().clear_buffer(status.buffer(), status.offset(), Some(4 * STATUS_WORDS as u64));
            let totals_bytes = totals_bytes(chunks.len());
            let totals = (divisor_pass || reduce_pass)
                .then(|| ctx.scratch_buffer(recorder, totals_bytes))
                .transpose()?;
            let totals = totals.as_ref().map(|t| BufferRegion::new(t).with_size(totals_bytes));
            let row_losses = reduce_pass.then(|| ctx.scratch_buffer(recorder, rows_bytes)).transpose()?;
            let row_loss = row_losses.as_deref().map_or(buffers.loss, BufferRegion::new);
            // The reductions read class targets only with a mask.
            let reduce_targets = buffers.targets.unwrap_or(TargetBuffer::Probabilities(buffers.student));
            if divisor_pass {
                let reduce = reduce_dispatch(&settings, reduce_targets, None, None, None, totals, None, None);
                record_reductions(
                    ctx,
                    recorder,
                    &settings,
                    &reduce,
                    &chunks,
                    "total_weight",
                    Some("combine_total_weight"),
                )?;
            }
            let main = self.main_dispatch(
                ctx,
                &settings,
                buffers,
                (row_loss, status, totals),
                plan.strategy,
                vector,
            );
            rows::encode_rows(ctx, recorder, &main, shape, &plan)?;
            if reduce_pass {
                let reduce = reduce_dispatch(
                    &settings,
                    reduce_targets,
                    None,
                    Some(row_loss),
                    None,
                    totals,
                    Some(buffers.loss),
                    None,
                );
                record_reductions(ctx, recorder, &settings, &reduce, &chunks, "reduce_rows", Some("finish"))?;
            }
            Ok(())
        })?;
        Ok(plan)
    }

    /// What the passes share: the reductions' constants (class targets as the mask's,
    /// no weights) and the options in the params.
    fn settings(&self, targets: Option<TargetBuffer<'_>>, shape: Shape) -> Settings {
        let wide = matches!(targets, Some(TargetBuffer::I64(_)));
        let signed = !matches!(targets, Some(TargetBuffer::U32(_)));
        Settings {
            constants: vec![
                ("TARGETS_SIGNED", u32::from(signed)),
                ("TARGETS_WIDE", u32::from(wide)),
                ("HAS_WEIGHT", 0),
                ("REDUCTION", self.reduction.code()),
            ],
            params: RowParams {
                cols: u32::try_from(shape.cols).unwrap_or(u32::MAX),
                // Checked by check_options.
                ignore_index: i32::try_from(self.ignore_index).unwrap_or(-1),
                total_rows: u32::try_from(shape.rows).unwrap_or(u32::MAX),
                temperature: self.temperature,
                ..RowParams::default()
            },
            target_bytes: if wide { 8 } else { 4 },
            // Without a mask, the batchmean divides by every row, as the cross-entropy's
            // mean over probability targets does.
            targets: if targets.is_some() { TargetsKind::Classes } else { TargetsKind::Probabilities },
        }
    }

    /// The fused kernel's dispatch.
    fn main_dispatch<'b>(
        &self,
        ctx: &Context,
        settings: &Settings,
        buffers: &DistillBuffers<'b>,
        (row_loss, status, totals): (BufferRegion<'b>, BufferRegion<'b>, Option<BufferRegion<'b>>),
        strategy: Strategy,
        vector: VectorWidth,
    ) -> RowDispatch<'b> {
        let masked = buffers.targets.is_some();
        let upstream = buffers.grad_output.is_some();
        let mut constants: Vec<(&'static str, u32)> =
            settings.constants.iter().copied().filter(|(name, _)| *name != "HAS_WEIGHT").collect();
        constants.extend([("HAS_UPSTREAM", u32::from(upstream)), ("HAS_MASK", u32::from(masked))]);
        let mut tensors = vec![(Slot::Student, buffers.student), (Slot::Teacher, buffers.teacher)];
        tensors.extend(buffers.grad.map(|g| (Slot::Grad, g)));
        let mut per_row: Vec<(Slot, BufferRegion<'b>, u64)> = Vec::new();
        if let Some(TargetBuffer::U32(t) | TargetBuffer::I32(t) | TargetBuffer::I64(t)) = buffers.targets {
            per_row.push((Slot::Targets, t, settings.target_bytes));
        }
        let mut whole: Vec<(Slot, BufferRegion<'b>, u64)> = vec![(Slot::Status, status, 16)];
        match (buffers.grad_output, totals) {
            (Some(g), _) => per_row.push((Slot::Scale, g, 4)),
            (None, Some(t)) if masked && self.reduction == DistillReduction::BatchMean => {
                whole.push((Slot::Scale, t, t.size()));
            }
            _ => {}
        }
        per_row.push((Slot::RowLoss, row_loss, 4));
        RowDispatch {
            spec: KernelSpec {
                op: OpKernel::Distill { gradient: buffers.grad.is_some() },
                strategy,
                dtype: buffers.student.dtype(),
                vector,
                cached: rows::keeps_rows(ctx),
                strided: false,
                paired: false,
                group: GroupShape::DEFAULT,
            },
            constants,
            tensors,
            per_row,
            whole,
            params: settings.params,
            extras: None,
        }
    }

    /// Checks every caller buffer against the shape and options.
    fn check_buffers(&self, ctx: &Context, buffers: &DistillBuffers<'_>, shape: Shape) -> Result<()> {
        let elements = shape.len()? as u64;
        let rows_bytes = 4 * shape.rows as u64;
        let dtype = buffers.student.dtype();
        validate::tensor(ctx, ("student", "student"), &buffers.student, dtype, elements)?;
        validate::tensor(ctx, ("teacher", "student"), &buffers.teacher, dtype, elements)?;
        let targets = match buffers.targets {
            None => None,
            Some(TargetBuffer::U32(t) | TargetBuffer::I32(t)) => {
                validate::storage_region(ctx, "targets", &t, rows_bytes)?;
                Some(t)
            }
            Some(TargetBuffer::I64(t)) => {
                validate::storage_region(ctx, "targets", &t, 2 * rows_bytes)?;
                Some(t)
            }
            Some(TargetBuffer::Probabilities(_)) => {
                return Err(Error::InvalidOption {
                    option: "targets",
                    problem: "the distillation's mask takes class targets (u32, i32 or i64); the teacher \
                              gives the probabilities"
                        .into(),
                });
            }
        };
        if let Some(g) = &buffers.grad_output {
            if self.reduction != DistillReduction::None {
                return Err(Error::InvalidOption {
                    option: "grad_output",
                    problem: "an upstream gradient per row needs reduction none".into(),
                });
            }
            validate::storage_region(ctx, "grad_output", g, rows_bytes)?;
        }
        let loss_bytes = if self.reduction == DistillReduction::None { rows_bytes } else { 4 };
        validate::storage_region(ctx, "loss", &buffers.loss, loss_bytes)?;
        if let Some(g) = &buffers.grad {
            validate::tensor(ctx, ("grad", "student"), g, dtype, elements)?;
        }
        if let Some(s) = &buffers.status {
            validate::storage_region(ctx, "status", s, 4 * STATUS_WORDS as u64)?;
            if !s.buffer().usage().contains(wgpu::BufferUsages::COPY_DST) {
                return Err(Error::MissingUsage { what: "status", missing: wgpu::BufferUsages::COPY_DST });
            }
        }
        let outputs = [Some(buffers.loss), buffers.grad.map(|g| g.region()), buffers.status];
        let inputs =
            [Some(buffers.student.region()), Some(buffers.teacher.region()), targets, buffers.grad_output];
        validate::outputs_distinct(&inputs, &outputs)?;
        Ok(())
    }

    /// Checks host inputs completely (shapes, mask targets, options), as
    /// [`Distill::run`] does before any GPU work.
    ///
    /// # Errors
    ///
    /// As [`Distill::run`]'s input errors.
    pub fn check_input<T: Element>(&self, input: &DistillInput<'_, T>) -> Result<()> {
        self.check_options()?;
        let shape = input.shape;
        shape.check_len("student", input.student.len())?;
        shape.check_len("teacher", input.teacher.len())?;
        if let Some(g) = input.grad_output {
            if self.reduction != DistillReduction::None {
                return Err(Error::InvalidOption {
                    option: "grad_output",
                    problem: "an upstream gradient per row needs reduction none".into(),
                });
            }
            Shape::new(shape.rows, 1).check_len("grad_output", g.len())?;
        }
        match input.targets {
            None => Ok(()),
            Some(Targets::U32(t)) => {
                check_class_targets(shape, t.iter().map(|&v| i64::from(v)), self.ignore_index)
            }
            Some(Targets::I32(t)) => {
                check_class_targets(shape, t.iter().map(|&v| i64::from(v)), self.ignore_index)
            }
            Some(Targets::I64(t)) => check_class_targets(shape, t.iter().copied(), self.ignore_index),
            Some(Targets::Probabilities(_)) => Err(Error::InvalidOption {
                option: "targets",
                problem: "the distillation's mask takes class targets (u32, i32 or i64); the teacher gives \
                          the probabilities"
                    .into(),
            }),
        }
    }

    /// Runs the op on host data and reads the results back, waiting at most the
    /// context's timeout. The inputs are checked before any GPU work. Logits of any
    /// element type: the gradient comes back in it, the loss in f32.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] for a wrong length of logits, targets or upstream
    /// gradient; [`Error::TargetOutOfRange`] naming the row and value of a mask target
    /// that is neither a class nor `ignore_index`; [`Error::InvalidOption`] for a bad
    /// option, probability targets, or an upstream gradient with a reduction other than
    /// none; and the errors of [`Distill::encode`].
    pub fn run<T: Element>(
        &self,
        ctx: &Context,
        input: &DistillInput<'_, T>,
    ) -> Result<DistillOutput<T, f32>> {
        self.check_input(input)?;
        let shape = input.shape;
        let (rows, len) = (shape.rows, shape.len()?);
        let loss_len = if self.reduction == DistillReduction::None { rows } else { 1 };
        if shape.is_empty() {
            return Ok(DistillOutput {
                loss: self.empty_loss(rows),
                grad: self.gradient.then(|| vec![T::from_f32(0.0); len]),
            });
        }
        ctx.catching(|| {
            let student = ctx.upload_elements(input.student)?;
            let teacher = ctx.upload_elements(input.teacher)?;
            let stand_in = i32::try_from(self.ignore_index).unwrap_or(-1);
            let words: Option<Vec<i32>> = input.targets.map(|t| {
                let word = |v: i64| {
                    if v == self.ignore_index { stand_in } else { i32::try_from(v).unwrap_or(stand_in) }
                };
                match t {
                    Targets::U32(t) => t.iter().map(|&v| word(i64::from(v))).collect(),
                    Targets::I32(t) => t.iter().map(|&v| word(i64::from(v))).collect(),
                    Targets::I64(t) => t.iter().map(|&v| word(v)).collect(),
                    Targets::Probabilities(_) => Vec::new(),
                }
            });
            let targets = words.as_deref().map(|w| ctx.upload_elements(w)).transpose()?;
            let grad_output = input.grad_output.map(|g| ctx.upload_elements(g)).transpose()?;
            let loss = ctx.storage_buffer(loss_len)?;
            let grad = self.gradient.then(|| ctx.elements_buffer(T::DTYPE, len)).transpose()?;
            let status = ctx.storage_buffer(STATUS_WORDS)?;
            let mut buffers = DistillBuffers::new(
                TensorRef::new(&student, T::DTYPE),
                TensorRef::new(&teacher, T::DTYPE),
                &loss,
            )
            .with_status(&status);
            buffers.targets = targets.as_ref().map(|t| TargetBuffer::I32(BufferRegion::new(t)));
            buffers.grad_output = grad_output.as_ref().map(BufferRegion::new);
            buffers.grad = grad.as_ref().map(|g| TensorRef::new(g, T::DTYPE));
            let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgpu-softmax: distill"),
            });
            let host_op = Self { ignore_index: i64::from(stand_in), ..*self };
            host_op.encode(ctx, &mut encoder, &buffers, shape)?;
            let mut parts = vec![(&loss, crate::transfer::f32_bytes(loss_len)), (&status, 16)];
            if let Some(g) = grad.as_ref() {
                parts.push((g, len as u64 * T::DTYPE.size()));
            }
            let mut read = ctx.finish_and_read_many(encoder, &parts)?.into_iter();
            let mut next = || read.next().unwrap_or_default();
            let loss: Vec<f32> = bytemuck::pod_collect_to_vec(&next());
            let status = CrossEntropyStatus::from_words(&bytemuck::pod_collect_to_vec(&next()));
            if let Some(row) = status.first_bad_target_row {
                // The host checks make this unreachable; if the GPU disagrees, say so.
                return Err(Error::TargetOutOfRange {
                    row: row as usize,
                    value: i64::MIN,
                    classes: shape.cols,
                    ignore_index: self.ignore_index,
                });
            }
            let grad = grad.as_ref().map(|_| bytemuck::pod_collect_to_vec(&next()));
            Ok(DistillOutput { loss, grad })
        })
    }

    /// The loss of a batch without classes or rows: a KL of 0 per row (a sum over no
    /// classes), so 0 per row and for the sum, and for the batchmean 0 over rows but NaN
    /// over no rows (a mean of nothing).
    pub(crate) fn empty_loss(&self, rows: usize) -> Vec<f32> {
        match self.reduction {
            DistillReduction::None => vec![0.0; rows],
            DistillReduction::Sum => vec![0.0],
            DistillReduction::BatchMean if rows == 0 => vec![f32::NAN],
            DistillReduction::BatchMean => vec![0.0],
        }
    }
}
