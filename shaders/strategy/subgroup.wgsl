// Strategy: LANES_PER_ROW lanes of a subgroup per row, their shares merged by a
// butterfly of subgroup shuffles (every lane ends with the same whole-row result). Narrow
// rows take a few lanes each, several rows to a subgroup, so that neighbouring lanes read
// neighbouring addresses and no barrier is needed; wide rows take a whole subgroup. Needs
// Features::SUBGROUP.
//
// The subgroup size is read at run time, never assumed: LANES_PER_ROW is at most the
// smallest size the adapter may use, and each workgroup owns ROWS_PER_GROUP consecutive
// rows that its subgroups take in turn, so the result is right for any subgroup size.

override ROWS_PER_GROUP: u32 = 8u;
// A power of two, at most the adapter's smallest subgroup size.
override LANES_PER_ROW: u32 = 8u;

fn subgroup_merge(own: Share) -> Share {
    var share = own;
    for (var mask = 1u; mask < LANES_PER_ROW; mask <<= 1u) {
        share = share_merge(share, share_shuffle_xor(share, mask));
    }
    return share;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn row_kernel(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
    @builtin(subgroup_invocation_id) lane_index: u32,
    @builtin(subgroup_size) subgroup_size: u32,
#if FOLDS
    @builtin(local_invocation_index) local: u32,
    @builtin(num_workgroups) grid: vec3<u32>,
#endif
) {
    // A subgroup wider than the workgroup holds only the workgroup's invocations.
    let rows_at_once = min(subgroup_size, WORKGROUP_SIZE) / LANES_PER_ROW;
    let slot = lane_index / LANES_PER_ROW;
    let lane_in_row = lane_index % LANES_PER_ROW;
    let first_row = flat_group_index(group) * ROWS_PER_GROUP;
    let cached = row_cached(LANES_PER_ROW, LANES_PER_ROW);
    var cache: PacketCache;
    // The loop runs the same number of times on every lane of a subgroup, so the
    // shuffles below run in subgroup-uniform control flow; lanes without a row (past the
    // chunk, or past the workgroup's rows) take part with an empty share.
    for (var base = subgroup * rows_at_once; base < ROWS_PER_GROUP; base += subgroups * rows_at_once) {
        let row = first_row + base + slot;
        let has_row = base + slot < ROWS_PER_GROUP && row < params.rows;
        let span = row_span(row);
        let walk = walk_of(span.first_packet, span.end_packet, lane_in_row, LANES_PER_ROW, LANES_PER_ROW);
        var own = share_empty();
        if (has_row) {
            row_begin(span);
            own = share_over(span, walk, &cache, cached);
        }
        let total = subgroup_merge(own);
        if (has_row) {
            let finished = row_finish(span, total.lane, total.max);
            if (lane_in_row == 0u) {
                row_done(span, finished);
            }
            write_over(span, walk, finished, own, &cache, cached);
        }
    }
#if FOLDS
    group_done(local, grid.x * grid.y);
#endif
}
