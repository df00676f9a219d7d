//! Softmax and log-softmax of Burn tensors, with their backward passes.

use burn::tensor::Tensor;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_backend::TensorMetadata;
use burn_backend::ops::FloatTensorOps;
use burn_cubecl::tensor::CubeTensor;
use wgpu_softmax::{Shape, Softmax, SoftmaxBackward};

use crate::bind::{Launch, float_dtype};
use crate::convert::{self, Cube, Float};
use crate::error::{Error, Result};

/// The softmax of `x` over dimension `dim`, in `x`'s dtype (f32, f16 or bf16), by the
/// library's fused kernel. On an autodiff device the backward pass is the library's fused
/// softmax backward too; the output is kept for it, nothing more.
///
/// Over the last dimension the kernel reads `x` where it lies; over another, Burn swaps
/// that dimension last (a copy, as Burn makes the view contiguous).
///
/// ```no_run
/// # fn main() -> Result<(), wgpu_softmax_burn::Error> {
/// use burn::tensor::{Distribution, Tensor};
/// let shared = wgpu_softmax_burn::BurnDevice::new()?;
/// let logits = Tensor::<3>::random([2, 8, 1000], Distribution::Default, &shared.autodiff()).require_grad();
/// let p = wgpu_softmax_burn::softmax(logits.clone(), 2)?;
/// let grads = (p * 2.0).sum().backward();
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::InvalidDim`] when `dim >= D`, [`Error::UnsupportedDType`] for a dtype other
/// than f32, f16 or bf16, [`Error::UnknownDevice`] when `x` is not on a
/// [`crate::BurnDevice`], [`Error::UnsupportedTensor`] for a tensor of another backend,
/// and the library's errors ([`Error::Library`]).
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Result<Tensor<D>> {
    rows(x, dim, Softmax::new())
}

/// The log-softmax of `x` over dimension `dim`: as [`softmax`], by the library's fused
/// log-softmax kernel and its backward.
///
/// # Errors
///
/// As [`softmax`].
pub fn log_softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Result<Tensor<D>> {
    rows(x, dim, Softmax::log())
}

fn rows<const D: usize>(x: Tensor<D>, dim: usize, op: Softmax) -> Result<Tensor<D>> {
    if dim >= D {
        return Err(Error::InvalidDim { dim, rank: D });
    }
    let last = D - 1;
    if dim != last {
        return Ok(rows(x.swap_dims(dim, last), last, op)?.swap_dims(dim, last));
    }
    match convert::float("x", x)? {
        Float::Plain(x) => Ok(convert::plain(forward(x, op)?)),
        Float::Tracked(x) => {
            let (primitive, node) = x.into_parts();
            let y = forward(primitive, op)?;
            let backward = RowsBackward { log: op.is_log() };
            Ok(convert::tracked(
                match backward.prepare::<NoCheckpointing>([node]).compute_bound().stateful() {
                    OpsKind::Tracked(prep) => prep.finish(y.clone(), y),
                    OpsKind::UnTracked(prep) => prep.finish(y),
                },
            ))
        }
    }
}

/// Rows and columns of a tensor reduced over its last dimension.
pub(crate) fn row_shape(what: &'static str, tensor: &CubeTensor) -> Result<Shape> {
    let shape = tensor.shape();
    let cols = shape.last().copied().unwrap_or(1);
    let elements = shape.num_elements();
    if cols == 0 || elements == 0 {
        return Err(Error::ShapeMismatch { what, problem: format!("shape {shape:?} has no elements") });
    }
    Ok(Shape::new(elements / cols, cols))
}

/// The op on a CubeCL tensor, reduced over its last dimension.
fn forward(x: CubeTensor, op: Softmax) -> Result<CubeTensor> {
    let dtype = float_dtype("x", x.dtype)?;
    let shape = row_shape("x", &x)?;
    let launch = Launch::on("x", &x)?;
    let input = launch.input("x", x)?;
    let output = launch.output(input.tensor.shape(), input.tensor.dtype)?;
    launch.submit(|ctx, encoder| {
        op.encode(ctx, encoder, input.tensor_ref(dtype), output.tensor_ref(dtype), shape)?;
        Ok(())
    })?;
    Ok(output.tensor)
}

/// The backward of the softmax (`log: false`) or log-softmax over the last dimension:
/// the output `y` is its state.
#[derive(Debug)]
struct RowsBackward {
    log: bool,
}

impl Backward<Cube, 1> for RowsBackward {
    type State = CubeTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let dy = grads.consume::<Cube>(&ops.node);
        if let Some(parent) = parent {
            let dx = rows_backward(ops.state, dy, self.log);
            grads.register::<Cube>(parent.id, dx);
        }
    }
}

/// `dx` from `y` and `dy` by the library's fused kernel; where it cannot run (a device
/// fault, a dtype Burn's gradient does not share with `y`), by Burn's own ops, so that the
/// backward pass never fails and never returns wrong numbers.
fn rows_backward(y: CubeTensor, dy: CubeTensor, log: bool) -> CubeTensor {
    let op = if log { SoftmaxBackward::log() } else { SoftmaxBackward::new() };
    match fused_backward(y.clone(), dy.clone(), op) {
        Ok(dx) => dx,
        Err(_) => composed_backward(y, dy, log),
    }
}

fn fused_backward(y: CubeTensor, dy: CubeTensor, op: SoftmaxBackward) -> Result<CubeTensor> {
    let dtype = float_dtype("y", y.dtype)?;
    if dy.dtype != y.dtype || dy.shape() != y.shape() {
        return Err(Error::ShapeMismatch { what: "dy", problem: "not of y's dtype and shape".into() });
    }
    let shape = row_shape("y", &y)?;
    let launch = Launch::on("y", &y)?;
    let y = launch.input("y", y)?;
    let dy = launch.input("dy", dy)?;
    let dx = launch.output(y.tensor.shape(), y.tensor.dtype)?;
    launch.submit(|ctx, encoder| {
        op.encode(ctx, encoder, y.tensor_ref(dtype), dy.tensor_ref(dtype), dx.tensor_ref(dtype), shape)?;
        Ok(())
    })?;
    Ok(dx.tensor)
}

/// The same backward in Burn's ops: `y * (dy - sum(dy * y))` for the softmax,
/// `dy - exp(y) * sum(dy)` for the log-softmax, sums over the last dimension.
fn composed_backward(y: CubeTensor, dy: CubeTensor, log: bool) -> CubeTensor {
    let dy = Cube::float_cast(dy, y.dtype.into());
    let last = y.shape().num_dims() - 1;
    let shape = y.shape();
    if log {
        let sum = Cube::float_expand(Cube::float_sum_dim(dy.clone(), last), shape);
        Cube::float_sub(dy, Cube::float_mul(Cube::float_exp(y), sum))
    } else {
        let dot = Cube::float_sum_dim(Cube::float_mul(dy.clone(), y.clone()), last);
        Cube::float_mul(y, Cube::float_sub(dy, Cube::float_expand(dot, shape)))
    }
}
