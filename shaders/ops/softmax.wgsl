// Softmax and log-softmax over the rows:
//
//   softmax(x)_c     = exp(x_c - m) / s
//   log_softmax(x)_c = (x_c - m) - ln(s)
//
// with m the row max and s the sum of exp(x - m), from the online statistics of the row.
// Special values: a `-inf` entry gives 0 (log: -inf); a row with a NaN or +inf, or with
// only `-inf` entries, gives NaN everywhere.

override LOG_SOFTMAX: bool = false;

alias Lane = RowStats;
alias Element = f32;

struct Packet {
    x: array<f32, PACKET>,
}

// What the write pass needs of the whole row.
struct Row {
    max: f32,
    log_sum: f32,
    undefined: bool,
}

fn packet_load(k: u32) -> Packet {
    return Packet(input_load(k));
}

fn element_of(packet: Packet, j: u32) -> f32 {
    var x = packet.x;
    return x[j];
}

fn lane_empty() -> Lane {
    return row_stats_empty();
}

fn lane_push(lane: Lane, x: f32, column: u32) -> Lane {
    return row_stats_push(lane, x);
}

fn lane_merge(a: Lane, b: Lane) -> Lane {
    return row_stats_merge(a, b);
}

#if SUBGROUPS
fn lane_shuffle_xor(lane: Lane, mask: u32) -> Lane {
    return row_stats_shuffle_xor(lane, mask);
}
#endif

fn row_begin(span: RowSpan) {}

fn row_finish(span: RowSpan, lane: Lane) -> Row {
    return Row(lane.max, log(lane.sum), row_is_undefined(lane));
}

fn write_pass_needed(row: Row) -> bool {
    return true;
}

fn element_output(row: Row, x: f32, column: u32) -> f32 {
    if (row.undefined) {
        return quiet_nan();
    }
    if (LOG_SOFTMAX) {
        if (is_negative_infinity(x)) {
            return negative_infinity();
        }
        return (x - row.max) - row.log_sum;
    }
    if (is_negative_infinity(x)) {
        return 0.0;
    }
    // exp(x - m) / s as one exponential, without a division.
    return exp((x - row.max) - row.log_sum);
}

fn element_tally(row: Row, x: f32, column: u32) -> f32 {
    return 0.0;
}

fn row_done(span: RowSpan, row: Row, tally: f32) {}
