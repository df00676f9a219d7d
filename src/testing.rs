//! Helpers for tests, examples and tools, behind the `testing` feature: seeded random
//! inputs, element-wise comparison with the reference, and a look at the planner's and the
//! autotuner's decisions. Not part of the stable API an embedder builds on.

use crate::check::Tolerance;
use crate::context::Context;
use crate::strategy::Strategy;
use crate::tensor::BufferRegion;

pub use crate::dtype::{round_to, widen};
pub use crate::rng::SeededRng;
pub use crate::tune::{OpFamily, TuneKey};

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

/// The most loop iterations one invocation of `strategy` runs for rows of `cols` on
/// `ctx`'s device (what the planner holds under a driver's loop limit; see
/// [`Context::loop_iteration_limit`]).
#[must_use]
pub fn loop_iterations(ctx: &Context, strategy: Strategy, cols: usize) -> u64 {
    crate::plan::loop_iterations(ctx.caps(), strategy, cols)
}

/// Records `c (m x n, f32) = a * b` (`+= a * b` when `accumulate`) with the matmul kernel
/// the linear cross-entropy runs on, over f32 operands: `a` is `m x k` row-major (`k x m`
/// when its flag says transposed), `b` is `k x n` (`n x k` when transposed). For the
/// benchmark's unfused composition (the logits, then the two gradient products), so that it
/// and the fused op share one product kernel, and for the tests of that kernel. Each region
/// must fit one storage binding. Returns whether the product loads its operands 128 bits
/// at a time (the stored rows are whole vectors and the regions have room) rather than a
/// word at a time.
///
/// # Errors
///
/// A pipeline that does not compile (a bug), [`crate::Error::LimitExceeded`] for a grid
/// past the device's limits.
pub fn record_matmul(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    (a, a_transposed): (BufferRegion<'_>, bool),
    (b, b_transposed): (BufferRegion<'_>, bool),
    c: BufferRegion<'_>,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) -> crate::error::Result<bool> {
    use crate::ops::matmul::{Operand, Product, record_product};
    let product = Product {
        a: Operand { tensor: a.into(), transposed: a_transposed },
        b: Operand { tensor: b.into(), transposed: b_transposed },
        bias: None,
        c,
        m,
        n,
        k,
        accumulate,
    };
    record_product(ctx, &mut crate::record::Recorder::new(encoder), &product)
}

/// Compute dispatches the calling thread has recorded into command encoders so far, by
/// every op on every context: the difference across one op's `encode` is how many
/// dispatches it recorded (what [`crate::PlanExplanation::dispatches`] predicts).
#[must_use]
pub fn dispatches_recorded() -> u64 {
    crate::record::dispatches_recorded()
}

/// Compute passes the calling thread has begun in command encoders so far, by every op on
/// every context: the difference across one op's `encode` is how many passes it recorded
/// (one, where the op records no copy between its dispatches).
#[must_use]
pub fn passes_recorded() -> u64 {
    crate::record::passes_recorded()
}

/// GPU objects (buffers, bind groups, bind group and pipeline layouts, shader modules,
/// pipelines, query sets) the calling thread has created through this crate so far, on
/// every context: the difference across one op's `encode` is how many it created (0 for a
/// repeated call in the steady state, whose objects all come from the context's caches).
#[must_use]
pub fn objects_created() -> u64 {
    crate::context::objects_created()
}

/// The strategies autotuning has chosen on `ctx`'s device so far, by op family and shape
/// bucket.
#[must_use]
pub fn tuned_strategies(ctx: &Context) -> Vec<(TuneKey, Strategy)> {
    ctx.tune_cache().choices()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_counts_and_locates_mismatches() {
        let c = compare(&[0.5, 0.25, 0.0], &[0.5, 0.3, 0.0], Tolerance::SOFTMAX);
        assert_eq!(c.mismatches, 1);
        assert_eq!(c.first_mismatch.map(|m| m.0), Some(1));
        assert!(!c.passed());
        let short = compare(&[0.5], &[0.5, 0.5], Tolerance::SOFTMAX);
        assert_eq!(short.mismatches, 1);
    }
}
