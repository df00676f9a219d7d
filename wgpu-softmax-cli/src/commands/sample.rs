//! `wgpu-softmax sample`: token ids drawn from logits on the GPU (temperature, top-k,
//! top-p, min-p, seeded Philox draws, no sort).

use crate::args::DTypeArg;
use wgpu_softmax::testing::round_to;
use wgpu_softmax::{Element, Error, SampleOutput, Sampler, Shape};

use super::{FloatInput, distinct_outputs, read_float, report_written, shape_text, storage_dtype};
use crate::args::{Cli, SampleArgs};
use crate::error::CliError;
use crate::output::{PendingOutput, commit_all};

/// Reads and checks the logits, reserves the outputs, draws and writes the ids (and the
/// log-probabilities).
///
/// # Errors
///
/// A bad input or output file (an output that is also the input, or two outputs that are
/// one file), logits that are not (N, V) or (V,), a bad option, a row holding a NaN or
/// `+inf` or no finite logit, or a library error, each naming its file or option.
pub fn run(cli: &Cli, args: &SampleArgs) -> Result<(), CliError> {
    let inputs = [args.logits.as_path()];
    distinct_outputs(&[("--output", Some(args.output.as_path())), ("--logprobs", args.logprobs.as_deref())])?;
    let mut ids_output = PendingOutput::create(&args.output, &inputs)?;
    let logprobs_output =
        args.logprobs.as_deref().map(|path| PendingOutput::create(path, &inputs)).transpose()?;

    let FloatInput { shape: dims, data: logits, half } = read_float(&args.logits, "the logits")?;
    let shape = match dims.as_slice() {
        [rows, cols] => Shape::new(*rows, *cols),
        [cols] => Shape::new(1, *cols),
        _ => {
            return Err(CliError::file(
                &args.logits,
                format!("the logits of {} must be (N, V) or (V,), the classes last", shape_text(&dims)),
            ));
        }
    };
    let num_samples = args.num_samples.map_or(1, |k| k as usize);
    let sampler = Sampler {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        num_samples,
        seed: args.seed,
    };
    sampler.check_options().map_err(|e| CliError::library("sample options", &e))?;
    let ctx = cli.context("sample")?;
    let logprobs = args.logprobs.is_some();
    let out = match storage_dtype(args.dtype, half) {
        DTypeArg::F32 => draw(&ctx, &sampler, &logits, shape, logprobs),
        DTypeArg::F16 => draw(&ctx, &sampler, &round_to::<wgpu_softmax::f16>(&logits), shape, logprobs),
        DTypeArg::Bf16 => draw(&ctx, &sampler, &round_to::<wgpu_softmax::bf16>(&logits), shape, logprobs),
    }
    .map_err(|e| CliError::library(format!("sample of {}", args.logits.display()), &e))?;
    if let Some(row) = out.status.first_bad_row {
        return Err(CliError::file(
            &args.logits,
            format!(
                "{} row(s) hold a NaN or +inf, or no finite logit, and have no distribution to sample \
                 from; the first is row {row}",
                out.status.bad_rows
            ),
        ));
    }
    let out_dims: Vec<usize> =
        if args.num_samples.is_some() { vec![shape.rows, num_samples] } else { vec![shape.rows] };
    ids_output.write(&out_dims, &out.ids)?;
    let mut outputs = vec![ids_output];
    let mut written = vec![(args.output.as_path(), "int64", out_dims.as_slice())];
    if let (Some(mut file), Some(path)) = (logprobs_output, args.logprobs.as_deref()) {
        let Some(values) = out.logprobs.as_deref() else {
            return Err(CliError::new("sample: internal error: the log-probabilities were not returned"));
        };
        file.write(&out_dims, values)?;
        outputs.push(file);
        written.push((path, "float32", out_dims.as_slice()));
    }
    commit_all(outputs)?;
    report_written("sample", &written)
}

fn draw<T: Element>(
    ctx: &wgpu_softmax::Context,
    sampler: &Sampler,
    logits: &[T],
    shape: Shape,
    logprobs: bool,
) -> Result<SampleOutput, Error> {
    sampler.run(ctx, logits, shape, logprobs)
}
