// bf16: the top 16 bits of an f32 (sign, 8 exponent bits, 7 mantissa bits).

fn half_to_f32(bits: u32) -> f32 {
    return bitcast<f32>(bits << 16u);
}

// Rounds to the nearest bf16, ties to even, on the f32 bits: adding 0x7fff plus the lowest
// kept bit carries into the kept bits exactly when the dropped part is above half, or
// exactly half with an odd kept part. Overflow rounds to infinity as it should; a NaN is
// kept a (quiet) NaN instead of rounding into infinity.
fn f32_to_half(x: f32) -> u32 {
    let bits = bitcast<u32>(x);
    if ((bits & MAGNITUDE_MASK) > POSITIVE_INFINITY_BITS) {
        return (bits >> 16u) | 0x40u;
    }
    return (bits + 0x7fffu + ((bits >> 16u) & 1u)) >> 16u;
}
