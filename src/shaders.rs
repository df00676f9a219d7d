//! The WGSL sources this crate compiles.
//!
//! WGSL has no `#include`, so each module is the shared helpers (`shaders/common.wgsl`)
//! followed by its kernel files, concatenated here. Specialisation uses
//! pipeline-overridable constants (`override`), not string templates.

const COMMON: &str = include_str!("../shaders/common.wgsl");
const SOFTMAX: &str = include_str!("../shaders/softmax.wgsl");
const SOFTMAX_SUBGROUP: &str = include_str!("../shaders/softmax_subgroup.wgsl");
const SOFTMAX_VEC4: &str = include_str!("../shaders/softmax_vec4.wgsl");
const SOFTMAX_SUBGROUP_VEC4: &str = include_str!("../shaders/softmax_subgroup_vec4.wgsl");
const SOFTMAX_SPLIT: &str = include_str!("../shaders/softmax_split.wgsl");
const SOFTMAX_BACKWARD: &str = include_str!("../shaders/softmax_backward.wgsl");
const SOFTMAX_BACKWARD_SUBGROUP: &str = include_str!("../shaders/softmax_backward_subgroup.wgsl");
const CROSS_ENTROPY_TARGETS: &str = include_str!("../shaders/cross_entropy_targets.wgsl");
const CROSS_ENTROPY: &str = include_str!("../shaders/cross_entropy.wgsl");
const CROSS_ENTROPY_SUBGROUP: &str = include_str!("../shaders/cross_entropy_subgroup.wgsl");
const CROSS_ENTROPY_REDUCE: &str = include_str!("../shaders/cross_entropy_reduce.wgsl");

/// How a module's bindings are laid out (group 0), one entry per binding in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BindingLayout {
    /// Uniform parameters, a read-only input, a writable output.
    Unary,
    /// Uniform parameters, two read-only inputs, a writable output.
    Binary,
    /// Uniform parameters, a read-only input, a writable output, writable scratch.
    UnaryWithScratch,
    /// Parameters, logits (writable, for the in-place gradient), targets, weight, scale,
    /// gradient, row losses, argmax, status.
    CrossEntropy,
    /// Parameters, targets, weight, row losses, totals, reduced loss.
    CrossEntropyReduce,
}

impl BindingLayout {
    /// The binding types, binding 0 first.
    pub(crate) fn bindings(self) -> &'static [wgpu::BufferBindingType] {
        const UNIFORM: wgpu::BufferBindingType = wgpu::BufferBindingType::Uniform;
        const READ: wgpu::BufferBindingType = wgpu::BufferBindingType::Storage { read_only: true };
        const WRITE: wgpu::BufferBindingType = wgpu::BufferBindingType::Storage { read_only: false };
        match self {
            Self::Unary => &[UNIFORM, READ, WRITE],
            Self::Binary => &[UNIFORM, READ, READ, WRITE],
            Self::UnaryWithScratch => &[UNIFORM, READ, WRITE, WRITE],
            Self::CrossEntropy => &[UNIFORM, WRITE, READ, READ, WRITE, WRITE, WRITE, WRITE, WRITE],
            Self::CrossEntropyReduce => &[UNIFORM, READ, READ, READ, WRITE, WRITE],
        }
    }
}

/// One WGSL module of this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    /// Softmax and log-softmax: the thread-per-row and workgroup-per-row strategies.
    Softmax,
    /// Softmax and log-softmax: all of the above plus the subgroup-per-row strategy.
    /// Compiles only on devices with `Features::SUBGROUP`.
    SoftmaxSubgroup,
    /// Softmax and log-softmax with vec4 loads (rows a multiple of 4 long): thread per
    /// row and workgroup per row.
    SoftmaxVec4,
    /// The same plus subgroup per row. Compiles only with `Features::SUBGROUP`.
    SoftmaxVec4Subgroup,
    /// Softmax and log-softmax with each row split across workgroups.
    SoftmaxSplit,
    /// Backward of softmax and log-softmax: thread-per-row and workgroup-per-row.
    SoftmaxBackward,
    /// Backward of softmax and log-softmax, plus the subgroup-per-row strategy.
    SoftmaxBackwardSubgroup,
    /// Fused cross-entropy: the thread-per-row and workgroup-per-row strategies.
    CrossEntropy,
    /// Fused cross-entropy: all of the above plus the subgroup-per-row strategy.
    CrossEntropySubgroup,
    /// The cross-entropy's reductions over rows: total weight and mean or sum.
    CrossEntropyReduce,
}

// What the naga test needs to know of each module is not used at run time.
#[cfg_attr(not(test), allow(dead_code))]
impl Shader {
    /// Every module, in a fixed order.
    pub(crate) const ALL: [Self; 10] = [
        Self::Softmax,
        Self::SoftmaxSubgroup,
        Self::SoftmaxVec4,
        Self::SoftmaxVec4Subgroup,
        Self::SoftmaxSplit,
        Self::SoftmaxBackward,
        Self::SoftmaxBackwardSubgroup,
        Self::CrossEntropy,
        Self::CrossEntropySubgroup,
        Self::CrossEntropyReduce,
    ];

    /// The module's full WGSL source.
    #[must_use]
    pub(crate) fn source(self) -> String {
        self.files().concat()
    }

    /// The files the source is made of, in order.
    #[must_use]
    pub(crate) fn files(self) -> &'static [&'static str] {
        match self {
            Self::Softmax => &[COMMON, SOFTMAX],
            Self::SoftmaxSubgroup => &[COMMON, SOFTMAX, SOFTMAX_SUBGROUP],
            Self::SoftmaxVec4 => &[COMMON, SOFTMAX_VEC4],
            Self::SoftmaxVec4Subgroup => &[COMMON, SOFTMAX_VEC4, SOFTMAX_SUBGROUP_VEC4],
            Self::SoftmaxSplit => &[COMMON, SOFTMAX, SOFTMAX_SPLIT],
            Self::SoftmaxBackward => &[COMMON, SOFTMAX_BACKWARD],
            Self::SoftmaxBackwardSubgroup => &[COMMON, SOFTMAX_BACKWARD, SOFTMAX_BACKWARD_SUBGROUP],
            Self::CrossEntropy => &[COMMON, CROSS_ENTROPY_TARGETS, CROSS_ENTROPY],
            Self::CrossEntropySubgroup => {
                &[COMMON, CROSS_ENTROPY_TARGETS, CROSS_ENTROPY, CROSS_ENTROPY_SUBGROUP]
            }
            Self::CrossEntropyReduce => &[COMMON, CROSS_ENTROPY_TARGETS, CROSS_ENTROPY_REDUCE],
        }
    }

    /// Whether the module uses subgroup operations (`Features::SUBGROUP`).
    #[must_use]
    pub(crate) const fn needs_subgroups(self) -> bool {
        matches!(
            self,
            Self::SoftmaxSubgroup
                | Self::SoftmaxVec4Subgroup
                | Self::SoftmaxBackwardSubgroup
                | Self::CrossEntropySubgroup
        )
    }

    pub(crate) const fn layout(self) -> BindingLayout {
        match self {
            Self::Softmax | Self::SoftmaxSubgroup | Self::SoftmaxVec4 | Self::SoftmaxVec4Subgroup => {
                BindingLayout::Unary
            }
            Self::SoftmaxSplit => BindingLayout::UnaryWithScratch,
            Self::SoftmaxBackward | Self::SoftmaxBackwardSubgroup => BindingLayout::Binary,
            Self::CrossEntropy | Self::CrossEntropySubgroup => BindingLayout::CrossEntropy,
            Self::CrossEntropyReduce => BindingLayout::CrossEntropyReduce,
        }
    }

    /// The compute entry points the module defines.
    #[must_use]
    pub(crate) const fn entry_points(self) -> &'static [&'static str] {
        match self {
            Self::Softmax => &["softmax_thread_per_row", "softmax_workgroup_per_row"],
            Self::SoftmaxSubgroup => {
                &["softmax_thread_per_row", "softmax_workgroup_per_row", "softmax_subgroup_per_row"]
            }
            Self::SoftmaxVec4 => &["softmax_vec4_thread_per_row", "softmax_vec4_workgroup_per_row"],
            Self::SoftmaxVec4Subgroup => &[
                "softmax_vec4_thread_per_row",
                "softmax_vec4_workgroup_per_row",
                "softmax_vec4_subgroup_per_row",
            ],
            Self::SoftmaxSplit => &[
                "softmax_thread_per_row",
                "softmax_workgroup_per_row",
                "softmax_split_stats",
                "softmax_split_write",
            ],
            Self::SoftmaxBackward => {
                &["softmax_backward_thread_per_row", "softmax_backward_workgroup_per_row"]
            }
            Self::SoftmaxBackwardSubgroup => &[
                "softmax_backward_thread_per_row",
                "softmax_backward_workgroup_per_row",
                "softmax_backward_subgroup_per_row",
            ],
            Self::CrossEntropy => &["cross_entropy_thread_per_row", "cross_entropy_workgroup_per_row"],
            Self::CrossEntropySubgroup => &[
                "cross_entropy_thread_per_row",
                "cross_entropy_workgroup_per_row",
                "cross_entropy_subgroup_per_row",
            ],
            Self::CrossEntropyReduce => &[
                "cross_entropy_total_weight",
                "cross_entropy_combine_total_weight",
                "cross_entropy_reduce",
                "cross_entropy_finish",
            ],
        }
    }

    /// Every overridable constant the module declares, with the values this crate
    /// compiles it with (booleans as 0 and 1).
    #[must_use]
    pub(crate) const fn overrides(self) -> &'static [(&'static str, &'static [u32])] {
        const LOG: (&str, &[u32]) = ("LOG_SOFTMAX", &[0, 1]);
        const ROWS: (&str, &[u32]) = ("ROWS_PER_GROUP", &[1, 2, 4, 8, 16]);
        const TARGETS: [(&str, &[u32]); 3] =
            [("TARGET_KIND", &[0, 1, 2]), ("HAS_WEIGHT", &[0, 1]), ("REDUCTION", &[0, 1, 2])];
        const FUSED: [(&str, &[u32]); 6] = [
            TARGETS[0],
            TARGETS[1],
            TARGETS[2],
            ("HAS_UPSTREAM", &[0, 1]),
            ("GRADIENT", &[0, 1, 2]),
            ("ARGMAX", &[0, 1]),
        ];
        const FUSED_SUBGROUP: [(&str, &[u32]); 7] =
            [FUSED[0], FUSED[1], FUSED[2], FUSED[3], FUSED[4], FUSED[5], ROWS];
        match self {
            Self::Softmax | Self::SoftmaxVec4 | Self::SoftmaxSplit | Self::SoftmaxBackward => &[LOG],
            Self::SoftmaxSubgroup | Self::SoftmaxVec4Subgroup | Self::SoftmaxBackwardSubgroup => &[LOG, ROWS],
            Self::CrossEntropy => &FUSED,
            Self::CrossEntropySubgroup => &FUSED_SUBGROUP,
            Self::CrossEntropyReduce => &TARGETS,
        }
    }

    /// A label for wgpu objects and messages.
    #[must_use]
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Self::Softmax => "wgpu-softmax: softmax",
            Self::SoftmaxSubgroup => "wgpu-softmax: softmax (subgroups)",
            Self::SoftmaxVec4 => "wgpu-softmax: softmax (vec4)",
            Self::SoftmaxVec4Subgroup => "wgpu-softmax: softmax (vec4, subgroups)",
            Self::SoftmaxSplit => "wgpu-softmax: softmax (rows split)",
            Self::SoftmaxBackward => "wgpu-softmax: softmax backward",
            Self::SoftmaxBackwardSubgroup => "wgpu-softmax: softmax backward (subgroups)",
            Self::CrossEntropy => "wgpu-softmax: cross-entropy",
            Self::CrossEntropySubgroup => "wgpu-softmax: cross-entropy (subgroups)",
            Self::CrossEntropyReduce => "wgpu-softmax: cross-entropy reductions",
        }
    }
}

#[cfg(test)]
mod translation_tests;
