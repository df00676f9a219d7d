// Fused softmax cross-entropy: for each row, its loss, the gradient of the reduced loss
// with respect to its logits, and (optionally) its argmax.
//
// With m the row max, s = sum exp(x - m), logp_c = x_c - m - ln(s), q_c = exp(logp_c):
//
// class-index targets y, class weights w (all 1 without weights), smoothing e, C classes:
//   loss = (1 - e) * w_y * (-logp_y) + (e / C) * sum_c w_c * (-logp_c)
//   dloss/dx_c = q_c * ((1 - e) * w_y + (e / C) * W) - (1 - e) * w_y * [c == y] - (e / C) * w_c
//   with W = sum_c w_c;
// probability targets p, smoothed to p' = p * (1 - e) + e / C:
//   loss = sum_c w_c * p'_c * (-logp_c)
//   dloss/dx_c = q_c * sum_k w_k * p'_k - w_c * p'_c.
// Options: a logit softcap T replaces every logit x by T * tanh(x / T) before anything
// else (its gradient is chained through 1 - tanh^2); a z-loss z adds z * lse^2 to the
// loss of each row not ignored (lse = m + ln(s)), whose gradient is 2 * z * lse * q.
// The gradient is then scaled for the reduction: by the upstream gradient of the row
// (none), 1 (sum), 1 / sum of w_y over the rows not ignored (mean, class indices) or
// 1 / rows (mean, probabilities). -logp_c is computed as (m - x_c) + ln(s): never the
// log of a probability, so logits [0, 1000] with target 0 give a loss of exactly 1000.
// The gradient is computed in f32 from q and rounded once where it is stored: never
// q rounded first (q = 0.999 in bf16 is 1.0, and the true class's gradient would vanish).
//
// One read and one exponential per logit: an invocation takes the max m_l of its share,
// then keeps e = exp(x - m_l) in place of each logit, and the loss's sums relative to m_l;
// q = e * exp(m_l - m) / s. The target's logit is picked up on the first look, before any
// gradient is written over the logits.

// Reduction none only: scale each row's gradient by an upstream gradient.
override HAS_UPSTREAM: bool = false;
override ARGMAX: bool = false;
// Writes each row's logsumexp into `lse`.
override WRITE_LSE: bool = false;
// Caps the logits at params.softcap: a constant of the pipeline, so that the kernels
// without it compile (and run) without its code.
override SOFTCAP: bool = false;
// The mean or sum over rows folded into this kernel (see `group_done`): the divisor
// is read from `totals` rather than `scale`.
override FOLD_REDUCTION: bool = false;

const USES_MAX: bool = true;

// Each row's argmax key for a NaN or +inf: above every other key, as PyTorch's argmax
// takes NaN for the largest.
const KEY_OF_NAN: u32 = 0xffffffffu;

// An order-preserving u32 key of a float, for argmax without float comparisons: NaN and
// +inf rank above everything, -inf below every finite value. Ties go to the lowest index.
fn argmax_key(x: f32) -> u32 {
    if (is_nan_or_positive_infinity(x)) {
        return KEY_OF_NAN;
    }
    let bits = bitcast<u32>(x);
    if ((bits & 0x80000000u) != 0u) {
        return ~bits;
    }
    return bits | 0x80000000u;
}

fn better(a_key: u32, a_index: u32, b_key: u32, b_index: u32) -> bool {
    return b_key > a_key || (b_key == a_key && b_index < a_index);
}

struct Element {
    // The logit; once absorbed, exp(x - m_l).
    x: f32,
    // The (unsmoothed) target probability, with probability targets.
    p: f32,
}

struct Packet {
    x: array<f32, PACKET>,
#if PROBABILITIES
    p: array<f32, PACKET>,
#endif
}

fn has_softcap() -> bool {
    return SOFTCAP;
}

// T * tanh(x / T) for the softcap T; -inf and +inf go to -T and T, NaN stays. The
// argument is clamped where tanh is 1 in f32 (some drivers' tanh overflows past it).
fn softcapped(x: f32) -> f32 {
    let t = params.softcap;
    if (is_finite(x)) {
        return t * tanh(clamp(x / t, -15.0, 15.0));
    }
    if (is_negative_infinity(x)) {
        return -t;
    }
    return select(x, t, bitcast<u32>(x) == POSITIVE_INFINITY_BITS);
}

fn packet_load(k: u32) -> Packet {
    var x = logits_load(k);
    if (has_softcap()) {
        for (var j = 0u; j < PACKET; j++) {
            x[j] = softcapped(x[j]);
        }
    }
#if PROBABILITIES
    return Packet(x, target_probs_load(k));
#else
    return Packet(x);
#endif
}

fn element_of(packet: Packet, j: u32) -> Element {
    var x = packet.x;
#if PROBABILITIES
    var p = packet.p;
    return Element(x[j], p[j]);
#else
    return Element(x[j], 0.0);
#endif
}

fn element_set(packet: ptr<function, Packet>, j: u32, e: Element) {
    (*packet).x[j] = e.x;
}

fn element_key(e: Element) -> f32 {
    return finite_or_lowest(e.x);
}

// The row's class target (class-index targets), read once per row by each invocation.
var<private> row_target: i32;

fn row_begin(span: RowSpan) {
#if !PROBABILITIES
    row_target = class_target(span.row);
#endif
}

fn smoothed(probability: f32) -> f32 {
    let e = params.label_smoothing;
    return probability * (1.0 - e) + e / f32(params.cols);
}

// The sum of the loss over the classes is needed with probability targets, and with
// smoothing.
fn needs_sum() -> bool {
#if PROBABILITIES
    return true;
#else
    return params.label_smoothing > 0.0;
#endif
}

// The coefficient of -logp_c in that sum: w_c * p'_c for probabilities, w_c (times e / C
// later) for class indices.
fn coefficient(e: Element, column: u32) -> f32 {
#if PROBABILITIES
    return class_weight(column) * smoothed(e.p);
#else
    return class_weight(column);
#endif
}

// Beyond the kinds of values: a masked logit whose coefficient is not 0 (an infinite
// loss), and the share holding the target's logit.
const SEEN_MASKED_COEFFICIENT: u32 = 4u;
const SEEN_TARGET: u32 = 8u;

// What an invocation learns from its share of a row, relative to its max m_l.
struct Lane {
    // sum of exp(x - m_l).
    sum: f32,
    seen: u32,
    best_key: u32,
    best_index: u32,
    // Probabilities: sum of w_c * p'_c. Class indices with weights and smoothing: sum of
    // w_c.
    mass: f32,
    // The loss sum's parts: sum of coefficient * (m_l - x_c) over finite logits with a
    // non-zero coefficient, and the sum of those coefficients.
    distance: f32,
    distance_mass: f32,
    // The target's logit, where this share holds it.
    target_x: f32,
}

fn lane_empty() -> Lane {
    return Lane(0.0, 0u, 0u, 0xffffffffu, 0.0, 0.0, 0.0, 0.0);
}

fn lane_scan(lane: Lane, e: Element, column: u32) -> Lane {
    var out = lane;
    out.seen |= kind_of(e.x);
    if (ARGMAX) {
        let key = argmax_key(e.x);
        if (better(lane.best_key, lane.best_index, key, column)) {
            out.best_key = key;
            out.best_index = column;
        }
    }
#if PROBABILITIES
    out.mass += coefficient(e, column);
#else
    if (HAS_WEIGHT && params.label_smoothing > 0.0) {
        out.mass += weight[column];
    }
    if (i32(column) == row_target) {
        out.target_x = e.x;
        out.seen |= SEEN_TARGET;
    }
#endif
    return out;
}

fn lane_rebase(lane: Lane, old_max: f32, new_max: f32) -> Lane {
    var out = lane;
    out.sum *= rebase_factor(old_max, new_max);
    // An empty part (max the lowest finite value) has nothing to move.
    if (lane.distance_mass != 0.0) {
        out.distance += (new_max - old_max) * lane.distance_mass;
    }
    return out;
}

fn lane_absorb(lane: Lane, e: ptr<function, Element>, column: u32, m: f32) -> Lane {
    var out = lane;
    let x = (*e).x;
    let ex = exp_below(x, m);
    out.sum += ex;
    if (needs_sum()) {
        let c = coefficient(*e, column);
        if (c != 0.0) {
            if (is_finite(x)) {
                out.distance += c * (m - x);
                out.distance_mass += c;
            } else if (is_negative_infinity(x)) {
                out.seen |= SEEN_MASKED_COEFFICIENT;
            }
        }
    }
    // With a softcap the capped logit stays: the write needs it for the chain rule, and
    // takes its exponential again.
    if (!has_softcap()) {
        (*e).x = ex;
    }
    return out;
}

fn lane_merge(a: Lane, b: Lane) -> Lane {
    var out = a;
    out.sum = a.sum + b.sum;
    out.seen = a.seen | b.seen;
    if (better(a.best_key, a.best_index, b.best_key, b.best_index)) {
        out.best_key = b.best_key;
        out.best_index = b.best_index;
    }
    out.mass = a.mass + b.mass;
    out.distance = a.distance + b.distance;
    out.distance_mass = a.distance_mass + b.distance_mass;
    out.target_x = select(a.target_x, b.target_x, (b.seen & SEEN_TARGET) != 0u);
    return out;
}

#if SUBGROUPS
fn lane_shuffle_xor(lane: Lane, mask: u32) -> Lane {
    return Lane(
        subgroupShuffleXor(lane.sum, mask),
        subgroupShuffleXor(lane.seen, mask),
        subgroupShuffleXor(lane.best_key, mask),
        subgroupShuffleXor(lane.best_index, mask),
        subgroupShuffleXor(lane.mass, mask),
        subgroupShuffleXor(lane.distance, mask),
        subgroupShuffleXor(lane.distance_mass, mask),
        subgroupShuffleXor(lane.target_x, mask),
    );
}
#endif

// Everything the write and the row's loss need to know about the row.
struct Row {
    target_class: i32,
    ignored: bool,
    max: f32,
    inverse_sum: f32,
    // The gradient is scale * (q_c * q_coefficient - target term).
    q_coefficient: f32,
    scale: f32,
    undefined: bool,
    best_index: u32,
    loss: f32,
    // logsumexp of the (softcapped) logits; NaN for a row holding NaN or +inf, -inf for a
    // row of only -inf.
    lse: f32,
}

fn row_scale(row: u32) -> f32 {
    if (REDUCTION == REDUCTION_NONE) {
        if (HAS_UPSTREAM) {
            return scale[row];
        }
        return 1.0;
    }
    if (REDUCTION == REDUCTION_MEAN) {
#if PROBABILITIES
        return 1.0 / f32(params.total_rows);
#else
        // An all-ignored batch has total 0: every row is ignored and gets gradient 0, so
        // this value is never used.
        return 1.0 / max(mean_divisor(0u), 1.17549435e-38);
#endif
    }
    return 1.0;
}

#if !PROBABILITIES
// The mean's divisors over class indices: [0] the sum of w_y over the rows not ignored,
// [1] their count, as the total_weight pass left them.
fn mean_divisor(index: u32) -> f32 {
#if FOLDS
    if (FOLD_REDUCTION) {
        return bitcast<f32>(atomicLoad(&totals[index]));
    }
#endif
    return scale[index];
}
#endif

// The z-loss coefficient as the kernel applies it. The mean over class targets divides
// the row losses by the summed weights W, but the z-loss by the count N of rows not
// ignored: z * W / N under the common 1 / W (totals [0] W, [1] N).
fn z_loss_coefficient() -> f32 {
#if !PROBABILITIES
    if (REDUCTION == REDUCTION_MEAN && HAS_WEIGHT && params.z_loss > 0.0) {
        return params.z_loss * (mean_divisor(0u) / max(mean_divisor(1u), 1.0));
    }
#endif
    return params.z_loss;
}

// The row's logsumexp, by the kinds of values it holds.
fn row_lse(seen: u32, m: f32, log_sum: f32) -> f32 {
    if ((seen & SEEN_NAN_OR_POSITIVE_INFINITY) != 0u) {
        return quiet_nan();
    }
    if ((seen & SEEN_FINITE) == 0u) {
        return negative_infinity();
    }
    return m + log_sum;
}

fn row_finish(span: RowSpan, total: Lane, m: f32) -> Row {
    // ln(s); -logp_c = (m - x_c) + ln(s), the difference first, so that logits near 1e4
    // (f32 spacing 1e-3) lose nothing to rounding m + ln(s).
    let log_sum = log(total.sum);
    var undefined = row_undefined(total.seen);
    // sum of coefficient * -logp_c, +inf when a masked logit has a non-zero coefficient.
    var loss_sum = total.distance + log_sum * total.distance_mass;
    if ((total.seen & SEEN_MASKED_COEFFICIENT) != 0u) {
        loss_sum = positive_infinity();
    }
    var ignored = false;
    var target_class = 0;
    var loss = 0.0;
#if PROBABILITIES
    var q_coefficient = total.mass;
    loss = loss_sum;
#else
    let e = params.label_smoothing;
    target_class = row_target;
    ignored = target_class == TARGET_IGNORED;
    undefined = undefined || target_class == TARGET_INVALID;
    let total_weight = select(f32(params.cols), total.mass, HAS_WEIGHT);
    var w_y = 0.0;
    if (target_class >= 0) {
        w_y = class_weight(u32(target_class));
        // -logp_y, +inf when the target's logit is masked.
        var distance = positive_infinity();
        if (!is_negative_infinity(total.target_x)) {
            distance = (m - total.target_x) + log_sum;
        }
        loss = (1.0 - e) * (w_y * distance);
        if (e > 0.0) {
            loss += (e / f32(params.cols)) * loss_sum;
        }
    }
    var q_coefficient = (1.0 - e) * w_y + (e / f32(params.cols)) * total_weight;
#endif
    let lse = row_lse(total.seen, m, log_sum);
    let z = z_loss_coefficient();
    if (z > 0.0 && !ignored && !undefined) {
        loss += z * (lse * lse);
        q_coefficient += 2.0 * z * lse;
    }
    if (undefined && !ignored) {
        loss = quiet_nan();
    }
    return Row(
        target_class,
        ignored,
        m,
        1.0 / total.sum,
        q_coefficient,
        row_scale(span.row),
        undefined,
        total.best_index,
        loss,
        lse,
    );
}

// The target term of the gradient of class c: w_c * p'_c for probabilities; for class
// indices (e / C) * w_c, plus (1 - e) * w_y at the target.
fn target_term(row: Row, e: Element, column: u32) -> f32 {
#if PROBABILITIES
    return coefficient(e, column);
#else
    let smoothing = params.label_smoothing;
    let w = class_weight(column);
    var term = (smoothing / f32(params.cols)) * w;
    if (i32(column) == row.target_class) {
        term += (1.0 - smoothing) * w;
    }
    return term;
#endif
}

fn element_output(row: Row, own: Share, e: Element, column: u32) -> f32 {
    if (row.ignored) {
        return 0.0;
    }
    if (row.undefined) {
        return quiet_nan();
    }
    if (has_softcap()) {
        // e.x is the capped logit c = T * tanh(x / T): dc/dx = 1 - (c / T)^2.
        let q = exp_below(e.x, row.max) * row.inverse_sum;
        let t = e.x / params.softcap;
        return row.scale * (q * row.q_coefficient - target_term(row, e, column)) * (1.0 - t * t);
    }
    // e.x holds exp(x - m_l): q = e.x * exp(m_l - m) / s, the factor the same for the
    // whole share.
    let q = e.x * (exp(own.max - row.max) * row.inverse_sum);
    return row.scale * (q * row.q_coefficient - target_term(row, e, column));
}

// The row's loss, a bad target, and the argmax.
fn row_done(span: RowSpan, row: Row) {
#if !PROBABILITIES
    if (row.target_class == TARGET_INVALID) {
        atomicAdd(&status[STATUS_BAD_ROWS], 1u);
        atomicMax(&status[STATUS_FIRST_BAD_ROW], 0xffffffffu - (params.first_row + span.row));
    }
#endif
    row_loss[span.row] = row.loss;
    if (WRITE_LSE) {
#if PACKED
        extras[params.extras_rows + span.row] = bitcast<u32>(row.lse);
#else
        lse[span.row] = row.lse;
#endif
    }
    if (ARGMAX) {
#if PACKED
        extras[span.row] = row.best_index;
#else
        argmax[span.row] = row.best_index;
#endif
#if !PROBABILITIES
        if (row.target_class >= 0 && row.best_index == u32(row.target_class)) {
            atomicAdd(&status[STATUS_CORRECT], 1u);
        }
#endif
    }
}

#if FOLDS
// The mean or sum over rows, folded into the row kernel (FOLD_REDUCTION) so that the op
// records no pass after it. Once a workgroup has written its rows' losses it takes a
// ticket; the workgroup that takes the last sums the chunk's row losses into the chunk's
// total, in one fixed order whichever workgroup that is (invocation i adds rows i,
// i + WORKGROUP_SIZE, ..., then the tree), and after the last chunk adds the chunks'
// totals in chunk order into the loss: the same bits run after run, no float atomics.
// A storage barrier orders storage memory device-wide on every backend naga writes
// (SPIR-V's Device scope, HLSL's DeviceMemoryBarrier, GLSL's memoryBarrierBuffer), so
// the losses are written before the ticket is taken, and read after it.
var<workgroup> group_ticket: u32;

fn group_done(local: u32, groups: u32) {
    if (!FOLD_REDUCTION) {
        return;
    }
    storageBarrier();
    if (local == 0u) {
        group_ticket = atomicAdd(&totals[ticket_word()], 1u);
    }
    if (workgroupUniformLoad(&group_ticket) + 1u != groups) {
        return;
    }
    storageBarrier();
    var sum = 0.0;
    for (var row = local; row < params.rows; row += WORKGROUP_SIZE) {
        sum += row_loss[row];
    }
    let chunk_total = workgroup_sum(local, sum);
    if (local == 0u) {
        atomicStore(&totals[loss_partial(params.chunk)], bitcast<u32>(chunk_total));
        // The next chunk's dispatch counts its workgroups from 0 again.
        atomicStore(&totals[ticket_word()], 0u);
        if (params.chunk + 1u == params.chunks) {
            var total = 0.0;
            for (var k = 0u; k < params.chunks; k++) {
                total += bitcast<f32>(atomicLoad(&totals[loss_partial(k)]));
            }
#if PROBABILITIES
            loss[0] = reduced_loss(total, 0.0);
#else
            loss[0] = reduced_loss(total, mean_divisor(0u));
#endif
        }
    }
}
#endif
