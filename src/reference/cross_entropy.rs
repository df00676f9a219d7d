//! The reference of the fused cross-entropy, in f64, straight from its definition: the
//! loss through log-softmax, and the gradient by summing the derivative of each loss term.
//! The z-loss is kept apart from the cross-entropy until the reduction (its mean divides
//! by the count of rows, not the weights), and the softcap's derivative is applied last.

use crate::dtype::{Element, widen};
use crate::error::Result;
use crate::ops::cross_entropy::{
    CrossEntropy, CrossEntropyInput, CrossEntropyOutput, Gradient, Reduction, Targets,
};

use super::{RowStats, row_stats, rows_of, tensor_of};
use crate::shape::Shape;

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
    // A strided class axis is gathered into contiguous rows, and the gradient put back.
    let layout = input.shape;
    let logits = rows_of(&widen(input.logits), layout);
    let probabilities = match input.targets {
        Targets::Probabilities(p) => {
            Some(rows_of(&widen(p), layout).into_iter().map(f64::from).collect::<Vec<_>>())
        }
        _ => None,
    };
    let targets = match (input.targets, &probabilities) {
        (_, Some(p)) => Targets::Probabilities(p.as_slice()),
        (Targets::U32(t), None) => Targets::U32(t),
        (Targets::I32(t), None) => Targets::I32(t),
        (Targets::I64(t), None) => Targets::I64(t),
        (Targets::Probabilities(_), None) => unreachable!("widened above"),
    };
    let logits: Vec<f64> = logits.iter().map(|&x| f64::from(x)).collect();
    let mut out = cross_entropy_of_rows(
        op,
        &logits,
        Shape::new(layout.rows, layout.cols),
        targets,
        input.weight,
        input.grad_output,
    );
    out.grad = out.grad.map(|g| tensor_of(&g, layout));
    Ok(out)
}

/// The cross-entropy of row-major `logits` given in f64 (the linear cross-entropy's
/// reference passes its f64 products), with targets and options already checked.
pub(crate) fn cross_entropy_of_rows(
    op: &CrossEntropy,
    logits: &[f64],
    shape: Shape,
    targets: Targets<'_, f64>,
    weight: Option<&[f32]>,
    grad_output: Option<&[f32]>,
) -> CrossEntropyOutput<f64> {
    let input = &CrossEntropyInput { logits, shape, targets, weight, grad_output };
    let shape = input.shape;
    let cols = shape.cols;
    let classes = f64::from(u32::try_from(cols).unwrap_or(u32::MAX));
    let e = f64::from(op.get_label_smoothing());
    let weight = |c: usize| input.weight.map_or(1.0, |w| f64::from(w[c]));
    let total_class_weight: f64 = (0..cols).map(weight).sum();

    let z = f64::from(op.get_z_loss());
    let cap = op.get_softcap().map(f64::from);
    let softcapped = |x: f64| cap.map_or(x, |t| t * (x / t).tanh());

    let mut row_losses = Vec::with_capacity(shape.rows);
    let mut z_losses = vec![0.0; shape.rows];
    let mut grad = vec![0.0; shape.rows * cols];
    let mut z_grad = vec![0.0; shape.rows * cols];
    let mut lse = Vec::with_capacity(shape.rows);
    let mut argmax = Vec::with_capacity(shape.rows);
    let mut correct = 0;
    // The mean's divisors: sum of w[y] over rows not ignored (or the number of rows), and
    // the count of rows not ignored (the z-loss's).
    let mut divisor = 0.0;
    let mut count = 0.0;

    for row in 0..shape.rows {
        let raw = &input.logits[row * cols..(row + 1) * cols];
        let x: Vec<f64> = raw.iter().map(|&v| softcapped(v)).collect();
        let stats = row_stats(&x);
        lse.push(match stats {
            Some(RowStats { max, sum }) => max + sum.ln(),
            None if x.iter().any(|v| v.is_nan() || *v == f64::INFINITY) => f64::NAN,
            None => f64::NEG_INFINITY,
        });
        argmax.push(argmax_of(raw));
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
                count += 1.0;
                if argmax[row] as usize == y {
                    correct += 1;
                }
                (0..cols)
                    .map(|c| e / classes * weight(c) + if c == y { (1.0 - e) * weight(y) } else { 0.0 })
                    .collect()
            }
            (None, Targets::Probabilities(p)) => {
                divisor += 1.0;
                count += 1.0;
                (0..cols).map(|c| weight(c) * (p[row * cols + c] * (1.0 - e) + e / classes)).collect()
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
        let distance = |c: usize| log_normalizer - x[c];
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
        z_losses[row] = z * log_normalizer * log_normalizer;
        let zg = &mut z_grad[row * cols..(row + 1) * cols];
        for (j, (gj, zj)) in g.iter_mut().zip(zg).enumerate() {
            let q = if x[j] == f64::NEG_INFINITY { 0.0 } else { (x[j] - log_normalizer).exp() };
            *gj = q * mass - coefficients[j];
            *zj = 2.0 * z * log_normalizer * q;
        }
    }

    let z_loss = (z > 0.0).then(|| match op.get_reduction() {
        Reduction::None => z_losses.clone(),
        Reduction::Sum => vec![z_losses.iter().sum()],
        Reduction::Mean if count == 0.0 => vec![f64::NAN],
        Reduction::Mean => vec![z_losses.iter().sum::<f64>() / count],
    });
    // Each row's scales of its cross-entropy and z-loss gradients.
    let (loss, scales): (Vec<f64>, Vec<(f64, f64)>) = match op.get_reduction() {
        Reduction::None => {
            let losses = row_losses.iter().zip(&z_losses).map(|(l, z)| l + z).collect();
            let upstream = |row: usize| input.grad_output.map_or(1.0, |u| f64::from(u[row]));
            (losses, (0..shape.rows).map(|row| (upstream(row), upstream(row))).collect())
        }
        Reduction::Sum => (
            vec![row_losses.iter().sum::<f64>() + z_losses.iter().sum::<f64>()],
            vec![(1.0, 1.0); shape.rows],
        ),
        Reduction::Mean => {
            // Over no rows (all ignored, or zero weights) the mean is NaN, as in PyTorch,
            // and the gradient is left at zero.
            let mean = if divisor == 0.0 {
                f64::NAN
            } else {
                row_losses.iter().sum::<f64>() / divisor + z_losses.iter().sum::<f64>() / count
            };
            let inverse = |d: f64| if divisor == 0.0 { 0.0 } else { 1.0 / d };
            (vec![mean], vec![(inverse(divisor), inverse(count)); shape.rows])
        }
    };
    for (row, (g, zg)) in grad.chunks_mut(cols.max(1)).zip(z_grad.chunks(cols.max(1))).enumerate() {
        let (s, zs) = scales[row];
        let raw = &input.logits[row * cols..(row + 1) * cols];
        for ((v, zv), &x) in g.iter_mut().zip(zg).zip(raw) {
            *v = *v * s + zv * zs;
            if let Some(t) = cap {
                // The chain through the softcap: d(T tanh(x / T))/dx = 1 - tanh^2.
                let tanh = (x / t).tanh();
                *v *= 1.0 - tanh * tanh;
            }
        }
    }
    let correct = (op.get_argmax() && !matches!(input.targets, Targets::Probabilities(_))).then_some(correct);
    CrossEntropyOutput {
        loss,
        grad: (op.get_gradient() != Gradient::Skip).then_some(grad),
        argmax: op.get_argmax().then_some(argmax),
        correct,
        lse: op.get_lse().then_some(lse),
        z_loss,
    }
}

/// The index of the first maximum, NaN counting as the largest value and `+inf` next, as
/// PyTorch's argmax.
fn argmax_of(row: &[f64]) -> u32 {
    let rank = |v: f64| {
        if v.is_nan() {
            (2, 0.0)
        } else if v == f64::INFINITY {
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
    /// each kind of target, reduction, weight, smoothing, z-loss and softcap.
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
                for (use_weight, smoothing, z, cap) in [
                    (false, 0.0, 0.0, None),
                    (true, 0.0, 0.0, None),
                    (true, 0.3, 0.0, None),
                    (false, 0.0, 0.5, None),
                    (true, 0.0, 0.2, Some(1.5)),
                    (true, 0.1, 0.3, Some(2.0)),
                ] {
                    let mut op =
                        CrossEntropy::new().reduction(reduction).label_smoothing(smoothing).z_loss(z);
                    if let Some(t) = cap {
                        op = op.softcap(t);
                    }
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
                            "{targets:?} {reduction:?} weight {use_weight} e {smoothing} z {z} cap {cap:?} [{i}]: {numeric} vs {}",
                            analytic[i]
                        );
                    }
                }
            }
        }
    }
}
