//! The binding slots of every module, as one enum: an op declares its bindings by slot and
//! the host binds buffers by slot, so that a misspelt binding is a compile error, and a
//! required binding left unbound is an error (see [`bind`]) instead of a placeholder.

use super::Module;

/// One binding of a module, by what it holds. Its WGSL name is [`Slot::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// The `Params` uniform.
    Params,
    /// Softmax's input.
    Input,
    /// Softmax's output.
    Output,
    /// The backward's forward output.
    Y,
    /// The backward's upstream gradient.
    Dy,
    /// The backward's result.
    Dx,
    /// A cross-entropy's or the sampler's logits.
    Logits,
    /// A gradient with respect to the logits, in its own tensor.
    Grad,
    /// Probability targets, one per class and row.
    TargetProbs,
    /// The distillation's student logits.
    Student,
    /// The distillation's teacher logits.
    Teacher,
    /// Class targets, one per row.
    Targets,
    /// Class weights.
    Weight,
    /// Reduction none: the upstream gradient per row; mean: the reductions' totals.
    Scale,
    /// Each row's loss.
    RowLoss,
    /// Each row's predicted class.
    Argmax,
    /// Status words, written with atomics.
    Status,
    /// Each row's logsumexp.
    Lse,
    /// The reductions' totals per chunk of rows.
    Totals,
    /// The reduced loss.
    Loss,
    /// The z-loss on its own.
    ZLoss,
    /// A matrix product's left operand (the hidden states).
    A,
    /// A matrix product's right operand (the classifier).
    B,
    /// The product's bias.
    Bias,
    /// The product's f32 result.
    C,
    /// The 16-bit rounding of `C`.
    Packed,
    /// The sampler's token ids.
    Ids,
    /// The sampler's log-probabilities of its draws.
    Logprobs,
    /// The sampler's state per row between its steps.
    State,
    /// The split strategy's shares of each row.
    SegmentShares,
    /// The 16-bit edge pass's words shared by two rows.
    Edges,
    /// The packed cross-entropy's scratch: the argmax, the logsumexp and the edge words.
    Extras,
    /// The sampler's filtered, renormalised probabilities.
    SampleProbs,
    /// The sampler's masked logits (filtered-out ones `-inf`).
    MaskedLogits,
    /// The chain verifier's draft token ids.
    DraftIds,
    /// The chain verifier's draft probabilities.
    DraftProbs,
    /// The chain verifier's count of accepted drafts per row.
    Accepted,
}

impl Slot {
    /// Its name in the WGSL (and the prefix of a tensor's accessors: `name_load`...).
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Params => "params",
            Self::Input => "input",
            Self::Output => "output",
            Self::Y => "y",
            Self::Dy => "dy",
            Self::Dx => "dx",
            Self::Logits => "logits",
            Self::Grad => "grad",
            Self::TargetProbs => "target_probs",
            Self::Student => "student",
            Self::Teacher => "teacher",
            Self::Targets => "targets",
            Self::Weight => "weight",
            Self::Scale => "scale",
            Self::RowLoss => "row_loss",
            Self::Argmax => "argmax",
            Self::Status => "status",
            Self::Lse => "lse",
            Self::Totals => "totals",
            Self::Loss => "loss",
            Self::ZLoss => "z_loss",
            Self::A => "a",
            Self::B => "b",
            Self::Bias => "bias",
            Self::C => "c",
            Self::Packed => "packed",
            Self::Ids => "ids",
            Self::Logprobs => "logprobs",
            Self::State => "state",
            Self::SegmentShares => "segment_shares",
            Self::Edges => "edges",
            Self::Extras => "extras",
            Self::SampleProbs => "sample_probs",
            Self::MaskedLogits => "masked_logits",
            Self::DraftIds => "draft_ids",
            Self::DraftProbs => "draft_probs",
            Self::Accepted => "accepted",
        }
    }
}

/// The buffers of `module`'s bindings in binding order: the params uniform, then each
/// binding's buffer from `bound`, and a placeholder for a binding the op declares
/// optional and the dispatch leaves unbound.
///
/// # Errors
///
/// [`crate::Error::Validation`] naming the slot, for a required binding left unbound or a
/// buffer bound to a slot the module lacks: both are bugs in an op, which the tests catch
/// rather than a placeholder hiding them.
pub(crate) fn bind<'a>(
    module: &Module,
    params: &'a wgpu::Buffer,
    bound: &[(Slot, wgpu::BufferBinding<'a>)],
    placeholder: impl Fn(usize) -> &'a wgpu::Buffer,
) -> crate::error::Result<Vec<wgpu::BufferBinding<'a>>> {
    let slots: Vec<Slot> = bound.iter().map(|(slot, _)| *slot).collect();
    check_slots(module, &slots)?;
    Ok(module
        .bindings
        .iter()
        .enumerate()
        .map(|(i, binding)| {
            if binding.slot == Slot::Params {
                return params.as_entire_buffer_binding();
            }
            bound
                .iter()
                .find(|(slot, _)| *slot == binding.slot)
                .map_or_else(|| placeholder(i).as_entire_buffer_binding(), |(_, buffer)| buffer.clone())
        })
        .collect())
}

/// Checks that `bound` names only slots `module` declares, and every slot it requires.
///
/// # Errors
///
/// As [`bind`].
fn check_slots(module: &Module, bound: &[Slot]) -> crate::error::Result<()> {
    let bug = |what: String| {
        crate::error::Error::Validation(format!("{what} in {} (a bug in wgpu-softmax)", module.spec.label()))
    };
    if let Some(slot) = bound.iter().find(|&&slot| !module.bindings.iter().any(|b| b.slot == slot)) {
        return Err(bug(format!("a buffer bound to `{}`, which the module does not declare", slot.name())));
    }
    let required = module.bindings.iter().filter(|b| !b.optional && b.slot != Slot::Params);
    if let Some(missing) = required.clone().find(|b| !bound.contains(&b.slot)) {
        return Err(bug(format!("the required binding `{}` left unbound", missing.slot.name())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::kernels::{GroupShape, KernelSpec, OpKernel, VectorWidth, compose};
    use crate::strategy::Strategy;

    fn module(op: OpKernel) -> Module {
        let spec = KernelSpec {
            op,
            strategy: Strategy::WorkgroupPerRow,
            dtype: DType::F32,
            vector: VectorWidth::Scalar,
            cached: false,
            strided: false,
            paired: false,
            group: GroupShape::DEFAULT,
        };
        compose(spec).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_missing_or_foreign_slot_is_an_error_and_an_optional_one_is_not() {
        let softmax = module(OpKernel::Softmax);
        assert!(check_slots(&softmax, &[Slot::Input, Slot::Output]).is_ok());
        let missing = check_slots(&softmax, &[Slot::Input]).unwrap_err().to_string();
        assert!(missing.contains("required binding `output`"), "{missing}");
        let foreign = check_slots(&softmax, &[Slot::Input, Slot::Output, Slot::Lse]).unwrap_err().to_string();
        assert!(foreign.contains("`lse`, which the module does not declare"), "{foreign}");
        // The sampler's log-probabilities are optional; its ids are not.
        let sample = module(OpKernel::Sample);
        assert!(check_slots(&sample, &[Slot::Logits, Slot::Ids, Slot::State, Slot::Status]).is_ok());
        assert!(check_slots(&sample, &[Slot::Logits, Slot::State, Slot::Status]).is_err());
    }

    #[test]
    fn every_binding_of_every_module_has_a_distinct_slot() {
        for spec in KernelSpec::all() {
            let module = compose(spec).unwrap_or_else(|e| panic!("{e}"));
            let mut slots: Vec<&str> = module.bindings.iter().map(|b| b.slot.name()).collect();
            slots.sort_unstable();
            let count = slots.len();
            slots.dedup();
            assert_eq!(slots.len(), count, "{}", spec.label());
        }
    }
}
