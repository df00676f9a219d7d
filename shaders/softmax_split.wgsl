// Softmax and log-softmax, strategy: each row split across workgroups, for a few rows so
// wide that one workgroup per row would leave most of a GPU idle. Two passes: each
// workgroup reduces one segment of SEGMENT_COLS columns to its (max, sum) statistics;
// then each workgroup merges its row's segment statistics and writes its segment.
//
// Needs common.wgsl and softmax.wgsl in front of it.

const SEGMENT_COLS: u32 = 4096u;

// The statistics of every segment of every row of the chunk, row-major.
@group(0) @binding(3) var<storage, read_write> segment_stats: array<RowStats>;

fn segments_per_row() -> u32 {
    return (params.cols + SEGMENT_COLS - 1u) / SEGMENT_COLS;
}

@compute @workgroup_size(WORKGROUP_PER_ROW_GROUP_SIZE)
fn softmax_split_stats(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // One (row, segment) per workgroup: uniform, so the barriers stay in uniform control.
    let index = flat_group_index(group);
    let row = index / segments_per_row();
    if (row >= params.rows) {
        return;
    }
    let start = (index % segments_per_row()) * SEGMENT_COLS;
    let end = min(start + SEGMENT_COLS, params.cols);
    let stats = workgroup_stats(
        local,
        row_stats_range(row * params.cols, start + local, end, WORKGROUP_PER_ROW_GROUP_SIZE),
    );
    if (local == 0u) {
        segment_stats[index] = stats;
    }
}

@compute @workgroup_size(WORKGROUP_PER_ROW_GROUP_SIZE)
fn softmax_split_write(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = flat_group_index(group);
    let segments = segments_per_row();
    let row = index / segments;
    if (row >= params.rows) {
        return;
    }
    // The workgroup merges the row's segment statistics together, each invocation a
    // share, then a tree: every workgroup of the row gets the same whole-row statistics.
    var own = row_stats_empty();
    for (var k = local; k < segments; k += WORKGROUP_PER_ROW_GROUP_SIZE) {
        own = row_stats_merge(own, segment_stats[row * segments + k]);
    }
    let stats = workgroup_stats(local, own);
    let start = (index % segments) * SEGMENT_COLS;
    let end = min(start + SEGMENT_COLS, params.cols);
    write_row_range(row * params.cols, start + local, end, WORKGROUP_PER_ROW_GROUP_SIZE, stats);
}
