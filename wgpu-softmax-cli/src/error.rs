//! The tool's error: one line that names the file, option or op it concerns and the
//! problem.

use std::fmt;
use std::path::Path;

/// An error to print as one line on stderr before exiting non-zero.
#[derive(Debug)]
pub struct CliError {
    message: String,
    /// Stdout was closed early (`| head`): exit without a message, as tools do.
    broken_pipe: bool,
}

impl CliError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), broken_pipe: false }
    }

    /// An error about the file at `path`.
    pub fn file(path: &Path, problem: impl fmt::Display) -> Self {
        Self::new(format!("{}: {problem}", path.display()))
    }

    /// A library error from running `what` (an op, or an op on a file).
    pub fn library(what: impl fmt::Display, error: &wgpu_softmax::Error) -> Self {
        Self::new(format!("{what}: {error}"))
    }

    /// Whether stdout was closed early: no message is due.
    pub const fn is_broken_pipe(&self) -> bool {
        self.broken_pipe
    }

    /// The message on one line: line breaks and other control characters (which a file
    /// name or a driver's message may hold) are escaped.
    pub fn one_line(&self) -> String {
        one_line(&self.message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<std::io::Error> for CliError {
    /// Writing to stdout failed (a closed pipe, a full disk).
    fn from(error: std::io::Error) -> Self {
        let broken_pipe = error.kind() == std::io::ErrorKind::BrokenPipe;
        Self { broken_pipe, ..Self::new(format!("cannot write to stdout: {error}")) }
    }
}

/// `text` on one line, control characters escaped.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.trim_end().chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
