//! The GPU-resident API of the linear cross-entropy: checks the caller's buffers, then
//! records window after window of rows into the caller's encoder.

use super::batch::{BatchBuffers, HiddenWindow};
use super::{
    LinearCrossEntropy, LinearCrossEntropyBuffers, LinearPlan, LinearShape, RowArrays, WindowLimits,
};
use crate::context::Context;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernels::{
    GroupShape, KernelSpec, LINEAR_STORAGE_BINDINGS, LINEAR_WORKGROUP_BYTES, TargetsKind, VectorWidth,
    check_storage_bindings,
};
use crate::ops::cross_entropy::{CrossEntropy, Gradient, Reduction, STATUS_WORDS, TargetBuffer, reduce_spec};
use crate::ops::matmul::{
    Operand, Product, record_column_sums, record_pack_halves, record_product, spec as matmul_spec,
    terms_per_dispatch,
};
use crate::ops::validate;
use crate::plan::DeviceCaps;
use crate::record::Recorder;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tensor::{BufferRegion, TensorRef};

impl LinearCrossEntropy {
    /// Records the op into the caller's `encoder` over the caller's buffers: per window of
    /// rows, the logits into a workspace, the fused cross-entropy over them (the gradient
    /// in place), and the products adding the window's part to each gradient given; then
    /// the reduction of the loss. Given no gradient buffer, no logits are stored: each
    /// window's blocks of logits are reduced to their rows' statistics as they are
    /// computed ([`LinearPlan::stores_logits`]). Submits nothing; returns the plan of
    /// windows.
    ///
    /// The gradients written are those given buffers for ([`Reduction::None`] scales each
    /// row's by the upstream gradient, when given). Class targets out of range are not
    /// checked on the host: their rows get a NaN loss and are counted in the status words.
    ///
    /// # Errors
    ///
    /// [`Error::MissingUsage`], [`Error::MisalignedOffset`], [`Error::RegionOutOfBounds`]
    /// and [`Error::BufferTooSmall`] for a buffer that cannot be bound as needed;
    /// [`Error::DTypeMismatch`] when `W`, `b` or a gradient is not of `H`'s type;
    /// [`Error::InvalidOption`] for a bad option, probability targets, an upstream
    /// gradient with a reduction, or a bias gradient without a bias;
    /// [`Error::AliasedBuffers`] when an output shares a buffer with another buffer of the
    /// op; and the errors of the workspace's plan ([`Error::LimitExceeded`] when a window's fewest rows
    /// of logits or `W` in f32 exceed one binding).
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        buffers: &LinearCrossEntropyBuffers<'_>,
        shape: LinearShape,
    ) -> Result<LinearPlan> {
        self.encode_windows(ctx, &mut Recorder::new(encoder), buffers, shape, &mut |_| Ok(()))
    }

    /// [`LinearCrossEntropy::encode`], calling `after_window` on the recorder after each
    /// window but the last (the host API submits there, so that no one submission runs
    /// longer than a window).
    pub(crate) fn encode_windows(
        &self,
        ctx: &Context,
        recorder: &mut Recorder<'_>,
        buffers: &LinearCrossEntropyBuffers<'_>,
        shape: LinearShape,
        after_window: &mut dyn FnMut(&mut Recorder<'_>) -> Result<()>,
    ) -> Result<LinearPlan> {
        self.loss.check_options()?;
        self.check_buffers(ctx, buffers, shape)?;
        // Every pass's module must bind on this device: refuse before recording anything.
        let available = ctx.device().limits().max_storage_buffers_per_shader_stage;
        let window_loss = KernelSpec {
            op: CrossEntropy::new().gradient(Gradient::InPlace).kernel_on(ctx, false),
            strategy: Strategy::ThreadPerRow,
            dtype: DType::F32,
            vector: VectorWidth::Scalar,
            cached: false,
            strided: false,
            paired: false,
            group: GroupShape::DEFAULT,
        };
        for spec in [
            reduce_spec(TargetsKind::Classes),
            matmul_spec(buffers.hidden.dtype(), VectorWidth::Scalar),
            window_loss,
        ] {
            check_storage_bindings(spec.storage_bindings(), available)?;
        }
        let wants_grad =
            buffers.grad_hidden.is_some() || buffers.grad_classifier.is_some() || buffers.grad_bias.is_some();
        let stores_logits = wants_grad || !reduces_blocks_in_place(ctx.caps(), shape.hidden);
        let limits = WindowLimits::of(ctx.caps());
        let arrays = RowArrays {
            target_bytes: if matches!(buffers.targets, TargetBuffer::I64(_)) { 8 } else { 4 },
            hidden_row_bytes: shape.hidden as u64 * buffers.hidden.dtype().size(),
        };
        let plan = self.plan_windows(shape, limits, arrays, stores_logits)?;
        if shape.classes == 0 {
            return Ok(plan);
        }
        let LinearShape { rows, hidden: d, classes: v } = shape;
        let dtype = buffers.hidden.dtype();
        let half = dtype != DType::F32;
        let loss = self.loss.gradient(if wants_grad { Gradient::InPlace } else { Gradient::Skip });
        let reduced = self.loss.get_reduction() != Reduction::None;
        let window_rows = plan.window_rows;

        ctx.catching(|| {
            let mut scratch = |bytes: u64| ctx.scratch_buffer(recorder, bytes);
            let status_scratch;
            let status = match buffers.status {
                Some(region) => region,
                None => {
                    status_scratch = scratch(4 * STATUS_WORDS as u64)?;
                    BufferRegion::new(&status_scratch)
                }
            };
            let totals = reduced.then(|| scratch(CrossEntropy::BATCH_TOTALS_BYTES)).transpose()?;
            let row_losses = reduced.then(|| scratch(4 * rows as u64)).transpose()?;
            // Room past the last row for the 128-bit accesses of the fused kernel.
            let workspace = scratch(plan.workspace_bytes + 16)?;
            // The f32 sums of gradients stored in 16 bits: dH window by window, dW and db
            // over every window.
            let hidden_sums = buffers
                .grad_hidden
                .filter(|_| half)
                .map(|_| scratch(4 * (window_rows * d) as u64))
                .transpose()?;
            let classifier_sums =
                buffers.grad_classifier.filter(|_| half).map(|_| scratch(4 * (v * d) as u64)).transpose()?;
            let bias_sums = buffers.grad_bias.filter(|_| half).map(|_| scratch(4 * v as u64)).transpose()?;
            // Where a gradient's f32 sums go: the f32 sums' scratch, or the gradient itself.
            fn f32_target<'r>(
                given: Option<TensorRef<'r>>,
                sums: Option<&'r wgpu::Buffer>,
            ) -> Option<BufferRegion<'r>> {
                match (given, sums) {
                    (Some(_), Some(s)) => Some(BufferRegion::new(s)),
                    (Some(g), None) => Some(g.region()),
                    (None, _) => None,
                }
            }
            let hidden_target = f32_target(buffers.grad_hidden, hidden_sums.as_deref());
            let classifier_target = f32_target(buffers.grad_classifier, classifier_sums.as_deref());
            let bias_target = f32_target(buffers.grad_bias, bias_sums.as_deref());

            let batch = BatchBuffers {
                targets: buffers.targets,
                weight: buffers.weight,
                grad_output: buffers.grad_output,
                totals: totals.as_deref().map(BufferRegion::new),
                row_loss: row_losses.as_deref().map_or(buffers.loss, BufferRegion::new),
                lse: buffers.lse,
                loss: buffers.loss,
                status,
            };
            loss.encode_batch_start(ctx, recorder, &batch, rows, v)?;
            let element = dtype.size();
            for first in (0..rows).step_by(window_rows) {
                let n = window_rows.min(rows - first);
                let hidden_window = TensorRef::new(
                    buffers.hidden.region().part((first * d) as u64 * element, (n * d) as u64 * element),
                    dtype,
                );
                if !stores_logits {
                    let source = HiddenWindow {
                        hidden: hidden_window,
                        classifier: buffers.classifier,
                        bias: buffers.bias,
                        features: d,
                    };
                    let window = Shape::new(n, v);
                    loss.encode_batch_window_from_hidden(
                        ctx,
                        recorder,
                        &batch,
                        &source,
                        (first, window),
                        &workspace,
                    )?;
                } else {
                    let logits = BufferRegion::new(&workspace).with_size((n * v) as u64 * 4);
                    let g = TensorRef::new(logits, DType::F32);
                    record_product(
                        ctx,
                        recorder,
                        &Product {
                            a: Operand { tensor: hidden_window, transposed: false },
                            b: Operand { tensor: buffers.classifier, transposed: true },
                            bias: buffers.bias,
                            c: logits,
                            m: n,
                            n: v,
                            k: d,
                            accumulate: false,
                        },
                    )?;
                    loss.encode_batch_window(ctx, recorder, &batch, g, first, Shape::new(n, v))?;
                    if let Some(target) = hidden_target {
                        // dH of the window = G W, at the window's rows (or in the f32 sums).
                        let c = if half {
                            target
                        } else {
                            target.part((first * d) as u64 * 4, (n * d) as u64 * 4)
                        };
                        let classifier = Operand { tensor: buffers.classifier, transposed: false };
                        let product = Product {
                            a: Operand { tensor: g, transposed: false },
                            b: classifier,
                            bias: None,
                            c,
                            m: n,
                            n: d,
                            k: v,
                            accumulate: false,
                        };
                        record_product(ctx, recorder, &product)?;
                        if let (true, Some(grad)) = (half, buffers.grad_hidden) {
                            let part =
                                grad.region().part((first * d) as u64 * element, (n * d) as u64 * element);
                            record_pack_halves(ctx, recorder, target, TensorRef::new(part, dtype), n * d)?;
                        }
                    }
                    let accumulate = first > 0;
                    if let Some(c) = classifier_target {
                        // dW += G^T H_window.
                        let product = Product {
                            a: Operand { tensor: g, transposed: true },
                            b: Operand { tensor: hidden_window, transposed: false },
                            bias: None,
                            c,
                            m: v,
                            n: d,
                            k: n,
                            accumulate,
                        };
                        record_product(ctx, recorder, &product)?;
                    }
                    if let Some(c) = bias_target {
                        record_column_sums(ctx, recorder, logits, (n, v), c, accumulate)?;
                    }
                }
                if first + n < rows {
                    after_window(recorder)?;
                }
            }
            if rows == 0 {
                // No rows: dW and db are sums of nothing, zero (the products over k = 0
                // terms read nothing of their operands).
                let nothing = Operand { tensor: buffers.classifier, transposed: false };
                if let Some(c) = classifier_target {
                    let product = Product {
                        a: nothing,
                        b: nothing,
                        bias: None,
                        c,
                        m: v,
                        n: d,
                        k: 0,
                        accumulate: false,
                    };
                    record_product(ctx, recorder, &product)?;
                }
                if let Some(c) = bias_target {
                    record_column_sums(ctx, recorder, buffers.classifier.region(), (0, v), c, false)?;
                }
            }
            if let (Some(sums), Some(grad)) = (&classifier_sums, buffers.grad_classifier) {
                record_pack_halves(ctx, recorder, BufferRegion::new(sums), grad, v * d)?;
            }
            if let (Some(sums), Some(grad)) = (&bias_sums, buffers.grad_bias) {
                record_pack_halves(ctx, recorder, BufferRegion::new(sums), grad, v)?;
            }
            loss.encode_batch_finish(ctx, recorder, &batch, rows, v)
        })?;
        Ok(plan)
    }

    /// Checks every caller buffer against the shape and options.
    fn check_buffers(
        &self,
        ctx: &Context,
        buffers: &LinearCrossEntropyBuffers<'_>,
        shape: LinearShape,
    ) -> Result<()> {
        let [hidden_elements, classifier_elements, _] = shape.elements()?;
        let dtype = buffers.hidden.dtype();
        let rows_bytes = 4 * shape.rows as u64;
        let classes = shape.classes as u64;
        validate::tensor(ctx, ("hidden", "hidden"), &buffers.hidden, dtype, hidden_elements as u64)?;
        validate::tensor(
            ctx,
            ("classifier", "hidden"),
            &buffers.classifier,
            dtype,
            classifier_elements as u64,
        )?;
        if let Some(b) = &buffers.bias {
            validate::tensor(ctx, ("bias", "hidden"), b, dtype, classes)?;
        }
        let targets = match buffers.targets {
            TargetBuffer::U32(t) | TargetBuffer::I32(t) => {
                validate::storage_region(ctx, "targets", &t, rows_bytes)?;
                t
            }
            TargetBuffer::I64(t) => {
                validate::storage_region(ctx, "targets", &t, 2 * rows_bytes)?;
                t
            }
            TargetBuffer::Probabilities(_) => {
                return Err(Error::InvalidOption {
                    option: "targets",
                    problem: "the linear cross-entropy takes class-index targets (u32, i32 or i64)".into(),
                });
            }
        };
        if let Some(w) = &buffers.weight {
            validate::storage_region(ctx, "weight", w, 4 * classes)?;
        }
        let reduction = self.loss.get_reduction();
        if let Some(g) = &buffers.grad_output {
            if reduction != Reduction::None {
                return Err(Error::InvalidOption {
                    option: "grad_output",
                    problem: "an upstream gradient per row needs reduction none".into(),
                });
            }
            validate::storage_region(ctx, "grad_output", g, rows_bytes)?;
        }
        let loss_bytes = if reduction == Reduction::None { rows_bytes } else { 4 };
        validate::storage_region(ctx, "loss", &buffers.loss, loss_bytes)?;
        if let Some(l) = &buffers.lse {
            validate::storage_region(ctx, "lse", l, rows_bytes)?;
            // On a device of few storage buffers the windows' packed kernel copies it out.
            let packed = CrossEntropy::new().gradient(Gradient::InPlace).packs_on(ctx, false);
            if packed && !l.buffer().usage().contains(wgpu::BufferUsages::COPY_DST) {
                return Err(Error::MissingUsage { what: "lse", missing: wgpu::BufferUsages::COPY_DST });
            }
        }
        if let Some(g) = &buffers.grad_hidden {
            validate::tensor(ctx, ("grad_hidden", "hidden"), g, dtype, hidden_elements as u64)?;
        }
        if let Some(g) = &buffers.grad_classifier {
            validate::tensor(ctx, ("grad_classifier", "hidden"), g, dtype, classifier_elements as u64)?;
        }
        if let Some(g) = &buffers.grad_bias {
            if buffers.bias.is_none() {
                return Err(Error::InvalidOption {
                    option: "grad_bias",
                    problem: "a bias gradient needs a bias; pass one, or leave grad_bias out".into(),
                });
            }
            validate::tensor(ctx, ("grad_bias", "hidden"), g, dtype, classes)?;
        }
        if let Some(s) = &buffers.status {
            validate::storage_region(ctx, "status", s, 4 * STATUS_WORDS as u64)?;
            if !s.buffer().usage().contains(wgpu::BufferUsages::COPY_DST) {
                return Err(Error::MissingUsage { what: "status", missing: wgpu::BufferUsages::COPY_DST });
            }
        }
        let outputs = [
            Some(buffers.loss),
            buffers.lse,
            buffers.grad_hidden.map(|g| g.region()),
            buffers.grad_classifier.map(|g| g.region()),
            buffers.grad_bias.map(|g| g.region()),
            buffers.status,
        ];
        let inputs = [
            Some(buffers.hidden.region()),
            Some(buffers.classifier.region()),
            buffers.bias.map(|b| b.region()),
            Some(targets),
            buffers.weight,
            buffers.grad_output,
        ];
        validate::outputs_distinct(&inputs, &outputs)?;
        Ok(())
    }
}

/// Whether the device runs the forward that reduces each block of logits as it computes
/// it: the kernel's workgroup memory (the tile's slabs and a lane per invocation) and its
/// twelve storage bindings fit the device's limits, and its sums over the `hidden`
/// features fit one dispatch under the driver's loop limit (that kernel cannot split
/// them). Else the loss takes the windows of logits, whose products split their sums.
pub(crate) fn reduces_blocks_in_place(caps: &DeviceCaps, hidden: usize) -> bool {
    caps.max_workgroup_storage_bytes >= LINEAR_WORKGROUP_BYTES
        && caps.max_storage_buffers_per_stage >= LINEAR_STORAGE_BINDINGS
        && hidden <= terms_per_dispatch(caps.max_loop_iterations) / 2
}
