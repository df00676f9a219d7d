// Sampling a token id per draw from each row of logits, without a sort: one workgroup per
// row, each row's state between steps in `state`. The statistics, the digit steps of the
// threshold searches and the draws are entry points of their own (sample_stats,
// sample_search, sample_draw); a search dispatch takes the digit steps params.first_step
// .. params.end_step (all of them unless the driver limits an invocation's loop
// iterations).
//
// Values: x = logit / temperature (the logit itself when greedy); only finite x take
// part. key(x) is the order-preserving u32 of x's bits, so that `key(a) >= key(b)` is
// `a >= b` for finite values, decided on bits (WGSL may fold float comparisons of special
// values). A token is kept when it is finite and key(x) >= the row's threshold, the
// largest of the top-k, top-p and min-p keys: every step decides membership from this
// one comparison, so no draw can land on a filtered token.
//
// Steps:
//   STEP_STATS      the row's max m of x (through the argmax of the logits, lowest index
//                   on ties), the finite count, whether it holds a NaN or +inf (or nothing
//                   finite): such a row is counted in `status` and draws -1. With top-k
//                   on, also the top-k digits fixed by the chunks' four largest keys
//                   (top_k_known_bits), and both thresholds where those keys are sure
//                   to hold every key at or above K_k (gather_tops); else the search
//                   skips the digits found, after gathering the keys under them where
//                   they are few enough;
//   STEP_TOP_K + l  digit l (DIGIT_BITS bits, highest first) of the top-k key K_k, the
//                   largest K with count(key >= K) >= k: a histogram of the digit over
//                   the keys under the digits found so far, and the largest digit whose
//                   count, with every count above it, reaches k (LEVELS steps);
//   STEP_TOP_P + l  digit l of the top-p key K_p, the largest K with
//                   mass(key >= max(K, K_k)) >= top_p * M_k, where M_k, the top-k set's
//                   mass, is the first step's whole histogram: a histogram of the mass
//                   sum of exp(x - m) (LEVELS steps). Each bin is a sum in one fixed order
//                   (chunks, then a tree), so the bits repeat; where rounding leaves no
//                   digit reaching the mass, digit 0 keeps the whole bin (a superset);
//   finish          after a top-k digit step, once the keys at or above the digits found
//                   so far number at most CANDIDATES: both thresholds from those keys,
//                   gathered and sorted in workgroup memory (finish_in_memory); after a
//                   top-p digit step, once its bin holds at most CANDIDATES keys (counted
//                   beside the masses), K_p from that bin's keys likewise
//                   (finish_top_p_in_memory); the remaining digit steps are skipped
//                   (STATE_SETTLED);
//   STEP_DRAW       the draws first_sample .. end_sample of each row: each invocation's
//                   contiguous chunk's kept mass, their running sums by invocation 0 (the
//                   total S), then per draw u = uniform * S, the chunk where the running
//                   sum passes u, and in it the element where its own running sum passes
//                   what is left of u. Rounding that leaves u at or past the end takes the
//                   last kept element of positive mass.
//
// A temperature so small that the largest logit over it overflows f32 draws the argmax.
//
// Per-row settings: the bits of params.flags say which
// of temperature, top-k, top-p and min-p are per row; those lie in `state` past the rows'
// state words, each `rows` words (f32 bits, top-k a u32), copied there by the host. A
// row whose setting is out of range (a temperature negative or not finite, top-p outside
// (0, 1], min-p outside [0, 1]) is counted in the status words STATUS_BAD_SETTINGS and
// STATUS_FIRST_BAD_SETTINGS and draws -1. Per row, top-k 0 and top-p 1 are off: the
// digit steps run for every row when any row uses the filter (FLAG_TOP_K_ON,
// FLAG_TOP_P_ON), and leave such a row's threshold at 0.
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
// The count of keys above the top-k digits found so far, and the mass above the top-p's.
const STATE_TOP_K_ABOVE: u32 = 8u;
const STATE_TOP_P_ABOVE: u32 = 9u;
// 1 once both thresholds are final (the candidates' finish ran): later digit steps skip.
const STATE_SETTLED: u32 = 10u;
// The first digit the top-k search looks for: the digits above it are those that every
// key between the statistics' lower bound on K_k and the max shares (STATE_TOP_K holds
// them from the statistics on).
const STATE_TOP_K_FROM: u32 = 11u;

// The digits of the threshold searches. DIGIT_BITS, BINS and LEVELS come from the host.

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

// Where the workgroup's row begins in the bound block of rows (the logits and the masks
// are bound from the block's first row, params.row_base, a multiple of params.inner):
// class c of row r = o * inner + j (o the position before the class axis, j after it)
// is element (o * cols + c) * inner + j, so class c of the row is element
// row_origin + c * inner. Set once per invocation by `enter_row`.
var<private> row_origin: u32;

fn enter_row(row: u32) {
    let local = row - params.row_base;
    row_origin = local / params.inner * params.cols * params.inner + local % params.inner;
}

// Element `i` (the class) of the workgroup's row in the bound block.
fn element_index(i: u32) -> u32 {
    return row_origin + i * params.inner;
}

fn logit(i: u32) -> f32 {
    let index = element_index(i);
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

fn uniform_of(row: u32, draw: u32) -> f32 {
    return unit_uniform(philox(vec4<u32>(row, draw, 0u, 0u), vec2<u32>(params.seed_lo, params.seed_hi)).x);
}

// The bits of logit `i` of the row as stored (an f32's, or a 16-bit element's).
fn stored_bits(i: u32) -> u32 {
    let index = element_index(i);
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
        let x = scaled(row, logit(i));
        var keep = kept(x, threshold);
        if (greedy) {
            keep = i == argmax;
        }
        let index = element_index(i);
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
            var bits = stored_bits(i);
            if (bad) {
                bits = nan;
            } else if (!keep) {
                bits = masked;
            }
            store_masked(index, bits);
        }
    }
}

// The f32 whose order-preserving key is `key` (key_of's inverse).
fn value_of_key(key: u32) -> f32 {
    return bitcast<f32>(select(~key, key ^ 0x80000000u, (key & 0x80000000u) != 0u));
}

// The key of x = logit / temperature for the logit whose key is `raw_key`.
fn scaled_key(row: u32, raw_key: u32) -> u32 {
    return key_of(scaled(row, value_of_key(raw_key)));
}

// `tops` (largest first) with `key` in its place, the smallest falling off: each place
// keeps the larger of its own key and the smaller of `key` and the key above it.
fn insert_top(tops: vec4<u32>, key: u32) -> vec4<u32> {
    return max(tops, min(vec4<u32>(key), vec4<u32>(0xffffffffu, tops.xyz)));
}

// Whether some invocation's four tops may leave out keys at or above the k-th (see
// gather_tops).
var<workgroup> tops_overflow: atomic<u32>;

// Top-k settled by the statistics: the invocations' four largest keys (`tops`, raw) at or
// above `floor` (a key of x) are gathered as candidates, with their masses, and sorted;
// K is the k-th. An invocation whose chunk keeps out a key at or above K has four keys
// at or above K (its fourth top, over the temperature, is at least K); where none does,
// the candidates hold every key at or above K, so K is the row's k-th key K_k, and they
// settle both thresholds as the candidates' finish would. Returns their count, or
// NO_INDEX where they do not settle the row (more than CANDIDATES, fewer than k, an
// invocation that may keep some out, top-k off for the row). Call in uniform control
// flow.
fn gather_tops(local: u32, row: u32, tops: vec4<u32>, m: f32, floor: u32) -> u32 {
    if (local == 0u) {
        atomicStore(&candidate_count, 0u);
        atomicStore(&tops_overflow, 0u);
    }
    workgroupBarrier();
    for (var t = 0u; t < 4u; t++) {
        let key = scaled_key(row, tops[t]);
        if (tops[t] != 0u && key >= floor) {
            let at = atomicAdd(&candidate_count, 1u);
            if (at < CANDIDATES) {
                candidate_keys[at] = key;
            }
        }
    }
    workgroupBarrier();
    let count = rank_gathered(local, m);
    // The row's k as a value uniform over the workgroup (a per-row setting is read from
    // storage), since the check below waits on barriers.
    let k = first_invocations_word(local, top_k_of(row));
    if (count > CANDIDATES || count < k || k == 0u) {
        return NO_INDEX;
    }
    let kth = candidate_keys[k - 1u];
    if (tops.w != 0u && scaled_key(row, tops.w) >= kth) {
        atomicStore(&tops_overflow, 1u);
    }
    workgroupBarrier();
    let overflow = first_invocations_word(local, atomicLoad(&tops_overflow));
    return select(count, NO_INDEX, overflow != 0u);
}

// How many leading bits of the top-k key K_k are known from the four largest keys of
// each invocation's chunk (`tops`, 0 where there is none; raw logits' keys) and the max
// m: with count_b the tops (over the temperature) that share their first b bits with
// m's key, where count_b >= k, k of the row's keys lie between the floor of those b bits
// and m, so K_k has them too, and no key lies above them (m is under them). Returns the
// largest such b (0 where none, or k is 0 or more than the finite keys), found a digit
// at a time and then a bit at a time over the next 8 bits, so that the tops under the
// floor of its bits number under about 2k. Every invocation returns the same; call in
// uniform control flow.
fn top_k_known_bits(local: u32, row: u32, tops: vec4<u32>, m: f32, finite: u32) -> u32 {
    var shared_bits = vec4<u32>(0u);
    for (var t = 0u; t < 4u; t++) {
        if (tops[t] != 0u) {
            shared_bits[t] = countLeadingZeros(scaled_key(row, tops[t]) ^ key_of(m));
        }
    }
    let k = top_k_of(row);
    let usable = k > 0u && k <= finite;
    // Digits first: the tops sharing at least 4, 8, ..., 32 bits.
    let digits = vec4<u32>(DIGIT_BITS) * vec4<u32>(1u, 2u, 3u, 4u);
    let by_digit = workgroup_sum8(local, count_sharing(shared_bits, digits), count_sharing(shared_bits, digits + vec4<u32>(4u * DIGIT_BITS)), false);
    var known = 0u;
    for (var j = 0u; j < 8u; j++) {
        if (usable && by_digit[j / 4u][j % 4u] >= k) {
            known = DIGIT_BITS * (j + 1u);
        }
    }
    // Then bits, over the 8 after them.
    let bits = vec4<u32>(known) + vec4<u32>(1u, 2u, 3u, 4u);
    let by_bit = workgroup_sum8(local, count_sharing(shared_bits, bits), count_sharing(shared_bits, bits + vec4<u32>(4u)), false);
    var more = 0u;
    for (var j = 0u; j < 8u; j++) {
        if (usable && by_bit[j / 4u][j % 4u] >= k) {
            more = j + 1u;
        }
    }
    return min(known + more, 32u);
}

// For each of `at_least`'s lanes, how many of the four tops share at least that many
// leading bits with the max's key.
fn count_sharing(shared_bits: vec4<u32>, at_least: vec4<u32>) -> vec4<u32> {
    var count = vec4<u32>(0u);
    for (var t = 0u; t < 4u; t++) {
        count += select(vec4<u32>(0u), vec4<u32>(1u), vec4<u32>(shared_bits[t]) >= at_least);
    }
    return count;
}

// The keys from m's key down to the floor of its first `bits` bits.
fn floor_of_bits(top: u32, bits: u32) -> u32 {
    if (bits >= 32u) {
        return top;
    }
    return top & ~(0xffffffffu >> bits);
}

fn stats(local: u32, row: u32) {
    let chunk = chunk_of(local);
    var best_key = 0u;
    var best_index = NO_INDEX;
    // With top-k on, the chunk's four largest keys, largest first (0, below every finite
    // key, while there are fewer).
    var tops = vec4<u32>(0u);
    var bad = 0u;
    var finite = 0u;
    for (var i = chunk.x; i < chunk.y; i++) {
        let raw = logit(i);
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
            if (flag(FLAG_TOP_K_ON)) {
                tops = insert_top(tops, key);
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
    var first_level = 0u;
    var settled_count = NO_INDEX;
    if (flag(FLAG_TOP_K_ON)) {
        // The raw max's key is the tree's root.
        let m = scaled(row, value_of_key(shared_keys[0]));
        let known = top_k_known_bits(local, row, tops, m, finite_total);
        // The search goes by digits, and takes one step at least: its count decides the
        // candidates' finish.
        first_level = min(known / DIGIT_BITS, LEVELS - 1u);
        settled_count = gather_tops(local, row, tops, m, floor_of_bits(key_of(m), known));
    }
    if (local == 0u) {
        let argmax = shared_index[0];
        let undefined = bad_total > 0u || finite_total == 0u;
        let settings_bad = !settings_in_range(row);
        var m = 0.0;
        if (!undefined && !settings_bad) {
            m = scaled(row, logit(argmax));
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
        state[base + STATE_TOP_K_ABOVE] = 0u;
        state[base + STATE_TOP_P_ABOVE] = 0u;
        state[base + STATE_SETTLED] = 0u;
        state[base + STATE_TOP_K_FROM] = 0u;
        if (first_level > 0u && !undefined && !settings_bad && !greedy) {
            state[base + STATE_TOP_K] = floor_of_bits(key_of(m), DIGIT_BITS * first_level);
            state[base + STATE_TOP_K_FROM] = first_level;
        }
        if (settled_count != NO_INDEX && !undefined && !settings_bad && !greedy) {
            settle_from_candidates(row, settled_count);
        }
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

// Eight bins per invocation summed over the workgroup by one tree (a fixed order, so the
// same bits every run): counts as u32, or with `floats` f32 masses carried as their bits.
// On a CPU adapter barriers are dear: one tree for eight bins takes an eighth of the
// barriers of a tree per bin.
var<workgroup> bin_tree: array<array<vec4<u32>, 2>, WORKGROUP_SIZE>;

fn add_bins(a: vec4<u32>, b: vec4<u32>, floats: bool) -> vec4<u32> {
    if (floats) {
        return bitcast<vec4<u32>>(bitcast<vec4<f32>>(a) + bitcast<vec4<f32>>(b));
    }
    return a + b;
}

fn workgroup_sum8(local: u32, low: vec4<u32>, high: vec4<u32>, floats: bool) -> array<vec4<u32>, 2> {
    bin_tree[local][0] = low;
    bin_tree[local][1] = high;
    workgroupBarrier();
    for (var width = WORKGROUP_SIZE / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            bin_tree[local][0] = add_bins(bin_tree[local][0], bin_tree[local + width][0], floats);
            bin_tree[local][1] = add_bins(bin_tree[local][1], bin_tree[local + width][1], floats);
        }
        workgroupBarrier();
    }
    let total = bin_tree[0];
    // Nobody overwrites the root before everyone has read it.
    workgroupBarrier();
    return total;
}

// A histogram of the 16 digits in registers, a digit adding to its bin by vector
// compares. An array indexed by the digit would be a scatter through memory on a SIMD
// adapter, and llvmpipe keeps even a private array of vec4s, indexed in a loop of four,
// in memory (the top-p steps ran 30% slower with one). The counts take two 16-bit bins
// per word, since a chunk holds at most 65535 keys (the host holds a row to
// SAMPLE_MAX_COLS = 65535 chunks' worth): with the masses' four vec4s, a top-p step
// keeps 24 words per invocation, where 32 spilled registers and ran a third slower.
// BINS is 16 (a host test holds it there).
struct CountBins {
    // Bins 2w and 2w + 1 in the low and high halves of word w: bins 0 to 7, then 8 to 15.
    low: vec4<u32>,
    high: vec4<u32>,
}

struct MassBins {
    q0: vec4<f32>,
    q1: vec4<f32>,
    q2: vec4<f32>,
    q3: vec4<f32>,
}

// Which lanes of each quarter of the bins are digit `d`.
struct DigitLanes {
    q0: vec4<bool>,
    q1: vec4<bool>,
    q2: vec4<bool>,
    q3: vec4<bool>,
}

fn digit_lanes(d: u32) -> DigitLanes {
    let digit = vec4<u32>(d);
    let lanes = vec4<u32>(0u, 1u, 2u, 3u);
    return DigitLanes(lanes == digit, lanes + 4u == digit, lanes + 8u == digit, lanes + 12u == digit);
}

fn count_digit(bins: CountBins, d: u32) -> CountBins {
    let word = vec4<u32>(d / 2u);
    let one = vec4<u32>(1u << (16u * (d % 2u)));
    let zero = vec4<u32>(0u);
    let lanes = vec4<u32>(0u, 1u, 2u, 3u);
    return CountBins(bins.low + select(zero, one, lanes == word), bins.high + select(zero, one, lanes + 4u == word));
}

fn add_mass(bins: MassBins, hot: DigitLanes, w: f32) -> MassBins {
    let zero = vec4<f32>(0.0);
    let mass = vec4<f32>(w);
    return MassBins(
        bins.q0 + select(zero, mass, hot.q0),
        bins.q1 + select(zero, mass, hot.q1),
        bins.q2 + select(zero, mass, hot.q2),
        bins.q3 + select(zero, mass, hot.q3),
    );
}

// The bins of four packed words, in order.
fn unpack_counts(words: vec4<u32>) -> array<vec4<u32>, 2> {
    let low = words & vec4<u32>(0xffffu);
    let high = words >> vec4<u32>(16u);
    return array<vec4<u32>, 2>(vec4<u32>(low.x, high.x, low.y, high.y), vec4<u32>(low.z, high.z, low.w, high.w));
}

// The workgroup's count in each bin, summed in one fixed order.
fn workgroup_count_bins(local: u32, bins: CountBins) -> array<u32, BINS> {
    // Unpacked first: a bin's total may pass 16 bits.
    let first = unpack_counts(bins.low);
    let second = unpack_counts(bins.high);
    let low = workgroup_sum8(local, first[0], first[1], false);
    let high = workgroup_sum8(local, second[0], second[1], false);
    let a = low[0];
    let b = low[1];
    let c = high[0];
    let d = high[1];
    return array<u32, BINS>(a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w, c.x, c.y, c.z, c.w, d.x, d.y, d.z, d.w);
}

// The workgroup's mass in each bin, summed in one fixed order, so the bits repeat.
fn workgroup_mass_bins(local: u32, bins: MassBins) -> array<f32, BINS> {
    let low = workgroup_sum8(local, bitcast<vec4<u32>>(bins.q0), bitcast<vec4<u32>>(bins.q1), true);
    let high = workgroup_sum8(local, bitcast<vec4<u32>>(bins.q2), bitcast<vec4<u32>>(bins.q3), true);
    let a = bitcast<vec4<f32>>(low[0]);
    let b = bitcast<vec4<f32>>(low[1]);
    let c = bitcast<vec4<f32>>(high[0]);
    let d = bitcast<vec4<f32>>(high[1]);
    return array<f32, BINS>(a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w, c.x, c.y, c.z, c.w, d.x, d.y, d.z, d.w);
}

// Whether `key`'s digits above `level` are those of `prefix`.
fn under_prefix(key: u32, prefix: u32, level: u32) -> bool {
    if (level == 0u) {
        return true;
    }
    let shift = 32u - DIGIT_BITS * level;
    return (key >> shift) == (prefix >> shift);
}

// Digit `level` of `key`, the highest first.
fn digit_of(key: u32, level: u32) -> u32 {
    return (key >> (32u - DIGIT_BITS * (level + 1u))) & (BINS - 1u);
}

// `prefix` with digit `level` set to `digit`.
fn with_digit(prefix: u32, level: u32, digit: u32) -> u32 {
    return prefix | (digit << (32u - DIGIT_BITS * (level + 1u)));
}

// Digit `level` of the top-k key: the histogram of the digit over the finite keys under
// the digits found so far, and the largest digit whose count, with the counts above it,
// reaches k.
fn top_k_level(local: u32, row: u32, level: u32) {
    let base = row * STATE_WORDS;
    let prefix = state[base + STATE_TOP_K];
    let chunk = chunk_of(local);
    var counts = CountBins();
    for (var i = chunk.x; i < chunk.y; i++) {
        let x = scaled(row, logit(i));
        if (is_finite(x)) {
            let key = key_of(x);
            if (under_prefix(key, prefix, level)) {
                counts = count_digit(counts, digit_of(key, level));
            }
        }
    }
    // The workgroup's histogram, which invocation 0 reads.
    let count_bins = workgroup_count_bins(local, counts);
    let k = top_k_of(row);
    if (local == 0u) {
        shared_word = NO_INDEX;
    }
    // k = 0 is off (a row's own setting; the host records no step when no row uses it).
    if (local == 0u && k > 0u) {
        let above_before = state[base + STATE_TOP_K_ABOVE];
        var above = above_before;
        // No digit reaching k: k is more than the finite keys, and digit 0 keeps them all.
        var digit = 0u;
        var found = false;
        for (var b = BINS; b > 0u; b--) {
            if (above + count_bins[b - 1u] >= k) {
                digit = b - 1u;
                found = true;
                break;
            }
            above += count_bins[b - 1u];
        }
        if (!found) {
            above = above_before;
        }
        state[base + STATE_TOP_K] = with_digit(prefix, level, digit);
        state[base + STATE_TOP_K_ABOVE] = above;
        // The keys at or above the new digit's floor: those above it and its bin's.
        shared_word = select(NO_INDEX, above + count_bins[digit], found);
    }
    storageBarrier();
    let candidates = workgroupUniformLoad(&shared_word);
    workgroupBarrier();
    if (candidates <= CANDIDATES) {
        finish_in_memory(local, row);
    }
}

// The candidates' finish: once the keys at or above the top-k search's floor (its digits
// so far, the rest 0) number at most CANDIDATES, one pass gathers them with their masses
// into workgroup memory, a sort puts them in descending order of key, and both thresholds
// are read off it: K_k the k-th key, K_p the key where the running mass of the keys at
// or above K_k first reaches top_p times their whole (summed in that order). Equal keys
// are equal values of equal mass, so the order among them changes no sum's bits. K_k is
// the radix search's; K_p is the largest K whose mass reaches top_p * M_k, M_k and the
// running sums taken in one fixed order, so every threshold is one consistent set of
// values as before.
var<workgroup> candidate_keys: array<u32, CANDIDATES>;
var<workgroup> candidate_mass: array<f32, CANDIDATES>;
var<workgroup> candidate_count: atomic<u32>;

// Gathers the kept keys (x finite, key >= lower) whose digits above `levels` are those of
// `prefix`, with their masses, into the candidates, and sorts them in descending order of
// key; returns how many there are (at most CANDIDATES: the caller counted them).
fn gather_candidates(local: u32, row: u32, lower: u32, prefix: u32, levels: u32) -> u32 {
    let m = bitcast<f32>(state[row * STATE_WORDS + STATE_MAX]);
    if (local == 0u) {
        atomicStore(&candidate_count, 0u);
    }
    workgroupBarrier();
    let chunk = chunk_of(local);
    for (var i = chunk.x; i < chunk.y; i++) {
        let x = scaled(row, logit(i));
        if (kept(x, lower) && under_prefix(key_of(x), prefix, levels)) {
            let at = atomicAdd(&candidate_count, 1u);
            if (at < CANDIDATES) {
                candidate_keys[at] = key_of(x);
            }
        }
    }
    workgroupBarrier();
    return rank_gathered(local, m);
}

// After a gather into the candidates: their count (as counted, past CANDIDATES where
// some did not fit), and where they all fit, their masses exp(x - m) and their sort in
// descending order of key. The masses come from the keys (a key holds its value's
// bits), once per candidate rather than once per element of the row. Call in uniform
// control flow.
fn rank_gathered(local: u32, m: f32) -> u32 {
    let count = first_invocations_word(local, atomicLoad(&candidate_count));
    if (count > CANDIDATES) {
        return count;
    }
    for (var i = local; i < count; i += WORKGROUP_SIZE) {
        candidate_mass[i] = exp_below(value_of_key(candidate_keys[i]), m);
    }
    workgroupBarrier();
    sort_candidates_descending(local, count);
    return count;
}

fn finish_in_memory(local: u32, row: u32) -> bool {
    let base = row * STATE_WORDS;
    let count = gather_candidates(local, row, state[base + STATE_TOP_K], 0u, 0u);
    if (count > CANDIDATES) {
        return false;
    }
    if (local == 0u) {
        settle_from_candidates(row, count);
    }
    storageBarrier();
    workgroupBarrier();
    return true;
}

// Both thresholds from the `count` candidates sorted in descending order of key, which
// hold every key at or above the row's k-th: K_k the k-th key, K_p the key where the
// running mass of the keys at or above K_k, summed in that order, first reaches top_p
// times their whole. Marks the row settled. One invocation calls it.
fn settle_from_candidates(row: u32, count: u32) {
    let base = row * STATE_WORDS;
    let k = top_k_of(row);
    let top_k = candidate_keys[min(k, count) - 1u];
    var top_p = 0u;
    let p = top_p_of(row);
    if (flag(FLAG_TOP_P_ON) && p < 1.0) {
        var kept_count = 0u;
        var whole = 0.0;
        while (kept_count < count && candidate_keys[kept_count] >= top_k) {
            whole += candidate_mass[kept_count];
            kept_count++;
        }
        let needed = p * whole;
        var running = 0.0;
        for (var i = 0u; i < kept_count; i++) {
            running += candidate_mass[i];
            if (running >= needed) {
                top_p = candidate_keys[i];
                break;
            }
        }
        state[base + STATE_MASS_K] = bitcast<u32>(whole);
    }
    state[base + STATE_TOP_K] = top_k;
    state[base + STATE_TOP_P] = top_p;
    state[base + STATE_SETTLED] = 1u;
}

// Sorts the first `count` candidates (at most CANDIDATES) in descending order of key,
// their masses alongside, by rank: each one's place is the number of candidates before
// it in that order (larger keys, and equal keys at lower places), counted by a look at
// every candidate. That is `count` looks per candidate and 2 barriers, where a bitonic
// sort takes 28 to 45 barriers for 64 to 512 candidates, and a barrier on a CPU adapter
// costs more than the looks. Equal keys are equal values of equal mass, so their order
// changes no sum's bits. Each invocation places at most two candidates (CANDIDATES is
// twice WORKGROUP_SIZE; the host asserts it at compile time).
fn sort_candidates_descending(local: u32, count: u32) {
    let first = rank_of(local, count);
    let second = rank_of(local + WORKGROUP_SIZE, count);
    workgroupBarrier();
    place(local, first, count);
    place(local + WORKGROUP_SIZE, second, count);
    workgroupBarrier();
}

// A candidate's key and mass, and its place in descending order.
struct Ranked {
    key: u32,
    mass: f32,
    place: u32,
}

fn rank_of(i: u32, count: u32) -> Ranked {
    if (i >= count) {
        return Ranked(0u, 0.0, 0u);
    }
    let key = candidate_keys[i];
    var place = 0u;
    for (var j = 0u; j < count; j++) {
        let other = candidate_keys[j];
        place += select(0u, 1u, other > key || (other == key && j < i));
    }
    return Ranked(key, candidate_mass[i], place);
}

fn place(i: u32, ranked: Ranked, count: u32) {
    if (i < count) {
        candidate_keys[ranked.place] = ranked.key;
        candidate_mass[ranked.place] = ranked.mass;
    }
}

// Whether the row's thresholds are final, as a value uniform over the workgroup.
var<workgroup> shared_word: u32;

fn settled(local: u32, row: u32) -> bool {
    return first_invocations_word(local, state[row * STATE_WORDS + STATE_SETTLED]) != 0u;
}

// The first invocation's `value`, as a value uniform over the workgroup (what branches
// before barriers need; a word read from storage or workgroup memory is not one). Call
// in uniform control flow.
fn first_invocations_word(local: u32, value: u32) -> u32 {
    if (local == 0u) {
        shared_word = value;
    }
    let word = workgroupUniformLoad(&shared_word);
    // Nobody overwrites it before everyone has read it.
    workgroupBarrier();
    return word;
}

// Digit `level` of the top-p key: the histogram of the kept mass (key >= K_k) under the
// digits found so far, and the largest digit whose mass, with the mass above it, reaches
// top_p * M_k; the first level's whole histogram is M_k.
fn top_p_level(local: u32, row: u32, level: u32) {
    let base = row * STATE_WORDS;
    let m = bitcast<f32>(state[base + STATE_MAX]);
    let top_k = state[base + STATE_TOP_K];
    let prefix = state[base + STATE_TOP_P];
    let chunk = chunk_of(local);
    var masses = MassBins();
    var counts = CountBins();
    for (var i = chunk.x; i < chunk.y; i++) {
        let x = scaled(row, logit(i));
        if (kept(x, top_k)) {
            let key = key_of(x);
            if (under_prefix(key, prefix, level)) {
                let d = digit_of(key, level);
                masses = add_mass(masses, digit_lanes(d), exp_below(x, m));
                counts = count_digit(counts, d);
            }
        }
    }
    let mass_bins = workgroup_mass_bins(local, masses);
    let count_bins = workgroup_count_bins(local, counts);
    let p = top_p_of(row);
    if (local == 0u) {
        shared_word = NO_INDEX;
    }
    // p = 1 is off (a row's own setting).
    if (local == 0u && p < 1.0) {
        if (level == 0u) {
            var whole = 0.0;
            for (var b = BINS; b > 0u; b--) {
                whole += mass_bins[b - 1u];
            }
            state[base + STATE_MASS_K] = bitcast<u32>(whole);
            state[base + STATE_TOP_P_ABOVE] = bitcast<u32>(0.0);
        }
        let needed = p * bitcast<f32>(state[base + STATE_MASS_K]);
        let above_before = bitcast<f32>(state[base + STATE_TOP_P_ABOVE]);
        var above = above_before;
        // Where rounding leaves no digit reaching the mass, digit 0 keeps the whole bin.
        var digit = 0u;
        var found = false;
        for (var b = BINS; b > 0u; b--) {
            if (above + mass_bins[b - 1u] >= needed) {
                digit = b - 1u;
                found = true;
                break;
            }
            above += mass_bins[b - 1u];
        }
        if (!found) {
            above = above_before;
        }
        state[base + STATE_TOP_P] = with_digit(prefix, level, digit);
        state[base + STATE_TOP_P_ABOVE] = bitcast<u32>(above);
        // The keys under the new digit: its bin's count.
        shared_word = select(NO_INDEX, count_bins[digit], found);
    }
    storageBarrier();
    let candidates = workgroupUniformLoad(&shared_word);
    workgroupBarrier();
    if (candidates <= CANDIDATES && level + 1u < LEVELS) {
        finish_top_p_in_memory(local, row, level + 1u);
    }
}

// The top-p search's finish: once the keys under its digits so far (the top-k set's)
// number at most CANDIDATES, they are gathered and sorted, and K_p is the key where the
// mass above them plus their running mass, in that order, first reaches top_p * M_k;
// where rounding leaves none reaching it, the digits so far with the rest 0 (the whole
// bin, a superset, as the digit steps would).
fn finish_top_p_in_memory(local: u32, row: u32, levels: u32) {
    let base = row * STATE_WORDS;
    let prefix = state[base + STATE_TOP_P];
    let count = gather_candidates(local, row, state[base + STATE_TOP_K], prefix, levels);
    if (local == 0u) {
        let needed = top_p_of(row) * bitcast<f32>(state[base + STATE_MASS_K]);
        var running = bitcast<f32>(state[base + STATE_TOP_P_ABOVE]);
        var top_p = prefix;
        for (var i = 0u; i < count; i++) {
            running += candidate_mass[i];
            if (running >= needed) {
                top_p = candidate_keys[i];
                break;
            }
        }
        state[base + STATE_TOP_P] = top_p;
        state[base + STATE_SETTLED] = 1u;
    }
    storageBarrier();
    workgroupBarrier();
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
        let x = scaled(row, logit(i));
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
            let x = scaled(row, logit(i));
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

// Three entry points, so that each pipeline holds only its own step's state: llvmpipe
// runs a kernel whose loop holds every step several times slower per workgroup.

// The workgroup's row: the block's first row plus its place in the grid, or past the
// block's last (then params.rows or more).
fn row_of(group: vec3<u32>) -> u32 {
    let local_row = group.x + group.y * params.groups_x;
    return select(params.rows, params.row_base + local_row, local_row < params.block_rows);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn sample_stats(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) group: vec3<u32>) {
    let row = row_of(group);
    if (row < params.rows) {
        enter_row(row);
        stats(local, row);
    }
}

// The digit steps first_step .. end_step of the top-k and top-p searches that run.
@compute @workgroup_size(WORKGROUP_SIZE)
fn sample_search(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) group: vec3<u32>) {
    let row = row_of(group);
    if (row >= params.rows) {
        return;
    }
    enter_row(row);
    // The top-k digits that the statistics fixed are skipped; the keys under them are
    // often few enough to gather at once, else the digit steps go on from there.
    let first_level = first_invocations_word(local, state[row * STATE_WORDS + STATE_TOP_K_FROM]);
    if (params.first_step == STEP_TOP_K && first_level > 0u && !settled(local, row)) {
        finish_in_memory(local, row);
    }
    for (var step = max(params.first_step, STEP_TOP_K + first_level); step < params.end_step; step++) {
        if (settled(local, row)) {
            break;
        }
        if (step < STEP_TOP_P) {
            if (flag(FLAG_TOP_K_ON)) {
                top_k_level(local, row, step - STEP_TOP_K);
            }
        } else if (flag(FLAG_TOP_P_ON)) {
            top_p_level(local, row, step - STEP_TOP_P);
        }
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn sample_draw(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) group: vec3<u32>) {
    let row = row_of(group);
    if (row < params.rows) {
        enter_row(row);
        draw_step(local, row);
    }
}
