//! `wgpu-softmax cross-entropy`: the fused softmax cross-entropy of logits and targets,
//! with its gradient.

use std::path::Path;

use wgpu_softmax::{CrossEntropy, CrossEntropyInput, Error, Gradient, Reduction, Shape, Targets};

use super::{read_float, read_npy, shape_text};
use crate::args::{Cli, CrossEntropyArgs};
use crate::error::CliError;
use crate::npy::{Array, Data, f64_to_f32};
use crate::output::{PendingOutput, commit_all};

/// Class-index or probability targets, as read.
enum TargetData {
    I64(Vec<i64>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    Probabilities(Vec<f32>),
}

impl TargetData {
    fn as_targets(&self) -> Targets<'_> {
        match self {
            Self::I64(t) => Targets::I64(t),
            Self::I32(t) => Targets::I32(t),
            Self::U32(t) => Targets::U32(t),
            Self::Probabilities(p) => Targets::Probabilities(p),
        }
    }
}

/// Reads and checks every input, reserves the outputs, runs the op and writes the loss
/// and the gradient.
///
/// # Errors
///
/// A bad input or output file, mismatched shapes, a bad target or option, or a library
/// error, each naming its file or option.
pub fn run(cli: &Cli, args: &CrossEntropyArgs) -> Result<(), CliError> {
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

    if args.grad.as_deref() == Some(args.loss.as_path()) {
        return Err(CliError::file(&args.loss, "--loss and --grad name the same file"));
    }
    let mut loss_output = PendingOutput::create(&args.loss)?;
    let grad_output = args.grad.as_deref().map(PendingOutput::create).transpose()?;

    let ctx = cli.context("cross-entropy")?;
    let out = op.run(&ctx, &input).map_err(|e| attribute(&e, args))?;

    let loss_shape: Vec<usize> = if reduction == Reduction::None { vec![rows] } else { Vec::new() };
    loss_output.write_f32(&loss_shape, &out.loss)?;
    let mut outputs = vec![loss_output];
    if let Some(mut grad_file) = grad_output {
        let Some(grad) = out.grad.as_deref() else {
            return Err(CliError::new("cross-entropy: internal error: the gradient was not returned"));
        };
        grad_file.write_f32(&logits_shape, grad)?;
        outputs.push(grad_file);
    }
    commit_all(outputs)
}

/// Class indices (N,) of an integer type, or probabilities of the logits' shape.
fn read_targets(path: &Path, logits_path: &Path, shape: Shape) -> Result<TargetData, CliError> {
    let Array { shape: targets_shape, data } = read_npy(path)?;
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
        Data::I64(t) if class_shape_ok => Ok(TargetData::I64(t)),
        Data::I32(t) if class_shape_ok => Ok(TargetData::I32(t)),
        Data::U32(t) if class_shape_ok => Ok(TargetData::U32(t)),
        Data::I64(_) | Data::I32(_) | Data::U32(_) => Err(mismatch("class-index", &[shape.rows])),
        Data::F32(p) if probability_shape_ok => Ok(TargetData::Probabilities(p)),
        Data::F64(p) if probability_shape_ok => Ok(TargetData::Probabilities(f64_to_f32(&p))),
        Data::F32(_) | Data::F64(_) => Err(mismatch("probability", &[shape.rows, shape.cols])),
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
