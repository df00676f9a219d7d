//! The host API of the cross-entropy: checks every input before any GPU work, uploads,
//! records, submits once and reads every result back.

use super::{
    CrossEntropy, CrossEntropyBuffers, CrossEntropyInput, CrossEntropyOutput, CrossEntropyStatus, Gradient,
    Reduction, STATUS_WORDS, TargetBuffer, Targets,
};
use crate::context::Context;
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tensor::{BufferRegion, TensorRef};

impl CrossEntropy {
    /// Runs the op on host data and reads every result back, waiting at most the
    /// context's timeout. The targets are checked before any GPU work. Logits (and
    /// probability targets) of any element type: the gradient comes back in it, the losses
    /// in f32.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] for a wrong length of logits, targets, weight or upstream
    /// gradient; [`Error::TargetOutOfRange`] naming the row and value of a bad class index;
    /// [`Error::InvalidProbability`] for a negative or non-finite target probability;
    /// [`Error::InvalidOption`] for a bad option or an upstream gradient with a reduction
    /// other than none; and the errors of [`CrossEntropy::encode`].
    pub fn run<T: Element>(
        &self,
        ctx: &Context,
        input: &CrossEntropyInput<'_, T>,
    ) -> Result<CrossEntropyOutput<T, f32>> {
        self.check_input(input)?;
        let shape = input.shape;
        let probabilities = matches!(input.targets, Targets::Probabilities(_));
        self.plan_for(ctx, shape, T::DTYPE, crate::kernels::VectorWidth::Vec4, probabilities)?;
        // The z-loss's own part comes from the logsumexp: read it back whenever there is one.
        let op = if self.z_loss > 0.0 { self.lse(true) } else { *self };
        let rows_per_piece = crate::ops::rows::rows_per_buffer(ctx, shape, T::DTYPE)?;
        let mut out = if rows_per_piece < shape.rows {
            op.run_in_pieces(ctx, input, rows_per_piece)?
        } else {
            op.run_whole(ctx, input)?
        };
        if self.z_loss > 0.0 {
            out.z_loss = out.lse.as_deref().map(|lse| self.z_loss_part(input.targets, lse));
            if !self.lse {
                out.lse = None;
            }
        }
        Ok(out)
    }

    /// The z-loss on its own, reduced as the loss is, from each row's logsumexp: in f64,
    /// in row order, over the rows not ignored.
    #[allow(clippy::cast_possible_truncation)] // reported in f32, as the loss
    fn z_loss_part<T: Element>(&self, targets: Targets<'_, T>, lse: &[f32]) -> Vec<f32> {
        let ignored = |row: usize| match targets {
            Targets::U32(t) => i64::from(t[row]) == self.ignore_index,
            Targets::I32(t) => i64::from(t[row]) == self.ignore_index,
            Targets::I64(t) => t[row] == self.ignore_index,
            Targets::Probabilities(_) => false,
        };
        let z = f64::from(self.z_loss);
        let rows: Vec<f64> = lse
            .iter()
            .enumerate()
            .map(|(row, &l)| if ignored(row) { 0.0 } else { z * f64::from(l) * f64::from(l) })
            .collect();
        let count = (0..lse.len()).filter(|&row| !ignored(row)).count();
        match self.reduction {
            Reduction::None => rows.iter().map(|&v| v as f32).collect(),
            Reduction::Sum => vec![rows.iter().sum::<f64>() as f32],
            Reduction::Mean if count == 0 => vec![f32::NAN],
            Reduction::Mean => vec![(rows.iter().sum::<f64>() / count as f64) as f32],
        }
    }

    /// Data larger than one buffer may be: runs pieces of whole rows with reduction none,
    /// each row's gradient scaled as the reduction wants through the upstream gradient,
    /// and reduces the row losses here, in f64 and in row order.
    fn run_in_pieces<T: Element>(
        &self,
        ctx: &Context,
        input: &CrossEntropyInput<'_, T>,
        rows_per_piece: usize,
    ) -> Result<CrossEntropyOutput<T, f32>> {
        let shape = input.shape;
        let weight = |class: usize| input.weight.map_or(1.0, |w| f64::from(w[class]));
        // The mean's divisor, as the GPU path computes it: the summed weights of the class
        // targets not ignored, or the number of rows for probabilities.
        let divisor: f64 = match input.targets {
            Targets::Probabilities(_) => shape.rows as f64,
            Targets::U32(t) => self.divisor(t.iter().map(|&v| i64::from(v)), weight),
            Targets::I32(t) => self.divisor(t.iter().map(|&v| i64::from(v)), weight),
            Targets::I64(t) => self.divisor(t.iter().copied(), weight),
        };
        #[allow(clippy::cast_possible_truncation)] // the scale is an f32 on the GPU too
        let scale = match self.reduction {
            Reduction::Mean if divisor == 0.0 => 0.0,
            Reduction::Mean => (1.0 / divisor) as f32,
            Reduction::Sum | Reduction::None => 1.0,
        };
        // The z-loss's mean divides by the rows not ignored, the rest by the divisor: both
        // under the common 1 / divisor, the z-loss scaled by divisor / count (as the GPU
        // path does).
        let count = match input.targets {
            Targets::Probabilities(_) => shape.rows as f64,
            Targets::U32(t) => self.divisor(t.iter().map(|&v| i64::from(v)), |_| 1.0),
            Targets::I32(t) => self.divisor(t.iter().map(|&v| i64::from(v)), |_| 1.0),
            Targets::I64(t) => self.divisor(t.iter().copied(), |_| 1.0),
        };
        #[allow(clippy::cast_possible_truncation)] // the coefficient is an f32 on the GPU too
        let z_loss = match self.reduction {
            Reduction::Mean if count > 0.0 => (f64::from(self.z_loss) * divisor / count) as f32,
            _ => self.z_loss,
        };
        let piece_op = self.reduction(Reduction::None).z_loss(z_loss);
        let mut out = CrossEntropyOutput::<T, f32> {
            loss: Vec::new(),
            grad: (self.gradient != Gradient::Skip).then(Vec::new),
            argmax: self.argmax.then(Vec::new),
            correct: (self.argmax && !matches!(input.targets, Targets::Probabilities(_))).then_some(0),
            lse: self.lse.then(Vec::new),
            z_loss: None,
        };
        for first_row in (0..shape.rows).step_by(rows_per_piece) {
            let rows = rows_per_piece.min(shape.rows - first_row);
            let (cells, row_range) =
                (first_row * shape.cols..(first_row + rows) * shape.cols, first_row..first_row + rows);
            let targets = match input.targets {
                Targets::U32(t) => Targets::U32(&t[row_range.clone()]),
                Targets::I32(t) => Targets::I32(&t[row_range.clone()]),
                Targets::I64(t) => Targets::I64(&t[row_range.clone()]),
                Targets::Probabilities(p) => Targets::Probabilities(&p[cells.clone()]),
            };
            let constant_scale = vec![scale; rows];
            let upstream = input.grad_output.map_or(constant_scale.as_slice(), |g| &g[row_range]);
            let mut piece = CrossEntropyInput::new(&input.logits[cells], Shape { rows, ..shape }, targets)
                .grad_output(upstream);
            piece.weight = input.weight;
            let result = piece_op.run_whole(ctx, &piece).map_err(|e| match e {
                Error::TargetOutOfRange { row, value, classes, ignore_index } => {
                    Error::TargetOutOfRange { row: row + first_row, value, classes, ignore_index }
                }
                other => other,
            })?;
            out.loss.extend(result.loss);
            if let (Some(all), Some(part)) = (out.grad.as_mut(), result.grad) {
                all.extend(part);
            }
            if let (Some(all), Some(part)) = (out.argmax.as_mut(), result.argmax) {
                all.extend(part);
            }
            if let (Some(all), Some(part)) = (out.correct.as_mut(), result.correct) {
                *all += part;
            }
            if let (Some(all), Some(part)) = (out.lse.as_mut(), result.lse) {
                all.extend(part);
            }
        }
        #[allow(clippy::cast_possible_truncation)] // the loss is reported in f32
        let reduce =
            |divide_by: f64| (out.loss.iter().map(|&l| f64::from(l)).sum::<f64>() / divide_by) as f32;
        out.loss = match self.reduction {
            Reduction::None => out.loss,
            Reduction::Sum => vec![reduce(1.0)],
            Reduction::Mean if divisor == 0.0 => vec![f32::NAN],
            Reduction::Mean => vec![reduce(divisor)],
        };
        Ok(out)
    }

    /// The summed weights of the class targets that are not ignored.
    fn divisor(&self, targets: impl Iterator<Item = i64>, weight: impl Fn(usize) -> f64) -> f64 {
        targets.filter(|&t| t != self.ignore_index).map(|t| weight(usize::try_from(t).unwrap_or(0))).sum()
    }

    /// All rows at once: one set of buffers, one submission.
    fn run_whole<T: Element>(
        &self,
        ctx: &Context,
        input: &CrossEntropyInput<'_, T>,
    ) -> Result<CrossEntropyOutput<T, f32>> {
        let shape = input.shape;
        let (rows, len) = (shape.rows, shape.len()?);
        let element_bytes = T::DTYPE.size();
        ctx.catching(|| {
            let logits = ctx.upload_elements(input.logits)?;
            let class_targets;
            let probability_targets;
            let targets = match input.targets {
                Targets::Probabilities(p) => {
                    probability_targets = ctx.upload_elements(p)?;
                    TargetBuffer::Probabilities(TensorRef::new(&probability_targets, T::DTYPE))
                }
                _ => {
                    class_targets = ctx.upload_elements(&self.gpu_targets(input.targets))?;
                    TargetBuffer::I32(BufferRegion::new(&class_targets))
                }
            };
            let weight = input.weight.map(|w| ctx.upload_elements(w)).transpose()?;
            let grad_output = input.grad_output.map(|g| ctx.upload_elements(g)).transpose()?;
            let loss_len = if self.reduction == Reduction::None { rows } else { 1 };
            let loss = ctx.storage_buffer(loss_len)?;
            let grad = (self.gradient == Gradient::Separate)
                .then(|| ctx.elements_buffer(T::DTYPE, len))
                .transpose()?;
            let argmax = self.argmax.then(|| ctx.storage_buffer(rows)).transpose()?;
            let lse = self.lse.then(|| ctx.storage_buffer(rows)).transpose()?;
            let status = ctx.storage_buffer(STATUS_WORDS)?;
            let mut buffers = CrossEntropyBuffers::new(TensorRef::new(&logits, T::DTYPE), targets, &loss)
                .with_status(&status);
            buffers.weight = weight.as_ref().map(BufferRegion::new);
            buffers.grad_output = grad_output.as_ref().map(BufferRegion::new);
            buffers.grad = grad.as_ref().map(|g| TensorRef::new(g, T::DTYPE));
            buffers.argmax = argmax.as_ref().map(BufferRegion::new);
            buffers.lse = lse.as_ref().map(BufferRegion::new);
            let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgpu-softmax: cross_entropy"),
            });
            self.for_host_targets().encode(ctx, &mut encoder, &buffers, shape)?;
            let f32_bytes = |n: usize| crate::transfer::f32_bytes(n);
            let grad_source = match self.gradient {
                Gradient::Separate => grad.as_ref(),
                Gradient::InPlace => Some(&logits),
                Gradient::Skip => None,
            };
            let mut parts =
                vec![(&loss, f32_bytes(if shape.is_empty() { 0 } else { loss_len })), (&status, 16)];
            if let Some(g) = grad_source {
                parts.push((g, len as u64 * element_bytes));
            }
            if let Some(a) = argmax.as_ref() {
                parts.push((a, f32_bytes(rows)));
            }
            if let Some(l) = lse.as_ref() {
                parts.push((l, f32_bytes(rows)));
            }
            let mut read = ctx.finish_and_read_many(encoder, &parts)?.into_iter();
            let mut next = || read.next().unwrap_or_default();
            let loss_bytes = next();
            let status = CrossEntropyStatus::from_words(&bytemuck::pod_collect_to_vec(&next()));
            if let Some(row) = status.first_bad_target_row {
                // The host checks make this unreachable; if the GPU disagrees, say so
                // in the same terms rather than return NaN silently.
                return Err(target_error(input.targets, row as usize, shape.cols, self.ignore_index));
            }
            let grad = grad_source.map(|_| bytemuck::pod_collect_to_vec(&next()));
            let argmax: Option<Vec<u32>> = argmax.as_ref().map(|_| bytemuck::pod_collect_to_vec(&next()));
            let mut lse: Option<Vec<f32>> = lse.as_ref().map(|_| bytemuck::pod_collect_to_vec(&next()));
            if shape.is_empty() {
                // No dispatch ran: rows without classes have the logsumexp of nothing.
                lse = lse.map(|_| vec![f32::NEG_INFINITY; rows]);
            }
            let mut loss: Vec<f32> = bytemuck::pod_collect_to_vec(&loss_bytes);
            if shape.is_empty() {
                loss = self.empty_loss(rows);
            }
            let correct = (self.argmax && !matches!(input.targets, Targets::Probabilities(_)))
                .then_some(status.correct);
            Ok(CrossEntropyOutput { loss, grad, argmax, correct, lse, z_loss: None })
        })
    }

    /// What the loss of an empty batch is: nothing per row, 0 for the sum, NaN for the
    /// mean (a mean over no rows, as in PyTorch).
    pub(crate) fn empty_loss(&self, rows: usize) -> Vec<f32> {
        match self.reduction {
            Reduction::None => vec![0.0; rows],
            Reduction::Sum => vec![0.0],
            Reduction::Mean => vec![f32::NAN],
        }
    }

    /// Checks host inputs completely (shapes, targets, options), as [`CrossEntropy::run`]
    /// does before any GPU work.
    ///
    /// # Errors
    ///
    /// As [`CrossEntropy::run`]'s input errors.
    pub fn check_input<T: Element>(&self, input: &CrossEntropyInput<'_, T>) -> Result<()> {
        self.check_options()?;
        let shape = input.shape;
        shape.check_len("logits", input.logits.len())?;
        if let Some(w) = input.weight {
            Shape::new(shape.cols, 1).check_len("weight", w.len())?;
        }
        if let Some(g) = input.grad_output {
            if self.reduction != Reduction::None {
                return Err(Error::InvalidOption {
                    option: "grad_output",
                    problem: "an upstream gradient per row needs reduction none".into(),
                });
            }
            Shape::new(shape.rows, 1).check_len("grad_output", g.len())?;
        }
        match input.targets {
            Targets::Probabilities(p) => {
                shape.check_len("targets", p.len())?;
                match p.iter().position(|v| !(v.to_f32().is_finite() && v.to_f32() >= 0.0)) {
                    Some(index) => Err(Error::InvalidProbability {
                        row: index / shape.cols.max(1),
                        col: index % shape.cols.max(1),
                        value: p[index].to_f32(),
                    }),
                    None => Ok(()),
                }
            }
            Targets::U32(t) => check_class_targets(shape, t.iter().map(|&v| i64::from(v)), self.ignore_index),
            Targets::I32(t) => check_class_targets(shape, t.iter().map(|&v| i64::from(v)), self.ignore_index),
            Targets::I64(t) => check_class_targets(shape, t.iter().copied(), self.ignore_index),
        }
    }

    /// The target words to upload: probabilities as f32 bits, class indices as i32. After
    /// the host checks, every class target is `ignore_index` or in range; ignored rows
    /// become the i32 `ignore_index` the GPU is told about (-1 where it does not fit).
    pub(crate) fn gpu_targets<T: Element>(&self, targets: Targets<'_, T>) -> Vec<u32> {
        let stand_in = i32::try_from(self.ignore_index).unwrap_or(-1);
        let to_word = |v: i64| {
            let class = if v == self.ignore_index { stand_in } else { i32::try_from(v).unwrap_or(stand_in) };
            class.cast_unsigned()
        };
        let words: Vec<u32> = match targets {
            // Probabilities go up as a tensor of their own type, not as words.
            Targets::Probabilities(_) => Vec::new(),
            Targets::U32(t) => t.iter().map(|&v| to_word(i64::from(v))).collect(),
            Targets::I32(t) => t.iter().map(|&v| to_word(i64::from(v))).collect(),
            Targets::I64(t) => t.iter().map(|&v| to_word(v)).collect(),
        };
        words
    }

    /// The ignore index the GPU sees for host targets (see [`CrossEntropy::gpu_targets`]).
    pub(crate) fn for_host_targets(self) -> Self {
        Self { ignore_index: i64::from(i32::try_from(self.ignore_index).unwrap_or(-1)), ..self }
    }
}

pub(crate) fn check_class_targets(
    shape: Shape,
    targets: impl ExactSizeIterator<Item = i64>,
    ignore_index: i64,
) -> Result<()> {
    Shape::new(shape.rows, 1).check_len("targets", targets.len())?;
    let classes = i64::try_from(shape.cols).unwrap_or(i64::MAX);
    for (row, value) in targets.enumerate() {
        if value != ignore_index && !(0..classes).contains(&value) {
            return Err(Error::TargetOutOfRange { row, value, classes: shape.cols, ignore_index });
        }
    }
    Ok(())
}

/// The host's typed error for a row the GPU reported as a bad target.
fn target_error<T: Element>(targets: Targets<'_, T>, row: usize, classes: usize, ignore_index: i64) -> Error {
    let value = match targets {
        Targets::U32(t) => t.get(row).map(|&v| i64::from(v)),
        Targets::I32(t) => t.get(row).map(|&v| i64::from(v)),
        Targets::I64(t) => t.get(row).copied(),
        Targets::Probabilities(_) => None,
    };
    Error::TargetOutOfRange { row, value: value.unwrap_or(i64::MIN), classes, ignore_index }
}
