//! The benchmark harness of wgpu-softmax, shared by `cargo bench` and `wgpu-softmax bench`:
//! GPU time per op and shape, the effective bandwidth from the fewest bytes the op must
//! move, and that as a percentage of a plain vec4 copy's bandwidth on the same adapter in
//! the same run (the roofline), beside an unfused WGSL baseline and CPU baselines (and Burn
//! with the `burn` feature).

#[cfg(feature = "burn")]
mod burn;
mod chart;
mod cpu;
mod error;
pub mod full;
pub mod linear;
pub mod matmul;
mod profiles;
pub mod report;
pub mod sampling;
mod unfused;

use wgpu_softmax::testing::SeededRng;
use wgpu_softmax::timing::Timer;
use wgpu_softmax::wgpu;
use wgpu_softmax::{
    Context, CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, DType, Gradient, Shape, Softmax,
    SoftmaxBackward, TargetBuffer, Targets, TensorRef, reference,
};

pub use error::{BenchError, Result};
pub use full::{FullConfig, FullReport, RowRecord, run_full_report};
pub use linear::{LinearConfig, LinearKernel, LinearPass, LinearRecord, LinearReport, run_linear_suite};
pub use matmul::{MatmulCase, MatmulConfig, MatmulRecord, MatmulReport, ProductKind, run_matmul_suite};
pub use report::{HostCosts, OpSummary, Record, Report, Rooflines, StrategyChoice};
pub use sampling::{
    SAMPLE_BATCHES, SAMPLE_VOCABS, SampleConfig, SampleFilter, SampleKernel, SampleRecord, SampleReport,
    SortSampler, run_sample_suite,
};
use unfused::{Unfused, UnfusedBuffers};
pub use wgpu_softmax::timing::{Clock, median};

/// The ops measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BenchOp {
    /// Softmax.
    Softmax,
    /// Log-softmax.
    LogSoftmax,
    /// Cross-entropy, class-index targets, mean, loss and gradient.
    CrossEntropyGrad,
    /// Cross-entropy, class-index targets, mean, loss only.
    CrossEntropyLoss,
    /// Softmax backward.
    SoftmaxBackward,
}

impl BenchOp {
    /// Every op, in report order.
    pub const ALL: [Self; 5] = [
        Self::Softmax,
        Self::LogSoftmax,
        Self::CrossEntropyGrad,
        Self::CrossEntropyLoss,
        Self::SoftmaxBackward,
    ];

    /// The op called `name` in reports and JSON.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The op's name in reports and JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Softmax => "softmax",
            Self::LogSoftmax => "log_softmax",
            Self::CrossEntropyGrad => "cross_entropy_grad",
            Self::CrossEntropyLoss => "cross_entropy_loss",
            Self::SoftmaxBackward => "softmax_backward",
        }
    }

    /// How many class-axis tensors the op reads or writes (each element moved once each).
    const fn tensors(self) -> u64 {
        match self {
            Self::Softmax | Self::LogSoftmax | Self::CrossEntropyGrad => 2,
            Self::CrossEntropyLoss => 1,
            Self::SoftmaxBackward => 3,
        }
    }

    /// The fewest bytes the op must move in storage type `dtype`: each input read once,
    /// each output written once, elements at the storage width and 4-byte targets and
    /// losses (see [`BenchOp::bytes_formula`]).
    #[must_use]
    pub fn min_bytes(self, shape: Shape, dtype: DType) -> u64 {
        let elements = (shape.rows * shape.cols) as u64;
        let rows = shape.rows as u64;
        let per_row = if matches!(self, Self::CrossEntropyGrad | Self::CrossEntropyLoss) { 8 } else { 0 };
        self.tensors() * dtype.size() * elements + per_row * rows
    }

    /// How [`BenchOp::min_bytes`] counts, for reports.
    #[must_use]
    pub const fn bytes_formula(self) -> &'static str {
        match self {
            Self::Softmax | Self::LogSoftmax => {
                "2 elements (read x, write y): 8 B/element in f32, 4 in bf16 or f16"
            }
            Self::CrossEntropyGrad => {
                "2 elements (read logits, write grad) + 8 B/row (read target, write loss): 8 B/element in f32, 4 in 16 bits"
            }
            Self::CrossEntropyLoss => "1 element (read logits) + 8 B/row (read target, write loss)",
            Self::SoftmaxBackward => {
                "3 elements (read y and dy, write dx): 12 B/element in f32, 6 in 16 bits"
            }
        }
    }
}

/// What computes an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelKind {
    /// This crate's kernels.
    Fused,
    /// The unfused WGSL baseline: one pass per framework op.
    Unfused,
    /// Single-threaded f32 on the CPU.
    Cpu,
    /// This crate's f64 reference on the CPU.
    CpuReference,
    /// Burn's wgpu backend (with the `burn` feature; not for softmax backward).
    Burn,
}

impl KernelKind {
    /// Every kind this crate always has, in report order ([`KernelKind::Burn`] joins with the
    /// `burn` feature).
    pub const ALL: [Self; 4] = [Self::Fused, Self::Unfused, Self::Cpu, Self::CpuReference];

    /// The kind called `name` in reports and JSON.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().chain([Self::Burn]).find(|kind| kind.name() == name)
    }

    /// The kind's name in reports and JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Fused => "fused",
            Self::Unfused => "unfused",
            Self::Cpu => "cpu",
            Self::CpuReference => "cpu_reference",
            Self::Burn => "burn",
        }
    }

    /// Whether it runs on this crate's GPU device.
    #[must_use]
    pub const fn on_gpu(self) -> bool {
        matches!(self, Self::Fused | Self::Unfused)
    }

    /// Whether it can measure `op` in storage type `dtype` in this build: the baselines
    /// are f32 only.
    #[must_use]
    pub fn measures(self, op: BenchOp, dtype: DType) -> bool {
        match self {
            Self::Fused => true,
            Self::Burn => {
                cfg!(feature = "burn") && !matches!(op, BenchOp::SoftmaxBackward) && dtype == DType::F32
            }
            _ => dtype == DType::F32,
        }
    }
}

/// The shapes of the benchmark suite (rows x cols).
pub const SHAPES: [(usize, usize); 7] =
    [(65536, 10), (16384, 128), (4096, 1024), (4096, 4000), (1024, 32768), (64, 262_144), (8, 262_144)];

/// What a suite measures and how often.
#[derive(Clone, Debug)]
pub struct SuiteConfig {
    /// Shapes, rows x cols.
    pub shapes: Vec<Shape>,
    /// Ops.
    pub ops: Vec<BenchOp>,
    /// Kernels.
    pub kernels: Vec<KernelKind>,
    /// Ops also measured in 16-bit storage (this crate's kernels only), beside f32.
    pub low_precision: Vec<(BenchOp, DType)>,
    /// Untimed runs before the GPU measurements.
    pub warmup: usize,
    /// Timed GPU runs per (op, shape, kernel); the median is reported.
    pub gpu_runs: usize,
    /// Timed CPU runs.
    pub cpu_runs: usize,
    /// Bytes the copy kernel moves each way, for the roofline.
    pub copy_bytes: u64,
    /// Seed of the input data.
    pub seed: u64,
}

impl SuiteConfig {
    /// Every shape, op and kernel, 10 timed GPU runs after 3 warm-ups.
    #[must_use]
    pub fn full() -> Self {
        let mut kernels = KernelKind::ALL.to_vec();
        if cfg!(feature = "burn") {
            kernels.push(KernelKind::Burn);
        }
        Self {
            shapes: SHAPES.iter().map(|&(r, c)| Shape::new(r, c)).collect(),
            ops: BenchOp::ALL.to_vec(),
            kernels,
            low_precision: BenchOp::ALL
                .into_iter()
                .map(|op| (op, DType::BF16))
                .chain([(BenchOp::Softmax, DType::F16), (BenchOp::CrossEntropyGrad, DType::F16)])
                .collect(),
            warmup: 3,
            gpu_runs: 10,
            cpu_runs: 3,
            copy_bytes: 128 << 20,
            seed: 0x00BE_4C11,
        }
    }

    /// Every op and kernel with fewer runs, on three of the shapes (one per kind of
    /// plan: many short rows, a workgroup per row, a split of the widest rows): about a
    /// minute on lavapipe.
    #[must_use]
    pub fn quick() -> Self {
        Self {
            shapes: [(16384, 128), (4096, 1024), (8, 262_144)]
                .iter()
                .map(|&(r, c)| Shape::new(r, c))
                .collect(),
            warmup: 1,
            gpu_runs: 3,
            cpu_runs: 1,
            copy_bytes: 64 << 20,
            low_precision: vec![(BenchOp::Softmax, DType::BF16), (BenchOp::CrossEntropyGrad, DType::BF16)],
            ..Self::full()
        }
    }

    /// The (op, storage type) cases of the suite: every op in f32, then the 16-bit ones.
    #[must_use]
    pub fn cases(&self) -> Vec<(BenchOp, DType)> {
        self.ops.iter().map(|&op| (op, DType::F32)).chain(self.low_precision.iter().copied()).collect()
    }

    /// How many (op, storage type, shape, kernel) measurements the suite takes.
    #[must_use]
    pub fn measurements(&self) -> usize {
        let per_shape: usize = self
            .cases()
            .iter()
            .map(|&(op, dtype)| self.kernels.iter().filter(|k| k.measures(op, dtype)).count())
            .sum();
        self.shapes.len() * per_shape
    }

    /// How many steps [`run_suite`] reports progress for: compiling the baselines, the
    /// two copy kernels before and after, the strategy choices per shape, and the
    /// measurements.
    #[must_use]
    pub fn steps(&self) -> usize {
        5 + self.shapes.len() + self.measurements()
    }
}

/// The data and buffers of one op on one shape, ready to time any kernel on.
pub struct Workload {
    op: BenchOp,
    shape: Shape,
    dtype: DType,
    logits: Vec<f32>,
    targets: Vec<i32>,
    y: Vec<f32>,
    dy: Vec<f32>,
    gpu: Option<GpuBuffers>,
}

struct GpuBuffers {
    /// Copies of the input, used in turn so that no run finds the last one's in cache.
    inputs: Vec<wgpu::Buffer>,
    dy: wgpu::Buffer,
    targets: wgpu::Buffer,
    output: wgpu::Buffer,
    scratch: wgpu::Buffer,
    rows: [wgpu::Buffer; 3],
    loss: wgpu::Buffer,
    next: std::cell::Cell<usize>,
}

/// Recordings timed for [`HostCosts::encode_us`]: recording is quick, and its median
/// steadies within a few dozen.
const HOST_RUNS: usize = 31;

/// Input copies are rotated until together they exceed this (last-level caches are
/// smaller).
const ROTATION_BYTES: u64 = 256 << 20;

impl Workload {
    /// Random f32 data for `op` on `shape` (logits in [-8, 8), random class targets, and
    /// for the backward a softmax output and an upstream gradient).
    #[must_use]
    pub fn new(op: BenchOp, shape: Shape, seed: u64) -> Self {
        Self::with_dtype(op, shape, seed, DType::F32)
    }

    /// The same data rounded to `dtype`, and stored on the GPU in it.
    #[must_use]
    pub fn with_dtype(op: BenchOp, shape: Shape, seed: u64, dtype: DType) -> Self {
        let mut rng = SeededRng::new(seed);
        let len = shape.rows * shape.cols;
        let round = |values: Vec<f32>| dtype.round_f32(&values);
        let logits = round(rng.logits(len, 8.0));
        let targets =
            (0..shape.rows).map(|_| i32::try_from(rng.below(shape.cols as u64)).unwrap_or(0)).collect();
        let (y, dy) = if op == BenchOp::SoftmaxBackward {
            (round(cpu::softmax(&logits, shape, false)), round(rng.logits(len, 1.0)))
        } else {
            (Vec::new(), Vec::new())
        };
        Self { op, shape, dtype, logits, targets, y, dy, gpu: None }
    }

    /// The storage type.
    #[must_use]
    pub const fn dtype(&self) -> DType {
        self.dtype
    }

    /// The op.
    #[must_use]
    pub const fn op(&self) -> BenchOp {
        self.op
    }

    /// The shape.
    #[must_use]
    pub const fn shape(&self) -> Shape {
        self.shape
    }

    /// The matrix the op reads first: the logits, or for the backward the softmax output.
    fn input(&self) -> &[f32] {
        if self.op == BenchOp::SoftmaxBackward { &self.y } else { &self.logits }
    }

    /// Uploads the data, once.
    ///
    /// # Errors
    ///
    /// Buffer creation errors.
    pub fn upload(&mut self, ctx: &Context) -> Result<()> {
        if self.gpu.is_some() {
            return Ok(());
        }
        let len = self.shape.rows * self.shape.cols;
        let bytes = (len as u64 * self.dtype.size()).max(4);
        let copies = usize::try_from((ROTATION_BYTES / bytes).clamp(1, 4)).unwrap_or(1);
        let upload = |values: &[f32]| ctx.upload_f32_as(self.dtype, values);
        let inputs = (0..copies).map(|_| upload(self.input())).collect::<Result<Vec<_>, _>>()?;
        self.gpu = Some(GpuBuffers {
            inputs,
            dy: upload(if self.dy.is_empty() { &[0.0] } else { &self.dy })?,
            targets: ctx.upload_elements(&self.targets)?,
            output: ctx.elements_buffer(self.dtype, len)?,
            scratch: ctx.storage_buffer(len)?,
            rows: [
                ctx.storage_buffer(self.shape.rows)?,
                ctx.storage_buffer(self.shape.rows)?,
                ctx.storage_buffer(self.shape.rows)?,
            ],
            loss: ctx.storage_buffer(4)?,
            next: std::cell::Cell::new(0),
        });
        Ok(())
    }

    /// Records one run of `kernel` (fused or unfused) into `encoder`.
    fn record(
        &self,
        ctx: &Context,
        baseline: &Unfused,
        kernel: KernelKind,
        encoder: &mut wgpu::CommandEncoder,
    ) -> Result<()> {
        let gpu = self.gpu.as_ref().ok_or(BenchError::NotUploaded)?;
        let input_buffer = &gpu.inputs[gpu.next.get() % gpu.inputs.len()];
        gpu.next.set(gpu.next.get() + 1);
        let shape = self.shape;
        let tensor = |buffer| TensorRef::new(buffer, self.dtype);
        let (input, output) = (tensor(input_buffer), tensor(&gpu.output));
        match kernel {
            KernelKind::Fused => {
                match self.op {
                    BenchOp::Softmax => Softmax::new().encode(ctx, encoder, input, output, shape)?,
                    BenchOp::LogSoftmax => Softmax::log().encode(ctx, encoder, input, output, shape)?,
                    BenchOp::SoftmaxBackward => {
                        SoftmaxBackward::new().encode(ctx, encoder, input, tensor(&gpu.dy), output, shape)?
                    }
                    BenchOp::CrossEntropyGrad | BenchOp::CrossEntropyLoss => {
                        let with_grad = self.op == BenchOp::CrossEntropyGrad;
                        let mut buffers = CrossEntropyBuffers::new(
                            input,
                            TargetBuffer::I32((&gpu.targets).into()),
                            &gpu.loss,
                        );
                        if with_grad {
                            buffers = buffers.with_grad(output);
                        }
                        let gradient = if with_grad { Gradient::Separate } else { Gradient::Skip };
                        CrossEntropy::new().gradient(gradient).encode(ctx, encoder, &buffers, shape)?
                    }
                };
                Ok(())
            }
            KernelKind::Unfused => {
                let buffers = UnfusedBuffers {
                    input: input_buffer,
                    other: &gpu.dy,
                    targets: &gpu.targets,
                    output: &gpu.output,
                    scratch: &gpu.scratch,
                    rows: [&gpu.rows[0], &gpu.rows[1], &gpu.rows[2]],
                    loss: &gpu.loss,
                };
                baseline.record(ctx, encoder, self.op, shape, &buffers)
            }
            KernelKind::Cpu | KernelKind::CpuReference | KernelKind::Burn => {
                Err(BenchError::Unsupported("only wgpu-softmax's GPU kernels record into an encoder"))
            }
        }
    }

    /// What a CPU kernel computes: the output matrix (empty for the loss alone) and the
    /// mean loss of the cross-entropy ops.
    fn cpu_output(&self, kernel: KernelKind) -> Result<(Vec<f32>, Option<f32>)> {
        let shape = self.shape;
        #[allow(clippy::cast_possible_truncation)] // the reference's f64 reported as f32
        let narrow = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        Ok(match (kernel, self.op) {
            (KernelKind::Cpu, BenchOp::Softmax | BenchOp::LogSoftmax) => {
                (cpu::softmax(&self.logits, shape, self.op == BenchOp::LogSoftmax), None)
            }
            (KernelKind::Cpu, BenchOp::CrossEntropyGrad | BenchOp::CrossEntropyLoss) => {
                let (loss, grad) = cpu::cross_entropy(
                    &self.logits,
                    &self.targets,
                    shape,
                    self.op == BenchOp::CrossEntropyGrad,
                );
                (grad, Some(loss))
            }
            (KernelKind::Cpu, BenchOp::SoftmaxBackward) => {
                (cpu::softmax_backward(&self.y, &self.dy, shape), None)
            }
            (KernelKind::CpuReference, BenchOp::Softmax) => {
                (narrow(reference::softmax(&self.logits, shape)?), None)
            }
            (KernelKind::CpuReference, BenchOp::LogSoftmax) => {
                (narrow(reference::log_softmax(&self.logits, shape)?), None)
            }
            (KernelKind::CpuReference, BenchOp::CrossEntropyGrad | BenchOp::CrossEntropyLoss) => {
                let gradient =
                    if self.op == BenchOp::CrossEntropyGrad { Gradient::Separate } else { Gradient::Skip };
                let input = CrossEntropyInput::new(&self.logits, shape, Targets::I32(&self.targets));
                let out = reference::cross_entropy(&CrossEntropy::new().gradient(gradient), &input)?;
                #[allow(clippy::cast_possible_truncation)]
                let loss = out.loss[0] as f32;
                (out.grad.map(narrow).unwrap_or_default(), Some(loss))
            }
            (KernelKind::CpuReference, BenchOp::SoftmaxBackward) => {
                (narrow(reference::softmax_backward(&self.y, &self.dy, shape)?), None)
            }
            (KernelKind::Fused | KernelKind::Unfused | KernelKind::Burn, _) => {
                return Err(BenchError::Unsupported("not a CPU kernel"));
            }
        })
    }

    /// Runs a CPU kernel once and returns its time in milliseconds.
    fn run_cpu(&self, kernel: KernelKind) -> Result<f64> {
        let started = std::time::Instant::now();
        std::hint::black_box(self.cpu_output(kernel)?);
        Ok(started.elapsed().as_secs_f64() * 1e3)
    }
}

/// Measures runs of workloads: holds the timer and the baseline's pipelines.
pub struct Bench<'a> {
    ctx: &'a Context,
    timer: Timer,
    baseline: Unfused,
}

impl<'a> Bench<'a> {
    /// Prepares to measure on `ctx`'s device.
    ///
    /// # Errors
    ///
    /// When the baseline's pipelines fail to compile.
    pub fn new(ctx: &'a Context) -> Result<Self> {
        Ok(Self { ctx, timer: Timer::new(ctx), baseline: Unfused::new(ctx)? })
    }

    /// How this device's times are taken.
    #[must_use]
    pub fn clock(&self) -> Clock {
        self.timer.clock()
    }

    /// Runs `kernel` once on `workload` and returns what it computed: the output matrix
    /// (the gradient for the cross-entropy; empty for the loss alone) and, for the
    /// cross-entropy ops, the mean loss. For checking the baselines against the reference.
    ///
    /// # Errors
    ///
    /// The op's errors.
    pub fn outputs(&self, workload: &mut Workload, kernel: KernelKind) -> Result<(Vec<f32>, Option<f32>)> {
        if !kernel.on_gpu() {
            return workload.cpu_output(kernel);
        }
        workload.upload(self.ctx)?;
        let mut encoder =
            self.ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        workload.record(self.ctx, &self.baseline, kernel, &mut encoder)?;
        self.ctx.submit_and_wait(encoder)?;
        let gpu = workload.gpu.as_ref().ok_or(BenchError::NotUploaded)?;
        let len = workload.shape.rows * workload.shape.cols;
        let matrix = match workload.op {
            BenchOp::CrossEntropyLoss => Vec::new(),
            _ => self.ctx.download_as_f32(&gpu.output, workload.dtype, len)?,
        };
        let loss = matches!(workload.op, BenchOp::CrossEntropyGrad | BenchOp::CrossEntropyLoss)
            .then(|| self.ctx.download(&gpu.loss, 1).map(|l| l[0]))
            .transpose()?;
        Ok((matrix, loss))
    }

    /// Times `runs` runs of `kernel` on `workload` after `warmup` untimed ones; returns
    /// each run's milliseconds.
    ///
    /// # Errors
    ///
    /// The op's errors, and timeouts.
    pub fn time(
        &self,
        workload: &mut Workload,
        kernel: KernelKind,
        warmup: usize,
        runs: usize,
    ) -> Result<Vec<f64>> {
        if kernel == KernelKind::Burn {
            #[cfg(feature = "burn")]
            return burn::time(workload, warmup, runs);
            #[cfg(not(feature = "burn"))]
            return Err(BenchError::Unsupported(
                "this build has no Burn baseline; build with --features burn",
            ));
        }
        if !kernel.on_gpu() {
            return (0..runs).map(|_| workload.run_cpu(kernel)).collect();
        }
        workload.upload(self.ctx)?;
        let ctx = self.ctx;
        let baseline = &self.baseline;
        let workload: &Workload = workload;
        let mut record = |encoder: &mut wgpu::CommandEncoder| workload.record(ctx, baseline, kernel, encoder);
        for _ in 0..warmup {
            self.timer.time(ctx, &mut record)?;
        }
        (0..runs).map(|_| self.timer.time(ctx, &mut record)).collect()
    }

    /// Times `runs` runs of this crate's kernel on `workload` by wall clock, after
    /// `warmup` untimed ones: each from recording it to the end of a full wait for the
    /// device, the way a framework that owns its command submission (Burn) is timed.
    /// Milliseconds per run.
    ///
    /// # Errors
    ///
    /// The op's errors, and timeouts.
    pub fn time_wall(&self, workload: &mut Workload, warmup: usize, runs: usize) -> Result<Vec<f64>> {
        workload.upload(self.ctx)?;
        let workload: &Workload = workload;
        let run = || -> Result<f64> {
            let started = std::time::Instant::now();
            let mut encoder =
                self.ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            workload.record(self.ctx, &self.baseline, KernelKind::Fused, &mut encoder)?;
            self.ctx.submit_and_wait(encoder)?;
            Ok(started.elapsed().as_secs_f64() * 1e3)
        };
        for _ in 0..warmup {
            run()?;
        }
        (0..runs).map(|_| run()).collect()
    }

    /// Milliseconds of one call of this crate's kernel on `workload`, timed as
    /// [`Bench::time_wall`] times it: before any other run of it, the first call's cost.
    ///
    /// # Errors
    ///
    /// The op's errors, and timeouts.
    pub fn first_call_ms(&self, workload: &mut Workload) -> Result<f64> {
        Ok(self.time_wall(workload, 0, 1)?.first().copied().unwrap_or(f64::NAN))
    }

    /// The host's steady-state costs of this crate's kernel on `workload` (see
    /// [`HostCosts`]; `first_call_ms` as measured before): `runs` recordings into encoders
    /// that are dropped unsubmitted, after one of each input the workload rotates through
    /// (so that each has been bound before), the median of their recording times and the
    /// GPU objects the last one created.
    ///
    /// # Errors
    ///
    /// The op's errors.
    pub fn host_costs(&self, workload: &Workload, runs: usize, first_call_ms: f64) -> Result<HostCosts> {
        let gpu = workload.gpu.as_ref().ok_or(BenchError::NotUploaded)?;
        let rotation = gpu.inputs.len();
        let record = || -> Result<(f64, u64)> {
            let mut encoder =
                self.ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            let created = wgpu_softmax::testing::objects_created();
            let started = std::time::Instant::now();
            workload.record(self.ctx, &self.baseline, KernelKind::Fused, &mut encoder)?;
            let us = started.elapsed().as_secs_f64() * 1e6;
            Ok((us, wgpu_softmax::testing::objects_created() - created))
        };
        for _ in 0..rotation {
            record()?;
        }
        let measured = (0..runs.max(1)).map(|_| record()).collect::<Result<Vec<_>>>()?;
        let times: Vec<f64> = measured.iter().map(|&(us, _)| us).collect();
        let created_per_call = measured.last().map_or(0, |&(_, created)| created);
        Ok(HostCosts { encode_us: median(&times), created_per_call, first_call_ms })
    }

    /// The bandwidth of a plain vec4 copy of `bytes` (read plus write, GB/s), the median
    /// of `runs` runs: the roofline. With `exp`, of the same copy applying `exp` to every
    /// element: where that is much slower, exponentials bound the softmax, not memory.
    ///
    /// # Errors
    ///
    /// Buffer creation errors and timeouts.
    pub fn copy_gbps(&self, bytes: u64, warmup: usize, runs: usize, exp: bool) -> Result<f64> {
        let ctx = self.ctx;
        let bytes = bytes.min(ctx.device().limits().max_storage_buffer_binding_size) / 16 * 16;
        let len = usize::try_from(bytes / 4).unwrap_or(usize::MAX);
        let source = ctx.upload(&vec![1.0; len])?;
        let target = ctx.storage_buffer(len)?;
        let mut record = |encoder: &mut wgpu::CommandEncoder| {
            self.baseline.copy(ctx, encoder, (&source, &target), bytes, exp)
        };
        for _ in 0..warmup {
            self.timer.time(ctx, &mut record)?;
        }
        let times = (0..runs).map(|_| self.timer.time(ctx, &mut record)).collect::<Result<Vec<_>>>()?;
        #[allow(clippy::cast_precision_loss)] // bytes of one buffer
        Ok(2.0 * bytes as f64 / (median(&times) * 1e-3) / 1e9)
    }
}

/// Runs a whole suite: the copy roofline first, then the strategy choices per shape (the
/// heuristics' and autotuning's), then every (shape, op, kernel). Calls
/// `progress(done, total, what)` before each step with what it is about to do, and once at
/// the end with `done == total`, so that a caller can show progress from the first second.
///
/// # Errors
///
/// The first op or device error.
pub fn run_suite(
    ctx: &Context,
    config: &SuiteConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Report> {
    let total = config.steps();
    let mut done = 0;
    let mut step = |what: &str| {
        progress(done, total, what);
        done += 1;
    };
    step("compiling the baselines");
    let bench = Bench::new(ctx)?;
    let copy_runs = config.gpu_runs.max(3);
    let measure_rooflines = |step: &mut dyn FnMut(&str), when: &str| -> Result<Rooflines> {
        step(&format!("measuring the copy kernel (the roofline), {when}"));
        let copy_gbps = bench.copy_gbps(config.copy_bytes, config.warmup, copy_runs, false)?;
        step(&format!("measuring the copy kernel applying exp, {when}"));
        let exp_copy_gbps = bench.copy_gbps(config.copy_bytes, config.warmup, copy_runs, true)?;
        Ok(Rooflines { copy_gbps, exp_copy_gbps })
    };
    let before = measure_rooflines(&mut step, "before")?;
    let info = ctx.adapter_info();
    let mut report = Report {
        adapter: info.name.clone(),
        backend: format!("{:?}", info.backend),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_owned(),
        clock: bench.clock().name().to_owned(),
        copy_gbps: before.copy_gbps,
        exp_copy_gbps: before.exp_copy_gbps,
        records: Vec::new(),
        strategies: Vec::new(),
    };
    let tuning = ctx.with_autotune(true);
    for &shape in &config.shapes {
        step(&format!("autotuning the strategies for {shape}"));
        let choices = [
            ("softmax", Softmax::new().plan(ctx, shape)?, Softmax::new().plan(&tuning, shape)?),
            (
                "cross_entropy",
                CrossEntropy::new().plan(ctx, shape)?,
                CrossEntropy::new().plan(&tuning, shape)?,
            ),
            (
                "softmax_backward",
                SoftmaxBackward::new().plan(ctx, shape)?,
                SoftmaxBackward::new().plan(&tuning, shape)?,
            ),
        ];
        for (family, heuristic, tuned) in choices {
            report.strategies.push(StrategyChoice {
                family,
                rows: shape.rows,
                cols: shape.cols,
                heuristic: heuristic.strategy(),
                tuned: tuned.strategy(),
            });
        }
    }
    let mut measured = Vec::new();
    for &shape in &config.shapes {
        for (op, dtype) in config.cases() {
            let mut workload = Workload::with_dtype(op, shape, config.seed, dtype);
            for &kernel in config.kernels.iter().filter(|k| k.measures(op, dtype)) {
                step(&format!("{} {} {shape} {}", op.name(), dtype.name(), kernel.name()));
                let runs = if kernel.on_gpu() { config.gpu_runs } else { config.cpu_runs };
                // The first call before anything else of this workload runs.
                let first_call_ms =
                    (kernel == KernelKind::Fused).then(|| bench.first_call_ms(&mut workload)).transpose()?;
                let times = bench.time(&mut workload, kernel, config.warmup, runs)?;
                let (wall, host) = match first_call_ms {
                    Some(first_call_ms) => (
                        Some(median(&bench.time_wall(&mut workload, config.warmup, runs)?)),
                        Some(bench.host_costs(&workload, HOST_RUNS, first_call_ms)?),
                    ),
                    None => (None, None),
                };
                measured.push((op, kernel, dtype, shape, median(&times), wall, host));
            }
        }
    }
    // A shared machine's bandwidth drifts over a run: the rooflines are the better of
    // their measurements before and after, so no share is flattered by a slow copy.
    let after = measure_rooflines(&mut step, "after")?;
    report.copy_gbps = before.copy_gbps.max(after.copy_gbps);
    report.exp_copy_gbps = before.exp_copy_gbps.max(after.exp_copy_gbps);
    for (op, kernel, dtype, shape, median_ms, wall, host) in measured {
        let mut record = Record::new(op, kernel, dtype, shape, median_ms, report.rooflines());
        if let Some(ms) = wall {
            record = record.with_wall_ms(ms);
        }
        if let Some(host) = host {
            record = record.with_host(host);
        }
        report.records.push(record);
    }
    progress(total, total, "done");
    Ok(report)
}
