//! Trains a small next-token model written in Burn on the King James Bible (the data of
//! the root crate's `train_text` example), with the loss computed one of three ways:
//!
//! - `--loss burn`: Burn's `Linear` output layer and its `CrossEntropyLoss`;
//! - `--loss fused-ce`: Burn's `Linear` and this crate's fused `cross_entropy`;
//! - `--loss fused-linear`: this crate's `linear_cross_entropy` in place of the output
//!   layer and the loss (the `N x V` logits never stored whole).
//!
//! The model: an embedding of the previous token (vocabulary 8192, D 256), a hidden layer
//! (`relu(x W1 + b1)`, 256 x 256), an output layer to the vocabulary. Every variant starts
//! from the same seeded weights and sees the same seeded order of batches of 4096
//! positions; plain SGD on the mean loss.
//!
//! Usage: `cargo run --release -p wgpu-softmax-burn --example train_burn -- --loss
//! burn|fused-ce|fused-linear [--quick | --epochs N] [--steps N] [--profile]` (`--quick`: 3
//! steps of 512 positions, for CI; `--steps N` stops after N steps; `--profile` syncs after
//! each part of a step, the hidden layer, the output layer, the loss and the backward pass,
//! and prints their times). The last line reads
//! `train_burn: loss <variant>, median step <X> ms, final loss <L>`, where the final loss
//! is the mean loss over a held-out batch after training.
#![allow(clippy::print_stdout)]
// a command-line example: printing is its job
// Token counts and ids are far below 2^24: the casts between them and f32/f64 are exact.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::collections::HashMap;
use std::io::Read as _;
use std::process::ExitCode;
use std::time::Instant;

use burn::module::Param;
use burn::nn::Linear;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use wgpu_softmax::testing::SeededRng;
use wgpu_softmax_burn::{BurnDevice, CrossEntropyOptions, cross_entropy, linear_cross_entropy};

const CORPUS: &[u8] = include_bytes!("../../examples/data/kjv.txt.gz");
const VOCAB: usize = 8192;
const HIDDEN: usize = 256;
const BATCH: usize = 4096;
const QUICK_BATCH: usize = 512;
const QUICK_STEPS: usize = 3;
const EPOCHS: usize = 2;
const LEARNING_RATE: f32 = 0.5;
const HELD_OUT_FRACTION: f64 = 0.05;
const SEED: u64 = 2626;
/// The linear cross-entropy's workspace for windows of logits: 32 MiB (1024 rows of 8192).
const WORKSPACE_BYTES: u64 = 32 << 20;

type Error = Box<dyn std::error::Error>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Burn,
    FusedCe,
    FusedLinear,
}

impl Variant {
    const fn name(self) -> &'static str {
        match self {
            Self::Burn => "burn",
            Self::FusedCe => "fused-ce",
            Self::FusedLinear => "fused-linear",
        }
    }
}

struct Args {
    variant: Variant,
    batch: usize,
    epochs: usize,
    steps: Option<usize>,
    profile: bool,
}

fn parse_args() -> Result<Args, Error> {
    let mut args = Args { variant: Variant::Burn, batch: BATCH, epochs: EPOCHS, steps: None, profile: false };
    let mut variant = None;
    let mut it = std::env::args().skip(1);
    let usage =
        "usage: train_burn --loss burn|fused-ce|fused-linear [--quick | --epochs N] [--steps N] [--profile]";
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--loss" => {
                variant = Some(match it.next().as_deref() {
                    Some("burn") => Variant::Burn,
                    Some("fused-ce") => Variant::FusedCe,
                    Some("fused-linear") => Variant::FusedLinear,
                    other => return Err(format!("--loss {other:?}: {usage}").into()),
                });
            }
            "--quick" => {
                args.batch = QUICK_BATCH;
                args.steps = Some(QUICK_STEPS);
            }
            "--epochs" => args.epochs = it.next().ok_or(usage)?.parse()?,
            "--steps" => args.steps = Some(it.next().ok_or(usage)?.parse()?),
            "--profile" => args.profile = true,
            other => return Err(format!("unknown argument {other}: {usage}").into()),
        }
    }
    args.variant = variant.ok_or(usage)?;
    Ok(args)
}

/// Words, runs of digits and single other characters, and an end-of-line token.
fn tokenize(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(c) = rest.chars().next() {
            let run = |same: fn(&char) -> bool| rest.find(|c: char| !same(&c)).unwrap_or(rest.len());
            let len = if c.is_ascii_alphabetic() {
                run(char::is_ascii_alphabetic)
            } else if c.is_ascii_digit() {
                run(char::is_ascii_digit)
            } else {
                c.len_utf8()
            };
            if !c.is_whitespace() {
                tokens.push(&rest[..len]);
            }
            rest = &rest[len..];
        }
        tokens.push("<eol>");
    }
    tokens
}

/// The corpus as token ids (0: unknown; then the `VOCAB - 1` most frequent training
/// tokens), where the held-out part starts, and each token's log-frequency.
fn load_corpus() -> Result<(Vec<i64>, usize, Vec<f32>), Error> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(CORPUS).read_to_string(&mut text)?;
    let text = text.to_ascii_lowercase();
    let words = tokenize(&text);
    let held_out = words.len() - (words.len() as f64 * HELD_OUT_FRACTION).round() as usize;
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for &word in &words[..held_out] {
        *counts.entry(word).or_default() += 1;
    }
    let mut by_count: Vec<(&str, u64)> = counts.into_iter().collect();
    by_count.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let ids: HashMap<&str, i64> =
        by_count.iter().take(VOCAB - 1).enumerate().map(|(i, &(word, _))| (word, i as i64 + 1)).collect();
    let tokens: Vec<i64> = words.iter().map(|w| ids.get(w).copied().unwrap_or(0)).collect();
    let mut frequency = vec![1.0_f64; VOCAB];
    for &id in &tokens[..held_out] {
        frequency[id as usize] += 1.0;
    }
    let total: f64 = frequency.iter().sum();
    Ok((tokens, held_out, frequency.iter().map(|&n| (n / total).ln() as f32).collect()))
}

/// The parameters, as tensors that require gradients.
struct Model {
    embedding: Tensor<2>,
    w1: Tensor<2>,
    b1: Tensor<1>,
    /// The output layer's weight as Burn's `Linear` stores it, `[HIDDEN, VOCAB]`.
    w2: Tensor<2>,
    b2: Tensor<1>,
}

impl Model {
    fn new(rng: &mut SeededRng, log_frequency: &[f32], device: &Device) -> Self {
        let mut uniform =
            |len: usize, scale: f32| (0..len).map(|_| rng.uniform(-scale, scale)).collect::<Vec<f32>>();
        let k = 1.0 / (HIDDEN as f32).sqrt();
        let param = |values: Vec<f32>, shape: [usize; 2]| {
            Tensor::<2>::from_data(TensorData::new(values, shape), device).require_grad()
        };
        let embedding = param(uniform(VOCAB * HIDDEN, 1.0), [VOCAB, HIDDEN]);
        let w1 = param(uniform(HIDDEN * HIDDEN, k), [HIDDEN, HIDDEN]);
        let w2 = param(uniform(HIDDEN * VOCAB, k), [HIDDEN, VOCAB]);
        let b1 = Tensor::<1>::zeros([HIDDEN], device).require_grad();
        let b2 =
            Tensor::<1>::from_data(TensorData::new(log_frequency.to_vec(), [VOCAB]), device).require_grad();
        Self { embedding, w1, b1, w2, b2 }
    }

    /// The mean loss of predicting `targets` from `previous` tokens; with `profile`, the
    /// device synced after the hidden layer and after the output layer, and the parts timed.
    fn loss(
        &self,
        variant: Variant,
        previous: Tensor<1, Int>,
        targets: Tensor<1, Int>,
        profile: bool,
    ) -> Result<Tensor<1>, Error> {
        let mut started = Instant::now();
        let mut lap = |what: &str, device: &Device| -> Result<(), Error> {
            if profile {
                device.sync()?;
                println!("  {what} {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
                started = Instant::now();
            }
            Ok(())
        };
        let x = self.embedding.clone().select(0, previous);
        let h = activation::relu(x.matmul(self.w1.clone()) + self.b1.clone().unsqueeze::<2>());
        let device = h.device();
        lap("embedding and hidden layer", &device)?;
        let output = Linear {
            weight: Param::from_tensor(self.w2.clone()),
            bias: Some(Param::from_tensor(self.b2.clone())),
        };
        let logits = (variant != Variant::FusedLinear).then(|| output.forward(h.clone()));
        if logits.is_some() {
            lap("output layer (Burn's matmul)", &device)?;
        }
        let loss = match (variant, logits) {
            (Variant::Burn, Some(logits)) => {
                CrossEntropyLossConfig::new().init(&device).forward(logits, targets)
            }
            (Variant::FusedCe, Some(logits)) => cross_entropy(logits, targets, &CrossEntropyOptions::new())?,
            _ => linear_cross_entropy(
                h,
                self.w2.clone().transpose(),
                Some(self.b2.clone()),
                targets,
                &CrossEntropyOptions::new().workspace_bytes(WORKSPACE_BYTES),
            )?,
        };
        lap("loss", &device)?;
        Ok(loss)
    }

    /// One step of SGD; with `profile`, the device synced and the backward pass timed.
    fn update(self, loss: &Tensor<1>, profile: bool) -> Result<Self, Error> {
        let started = Instant::now();
        let grads = loss.backward();
        if profile {
            loss.device().sync()?;
            println!("  backward {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
        }
        fn step<const D: usize>(p: Tensor<D>, grads: &burn::tensor::Gradients) -> Result<Tensor<D>, Error> {
            let g = p.grad(grads).ok_or("a parameter got no gradient")?;
            Ok((p.inner() - g * LEARNING_RATE).autodiff().require_grad())
        }
        Ok(Self {
            embedding: step(self.embedding, &grads)?,
            w1: step(self.w1, &grads)?,
            b1: step(self.b1, &grads)?,
            w2: step(self.w2, &grads)?,
            b2: step(self.b2, &grads)?,
        })
    }
}

fn batch(tokens: &[i64], first: usize, size: usize, device: &Device) -> (Tensor<1, Int>, Tensor<1, Int>) {
    let int = |values: &[i64]| Tensor::<1, Int>::from_data(TensorData::new(values.to_vec(), [size]), device);
    (int(&tokens[first - 1..first - 1 + size]), int(&tokens[first..first + size]))
}

fn scalar(loss: Tensor<1>) -> Result<f32, Error> {
    let data = loss.inner().mean().into_data();
    Ok(data.iter::<f32>().next().ok_or("an empty loss")?)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("train_burn: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let args = parse_args()?;
    let shared = BurnDevice::new()?;
    let device = shared.autodiff();
    println!("adapter: {}", shared.context().describe());
    let (tokens, held_out, log_frequency) = load_corpus()?;
    let mut rng = SeededRng::new(SEED);
    let mut model = Model::new(&mut rng, &log_frequency, &device);
    let starts: Vec<usize> = (1..=held_out - args.batch).step_by(args.batch).collect();
    println!(
        "{} tokens, {} training batches of {} positions, vocabulary {VOCAB}, D {HIDDEN}, loss {}",
        tokens.len(),
        starts.len(),
        args.batch,
        args.variant.name()
    );
    let mut times = Vec::new();
    'training: for epoch in 0..args.epochs {
        let mut order = starts.clone();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for first in order {
            if args.steps.is_some_and(|steps| times.len() >= steps) {
                break 'training;
            }
            let started = Instant::now();
            let (previous, targets) = batch(&tokens, first, args.batch, &device);
            let loss = model.loss(args.variant, previous, targets, args.profile)?;
            model = model.update(&loss, args.profile)?;
            let value = scalar(loss)?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            times.push(ms);
            println!("epoch {epoch} step {}: loss {value:.4}, {ms:.0} ms", times.len());
        }
    }
    let (previous, targets) = batch(&tokens, held_out, args.batch, &shared.device());
    let eval = Model {
        embedding: model.embedding.inner(),
        w1: model.w1.inner(),
        b1: model.b1.inner(),
        w2: model.w2.inner(),
        b2: model.b2.inner(),
    };
    let final_loss = scalar(eval.loss(args.variant, previous, targets, false)?)?;
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "train_burn: loss {}, median step {median:.0} ms, final loss {final_loss:.4}",
        args.variant.name()
    );
    Ok(())
}
