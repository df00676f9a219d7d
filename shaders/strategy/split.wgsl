// Strategy: each row split across workgroups, one per segment (params.segments of them, in
// even parts: `segment_packets`), for a few rows so wide that one workgroup per row would
// leave most of a GPU idle. Two
// passes, so each element is read twice: each workgroup reduces its segment to a share
// (`split_stats`); then each workgroup takes its segment's share again, merges its row's
// segment shares, and writes its segment (`split_write`), the row's first also what the op
// writes per row. Uses the workgroup strategy's tree.

// One workgroup's segment: its row, and the packets [begin, end) of the row it covers.
struct Segment {
    index: u32,
    row: u32,
    begin: u32,
    end: u32,
}

// Packets per segment: as many packets as any row spans, cut into params.segments even
// parts (the host picks the count; see `split_segments` in the planner).
fn segment_packets() -> u32 {
    return (row_packets_most() + params.segments - 1u) / params.segments;
}

fn segment_of(group: vec3<u32>) -> Segment {
    let index = flat_group_index(group);
    let row = index / params.segments;
    let span = row_span(row);
    // A row that spans fewer packets than the most may leave its last segment short, or
    // (clamped here) empty.
    let begin = min(span.first_packet + (index % params.segments) * segment_packets(), span.end_packet);
    return Segment(index, row, begin, min(begin + segment_packets(), span.end_packet));
}

// Whether a segment's packets fit the cache of a workgroup's invocations: the same answer
// for every segment of the dispatch.
fn segment_cached() -> bool {
    return CACHE_PACKETS != 0u && run_packets(segment_packets(), WORKGROUP_SIZE, walk_width()) / walk_width() <= CACHE_PACKETS;
}

// The walk of invocation `local` over its workgroup's segment.
fn segment_walk(segment: Segment, local: u32) -> Walk {
    return walk_of(segment.begin, segment.end, local, WORKGROUP_SIZE, walk_width());
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn split_stats(@builtin(workgroup_id) group: vec3<u32>, place: Place) {
    let local = place.local;
    // One (row, segment) per workgroup: uniform, so the barriers stay in uniform control.
    let segment = segment_of(group);
    if (segment.row >= params.rows) {
        return;
    }
    var cache: PacketCache;
    let span = row_span(segment.row);
    row_begin(span);
    let own = share_over(span, segment_walk(segment, local), &cache, segment_cached());
    let share = workgroup_merge(place, own);
    if (local == 0u) {
        segment_shares[segment.index] = share;
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn split_write(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    place: Place,
) {
    // One (row, segment) per workgroup: uniform, so the barriers stay in uniform control.
    let segment = segment_of(group);
    if (segment.row < params.rows) {
        segment_write(place, segment);
    }
#if FOLDS
    // Every workgroup of the grid, the surplus ones too, after its segment.
    group_done(place.local, grid.x * grid.y);
#endif
}

// The write pass's work on one segment of a row.
fn segment_write(place: Place, segment: Segment) {
    let local = place.local;
    let span = row_span(segment.row);
    row_begin(span);
    var cache: PacketCache;
    let cached = segment_cached();
    let own = share_over(span, segment_walk(segment, local), &cache, cached);
    let finished = merged_row(span, place);
    if (segment.index % params.segments == 0u && local == 0u) {
        row_done(span, finished);
    }
    write_over(span, segment_walk(segment, local), finished, own, &cache, cached);
}

// The whole row from its segments' shares: each invocation merges a part of them in
// order, then a tree. Every workgroup that calls it for the row gets the same result.
// Call in uniform control flow.
fn merged_row(span: RowSpan, place: Place) -> Row {
    var part = share_empty();
    for (var s = place.local; s < params.segments; s += WORKGROUP_SIZE) {
        part = share_merge(part, segment_shares[span.row * params.segments + s]);
    }
    let total = workgroup_merge(place, part);
    return row_finish(span, total.lane, total.max);
}
