//! What each op's kernel is made of: its WGSL part, its tensors and other bindings, the
//! strategies it has, and the choices fixed when its module is composed. One place for
//! each of these facts; the host ops and the composer read them from here.

use super::params::{
    MATMUL_PARAMS_FIELDS, MatmulParams, PARAMS_FIELDS, RowParams, SAMPLE_PARAMS_FIELDS, SampleParams,
};
use super::{Binding, BindingType};
use crate::strategy::Strategy;

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
    /// one workgroup per row, one step per dispatch (`shaders/ops/sample.wgsl`).
    Sample,
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

/// The matmul's workgroup is a `MATMUL_SIDE x MATMUL_SIDE` grid of invocations, each
/// computing `MATMUL_PER x MATMUL_PER` outputs, so a workgroup computes a
/// [`MATMUL_TILE`]-square block, walking the sum `MATMUL_DEPTH` terms at a time.
pub(crate) const MATMUL_SIDE: u32 = 16;
/// See [`MATMUL_SIDE`].
pub(crate) const MATMUL_PER: u32 = 4;
/// See [`MATMUL_SIDE`].
pub(crate) const MATMUL_DEPTH: u32 = 16;
/// The side of the block of outputs one matmul workgroup computes.
pub(crate) const MATMUL_TILE: u32 = MATMUL_SIDE * MATMUL_PER;
/// The matmul module's entry points: the product, the column sums, the rounding to halves.
pub(crate) const MATMUL_PRODUCT: &str = "matmul";
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
pub(crate) const LINEAR_WORKGROUP_BYTES: u32 = 4 * 2 * MATMUL_TILE * MATMUL_DEPTH
    + MATMUL_SIDE * MATMUL_SIDE * (OpKernel::LinearCrossEntropy.share_bytes() as u32 - 4);
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
pub(crate) const SAMPLE_STATE_WORDS: u32 = 8;
/// The sampler's steps, one per dispatch: the row statistics, a top-k bisection step, the
/// top-k set's mass, a top-p bisection step, and the draws.
pub(crate) const SAMPLE_PHASE_STATS: u32 = 0;
/// See [`SAMPLE_PHASE_STATS`].
pub(crate) const SAMPLE_PHASE_TOP_K: u32 = 1;
/// See [`SAMPLE_PHASE_STATS`].
pub(crate) const SAMPLE_PHASE_MASS: u32 = 2;
/// See [`SAMPLE_PHASE_STATS`].
pub(crate) const SAMPLE_PHASE_TOP_P: u32 = 3;
/// See [`SAMPLE_PHASE_STATS`].
pub(crate) const SAMPLE_PHASE_DRAW: u32 = 4;
/// The sampler's entry point.
pub(crate) const SAMPLE_ENTRY: &str = "sample";

/// A class-axis tensor of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TensorDecl {
    /// Its binding's name (and the prefix of its accessors: `name_load`...).
    pub(crate) name: &'static str,
    /// Whether the op writes it.
    pub(crate) writable: bool,
}

const fn read(element: &'static str) -> BindingType {
    BindingType::Array { element, writable: false }
}

const fn write(element: &'static str) -> BindingType {
    BindingType::Array { element, writable: true }
}

impl OpKernel {
    /// Every op kernel.
    #[cfg_attr(not(test), allow(dead_code))] // the registry the naga test walks
    pub(crate) const ALL: [Self; 15] = [
        Self::Softmax,
        Self::SoftmaxBackward,
        Self::CrossEntropy { targets: TargetsKind::Classes, gradient: GradientMode::None },
        Self::CrossEntropy { targets: TargetsKind::Classes, gradient: GradientMode::Separate },
        Self::CrossEntropy { targets: TargetsKind::Classes, gradient: GradientMode::InPlace },
        Self::CrossEntropy { targets: TargetsKind::Probabilities, gradient: GradientMode::None },
        Self::CrossEntropy { targets: TargetsKind::Probabilities, gradient: GradientMode::Separate },
        Self::CrossEntropy { targets: TargetsKind::Probabilities, gradient: GradientMode::InPlace },
        Self::CrossEntropyReduce { targets: TargetsKind::Classes },
        Self::CrossEntropyReduce { targets: TargetsKind::Probabilities },
        Self::Matmul,
        Self::LinearCrossEntropy,
        Self::Distill { gradient: false },
        Self::Distill { gradient: true },
        Self::Sample,
    ];

    /// The op's name, for labels.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Softmax => "softmax",
            Self::SoftmaxBackward => "softmax_backward",
            Self::CrossEntropy { .. } => "cross_entropy",
            Self::CrossEntropyReduce { .. } => "cross_entropy_reduce",
            Self::Matmul => "matmul",
            Self::LinearCrossEntropy => "linear_cross_entropy",
            Self::Distill { .. } => "distill",
            Self::Sample => "sample",
        }
    }

    /// Whether its module computes blocks of a matrix product (`matmul_tile.wgsl`, with
    /// operands `a` and `b`).
    pub(crate) const fn tiles_products(self) -> bool {
        matches!(self, Self::Matmul | Self::LinearCrossEntropy)
    }

    /// Whether it is a row op (run by a strategy's row loop), as opposed to a reduction.
    pub(crate) const fn is_row_op(self) -> bool {
        !matches!(self, Self::CrossEntropyReduce { .. } | Self::Matmul | Self::Sample)
    }

    /// The strategies the op has: every row op has all four.
    pub(crate) const fn strategies(self) -> &'static [Strategy] {
        match self {
            Self::Softmax | Self::SoftmaxBackward | Self::CrossEntropy { .. } | Self::Distill { .. } => &[
                Strategy::ThreadPerRow,
                Strategy::SubgroupPerRow,
                Strategy::WorkgroupPerRow,
                Strategy::SplitRow,
            ],
            // Its shares are laid out as the split's.
            Self::LinearCrossEntropy => &[Strategy::SplitRow],
            Self::CrossEntropyReduce { .. } | Self::Matmul | Self::Sample => &[],
        }
    }

    /// Why the op lacks `strategy`, if it does.
    pub(crate) fn refuses(self, strategy: Strategy) -> Option<&'static str> {
        (!self.strategies().contains(&strategy)).then_some("this op does not have the strategy")
    }

    /// The WGSL parts of the op, in order.
    pub(crate) const fn parts(self) -> &'static [&'static str] {
        match self {
            Self::Softmax => &[SOFTMAX],
            Self::SoftmaxBackward => &[SOFTMAX_BACKWARD],
            Self::CrossEntropy { .. } | Self::LinearCrossEntropy => &[CROSS_ENTROPY_TARGETS, CROSS_ENTROPY],
            Self::CrossEntropyReduce { .. } => &[CROSS_ENTROPY_TARGETS, CROSS_ENTROPY_REDUCE],
            Self::Matmul => &[MATMUL_TILE_PART, MATMUL],
            Self::Distill { .. } => &[CROSS_ENTROPY_TARGETS, DISTILL],
            Self::Sample => &[SAMPLE],
        }
    }

    /// The WGSL parts of the op that build on the strategy's (after it, in order).
    pub(crate) const fn strategy_parts(self) -> &'static [&'static str] {
        match self {
            Self::LinearCrossEntropy => &[MATMUL_TILE_PART, LINEAR_CROSS_ENTROPY],
            _ => &[],
        }
    }

    /// The class-axis tensors, in binding order after the params.
    pub(crate) fn tensors(self) -> Vec<TensorDecl> {
        let tensor = |name, writable| TensorDecl { name, writable };
        match self {
            Self::LinearCrossEntropy => Self::FORWARD.tensors(),
            Self::Softmax => vec![tensor("input", false), tensor("output", true)],
            Self::SoftmaxBackward => vec![tensor("y", false), tensor("dy", false), tensor("dx", true)],
            Self::CrossEntropy { targets, gradient } => {
                let mut tensors = vec![tensor("logits", gradient == GradientMode::InPlace)];
                if gradient == GradientMode::Separate {
                    tensors.push(tensor("grad", true));
                }
                if targets == TargetsKind::Probabilities {
                    tensors.push(tensor("target_probs", false));
                }
                tensors
            }
            Self::Distill { gradient } => {
                let mut tensors = vec![tensor("student", false), tensor("teacher", false)];
                if gradient {
                    tensors.push(tensor("grad", true));
                }
                tensors
            }
            Self::CrossEntropyReduce { .. } | Self::Matmul | Self::Sample => Vec::new(),
        }
    }

    /// The class-axis tensor the op writes, if any.
    pub(crate) fn output_tensor(self) -> Option<&'static str> {
        self.tensors().into_iter().find(|t| t.writable).map(|t| t.name)
    }

    /// The bindings after the params and the tensors (the row kernels' scratch for the
    /// split and the edges is added by the composer).
    pub(crate) fn other_bindings(self) -> Vec<Binding> {
        let binding = |name, ty| Binding { name, ty };
        match self {
            Self::Softmax | Self::SoftmaxBackward => Vec::new(),
            Self::LinearCrossEntropy => {
                let mut bindings = Self::FORWARD.other_bindings();
                // H, W (stored V x D) and b, as the matmul tile names its operands.
                bindings.extend([
                    binding("a", read("u32")),
                    binding("b", read("u32")),
                    binding("bias", read("u32")),
                ]);
                bindings
            }
            Self::CrossEntropy { targets, .. } => {
                let mut bindings = Vec::new();
                if targets == TargetsKind::Classes {
                    bindings.push(binding("targets", read("u32")));
                }
                bindings.extend([
                    binding("weight", read("f32")),
                    // Reduction none: the upstream gradient per row. Mean with class
                    // indices: the totals of the reductions, [0] the total weight.
                    binding("scale", read("f32")),
                    binding("row_loss", write("f32")),
                    binding("argmax", write("u32")),
                    binding("status", write("atomic<u32>")),
                    // Each row's logsumexp, when asked for.
                    binding("lse", write("f32")),
                ]);
                bindings
            }
            Self::CrossEntropyReduce { targets } => {
                let mut bindings = Vec::new();
                if targets == TargetsKind::Classes {
                    bindings.push(binding("targets", read("u32")));
                }
                bindings.extend([
                    binding("weight", read("f32")),
                    binding("row_loss", read("f32")),
                    binding("totals", write("f32")),
                    binding("loss", write("f32")),
                    // The z-loss on its own: each row's logsumexp in, the reduced part out.
                    binding("lse", read("f32")),
                    binding("z_loss", write("f32")),
                ]);
                bindings
            }
            Self::Distill { .. } => vec![
                // The mask's class targets.
                binding("targets", read("u32")),
                // Reduction none: the upstream gradient per row. Batchmean with a mask:
                // the totals of the reductions, [0] the rows counted.
                binding("scale", read("f32")),
                binding("row_loss", write("f32")),
                binding("status", write("atomic<u32>")),
            ],
            Self::Matmul => vec![
                binding("a", read("u32")),
                binding("b", read("u32")),
                binding("bias", read("u32")),
                binding("c", write("f32")),
                // The 16-bit result of `pack_halves`.
                binding("packed", write("u32")),
            ],
            Self::Sample => vec![
                // f32 bits, or two 16-bit halves a word (element 2w low in word w).
                binding("logits", read("u32")),
                binding("ids", write("i32")),
                binding("logprobs", write("f32")),
                // Each row's state between steps: SAMPLE_STATE_WORDS words.
                binding("state", write("u32")),
                binding("status", write("atomic<u32>")),
            ],
        }
    }

    /// The flags the op's parts are preprocessed with (`#if NAME`).
    pub(crate) fn flags(self) -> Vec<(&'static str, bool)> {
        match self {
            Self::Softmax | Self::SoftmaxBackward | Self::Matmul | Self::Sample => Vec::new(),
            Self::LinearCrossEntropy => Self::FORWARD.flags(),
            Self::CrossEntropy { targets, .. } | Self::CrossEntropyReduce { targets } => {
                vec![("PROBABILITIES", targets == TargetsKind::Probabilities), ("CLASS_WEIGHTS", true)]
            }
            // Class targets only as a mask: no weights.
            Self::Distill { .. } => vec![("PROBABILITIES", false), ("CLASS_WEIGHTS", false)],
        }
    }

    /// Constants the op's parts use, written into the module.
    pub(crate) fn constants(self) -> Vec<(&'static str, String)> {
        match self {
            Self::Softmax | Self::SoftmaxBackward | Self::CrossEntropyReduce { .. } => Vec::new(),
            Self::CrossEntropy { gradient, .. } => vec![
                ("HAS_GRADIENT", format!("{}", gradient != GradientMode::None)),
                ("STATUS_CORRECT", format!("{STATUS_CORRECT}u")),
                ("STATUS_BAD_ROWS", format!("{STATUS_BAD_ROWS}u")),
                ("STATUS_FIRST_BAD_ROW", format!("{STATUS_FIRST_BAD_ROW}u")),
            ],
            Self::Matmul => matmul_constants(),
            Self::Distill { .. } => vec![
                ("STATUS_BAD_ROWS", format!("{STATUS_BAD_ROWS}u")),
                ("STATUS_FIRST_BAD_ROW", format!("{STATUS_FIRST_BAD_ROW}u")),
            ],
            Self::LinearCrossEntropy => {
                let mut constants = Self::FORWARD.constants();
                constants.extend(matmul_constants());
                constants
            }
            Self::Sample => vec![
                ("STATUS_BAD_ROWS", format!("{STATUS_BAD_ROWS}u")),
                ("STATUS_FIRST_BAD_ROW", format!("{STATUS_FIRST_BAD_ROW}u")),
                ("STATE_WORDS", format!("{SAMPLE_STATE_WORDS}u")),
                ("PHASE_STATS", format!("{SAMPLE_PHASE_STATS}u")),
                ("PHASE_TOP_K", format!("{SAMPLE_PHASE_TOP_K}u")),
                ("PHASE_MASS", format!("{SAMPLE_PHASE_MASS}u")),
                ("PHASE_TOP_P", format!("{SAMPLE_PHASE_TOP_P}u")),
                ("PHASE_DRAW", format!("{SAMPLE_PHASE_DRAW}u")),
            ],
        }
    }

    /// The overridable constants the op's parts declare, with every value this crate
    /// sets them to (booleans as 0 and 1).
    pub(crate) const fn overrides(self) -> &'static [(&'static str, &'static [u32])] {
        const LOG: (&str, &[u32]) = ("LOG_SOFTMAX", &[0, 1]);
        const TARGETS: [(&str, &[u32]); 4] = [
            ("TARGETS_SIGNED", &[1, 0]),
            ("TARGETS_WIDE", &[0, 1]),
            ("HAS_WEIGHT", &[0, 1]),
            ("REDUCTION", &[1, 0, 2]),
        ];
        const FUSED: [(&str, &[u32]); 8] = [
            TARGETS[0],
            TARGETS[1],
            TARGETS[2],
            TARGETS[3],
            ("HAS_UPSTREAM", &[0, 1]),
            ("ARGMAX", &[0, 1]),
            ("WRITE_LSE", &[0, 1]),
            ("SOFTCAP", &[0, 1]),
        ];
        const MATMUL: [(&str, &[u32]); 6] = [
            ("A_HALF", &[0, 1]),
            ("B_HALF", &[0, 1]),
            ("A_TRANSPOSED", &[0, 1]),
            ("B_TRANSPOSED", &[1, 0]),
            ("ACCUMULATE", &[0, 1]),
            ("HAS_BIAS", &[0, 1]),
        ];
        // H times W stored transposed, always.
        const LINEAR: [(&str, &[u32]); 13] = [
            FUSED[0],
            FUSED[1],
            FUSED[2],
            FUSED[3],
            FUSED[4],
            FUSED[5],
            FUSED[6],
            FUSED[7],
            MATMUL[0],
            MATMUL[1],
            ("A_TRANSPOSED", &[0]),
            ("B_TRANSPOSED", &[1]),
            MATMUL[5],
        ];
        const DISTILL_OVERRIDES: [(&str, &[u32]); 5] =
            [TARGETS[0], TARGETS[1], TARGETS[3], ("HAS_UPSTREAM", &[0, 1]), ("HAS_MASK", &[0, 1])];
        match self {
            Self::Softmax | Self::SoftmaxBackward => &[LOG],
            Self::Distill { .. } => &DISTILL_OVERRIDES,
            Self::CrossEntropy { .. } => &FUSED,
            Self::LinearCrossEntropy => &LINEAR,
            Self::CrossEntropyReduce { .. } => &TARGETS,
            Self::Matmul => &MATMUL,
            Self::Sample => &[],
        }
    }

    /// The fields of the op's `Params` uniform and its size in bytes.
    pub(crate) const fn params_layout(self) -> (&'static [(&'static str, &'static str)], usize) {
        match self {
            Self::Matmul => (&MATMUL_PARAMS_FIELDS, size_of::<MatmulParams>()),
            Self::Sample => (&SAMPLE_PARAMS_FIELDS, size_of::<SampleParams>()),
            _ => (&PARAMS_FIELDS, size_of::<RowParams>()),
        }
    }

    /// Bytes of a `Share` (a max and the op's `Lane`) as the split's scratch stores it (a
    /// test checks it against the composed module).
    pub(crate) const fn share_bytes(self) -> u64 {
        match self {
            Self::Softmax => 12,
            Self::SoftmaxBackward => 8,
            Self::CrossEntropy { .. } | Self::LinearCrossEntropy => 36,
            Self::Distill { .. } => 28,
            Self::CrossEntropyReduce { .. } | Self::Matmul | Self::Sample => 0,
        }
    }
}

impl OpKernel {
    /// The fused cross-entropy the linear cross-entropy's forward is built on.
    const FORWARD: Self = Self::CrossEntropy { targets: TargetsKind::Classes, gradient: GradientMode::None };
}

/// The matmul tile's sizes, as its part reads them.
fn matmul_constants() -> Vec<(&'static str, String)> {
    vec![
        ("SIDE", format!("{MATMUL_SIDE}u")),
        ("PER", format!("{MATMUL_PER}u")),
        ("DEPTH", format!("{MATMUL_DEPTH}u")),
    ]
}
