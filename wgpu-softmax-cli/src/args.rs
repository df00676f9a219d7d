//! The command line.
// The doc comments below are the tool's --help text, which shows backticks literally.
#![allow(clippy::doc_markdown)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use wgpu_softmax::wgpu;
use wgpu_softmax::{Context, ContextOptions, Reduction};

use crate::error::CliError;

/// Softmax, log-softmax and softmax cross-entropy of `.npy` arrays on the GPU (wgpu), and
/// checks of the adapter's kernels against an f64 reference.
#[derive(Debug, Parser)]
#[command(name = "wgpu-softmax", version)]
pub struct Cli {
    /// The backend to look for adapters on (default: WGPU_BACKEND, else all).
    #[arg(long, global = true, value_enum)]
    pub backend: Option<Backend>,

    /// Use the first adapter whose name contains NAME, case-insensitively (default:
    /// WGPU_ADAPTER_NAME, else wgpu's choice).
    #[arg(long, global = true, value_name = "NAME")]
    pub adapter: Option<String>,

    /// After an op command, print on stderr what the planner chose for it on this device,
    /// the time of each stage (files against the GPU) and the peak memory.
    #[arg(long, short, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the adapters found, their features and limits, and the kernel strategy each
    /// would pick for a few shapes; with --json, print the selected adapter's profile (the
    /// format plan --profile reads).
    Info(InfoArgs),
    /// Explain what an op would dispatch for a shape on a device, without running it: on a
    /// device profile (--profile P.json: profiles/ holds some, info --json writes one), or
    /// on the selected adapter. Prints the strategy, workgroup size, rows per workgroup,
    /// lanes per row, elements each lane keeps in registers, how many times each input
    /// element is read from memory, and the dispatches; for the linear cross-entropy its
    /// tile, windows and workspace.
    Plan(PlanArgs),
    /// Check what the library ships against the f64 reference on fresh random data, one
    /// line per group: softmax and log-softmax, and their backward passes, on every
    /// strategy (SplitRow included) in f32, f16 and bf16, on rows of 10 and of 1499
    /// classes; the cross-entropy on every strategy with each reduction and target type
    /// (int64, int32, uint32, probabilities), class weights, ignore_index, label smoothing,
    /// z-loss, softcap and the logsumexp in f32, the defaults and the z-loss, softcap and
    /// logsumexp in f16 and bf16; each of those ops over axis 1 of a (2, 3, 4, 5) tensor
    /// (the cross-entropy in PyTorch's (N, C, d1, d2) layout) on every strategy in f32 and
    /// bf16; the linear cross-entropy at N = 6, D = 8, V = 45 with every gradient, a bias,
    /// weights and smoothing, and the loss alone with z-loss and softcap, in f32 and bf16;
    /// the distillation (temperature 2, masked rows) on every strategy in f32 and bf16;
    /// sampling (greedy, and temperature with top-k, top-p and min-p, each and together) of
    /// 8 x 1000 logits in f32 and bf16, every draw in its row's allowed set with its
    /// log-probability. Under 30 s on a software adapter. Exits non-zero on any failure.
    Check(CheckArgs),
    /// Softmax (or log-softmax) of an array over one axis (--dim; the last by default).
    Softmax(SoftmaxArgs),
    /// Softmax cross-entropy of logits (N, C, d1, ..., dk), (N, C) or (C,) with class-index
    /// or probability targets, as PyTorch's cross_entropy.
    CrossEntropy(CrossEntropyArgs),
    /// Fused linear cross-entropy: the cross-entropy of the logits H W^T + b of hidden
    /// states H (N, D) under a classifier W (V, D), and its gradients with respect to H, W
    /// and b, without the N x V logits ever stored whole.
    LinearCrossEntropy(LinearCrossEntropyArgs),
    /// Knowledge distillation from logits, fused: T^2 KL(softmax(teacher / T) ||
    /// softmax(student / T)) per row over the class axis (--dim; the last by default), as
    /// PyTorch's `kl_div(log_softmax(s / T), softmax(t / T), reduction='batchmean') * T^2`,
    /// and its gradient with respect to the student's logits.
    Distill(DistillArgs),
    /// Sample token ids from logits (N, V) on the GPU: temperature, top-k, top-p, min-p
    /// (in that order), seeded Philox draws, no sort.
    Sample(SampleArgs),
    /// Time every op on the benchmark shapes against a vec4 copy (the roofline), the
    /// unfused WGSL baseline and the CPU; print a table, optionally write JSON and SVG.
    Bench(BenchArgs),
}

/// `info`'s arguments.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print the selected adapter's profile as JSON instead: its identity, the limits and
    /// features the planner reads, and its subgroup sizes.
    #[arg(long)]
    pub json: bool,
}

/// `plan`'s arguments.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Plan on the device this profile describes (JSON, as info --json prints), instead of
    /// the selected adapter (--adapter, --backend, WGPU_*).
    #[arg(long, value_name = "P.json")]
    pub profile: Option<PathBuf>,
    /// The op.
    #[arg(long, value_enum)]
    pub op: PlanOp,
    /// Rows and classes, R,C; or O,C,I for a class axis of C with O positions before it and
    /// I after it (O x I rows, as `Shape::with_inner`); for linear_cross_entropy N,D,V
    /// (rows, hidden features, classes).
    #[arg(long, value_name = "R,C", value_parser = parse_dims)]
    pub shape: Dims,
    /// The storage type of the class-axis tensors (of H and W for linear_cross_entropy).
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// Print the explanation as JSON.
    #[arg(long)]
    pub json: bool,
    /// The reduction: cross_entropy and linear_cross_entropy take mean, sum or none
    /// (default mean); distill batchmean, sum or none (default batchmean).
    #[arg(long, value_enum)]
    pub reduction: Option<PlanReduction>,
    /// Where the gradient goes: separate (the default), in-place (cross_entropy only), or
    /// none. For distill and linear_cross_entropy, anything but none computes it (every
    /// gradient of the linear op).
    #[arg(long, value_enum, default_value_t = GradientArg::Separate)]
    pub gradient: GradientArg,
    /// cross_entropy: probability targets instead of int64 class indices.
    #[arg(long)]
    pub probabilities: bool,
    /// distill: int64 class targets mask rows.
    #[arg(long)]
    pub masked: bool,
    /// linear_cross_entropy: the classifier has a bias.
    #[arg(long)]
    pub bias: bool,
    /// linear_cross_entropy: the bound on the workspace, in bytes (default: the library's).
    #[arg(long, value_name = "BYTES")]
    pub workspace_bytes: Option<u64>,
    /// Force a strategy (row ops).
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyArg>,
    /// Plan kernels that keep (true) or do not keep (false) rows in registers, instead of
    /// the device's default (kept on GPUs, not on CPU adapters).
    #[arg(long, value_name = "BOOL")]
    pub cached_rows: Option<bool>,
    /// sample: the temperature (0 is greedy).
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    pub temperature: f32,
    /// sample: top-k (0 is off).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub top_k: u32,
    /// sample: top-p (1 is off).
    #[arg(long, value_name = "P", default_value_t = 1.0)]
    pub top_p: f32,
    /// sample: draws per row.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub num_samples: usize,
}

/// The ops `plan` explains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanOp {
    /// Softmax.
    #[value(name = "softmax")]
    Softmax,
    /// Log-softmax.
    #[value(name = "log_softmax", alias = "log-softmax")]
    LogSoftmax,
    /// The backward of softmax.
    #[value(name = "softmax_backward", alias = "softmax-backward")]
    SoftmaxBackward,
    /// The backward of log-softmax.
    #[value(name = "log_softmax_backward", alias = "log-softmax-backward")]
    LogSoftmaxBackward,
    /// The fused softmax cross-entropy.
    #[value(name = "cross_entropy", alias = "cross-entropy")]
    CrossEntropy,
    /// The distillation from logits.
    #[value(name = "distill")]
    Distill,
    /// The fused linear cross-entropy (--shape N,D,V).
    #[value(name = "linear_cross_entropy", alias = "linear-cross-entropy")]
    LinearCrossEntropy,
    /// Sampling token ids.
    #[value(name = "sample")]
    Sample,
}

/// `plan --reduction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanReduction {
    /// The mean (cross_entropy, linear_cross_entropy).
    Mean,
    /// The sum over rows divided by the rows counted (distill).
    Batchmean,
    /// The sum.
    Sum,
    /// One loss per row.
    None,
}

/// `plan --gradient`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GradientArg {
    /// Into a tensor of its own.
    Separate,
    /// Over the logits (cross_entropy).
    InPlace,
    /// No gradient.
    None,
}

/// `plan --strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// One invocation per row.
    Thread,
    /// A subgroup's lanes per row.
    Subgroup,
    /// A workgroup per row.
    Workgroup,
    /// A row split across workgroups.
    Split,
}

impl StrategyArg {
    pub const fn to_strategy(self) -> wgpu_softmax::Strategy {
        match self {
            Self::Thread => wgpu_softmax::Strategy::ThreadPerRow,
            Self::Subgroup => wgpu_softmax::Strategy::SubgroupPerRow,
            Self::Workgroup => wgpu_softmax::Strategy::WorkgroupPerRow,
            Self::Split => wgpu_softmax::Strategy::SplitRow,
        }
    }
}

/// Sizes given as `R,C` or `N,D,V`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dims(pub Vec<usize>);

/// Parses `R,C` or `N,D,V`: positive integers separated by commas.
fn parse_dims(text: &str) -> Result<Dims, String> {
    text.split(',')
        .map(|part| match part.trim().parse::<usize>() {
            Ok(value) if value > 0 => Ok(value),
            _ => Err(format!("{part:?} in {text:?} is not a positive integer; give R,C as 4096,32768")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Dims)
}

/// `bench`'s arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Fewer runs per measurement: under 2 minutes on lavapipe (2 cores), a few seconds on a GPU.
    #[arg(long)]
    pub quick: bool,
    /// Write the records as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw the roofline chart as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Measure nothing: read the records of an earlier run's --json FILE, print its table
    /// and (with --svg) redraw its chart.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["quick", "json", "linear"])]
    pub from_json: Option<PathBuf>,
    /// Measure the linear cross-entropy instead: forward plus backward against the unfused
    /// composition (matmul, cross-entropy, two gradient matmuls), time and peak GPU memory,
    /// at N = 4096, D = 256, V = 32768 and 50257 (with --quick: 512 x 64 x 8192).
    #[arg(long, conflicts_with = "svg")]
    pub linear: bool,
    /// Measure sampling instead: the fused sampler against a sort-based GPU composition
    /// and the logits copied to the CPU and sampled there, with top-k 50 + top-p 0.9 and
    /// top-p 0.9, at 1, 8, 64 and 256 rows of 32000, 128256 and 262144 tokens (with
    /// --quick: 1 and 8 rows of 32000), by wall clock.
    #[arg(long, conflicts_with_all = ["svg", "linear", "from_json"])]
    pub sample: bool,
    /// Measure the linear cross-entropy's matrix products instead: this crate's product
    /// kernel against Burn's matmul (CubeCL; built with the `burn` feature, else ours
    /// alone) at the products the op runs per window for N x D x V = 4096 x 256 x 32768 and
    /// 50257 and train_text's 4352 x 32 x 8192 (with --quick: train_text's and the first),
    /// in GFLOP/s by wall clock.
    #[arg(long, conflicts_with_all = ["svg", "linear", "sample", "from_json"])]
    pub matmul: bool,
    /// With --linear: this many timed runs per measurement and no warm-up (default: one
    /// warm-up, then 3 runs; 1 run with --quick). A software adapter needs minutes per run
    /// at the full sizes.
    #[arg(long, value_name = "N", requires = "linear", value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: Option<u32>,
    /// With --linear: the forward alone (the loss, no gradients): the fused op reduces each
    /// block of logits as it computes it, the unfused composition stores them all.
    #[arg(long, requires = "linear")]
    pub forward: bool,
    /// With --linear: measure this one shape, N,D,V (for example 1024,64,128256), instead
    /// of the suite's.
    #[arg(long, value_name = "N,D,V", requires = "linear", value_parser = parse_linear_shape)]
    pub shape: Option<(usize, usize, usize)>,
    /// Write the GPU report to DIR (report.md and report.json): every section in one run
    /// (the row ops in f32, bf16 and f16 from 10 to 262144 columns with their plans, the
    /// linear cross-entropy, sampling, the copy roofline) and PyTorch's times on the same
    /// shapes where it runs on CUDA here. With --quick: small shapes, about 30 s on lavapipe.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["json", "svg", "from_json", "linear", "sample"])]
    pub report: Option<PathBuf>,
    /// With --report: the smallest report that has every section (for tests).
    #[arg(long, hide = true, requires = "report")]
    pub tiny: bool,
}

/// Parses `N,D,V`: three positive integers.
fn parse_linear_shape(text: &str) -> Result<(usize, usize, usize), String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let parse = |part: &str| match part.parse::<usize>() {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(format!("{part:?} in {text:?} is not a positive integer; give N,D,V, as 1024,64,128256")),
    };
    match parts.as_slice() {
        [n, d, v] => Ok((parse(n)?, parse(d)?, parse(v)?)),
        _ => Err(format!("{text:?} is not N,D,V: give three positive integers, as 1024,64,128256")),
    }
}

/// `check`'s arguments.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Seed of the random inputs (default: from the clock; printed, to replay a run).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `softmax`'s arguments.
#[derive(Debug, Args)]
pub struct SoftmaxArgs {
    /// Input array, float16, float32 or float64, of any shape but 0-d.
    #[arg(long, value_name = "X.npy")]
    pub input: PathBuf,
    /// Output array, the input's shape: float16 when the storage type is f16 (--dtype, or
    /// a float16 input), else float32.
    #[arg(long, value_name = "Y.npy")]
    pub output: PathBuf,
    /// Log-softmax instead of softmax.
    #[arg(long)]
    pub log: bool,
    /// The axis to normalise over, as PyTorch's `dim`: 0 is the first, negative counts
    /// from the end (-1, the default, is the last). The output keeps the input's shape.
    #[arg(long, value_name = "K", default_value_t = -1, allow_negative_numbers = true)]
    pub dim: isize,
    /// The storage type on the GPU: the input is rounded to it, the output written in it
    /// (float16 as float16; bfloat16 as float32, which holds every bfloat16 exactly).
    /// Default: f16 for a float16 input, else f32.
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,
}

/// `--dtype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

/// `cross-entropy`'s arguments.
#[derive(Debug, Args)]
pub struct CrossEntropyArgs {
    /// Logits (N, C, d1, ..., dk) with the classes on axis 1, as PyTorch's cross_entropy
    /// takes them: (N, C), or (C,) for one sample; float16, float32 or float64.
    #[arg(long, value_name = "X.npy")]
    pub logits: PathBuf,
    /// Class indices (N, d1, ..., dk), or 0-d for (C,) logits, of any signed or unsigned
    /// integer type of 8 to 64 bits (int64, int32, uint8...); or probabilities of the
    /// logits' shape as float16, float32 or float64.
    #[arg(long, value_name = "T.npy")]
    pub targets: PathBuf,
    /// Output: the loss, float32, 0-d for mean and sum, the class targets' shape
    /// (N, d1, ..., dk) for none.
    #[arg(long, value_name = "L.npy")]
    pub loss: PathBuf,
    /// Output: the gradient of the reduced loss with respect to the logits, the logits'
    /// shape, in the storage type (float16 for f16, else float32); for none, of the sum of
    /// the losses.
    #[arg(long, value_name = "G.npy")]
    pub grad: Option<PathBuf>,
    /// Output: the logsumexp over the classes of the (softcapped) logits, float32, the class
    /// targets' shape (N, d1, ..., dk), ignored positions included.
    #[arg(long, value_name = "F.npy")]
    pub lse: Option<PathBuf>,
    /// The loss's options.
    #[command(flatten)]
    pub options: LossArgs,
}

/// `linear-cross-entropy`'s arguments.
#[derive(Debug, Args)]
pub struct LinearCrossEntropyArgs {
    /// Hidden states H (N, D), float32, float64 or float16.
    #[arg(long, value_name = "H.npy")]
    pub hidden: PathBuf,
    /// Classifier W (V, D), float32, float64 or float16.
    #[arg(long, value_name = "W.npy")]
    pub classifier: PathBuf,
    /// Bias b (V,), float32, float64 or float16.
    #[arg(long, value_name = "b.npy")]
    pub bias: Option<PathBuf>,
    /// Class indices (N,), of any signed or unsigned integer type of 8 to 64 bits.
    #[arg(long, value_name = "T.npy")]
    pub targets: PathBuf,
    /// Output: the loss, float32, 0-d for mean and sum, (N,) for none.
    #[arg(long, value_name = "L.npy")]
    pub loss: PathBuf,
    /// Output: the logsumexp of each row's (softcapped) logits, float32, (N,).
    #[arg(long, value_name = "F.npy")]
    pub lse: Option<PathBuf>,
    /// Output: the gradient of the reduced loss with respect to H, (N, D), in the storage
    /// type; for none, of the sum of the losses.
    #[arg(long, value_name = "F.npy")]
    pub grad_hidden: Option<PathBuf>,
    /// Output: the gradient with respect to W, (V, D), in the storage type.
    #[arg(long, value_name = "F.npy")]
    pub grad_classifier: Option<PathBuf>,
    /// Output: the gradient with respect to b, (V,), in the storage type (needs --bias).
    #[arg(long, value_name = "F.npy")]
    pub grad_bias: Option<PathBuf>,
    /// The most bytes of logits held at once (the workspace, f32): rows are taken in
    /// windows that fit, each a multiple of the rows the device can bind from (64 under
    /// the usual 256-byte alignment); a bound too small for that many rows is refused,
    /// with the bytes it needs. Default: 256 MiB, or the device's largest storage binding
    /// where that is smaller.
    #[arg(long, value_name = "BYTES")]
    pub workspace_bytes: Option<u64>,
    /// The loss's options.
    #[command(flatten)]
    pub options: LossArgs,
}

/// `distill`'s arguments.
#[derive(Debug, Args)]
pub struct DistillArgs {
    /// The student's logits, any shape with a class axis (--dim); float16, float32 or
    /// float64.
    #[arg(long, value_name = "S.npy")]
    pub student: PathBuf,
    /// The teacher's logits, the student's shape.
    #[arg(long, value_name = "T.npy")]
    pub teacher: PathBuf,
    /// Output: the loss, float32: 0-d for batchmean and sum, the logits' shape without the
    /// class axis for none.
    #[arg(long, value_name = "L.npy")]
    pub loss: PathBuf,
    /// Output: the gradient of the reduced loss with respect to the student's logits, their
    /// shape, in the storage type (float16 for f16, else float32); for none, of the sum of
    /// the losses.
    #[arg(long, value_name = "G.npy")]
    pub grad: Option<PathBuf>,
    /// The temperature T > 0: both logits are divided by it, and the loss multiplied by
    /// T^2.
    #[arg(long, value_name = "T", default_value_t = 1.0, allow_negative_numbers = true)]
    pub temperature: f32,
    /// How the losses of the rows are reduced: batchmean divides their sum by the rows
    /// counted (every row, or those --targets does not mask).
    #[arg(long, value_enum, default_value_t = DistillReductionArg::Batchmean)]
    pub reduction: DistillReductionArg,
    /// The class axis (negative from the end).
    #[arg(long, value_name = "D", default_value_t = -1, allow_negative_numbers = true)]
    pub dim: isize,
    /// Optional class targets masking rows, integers, one per row (the logits' shape
    /// without the class axis): rows equal to --ignore-index count for nothing.
    #[arg(long, value_name = "Y.npy")]
    pub targets: Option<PathBuf>,
    /// The class target whose rows --targets masks.
    #[arg(long, value_name = "I", default_value_t = -100, allow_negative_numbers = true)]
    pub ignore_index: i64,
    /// The storage type of the logits and the gradient on the GPU: inputs are rounded to
    /// it, the gradient written in it (float16 as float16; bfloat16 as float32, which holds
    /// every bfloat16 exactly); the loss is float32. Default: f16 for float16 logits, else
    /// f32.
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,
}

/// `sample`'s arguments.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// The logits (N, V) (or (V,), one row), the class axis last, or any shape with
    /// --dim; float16, float32 or float64.
    #[arg(long, value_name = "L.npy")]
    pub logits: PathBuf,
    /// Output: the token ids, int64: the logits' shape without the class axis ((N,) for
    /// (N, V) logits, (1,) for (V,)), with a last axis of K with --num-samples. Logits
    /// with a row that holds a NaN or +inf, or no finite logit, are refused, naming the row.
    #[arg(long, value_name = "IDS.npy")]
    pub output: PathBuf,
    /// The class axis, as PyTorch's `dim`: 0 is the first, negative counts from the end
    /// (-1, the default, is the last). The rows are every position off it, in C order (N
    /// below: their count).
    #[arg(long, value_name = "D", default_value_t = -1, allow_negative_numbers = true)]
    pub dim: isize,
    /// Draws per row.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub num_samples: Option<u32>,
    /// The logits are divided by T; 0 draws the argmax (lowest index on ties).
    #[arg(long, value_name = "T", default_value_t = 1.0, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Keep the K most probable tokens (and ties with the K-th); 0 is off.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub top_k: u32,
    /// Keep the smallest set of most probable tokens whose mass reaches P (after top-k), in
    /// (0, 1]; 1 is off.
    #[arg(long, value_name = "P", default_value_t = 1.0, allow_negative_numbers = true)]
    pub top_p: f32,
    /// Keep the tokens of probability at least M times the largest, in [0, 1]; 0 is off.
    #[arg(long, value_name = "M", default_value_t = 0.0, allow_negative_numbers = true)]
    pub min_p: f32,
    /// Each row's temperature, float32 or float64 of shape (N,) (or the ids' shape without
    /// K), in place of --temperature.
    #[arg(long, value_name = "T.npy")]
    pub temperature_per_row: Option<PathBuf>,
    /// Each row's top-k, an integer array (int64, int32...) of shape (N,) (or the ids'
    /// shape without K), in place of --top-k; 0 is off for that row.
    #[arg(long, value_name = "K.npy")]
    pub top_k_per_row: Option<PathBuf>,
    /// Each row's top-p, float32 or float64 of shape (N,), in place of --top-p; 1 is off.
    #[arg(long, value_name = "P.npy")]
    pub top_p_per_row: Option<PathBuf>,
    /// Each row's min-p, float32 or float64 of shape (N,), in place of --min-p; 0 is off.
    #[arg(long, value_name = "M.npy")]
    pub min_p_per_row: Option<PathBuf>,
    /// The seed of the Philox 4x32-10 stream (counter = row, draw).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Output: each draw's log-probability under the filtered, renormalised distribution,
    /// float32, the shape of the ids.
    #[arg(long, value_name = "LP.npy")]
    pub logprobs: Option<PathBuf>,
    /// Output: the filtered, renormalised probabilities, float32, the logits' shape (0 for
    /// every filtered-out token; one-hot at temperature 0).
    #[arg(long, value_name = "P.npy")]
    pub probs: Option<PathBuf>,
    /// Output: the logits as stored on the GPU with every filtered-out token -inf, float32,
    /// the logits' shape.
    #[arg(long, value_name = "M.npy")]
    pub masked_logits: Option<PathBuf>,
    /// The storage type of the logits on the GPU (they are rounded to it). Default: f16 for
    /// float16 logits, else f32.
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,
}

/// `distill`'s `--reduction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DistillReductionArg {
    /// The sum over the rows divided by the rows counted (PyTorch's batchmean).
    Batchmean,
    /// The sum over the rows.
    Sum,
    /// One loss per row.
    None,
}

impl DistillReductionArg {
    /// The library's reduction.
    pub const fn to_reduction(self) -> wgpu_softmax::DistillReduction {
        match self {
            Self::Batchmean => wgpu_softmax::DistillReduction::BatchMean,
            Self::Sum => wgpu_softmax::DistillReduction::Sum,
            Self::None => wgpu_softmax::DistillReduction::None,
        }
    }
}

/// The options of the cross-entropy, shared by `cross-entropy` and `linear-cross-entropy`.
#[derive(Debug, Args)]
pub struct LossArgs {
    /// How the losses of the rows are reduced.
    #[arg(long, value_enum, default_value_t = ReductionArg::Mean)]
    pub reduction: ReductionArg,
    /// Rows whose class target is this are ignored.
    #[arg(long, value_name = "I", default_value_t = -100, allow_negative_numbers = true)]
    pub ignore_index: i64,
    /// Label smoothing, in [0, 1].
    #[arg(
        long,
        value_name = "E",
        default_value_t = 0.0,
        value_parser = parse_label_smoothing,
        allow_negative_numbers = true
    )]
    pub label_smoothing: f32,
    /// Class weights, one per class: (C,) for cross-entropy, (V,) for
    /// linear-cross-entropy; float16, float32 or float64.
    #[arg(long, value_name = "WEIGHTS.npy")]
    pub weight: Option<PathBuf>,
    /// z-loss coefficient: each row not ignored adds S * logsumexp^2 (PaLM; Liger's
    /// lse_square_scale). S >= 0.
    #[arg(long, value_name = "S", default_value_t = 0.0, allow_negative_numbers = true)]
    pub z_loss: f32,
    /// Logit softcap: logits become T * tanh(x / T) first (Gemma 2). T > 0.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub softcap: Option<f32>,
    /// The storage type of the float inputs (logits and probability targets; hidden
    /// states, classifier and bias) and gradients on the GPU: inputs are rounded to it,
    /// gradients written in it (float16 as float16; bfloat16 as float32, which holds every
    /// bfloat16 exactly); the loss is float32. Default: f16 for float16 logits (hidden
    /// states), else f32.
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,
}

/// `--reduction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReductionArg {
    /// The weighted mean over the rows.
    Mean,
    /// The sum over the rows.
    Sum,
    /// One loss per row.
    None,
}

impl ReductionArg {
    /// The library's reduction.
    pub const fn to_reduction(self) -> Reduction {
        match self {
            Self::Mean => Reduction::Mean,
            Self::Sum => Reduction::Sum,
            Self::None => Reduction::None,
        }
    }
}

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Vulkan.
    Vulkan,
    /// Metal.
    Metal,
    /// DirectX 12.
    Dx12,
    /// OpenGL (ES) through EGL, WGL or WebGL.
    Gl,
}

impl Backend {
    /// The wgpu backend set.
    pub const fn backends(self) -> wgpu::Backends {
        match self {
            Self::Vulkan => wgpu::Backends::VULKAN,
            Self::Metal => wgpu::Backends::METAL,
            Self::Dx12 => wgpu::Backends::DX12,
            Self::Gl => wgpu::Backends::GL,
        }
    }
}

fn parse_label_smoothing(text: &str) -> Result<f32, String> {
    let value: f32 = text.trim().parse().map_err(|_| "not a number".to_owned())?;
    if (0.0..=1.0).contains(&value) { Ok(value) } else { Err("label smoothing must be in [0, 1]".to_owned()) }
}

impl Cli {
    /// The context options the global flags ask for; fields left `None` follow the
    /// `WGPU_*` environment variables.
    pub fn context_options(&self) -> ContextOptions {
        let mut options = ContextOptions::default();
        options.backends = self.backend.map(Backend::backends);
        options.adapter_name.clone_from(&self.adapter);
        options
    }

    /// The backends to look for adapters on: `--backend`, else `WGPU_BACKEND`, else every
    /// backend this platform may have ([`platform_backends`]).
    pub fn backends(&self) -> wgpu::Backends {
        self.backend
            .map(Backend::backends)
            .or_else(wgpu::Backends::from_env)
            .unwrap_or_else(platform_backends)
    }

    /// Creates the context the global flags select; `what` names the command, for the
    /// error message.
    pub fn context(&self, what: &str) -> Result<Context, CliError> {
        let mut options = self.context_options();
        options.backends = Some(self.backends());
        Context::with_options(options).map_err(|e| CliError::library(what, &e))
    }
}

/// The backends that may exist on this platform: wgpu's "all" also holds the no-op backend
/// and the browser's WebGPU, which a native tool never finds.
pub fn platform_backends() -> wgpu::Backends {
    let mut backends = wgpu::Backends::VULKAN | wgpu::Backends::GL;
    if cfg!(any(target_os = "macos", target_os = "ios")) {
        backends |= wgpu::Backends::METAL;
    }
    if cfg!(windows) {
        backends |= wgpu::Backends::DX12;
    }
    backends
}
