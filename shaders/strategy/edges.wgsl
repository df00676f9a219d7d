// 16-bit outputs: the words that two rows share (a row of odd length ends mid-word), or
// that the last row shares with whatever lies past the tensor. The row kernel leaves each
// row's half of such a word in `edges`; this pass, run after it, writes each word once.

@compute @workgroup_size(EDGE_GROUP_SIZE)
fn fix_edges(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = (group.y * groups.x + group.x) * EDGE_GROUP_SIZE + local;
    if (row >= params.rows) {
        return;
    }
    let end = (row + 1u) * params.cols;
    if ((end & 1u) == 0u) {
        return;
    }
    // The word holds this row's last element (low half) and the next row's first (high).
    let word = end / 2u;
    var high = result_word(word) >> 16u;
    if (row + 1u < params.rows) {
        high = edges[2u * (row + 1u)];
    }
    result_set_word(word, edges[2u * row + 1u] | (high << 16u));
}
