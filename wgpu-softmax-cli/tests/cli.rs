//! The `wgpu-softmax` command-line tool, run as a process on the adapter that
//! `WGPU_BACKEND` / `WGPU_ADAPTER_NAME` select: its outputs against the f64 reference, and
//! every kind of bad input refused with one line on stderr and no file left behind.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{SeededRng, compare};
use wgpu_softmax::{
    CrossEntropy, CrossEntropyInput, Distill, DistillInput, DistillReduction, Gradient, LinearCrossEntropy,
    LinearCrossEntropyInput, LinearShape, Reduction, Shape, Targets, reference,
};

// ---------------------------------------------------------------------------------------
// A scratch directory per test, and the tool run in it.

/// A fresh directory under the system's temporary directory, removed when the test
/// passes (kept for inspection when it fails).
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wgpu-softmax-cli-{}-{}-{test}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The file names in the directory.
    fn files(&self) -> BTreeSet<String> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs the tool with `args` in `dir`.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wgpu-softmax"));
    command.args(args).current_dir(dir).env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
    // Mesa's EGL (the GL backend) warns on stderr without a runtime directory.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let runtime = std::env::temp_dir().join(format!("wgpu-softmax-cli-xdg-{}", std::process::id()));
        std::fs::create_dir_all(&runtime).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        command.env("XDG_RUNTIME_DIR", runtime);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the tool and asserts that it succeeded; returns its stdout.
fn run_ok(scratch: &Scratch, args: &[&str]) -> String {
    let output = run_in(&scratch.dir, args);
    assert!(
        output.status.success(),
        "{args:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Runs the tool on bad input and asserts that it failed cleanly: a non-zero exit,
/// exactly one line on stderr holding every one of `expected` (the file and the
/// problem), no panic or backtrace, and no file in the directory but the inputs.
fn assert_refused(scratch: &Scratch, args: &[&str], expected: &[&str]) -> String {
    let before = scratch.files();
    let output = run_in(&scratch.dir, args);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{args:?} succeeded but should have failed; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: stderr is not one line: {stderr:?}");
    assert!(stderr.ends_with('\n'), "{args:?}: {stderr:?}");
    for word in expected {
        assert!(stderr.contains(word), "{args:?}: stderr {stderr:?} does not mention {word:?}");
    }
    let lower = stderr.to_lowercase();
    assert!(!lower.contains("panicked") && !lower.contains("backtrace"), "{args:?}: {stderr:?}");
    assert_eq!(scratch.files(), before, "{args:?} left files behind");
    stderr
}

// ---------------------------------------------------------------------------------------
// .npy files, written and read here independently of the tool's own module.

fn npy_bytes(descr: &str, fortran_order: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    npy_bytes_version(1, descr, fortran_order, shape, data)
}

/// A `.npy` file as NumPy's format describes it, in header version 1, 2 or 3 (3: the
/// header may hold UTF-8; it is padded to 64 bytes as `np.save` pads it).
fn npy_bytes_version(version: u8, descr: &str, fortran_order: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_text = match shape {
        [] => "()".to_owned(),
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    };
    let fortran = if fortran_order { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape_text}, }}");
    let prefix = if version == 1 { 10 } else { 12 };
    while (prefix + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = vec![0x93, b'N', b'U', b'M', b'P', b'Y', version, 0];
    if version == 1 {
        out.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    } else {
        out.extend_from_slice(&u32::try_from(header.len()).unwrap().to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn write_file(scratch: &Scratch, name: &str, bytes: &[u8]) -> String {
    std::fs::write(scratch.path(name), bytes).unwrap();
    name.to_owned()
}

fn write_f32(scratch: &Scratch, name: &str, shape: &[usize], data: &[f32]) -> String {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_file(scratch, name, &npy_bytes("<f4", false, shape, &bytes))
}

fn write_f64(scratch: &Scratch, name: &str, shape: &[usize], data: &[f64]) -> String {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_file(scratch, name, &npy_bytes("<f8", false, shape, &bytes))
}

fn write_i64(scratch: &Scratch, name: &str, data: &[i64]) -> String {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_file(scratch, name, &npy_bytes("<i8", false, &[data.len()], &bytes))
}

fn write_i32(scratch: &Scratch, name: &str, data: &[i32]) -> String {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_file(scratch, name, &npy_bytes("<i4", false, &[data.len()], &bytes))
}

fn write_u32(scratch: &Scratch, name: &str, data: &[u32]) -> String {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_file(scratch, name, &npy_bytes("<u4", false, &[data.len()], &bytes))
}

/// Reads a float32 C-order `.npy` the tool wrote: its shape and data.
fn read_f32(scratch: &Scratch, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(scratch.path(name)).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{name}");
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        _ => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
    };
    assert_eq!((start + header_len) % 16, 0, "{name}: data not 16-byte aligned");
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.ends_with('\n'), "{header:?}");
    assert!(header.contains("'descr': '<f4'"), "{header:?}");
    assert!(header.contains("'fortran_order': False"), "{header:?}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> =
        shape_text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let data: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(data.len() * 4, bytes.len() - start - header_len, "{name}: trailing bytes");
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{name}: {shape:?}");
    (shape, data)
}

fn assert_close(what: &str, actual: &[f32], expected: &[f64], tolerance: Tolerance) {
    let comparison = compare(actual, expected, tolerance);
    assert!(comparison.passed(), "{what}: {comparison}");
}

// ---------------------------------------------------------------------------------------
// Good inputs.

#[test]
fn softmax_of_a_float32_matrix_matches_the_reference() {
    let s = Scratch::new("softmax_f32");
    let x = SeededRng::new(1).logits(7 * 33, 6.0);
    write_f32(&s, "x.npy", &[7, 33], &x);
    run_ok(&s, &["softmax", "--input", "x.npy", "--output", "y.npy"]);
    let (shape, y) = read_f32(&s, "y.npy");
    assert_eq!(shape, [7, 33]);
    assert_close("softmax", &y, &reference::softmax(&x, Shape::new(7, 33)).unwrap(), Tolerance::SOFTMAX);
    assert_eq!(s.files(), BTreeSet::from(["x.npy".to_owned(), "y.npy".to_owned()]));
}

#[test]
fn softmax_of_a_float64_3d_array_is_over_the_last_axis() {
    let s = Scratch::new("softmax_f64_3d");
    let x64: Vec<f64> =
        SeededRng::new(2).logits(2 * 3 * 300, 10.0).iter().map(|&v| f64::from(v) * 1.1).collect();
    write_f64(&s, "x.npy", &[2, 3, 300], &x64);
    run_ok(&s, &["softmax", "--input", "x.npy", "--output", "y.npy"]);
    let (shape, y) = read_f32(&s, "y.npy");
    assert_eq!(shape, [2, 3, 300]);
    #[allow(clippy::cast_possible_truncation)]
    let x: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
    assert_close("softmax 3-D", &y, &reference::softmax(&x, Shape::new(6, 300)).unwrap(), Tolerance::SOFTMAX);
}

#[test]
fn softmax_of_a_1d_array_is_one_row() {
    let s = Scratch::new("softmax_1d");
    let x = [0.0, 10.0, 15.0, 18.0, 20.0];
    write_f32(&s, "x.npy", &[5], &x);
    run_ok(&s, &["softmax", "--input", "x.npy", "--output", "y.npy"]);
    let (shape, y) = read_f32(&s, "y.npy");
    assert_eq!(shape, [5]);
    assert_close("softmax 1-D", &y, &reference::softmax(&x, Shape::new(1, 5)).unwrap(), Tolerance::SOFTMAX);
    assert!((y[4] - 0.875_565_8).abs() < 1e-6);
}

#[test]
fn log_softmax_matches_the_reference_and_keeps_the_shape() {
    let s = Scratch::new("log_softmax");
    let x = SeededRng::new(3).logits(4 * 2 * 50, 20.0);
    write_f32(&s, "x.npy", &[4, 2, 50], &x);
    run_ok(&s, &["softmax", "--input", "x.npy", "--output", "y.npy", "--log"]);
    let (shape, y) = read_f32(&s, "y.npy");
    assert_eq!(shape, [4, 2, 50]);
    let expected = reference::log_softmax(&x, Shape::new(8, 50)).unwrap();
    assert_close("log-softmax", &y, &expected, Tolerance::LOG_SOFTMAX);
}

/// The lines of a C-order array of `dims` along `axis`: for each position off the axis (in
/// C order), the flat indices of its elements, by the array's own coordinates.
fn lines_along(dims: &[usize], axis: usize) -> Vec<Vec<usize>> {
    let strides: Vec<usize> = (0..dims.len()).map(|a| dims[a + 1..].iter().product()).collect();
    let others: Vec<usize> = (0..dims.len()).filter(|&a| a != axis).collect();
    let count: usize = others.iter().map(|&a| dims[a]).product();
    (0..count)
        .map(|mut position| {
            // The coordinates off the axis, the last varying fastest.
            let mut base = 0;
            for &a in others.iter().rev() {
                base += (position % dims[a]) * strides[a];
                position /= dims[a];
            }
            (0..dims[axis]).map(|c| base + c * strides[axis]).collect()
        })
        .collect()
}

#[test]
fn softmax_over_any_dim_keeps_the_shape() {
    let s = Scratch::new("softmax_dim");
    let dims = [3, 4, 5];
    let x = SeededRng::new(21).logits(60, 8.0);
    write_f32(&s, "x.npy", &dims, &x);
    for (dim, axis) in [("0", 0), ("1", 1), ("-2", 1), ("2", 2), ("-3", 0)] {
        for log in [false, true] {
            let mut args = vec!["softmax", "--input", "x.npy", "--output", "y.npy", "--dim", dim];
            if log {
                args.push("--log");
            }
            run_ok(&s, &args);
            let (shape, y) = read_f32(&s, "y.npy");
            assert_eq!(shape, dims);
            let mut expected = vec![f64::NAN; 60];
            for line in lines_along(&dims, axis) {
                let values: Vec<f32> = line.iter().map(|&i| x[i]).collect();
                let row = Shape::new(1, values.len());
                let want =
                    if log { reference::log_softmax(&values, row) } else { reference::softmax(&values, row) };
                for (&i, v) in line.iter().zip(want.unwrap()) {
                    expected[i] = v;
                }
            }
            let tolerance = if log { Tolerance::LOG_SOFTMAX } else { Tolerance::SOFTMAX };
            assert_close(&format!("--dim {dim}, log {log}"), &y, &expected, tolerance);
        }
    }
    assert_refused(
        &s,
        &["softmax", "--input", "x.npy", "--output", "z.npy", "--dim", "3"],
        &["x.npy", "--dim 3", "out of range", "from -3 to 2"],
    );
    assert_refused(
        &s,
        &["softmax", "--input", "x.npy", "--output", "z.npy", "--dim", "-4"],
        &["x.npy", "--dim -4"],
    );
}

/// PyTorch's (N, C, d1, d2) layout: class targets (N, d1, d2) with an ignored position,
/// and probabilities of the logits' shape; per-position outputs in the targets' shape.
#[test]
fn cross_entropy_of_nd_logits_takes_the_classes_on_axis_1() {
    let s = Scratch::new("ce_nd");
    let dims = [2, 5, 3, 2];
    let mut rng = SeededRng::new(22);
    let logits = rng.logits(60, 5.0);
    write_f32(&s, "x.npy", &dims, &logits);
    let targets: Vec<i64> = (0..12_i64).map(|i| if i == 4 { -100 } else { i * 3 % 5 }).collect();
    let bytes: Vec<u8> = targets.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_file(&s, "t.npy", &npy_bytes("<i8", false, &[2, 3, 2], &bytes));
    // The rows by the array's own coordinates: position (n, i, j) is row n * 6 + i * 2 + j.
    let lines = lines_along(&dims, 1);
    let rows: Vec<f32> = lines.iter().flat_map(|line| line.iter().map(|&i| logits[i])).collect();
    let op = CrossEntropy::new().reduction(Reduction::None).lse(true).z_loss(0.01).label_smoothing(0.05);
    let expected = reference::cross_entropy(
        &op,
        &CrossEntropyInput::new(&rows, Shape::new(12, 5), Targets::I64(&targets)),
    )
    .unwrap();
    let args = cross_entropy_args(
        "t.npy",
        &["--reduction", "none", "--lse", "lse.npy", "--z-loss", "0.01", "--label-smoothing", "0.05"],
    );
    run_ok(&s, &args);
    let (loss_shape, loss) = read_f32(&s, "l.npy");
    assert_eq!(loss_shape, [2, 3, 2]);
    assert_close("loss", &loss, &expected.loss, Tolerance::CROSS_ENTROPY_LOSS);
    let (lse_shape, lse) = read_f32(&s, "lse.npy");
    assert_eq!(lse_shape, [2, 3, 2]);
    assert_close("lse", &lse, &expected.lse.unwrap(), Tolerance::CROSS_ENTROPY_LOSS);
    let (grad_shape, grad) = read_f32(&s, "g.npy");
    assert_eq!(grad_shape, dims);
    let mut expected_grad = vec![f64::NAN; 60];
    for (line, values) in lines.iter().zip(expected.grad.unwrap().chunks(5)) {
        for (&i, &v) in line.iter().zip(values) {
            expected_grad[i] = v;
        }
    }
    assert_close("grad", &grad, &expected_grad, Tolerance::CROSS_ENTROPY_GRAD);

    // Probabilities of the logits' shape, mean reduction: a 0-d loss.
    let mut p = vec![0.0f32; 60];
    for line in &lines {
        let weights: Vec<f32> = (0..5).map(|_| rng.uniform(0.1, 1.0)).collect();
        let total: f32 = weights.iter().sum();
        for (&i, w) in line.iter().zip(weights) {
            p[i] = w / total;
        }
    }
    write_f32(&s, "p.npy", &dims, &p);
    let p_rows: Vec<f32> = lines.iter().flat_map(|line| line.iter().map(|&i| p[i])).collect();
    let expected = reference::cross_entropy(
        &CrossEntropy::new(),
        &CrossEntropyInput::new(&rows, Shape::new(12, 5), Targets::Probabilities(&p_rows)),
    )
    .unwrap();
    let mut args = cross_entropy_args("p.npy", &[]);
    args[6] = "l2.npy";
    args[8] = "g2.npy";
    run_ok(&s, &args);
    let (loss_shape, loss) = read_f32(&s, "l2.npy");
    assert_eq!(loss_shape, Vec::<usize>::new());
    assert_close("probability loss", &loss, &expected.loss, Tolerance::CROSS_ENTROPY_LOSS);
}

/// `distill` over a class axis in the middle, with a mask and a temperature: the loss per
/// row (none) and batchmean, and the gradient, against the reference; refusals that name
/// the file.
#[test]
fn distill_matches_the_reference_over_any_dim() {
    let s = Scratch::new("distill");
    let dims = [2, 5, 3];
    let mut rng = SeededRng::new(31);
    let (student, teacher) = (rng.logits(30, 4.0), rng.logits(30, 6.0));
    write_f32(&s, "s.npy", &dims, &student);
    write_f32(&s, "t.npy", &dims, &teacher);
    let targets: Vec<i64> = vec![1, -100, 4, 0, 2, 3];
    let bytes: Vec<u8> = targets.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_file(&s, "y.npy", &npy_bytes("<i8", false, &[2, 3], &bytes));
    let shape = Shape::of_dims(&dims, 1).unwrap();
    for (reduction, loss_shape) in [("none", vec![2, 3]), ("batchmean", vec![])] {
        let op = Distill::new().temperature(2.0).reduction(if reduction == "none" {
            DistillReduction::None
        } else {
            DistillReduction::BatchMean
        });
        let input = DistillInput::new(&student, &teacher, shape).targets(Targets::I64(&targets));
        let expected = reference::distill(&op, &input).unwrap();
        let loss = format!("l-{reduction}.npy");
        let grad = format!("g-{reduction}.npy");
        run_ok(
            &s,
            &[
                "distill",
                "--student",
                "s.npy",
                "--teacher",
                "t.npy",
                "--loss",
                &loss,
                "--grad",
                &grad,
                "--temperature",
                "2",
                "--dim",
                "1",
                "--targets",
                "y.npy",
                "--reduction",
                reduction,
            ],
        );
        let (got_shape, got) = read_f32(&s, &loss);
        assert_eq!(got_shape, loss_shape, "{reduction}");
        assert_close(&format!("loss {reduction}"), &got, &expected.loss, Tolerance::DISTILL_LOSS);
        let (got_shape, got) = read_f32(&s, &grad);
        assert_eq!(got_shape, dims, "{reduction}");
        assert_close(&format!("grad {reduction}"), &got, &expected.grad.unwrap(), Tolerance::DISTILL_GRAD);
    }
    write_f32(&s, "t2.npy", &[2, 15], &teacher);
    assert_refused(
        &s,
        &["distill", "--student", "s.npy", "--teacher", "t2.npy", "--loss", "x.npy"],
        &["t2.npy", "shape"],
    );
    assert_refused(
        &s,
        &["distill", "--student", "s.npy", "--teacher", "t.npy", "--loss", "x.npy", "--temperature", "0"],
        &["temperature"],
    );
}

#[test]
fn linear_cross_entropy_writes_the_loss_and_every_gradient() {
    let s = Scratch::new("lce");
    let shape = LinearShape::new(9, 5, 13);
    let mut rng = SeededRng::new(14);
    let hidden = rng.logits(45, 1.5);
    let classifier = rng.logits(65, 1.5);
    let bias = rng.logits(13, 0.5);
    let weight: Vec<f32> = (0..13).map(|_| rng.uniform(0.5, 2.0)).collect();
    let targets: Vec<i64> = (0..9_i64).map(|i| if i == 4 { -1 } else { i * 5 % 13 }).collect();
    write_f32(&s, "h.npy", &[9, 5], &hidden);
    write_f32(&s, "w.npy", &[13, 5], &classifier);
    write_f32(&s, "b.npy", &[13], &bias);
    write_f32(&s, "cw.npy", &[13], &weight);
    write_i64(&s, "t.npy", &targets);
    let input = LinearCrossEntropyInput::new(&hidden, &classifier, shape, Targets::I64(&targets))
        .bias(&bias)
        .weight(&weight);
    for (reduction, name) in [(Reduction::Mean, "mean"), (Reduction::None, "none")] {
        let op = LinearCrossEntropy::new()
            .reduction(reduction)
            .ignore_index(-1)
            .label_smoothing(0.1)
            .z_loss(0.01)
            .softcap(5.0)
            .lse(true);
        let expected = reference::linear_cross_entropy(&op, &input).unwrap();
        let args = [
            "linear-cross-entropy",
            "--hidden",
            "h.npy",
            "--classifier",
            "w.npy",
            "--bias",
            "b.npy",
            "--targets",
            "t.npy",
            "--weight",
            "cw.npy",
            "--loss",
            "l.npy",
            "--lse",
            "lse.npy",
            "--grad-hidden",
            "dh.npy",
            "--grad-classifier",
            "dw.npy",
            "--grad-bias",
            "db.npy",
            "--reduction",
            name,
            "--ignore-index",
            "-1",
            "--label-smoothing",
            "0.1",
            "--z-loss",
            "0.01",
            "--softcap",
            "5",
        ];
        run_ok(&s, &args);
        let loss_shape: &[usize] = if reduction == Reduction::None { &[9] } else { &[] };
        for (file, shape, want, tolerance) in [
            ("l.npy", loss_shape, expected.loss.clone(), Tolerance::CROSS_ENTROPY_LOSS),
            ("lse.npy", &[9][..], expected.lse.clone().unwrap(), Tolerance::CROSS_ENTROPY_LOSS),
            (
                "dh.npy",
                &[9, 5][..],
                expected.grad_hidden.clone().unwrap(),
                Tolerance::LINEAR_CROSS_ENTROPY_GRAD,
            ),
            (
                "dw.npy",
                &[13, 5][..],
                expected.grad_classifier.clone().unwrap(),
                Tolerance::LINEAR_CROSS_ENTROPY_GRAD,
            ),
            ("db.npy", &[13][..], expected.grad_bias.clone().unwrap(), Tolerance::LINEAR_CROSS_ENTROPY_GRAD),
        ] {
            let (got_shape, got) = read_f32(&s, file);
            assert_eq!(got_shape, shape, "{file} ({name})");
            assert_close(file, &got, &want, tolerance);
        }
    }
    // bf16 storage: the gradients come back as float32 holding bf16 values.
    run_ok(
        &s,
        &[
            "linear-cross-entropy",
            "--hidden",
            "h.npy",
            "--classifier",
            "w.npy",
            "--targets",
            "t.npy",
            "--loss",
            "l16.npy",
            "--grad-classifier",
            "dw16.npy",
            "--dtype",
            "bf16",
            "--ignore-index",
            "-1",
        ],
    );
    let (dw_shape, dw) = read_f32(&s, "dw16.npy");
    assert_eq!(dw_shape, [13, 5]);
    assert!(dw.iter().all(|v| v.to_bits() & 0xffff == 0), "bf16 values written as float32");
    // Refusals name the file or option, and leave nothing behind.
    assert_refused(
        &s,
        &[
            "linear-cross-entropy",
            "--hidden",
            "h.npy",
            "--classifier",
            "b.npy",
            "--targets",
            "t.npy",
            "--loss",
            "x.npy",
        ],
        &["b.npy", "(V, 5)"],
    );
    assert_refused(
        &s,
        &[
            "linear-cross-entropy",
            "--hidden",
            "h.npy",
            "--classifier",
            "w.npy",
            "--targets",
            "t.npy",
            "--loss",
            "x.npy",
            "--grad-bias",
            "y.npy",
        ],
        &["--grad-bias needs --bias"],
    );
    assert_refused(
        &s,
        &[
            "linear-cross-entropy",
            "--hidden",
            "h.npy",
            "--classifier",
            "w.npy",
            "--targets",
            "t.npy",
            "--loss",
            "h.npy",
        ],
        &["h.npy"],
    );
    write_i64(&s, "bad.npy", &[0, 1, 2, 3, 13, 0, 0, 0, 0]);
    assert_refused(
        &s,
        &[
            "linear-cross-entropy",
            "--hidden",
            "h.npy",
            "--classifier",
            "w.npy",
            "--targets",
            "bad.npy",
            "--loss",
            "x.npy",
        ],
        &["bad.npy", "13"],
    );
}

#[test]
fn softmax_of_an_empty_array_writes_an_empty_array() {
    let s = Scratch::new("softmax_empty");
    write_f32(&s, "x.npy", &[0, 4], &[]);
    run_ok(&s, &["softmax", "--input", "x.npy", "--output", "y.npy"]);
    assert_eq!(read_f32(&s, "y.npy"), (vec![0, 4], vec![]));
}

#[test]
fn softmax_replaces_an_existing_output_file() {
    let s = Scratch::new("softmax_replace");
    write_f32(&s, "x.npy", &[2], &[1.0, 1.0]);
    std::fs::write(s.path("y.npy"), b"old contents").unwrap();
    run_ok(&s, &["softmax", "--input", "x.npy", "--output", "y.npy"]);
    assert_eq!(read_f32(&s, "y.npy"), (vec![2], vec![0.5, 0.5]));
    assert_eq!(s.files().len(), 2, "{:?}", s.files());
}

/// Runs cross-entropy with `options` on the written inputs, and checks the loss (and the
/// gradient, when asked for) against the reference of `op` on `input`.
fn check_cross_entropy(
    s: &Scratch,
    files: &[&str],
    options: &[&str],
    op: CrossEntropy,
    input: &CrossEntropyInput<'_>,
    with_grad: bool,
) {
    let mut args = vec!["cross-entropy", "--logits", files[0], "--targets", files[1], "--loss", "loss.npy"];
    if with_grad {
        args.extend(["--grad", "grad.npy"]);
    }
    args.extend(options);
    for output in ["loss.npy", "grad.npy"] {
        let _ = std::fs::remove_file(s.path(output));
    }
    run_ok(s, &args);
    let op = op.gradient(if with_grad { Gradient::Separate } else { Gradient::Skip });
    let expected = reference::cross_entropy(&op, input).unwrap();
    let (loss_shape, loss) = read_f32(s, "loss.npy");
    let wanted_shape = if op.get_reduction() == Reduction::None { vec![input.shape.rows] } else { vec![] };
    assert_eq!(loss_shape, wanted_shape, "{options:?}");
    assert_close(&format!("loss {options:?}"), &loss, &expected.loss, Tolerance::CROSS_ENTROPY_LOSS);
    if with_grad {
        let (grad_shape, grad) = read_f32(s, "grad.npy");
        assert_eq!(grad_shape, [input.shape.rows, input.shape.cols]);
        assert_close(
            &format!("grad {options:?}"),
            &grad,
            &expected.grad.unwrap(),
            Tolerance::CROSS_ENTROPY_GRAD,
        );
    } else {
        assert!(!s.path("grad.npy").exists());
    }
}

#[test]
fn cross_entropy_with_int64_targets_every_reduction() {
    let s = Scratch::new("ce_i64");
    let shape = Shape::new(9, 6);
    let mut rng = SeededRng::new(4);
    let logits = rng.logits(54, 5.0);
    let targets: Vec<i64> = (0..9).map(|_| i64::try_from(rng.below(6)).unwrap()).collect();
    write_f32(&s, "x.npy", &[9, 6], &logits);
    write_i64(&s, "t.npy", &targets);
    let input = CrossEntropyInput::new(&logits, shape, Targets::I64(&targets));
    for (flag, reduction) in [("mean", Reduction::Mean), ("sum", Reduction::Sum), ("none", Reduction::None)] {
        let op = CrossEntropy::new().reduction(reduction);
        check_cross_entropy(&s, &["x.npy", "t.npy"], &["--reduction", flag], op, &input, true);
    }
    // The default is the mean.
    check_cross_entropy(&s, &["x.npy", "t.npy"], &[], CrossEntropy::new(), &input, true);
}

#[test]
fn cross_entropy_with_int32_targets_ignore_index_and_weight() {
    let s = Scratch::new("ce_i32");
    let shape = Shape::new(8, 5);
    let mut rng = SeededRng::new(5);
    let logits = rng.logits(40, 5.0);
    let targets: Vec<i32> =
        (0..8).map(|row| if row % 3 == 0 { -1 } else { i32::try_from(rng.below(5)).unwrap() }).collect();
    let weight: Vec<f32> = (0..5).map(|_| rng.uniform(0.5, 2.0)).collect();
    write_f32(&s, "x.npy", &[8, 5], &logits);
    write_i32(&s, "t.npy", &targets);
    write_f32(&s, "w.npy", &[5], &weight);
    let input = CrossEntropyInput::new(&logits, shape, Targets::I32(&targets)).weight(&weight);
    for (flag, reduction) in [("mean", Reduction::Mean), ("sum", Reduction::Sum), ("none", Reduction::None)] {
        let op = CrossEntropy::new().reduction(reduction).ignore_index(-1);
        let options = ["--reduction", flag, "--ignore-index", "-1", "--weight", "w.npy"];
        check_cross_entropy(&s, &["x.npy", "t.npy"], &options, op, &input, true);
    }
}

#[test]
fn cross_entropy_with_uint32_targets_and_label_smoothing() {
    let s = Scratch::new("ce_u32");
    let shape = Shape::new(7, 300);
    let mut rng = SeededRng::new(6);
    let logits = rng.logits(7 * 300, 8.0);
    let targets: Vec<u32> = (0..7).map(|_| u32::try_from(rng.below(300)).unwrap()).collect();
    write_f32(&s, "x.npy", &[7, 300], &logits);
    write_u32(&s, "t.npy", &targets);
    let input = CrossEntropyInput::new(&logits, shape, Targets::U32(&targets));
    let op = CrossEntropy::new().reduction(Reduction::None).label_smoothing(0.1);
    let options = ["--reduction", "none", "--label-smoothing", "0.1"];
    check_cross_entropy(&s, &["x.npy", "t.npy"], &options, op, &input, true);
    // The loss alone: no gradient file.
    check_cross_entropy(&s, &["x.npy", "t.npy"], &options, op, &input, false);
}

#[test]
fn cross_entropy_with_float64_probability_targets_weight_and_smoothing() {
    let s = Scratch::new("ce_probabilities");
    let shape = Shape::new(6, 4);
    let mut rng = SeededRng::new(7);
    let logits64: Vec<f64> = rng.logits(24, 4.0).iter().map(|&v| f64::from(v)).collect();
    let mut probabilities64: Vec<f64> = (0..24).map(|_| rng.next_unit()).collect();
    for row in probabilities64.chunks_mut(4) {
        let sum: f64 = row.iter().sum();
        row.iter_mut().for_each(|p| *p /= sum);
    }
    let weight64 = [0.5, 1.0, 1.5, 2.0];
    write_f64(&s, "x.npy", &[6, 4], &logits64);
    write_f64(&s, "p.npy", &[6, 4], &probabilities64);
    write_f64(&s, "w.npy", &[4], &weight64);
    #[allow(clippy::cast_possible_truncation)]
    let to_f32 = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
    let (logits, probabilities, weight) = (to_f32(&logits64), to_f32(&probabilities64), to_f32(&weight64));
    let input =
        CrossEntropyInput::new(&logits, shape, Targets::Probabilities(&probabilities)).weight(&weight);
    for (flag, reduction) in [("mean", Reduction::Mean), ("sum", Reduction::Sum), ("none", Reduction::None)] {
        let op = CrossEntropy::new().reduction(reduction).label_smoothing(0.2);
        let options = ["--reduction", flag, "--label-smoothing", "0.2", "--weight", "w.npy"];
        check_cross_entropy(&s, &["x.npy", "p.npy"], &options, op, &input, true);
    }
}

/// `--z-loss`, `--softcap` and `--lse`: the loss, gradient and logsumexp against the
/// reference; bad values are one-line errors; `--lse` may not name another output.
#[test]
fn cross_entropy_with_z_loss_softcap_and_lse() {
    let s = Scratch::new("ce_options");
    let shape = Shape::new(10, 12);
    let mut rng = SeededRng::new(8);
    let logits = rng.logits(120, 9.0);
    let targets: Vec<i64> =
        (0..10).map(|row| if row == 4 { -100 } else { i64::try_from(rng.below(12)).unwrap() }).collect();
    let weight: Vec<f32> = (0..12).map(|_| rng.uniform(0.5, 2.0)).collect();
    write_f32(&s, "x.npy", &[10, 12], &logits);
    write_i64(&s, "t.npy", &targets);
    write_f32(&s, "w.npy", &[12], &weight);
    let input = CrossEntropyInput::new(&logits, shape, Targets::I64(&targets)).weight(&weight);
    for (flag, reduction) in [("mean", Reduction::Mean), ("none", Reduction::None)] {
        let op = CrossEntropy::new().reduction(reduction).z_loss(0.25).softcap(4.0).lse(true);
        let options = [
            "--reduction",
            flag,
            "--weight",
            "w.npy",
            "--z-loss",
            "0.25",
            "--softcap",
            "4",
            "--lse",
            "lse.npy",
        ];
        let _ = std::fs::remove_file(s.path("lse.npy"));
        check_cross_entropy(&s, &["x.npy", "t.npy"], &options, op, &input, true);
        let (lse_shape, lse) = read_f32(&s, "lse.npy");
        assert_eq!(lse_shape, [10]);
        let expected = reference::cross_entropy(&op, &input).unwrap().lse.unwrap();
        assert_close("lse", &lse, &expected, Tolerance::CROSS_ENTROPY_LOSS);
    }
    for (flag, value, option) in
        [("--softcap", "0", "softcap"), ("--softcap", "-2", "softcap"), ("--z-loss", "-1", "z_loss")]
    {
        let args =
            ["cross-entropy", "--logits", "x.npy", "--targets", "t.npy", "--loss", "l2.npy", flag, value];
        assert_refused(&s, &args, &[option]);
    }
    let args =
        ["cross-entropy", "--logits", "x.npy", "--targets", "t.npy", "--loss", "l2.npy", "--lse", "l2.npy"];
    assert_refused(&s, &args, &["--loss and --lse name the same file"]);
}

/// 1-D logits (C,) are one sample, as in PyTorch: a 0-d class target or (C,)
/// probabilities; the per-sample outputs (loss with reduction none, logsumexp) are 0-d.
#[test]
fn cross_entropy_of_one_dimensional_logits() {
    let s = Scratch::new("ce_one_sample");
    let mut rng = SeededRng::new(9);
    let logits = rng.logits(11, 5.0);
    write_f32(&s, "x.npy", &[11], &logits);
    let bytes: Vec<u8> = 7_i64.to_le_bytes().to_vec();
    write_file(&s, "t.npy", &npy_bytes("<i8", false, &[], &bytes));
    let input = CrossEntropyInput::new(&logits, Shape::new(1, 11), Targets::I64(&[7]));
    let op = CrossEntropy::new().reduction(Reduction::None).lse(true);
    let expected = reference::cross_entropy(&op, &input).unwrap();
    let args = cross_entropy_args("t.npy", &["--lse", "lse.npy", "--reduction", "none"]);
    run_ok(&s, &args);
    let (loss_shape, loss) = read_f32(&s, "l.npy");
    assert_eq!(loss_shape, Vec::<usize>::new(), "a 0-d loss");
    assert_close("loss", &loss, &expected.loss, Tolerance::CROSS_ENTROPY_LOSS);
    let (grad_shape, grad) = read_f32(&s, "g.npy");
    assert_eq!(grad_shape, [11]);
    assert_close("grad", &grad, &expected.grad.unwrap(), Tolerance::CROSS_ENTROPY_GRAD);
    let (lse_shape, lse) = read_f32(&s, "lse.npy");
    assert_eq!(lse_shape, Vec::<usize>::new());
    assert_close("lse", &lse, &expected.lse.unwrap(), Tolerance::CROSS_ENTROPY_LOSS);
    // A (1,) target is not a 0-d one: the error names both shapes.
    write_i64(&s, "t1.npy", &[7]);
    let args = ["cross-entropy", "--logits", "x.npy", "--targets", "t1.npy", "--loss", "l2.npy"];
    assert_refused(&s, &args, &["t1.npy", "(1,)", "()"]);
}

/// The (3, 5) matrix `values` as NumPy stores it in every layout `np.save` writes: C and
/// Fortran order, little- and big-endian, header versions 1 to 3, float16/32/64, and with
/// bytes after the data (which NumPy ignores).
fn every_layout_of(values: &[f32]) -> Vec<(String, Vec<u8>)> {
    let (rows, cols) = (3, 5);
    let c_order = values.to_vec();
    let fortran: Vec<f32> =
        (0..cols).flat_map(|c| (0..rows).map(move |r| (r, c))).map(|(r, c)| values[r * cols + c]).collect();
    let mut layouts = Vec::new();
    for (order_name, data, fortran_order) in [("c", &c_order, false), ("f", &fortran, true)] {
        let le4: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let be4: Vec<u8> = data.iter().flat_map(|v| v.to_be_bytes()).collect();
        let be8: Vec<u8> = data.iter().flat_map(|v| f64::from(*v).to_be_bytes()).collect();
        let le8: Vec<u8> = data.iter().flat_map(|v| f64::from(*v).to_le_bytes()).collect();
        let le2: Vec<u8> = data.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        let be2: Vec<u8> = data.iter().flat_map(|v| half::f16::from_f32(*v).to_be_bytes()).collect();
        for (version, descr, bytes) in [
            (1, "<f4", &le4),
            (1, ">f4", &be4),
            (2, "<f8", &le8),
            (3, ">f8", &be8),
            (1, "<f2", &le2),
            (3, ">f2", &be2),
        ] {
            let name = format!("{order_name}-v{version}-{}.npy", descr.replace('<', "le").replace('>', "be"));
            layouts.push((name, npy_bytes_version(version, descr, fortran_order, &[rows, cols], bytes)));
        }
        let mut trailing = npy_bytes("<f4", fortran_order, &[rows, cols], &le4);
        trailing.extend_from_slice(b"bytes NumPy ignores");
        layouts.push((format!("{order_name}-trailing.npy"), trailing));
    }
    layouts
}

#[test]
fn every_layout_numpy_writes_gives_the_same_answer() {
    let s = Scratch::new("layouts");
    // Values exact in float16, so that every dtype holds the same matrix.
    let values: Vec<f32> =
        (0..15).map(|i| f32::from(i16::try_from(i * 7 % 11).unwrap()) * 0.25 - 1.0).collect();
    let expected = reference::softmax(&values, Shape::new(3, 5)).unwrap();
    let mut first: Option<Vec<f32>> = None;
    for (name, bytes) in every_layout_of(&values) {
        write_file(&s, &name, &bytes);
        // In f32 whatever the file holds, so that every layout gives the same bits.
        let stdout = run_ok(&s, &["softmax", "--input", &name, "--output", "y.npy", "--dtype", "f32"]);
        assert!(stdout.contains("wrote y.npy"), "{name}: {stdout}");
        let (shape, y) = read_f32(&s, "y.npy");
        assert_eq!(shape, [3, 5], "{name}");
        assert_close(&name, &y, &expected, Tolerance::SOFTMAX);
        // Every layout gives the same bits, not merely close ones.
        match &first {
            None => first = Some(y),
            Some(f) => assert_eq!(f, &y, "{name} differs from the plain layout"),
        }
    }
}

#[test]
fn integer_targets_of_every_width_are_read() {
    let s = Scratch::new("target_widths");
    let mut rng = SeededRng::new(8);
    let logits = rng.logits(6 * 4, 3.0);
    let targets: Vec<i64> = (0..6).map(|_| i64::try_from(rng.below(4)).unwrap()).collect();
    write_f32(&s, "x.npy", &[6, 4], &logits);
    let input = CrossEntropyInput::new(&logits, Shape::new(6, 4), Targets::I64(&targets));
    for (descr, width) in [("|i1", 1), ("|u1", 1), ("<i2", 2), (">u2", 2), (">i4", 4), ("<u8", 8), (">i8", 8)]
    {
        let bytes: Vec<u8> = targets
            .iter()
            .flat_map(|&t| {
                let le = t.to_le_bytes();
                let mut word = le[..width].to_vec();
                if descr.starts_with('>') {
                    word.reverse();
                }
                word
            })
            .collect();
        let name = format!("t-{}.npy", descr.replace(['<', '>', '|'], ""));
        write_file(&s, &name, &npy_bytes(descr, false, &[6], &bytes));
        check_cross_entropy(&s, &["x.npy", &name], &[], CrossEntropy::new(), &input, true);
    }
    // A uint64 past int64's range is named, not wrapped.
    let mut big: Vec<u8> = [0u64, 1, 2, 3, 0, u64::MAX].iter().flat_map(|t| t.to_le_bytes()).collect();
    big.truncate(48);
    write_file(&s, "t-big.npy", &npy_bytes("<u8", false, &[6], &big));
    assert_refused(&s, &cross_entropy_args_for("t-big.npy"), &["t-big.npy", "index 5", "does not fit"]);
}

fn cross_entropy_args_for(targets: &str) -> Vec<&str> {
    vec!["cross-entropy", "--logits", "x.npy", "--targets", targets, "--loss", "l.npy"]
}

#[test]
fn successful_commands_say_what_they_wrote() {
    let s = cross_entropy_inputs("written");
    let stdout = run_ok(&s, &["softmax", "--input", "x.npy", "--output", "y.npy"]);
    assert_eq!(stdout, "softmax: wrote y.npy (float32, shape (4, 3))\n");
    let stdout = run_ok(&s, &cross_entropy_args("t.npy", &[]));
    assert_eq!(stdout, "cross-entropy: wrote l.npy (float32, shape ()) and g.npy (float32, shape (4, 3))\n");
}

#[test]
fn verbose_commands_report_their_plan_stage_times_and_memory_on_stderr() {
    let s = cross_entropy_inputs("verbose");
    let mut args = cross_entropy_args("t.npy", &[]);
    args.push("--verbose");
    let out = run_in(&s.dir, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // stdout is what it always is; the report is on stderr.
    assert_eq!(
        text(&out.stdout),
        "cross-entropy: wrote l.npy (float32, shape ()) and g.npy (float32, shape (4, 3))\n"
    );
    let stderr = text(&out.stderr);
    for expected in [
        "cross-entropy --verbose:",
        "plan:   strategy:",
        "plan:   dispatches:",
        "time: reading the inputs",
        "running on the GPU",
        "memory: the op's largest buffer of its own",
        "process peak resident",
    ] {
        assert!(stderr.contains(expected), "{expected} not in {stderr}");
    }
    let quiet = run_in(&s.dir, &cross_entropy_args("t.npy", &[]));
    assert!(!text(&quiet.stderr).contains("--verbose"), "{}", text(&quiet.stderr));
}

#[test]
fn info_lists_the_adapter_and_the_strategies() {
    let s = Scratch::new("info");
    let stdout = run_ok(&s, &["info"]);
    assert!(stdout.contains("adapter 0:"), "{stdout}");
    assert!(stdout.contains("[selected]"), "{stdout}");
    assert!(stdout.contains("selected: "), "{stdout}");
    for word in ["SUBGROUP", "max_storage_buffer_binding_size", "65536x10", "8x262144", "PerRow"] {
        assert!(stdout.contains(word), "{word} missing from {stdout}");
    }
    let searched = stdout.lines().find(|l| l.starts_with("backends searched:")).unwrap_or_default();
    assert!(!searched.contains("noop") && !searched.contains("browser"), "{searched}");
}

/// `info --json` prints the selected adapter's profile, which `plan --profile` reads back
/// and plans on as `plan` does on the adapter itself; bad profiles and requests are refused
/// on one line naming the file or option.
#[test]
fn info_json_is_a_profile_that_plan_reads_back() {
    let s = Scratch::new("info_json");
    let profile = run_ok(&s, &["info", "--json"]);
    for field in
        ["\"name\"", "\"device_type\"", "\"max_storage_buffer_binding_size\"", "\"subgroup_min_size\""]
    {
        assert!(profile.contains(field), "{field} missing from {profile}");
    }
    std::fs::write(s.path("adapter.json"), &profile).unwrap();
    let args = ["--op", "cross_entropy", "--shape", "64,1025", "--dtype", "bf16", "--json"];
    let from_profile = run_ok(&s, &[&["plan", "--profile", "adapter.json"][..], &args[..]].concat());
    let from_adapter = run_ok(&s, &[&["plan"][..], &args[..]].concat());
    // The same plan, bar the note that says it was planned from a profile.
    let without_notes = |json: &str| json.split("\"notes\"").next().unwrap_or_default().to_owned();
    assert_eq!(without_notes(&from_profile), without_notes(&from_adapter));
    // The mean's divisor, the kernel (the reduction folded in), the 16-bit edge pass.
    assert!(from_profile.contains("\"dispatches\": 3"), "{from_profile}");
    let text = run_ok(&s, &["plan", "--profile", "adapter.json", "--op", "softmax", "--shape", "8,4096"]);
    assert!(text.contains("reads per element:"), "{text}");
    // O,C,I: a class axis of 21 with 16,384 positions after it; 16-bit rows run paired.
    let strided = ["plan", "--profile", "adapter.json", "--op", "softmax", "--shape", "8,21,16384"];
    let json = run_ok(&s, &[&strided[..], &["--dtype", "f16", "--json"][..]].concat());
    for field in ["\"rows\": 131072", "\"inner\": 16384", "\"rows_per_invocation\": 2"] {
        assert!(json.contains(field), "{field} missing from {json}");
    }
    let json = run_ok(&s, &[&strided[..], &["--json"][..]].concat());
    assert!(json.contains("\"rows_per_invocation\": 1"), "f32 rows do not pair: {json}");

    std::fs::write(s.path("bad.json"), profile.replace("\"subgroups\": true", "\"subgroups\": \"yes\""))
        .unwrap();
    std::fs::write(s.path("short.json"), profile.replace("\"max_buffer_size\"", "\"max_buffer\"")).unwrap();
    fn plan(file: &str) -> [&str; 7] {
        ["plan", "--profile", file, "--op", "softmax", "--shape", "8,10"]
    }
    assert_refused(&s, &plan("bad.json"), &["bad.json", "features.subgroups", "true or false"]);
    assert_refused(&s, &plan("short.json"), &["short.json", "limits.max_buffer_size"]);
    assert_refused(&s, &plan("missing.json"), &["missing.json", "cannot read"]);
    assert_refused(
        &s,
        &["plan", "--profile", "adapter.json", "--op", "linear_cross_entropy", "--shape", "8,10"],
        &["N,D,V"],
    );
    assert_refused(
        &s,
        &["plan", "--profile", "adapter.json", "--op", "sample", "--shape", "8,21,4"],
        &["R,C"],
    );
}

/// Without `XDG_RUNTIME_DIR`, the tool runs itself with a private one: nothing on stderr
/// (Mesa's Vulkan device-selection layer would print an error line per instance).
#[test]
fn the_tool_is_quiet_without_a_runtime_dir() {
    let s = Scratch::new("no_xdg");
    let output = Command::new(env!("CARGO_BIN_EXE_wgpu-softmax"))
        .arg("info")
        .current_dir(&s.dir)
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "", "stdout: {}", text(&output.stdout));
    assert!(text(&output.stdout).contains("[selected]"), "{}", text(&output.stdout));
    // A failing command still exits non-zero with its one line.
    let output = Command::new(env!("CARGO_BIN_EXE_wgpu-softmax"))
        .args(["softmax", "--input", "nope.npy", "--output", "y.npy"])
        .current_dir(&s.dir)
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr).lines().count(), 1, "{}", text(&output.stderr));
}

#[test]
fn check_passes_every_op_and_prints_the_adapter() {
    let s = Scratch::new("check");
    let stdout = run_ok(&s, &["check", "--seed", "12345"]);
    assert!(stdout.contains("adapter: "), "{stdout}");
    assert!(stdout.contains("seed: 12345"), "{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    // A line per group, each passing with comparisons made (none skipped as n/a wholesale).
    for group in [
        "softmax, log-softmax (4 strategies, f32 f16 bf16)",
        "softmax and log-softmax backward (4 strategies, f32 f16 bf16)",
        "cross-entropy (4 strategies, options, f32 f16 bf16)",
        "N-D layout",
        "linear cross-entropy",
        "distillation",
        "sampling",
    ] {
        let line =
            stdout.lines().find(|l| l.starts_with(group)).unwrap_or_else(|| panic!("{group}: {stdout}"));
        assert!(line.contains(" pass ") && !line.contains(" 0 passed"), "{line}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn the_backend_flag_selects_the_backend() {
    let Some(backend) = std::env::var("WGPU_BACKEND").ok().filter(|b| ["vulkan", "gl"].contains(&b.as_str()))
    else {
        return; // only where the test run names a backend this test knows
    };
    let s = Scratch::new("backend_flag");
    let stdout = run_ok(&s, &["info", "--backend", &backend]);
    let expected = if backend == "gl" { "backend:      Gl" } else { "backend:      Vulkan" };
    assert!(stdout.contains(expected), "{stdout}");
}

// ---------------------------------------------------------------------------------------
// Bad input: one line on stderr naming the file and the problem, nothing left behind.

#[test]
fn a_missing_or_unreadable_input_is_refused() {
    let s = Scratch::new("missing");
    assert_refused(
        &s,
        &["softmax", "--input", "nope.npy", "--output", "y.npy"],
        &["nope.npy", "cannot read"],
    );
    std::fs::create_dir(s.path("adir.npy")).unwrap();
    assert_refused(
        &s,
        &["softmax", "--input", "adir.npy", "--output", "y.npy"],
        &["adir.npy", "cannot read"],
    );
}

#[test]
fn malformed_npy_files_are_refused() {
    let s = Scratch::new("malformed");
    let good = npy_bytes("<f4", false, &[2, 3], &[0; 24]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage.npy", b"this is not an npy file at all".to_vec(), "magic"),
        ("empty.npy", Vec::new(), "magic"),
        ("short-header.npy", good[..40].to_vec(), "truncated"),
        ("short-data.npy", good[..good.len() - 5].to_vec(), "truncated"),
        ("claims-more.npy", npy_bytes("<f4", false, &[1000, 1000], &[0; 64]), "claims shape (1000, 1000)"),
        ("huge-shape.npy", npy_bytes("<f4", false, &[1 << 40, 1 << 40, 1 << 40], &[]), "memory"),
        (
            "bad-key.npy",
            replace_bytes(npy_bytes("<f4", false, &[2], &[0; 8]), b"'shape'", b"'shap3'"),
            "missing key 'shape'",
        ),
        (
            "bad-dict.npy",
            replace_bytes(npy_bytes("<f4", false, &[2], &[0; 8]), b"}", b")"),
            "not a valid .npy",
        ),
        ("version.npy", [&b"\x93NUMPY\x07\x00"[..], &good[8..]].concat(), "unsupported version: (7, 0)"),
    ];
    for (name, bytes, problem) in cases {
        write_file(&s, name, &bytes);
        assert_refused(&s, &["softmax", "--input", name, "--output", "y.npy"], &[name, problem]);
    }
}

/// `bytes` with the first `from` replaced by `to`, of the same length (the header's length
/// field stays right).
fn replace_bytes(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    bytes[at..at + from.len()].copy_from_slice(to);
    bytes
}

#[test]
fn unsupported_dtypes_and_layouts_are_refused() {
    let s = Scratch::new("dtypes");
    let cases = [
        ("complex.npy", npy_bytes("<c8", false, &[2], &[0; 16]), "complex"),
        ("bool.npy", npy_bytes("|b1", false, &[2], &[0; 2]), "booleans"),
        ("text.npy", npy_bytes("<U3", false, &[2], &[0; 24]), "only floats and integers"),
        (
            "ints.npy",
            npy_bytes("<i8", false, &[2], &[0; 16]),
            "must be float16, float32 or float64, not int64",
        ),
        (
            "huge.npy",
            npy_bytes(
                "<f8",
                false,
                &[3],
                &[&1f64.to_le_bytes()[..], &(-1e300f64).to_le_bytes(), &[0; 8]].concat(),
            ),
            "-1e300 at index 1 does not fit in float32",
        ),
    ];
    for (name, bytes, problem) in cases {
        write_file(&s, name, &bytes);
        assert_refused(&s, &["softmax", "--input", name, "--output", "y.npy"], &[name, problem]);
    }
}

#[test]
fn an_output_that_is_also_an_input_is_refused_and_the_input_kept() {
    let s = cross_entropy_inputs("same_file");
    let before = std::fs::read(s.path("x.npy")).unwrap();
    assert_refused(
        &s,
        &["softmax", "--input", "x.npy", "--output", "x.npy"],
        &["x.npy", "is also the input"],
    );
    assert_refused(
        &s,
        &["softmax", "--input", "x.npy", "--output", "./x.npy"],
        &["x.npy", "is also the input"],
    );
    std::fs::create_dir(s.path("sub")).unwrap();
    assert_refused(&s, &["softmax", "--input", "x.npy", "--output", "sub/../x.npy"], &["is also the input"]);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(s.path("x.npy"), s.path("link.npy")).unwrap();
        assert_refused(
            &s,
            &["softmax", "--input", "x.npy", "--output", "link.npy"],
            &["link.npy", "is also"],
        );
        std::fs::hard_link(s.path("x.npy"), s.path("hard.npy")).unwrap();
        assert_refused(
            &s,
            &["softmax", "--input", "x.npy", "--output", "hard.npy"],
            &["hard.npy", "is also"],
        );
    }
    assert_eq!(std::fs::read(s.path("x.npy")).unwrap(), before, "the input was changed");
    let targets = std::fs::read(s.path("t.npy")).unwrap();
    let mut args = cross_entropy_args("t.npy", &["--weight", "w.npy"]);
    args[6] = "t.npy";
    assert_refused(&s, &args, &["t.npy", "is also the input"]);
    args[6] = "l.npy";
    args[8] = "w.npy";
    assert_refused(&s, &args, &["w.npy", "is also the input"]);
    args[8] = "x.npy";
    assert_refused(&s, &args, &["x.npy", "is also the input"]);
    assert_eq!(std::fs::read(s.path("t.npy")).unwrap(), targets, "the targets were changed");
}

#[test]
fn a_0d_softmax_input_is_refused() {
    let s = Scratch::new("zero_d");
    write_f32(&s, "scalar.npy", &[], &[1.0]);
    assert_refused(&s, &["softmax", "--input", "scalar.npy", "--output", "y.npy"], &["scalar.npy", "0-d"]);
}

/// Logits (4, 3), int64 targets, and a weight of 3, for the cross-entropy refusals.
fn cross_entropy_inputs(test: &str) -> Scratch {
    let s = Scratch::new(test);
    write_f32(&s, "x.npy", &[4, 3], &[0.5; 12]);
    write_i64(&s, "t.npy", &[0, 1, 2, 0]);
    write_f32(&s, "w.npy", &[3], &[1.0, 2.0, 3.0]);
    s
}

fn cross_entropy_args<'a>(targets: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["cross-entropy", "--logits", "x.npy", "--targets", targets, "--loss", "l.npy"];
    args.extend(["--grad", "g.npy"]);
    args.extend(extra);
    args
}

#[test]
fn mismatched_cross_entropy_shapes_are_refused() {
    let s = cross_entropy_inputs("ce_shapes");
    write_i64(&s, "t5.npy", &[0, 1, 2, 0, 1]);
    assert_refused(&s, &cross_entropy_args("t5.npy", &[]), &["t5.npy", "(5,)", "(4,)"]);
    write_f32(&s, "p.npy", &[4, 2], &[0.5; 8]);
    assert_refused(&s, &cross_entropy_args("p.npy", &[]), &["p.npy", "(4, 2)", "(4, 3)"]);
    write_f32(&s, "p1.npy", &[4], &[0.5; 4]);
    assert_refused(&s, &cross_entropy_args("p1.npy", &[]), &["p1.npy", "probability", "(4, 3)"]);
    write_f32(&s, "w4.npy", &[4], &[1.0; 4]);
    assert_refused(&s, &cross_entropy_args("t.npy", &["--weight", "w4.npy"]), &["w4.npy", "(4,)", "(3,)"]);
    write_i64(&s, "wi.npy", &[1, 1, 1]);
    assert_refused(&s, &cross_entropy_args("t.npy", &["--weight", "wi.npy"]), &["wi.npy", "int64"]);
    // 1-D logits are one sample: their class target is 0-d, not (4,).
    write_f32(&s, "x1.npy", &[12], &[0.5; 12]);
    let mut args = cross_entropy_args("t.npy", &[]);
    args[2] = "x1.npy";
    assert_refused(&s, &args, &["t.npy", "x1.npy", "(4,)", "()"]);
    // (N, C, d1) logits take (N, d1) class targets.
    write_f32(&s, "x3.npy", &[2, 3, 2], &[0.5; 12]);
    args[2] = "x3.npy";
    assert_refused(&s, &args, &["t.npy", "x3.npy", "(4,)", "(2, 2)"]);
    write_f32(&s, "x0.npy", &[], &[0.5]);
    args[2] = "x0.npy";
    assert_refused(&s, &args, &["x0.npy", "0-d"]);
}

/// Class indices saved as floats (all whole numbers) are refused with the cast to integers
/// named, by both losses; floats of the logits' shape are still probabilities.
#[test]
fn float_class_indices_are_refused_naming_the_cast() {
    let s = cross_entropy_inputs("ce_float_classes");
    write_f64(&s, "tf.npy", &[4], &[0.0, 1.0, 2.0, -100.0]);
    assert_refused(
        &s,
        &cross_entropy_args("tf.npy", &[]),
        &["tf.npy", "float64", "integers", "astype(np.int64)"],
    );
    write_f32(&s, "tf5.npy", &[5], &[0.0, 1.0, 2.0, 0.0, 1.0]);
    assert_refused(
        &s,
        &cross_entropy_args("tf5.npy", &[]),
        &["tf5.npy", "float32", "astype(np.int64)", "(4,)"],
    );
    write_f32(&s, "h.npy", &[2, 3], &[0.5; 6]);
    write_f32(&s, "cw.npy", &[5, 3], &[0.25; 15]);
    write_f32(&s, "lt.npy", &[2], &[4.0, 0.0]);
    let args = ["linear-cross-entropy", "--hidden", "h.npy", "--classifier", "cw.npy", "--targets", "lt.npy"];
    let mut args = args.to_vec();
    args.extend(["--loss", "l.npy"]);
    assert_refused(&s, &args, &["lt.npy", "float32", "astype(np.int64)"]);
}

#[test]
fn out_of_range_targets_are_refused() {
    let s = cross_entropy_inputs("ce_targets");
    write_i64(&s, "t7.npy", &[0, 7, 2, 0]);
    assert_refused(&s, &cross_entropy_args("t7.npy", &[]), &["t7.npy", "target 7 in row 1"]);
    write_i32(&s, "tneg.npy", &[0, 1, -3, 0]);
    assert_refused(&s, &cross_entropy_args("tneg.npy", &[]), &["tneg.npy", "target -3 in row 2"]);
    // -1 is a class error unless it is the ignore index.
    write_i32(&s, "tm1.npy", &[0, 1, -1, 0]);
    assert_refused(&s, &cross_entropy_args("tm1.npy", &["--ignore-index", "5"]), &["tm1.npy", "target -1"]);
    write_f32(&s, "pneg.npy", &[4, 3], &[0.5, -0.5, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
    assert_refused(&s, &cross_entropy_args("pneg.npy", &[]), &["pneg.npy", "row 0, class 1"]);
}

#[test]
fn bad_option_values_are_refused() {
    let s = cross_entropy_inputs("ce_options");
    let cases: [(&[&str], &[&str]); 5] = [
        (&["--label-smoothing", "2"], &["--label-smoothing", "[0, 1]"]),
        (&["--label-smoothing", "-0.5"], &["--label-smoothing", "[0, 1]"]),
        (&["--reduction", "foo"], &["--reduction", "'foo'", "mean, sum, none"]),
        (&["--ignore-index", "abc"], &["--ignore-index", "'abc'"]),
        (&["--bogus"], &["--bogus"]),
    ];
    for (extra, expected) in cases {
        assert_refused(&s, &cross_entropy_args("t.npy", extra), expected);
    }
    let mut missing = cross_entropy_args("t.npy", &[]);
    missing.drain(3..5);
    assert_refused(&s, &missing, &["--targets"]);
    assert_refused(
        &s,
        &["softmax", "--input", "x.npy", "--output", "y.npy", "--backend", "glide"],
        &["--backend"],
    );
}

#[test]
fn unwritable_outputs_leave_nothing_behind() {
    let s = cross_entropy_inputs("ce_outputs");
    // The loss's temporary file is made before the gradient's path fails: it must go too.
    let mut args = cross_entropy_args("t.npy", &[]);
    args[8] = "no-such-dir/g.npy";
    assert_refused(&s, &args, &["no-such-dir/g.npy", "cannot create"]);
    std::fs::create_dir(s.path("out")).unwrap();
    let mut args = cross_entropy_args("t.npy", &[]);
    args[6] = "out";
    assert_refused(&s, &args, &["out", "directory"]);
    let mut args = cross_entropy_args("t.npy", &[]);
    args[8] = "l.npy";
    assert_refused(&s, &args, &["l.npy", "same file"]);
    assert_refused(&s, &["softmax", "--input", "x.npy", "--output", "missing/y.npy"], &["missing/y.npy"]);
}

#[test]
fn an_adapter_that_is_not_there_is_refused() {
    let s = cross_entropy_inputs("no_adapter");
    let name = "no-such-adapter-anywhere";
    assert_refused(&s, &["softmax", "--input", "x.npy", "--output", "y.npy", "--adapter", name], &[name]);
}

#[test]
fn bench_redraws_an_earlier_runs_chart_without_measuring() {
    let s = Scratch::new("bench_from_json");
    let record = |op: &str, kernel: &str, pct: f64| {
        format!(
            "{{\"op\": \"{op}\", \"kernel\": \"{kernel}\", \"rows\": 8, \"cols\": 16, \"median_ms\": 1.5, \"gbps\": 2.0, \
             \"roofline_pct\": {pct}, \"adapter\": \"test adapter\", \"backend\": \"Vulkan\", \"driver\": \"d\", \
             \"clock\": \"gpu timestamps\", \"copy_gbps\": 4.0, \"exp_copy_gbps\": null}}"
        )
    };
    let json = format!("[{}, {}]", record("softmax", "fused", 50.0), record("softmax", "unfused", 20.0));
    write_file(&s, "run.json", json.as_bytes());
    let stdout = run_ok(&s, &["bench", "--from-json", "run.json", "--svg", "chart.svg"]);
    assert!(stdout.contains("| softmax | float32 | 8x16 | fused |"), "{stdout}");
    assert!(stdout.contains("bench: wrote chart.svg"), "{stdout}");
    let svg = std::fs::read_to_string(s.path("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("test adapter") && svg.contains("8x16"), "{svg}");
    assert_refused(
        &s,
        &["bench", "--from-json", "run.json", "--svg", "run.json"],
        &["run.json", "is also the input"],
    );
    write_file(&s, "bad.json", b"[{\"op\": \"softmax\"}]");
    assert_refused(&s, &["bench", "--from-json", "bad.json"], &["bad.json", "not a benchmark report"]);
}

/// Reads a float16 C-order `.npy` the tool wrote.
fn read_f16(scratch: &Scratch, name: &str) -> (Vec<usize>, Vec<half::f16>) {
    let bytes = std::fs::read(scratch.path(name)).unwrap();
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f2'"), "{header:?}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> =
        shape_text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let data =
        bytes[10 + header_len..].chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]])).collect();
    (shape, data)
}

#[test]
fn the_dtype_flag_runs_in_16_bit_storage() {
    let s = Scratch::new("dtype");
    let x = SeededRng::new(9).logits(5 * 31, 6.0);
    write_f32(&s, "x.npy", &[5, 31], &x);
    let shape = Shape::new(5, 31);
    // bf16: inputs rounded, output as float32 holding bf16 values exactly.
    let stdout = run_ok(&s, &["softmax", "--input", "x.npy", "--output", "y.npy", "--dtype", "bf16"]);
    assert_eq!(stdout, "softmax: wrote y.npy (float32, shape (5, 31))\n");
    let (_, y) = read_f32(&s, "y.npy");
    assert!(y.iter().all(|&v| half::bf16::from_f32(v).to_f32() == v), "not bf16 values");
    let rounded: Vec<half::bf16> = x.iter().map(|&v| half::bf16::from_f32(v)).collect();
    let want = reference::softmax(&rounded, shape).unwrap();
    assert_close("bf16 softmax", &y, &want, Tolerance::SOFTMAX.for_dtype(wgpu_softmax::DType::BF16));
    // f16: written as float16; and a float16 input means f16 unless told otherwise.
    let stdout = run_ok(&s, &["softmax", "--input", "x.npy", "--output", "h.npy", "--dtype", "f16", "--log"]);
    assert_eq!(stdout, "log-softmax: wrote h.npy (float16, shape (5, 31))\n");
    let (shape_h, h) = read_f16(&s, "h.npy");
    assert_eq!(shape_h, [5, 31]);
    let halves: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
    let want = reference::log_softmax(&halves, shape).unwrap();
    let h32: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
    assert_close("f16 log-softmax", &h32, &want, Tolerance::LOG_SOFTMAX.for_dtype(wgpu_softmax::DType::F16));
    let bytes: Vec<u8> = halves.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_file(&s, "xh.npy", &npy_bytes("<f2", false, &[5, 31], &bytes));
    let stdout = run_ok(&s, &["softmax", "--input", "xh.npy", "--output", "yh.npy"]);
    assert!(stdout.contains("(float16, shape (5, 31))"), "{stdout}");
    let stdout = run_ok(&s, &["softmax", "--input", "xh.npy", "--output", "yf.npy", "--dtype", "f32"]);
    assert!(stdout.contains("(float32, shape (5, 31))"), "{stdout}");
    // The cross-entropy: the loss stays float32, the gradient is in the storage type.
    let targets: Vec<i64> = (0..5).map(|r| r * 6).collect();
    write_i64(&s, "t.npy", &targets);
    let stdout = run_ok(
        &s,
        &[
            "cross-entropy",
            "--logits",
            "x.npy",
            "--targets",
            "t.npy",
            "--loss",
            "l.npy",
            "--grad",
            "g.npy",
            "--dtype",
            "bf16",
        ],
    );
    assert_eq!(stdout, "cross-entropy: wrote l.npy (float32, shape ()) and g.npy (float32, shape (5, 31))\n");
    let input = CrossEntropyInput::new(&rounded, shape, Targets::I64(&targets));
    let want = reference::cross_entropy(&CrossEntropy::new(), &input).unwrap();
    let (_, loss) = read_f32(&s, "l.npy");
    assert_close("bf16 loss", &loss, &want.loss, Tolerance::CROSS_ENTROPY_LOSS);
    let (_, grad) = read_f32(&s, "g.npy");
    assert_close(
        "bf16 grad",
        &grad,
        &want.grad.unwrap(),
        Tolerance::CROSS_ENTROPY_GRAD.for_dtype(wgpu_softmax::DType::BF16),
    );
    assert_refused(
        &s,
        &["softmax", "--input", "x.npy", "--output", "z.npy", "--dtype", "f64"],
        &["--dtype", "'f64'"],
    );
}

#[test]
fn bench_linear_quick_measures_both_kernels_and_they_agree() {
    let s = Scratch::new("bench_linear");
    for (pass, extra, file) in
        [("forward+backward", None, "linear.json"), ("forward", Some("--forward"), "forward.json")]
    {
        let mut args = vec!["bench", "--linear", "--quick", "--json", file];
        args.extend(extra);
        let stdout = run_ok(&s, &args);
        assert!(stdout.contains(&format!("512x64x8192 {pass}: fused peak memory")), "{stdout}");
        assert!(stdout.contains(&format!("bench: wrote {file}")), "{stdout}");
        let json = std::fs::read_to_string(s.path(file)).unwrap();
        let losses: Vec<f64> = json
            .lines()
            .filter_map(|line| line.trim().strip_prefix("\"loss\": "))
            .map(|v| v.trim_end_matches(',').parse().unwrap())
            .collect();
        assert_eq!(losses.len(), 2, "{json}");
        // ln(8192) = 9.01 for uniform logits; the bench's spread puts the loss near 10.
        assert!(losses.iter().all(|l| (5.0..20.0).contains(l)), "{json}");
        assert!((losses[0] - losses[1]).abs() <= 1e-4 * losses[0], "{json}");
        assert!(json.contains("\"kernel\": \"fused\"") && json.contains("\"kernel\": \"unfused\""), "{json}");
        assert!(json.contains(&format!("\"pass\": \"{pass}\"")), "{json}");
    }
    assert_refused(&s, &["bench", "--runs", "2"], &["--linear"]);
    assert_refused(&s, &["bench", "--forward"], &["--linear"]);
}

/// The shape and values of an int64 `.npy` the tool wrote.
fn read_i64(scratch: &Scratch, name: &str) -> (Vec<usize>, Vec<i64>) {
    let bytes = std::fs::read(scratch.path(name)).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{name}");
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<i8'"), "{header:?}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> =
        shape_text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let data: Vec<i64> =
        bytes[10 + header_len..].chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{name}: {shape:?}");
    (shape, data)
}

/// `sample` with every filter: int64 ids (N, K) in each row's allowed set (the f64
/// reference), the library's draws for the same seed, float32 log-probabilities of the
/// reference; (N,) without --num-samples; greedy; refusals naming the file or option.
#[test]
fn sample_draws_from_the_reference_allowed_set() {
    let s = Scratch::new("sample");
    let (rows, cols) = (6, 40);
    let logits = SeededRng::new(71).logits(rows * cols, 3.0);
    write_f32(&s, "l.npy", &[rows, cols], &logits);
    let sampler = wgpu_softmax::Sampler {
        temperature: 0.7,
        top_k: 8,
        top_p: 0.9,
        min_p: 0.05,
        num_samples: 50,
        seed: 3,
    };
    run_ok(
        &s,
        &[
            "sample",
            "--logits",
            "l.npy",
            "--output",
            "ids.npy",
            "--num-samples",
            "50",
            "--temperature",
            "0.7",
            "--top-k",
            "8",
            "--top-p",
            "0.9",
            "--min-p",
            "0.05",
            "--seed",
            "3",
            "--logprobs",
            "lp.npy",
        ],
    );
    let shape = Shape::new(rows, cols);
    let expected = reference::sample_distribution(&logits, shape, &sampler).unwrap();
    let (ids_shape, ids) = read_i64(&s, "ids.npy");
    assert_eq!(ids_shape, vec![rows, 50]);
    let (lp_shape, lp) = read_f32(&s, "lp.npy");
    assert_eq!(lp_shape, vec![rows, 50]);
    for (at, &id) in ids.iter().enumerate() {
        let p = expected[at / 50].as_ref().unwrap()[usize::try_from(id).unwrap()];
        assert!(p > 0.0, "draw {at}: token {id} is filtered out");
        assert!((f64::from(lp[at]) - p.ln()).abs() < 1e-3, "draw {at}: {} vs {}", lp[at], p.ln());
    }
    // The library's draws with the same seed.
    let ctx = wgpu_softmax::Context::new().unwrap();
    assert_eq!(ids, sampler.run(&ctx, &logits, shape, false).unwrap().ids);
    // One draw per row without --num-samples; greedy is the argmax.
    run_ok(&s, &["sample", "--logits", "l.npy", "--output", "one.npy", "--temperature", "0"]);
    let (one_shape, one) = read_i64(&s, "one.npy");
    assert_eq!(one_shape, vec![rows]);
    for (row, &id) in one.iter().enumerate() {
        let values = &logits[row * cols..(row + 1) * cols];
        let argmax = (0..cols).fold(0, |best, i| if values[i] > values[best] { i } else { best });
        assert_eq!(id, argmax as i64, "row {row}");
    }
    let mut bad = logits.clone();
    bad[3 * cols + 7] = f32::NAN;
    write_f32(&s, "bad.npy", &[rows, cols], &bad);
    assert_refused(&s, &["sample", "--logits", "bad.npy", "--output", "x.npy"], &["bad.npy", "row 3"]);
    assert_refused(&s, &["sample", "--logits", "l.npy", "--output", "x.npy", "--top-p", "0"], &["top_p"]);
}

/// `sample` with per-row settings from `.npy` files (float64 temperatures, int32 top-k,
/// float32 top-p and min-p): every draw in its row's allowed set under the f64 reference
/// with those settings, the library's draws for the same seed; a row whose setting is out
/// of range is refused naming the row; a file of the wrong shape or type is refused
/// naming the file.
#[test]
fn sample_takes_per_row_settings_from_npy_files() {
    let s = Scratch::new("sample_per_row");
    let (rows, cols, draws) = (4, 30, 40);
    let logits = SeededRng::new(73).logits(rows * cols, 3.0);
    write_f32(&s, "l.npy", &[rows, cols], &logits);
    let temperature = [0.7_f64, 0.0, 1.2, 1.0];
    let top_k = [5_i32, 0, 0, 3];
    let top_p = [1.0_f32, 0.5, 0.8, 1.0];
    let min_p = [0.0_f32, 0.0, 0.05, 0.0];
    let bytes: Vec<u8> = temperature.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_file(&s, "t.npy", &npy_bytes("<f8", false, &[rows], &bytes));
    let bytes: Vec<u8> = top_k.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_file(&s, "k.npy", &npy_bytes("<i4", false, &[rows], &bytes));
    write_f32(&s, "p.npy", &[rows], &top_p);
    write_f32(&s, "m.npy", &[rows], &min_p);
    let per_row = [
        "--temperature-per-row",
        "t.npy",
        "--top-k-per-row",
        "k.npy",
        "--top-p-per-row",
        "p.npy",
        "--min-p-per-row",
        "m.npy",
    ];
    let mut args =
        vec!["sample", "--logits", "l.npy", "--output", "ids.npy", "--num-samples", "40", "--seed", "5"];
    args.extend(per_row);
    run_ok(&s, &args);
    let settings = wgpu_softmax::RowSettings {
        temperature: Some(temperature.iter().map(|&t| t as f32).collect()),
        top_k: Some(top_k.iter().map(|&k| k as u32).collect()),
        top_p: Some(top_p.to_vec()),
        min_p: Some(min_p.to_vec()),
    };
    let sampler = wgpu_softmax::Sampler { num_samples: draws, seed: 5, ..wgpu_softmax::Sampler::default() };
    let shape = Shape::new(rows, cols);
    let expected = reference::sample_distribution_with_settings(&logits, shape, &sampler, &settings).unwrap();
    let (ids_shape, ids) = read_i64(&s, "ids.npy");
    assert_eq!(ids_shape, vec![rows, draws]);
    for (at, &id) in ids.iter().enumerate() {
        let p = expected[at / draws].as_ref().unwrap()[usize::try_from(id).unwrap()];
        assert!(p > 0.0, "draw {at}: token {id} is filtered out");
    }
    // Row 1 is greedy.
    assert!(expected[1].as_ref().unwrap().contains(&1.0));
    let ctx = wgpu_softmax::Context::new().unwrap();
    assert_eq!(ids, sampler.run_with_settings(&ctx, &logits, shape, false, &settings).unwrap().ids);
    // Row 2's top-p out of range: refused, naming the row.
    write_f32(&s, "bad_p.npy", &[rows], &[1.0, 0.5, 1.5, 1.0]);
    assert_refused(
        &s,
        &["sample", "--logits", "l.npy", "--output", "x.npy", "--top-p-per-row", "bad_p.npy"],
        &["per-row setting out of range", "row 2"],
    );
    write_f32(&s, "short.npy", &[rows - 1], &[1.0, 1.0, 1.0]);
    assert_refused(
        &s,
        &["sample", "--logits", "l.npy", "--output", "x.npy", "--temperature-per-row", "short.npy"],
        &["short.npy", "(4,)"],
    );
    assert_refused(
        &s,
        &["sample", "--logits", "l.npy", "--output", "x.npy", "--top-k-per-row", "p.npy"],
        &["p.npy", "integers"],
    );
}

/// `sample --dim 1` of (2, V, 3) logits: ids (2, 3, K) in C order of the positions off the
/// class axis, the library's draws for the same strided shape, each in its row's allowed
/// set; the masks in the logits' own (2, V, 3) layout, as the reference gives them; a
/// `--dim` past the axes refused naming it.
#[test]
fn sample_takes_the_class_axis_anywhere() {
    let s = Scratch::new("sample-dim");
    let (outer, cols, inner, draws) = (2, 33, 3, 20);
    let logits = SeededRng::new(79).logits(outer * cols * inner, 3.0);
    write_f32(&s, "l.npy", &[outer, cols, inner], &logits);
    let args: Vec<&str> = "sample --logits l.npy --output ids.npy --dim 1 --num-samples 20 --top-k 9 \
                           --top-p 0.9 --seed 11 --probs p.npy --masked-logits m.npy"
        .split_whitespace()
        .collect();
    run_ok(&s, &args);
    let sampler = wgpu_softmax::Sampler {
        top_k: 9,
        top_p: 0.9,
        num_samples: draws,
        seed: 11,
        ..wgpu_softmax::Sampler::default()
    };
    let shape = Shape::with_inner(outer, cols, inner);
    let expected = reference::sample_distribution(&logits, shape, &sampler).unwrap();
    let (ids_shape, ids) = read_i64(&s, "ids.npy");
    assert_eq!(ids_shape, vec![outer, inner, draws]);
    for (at, &id) in ids.iter().enumerate() {
        let p = expected[at / draws].as_ref().unwrap()[usize::try_from(id).unwrap()];
        assert!(p > 0.0, "draw {at}: token {id} is filtered out");
    }
    let ctx = wgpu_softmax::Context::new().unwrap();
    assert_eq!(ids, sampler.run(&ctx, &logits, shape, false).unwrap().ids);
    let (probs, masked) =
        reference::sample_masks(&logits, shape, &sampler, &wgpu_softmax::RowSettings::default()).unwrap();
    let (p_shape, p) = read_f32(&s, "p.npy");
    assert_eq!(p_shape, vec![outer, cols, inner]);
    let c = compare(&p, &probs, Tolerance { atol: 1e-6, rtol: 1e-4 });
    assert!(c.passed(), "probabilities: {c}");
    let (_, m) = read_f32(&s, "m.npy");
    for (at, (&got, &want)) in m.iter().zip(&masked).enumerate() {
        assert_eq!(f64::from(got), want, "masked logit {at}");
    }
    assert_refused(&s, &["sample", "--logits", "l.npy", "--output", "x.npy", "--dim", "3"], &["--dim 3"]);
}

#[test]
fn sample_writes_the_masks_the_reference_gives() {
    let s = Scratch::new("sample-masks");
    let (rows, cols) = (5, 37);
    let logits = SeededRng::new(73).logits(rows * cols, 3.0);
    write_f32(&s, "l.npy", &[rows, cols], &logits);
    let sampler =
        wgpu_softmax::Sampler { top_k: 6, top_p: 0.8, temperature: 0.9, ..wgpu_softmax::Sampler::default() };
    let args = [
        "sample",
        "--logits",
        "l.npy",
        "--output",
        "ids.npy",
        "--top-k",
        "6",
        "--top-p",
        "0.8",
        "--temperature",
        "0.9",
        "--probs",
        "p.npy",
        "--masked-logits",
        "m.npy",
    ];
    run_ok(&s, &args);
    let shape = Shape::new(rows, cols);
    let (probs, masked) =
        reference::sample_masks(&logits, shape, &sampler, &wgpu_softmax::RowSettings::default()).unwrap();
    let (p_shape, p) = read_f32(&s, "p.npy");
    assert_eq!(p_shape, vec![rows, cols]);
    let c = compare(&p, &probs, Tolerance { atol: 1e-6, rtol: 1e-4 });
    assert!(c.passed(), "probabilities: {c}");
    let (m_shape, m) = read_f32(&s, "m.npy");
    assert_eq!(m_shape, vec![rows, cols]);
    for (at, (&got, &want)) in m.iter().zip(&masked).enumerate() {
        assert_eq!(f64::from(got), want, "masked logit {at}");
    }
    // Each output a file of its own.
    assert_refused(
        &s,
        &["sample", "--logits", "l.npy", "--output", "x.npy", "--probs", "x.npy"],
        &["--probs", "--output"],
    );
}

// ---------------------------------------------------------------------------------------
// The GPU report.

/// `value[key]` as a number that must be finite and positive (a measured time or rate).
fn positive(value: &serde_json::Value, key: &str) -> f64 {
    let number = value[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {value}"));
    assert!(number.is_finite() && number > 0.0, "{key} = {number} in {value}");
    number
}

#[test]
fn bench_report_writes_every_section_as_markdown_and_json() {
    let scratch = Scratch::new("bench-report");
    let stdout = run_ok(&scratch, &["bench", "--report", "out", "--tiny"]);
    assert!(stdout.contains("report.md") && stdout.contains("report.json"), "{stdout}");
    let markdown = std::fs::read_to_string(scratch.path("out").join("report.md")).unwrap();
    for heading in ["## Row ops", "## Linear cross-entropy", "## Sampling", "## PyTorch on the same shapes"] {
        assert!(markdown.contains(heading), "no {heading:?} in:\n{markdown}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path("out").join("report.json")).unwrap())
            .unwrap();
    positive(&json, "copy_gbps");
    positive(&json, "exp_copy_gbps");
    // The tiny configuration: softmax and the cross-entropy (mean, gradient) on 4 x 100.
    let rows = json["rows"].as_array().unwrap();
    let ops: Vec<&str> = rows.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["softmax", "cross_entropy"]);
    for record in rows {
        for key in ["first_ms", "median_ms", "p90_ms", "gbps", "copy_pct"] {
            positive(record, key);
        }
        assert!(positive(record, "p90_ms") >= positive(record, "median_ms"), "{record}");
        assert!(!record["strategy"].as_str().unwrap().is_empty(), "{record}");
        assert!(record["workgroup_size"].as_u64().unwrap() > 0, "{record}");
        let dispatches = record["dispatches"].as_u64().unwrap();
        assert!(dispatches > 0, "{record}");
        assert_eq!(Some(dispatches), record["dispatches_planned"].as_u64(), "{record}");
    }
    let linear = json["linear"]["records"].as_array().unwrap();
    let kernels: Vec<&str> = linear.iter().map(|r| r["kernel"].as_str().unwrap()).collect();
    assert_eq!(kernels, ["fused", "unfused"]);
    for record in linear {
        positive(record, "median_ms");
        positive(record, "gflops");
        positive(record, "loss");
    }
    let sampling = json["sampling"]["records"].as_array().unwrap();
    assert!(!sampling.is_empty());
    for record in sampling {
        positive(record, "median_ms");
    }
    // PyTorch's side either ran (on a machine with CUDA) or says why not.
    let torch = &json["torch"];
    let note = torch["note"].as_str().unwrap();
    if torch["ran"].as_bool().unwrap() {
        assert!(!torch["results"].as_array().unwrap().is_empty(), "{torch}");
    } else {
        assert!(note.starts_with("skipped") || note.starts_with("failed"), "{note}");
        assert!(markdown.contains(note), "the Markdown lacks {note:?}");
    }
    assert_eq!(json["errors"].as_array().map(Vec::len), Some(0), "{}", json["errors"]);
    for section in ["roofline", "rows", "linear", "sampling"] {
        positive(&json["seconds"], section);
    }
}

#[test]
fn bench_report_puts_the_pytorch_side_beside_ours_through_a_stand_in_torch() {
    // The stand-in (every op a no-op, each CUDA event 1 ms after the last) runs the real
    // compare.py and the report's reading of its output, without CUDA. Without python3
    // the report must say it skipped.
    let scratch = Scratch::new("bench-report-torch");
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wgpu-softmax-bench/torch/fake");
    let output = Command::new(env!("CARGO_BIN_EXE_wgpu-softmax"))
        .args(["bench", "--report", "out", "--tiny"])
        .current_dir(&scratch.dir)
        .env("PYTHONPATH", &fake)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path("out").join("report.json")).unwrap())
            .unwrap();
    let torch = &json["torch"];
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(torch["note"].as_str().unwrap().starts_with("skipped"), "{torch}");
        return;
    }
    assert_eq!(torch["ran"], true, "{torch}");
    assert_eq!(torch["versions"]["torch"], "fake", "{torch}");
    let results = torch["results"].as_array().unwrap();
    let ops: Vec<&str> = results.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["softmax", "cross_entropy", "linear_cross_entropy"]);
    for result in results {
        assert!((result["median_ms"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{result}");
        positive(result, "ours_ms");
    }
    let markdown = std::fs::read_to_string(scratch.path("out").join("report.md")).unwrap();
    assert!(
        markdown.contains("| torch | linear_cross_entropy | mean grad | float32 | 16 x 8 x 64 | 1.0000 |"),
        "{markdown}"
    );
}
