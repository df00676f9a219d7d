//! One context shared by 8 threads, each running a few hundred mixed ops on its own data,
//! every result checked against the reference; the pipeline cache starts empty, so the
//! threads race to fill it. And the same input gives the same bits in every thread.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use std::sync::OnceLock;

use common::rng;
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{SeededRng, compare};
use wgpu_softmax::{
    Context, CrossEntropy, CrossEntropyInput, Gradient, Reduction, Shape, Softmax, SoftmaxBackward, Strategy,
    Targets, reference,
};

const THREADS: u64 = 8;
const OPS_PER_THREAD: usize = 200;

/// A context of its own, so that its pipeline cache starts empty in this binary.
fn fresh() -> &'static Context {
    static FRESH: OnceLock<Context> = OnceLock::new();
    FRESH.get_or_init(|| {
        common::ctx();
        Context::new().unwrap()
    })
}

fn any_strategy(ctx: &Context, rng: &mut SeededRng) -> Strategy {
    let available: Vec<Strategy> =
        Strategy::ALL.into_iter().filter(|&s| s != Strategy::SubgroupPerRow || ctx.has_subgroups()).collect();
    available[rng.below(available.len() as u64) as usize]
}

/// One random op on random data, checked against the reference. Returns its name.
fn one_mixed_op(ctx: &Context, rng: &mut SeededRng) -> &'static str {
    let rows = 1 + rng.below(40) as usize;
    let cols = 1 + rng.below(300) as usize;
    let shape = Shape::new(rows, cols);
    let x = rng.logits(rows * cols, 6.0);
    let strategy = any_strategy(ctx, rng);
    match rng.below(4) {
        0 | 1 => {
            let op = if rng.below(2) == 0 { Softmax::new() } else { Softmax::log() }.strategy(strategy);
            let got = op.run(ctx, &x, shape).unwrap();
            let (want, tolerance) = common::expected(op, &x, shape);
            let c = compare(&got, &want, tolerance);
            assert!(c.passed(), "{op:?} {shape}: {c}");
            "softmax"
        }
        2 => {
            let targets: Vec<i64> =
                (0..rows).map(|_| i64::try_from(rng.below(cols as u64)).unwrap()).collect();
            let reduction = [Reduction::None, Reduction::Mean, Reduction::Sum][rng.below(3) as usize];
            let op = CrossEntropy::new()
                .reduction(reduction)
                .label_smoothing(0.05)
                .argmax(true)
                .strategy(strategy);
            let input = CrossEntropyInput::new(&x, shape, Targets::I64(&targets));
            let got = op.run(ctx, &input).unwrap();
            let want = reference::cross_entropy(&op, &input).unwrap();
            let c = compare(&got.loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
            assert!(c.passed(), "{op:?} {shape}: loss {c}");
            let c = compare(
                got.grad.as_ref().unwrap(),
                want.grad.as_ref().unwrap(),
                Tolerance::CROSS_ENTROPY_GRAD,
            );
            assert!(c.passed(), "{op:?} {shape}: grad {c}");
            assert_eq!(got.correct, want.correct);
            "cross_entropy"
        }
        _ => {
            #[allow(clippy::cast_possible_truncation)]
            let y: Vec<f32> = reference::softmax(&x, shape).unwrap().iter().map(|&v| v as f32).collect();
            let dy = rng.logits(rows * cols, 1.0);
            let got = SoftmaxBackward::new().strategy(strategy).run(ctx, &y, &dy, shape).unwrap();
            let c = compare(&got, &reference::softmax_backward(&y, &dy, shape).unwrap(), Tolerance::BACKWARD);
            assert!(c.passed(), "backward {shape}: {c}");
            "softmax_backward"
        }
    }
}

#[test]
fn eight_threads_share_one_context() {
    let ctx = fresh();
    let counts: Vec<[usize; 3]> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    let mut rng = rng(0xC0_0000 + t);
                    let mut counts = [0usize; 3];
                    for _ in 0..OPS_PER_THREAD {
                        match one_mixed_op(ctx, &mut rng) {
                            "softmax" => counts[0] += 1,
                            "cross_entropy" => counts[1] += 1,
                            _ => counts[2] += 1,
                        }
                    }
                    counts
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let total: usize = counts.iter().flatten().sum();
    assert_eq!(total, THREADS as usize * OPS_PER_THREAD);
    eprintln!("{THREADS} threads ran {total} ops (softmax, cross-entropy, backward per thread: {counts:?})");
}

#[test]
fn the_same_input_gives_the_same_bits_in_every_thread() {
    let ctx = common::ctx();
    let shape = Shape::new(777, 129);
    let x = rng(0xC0_1000).logits(777 * 129, 8.0);
    let targets: Vec<i64> = (0..777).map(|i| i % 129).collect();
    let input = CrossEntropyInput::new(&x, shape, Targets::I64(&targets));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let run = || {
        let p = Softmax::new().run(ctx, &x, shape).unwrap();
        let ce =
            CrossEntropy::new().label_smoothing(0.1).gradient(Gradient::Separate).run(ctx, &input).unwrap();
        (bits(&p), bits(&ce.loss), bits(ce.grad.as_ref().unwrap()))
    };
    let first = run();
    let again: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> =
            (0..THREADS).map(|_| scope.spawn(|| (0..3).map(|_| run()).collect::<Vec<_>>())).collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(again.len(), 3 * THREADS as usize);
    for other in &again {
        assert!(other == &first, "a run differs in its bits");
    }
}
