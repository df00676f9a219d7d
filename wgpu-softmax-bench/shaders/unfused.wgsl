// Benchmark baselines. Softmax, log-softmax, cross-entropy and softmax backward composed
// from separate passes, the way frameworks build them from generic ops (a max pass, an
// exp-sum pass, a normalise pass; for cross-entropy also log, gather, mean and gradient
// passes), each reading and writing global memory; and a plain vec4 copy, the roofline.
//
// Reductions over a row come in a thread-per-row and a workgroup-per-row form, chosen
// like the fused kernels' strategies, so that the comparison is about passes and bytes.

struct Params {
    rows: u32,
    cols: u32,
    groups_x: u32,
    // Elements (or vec4s, for the copy) the element-wise passes cover.
    count: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> row_out: array<f32>;
@group(0) @binding(3) var<storage, read> row_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> row_sum: array<f32>;
@group(0) @binding(6) var<storage, read> targets: array<u32>;
@group(0) @binding(7) var<storage, read> other: array<f32>;
@group(0) @binding(8) var<storage, read_write> copy_out: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> copy_in: array<vec4<f32>>;

// exp_sum also writes exp(x - max) to `y` (softmax needs it; log-softmax does not).
override WRITE_EXP: bool = true;

const GROUP: u32 = 256u;
const ROW_GROUP: u32 = 64u;
var<workgroup> partial: array<f32, GROUP>;

fn group_index(group: vec3<u32>) -> u32 {
    return group.y * params.groups_x + group.x;
}

fn tree_max(local: u32, value: f32) -> f32 {
    partial[local] = value;
    workgroupBarrier();
    for (var width = GROUP / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            partial[local] = max(partial[local], partial[local + width]);
        }
        workgroupBarrier();
    }
    return partial[0];
}

fn tree_sum(local: u32, value: f32) -> f32 {
    partial[local] = value;
    workgroupBarrier();
    for (var width = GROUP / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            partial[local] += partial[local + width];
        }
        workgroupBarrier();
    }
    return partial[0];
}

// Pass: row max.
@compute @workgroup_size(ROW_GROUP)
fn row_max_thread(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = group_index(group) * ROW_GROUP + local;
    if (row >= params.rows) {
        return;
    }
    var m = -3.40282347e38;
    for (var c = 0u; c < params.cols; c++) {
        m = max(m, x[row * params.cols + c]);
    }
    row_out[row] = m;
}

@compute @workgroup_size(GROUP)
fn row_max_group(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = group_index(group);
    if (row >= params.rows) {
        return;
    }
    var m = -3.40282347e38;
    for (var c = local; c < params.cols; c += GROUP) {
        m = max(m, x[row * params.cols + c]);
    }
    let total = tree_max(local, m);
    if (local == 0u) {
        row_out[row] = total;
    }
}

// Pass: e = exp(x - max) (written for softmax) and its row sum.
@compute @workgroup_size(ROW_GROUP)
fn exp_sum_thread(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = group_index(group) * ROW_GROUP + local;
    if (row >= params.rows) {
        return;
    }
    var s = 0.0;
    for (var c = 0u; c < params.cols; c++) {
        let e = exp(x[row * params.cols + c] - row_in[row]);
        if (WRITE_EXP) {
            y[row * params.cols + c] = e;
        }
        s += e;
    }
    row_out[row] = s;
}

@compute @workgroup_size(GROUP)
fn exp_sum_group(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = group_index(group);
    if (row >= params.rows) {
        return;
    }
    var s = 0.0;
    for (var c = local; c < params.cols; c += GROUP) {
        let e = exp(x[row * params.cols + c] - row_in[row]);
        if (WRITE_EXP) {
            y[row * params.cols + c] = e;
        }
        s += e;
    }
    let total = tree_sum(local, s);
    if (local == 0u) {
        row_out[row] = total;
    }
}

// Pass: the row dot product sum(x * other) (softmax backward: sum(y * dy)).
@compute @workgroup_size(ROW_GROUP)
fn row_dot_thread(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = group_index(group) * ROW_GROUP + local;
    if (row >= params.rows) {
        return;
    }
    var s = 0.0;
    for (var c = 0u; c < params.cols; c++) {
        s += x[row * params.cols + c] * other[row * params.cols + c];
    }
    row_out[row] = s;
}

@compute @workgroup_size(GROUP)
fn row_dot_group(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = group_index(group);
    if (row >= params.rows) {
        return;
    }
    var s = 0.0;
    for (var c = local; c < params.cols; c += GROUP) {
        s += x[row * params.cols + c] * other[row * params.cols + c];
    }
    let total = tree_sum(local, s);
    if (local == 0u) {
        row_out[row] = total;
    }
}

fn element(group: vec3<u32>, local: u32) -> u32 {
    return group_index(group) * GROUP + local;
}

// Pass: y = e / sum, element-wise.
@compute @workgroup_size(GROUP)
fn normalize(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let i = element(group, local);
    if (i >= params.count) {
        return;
    }
    y[i] = x[i] / row_sum[i / params.cols];
}

// Pass: y = x - max - ln(sum), element-wise (log-softmax).
@compute @workgroup_size(GROUP)
fn log_normalize(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let i = element(group, local);
    if (i >= params.count) {
        return;
    }
    let row = i / params.cols;
    y[i] = x[i] - row_in[row] - log(row_sum[row]);
}

// Pass: loss_n = -logp[n, y_n] (the gather of nll_loss).
@compute @workgroup_size(GROUP)
fn gather_nll(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = element(group, local);
    if (row >= params.rows) {
        return;
    }
    row_out[row] = -x[row * params.cols + targets[row]];
}

// Pass: the mean of the row losses, one workgroup.
@compute @workgroup_size(GROUP)
fn mean_rows(@builtin(local_invocation_index) local: u32) {
    var s = 0.0;
    for (var r = local; r < params.rows; r += GROUP) {
        s += row_in[r];
    }
    let total = tree_sum(local, s);
    if (local == 0u) {
        row_out[0] = total / f32(params.rows);
    }
}

// Pass: dloss/dx = (exp(logp) - onehot) / rows, element-wise.
@compute @workgroup_size(GROUP)
fn cross_entropy_gradient(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let i = element(group, local);
    if (i >= params.count) {
        return;
    }
    let row = i / params.cols;
    var g = exp(x[i]);
    if (i % params.cols == targets[row]) {
        g -= 1.0;
    }
    y[i] = g / f32(params.rows);
}

// Pass: dx = y * (dy - r), element-wise (softmax backward).
@compute @workgroup_size(GROUP)
fn backward_elementwise(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let i = element(group, local);
    if (i >= params.count) {
        return;
    }
    y[i] = x[i] * (other[i] - row_in[i / params.cols]);
}

// How fast this adapter computes exponentials while streaming: a vec4 copy that applies
// exp. Where it is much slower than the copy, exp and not memory bounds the softmax.
@compute @workgroup_size(GROUP)
fn exp_vec4(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let i = element(group, local);
    if (i >= params.count) {
        return;
    }
    copy_out[i] = exp(copy_in[i]);
}

// The roofline: a plain vec4 copy.
@compute @workgroup_size(GROUP)
fn copy_vec4(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let i = element(group, local);
    if (i >= params.count) {
        return;
    }
    copy_out[i] = copy_in[i];
}
