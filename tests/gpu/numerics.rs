//! Special values, large offsets and the seed documents' worked examples, on every
//! strategy the adapter has, through the GPU-resident API with poisoned outputs.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use common::{both_ops, check_against_reference, ctx, rng, run_poisoned};
use wgpu_softmax::{Shape, Softmax, Strategy};

const INF: f32 = f32::INFINITY;

/// The softmax strategies this adapter runs (the subgroup one only where it has
/// subgroups; the row split everywhere).
fn strategies() -> Vec<Strategy> {
    common::strategies_with_split(ctx())
}

fn gpu(op: Softmax, input: &[f32], shape: Shape) -> Vec<f32> {
    run_poisoned(ctx(), op, input, shape).unwrap_or_else(|e| panic!("{op:?} on {shape}: {e}"))
}

#[test]
fn masked_entries_get_probability_zero() {
    let mut rng = rng(0xA5_0001);
    let shape = Shape::new(37, 300);
    let mut input = rng.logits(shape.rows * shape.cols, 6.0);
    for (i, x) in input.iter_mut().enumerate() {
        if i % 7 == 3 || i % 11 == 0 {
            *x = -INF;
        }
    }
    for strategy in strategies() {
        let [plain, log] = both_ops(strategy);
        let p = gpu(plain, &input, shape);
        let l = gpu(log, &input, shape);
        for (i, &x) in input.iter().enumerate() {
            if x == -INF {
                assert_eq!(p[i].to_bits(), 0f32.to_bits(), "{strategy:?} softmax at masked [{i}]");
                assert_eq!(l[i], -INF, "{strategy:?} log_softmax at masked [{i}]");
            }
        }
        check_against_reference(ctx(), plain, &input, shape);
        check_against_reference(ctx(), log, &input, shape);
    }
}

#[test]
fn undefined_rows_are_nan_and_leave_other_rows_alone() {
    // 70 columns run the scalar kernels, 72 the vec4 ones.
    for cols in [70, 72] {
        undefined_rows_are_nan(cols);
    }
}

fn undefined_rows_are_nan(cols: usize) {
    let mut rng = rng(0xA5_0002);
    let mut input = rng.logits(6 * cols, 4.0);
    input[..cols].fill(-INF); // row 0: all masked
    input[cols + 5] = f32::NAN; // row 1: a NaN
    input[2 * cols + 69] = INF; // row 2: +inf
    input[3 * cols] = -f32::NAN; // row 3: a NaN with the sign bit set
    input[4 * cols..5 * cols - 1].fill(-INF); // row 4: one entry left unmasked
    let shape = Shape::new(6, cols);
    for strategy in strategies() {
        for op in both_ops(strategy) {
            let out = gpu(op, &input, shape);
            for row in 0..4 {
                let nan_row = &out[row * cols..(row + 1) * cols];
                assert!(nan_row.iter().all(|x| x.is_nan()), "{op:?}: row {row} should be NaN: {nan_row:?}");
            }
            let single = out[5 * cols - 1];
            assert_eq!(single, if op.is_log() { 0.0 } else { 1.0 }, "{op:?}: the one unmasked entry");
            check_against_reference(ctx(), op, &input, shape);
        }
    }
}

#[test]
fn large_offsets_lose_nothing() {
    // Logits near ±1e4 (f32 spacing 1/1024 there), and rows spanning 2e4: the row max is
    // subtracted before any exponential, so nothing overflows or underflows wholesale.
    let cols = 129;
    let mut rng = rng(0xA5_0003);
    let mut input = Vec::new();
    for offset in [1e4_f32, -1e4, 0.0] {
        input.extend(rng.logits(cols, 3.0).into_iter().map(|x| x + offset));
    }
    let mut spread = rng.logits(cols, 3.0);
    spread[0] = 1e4;
    spread[1] = -1e4;
    input.extend(spread);
    let shape = Shape::new(4, cols);
    for strategy in strategies() {
        for op in both_ops(strategy) {
            check_against_reference(ctx(), op, &input, shape);
        }
        // Shifting a row by 1e4 changes nothing but rounding of the inputs themselves.
        let p = gpu(Softmax::new().strategy(strategy), &input, shape);
        assert!(p.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn extremes_from_the_seed_texts() {
    for strategy in strategies() {
        let [plain, log] = both_ops(strategy);
        // [0, 1000]: log-softmax is exactly [-1000, 0]; log(softmax) would give -inf.
        assert_eq!(gpu(log, &[0.0, 1000.0], Shape::new(1, 2)), vec![-1000.0, 0.0], "{strategy:?}");
        // [0, 100, 200]: in f32 the first two probabilities underflow, the last is 1.
        let p = gpu(plain, &[0.0, 100.0, 200.0], Shape::new(1, 3));
        assert!(p[0] < 1e-37 && p[1] < 1e-37 && p[0] >= 0.0 && p[1] >= 0.0, "{strategy:?}: {p:?}");
        assert_eq!(p[2], 1.0, "{strategy:?}");
        let l = gpu(log, &[0.0, 100.0, 200.0], Shape::new(1, 3));
        assert_eq!(l, vec![-200.0, -100.0, 0.0], "{strategy:?}");
    }
}

#[test]
fn seed_vectors() {
    // Values computed in float64 by the seed documents (shared/seed-vectors.md), not by
    // this crate: five scores, the same with the fourth raised, and three scores.
    let cases: [(&[f32], &[f64]); 3] = [
        (
            &[0.0, 10.0, 15.0, 18.0, 20.0],
            &[1.8046755952e-09, 3.9750625269e-05, 5.8995158725e-03, 1.1849494389e-01, 8.7556578781e-01],
        ),
        (
            &[0.0, 10.0, 15.0, 19.0, 20.0],
            &[1.4993885316e-09, 3.3026230205e-05, 4.9015271580e-03, 2.6761431516e-01, 7.2745112995e-01],
        ),
        (&[0.0, 2.0, 4.0], &[0.01587624, 0.1173104278, 0.8668133322]),
    ];
    for strategy in strategies() {
        for (logits, expected) in cases {
            let p = gpu(Softmax::new().strategy(strategy), logits, Shape::new(1, logits.len()));
            for (got, want) in p.iter().zip(expected) {
                let error = (f64::from(*got) - want).abs();
                assert!(error <= 1e-9 + 1e-5 * want, "{strategy:?} {logits:?}: got {got}, want {want}");
            }
        }
        // Shift invariance on the three scores, and softmax([x, 0]) = [sigmoid(x), 1 - sigmoid(x)].
        let shifted = gpu(Softmax::new().strategy(strategy), &[100.0, 102.0, 104.0], Shape::new(1, 3));
        let base = gpu(Softmax::new().strategy(strategy), &[0.0, 2.0, 4.0], Shape::new(1, 3));
        for (a, b) in shifted.iter().zip(&base) {
            assert!((a - b).abs() <= 1e-6, "{strategy:?}: {shifted:?} vs {base:?}");
        }
        let x = 1.5_f64;
        let pair = gpu(Softmax::new().strategy(strategy), &[1.5, 0.0], Shape::new(1, 2));
        let sigmoid = 1.0 / (1.0 + (-x).exp());
        assert!(
            (f64::from(pair[0]) - sigmoid).abs() <= 1e-6
                && (f64::from(pair[1]) - (1.0 - sigmoid)).abs() <= 1e-6
        );
    }
}

#[test]
fn batch_of_three_from_the_seed_text() {
    // The text prints softmax outputs p (8 decimals); logits ln(p) must give back p.
    let p: [[f64; 10]; 3] = [
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
    #[allow(clippy::cast_possible_truncation)]
    let logits: Vec<f32> = p.iter().flatten().map(|&x| x.ln() as f32).collect();
    for strategy in strategies() {
        let out = gpu(Softmax::new().strategy(strategy), &logits, Shape::new(3, 10));
        for (got, want) in out.iter().zip(p.iter().flatten()) {
            // The printed values are rounded to 8 decimals and each row sums to 1 only to ~1e-8.
            assert!((f64::from(*got) - want).abs() <= 2e-7, "{strategy:?}: got {got}, want {want}");
        }
        // The per-sample losses the text prints: -ln p[target], targets [8, 0, 9].
        let log = gpu(Softmax::log().strategy(strategy), &logits, Shape::new(3, 10));
        for (row, (target, loss)) in
            [(8, 2.73197873), (0, 2.47436928), (9, 1.99534064)].into_iter().enumerate()
        {
            let got = -f64::from(log[row * 10 + target]);
            assert!((got - loss).abs() <= 2e-6, "{strategy:?}: row {row} loss {got}, want {loss}");
        }
    }
}
