// What every cross-entropy kernel shares: the options as overridable constants, the
// parameters, and how a row's target and a class's weight are read.
//
// Each module that includes this declares `params`, `targets` and `weight` itself, at its
// own bindings.

// 0: class indices as u32, 1: class indices as i32, 2: probabilities (f32 bits).
override TARGET_KIND: u32 = 1u;
override HAS_WEIGHT: bool = false;
// 0: none, 1: mean, 2: sum.
override REDUCTION: u32 = 1u;

const TARGETS_U32: u32 = 0u;
const TARGETS_I32: u32 = 1u;
const TARGETS_PROBABILITIES: u32 = 2u;
const REDUCTION_NONE: u32 = 0u;
const REDUCTION_MEAN: u32 = 1u;

// A matrix larger than one storage binding runs in chunks of rows: each dispatch sees
// its chunk's rows from row 0, bound at an offset.
struct Params {
    // Rows of this chunk.
    rows: u32,
    cols: u32,
    groups_x: u32,
    ignore_index: i32,
    label_smoothing: f32,
    // Rows of the whole matrix (the mean over probability targets divides by it).
    total_rows: u32,
    // The chunk's first row in the whole matrix (for the status words).
    first_row: u32,
    // The chunk's index; for the combining passes, the number of chunks.
    chunk: u32,
}

fn class_weight(c: u32) -> f32 {
    if (HAS_WEIGHT) {
        return weight[c];
    }
    return 1.0;
}

// The row's class: in [0, cols), or one of these.
const TARGET_IGNORED: i32 = -1;
const TARGET_INVALID: i32 = -2;

fn class_target(row: u32) -> i32 {
    let raw = targets[row];
    if (TARGET_KIND == TARGETS_I32) {
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

fn smoothed_probability(index: u32) -> f32 {
    let e = params.label_smoothing;
    return bitcast<f32>(targets[index]) * (1.0 - e) + e / f32(params.cols);
}
