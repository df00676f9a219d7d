//! The backward kernels of softmax and log-softmax against the f64 reference, on every
//! strategy the adapter has, through the GPU-resident API with poisoned outputs.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use common::{POISON_BITS, ctx, rng};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::compare;
use wgpu_softmax::{Shape, SoftmaxBackward, Strategy, log_softmax_backward, reference, softmax_backward};

fn strategies() -> Vec<Strategy> {
    common::strategies_of(ctx())
}

fn run_poisoned(op: SoftmaxBackward, y: &[f32], dy: &[f32], shape: Shape) -> Vec<f32> {
    let ctx = ctx();
    let (y_buffer, dy_buffer) = (ctx.upload(y).unwrap(), ctx.upload(dy).unwrap());
    let dx = ctx.upload(&vec![f32::from_bits(POISON_BITS); y.len().max(1)]).unwrap();
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    common::in_one_pass(&format!("{op:?} on {shape}"), || {
        op.encode(ctx, &mut encoder, &y_buffer, &dy_buffer, &dx, shape)
    })
    .unwrap();
    ctx.submit_and_wait(encoder).unwrap();
    let out = ctx.download(&dx, y.len()).unwrap();
    if let Some(i) = out.iter().position(|v| v.to_bits() == POISON_BITS) {
        panic!("{op:?} on {shape}: dx[{i}] was never written");
    }
    out
}

/// A forward output to differentiate through: the reference softmax (or log-softmax) of
/// random logits, rounded to f32 as a GPU forward pass would give it.
#[allow(clippy::cast_possible_truncation)]
fn forward_output(log: bool, logits: &[f32], shape: Shape) -> Vec<f32> {
    let y = if log { reference::log_softmax(logits, shape) } else { reference::softmax(logits, shape) };
    y.unwrap().into_iter().map(|v| v as f32).collect()
}

#[test]
fn every_strategy_matches_reference() {
    let mut rng = rng(0xBA_0001);
    let mut checked = 0;
    for (rows, cols) in [(1, 1), (3, 7), (64, 10), (33, 255), (5, 257), (19, 1000), (2, 5000), (1200, 3)] {
        let shape = Shape::new(rows, cols);
        let logits = rng.logits(rows * cols, 6.0);
        let dy = rng.logits(rows * cols, 1.0);
        for strategy in strategies() {
            for op in [SoftmaxBackward::new().strategy(strategy), SoftmaxBackward::log().strategy(strategy)] {
                let y = forward_output(op.is_log(), &logits, shape);
                let gpu = run_poisoned(op, &y, &dy, shape);
                let want = if op.is_log() {
                    reference::log_softmax_backward(&y, &dy, shape)
                } else {
                    reference::softmax_backward(&y, &dy, shape)
                }
                .unwrap();
                let c = compare(&gpu, &want, Tolerance::BACKWARD);
                assert!(c.passed(), "{op:?} on {shape}: {c}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 32);
}

#[test]
fn the_gradient_sums_to_zero_over_each_row() {
    // Softmax is shift invariant, so its input gradient is orthogonal to the ones vector.
    let mut rng = rng(0xBA_0002);
    let shape = Shape::new(20, 300);
    let logits = rng.logits(6000, 4.0);
    let dy = rng.logits(6000, 1.0);
    for log in [false, true] {
        let y = forward_output(log, &logits, shape);
        let dx = if log {
            log_softmax_backward(ctx(), &y, &dy, shape).unwrap()
        } else {
            softmax_backward(ctx(), &y, &dy, shape).unwrap()
        };
        for (row, values) in dx.chunks(300).enumerate() {
            let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
            assert!(sum.abs() <= 1e-4, "log {log}: row {row} sums to {sum}");
        }
    }
}

#[test]
fn masked_entries_pass_the_upstream_gradient_through_log_softmax() {
    let inf = f32::INFINITY;
    let y = [-inf, (0.5f32).ln(), (0.5f32).ln(), -inf];
    let dy = [0.3, 1.0, -1.0, 0.7];
    for strategy in strategies() {
        let dx = run_poisoned(SoftmaxBackward::log().strategy(strategy), &y, &dy, Shape::new(1, 4));
        // dx = dy - exp(y) * sum(dy) with sum(dy) = 1: masked entries keep dy exactly.
        assert_eq!(dx[0], 0.3, "{strategy:?}");
        assert_eq!(dx[3], 0.7, "{strategy:?}");
        assert!((dx[1] - 0.5).abs() < 1e-6 && (dx[2] + 1.5).abs() < 1e-6, "{strategy:?}: {dx:?}");
    }
}

#[test]
fn the_seed_batch_backward_is_right() {
    // Text 002's batch: the correct backward of softmax for an upstream gradient g is
    // y * (g - sum(g * y)); with g = onehot(target) / p[target] (the gradient of -ln p)
    // it must equal p - onehot, the well-known cross-entropy gradient.
    let p: [[f32; 10]; 3] = [
        [
            0.16005908, 0.06725888, 0.10924701, 0.11384503, 0.08331395, 0.06459966, 0.1163387, 0.06519166,
            0.06509037, 0.15505567,
        ],
        [
            0.08421609, 0.07562292, 0.08035415, 0.10763828, 0.13765494, 0.09973486, 0.08157759, 0.07799766,
            0.17106817, 0.08413533,
        ],
        [
            0.14815491, 0.09326063, 0.08769906, 0.12453189, 0.05808831, 0.07857035, 0.05885886, 0.08420299,
            0.13066567, 0.13596733,
        ],
    ];
    let targets = [8, 0, 9];
    let y: Vec<f32> = p.iter().flatten().copied().collect();
    let mut g = vec![0.0_f32; 30];
    for (row, &t) in targets.iter().enumerate() {
        g[row * 10 + t] = -1.0 / p[row][t];
    }
    for strategy in strategies() {
        let dx = run_poisoned(SoftmaxBackward::new().strategy(strategy), &y, &g, Shape::new(3, 10));
        for (row, &t) in targets.iter().enumerate() {
            for c in 0..10 {
                let want = p[row][c] - if c == t { 1.0 } else { 0.0 };
                let got = dx[row * 10 + c];
                assert!((got - want).abs() <= 2e-6, "{strategy:?} [{row}, {c}]: {got} vs {want}");
            }
        }
        assert!((dx[8] - (-0.934_909_63)).abs() <= 2e-6);
    }
}
