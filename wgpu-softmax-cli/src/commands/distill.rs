//! `wgpu-softmax distill`: knowledge distillation from logits, fused: the loss
//! `T^2 KL(softmax(teacher / T) || softmax(student / T))` and its gradient with respect to
//! the student's logits.

use crate::args::DTypeArg;
use std::path::Path;

use wgpu_softmax::testing::round_to;
use wgpu_softmax::{Context, Distill, DistillInput, Element, Error, PlanRequest, Shape, Targets};

use super::{
    FloatInput, Stored, distinct_outputs, read_float, read_npy, report_written, shape_text, storage_dtype,
};
use crate::args::{Cli, DistillArgs};
use crate::commands::plan;
use crate::error::CliError;
use crate::npy::{Array, Data};
use crate::output::{PendingOutput, commit_all};
use crate::progress::Progress;
use crate::verbose;

/// Reads and checks every input, reserves the outputs, runs the op and writes the loss
/// and the gradient.
///
/// # Errors
///
/// A bad input or output file (an output that is also an input, or two outputs that are
/// one file), mismatched shapes, a bad mask target or option, or a library error, each
/// naming its file or option.
pub fn run(cli: &Cli, args: &DistillArgs) -> Result<(), CliError> {
    let mut progress = Progress::start("distill", "reading the inputs");
    let mut inputs = vec![args.student.as_path(), args.teacher.as_path()];
    inputs.extend(args.targets.as_deref());
    distinct_outputs(&[("--loss", Some(args.loss.as_path())), ("--grad", args.grad.as_deref())])?;
    let mut loss_output = PendingOutput::create(&args.loss, &inputs)?;
    let grad_output = args.grad.as_deref().map(|grad| PendingOutput::create(grad, &inputs)).transpose()?;

    let FloatInput { shape: dims, data: student, half } = read_float(&args.student, "the student's logits")?;
    let FloatInput { shape: teacher_dims, data: teacher, .. } =
        read_float(&args.teacher, "the teacher's logits")?;
    if teacher_dims != dims {
        return Err(CliError::file(
            &args.teacher,
            format!(
                "the teacher's logits of {} must have the student's shape, {} ({})",
                shape_text(&teacher_dims),
                shape_text(&dims),
                args.student.display()
            ),
        ));
    }
    if dims.is_empty() {
        return Err(CliError::file(
            &args.student,
            "0-d logits have no classes: give (N, C), or any shape with --dim",
        ));
    }
    let shape = Shape::of_dims(&dims, args.dim).map_err(|e| match e {
        Error::AxisOutOfRange { .. } => CliError::file(&args.student, format!("--dim {}: {e}", args.dim)),
        e => CliError::file(&args.student, e),
    })?;
    // The shape of one value per row: the logits' without the class axis.
    let axis = if args.dim < 0 {
        dims.len().saturating_sub(args.dim.unsigned_abs())
    } else {
        args.dim.unsigned_abs()
    };
    let row_dims: Vec<usize> = dims.iter().enumerate().filter(|&(a, _)| a != axis).map(|(_, &d)| d).collect();
    let targets =
        args.targets.as_deref().map(|path| read_mask(path, &args.student, &row_dims)).transpose()?;

    let reduction = args.reduction.to_reduction();
    let op = Distill::new()
        .temperature(args.temperature)
        .reduction(reduction)
        .ignore_index(args.ignore_index)
        .gradient(args.grad.is_some());
    let dtype = storage_dtype(args.dtype, half);
    progress.stage("running on the GPU");
    let ctx = cli.context("distill")?;
    let (loss, grad) = match dtype {
        DTypeArg::F32 => {
            run_typed(&ctx, args, op, (&student, &teacher, shape, targets.as_deref()), Stored::F32)?
        }
        DTypeArg::F16 => run_typed(
            &ctx,
            args,
            op,
            (&round_to(&student), &round_to(&teacher), shape, targets.as_deref()),
            Stored::F16,
        )?,
        DTypeArg::Bf16 => run_typed(
            &ctx,
            args,
            op,
            (&round_to(&student), &round_to(&teacher), shape, targets.as_deref()),
            Stored::BF16,
        )?,
    };

    progress.stage("writing the outputs");
    let loss_shape: Vec<usize> =
        if reduction == wgpu_softmax::DistillReduction::None { row_dims } else { Vec::new() };
    loss_output.write(&loss_shape, &loss)?;
    let mut outputs = vec![loss_output];
    let mut written = vec![(args.loss.as_path(), "float32", loss_shape.as_slice())];
    if let (Some(mut grad_file), Some(path)) = (grad_output, args.grad.as_deref()) {
        let Some(grad) = grad else {
            return Err(CliError::new("distill: internal error: the gradient was not returned"));
        };
        let grad_dtype = grad.write(&mut grad_file, &dims)?;
        outputs.push(grad_file);
        written.push((path, grad_dtype, dims.as_slice()));
    }
    commit_all(outputs)?;
    let times = progress.finish();
    if cli.verbose {
        let request = PlanRequest::Distill {
            reduction,
            gradient: args.grad.is_some(),
            masked: args.targets.is_some(),
            strategy: None,
        };
        verbose::report("distill", &ctx, Some(request), (shape, plan::dtype(dtype)), &times);
    }
    report_written("distill", &written)
}

/// Checks the inputs (before any GPU work) and runs the op with logits rounded to `T`.
fn run_typed<T: Element>(
    ctx: &Context,
    args: &DistillArgs,
    op: Distill,
    (student, teacher, shape, targets): (&[T], &[T], Shape, Option<&[i64]>),
    stored: impl Fn(Vec<T>) -> Stored,
) -> Result<(Vec<f32>, Option<Stored>), CliError> {
    let mut input = DistillInput::new(student, teacher, shape);
    if let Some(t) = targets {
        input = input.targets(Targets::I64(t));
    }
    op.check_input(&input).map_err(|e| attribute(&e, args))?;
    let out = op.run(ctx, &input).map_err(|e| attribute(&e, args))?;
    Ok((out.loss, out.grad.map(stored)))
}

/// Class targets masking rows: integers, one per row (the logits' shape without the
/// class axis).
fn read_mask(path: &Path, student: &Path, row_dims: &[usize]) -> Result<Vec<i64>, CliError> {
    let Array { shape, data, .. } = read_npy(path)?;
    let Data::Int(targets) = data else {
        return Err(CliError::file(
            path,
            "the mask's class targets must be integers (int64, int32, uint8...); cast them, as numpy's \
             .astype(np.int64)",
        ));
    };
    if shape != row_dims {
        return Err(CliError::file(
            path,
            format!(
                "the mask's class targets of {} must have one per row of {}: {}",
                shape_text(&shape),
                student.display(),
                shape_text(row_dims)
            ),
        ));
    }
    Ok(targets)
}

/// A library error, prefixed with the file or option it concerns.
fn attribute(error: &Error, args: &DistillArgs) -> CliError {
    let file = match error {
        Error::TargetOutOfRange { .. } | Error::ShapeMismatch { what: "targets", .. } => {
            args.targets.as_deref()
        }
        Error::ShapeMismatch { what: "student", .. } => Some(args.student.as_path()),
        Error::ShapeMismatch { what: "teacher", .. } => Some(args.teacher.as_path()),
        _ => None,
    };
    match (file, error) {
        (Some(path), _) => CliError::file(path, error),
        (None, Error::InvalidOption { .. }) => CliError::library("distill options", error),
        (None, _) => CliError::library(format!("distill of {}", args.student.display()), error),
    }
}
