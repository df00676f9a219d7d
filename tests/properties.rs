//! Properties that hold for any input, checked on the GPU with proptest: each row of
//! softmax sums to 1, adding a constant to a row changes nothing, and log-softmax equals
//! the log of softmax wherever both are finite.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test

mod common;

use common::{ctx, run_poisoned};
use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use wgpu_softmax::{Shape, Softmax, Strategy};

fn strategy_for(index: usize) -> Option<Strategy> {
    let strategy = Strategy::ALL[index % Strategy::ALL.len()];
    (strategy != Strategy::SubgroupPerRow || ctx().caps().subgroups).then_some(strategy)
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
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

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
