//! Autotuning: a context that times the strategies once per (op family, shape bucket),
//! keeps the fastest, and still computes the right results.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{OpFamily, TuneKey, compare, tuned_strategies};
use wgpu_softmax::{
    CrossEntropy, CrossEntropyInput, Shape, Softmax, SoftmaxBackward, Strategy, Targets, reference,
};

#[test]
fn tuned_choices_are_cached_per_bucket_and_give_right_results() {
    let plain = common::ctx();
    let ctx = plain.with_autotune(true);
    assert!(ctx.autotune() && !plain.autotune());
    let mut rng = common::rng(0x7A_0001);
    for (rows, cols) in [(300, 10), (40, 1000)] {
        let shape = Shape::new(rows, cols);
        let x = rng.logits(rows * cols, 6.0);
        let got = Softmax::new().run(&ctx, &x, shape).unwrap();
        let c = compare(&got, &reference::softmax(&x, shape).unwrap(), Tolerance::SOFTMAX);
        assert!(c.passed(), "{shape}: {c}");
        let key = TuneKey::new(OpFamily::Softmax, shape).with_cached_rows(ctx.cached_rows());
        let chosen = tuned_strategies(&ctx).into_iter().find(|&(k, _)| k == key).map(|(_, s)| s);
        let chosen = chosen.unwrap_or_else(|| panic!("{shape}: no tuned choice for {key:?}"));
        // The plan follows the tuned choice, and a second run adds no new choice.
        assert_eq!(Softmax::new().plan(&ctx, shape).unwrap().strategy(), chosen);
        let before = tuned_strategies(&ctx).len();
        Softmax::log().run(&ctx, &x, shape).unwrap();
        assert_eq!(tuned_strategies(&ctx).len(), before, "log-softmax shares the softmax bucket");
        assert!(chosen != Strategy::SubgroupPerRow || ctx.has_subgroups());
        eprintln!(
            "{shape}: tuned {chosen:?}, heuristic {:?}",
            Softmax::new().plan(plain, shape).unwrap().strategy()
        );

        let targets: Vec<i64> = (0..rows as i64).map(|r| r % cols as i64).collect();
        let input = CrossEntropyInput::new(&x, shape, Targets::I64(&targets));
        let got = CrossEntropy::new().run(&ctx, &input).unwrap();
        let want = reference::cross_entropy(&CrossEntropy::new(), &input).unwrap();
        let c =
            compare(got.grad.as_ref().unwrap(), want.grad.as_ref().unwrap(), Tolerance::CROSS_ENTROPY_GRAD);
        assert!(c.passed(), "{shape}: {c}");
        // Keyed by everything that changes the kernel: the family and shape bucket, and
        // the cross-entropy's options (here: separate gradient, mean, class targets).
        let bucket = TuneKey::new(OpFamily::CrossEntropy, shape);
        assert!(
            tuned_strategies(&ctx).iter().any(|(k, _)| k.family == bucket.family
                && k.cols_bucket == bucket.cols_bucket
                && k.rows_bucket == bucket.rows_bucket
                && k.variant != 0),
            "{:?}",
            tuned_strategies(&ctx)
        );

        let y: Vec<f32> = reference::softmax(&x, shape).unwrap().iter().map(|&v| v as f32).collect();
        let dy = rng.logits(rows * cols, 1.0);
        let got = SoftmaxBackward::new().run(&ctx, &y, &dy, shape).unwrap();
        let c = compare(&got, &reference::softmax_backward(&y, &dy, shape).unwrap(), Tolerance::BACKWARD);
        assert!(c.passed(), "{shape}: {c}");
    }
    // Same buckets again: nothing new is tuned.
    let count = tuned_strategies(&ctx).len();
    Softmax::new().run(&ctx, &rng.logits(290 * 9, 1.0), Shape::new(290, 9)).unwrap();
    assert_eq!(tuned_strategies(&ctx).len(), count);
    // The other register setting is another kernel: tuned on its own, under its own key.
    let other = ctx.with_cached_rows(!ctx.cached_rows());
    let shape = Shape::new(290, 9);
    Softmax::new().run(&other, &rng.logits(shape.len().unwrap(), 1.0), shape).unwrap();
    assert_eq!(tuned_strategies(&ctx).len(), count + 1);
    let key = TuneKey::new(OpFamily::Softmax, shape).with_cached_rows(other.cached_rows());
    assert!(tuned_strategies(&ctx).iter().any(|&(k, _)| k == key), "{:?}", tuned_strategies(&ctx));
}
