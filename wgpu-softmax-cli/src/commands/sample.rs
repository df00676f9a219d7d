//! `wgpu-softmax sample`: token ids drawn from logits on the GPU (temperature, top-k,
//! top-p, min-p, seeded Philox draws, no sort).

use crate::args::DTypeArg;
use std::path::Path;
use wgpu_softmax::testing::round_to;

use wgpu_softmax::{Element, Error, PlanRequest, RowSettings, SampleOutput, SampleOutputs, Sampler, Shape};

use super::{FloatInput, distinct_outputs, read_float, read_npy, report_written, shape_text, storage_dtype};
use crate::args::{Cli, SampleArgs};
use crate::commands::plan;
use crate::error::CliError;
use crate::npy::Data;
use crate::output::{PendingOutput, commit_all};
use crate::progress::Progress;
use crate::verbose;

/// Reads and checks the logits, reserves the outputs, draws and writes the ids (and the
/// log-probabilities).
///
/// # Errors
///
/// A bad input or output file (an output that is also the input, or two outputs that are
/// one file), 0-d logits or a `--dim` out of range, a per-row setting without one value
/// per row or not of its type, a bad option, a row holding a NaN or `+inf` or no finite logit or a per-row
/// setting out of range, or a library error, each naming its file or option.
pub fn run(cli: &Cli, args: &SampleArgs) -> Result<(), CliError> {
    let mut progress = Progress::start("sample", "reading the inputs");
    let mut inputs = vec![args.logits.as_path()];
    inputs.extend(
        [&args.temperature_per_row, &args.top_k_per_row, &args.top_p_per_row, &args.min_p_per_row]
            .into_iter()
            .filter_map(|p| p.as_deref()),
    );
    distinct_outputs(&[
        ("--output", Some(args.output.as_path())),
        ("--logprobs", args.logprobs.as_deref()),
        ("--probs", args.probs.as_deref()),
        ("--masked-logits", args.masked_logits.as_deref()),
    ])?;
    let mut ids_output = PendingOutput::create(&args.output, &inputs)?;
    let create = |path: Option<&Path>| path.map(|path| PendingOutput::create(path, &inputs)).transpose();
    let logprobs_output = create(args.logprobs.as_deref())?;
    let probs_output = create(args.probs.as_deref())?;
    let masked_output = create(args.masked_logits.as_deref())?;

    let FloatInput { shape: dims, data: logits, half } = read_float(&args.logits, "the logits")?;
    if dims.is_empty() {
        return Err(CliError::file(
            &args.logits,
            "0-d logits have no classes: give (N, V), (V,), or any shape with --dim",
        ));
    }
    let shape = Shape::of_dims(&dims, args.dim).map_err(|e| match e {
        Error::AxisOutOfRange { .. } => CliError::new(format!("sample: --dim {}: {e}", args.dim)),
        _ => CliError::file(
            &args.logits,
            format!("the logits of {} have more rows than fit in memory", shape_text(&dims)),
        ),
    })?;
    // Each row is a position off the class axis: the ids take the other axes' shape.
    let axis = if args.dim < 0 { dims.len() - args.dim.unsigned_abs() } else { args.dim.unsigned_abs() };
    let mut row_dims: Vec<usize> =
        dims.iter().enumerate().filter(|&(a, _)| a != axis).map(|(_, &d)| d).collect();
    if row_dims.is_empty() {
        row_dims.push(1);
    }
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
    let settings = RowSettings {
        temperature: args.temperature_per_row.as_deref().map(|p| per_row_floats(p, &row_dims)).transpose()?,
        top_k: args.top_k_per_row.as_deref().map(|p| per_row_top_k(p, &row_dims)).transpose()?,
        top_p: args.top_p_per_row.as_deref().map(|p| per_row_floats(p, &row_dims)).transpose()?,
        min_p: args.min_p_per_row.as_deref().map(|p| per_row_floats(p, &row_dims)).transpose()?,
    };
    progress.stage("running on the GPU");
    let ctx = cli.context("sample")?;
    let logprobs = SampleOutputs {
        logprobs: args.logprobs.is_some(),
        probs: args.probs.is_some(),
        masked_logits: args.masked_logits.is_some(),
    };
    let dtype = storage_dtype(args.dtype, half);
    let out = match dtype {
        DTypeArg::F32 => draw(&ctx, &sampler, &logits, shape, logprobs, &settings),
        DTypeArg::F16 => {
            draw(&ctx, &sampler, &round_to::<wgpu_softmax::f16>(&logits), shape, logprobs, &settings)
        }
        DTypeArg::Bf16 => {
            draw(&ctx, &sampler, &round_to::<wgpu_softmax::bf16>(&logits), shape, logprobs, &settings)
        }
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
    if let Some(row) = out.status.first_bad_setting_row {
        return Err(CliError::new(format!(
            "sample: {} row(s) have a per-row setting out of range (a temperature negative or not \
             finite, a top-p outside (0, 1], a min-p outside [0, 1]); the first is row {row}",
            out.status.bad_setting_rows
        )));
    }
    let mut out_dims = row_dims.clone();
    if args.num_samples.is_some() {
        out_dims.push(num_samples);
    }
    progress.stage("writing the outputs");
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
    for (file, path, values, what) in [
        (probs_output, args.probs.as_deref(), out.probs.as_deref(), "probabilities"),
        (masked_output, args.masked_logits.as_deref(), out.masked_logits.as_deref(), "masked logits"),
    ] {
        if let (Some(mut file), Some(path)) = (file, path) {
            let Some(values) = values else {
                return Err(CliError::new(format!("sample: internal error: the {what} were not returned")));
            };
            file.write(&dims, values)?;
            outputs.push(file);
            written.push((path, "float32", dims.as_slice()));
        }
    }
    commit_all(outputs)?;
    let times = progress.finish();
    if cli.verbose {
        let request = PlanRequest::Sample(sampler);
        verbose::report("sample", &ctx, Some(request), (shape, plan::dtype(dtype)), &times);
    }
    report_written("sample", &written)
}

fn draw<T: Element>(
    ctx: &wgpu_softmax::Context,
    sampler: &Sampler,
    logits: &[T],
    shape: Shape,
    outputs: SampleOutputs,
    settings: &RowSettings,
) -> Result<SampleOutput, Error> {
    sampler.run_with_outputs(ctx, logits, shape, outputs, settings)
}

/// Whether a per-row setting of shape `shape` gives one value per row: (N,), or the rows'
/// own shape `rows` (the logits' without the class axis).
fn one_per_row(shape: &[usize], rows: &[usize]) -> bool {
    shape == rows || shape == [rows.iter().product::<usize>()]
}

/// A per-row float setting: float32 or float64 (float16 too), one value per row (see
/// [`one_per_row`]), each as f32 (range checks are the kernel's, reported by row).
fn per_row_floats(path: &Path, rows: &[usize]) -> Result<Vec<f32>, CliError> {
    let FloatInput { shape, data, .. } = read_float(path, "a per-row setting")?;
    if !one_per_row(&shape, rows) {
        return Err(CliError::file(
            path,
            format!(
                "a per-row setting must be ({},) or {}, one value per row of the logits, not {}",
                rows.iter().product::<usize>(),
                shape_text(rows),
                shape_text(&shape)
            ),
        ));
    }
    Ok(data)
}

/// Each row's top-k: integers, one per row (see [`one_per_row`]), each in [0, 2^32).
fn per_row_top_k(path: &Path, rows: &[usize]) -> Result<Vec<u32>, CliError> {
    let array = read_npy(path)?;
    if !one_per_row(&array.shape, rows) {
        return Err(CliError::file(
            path,
            format!(
                "--top-k-per-row must be ({},) or {}, one value per row of the logits, not {}",
                rows.iter().product::<usize>(),
                shape_text(rows),
                shape_text(&array.shape)
            ),
        ));
    }
    let Data::Int(values) = array.data else {
        return Err(CliError::file(
            path,
            format!("--top-k-per-row must hold integers (int64, int32...), not {}", array.dtype),
        ));
    };
    values
        .iter()
        .enumerate()
        .map(|(row, &k)| {
            u32::try_from(k)
                .map_err(|_| CliError::file(path, format!("row {row}: top-k {k} is not in [0, 2^32)")))
        })
        .collect()
}
