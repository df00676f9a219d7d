// Special values by bit pattern. WGSL lets an implementation assume that no value is inf
// or NaN, and some really do fold `x != x` to false or `x - x` to 0. So special values
// are told apart by their bits, never by comparing floats.

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

fn positive_infinity() -> f32 {
    return bitcast<f32>(POSITIVE_INFINITY_BITS);
}
