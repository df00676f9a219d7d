//! `wgpu-softmax linear-cross-entropy`: the fused linear cross-entropy of hidden states
//! under a classifier, with the gradients of both (and of the bias), the logits never
//! stored whole.

use crate::args::DTypeArg;
use std::path::Path;

use wgpu_softmax::testing::round_to;
use wgpu_softmax::{
    Context, Element, Error, LinearCrossEntropy, LinearCrossEntropyInput, LinearGradients, LinearShape,
    PlanRequest, Reduction, Shape, Targets,
};

use super::{
    FloatInput, Stored, distinct_outputs, float_classes_message, read_float, read_npy, report_written,
    shape_text, storage_dtype, whole_number_floats,
};
use crate::args::{Cli, LinearCrossEntropyArgs};
use crate::commands::plan;
use crate::error::CliError;
use crate::npy::{Array, Data};
use crate::output::{PendingOutput, commit_all};
use crate::progress::Progress;
use crate::verbose;

/// The float inputs, as read.
struct Floats {
    hidden: Vec<f32>,
    classifier: Vec<f32>,
    bias: Option<Vec<f32>>,
    weight: Option<Vec<f32>>,
}

/// What the op returned, gradients in the storage type.
struct Outputs {
    loss: Vec<f32>,
    lse: Option<Vec<f32>>,
    grads: [Option<Stored>; 3],
}

/// Reads and checks every input, reserves the outputs, runs the op and writes the loss,
/// the logsumexp and the gradients asked for.
///
/// # Errors
///
/// A bad input or output file (an output that is also an input, or two outputs that are
/// one file), mismatched shapes, a bad target or option, or a library error, each naming
/// its file or option.
pub fn run(cli: &Cli, args: &LinearCrossEntropyArgs) -> Result<(), CliError> {
    let mut inputs = vec![args.hidden.as_path(), args.classifier.as_path(), args.targets.as_path()];
    inputs.extend(args.bias.as_deref());
    inputs.extend(args.options.weight.as_deref());
    let named = [
        ("--loss", Some(args.loss.as_path())),
        ("--lse", args.lse.as_deref()),
        ("--grad-hidden", args.grad_hidden.as_deref()),
        ("--grad-classifier", args.grad_classifier.as_deref()),
        ("--grad-bias", args.grad_bias.as_deref()),
    ];
    distinct_outputs(&named)?;
    if args.grad_bias.is_some() && args.bias.is_none() {
        return Err(CliError::new("linear-cross-entropy: --grad-bias needs --bias"));
    }
    let mut progress = Progress::start("linear-cross-entropy", "reading the inputs");
    let mut pending: Vec<Option<PendingOutput>> = named
        .iter()
        .map(|(_, path)| path.map(|p| PendingOutput::create(p, &inputs)).transpose())
        .collect::<Result<_, _>>()?;

    let FloatInput { shape: hidden_shape, data: hidden, half } = read_float(&args.hidden, "hidden states")?;
    let [rows, d] = *hidden_shape.as_slice() else {
        return Err(CliError::file(
            &args.hidden,
            format!("hidden states of {} must be 2-D, (N, D)", shape_text(&hidden_shape)),
        ));
    };
    let FloatInput { shape: classifier_shape, data: classifier, .. } =
        read_float(&args.classifier, "classifier")?;
    let classes = match *classifier_shape.as_slice() {
        [classes, width] if width == d => classes,
        _ => {
            return Err(CliError::file(
                &args.classifier,
                format!(
                    "the classifier of {} must be (V, {d}): one row of D = {d} features per class, as the hidden states {}",
                    shape_text(&classifier_shape),
                    args.hidden.display()
                ),
            ));
        }
    };
    let per_class = |path: &Path, what: &str| -> Result<Vec<f32>, CliError> {
        let FloatInput { shape, data, .. } = read_float(path, what)?;
        if shape != [classes] {
            return Err(CliError::file(
                path,
                format!(
                    "{what} of {} must be ({classes},), one per class of the classifier {}",
                    shape_text(&shape),
                    args.classifier.display()
                ),
            ));
        }
        Ok(data)
    };
    let bias = args.bias.as_deref().map(|p| per_class(p, "the bias")).transpose()?;
    let weight = args.options.weight.as_deref().map(|p| per_class(p, "the weight")).transpose()?;
    let Array { shape: targets_shape, data, dtype } = read_npy(&args.targets)?;
    let targets = match data {
        Data::Int(t) if targets_shape == [rows] => t,
        Data::Int(_) => {
            return Err(CliError::file(
                &args.targets,
                format!(
                    "targets of {} must be ({rows},), one class index per hidden state of {}",
                    shape_text(&targets_shape),
                    args.hidden.display()
                ),
            ));
        }
        data if whole_number_floats(&data) => {
            return Err(CliError::file(&args.targets, float_classes_message(&dtype)));
        }
        _ => {
            return Err(CliError::file(
                &args.targets,
                format!(
                    "targets must be class indices of an integer type (int64, int32, uint8...), not {dtype}"
                ),
            ));
        }
    };

    let options = &args.options;
    let reduction = options.reduction.to_reduction();
    let gradients = LinearGradients {
        hidden: args.grad_hidden.is_some(),
        classifier: args.grad_classifier.is_some(),
        bias: args.grad_bias.is_some(),
    };
    let mut op = LinearCrossEntropy::new()
        .reduction(reduction)
        .ignore_index(options.ignore_index)
        .label_smoothing(options.label_smoothing)
        .z_loss(options.z_loss)
        .lse(args.lse.is_some())
        .gradients(gradients);
    if let Some(bytes) = args.workspace_bytes {
        op = op.workspace_bytes(bytes);
    }
    if let Some(t) = options.softcap {
        op = op.softcap(t);
    }
    let shape = LinearShape::new(rows, d, classes);
    let has_bias = bias.is_some();
    let floats = Floats { hidden, classifier, bias, weight };
    progress.stage("running on the GPU");
    let ctx = cli.context("linear-cross-entropy")?;
    let out = match storage_dtype(options.dtype, half) {
        DTypeArg::F32 => run_typed::<f32>(&ctx, args, op, shape, &floats, &targets, Stored::F32)?,
        DTypeArg::F16 => run_typed(&ctx, args, op, shape, &floats, &targets, Stored::F16)?,
        DTypeArg::Bf16 => run_typed(&ctx, args, op, shape, &floats, &targets, Stored::BF16)?,
    };

    progress.stage("writing the outputs");
    let loss_shape: Vec<usize> = if reduction == Reduction::None { vec![rows] } else { Vec::new() };
    let shapes: [Vec<usize>; 5] = [loss_shape, vec![rows], vec![rows, d], vec![classes, d], vec![classes]];
    let Outputs { loss, lse, grads: [grad_hidden, grad_classifier, grad_bias] } = out;
    let results = [Some(Stored::F32(loss)), lse.map(Stored::F32), grad_hidden, grad_classifier, grad_bias];
    let mut outputs = Vec::new();
    let mut written = Vec::new();
    for (((file, result), shape), (flag, path)) in pending.iter_mut().zip(results).zip(&shapes).zip(&named) {
        if let (Some(mut file), Some(path)) = (file.take(), path) {
            let Some(result) = result else {
                return Err(CliError::new(format!(
                    "linear-cross-entropy: internal error: {flag} was not returned"
                )));
            };
            let dtype = result.write(&mut file, shape)?;
            outputs.push(file);
            written.push((*path, dtype, shape.as_slice()));
        }
    }
    commit_all(outputs)?;
    let times = progress.finish();
    if cli.verbose {
        let request = PlanRequest::LinearCrossEntropy {
            hidden: d,
            reduction,
            gradients,
            bias: has_bias,
            workspace_bytes: args.workspace_bytes,
        };
        let dtype = plan::dtype(storage_dtype(options.dtype, half));
        verbose::report(
            "linear-cross-entropy",
            &ctx,
            Some(request),
            (Shape::new(rows, classes), dtype),
            &times,
        );
    }
    report_written("linear-cross-entropy", &written)
}

/// Checks the inputs (before any GPU work) and runs the op with the float inputs rounded
/// to `T`.
fn run_typed<T: Element>(
    ctx: &Context,
    args: &LinearCrossEntropyArgs,
    op: LinearCrossEntropy,
    shape: LinearShape,
    floats: &Floats,
    targets: &[i64],
    stored: impl Fn(Vec<T>) -> Stored,
) -> Result<Outputs, CliError> {
    let hidden: Vec<T> = round_to(&floats.hidden);
    let classifier: Vec<T> = round_to(&floats.classifier);
    let bias: Option<Vec<T>> = floats.bias.as_deref().map(round_to);
    let mut input = LinearCrossEntropyInput::new(&hidden, &classifier, shape, Targets::I64(targets));
    if let Some(b) = &bias {
        input = input.bias(b);
    }
    if let Some(w) = &floats.weight {
        input = input.weight(w);
    }
    op.check_input(&input).map_err(|e| attribute(&e, args))?;
    let out = op.run(ctx, &input).map_err(|e| attribute(&e, args))?;
    Ok(Outputs {
        loss: out.loss,
        lse: out.lse,
        grads: [out.grad_hidden.map(&stored), out.grad_classifier.map(&stored), out.grad_bias.map(&stored)],
    })
}

/// A library error, prefixed with the file or option it concerns.
fn attribute(error: &Error, args: &LinearCrossEntropyArgs) -> CliError {
    match error {
        Error::TargetOutOfRange { .. } => CliError::file(&args.targets, error),
        Error::InvalidOption { .. } => CliError::library("linear-cross-entropy options", error),
        _ => CliError::library(format!("linear-cross-entropy of {}", args.hidden.display()), error),
    }
}
