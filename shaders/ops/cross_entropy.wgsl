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
// The gradient is then scaled for the reduction: by the upstream gradient of the row
// (none), 1 (sum), 1 / sum of w_y over the rows not ignored (mean, class indices) or
// 1 / rows (mean, probabilities). -logp_c is computed as (m - x_c) + ln(s): never the
// log of a probability, so logits [0, 1000] with target 0 give a loss of exactly 1000.
// The gradient is computed in f32 from q and rounded once where it is stored: never
// q rounded first (q = 0.999 in bf16 is 1.0, and the true class's gradient would vanish).

// Reduction none only: scale each row's gradient by an upstream gradient.
override HAS_UPSTREAM: bool = false;
override ARGMAX: bool = false;

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

struct Element {
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

// What an invocation learns from its share of a row.
struct Lane {
    stats: RowStats,
    best_key: u32,
    best_index: u32,
    // Class indices: sum of w_c (needed with smoothing). Probabilities: sum of w_c * p'_c.
    target_mass: f32,
}

// Everything the write pass and the row's loss need to know about the row.
struct Row {
    target_class: i32,
    ignored: bool,
    // ln(s): -logp_c = (m - x_c) + ln(s), the difference first, so that logits near 1e4
    // (f32 spacing 1e-3) lose nothing to rounding m + ln(s).
    log_sum: f32,
    max: f32,
    // The gradient is scale * (q_c * q_coefficient - target term).
    q_coefficient: f32,
    scale: f32,
    undefined: bool,
    best_index: u32,
}

fn packet_load(k: u32) -> Packet {
#if PROBABILITIES
    return Packet(logits_load(k), target_probs_load(k));
#else
    return Packet(logits_load(k));
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

fn smoothed(probability: f32) -> f32 {
    let e = params.label_smoothing;
    return probability * (1.0 - e) + e / f32(params.cols);
}

fn lane_empty() -> Lane {
    return Lane(row_stats_empty(), 0u, 0xffffffffu, 0.0);
}

fn better(a_key: u32, a_index: u32, b_key: u32, b_index: u32) -> bool {
    return b_key > a_key || (b_key == a_key && b_index < a_index);
}

fn lane_push(lane: Lane, e: Element, column: u32) -> Lane {
    var out = lane;
    out.stats = row_stats_push(lane.stats, e.x);
    if (ARGMAX) {
        let key = argmax_key(e.x);
        if (better(lane.best_key, lane.best_index, key, column)) {
            out.best_key = key;
            out.best_index = column;
        }
    }
#if PROBABILITIES
    out.target_mass += class_weight(column) * smoothed(e.p);
#else
    if (HAS_WEIGHT && params.label_smoothing > 0.0) {
        out.target_mass += weight[column];
    }
#endif
    return out;
}

fn lane_merge(a: Lane, b: Lane) -> Lane {
    var out = a;
    out.stats = row_stats_merge(a.stats, b.stats);
    if (better(a.best_key, a.best_index, b.best_key, b.best_index)) {
        out.best_key = b.best_key;
        out.best_index = b.best_index;
    }
    out.target_mass = a.target_mass + b.target_mass;
    return out;
}

#if SUBGROUPS
fn lane_shuffle_xor(lane: Lane, mask: u32) -> Lane {
    return Lane(
        row_stats_shuffle_xor(lane.stats, mask),
        subgroupShuffleXor(lane.best_key, mask),
        subgroupShuffleXor(lane.best_index, mask),
        subgroupShuffleXor(lane.target_mass, mask),
    );
}
#endif

// The target's logit, read before any gradient is written: with the gradient written in
// place, the logits are gone by the time the row's loss is computed.
var<private> saved_target_logit: f32;

fn row_begin(span: RowSpan) {
#if !PROBABILITIES
    let target_class = class_target(span.row);
    if (target_class >= 0) {
        saved_target_logit = logits_element(span.start + u32(target_class));
    }
#endif
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
        return 1.0 / max(scale[0], 1.17549435e-38);
#endif
    }
    return 1.0;
}

fn row_finish(span: RowSpan, lane: Lane) -> Row {
    var target_class = 0;
    var q_coefficient = lane.target_mass;
#if !PROBABILITIES
    let e = params.label_smoothing;
    target_class = class_target(span.row);
    let total_weight = select(f32(params.cols), lane.target_mass, HAS_WEIGHT);
    var w_y = 0.0;
    if (target_class >= 0) {
        w_y = class_weight(u32(target_class));
    }
    q_coefficient = (1.0 - e) * w_y + (e / f32(params.cols)) * total_weight;
#endif
#if PROBABILITIES
    let ignored = false;
    let undefined = row_is_undefined(lane.stats);
#else
    let ignored = target_class == TARGET_IGNORED;
    let undefined = row_is_undefined(lane.stats) || target_class == TARGET_INVALID;
#endif
    return Row(
        target_class,
        ignored,
        log(lane.stats.sum),
        lane.stats.max,
        q_coefficient,
        row_scale(span.row),
        undefined,
        lane.best_index,
    );
}

// The sum of the loss over the classes is needed with probability targets, and with
// smoothing; the gradient when there is one.
fn needs_sum() -> bool {
#if PROBABILITIES
    return true;
#else
    return params.label_smoothing > 0.0;
#endif
}

fn write_pass_needed(row: Row) -> bool {
    return HAS_GRADIENT || needs_sum();
}

// The coefficient of -logp_c in the row's loss, and the target term of its gradient.
fn coefficients(row: Row, e: Element, column: u32) -> vec2<f32> {
#if PROBABILITIES
    let coefficient = class_weight(column) * smoothed(e.p);
    return vec2<f32>(coefficient, coefficient);
#else
    let smoothing = params.label_smoothing;
    let coefficient = class_weight(column);
    var target_term = (smoothing / f32(params.cols)) * coefficient;
    if (i32(column) == row.target_class) {
        target_term += (1.0 - smoothing) * coefficient;
    }
    return vec2<f32>(coefficient, target_term);
#endif
}

fn element_output(row: Row, e: Element, column: u32) -> f32 {
    if (row.ignored) {
        return 0.0;
    }
    if (row.undefined) {
        return quiet_nan();
    }
    var q = 0.0;
    if (!is_negative_infinity(e.x)) {
        // exp(x - m) / s as one exponential, without a division.
        q = exp((e.x - row.max) - row.log_sum);
    }
    return row.scale * (q * row.q_coefficient - coefficients(row, e, column).y);
}

// This class's part of the summed loss term (class indices: w_c * -logp_c, only with
// smoothing; probabilities: w_c * p'_c * -logp_c). A masked logit (-inf) with a non-zero
// coefficient makes the row's loss +inf.
fn element_tally(row: Row, e: Element, column: u32) -> f32 {
    if (!needs_sum()) {
        return 0.0;
    }
    let coefficient = coefficients(row, e, column).x;
    if (coefficient == 0.0) {
        return 0.0;
    }
    if (is_negative_infinity(e.x)) {
        return positive_infinity();
    }
    return coefficient * ((row.max - e.x) + row.log_sum);
}

// The row's loss from its context and the summed term of the write pass; records a bad
// target and the argmax.
fn row_done(span: RowSpan, row: Row, loss_sum: f32) {
    var loss = 0.0;
#if PROBABILITIES
    loss = loss_sum;
    if (row.undefined) {
        loss = quiet_nan();
    }
#else
    if (row.target_class == TARGET_INVALID) {
        loss = quiet_nan();
        atomicAdd(&status[STATUS_BAD_ROWS], 1u);
        atomicMax(&status[STATUS_FIRST_BAD_ROW], 0xffffffffu - (params.first_row + span.row));
    } else if (!row.ignored) {
        if (row.undefined) {
            loss = quiet_nan();
        } else {
            let e = params.label_smoothing;
            // -logp_y, +inf when the target's logit is masked.
            var distance = positive_infinity();
            if (!is_negative_infinity(saved_target_logit)) {
                distance = (row.max - saved_target_logit) + row.log_sum;
            }
            loss = (1.0 - e) * (class_weight(u32(row.target_class)) * distance);
            if (e > 0.0) {
                loss += (e / f32(params.cols)) * loss_sum;
            }
        }
    }
#endif
    row_loss[span.row] = loss;
    if (ARGMAX) {
        argmax[span.row] = row.best_index;
#if !PROBABILITIES
        if (row.target_class >= 0 && row.best_index == u32(row.target_class)) {
            atomicAdd(&status[STATUS_CORRECT], 1u);
        }
#endif
    }
}
