// What every row loop shares: where a row's elements lie, an invocation's walk over its
// share of a row's packets, and the flat index of a workgroup in a grid spread over y.
//
// The op supplies the steps: `Lane` (what an invocation learns from its share of a row),
// `lane_empty`, `lane_push` (one element), `lane_merge` (two shares), `row_finish` (the
// whole row's `Row`), `element_output` and `element_tally` (one element of the write
// pass), `row_done` (once per row, with the summed tallies), `packet_load`, `element_of`
// and `write_pass_needed`. The strategy supplies who walks which packets and how lanes are
// merged.

// A row of the chunk: its elements are [start, end) of every class-axis tensor, and they
// lie in packets [first_packet, end_packet), the first and last of which may be shared
// with the neighbouring rows.
struct RowSpan {
    row: u32,
    start: u32,
    end: u32,
    first_packet: u32,
    end_packet: u32,
}

fn row_span(row: u32) -> RowSpan {
    let start = row * params.cols;
    let end = start + params.cols;
    return RowSpan(row, start, end, start / PACKET, (end + PACKET - 1u) / PACKET);
}

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

// What an invocation learns from packets begin, begin + stride, ... below end of the row.
fn lane_over(span: RowSpan, begin: u32, end: u32, stride: u32) -> Lane {
    var lane = lane_empty();
    for (var k = begin; k < end; k += stride) {
        let packet = packet_load(k);
        for (var j = 0u; j < PACKET; j++) {
            let e = k * PACKET + j;
            if (in_row(span, e)) {
                lane = lane_push(lane, element_of(packet, j), e - span.start);
            }
        }
    }
    return lane;
}

// Writes the output of the same packets, and returns the sum of their tallies.
fn write_over(span: RowSpan, begin: u32, end: u32, stride: u32, row: Row) -> f32 {
    var tally = 0.0;
    for (var k = begin; k < end; k += stride) {
        let packet = packet_load(k);
        var out: array<f32, PACKET>;
        for (var j = 0u; j < PACKET; j++) {
            let e = k * PACKET + j;
            if (in_row(span, e)) {
                let x = element_of(packet, j);
                out[j] = element_output(row, x, e - span.start);
                tally += element_tally(row, x, e - span.start);
            }
        }
        if (packet_inside(span, k)) {
            result_store(k, out);
        } else {
            result_store_part(k, out, span);
        }
    }
    return tally;
}
