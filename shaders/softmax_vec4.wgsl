// Softmax and log-softmax with vec4 loads and stores, for rows whose length is a multiple
// of 4: the thread-per-row, subgroup-per-row and workgroup-per-row strategies of
// softmax.wgsl, each invocation moving four floats at a time (128-bit memory accesses on
// GPUs). Needs common.wgsl in front of it (and softmax_subgroup_vec4.wgsl after it for the
// subgroup kernel). Same math, same special values as softmax.wgsl.

override LOG_SOFTMAX: bool = false;

struct Params {
    rows: u32,
    cols: u32,
    groups_x: u32,
    _padding: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> output: array<vec4<f32>>;

// vec4s per row.
fn quads() -> u32 {
    return params.cols / 4u;
}

fn normalized(x: f32, stats: RowStats, log_sum: f32) -> f32 {
    if (row_is_undefined(stats)) {
        return quiet_nan();
    }
    if (LOG_SOFTMAX) {
        if (is_negative_infinity(x)) {
            return negative_infinity();
        }
        return (x - stats.max) - log_sum;
    }
    if (is_negative_infinity(x)) {
        return 0.0;
    }
    return exp((x - stats.max) - log_sum);
}

fn row_stats_quads(row_start: u32, first: u32, stride: u32) -> RowStats {
    var stats = row_stats_empty();
    for (var q = first; q < quads(); q += stride) {
        let v = input[row_start + q];
        stats = row_stats_push(row_stats_push(row_stats_push(row_stats_push(stats, v.x), v.y), v.z), v.w);
    }
    return stats;
}

fn write_quads(row_start: u32, first: u32, stride: u32, stats: RowStats) {
    let log_sum = log(stats.sum);
    for (var q = first; q < quads(); q += stride) {
        let v = input[row_start + q];
        output[row_start + q] = vec4<f32>(
            normalized(v.x, stats, log_sum),
            normalized(v.y, stats, log_sum),
            normalized(v.z, stats, log_sum),
            normalized(v.w, stats, log_sum),
        );
    }
}

@compute @workgroup_size(THREAD_PER_ROW_GROUP_SIZE)
fn softmax_vec4_thread_per_row(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = flat_group_index(group) * THREAD_PER_ROW_GROUP_SIZE + local;
    if (row >= params.rows) {
        return;
    }
    let row_start = row * quads();
    write_quads(row_start, 0u, 1u, row_stats_quads(row_start, 0u, 1u));
}

@compute @workgroup_size(WORKGROUP_PER_ROW_GROUP_SIZE)
fn softmax_vec4_workgroup_per_row(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // One row per workgroup: the barriers stay in uniform control flow.
    let row = flat_group_index(group);
    if (row >= params.rows) {
        return;
    }
    let row_start = row * quads();
    let stats = workgroup_stats(local, row_stats_quads(row_start, local, WORKGROUP_PER_ROW_GROUP_SIZE));
    write_quads(row_start, local, WORKGROUP_PER_ROW_GROUP_SIZE, stats);
}
