//! `wgpu-softmax plan`: what an op would dispatch for a shape on a device (a profile, or
//! the selected adapter), explained, without running it.

use std::io::Write as _;
use std::path::Path;

use wgpu_softmax::{
    DType, DeviceProfile, DistillReduction, Gradient, LinearGradients, PlanExplanation, PlanRequest,
    Reduction, Sampler, Shape,
};

use crate::args::{Cli, DTypeArg, GradientArg, PlanArgs, PlanOp, PlanReduction};
use crate::error::CliError;
use crate::profile;

/// Reads the profile at `path`.
///
/// # Errors
///
/// An unreadable file, or a bad profile ([`profile::ProfileError`]), named with the file.
pub fn read_profile(path: &Path) -> Result<DeviceProfile, CliError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| CliError::file(path, format!("cannot read: {e}")))?;
    profile::from_json(&text).map_err(|e| CliError::file(path, e))
}

/// The request `args` describe, and the shape planned (rows and classes).
///
/// # Errors
///
/// A shape of the wrong arity for the op, or options the op does not take.
pub fn request(args: &PlanArgs) -> Result<(PlanRequest, Shape), CliError> {
    let op_name = |op: PlanOp| match op {
        PlanOp::Softmax => "softmax",
        PlanOp::LogSoftmax => "log_softmax",
        PlanOp::SoftmaxBackward => "softmax_backward",
        PlanOp::LogSoftmaxBackward => "log_softmax_backward",
        PlanOp::CrossEntropy => "cross_entropy",
        PlanOp::Distill => "distill",
        PlanOp::LinearCrossEntropy => "linear_cross_entropy",
        PlanOp::Sample => "sample",
    };
    let name = op_name(args.op);
    let bad = |problem: String| CliError::new(format!("plan: --op {name}: {problem}"));
    let shape = match (args.op, args.shape.0.as_slice()) {
        (PlanOp::LinearCrossEntropy, &[n, _, v]) => Shape::new(n, v),
        (PlanOp::LinearCrossEntropy, _) => {
            return Err(bad(
                "--shape takes N,D,V (rows, hidden features, classes), as 4096,4096,128256".into()
            ));
        }
        (_, &[rows, cols]) => Shape::new(rows, cols),
        // A class axis with `inner` positions after it, as `Shape::with_inner` takes it.
        (op, &[outer, cols, inner]) if op != PlanOp::Sample => Shape::with_inner(outer, cols, inner),
        (PlanOp::Sample, _) => return Err(bad("--shape takes R,C (rows, classes), as 64,128256".into())),
        _ => {
            return Err(bad(
                "--shape takes R,C (rows, classes), as 4096,32768, or O,C,I (a class axis of C \
                            with O positions before it and I after it), as 8,21,16384"
                    .into(),
            ));
        }
    };
    let strategy = args.strategy.map(crate::args::StrategyArg::to_strategy);
    let loss_reduction = || match args.reduction {
        None | Some(PlanReduction::Mean) => Ok(Reduction::Mean),
        Some(PlanReduction::Sum) => Ok(Reduction::Sum),
        Some(PlanReduction::None) => Ok(Reduction::None),
        Some(PlanReduction::Batchmean) => Err(bad("--reduction takes mean, sum or none".into())),
    };
    let refuse_in_place = || {
        if args.gradient == GradientArg::InPlace {
            Err(bad("--gradient takes separate or none".into()))
        } else {
            Ok(args.gradient != GradientArg::None)
        }
    };
    let request = match args.op {
        PlanOp::Softmax | PlanOp::LogSoftmax => {
            PlanRequest::Softmax { log: args.op == PlanOp::LogSoftmax, strategy }
        }
        PlanOp::SoftmaxBackward | PlanOp::LogSoftmaxBackward => {
            PlanRequest::SoftmaxBackward { log: args.op == PlanOp::LogSoftmaxBackward, strategy }
        }
        PlanOp::CrossEntropy => PlanRequest::CrossEntropy {
            reduction: loss_reduction()?,
            gradient: match args.gradient {
                GradientArg::Separate => Gradient::Separate,
                GradientArg::InPlace => Gradient::InPlace,
                GradientArg::None => Gradient::Skip,
            },
            probabilities: args.probabilities,
            strategy,
        },
        PlanOp::Distill => PlanRequest::Distill {
            reduction: match args.reduction {
                None | Some(PlanReduction::Batchmean) => DistillReduction::BatchMean,
                Some(PlanReduction::Sum) => DistillReduction::Sum,
                Some(PlanReduction::None) => DistillReduction::None,
                Some(PlanReduction::Mean) => {
                    return Err(bad("--reduction takes batchmean, sum or none".into()));
                }
            },
            gradient: refuse_in_place()?,
            masked: args.masked,
            strategy,
        },
        PlanOp::LinearCrossEntropy => {
            if strategy.is_some() {
                return Err(bad("--strategy is for the row ops; the linear op plans its own passes".into()));
            }
            PlanRequest::LinearCrossEntropy {
                hidden: args.shape.0[1],
                reduction: loss_reduction()?,
                gradients: if refuse_in_place()? { LinearGradients::ALL } else { LinearGradients::NONE },
                bias: args.bias,
                workspace_bytes: args.workspace_bytes,
            }
        }
        PlanOp::Sample => {
            if strategy.is_some() {
                return Err(bad("--strategy is for the row ops; the sampler has its own kernel".into()));
            }
            PlanRequest::Sample(Sampler {
                temperature: args.temperature,
                top_k: args.top_k,
                top_p: args.top_p,
                num_samples: args.num_samples,
                ..Sampler::default()
            })
        }
    };
    Ok((request, shape))
}

/// The storage type of `--dtype`.
pub const fn dtype(arg: DTypeArg) -> DType {
    match arg {
        DTypeArg::F32 => DType::F32,
        DTypeArg::F16 => DType::F16,
        DTypeArg::Bf16 => DType::BF16,
    }
}

/// The explanation `args` ask for on `profile`.
///
/// # Errors
///
/// The request's errors, and the op's own for this device (named with the op).
pub fn explain_on_profile(profile: &DeviceProfile, args: &PlanArgs) -> Result<PlanExplanation, CliError> {
    let (request, shape) = request(args)?;
    let dtype = dtype(args.dtype);
    let cached = args.cached_rows.unwrap_or_else(|| profile.keeps_rows_by_default());
    profile
        .explain_with_cached_rows(&request, shape, dtype, cached)
        .map_err(|e| CliError::library(format!("plan: {} on {}", request.name(), profile.name), &e))
}

/// Explains the plan of `--op` for `--shape` on the profile or the selected adapter.
///
/// # Errors
///
/// A bad profile or request, no adapter, the op's own errors for this device, writing to
/// stdout failing.
pub fn run(cli: &Cli, args: &PlanArgs) -> Result<(), CliError> {
    let (explained, device) = match &args.profile {
        Some(path) => {
            if cli.adapter.is_some() {
                return Err(CliError::new("plan: give --profile or --adapter, not both"));
            }
            let profile = read_profile(path)?;
            (explain_on_profile(&profile, args)?, profile.name)
        }
        None => {
            let mut ctx = cli.context("plan: selecting an adapter")?;
            if let Some(cached) = args.cached_rows {
                ctx = ctx.with_cached_rows(cached);
            }
            let (request, shape) = request(args)?;
            let explained = ctx.explain(&request, shape, dtype(args.dtype)).map_err(|e| {
                CliError::library(format!("plan: {} on {}", request.name(), ctx.describe()), &e)
            })?;
            (explained, ctx.adapter_info().name.clone())
        }
    };
    let text = if args.json {
        profile::explanation_json(&explained, &device)
    } else {
        profile::explanation_text(&explained, &device)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
