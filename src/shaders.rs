//! The WGSL sources this crate compiles.
//!
//! WGSL has no `#include`, so each module is the shared helpers (`shaders/common.wgsl`)
//! followed by its kernel files, concatenated here. Specialisation uses
//! pipeline-overridable constants (`override`), not string templates.

const COMMON: &str = include_str!("../shaders/common.wgsl");
const SOFTMAX: &str = include_str!("../shaders/softmax.wgsl");
const SOFTMAX_SUBGROUP: &str = include_str!("../shaders/softmax_subgroup.wgsl");

/// One WGSL module of this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    /// Softmax and log-softmax: the thread-per-row and workgroup-per-row strategies.
    Softmax,
    /// Softmax and log-softmax: all of the above plus the subgroup-per-row strategy.
    /// Compiles only on devices with `Features::SUBGROUP`.
    SoftmaxSubgroup,
}

impl Shader {
    /// Every module, in a fixed order.
    pub const ALL: [Self; 2] = [Self::Softmax, Self::SoftmaxSubgroup];

    /// The module's full WGSL source.
    #[must_use]
    pub fn source(self) -> String {
        self.files().concat()
    }

    /// The files the source is made of, in order.
    #[must_use]
    pub fn files(self) -> &'static [&'static str] {
        match self {
            Self::Softmax => &[COMMON, SOFTMAX],
            Self::SoftmaxSubgroup => &[COMMON, SOFTMAX, SOFTMAX_SUBGROUP],
        }
    }

    /// Whether the module uses subgroup operations (`Features::SUBGROUP`).
    #[must_use]
    pub const fn needs_subgroups(self) -> bool {
        matches!(self, Self::SoftmaxSubgroup)
    }

    /// The compute entry points the module defines.
    #[must_use]
    pub const fn entry_points(self) -> &'static [&'static str] {
        match self {
            Self::Softmax => &["softmax_thread_per_row", "softmax_workgroup_per_row"],
            Self::SoftmaxSubgroup => {
                &["softmax_thread_per_row", "softmax_workgroup_per_row", "softmax_subgroup_per_row"]
            }
        }
    }

    /// A label for wgpu objects and messages.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Softmax => "wgpu-softmax: softmax",
            Self::SoftmaxSubgroup => "wgpu-softmax: softmax (subgroups)",
        }
    }
}
