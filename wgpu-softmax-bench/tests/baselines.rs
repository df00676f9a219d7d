//! The benchmark's baselines compute the same thing as the fused kernels: each kernel kind
//! (fused, unfused WGSL, plain CPU f32) against the f64 reference on small shapes, so that
//! a speedup is never measured against a baseline that computes something else.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes

use wgpu_softmax::check::Tolerance;
use wgpu_softmax::testing::compare;
use wgpu_softmax::{Context, DType, Shape};
use wgpu_softmax_bench::{Bench, BenchOp, KernelKind, Workload};

#[test]
fn every_kernel_kind_computes_what_the_reference_does() {
    // Without an adapter this fails with the message that says what to install.
    let ctx = &Context::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
    eprintln!("GPU tests run on: {}", ctx.describe());
    let bench = Bench::new(ctx).unwrap();
    for (rows, cols) in [(300, 7), (37, 300), (3, 2000)] {
        let shape = Shape::new(rows, cols);
        for (op, dtype) in BenchOp::ALL.into_iter().flat_map(|op| DType::ALL.map(|dtype| (op, dtype))) {
            let mut workload = Workload::with_dtype(op, shape, 0xBA5E, dtype);
            let (want, want_loss) = bench.outputs(&mut workload, KernelKind::CpuReference).unwrap();
            let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
            let tolerance = match op {
                BenchOp::Softmax => Tolerance::SOFTMAX,
                BenchOp::LogSoftmax => Tolerance::LOG_SOFTMAX,
                BenchOp::CrossEntropyGrad | BenchOp::CrossEntropyLoss => Tolerance::CROSS_ENTROPY_GRAD,
                BenchOp::SoftmaxBackward => Tolerance::BACKWARD,
            };
            let kernels = [KernelKind::Fused, KernelKind::Unfused, KernelKind::Cpu];
            for kernel in kernels.into_iter().filter(|k| k.measures(op, dtype)) {
                let (got, loss) = bench.outputs(&mut workload, kernel).unwrap();
                let what = format!("{} {dtype} {shape} {}", op.name(), kernel.name());
                let c = compare(&got, &want, tolerance.for_dtype(dtype));
                assert!(c.passed(), "{what}: {c}");
                match (loss, want_loss) {
                    (Some(l), Some(w)) => {
                        assert!((l - w).abs() <= 1e-5 + 1e-4 * w.abs(), "{what}: loss {l} vs {w}");
                    }
                    (None, None) => {}
                    _ => panic!("{what}: a loss where none was expected, or none where one was"),
                }
            }
        }
    }
}
