//! How close a GPU result must be to the f64 reference: the tolerances this crate's tests
//! hold every kernel to, public so that callers can check their own adapters the same way.

use crate::dtype::DType;

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

    /// Distillation loss, per row or reduced: `T^2` times a KL taken as a sum over the
    /// teacher's probabilities plus the difference of two f32 logsumexps (each a few ulps
    /// of its size), so an absolute part that grows with `T^2` (1e-5 at `T = 1`).
    pub const DISTILL_LOSS: Self = Self { atol: 2e-5, rtol: 2e-4 };
    /// Distillation gradient `T (q - p)` times the reduction's scale: two f32
    /// probabilities that cancel where student and teacher agree.
    pub const DISTILL_GRAD: Self = Self { atol: 2e-6, rtol: 2e-4 };

    /// Linear cross-entropy loss and logsumexp: f32 products of `D` terms for the logits,
    /// then the cross-entropy's sums.
    pub const LINEAR_CROSS_ENTROPY_LOSS: Self = Self { atol: 2e-5, rtol: 2e-4 };
    /// Linear cross-entropy gradients `dH`, `dW`, `db`: f32 sums over `V` or `N` terms of
    /// the logits' gradient (itself within [`Tolerance::CROSS_ENTROPY_GRAD`]) times the
    /// other operand.
    pub const LINEAR_CROSS_ENTROPY_GRAD: Self = Self { atol: 2e-6, rtol: 5e-4 };

    /// Softmax and log-softmax backward: one f32 row sum, then one product per entry.
    pub const BACKWARD: Self = Self { atol: 1e-6, rtol: 1e-4 };

    /// This tolerance for a result stored in `dtype`: the f32 arithmetic's error plus the
    /// one rounding of each output to the storage type, half an ulp (relative
    /// `dtype.unit_roundoff()`: 2^-8 for bf16, 2^-11 for f16) or, below the type's normal
    /// range, half its smallest subnormal (absolute, f16's 3.0e-8). Losses are f32 in
    /// every storage type and keep the f32 tolerance.
    #[must_use]
    pub fn for_dtype(self, dtype: DType) -> Self {
        match dtype {
            DType::F32 => self,
            DType::F16 | DType::BF16 => {
                Self { atol: self.atol + dtype.subnormal_error(), rtol: self.rtol + dtype.unit_roundoff() }
            }
        }
    }

    /// This tolerance with its absolute part at least `relative` times the largest
    /// magnitude in `expected`: for sums over so many terms that their f32 error follows
    /// the size of the whole result rather than of each element. The linear
    /// cross-entropy's `dH` at a vocabulary of 128k is one: its logsumexp carries about
    /// ten f32 ulps, which shifts every probability of a row by the same factor, so every
    /// element of the row's `dH` moves by about 1e-6 of its row's scale, near zero too.
    #[must_use]
    pub fn normwise(self, relative: f64, expected: &[f64]) -> Self {
        let largest = expected.iter().filter(|v| v.is_finite()).fold(0.0_f64, |m, v| m.max(v.abs()));
        Self { atol: self.atol.max(relative * largest), rtol: self.rtol }
    }

    /// The normwise part of the linear cross-entropy's gradients at real vocabularies
    /// (see [`Tolerance::normwise`]): 1e-5 of the largest magnitude, where lavapipe
    /// measures 5e-6 for `dH` at 128256 classes.
    pub const LINEAR_GRAD_NORMWISE: f64 = 1e-5;

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
}
