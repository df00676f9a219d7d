// Sampling a token id per draw from each row of logits, without a sort: one workgroup per
// row, one step per dispatch (params.phase), each row's state between steps in `state`.
//
// Values: x = logit / temperature (the logit itself when greedy); only finite x take
// part. key(x) is the order-preserving u32 of x's bits, so that `key(a) >= key(b)` is
// `a >= b` for finite values, decided on bits (WGSL may fold float comparisons of special
// values). A token is kept when it is finite and key(x) >= the row's threshold, the
// largest of the top-k, top-p and min-p keys: every step decides membership from this
// one comparison, so no draw can land on a filtered token.
//
// Steps:
//   PHASE_STATS  the row's max m of x (through the argmax of the logits, lowest index on
//                ties), the finite count, whether it holds a NaN or +inf (or nothing
//                finite): such a row is counted in `status` and draws -1;
//   PHASE_TOP_K  one bit of the top-k key K_k, the largest K with count(key >= K) >= k,
//                highest bit first (32 dispatches);
//   PHASE_MASS   M_k, the mass sum of exp(x - m) over key >= K_k;
//   PHASE_TOP_P  one bit of the top-p key K_p, the largest K with
//                mass(key >= max(K, K_k)) >= top_p * M_k (32 dispatches). Each mass is the
//                same fixed tree of sums of non-negative terms, so it is monotone in the
//                set and the bisection is sound;
//   PHASE_DRAW   the draws first_sample .. end_sample of each row: each invocation's
//                contiguous chunk's kept mass, their running sums by invocation 0 (the
//                total S), then per draw u = uniform * S, the chunk where the running sum
//                passes u, and in it the element where its own running sum passes what is
//                left of u. Rounding that leaves u at or past the end takes the last kept
//                element of positive mass.
//
// A temperature so small that the largest logit over it overflows f32 draws the argmax.
//
// Per-row settings: the bits of params.flags say which
// of temperature, top-k, top-p and min-p are per row; those lie in `state` past the rows'
// state words, each `rows` words (f32 bits, top-k a u32), copied there by the host. A
// row whose setting is out of range (a temperature negative or not finite, top-p outside
// (0, 1], min-p outside [0, 1]) is counted in the status words STATUS_BAD_SETTINGS and
// STATUS_FIRST_BAD_SETTINGS and draws -1. Per row, top-k 0 and top-p 1 are off: the
// bisection steps run for every row when any row uses the filter, and leave such a
// row's threshold at 0.
//
// Random numbers: Philox 4x32-10 with key (seed_lo, seed_hi) and counter (row, draw, 0,
// 0); the uniform is the first output word's top 24 bits times 2^-24.

// State words of a row.
const STATE_BAD: u32 = 0u;
const STATE_MAX: u32 = 1u;
const STATE_ARGMAX: u32 = 2u;
const STATE_FINITE: u32 = 3u;
const STATE_TOP_K: u32 = 4u;
const STATE_TOP_P: u32 = 5u;
const STATE_MASS_K: u32 = 6u;
// 1 when the row draws its argmax: greedy, or a temperature so small that the largest
// logit over it is not a finite f32 (the limit of sampling as T goes to 0).
const STATE_GREEDY: u32 = 7u;

const NO_INDEX: u32 = 0xffffffffu;

// FLAG_* (the bits of params.flags) and STATUS_BAD_SETTINGS, STATUS_FIRST_BAD_SETTINGS
// (the status words of rows whose per-row settings are out of range) come from the host.

fn flag(bit: u32) -> bool {
    return (params.flags & bit) != 0u;
}

// Draw `out`'s token id: an i32, or with FLAG_IDS_I64 an i64 as PyTorch stores them, two
// words, low first (-1 sign-extended).
fn store_id(out: u32, id: i32) {
    if (flag(FLAG_IDS_I64)) {
        ids[2u * out] = id;
        ids[2u * out + 1u] = select(0, -1, id < 0);
    } else {
        ids[out] = id;
    }
}

// Setting `which` (0 temperature, 1 top-k, 2 top-p, 3 min-p) of `row`, as stored.
fn row_setting(which: u32, row: u32) -> u32 {
    return state[params.rows * STATE_WORDS + which * params.rows + row];
}

fn temperature_of(row: u32) -> f32 {
    if (flag(FLAG_ROW_TEMPERATURE)) {
        return bitcast<f32>(row_setting(0u, row));
    }
    return params.temperature;
}

fn top_k_of(row: u32) -> u32 {
    if (flag(FLAG_ROW_TOP_K)) {
        return row_setting(1u, row);
    }
    return params.top_k;
}

fn top_p_of(row: u32) -> f32 {
    if (flag(FLAG_ROW_TOP_P)) {
        return bitcast<f32>(row_setting(2u, row));
    }
    return params.top_p;
}

// Whether the row's per-row settings are in range (the scalar ones are checked on the
// host).
fn settings_in_range(row: u32) -> bool {
    var ok = true;
    if (flag(FLAG_ROW_TEMPERATURE)) {
        let t = temperature_of(row);
        ok = ok && is_finite(t) && t >= 0.0;
    }
    if (flag(FLAG_ROW_TOP_P)) {
        let p = top_p_of(row);
        ok = ok && is_finite(p) && p > 0.0 && p <= 1.0;
    }
    if (flag(FLAG_ROW_MIN_P)) {
        let p = bitcast<f32>(row_setting(3u, row));
        ok = ok && is_finite(p) && p >= 0.0 && p <= 1.0;
    }
    return ok;
}

var<workgroup> shared_keys: array<u32, WORKGROUP_SIZE>;
var<workgroup> shared_index: array<u32, WORKGROUP_SIZE>;
var<workgroup> chunk_mass: array<f32, WORKGROUP_SIZE>;
var<workgroup> chunk_end: array<f32, WORKGROUP_SIZE>;
var<workgroup> total_mass: f32;

fn logit(row: u32, i: u32) -> f32 {
    let index = row * params.cols + i;
#if HALF
    return half_to_f32(word_element(logits[index / PER_WORD], index % PER_WORD));
#else
    return bitcast<f32>(logits[index]);
#endif
}

// x, the logit at the row's temperature.
fn scaled(row: u32, raw: f32) -> f32 {
    let t = temperature_of(row);
    if (t > 0.0) {
        return raw / t;
    }
    return raw;
}

// The order-preserving key of x's bits.
fn key_of(x: f32) -> u32 {
    let bits = bitcast<u32>(x);
    return select(~bits, bits ^ 0x80000000u, (bits & 0x80000000u) == 0u);
}

fn kept(x: f32, threshold: u32) -> bool {
    return is_finite(x) && key_of(x) >= threshold;
}

// The sum of one u32 per invocation over the workgroup. Call in uniform control flow.
fn workgroup_count(local: u32, own: u32) -> u32 {
    shared_keys[local] = own;
    workgroupBarrier();
    for (var width = WORKGROUP_SIZE / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            shared_keys[local] += shared_keys[local + width];
        }
        workgroupBarrier();
    }
    let total = shared_keys[0];
    workgroupBarrier();
    return total;
}

// The contiguous chunk of columns invocation `local` walks.
fn chunk_of(local: u32) -> vec2<u32> {
    let size = (params.cols + WORKGROUP_SIZE - 1u) / WORKGROUP_SIZE;
    let begin = min(local * size, params.cols);
    return vec2<u32>(begin, min(begin + size, params.cols));
}

// 32 x 32 -> 64 bits, as (high, low), from 16-bit halves.
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let low_low = a0 * b0;
    let low_high = a0 * b1;
    let high_low = a1 * b0;
    let middle = (low_low >> 16u) + (low_high & 0xffffu) + (high_low & 0xffffu);
    let high = a1 * b1 + (low_high >> 16u) + (high_low >> 16u) + (middle >> 16u);
    return vec2<u32>(high, a * b);
}

// Philox 4x32-10 (Salmon et al., SC'11).
fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var r = 0u; r < 10u; r++) {
        let p0 = mul_wide(0xD2511F53u, c.x);
        let p1 = mul_wide(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k += vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

fn uniform_of(row: u32, draw: u32) -> f32 {
    let bits = philox(vec4<u32>(row, draw, 0u, 0u), vec2<u32>(params.seed_lo, params.seed_hi));
    return f32(bits.x >> 8u) * 5.9604644775390625e-8;
}

// The bits of logit `i` of `row` as stored (an f32's, or a 16-bit element's).
fn stored_bits(row: u32, i: u32) -> u32 {
    let index = row * params.cols + i;
#if HALF
    return word_element(logits[index / PER_WORD], index % PER_WORD);
#else
    return logits[index];
#endif
}

// Stores `bits` (in the logits' storage type) as masked logit `index`: a 16-bit element
// through atomics on its half of the word, which a neighbouring row's workgroup may share.
fn store_masked(index: u32, bits: u32) {
#if HALF
    let j = index % PER_WORD;
    atomicAnd(&masked_logits[index / PER_WORD], ~word_place(ELEMENT_MASK, j));
    atomicOr(&masked_logits[index / PER_WORD], word_place(bits, j));
#else
    atomicStore(&masked_logits[index], bits);
#endif
}

// The storage type's bits of an f32.
fn storage_bits(x: f32) -> u32 {
#if HALF
    return f32_to_half(x);
#else
    return bitcast<u32>(x);
#endif
}

// The masks over the invocation's chunk: the kept tokens' renormalised probabilities (0
// elsewhere; one-hot on the argmax for a greedy row; NaN for a bad row), and the logits
// as stored with the tokens not kept set to -inf (every one NaN for a bad row).
fn write_masks(row: u32, chunk: vec2<u32>, threshold: u32, m: f32, total: f32, bad: bool, greedy: bool, argmax: u32) {
    let masked = storage_bits(negative_infinity());
    let nan = storage_bits(quiet_nan());
    for (var i = chunk.x; i < chunk.y; i++) {
        let x = scaled(row, logit(row, i));
        var keep = kept(x, threshold);
        if (greedy) {
            keep = i == argmax;
        }
        let index = row * params.cols + i;
        if (flag(FLAG_PROBS)) {
            var p = 0.0;
            if (bad) {
                p = quiet_nan();
            } else if (greedy && keep) {
                p = 1.0;
            } else if (keep) {
                p = exp_below(x, m) / total;
            }
            sample_probs[index] = p;
        }
        if (flag(FLAG_MASKED)) {
            var bits = stored_bits(row, i);
            if (bad) {
                bits = nan;
            } else if (!keep) {
                bits = masked;
            }
            store_masked(index, bits);
        }
    }
}

fn stats(local: u32, row: u32) {
    let chunk = chunk_of(local);
    var best_key = 0u;
    var best_index = NO_INDEX;
    var bad = 0u;
    var finite = 0u;
    for (var i = chunk.x; i < chunk.y; i++) {
        let raw = logit(row, i);
        if (is_nan_or_positive_infinity(raw)) {
            bad = 1u;
        }
        if (is_finite(raw)) {
            finite += 1u;
            let key = key_of(raw);
            if (best_index == NO_INDEX || key > best_key) {
                best_key = key;
                best_index = i;
            }
        }
    }
    let finite_total = workgroup_count(local, finite);
    let bad_total = workgroup_count(local, bad);
    shared_keys[local] = best_key;
    shared_index[local] = best_index;
    workgroupBarrier();
    for (var width = WORKGROUP_SIZE / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            let other_key = shared_keys[local + width];
            let other_index = shared_index[local + width];
            let mine = shared_index[local];
            let mine_key = shared_keys[local];
            // The larger key wins; on a tie, the lower column.
            let better = other_key > mine_key || (other_key == mine_key && other_index < mine);
            if (other_index != NO_INDEX && (mine == NO_INDEX || better)) {
                shared_keys[local] = other_key;
                shared_index[local] = other_index;
            }
        }
        workgroupBarrier();
    }
    if (local == 0u) {
        let argmax = shared_index[0];
        let undefined = bad_total > 0u || finite_total == 0u;
        let settings_bad = !settings_in_range(row);
        var m = 0.0;
        if (!undefined && !settings_bad) {
            m = scaled(row, logit(row, argmax));
        }
        let greedy = temperature_of(row) <= 0.0 || !is_finite(m);
        if (!is_finite(m)) {
            m = 0.0;
        }
        let base = row * STATE_WORDS;
        state[base + STATE_BAD] = select(0u, 1u, undefined || settings_bad);
        state[base + STATE_MAX] = bitcast<u32>(m);
        state[base + STATE_ARGMAX] = argmax;
        state[base + STATE_FINITE] = finite_total;
        state[base + STATE_TOP_K] = 0u;
        state[base + STATE_TOP_P] = 0u;
        state[base + STATE_MASS_K] = 0u;
        state[base + STATE_GREEDY] = select(0u, 1u, greedy);
        if (undefined) {
            atomicAdd(&status[STATUS_BAD_ROWS], 1u);
            atomicMax(&status[STATUS_FIRST_BAD_ROW], 0xffffffffu - row);
        }
        if (settings_bad) {
            atomicAdd(&status[STATUS_BAD_SETTINGS], 1u);
            atomicMax(&status[STATUS_FIRST_BAD_SETTINGS], 0xffffffffu - row);
        }
    }
}

// The kept mass sum of exp(x - m) over the row for `threshold`, in a fixed order:
// each invocation's chunk in order, then the workgroup's tree.
fn mass_above(local: u32, row: u32, threshold: u32, m: f32) -> f32 {
    let chunk = chunk_of(local);
    var sum = 0.0;
    for (var i = chunk.x; i < chunk.y; i++) {
        let x = scaled(row, logit(row, i));
        if (kept(x, threshold)) {
            sum += exp_below(x, m);
        }
    }
    return workgroup_sum(local, sum);
}

fn top_k_step(local: u32, row: u32) {
    let base = row * STATE_WORDS;
    let candidate = state[base + STATE_TOP_K] | (1u << params.bit);
    let chunk = chunk_of(local);
    var count = 0u;
    for (var i = chunk.x; i < chunk.y; i++) {
        if (kept(scaled(row, logit(row, i)), candidate)) {
            count += 1u;
        }
    }
    let total = workgroup_count(local, count);
    storageBarrier();
    let k = top_k_of(row);
    // k = 0 is off (a row's own setting; the host records no step when no row uses it).
    if (local == 0u && k > 0u && total >= k) {
        state[base + STATE_TOP_K] = candidate;
    }
}

fn mass_step(local: u32, row: u32) {
    let base = row * STATE_WORDS;
    let m = bitcast<f32>(state[base + STATE_MAX]);
    let mass = mass_above(local, row, state[base + STATE_TOP_K], m);
    storageBarrier();
    if (local == 0u) {
        state[base + STATE_MASS_K] = bitcast<u32>(mass);
    }
}

fn top_p_step(local: u32, row: u32) {
    let base = row * STATE_WORDS;
    let m = bitcast<f32>(state[base + STATE_MAX]);
    let candidate = state[base + STATE_TOP_P] | (1u << params.bit);
    let threshold = max(candidate, state[base + STATE_TOP_K]);
    let mass = mass_above(local, row, threshold, m);
    let p = top_p_of(row);
    let needed = p * bitcast<f32>(state[base + STATE_MASS_K]);
    storageBarrier();
    // p = 1 is off (a row's own setting).
    if (local == 0u && p < 1.0 && mass >= needed) {
        state[base + STATE_TOP_P] = candidate;
    }
}

fn draw_step(local: u32, row: u32) {
    let base = row * STATE_WORDS;
    let bad = state[base + STATE_BAD] != 0u;
    let argmax = state[base + STATE_ARGMAX];
    let m = bitcast<f32>(state[base + STATE_MAX]);
    var threshold = max(state[base + STATE_TOP_K], state[base + STATE_TOP_P]);
    if (flag(FLAG_ROW_MIN_P)) {
        let min_p = bitcast<f32>(row_setting(3u, row));
        if (min_p > 0.0) {
            threshold = max(threshold, key_of(m + log(min_p)));
        }
    } else if (params.min_p_on != 0u) {
        threshold = max(threshold, key_of(m + params.log_min_p));
    }
    // Every filter keeps the most probable token; so does the threshold, whatever the
    // rounding of a product like top_p * mass.
    threshold = min(threshold, key_of(m));
    let chunk = chunk_of(local);
    var own = 0.0;
    for (var i = chunk.x; i < chunk.y; i++) {
        let x = scaled(row, logit(row, i));
        if (kept(x, threshold)) {
            own += exp_below(x, m);
        }
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
    }
    workgroupBarrier();
    let total = total_mass;
    let log_total = log(total);
    if (params.first_sample == 0u && (flag(FLAG_PROBS) || flag(FLAG_MASKED))) {
        write_masks(row, chunk, threshold, m, total, bad, state[base + STATE_GREEDY] != 0u, argmax);
    }
    for (var draw = params.first_sample + local; draw < params.end_sample; draw += WORKGROUP_SIZE) {
        let out = row * params.num_samples + draw;
        if (bad) {
            store_id(out, -1);
            if (flag(FLAG_LOGPROBS)) {
                logprobs[out] = quiet_nan();
            }
            continue;
        }
        if (state[base + STATE_GREEDY] != 0u) {
            store_id(out, i32(argmax));
            if (flag(FLAG_LOGPROBS)) {
                logprobs[out] = 0.0;
            }
            continue;
        }
        let u = uniform_of(row, draw) * total;
        // The chunk: the first of positive mass whose running sum passes u, else the
        // last of positive mass.
        var picked = NO_INDEX;
        var last_positive = 0u;
        for (var c = 0u; c < WORKGROUP_SIZE; c++) {
            if (chunk_mass[c] > 0.0) {
                last_positive = c;
                if (chunk_end[c] > u) {
                    picked = c;
                    break;
                }
            }
        }
        if (picked == NO_INDEX) {
            picked = last_positive;
        }
        var left = u;
        if (picked > 0u) {
            left = u - chunk_end[picked - 1u];
        }
        let span = chunk_of(picked);
        var running = 0.0;
        var token = NO_INDEX;
        var last_kept = NO_INDEX;
        var token_x = 0.0;
        var last_x = 0.0;
        for (var i = span.x; i < span.y; i++) {
            let x = scaled(row, logit(row, i));
            if (kept(x, threshold)) {
                let e = exp_below(x, m);
                if (e > 0.0) {
                    last_kept = i;
                    last_x = x;
                    running += e;
                    if (running > left) {
                        token = i;
                        token_x = x;
                        break;
                    }
                }
            }
        }
        if (token == NO_INDEX) {
            token = last_kept;
            token_x = last_x;
        }
        store_id(out, i32(token));
        if (flag(FLAG_LOGPROBS)) {
            logprobs[out] = (token_x - m) - log_total;
        }
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn sample(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) group: vec3<u32>) {
    let row = group.x + group.y * params.groups_x;
    if (row >= params.rows) {
        return;
    }
    switch params.phase {
        case PHASE_STATS: {
            stats(local, row);
        }
        case PHASE_TOP_K: {
            top_k_step(local, row);
        }
        case PHASE_MASS: {
            mass_step(local, row);
        }
        case PHASE_TOP_P: {
            top_p_step(local, row);
        }
        default: {
            draw_step(local, row);
        }
    }
}
