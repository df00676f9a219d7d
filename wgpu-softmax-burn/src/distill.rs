//! Knowledge distillation from logits on Burn tensors: the library's fused loss
//! `T^2 KL(softmax(teacher/T) || softmax(student/T))` and its gradient with respect to
//! the student, in one pass.

use burn::tensor::{Int, Tensor};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_backend::{DType as BurnDType, Shape as BurnShape, TensorMetadata};
use burn_cubecl::tensor::CubeTensor;
use wgpu_softmax::{Distill, DistillBuffers, DistillReduction, Reduction, Shape};

use crate::bind::{Launch, float_dtype};
use crate::convert::{self, Cube, Float};
use crate::cross_entropy::{check_targets, scale_rows, target_buffer};
use crate::error::{Error, Result};

/// The fused distillation loss of `student` logits against `teacher` logits (`[N, C]`,
/// one float dtype) with the library's options `op` (temperature, reduction: batchmean,
/// sum or none; `ignore_index` for rows masked by `targets`): the loss `[1]` (batchmean
/// or sum) or `[N]` (none), in f32. PyTorch's
/// `kl_div(log_softmax(s / T), softmax(t / T), reduction='batchmean') * T * T`.
///
/// On an autodiff device with `student` tracked, the pass that computes the loss also
/// writes the gradient with respect to the student (`[N, C]`), which is all it keeps; the
/// backward pass scales it by the incoming gradient. The teacher takes no gradient (it is
/// read as a constant, as a teacher's logits are). `op`'s own gradient setting is ignored.
///
/// # Errors
///
/// [`Error::ShapeMismatch`] when `student` is not 2-D or `teacher` or `targets` do not
/// match it, [`Error::DTypeMismatch`] when the teacher's dtype differs,
/// [`Error::UnsupportedDType`], [`Error::UnknownDevice`], [`Error::DeviceMismatch`], and
/// the library's errors (a bad temperature: [`wgpu_softmax::Error::InvalidOption`]).
pub fn distill(
    student: Tensor<2>,
    teacher: Tensor<2>,
    targets: Option<Tensor<1, Int>>,
    op: Distill,
) -> Result<Tensor<1>> {
    op.check_options()?;
    let teacher = convert::constant("teacher", teacher)?;
    let targets = targets.map(|t| convert::int("targets", t)).transpose()?;
    match convert::float("student", student)? {
        Float::Plain(student) => Ok(convert::plain(forward(op, student, teacher, targets, false)?.0)),
        Float::Tracked(student) => {
            let (primitive, node) = student.into_parts();
            let backward = DistillBackward { reduction: op.get_reduction() };
            Ok(convert::tracked(
                match backward.prepare::<NoCheckpointing>([node]).compute_bound().stateful() {
                    OpsKind::Tracked(prep) => {
                        let (loss, grad) = forward(op, primitive, teacher, targets, true)?;
                        let grad =
                            grad.ok_or_else(|| Error::Runtime("the gradient was not written".into()))?;
                        prep.finish(grad, loss)
                    }
                    OpsKind::UnTracked(prep) => {
                        prep.finish(forward(op, primitive, teacher, targets, false)?.0)
                    }
                },
            ))
        }
    }
}

fn forward(
    op: Distill,
    student: CubeTensor,
    teacher: CubeTensor,
    targets: Option<CubeTensor>,
    with_grad: bool,
) -> Result<(CubeTensor, Option<CubeTensor>)> {
    let dtype = float_dtype("student", student.dtype)?;
    let shape = student.shape();
    if shape.num_dims() != 2 || shape.num_elements() == 0 {
        return Err(Error::ShapeMismatch {
            what: "student",
            problem: format!("shape {shape:?}; expected [rows, classes], not empty"),
        });
    }
    if teacher.shape() != shape {
        return Err(Error::ShapeMismatch {
            what: "teacher",
            problem: format!("shape {:?}, but the student's is {shape:?}", teacher.shape()),
        });
    }
    if teacher.dtype != student.dtype {
        return Err(Error::DTypeMismatch {
            what: "teacher",
            found: format!("{:?}", teacher.dtype),
            other: "student",
            expected: format!("{:?}", student.dtype),
        });
    }
    let (rows, cols) = (shape[0], shape[1]);
    if let Some(targets) = &targets {
        check_targets(targets, rows)?;
    }
    let launch = Launch::on("student", &student)?;
    let student = launch.input("student", student)?;
    let teacher = launch.input("teacher", teacher)?;
    let targets = targets.map(|t| launch.input("targets", t)).transpose()?;
    let rows_out = if op.get_reduction() == DistillReduction::None { rows } else { 1 };
    let loss = launch.output(BurnShape::new([rows_out]), BurnDType::F32)?;
    let grad = with_grad.then(|| launch.output(student.tensor.shape(), student.tensor.dtype)).transpose()?;
    let op = op.gradient(with_grad);
    launch.submit(|ctx, encoder| {
        let mut buffers =
            DistillBuffers::new(student.tensor_ref(dtype), teacher.tensor_ref(dtype), loss.region());
        if let Some(targets) = &targets {
            buffers = buffers.with_targets(target_buffer(targets)?);
        }
        if let Some(grad) = &grad {
            buffers = buffers.with_grad(grad.tensor_ref(dtype));
        }
        op.encode(ctx, encoder, &buffers, Shape::new(rows, cols))?;
        Ok(())
    })?;
    Ok((loss.tensor, grad.map(|g| g.tensor)))
}

/// The backward of the distillation: the student's gradient written in the forward pass,
/// scaled by the incoming gradient.
#[derive(Debug)]
struct DistillBackward {
    reduction: DistillReduction,
}

impl Backward<Cube, 1> for DistillBackward {
    type State = CubeTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let dloss = grads.consume::<Cube>(&ops.node);
        if let Some(parent) = parent {
            let per_row =
                if self.reduction == DistillReduction::None { Reduction::None } else { Reduction::Sum };
            grads.register::<Cube>(parent.id, scale_rows(ops.state, dloss, per_row));
        }
    }
}
