// What the cross-entropy's kernels share: its options as overridable constants, and how a
// row's class target and a class's weight are read. Each module that includes this binds
// `params`, `weight` and (class-index targets) `targets` itself.

// Class-index targets: i32 (true) or u32 (false) words.
override TARGETS_SIGNED: bool = true;
override HAS_WEIGHT: bool = false;
// 0: none, 1: mean, 2: sum.
override REDUCTION: u32 = 1u;

const REDUCTION_NONE: u32 = 0u;
const REDUCTION_MEAN: u32 = 1u;

fn class_weight(c: u32) -> f32 {
    if (HAS_WEIGHT) {
        return weight[c];
    }
    return 1.0;
}

#if !PROBABILITIES
// The row's class: in [0, cols), or one of these.
const TARGET_IGNORED: i32 = -1;
const TARGET_INVALID: i32 = -2;

fn class_target(row: u32) -> i32 {
    let raw = targets[row];
    if (TARGETS_SIGNED) {
        let value = bitcast<i32>(raw);
        if (value == params.ignore_index) {
            return TARGET_IGNORED;
        }
        if (value < 0 || u32(value) >= params.cols) {
            return TARGET_INVALID;
        }
        return value;
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
