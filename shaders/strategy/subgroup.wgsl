// Strategy: one subgroup per row, the lanes' shares merged by a butterfly of subgroup
// shuffles (every lane ends with the same whole-row result). Needs Features::SUBGROUP.
//
// The subgroup size is read at run time, never assumed: each workgroup owns
// ROWS_PER_GROUP consecutive rows and its subgroups take them in turn, so the result is
// right for any subgroup size; the host only tunes ROWS_PER_GROUP to the adapter.

override ROWS_PER_GROUP: u32 = 8u;

fn subgroup_merge(own: Lane, lanes: u32) -> Lane {
    var lane = own;
    for (var mask = 1u; mask < lanes; mask <<= 1u) {
        lane = lane_merge(lane, lane_shuffle_xor(lane, mask));
    }
    return lane;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn row_kernel(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
    @builtin(subgroup_invocation_id) lane_index: u32,
    @builtin(subgroup_size) subgroup_size: u32,
) {
    // A subgroup wider than the workgroup holds only the workgroup's invocations.
    let lanes = min(subgroup_size, WORKGROUP_SIZE);
    let first_row = flat_group_index(group) * ROWS_PER_GROUP;
    // Both conditions are the same for every lane of a subgroup, so the shuffles below
    // run in subgroup-uniform control flow.
    for (var r = subgroup; r < ROWS_PER_GROUP; r += subgroups) {
        let row = first_row + r;
        if (row < params.rows) {
            let span = row_span(row);
            row_begin(span);
            let own = lane_over(span, span.first_packet + lane_index, span.end_packet, lanes);
            let finished = row_finish(span, subgroup_merge(own, lanes));
            var tally = 0.0;
            if (write_pass_needed(finished)) {
                tally = subgroupAdd(write_over(span, span.first_packet + lane_index, span.end_packet, lanes, finished));
            }
            if (lane_index == 0u) {
                row_done(span, finished, tally);
            }
        }
    }
}
