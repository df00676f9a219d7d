// The backward passes of softmax and log-softmax: the Jacobian-vector product per row,
// never the Jacobian. With y the forward output and dy the upstream gradient:
//
//   softmax:      dx_c = y_c * (dy_c - r),            r = sum_k dy_k * y_k
//   log-softmax:  dx_c = dy_c - exp(y_c) * r,         r = sum_k dy_k
//
// A masked entry of log-softmax (y_c = -inf) has exp(y_c) = 0, told by its bits.

override LOG_SOFTMAX: bool = false;

// No max: the backward sums products, which need no rescaling.
const USES_MAX: bool = false;

struct Element {
    y: f32,
    dy: f32,
}

struct Packet {
    y: array<f32, PACKET>,
    dy: array<f32, PACKET>,
}

fn packet_load(k: u32) -> Packet {
    return Packet(y_load(k), dy_load(k));
}

fn element_of(packet: Packet, j: u32) -> Element {
    var y = packet.y;
    var dy = packet.dy;
    return Element(y[j], dy[j]);
}

fn element_set(packet: ptr<function, Packet>, j: u32, e: Element) {}

fn element_key(e: Element) -> f32 {
    return 0.0;
}

// An invocation's part of r.
struct Lane {
    sum: f32,
}

fn lane_empty() -> Lane {
    return Lane(0.0);
}

fn lane_scan(lane: Lane, e: Element, column: u32) -> Lane {
    return lane;
}

fn lane_rebase(lane: Lane, old_max: f32, new_max: f32) -> Lane {
    return lane;
}

fn lane_absorb(lane: Lane, e: ptr<function, Element>, column: u32, m: f32) -> Lane {
    if (LOG_SOFTMAX) {
        return Lane(lane.sum + (*e).dy);
    }
    return Lane(lane.sum + (*e).dy * (*e).y);
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

struct Row {
    r: f32,
}

fn row_finish(span: RowSpan, total: Lane, m: f32) -> Row {
    return Row(total.sum);
}

fn row_done(span: RowSpan, row: Row) {}

fn element_output(row: Row, own: Share, e: Element, column: u32) -> f32 {
    if (LOG_SOFTMAX) {
        var probability = 0.0;
        if (!is_negative_infinity(e.y)) {
            probability = exp(e.y);
        }
        return e.dy - probability * row.r;
    }
    return e.y * (e.dy - row.r);
}
