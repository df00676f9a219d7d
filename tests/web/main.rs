//! The library in a browser: every op family on the browser's WebGPU adapter (in CI,
//! headless Chromium's, through Dawn and Tint rather than wgpu-core and naga), through the
//! async API, on fresh seeded random data with every output poisoned (NaN) before the run,
//! against the f64 reference compiled to wasm, at the tolerances `wgpu_softmax::check`
//! states for each op.
//!
//! The context asks for WebGPU's default limits (8 storage buffers per stage, 16 KiB of
//! workgroup memory, 256 invocations per workgroup, 128 MiB bindings), whatever the adapter
//! offers: every op must run within them. A browser without a WebGPU adapter fails every
//! test here (the context's creation is unwrapped), so a run cannot pass without the GPU.
//!
//! Run by `bash web/test` (wasm-bindgen-test in headless Chromium); on native this file
//! compiles to nothing.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes
#![allow(clippy::cast_precision_loss)] // counts of a few thousand

use std::cell::RefCell;

use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{SeededRng, compare, round_to};
use wgpu_softmax::{
    Context, ContextOptions, CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, CrossEntropyStatus, DType,
    Distill, DistillBuffers, DistillInput, DistillReduction, Error, Gradient, LinearCrossEntropy,
    LinearCrossEntropyBuffers, LinearCrossEntropyInput, LinearGradients, LinearShape, PlanRequest, Reduction,
    SAMPLE_STATUS_WORDS, STATUS_WORDS, SampleBuffers, SampleStatus, Sampler, Shape, Softmax, TargetBuffer,
    Targets, TensorRef, bf16, f16, reference, wgpu,
};

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    /// One context for the whole suite: the browser compiles each pipeline once (slowly, on
    /// SwiftShader), and every test reuses it.
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// The suite's context, on WebGPU's default limits. Panics (failing the test) when the
/// browser has no WebGPU adapter.
async fn ctx() -> Context {
    if let Some(ctx) = CONTEXT.with(|slot| slot.borrow().clone()) {
        return ctx;
    }
    let mut options = ContextOptions::default();
    options.limits = Some(wgpu::Limits::default());
    let ctx = Context::with_options_async(options)
        .await
        .unwrap_or_else(|e| panic!("no WebGPU context in this browser, so nothing can be tested: {e}"));
    web_log(&format!("adapter: {}", ctx.describe()));
    CONTEXT.with(|slot| *slot.borrow_mut() = Some(ctx.clone()));
    ctx
}

fn web_log(line: &str) {
    wasm_bindgen_test::console_log!("{line}");
}

/// A buffer of `len` elements of `dtype`, every one NaN: an output the op must overwrite.
fn poisoned(ctx: &Context, dtype: DType, len: usize) -> wgpu::Buffer {
    ctx.upload_f32_as(dtype, &vec![f32::NAN; len]).unwrap()
}

fn assert_close(what: &str, actual: &[f32], expected: &[f64], tolerance: Tolerance) {
    let c = compare(actual, expected, tolerance);
    assert!(c.passed(), "{what}: {c} (tolerance atol {:e} rtol {:e})", tolerance.atol, tolerance.rtol);
}

/// Rows of probabilities summing to 1 (random positive weights, normalised in f64).
fn probability_rows(rng: &mut SeededRng, rows: usize, cols: usize) -> Vec<f32> {
    (0..rows)
        .flat_map(|_| {
            let weights: Vec<f64> = (0..cols).map(|_| f64::from(rng.uniform(0.0, 1.0)).powi(3)).collect();
            let total: f64 = weights.iter().sum();
            weights.into_iter().map(move |w| (w / total) as f32)
        })
        .collect()
}

#[wasm_bindgen_test]
async fn blocking_calls_are_refused_with_the_async_call_to_use() {
    assert!(
        matches!(Context::new(), Err(Error::NeedsAsync { instead: "Context::new_async", .. })),
        "Context::new must refuse on the web"
    );
    let ctx = ctx().await;
    let buffer = ctx.upload(&[1.0, 2.0]).unwrap();
    let refused = ctx.download(&buffer, 2);
    assert!(matches!(refused, Err(Error::NeedsAsync { .. })), "download must refuse on the web: {refused:?}");
    // The async form reads the data the upload wrote.
    assert_eq!(ctx.download_async(&buffer, 2).await.unwrap(), vec![1.0, 2.0]);
}

#[wasm_bindgen_test]
async fn a_validation_error_reaches_the_caller_typed() {
    let ctx = ctx().await;
    // A copy past the end of a buffer: wgpu's validation refuses it asynchronously on the
    // web; the next async check returns it as this crate's error.
    let small = ctx.storage_buffer(4).unwrap();
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&small, 0, &small, 8, 64);
    let submitted = ctx.submit(encoder);
    let checked = ctx.check_errors_async().await;
    assert!(
        matches!((&submitted, &checked), (Ok(()), Err(Error::Validation(_)))),
        "expected a deferred validation error, got {submitted:?} then {checked:?}"
    );
    // And the context still works after it.
    ctx.check_errors_async().await.unwrap();
}

/// Softmax or log-softmax of seeded random logits in `dtype` over `dims` along `dim`, on
/// poisoned output, against the reference.
async fn check_softmax(ctx: &Context, dtype: DType, dims: &[usize], dim: isize, log: bool, seed: u64) {
    let shape = Shape::of_dims(dims, dim).unwrap();
    let len = shape.len().unwrap();
    let logits = SeededRng::new(seed).logits(len, 8.0);
    // The values the GPU sees: the logits rounded to the storage type.
    let stored = ctx.upload_f32_as(dtype, &logits).unwrap();
    let output = poisoned(ctx, dtype, len);
    let op = if log { Softmax::log() } else { Softmax::new() };
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    op.encode(ctx, &mut encoder, TensorRef::new(&stored, dtype), TensorRef::new(&output, dtype), shape)
        .unwrap();
    ctx.submit(encoder).unwrap();
    let got = ctx.download_as_f32_async(&output, dtype, len).await.unwrap();
    let want = match (dtype, log) {
        (DType::F32, false) => reference::softmax(&logits, shape),
        (DType::F32, true) => reference::log_softmax(&logits, shape),
        (DType::F16, false) => reference::softmax(&round_to::<f16>(&logits), shape),
        (DType::F16, true) => reference::log_softmax(&round_to::<f16>(&logits), shape),
        (_, false) => reference::softmax(&round_to::<bf16>(&logits), shape),
        (_, true) => reference::log_softmax(&round_to::<bf16>(&logits), shape),
    }
    .unwrap();
    let tolerance = if log { Tolerance::LOG_SOFTMAX } else { Tolerance::SOFTMAX }.for_dtype(dtype);
    assert_close(
        &format!("{} {dtype} {dims:?} dim {dim}", if log { "log-softmax" } else { "softmax" }),
        &got,
        &want,
        tolerance,
    );
}

/// Softmax and log-softmax in every storage type, the class axis first, in the middle,
/// negative and last; each storage type runs both ops, and each layout both.
#[wasm_bindgen_test]
async fn softmax_and_log_softmax_in_every_storage_type_over_any_axis() {
    let ctx = ctx().await;
    const LAYOUTS: [(&[usize], isize); 3] = [(&[5, 3, 7], 0), (&[3, 37, 5], -2), (&[6, 45], 1)];
    for (d, &dtype) in DType::ALL.iter().enumerate() {
        for (l, &(dims, dim)) in LAYOUTS.iter().enumerate() {
            let log = (d + l) % 2 == 1;
            check_softmax(&ctx, dtype, dims, dim, log, 0x5E_B000 + (10 * d + l) as u64).await;
        }
    }
}

/// One configuration of the cross-entropy's test.
struct CrossEntropyCase {
    dtype: DType,
    dims: &'static [usize],
    dim: isize,
    op: CrossEntropy,
    probabilities: bool,
    weighted: bool,
    seed: u64,
}

async fn check_cross_entropy(ctx: &Context, case: &CrossEntropyCase) {
    let CrossEntropyCase { dtype, dims, dim, op, probabilities, weighted, seed } = *case;
    let shape = Shape::of_dims(dims, dim).unwrap();
    let (rows, cols, len) = (shape.rows, shape.cols, shape.len().unwrap());
    // 16-bit rows of an even `inner` run paired, two to an invocation (Tint compiles that
    // kernel too).
    let request = PlanRequest::CrossEntropy {
        reduction: op.get_reduction(),
        gradient: op.get_gradient(),
        probabilities,
        strategy: None,
    };
    let paired = dtype != DType::F32 && shape.inner % 2 == 0;
    assert_eq!(
        ctx.explain(&request, shape, dtype).unwrap().rows_per_invocation == 2,
        paired,
        "{shape} {dtype}"
    );
    let mut rng = SeededRng::new(seed);
    let logits = rng.logits(len, 6.0);
    // Class targets with an ignored row in every five; or probability rows, laid out as
    // the logits are (their class axis where the logits have it).
    let classes: Vec<i64> = (0..rows)
        .map(|r| if r % 5 == 2 { op.get_ignore_index() } else { rng.below(cols as u64) as i64 })
        .collect();
    let probabilities_rows = probability_rows(&mut rng, rows, cols);
    let mut probability_tensor = vec![0.0f32; len];
    for (row, values) in probabilities_rows.chunks(cols).enumerate() {
        for (class, &p) in values.iter().enumerate() {
            probability_tensor[shape.index(row, class)] = p;
        }
    }
    let weight: Vec<f32> = (0..cols).map(|_| rng.uniform(0.2, 2.0)).collect();
    let grad_output: Vec<f32> = (0..rows).map(|_| rng.uniform(-2.0, 2.0)).collect();
    let with_grad_output = op.get_reduction() == Reduction::None;

    // The reference, on the values the GPU sees.
    let want = {
        let stored: Vec<f32> = ctx_round(dtype, &logits);
        let stored_p: Vec<f32> = ctx_round(dtype, &probability_tensor);
        let targets =
            if probabilities { Targets::Probabilities(&stored_p[..]) } else { Targets::I64(&classes) };
        let mut input = CrossEntropyInput::new(&stored[..], shape, targets);
        if weighted {
            input = input.weight(&weight);
        }
        if with_grad_output {
            input = input.grad_output(&grad_output);
        }
        reference::cross_entropy(&op, &input).unwrap()
    };

    let logits_buffer = ctx.upload_f32_as(dtype, &logits).unwrap();
    let target_probabilities = ctx.upload_f32_as(dtype, &probability_tensor).unwrap();
    let target_classes = ctx.upload_elements(&classes).unwrap();
    let weight_buffer = ctx.upload(&weight).unwrap();
    let grad_output_buffer = ctx.upload(&grad_output).unwrap();
    let loss_len = if op.get_reduction() == Reduction::None { rows } else { 1 };
    let loss = poisoned(ctx, DType::F32, loss_len);
    let lse = poisoned(ctx, DType::F32, rows);
    let grad = poisoned(ctx, dtype, len);
    let argmax = poisoned(ctx, DType::F32, rows);
    let status = ctx.storage_buffer(STATUS_WORDS).unwrap();
    let targets = if probabilities {
        TargetBuffer::probabilities(TensorRef::new(&target_probabilities, dtype))
    } else {
        TargetBuffer::i64(&target_classes)
    };
    let mut buffers = CrossEntropyBuffers::new(TensorRef::new(&logits_buffer, dtype), targets, &loss)
        .with_lse(&lse)
        .with_argmax(&argmax)
        .with_status(&status);
    if op.get_gradient() == Gradient::Separate {
        buffers = buffers.with_grad(TensorRef::new(&grad, dtype));
    }
    if weighted {
        buffers = buffers.with_weight(&weight_buffer);
    }
    if with_grad_output {
        buffers = buffers.with_grad_output(&grad_output_buffer);
    }
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    op.encode(ctx, &mut encoder, &buffers, shape).unwrap();
    ctx.submit(encoder).unwrap();

    let what = format!(
        "cross-entropy {dtype} {dims:?} dim {dim} {:?} smoothing {} z {} softcap {:?} {:?} probabilities {probabilities} weighted {weighted}",
        op.get_reduction(),
        op.get_label_smoothing(),
        op.get_z_loss(),
        op.get_softcap(),
        op.get_gradient()
    );
    let got_loss = ctx.download_async(&loss, loss_len).await.unwrap();
    assert_close(&format!("{what}: loss"), &got_loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
    let got_lse = ctx.download_async(&lse, rows).await.unwrap();
    assert_close(
        &format!("{what}: lse"),
        &got_lse,
        want.lse.as_ref().unwrap(),
        Tolerance::CROSS_ENTROPY_LOSS,
    );
    let grad_source = if op.get_gradient() == Gradient::InPlace { &logits_buffer } else { &grad };
    let got_grad = ctx.download_as_f32_async(grad_source, dtype, len).await.unwrap();
    assert_close(
        &format!("{what}: gradient"),
        &got_grad,
        want.grad.as_ref().unwrap(),
        Tolerance::CROSS_ENTROPY_GRAD.for_dtype(dtype),
    );
    let got_argmax = ctx.download_u32_async(&argmax, rows).await.unwrap();
    assert_eq!(got_argmax, want.argmax.clone().unwrap(), "{what}: argmax");
    let words = ctx.download_u32_async(&status, STATUS_WORDS).await.unwrap();
    let status = CrossEntropyStatus::from_words(&words);
    assert_eq!(status.bad_target_rows, 0, "{what}: status {status:?}");
    if !probabilities {
        assert_eq!(Some(status.correct), want.correct, "{what}: correct count");
    }
}

/// `values` rounded to `dtype` and widened back: what the GPU reads from an upload.
fn ctx_round(dtype: DType, values: &[f32]) -> Vec<f32> {
    match dtype {
        DType::F32 => values.to_vec(),
        DType::F16 => wgpu_softmax::testing::widen(&round_to::<f16>(values)),
        _ => wgpu_softmax::testing::widen(&round_to::<bf16>(values)),
    }
}

/// The cross-entropy's options in every storage type: reductions, label smoothing, class
/// weights, ignored rows, int64 class targets and probability targets, the z-loss, the
/// logit softcap, logsumexp, argmax and status outputs, the gradient separate and in place,
/// with the class axis last and not last (an odd and an even number of positions after it).
#[wasm_bindgen_test]
async fn cross_entropy_with_its_options() {
    let ctx = ctx().await;
    let cases = [
        CrossEntropyCase {
            dtype: DType::F32,
            dims: &[24, 37],
            dim: 1,
            op: CrossEntropy::new().label_smoothing(0.1).argmax(true).lse(true),
            probabilities: false,
            weighted: true,
            seed: 0x5E_C001,
        },
        CrossEntropyCase {
            dtype: DType::BF16,
            dims: &[4, 11, 3],
            dim: 1,
            op: CrossEntropy::new()
                .reduction(Reduction::Sum)
                .z_loss(1e-3)
                .softcap(5.0)
                .gradient(Gradient::InPlace)
                .argmax(true)
                .lse(true),
            probabilities: false,
            weighted: false,
            seed: 0x5E_C002,
        },
        CrossEntropyCase {
            dtype: DType::F16,
            dims: &[9, 40],
            dim: -1,
            op: CrossEntropy::new().reduction(Reduction::None).label_smoothing(0.05).argmax(true).lse(true),
            probabilities: true,
            weighted: true,
            seed: 0x5E_C003,
        },
        // An even number of positions after the class axis: one invocation takes two
        // rows and stores whole 16-bit words (the mean folded into the row kernel).
        CrossEntropyCase {
            dtype: DType::F16,
            dims: &[3, 9, 4],
            dim: 1,
            op: CrossEntropy::new().gradient(Gradient::InPlace).argmax(true).lse(true),
            probabilities: false,
            weighted: true,
            seed: 0x5E_C004,
        },
    ];
    for case in &cases {
        check_cross_entropy(&ctx, case).await;
    }
}

/// The linear cross-entropy at a small shape, f32 with a bias and class weights: the loss,
/// logsumexp and all three gradients.
#[wasm_bindgen_test]
async fn linear_cross_entropy_at_a_small_shape() {
    let ctx = ctx().await;
    let shape = LinearShape::new(13, 24, 70);
    let (n, d, v) = (shape.rows, shape.hidden, shape.classes);
    let mut rng = SeededRng::new(0x5E_1CE);
    let hidden: Vec<f32> = (0..n * d).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let classifier: Vec<f32> = (0..v * d).map(|_| rng.uniform(-0.5, 0.5)).collect();
    let bias: Vec<f32> = (0..v).map(|_| rng.uniform(-0.5, 0.5)).collect();
    let weight: Vec<f32> = (0..v).map(|_| rng.uniform(0.5, 1.5)).collect();
    let targets: Vec<i32> = (0..n).map(|r| if r == 4 { -100 } else { rng.below(v as u64) as i32 }).collect();
    let op = LinearCrossEntropy::new().label_smoothing(0.05).lse(true).gradients(LinearGradients::ALL);
    let input = LinearCrossEntropyInput::new(&hidden[..], &classifier[..], shape, Targets::I32(&targets))
        .bias(&bias)
        .weight(&weight);
    let want = reference::linear_cross_entropy(&op, &input).unwrap();

    let hidden_buffer = ctx.upload(&hidden).unwrap();
    let classifier_buffer = ctx.upload(&classifier).unwrap();
    let bias_buffer = ctx.upload(&bias).unwrap();
    let weight_buffer = ctx.upload(&weight).unwrap();
    let targets_buffer = ctx.upload_elements(&targets).unwrap();
    let loss = poisoned(&ctx, DType::F32, 1);
    let lse = poisoned(&ctx, DType::F32, n);
    let grad_hidden = poisoned(&ctx, DType::F32, n * d);
    let grad_classifier = poisoned(&ctx, DType::F32, v * d);
    let grad_bias = poisoned(&ctx, DType::F32, v);
    let buffers = LinearCrossEntropyBuffers::new(
        &hidden_buffer,
        &classifier_buffer,
        TargetBuffer::i32(&targets_buffer),
        &loss,
    )
    .with_bias(&bias_buffer)
    .with_weight(&weight_buffer)
    .with_lse(&lse)
    .with_grad_hidden(&grad_hidden)
    .with_grad_classifier(&grad_classifier)
    .with_grad_bias(&grad_bias);
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    op.encode(&ctx, &mut encoder, &buffers, shape).unwrap();
    ctx.submit(encoder).unwrap();

    let what = format!("linear cross-entropy {n}x{d}x{v}");
    let loss_tolerance = Tolerance::LINEAR_CROSS_ENTROPY_LOSS;
    let grad_tolerance = Tolerance::LINEAR_CROSS_ENTROPY_GRAD;
    assert_close(
        &format!("{what}: loss"),
        &ctx.download_async(&loss, 1).await.unwrap(),
        &want.loss,
        loss_tolerance,
    );
    assert_close(
        &format!("{what}: lse"),
        &ctx.download_async(&lse, n).await.unwrap(),
        want.lse.as_ref().unwrap(),
        loss_tolerance,
    );
    for (name, buffer, len, expected) in [
        ("dH", &grad_hidden, n * d, want.grad_hidden.as_ref()),
        ("dW", &grad_classifier, v * d, want.grad_classifier.as_ref()),
        ("db", &grad_bias, v, want.grad_bias.as_ref()),
    ] {
        let got = ctx.download_async(buffer, len).await.unwrap();
        assert_close(&format!("{what}: {name}"), &got, expected.unwrap(), grad_tolerance);
    }
}

/// Distillation (the KL divergence of the student's softened distribution from the
/// teacher's) in f32 and bf16, with its gradient.
#[wasm_bindgen_test]
async fn distillation_in_f32_and_bf16() {
    let ctx = ctx().await;
    for (dtype, reduction, seed) in [
        (DType::F32, DistillReduction::BatchMean, 0x5E_D001),
        (DType::BF16, DistillReduction::Sum, 0x5E_D002),
    ] {
        let shape = Shape::new(7, 29);
        let len = shape.len().unwrap();
        let mut rng = SeededRng::new(seed);
        let student = rng.logits(len, 4.0);
        let teacher = rng.logits(len, 4.0);
        let op = Distill::new().temperature(2.0).reduction(reduction);
        let (student_stored, teacher_stored) = (ctx_round(dtype, &student), ctx_round(dtype, &teacher));
        let want =
            reference::distill(&op, &DistillInput::new(&student_stored[..], &teacher_stored[..], shape))
                .unwrap();

        let student_buffer = ctx.upload_f32_as(dtype, &student).unwrap();
        let teacher_buffer = ctx.upload_f32_as(dtype, &teacher).unwrap();
        let loss = poisoned(&ctx, DType::F32, 1);
        let grad = poisoned(&ctx, dtype, len);
        let buffers = DistillBuffers::new(
            TensorRef::new(&student_buffer, dtype),
            TensorRef::new(&teacher_buffer, dtype),
            &loss,
        )
        .with_grad(TensorRef::new(&grad, dtype));
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        op.encode(&ctx, &mut encoder, &buffers, shape).unwrap();
        ctx.submit(encoder).unwrap();
        let what = format!("distill {dtype} {shape} {}", reduction.name());
        assert_close(
            &format!("{what}: loss"),
            &ctx.download_async(&loss, 1).await.unwrap(),
            &want.loss,
            Tolerance::DISTILL_LOSS,
        );
        let got = ctx.download_as_f32_async(&grad, dtype, len).await.unwrap();
        assert_close(
            &format!("{what}: gradient"),
            &got,
            want.grad.as_ref().unwrap(),
            Tolerance::DISTILL_GRAD.for_dtype(dtype),
        );
    }
}

/// GPU sampling with temperature, top-k and top-p: every draw lies in the support of the
/// reference's filtered distribution, and each class's frequency over the draws is within
/// five standard deviations (plus one draw) of its reference probability.
#[wasm_bindgen_test]
async fn sampling_matches_the_reference_distribution() {
    let ctx = ctx().await;
    let (rows, cols, draws) = (3, 50, 600);
    let shape = Shape::new(rows, cols);
    let logits = SeededRng::new(0x5E_5A3).logits(rows * cols, 3.0);
    let sampler = Sampler {
        temperature: 0.8,
        top_k: 12,
        top_p: 0.9,
        num_samples: draws,
        seed: 42,
        ..Sampler::default()
    };
    let distributions = reference::sample_distribution(&logits, shape, &sampler).unwrap();

    let logits_buffer = ctx.upload(&logits).unwrap();
    // Poisoned ids: a word no draw can be.
    let ids = ctx.upload_elements(&vec![u32::MAX - 7; rows * draws]).unwrap();
    let status = ctx.storage_buffer(SAMPLE_STATUS_WORDS).unwrap();
    let buffers =
        SampleBuffers::new(TensorRef::new(&logits_buffer, DType::F32), (&ids).into(), (&status).into());
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    sampler.encode(&ctx, &mut encoder, &buffers, shape).unwrap();
    ctx.submit(encoder).unwrap();
    let got = ctx.download_u32_async(&ids, rows * draws).await.unwrap();
    let status =
        SampleStatus::from_words(&ctx.download_u32_async(&status, SAMPLE_STATUS_WORDS).await.unwrap());
    assert_eq!(status.bad_rows, 0, "sample status {status:?}");

    for (row, distribution) in distributions.iter().enumerate() {
        let p = distribution.as_ref().expect("every row has a distribution");
        let mut counts = vec![0usize; cols];
        for &id in &got[row * draws..(row + 1) * draws] {
            let id = id as usize;
            assert!(id < cols && p[id] > 0.0, "row {row}: draw {id} outside the filtered distribution");
            counts[id] += 1;
        }
        for (class, (&count, &probability)) in counts.iter().zip(p).enumerate() {
            let frequency = count as f64 / draws as f64;
            let sigma = (probability * (1.0 - probability) / draws as f64).sqrt();
            assert!(
                (frequency - probability).abs() <= 5.0 * sigma + 1.0 / draws as f64,
                "row {row} class {class}: frequency {frequency:.4} vs probability {probability:.4}"
            );
        }
    }
}

/// The linear cross-entropy's matrix product on its own, over more terms than one step of
/// its k loop (where Chromium once kept a step's sums into the next), loading 128 bits at a
/// time and a word at a time, with either operand transposed. Sums of at most 70 products
/// of values in [-1, 1]: within 1e-5 of the f64 product.
#[wasm_bindgen_test]
async fn matrix_products_over_many_steps_of_k() {
    let ctx = ctx().await;
    for (m, n, k, a_transposed, b_transposed) in [
        (13, 70, 24, false, true),
        (13, 70, 23, false, true),
        (13, 24, 70, false, false),
        (24, 70, 13, true, false),
    ] {
        let mut rng = SeededRng::new(0x5E_3A7 + k as u64);
        let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let wide = |values: &[f32]| values.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
        let want = reference::matmul(&wide(&a), &wide(&b), (m, n, k), (a_transposed, b_transposed));
        let (a_buffer, b_buffer) = (ctx.upload(&a).unwrap(), ctx.upload(&b).unwrap());
        let c = poisoned(&ctx, DType::F32, m * n);
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        let vector = wgpu_softmax::testing::record_matmul(
            &ctx,
            &mut encoder,
            ((&a_buffer).into(), a_transposed),
            ((&b_buffer).into(), b_transposed),
            (&c).into(),
            (m, n, k),
            false,
        )
        .unwrap();
        ctx.submit(encoder).unwrap();
        let got = ctx.download_async(&c, m * n).await.unwrap();
        let what =
            format!("matmul {m}x{n}x{k} transposed ({a_transposed}, {b_transposed}) vector loads {vector}");
        assert_close(&what, &got, &want, Tolerance { atol: 1e-5, rtol: 1e-4 });
    }
}
