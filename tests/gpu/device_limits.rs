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
use wgpu_softmax::{
    BufferRegion, Context, CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, Error, Gradient,
    LinearCrossEntropy, LinearCrossEntropyBuffers, LinearCrossEntropyInput, LinearShape, STATUS_WORDS, Shape,
    Softmax, SoftmaxBackward, TargetBuffer, Targets, reference, wgpu,
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
fn the_required_limits_fit_the_adapter_and_ask_for_more_than_webgpus_default() {
    let ctx = embedder_device(Context::required_limits);
    let limits = ctx.device().limits();
    assert!(limits.max_storage_buffers_per_shader_stage > 8, "{limits:?}");
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
fn the_cross_entropy_runs_or_is_refused_by_name_before_recording() {
    let shape = Shape::new(7, 19);
    let mut rng = rng(0xD1_0003);
    let logits = rng.logits(shape.len().unwrap(), 5.0);
    let targets: Vec<i64> = (0..7_i64).map(|i| i * 5 % 19).collect();
    let op = CrossEntropy::new().lse(true).gradient(Gradient::Separate);
    let input = CrossEntropyInput::new(&logits, shape, Targets::I64(&targets));
    let want = reference::cross_entropy(&op, &input).unwrap();
    let mut refused = 0;
    for (name, ctx) in devices() {
        let logits_buffer = ctx.upload_elements(&logits).unwrap();
        let targets_buffer = ctx.upload_elements(&common::i64_words(&targets)).unwrap();
        let loss = poisoned::<f32>(&ctx, 1);
        let grad = poisoned::<f32>(&ctx, logits.len());
        let lse = poisoned::<f32>(&ctx, shape.rows);
        // A status the op would clear first: still 7s after a refusal means nothing ran.
        let status = ctx.upload_elements(&[7u32; STATUS_WORDS]).unwrap();
        let buffers = CrossEntropyBuffers::new(
            &logits_buffer,
            TargetBuffer::I64(BufferRegion::new(&targets_buffer)),
            &loss,
        )
        .with_grad(&grad)
        .with_lse(&lse)
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
        ctx.check_health().unwrap();
    }
    // WebGPU's 8 storage buffers, and the downlevel 4, are below what it binds.
    assert_eq!(refused, 2);
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
