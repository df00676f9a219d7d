// The backward passes of softmax and log-softmax: the Jacobian-vector product per row,
// never the Jacobian. With y the forward output and dy the upstream gradient:
//
//   softmax:      dx_c = y_c * (dy_c - r),            r = sum_k dy_k * y_k
//   log-softmax:  dx_c = dy_c - exp(y_c) * r,         r = sum_k dy_k
//
// A masked entry of log-softmax (y_c = -inf) has exp(y_c) = 0, told by its bits.
// Needs common.wgsl in front of it.

override LOG_SOFTMAX: bool = false;

struct Params {
    rows: u32,
    cols: u32,
    groups_x: u32,
    _padding: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn reduced_term(index: u32) -> f32 {
    if (LOG_SOFTMAX) {
        return dy[index];
    }
    return dy[index] * y[index];
}

fn input_gradient(index: u32, r: f32) -> f32 {
    if (LOG_SOFTMAX) {
        var probability = 0.0;
        if (!is_negative_infinity(y[index])) {
            probability = exp(y[index]);
        }
        return dy[index] - probability * r;
    }
    return y[index] * (dy[index] - r);
}

fn partial_sum(row_start: u32, first: u32, stride: u32) -> f32 {
    var sum = 0.0;
    for (var c = first; c < params.cols; c += stride) {
        sum += reduced_term(row_start + c);
    }
    return sum;
}

fn write_row(row_start: u32, first: u32, stride: u32, r: f32) {
    for (var c = first; c < params.cols; c += stride) {
        dx[row_start + c] = input_gradient(row_start + c, r);
    }
}

// Strategy: one invocation per row.
@compute @workgroup_size(THREAD_PER_ROW_GROUP_SIZE)
fn softmax_backward_thread_per_row(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = flat_group_index(group) * THREAD_PER_ROW_GROUP_SIZE + local;
    if (row >= params.rows) {
        return;
    }
    let row_start = row * params.cols;
    write_row(row_start, 0u, 1u, partial_sum(row_start, 0u, 1u));
}

// Strategy: one workgroup per row, partial sums combined by a tree in shared memory.
var<workgroup> partial_sums: array<f32, WORKGROUP_PER_ROW_GROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_PER_ROW_GROUP_SIZE)
fn softmax_backward_workgroup_per_row(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // One row for the whole workgroup: the barriers stay in uniform control flow.
    let row = flat_group_index(group);
    if (row >= params.rows) {
        return;
    }
    let row_start = row * params.cols;
    partial_sums[local] = partial_sum(row_start, local, WORKGROUP_PER_ROW_GROUP_SIZE);
    workgroupBarrier();
    for (var width = WORKGROUP_PER_ROW_GROUP_SIZE / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            partial_sums[local] += partial_sums[local + width];
        }
        workgroupBarrier();
    }
    write_row(row_start, local, WORKGROUP_PER_ROW_GROUP_SIZE, partial_sums[0]);
}
