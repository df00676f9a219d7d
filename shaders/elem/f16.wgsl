// f16 (IEEE binary16: sign, 5 exponent bits, 10 mantissa bits), converted by bit pattern
// rather than with unpack2x16float / pack2x16float, whose rounding, subnormals and
// out-of-range results WGSL leaves to the implementation: this way every adapter gives the
// same bits, round to nearest even.

// Both directions choose among their cases with `select` rather than branches: every
// case is a few integer operations, and a GPU's lanes (or a CPU adapter's SIMD lanes)
// converting values of different cases then take one path.
fn half_to_f32(bits: u32) -> f32 {
    let sign = (bits & 0x8000u) << 16u;
    let exponent = (bits >> 10u) & 0x1fu;
    let mantissa = bits & 0x3ffu;
    // A normal half: the exponent rebiased from 15 to 127, the mantissa widened.
    let normal = ((exponent + 112u) << 23u) | (mantissa << 13u);
    // Infinity or NaN: the f32 exponent all ones, the mantissa (a NaN's payload) widened.
    let special = POSITIVE_INFINITY_BITS | (mantissa << 13u);
    // Zero or subnormal: mantissa * 2^-24, exact in f32.
    let small = bitcast<u32>(f32(mantissa) * 5.9604644775390625e-8);
    return bitcast<f32>(sign | select(select(normal, special, exponent == 31u), small, exponent == 0u));
}

fn f32_to_half(x: f32) -> u32 {
    let bits = bitcast<u32>(x);
    let sign = (bits >> 16u) & 0x8000u;
    let magnitude = bits & MAGNITUDE_MASK;
    // A normal f16 (2^-14 and above): rebias the exponent from 127 to 15, then round the
    // mantissa from 23 bits to 10, ties to even (a carry may bump the exponent, which is
    // right). Below 2^-14 the subtraction wraps, and `select` drops the result.
    let rebiased = magnitude - 0x38000000u;
    let normal = (rebiased + 0xfffu + ((rebiased >> 13u) & 1u)) >> 13u;
    // A subnormal f16 or zero: the value in units of 2^-24, rounded to the nearest integer,
    // ties to even (WGSL's round). 1024 units is the smallest normal, which the bits then
    // spell correctly. (Past 2^-14 this product is not used.)
    let subnormal = u32(round(bitcast<f32>(magnitude) * 16777216.0));
    var half = select(subnormal, normal, magnitude >= 0x38800000u);
    // 65520 and above (and infinity) round to infinity: 65504 is the largest f16, and
    // 65520 the tie between it and 2^16, which goes to the even one.
    half = select(half, 0x7c00u, magnitude >= 0x477ff000u);
    // A NaN stays a (quiet) NaN.
    half = select(half, 0x7e00u, magnitude > POSITIVE_INFINITY_BITS);
    return sign | half;
}
