//! `wgpu-softmax softmax`: softmax or log-softmax over any axis of an array.

use crate::args::DTypeArg;
use wgpu_softmax::testing::round_to;
use wgpu_softmax::{Error, PlanRequest, Shape, Softmax};

use super::{Stored, read_float, report_written, shape_text, storage_dtype};
use crate::args::{Cli, SoftmaxArgs};
use crate::commands::plan;
use crate::error::CliError;
use crate::output::{PendingOutput, commit_all};
use crate::progress::Progress;
use crate::verbose;

/// Reads the input, reserves the output, runs the op and writes the result.
///
/// # Errors
///
/// A bad input or output path (the output may not be the input), a 0-d input, or a
/// library error, each naming its file.
pub fn run(cli: &Cli, args: &SoftmaxArgs) -> Result<(), CliError> {
    let name = if args.log { "log-softmax" } else { "softmax" };
    let mut progress = Progress::start(name, "reading the input");
    let mut output = PendingOutput::create(&args.output, &[&args.input])?;
    let input = read_float(&args.input, "the input")?;
    let shape = input.shape;
    let matrix = rows_of(&shape, args.dim).map_err(|problem| CliError::file(&args.input, problem))?;
    progress.stage("running on the GPU");
    let ctx = cli.context(name)?;
    let op = if args.log { Softmax::log() } else { Softmax::new() };
    let failed =
        |e| CliError::library(format!("{name} of {} ({})", args.input.display(), shape_text(&shape)), &e);
    let result = match storage_dtype(args.dtype, input.half) {
        DTypeArg::F32 => Stored::F32(op.run(&ctx, &input.data, matrix).map_err(failed)?),
        DTypeArg::F16 => Stored::F16(op.run(&ctx, &round_to(&input.data), matrix).map_err(failed)?),
        DTypeArg::Bf16 => Stored::BF16(op.run(&ctx, &round_to(&input.data), matrix).map_err(failed)?),
    };
    progress.stage("writing the output");
    let written = result.write(&mut output, &shape)?;
    commit_all(vec![output])?;
    let times = progress.finish();
    if cli.verbose {
        let request = PlanRequest::Softmax { log: args.log, strategy: None };
        let dtype = plan::dtype(storage_dtype(args.dtype, input.half));
        verbose::report(name, &ctx, Some(request), (matrix, dtype), &times);
    }
    report_written(name, &[(&args.output, written, &shape)])
}

/// The rows of an array along axis `dim` (negative from the end), read where they lie.
fn rows_of(shape: &[usize], dim: isize) -> Result<Shape, String> {
    if shape.is_empty() {
        return Err("a 0-d array has no axis to take the softmax over; give an array of 1 or more \
                    dimensions"
            .to_owned());
    }
    Shape::of_dims(shape, dim).map_err(|e| match e {
        Error::AxisOutOfRange { .. } => format!("--dim {dim}: {e}"),
        // With zero classes, the other axes may multiply past usize.
        _ => format!("the {} has more rows than fit in memory", shape_text(shape)),
    })
}
