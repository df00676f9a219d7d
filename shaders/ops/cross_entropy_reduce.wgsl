// The reductions of the cross-entropy over rows, in a fixed order so that the result is
// the same bits run after run (no float atomics): per chunk of rows, one workgroup whose
// invocation i sums rows i, i + WORKGROUP_SIZE, ... in order, then a tree in shared
// memory; then one invocation adds the chunks' partial sums in chunk order.
//
// `totals` (laid out in cross_entropy_targets.wgsl): the mean's divisor and each chunk's
// sums. `loss`: [0] the reduced loss. `z_loss`: the z-loss on its own, reduced as the
// loss is.

#if !PROBABILITIES
// The mean's denominator for class-index targets, one chunk's part: the sum over its rows
// not ignored of w_y, and their count (the z-loss's denominator). Runs before the fused
// kernel, which scales the gradient by the inverse of the whole sum.
@compute @workgroup_size(WORKGROUP_SIZE)
fn total_weight(@builtin(local_invocation_index) local: u32) {
    var sum = 0.0;
    var count = 0.0;
    for (var row = local; row < params.rows; row += WORKGROUP_SIZE) {
        let target_class = class_target(row);
        if (target_class >= 0) {
            sum += class_weight(u32(target_class));
            count += 1.0;
        }
    }
    let total = workgroup_sum(local, sum);
    let total_count = workgroup_sum(local, count);
    if (local == 0u) {
        totals[weight_partial(params.chunk)] = total;
        totals[count_partial(params.chunk)] = total_count;
        if (params.chunks == 1u) {
            // The whole divisor already: no combining pass follows.
            totals[0] = total;
            totals[1] = total_count;
        }
    }
}

// The whole denominator from the chunks' parts (params.chunk holds the chunk count).
@compute @workgroup_size(1)
fn combine_total_weight() {
    var total = 0.0;
    var count = 0.0;
    for (var k = 0u; k < params.chunk; k++) {
        total += totals[weight_partial(k)];
        count += totals[count_partial(k)];
    }
    totals[0] = total;
    totals[1] = count;
}
#endif

// One chunk's sum of its per-row losses (where the fused kernel does not fold it in: the
// packed kernel, or a z-loss reduced on its own).
@compute @workgroup_size(WORKGROUP_SIZE)
fn reduce_rows(@builtin(local_invocation_index) local: u32) {
    var sum = 0.0;
    for (var row = local; row < params.rows; row += WORKGROUP_SIZE) {
        sum += row_loss[row];
    }
    let total = workgroup_sum(local, sum);
    if (local == 0u) {
        totals[loss_partial(params.chunk)] = total;
    }
}

// The mean or sum of all rows' losses from the chunks' sums (params.chunk holds the
// chunk count).
@compute @workgroup_size(1)
fn finish() {
    var total = 0.0;
    for (var k = 0u; k < params.chunk; k++) {
        total += totals[loss_partial(k)];
    }
#if PROBABILITIES
    loss[0] = reduced_loss(total, 0.0);
#else
    loss[0] = reduced_loss(total, totals[0]);
#endif
}

// The z-loss of one row, on its own for logging: z * lse^2 from the logsumexp the fused
// kernel wrote, 0 for an ignored row (params.z_loss holds the caller's z here).
fn row_z_loss(row: u32) -> f32 {
#if !PROBABILITIES
    if (class_target(row) == TARGET_IGNORED) {
        return 0.0;
    }
#endif
    let l = lse[row];
    return params.z_loss * l * l;
}

// Reduction none: each row's z-loss.
@compute @workgroup_size(WORKGROUP_SIZE)
fn z_loss_rows(@builtin(local_invocation_index) local: u32) {
    for (var row = local; row < params.rows; row += WORKGROUP_SIZE) {
        z_loss[row] = row_z_loss(row);
    }
}

// One chunk's sum of its rows' z-losses.
@compute @workgroup_size(WORKGROUP_SIZE)
fn reduce_z_loss(@builtin(local_invocation_index) local: u32) {
    var sum = 0.0;
    for (var row = local; row < params.rows; row += WORKGROUP_SIZE) {
        sum += row_z_loss(row);
    }
    let total = workgroup_sum(local, sum);
    if (local == 0u) {
        totals[z_loss_partial(params.chunk)] = total;
    }
}

// The z-loss's sum, or its mean over the rows not ignored, from the chunks' sums
// (params.chunk holds the chunk count).
@compute @workgroup_size(1)
fn finish_z_loss() {
    var total = 0.0;
    for (var k = 0u; k < params.chunk; k++) {
        total += totals[z_loss_partial(k)];
    }
    var reduced = total;
    if (REDUCTION == REDUCTION_MEAN) {
#if PROBABILITIES
        reduced = total / f32(params.total_rows);
#else
        if (totals[1] == 0.0) {
            reduced = quiet_nan();
        } else {
            reduced = total / totals[1];
        }
#endif
    }
    z_loss[0] = reduced;
}
