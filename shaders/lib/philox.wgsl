// Philox 4x32-10 (Salmon, Moraes, Dror and Shaw, SC'11), the counter-based generator of
// the sampler's and the speculative verifier's uniforms; `src/philox.rs` is its host twin.
// WGSL has no 64-bit integers, so each 32 x 32 product is built from 16-bit halves.

// 32 x 32 -> 64 bits, as (high, low), from 16-bit halves.
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let low_low = a0 * b0;
    let low_high = a0 * b1;
    let high_low = a1 * b0;
    let middle = (low_low >> 16u) + (low_high & 0xffffu) + (high_low & 0xffffu);
    let high = a1 * b1 + (low_high >> 16u) + (high_low >> 16u) + (middle >> 16u);
    return vec2<u32>(high, a * b);
}

// Philox 4x32-10 (Salmon et al., SC'11).
fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var r = 0u; r < 10u; r++) {
        let p0 = mul_wide(0xD2511F53u, c.x);
        let p1 = mul_wide(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k += vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

// The uniform in [0, 1) of a Philox output word: its top 24 bits times 2^-24, exact in f32.
fn unit_uniform(word: u32) -> f32 {
    return f32(word >> 8u) * 5.9604644775390625e-8;
}
