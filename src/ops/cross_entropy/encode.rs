//! The GPU-resident API of the cross-entropy: checks the caller's buffers and records
//! the passes into the caller's encoder.

use std::num::NonZeroU64;

use wgpu::util::DeviceExt;

use super::{CrossEntropy, CrossEntropyBuffers, Gradient, Reduction, TargetBuffer};
use crate::context::{Context, KernelKey};
use crate::error::{Error, Result};
use crate::ops::validate;
use crate::plan::{Plan, Strategy};
use crate::shaders::{BindingLayout, Shader};
use crate::shape::Shape;

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
