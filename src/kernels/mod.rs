//! The kernels: each WGSL module is composed, when its pipeline is first built, from
//! parts written once (see `shaders/`):
//!
//! - `lib/`: special values by bit pattern, the online row statistics, a workgroup sum;
//! - `elem/`: element access per storage type (f32, or 16-bit halves through bf16 or f16
//!   conversions), scalar and vector forms, and the strided form for a class axis that is
//!   not last (packets gathered along the axis, scattered back; 16-bit halves stored with
//!   atomics, since neighbouring rows share each word, or whole words where one invocation
//!   takes both rows), instantiated once per tensor;
//! - `strategy/`: the row loops (thread, subgroup, workgroup, split) and the 16-bit edge
//!   pass;
//! - `ops/`: each op's own steps (what a lane accumulates from an element, how two lanes
//!   merge, what a finished row computes, what is written per element).
//!
//! What the host and the WGSL both need (bindings, the `Params` struct, workgroup sizes,
//! the packet size, status word indices) is written here once and generated into the
//! WGSL; a naga test checks the composed modules against it without a GPU.

mod cache;
mod catalog;
mod compose;
mod params;
mod preprocess;
mod slots;

pub(crate) use cache::{KernelKey, PipelineCache};
pub(crate) use catalog::{CHAIN_VERIFY_ENTRY, CHAIN_VERIFY_FLAG_IDS_I64};
pub(crate) use catalog::{
    GradientMode, LINEAR_FINISH, LINEAR_STATS, LINEAR_STORAGE_BINDINGS, LINEAR_WORKGROUP_BYTES,
    MATMUL_COLUMN_SUMS, MATMUL_DEPTH, MATMUL_PACK_HALVES, MATMUL_PER, MATMUL_PRODUCT, MATMUL_SIDE,
    MATMUL_SUM_SLICES, MATMUL_TILE, OpKernel, STATUS_BAD_ROWS, STATUS_CORRECT, STATUS_FIRST_BAD_ROW,
    TargetsKind,
};
pub(crate) use catalog::{LINEAR_SHARE_BYTES, PACKED_EXTRAS_WORDS, SAMPLE_WORKGROUP_SIZE, Skeleton};
pub(crate) use catalog::{
    SAMPLE_BINS, SAMPLE_CANDIDATES, SAMPLE_DRAW_ENTRY, SAMPLE_FLAG_IDS_I64, SAMPLE_FLAG_LOGPROBS,
    SAMPLE_FLAG_MASKED, SAMPLE_FLAG_PROBS, SAMPLE_FLAG_ROW_MIN_P, SAMPLE_FLAG_ROW_TEMPERATURE,
    SAMPLE_FLAG_ROW_TOP_K, SAMPLE_FLAG_ROW_TOP_P, SAMPLE_FLAG_TOP_K_ON, SAMPLE_FLAG_TOP_P_ON, SAMPLE_LEVELS,
    SAMPLE_MAX_COLS, SAMPLE_SEARCH_ENTRY, SAMPLE_STATE_WORDS, SAMPLE_STATS_ENTRY, SAMPLE_STATUS_BAD_SETTINGS,
    SAMPLE_STATUS_FIRST_BAD_SETTINGS, SAMPLE_STEP_DRAW, SAMPLE_STEP_STATS, SAMPLE_STEP_TOP_K,
    SAMPLE_STEP_TOP_P,
};
pub(crate) use compose::compose;
pub(crate) use params::{MatmulParams, RowParams, SampleParams, VerifyParams};
pub(crate) use slots::{Slot, bind};

use crate::dtype::DType;
use crate::strategy::Strategy;

/// How many 32-bit words one access of a class-axis tensor moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum VectorWidth {
    /// One word: an f32, or two 16-bit halves.
    Scalar,
    /// Four words (128 bits): four f32, or eight 16-bit halves. Needs every tensor's
    /// binding rounded up to 16 bytes to lie within its buffer.
    Vec4,
}

impl VectorWidth {
    /// Every width, narrow first.
    #[cfg_attr(not(test), allow(dead_code))] // the registry the naga test walks
    pub(crate) const ALL: [Self; 2] = [Self::Scalar, Self::Vec4];

    /// Words per access.
    pub(crate) const fn words(self) -> u32 {
        match self {
            Self::Scalar => 1,
            Self::Vec4 => 4,
        }
    }
}

/// One WGSL module: an op's kernel for a strategy, a storage type and a vector width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KernelSpec {
    /// The op and its composition-time choices.
    pub(crate) op: OpKernel,
    /// The row loop (ignored by the cross-entropy's reductions).
    pub(crate) strategy: Strategy,
    /// The storage type of every class-axis tensor of the op.
    pub(crate) dtype: DType,
    /// The access width of those tensors.
    pub(crate) vector: VectorWidth,
    /// Whether an invocation keeps its share of a row in registers between its looks at
    /// it ([`CACHE_WORDS`] of each tensor), so that a row that fits is read once. On for
    /// GPUs where the planner finds that every row fits (a row that does not gets the
    /// streaming module, which holds no cache); off for CPU adapters, where the second
    /// read comes from the CPU's caches and the kept packets measured slower.
    pub(crate) cached: bool,
    /// Whether the class axis is strided (`params.inner` elements between one class of a
    /// row and the next, rows off the class axis neighbouring in memory): packets are
    /// gathered along the class axis and scattered back, scalar accesses only, and a 16-bit
    /// output is stored half by half through atomics, since two neighbouring rows share
    /// each word (unless [`KernelSpec::paired`]).
    pub(crate) strided: bool,
    /// Whether an invocation of [`Strategy::ThreadPerRow`] along a strided class axis takes
    /// two neighbouring rows (an even `params.inner`, the first at an even position along
    /// it), whose classes lie side by side in the words of a 16-bit tensor: it then stores
    /// each word of the output whole, with no atomics (see [`KernelSpec::pairs_rows`]).
    pub(crate) paired: bool,
    /// The workgroup of [`Strategy::WorkgroupPerRow`] and [`Strategy::SplitRow`]: how many
    /// invocations, and how they merge their shares.
    pub(crate) group: GroupShape,
}

/// The workgroup of the strategies that give a row (or a segment) a whole workgroup: sized
/// by the planner for the device and the row, so that on a GPU a row of up to
/// `lanes * CACHE_WORDS` words is read from memory once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GroupShape {
    /// Invocations per workgroup: a power of two from 64 to 1024.
    pub(crate) lanes: u32,
    /// Whether the shares merge by subgroup shuffles first, then a tree in shared memory
    /// over one share per subgroup (needs `Features::SUBGROUP` and subgroups of at least
    /// [`SUBGROUP_TREE_MIN_LANES`] lanes): fewer barriers, and a quarter of the shared
    /// memory or less.
    pub(crate) subgroup_tree: bool,
}

impl GroupShape {
    /// What a workgroup per row has unless the planner sizes it: the strategy's
    /// [`Strategy::workgroup_size`], a tree in shared memory.
    pub(crate) const DEFAULT: Self =
        Self { lanes: Strategy::WorkgroupPerRow.workgroup_size(), subgroup_tree: false };

    /// The sizes the planner chooses among, smallest first.
    pub(crate) const LANES: [u32; 3] = [256, 512, 1024];

    /// Bytes of workgroup memory the row loop of a workgroup of this shape declares for an
    /// op whose share takes `share_bytes`: the tree's shares and the workgroup sum's
    /// floats. A unit test checks it against every composed module.
    pub(crate) const fn workgroup_bytes(self, share_bytes: u64) -> u64 {
        let shares = if self.subgroup_tree { self.lanes / SUBGROUP_TREE_MIN_LANES } else { self.lanes };
        shares as u64 * share_bytes + 4 * self.lanes as u64
    }
}

/// The smallest subgroup the subgroup tree allows for: its shared array holds one share per
/// subgroup of at least this many lanes (WebGPU promises 4 or more).
pub(crate) const SUBGROUP_TREE_MIN_LANES: u32 = 4;

impl KernelSpec {
    /// Elements per packet: what one invocation loads at a time from each tensor.
    pub(crate) const fn packet(&self) -> u32 {
        self.dtype.format().packet(self.vector.words())
    }

    /// Packets an invocation keeps between its looks at its share of a row: [`CACHE_WORDS`]
    /// words of each tensor (32 f32 or 64 16-bit elements), and one packet more, for rows
    /// that start and end mid-packet (a row's share that fits is read once).
    ///
    /// A paired invocation keeps two rows, each in half of that (rounded down), so that it
    /// holds no more registers than an invocation with one row.
    pub(crate) const fn cache_packets(&self) -> u32 {
        match (self.cached, self.paired) {
            (false, _) => 0,
            (true, false) => cache_packets(self.vector),
            (true, true) => cache_packets(self.vector) / 2,
        }
    }

    /// Bytes one access moves: what a binding's size is rounded up to.
    pub(crate) const fn access_bytes(&self) -> u64 {
        4 * self.vector.words() as u64
    }

    /// Invocations per workgroup of the row kernel.
    pub(crate) fn workgroup_size(&self) -> u32 {
        match self.op.decl().skeleton {
            Skeleton::Rows { .. } => match self.strategy {
                Strategy::WorkgroupPerRow | Strategy::SplitRow => self.group.lanes,
                Strategy::ThreadPerRow | Strategy::SubgroupPerRow => self.strategy.workgroup_size(),
            },
            Skeleton::Own { workgroup_size, .. } => workgroup_size,
        }
    }

    /// The storage buffers the module binds (every binding but the params uniform): what
    /// the device's `max_storage_buffers_per_shader_stage` must allow.
    pub(crate) fn storage_bindings(&self) -> u32 {
        storage_count(&compose::bindings(*self))
    }

    /// Whether the module needs `Features::SUBGROUP`.
    pub(crate) fn needs_subgroups(&self) -> bool {
        self.op.is_row_op()
            && match self.strategy {
                Strategy::SubgroupPerRow => true,
                Strategy::WorkgroupPerRow | Strategy::SplitRow => self.group.subgroup_tree,
                Strategy::ThreadPerRow => false,
            }
    }

    /// Whether the op writes a 16-bit class-axis tensor, and so needs the edge pass for
    /// words that two rows share.
    pub(crate) fn has_edges(&self) -> bool {
        self.op.is_row_op() && self.dtype != DType::F32 && self.op.output_tensor().is_some() && !self.strided
    }

    /// Whether the module declares `tensor` of the op as an array of atomic words: a 16-bit
    /// tensor the op writes along a strided class axis, where the rows are not paired.
    pub(crate) fn atomic_tensor(&self, writable: bool) -> bool {
        self.strided && writable && self.dtype != DType::F32 && !self.paired
    }

    /// Whether this module's rows of `inner` go two to an invocation
    /// ([`KernelSpec::paired`]): one invocation per row along a strided class axis, 16-bit
    /// storage, and `inner` even, so that the two rows of every pair (positions 2j and
    /// 2j + 1 along it) share each word of the tensors and no other row does. The choice
    /// depends on nothing else (not on whether the op writes a class-axis tensor), so that
    /// every row kernel an op records under one plan agrees with the plan's grid.
    pub(crate) fn pairs_rows(&self, inner: usize) -> bool {
        self.op.is_row_op()
            && self.strategy == Strategy::ThreadPerRow
            && self.strided
            && self.dtype.format().per_word() == 2
            && inner.is_multiple_of(2)
    }

    /// A label for wgpu objects and messages.
    pub(crate) fn label(&self) -> String {
        let cache = match (self.cached, self.strided, self.paired) {
            (false, false, _) => "",
            (true, false, _) => ", cached",
            (false, true, false) => ", strided",
            (true, true, false) => ", cached, strided",
            (false, true, true) => ", strided, paired",
            (true, true, true) => ", cached, strided, paired",
        };
        let group = match self.strategy {
            Strategy::WorkgroupPerRow | Strategy::SplitRow if self.group != GroupShape::DEFAULT => format!(
                ", {} lanes{}",
                self.group.lanes,
                if self.group.subgroup_tree { ", subgroup tree" } else { "" }
            ),
            _ => String::new(),
        };
        format!(
            "wgpu-softmax: {} ({:?}, {}, {:?}{cache}{group})",
            self.op.decl().name,
            self.strategy,
            self.dtype,
            self.vector
        )
    }

    /// Every module this crate can compose, in a fixed order: for each op kernel, each
    /// strategy it has (one module for a kernel with its own skeleton), and each of the
    /// storage types, access widths and variants its declaration lists (strided: scalar
    /// accesses only; paired where [`KernelSpec::pairs_rows`] allows).
    pub(crate) fn all() -> Vec<Self> {
        let mut all = Vec::new();
        for op in OpKernel::ALL {
            let decl = op.decl();
            let strategies: &[Strategy] = match decl.skeleton {
                Skeleton::Rows { strategies, .. } => strategies,
                Skeleton::Own { .. } => &[Strategy::WorkgroupPerRow],
            };
            let variants = decl.variants;
            let cached: &[bool] = if variants.cached { &[false, true] } else { &[false] };
            let strided: &[bool] = if variants.strided { &[false, true] } else { &[false] };
            for &strategy in strategies {
                // A workgroup per row also at its widest, merged through subgroups: the
                // shape of the GPUs' kernels (the same parts at another size).
                let wide = GroupShape { lanes: 1024, subgroup_tree: true };
                let groups: &[GroupShape] = match (decl.skeleton, strategy) {
                    (Skeleton::Rows { .. }, Strategy::WorkgroupPerRow | Strategy::SplitRow) => {
                        &[GroupShape::DEFAULT, wide]
                    }
                    _ => &[GroupShape::DEFAULT],
                };
                for &dtype in variants.dtypes {
                    for &vector in variants.vectors {
                        for &cached in cached {
                            for &strided in strided {
                                for &group in groups {
                                    if !strided || vector == VectorWidth::Scalar {
                                        let spec = Self {
                                            op,
                                            strategy,
                                            dtype,
                                            vector,
                                            cached,
                                            strided,
                                            paired: false,
                                            group,
                                        };
                                        all.push(spec);
                                        // An even `inner` pairs the rows.
                                        if spec.pairs_rows(2) {
                                            all.push(Self { paired: true, ..spec });
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        all
    }
}

/// 32-bit words of each class-axis tensor an invocation keeps in registers between its
/// looks at its share of a row: 32 f32, or 64 16-bit elements.
pub(crate) const CACHE_WORDS: u32 = 32;

/// Packets of accesses of `vector` words a cached module keeps per tensor:
/// [`CACHE_WORDS`], and one packet more for a row that starts and ends mid-packet.
pub(crate) const fn cache_packets(vector: VectorWidth) -> u32 {
    CACHE_WORDS / vector.words() + 1
}

/// The most bindings any module declares (a test checks every module against it): the
/// context keeps that many placeholder buffers for bindings a dispatch leaves unused.
pub(crate) const MAX_BINDINGS: usize = 15;

/// Invocations per workgroup of the cross-entropy's reductions over rows.
pub(crate) const REDUCE_WORKGROUP_SIZE: u32 = 256;

/// Invocations per workgroup of the 16-bit edge pass (one per row).
pub(crate) const EDGE_WORKGROUP_SIZE: u32 = 64;

/// Elements per segment of [`Strategy::SplitRow`], before rounding to whole packets.
pub(crate) const SPLIT_SEGMENT_ELEMENTS: u32 = 4096;

/// The row kernel's entry point, on every strategy but the split.
pub(crate) const ROW_KERNEL: &str = "row_kernel";
/// The split strategy's two passes.
pub(crate) const SPLIT_STATS: &str = "split_stats";
/// The split strategy's write pass.
pub(crate) const SPLIT_WRITE: &str = "split_write";
/// The 16-bit edge pass.
pub(crate) const FIX_EDGES: &str = "fix_edges";

/// How a binding is declared, and so how it is laid out for wgpu.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BindingType {
    /// The `Params` uniform.
    Params,
    /// A class-axis tensor: an array of the storage type's words, at the vector width.
    Tensor {
        /// Whether the op writes it.
        writable: bool,
    },
    /// Read-only 32-bit words loaded at the module's access width (a matrix product's
    /// operands: `vec4<u32>` in 128-bit modules).
    Words,
    /// An array of `element` (`u32`, `f32`, `atomic<u32>`, `Share`).
    Array {
        /// The WGSL element type.
        element: &'static str,
        /// Whether the op writes it.
        writable: bool,
    },
}

impl BindingType {
    /// The wgpu binding type.
    pub(crate) const fn wgpu(self) -> wgpu::BufferBindingType {
        match self {
            Self::Params => wgpu::BufferBindingType::Uniform,
            Self::Tensor { writable } | Self::Array { writable, .. } => {
                wgpu::BufferBindingType::Storage { read_only: !writable }
            }
            Self::Words => wgpu::BufferBindingType::Storage { read_only: true },
        }
    }
}

/// One binding of a module, in binding order (binding i is the i-th).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Binding {
    /// What it holds; its WGSL name is the slot's.
    pub(crate) slot: Slot,
    /// How it is declared.
    pub(crate) ty: BindingType,
    /// Whether a dispatch may leave it unbound (a placeholder is bound): an absent
    /// option's array, or what one of the module's passes does not use.
    pub(crate) optional: bool,
}

/// A composed module: its source and what the host needs to know of it.
#[derive(Clone, Debug)]
#[cfg_attr(not(test), allow(dead_code))] // entry points and overrides: for the naga test
pub(crate) struct Module {
    /// What it is.
    pub(crate) spec: KernelSpec,
    /// The WGSL.
    pub(crate) source: String,
    /// Its bindings (group 0), in binding order.
    pub(crate) bindings: Vec<Binding>,
    /// Its compute entry points.
    pub(crate) entry_points: Vec<&'static str>,
    /// Its overridable constants and the values this crate sets them to.
    pub(crate) overrides: Vec<(&'static str, &'static [u32])>,
}

/// How many of `bindings` are storage buffers.
fn storage_count(bindings: &[Binding]) -> u32 {
    u32::try_from(bindings.iter().filter(|b| b.ty != BindingType::Params).count()).unwrap_or(u32::MAX)
}

/// The most storage buffers per shader stage that the modules of every op need: the op
/// kernels without a fallback (a device that cannot bind the wide cross-entropy takes its
/// packed kernel; one that cannot bind the linear cross-entropy's fused forward takes
/// windows of logits through the cross-entropy's modules), each on its leanest strategy
/// (the planner takes a strategy whose modules the device can bind).
pub(crate) fn required_storage_bindings() -> u32 {
    let all = KernelSpec::all();
    OpKernel::ALL
        .into_iter()
        .filter(|op| op.decl().fallback.is_none())
        .map(|op| {
            let mine = || all.iter().filter(move |spec| spec.op == op);
            let mut strategies: Vec<Strategy> = mine().map(|spec| spec.strategy).collect();
            strategies.dedup();
            strategies
                .into_iter()
                .map(|strategy| {
                    mine()
                        .filter(|spec| spec.strategy == strategy)
                        .map(KernelSpec::storage_bindings)
                        .max()
                        .unwrap_or(0)
                })
                .min()
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

/// The most storage buffers per shader stage that any module binds: with that many, every
/// op takes its fastest path.
pub(crate) fn preferred_storage_bindings() -> u32 {
    KernelSpec::all().into_iter().map(|spec| spec.storage_bindings()).max().unwrap_or(0)
}

/// Checks that a device allowing `available` storage buffers per shader stage can bind
/// the `required` of a module.
///
/// # Errors
///
/// [`Error::LimitExceeded`] naming `max_storage_buffers_per_shader_stage`.
pub(crate) fn check_storage_bindings(required: u32, available: u32) -> crate::error::Result<()> {
    if required > available {
        return Err(crate::error::Error::LimitExceeded {
            limit: "max_storage_buffers_per_shader_stage",
            required: u64::from(required),
            available: u64::from(available),
        });
    }
    Ok(())
}

impl Module {
    /// The storage buffers it binds.
    pub(crate) fn storage_bindings(&self) -> u32 {
        storage_count(&self.bindings)
    }

    /// The wgpu binding types, binding 0 first.
    pub(crate) fn layout(&self) -> Vec<wgpu::BufferBindingType> {
        self.bindings.iter().map(|b| b.ty.wgpu()).collect()
    }
}

#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod translation_tests;

#[cfg(test)]
mod limits_tests {
    use super::*;

    #[test]
    fn storage_bindings_are_counted_as_composed() {
        for spec in KernelSpec::all() {
            let module = compose(spec).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
            assert_eq!(spec.storage_bindings(), module.storage_bindings(), "{}", spec.label());
        }
    }

    #[test]
    fn every_op_is_bounded_by_the_required_storage_bindings() {
        let required = required_storage_bindings();
        let preferred = preferred_storage_bindings();
        let most = |packed: bool| {
            KernelSpec::all()
                .into_iter()
                .filter(|s| matches!(s.op, OpKernel::CrossEntropy { packed: p, .. } if p == packed))
                .map(|s| s.storage_bindings())
                .max()
                .unwrap_or(0)
        };
        // Every op fits WebGPU's default of 8 (issue 27): the wide cross-entropy binds more,
        // and gives way to its packed kernel; the linear cross-entropy's fused forward is
        // the largest of all, and gives way to windows of stored logits.
        assert_eq!(required, 8);
        assert!(most(true) <= required && most(false) > required, "{} {}", most(true), most(false));
        assert!(preferred >= LINEAR_STORAGE_BINDINGS, "{required} {preferred}");
        // Every op's chain of fallbacks ends in a kernel without one, within a few steps.
        for op in OpKernel::ALL {
            let mut kernel = op;
            for _ in 0..3 {
                kernel = kernel.decl().fallback.unwrap_or(kernel);
            }
            assert!(kernel.decl().fallback.is_none(), "{op:?}: its fallbacks go round");
        }
        // What the pipeline cache refuses, and what it lets through.
        assert!(matches!(
            check_storage_bindings(required, 4),
            Err(crate::error::Error::LimitExceeded { limit: "max_storage_buffers_per_shader_stage", .. })
        ));
        assert!(check_storage_bindings(required, required).is_ok());
    }
}
