// f16 (IEEE binary16: sign, 5 exponent bits, 10 mantissa bits), converted by bit pattern
// rather than with unpack2x16float / pack2x16float, whose rounding, subnormals and
// out-of-range results WGSL leaves to the implementation: this way every adapter gives the
// same bits, round to nearest even.

fn half_to_f32(bits: u32) -> f32 {
    let sign = (bits & 0x8000u) << 16u;
    let exponent = (bits >> 10u) & 0x1fu;
    let mantissa = bits & 0x3ffu;
    if (exponent == 0u) {
        // Zero or subnormal: mantissa * 2^-24, exact in f32.
        return bitcast<f32>(bitcast<u32>(f32(mantissa) * 5.9604644775390625e-8) | sign);
    }
    if (exponent == 31u) {
        // Infinity or NaN.
        return bitcast<f32>(sign | POSITIVE_INFINITY_BITS | (mantissa << 13u));
    }
    return bitcast<f32>(sign | ((exponent + 112u) << 23u) | (mantissa << 13u));
}

fn f32_to_half(x: f32) -> u32 {
    let bits = bitcast<u32>(x);
    let sign = (bits >> 16u) & 0x8000u;
    let magnitude = bits & MAGNITUDE_MASK;
    if (magnitude > POSITIVE_INFINITY_BITS) {
        return sign | 0x7e00u;
    }
    // 65520 and above (and infinity) round to infinity: 65504 is the largest f16, and
    // 65520 the tie between it and 2^16, which goes to the even one.
    if (magnitude >= 0x477ff000u) {
        return sign | 0x7c00u;
    }
    if (magnitude >= 0x38800000u) {
        // A normal f16 (2^-14 and above): rebias the exponent from 127 to 15, then round
        // the mantissa from 23 bits to 10, ties to even (a carry may bump the exponent,
        // which is right).
        let rebiased = magnitude - 0x38000000u;
        return sign | ((rebiased + 0xfffu + ((rebiased >> 13u) & 1u)) >> 13u);
    }
    // A subnormal f16 or zero: the value in units of 2^-24, rounded to the nearest
    // integer, ties to even (WGSL's round). 1024 units is the smallest normal, which the
    // bits then spell correctly.
    return sign | u32(round(bitcast<f32>(magnitude) * 16777216.0));
}
