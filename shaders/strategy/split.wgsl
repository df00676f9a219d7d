// Strategy: each row split across workgroups, one per segment of SEGMENT_PACKETS packets,
// for a few rows so wide that one workgroup per row would leave most of a GPU idle. Two
// passes: each workgroup reduces its segment to a lane (`split_stats`); then each
// workgroup merges its row's segment lanes and writes its segment (`split_write`). Uses
// the workgroup strategy's tree; for ops that write nothing per row but their output.

// One workgroup's segment: its row, and the packets [begin, end) of the row it covers.
struct Segment {
    index: u32,
    row: u32,
    begin: u32,
    end: u32,
}

fn segment_of(group: vec3<u32>) -> Segment {
    let index = flat_group_index(group);
    let row = index / params.segments;
    let begin = row_span(row).first_packet + (index % params.segments) * SEGMENT_PACKETS;
    return Segment(index, row, begin, min(begin + SEGMENT_PACKETS, row_span(row).end_packet));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn split_stats(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // One (row, segment) per workgroup: uniform, so the barriers stay in uniform control.
    let segment = segment_of(group);
    if (segment.row >= params.rows) {
        return;
    }
    let own = lane_over(row_span(segment.row), segment.begin + local, segment.end, WORKGROUP_SIZE);
    let lane = workgroup_merge(local, own);
    if (local == 0u) {
        segment_lanes[segment.index] = lane;
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn split_write(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let segment = segment_of(group);
    if (segment.row >= params.rows) {
        return;
    }
    // Every workgroup of the row merges all its segments' lanes, each invocation a share,
    // then a tree: they all get the same whole-row result.
    var own = lane_empty();
    for (var s = local; s < params.segments; s += WORKGROUP_SIZE) {
        own = lane_merge(own, segment_lanes[segment.row * params.segments + s]);
    }
    let span = row_span(segment.row);
    let finished = row_finish(span, workgroup_merge(local, own));
    write_over(span, segment.begin + local, segment.end, WORKGROUP_SIZE, finished);
}
