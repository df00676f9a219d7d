// Knowledge distillation from logits, fused: for each row of student logits s and
// teacher logits t at temperature T, with x = s / T and y = t / T,
//
//   p = softmax(y), q = softmax(x)
//   loss = T^2 * KL(p || q) = T^2 * (sum_c p_c * (y_c - x_c) - lse(y) + lse(x))
//   dloss/ds_c = T * (q_c - p_c)
//
// (PyTorch's kl_div(log_softmax(s / T), softmax(t / T)) * T^2), the gradient then scaled
// for the reduction: by the upstream gradient of the row (none), 1 (sum), or 1 / the
// rows counted (batchmean: every row, or with a mask of class targets those not equal to
// ignore_index). A row whose target is ignore_index has loss 0 and gradient 0.
//
// One read of each tensor per element: an invocation takes the max m_l of its share of
// x, keeps exp(x - m_l) in place of x, and sums, relative to its own max of y (updated
// on the first look, so that the second look's exponentials never exceed 1),
// exp(y - t_max) and exp(y - t_max) * (y - x). The write needs y again for p, and takes
// its exponential a second time. Special values: a -inf entry is a mask, probability 0
// on its side; a student -inf under a teacher's non-zero probability makes the loss +inf
// (its gradient stays finite: -T * p). A NaN or +inf in either row, or a row of only
// -inf on either side, gives a NaN row.

// Reduction none only: scale each row's gradient by an upstream gradient.
override HAS_UPSTREAM: bool = false;
// Class targets mask rows (those equal to ignore_index count for nothing).
override HAS_MASK: bool = false;

const USES_MAX: bool = true;

struct Element {
    // The student's x = s / T; once absorbed, exp(x - m_l).
    x: f32,
    // The teacher's y = t / T.
    y: f32,
}

struct Packet {
    x: array<f32, PACKET>,
    y: array<f32, PACKET>,
}

fn packet_load(k: u32) -> Packet {
    var x = student_load(k);
    var y = teacher_load(k);
    let inverse_t = 1.0 / params.temperature;
    for (var j = 0u; j < PACKET; j++) {
        x[j] *= inverse_t;
        y[j] *= inverse_t;
    }
    return Packet(x, y);
}

fn element_of(packet: Packet, j: u32) -> Element {
    var x = packet.x;
    var y = packet.y;
    return Element(x[j], y[j]);
}

fn element_set(packet: ptr<function, Packet>, j: u32, e: Element) {
    (*packet).x[j] = e.x;
}

fn element_key(e: Element) -> f32 {
    return finite_or_lowest(e.x);
}

// The row's class target, where class targets mask rows.
var<private> row_target: i32;

fn row_begin(span: RowSpan) {
    if (HAS_MASK) {
        row_target = class_target(span.row);
    } else {
        row_target = 0;
    }
}

// A student -inf where the teacher's probability is not 0: an infinite loss.
const SEEN_MASKED_STUDENT: u32 = 4u;

// What an invocation learns from its share of a row: the student's sum relative to the
// share's max m_l (the strategy's), and the teacher's sums relative to its own max.
struct Lane {
    // sum of exp(x - m_l).
    sum: f32,
    // The kinds of the student's values, and SEEN_MASKED_STUDENT.
    seen: u32,
    // The largest finite y seen (LOWEST_FINITE for none).
    t_max: f32,
    // sum of exp(y - t_max).
    t_sum: f32,
    // sum of exp(y - t_max) * (y - x) over finite y and x.
    t_dot: f32,
    // The kinds of the teacher's values.
    t_seen: u32,
}

fn lane_empty() -> Lane {
    return Lane(0.0, 0u, LOWEST_FINITE, 0.0, 0.0, 0u);
}

fn lane_scan(lane: Lane, e: Element, column: u32) -> Lane {
    var out = lane;
    out.seen |= kind_of(e.x);
    out.t_seen |= kind_of(e.y);
    if (is_finite(e.y) && e.y > lane.t_max) {
        let factor = rebase_factor(lane.t_max, e.y);
        out.t_sum *= factor;
        out.t_dot *= factor;
        out.t_max = e.y;
    }
    return out;
}

fn lane_rebase(lane: Lane, old_max: f32, new_max: f32) -> Lane {
    var out = lane;
    out.sum *= rebase_factor(old_max, new_max);
    return out;
}

fn lane_absorb(lane: Lane, e: ptr<function, Element>, column: u32, m: f32) -> Lane {
    var out = lane;
    let x = (*e).x;
    let y = (*e).y;
    let ex = exp_below(x, m);
    out.sum += ex;
    if (is_finite(y)) {
        let ey = exp_below(y, lane.t_max);
        out.t_sum += ey;
        if (is_finite(x)) {
            out.t_dot += ey * (y - x);
        } else if (is_negative_infinity(x)) {
            out.seen |= SEEN_MASKED_STUDENT;
        }
    }
    (*e).x = ex;
    return out;
}

fn lane_merge(a: Lane, b: Lane) -> Lane {
    let t_max = max(a.t_max, b.t_max);
    let fa = rebase_factor(a.t_max, t_max);
    let fb = rebase_factor(b.t_max, t_max);
    return Lane(
        a.sum + b.sum,
        a.seen | b.seen,
        t_max,
        a.t_sum * fa + b.t_sum * fb,
        a.t_dot * fa + b.t_dot * fb,
        a.t_seen | b.t_seen,
    );
}

#if SUBGROUPS
fn lane_shuffle_xor(lane: Lane, mask: u32) -> Lane {
    return Lane(
        subgroupShuffleXor(lane.sum, mask),
        subgroupShuffleXor(lane.seen, mask),
        subgroupShuffleXor(lane.t_max, mask),
        subgroupShuffleXor(lane.t_sum, mask),
        subgroupShuffleXor(lane.t_dot, mask),
        subgroupShuffleXor(lane.t_seen, mask),
    );
}
#endif

// What the write and the row's loss need of the whole row.
struct Row {
    max: f32,
    inverse_sum: f32,
    t_max: f32,
    t_inverse_sum: f32,
    // The gradient is scale * (q_c - p_c): T times the reduction's scale.
    scale: f32,
    ignored: bool,
    invalid: bool,
    undefined: bool,
    loss: f32,
}

fn row_scale(row: u32) -> f32 {
    if (REDUCTION == REDUCTION_NONE) {
        if (HAS_UPSTREAM) {
            return scale[row];
        }
        return 1.0;
    }
    if (REDUCTION == REDUCTION_MEAN) {
        if (HAS_MASK) {
            // An all-ignored batch counts 0 rows: every row is ignored and gets gradient
            // 0, so this value is never used.
            return 1.0 / max(scale[0], 1.17549435e-38);
        }
        return 1.0 / f32(params.total_rows);
    }
    return 1.0;
}

fn row_finish(span: RowSpan, total: Lane, m: f32) -> Row {
    let t = params.temperature;
    let invalid = HAS_MASK && row_target == TARGET_INVALID;
    let ignored = HAS_MASK && row_target == TARGET_IGNORED;
    let undefined = row_undefined(total.seen & 3u) || row_undefined(total.t_seen) || invalid;
    // KL = sum p (y - x) - lse(y) + lse(x), with lse(x) - lse(y) taken as the difference of
    // the maxes plus that of the logs, so that large logits lose nothing to rounding.
    var kl = total.t_dot / total.t_sum + (m - total.t_max) + (log(total.sum) - log(total.t_sum));
    if ((total.seen & SEEN_MASKED_STUDENT) != 0u) {
        kl = positive_infinity();
    }
    var loss = (t * t) * kl;
    if (ignored) {
        loss = 0.0;
    } else if (undefined) {
        loss = quiet_nan();
    }
    return Row(
        m,
        1.0 / total.sum,
        total.t_max,
        1.0 / total.t_sum,
        t * row_scale(span.row),
        ignored,
        invalid,
        undefined,
        loss,
    );
}

fn element_output(row: Row, own: Share, e: Element, column: u32) -> f32 {
    if (row.ignored) {
        return 0.0;
    }
    if (row.undefined) {
        return quiet_nan();
    }
    // e.x holds exp(x - m_l): q = e.x * exp(m_l - m) / s, the factor the same for the
    // whole share.
    let q = e.x * (exp(own.max - row.max) * row.inverse_sum);
    let p = exp_below(e.y, row.t_max) * row.t_inverse_sum;
    return row.scale * (q - p);
}

// The row's loss, and a bad target.
fn row_done(span: RowSpan, row: Row) {
    if (row.invalid) {
        atomicAdd(&status[STATUS_BAD_ROWS], 1u);
        atomicMax(&status[STATUS_FIRST_BAD_ROW], 0xffffffffu - (params.first_row + span.row));
    }
    row_loss[span.row] = row.loss;
}
