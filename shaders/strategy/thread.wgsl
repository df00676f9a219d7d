// Strategy: one invocation per row. Best for narrow rows, where a row is a few loads.

@compute @workgroup_size(WORKGROUP_SIZE)
fn row_kernel(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = flat_group_index(group) * WORKGROUP_SIZE + local;
    if (row >= params.rows) {
        return;
    }
    let span = row_span(row);
    row_begin(span);
    let lane = lane_over(span, span.first_packet, span.end_packet, 1u);
    let finished = row_finish(span, lane);
    var tally = 0.0;
    if (write_pass_needed(finished)) {
        tally = write_over(span, span.first_packet, span.end_packet, 1u, finished);
    }
    row_done(span, finished, tally);
}
