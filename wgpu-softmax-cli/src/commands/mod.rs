//! The subcommands, and what they share: reading `.npy` inputs with errors that name the
//! file, and the one line a command prints about what it wrote.

pub mod bench;
pub mod check;
pub mod cross_entropy;
pub mod distill;
pub mod info;
pub mod linear_cross_entropy;
pub mod plan;
pub mod sample;
pub mod softmax;

use std::io::Write as _;
use std::path::Path;

use wgpu_softmax::testing::widen;
use wgpu_softmax::{bf16, f16};

use crate::args::DTypeArg;
use crate::error::CliError;
use crate::npy::{self, Array, format_shape};
use crate::output::PendingOutput;

/// Reads and parses the `.npy` file at `path`.
///
/// # Errors
///
/// A missing or unreadable file, or a malformed one, named.
pub fn read_npy(path: &Path) -> Result<Array, CliError> {
    let bytes = std::fs::read(path).map_err(|e| CliError::file(path, format!("cannot read: {e}")))?;
    npy::parse(&bytes).map_err(|e| CliError::file(path, e))
}

/// A float input as f32 for the kernels: its shape, its elements (float16 exactly,
/// float64 rounded), and whether the file held float16.
///
/// # Errors
///
/// When the file cannot be read, holds integers, or holds float64 values too large for
/// float32 (named by index).
pub fn read_float(path: &Path, what: &str) -> Result<FloatInput, CliError> {
    let Array { shape, data, dtype } = read_npy(path)?;
    let half = matches!(data, npy::Data::F16(_));
    let data =
        npy::to_f32(data, &dtype).map_err(|problem| CliError::file(path, format!("{what}: {problem}")))?;
    Ok(FloatInput { shape, data, half })
}

/// A float input read for the kernels.
pub struct FloatInput {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements as f32.
    pub data: Vec<f32>,
    /// Whether the file held float16.
    pub half: bool,
}

/// The storage type a command runs in: `--dtype`, else f16 for a float16 input, else f32.
/// The command line's own enum, so that its matches cover exactly the types it offers.
pub fn storage_dtype(asked: Option<DTypeArg>, input_is_half: bool) -> DTypeArg {
    asked.unwrap_or(if input_is_half { DTypeArg::F16 } else { DTypeArg::F32 })
}

/// A result in a storage type, to be written as `.npy`.
pub enum Stored {
    /// f32, written as float32.
    F32(Vec<f32>),
    /// f16, written as float16.
    F16(Vec<f16>),
    /// bf16, written as float32 (NumPy has no bfloat16; float32 holds each exactly).
    BF16(Vec<bf16>),
}

impl Stored {
    /// Writes the values of `shape` into `output`; returns the NumPy dtype written.
    ///
    /// # Errors
    ///
    /// When writing fails.
    pub fn write(&self, output: &mut PendingOutput, shape: &[usize]) -> Result<&'static str, CliError> {
        match self {
            Self::F32(v) => output.write(shape, v).map(|()| "float32"),
            Self::F16(v) => output.write(shape, v).map(|()| "float16"),
            Self::BF16(v) => output.write(shape, &widen(v)).map(|()| "float32"),
        }
    }
}

/// Refuses two outputs that name one file: `named` pairs each output's flag with its path.
///
/// # Errors
///
/// The second of two such outputs, naming both flags.
pub fn distinct_outputs(named: &[(&str, Option<&Path>)]) -> Result<(), CliError> {
    for (i, (first, a)) in named.iter().enumerate() {
        for (second, b) in &named[i + 1..] {
            if let (Some(a), Some(b)) = (a, b) {
                if crate::output::same_file(a, b) {
                    return Err(CliError::file(b, format!("{first} and {second} name the same file")));
                }
            }
        }
    }
    Ok(())
}

/// Whether `data` holds floats that are all whole numbers (and at least one): class
/// indices saved as floats, as `np.save` of a float array of labels writes them.
pub fn whole_number_floats(data: &npy::Data) -> bool {
    fn whole(value: f64) -> bool {
        value.is_finite() && value.fract() == 0.0
    }
    match data {
        npy::Data::F16(v) => !v.is_empty() && v.iter().all(|x| whole(f64::from(*x))),
        npy::Data::F32(v) => !v.is_empty() && v.iter().all(|x| whole(f64::from(*x))),
        npy::Data::F64(v) => !v.is_empty() && v.iter().all(|&x| whole(x)),
        npy::Data::Int(_) => false,
    }
}

/// The message for class targets stored as floats of `dtype`: name the cast to integers.
pub fn float_classes_message(dtype: &str) -> String {
    format!(
        "class indices must be stored as integers, but these are {dtype} (all whole numbers); cast \
         them before saving, as NumPy's t.astype(np.int64) or PyTorch's t.long()"
    )
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
