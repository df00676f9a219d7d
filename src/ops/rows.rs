//! What the row-wise ops without options of their own (softmax, log-softmax and their
//! backward passes) share: recording one dispatch per chunk of rows, and the host API's
//! upload, run and read-back, split where the host data exceeds one buffer.

use std::num::NonZeroU64;

use crate::context::{Context, KernelKey};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::shape::Shape;

/// The per-dispatch parameters of the row kernels, laid out as their WGSL `Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowParams {
    rows: u32,
    cols: u32,
    groups_x: u32,
    padding: u32,
}

/// Records `kernels`, one dispatch each in order, over every chunk of `plan`: binding 0
/// the chunk's parameters, then each of `buffers` (row-major `shape` f32 matrices: the
/// inputs, then the output) bound at the chunk's rows, then `scratch` whole if given.
pub(crate) fn encode_chunks(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    kernels: &[KernelKey],
    label: &str,
    (buffers, scratch): (&[&wgpu::Buffer], Option<&wgpu::Buffer>),
    shape: Shape,
    plan: &Plan,
) -> Result<()> {
    let Some(first) = kernels.first() else { return Ok(()) };
    if plan.chunks.is_empty() {
        return Ok(());
    }
    let pipelines = kernels.iter().map(|k| ctx.pipeline(k)).collect::<Result<Vec<_>>>()?;
    let row_bytes = Shape::new(shape.cols, 1).byte_len()?;
    for chunk in &plan.chunks {
        // Resource creation runs in error scopes: on a caller's device, wgpu's default
        // handler would panic on an error this crate's checks missed.
        let bind_group = ctx.catching(|| {
            let params = RowParams {
                // Both fit in u32: a chunk fits in one storage binding, so its rows and
                // columns do.
                rows: u32::try_from(chunk.rows).unwrap_or(u32::MAX),
                cols: u32::try_from(shape.cols).unwrap_or(u32::MAX),
                groups_x: chunk.grid[0],
                padding: 0,
            };
            let params = ctx.buffer_with(label, bytemuck::bytes_of(&params), wgpu::BufferUsages::UNIFORM)?;
            let offset = row_bytes * chunk.first_row as u64;
            let size = NonZeroU64::new(row_bytes * chunk.rows as u64);
            let mut bindings = vec![params.as_entire_buffer_binding()];
            bindings.extend(buffers.iter().map(|&buffer| wgpu::BufferBinding { buffer, offset, size }));
            bindings.extend(scratch.map(wgpu::Buffer::as_entire_buffer_binding));
            Ok(ctx.bind_buffers(first.shader.layout(), &bindings))
        })?;
        for pipeline in &pipelines {
            Context::dispatch(encoder, label, pipeline, &bind_group, chunk.grid);
        }
    }
    Ok(())
}

/// The host API of a row op: uploads `inputs` (row-major `shape`), records `encode` over
/// them into a fresh output, submits once and reads the output back. Where the data is
/// larger than one buffer may be, runs piece by piece over runs of whole rows.
pub(crate) fn run_on_host(
    ctx: &Context,
    inputs: &[&[f32]],
    shape: Shape,
    encode: impl Fn(&mut wgpu::CommandEncoder, &[&wgpu::Buffer], &wgpu::Buffer, Shape) -> Result<Plan>,
) -> Result<Vec<f32>> {
    if shape.is_empty() {
        return Ok(Vec::new());
    }
    let rows_per_piece = rows_per_buffer(ctx, shape)?;
    let mut output = Vec::with_capacity(shape.len()?);
    for first_row in (0..shape.rows).step_by(rows_per_piece) {
        let piece = Shape::new(rows_per_piece.min(shape.rows - first_row), shape.cols);
        let range = first_row * shape.cols..(first_row + piece.rows) * shape.cols;
        output.extend(ctx.catching(|| {
            let uploaded =
                inputs.iter().map(|data| ctx.upload(&data[range.clone()])).collect::<Result<Vec<_>>>()?;
            let uploaded: Vec<&wgpu::Buffer> = uploaded.iter().collect();
            let result = ctx.storage_buffer(range.len())?;
            let mut encoder = ctx
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-softmax") });
            encode(&mut encoder, &uploaded, &result, piece)?;
            ctx.finish_and_read(encoder, &result, range.len())
        })?);
    }
    Ok(output)
}

/// The most rows of `shape` one buffer may hold on this device.
///
/// # Errors
///
/// [`Error::LimitExceeded`] when not even one row fits.
pub(crate) fn rows_per_buffer(ctx: &Context, shape: Shape) -> Result<usize> {
    let row_bytes = Shape::new(shape.cols, 1).byte_len()?;
    let max = ctx.caps().max_buffer_bytes;
    let rows = max / row_bytes.max(1);
    if rows == 0 {
        return Err(Error::LimitExceeded { limit: "max_buffer_size", required: row_bytes, available: max });
    }
    Ok(usize::try_from(rows).unwrap_or(usize::MAX).min(shape.rows.max(1)))
}
