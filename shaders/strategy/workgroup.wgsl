// Strategy: one workgroup per row, the invocations' shares merged by a tree in shared
// memory. Needs no subgroups; where the device has them (SUBGROUPS), each subgroup first
// merges its lanes' shares by shuffles, and the tree takes one share per subgroup.

#if SUBGROUPS
// One share per subgroup, for subgroups of at least SUBGROUP_TREE_MIN_LANES lanes.
var<workgroup> shared_shares: array<Share, WORKGROUP_SIZE / SUBGROUP_TREE_MIN_LANES>;
#else
var<workgroup> shared_shares: array<Share, WORKGROUP_SIZE>;
#endif

// Neighbouring invocations that walk one contiguous run of a row together (see
// `walk_of`): a power of two; the whole workgroup (the plain interleave) unless the host
// sets the adapter's SIMD width.
override WALK_WIDTH: u32 = WORKGROUP_SIZE;

fn walk_width() -> u32 {
    return min(WALK_WIDTH, WORKGROUP_SIZE);
}

#if SUBGROUPS
// Where an invocation sits in its workgroup, and among the workgroup's subgroups. (The
// workgroup's own builtins are parameters of their own: a struct holding a non-uniform
// member is non-uniform as a whole in WGSL's uniformity analysis.)
struct Place {
    @builtin(local_invocation_index) local: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
}

// The whole workgroup's share from each invocation's: a butterfly within each subgroup,
// then a tree over the subgroups' shares (a power of two of them: the workgroup and the
// subgroup sizes are). Call in uniform control flow.
fn workgroup_merge(place: Place, own: Share) -> Share {
    var share = own;
    for (var mask = 1u; mask < place.lanes; mask <<= 1u) {
        share = share_merge(share, share_shuffle_xor(share, mask));
    }
    if (place.lane == 0u) {
        shared_shares[place.subgroup] = share;
    }
    workgroupBarrier();
    for (var width = place.subgroups / 2u; width > 0u; width /= 2u) {
        if (place.local < width) {
            shared_shares[place.local] = share_merge(shared_shares[place.local], shared_shares[place.local + width]);
        }
        workgroupBarrier();
    }
    let total = shared_shares[0];
    // Nobody overwrites the tree's root before everyone has read it.
    workgroupBarrier();
    return total;
}
#else
// Where an invocation sits in its workgroup. (The workgroup's own builtins are
// parameters of their own: a struct holding a non-uniform member is non-uniform as a
// whole in WGSL's uniformity analysis.)
struct Place {
    @builtin(local_invocation_index) local: u32,
}

// The whole workgroup's share from each invocation's. Call in uniform control flow.
fn workgroup_merge(place: Place, own: Share) -> Share {
    let local = place.local;
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
#endif

@compute @workgroup_size(WORKGROUP_SIZE)
fn row_kernel(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    place: Place,
) {
    // The row is the same for the whole workgroup, so this branch keeps the barriers
    // inside it in uniform control flow.
    let row = flat_group_index(group);
    if (row < params.rows) {
        workgroup_row(place, row);
    }
#if FOLDS
    // Every workgroup of the grid, the surplus ones too, after its row.
    group_done(place.local, grid.x * grid.y);
#endif
}

// The row kernel's work on one row.
fn workgroup_row(place: Place, row: u32) {
    let local = place.local;
    let span = row_span(row);
    row_begin(span);
    var cache: PacketCache;
    let cached = row_cached(WORKGROUP_SIZE, walk_width());
    let walk = walk_of(span.first_packet, span.end_packet, local, WORKGROUP_SIZE, walk_width());
    let own = share_over(span, walk, &cache, cached);
    let total = workgroup_merge(place, own);
    let finished = row_finish(span, total.lane, total.max);
    if (local == 0u) {
        row_done(span, finished);
    }
    write_over(span, walk, finished, own, &cache, cached);
}
