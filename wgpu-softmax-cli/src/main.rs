//! `wgpu-softmax`: softmax, log-softmax and softmax cross-entropy of `.npy` arrays on the
//! GPU, a listing of the adapters, and a check of every kernel against the f64 reference.
//!
//! ```text
//! wgpu-softmax info
//! wgpu-softmax check [--seed N]
//! wgpu-softmax softmax --input X.npy --output Y.npy [--log] [--dim K] [--dtype f32|f16|bf16]
//! wgpu-softmax cross-entropy --logits X.npy --targets T.npy --loss L.npy [--grad G.npy]
//!     [--reduction mean|sum|none] [--ignore-index I] [--label-smoothing E] [--weight WEIGHTS.npy]
//!     [--z-loss S] [--softcap T] [--lse F.npy] [--dtype f32|f16|bf16]
//! wgpu-softmax linear-cross-entropy --hidden H.npy --classifier W.npy [--bias b.npy]
//!     --targets T.npy --loss L.npy [--lse F] [--grad-hidden F] [--grad-classifier F]
//!     [--grad-bias F] [--reduction R] [--ignore-index I] [--label-smoothing E]
//!     [--weight WEIGHTS.npy] [--z-loss S] [--softcap T] [--dtype f32|f16|bf16] [--workspace-bytes N]
//! ```
//!
//! Global options `--backend vulkan|metal|dx12|gl` and `--adapter NAME` (else the `WGPU_*`
//! environment variables). Every error is one line on stderr, naming the file, option or
//! op and the problem, with a non-zero exit; no output file is left half written.

mod args;
mod commands;
mod error;
mod npy;
mod output;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use clap::error::ErrorKind;

use crate::args::{Cli, Command};
use crate::error::{CliError, one_line};

/// Exit status of a command-line usage error (as clap's own).
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    // A panic is a bug; report it on one line like any other error, without a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".to_owned());
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "wgpu-softmax: error: internal error{location}: {} (a bug; please report it)",
            one_line(&payload)
        );
    }));

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    // Outputs still pending when `run` returns an error are dropped (and their temporary
    // files removed) before the message is printed.
    let result = run(&cli);
    match result {
        Ok(code) => code,
        Err(error) => {
            if !error.is_broken_pipe() {
                let _ = writeln!(std::io::stderr(), "wgpu-softmax: error: {}", error.one_line());
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode, CliError> {
    match &cli.command {
        Command::Info => commands::info::run(cli),
        Command::Check(args) => commands::check::run(cli, args),
        Command::Softmax(args) => commands::softmax::run(cli, args).map(|()| ExitCode::SUCCESS),
        Command::CrossEntropy(args) => commands::cross_entropy::run(cli, args).map(|()| ExitCode::SUCCESS),
        Command::LinearCrossEntropy(args) => {
            commands::linear_cross_entropy::run(cli, args).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(args) => commands::bench::run(cli, args).map(|()| ExitCode::SUCCESS),
    }
}

/// Help and version go to stdout as clap prints them; any other command-line error is
/// one line on stderr: clap's message without its usage and hints.
fn usage_error(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(USAGE_ERROR)
        }
        _ => {
            let rendered = error.render().to_string();
            let parts: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .filter(|line| {
                    !line.is_empty()
                        && !line.starts_with("Usage:")
                        && !line.starts_with("For more information")
                })
                .collect();
            let message = parts.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            let _ = writeln!(std::io::stderr(), "wgpu-softmax: error: {}", one_line(message));
            ExitCode::from(USAGE_ERROR)
        }
    }
}
