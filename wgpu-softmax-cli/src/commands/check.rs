//! `wgpu-softmax check`: what the library ships, on fresh random data, against the f64
//! reference: one line per group of cases, the failures spelled out under their group.
//!
//! The groups (the `check` help text says the same):
//! - softmax and log-softmax: every strategy, f32, f16 and bf16, narrow rows and rows of
//!   odd length wider than a workgroup;
//! - their backward passes: the same product;
//! - the cross-entropy: every strategy, each reduction and target type (int64, int32,
//!   uint32, probabilities), class weights, `ignore_index`, label smoothing, and z-loss,
//!   softcap and the logsumexp, in f32; the defaults and the options in f16 and bf16;
//! - an N-D layout: every op above over axis 1 of a (2, 3, 4, 5) tensor (the
//!   cross-entropy in PyTorch's `(N, C, d1, d2)` layout), every strategy, f32 and bf16;
//! - the linear cross-entropy at 6 x 8 x 45 (with every gradient and a bias, and the
//!   loss alone), f32 and bf16, the planner's path;
//! - the distillation: every strategy, f32 and bf16, temperature 2, with a mask;
//! - sampling: greedy, and temperature with top-k, top-p and min-p each and together, f32
//!   and bf16, every draw in its row's allowed set with the log-probability of the
//!   renormalised distribution.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{Comparison, SeededRng, compare, round_to, widen};
use wgpu_softmax::{
    Context, CrossEntropy, CrossEntropyInput, Distill, DistillInput, Element, Error, Gradient,
    LinearCrossEntropy, LinearCrossEntropyInput, LinearShape, Reduction, Sampler, Shape, Softmax,
    SoftmaxBackward, Strategy, Targets, bf16, f16, reference,
};

use crate::args::{CheckArgs, Cli};
use crate::error::{CliError, one_line};

/// Every strategy, the split included.
const STRATEGIES: [Strategy; 4] =
    [Strategy::ThreadPerRow, Strategy::SubgroupPerRow, Strategy::WorkgroupPerRow, Strategy::SplitRow];

/// Row shapes: narrow rows, and rows of odd length wider than a workgroup (16-bit rows
/// then share words, which the edge pass handles).
const SHAPES: [Shape; 2] = [Shape::new(37, 10), Shape::new(5, 1499)];

/// The N-D tensor and its class axis.
const ND_DIMS: [usize; 4] = [2, 3, 4, 5];
/// See [`ND_DIMS`].
const ND_AXIS: isize = 1;

/// The linear cross-entropy's shape: N hidden states of D features, V classes.
const LINEAR: LinearShape = LinearShape::new(6, 8, 45);

/// What one run returns: one output per part it checks, widened to f32.
type Outputs = Result<Vec<Vec<f32>>, Error>;

/// Runs a case with a forced strategy, or the planner's choice (`None`).
type Runner = Box<dyn Fn(&Context, Option<Strategy>) -> Outputs>;

/// The reference of a case whose expected values depend on its outputs (the draws of a
/// sampler): one per part, from the outputs.
type Expect = Box<dyn Fn(&[Vec<f32>]) -> Vec<Vec<f64>>>;

/// One op with one set of options, one storage type and its inputs: the parts of its
/// result, each with its reference and tolerance, and how to run it.
struct Case {
    label: String,
    parts: Vec<(&'static str, Vec<f64>, Tolerance)>,
    /// Where set, the parts' references come from the outputs instead.
    expect: Option<Expect>,
    /// The strategies to run it with (`None`: the planner's choice).
    strategies: Vec<Option<Strategy>>,
    run: Runner,
}

/// Cases checked and reported together.
struct Group {
    name: &'static str,
    cases: Vec<Case>,
}

/// Counts of one group or of the whole check.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    not_available: usize,
    /// The largest error as a fraction of what the tolerance allows there.
    worst: f64,
}

/// Runs every group and prints a line for each.
///
/// # Errors
///
/// When any comparison fails (after every group), no adapter is found, the reference
/// refuses its input (a bug), or stdout fails.
pub fn run(cli: &Cli, args: &CheckArgs) -> Result<ExitCode, CliError> {
    let seed = args.seed.unwrap_or_else(clock_seed);
    let started = Instant::now();
    let ctx = cli.context("check")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "adapter: {}", ctx.describe())?;
    writeln!(out, "seed: {seed} (replay with --seed {seed})")?;
    let mut rng = SeededRng::new(seed);
    let groups = groups(&mut rng)
        .map_err(|e| CliError::library("check: the reference refused its input (a bug)", &e))?;
    let mut total = Tally::default();
    for group in &groups {
        let group_started = Instant::now();
        let mut tally = Tally::default();
        let mut failures = Vec::new();
        for case in &group.cases {
            for &strategy in &case.strategies {
                let outcome = (case.run)(&ctx, strategy);
                let name = match strategy {
                    Some(s) => format!("{} {s:?}", case.label),
                    None => case.label.clone(),
                };
                match outcome {
                    Ok(outputs) => {
                        let found = case.expect.as_ref().map(|expect| expect(&outputs));
                        for (index, (part, expected, tolerance)) in case.parts.iter().enumerate() {
                            let expected = found.as_ref().and_then(|f| f.get(index)).unwrap_or(expected);
                            let actual = outputs.get(index).map_or(&[][..], Vec::as_slice);
                            let comparison = compare(actual, expected, *tolerance);
                            tally.record(&comparison, worst_fraction(actual, expected, *tolerance));
                            if !comparison.passed() {
                                failures.push(format!("{name} {part}: {comparison}"));
                            }
                        }
                    }
                    // The planner refuses it on this adapter: not a failure.
                    Err(Error::StrategyUnavailable { .. }) => tally.not_available += 1,
                    Err(error) => {
                        tally.failed += 1;
                        failures.push(format!("{name}: {error}"));
                    }
                }
            }
        }
        writeln!(out, "{}", tally.line(group.name, group_started.elapsed().as_secs_f64()))?;
        for failure in &failures {
            writeln!(out, "    FAIL {}", one_line(failure))?;
        }
        total.add(&tally);
    }
    writeln!(
        out,
        "check: {} passed, {} failed, {} n/a in {:.1} s (seed {seed})",
        total.passed,
        total.failed,
        total.not_available,
        started.elapsed().as_secs_f64()
    )?;
    if total.failed > 0 {
        out.flush()?;
        return Err(CliError::new(format!(
            "check: {} of {} comparisons failed on {} (seed {seed}; see above)",
            total.failed,
            total.passed + total.failed,
            ctx.adapter_info().name
        )));
    }
    Ok(ExitCode::SUCCESS)
}

impl Tally {
    fn record(&mut self, comparison: &Comparison, worst: f64) {
        if comparison.passed() {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        self.worst = self.worst.max(worst);
    }

    fn add(&mut self, other: &Self) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.not_available += other.not_available;
        self.worst = self.worst.max(other.worst);
    }

    /// The group's line: its name, the counts, the largest error as a fraction of the
    /// tolerance, and the time taken.
    fn line(&self, name: &str, seconds: f64) -> String {
        let result = if self.failed == 0 { "pass" } else { "FAIL" };
        let na = if self.not_available > 0 { format!(", {} n/a", self.not_available) } else { String::new() };
        format!(
            "{name:<62} {result}  {} passed, {} failed{na}; worst error {:.0}% of tolerance; {seconds:.1} s",
            self.passed,
            self.failed,
            100.0 * self.worst
        )
    }
}

/// The largest `|actual - expected|` as a fraction of what `tolerance` allows there, over
/// the finite pairs (special values must match exactly, which the comparison checks).
fn worst_fraction(actual: &[f32], expected: &[f64], tolerance: Tolerance) -> f64 {
    actual
        .iter()
        .zip(expected)
        .filter(|(a, e)| a.is_finite() && e.is_finite())
        .map(|(&a, &e)| (f64::from(a) - e).abs() / (tolerance.atol + tolerance.rtol * e.abs()))
        .fold(0.0, f64::max)
}

/// A seed from the clock, for a fresh run each time.
fn clock_seed() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_secs().wrapping_mul(1_000_000_007) ^ u64::from(since_epoch.subsec_nanos())
}

/// Every strategy, forced.
fn every_strategy() -> Vec<Option<Strategy>> {
    STRATEGIES.into_iter().map(Some).collect()
}

/// The groups, their inputs drawn from `rng`.
fn groups(rng: &mut SeededRng) -> Result<Vec<Group>, Error> {
    let nd = Shape::of_dims(&ND_DIMS, ND_AXIS)?;
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    for shape in SHAPES {
        forward.extend(softmax_cases::<f32>(rng, shape)?);
        forward.extend(softmax_cases::<f16>(rng, shape)?);
        forward.extend(softmax_cases::<bf16>(rng, shape)?);
        backward.extend(backward_cases::<f32>(rng, shape)?);
        backward.extend(backward_cases::<f16>(rng, shape)?);
        backward.extend(backward_cases::<bf16>(rng, shape)?);
    }

    let mut cross_entropy = Vec::new();
    for shape in SHAPES {
        for options in CrossEntropyOptions::ALL {
            cross_entropy.push(cross_entropy_case::<f32>(rng, shape, options)?);
        }
        for options in [CrossEntropyOptions::MeanI64, CrossEntropyOptions::ZLossSoftcapLse] {
            cross_entropy.push(cross_entropy_case::<f16>(rng, shape, options)?);
            cross_entropy.push(cross_entropy_case::<bf16>(rng, shape, options)?);
        }
    }

    let mut layout = Vec::new();
    layout.extend(softmax_cases::<f32>(rng, nd)?);
    layout.extend(softmax_cases::<bf16>(rng, nd)?);
    layout.extend(backward_cases::<f32>(rng, nd)?);
    layout.extend(backward_cases::<bf16>(rng, nd)?);
    layout.push(cross_entropy_case::<f32>(rng, nd, CrossEntropyOptions::ZLossSoftcapLse)?);
    layout.push(cross_entropy_case::<bf16>(rng, nd, CrossEntropyOptions::MeanProbabilitiesWeightSmoothing)?);

    let linear = vec![
        linear_case::<f32>(rng, true)?,
        linear_case::<f32>(rng, false)?,
        linear_case::<bf16>(rng, true)?,
        linear_case::<bf16>(rng, false)?,
    ];

    let mut distill = Vec::new();
    for shape in SHAPES {
        distill.push(distill_case::<f32>(rng, shape)?);
        distill.push(distill_case::<bf16>(rng, shape)?);
    }

    let mut sampling = Vec::new();
    for sampler in samplers(rng) {
        sampling.push(sample_case::<f32>(rng, sampler)?);
        sampling.push(sample_case::<bf16>(rng, sampler)?);
    }

    Ok(vec![
        Group { name: "softmax, log-softmax (4 strategies, f32 f16 bf16)", cases: forward },
        Group { name: "softmax and log-softmax backward (4 strategies, f32 f16 bf16)", cases: backward },
        Group { name: "cross-entropy (4 strategies, options, f32 f16 bf16)", cases: cross_entropy },
        Group { name: "N-D layout, class axis 1 of (2, 3, 4, 5) (every op above)", cases: layout },
        Group { name: "linear cross-entropy 6x8x45 (gradients, loss alone)", cases: linear },
        Group { name: "distillation (4 strategies, f32 bf16, mask)", cases: distill },
        Group { name: "sampling (greedy, temperature, top-k, top-p, min-p; f32 bf16)", cases: sampling },
    ])
}

/// Softmax and log-softmax of fresh logits in `T`.
fn softmax_cases<T: Element>(rng: &mut SeededRng, shape: Shape) -> Result<Vec<Case>, Error> {
    let mut cases = Vec::new();
    for (name, op, tolerance) in [
        ("softmax", Softmax::new(), Tolerance::SOFTMAX),
        ("log-softmax", Softmax::log(), Tolerance::LOG_SOFTMAX),
    ] {
        let x: Vec<T> = round_to(&rng.logits(shape.len()?, 8.0));
        let expected =
            if op.is_log() { reference::log_softmax(&x, shape)? } else { reference::softmax(&x, shape)? };
        cases.push(Case {
            label: format!("{name} {} {shape}", T::DTYPE),
            parts: vec![("", expected, tolerance.for_dtype(T::DTYPE))],
            strategies: every_strategy(),
            expect: None,
            run: Box::new(move |ctx, strategy| {
                Ok(vec![widen(&with_strategy(op, strategy).run(ctx, &x, shape)?)])
            }),
        });
    }
    Ok(cases)
}

fn with_strategy(op: Softmax, strategy: Option<Strategy>) -> Softmax {
    strategy.map_or(op, |s| op.strategy(s))
}

/// The backward passes in `T`, of the reference's forward output (so that the backward
/// is checked alone).
fn backward_cases<T: Element>(rng: &mut SeededRng, shape: Shape) -> Result<Vec<Case>, Error> {
    let mut cases = Vec::new();
    for (name, op) in
        [("softmax backward", SoftmaxBackward::new()), ("log-softmax backward", SoftmaxBackward::log())]
    {
        let x = rng.logits(shape.len()?, 8.0);
        let y64 =
            if op.is_log() { reference::log_softmax(&x, shape)? } else { reference::softmax(&x, shape)? };
        #[allow(clippy::cast_possible_truncation)] // probabilities and log-probabilities fit f32
        let y: Vec<T> = y64.iter().map(|&v| T::from_f32(v as f32)).collect();
        let dy: Vec<T> = round_to(&rng.logits(shape.len()?, 1.0));
        let expected = if op.is_log() {
            reference::log_softmax_backward(&y, &dy, shape)?
        } else {
            reference::softmax_backward(&y, &dy, shape)?
        };
        cases.push(Case {
            label: format!("{name} {} {shape}", T::DTYPE),
            parts: vec![("", expected, Tolerance::BACKWARD.for_dtype(T::DTYPE))],
            strategies: every_strategy(),
            expect: None,
            run: Box::new(move |ctx, strategy| {
                let op = strategy.map_or(op, |s| op.strategy(s));
                Ok(vec![widen(&op.run(ctx, &y, &dy, shape)?)])
            }),
        });
    }
    Ok(cases)
}

/// The cross-entropy option sets checked.
#[derive(Clone, Copy, Debug)]
enum CrossEntropyOptions {
    /// Mean, int64 targets, PyTorch's defaults.
    MeanI64,
    /// Sum, int32 targets with ignored rows (`ignore_index` -1), class weights.
    SumI32IgnoreWeight,
    /// None, uint32 targets, label smoothing 0.1.
    NoneU32Smoothing,
    /// Mean, probability targets, class weights, label smoothing 0.2.
    MeanProbabilitiesWeightSmoothing,
    /// Mean, int64 targets, z-loss 1e-3, softcap 5, the logsumexp and the z-loss returned.
    ZLossSoftcapLse,
}

impl CrossEntropyOptions {
    const ALL: [Self; 5] = [
        Self::MeanI64,
        Self::SumI32IgnoreWeight,
        Self::NoneU32Smoothing,
        Self::MeanProbabilitiesWeightSmoothing,
        Self::ZLossSoftcapLse,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::MeanI64 => "mean int64",
            Self::SumI32IgnoreWeight => "sum int32 ignore weight",
            Self::NoneU32Smoothing => "none uint32 smoothing",
            Self::MeanProbabilitiesWeightSmoothing => "mean probs weight smoothing",
            Self::ZLossSoftcapLse => "mean int64 z-loss softcap lse",
        }
    }
}

/// Owned targets, so that a case can keep them.
enum OwnedTargets<T> {
    I64(Vec<i64>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    Probabilities(Vec<T>),
}

impl<T: Element> OwnedTargets<T> {
    fn borrow(&self) -> Targets<'_, T> {
        match self {
            Self::I64(t) => Targets::I64(t),
            Self::I32(t) => Targets::I32(t),
            Self::U32(t) => Targets::U32(t),
            Self::Probabilities(p) => Targets::Probabilities(p),
        }
    }
}

/// Random class indices below `classes`, one per row.
fn classes(rng: &mut SeededRng, rows: usize, classes: usize) -> Vec<u64> {
    let bound = u64::try_from(classes).unwrap_or(u64::MAX);
    (0..rows).map(|_| rng.below(bound)).collect()
}

fn cross_entropy_case<T: Element>(
    rng: &mut SeededRng,
    shape: Shape,
    options: CrossEntropyOptions,
) -> Result<Case, Error> {
    let (rows, cols) = (shape.rows, shape.cols);
    let logits: Vec<T> = round_to(&rng.logits(shape.len()?, 8.0));
    let drawn = classes(rng, rows, cols);
    let weight: Vec<f32> = (0..cols).map(|_| rng.uniform(0.5, 2.0)).collect();
    let as_i64 = |c: &u64| i64::try_from(*c).unwrap_or(i64::MAX);
    let (op, targets, weight) = match options {
        CrossEntropyOptions::MeanI64 => {
            (CrossEntropy::new(), OwnedTargets::I64(drawn.iter().map(as_i64).collect()), None)
        }
        CrossEntropyOptions::SumI32IgnoreWeight => {
            let targets = drawn
                .iter()
                .enumerate()
                .map(|(row, c)| if row % 4 == 1 { -1 } else { i32::try_from(*c).unwrap_or(i32::MAX) })
                .collect();
            (
                CrossEntropy::new().reduction(Reduction::Sum).ignore_index(-1),
                OwnedTargets::I32(targets),
                Some(weight),
            )
        }
        CrossEntropyOptions::NoneU32Smoothing => (
            CrossEntropy::new().reduction(Reduction::None).label_smoothing(0.1),
            OwnedTargets::U32(drawn.iter().map(|&c| u32::try_from(c).unwrap_or(u32::MAX)).collect()),
            None,
        ),
        CrossEntropyOptions::MeanProbabilitiesWeightSmoothing => {
            // Each position's probabilities over the classes sum to 1, wherever the class
            // axis lies: drawn by row, then laid out as the logits are.
            let mut by_row: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(0.0, 1.0)).collect();
            for row in by_row.chunks_mut(cols.max(1)) {
                let sum: f32 = row.iter().sum();
                row.iter_mut().for_each(|p| *p /= sum.max(f32::MIN_POSITIVE));
            }
            let probabilities = lay_out_rows(&by_row, shape);
            (
                CrossEntropy::new().label_smoothing(0.2),
                OwnedTargets::Probabilities(round_to(&probabilities)),
                Some(weight),
            )
        }
        CrossEntropyOptions::ZLossSoftcapLse => (
            CrossEntropy::new().z_loss(1e-3).softcap(5.0).lse(true),
            OwnedTargets::I64(drawn.iter().map(as_i64).collect()),
            None,
        ),
    };
    let op = op.gradient(Gradient::Separate);
    let expected = {
        let mut input = CrossEntropyInput::new(&logits, shape, targets.borrow());
        if let Some(w) = &weight {
            input = input.weight(w);
        }
        reference::cross_entropy(&op, &input)?
    };
    let grad_tolerance = Tolerance::CROSS_ENTROPY_GRAD.for_dtype(T::DTYPE);
    let mut parts = vec![
        ("loss", expected.loss, Tolerance::CROSS_ENTROPY_LOSS),
        ("grad", expected.grad.unwrap_or_default(), grad_tolerance),
    ];
    let lse = expected.lse.is_some();
    if let Some(lse) = expected.lse {
        parts.push(("lse", lse, Tolerance::CROSS_ENTROPY_LOSS));
    }
    Ok(Case {
        label: format!("cross-entropy {} {} {shape}", options.label(), T::DTYPE),
        parts,
        strategies: every_strategy(),
        expect: None,
        run: Box::new(move |ctx, strategy| {
            let mut input = CrossEntropyInput::new(&logits, shape, targets.borrow());
            if let Some(w) = &weight {
                input = input.weight(w);
            }
            let op = strategy.map_or(op, |s| op.strategy(s));
            let out = op.run(ctx, &input)?;
            let mut outputs = vec![out.loss, widen(&out.grad.unwrap_or_default())];
            if lse {
                outputs.push(out.lse.unwrap_or_default());
            }
            Ok(outputs)
        }),
    })
}

/// Values drawn row by row (each row's classes together), laid out as `shape` holds them:
/// the classes of a row `inner` elements apart.
fn lay_out_rows(by_row: &[f32], shape: Shape) -> Vec<f32> {
    let (cols, inner) = (shape.cols, shape.inner);
    let mut out = vec![0.0; by_row.len()];
    for (row, values) in by_row.chunks(cols.max(1)).enumerate() {
        let (outer, position) = (row / inner, row % inner);
        for (class, &value) in values.iter().enumerate() {
            out[(outer * cols + class) * inner + position] = value;
        }
    }
    out
}

/// The linear cross-entropy at [`LINEAR`] in `T`: with every gradient, a bias, class
/// weights and label smoothing; or the loss and logsumexp alone, with z-loss and softcap.
fn linear_case<T: Element>(rng: &mut SeededRng, gradients: bool) -> Result<Case, Error> {
    let LinearShape { rows, hidden: d, classes: v } = LINEAR;
    let hidden: Vec<T> = round_to(&rng.logits(rows * d, 1.0));
    let classifier: Vec<T> = round_to(&rng.logits(v * d, 1.0));
    let bias: Vec<T> = round_to(&rng.logits(v, 0.5));
    let weight: Vec<f32> = (0..v).map(|_| rng.uniform(0.5, 2.0)).collect();
    let targets: Vec<i64> =
        classes(rng, rows, v).iter().map(|&c| i64::try_from(c).unwrap_or(i64::MAX)).collect();
    let op = if gradients {
        LinearCrossEntropy::new().label_smoothing(0.1)
    } else {
        LinearCrossEntropy::new().z_loss(1e-3).softcap(5.0).gradients(wgpu_softmax::LinearGradients::NONE)
    }
    .lse(true);
    let input = |hidden, classifier, targets| {
        let input = LinearCrossEntropyInput::new(hidden, classifier, LINEAR, Targets::I64(targets));
        if gradients { input.bias(&bias).weight(&weight) } else { input }
    };
    let expected = reference::linear_cross_entropy(&op, &input(&hidden, &classifier, &targets))?;
    let loss = Tolerance::LINEAR_CROSS_ENTROPY_LOSS;
    let grad = Tolerance::LINEAR_CROSS_ENTROPY_GRAD.for_dtype(T::DTYPE);
    let mut parts = vec![("loss", expected.loss, loss), ("lse", expected.lse.unwrap_or_default(), loss)];
    if gradients {
        parts.push(("dH", expected.grad_hidden.unwrap_or_default(), grad));
        parts.push(("dW", expected.grad_classifier.unwrap_or_default(), grad));
        parts.push(("db", expected.grad_bias.unwrap_or_default(), grad));
    }
    let what = if gradients { "gradients bias weight smoothing" } else { "loss alone z-loss softcap" };
    Ok(Case {
        label: format!("linear cross-entropy {what} {}", T::DTYPE),
        parts,
        strategies: vec![None],
        expect: None,
        run: Box::new(move |ctx, _| {
            let input = LinearCrossEntropyInput::new(&hidden, &classifier, LINEAR, Targets::I64(&targets));
            let input = if gradients { input.bias(&bias).weight(&weight) } else { input };
            let out = op.run(ctx, &input)?;
            let mut outputs = vec![out.loss, out.lse.unwrap_or_default()];
            if gradients {
                for g in [out.grad_hidden, out.grad_classifier, out.grad_bias] {
                    outputs.push(widen(&g.unwrap_or_default()));
                }
            }
            Ok(outputs)
        }),
    })
}

/// The distillation of a student's logits from a teacher's in `T`, temperature 2, every
/// fifth row masked by its class target.
fn distill_case<T: Element>(rng: &mut SeededRng, shape: Shape) -> Result<Case, Error> {
    let student: Vec<T> = round_to(&rng.logits(shape.len()?, 4.0));
    let teacher: Vec<T> = round_to(&rng.logits(shape.len()?, 4.0));
    let targets: Vec<i64> = classes(rng, shape.rows, shape.cols)
        .iter()
        .enumerate()
        .map(|(row, &c)| if row % 5 == 2 { -100 } else { i64::try_from(c).unwrap_or(i64::MAX) })
        .collect();
    let op = Distill::new().temperature(2.0);
    let expected = reference::distill(
        &op,
        &DistillInput::new(&student, &teacher, shape).targets(Targets::I64(&targets)),
    )?;
    let parts = vec![
        ("loss", expected.loss, Tolerance::DISTILL_LOSS),
        ("grad", expected.grad.unwrap_or_default(), Tolerance::DISTILL_GRAD.for_dtype(T::DTYPE)),
    ];
    Ok(Case {
        label: format!("distillation {} {shape}", T::DTYPE),
        parts,
        strategies: every_strategy(),
        expect: None,
        run: Box::new(move |ctx, strategy| {
            let op = strategy.map_or(op, |s| op.strategy(s));
            let input = DistillInput::new(&student, &teacher, shape).targets(Targets::I64(&targets));
            let out = op.run(ctx, &input)?;
            Ok(vec![out.loss, widen(&out.grad.unwrap_or_default())])
        }),
    })
}

/// The sampling shape: rows of a vocabulary of 1000.
const SAMPLE_SHAPE: Shape = Shape::new(8, 1000);

/// Draws per row.
const DRAWS: usize = 8;

/// Greedy, each filter with a temperature, and all of them together.
fn samplers(rng: &mut SeededRng) -> Vec<Sampler> {
    let base = Sampler { num_samples: DRAWS, seed: rng.below(u64::MAX), ..Sampler::default() };
    vec![
        Sampler { temperature: 0.0, ..base },
        Sampler { temperature: 0.8, top_k: 5, ..base },
        Sampler { temperature: 1.2, top_p: 0.9, ..base },
        Sampler { min_p: 0.1, ..base },
        Sampler { temperature: 0.7, top_k: 50, top_p: 0.8, min_p: 0.05, ..base },
    ]
}

/// `sampler` on fresh logits in `T`: each draw must be in its row's allowed set (the
/// reference's distribution gives it a probability above 0), with the log-probability of
/// that distribution (to `2e-3 + 1e-4 |ln p|`, as the GPU tests hold it).
fn sample_case<T: Element>(rng: &mut SeededRng, sampler: Sampler) -> Result<Case, Error> {
    let shape = SAMPLE_SHAPE;
    let logits: Vec<T> = round_to(&rng.logits(shape.len()?, 4.0));
    let distribution = reference::sample_distribution(&logits, shape, &sampler)?;
    let draws = shape.rows * DRAWS;
    let exact = Tolerance { atol: 0.0, rtol: 0.0 };
    let logprob = Tolerance { atol: 2e-3, rtol: 1e-4 };
    let label = format!(
        "sample temperature {} top-k {} top-p {} min-p {} {}",
        sampler.temperature,
        sampler.top_k,
        sampler.top_p,
        sampler.min_p,
        T::DTYPE
    );
    Ok(Case {
        label,
        // Placeholders: the references come from the draws.
        parts: vec![("allowed ids", vec![0.0; draws], exact), ("logprobs", vec![0.0; draws], logprob)],
        strategies: vec![None],
        expect: Some(Box::new(move |outputs| {
            let ids = outputs.first().map_or(&[][..], Vec::as_slice);
            let mut allowed = Vec::with_capacity(draws);
            let mut logprobs = Vec::with_capacity(draws);
            for (at, &id) in ids.iter().enumerate() {
                let row = distribution.get(at / DRAWS).and_then(Option::as_ref);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // ids below 2^24
                let p = row.and_then(|r| r.get(id as usize)).copied().filter(|&p| id >= 0.0 && p > 0.0);
                // An id outside the allowed set is expected as -1: a mismatch.
                allowed.push(if p.is_some() { f64::from(id) } else { -1.0 });
                logprobs.push(p.map_or(f64::NAN, f64::ln));
            }
            vec![allowed, logprobs]
        })),
        run: Box::new(move |ctx, _| {
            let out = sampler.run(ctx, &logits, shape, true)?;
            #[allow(clippy::cast_precision_loss)] // ids below 2^24
            let ids = out.ids.iter().map(|&id| id as f32).collect();
            Ok(vec![ids, out.logprobs.unwrap_or_default()])
        }),
    })
}
