//! The GPU-resident API of the cross-entropy: checks the caller's buffers and records
//! the passes into the caller's encoder.

use std::num::NonZeroU64;

use super::{CrossEntropy, CrossEntropyBuffers, Gradient, Reduction, TargetBuffer};
use crate::context::{Context, KernelKey};
use crate::error::{Error, Result};
use crate::ops::validate;
use crate::plan::{Chunk, Plan};
use crate::shaders::{BindingLayout, Shader};
use crate::shape::Shape;
use crate::strategy::Strategy;

/// The per-dispatch parameters, laid out as the WGSL `Params` struct.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    groups_x: u32,
    ignore_index: i32,
    label_smoothing: f32,
    total_rows: u32,
    first_row: u32,
    chunk: u32,
}

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
        let shared_constants = vec![
            ("TARGET_KIND", target_kind),
            ("HAS_WEIGHT", u32::from(buffers.weight.is_some())),
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
            Strategy::SplitRow => {
                return Err(Error::StrategyUnavailable {
                    strategy: Strategy::SplitRow,
                    reason: "the row split is implemented for softmax and log-softmax only",
                });
            }
            Strategy::SubgroupPerRow => {
                main_constants.push(("ROWS_PER_GROUP", plan.rows_per_group));
                (Shader::CrossEntropySubgroup, "cross_entropy_subgroup_per_row")
            }
        };
        let main = ctx.pipeline(&KernelKey { shader, entry_point, constants: main_constants })?;
        let reduce_pipeline = |entry_point| {
            ctx.pipeline(&KernelKey {
                shader: Shader::CrossEntropyReduce,
                entry_point,
                constants: shared_constants.clone(),
            })
        };
        let divisor_pass = self.reduction == Reduction::Mean && class_targets;
        let reduce_pass = self.reduction != Reduction::None;
        let divisor_pipelines = if divisor_pass {
            Some((
                reduce_pipeline("cross_entropy_total_weight")?,
                reduce_pipeline("cross_entropy_combine_total_weight")?,
            ))
        } else {
            None
        };
        let reduce_pipelines = if reduce_pass {
            Some((reduce_pipeline("cross_entropy_reduce")?, reduce_pipeline("cross_entropy_finish")?))
        } else {
            None
        };
        let chunk_count = u32::try_from(plan.chunks.len()).unwrap_or(u32::MAX);
        let sizes = &checked;
        let params_for = |rows: usize, first_row: usize, groups_x: u32, chunk: u32| Params {
            // All fit in u32: each chunk fits in a storage binding, so its rows do, and
            // the whole has fewer rows than the targets buffer has bytes.
            rows: u32::try_from(rows).unwrap_or(u32::MAX),
            cols: u32::try_from(shape.cols).unwrap_or(u32::MAX),
            groups_x,
            ignore_index,
            label_smoothing: self.label_smoothing,
            total_rows: u32::try_from(shape.rows).unwrap_or(u32::MAX),
            first_row: u32::try_from(first_row).unwrap_or(u32::MAX),
            chunk,
        };

        ctx.catching(|| {
            let device = ctx.device();
            let uniform = |params: &Params| {
                ctx.buffer_with(
                    "wgpu-softmax: cross_entropy params",
                    bytemuck::bytes_of(params),
                    wgpu::BufferUsages::UNIFORM,
                )
            };
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
            // [0] total weight, then per chunk its weight part and its loss sum.
            let totals_bytes = 4 * (2 + 2 * u64::from(chunk_count));
            let totals = (divisor_pass || reduce_pass).then(|| scratch(totals_bytes, "wgpu-softmax: totals"));
            let row_losses = reduce_pass.then(|| scratch(sizes.rows_bytes, "wgpu-softmax: row losses"));
            let argmax_scratch = (self.argmax && buffers.argmax.is_none())
                .then(|| scratch(sizes.rows_bytes, "wgpu-softmax: argmax"));
            let placeholder = |i: usize| whole(ctx.placeholder(i), 16);
            let weight_binding =
                buffers.weight.map_or_else(|| placeholder(0), |w| whole(w, sizes.cols_bytes));
            let totals_binding =
                || totals.as_ref().map_or_else(|| placeholder(1), |t| whole(t, totals_bytes));
            let row_bytes = u64::try_from(shape.cols).unwrap_or(u64::MAX) * 4;
            let target_row_bytes = if class_targets { 4 } else { row_bytes };
            let reduce_group =
                |params: &wgpu::Buffer, chunk: Option<&Chunk>, row_loss: Option<&wgpu::Buffer>| {
                    let targets =
                        chunk.map_or_else(|| placeholder(3), |c| rows_of(target_buffer, target_row_bytes, c));
                    let row_loss = match (chunk, row_loss) {
                        (Some(c), Some(r)) => rows_of(r, 4, c),
                        _ => placeholder(4),
                    };
                    let loss =
                        if chunk.is_none() && reduce_pass { whole(buffers.loss, 4) } else { placeholder(2) };
                    ctx.bind_buffers(
                        BindingLayout::CrossEntropyReduce,
                        &[
                            params.as_entire_buffer_binding(),
                            targets,
                            weight_binding.clone(),
                            row_loss,
                            totals_binding(),
                            loss,
                        ],
                    )
                };

            if let Some((partial, combine)) = &divisor_pipelines {
                for (k, chunk) in (0u32..).zip(&plan.chunks) {
                    let params = uniform(&params_for(chunk.rows, chunk.first_row, 1, k))?;
                    let group = reduce_group(&params, Some(chunk), None);
                    Context::dispatch(
                        encoder,
                        "wgpu-softmax: cross_entropy total weight",
                        partial,
                        &group,
                        [1, 1],
                    );
                }
                let params = uniform(&params_for(shape.rows, 0, 1, chunk_count))?;
                let group = reduce_group(&params, None, None);
                Context::dispatch(
                    encoder,
                    "wgpu-softmax: cross_entropy total weight",
                    combine,
                    &group,
                    [1, 1],
                );
            }

            for (k, chunk) in (0u32..).zip(&plan.chunks) {
                let params = uniform(&params_for(chunk.rows, chunk.first_row, chunk.grid[0], k))?;
                let scale = match (buffers.grad_output, &totals) {
                    (Some(g), _) => rows_of(g, 4, chunk),
                    (None, Some(t)) if divisor_pass => whole(t, totals_bytes),
                    _ => placeholder(1),
                };
                let grad = match (self.gradient, buffers.grad) {
                    (Gradient::Separate, Some(g)) => rows_of(g, row_bytes, chunk),
                    _ => placeholder(2),
                };
                let row_loss = rows_of(row_losses.as_ref().unwrap_or(buffers.loss), 4, chunk);
                let argmax = match (buffers.argmax, &argmax_scratch) {
                    (Some(a), _) | (None, Some(a)) => rows_of(a, 4, chunk),
                    (None, None) => placeholder(3),
                };
                let group = ctx.bind_buffers(
                    BindingLayout::CrossEntropy,
                    &[
                        params.as_entire_buffer_binding(),
                        rows_of(buffers.logits, row_bytes, chunk),
                        rows_of(target_buffer, target_row_bytes, chunk),
                        weight_binding.clone(),
                        scale,
                        grad,
                        row_loss,
                        argmax,
                        whole(status, 16),
                    ],
                );
                Context::dispatch(encoder, "wgpu-softmax: cross_entropy", &main, &group, chunk.grid);
            }

            if let (Some((partial, finish)), Some(row_losses)) = (&reduce_pipelines, &row_losses) {
                for (k, chunk) in (0u32..).zip(&plan.chunks) {
                    let params = uniform(&params_for(chunk.rows, chunk.first_row, 1, k))?;
                    let group = reduce_group(&params, Some(chunk), Some(row_losses));
                    Context::dispatch(encoder, "wgpu-softmax: cross_entropy reduce", partial, &group, [1, 1]);
                }
                let params = uniform(&params_for(shape.rows, 0, 1, chunk_count))?;
                let group = reduce_group(&params, None, None);
                Context::dispatch(encoder, "wgpu-softmax: cross_entropy reduce", finish, &group, [1, 1]);
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
        Ok(BindingSizes { rows_bytes, cols_bytes })
    }
}

/// Sizes in bytes of the per-row arrays and of the weights, once checked.
struct BindingSizes {
    rows_bytes: u64,
    cols_bytes: u64,
}

/// Binds a chunk's rows of an array with `bytes` per row.
fn rows_of<'a>(buffer: &'a wgpu::Buffer, bytes: u64, chunk: &Chunk) -> wgpu::BufferBinding<'a> {
    wgpu::BufferBinding {
        buffer,
        offset: bytes * chunk.first_row as u64,
        size: NonZeroU64::new(bytes * chunk.rows as u64),
    }
}

/// Binds the first `bytes` of `buffer`.
fn whole(buffer: &wgpu::Buffer, bytes: u64) -> wgpu::BufferBinding<'_> {
    wgpu::BufferBinding { buffer, offset: 0, size: NonZeroU64::new(bytes) }
}
