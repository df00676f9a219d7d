// The online (max, sum of exponentials) statistics of a row (Milakov and Gimelshein,
// "Online normalizer calculation for softmax", 2018).

// m = max over the finite entries seen, s = sum of exp(x - m) over them, and a flag set
// once a NaN or +inf was seen. `-inf` entries are masks: they add exp(-inf) = 0 and leave
// the statistics as they are.
struct RowStats {
    max: f32,
    sum: f32,
    poisoned: u32,
}

fn row_stats_empty() -> RowStats {
    return RowStats(LOWEST_FINITE, 0.0, 0u);
}

// One step of the online normaliser:
//   m' = max(m, x),  s' = s * exp(m - m') + exp(x - m').
// One of the two exponentials is always exp(0) = 1, and the other is exp(-|x - m|):
//   x > m:  s' = s * exp(m - x) + 1
//   else:   s' = s + exp(x - m)
// so one exponential per element does.
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

// The statistics of two disjoint parts of a row together. An empty part has s = 0 and
// adds nothing, whatever its max. Symmetric in a and b, to the bit: every lane of a
// butterfly reduction ends with the same statistics.
fn row_stats_merge(a: RowStats, b: RowStats) -> RowStats {
    let m = max(a.max, b.max);
    return RowStats(m, a.sum * exp(a.max - m) + b.sum * exp(b.max - m), a.poisoned | b.poisoned);
}

// A row has no softmax when it holds a NaN or +inf, or when every entry is -inf (s = 0).
fn row_is_undefined(stats: RowStats) -> bool {
    return stats.poisoned != 0u || stats.sum == 0.0;
}

#if SUBGROUPS
fn row_stats_shuffle_xor(stats: RowStats, mask: u32) -> RowStats {
    return RowStats(
        subgroupShuffleXor(stats.max, mask),
        subgroupShuffleXor(stats.sum, mask),
        subgroupShuffleXor(stats.poisoned, mask),
    );
}
#endif
