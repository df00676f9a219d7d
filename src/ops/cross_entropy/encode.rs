//! The GPU-resident API of the cross-entropy: checks the caller's buffers and records
//! the passes into the caller's encoder.

use super::{CrossEntropy, CrossEntropyBuffers, Gradient, Reduction, STATUS_WORDS, TargetBuffer};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::{KernelKey, KernelSpec, OpKernel, RowParams, TargetsKind, VectorWidth};
use crate::ops::rows::{self, RowDispatch};
use crate::ops::validate;
use crate::plan::Plan;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tensor::{BufferRegion, TensorRef};

impl CrossEntropy {
    /// Records the op into the caller's `encoder` over the caller's buffers: the fused
    /// kernel, plus a pass before it (the mean's divisor, for class-index targets) and one
    /// after it (the mean or sum over rows). Submits nothing; returns the plan.
    ///
    /// Class-index targets out of range are not checked on the host here: their rows get
    /// a NaN loss and are counted in the status words ([`super::CrossEntropyStatus`]).
    ///
    /// # Errors
    ///
    /// [`Error::MissingUsage`], [`Error::MisalignedOffset`] and [`Error::BufferTooSmall`]
    /// for a buffer that cannot be bound as needed, [`Error::DTypeMismatch`] when the
    /// gradient or probability targets are not of the logits' type,
    /// [`Error::InvalidOption`] for options that contradict the buffers (no grad buffer
    /// for [`Gradient::Separate`], an upstream gradient with a reduction, an
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
        self.encode_unchecked(ctx, encoder, buffers, shape, vector)
    }

    /// Records the passes over buffers already checked, with the given vector width.
    pub(crate) fn encode_unchecked(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
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
        let ignore_index = i32::try_from(self.ignore_index).map_err(|_| Error::InvalidOption {
            option: "ignore_index",
            problem: format!("{} does not fit in i32, as GPU class-index targets must", self.ignore_index),
        })?;
        let reduction = match self.reduction {
            Reduction::None => 0u32,
            Reduction::Mean => 1,
            Reduction::Sum => 2,
        };
        let signed = !matches!(buffers.targets, TargetBuffer::U32(_));
        let wide = matches!(buffers.targets, TargetBuffer::I64(_));
        let target_bytes = if wide { 8 } else { 4 };
        let shared_constants = vec![
            ("TARGETS_SIGNED", u32::from(signed)),
            ("TARGETS_WIDE", u32::from(wide)),
            ("HAS_WEIGHT", u32::from(buffers.weight.is_some())),
            ("REDUCTION", reduction),
        ];
        let mut constants = shared_constants.clone();
        constants.extend([
            ("HAS_UPSTREAM", u32::from(buffers.grad_output.is_some())),
            ("ARGMAX", u32::from(self.argmax)),
            ("WRITE_LSE", u32::from(buffers.lse.is_some() || buffers.z_loss.is_some())),
            ("SOFTCAP", u32::from(self.softcap.is_some())),
        ]);
        let targets_kind = if probabilities { TargetsKind::Probabilities } else { TargetsKind::Classes };
        let divisor_pass = self.reduction == Reduction::Mean && !probabilities;
        let reduce_pass = self.reduction != Reduction::None;
        let z_loss_pass = buffers.z_loss.is_some();
        let chunk_count = u32::try_from(plan.chunks.len()).unwrap_or(u32::MAX);
        let params = RowParams {
            cols: u32::try_from(shape.cols).unwrap_or(u32::MAX),
            ignore_index,
            label_smoothing: self.label_smoothing,
            softcap: self.softcap.unwrap_or(0.0),
            z_loss: self.z_loss,
            total_rows: u32::try_from(shape.rows).unwrap_or(u32::MAX),
            ..RowParams::default()
        };
        let reduce_spec = KernelSpec {
            op: OpKernel::CrossEntropyReduce { targets: targets_kind },
            strategy: Strategy::WorkgroupPerRow,
            dtype: crate::dtype::DType::F32,
            vector: VectorWidth::Scalar,
            cached: false,
            strided: false,
        };
        let rows_bytes = 4 * shape.rows as u64;
        let cols_bytes = 4 * shape.cols as u64;

        ctx.catching(|| {
            let status_scratch;
            let status = match buffers.status {
                Some(region) => region,
                None => {
                    status_scratch = ctx.scratch_buffer(4 * STATUS_WORDS as u64)?;
                    BufferRegion::new(&status_scratch)
                }
            };
            encoder.clear_buffer(status.buffer(), status.offset(), Some(4 * STATUS_WORDS as u64));
            // [0] total weight, [1] rows not ignored, then per chunk its parts of them, its
            // loss sum and its z-loss sum.
            let totals_bytes = 4 * (2 + 4 * u64::from(chunk_count));
            let totals =
                (divisor_pass || reduce_pass).then(|| ctx.scratch_buffer(totals_bytes)).transpose()?;
            // The z-loss on its own comes from each row's logsumexp: the caller's, or ours.
            let lse_scratch =
                (z_loss_pass && buffers.lse.is_none()).then(|| ctx.scratch_buffer(rows_bytes)).transpose()?;
            let lse = buffers.lse.or(lse_scratch.as_ref().map(BufferRegion::new));
            let row_losses = reduce_pass.then(|| ctx.scratch_buffer(rows_bytes)).transpose()?;
            let argmax_scratch = (self.argmax && buffers.argmax.is_none())
                .then(|| ctx.scratch_buffer(rows_bytes))
                .transpose()?;

            let mut whole: Vec<(&'static str, BufferRegion<'_>, u64)> = vec![("status", status, 16)];
            whole.extend(buffers.weight.map(|w| ("weight", w, cols_bytes)));
            let mut per_row: Vec<(&'static str, BufferRegion<'_>, u64)> = Vec::new();
            let mut tensors: Vec<(&'static str, TensorRef<'_>)> = vec![("logits", buffers.logits)];
            match buffers.targets {
                TargetBuffer::U32(t) | TargetBuffer::I32(t) | TargetBuffer::I64(t) => {
                    per_row.push(("targets", t, target_bytes));
                }
                TargetBuffer::Probabilities(p) => tensors.push(("target_probs", p)),
            }
            if let (Gradient::Separate, Some(grad)) = (self.gradient, buffers.grad) {
                tensors.push(("grad", grad));
            }
            match (buffers.grad_output, &totals) {
                (Some(g), _) => per_row.push(("scale", g, 4)),
                (None, Some(t)) if divisor_pass => whole.push(("scale", BufferRegion::new(t), totals_bytes)),
                _ => {}
            }
            let row_loss = row_losses.as_ref().map_or(buffers.loss, BufferRegion::new);
            per_row.push(("row_loss", row_loss, 4));
            if let Some(argmax) = buffers.argmax.or(argmax_scratch.as_ref().map(BufferRegion::new)) {
                per_row.push(("argmax", argmax, 4));
            }
            per_row.extend(lse.map(|lse| ("lse", lse, 4)));
            let main = RowDispatch {
                spec: KernelSpec {
                    cached: rows::keeps_rows(ctx),
                    strided: false,
                    op: self.kernel(probabilities),
                    strategy: plan.strategy,
                    dtype: buffers.logits.dtype(),
                    vector,
                },
                constants,
                tensors,
                per_row,
                whole,
                params,
            };

            // The reductions' bindings: the targets and row losses per chunk, the rest whole.
            let mut reduce_per_row: Vec<(&'static str, BufferRegion<'_>, u64)> = Vec::new();
            if let TargetBuffer::U32(t) | TargetBuffer::I32(t) | TargetBuffer::I64(t) = buffers.targets {
                reduce_per_row.push(("targets", t, target_bytes));
            }
            if let Some(r) = &row_losses {
                reduce_per_row.push(("row_loss", BufferRegion::new(r), 4));
            }
            reduce_per_row.extend(lse.map(|lse| ("lse", lse, 4)));
            let mut reduce_whole: Vec<(&'static str, BufferRegion<'_>, u64)> = Vec::new();
            reduce_whole.extend(buffers.weight.map(|w| ("weight", w, cols_bytes)));
            reduce_whole.extend(totals.as_ref().map(|t| ("totals", BufferRegion::new(t), totals_bytes)));
            if reduce_pass {
                reduce_whole.push(("loss", buffers.loss, 4));
            }
            match (buffers.z_loss, reduce_pass) {
                (Some(z), true) => reduce_whole.push(("z_loss", z, 4)),
                (Some(z), false) => reduce_per_row.push(("z_loss", z, 4)),
                (None, _) => {}
            }
            let reduce = RowDispatch {
                spec: reduce_spec,
                constants: shared_constants.clone(),
                tensors: Vec::new(),
                per_row: reduce_per_row,
                whole: reduce_whole,
                params,
            };
            // A pass per chunk, then (`combine`) one over the chunks' results.
            let reduce_passes = |encoder: &mut wgpu::CommandEncoder,
                                 per_chunk: &'static str,
                                 combine: Option<&'static str>| {
                let module = ctx.module(reduce_spec)?;
                let pipeline = |entry_point| {
                    ctx.pipeline(&KernelKey {
                        spec: reduce_spec,
                        entry_point,
                        constants: shared_constants.clone(),
                    })
                };
                let partial = pipeline(per_chunk)?;
                let label = reduce_spec.label();
                for (k, chunk) in (0u32..).zip(&plan.chunks) {
                    let chunk_params =
                        RowParams { rows: u32::try_from(chunk.rows).unwrap_or(u32::MAX), chunk: k, ..params };
                    let buffer = ctx.buffer_with(
                        &label,
                        bytemuck::bytes_of(&chunk_params),
                        wgpu::BufferUsages::UNIFORM,
                    )?;
                    let rows = (chunk.first_row as u64, chunk.rows as u64);
                    let group = rows::bind_rows(ctx, &module, &buffer, &reduce, 0, rows, &[]);
                    Context::dispatch(encoder, &label, &partial, &group, [1, 1]);
                }
                if let Some(combine) = combine {
                    let final_params = RowParams { chunk: chunk_count, ..params };
                    let buffer = ctx.buffer_with(
                        &label,
                        bytemuck::bytes_of(&final_params),
                        wgpu::BufferUsages::UNIFORM,
                    )?;
                    let group = rows::bind_rows(ctx, &module, &buffer, &reduce, 0, (0, 1), &[]);
                    Context::dispatch(encoder, &label, &pipeline(combine)?, &group, [1, 1]);
                }
                Ok::<(), Error>(())
            };

            if divisor_pass {
                reduce_passes(encoder, "total_weight", Some("combine_total_weight"))?;
            }
            rows::encode_rows(ctx, encoder, &main, shape, &plan)?;
            if reduce_pass {
                reduce_passes(encoder, "reduce_rows", Some("finish"))?;
            }
            if z_loss_pass && reduce_pass {
                reduce_passes(encoder, "reduce_z_loss", Some("finish_z_loss"))?;
            } else if z_loss_pass {
                reduce_passes(encoder, "z_loss_rows", None)?;
            }
            Ok(())
        })?;
        Ok(plan)
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
        for (i, output) in outputs.iter().flatten().enumerate() {
            for input in inputs.iter().flatten() {
                validate::distinct(input.buffer(), output.buffer())?;
            }
            for other in outputs.iter().flatten().skip(i + 1) {
                validate::distinct(other.buffer(), output.buffer())?;
            }
        }
        if self.gradient == Gradient::InPlace {
            // The logits are written: nothing else may share their buffer.
            for other in inputs.iter().skip(1).chain(&outputs).flatten() {
                validate::distinct(other.buffer(), buffers.logits.buffer())?;
            }
        }
        Ok(())
    }
}
