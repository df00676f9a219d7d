//! Sampling token ids from Burn logits on the GPU, with the library's `Sampler`.

use burn::tensor::{Int, Tensor};
use burn_backend::{DType as BurnDType, Shape as BurnShape, TensorMetadata};
use wgpu_softmax::{SAMPLE_STATUS_WORDS, SampleBuffers, Sampler, Shape};

use crate::bind::{Launch, float_dtype};
use crate::convert;
use crate::error::{Error, Result};

/// Draws `sampler.num_samples` token ids per row of `logits` (`[N, V]`, f32, f16 or bf16)
/// with the library's sampler (temperature, top-k, top-p, min-p, a seeded Philox stream:
/// the same seed and logits give the same ids): an Int tensor `[N, num_samples]` of i64
/// ids where the device's Burn runtime has i64, else i32, on the logits' device (as a
/// constant: sampling takes no gradient). A row with a NaN or only `-inf` logits draws
/// -1.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] when `logits` is not 2-D or is empty,
/// [`Error::UnsupportedDType`], [`Error::UnknownDevice`], and the library's errors (bad
/// sampler settings: [`wgpu_softmax::Error::InvalidOption`]).
pub fn sample(logits: Tensor<2>, sampler: &Sampler) -> Result<Tensor<2, Int>> {
    sampler.check_options()?;
    let device = logits.device();
    let logits = convert::constant("logits", logits)?;
    let dtype = float_dtype("logits", logits.dtype)?;
    let shape = logits.shape();
    if shape.num_elements() == 0 {
        return Err(Error::ShapeMismatch {
            what: "logits",
            problem: format!("shape {shape:?} has no elements"),
        });
    }
    let (rows, cols) = (shape[0], shape[1]);
    let wide = device.supports_dtype(BurnDType::I64);
    let launch = Launch::on("logits", &logits)?;
    let logits = launch.input("logits", logits)?;
    let ids_shape = BurnShape::new([rows, sampler.num_samples]);
    let ids = launch.output(ids_shape, if wide { BurnDType::I64 } else { BurnDType::I32 })?;
    let status = launch.output(BurnShape::new([SAMPLE_STATUS_WORDS]), BurnDType::U32)?;
    launch.submit(|ctx, encoder| {
        let mut buffers = SampleBuffers::new(logits.tensor_ref(dtype), ids.region(), status.region());
        if wide {
            buffers = buffers.with_i64_ids();
        }
        sampler.encode(ctx, encoder, &buffers, Shape::new(rows, cols))?;
        Ok(())
    })?;
    Ok(if device.is_autodiff() {
        Tensor::<2, Int>::from_primitive::<convert::Ad>(ids.tensor)
    } else {
        Tensor::<2, Int>::from_primitive::<convert::Cube>(ids.tensor)
    })
}
