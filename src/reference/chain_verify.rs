//! Chain speculative-decoding verification in f64, on the same uniforms as the kernel:
//! the twin of [`crate::ChainVerifier`], for checking its decisions and its draws' support.

use crate::error::Result;
use crate::ops::chain_verify::{ChainShape, ChainVerifier};
use crate::philox::chain_verify_uniform;

/// One row's verification as the reference makes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainRow {
    /// The drafts accepted, in order (the first `accepted` of the row's drafts).
    pub accepted: usize,
    /// The distribution the row's last token is drawn from: the residual
    /// `max(0, p - q)` renormalised after a rejection (`p` where it has no mass), the
    /// target's `p_K` after all were accepted.
    pub last_distribution: Vec<f64>,
    /// That token, drawn by inverse transform with the kernel's uniform, in f64 (it may
    /// differ from the kernel's where the uniform falls within rounding of a boundary).
    pub last_token: usize,
}

/// For each row, the accepted drafts and the distribution and draw of the token after
/// them (see [`crate::ChainVerifier`]'s semantics), or `None` for a bad row (a draft id
/// outside the vocabulary, or a NaN, infinite or negative probability among those read),
/// which the kernel marks with -1. The acceptance test `u * q < p` is computed in f64 on
/// the f32 values, as the kernel computes it in f32: they can differ only where
/// `u * q` and `p` are within an f32 rounding.
///
/// # Errors
///
/// As [`ChainShape::check_lens`].
pub fn chain_verify(
    draft_ids: &[i32],
    draft_probs: &[f32],
    target_probs: &[f32],
    shape: ChainShape,
    verifier: &ChainVerifier,
) -> Result<Vec<Option<ChainRow>>> {
    shape.check_lens(draft_ids.len(), draft_probs.len(), target_probs.len())?;
    let (k, v) = (shape.drafts, shape.vocab);
    let valid = |x: f32| x.is_finite() && x >= 0.0;
    Ok((0..shape.rows)
        .map(|row| {
            let q = |i: usize| &draft_probs[(row * k + i) * v..(row * k + i + 1) * v];
            let p = |i: usize| &target_probs[(row * (k + 1) + i) * v..(row * (k + 1) + i + 1) * v];
            let uniform = |i: usize, stream| {
                #[allow(clippy::cast_possible_truncation)] // the kernel indexes in u32
                f64::from(chain_verify_uniform(verifier.seed, row as u32, i as u32, stream))
            };
            let mut accepted = 0;
            while accepted < k {
                let d = usize::try_from(draft_ids[row * k + accepted]).ok().filter(|&d| d < v)?;
                let (pd, qd) = (p(accepted)[d], q(accepted)[d]);
                if !valid(pd) || !valid(qd) {
                    return None;
                }
                if uniform(accepted, 1) * f64::from(qd) >= f64::from(pd) {
                    break;
                }
                accepted += 1;
            }
            let target = p(accepted);
            if !target.iter().all(|&x| valid(x)) {
                return None;
            }
            let mut weights: Vec<f64> = if accepted < k {
                let draft = q(accepted);
                if !draft.iter().all(|&x| valid(x)) {
                    return None;
                }
                target.iter().zip(draft).map(|(&p, &q)| (f64::from(p) - f64::from(q)).max(0.0)).collect()
            } else {
                target.iter().map(|&p| f64::from(p)).collect()
            };
            if weights.iter().sum::<f64>() <= 0.0 {
                weights = target.iter().map(|&p| f64::from(p)).collect();
            }
            let total: f64 = weights.iter().sum();
            if total <= 0.0 {
                return None;
            }
            let goal = uniform(accepted, 2) * total;
            let mut running = 0.0;
            let last_positive = weights.iter().rposition(|&w| w > 0.0)?;
            let last_token = weights
                .iter()
                .position(|&w| {
                    running += w;
                    w > 0.0 && running > goal
                })
                .unwrap_or(last_positive);
            let last_distribution = weights.iter().map(|w| w / total).collect();
            Some(ChainRow { accepted, last_distribution, last_token })
        })
        .collect())
}
