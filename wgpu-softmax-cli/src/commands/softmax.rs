//! `wgpu-softmax softmax`: softmax or log-softmax over the last axis of an array.

use wgpu_softmax::{Shape, Softmax};

use super::{read_float, report_written, shape_text};
use crate::args::{Cli, SoftmaxArgs};
use crate::error::CliError;
use crate::output::{PendingOutput, commit_all};

/// Reads the input, reserves the output, runs the op and writes the result.
///
/// # Errors
///
/// A bad input or output path (the output may not be the input), a 0-d input, or a
/// library error, each naming its file.
pub fn run(cli: &Cli, args: &SoftmaxArgs) -> Result<(), CliError> {
    let name = if args.log { "log-softmax" } else { "softmax" };
    let mut output = PendingOutput::create(&args.output, &[&args.input])?;
    let (shape, data) = read_float(&args.input, "the input")?;
    let matrix = matrix_of(&shape).map_err(|problem| CliError::file(&args.input, problem))?;
    let ctx = cli.context(name)?;
    let op = if args.log { Softmax::log() } else { Softmax::new() };
    let result = op.run(&ctx, &data, matrix).map_err(|e| {
        CliError::library(format!("{name} of {} ({})", args.input.display(), shape_text(&shape)), &e)
    })?;
    output.write(&shape, &result)?;
    commit_all(vec![output])?;
    report_written(name, &[(&args.output, "float32", &shape)])
}

/// The rows and columns of an array taken over its last axis: leading axes flattened, a
/// 1-D array one row.
fn matrix_of(shape: &[usize]) -> Result<Shape, String> {
    let Some((&cols, leading)) = shape.split_last() else {
        return Err("a 0-d array has no axis to take the softmax over; give an array of 1 or more \
                    dimensions"
            .to_owned());
    };
    // With zero columns, the leading axes may multiply past usize.
    let rows = leading
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("the {} has more rows than fit in memory", shape_text(shape)))?;
    Ok(Shape::new(rows, cols))
}
