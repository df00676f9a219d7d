// Strategy: one invocation per row. Best for narrow rows, where a row is a few packets.

#if PAIRED
// Rows `row` (even) and `row + 1` (see `Finished`): each finished alone, then written
// together.
fn thread_row_pair(row: u32) {
    let cached = row_cached(1u, 1u);
    let span_a = row_span(row);
    var cache: PacketCache;
    let walk = walk_of(span_a.first_packet, span_a.end_packet, 0u, 1u, 1u);
    row_begin(span_a);
    let own_a = share_over(span_a, walk, &cache, cached);
    let a = Finished(span_a, row_finish(span_a, own_a.lane, own_a.max), own_a);
    row_done(span_a, a.row);

    let span_b = row_span(row + 1u);
    var second: PacketCache;
    row_begin(span_b);
    let walk_b = walk_of(span_b.first_packet, span_b.end_packet, 0u, 1u, 1u);
    let own_b = share_over(span_b, walk_b, &second, cached);
    let b = Finished(span_b, row_finish(span_b, own_b.lane, own_b.max), own_b);
    row_done(span_b, b.row);

    write_pair(a, b, walk, &cache, &second, cached);
}
#else
fn thread_row(row: u32) {
    let span = row_span(row);
    row_begin(span);
    var cache: PacketCache;
    let cached = row_cached(1u, 1u);
    let walk = walk_of(span.first_packet, span.end_packet, 0u, 1u, 1u);
    let own = share_over(span, walk, &cache, cached);
    let finished = row_finish(span, own.lane, own.max);
    row_done(span, finished);
    write_over(span, walk, finished, own, &cache, cached);
}
#endif

@compute @workgroup_size(WORKGROUP_SIZE)
fn row_kernel(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
#if FOLDS
    @builtin(num_workgroups) grid: vec3<u32>,
#endif
) {
    let invocation = flat_group_index(group) * WORKGROUP_SIZE + local;
#if PAIRED
    // A chunk holds whole runs of an even `inner`: an even number of rows.
    if (2u * invocation < params.rows) {
        thread_row_pair(2u * invocation);
    }
#else
    if (invocation < params.rows) {
        thread_row(invocation);
    }
#endif
#if FOLDS
    // Every workgroup of the grid, the surplus ones too, after its rows.
    group_done(local, grid.x * grid.y);
#endif
}
