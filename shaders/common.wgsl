// Helpers shared by every kernel family: special values by bit pattern, and the online
// (max, sum of exponentials) statistics of a row.
//
// WGSL lets an implementation assume that no value is inf or NaN, and some really do fold
// `x != x` to false or `x - x` to 0. So special values are told apart by their bits,
// never by comparing floats.

const POSITIVE_INFINITY_BITS: u32 = 0x7f800000u;
const NEGATIVE_INFINITY_BITS: u32 = 0xff800000u;
const QUIET_NAN_BITS: u32 = 0x7fc00000u;
const MAGNITUDE_MASK: u32 = 0x7fffffffu;

// The most negative finite f32: the running max of a row that has seen no finite value.
const LOWEST_FINITE: f32 = -3.40282347e38;

fn is_negative_infinity(x: f32) -> bool {
    return bitcast<u32>(x) == NEGATIVE_INFINITY_BITS;
}

// NaN or +inf: either one leaves the whole row without a defined softmax.
fn is_nan_or_positive_infinity(x: f32) -> bool {
    return (bitcast<u32>(x) & MAGNITUDE_MASK) >= POSITIVE_INFINITY_BITS
        && bitcast<u32>(x) != NEGATIVE_INFINITY_BITS;
}

fn quiet_nan() -> f32 {
    return bitcast<f32>(QUIET_NAN_BITS);
}

fn negative_infinity() -> f32 {
    return bitcast<f32>(NEGATIVE_INFINITY_BITS);
}

// Running statistics of a row: m = max over the finite entries seen, s = sum of exp(x - m)
// over them, and a flag set once a NaN or +inf was seen. `-inf` entries are masks: they
// add exp(-inf) = 0 and leave the statistics as they are.
struct RowStats {
    max: f32,
    sum: f32,
    poisoned: u32,
}

fn row_stats_empty() -> RowStats {
    return RowStats(LOWEST_FINITE, 0.0, 0u);
}

// One step of the online normaliser (Milakov and Gimelshein, 2018):
//   m' = max(m, x),  s' = s * exp(m - m') + exp(x - m').
// One of the two exponentials is always exp(0) = 1, and the other is exp(-|x - m|):
//   x > m:  s' = s * exp(m - x) + 1
//   else:   s' = s + exp(x - m)
// so one exponential per element does, which matters where exp is the bottleneck.
fn row_stats_push(stats: RowStats, x: f32) -> RowStats {
    if (is_nan_or_positive_infinity(x)) {
        return RowStats(stats.max, stats.sum, 1u);
    }
    if (is_negative_infinity(x)) {
        return stats;
    }
    let d = x - stats.max;
    let e = exp(-abs(d));
    let rising = d > 0.0;
    return RowStats(max(stats.max, x), select(stats.sum + e, stats.sum * e + 1.0, rising), stats.poisoned);
}

// Combines the statistics of two disjoint parts of a row. An empty part has s = 0 and adds
// nothing, whatever its max.
fn row_stats_merge(a: RowStats, b: RowStats) -> RowStats {
    let m = max(a.max, b.max);
    return RowStats(m, a.sum * exp(a.max - m) + b.sum * exp(b.max - m), a.poisoned | b.poisoned);
}

// A row has no softmax when it holds a NaN or +inf, or when every entry is -inf (s = 0).
fn row_is_undefined(stats: RowStats) -> bool {
    return stats.poisoned != 0u || stats.sum == 0.0;
}

// What the strategies share: the workgroup sizes they run with (the host's
// Strategy::workgroup_size says the same), and the flat index of a workgroup in a grid
// spread over y past the per-dimension limit (each module's `params` has `groups_x`).
const THREAD_PER_ROW_GROUP_SIZE: u32 = 64u;
const WORKGROUP_PER_ROW_GROUP_SIZE: u32 = 256u;

fn flat_group_index(group: vec3<u32>) -> u32 {
    return group.y * params.groups_x + group.x;
}

var<workgroup> partial_stats: array<RowStats, WORKGROUP_PER_ROW_GROUP_SIZE>;

// The whole workgroup's row statistics from each invocation's: a tree in shared memory.
// Call in uniform control flow.
fn workgroup_stats(local: u32, own: RowStats) -> RowStats {
    partial_stats[local] = own;
    workgroupBarrier();
    for (var width = WORKGROUP_PER_ROW_GROUP_SIZE / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            partial_stats[local] = row_stats_merge(partial_stats[local], partial_stats[local + width]);
        }
        workgroupBarrier();
    }
    let total = partial_stats[0];
    // Nobody overwrites the tree's root before everyone has read it.
    workgroupBarrier();
    return total;
}
