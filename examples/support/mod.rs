//! The wgpu plumbing the training examples share: their own buffers, pipelines, bind
//! groups and passes, recorded beside the crate's ops. Nothing here is part of the crate;
//! an application has its own version of it.

use wgpu::util::DeviceExt;
use wgpu_softmax::Context;

/// Invocations per workgroup of every kernel in the examples' own WGSL, which declare it as
/// the overridable constant `WORKGROUP_SIZE` without a value: the pipelines set it.
const WORKGROUP_SIZE: usize = 64;

/// The compute pipelines of the entry points `entry_points` of the WGSL module `source`,
/// in that order, each with the layout naga derives from the shader and the shader's
/// `WORKGROUP_SIZE` set.
pub fn pipelines<const N: usize>(
    ctx: &Context,
    label: &str,
    source: &str,
    entry_points: [&str; N],
) -> [wgpu::ComputePipeline; N] {
    let device = ctx.device();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    entry_points.map(|entry_point| {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry_point),
            layout: None,
            module: &module,
            entry_point: Some(entry_point),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[("WORKGROUP_SIZE", WORKGROUP_SIZE as f64)],
                ..wgpu::PipelineCompilationOptions::default()
            },
            cache: None,
        })
    })
}

/// A storage buffer holding `contents`, which copies may also read and write.
pub fn storage(ctx: &Context, label: &str, contents: &[u8]) -> wgpu::Buffer {
    ctx.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
    })
}

/// A storage buffer of `len` 32-bit words, zeroed (as wgpu zeroes every new buffer).
pub fn zeros(ctx: &Context, label: &str, len: usize) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: 4 * len as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// A uniform buffer holding `value`, which the host rewrites between steps.
pub fn uniform<T: bytemuck::Pod>(ctx: &Context, label: &str, value: &T) -> wgpu::Buffer {
    ctx.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(value),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    })
}

/// The bind group 0 of `pipeline` with each `(binding, buffer)` bound whole.
pub fn bind(
    ctx: &Context,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[(u32, &wgpu::Buffer)],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
        .iter()
        .map(|&(binding, buffer)| wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() })
        .collect();
    ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

/// Records one compute pass dispatching `pipeline` once per `(bind group, invocations)`,
/// with enough workgroups for that many invocations (the kernels skip the excess).
pub fn pass(
    encoder: &mut wgpu::CommandEncoder,
    pipeline: &wgpu::ComputePipeline,
    groups: &[(&wgpu::BindGroup, usize)],
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
    pass.set_pipeline(pipeline);
    for &(group, invocations) in groups {
        let workgroups = u32::try_from(invocations.div_ceil(WORKGROUP_SIZE)).unwrap_or(u32::MAX);
        pass.set_bind_group(0, group, &[]);
        pass.dispatch_workgroups(workgroups, 1, 1);
    }
}

/// What an example's steps return: any error, printed on the way out.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The process's exit code for an example that ran to `outcome`: success, or the error
/// printed to stderr and failure.
pub fn exit_code(outcome: Result<()>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
