//! The host API, the GPU-resident API's argument checks, and contexts built other ways:
//! wrapping a caller's device, and a device without the optional features.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use common::{ctx, rng};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::compare;
use wgpu_softmax::{
    Context, ContextOptions, DType, Error, Shape, Softmax, Strategy, log_softmax, reference, softmax,
};

#[test]
fn host_api_matches_reference() {
    let mut rng = rng(0xAB_0001);
    for (rows, cols) in [(1, 1), (9, 10), (100, 1000), (3, 9000)] {
        let shape = Shape::new(rows, cols);
        let x = rng.logits(rows * cols, 10.0);
        let p = softmax(ctx(), &x, shape).unwrap();
        let c = compare(&p, &reference::softmax(&x, shape).unwrap(), Tolerance::SOFTMAX);
        assert!(c.passed(), "softmax {shape}: {c}");
        let l = log_softmax(ctx(), &x, shape).unwrap();
        let c = compare(&l, &reference::log_softmax(&x, shape).unwrap(), Tolerance::LOG_SOFTMAX);
        assert!(c.passed(), "log_softmax {shape}: {c}");
    }
}

#[test]
fn empty_shapes_give_empty_results() {
    assert_eq!(softmax::<f32>(ctx(), &[], Shape::new(0, 10)).unwrap(), Vec::<f32>::new());
    assert_eq!(log_softmax::<f32>(ctx(), &[], Shape::new(4, 0)).unwrap(), Vec::<f32>::new());
}

#[test]
fn a_wrong_length_is_a_typed_error() {
    let err = softmax(ctx(), &[1.0; 7], Shape::new(2, 4)).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { expected: 8, actual: 7, .. }), "{err}");
    let err = softmax(ctx(), &[1.0; 7], Shape::new(usize::MAX, 2)).unwrap_err();
    assert!(matches!(err, Error::ShapeOverflow { .. }), "{err}");
}

fn encode_into(input: &wgpu::Buffer, output: &wgpu::Buffer, shape: Shape) -> Result<(), Error> {
    let mut encoder = ctx().device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    Softmax::new().encode(ctx(), &mut encoder, input, output, shape).map(|_| ())
}

#[test]
fn caller_buffers_are_checked_before_anything_is_recorded() {
    let shape = Shape::new(4, 8);
    let input = ctx().upload(&[0.5; 32]).unwrap();
    let output = ctx().storage_buffer(32).unwrap();

    let small = ctx().storage_buffer(31).unwrap();
    let err = encode_into(&input, &small, shape).unwrap_err();
    assert!(matches!(err, Error::BufferTooSmall { what: "output", required: 128, actual: 124 }), "{err}");
    let err = encode_into(&small, &output, shape).unwrap_err();
    assert!(matches!(err, Error::BufferTooSmall { what: "input", .. }), "{err}");

    let not_storage = ctx().device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 128,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let err = encode_into(&input, &not_storage, shape).unwrap_err();
    assert!(matches!(err, Error::MissingUsage { what: "output", .. }), "{err}");
    assert!(err.to_string().contains("STORAGE"), "{err}");

    let err = encode_into(&input, &input, shape).unwrap_err();
    assert!(matches!(err, Error::AliasedBuffers), "{err}");

    // After all the refusals the device is still healthy and the buffers are usable.
    encode_into(&input, &output, shape).unwrap();
}

/// A bf16 tensor passed as a plain buffer (read as f32) is twice too small in f32: the
/// error says that it holds the tensor in 16 bits and how to name its type.
#[test]
fn a_16_bit_tensor_passed_untyped_is_named_as_such() {
    let shape = Shape::new(200, 1000);
    let x = vec![wgpu_softmax::bf16::from_f32(0.5); 200 * 1000];
    let input = ctx().upload_elements(&x).unwrap();
    let output = ctx().storage_buffer(200 * 1000).unwrap();
    let err = encode_into(&input, &output, shape).unwrap_err();
    assert!(
        matches!(err, Error::UntypedHalfTensor { what: "input", required: 800_000, actual: 400_000 }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("TensorRef::new") && text.contains("DType::BF16"), "{text}");
    // A buffer too small even for 16 bits is only too small.
    let small = ctx().storage_buffer(1000).unwrap();
    let err = encode_into(&small, &output, shape).unwrap_err();
    assert!(matches!(err, Error::BufferTooSmall { what: "input", .. }), "{err}");
}

#[test]
fn the_caller_encoder_is_only_recorded_into() {
    // Two ops recorded into one encoder, one submit by the caller: the second reads what
    // the first wrote.
    let shape = Shape::new(16, 33);
    let x = rng(0xAB_0002).logits(16 * 33, 3.0);
    let input = ctx().upload(&x).unwrap();
    let probabilities = ctx().storage_buffer(x.len()).unwrap();
    let twice = ctx().storage_buffer(x.len()).unwrap();
    let mut encoder = ctx().device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    Softmax::new().encode(ctx(), &mut encoder, &input, &probabilities, shape).unwrap();
    Softmax::new().encode(ctx(), &mut encoder, &probabilities, &twice, shape).unwrap();
    ctx().submit_and_wait(encoder).unwrap();
    let got = ctx().download(&twice, x.len()).unwrap();
    let once = reference::softmax(&x, shape).unwrap();
    #[allow(clippy::cast_possible_truncation)]
    let once: Vec<f32> = once.iter().map(|&v| v as f32).collect();
    let c = compare(&got, &reference::softmax(&once, shape).unwrap(), Tolerance::SOFTMAX);
    assert!(c.passed(), "{c}");
}

#[test]
fn a_context_wraps_the_callers_own_device() {
    let (device, queue) = (ctx().device().clone(), ctx().queue().clone());
    let embedded = Context::from_device(device, queue);
    assert_eq!(embedded.adapter_info().name, ctx().adapter_info().name);
    assert_eq!(embedded.has_subgroups(), ctx().has_subgroups());
    assert_eq!(embedded.loop_iteration_limit(), ctx().loop_iteration_limit());
    let x = rng(0xAB_0003).logits(5 * 50, 4.0);
    let shape = Shape::new(5, 50);
    let c = compare(
        &softmax(&embedded, &x, shape).unwrap(),
        &reference::softmax(&x, shape).unwrap(),
        Tolerance::SOFTMAX,
    );
    assert!(c.passed(), "{c}");
}

#[test]
fn without_subgroups_the_subgroup_strategy_is_refused_and_the_rest_run() {
    let mut options = ContextOptions::default();
    options.features = wgpu::Features::empty();
    let plain = Context::with_options(options).unwrap();
    assert!(!plain.has_subgroups());
    let err = Softmax::new()
        .strategy(Strategy::SubgroupPerRow)
        .run(&plain, &[1.0, 2.0], Shape::new(1, 2))
        .unwrap_err();
    assert!(matches!(err, Error::StrategyUnavailable { strategy: Strategy::SubgroupPerRow, .. }), "{err}");
    assert!(err.to_string().contains("SUBGROUP"), "{err}");
    let x = rng(0xAB_0004).logits(20 * 3000, 4.0);
    let shape = Shape::new(20, 3000);
    assert_eq!(Softmax::new().plan(&plain, shape).unwrap().strategy(), Strategy::WorkgroupPerRow);
    let c = compare(
        &softmax(&plain, &x, shape).unwrap(),
        &reference::softmax(&x, shape).unwrap(),
        Tolerance::SOFTMAX,
    );
    assert!(c.passed(), "{c}");
}

#[test]
fn an_adapter_name_that_matches_nothing_is_a_typed_error() {
    let mut options = ContextOptions::default();
    options.adapter_name = Some("no such adapter 0xdeadbeef".into());
    let err = Context::with_options(options).unwrap_err();
    assert!(matches!(err, Error::NoAdapter { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("mesa-vulkan-drivers") && text.contains("0xdeadbeef"), "{text}");
}

#[test]
fn a_too_short_timeout_is_reported_not_hung() {
    // A zero timeout cannot be met by any real submission: the call must come back with
    // Timeout (or finish, if the driver completed before the first check), never hang.
    let hurried = ctx().with_timeout(std::time::Duration::ZERO);
    let x = rng(0xAB_0005).logits(4096 * 256, 4.0);
    match softmax(&hurried, &x, Shape::new(4096, 256)) {
        Err(Error::Timeout(_)) | Ok(_) => {}
        Err(other) => panic!("expected a timeout, got {other}"),
    }
    // The shared context is unaffected.
    assert!(softmax(ctx(), &[1.0, 1.0], Shape::new(1, 2)).unwrap() == vec![0.5, 0.5]);
}

#[test]
fn a_context_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Context>();
    let x = rng(0xAB_0006).logits(8 * 40, 4.0);
    let shape = Shape::new(8, 40);
    let expected = reference::softmax(&x, shape).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let ctx = ctx().clone();
            let (x, expected) = (&x, &expected);
            scope.spawn(move || {
                let c = compare(&softmax(&ctx, x, shape).unwrap(), expected, Tolerance::SOFTMAX);
                assert!(c.passed(), "{c}");
            });
        }
    });
}

#[test]
fn a_buffer_of_another_device_is_a_typed_error() {
    // Two contexts made by Context::new share one wgpu instance: the other's buffer is a
    // device mismatch, refused with a typed error, never a panic inside wgpu nor a silent
    // use of some buffer of this device that happens to share its id.
    let other = Context::new().unwrap();
    let _padding = [other.storage_buffer(8).unwrap(), other.storage_buffer(8).unwrap()];
    let foreign = other.upload(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    let mine = ctx().storage_buffer(4).unwrap();
    let mut encoder = ctx().device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    let shape = Shape::new(1, 4);
    let err = Softmax::new().encode(ctx(), &mut encoder, &foreign, &mine, shape).unwrap_err();
    assert!(matches!(err, Error::ForeignBuffer(_)), "{err}");
    let theirs = other.storage_buffer(4).unwrap();
    let input = ctx().upload(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    let err = Softmax::new().encode(ctx(), &mut encoder, &input, &theirs, shape).unwrap_err();
    assert!(matches!(err, Error::ForeignBuffer(_)), "{err}");
    assert!(err.to_string().contains("another device"), "{err}");
    // The context is still healthy, and works on its own buffers.
    ctx().check_health().unwrap();
    assert_eq!(softmax(ctx(), &[0.0, 0.0], Shape::new(1, 2)).unwrap(), vec![0.5, 0.5]);
}

/// The async API (the web's only way; on native it waits as the blocking API does): an
/// op submitted without a wait and read back by `download_async` matches the reference
/// and the blocking download, in every read-back form; a command wgpu refuses comes back
/// from `submit` as a typed error, and the context keeps working after it.
#[test]
fn the_async_api_reads_what_the_blocking_api_reads() {
    let ctx = ctx();
    let shape = Shape::new(5, 37);
    let x = rng(0xAB_0A5C).logits(shape.rows * shape.cols, 8.0);
    let input = ctx.upload(&x).unwrap();
    let output = ctx.storage_buffer(x.len()).unwrap();
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    Softmax::new().encode(ctx, &mut encoder, &input, &output, shape).unwrap();
    ctx.submit(encoder).unwrap();
    let read = pollster::block_on(ctx.download_async(&output, x.len())).unwrap();
    let c = compare(&read, &reference::softmax(&x, shape).unwrap(), Tolerance::SOFTMAX);
    assert!(c.passed(), "softmax through the async API: {c}");
    assert_eq!(read, ctx.download(&output, x.len()).unwrap());
    let widened = pollster::block_on(ctx.download_as_f32_async(&output, DType::F32, x.len()));
    assert_eq!(widened.unwrap(), read);
    let words = pollster::block_on(ctx.download_u32_async(&output, 3)).unwrap();
    assert_eq!(words, read[..3].iter().map(|v| v.to_bits()).collect::<Vec<_>>());

    let small = ctx.storage_buffer(4).unwrap();
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&small, 0, &small, 8, 64);
    let refused = ctx.submit(encoder);
    assert!(matches!(refused, Err(Error::Validation(_))), "a copy past the end: {refused:?}");
    pollster::block_on(ctx.check_errors_async()).unwrap();
    ctx.check_health().unwrap();
}
