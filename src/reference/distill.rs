//! The reference of the fused distillation, in f64, straight from its definition: the
//! teacher's and the student's log-softmax at temperature `T`, the KL divergence summed
//! term by term, and the gradient `T (q - p)` scaled for the reduction.

use crate::dtype::{Element, widen};
use crate::error::Result;
use crate::ops::cross_entropy::Targets;
use crate::ops::distill::{Distill, DistillInput, DistillOutput, DistillReduction};

use super::{row_stats, rows_of, tensor_of};

/// The distillation of `input` with the options of `op`, in f64: the loss and (when `op`
/// computes it) the gradient with respect to the student's logits.
///
/// # Errors
///
/// As [`Distill::run`]'s checks of the host input: shapes, mask targets, options.
pub fn distill<T: Element>(op: &Distill, input: &DistillInput<'_, T>) -> Result<DistillOutput<f64>> {
    op.check_input(input)?;
    let shape = input.shape;
    let (rows, cols) = (shape.rows, shape.cols);
    let t = f64::from(op.get_temperature());
    let scaled = |data: &[T]| -> Vec<f64> {
        rows_of(&widen(data), shape).into_iter().map(|v| f64::from(v) / t).collect()
    };
    let (x, y) = (scaled(input.student), scaled(input.teacher));
    let ignored = |row: usize| match input.targets {
        None | Some(Targets::Probabilities(_)) => false,
        Some(Targets::U32(v)) => i64::from(v[row]) == op.get_ignore_index(),
        Some(Targets::I32(v)) => i64::from(v[row]) == op.get_ignore_index(),
        Some(Targets::I64(v)) => v[row] == op.get_ignore_index(),
    };
    let counted = (0..rows).filter(|&row| !ignored(row)).count();
    let reduction = op.get_reduction();
    let scale = |row: usize| match reduction {
        DistillReduction::None => input.grad_output.map_or(1.0, |g| f64::from(g[row])),
        DistillReduction::Sum => 1.0,
        DistillReduction::BatchMean if counted == 0 => 0.0,
        DistillReduction::BatchMean => 1.0 / counted as f64,
    };

    let mut losses = Vec::with_capacity(rows);
    let mut grad = Vec::with_capacity(rows * cols);
    for row in 0..rows {
        let (xs, ys) = (&x[row * cols..(row + 1) * cols], &y[row * cols..(row + 1) * cols]);
        if ignored(row) {
            losses.push(0.0);
            grad.extend(std::iter::repeat_n(0.0, cols));
            continue;
        }
        if cols == 0 {
            losses.push(0.0);
            continue;
        }
        let (Some(sx), Some(sy)) = (row_stats(xs), row_stats(ys)) else {
            losses.push(f64::NAN);
            grad.extend(std::iter::repeat_n(f64::NAN, cols));
            continue;
        };
        let (lse_x, lse_y) = (sx.max + sx.sum.ln(), sy.max + sy.sum.ln());
        let probability =
            |v: f64, max: f64, sum: f64| if v.is_finite() { (v - max).exp() / sum } else { 0.0 };
        let mut kl = 0.0;
        for (&xc, &yc) in xs.iter().zip(ys) {
            if !yc.is_finite() {
                continue;
            }
            let p = probability(yc, sy.max, sy.sum);
            kl += if xc.is_finite() { p * ((yc - lse_y) - (xc - lse_x)) } else { f64::INFINITY };
        }
        losses.push(t * t * kl);
        let s = t * scale(row);
        grad.extend(
            xs.iter()
                .zip(ys)
                .map(|(&xc, &yc)| s * (probability(xc, sx.max, sx.sum) - probability(yc, sy.max, sy.sum))),
        );
    }
    let loss = match reduction {
        DistillReduction::None => losses,
        DistillReduction::Sum => vec![losses.iter().sum()],
        DistillReduction::BatchMean if counted == 0 => vec![f64::NAN],
        DistillReduction::BatchMean => vec![losses.iter().sum::<f64>() / counted as f64],
    };
    let grad = op.get_gradient().then(|| if cols == 0 { Vec::new() } else { tensor_of(&grad, shape) });
    Ok(DistillOutput { loss, grad })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
    use super::*;
    use crate::Shape;

    /// Values exactly representable in f32 (multiples of 1/64), so that `v +- h` with
    /// `h = 2^-10` is exact and the central difference measures the reference alone.
    fn grid(seed: u64, n: usize) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
                let step = ((state >> 33) % 320) as f32;
                (step - 160.0) / 64.0
            })
            .collect()
    }

    /// The gradient is the derivative of the loss: central differences of the reduced
    /// loss against each entry of the gradient, for every reduction, a mask and a
    /// temperature, and a class axis that is not last.
    #[test]
    fn the_gradient_is_the_derivative_of_the_loss() {
        let shape = Shape::of_dims(&[3, 5, 2], 1).unwrap();
        let student = grid(1, 30);
        let teacher = grid(2, 30);
        let targets = [0_i64, -100, 3, 4, 1, 2];
        let upstream = [0.5_f32, -1.0, 2.0, 1.5, 0.25, -0.75];
        let h = 1.0 / 1024.0;
        for reduction in [DistillReduction::BatchMean, DistillReduction::Sum, DistillReduction::None] {
            let op = Distill::new().temperature(2.5).reduction(reduction);
            let mut input = DistillInput::new(&student, &teacher, shape).targets(Targets::I64(&targets));
            if reduction == DistillReduction::None {
                input = input.grad_output(&upstream);
            }
            let grad = distill(&op, &input).unwrap().grad.unwrap();
            // The reduced loss (none: the upstream-weighted sum, whose gradient is the op's).
            let total = |s: &[f32]| {
                let out = distill(&op, &DistillInput { student: s, ..input }).unwrap();
                match reduction {
                    DistillReduction::None => {
                        out.loss.iter().zip(&upstream).map(|(l, &u)| l * f64::from(u)).sum()
                    }
                    _ => out.loss[0],
                }
            };
            for i in 0..student.len() {
                let (mut up, mut down) = (student.clone(), student.clone());
                up[i] += h;
                down[i] -= h;
                let numeric = (total(&up) - total(&down)) / (2.0 * f64::from(h));
                assert!(
                    (numeric - grad[i]).abs() <= 1e-6 + 1e-5 * grad[i].abs(),
                    "{reduction:?} [{i}]: numeric {numeric}, analytic {}",
                    grad[i]
                );
            }
        }
    }

    /// Seed values: equal logits give 0; PyTorch's `kl_div` of a known pair; the ignored
    /// row counts for nothing.
    #[test]
    fn known_values() {
        let shape = Shape::new(2, 3);
        let same = [1.0_f32, 2.0, 3.0, 0.5, 0.5, 0.5];
        let out = distill(&Distill::new(), &DistillInput::new(&same, &same, shape)).unwrap();
        assert!(out.loss[0].abs() < 1e-15 && out.grad.unwrap().iter().all(|g| g.abs() < 1e-15));
        // One row: p = softmax([0, ln 3]) = [1/4, 3/4], q = [1/2, 1/2]:
        // KL = 1/4 ln(1/2) + 3/4 ln(3/2) = 0.13081203594113694.
        let (s, t) = ([0.0_f32, 0.0], [0.0_f32, 3.0_f32.ln()]);
        let out = distill(&Distill::new(), &DistillInput::new(&s, &t, Shape::new(1, 2))).unwrap();
        assert!((out.loss[0] - 0.130_812_035_941_136_94).abs() < 1e-6, "{}", out.loss[0]);
        // The batchmean over the rows not ignored.
        let student = [0.0_f32, 0.0, 0.0, 0.0];
        let teacher = [0.0_f32, 3.0_f32.ln(), 5.0, -5.0];
        let input = DistillInput::new(&student, &teacher, Shape::new(2, 2)).targets(Targets::I64(&[1, -100]));
        let out = distill(&Distill::new(), &input).unwrap();
        assert!((out.loss[0] - 0.130_812_035_941_136_94).abs() < 1e-6, "{}", out.loss[0]);
        assert!(out.grad.unwrap()[2..].iter().all(|&g| g == 0.0));
    }
}
