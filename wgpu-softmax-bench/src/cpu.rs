//! The plain CPU baseline: each op in single-threaded f32, written the obvious way (max,
//! exp-sum, normalise), as a program without a GPU would do it.

use wgpu_softmax::Shape;

pub(crate) fn softmax(x: &[f32], shape: Shape, log: bool) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(shape.cols.max(1)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        if log {
            let log_sum = sum.ln();
            out.extend(row.iter().map(|&v| v - max - log_sum));
        } else {
            out.extend(row.iter().map(|&v| (v - max).exp() / sum));
        }
    }
    out
}

/// Mean cross-entropy over class targets, with the gradient when asked.
pub(crate) fn cross_entropy(x: &[f32], targets: &[i32], shape: Shape, gradient: bool) -> (f32, Vec<f32>) {
    let mut loss = 0.0f32;
    let mut grad = if gradient { Vec::with_capacity(x.len()) } else { Vec::new() };
    #[allow(clippy::cast_precision_loss)] // a row count
    let scale = 1.0 / shape.rows as f32;
    for (row, &target) in x.chunks_exact(shape.cols.max(1)).zip(targets) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        let target = usize::try_from(target).unwrap_or(0);
        loss += max + sum.ln() - row[target];
        if gradient {
            grad.extend(row.iter().enumerate().map(|(c, &v)| {
                let q = (v - max).exp() / sum;
                (q - if c == target { 1.0 } else { 0.0 }) * scale
            }));
        }
    }
    (loss * scale, grad)
}

pub(crate) fn softmax_backward(y: &[f32], dy: &[f32], shape: Shape) -> Vec<f32> {
    let cols = shape.cols.max(1);
    let mut out = Vec::with_capacity(y.len());
    for (y, dy) in y.chunks_exact(cols).zip(dy.chunks_exact(cols)) {
        let r: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
        out.extend(y.iter().zip(dy).map(|(a, b)| a * (b - r)));
    }
    out
}
