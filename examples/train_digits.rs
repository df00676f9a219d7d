//! Trains a softmax-regression classifier on the handwritten digits data, entirely on the
//! GPU, with wgpu-softmax embedded the way an application uses it: the example owns the
//! linear layer's kernels (`train_digits.wgsl`) and its buffers, and records the crate's
//! fused cross-entropy (loss and gradient, written over the logits in place) into the same
//! command encoder as its own passes. One submit per step; nothing is read back inside a
//! step.
//!
//! Usage: `cargo run --release --example train_digits [-- --epochs N | --quick]`
#![allow(clippy::print_stdout)]
// a command-line example: printing is its job
// Sizes here are a few thousand at most: casts between them and u32/f32 are exact.
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{SeededRng, compare};
use wgpu_softmax::{
    Context, CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, CrossEntropyStatus, Gradient, Reduction,
    Shape, TargetBuffer, Targets, reference,
};

mod support;
use support::{Result, bind, exit_code, pass, pipelines, storage, uniform, zeros};

const DATA: &[u8] = include_bytes!("data/digits.csv.gz");
const FEATURES: usize = 64;
const CLASSES: usize = 10;
const BATCH: usize = 32;
const LEARNING_RATE: f32 = 0.5;
const EPOCHS: usize = 30;
const QUICK_EPOCHS: usize = 12;
const SEED: u64 = 1797;

fn main() -> ExitCode {
    exit_code(run())
}

fn run() -> Result<()> {
    let epochs = parse_epochs()?;
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.describe());
    let (train, test) = load_digits()?.split(0.2, SEED);
    println!(
        "data: {} training and {} test images of {FEATURES} pixels, {CLASSES} classes",
        train.rows, test.rows
    );

    let mut rng = SeededRng::new(SEED);
    let started = Instant::now();
    let model = Model::new(&ctx, &train, &test, &mut rng)?;
    model.check_first_step(&ctx, &train)?;

    let bar = ProgressBar::new(epochs as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg}")?);
    let mut test_accuracy = 0.0;
    for epoch in 1..=epochs {
        model.train_epoch(&ctx, &train, &mut rng)?;
        let (train_loss, train_accuracy) = model.evaluate(&ctx, Split::Train)?;
        let (test_loss, accuracy) = model.evaluate(&ctx, Split::Test)?;
        test_accuracy = accuracy;
        bar.suspend(|| {
            println!(
                "epoch {epoch:>2}/{epochs}: train loss {train_loss:.4} accuracy {train_accuracy:.4} | test loss {test_loss:.4} accuracy {accuracy:.4}"
            );
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("trained {epochs} epochs in {:.1} s", started.elapsed().as_secs_f64());
    println!("test accuracy: {test_accuracy:.4}");
    Ok(())
}

fn parse_epochs() -> Result<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => Ok(EPOCHS),
        ["--quick"] => Ok(QUICK_EPOCHS),
        ["--epochs", n] => Ok(n.parse().map_err(|_| format!("--epochs wants a number, got '{n}'"))?),
        _ => Err("usage: train_digits [--epochs N | --quick]".into()),
    }
}

/// Images (pixels scaled to [0, 1]) and labels.
struct Dataset {
    features: Vec<f32>,
    labels: Vec<i32>,
    rows: usize,
}

fn load_digits() -> Result<Dataset> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DATA).read_to_string(&mut text)?;
    let mut data = Dataset { features: Vec::new(), labels: Vec::new(), rows: 0 };
    for (line_number, line) in text.lines().enumerate() {
        let values: Vec<u8> = line
            .split(',')
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| format!("digits.csv line {}: {e}", line_number + 1))?;
        let [pixels @ .., label] = values.as_slice() else { continue };
        if pixels.len() != FEATURES || usize::from(*label) >= CLASSES {
            return Err(format!(
                "digits.csv line {}: expected {FEATURES} pixels and a digit",
                line_number + 1
            )
            .into());
        }
        data.features.extend(pixels.iter().map(|&p| f32::from(p) / 16.0));
        data.labels.push(i32::from(*label));
        data.rows += 1;
    }
    Ok(data)
}

impl Dataset {
    /// A fixed-seed shuffle split into (train, test).
    fn split(&self, test_fraction: f64, seed: u64) -> (Self, Self) {
        let order = permutation(self.rows, &mut SeededRng::new(seed));
        let test_rows = (self.rows as f64 * test_fraction).round() as usize;
        let pick = |rows: &[u32]| Self {
            features: rows.iter().flat_map(|&r| self.row(r as usize).iter().copied()).collect(),
            labels: rows.iter().map(|&r| self.labels[r as usize]).collect(),
            rows: rows.len(),
        };
        (pick(&order[test_rows..]), pick(&order[..test_rows]))
    }

    fn row(&self, row: usize) -> &[f32] {
        &self.features[row * FEATURES..(row + 1) * FEATURES]
    }
}

/// A Fisher-Yates shuffle of 0..n.
fn permutation(n: usize, rng: &mut SeededRng) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
}

/// The step parameters, laid out as the WGSL `Step` struct.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Step {
    offset: u32,
    rows: u32,
    features: u32,
    classes: u32,
    learning_rate: f32,
    padding: [u32; 3],
}

impl Step {
    fn new(offset: usize, rows: usize) -> Self {
        Self {
            offset: offset as u32,
            rows: rows as u32,
            features: FEATURES as u32,
            classes: CLASSES as u32,
            learning_rate: LEARNING_RATE,
            padding: [0; 3],
        }
    }
}

#[derive(Clone, Copy)]
enum Split {
    Train,
    Test,
}

/// A data set on the GPU, with the bind group of the forward pass over it.
struct GpuSet {
    rows: usize,
    order: wgpu::Buffer,
    step: wgpu::Buffer,
    forward: wgpu::BindGroup,
}

/// The model's buffers and the example's pipelines.
struct Model {
    forward: wgpu::ComputePipeline,
    gradient: wgpu::ComputePipeline,
    update: wgpu::ComputePipeline,
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
    logits: wgpu::Buffer,
    batch_labels: wgpu::Buffer,
    weight_gradient: wgpu::Buffer,
    loss: wgpu::Buffer,
    status: wgpu::Buffer,
    train: GpuSet,
    /// The whole training set in order, for evaluation.
    train_eval: GpuSet,
    test: GpuSet,
    gradient_group: wgpu::BindGroup,
    update_group: wgpu::BindGroup,
}

impl Model {
    fn new(ctx: &Context, train: &Dataset, test: &Dataset, rng: &mut SeededRng) -> Result<Self> {
        let [forward, gradient, update] = pipelines(
            ctx,
            "train_digits",
            include_str!("train_digits.wgsl"),
            ["linear_forward", "linear_weight_gradient", "sgd_update"],
        );

        // Small random weights, zero biases.
        let weight: Vec<f32> = (0..CLASSES * FEATURES).map(|_| rng.uniform(-0.01, 0.01)).collect();
        let weight = storage(ctx, "weight", bytemuck::cast_slice(&weight));
        let bias = storage(ctx, "bias", bytemuck::cast_slice(&[0.0f32; CLASSES]));
        let largest = train.rows.max(test.rows);
        let logits = zeros(ctx, "logits", largest * CLASSES);
        let batch_labels = zeros(ctx, "batch labels", largest);
        let weight_gradient = zeros(ctx, "weight gradient", (FEATURES + 1) * CLASSES);
        let loss = zeros(ctx, "loss", 1);
        let status = zeros(ctx, "status", 4);

        let set = |data: &Dataset, step: Step, label: &str| {
            let features = storage(ctx, label, bytemuck::cast_slice(&data.features));
            let labels = storage(ctx, label, bytemuck::cast_slice(&data.labels));
            let order = storage(ctx, label, bytemuck::cast_slice(&(0..data.rows as u32).collect::<Vec<_>>()));
            let step = uniform(ctx, label, &step);
            let forward = bind(
                ctx,
                &forward,
                &[
                    (0, &step),
                    (1, &features),
                    (2, &labels),
                    (3, &order),
                    (4, &weight),
                    (5, &bias),
                    (6, &logits),
                    (7, &batch_labels),
                ],
            );
            (GpuSet { rows: data.rows, order, step, forward }, features)
        };
        let (train_set, train_features) = set(train, Step::new(0, BATCH), "train");
        let (train_eval, _) = set(train, Step::new(0, train.rows), "train (evaluation)");
        let (test_set, _) = set(test, Step::new(0, test.rows), "test");
        let gradient_group = bind(
            ctx,
            &gradient,
            &[
                (0, &train_set.step),
                (1, &train_features),
                (3, &train_set.order),
                (6, &logits),
                (8, &weight_gradient),
            ],
        );
        let update_group =
            bind(ctx, &update, &[(0, &train_set.step), (4, &weight), (5, &bias), (8, &weight_gradient)]);
        Ok(Self {
            forward,
            gradient,
            update,
            weight,
            bias,
            logits,
            batch_labels,
            weight_gradient,
            loss,
            status,
            train: train_set,
            train_eval,
            test: test_set,
            gradient_group,
            update_group,
        })
    }

    /// Records one SGD step over `rows` rows: forward, the fused cross-entropy (gradient
    /// over the logits), weight gradient, update.
    fn record_step(&self, ctx: &Context, encoder: &mut wgpu::CommandEncoder, rows: usize) -> Result<()> {
        pass(encoder, &self.forward, &[(&self.train.forward, rows * CLASSES)]);
        let buffers = CrossEntropyBuffers::new(
            &self.logits,
            TargetBuffer::I32((&self.batch_labels).into()),
            &self.loss,
        );
        CrossEntropy::new().gradient(Gradient::InPlace).encode(
            ctx,
            encoder,
            &buffers,
            Shape::new(rows, CLASSES),
        )?;
        pass(encoder, &self.gradient, &[(&self.gradient_group, (FEATURES + 1) * CLASSES)]);
        pass(encoder, &self.update, &[(&self.update_group, (FEATURES + 1) * CLASSES)]);
        Ok(())
    }

    /// One pass over the training set in a new random order: one submit per step.
    fn train_epoch(&self, ctx: &Context, train: &Dataset, rng: &mut SeededRng) -> Result<()> {
        ctx.queue().write_buffer(&self.train.order, 0, bytemuck::cast_slice(&permutation(train.rows, rng)));
        for offset in (0..train.rows).step_by(BATCH) {
            let rows = BATCH.min(train.rows - offset);
            ctx.queue().write_buffer(&self.train.step, 0, bytemuck::bytes_of(&Step::new(offset, rows)));
            let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            self.record_step(ctx, &mut encoder, rows)?;
            ctx.queue().submit([encoder.finish()]);
        }
        Ok(())
    }

    /// Mean loss and accuracy over a whole split: forward, then the cross-entropy with
    /// argmax and no gradient, read back once.
    fn evaluate(&self, ctx: &Context, split: Split) -> Result<(f32, f32)> {
        let set = match split {
            Split::Train => &self.train_eval,
            Split::Test => &self.test,
        };
        let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        pass(&mut encoder, &self.forward, &[(&set.forward, set.rows * CLASSES)]);
        let buffers = CrossEntropyBuffers::new(
            &self.logits,
            TargetBuffer::I32((&self.batch_labels).into()),
            &self.loss,
        )
        .with_status(&self.status);
        let op = CrossEntropy::new().gradient(Gradient::Skip).argmax(true);
        op.encode(ctx, &mut encoder, &buffers, Shape::new(set.rows, CLASSES))?;
        ctx.submit_and_wait(encoder)?;
        let loss = ctx.download(&self.loss, 1)?[0];
        let status = CrossEntropyStatus::read(ctx, &self.status)?;
        status.check()?;
        Ok((loss, status.correct as f32 / set.rows as f32))
    }

    /// Runs the first step and checks its loss and weight gradient against the same step
    /// on the CPU through the crate's f64 reference.
    fn check_first_step(&self, ctx: &Context, train: &Dataset) -> Result<()> {
        let weight = ctx.download(&self.weight, CLASSES * FEATURES)?;
        let bias = ctx.download(&self.bias, CLASSES)?;
        let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        self.record_step(ctx, &mut encoder, BATCH)?;
        ctx.submit_and_wait(encoder)?;
        let gpu_loss = ctx.download(&self.loss, 1)?[0];
        let gpu_gradient = ctx.download(&self.weight_gradient, (FEATURES + 1) * CLASSES)?;

        // The same step on the CPU: the first BATCH rows (the order starts as identity).
        let mut logits = vec![0.0f32; BATCH * CLASSES];
        for r in 0..BATCH {
            for c in 0..CLASSES {
                let dot: f64 = (0..FEATURES)
                    .map(|f| f64::from(train.row(r)[f]) * f64::from(weight[c * FEATURES + f]))
                    .sum();
                logits[r * CLASSES + c] = (dot + f64::from(bias[c])) as f32;
            }
        }
        let labels: Vec<i32> = train.labels[..BATCH].to_vec();
        let input = CrossEntropyInput::new(&logits, Shape::new(BATCH, CLASSES), Targets::I32(&labels));
        let cpu = reference::cross_entropy(&CrossEntropy::new().reduction(Reduction::Mean), &input)?;
        let cpu_logit_gradient = cpu.grad.ok_or("the reference gave no gradient")?;
        let mut cpu_gradient = vec![0.0f64; (FEATURES + 1) * CLASSES];
        for r in 0..BATCH {
            for c in 0..CLASSES {
                let g = cpu_logit_gradient[r * CLASSES + c];
                for f in 0..FEATURES {
                    cpu_gradient[c * FEATURES + f] += g * f64::from(train.row(r)[f]);
                }
                cpu_gradient[CLASSES * FEATURES + c] += g;
            }
        }
        let loss_check = compare(&[gpu_loss], &cpu.loss, Tolerance::CROSS_ENTROPY_LOSS);
        // A sum of 32 products of gradient entries (within 1e-6 + 1e-4 each) and pixels <= 1.
        let gradient_check = compare(&gpu_gradient, &cpu_gradient, Tolerance { atol: 3.2e-5, rtol: 1e-4 });
        println!(
            "first step vs the CPU reference: loss {gpu_loss:.6} (cpu {:.6}), dW and db {gradient_check}: {}",
            cpu.loss[0],
            if loss_check.passed() && gradient_check.passed() { "PASS" } else { "FAIL" }
        );
        if !(loss_check.passed() && gradient_check.passed()) {
            return Err(format!("the first step differs from the CPU reference: loss {loss_check}").into());
        }
        Ok(())
    }
}
