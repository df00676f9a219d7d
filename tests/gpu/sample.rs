//! The sampler against the f64 reference distribution (`reference::sample_distribution`,
//! found by sorting): every draw in its row's allowed set, greedy equal to the argmax, a
//! chi-square goodness of fit for each filter and their combination, seeds, the Philox
//! stream reproduced on the host, log-probabilities, `-inf`, NaN and `+inf` rows, in f32,
//! f16 and bf16, at vocabularies up to 262144 (past llvmpipe's loop limit if one dispatch
//! did every step).
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes
#![allow(clippy::cast_precision_loss)] // counts of draws as f64

use wgpu_softmax::Sampler as TokenSampler;
use wgpu_softmax::philox::sample_uniform;
use wgpu_softmax::{
    BufferRegion, Context, DType, Element, Error, RowSettings, SAMPLE_STATUS_WORDS, SampleBuffers,
    SampleStatus, Shape, TensorRef, bf16, f16, reference,
};

use crate::common::{POISON_BITS, ctx, is_poison, poisoned, rng};

/// What one run returns: the ids, the log-probabilities and the status.
struct Drawn {
    ids: Vec<i32>,
    logprobs: Vec<f32>,
    status: SampleStatus,
}

/// Samples through the GPU-resident API into poisoned outputs, and checks that every id
/// and log-probability was written.
fn draw<T: Element>(ctx: &Context, sampler: &TokenSampler, logits: &[T], shape: Shape) -> Drawn {
    draw_outputs(ctx, sampler, logits, shape, false).0
}

/// The filtered probabilities and the masked logits (widened to f32) read back.
type Masks = (Vec<f32>, Vec<f32>);

/// As [`draw`], with `masks`: the filtered probabilities and the masked logits (widened to
/// f32) too, written into poisoned buffers, each checked written.
fn draw_outputs<T: Element>(
    ctx: &Context,
    sampler: &TokenSampler,
    logits: &[T],
    shape: Shape,
    masks: bool,
) -> (Drawn, Option<Masks>) {
    let input = ctx.upload_elements(logits).unwrap();
    let (draws, len) = (shape.rows * sampler.num_samples, logits.len());
    let ids = poisoned::<f32>(ctx, draws);
    let logprobs = poisoned::<f32>(ctx, draws);
    let status = poisoned::<f32>(ctx, SAMPLE_STATUS_WORDS);
    let mask_buffers = masks.then(|| (poisoned::<f32>(ctx, len), poisoned::<T>(ctx, len)));
    let mut buffers = SampleBuffers::new(
        TensorRef::new(&input, T::DTYPE),
        BufferRegion::new(&ids),
        BufferRegion::new(&status),
    )
    .with_logprobs(&logprobs);
    if let Some((probs, masked)) = &mask_buffers {
        buffers = buffers.with_probs(probs).with_masked_logits(masked);
    }
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    crate::common::in_one_pass(&format!("{sampler:?} on {shape}"), || {
        sampler.encode(ctx, &mut encoder, &buffers, shape)
    })
    .unwrap();
    ctx.submit_and_wait(encoder).unwrap();
    let words = ctx.download_u32(&ids, draws).unwrap();
    assert!(!words.contains(&POISON_BITS), "an id was never written");
    let logprobs = ctx.download(&logprobs, draws).unwrap();
    assert!(!logprobs.iter().any(|v| v.to_bits() == POISON_BITS), "a log-probability was never written");
    let status = SampleStatus::read(ctx, &status).unwrap();
    let masks = mask_buffers.map(|(probs, masked)| {
        let probs = ctx.download(&probs, len).unwrap();
        assert!(!probs.iter().any(|v| v.to_bits() == POISON_BITS), "a probability was never written");
        let stored = ctx.download_elements::<T>(&masked, len).unwrap();
        assert!(!stored.iter().any(|&v| is_poison(v)), "a masked logit was never written");
        (probs, stored.iter().map(|v| v.to_f32()).collect())
    });
    (Drawn { ids: words.into_iter().map(|w| w as i32).collect(), logprobs, status }, masks)
}

fn typed<T: Element>(values: &[f32]) -> Vec<T> {
    values.iter().map(|&v| T::from_f32(v)).collect()
}

/// Random logits with some `-inf` masks (never in a row's first column, so that no row
/// is all masks).
fn masked_logits(seed: u64, rows: usize, cols: usize, scale: f32) -> Vec<f32> {
    let mut rng = rng(seed);
    let mut logits = rng.logits(rows * cols, scale);
    for (i, value) in logits.iter_mut().enumerate() {
        if i % cols != 0 && rng.below(10) == 0 {
            *value = f32::NEG_INFINITY;
        }
    }
    logits
}

/// Checks every draw of `drawn` against the reference: in its row's allowed set, with
/// the log-probability of the renormalised distribution.
fn check_draws(what: &str, drawn: &Drawn, expected: &[Option<Vec<f64>>], num_samples: usize) {
    assert_eq!(drawn.status, SampleStatus::default(), "{what}: no bad rows");
    for (row, probabilities) in expected.iter().enumerate() {
        let probabilities = probabilities.as_ref().unwrap();
        for s in 0..num_samples {
            let at = row * num_samples + s;
            let id = drawn.ids[at];
            assert!(id >= 0 && (id as usize) < probabilities.len(), "{what}: row {row} draw {s}: id {id}");
            let p = probabilities[id as usize];
            assert!(p > 0.0, "{what}: row {row} draw {s}: token {id} is filtered out");
            let (lp, want) = (f64::from(drawn.logprobs[at]), p.ln());
            assert!(
                (lp - want).abs() <= 2e-3 + 1e-4 * want.abs(),
                "{what}: row {row} draw {s}: logprob {lp}, want {want}"
            );
        }
    }
}

/// The options the tests walk: each filter alone, and all of them together.
fn filters() -> Vec<(&'static str, TokenSampler)> {
    let base = TokenSampler::default();
    vec![
        ("plain", base),
        ("temperature 0.6", TokenSampler { temperature: 0.6, ..base }),
        ("top-k 5", TokenSampler { top_k: 5, ..base }),
        ("top-p 0.8", TokenSampler { top_p: 0.8, ..base }),
        ("min-p 0.1", TokenSampler { min_p: 0.1, ..base }),
        ("all", TokenSampler { temperature: 0.8, top_k: 12, top_p: 0.9, min_p: 0.02, ..base }),
    ]
}

#[test]
fn every_draw_is_in_its_rows_allowed_set() {
    let ctx = ctx();
    let cases: [(usize, usize, usize); 5] =
        [(3, 1, 4), (9, 7, 16), (7, 300, 32), (3, 4097, 64), (2, 32_000, 64)];
    for (case, &(rows, cols, num_samples)) in cases.iter().enumerate() {
        let logits = masked_logits(100 + case as u64, rows, cols, 4.0);
        let shape = Shape::new(rows, cols);
        for (name, filter) in filters() {
            let sampler = TokenSampler { num_samples, seed: case as u64, ..filter };
            let expected = reference::sample_distribution(&logits, shape, &sampler).unwrap();
            let drawn = draw(ctx, &sampler, &logits, shape);
            check_draws(&format!("{name}, {rows} x {cols}"), &drawn, &expected, num_samples);
            // A 16-bit type too (odd rows start mid-word at odd vocabularies).
            if case % 2 == 0 {
                let halves: Vec<f16> = typed(&logits);
                let expected = reference::sample_distribution(&halves, shape, &sampler).unwrap();
                let drawn = draw(ctx, &sampler, &halves, shape);
                check_draws(&format!("{name}, {rows} x {cols}, f16"), &drawn, &expected, num_samples);
            } else {
                let halves: Vec<bf16> = typed(&logits);
                let expected = reference::sample_distribution(&halves, shape, &sampler).unwrap();
                let drawn = draw(ctx, &sampler, &halves, shape);
                check_draws(&format!("{name}, {rows} x {cols}, bf16"), &drawn, &expected, num_samples);
            }
        }
    }
}

/// Every way the thresholds are found with top-k on: gathered at once under the digits
/// that the statistics' bound fixes (top-k 50 over random rows), finished from the
/// candidates after more digits (the sorted rows, whose largest keys crowd into a few
/// chunks), and by the radix search alone where the candidates never shrink to 512
/// (top-k 600; and 700 keys tied at the row's largest, with top-k 50, where every tie is
/// kept).
#[test]
fn top_k_with_few_or_many_candidates() {
    let ctx = ctx();
    let (rows, cols, num_samples) = (4, 4097, 64);
    let mut logits = masked_logits(131, rows, cols, 4.0);
    // Rows 1 and 2 in ascending and descending order: the largest keys crowd into the
    // last or first invocations' chunks, so the statistics' bound on the top-k key
    // leaves thousands of keys under it and the search goes on by digits.
    logits[cols..2 * cols].sort_by(f32::total_cmp);
    logits[2 * cols..3 * cols].sort_by(|a, b| b.total_cmp(a));
    // Row 3: 700 keys tied at 9.0, above every other.
    for c in 0..700 {
        logits[3 * cols + c * 5] = 9.0;
    }
    let shape = Shape::new(rows, cols);
    for top_k in [50, 600] {
        let sampler = TokenSampler {
            top_k,
            top_p: 0.9,
            temperature: 0.9,
            num_samples,
            seed: 13,
            ..TokenSampler::default()
        };
        let expected = reference::sample_distribution(&logits, shape, &sampler).unwrap();
        let kept = expected[3].as_ref().unwrap().iter().filter(|&&p| p > 0.0).count();
        assert!(kept >= 630, "the ties' row keeps {kept}: top-p 0.9 of 700 equal tokens");
        let drawn = draw(ctx, &sampler, &logits, shape);
        check_draws(&format!("top-k {top_k}"), &drawn, &expected, num_samples);
    }
}

/// 262144 classes with top-k and top-p (18 passes, in one dispatch before the draws'
/// near llvmpipe's loop limit), in every storage type.
#[test]
fn the_largest_vocabulary_is_sampled_whole() {
    let ctx = ctx();
    let (rows, cols, num_samples) = (2, 262_144, 300);
    let logits = masked_logits(7, rows, cols, 6.0);
    let shape = Shape::new(rows, cols);
    let sampler = TokenSampler {
        top_k: 1000,
        top_p: 0.9,
        min_p: 0.001,
        num_samples,
        seed: 3,
        ..TokenSampler::default()
    };
    let f32_draws = {
        let expected = reference::sample_distribution(&logits, shape, &sampler).unwrap();
        let drawn = draw(ctx, &sampler, &logits, shape);
        check_draws("f32, 262144", &drawn, &expected, num_samples);
        drawn.ids
    };
    // Many distinct tokens drawn: the draws walk the whole allowed set, not one chunk.
    let distinct: std::collections::BTreeSet<i32> = f32_draws.iter().copied().collect();
    assert!(distinct.len() > 100, "{} distinct tokens", distinct.len());
    let halves: Vec<bf16> = typed(&logits);
    let expected = reference::sample_distribution(&halves, shape, &sampler).unwrap();
    check_draws("bf16, 262144", &draw(ctx, &sampler, &halves, shape), &expected, num_samples);
    // Plain sampling at the largest vocabulary too.
    let plain = TokenSampler { num_samples, seed: 4, ..TokenSampler::default() };
    let halves: Vec<f16> = typed(&logits);
    let expected = reference::sample_distribution(&halves, shape, &plain).unwrap();
    check_draws("f16, 262144, plain", &draw(ctx, &plain, &halves, shape), &expected, num_samples);
}

#[test]
fn greedy_draws_the_argmax() {
    let ctx = ctx();
    let (rows, cols) = (16, 1000);
    let mut logits = masked_logits(21, rows, cols, 3.0);
    // Ties: row 1's largest value twice, the first one wins.
    logits[cols + 10] = 100.0;
    logits[cols + 500] = 100.0;
    let shape = Shape::new(rows, cols);
    let sampler =
        TokenSampler { temperature: 0.0, top_k: 3, top_p: 0.5, num_samples: 3, ..TokenSampler::default() };
    for dtype in 0..3 {
        let (drawn, expected) = match dtype {
            0 => (
                draw(ctx, &sampler, &logits, shape),
                reference::sample_distribution(&logits, shape, &sampler),
            ),
            1 => {
                let v: Vec<f16> = typed(&logits);
                (draw(ctx, &sampler, &v, shape), reference::sample_distribution(&v, shape, &sampler))
            }
            _ => {
                let v: Vec<bf16> = typed(&logits);
                (draw(ctx, &sampler, &v, shape), reference::sample_distribution(&v, shape, &sampler))
            }
        };
        let expected = expected.unwrap();
        for (row, p) in expected.iter().enumerate() {
            let argmax = p.as_ref().unwrap().iter().position(|&p| p == 1.0).unwrap() as i32;
            assert_eq!(&drawn.ids[row * 3..row * 3 + 3], &[argmax; 3], "dtype {dtype} row {row}");
            assert_eq!(&drawn.logprobs[row * 3..row * 3 + 3], &[0.0; 3]);
        }
        assert_eq!(drawn.ids[3], 10, "the lowest index of a tie");
    }
}

/// The upper `1e-4` quantile of the chi-square distribution with `df` degrees of freedom,
/// by the Wilson-Hilferty approximation (the normal quantile 3.719).
pub(crate) fn chi_square_critical(df: usize) -> f64 {
    let df = df as f64;
    let z = 3.719_016;
    let h = 2.0 / (9.0 * df);
    df * (1.0 - h + z * h.sqrt()).powi(3)
}

/// The chi-square statistic of `counts` against `probabilities` (over `draws` draws),
/// with bins whose expected count is under 5 merged (in class order) into one, and its
/// degrees of freedom.
pub(crate) fn chi_square(counts: &[u64], probabilities: &[f64], draws: u64) -> (f64, usize) {
    let mut bins: Vec<(f64, f64)> = Vec::new();
    let (mut small_expected, mut small_observed) = (0.0, 0.0);
    for (&count, &p) in counts.iter().zip(probabilities) {
        let expected = p * draws as f64;
        if p == 0.0 {
            assert_eq!(count, 0, "a filtered token was drawn");
        } else if expected < 5.0 {
            small_expected += expected;
            small_observed += count as f64;
        } else {
            bins.push((expected, count as f64));
        }
    }
    if small_expected > 0.0 {
        if small_expected >= 5.0 || bins.is_empty() {
            bins.push((small_expected, small_observed));
        } else {
            // Too small on its own: into the smallest bin.
            let smallest = bins.iter_mut().min_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
            smallest.0 += small_expected;
            smallest.1 += small_observed;
        }
    }
    let statistic = bins.iter().map(|&(e, o)| (o - e) * (o - e) / e).sum();
    (statistic, bins.len().saturating_sub(1))
}

/// Chi-square goodness of fit at the significance level `1e-4` (a fixed seed, so the test
/// is not flaky), for each filter and all together, in each storage type: 6 distinct rows
/// of 25 classes (odd: in 16 bits, every other row starts mid-word), each repeated 4
/// times, 1500 draws a row (6000 per distinct row).
#[test]
fn draws_follow_the_reference_distribution() {
    let ctx = ctx();
    let (distinct, repeats, cols, num_samples) = (6, 4, 25, 1500);
    let base = rng(31).logits(distinct * cols, 2.5);
    let logits: Vec<f32> = (0..distinct * repeats)
        .flat_map(|row| base[(row % distinct) * cols..(row % distinct + 1) * cols].to_vec())
        .collect();
    let shape = Shape::new(distinct * repeats, cols);
    for (name, filter) in filters() {
        let sampler = TokenSampler { num_samples, seed: 0x5eed, ..filter };
        for dtype in ["f32", "f16", "bf16"] {
            let (drawn, expected) = match dtype {
                "f32" => (
                    draw(ctx, &sampler, &logits, shape),
                    reference::sample_distribution(&logits, shape, &sampler),
                ),
                "f16" => {
                    let v: Vec<f16> = typed(&logits);
                    (draw(ctx, &sampler, &v, shape), reference::sample_distribution(&v, shape, &sampler))
                }
                _ => {
                    let v: Vec<bf16> = typed(&logits);
                    (draw(ctx, &sampler, &v, shape), reference::sample_distribution(&v, shape, &sampler))
                }
            };
            let expected = expected.unwrap();
            check_draws(&format!("{name}, {dtype}"), &drawn, &expected, num_samples);
            for (d, probabilities) in expected.iter().enumerate().take(distinct) {
                let mut counts = vec![0_u64; cols];
                for r in 0..repeats {
                    let row = r * distinct + d;
                    for &id in &drawn.ids[row * num_samples..(row + 1) * num_samples] {
                        counts[id as usize] += 1;
                    }
                }
                let probabilities = probabilities.as_ref().unwrap();
                let (statistic, df) = chi_square(&counts, probabilities, (repeats * num_samples) as u64);
                if df == 0 {
                    // One token allowed: every draw is it (checked above).
                    continue;
                }
                let critical = chi_square_critical(df);
                assert!(
                    statistic < critical,
                    "{name}, {dtype}, row {d}: chi-square {statistic:.1} >= {critical:.1} ({df} df)"
                );
            }
        }
    }
}

#[test]
fn the_chi_square_check_rejects_a_wrong_distribution() {
    // The test above cannot pass by construction: draws from a skewed distribution fail.
    let probabilities = [0.25; 4];
    let (statistic, df) = chi_square(&[1200, 1000, 1000, 800], &probabilities, 4000);
    assert!(statistic > chi_square_critical(df));
    let (statistic, df) = chi_square(&[1010, 990, 1005, 995], &probabilities, 4000);
    assert!(statistic < chi_square_critical(df));
    // The Wilson-Hilferty quantile against the exact ones (1e-4: 15.137 at 1 df, 35.564 at
    // 10, 57.075 at 23), a little above them: a slightly conservative test.
    for (df, exact, within) in [(1, 15.137, 1.2), (10, 35.564, 0.5), (23, 57.075, 0.5)] {
        let critical = chi_square_critical(df);
        assert!(critical >= exact && critical - exact < within, "{df} df: {critical}");
    }
}

#[test]
fn seeds_repeat_and_differ_and_the_stream_is_the_documented_one() {
    let ctx = ctx();
    let (rows, cols, num_samples) = (4, 50, 500);
    let logits = rng(41).logits(rows * cols, 2.0);
    let shape = Shape::new(rows, cols);
    let sampler = TokenSampler { num_samples, seed: 0x0123_4567_89ab_cdef, ..TokenSampler::default() };
    let first = draw(ctx, &sampler, &logits, shape);
    let again = draw(ctx, &sampler, &logits, shape);
    assert_eq!(first.ids, again.ids);
    assert_eq!(
        first.logprobs.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        again.logprobs.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let other = draw(ctx, &TokenSampler { seed: sampler.seed + 1, ..sampler }, &logits, shape);
    let same = first.ids.iter().zip(&other.ids).filter(|(a, b)| a == b).count();
    assert!(same < first.ids.len() / 2, "{same} of {} draws equal under another seed", first.ids.len());
    // Each draw is the inverse transform of the documented uniform over the reference
    // distribution (a uniform within rounding of a class boundary may go either way).
    let expected = reference::sample_distribution(&logits, shape, &sampler).unwrap();
    let mut disagree = 0;
    for (row, p) in expected.iter().enumerate() {
        let p = p.as_ref().unwrap();
        for s in 0..num_samples {
            let u = f64::from(sample_uniform(sampler.seed, row as u32, s as u32));
            let mut running = 0.0;
            let token = p.iter().position(|&q| {
                running += q;
                running > u
            });
            if token.map(|t| t as i32) != Some(first.ids[row * num_samples + s]) {
                disagree += 1;
            }
        }
    }
    assert!(disagree <= 2, "{disagree} draws differ from the host's inverse transform");
}

#[test]
fn masks_and_bad_rows() {
    let ctx = ctx();
    let cols = 300;
    let ninf = f32::NEG_INFINITY;
    let mut logits = vec![ninf; 6 * cols];
    // Row 0: one finite token; row 1: a NaN; row 2: all -inf; row 3: +inf; row 4: two
    // finite tokens far apart; row 5: random with a NaN at the end.
    logits[123] = -50.0;
    logits[cols..2 * cols].iter_mut().for_each(|v| *v = 1.0);
    logits[cols + 7] = f32::NAN;
    logits[3 * cols..4 * cols].iter_mut().for_each(|v| *v = 0.5);
    logits[3 * cols + 299] = f32::INFINITY;
    logits[4 * cols + 5] = 2.0;
    logits[4 * cols + 250] = 2.5;
    let tail = rng(51).logits(cols, 3.0);
    logits[5 * cols..].copy_from_slice(&tail);
    logits[6 * cols - 1] = f32::NAN;
    let shape = Shape::new(6, cols);
    let num_samples = 64;
    for (name, filter) in filters() {
        let sampler = TokenSampler { num_samples, seed: 9, ..filter };
        for dtype in 0..3 {
            let drawn = match dtype {
                0 => draw(ctx, &sampler, &logits, shape),
                1 => draw(ctx, &sampler, &typed::<f16>(&logits), shape),
                _ => draw(ctx, &sampler, &typed::<bf16>(&logits), shape),
            };
            let what = format!("{name}, dtype {dtype}");
            let row = |r: usize| &drawn.ids[r * num_samples..(r + 1) * num_samples];
            let lp = |r: usize| &drawn.logprobs[r * num_samples..(r + 1) * num_samples];
            assert!(row(0).iter().all(|&id| id == 123), "{what}: the only finite token");
            assert!(lp(0).iter().all(|&v| v.abs() < 1e-6), "{what}: its log-probability is 0");
            for bad in [1, 2, 3, 5] {
                assert!(row(bad).iter().all(|&id| id == -1), "{what}: row {bad} draws -1");
                assert!(lp(bad).iter().all(|v| v.is_nan()), "{what}: row {bad} log-probabilities NaN");
            }
            assert!(row(4).iter().all(|&id| id == 5 || id == 250), "{what}: masks never drawn");
            assert_eq!(
                drawn.status,
                SampleStatus { bad_rows: 4, first_bad_row: Some(1), ..SampleStatus::default() },
                "{what}"
            );
        }
    }
}

/// A class axis in the middle: logits (2, V, 3) sampled over dim 1 (6 rows of V classes,
/// 3 elements apart; at an odd V, 16-bit rows share words), every filter on, in each
/// storage type. Every draw is in its row's allowed set; each is exactly the inverse
/// transform of the documented uniform over the reference distribution; the draws and
/// log-probabilities are bit-identical to those of the same rows laid out contiguously;
/// and the masks come back in the caller's layout, equal to the reference's there.
#[test]
fn a_class_axis_in_the_middle_is_sampled_where_it_lies() {
    let ctx = ctx();
    let (outer, cols, inner, num_samples) = (2, 301, 3, 64);
    let strided = Shape::with_inner(outer, cols, inner);
    let logits = rng(97).logits(strided.len().unwrap(), 3.0);
    // The same rows, each contiguous: row r's class c is element index(r, c).
    let rows = Shape::new(strided.rows, cols);
    let contiguous: Vec<f32> = (0..rows.rows)
        .flat_map(|r| (0..cols).map(move |c| (r, c)))
        .map(|(r, c)| logits[strided.index(r, c)])
        .collect();
    let sampler = TokenSampler { temperature: 0.8, top_k: 40, top_p: 0.9, min_p: 0.01, num_samples, seed: 3 };
    fn check<T: Element>(
        ctx: &Context,
        sampler: &TokenSampler,
        logits: &[f32],
        contiguous: &[f32],
        strided: Shape,
    ) {
        let what = format!("{:?}", T::DTYPE);
        let (logits, contiguous): (Vec<T>, Vec<T>) = (typed(logits), typed(contiguous));
        let (drawn, masks) = draw_outputs(ctx, sampler, &logits, strided, true);
        let (probs, masked) = masks.unwrap();
        let expected = reference::sample_distribution(&logits, strided, sampler).unwrap();
        check_draws(&what, &drawn, &expected, sampler.num_samples);
        for (row, p) in expected.iter().enumerate() {
            let p = p.as_ref().unwrap();
            for s in 0..sampler.num_samples {
                let u = f64::from(sample_uniform(sampler.seed, row as u32, s as u32));
                let mut running = 0.0;
                let token = p.iter().position(|&q| {
                    running += q;
                    running > u
                });
                let id = drawn.ids[row * sampler.num_samples + s];
                assert_eq!(token.map(|t| t as i32), Some(id), "{what}: row {row} draw {s}");
            }
        }
        let flat = draw(ctx, sampler, &contiguous, Shape::new(strided.rows, strided.cols));
        assert_eq!(drawn.ids, flat.ids, "{what}: the contiguous rows' draws");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&drawn.logprobs), bits(&flat.logprobs), "{what}: log-probabilities");
        let (want_probs, want_masked) =
            reference::sample_masks(&logits, strided, sampler, &RowSettings::default()).unwrap();
        for (i, (&want, &p)) in want_probs.iter().zip(&probs).enumerate() {
            let p = f64::from(p);
            assert!((p - want).abs() <= 1e-6 + 1e-4 * want, "{what}: element {i}: prob {p}, want {want}");
            assert!(f64::from(masked[i]) == want_masked[i], "{what}: element {i}: masked {}", masked[i]);
        }
    }
    check::<f32>(ctx, &sampler, &logits, &contiguous, strided);
    check::<f16>(ctx, &sampler, &logits, &contiguous, strided);
    check::<bf16>(ctx, &sampler, &logits, &contiguous, strided);
}

#[test]
fn the_host_api_returns_what_the_gpu_api_writes() {
    let ctx = ctx();
    let logits = rng(61).logits(3 * 40, 2.0);
    let shape = Shape::new(3, 40);
    let sampler = TokenSampler { top_k: 10, top_p: 0.9, num_samples: 8, seed: 77, ..TokenSampler::default() };
    let host = sampler.run(ctx, &logits, shape, true).unwrap();
    let gpu = draw(ctx, &sampler, &logits, shape);
    assert_eq!(host.ids, gpu.ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>());
    assert_eq!(host.logprobs.unwrap(), gpu.logprobs);
    assert_eq!(host.status, SampleStatus::default());
}

/// More rows than one grid dimension holds (65535 workgroups): the rows continue along y.
/// Row r's only finite logit is token r % 3, so every draw names its own row.
#[test]
fn rows_past_one_grid_dimension() {
    let ctx = ctx();
    let (rows, cols) = (65_535 + 200, 3);
    let mut logits = vec![f32::NEG_INFINITY; rows * cols];
    for row in 0..rows {
        logits[row * cols + row % 3] = (row % 7) as f32;
    }
    let sampler = TokenSampler { seed: 1, ..TokenSampler::default() };
    let drawn = draw(ctx, &sampler, &logits, Shape::new(rows, cols));
    for (row, &id) in drawn.ids.iter().enumerate() {
        assert_eq!(id, (row % 3) as i32, "row {row}");
    }
    assert_eq!(drawn.status, SampleStatus::default());
}

/// 40000 draws of one row of 262144 classes: more than one dispatch's share on llvmpipe,
/// so the draws are split across dispatches (in one, an invocation's draws loop past
/// 65535 iterations and llvmpipe stops it silently: with the split removed this test
/// fails, ids unwritten). Every draw written and allowed, and the draws fit the reference
/// by chi-square over 256 bins of 1024 classes.
#[test]
fn many_draws_of_the_largest_vocabulary() {
    let ctx = ctx();
    let (cols, num_samples) = (262_144, 40_000);
    let logits = masked_logits(91, 1, cols, 2.0);
    let shape = Shape::new(1, cols);
    let sampler = TokenSampler { num_samples, seed: 11, ..TokenSampler::default() };
    let expected = reference::sample_distribution(&logits, shape, &sampler).unwrap();
    let drawn = draw(ctx, &sampler, &logits, shape);
    check_draws("40000 draws", &drawn, &expected, num_samples);
    let probabilities = expected[0].as_ref().unwrap();
    let bins: Vec<f64> = probabilities.chunks(1024).map(|c| c.iter().sum()).collect();
    let mut counts = vec![0_u64; bins.len()];
    for &id in &drawn.ids {
        counts[id as usize / 1024] += 1;
    }
    let (statistic, df) = chi_square(&counts, &bins, num_samples as u64);
    let critical = chi_square_critical(df);
    assert!(statistic < critical, "chi-square {statistic:.1} >= {critical:.1} ({df} df)");
}

/// A temperature so small that the largest logit over it overflows f32 draws the argmax
/// (the limit as T goes to 0), and a top-p so small that `top_p * mass` may flush to zero
/// keeps the most probable token: never a silent -1.
#[test]
fn vanishing_temperature_and_top_p_keep_the_top_token() {
    let ctx = ctx();
    let logits = [10.0, 100.0, 5.0, 100.0, /* second row */ -3.0, 2.0, 1.5, 0.0];
    let shape = Shape::new(2, 4);
    let cold = TokenSampler { temperature: 1e-37, num_samples: 8, ..TokenSampler::default() };
    let drawn = draw(ctx, &cold, &logits, shape);
    let expected = reference::sample_distribution(&logits, shape, &cold).unwrap();
    assert_eq!(expected[0].as_ref().unwrap(), &vec![0.0, 1.0, 0.0, 0.0]);
    assert_eq!(&drawn.ids[..8], &[1; 8], "the first of the largest");
    assert!(drawn.logprobs[..8].iter().all(|&v| v == 0.0));
    assert_eq!(drawn.status, SampleStatus::default());
    let narrow = TokenSampler { top_p: f32::MIN_POSITIVE / 2.0, num_samples: 8, ..TokenSampler::default() };
    let expected = reference::sample_distribution(&logits[4..], Shape::new(1, 4), &narrow).unwrap();
    assert_eq!(expected[0].as_ref().unwrap(), &vec![0.0, 1.0, 0.0, 0.0]);
    let drawn = draw(ctx, &narrow, &logits[4..], Shape::new(1, 4));
    assert_eq!(drawn.ids, vec![1; 8]);
    assert!(drawn.logprobs.iter().all(|&v| v.abs() < 1e-6));
}

/// Per-row settings (each of temperature, top-k, top-p and min-p a GPU buffer) on one
/// batch: 7 groups of settings (each filter alone, greedy, all together, and two out of
/// range), each on its own row of 25 classes repeated 4 times, 1500 draws a row. Every
/// draw lies in its row's allowed set with its log-probability; each in-range group's
/// draws (6000) fit the reference by chi-square at 1e-4; the out-of-range rows draw -1
/// and are counted in the status by row; the host API draws the same ids.
#[test]
fn per_row_settings_in_one_batch() {
    let ctx = ctx();
    // (temperature, top-k, top-p, min-p) per group; groups 5 and 6 are out of range.
    let groups: [(f32, u32, f32, f32); 7] = [
        (0.7, 5, 1.0, 0.0),
        (1.0, 0, 0.8, 0.0),
        (1.3, 0, 1.0, 0.1),
        (0.0, 3, 0.5, 0.0),
        (0.9, 12, 0.9, 0.02),
        (1.0, 0, 1.5, 0.0),
        (-1.0, 4, 1.0, 0.0),
    ];
    let (distinct, repeats, cols, num_samples) = (groups.len(), 4, 25, 1500);
    let base = rng(71).logits(distinct * cols, 2.5);
    let rows = distinct * repeats;
    let group_of = |row: usize| row % distinct;
    let logits: Vec<f32> =
        (0..rows).flat_map(|row| base[group_of(row) * cols..(group_of(row) + 1) * cols].to_vec()).collect();
    let shape = Shape::new(rows, cols);
    let settings = RowSettings {
        temperature: Some((0..rows).map(|r| groups[group_of(r)].0).collect()),
        top_k: Some((0..rows).map(|r| groups[group_of(r)].1).collect()),
        top_p: Some((0..rows).map(|r| groups[group_of(r)].2).collect()),
        min_p: Some((0..rows).map(|r| groups[group_of(r)].3).collect()),
    };
    // Scalars that every per-row setting replaces (these alone would be greedy).
    let sampler =
        TokenSampler { temperature: 0.0, top_k: 1, top_p: 0.1, min_p: 0.9, num_samples, seed: 0xbeef };
    let expected = reference::sample_distribution_with_settings(&logits, shape, &sampler, &settings).unwrap();

    let input = ctx.upload_elements(&logits).unwrap();
    let draws = rows * num_samples;
    let (ids, logprobs, status) =
        (poisoned::<f32>(ctx, draws), poisoned::<f32>(ctx, draws), poisoned::<f32>(ctx, SAMPLE_STATUS_WORDS));
    let per_row = |values: &Option<Vec<f32>>| ctx.upload_elements(values.as_ref().unwrap()).unwrap();
    let (temperature, top_p, min_p) =
        (per_row(&settings.temperature), per_row(&settings.top_p), per_row(&settings.min_p));
    let top_k = ctx.upload_elements(settings.top_k.as_ref().unwrap()).unwrap();
    let buffers = SampleBuffers::new(
        TensorRef::new(&input, f32::DTYPE),
        BufferRegion::new(&ids),
        BufferRegion::new(&status),
    )
    .with_logprobs(&logprobs)
    .with_row_temperature(&temperature)
    .with_row_top_k(&top_k)
    .with_row_top_p(&top_p)
    .with_row_min_p(&min_p);
    assert_eq!(sampler.passes_with(&buffers.rows), 18);
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    crate::common::in_one_pass(&format!("{sampler:?} on {shape}"), || {
        sampler.encode(ctx, &mut encoder, &buffers, shape)
    })
    .unwrap();
    ctx.submit_and_wait(encoder).unwrap();
    let words = ctx.download_u32(&ids, draws).unwrap();
    assert!(!words.contains(&POISON_BITS), "an id was never written");
    let ids: Vec<i32> = words.into_iter().map(|w| w as i32).collect();
    let logprobs = ctx.download(&logprobs, draws).unwrap();
    assert!(!logprobs.iter().any(|v| v.to_bits() == POISON_BITS), "a log-probability was never written");
    let status = SampleStatus::read(ctx, &status).unwrap();
    assert_eq!(
        status,
        SampleStatus {
            bad_setting_rows: 2 * repeats as u32,
            first_bad_setting_row: Some(5),
            ..SampleStatus::default()
        }
    );

    for (row, probabilities) in expected.iter().enumerate() {
        let drawn = &ids[row * num_samples..(row + 1) * num_samples];
        let lps = &logprobs[row * num_samples..(row + 1) * num_samples];
        let Some(probabilities) = probabilities else {
            assert!(group_of(row) >= 5, "row {row}: only the out-of-range rows lack a distribution");
            assert!(drawn.iter().all(|&id| id == -1), "row {row}: out of range draws -1");
            assert!(lps.iter().all(|v| v.is_nan()), "row {row}: log-probabilities NaN");
            continue;
        };
        for (&id, &lp) in drawn.iter().zip(lps) {
            assert!(id >= 0 && (id as usize) < cols, "row {row}: id {id}");
            let p = probabilities[id as usize];
            assert!(p > 0.0, "row {row} (group {}): token {id} is filtered out", group_of(row));
            let want = p.ln();
            assert!(
                (f64::from(lp) - want).abs() <= 2e-3 + 1e-4 * want.abs(),
                "row {row}: logprob {lp}, want {want}"
            );
        }
    }
    for (group, probabilities) in expected.iter().enumerate().take(5) {
        let probabilities = probabilities.as_ref().unwrap();
        let mut counts = vec![0_u64; cols];
        for r in 0..repeats {
            let row = r * distinct + group;
            for &id in &ids[row * num_samples..(row + 1) * num_samples] {
                counts[id as usize] += 1;
            }
        }
        let (statistic, df) = chi_square(&counts, probabilities, (repeats * num_samples) as u64);
        if group == 3 {
            // Greedy: every draw is the argmax.
            assert_eq!(df, 0, "greedy group");
            continue;
        }
        assert!(df > 0, "group {group}: more than one token allowed");
        let critical = chi_square_critical(df);
        assert!(statistic < critical, "group {group}: chi-square {statistic:.1} >= {critical:.1} ({df} df)");
    }

    // The host API uploads the same settings and draws the same ids.
    let host = sampler.run_with_settings(ctx, &logits, shape, false, &settings).unwrap();
    assert_eq!(host.ids, ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>());
    assert_eq!(host.status, status);
}

/// Per-row setting buffers that cannot be copied from are typed errors before anything is
/// recorded: no `COPY_SRC`, a misaligned offset, too few rows; a host setting of the
/// wrong length is a shape mismatch.
#[test]
fn per_row_setting_buffers_are_checked() {
    use wgpu_softmax::Error;
    let ctx = ctx();
    let shape = Shape::new(4, 10);
    let logits = ctx.upload_elements(&rng(81).logits(40, 1.0)).unwrap();
    let (ids, status) = (poisoned::<f32>(ctx, 4), poisoned::<f32>(ctx, SAMPLE_STATUS_WORDS));
    let buffers = || {
        SampleBuffers::new(
            TensorRef::new(&logits, f32::DTYPE),
            BufferRegion::new(&ids),
            BufferRegion::new(&status),
        )
    };
    let storage_only = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let values = ctx.upload_elements(&[0.5_f32; 8]).unwrap();
    let encode = |buffers: SampleBuffers<'_>| {
        let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        TokenSampler::default().encode(ctx, &mut encoder, &buffers, shape).unwrap_err()
    };
    let error = encode(buffers().with_row_temperature(&storage_only));
    assert!(matches!(error, Error::MissingUsage { what: "row temperature", .. }), "{error}");
    let error = encode(buffers().with_row_top_p(BufferRegion::at(&values, 2)));
    assert!(matches!(error, Error::MisalignedOffset { what: "row top_p", .. }), "{error}");
    let error = encode(buffers().with_row_min_p(BufferRegion::at(&values, 20)));
    assert!(matches!(error, Error::BufferTooSmall { what: "row min_p", .. }), "{error}");
    let error = encode(buffers().with_row_top_k(BufferRegion::at(&values, 0).with_size(64)));
    assert!(matches!(error, Error::RegionOutOfBounds { what: "row top_k", .. }), "{error}");
    let short = RowSettings { top_k: Some(vec![1; 3]), ..RowSettings::default() };
    let error =
        TokenSampler::default().run_with_settings(ctx, &[0.5_f32; 40], shape, false, &short).unwrap_err();
    assert!(matches!(error, Error::ShapeMismatch { what: "row top_k", .. }), "{error}");
}

/// The masks (filtered, renormalised probabilities and masked logits) against the f64
/// reference, outputs poisoned first: f32 and bf16 logits of 37 classes (odd: in bf16,
/// every other row starts mid-word, so neighbouring rows share a word of the masked
/// logits), with every filter on, a greedy row and a top-k row by per-row settings, and
/// a row with a NaN. Probabilities within 1e-6 + 1e-4 relative; masked logits exact (the
/// logit as stored, or -inf; NaN for the bad row). Also with no draws at all.
#[test]
fn masks_match_the_reference() {
    let ctx = ctx();
    let (rows, cols) = (6, 37);
    let mut logits = rng(91).logits(rows * cols, 3.0);
    logits[4 * cols + 11] = f32::NAN;
    let shape = Shape::new(rows, cols);
    let settings = RowSettings {
        temperature: Some(vec![0.8, 0.0, 1.0, 0.8, 0.8, 1.2]),
        top_k: Some(vec![12, 0, 4, 12, 12, 0]),
        ..RowSettings::default()
    };
    for num_samples in [16, 0] {
        let sampler =
            TokenSampler { top_p: 0.9, min_p: 0.02, num_samples, seed: 5, ..TokenSampler::default() };
        for dtype in ["f32", "bf16"] {
            let (input, storage, (want_probs, want_masked)) = if dtype == "f32" {
                (
                    ctx.upload_elements(&logits).unwrap(),
                    DType::F32,
                    reference::sample_masks(&logits, shape, &sampler, &settings).unwrap(),
                )
            } else {
                let halves: Vec<bf16> = typed(&logits);
                (
                    ctx.upload_elements(&halves).unwrap(),
                    DType::BF16,
                    reference::sample_masks(&halves, shape, &sampler, &settings).unwrap(),
                )
            };
            let len = rows * cols;
            let ids = poisoned::<f32>(ctx, (rows * num_samples).max(1));
            let status = poisoned::<f32>(ctx, SAMPLE_STATUS_WORDS);
            let probs = poisoned::<f32>(ctx, len);
            let masked = if dtype == "f32" { poisoned::<f32>(ctx, len) } else { poisoned::<bf16>(ctx, len) };
            let top_k = ctx.upload_elements(settings.top_k.as_ref().unwrap()).unwrap();
            let temperature = ctx.upload_elements(settings.temperature.as_ref().unwrap()).unwrap();
            let buffers = SampleBuffers::new(
                TensorRef::new(&input, storage),
                BufferRegion::new(&ids),
                BufferRegion::new(&status),
            )
            .with_row_top_k(&top_k)
            .with_row_temperature(&temperature)
            .with_probs(&probs)
            .with_masked_logits(&masked);
            let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            sampler.encode(ctx, &mut encoder, &buffers, shape).unwrap();
            ctx.submit_and_wait(encoder).unwrap();
            let what = format!("{dtype}, {num_samples} draws");
            let status = SampleStatus::read(ctx, &status).unwrap();
            assert_eq!(
                status,
                SampleStatus { bad_rows: 1, first_bad_row: Some(4), ..SampleStatus::default() },
                "{what}"
            );
            let got_probs = ctx.download(&probs, len).unwrap();
            let got_masked = ctx.download_as_f32(&masked, storage, len).unwrap();
            // Every element written (the poison is a NaN, which the bad row's NaN would hide).
            let masked_poison = if dtype == "f32" { POISON_BITS } else { 0xffba_0000 };
            assert!(!got_probs.iter().any(|v| v.to_bits() == POISON_BITS), "{what}: a probability unwritten");
            assert!(
                !got_masked.iter().any(|v| v.to_bits() == masked_poison),
                "{what}: a masked logit unwritten"
            );
            for i in 0..len {
                let (row, col) = (i / cols, i % cols);
                let (p, want) = (f64::from(got_probs[i]), want_probs[i]);
                if want.is_nan() {
                    assert!(
                        p.is_nan() && got_masked[i].is_nan(),
                        "{what}: row {row} col {col}: NaN for the bad row"
                    );
                    continue;
                }
                assert!(
                    (p - want).abs() <= 1e-6 + 1e-4 * want,
                    "{what}: row {row} col {col}: prob {p}, want {want}"
                );
                let m = f64::from(got_masked[i]);
                assert!(
                    m == want_masked[i],
                    "{what}: row {row} col {col}: masked {m}, want {}",
                    want_masked[i]
                );
            }
            // Each good row's mask keeps some tokens and drops others, and sums to 1.
            for row in [0, 2, 3, 5] {
                let kept = (0..cols).filter(|&c| want_probs[row * cols + c] > 0.0).count();
                assert!(kept > 1 && kept < cols, "{what}: row {row} keeps {kept}");
                let sum: f64 = got_probs[row * cols..(row + 1) * cols].iter().map(|&p| f64::from(p)).sum();
                assert!((sum - 1.0).abs() < 1e-5, "{what}: row {row} sums to {sum}");
            }
            assert_eq!(
                (0..cols).filter(|&c| want_probs[cols + c] == 1.0).count(),
                1,
                "the greedy row is one-hot"
            );
        }
    }
}

/// Ids as i64 (PyTorch's LongTensor): the same draws as i32, each in two words, low first,
/// a bad row's -1 sign-extended; and a buffer for i32 ids only is refused, typed.
#[test]
fn ids_as_i64_are_the_i32_draws_in_two_words() {
    let ctx = ctx();
    let shape = Shape::new(4, 50);
    let mut logits = rng(93).logits(shape.len().unwrap(), 2.0);
    logits[2 * 50 + 7] = f32::NAN; // row 2 is bad: -1
    let sampler = TokenSampler { top_k: 12, num_samples: 6, seed: 21, ..TokenSampler::default() };
    let narrow = draw(ctx, &sampler, &logits, shape);
    let draws = shape.rows * sampler.num_samples;
    let input = ctx.upload_elements(&logits).unwrap();
    let wide = poisoned::<f32>(ctx, 2 * draws);
    let status = poisoned::<f32>(ctx, SAMPLE_STATUS_WORDS);
    let buffers = SampleBuffers::new(
        TensorRef::new(&input, DType::F32),
        BufferRegion::new(&wide),
        BufferRegion::new(&status),
    )
    .with_i64_ids();
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    sampler.encode(ctx, &mut encoder, &buffers, shape).unwrap();
    ctx.submit_and_wait(encoder).unwrap();
    let words = ctx.download_u32(&wide, 2 * draws).unwrap();
    let ids: Vec<i64> = words.chunks(2).map(|w| i64::from(w[0]) | (i64::from(w[1]) << 32)).collect();
    assert_eq!(ids, narrow.ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>());
    assert!(ids[2 * 6..3 * 6].iter().all(|&id| id == -1), "{ids:?}");
    assert!(ids.iter().filter(|&&id| id >= 0).count() == 18, "{ids:?}");
    // i32's room is half of what i64 ids need.
    let short = poisoned::<f32>(ctx, draws);
    let buffers = SampleBuffers::new(
        TensorRef::new(&input, DType::F32),
        BufferRegion::new(&short),
        BufferRegion::new(&status),
    )
    .with_i64_ids();
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    let refused = sampler.encode(ctx, &mut encoder, &buffers, shape).unwrap_err();
    assert!(matches!(refused, Error::BufferTooSmall { .. } | Error::RegionOutOfBounds { .. }), "{refused}");
}
