//! The reference of the linear cross-entropy, in f64: the logits `H W^T + b` in full, the
//! cross-entropy's reference over them, and the gradients by the chain rule,
//! `dH = G W`, `dW = G^T H`, `db = column sums of G`, with `G = dloss/dlogits`.

use super::cross_entropy::cross_entropy_of_rows;
use crate::dtype::Element;
use crate::error::Result;
use crate::ops::cross_entropy::{Gradient, Targets};
use crate::ops::linear_cross_entropy::{
    LinearCrossEntropy, LinearCrossEntropyInput, LinearCrossEntropyOutput,
};

/// `a (m x k) * b (k x n)`, row-major, in f64: the twin of the GPU's matmul module, with
/// `a` or `b` read transposed from storage as the flags say (`a` stored `k x m`, `b`
/// stored `n x k`).
#[must_use]
pub fn matmul(
    a: &[f64],
    b: &[f64],
    (m, n, k): (usize, usize, usize),
    (a_transposed, b_transposed): (bool, bool),
) -> Vec<f64> {
    let at = |row: usize, i: usize| if a_transposed { a[i * m + row] } else { a[row * k + i] };
    let bt = |i: usize, col: usize| if b_transposed { b[col * k + i] } else { b[i * n + col] };
    (0..m).flat_map(|row| (0..n).map(move |col| (0..k).map(|i| at(row, i) * bt(i, col)).sum())).collect()
}

/// The linear cross-entropy of `input` with the options of `op`, in f64: the loss, the
/// logsumexp when asked for, and the gradients `op` asks for (the bias's with a bias).
///
/// # Errors
///
/// As [`LinearCrossEntropy::run`]'s checks of the host input.
pub fn linear_cross_entropy<T: Element>(
    op: &LinearCrossEntropy,
    input: &LinearCrossEntropyInput<'_, T>,
) -> Result<LinearCrossEntropyOutput<f64>> {
    op.check_input(input)?;
    let shape = input.shape;
    let (n, d, v) = (shape.rows, shape.hidden, shape.classes);
    let wide = |values: &[T]| values.iter().map(|x| f64::from(x.to_f32())).collect::<Vec<f64>>();
    let hidden = wide(input.hidden);
    let classifier = wide(input.classifier);
    let mut logits = matmul(&hidden, &classifier, (n, v, d), (false, true));
    if let Some(bias) = input.bias {
        for row in logits.chunks_mut(v.max(1)) {
            for (x, b) in row.iter_mut().zip(bias) {
                *x += f64::from(b.to_f32());
            }
        }
    }
    let targets: Targets<'_, f64> = match input.targets {
        Targets::U32(t) => Targets::U32(t),
        Targets::I32(t) => Targets::I32(t),
        Targets::I64(t) => Targets::I64(t),
        // Refused by the check above.
        Targets::Probabilities(_) => Targets::U32(&[]),
    };
    let loss_op = op.get_cross_entropy().gradient(Gradient::Separate).lse(true);
    let out =
        cross_entropy_of_rows(&loss_op, &logits, shape.logits(), targets, input.weight, input.grad_output);
    let g = out.grad.unwrap_or_default();
    let wants = op.get_gradients();
    Ok(LinearCrossEntropyOutput {
        loss: out.loss,
        lse: op.get_cross_entropy().get_lse().then_some(out.lse.unwrap_or_default()),
        grad_hidden: wants.hidden.then(|| matmul(&g, &classifier, (n, d, v), (false, false))),
        grad_classifier: wants.classifier.then(|| matmul(&g, &hidden, (v, d, n), (true, false))),
        grad_bias: (wants.bias && input.bias.is_some())
            .then(|| (0..v).map(|c| (0..n).map(|row| g[row * v + c]).sum()).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cross_entropy::Reduction;
    use crate::ops::linear_cross_entropy::LinearShape;

    #[test]
    fn matmul_reads_each_layout() {
        // a = [[1, 2], [3, 4]], b = [[5, 6], [7, 8]]: a b = [[19, 22], [43, 50]].
        let a = [1.0, 2.0, 3.0, 4.0];
        let a_t = [1.0, 3.0, 2.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let b_t = [5.0, 7.0, 6.0, 8.0];
        let expected = vec![19.0, 22.0, 43.0, 50.0];
        assert_eq!(matmul(&a, &b, (2, 2, 2), (false, false)), expected);
        assert_eq!(matmul(&a_t, &b, (2, 2, 2), (true, false)), expected);
        assert_eq!(matmul(&a, &b_t, (2, 2, 2), (false, true)), expected);
    }

    /// The reference gradients against central differences of the reference loss.
    #[test]
    fn gradients_match_finite_differences_of_the_loss() {
        let shape = LinearShape::new(3, 2, 4);
        let hidden = [0.3_f32, -1.2, 0.8, 0.5, -0.4, 1.1];
        let classifier = [0.2_f32, -0.7, 1.3, 0.4, -0.9, 0.6, 0.1, 1.0];
        let bias = [0.05_f32, -0.3, 0.2, 0.0];
        let weight = [0.5_f32, 1.5, 1.0, 2.0];
        let targets = [2_i64, -100, 3];
        let op = LinearCrossEntropy::new()
            .reduction(Reduction::Mean)
            .label_smoothing(0.1)
            .z_loss(0.2)
            .softcap(2.0);
        let loss = |h: &[f32], w: &[f32], b: &[f32]| {
            let input =
                LinearCrossEntropyInput::new(h, w, shape, Targets::I64(&targets)).bias(b).weight(&weight);
            linear_cross_entropy(&op, &input).unwrap()
        };
        let analytic = loss(&hidden, &classifier, &bias);
        let h = 1e-3_f32;
        let check = |which: usize, values: &[f32], grad: &[f64]| {
            for i in 0..values.len() {
                let (mut up, mut down) = (values.to_vec(), values.to_vec());
                up[i] += h;
                down[i] -= h;
                let at = |x: &[f32]| match which {
                    0 => loss(x, &classifier, &bias).loss[0],
                    1 => loss(&hidden, x, &bias).loss[0],
                    _ => loss(&hidden, &classifier, x).loss[0],
                };
                let numeric = (at(&up) - at(&down)) / (2.0 * f64::from(h));
                assert!((numeric - grad[i]).abs() < 1e-4, "input {which} [{i}]: {numeric} vs {}", grad[i]);
            }
        };
        check(0, &hidden, &analytic.grad_hidden.unwrap());
        check(1, &classifier, &analytic.grad_classifier.unwrap());
        check(2, &bias, &analytic.grad_bias.unwrap());
    }
}
