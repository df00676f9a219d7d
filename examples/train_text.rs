//! Trains a small next-token model on real text, the King James Version of the Bible
//! (`data/kjv.txt.gz`, public domain; see `data/README.md`), entirely on the GPU, with the
//! crate's fused linear cross-entropy embedded the way an application uses it.
//!
//! The model predicts each token from the two before it: two embedding tables `A` and `B`
//! (vocabulary x 32), `H = A[x[t-1]] + B[x[t-2]]`, logits `H W^T + b` over a vocabulary of
//! 8192 word-level tokens. A step takes 4352 positions, so its logits would be
//! 4352 x 8192 f32 = 136 MiB; `LinearCrossEntropy` computes the loss and `dH`, `dW`, `db`
//! through a bounded workspace and never stores them whole.
//!
//! The example owns its kernels (`train_text.wgsl`: the gather of `H`, the embedding
//! gradients, the SGD update) and all its buffers, and records the crate's op into its own
//! command encoder between its passes: one encoder and one submit per step, nothing read
//! back inside a step; each step's loss is copied into a buffer read once per epoch. The
//! first step is checked against the crate's f64 reference.
//!
//! Usage: `cargo run --release --example train_text [-- --epochs N | --quick]`
//! (`--quick`: the first batch for 2 epochs, for CI: the loss before the first step and after it).
#![allow(clippy::print_stdout)]
// a command-line example: printing is its job
// Sizes here are a few million at most: casts between them and u32/u64/f32/f64 are exact
// (the loss and memory figures printed as f32/f64 need no more).
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::cell::Cell;
use std::collections::HashMap;
use std::io::Read as _;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{SeededRng, compare};
use wgpu_softmax::{
    Context, LinearCrossEntropy, LinearCrossEntropyBuffers, LinearCrossEntropyInput, LinearPlan, LinearShape,
    Reduction, TargetBuffer, Targets, reference,
};

mod support;
use support::{Result, bind, exit_code, pass, pipelines, storage, uniform, zeros};

const CORPUS: &[u8] = include_bytes!("data/kjv.txt.gz");
/// Vocabulary: the `VOCAB - 1` most frequent tokens of the training text, and `<unk>`.
const VOCAB: usize = 8192;
/// Features of a hidden state (and of each embedding).
const HIDDEN: usize = 32;
/// Positions (next-token predictions) per step: 4352 x 8192 f32 logits = 136 MiB.
const BATCH: usize = 4352;
/// Bytes the logits of one step would take in f32.
const LOGITS_BYTES: u64 = (BATCH * VOCAB * 4) as u64;
/// Plain SGD on the mean loss: the gradient of an embedding row is its token's share of
/// the batch, so the rate is large (32 diverges).
const LEARNING_RATE: f32 = 8.0;
const EPOCHS: usize = 1;
const QUICK_EPOCHS: usize = 2;
const QUICK_BATCHES: usize = 1;
/// The last 5% of the corpus's tokens are held out.
const HELD_OUT_FRACTION: f64 = 0.05;
const SEED: u64 = 1611;
const UNKNOWN: &str = "<unk>";
/// The token that ends every line (verse or chapter heading).
const END_OF_LINE: &str = "<eol>";
const MIB: f64 = 1024.0 * 1024.0;

fn main() -> ExitCode {
    exit_code(run())
}

fn run() -> Result<()> {
    let mode = parse_mode()?;
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.describe());
    let corpus = Corpus::load()?;
    let (train_batches, held_out_batches) = (corpus.train_batches(), corpus.held_out_batches());
    println!(
        "corpus: the King James Bible, {} lines, {} tokens; vocabulary: the {} most frequent of the training text's {} distinct tokens and {UNKNOWN}, covering {:.2}% of the corpus",
        corpus.lines,
        corpus.tokens.len(),
        VOCAB - 1,
        corpus.distinct,
        100.0 * corpus.known_fraction
    );
    println!(
        "batches of {BATCH} positions: {} for training, {} held out (the last {:.0}% of the text)",
        train_batches.len(),
        held_out_batches.len(),
        100.0 * HELD_OUT_FRACTION
    );
    // --quick: the first few batches, and no held-out figure (its forward passes over the
    // held-out batches would take longer than the training).
    let (train_batches, held_out_batches) = match mode.batches {
        Some(n) => (&train_batches[..n.min(train_batches.len())], &held_out_batches[..0]),
        None => (&train_batches[..], &held_out_batches[..]),
    };
    println!(
        "model: H = A[x(t-1)] + B[x(t-2)] ({HIDDEN} features), logits H W^T + b over {VOCAB} tokens; \
         a step's logits would be {BATCH} x {VOCAB} f32 = {:.1} MiB, never stored",
        LOGITS_BYTES as f64 / MIB
    );
    println!(
        "a model of token frequencies alone (the bias's starting value) has a loss of {:.4} on the training text",
        corpus.unigram_loss
    );

    let mut rng = SeededRng::new(SEED);
    let parameters = Parameters::new(&corpus, &mut rng);
    let model = Model::new(&ctx, &corpus, &parameters, train_batches.len().max(held_out_batches.len()));
    // The starting parameters, kept on the host until the first step is checked.
    let mut starting = Some(parameters);
    let mut peak_before_check = None;

    let steps = mode.epochs * train_batches.len();
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} [{elapsed} < {eta}]")?);
    let started = Instant::now();
    let mut check_seconds = 0.0;
    let mut epoch_losses = Vec::with_capacity(mode.epochs);
    for epoch in 1..=mode.epochs {
        bar.set_message(format!("epoch {epoch}/{}", mode.epochs));
        let order = shuffled(train_batches, &mut rng);
        let mut done = 0;
        if let Some(parameters) = starting.take() {
            // The first step, then a check of what it computed (the update leaves the loss
            // and the gradients in their buffers) against the reference.
            model.train_steps(&ctx, &corpus, &order[..1], 0, &bar)?;
            peak_before_check = resident_bytes("VmHWM");
            let check_started = Instant::now();
            bar.suspend(|| model.check_first_step(&ctx, &corpus, &parameters, order[0]))?;
            check_seconds = check_started.elapsed().as_secs_f64();
            done = 1;
        }
        model.train_steps(&ctx, &corpus, &order[done..], done, &bar)?;
        let train_loss = model.read_losses(&ctx, order.len())?;
        if !train_loss.is_finite() {
            return Err(format!("epoch {epoch}: the training loss is {train_loss}; training diverged").into());
        }
        epoch_losses.push(train_loss);
        let held_out = if held_out_batches.is_empty() {
            String::new()
        } else {
            let loss = model.evaluate(&ctx, held_out_batches)?;
            format!(" | held-out loss {loss:.4}")
        };
        bar.suspend(|| println!("epoch {epoch}/{}: train loss {train_loss:.4}{held_out}", mode.epochs));
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64() - check_seconds;
    println!(
        "trained {} epochs, {steps} steps, in {seconds:.1} s ({:.2} s a step{}), besides {check_seconds:.1} s for the check",
        mode.epochs,
        seconds / steps as f64,
        if held_out_batches.is_empty() { "" } else { ", held-out evaluation included" }
    );

    report_memory(&ctx, &model, peak_before_check);
    let (Some(first), Some(last)) = (epoch_losses.first(), epoch_losses.last()) else {
        return Err("no epoch was run".into());
    };
    println!("loss: first epoch {first:.4}, last epoch {last:.4}");
    Ok(())
}

/// Prints the GPU memory the example and the op allocated, against the logits' size, and
/// the process's resident memory where the system reports it.
fn report_memory(ctx: &Context, model: &Model, peak_before_check: Option<u64>) {
    let own = model.buffer_bytes();
    let scratch = ctx.largest_scratch_bytes();
    println!(
        "GPU memory: the example's buffers {:.1} MiB + the op's largest buffer {:.1} MiB (a workspace of {} rows x {VOCAB} logits) = {:.1} MiB, \
         against {:.1} MiB for one step's logits alone",
        own as f64 / MIB,
        scratch as f64 / MIB,
        model.plan.get().map_or(0, |plan| plan.window_rows),
        (own + scratch) as f64 / MIB,
        LOGITS_BYTES as f64 / MIB
    );
    match (resident_bytes("VmHWM"), peak_before_check, resident_bytes("VmRSS")) {
        (Some(peak), Some(before), Some(now)) => println!(
            "peak resident memory (VmHWM): {:.1} MiB; {:.1} MiB before the check of the first step \
             (its f64 reference holds the whole logits, and more, in host memory); {:.1} MiB resident at the end",
            peak as f64 / MIB,
            before as f64 / MIB,
            now as f64 / MIB
        ),
        _ => println!("peak resident memory: not available (no VmHWM in /proc/self/status on this system)"),
    }
}

/// How much to train: epochs, and the number of training batches when not all of them.
struct Mode {
    epochs: usize,
    batches: Option<usize>,
}

fn parse_mode() -> Result<Mode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => Ok(Mode { epochs: EPOCHS, batches: None }),
        ["--quick"] => Ok(Mode { epochs: QUICK_EPOCHS, batches: Some(QUICK_BATCHES) }),
        ["--epochs", n] => match n.parse() {
            Ok(epochs) if epochs > 0 => Ok(Mode { epochs, batches: None }),
            _ => Err(format!("--epochs wants a positive number, got '{n}'").into()),
        },
        _ => Err("usage: train_text [--epochs N | --quick]".into()),
    }
}

/// Word-level tokens of `text`, lowercased: a maximal run of ASCII letters, a maximal run
/// of ASCII digits, or any other single character that is not whitespace (so "brother's"
/// is `brother`, `'`, `s`), and [`END_OF_LINE`] after every line.
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
        tokens.push(END_OF_LINE);
    }
    tokens
}

/// The corpus as token ids, with what the model needs from its statistics.
struct Corpus {
    lines: usize,
    /// Token ids of the whole text: 0 is `<unk>`, then the vocabulary by frequency.
    tokens: Vec<u32>,
    /// Where the held-out part starts.
    held_out_start: usize,
    /// Distinct tokens in the training part.
    distinct: usize,
    /// The fraction of the corpus's tokens that are in the vocabulary.
    known_fraction: f64,
    /// `ln` of each vocabulary entry's (add-one) frequency in the training part.
    log_frequency: Vec<f32>,
    /// The mean cross-entropy of the training targets under those frequencies alone.
    unigram_loss: f64,
}

impl Corpus {
    fn load() -> Result<Self> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(CORPUS).read_to_string(&mut text)?;
        let text = text.to_ascii_lowercase();
        let words = tokenize(&text);
        let held_out_start = words.len() - (words.len() as f64 * HELD_OUT_FRACTION).round() as usize;

        // The vocabulary, from the training part: by count, ties by the token's text.
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for &word in &words[..held_out_start] {
            *counts.entry(word).or_default() += 1;
        }
        let mut by_count: Vec<(&str, u64)> = counts.iter().map(|(&word, &count)| (word, count)).collect();
        by_count.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let ids: HashMap<&str, u32> =
            by_count.iter().take(VOCAB - 1).enumerate().map(|(i, &(word, _))| (word, i as u32 + 1)).collect();
        let tokens: Vec<u32> = words.iter().map(|word| ids.get(word).copied().unwrap_or(0)).collect();
        if held_out_start < 2 + BATCH || held_out_start + BATCH > tokens.len() {
            return Err("the corpus is too short for one training and one held-out batch".into());
        }

        let mut frequency = vec![0u64; VOCAB];
        for &id in &tokens[..held_out_start] {
            frequency[id as usize] += 1;
        }
        let total = (held_out_start + VOCAB) as f64;
        let log_frequency: Vec<f64> = frequency.iter().map(|&n| ((n + 1) as f64 / total).ln()).collect();
        let unigram_loss = -frequency.iter().zip(&log_frequency).map(|(&n, &l)| n as f64 * l).sum::<f64>()
            / held_out_start as f64;
        Ok(Self {
            lines: text.lines().count(),
            known_fraction: tokens.iter().filter(|&&id| id != 0).count() as f64 / tokens.len() as f64,
            tokens,
            held_out_start,
            distinct: counts.len(),
            log_frequency: log_frequency.iter().map(|&l| l as f32).collect(),
            unigram_loss,
        })
    }

    /// The first target position of each whole training batch (the first target is
    /// token 2, the first with two tokens before it).
    fn train_batches(&self) -> Vec<usize> {
        (2..=self.held_out_start - BATCH).step_by(BATCH).collect()
    }

    /// The first target position of each whole held-out batch.
    fn held_out_batches(&self) -> Vec<usize> {
        (self.held_out_start..=self.tokens.len() - BATCH).step_by(BATCH).collect()
    }

    /// The tokens of the batch starting at `first` that the rows of `table` (0: `A`, the
    /// token before; 1: `B`, the one before that) look up.
    fn context(&self, first: usize, table: usize) -> &[u32] {
        &self.tokens[first - 1 - table..first - 1 - table + BATCH]
    }
}

/// The rows of a batch grouped by token, for the deterministic embedding gradient: the
/// rows whose token is `v` are `rows[offsets[v]..offsets[v + 1]]`, in increasing order.
struct Grouping {
    offsets: Vec<u32>,
    rows: Vec<u32>,
}

impl Grouping {
    /// A counting sort of the rows by their token.
    fn new(keys: &[u32]) -> Self {
        let mut offsets = vec![0u32; VOCAB + 1];
        for &key in keys {
            offsets[key as usize + 1] += 1;
        }
        for v in 0..VOCAB {
            offsets[v + 1] += offsets[v];
        }
        let mut next = offsets.clone();
        let mut rows = vec![0u32; keys.len()];
        for (row, &key) in keys.iter().enumerate() {
            rows[next[key as usize] as usize] = row as u32;
            next[key as usize] += 1;
        }
        Self { offsets, rows }
    }
}

/// The batches in a new random order (Fisher-Yates).
fn shuffled(batches: &[usize], rng: &mut SeededRng) -> Vec<usize> {
    let mut order = batches.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
}

/// The starting parameters, on the host: small random embeddings and classifier, the bias
/// at the log frequencies (so that training starts from a model of frequencies).
struct Parameters {
    table_a: Vec<f32>,
    table_b: Vec<f32>,
    classifier: Vec<f32>,
    bias: Vec<f32>,
}

impl Parameters {
    fn new(corpus: &Corpus, rng: &mut SeededRng) -> Self {
        let mut table = |scale: f32| (0..VOCAB * HIDDEN).map(|_| rng.uniform(-scale, scale)).collect();
        Self {
            table_a: table(0.5),
            table_b: table(0.5),
            classifier: table(0.1),
            bias: corpus.log_frequency.clone(),
        }
    }
}

/// The step parameters, laid out as the WGSL `Step` struct.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Step {
    first: u32,
    rows: u32,
    hidden: u32,
    vocab: u32,
    learning_rate: f32,
    padding: [u32; 3],
}

impl Step {
    fn new(first: usize) -> Self {
        Self {
            first: first as u32,
            rows: BATCH as u32,
            hidden: HIDDEN as u32,
            vocab: VOCAB as u32,
            learning_rate: LEARNING_RATE,
            padding: [0; 3],
        }
    }
}

/// One table's grouping of the batch's rows on the GPU, and the bind group of the
/// embedding gradient over it.
struct GpuGrouping {
    offsets: wgpu::Buffer,
    rows: wgpu::Buffer,
    gradient: wgpu::BindGroup,
}

/// The model's buffers and the example's pipelines.
struct Model {
    gather: wgpu::ComputePipeline,
    embedding_gradient: wgpu::ComputePipeline,
    update: wgpu::ComputePipeline,
    step: wgpu::Buffer,
    tokens: wgpu::Buffer,
    table_a: wgpu::Buffer,
    table_b: wgpu::Buffer,
    classifier: wgpu::Buffer,
    bias: wgpu::Buffer,
    hidden: wgpu::Buffer,
    targets: wgpu::Buffer,
    loss: wgpu::Buffer,
    grad_hidden: wgpu::Buffer,
    grad_classifier: wgpu::Buffer,
    grad_bias: wgpu::Buffer,
    grad_a: wgpu::Buffer,
    grad_b: wgpu::Buffer,
    /// One loss per step of an epoch (or per held-out batch), read once at its end.
    losses: wgpu::Buffer,
    /// The groupings of the batch's rows for `A` and for `B`.
    groupings: [GpuGrouping; 2],
    gather_group: wgpu::BindGroup,
    /// `(bind group, elements)` of the update of `A`, `B`, `W` and `b`.
    update_groups: [(wgpu::BindGroup, usize); 4],
    /// The op's plan of windows, once it has been recorded.
    plan: Cell<Option<LinearPlan>>,
}

impl Model {
    fn new(ctx: &Context, corpus: &Corpus, parameters: &Parameters, loss_slots: usize) -> Self {
        let [gather, embedding_gradient, update] = pipelines(
            ctx,
            "train_text",
            include_str!("train_text.wgsl"),
            ["gather", "embedding_gradient", "sgd_update"],
        );
        let step = uniform(ctx, "step", &Step::new(2));
        let tokens = storage(ctx, "tokens", bytemuck::cast_slice(&corpus.tokens));
        let table_a = storage(ctx, "A", bytemuck::cast_slice(&parameters.table_a));
        let table_b = storage(ctx, "B", bytemuck::cast_slice(&parameters.table_b));
        let classifier = storage(ctx, "W", bytemuck::cast_slice(&parameters.classifier));
        let bias = storage(ctx, "b", bytemuck::cast_slice(&parameters.bias));
        let hidden = zeros(ctx, "H", BATCH * HIDDEN);
        let targets = zeros(ctx, "targets", BATCH);
        let loss = zeros(ctx, "loss", 1);
        let grad_hidden = zeros(ctx, "dH", BATCH * HIDDEN);
        let grad_classifier = zeros(ctx, "dW", VOCAB * HIDDEN);
        let grad_bias = zeros(ctx, "db", VOCAB);
        let grad_a = zeros(ctx, "dA", VOCAB * HIDDEN);
        let grad_b = zeros(ctx, "dB", VOCAB * HIDDEN);
        let losses = zeros(ctx, "losses", loss_slots);

        let grouping = |grad_table: &wgpu::Buffer, label: &str| {
            let offsets = zeros(ctx, label, VOCAB + 1);
            let rows = zeros(ctx, label, BATCH);
            let gradient = bind(
                ctx,
                &embedding_gradient,
                &[(0, &step), (6, &grad_hidden), (7, &offsets), (8, &rows), (9, grad_table)],
            );
            GpuGrouping { offsets, rows, gradient }
        };
        let groupings = [grouping(&grad_a, "rows of A by token"), grouping(&grad_b, "rows of B by token")];
        let gather_group = bind(
            ctx,
            &gather,
            &[(0, &step), (1, &tokens), (2, &table_a), (3, &table_b), (4, &hidden), (5, &targets)],
        );
        let sgd = |parameter: &wgpu::Buffer, gradient: &wgpu::Buffer, elements: usize| {
            (bind(ctx, &update, &[(0, &step), (10, parameter), (11, gradient)]), elements)
        };
        let update_groups = [
            sgd(&table_a, &grad_a, VOCAB * HIDDEN),
            sgd(&table_b, &grad_b, VOCAB * HIDDEN),
            sgd(&classifier, &grad_classifier, VOCAB * HIDDEN),
            sgd(&bias, &grad_bias, VOCAB),
        ];
        Self {
            gather,
            embedding_gradient,
            update,
            step,
            tokens,
            table_a,
            table_b,
            classifier,
            bias,
            hidden,
            targets,
            loss,
            grad_hidden,
            grad_classifier,
            grad_bias,
            grad_a,
            grad_b,
            losses,
            groupings,
            gather_group,
            update_groups,
            plan: Cell::new(None),
        }
    }

    /// Bytes of every buffer the example made.
    fn buffer_bytes(&self) -> u64 {
        let groupings = self.groupings.iter().flat_map(|g| [&g.offsets, &g.rows]);
        [
            &self.step,
            &self.tokens,
            &self.table_a,
            &self.table_b,
            &self.classifier,
            &self.bias,
            &self.hidden,
            &self.targets,
            &self.loss,
            &self.grad_hidden,
            &self.grad_classifier,
            &self.grad_bias,
            &self.grad_a,
            &self.grad_b,
            &self.losses,
        ]
        .into_iter()
        .chain(groupings)
        .map(wgpu::Buffer::size)
        .sum()
    }

    /// Uploads what the batch starting at `first` needs: its position, and the groupings
    /// of its rows by token for `A` and `B` (host data preparation, like the shuffle).
    fn upload_batch(&self, ctx: &Context, corpus: &Corpus, first: usize) {
        let queue = ctx.queue();
        queue.write_buffer(&self.step, 0, bytemuck::bytes_of(&Step::new(first)));
        for (table, gpu) in self.groupings.iter().enumerate() {
            let grouping = Grouping::new(corpus.context(first, table));
            queue.write_buffer(&gpu.offsets, 0, bytemuck::cast_slice(&grouping.offsets));
            queue.write_buffer(&gpu.rows, 0, bytemuck::cast_slice(&grouping.rows));
        }
    }

    /// The op as every step runs it: mean cross-entropy, with the gradients given buffers,
    /// through a 32 MiB workspace (a quarter of one step's logits).
    fn loss_op() -> LinearCrossEntropy {
        LinearCrossEntropy::new().reduction(Reduction::Mean).workspace_bytes(32 << 20)
    }

    /// Records the forward pass and the loss: the gather of `H` and the targets, then the
    /// crate's linear cross-entropy, writing `dH`, `dW` and `db` when `gradients`.
    fn record_loss(&self, ctx: &Context, encoder: &mut wgpu::CommandEncoder, gradients: bool) -> Result<()> {
        pass(encoder, &self.gather, &[(&self.gather_group, BATCH * HIDDEN)]);
        let mut buffers = LinearCrossEntropyBuffers::new(
            &self.hidden,
            &self.classifier,
            TargetBuffer::U32((&self.targets).into()),
            &self.loss,
        )
        .with_bias(&self.bias);
        if gradients {
            buffers = buffers
                .with_grad_hidden(&self.grad_hidden)
                .with_grad_classifier(&self.grad_classifier)
                .with_grad_bias(&self.grad_bias);
        }
        let plan = Self::loss_op().encode(ctx, encoder, &buffers, LinearShape::new(BATCH, HIDDEN, VOCAB))?;
        self.plan.set(Some(plan));
        Ok(())
    }

    /// Records one SGD step over the uploaded batch: forward, loss and gradients, the
    /// embedding gradients, the update, and the copy of the loss into slot `slot`.
    fn record_step(&self, ctx: &Context, encoder: &mut wgpu::CommandEncoder, slot: usize) -> Result<()> {
        self.record_loss(ctx, encoder, true)?;
        let groups: Vec<_> = self.groupings.iter().map(|g| (&g.gradient, VOCAB * HIDDEN)).collect();
        pass(encoder, &self.embedding_gradient, &groups);
        let groups: Vec<_> = self.update_groups.iter().map(|(group, elements)| (group, *elements)).collect();
        pass(encoder, &self.update, &groups);
        encoder.copy_buffer_to_buffer(&self.loss, 0, &self.losses, 4 * slot as u64, 4);
        Ok(())
    }

    /// SGD steps over `batches` in their given order, their losses into the slots from
    /// `first_slot` on: one encoder and one submit per step, each waited for within the
    /// context's timeout; nothing read back.
    fn train_steps(
        &self,
        ctx: &Context,
        corpus: &Corpus,
        batches: &[usize],
        first_slot: usize,
        bar: &ProgressBar,
    ) -> Result<()> {
        for (slot, &first) in (first_slot..).zip(batches) {
            self.upload_batch(ctx, corpus, first);
            let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            self.record_step(ctx, &mut encoder, slot)?;
            ctx.submit_and_wait(encoder)?;
            bar.inc(1);
        }
        Ok(())
    }

    /// The mean of the first `steps` losses recorded, read back at once.
    fn read_losses(&self, ctx: &Context, steps: usize) -> Result<f64> {
        mean(&ctx.download(&self.losses, steps)?)
    }

    /// The mean loss over `batches`, without gradients: one submit per batch, the losses
    /// read back once.
    fn evaluate(&self, ctx: &Context, batches: &[usize]) -> Result<f64> {
        for (slot, &first) in batches.iter().enumerate() {
            ctx.queue().write_buffer(&self.step, 0, bytemuck::bytes_of(&Step::new(first)));
            let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            self.record_loss(ctx, &mut encoder, false)?;
            encoder.copy_buffer_to_buffer(&self.loss, 0, &self.losses, 4 * slot as u64, 4);
            ctx.submit_and_wait(encoder)?;
        }
        self.read_losses(ctx, batches.len())
    }

    /// Checks the step just run on the batch at `first` from the `starting` parameters:
    /// its loss, `dH`, `dW` and `db` against the crate's f64 reference over the same `H`
    /// (built on the host), and the example's `dA`, `dB` against the same in-order sums of
    /// the GPU's `dH` on the host. The update leaves all of them in their buffers.
    fn check_first_step(
        &self,
        ctx: &Context,
        corpus: &Corpus,
        starting: &Parameters,
        first: usize,
    ) -> Result<()> {
        let gpu_loss = ctx.download(&self.loss, 1)?;
        let gpu_hidden = ctx.download(&self.grad_hidden, BATCH * HIDDEN)?;
        let gpu_classifier = ctx.download(&self.grad_classifier, VOCAB * HIDDEN)?;
        let gpu_bias = ctx.download(&self.grad_bias, VOCAB)?;
        let gpu_table_a = ctx.download(&self.grad_a, VOCAB * HIDDEN)?;
        let gpu_table_b = ctx.download(&self.grad_b, VOCAB * HIDDEN)?;

        let started = Instant::now();
        let (before, before_that) = (corpus.context(first, 0), corpus.context(first, 1));
        let hidden: Vec<f32> = (0..BATCH * HIDDEN)
            .map(|i| {
                let (row, d) = (i / HIDDEN, i % HIDDEN);
                starting.table_a[before[row] as usize * HIDDEN + d]
                    + starting.table_b[before_that[row] as usize * HIDDEN + d]
            })
            .collect();
        let targets = &corpus.tokens[first..first + BATCH];
        let input = LinearCrossEntropyInput::new(
            &hidden,
            &starting.classifier,
            LinearShape::new(BATCH, HIDDEN, VOCAB),
            Targets::U32(targets),
        )
        .bias(&starting.bias);
        let cpu = reference::linear_cross_entropy(&Self::loss_op(), &input)?;
        let missing = "the reference gave no gradient";
        let grad = Tolerance::LINEAR_CROSS_ENTROPY_GRAD;
        // The example's own gradient pass against the same f32 sums, in the same order, on
        // the host: they agree to rounding (the tolerance only allows for a compiler's
        // reassociation).
        let own = Tolerance { atol: 1e-9, rtol: 1e-5 };
        let checks = [
            ("loss", compare(&gpu_loss, &cpu.loss, Tolerance::LINEAR_CROSS_ENTROPY_LOSS)),
            ("dH", compare(&gpu_hidden, &cpu.grad_hidden.ok_or(missing)?, grad)),
            ("dW", compare(&gpu_classifier, &cpu.grad_classifier.ok_or(missing)?, grad)),
            ("db", compare(&gpu_bias, &cpu.grad_bias.ok_or(missing)?, grad)),
            ("dA", compare(&gpu_table_a, &summed_by_token(before, &gpu_hidden), own)),
            ("dB", compare(&gpu_table_b, &summed_by_token(before_that, &gpu_hidden), own)),
        ];
        let seconds = started.elapsed().as_secs_f64();

        let passed = checks.iter().all(|(_, c)| c.passed());
        let plan = self.plan.get().ok_or("the op was not recorded")?;
        println!(
            "first step vs the f64 reference ({} windows of up to {} rows; {seconds:.1} s on the CPU): loss {:.6} (reference {:.6}); max abs error {}: {}",
            plan.windows,
            plan.window_rows,
            gpu_loss[0],
            cpu.loss[0],
            checks
                .iter()
                .skip(1)
                .map(|(name, c)| format!("{name} {:.1e}", c.max_abs_error))
                .collect::<Vec<_>>()
                .join(", "),
            if passed { "PASS" } else { "FAIL" }
        );
        if !passed {
            let failures: Vec<String> = checks
                .iter()
                .filter(|(_, c)| !c.passed())
                .map(|(name, c)| format!("\n  {name}: {c}"))
                .collect();
            return Err(format!("the first step differs from the f64 reference:{}", failures.concat()).into());
        }
        Ok(())
    }
}

/// The rows of `grad_hidden` summed by the token `keys` gives each row, in f32 and in
/// increasing row order: what the embedding gradient kernel computes.
fn summed_by_token(keys: &[u32], grad_hidden: &[f32]) -> Vec<f64> {
    let grouping = Grouping::new(keys);
    (0..VOCAB * HIDDEN)
        .map(|i| {
            let (v, d) = (i / HIDDEN, i % HIDDEN);
            let rows = &grouping.rows[grouping.offsets[v] as usize..grouping.offsets[v + 1] as usize];
            f64::from(rows.iter().fold(0.0f32, |sum, &row| sum + grad_hidden[row as usize * HIDDEN + d]))
        })
        .collect()
}

/// The mean of a list of losses, in f64.
fn mean(values: &[f32]) -> Result<f64> {
    if values.is_empty() {
        return Err("no losses to average".into());
    }
    Ok(values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64)
}

/// A memory figure of the process from `/proc/self/status` (`VmHWM`: peak resident,
/// `VmRSS`: resident now), where the system has it (Linux).
fn resident_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    let kib: u64 = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}
