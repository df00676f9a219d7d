// Softmax and log-softmax with vec4 loads, strategy: one subgroup per row. Needs
// common.wgsl and softmax_vec4.wgsl in front of it, and the SUBGROUP feature; the
// subgroup size is read at run time, as in softmax_subgroup.wgsl.

const SUBGROUP_PER_ROW_GROUP_SIZE: u32 = 64u;
override ROWS_PER_GROUP: u32 = 8u;

@compute @workgroup_size(SUBGROUP_PER_ROW_GROUP_SIZE)
fn softmax_vec4_subgroup_per_row(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) subgroup_size: u32,
) {
    let lanes = min(subgroup_size, SUBGROUP_PER_ROW_GROUP_SIZE);
    let first_row = flat_group_index(group) * ROWS_PER_GROUP;
    // Subgroup-uniform loop and condition: the reductions run in uniform control flow.
    for (var r = subgroup; r < ROWS_PER_GROUP; r += subgroups) {
        let row = first_row + r;
        if (row < params.rows) {
            let row_start = row * quads();
            let own = row_stats_quads(row_start, lane, lanes);
            let row_max = subgroupMax(own.max);
            let row_sum = subgroupAdd(own.sum * exp(own.max - row_max));
            let poisoned = subgroupMax(own.poisoned);
            write_quads(row_start, lane, lanes, RowStats(row_max, row_sum, poisoned));
        }
    }
}
