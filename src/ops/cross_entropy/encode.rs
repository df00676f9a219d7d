//! The GPU-resident API of the cross-entropy: checks the caller's buffers and records
//! the passes into the caller's encoder.

use super::{CrossEntropy, CrossEntropyBuffers, Gradient, Reduction, STATUS_WORDS, TargetBuffer};
use crate::context::Context;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernels::{
    GroupShape, KernelKey, KernelSpec, OpKernel, RowParams, Slot, TargetsKind, VectorWidth,
};
use crate::ops::rows::{self, PackedOutputs, RowDispatch};
use crate::ops::validate;
use crate::plan::Plan;
use crate::record::Recorder;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tensor::{BufferRegion, TensorRef};

impl CrossEntropy {
    /// Records the op into the caller's `encoder` over the caller's buffers: the fused
    /// kernel, plus a pass before it (the mean's divisor, for class-index targets). The
    /// mean or sum over rows is folded into the fused kernel, whose last workgroup to
    /// finish sums the row losses in a fixed order: two dispatches in all for the mean
    /// over class indices, one otherwise (per chunk of rows past one storage binding; and
    /// a 16-bit gradient of rows of odd length adds its edge pass). The packed kernel (a
    /// device of few storage buffers) and a z-loss buffer of its own take passes of their
    /// own after it instead. Submits nothing; returns the plan.
    ///
    /// Class-index targets out of range are not checked on the host here: their rows get
    /// a NaN loss and are counted in the status words ([`super::CrossEntropyStatus`]).
    ///
    /// # Errors
    ///
    /// [`Error::MissingUsage`], [`Error::MisalignedOffset`] and [`Error::BufferTooSmall`]
    /// (or [`Error::UntypedHalfTensor`]) for a buffer that cannot be bound as needed,
    /// [`Error::DTypeMismatch`] when the gradient or probability targets are not of the
    /// logits' type, [`Error::InvalidOption`] for options that contradict the buffers (no
    /// grad buffer for [`Gradient::Separate`], an upstream gradient with a reduction, an
    /// `ignore_index` outside i32), [`Error::AliasedBuffers`] when an output is also an
    /// input, [`Error::ForeignBuffer`] for a buffer of another device, and the errors of
    /// [`CrossEntropy::plan`].
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        buffers: &CrossEntropyBuffers<'_>,
        shape: Shape,
    ) -> Result<Plan> {
        self.check_options()?;
        self.check_buffers(ctx, buffers, shape)?;
        let elements = shape.len()? as u64;
        let mut tensors = vec![buffers.logits];
        tensors.extend(buffers.grad.filter(|_| self.gradient == Gradient::Separate));
        if let TargetBuffer::Probabilities(p) = buffers.targets {
            tensors.push(p);
        }
        let vector = rows::vector_width(&tensors, elements);
        self.encode_unchecked(ctx, &mut Recorder::new(encoder), buffers, shape, vector)
    }

    /// Records the passes over buffers already checked, with the given vector width.
    pub(crate) fn encode_unchecked(
        &self,
        ctx: &Context,
        recorder: &mut Recorder<'_>,
        buffers: &CrossEntropyBuffers<'_>,
        shape: Shape,
        vector: VectorWidth,
    ) -> Result<Plan> {
        let probabilities = matches!(buffers.targets, TargetBuffer::Probabilities(_));
        let dtype = buffers.logits.dtype();
        let plan = self.plan_for(ctx, shape, dtype, vector, probabilities)?;
        if shape.is_empty() {
            return Ok(plan);
        }
        let mut settings = self.settings(buffers.targets, buffers.weight.is_some(), shape)?;
        let divisor_pass = self.reduction == Reduction::Mean && !probabilities;
        let reduce_pass = self.reduction != Reduction::None;
        let z_loss_pass = buffers.z_loss.is_some();
        let fold =
            self.folds_reduction(ctx.caps(), self.kernel_on(ctx, probabilities), &plan, shape, z_loss_pass);
        let chunks: Vec<(usize, usize)> = plan.chunks.iter().map(|c| (c.first_row, c.rows)).collect();
        settings.params.chunks = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        let rows_bytes = 4 * shape.rows as u64;

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
            // The z-loss on its own comes from each row's logsumexp: the caller's, or ours.
            let lse_scratch = (z_loss_pass && buffers.lse.is_none())
                .then(|| ctx.scratch_buffer(recorder, rows_bytes))
                .transpose()?;
            let lse = buffers.lse.or(lse_scratch.as_deref().map(BufferRegion::new));
            let row_losses = reduce_pass.then(|| ctx.scratch_buffer(recorder, rows_bytes)).transpose()?;
            let argmax_scratch = (self.argmax && buffers.argmax.is_none())
                .then(|| ctx.scratch_buffer(recorder, rows_bytes))
                .transpose()?;
            let totals = totals.as_ref().map(|t| BufferRegion::new(t).with_size(totals_bytes));
            // The scratch comes cleared: the folded reduction's ticket starts from 0.
            let row_loss = row_losses.as_deref().map_or(buffers.loss, BufferRegion::new);

            let scale = match (buffers.grad_output, totals) {
                (Some(g), _) => Some(Scale::PerRow(g)),
                (None, Some(totals)) if fold => Some(Scale::Folded { totals, loss: buffers.loss }),
                (None, Some(t)) if divisor_pass => Some(Scale::Totals(t)),
                _ => None,
            };
            let main = self.main_dispatch(
                &settings,
                MainBindings {
                    logits: Some(buffers.logits),
                    targets: buffers.targets,
                    grad: buffers.grad,
                    weight: buffers.weight,
                    scale,
                    row_loss,
                    argmax: buffers.argmax.or(argmax_scratch.as_deref().map(BufferRegion::new)),
                    lse,
                    status,
                },
                KernelSpec {
                    cached: rows::keeps_rows(ctx),
                    strided: false,
                    paired: false,
                    group: GroupShape::DEFAULT,
                    op: self.kernel_on(ctx, probabilities),
                    strategy: plan.strategy,
                    dtype,
                    vector,
                },
            );
            let reduce = reduce_dispatch(
                &settings,
                buffers.targets,
                buffers.weight,
                reduce_pass.then_some(row_loss),
                lse,
                totals,
                reduce_pass.then_some(buffers.loss),
                buffers.z_loss,
            );
            if divisor_pass {
                // One chunk's pass writes the whole divisor itself.
                let combine = (chunks.len() > 1).then_some("combine_total_weight");
                record_reductions(ctx, recorder, &settings, &reduce, &chunks, "total_weight", combine)?;
            }
            rows::encode_rows(ctx, recorder, &main, shape, &plan)?;
            if reduce_pass && !fold {
                record_reductions(ctx, recorder, &settings, &reduce, &chunks, "reduce_rows", Some("finish"))?;
            }
            if z_loss_pass && reduce_pass {
                record_reductions(
                    ctx,
                    recorder,
                    &settings,
                    &reduce,
                    &chunks,
                    "reduce_z_loss",
                    Some("finish_z_loss"),
                )?;
            } else if z_loss_pass {
                record_reductions(ctx, recorder, &settings, &reduce, &chunks, "z_loss_rows", None)?;
            }
            Ok(())
        })?;
        Ok(plan)
    }

    /// What every pass of the op with these targets shares: its overridable constants
    /// and its options in the params.
    pub(crate) fn settings(&self, targets: TargetBuffer<'_>, weight: bool, shape: Shape) -> Result<Settings> {
        let ignore_index = i32::try_from(self.ignore_index).map_err(|_| Error::InvalidOption {
            option: "ignore_index",
            problem: format!("{} does not fit in i32, as GPU class-index targets must", self.ignore_index),
        })?;
        let reduction = match self.reduction {
            Reduction::None => 0u32,
            Reduction::Mean => 1,
            Reduction::Sum => 2,
        };
        let signed = !matches!(targets, TargetBuffer::U32(_));
        let wide = matches!(targets, TargetBuffer::I64(_));
        let probabilities = matches!(targets, TargetBuffer::Probabilities(_));
        Ok(Settings {
            constants: vec![
                ("TARGETS_SIGNED", u32::from(signed)),
                ("TARGETS_WIDE", u32::from(wide)),
                ("HAS_WEIGHT", u32::from(weight)),
                ("REDUCTION", reduction),
            ],
            params: RowParams {
                cols: u32::try_from(shape.cols).unwrap_or(u32::MAX),
                ignore_index,
                label_smoothing: self.label_smoothing,
                softcap: self.softcap.unwrap_or(0.0),
                z_loss: self.z_loss,
                total_rows: u32::try_from(shape.rows).unwrap_or(u32::MAX),
                ..RowParams::default()
            },
            target_bytes: if wide { 8 } else { 4 },
            targets: if probabilities { TargetsKind::Probabilities } else { TargetsKind::Classes },
        })
    }

    /// The fused kernel's dispatch over `bindings`.
    pub(crate) fn main_dispatch<'b>(
        &self,
        settings: &Settings,
        bindings: MainBindings<'b>,
        spec: KernelSpec,
    ) -> RowDispatch<'b> {
        let mut constants = settings.constants.clone();
        constants.extend([
            ("HAS_UPSTREAM", u32::from(matches!(bindings.scale, Some(Scale::PerRow(_))))),
            ("ARGMAX", u32::from(self.argmax)),
            ("WRITE_LSE", u32::from(bindings.lse.is_some())),
            ("SOFTCAP", u32::from(self.softcap.is_some())),
            ("FOLD_REDUCTION", u32::from(matches!(bindings.scale, Some(Scale::Folded { .. })))),
        ]);
        let cols_bytes = 4 * u64::from(settings.params.cols);
        let mut whole: Vec<(Slot, BufferRegion<'_>, u64)> = vec![(Slot::Status, bindings.status, 16)];
        whole.extend(bindings.weight.map(|w| (Slot::Weight, w, cols_bytes)));
        let mut per_row: Vec<(Slot, BufferRegion<'_>, u64)> = Vec::new();
        let mut tensors: Vec<(Slot, TensorRef<'_>)> =
            bindings.logits.map(|logits| (Slot::Logits, logits)).into_iter().collect();
        match bindings.targets {
            TargetBuffer::U32(t) | TargetBuffer::I32(t) | TargetBuffer::I64(t) => {
                per_row.push((Slot::Targets, t, settings.target_bytes));
            }
            TargetBuffer::Probabilities(p) => tensors.push((Slot::TargetProbs, p)),
        }
        if let (Gradient::Separate, Some(grad)) = (self.gradient, bindings.grad) {
            tensors.push((Slot::Grad, grad));
        }
        match bindings.scale {
            Some(Scale::PerRow(g)) => per_row.push((Slot::Scale, g, 4)),
            Some(Scale::Totals(t)) => whole.push((Slot::Scale, t, t.size())),
            Some(Scale::Folded { totals, loss }) => {
                whole.extend([(Slot::Totals, totals, totals.size()), (Slot::Loss, loss, 4)]);
            }
            None => {}
        }
        per_row.push((Slot::RowLoss, bindings.row_loss, 4));
        let extras = if spec.op.decl().packs_extras {
            Some(PackedOutputs { argmax: bindings.argmax, lse: bindings.lse })
        } else {
            per_row.extend(bindings.argmax.map(|a| (Slot::Argmax, a, 4)));
            per_row.extend(bindings.lse.map(|lse| (Slot::Lse, lse, 4)));
            None
        };
        RowDispatch { spec, constants, tensors, per_row, whole, params: settings.params, extras }
    }

    /// Checks every caller buffer's usage, offset, size and type against the shape and
    /// options.
    fn check_buffers(&self, ctx: &Context, buffers: &CrossEntropyBuffers<'_>, shape: Shape) -> Result<()> {
        let elements = shape.len()? as u64;
        let rows_bytes = 4 * shape.rows as u64;
        let dtype = buffers.logits.dtype();
        validate::tensor(ctx, ("logits", "logits"), &buffers.logits, dtype, elements)?;
        let targets = match buffers.targets {
            TargetBuffer::U32(t) | TargetBuffer::I32(t) => {
                validate::storage_region(ctx, "targets", &t, rows_bytes)?;
                t
            }
            TargetBuffer::I64(t) => {
                validate::storage_region(ctx, "targets", &t, 2 * rows_bytes)?;
                t
            }
            TargetBuffer::Probabilities(p) => {
                validate::tensor(ctx, ("targets", "logits"), &p, dtype, elements)?;
                p.region()
            }
        };
        if let Some(w) = &buffers.weight {
            validate::storage_region(ctx, "weight", w, 4 * shape.cols as u64)?;
        }
        if let Some(g) = &buffers.grad_output {
            if self.reduction != Reduction::None {
                return Err(Error::InvalidOption {
                    option: "grad_output",
                    problem: "an upstream gradient per row needs reduction none".into(),
                });
            }
            validate::storage_region(ctx, "grad_output", g, rows_bytes)?;
        }
        let loss_bytes = if self.reduction == Reduction::None { rows_bytes } else { 4 };
        validate::storage_region(ctx, "loss", &buffers.loss, loss_bytes)?;
        match (self.gradient, &buffers.grad) {
            (Gradient::Separate, Some(g)) => validate::tensor(ctx, ("grad", "logits"), g, dtype, elements)?,
            (Gradient::Separate, None) => {
                return Err(Error::InvalidOption {
                    option: "gradient",
                    problem: "Gradient::Separate needs a grad buffer; pass one, or use InPlace or Skip"
                        .into(),
                });
            }
            _ => {}
        }
        if let Some(a) = &buffers.argmax {
            validate::storage_region(ctx, "argmax", a, rows_bytes)?;
        }
        if let Some(l) = &buffers.lse {
            validate::storage_region(ctx, "lse", l, rows_bytes)?;
        }
        // On a device of few storage buffers the packed kernel copies them out.
        let probabilities = matches!(buffers.targets, TargetBuffer::Probabilities(_));
        if self.packs_on(ctx, probabilities) {
            for (what, region) in [("argmax", buffers.argmax), ("lse", buffers.lse)] {
                if region.is_some_and(|r| !r.buffer().usage().contains(wgpu::BufferUsages::COPY_DST)) {
                    return Err(Error::MissingUsage { what, missing: wgpu::BufferUsages::COPY_DST });
                }
            }
        }
        if let Some(z) = &buffers.z_loss {
            validate::storage_region(ctx, "z_loss", z, loss_bytes)?;
        }
        if let Some(s) = &buffers.status {
            validate::storage_region(ctx, "status", s, 4 * STATUS_WORDS as u64)?;
            if !s.buffer().usage().contains(wgpu::BufferUsages::COPY_DST) {
                return Err(Error::MissingUsage { what: "status", missing: wgpu::BufferUsages::COPY_DST });
            }
        }
        let grad = buffers.grad.filter(|_| self.gradient == Gradient::Separate).map(|g| g.region());
        let outputs = [Some(buffers.loss), grad, buffers.argmax, buffers.status, buffers.lse, buffers.z_loss];
        let logits = (self.gradient != Gradient::InPlace).then_some(buffers.logits.region());
        let inputs = [logits, Some(targets), buffers.weight, buffers.grad_output];
        validate::outputs_distinct(&inputs, &outputs)?;
        if self.gradient == Gradient::InPlace {
            // The logits are written: nothing else may share their buffer.
            for other in inputs.iter().skip(1).chain(&outputs).flatten() {
                validate::distinct(other.buffer(), buffers.logits.buffer())?;
            }
        }
        Ok(())
    }
}

/// What the passes of one cross-entropy share.
pub(crate) struct Settings {
    /// The overridable constants of every pass.
    pub(crate) constants: Vec<(&'static str, u32)>,
    /// The options, as the params carry them.
    pub(crate) params: RowParams,
    /// Bytes per class target.
    pub(crate) target_bytes: u64,
    /// Which kind of targets.
    pub(crate) targets: TargetsKind,
}

/// Where the fused kernel finds the scale of its gradient.
#[derive(Clone, Copy)]
pub(crate) enum Scale<'b> {
    /// An upstream gradient per row (reduction none).
    PerRow(BufferRegion<'b>),
    /// The totals of the reductions, whose first word is the mean's divisor.
    Totals(BufferRegion<'b>),
    /// The mean or sum folded into the kernel: the totals (the mean's divisor in, each
    /// chunk's loss sum and the workgroups' ticket) and the reduced loss out.
    Folded {
        /// The totals.
        totals: BufferRegion<'b>,
        /// The reduced loss.
        loss: BufferRegion<'b>,
    },
}

/// The buffers of the fused kernel's dispatch.
#[derive(Clone, Copy)]
pub(crate) struct MainBindings<'b> {
    /// None where the logits are never stored (the linear cross-entropy's forward).
    pub(crate) logits: Option<TensorRef<'b>>,
    /// The targets.
    pub(crate) targets: TargetBuffer<'b>,
    /// The gradient's own tensor.
    pub(crate) grad: Option<TensorRef<'b>>,
    /// Class weights.
    pub(crate) weight: Option<BufferRegion<'b>>,
    /// The gradient's scale.
    pub(crate) scale: Option<Scale<'b>>,
    /// Each row's loss.
    pub(crate) row_loss: BufferRegion<'b>,
    /// Each row's predicted class.
    pub(crate) argmax: Option<BufferRegion<'b>>,
    /// Each row's logsumexp.
    pub(crate) lse: Option<BufferRegion<'b>>,
    /// The status words.
    pub(crate) status: BufferRegion<'b>,
}

/// Bytes of the reductions' totals over `chunks` chunks of rows: [0] the total weight, [1]
/// the rows not ignored, then per chunk its parts of them, its loss sum and its z-loss
/// sum, then the folded reduction's ticket (see `shaders/ops/cross_entropy_targets.wgsl`).
pub(crate) const fn totals_bytes(chunks: usize) -> u64 {
    4 * (2 + 4 * chunks as u64 + 1)
}

/// The dispatch of the reductions over rows: the targets, row losses and logsumexps per
/// chunk of rows, the rest whole.
#[allow(clippy::too_many_arguments)] // each binding of the reduce module, named
pub(crate) fn reduce_dispatch<'b>(
    settings: &Settings,
    targets: TargetBuffer<'b>,
    weight: Option<BufferRegion<'b>>,
    row_loss: Option<BufferRegion<'b>>,
    lse: Option<BufferRegion<'b>>,
    totals: Option<BufferRegion<'b>>,
    loss: Option<BufferRegion<'b>>,
    z_loss: Option<BufferRegion<'b>>,
) -> RowDispatch<'b> {
    let mut per_row: Vec<(Slot, BufferRegion<'_>, u64)> = Vec::new();
    if let TargetBuffer::U32(t) | TargetBuffer::I32(t) | TargetBuffer::I64(t) = targets {
        per_row.push((Slot::Targets, t, settings.target_bytes));
    }
    per_row.extend(row_loss.map(|r| (Slot::RowLoss, r, 4)));
    per_row.extend(lse.map(|lse| (Slot::Lse, lse, 4)));
    let mut whole: Vec<(Slot, BufferRegion<'_>, u64)> = Vec::new();
    whole.extend(weight.map(|w| (Slot::Weight, w, 4 * u64::from(settings.params.cols))));
    whole.extend(totals.map(|t| (Slot::Totals, t, t.size())));
    whole.extend(loss.map(|l| (Slot::Loss, l, 4)));
    // The z-loss on its own: one value when the loss is reduced, else one per row.
    match (z_loss, loss.is_some()) {
        (Some(z), true) => whole.push((Slot::ZLoss, z, 4)),
        (Some(z), false) => per_row.push((Slot::ZLoss, z, 4)),
        (None, _) => {}
    }
    RowDispatch {
        spec: reduce_spec(settings.targets),
        constants: settings.constants.clone(),
        tensors: Vec::new(),
        per_row,
        whole,
        params: settings.params,
        extras: None,
    }
}

/// The module of the reductions over rows.
pub(crate) const fn reduce_spec(targets: TargetsKind) -> KernelSpec {
    KernelSpec {
        op: OpKernel::CrossEntropyReduce { targets },
        strategy: Strategy::WorkgroupPerRow,
        dtype: DType::F32,
        vector: VectorWidth::Scalar,
        cached: false,
        strided: false,
        paired: false,
        group: GroupShape::DEFAULT,
    }
}

/// Records `per_chunk` once per chunk of rows (`(first row, rows)`), then `combine` once
/// over the chunks' results.
pub(crate) fn record_reductions(
    ctx: &Context,
    recorder: &mut Recorder<'_>,
    settings: &Settings,
    reduce: &RowDispatch<'_>,
    chunks: &[(usize, usize)],
    per_chunk: &'static str,
    combine: Option<&'static str>,
) -> Result<()> {
    let spec = reduce.spec;
    let module = ctx.module(spec)?;
    let pipeline =
        |entry_point| ctx.pipeline(&KernelKey { spec, entry_point, constants: settings.constants.clone() });
    let partial = pipeline(per_chunk)?;
    let label = spec.label();
    let uniform = |params: RowParams| ctx.uniform(&label, bytemuck::bytes_of(&params));
    for (k, &(first_row, rows)) in (0u32..).zip(chunks) {
        let buffer = uniform(RowParams {
            rows: u32::try_from(rows).unwrap_or(u32::MAX),
            chunk: k,
            ..settings.params
        })?;
        let group = rows::bind_rows(ctx, &module, &buffer, reduce, 0, (first_row as u64, rows as u64), &[])?;
        recorder.dispatch(&label, &partial, &group, [1, 1]);
    }
    if let Some(combine) = combine {
        let chunk_count = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        let buffer = uniform(RowParams { chunk: chunk_count, ..settings.params })?;
        let group = rows::bind_rows(ctx, &module, &buffer, reduce, 0, (0, 1), &[])?;
        recorder.dispatch(&label, &pipeline(combine)?, &group, [1, 1]);
    }
    Ok(())
}
