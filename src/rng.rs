//! A small seeded generator for reproducible inputs: the autotuner's samples, and (with
//! the `testing` feature) the tests' random data, so that a failure replays from its seed.

/// A small seeded generator (SplitMix64) for reproducible test inputs, so that a failure
/// can be replayed from its seed alone.
#[derive(Clone, Debug)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator from `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform f64 in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        #[allow(clippy::cast_precision_loss)]
        let mantissa = (self.next_u64() >> 11) as f64;
        mantissa / (1u64 << 53) as f64
    }

    /// A uniform f32 in `[low, high)`.
    pub fn uniform(&mut self, low: f32, high: f32) -> f32 {
        #[allow(clippy::cast_possible_truncation)]
        let unit = self.next_unit() as f32;
        low + (high - low) * unit
    }

    /// A uniform integer in `[0, bound)`; `bound` must be positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// `len` logits drawn uniformly from `[-scale, scale)`.
    pub fn logits(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(-scale, scale)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_in_range() {
        let a: Vec<f32> = SeededRng::new(7).logits(1000, 3.0);
        let b: Vec<f32> = SeededRng::new(7).logits(1000, 3.0);
        assert_eq!(a, b);
        assert!(a.iter().all(|x| (-3.0..3.0).contains(x)));
        assert_ne!(a, SeededRng::new(8).logits(1000, 3.0));
    }
}
