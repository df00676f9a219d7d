// Strategy: one workgroup per row, the invocations' shares merged by a tree in shared
// memory. Needs no subgroups. (The tallies are summed by lib/workgroup_sum.wgsl.)

var<workgroup> shared_lanes: array<Lane, WORKGROUP_SIZE>;

// The whole workgroup's lane from each invocation's. Call in uniform control flow.
fn workgroup_merge(local: u32, own: Lane) -> Lane {
    shared_lanes[local] = own;
    workgroupBarrier();
    for (var width = WORKGROUP_SIZE / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            shared_lanes[local] = lane_merge(shared_lanes[local], shared_lanes[local + width]);
        }
        workgroupBarrier();
    }
    let total = shared_lanes[0];
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
    if (local == 0u) {
        // Before the first barrier: no invocation writes an output until after it.
        row_begin(span);
    }
    let own = lane_over(span, span.first_packet + local, span.end_packet, WORKGROUP_SIZE);
    let finished = row_finish(span, workgroup_merge(local, own));
    var tally = 0.0;
    if (write_pass_needed(finished)) {
        tally = workgroup_sum(local, write_over(span, span.first_packet + local, span.end_packet, WORKGROUP_SIZE, finished));
    }
    if (local == 0u) {
        row_done(span, finished, tally);
    }
}
