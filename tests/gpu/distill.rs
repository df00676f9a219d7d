//! The fused distillation against the f64 reference: every strategy, every storage type,
//! every reduction, with and without a mask of class targets and an upstream gradient,
//! a class axis that is not last; the GPU-resident API on poisoned outputs and the host
//! API; special values; its errors; and the same bits every run.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use common::{assert_written, ctx, poisoned, rng};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{compare, round_to, widen};
use wgpu_softmax::{
    BufferRegion, Context, CrossEntropyStatus, DType, Distill, DistillBuffers, DistillInput,
    DistillReduction, Element, Error, STATUS_WORDS, Shape, TargetBuffer, Targets, TensorRef, bf16, f16,
    reference,
};

const LOSS: Tolerance = Tolerance::DISTILL_LOSS;
const GRAD: Tolerance = Tolerance::DISTILL_GRAD;

fn assert_close<T: Element>(what: &str, actual: &[T], expected: &[f64], tolerance: Tolerance) {
    let comparison = compare(&widen(actual), expected, tolerance.for_dtype(T::DTYPE));
    assert!(comparison.passed(), "{what} ({}): {comparison}", T::DTYPE);
}

/// One case's inputs: student and teacher logits of different spreads (the teacher
/// sharper), class targets with every fifth row ignored, an upstream gradient.
struct Case<T> {
    shape: Shape,
    student: Vec<T>,
    teacher: Vec<T>,
    targets: Vec<i64>,
    upstream: Vec<f32>,
}

fn case<T: Element>(seed: u64, shape: Shape) -> Case<T> {
    let mut rng = rng(seed);
    let len = shape.rows * shape.cols;
    Case {
        shape,
        student: round_to(&rng.logits(len, 3.0)),
        teacher: round_to(&rng.logits(len, 5.0)),
        targets: (0..shape.rows)
            .map(|r| if r % 5 == 2 { -100 } else { rng.below(shape.cols as u64) as i64 })
            .collect(),
        upstream: (0..shape.rows).map(|_| rng.uniform(-1.0, 2.0)).collect(),
    }
}

/// Runs `op` on `c` through the GPU-resident API, outputs poisoned first, and checks the
/// loss and gradient against the reference.
fn check_resident<T: Element>(ctx: &Context, op: Distill, c: &Case<T>, masked: bool) {
    let reduction = op.get_reduction();
    let upstream = reduction == DistillReduction::None;
    let mut input = DistillInput::new(&c.student, &c.teacher, c.shape);
    if masked {
        input = input.targets(Targets::I64(&c.targets));
    }
    if upstream {
        input = input.grad_output(&c.upstream);
    }
    let len = c.student.len();
    let loss_len = if upstream { c.shape.rows } else { 1 };
    let student = ctx.upload_elements(&c.student).unwrap();
    let teacher = ctx.upload_elements(&c.teacher).unwrap();
    let targets = ctx.upload_elements(&common::i64_words(&c.targets)).unwrap();
    let grad_output = ctx.upload_elements(&c.upstream).unwrap();
    let loss = poisoned::<f32>(ctx, loss_len);
    let grad = poisoned::<T>(ctx, len);
    let status = ctx.upload_elements(&[7u32; STATUS_WORDS]).unwrap();
    let tensor = |b| TensorRef::new(b, T::DTYPE);
    let mut buffers = DistillBuffers::new(tensor(&student), tensor(&teacher), &loss)
        .with_grad(tensor(&grad))
        .with_status(&status);
    if masked {
        buffers = buffers.with_targets(TargetBuffer::I64((&targets).into()));
    }
    if upstream {
        buffers = buffers.with_grad_output(&grad_output);
    }
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let plan = common::in_one_pass(&format!("{op:?} on {}", c.shape), || {
        op.encode(ctx, &mut encoder, &buffers, c.shape)
    })
    .unwrap();
    ctx.submit_and_wait(encoder).unwrap();
    let want = reference::distill(&op, &input).unwrap();
    let what = format!("{} {op:?} masked {masked} plan {plan:?}", c.shape);
    assert_close(
        &format!("loss, {what}"),
        &assert_written("loss", ctx.download(&loss, loss_len).unwrap()),
        &want.loss,
        LOSS,
    );
    let got = assert_written("grad", ctx.download_elements::<T>(&grad, len).unwrap());
    assert_close(&format!("grad, {what}"), &got, &want.grad.unwrap(), GRAD);
    let words = ctx.download_u32(&status, STATUS_WORDS).unwrap();
    assert_eq!(CrossEntropyStatus::from_words(&words).bad_target_rows, 0, "{what}: status cleared and clean");
}

/// Every strategy the adapter has, every storage type, every reduction, with and without
/// a mask, a few temperatures, rows narrow and wide, contiguous and along a class axis
/// that is not last: on a pairwise covering array, every pair of values of any two of
/// these runs (checked). `WGPU_SOFTMAX_EXHAUSTIVE=1` runs the full product.
#[test]
fn every_strategy_and_storage_type_matches_the_reference() {
    let ctx = ctx();
    let strategies = common::strategies_with_split(ctx);
    let shapes = [
        Shape::new(37, 10),
        Shape::new(9, 300),
        Shape::new(3, 5000),
        Shape::of_dims(&[4, 70, 3], 1).unwrap(),
    ];
    let reductions = [DistillReduction::BatchMean, DistillReduction::Sum, DistillReduction::None];
    let temperatures = [0.5, 1.0, 2.0, 4.0];
    let mut pairs = common::Pairs::new(
        0xD157_0001,
        [
            ("strategy", strategies.len()),
            ("dtype", DType::ALL.len()),
            ("shape", shapes.len()),
            ("reduction", reductions.len()),
            ("masked", 2),
            ("temperature", temperatures.len()),
        ],
    );
    for row in pairs.rows() {
        let [k, d, s, r, masked, t] = row;
        let (shape, masked) = (shapes[s], masked == 1);
        let op = Distill::new().reduction(reductions[r]).temperature(temperatures[t]).strategy(strategies[k]);
        let seed = 0xD157 + (100 * k + 10 * d + s) as u64;
        match DType::ALL[d] {
            DType::F32 => check_resident(ctx, op, &case::<f32>(seed, shape), masked),
            DType::F16 => check_resident(ctx, op, &case::<f16>(seed, shape), masked),
            _ => check_resident(ctx, op, &case::<bf16>(seed, shape), masked),
        }
        pairs.ran(row);
    }
    pairs.assert_pairs_covered();
}

/// The host API, with the planner's choice, against the reference: with and without the
/// gradient, a vocabulary-sized row, and rows of no classes.
#[test]
fn host_api_matches_the_reference() {
    let ctx = ctx();
    let c = case::<f32>(0xD157_0100, Shape::new(6, 50257));
    for op in
        [Distill::new().temperature(2.0), Distill::new().gradient(false).reduction(DistillReduction::Sum)]
    {
        let input = DistillInput::new(&c.student, &c.teacher, c.shape).targets(Targets::I64(&c.targets));
        let got = op.run(ctx, &input).unwrap();
        let want = reference::distill(&op, &input).unwrap();
        assert_close(&format!("loss {op:?}"), &got.loss, &want.loss, LOSS);
        assert_eq!(got.grad.is_some(), op.get_gradient());
        if let (Some(g), Some(w)) = (got.grad, want.grad) {
            assert_close(&format!("grad {op:?}"), &g, &w, GRAD);
        }
    }
    let empty = DistillInput::<f32>::new(&[], &[], Shape::new(3, 0));
    let got = Distill::new().reduction(DistillReduction::None).run(ctx, &empty).unwrap();
    assert_eq!(got.loss, vec![0.0; 3]);
}

/// Special values: a masked teacher entry has probability 0; a student -inf under a
/// teacher's probability gives an infinite loss; NaN gives a NaN row; equal logits 0.
#[test]
fn special_values_follow_the_reference() {
    let ctx = ctx();
    let ninf = f32::NEG_INFINITY;
    let student =
        [0.5, 1.0, 2.0, /**/ ninf, 1.0, 0.0, /**/ f32::NAN, 1.0, 2.0, /**/ 1.0, 2.0, 3.0];
    let teacher = [ninf, 1.0, 0.0, /**/ 0.0, 1.0, 2.0, /**/ 0.0, 0.0, 0.0, /**/ 1.0, 2.0, 3.0];
    let shape = Shape::new(4, 3);
    for strategy in common::strategies_with_split(ctx) {
        let op = Distill::new().reduction(DistillReduction::None).strategy(strategy);
        let input = DistillInput::new(&student[..], &teacher[..], shape);
        let got = op.run(ctx, &input).unwrap();
        let want = reference::distill(&op, &input).unwrap();
        assert_close(&format!("loss {strategy:?}"), &got.loss, &want.loss, LOSS);
        assert_close(&format!("grad {strategy:?}"), &got.grad.unwrap(), &want.grad.unwrap(), GRAD);
        assert_eq!(got.loss[1], f32::INFINITY, "{strategy:?}");
        assert!(got.loss[2].is_nan(), "{strategy:?}");
        assert!(got.loss[3].abs() < 1e-6, "{strategy:?}");
    }
}

/// Bad input: typed errors, before any GPU work.
#[test]
fn bad_input_is_refused_with_a_typed_error() {
    let ctx = ctx();
    let c = case::<f32>(0xD157_0200, Shape::new(4, 5));
    let input = DistillInput::new(&c.student, &c.teacher, c.shape);
    assert!(matches!(
        Distill::new().temperature(0.0).run(ctx, &input),
        Err(Error::InvalidOption { option: "temperature", .. })
    ));
    assert!(matches!(
        Distill::new().run(ctx, &DistillInput::new(&c.student, &c.teacher[1..], c.shape)),
        Err(Error::ShapeMismatch { what: "teacher", .. })
    ));
    assert!(matches!(
        Distill::new().run(ctx, &input.targets(Targets::I64(&[0, 1, 5, 2]))),
        Err(Error::TargetOutOfRange { row: 2, value: 5, .. })
    ));
    assert!(matches!(
        Distill::new().run(ctx, &input.grad_output(&c.upstream)),
        Err(Error::InvalidOption { option: "grad_output", .. })
    ));
    // The GPU-resident API: a gradient of another type, and an output that is an input.
    let student = ctx.upload(&c.student).unwrap();
    let teacher = ctx.upload(&c.teacher).unwrap();
    let loss = ctx.storage_buffer(1).unwrap();
    let half = ctx.elements_buffer(DType::BF16, 20).unwrap();
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let buffers =
        DistillBuffers::new(&student, &teacher, &loss).with_grad(TensorRef::new(&half, DType::BF16));
    assert!(matches!(
        Distill::new().encode(ctx, &mut encoder, &buffers, c.shape),
        Err(Error::DTypeMismatch { .. })
    ));
    let buffers = DistillBuffers::new(&student, &teacher, BufferRegion::new(&teacher));
    assert!(matches!(
        Distill::new().encode(ctx, &mut encoder, &buffers, c.shape),
        Err(Error::AliasedBuffers)
    ));
}

/// The same input gives the same bits, batchmean included.
#[test]
fn runs_are_deterministic() {
    let ctx = ctx();
    let c = case::<f32>(0xD157_0300, Shape::new(300, 1000));
    let input = DistillInput::new(&c.student, &c.teacher, c.shape).targets(Targets::I64(&c.targets));
    let op = Distill::new().temperature(2.0);
    let (first, second) = (op.run(ctx, &input).unwrap(), op.run(ctx, &input).unwrap());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&first.loss), bits(&second.loss));
    assert_eq!(bits(&first.grad.unwrap()), bits(&second.grad.unwrap()));
}
