// The sort-based sampling baseline: what a framework without a fused sampler records after
// its softmax. The probabilities of each row, padded to a power of two, are sorted in
// descending order with their indices by a bitonic sort (runs of 512 in workgroup memory,
// longer merges through storage), then one workgroup per row cuts the sorted row at top-k
// and at top-p by running sums and draws by inverse transform over what is left.

struct Params {
    rows: u32,
    cols: u32,
    // Columns padded to a power of two (at least 512).
    padded: u32,
    // The bitonic stage (the length of the sequences being merged) and the merge distance.
    stage: u32,
    distance: u32,
    groups_x: u32,
    top_k: u32,
    seed: u32,
    top_p: f32,
    padding0: u32,
    padding1: u32,
    padding2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read_write> keys: array<u32>;
@group(0) @binding(3) var<storage, read_write> values: array<u32>;
@group(0) @binding(4) var<storage, read_write> ids: array<i32>;

const GROUP: u32 = 256u;
const RUN: u32 = 512u;

fn linear_id(id: vec3<u32>) -> u32 {
    return id.x + id.y * params.groups_x * GROUP;
}

// Probabilities are non-negative, so their bits order as their values; padding sorts last.
@compute @workgroup_size(256)
fn init(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = linear_id(id);
    if (i >= params.rows * params.padded) {
        return;
    }
    let row = i / params.padded;
    let column = i % params.padded;
    keys[i] = select(0u, bitcast<u32>(probs[row * params.cols + column]), column < params.cols);
    values[i] = column;
}

// Whether elements `i` < `partner` are out of order: descending within sequences whose
// `stage` bit is clear, ascending where it is set.
fn out_of_order(i: u32, partner: u32, first: u32, second: u32) -> bool {
    let descending = (i % params.padded & params.stage) == 0u;
    return select(first > second, first < second, descending);
}

// One merge step at distance >= RUN through storage: each invocation one pair.
@compute @workgroup_size(256)
fn merge_global(@builtin(global_invocation_id) id: vec3<u32>) {
    let t = linear_id(id);
    if (t >= params.rows * params.padded / 2u) {
        return;
    }
    let j = params.distance;
    let i = 2u * j * (t / j) + t % j;
    let partner = i + j;
    let a = keys[i];
    let b = keys[partner];
    if (out_of_order(i, partner, a, b)) {
        keys[i] = b;
        keys[partner] = a;
        let v = values[i];
        values[i] = values[partner];
        values[partner] = v;
    }
}

var<workgroup> run_keys: array<u32, RUN>;
var<workgroup> run_values: array<u32, RUN>;

// The steps of distance < RUN in workgroup memory, over each run of RUN elements: with
// params.stage 0 every stage from 2 to RUN (the first sort), else the merge steps of
// `stage` from distance RUN / 2 down.
@compute @workgroup_size(256)
fn sort_local(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) group: vec3<u32>) {
    let base = (group.x + group.y * params.groups_x) * RUN;
    if (base >= params.rows * params.padded) {
        return;
    }
    for (var e = local; e < RUN; e += GROUP) {
        run_keys[e] = keys[base + e];
        run_values[e] = values[base + e];
    }
    workgroupBarrier();
    var first_stage = params.stage;
    var last_stage = params.stage;
    if (params.stage == 0u) {
        first_stage = 2u;
        last_stage = RUN;
    }
    for (var stage = first_stage; stage <= last_stage; stage *= 2u) {
        for (var j = min(stage / 2u, RUN / 2u); j > 0u; j /= 2u) {
            let i = 2u * j * (local / j) + local % j;
            let partner = i + j;
            let a = run_keys[i];
            let b = run_keys[partner];
            let descending = ((base + i) % params.padded & stage) == 0u;
            if (select(a > b, a < b, descending)) {
                run_keys[i] = b;
                run_keys[partner] = a;
                let v = run_values[i];
                run_values[i] = run_values[partner];
                run_values[partner] = v;
            }
            workgroupBarrier();
        }
    }
    for (var e = local; e < RUN; e += GROUP) {
        keys[base + e] = run_keys[e];
        values[base + e] = run_values[e];
    }
}

var<workgroup> chunk_sums: array<f32, GROUP>;
var<workgroup> chunk_ends: array<f32, GROUP>;

// A 24-bit uniform in [0, 1) from the row and the seed (PCG's output function).
fn uniform_of(row: u32) -> f32 {
    var state = (row ^ params.seed) * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return f32(((word >> 22u) ^ word) >> 8u) * 5.9604644775390625e-8;
}

// The first position before `limit` of the sorted row where the running sum passes
// `goal`, found from the chunk sums of chunks of `size` (invocation 0), or limit - 1.
fn cut(row_base: u32, size: u32, limit: u32, goal: f32) -> u32 {
    var before = 0.0;
    for (var c = 0u; c < GROUP && c * size < limit; c++) {
        if (chunk_ends[c] >= goal) {
            var running = before;
            for (var i = c * size; i < min((c + 1u) * size, limit); i++) {
                running += bitcast<f32>(keys[row_base + i]);
                if (running >= goal) {
                    return i;
                }
            }
        }
        before = chunk_ends[c];
    }
    return limit - 1u;
}

// The mass of the sorted row before `position`, from the chunk sums.
fn mass_before(row_base: u32, size: u32, position: u32) -> f32 {
    let c = position / size;
    var mass = 0.0;
    if (c > 0u) {
        mass = chunk_ends[c - 1u];
    }
    for (var i = c * size; i < position; i++) {
        mass += bitcast<f32>(keys[row_base + i]);
    }
    return mass;
}

// One workgroup per row: the top-k cut, the top-p cut of the top-k mass, the draw.
@compute @workgroup_size(256)
fn draw(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) group: vec3<u32>) {
    let row = group.x + group.y * params.groups_x;
    if (row >= params.rows) {
        return;
    }
    let row_base = row * params.padded;
    var n = params.cols;
    if (params.top_k > 0u) {
        n = min(params.top_k, params.cols);
    }
    let size = (n + GROUP - 1u) / GROUP;
    var own = 0.0;
    for (var i = local * size; i < min((local + 1u) * size, n); i++) {
        own += bitcast<f32>(keys[row_base + i]);
    }
    chunk_sums[local] = own;
    workgroupBarrier();
    if (local == 0u) {
        var running = 0.0;
        for (var c = 0u; c < GROUP; c++) {
            running += chunk_sums[c];
            chunk_ends[c] = running;
        }
        // Top-p: the smallest prefix whose mass reaches p of the top-k mass.
        var kept = n;
        if (params.top_p < 1.0) {
            kept = cut(row_base, size, n, params.top_p * running) + 1u;
        }
        // The draw by inverse transform over the kept prefix.
        let kept_mass = mass_before(row_base, size, kept);
        let position = cut(row_base, size, kept, uniform_of(row) * kept_mass);
        ids[row] = i32(values[row_base + position]);
    }
}
