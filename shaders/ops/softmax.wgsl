// Softmax and log-softmax over the rows:
//
//   softmax(x)_c     = exp(x_c - m) / s
//   log_softmax(x)_c = (x_c - m) - ln(s)
//
// with m the row max and s the sum of exp(x - m). Each invocation takes the max m_l of its
// share first, then exp(x - m_l) once per element: softmax keeps it in place of x, and
// writes it times exp(m_l - m) / s (one exponential per invocation, not per element).
// Special values: a `-inf` entry gives 0 (log: -inf); a row with a NaN or +inf, or with
// only `-inf` entries, gives NaN everywhere.

override LOG_SOFTMAX: bool = false;

const USES_MAX: bool = true;

alias Element = f32;

struct Packet {
    x: array<f32, PACKET>,
}

fn packet_load(k: u32) -> Packet {
    return Packet(input_load(k));
}

fn element_of(packet: Packet, j: u32) -> f32 {
    var x = packet.x;
    return x[j];
}

fn element_set(packet: ptr<function, Packet>, j: u32, x: f32) {
    (*packet).x[j] = x;
}

fn element_key(x: f32) -> f32 {
    return finite_or_lowest(x);
}

// The sum of exp(x - max) over the elements absorbed, and the kinds of values seen.
struct Lane {
    sum: f32,
    seen: u32,
}

fn lane_empty() -> Lane {
    return Lane(0.0, 0u);
}

fn lane_scan(lane: Lane, x: f32, column: u32) -> Lane {
    return Lane(lane.sum, lane.seen | kind_of(x));
}

fn lane_rebase(lane: Lane, old_max: f32, new_max: f32) -> Lane {
    return Lane(lane.sum * rebase_factor(old_max, new_max), lane.seen);
}

fn lane_absorb(lane: Lane, x: ptr<function, f32>, column: u32, m: f32) -> Lane {
    // Masks (and NaN, +inf, whose rows are NaN anyway) add 0.
    let e = exp_below(*x, m);
    if (!LOG_SOFTMAX) {
        *x = e;
    }
    return Lane(lane.sum + e, lane.seen);
}

fn lane_merge(a: Lane, b: Lane) -> Lane {
    return Lane(a.sum + b.sum, a.seen | b.seen);
}

#if SUBGROUPS
fn lane_shuffle_xor(lane: Lane, mask: u32) -> Lane {
    return Lane(subgroupShuffleXor(lane.sum, mask), subgroupShuffleXor(lane.seen, mask));
}
#endif

fn row_begin(span: RowSpan) {}

// What the write needs of the whole row.
struct Row {
    max: f32,
    log_sum: f32,
    inverse_sum: f32,
    undefined: bool,
}

fn row_finish(span: RowSpan, total: Lane, m: f32) -> Row {
    return Row(m, log(total.sum), 1.0 / total.sum, row_undefined(total.seen));
}

fn row_done(span: RowSpan, row: Row) {}

fn element_output(row: Row, own: Share, x: f32, column: u32) -> f32 {
    if (row.undefined) {
        return quiet_nan();
    }
    if (LOG_SOFTMAX) {
        if (is_negative_infinity(x)) {
            return negative_infinity();
        }
        return (x - row.max) - row.log_sum;
    }
    // x holds exp(x - m_l) here; the factor is the same for the whole share.
    return x * (exp(own.max - row.max) * row.inverse_sum);
}
