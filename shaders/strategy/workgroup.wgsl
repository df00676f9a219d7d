// Strategy: one workgroup per row, the invocations' shares merged by a tree in shared
// memory. Needs no subgroups.

var<workgroup> shared_shares: array<Share, WORKGROUP_SIZE>;

// Neighbouring invocations that walk one contiguous run of a row together (see
// `walk_of`): a power of two; the whole workgroup (the plain interleave) unless the host
// sets the adapter's SIMD width.
override WALK_WIDTH: u32 = WORKGROUP_SIZE;

fn walk_width() -> u32 {
    return min(WALK_WIDTH, WORKGROUP_SIZE);
}

// The whole workgroup's share from each invocation's. Call in uniform control flow.
fn workgroup_merge(local: u32, own: Share) -> Share {
    shared_shares[local] = own;
    workgroupBarrier();
    for (var width = WORKGROUP_SIZE / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            shared_shares[local] = share_merge(shared_shares[local], shared_shares[local + width]);
        }
        workgroupBarrier();
    }
    let total = shared_shares[0];
    // Nobody overwrites the tree's root before everyone has read it.
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn row_kernel(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // The row is the same for the whole workgroup, so this return keeps the barriers
    // below in uniform control flow.
    let row = flat_group_index(group);
    if (row >= params.rows) {
        return;
    }
    let span = row_span(row);
    row_begin(span);
    var cache: PacketCache;
    let cached = row_cached(WORKGROUP_SIZE, walk_width());
    let walk = walk_of(span.first_packet, span.end_packet, local, WORKGROUP_SIZE, walk_width());
    let own = share_over(span, walk, &cache, cached);
    let total = workgroup_merge(local, own);
    let finished = row_finish(span, total.lane, total.max);
    if (local == 0u) {
        row_done(span, finished);
    }
    write_over(span, walk, finished, own, &cache, cached);
}
