//! The cross-entropy's z-loss, logit softcap, logsumexp output and int64 class targets on
//! the GPU: every storage type, every strategy the adapter has, both cached settings,
//! the GPU-resident API on poisoned outputs and the host API, against the f64 reference.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use common::{ctx, poisoned, rng};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{compare, round_to, widen};
use wgpu_softmax::{
    BufferRegion, Context, CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, CrossEntropyStatus, DType,
    Element, Error, Gradient, Reduction, STATUS_WORDS, Shape, Strategy, TargetBuffer, Targets, TensorRef,
    bf16, f16, reference,
};

fn strategies() -> Vec<Strategy> {
    common::strategies_with_split(ctx())
}

/// One row of the options' test: the shape (its inputs drawn from `seed`), the kind of
/// targets, the strategy, the cached-rows path and the options.
struct Row<'a> {
    seed: u64,
    shape: (usize, usize),
    probabilities: bool,
    path: &'a Context,
    strategy: Strategy,
    z_and_cap: (f32, Option<f32>),
    reduction: Reduction,
    weighted: bool,
}

/// `row` in storage type `T` through the GPU-resident API against the reference: loss,
/// gradient, logsumexp and the z-loss part.
fn check_options<T: Element>(row: &Row<'_>) {
    let Row {
        seed,
        shape: (rows, cols),
        probabilities,
        path,
        strategy,
        z_and_cap: (z, cap),
        reduction,
        weighted,
    } = *row;
    let mut rng = rng(seed);
    let shape = Shape::new(rows, cols);
    let logits: Vec<T> = round_to(&rng.logits(rows * cols, 6.0));
    let classes: Vec<i64> =
        (0..rows).map(|r| if r % 5 == 2 { -100 } else { rng.below(cols as u64) as i64 }).collect();
    let weight: Vec<f32> = (0..cols).map(|_| rng.uniform(0.2, 2.0)).collect();
    let probability_rows: Vec<T> = round_to(&common::probability_rows(&mut rng, rows, cols));
    let targets =
        if probabilities { Targets::Probabilities(&probability_rows) } else { Targets::I64(&classes) };
    let mut op = CrossEntropy::new().reduction(reduction).z_loss(z).lse(true).strategy(strategy);
    if let Some(t) = cap {
        op = op.softcap(t);
    }
    let mut input = CrossEntropyInput::new(&logits, shape, targets);
    if weighted {
        input = input.weight(&weight);
    }
    let want = reference::cross_entropy(&op, &input).unwrap();
    let what = format!(
        "{} {shape} {strategy:?} cached {} {reduction:?} z {z} softcap {cap:?} weighted {weighted} {targets:?}",
        T::DTYPE,
        path.cached_rows()
    );
    let got = common::cross_entropy_poisoned(path, op, &input, true).unwrap();
    let c = compare(&got.loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
    assert!(c.passed(), "{what}: loss {c}");
    let c = compare(
        &widen(&got.grad),
        want.grad.as_ref().unwrap(),
        Tolerance::CROSS_ENTROPY_GRAD.for_dtype(T::DTYPE),
    );
    assert!(c.passed(), "{what}: grad {c}");
    let c = compare(got.lse.as_ref().unwrap(), want.lse.as_ref().unwrap(), Tolerance::CROSS_ENTROPY_LOSS);
    assert!(c.passed(), "{what}: lse {c}");
    // The z-loss part on its own: zeros without a z-loss.
    let no_z_loss = vec![0.0; got.z_loss.len()];
    let c = compare(&got.z_loss, want.z_loss.as_ref().unwrap_or(&no_z_loss), Tolerance::CROSS_ENTROPY_LOSS);
    assert!(c.passed(), "{what}: z-loss part {c}");
}

/// The z-loss, the softcap (each alone and together), every reduction, class weights or
/// none, in every storage type, on every strategy and cached-rows path, narrow and wide
/// rows, class and probability targets, on a pairwise covering array: every pair of
/// values of any two of these runs (checked). `WGPU_SOFTMAX_EXHAUSTIVE=1` runs the full
/// product.
#[test]
fn options_match_the_reference_in_every_storage_type() {
    let strategies = strategies();
    let paths = common::both_paths(ctx());
    let shapes = [(97, 7), (33, 300)];
    let z_and_cap = [(0.1, None), (0.0, Some(3.0)), (0.05, Some(5.0))];
    let reductions = [Reduction::None, Reduction::Mean, Reduction::Sum];
    let mut pairs = common::Pairs::new(
        0x0e_0004,
        [
            ("dtype", DType::ALL.len()),
            ("shape", shapes.len()),
            ("probabilities", 2),
            ("strategy", strategies.len()),
            ("path", paths.len()),
            ("z-loss and softcap", z_and_cap.len()),
            ("reduction", reductions.len()),
            ("weighted", 2),
        ],
    );
    for row in pairs.rows() {
        let [d, shape, probabilities, s, p, zc, r, weighted] = row;
        let args = Row {
            seed: 0x0e_0001 + (16 * d + shape) as u64,
            shape: shapes[shape],
            probabilities: probabilities == 1,
            path: &paths[p],
            strategy: strategies[s],
            z_and_cap: z_and_cap[zc],
            reduction: reductions[r],
            weighted: weighted == 1,
        };
        match DType::ALL[d] {
            DType::F32 => check_options::<f32>(&args),
            DType::F16 => check_options::<f16>(&args),
            _ => check_options::<bf16>(&args),
        }
        pairs.ran(row);
    }
    pairs.assert_pairs_covered();
}

/// The host API returns the logsumexp and applies the options, in every element type;
/// the mean with class weights and a z-loss divides the two parts by different counts.
#[test]
fn the_host_api_applies_the_options_and_returns_the_lse() {
    fn check<T: Element>(seed: u64) {
        let mut rng = rng(seed);
        let (rows, cols) = (40, 23);
        let shape = Shape::new(rows, cols);
        let logits: Vec<T> = round_to(&rng.logits(rows * cols, 8.0));
        let classes: Vec<i64> =
            (0..rows).map(|r| if r % 4 == 0 { -100 } else { rng.below(cols as u64) as i64 }).collect();
        let weight: Vec<f32> = (0..cols).map(|_| rng.uniform(0.1, 3.0)).collect();
        let input = CrossEntropyInput::new(&logits, shape, Targets::I64(&classes)).weight(&weight);
        for gradient in [Gradient::Separate, Gradient::InPlace] {
            let op = CrossEntropy::new()
                .z_loss(0.2)
                .softcap(4.0)
                .lse(true)
                .label_smoothing(0.1)
                .gradient(gradient);
            let want = reference::cross_entropy(&op, &input).unwrap();
            let got = op.run(ctx(), &input).unwrap();
            let what = format!("{} {gradient:?}", T::DTYPE);
            let c = compare(&got.loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
            assert!(c.passed(), "{what}: loss {c}");
            let c = compare(
                &widen(&got.grad.unwrap()),
                want.grad.as_ref().unwrap(),
                Tolerance::CROSS_ENTROPY_GRAD.for_dtype(T::DTYPE),
            );
            assert!(c.passed(), "{what}: grad {c}");
            let c = compare(&got.lse.unwrap(), want.lse.as_ref().unwrap(), Tolerance::CROSS_ENTROPY_LOSS);
            assert!(c.passed(), "{what}: lse {c}");
            let c =
                compare(&got.z_loss.unwrap(), want.z_loss.as_ref().unwrap(), Tolerance::CROSS_ENTROPY_LOSS);
            assert!(c.passed(), "{what}: z-loss part {c}");
        }
    }
    check::<f32>(0x0e_0011);
    check::<f16>(0x0e_0012);
    check::<bf16>(0x0e_0013);
}

/// The z-loss's mean, from its definition and independently of the reference's code:
/// the loss with z minus the loss without is z times the mean of lse^2 over the rows not
/// ignored, whatever the class weights.
#[test]
fn the_z_loss_mean_divides_by_the_rows_not_ignored() {
    let logits = [0.5_f32, -1.0, 2.0, 0.0, 1.5, -0.5, 3.0, 1.0, 0.25, -2.0, 0.75, 1.25];
    let shape = Shape::new(3, 4);
    let classes = [2_i64, -100, 0];
    let weight = [3.0_f32, 0.5, 2.0, 1.0];
    let input = CrossEntropyInput::new(&logits, shape, Targets::I64(&classes)).weight(&weight);
    let lse = |row: usize| -> f64 {
        logits[row * 4..row * 4 + 4].iter().map(|&x| f64::from(x).exp()).sum::<f64>().ln()
    };
    let z = 0.3;
    let expected = f64::from(z) * (lse(0).powi(2) + lse(2).powi(2)) / 2.0;
    let plain = CrossEntropy::new().run(ctx(), &input).unwrap().loss[0];
    let with_z = CrossEntropy::new().z_loss(z).run(ctx(), &input).unwrap().loss[0];
    let got = f64::from(with_z) - f64::from(plain);
    assert!(
        (got - expected).abs() <= 1e-5 * expected.abs().max(1.0),
        "z-loss part {got}, expected {expected}"
    );
    // Returned on its own too, with only the asked-for outputs: no logsumexp.
    let out = CrossEntropy::new().z_loss(z).run(ctx(), &input).unwrap();
    let part = f64::from(out.z_loss.unwrap()[0]);
    assert!(
        (part - expected).abs() <= 1e-5 * expected.abs().max(1.0),
        "z-loss on its own {part}, expected {expected}"
    );
    assert!(out.lse.is_none());
}

/// int64 targets on the GPU: values outside i32 (whose low word alone would look valid)
/// are bad targets, counted in the status words with a NaN loss; -100 as i64 is ignored.
#[test]
fn int64_targets_outside_i32_are_bad_targets_on_the_gpu() {
    let ctx = ctx();
    let shape = Shape::new(5, 4);
    let logits: Vec<f32> = round_to(&rng(0x0e_0021).logits(20, 3.0));
    let targets = [1_i64, (1 << 32) + 2, -100, -1, 3];
    let logits_buffer = ctx.upload(&logits).unwrap();
    let targets_buffer = ctx.upload_elements(&common::i64_words(&targets)).unwrap();
    let loss = poisoned::<f32>(ctx, 5);
    let status = ctx.storage_buffer(STATUS_WORDS).unwrap();
    let buffers = CrossEntropyBuffers::new(
        TensorRef::new(&logits_buffer, DType::F32),
        TargetBuffer::I64(BufferRegion::new(&targets_buffer)),
        &loss,
    )
    .with_status(&status);
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    CrossEntropy::new()
        .reduction(Reduction::None)
        .gradient(Gradient::Skip)
        .encode(ctx, &mut encoder, &buffers, shape)
        .unwrap();
    ctx.submit_and_wait(encoder).unwrap();
    let losses = ctx.download(&loss, 5).unwrap();
    let status = CrossEntropyStatus::read(ctx, &status).unwrap();
    assert_eq!(status.bad_target_rows, 2, "rows 1 and 3: {status:?}");
    assert_eq!(status.first_bad_target_row, Some(1));
    assert!(matches!(status.check(), Err(Error::TargetsOutOfRangeOnGpu { rows: 2, first_row: 1 })));
    assert!(losses[1].is_nan() && losses[3].is_nan(), "{losses:?}");
    assert_eq!(losses[2], 0.0, "the ignored row: {losses:?}");
    let want = reference::cross_entropy(
        &CrossEntropy::new().reduction(Reduction::None),
        &CrossEntropyInput::new(&logits, shape, Targets::I64(&[1, 0, -100, 0, 3])),
    )
    .unwrap();
    for row in [0, 4] {
        let c = compare(&losses[row..=row], &want.loss[row..=row], Tolerance::CROSS_ENTROPY_LOSS);
        assert!(c.passed(), "row {row}: {c}");
    }
}

/// The logsumexp of rows with special values, and the softcap's effect on them: a
/// softcapped -inf is -T, finite.
#[test]
fn the_lse_of_special_rows() {
    let inf = f32::INFINITY;
    let logits = [1.0, -inf, 2.0, 0.5, -inf, -inf, -inf, -inf, 0.5, f32::NAN, 1.0, 2.0];
    let shape = Shape::new(3, 4);
    let input = CrossEntropyInput::new(&logits, shape, Targets::I64(&[0, -100, 2]));
    let op = CrossEntropy::new().reduction(Reduction::None).lse(true);
    let lse = op.run(ctx(), &input).unwrap().lse.unwrap();
    let first = (1.0_f64.exp() + 2.0_f64.exp() + 0.5_f64.exp()).ln();
    assert!((f64::from(lse[0]) - first).abs() < 1e-5, "{lse:?}");
    assert_eq!(lse[1], f32::NEG_INFINITY, "a row of only -inf: {lse:?}");
    assert!(lse[2].is_nan(), "a row with NaN: {lse:?}");
    let want = reference::cross_entropy(&op, &input).unwrap().lse.unwrap();
    assert_eq!(want[1], f64::NEG_INFINITY);
    assert!(want[2].is_nan());

    let capped = op.softcap(2.0).run(ctx(), &input).unwrap().lse.unwrap();
    // Every -inf becomes -2: the masked row's logsumexp is -2 + ln(4).
    let masked = -2.0 + 4.0_f64.ln();
    assert!((f64::from(capped[1]) - masked).abs() < 1e-5, "{capped:?}");
}

/// Options out of range are typed errors before any GPU work.
#[test]
fn bad_softcap_and_z_loss_are_typed_errors() {
    let logits = [0.5_f32, 1.0, -1.0, 2.0];
    let input = CrossEntropyInput::new(&logits, Shape::new(2, 2), Targets::I64(&[0, 1]));
    for t in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let e = CrossEntropy::new().softcap(t).run(ctx(), &input).unwrap_err();
        assert!(matches!(e, Error::InvalidOption { option: "softcap", .. }), "softcap {t}: {e}");
    }
    for z in [-0.1, f32::NAN, f32::INFINITY] {
        let e = CrossEntropy::new().z_loss(z).run(ctx(), &input).unwrap_err();
        assert!(matches!(e, Error::InvalidOption { option: "z_loss", .. }), "z-loss {z}: {e}");
    }
}
