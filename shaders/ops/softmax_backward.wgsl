// The backward passes of softmax and log-softmax: the Jacobian-vector product per row,
// never the Jacobian. With y the forward output and dy the upstream gradient:
//
//   softmax:      dx_c = y_c * (dy_c - r),            r = sum_k dy_k * y_k
//   log-softmax:  dx_c = dy_c - exp(y_c) * r,         r = sum_k dy_k
//
// A masked entry of log-softmax (y_c = -inf) has exp(y_c) = 0, told by its bits.

override LOG_SOFTMAX: bool = false;

struct Element {
    y: f32,
    dy: f32,
}

struct Packet {
    y: array<f32, PACKET>,
    dy: array<f32, PACKET>,
}

// An invocation's part of r.
struct Lane {
    sum: f32,
}

struct Row {
    r: f32,
}

fn packet_load(k: u32) -> Packet {
    return Packet(y_load(k), dy_load(k));
}

fn element_of(packet: Packet, j: u32) -> Element {
    var y = packet.y;
    var dy = packet.dy;
    return Element(y[j], dy[j]);
}

fn lane_empty() -> Lane {
    return Lane(0.0);
}

fn lane_push(lane: Lane, e: Element, column: u32) -> Lane {
    if (LOG_SOFTMAX) {
        return Lane(lane.sum + e.dy);
    }
    return Lane(lane.sum + e.dy * e.y);
}

fn lane_merge(a: Lane, b: Lane) -> Lane {
    return Lane(a.sum + b.sum);
}

#if SUBGROUPS
fn lane_shuffle_xor(lane: Lane, mask: u32) -> Lane {
    return Lane(subgroupShuffleXor(lane.sum, mask));
}
#endif

fn row_begin(span: RowSpan) {}

fn row_finish(span: RowSpan, lane: Lane) -> Row {
    return Row(lane.sum);
}

fn write_pass_needed(row: Row) -> bool {
    return true;
}

fn element_output(row: Row, e: Element, column: u32) -> f32 {
    if (LOG_SOFTMAX) {
        var probability = 0.0;
        if (!is_negative_infinity(e.y)) {
            probability = exp(e.y);
        }
        return e.dy - probability * row.r;
    }
    return e.y * (e.dy - row.r);
}

fn element_tally(row: Row, e: Element, column: u32) -> f32 {
    return 0.0;
}

fn row_done(span: RowSpan, row: Row, tally: f32) {}
