//! Fuzzing the cross-entropy's input validation (no GPU) with proptest and many cases:
//! every input gets an answer, never a panic, and the answer is right: an error exactly
//! when the input is invalid. (The planner's own fuzzing is a unit test of `plan`.)
//! `WGPU_SOFTMAX_FUZZ_CASES` sets the case count (default 20,000).
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use proptest::prelude::*;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestRunner};
use wgpu_softmax::{CrossEntropy, CrossEntropyInput, Reduction, Shape, Targets, reference};

fn cases() -> u32 {
    std::env::var("WGPU_SOFTMAX_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

fn runner() -> TestRunner {
    // A fixed seed in CI; WGPU_SOFTMAX_SEED explores others.
    let seed = std::env::var("WGPU_SOFTMAX_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0xF022_5EED);
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..Config::default()
    })
}

#[derive(Clone, Debug)]
struct CrossEntropyCase {
    rows: usize,
    cols: usize,
    logits_len: usize,
    targets: Vec<i64>,
    probabilities: Option<Vec<f32>>,
    ignore_index: i64,
    smoothing: f32,
    weight_len: Option<usize>,
    grad_output_len: Option<usize>,
    reduction: Reduction,
}

fn cross_entropy_case() -> impl Strategy<Value = CrossEntropyCase> {
    (0usize..6, 0usize..6).prop_flat_map(|(rows, cols)| {
        let len = rows * cols;
        (
            Just(rows),
            Just(cols),
            prop_oneof![Just(len), 0usize..40],
            prop::collection::vec(-110i64..10, 0..8),
            prop::option::of(prop::collection::vec(
                prop_oneof![-1.0f32..2.0, Just(f32::NAN), Just(f32::INFINITY), Just(0.0)],
                0..40,
            )),
            prop_oneof![Just(-100i64), -3i64..8, Just(i64::MIN), Just(1i64 << 40)],
            prop_oneof![0.0f32..=1.0, -1.0f32..2.0, Just(f32::NAN)],
            prop::option::of(0usize..8),
            prop::option::of(0usize..8),
            prop_oneof![Just(Reduction::None), Just(Reduction::Mean), Just(Reduction::Sum)],
        )
            .prop_map(
                |(
                    rows,
                    cols,
                    logits_len,
                    targets,
                    probabilities,
                    ignore_index,
                    smoothing,
                    weight_len,
                    grad_output_len,
                    reduction,
                )| {
                    CrossEntropyCase {
                        rows,
                        cols,
                        logits_len,
                        targets,
                        probabilities,
                        ignore_index,
                        smoothing,
                        weight_len,
                        grad_output_len,
                        reduction,
                    }
                },
            )
    })
}

/// Whether the case is valid, decided independently of the crate's checks.
fn valid(case: &CrossEntropyCase) -> bool {
    let shape_ok = case.logits_len == case.rows * case.cols;
    let options_ok = (0.0..=1.0).contains(&case.smoothing);
    let weight_ok = case.weight_len.is_none_or(|n| n == case.cols);
    let upstream_ok =
        case.grad_output_len.is_none_or(|n| n == case.rows && case.reduction == Reduction::None);
    let targets_ok = match &case.probabilities {
        Some(p) => p.len() == case.rows * case.cols && p.iter().all(|v| v.is_finite() && *v >= 0.0),
        None => {
            case.targets.len() == case.rows
                && case.targets.iter().all(|&t| t == case.ignore_index || (0..case.cols as i64).contains(&t))
        }
    };
    shape_ok && options_ok && weight_ok && upstream_ok && targets_ok
}

#[test]
fn cross_entropy_input_checks_answer_every_input_correctly() {
    let started = std::time::Instant::now();
    runner()
        .run(&cross_entropy_case(), |case| {
            let logits = vec![0.5f32; case.logits_len];
            let weight = case.weight_len.map(|n| vec![1.0f32; n]);
            let upstream = case.grad_output_len.map(|n| vec![1.0f32; n]);
            let targets = match &case.probabilities {
                Some(p) => Targets::Probabilities(p),
                None => Targets::I64(&case.targets),
            };
            let mut input = CrossEntropyInput::new(&logits, Shape::new(case.rows, case.cols), targets);
            input.weight = weight.as_deref();
            input.grad_output = upstream.as_deref();
            let op = CrossEntropy::new()
                .reduction(case.reduction)
                .ignore_index(case.ignore_index)
                .label_smoothing(case.smoothing);
            let checked = op.check_input(&input);
            prop_assert_eq!(checked.is_ok(), valid(&case), "{:?}: {:?}", case, checked);
            // The reference takes the same inputs and must agree, and compute where valid.
            let computed = reference::cross_entropy(&op, &input);
            prop_assert_eq!(computed.is_ok(), checked.is_ok());
            if let Err(error) = checked {
                // Every message names what is wrong.
                prop_assert!(!error.to_string().is_empty());
            }
            Ok(())
        })
        .unwrap();
    eprintln!("{} cross-entropy input cases in {:.2?}", cases(), started.elapsed());
}
