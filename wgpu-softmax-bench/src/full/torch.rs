//! PyTorch's side of the GPU report: where `python3` imports torch and CUDA is available,
//! the report's shapes are handed to `torch/compare.py` (written next to the report),
//! which times PyTorch (and Liger, `QuACK`, Cut Cross-Entropy where importable) with CUDA
//! events; elsewhere the report says why it was skipped.

use std::path::Path;
use std::process::Command;

use super::RowRecord;
use crate::LinearReport;

/// The comparison script, carried in the binary so that the report needs no checkout.
pub const COMPARE_PY: &str = include_str!("../../torch/compare.py");

/// One library's time on one of the report's shapes, beside ours.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TorchResult {
    /// `torch`, `liger`, `quack` or `cut_cross_entropy`.
    pub library: String,
    /// The op, as the report names it (`linear_cross_entropy` for the linear op).
    pub op: String,
    /// Its options, as the report prints them.
    pub options: String,
    /// The storage type.
    pub dtype: String,
    /// Rows (`N` for the linear op).
    pub rows: usize,
    /// Columns (`V` for the linear op).
    pub cols: usize,
    /// `D` for the linear op, else 0.
    #[serde(default)]
    pub hidden: usize,
    /// Median of the CUDA-event times, milliseconds (absent where the call failed).
    pub median_ms: Option<f64>,
    /// 90th percentile, milliseconds.
    pub p90_ms: Option<f64>,
    /// Why it has no time.
    #[serde(default)]
    pub error: Option<String>,
    /// Our median on the same shape, milliseconds (filled in by the report).
    #[serde(default)]
    pub ours_ms: Option<f64>,
}

impl TorchResult {
    /// Their time over ours: above 1, ours is faster.
    #[must_use]
    pub fn ratio(&self) -> Option<f64> {
        Some(self.median_ms? / self.ours_ms?)
    }
}

/// What PyTorch's side did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TorchSide {
    /// Whether it ran.
    pub ran: bool,
    /// Why it did not run, or what failed.
    pub note: String,
    /// The versions the script reported (torch, CUDA device, libraries found).
    pub versions: serde_json::Value,
    /// The times.
    pub results: Vec<TorchResult>,
}

impl TorchSide {
    fn skipped(note: impl Into<String>) -> Self {
        Self { note: note.into(), ..Self::default() }
    }
}

/// The script's output.
#[derive(serde::Deserialize)]
struct ScriptOutput {
    versions: serde_json::Value,
    results: Vec<TorchResult>,
}

/// Runs PyTorch's side in `scratch` on the shapes of `rows` and `linear`.
#[must_use]
pub fn compare(scratch: &Path, rows: &[RowRecord], linear: &LinearReport) -> TorchSide {
    let probe =
        Command::new("python3").args(["-c", "import torch; assert torch.cuda.is_available()"]).output();
    match probe {
        Err(e) => return TorchSide::skipped(format!("skipped: python3 could not be run ({e})")),
        Ok(out) if !out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            let why = if last.contains("AssertionError") {
                "torch imports but CUDA is not available"
            } else {
                last
            };
            return TorchSide::skipped(format!("skipped: {why}"));
        }
        Ok(_) => {}
    }
    let shapes = shapes_json(rows, linear);
    let script = scratch.join("compare.py");
    let input = scratch.join("torch_shapes.json");
    let output = scratch.join("torch_times.json");
    if let Err(e) = std::fs::write(&script, COMPARE_PY).and_then(|()| std::fs::write(&input, shapes)) {
        return TorchSide::skipped(format!("skipped: cannot write the script's files: {e}"));
    }
    let run =
        Command::new("python3").arg(&script).arg("--shapes").arg(&input).arg("--out").arg(&output).output();
    let parsed = match run {
        Err(e) => return TorchSide::skipped(format!("failed: python3 could not be run ({e})")),
        Ok(out) if !out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            return TorchSide::skipped(format!("failed: compare.py: {}", tail.join(" / ")));
        }
        Ok(_) => std::fs::read_to_string(&output)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<ScriptOutput>(&text).map_err(|e| e.to_string())),
    };
    match parsed {
        Err(e) => TorchSide::skipped(format!("failed: compare.py's output: {e}")),
        Ok(mut out) => {
            for result in &mut out.results {
                result.ours_ms = ours(result, rows, linear);
            }
            TorchSide {
                ran: true,
                note: "ran: CUDA events, same shapes".into(),
                versions: out.versions,
                results: out.results,
            }
        }
    }
}

/// Our median for the shape and op of `result`.
fn ours(result: &TorchResult, rows: &[RowRecord], linear: &LinearReport) -> Option<f64> {
    if result.op == "linear_cross_entropy" {
        return linear
            .records
            .iter()
            .find(|r| {
                r.kernel == "fused"
                    && r.rows == result.rows
                    && r.hidden == result.hidden
                    && r.classes == result.cols
            })
            .map(|r| r.median_ms);
    }
    rows.iter()
        .find(|r| {
            r.op == result.op
                && r.options == result.options
                && r.dtype == result.dtype
                && r.rows == result.rows
                && r.cols == result.cols
        })
        .map(|r| r.median_ms)
}

/// The shapes the script times, as JSON: each row record's op, options, type and shape,
/// and each linear shape (forward plus backward, f32).
#[must_use]
pub fn shapes_json(rows: &[RowRecord], linear: &LinearReport) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "op": r.op, "options": r.options, "dtype": r.dtype, "rows": r.rows, "cols": r.cols,
            })
        })
        .collect();
    let mut linear_shapes: Vec<(usize, usize, usize)> =
        linear.records.iter().map(|r| (r.rows, r.hidden, r.classes)).collect();
    linear_shapes.dedup();
    let linear: Vec<serde_json::Value> = linear_shapes
        .iter()
        .map(|&(n, d, v)| serde_json::json!({"rows": n, "hidden": d, "cols": v}))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({"rows": rows, "linear": linear})).unwrap_or_default()
}
