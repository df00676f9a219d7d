//! The unfused WGSL baseline (`shaders/unfused.wgsl`): each op as the separate passes a
//! framework composes it from, every pass reading and writing global memory.

use std::collections::HashMap;

use wgpu_softmax::wgpu;
use wgpu_softmax::{Context, Shape, Softmax, Strategy};

use crate::BenchOp;
use crate::error::{BenchError, Result};

const SOURCE: &str = include_str!("../shaders/unfused.wgsl");
/// Invocations per workgroup of the element-wise and per-row passes, as in the WGSL.
const GROUP: usize = 256;
const ROW_GROUP: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    groups_x: u32,
    count: u32,
}

/// The baseline's pipelines, compiled once.
pub(crate) struct Unfused {
    pipelines: HashMap<(&'static str, bool), wgpu::ComputePipeline>,
}

/// The buffers one op's passes use.
pub(crate) struct UnfusedBuffers<'a> {
    pub input: &'a wgpu::Buffer,
    pub other: &'a wgpu::Buffer,
    pub targets: &'a wgpu::Buffer,
    pub output: &'a wgpu::Buffer,
    pub scratch: &'a wgpu::Buffer,
    pub rows: [&'a wgpu::Buffer; 3],
    pub loss: &'a wgpu::Buffer,
}

const ENTRY_POINTS: [&str; 14] = [
    "row_max_thread",
    "row_max_group",
    "exp_sum_thread",
    "exp_sum_group",
    "row_dot_thread",
    "row_dot_group",
    "normalize",
    "log_normalize",
    "gather_nll",
    "mean_rows",
    "cross_entropy_gradient",
    "backward_elementwise",
    "copy_vec4",
    "exp_vec4",
];

impl Unfused {
    pub(crate) fn new(ctx: &Context) -> Result<Self> {
        catching(ctx, || {
            let module = ctx.device().create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("wgpu-softmax: unfused baseline"),
                source: wgpu::ShaderSource::Wgsl(SOURCE.into()),
            });
            let mut pipelines = HashMap::new();
            for entry_point in ENTRY_POINTS {
                for write_exp in [true, false] {
                    let constants = [("WRITE_EXP", if write_exp { 1.0 } else { 0.0 })];
                    let pipeline = ctx.device().create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry_point),
                        layout: None,
                        module: &module,
                        entry_point: Some(entry_point),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants: &constants,
                            zero_initialize_workgroup_memory: false,
                        },
                        cache: None,
                    });
                    pipelines.insert((entry_point, write_exp), pipeline);
                }
            }
            Ok(Self { pipelines })
        })
    }

    /// One pass: `entry_point` over `groups` workgroups (covering `count` elements of
    /// `shape`) with `bindings` (binding number, buffer).
    fn pass(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        (entry_point, write_exp): (&'static str, bool),
        (shape, count, groups): (Shape, usize, usize),
        bindings: &[(u32, &wgpu::Buffer)],
    ) -> Result<()> {
        let pipeline = self
            .pipelines
            .get(&(entry_point, write_exp))
            .ok_or_else(|| BenchError::Baseline(format!("no baseline pipeline {entry_point}")))?;
        let grid = spread_grid(groups, ctx.device().limits().max_compute_workgroups_per_dimension)?;
        let params_data = Params {
            rows: u32::try_from(shape.rows).unwrap_or(u32::MAX),
            cols: u32::try_from(shape.cols).unwrap_or(u32::MAX),
            groups_x: grid[0],
            count: u32::try_from(count).unwrap_or(u32::MAX),
        };
        let params = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-softmax: baseline params"),
            size: size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue().write_buffer(&params, 0, bytemuck::bytes_of(&params_data));
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() }];
        entries.extend(bindings.iter().map(|&(binding, buffer)| wgpu::BindGroupEntry {
            binding,
            resource: buffer.as_entire_binding(),
        }));
        let bind_group = ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry_point),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(entry_point),
            timestamp_writes: None,
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(grid[0], grid[1], 1);
        Ok(())
    }

    /// Records `op` as separate passes.
    pub(crate) fn record(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        op: BenchOp,
        shape: Shape,
        b: &UnfusedBuffers<'_>,
    ) -> Result<()> {
        let count = shape.rows * shape.cols;
        // Per-row passes: a thread per row where the fused kernels would use one too.
        let by_thread = Softmax::new().plan(ctx, shape)?.strategy() == Strategy::ThreadPerRow;
        let (row_groups, suffix_max, suffix_exp, suffix_dot) = if by_thread {
            (shape.rows.div_ceil(ROW_GROUP), "row_max_thread", "exp_sum_thread", "row_dot_thread")
        } else {
            (shape.rows, "row_max_group", "exp_sum_group", "row_dot_group")
        };
        let elements = count.div_ceil(GROUP);
        let [row_a, row_b, row_c] = b.rows;
        match op {
            BenchOp::Softmax => {
                self.pass(
                    ctx,
                    encoder,
                    (suffix_max, true),
                    (shape, count, row_groups),
                    &[(1, b.input), (2, row_a)],
                )?;
                self.pass(
                    ctx,
                    encoder,
                    (suffix_exp, true),
                    (shape, count, row_groups),
                    &[(1, b.input), (3, row_a), (4, b.scratch), (2, row_b)],
                )?;
                self.pass(
                    ctx,
                    encoder,
                    ("normalize", true),
                    (shape, count, elements),
                    &[(1, b.scratch), (5, row_b), (4, b.output)],
                )
            }
            BenchOp::LogSoftmax | BenchOp::CrossEntropyGrad | BenchOp::CrossEntropyLoss => {
                // log-softmax; for the cross-entropy into the scratch matrix.
                let log_p = if op == BenchOp::LogSoftmax { b.output } else { b.scratch };
                let spare = if op == BenchOp::LogSoftmax { b.scratch } else { b.output };
                self.pass(
                    ctx,
                    encoder,
                    (suffix_max, true),
                    (shape, count, row_groups),
                    &[(1, b.input), (2, row_a)],
                )?;
                self.pass(
                    ctx,
                    encoder,
                    (suffix_exp, false),
                    (shape, count, row_groups),
                    &[(1, b.input), (3, row_a), (4, spare), (2, row_b)],
                )?;
                self.pass(
                    ctx,
                    encoder,
                    ("log_normalize", true),
                    (shape, count, elements),
                    &[(1, b.input), (3, row_a), (5, row_b), (4, log_p)],
                )?;
                if op == BenchOp::LogSoftmax {
                    return Ok(());
                }
                let row_elements = shape.rows.div_ceil(GROUP);
                self.pass(
                    ctx,
                    encoder,
                    ("gather_nll", true),
                    (shape, count, row_elements),
                    &[(1, log_p), (6, b.targets), (2, row_c)],
                )?;
                self.pass(ctx, encoder, ("mean_rows", true), (shape, count, 1), &[(3, row_c), (2, b.loss)])?;
                if op == BenchOp::CrossEntropyLoss {
                    return Ok(());
                }
                self.pass(
                    ctx,
                    encoder,
                    ("cross_entropy_gradient", true),
                    (shape, count, elements),
                    &[(1, log_p), (6, b.targets), (4, b.output)],
                )
            }
            BenchOp::SoftmaxBackward => {
                self.pass(
                    ctx,
                    encoder,
                    (suffix_dot, true),
                    (shape, count, row_groups),
                    &[(1, b.input), (7, b.other), (2, row_a)],
                )?;
                self.pass(
                    ctx,
                    encoder,
                    ("backward_elementwise", true),
                    (shape, count, elements),
                    &[(1, b.input), (7, b.other), (3, row_a), (4, b.output)],
                )
            }
        }
    }

    /// A vec4 copy of `source` into `target` (both `bytes` long, a multiple of 16), with
    /// `exp` applied when asked.
    pub(crate) fn copy(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        (source, target): (&wgpu::Buffer, &wgpu::Buffer),
        bytes: u64,
        exp: bool,
    ) -> Result<()> {
        let count = usize::try_from(bytes / 16).unwrap_or(usize::MAX);
        self.pass(
            ctx,
            encoder,
            (if exp { "exp_vec4" } else { "copy_vec4" }, true),
            (Shape::new(1, count), count, count.div_ceil(GROUP)),
            &[(9, source), (8, target)],
        )
    }
}

/// Runs `work` inside wgpu error scopes: what the baseline does wrong comes back as an
/// error instead of reaching the device's uncaptured-error handler.
pub(crate) fn catching<T>(ctx: &Context, work: impl FnOnce() -> Result<T>) -> Result<T> {
    ctx.check_health()?;
    let scope = ctx.device().push_error_scope(wgpu::ErrorFilter::Validation);
    let result = work();
    match pollster::block_on(scope.pop()) {
        Some(error) => Err(BenchError::Baseline(error.to_string())),
        None => result,
    }
}

/// Lays `groups` workgroups out as an `[x, y]` grid within `max_per_dimension` a side.
pub(crate) fn spread_grid(groups: usize, max_per_dimension: u32) -> Result<[u32; 2]> {
    let max = usize::try_from(max_per_dimension.max(1)).unwrap_or(usize::MAX);
    let x = groups.clamp(1, max);
    let y = groups.div_ceil(x).max(1);
    match (u32::try_from(x), u32::try_from(y)) {
        (Ok(x), Ok(y)) if y <= max_per_dimension => Ok([x, y]),
        _ => Err(BenchError::Unsupported("the baseline's grid exceeds the device's limits")),
    }
}
