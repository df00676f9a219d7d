//! Sampling against its two baselines on the same adapter, by wall clock (each run from
//! recording to the end of a full wait, as an inference engine sees it):
//!
//! - `fused`: this crate's [`Sampler`], no sort;
//! - `gpu_sort`: the unfused composition on the GPU: this crate's softmax, a bitonic sort
//!   of each row's probabilities with their indices, the top-k and top-p cuts by running
//!   sums, and the draw (`shaders/sort_sample.wgsl`);
//! - `cpu_sort`: what engines do today: the logits copied to the host, then per row a
//!   softmax, a sort, the cuts and the draw, on one core;
//! - `softmax`: this crate's softmax of the same logits alone, for scale.

use std::fmt::Write as _;
use std::time::Instant;

use wgpu_softmax::testing::SeededRng;
use wgpu_softmax::timing::median;
use wgpu_softmax::wgpu;
use wgpu_softmax::{
    BufferRegion, Context, DType, SAMPLE_STATUS_WORDS, SampleBuffers, Sampler, Shape, Softmax, TensorRef,
};

use crate::error::{BenchError, Result};
use crate::unfused::{catching, spread_grid};

const SOURCE: &str = include_str!("../shaders/sort_sample.wgsl");
/// Invocations per workgroup, and elements a workgroup sorts in its own memory, as in the
/// WGSL.
const GROUP: usize = 256;
const RUN: usize = 512;

/// Rows per batch the issue asks for.
pub const SAMPLE_BATCHES: [usize; 4] = [1, 8, 64, 256];
/// Vocabularies: Llama 2's, Llama 3's, Gemma's.
pub const SAMPLE_VOCABS: [usize; 3] = [32_000, 128_256, 262_144];

/// The filters measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleFilter {
    /// Top-k 50, then top-p 0.9.
    TopKTopP,
    /// Top-p 0.9 alone.
    TopP,
}

impl SampleFilter {
    /// Both, in report order.
    pub const ALL: [Self; 2] = [Self::TopKTopP, Self::TopP];

    /// The filter's name in reports and JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::TopKTopP => "top_k=50,top_p=0.9",
            Self::TopP => "top_p=0.9",
        }
    }

    /// The sampler with this filter: temperature 1, one draw per row.
    #[must_use]
    pub fn sampler(self, seed: u64) -> Sampler {
        let top_k = if self == Self::TopKTopP { 50 } else { 0 };
        Sampler { top_k, top_p: 0.9, num_samples: 1, seed, ..Sampler::default() }
    }
}

/// What samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKernel {
    /// This crate's sampler.
    Fused,
    /// Softmax, bitonic sort, cuts and draw on the GPU.
    GpuSort,
    /// The logits copied to the host and sampled there with a sort.
    CpuSort,
    /// This crate's softmax of the logits alone (not a sampler: the scale).
    Softmax,
}

impl SampleKernel {
    /// Every kind, in report order.
    pub const ALL: [Self; 4] = [Self::Fused, Self::GpuSort, Self::CpuSort, Self::Softmax];

    /// The kind's name in reports and JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Fused => "fused",
            Self::GpuSort => "gpu_sort",
            Self::CpuSort => "cpu_sort",
            Self::Softmax => "softmax",
        }
    }
}

/// What a sampling suite measures and how often.
#[derive(Clone, Debug)]
pub struct SampleConfig {
    /// Rows per batch.
    pub batches: Vec<usize>,
    /// Vocabularies.
    pub vocabs: Vec<usize>,
    /// Filters.
    pub filters: Vec<SampleFilter>,
    /// Untimed runs of each measurement first (every kind's pipelines are compiled once,
    /// before the suite, on a small shape).
    pub warmup: usize,
    /// Timed runs; the median is reported. A measurement whose first warm-up run takes
    /// more than [`SampleConfig::long_run_ms`] keeps that run as its one time, and runs
    /// no more (the sort baseline and the host's sort at the largest shapes on a software
    /// adapter, where one run takes seconds and its first-run costs are a small part):
    /// its record says so ([`SampleRecord::warm_up_timed`]).
    pub runs: usize,
    /// See [`SampleConfig::runs`].
    pub long_run_ms: f64,
    /// A kind whose run at a shape with the first filter takes more than this is not run
    /// with the other filters at that shape (the table shows `-`): the sort baseline at
    /// 256 x 262144 on a software adapter, minutes a run, the same sort for every filter.
    pub skip_other_filters_ms: f64,
    /// Seed of the logits and the draws.
    pub seed: u64,
}

impl SampleConfig {
    /// Every batch, vocabulary and filter of the issue; one warm-up, 3 timed runs.
    #[must_use]
    pub fn full() -> Self {
        Self {
            batches: SAMPLE_BATCHES.to_vec(),
            vocabs: SAMPLE_VOCABS.to_vec(),
            filters: SampleFilter::ALL.to_vec(),
            warmup: 1,
            runs: 3,
            long_run_ms: 1000.0,
            skip_other_filters_ms: 60_000.0,
            seed: 0x5A_4D91,
        }
    }

    /// Batches of 1 and 8 at 32000, one timed run: seconds on a software adapter.
    #[must_use]
    pub fn quick() -> Self {
        Self { batches: vec![1, 8], vocabs: vec![32_000], runs: 1, ..Self::full() }
    }

    /// How many (shape, filter, kernel) measurements the suite takes at most (fewer where
    /// a kind is slow: [`SampleConfig::skip_other_filters_ms`]).
    #[must_use]
    pub fn measurements(&self) -> usize {
        self.batches.len() * self.vocabs.len() * self.filters.len() * SampleKernel::ALL.len()
    }
}

/// One measurement.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SampleRecord {
    /// The kernel kind's name.
    pub kernel: &'static str,
    /// Rows.
    pub rows: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// The filter's name.
    pub filter: &'static str,
    /// Median wall time of a run, milliseconds.
    pub median_ms: f64,
    /// Timed runs behind the median.
    pub runs: usize,
    /// Whether the one time is the first run, without a warm-up (a run over
    /// [`SampleConfig::long_run_ms`]).
    pub warm_up_timed: bool,
}

/// A sampling suite's results on one adapter.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SampleReport {
    /// The adapter's name.
    pub adapter: String,
    /// Its backend.
    pub backend: String,
    /// How times were taken.
    pub clock: String,
    /// Every measurement.
    pub records: Vec<SampleRecord>,
    /// The suite's [`SampleConfig::long_run_ms`].
    pub long_run_ms: f64,
    /// The suite's [`SampleConfig::skip_other_filters_ms`].
    pub skip_other_filters_ms: f64,
}

impl SampleReport {
    /// The record of `kernel` at the shape and filter of `like`.
    fn record_of(&self, kernel: SampleKernel, like: &SampleRecord) -> Option<&SampleRecord> {
        self.records.iter().find(|r| {
            r.kernel == kernel.name() && (r.rows, r.vocab, r.filter) == (like.rows, like.vocab, like.filter)
        })
    }

    /// The table: per shape and filter, each kind's median (`*`: one run without a
    /// warm-up, see [`SampleConfig::runs`]), and the fused sampler's speed-ups over the
    /// baselines and its time over the softmax's.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = format!("{} ({}), times by {}\n", self.adapter, self.backend, self.clock);
        let _ = writeln!(
            out,
            "{:<14} {:<20} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}",
            "rows x V",
            "filter",
            "fused ms",
            "gpu_sort",
            "cpu_sort",
            "softmax",
            "vs gpu",
            "vs cpu",
            "/softmax"
        );
        let mut single = false;
        for fused in self.records.iter().filter(|r| r.kernel == SampleKernel::Fused.name()) {
            let other = |kernel| self.record_of(kernel, fused).map_or(f64::NAN, |r| r.median_ms);
            let (gpu, cpu, softmax) =
                (other(SampleKernel::GpuSort), other(SampleKernel::CpuSort), other(SampleKernel::Softmax));
            let mut cell = |kernel| {
                let record = self.record_of(kernel, fused);
                let mark = record.is_some_and(|r| r.warm_up_timed);
                single |= mark;
                record.map_or_else(
                    || "-".to_owned(),
                    |r| format!("{:.2}{}", r.median_ms, if mark { "*" } else { "" }),
                )
            };
            let cells = SampleKernel::ALL.map(&mut cell);
            let [fused_cell, gpu_cell, cpu_cell, softmax_cell] = &cells;
            // A ratio with a kind not run at this shape is "-", as its time is.
            let ratio = |r: f64| if r.is_finite() { format!("{r:.2}x") } else { "-".to_owned() };
            let _ = writeln!(
                out,
                "{:<14} {:<20} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}",
                format!("{}x{}", fused.rows, fused.vocab),
                fused.filter,
                fused_cell,
                gpu_cell,
                cpu_cell,
                softmax_cell,
                ratio(gpu / fused.median_ms),
                ratio(cpu / fused.median_ms),
                ratio(fused.median_ms / softmax)
            );
        }
        if single {
            let _ = writeln!(out, "* one run, no warm-up: its first run took over {} ms", self.long_run_ms);
        }
        if self.records.iter().any(|r| r.median_ms > self.skip_other_filters_ms) {
            let _ = writeln!(
                out,
                "- not run: with the first filter at that shape it took over {} ms",
                self.skip_other_filters_ms
            );
        }
        out
    }

    /// The report as JSON.
    ///
    /// # Panics
    ///
    /// Never: the report holds only numbers and strings.
    #[must_use]
    #[allow(clippy::expect_used)] // plain data always serialises
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a sampling report serialises")
    }
}

/// The bitonic-sort baseline's parameters, as its WGSL `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct SortParams {
    rows: u32,
    cols: u32,
    padded: u32,
    stage: u32,
    distance: u32,
    groups_x: u32,
    top_k: u32,
    seed: u32,
    top_p: f32,
    padding: [u32; 3],
}

/// The sort-based baseline's pipelines, compiled once.
pub struct SortSampler {
    layout: wgpu::BindGroupLayout,
    init: wgpu::ComputePipeline,
    merge_global: wgpu::ComputePipeline,
    sort_local: wgpu::ComputePipeline,
    draw: wgpu::ComputePipeline,
}

/// The buffers of one sort-based run: the probabilities, the sorted keys and indices, the
/// ids.
struct SortBuffers {
    probs: wgpu::Buffer,
    keys: wgpu::Buffer,
    values: wgpu::Buffer,
    ids: wgpu::Buffer,
}

impl SortSampler {
    /// Compiles the baseline's pipelines.
    ///
    /// # Errors
    ///
    /// [`BenchError::Baseline`] when wgpu rejects them.
    pub fn new(ctx: &Context) -> Result<Self> {
        catching(ctx, || {
            let module = ctx.device().create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("wgpu-softmax: sort-based sampling baseline"),
                source: wgpu::ShaderSource::Wgsl(SOURCE.into()),
            });
            // Every entry point binds all five (each uses some), so one layout serves all.
            let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
                count: None,
            };
            let storage = |read_only| wgpu::BufferBindingType::Storage { read_only };
            let layout = ctx.device().create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("wgpu-softmax: sort baseline"),
                entries: &[
                    entry(0, wgpu::BufferBindingType::Uniform),
                    entry(1, storage(true)),
                    entry(2, storage(false)),
                    entry(3, storage(false)),
                    entry(4, storage(false)),
                ],
            });
            let pipeline_layout = ctx.device().create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("wgpu-softmax: sort baseline"),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = |entry_point: &str| {
                ctx.device().create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry_point),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(entry_point),
                    compilation_options: wgpu::PipelineCompilationOptions::default(),
                    cache: None,
                })
            };
            Ok(Self {
                layout: layout.clone(),
                init: pipeline("init"),
                merge_global: pipeline("merge_global"),
                sort_local: pipeline("sort_local"),
                draw: pipeline("draw"),
            })
        })
    }

    /// Records softmax, sort, cuts and draw of `logits` (`shape`, f32) into `encoder`,
    /// the ids into `buffers.ids`: blocks of rows whose padded keys fit one binding.
    fn record(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        (logits, buffers): (&wgpu::Buffer, &SortBuffers),
        shape: Shape,
        (filter, seed): (SampleFilter, u64),
    ) -> Result<()> {
        Softmax::new().encode(ctx, encoder, logits, &buffers.probs, shape)?;
        let padded = shape.cols.next_power_of_two().max(RUN);
        let limits = ctx.device().limits();
        let block = usize::try_from(limits.max_storage_buffer_binding_size / (4 * padded as u64))
            .unwrap_or(usize::MAX)
            .clamp(1, shape.rows);
        let sampler = filter.sampler(seed);
        for first in (0..shape.rows).step_by(block) {
            let rows = block.min(shape.rows - first);
            let probs_at = (4 * first * shape.cols) as u64;
            let keys_at = (4 * first * padded) as u64;
            let alignment = u64::from(limits.min_storage_buffer_offset_alignment);
            if !probs_at.is_multiple_of(alignment) || !(4 * first as u64).is_multiple_of(alignment) {
                return Err(BenchError::Unsupported(
                    "the sort baseline's blocks of rows need aligned offsets: a vocabulary whose rows are a multiple of 64 floats",
                ));
            }
            #[allow(clippy::cast_possible_truncation)] // benchmark sizes
            let base = SortParams {
                rows: rows as u32,
                cols: shape.cols as u32,
                padded: padded as u32,
                top_k: sampler.top_k,
                seed: seed as u32 ^ first as u32,
                top_p: sampler.top_p,
                ..SortParams::default()
            };
            let bind = |params: &SortParams| -> wgpu::BindGroup {
                let uniform = ctx.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgpu-softmax: sort baseline params"),
                    size: size_of::<SortParams>() as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                ctx.queue().write_buffer(&uniform, 0, bytemuck::bytes_of(params));
                fn range(buffer: &wgpu::Buffer, at: u64, bytes: u64) -> wgpu::BindingResource<'_> {
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer,
                        offset: at,
                        size: std::num::NonZeroU64::new(bytes),
                    })
                }
                let key_bytes = (4 * rows * padded) as u64;
                ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("wgpu-softmax: sort baseline"),
                    layout: &self.layout,
                    entries: &[
                        wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() },
                        wgpu::BindGroupEntry {
                            binding: 1,
                            resource: range(&buffers.probs, probs_at, (4 * rows * shape.cols) as u64),
                        },
                        wgpu::BindGroupEntry {
                            binding: 2,
                            resource: range(&buffers.keys, keys_at, key_bytes),
                        },
                        wgpu::BindGroupEntry {
                            binding: 3,
                            resource: range(&buffers.values, keys_at, key_bytes),
                        },
                        wgpu::BindGroupEntry {
                            binding: 4,
                            resource: range(&buffers.ids, (4 * first) as u64, (4 * rows) as u64),
                        },
                    ],
                })
            };
            let max_side = limits.max_compute_workgroups_per_dimension;
            let mut pass =
                |pipeline: &wgpu::ComputePipeline, params: SortParams, groups: usize| -> Result<()> {
                    let grid = spread_grid(groups, max_side)?;
                    let params = SortParams { groups_x: grid[0], ..params };
                    let group = bind(&params);
                    let mut compute = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                    compute.set_pipeline(pipeline);
                    compute.set_bind_group(0, &group, &[]);
                    compute.dispatch_workgroups(grid[0], grid[1], 1);
                    Ok(())
                };
            let elements = rows * padded;
            pass(&self.init, base, elements.div_ceil(GROUP))?;
            // Runs of RUN sorted in workgroup memory, then each longer stage: its merges
            // at distances of RUN and more through storage, the rest in workgroup memory.
            pass(&self.sort_local, SortParams { stage: 0, ..base }, elements / RUN)?;
            let mut stage = 2 * RUN;
            while stage <= padded {
                let mut distance = stage / 2;
                while distance >= RUN {
                    #[allow(clippy::cast_possible_truncation)] // powers of two within a row
                    let step = SortParams { stage: stage as u32, distance: distance as u32, ..base };
                    pass(&self.merge_global, step, (elements / 2).div_ceil(GROUP))?;
                    distance /= 2;
                }
                #[allow(clippy::cast_possible_truncation)] // a power of two within a row
                pass(&self.sort_local, SortParams { stage: stage as u32, ..base }, elements / RUN)?;
                stage *= 2;
            }
            pass(&self.draw, base, rows)?;
        }
        Ok(())
    }
}

/// Softmax, sort, cuts and draw of each row on the host, in f32, on one core: ids.
fn cpu_sort_sample(logits: &[f32], shape: Shape, filter: SampleFilter, rng: &mut SeededRng) -> Vec<u32> {
    let sampler = filter.sampler(0);
    logits
        .chunks(shape.cols)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut order: Vec<(f32, u32)> =
                row.iter().zip(0_u32..).map(|(&x, i)| ((x - max).exp(), i)).collect();
            let total: f32 = order.iter().map(|p| p.0).sum();
            order.iter_mut().for_each(|p| p.0 /= total);
            order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
            let kept_k =
                if sampler.top_k > 0 { order.len().min(sampler.top_k as usize) } else { order.len() };
            let mass_k: f32 = order[..kept_k].iter().map(|p| p.0).sum();
            let mut running = 0.0;
            let kept = order[..kept_k]
                .iter()
                .position(|p| {
                    running += p.0;
                    running >= sampler.top_p * mass_k
                })
                .map_or(kept_k, |i| i + 1);
            let mass: f32 = order[..kept].iter().map(|p| p.0).sum();
            #[allow(clippy::cast_possible_truncation)] // a uniform in [0, 1)
            let goal = rng.next_unit() as f32 * mass;
            let mut running = 0.0;
            order[..kept]
                .iter()
                .find(|p| {
                    running += p.0;
                    running > goal
                })
                .unwrap_or(&order[kept - 1])
                .1
        })
        .collect()
}

/// The buffers of one (rows, vocabulary): the logits and every kind's outputs.
struct Workload {
    shape: Shape,
    logits: wgpu::Buffer,
    ids: wgpu::Buffer,
    status: wgpu::Buffer,
    probs: wgpu::Buffer,
    sort: SortBuffers,
}

impl Workload {
    fn new(ctx: &Context, shape: Shape, seed: u64) -> Result<Self> {
        let values =
            SeededRng::new(seed ^ (shape.rows * shape.cols) as u64).logits(shape.rows * shape.cols, 4.0);
        let padded = shape.cols.next_power_of_two().max(RUN);
        Ok(Self {
            shape,
            logits: ctx.upload(&values)?,
            ids: ctx.storage_buffer(shape.rows)?,
            status: ctx.storage_buffer(SAMPLE_STATUS_WORDS)?,
            probs: ctx.storage_buffer(shape.rows * shape.cols)?,
            sort: SortBuffers {
                probs: ctx.storage_buffer(shape.rows * shape.cols)?,
                keys: ctx.storage_buffer(shape.rows * padded)?,
                values: ctx.storage_buffer(shape.rows * padded)?,
                ids: ctx.storage_buffer(shape.rows)?,
            },
        })
    }

    /// One run of `kernel`, from recording to the end of the wait, milliseconds; and the
    /// ids it drew (none for the softmax).
    fn run(
        &self,
        ctx: &Context,
        sort: &SortSampler,
        kernel: SampleKernel,
        (filter, seed): (SampleFilter, u64),
    ) -> Result<(f64, Vec<u32>)> {
        let started = Instant::now();
        let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        let ids = match kernel {
            SampleKernel::Fused => {
                let buffers = SampleBuffers::new(
                    TensorRef::new(&self.logits, DType::F32),
                    BufferRegion::new(&self.ids),
                    BufferRegion::new(&self.status),
                );
                filter.sampler(seed).encode(ctx, &mut encoder, &buffers, self.shape)?;
                ctx.submit_and_wait(encoder)?;
                Some(&self.ids)
            }
            SampleKernel::GpuSort => {
                sort.record(ctx, &mut encoder, (&self.logits, &self.sort), self.shape, (filter, seed))?;
                ctx.submit_and_wait(encoder)?;
                Some(&self.sort.ids)
            }
            SampleKernel::Softmax => {
                Softmax::new().encode(ctx, &mut encoder, &self.logits, &self.probs, self.shape)?;
                ctx.submit_and_wait(encoder)?;
                None
            }
            SampleKernel::CpuSort => {
                drop(encoder);
                let logits = ctx.download(&self.logits, self.shape.rows * self.shape.cols)?;
                let ids = cpu_sort_sample(&logits, self.shape, filter, &mut SeededRng::new(seed));
                return Ok((started.elapsed().as_secs_f64() * 1e3, ids));
            }
        };
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        let ids = match ids {
            Some(buffer) => ctx.download_u32(buffer, self.shape.rows)?,
            None => Vec::new(),
        };
        Ok((elapsed, ids))
    }
}

/// Runs the sampling suite: every (batch, vocabulary, filter, kind). Calls
/// `progress(done, total, what)` before each measurement and once at the end.
///
/// # Errors
///
/// The first op or device error.
pub fn run_sample_suite(
    ctx: &Context,
    config: &SampleConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<SampleReport> {
    let sort = SortSampler::new(ctx)?;
    let info = ctx.adapter_info();
    let mut report = SampleReport {
        adapter: info.name.clone(),
        backend: format!("{:?}", info.backend),
        clock: "wall clock, recording to the end of the wait".to_owned(),
        records: Vec::new(),
        long_run_ms: config.long_run_ms,
        skip_other_filters_ms: config.skip_other_filters_ms,
    };
    let total = config.measurements();
    let mut done = 0;
    progress(done, total, "compiling every kind's pipelines");
    let small = Workload::new(ctx, Shape::new(1, 1024), config.seed)?;
    for kernel in SampleKernel::ALL {
        for &filter in &config.filters {
            small.run(ctx, &sort, kernel, (filter, config.seed))?;
        }
    }
    for &vocab in &config.vocabs {
        for &rows in &config.batches {
            let shape = Shape::new(rows, vocab);
            let workload = Workload::new(ctx, shape, config.seed)?;
            // The kinds whose first filter's run here took over `skip_other_filters_ms`.
            let mut slow: Vec<&str> = Vec::new();
            for &filter in &config.filters {
                for kernel in SampleKernel::ALL {
                    if slow.contains(&kernel.name()) {
                        done += 1;
                        continue;
                    }
                    progress(
                        done,
                        total,
                        &format!("sample {rows}x{vocab} {} {}", filter.name(), kernel.name()),
                    );
                    let run = || workload.run(ctx, &sort, kernel, (filter, config.seed)).map(|r| r.0);
                    let mut times = Vec::new();
                    let mut warm_up_timed = false;
                    for _ in 0..config.warmup {
                        let first = run()?;
                        if first > config.long_run_ms {
                            times.push(first);
                            warm_up_timed = true;
                            break;
                        }
                    }
                    while times.len() < config.runs.max(1) && !warm_up_timed {
                        times.push(run()?);
                    }
                    if median(&times) > config.skip_other_filters_ms {
                        slow.push(kernel.name());
                    }
                    report.records.push(SampleRecord {
                        kernel: kernel.name(),
                        rows,
                        vocab,
                        filter: filter.name(),
                        median_ms: median(&times),
                        runs: times.len(),
                        warm_up_timed,
                    });
                    done += 1;
                }
            }
        }
    }
    progress(total, total, "done");
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test

    use wgpu_softmax::reference;

    use super::*;

    /// The table marks a time taken without a warm-up with `*` and a kind not run with `-`,
    /// each explained under it.
    #[test]
    fn the_table_marks_single_runs_and_skipped_kinds() {
        let record =
            |kernel: SampleKernel, filter: SampleFilter, median_ms: f64, warm_up_timed: bool| SampleRecord {
                kernel: kernel.name(),
                rows: 256,
                vocab: 262_144,
                filter: filter.name(),
                median_ms,
                runs: if warm_up_timed { 1 } else { 3 },
                warm_up_timed,
            };
        let (both, top_p) = (SampleFilter::TopKTopP, SampleFilter::TopP);
        let report = SampleReport {
            adapter: "a".to_owned(),
            backend: "b".to_owned(),
            clock: "c".to_owned(),
            records: vec![
                record(SampleKernel::Fused, both, 10.0, false),
                record(SampleKernel::GpuSort, both, 90_000.0, true),
                record(SampleKernel::Fused, top_p, 12.0, false),
            ],
            long_run_ms: 1000.0,
            skip_other_filters_ms: 60_000.0,
        };
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[2].contains("90000.00*"), "{table}");
        assert!(lines[3].split_whitespace().nth(3) == Some("-"), "{table}");
        // The ratio with the kind not run is "-" too, never NaN.
        assert!(lines[3].split_whitespace().nth(7) == Some("-") && !table.contains("NaN"), "{table}");
        assert!(table.contains("* one run, no warm-up") && table.contains("- not run"), "{table}");
    }

    /// Each baseline's draws lie in the allowed set of the f64 reference, for both
    /// filters, at a vocabulary that is not a power of two (the sort's padding) and past
    /// one workgroup's run of 512.
    #[test]
    fn every_kind_draws_from_the_allowed_set() {
        // Without an adapter this fails with the message that says what to install.
        let ctx = &Context::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
        let sort = SortSampler::new(ctx).unwrap();
        let shape = Shape::new(5, 1600);
        let workload = Workload::new(ctx, shape, 3).unwrap();
        let logits = ctx.download(&workload.logits, 5 * 1600).unwrap();
        for filter in SampleFilter::ALL {
            let allowed = reference::sample_distribution(&logits, shape, &filter.sampler(0)).unwrap();
            for kernel in [SampleKernel::Fused, SampleKernel::GpuSort, SampleKernel::CpuSort] {
                let (_, ids) = workload.run(ctx, &sort, kernel, (filter, 9)).unwrap();
                assert_eq!(ids.len(), 5, "{kernel:?}");
                for (row, &id) in ids.iter().enumerate() {
                    let p = allowed[row].as_ref().unwrap();
                    assert!(p[id as usize] > 0.0, "{kernel:?} {filter:?} row {row}: {id} is filtered out");
                }
            }
        }
        // The sort itself: each padded row of 2048 in descending order, its indices a
        // permutation, each key the probability of its index.
        let keys = ctx.download_u32(&workload.sort.keys, 5 * 2048).unwrap();
        let values = ctx.download_u32(&workload.sort.values, 5 * 2048).unwrap();
        let probs = reference::softmax(&logits, shape).unwrap();
        for row in 0..5 {
            let keys = &keys[row * 2048..(row + 1) * 2048];
            assert!(
                keys.windows(2).all(|w| f32::from_bits(w[0]) >= f32::from_bits(w[1])),
                "row {row} is not sorted"
            );
            let mut seen = values[row * 2048..(row + 1) * 2048].to_vec();
            seen.sort_unstable();
            assert!(seen.iter().copied().eq(0..2048), "row {row}: the indices are not a permutation");
            for (&key, &index) in keys.iter().zip(&values[row * 2048..]).take(1600) {
                let expected = probs[row * 1600 + index as usize];
                assert!((f64::from(f32::from_bits(key)) - expected).abs() < 1e-6, "row {row}: index {index}");
            }
        }
    }
}
