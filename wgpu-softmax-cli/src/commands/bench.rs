//! `wgpu-softmax bench`: the benchmark suite on the selected adapter, or the table and
//! chart of an earlier run's records.
#![allow(clippy::print_stdout)] // printing the table is its job

use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use wgpu_softmax_bench::{
    BenchOp, FullConfig, LinearConfig, MatmulConfig, Report, SampleConfig, SuiteConfig, run_full_report,
    run_linear_suite, run_matmul_suite, run_sample_suite, run_suite,
};

use crate::args::{BenchArgs, Cli};
use crate::error::CliError;
use crate::output::{PendingOutput, commit_all, same_file};

/// Runs the suite (or reads `--from-json`), prints the table, and writes the JSON and SVG.
///
/// # Errors
///
/// An unwritable output path or one that is also the input (before any measurement), an
/// unreadable `--from-json` file, or a library error.
pub fn run(cli: &Cli, args: &BenchArgs) -> Result<(), CliError> {
    if let (Some(json), Some(svg)) = (&args.json, &args.svg) {
        if same_file(json, svg) {
            return Err(CliError::file(svg, "--json and --svg name the same file"));
        }
    }
    let inputs: Vec<&Path> = args.from_json.as_deref().into_iter().collect();
    let mut json = args.json.as_deref().map(|path| PendingOutput::create(path, &inputs)).transpose()?;
    let mut svg = args.svg.as_deref().map(|path| PendingOutput::create(path, &inputs)).transpose()?;
    if let Some(dir) = &args.report {
        return report(cli, args, dir);
    }
    let started = Instant::now();
    if args.sample {
        let config = if args.quick { SampleConfig::quick() } else { SampleConfig::full() };
        let bar = progress_bar(config.measurements())?;
        let ctx = long_context(cli)?;
        let report = run_sample_suite(&ctx, &config, &mut |done, _, what| show(&bar, done, what))
            .map_err(|e| CliError::new(format!("bench: {e}")))?;
        bar.finish_and_clear();
        return print_and_write(&report.table(), &report.to_json(), started, json.take(), args);
    }
    if args.matmul {
        let config = if args.quick { MatmulConfig::quick() } else { MatmulConfig::full() };
        let bar = progress_bar(config.shapes.len() * wgpu_softmax_bench::ProductKind::ALL.len())?;
        let ctx = long_context(cli)?;
        let report = run_matmul_suite(&ctx, &config, &mut |done, _, what| show(&bar, done, what))
            .map_err(|e| CliError::new(format!("bench: {e}")))?;
        bar.finish_and_clear();
        return print_and_write(&report.table(), &report.to_json(), started, json.take(), args);
    }
    if args.linear {
        let report = measure_linear(cli, args)?;
        return print_and_write(&report.table(), &report.to_json(), started, json.take(), args);
    }
    let report = match &args.from_json {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::file(path, format!("cannot read: {e}")))?;
            Report::from_json(&text).map_err(|e| CliError::file(path, e))?
        }
        None => measure(cli, args)?,
    };
    println!("{}", report.table());
    for op in BenchOp::ALL {
        println!("bytes counted for {}: {}", op.name(), op.bytes_formula());
    }
    println!("GB/s = those bytes / the median time; % of copy = GB/s / the copy kernel's GB/s.");
    if args.from_json.is_none() {
        println!("suite took {:.1} s", started.elapsed().as_secs_f64());
    }
    let mut outputs = Vec::new();
    let mut written = Vec::new();
    if let (Some(mut file), Some(path)) = (json.take(), args.json.as_deref()) {
        file.write_bytes(report.to_json().as_bytes())?;
        outputs.push(file);
        written.push(path.display().to_string());
    }
    if let (Some(mut file), Some(path)) = (svg.take(), args.svg.as_deref()) {
        let chart = report.to_svg().map_err(|e| CliError::file(path, e))?;
        file.write_bytes(chart.as_bytes())?;
        outputs.push(file);
        written.push(path.display().to_string());
    }
    commit_all(outputs)?;
    if !written.is_empty() {
        println!("bench: wrote {}", written.join(" and "));
    }
    Ok(())
}

/// Prints a suite's table and how long it took, and writes its JSON where `--json` asks.
fn print_and_write(
    table: &str,
    json_text: &str,
    started: Instant,
    json: Option<PendingOutput>,
    args: &BenchArgs,
) -> Result<(), CliError> {
    println!("{table}");
    println!("suite took {:.1} s", started.elapsed().as_secs_f64());
    if let (Some(mut file), Some(path)) = (json, args.json.as_deref()) {
        file.write_bytes(json_text.as_bytes())?;
        commit_all(vec![file])?;
        println!("bench: wrote {}", path.display());
    }
    Ok(())
}

/// Runs the suite on the selected adapter, with a progress bar that says from the first
/// second which step runs.
fn measure(cli: &Cli, args: &BenchArgs) -> Result<Report, CliError> {
    let config = if args.quick { SuiteConfig::quick() } else { SuiteConfig::full() };
    let bar = progress_bar(config.steps())?;
    let ctx = cli.context("bench")?;
    let report = run_suite(&ctx, &config, &mut |done, _, what| show(&bar, done, what))
        .map_err(|e| CliError::new(format!("bench: {e}")))?;
    bar.finish_and_clear();
    Ok(report)
}

/// The linear cross-entropy's suite: the fused op against the unfused composition.
fn measure_linear(cli: &Cli, args: &BenchArgs) -> Result<wgpu_softmax_bench::LinearReport, CliError> {
    let mut config = if args.quick { LinearConfig::quick() } else { LinearConfig::full() };
    if let Some(runs) = args.runs {
        config.warmup = 0;
        config.runs = runs as usize;
    }
    config.forward_only = args.forward;
    if let Some((n, d, v)) = args.shape {
        config.shapes = vec![wgpu_softmax::LinearShape::new(n, d, v)];
    }
    let bar = progress_bar(config.measurements())?;
    // One run of the unfused composition at the full sizes is minutes of work on a
    // software adapter, all in one submission.
    let ctx = long_context(cli)?;
    let report = run_linear_suite(&ctx, &config, &mut |done, _, what| show(&bar, done, what))
        .map_err(|e| CliError::new(format!("bench: {e}")))?;
    bar.finish_and_clear();
    Ok(report)
}

/// `bench --report DIR`: every section in one run, written to DIR/report.md and
/// DIR/report.json (PyTorch's script and its files beside them where it runs).
fn report(cli: &Cli, args: &BenchArgs, dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::file(dir, format!("cannot create: {e}")))?;
    let (md_path, json_path) = (dir.join("report.md"), dir.join("report.json"));
    let mut md = PendingOutput::create(&md_path, &[])?;
    let mut json = PendingOutput::create(&json_path, &[])?;
    let config = if args.tiny {
        FullConfig::tiny()
    } else if args.quick {
        FullConfig::quick()
    } else {
        FullConfig::full()
    };
    println!(
        "bench --report: {} row records, {} linear shapes, {} sampling measurements; the measured work alone \
         takes about {:.0} s at 3 TB/s, 20 TFLOPS and 0.3 ms per call",
        config.row_records(),
        config.linear.shapes.len(),
        config.sample.measurements(),
        config.estimate_seconds(3.0, 20.0, 0.3)
    );
    let started = Instant::now();
    // Roughly: the copy kernels, each row record, each linear and sampling measurement,
    // and PyTorch's side.
    let bar =
        progress_bar(4 + config.row_records() + config.linear.measurements() + config.sample.measurements())?;
    let ctx = cli.context("bench")?;
    let ctx = ctx.with_timeout(ctx.timeout().max(LINEAR_TIMEOUT));
    let report = run_full_report(&ctx, &config, dir, &mut |what| {
        bar.inc(1);
        bar.set_message(what.to_owned());
    })
    .map_err(|e| CliError::new(format!("bench: {e}")))?;
    bar.finish_and_clear();
    md.write_bytes(report.to_markdown().as_bytes())?;
    json.write_bytes(report.to_json().as_bytes())?;
    commit_all(vec![md, json])?;
    println!("{}", report.torch.note);
    println!("report took {:.1} s", started.elapsed().as_secs_f64());
    println!("bench: wrote {} and {}", md_path.display(), json_path.display());
    if !report.errors.is_empty() {
        return Err(CliError::new(format!(
            "bench --report: {} part(s) failed (listed in the report): {}",
            report.errors.len(),
            report.errors.join("; ")
        )));
    }
    Ok(())
}

/// A progress bar of `steps` steps that says from the first second which step runs.
fn progress_bar(steps: usize) -> Result<ProgressBar, CliError> {
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
            .map_err(|e| CliError::new(e.to_string()))?,
    );
    bar.set_message("creating the device");
    // Redrawn every 100 ms, so that a long step (the copy kernels, autotuning, a linear
    // run) still shows the time going by.
    bar.enable_steady_tick(Duration::from_millis(100));
    Ok(bar)
}

/// Moves `bar` to step `done`, about to do `what`.
fn show(bar: &ProgressBar, done: usize, what: &str) {
    bar.set_position(done as u64);
    bar.set_message(what.to_owned());
}

/// The selected adapter's context, waiting up to [`LINEAR_TIMEOUT`] for a submission.
fn long_context(cli: &Cli) -> Result<wgpu_softmax::Context, CliError> {
    let ctx = cli.context("bench")?;
    Ok(ctx.with_timeout(ctx.timeout().max(LINEAR_TIMEOUT)))
}

/// The longest wait for one run of the linear or the sampling suite.
const LINEAR_TIMEOUT: Duration = Duration::from_secs(30 * 60);
