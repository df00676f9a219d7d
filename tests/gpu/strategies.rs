//! Every strategy, forced explicitly, against the f64 reference over a grid of shapes:
//! one row to 70,000 (past the 65,535-workgroup grid limit), one column to 50,000 (primes,
//! not multiples of 4 or of any subgroup size, wider than one workgroup covers).
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use crate::common;

use common::{both_ops, check_against_reference, ctx, rng, subgroups_required};
use wgpu_softmax::testing::loop_iterations;
use wgpu_softmax::{Error, Shape, Softmax, Strategy};

const SHAPES: [(usize, usize); 19] = [
    (1, 1),
    (1, 2),
    (3, 1),
    (2, 5),
    (7, 13),
    (64, 64),
    (65, 97),
    (33, 255),
    (5, 256),
    (5, 257),
    (300, 31),
    (1031, 17),
    (19, 1000),
    (3, 4099),
    (1, 32_763),
    (1, 32_767),
    (2, 50_000),
    (4096, 10),
    (70_000, 3),
];

fn check_strategy(strategy: Strategy, seed: u64) {
    check_shapes(strategy, seed, &SHAPES);
}

fn check_shapes(strategy: Strategy, seed: u64, shapes: &[(usize, usize)]) {
    let mut rng = rng(seed);
    let mut checked = 0;
    for &(rows, cols) in shapes {
        let shape = Shape::new(rows, cols);
        let input = rng.logits(rows * cols, 12.0);
        for op in both_ops(strategy) {
            if refused_for_the_loop_limit(op, strategy, shape) {
                continue;
            }
            // Rows kept in registers and rows streamed twice: both paths, on any adapter.
            for path in common::both_paths(ctx()) {
                let comparison = check_against_reference(&path, op, &input, shape);
                eprintln!("{op:?} {shape} cached {}: {comparison}", path.cached_rows());
                checked += 1;
            }
        }
    }
    assert!(checked >= 4 * (shapes.len() - 2), "only {checked} shape checks ran");
}

/// On a driver that stops long loops silently, a strategy whose invocations would loop
/// too long must be refused with a typed error, never run. Returns whether it was.
fn refused_for_the_loop_limit(op: Softmax, strategy: Strategy, shape: Shape) -> bool {
    let ctx = ctx();
    let Some(limit) = ctx.loop_iteration_limit() else { return false };
    let Err(error) = op.plan(ctx, shape) else { return false };
    let needed = loop_iterations(ctx, strategy, shape.cols);
    assert!(needed >= limit, "{op:?} on {shape} refused although within the loop limit: {error}");
    let run = common::run_poisoned(ctx, op, &vec![0.5; shape.rows * shape.cols], shape);
    assert!(matches!(run, Err(Error::StrategyUnavailable { .. })), "{op:?} on {shape}: {run:?}");
    eprintln!("{op:?} {shape}: refused, {needed} loop iterations per invocation >= the driver's {limit}");
    true
}

#[test]
fn thread_per_row_matches_reference() {
    check_strategy(Strategy::ThreadPerRow, 0x5EED_0001);
}

#[test]
fn workgroup_per_row_matches_reference() {
    check_strategy(Strategy::WorkgroupPerRow, 0x5EED_0002);
}

#[test]
fn split_row_matches_reference() {
    // All but the 70,000-row shape: 140,000 workgroups of 256 in one submission hold
    // wgpu's GL context for longer than the 6 s after which other threads' wgpu calls
    // panic. Grids past 65,535 workgroups are covered for this strategy by the
    // small-limits device in tests/limits.rs.
    let mut shapes: Vec<(usize, usize)> = SHAPES.into_iter().filter(|&(rows, _)| rows < 65_536).collect();
    // Rows enough for fewer, longer segments than the 4096-column ones: 100 rows of
    // 40,009 take 6 (of at most 10), in uneven parts; 200 take 5, the fewest whose
    // segments a cached module still holds (8003 columns in 32-bit accesses, of 8448).
    shapes.extend([(100, 40_009), (200, 40_009)]);
    check_shapes(Strategy::SplitRow, 0x5EED_0005, &shapes);
}

#[test]
fn every_op_has_the_split_row() {
    let shape = Shape::new(2, 8);
    wgpu_softmax::SoftmaxBackward::new().strategy(Strategy::SplitRow).plan(ctx(), shape).unwrap();
    wgpu_softmax::CrossEntropy::new().strategy(Strategy::SplitRow).plan(ctx(), shape).unwrap();
}

#[test]
fn subgroup_per_row_matches_reference_or_is_refused() {
    let ctx = ctx();
    if ctx.has_subgroups() {
        check_strategy(Strategy::SubgroupPerRow, 0x5EED_0003);
    } else {
        assert!(
            !subgroups_required(),
            "WGPU_SOFTMAX_REQUIRE_SUBGROUPS=1 but {} has no subgroups",
            ctx.describe()
        );
        // Without subgroups the strategy must be refused with a typed error, not run.
        eprintln!("no subgroups on this adapter: checking that forcing the strategy is refused");
        for op in both_ops(Strategy::SubgroupPerRow) {
            let err = common::run_poisoned(ctx, op, &[1.0, 2.0], Shape::new(1, 2)).unwrap_err();
            assert!(matches!(err, Error::StrategyUnavailable { .. }), "{err}");
        }
    }
}

#[test]
fn automatic_choice_matches_reference() {
    let ctx = ctx();
    let mut rng = rng(0x5EED_0004);
    for (rows, cols) in [(513, 7), (129, 300), (17, 5000)] {
        let shape = Shape::new(rows, cols);
        let input = rng.logits(rows * cols, 5.0);
        for op in [Softmax::new(), Softmax::log()] {
            check_against_reference(ctx, op, &input, shape);
        }
    }
}
