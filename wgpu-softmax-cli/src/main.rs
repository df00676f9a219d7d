//! `wgpu-softmax`: softmax, log-softmax and softmax cross-entropy of `.npy` arrays on the
//! GPU, a listing of the adapters, and a check of every kernel against the f64 reference.
//!
//! ```text
//! wgpu-softmax info [--json]
//! wgpu-softmax plan [--profile P.json] --op OP --shape R,C [--dtype f32|f16|bf16] [--json]
//!     [--reduction R] [--gradient separate|in-place|none] [--strategy S] [--cached-rows BOOL] ...
//! wgpu-softmax check [--seed N]      (what ships against the f64 reference, a line per group)
//! wgpu-softmax softmax --input X.npy --output Y.npy [--log] [--dim K] [--dtype f32|f16|bf16]
//! wgpu-softmax cross-entropy --logits X.npy --targets T.npy --loss L.npy [--grad G.npy]
//!     [--reduction mean|sum|none] [--ignore-index I] [--label-smoothing E] [--weight WEIGHTS.npy]
//!     [--z-loss S] [--softcap T] [--lse F.npy] [--dtype f32|f16|bf16]
//! wgpu-softmax linear-cross-entropy --hidden H.npy --classifier W.npy [--bias b.npy]
//!     --targets T.npy --loss L.npy [--lse F] [--grad-hidden F] [--grad-classifier F]
//!     [--grad-bias F] [--reduction R] [--ignore-index I] [--label-smoothing E]
//!     [--weight WEIGHTS.npy] [--z-loss S] [--softcap T] [--dtype f32|f16|bf16] [--workspace-bytes N]
//! wgpu-softmax sample --logits L.npy --output IDS.npy [--num-samples K] [--temperature T]
//!     [--top-k K] [--top-p P] [--min-p M] [--seed S] [--logprobs LP.npy] [--dtype f32|f16|bf16]
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
mod profile;
mod progress;
mod verbose;

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
    if let Some(code) = rerun_with_runtime_dir() {
        return code;
    }
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
        Command::Info(args) => commands::info::run(cli, args),
        Command::Plan(args) => commands::plan::run(cli, args).map(|()| ExitCode::SUCCESS),
        Command::Check(args) => commands::check::run(cli, args),
        Command::Softmax(args) => commands::softmax::run(cli, args).map(|()| ExitCode::SUCCESS),
        Command::CrossEntropy(args) => commands::cross_entropy::run(cli, args).map(|()| ExitCode::SUCCESS),
        Command::LinearCrossEntropy(args) => {
            commands::linear_cross_entropy::run(cli, args).map(|()| ExitCode::SUCCESS)
        }
        Command::Distill(args) => commands::distill::run(cli, args).map(|()| ExitCode::SUCCESS),
        Command::Sample(args) => commands::sample::run(cli, args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => commands::bench::run(cli, args).map(|()| ExitCode::SUCCESS),
    }
}

/// Set in the environment of the tool run again by [`rerun_with_runtime_dir`], so that it
/// does not run itself once more.
const RERUN_MARK: &str = "WGPU_SOFTMAX_CLI_RERUN";

/// Runs this same command line again as a child process with `XDG_RUNTIME_DIR` set to a
/// fresh private directory, where that variable is unset, and returns its exit status; else
/// `None` (run here).
///
/// Without that variable, Mesa's Vulkan device-selection layer (an implicit layer the
/// Vulkan loader runs in every process, with or without a GPU) looks for a Wayland display
/// while adapters are enumerated, and prints `error: XDG_RUNTIME_DIR is invalid or not set
/// in the environment.` once per instance: noise that reads as a failure. It reads the
/// variable from the environment, so the variable must be there before the first wgpu
/// instance. `std::env::set_var` is `unsafe` in Rust 2024 (another thread may be reading
/// the environment), and this workspace forbids unsafe code; probing GL only on request
/// would not help either, since the layer is Vulkan's. A child process with the variable
/// in its environment is the safe way, at the cost of one process start. An empty
/// directory is enough: the layer then finds no display, quietly, and picks as it would.
fn rerun_with_runtime_dir() -> Option<ExitCode> {
    if cfg!(not(all(unix, not(any(target_os = "macos", target_os = "ios")))))
        || std::env::var_os("XDG_RUNTIME_DIR").is_some()
        || std::env::var_os(RERUN_MARK).is_some()
    {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let dir = private_dir()?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("XDG_RUNTIME_DIR", &dir)
        .env(RERUN_MARK, "1")
        .status();
    let _ = std::fs::remove_dir_all(&dir);
    let status = status.ok()?;
    Some(status.code().map_or(ExitCode::FAILURE, |code| ExitCode::from(u8::try_from(code).unwrap_or(1))))
}

/// A new directory only this user may enter (mode 0700), under the temporary directory.
fn private_dir() -> Option<std::path::PathBuf> {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("wgpu-softmax-runtime-{}-{nanos}", std::process::id()));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir).ok()?;
    Some(dir)
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
