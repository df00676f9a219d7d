//! The ops on Burn tensors against the library's f64 reference and against Burn's own
//! composed ops, on the adapter the environment selects (lavapipe or llvmpipe GL in CI).
//! Without an adapter every test fails.
//!
//! Values and gradients in f32, and in f16 where Burn's backend has f16 kernels on the
//! adapter (lavapipe yes, llvmpipe GL no). Burn's wgpu backend compiles WGSL, which has no
//! bf16, so Burn runs no kernel on bf16 tensors (`supports_dtype(BF16)` is false): bf16
//! tensors are uploaded and read back by Burn, and only this crate's forward ops run on
//! them, checked against the reference; a tracked bf16 tensor is a typed error.
//!
//! Every output the crate allocates is filled with NaN before its op runs, so each
//! comparison also checks that the op wrote every element.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use std::io::Write as _;
use std::sync::OnceLock;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{DType, Device, Int, Tensor, TensorData, activation};
use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::{SeededRng, compare};
use wgpu_softmax::{
    CrossEntropy, CrossEntropyInput, Distill, DistillInput, DistillReduction, LinearCrossEntropy,
    LinearCrossEntropyInput, LinearGradients, LinearShape, Sampler, Shape, Targets, reference,
};
use wgpu_softmax_burn::{
    BurnDevice, CrossEntropyOptions, Error, Reduction, cross_entropy, distill, linear_cross_entropy, sample,
};

/// The device every test shares. Without an adapter, the test fails with the message
/// that says what to install; it never passes.
fn shared() -> &'static BurnDevice {
    static SHARED: OnceLock<BurnDevice> = OnceLock::new();
    SHARED.get_or_init(|| match BurnDevice::new() {
        Ok(shared) => {
            // Every output the crate allocates starts as NaN (or -1 ids): each comparison
            // against the reference then also checks that every element was written.
            wgpu_softmax_burn::poison_new_outputs(true);
            let _ = writeln!(std::io::stderr(), "Burn tests run on: {}", shared.context().describe());
            shared
        }
        Err(error) => panic!("GPU tests need an adapter: {error}"),
    })
}

/// Seeded from the test's own seed, or `WGPU_SOFTMAX_SEED` to replay.
fn rng(seed: u64) -> SeededRng {
    SeededRng::new(std::env::var("WGPU_SOFTMAX_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(seed))
}

/// A tensor of `values` (rounded on the host to `dtype`) on `device`.
fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], dtype: DType, device: &Device) -> Tensor<D> {
    Tensor::<D>::from_data(TensorData::new(values, shape), (device, dtype))
}

/// The tensor's values, widened to f32 on the host (exactly, from f16 or bf16).
fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// The dtypes whose gradients the tests check: f32, and f16 where Burn has f16 kernels.
fn trained_dtypes() -> Vec<DType> {
    let device = shared().device();
    let mut dtypes = vec![DType::F32];
    if device.supports_dtype(DType::F16) {
        dtypes.push(DType::F16);
    } else {
        let _ = writeln!(std::io::stderr(), "Burn has no f16 kernels on this adapter: f16 not tested");
    }
    dtypes
}

fn targets(rng: &mut SeededRng, rows: usize, classes: usize, device: &Device) -> (Vec<i64>, Tensor<1, Int>) {
    let t: Vec<i64> = (0..rows).map(|_| rng.below(classes as u64) as i64).collect();
    let tensor = Tensor::<1, Int>::from_data(TensorData::new(t.clone(), [rows]), device);
    (t, tensor)
}

#[track_caller]
fn check(what: &str, actual: &[f32], expected: &[f64], tolerance: Tolerance) {
    let comparison = compare(actual, expected, tolerance);
    assert!(comparison.passed(), "{what}: {comparison}");
}

#[track_caller]
fn check_f32(what: &str, actual: &[f32], expected: &[f32], tolerance: Tolerance) {
    let expected: Vec<f64> = expected.iter().map(|&x| f64::from(x)).collect();
    check(what, actual, &expected, tolerance);
}

/// Tolerances for a result stored in `dtype`: the stated f32 ones, or the rounding of the
/// 16-bit type on top (a relative 2^-8 for bf16, 2^-11 for f16, each doubled, and Burn's
/// own f16 sums on the other side of a comparison with Burn).
fn tolerance(base: Tolerance, dtype: DType) -> Tolerance {
    match dtype {
        DType::BF16 => Tolerance { atol: base.atol.max(1e-4), rtol: 8e-3 },
        DType::F16 => Tolerance { atol: base.atol.max(1e-4), rtol: 4e-3 },
        _ => base,
    }
}

#[test]
fn softmax_and_log_softmax_values_and_gradients() {
    let device = shared().autodiff();
    let (rows, cols) = (5, 203);
    let mut rng = rng(26);
    for dtype in trained_dtypes() {
        for log in [false, true] {
            let what = format!("{}{dtype:?}", if log { "log_softmax " } else { "softmax " });
            let x = tensor(rng.logits(rows * cols, 4.0), [rows, cols], dtype, &device).require_grad();
            let r = tensor(rng.logits(rows * cols, 1.0), [rows, cols], dtype, &device);
            let xs = values(x.clone());
            let rs = values(r.clone());
            let y = if log {
                wgpu_softmax_burn::log_softmax(x.clone(), 1)
            } else {
                wgpu_softmax_burn::softmax(x.clone(), 1)
            }
            .unwrap();
            let dx = x.grad(&(y.clone() * r.clone()).sum().backward()).unwrap();
            let (y, dx) = (values(y), values(dx));

            // The reference, on the values as stored.
            let shape = Shape::new(rows, cols);
            let p = reference::softmax(&xs, shape).unwrap();
            let y_ref = if log { reference::log_softmax(&xs, shape).unwrap() } else { p.clone() };
            let mut dx_ref = vec![0.0; rows * cols];
            for row in 0..rows {
                let span = row * cols..(row + 1) * cols;
                let rr = &rs[span.clone()];
                let pr = &p[span.clone()];
                if log {
                    let sum: f64 = rr.iter().map(|&v| f64::from(v)).sum();
                    for (k, i) in span.enumerate() {
                        dx_ref[i] = f64::from(rr[k]) - pr[k] * sum;
                    }
                } else {
                    let dot: f64 = rr.iter().zip(pr).map(|(&v, &q)| f64::from(v) * q).sum();
                    for (k, i) in span.enumerate() {
                        dx_ref[i] = pr[k] * (f64::from(rr[k]) - dot);
                    }
                }
            }
            let y_tol = if log { Tolerance::LOG_SOFTMAX } else { Tolerance::SOFTMAX };
            check(&format!("{what} values vs reference"), &y, &y_ref, tolerance(y_tol, dtype));
            // The log-softmax's backward reads its saved output: in f16 that is off by up to
            // |y| 2^-11 (about 3e-3 at y = -6), which it multiplies by the row's sum of dy
            // (a few units here) times the probability.
            let grad_tol = match (log, dtype) {
                (true, DType::F16) => Tolerance { atol: 2e-3, rtol: 4e-3 },
                _ => tolerance(Tolerance::BACKWARD, dtype),
            };
            check(&format!("{what} gradient vs reference"), &dx, &dx_ref, grad_tol);

            // Burn's composed ops on a leaf of the same values.
            let x2 = tensor(xs.clone(), [rows, cols], dtype, &device).require_grad();
            let y2 =
                if log { activation::log_softmax(x2.clone(), 1) } else { activation::softmax(x2.clone(), 1) };
            let dx2 = x2.grad(&(y2.clone() * r).sum().backward()).unwrap();
            let loose = tolerance(Tolerance { atol: 1e-5, rtol: 1e-4 }, dtype);
            check_f32(&format!("{what} values vs Burn"), &y, &values(y2), loose);
            let grad_loose = Tolerance { atol: loose.atol.max(grad_tol.atol), rtol: loose.rtol };
            check_f32(&format!("{what} gradient vs Burn"), &dx, &values(dx2), grad_loose);
        }
    }
}

/// bf16: the forward ops on bf16 tensors Burn uploaded, against the reference; a tracked
/// bf16 tensor is refused, typed.
#[test]
fn bf16_forward_ops_match_the_reference() {
    let device = shared().device();
    let mut rng = rng(2631);
    let (rows, cols) = (5, 203);
    let x = tensor(rng.logits(rows * cols, 4.0), [rows, cols], DType::BF16, &device);
    let xs = values(x.clone());
    let shape = Shape::new(rows, cols);
    let y = values(wgpu_softmax_burn::softmax(x.clone(), 1).unwrap());
    check(
        "bf16 softmax",
        &y,
        &reference::softmax(&xs, shape).unwrap(),
        tolerance(Tolerance::SOFTMAX, DType::BF16),
    );
    let y = values(wgpu_softmax_burn::log_softmax(x.clone(), 1).unwrap());
    let expected = reference::log_softmax(&xs, shape).unwrap();
    check("bf16 log_softmax", &y, &expected, tolerance(Tolerance::LOG_SOFTMAX, DType::BF16));

    let mut ce_rng = rng.clone();
    for (op, options, weights) in ce_cases(cols, &mut ce_rng) {
        let (t, tt) = targets(&mut rng, rows, cols, &device);
        let options = match &weights {
            Some(w) => options.weight(tensor(w.clone(), [cols], DType::F32, &device)),
            None => options,
        };
        let loss = values(cross_entropy(x.clone(), tt, &options).unwrap());
        let mut input = CrossEntropyInput::new(&xs, shape, Targets::I64(&t));
        if let Some(w) = &weights {
            input = input.weight(w);
        }
        let expected = reference::cross_entropy(&op.gradient(wgpu_softmax::Gradient::Skip), &input).unwrap();
        check(
            &format!("bf16 {op:?} loss"),
            &loss,
            &expected.loss,
            tolerance(Tolerance::CROSS_ENTROPY_LOSS, DType::BF16),
        );
    }

    let (n, d, v) = (12, 24, 70);
    let h = tensor(rng.logits(n * d, 1.0), [n, d], DType::BF16, &device);
    let w = tensor(rng.logits(v * d, 0.5), [v, d], DType::BF16, &device);
    let (t, tt) = targets(&mut rng, n, v, &device);
    let loss =
        values(linear_cross_entropy(h.clone(), w.clone(), None, tt, &CrossEntropyOptions::new()).unwrap());
    let (hv, wv) = (values(h), values(w));
    let input = LinearCrossEntropyInput::new(&hv, &wv, LinearShape::new(n, d, v), Targets::I64(&t));
    let op = LinearCrossEntropy::new().gradients(LinearGradients::NONE);
    let expected = reference::linear_cross_entropy(&op, &input).unwrap();
    check(
        "bf16 linear loss",
        &loss,
        &expected.loss,
        tolerance(Tolerance::LINEAR_CROSS_ENTROPY_LOSS, DType::BF16),
    );

    let tracked = tensor(xs, [rows, cols], DType::BF16, &shared().autodiff()).require_grad();
    let err = wgpu_softmax_burn::softmax(tracked, 1).unwrap_err();
    assert!(matches!(err, Error::NoBurnKernels { .. }), "{err}");
}

#[test]
fn softmax_over_an_inner_dimension_matches_burn() {
    let device = shared().device();
    let mut rng = rng(261);
    let x = tensor(rng.logits(3 * 7 * 4, 3.0), [3, 7, 4], DType::F32, &device);
    let ours = values(wgpu_softmax_burn::softmax(x.clone(), 1).unwrap());
    check_f32("softmax over dim 1", &ours, &values(activation::softmax(x, 1)), Tolerance::SOFTMAX);
}

/// The options each cross-entropy case runs with, in the library's terms and this crate's.
fn ce_cases(
    classes: usize,
    rng: &mut SeededRng,
) -> Vec<(CrossEntropy, CrossEntropyOptions, Option<Vec<f32>>)> {
    let weights: Vec<f32> = (0..classes).map(|_| rng.uniform(0.5, 2.0)).collect();
    vec![
        (
            CrossEntropy::new().label_smoothing(0.1).ignore_index(3),
            CrossEntropyOptions::new().label_smoothing(0.1).ignore_index(3),
            Some(weights),
        ),
        (
            CrossEntropy::new().reduction(Reduction::Sum).z_loss(1e-3).softcap(5.0),
            CrossEntropyOptions::new().reduction(Reduction::Sum).z_loss(1e-3).softcap(5.0),
            None,
        ),
        (
            CrossEntropy::new().reduction(Reduction::None),
            CrossEntropyOptions::new().reduction(Reduction::None),
            None,
        ),
    ]
}

#[test]
fn cross_entropy_with_options_matches_the_reference() {
    let device = shared().autodiff();
    let (rows, cols) = (9, 157);
    let mut rng = rng(2626);
    for dtype in trained_dtypes() {
        for (op, options, weights) in ce_cases(cols, &mut rng) {
            let what = format!("cross-entropy {dtype:?} {op:?}");
            let x = tensor(rng.logits(rows * cols, 6.0), [rows, cols], dtype, &device).require_grad();
            let (mut t, _) = targets(&mut rng, rows, cols, &device);
            t[2] = 3; // a row of the ignored class where the case ignores it
            let tt = Tensor::<1, Int>::from_data(TensorData::new(t.clone(), [rows]), &device);
            let options = match &weights {
                Some(w) => options.weight(tensor(w.clone(), [cols], DType::F32, &device)),
                None => options,
            };
            let loss = cross_entropy(x.clone(), tt, &options).unwrap();
            // An upstream gradient: one random value per row for none, else a scalar.
            let upstream: Vec<f32> = (0..loss.dims()[0]).map(|_| rng.uniform(0.5, 1.5)).collect();
            let u = tensor(upstream.clone(), [upstream.len()], DType::F32, &device);
            let dx = x.grad(&(loss.clone() * u).sum().backward()).unwrap();

            let xs = values(x);
            let mut input = CrossEntropyInput::new(&xs, Shape::new(rows, cols), Targets::I64(&t));
            if let Some(w) = &weights {
                input = input.weight(w);
            }
            if op.get_reduction() == Reduction::None {
                input = input.grad_output(&upstream);
            }
            let expected = reference::cross_entropy(&op, &input).unwrap();
            check(
                &format!("{what} loss"),
                &values(loss),
                &expected.loss,
                tolerance(Tolerance::CROSS_ENTROPY_LOSS, dtype),
            );
            let mut grad_ref = expected.grad.unwrap();
            if op.get_reduction() != Reduction::None {
                grad_ref.iter_mut().for_each(|g| *g *= f64::from(upstream[0]));
            }
            check(
                &format!("{what} gradient"),
                &values(dx),
                &grad_ref,
                tolerance(Tolerance::CROSS_ENTROPY_GRAD, dtype),
            );
        }
    }
}

#[test]
fn cross_entropy_matches_burns_cross_entropy_loss() {
    let device = shared().autodiff();
    let (rows, cols) = (9, 157);
    let mut rng = rng(2627);
    for dtype in trained_dtypes() {
        let xs = rng.logits(rows * cols, 6.0);
        let (_, t) = targets(&mut rng, rows, cols, &device);
        let x = tensor(xs.clone(), [rows, cols], dtype, &device).require_grad();
        let loss = cross_entropy(x.clone(), t.clone(), &CrossEntropyOptions::new()).unwrap();
        let dx = x.grad(&loss.backward()).unwrap();
        let x2 = tensor(xs, [rows, cols], dtype, &device).require_grad();
        let loss2 = CrossEntropyLossConfig::new().init(&device).forward(x2.clone(), t);
        let dx2 = x2.grad(&loss2.backward()).unwrap();
        let tol = tolerance(Tolerance { atol: 1e-5, rtol: 1e-4 }, dtype);
        check_f32(&format!("{dtype:?} loss vs Burn"), &values(loss), &values(loss2), tol);
        check_f32(&format!("{dtype:?} gradient vs Burn"), &values(dx), &values(dx2), tol);
    }
}

#[test]
fn linear_cross_entropy_matches_the_reference_and_burn() {
    let device = shared().autodiff();
    let (n, d, v) = (12, 24, 70);
    let mut rng = rng(2628);
    for dtype in trained_dtypes() {
        let what = format!("linear cross-entropy {dtype:?}");
        let hs = rng.logits(n * d, 1.0);
        let ws = rng.logits(v * d, 0.5);
        let bs = rng.logits(v, 0.5);
        let h = tensor(hs.clone(), [n, d], dtype, &device).require_grad();
        let w = tensor(ws.clone(), [v, d], dtype, &device).require_grad();
        let b = tensor(bs.clone(), [v], dtype, &device).require_grad();
        let (t, tt) = targets(&mut rng, n, v, &device);
        let options = CrossEntropyOptions::new().label_smoothing(0.05);
        let loss = linear_cross_entropy(h.clone(), w.clone(), Some(b.clone()), tt.clone(), &options).unwrap();
        let grads = (loss.clone() * 1.5).backward();
        let (dh, dw, db) = (
            values(h.grad(&grads).unwrap()),
            values(w.grad(&grads).unwrap()),
            values(b.grad(&grads).unwrap()),
        );
        let loss = values(loss);

        let (hv, wv, bv) = (values(h), values(w), values(b));
        let op = LinearCrossEntropy::new().label_smoothing(0.05).gradients(LinearGradients::ALL);
        let input =
            LinearCrossEntropyInput::new(&hv, &wv, LinearShape::new(n, d, v), Targets::I64(&t)).bias(&bv);
        let expected = reference::linear_cross_entropy(&op, &input).unwrap();
        let scaled = |g: Option<Vec<f64>>| g.unwrap().into_iter().map(|x| x * 1.5).collect::<Vec<_>>();
        let grad_tol = tolerance(Tolerance::LINEAR_CROSS_ENTROPY_GRAD, dtype);
        check(
            &format!("{what} loss"),
            &loss,
            &expected.loss,
            tolerance(Tolerance::LINEAR_CROSS_ENTROPY_LOSS, dtype),
        );
        check(&format!("{what} dH"), &dh, &scaled(expected.grad_hidden), grad_tol);
        check(&format!("{what} dW"), &dw, &scaled(expected.grad_classifier), grad_tol);
        check(&format!("{what} db"), &db, &scaled(expected.grad_bias), grad_tol);

        // Burn's composed ops: the logits, then its cross-entropy loss with smoothing. In f32
        // only: Burn's f16 composition overflows here (its loss comes out near 2000).
        if dtype != DType::F32 {
            continue;
        }
        let h2 = tensor(hs, [n, d], dtype, &device).require_grad();
        let w2 = tensor(ws, [v, d], dtype, &device).require_grad();
        let b2 = tensor(bs, [v], dtype, &device).require_grad();
        let logits = h2.clone().matmul(w2.clone().transpose()) + b2.clone().unsqueeze::<2>();
        let loss2 =
            CrossEntropyLossConfig::new().with_smoothing(Some(0.05)).init(&device).forward(logits, tt);
        let grads2 = (loss2.clone() * 1.5).backward();
        let tol = tolerance(Tolerance { atol: 1e-5, rtol: 1e-3 }, dtype);
        check_f32(&format!("{what} loss vs Burn"), &loss, &values(loss2), tol);
        check_f32(&format!("{what} dH vs Burn"), &dh, &values(h2.grad(&grads2).unwrap()), tol);
        check_f32(&format!("{what} dW vs Burn"), &dw, &values(w2.grad(&grads2).unwrap()), tol);
        check_f32(&format!("{what} db vs Burn"), &db, &values(b2.grad(&grads2).unwrap()), tol);
    }
}

/// A small model whose graph runs Burn's ops and this crate's in turn; its gradients
/// equal those of the same graph in Burn's ops alone.
#[test]
fn ops_interleave_with_burn_ops_in_one_graph() {
    let device = shared().autodiff();
    let (n, d, v) = (16, 8, 33);
    let mut rng = rng(2629);
    let xs = rng.logits(n * d, 1.0);
    let w1s = rng.logits(d * d, 0.7);
    let w2s = rng.logits(d * v, 0.7);
    let (_, t) = targets(&mut rng, n, v, &device);
    let run = |fused: bool| {
        let x = tensor(xs.clone(), [n, d], DType::F32, &device).require_grad();
        let w1 = tensor(w1s.clone(), [d, d], DType::F32, &device).require_grad();
        let w2 = tensor(w2s.clone(), [d, v], DType::F32, &device).require_grad();
        let logits = activation::relu(x.clone().matmul(w1.clone())).matmul(w2.clone());
        let logp = if fused {
            wgpu_softmax_burn::log_softmax(logits, 1).unwrap()
        } else {
            activation::log_softmax(logits, 1)
        };
        let scaled = logp.clone() * 0.5 + logp.clone().exp();
        let ce = if fused {
            cross_entropy(scaled, t.clone(), &CrossEntropyOptions::new()).unwrap()
        } else {
            CrossEntropyLossConfig::new().init(&device).forward(scaled, t.clone())
        };
        let loss = ce * 2.0 + logp.mean();
        let grads = loss.clone().backward();
        [
            values(loss),
            values(x.grad(&grads).unwrap()),
            values(w1.grad(&grads).unwrap()),
            values(w2.grad(&grads).unwrap()),
        ]
    };
    let (fused, burn) = (run(true), run(false));
    for ((what, ours), theirs) in ["loss", "dx", "dw1", "dw2"].iter().zip(&fused).zip(&burn) {
        check_f32(what, ours, theirs, Tolerance { atol: 1e-5, rtol: 1e-4 });
    }
}

/// A tensor that Burn's memory pool placed at a non-zero offset of a shared buffer is
/// bound where it lies.
#[test]
fn a_tensor_at_an_offset_in_burns_pool() {
    let device = shared().device();
    let (rows, cols) = (4, 96);
    let mut rng = rng(2630);
    let mut keep = Vec::new();
    let (x, xs) = loop {
        let xs = rng.logits(rows * cols, 3.0);
        let x = tensor(xs.clone(), [rows, cols], DType::F32, &device);
        if wgpu_softmax_burn::buffer_offset(&x).unwrap() > 0 {
            break (x, xs);
        }
        assert!(keep.len() < 64, "no tensor landed at an offset in 64 tries");
        keep.push(x);
    };
    let y = values(wgpu_softmax_burn::softmax(x.clone(), 1).unwrap());
    check(
        "softmax at an offset",
        &y,
        &reference::softmax(&xs, Shape::new(rows, cols)).unwrap(),
        Tolerance::SOFTMAX,
    );
    let (t, tt) = targets(&mut rng, rows, cols, &device);
    let loss = values(cross_entropy(x, tt, &CrossEntropyOptions::new()).unwrap());
    let input = CrossEntropyInput::new(&xs, Shape::new(rows, cols), Targets::I64(&t));
    let expected = reference::cross_entropy(&CrossEntropy::new(), &input).unwrap();
    check("cross-entropy at an offset", &loss, &expected.loss, Tolerance::CROSS_ENTROPY_LOSS);
}

#[test]
fn wrong_shapes_and_dims_are_typed_errors() {
    let device = shared().device();
    let x = tensor(vec![0.5; 12], [3, 4], DType::F32, &device);
    let err = wgpu_softmax_burn::softmax(x.clone(), 2).unwrap_err();
    assert!(matches!(err, Error::InvalidDim { dim: 2, rank: 2 }), "{err}");
    let t = Tensor::<1, Int>::from_data(TensorData::new(vec![0_i64, 1], [2]), &device);
    let err = cross_entropy(x.clone(), t.clone(), &CrossEntropyOptions::new()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "targets", .. }), "{err}");
    let err = cross_entropy(x.clone(), t, &CrossEntropyOptions::new().label_smoothing(2.0)).unwrap_err();
    assert!(matches!(err, Error::Library(wgpu_softmax::Error::InvalidOption { .. })), "{err}");
    let w = tensor(vec![0.5; 10], [2, 5], DType::F32, &device);
    let t = Tensor::<1, Int>::from_data(TensorData::new(vec![0_i64, 1, 2], [3]), &device);
    let err = linear_cross_entropy(x, w, None, t, &CrossEntropyOptions::new()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    // A tensor on a wgpu device this crate did not set up (Burn's own default device).
    let foreign = Tensor::<2>::from_data(TensorData::new(vec![0.5_f32; 4], [2, 2]), &Device::default());
    let err = wgpu_softmax_burn::softmax(foreign, 1).unwrap_err();
    assert!(matches!(err, Error::UnknownDevice { .. }), "{err}");
}

/// The distillation: loss and the student's gradient against the reference (batchmean
/// with masked rows, and none with an upstream gradient per row) and against Burn's
/// composition of the same KL divergence.
#[test]
fn distill_matches_the_reference_and_burn() {
    let device = shared().autodiff();
    let (rows, cols) = (7, 129);
    let mut rng = rng(2632);
    for dtype in trained_dtypes() {
        for (op, masked) in [
            (Distill::new().temperature(2.0).ignore_index(5), true),
            (Distill::new().reduction(DistillReduction::None), false),
        ] {
            let what = format!("distill {dtype:?} {op:?}");
            let s = tensor(rng.logits(rows * cols, 4.0), [rows, cols], dtype, &device).require_grad();
            let t = tensor(rng.logits(rows * cols, 4.0), [rows, cols], dtype, &device);
            let (mut tv, _) = targets(&mut rng, rows, cols, &device);
            tv[1] = 5;
            let tt =
                masked.then(|| Tensor::<1, Int>::from_data(TensorData::new(tv.clone(), [rows]), &device));
            let loss = distill(s.clone(), t.clone(), tt, op).unwrap();
            let upstream: Vec<f32> = (0..loss.dims()[0]).map(|_| rng.uniform(0.5, 1.5)).collect();
            let u = tensor(upstream.clone(), [upstream.len()], DType::F32, &device);
            let ds = values(s.grad(&(loss.clone() * u).sum().backward()).unwrap());
            let loss = values(loss);

            let (sv, tvals) = (values(s), values(t));
            let mut input = DistillInput::new(&sv, &tvals, Shape::new(rows, cols));
            if masked {
                input = input.targets(Targets::I64(&tv));
            }
            if op.get_reduction() == DistillReduction::None {
                input = input.grad_output(&upstream);
            }
            let expected = reference::distill(&op, &input).unwrap();
            check(&format!("{what} loss"), &loss, &expected.loss, tolerance(Tolerance::DISTILL_LOSS, dtype));
            let mut grad_ref = expected.grad.unwrap();
            if op.get_reduction() != DistillReduction::None {
                grad_ref.iter_mut().for_each(|g| *g *= f64::from(upstream[0]));
            }
            check(&format!("{what} gradient"), &ds, &grad_ref, tolerance(Tolerance::DISTILL_GRAD, dtype));

            // Burn's composition (unmasked, f32): T^2 * sum(p_t * (log p_t - log_softmax(s/T))) per row.
            if masked || dtype != DType::F32 {
                continue;
            }
            let temperature = op.get_temperature();
            let s2 = tensor(sv.clone(), [rows, cols], dtype, &device).require_grad();
            let t2 = tensor(tvals.clone(), [rows, cols], dtype, &device);
            let log_q = activation::log_softmax(s2.clone() / temperature, 1);
            let log_p = activation::log_softmax(t2 / temperature, 1);
            let rows_loss = (log_p.clone().exp() * (log_p - log_q)).sum_dim(1).squeeze::<1>()
                * (temperature * temperature);
            let u2 = tensor(upstream.clone(), [rows], DType::F32, &device);
            let ds2 = values(s2.grad(&(rows_loss.clone() * u2).sum().backward()).unwrap());
            let tol = Tolerance { atol: 1e-5, rtol: 1e-4 };
            check_f32(&format!("{what} loss vs Burn"), &loss, &values(rows_loss), tol);
            check_f32(&format!("{what} gradient vs Burn"), &ds, &ds2, tol);
        }
    }
}

/// Sampling from Burn logits: greedy draws are Burn's argmax, top-k draws land only on
/// tokens the reference's filtered distribution keeps, and a seed replays its draws.
#[test]
fn sample_draws_from_the_filtered_distribution() {
    let device = shared().device();
    let (rows, cols) = (6, 300);
    let mut rng = rng(2633);
    let xs = rng.logits(rows * cols, 5.0);
    let x = tensor(xs.clone(), [rows, cols], DType::F32, &device);
    let ids = |t: Tensor<2, Int>| t.into_data().iter::<i64>().collect::<Vec<i64>>();

    let greedy = ids(sample(x.clone(), &Sampler { temperature: 0.0, ..Sampler::default() }).unwrap());
    let argmax = ids(x.clone().argmax(1));
    assert_eq!(greedy, argmax, "greedy draws against Burn's argmax");

    let sampler = Sampler { temperature: 0.9, top_k: 5, num_samples: 16, seed: 26, ..Sampler::default() };
    let drawn = ids(sample(x.clone(), &sampler).unwrap());
    assert_eq!(drawn.len(), rows * 16);
    let kept = reference::sample_distribution(&xs, Shape::new(rows, cols), &sampler).unwrap();
    for (i, &id) in drawn.iter().enumerate() {
        let row = kept[i / 16].as_ref().expect("every row has a distribution");
        assert!(
            id >= 0 && (id as usize) < cols && row[id as usize] > 0.0,
            "draw {i}: token {id} is not kept"
        );
    }
    assert_eq!(drawn, ids(sample(x, &sampler).unwrap()), "the same seed draws the same ids");
}

/// The ordering rule: a Burn kernel still queued when our op is called has written its
/// output before our kernel reads it, and a Burn kernel launched right after reads what
/// ours wrote, with no sync in between.
#[test]
fn burn_writes_ours_reads_and_burn_reads_ours_in_order() {
    let device = shared().device();
    let (rows, cols) = (8, 77);
    let mut rng = rng(2634);
    let a = rng.logits(rows * cols, 2.0);
    let x = tensor(a.clone(), [rows, cols], DType::F32, &device) * 2.0 + 1.0; // queued in Burn
    let y = wgpu_softmax_burn::softmax(x, 1).unwrap();
    let z = values(y * 3.0 - 1.0); // Burn reads our output at once
    let shifted: Vec<f32> = a.iter().map(|&v| v * 2.0 + 1.0).collect();
    let p = reference::softmax(&shifted, Shape::new(rows, cols)).unwrap();
    let expected: Vec<f64> = p.iter().map(|q| 3.0 * q - 1.0).collect();
    check("Burn, ours, Burn", &z, &expected, Tolerance { atol: 1e-6, rtol: 1e-4 });
}
