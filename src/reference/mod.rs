//! The CPU reference: every op of this crate in f64, with the same names, options and
//! special-value rules as the GPU kernels. GPU results are checked against it. It takes
//! the same element types as the ops, and works on the values as stored (16-bit inputs
//! widened exactly), so that it differs from a GPU result only by the GPU's f32 arithmetic
//! and its one rounding of each output.
//!
//! It computes the row max and the sum in two plain passes, not the online recurrence the
//! kernels use, so that the two agree only if both are right.

mod chain_verify;
mod cross_entropy;
mod distill;
mod linear_cross_entropy;
mod sample;

pub use chain_verify::{ChainRow, chain_verify};
pub use cross_entropy::cross_entropy;
pub use distill::distill;
pub use linear_cross_entropy::{linear_cross_entropy, matmul};
pub use sample::{sample_distribution, sample_distribution_with_settings, sample_masks};

use crate::dtype::{Element, widen};
use crate::error::Result;
use crate::shape::Shape;

/// Softmax of each row of `input` (row-major `shape`), in f64.
///
/// # Errors
///
/// [`crate::Error::ShapeMismatch`] when `input.len()` is not `rows * cols`.
pub fn softmax<T: Element>(input: &[T], shape: Shape) -> Result<Vec<f64>> {
    normalize_rows(input, shape, |x, stats| match stats {
        None => f64::NAN,
        Some(_) if x == f64::NEG_INFINITY => 0.0,
        Some(RowStats { max, sum }) => (x - max).exp() / sum,
    })
}

/// Log-softmax of each row of `input` (row-major `shape`), in f64.
///
/// # Errors
///
/// [`crate::Error::ShapeMismatch`] when `input.len()` is not `rows * cols`.
pub fn log_softmax<T: Element>(input: &[T], shape: Shape) -> Result<Vec<f64>> {
    normalize_rows(input, shape, |x, stats| match stats {
        None => f64::NAN,
        Some(_) if x == f64::NEG_INFINITY => f64::NEG_INFINITY,
        Some(RowStats { max, sum }) => (x - max) - sum.ln(),
    })
}

/// The gradient of softmax's input from its output `y` and the upstream gradient `dy`,
/// in f64: `y * (dy - sum(dy * y))` per row.
///
/// # Errors
///
/// [`crate::Error::ShapeMismatch`] when `y` or `dy` is not `rows * cols` long.
pub fn softmax_backward<T: Element>(y: &[T], dy: &[T], shape: Shape) -> Result<Vec<f64>> {
    backward_rows(y, dy, shape, |y, dy| {
        let r: f64 = y.iter().zip(dy).map(|(&y, &g)| f64::from(y) * f64::from(g)).sum();
        y.iter().zip(dy).map(|(&y, &g)| f64::from(y) * (f64::from(g) - r)).collect()
    })
}

/// The gradient of log-softmax's input from its output `y` and the upstream gradient
/// `dy`, in f64: `dy - exp(y) * sum(dy)` per row.
///
/// # Errors
///
/// [`crate::Error::ShapeMismatch`] when `y` or `dy` is not `rows * cols` long.
pub fn log_softmax_backward<T: Element>(y: &[T], dy: &[T], shape: Shape) -> Result<Vec<f64>> {
    backward_rows(y, dy, shape, |y, dy| {
        let r: f64 = dy.iter().map(|&g| f64::from(g)).sum();
        y.iter().zip(dy).map(|(&y, &g)| f64::from(g) - f64::from(y).exp() * r).collect()
    })
}

fn backward_rows<T: Element>(
    y: &[T],
    dy: &[T],
    shape: Shape,
    row: impl Fn(&[f32], &[f32]) -> Vec<f64>,
) -> Result<Vec<f64>> {
    shape.check_len("y", y.len())?;
    shape.check_len("dy", dy.len())?;
    let (y, dy) = (&rows_of(&widen(y), shape), &rows_of(&widen(dy), shape));
    if shape.is_empty() {
        return Ok(Vec::new());
    }
    let out: Vec<f64> =
        y.chunks_exact(shape.cols).zip(dy.chunks_exact(shape.cols)).flat_map(|(y, dy)| row(y, dy)).collect();
    Ok(tensor_of(&out, shape))
}

/// The elements of a tensor of `shape` row by row, each row's classes together (a copy of
/// the data when its class axis is last).
pub(crate) fn rows_of<T: Copy>(data: &[T], shape: Shape) -> Vec<T> {
    if shape.is_row_major() {
        return data.to_vec();
    }
    (0..shape.rows).flat_map(|row| (0..shape.cols).map(move |col| data[shape.index(row, col)])).collect()
}

/// Values given row by row, put where a tensor of `shape` keeps them: the inverse of
/// [`rows_of`].
pub(crate) fn tensor_of<T: Copy + Default>(by_row: &[T], shape: Shape) -> Vec<T> {
    if shape.is_row_major() {
        return by_row.to_vec();
    }
    let mut out = vec![T::default(); by_row.len()];
    for (row, values) in by_row.chunks_exact(shape.cols.max(1)).enumerate() {
        for (col, &value) in values.iter().enumerate() {
            out[shape.index(row, col)] = value;
        }
    }
    out
}

#[derive(Clone, Copy)]
pub(crate) struct RowStats {
    pub(crate) max: f64,
    pub(crate) sum: f64,
}

/// The row's max over its finite entries and the sum of `exp(x - max)`, or `None` when
/// the row has no softmax: it holds a NaN or `+inf`, or nothing but `-inf`.
pub(crate) fn row_stats<T: Copy + Into<f64>>(row: &[T]) -> Option<RowStats> {
    let values = || row.iter().map(|&x| x.into());
    if values().any(|x: f64| x.is_nan() || x == f64::INFINITY) {
        return None;
    }
    let max = values().filter(|x: &f64| x.is_finite()).reduce(f64::max)?;
    let sum = values().filter(|x: &f64| x.is_finite()).map(|x| (x - max).exp()).sum();
    Some(RowStats { max, sum })
}

fn normalize_rows<T: Element>(
    input: &[T],
    shape: Shape,
    entry: impl Fn(f64, Option<RowStats>) -> f64,
) -> Result<Vec<f64>> {
    shape.check_len("input", input.len())?;
    let input = &rows_of(&widen(input), shape);
    if shape.is_empty() {
        return Ok(Vec::new());
    }
    let out: Vec<f64> = input
        .chunks_exact(shape.cols)
        .flat_map(|row| {
            let stats = row_stats(row);
            row.iter().map(move |&x| (f64::from(x), stats))
        })
        .map(|(x, stats)| entry(x, stats))
        .collect();
    Ok(tensor_of(&out, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn five_scores_from_the_seed_text() {
        let p = softmax(&[0.0, 10.0, 15.0, 18.0, 20.0], Shape::new(1, 5)).unwrap();
        let expected =
            [1.8046755952e-09, 3.9750625269e-05, 5.8995158725e-03, 1.1849494389e-01, 8.7556578781e-01];
        for (a, b) in p.iter().zip(expected) {
            assert_relative_eq!(*a, b, max_relative = 1e-9);
        }
    }

    #[test]
    fn special_values() {
        let inf = f32::INFINITY;
        let input = [0.0, -inf, 0.0, -inf, -inf, -inf, 1.0, f32::NAN, 2.0, 1.0, inf, 2.0];
        let p = softmax(&input, Shape::new(4, 3)).unwrap();
        assert_eq!(&p[..3], &[0.5, 0.0, 0.5]);
        assert!(p[3..].iter().all(|x| x.is_nan()));
        let l = log_softmax(&input, Shape::new(4, 3)).unwrap();
        assert_relative_eq!(l[0], -std::f64::consts::LN_2);
        assert_eq!(l[1], f64::NEG_INFINITY);
        assert!(l[3..].iter().all(|x| x.is_nan()));
    }

    #[test]
    fn huge_logits_do_not_overflow() {
        let l = log_softmax(&[0.0, 1000.0], Shape::new(1, 2)).unwrap();
        assert_eq!(l, vec![-1000.0, 0.0]);
    }

    /// Softmax over dim 1 of a (2, 3, 2) tensor, written out by hand: each (n, k) column
    /// of three is one row.
    #[test]
    fn strided_class_axis() {
        let x: Vec<f32> = (0..12u8).map(|v| f32::from(v) * 0.5).collect();
        let p = softmax(&x, Shape::of_dims(&[2, 3, 2], 1).unwrap()).unwrap();
        for (n, k) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let at = |c: usize| n * 6 + c * 2 + k;
            let row: Vec<f32> = (0..3).map(|c| x[at(c)]).collect();
            let expected = softmax(&row, Shape::new(1, 3)).unwrap();
            for c in 0..3 {
                assert_relative_eq!(p[at(c)], expected[c], max_relative = 1e-12);
            }
        }
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        assert!(softmax(&[1.0; 5], Shape::new(2, 3)).is_err());
        assert_eq!(softmax::<f32>(&[], Shape::new(0, 3)).unwrap(), Vec::<f64>::new());
    }
}

#[cfg(test)]
mod backward_tests {
    use super::*;

    /// The backward references against central differences of the forward references.
    #[test]
    #[allow(clippy::cast_possible_truncation)]
    fn backward_matches_finite_differences() {
        let x = [0.3_f32, -1.2, 2.0, 0.7, -0.1];
        let dy = [0.5_f32, -0.25, 1.0, 0.1, -0.7];
        let shape = Shape::new(1, 5);
        for log in [false, true] {
            let forward = |x: &[f64]| -> f64 {
                let max = x.iter().copied().fold(f64::MIN, f64::max);
                let sum: f64 = x.iter().map(|v| (v - max).exp()).sum();
                x.iter()
                    .zip(&dy)
                    .map(|(v, &g)| {
                        f64::from(g) * if log { v - max - sum.ln() } else { (v - max).exp() / sum }
                    })
                    .sum()
            };
            let y: Vec<f32> = if log { log_softmax(&x, shape) } else { softmax(&x, shape) }
                .unwrap()
                .into_iter()
                .map(|v| v as f32)
                .collect();
            let analytic =
                if log { log_softmax_backward(&y, &dy, shape) } else { softmax_backward(&y, &dy, shape) }
                    .unwrap();
            let base: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            for i in 0..5 {
                let h = 1e-6;
                let (mut up, mut down) = (base.clone(), base.clone());
                up[i] += h;
                down[i] -= h;
                let numeric = (forward(&up) - forward(&down)) / (2.0 * h);
                assert!(
                    (numeric - analytic[i]).abs() < 1e-6,
                    "log {log} [{i}]: {numeric} vs {}",
                    analytic[i]
                );
            }
        }
    }
}
