//! The host API of the linear cross-entropy: checks, uploads, one submission, read-back.

use super::{
    LinearCrossEntropy, LinearCrossEntropyBuffers, LinearCrossEntropyInput, LinearCrossEntropyOutput,
};
use crate::context::Context;
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::ops::cross_entropy::{Reduction, STATUS_WORDS, TargetBuffer, Targets, check_class_targets};
use crate::record::Recorder;
use crate::shape::Shape;
use crate::tensor::TensorRef;

impl LinearCrossEntropy {
    /// Runs the op on host data and reads back the loss, the logsumexp when asked for
    /// ([`LinearCrossEntropy::lse`]) and the gradients asked for
    /// ([`LinearCrossEntropy::gradients`]; the bias's only with a bias), waiting at most
    /// the context's timeout for each window of rows (each is submitted on its own). The
    /// targets are checked before any GPU work.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] for a wrong length of an input; [`Error::TargetOutOfRange`]
    /// naming the row and value of a bad class index; [`Error::InvalidOption`] for a bad
    /// option, probability targets, or an upstream gradient with a reduction other than
    /// none; and the errors of [`LinearCrossEntropy::encode`].
    pub fn run<T: Element>(
        &self,
        ctx: &Context,
        input: &LinearCrossEntropyInput<'_, T>,
    ) -> Result<LinearCrossEntropyOutput<T, f32>> {
        self.check_input(input)?;
        let shape = input.shape;
        let loss_op = self.loss.for_host_targets();
        let op = Self { loss: loss_op, ..*self };
        let rows = if self.loss.get_reduction() == Reduction::None { shape.rows } else { 1 };
        let wants = self.gradients;
        let dtype = T::DTYPE;
        ctx.catching(|| {
            let hidden = ctx.upload_elements(input.hidden)?;
            let classifier = ctx.upload_elements(input.classifier)?;
            let bias = input.bias.map(|b| ctx.upload_elements(b)).transpose()?;
            let targets = ctx.upload_elements(&loss_op.gpu_targets(input.targets))?;
            let weight = input.weight.map(|w| ctx.upload_elements(w)).transpose()?;
            let grad_output = input.grad_output.map(|g| ctx.upload_elements(g)).transpose()?;
            let loss = ctx.storage_buffer(rows)?;
            let lse = self.loss.get_lse().then(|| ctx.storage_buffer(shape.rows)).transpose()?;
            let grad_hidden =
                wants.hidden.then(|| ctx.elements_buffer(dtype, shape.rows * shape.hidden)).transpose()?;
            let grad_classifier = wants
                .classifier
                .then(|| ctx.elements_buffer(dtype, shape.classes * shape.hidden))
                .transpose()?;
            let grad_bias = (wants.bias && input.bias.is_some())
                .then(|| ctx.elements_buffer(dtype, shape.classes))
                .transpose()?;
            let status = ctx.storage_buffer(STATUS_WORDS)?;

            let tensor = |b| TensorRef::new(b, dtype);
            let mut buffers = LinearCrossEntropyBuffers::new(
                tensor(&hidden),
                tensor(&classifier),
                TargetBuffer::I32((&targets).into()),
                &loss,
            )
            .with_status(&status);
            buffers.bias = bias.as_ref().map(tensor);
            buffers.weight = weight.as_ref().map(Into::into);
            buffers.grad_output = grad_output.as_ref().map(Into::into);
            buffers.lse = lse.as_ref().map(Into::into);
            buffers.grad_hidden = grad_hidden.as_ref().map(tensor);
            buffers.grad_classifier = grad_classifier.as_ref().map(tensor);
            buffers.grad_bias = grad_bias.as_ref().map(tensor);
            let new_encoder = || {
                ctx.device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-softmax") })
            };
            let mut encoder = new_encoder();
            // One submission per window, each waited for within the context's timeout.
            op.encode_windows(ctx, &mut Recorder::new(&mut encoder), &buffers, shape, &mut |recorder| {
                ctx.submit_and_wait(std::mem::replace(recorder.encoder(), new_encoder()))
            })?;

            let elements = |len: usize| len as u64 * dtype.size();
            let mut parts: Vec<(&wgpu::Buffer, u64)> = vec![(&loss, 4 * rows as u64)];
            parts.extend(lse.as_ref().map(|b| (b, 4 * shape.rows as u64)));
            parts.extend(grad_hidden.as_ref().map(|b| (b, elements(shape.rows * shape.hidden))));
            parts.extend(grad_classifier.as_ref().map(|b| (b, elements(shape.classes * shape.hidden))));
            parts.extend(grad_bias.as_ref().map(|b| (b, elements(shape.classes))));
            let mut read = ctx.finish_and_read_many(encoder, &parts)?.into_iter();
            let mut next = || read.next().unwrap_or_default();
            let floats = |bytes: Vec<u8>| bytemuck::pod_collect_to_vec::<u8, f32>(&bytes);
            let values = |bytes: Vec<u8>| bytemuck::pod_collect_to_vec::<u8, T>(&bytes);
            let loss = floats(next());
            Ok(LinearCrossEntropyOutput {
                // No logits at all: the cross-entropy's loss of an empty batch (NaN for
                // the mean, as in PyTorch).
                loss: if shape.rows == 0 || shape.classes == 0 {
                    self.loss.empty_loss(shape.rows)
                } else {
                    loss
                },
                lse: lse.as_ref().map(|_| floats(next())),
                grad_hidden: grad_hidden.as_ref().map(|_| values(next())),
                grad_classifier: grad_classifier.as_ref().map(|_| values(next())),
                grad_bias: grad_bias.as_ref().map(|_| values(next())),
            })
        })
    }

    /// Checks host inputs completely (lengths, targets, options), as
    /// [`LinearCrossEntropy::run`] does before any GPU work.
    ///
    /// # Errors
    ///
    /// As [`LinearCrossEntropy::run`]'s input errors.
    pub fn check_input<T: Element>(&self, input: &LinearCrossEntropyInput<'_, T>) -> Result<()> {
        self.loss.check_options()?;
        let shape = input.shape;
        Shape::new(shape.rows, shape.hidden).check_len("hidden", input.hidden.len())?;
        Shape::new(shape.classes, shape.hidden).check_len("classifier", input.classifier.len())?;
        if let Some(b) = input.bias {
            Shape::new(shape.classes, 1).check_len("bias", b.len())?;
        }
        if let Some(w) = input.weight {
            Shape::new(shape.classes, 1).check_len("weight", w.len())?;
        }
        if let Some(g) = input.grad_output {
            if self.loss.get_reduction() != Reduction::None {
                return Err(Error::InvalidOption {
                    option: "grad_output",
                    problem: "an upstream gradient per row needs reduction none".into(),
                });
            }
            Shape::new(shape.rows, 1).check_len("grad_output", g.len())?;
        }
        let logits = shape.logits();
        let ignore = self.loss.get_ignore_index();
        match input.targets {
            Targets::U32(t) => check_class_targets(logits, t.iter().map(|&v| i64::from(v)), ignore),
            Targets::I32(t) => check_class_targets(logits, t.iter().map(|&v| i64::from(v)), ignore),
            Targets::I64(t) => check_class_targets(logits, t.iter().copied(), ignore),
            Targets::Probabilities(_) => Err(Error::InvalidOption {
                option: "targets",
                problem: "the linear cross-entropy takes class-index targets (u32, i32 or i64)".into(),
            }),
        }
    }
}
