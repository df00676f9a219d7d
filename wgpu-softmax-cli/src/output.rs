//! Output files that appear whole or not at all: each is written to a temporary file in
//! the same directory, and renamed over its path only when every output of the command is
//! ready. A temporary file is removed when its output is dropped uncommitted, so an error
//! (or a panic, which unwinds) leaves nothing behind.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::CliError;
use crate::npy;

/// One output file, reserved before any work is done so that an unwritable path fails
/// early.
#[derive(Debug)]
pub struct PendingOutput {
    path: PathBuf,
    temporary: PathBuf,
    file: Option<File>,
    /// Whether the temporary file has been renamed into place.
    committed: bool,
}

impl PendingOutput {
    /// Creates the temporary file beside `path`, after checking that `path` is none of
    /// the command's `inputs` (by canonical path, and on Unix by device and inode, so that
    /// links to an input are caught too).
    ///
    /// # Errors
    ///
    /// When `path` is one of `inputs`, names a directory, or its directory does not exist
    /// or is not writable.
    pub fn create(path: &Path, inputs: &[&Path]) -> Result<Self, CliError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let Some(name) = path.file_name() else {
            return Err(CliError::file(path, "not a file name to write to"));
        };
        if path.is_dir() {
            return Err(CliError::file(path, "is a directory; name a file to write"));
        }
        if let Some(input) = inputs.iter().find(|input| same_file(path, input)) {
            return Err(CliError::file(
                path,
                format!(
                    "is also the input {}; writing it would destroy that input. Name a different output file",
                    input.display()
                ),
            ));
        }
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut temporary_name = std::ffi::OsString::from(".");
        temporary_name.push(name);
        temporary_name.push(format!(
            ".{}-{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let temporary = directory.join(temporary_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
            .map_err(|e| CliError::file(path, format!("cannot create a file there: {e}")))?;
        Ok(Self { path: path.to_path_buf(), temporary, file: Some(file), committed: false })
    }

    /// Writes `data` of `shape` as a `.npy` of its element type (float32 or float16) into
    /// the temporary file and flushes it to disk; the output is not yet in place.
    ///
    /// # Errors
    ///
    /// When writing fails (disk full...).
    pub fn write<T: npy::Element>(&mut self, shape: &[usize], data: &[T]) -> Result<(), CliError> {
        let bytes = npy::encode(shape, data).map_err(|e| CliError::file(&self.path, e))?;
        self.write_bytes(&bytes)
    }

    /// Writes `bytes` into the temporary file and flushes it to disk; the output is not
    /// yet in place.
    ///
    /// # Errors
    ///
    /// When writing fails (disk full...).
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        let Some(file) = self.file.as_mut() else {
            return Err(CliError::file(&self.path, "internal error: written twice"));
        };
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| CliError::file(&self.path, format!("cannot write: {e}")))
    }

    /// Moves the temporary file into place.
    fn rename_into_place(&mut self) -> Result<(), CliError> {
        // Close before renaming (some platforms refuse to rename an open file).
        self.file = None;
        std::fs::rename(&self.temporary, &self.path)
            .map_err(|e| CliError::file(&self.path, format!("cannot move the output into place: {e}")))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        // An output not committed takes its temporary file with it. A failure here has
        // nowhere better to go than being ignored.
        self.file = None;
        if !self.committed {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Puts every written output in place. If one cannot be moved, the outputs already moved
/// are removed again, so that a command either writes all its outputs or none.
///
/// # Errors
///
/// The first output that could not be moved into place.
pub fn commit_all(outputs: Vec<PendingOutput>) -> Result<(), CliError> {
    let mut placed: Vec<PathBuf> = Vec::new();
    for mut output in outputs {
        if let Err(error) = output.rename_into_place() {
            for path in &placed {
                let _ = std::fs::remove_file(path);
            }
            return Err(error);
        }
        placed.push(output.path.clone());
    }
    Ok(())
}

/// Whether `a` and `b` name the same file: the same canonical path (for a file that does
/// not exist yet, its directory's canonical path and its name), or on Unix the same device
/// and inode (hard links).
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Some(a), Some(b)) = (canonical(a), canonical(b)) {
        if a == b {
            return true;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return a.dev() == b.dev() && a.ino() == b.ino();
        }
    }
    false
}

/// The canonical form of `path`, or of its directory joined with its name when the file
/// does not exist yet.
fn canonical(path: &Path) -> Option<PathBuf> {
    if let Ok(found) = path.canonicalize() {
        return Some(found);
    }
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Some(directory.canonicalize().ok()?.join(path.file_name()?))
}
