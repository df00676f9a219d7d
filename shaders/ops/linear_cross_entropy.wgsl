// The linear cross-entropy's forward without its logits. A workgroup computes a
// TILE x TILE block of the logits H W^T (+ b) of a window of rows (matmul_tile.wgsl, with
// a = H and b = W stored transposed), each invocation PER x PER of them in registers, and
// reduces each row of the block at once to the row's share of the cross-entropy over the
// block's classes (cross_entropy.wgsl's Lane, relative to the block's max of the row):
// the SIDE invocations holding a row agree on its max through workgroup memory, each
// absorbs its own logits relative to it, and one merges their lanes in order. The shares
// go to `segment_shares` as the split strategy lays them out, row by row and, within a
// row, block by block; `linear_finish` merges each row's in that order into its loss and
// logsumexp. A row leaves a 36-byte share per TILE classes, where its logits would take
// 4 bytes per class.

// One lane per invocation, for the merge of a row's lanes.
var<workgroup> row_lanes: array<Lane, SIDE * SIDE>;

fn logit_element(x: f32) -> Element {
    if (has_softcap()) {
        return Element(softcapped(x), 0.0);
    }
    return Element(x, 0.0);
}

@compute @workgroup_size(SIDE * SIDE)
fn linear_stats(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) group: vec3<u32>) {
    let dims = Dims(params.rows, params.cols, params.hidden);
    let block = block_of(flat_group_index(group), dims);
    var sums = tile_sums(local, block, dims, 0u, dims.k);
    let x = local % SIDE;
    let y = local / SIDE;
    // The invocation's logits (its i-th row and j-th column, `tile_row` and
    // `tile_column`; the lowest value past the last column) and its max of each row's,
    // staged for the row's other invocations.
    var logits: array<f32, PER * PER>;
    for (var i = 0u; i < PER; i++) {
        var m = LOWEST_FINITE;
        for (var j = 0u; j < PER; j++) {
            let column = block.column0 + tile_column(local, j);
            var value = LOWEST_FINITE;
            if (column < dims.n) {
                value = sum_at(&sums, i, j);
                if (HAS_BIAS) {
                    value += bias_value(column);
                }
                let e = logit_element(value);
                value = e.x;
                m = max(m, element_key(e));
            }
            logits[i * PER + j] = value;
        }
        stage(tile_row(local, i) * SIDE + x, m);
    }
    workgroupBarrier();
    // Row by row: the row's max over the block (the same for its SIDE invocations), each
    // invocation's lane of its logits relative to it, and the row's lanes merged in order.
    for (var i = 0u; i < PER; i++) {
        var m = LOWEST_FINITE;
        for (var s = 0u; s < SIDE; s++) {
            m = max(m, staged(tile_row(local, i) * SIDE + s));
        }
        let row = block.row0 + tile_row(local, i);
        if (row < dims.m) {
            row_begin(row_span(row));
        }
        var lane = lane_empty();
        for (var j = 0u; j < PER; j++) {
            let column = block.column0 + tile_column(local, j);
            if (column < dims.n) {
                var e = Element(logits[i * PER + j], 0.0);
                lane = lane_scan(lane, e, column);
                lane = lane_absorb(lane, &e, column, m);
            }
        }
        row_lanes[local] = lane;
        workgroupBarrier();
        if (x == 0u && row < dims.m) {
            var merged = row_lanes[y * SIDE];
            for (var s = 1u; s < SIDE; s++) {
                merged = lane_merge(merged, row_lanes[y * SIDE + s]);
            }
            segment_shares[row * params.segments + block.column0 / TILE] = Share(m, merged);
        }
        workgroupBarrier();
    }
}

// Each row's loss and logsumexp from its blocks' shares: one workgroup per row.
@compute @workgroup_size(WORKGROUP_SIZE)
fn linear_finish(@builtin(workgroup_id) group: vec3<u32>, place: Place) {
    let row = flat_group_index(group);
    if (row >= params.rows) {
        return;
    }
    let span = row_span(row);
    row_begin(span);
    let finished = merged_row(span, place);
    if (place.local == 0u) {
        row_done(span, finished);
    }
}
