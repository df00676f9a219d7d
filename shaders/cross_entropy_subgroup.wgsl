// Fused cross-entropy, strategy: one subgroup per row, reduced with subgroup operations.
// Needs common.wgsl, cross_entropy_targets.wgsl and cross_entropy.wgsl in front of it, and
// the SUBGROUP feature. As in softmax_subgroup.wgsl, the subgroup size is read at run
// time and each workgroup's subgroups take its ROWS_PER_GROUP rows in turn.

const SUBGROUP_PER_ROW_GROUP_SIZE: u32 = 64u;
override ROWS_PER_GROUP: u32 = 8u;

@compute @workgroup_size(SUBGROUP_PER_ROW_GROUP_SIZE)
fn cross_entropy_subgroup_per_row(
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
            // Every lane keeps its own copy: nothing orders one lane's read before another
            // lane's in-place gradient write except this happening first.
            save_target_logit(row);
            let own = first_pass(row, lane, lanes);
            let row_max = subgroupMax(own.stats.max);
            let stats = RowStats(
                row_max,
                subgroupAdd(own.stats.sum * exp(own.stats.max - row_max)),
                subgroupMax(own.stats.poisoned),
            );
            let best_key = subgroupMax(own.best.key);
            let best_index = subgroupMin(select(0xffffffffu, own.best.index, own.best.key == best_key));
            let merged = LaneStats(stats, Best(best_key, best_index), subgroupAdd(own.target_mass));
            let ctx = row_context(row, merged);
            let loss_sum = subgroupAdd(second_pass(ctx, lane, lanes));
            if (lane == 0u) {
                finish_row(ctx, loss_sum, merged.best);
            }
        }
    }
}
