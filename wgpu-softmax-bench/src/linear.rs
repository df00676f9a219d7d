//! The linear cross-entropy against the unfused composition on the same adapter: forward
//! plus backward (mean loss, `dH`, `dW`) of `H (N x D)`, `W (V x D)` and class targets, or
//! the forward alone (the mean loss), timed and weighed (the GPU memory each holds at its
//! peak).
//!
//! The unfused composition is what a framework records: the logits `H W^T` stored whole
//! (`N x V` f32) by a matmul, this crate's fused cross-entropy over them (reduction none, the
//! upstream gradient `1/N` per row, the gradient written in place), the mean of the
//! losses, then `dH = G W` and `dW = G^T H` (for the forward alone, no gradient and no
//! products after the cross-entropy). It uses the same product kernel as the fused
//! op, so the two differ in what they store and how they walk the rows, not in their
//! matmul. Where the logits exceed one storage binding (lavapipe binds 128 MiB) each pass
//! binds a block of rows of the one logits buffer at a time, as a framework's kernels
//! would have to.

use std::fmt::Write as _;

use wgpu_softmax::testing::{SeededRng, record_matmul};
use wgpu_softmax::timing::{Timer, median};
use wgpu_softmax::wgpu;
use wgpu_softmax::{
    BufferRegion, Context, CrossEntropy, CrossEntropyBuffers, Gradient, LinearCrossEntropy,
    LinearCrossEntropyBuffers, LinearShape, Reduction, Shape, TargetBuffer,
};

use crate::Result;

/// The shapes the issue asks for, `(N, D, V)`: a 32k and a GPT-2-sized vocabulary.
pub const LINEAR_SHAPES: [(usize, usize, usize); 2] = [(4096, 256, 32768), (4096, 256, 50257)];

/// The quick suite's shape: small enough for a software adapter in seconds.
pub const QUICK_LINEAR_SHAPE: (usize, usize, usize) = (512, 64, 8192);

/// What computes the linear cross-entropy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinearKernel {
    /// [`LinearCrossEntropy`]: windows of rows, the logits never stored whole.
    Fused,
    /// Matmul, cross-entropy and two gradient matmuls over the whole logits.
    Unfused,
}

impl LinearKernel {
    /// Both, in report order.
    pub const ALL: [Self; 2] = [Self::Fused, Self::Unfused];

    /// The kernel's name in reports and JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Fused => "fused",
            Self::Unfused => "unfused",
        }
    }
}

/// What a linear cross-entropy suite measures and how often.
#[derive(Clone, Debug)]
pub struct LinearConfig {
    /// The shapes, `(N, D, V)`.
    pub shapes: Vec<LinearShape>,
    /// Untimed runs first (pipelines are compiled while recording, outside the timed span,
    /// so none are needed for a first run that is representative on most adapters).
    pub warmup: usize,
    /// Timed runs; the median is reported.
    pub runs: usize,
    /// Seed of the input data.
    pub seed: u64,
    /// The forward alone (the loss; no gradients), instead of forward plus backward.
    pub forward_only: bool,
}

impl LinearConfig {
    /// [`LINEAR_SHAPES`], one warm-up and three timed runs.
    #[must_use]
    pub fn full() -> Self {
        Self {
            shapes: LINEAR_SHAPES.iter().map(|&(n, d, v)| LinearShape::new(n, d, v)).collect(),
            warmup: 1,
            runs: 3,
            seed: 0x11_4EA2,
            forward_only: false,
        }
    }

    /// [`QUICK_LINEAR_SHAPE`], one timed run.
    #[must_use]
    pub fn quick() -> Self {
        let (n, d, v) = QUICK_LINEAR_SHAPE;
        Self { shapes: vec![LinearShape::new(n, d, v)], warmup: 0, runs: 1, ..Self::full() }
    }

    /// How many (shape, kernel) measurements the suite takes.
    #[must_use]
    pub fn measurements(&self) -> usize {
        self.shapes.len() * LinearKernel::ALL.len()
    }
}

/// How a record's memory was weighed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemorySource {
    /// The device's allocator: the bytes allocated while the run's buffers all lived, less
    /// those allocated before the run's first buffer (`wgpu::Device::generate_allocator_report`).
    Allocator,
    /// No allocator report on this backend: the run's own buffers plus the largest buffer
    /// the op made for itself (a lower bound of the fused op's, exact for the unfused
    /// composition's).
    Buffers,
}

impl MemorySource {
    /// The source's name in reports and JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Allocator => "allocator",
            Self::Buffers => "buffers",
        }
    }
}

/// One measurement of the linear cross-entropy.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LinearRecord {
    /// `fused` or `unfused`.
    pub kernel: &'static str,
    /// `N`.
    pub rows: usize,
    /// `D`.
    pub hidden: usize,
    /// `V`.
    pub classes: usize,
    /// `forward+backward` or `forward`.
    pub pass: &'static str,
    /// Median GPU time of the pass, milliseconds.
    pub median_ms: f64,
    /// Timed runs behind the median.
    pub runs: usize,
    /// Multiply-adds of the pass's products (three, or the forward's one) over the median
    /// time, GFLOP/s (2 flops each).
    pub gflops: f64,
    /// GPU memory held at the run's peak, inputs and gradients included, bytes.
    pub peak_bytes: u64,
    /// How `peak_bytes` was weighed: `allocator` or `buffers`.
    pub memory_source: &'static str,
    /// What the logits alone take in f32, `N x V x 4` bytes, for scale.
    pub logits_bytes: u64,
    /// The mean loss the run computed (the two kernels must agree).
    pub loss: f32,
}

/// A linear cross-entropy suite's results on one adapter.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LinearReport {
    /// The adapter's name.
    pub adapter: String,
    /// Its backend.
    pub backend: String,
    /// How times were taken.
    pub clock: String,
    /// Every measurement.
    pub records: Vec<LinearRecord>,
}

impl LinearReport {
    /// The table: per shape, each kernel's time and memory, and the fused op's ratios.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = format!("{} ({}), times by {}\n", self.adapter, self.backend, self.clock);
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:<16} {:>12} {:>9} {:>12} {:>10} {:>10}",
            "N x D x V", "kernel", "pass", "median ms", "GFLOP/s", "peak MiB", "memory", "loss"
        );
        for r in &self.records {
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:<16} {:>12.2} {:>9.1} {:>12.1} {:>10} {:>10.5}",
                format!("{}x{}x{}", r.rows, r.hidden, r.classes),
                r.kernel,
                r.pass,
                r.median_ms,
                r.gflops,
                mib(r.peak_bytes),
                r.memory_source,
                r.loss
            );
        }
        for fused in self.records.iter().filter(|r| r.kernel == LinearKernel::Fused.name()) {
            let unfused = self.records.iter().find(|r| {
                r.kernel == LinearKernel::Unfused.name()
                    && (r.rows, r.hidden, r.classes, r.pass)
                        == (fused.rows, fused.hidden, fused.classes, fused.pass)
            });
            if let Some(unfused) = unfused {
                #[allow(clippy::cast_precision_loss)] // byte counts
                let memory = fused.peak_bytes as f64 / unfused.peak_bytes.max(1) as f64;
                let _ = writeln!(
                    out,
                    "{}x{}x{} {}: fused peak memory {:.3} of the unfused ({:.1} vs {:.1} MiB; logits {:.1} MiB), time {:.2}x the unfused",
                    fused.rows,
                    fused.hidden,
                    fused.classes,
                    fused.pass,
                    memory,
                    mib(fused.peak_bytes),
                    mib(unfused.peak_bytes),
                    mib(fused.logits_bytes),
                    fused.median_ms / unfused.median_ms
                );
            }
        }
        out
    }

    /// The report as pretty JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[allow(clippy::cast_precision_loss)] // byte counts shown in MiB
fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Random `H`, `W` (scaled so that logits spread over a few units) and class targets.
struct LinearData {
    shape: LinearShape,
    hidden: Vec<f32>,
    classifier: Vec<f32>,
    targets: Vec<u32>,
}

impl LinearData {
    fn new(shape: LinearShape, seed: u64) -> Self {
        let mut rng = SeededRng::new(seed);
        let LinearShape { rows, hidden, classes } = shape;
        #[allow(clippy::cast_precision_loss)] // a hidden size
        let scale = 4.0 / (hidden.max(1) as f32).sqrt();
        let hidden_values = rng.logits(rows * hidden, 1.0);
        let classifier = rng.logits(classes * hidden, scale);
        let targets = (0..rows).map(|_| u32::try_from(rng.below(classes as u64)).unwrap_or(0)).collect();
        Self { shape, hidden: hidden_values, classifier, targets }
    }
}

/// The buffers both kernels read and write: inputs, the loss and the two gradients.
struct SharedBuffers {
    hidden: wgpu::Buffer,
    classifier: wgpu::Buffer,
    targets: wgpu::Buffer,
    loss: wgpu::Buffer,
    grad_hidden: wgpu::Buffer,
    grad_classifier: wgpu::Buffer,
}

impl SharedBuffers {
    fn new(ctx: &Context, data: &LinearData) -> Result<Self> {
        let LinearShape { rows, hidden, classes } = data.shape;
        Ok(Self {
            hidden: ctx.upload(&data.hidden)?,
            classifier: ctx.upload(&data.classifier)?,
            targets: ctx.upload_elements(&data.targets)?,
            loss: poisoned(ctx, 1)?,
            grad_hidden: poisoned(ctx, rows * hidden)?,
            grad_classifier: poisoned(ctx, classes * hidden)?,
        })
    }

    fn bytes(&self) -> u64 {
        [&self.hidden, &self.classifier, &self.targets, &self.loss, &self.grad_hidden, &self.grad_classifier]
            .iter()
            .map(|b| b.size())
            .sum()
    }
}

/// What only the unfused composition holds: the whole logits (then their gradient), the
/// loss per row and the upstream gradient `1/N` per row.
struct UnfusedBuffers {
    logits: wgpu::Buffer,
    row_loss: wgpu::Buffer,
    inverse_rows: wgpu::Buffer,
}

impl UnfusedBuffers {
    fn new(ctx: &Context, shape: LinearShape) -> Result<Self> {
        #[allow(clippy::cast_precision_loss)] // a row count
        let inverse = 1.0 / shape.rows.max(1) as f32;
        Ok(Self {
            logits: poisoned(ctx, shape.rows * shape.classes)?,
            row_loss: poisoned(ctx, shape.rows)?,
            inverse_rows: ctx.upload(&vec![inverse; shape.rows])?,
        })
    }

    fn bytes(&self) -> u64 {
        self.logits.size() + self.row_loss.size() + self.inverse_rows.size()
    }
}

/// A buffer of `len` f32 NaNs with a payload no kernel writes: what a run leaves unwritten
/// shows in its outputs.
fn poisoned(ctx: &Context, len: usize) -> Result<wgpu::Buffer> {
    Ok(ctx.upload(&vec![f32::from_bits(0xffba_dbad); len.max(1)])?)
}

/// Rows per block of the unfused composition: as many as one binding of logits holds,
/// a multiple of 64 so that every block's offsets keep 256-byte alignment.
fn unfused_block_rows(ctx: &Context, shape: LinearShape) -> usize {
    let limit = ctx.device().limits().max_storage_buffer_binding_size;
    let per_row = 4 * shape.classes.max(1) as u64;
    let rows = usize::try_from(limit / per_row).unwrap_or(usize::MAX) / 64 * 64;
    rows.max(64).min(shape.rows.next_multiple_of(64))
}

/// Records the unfused composition.
fn record_unfused(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    shape: LinearShape,
    shared: &SharedBuffers,
    own: &UnfusedBuffers,
    (block, pass): (usize, LinearPass),
) -> Result<()> {
    let LinearShape { rows, hidden: d, classes: v } = shape;
    let at = |buffer, row: usize, width: usize, count: usize| {
        BufferRegion::at(buffer, (4 * row * width) as u64).with_size((4 * count * width) as u64)
    };
    let gradient = if pass.has_gradients() { Gradient::InPlace } else { Gradient::Skip };
    let loss_op = CrossEntropy::new().reduction(Reduction::None).gradient(gradient);
    for start in (0..rows).step_by(block) {
        let count = block.min(rows - start);
        let logits = at(&own.logits, start, v, count);
        let hidden = at(&shared.hidden, start, d, count);
        // logits = H W^T
        record_matmul(
            ctx,
            encoder,
            (hidden, false),
            (BufferRegion::new(&shared.classifier), true),
            logits,
            (count, v, d),
            false,
        )?;
        let targets = TargetBuffer::U32(at(&shared.targets, start, 1, count));
        let buffers = CrossEntropyBuffers::new(logits, targets, at(&own.row_loss, start, 1, count))
            .with_grad_output(at(&own.inverse_rows, start, 1, count));
        loss_op.encode(ctx, encoder, &buffers, Shape::new(count, v))?;
        if !pass.has_gradients() {
            continue;
        }
        // dH = G W, dW += G^T H
        record_matmul(
            ctx,
            encoder,
            (logits, false),
            (BufferRegion::new(&shared.classifier), false),
            at(&shared.grad_hidden, start, d, count),
            (count, d, v),
            false,
        )?;
        record_matmul(
            ctx,
            encoder,
            (logits, true),
            (hidden, false),
            BufferRegion::new(&shared.grad_classifier),
            (v, d, count),
            start > 0,
        )?;
    }
    // The mean: (1/N, ..., 1/N) times the losses.
    record_matmul(
        ctx,
        encoder,
        (BufferRegion::new(&own.inverse_rows), false),
        (BufferRegion::new(&own.row_loss), false),
        BufferRegion::new(&shared.loss),
        (1, 1, rows),
        false,
    )?;
    Ok(())
}

/// Records the fused op.
fn record_fused(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    shape: LinearShape,
    shared: &SharedBuffers,
    pass: LinearPass,
) -> Result<()> {
    let mut buffers = LinearCrossEntropyBuffers::new(
        &shared.hidden,
        &shared.classifier,
        TargetBuffer::U32((&shared.targets).into()),
        &shared.loss,
    );
    if pass.has_gradients() {
        buffers = buffers.with_grad_hidden(&shared.grad_hidden).with_grad_classifier(&shared.grad_classifier);
    }
    LinearCrossEntropy::new().encode(ctx, encoder, &buffers, shape)?;
    Ok(())
}

/// The allocator's allocated bytes, where the backend reports them.
fn allocated_bytes(ctx: &Context) -> Option<u64> {
    ctx.device().generate_allocator_report().map(|report| report.total_allocated_bytes)
}

/// The outputs of one run, for checking the kernels against each other and the reference.
#[derive(Clone, Debug)]
pub struct LinearOutputs {
    /// The mean loss.
    pub loss: f32,
    /// `dH`, `N x D`.
    pub grad_hidden: Vec<f32>,
    /// `dW`, `V x D`.
    pub grad_classifier: Vec<f32>,
}

/// Measures `kernel` on `shape`: the peak memory while its first run is recorded (every
/// buffer of the run alive), then the median of `runs` timed runs after `warmup`; returns
/// the record and what the last run computed.
///
/// # Errors
///
/// The op's errors (a logits buffer past the device's largest buffer among them), and
/// timeouts.
pub fn measure_linear(
    ctx: &Context,
    timer: &Timer,
    (kernel, pass): (LinearKernel, LinearPass),
    shape: LinearShape,
    (warmup, runs, seed): (usize, usize, u64),
) -> Result<(LinearRecord, LinearOutputs)> {
    let block = unfused_block_rows(ctx, shape);
    measure_blocked(ctx, timer, (kernel, pass), shape, (warmup, runs, seed), block)
}

/// Which pass a measurement times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinearPass {
    /// The loss, `dH` and `dW`.
    ForwardBackward,
    /// The loss alone.
    Forward,
}

impl LinearPass {
    /// The pass's name in reports and JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::ForwardBackward => "forward+backward",
            Self::Forward => "forward",
        }
    }

    /// Whether it computes the gradients.
    const fn has_gradients(self) -> bool {
        matches!(self, Self::ForwardBackward)
    }
}

/// [`measure_linear`] with the unfused composition's blocks of `block` rows (a multiple
/// of 64).
fn measure_blocked(
    ctx: &Context,
    timer: &Timer,
    (kernel, pass): (LinearKernel, LinearPass),
    shape: LinearShape,
    (warmup, runs, seed): (usize, usize, u64),
    block: usize,
) -> Result<(LinearRecord, LinearOutputs)> {
    let data = LinearData::new(shape, seed);
    let before = allocated_bytes(ctx);
    let shared = SharedBuffers::new(ctx, &data)?;
    let own = match kernel {
        LinearKernel::Fused => None,
        LinearKernel::Unfused => Some(UnfusedBuffers::new(ctx, shape)?),
    };
    // An upload keeps a staging copy of its data until the next submission completes:
    // complete one, so that the peak weighs the run's buffers, not their upload copies.
    ctx.submit_and_wait(ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default()))?;
    let mut peak = None;
    let mut record = |encoder: &mut wgpu::CommandEncoder| -> Result<()> {
        match &own {
            None => record_fused(ctx, encoder, shape, &shared, pass)?,
            Some(own) => record_unfused(ctx, encoder, shape, &shared, own, (block, pass))?,
        }
        // Every buffer of the run, the op's own included, lives until the submission ends.
        if peak.is_none() {
            peak = Some(allocated_bytes(ctx));
        }
        Ok(())
    };
    for _ in 0..warmup {
        timer.time(ctx, &mut record)?;
    }
    let times = (0..runs.max(1)).map(|_| timer.time(ctx, &mut record)).collect::<Result<Vec<_>>>()?;
    let (peak_bytes, source) = match (before, peak.flatten()) {
        (Some(before), Some(during)) => (during.saturating_sub(before), MemorySource::Allocator),
        _ => (
            shared.bytes()
                + own.as_ref().map_or(0, UnfusedBuffers::bytes)
                + if own.is_none() { ctx.largest_scratch_bytes() } else { 0 },
            MemorySource::Buffers,
        ),
    };
    let LinearShape { rows, hidden, classes } = shape;
    let outputs = LinearOutputs {
        loss: ctx.download(&shared.loss, 1)?.first().copied().unwrap_or(f32::NAN),
        grad_hidden: ctx.download(&shared.grad_hidden, rows * hidden)?,
        grad_classifier: ctx.download(&shared.grad_classifier, classes * hidden)?,
    };
    let median_ms = median(&times);
    let products = if pass.has_gradients() { 3.0 } else { 1.0 };
    #[allow(clippy::cast_precision_loss)] // multiply-add counts
    let gflops = 2.0 * products * (rows * hidden * classes) as f64 / (median_ms * 1e-3) / 1e9;
    let record = LinearRecord {
        kernel: kernel.name(),
        pass: pass.name(),
        rows,
        hidden,
        classes,
        median_ms,
        runs: times.len(),
        gflops,
        peak_bytes,
        memory_source: source.name(),
        logits_bytes: 4 * (rows * classes) as u64,
        loss: outputs.loss,
    };
    Ok((record, outputs))
}

/// The inputs [`measure_linear`] draws for `shape` and `seed`: `H`, `W` and the targets.
#[must_use]
pub fn linear_inputs(shape: LinearShape, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let data = LinearData::new(shape, seed);
    (data.hidden, data.classifier, data.targets)
}

/// Runs a linear cross-entropy suite: every shape, the fused op then the unfused
/// composition. Calls `progress(done, total, what)` before each measurement and once at the
/// end.
///
/// # Errors
///
/// The first op or device error.
pub fn run_linear_suite(
    ctx: &Context,
    config: &LinearConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<LinearReport> {
    let timer = Timer::new(ctx);
    let info = ctx.adapter_info();
    let mut report = LinearReport {
        adapter: info.name.clone(),
        backend: format!("{:?}", info.backend),
        clock: timer.clock().name().to_owned(),
        records: Vec::new(),
    };
    let total = config.measurements();
    let mut done = 0;
    let pass = if config.forward_only { LinearPass::Forward } else { LinearPass::ForwardBackward };
    for &shape in &config.shapes {
        for kernel in LinearKernel::ALL {
            let what = format!(
                "linear_cross_entropy {}x{}x{} {} {}",
                shape.rows,
                shape.hidden,
                shape.classes,
                kernel.name(),
                pass.name()
            );
            progress(done, total, &what);
            let (record, _) = measure_linear(
                ctx,
                &timer,
                (kernel, pass),
                shape,
                (config.warmup, config.runs, config.seed),
            )?;
            report.records.push(record);
            done += 1;
        }
    }
    progress(total, total, "done");
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test

    use wgpu_softmax::check::Tolerance;
    use wgpu_softmax::testing::compare;
    use wgpu_softmax::{LinearCrossEntropyInput, Targets, reference};

    use super::*;

    #[test]
    fn both_kernels_compute_what_the_reference_does() {
        // Without an adapter this fails with the message that says what to install.
        let ctx = &Context::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
        let timer = Timer::new(ctx);
        // 150 rows in blocks of 64: the unfused composition's last block is partial and
        // dW accumulates over three blocks; V and D odd.
        let shape = LinearShape::new(150, 9, 301);
        let seed = 0x5EED;
        let (hidden, classifier, targets) = linear_inputs(shape, seed);
        let input = LinearCrossEntropyInput::new(&hidden, &classifier, shape, Targets::U32(&targets));
        let want = reference::linear_cross_entropy(&LinearCrossEntropy::new(), &input).unwrap();
        for kernel in LinearKernel::ALL {
            let loss = want.loss[0];
            let close = |got: f32| (f64::from(got) - loss).abs() <= 1e-5 + 1e-4 * loss.abs();
            // The forward alone: the same loss, the gradients left poisoned.
            let (record, got) =
                measure_blocked(ctx, &timer, (kernel, LinearPass::Forward), shape, (0, 1, seed), 64).unwrap();
            let what = format!("{} forward", kernel.name());
            assert!(close(got.loss), "{what}: loss {} vs {loss}", got.loss);
            assert_eq!(record.pass, "forward");
            assert!(got.grad_hidden.iter().all(|g| g.is_nan()), "{what}: dH written");

            let (record, got) =
                measure_blocked(ctx, &timer, (kernel, LinearPass::ForwardBackward), shape, (0, 1, seed), 64)
                    .unwrap();
            let what = kernel.name();
            assert!(close(got.loss), "{what}: loss {} vs {loss}", got.loss);
            assert_eq!(record.loss.to_bits(), got.loss.to_bits(), "{what}: the record's loss");
            let grad = Tolerance::LINEAR_CROSS_ENTROPY_GRAD;
            let c = compare(&got.grad_hidden, want.grad_hidden.as_deref().unwrap(), grad);
            assert!(c.passed(), "{what} dH: {c}");
            let c = compare(&got.grad_classifier, want.grad_classifier.as_deref().unwrap(), grad);
            assert!(c.passed(), "{what} dW: {c}");
            assert!(record.peak_bytes >= 4 * (150 * 9 + 301 * 9) as u64, "{what}: {record:?}");
        }
    }

    #[test]
    fn unfused_blocks_fit_one_binding_and_keep_offsets_aligned() {
        let ctx = &Context::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
        let limit = ctx.device().limits().max_storage_buffer_binding_size;
        for (n, v) in [(4096, 32768), (4096, 50257), (100, 7)] {
            let shape = LinearShape::new(n, 16, v);
            let block = unfused_block_rows(ctx, shape);
            assert_eq!(block % 64, 0, "{n}x{v}: {block}");
            assert!(block >= 64);
            assert!((4 * block * v) as u64 <= limit || block == 64, "{n}x{v}: {block} rows");
        }
    }
}
