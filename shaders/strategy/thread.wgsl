// Strategy: one invocation per row. Best for narrow rows, where a row is a few packets.

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

@compute @workgroup_size(WORKGROUP_SIZE)
fn row_kernel(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
#if FOLDS
    @builtin(num_workgroups) grid: vec3<u32>,
#endif
) {
    let row = flat_group_index(group) * WORKGROUP_SIZE + local;
    if (row < params.rows) {
        thread_row(row);
    }
#if FOLDS
    // Every workgroup of the grid, the surplus ones too, after its rows.
    group_done(local, grid.x * grid.y);
#endif
}
