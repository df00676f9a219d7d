//! How many times a kernel reads each element of a row: the host's twin of the WGSL's
//! register-cache test (`row_cached` and the split's `segment_cached` in
//! `shaders/strategy/`), which the planner sizes workgroups by, the ops pick the kept or the
//! streaming module by, and the explanation reports. A unit test evaluates the WGSL's own
//! functions against it.

use super::Plan;
use crate::kernels::KernelSpec;
use crate::strategy::Strategy;

/// Packets in each block's run of `count` packets shared by `lanes` invocations in blocks
/// of `width`: the WGSL's `run_packets` (`shaders/strategy/rows.wgsl`), in u64.
pub(crate) const fn run_packets(count: u64, lanes: u64, width: u64) -> u64 {
    let blocks = lanes / width;
    (count.div_ceil(blocks)).div_ceil(width) * width
}

/// Packets one invocation of `lanes` sharing a row of `cols` in blocks of `width` walks, as
/// the WGSL's `row_cached` counts them (`row_packets_most`: a row of whole packets spans
/// `cols / packet` packets, any other at most two more).
pub(crate) const fn share_packets(cols: u64, packet: u64, lanes: u64, width: u64) -> u64 {
    run_packets(row_packets_most(cols, packet), lanes, width) / width
}

/// The most packets of `packet` elements a row of `cols` spans: the WGSL's
/// `row_packets_most` (a row of whole packets spans `cols / packet`, any other at most two
/// more, as it may start and end mid-packet).
pub(crate) const fn row_packets_most(cols: u64, packet: u64) -> u64 {
    if cols.is_multiple_of(packet) { cols / packet } else { cols / packet + 2 }
}

/// Packets one invocation's share of a row of `cols` spans under `plan` with the
/// packets of `spec`, as each strategy's WGSL asks its cache test (`row_cached` and the
/// split's `segment_cached`, with the lanes and walk width each strategy passes them).
fn share_of(spec: &KernelSpec, plan: &Plan, cols: usize) -> u64 {
    let packet = u64::from(spec.packet());
    let workgroup = u64::from(spec.workgroup_size());
    let width = u64::from(plan.walk_width).min(workgroup).max(1);
    let cols = cols as u64;
    match plan.strategy {
        Strategy::ThreadPerRow => share_packets(cols, packet, 1, 1),
        Strategy::SubgroupPerRow => {
            let lanes = u64::from(plan.lanes_per_row).max(1);
            share_packets(cols, packet, lanes, lanes)
        }
        Strategy::WorkgroupPerRow => share_packets(cols, packet, workgroup, width),
        Strategy::SplitRow => {
            // The WGSL's `segment_packets`: the row's packets in even segments.
            let segment = row_packets_most(cols, packet).div_ceil((plan.segments as u64).max(1));
            run_packets(segment, workgroup, width) / width
        }
    }
}

/// Whether `spec`'s invocations keep their whole share of each row of `cols` under `plan`
/// in registers (the WGSL's cache test, which the host twins here).
pub(crate) fn keeps_share(spec: &KernelSpec, plan: &Plan, cols: usize) -> bool {
    let cache = u64::from(spec.cache_packets());
    cache != 0 && share_of(spec, plan, cols) <= cache
}

/// How many times `spec` reads each element of a row of `cols` under `plan`, and the most
/// elements one invocation's share spans: the host's twin of the WGSL's cache test. A unit
/// test evaluates the WGSL's own functions against it.
pub(crate) fn reads_per_element(spec: &KernelSpec, plan: &Plan, cols: usize) -> (u32, u64) {
    let kept = keeps_share(spec, plan, cols);
    let split = plan.strategy == Strategy::SplitRow;
    // One look that keeps the share, else two; the split's statistics pass reads once more.
    let reads = u32::from(!kept) + 1 + u32::from(split);
    (reads, share_of(spec, plan, cols) * u64::from(spec.packet()))
}
