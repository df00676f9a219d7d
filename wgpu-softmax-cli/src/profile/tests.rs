//! Profiles and plans without a GPU: every profile in the repository's `profiles/` read and
//! written back, every op planned on each at widths from 10 to 262144 in f32 and bf16, and
//! bad profiles refused with errors that name the field.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in a test, a failed unwrap is a failed test

use std::path::PathBuf;

use clap::Parser as _;
use wgpu_softmax::{
    DType, DeviceProfile, DistillReduction, Error, Gradient, LinearGradients, PlanExplanation, PlanRequest,
    Reduction, Sampler, Shape, Strategy,
};

use super::{ProfileError, explanation_json, from_json, to_json};
use crate::args::{Cli, Command};

/// The repository's `profiles/` directory.
fn profiles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("profiles")
}

/// Every profile there, by file name, sorted.
fn profiles() -> Vec<(String, DeviceProfile)> {
    let mut found: Vec<(String, DeviceProfile)> = std::fs::read_dir(profiles_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let profile = from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.file_stem().unwrap().to_string_lossy().into_owned(), profile)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The widths every op is planned at.
const WIDTHS: [usize; 10] = [10, 1000, 1025, 4096, 4097, 8192, 32768, 65536, 128_256, 262_144];

/// Rows of the shapes planned: a training batch.
const ROWS: usize = 4096;

/// `D` of the linear cross-entropy's shapes.
const HIDDEN: usize = 1024;

/// Every op, with the options that change what it dispatches.
fn requests() -> Vec<PlanRequest> {
    let mut requests = vec![
        PlanRequest::Softmax { log: false, strategy: None },
        PlanRequest::Softmax { log: true, strategy: None },
        PlanRequest::SoftmaxBackward { log: false, strategy: None },
    ];
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        for gradient in [Gradient::Separate, Gradient::InPlace, Gradient::Skip] {
            requests.push(PlanRequest::CrossEntropy {
                reduction,
                gradient,
                probabilities: false,
                strategy: None,
            });
        }
    }
    requests.push(PlanRequest::CrossEntropy {
        reduction: Reduction::Mean,
        gradient: Gradient::Separate,
        probabilities: true,
        strategy: None,
    });
    for (reduction, masked) in [(DistillReduction::BatchMean, true), (DistillReduction::None, false)] {
        for gradient in [true, false] {
            requests.push(PlanRequest::Distill { reduction, gradient, masked, strategy: None });
        }
    }
    for gradients in [LinearGradients::ALL, LinearGradients::NONE] {
        requests.push(PlanRequest::LinearCrossEntropy {
            hidden: HIDDEN,
            reduction: Reduction::Mean,
            gradients,
            bias: true,
            workspace_bytes: None,
        });
    }
    requests.push(PlanRequest::Sample(Sampler { top_k: 50, top_p: 0.9, ..Sampler::default() }));
    requests.push(PlanRequest::Sample(Sampler { temperature: 0.0, ..Sampler::default() }));
    requests
}

#[test]
fn the_repository_holds_the_five_profiles_and_each_reads_back_as_written() {
    let names: Vec<String> = profiles().into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["apple_m2_pro", "arc_a770", "h100", "lavapipe", "radeon_rx_7900_xtx"]);
    for (name, profile) in profiles() {
        let written = to_json(&profile);
        assert_eq!(from_json(&written).unwrap(), profile, "{name}");
        // The files are in the format's own layout: what info --json prints.
        let file = std::fs::read_to_string(profiles_dir().join(format!("{name}.json"))).unwrap();
        assert_eq!(file, written, "{name}");
    }
}

/// Checks what every explanation must hold, whatever the op and device.
fn check_sane(name: &str, profile: &DeviceProfile, explained: &PlanExplanation) {
    let what = format!(
        "{name} {} {}x{} {:?}",
        explained.op, explained.shape.rows, explained.shape.cols, explained.dtype
    );
    assert_eq!(explained.dispatches, explained.passes.iter().map(|p| p.dispatches).sum::<usize>(), "{what}");
    assert!(explained.dispatches > 0, "{what}");
    assert!(explained.workgroup_size <= profile.limits.max_compute_invocations_per_workgroup, "{what}");
    if explained.strategy == Strategy::SubgroupPerRow {
        assert!(profile.features.subgroups, "{what}");
        assert!(explained.lanes_per_row.is_power_of_two(), "{what}");
        assert!(
            explained.lanes_per_row <= profile.subgroup_min_size,
            "{what}: lanes on the smallest subgroup"
        );
    }
    if let (Some(reads), true) = (explained.reads_per_element, explained.op != "sample") {
        // GPUs keep each lane's share of a row in registers where it fits (the cached
        // module), and stream it twice where it does not (the streaming module, which
        // holds no cache); CPU adapters never keep it.
        let cached = explained.cached_elements_per_lane > 0;
        if !profile.keeps_rows_by_default() {
            assert!(!cached, "{what}");
        }
        if cached {
            assert!(explained.elements_per_lane <= u64::from(explained.cached_elements_per_lane), "{what}");
        }
        let split = u32::from(explained.strategy == Strategy::SplitRow);
        assert_eq!(reads, if cached { 1 } else { 2 } + split, "{what}");
    }
}

/// The widths the issue asks to be read once on GPUs, with their odd neighbours: f32 up
/// to 32768 columns, and 16-bit types up to 65536.
const READ_ONCE_F32: [usize; 14] =
    [10, 100, 1000, 1024, 1025, 2048, 4096, 4097, 8192, 8193, 16384, 32000, 32767, 32768];
const READ_ONCE_HALF: [usize; 6] = [32768, 32769, 50257, 64000, 65535, 65536];

#[test]
fn every_gpu_profile_reads_each_element_once_up_to_llm_widths() {
    for (name, profile) in profiles().into_iter().filter(|(_, p)| !p.is_cpu()) {
        let row_ops = requests()
            .into_iter()
            .filter(|r| !matches!(r, PlanRequest::LinearCrossEntropy { .. } | PlanRequest::Sample(_)));
        for request in row_ops {
            let widths = READ_ONCE_F32.iter().map(|&c| (DType::F32, c));
            let half = READ_ONCE_F32
                .iter()
                .chain(&READ_ONCE_HALF)
                .flat_map(|&c| [(DType::BF16, c), (DType::F16, c)]);
            for (dtype, cols) in widths.chain(half) {
                let explained = profile.explain(&request, Shape::new(ROWS, cols), dtype).unwrap();
                check_sane(&name, &profile, &explained);
                if let PlanRequest::CrossEntropy { reduction, .. } = request {
                    // The mean's divisor, then the kernel with the reduction folded in;
                    // 16-bit rows of odd length add their edge pass.
                    let edges = usize::from(dtype != DType::F32 && cols % 2 == 1);
                    let divisor = usize::from(reduction == Reduction::Mean);
                    assert!(
                        explained.dispatches <= divisor + 1 + edges,
                        "{name} {cols} {dtype:?}: {explained:?}"
                    );
                }
                assert_eq!(
                    explained.reads_per_element,
                    Some(1),
                    "{name} {} {cols} {dtype:?}: {:?} of {} lanes, {} of {} elements a lane",
                    request.name(),
                    explained.strategy,
                    explained.workgroup_size,
                    explained.elements_per_lane,
                    explained.cached_elements_per_lane
                );
            }
        }
    }
}

#[test]
fn every_op_plans_on_every_profile_at_every_width() {
    for (name, profile) in profiles() {
        for request in requests() {
            for dtype in [DType::F32, DType::BF16] {
                for cols in WIDTHS {
                    let shape = Shape::new(ROWS, cols);
                    let result = profile.explain(&request, shape, dtype);
                    if let PlanRequest::LinearCrossEntropy { hidden, .. } = request {
                        // W is bound whole in f32 (the op's products read it so): refused
                        // exactly where it exceeds one binding.
                        let classifier = 4 * (cols * hidden) as u64;
                        if classifier > profile.limits.max_storage_buffer_binding_size {
                            assert!(
                                matches!(result, Err(Error::LimitExceeded { .. })),
                                "{name} {cols}: {result:?}"
                            );
                            continue;
                        }
                    }
                    let explained =
                        result.unwrap_or_else(|e| panic!("{name} {} {cols} {dtype:?}: {e}", request.name()));
                    check_sane(&name, &profile, &explained);
                }
            }
        }
    }
}

#[test]
fn a_few_rows_of_wide_rows_split_on_a_gpu_and_read_twice() {
    for (name, profile) in profiles() {
        let request = PlanRequest::Softmax { log: false, strategy: None };
        let explained = profile.explain(&request, Shape::new(8, 262_144), DType::F32).unwrap();
        check_sane(&name, &profile, &explained);
        if profile.is_cpu() {
            assert_ne!(explained.strategy, Strategy::SplitRow, "{name}");
        } else {
            assert_eq!(explained.strategy, Strategy::SplitRow, "{name}");
            assert_eq!(explained.reads_per_element, Some(2), "{name}");
            assert_eq!(explained.dispatches, 2, "{name}: statistics, then the write");
        }
    }
}

#[test]
fn the_dispatches_are_those_each_op_records() {
    let h100 = profiles().into_iter().find(|(name, _)| name == "h100").unwrap().1;
    let count = |request: PlanRequest, shape: Shape, dtype: DType| {
        let explained = h100.explain(&request, shape, dtype).unwrap();
        (explained.dispatches, explained.passes.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
    };
    let softmax = PlanRequest::Softmax { log: false, strategy: None };
    assert_eq!(count(softmax, Shape::new(4096, 4096), DType::F32).0, 1);
    // 16-bit rows of odd length share words: the edge pass.
    assert_eq!(count(softmax, Shape::new(4096, 1025), DType::BF16).1, ["row_kernel", "fix_edges"]);
    assert_eq!(count(softmax, Shape::new(4096, 1024), DType::BF16).0, 1);
    // The mean over class targets: its divisor's pass, then the kernel, whose last
    // workgroup sums the rows.
    let mean = PlanRequest::CrossEntropy {
        reduction: Reduction::Mean,
        gradient: Gradient::Separate,
        probabilities: false,
        strategy: None,
    };
    assert_eq!(count(mean, Shape::new(4096, 32768), DType::F32).1, ["total_weight", "row_kernel"]);
    assert_eq!(count(mean, Shape::new(4096, 32769), DType::BF16).0, 3);
    let none = PlanRequest::CrossEntropy {
        reduction: Reduction::None,
        gradient: Gradient::Skip,
        probabilities: false,
        strategy: None,
    };
    // No gradient written: no 16-bit output, no edge pass.
    assert_eq!(count(none, Shape::new(4096, 32769), DType::BF16).0, 1);
    let sum = PlanRequest::CrossEntropy {
        reduction: Reduction::Sum,
        gradient: Gradient::InPlace,
        probabilities: false,
        strategy: None,
    };
    assert_eq!(count(sum, Shape::new(4096, 1000), DType::F32).0, 1);
    // Chunks of rows of 4 GiB of f32 logits past the 2 GiB binding: the divisor's pass
    // per chunk and their combination, then the kernel per chunk.
    let wide = h100.explain(&mean, Shape::new(16384, 65536), DType::F32).unwrap();
    assert!(wide.chunks >= 2, "{wide:?}");
    assert_eq!(wide.dispatches, 2 * wide.chunks + 1);
    // Sampling: the statistics, the 8 + 8 steps of top-k and top-p in one dispatch (no
    // loop limit on a GPU), then the draws.
    let sample = PlanRequest::Sample(Sampler { top_k: 50, top_p: 0.9, ..Sampler::default() });
    assert_eq!(count(sample, Shape::new(8, 128_256), DType::F32).0, 3);
    let greedy = PlanRequest::Sample(Sampler { temperature: 0.0, top_k: 5, ..Sampler::default() });
    assert_eq!(count(greedy, Shape::new(8, 128_256), DType::F32).0, 2);
}

#[test]
fn the_linear_cross_entropy_shows_its_tile_windows_and_passes() {
    let h100 = profiles().into_iter().find(|(name, _)| name == "h100").unwrap().1;
    let request = |gradients| PlanRequest::LinearCrossEntropy {
        hidden: 4096,
        reduction: Reduction::Mean,
        gradients,
        bias: false,
        workspace_bytes: None,
    };
    let shape = Shape::new(16384, 128_256);
    let train = h100.explain(&request(LinearGradients::ALL), shape, DType::BF16).unwrap();
    let linear = train.linear.unwrap();
    assert_eq!(linear.tile, 128);
    assert!(linear.stores_logits);
    // 256 MiB of f32 logits a window: 523 rows, rounded down to whole aligned runs.
    assert_eq!(linear.window_rows, 520);
    assert_eq!(linear.windows, 16384_usize.div_ceil(520));
    assert_eq!(linear.terms_per_dispatch, None);
    let names: Vec<&str> = train.passes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "total_weight",
            "combine_total_weight",
            "logits = H W^T (+ b)",
            "cross-entropy row_kernel",
            "dH = G W",
            "dH to 16 bits",
            "dW += G^T H",
            "dW to 16 bits",
            "reduce_rows",
            "finish"
        ]
    );
    let forward = h100.explain(&request(LinearGradients::NONE), shape, DType::BF16).unwrap();
    assert!(!forward.linear.unwrap().stores_logits);
    assert_eq!(forward.reads_per_element, None);
    assert_eq!(forward.dispatches, 2 + 2 * forward.linear.unwrap().windows + 2);
}

/// What today's kernels read per element on each profile, for `rows x width` rows.
fn reads_table() -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let ops = [
        ("softmax", PlanRequest::Softmax { log: false, strategy: None }),
        (
            "cross_entropy",
            PlanRequest::CrossEntropy {
                reduction: Reduction::Mean,
                gradient: Gradient::Separate,
                probabilities: false,
                strategy: None,
            },
        ),
    ];
    let _ = write!(out, "{:<20} {:<14} {:<5}", "profile", "op", "dtype");
    for cols in WIDTHS {
        let _ = write!(out, " {cols:>6}");
    }
    out.push('\n');
    for (name, profile) in profiles() {
        for (op, request) in ops {
            for dtype in [DType::F32, DType::BF16] {
                let _ = write!(out, "{name:<20} {op:<14} {:<5}", super::dtype_name(dtype));
                for cols in WIDTHS {
                    let explained = profile.explain(&request, Shape::new(ROWS, cols), dtype).unwrap();
                    let reads = explained.reads_per_element.unwrap();
                    let strategy = match explained.strategy {
                        Strategy::ThreadPerRow => "T",
                        Strategy::SubgroupPerRow => "S",
                        Strategy::WorkgroupPerRow => "W",
                        _ => "X",
                    };
                    let _ = write!(out, " {:>6}", format!("{reads}{strategy}"));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// [`reads_table`] as the kernels give it today (T thread, S subgroup, W workgroup per
/// row, X split): a change to the planner or the register cache shows up here.
const READS_TODAY: &str = "\
profile              op             dtype     10   1000   1025   4096   4097   8192  32768  65536 128256 262144\n\
apple_m2_pro         softmax        f32       1T     1W     1W     1W     1W     1W     1W     2W     2W     2W\n\
apple_m2_pro         softmax        bf16      1T     1W     1W     1W     1W     1W     1W     1W     2W     2W\n\
apple_m2_pro         cross_entropy  f32       1T     1W     1W     1W     1W     1W     1W     2W     2W     2W\n\
apple_m2_pro         cross_entropy  bf16      1T     1W     1W     1W     1W     1W     1W     1W     2W     2W\n\
arc_a770             softmax        f32       1T     1W     1W     1W     1W     1W     1W     2W     2W     2W\n\
arc_a770             softmax        bf16      1T     1W     1W     1W     1W     1W     1W     1W     2W     2W\n\
arc_a770             cross_entropy  f32       1T     1W     1W     1W     1W     1W     1W     2W     2W     2W\n\
arc_a770             cross_entropy  bf16      1T     1W     1W     1W     1W     1W     1W     1W     2W     2W\n\
h100                 softmax        f32       1T     1S     1W     1W     1W     1W     1W     2W     2W     2W\n\
h100                 softmax        bf16      1T     1S     1W     1W     1W     1W     1W     1W     2W     2W\n\
h100                 cross_entropy  f32       1T     1S     1W     1W     1W     1W     1W     2W     2W     2W\n\
h100                 cross_entropy  bf16      1T     1S     1W     1W     1W     1W     1W     1W     2W     2W\n\
lavapipe             softmax        f32       2T     2S     2S     2S     2S     2S     2S     2W     2W     2W\n\
lavapipe             softmax        bf16      2T     2S     2S     2S     2S     2S     2S     2W     2W     2W\n\
lavapipe             cross_entropy  f32       2T     2S     2S     2S     2S     2S     2S     2W     2W     2W\n\
lavapipe             cross_entropy  bf16      2T     2S     2S     2S     2S     2S     2S     2W     2W     2W\n\
radeon_rx_7900_xtx   softmax        f32       1T     1S     1W     1W     1W     1W     1W     2W     2W     2W\n\
radeon_rx_7900_xtx   softmax        bf16      1T     1S     1W     1W     1W     1W     1W     1W     2W     2W\n\
radeon_rx_7900_xtx   cross_entropy  f32       1T     1S     1W     1W     1W     1W     1W     2W     2W     2W\n\
radeon_rx_7900_xtx   cross_entropy  bf16      1T     1S     1W     1W     1W     1W     1W     1W     2W     2W\n\
";

#[test]
fn reads_per_element_today() {
    let table = reads_table();
    println!("{table}");
    assert_eq!(table, READS_TODAY);
}

#[test]
fn bad_profiles_are_refused_naming_the_field() {
    let good = to_json(&profiles()[0].1);
    let edit = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        from_json(&good.replacen(from, to, 1))
    };
    assert!(matches!(from_json("{ not json"), Err(ProfileError::Syntax { line: 1, .. })));
    assert_eq!(
        edit("  \"subgroup_min_size\": ", "  \"subgroup_minimum\": "),
        Err(ProfileError::MissingField("subgroup_min_size".into()))
    );
    let without_buffer =
        good.lines().filter(|line| !line.contains("\"max_buffer_size\"")).collect::<Vec<_>>().join("\n");
    assert_eq!(from_json(&without_buffer), Err(ProfileError::MissingField("limits.max_buffer_size".into())));
    assert_eq!(
        edit(
            "\"max_compute_workgroups_per_dimension\": 65535",
            "\"max_compute_workgroups_per_dimension\": \"65535\""
        ),
        Err(ProfileError::WrongType {
            field: "limits.max_compute_workgroups_per_dimension".into(),
            expected: "a whole number",
            found: "a string"
        })
    );
    assert_eq!(
        edit("\"subgroups\": true", "\"subgroups\": 1"),
        Err(ProfileError::WrongType {
            field: "features.subgroups".into(),
            expected: "true or false",
            found: "a number"
        })
    );
    assert!(matches!(
        edit("\"max_compute_workgroups_per_dimension\": 65535", "\"max_compute_workgroups_per_dimension\": 4294967296"),
        Err(ProfileError::BadValue { field, .. }) if field == "limits.max_compute_workgroups_per_dimension"
    ));
    assert!(matches!(
        edit("\"max_buffer_size\": 4294967295", "\"max_buffer_size\": -1"),
        Err(ProfileError::BadValue { field, .. }) if field == "limits.max_buffer_size"
    ));
    assert!(matches!(
        edit("\"IntegratedGpu\"", "\"Integrated\""),
        Err(ProfileError::BadValue { field, .. }) if field == "device_type"
    ));
    assert_eq!(
        edit("\"subgroup_max_size\"", "\"extra\": 1,\n  \"subgroup_max_size\""),
        Err(ProfileError::UnknownField("extra".into()))
    );
    assert!(matches!(edit("\"limits\": {", "\"limits\": [{"), Err(ProfileError::Syntax { .. })));
    let message = ProfileError::MissingField("limits.max_buffer_size".into()).to_string();
    assert_eq!(message, "the profile lacks the field `limits.max_buffer_size`");
}

#[test]
fn plan_with_the_h100_profile_explains_as_json() {
    let profile_path = profiles_dir().join("h100.json");
    let cli = Cli::try_parse_from([
        "wgpu-softmax",
        "plan",
        "--profile",
        profile_path.to_str().unwrap(),
        "--op",
        "cross_entropy",
        "--shape",
        "4096,128256",
        "--dtype",
        "bf16",
        "--json",
    ])
    .unwrap();
    let Command::Plan(args) = &cli.command else { panic!("not plan") };
    let profile = crate::commands::plan::read_profile(args.profile.as_deref().unwrap()).unwrap();
    let explained = crate::commands::plan::explain_on_profile(&profile, args).unwrap();
    let json: serde_json::Value = serde_json::from_str(&explanation_json(&explained, &profile.name)).unwrap();
    assert_eq!(json["op"], "cross_entropy");
    assert_eq!(json["device"], "NVIDIA H100 80GB HBM3");
    assert_eq!(json["dtype"], "bf16");
    assert_eq!(json["rows"], 4096);
    assert_eq!(json["cols"], 128_256);
    assert_eq!(json["strategy"], "WorkgroupPerRow");
    assert_eq!(json["workgroup_size"], 256);
    // Wider than 1024 lanes of 72 16-bit elements: the streaming module, no cache.
    assert_eq!(json["cached_elements_per_lane"], 0);
    assert_eq!(json["reads_per_element"], 2);
    assert_eq!(json["dispatches"], 2);
    assert_eq!(json["passes"].as_array().unwrap().len(), 2);
    assert!(json["linear"].is_null());
    // The shape's arity is the op's; the linear op takes N,D,V.
    let bad =
        Cli::try_parse_from(["wgpu-softmax", "plan", "--op", "linear_cross_entropy", "--shape", "8,1000"])
            .unwrap();
    let Command::Plan(args) = &bad.command else { panic!("not plan") };
    let error = crate::commands::plan::explain_on_profile(&profile, args).unwrap_err();
    assert!(error.to_string().contains("N,D,V"), "{error}");
}
