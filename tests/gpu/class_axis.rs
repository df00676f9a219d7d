//! The class axis anywhere: softmax, log-softmax and their backward over any `dim` of an
//! N-D tensor (negative counting from the end), and the cross-entropy in PyTorch's
//! `(N, C, d1..dk)` layout with class targets `(N, d1..dk)` or probabilities, in every
//! storage type, on every strategy the adapter has, through the GPU-resident API on
//! poisoned outputs and through the host API, against the f64 reference (which gathers
//! each row's classes by its own index arithmetic).
//!
//! The shapes put an odd number of positions after the class axis, so that along it two
//! neighbouring rows share each 16-bit word (the half-word stores), and a run of 32
//! positions, past the planner's bound for one invocation per row.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use common::{ctx, rng};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{compare, round_to, widen};
use wgpu_softmax::{
    Context, CrossEntropy, CrossEntropyInput, DType, Element, Error, Gradient, PlanRequest, Reduction, Shape,
    Softmax, SoftmaxBackward, Strategy, Targets, bf16, f16, reference,
};

/// Tensors and the axis to normalise over: odd positions after the axis with odd classes,
/// the first axis of three, a negative dim, and a run of 32 positions.
const LAYOUTS: [(&[usize], isize); 4] =
    [(&[3, 37, 5], 1), (&[5, 3, 7], 0), (&[2, 9, 3, 3], -3), (&[2, 6, 32], 1)];

fn strategies() -> Vec<Strategy> {
    common::strategies_with_split(ctx())
}

fn shapes() -> Vec<Shape> {
    LAYOUTS.iter().map(|&(dims, dim)| Shape::of_dims(dims, dim).unwrap()).collect()
}

/// Softmax (or log-softmax, with `log`) in storage type `T` over `shape` (inputs drawn
/// from `seed`) on `strategy` and `path`, against the reference; false where the device
/// does not have the strategy.
fn check_softmax<T: Element>(seed: u64, shape: Shape, strategy: Strategy, path: &Context, log: bool) -> bool {
    let input: Vec<T> = round_to(&rng(seed).logits(shape.len().unwrap(), 10.0));
    let op = if log { Softmax::log() } else { Softmax::new() }.strategy(strategy);
    common::softmax_matches_reference(path, op, &input, shape)
}

/// The factors of the softmax's and the backward's tests: layout, strategy, log or not,
/// storage type.
fn factors(strategies: usize) -> [(&'static str, usize); 4] {
    [("layout", LAYOUTS.len()), ("strategy", strategies), ("log", 2), ("dtype", DType::ALL.len())]
}

/// Every layout, strategy, op and storage type on a pairwise covering array: every pair of
/// values of any two of these runs (checked). `WGPU_SOFTMAX_EXHAUSTIVE=1` runs the full
/// product.
#[test]
fn softmax_over_any_axis_in_every_storage_type() {
    let (shapes, strategies, path) = (shapes(), strategies(), ctx());
    let mut pairs = common::Pairs::new(0xA7_0006, factors(strategies.len()));
    for row in pairs.rows() {
        let [l, s, log, d] = row;
        let seed = 0xA7_0001 + (16 * d + l) as u64;
        let (shape, strategy, log) = (shapes[l], strategies[s], log == 1);
        let ran = match DType::ALL[d] {
            DType::F32 => check_softmax::<f32>(seed, shape, strategy, path, log),
            DType::F16 => check_softmax::<f16>(seed, shape, strategy, path, log),
            _ => check_softmax::<bf16>(seed, shape, strategy, path, log),
        };
        if ran {
            pairs.ran(row);
        }
    }
    pairs.assert_pairs_covered();
}

/// The other cached setting (on lavapipe, the register cache GPUs use), one strategy.
#[test]
fn softmax_over_any_axis_on_the_other_path() {
    let path = ctx().with_cached_rows(!ctx().cached_rows());
    let mut rng = rng(0xA7_0004);
    for shape in shapes() {
        let input: Vec<bf16> = round_to(&rng.logits(shape.len().unwrap(), 10.0));
        for strategy in [Strategy::ThreadPerRow, Strategy::WorkgroupPerRow] {
            let op = Softmax::new().strategy(strategy);
            let gpu = common::softmax_poisoned(&path, op, &input, shape).unwrap();
            let c = compare(
                &widen(&gpu),
                &reference::softmax(&input, shape).unwrap(),
                Tolerance::SOFTMAX.for_dtype(bf16::DTYPE),
            );
            assert!(c.passed(), "{op:?} on {shape}, cached {}: {c}", path.cached_rows());
        }
    }
}

/// The host API over N-D data: `Shape::of_dims` and the planner's own choice of strategy.
#[test]
fn host_api_takes_any_dim() {
    let mut rng = rng(0xA7_0005);
    let dims = [4, 3, 50];
    for dim in [0, 1, 2, -1, -2, -3] {
        let shape = Shape::of_dims(&dims, dim).unwrap();
        let input = rng.logits(600, 8.0);
        let gpu = Softmax::log().run(ctx(), &input, shape).unwrap();
        let c = compare(&gpu, &reference::log_softmax(&input, shape).unwrap(), Tolerance::LOG_SOFTMAX);
        assert!(c.passed(), "dim {dim}: {c}");
    }
    let err = Shape::of_dims(&dims, 3).unwrap_err();
    assert!(matches!(err, Error::AxisOutOfRange { dim: 3, ndim: 3 }), "{err}");
    // A hand-made shape whose rows are not whole runs is refused, not misread.
    let err = Softmax::new().run(ctx(), &[0.0f32; 12], Shape { rows: 3, cols: 4, inner: 2 }).unwrap_err();
    assert!(matches!(err, Error::InvalidLayout { rows: 3, inner: 2 }), "{err}");
}

/// The backward of softmax (or of log-softmax, with `log`) in storage type `T` over
/// `shape` (inputs drawn from `seed`) on `strategy` and `path`, against the reference;
/// false where the device does not have the strategy.
fn check_backward<T: Element>(
    seed: u64,
    shape: Shape,
    strategy: Strategy,
    path: &Context,
    log: bool,
) -> bool {
    let mut rng = rng(seed);
    let len = shape.len().unwrap();
    let x = rng.logits(len, 6.0);
    let forward = if log { reference::log_softmax(&x, shape) } else { reference::softmax(&x, shape) };
    let y: Vec<T> = round_to(&forward.unwrap().iter().map(|&v| v as f32).collect::<Vec<_>>());
    let dy: Vec<T> = round_to(&rng.logits(len, 1.0));
    let want = if log {
        reference::log_softmax_backward(&y, &dy, shape)
    } else {
        reference::softmax_backward(&y, &dy, shape)
    }
    .unwrap();
    let op = if log { SoftmaxBackward::log() } else { SoftmaxBackward::new() }.strategy(strategy);
    let gpu = match common::backward_poisoned(path, op, &y, &dy, shape) {
        Ok(gpu) => gpu,
        Err(Error::StrategyUnavailable { .. }) => return false,
        Err(e) => panic!("{op:?} {} on {shape}: {e}", T::DTYPE),
    };
    let what = format!("{op:?} {} on {shape} cached {}", T::DTYPE, path.cached_rows());
    let c = compare(&widen(&gpu), &want, Tolerance::BACKWARD.for_dtype(T::DTYPE));
    assert!(c.passed(), "{what}: {c}");
    true
}

/// As the softmax's test, for the backward passes; and the host API.
#[test]
fn backward_over_any_axis_in_every_storage_type() {
    let (shapes, strategies, path) = (shapes(), strategies(), ctx());
    let mut pairs = common::Pairs::new(0xA7_0015, factors(strategies.len()));
    for row in pairs.rows() {
        let [l, s, log, d] = row;
        let seed = 0xA7_0011 + (16 * d + l) as u64;
        let (shape, strategy, log) = (shapes[l], strategies[s], log == 1);
        let ran = match DType::ALL[d] {
            DType::F32 => check_backward::<f32>(seed, shape, strategy, path, log),
            DType::F16 => check_backward::<f16>(seed, shape, strategy, path, log),
            _ => check_backward::<bf16>(seed, shape, strategy, path, log),
        };
        if ran {
            pairs.ran(row);
        }
    }
    pairs.assert_pairs_covered();
    // The host API too.
    let shape = Shape::of_dims(&[3, 8, 5], 1).unwrap();
    let mut rng = rng(0xA7_0014);
    let y: Vec<f32> =
        reference::softmax(&rng.logits(120, 4.0), shape).unwrap().iter().map(|&v| v as f32).collect();
    let dy = rng.logits(120, 1.0);
    let gpu = SoftmaxBackward::new().run(ctx(), &y, &dy, shape).unwrap();
    let c = compare(&gpu, &reference::softmax_backward(&y, &dy, shape).unwrap(), Tolerance::BACKWARD);
    assert!(c.passed(), "host API: {c}");
}

/// PyTorch's `(N, C, d1..dk)` layouts of the cross-entropy.
const CE_LAYOUTS: [&[usize]; 3] = [&[3, 11, 5], &[2, 7, 3, 3], &[2, 6, 32]];

/// Class targets for `rows` rows of `classes`, a few of them ignored (-100).
fn class_targets(rng: &mut wgpu_softmax::testing::SeededRng, rows: usize, classes: usize) -> Vec<i64> {
    (0..rows).map(|r| if r % 7 == 3 { -100 } else { rng.below(classes as u64) as i64 }).collect()
}

/// Probability targets in the logits' layout: each row (along the class axis) sums to 1.
fn probability_targets(rng: &mut wgpu_softmax::testing::SeededRng, shape: Shape) -> Vec<f32> {
    let by_row = common::probability_rows(rng, shape.rows, shape.cols);
    let mut out = vec![0.0; by_row.len()];
    for row in 0..shape.rows {
        for col in 0..shape.cols {
            out[shape.index(row, col)] = by_row[row * shape.cols + col];
        }
    }
    out
}

/// The options: every one at once (z-loss, softcap, label smoothing, weights, the
/// logsumexp), per reduction.
fn ce_ops() -> Vec<CrossEntropy> {
    [Reduction::None, Reduction::Mean, Reduction::Sum]
        .into_iter()
        .map(|r| CrossEntropy::new().reduction(r).z_loss(0.05).softcap(6.0).label_smoothing(0.1))
        .collect()
}

/// One row of the cross-entropy's test: the layout (its inputs drawn from `seed`), the
/// strategy, the targets, the options (the reduction) and where the gradient goes.
struct CeRow {
    seed: u64,
    dims: &'static [usize],
    strategy: Strategy,
    probabilities: bool,
    op: CrossEntropy,
    in_place: bool,
}

/// `row` in storage type `T` through the GPU-resident API on poisoned outputs, with every
/// option at once, against the reference; false where the device does not have the
/// strategy.
fn check_cross_entropy<T: Element>(row: &CeRow) -> bool {
    let CeRow { seed, dims, strategy, probabilities, op, in_place } = *row;
    let mut rng = rng(seed);
    let shape = Shape::of_dims(dims, 1).unwrap();
    let logits: Vec<T> = round_to(&rng.logits(shape.len().unwrap(), 6.0));
    let weight: Vec<f32> = (0..shape.cols).map(|_| rng.uniform(0.5, 2.0)).collect();
    let classes = class_targets(&mut rng, shape.rows, shape.cols);
    let probability_rows: Vec<T> = round_to(&probability_targets(&mut rng, shape));
    let targets =
        if probabilities { Targets::Probabilities(&probability_rows) } else { Targets::I64(&classes) };
    let mut input = CrossEntropyInput::new(&logits, shape, targets);
    input.weight = (!probabilities).then_some(weight.as_slice());
    let op = op.strategy(strategy).lse(true);
    // In place, the atomic half-word stores read the logits they overwrite.
    let op = if in_place { op.gradient(Gradient::InPlace) } else { op };
    let gpu = match common::cross_entropy_poisoned(ctx(), op, &input, !in_place) {
        Ok(gpu) => gpu,
        Err(Error::StrategyUnavailable { .. }) => return false,
        Err(e) => panic!("{op:?} {} on {shape}: {e}", T::DTYPE),
    };
    let want = reference::cross_entropy(&op, &input).unwrap();
    let what = format!("{op:?} {} on {shape}, in place {in_place}", T::DTYPE);
    let loss = compare(&gpu.loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
    assert!(loss.passed(), "{what} loss: {loss}");
    if let Some(lse) = &gpu.lse {
        let lse = compare(lse, want.lse.as_ref().unwrap(), Tolerance::CROSS_ENTROPY_LOSS);
        assert!(lse.passed(), "{what} lse: {lse}");
    }
    let z = compare(&gpu.z_loss, want.z_loss.as_ref().unwrap(), Tolerance::CROSS_ENTROPY_LOSS);
    assert!(z.passed(), "{what} z-loss part: {z}");
    let tolerance = Tolerance::CROSS_ENTROPY_GRAD.for_dtype(T::DTYPE);
    let grad = compare(&widen(&gpu.grad), want.grad.as_ref().unwrap(), tolerance);
    assert!(grad.passed(), "{what} grad: {grad}");
    true
}

/// Every layout, strategy, kind of targets, reduction, gradient (its own tensor or in
/// place) and storage type on a pairwise covering array: every pair of values of any two
/// of these runs (checked). `WGPU_SOFTMAX_EXHAUSTIVE=1` runs the full product.
#[test]
fn cross_entropy_in_pytorch_layout_in_every_storage_type() {
    let (strategies, ops) = (strategies(), ce_ops());
    let mut pairs = common::Pairs::new(
        0xA7_0024,
        [
            ("layout", CE_LAYOUTS.len()),
            ("strategy", strategies.len()),
            ("probabilities", 2),
            ("reduction", ops.len()),
            ("in place", 2),
            ("dtype", DType::ALL.len()),
        ],
    );
    for row in pairs.rows() {
        let [l, s, probabilities, r, in_place, d] = row;
        let args = CeRow {
            seed: 0xA7_0021 + (16 * d + l) as u64,
            dims: CE_LAYOUTS[l],
            strategy: strategies[s],
            probabilities: probabilities == 1,
            op: ops[r],
            in_place: in_place == 1,
        };
        let ran = match DType::ALL[d] {
            DType::F32 => check_cross_entropy::<f32>(&args),
            DType::F16 => check_cross_entropy::<f16>(&args),
            _ => check_cross_entropy::<bf16>(&args),
        };
        if ran {
            pairs.ran(row);
        }
    }
    pairs.assert_pairs_covered();
}

/// The host API: N-D logits with `(N, d1..dk)` class targets; reduction none gives one
/// loss per target, in the targets' order.
#[test]
fn cross_entropy_host_api_in_pytorch_layout() {
    let mut rng = rng(0xA7_0031);
    let shape = Shape::of_dims(&[4, 10, 3, 5], 1).unwrap();
    let logits = rng.logits(shape.len().unwrap(), 5.0);
    let targets = class_targets(&mut rng, shape.rows, shape.cols);
    let input = CrossEntropyInput::new(&logits, shape, Targets::I64(&targets));
    for op in ce_ops() {
        let gpu = op.run(ctx(), &input).unwrap();
        let want = reference::cross_entropy(&op, &input).unwrap();
        assert_eq!(gpu.loss.len(), if op.get_reduction() == Reduction::None { 60 } else { 1 });
        let loss = compare(&gpu.loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
        assert!(loss.passed(), "{op:?} loss: {loss}");
        let grad =
            compare(gpu.grad.as_ref().unwrap(), want.grad.as_ref().unwrap(), Tolerance::CROSS_ENTROPY_GRAD);
        assert!(grad.passed(), "{op:?} grad: {grad}");
        let z = compare(
            gpu.z_loss.as_ref().unwrap(),
            want.z_loss.as_ref().unwrap(),
            Tolerance::CROSS_ENTROPY_LOSS,
        );
        assert!(z.passed(), "{op:?} z-loss: {z}");
    }
}

/// Layouts whose rows pair in 16-bit storage on one invocation per row (an even number of
/// positions after the class axis): two and six positions (forced: under the planner's
/// bound for a thread per row) and 64 and 4096 (the planner's own choice), odd classes
/// and even, rows that a register cache holds and rows it does not.
const PAIRED_LAYOUTS: [&[usize]; 4] = [&[3, 37, 2], &[2, 9, 6], &[3, 20, 64], &[2, 21, 4096]];

/// Every row op in storage type `T` over the paired layouts on both cached paths: each
/// invocation stores whole words of its two rows (the plan says so), and every output
/// matches the reference.
fn paired_rows_match_the_reference<T: Element>(seed: u64) {
    let other = ctx().with_cached_rows(!ctx().cached_rows());
    for (l, &dims) in PAIRED_LAYOUTS.iter().enumerate() {
        let shape = Shape::of_dims(dims, 1).unwrap();
        let request = PlanRequest::Softmax { log: false, strategy: Some(Strategy::ThreadPerRow) };
        let explained = ctx().explain(&request, shape, T::DTYPE).unwrap();
        assert_eq!(explained.rows_per_invocation, 2, "{shape} {}", T::DTYPE);
        let log = l % 2 == 1;
        for path in [ctx(), &other] {
            let seed = seed + 16 * l as u64 + u64::from(path.cached_rows());
            assert!(check_softmax::<T>(seed, shape, Strategy::ThreadPerRow, path, log));
            assert!(check_backward::<T>(seed, shape, Strategy::ThreadPerRow, path, !log));
        }
        // The cross-entropy's row state (its class target) is read again for each row's
        // writes, which interleave; in place, each word is read before it is written.
        let row = CeRow {
            seed: seed + 16 * l as u64 + 8,
            dims,
            strategy: Strategy::ThreadPerRow,
            probabilities: l == 2,
            op: ce_ops()[l % 3],
            in_place: l % 2 == 0,
        };
        assert!(check_cross_entropy::<T>(&row));
    }
}

/// Rows side by side in 16-bit words (an even number of positions after the class axis):
/// one invocation takes both rows of each word and stores it whole.
#[test]
fn paired_rows_store_whole_16_bit_words() {
    paired_rows_match_the_reference::<f16>(0xA7_0041);
    paired_rows_match_the_reference::<bf16>(0xA7_0051);
}
