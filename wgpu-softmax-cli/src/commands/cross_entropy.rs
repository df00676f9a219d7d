//! `wgpu-softmax cross-entropy`: the fused softmax cross-entropy of logits and targets,
//! with its gradient.

use std::path::Path;

use wgpu_softmax::{CrossEntropy, CrossEntropyInput, Error, Gradient, Reduction, Shape, Targets};

use super::{read_float, read_npy, report_written, shape_text};
use crate::args::{Cli, CrossEntropyArgs};
use crate::error::CliError;
use crate::npy::{self, Array, Data};
use crate::output::{PendingOutput, commit_all, same_file};

/// Class-index or probability targets, as read.
enum TargetData {
    /// Class indices of any integer type, widened.
    Classes(Vec<i64>),
    Probabilities(Vec<f32>),
}

impl TargetData {
    fn as_targets(&self) -> Targets<'_> {
        match self {
            Self::Classes(t) => Targets::I64(t),
            Self::Probabilities(p) => Targets::Probabilities(p),
        }
    }
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
    inputs.extend(args.weight.as_deref());
    if let Some(grad) = args.grad.as_deref().filter(|grad| same_file(grad, &args.loss)) {
        return Err(CliError::file(grad, "--loss and --grad name the same file"));
    }
    let mut loss_output = PendingOutput::create(&args.loss, &inputs)?;
    let grad_output = args.grad.as_deref().map(|grad| PendingOutput::create(grad, &inputs)).transpose()?;

    let (logits_shape, logits) = read_float(&args.logits, "logits")?;
    let &[rows, cols] = logits_shape.as_slice() else {
        return Err(CliError::file(
            &args.logits,
            format!("logits must be 2-D (N, C), not of {}", shape_text(&logits_shape)),
        ));
    };
    let shape = Shape::new(rows, cols);
    let targets = read_targets(&args.targets, &args.logits, shape)?;
    let weight = match &args.weight {
        Some(path) => Some(read_weight(path, &args.logits, cols)?),
        None => None,
    };

    let reduction = args.reduction.to_reduction();
    let gradient = if args.grad.is_some() { Gradient::Separate } else { Gradient::Skip };
    let op = CrossEntropy::new()
        .reduction(reduction)
        .ignore_index(args.ignore_index)
        .label_smoothing(args.label_smoothing)
        .gradient(gradient);
    let mut input = CrossEntropyInput::new(&logits, shape, targets.as_targets());
    if let Some(w) = &weight {
        input = input.weight(w);
    }
    // Every input error before any GPU work.
    op.check_input(&input).map_err(|e| attribute(&e, args))?;

    let ctx = cli.context("cross-entropy")?;
    let out = op.run(&ctx, &input).map_err(|e| attribute(&e, args))?;

    let loss_shape: Vec<usize> = if reduction == Reduction::None { vec![rows] } else { Vec::new() };
    loss_output.write(&loss_shape, &out.loss)?;
    let mut outputs = vec![loss_output];
    let mut written = vec![(args.loss.as_path(), "float32", loss_shape.as_slice())];
    if let (Some(mut grad_file), Some(path)) = (grad_output, args.grad.as_deref()) {
        let Some(grad) = out.grad.as_deref() else {
            return Err(CliError::new("cross-entropy: internal error: the gradient was not returned"));
        };
        grad_file.write(&logits_shape, grad)?;
        outputs.push(grad_file);
        written.push((path, "float32", logits_shape.as_slice()));
    }
    commit_all(outputs)?;
    report_written("cross-entropy", &written)
}

/// Class indices (N,) of an integer type, or probabilities of the logits' shape.
fn read_targets(path: &Path, logits_path: &Path, shape: Shape) -> Result<TargetData, CliError> {
    let Array { shape: targets_shape, data, dtype } = read_npy(path)?;
    let class_shape_ok = targets_shape == [shape.rows];
    let probability_shape_ok = targets_shape == [shape.rows, shape.cols];
    let mismatch = |kind: &str, wanted: &[usize]| {
        CliError::file(
            path,
            format!(
                "{kind} targets of {} do not match the logits {} of {}: they must have {}",
                shape_text(&targets_shape),
                logits_path.display(),
                shape_text(&[shape.rows, shape.cols]),
                shape_text(wanted)
            ),
        )
    };
    match data {
        Data::Int(t) if class_shape_ok => Ok(TargetData::Classes(t)),
        Data::Int(_) => Err(mismatch("class-index", &[shape.rows])),
        data if probability_shape_ok => npy::to_f32(data, &dtype)
            .map(TargetData::Probabilities)
            .map_err(|problem| CliError::file(path, format!("probability targets: {problem}"))),
        _ => Err(mismatch("probability", &[shape.rows, shape.cols])),
    }
}

/// Class weights (C,), float.
fn read_weight(path: &Path, logits_path: &Path, cols: usize) -> Result<Vec<f32>, CliError> {
    let (shape, weight) = read_float(path, "the weight")?;
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
        Error::ShapeMismatch { what: "weight", .. } => args.weight.as_deref(),
        Error::ShapeMismatch { what: "logits", .. } => Some(args.logits.as_path()),
        _ => None,
    };
    match (file, error) {
        (Some(path), _) => CliError::file(path, error),
        (None, Error::InvalidOption { .. }) => CliError::library("cross-entropy options", error),
        (None, _) => CliError::library(format!("cross-entropy of {}", args.logits.display()), error),
    }
}
