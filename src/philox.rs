//! Philox 4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as
//! 1, 2, 3", SC'11): the counter-based generator behind [`crate::Sampler`]'s draws, here on
//! the host so that a caller can reproduce each draw's uniform.

/// Philox's multipliers and key increments (the Weyl sequence).
const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox 4x32 with 10 rounds: the four output words for `counter` and `key`.
///
/// ```
/// // The first known-answer vector of the Random123 distribution.
/// assert_eq!(wgpu_softmax::philox::philox4x32_10([0; 4], [0; 2]), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
/// ```
#[must_use]
pub const fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    let mut round = 0;
    while round < 10 {
        let p0 = (M0 as u64) * (c[0] as u64);
        let p1 = (M1 as u64) * (c[2] as u64);
        #[allow(clippy::cast_possible_truncation)] // the 64-bit products' halves
        let next =
            [((p1 >> 32) as u32) ^ c[1] ^ k[0], p1 as u32, ((p0 >> 32) as u32) ^ c[3] ^ k[1], p0 as u32];
        c = next;
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        round += 1;
    }
    c
}

/// The uniform in `[0, 1)` of draw `sample` of row `row` with `seed`, as the sampler's
/// kernel computes it: Philox 4x32-10 with key `(seed low 32 bits, seed high 32 bits)` and
/// counter `(row, sample, 0, 0)`, the first output word's top 24 bits times `2^-24`
/// (exact in f32).
#[must_use]
pub fn sample_uniform(seed: u64, row: u32, sample: u32) -> f32 {
    unit_uniform(seed, [row, sample, 0, 0])
}

/// The uniform in `[0, 1)` of [`crate::ChainVerifier`] for `row` and draft `position`:
/// `stream` 1 is the acceptance test's, 2 the draw's. Philox 4x32-10 with key `(seed low
/// 32 bits, seed high 32 bits)` and counter `(row, position, stream, 0)`, the first output
/// word's top 24 bits times `2^-24` (exact in f32).
#[must_use]
pub fn chain_verify_uniform(seed: u64, row: u32, position: u32, stream: u32) -> f32 {
    unit_uniform(seed, [row, position, stream, 0])
}

/// The first output word's top 24 bits times `2^-24`, for `counter` under `seed`.
fn unit_uniform(seed: u64, counter: [u32; 4]) -> f32 {
    #[allow(clippy::cast_possible_truncation)] // the seed's two halves
    let key = [seed as u32, (seed >> 32) as u32];
    let bits = philox4x32_10(counter, key)[0] >> 8;
    #[allow(clippy::cast_precision_loss)] // 24 bits: exact
    let unit = bits as f32 / (1u32 << 24) as f32;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Philox4x32-10 known-answer vectors of the Random123 distribution
    /// (`kat_vectors`): counter, key, output.
    #[test]
    fn philox_matches_the_known_answers() {
        let vectors: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
            ([0; 4], [0; 2], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]),
            ([u32::MAX; 4], [u32::MAX; 2], [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]),
            (
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0],
                [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
            ),
        ];
        for (counter, key, expected) in vectors {
            assert_eq!(philox4x32_10(counter, key), expected, "counter {counter:08x?} key {key:08x?}");
        }
    }

    #[test]
    fn uniforms_are_in_range_and_follow_the_stream() {
        let u = sample_uniform(0x1234_5678_9abc_def0, 3, 7);
        assert!((0.0..1.0).contains(&u));
        let word = philox4x32_10([3, 7, 0, 0], [0x9abc_def0, 0x1234_5678])[0];
        #[allow(clippy::cast_precision_loss)]
        let expected = (word >> 8) as f32 / 16_777_216.0;
        assert_eq!(u.to_bits(), expected.to_bits());
        assert_ne!(sample_uniform(1, 3, 7), sample_uniform(2, 3, 7));
    }
}
