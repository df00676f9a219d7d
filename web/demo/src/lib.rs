//! The browser demo: trains the softmax-regression digits classifier of
//! `examples/train_digits.rs` on the page's WebGPU adapter, with the same kernels (the
//! example's `train_digits.wgsl` for the linear layer and SGD, this crate's fused
//! cross-entropy for the loss and its gradient), the same data (shipped inside the wasm
//! module) and the same split and shuffles. Loss and accuracy are plotted per epoch as it
//! trains; the page ends on `test accuracy: 0.XXXX` in `#result`, or on a message in
//! `#error` (no WebGPU, or anything that failed).
//!
//! Nothing blocks: every step is submitted, and the host reads results back only through
//! the library's async API, once per evaluation.
#![cfg(target_arch = "wasm32")]
// Sizes here are a few thousand at most: casts between them and u32/f32 are exact.
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::fmt::Write as _;
use std::io::Read as _;

use wasm_bindgen::prelude::wasm_bindgen;
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{SeededRng, compare};
use wgpu_softmax::{
    Context, CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, CrossEntropyStatus, Gradient,
    STATUS_WORDS, Shape, TargetBuffer, Targets, reference, wgpu,
};

// The example's wgpu plumbing (its own buffers, pipelines and passes), shared as is.
#[allow(dead_code, unreachable_pub, clippy::pedantic)]
#[path = "../../../examples/support/mod.rs"]
mod support;
use support::{bind, pass, pipelines, storage, uniform, zeros};

const DATA: &[u8] = include_bytes!("../../../examples/data/digits.csv.gz");
const FEATURES: usize = 64;
const CLASSES: usize = 10;
const BATCH: usize = 32;
const LEARNING_RATE: f32 = 0.5;
const EPOCHS: usize = 30;
const SEED: u64 = 1797;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The page's entry point: runs the demo, and shows its failure, if any, in `#error`.
#[wasm_bindgen(start)]
pub fn start() {
    wasm_bindgen_futures::spawn_local(async {
        if let Err(error) = run().await {
            show_error(&error.to_string());
        }
    });
}

async fn run() -> Result<()> {
    set_text("status", "asking the browser for its WebGPU adapter…");
    let ctx = Context::new_async().await?;
    set_text("device", &format!("wgpu-softmax's context: {}", ctx.describe()));
    let (train, test) = load_digits()?.split(0.2, SEED);
    set_text(
        "data",
        &format!(
            "data: {} training and {} test images of {FEATURES} pixels, {CLASSES} classes",
            train.rows, test.rows
        ),
    );

    let mut rng = SeededRng::new(SEED);
    let started = now_ms();
    let model = Model::new(&ctx, &train, &test, &mut rng);
    set_text("status", "compiling the kernels and checking the first step against the f64 reference…");
    let check = model.check_first_step(&ctx, &train).await?;
    set_text("check", &check);

    let mut history: Vec<[f32; 4]> = Vec::new();
    for epoch in 1..=EPOCHS {
        model.train_epoch(&ctx, &train, &mut rng)?;
        let (train_loss, train_accuracy) = model.evaluate(&ctx, Split::Train).await?;
        let (test_loss, test_accuracy) = model.evaluate(&ctx, Split::Test).await?;
        history.push([train_loss, test_loss, train_accuracy, test_accuracy]);
        set_text(
            "status",
            &format!(
                "epoch {epoch}/{EPOCHS}: train loss {train_loss:.4} accuracy {train_accuracy:.4} | test loss {test_loss:.4} accuracy {test_accuracy:.4}"
            ),
        );
        set_html("chart", &chart(&history));
    }
    let seconds = (now_ms() - started) / 1e3;
    let accuracy = history.last().map_or(0.0, |h| h[3]);
    set_text("status", &format!("trained {EPOCHS} epochs in {seconds:.1} s"));
    set_text("result", &format!("test accuracy: {accuracy:.4}"));
    Ok(())
}

fn document() -> Option<web_sys::Document> {
    web_sys::window()?.document()
}

fn set_text(id: &str, text: &str) {
    if let Some(element) = document().and_then(|d| d.get_element_by_id(id)) {
        element.set_text_content(Some(text));
    }
}

fn set_html(id: &str, html: &str) {
    if let Some(element) = document().and_then(|d| d.get_element_by_id(id)) {
        element.set_inner_html(html);
    }
}

fn show_error(message: &str) {
    web_sys::console::error_1(&message.into());
    set_text("status", "stopped.");
    set_text("error", message);
}

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

/// An SVG chart of the history: losses (left axis, from 0 to the largest) and accuracies
/// (right axis, 0 to 1) per epoch, train dashed and test solid.
fn chart(history: &[[f32; 4]]) -> String {
    let (width, height, left, right, top, bottom) = (660.0, 300.0, 50.0, 80.0, 20.0, 44.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max_loss = history.iter().flat_map(|h| [h[0], h[1]]).fold(0.0f32, f32::max).max(1e-3);
    let x = |epoch: usize| left + plot_w * (epoch as f32 + 1.0) / EPOCHS as f32;
    let y = |value: f32, max: f32| top + plot_h * (1.0 - value / max);
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='{width}' height='{height}' font-family='sans-serif' font-size='12'>"
    );
    let _ = write!(
        svg,
        "<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' fill='none' stroke='#999'/>\
         <text x='{}' y='{}' text-anchor='end'>epoch</text>\
         <text x='4' y='{}' fill='#c0392b'>loss</text><text x='4' y='{}' fill='#c0392b'>{max_loss:.2}</text>\
         <text x='{}' y='{}' fill='#2471a3'>accuracy</text><text x='{}' y='{}' fill='#2471a3'>1.0</text>",
        width - right,
        height - 10.0,
        top + plot_h / 2.0,
        top + 10.0,
        width - right + 4.0,
        top + plot_h / 2.0,
        width - right + 4.0,
        top + 10.0,
    );
    for (index, (color, dash, max)) in [
        ("#c0392b", "4 3", max_loss),
        ("#c0392b", "", max_loss),
        ("#2471a3", "4 3", 1.0),
        ("#2471a3", "", 1.0),
    ]
    .into_iter()
    .enumerate()
    {
        let points: Vec<String> =
            history.iter().enumerate().map(|(e, h)| format!("{:.1},{:.1}", x(e), y(h[index], max))).collect();
        let _ = write!(
            svg,
            "<polyline fill='none' stroke='{color}' stroke-width='2' stroke-dasharray='{dash}' points='{}'/>",
            points.join(" ")
        );
    }
    let _ = write!(
        svg,
        "<text x='{left}' y='{}'>— test, - - train; red loss, blue accuracy; {} of {EPOCHS} epochs</text></svg>",
        height - 24.0,
        history.len()
    );
    svg
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
    /// A fixed-seed shuffle split into (train, test), as the native example splits.
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
    train_eval: GpuSet,
    test: GpuSet,
    gradient_group: wgpu::BindGroup,
    update_group: wgpu::BindGroup,
}

impl Model {
    fn new(ctx: &Context, train: &Dataset, test: &Dataset, rng: &mut SeededRng) -> Self {
        let [forward, gradient, update] = pipelines(
            ctx,
            "train_digits",
            include_str!("../../../examples/train_digits.wgsl"),
            ["linear_forward", "linear_weight_gradient", "sgd_update"],
        );
        let weight: Vec<f32> = (0..CLASSES * FEATURES).map(|_| rng.uniform(-0.01, 0.01)).collect();
        let weight = storage(ctx, "weight", bytemuck::cast_slice(&weight));
        let bias = storage(ctx, "bias", bytemuck::cast_slice(&[0.0f32; CLASSES]));
        let largest = train.rows.max(test.rows);
        let logits = zeros(ctx, "logits", largest * CLASSES);
        let batch_labels = zeros(ctx, "batch labels", largest);
        let weight_gradient = zeros(ctx, "weight gradient", (FEATURES + 1) * CLASSES);
        let loss = zeros(ctx, "loss", 1);
        let status = zeros(ctx, "status", STATUS_WORDS);

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
        Self {
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
        }
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

    /// One pass over the training set in a new random order: one submit per step, no wait.
    fn train_epoch(&self, ctx: &Context, train: &Dataset, rng: &mut SeededRng) -> Result<()> {
        ctx.queue().write_buffer(&self.train.order, 0, bytemuck::cast_slice(&permutation(train.rows, rng)));
        for offset in (0..train.rows).step_by(BATCH) {
            let rows = BATCH.min(train.rows - offset);
            ctx.queue().write_buffer(&self.train.step, 0, bytemuck::bytes_of(&Step::new(offset, rows)));
            let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            self.record_step(ctx, &mut encoder, rows)?;
            ctx.submit(encoder)?;
        }
        Ok(())
    }

    /// Mean loss and accuracy over a whole split: forward, then the cross-entropy with
    /// argmax and no gradient, read back once (awaited).
    async fn evaluate(&self, ctx: &Context, split: Split) -> Result<(f32, f32)> {
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
        ctx.submit(encoder)?;
        let loss = ctx.download_async(&self.loss, 1).await?[0];
        let status =
            CrossEntropyStatus::from_words(&ctx.download_u32_async(&self.status, STATUS_WORDS).await?);
        status.check()?;
        Ok((loss, status.correct as f32 / set.rows as f32))
    }

    /// Runs the first step and checks its loss and weight gradient against the same step
    /// on the CPU through the crate's f64 reference; the line to show, or the error.
    async fn check_first_step(&self, ctx: &Context, train: &Dataset) -> Result<String> {
        let weight = ctx.download_async(&self.weight, CLASSES * FEATURES).await?;
        let bias = ctx.download_async(&self.bias, CLASSES).await?;
        let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        self.record_step(ctx, &mut encoder, BATCH)?;
        ctx.submit(encoder)?;
        let gpu_loss = ctx.download_async(&self.loss, 1).await?[0];
        let gpu_gradient = ctx.download_async(&self.weight_gradient, (FEATURES + 1) * CLASSES).await?;

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
        let cpu = reference::cross_entropy(&CrossEntropy::new(), &input)?;
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
        if !(loss_check.passed() && gradient_check.passed()) {
            return Err(format!(
                "the first step differs from the f64 reference: loss {loss_check}; dW and db {gradient_check}"
            )
            .into());
        }
        Ok(format!(
            "first step vs the f64 reference: loss {gpu_loss:.6} (reference {:.6}), dW and db {gradient_check}: PASS",
            cpu.loss[0]
        ))
    }
}
