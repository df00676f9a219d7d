//! The fused cross-entropy of Burn logits against Burn's Int targets, with the gradient
//! computed in the same pass.

use burn::tensor::{Int, Tensor};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_backend::ops::FloatTensorOps;
use burn_backend::{DType as BurnDType, FloatDType, Shape as BurnShape, TensorMetadata};
use burn_cubecl::tensor::CubeTensor;
use wgpu_softmax::{
    CrossEntropy, CrossEntropyBuffers, Gradient, LinearCrossEntropy, Reduction, Shape, TargetBuffer,
};

use crate::bind::{Bound, Launch, float_dtype};
use crate::convert::{self, Cube, Float};
use crate::error::{Error, Result};

/// The options of [`cross_entropy`] and [`crate::linear_cross_entropy`]: the library's
/// (PyTorch's defaults: mean, `ignore_index` -100, no smoothing, no weights; plus a z-loss
/// and a logit softcap, off by default), and optional class weights as a Burn tensor.
#[derive(Clone, Debug, Default)]
pub struct CrossEntropyOptions {
    reduction: Reduction,
    ignore_index: Option<i64>,
    label_smoothing: f32,
    z_loss: f32,
    softcap: Option<f32>,
    weight: Option<Tensor<1>>,
    workspace_bytes: Option<u64>,
}

impl CrossEntropyOptions {
    /// PyTorch's defaults.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How the per-row losses are reduced (default [`Reduction::Mean`]).
    #[must_use]
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The class index whose rows add no loss and get no gradient (default -100).
    #[must_use]
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = Some(ignore_index);
        self
    }

    /// Label smoothing in `[0, 1]` (default 0).
    #[must_use]
    pub fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// The z-loss coefficient `z >= 0`: adds `z * lse^2` per row not ignored (default 0).
    #[must_use]
    pub fn z_loss(mut self, z: f32) -> Self {
        self.z_loss = z;
        self
    }

    /// Caps the logits softly at `t > 0`: `t * tanh(x / t)` first (default none).
    #[must_use]
    pub fn softcap(mut self, t: f32) -> Self {
        self.softcap = Some(t);
        self
    }

    /// Class weights, one per class (any float dtype; read as f32; never given a
    /// gradient).
    #[must_use]
    pub fn weight(mut self, weight: Tensor<1>) -> Self {
        self.weight = Some(weight);
        self
    }

    /// The bound on the workspace of [`crate::linear_cross_entropy`]'s windows of logits
    /// (default: the library's, 256 MiB or the device's largest binding): a smaller one
    /// takes fewer rows per window, and less memory.
    #[must_use]
    pub fn workspace_bytes(mut self, bytes: u64) -> Self {
        self.workspace_bytes = Some(bytes);
        self
    }

    /// The reduction.
    #[must_use]
    pub const fn get_reduction(&self) -> Reduction {
        self.reduction
    }

    /// The library's cross-entropy with these options (gradient skipped).
    pub(crate) fn op(&self) -> CrossEntropy {
        let mut op = CrossEntropy::new()
            .reduction(self.reduction)
            .label_smoothing(self.label_smoothing)
            .z_loss(self.z_loss)
            .gradient(Gradient::Skip);
        if let Some(index) = self.ignore_index {
            op = op.ignore_index(index);
        }
        if let Some(t) = self.softcap {
            op = op.softcap(t);
        }
        op
    }

    /// The library's linear cross-entropy with these options (no gradients).
    pub(crate) fn linear_op(&self) -> LinearCrossEntropy {
        let mut op = LinearCrossEntropy::new()
            .reduction(self.reduction)
            .label_smoothing(self.label_smoothing)
            .z_loss(self.z_loss)
            .gradients(wgpu_softmax::LinearGradients::NONE);
        if let Some(bytes) = self.workspace_bytes {
            op = op.workspace_bytes(bytes);
        }
        if let Some(index) = self.ignore_index {
            op = op.ignore_index(index);
        }
        if let Some(t) = self.softcap {
            op = op.softcap(t);
        }
        op
    }

    /// The class weights as an f32 CubeCL tensor of `classes` elements.
    pub(crate) fn weight_tensor(&self, classes: usize) -> Result<Option<CubeTensor>> {
        let Some(weight) = self.weight.clone() else { return Ok(None) };
        let weight = convert::constant("weight", weight)?;
        let shape = weight.shape();
        if shape.num_elements() != classes {
            return Err(Error::ShapeMismatch {
                what: "weight",
                problem: format!("shape {shape:?}, but there are {classes} classes"),
            });
        }
        float_dtype("weight", weight.dtype)?;
        Ok(Some(if weight.dtype == BurnDType::F32 {
            weight
        } else {
            Cube::float_cast(weight, FloatDType::F32)
        }))
    }
}

/// The loss's shape: one per row for [`Reduction::None`], else one value.
pub(crate) fn loss_shape(reduction: Reduction, rows: usize) -> BurnShape {
    BurnShape::new([if reduction == Reduction::None { rows } else { 1 }])
}

/// The library's targets over a bound Int tensor.
pub(crate) fn target_buffer<'a>(targets: &'a Bound) -> Result<TargetBuffer<'a>> {
    match targets.tensor.dtype {
        BurnDType::I64 => Ok(TargetBuffer::i64(targets.region())),
        BurnDType::I32 => Ok(TargetBuffer::i32(targets.region())),
        BurnDType::U32 => Ok(TargetBuffer::u32(targets.region())),
        other => Err(Error::UnsupportedDType {
            what: "targets",
            found: format!("{other:?}"),
            expected: "i64, i32 or u32",
        }),
    }
}

/// Checks that `targets` holds one class index per row.
pub(crate) fn check_targets(targets: &CubeTensor, rows: usize) -> Result<()> {
    let shape = targets.shape();
    if shape.num_dims() != 1 || shape[0] != rows {
        return Err(Error::ShapeMismatch {
            what: "targets",
            problem: format!("shape {shape:?}, but there are {rows} rows"),
        });
    }
    Ok(())
}

/// The fused cross-entropy of `logits` (`[N, C]`, f32, f16 or bf16) against class
/// indices `targets` (`[N]`, Burn's Int), with the library's options: the loss `[1]` (mean
/// or sum) or `[N]` (none), in f32.
///
/// On an autodiff device with `logits` tracked, the one kernel that computes the loss
/// also writes the gradient `dloss/dlogits` (`[N, C]`, the logits' dtype); the backward
/// pass multiplies it by the incoming gradient. That gradient is all the op keeps: no
/// softmax, no log-probabilities. Untracked, no gradient is computed.
///
/// A target outside `[0, C)` other than `ignore_index` gives its row a NaN loss.
///
/// ```no_run
/// # fn main() -> Result<(), wgpu_softmax_burn::Error> {
/// use burn::tensor::{Distribution, Int, Tensor};
/// use wgpu_softmax_burn::{BurnDevice, CrossEntropyOptions, cross_entropy};
/// let shared = BurnDevice::new()?;
/// let device = shared.autodiff();
/// let logits = Tensor::<2>::random([64, 1000], Distribution::Default, &device).require_grad();
/// let targets = Tensor::<1, Int>::random([64], Distribution::Uniform(0.0, 1000.0), &device);
/// let loss = cross_entropy(logits.clone(), targets, &CrossEntropyOptions::new().label_smoothing(0.1))?;
/// let grads = loss.backward();
/// let dlogits = logits.grad(&grads);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::ShapeMismatch`] when `logits` is not 2-D or `targets` or the weights do not
/// match it, [`Error::UnsupportedDType`] for float dtypes other than f32, f16, bf16 or
/// Int dtypes other than i64, i32, u32, [`Error::UnknownDevice`] and
/// [`Error::DeviceMismatch`] for tensors not on one [`crate::BurnDevice`], and the
/// library's errors (bad options: [`wgpu_softmax::Error::InvalidOption`]).
pub fn cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    options: &CrossEntropyOptions,
) -> Result<Tensor<1>> {
    let op = options.op();
    op.check_options()?;
    let targets = convert::int("targets", targets)?;
    match convert::float("logits", logits)? {
        Float::Plain(logits) => Ok(convert::plain(forward(&op, options, logits, targets, false)?.0)),
        Float::Tracked(logits) => {
            let (primitive, node) = logits.into_parts();
            let backward = CrossEntropyBackward { reduction: options.reduction };
            Ok(convert::tracked(
                match backward.prepare::<NoCheckpointing>([node]).compute_bound().stateful() {
                    OpsKind::Tracked(prep) => {
                        let (loss, grad) = forward(&op, options, primitive, targets, true)?;
                        let grad =
                            grad.ok_or_else(|| Error::Runtime("the gradient was not written".into()))?;
                        prep.finish(grad, loss)
                    }
                    OpsKind::UnTracked(prep) => {
                        prep.finish(forward(&op, options, primitive, targets, false)?.0)
                    }
                },
            ))
        }
    }
}

/// The fused kernel: the loss, and the gradient when `with_grad`.
fn forward(
    op: &CrossEntropy,
    options: &CrossEntropyOptions,
    logits: CubeTensor,
    targets: CubeTensor,
    with_grad: bool,
) -> Result<(CubeTensor, Option<CubeTensor>)> {
    let dtype = float_dtype("logits", logits.dtype)?;
    let shape = logits.shape();
    if shape.num_dims() != 2 || shape.num_elements() == 0 {
        return Err(Error::ShapeMismatch {
            what: "logits",
            problem: format!("shape {shape:?}; expected [rows, classes], not empty"),
        });
    }
    let (rows, cols) = (shape[0], shape[1]);
    check_targets(&targets, rows)?;
    let weight = options.weight_tensor(cols)?;
    let launch = Launch::on("logits", &logits)?;
    let logits = launch.input("logits", logits)?;
    let targets = launch.input("targets", targets)?;
    let weight = weight.map(|w| launch.input("weight", w)).transpose()?;
    let loss = launch.output(loss_shape(op.get_reduction(), rows), BurnDType::F32)?;
    let grad = with_grad.then(|| launch.output(logits.tensor.shape(), logits.tensor.dtype)).transpose()?;
    let op = if with_grad { op.gradient(Gradient::Separate) } else { *op };
    launch.submit(|ctx, encoder| {
        let mut buffers =
            CrossEntropyBuffers::new(logits.tensor_ref(dtype), target_buffer(&targets)?, loss.region());
        if let Some(weight) = &weight {
            buffers = buffers.with_weight(weight.region());
        }
        if let Some(grad) = &grad {
            buffers = buffers.with_grad(grad.tensor_ref(dtype));
        }
        op.encode(ctx, encoder, &buffers, Shape::new(rows, cols))?;
        Ok(())
    })?;
    Ok((loss.tensor, grad.map(|g| g.tensor)))
}

/// The backward of the cross-entropy: the gradient written in the forward pass is its
/// state, scaled by the incoming gradient (one value, or one per row for
/// [`Reduction::None`]).
#[derive(Debug)]
struct CrossEntropyBackward {
    reduction: Reduction,
}

impl Backward<Cube, 1> for CrossEntropyBackward {
    type State = CubeTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let dloss = grads.consume::<Cube>(&ops.node);
        if let Some(parent) = parent {
            grads.register::<Cube>(parent.id, scale_rows(ops.state, dloss, self.reduction));
        }
    }
}

/// `grad` (`[N, ...]`) times the incoming gradient: one value for a reduced loss, one per
/// row for [`Reduction::None`].
pub(crate) fn scale_rows(grad: CubeTensor, dloss: CubeTensor, reduction: Reduction) -> CubeTensor {
    let shape = grad.shape();
    let dloss = Cube::float_cast(dloss, grad.dtype.into());
    let rows = if reduction == Reduction::None { shape[0] } else { 1 };
    let mut lead = vec![1; shape.num_dims()];
    lead[0] = rows;
    let dloss = Cube::float_expand(Cube::float_reshape(dloss, BurnShape::from(lead)), shape);
    Cube::float_mul(grad, dloss)
}
