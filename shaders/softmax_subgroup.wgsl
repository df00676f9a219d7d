// Strategy: one subgroup per row, partial statistics combined with subgroup reductions.
// Needs common.wgsl and softmax.wgsl in front of it, and the SUBGROUP feature.
//
// The subgroup size is read at run time, never assumed: each workgroup owns
// ROWS_PER_GROUP consecutive rows and its subgroups take them in turn, so the result is
// right for any subgroup size; the host only tunes ROWS_PER_GROUP to the adapter.

const SUBGROUP_PER_ROW_GROUP_SIZE: u32 = 64u;
override ROWS_PER_GROUP: u32 = 8u;

@compute @workgroup_size(SUBGROUP_PER_ROW_GROUP_SIZE)
fn softmax_subgroup_per_row(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) subgroup_size: u32,
) {
    // A subgroup wider than the workgroup holds only the workgroup's invocations.
    let lanes = min(subgroup_size, SUBGROUP_PER_ROW_GROUP_SIZE);
    let first_row = flat_group_index(group) * ROWS_PER_GROUP;
    // Both conditions are the same for every lane of a subgroup, so the subgroup
    // reductions below run in subgroup-uniform control flow.
    for (var r = subgroup; r < ROWS_PER_GROUP; r += subgroups) {
        let row = first_row + r;
        if (row < params.rows) {
            let row_start = row * params.cols;
            let own = row_stats_strided(row_start, lane, lanes);
            let row_max = subgroupMax(own.max);
            let row_sum = subgroupAdd(own.sum * exp(own.max - row_max));
            let poisoned = subgroupMax(own.poisoned);
            write_row_strided(row_start, lane, lanes, RowStats(row_max, row_sum, poisoned));
        }
    }
}
