// What the cross-entropy's kernels (and the distillation's) share: their options as
// overridable constants, and how a row's class target and (with CLASS_WEIGHTS) a class's
// weight are read. Each module that includes this binds `params`, `weight` (with
// CLASS_WEIGHTS) and (class-index targets) `targets` itself.

// Class-index targets: i32 (true) or u32 (false) words.
override TARGETS_SIGNED: bool = true;
// Class-index targets as i64, two words per row (low, high), PyTorch's int64 on the GPU.
override TARGETS_WIDE: bool = false;
// 0: none, 1: mean, 2: sum.
override REDUCTION: u32 = 1u;

const REDUCTION_NONE: u32 = 0u;
const REDUCTION_MEAN: u32 = 1u;

#if CLASS_WEIGHTS
override HAS_WEIGHT: bool = false;

fn class_weight(c: u32) -> f32 {
    if (HAS_WEIGHT) {
        return weight[c];
    }
    return 1.0;
}
#endif

#if !PROBABILITIES
// The row's class: in [0, cols), or one of these.
const TARGET_IGNORED: i32 = -1;
const TARGET_INVALID: i32 = -2;

fn class_of_signed(value: i32) -> i32 {
    if (value == params.ignore_index) {
        return TARGET_IGNORED;
    }
    if (value < 0 || u32(value) >= params.cols) {
        return TARGET_INVALID;
    }
    return value;
}

fn class_target(row: u32) -> i32 {
    if (TARGETS_WIDE) {
        let low = targets[2u * row];
        // An i64 fits in i32 when its high word is the low word's sign extended.
        let sign = select(0u, 0xffffffffu, (low & 0x80000000u) != 0u);
        if (targets[2u * row + 1u] != sign) {
            return TARGET_INVALID;
        }
        return class_of_signed(bitcast<i32>(low));
    }
    let raw = targets[row];
    if (TARGETS_SIGNED) {
        return class_of_signed(bitcast<i32>(raw));
    }
    if (params.ignore_index >= 0 && raw == u32(params.ignore_index)) {
        return TARGET_IGNORED;
    }
    if (raw >= params.cols) {
        return TARGET_INVALID;
    }
    return i32(raw);
}
#endif

// The totals of the reductions over rows, as f32 words: [0] the sum of w_y over the rows
// not ignored and [1] their count (the mean's divisors with class indices); per chunk k,
// [2 + 4k] and [4 + 4k] its parts of them, [3 + 4k] its sum of row losses, [5 + 4k] its
// sum of z-losses; then, after the last chunk's, the ticket word of the fused kernel's
// folded reduction (a u32).
fn weight_partial(chunk: u32) -> u32 {
    return 2u + 4u * chunk;
}

fn loss_partial(chunk: u32) -> u32 {
    return 3u + 4u * chunk;
}

fn count_partial(chunk: u32) -> u32 {
    return 4u + 4u * chunk;
}

fn z_loss_partial(chunk: u32) -> u32 {
    return 5u + 4u * chunk;
}

fn ticket_word() -> u32 {
    return 2u + 4u * params.chunks;
}

// The reduced loss from the sum of every row's loss, and for the mean over class indices
// the sum `weight` of w_y over the rows not ignored.
fn reduced_loss(total: f32, weight: f32) -> f32 {
    if (REDUCTION == REDUCTION_MEAN) {
#if PROBABILITIES
        return total / f32(params.total_rows);
#else
        if (weight == 0.0) {
            // Every row ignored: the mean of nothing is NaN, as in PyTorch.
            return quiet_nan();
        }
        return total / weight;
#endif
    }
    return total;
}
