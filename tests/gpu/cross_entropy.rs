//! The fused cross-entropy against the f64 reference: every option combination on every
//! strategy the adapter has, through the GPU-resident API with poisoned outputs, plus the
//! host API, the seed vectors, the extremes, bad targets, the in-place gradient and
//! determinism.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use common::{POISON_BITS, assert_written, ctx, poisoned, rng};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{SeededRng, compare, widen};
use wgpu_softmax::{
    Context, CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, CrossEntropyOutput, CrossEntropyStatus,
    Element, Error, Gradient, Reduction, STATUS_WORDS, Shape, Strategy, TargetBuffer, Targets, TensorRef,
    reference,
};

fn strategies() -> Vec<Strategy> {
    common::strategies_with_split(ctx())
}

/// Runs `op` through the GPU-resident API: outputs poisoned, targets uploaded as given
/// (i64 as i32), every output checked written. Returns the outputs and the status.
fn run_resident<T: Element>(
    op: CrossEntropy,
    input: &CrossEntropyInput<'_, T>,
) -> (CrossEntropyOutput<T, f32>, CrossEntropyStatus) {
    run_resident_on(ctx(), op, input)
}

fn run_resident_on<T: Element>(
    ctx: &Context,
    op: CrossEntropy,
    input: &CrossEntropyInput<'_, T>,
) -> (CrossEntropyOutput<T, f32>, CrossEntropyStatus) {
    let shape = input.shape;
    let logits = ctx.upload_elements(input.logits).unwrap();
    let class_words: Vec<u32> = match input.targets {
        Targets::U32(t) => t.to_vec(),
        Targets::I32(t) => t.iter().map(|&v| v.cast_unsigned()).collect(),
        Targets::I64(t) => t.iter().map(|&v| i32::try_from(v).unwrap().cast_unsigned()).collect(),
        Targets::Probabilities(_) => vec![0],
    };
    let class_buffer = ctx.upload_elements(&class_words).unwrap();
    let probability_buffer = match input.targets {
        Targets::Probabilities(p) => ctx.upload_elements(p).unwrap(),
        _ => ctx.upload_elements(&[0u32]).unwrap(),
    };
    let targets = match input.targets {
        Targets::U32(_) => TargetBuffer::U32((&class_buffer).into()),
        Targets::I32(_) | Targets::I64(_) => TargetBuffer::I32((&class_buffer).into()),
        Targets::Probabilities(_) => {
            TargetBuffer::Probabilities(TensorRef::new(&probability_buffer, T::DTYPE))
        }
    };
    let weight = input.weight.map(|w| ctx.upload(w).unwrap());
    let grad_output = input.grad_output.map(|g| ctx.upload(g).unwrap());
    let loss_len = if op.get_reduction() == Reduction::None { shape.rows } else { 1 };
    let loss = poisoned::<f32>(ctx, loss_len);
    let grad = (op.get_gradient() == Gradient::Separate).then(|| poisoned::<T>(ctx, input.logits.len()));
    let argmax = op.get_argmax().then(|| poisoned::<f32>(ctx, shape.rows));
    let status = poisoned::<f32>(ctx, STATUS_WORDS);
    let mut buffers =
        CrossEntropyBuffers::new(TensorRef::new(&logits, T::DTYPE), targets, &loss).with_status(&status);
    if let Some(w) = &weight {
        buffers = buffers.with_weight(w);
    }
    if let Some(g) = &grad_output {
        buffers = buffers.with_grad_output(g);
    }
    if let Some(g) = &grad {
        buffers = buffers.with_grad(TensorRef::new(g, T::DTYPE));
    }
    if let Some(a) = &argmax {
        buffers = buffers.with_argmax(a);
    }
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    let what = format!("{op:?} on {shape}");
    common::in_one_pass(&what, || op.encode(ctx, &mut encoder, &buffers, shape))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    ctx.submit_and_wait(encoder).unwrap();
    let loss = assert_written(&format!("{op:?} on {shape}: loss"), ctx.download(&loss, loss_len).unwrap());
    let len = input.logits.len();
    let grad = match op.get_gradient() {
        Gradient::Separate => Some(assert_written(
            &format!("{op:?} on {shape}: grad"),
            ctx.download_elements::<T>(grad.as_ref().unwrap(), len).unwrap(),
        )),
        Gradient::InPlace => Some(ctx.download_elements::<T>(&logits, len).unwrap()),
        Gradient::Skip => None,
    };
    let argmax = argmax.map(|a| {
        let values = ctx.download_u32(&a, shape.rows).unwrap();
        assert!(!values.contains(&POISON_BITS), "{op:?} on {shape}: argmax not written");
        values
    });
    let status = CrossEntropyStatus::read(ctx, &status).unwrap();
    let correct =
        (op.get_argmax() && !matches!(input.targets, Targets::Probabilities(_))).then_some(status.correct);
    (CrossEntropyOutput { loss, grad, argmax, correct, lse: None, z_loss: None }, status)
}

/// Compares a GPU result with the reference; panics with the details on any mismatch.
fn assert_matches_reference<T: Element>(
    what: &str,
    gpu: &CrossEntropyOutput<T, f32>,
    op: CrossEntropy,
    input: &CrossEntropyInput<'_, T>,
) {
    let want = reference::cross_entropy(&op, input).unwrap();
    let c = compare(&gpu.loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
    assert!(
        c.passed(),
        "{what}: loss: {c}\n gpu {:?}\n ref {:?}",
        &gpu.loss[..gpu.loss.len().min(8)],
        &want.loss[..want.loss.len().min(8)]
    );
    match (&gpu.grad, &want.grad) {
        (Some(g), Some(w)) => {
            let c = compare(&widen(g), w, Tolerance::CROSS_ENTROPY_GRAD.for_dtype(T::DTYPE));
            assert!(c.passed(), "{what}: grad: {c}");
        }
        (None, None) => {}
        _ => panic!("{what}: gradient presence differs"),
    }
    assert_eq!(gpu.argmax, want.argmax, "{what}: argmax");
    assert_eq!(gpu.correct, want.correct, "{what}: correct count");
}

/// Class targets for `rows` rows of `cols` classes, a few of them `ignore_index`.
fn class_targets(rng: &mut SeededRng, rows: usize, cols: usize, ignore_index: i64) -> Vec<i64> {
    (0..rows)
        .map(
            |_| if rng.below(5) == 0 { ignore_index } else { i64::try_from(rng.below(cols as u64)).unwrap() },
        )
        .collect()
}

/// Probability rows: random non-negative values normalised to sum to 1 (some exactly 0).
fn probability_targets(rng: &mut SeededRng, rows: usize, cols: usize) -> Vec<f32> {
    let mut p: Vec<f32> =
        (0..rows * cols).map(|_| if rng.below(4) == 0 { 0.0 } else { rng.uniform(0.0, 1.0) }).collect();
    for row in p.chunks_mut(cols) {
        let sum: f32 = row.iter().sum();
        if sum > 0.0 {
            row.iter_mut().for_each(|v| *v /= sum);
        }
    }
    p
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    U32,
    I32,
    I64,
    Probabilities,
}

/// One shape's inputs for every kind of targets.
struct Inputs {
    shape: Shape,
    logits: Vec<f32>,
    weight: Vec<f32>,
    upstream: Vec<f32>,
    probabilities: Vec<f32>,
    indices: Vec<i64>,
    as_u32: Vec<u32>,
    as_i32: Vec<i32>,
}

fn inputs(rng: &mut SeededRng, rows: usize, cols: usize) -> Inputs {
    let logits = rng.logits(rows * cols, 6.0);
    let weight: Vec<f32> = (0..cols).map(|_| rng.uniform(0.2, 2.0)).collect();
    let upstream: Vec<f32> = (0..rows).map(|_| rng.uniform(-1.5, 2.0)).collect();
    let probabilities = probability_targets(rng, rows, cols);
    let indices = class_targets(rng, rows, cols, -100);
    // u32 targets cannot hold -100: their ignored rows take a large ignore_index.
    let as_u32 = indices.iter().map(|&v| if v < 0 { 7_000_000 } else { u32::try_from(v).unwrap() }).collect();
    let as_i32 = indices.iter().map(|&v| i32::try_from(v).unwrap()).collect();
    Inputs { shape: Shape::new(rows, cols), logits, weight, upstream, probabilities, indices, as_u32, as_i32 }
}

/// Every option (target kind, reduction, upstream gradient, class weights, label
/// smoothing, gradient mode, argmax) with every strategy, both cached-rows paths and
/// every shape against the reference, on a pairwise covering array: every pair of values
/// of any two of these runs (checked). `WGPU_SOFTMAX_EXHAUSTIVE=1` runs the full product.
#[test]
fn every_option_combination_matches_reference_on_every_strategy() {
    let mut rng = rng(0xCE_0001);
    let strategies = strategies();
    let paths = common::both_paths(ctx());
    let gradients = [Gradient::Separate, Gradient::Skip, Gradient::InPlace];
    let shapes: Vec<Inputs> = [(37, 10), (9, 300), (3, 1000)].map(|(r, c)| inputs(&mut rng, r, c)).into();
    let kinds = [Kind::U32, Kind::I32, Kind::I64, Kind::Probabilities];
    // The upstream gradient only with the unreduced loss.
    let reductions = [
        (Reduction::None, false),
        (Reduction::None, true),
        (Reduction::Mean, false),
        (Reduction::Sum, false),
    ];
    let smoothings = [0.0, 0.1, 0.25];
    let mut pairs = common::Pairs::new(
        0xCE_0002,
        [
            ("strategy", strategies.len()),
            ("path", paths.len()),
            ("gradient", gradients.len()),
            ("argmax", 2),
            ("shape", shapes.len()),
            ("targets", kinds.len()),
            ("reduction", reductions.len()),
            ("weight", 2),
            ("smoothing", smoothings.len()),
        ],
    );
    for row in pairs.rows() {
        let [s, p, g, argmax, sh, k, r, weight, smoothing] = row;
        let (path, inputs, shape) = (&paths[p], &shapes[sh], shapes[sh].shape);
        let (kind, (reduction, use_upstream)) = (kinds[k], reductions[r]);
        let ignore_index = if matches!(kind, Kind::U32) { 7_000_000 } else { -100 };
        let targets = match kind {
            Kind::U32 => Targets::U32(&inputs.as_u32),
            Kind::I32 => Targets::I32(&inputs.as_i32),
            Kind::I64 => Targets::I64(&inputs.indices),
            Kind::Probabilities => Targets::Probabilities(&inputs.probabilities),
        };
        let mut input = CrossEntropyInput::new(&inputs.logits, shape, targets);
        if weight == 1 {
            input = input.weight(&inputs.weight);
        }
        if use_upstream {
            input = input.grad_output(&inputs.upstream);
        }
        let op = CrossEntropy::new()
            .reduction(reduction)
            .ignore_index(ignore_index)
            .label_smoothing(smoothings[smoothing])
            .gradient(gradients[g])
            .argmax(argmax == 1)
            .strategy(strategies[s]);
        let (gpu, status) = run_resident_on(path, op, &input);
        assert_eq!(status.bad_target_rows, 0);
        let what = format!(
            "{kind:?} {shape} {op:?} cached {} weight {weight} upstream {use_upstream}",
            path.cached_rows()
        );
        assert_matches_reference(&what, &gpu, op, &input);
        pairs.ran(row);
    }
    pairs.assert_pairs_covered();
}

#[test]
fn host_api_matches_reference() {
    let mut rng = rng(0xCE_0002);
    let shape = Shape::new(50, 20);
    let logits = rng.logits(1000, 5.0);
    let targets = class_targets(&mut rng, 50, 20, -100);
    let weight: Vec<f32> = (0..20).map(|_| rng.uniform(0.5, 1.5)).collect();
    let probabilities = probability_targets(&mut rng, 50, 20);
    for op in [
        CrossEntropy::new(),
        CrossEntropy::new().reduction(Reduction::Sum).label_smoothing(0.2).argmax(true),
        CrossEntropy::new().reduction(Reduction::None).gradient(Gradient::InPlace),
        CrossEntropy::new().gradient(Gradient::Skip).argmax(true),
    ] {
        for input in [
            CrossEntropyInput::new(&logits, shape, Targets::I64(&targets)).weight(&weight),
            CrossEntropyInput::new(&logits, shape, Targets::Probabilities(&probabilities)),
        ] {
            let gpu = op.run(ctx(), &input).unwrap();
            assert_matches_reference(&format!("host {op:?}"), &gpu, op, &input);
        }
    }
}

#[test]
fn the_in_place_gradient_equals_the_separate_one() {
    let mut rng = rng(0xCE_0003);
    let shape = Shape::new(40, 333);
    let logits = rng.logits(40 * 333, 4.0);
    let targets = class_targets(&mut rng, 40, 333, -100);
    let input = CrossEntropyInput::new(&logits, shape, Targets::I64(&targets));
    for strategy in strategies() {
        let separate = CrossEntropy::new().label_smoothing(0.05).argmax(true).strategy(strategy);
        let in_place = separate.gradient(Gradient::InPlace);
        let (a, _) = run_resident(separate, &input);
        let (b, _) = run_resident(in_place, &input);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(a.grad.as_ref().unwrap()),
            bits(b.grad.as_ref().unwrap()),
            "{strategy:?}: gradients differ"
        );
        assert_eq!(bits(&a.loss), bits(&b.loss), "{strategy:?}: losses differ");
        assert_eq!(a.argmax, b.argmax);
        assert_matches_reference(&format!("{strategy:?} in place"), &b, in_place, &input);
    }
}

#[test]
fn the_mean_is_the_same_bits_every_run() {
    let mut rng = rng(0xCE_0004);
    let shape = Shape::new(3000, 37);
    let logits = rng.logits(3000 * 37, 8.0);
    let targets = class_targets(&mut rng, 3000, 37, -100);
    let input = CrossEntropyInput::new(&logits, shape, Targets::I64(&targets));
    for strategy in strategies() {
        let op = CrossEntropy::new().label_smoothing(0.1).strategy(strategy);
        let first = op.run(ctx(), &input).unwrap();
        for _ in 0..3 {
            let again = op.run(ctx(), &input).unwrap();
            assert_eq!(first.loss[0].to_bits(), again.loss[0].to_bits(), "{strategy:?}");
            assert_eq!(first.grad, again.grad, "{strategy:?}");
        }
    }
}

/// The mean and the sum fold their reduction into the fused kernel: only the mean's
/// divisor pass (class indices) and the kernel are recorded, on every strategy, and the
/// loss and gradient still match the reference, with outputs poisoned.
#[test]
fn the_mean_and_sum_take_at_most_two_dispatches() {
    let mut rng = rng(0xCE_0005);
    // More rows than one workgroup of the reduction passes takes, and than a few grids
    // of the thread kernel: many workgroups race for the last ticket.
    let data = inputs(&mut rng, 1500, 33);
    let weighted =
        CrossEntropyInput::new(&data.logits, data.shape, Targets::I64(&data.indices)).weight(&data.weight);
    let soft = CrossEntropyInput::new(&data.logits, data.shape, Targets::Probabilities(&data.probabilities));
    for strategy in strategies() {
        // The split's statistics pass comes before its kernel's write pass.
        let kernel = if strategy == Strategy::SplitRow { 2 } else { 1 };
        for (reduction, input, divisor) in
            [(Reduction::Mean, &weighted, 1), (Reduction::Sum, &weighted, 0), (Reduction::Mean, &soft, 0)]
        {
            let most = divisor + kernel;
            let op = CrossEntropy::new().reduction(reduction).label_smoothing(0.05).strategy(strategy);
            let before = wgpu_softmax::testing::dispatches_recorded();
            let (gpu, _) = run_resident(op, input);
            let recorded = wgpu_softmax::testing::dispatches_recorded() - before;
            let what = format!("{strategy:?} {reduction:?}");
            assert!(recorded <= most, "{what}: {recorded} dispatches");
            assert_matches_reference(&what, &gpu, op, input);
        }
    }
}

#[test]
fn seed_vectors() {
    for strategy in strategies() {
        let op = CrossEntropy::new().reduction(Reduction::None).strategy(strategy);
        let scores = [0.0, 10.0, 15.0, 18.0, 20.0];
        for (target, expected) in [(4, 0.132_884_986_947_669_15), (2, 5.132_884_986_947_669)] {
            let out = op
                .run(ctx(), &CrossEntropyInput::new(&scores, Shape::new(1, 5), Targets::I64(&[target])))
                .unwrap();
            assert!(
                (f64::from(out.loss[0]) - expected).abs() <= 1e-5,
                "{strategy:?}: {} vs {expected}",
                out.loss[0]
            );
            // The gradient for one sample is softmax - onehot.
            let g = out.grad.unwrap();
            assert!(
                (f64::from(g[4]) - (0.875_565_787_81 - if target == 4 { 1.0 } else { 0.0 })).abs() <= 1e-6
            );
        }
        // The batch of three: logits ln(p), targets [8, 0, 9].
        let p: [[f64; 10]; 3] = [
            [
                0.16005908, 0.06725888, 0.10924701, 0.11384503, 0.08331395, 0.06459966, 0.1163387,
                0.06519166, 0.06509037, 0.15505567,
            ],
            [
                0.08421609, 0.07562292, 0.08035415, 0.10763828, 0.13765494, 0.09973486, 0.08157759,
                0.07799766, 0.17106817, 0.08413533,
            ],
            [
                0.14815491, 0.09326063, 0.08769906, 0.12453189, 0.05808831, 0.07857035, 0.05885886,
                0.08420299, 0.13066567, 0.13596733,
            ],
        ];
        #[allow(clippy::cast_possible_truncation)]
        let logits: Vec<f32> = p.iter().flatten().map(|&x| x.ln() as f32).collect();
        let input = CrossEntropyInput::new(&logits, Shape::new(3, 10), Targets::I64(&[8, 0, 9]));
        let losses = op.run(ctx(), &input).unwrap().loss;
        for (got, want) in losses.iter().zip([2.73197873, 2.47436928, 1.99534064]) {
            assert!((f64::from(*got) - want).abs() <= 2e-6, "{strategy:?}: {got} vs {want}");
        }
        let summed =
            CrossEntropy::new().reduction(Reduction::Sum).strategy(strategy).run(ctx(), &input).unwrap();
        let g = summed.grad.unwrap();
        assert!((f64::from(g[8]) - (-0.93490963)).abs() <= 2e-6, "{strategy:?}: {}", g[8]);
        assert!((f64::from(g[0]) - 0.16005908).abs() <= 2e-6);
        let mean = CrossEntropy::new().strategy(strategy).run(ctx(), &input).unwrap();
        let want = (2.73197873 + 2.47436928 + 1.99534064) / 3.0;
        assert!((f64::from(mean.loss[0]) - want).abs() <= 2e-6);
    }
}

#[test]
fn extremes() {
    for strategy in strategies() {
        // [0, 1000] with target 0: exactly 1000, not inf (log of softmax) nor 34.54 (a clamp).
        let op = CrossEntropy::new().strategy(strategy);
        let out = op
            .run(ctx(), &CrossEntropyInput::new(&[0.0, 1000.0], Shape::new(1, 2), Targets::I64(&[0])))
            .unwrap();
        assert_eq!(out.loss[0], 1000.0, "{strategy:?}");
        assert_eq!(out.grad.unwrap(), vec![-1.0, 1.0], "{strategy:?}");
        // Offsets of 1e4 lose nothing.
        let mut rng = rng(0xCE_0005);
        let logits: Vec<f32> = rng.logits(4 * 50, 3.0).into_iter().map(|x| x + 1e4).collect();
        let input = CrossEntropyInput::new(&logits, Shape::new(4, 50), Targets::I64(&[1, 2, 3, 4]));
        let gpu = op.run(ctx(), &input).unwrap();
        assert_matches_reference(&format!("{strategy:?} offset 1e4"), &gpu, op, &input);
        // Special values: a masked logit, a NaN row, an all-masked row, a masked target.
        let inf = f32::INFINITY;
        let logits = [1.0, -inf, 2.0, 0.5, f32::NAN, 1.0, -inf, -inf, -inf, 3.0, -inf, 1.0, 0.0, 0.0, 0.0];
        let input = CrossEntropyInput::new(&logits, Shape::new(5, 3), Targets::I64(&[0, 0, 2, 1, -100]));
        for op in
            [op.reduction(Reduction::None).argmax(true), op.reduction(Reduction::None).label_smoothing(0.1)]
        {
            let (gpu, _) = run_resident(op, &input);
            assert!(gpu.loss[1].is_nan() && gpu.loss[2].is_nan(), "{strategy:?}: {:?}", gpu.loss);
            assert_eq!(gpu.loss[3], inf, "{strategy:?}: a masked target has infinite loss");
            assert_eq!(gpu.loss[4], 0.0);
            assert_matches_reference(&format!("{strategy:?} special values"), &gpu, op, &input);
        }
    }
}

#[test]
fn the_mean_over_no_rows_is_nan_with_zero_gradient() {
    let logits = [1.0, 2.0, 3.0, 4.0];
    let input = CrossEntropyInput::new(&logits, Shape::new(2, 2), Targets::I64(&[-100, -100]));
    for strategy in strategies() {
        let out = CrossEntropy::new().strategy(strategy).run(ctx(), &input).unwrap();
        assert!(out.loss[0].is_nan(), "{strategy:?}");
        assert_eq!(out.grad.unwrap(), vec![0.0; 4], "{strategy:?}");
    }
}

#[test]
fn bad_host_targets_are_typed_errors_before_any_gpu_work() {
    let logits = [0.0; 12];
    let shape = Shape::new(4, 3);
    let op = CrossEntropy::new();
    let err =
        op.run(ctx(), &CrossEntropyInput::new(&logits, shape, Targets::I64(&[0, 1, 3, 2]))).unwrap_err();
    assert!(matches!(err, Error::TargetOutOfRange { row: 2, value: 3, classes: 3, .. }), "{err}");
    let err =
        op.run(ctx(), &CrossEntropyInput::new(&logits, shape, Targets::I32(&[0, -1, 0, 0]))).unwrap_err();
    assert!(matches!(err, Error::TargetOutOfRange { row: 1, value: -1, .. }), "{err}");
    assert!(err.to_string().contains("row 1") && err.to_string().contains("-1"), "{err}");
    let err = op.run(ctx(), &CrossEntropyInput::new(&logits, shape, Targets::U32(&[0, 0, 0]))).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "targets", .. }), "{err}");
    let mut p = [0.25_f32; 12];
    p[7] = -0.1;
    let err = op.run(ctx(), &CrossEntropyInput::new(&logits, shape, Targets::Probabilities(&p))).unwrap_err();
    assert!(matches!(err, Error::InvalidProbability { row: 2, col: 1, .. }), "{err}");
    p[7] = f32::NAN;
    assert!(op.run(ctx(), &CrossEntropyInput::new(&logits, shape, Targets::Probabilities(&p))).is_err());
    let err = op
        .label_smoothing(1.5)
        .run(ctx(), &CrossEntropyInput::new(&logits, shape, Targets::I64(&[0; 4])))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOption { option: "label_smoothing", .. }), "{err}");
    let input = CrossEntropyInput::new(&logits, shape, Targets::I64(&[0; 4])).grad_output(&[1.0; 4]);
    let err = op.run(ctx(), &input).unwrap_err();
    assert!(matches!(err, Error::InvalidOption { option: "grad_output", .. }), "{err}");
    let err = op
        .run(ctx(), &CrossEntropyInput::new(&logits, shape, Targets::I64(&[0; 4])).weight(&[1.0; 2]))
        .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "weight", .. }), "{err}");
}

#[test]
fn bad_targets_on_the_gpu_give_nan_rows_and_a_status() {
    let mut rng = rng(0xCE_0006);
    let shape = Shape::new(6, 5);
    let logits = rng.logits(30, 2.0);
    let targets: [i32; 6] = [0, 7, 1, -5, -100, 4];
    let input = CrossEntropyInput::new(&logits, shape, Targets::I32(&targets));
    for strategy in strategies() {
        let op = CrossEntropy::new().reduction(Reduction::None).argmax(true).strategy(strategy);
        let (gpu, status) = run_resident(op, &input);
        assert_eq!(status.bad_target_rows, 2, "{strategy:?}");
        assert_eq!(status.first_bad_target_row, Some(1), "{strategy:?}");
        let err = status.check().unwrap_err();
        assert!(matches!(err, Error::TargetsOutOfRangeOnGpu { rows: 2, first_row: 1 }), "{err}");
        assert!(gpu.loss[1].is_nan() && gpu.loss[3].is_nan(), "{strategy:?}: {:?}", gpu.loss);
        assert!(gpu.loss[0].is_finite() && gpu.loss[2].is_finite() && gpu.loss[5].is_finite());
        assert_eq!(gpu.loss[4], 0.0);
        let mean = run_resident(CrossEntropy::new().strategy(strategy), &input).0;
        assert!(mean.loss[0].is_nan(), "{strategy:?}: a bad row makes the mean NaN");
    }
    // u32 targets: out of range is any value >= cols.
    let u = [0u32, 1, 2, 3, 4, 99];
    let (_, status) =
        run_resident(CrossEntropy::new(), &CrossEntropyInput::new(&logits, shape, Targets::U32(&u)));
    assert_eq!((status.bad_target_rows, status.first_bad_target_row), (1, Some(5)));
}

#[test]
fn gpu_resident_arguments_are_checked() {
    let ctx = ctx();
    let shape = Shape::new(4, 3);
    let logits = ctx.upload(&[0.5; 12]).unwrap();
    let targets = ctx.upload(&[0.0; 4]).unwrap();
    let loss = ctx.storage_buffer(1).unwrap();
    let buffers = CrossEntropyBuffers::new(&logits, TargetBuffer::I32((&targets).into()), &loss);
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    let err = CrossEntropy::new().encode(ctx, &mut encoder, &buffers, shape).unwrap_err();
    assert!(matches!(err, Error::InvalidOption { option: "gradient", .. }), "{err}");
    let aliased = CrossEntropyBuffers { loss: (&logits).into(), ..buffers };
    let err =
        CrossEntropy::new().gradient(Gradient::Skip).encode(ctx, &mut encoder, &aliased, shape).unwrap_err();
    assert!(matches!(err, Error::AliasedBuffers), "{err}");
    let small = ctx.storage_buffer(11).unwrap();
    let too_small = buffers.with_grad(&small);
    let err = CrossEntropy::new().encode(ctx, &mut encoder, &too_small, shape).unwrap_err();
    assert!(matches!(err, Error::BufferTooSmall { what: "grad", .. }), "{err}");
    let err = CrossEntropy::new()
        .ignore_index(1 << 40)
        .gradient(Gradient::Skip)
        .encode(ctx, &mut encoder, &buffers, shape)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOption { option: "ignore_index", .. }), "{err}");
    CrossEntropy::new().gradient(Gradient::Skip).encode(ctx, &mut encoder, &buffers, shape).unwrap();
    ctx.submit_and_wait(encoder).unwrap();
}
