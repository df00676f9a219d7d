//! Comparing GPU results with the f64 reference, and seeded random inputs to compare on.
//!
//! Used by the tests and the examples; public so that callers can check their own
//! adapters the same way.

/// How close a GPU result must be to the reference: `|gpu - ref| <= atol + rtol * |ref|`.
/// NaN must meet NaN, and an infinity the same infinity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Absolute part.
    pub atol: f64,
    /// Relative part.
    pub rtol: f64,
}

impl Tolerance {
    /// Softmax: f32 exponentials and a sum over up to tens of thousands of classes.
    pub const SOFTMAX: Self = Self { atol: 1e-8, rtol: 1e-4 };
    /// Log-softmax: `x - max` is exact, `ln(sum)` carries the sum's relative error as an
    /// absolute one.
    pub const LOG_SOFTMAX: Self = Self { atol: 2e-5, rtol: 1e-5 };

    /// Cross-entropy loss, per row or reduced: f32 sums over classes and rows.
    pub const CROSS_ENTROPY_LOSS: Self = Self { atol: 1e-5, rtol: 1e-4 };
    /// Cross-entropy gradient: `q * A - B` cancels near the target, so an absolute part
    /// of a few f32 ulps of 1 (times the reduction's scale, at most 1 here).
    pub const CROSS_ENTROPY_GRAD: Self = Self { atol: 1e-6, rtol: 1e-4 };

    /// Softmax and log-softmax backward: one f32 row sum, then one product per entry.
    pub const BACKWARD: Self = Self { atol: 1e-6, rtol: 1e-4 };

    /// Whether `actual` is close enough to `expected`.
    #[must_use]
    pub fn accepts(&self, actual: f32, expected: f64) -> bool {
        let actual = f64::from(actual);
        if expected.is_nan() || actual.is_nan() {
            return expected.is_nan() && actual.is_nan();
        }
        if expected.is_infinite() || actual.is_infinite() {
            return actual == expected;
        }
        (actual - expected).abs() <= self.atol + self.rtol * expected.abs()
    }
}

/// The outcome of comparing a result with the reference, element by element.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Elements compared.
    pub len: usize,
    /// Elements outside the tolerance (a length mismatch counts every missing element).
    pub mismatches: usize,
    /// The first element outside the tolerance: index, result, reference.
    pub first_mismatch: Option<(usize, f32, f64)>,
    /// Largest `|gpu - ref|` over the elements where both are finite.
    pub max_abs_error: f64,
    /// Largest `|gpu - ref| / |ref|` over the elements where both are finite and `ref != 0`.
    pub max_rel_error: f64,
}

impl Comparison {
    /// Whether every element was within the tolerance.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.mismatches == 0
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} elements outside tolerance; max abs error {:.3e}, max rel error {:.3e}",
            self.mismatches, self.len, self.max_abs_error, self.max_rel_error
        )?;
        if let Some((index, actual, expected)) = self.first_mismatch {
            write!(f, "; first at [{index}]: got {actual:e}, reference {expected:e}")?;
        }
        Ok(())
    }
}

/// Compares `actual` with `expected` element by element under `tolerance`.
#[must_use]
pub fn compare(actual: &[f32], expected: &[f64], tolerance: Tolerance) -> Comparison {
    let mut out = Comparison {
        len: expected.len(),
        mismatches: actual.len().abs_diff(expected.len()),
        ..Comparison::default()
    };
    for (index, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        if !tolerance.accepts(a, e) {
            out.mismatches += 1;
            out.first_mismatch.get_or_insert((index, a, e));
        }
        let error = (f64::from(a) - e).abs();
        if error.is_finite() {
            out.max_abs_error = out.max_abs_error.max(error);
            if e != 0.0 {
                out.max_rel_error = out.max_rel_error.max(error / e.abs());
            }
        }
    }
    out
}

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
    fn tolerance_treats_special_values_strictly() {
        let t = Tolerance::SOFTMAX;
        assert!(t.accepts(f32::NAN, f64::NAN));
        assert!(!t.accepts(0.5, f64::NAN));
        assert!(!t.accepts(f32::NAN, 0.5));
        assert!(t.accepts(f32::NEG_INFINITY, f64::NEG_INFINITY));
        assert!(!t.accepts(-1e30, f64::NEG_INFINITY));
        assert!(t.accepts(0.500_01, 0.5));
        assert!(!t.accepts(0.501, 0.5));
    }

    #[test]
    fn compare_counts_and_locates_mismatches() {
        let c = compare(&[0.5, 0.25, 0.0], &[0.5, 0.3, 0.0], Tolerance::SOFTMAX);
        assert_eq!(c.mismatches, 1);
        assert_eq!(c.first_mismatch.map(|m| m.0), Some(1));
        assert!(!c.passed());
        let short = compare(&[0.5], &[0.5, 0.5], Tolerance::SOFTMAX);
        assert_eq!(short.mismatches, 1);
    }

    #[test]
    fn rng_is_reproducible_and_in_range() {
        let a: Vec<f32> = SeededRng::new(7).logits(1000, 3.0);
        let b: Vec<f32> = SeededRng::new(7).logits(1000, 3.0);
        assert_eq!(a, b);
        assert!(a.iter().all(|x| (-3.0..3.0).contains(x)));
        assert_ne!(a, SeededRng::new(8).logits(1000, 3.0));
    }
}
