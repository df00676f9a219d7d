//! The subcommands, and what they share: reading `.npy` inputs with errors that name the
//! file.

pub mod bench;
pub mod check;
pub mod cross_entropy;
pub mod info;
pub mod softmax;

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

/// A float input (float32, or float64 rounded to float32): its shape and elements.
///
/// # Errors
///
/// When the file cannot be read, or holds integers.
pub fn read_float(path: &Path, what: &str) -> Result<(Vec<usize>, Vec<f32>), CliError> {
    let array = read_npy(path)?;
    let dtype = array.data.dtype();
    let shape = array.shape.clone();
    let data = array.into_f32().ok_or_else(|| {
        CliError::file(path, format!("{what} must be float32 or float64, not {}", dtype.name()))
    })?;
    Ok((shape, data))
}

/// A shape for messages: `shape (2, 3)`.
pub fn shape_text(shape: &[usize]) -> String {
    format!("shape {}", format_shape(shape))
}
