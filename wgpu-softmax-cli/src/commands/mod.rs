//! The subcommands, and what they share: reading `.npy` inputs with errors that name the
//! file, and the one line a command prints about what it wrote.

pub mod bench;
pub mod check;
pub mod cross_entropy;
pub mod info;
pub mod softmax;

use std::io::Write as _;
use std::path::Path;

use crate::error::CliError;
use crate::npy::{self, Array, format_shape};

/// Reads and parses the `.npy` file at `path`.
///
/// # Errors
///
/// A missing or unreadable file, or a malformed one, named.
pub fn read_npy(path: &Path) -> Result<Array, CliError> {
    let bytes = std::fs::read(path).map_err(|e| CliError::file(path, format!("cannot read: {e}")))?;
    npy::parse(&bytes).map_err(|e| CliError::file(path, e))
}

/// A float input as f32 for the kernels: its shape and elements (float16 exactly,
/// float64 rounded).
///
/// # Errors
///
/// When the file cannot be read, holds integers, or holds float64 values too large for
/// float32 (named by index).
pub fn read_float(path: &Path, what: &str) -> Result<(Vec<usize>, Vec<f32>), CliError> {
    let Array { shape, data, dtype } = read_npy(path)?;
    let data =
        npy::to_f32(data, &dtype).map_err(|problem| CliError::file(path, format!("{what}: {problem}")))?;
    Ok((shape, data))
}

/// A shape for messages: `shape (2, 3)`.
pub fn shape_text(shape: &[usize]) -> String {
    format!("shape {}", format_shape(shape))
}

/// Prints the one line a successful command ends on: what it wrote where.
///
/// # Errors
///
/// When stdout cannot be written.
pub fn report_written(command: &str, written: &[(&Path, &str, &[usize])]) -> Result<(), CliError> {
    let parts: Vec<String> = written
        .iter()
        .map(|(path, dtype, shape)| format!("{} ({dtype}, {})", path.display(), shape_text(shape)))
        .collect();
    writeln!(std::io::stdout().lock(), "{command}: wrote {}", parts.join(" and "))?;
    Ok(())
}
