//! Shared by the GPU test binaries: one context per binary, poisoned outputs, and the
//! comparison with the reference.
#![allow(dead_code)] // each test binary uses its own part of these helpers

use std::io::Write as _;
use std::sync::OnceLock;

use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{Comparison, SeededRng, compare};
use wgpu_softmax::{Context, DType, Element, Error, Shape, Softmax, Strategy, reference};

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
    op.encode(ctx, &mut encoder, &input_buffer, &output_buffer, shape)?;
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
