//! Properties that hold for any input, checked on the GPU with proptest: each row of
//! softmax sums to 1, adding a constant to a row changes nothing, and log-softmax equals
//! the log of softmax wherever both are finite.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use common::{ctx, run_poisoned};
use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::compare;
use wgpu_softmax::{
    CrossEntropy, CrossEntropyInput, Reduction, Shape, Softmax, Strategy, Targets, reference,
};

/// The seed of proptest's own generator: fixed, so that every CI run draws the same cases
/// (`WGPU_SOFTMAX_SEED` picks others, to explore).
fn fixed_seed() -> proptest::test_runner::RngSeed {
    proptest::test_runner::RngSeed::Fixed(
        std::env::var("WGPU_SOFTMAX_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x50F7_3A11),
    )
}

fn strategy_for(index: usize) -> Option<Strategy> {
    let strategy = Strategy::ALL[index % Strategy::ALL.len()];
    (strategy != Strategy::SubgroupPerRow || ctx().has_subgroups()).then_some(strategy)
}

/// Logits on a 1/64 grid in [-16, 16]: adding an integer of magnitude up to 1e4 to them is
/// exact in f32, so shift invariance can be checked without rounding the inputs.
fn grid_logits(len: usize) -> impl proptest::strategy::Strategy<Value = Vec<f32>> {
    prop::collection::vec(-1024i32..=1024, len).prop_map(|v| {
        #[allow(clippy::cast_precision_loss)]
        v.into_iter().map(|k| k as f32 / 64.0).collect()
    })
}

fn shape_and_logits() -> impl proptest::strategy::Strategy<Value = (Shape, Vec<f32>)> {
    (1usize..40, 1usize..700)
        .prop_flat_map(|(rows, cols)| (Just(Shape::new(rows, cols)), grid_logits(rows * cols)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, rng_seed: fixed_seed(), ..ProptestConfig::default() })]

    #[test]
    fn rows_sum_to_one((shape, logits) in shape_and_logits(), which in 0usize..3) {
        let Some(strategy) = strategy_for(which) else { return Ok(()) };
        let p = run_poisoned(ctx(), Softmax::new().strategy(strategy), &logits, shape).unwrap();
        for (row, values) in p.chunks(shape.cols).enumerate() {
            let sum: f64 = values.iter().map(|&x| f64::from(x)).sum();
            prop_assert!((sum - 1.0).abs() <= 1e-5, "{strategy:?} {shape}: row {row} sums to {sum}");
            prop_assert!(values.iter().all(|&x| (0.0..=1.0).contains(&x)));
        }
    }

    #[test]
    fn adding_a_constant_changes_nothing((shape, logits) in shape_and_logits(), shift in -10_000i32..=10_000, which in 0usize..3) {
        let Some(strategy) = strategy_for(which) else { return Ok(()) };
        #[allow(clippy::cast_precision_loss)]
        let shifted: Vec<f32> = logits.iter().map(|&x| x + shift as f32).collect();
        for op in [Softmax::new().strategy(strategy), Softmax::log().strategy(strategy)] {
            let base = run_poisoned(ctx(), op, &logits, shape).unwrap();
            let moved = run_poisoned(ctx(), op, &shifted, shape).unwrap();
            for (i, (a, b)) in base.iter().zip(&moved).enumerate() {
                // Same row max offset, same differences x - max: only the last bits of the
                // exponentials may differ.
                prop_assert!((a - b).abs() <= 1e-6 + 1e-5 * a.abs(), "{op:?} {shape} shift {shift}: [{i}] {a} vs {b}");
            }
        }
    }

    #[test]
    fn log_softmax_is_the_log_of_softmax((shape, logits) in shape_and_logits(), which in 0usize..3) {
        let Some(strategy) = strategy_for(which) else { return Ok(()) };
        let p = run_poisoned(ctx(), Softmax::new().strategy(strategy), &logits, shape).unwrap();
        let l = run_poisoned(ctx(), Softmax::log().strategy(strategy), &logits, shape).unwrap();
        for (i, (&p, &l)) in p.iter().zip(&l).enumerate() {
            // Where p is a normal f32 its log is finite and well conditioned.
            if p > 1e-30 {
                let log_p = f64::from(p).ln();
                prop_assert!((log_p - f64::from(l)).abs() <= 1e-5 + 1e-5 * log_p.abs(), "{strategy:?} {shape}: [{i}] ln {p} = {log_p}, log_softmax {l}");
            }
        }
    }
}

/// Logits with extremes: rows offset by 0, ±1e4 or 30, some entries masked with -inf, and
/// now and then a row holding a NaN.
fn extreme_logits(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut rng = common::rng(seed);
    let mut x = Vec::with_capacity(rows * cols);
    for _ in 0..rows {
        let offset = [0.0, 1e4, -1e4, 30.0][rng.below(4) as usize];
        let nan_row = rng.below(25) == 0;
        for c in 0..cols {
            let v = if rng.below(20) == 0 { f32::NEG_INFINITY } else { offset + rng.uniform(-8.0, 8.0) };
            x.push(if nan_row && c == cols / 2 { f32::NAN } else { v });
        }
    }
    x
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, rng_seed: fixed_seed(), ..ProptestConfig::default() })]

    /// A seeded differential test: random shapes, options and extreme values, the fused
    /// cross-entropy against the reference.
    #[test]
    fn cross_entropy_matches_reference_on_random_options_and_extremes(
        rows in 1usize..24,
        cols in 1usize..400,
        seed in any::<u64>(),
        probabilities in any::<bool>(),
        reduction in prop::sample::select(vec![Reduction::None, Reduction::Mean, Reduction::Sum]),
        smoothing in prop::sample::select(vec![0.0f32, 0.1, 1.0]),
        weighted in any::<bool>(),
        which in 0usize..3,
    ) {
        let Some(strategy) = strategy_for(which) else { return Ok(()) };
        let shape = Shape::new(rows, cols);
        let logits = extreme_logits(rows, cols, seed);
        let mut rng = common::rng(seed ^ 0x5A5A);
        let classes: Vec<i64> = (0..rows).map(|_| if rng.below(6) == 0 { -100 } else { rng.below(cols as u64) as i64 }).collect();
        // Target distributions: rows of random non-negative values normalised to sum to 1.
        let mut dense: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(0.0, 1.0)).collect();
        for row in dense.chunks_mut(cols) {
            let total: f32 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= total);
        }
        let weight: Vec<f32> = (0..cols).map(|_| rng.uniform(0.1, 3.0)).collect();
        let targets = if probabilities { Targets::Probabilities(&dense) } else { Targets::I64(&classes) };
        let mut input = CrossEntropyInput::new(&logits, shape, targets);
        if weighted {
            input = input.weight(&weight);
        }
        let op = CrossEntropy::new().reduction(reduction).label_smoothing(smoothing).argmax(true).strategy(strategy);
        let got = op.run(ctx(), &input).unwrap();
        let want = reference::cross_entropy(&op, &input).unwrap();
        let c = compare(&got.loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
        prop_assert!(c.passed(), "{op:?} {shape}: loss {c}");
        let c = compare(got.grad.as_ref().unwrap(), want.grad.as_ref().unwrap(), Tolerance::CROSS_ENTROPY_GRAD);
        prop_assert!(c.passed(), "{op:?} {shape}: grad {c}");
        prop_assert_eq!(got.argmax, want.argmax);
        prop_assert_eq!(got.correct, want.correct);
    }

    /// The same for softmax and log-softmax.
    #[test]
    fn softmax_matches_reference_on_extremes(rows in 1usize..24, cols in 1usize..600, seed in any::<u64>(), which in 0usize..3) {
        let Some(strategy) = strategy_for(which) else { return Ok(()) };
        let shape = Shape::new(rows, cols);
        let logits = extreme_logits(rows, cols, seed);
        for op in [Softmax::new().strategy(strategy), Softmax::log().strategy(strategy)] {
            let got = run_poisoned(ctx(), op, &logits, shape).unwrap();
            let (want, tolerance) = common::expected(op, &logits, shape);
            let c = compare(&got, &want, tolerance);
            prop_assert!(c.passed(), "{op:?} {shape}: {c}");
        }
    }
}
