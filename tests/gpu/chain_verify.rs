//! Chain speculative-decoding verification against its f64 twin (`reference::chain_verify`,
//! on the same Philox uniforms) and against the target distribution by chi-square: the
//! tokens a row emits follow the target model's distribution whatever the draft's, the
//! acceptance rate is `sum min(p, q)`, bad rows are reported, seeds repeat, and the
//! logits path applies the sampler's filters.
#![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // small test sizes
#![allow(clippy::cast_precision_loss)] // counts as f64

use wgpu_softmax::testing::SeededRng;
use wgpu_softmax::{
    BufferRegion, CHAIN_STATUS_WORDS, ChainBuffers, ChainOutput, ChainShape, ChainStatus, ChainVerifier,
    Context, Error, Sampler, Shape, TensorRef, reference,
};

use crate::common::{POISON_BITS, ctx, poisoned, probability_rows, rng};
use crate::sample::{chi_square, chi_square_critical};

/// A draw from `probabilities` by the test's own generator (inverse transform in f64).
fn draw_from(rng: &mut SeededRng, probabilities: &[f32]) -> i32 {
    let total: f64 = probabilities.iter().map(|&p| f64::from(p)).sum();
    let goal = rng.next_unit() * total;
    let mut running = 0.0;
    for (i, &p) in probabilities.iter().enumerate() {
        running += f64::from(p);
        if p > 0.0 && running > goal {
            return i as i32;
        }
    }
    probabilities.iter().rposition(|&p| p > 0.0).unwrap() as i32
}

/// The draft ids of `rows` rows, each drawn from its own draft distributions.
fn drafts_from(rng: &mut SeededRng, draft_probs: &[f32], shape: ChainShape) -> Vec<i32> {
    draft_probs.chunks(shape.vocab).map(|q| draw_from(rng, q)).collect()
}

/// Verifies through the GPU-resident API into poisoned outputs (i64 ids when `i64`),
/// checks that every output was written, and reads them back.
fn verify(
    ctx: &Context,
    verifier: ChainVerifier,
    [draft_ids, draft_probs, target_probs]: [&[u32]; 3],
    shape: ChainShape,
    i64_ids: bool,
) -> ChainOutput {
    let [draft_ids, draft_probs, target_probs] = [draft_ids, draft_probs, target_probs].map(|words| {
        let padded: Vec<u32> = if words.is_empty() { vec![0] } else { words.to_vec() };
        ctx.upload_elements(&padded).unwrap()
    });
    let out = shape.rows * (shape.drafts + 1);
    let id_words = if i64_ids { 2 * out } else { out };
    let ids = poisoned::<f32>(ctx, id_words);
    let accepted = poisoned::<f32>(ctx, shape.rows);
    let status = poisoned::<f32>(ctx, CHAIN_STATUS_WORDS);
    let buffers = ChainBuffers {
        draft_ids: BufferRegion::new(&draft_ids),
        draft_probs: BufferRegion::new(&draft_probs),
        target_probs: BufferRegion::new(&target_probs),
        ids: BufferRegion::new(&ids),
        ids_i64: i64_ids,
        accepted: BufferRegion::new(&accepted),
        status: BufferRegion::new(&status),
    };
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    verifier.encode(ctx, &mut encoder, &buffers, shape).unwrap();
    ctx.submit_and_wait(encoder).unwrap();
    let words = ctx.download_u32(&ids, id_words).unwrap();
    assert!(!words.contains(&POISON_BITS), "an id was never written");
    let accepted = ctx.download_u32(&accepted, shape.rows).unwrap();
    assert!(!accepted.contains(&POISON_BITS), "a count was never written");
    let status = ChainStatus::from_words(&ctx.download_u32(&status, CHAIN_STATUS_WORDS).unwrap());
    let ids = if i64_ids {
        words.chunks(2).map(|w| i64::from(w[0]) | (i64::from(w[1]) << 32)).collect()
    } else {
        words.into_iter().map(|w| i64::from(w as i32)).collect()
    };
    ChainOutput { ids, accepted, status }
}

fn words(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn id_words(ids: &[i32]) -> Vec<u32> {
    ids.iter().map(|&i| i as u32).collect()
}

/// Checks each row's layout against the reference twin: the accepted drafts are the
/// row's drafts, the counts agree (except where `u * q` and `p` are within an f32
/// rounding), the last token has positive mass in the twin's distribution, and `-1`
/// follows. Returns how many last tokens equal the twin's own draw.
fn check_against_twin(
    out: &ChainOutput,
    twin: &[Option<reference::ChainRow>],
    draft_ids: &[i32],
    shape: ChainShape,
) -> usize {
    let per_row = shape.drafts + 1;
    let mut same_draws = 0;
    for (row, expected) in twin.iter().enumerate() {
        let ids = &out.ids[row * per_row..(row + 1) * per_row];
        let expected = expected.as_ref().unwrap();
        let accepted = out.accepted[row] as usize;
        assert_eq!(accepted, expected.accepted, "row {row}: accepted drafts");
        for (i, &id) in ids.iter().enumerate() {
            if i < accepted {
                assert_eq!(id, i64::from(draft_ids[row * shape.drafts + i]), "row {row}: draft {i}");
            } else if i == accepted {
                let token = usize::try_from(id).unwrap();
                assert!(expected.last_distribution[token] > 0.0, "row {row}: token {token} has no mass");
                same_draws += usize::from(token == expected.last_token);
            } else {
                assert_eq!(id, -1, "row {row}: past the last token");
            }
        }
    }
    same_draws
}

/// Many rows of one `(p, q)` pair, the drafts drawn from `q` by the test's generator:
/// each emitted position's token follows `p` at that position (chi-square at 1e-4), and
/// the first acceptance rate is `sum min(p_0, q_0)` (within 5 standard deviations). `q`
/// puts mass where `p` has none and none where `p` has some, so that the residual
/// matters.
#[test]
fn emitted_tokens_follow_the_target_distribution() {
    let ctx = ctx();
    let (rows, drafts, vocab) = (6000, 2, 12);
    let shape = ChainShape { rows, drafts, vocab };
    let mut rng = rng(0xc4a1);
    let mut target_row = probability_rows(&mut rng, drafts + 1, vocab);
    let mut draft_row = probability_rows(&mut rng, drafts, vocab);
    // Token 0 only the draft proposes; token 1 only the target.
    for position in 0..drafts {
        target_row[position * vocab] = 0.0;
        draft_row[position * vocab + 1] = 0.0;
    }
    let renormalise = |rows: &mut Vec<f32>| {
        for row in rows.chunks_mut(vocab) {
            let sum: f32 = row.iter().sum();
            row.iter_mut().for_each(|p| *p /= sum);
        }
    };
    renormalise(&mut target_row);
    renormalise(&mut draft_row);
    let target_probs = target_row.repeat(rows);
    let draft_probs = draft_row.repeat(rows);
    let draft_ids = drafts_from(&mut rng, &draft_probs, shape);
    let out = verify(
        ctx,
        ChainVerifier { seed: 0x5eed },
        [&id_words(&draft_ids), &words(&draft_probs), &words(&target_probs)],
        shape,
        false,
    );
    assert_eq!(out.status, ChainStatus::default());
    for position in 0..=drafts {
        let mut counts = vec![0_u64; vocab];
        let mut reached = 0;
        for row in 0..rows {
            if out.accepted[row] as usize >= position {
                counts[usize::try_from(out.ids[row * (drafts + 1) + position]).unwrap()] += 1;
                reached += 1;
            }
        }
        let p: Vec<f64> =
            target_row[position * vocab..(position + 1) * vocab].iter().map(|&p| f64::from(p)).collect();
        let (statistic, df) = chi_square(&counts, &p, reached);
        let critical = chi_square_critical(df);
        assert!(reached > 500, "position {position}: only {reached} rows reached it");
        assert!(
            statistic < critical,
            "position {position}: chi-square {statistic:.1} >= {critical:.1} ({df} df)"
        );
    }
    let rate: f64 = (0..vocab).map(|t| f64::from(target_row[t].min(draft_row[t]))).sum();
    let first_accepted = out.accepted.iter().filter(|&&a| a >= 1).count() as f64;
    let deviation = (rate * (1.0 - rate) * rows as f64).sqrt();
    assert!(
        (first_accepted - rate * rows as f64).abs() < 5.0 * deviation,
        "{first_accepted} of {rows} first drafts accepted, expected {:.0}",
        rate * rows as f64
    );
}

/// Random `(p, q)` per row at a real vocabulary (128256: each invocation's chunk past
/// 500 tokens) and an odd one: the counts equal the twin's, every last token has mass,
/// i64 ids are the same draws, and the draws equal the twin's own (f64) inverse
/// transform in all but a rare row.
#[test]
fn decisions_and_draws_match_the_f64_twin() {
    let ctx = ctx();
    for (rows, drafts, vocab) in [(48, 3, 1001), (6, 4, 128_256)] {
        let shape = ChainShape { rows, drafts, vocab };
        let mut rng = rng(vocab as u64);
        // Peaked draft and target rows, so that both acceptances and rejections happen.
        let peaked = |rng: &mut SeededRng, n: usize| {
            let mut p: Vec<f32> = (0..n * vocab).map(|_| rng.uniform(0.0, 1.0).powi(8)).collect();
            for row in p.chunks_mut(vocab) {
                let sum: f32 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= sum);
            }
            p
        };
        // The target close to the draft (0.7 q + 0.3 r), so that drafts are often
        // accepted and often not.
        let draft_probs = peaked(&mut rng, rows * drafts);
        let mut target_probs = peaked(&mut rng, rows * (drafts + 1));
        for row in 0..rows {
            for i in 0..drafts {
                let q = &draft_probs[(row * drafts + i) * vocab..][..vocab];
                let p = &mut target_probs[(row * (drafts + 1) + i) * vocab..][..vocab];
                p.iter_mut().zip(q).for_each(|(p, &q)| *p = 0.7 * q + 0.3 * *p);
            }
        }
        let draft_ids = drafts_from(&mut rng, &draft_probs, shape);
        let verifier = ChainVerifier { seed: vocab as u64 * 31 };
        let inputs = [id_words(&draft_ids), words(&draft_probs), words(&target_probs)];
        let inputs = [inputs[0].as_slice(), &inputs[1], &inputs[2]];
        let out = verify(ctx, verifier, inputs, shape, false);
        assert_eq!(out.status, ChainStatus::default());
        let twin =
            reference::chain_verify(&draft_ids, &draft_probs, &target_probs, shape, &verifier).unwrap();
        let same = check_against_twin(&out, &twin, &draft_ids, shape);
        assert!(same + 1 >= rows, "{vocab}: only {same} of {rows} last tokens were the twin's draws");
        let rejections = twin.iter().flatten().filter(|r| r.accepted < drafts).count();
        assert!(rejections > 0 && rejections < rows, "{vocab}: {rejections} rejections: both paths must run");
        if vocab < 2000 {
            let wide = verify(ctx, verifier, inputs, shape, true);
            assert_eq!(wide, out, "the i64 ids are the i32 draws");
        }
    }
}

/// A draft id out of range, a NaN at a draft's token, a negative probability in a
/// residual, and infinite one in a bonus row: each row emits -1 with 0 accepted and is
/// counted, and the good rows beside them are untouched.
#[test]
fn bad_rows_are_reported_never_drawn() {
    let ctx = ctx();
    let (rows, drafts, vocab) = (6, 1, 40);
    let shape = ChainShape { rows, drafts, vocab };
    let mut rng = rng(77);
    let mut target_probs = probability_rows(&mut rng, rows * 2, vocab);
    let draft_probs = probability_rows(&mut rng, rows, vocab);
    let mut draft_ids = drafts_from(&mut rng, &draft_probs, shape);
    // Row 1: an id past the vocabulary. Row 2: NaN at its draft's target probability.
    draft_ids[1] = vocab as i32;
    target_probs[2 * 2 * vocab + draft_ids[2] as usize] = f32::NAN;
    // Row 3: certain rejection (p = 0 at the draft) and a negative probability elsewhere.
    let row3 = 3 * 2 * vocab;
    target_probs[row3 + draft_ids[3] as usize] = 0.0;
    target_probs[row3 + (draft_ids[3] as usize + 1) % vocab] = -0.5;
    // Row 5: certain acceptance (q = p at the draft... p = 1 there) and +inf in its bonus row.
    let row5 = 5 * 2 * vocab;
    target_probs[row5..row5 + vocab].fill(0.0);
    target_probs[row5 + draft_ids[5] as usize] = 1.0;
    target_probs[row5 + vocab + 3] = f32::INFINITY;
    let out = verify(
        ctx,
        ChainVerifier { seed: 1 },
        [&id_words(&draft_ids), &words(&draft_probs), &words(&target_probs)],
        shape,
        false,
    );
    assert_eq!(out.status, ChainStatus { bad_rows: 4, first_bad_row: Some(1) });
    let twin =
        reference::chain_verify(&draft_ids, &draft_probs, &target_probs, shape, &ChainVerifier { seed: 1 })
            .unwrap();
    for (row, twin_row) in twin.iter().enumerate() {
        let ids = &out.ids[row * 2..row * 2 + 2];
        if [1, 2, 3, 5].contains(&row) {
            assert!(twin_row.is_none(), "row {row}: the twin must find it bad too");
            assert_eq!((ids, out.accepted[row]), (&[-1, -1][..], 0), "row {row}");
        } else {
            assert!(ids[0] >= 0, "row {row}: a good row draws");
        }
    }
}

/// The same seed gives the same ids; another seed others.
#[test]
fn seeds_repeat_and_differ() {
    let ctx = ctx();
    let shape = ChainShape { rows: 64, drafts: 3, vocab: 50 };
    let mut rng = rng(5);
    let target_probs = probability_rows(&mut rng, 64 * 4, 50);
    let draft_probs = probability_rows(&mut rng, 64 * 3, 50);
    let draft_ids = drafts_from(&mut rng, &draft_probs, shape);
    let run = |seed| ChainVerifier { seed }.run(ctx, &draft_ids, &draft_probs, &target_probs, shape).unwrap();
    let first = run(9);
    assert_eq!(first, run(9));
    assert_ne!(first.ids, run(10).ids);
    // Zero drafts: the bonus token alone, from p_0.
    let bonus = ChainShape { drafts: 0, ..shape };
    let out = ChainVerifier { seed: 3 }.run(ctx, &[], &[], &target_probs[..64 * 50], bonus).unwrap();
    assert!(out.accepted.iter().all(|&a| a == 0));
    assert!(out.ids.iter().all(|&id| (0..50).contains(&id)));
}

/// From logits under top-k 4 and temperature 0.7: the counts equal the twin's on the
/// reference's filtered probabilities (except within rounding), and every emitted token
/// lies in its position's allowed set.
#[test]
fn logits_are_filtered_as_the_sampler_filters() {
    let ctx = ctx();
    let (rows, drafts, vocab) = (16, 2, 33);
    let shape = ChainShape { rows, drafts, vocab };
    let filters = Sampler { temperature: 0.7, top_k: 4, ..Sampler::default() };
    let mut rng = rng(123);
    let draft_logits = rng.logits(rows * drafts * vocab, 3.0);
    let target_logits = rng.logits(rows * (drafts + 1) * vocab, 3.0);
    let distribution = |logits: &[f32], n: usize| -> Vec<f32> {
        reference::sample_distribution(logits, Shape::new(n, vocab), &filters)
            .unwrap()
            .into_iter()
            .flat_map(|row| row.unwrap().into_iter().map(|p| p as f32))
            .collect()
    };
    let draft_probs = distribution(&draft_logits, rows * drafts);
    let target_probs = distribution(&target_logits, rows * (drafts + 1));
    let draft_ids = drafts_from(&mut rng, &draft_probs, shape);
    let verifier = ChainVerifier { seed: 4 };
    let draft = ctx.upload_elements(&draft_logits).unwrap();
    let target = ctx.upload_elements(&target_logits).unwrap();
    let ids_in = ctx.upload_elements(&draft_ids).unwrap();
    let out = rows * (drafts + 1);
    let ids = poisoned::<f32>(ctx, out);
    let accepted = poisoned::<f32>(ctx, rows);
    let status = poisoned::<f32>(ctx, CHAIN_STATUS_WORDS);
    let outputs = ChainBuffers {
        draft_ids: BufferRegion::new(&ids_in),
        draft_probs: BufferRegion::new(&draft),
        target_probs: BufferRegion::new(&target),
        ids: BufferRegion::new(&ids),
        ids_i64: false,
        accepted: BufferRegion::new(&accepted),
        status: BufferRegion::new(&status),
    };
    let logits =
        [TensorRef::new(&draft, wgpu_softmax::DType::F32), TensorRef::new(&target, wgpu_softmax::DType::F32)];
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    verifier.encode_logits(ctx, &mut encoder, &filters, logits, &outputs, shape).unwrap();
    ctx.submit_and_wait(encoder).unwrap();
    let got = ChainOutput {
        ids: ctx.download_u32(&ids, out).unwrap().into_iter().map(|w| i64::from(w as i32)).collect(),
        accepted: ctx.download_u32(&accepted, rows).unwrap(),
        status: ChainStatus::from_words(&ctx.download_u32(&status, CHAIN_STATUS_WORDS).unwrap()),
    };
    assert_eq!(got.status, ChainStatus::default());
    let twin = reference::chain_verify(&draft_ids, &draft_probs, &target_probs, shape, &verifier).unwrap();
    check_against_twin(&got, &twin, &draft_ids, shape);
}

/// Shapes and buffers are checked before anything is recorded: slices of the wrong
/// length, an output aliasing an input, a buffer too small.
#[test]
fn bad_arguments_are_typed_errors() {
    let ctx = ctx();
    let shape = ChainShape { rows: 8, drafts: 1, vocab: 4 };
    let verifier = ChainVerifier::default();
    let short = verifier.run(ctx, &[0; 8], &[0.25; 32], &[0.25; 63], shape);
    assert!(matches!(short, Err(Error::ShapeMismatch { what: "target_probs", .. })), "{short:?}");
    let probs = ctx.upload_elements(&[0.25_f32; 64]).unwrap();
    let draft_ids = ctx.upload_elements(&[0_u32; 8]).unwrap();
    let accepted = ctx.upload_elements(&[0_u32; 8]).unwrap();
    let status = ctx.upload_elements(&[0_u32; 4]).unwrap();
    let ids = ctx.upload_elements(&[0_u32; 16]).unwrap();
    // Padded to 16 bytes: half what 8 counts need.
    let small = ctx.upload_elements(&[0_u32; 1]).unwrap();
    let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    let buffers = ChainBuffers {
        draft_ids: BufferRegion::new(&draft_ids),
        draft_probs: BufferRegion::new(&probs),
        target_probs: BufferRegion::new(&probs),
        ids: BufferRegion::new(&ids),
        ids_i64: false,
        accepted: BufferRegion::new(&accepted),
        status: BufferRegion::new(&status),
    };
    verifier.encode(ctx, &mut encoder, &buffers, shape).unwrap();
    let aliased = verifier.encode(
        ctx,
        &mut encoder,
        &ChainBuffers { ids: BufferRegion::new(&probs), ..buffers },
        shape,
    );
    assert!(matches!(aliased, Err(Error::AliasedBuffers)), "{aliased:?}");
    let too_small = verifier.encode(
        ctx,
        &mut encoder,
        &ChainBuffers { accepted: BufferRegion::new(&small), ..buffers },
        shape,
    );
    assert!(matches!(too_small, Err(Error::BufferTooSmall { .. })), "{too_small:?}");
}
