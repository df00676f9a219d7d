//! Burn's wgpu backend as a baseline (behind the `burn` feature): softmax, log-softmax and
//! cross-entropy the way a framework composes them from its generic ops, the gradient
//! through its autodiff backend, and its matmul. Burn runs on its own device (its own wgpu); times are
//! wall time from launching the op to the end of `sync`.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, DeviceKind, Int, Tensor, TensorData, activation};

use crate::error::{BenchError, Result};
use crate::matmul::{MatmulCase, Operands};
use crate::{BenchOp, Workload};

fn synced(device: &Device) -> Result<()> {
    device.sync().map_err(|e| BenchError::Burn(format!("{e:?}")))
}

fn timed(warmup: usize, runs: usize, mut run: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        run()?;
    }
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            run()?;
            Ok(started.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

/// Times `runs` runs of the workload's op in Burn after `warmup` untimed ones.
///
/// # Errors
///
/// [`BenchError::Unsupported`] for softmax backward (Burn has it only inside autodiff),
/// and Burn's execution errors.
pub(crate) fn time(workload: &Workload, warmup: usize, runs: usize) -> Result<Vec<f64>> {
    // Burn's default wgpu device: Vulkan wherever Vulkan has an adapter.
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    let shape = workload.shape();
    let dims = [shape.rows, shape.cols];
    let logits = TensorData::new(workload.logits.clone(), dims);
    let targets: Vec<i64> = workload.targets.iter().map(|&t| i64::from(t)).collect();
    let targets = TensorData::new(targets, [shape.rows]);
    match workload.op() {
        BenchOp::Softmax | BenchOp::LogSoftmax => {
            let x = Tensor::<2>::from_data(logits, &device);
            let log = workload.op() == BenchOp::LogSoftmax;
            timed(warmup, runs, || {
                let y = if log {
                    activation::log_softmax(x.clone(), 1)
                } else {
                    activation::softmax(x.clone(), 1)
                };
                synced(&device)?;
                drop(y);
                Ok(())
            })
        }
        BenchOp::CrossEntropyLoss => {
            let x = Tensor::<2>::from_data(logits, &device);
            let t = Tensor::<1, Int>::from_data(targets, &device);
            let loss = CrossEntropyLossConfig::new().init(&device);
            timed(warmup, runs, || {
                let l = loss.forward(x.clone(), t.clone());
                synced(&device)?;
                drop(l);
                Ok(())
            })
        }
        BenchOp::CrossEntropyGrad => {
            let device = device.autodiff();
            let x = Tensor::<2>::from_data(logits, &device).require_grad();
            let t = Tensor::<1, Int>::from_data(targets, &device);
            let loss = CrossEntropyLossConfig::new().init(&device);
            timed(warmup, runs, || {
                let l = loss.forward(x.clone(), t.clone());
                let gradients = l.backward();
                let grad = x.grad(&gradients);
                synced(&device)?;
                drop(grad);
                Ok(())
            })
        }
        BenchOp::SoftmaxBackward => {
            Err(BenchError::Unsupported("Burn has softmax backward only inside autodiff; not measured"))
        }
    }
}

/// Times `runs` runs of `case`'s product in Burn (its matmul, CubeCL's kernels) after
/// `warmup` untimed ones, the operands stored as the case stores them (a transposed one
/// is Burn's transposed view); returns the times and the last run's result.
///
/// # Errors
///
/// Burn's execution errors.
pub(crate) fn time_matmul(
    case: &MatmulCase,
    operands: &Operands,
    warmup: usize,
    runs: usize,
) -> Result<(Vec<f64>, Vec<f32>)> {
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    let stored = |values: &[f32], (rows, cols): (usize, usize), transposed: bool| {
        let dims = if transposed { [cols, rows] } else { [rows, cols] };
        let t = Tensor::<2>::from_data(TensorData::new(values.to_vec(), dims), &device);
        if transposed { t.transpose() } else { t }
    };
    let a = stored(&operands.a, (case.m, case.k), case.a_transposed);
    let b = stored(&operands.b, (case.k, case.n), case.b_transposed);
    let mut last = None;
    let times = timed(warmup, runs, || {
        let c = a.clone().matmul(b.clone());
        synced(&device)?;
        last = Some(c);
        Ok(())
    })?;
    let values = match last {
        Some(c) => c.into_data().try_to_vec::<f32>().map_err(|e| BenchError::Burn(format!("{e:?}")))?,
        None => Vec::new(),
    };
    Ok((times, values))
}
