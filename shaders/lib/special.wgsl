// Special values by bit pattern. WGSL lets an implementation assume that no value is inf
// or NaN, and some really do fold `x != x` to false or `x - x` to 0. So special values
// are told apart by their bits, never by comparing floats.

const POSITIVE_INFINITY_BITS: u32 = 0x7f800000u;
const NEGATIVE_INFINITY_BITS: u32 = 0xff800000u;
const QUIET_NAN_BITS: u32 = 0x7fc00000u;
const MAGNITUDE_MASK: u32 = 0x7fffffffu;

// The most negative finite f32: the running max of a row that has seen no finite value.
// Written exactly, in hex: the decimal -3.40282347e38 lies just past it, which naga rounds
// to it but Tint (Chromium's WGSL compiler) refuses as not representable in f32.
const LOWEST_FINITE: f32 = -0x1.fffffep+127f;

fn is_negative_infinity(x: f32) -> bool {
    return bitcast<u32>(x) == NEGATIVE_INFINITY_BITS;
}

// NaN or +inf: either one leaves the whole row without a defined softmax.
fn is_nan_or_positive_infinity(x: f32) -> bool {
    return (bitcast<u32>(x) & MAGNITUDE_MASK) >= POSITIVE_INFINITY_BITS
        && bitcast<u32>(x) != NEGATIVE_INFINITY_BITS;
}

// The special values come from the bits of private variables, not of the constants: a
// bitcast of a constant is a constant expression, and WGSL makes a constant expression
// that is NaN or infinite an error (Tint refuses the module; naga lets it through). A
// private variable's value is a run-time one.
var<private> quiet_nan_bits: u32 = QUIET_NAN_BITS;
var<private> negative_infinity_bits: u32 = NEGATIVE_INFINITY_BITS;
var<private> positive_infinity_bits: u32 = POSITIVE_INFINITY_BITS;

fn quiet_nan() -> f32 {
    return bitcast<f32>(quiet_nan_bits);
}

fn negative_infinity() -> f32 {
    return bitcast<f32>(negative_infinity_bits);
}

fn positive_infinity() -> f32 {
    return bitcast<f32>(positive_infinity_bits);
}

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & MAGNITUDE_MASK) < POSITIVE_INFINITY_BITS;
}

// The value a row's max is taken over: x, or the lowest finite value for a mask (-inf)
// and for NaN and +inf (whose rows are marked undefined by their kind).
fn finite_or_lowest(x: f32) -> f32 {
    return select(LOWEST_FINITE, x, is_finite(x));
}

// exp(x - m) for x at most m, without ever an infinity: 0 for a mask (and for NaN and
// +inf), and the difference kept above -88 (exp(-88) is 6e-39, next to nothing) so that
// extreme values cannot overflow it to -inf.
fn exp_below(x: f32, m: f32) -> f32 {
    return select(0.0, exp(max(x - m, -88.0)), is_finite(x));
}

// exp(old_max - new_max) for `from` at most `to`, the factor that moves a sum of exponentials
// from one max to a larger one (an empty part's max is the lowest finite value).
fn rebase_factor(old_max: f32, new_max: f32) -> f32 {
    return exp(max(old_max - new_max, -88.0));
}

// The kinds of values a row holds, as bits: finite ones, and NaN or +inf.
const SEEN_FINITE: u32 = 1u;
const SEEN_NAN_OR_POSITIVE_INFINITY: u32 = 2u;

fn kind_of(x: f32) -> u32 {
    if (is_finite(x)) {
        return SEEN_FINITE;
    }
    return select(SEEN_NAN_OR_POSITIVE_INFINITY, 0u, is_negative_infinity(x));
}

// A row has no softmax when it holds a NaN or +inf, or nothing but -inf.
fn row_undefined(seen: u32) -> bool {
    return (seen & SEEN_NAN_OR_POSITIVE_INFINITY) != 0u || (seen & SEEN_FINITE) == 0u;
}
