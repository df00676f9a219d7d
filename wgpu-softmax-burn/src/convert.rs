//! From Burn's dynamic `Tensor` to the CubeCL primitive under it and back, with or without
//! autodiff.

use burn::tensor::{Int, Tensor};
use burn_autodiff::Autodiff;
use burn_backend::tensor::FloatTensor;
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;

use crate::error::{Error, Result};

/// Burn's CubeCL backend, as this crate binds it (no fusion).
pub(crate) type Cube = CubeBackend;
/// Burn's autodiff over it, without gradient checkpointing (the default).
pub(crate) type Ad = Autodiff<Cube>;

/// A float tensor of Burn's, unwrapped: a plain CubeCL tensor, or an autodiff tensor over
/// one.
pub(crate) enum Float {
    /// Without autodiff.
    Plain(CubeTensor),
    /// On an autodiff device.
    Tracked(FloatTensor<Ad>),
}

/// Unwraps a float tensor.
///
/// # Errors
///
/// [`Error::UnsupportedTensor`] when it is not a tensor of Burn's wgpu backend (without
/// fusion) or of autodiff over it without checkpointing; [`Error::NoBurnKernels`] for a
/// tracked tensor of a dtype Burn cannot run kernels on there (its backward pass would fail
/// inside Burn).
pub(crate) fn float<const D: usize>(what: &'static str, tensor: Tensor<D>) -> Result<Float> {
    let unsupported = |e| Error::UnsupportedTensor { what, reason: format!("{e:?}") };
    let device = tensor.device();
    if tensor.is_tracked() && !device.supports_dtype(tensor.dtype()) {
        return Err(Error::NoBurnKernels { what, dtype: format!("{:?}", tensor.dtype()) });
    }
    if device.is_autodiff() {
        tensor.try_into_primitive::<Ad>().map(Float::Tracked).map_err(unsupported)
    } else {
        tensor.try_into_primitive::<Cube>().map(Float::Plain).map_err(unsupported)
    }
}

/// Unwraps a float tensor that takes no gradient (class weights): the CubeCL tensor,
/// detached where it is an autodiff one.
///
/// # Errors
///
/// As [`float`].
pub(crate) fn constant<const D: usize>(what: &'static str, tensor: Tensor<D>) -> Result<CubeTensor> {
    Ok(match float(what, tensor)? {
        Float::Plain(tensor) => tensor,
        Float::Tracked(tensor) => tensor.into_primitive(),
    })
}

/// Unwraps an int tensor (class targets).
///
/// # Errors
///
/// As [`float`].
pub(crate) fn int<const D: usize>(what: &'static str, tensor: Tensor<D, Int>) -> Result<CubeTensor> {
    let unsupported = |e| Error::UnsupportedTensor { what, reason: format!("{e:?}") };
    if tensor.device().is_autodiff() {
        tensor.try_into_primitive::<Ad>().map_err(unsupported)
    } else {
        tensor.try_into_primitive::<Cube>().map_err(unsupported)
    }
}

/// Wraps a plain CubeCL tensor.
pub(crate) fn plain<const D: usize>(tensor: CubeTensor) -> Tensor<D> {
    Tensor::from_primitive::<Cube>(tensor)
}

/// Wraps an autodiff tensor.
pub(crate) fn tracked<const D: usize>(tensor: FloatTensor<Ad>) -> Tensor<D> {
    Tensor::from_primitive::<Ad>(tensor)
}
