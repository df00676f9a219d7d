//! `wgpu-softmax check`: every op on every strategy the adapter has, on fresh random data,
//! against the f64 reference, as a pass/fail table.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{Comparison, SeededRng, compare};
use wgpu_softmax::{
    Context, CrossEntropy, CrossEntropyInput, Error, Gradient, Reduction, Shape, Softmax, SoftmaxBackward,
    Strategy, Targets, reference,
};

use crate::args::{CheckArgs, Cli};
use crate::error::{CliError, one_line};

/// Shapes every op is checked on: narrow rows, and rows wider than a workgroup.
const SHAPES: [Shape; 2] = [Shape::new(37, 10), Shape::new(5, 1500)];

/// What one case returns from the GPU: one output per part it checks.
type Outputs = Result<Vec<Vec<f32>>, Error>;

/// Runs a case with a forced strategy.
type Runner<'a> = Box<dyn Fn(&Context, Strategy) -> Outputs + 'a>;

/// One op with one set of options and its inputs: the parts of its result, each with its
/// reference and tolerance, and how to run it with a forced strategy.
struct Case<'a> {
    op: String,
    parts: Vec<(&'static str, Vec<f64>, Tolerance)>,
    run: Runner<'a>,
}

/// Runs every case on every strategy and prints the table.
///
/// # Errors
///
/// When any comparison fails (after the table), no adapter is found, the reference
/// refuses its input (a bug), or stdout fails.
pub fn run(cli: &Cli, args: &CheckArgs) -> Result<ExitCode, CliError> {
    let seed = args.seed.unwrap_or_else(clock_seed);
    let ctx = cli.context("check")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "adapter: {}", ctx.describe())?;
    writeln!(out, "seed: {seed} (replay with --seed {seed})")?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<48} {:<16} {:<8} {:<6} {:>11} {:>11}",
        "op", "strategy", "shape", "result", "max abs err", "max rel err"
    )?;

    let mut rng = SeededRng::new(seed);
    let (mut passed, mut failed, mut not_available) = (0usize, 0usize, 0usize);
    for shape in SHAPES {
        for case in cases(&mut rng, shape)? {
            for strategy in Strategy::ALL {
                let outcome = run_case(&ctx, &case, strategy);
                for (index, (part, expected, tolerance)) in case.parts.iter().enumerate() {
                    let op = if part.is_empty() { case.op.clone() } else { format!("{} {part}", case.op) };
                    let row = Row { op: &op, strategy, shape };
                    let line = match &outcome {
                        Ok(outputs) => {
                            let actual = outputs.get(index).map_or(&[][..], Vec::as_slice);
                            let comparison = compare(actual, expected, *tolerance);
                            if comparison.passed() {
                                passed += 1;
                                row.line("pass", Some(&comparison), "")
                            } else {
                                failed += 1;
                                row.line("FAIL", Some(&comparison), &comparison.to_string())
                            }
                        }
                        Err(Unavailable(reason)) => {
                            not_available += 1;
                            row.line("n/a", None, reason)
                        }
                        Err(Failed(message)) => {
                            failed += 1;
                            row.line("FAIL", None, message)
                        }
                    };
                    writeln!(out, "{line}")?;
                }
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "check: {passed} passed, {failed} failed, {not_available} n/a (seed {seed})")?;
    if failed > 0 {
        out.flush()?;
        return Err(CliError::new(format!(
            "check: {failed} of {} comparisons failed on {} (seed {seed}; see the table)",
            passed + failed,
            ctx.adapter_info().name
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `case` with `strategy` forced, unless the adapter cannot run that strategy.
fn run_case(ctx: &Context, case: &Case<'_>, strategy: Strategy) -> Result<Vec<Vec<f32>>, NotRun> {
    (case.run)(ctx, strategy).map_err(|error| match error {
        Error::StrategyUnavailable { reason, .. } => Unavailable(reason.to_owned()),
        error => Failed(error.to_string()),
    })
}

/// The first columns of a row of the table.
struct Row<'a> {
    op: &'a str,
    strategy: Strategy,
    shape: Shape,
}

impl Row<'_> {
    /// The row's line: result, largest errors when compared, and any detail.
    fn line(&self, result: &str, errors: Option<&Comparison>, detail: &str) -> String {
        let (abs, rel) = errors.map_or_else(
            || ("-".to_owned(), "-".to_owned()),
            |c| (format!("{:.3e}", c.max_abs_error), format!("{:.3e}", c.max_rel_error)),
        );
        let detail = if detail.is_empty() { String::new() } else { format!("  {}", one_line(detail)) };
        format!(
            "{:<48} {:<16} {:<8} {result:<6} {abs:>11} {rel:>11}{detail}",
            self.op,
            format!("{:?}", self.strategy),
            self.shape.to_string()
        )
    }
}

/// Why a strategy did not run.
enum NotRun {
    /// The planner refused it on this adapter: not a failure.
    Unavailable(String),
    /// It failed.
    Failed(String),
}
use NotRun::{Failed, Unavailable};

/// A seed from the clock, for a fresh run each time.
fn clock_seed() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_secs().wrapping_mul(1_000_000_007) ^ u64::from(since_epoch.subsec_nanos())
}

/// Every op and option set on fresh random data of `shape`.
fn cases(rng: &mut SeededRng, shape: Shape) -> Result<Vec<Case<'static>>, CliError> {
    let reference_error = |e: Error| CliError::library("check: the reference refused its input (a bug)", &e);
    let len = shape.rows * shape.cols;
    let mut cases = Vec::new();

    for (name, op, tolerance) in [
        ("softmax", Softmax::new(), Tolerance::SOFTMAX),
        ("log-softmax", Softmax::log(), Tolerance::LOG_SOFTMAX),
    ] {
        let x = rng.logits(len, 8.0);
        let expected =
            if op.is_log() { reference::log_softmax(&x, shape) } else { reference::softmax(&x, shape) }
                .map_err(reference_error)?;
        cases.push(Case {
            op: name.to_owned(),
            parts: vec![("", expected, tolerance)],
            run: Box::new(move |ctx, strategy| Ok(vec![op.strategy(strategy).run(ctx, &x, shape)?])),
        });
    }

    for option_set in CrossEntropyOptions::ALL {
        cases.push(cross_entropy_case(rng, shape, option_set).map_err(reference_error)?);
    }

    for (name, op) in
        [("softmax backward", SoftmaxBackward::new()), ("log-softmax backward", SoftmaxBackward::log())]
    {
        // The forward output from the reference, so that the backward is checked alone.
        let x = rng.logits(len, 8.0);
        let y64 = if op.is_log() { reference::log_softmax(&x, shape) } else { reference::softmax(&x, shape) }
            .map_err(reference_error)?;
        #[allow(clippy::cast_possible_truncation)] // probabilities and log-probabilities fit f32
        let y: Vec<f32> = y64.iter().map(|&v| v as f32).collect();
        let dy = rng.logits(len, 1.0);
        let expected = if op.is_log() {
            reference::log_softmax_backward(&y, &dy, shape)
        } else {
            reference::softmax_backward(&y, &dy, shape)
        }
        .map_err(reference_error)?;
        cases.push(Case {
            op: name.to_owned(),
            parts: vec![("", expected, Tolerance::BACKWARD)],
            run: Box::new(move |ctx, strategy| Ok(vec![op.strategy(strategy).run(ctx, &y, &dy, shape)?])),
        });
    }
    Ok(cases)
}

/// The cross-entropy option sets checked: every reduction, every target type, weights,
/// ignored rows and label smoothing.
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
}

impl CrossEntropyOptions {
    const ALL: [Self; 4] = [
        Self::MeanI64,
        Self::SumI32IgnoreWeight,
        Self::NoneU32Smoothing,
        Self::MeanProbabilitiesWeightSmoothing,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::MeanI64 => "cross-entropy mean int64",
            Self::SumI32IgnoreWeight => "cross-entropy sum int32 ignore weight",
            Self::NoneU32Smoothing => "cross-entropy none uint32 smoothing",
            Self::MeanProbabilitiesWeightSmoothing => "cross-entropy mean probs weight smoothing",
        }
    }
}

/// Owned targets, so that a case can keep them.
enum OwnedTargets {
    I64(Vec<i64>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    Probabilities(Vec<f32>),
}

impl OwnedTargets {
    fn borrow(&self) -> Targets<'_> {
        match self {
            Self::I64(t) => Targets::I64(t),
            Self::I32(t) => Targets::I32(t),
            Self::U32(t) => Targets::U32(t),
            Self::Probabilities(p) => Targets::Probabilities(p),
        }
    }
}

fn cross_entropy_case(
    rng: &mut SeededRng,
    shape: Shape,
    options: CrossEntropyOptions,
) -> Result<Case<'static>, Error> {
    let (rows, cols) = (shape.rows, shape.cols);
    let logits = rng.logits(rows * cols, 8.0);
    let bound = u64::try_from(cols).unwrap_or(u64::MAX);
    let classes: Vec<u64> = (0..rows).map(|_| rng.below(bound)).collect();
    let weight: Vec<f32> = (0..cols).map(|_| rng.uniform(0.5, 2.0)).collect();
    let as_i64 = |c: &u64| i64::try_from(*c).unwrap_or(i64::MAX);
    let (op, targets, weight) = match options {
        CrossEntropyOptions::MeanI64 => {
            (CrossEntropy::new(), OwnedTargets::I64(classes.iter().map(as_i64).collect()), None)
        }
        CrossEntropyOptions::SumI32IgnoreWeight => {
            let targets = classes
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
            OwnedTargets::U32(classes.iter().map(|&c| u32::try_from(c).unwrap_or(u32::MAX)).collect()),
            None,
        ),
        CrossEntropyOptions::MeanProbabilitiesWeightSmoothing => {
            let mut probabilities: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(0.0, 1.0)).collect();
            for row in probabilities.chunks_mut(cols.max(1)) {
                let sum: f32 = row.iter().sum();
                row.iter_mut().for_each(|p| *p /= sum.max(f32::MIN_POSITIVE));
            }
            (
                CrossEntropy::new().label_smoothing(0.2),
                OwnedTargets::Probabilities(probabilities),
                Some(weight),
            )
        }
    };
    let op = op.gradient(Gradient::Separate);
    let expected = {
        let mut input = CrossEntropyInput::new(&logits, shape, targets.borrow());
        if let Some(w) = &weight {
            input = input.weight(w);
        }
        reference::cross_entropy(&op, &input)?
    };
    let parts = vec![
        ("loss", expected.loss, Tolerance::CROSS_ENTROPY_LOSS),
        ("grad", expected.grad.unwrap_or_default(), Tolerance::CROSS_ENTROPY_GRAD),
    ];
    Ok(Case {
        op: options.label().to_owned(),
        parts,
        run: Box::new(move |ctx, strategy| {
            let mut input = CrossEntropyInput::new(&logits, shape, targets.borrow());
            if let Some(w) = &weight {
                input = input.weight(w);
            }
            let out = op.strategy(strategy).run(ctx, &input)?;
            Ok(vec![out.loss, out.grad.unwrap_or_default()])
        }),
    })
}
