//! What each op's kernel is made of: its WGSL part, its tensors and other bindings, the
//! strategies it has, and the choices fixed when its module is composed. One place for
//! each of these facts; the host ops and the composer read them from here.

use super::params::{
    MATMUL_PARAMS_FIELDS, MatmulParams, PARAMS_FIELDS, RowParams, SAMPLE_PARAMS_FIELDS, SampleParams,
    VERIFY_PARAMS_FIELDS, VerifyParams,
};
use super::slots::Slot;
use super::{Binding, BindingType, REDUCE_WORKGROUP_SIZE, VectorWidth};
use crate::dtype::DType;
use crate::strategy::Strategy;
use crate::tune::OpFamily;

/// Where a cross-entropy's targets come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TargetsKind {
    /// One class index per row (u32 or i32 words, chosen by an override).
    Classes,
    /// A probability per class and row: a class-axis tensor of the logits' type.
    Probabilities,
}

/// Where a cross-entropy writes its gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum GradientMode {
    /// Nowhere: the loss only.
    None,
    /// Into its own tensor.
    Separate,
    /// Over the logits.
    InPlace,
}

/// An op's kernel, with the choices that change its bindings (and so cannot be
/// overridable constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum OpKernel {
    /// Softmax and log-softmax (`LOG_SOFTMAX`).
    Softmax,
    /// Their backward passes (`LOG_SOFTMAX`).
    SoftmaxBackward,
    /// The fused cross-entropy.
    CrossEntropy {
        /// Class indices or probabilities.
        targets: TargetsKind,
        /// Where the gradient goes.
        gradient: GradientMode,
        /// For devices with few storage buffers per stage (WebGPU's default of 8): the
        /// argmax, the logsumexp and the 16-bit edge words share one scratch binding
        /// (`extras`, copied out after each chunk), and there is no split strategy.
        packed: bool,
    },
    /// The cross-entropy's reductions over rows (the mean's divisor, the mean or sum).
    CrossEntropyReduce {
        /// Class indices or probabilities.
        targets: TargetsKind,
    },
    /// The linear cross-entropy's matrix products (tiled, f32 sums), the column sums of
    /// the bias's gradient, and the rounding of f32 results into 16-bit storage; the
    /// spec's storage type is the one its 16-bit operands hold.
    Matmul,
    /// The linear cross-entropy's forward without stored logits: the fused cross-entropy
    /// over class indices without a gradient, composed with the split strategy, whose
    /// `linear_stats` reduces each block of the logits `H W^T (+ b)` to each row's share
    /// as the matmul tile computes it, and whose `linear_finish` merges each row's shares
    /// into its loss and logsumexp. The spec's storage type is that of `H`, `W` and `b`.
    LinearCrossEntropy,
    /// Knowledge distillation from logits: each row's `T^2 KL(softmax(t/T) ||
    /// softmax(s/T))` and, with `gradient`, its gradient with respect to the student's
    /// logits into its own tensor.
    Distill {
        /// Whether it writes the gradient.
        gradient: bool,
    },
    /// Sampling token ids from logits (temperature, top-k, top-p, min-p) without a sort:
    /// one workgroup per row, its steps in as few dispatches as the driver's loop limit allows
    /// (`shaders/ops/sample.wgsl`).
    Sample,
    /// Chain speculative-decoding verification: the drafts accepted in order, then a token
    /// from the residual or the bonus distribution (`shaders/ops/chain_verify.wgsl`).
    ChainVerify,
}

const SOFTMAX: &str = include_str!("../../shaders/ops/softmax.wgsl");
const SOFTMAX_BACKWARD: &str = include_str!("../../shaders/ops/softmax_backward.wgsl");
const CROSS_ENTROPY_TARGETS: &str = include_str!("../../shaders/ops/cross_entropy_targets.wgsl");
const CROSS_ENTROPY: &str = include_str!("../../shaders/ops/cross_entropy.wgsl");
const CROSS_ENTROPY_REDUCE: &str = include_str!("../../shaders/ops/cross_entropy_reduce.wgsl");
const MATMUL_TILE_PART: &str = include_str!("../../shaders/ops/matmul_tile.wgsl");
const MATMUL: &str = include_str!("../../shaders/ops/matmul.wgsl");
const LINEAR_CROSS_ENTROPY: &str = include_str!("../../shaders/ops/linear_cross_entropy.wgsl");
const DISTILL: &str = include_str!("../../shaders/ops/distill.wgsl");
const SAMPLE: &str = include_str!("../../shaders/ops/sample.wgsl");
const PHILOX: &str = include_str!("../../shaders/lib/philox.wgsl");
const CHAIN_VERIFY: &str = include_str!("../../shaders/ops/chain_verify.wgsl");

/// The matmul's workgroup is a `MATMUL_SIDE x MATMUL_SIDE` grid of invocations, each
/// computing `MATMUL_PER x MATMUL_PER` outputs (a multiple of 4: they are read and summed
/// as vec4s), so a workgroup computes a [`MATMUL_TILE`]-square block, walking the sum
/// `MATMUL_DEPTH` terms at a time (at least `MATMUL_SIDE / 2`: the linear op's forward
/// stages a value per row of the block and invocation of its row in the slabs).
pub(crate) const MATMUL_SIDE: u32 = 16;
/// See [`MATMUL_SIDE`].
pub(crate) const MATMUL_PER: u32 = 8;
/// See [`MATMUL_SIDE`].
pub(crate) const MATMUL_DEPTH: u32 = 8;
/// The side of the block of outputs one matmul workgroup computes.
pub(crate) const MATMUL_TILE: u32 = MATMUL_SIDE * MATMUL_PER;
/// The matmul module's entry points: the product (whole, or a slice of its terms per
/// workgroup), the sum of the slices, the column sums, the rounding to halves.
pub(crate) const MATMUL_PRODUCT: &str = "matmul";
/// See [`MATMUL_PRODUCT`].
pub(crate) const MATMUL_SUM_SLICES: &str = "sum_slices";
/// See [`MATMUL_PRODUCT`].
pub(crate) const MATMUL_COLUMN_SUMS: &str = "column_sums";
/// See [`MATMUL_PRODUCT`].
pub(crate) const MATMUL_PACK_HALVES: &str = "pack_halves";
/// The linear cross-entropy's entry points: each block of logits to its rows' shares, and
/// each row's shares to its loss.
pub(crate) const LINEAR_STATS: &str = "linear_stats";
/// See [`LINEAR_STATS`].
pub(crate) const LINEAR_FINISH: &str = "linear_finish";
/// Bytes of workgroup memory the linear cross-entropy's `linear_stats` uses: the matmul
/// tile's slabs and a lane per invocation (a test checks it against the composed module).
/// A device with less takes the windowed path.
#[allow(clippy::cast_possible_truncation)] // a lane's 32 bytes
pub(crate) const LINEAR_WORKGROUP_BYTES: u32 =
    4 * 2 * MATMUL_TILE * MATMUL_DEPTH + MATMUL_SIDE * MATMUL_SIDE * (CROSS_ENTROPY_SHARE_BYTES as u32 - 4);
/// Storage bindings of the linear cross-entropy's module (a test counts them in the
/// composed module): a device with fewer per stage takes the windowed path.
pub(crate) const LINEAR_STORAGE_BINDINGS: u32 = 12;

/// The cross-entropy's status words: correct predictions, rows with a bad target, and
/// `u32::MAX - first bad row` (so that zero means none and `atomicMax` keeps the first).
pub(crate) const STATUS_CORRECT: u32 = 0;
/// See [`STATUS_CORRECT`].
pub(crate) const STATUS_BAD_ROWS: u32 = 1;
/// See [`STATUS_CORRECT`].
pub(crate) const STATUS_FIRST_BAD_ROW: u32 = 2;

/// Words of the sampler's state per row (see `shaders/ops/sample.wgsl`).
pub(crate) const SAMPLE_STATE_WORDS: u32 = 12;
/// Keys the sampler's searches finish in workgroup memory: once the top-k search's
/// candidates (the keys at or above its digits so far) are at most this many, one pass
/// gathers and sorts them and both thresholds are read off them.
pub(crate) const SAMPLE_CANDIDATES: u32 = 512;
/// Bits of each digit of the sampler's threshold searches: a histogram of `2^bits` bins
/// per step.
pub(crate) const SAMPLE_DIGIT_BITS: u32 = 4;
/// Bins of each histogram.
pub(crate) const SAMPLE_BINS: u32 = 1 << SAMPLE_DIGIT_BITS;
/// Digits of a 32-bit key: the steps of each threshold search.
pub(crate) const SAMPLE_LEVELS: u32 = 32 / SAMPLE_DIGIT_BITS;
/// The sampler's steps, in order: the row statistics, the top-k key's digits, the top-p
/// key's digits, and the draws.
pub(crate) const SAMPLE_STEP_STATS: u32 = 0;
/// See [`SAMPLE_STEP_STATS`].
pub(crate) const SAMPLE_STEP_TOP_K: u32 = 1;
/// See [`SAMPLE_STEP_STATS`].
pub(crate) const SAMPLE_STEP_TOP_P: u32 = SAMPLE_STEP_TOP_K + SAMPLE_LEVELS;
/// See [`SAMPLE_STEP_STATS`].
pub(crate) const SAMPLE_STEP_DRAW: u32 = SAMPLE_STEP_TOP_P + SAMPLE_LEVELS;
/// The sampler's status words of rows whose per-row settings are out of range: their
/// count, and `u32::MAX - the first` (after the bad rows' words).
pub(crate) const SAMPLE_STATUS_BAD_SETTINGS: u32 = 4;
/// See [`SAMPLE_STATUS_BAD_SETTINGS`].
pub(crate) const SAMPLE_STATUS_FIRST_BAD_SETTINGS: u32 = 5;
/// The bits of the sampler's `params.flags`: log-probabilities written, which settings
/// are per row, and which masks the first draw dispatch writes.
pub(crate) const SAMPLE_FLAG_LOGPROBS: u32 = 1;
/// See [`SAMPLE_FLAG_LOGPROBS`].
pub(crate) const SAMPLE_FLAG_ROW_TEMPERATURE: u32 = 2;
/// See [`SAMPLE_FLAG_LOGPROBS`].
pub(crate) const SAMPLE_FLAG_ROW_TOP_K: u32 = 4;
/// See [`SAMPLE_FLAG_LOGPROBS`].
pub(crate) const SAMPLE_FLAG_ROW_TOP_P: u32 = 8;
/// See [`SAMPLE_FLAG_LOGPROBS`].
pub(crate) const SAMPLE_FLAG_ROW_MIN_P: u32 = 16;
/// See [`SAMPLE_FLAG_LOGPROBS`].
pub(crate) const SAMPLE_FLAG_PROBS: u32 = 32;
/// See [`SAMPLE_FLAG_LOGPROBS`].
pub(crate) const SAMPLE_FLAG_MASKED: u32 = 64;
/// See [`SAMPLE_FLAG_LOGPROBS`]: ids written as i64, two words each.
pub(crate) const SAMPLE_FLAG_IDS_I64: u32 = 128;
/// See [`SAMPLE_FLAG_LOGPROBS`]: whether the top-k digit steps run (some row uses top-k).
pub(crate) const SAMPLE_FLAG_TOP_K_ON: u32 = 256;
/// See [`SAMPLE_FLAG_LOGPROBS`]: whether the top-p digit steps run.
pub(crate) const SAMPLE_FLAG_TOP_P_ON: u32 = 512;
/// The flags as the shader names them.
const SAMPLE_FLAGS: [(&str, u32); 10] = [
    ("FLAG_LOGPROBS", SAMPLE_FLAG_LOGPROBS),
    ("FLAG_ROW_TEMPERATURE", SAMPLE_FLAG_ROW_TEMPERATURE),
    ("FLAG_ROW_TOP_K", SAMPLE_FLAG_ROW_TOP_K),
    ("FLAG_ROW_TOP_P", SAMPLE_FLAG_ROW_TOP_P),
    ("FLAG_ROW_MIN_P", SAMPLE_FLAG_ROW_MIN_P),
    ("FLAG_PROBS", SAMPLE_FLAG_PROBS),
    ("FLAG_MASKED", SAMPLE_FLAG_MASKED),
    ("FLAG_IDS_I64", SAMPLE_FLAG_IDS_I64),
    ("FLAG_TOP_K_ON", SAMPLE_FLAG_TOP_K_ON),
    ("FLAG_TOP_P_ON", SAMPLE_FLAG_TOP_P_ON),
];
/// The sampler's entry points: the row statistics, the digit steps of the threshold
/// searches, and the draws.
pub(crate) const SAMPLE_STATS_ENTRY: &str = "sample_stats";
/// See [`SAMPLE_STATS_ENTRY`].
pub(crate) const SAMPLE_SEARCH_ENTRY: &str = "sample_search";
/// See [`SAMPLE_STATS_ENTRY`].
pub(crate) const SAMPLE_DRAW_ENTRY: &str = "sample_draw";

/// Bytes of the cross-entropy's `Share` (a max and its `Lane`), which the linear
/// cross-entropy's shares of blocks of classes also are.
const CROSS_ENTROPY_SHARE_BYTES: u64 = 36;

/// How an op's module is put together around the op's parts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Skeleton {
    /// Run by a strategy's row loop (`shaders/strategy/`): the op's parts say what a lane
    /// accumulates from an element, how two lanes merge, what a finished row computes and
    /// what is written per element.
    Rows {
        /// The strategies it has.
        strategies: &'static [Strategy],
        /// Parts that build on the strategy's, after it.
        after: &'static [&'static str],
        /// The entry points of those parts.
        entry_points: &'static [&'static str],
    },
    /// Its own entry points over its own grid (reductions, tiles of a product, the
    /// sampler's steps).
    Own {
        /// Its entry points.
        entry_points: &'static [&'static str],
        /// Entry points only its 16-bit storage types have.
        half_entry_points: &'static [&'static str],
        /// Invocations per workgroup.
        workgroup_size: u32,
        /// Whether its parts use the workgroup sum (`lib/workgroup_sum.wgsl`).
        workgroup_sum: bool,
    },
}

/// The modules an op has besides its strategies: which storage types and access widths,
/// and whether it has the register-cache and strided-class-axis variants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Variants {
    /// Storage types of its class-axis tensors or operands.
    pub(crate) dtypes: &'static [DType],
    /// Access widths.
    pub(crate) vectors: &'static [VectorWidth],
    /// Whether it has the variant that keeps rows in registers.
    pub(crate) cached: bool,
    /// Whether it has the variant for a strided class axis (scalar accesses only).
    pub(crate) strided: bool,
}

/// The fields of an op's `Params` uniform, as WGSL declares them, and its size in bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParamsLayout {
    /// The fields, in order.
    pub(crate) fields: &'static [(&'static str, &'static str)],
    /// The Rust struct's size.
    #[cfg_attr(not(test), allow(dead_code))] // checked against the composed modules
    pub(crate) bytes: usize,
}

const ROW_PARAMS: ParamsLayout = ParamsLayout { fields: &PARAMS_FIELDS, bytes: size_of::<RowParams>() };
const ROW_VARIANTS: Variants =
    Variants { dtypes: &DType::ALL, vectors: &VectorWidth::ALL, cached: true, strided: true };
const ALL_STRATEGIES: &[Strategy] =
    &[Strategy::ThreadPerRow, Strategy::SubgroupPerRow, Strategy::WorkgroupPerRow, Strategy::SplitRow];

/// One op's kernel, declared in one place: its parts and how they are put together, its
/// bindings (by slot, in binding order after the params), the flags its parts are
/// preprocessed with, the constants and overridable constants they read, its `Params`,
/// the bytes of its split's shares, its modules, and the family its tuned choices are
/// kept under.
#[derive(Clone, Debug)]
pub(crate) struct OpDecl {
    /// Its name, for labels.
    pub(crate) name: &'static str,
    /// How its module is put together.
    pub(crate) skeleton: Skeleton,
    /// Its WGSL parts, in order (before the strategy's, for a row op).
    pub(crate) parts: &'static [&'static str],
    /// Its bindings after the params: the class-axis tensors first (the row kernels'
    /// scratch for the split and the edges is added by the composer).
    pub(crate) bindings: Vec<Binding>,
    /// The flags its parts are preprocessed with (`#if NAME`).
    pub(crate) flags: Vec<(&'static str, bool)>,
    /// Constants its parts use, written into the module.
    pub(crate) constants: Vec<(&'static str, String)>,
    /// The overridable constants its parts declare, with every value this crate sets them
    /// to (booleans as 0 and 1).
    pub(crate) overrides: &'static [(&'static str, &'static [u32])],
    /// Its `Params` uniform.
    pub(crate) params: ParamsLayout,
    /// Bytes of a `Share` (a max and the op's `Lane`) as the split's scratch stores it (a
    /// test checks it against the composed module); 0 without one.
    pub(crate) share_bytes: u64,
    /// Its modules.
    pub(crate) variants: Variants,
    /// The family its autotuned strategies are kept under; `None`: not autotuned.
    pub(crate) family: Option<OpFamily>,
    /// The kernel a device that cannot bind this one's storage buffers takes instead.
    pub(crate) fallback: Option<OpKernel>,
    /// Whether the 16-bit edge words go into the `extras` binding rather than one of
    /// their own.
    pub(crate) packs_extras: bool,
    /// Whether the row kernel can fold the reduction over rows into itself (the
    /// cross-entropy's mean or sum: `FOLDS`, the strategies' `group_done`), its last
    /// workgroup summing the row losses.
    pub(crate) folds_reduction: bool,
}

const fn tensor(slot: Slot, writable: bool) -> Binding {
    Binding { slot, ty: BindingType::Tensor { writable }, optional: false }
}

const fn read(slot: Slot, element: &'static str) -> Binding {
    Binding { slot, ty: BindingType::Array { element, writable: false }, optional: false }
}

const fn write(slot: Slot, element: &'static str) -> Binding {
    Binding { slot, ty: BindingType::Array { element, writable: true }, optional: false }
}

/// Words the module loads at its access width (`vec4<u32>` in 128-bit modules).
const fn words(slot: Slot) -> Binding {
    Binding { slot, ty: BindingType::Words, optional: false }
}

impl Binding {
    /// The same binding, which a dispatch may leave unbound (a placeholder is bound).
    const fn optional(self) -> Self {
        Self { optional: true, ..self }
    }
}

/// The status word indices, as the parts that count bad rows read them.
fn status_constants() -> Vec<(&'static str, String)> {
    vec![
        ("STATUS_BAD_ROWS", format!("{STATUS_BAD_ROWS}u")),
        ("STATUS_FIRST_BAD_ROW", format!("{STATUS_FIRST_BAD_ROW}u")),
    ]
}

/// The matmul tile's sizes, as its part reads them.
fn matmul_constants() -> Vec<(&'static str, String)> {
    vec![
        ("SIDE", format!("{MATMUL_SIDE}u")),
        ("PER", format!("{MATMUL_PER}u")),
        ("DEPTH", format!("{MATMUL_DEPTH}u")),
    ]
}

const LOG: (&str, &[u32]) = ("LOG_SOFTMAX", &[0, 1]);
const TARGETS: [(&str, &[u32]); 4] = [
    ("TARGETS_SIGNED", &[1, 0]),
    ("TARGETS_WIDE", &[0, 1]),
    ("HAS_WEIGHT", &[0, 1]),
    ("REDUCTION", &[1, 0, 2]),
];
const FUSED: [(&str, &[u32]); 9] = [
    TARGETS[0],
    TARGETS[1],
    TARGETS[2],
    TARGETS[3],
    ("HAS_UPSTREAM", &[0, 1]),
    ("ARGMAX", &[0, 1]),
    ("WRITE_LSE", &[0, 1]),
    ("SOFTCAP", &[0, 1]),
    ("FOLD_REDUCTION", &[0, 1]),
];
const MATMUL_OVERRIDES: [(&str, &[u32]); 6] = [
    ("A_HALF", &[0, 1]),
    ("B_HALF", &[0, 1]),
    ("A_TRANSPOSED", &[0, 1]),
    ("B_TRANSPOSED", &[1, 0]),
    ("ACCUMULATE", &[0, 1]),
    ("HAS_BIAS", &[0, 1]),
];
// H times W stored transposed, always.
const LINEAR_OVERRIDES: [(&str, &[u32]); 14] = [
    FUSED[0],
    FUSED[1],
    FUSED[2],
    FUSED[3],
    FUSED[4],
    FUSED[5],
    FUSED[6],
    FUSED[7],
    // Declared by the cross-entropy's part, never set: the linear op reduces by its own passes.
    ("FOLD_REDUCTION", &[0]),
    MATMUL_OVERRIDES[0],
    MATMUL_OVERRIDES[1],
    ("A_TRANSPOSED", &[0]),
    ("B_TRANSPOSED", &[1]),
    MATMUL_OVERRIDES[5],
];
const DISTILL_OVERRIDES: [(&str, &[u32]); 5] =
    [TARGETS[0], TARGETS[1], TARGETS[3], ("HAS_UPSTREAM", &[0, 1]), ("HAS_MASK", &[0, 1])];

/// Softmax and log-softmax (`LOG_SOFTMAX`).
fn softmax() -> OpDecl {
    OpDecl {
        name: "softmax",
        skeleton: Skeleton::Rows { strategies: ALL_STRATEGIES, after: &[], entry_points: &[] },
        parts: &[SOFTMAX],
        bindings: vec![tensor(Slot::Input, false), tensor(Slot::Output, true)],
        flags: Vec::new(),
        constants: Vec::new(),
        overrides: &[LOG],
        params: ROW_PARAMS,
        share_bytes: 12,
        variants: ROW_VARIANTS,
        family: Some(OpFamily::Softmax),
        fallback: None,
        packs_extras: false,
        folds_reduction: false,
    }
}

/// Their backward passes (`LOG_SOFTMAX`).
fn softmax_backward() -> OpDecl {
    OpDecl {
        name: "softmax_backward",
        parts: &[SOFTMAX_BACKWARD],
        bindings: vec![tensor(Slot::Y, false), tensor(Slot::Dy, false), tensor(Slot::Dx, true)],
        share_bytes: 8,
        family: Some(OpFamily::SoftmaxBackward),
        ..softmax()
    }
}

/// The per-row arrays of the fused cross-entropy after its tensors.
fn cross_entropy_arrays(targets: TargetsKind, packed: bool) -> Vec<Binding> {
    let mut bindings = Vec::new();
    if targets == TargetsKind::Classes {
        bindings.push(read(Slot::Targets, "u32"));
    }
    bindings.extend([
        read(Slot::Weight, "f32").optional(),
        // Reduction none: the upstream gradient per row. Mean with class indices: the
        // totals of the reductions, [0] the total weight.
        read(Slot::Scale, "f32").optional(),
        write(Slot::RowLoss, "f32"),
    ]);
    if packed {
        // [0, R): each row's argmax; [R, 2R): its logsumexp's bits; [2R, 4R): the edge
        // words; R = params.extras_rows.
        bindings.extend([write(Slot::Extras, "u32"), write(Slot::Status, "atomic<u32>")]);
    } else {
        bindings.extend([
            write(Slot::Argmax, "u32").optional(),
            write(Slot::Status, "atomic<u32>"),
            // Each row's logsumexp, when asked for.
            write(Slot::Lse, "f32").optional(),
        ]);
    }
    bindings
}

/// Words per row of the packed cross-entropy's `extras` binding: the argmax, the
/// logsumexp and the two edge words.
pub(crate) const PACKED_EXTRAS_WORDS: u64 = 4;

/// The fused cross-entropy.
fn cross_entropy(targets: TargetsKind, gradient: GradientMode, packed: bool) -> OpDecl {
    let mut bindings = vec![tensor(Slot::Logits, gradient == GradientMode::InPlace)];
    if gradient == GradientMode::Separate {
        bindings.push(tensor(Slot::Grad, true));
    }
    if targets == TargetsKind::Probabilities {
        bindings.push(tensor(Slot::TargetProbs, false));
    }
    bindings.extend(cross_entropy_arrays(targets, packed));
    if !packed {
        // The reduction folded in (`group_done`): the totals (the mean's divisor in, each
        // chunk's loss sum and the workgroups' ticket), and the reduced loss out.
        bindings.extend([write(Slot::Totals, "atomic<u32>").optional(), write(Slot::Loss, "f32").optional()]);
    }
    let mut constants = vec![
        ("HAS_GRADIENT", format!("{}", gradient != GradientMode::None)),
        ("STATUS_CORRECT", format!("{STATUS_CORRECT}u")),
    ];
    constants.extend(status_constants());
    let strategies: &[Strategy] = if packed { &ALL_STRATEGIES[..3] } else { ALL_STRATEGIES };
    OpDecl {
        name: if packed { "cross_entropy_packed" } else { "cross_entropy" },
        skeleton: Skeleton::Rows { strategies, after: &[], entry_points: &[] },
        parts: &[CROSS_ENTROPY_TARGETS, CROSS_ENTROPY],
        bindings,
        flags: vec![
            ("PROBABILITIES", targets == TargetsKind::Probabilities),
            ("CLASS_WEIGHTS", true),
            ("PACKED", packed),
        ],
        constants,
        overrides: &FUSED,
        share_bytes: CROSS_ENTROPY_SHARE_BYTES,
        family: Some(OpFamily::CrossEntropy),
        fallback: (!packed).then_some(OpKernel::CrossEntropy { targets, gradient, packed: true }),
        packs_extras: packed,
        folds_reduction: !packed,
        ..softmax()
    }
}

/// The cross-entropy's reductions over rows (the mean's divisor, the mean or sum, the
/// z-loss on its own).
fn cross_entropy_reduce(targets: TargetsKind) -> OpDecl {
    let mut bindings = Vec::new();
    let mut entry_points: &[&str] =
        &["reduce_rows", "finish", "z_loss_rows", "reduce_z_loss", "finish_z_loss"];
    if targets == TargetsKind::Classes {
        bindings.push(read(Slot::Targets, "u32"));
        entry_points = &[
            "total_weight",
            "combine_total_weight",
            "reduce_rows",
            "finish",
            "z_loss_rows",
            "reduce_z_loss",
            "finish_z_loss",
        ];
    }
    // Each pass binds what it reads and writes of these.
    bindings.extend([
        read(Slot::Weight, "f32").optional(),
        read(Slot::RowLoss, "f32").optional(),
        write(Slot::Totals, "f32").optional(),
        write(Slot::Loss, "f32").optional(),
        // The z-loss on its own: each row's logsumexp in, the reduced part out.
        read(Slot::Lse, "f32").optional(),
        write(Slot::ZLoss, "f32").optional(),
    ]);
    OpDecl {
        name: "cross_entropy_reduce",
        skeleton: Skeleton::Own {
            entry_points,
            half_entry_points: &[],
            workgroup_size: REDUCE_WORKGROUP_SIZE,
            workgroup_sum: true,
        },
        parts: &[CROSS_ENTROPY_TARGETS, CROSS_ENTROPY_REDUCE],
        bindings,
        flags: vec![("PROBABILITIES", targets == TargetsKind::Probabilities), ("CLASS_WEIGHTS", true)],
        constants: Vec::new(),
        overrides: &TARGETS,
        params: ROW_PARAMS,
        share_bytes: 0,
        variants: Variants {
            dtypes: &[DType::F32],
            vectors: &[VectorWidth::Scalar],
            cached: false,
            strided: false,
        },
        family: None,
        fallback: None,
        packs_extras: false,
        folds_reduction: false,
    }
}

/// The modules of matrix products: one per 16-bit type they convert and per width of
/// their operands' loads.
const PRODUCT_VARIANTS: Variants =
    Variants { dtypes: &DType::ALL, vectors: &VectorWidth::ALL, cached: false, strided: false };

/// The linear cross-entropy's matrix products (tiled, f32 sums), the column sums of the
/// bias's gradient, and the rounding of f32 results into 16-bit storage; the spec's
/// storage type is the one its 16-bit operands hold.
fn matmul() -> OpDecl {
    OpDecl {
        name: "matmul",
        skeleton: Skeleton::Own {
            entry_points: &[MATMUL_PRODUCT, MATMUL_SUM_SLICES, MATMUL_COLUMN_SUMS],
            half_entry_points: &[MATMUL_PACK_HALVES],
            workgroup_size: MATMUL_SIDE * MATMUL_SIDE,
            workgroup_sum: false,
        },
        parts: &[MATMUL_TILE_PART, MATMUL],
        // Each pass binds what it reads and writes of these: the product a, b (bias) into
        // c; the sum of the slices a (bias) into c; the column sums a into c; the
        // rounding c into packed.
        bindings: vec![
            words(Slot::A).optional(),
            words(Slot::B).optional(),
            read(Slot::Bias, "u32").optional(),
            write(Slot::C, "f32"),
            write(Slot::Packed, "u32").optional(),
        ],
        flags: Vec::new(),
        constants: matmul_constants(),
        overrides: &MATMUL_OVERRIDES,
        params: ParamsLayout { fields: &MATMUL_PARAMS_FIELDS, bytes: size_of::<MatmulParams>() },
        share_bytes: 0,
        variants: PRODUCT_VARIANTS,
        family: None,
        fallback: None,
        packs_extras: false,
        folds_reduction: false,
    }
}

/// The linear cross-entropy's forward without stored logits: the fused cross-entropy over
/// class indices without a gradient, composed with the split strategy, whose
/// `linear_stats` reduces each block of the logits `H W^T (+ b)` to each row's share as
/// the matmul tile computes it, and whose `linear_finish` merges each row's shares into
/// its loss and logsumexp. The spec's storage type is that of `H`, `W` and `b`.
fn linear_cross_entropy() -> OpDecl {
    let forward = cross_entropy(TargetsKind::Classes, GradientMode::None, false);
    // The logits are never stored: `linear_finish` reads only the shares.
    let mut bindings = vec![tensor(Slot::Logits, false).optional()];
    bindings.extend(cross_entropy_arrays(TargetsKind::Classes, false));
    // H, W (stored V x D) and b, as the matmul tile names its operands.
    bindings.extend([words(Slot::A), words(Slot::B), read(Slot::Bias, "u32").optional()]);
    let mut constants = forward.constants;
    constants.extend(matmul_constants());
    OpDecl {
        name: "linear_cross_entropy",
        // Its shares are laid out as the split's.
        skeleton: Skeleton::Rows {
            strategies: &[Strategy::SplitRow],
            after: &[MATMUL_TILE_PART, LINEAR_CROSS_ENTROPY],
            entry_points: &[LINEAR_STATS, LINEAR_FINISH],
        },
        bindings,
        constants,
        overrides: &LINEAR_OVERRIDES,
        variants: PRODUCT_VARIANTS,
        family: None,
        // A device that cannot bind it takes windows of stored logits through the
        // cross-entropy's modules.
        fallback: Some(OpKernel::CrossEntropy {
            targets: TargetsKind::Classes,
            gradient: GradientMode::InPlace,
            packed: false,
        }),
        folds_reduction: false,
        ..forward
    }
}

/// Knowledge distillation from logits: each row's `T^2 KL(softmax(t/T) || softmax(s/T))`
/// and, with `gradient`, its gradient with respect to the student's logits into its own
/// tensor.
fn distill(gradient: bool) -> OpDecl {
    let mut bindings = vec![tensor(Slot::Student, false), tensor(Slot::Teacher, false)];
    if gradient {
        bindings.push(tensor(Slot::Grad, true));
    }
    bindings.extend([
        // The mask's class targets.
        read(Slot::Targets, "u32").optional(),
        // Reduction none: the upstream gradient per row. Batchmean with a mask: the
        // totals of the reductions, [0] the rows counted.
        read(Slot::Scale, "f32").optional(),
        write(Slot::RowLoss, "f32"),
        write(Slot::Status, "atomic<u32>"),
    ]);
    OpDecl {
        name: "distill",
        parts: &[CROSS_ENTROPY_TARGETS, DISTILL],
        bindings,
        // Class targets only as a mask: no weights.
        flags: vec![("PROBABILITIES", false), ("CLASS_WEIGHTS", false)],
        constants: status_constants(),
        overrides: &DISTILL_OVERRIDES,
        share_bytes: 28,
        family: Some(OpFamily::Distill),
        ..softmax()
    }
}

/// Sampling token ids from logits (temperature, top-k, top-p, min-p) without a sort: one
/// workgroup per row, one step per dispatch (`shaders/ops/sample.wgsl`).
fn sample() -> OpDecl {
    let mut constants = status_constants();
    constants.extend([
        ("STATE_WORDS", format!("{SAMPLE_STATE_WORDS}u")),
        ("STEP_STATS", format!("{SAMPLE_STEP_STATS}u")),
        ("STEP_TOP_K", format!("{SAMPLE_STEP_TOP_K}u")),
        ("STEP_TOP_P", format!("{SAMPLE_STEP_TOP_P}u")),
        ("STEP_DRAW", format!("{SAMPLE_STEP_DRAW}u")),
        ("DIGIT_BITS", format!("{SAMPLE_DIGIT_BITS}u")),
        ("BINS", format!("{SAMPLE_BINS}u")),
        ("CANDIDATES", format!("{SAMPLE_CANDIDATES}u")),
        ("LEVELS", format!("{SAMPLE_LEVELS}u")),
        ("STATUS_BAD_SETTINGS", format!("{SAMPLE_STATUS_BAD_SETTINGS}u")),
        ("STATUS_FIRST_BAD_SETTINGS", format!("{SAMPLE_STATUS_FIRST_BAD_SETTINGS}u")),
    ]);
    constants.extend(SAMPLE_FLAGS.iter().map(|&(name, bit)| (name, format!("{bit}u"))));
    OpDecl {
        name: "sample",
        skeleton: Skeleton::Own {
            entry_points: &[SAMPLE_STATS_ENTRY, SAMPLE_SEARCH_ENTRY, SAMPLE_DRAW_ENTRY],
            half_entry_points: &[],
            workgroup_size: SAMPLE_WORKGROUP_SIZE,
            workgroup_sum: true,
        },
        parts: &[PHILOX, SAMPLE],
        bindings: vec![
            // f32 bits, or 16-bit halves packed in words (see `DType::per_word`).
            read(Slot::Logits, "u32"),
            write(Slot::Ids, "i32"),
            write(Slot::Logprobs, "f32").optional(),
            // Each row's state between steps: SAMPLE_STATE_WORDS words.
            write(Slot::State, "u32"),
            write(Slot::Status, "atomic<u32>"),
            // The masks: the filtered, renormalised probabilities (f32), and the masked
            // logits in the logits' storage type (16-bit halves set through atomics, as
            // rows may share a word).
            write(Slot::SampleProbs, "f32").optional(),
            write(Slot::MaskedLogits, "atomic<u32>").optional(),
        ],
        flags: Vec::new(),
        constants,
        overrides: &[],
        params: ParamsLayout { fields: &SAMPLE_PARAMS_FIELDS, bytes: size_of::<SampleParams>() },
        share_bytes: 0,
        variants: Variants {
            dtypes: &DType::ALL,
            vectors: &[VectorWidth::Scalar],
            cached: false,
            strided: false,
        },
        family: None,
        fallback: None,
        packs_extras: false,
        folds_reduction: false,
    }
}

/// Invocations per workgroup of the sampler (one workgroup per row).
pub(crate) const SAMPLE_WORKGROUP_SIZE: u32 = 256;
/// The longest row the sampler takes: its histograms count each invocation's chunk of a
/// row in 16-bit halves of words (`CountBins` in `shaders/ops/sample.wgsl`), so a chunk,
/// a row over the workgroup's invocations, holds at most 65535 keys.
pub(crate) const SAMPLE_MAX_COLS: u32 = 0xffff * SAMPLE_WORKGROUP_SIZE;
const _: () = assert!(SAMPLE_MAX_COLS.div_ceil(SAMPLE_WORKGROUP_SIZE) <= 0xffff);
// The rank sort of the sampler's candidates places at most two per invocation.
const _: () = assert!(SAMPLE_CANDIDATES <= 2 * SAMPLE_WORKGROUP_SIZE);

/// The chain verifier's entry point.
pub(crate) const CHAIN_VERIFY_ENTRY: &str = "verify";
/// The bit of the chain verifier's `params.flags`: ids written as i64, two words each.
pub(crate) const CHAIN_VERIFY_FLAG_IDS_I64: u32 = 1;

/// Chain speculative-decoding verification: one workgroup per row walks the drafts in
/// order and draws the row's last token (`shaders/ops/chain_verify.wgsl`).
fn chain_verify() -> OpDecl {
    let mut constants = status_constants();
    constants.push(("FLAG_IDS_I64", format!("{CHAIN_VERIFY_FLAG_IDS_I64}u")));
    OpDecl {
        name: "chain_verify",
        skeleton: Skeleton::Own {
            entry_points: &[CHAIN_VERIFY_ENTRY],
            half_entry_points: &[],
            workgroup_size: SAMPLE_WORKGROUP_SIZE,
            workgroup_sum: false,
        },
        parts: &[PHILOX, CHAIN_VERIFY],
        bindings: vec![
            // `rows x drafts` token ids.
            read(Slot::DraftIds, "i32"),
            // `rows x drafts x cols` and `rows x (drafts + 1) x cols` probabilities.
            read(Slot::DraftProbs, "f32"),
            read(Slot::TargetProbs, "f32"),
            // `rows x (drafts + 1)` token ids (i32, or i64 as two words).
            write(Slot::Ids, "i32"),
            write(Slot::Accepted, "u32"),
            write(Slot::Status, "atomic<u32>"),
        ],
        flags: Vec::new(),
        constants,
        overrides: &[],
        params: ParamsLayout { fields: &VERIFY_PARAMS_FIELDS, bytes: size_of::<VerifyParams>() },
        share_bytes: 0,
        // Probabilities are f32.
        variants: Variants {
            dtypes: &[DType::F32],
            vectors: &[VectorWidth::Scalar],
            cached: false,
            strided: false,
        },
        family: None,
        fallback: None,
        packs_extras: false,
        folds_reduction: false,
    }
}

impl OpKernel {
    /// Every op kernel.
    pub(crate) const ALL: [Self; 22] = [
        Self::Softmax,
        Self::SoftmaxBackward,
        Self::cross_entropy(TargetsKind::Classes, GradientMode::None, false),
        Self::cross_entropy(TargetsKind::Classes, GradientMode::Separate, false),
        Self::cross_entropy(TargetsKind::Classes, GradientMode::InPlace, false),
        Self::cross_entropy(TargetsKind::Probabilities, GradientMode::None, false),
        Self::cross_entropy(TargetsKind::Probabilities, GradientMode::Separate, false),
        Self::cross_entropy(TargetsKind::Probabilities, GradientMode::InPlace, false),
        Self::cross_entropy(TargetsKind::Classes, GradientMode::None, true),
        Self::cross_entropy(TargetsKind::Classes, GradientMode::Separate, true),
        Self::cross_entropy(TargetsKind::Classes, GradientMode::InPlace, true),
        Self::cross_entropy(TargetsKind::Probabilities, GradientMode::None, true),
        Self::cross_entropy(TargetsKind::Probabilities, GradientMode::Separate, true),
        Self::cross_entropy(TargetsKind::Probabilities, GradientMode::InPlace, true),
        Self::CrossEntropyReduce { targets: TargetsKind::Classes },
        Self::CrossEntropyReduce { targets: TargetsKind::Probabilities },
        Self::Matmul,
        Self::LinearCrossEntropy,
        Self::Distill { gradient: false },
        Self::Distill { gradient: true },
        Self::Sample,
        Self::ChainVerify,
    ];

    /// The fused cross-entropy's kernel.
    pub(crate) const fn cross_entropy(targets: TargetsKind, gradient: GradientMode, packed: bool) -> Self {
        Self::CrossEntropy { targets, gradient, packed }
    }

    /// The op's declaration: everything the composer and the host know of its kernel.
    pub(crate) fn decl(self) -> OpDecl {
        match self {
            Self::Softmax => softmax(),
            Self::SoftmaxBackward => softmax_backward(),
            Self::CrossEntropy { targets, gradient, packed } => cross_entropy(targets, gradient, packed),
            Self::CrossEntropyReduce { targets } => cross_entropy_reduce(targets),
            Self::Matmul => matmul(),
            Self::LinearCrossEntropy => linear_cross_entropy(),
            Self::Distill { gradient } => distill(gradient),
            Self::Sample => sample(),
            Self::ChainVerify => chain_verify(),
        }
    }

    /// Whether it is a row op (run by a strategy's row loop).
    pub(crate) fn is_row_op(self) -> bool {
        matches!(self.decl().skeleton, Skeleton::Rows { .. })
    }

    /// The strategies the op has (none for a kernel with its own skeleton).
    pub(crate) fn strategies(self) -> &'static [Strategy] {
        match self.decl().skeleton {
            Skeleton::Rows { strategies, .. } => strategies,
            Skeleton::Own { .. } => &[],
        }
    }

    /// Why the op lacks `strategy`, if it does.
    pub(crate) fn refuses(self, strategy: Strategy) -> Option<&'static str> {
        (!self.strategies().contains(&strategy)).then_some("this op does not have the strategy")
    }

    /// The class-axis tensors, in binding order after the params.
    pub(crate) fn tensors(self) -> Vec<Binding> {
        self.decl().bindings.into_iter().filter(|b| matches!(b.ty, BindingType::Tensor { .. })).collect()
    }

    /// The class-axis tensor the op writes, if any.
    pub(crate) fn output_tensor(self) -> Option<Slot> {
        self.tensors().into_iter().find(|t| t.ty == BindingType::Tensor { writable: true }).map(|t| t.slot)
    }

    /// Bytes of the op's split shares (see [`OpDecl::share_bytes`]).
    pub(crate) fn share_bytes(self) -> u64 {
        self.decl().share_bytes
    }
}

/// Bytes of the linear cross-entropy's share of a block of classes (a test checks it
/// against the composed module).
pub(crate) const LINEAR_SHARE_BYTES: u64 = CROSS_ENTROPY_SHARE_BYTES;
