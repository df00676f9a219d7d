//! Inputs larger than the device's limits: split by rows at aligned offsets, on devices
//! created with deliberately small limits (cheap on a software adapter), and once for real
//! with an input over 128 MiB on the default device.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use std::sync::OnceLock;

use common::{POISON_BITS, ctx, rng};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{compare, round_to, widen};
use wgpu_softmax::{
    Context, ContextOptions, CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, DType, Gradient,
    PlanRequest, Reduction, Shape, Softmax, SoftmaxBackward, Strategy, TargetBuffer, Targets, bf16,
    reference,
};

/// Bindings of 16 KiB at 256-byte offsets, buffers of 64 KiB, grids of 9 x 9 (a one-word
/// array at 256-byte offsets moves in steps of 64 rows: a grid must cover that many).
const SMALL_BINDING: u32 = 16 << 10;
const SMALL_BUFFER: u64 = 64 << 10;

fn small() -> &'static Context {
    static SMALL: OnceLock<Context> = OnceLock::new();
    SMALL.get_or_init(|| {
        let mut options = ContextOptions::default();
        let mut limits = ctx().device().limits();
        limits.max_storage_buffer_binding_size = u64::from(SMALL_BINDING);
        limits.max_buffer_size = SMALL_BUFFER;
        limits.min_storage_buffer_offset_alignment = 256;
        limits.max_compute_workgroups_per_dimension = 9;
        options.limits = Some(limits);
        Context::with_options(options).unwrap()
    })
}

fn strategies(ctx: &Context) -> Vec<Strategy> {
    common::strategies_of(ctx)
}

#[test]
fn the_small_device_has_the_small_limits() {
    let limits = small().device().limits();
    assert_eq!(limits.max_storage_buffer_binding_size, u64::from(SMALL_BINDING));
    assert_eq!(limits.max_buffer_size, SMALL_BUFFER);
    assert_eq!(limits.min_storage_buffer_offset_alignment, 256);
    assert_eq!(limits.max_compute_workgroups_per_dimension, 9);
}

#[test]
fn softmax_and_backward_split_over_bindings_and_buffers() {
    let ctx = small();
    let mut rng = rng(0x11_0001);
    // 400 x 33: 52.8 KB, one buffer but four bindings; 1000 x 33: 132 KB, three buffers.
    for (rows, cols) in [(400, 33), (1000, 33), (70, 100)] {
        let shape = Shape::new(rows, cols);
        let x = rng.logits(rows * cols, 5.0);
        let dy = rng.logits(rows * cols, 1.0);
        for op in [Softmax::new().strategy(Strategy::SplitRow), Softmax::log().strategy(Strategy::SplitRow)] {
            let got = op.run(ctx, &x, shape).unwrap();
            let (want, tolerance) = common::expected(op, &x, shape);
            let c = compare(&got, &want, tolerance);
            assert!(c.passed(), "{op:?} {shape}: {c}");
        }
        for strategy in strategies(ctx) {
            let plan = Softmax::new().strategy(strategy).plan(ctx, shape).unwrap();
            assert!(plan.chunks().len() > 1, "{shape} should need several bindings");
            for op in [Softmax::new().strategy(strategy), Softmax::log().strategy(strategy)] {
                let got = op.run(ctx, &x, shape).unwrap();
                let (want, tolerance) = common::expected(op, &x, shape);
                let c = compare(&got, &want, tolerance);
                assert!(c.passed(), "{op:?} {shape}: {c}");
            }
            #[allow(clippy::cast_possible_truncation)]
            let y: Vec<f32> = reference::softmax(&x, shape).unwrap().iter().map(|&v| v as f32).collect();
            let got = SoftmaxBackward::new().strategy(strategy).run(ctx, &y, &dy, shape).unwrap();
            let c = compare(&got, &reference::softmax_backward(&y, &dy, shape).unwrap(), Tolerance::BACKWARD);
            assert!(c.passed(), "backward {strategy:?} {shape}: {c}");
        }
    }
}

#[test]
fn the_gpu_resident_api_binds_chunks_of_the_callers_buffers() {
    let ctx = small();
    let shape = Shape::new(450, 30);
    let x = rng(0x11_0002).logits(450 * 30, 4.0);
    let input = ctx.upload(&x).unwrap();
    let output = ctx.upload(&vec![f32::from_bits(POISON_BITS); x.len()]).unwrap();
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    let plan = Softmax::log()
        .strategy(Strategy::WorkgroupPerRow)
        .encode(ctx, &mut encoder, &input, &output, shape)
        .unwrap();
    ctx.submit_and_wait(encoder).unwrap();
    assert!(plan.chunks().len() >= 4);
    assert!(plan.chunks().iter().all(|c| c.grid()[0] <= 9
        && c.grid()[1] <= 9
        && u64::from(c.grid()[0]) * u64::from(c.grid()[1]) >= u64::try_from(c.rows()).unwrap()));
    let got = ctx.download(&output, x.len()).unwrap();
    assert!(got.iter().all(|v| v.to_bits() != POISON_BITS));
    let c = compare(&got, &reference::log_softmax(&x, shape).unwrap(), Tolerance::LOG_SOFTMAX);
    assert!(c.passed(), "{c}");
}

#[test]
fn cross_entropy_combines_the_mean_exactly_across_chunks_and_buffers() {
    let ctx = small();
    let mut rng = rng(0x11_0003);
    for (rows, cols) in [(300, 20), (900, 20)] {
        let shape = Shape::new(rows, cols);
        let logits = rng.logits(rows * cols, 5.0);
        let classes: Vec<i64> = (0..rows)
            .map(|i| if i % 9 == 4 { -100 } else { i64::try_from(rng.below(cols as u64)).unwrap() })
            .collect();
        let weight: Vec<f32> = (0..cols).map(|_| rng.uniform(0.5, 2.0)).collect();
        let probabilities: Vec<f32> = {
            let mut p: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(0.0, 1.0)).collect();
            for row in p.chunks_mut(cols) {
                let sum: f32 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= sum);
            }
            p
        };
        for targets in [Targets::I64(&classes), Targets::Probabilities(&probabilities)] {
            let input = CrossEntropyInput::new(&logits, shape, targets).weight(&weight);
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                for strategy in strategies(ctx) {
                    let op = CrossEntropy::new()
                        .reduction(reduction)
                        .label_smoothing(0.1)
                        .argmax(true)
                        .strategy(strategy);
                    let got = op.run(ctx, &input).unwrap();
                    let want = reference::cross_entropy(&op, &input).unwrap();
                    let what = format!("{shape} {reduction:?} {strategy:?} {targets:?}");
                    let c = compare(&got.loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
                    assert!(c.passed(), "{what}: loss {c}");
                    let c = compare(
                        got.grad.as_ref().unwrap(),
                        want.grad.as_ref().unwrap(),
                        Tolerance::CROSS_ENTROPY_GRAD,
                    );
                    assert!(c.passed(), "{what}: grad {c}");
                    assert_eq!(got.argmax, want.argmax, "{what}");
                    assert_eq!(got.correct, want.correct, "{what}");
                }
            }
        }
    }
}

#[test]
fn cross_entropy_gpu_resident_over_chunks_reports_bad_rows_by_their_global_index() {
    let ctx = small();
    let shape = Shape::new(400, 16);
    let logits = ctx.upload(&rng(0x11_0004).logits(400 * 16, 3.0)).unwrap();
    let mut targets = vec![1i32; 400];
    targets[333] = 99;
    targets[350] = -7;
    let target_words: Vec<f32> = targets.iter().map(|&t| f32::from_bits(t.cast_unsigned())).collect();
    let targets = ctx.upload(&target_words).unwrap();
    let loss = ctx.storage_buffer(1).unwrap();
    let status = ctx.storage_buffer(4).unwrap();
    let buffers =
        CrossEntropyBuffers::new(&logits, TargetBuffer::I32((&targets).into()), &loss).with_status(&status);
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    let plan =
        CrossEntropy::new().gradient(Gradient::Skip).encode(ctx, &mut encoder, &buffers, shape).unwrap();
    ctx.submit_and_wait(encoder).unwrap();
    assert!(plan.chunks().len() > 1);
    let status = wgpu_softmax::CrossEntropyStatus::read(ctx, &status).unwrap();
    assert_eq!((status.bad_target_rows, status.first_bad_target_row), (2, Some(333)));
    assert!(ctx.download(&loss, 1).unwrap()[0].is_nan());
}

#[test]
fn an_input_over_128_mib_runs_on_the_default_device() {
    // 34 MiB floats: 136 MiB, more than lavapipe's 128 MiB storage binding.
    let ctx = ctx();
    let shape = Shape::new(34 * 1024, 1024);
    let bytes = shape.byte_len().unwrap();
    let binding = ctx.device().limits().max_storage_buffer_binding_size;
    assert!(bytes > 128 << 20);
    let x = rng(0x11_0005).logits(shape.len().unwrap(), 6.0);
    let plan = Softmax::new().plan(ctx, shape).unwrap();
    if bytes > binding {
        assert!(
            plan.chunks().len() >= 2,
            "{bytes} bytes over a {binding}-byte binding in {} chunk(s)",
            plan.chunks().len()
        );
    }
    let got = Softmax::new().run(ctx, &x, shape).unwrap();
    let c = compare(&got, &reference::softmax(&x, shape).unwrap(), Tolerance::SOFTMAX);
    assert!(c.passed(), "{c}");
    // The mean cross-entropy over the same rows, with the gradient in place.
    let classes: Vec<i64> = (0..shape.rows as i64).map(|i| i % 1000).collect();
    let input = CrossEntropyInput::new(&x, shape, Targets::I64(&classes));
    let op = CrossEntropy::new().gradient(Gradient::InPlace);
    let got = op.run(ctx, &input).unwrap();
    let want = reference::cross_entropy(&op, &input).unwrap();
    let c = compare(&got.loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
    assert!(c.passed(), "{c}");
    let c = compare(got.grad.as_ref().unwrap(), want.grad.as_ref().unwrap(), Tolerance::CROSS_ENTROPY_GRAD);
    assert!(c.passed(), "{c}");
}

/// The sampler and the chain verifier in blocks of rows on the small device (logits, masks
/// and probabilities past one 16 KiB binding): every draw in its row's allowed set, and
/// the same draws and masks as the default device's single block, since each row's
/// uniforms follow its own index.
#[test]
fn sampling_splits_rows_over_bindings() {
    use wgpu_softmax::{ChainShape, ChainVerifier, RowSettings, SampleOutputs, Sampler, bf16};
    let (rows, cols) = (300, 33);
    let shape = Shape::new(rows, cols);
    let logits = rng(0x11_0007).logits(rows * cols, 4.0);
    let sampler = Sampler { top_k: 7, top_p: 0.8, num_samples: 3, seed: 11, ..Sampler::default() };
    let outputs = SampleOutputs { logprobs: true, probs: true, masked_logits: true };
    let settings = RowSettings::default();
    let expected = reference::sample_distribution(&logits, shape, &sampler).unwrap();
    let blocked = sampler.run_with_outputs(small(), &logits, shape, outputs, &settings).unwrap();
    let whole = sampler.run_with_outputs(ctx(), &logits, shape, outputs, &settings).unwrap();
    assert_eq!(blocked, whole, "f32: blocks of rows draw and mask as one block does");
    for (row, probabilities) in expected.iter().enumerate() {
        let probabilities = probabilities.as_ref().unwrap();
        for &id in &blocked.ids[row * 3..row * 3 + 3] {
            assert!(probabilities[usize::try_from(id).unwrap()] > 0.0, "row {row}: {id} is filtered");
        }
    }
    // bf16 at 34 columns: blocks of 64 rows start at aligned offsets in both the logits
    // (68 bytes a row) and the probabilities (136); at 33 the smallest aligned block (128
    // rows) would not fit this device's binding, and that is a typed error.
    let (rows, cols) = (300, 34);
    let shape = Shape::new(rows, cols);
    let halves: Vec<bf16> =
        rng(0x11_0009).logits(rows * cols, 4.0).iter().map(|&v| bf16::from_f32(v)).collect();
    let blocked = sampler.run_with_outputs(small(), &halves, shape, outputs, &settings).unwrap();
    let whole = sampler.run_with_outputs(ctx(), &halves, shape, outputs, &settings).unwrap();
    assert_eq!(blocked, whole, "bf16: blocks of rows draw and mask as one block does");

    // The verifier: 40 rows of 2 drafts over 60 tokens, 19 KiB of target probabilities.
    let chain = ChainShape { rows: 40, drafts: 2, vocab: 60 };
    let mut draws = rng(0x11_0008);
    let target = common::probability_rows(&mut draws, 40 * 3, 60);
    let draft = common::probability_rows(&mut draws, 40 * 2, 60);
    let draft_ids: Vec<i32> = (0..80).map(|_| draws.below(60) as i32).collect();
    let verifier = ChainVerifier { seed: 5 };
    let blocked = verifier.run(small(), &draft_ids, &draft, &target, chain).unwrap();
    let whole = verifier.run(ctx(), &draft_ids, &draft, &target, chain).unwrap();
    assert_eq!(blocked, whole, "the verifier in blocks of rows");
    assert_eq!(blocked.status.bad_rows, 0);
}

/// 16-bit rows paired two to an invocation (a class axis with an even number of positions
/// after it) over several bindings and buffers: every chunk starts at an even row, and the
/// mean of the cross-entropy still sums every row once.
#[test]
fn paired_rows_split_over_bindings_and_buffers() {
    let ctx = small();
    let mut rng = rng(0x11_0007);
    // 30 x 7 x 64 bf16: 26.9 KB, two bindings; 80 x 7 x 64: 71.7 KB, two buffers.
    for outer in [30, 80] {
        let shape = Shape::with_inner(outer, 7, 64);
        let request = PlanRequest::Softmax { log: false, strategy: None };
        let explained = ctx.explain(&request, shape, DType::BF16).unwrap();
        assert_eq!(explained.rows_per_invocation, 2, "{shape}");
        assert!(explained.chunks > 1, "{shape} should need several bindings");
        let x: Vec<bf16> = round_to(&rng.logits(shape.len().unwrap(), 5.0));
        let got = Softmax::log().run(ctx, &x, shape).unwrap();
        let c = compare(
            &widen(&got),
            &reference::log_softmax(&x, shape).unwrap(),
            Tolerance::LOG_SOFTMAX.for_dtype(DType::BF16),
        );
        assert!(c.passed(), "{shape}: {c}");
        let targets: Vec<i64> = (0..shape.rows).map(|_| i64::try_from(rng.below(7)).unwrap()).collect();
        let input = CrossEntropyInput::new(&x, shape, Targets::I64(&targets));
        let op = CrossEntropy::new().reduction(Reduction::Mean);
        let got = op.run(ctx, &input).unwrap();
        let want = reference::cross_entropy(&op, &input).unwrap();
        let loss = compare(&got.loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
        assert!(loss.passed(), "{shape} loss: {loss}");
        let grad = compare(
            &widen(got.grad.as_ref().unwrap()),
            want.grad.as_ref().unwrap(),
            Tolerance::CROSS_ENTROPY_GRAD.for_dtype(DType::BF16),
        );
        assert!(grad.passed(), "{shape} grad: {grad}");
    }
}
