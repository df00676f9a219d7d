//! Softmax and log-softmax of a batch of logits on the GPU, checked against the f64
//! reference. Exits non-zero if any element is outside the tolerance.
#![allow(clippy::print_stdout)] // a command-line example: printing is its job

use std::process::ExitCode;
use std::time::Instant;

use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{SeededRng, compare};
use wgpu_softmax::{Context, Shape, Softmax, reference};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, wgpu_softmax::Error> {
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.describe());

    let shape = Shape::new(512, 1000);
    let logits = SeededRng::new(2026).logits(shape.len()?, 8.0);
    let mut all_passed = true;
    for (name, op, tolerance) in [
        ("softmax", Softmax::new(), Tolerance::SOFTMAX),
        ("log_softmax", Softmax::log(), Tolerance::LOG_SOFTMAX),
    ] {
        let plan = op.plan(&ctx, shape)?;
        let started = Instant::now();
        let gpu = op.run(&ctx, &logits, shape)?;
        let elapsed = started.elapsed();
        let expected = if op.is_log() {
            reference::log_softmax(&logits, shape)?
        } else {
            reference::softmax(&logits, shape)?
        };
        let comparison = compare(&gpu, &expected, tolerance);
        println!(
            "{name:<12} {shape} via {:?}: {} in {:.1} ms (host round trip): {comparison}",
            plan.strategy(),
            if comparison.passed() { "PASS" } else { "FAIL" },
            elapsed.as_secs_f64() * 1e3,
        );
        println!("{:<12} row 0, first 4: {:?}", "", &gpu[..4]);
        all_passed &= comparison.passed();
    }
    Ok(all_passed)
}
