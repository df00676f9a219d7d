//! `wgpu-softmax bench`: the benchmark suite on the selected adapter.
#![allow(clippy::print_stdout)] // printing the table is its job

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use wgpu_softmax::bench::{BenchOp, SuiteConfig, run_suite};

use crate::args::{BenchArgs, Cli};
use crate::error::CliError;
use crate::output::{PendingOutput, commit_all};

/// Runs the suite with a progress bar, prints the table, and writes the JSON and SVG.
///
/// # Errors
///
/// An unwritable output path (before any measurement), or a library error.
pub fn run(cli: &Cli, args: &BenchArgs) -> Result<(), CliError> {
    let mut json = args.json.as_deref().map(PendingOutput::create).transpose()?;
    let mut svg = args.svg.as_deref().map(PendingOutput::create).transpose()?;
    let ctx = cli.context("bench")?;
    let config = if args.quick { SuiteConfig::quick() } else { SuiteConfig::full() };
    let bar = ProgressBar::new(config.measurements() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .map_err(|e| CliError::new(e.to_string()))?,
    );
    let started = Instant::now();
    let report = run_suite(&ctx, &config, &mut |done, _, what| {
        bar.set_position(done as u64);
        bar.set_message(what.to_owned());
    })
    .map_err(|e| CliError::library("bench", &e))?;
    bar.finish_and_clear();
    println!("{}", report.table());
    for op in BenchOp::ALL {
        println!("bytes counted for {}: {}", op.name(), op.bytes_formula());
    }
    println!("GB/s = those bytes / the median time; % of copy = GB/s / the copy kernel's GB/s.");
    println!("suite took {:.1} s", started.elapsed().as_secs_f64());
    let mut outputs = Vec::new();
    if let Some(mut file) = json.take() {
        file.write_bytes(report.to_json().as_bytes())?;
        outputs.push(file);
    }
    if let Some(mut file) = svg.take() {
        file.write_bytes(report.to_svg().as_bytes())?;
        outputs.push(file);
    }
    commit_all(outputs)
}
