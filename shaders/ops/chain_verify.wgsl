// Chain speculative-decoding verification (Leviathan, Kalman and Matias 2023; Chen et al.
// 2023), one workgroup per row. A row holds K draft tokens d_0 .. d_{K-1}, each drawn from
// the draft model's distribution q_i, and the target model's distributions p_0 .. p_K
// (probabilities, f32). In order, draft i is accepted when
//
//     u_i * q_i(d_i) < p_i(d_i)        (u_i uniform in [0, 1): probability min(1, p/q))
//
// and the first rejected position i draws its token from the residual
// max(0, p_i - q_i) renormalised; when all K are accepted, a bonus token is drawn from
// p_K. So the row emits accepted + 1 tokens, each distributed as the target's, whatever
// the draft. A residual of zero mass (p_i = q_i to the bit, where a rejection cannot
// happen but rounding might) draws from p_i.
//
// Outputs: ids[row][0 .. K] the accepted drafts, then the drawn token, then -1; and
// accepted[row]. A row with a draft id outside [0, V), or a probability read that is
// NaN, infinite or negative, is counted in `status` (STATUS_BAD_ROWS and the first in
// STATUS_FIRST_BAD_ROW) and emits -1 everywhere with accepted 0: never a silent draw.
//
// Random numbers: Philox 4x32-10 with key (seed_lo, seed_hi); the acceptance uniform of
// position i has counter (row, i, 1, 0), the draw at position i counter (row, i, 2, 0);
// each uniform is the first output word's top 24 bits times 2^-24.
//
// The draw: each invocation's contiguous chunk's mass (summed in order), their running
// sums by invocation 0, u * total, the chunk where the running sum passes it, and in it
// the element where its own running sum passes what is left. Only tokens of positive
// weight can be picked, whatever the rounding.

const NO_INDEX: u32 = 0xffffffffu;
const ACCEPT: u32 = 0u;
const REJECT: u32 = 1u;
const BAD: u32 = 2u;

var<workgroup> verdict: u32;
var<workgroup> flawed: atomic<u32>;
var<workgroup> chunk_mass: array<f32, WORKGROUP_SIZE>;
var<workgroup> chunk_end: array<f32, WORKGROUP_SIZE>;
var<workgroup> total_mass: f32;
// `flawed` as it stood after the last weighing, for a uniform load.
var<workgroup> flaws_seen: u32;
var<workgroup> picked_token: u32;

fn uniform_at(row: u32, position: u32, stream: u32) -> f32 {
    return unit_uniform(philox(vec4<u32>(row, position, stream, 0u), vec2<u32>(params.seed_lo, params.seed_hi)).x);
}

// The probabilities are bound from the block's first row, params.row_base; the ids and
// counts whole.
fn draft_prob(row: u32, position: u32, token: u32) -> f32 {
    return draft_probs[((row - params.row_base) * params.drafts + position) * params.cols + token];
}

fn target_prob(row: u32, position: u32, token: u32) -> f32 {
    return target_probs[((row - params.row_base) * (params.drafts + 1u) + position) * params.cols + token];
}

fn is_probability(x: f32) -> bool {
    return is_finite(x) && x >= 0.0;
}

// Token `token`'s weight at `position`: max(0, p - q) for the residual, else p.
fn weight(row: u32, position: u32, token: u32, residual: bool) -> f32 {
    let p = target_prob(row, position, token);
    if (residual) {
        return max(p - draft_prob(row, position, token), 0.0);
    }
    return p;
}

// Id `position` of `row`'s output: an i32, or with FLAG_IDS_I64 an i64, two words, low
// first (-1 sign-extended).
fn store_id(row: u32, position: u32, id: i32) {
    let out = row * (params.drafts + 1u) + position;
    if ((params.flags & FLAG_IDS_I64) != 0u) {
        ids[2u * out] = id;
        ids[2u * out + 1u] = select(0, -1, id < 0);
    } else {
        ids[out] = id;
    }
}

// The contiguous chunk of the vocabulary invocation `local` walks.
fn chunk_of(local: u32) -> vec2<u32> {
    let size = (params.cols + WORKGROUP_SIZE - 1u) / WORKGROUP_SIZE;
    let begin = min(local * size, params.cols);
    return vec2<u32>(begin, min(begin + size, params.cols));
}

// The mass of the weights over the row (NaN-free: a flawed probability is counted in
// `flawed` instead), each chunk's running end in `chunk_end`. Call in uniform control flow.
fn weigh(local: u32, row: u32, position: u32, residual: bool) -> f32 {
    let chunk = chunk_of(local);
    var own = 0.0;
    var bad = false;
    for (var t = chunk.x; t < chunk.y; t++) {
        let p = target_prob(row, position, t);
        var q = 0.0;
        if (residual) {
            q = draft_prob(row, position, t);
        }
        if (!is_probability(p) || !is_probability(q)) {
            bad = true;
        } else {
            own += weight(row, position, t, residual);
        }
    }
    if (bad) {
        atomicAdd(&flawed, 1u);
    }
    chunk_mass[local] = own;
    workgroupBarrier();
    if (local == 0u) {
        var running = 0.0;
        for (var c = 0u; c < WORKGROUP_SIZE; c++) {
            running += chunk_mass[c];
            chunk_end[c] = running;
        }
        total_mass = running;
        flaws_seen = atomicLoad(&flawed);
    }
    return workgroupUniformLoad(&total_mass);
}

// Invocation 0's pick of the token where the running mass passes `u * total`.
fn pick(row: u32, position: u32, residual: bool, u: f32, total: f32) -> u32 {
    let goal = u * total;
    var chunk = NO_INDEX;
    var last_positive = NO_INDEX;
    for (var c = 0u; c < WORKGROUP_SIZE; c++) {
        if (chunk_mass[c] > 0.0) {
            last_positive = c;
            if (chunk_end[c] > goal) {
                chunk = c;
                break;
            }
        }
    }
    if (chunk == NO_INDEX) {
        chunk = last_positive;
    }
    if (chunk == NO_INDEX) {
        return NO_INDEX;
    }
    var left = goal;
    if (chunk > 0u) {
        left = goal - chunk_end[chunk - 1u];
    }
    let span = chunk_of(chunk);
    var running = 0.0;
    var last_kept = NO_INDEX;
    for (var t = span.x; t < span.y; t++) {
        let w = weight(row, position, t, residual);
        if (w > 0.0) {
            last_kept = t;
            running += w;
            if (running > left) {
                return t;
            }
        }
    }
    return last_kept;
}

// Marks the row bad: -1 everywhere, accepted 0, counted in the status words.
fn give_up(row: u32) {
    for (var i = 0u; i <= params.drafts; i++) {
        store_id(row, i, -1);
    }
    accepted[row] = 0u;
    atomicAdd(&status[STATUS_BAD_ROWS], 1u);
    atomicMax(&status[STATUS_FIRST_BAD_ROW], 0xffffffffu - row);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn verify(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) group: vec3<u32>) {
    let local_row = group.x + group.y * params.groups_x;
    if (local_row >= params.block_rows) {
        return;
    }
    let row = params.row_base + local_row;
    // Workgroup memory is not zeroed for us (the pipelines skip it, for speed).
    if (local == 0u) {
        atomicStore(&flawed, 0u);
    }
    workgroupBarrier();
    // The drafts in order, decided by invocation 0 and shared.
    var position = 0u;
    for (; position < params.drafts; position++) {
        if (local == 0u) {
            let d = draft_ids[row * params.drafts + position];
            var decision = BAD;
            if (d >= 0 && u32(d) < params.cols) {
                let p = target_prob(row, position, u32(d));
                let q = draft_prob(row, position, u32(d));
                if (is_probability(p) && is_probability(q)) {
                    decision = select(REJECT, ACCEPT, uniform_at(row, position, 1u) * q < p);
                }
            }
            verdict = decision;
        }
        let decided = workgroupUniformLoad(&verdict);
        if (decided == BAD) {
            if (local == 0u) {
                give_up(row);
            }
            return;
        }
        if (decided == REJECT) {
            break;
        }
        if (local == 0u) {
            store_id(row, position, draft_ids[row * params.drafts + position]);
        }
    }
    // The token at `position`: from the residual after a rejection, else the bonus from p_K.
    var residual = position < params.drafts;
    var total = weigh(local, row, position, residual);
    if (residual && total <= 0.0 && workgroupUniformLoad(&flaws_seen) == 0u) {
        residual = false;
        total = weigh(local, row, position, false);
    }
    if (workgroupUniformLoad(&flaws_seen) != 0u) {
        if (local == 0u) {
            give_up(row);
        }
        return;
    }
    if (local == 0u) {
        let token = pick(row, position, residual, uniform_at(row, position, 2u), total);
        if (token == NO_INDEX) {
            // Nothing of positive mass: not a distribution.
            give_up(row);
            return;
        }
        store_id(row, position, i32(token));
        for (var i = position + 1u; i <= params.drafts; i++) {
            store_id(row, i, -1);
        }
        accepted[row] = position;
    }
}
