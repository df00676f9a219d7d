//! The fused linear cross-entropy against the f64 reference: every option, every storage
//! type, sizes that are not multiples of the matmul's tile, several windows of rows; the
//! GPU-resident API on poisoned outputs and the host API; its errors; and the bound on
//! what it allocates.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use common::{assert_written, ctx, poisoned, rng};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{compare, round_to, widen};
use wgpu_softmax::{
    BufferRegion, Context, CrossEntropyStatus, DType, Element, Error, LINEAR_BLOCK_CLASSES,
    LINEAR_SHARE_BYTES, LinearCrossEntropy, LinearCrossEntropyBuffers, LinearCrossEntropyInput,
    LinearCrossEntropyOutput, LinearGradients, LinearShape, Reduction, STATUS_WORDS, TargetBuffer, Targets,
    TensorRef, bf16, f16, reference,
};

const LOSS: Tolerance = Tolerance::LINEAR_CROSS_ENTROPY_LOSS;
const GRAD: Tolerance = Tolerance::LINEAR_CROSS_ENTROPY_GRAD;

/// One case's inputs.
struct Case<T> {
    shape: LinearShape,
    hidden: Vec<T>,
    classifier: Vec<T>,
    bias: Vec<T>,
    targets: Vec<i64>,
    weight: Vec<f32>,
    upstream: Vec<f32>,
}

fn case<T: Element>(seed: u64, shape: LinearShape) -> Case<T> {
    let mut rng = rng(seed);
    let LinearShape { rows, hidden, classes } = shape;
    Case {
        shape,
        hidden: round_to(&rng.logits(rows * hidden, 1.5)),
        classifier: round_to(&rng.logits(classes * hidden, 1.5)),
        bias: round_to(&rng.logits(classes, 0.5)),
        // Every seventh row ignored.
        targets: (0..rows)
            .map(|r| if r % 7 == 3 { -100 } else { rng.below(classes as u64) as i64 })
            .collect(),
        weight: (0..classes).map(|_| rng.uniform(0.2, 2.0)).collect(),
        upstream: (0..rows).map(|_| rng.uniform(-1.0, 2.0)).collect(),
    }
}

/// The options: (reduction, label smoothing, z-loss, softcap, class weights, bias).
fn option_sets() -> Vec<(Reduction, f32, f32, Option<f32>, bool, bool)> {
    vec![
        (Reduction::Mean, 0.0, 0.0, None, false, false),
        (Reduction::Mean, 0.1, 0.05, Some(4.0), true, true),
        (Reduction::Sum, 0.2, 0.0, None, true, true),
        (Reduction::None, 0.0, 0.1, Some(3.0), false, true),
        (Reduction::None, 0.05, 0.0, None, true, false),
        (Reduction::Sum, 0.0, 0.02, Some(6.0), false, false),
    ]
}

fn op_of(
    (reduction, smoothing, z, cap, ..): (Reduction, f32, f32, Option<f32>, bool, bool),
) -> LinearCrossEntropy {
    let op = LinearCrossEntropy::new().reduction(reduction).label_smoothing(smoothing).z_loss(z).lse(true);
    match cap {
        Some(t) => op.softcap(t),
        None => op,
    }
}

/// The reference of `case` under `op`.
fn expected<T: Element>(
    op: &LinearCrossEntropy,
    c: &Case<T>,
    weighted: bool,
    biased: bool,
) -> LinearCrossEntropyOutput<f64> {
    let mut input = LinearCrossEntropyInput::new(&c.hidden, &c.classifier, c.shape, Targets::I64(&c.targets));
    if biased {
        input = input.bias(&c.bias);
    }
    if weighted {
        input = input.weight(&c.weight);
    }
    if op.get_cross_entropy().get_reduction() == Reduction::None {
        input = input.grad_output(&c.upstream);
    }
    reference::linear_cross_entropy(op, &input).unwrap()
}

fn assert_close<T: Element>(what: &str, actual: &[T], expected: &[f64], tolerance: Tolerance) {
    let comparison = compare(&widen(actual), expected, tolerance.for_dtype(T::DTYPE));
    assert!(comparison.passed(), "{what} ({}): {comparison}", T::DTYPE);
}

/// Runs `op` on `case` through the GPU-resident API, every output poisoned first, and
/// checks each against the reference: with every gradient (the windows of stored
/// logits), or with none (the forward that never stores a block of logits).
fn check_resident<T: Element>(
    ctx: &Context,
    op: LinearCrossEntropy,
    c: &Case<T>,
    (weighted, biased): (bool, bool),
    gradients: bool,
    normwise: bool,
) {
    let LinearShape { rows, hidden: d, classes: v } = c.shape;
    let reduction = op.get_cross_entropy().get_reduction();
    let loss_len = if reduction == Reduction::None { rows } else { 1 };
    let hidden = ctx.upload_elements(&c.hidden).unwrap();
    let classifier = ctx.upload_elements(&c.classifier).unwrap();
    let bias = ctx.upload_elements(&c.bias).unwrap();
    let targets = ctx.upload_elements(&common::i64_words(&c.targets)).unwrap();
    let weight = ctx.upload_elements(&c.weight).unwrap();
    let upstream = ctx.upload_elements(&c.upstream).unwrap();
    let loss = poisoned::<f32>(ctx, loss_len);
    let lse = poisoned::<f32>(ctx, rows);
    let grad_hidden = poisoned::<T>(ctx, rows * d);
    let grad_classifier = poisoned::<T>(ctx, v * d);
    let grad_bias = poisoned::<T>(ctx, v);
    let status = ctx.upload_elements(&[7u32; STATUS_WORDS]).unwrap();
    let tensor = |b| TensorRef::new(b, T::DTYPE);
    let mut buffers = LinearCrossEntropyBuffers::new(
        tensor(&hidden),
        tensor(&classifier),
        TargetBuffer::I64((&targets).into()),
        &loss,
    )
    .with_lse(&lse)
    .with_status(&status);
    if gradients {
        buffers =
            buffers.with_grad_hidden(tensor(&grad_hidden)).with_grad_classifier(tensor(&grad_classifier));
    }
    if biased {
        buffers = buffers.with_bias(tensor(&bias));
        if gradients {
            buffers = buffers.with_grad_bias(tensor(&grad_bias));
        }
    }
    if weighted {
        buffers = buffers.with_weight(&weight);
    }
    if reduction == Reduction::None {
        buffers = buffers.with_grad_output(&upstream);
    }
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let plan = common::in_one_pass(&format!("{op:?} on {:?}", c.shape), || {
        op.encode(ctx, &mut encoder, &buffers, c.shape)
    })
    .unwrap();
    ctx.submit_and_wait(encoder).unwrap();

    let want = expected(&op, c, weighted, biased);
    let what = format!("{:?} {op:?} weighted {weighted} biased {biased} gradients {gradients}", c.shape);
    assert_eq!(plan.stores_logits, gradients, "{what}: {plan:?}");
    let read = |b: &wgpu::Buffer, len| ctx.download_elements::<T>(b, len).unwrap();
    assert_close(
        &format!("loss, {what}"),
        &assert_written("loss", ctx.download(&loss, loss_len).unwrap()),
        &want.loss,
        LOSS,
    );
    assert_close(
        &format!("lse, {what}"),
        &assert_written("lse", ctx.download(&lse, rows).unwrap()),
        &want.lse.unwrap(),
        LOSS,
    );
    if gradients {
        let grad = |expected: &[f64]| {
            if normwise { GRAD.normwise(Tolerance::LINEAR_GRAD_NORMWISE, expected) } else { GRAD }
        };
        let (want_dh, want_dw) = (want.grad_hidden.unwrap(), want.grad_classifier.unwrap());
        let dh = assert_written("dH", read(&grad_hidden, rows * d));
        assert_close(&format!("dH, {what}"), &dh, &want_dh, grad(&want_dh));
        let dw = assert_written("dW", read(&grad_classifier, v * d));
        assert_close(&format!("dW, {what}"), &dw, &want_dw, grad(&want_dw));
        if biased {
            let want_db = want.grad_bias.unwrap();
            let db = assert_written("db", read(&grad_bias, v));
            assert_close(&format!("db, {what}"), &db, &want_db, grad(&want_db));
        }
    }
    let words = ctx.download_u32(&status, STATUS_WORDS).unwrap();
    assert_eq!(CrossEntropyStatus::from_words(&words).bad_target_rows, 0, "{what}: status cleared and clean");
}

fn check_every_option<T: Element>(seed: u64) {
    let ctx = ctx();
    // Odd sizes everywhere (no dimension a multiple of the 64-wide tile), one row alone,
    // 300 rows through windows of 128 (a workspace of 128 rows), and sizes whose stored
    // rows are whole 128-bit vectors in every storage type (every product loads vectors)
    // but no multiple of the tile, through windows of 128.
    let shapes = [
        (LinearShape::new(37, 19, 101), None),
        (LinearShape::new(1, 5, 70), None),
        (LinearShape::new(300, 8, 67), Some(128 * 67 * 4)),
        (LinearShape::new(300, 24, 100), Some(128 * 100 * 4)),
    ];
    let mut next = 0;
    for (k, (shape, workspace)) in shapes.into_iter().enumerate() {
        let c = case::<T>(seed + k as u64, shape);
        for _ in 0..3 {
            let options = option_sets()[next % option_sets().len()];
            next += 1;
            let mut op = op_of(options);
            if let Some(bytes) = workspace {
                op = op.workspace_bytes(bytes);
            }
            check_resident(ctx, op, &c, (options.4, options.5), true, false);
        }
    }
    // Without gradients, every option on each shape, the windows of 128 rows now of
    // their shares; and 130 rows of 200 classes, three blocks of rows and four of
    // classes, the last of each partial, in one window.
    let shares = |classes: usize| 128 * classes.div_ceil(LINEAR_BLOCK_CLASSES) as u64 * LINEAR_SHARE_BYTES;
    let forward_shapes = [
        (LinearShape::new(37, 19, 101), None),
        (LinearShape::new(1, 5, 70), None),
        (LinearShape::new(300, 8, 67), Some(shares(67))),
        (LinearShape::new(300, 24, 100), Some(shares(100))),
        (LinearShape::new(130, 33, 200), None),
    ];
    for (k, (shape, workspace)) in forward_shapes.into_iter().enumerate() {
        let c = case::<T>(seed + 100 + k as u64, shape);
        for options in option_sets() {
            let mut op = op_of(options).gradients(LinearGradients::NONE);
            if let Some(bytes) = workspace {
                op = op.workspace_bytes(bytes);
            }
            check_resident(ctx, op, &c, (options.4, options.5), false, false);
        }
    }
}

#[test]
fn every_option_matches_the_reference_in_f32() {
    check_every_option::<f32>(1400);
}

#[test]
fn every_option_matches_the_reference_in_f16() {
    check_every_option::<f16>(1410);
}

#[test]
fn every_option_matches_the_reference_in_bf16() {
    check_every_option::<bf16>(1420);
}

/// The host API: each subset of gradients, against the reference.
#[test]
fn host_api_returns_the_gradients_asked_for() {
    let ctx = ctx();
    let c = case::<f32>(1430, LinearShape::new(45, 13, 77));
    for gradients in [
        LinearGradients::ALL,
        LinearGradients::NONE,
        LinearGradients { hidden: true, classifier: false, bias: false },
        LinearGradients { hidden: false, classifier: true, bias: true },
    ] {
        let op = LinearCrossEntropy::new().label_smoothing(0.1).gradients(gradients).lse(true);
        let input = LinearCrossEntropyInput::new(&c.hidden, &c.classifier, c.shape, Targets::I64(&c.targets))
            .bias(&c.bias);
        let got = op.run(ctx, &input).unwrap();
        let want = reference::linear_cross_entropy(&op, &input).unwrap();
        assert_close("loss", &got.loss, &want.loss, LOSS);
        assert_close("lse", &got.lse.unwrap(), &want.lse.unwrap(), LOSS);
        for (what, g, w) in [
            ("dH", got.grad_hidden, want.grad_hidden),
            ("dW", got.grad_classifier, want.grad_classifier),
            ("db", got.grad_bias, want.grad_bias),
        ] {
            assert_eq!(g.is_some(), w.is_some(), "{what} with {gradients:?}");
            if let (Some(g), Some(w)) = (g, w) {
                assert_close(what, &g, &w, GRAD);
            }
        }
    }
}

/// Bad input: typed errors, before any GPU work.
#[test]
fn bad_input_is_refused_with_a_typed_error() {
    let ctx = ctx();
    let c = case::<f32>(1440, LinearShape::new(4, 3, 5));
    let input = |targets| LinearCrossEntropyInput::new(&c.hidden, &c.classifier, c.shape, targets);
    let op = LinearCrossEntropy::new();
    assert!(matches!(
        op.run(ctx, &input(Targets::I64(&[0, 1, 5, 2]))),
        Err(Error::TargetOutOfRange { row: 2, value: 5, classes: 5, .. })
    ));
    let probabilities = vec![0.2_f32; 20];
    assert!(matches!(
        op.run(ctx, &input(Targets::Probabilities(&probabilities))),
        Err(Error::InvalidOption { option: "targets", .. })
    ));
    let short =
        LinearCrossEntropyInput::new(&c.hidden[1..], &c.classifier, c.shape, Targets::I64(&c.targets));
    assert!(matches!(op.run(ctx, &short), Err(Error::ShapeMismatch { what: "hidden", .. })));
    let many = case::<f32>(1441, LinearShape::new(300, 3, 50));
    let many_input =
        LinearCrossEntropyInput::new(&many.hidden, &many.classifier, many.shape, Targets::I64(&many.targets));
    assert!(matches!(
        op.workspace_bytes(1000).run(ctx, &many_input),
        Err(Error::InvalidOption { option: "workspace_bytes", .. })
    ));
    // A bias gradient without a bias, on the GPU-resident API.
    let hidden = ctx.upload(&c.hidden).unwrap();
    let classifier = ctx.upload(&c.classifier).unwrap();
    let targets = ctx.upload_elements(&[0u32, 1, 2, 3]).unwrap();
    let loss = ctx.storage_buffer(1).unwrap();
    let grad_bias = ctx.storage_buffer(5).unwrap();
    let buffers =
        LinearCrossEntropyBuffers::new(&hidden, &classifier, TargetBuffer::U32((&targets).into()), &loss)
            .with_grad_bias(&grad_bias);
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    assert!(matches!(
        op.encode(ctx, &mut encoder, &buffers, c.shape),
        Err(Error::InvalidOption { option: "grad_bias", .. })
    ));
    // 16-bit gradients of f32 inputs.
    let half_grad = ctx.elements_buffer(DType::BF16, 15).unwrap();
    let buffers =
        LinearCrossEntropyBuffers::new(&hidden, &classifier, TargetBuffer::U32((&targets).into()), &loss)
            .with_grad_classifier(TensorRef::new(&half_grad, DType::BF16));
    assert!(matches!(op.encode(ctx, &mut encoder, &buffers, c.shape), Err(Error::DTypeMismatch { .. })));
    // The loss buffer is an input too.
    let buffers = LinearCrossEntropyBuffers::new(
        &hidden,
        &classifier,
        TargetBuffer::U32(BufferRegion::new(&targets)),
        &hidden,
    );
    assert!(matches!(op.encode(ctx, &mut encoder, &buffers, c.shape), Err(Error::AliasedBuffers)));
}

/// The matmul kernel alone, in every layout of its operands, against the f64 product: on
/// sizes whose stored rows are whole vectors (128-bit loads) and on odd ones (a word at a
/// time), none a multiple of the tile, into a poisoned result, and adding to what it holds;
/// and products of one block over thousands of terms, which are split over their terms
/// (two dispatches: the slices' partial products, then their sum), the last slice short.
#[test]
fn matmul_matches_the_reference_with_vector_and_word_loads() {
    let ctx = ctx();
    let mut rng = rng(1480);
    let shapes = [
        ((68, 36, 20), true, 1),
        ((37, 19, 23), false, 1),
        ((1, 5, 3), false, 1),
        ((8, 12, 2048), true, 2),
        ((6, 10, 3001), false, 2),
    ];
    for ((m, n, k), vectors, dispatches) in shapes {
        for (a_transposed, b_transposed) in [(false, false), (false, true), (true, false), (true, true)] {
            let a = rng.logits(m * k, 1.0);
            let b = rng.logits(k * n, 1.0);
            let before = rng.logits(m * n, 1.0);
            let f64s = |values: &[f32]| values.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
            let want = reference::matmul(&f64s(&a), &f64s(&b), (m, n, k), (a_transposed, b_transposed));
            for accumulate in [false, true] {
                let what = format!(
                    "{m}x{n}x{k}, transposed ({a_transposed}, {b_transposed}), accumulate {accumulate}"
                );
                let (a_buffer, b_buffer) = (ctx.upload(&a).unwrap(), ctx.upload(&b).unwrap());
                let c = if accumulate { ctx.upload(&before).unwrap() } else { poisoned::<f32>(ctx, m * n) };
                let mut encoder = ctx.device().create_command_encoder(&Default::default());
                let recorded = wgpu_softmax::testing::dispatches_recorded();
                let loaded_vectors = wgpu_softmax::testing::record_matmul(
                    ctx,
                    &mut encoder,
                    (BufferRegion::new(&a_buffer), a_transposed),
                    (BufferRegion::new(&b_buffer), b_transposed),
                    BufferRegion::new(&c),
                    (m, n, k),
                    accumulate,
                )
                .unwrap();
                let recorded = wgpu_softmax::testing::dispatches_recorded() - recorded;
                ctx.submit_and_wait(encoder).unwrap();
                assert_eq!(loaded_vectors, vectors, "{what}: vector loads");
                assert_eq!(recorded, dispatches, "{what}: dispatches");
                let got = assert_written("c", ctx.download(&c, m * n).unwrap());
                let want: Vec<f64> = if accumulate {
                    want.iter().zip(&before).map(|(w, &b)| w + f64::from(b)).collect()
                } else {
                    want.clone()
                };
                assert_close(&what, &got, &want, GRAD);
            }
        }
    }
}

/// Where the logits would take 64 MiB, the op's largest buffer of its own is the 4 MiB
/// workspace it was given (128 rows), and the results still match the reference. Without
/// gradients, on a context of its own, the whole batch's shares take 36 bytes per row and
/// block of classes (4.5 MiB with blocks of 128: 0.07 of the logits), in one window under
/// the default bound.
#[test]
fn the_largest_buffer_is_the_workspace_not_the_logits() {
    let shape = LinearShape::new(2048, 16, 8192);
    let logits_bytes = (shape.rows * shape.classes * 4) as u64;
    let c = case::<f32>(1450, shape);
    let input =
        LinearCrossEntropyInput::new(&c.hidden, &c.classifier, shape, Targets::I64(&c.targets)).bias(&c.bias);

    let ctx = Context::new().unwrap();
    let forward = LinearCrossEntropy::new().gradients(LinearGradients::NONE);
    let got = forward.run(&ctx, &input).unwrap();
    let largest = ctx.largest_scratch_bytes();
    let shares = (shape.rows * shape.classes.div_ceil(LINEAR_BLOCK_CLASSES)) as u64 * LINEAR_SHARE_BYTES;
    assert!(largest >= shares && largest <= shares + (1 << 20), "largest scratch {largest}, shares {shares}");
    assert!(largest <= logits_bytes / 7, "largest scratch {largest} of logits {logits_bytes}");
    let want = reference::linear_cross_entropy(&forward, &input).unwrap();
    assert_close("loss without gradients", &got.loss, &want.loss, LOSS);
    drop(ctx);

    let ctx = Context::new().unwrap();
    let op = LinearCrossEntropy::new().workspace_bytes(4 << 20);
    let got = op.run(&ctx, &input).unwrap();
    let largest = ctx.largest_scratch_bytes();
    assert!(
        largest > 0 && largest <= logits_bytes / 15,
        "largest scratch {largest} of logits {logits_bytes}"
    );
    let want = reference::linear_cross_entropy(&op, &input).unwrap();
    assert_close("loss", &got.loss, &want.loss, LOSS);
    assert_close("dW", &got.grad_classifier.unwrap(), &want.grad_classifier.unwrap(), GRAD);
    assert_close("dH", &got.grad_hidden.unwrap(), &want.grad_hidden.unwrap(), GRAD);
}

/// No rows: the mean of nothing is NaN, the sum 0, with empty gradients of `H` and a
/// zero gradient of `W`, as the reference has them.
#[test]
fn no_rows_give_the_loss_of_an_empty_batch() {
    let ctx = ctx();
    let shape = LinearShape::new(0, 4, 6);
    let classifier = rng(1470).logits(24, 1.0);
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let op = LinearCrossEntropy::new().reduction(reduction);
        let input = LinearCrossEntropyInput::new(&[], &classifier, shape, Targets::I64(&[]));
        let got = op.run(ctx, &input).unwrap();
        let want = reference::linear_cross_entropy(&op, &input).unwrap();
        assert_close("loss", &got.loss, &want.loss, LOSS);
        assert_eq!(got.grad_hidden.unwrap().len(), 0);
        assert_close("dW", &got.grad_classifier.unwrap(), &want.grad_classifier.unwrap(), GRAD);
    }
    // The GPU-resident API writes the zero gradient of W over a poisoned buffer.
    let hidden = ctx.upload_elements(&[0.0_f32; 4]).unwrap();
    let w = ctx.upload(&classifier).unwrap();
    let targets = ctx.upload_elements(&[0u32; 4]).unwrap();
    let loss = ctx.storage_buffer(1).unwrap();
    let grad_classifier = poisoned::<f32>(ctx, 24);
    let buffers = LinearCrossEntropyBuffers::new(&hidden, &w, TargetBuffer::U32((&targets).into()), &loss)
        .with_grad_classifier(&grad_classifier);
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    LinearCrossEntropy::new().encode(ctx, &mut encoder, &buffers, shape).unwrap();
    ctx.submit_and_wait(encoder).unwrap();
    let dw = assert_written("dW", ctx.download(&grad_classifier, 24).unwrap());
    assert!(dw.iter().all(|&v| v == 0.0), "dW of no rows: {dw:?}");
}

/// The same input gives the same bits.
#[test]
fn runs_are_deterministic() {
    let ctx = ctx();
    let c = case::<f32>(1460, LinearShape::new(260, 9, 90));
    let op = LinearCrossEntropy::new().workspace_bytes(128 * 90 * 4);
    let input = LinearCrossEntropyInput::new(&c.hidden, &c.classifier, c.shape, Targets::I64(&c.targets));
    let first = op.run(ctx, &input).unwrap();
    let second = op.run(ctx, &input).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&first.loss), bits(&second.loss));
    assert_eq!(bits(&first.grad_classifier.unwrap()), bits(&second.grad_classifier.unwrap()));
    assert_eq!(bits(&first.grad_hidden.unwrap()), bits(&second.grad_hidden.unwrap()));
}

/// The vocabularies people train with (GPT-2's 50257, 2^16, Llama 3's 128256, Qwen 2's
/// 151936, Gemma's 256000) with every gradient, at the default options (the workspace
/// derived from the device), against the f64 reference: each storage type at 2^16 (where
/// the bug below first showed) and at 256000, the others in turn, the options rotating.
/// `dH = G W` sums over all `V` classes: before each product summed a bounded range of
/// terms per dispatch, llvmpipe cut that loop short from `V` = 65535 on, and `dH` came
/// out about ten times too small.
#[test]
fn real_vocabularies_with_gradients_match_the_reference() {
    let ctx = ctx();
    let runs: [(usize, DType); 8] = [
        (50257, DType::F16),
        (65536, DType::F32),
        (65536, DType::F16),
        (65536, DType::BF16),
        (128_256, DType::BF16),
        (151_936, DType::F16),
        (256_000, DType::F32),
        (256_000, DType::BF16),
    ];
    for (k, &(classes, dtype)) in runs.iter().enumerate() {
        let shape = LinearShape::new(40, 16, classes);
        let seed = 1500 + k as u64;
        let options = option_sets()[k % option_sets().len()];
        let (op, flags) = (op_of(options), (options.4, options.5));
        match dtype {
            DType::F32 => check_resident(ctx, op, &case::<f32>(seed, shape), flags, true, true),
            DType::F16 => check_resident(ctx, op, &case::<f16>(seed, shape), flags, true, true),
            _ => check_resident(ctx, op, &case::<bf16>(seed, shape), flags, true, true),
        }
    }
}

/// Several windows of rows at a real vocabulary under the default workspace, through the
/// host API: 300 rows of 128256 classes' f32 logits take 154 MB, more than one default
/// storage binding holds.
#[test]
fn the_default_workspace_takes_a_real_vocabulary_in_windows() {
    let ctx = ctx();
    let shape = LinearShape::new(300, 16, 128_256);
    let c = case::<f32>(1560, shape);
    let op = LinearCrossEntropy::new().lse(true);
    let input =
        LinearCrossEntropyInput::new(&c.hidden, &c.classifier, shape, Targets::I64(&c.targets)).bias(&c.bias);
    let got = op.run(ctx, &input).unwrap();
    let want = reference::linear_cross_entropy(&op, &input).unwrap();
    assert_close("loss", &got.loss, &want.loss, LOSS);
    assert_close("lse", &got.lse.unwrap(), &want.lse.unwrap(), LOSS);
    for (what, got, want) in [
        ("dH", got.grad_hidden, want.grad_hidden),
        ("dW", got.grad_classifier, want.grad_classifier),
        ("db", got.grad_bias, want.grad_bias),
    ] {
        let want = want.unwrap();
        assert_close(what, &got.unwrap(), &want, GRAD.normwise(Tolerance::LINEAR_GRAD_NORMWISE, &want));
    }
}

/// `dH` with a sum reduction at 256000 classes: unscaled, it sums 256000 terms of
/// `(p - y) W` that cancel, so a relative error of `p` (from the row's f32 sum of
/// exponentials) shows in it where a mean hides it. On a CPU adapter a subgroup per row
/// gave each of 8 lanes a 32000-term chain and failed this (12 of 1024 entries past the
/// tolerance); the planner gives such rows a workgroup.
#[test]
fn a_summed_dh_at_256000_classes_matches_the_reference() {
    let ctx = ctx();
    let shape = LinearShape::new(64, 16, 256_000);
    let c = case::<f32>(1570, shape);
    let op = LinearCrossEntropy::new().reduction(Reduction::Sum).lse(true);
    let input = LinearCrossEntropyInput::new(&c.hidden, &c.classifier, shape, Targets::I64(&c.targets));
    let got = op.run(ctx, &input).unwrap();
    let want = reference::linear_cross_entropy(&op, &input).unwrap();
    assert_close("loss", &got.loss, &want.loss, LOSS);
    assert_close("lse", &got.lse.unwrap(), &want.lse.unwrap(), LOSS);
    assert_close("dH", &got.grad_hidden.unwrap(), &want.grad_hidden.unwrap(), GRAD);
    assert_close("dW", &got.grad_classifier.unwrap(), &want.grad_classifier.unwrap(), GRAD);
}
