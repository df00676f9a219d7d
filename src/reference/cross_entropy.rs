//! The reference of the fused cross-entropy, in f64, straight from its definition: the
//! loss through log-softmax, and the gradient by summing the derivative of each loss term.

use crate::dtype::{Element, widen};
use crate::error::Result;
use crate::ops::cross_entropy::{
    CrossEntropy, CrossEntropyInput, CrossEntropyOutput, Gradient, Reduction, Targets,
};

use super::{RowStats, row_stats};

/// The cross-entropy of `input` with the options of `op`, in f64: loss, gradient (unless
/// skipped; in place or not gives the same values), argmax and correct count.
///
/// # Errors
///
/// As [`CrossEntropy::run`]'s checks of the host input: shapes, targets, options.
pub fn cross_entropy<T: Element>(
    op: &CrossEntropy,
    input: &CrossEntropyInput<'_, T>,
) -> Result<CrossEntropyOutput<f64>> {
    op.check_input(input)?;
    // The reference works on the values the GPU sees: the logits (and probabilities) as
    // stored, widened exactly to f32.
    let logits = widen(input.logits);
    let probabilities = match input.targets {
        Targets::Probabilities(p) => Some(widen(p)),
        _ => None,
    };
    let targets = match (input.targets, &probabilities) {
        (_, Some(p)) => Targets::Probabilities(p.as_slice()),
        (Targets::U32(t), None) => Targets::U32(t),
        (Targets::I32(t), None) => Targets::I32(t),
        (Targets::I64(t), None) => Targets::I64(t),
        (Targets::Probabilities(_), None) => unreachable!("widened above"),
    };
    let input = &CrossEntropyInput {
        logits: &logits,
        shape: input.shape,
        targets,
        weight: input.weight,
        grad_output: input.grad_output,
    };
    let shape = input.shape;
    let cols = shape.cols;
    let classes = f64::from(u32::try_from(cols).unwrap_or(u32::MAX));
    let e = f64::from(op.get_label_smoothing());
    let weight = |c: usize| input.weight.map_or(1.0, |w| f64::from(w[c]));
    let total_class_weight: f64 = (0..cols).map(weight).sum();

    let mut row_losses = Vec::with_capacity(shape.rows);
    let mut grad = vec![0.0; shape.rows * cols];
    let mut argmax = Vec::with_capacity(shape.rows);
    let mut correct = 0;
    // The mean's divisor: sum of w[y] over rows not ignored, or the number of rows.
    let mut divisor = 0.0;

    for row in 0..shape.rows {
        let x = &input.logits[row * cols..(row + 1) * cols];
        let stats = row_stats(x);
        argmax.push(argmax_of(x));
        let g = &mut grad[row * cols..(row + 1) * cols];
        let target = match input.targets {
            Targets::Probabilities(_) => None,
            Targets::U32(t) => Some(i64::from(t[row])),
            Targets::I32(t) => Some(i64::from(t[row])),
            Targets::I64(t) => Some(t[row]),
        };
        // Coefficient of -logp[c] in the loss, for each class.
        let coefficients: Vec<f64> = match (target, input.targets) {
            (Some(y), _) if y == op.get_ignore_index() => {
                row_losses.push(0.0);
                continue;
            }
            (Some(y), _) => {
                let y = usize::try_from(y).unwrap_or(usize::MAX);
                divisor += weight(y);
                if argmax[row] as usize == y {
                    correct += 1;
                }
                (0..cols)
                    .map(|c| e / classes * weight(c) + if c == y { (1.0 - e) * weight(y) } else { 0.0 })
                    .collect()
            }
            (None, Targets::Probabilities(p)) => {
                divisor += 1.0;
                (0..cols)
                    .map(|c| weight(c) * (f64::from(p[row * cols + c]) * (1.0 - e) + e / classes))
                    .collect()
            }
            (None, _) => unreachable!("class targets always have a value"),
        };
        let Some(RowStats { max, sum }) = stats else {
            row_losses.push(f64::NAN);
            g.fill(f64::NAN);
            continue;
        };
        let log_normalizer = max + sum.ln();
        // -logp_c = logsumexp - x_c, +inf at a masked logit; a zero coefficient adds
        // nothing there (0 * inf would be NaN).
        let distance = |c: usize| log_normalizer - f64::from(x[c]);
        let loss: f64 = match target {
            Some(y) => {
                let y = usize::try_from(y).unwrap_or(0);
                let mut loss = (1.0 - e) * (weight(y) * distance(y));
                if e > 0.0 {
                    let smoothing: f64 =
                        (0..cols).filter(|&c| weight(c) != 0.0).map(|c| weight(c) * distance(c)).sum();
                    loss += e / classes * smoothing;
                }
                loss
            }
            None => {
                (0..cols).filter(|&c| coefficients[c] != 0.0).map(|c| coefficients[c] * distance(c)).sum()
            }
        };
        row_losses.push(loss);
        // dloss/dx_j = sum_c coefficient_c * (q_j - [j == c]) = q_j * sum_c coefficient_c - coefficient_j.
        let mass: f64 = match target {
            Some(y) => {
                let y = usize::try_from(y).unwrap_or(0);
                (1.0 - e) * weight(y) + e / classes * total_class_weight
            }
            None => coefficients.iter().sum(),
        };
        for (j, gj) in g.iter_mut().enumerate() {
            let q = if x[j] == f32::NEG_INFINITY { 0.0 } else { (f64::from(x[j]) - log_normalizer).exp() };
            *gj = q * mass - coefficients[j];
        }
    }

    let (loss, scale): (Vec<f64>, Box<dyn Fn(usize) -> f64>) = match op.get_reduction() {
        Reduction::None => {
            let upstream = input.grad_output;
            (row_losses, Box::new(move |row| upstream.map_or(1.0, |u| f64::from(u[row]))))
        }
        Reduction::Sum => (vec![row_losses.iter().sum()], Box::new(|_| 1.0)),
        Reduction::Mean => {
            // Over no rows (all ignored, or zero weights) the mean is NaN, as in PyTorch,
            // and the gradient is left at zero.
            let mean = if divisor == 0.0 { f64::NAN } else { row_losses.iter().sum::<f64>() / divisor };
            (vec![mean], Box::new(move |_| if divisor == 0.0 { 0.0 } else { 1.0 / divisor }))
        }
    };
    for (row, g) in grad.chunks_mut(cols.max(1)).enumerate() {
        let s = scale(row);
        g.iter_mut().for_each(|v| *v *= s);
    }
    let correct = (op.get_argmax() && !matches!(input.targets, Targets::Probabilities(_))).then_some(correct);
    Ok(CrossEntropyOutput {
        loss,
        grad: (op.get_gradient() != Gradient::Skip).then_some(grad),
        argmax: op.get_argmax().then_some(argmax),
        correct,
    })
}

/// The index of the first maximum, NaN counting as the largest value and `+inf` next, as
/// PyTorch's argmax.
fn argmax_of(row: &[f32]) -> u32 {
    let rank = |v: f32| {
        if v.is_nan() {
            (2, 0.0)
        } else if v == f32::INFINITY {
            (1, 0.0)
        } else {
            (0, v)
        }
    };
    let mut best = 0;
    for (i, &v) in row.iter().enumerate().skip(1) {
        let (a, b) = (rank(v), rank(row[best]));
        if a.0 > b.0 || (a.0 == b.0 && a.1 > b.1) {
            best = i;
        }
    }
    u32::try_from(best).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Shape;

    /// The reference gradient against central differences of the reference loss, for
    /// each kind of target, reduction, weight and smoothing.
    #[test]
    fn gradient_matches_finite_differences_of_the_loss() {
        let logits = [0.2_f32, -1.0, 1.5, 0.3, 0.9, -0.4, 2.2, 0.0, -2.0, 0.5, 1.0, 0.1];
        let shape = Shape::new(3, 4);
        let weight = [0.5_f32, 1.5, 1.0, 2.0];
        let probabilities = [0.1_f32, 0.2, 0.3, 0.4, 0.0, 0.0, 1.0, 0.0, 0.25, 0.25, 0.25, 0.25];
        let upstream = [1.0_f32, -0.5, 2.0];
        let classes = [2_i64, -100, 3];
        for targets in [Targets::I64(&classes), Targets::Probabilities(&probabilities)] {
            for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
                for (use_weight, smoothing) in [(false, 0.0), (true, 0.0), (true, 0.3)] {
                    let op = CrossEntropy::new().reduction(reduction).label_smoothing(smoothing);
                    let with = |x: &[f32]| {
                        let mut input = CrossEntropyInput::new(x, shape, targets);
                        if use_weight {
                            input = input.weight(&weight);
                        }
                        if reduction == Reduction::None {
                            input = input.grad_output(&upstream);
                        }
                        cross_entropy(&op, &input).unwrap()
                    };
                    // The scalar whose gradient the op returns: the reduced loss, or for
                    // none the upstream-weighted sum of the row losses.
                    let scalar = |out: &CrossEntropyOutput<f64>| -> f64 {
                        match reduction {
                            Reduction::None => {
                                out.loss.iter().zip(upstream).map(|(l, u)| l * f64::from(u)).sum()
                            }
                            _ => out.loss[0],
                        }
                    };
                    let analytic = with(&logits).grad.unwrap();
                    for i in 0..logits.len() {
                        let h = 1e-2_f32;
                        let (mut up, mut down) = (logits, logits);
                        up[i] += h;
                        down[i] -= h;
                        let numeric = (scalar(&with(&up)) - scalar(&with(&down))) / (2.0 * f64::from(h));
                        assert!(
                            (numeric - analytic[i]).abs() < 1e-4,
                            "{targets:?} {reduction:?} weight {use_weight} e {smoothing} [{i}]: {numeric} vs {}",
                            analytic[i]
                        );
                    }
                }
            }
        }
    }
}
