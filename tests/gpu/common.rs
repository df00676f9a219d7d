//! Shared by the GPU test modules: one context for the suite, poisoned outputs, and the
//! comparison with the reference.
#![allow(dead_code)] // each module uses its own part of these helpers
#![allow(clippy::unwrap_used)] // in a test helper, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // i64 targets split into words

use std::io::Write as _;
use std::sync::OnceLock;

use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{Comparison, SeededRng, compare};
use wgpu_softmax::{
    BufferRegion, Context, CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, DType, Element, Error,
    Gradient, Reduction, Shape, Softmax, SoftmaxBackward, Strategy, TargetBuffer, Targets, TensorRef,
    reference,
};

/// A NaN with a payload no kernel writes: any element still holding it after a run was
/// never written.
pub const POISON_BITS: u32 = 0xffba_dbad;

/// The context every test of this binary shares. Without an adapter the test fails with
/// the message that says what to install; it never passes.
pub fn ctx() -> &'static Context {
    static CONTEXT: OnceLock<Context> = OnceLock::new();
    CONTEXT.get_or_init(|| match Context::new() {
        Ok(ctx) => {
            // Straight to the stderr handle, past the test harness's capture, so that
            // every run says which adapter it tested.
            let _ = writeln!(std::io::stderr(), "GPU tests run on: {}", ctx.describe());
            ctx
        }
        Err(error) => panic!("GPU tests need an adapter: {error}"),
    })
}

/// Whether this run insists that the adapter has subgroups (CI sets it on Vulkan, where
/// lavapipe has them), so that the subgroup kernel cannot silently go untested.
pub fn subgroups_required() -> bool {
    std::env::var("WGPU_SOFTMAX_REQUIRE_SUBGROUPS").is_ok_and(|v| v == "1")
}

/// A generator seeded from the test's own seed, or from `WGPU_SOFTMAX_SEED` to replay.
pub fn rng(seed: u64) -> SeededRng {
    let seed = std::env::var("WGPU_SOFTMAX_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(seed);
    SeededRng::new(seed)
}

/// Runs `op` through the GPU-resident API on an output buffer filled with poison, checks
/// that every element was written, and returns the output.
pub fn run_poisoned(ctx: &Context, op: Softmax, input: &[f32], shape: Shape) -> Result<Vec<f32>, Error> {
    let len = input.len();
    let input_buffer = ctx.upload(input)?;
    let output_buffer = ctx.upload(&vec![f32::from_bits(POISON_BITS); len.max(1)])?;
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    in_one_pass(&format!("{op:?} on {shape}"), || {
        op.encode(ctx, &mut encoder, &input_buffer, &output_buffer, shape)
    })?;
    ctx.submit_and_wait(encoder)?;
    let output = ctx.download(&output_buffer, len)?;
    if let Some(index) = output.iter().position(|x| x.to_bits() == POISON_BITS) {
        panic!("{op:?} on {shape}: element {index} was never written");
    }
    Ok(output)
}

/// The reference result and tolerance for `op`.
pub fn expected(op: Softmax, input: &[f32], shape: Shape) -> (Vec<f64>, Tolerance) {
    if op.is_log() {
        (reference::log_softmax(input, shape).unwrap(), Tolerance::LOG_SOFTMAX)
    } else {
        (reference::softmax(input, shape).unwrap(), Tolerance::SOFTMAX)
    }
}

/// Runs `op` on the GPU (poisoned output) and compares with the reference; panics with
/// the details on any mismatch.
pub fn check_against_reference(ctx: &Context, op: Softmax, input: &[f32], shape: Shape) -> Comparison {
    let gpu = run_poisoned(ctx, op, input, shape).unwrap_or_else(|e| panic!("{op:?} on {shape}: {e}"));
    let (reference, tolerance) = expected(op, input, shape);
    let comparison = compare(&gpu, &reference, tolerance);
    assert!(comparison.passed(), "{op:?} on {shape}: {comparison}");
    comparison
}

/// The strategies every op has that `ctx`'s device runs (subgroups only where it has them).
pub fn strategies_of(ctx: &Context) -> Vec<Strategy> {
    Strategy::ALL.into_iter().filter(|&s| s != Strategy::SubgroupPerRow || ctx.has_subgroups()).collect()
}

/// Every strategy the adapter has, and the row split (which every op has everywhere).
pub fn strategies_with_split(ctx: &Context) -> Vec<Strategy> {
    strategies_of(ctx).into_iter().chain([Strategy::SplitRow]).collect()
}

/// `rows` rows of `cols` probabilities from `rng`, each row summing to 1.
pub fn probability_rows(rng: &mut SeededRng, rows: usize, cols: usize) -> Vec<f32> {
    let mut p: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(0.0, 1.0)).collect();
    for row in p.chunks_mut(cols) {
        let sum: f32 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= sum);
    }
    p
}

/// Both ops with a forced strategy.
pub fn both_ops(strategy: Strategy) -> [Softmax; 2] {
    [Softmax::new().strategy(strategy), Softmax::log().strategy(strategy)]
}

/// The poison of element type `T`: a NaN with a payload no kernel writes (f32
/// `0xffbadbad`, f16 `0xfdba`, bf16 `0xffba`).
pub fn poison<T: Element>() -> T {
    match T::DTYPE {
        DType::F32 => bytemuck::cast::<u32, [T; 1]>(POISON_BITS)[0],
        DType::F16 => bytemuck::cast::<u16, [T; 1]>(0xfdba)[0],
        DType::BF16 => bytemuck::cast::<u16, [T; 1]>(0xffba)[0],
        other => panic!("no poison chosen for {other}"),
    }
}

/// Whether `value` still holds the poison.
pub fn is_poison<T: Element>(value: T) -> bool {
    bytemuck::bytes_of(&value) == bytemuck::bytes_of(&poison::<T>())
}

/// A buffer of `len` poisoned elements of type `T` (padded for vector access).
pub fn poisoned<T: Element>(ctx: &Context, len: usize) -> wgpu::Buffer {
    ctx.upload_elements(&vec![poison::<T>(); len.max(1)]).unwrap()
}

/// What `record` (one op's `encode`) returns, after checking that it began at most one
/// compute pass: an op's dispatches share one pass wherever it records no copy between
/// them (every op on a device that binds its wide kernel).
pub fn in_one_pass<R>(what: &str, record: impl FnOnce() -> R) -> R {
    let before = wgpu_softmax::testing::passes_recorded();
    let result = record();
    let passes = wgpu_softmax::testing::passes_recorded() - before;
    assert!(passes <= 1, "{what}: {passes} compute passes for one op");
    result
}

/// `values` after checking that none still holds the poison: every element was written.
pub fn assert_written<T: Element>(what: &str, values: Vec<T>) -> Vec<T> {
    if let Some(index) = values.iter().position(|&v| is_poison(v)) {
        panic!("{what}: element {index} was never written");
    }
    values
}

/// Both kernel paths of `ctx`: its own, and with rows kept in registers or not the other
/// way round (on lavapipe, whose own path streams, the other is the one GPUs take).
pub fn both_paths(ctx: &Context) -> [Context; 2] {
    [ctx.clone(), ctx.with_cached_rows(!ctx.cached_rows())]
}

/// Runs softmax through the GPU-resident API on a poisoned output of the input's type;
/// returns the output after checking that every element was written.
pub fn softmax_poisoned<T: Element>(
    ctx: &Context,
    op: Softmax,
    input: &[T],
    shape: Shape,
) -> Result<Vec<T>, Error> {
    let input_buffer = ctx.upload_elements(input)?;
    let output = poisoned::<T>(ctx, input.len());
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let tensor = |b| TensorRef::new(b, T::DTYPE);
    op.encode(ctx, &mut encoder, tensor(&input_buffer), tensor(&output), shape)?;
    ctx.submit_and_wait(encoder)?;
    let what = format!("{op:?} {} on {shape}", T::DTYPE);
    Ok(assert_written(&what, ctx.download_elements(&output, input.len())?))
}

/// Runs a backward op through the GPU-resident API on a poisoned `dx` of the inputs' type.
pub fn backward_poisoned<T: Element>(
    ctx: &Context,
    op: SoftmaxBackward,
    y: &[T],
    dy: &[T],
    shape: Shape,
) -> Result<Vec<T>, Error> {
    let (y_buffer, dy_buffer) = (ctx.upload_elements(y)?, ctx.upload_elements(dy)?);
    let dx = poisoned::<T>(ctx, y.len());
    let tensor = |b| TensorRef::new(b, T::DTYPE);
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    op.encode(ctx, &mut encoder, tensor(&y_buffer), tensor(&dy_buffer), tensor(&dx), shape)?;
    ctx.submit_and_wait(encoder)?;
    let what = format!("{op:?} {} on {shape}", T::DTYPE);
    Ok(assert_written(&what, ctx.download_elements(&dx, y.len())?))
}

/// i64 class targets as the two little-endian words per row that PyTorch's int64 holds.
pub fn i64_words(targets: &[i64]) -> Vec<u32> {
    targets.iter().flat_map(|&t| [t as u32, (t >> 32) as u32]).collect()
}

/// What the cross-entropy's GPU-resident API wrote, each from a poisoned buffer.
pub struct Written<T> {
    /// The loss.
    pub loss: Vec<f32>,
    /// The gradient (over the logits for `Gradient::InPlace`).
    pub grad: Vec<T>,
    /// The logsumexp, when asked for.
    pub lse: Option<Vec<f32>>,
    /// The z-loss's part on its own.
    pub z_loss: Vec<f32>,
}

/// Runs the cross-entropy through the GPU-resident API: class targets go up as int64
/// words; the loss, the gradient (its own buffer, or over the logits as `op` says), the
/// z-loss part and (with `lse`) the logsumexp come back from poisoned buffers.
pub fn cross_entropy_poisoned<T: Element>(
    ctx: &Context,
    op: CrossEntropy,
    input: &CrossEntropyInput<'_, T>,
    lse: bool,
) -> Result<Written<T>, Error> {
    let shape = input.shape;
    let logits = ctx.upload_elements(input.logits)?;
    let targets_buffer;
    let targets = match input.targets {
        Targets::Probabilities(p) => {
            targets_buffer = ctx.upload_elements(p)?;
            TargetBuffer::Probabilities(TensorRef::new(&targets_buffer, T::DTYPE))
        }
        Targets::I64(t) => {
            targets_buffer = ctx.upload_elements(&i64_words(t))?;
            TargetBuffer::I64(BufferRegion::new(&targets_buffer))
        }
        _ => unreachable!("these tests give i64 or probabilities"),
    };
    let weight = input.weight.map(|w| ctx.upload_elements(w)).transpose()?;
    let loss_len = if op.get_reduction() == Reduction::None { shape.rows } else { 1 };
    let loss = poisoned::<f32>(ctx, loss_len);
    let grad = poisoned::<T>(ctx, input.logits.len());
    let lse_buffer = poisoned::<f32>(ctx, shape.rows);
    let z_loss = poisoned::<f32>(ctx, loss_len);
    let mut buffers =
        CrossEntropyBuffers::new(TensorRef::new(&logits, T::DTYPE), targets, &loss).with_z_loss(&z_loss);
    let in_place = op.get_gradient() == Gradient::InPlace;
    if !in_place {
        buffers = buffers.with_grad(TensorRef::new(&grad, T::DTYPE));
    }
    if lse {
        buffers = buffers.with_lse(&lse_buffer);
    }
    if let Some(w) = &weight {
        buffers = buffers.with_weight(w);
    }
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    op.encode(ctx, &mut encoder, &buffers, shape)?;
    ctx.submit_and_wait(encoder)?;
    let what = format!("{op:?} {} on {shape}", T::DTYPE);
    let grad = if in_place { &logits } else { &grad };
    Ok(Written {
        loss: assert_written(&what, ctx.download(&loss, loss_len)?),
        grad: assert_written(&what, ctx.download_elements(grad, input.logits.len())?),
        lse: if lse { Some(assert_written(&what, ctx.download(&lse_buffer, shape.rows)?)) } else { None },
        z_loss: assert_written(&what, ctx.download(&z_loss, loss_len)?),
    })
}

/// Runs softmax `op` through the GPU-resident API on a poisoned output and checks it
/// against the reference at the storage type's tolerance (panicking with the details on a
/// mismatch); false when the device does not have the op's strategy.
pub fn softmax_matches_reference<T: Element>(ctx: &Context, op: Softmax, input: &[T], shape: Shape) -> bool {
    let gpu = match softmax_poisoned(ctx, op, input, shape) {
        Ok(gpu) => gpu,
        Err(Error::StrategyUnavailable { .. }) => return false,
        Err(e) => panic!("{op:?} {} on {shape}: {e}", T::DTYPE),
    };
    let (want, tolerance) = if op.is_log() {
        (reference::log_softmax(input, shape).unwrap(), Tolerance::LOG_SOFTMAX)
    } else {
        (reference::softmax(input, shape).unwrap(), Tolerance::SOFTMAX)
    };
    let c = compare(&wgpu_softmax::testing::widen(&gpu), &want, tolerance.for_dtype(T::DTYPE));
    assert!(c.passed(), "{op:?} {} on {shape}: {c}", T::DTYPE);
    true
}

/// Whether this run checks every combination of options (`WGPU_SOFTMAX_EXHAUSTIVE=1`: for
/// a GPU or a long run), instead of the seeded pairwise covering array [`Pairs`] draws.
pub fn exhaustive() -> bool {
    std::env::var("WGPU_SOFTMAX_EXHAUSTIVE").is_ok_and(|v| v == "1")
}

/// One pair of factor values: (factor, value, other factor, its value), the first factor
/// the earlier.
type Pair = (usize, usize, usize, usize);

/// A pairwise covering array over a test's `N` factors (strategy, cached-rows path,
/// storage type, shape, each option...): rows of one value per factor such that every
/// pair of values of any two factors is in some row. On a software adapter a row costs a
/// pipeline or two to compile, and the full product of a test's factors thousands; a
/// covering array takes about the product of the two largest factors' sizes.
///
/// Built greedily when the test starts (each row the best of a few seeded candidates
/// at meeting pairs not yet met), so a run is repeatable and `WGPU_SOFTMAX_SEED` varies it;
/// where a value does not matter to the pairs, a row takes the factor's first, so a test
/// lists each factor's cheapest value first (on lavapipe, compiling the register-cache
/// path takes several times as long as the streaming one). The test notes each row it ran ([`Pairs::ran`]) and at the end insists that the rows
/// that ran met every pair ([`Pairs::assert_pairs_covered`]), so that a row skipped or a
/// factor that grew goes noticed. `WGPU_SOFTMAX_EXHAUSTIVE=1` gives the full product
/// instead.
pub struct Pairs<const N: usize> {
    names: [&'static str; N],
    sizes: [usize; N],
    rows: Vec<[usize; N]>,
    ran: std::collections::BTreeSet<Pair>,
}

impl<const N: usize> Pairs<N> {
    /// The rows for factors named and sized `factors`, drawn with `seed` (the full
    /// product in the exhaustive mode).
    pub fn new(seed: u64, factors: [(&'static str, usize); N]) -> Self {
        let names = factors.map(|(name, _)| name);
        let sizes = factors.map(|(_, size)| size);
        assert!(sizes.iter().all(|&size| size > 0), "a factor without values: {factors:?}");
        let rows = if exhaustive() { product(sizes) } else { covering(&mut rng(seed), sizes) };
        Self { names, sizes, rows, ran: std::collections::BTreeSet::new() }
    }

    /// Rows made elsewhere (another test's, projected onto these factors, to compile the
    /// same pipelines), to run and check as [`Pairs::new`]'s.
    pub fn with_rows(factors: [(&'static str, usize); N], rows: Vec<[usize; N]>) -> Self {
        let names = factors.map(|(name, _)| name);
        let sizes = factors.map(|(_, size)| size);
        Self { names, sizes, rows, ran: std::collections::BTreeSet::new() }
    }

    /// The rows to run, each the index of a value of every factor in the order given.
    pub fn rows(&self) -> Vec<[usize; N]> {
        self.rows.clone()
    }

    /// Notes that `row` ran (and passed).
    pub fn ran(&mut self, row: [usize; N]) {
        self.ran.extend(pairs_of(&row));
    }

    /// Panics unless the rows that ran met every pair of values of any two factors.
    pub fn assert_pairs_covered(&self) {
        for pair @ (i, a, j, b) in all_pairs(self.sizes) {
            assert!(
                self.ran.contains(&pair),
                "no row that ran had {} = {a} with {} = {b}",
                self.names[i],
                self.names[j]
            );
        }
        eprintln!("{} rows met every pair of values of {:?}", self.rows.len(), self.names);
    }
}

/// Every pair of values of two different factors of sizes `sizes`.
fn all_pairs<const N: usize>(sizes: [usize; N]) -> Vec<Pair> {
    let mut pairs = Vec::new();
    for i in 0..N {
        for j in i + 1..N {
            for a in 0..sizes[i] {
                pairs.extend((0..sizes[j]).map(|b| (i, a, j, b)));
            }
        }
    }
    pairs
}

/// The pairs of values `row` meets.
fn pairs_of<const N: usize>(row: &[usize; N]) -> Vec<Pair> {
    (0..N).flat_map(|i| (i + 1..N).map(move |j| (i, row[i], j, row[j]))).collect()
}

/// The full product of factors of sizes `sizes`, the last factor varying fastest.
fn product<const N: usize>(sizes: [usize; N]) -> Vec<[usize; N]> {
    let mut rows = vec![[0; N]];
    for (i, &size) in sizes.iter().enumerate() {
        rows = rows
            .into_iter()
            .flat_map(|row| {
                (0..size).map(move |v| {
                    let mut row = row;
                    row[i] = v;
                    row
                })
            })
            .collect();
    }
    rows
}

/// A pairwise covering array, greedily: each row is the best of a few candidates, each
/// started from a pair not yet met (drawn at random) and completed factor by factor (in a
/// random order) with the value that meets the most pairs not yet met with the values
/// already chosen. Ties go to the first values, which a test lists as its cheapest (the
/// adapter's own cached-rows path before the other, say).
fn covering<const N: usize>(rng: &mut SeededRng, sizes: [usize; N]) -> Vec<[usize; N]> {
    const CANDIDATES: usize = 24;
    let mut unmet: std::collections::BTreeSet<Pair> = all_pairs(sizes).into_iter().collect();
    let unmet_with = |unmet: &std::collections::BTreeSet<Pair>, f: usize, v: usize, g: usize, w: usize| {
        let pair = if f < g { (f, v, g, w) } else { (g, w, f, v) };
        unmet.contains(&pair)
    };
    let mut rows = Vec::new();
    while !unmet.is_empty() {
        let pending: Vec<Pair> = unmet.iter().copied().collect();
        let mut best: Option<([usize; N], (usize, usize))> = None;
        for _ in 0..CANDIDATES {
            let (i, a, j, b) = pending[rng.below(pending.len() as u64) as usize];
            let mut row = [usize::MAX; N];
            row[i] = a;
            row[j] = b;
            let mut order: Vec<usize> = (0..N).filter(|&f| f != i && f != j).collect();
            shuffle(rng, &mut order);
            for f in order {
                let met = |v: usize| {
                    (0..N).filter(|&g| row[g] != usize::MAX && unmet_with(&unmet, f, v, g, row[g])).count()
                };
                // Ties go to the first value: a test lists its cheapest value first.
                let chosen = (0..sizes[f]).max_by_key(|&v| (met(v), std::cmp::Reverse(v))).unwrap_or(0);
                row[f] = chosen;
            }
            let met = pairs_of(&row).iter().filter(|pair| unmet.contains(pair)).count();
            // Of the rows that meet as many pairs, the one of the first values (the cheapest).
            let score = (met, usize::MAX - row.iter().sum::<usize>());
            if best.is_none_or(|(_, most)| score > most) {
                best = Some((row, score));
            }
        }
        let (row, _) = best.unwrap();
        for pair in pairs_of(&row) {
            unmet.remove(&pair);
        }
        rows.push(row);
    }
    rows
}

fn shuffle<T>(rng: &mut SeededRng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}
