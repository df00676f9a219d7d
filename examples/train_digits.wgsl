// The example's own kernels: a linear layer (logits = x W^T + b), its weight gradient,
// and a plain SGD update. The softmax cross-entropy between them is wgpu-softmax's.
//
// Rows of a batch are gathered through `order` (a permutation of the data set, new each
// epoch), so that batches are shuffled without moving the data.

struct Step {
    // First position in `order` of this batch, and its rows.
    offset: u32,
    rows: u32,
    features: u32,
    classes: u32,
    learning_rate: f32,
    _padding0: u32,
    _padding1: u32,
    _padding2: u32,
}

@group(0) @binding(0) var<uniform> step: Step;

// Invocations per workgroup of every entry point; the host supplies it (one place for it).
override WORKGROUP_SIZE: u32;
@group(0) @binding(1) var<storage, read> features: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read_write> weight: array<f32>;
@group(0) @binding(5) var<storage, read_write> bias: array<f32>;
// The batch's logits; the cross-entropy overwrites them with dloss/dlogits in place.
@group(0) @binding(6) var<storage, read_write> logits: array<f32>;
@group(0) @binding(7) var<storage, read_write> batch_labels: array<i32>;
// dloss/dW (classes x features), then dloss/db (classes).
@group(0) @binding(8) var<storage, read_write> weight_gradient: array<f32>;

fn sample(row: u32) -> u32 {
    return order[step.offset + row];
}

// logits[r, c] = b[c] + sum_f x[r, f] * W[c, f]; one invocation per (row, class_index).
@compute @workgroup_size(WORKGROUP_SIZE)
fn linear_forward(@builtin(global_invocation_id) id: vec3<u32>) {
    let index = id.x;
    if (index >= step.rows * step.classes) {
        return;
    }
    let row = index / step.classes;
    let class_index = index % step.classes;
    let x_start = sample(row) * step.features;
    var sum = bias[class_index];
    for (var f = 0u; f < step.features; f++) {
        sum += features[x_start + f] * weight[class_index * step.features + f];
    }
    logits[index] = sum;
    if (class_index == 0u) {
        batch_labels[row] = labels[sample(row)];
    }
}

// dW[c, f] = sum_r g[r, c] * x[r, f] and db[c] = sum_r g[r, c], with g = dloss/dlogits
// (already divided by the batch size by the mean reduction). One invocation per entry.
@compute @workgroup_size(WORKGROUP_SIZE)
fn linear_weight_gradient(@builtin(global_invocation_id) id: vec3<u32>) {
    let index = id.x;
    let weights = step.classes * step.features;
    if (index >= weights + step.classes) {
        return;
    }
    var sum = 0.0;
    if (index < weights) {
        let class_index = index / step.features;
        let f = index % step.features;
        for (var r = 0u; r < step.rows; r++) {
            sum += logits[r * step.classes + class_index] * features[sample(r) * step.features + f];
        }
    } else {
        let class_index = index - weights;
        for (var r = 0u; r < step.rows; r++) {
            sum += logits[r * step.classes + class_index];
        }
    }
    weight_gradient[index] = sum;
}

// W -= lr * dW, b -= lr * db.
@compute @workgroup_size(WORKGROUP_SIZE)
fn sgd_update(@builtin(global_invocation_id) id: vec3<u32>) {
    let index = id.x;
    let weights = step.classes * step.features;
    if (index < weights) {
        weight[index] -= step.learning_rate * weight_gradient[index];
    } else if (index < weights + step.classes) {
        bias[index - weights] -= step.learning_rate * weight_gradient[index];
    }
}
