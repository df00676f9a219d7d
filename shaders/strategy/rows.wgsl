// What every row loop shares: where a row's elements lie, an invocation's walk over its
// share of a row's packets, and the flat index of a workgroup in a grid spread over y.
//
// An invocation reads each of its packets once. Where its share of the row fits in
// CACHE_PACKETS packets, it keeps them (in registers: `PacketCache` and its `cache_*`
// functions are written out slot by slot by the composer, so that no compiler has to
// unroll a loop to keep them there) between the look that finds its max, the look that
// absorbs each element relative to it (where the op takes the one exponential of each
// element, and may keep it in place of the element), and the write; otherwise it streams
// its share twice, and the op's absorb is redone on the way out. Kernels for a CPU
// adapter have no cache (CACHE_PACKETS 0), where it measured slower.
//
// The op supplies the steps: `Element`, `Packet` (`packet_load`, `element_of`,
// `element_set`), `element_key` (the value whose max a lane takes, when `USES_MAX`),
// `Lane` (what an invocation learns from its share, relative to its max), `lane_empty`,
// `lane_scan` (first look at an element), `lane_rebase` (from one max to a larger one),
// `lane_absorb` (second look), `lane_merge` (two shares at one max), `row_finish` (the
// whole row's `Row`), `row_done` (once per row), `row_begin` (what an invocation reads
// of its row before its elements, for `lane_scan` and `row_finish` only: a paired
// invocation's writes interleave two rows, so `lane_absorb` and `element_output` take the
// row's state from `Row`), `element_output` (the value written per element). The strategy
// supplies who walks which packets and how shares are merged.

// A row of the chunk: its elements are [start, end) of every class-axis tensor, and they
// lie in packets [first_packet, end_packet), the first and last of which may be shared
// with the neighbouring rows (contiguous rows only).
struct RowSpan {
    row: u32,
    start: u32,
    end: u32,
    first_packet: u32,
    end_packet: u32,
}

#if STRIDED
// Along a strided class axis (`params.inner` elements between a row's classes, rows off
// the axis neighbouring in memory), [start, end) are places, not elements: place c of a
// row is its class c, and each row owns a run of whole packets of places, padded past its
// last class, so that no packet is shared. The element layer gathers a packet's places
// from where they lie and scatters them back.
fn row_span(row: u32) -> RowSpan {
    let packets = (params.cols + PACKET - 1u) / PACKET;
    let start = row * packets * PACKET;
    return RowSpan(row, start, start + params.cols, row * packets, (row + 1u) * packets);
}

// Where a place lies: whether it is a class of its row (not padding), and its element.
struct StridedPlace {
    inside: bool,
    index: u32,
}

// Class c of row r = o * inner + i (o the position before the class axis, i after it)
// is element (o * cols + c) * inner + i.
fn strided_place(place: u32) -> StridedPlace {
    let width = (params.cols + PACKET - 1u) / PACKET * PACKET;
    let row = place / width;
    let column = place % width;
    let index = (row / params.inner * params.cols + column) * params.inner + row % params.inner;
    return StridedPlace(column < params.cols, index);
}
#else
fn row_span(row: u32) -> RowSpan {
    let start = row * params.cols;
    let end = start + params.cols;
    return RowSpan(row, start, end, start / PACKET, (end + PACKET - 1u) / PACKET);
}
#endif

fn in_row(span: RowSpan, e: u32) -> bool {
    return e >= span.start && e < span.end;
}

// Whether packet k holds elements of this row only.
fn packet_inside(span: RowSpan, k: u32) -> bool {
    return k * PACKET >= span.start && (k + 1u) * PACKET <= span.end;
}

fn flat_group_index(group: vec3<u32>) -> u32 {
    return group.y * params.groups_x + group.x;
}

// The packets one invocation walks: begin, begin + stride, ... below end.
struct Walk {
    begin: u32,
    end: u32,
    stride: u32,
}

// The walk of invocation `lane` of `lanes` sharing packets [first, end): each block of
// `width` neighbouring lanes (a power of two dividing `lanes`) takes one contiguous run of
// the packets, and within it neighbouring lanes read neighbouring packets. With width =
// lanes that is the plain interleave, every lane strided by `lanes`, so that a wide
// workgroup's reads at any moment are adjacent (GPUs). A CPU adapter runs a workgroup's
// SIMD-wide slices one after another: with width = that SIMD width each slice streams
// through its own run instead of striding through the whole row.
fn walk_of(first: u32, end: u32, lane: u32, lanes: u32, width: u32) -> Walk {
    let run = run_packets(end - first, lanes, width);
    let run_first = first + (lane / width) * run;
    return Walk(run_first + lane % width, min(end, run_first + run), width);
}

// Packets in each block's run for `count` packets: an even part of them, rounded up to
// whole rounds of the block's lanes.
fn run_packets(count: u32, lanes: u32, width: u32) -> u32 {
    let blocks = lanes / width;
    return ((count + blocks - 1u) / blocks + width - 1u) / width * width;
}

// The most packets a row spans: rows of whole packets start on packet boundaries (every
// row does when cols is a multiple of PACKET); others may start and end mid-packet.
fn row_packets_most() -> u32 {
    if (params.cols % PACKET == 0u) {
        return params.cols / PACKET;
    }
    return params.cols / PACKET + 2u;
}

// Whether every invocation of `lanes` sharing a row in blocks of `width` keeps all its
// packets: the same answer for every row, so for every lane.
fn row_cached(lanes: u32, width: u32) -> bool {
    return CACHE_PACKETS != 0u && run_packets(row_packets_most(), lanes, width) / width <= CACHE_PACKETS;
}

// An invocation's share of a row: the max of its element keys, and its lane relative to
// that max.
struct Share {
    max: f32,
    lane: Lane,
}

fn share_empty() -> Share {
    return Share(LOWEST_FINITE, lane_empty());
}

// Two shares of one row together, at the larger max. Symmetric in a and b: every lane of
// a butterfly ends with the same share.
fn share_merge(a: Share, b: Share) -> Share {
    let m = max(a.max, b.max);
    return Share(m, lane_merge(lane_rebase(a.lane, a.max, m), lane_rebase(b.lane, b.max, m)));
}

#if SUBGROUPS
fn share_shuffle_xor(share: Share, mask: u32) -> Share {
    return Share(subgroupShuffleXor(share.max, mask), lane_shuffle_xor(share.lane, mask));
}
#endif

// The first look at packet k: the op's scan of each element of the row, and the max of
// their keys (LOWEST_FINITE for none).
//
// Every packet tests each element against the row's bounds. A second copy of these loops
// for packets wholly inside the row, without the test, made the 16-bit cross-entropy with
// gradient 12 to 26% slower on lavapipe (and f32 2 to 3%), so there is one loop.
fn packet_scan(lane: ptr<function, Lane>, packet: Packet, span: RowSpan, k: u32) -> f32 {
    var m = LOWEST_FINITE;
    for (var j = 0u; j < PACKET; j++) {
        let e = k * PACKET + j;
        if (in_row(span, e)) {
            m = scan_element(lane, m, element_of(packet, j), e - span.start);
        }
    }
    return m;
}

// The first look at the element in column `column` of the row: the op's scan, and the
// running max `m` of the keys with its key.
fn scan_element(lane: ptr<function, Lane>, m: f32, element: Element, column: u32) -> f32 {
    *lane = lane_scan(*lane, element, column);
    if (USES_MAX) {
        return max(m, element_key(element));
    }
    return m;
}

// The second look at packet k, relative to `m`: the op absorbs each element of the row
// (and may replace it, in the packet, by what the write needs).
fn packet_absorb(lane: Lane, packet: ptr<function, Packet>, span: RowSpan, k: u32, m: f32) -> Lane {
    var out = lane;
    for (var j = 0u; j < PACKET; j++) {
        let e = k * PACKET + j;
        if (in_row(span, e)) {
            out = absorb_element(out, packet, j, e - span.start, m);
        }
    }
    return out;
}

// The second look at element j of a packet, in column `column` of the row.
fn absorb_element(lane: Lane, packet: ptr<function, Packet>, j: u32, column: u32, m: f32) -> Lane {
    var element = element_of(*packet, j);
    let out = lane_absorb(lane, &element, column, m);
    element_set(packet, j, element);
    return out;
}

// The share of the walk's packets of the row; with `cached`, keeping them (at most
// CACHE_PACKETS) in `cache` as absorbed.
fn share_over(span: RowSpan, walk: Walk, cache: ptr<function, PacketCache>, cached: bool) -> Share {
    var lane = lane_empty();
    var m = LOWEST_FINITE;
    if (cached) {
        m = cache_fill(&lane, cache, span, walk);
        lane = cache_absorb(lane, cache, span, walk, m);
    } else {
        for (var k = walk.begin; k < walk.end; k += walk.stride) {
            var packet = packet_load(k);
            let packet_max = max(m, packet_scan(&lane, packet, span, k));
            // One rebase per packet (an exponential where the max rose), not per element.
            lane = lane_rebase(lane, m, packet_max);
            m = packet_max;
            lane = packet_absorb(lane, &packet, span, k, m);
        }
    }
    return Share(m, lane);
}

#if !PAIRED
// Writes the output of the same packets, from the cache or absorbed again on the way.
fn write_over(span: RowSpan, walk: Walk, row: Row, own: Share, cache: ptr<function, PacketCache>, cached: bool) {
    if (cached) {
        cache_write(cache, span, walk, row, own);
    } else {
        for (var k = walk.begin; k < walk.end; k += walk.stride) {
            var packet = packet_load(k);
            // Absorbing again replaces each element by what the write needs, as the
            // first pass did; its statistics are already in `own`.
            _ = packet_absorb(own.lane, &packet, span, k, own.max);
            write_packet(span, k, row, own, packet);
        }
    }
}

// Stores the output of packet k.
fn write_packet(span: RowSpan, k: u32, row: Row, own: Share, packet: Packet) {
    let out = packet_output(span, k, row, own, packet);
    if (packet_inside(span, k)) {
        result_store(k, out);
    } else {
        result_store_part(k, out, span);
    }
}
#endif

// The output of packet k (for the row's elements; the rest is left unset).
fn packet_output(span: RowSpan, k: u32, row: Row, own: Share, packet: Packet) -> array<f32, PACKET> {
    var out: array<f32, PACKET>;
    for (var j = 0u; j < PACKET; j++) {
        let e = k * PACKET + j;
        if (in_row(span, e)) {
            out[j] = element_output(row, own, element_of(packet, j), e - span.start);
        }
    }
    return out;
}

#if PAIRED
// Two rows that share every word of the output: positions 2j and 2j + 1 along a strided
// class axis of even `inner`, whose class c lie side by side, the two halves of one word
// of a 16-bit tensor. One invocation finishes both rows, then stores each word whole,
// where an invocation with one row would have to store its half through atomics, the
// other half being another invocation's.
struct Finished {
    span: RowSpan,
    row: Row,
    own: Share,
}

// The output of packet k of row `f`, kept absorbed in `packet`.
fn kept_output(f: Finished, k: u32, packet: Packet) -> array<f32, PACKET> {
    return packet_output(f.span, k, f.row, f.own, packet);
}

// The output of packet k of row `f`, read and absorbed again.
fn streamed_output(f: Finished, k: u32) -> array<f32, PACKET> {
    var packet = packet_load(k);
    _ = packet_absorb(f.own.lane, &packet, f.span, k, f.own.max);
    return packet_output(f.span, k, f.row, f.own, packet);
}

// Writes both rows' outputs, a word per class, walking the first row's packets (the
// second's lie `offset` packets on).
fn write_pair(a: Finished, b: Finished, walk: Walk, cache: ptr<function, PacketCache>,
              second: ptr<function, PacketCache>, cached: bool) {
    if (cached) {
        cache_write_pair(cache, second, a, b, walk);
    } else {
        let offset = b.span.first_packet - a.span.first_packet;
        for (var k = walk.begin; k < walk.end; k += walk.stride) {
            result_store_pair(k, streamed_output(a, k), streamed_output(b, k + offset));
        }
    }
}
#endif
