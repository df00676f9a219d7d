// 16-bit outputs: the words that two rows share (a row whose length is not a whole number
// of words ends mid-word), or that the last row shares with whatever lies past the tensor.
// The row kernel leaves each row's elements of such a word in `edges`, at their places in
// the word ([2 row]: the word the row starts in, [2 row + 1]: the word it ends in); this
// pass, run after it, writes each word once.

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
    let places = end % PER_WORD;
    if (places == 0u) {
        return;
    }
    // The word's first `places` elements are this row's last; the rest are the next row's
    // first, or lie past the tensor and keep their bits.
    let word = end / PER_WORD;
    let mine = (1u << (places * ELEMENT_BITS)) - 1u;
    var rest = result_word(word);
    if (row + 1u < params.rows) {
        rest = edge_load(2u * (row + 1u));
    }
    result_set_word(word, (edge_load(2u * row + 1u) & mine) | (rest & ~mine));
}
