//! The fused linear cross-entropy of Burn tensors: the loss of `H W^T + b` against class
//! targets, and `dH`, `dW`, `db`, without the logits ever stored whole.

use burn::tensor::{Int, Tensor};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_backend::{DType as BurnDType, TensorMetadata};
use burn_cubecl::tensor::CubeTensor;
use wgpu_softmax::{LinearCrossEntropyBuffers, LinearGradients, LinearShape, Reduction};

use crate::bind::{Launch, float_dtype};
use crate::convert::{self, Cube, Float};
use crate::cross_entropy::{CrossEntropyOptions, check_targets, loss_shape, scale_rows, target_buffer};
use crate::error::{Error, Result};

/// The fused linear cross-entropy: the cross-entropy of the logits `hidden @ weight^T +
/// bias` (`hidden` `[N, D]`, `weight` `[V, D]` as Burn's `Linear` stores it transposed,
/// `bias` `[V]`; one float dtype for all) against `targets` (`[N]`, Burn's Int), with the
/// options of [`crate::cross_entropy`]. Returns the loss, `[1]` (mean or sum) or `[N]`
/// (none), in f32.
///
/// The `N x V` logits are never stored whole: the library computes them a window of rows
/// at a time into a bounded workspace. On an autodiff device the same pass writes `dH`,
/// `dW` and `db` for the inputs that are tracked; the backward pass multiplies them by
/// the incoming gradient. Those gradients (the size of the inputs) are all it keeps.
///
/// # Errors
///
/// As [`crate::cross_entropy`], and [`Error::ShapeMismatch`] when the shapes do not chain,
/// [`Error::DTypeMismatch`] when `weight` or `bias` is not of `hidden`'s dtype,
/// [`Error::DeviceMismatch`] when some inputs are on an autodiff device and some not, and
/// [`Error::UnsupportedTensor`] for [`Reduction::None`] with tracked inputs (its weight
/// gradient depends on the incoming per-row gradient; not supported yet).
pub fn linear_cross_entropy(
    hidden: Tensor<2>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    targets: Tensor<1, Int>,
    options: &CrossEntropyOptions,
) -> Result<Tensor<1>> {
    options.op().check_options()?;
    let targets = convert::int("targets", targets)?;
    let hidden = convert::float("hidden", hidden)?;
    let weight = convert::float("weight", weight)?;
    let bias = bias.map(|b| convert::float("bias", b)).transpose()?;
    match (hidden, weight, bias) {
        (Float::Plain(h), Float::Plain(w), None) => {
            Ok(convert::plain(forward(options, [h, w], None, targets, NO_GRADS)?.0))
        }
        (Float::Plain(h), Float::Plain(w), Some(Float::Plain(b))) => {
            Ok(convert::plain(forward(options, [h, w], Some(b), targets, NO_GRADS)?.0))
        }
        (Float::Tracked(h), Float::Tracked(w), None) => {
            let wanted = [h.is_tracked(), w.is_tracked(), false];
            let (h, hn) = h.into_parts();
            let (w, wn) = w.into_parts();
            let prep = LinearBackward.prepare::<NoCheckpointing>([hn, wn]).compute_bound().stateful();
            Ok(convert::tracked(match prep {
                OpsKind::Tracked(prep) => {
                    let (loss, grads) = tracked_forward(options, [h, w], None, targets, wanted)?;
                    prep.finish(grads, loss)
                }
                OpsKind::UnTracked(prep) => prep.finish(forward(options, [h, w], None, targets, NO_GRADS)?.0),
            }))
        }
        (Float::Tracked(h), Float::Tracked(w), Some(Float::Tracked(b))) => {
            let wanted = [h.is_tracked(), w.is_tracked(), b.is_tracked()];
            let (h, hn) = h.into_parts();
            let (w, wn) = w.into_parts();
            let (b, bn) = b.into_parts();
            let prep = LinearBackward.prepare::<NoCheckpointing>([hn, wn, bn]).compute_bound().stateful();
            Ok(convert::tracked(match prep {
                OpsKind::Tracked(prep) => {
                    let (loss, grads) = tracked_forward(options, [h, w], Some(b), targets, wanted)?;
                    prep.finish(grads, loss)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(forward(options, [h, w], Some(b), targets, NO_GRADS)?.0)
                }
            }))
        }
        _ => Err(Error::DeviceMismatch {
            what: "weight or bias",
            found: "a device with autodiff, or without".into(),
            other: "hidden",
            expected: "the other".into(),
        }),
    }
}

const NO_GRADS: [bool; 3] = [false; 3];

/// The gradients `dH`, `dW`, `db` written in the forward pass, where wanted.
type Grads = [Option<CubeTensor>; 3];

fn tracked_forward(
    options: &CrossEntropyOptions,
    inputs: [CubeTensor; 2],
    bias: Option<CubeTensor>,
    targets: CubeTensor,
    wanted: [bool; 3],
) -> Result<(CubeTensor, Grads)> {
    if options.get_reduction() == Reduction::None {
        return Err(Error::UnsupportedTensor {
            what: "hidden",
            reason: "reduction none with gradients: use mean or sum, or `cross_entropy` on Burn's logits"
                .into(),
        });
    }
    forward(options, inputs, bias, targets, wanted)
}

/// The fused op: the loss, and the gradients `wanted` (`[dH, dW, db]`).
fn forward(
    options: &CrossEntropyOptions,
    [hidden, weight]: [CubeTensor; 2],
    bias: Option<CubeTensor>,
    targets: CubeTensor,
    wanted: [bool; 3],
) -> Result<(CubeTensor, Grads)> {
    let dtype = float_dtype("hidden", hidden.dtype)?;
    let (hs, ws) = (hidden.shape(), weight.shape());
    if hs.num_dims() != 2
        || ws.num_dims() != 2
        || hs[1] != ws[1]
        || hs.num_elements() == 0
        || ws.num_elements() == 0
    {
        return Err(Error::ShapeMismatch {
            what: "hidden and weight",
            problem: format!("shapes {hs:?} and {ws:?}; expected [N, D] and [V, D], not empty"),
        });
    }
    let shape = LinearShape::new(hs[0], hs[1], ws[0]);
    for (what, tensor) in [("weight", Some(&weight)), ("bias", bias.as_ref())] {
        if let Some(tensor) = tensor
            && tensor.dtype != hidden.dtype
        {
            return Err(Error::DTypeMismatch {
                what,
                found: format!("{:?}", tensor.dtype),
                other: "hidden",
                expected: format!("{:?}", hidden.dtype),
            });
        }
    }
    if let Some(b) = &bias
        && b.shape().num_elements() != shape.classes
    {
        return Err(Error::ShapeMismatch {
            what: "bias",
            problem: format!("shape {:?}, but weight has {} rows", b.shape(), shape.classes),
        });
    }
    check_targets(&targets, shape.rows)?;
    let class_weight = options.weight_tensor(shape.classes)?;
    let launch = Launch::on("hidden", &hidden)?;
    let hidden = launch.input("hidden", hidden)?;
    let weight = launch.input("weight", weight)?;
    let bias = bias.map(|b| launch.input("bias", b)).transpose()?;
    let targets = launch.input("targets", targets)?;
    let class_weight = class_weight.map(|w| launch.input("class weights", w)).transpose()?;
    let loss = launch.output(loss_shape(options.get_reduction(), shape.rows), BurnDType::F32)?;
    let wanted = [wanted[0], wanted[1], wanted[2] && bias.is_some()];
    let outputs = [&hidden, &weight, &weight];
    let mut grads = Vec::with_capacity(3);
    for (i, want) in wanted.iter().enumerate() {
        let like = if i == 2 { bias.as_ref().unwrap_or(outputs[i]) } else { outputs[i] };
        grads.push(want.then(|| launch.output(like.tensor.shape(), like.tensor.dtype)).transpose()?);
    }
    let op = options.linear_op().gradients(LinearGradients {
        hidden: wanted[0],
        classifier: wanted[1],
        bias: wanted[2],
    });
    launch.submit(|ctx, encoder| {
        let mut buffers = LinearCrossEntropyBuffers::new(
            hidden.tensor_ref(dtype),
            weight.tensor_ref(dtype),
            target_buffer(&targets)?,
            loss.region(),
        );
        if let Some(b) = &bias {
            buffers = buffers.with_bias(b.tensor_ref(dtype));
        }
        if let Some(w) = &class_weight {
            buffers = buffers.with_weight(w.region());
        }
        if let Some(g) = &grads[0] {
            buffers = buffers.with_grad_hidden(g.tensor_ref(dtype));
        }
        if let Some(g) = &grads[1] {
            buffers = buffers.with_grad_classifier(g.tensor_ref(dtype));
        }
        if let Some(g) = &grads[2] {
            buffers = buffers.with_grad_bias(g.tensor_ref(dtype));
        }
        op.encode(ctx, encoder, &buffers, shape)?;
        Ok(())
    })?;
    let mut grads = grads.into_iter().map(|g| g.map(|g| g.tensor));
    let grads = [grads.next().flatten(), grads.next().flatten(), grads.next().flatten()];
    Ok((loss.tensor, grads))
}

/// The backward of the linear cross-entropy: the gradients written in the forward pass
/// are its state, each scaled by the incoming gradient (one value: mean or sum).
#[derive(Debug)]
struct LinearBackward;

impl<const N: usize> Backward<Cube, N> for LinearBackward {
    type State = Grads;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let dloss = grads.consume::<Cube>(&ops.node);
        for (parent, grad) in ops.parents.into_iter().zip(ops.state) {
            if let (Some(parent), Some(grad)) = (parent, grad) {
                grads.register::<Cube>(parent.id, scale_rows(grad, dloss.clone(), Reduction::Sum));
            }
        }
    }
}
