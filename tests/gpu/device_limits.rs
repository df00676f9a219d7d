//! Every op on devices an embedder makes itself: with wgpu's default limits, with WebGPU's
//! downlevel defaults, and with `Context::required_limits`. Each op either matches the
//! f64 reference (outputs poisoned first) or, where the device allows fewer storage buffers
//! per shader stage than its kernels bind, returns the typed `Error::LimitExceeded` naming
//! that limit, having recorded nothing; the context stays healthy either way.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test

use crate::common;

use common::{assert_written, backward_poisoned, ctx, poisoned, rng, softmax_poisoned};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::compare;
use wgpu_softmax::testing::round_to;
use wgpu_softmax::{
    BufferRegion, Context, CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, DType, Distill,
    DistillInput, Element, Error, Gradient, LinearCrossEntropy, LinearCrossEntropyBuffers,
    LinearCrossEntropyInput, LinearShape, Reduction, STATUS_WORDS, Sampler, Shape, Softmax, SoftmaxBackward,
    Strategy, TargetBuffer, Targets, TensorRef, bf16, f16, reference, wgpu,
};

/// The limit the ops name when a device cannot bind their buffers.
const LIMIT: &str = "max_storage_buffers_per_shader_stage";

/// The name of the device made with `Context::required_limits`, on which every op runs.
const REQUIRED: &str = "Context::required_limits";

/// A device of the suite's adapter made as an embedder makes one: its own instance,
/// no optional features, `limits`.
fn embedder_device(limits: impl FnOnce(&wgpu::Adapter) -> wgpu::Limits) -> Context {
    // The suite's context names the adapter (and fails, saying what to install, without one).
    let wanted = ctx().adapter_info().clone();
    let backends = wgpu::Backends::from(wanted.backend);
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    descriptor.backends = backends;
    let instance = wgpu::Instance::new(descriptor);
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    let adapter = adapters
        .into_iter()
        .find(|a| a.get_info().name == wanted.name)
        .unwrap_or_else(|| panic!("the suite's adapter {} is not found again", wanted.name));
    let limits = limits(&adapter);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("an embedder's device"),
        required_limits: limits,
        ..Default::default()
    }))
    .unwrap();
    Context::from_device(device, queue)
}

/// The three devices: wgpu's defaults (WebGPU's, 8 storage buffers per stage), the
/// downlevel defaults (4), and what the crate says every op needs.
fn devices() -> Vec<(&'static str, Context)> {
    vec![
        ("Limits::default()", embedder_device(|_| wgpu::Limits::default())),
        ("Limits::downlevel_defaults()", embedder_device(|_| wgpu::Limits::downlevel_defaults())),
        (REQUIRED, embedder_device(Context::required_limits)),
    ]
}

/// Whether the op ran (`Ok`), or was refused for the device's storage buffers per stage;
/// panics on any other error, and on a refusal by the device of the required limits.
fn ran<T>(what: &str, ctx: &Context, result: Result<T, Error>) -> Option<T> {
    let available = u64::from(ctx.device().limits().max_storage_buffers_per_shader_stage);
    match result {
        Ok(value) => Some(value),
        Err(Error::LimitExceeded { limit, required, available: said }) if limit == LIMIT => {
            assert_eq!(said, available, "{what}");
            assert!(required > available, "{what}: refused {required} on a device of {available}");
            assert!(!what.starts_with(REQUIRED), "{what}: refused on the device of the required limits");
            None
        }
        Err(error) => panic!("{what}: {error}"),
    }
}

#[test]
fn the_required_limits_fit_the_adapter_and_webgpus_default() {
    let ctx = embedder_device(Context::required_limits);
    let limits = ctx.device().limits();
    // Every op runs on WebGPU's 8 storage buffers per stage (the cross-entropy packed).
    assert_eq!(limits.max_storage_buffers_per_shader_stage, 8, "{limits:?}");
    let preferred = embedder_device(Context::preferred_limits).device().limits();
    assert!(
        preferred.max_storage_buffers_per_shader_stage >= limits.max_storage_buffers_per_shader_stage,
        "{preferred:?}"
    );
}

#[test]
fn softmax_and_log_softmax_run_on_every_embedder_device() {
    let shape = Shape::new(5, 37);
    let x = rng(0xD1_0001).logits(shape.len().unwrap(), 8.0);
    for (name, ctx) in devices() {
        for op in [Softmax::new(), Softmax::log()] {
            // Few enough buffers for every device, downlevel included.
            let gpu = softmax_poisoned(&ctx, op, &x, shape).unwrap_or_else(|e| panic!("{name} {op:?}: {e}"));
            let (want, tolerance) = if op.is_log() {
                (reference::log_softmax(&x, shape).unwrap(), Tolerance::LOG_SOFTMAX)
            } else {
                (reference::softmax(&x, shape).unwrap(), Tolerance::SOFTMAX)
            };
            let c = compare(&gpu, &want, tolerance);
            assert!(c.passed(), "{name} {op:?}: {c}");
        }
        ctx.check_health().unwrap();
    }
}

#[test]
fn the_backward_runs_or_is_refused_by_name() {
    let shape = Shape::new(6, 29);
    let mut rng = rng(0xD1_0002);
    let x = rng.logits(shape.len().unwrap(), 4.0);
    let dy = rng.logits(shape.len().unwrap(), 1.0);
    for (name, ctx) in devices() {
        for op in [SoftmaxBackward::new(), SoftmaxBackward::log()] {
            let forward = if op.is_log() { Softmax::log() } else { Softmax::new() };
            let y = softmax_poisoned(&ctx, forward, &x, shape).unwrap();
            let what = format!("{name} {op:?}");
            let Some(dx) = ran(&what, &ctx, backward_poisoned(&ctx, op, &y, &dy, shape)) else {
                continue;
            };
            let want = if op.is_log() {
                reference::log_softmax_backward(&y, &dy, shape).unwrap()
            } else {
                reference::softmax_backward(&y, &dy, shape).unwrap()
            };
            let c = compare(&dx, &want, Tolerance::BACKWARD);
            assert!(c.passed(), "{what}: {c}");
        }
        ctx.check_health().unwrap();
    }
}

#[test]
fn the_cross_entropy_runs_on_webgpus_eight_buffers_and_is_refused_by_name_below() {
    let shape = Shape::new(7, 19);
    let mut rng = rng(0xD1_0003);
    let logits = rng.logits(shape.len().unwrap(), 5.0);
    let targets: Vec<i64> = (0..7_i64).map(|i| i * 5 % 19).collect();
    let op = CrossEntropy::new().lse(true).argmax(true).gradient(Gradient::Separate);
    let input = CrossEntropyInput::new(&logits, shape, Targets::I64(&targets));
    let want = reference::cross_entropy(&op, &input).unwrap();
    let mut refused = 0;
    for (name, ctx) in devices() {
        let logits_buffer = ctx.upload_elements(&logits).unwrap();
        let targets_buffer = ctx.upload_elements(&common::i64_words(&targets)).unwrap();
        let loss = poisoned::<f32>(&ctx, 1);
        let grad = poisoned::<f32>(&ctx, logits.len());
        let lse = poisoned::<f32>(&ctx, shape.rows);
        let argmax = ctx.upload_elements(&[u32::MAX; 7]).unwrap();
        // A status the op would clear first: still 7s after a refusal means nothing ran.
        let status = ctx.upload_elements(&[7u32; STATUS_WORDS]).unwrap();
        let buffers = CrossEntropyBuffers::new(
            &logits_buffer,
            TargetBuffer::I64(BufferRegion::new(&targets_buffer)),
            &loss,
        )
        .with_grad(&grad)
        .with_lse(&lse)
        .with_argmax(&argmax)
        .with_status(&status);
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        let result = op.encode(&ctx, &mut encoder, &buffers, shape);
        ctx.submit_and_wait(encoder).unwrap();
        if ran(name, &ctx, result).is_none() {
            refused += 1;
            assert_eq!(ctx.download_u32(&status, STATUS_WORDS).unwrap(), vec![7; STATUS_WORDS], "{name}");
            ctx.check_health().unwrap();
            continue;
        }
        let c = compare(
            &assert_written(name, ctx.download(&loss, 1).unwrap()),
            &want.loss,
            Tolerance::CROSS_ENTROPY_LOSS,
        );
        assert!(c.passed(), "{name} loss: {c}");
        let gpu_grad = assert_written(name, ctx.download(&grad, logits.len()).unwrap());
        let c = compare(&gpu_grad, want.grad.as_deref().unwrap(), Tolerance::CROSS_ENTROPY_GRAD);
        assert!(c.passed(), "{name} grad: {c}");
        let gpu_lse = assert_written(name, ctx.download(&lse, shape.rows).unwrap());
        let c = compare(&gpu_lse, want.lse.as_deref().unwrap(), Tolerance::CROSS_ENTROPY_LOSS);
        assert!(c.passed(), "{name} lse: {c}");
        assert_eq!(&ctx.download_u32(&argmax, 7).unwrap(), want.argmax.as_ref().unwrap(), "{name} argmax");
        ctx.check_health().unwrap();
    }
    // WebGPU's 8 storage buffers take the packed kernel; the downlevel 4 are too few.
    assert_eq!(refused, 1);
}

/// wgpu's default limits (WebGPU's 8 storage buffers per stage) with bindings small enough
/// that a batch takes several chunks: the packed cross-entropy's extras are copied out
/// chunk by chunk.
fn eight_buffers_in_chunks() -> Context {
    embedder_device(|_| wgpu::Limits { max_storage_buffer_binding_size: 16384, ..wgpu::Limits::default() })
}

/// One run of `op` on `ctx` through the GPU-resident API, every output poisoned first,
/// checked against the f64 reference: the loss, the gradient (its own buffer or over the
/// logits), the logsumexp and the argmax where `op` asks for them.
fn check_packed<T: Element>(ctx: &Context, op: CrossEntropy, input: &CrossEntropyInput<'_, T>, what: &str) {
    let shape = input.shape;
    let want = reference::cross_entropy(&op, input).unwrap();
    let logits = ctx.upload_elements(input.logits).unwrap();
    let targets_buffer = match input.targets {
        Targets::Probabilities(p) => ctx.upload_elements(p).unwrap(),
        Targets::I64(t) => ctx.upload_elements(&common::i64_words(t)).unwrap(),
        Targets::I32(t) => ctx.upload_elements(t).unwrap(),
        other => panic!("{what}: no case gives {other:?}"),
    };
    let targets = match input.targets {
        Targets::Probabilities(_) => TargetBuffer::probabilities(TensorRef::new(&targets_buffer, T::DTYPE)),
        Targets::I64(_) => TargetBuffer::i64(&targets_buffer),
        _ => TargetBuffer::i32(&targets_buffer),
    };
    let loss_len = if op.get_reduction() == Reduction::None { shape.rows } else { 1 };
    let loss = poisoned::<f32>(ctx, loss_len);
    let grad = poisoned::<T>(ctx, input.logits.len());
    let lse = poisoned::<f32>(ctx, shape.rows);
    let argmax = ctx.upload_elements(&vec![u32::MAX; shape.rows]).unwrap();
    let weight = input.weight.map(|w| ctx.upload_elements(w).unwrap());
    let mut buffers = CrossEntropyBuffers::new(TensorRef::new(&logits, T::DTYPE), targets, &loss);
    if op.get_gradient() == Gradient::Separate {
        buffers = buffers.with_grad(TensorRef::new(&grad, T::DTYPE));
    }
    if op.get_lse() {
        buffers = buffers.with_lse(&lse);
    }
    if op.get_argmax() {
        buffers = buffers.with_argmax(&argmax);
    }
    if let Some(w) = &weight {
        buffers = buffers.with_weight(w);
    }
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let plan = op.encode(ctx, &mut encoder, &buffers, shape).unwrap_or_else(|e| panic!("{what}: {e}"));
    ctx.submit_and_wait(encoder).unwrap();
    assert!(plan.chunks().len() > 1, "{what}: one chunk, {plan:?}");
    let c = compare(
        &assert_written(what, ctx.download(&loss, loss_len).unwrap()),
        &want.loss,
        Tolerance::CROSS_ENTROPY_LOSS,
    );
    assert!(c.passed(), "{what}: loss {c}");
    if op.get_gradient() != Gradient::Skip {
        let written = if op.get_gradient() == Gradient::InPlace { &logits } else { &grad };
        let gpu: Vec<T> = assert_written(what, ctx.download_elements(written, input.logits.len()).unwrap());
        let tolerance = Tolerance::CROSS_ENTROPY_GRAD.for_dtype(T::DTYPE);
        let c = compare(&wgpu_softmax::testing::widen(&gpu), want.grad.as_deref().unwrap(), tolerance);
        assert!(c.passed(), "{what}: grad {c}");
    }
    if op.get_lse() {
        let gpu = assert_written(what, ctx.download(&lse, shape.rows).unwrap());
        let c = compare(&gpu, want.lse.as_deref().unwrap(), Tolerance::CROSS_ENTROPY_LOSS);
        assert!(c.passed(), "{what}: lse {c}");
    }
    if op.get_argmax() {
        assert_eq!(
            &ctx.download_u32(&argmax, shape.rows).unwrap(),
            want.argmax.as_ref().unwrap(),
            "{what}: argmax"
        );
    }
    ctx.check_health().unwrap();
}

#[test]
fn the_packed_cross_entropy_matches_the_reference_in_every_mode_over_chunks() {
    let ctx = eight_buffers_in_chunks();
    assert_eq!(ctx.device().limits().max_storage_buffers_per_shader_stage, 8);
    // Odd rows of 19 classes: 16-bit outputs share words between rows (the edge words go
    // into the extras too); 600 rows make several chunks of a 16384-byte binding.
    let shape = Shape::new(600, 19);
    let mut rng = rng(0xD1_0005);
    let logits = rng.logits(shape.len().unwrap(), 6.0);
    let classes: Vec<i64> = (0..600).map(|r| if r % 11 == 4 { -100 } else { rng.below(19) as i64 }).collect();
    let classes_i32: Vec<i32> = classes.iter().map(|&c| i32::try_from(c).unwrap()).collect();
    let probabilities = common::probability_rows(&mut rng, shape.rows, shape.cols);
    let weight: Vec<f32> = (0..19).map(|_| 0.5 + rng.below(100) as f32 / 100.0).collect();
    let op = CrossEntropy::new();
    // Each storage type, kind of targets, gradient mode and reduction at least once, the
    // argmax and the logsumexp copied out, and the z-loss reading the logsumexp back.
    let f32_case = CrossEntropyInput::new(&logits, shape, Targets::I64(&classes)).weight(&weight);
    check_packed(
        &ctx,
        op.gradient(Gradient::Separate).argmax(true).lse(true).z_loss(1e-3),
        &f32_case,
        "f32, i64 classes, weight, separate, mean, argmax, lse, z-loss",
    );
    let f32_probabilities = CrossEntropyInput::new(&logits, shape, Targets::Probabilities(&probabilities));
    check_packed(
        &ctx,
        op.gradient(Gradient::Skip).reduction(Reduction::None).argmax(true).lse(true),
        &f32_probabilities,
        "f32, probabilities, no gradient, none, argmax, lse",
    );
    let half: Vec<bf16> = round_to(&logits);
    let half_probabilities: Vec<bf16> = round_to(&probabilities);
    check_packed(
        &ctx,
        op.gradient(Gradient::InPlace).reduction(Reduction::Sum).lse(true).label_smoothing(0.1),
        &CrossEntropyInput::new(&half, shape, Targets::I32(&classes_i32)),
        "bf16, i32 classes, in place, sum, lse, smoothing",
    );
    check_packed(
        &ctx,
        op.gradient(Gradient::Separate).argmax(true).softcap(20.0),
        &CrossEntropyInput::new(&half, shape, Targets::Probabilities(&half_probabilities)),
        "bf16, probabilities, separate, mean, argmax, softcap",
    );
    let f16_logits: Vec<f16> = round_to(&logits);
    check_packed(
        &ctx,
        op.gradient(Gradient::Separate).reduction(Reduction::None).argmax(true).lse(true),
        &CrossEntropyInput::new(&f16_logits, shape, Targets::I64(&classes)),
        "f16, i64 classes, separate, none, argmax, lse",
    );
    // Its argmax and logsumexp are copied into the caller's buffers: they need COPY_DST.
    let logits_buffer = ctx.upload_elements(&logits).unwrap();
    let targets_buffer = ctx.upload_elements(&common::i64_words(&classes)).unwrap();
    let loss = poisoned::<f32>(&ctx, 1);
    let no_copy = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 4 * 600,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let buffers = CrossEntropyBuffers::new(&logits_buffer, TargetBuffer::i64(&targets_buffer), &loss)
        .with_lse(&no_copy);
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let refused =
        op.gradient(Gradient::Skip).lse(true).encode(&ctx, &mut encoder, &buffers, shape).unwrap_err();
    assert!(matches!(refused, Error::MissingUsage { what: "lse", .. }), "{refused}");
}

#[test]
fn the_linear_cross_entropy_runs_or_is_refused_by_name() {
    let shape = LinearShape::new(6, 8, 45);
    let mut rng = rng(0xD1_0004);
    let hidden = rng.logits(6 * 8, 1.0);
    let classifier = rng.logits(45 * 8, 1.0);
    let targets: Vec<i64> = (0..6_i64).map(|i| i * 7 % 45).collect();
    let op = LinearCrossEntropy::new().lse(true);
    let input = LinearCrossEntropyInput::new(&hidden, &classifier, shape, Targets::I64(&targets));
    let want = reference::linear_cross_entropy(&op, &input).unwrap();
    for (name, ctx) in devices() {
        // With the gradients (windows of stored logits), and without (the forward that
        // reduces each block of logits as it computes it, where the device binds enough).
        for gradients in [true, false] {
            let what = format!("{name}, gradients {gradients}");
            let hidden_buffer = ctx.upload_elements(&hidden).unwrap();
            let classifier_buffer = ctx.upload_elements(&classifier).unwrap();
            let targets_buffer = ctx.upload_elements(&common::i64_words(&targets)).unwrap();
            let loss = poisoned::<f32>(&ctx, 1);
            let lse = poisoned::<f32>(&ctx, 6);
            let grad_hidden = poisoned::<f32>(&ctx, 6 * 8);
            let grad_classifier = poisoned::<f32>(&ctx, 45 * 8);
            let mut buffers = LinearCrossEntropyBuffers::new(
                &hidden_buffer,
                &classifier_buffer,
                TargetBuffer::I64(BufferRegion::new(&targets_buffer)),
                &loss,
            )
            .with_lse(&lse);
            if gradients {
                buffers = buffers.with_grad_hidden(&grad_hidden).with_grad_classifier(&grad_classifier);
            }
            let mut encoder = ctx.device().create_command_encoder(&Default::default());
            let result = op.encode(&ctx, &mut encoder, &buffers, shape);
            // Refused, it has recorded nothing: every pass's module is checked first.
            if ran(&what, &ctx, result).is_none() {
                ctx.check_health().unwrap();
                continue;
            }
            ctx.submit_and_wait(encoder).unwrap();
            let read = |b: &wgpu::Buffer, len| assert_written(&what, ctx.download(b, len).unwrap());
            let c = compare(&read(&loss, 1), &want.loss, Tolerance::LINEAR_CROSS_ENTROPY_LOSS);
            assert!(c.passed(), "{what} loss: {c}");
            let c =
                compare(&read(&lse, 6), want.lse.as_deref().unwrap(), Tolerance::LINEAR_CROSS_ENTROPY_LOSS);
            assert!(c.passed(), "{what} lse: {c}");
            if !gradients {
                continue;
            }
            let c = compare(
                &read(&grad_hidden, 6 * 8),
                want.grad_hidden.as_deref().unwrap(),
                Tolerance::LINEAR_CROSS_ENTROPY_GRAD,
            );
            assert!(c.passed(), "{what} dH: {c}");
            let c = compare(
                &read(&grad_classifier, 45 * 8),
                want.grad_classifier.as_deref().unwrap(),
                Tolerance::LINEAR_CROSS_ENTROPY_GRAD,
            );
            assert!(c.passed(), "{what} dW: {c}");
        }
        ctx.check_health().unwrap();
    }
}

#[test]
fn the_distillation_and_the_sampler_run_or_are_refused_by_name() {
    // Odd rows in bf16: the distillation's gradient shares words between rows (its edge
    // words), and on 8 storage buffers its split gives way to the other strategies.
    let shape = Shape::new(9, 301);
    let mut rng = rng(0xD1_0006);
    let student: Vec<bf16> = round_to(&rng.logits(shape.len().unwrap(), 4.0));
    let teacher: Vec<bf16> = round_to(&rng.logits(shape.len().unwrap(), 4.0));
    let op = Distill::new().temperature(2.0);
    let input = DistillInput::new(&student, &teacher, shape);
    let want = reference::distill(&op, &input).unwrap();
    let logits = rng.logits(shape.len().unwrap(), 4.0);
    let greedy = Sampler { temperature: 0.0, num_samples: 2, ..Sampler::default() };
    let mut refused = 0;
    for (name, ctx) in devices() {
        // Forced, the split with its 16-bit edge words binds 9: refused by name on 8.
        let split = op.strategy(Strategy::SplitRow).run(&ctx, &input);
        if ctx.device().limits().max_storage_buffers_per_shader_stage < 9 {
            assert!(matches!(split, Err(Error::LimitExceeded { limit: LIMIT, .. })), "{name}: {split:?}");
        }
        if let Some(out) = ran(&format!("{name} distill"), &ctx, op.run(&ctx, &input)) {
            let c = compare(&out.loss, &want.loss, Tolerance::DISTILL_LOSS);
            assert!(c.passed(), "{name} distill loss: {c}");
            let grad = wgpu_softmax::testing::widen(&out.grad.unwrap());
            let c =
                compare(&grad, want.grad.as_deref().unwrap(), Tolerance::DISTILL_GRAD.for_dtype(DType::BF16));
            assert!(c.passed(), "{name} distill grad: {c}");
        } else {
            refused += 1;
        }
        if let Some(out) = ran(&format!("{name} sample"), &ctx, greedy.run(&ctx, &logits, shape, false)) {
            for (row, ids) in out.ids.chunks(2).enumerate() {
                let values = &logits[row * shape.cols..(row + 1) * shape.cols];
                let best = (0..shape.cols).fold(0, |b, c| if values[c] > values[b] { c } else { b });
                assert_eq!(ids, [best as i64; 2], "{name} sample row {row}");
            }
        } else {
            refused += 1;
        }
        ctx.check_health().unwrap();
    }
    // Only the downlevel defaults' 4 storage buffers are too few, for both.
    assert_eq!(refused, 2);
}
