//! `wgpu-softmax cross-entropy`: the fused softmax cross-entropy of logits and targets,
//! with its gradient.

use crate::args::DTypeArg;
use std::path::Path;

use wgpu_softmax::testing::round_to;
use wgpu_softmax::{
    Context, CrossEntropy, CrossEntropyInput, Element, Error, Gradient, PlanRequest, Reduction, Shape,
    Targets,
};

use super::{
    FloatInput, Stored, distinct_outputs, float_classes_message, read_float, read_npy, report_written,
    shape_text, storage_dtype, whole_number_floats,
};
use crate::args::{Cli, CrossEntropyArgs};
use crate::commands::plan;
use crate::error::CliError;
use crate::npy::{self, Array, Data};
use crate::output::{PendingOutput, commit_all};
use crate::progress::Progress;
use crate::verbose;

/// Class-index or probability targets, as read.
enum TargetData {
    /// Class indices of any integer type, widened.
    Classes(Vec<i64>),
    /// Probabilities as f32, rounded to the storage type when run.
    Probabilities(Vec<f32>),
}

/// Reads and checks every input, reserves the outputs, runs the op and writes the loss
/// and the gradient.
///
/// # Errors
///
/// A bad input or output file (an output that is also an input, or two outputs that are
/// one file), mismatched shapes, a bad target or option, or a library error, each naming
/// its file or option.
pub fn run(cli: &Cli, args: &CrossEntropyArgs) -> Result<(), CliError> {
    let mut inputs = vec![args.logits.as_path(), args.targets.as_path()];
    inputs.extend(args.options.weight.as_deref());
    let named = [
        ("--loss", Some(args.loss.as_path())),
        ("--grad", args.grad.as_deref()),
        ("--lse", args.lse.as_deref()),
    ];
    distinct_outputs(&named)?;
    let mut progress = Progress::start("cross-entropy", "reading the inputs");
    let mut loss_output = PendingOutput::create(&args.loss, &inputs)?;
    let grad_output = args.grad.as_deref().map(|grad| PendingOutput::create(grad, &inputs)).transpose()?;
    let lse_output = args.lse.as_deref().map(|lse| PendingOutput::create(lse, &inputs)).transpose()?;

    let FloatInput { shape: logits_shape, data: logits, half } = read_float(&args.logits, "logits")?;
    // PyTorch's layouts: (N, C, d1..dk) with the classes on axis 1 and class targets
    // (N, d1..dk); 1-D logits (C,) are one sample, with a 0-d class target and 0-d
    // per-sample outputs.
    let (shape, per_sample_shape): (Shape, Vec<usize>) = match *logits_shape.as_slice() {
        [cols] => (Shape::new(1, cols), Vec::new()),
        [_, _, ..] => {
            let shape = Shape::of_dims(&logits_shape, 1).map_err(|e| CliError::file(&args.logits, e))?;
            let per_sample = logits_shape.iter().enumerate().filter(|&(axis, _)| axis != 1).map(|(_, &d)| d);
            (shape, per_sample.collect())
        }
        [] => {
            return Err(CliError::file(
                &args.logits,
                "0-d logits have no classes: give (N, C, d1..dk), (N, C) or (C,)".to_owned(),
            ));
        }
    };
    let cols = shape.cols;
    let targets = read_targets(&args.targets, &args.logits, (&per_sample_shape, &logits_shape))?;
    let weight = match &args.options.weight {
        Some(path) => Some(read_weight(path, &args.logits, cols)?),
        None => None,
    };

    let reduction = args.options.reduction.to_reduction();
    let gradient = if args.grad.is_some() { Gradient::Separate } else { Gradient::Skip };
    let mut op = CrossEntropy::new()
        .reduction(reduction)
        .ignore_index(args.options.ignore_index)
        .label_smoothing(args.options.label_smoothing)
        .z_loss(args.options.z_loss)
        .lse(args.lse.is_some())
        .gradient(gradient);
    if let Some(t) = args.options.softcap {
        op = op.softcap(t);
    }
    let dtype = storage_dtype(args.options.dtype, half);
    progress.stage("running on the GPU");
    let ctx = cli.context("cross-entropy")?;
    let Outputs { loss, grad, lse } = match dtype {
        DTypeArg::F32 => {
            run_typed(&ctx, args, op, (&logits, shape, &targets, weight.as_deref()), Stored::F32)?
        }
        DTypeArg::F16 => {
            run_typed(&ctx, args, op, (&round_to(&logits), shape, &targets, weight.as_deref()), Stored::F16)?
        }
        DTypeArg::Bf16 => {
            run_typed(&ctx, args, op, (&round_to(&logits), shape, &targets, weight.as_deref()), Stored::BF16)?
        }
    };

    progress.stage("writing the outputs");
    let loss_shape: Vec<usize> =
        if reduction == Reduction::None { per_sample_shape.clone() } else { Vec::new() };
    loss_output.write(&loss_shape, &loss)?;
    let mut outputs = vec![loss_output];
    let mut written = vec![(args.loss.as_path(), "float32", loss_shape.as_slice())];
    if let (Some(mut grad_file), Some(path)) = (grad_output, args.grad.as_deref()) {
        let Some(grad) = grad else {
            return Err(CliError::new("cross-entropy: internal error: the gradient was not returned"));
        };
        let grad_dtype = grad.write(&mut grad_file, &logits_shape)?;
        outputs.push(grad_file);
        written.push((path, grad_dtype, logits_shape.as_slice()));
    }
    if let (Some(mut lse_file), Some(path)) = (lse_output, args.lse.as_deref()) {
        let Some(lse) = lse else {
            return Err(CliError::new("cross-entropy: internal error: the logsumexp was not returned"));
        };
        lse_file.write(&per_sample_shape, &lse)?;
        outputs.push(lse_file);
        written.push((path, "float32", per_sample_shape.as_slice()));
    }
    commit_all(outputs)?;
    let times = progress.finish();
    if cli.verbose {
        let request = PlanRequest::CrossEntropy {
            reduction,
            gradient,
            probabilities: matches!(targets, TargetData::Probabilities(_)),
            strategy: None,
        };
        verbose::report("cross-entropy", &ctx, Some(request), (shape, plan::dtype(dtype)), &times);
    }
    report_written("cross-entropy", &written)
}

/// What the op returned: the losses, the gradient in the storage type, the logsumexp.
struct Outputs {
    loss: Vec<f32>,
    grad: Option<Stored>,
    lse: Option<Vec<f32>>,
}

/// Checks the inputs (before any GPU work) and runs the op with logits and probability
/// targets rounded to `T`.
fn run_typed<T: Element>(
    ctx: &Context,
    args: &CrossEntropyArgs,
    op: CrossEntropy,
    (logits, shape, targets, weight): (&[T], Shape, &TargetData, Option<&[f32]>),
    stored: impl Fn(Vec<T>) -> Stored,
) -> Result<Outputs, CliError> {
    let probabilities: Vec<T>;
    let targets = match targets {
        TargetData::Classes(t) => Targets::I64(t),
        TargetData::Probabilities(p) => {
            probabilities = round_to(p);
            Targets::Probabilities(&probabilities)
        }
    };
    let mut input = CrossEntropyInput::new(logits, shape, targets);
    if let Some(w) = weight {
        input = input.weight(w);
    }
    op.check_input(&input).map_err(|e| attribute(&e, args))?;
    let out = op.run(ctx, &input).map_err(|e| attribute(&e, args))?;
    Ok(Outputs { loss: out.loss, grad: out.grad.map(stored), lse: out.lse })
}

/// Class indices of an integer type, one per sample (`class_shape`: (N,), or 0-d for 1-D
/// logits), or probabilities of the logits' shape.
fn read_targets(
    path: &Path,
    logits_path: &Path,
    (class_shape, logits_shape): (&[usize], &[usize]),
) -> Result<TargetData, CliError> {
    let Array { shape: targets_shape, data, dtype } = read_npy(path)?;
    let class_shape_ok = targets_shape == class_shape;
    let probability_shape_ok = targets_shape == logits_shape;
    let mismatch = |kind: &str, wanted: &[usize]| {
        CliError::file(
            path,
            format!(
                "{kind} targets of {} do not match the logits {} of {}: they must have {}",
                shape_text(&targets_shape),
                logits_path.display(),
                shape_text(logits_shape),
                shape_text(wanted)
            ),
        )
    };
    match data {
        Data::Int(t) if class_shape_ok => Ok(TargetData::Classes(t)),
        Data::Int(_) => Err(mismatch("class-index", class_shape)),
        data if probability_shape_ok => npy::to_f32(data, &dtype)
            .map(TargetData::Probabilities)
            .map_err(|problem| CliError::file(path, format!("probability targets: {problem}"))),
        // Floats not of the logits' shape cannot be probabilities; whole numbers are class
        // indices saved as floats, and the fix is the cast, not the shape.
        data if whole_number_floats(&data) => {
            let mut message = float_classes_message(&dtype);
            if !class_shape_ok {
                message.push_str(&format!(
                    "; as class indices they must also have {} for the logits {} of {}",
                    shape_text(class_shape),
                    logits_path.display(),
                    shape_text(logits_shape)
                ));
            }
            Err(CliError::file(path, message))
        }
        _ => Err(mismatch("probability", logits_shape)),
    }
}

/// Class weights (C,), float.
fn read_weight(path: &Path, logits_path: &Path, cols: usize) -> Result<Vec<f32>, CliError> {
    let FloatInput { shape, data: weight, .. } = read_float(path, "the weight")?;
    if shape != [cols] {
        return Err(CliError::file(
            path,
            format!(
                "the weight has {} but the logits {} have {cols} classes, so it must have shape ({cols},)",
                shape_text(&shape),
                logits_path.display()
            ),
        ));
    }
    Ok(weight)
}

/// A library error, prefixed with the file or option it concerns.
fn attribute(error: &Error, args: &CrossEntropyArgs) -> CliError {
    let file = match error {
        Error::TargetOutOfRange { .. }
        | Error::InvalidProbability { .. }
        | Error::ShapeMismatch { what: "targets", .. } => Some(args.targets.as_path()),
        Error::ShapeMismatch { what: "weight", .. } => args.options.weight.as_deref(),
        Error::ShapeMismatch { what: "logits", .. } => Some(args.logits.as_path()),
        _ => None,
    };
    match (file, error) {
        (Some(path), _) => CliError::file(path, error),
        (None, Error::InvalidOption { .. }) => CliError::library("cross-entropy options", error),
        (None, _) => CliError::library(format!("cross-entropy of {}", args.logits.display()), error),
    }
}
