// Backward of softmax and log-softmax, strategy: one subgroup per row. Needs common.wgsl
// and softmax_backward.wgsl in front of it, and the SUBGROUP feature; the subgroup size
// is read at run time, as in softmax_subgroup.wgsl.

const SUBGROUP_PER_ROW_GROUP_SIZE: u32 = 64u;
override ROWS_PER_GROUP: u32 = 8u;

@compute @workgroup_size(SUBGROUP_PER_ROW_GROUP_SIZE)
fn softmax_backward_subgroup_per_row(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) subgroup_size: u32,
) {
    let lanes = min(subgroup_size, SUBGROUP_PER_ROW_GROUP_SIZE);
    let first_row = flat_group_index(group) * ROWS_PER_GROUP;
    for (var r = subgroup; r < ROWS_PER_GROUP; r += subgroups) {
        let row = first_row + r;
        if (row < params.rows) {
            let row_start = row * params.cols;
            let sum = subgroupAdd(partial_sum(row_start, lane, lanes));
            write_row(row_start, lane, lanes, sum);
        }
    }
}
