// Softmax and log-softmax over the rows of a row-major [rows, cols] matrix.
//
//   softmax(x)_c     = exp(x_c - m) / s
//   log_softmax(x)_c = (x_c - m) - log(s)
//
// with m the row max and s the sum of exp(x - m), from one online pass over the row.
// Special values: a `-inf` entry gives 0 (log: -inf); a row with a NaN or +inf, or with
// only `-inf` entries, gives NaN everywhere.
//
// Needs common.wgsl in front of it. Each entry point is one strategy for spreading rows
// over invocations; all of them share the row statistics and the output formula.

override LOG_SOFTMAX: bool = false;

struct Params {
    rows: u32,
    cols: u32,
    // Workgroups along x: grids past the per-dimension limit are spread over y.
    groups_x: u32,
    _padding: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

fn normalized(x: f32, stats: RowStats) -> f32 {
    if (row_is_undefined(stats)) {
        return quiet_nan();
    }
    if (LOG_SOFTMAX) {
        if (is_negative_infinity(x)) {
            return negative_infinity();
        }
        return (x - stats.max) - log(stats.sum);
    }
    if (is_negative_infinity(x)) {
        return 0.0;
    }
    // exp(x - m) / s as one exponential, without a division (ln(s) is the same for the
    // whole row, and compilers hoist it out of the loop).
    return exp((x - stats.max) - log(stats.sum));
}

// Statistics of columns first, first + stride, ... below end of the row at row_start.
fn row_stats_range(row_start: u32, first: u32, end: u32, stride: u32) -> RowStats {
    var stats = row_stats_empty();
    for (var c = first; c < end; c += stride) {
        stats = row_stats_push(stats, input[row_start + c]);
    }
    return stats;
}

fn row_stats_strided(row_start: u32, first: u32, stride: u32) -> RowStats {
    return row_stats_range(row_start, first, params.cols, stride);
}

fn write_row_range(row_start: u32, first: u32, end: u32, stride: u32, stats: RowStats) {
    for (var c = first; c < end; c += stride) {
        output[row_start + c] = normalized(input[row_start + c], stats);
    }
}

fn write_row_strided(row_start: u32, first: u32, stride: u32, stats: RowStats) {
    write_row_range(row_start, first, params.cols, stride, stats);
}

// Strategy: one invocation per row. Best for narrow rows, where a row is a few loads.
@compute @workgroup_size(THREAD_PER_ROW_GROUP_SIZE)
fn softmax_thread_per_row(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = flat_group_index(group) * THREAD_PER_ROW_GROUP_SIZE + local;
    if (row >= params.rows) {
        return;
    }
    let row_start = row * params.cols;
    let stats = row_stats_strided(row_start, 0u, 1u);
    write_row_strided(row_start, 0u, 1u, stats);
}

// Strategy: one workgroup per row, partial statistics combined by a tree in shared memory.
// Needs no subgroup support.
@compute @workgroup_size(WORKGROUP_PER_ROW_GROUP_SIZE)
fn softmax_workgroup_per_row(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // The row is the same for the whole workgroup, so this return keeps the barriers
    // below in uniform control flow.
    let row = flat_group_index(group);
    if (row >= params.rows) {
        return;
    }
    let row_start = row * params.cols;
    let stats = workgroup_stats(local, row_stats_strided(row_start, local, WORKGROUP_PER_ROW_GROUP_SIZE));
    write_row_strided(row_start, local, WORKGROUP_PER_ROW_GROUP_SIZE, stats);
}
