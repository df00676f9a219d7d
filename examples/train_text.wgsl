// The example's own kernels around wgpu-softmax's fused linear cross-entropy, for a
// next-token model that predicts the token x[t] from the two before it. For the batch's
// rows r = 0..rows, at corpus positions t = step.first + r:
//
//   H[r]  = A[x[t-1]] + B[x[t-2]]                       gather (here)
//   loss  = mean_r CE(H[r] W^T + b, x[t]); dH, dW, db    LinearCrossEntropy (the crate's)
//   dA[v] = sum of dH[r] over the rows r with x[t-1] = v  embedding_gradient (here)
//   dB[v] = sum of dH[r] over the rows r with x[t-2] = v  the same kernel, B's grouping
//   p    -= learning_rate * dp, for p in A, B, W, b       sgd_update (here)
//
// Row-major tables: A, B and W are vocab x hidden, H and dH rows x hidden.

struct Step {
    // Corpus position of row 0's target (at least 2: row 0 reads the two tokens before).
    first: u32,
    rows: u32,
    hidden: u32,
    vocab: u32,
    learning_rate: f32,
    _padding0: u32,
    _padding1: u32,
    _padding2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;

// Invocations per workgroup of every entry point; the host supplies it (one place for it).
override WORKGROUP_SIZE: u32;

// gather: one invocation per (row, feature).
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> table_a: array<f32>;
@group(0) @binding(3) var<storage, read> table_b: array<f32>;
@group(0) @binding(4) var<storage, read_write> hidden: array<f32>;
@group(0) @binding(5) var<storage, read_write> targets: array<u32>;

// H[r, d] = A[x[t-1], d] + B[x[t-2], d], and targets[r] = x[t].
@compute @workgroup_size(WORKGROUP_SIZE)
fn gather(@builtin(global_invocation_id) id: vec3<u32>) {
    let index = id.x;
    if (index >= step.rows * step.hidden) {
        return;
    }
    let row = index / step.hidden;
    let d = index % step.hidden;
    let t = step.first + row;
    let previous = tokens[t - 1u];
    let before_previous = tokens[t - 2u];
    hidden[index] = table_a[previous * step.hidden + d] + table_b[before_previous * step.hidden + d];
    if (d == 0u) {
        targets[row] = tokens[t];
    }
}

// embedding_gradient: one invocation per (vocabulary entry, feature). The host groups the
// batch's rows by token (a CSR layout): the rows whose token is v are
// rows[offsets[v]], ..., rows[offsets[v + 1] - 1], in increasing order. Summing them in
// that order makes the gradient deterministic, without atomics; a token absent from the
// batch has no rows and gets zero.
@group(0) @binding(6) var<storage, read> grad_hidden: array<f32>;
@group(0) @binding(7) var<storage, read> offsets: array<u32>;
@group(0) @binding(8) var<storage, read> rows: array<u32>;
@group(0) @binding(9) var<storage, read_write> grad_table: array<f32>;

// dT[v, d] = sum over k in offsets[v]..offsets[v + 1] of dH[rows[k], d].
@compute @workgroup_size(WORKGROUP_SIZE)
fn embedding_gradient(@builtin(global_invocation_id) id: vec3<u32>) {
    let index = id.x;
    if (index >= step.vocab * step.hidden) {
        return;
    }
    let v = index / step.hidden;
    let d = index % step.hidden;
    var sum = 0.0;
    for (var k = offsets[v]; k < offsets[v + 1u]; k++) {
        sum += grad_hidden[rows[k] * step.hidden + d];
    }
    grad_table[index] = sum;
}

// sgd_update: one invocation per parameter, over one parameter tensor and its gradient
// (the host dispatches it once for each of A, B, W and b).
@group(0) @binding(10) var<storage, read_write> parameter: array<f32>;
@group(0) @binding(11) var<storage, read> gradient: array<f32>;

// p[i] -= learning_rate * dp[i].
@compute @workgroup_size(WORKGROUP_SIZE)
fn sgd_update(@builtin(global_invocation_id) id: vec3<u32>) {
    let index = id.x;
    if (index >= arrayLength(&parameter)) {
        return;
    }
    parameter[index] -= step.learning_rate * gradient[index];
}
