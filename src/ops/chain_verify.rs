//! Chain speculative-decoding verification (`FlashInfer`'s `chain_speculative_sampling`):
//! which of a draft model's tokens a target model accepts, and the token that follows
//! them (`shaders/ops/chain_verify.wgsl`).
//!
//! # Semantics
//!
//! Each row (a sequence) holds `K` draft tokens `d_0 .. d_{K-1}`, each drawn from the
//! draft model's distribution `q_i` over the vocabulary, and the target model's
//! distributions `p_0 .. p_K` (one more: the position after the last draft). In order,
//! draft `i` is accepted with probability `min(1, p_i(d_i) / q_i(d_i))`, as
//! `u_i * q_i(d_i) < p_i(d_i)`. At the first rejected position the row's last token is
//! drawn from the residual `max(0, p_i - q_i)` renormalised; when all `K` are accepted,
//! a bonus token is drawn from `p_K`. So a row emits `accepted + 1` tokens, and each is
//! distributed as the target model would have drawn it, whatever the draft (Leviathan,
//! Kalman and Matias, 2023; Chen et al., 2023). A residual of zero mass (`p_i = q_i`,
//! where a rejection cannot happen but rounding might) draws from `p_i`.
//!
//! Probabilities are f32, each row of `V` summing to 1 (the kernel renormalises the
//! residual, not `p`, so `p` must be a distribution). With a model's logits rather than
//! probabilities, [`ChainVerifier::encode_logits`] first applies a [`Sampler`]'s
//! temperature and filters to both, as the tokens were drafted.
//!
//! # Outputs
//!
//! `ids`, `rows x (K + 1)`: the accepted drafts, the drawn token, then `-1`;
//! `accepted`, one u32 per row. A row with a draft id outside `[0, V)`, or a NaN,
//! infinite or negative probability among those read, emits `-1` everywhere with
//! `accepted` 0 and is counted in the status words ([`ChainStatus`]): never a silent draw.
//!
//! # Random numbers
//!
//! Philox 4x32-10 with key `(seed & 0xffffffff, seed >> 32)`: the acceptance uniform of
//! position `i` of row `r` has counter `(r, i, 1, 0)`, the draw at position `i` counter
//! `(r, i, 2, 0)` ([`crate::philox::chain_verify_uniform`]). Each draw walks one pass over
//! the row's weights in a fixed order, so the same seed gives the same bits on every
//! adapter.

use crate::context::Context;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernels::{
    self, CHAIN_VERIFY_ENTRY, CHAIN_VERIFY_FLAG_IDS_I64, GroupShape, KernelKey, KernelSpec, OpKernel,
    STATUS_BAD_ROWS, STATUS_FIRST_BAD_ROW, Slot, VectorWidth, VerifyParams,
};
use crate::ops::sample::{SAMPLE_STATUS_WORDS, SampleBuffers, Sampler};
use crate::ops::validate;
use crate::plan::{rows_per_chunk, spread_grid};
use crate::record::Recorder;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tensor::{BufferRegion, TensorRef};

/// How many u32 words the chain verifier's status buffer holds.
pub const CHAIN_STATUS_WORDS: usize = 3;

/// The sizes of a verification: rows (sequences), draft tokens per row, vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainShape {
    /// Rows verified, one workgroup each.
    pub rows: usize,
    /// Draft tokens per row, `K` (0 draws the bonus token alone).
    pub drafts: usize,
    /// The vocabulary, `V`.
    pub vocab: usize,
}

impl ChainShape {
    /// Elements of the draft ids (`rows x K`), the draft probabilities (`rows x K x V`),
    /// the target probabilities (`rows x (K + 1) x V`) and the output ids
    /// (`rows x (K + 1)`).
    ///
    /// # Errors
    ///
    /// [`Error::ShapeOverflow`] when a count overflows `usize`.
    pub fn lens(&self) -> Result<[usize; 4]> {
        let overflow = || Error::ShapeOverflow { rows: self.rows, cols: self.vocab };
        let per_row = self.drafts.checked_add(1).ok_or_else(overflow)?;
        let draft_ids = self.rows.checked_mul(self.drafts).ok_or_else(overflow)?;
        let draft_probs = draft_ids.checked_mul(self.vocab).ok_or_else(overflow)?;
        let out = self.rows.checked_mul(per_row).ok_or_else(overflow)?;
        let target_probs = out.checked_mul(self.vocab).ok_or_else(overflow)?;
        Ok([draft_ids, draft_probs, target_probs, out])
    }

    /// Checks the lengths of the draft ids, the draft probabilities and the target
    /// probabilities against the shape.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming the first that differs (its rows and columns the
    /// shape's rows and vocabulary), and [`Error::ShapeOverflow`] as [`ChainShape::lens`].
    pub fn check_lens(&self, draft_ids: usize, draft_probs: usize, target_probs: usize) -> Result<()> {
        let [ids_len, draft_len, target_len, _] = self.lens()?;
        for (what, expected, actual) in [
            ("draft_ids", ids_len, draft_ids),
            ("draft_probs", draft_len, draft_probs),
            ("target_probs", target_len, target_probs),
        ] {
            if expected != actual {
                return Err(Error::ShapeMismatch {
                    what,
                    rows: self.rows,
                    cols: self.vocab,
                    expected,
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Checks that the kernel can index every element in u32 and that the vocabulary is
    /// not empty.
    fn check(&self) -> Result<[usize; 4]> {
        let lens = self.lens()?;
        if self.vocab == 0 {
            return Err(Error::InvalidOption { option: "vocab", problem: "the vocabulary is empty".into() });
        }
        if lens.iter().any(|&n| u32::try_from(n).is_err()) || u32::try_from(self.drafts + 1).is_err() {
            return Err(Error::InvalidOption {
                option: "shape",
                problem: format!(
                    "{self:?} has more than u32::MAX elements in a tensor: verify fewer rows at a time"
                ),
            });
        }
        Ok(lens)
    }
}

/// The buffers of [`ChainVerifier::encode`]: regions of the caller's buffers.
#[derive(Clone, Copy, Debug)]
pub struct ChainBuffers<'a> {
    /// The draft token ids, `rows x K` i32.
    pub draft_ids: BufferRegion<'a>,
    /// The draft probabilities, `rows x K x V` f32.
    pub draft_probs: BufferRegion<'a>,
    /// The target probabilities, `rows x (K + 1) x V` f32.
    pub target_probs: BufferRegion<'a>,
    /// The output ids, `rows x (K + 1)`: i32, or i64 with `ids_i64`.
    pub ids: BufferRegion<'a>,
    /// Whether `ids` holds i64 ids (two words each, low first, as PyTorch stores them).
    pub ids_i64: bool,
    /// The accepted drafts per row, u32.
    pub accepted: BufferRegion<'a>,
    /// [`CHAIN_STATUS_WORDS`] u32 words: cleared, then the bad rows (see [`ChainStatus`]).
    pub status: BufferRegion<'a>,
}

/// What the status words say after a run: the rows with a draft id out of range or a
/// probability that is NaN, infinite or negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainStatus {
    /// How many rows were bad.
    pub bad_rows: u32,
    /// The first.
    pub first_bad_row: Option<u32>,
}

impl ChainStatus {
    /// Decodes the status words read back from a status buffer.
    #[must_use]
    pub fn from_words(words: &[u32]) -> Self {
        let word = |i: u32| words.get(i as usize).copied().unwrap_or(0);
        let first = word(STATUS_FIRST_BAD_ROW);
        Self { bad_rows: word(STATUS_BAD_ROWS), first_bad_row: (first != 0).then(|| u32::MAX - first) }
    }
}

/// What [`ChainVerifier::run`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainOutput {
    /// `rows x (K + 1)` ids, row-major: the accepted drafts, the drawn token, then -1.
    pub ids: Vec<i64>,
    /// The accepted drafts per row.
    pub accepted: Vec<u32>,
    /// The bad rows.
    pub status: ChainStatus,
}

/// Chain speculative-decoding verification (see the module's semantics), seeded.
///
/// ```no_run
/// use wgpu_softmax::{ChainShape, ChainVerifier, Context};
/// let ctx = Context::new()?;
/// // One row, two drafts over a vocabulary of 3.
/// let shape = ChainShape { rows: 1, drafts: 2, vocab: 3 };
/// let draft_ids = [2, 0];
/// let draft_probs = [0.2_f32, 0.2, 0.6, 0.5, 0.25, 0.25];
/// let target_probs = [0.1_f32, 0.3, 0.6, 0.4, 0.4, 0.2, 0.3, 0.3, 0.4];
/// let out = ChainVerifier { seed: 42 }.run(&ctx, &draft_ids, &draft_probs, &target_probs, shape)?;
/// assert_eq!(out.ids.len(), 3);
/// assert!(out.accepted[0] <= 2);
/// # Ok::<(), wgpu_softmax::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainVerifier {
    /// The seed of every uniform (see the module's random numbers).
    pub seed: u64,
}

impl ChainVerifier {
    /// Records the verification into `encoder`: for each row, the accepted drafts and the
    /// token after them into `buffers.ids`, the count into `buffers.accepted`, and the bad
    /// rows into `buffers.status` (cleared first). One dispatch, one workgroup per row.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for an empty vocabulary or a tensor past u32 indexing;
    /// [`Error::ShapeOverflow`] for sizes past `usize`;
    /// [`Error::MissingUsage`], [`Error::MisalignedOffset`], [`Error::RegionOutOfBounds`]
    /// and [`Error::BufferTooSmall`] for a buffer that cannot be bound as needed;
    /// [`Error::AliasedBuffers`] when an output shares a buffer with an input or another
    /// output; [`Error::LimitExceeded`] for a grid past the device's limits; the
    /// context's fault if the device was lost.
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        buffers: &ChainBuffers<'_>,
        shape: ChainShape,
    ) -> Result<()> {
        let [draft_ids, draft_probs, target_probs, out] = shape.check()?;
        let id_bytes = if buffers.ids_i64 { 8 } else { 4 };
        validate::storage_region(ctx, "draft_ids", &buffers.draft_ids, 4 * draft_ids as u64)?;
        validate::storage_region(ctx, "draft_probs", &buffers.draft_probs, 4 * draft_probs as u64)?;
        validate::storage_region(ctx, "target_probs", &buffers.target_probs, 4 * target_probs as u64)?;
        validate::storage_region(ctx, "ids", &buffers.ids, id_bytes * out as u64)?;
        validate::storage_region(ctx, "accepted", &buffers.accepted, 4 * shape.rows as u64)?;
        validate::storage_region(ctx, "status", &buffers.status, 4 * CHAIN_STATUS_WORDS as u64)?;
        validate::outputs_distinct(
            &[Some(buffers.draft_ids), Some(buffers.draft_probs), Some(buffers.target_probs)],
            &[Some(buffers.ids), Some(buffers.accepted), Some(buffers.status)],
        )?;
        let recorder = &mut Recorder::new(encoder);
        ctx.catching(|| {
            recorder.encoder().clear_buffer(
                buffers.status.buffer(),
                buffers.status.offset(),
                Some(4 * CHAIN_STATUS_WORDS as u64),
            );
            if shape.rows == 0 {
                return Ok(());
            }
            self.record(ctx, recorder, buffers, shape, [draft_ids, draft_probs, target_probs, out])
        })
    }

    /// Records the one dispatch.
    fn record(
        &self,
        ctx: &Context,
        recorder: &mut Recorder<'_>,
        buffers: &ChainBuffers<'_>,
        shape: ChainShape,
        [draft_ids, _, target_probs, out]: [usize; 4],
    ) -> Result<()> {
        let spec = KernelSpec {
            op: OpKernel::ChainVerify,
            strategy: Strategy::WorkgroupPerRow,
            dtype: DType::F32,
            vector: VectorWidth::Scalar,
            cached: false,
            strided: false,
            paired: false,
            group: GroupShape::DEFAULT,
        };
        let module = ctx.module(spec)?;
        let pipeline =
            ctx.pipeline(&KernelKey { spec, entry_point: CHAIN_VERIFY_ENTRY, constants: Vec::new() })?;
        // A binding is never empty: K = 0 binds the draft tensors' first word.
        let bytes = |n: usize| (4 * n as u64).max(4);
        let id_bytes = if buffers.ids_i64 { 2 * bytes(out) } else { bytes(out) };
        let whole = [
            (Slot::DraftIds, buffers.draft_ids.binding(0, bytes(draft_ids))),
            (Slot::Ids, buffers.ids.binding(0, id_bytes)),
            (Slot::Accepted, buffers.accepted.binding(0, bytes(shape.rows))),
            (Slot::Status, buffers.status.binding(0, 4 * CHAIN_STATUS_WORDS as u64)),
        ];
        // Blocks of rows whose probabilities each fit one storage binding, at aligned
        // offsets.
        let (draft_row, target_row) =
            (4 * (shape.drafts * shape.vocab) as u64, 4 * (target_probs / shape.rows) as u64);
        let block = rows_per_chunk(shape.rows, 1, &[draft_row, target_row], ctx.caps(), u64::MAX)?;
        let label = spec.label();
        for first_row in (0..shape.rows).step_by(block.max(1)) {
            let block_rows = block.min(shape.rows - first_row);
            let grid = spread_grid(block_rows as u64, ctx.caps().max_workgroups_per_dimension)?;
            let span = |width: u64| (first_row as u64 * width, (block_rows as u64 * width).max(4));
            let (draft_at, draft_len) = span(draft_row);
            let (target_at, target_len) = span(target_row);
            let mut bound = whole.to_vec();
            bound.push((Slot::DraftProbs, buffers.draft_probs.binding(draft_at, draft_len)));
            bound.push((Slot::TargetProbs, buffers.target_probs.binding(target_at, target_len)));
            #[allow(clippy::cast_possible_truncation)] // checked: the sizes fit u32
            let params = VerifyParams {
                rows: shape.rows as u32,
                cols: shape.vocab as u32,
                drafts: shape.drafts as u32,
                groups_x: grid[0],
                seed_lo: self.seed as u32,
                seed_hi: (self.seed >> 32) as u32,
                flags: if buffers.ids_i64 { CHAIN_VERIFY_FLAG_IDS_I64 } else { 0 },
                row_base: first_row as u32,
                block_rows: block_rows as u32,
                ..VerifyParams::default()
            };
            let params = ctx.uniform(&label, bytemuck::bytes_of(&params))?;
            let bindings = kernels::bind(&module, &params, &bound, |i| ctx.placeholder(i))?;
            let group = ctx.bind_buffers(&module, &bindings)?;
            recorder.dispatch(&label, &pipeline, &group, grid);
        }
        Ok(())
    }

    /// As [`ChainVerifier::encode`], from the draft's and the target's logits (any
    /// storage type, `rows x K x V` and `rows x (K + 1) x V`) under `filters`' temperature,
    /// top-k, top-p and min-p (its `num_samples` and `seed` unused): the filtered,
    /// renormalised probabilities of both are written to scratch buffers by the sampler's
    /// masks, then verified. A draft row with a NaN or `+inf` logit makes its
    /// probabilities NaN, so the row is counted bad. The draft ids, outputs and status
    /// are as in [`ChainBuffers`] (whose probability regions are ignored).
    ///
    /// # Errors
    ///
    /// As [`ChainVerifier::encode`] and [`Sampler::encode`], and
    /// [`Error::InvalidOption`] when the two logits differ in storage type.
    pub fn encode_logits(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        filters: &Sampler,
        [draft_logits, target_logits]: [TensorRef<'_>; 2],
        outputs: &ChainBuffers<'_>,
        shape: ChainShape,
    ) -> Result<()> {
        let [_, draft_len, target_len, _] = shape.check()?;
        if draft_logits.dtype() != target_logits.dtype() {
            return Err(Error::InvalidOption {
                option: "logits",
                problem: format!(
                    "the draft logits are {} and the target's {}: give both in one storage type",
                    draft_logits.dtype(),
                    target_logits.dtype()
                ),
            });
        }
        let masks = Sampler { num_samples: 0, ..*filters };
        masks.check_options()?;
        let recorder = &mut Recorder::new(encoder);
        ctx.catching(|| {
            let no_ids = ctx.scratch_buffer(recorder, 4)?;
            let sampler_status = ctx.scratch_buffer(recorder, 4 * SAMPLE_STATUS_WORDS as u64)?;
            let draft_probs = ctx.scratch_buffer(recorder, (4 * draft_len as u64).max(4))?;
            let target_probs = ctx.scratch_buffer(recorder, 4 * target_len as u64)?;
            let positions = [
                (draft_logits, &draft_probs, shape.drafts),
                (target_logits, &target_probs, shape.drafts + 1),
            ];
            for (logits, probs, per_row) in positions {
                let rows = shape.rows * per_row;
                if rows > 0 {
                    let buffers = SampleBuffers::new(
                        logits,
                        BufferRegion::new(&no_ids),
                        BufferRegion::new(&sampler_status),
                    )
                    .with_probs(BufferRegion::new(probs));
                    masks.encode(ctx, recorder.encoder(), &buffers, Shape::new(rows, shape.vocab))?;
                }
            }
            let buffers = ChainBuffers {
                draft_probs: BufferRegion::new(&draft_probs),
                target_probs: BufferRegion::new(&target_probs),
                ..*outputs
            };
            self.encode(ctx, recorder.encoder(), &buffers, shape)
        })
    }

    /// Verifies on the GPU: uploads the drafts and probabilities, records
    /// [`ChainVerifier::encode`], and reads the ids (as i64), the counts and the status
    /// back.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] when a slice is not `shape`'s length, and the errors of
    /// [`ChainVerifier::encode`].
    pub fn run(
        &self,
        ctx: &Context,
        draft_ids: &[i32],
        draft_probs: &[f32],
        target_probs: &[f32],
        shape: ChainShape,
    ) -> Result<ChainOutput> {
        let [_, _, _, out] = shape.check()?;
        shape.check_lens(draft_ids.len(), draft_probs.len(), target_probs.len())?;
        ctx.catching(|| {
            // Empty tensors (K = 0) still bind a word.
            let upload = |words: &[u32]| ctx.upload_elements(if words.is_empty() { &[0] } else { words });
            let draft_ids = upload(bytemuck::cast_slice(draft_ids))?;
            let draft_probs = upload(bytemuck::cast_slice(draft_probs))?;
            let target_probs = ctx.upload_elements(target_probs)?;
            let ids = ctx.storage_buffer(out)?;
            let accepted = ctx.storage_buffer(shape.rows.max(1))?;
            let status = ctx.storage_buffer(CHAIN_STATUS_WORDS)?;
            let buffers = ChainBuffers {
                draft_ids: BufferRegion::new(&draft_ids),
                draft_probs: BufferRegion::new(&draft_probs),
                target_probs: BufferRegion::new(&target_probs),
                ids: BufferRegion::new(&ids),
                ids_i64: false,
                accepted: BufferRegion::new(&accepted),
                status: BufferRegion::new(&status),
            };
            let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgpu-softmax: chain verify"),
            });
            self.encode(ctx, &mut encoder, &buffers, shape)?;
            let parts = [
                (&ids, 4 * out as u64),
                (&accepted, 4 * shape.rows as u64),
                (&status, 4 * CHAIN_STATUS_WORDS as u64),
            ];
            let mut read = ctx.finish_and_read_many(encoder, &parts)?.into_iter();
            let mut next = || read.next().unwrap_or_default();
            let ids: Vec<i32> = bytemuck::pod_collect_to_vec(&next());
            let accepted = bytemuck::pod_collect_to_vec(&next());
            let status = ChainStatus::from_words(&bytemuck::pod_collect_to_vec(&next()));
            Ok(ChainOutput { ids: ids.into_iter().map(i64::from).collect(), accepted, status })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_count_their_elements_and_refuse_what_cannot_be_indexed() {
        let shape = ChainShape { rows: 3, drafts: 4, vocab: 10 };
        assert_eq!(shape.lens().ok(), Some([12, 120, 150, 15]));
        assert!(matches!(
            ChainShape { vocab: 0, ..shape }.check(),
            Err(Error::InvalidOption { option: "vocab", .. })
        ));
        assert!(matches!(
            ChainShape { rows: 1 << 12, drafts: 7, vocab: 1 << 20 }.check(),
            Err(Error::InvalidOption { option: "shape", .. })
        ));
        assert!(matches!(
            ChainShape { rows: usize::MAX, drafts: 2, vocab: 2 }.lens(),
            Err(Error::ShapeOverflow { .. })
        ));
    }

    #[test]
    fn status_words_decode() {
        let mut words = [0_u32; CHAIN_STATUS_WORDS];
        assert_eq!(ChainStatus::from_words(&words), ChainStatus::default());
        words[STATUS_BAD_ROWS as usize] = 2;
        words[STATUS_FIRST_BAD_ROW as usize] = u32::MAX - 5;
        assert_eq!(ChainStatus::from_words(&words), ChainStatus { bad_rows: 2, first_bad_row: Some(5) });
    }
}
