//! The row ops of the GPU report: every case on every shape and storage type, with the
//! plan the planner explains, the first call's wall time, and GPU-timed median and p90.

use wgpu_softmax::testing::{SeededRng, dispatches_recorded};
use wgpu_softmax::timing::Timer;
use wgpu_softmax::wgpu;
use wgpu_softmax::{
    Context, CrossEntropy, CrossEntropyBuffers, DType, Distill, DistillBuffers, DistillReduction, Gradient,
    PlanRequest, Reduction, Shape, Softmax, SoftmaxBackward, TargetBuffer, TensorRef,
};

use super::{RowRecord, percentile};
use crate::Result;

/// One row op with the options that change what it dispatches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowCase {
    /// Softmax, or log-softmax.
    Softmax {
        /// Log-softmax.
        log: bool,
    },
    /// Softmax backward.
    SoftmaxBackward,
    /// The fused cross-entropy, int32 class targets.
    CrossEntropy {
        /// The reduction.
        reduction: Reduction,
        /// Whether the gradient is written (to a separate tensor).
        grad: bool,
        /// Label smoothing (0 is off).
        label_smoothing: f32,
    },
    /// The distillation (KL of the teacher's softmax from the student's), temperature 1.
    Distill {
        /// The reduction.
        reduction: DistillReduction,
        /// Whether the gradient is written.
        grad: bool,
    },
}

impl RowCase {
    /// Every case the full report measures: each op, the cross-entropy's reductions with
    /// and without the gradient and with label smoothing, the distillation's reductions.
    pub const ALL: [Self; 10] = [
        Self::Softmax { log: false },
        Self::Softmax { log: true },
        Self::SoftmaxBackward,
        Self::CrossEntropy { reduction: Reduction::Mean, grad: true, label_smoothing: 0.0 },
        Self::CrossEntropy { reduction: Reduction::Mean, grad: false, label_smoothing: 0.0 },
        Self::CrossEntropy { reduction: Reduction::Sum, grad: true, label_smoothing: 0.0 },
        Self::CrossEntropy { reduction: Reduction::None, grad: true, label_smoothing: 0.0 },
        Self::CrossEntropy { reduction: Reduction::Mean, grad: true, label_smoothing: 0.1 },
        Self::Distill { reduction: DistillReduction::BatchMean, grad: true },
        Self::Distill { reduction: DistillReduction::Sum, grad: false },
    ];

    /// The op's name in the report, and what PyTorch's side is asked to time.
    #[must_use]
    pub const fn op(self) -> &'static str {
        match self {
            Self::Softmax { log: false } => "softmax",
            Self::Softmax { log: true } => "log_softmax",
            Self::SoftmaxBackward => "softmax_backward",
            Self::CrossEntropy { .. } => "cross_entropy",
            Self::Distill { .. } => "distill",
        }
    }

    /// The options, as the report prints them (empty for none).
    #[must_use]
    pub fn options(self) -> String {
        match self {
            Self::Softmax { .. } | Self::SoftmaxBackward => String::new(),
            Self::CrossEntropy { reduction, grad, label_smoothing } => {
                let mut text =
                    format!("{} {}", reduction_name(reduction), if grad { "grad" } else { "loss" });
                if label_smoothing > 0.0 {
                    text.push_str(&format!(" ls={label_smoothing}"));
                }
                text
            }
            Self::Distill { reduction, grad } => {
                format!("{} {}", reduction.name(), if grad { "grad" } else { "loss" })
            }
        }
    }

    /// The fewest bytes the case must move: each class-axis tensor read or written once at
    /// the storage width, and 4-byte targets and losses per row.
    #[must_use]
    pub fn min_bytes(self, shape: Shape, dtype: DType) -> u64 {
        let (tensors, per_row) = match self {
            Self::Softmax { .. } => (2, 0),
            Self::SoftmaxBackward => (3, 0),
            Self::CrossEntropy { grad, .. } => (1 + u64::from(grad), 8),
            Self::Distill { grad, .. } => (2 + u64::from(grad), 4),
        };
        tensors * dtype.size() * (shape.rows * shape.cols) as u64 + per_row * shape.rows as u64
    }

    /// What the planner is asked to explain.
    const fn request(self) -> PlanRequest {
        match self {
            Self::Softmax { log } => PlanRequest::Softmax { log, strategy: None },
            Self::SoftmaxBackward => PlanRequest::SoftmaxBackward { log: false, strategy: None },
            Self::CrossEntropy { reduction, grad, .. } => PlanRequest::CrossEntropy {
                reduction,
                gradient: if grad { Gradient::Separate } else { Gradient::Skip },
                probabilities: false,
                strategy: None,
            },
            Self::Distill { reduction, grad } => {
                PlanRequest::Distill { reduction, gradient: grad, masked: false, strategy: None }
            }
        }
    }
}

/// The name PyTorch gives a cross-entropy reduction.
#[must_use]
pub const fn reduction_name(reduction: Reduction) -> &'static str {
    match reduction {
        Reduction::None => "none",
        Reduction::Sum => "sum",
        _ => "mean",
    }
}

/// The random data of one shape, in f32, shared by its storage types.
pub struct RowData {
    shape: Shape,
    /// Logits in [-8, 8): the first input (the softmax output's place for the backward,
    /// the student's for the distillation).
    input: Vec<f32>,
    /// The second input: the upstream gradient, or the teacher's logits.
    other: Vec<f32>,
    targets: Vec<i32>,
}

impl RowData {
    /// Random data for `shape` from `seed`.
    #[must_use]
    pub fn new(shape: Shape, seed: u64) -> Self {
        let mut rng = SeededRng::new(seed);
        let len = shape.rows * shape.cols;
        let input = rng.logits(len, 8.0);
        let other = rng.logits(len, 8.0);
        let targets =
            (0..shape.rows).map(|_| i32::try_from(rng.below(shape.cols as u64)).unwrap_or(0)).collect();
        Self { shape, input, other, targets }
    }
}

/// The buffers every case of one shape and storage type shares.
struct RowBuffers {
    /// Copies of the first input, used in turn so that no run finds the last one's in a
    /// cache.
    inputs: Vec<wgpu::Buffer>,
    /// The second class-axis input.
    other: wgpu::Buffer,
    targets: wgpu::Buffer,
    output: wgpu::Buffer,
    loss: wgpu::Buffer,
    next: std::cell::Cell<usize>,
}

/// Input copies are rotated until together they exceed this (last-level caches are
/// smaller).
const ROTATION_BYTES: u64 = 256 << 20;

impl RowBuffers {
    /// Uploads `data` rounded to `dtype`.
    fn new(ctx: &Context, data: &RowData, dtype: DType) -> Result<Self> {
        let len = data.shape.rows * data.shape.cols;
        let input = dtype.round_f32(&data.input);
        let copies =
            usize::try_from((ROTATION_BYTES / (len as u64 * dtype.size()).max(4)).clamp(1, 4)).unwrap_or(1);
        Ok(Self {
            inputs: (0..copies).map(|_| ctx.upload_f32_as(dtype, &input)).collect::<Result<Vec<_>, _>>()?,
            other: ctx.upload_f32_as(dtype, &dtype.round_f32(&data.other))?,
            targets: ctx.upload_elements(&data.targets)?,
            output: ctx.elements_buffer(dtype, len)?,
            loss: ctx.storage_buffer(data.shape.rows)?,
            next: std::cell::Cell::new(0),
        })
    }

    /// Records one run of `case` into `encoder`.
    fn record(
        &self,
        ctx: &Context,
        case: RowCase,
        shape: Shape,
        dtype: DType,
        encoder: &mut wgpu::CommandEncoder,
    ) -> Result<()> {
        let input = &self.inputs[self.next.get() % self.inputs.len()];
        self.next.set(self.next.get() + 1);
        let tensor = |buffer| TensorRef::new(buffer, dtype);
        let (input, other, output) = (tensor(input), tensor(&self.other), tensor(&self.output));
        match case {
            RowCase::Softmax { log } => {
                let op = if log { Softmax::log() } else { Softmax::new() };
                op.encode(ctx, encoder, input, output, shape)?;
            }
            RowCase::SoftmaxBackward => {
                SoftmaxBackward::new().encode(ctx, encoder, input, other, output, shape)?;
            }
            RowCase::CrossEntropy { reduction, grad, label_smoothing } => {
                let mut buffers =
                    CrossEntropyBuffers::new(input, TargetBuffer::I32((&self.targets).into()), &self.loss);
                if grad {
                    buffers = buffers.with_grad(output);
                }
                CrossEntropy::new()
                    .reduction(reduction)
                    .label_smoothing(label_smoothing)
                    .gradient(if grad { Gradient::Separate } else { Gradient::Skip })
                    .encode(ctx, encoder, &buffers, shape)?;
            }
            RowCase::Distill { reduction, grad } => {
                let mut buffers = DistillBuffers::new(input, other, &self.loss);
                if grad {
                    buffers = buffers.with_grad(output);
                }
                Distill::new().reduction(reduction).gradient(grad).encode(ctx, encoder, &buffers, shape)?;
            }
        }
        Ok(())
    }
}

/// How each row case is measured.
#[derive(Clone, Copy, Debug)]
pub struct RowTiming {
    /// Untimed runs after the first call.
    pub warmup: usize,
    /// GPU-timed runs: the median and p90 are reported.
    pub runs: usize,
}

/// Measures every case of `cases` on `data`'s shape in `dtype`: the first call by wall clock
/// (recording, pipeline creation and the wait for the device), then `timing.warmup`
/// untimed runs, then `timing.runs` GPU-timed ones. Records lack the rooflines' shares,
/// which the caller fills in once the copy kernel is measured.
///
/// # Errors
///
/// The ops' errors, and timeouts.
pub fn measure_shape(
    ctx: &Context,
    timer: &Timer,
    cases: &[RowCase],
    data: &RowData,
    dtype: DType,
    timing: RowTiming,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<RowRecord>> {
    let shape = data.shape;
    let buffers = RowBuffers::new(ctx, data, dtype)?;
    let mut records = Vec::new();
    for &case in cases {
        progress(&format!("{} {} {} {shape}", case.op(), case.options(), dtype.name()));
        let plan = ctx.explain(&case.request(), shape, dtype)?;
        let started = std::time::Instant::now();
        let before = dispatches_recorded();
        let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        buffers.record(ctx, case, shape, dtype, &mut encoder)?;
        let dispatches = dispatches_recorded() - before;
        ctx.submit_and_wait(encoder)?;
        let first_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut record =
            |encoder: &mut wgpu::CommandEncoder| buffers.record(ctx, case, shape, dtype, encoder);
        for _ in 0..timing.warmup {
            timer.time(ctx, &mut record)?;
        }
        let times =
            (0..timing.runs.max(1)).map(|_| timer.time(ctx, &mut record)).collect::<Result<Vec<_>>>()?;
        let median_ms = crate::median(&times);
        #[allow(clippy::cast_precision_loss)] // bytes of one op
        let gbps = case.min_bytes(shape, dtype) as f64 / (median_ms * 1e-3) / 1e9;
        records.push(RowRecord {
            op: case.op(),
            options: case.options(),
            dtype: dtype.name(),
            rows: shape.rows,
            cols: shape.cols,
            first_ms,
            median_ms,
            p90_ms: percentile(&times, 0.9),
            runs: times.len(),
            gbps,
            copy_pct: 0.0,
            strategy: format!("{:?}", plan.strategy),
            workgroup_size: plan.workgroup_size,
            reads_per_element: plan.reads_per_element,
            dispatches_planned: plan.dispatches,
            dispatches,
        });
    }
    Ok(records)
}
