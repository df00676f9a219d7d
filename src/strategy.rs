//! [`Strategy`]: how the rows of a matrix are spread over GPU invocations.

/// How the rows of a matrix are spread over GPU invocations. Every strategy computes the
/// same function; they differ in speed by shape and adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// One invocation per row: best for narrow rows (a few to a few dozen classes).
    ThreadPerRow,
    /// One subgroup per row, reduced with subgroup operations. Needs
    /// `wgpu::Features::SUBGROUP`.
    SubgroupPerRow,
    /// One workgroup per row, reduced in shared memory (after subgroup shuffles where the
    /// device has subgroups). Runs on every adapter; best for wide rows. 256 invocations,
    /// or up to 1024 where the planner sizes the workgroup so that a kept row fits its
    /// registers.
    WorkgroupPerRow,
    /// Each row split across workgroups of 256 invocations, one per segment of
    /// 4096 columns: a statistics pass (the cross-entropy's merges its segments' partial
    /// statistics, loss sums included), then a write pass. For a few rows so wide that one
    /// workgroup per row would leave a GPU idle, and for rows too wide for the others on a
    /// driver that limits loop iterations. Every op has it (softmax, log-softmax, their
    /// backward passes, the cross-entropy; the linear cross-entropy's shares are laid out
    /// as its segments); it is not in [`Strategy::ALL`], which lists the strategies that
    /// give each row to one invocation, subgroup or workgroup.
    SplitRow,
}

impl Strategy {
    /// The three strategies that give each row whole to one invocation, subgroup or
    /// workgroup, in a fixed order. Every op has them, and [`Strategy::SplitRow`] too,
    /// which is left out here: add it to go through every strategy.
    pub const ALL: [Self; 3] = [Self::ThreadPerRow, Self::SubgroupPerRow, Self::WorkgroupPerRow];

    /// Invocations in one workgroup of this strategy's kernel, unless the planner sizes
    /// it ([`crate::Plan::workgroup_size`] tells what a plan runs).
    #[must_use]
    pub const fn workgroup_size(self) -> u32 {
        match self {
            Self::ThreadPerRow | Self::SubgroupPerRow => 64,
            Self::WorkgroupPerRow | Self::SplitRow => 256,
        }
    }
}
