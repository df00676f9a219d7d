//! f32, f16 and bf16 storage for every op, on every strategy the adapter has, against the
//! f64 reference on the rounded inputs: odd and even widths with many rows (16-bit rows
//! of odd length share words with their neighbours), poisoned outputs, the in-place
//! gradient equal to the separate one in every type, rows whose target probability is
//! 0.999 (whose gradient vanishes if q is rounded before subtracting 1), special values by
//! bit pattern, and regions at offsets inside larger buffers.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use common::{assert_written, ctx, poisoned, rng};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{compare, round_to, widen};
use wgpu_softmax::{
    BufferRegion, Context, CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, DType, Element, Error,
    Gradient, Reduction, Shape, Softmax, SoftmaxBackward, Strategy, TargetBuffer, Targets, TensorRef, bf16,
    f16, reference,
};

/// Odd and even widths: one column (every row shares a word with the next), a few, a
/// prime past a workgroup, one past a segment of the split; with many rows.
const SHAPES: [(usize, usize); 6] = [(257, 1), (301, 7), (128, 10), (41, 129), (6, 1001), (2, 4099)];

fn strategies() -> Vec<Strategy> {
    common::strategies_with_split(ctx())
}

/// The seed of storage type `dtype`'s inputs on shape `shape` of [`SHAPES`].
fn seed_of(base: u64, dtype: usize, shape: usize) -> u64 {
    base + (16 * dtype + shape) as u64
}

/// Softmax (or log-softmax, with `log`) in storage type `T` on `strategy` and `path`, on
/// `shape`'s inputs drawn from `seed`, against the reference; false where the device does
/// not have the strategy.
fn check_softmax<T: Element>(seed: u64, shape: Shape, strategy: Strategy, path: &Context, log: bool) -> bool {
    let input: Vec<T> = round_to(&rng(seed).logits(shape.rows * shape.cols, 10.0));
    let op = if log { Softmax::log() } else { Softmax::new() }.strategy(strategy);
    common::softmax_matches_reference(path, op, &input, shape)
}

/// The factors of the storage-type tests of softmax and its backward: storage type,
/// shape, strategy, cached-rows path, log or not.
fn row_factors(strategies: usize, paths: usize) -> [(&'static str, usize); 5] {
    [
        ("dtype", DType::ALL.len()),
        ("shape", SHAPES.len()),
        ("strategy", strategies),
        ("path", paths),
        ("log", 2),
    ]
}

/// Every storage type, shape, strategy, cached-rows path and op (softmax, log-softmax),
/// on a pairwise covering array: every pair of values of any two of these runs (checked).
/// `WGPU_SOFTMAX_EXHAUSTIVE=1` runs the full product.
#[test]
fn softmax_in_every_storage_type_matches_the_reference() {
    let (strategies, paths) = (strategies(), common::both_paths(ctx()));
    let mut pairs = common::Pairs::new(0x57_0004, row_factors(strategies.len(), paths.len()));
    for row in pairs.rows() {
        let [d, s, strategy, path, log] = row;
        let shape = Shape::new(SHAPES[s].0, SHAPES[s].1);
        let seed = seed_of(0x57_0001, d, s);
        let (strategy, path, log) = (strategies[strategy], &paths[path], log == 1);
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

/// The backward of softmax (or of log-softmax, with `log`) in storage type `T` on
/// `strategy` and `path`, on `shape`'s inputs drawn from `seed`, against the reference;
/// false where the device does not have the strategy.
fn check_backward<T: Element>(
    seed: u64,
    shape: Shape,
    strategy: Strategy,
    path: &Context,
    log: bool,
) -> bool {
    let mut rng = rng(seed);
    let x = rng.logits(shape.rows * shape.cols, 6.0);
    let forward = if log { reference::log_softmax(&x, shape) } else { reference::softmax(&x, shape) };
    let y: Vec<T> = round_to(&forward.unwrap().iter().map(|&v| v as f32).collect::<Vec<_>>());
    let dy: Vec<T> = round_to(&rng.logits(shape.rows * shape.cols, 1.0));
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
    let c = compare(&widen(&gpu), &want, Tolerance::BACKWARD.for_dtype(T::DTYPE));
    assert!(c.passed(), "{op:?} {} on {shape} cached {}: {c}", T::DTYPE, path.cached_rows());
    true
}

/// As the softmax's test, for the backward passes.
#[test]
fn backward_in_every_storage_type_matches_the_reference() {
    let (strategies, paths) = (strategies(), common::both_paths(ctx()));
    let mut pairs = common::Pairs::new(0x57_0014, row_factors(strategies.len(), paths.len()));
    for row in pairs.rows() {
        let [d, s, strategy, path, log] = row;
        let shape = Shape::new(SHAPES[s].0, SHAPES[s].1);
        let seed = seed_of(0x57_0011, d, s);
        let (strategy, path, log) = (strategies[strategy], &paths[path], log == 1);
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
}

/// Runs the cross-entropy through the GPU-resident API with poisoned outputs; returns the
/// losses and the gradient.
fn cross_entropy_poisoned<T: Element>(
    ctx: &Context,
    op: CrossEntropy,
    input: &CrossEntropyInput<'_, T>,
) -> (Vec<f32>, Option<Vec<T>>) {
    let shape = input.shape;
    let logits = ctx.upload_elements(input.logits).unwrap();
    let probabilities;
    let classes;
    let targets = match input.targets {
        Targets::Probabilities(p) => {
            probabilities = ctx.upload_elements(p).unwrap();
            TargetBuffer::Probabilities(TensorRef::new(&probabilities, T::DTYPE))
        }
        Targets::I64(t) => {
            classes = ctx.upload_elements(&t.iter().map(|&v| v as i32).collect::<Vec<_>>()).unwrap();
            TargetBuffer::I32(BufferRegion::new(&classes))
        }
        _ => unreachable!("these tests give i64 or probabilities"),
    };
    let loss_len = if op.get_reduction() == Reduction::None { shape.rows } else { 1 };
    let loss = poisoned::<f32>(ctx, loss_len);
    let grad = poisoned::<T>(ctx, input.logits.len());
    let mut buffers = CrossEntropyBuffers::new(TensorRef::new(&logits, T::DTYPE), targets, &loss);
    if op.get_gradient() == Gradient::Separate {
        buffers = buffers.with_grad(TensorRef::new(&grad, T::DTYPE));
    }
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    op.encode(ctx, &mut encoder, &buffers, shape)
        .unwrap_or_else(|e| panic!("{op:?} {} on {shape}: {e}", T::DTYPE));
    ctx.submit_and_wait(encoder).unwrap();
    let what = format!("{op:?} {} on {shape}", T::DTYPE);
    let loss = assert_written(&what, ctx.download(&loss, loss_len).unwrap());
    let len = input.logits.len();
    let grad = match op.get_gradient() {
        Gradient::Separate => Some(assert_written(&what, ctx.download_elements(&grad, len).unwrap())),
        Gradient::InPlace => Some(ctx.download_elements(&logits, len).unwrap()),
        Gradient::Skip => None,
    };
    (loss, grad)
}

/// The cross-entropy in storage type `T` on `rows x cols` logits drawn from `seed`, with
/// class (some ignored) or probability targets, on `strategy` and `path`: the loss with
/// the gradient separate, in place and skipped, and the gradients bit-equal.
fn check_cross_entropy<T: Element>(
    seed: u64,
    (rows, cols): (usize, usize),
    probabilities: bool,
    (strategy, ctx): (Strategy, &Context),
    reduction: Reduction,
) {
    let mut rng = rng(seed);
    let shape = Shape::new(rows, cols);
    let logits: Vec<T> = round_to(&rng.logits(rows * cols, 6.0));
    let classes: Vec<i64> =
        (0..rows).map(|r| if r % 7 == 3 { -100 } else { rng.below(cols as u64) as i64 }).collect();
    let probability_rows: Vec<T> = round_to(&common::probability_rows(&mut rng, rows, cols));
    let targets =
        if probabilities { Targets::Probabilities(&probability_rows) } else { Targets::I64(&classes) };
    let input = CrossEntropyInput::new(&logits, shape, targets);
    let base = CrossEntropy::new().reduction(reduction).label_smoothing(0.05).strategy(strategy);
    let want = reference::cross_entropy(&base, &input).unwrap();
    let (separate_loss, separate) = cross_entropy_poisoned(ctx, base, &input);
    let (in_place_loss, in_place) = cross_entropy_poisoned(ctx, base.gradient(Gradient::InPlace), &input);
    let (skip_loss, none) = cross_entropy_poisoned(ctx, base.gradient(Gradient::Skip), &input);
    let what =
        format!("{} {shape} {strategy:?} cached {} {reduction:?} {targets:?}", T::DTYPE, ctx.cached_rows());
    assert!(none.is_none());
    for loss in [&separate_loss, &in_place_loss, &skip_loss] {
        let c = compare(loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
        assert!(c.passed(), "{what}: loss {c}");
    }
    let (separate, in_place) = (separate.unwrap(), in_place.unwrap());
    // In place or not: the same bits, in every storage type.
    assert!(
        separate.iter().zip(&in_place).all(|(a, b)| bytemuck::bytes_of(a) == bytemuck::bytes_of(b)),
        "{what}: the in-place gradient differs from the separate one"
    );
    let c = compare(
        &widen(&separate),
        want.grad.as_ref().unwrap(),
        Tolerance::CROSS_ENTROPY_GRAD.for_dtype(T::DTYPE),
    );
    assert!(c.passed(), "{what}: grad {c}");
}

/// Every storage type, shape, kind of targets, strategy, cached-rows path and reduction,
/// on a pairwise covering array: every pair of values of any two of these runs (checked);
/// `WGPU_SOFTMAX_EXHAUSTIVE=1` runs the full product.
#[test]
fn cross_entropy_in_every_storage_type_matches_the_reference() {
    let (strategies, paths) = (strategies(), common::both_paths(ctx()));
    let mut pairs = common::Pairs::new(CE_SEED, ce_factors(strategies.len(), paths.len()));
    for row in pairs.rows() {
        let [d, s, probabilities, strategy, path, r] = row;
        let seed = 0x57_0021 + (16 * d + s) as u64;
        let variant = (strategies[strategy], &paths[path]);
        let (shape, probabilities, reduction) = (CE_SHAPES[s], probabilities == 1, CE_REDUCTIONS[r]);
        match DType::ALL[d] {
            DType::F32 => check_cross_entropy::<f32>(seed, shape, probabilities, variant, reduction),
            DType::F16 => check_cross_entropy::<f16>(seed, shape, probabilities, variant, reduction),
            _ => check_cross_entropy::<bf16>(seed, shape, probabilities, variant, reduction),
        }
        pairs.ran(row);
    }
    pairs.assert_pairs_covered();
}

/// The shapes, reductions, covering array's seed and factors of the cross-entropy's
/// storage-type test: storage type, shape, probabilities or classes, strategy, cached-rows
/// path, reduction.
const CE_SHAPES: [(usize, usize); 3] = [(301, 7), (41, 129), (6, 1001)];
const CE_REDUCTIONS: [Reduction; 2] = [Reduction::Mean, Reduction::None];
const CE_SEED: u64 = 0x57_0024;
fn ce_factors(strategies: usize, paths: usize) -> [(&'static str, usize); 6] {
    [
        ("dtype", DType::ALL.len()),
        ("shape", CE_SHAPES.len()),
        ("probabilities", 2),
        ("strategy", strategies),
        ("path", paths),
        ("reduction", CE_REDUCTIONS.len()),
    ]
}

/// A row whose target has probability 0.999: its gradient there is -0.001 in every type
/// (over the rows, for the mean). Rounding q to bf16 first gives 1.0 - 1 = 0, a 100% error
/// on the class that matters. The gradient separate and in place, on the storage types,
/// kinds of targets (the class, or its one-hot probabilities), strategies, cached-rows
/// paths and reductions that the cross-entropy's test runs (the same pipelines), which meet
/// every pair of values of two of them (checked).
#[test]
fn a_confident_rows_target_gradient_survives_16_bit_storage() {
    fn check<T: Element>(probabilities: bool, (strategy, path): (Strategy, &Context), reduction: Reduction) {
        let cols = 50;
        // q_0 = 0.999, the rest share 0.001: logits ln(q).
        let mut q = vec![0.001 / (cols - 1) as f64; cols];
        q[0] = 0.999;
        let logits: Vec<T> = round_to(&q.iter().map(|&v| v.ln() as f32).collect::<Vec<_>>());
        let classes = [0_i64, 0, 0, 0];
        let rows = classes.len();
        let logits: Vec<T> = logits.iter().copied().cycle().take(rows * cols).collect();
        let one_hot: Vec<T> =
            round_to(&(0..rows * cols).map(|i| if i % cols == 0 { 1.0 } else { 0.0 }).collect::<Vec<_>>());
        let targets = if probabilities { Targets::Probabilities(&one_hot) } else { Targets::I64(&classes) };
        let input = CrossEntropyInput::new(&logits, Shape::new(rows, cols), targets);
        let op = CrossEntropy::new().reduction(reduction).strategy(strategy);
        let want = reference::cross_entropy(&op, &input).unwrap().grad.unwrap();
        // The mean's gradient is each row's over the rows.
        let rows_in_mean = if reduction == Reduction::Mean { rows as f64 } else { 1.0 };
        for op in [op, op.gradient(Gradient::InPlace)] {
            let grad = widen(&cross_entropy_poisoned(path, op, &input).1.unwrap());
            for row in 0..rows {
                let (got, expected) = (f64::from(grad[row * cols]), want[row * cols]);
                assert!(expected * rows_in_mean < -9e-4, "the reference's q is not 0.999: {expected}");
                // Within 1%: bf16's rounding is 0.4%, and f32's sum of 50 exponentials
                // next to a 1 carries about 0.2% into 1 - q (PyTorch's does the same).
                assert!(
                    (got - expected).abs() <= 0.01 * expected.abs(),
                    "{} {strategy:?} cached {} {reduction:?} {:?}: gradient at the target {got}, reference {expected}",
                    T::DTYPE,
                    path.cached_rows(),
                    op.get_gradient()
                );
            }
        }
    }
    let (strategies, paths) = (strategies(), common::both_paths(ctx()));
    let mut rows: Vec<[usize; 5]> = common::Pairs::new(CE_SEED, ce_factors(strategies.len(), paths.len()))
        .rows()
        .into_iter()
        .map(|[d, _, probabilities, s, p, r]| [d, probabilities, s, p, r])
        .collect();
    rows.sort_unstable();
    rows.dedup();
    let factors = [
        ("dtype", DType::ALL.len()),
        ("probabilities", 2),
        ("strategy", strategies.len()),
        ("path", paths.len()),
        ("reduction", CE_REDUCTIONS.len()),
    ];
    let mut pairs = common::Pairs::with_rows(factors, rows);
    for row in pairs.rows() {
        let [d, probabilities, s, p, r] = row;
        let (probabilities, variant, reduction) =
            (probabilities == 1, (strategies[s], &paths[p]), CE_REDUCTIONS[r]);
        match DType::ALL[d] {
            DType::F32 => check::<f32>(probabilities, variant, reduction),
            DType::F16 => check::<f16>(probabilities, variant, reduction),
            _ => check::<bf16>(probabilities, variant, reduction),
        }
        pairs.ran(row);
    }
    pairs.assert_pairs_covered();
}

/// Special values are told by bit pattern in each type: -inf masks, NaN rows, +inf rows.
/// On the storage types, strategies, cached-rows paths and ops that the softmax's test
/// runs (the same pipelines), which meet every pair of values of two of them (checked).
#[test]
fn special_values_in_every_storage_type() {
    fn check<T: Element>(strategy: Strategy, path: &Context, log: bool) -> bool {
        let inf = f32::INFINITY;
        let rows = [
            [1.0, -inf, 2.0, 0.5, 1.0],
            [0.5, f32::NAN, 1.0, 2.0, 0.0],
            [-inf; 5],
            [1.0, 2.0, inf, 0.0, 3.0],
        ];
        let input: Vec<T> = round_to(&rows.concat());
        let shape = Shape::new(4, 5);
        let op = if log { Softmax::log() } else { Softmax::new() }.strategy(strategy);
        let Ok(gpu) = common::softmax_poisoned(path, op, &input, shape) else { return false };
        let gpu = widen(&gpu);
        let what = format!("{op:?} {} cached {}", T::DTYPE, path.cached_rows());
        assert_eq!(gpu[1], if op.is_log() { f32::NEG_INFINITY } else { 0.0 }, "{what}: a masked entry");
        assert!(gpu[5..].iter().all(|v| v.is_nan()), "{what}: NaN, all-masked and +inf rows: {gpu:?}");
        let want = if op.is_log() {
            reference::log_softmax(&input, shape)
        } else {
            reference::softmax(&input, shape)
        };
        let c = compare(&gpu, &want.unwrap(), Tolerance::LOG_SOFTMAX.for_dtype(T::DTYPE));
        assert!(c.passed(), "{what}: {c}");
        true
    }
    let (strategies, paths) = (strategies(), common::both_paths(ctx()));
    let mut rows: Vec<[usize; 4]> = common::Pairs::new(0x57_0004, row_factors(strategies.len(), paths.len()))
        .rows()
        .into_iter()
        .map(|[d, _, s, p, log]| [d, s, p, log])
        .collect();
    rows.sort_unstable();
    rows.dedup();
    let factors =
        [("dtype", DType::ALL.len()), ("strategy", strategies.len()), ("path", paths.len()), ("log", 2)];
    let mut pairs = common::Pairs::with_rows(factors, rows);
    for row in pairs.rows() {
        let [d, s, p, log] = row;
        let ran = match DType::ALL[d] {
            DType::F32 => check::<f32>(strategies[s], &paths[p], log == 1),
            DType::F16 => check::<f16>(strategies[s], &paths[p], log == 1),
            _ => check::<bf16>(strategies[s], &paths[p], log == 1),
        };
        if ran {
            pairs.ran(row);
        }
    }
    pairs.assert_pairs_covered();
}

#[test]
fn the_host_api_takes_and_returns_every_element_type() {
    let mut rng = rng(0x57_0031);
    let shape = Shape::new(33, 17);
    let x = rng.logits(33 * 17, 5.0);
    let half: Vec<f16> = round_to(&x);
    let brain: Vec<bf16> = round_to(&x);
    let got_half: Vec<f16> = wgpu_softmax::softmax(ctx(), &half, shape).unwrap();
    let got_brain: Vec<bf16> = wgpu_softmax::log_softmax(ctx(), &brain, shape).unwrap();
    let c = compare(
        &widen(&got_half),
        &reference::softmax(&half, shape).unwrap(),
        Tolerance::SOFTMAX.for_dtype(DType::F16),
    );
    assert!(c.passed(), "{c}");
    let want = reference::log_softmax(&brain, shape).unwrap();
    let c = compare(&widen(&got_brain), &want, Tolerance::LOG_SOFTMAX.for_dtype(DType::BF16));
    assert!(c.passed(), "{c}");
    // The reference works on the rounded inputs, not the f32 ones they came from.
    assert_ne!(reference::softmax(&brain, shape).unwrap(), reference::softmax(&x, shape).unwrap());
}

/// Tensors at an offset inside a larger buffer are bound where they are; an offset the
/// device cannot bind from, a mixture of types, a region past its buffer, each a typed
/// error.
#[test]
fn regions_of_larger_buffers() {
    let ctx = ctx();
    let alignment = u64::from(ctx.device().limits().min_storage_buffer_offset_alignment);
    let shape = Shape::new(5, 37);
    let x: Vec<bf16> = round_to(&rng(0x57_0041).logits(5 * 37, 4.0));
    let bytes = (x.len() * 2) as u64;
    // Both tensors in one larger buffer each, after other data.
    let mut arena_data = vec![bf16::from_f32(7.0); (alignment as usize) / 2];
    arena_data.extend(&x);
    let arena = ctx.upload_elements(&arena_data).unwrap();
    let out_arena = poisoned::<bf16>(ctx, (alignment as usize) + x.len() + 16);
    let before: Vec<bf16> = ctx.download_elements(&out_arena, alignment as usize / 2).unwrap();
    let input = TensorRef::new(arena.slice(alignment..alignment + bytes), DType::BF16);
    let output = TensorRef::new(BufferRegion::at(&out_arena, 2 * alignment).with_size(bytes), DType::BF16);
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    Softmax::new().encode(ctx, &mut encoder, input, output, shape).unwrap();
    ctx.submit_and_wait(encoder).unwrap();
    let all: Vec<bf16> = ctx.download_elements(&out_arena, alignment as usize + x.len() + 16).unwrap();
    let got = &all[alignment as usize..alignment as usize + x.len()];
    let c = compare(
        &widen(got),
        &reference::softmax(&x, shape).unwrap(),
        Tolerance::SOFTMAX.for_dtype(DType::BF16),
    );
    assert!(c.passed(), "{c}");
    // Nothing outside the output region was touched: before it, and the half word after it.
    let bits = |v: &[bf16]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&all[..alignment as usize / 2]), bits(&before));
    assert!(all[alignment as usize + x.len()..].iter().all(|v| common::is_poison(*v)), "past the region");

    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let misaligned = TensorRef::new(arena.slice(2..2 + bytes), DType::BF16);
    let err = Softmax::new().encode(ctx, &mut encoder, misaligned, output, shape).unwrap_err();
    assert!(matches!(err, Error::MisalignedOffset { what: "input", offset: 2, .. }), "{err}");
    assert!(err.to_string().contains(&alignment.to_string()), "{err}");
    let f32_output = TensorRef::new(&out_arena, DType::F32);
    let err = Softmax::new().encode(ctx, &mut encoder, input, f32_output, shape).unwrap_err();
    assert!(matches!(err, Error::DTypeMismatch { what: "output", .. }), "{err}");
    let past = TensorRef::new(BufferRegion::at(&arena, alignment).with_size(arena.size()), DType::BF16);
    let err = Softmax::new().encode(ctx, &mut encoder, past, output, shape).unwrap_err();
    assert!(matches!(err, Error::RegionOutOfBounds { what: "input", .. }), "{err}");
    let short = TensorRef::new(arena.slice(alignment..alignment + bytes - 2), DType::BF16);
    let err = Softmax::new().encode(ctx, &mut encoder, short, output, shape).unwrap_err();
    assert!(matches!(err, Error::BufferTooSmall { what: "input", .. }), "{err}");
}

/// A storage buffer holding exactly `data`, its size rounded up to a word only (wgpu's
/// minimum), as an embedder's own tensor may be: no room to round a binding up to 16
/// bytes, so the kernels take the scalar (32-bit word) access path.
fn exact_buffer<T: bytemuck::Pod>(ctx: &Context, data: &[T]) -> wgpu::Buffer {
    let mut bytes: Vec<u8> = bytemuck::cast_slice(data).to_vec();
    bytes.resize(bytes.len().next_multiple_of(4).max(4), 0);
    let buffer = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("exact-size tensor"),
        size: bytes.len() as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: true,
    });
    buffer.slice(..).get_mapped_range_mut().unwrap().copy_from_slice(&bytes);
    buffer.unmap();
    buffer
}

/// Tensors in buffers of exactly their size (no padding to 16 bytes): softmax, log-softmax
/// and the cross-entropy's gradient take the 32-bit access path in every storage type, on
/// every strategy, against the reference: each storage type, strategy and op (softmax or
/// log-softmax, each with the cross-entropy) on a pairwise covering array (every pair of
/// values of two of them, checked; the full product with `WGPU_SOFTMAX_EXHAUSTIVE=1`).
#[test]
fn exact_size_buffers_take_the_word_path_in_every_storage_type() {
    fn check<T: Element>(seed: u64, strategy: Strategy, log: bool) {
        let ctx = ctx();
        // 7 x 19 = 133 elements: 266 bytes in 16 bits, 532 in f32, neither a multiple of 16.
        let shape = Shape::new(7, 19);
        let x: Vec<T> = round_to(&rng(seed).logits(shape.rows * shape.cols, 4.0));
        let targets: Vec<i64> = (0..7_i64).map(|r| r * 5 % 19).collect();
        let op = if log { Softmax::log() } else { Softmax::new() }.strategy(strategy);
        let input = exact_buffer(ctx, &x);
        let output = exact_buffer(ctx, &vec![common::poison::<T>(); x.len()]);
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        let tensor = |b| TensorRef::new(b, T::DTYPE);
        op.encode(ctx, &mut encoder, tensor(&input), tensor(&output), shape).unwrap();
        ctx.submit_and_wait(encoder).unwrap();
        let what = format!("{op:?} {} exact-size", T::DTYPE);
        let got = assert_written(&what, ctx.download_elements::<T>(&output, x.len()).unwrap());
        let (want, tolerance) = common::expected(op, &widen(&x), shape);
        let c = compare(&widen(&got), &want, tolerance.for_dtype(T::DTYPE));
        assert!(c.passed(), "{what}: {c}");

        let op = CrossEntropy::new().gradient(Gradient::Separate).strategy(strategy);
        let logits = exact_buffer(ctx, &x);
        let grad = exact_buffer(ctx, &vec![common::poison::<T>(); x.len()]);
        let target_words = exact_buffer(ctx, &common::i64_words(&targets));
        let loss = ctx.storage_buffer(1).unwrap();
        let buffers = CrossEntropyBuffers::new(
            TensorRef::new(&logits, T::DTYPE),
            TargetBuffer::I64((&target_words).into()),
            &loss,
        )
        .with_grad(TensorRef::new(&grad, T::DTYPE));
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        op.encode(ctx, &mut encoder, &buffers, shape).unwrap();
        ctx.submit_and_wait(encoder).unwrap();
        let want = reference::cross_entropy(&op, &CrossEntropyInput::new(&x, shape, Targets::I64(&targets)))
            .unwrap();
        let what = format!("cross-entropy {strategy:?} {} exact-size", T::DTYPE);
        let got = assert_written(&what, ctx.download_elements::<T>(&grad, x.len()).unwrap());
        let c = compare(&widen(&got), &want.grad.unwrap(), Tolerance::CROSS_ENTROPY_GRAD.for_dtype(T::DTYPE));
        assert!(c.passed(), "{what}: {c}");
    }
    let strategies = strategies();
    let mut pairs = common::Pairs::new(
        0x57_0054,
        [("dtype", DType::ALL.len()), ("strategy", strategies.len()), ("log", 2)],
    );
    for row in pairs.rows() {
        let [d, s, log] = row;
        let (strategy, log) = (strategies[s], log == 1);
        match DType::ALL[d] {
            DType::F32 => check::<f32>(0x57_0051, strategy, log),
            DType::F16 => check::<f16>(0x57_0052, strategy, log),
            _ => check::<bf16>(0x57_0053, strategy, log),
        }
        pairs.ran(row);
    }
    pairs.assert_pairs_covered();
}

/// Runs `entry` of a module made of the special-value constants, the storage type's
/// conversions (`shaders/elem/`) and two one-word kernels, over `words` in place.
fn convert_words(conversions: &str, entry: &str, words: &[u32]) -> Vec<u32> {
    let ctx = ctx();
    let source = format!(
        "{}\n{conversions}\n{}",
        include_str!("../../shaders/lib/special.wgsl"),
        "@group(0) @binding(0) var<storage, read_write> words: array<u32>;\n\
         @compute @workgroup_size(64)\n\
         fn widen(@builtin(global_invocation_id) id: vec3<u32>) {\n\
             if (id.x < arrayLength(&words)) { words[id.x] = bitcast<u32>(half_to_f32(words[id.x])); }\n\
         }\n\
         @compute @workgroup_size(64)\n\
         fn narrow(@builtin(global_invocation_id) id: vec3<u32>) {\n\
             if (id.x < arrayLength(&words)) { words[id.x] = f32_to_half(bitcast<f32>(words[id.x])); }\n\
         }\n"
    );
    let device = ctx.device();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("conversions"),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module: &module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions::default(),
        cache: None,
    });
    let buffer = ctx.upload_elements(words).unwrap();
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &buffer,
                offset: 0,
                size: wgpu::BufferSize::new(4 * words.len() as u64),
            }),
        }],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups((words.len() as u32).div_ceil(64), 1, 1);
    }
    ctx.submit_and_wait(encoder).unwrap();
    ctx.download_u32(&buffer, words.len()).unwrap()
}

/// f32 bit patterns that exercise rounding to a 16-bit type: every value of the type and
/// the midpoints between neighbours (ties, and one ulp either side), both signs; and
/// random bits of every exponent.
fn rounding_cases(widen: impl Fn(u16) -> f32) -> Vec<u32> {
    let mut cases = Vec::new();
    for bits in 0..=u16::MAX {
        let (here, next) = (widen(bits), widen(bits.wrapping_add(1)));
        cases.push(here.to_bits());
        if here.is_finite() && next.is_finite() && (here.to_bits() >> 31) == (next.to_bits() >> 31) {
            let mid = ((f64::from(here) + f64::from(next)) / 2.0) as f32;
            cases.extend([mid.to_bits(), mid.to_bits() - 1, mid.to_bits() + 1]);
        }
    }
    let mut rng = rng(0xF16_0001);
    cases.extend((0..100_000).map(|_| rng.below(1 << 32) as u32));
    cases
}

/// Compares converted bits with the `half` crate's (an independent implementation): equal
/// bits, or, where `want` gives a NaN, a NaN (by `is_nan`, of the output's type) of the
/// same sign (payloads may differ in their quiet bit).
fn assert_same_conversion(
    what: &str,
    (inputs, gpu): (&[u32], &[u32]),
    want: impl Fn(u32) -> (u32, bool),
    is_nan: impl Fn(u32) -> bool,
    sign_bit: u32,
) {
    assert_eq!(inputs.len(), gpu.len());
    for (&input, &got) in inputs.iter().zip(gpu) {
        let (expected, nan) = want(input);
        let ok =
            if nan { is_nan(got) && (got >> sign_bit) == (expected >> sign_bit) } else { got == expected };
        assert!(ok, "{what} of {input:#010x}: {got:#x}, want {expected:#x}");
    }
}

/// One 16-bit type's WGSL conversions (`conversions`, called `name`) against an
/// independent implementation, bit for bit: `widen` (a 16-bit value's bits to its f32's
/// bits) on every 16-bit value, and `narrow` (an f32 to the 16-bit bits) on the f32 values
/// that round to each (`rounding_cases`). Each also says whether its result is a NaN, whose
/// payload may differ.
fn check_conversions(
    name: &str,
    conversions: &str,
    widen: impl Fn(u16) -> (u32, bool),
    narrow: impl Fn(f32) -> (u16, bool),
) {
    let halves: Vec<u32> = (0..=u32::from(u16::MAX)).collect();
    let widened = convert_words(conversions, "widen", &halves);
    let f32_nan = |bits: u32| f32::from_bits(bits).is_nan();
    let half_nan = |bits: u32| u16::try_from(bits).is_ok_and(|b| widen(b).1);
    let want = |h: u32| widen(h as u16);
    assert_same_conversion(&format!("{name} to f32"), (&halves, &widened), want, f32_nan, 31);
    let cases = rounding_cases(|b| f32::from_bits(widen(b).0));
    let narrowed = convert_words(conversions, "narrow", &cases);
    let want = |x: u32| {
        let (bits, nan) = narrow(f32::from_bits(x));
        (u32::from(bits), nan)
    };
    assert_same_conversion(&format!("f32 to {name}"), (&cases, &narrowed), want, half_nan, 15);
}

/// The WGSL conversions between f32 and f16 (branch-free, by bit pattern) against the
/// `half` crate's on every f16 and on the f32 values that round to each: normals,
/// subnormals, zeros, the overflow to infinity from 65520 on, NaNs and infinities.
#[test]
fn f16_conversions_match_an_independent_implementation_bit_for_bit() {
    check_conversions(
        "f16",
        include_str!("../../shaders/elem/f16.wgsl"),
        |h| {
            let v = f16::from_bits(h);
            (v.to_f32().to_bits(), v.is_nan())
        },
        |x| {
            let v = f16::from_f32(x);
            (v.to_bits(), v.is_nan())
        },
    );
}

/// As for f16: bf16 is the top half of an f32, rounded to nearest even.
#[test]
fn bf16_conversions_match_an_independent_implementation_bit_for_bit() {
    check_conversions(
        "bf16",
        include_str!("../../shaders/elem/bf16.wgsl"),
        |h| {
            let v = bf16::from_bits(h);
            (v.to_f32().to_bits(), v.is_nan())
        },
        |x| {
            let v = bf16::from_f32(x);
            (v.to_bits(), v.is_nan())
        },
    );
}
