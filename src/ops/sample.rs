//! Sampling token ids from logits without a sort: temperature, top-k, top-p and min-p,
//! seeded draws from Philox 4x32-10 (`shaders/ops/sample.wgsl`).
//!
//! # Semantics
//!
//! For each row of logits `l` (a [`Shape`]: the class axis last, or anywhere, read where
//! it lies), in this order:
//!
//! 1. **Temperature** `T`: `x = l / T`. `T = 0` is greedy: every draw is the argmax of the
//!    row (the lowest index on ties) and the filters are not applied.
//! 2. **Top-k** (`top_k > 0`): keep the `k` largest `x` (every token tied with the `k`-th
//!    is kept too).
//! 3. **Top-p** (`top_p < 1`), on the top-k-renormalised distribution: keep the smallest
//!    set of the most probable tokens whose probability mass reaches `p`; the token that
//!    crosses `p` is kept, and so is every token tied with it.
//! 4. **Min-p** (`min_p > 0`): keep the tokens whose probability is at least `min_p`
//!    times the largest probability (`x >= max x + ln(min_p)`).
//!
//! A temperature so small that the largest logit over it is not a finite f32 draws the
//! argmax (the limit as `T` goes to 0). A draw is taken from the kept tokens'
//! probabilities renormalised; the most probable token is always kept. `-inf` logits are
//! never drawn; a row whose only finite logit is one token always draws it. A row holding
//! a NaN or `+inf`, or nothing finite, is counted in the status words
//! ([`SampleStatus`]) and draws `-1` (log-probability NaN): never a silent draw.
//!
//! # Per-row settings
//!
//! Each of temperature, top-k, top-p and min-p may instead be one value per row, from a
//! GPU buffer ([`SampleBuffers::with_row_temperature`] and its kin) or, through
//! [`Sampler::run_with_settings`], from host slices ([`RowSettings`]); a per-row setting
//! replaces the scalar one for every row. Per row, top-k 0 and top-p 1 are off. A row
//! whose own setting is out of range (a temperature negative or not finite, top-p
//! outside `(0, 1]`, min-p outside `[0, 1]`) draws `-1` (log-probability NaN) and is
//! counted in the status words ([`SampleStatus::bad_setting_rows`]), never drawn from
//! silently. The passes are those of the filters that any row may use: a per-row top-k
//! or top-p buffer runs that filter's search for every row.
//!
//! # Masks
//!
//! Optionally ([`SampleBuffers::with_probs`], [`SampleBuffers::with_masked_logits`]) the
//! first draw dispatch also writes each row's filtered, renormalised probabilities (f32)
//! and the logits with every token not kept set to `-inf` (in the logits' storage type),
//! from the same membership test as the draws; `num_samples` may be 0 for the masks alone.
//! Both are in the logits' layout, along a strided class axis too.
//!
//! # Layout
//!
//! Rows are numbered as [`Shape`] does: along a class axis that is not last (`inner > 1`),
//! row `o * inner + j` is the position `(o, j)` off the axis, and its classes lie `inner`
//! elements apart; each workgroup reads its row's classes where they lie (nothing is
//! gathered or transposed). The ids and log-probabilities are `rows x num_samples` in
//! that row order, which is PyTorch's order of the tensor with the class axis removed.
//!
//! # Algorithm
//!
//! One workgroup of 256 invocations per row, each row's state between steps in a small
//! scratch buffer: a dispatch for the statistics, one for the threshold searches (on a
//! driver that limits an invocation's loop iterations, llvmpipe, as many as stay under
//! half the limit: one up to about 380000 columns), and the draws':
//!
//! - the row's max and argmax, and whether it is bad: one pass. With top-k on, the same
//!   pass keeps the four largest keys of each invocation's chunk, and where `k` of those
//!   1024 share their first digits with the max's key, so does the top-k threshold `K_k`.
//!   The keys among them under those digits, if 512 or fewer and at least `k`, are
//!   sorted in workgroup memory; their `k`-th is `K_k` unless some chunk's fourth largest
//!   is at or above it (that chunk may hold more), and where none is, they hold every
//!   key at or above `K_k` and settle both thresholds as the candidates' finish below
//!   does. With top-k 50 over 32000 or more logits uniform in (-4, 4) that is nearly
//!   every row: 2 passes in all, as many as plain sampling. Otherwise the search
//!   dispatch skips the digits found, gathers the row's keys under them if they number at
//!   most 512 (one pass), else takes the digit steps from there;
//! - the top-k threshold: the largest order-preserving key `K` of `x`'s bits with
//!   `count(key >= K) >= k`, a radix selection 4 bits at a time, highest first: per
//!   step, a 16-bin histogram of the digit over the keys under the digits found so far,
//!   and the largest digit whose count, with the counts above it, reaches `k`: 8 passes
//!   (top-k only);
//! - the top-p threshold, the largest `K` with `mass(key >= max(K, K_k)) >= p * M_k`,
//!   the same way with histograms of the mass `exp(x - max)` of the top-k set, whose
//!   first histogram is `M_k`: 8 passes (top-p only). Each bin is a sum in one fixed
//!   order (chunks, then a tree), so the bits repeat; where rounding leaves no digit
//!   reaching the mass, digit 0 keeps the whole bin, a superset;
//! - the candidates' finish: once the top-k search's candidates (the keys at or above its
//!   digits so far, the rest 0; their count is the histogram's) number at most 512, one
//!   pass gathers them with their masses into workgroup memory and sorts them, and both
//!   thresholds are read off the sorted keys: `K_k` the `k`-th (the radix search's own
//!   answer), `K_p` the key where the running mass of the keys at or above `K_k`, summed
//!   in that one order, first reaches `p` times their whole. The rest of both searches is
//!   skipped (a sampler with top-k up to 512 and no heavy ties always finishes this way
//!   where the statistics did not).
//!   Likewise the top-p search, whose steps count the keys of each bin beside its mass:
//!   once its bin holds at most 512 keys, one pass gathers and sorts them, and `K_p` is
//!   the key where the mass above the bin plus their running mass first reaches `p * M_k`
//!   (none reaching it by rounding: the whole bin, as the digit steps would keep). Top-p
//!   0.9 alone over 32000 logits uniform in (-4, 4) finishes after 3 or 4 digits: 6 or 7
//!   passes in all instead of 10;
//! - min-p: a bound on `x`, no pass;
//! - the draws: one pass for the kept mass of each invocation's chunk, and per draw a
//!   look at 1/256 of the row.
//!
//! So at most 18 passes over a row (with top-k and top-p, where the candidates never
//! shrink to 512: top-k above 512 and more than 512 keys in every top-p bin, or more
//! than 512 keys tied at each threshold), plus 1/256
//! of a row per draw, in 3 dispatches (2 without top-k and top-p) up to 380000 columns on
//! llvmpipe and on any GPU. Membership is
//! decided everywhere by the same comparison of keys against the row's final threshold
//! (the largest of the three), so no draw lands on a filtered token, whatever the
//! rounding of the sums.
//!
//! # Random numbers
//!
//! Draw `s` of row `r` uses Philox 4x32-10 with key `(seed & 0xffffffff, seed >> 32)`
//! and counter `(r, s, 0, 0)`; its uniform is the first output word's top 24 bits times
//! `2^-24` ([`crate::philox::sample_uniform`] on the host). The draw is the kept token
//! where the running kept mass first exceeds `uniform * total`.

use crate::context::Context;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::kernels::{
    self, GroupShape, KernelKey, KernelSpec, OpKernel, SAMPLE_BINS, SAMPLE_CANDIDATES, SAMPLE_DRAW_ENTRY,
    SAMPLE_FLAG_IDS_I64, SAMPLE_FLAG_LOGPROBS, SAMPLE_FLAG_MASKED, SAMPLE_FLAG_PROBS, SAMPLE_FLAG_ROW_MIN_P,
    SAMPLE_FLAG_ROW_TEMPERATURE, SAMPLE_FLAG_ROW_TOP_K, SAMPLE_FLAG_ROW_TOP_P, SAMPLE_FLAG_TOP_K_ON,
    SAMPLE_FLAG_TOP_P_ON, SAMPLE_LEVELS, SAMPLE_MAX_COLS, SAMPLE_SEARCH_ENTRY, SAMPLE_STATE_WORDS,
    SAMPLE_STATS_ENTRY, SAMPLE_STATUS_BAD_SETTINGS, SAMPLE_STATUS_FIRST_BAD_SETTINGS, SAMPLE_STEP_DRAW,
    SAMPLE_STEP_STATS, SAMPLE_STEP_TOP_K, SAMPLE_STEP_TOP_P, SAMPLE_WORKGROUP_SIZE, STATUS_BAD_ROWS,
    STATUS_FIRST_BAD_ROW, SampleParams, Slot, VectorWidth,
};
use crate::ops::validate;
use crate::plan::{DeviceCaps, rows_per_chunk, spread_grid};
use crate::record::Recorder;
use crate::shape::Shape;
use crate::strategy::Strategy;
use crate::tensor::{BufferRegion, TensorRef};

/// Invocations of the sampler's workgroup (one workgroup per row).
const GROUP: u64 = SAMPLE_WORKGROUP_SIZE as u64;

/// How many u32 words the sampler's status buffer holds.
pub const SAMPLE_STATUS_WORDS: usize = 6;

/// Sampling options: temperature, top-k, top-p and min-p, applied in that order (see the
/// module's semantics), draws per row and the seed.
///
/// ```no_run
/// use wgpu_softmax::{Context, Sampler, Shape};
/// let ctx = Context::new()?;
/// let logits = vec![0.5_f32, 2.0, -1.0, 0.0, 3.0, 1.0];
/// let sampler = Sampler { temperature: 0.8, top_k: 2, num_samples: 4, seed: 7, ..Sampler::default() };
/// let out = sampler.run(&ctx, &logits, Shape::new(2, 3), true)?;
/// assert_eq!(out.ids.len(), 2 * 4);
/// # Ok::<(), wgpu_softmax::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampler {
    /// Divides the logits; 0 is greedy (the argmax, lowest index on ties). Default 1.
    pub temperature: f32,
    /// Keep the `top_k` most probable tokens; 0 is off (the default).
    pub top_k: u32,
    /// Keep the smallest set of most probable tokens whose mass reaches `top_p`, in
    /// `(0, 1]`; 1 is off (the default).
    pub top_p: f32,
    /// Keep the tokens of probability at least `min_p` times the largest, in `[0, 1]`; 0
    /// is off (the default).
    pub min_p: f32,
    /// Draws per row. Default 1.
    pub num_samples: usize,
    /// The generator's seed. Default 0.
    pub seed: u64,
}

impl Default for Sampler {
    fn default() -> Self {
        Self { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, num_samples: 1, seed: 0 }
    }
}

/// Per-row settings on the GPU: each one value per row (`rows` 32-bit words from the
/// region's offset: f32 for temperature, top-p and min-p, u32 for top-k), replacing the
/// [`Sampler`]'s scalar for every row. Each region is copied into the sampler's scratch
/// before its passes, so it needs `COPY_SRC` usage and an offset that is a multiple of 4.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowSettingBuffers<'a> {
    /// Each row's temperature (f32; 0 is greedy for that row).
    pub temperature: Option<BufferRegion<'a>>,
    /// Each row's top-k (u32; 0 is off).
    pub top_k: Option<BufferRegion<'a>>,
    /// Each row's top-p (f32; 1 is off).
    pub top_p: Option<BufferRegion<'a>>,
    /// Each row's min-p (f32; 0 is off).
    pub min_p: Option<BufferRegion<'a>>,
}

impl RowSettingBuffers<'_> {
    /// The flag bits of the settings given.
    fn flags(&self) -> u32 {
        let bit = |on: bool, bit: u32| if on { bit } else { 0 };
        bit(self.temperature.is_some(), SAMPLE_FLAG_ROW_TEMPERATURE)
            | bit(self.top_k.is_some(), SAMPLE_FLAG_ROW_TOP_K)
            | bit(self.top_p.is_some(), SAMPLE_FLAG_ROW_TOP_P)
            | bit(self.min_p.is_some(), SAMPLE_FLAG_ROW_MIN_P)
    }

    /// The settings given, with their names and their place in the scratch.
    fn given(&self) -> impl Iterator<Item = (&'static str, u64, BufferRegion<'_>)> {
        [
            ("row temperature", 0, self.temperature),
            ("row top_k", 1, self.top_k),
            ("row top_p", 2, self.top_p),
            ("row min_p", 3, self.min_p),
        ]
        .into_iter()
        .filter_map(|(what, at, region)| region.map(|region| (what, at, region)))
    }
}

/// Per-row settings on the host, for [`Sampler::run_with_settings`] and
/// [`crate::reference::sample_distribution_with_settings`]: each, when given, one value
/// per row replacing the [`Sampler`]'s scalar.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowSettings {
    /// Each row's temperature.
    pub temperature: Option<Vec<f32>>,
    /// Each row's top-k (0 is off).
    pub top_k: Option<Vec<u32>>,
    /// Each row's top-p (1 is off).
    pub top_p: Option<Vec<f32>>,
    /// Each row's min-p (0 is off).
    pub min_p: Option<Vec<f32>>,
}

impl RowSettings {
    /// Checks that every setting given has one value per row.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming the setting whose length is not `rows`.
    pub fn check_rows(&self, rows: usize) -> Result<()> {
        let lengths = [
            ("row temperature", self.temperature.as_ref().map(Vec::len)),
            ("row top_k", self.top_k.as_ref().map(Vec::len)),
            ("row top_p", self.top_p.as_ref().map(Vec::len)),
            ("row min_p", self.min_p.as_ref().map(Vec::len)),
        ];
        for (what, len) in lengths {
            if let Some(len) = len {
                Shape::new(rows, 1).check_len(what, len)?;
            }
        }
        Ok(())
    }

    /// The options that row `row` samples under: `sampler` with the per-row settings
    /// given in place of its scalars (a row past a setting's length keeps the scalar).
    #[must_use]
    pub fn for_row(&self, sampler: &Sampler, row: usize) -> Sampler {
        let pick = |values: &Option<Vec<f32>>, scalar: f32| {
            values.as_ref().and_then(|v| v.get(row).copied()).unwrap_or(scalar)
        };
        Sampler {
            temperature: pick(&self.temperature, sampler.temperature),
            top_k: self.top_k.as_ref().and_then(|v| v.get(row).copied()).unwrap_or(sampler.top_k),
            top_p: pick(&self.top_p, sampler.top_p),
            min_p: pick(&self.min_p, sampler.min_p),
            ..*sampler
        }
    }
}

/// The caller's buffers for [`Sampler::encode`].
#[derive(Clone, Copy, Debug)]
pub struct SampleBuffers<'a> {
    /// The logits in the [`Shape`]'s layout (the class axis anywhere), f32, f16 or bf16.
    pub logits: TensorRef<'a>,
    /// The token ids, `rows x num_samples`, row-major: i32, or i64 (two words each, low
    /// first, as PyTorch stores them) with `ids_i64`.
    pub ids: BufferRegion<'a>,
    /// Whether `ids` holds i64 ids (see [`SampleBuffers::with_i64_ids`]).
    pub ids_i64: bool,
    /// Each draw's log-probability under the filtered, renormalised distribution (f32,
    /// the shape of `ids`), if wanted.
    pub logprobs: Option<BufferRegion<'a>>,
    /// [`SAMPLE_STATUS_WORDS`] u32 words: cleared, then the count of bad rows and the
    /// first (see [`SampleStatus`]).
    pub status: BufferRegion<'a>,
    /// Settings given per row (none by default).
    pub rows: RowSettingBuffers<'a>,
    /// The filtered, renormalised probabilities, f32 in the logits' layout (`FlashInfer`'s
    /// `top_k_renorm_probs` / `top_p_renorm_probs`), if wanted: each kept token's
    /// probability, 0 elsewhere; one-hot on the argmax for a greedy row; NaN for a bad row.
    pub probs: Option<BufferRegion<'a>>,
    /// The masked logits, in the logits' storage type and layout (`FlashInfer`'s
    /// `top_k_mask_logits`), if wanted: each kept token's logit as stored (not divided by
    /// the temperature), `-inf` elsewhere; NaN for a bad row.
    pub masked_logits: Option<BufferRegion<'a>>,
}

impl<'a> SampleBuffers<'a> {
    /// The logits, the ids and the status, without log-probabilities or per-row settings.
    #[must_use]
    pub fn new(logits: TensorRef<'a>, ids: BufferRegion<'a>, status: BufferRegion<'a>) -> Self {
        Self {
            logits,
            ids,
            logprobs: None,
            status,
            rows: RowSettingBuffers::default(),
            probs: None,
            masked_logits: None,
            ids_i64: false,
        }
    }

    /// The same, writing the ids as i64 (two 32-bit words each, low first, -1 for a bad
    /// row sign-extended): a buffer a PyTorch `LongTensor` can read. `ids` then needs
    /// `8 x rows x num_samples` bytes.
    #[must_use]
    pub const fn with_i64_ids(self) -> Self {
        Self { ids_i64: true, ..self }
    }

    /// The same, writing the filtered, renormalised probabilities (f32, the logits' layout)
    /// into `probs`.
    #[must_use]
    pub fn with_probs(self, probs: impl Into<BufferRegion<'a>>) -> Self {
        Self { probs: Some(probs.into()), ..self }
    }

    /// The same, writing the masked logits (the logits' storage type and layout) into
    /// `masked_logits`.
    #[must_use]
    pub fn with_masked_logits(self, masked_logits: impl Into<BufferRegion<'a>>) -> Self {
        Self { masked_logits: Some(masked_logits.into()), ..self }
    }

    /// The same, writing each draw's log-probability into `logprobs`.
    #[must_use]
    pub fn with_logprobs(self, logprobs: impl Into<BufferRegion<'a>>) -> Self {
        Self { logprobs: Some(logprobs.into()), ..self }
    }

    /// The same, with each row's temperature (f32) from `region`.
    #[must_use]
    pub fn with_row_temperature(mut self, region: impl Into<BufferRegion<'a>>) -> Self {
        self.rows.temperature = Some(region.into());
        self
    }

    /// The same, with each row's top-k (u32) from `region`.
    #[must_use]
    pub fn with_row_top_k(mut self, region: impl Into<BufferRegion<'a>>) -> Self {
        self.rows.top_k = Some(region.into());
        self
    }

    /// The same, with each row's top-p (f32) from `region`.
    #[must_use]
    pub fn with_row_top_p(mut self, region: impl Into<BufferRegion<'a>>) -> Self {
        self.rows.top_p = Some(region.into());
        self
    }

    /// The same, with each row's min-p (f32) from `region`.
    #[must_use]
    pub fn with_row_min_p(mut self, region: impl Into<BufferRegion<'a>>) -> Self {
        self.rows.min_p = Some(region.into());
        self
    }
}

/// What the status words say after a run: the rows that held a NaN or `+inf`, or no
/// finite logit, and the rows whose per-row settings were out of range; both drew `-1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleStatus {
    /// How many rows held a NaN or `+inf`, or no finite logit.
    pub bad_rows: u32,
    /// The first such row.
    pub first_bad_row: Option<u32>,
    /// How many rows had a per-row setting out of range.
    pub bad_setting_rows: u32,
    /// The first such row.
    pub first_bad_setting_row: Option<u32>,
}

impl SampleStatus {
    /// Decodes the status words read back from a status buffer.
    #[must_use]
    pub fn from_words(words: &[u32]) -> Self {
        let word = |i: u32| words.get(i as usize).copied().unwrap_or(0);
        // Stored as u32::MAX - row, so that zero means none and atomicMax keeps the first.
        let first = |i: u32| (word(i) != 0).then(|| u32::MAX - word(i));
        Self {
            bad_rows: word(STATUS_BAD_ROWS),
            first_bad_row: first(STATUS_FIRST_BAD_ROW),
            bad_setting_rows: word(SAMPLE_STATUS_BAD_SETTINGS),
            first_bad_setting_row: first(SAMPLE_STATUS_FIRST_BAD_SETTINGS),
        }
    }

    /// Reads and decodes a status buffer (`COPY_SRC` needed).
    ///
    /// # Errors
    ///
    /// As [`Context::download_u32`].
    pub fn read(ctx: &Context, status: &wgpu::Buffer) -> Result<Self> {
        Ok(Self::from_words(&ctx.download_u32(status, SAMPLE_STATUS_WORDS)?))
    }
}

/// Which outputs [`Sampler::run_with_outputs`] returns besides the ids and the status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleOutputs {
    /// Each draw's log-probability.
    pub logprobs: bool,
    /// The filtered, renormalised probabilities.
    pub probs: bool,
    /// The masked logits.
    pub masked_logits: bool,
}

/// What [`Sampler::run`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleOutput {
    /// `rows x num_samples` token ids, row-major; -1 for a bad row.
    pub ids: Vec<i64>,
    /// Each draw's log-probability, when asked for.
    pub logprobs: Option<Vec<f32>>,
    /// The filtered, renormalised probabilities (in the logits' layout), when asked for (see
    /// [`SampleBuffers::probs`]).
    pub probs: Option<Vec<f32>>,
    /// The masked logits (in the logits' layout, widened to f32 from their storage type),
    /// when asked for (see [`SampleBuffers::masked_logits`]).
    pub masked_logits: Option<Vec<f32>>,
    /// The bad rows, and the rows with settings out of range.
    pub status: SampleStatus,
}

impl Sampler {
    /// The most classes a row may have: 16776960, 64 times the largest vocabularies in use.
    pub const MAX_COLS: usize = SAMPLE_MAX_COLS as usize;

    /// Checks the options.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for a temperature that is negative or not finite, a top-p
    /// outside `(0, 1]`, a min-p outside `[0, 1]`, or more than `u32::MAX` draws.
    pub fn check_options(&self) -> Result<()> {
        let invalid = |option, problem: String| Err(Error::InvalidOption { option, problem });
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return invalid("temperature", format!("{} is not a finite value >= 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return invalid("top_p", format!("{} is not in (0, 1]", self.top_p));
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return invalid("min_p", format!("{} is not in [0, 1]", self.min_p));
        }
        if u32::try_from(self.num_samples).is_err() {
            return invalid("num_samples", format!("{} is more than u32::MAX", self.num_samples));
        }
        Ok(())
    }

    /// Checks the shape: whole runs of `inner` rows, every element indexable in u32, and
    /// rows of at most [`Sampler::MAX_COLS`] classes.
    pub(crate) fn check_shape(shape: Shape) -> Result<()> {
        shape.check_layout()?;
        if shape.cols > Self::MAX_COLS {
            return Err(Error::InvalidOption {
                option: "shape",
                problem: format!(
                    "rows of {} classes are longer than the sampler takes ({}); sample a row's top classes, or split it and combine the parts' draws by their masses",
                    shape.cols,
                    Self::MAX_COLS
                ),
            });
        }
        if u32::try_from(shape.len()?).is_err() {
            return Err(Error::InvalidOption {
                option: "shape",
                problem: format!("{} elements is more than the sampler indexes (u32)", shape.len()?),
            });
        }
        Ok(())
    }

    /// Whether every draw is the argmax (a scalar temperature 0, and none per row).
    fn greedy(&self, row_flags: u32) -> bool {
        self.temperature == 0.0 && row_flags & SAMPLE_FLAG_ROW_TEMPERATURE == 0
    }

    /// Which threshold searches run, for the per-row settings of `row_flags`: top-k,
    /// top-p.
    fn searches(&self, row_flags: u32) -> (bool, bool) {
        if self.greedy(row_flags) {
            return (false, false);
        }
        (
            self.top_k > 0 || row_flags & SAMPLE_FLAG_ROW_TOP_K != 0,
            self.top_p < 1.0 || row_flags & SAMPLE_FLAG_ROW_TOP_P != 0,
        )
    }

    /// Full passes over each row that [`Sampler::encode`] records without per-row
    /// settings, in the worst case (the draws' pass included, not their look at 1/256 of
    /// the row each): the statistics, 8 with top-k (a 4-bit digit of its key each), 8 with
    /// top-p, and the draws'; greedy 2. At most 18. A row usually takes fewer: each search
    /// ends with one pass once 512 keys or fewer remain candidates (see the module's
    /// algorithm).
    #[must_use]
    pub fn passes(&self) -> usize {
        self.passes_with(&RowSettingBuffers::default())
    }

    /// Full passes over each row with the per-row settings `rows`: as [`Sampler::passes`],
    /// a per-row top-k or top-p counting as that filter on (its search runs for every
    /// row), a per-row temperature as not greedy. At most 18.
    #[must_use]
    pub fn passes_with(&self, rows: &RowSettingBuffers<'_>) -> usize {
        let (top_k, top_p) = self.searches(rows.flags());
        let levels = SAMPLE_LEVELS as usize;
        2 + if top_k { levels } else { 0 } + if top_p { levels } else { 0 }
    }

    /// The dispatches of the threshold searches' digit steps, as ranges of steps, for rows
    /// of `cols` with the per-row settings `row_flags`: none without top-k or top-p, all
    /// in one where the driver does not limit an invocation's loop iterations
    /// (`max_loop_iterations`), else as many steps a dispatch as stay under half the limit
    /// (llvmpipe: one dispatch up to about 380000 columns).
    pub(crate) fn search_dispatches(
        &self,
        row_flags: u32,
        cols: usize,
        max_loop_iterations: Option<u64>,
    ) -> Vec<(u32, u32)> {
        let (top_k, top_p) = self.searches(row_flags);
        if !top_k && !top_p {
            return Vec::new();
        }
        let Some(limit) = max_loop_iterations else {
            return vec![(SAMPLE_STEP_TOP_K, SAMPLE_STEP_DRAW)];
        };
        let chunk = (cols as u64).div_ceil(GROUP);
        // A workgroup tree per bin: log2(GROUP) levels and the write; then the choice.
        let tree = u64::from(GROUP.ilog2()) + 2;
        // A top-p step sums counts beside masses: twice the trees.
        let cost = |step: u32| -> u64 {
            let (runs, trees) = if step < SAMPLE_STEP_TOP_P { (top_k, 1) } else { (top_p, 2) };
            if runs { chunk + trees * u64::from(SAMPLE_BINS) * (tree + 2) + 16 } else { 0 }
        };
        // The candidates' finish, at most once a row and then the dispatch's last step: a
        // pass, the rank sort's looks (two candidates an invocation, each at every
        // candidate), and the scans of the candidates.
        let finish = if top_k || top_p { chunk + u64::from(SAMPLE_CANDIDATES) * 4 + 64 } else { 0 };
        let mut ranges = Vec::new();
        let (mut first, mut spent) = (SAMPLE_STEP_TOP_K, finish);
        for step in SAMPLE_STEP_TOP_K..SAMPLE_STEP_DRAW {
            let step_cost = cost(step);
            if step > first && spent + step_cost > limit / 2 {
                ranges.push((first, step));
                (first, spent) = (step, finish);
            }
            spent += step_cost;
        }
        ranges.push((first, SAMPLE_STEP_DRAW));
        ranges
    }

    /// Records the draws into `encoder`: `num_samples` token ids per row of the logits
    /// `shape` (the class axis anywhere) into `buffers.ids`, their log-probabilities into
    /// `buffers.logprobs` if given, the masks into `buffers.probs` and
    /// `buffers.masked_logits` if given, and the bad rows and the rows with settings out
    /// of range into `buffers.status` (cleared first), each row under its own settings
    /// where `buffers.rows` gives them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for a bad option, rows longer than [`Sampler::MAX_COLS`],
    /// or more than `u32::MAX` elements or draws in all;
    /// [`Error::ShapeOverflow`] and [`Error::InvalidLayout`] for a bad shape;
    /// [`Error::MissingUsage`], [`Error::MisalignedOffset`], [`Error::RegionOutOfBounds`]
    /// and [`Error::BufferTooSmall`] for a buffer that cannot be bound as needed, or a
    /// per-row setting's region that cannot be copied from (`COPY_SRC`, an offset a
    /// multiple of 4, `4 * rows` bytes);
    /// [`Error::AliasedBuffers`] when an output shares the logits' buffer or another
    /// output's (each output a buffer of its own);
    /// [`Error::LimitExceeded`] for a grid past the device's limits, or rows too long for
    /// a driver that caps an invocation's loop iterations (llvmpipe: about 5 million
    /// classes); the context's fault
    /// if the device was lost.
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        buffers: &SampleBuffers<'_>,
        shape: Shape,
    ) -> Result<()> {
        self.check_options()?;
        Self::check_shape(shape)?;
        let rows = shape.rows;
        let draws = (rows as u64).saturating_mul(self.num_samples as u64);
        // i64 ids take two words each: their words are indexed in u32 too.
        let id_words = if buffers.ids_i64 { draws.saturating_mul(2) } else { draws };
        if u32::try_from(id_words).is_err() {
            return Err(Error::InvalidOption {
                option: "num_samples",
                problem: format!(
                    "{rows} rows x {} draws is more than the sampler indexes (u32)",
                    self.num_samples
                ),
            });
        }
        let dtype = buffers.logits.dtype();
        validate::storage_region(
            ctx,
            "logits",
            &buffers.logits.region(),
            (shape.len()? as u64).saturating_mul(dtype.size()),
        )?;
        let id_bytes = if buffers.ids_i64 { 8 } else { 4 };
        validate::storage_region(ctx, "ids", &buffers.ids, id_bytes * draws)?;
        validate::distinct(buffers.logits.buffer(), buffers.ids.buffer())?;
        if let Some(logprobs) = buffers.logprobs {
            validate::storage_region(ctx, "logprobs", &logprobs, 4 * draws)?;
            validate::distinct(buffers.logits.buffer(), logprobs.buffer())?;
        }
        validate::storage_region(ctx, "status", &buffers.status, 4 * SAMPLE_STATUS_WORDS as u64)?;
        validate::distinct(buffers.logits.buffer(), buffers.status.buffer())?;
        for (what, _, region) in buffers.rows.given() {
            validate::copy_source(what, &region, 4 * rows as u64)?;
        }
        let elements = shape.len()? as u64;
        if let Some(probs) = buffers.probs {
            validate::storage_region(ctx, "probs", &probs, 4 * elements)?;
        }
        if let Some(masked) = buffers.masked_logits {
            validate::storage_region(ctx, "masked_logits", &masked, elements.saturating_mul(dtype.size()))?;
        }
        validate::outputs_distinct(
            &[Some(buffers.logits.region())],
            &[
                Some(buffers.ids),
                buffers.logprobs,
                Some(buffers.status),
                buffers.probs,
                buffers.masked_logits,
            ],
        )?;
        let masks = buffers.probs.is_some() || buffers.masked_logits.is_some();
        let recorder = &mut Recorder::new(encoder);
        ctx.catching(|| {
            recorder.encoder().clear_buffer(
                buffers.status.buffer(),
                buffers.status.offset(),
                Some(4 * SAMPLE_STATUS_WORDS as u64),
            );
            if rows == 0 || (self.num_samples == 0 && !masks) {
                return Ok(());
            }
            let row_words = 4 * rows as u64;
            let settings = if buffers.rows.flags() == 0 { 0 } else { 4 * row_words };
            let state = ctx.scratch_buffer(recorder, u64::from(SAMPLE_STATE_WORDS) * row_words + settings)?;
            for (_, at, region) in buffers.rows.given() {
                let to = u64::from(SAMPLE_STATE_WORDS) * row_words + at * row_words;
                recorder.encoder().copy_buffer_to_buffer(
                    region.buffer(),
                    region.offset(),
                    &state,
                    to,
                    row_words,
                );
            }
            self.record(ctx, recorder, buffers, shape, &state)
        })
    }

    /// Records every step.
    fn record(
        &self,
        ctx: &Context,
        recorder: &mut Recorder<'_>,
        buffers: &SampleBuffers<'_>,
        shape: Shape,
        state: &wgpu::Buffer,
    ) -> Result<()> {
        let (rows, cols) = (shape.rows, shape.cols);
        let dtype = buffers.logits.dtype();
        let spec = KernelSpec {
            op: OpKernel::Sample,
            strategy: Strategy::WorkgroupPerRow,
            dtype,
            vector: VectorWidth::Scalar,
            cached: false,
            strided: false,
            paired: false,
            group: GroupShape::DEFAULT,
        };
        let module = ctx.module(spec)?;
        let draws = rows as u64 * self.num_samples as u64;
        let out_bytes = (4 * draws).max(4);
        // Blocks of rows whose logits and masks each fit one storage binding, starting at
        // aligned offsets; the ids, log-probabilities, state and status are bound whole.
        let row_bytes = cols as u64 * dtype.size();
        let block = row_block(shape, dtype, buffers.probs.is_some(), ctx.caps())?;
        let whole: Vec<(Slot, wgpu::BufferBinding<'_>)> = {
            let mut bound = vec![
                (Slot::Ids, buffers.ids.binding(0, if buffers.ids_i64 { 2 * out_bytes } else { out_bytes })),
                (Slot::State, BufferRegion::new(state).binding(0, state.size())),
                (Slot::Status, buffers.status.binding(0, 4 * SAMPLE_STATUS_WORDS as u64)),
            ];
            if let Some(logprobs) = buffers.logprobs {
                bound.push((Slot::Logprobs, logprobs.binding(0, out_bytes)));
            }
            bound
        };
        let blocks: Vec<(usize, usize)> =
            (0..rows).step_by(block.max(1)).map(|first| (first, block.min(rows - first))).collect();
        let seed = self.seed;
        let row_flags = buffers.rows.flags();
        let (top_k_on, top_p_on) = self.searches(row_flags);
        #[allow(clippy::cast_possible_truncation)] // ln of an f32 in (0, 1]
        let log_min_p = if self.min_p > 0.0 { f64::from(self.min_p).ln() as f32 } else { 0.0 };
        #[allow(clippy::cast_possible_truncation)] // checked: the sizes fit u32
        let base = SampleParams {
            rows: rows as u32,
            cols: cols as u32,
            groups_x: 0,
            row_base: 0,
            block_rows: 0,
            inner: shape.inner as u32,
            padding0: 0,
            first_step: SAMPLE_STEP_STATS,
            end_step: SAMPLE_STEP_TOP_K,
            top_k: self.top_k,
            num_samples: self.num_samples as u32,
            first_sample: 0,
            end_sample: 0,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            // The flags word: the outputs, the per-row settings, the searches that run.
            flags: if buffers.logprobs.is_some() { SAMPLE_FLAG_LOGPROBS } else { 0 }
                | if buffers.probs.is_some() { SAMPLE_FLAG_PROBS } else { 0 }
                | if buffers.masked_logits.is_some() { SAMPLE_FLAG_MASKED } else { 0 }
                | if buffers.ids_i64 { SAMPLE_FLAG_IDS_I64 } else { 0 }
                | if top_k_on { SAMPLE_FLAG_TOP_K_ON } else { 0 }
                | if top_p_on { SAMPLE_FLAG_TOP_P_ON } else { 0 }
                | row_flags,
            temperature: self.temperature,
            top_p: self.top_p,
            log_min_p,
            min_p_on: u32::from(self.min_p > 0.0 && !self.greedy(row_flags)),
        };
        if let Some(limit) = ctx.caps().max_loop_iterations {
            let required = unsplittable_iterations(cols);
            if required > limit {
                return Err(Error::LimitExceeded {
                    limit: "loop iterations per invocation (llvmpipe)",
                    required,
                    available: limit,
                });
            }
        }
        let mut steps = vec![(SAMPLE_STATS_ENTRY, base)];
        steps.extend(
            self.search_dispatches(row_flags, cols, ctx.caps().max_loop_iterations).into_iter().map(
                |(first_step, end_step)| (SAMPLE_SEARCH_ENTRY, SampleParams { first_step, end_step, ..base }),
            ),
        );
        let per_dispatch = draws_per_dispatch(cols, ctx.caps().max_loop_iterations);
        // At least one draw dispatch: the first writes the masks.
        let mut first = 0_usize;
        loop {
            let end = self.num_samples.min(first.saturating_add(per_dispatch));
            #[allow(clippy::cast_possible_truncation)] // checked: num_samples fits u32
            steps.push((
                SAMPLE_DRAW_ENTRY,
                SampleParams { first_sample: first as u32, end_sample: end as u32, ..base },
            ));
            first = end;
            if first >= self.num_samples {
                break;
            }
        }
        let label = spec.label();
        for (first_row, block_rows) in blocks {
            let grid = spread_grid(block_rows as u64, ctx.caps().max_workgroups_per_dimension)?;
            // The block's elements: a multiple of 4 bytes (16-bit rows end inside a word).
            let block_bytes = |width: u64| (block_rows as u64 * width).next_multiple_of(4).max(4);
            let at = |width: u64| first_row as u64 * width;
            let mut bound = whole.clone();
            bound
                .push((Slot::Logits, buffers.logits.region().binding(at(row_bytes), block_bytes(row_bytes))));
            if let Some(probs) = buffers.probs {
                bound.push((
                    Slot::SampleProbs,
                    probs.binding(at(4 * cols as u64), block_bytes(4 * cols as u64)),
                ));
            }
            if let Some(masked) = buffers.masked_logits {
                bound.push((Slot::MaskedLogits, masked.binding(at(row_bytes), block_bytes(row_bytes))));
            }
            for (entry_point, step) in &steps {
                let pipeline = ctx.pipeline(&KernelKey { spec, entry_point, constants: Vec::new() })?;
                #[allow(clippy::cast_possible_truncation)] // checked: the sizes fit u32
                let step = SampleParams {
                    groups_x: grid[0],
                    row_base: first_row as u32,
                    block_rows: block_rows as u32,
                    ..*step
                };
                let params = ctx.uniform(&label, bytemuck::bytes_of(&step))?;
                let bindings = kernels::bind(&module, &params, &bound, |i| ctx.placeholder(i))?;
                let group = ctx.bind_buffers(&module, &bindings)?;
                recorder.dispatch(&label, &pipeline, &group, grid);
            }
        }
        Ok(())
    }

    /// Samples from `logits` (`shape`, the class axis anywhere) on the GPU: uploads them in `T`'s
    /// storage type, records [`Sampler::encode`], and reads the ids (as i64), the
    /// log-probabilities if `logprobs`, and the status back.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] when `logits` is not `shape`'s length, and the errors of
    /// [`Sampler::encode`].
    pub fn run<T: Element>(
        &self,
        ctx: &Context,
        logits: &[T],
        shape: Shape,
        logprobs: bool,
    ) -> Result<SampleOutput> {
        self.run_with_settings(ctx, logits, shape, logprobs, &RowSettings::default())
    }

    /// As [`Sampler::run`], with the per-row settings `settings` uploaded and bound
    /// through [`SampleBuffers::with_row_temperature`] and its kin. A row whose own
    /// setting is out of range draws -1 and is counted in the status.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] when `logits` is not `shape`'s length or a setting has not
    /// one value per row, and the errors of [`Sampler::encode`].
    pub fn run_with_settings<T: Element>(
        &self,
        ctx: &Context,
        logits: &[T],
        shape: Shape,
        logprobs: bool,
        settings: &RowSettings,
    ) -> Result<SampleOutput> {
        let outputs = SampleOutputs { logprobs, ..SampleOutputs::default() };
        self.run_with_outputs(ctx, logits, shape, outputs, settings)
    }

    /// As [`Sampler::run_with_settings`], returning the outputs `outputs` asks for: the
    /// log-probabilities, and the masks ([`SampleBuffers::with_probs`],
    /// [`SampleBuffers::with_masked_logits`]). With `num_samples` 0 it only masks.
    ///
    /// ```no_run
    /// use wgpu_softmax::{Context, RowSettings, SampleOutputs, Sampler, Shape};
    /// let ctx = Context::new()?;
    /// let logits = [1.0_f32, 3.0, 2.0, 0.5];
    /// let top2 = Sampler { top_k: 2, num_samples: 0, ..Sampler::default() };
    /// let masks = SampleOutputs { probs: true, masked_logits: true, ..SampleOutputs::default() };
    /// let out = top2.run_with_outputs(&ctx, &logits, Shape::new(1, 4), masks, &RowSettings::default())?;
    /// assert_eq!(out.masked_logits.unwrap()[0], f32::NEG_INFINITY);
    /// # Ok::<(), wgpu_softmax::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Sampler::run_with_settings`].
    pub fn run_with_outputs<T: Element>(
        &self,
        ctx: &Context,
        logits: &[T],
        shape: Shape,
        outputs: SampleOutputs,
        settings: &RowSettings,
    ) -> Result<SampleOutput> {
        let logprobs = outputs.logprobs;
        self.check_options()?;
        Self::check_shape(shape)?;
        shape.check_len("logits", logits.len())?;
        settings.check_rows(shape.rows)?;
        let draws = shape.rows * self.num_samples;
        ctx.catching(|| {
            let input = ctx.upload_elements(logits)?;
            let ids = ctx.elements_buffer(DType::F32, draws)?;
            let lp = logprobs.then(|| ctx.elements_buffer(DType::F32, draws)).transpose()?;
            let status = ctx.storage_buffer(SAMPLE_STATUS_WORDS)?;
            let floats =
                |values: &Option<Vec<f32>>| values.as_deref().map(|v| ctx.upload_elements(v)).transpose();
            let row_temperature = floats(&settings.temperature)?;
            let row_top_k = settings.top_k.as_deref().map(|v| ctx.upload_elements(v)).transpose()?;
            let row_top_p = floats(&settings.top_p)?;
            let row_min_p = floats(&settings.min_p)?;
            let mut buffers = SampleBuffers::new(
                TensorRef::new(&input, T::DTYPE),
                BufferRegion::new(&ids),
                BufferRegion::new(&status),
            );
            buffers.logprobs = lp.as_ref().map(BufferRegion::new);
            let len = shape.len()?;
            let probs = outputs.probs.then(|| ctx.elements_buffer(DType::F32, len)).transpose()?;
            let masked = outputs.masked_logits.then(|| ctx.elements_buffer(T::DTYPE, len)).transpose()?;
            buffers.probs = probs.as_ref().map(BufferRegion::new);
            buffers.masked_logits = masked.as_ref().map(BufferRegion::new);
            buffers.rows = RowSettingBuffers {
                temperature: row_temperature.as_ref().map(BufferRegion::new),
                top_k: row_top_k.as_ref().map(BufferRegion::new),
                top_p: row_top_p.as_ref().map(BufferRegion::new),
                min_p: row_min_p.as_ref().map(BufferRegion::new),
            };
            let mut encoder = ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgpu-softmax: sample"),
            });
            self.encode(ctx, &mut encoder, &buffers, shape)?;
            let bytes = 4 * draws as u64;
            let mut parts = vec![(&ids, bytes), (&status, 4 * SAMPLE_STATUS_WORDS as u64)];
            if let Some(lp) = lp.as_ref() {
                parts.push((lp, bytes));
            }
            if let Some(p) = probs.as_ref() {
                parts.push((p, 4 * len as u64));
            }
            if let Some(m) = masked.as_ref() {
                parts.push((m, len as u64 * T::DTYPE.size()));
            }
            let mut read = ctx.finish_and_read_many(encoder, &parts)?.into_iter();
            let mut next = || read.next().unwrap_or_default();
            let ids: Vec<i32> = bytemuck::pod_collect_to_vec(&next());
            let status = SampleStatus::from_words(&bytemuck::pod_collect_to_vec(&next()));
            let logprobs = lp.as_ref().map(|_| bytemuck::pod_collect_to_vec(&next()));
            let probs = probs.as_ref().map(|_| bytemuck::pod_collect_to_vec(&next()));
            let masked_logits =
                masked.as_ref().map(|_| crate::dtype::widen(&bytemuck::pod_collect_to_vec::<u8, T>(&next())));
            Ok(SampleOutput {
                ids: ids.into_iter().map(i64::from).collect(),
                logprobs,
                probs,
                masked_logits,
                status,
            })
        })
    }
}

/// Rows per block of the sampler's dispatches: as many as keep the block's logits (and
/// probabilities, with `probs`) within one storage binding at an aligned offset. A block
/// is whole runs of `shape.inner` rows (one position before the class axis each: `cols *
/// inner` elements that hold those rows and nothing else), so that it is contiguous in
/// memory along a strided class axis too.
///
/// # Errors
///
/// [`Error::LimitExceeded`] when even the smallest aligned block exceeds a binding.
pub(crate) fn row_block(shape: Shape, dtype: DType, probs: bool, caps: &DeviceCaps) -> Result<usize> {
    let run = (shape.cols as u64).saturating_mul(shape.inner as u64);
    let mut widths = vec![run.saturating_mul(dtype.size())];
    if probs {
        widths.push(run.saturating_mul(4));
    }
    let runs = rows_per_chunk(shape.rows / shape.inner, 1, &widths, caps, u64::MAX)?;
    Ok(runs.saturating_mul(shape.inner))
}

/// Draws of each row one dispatch makes, on a device whose driver stops an invocation's
/// loops after `max_loop_iterations` (llvmpipe: 65535, all loops together): each
/// invocation's draw looks at 256 chunk sums and one chunk of `cols / 256` elements, after
/// the dispatch's own pass over its chunk and the scan of the sums. Stays under half the
/// limit; without a limit, every draw in one dispatch.
pub(crate) fn draws_per_dispatch(cols: usize, max_loop_iterations: Option<u64>) -> usize {
    let chunk = (cols as u64).div_ceil(GROUP);
    match max_loop_iterations {
        None => usize::MAX,
        Some(limit) => {
            let overhead = chunk + GROUP + 64;
            let per_draw = chunk + GROUP + 16;
            let rounds = (limit / 2).saturating_sub(overhead) / per_draw;
            usize::try_from(rounds.max(1) * GROUP).unwrap_or(usize::MAX)
        }
    }
}

/// Loop iterations per invocation of the most that no split into more dispatches
/// shortens, at most: the statistics' pass over an invocation's chunk with the rank sort
/// of the chunks' tops and the scans of them, a digit step's pass with the candidates'
/// finish, or a draw dispatch's pass, its masks' pass and one draw's look at the chunk
/// sums and a chunk; with the workgroup trees. A driver that leaves loops early past a
/// limit (llvmpipe) cannot sample rows that need more.
pub(crate) fn unsplittable_iterations(cols: usize) -> u64 {
    let chunk = (cols as u64).div_ceil(GROUP);
    3 * chunk + u64::from(SAMPLE_CANDIDATES) * 4 + 2 * GROUP + 256
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvmpipe_samples_rows_of_five_million_classes_and_refuses_wider() {
        let limit = crate::plan::LLVMPIPE_LOOP_ITERATIONS;
        assert!(unsplittable_iterations(262_144) < limit / 4);
        assert!(unsplittable_iterations(5_000_000) <= limit);
        assert!(unsplittable_iterations(Sampler::MAX_COLS) > limit);
    }

    #[test]
    fn draws_per_dispatch_stay_within_llvmpipes_loop_limit() {
        let limit = crate::plan::LLVMPIPE_LOOP_ITERATIONS;
        for cols in [1, 50, 32_000, 128_256, 262_144, 1 << 22] {
            let draws = draws_per_dispatch(cols, Some(limit)) as u64;
            let chunk = (cols as u64).div_ceil(GROUP);
            let per_invocation = draws.div_ceil(GROUP);
            // The pass over the chunk, the scan, the reductions, then each draw's look at
            // the sums, its chunk and Philox's rounds.
            let iterations = chunk + GROUP + 16 + per_invocation * (GROUP + chunk + 10);
            assert!(draws >= GROUP, "{cols}");
            if cols <= 262_144 {
                assert!(iterations < limit, "{cols}: {iterations}");
            }
        }
        assert_eq!(draws_per_dispatch(262_144, None), usize::MAX);
    }

    #[test]
    fn the_histograms_have_the_sixteen_bins_the_shader_keeps_in_four_vec4s() {
        assert_eq!(SAMPLE_BINS, 16);
        assert_eq!(SAMPLE_LEVELS * SAMPLE_BINS.ilog2(), 32);
    }

    #[test]
    fn search_steps_fit_llvmpipes_loop_limit_in_one_dispatch_up_to_380000_columns() {
        let limit = Some(crate::plan::LLVMPIPE_LOOP_ITERATIONS);
        let both = Sampler { top_k: 50, top_p: 0.9, ..Sampler::default() };
        let all = vec![(SAMPLE_STEP_TOP_K, SAMPLE_STEP_DRAW)];
        assert_eq!(both.search_dispatches(0, 262_144, None), all);
        assert_eq!(both.search_dispatches(0, 380_000, limit), all);
        assert!(Sampler::default().search_dispatches(0, 262_144, limit).is_empty());
        // Wider rows: contiguous ranges that cover every step.
        let ranges = both.search_dispatches(0, 1 << 22, limit);
        assert!(ranges.len() > 1);
        assert_eq!(ranges.first().map(|r| r.0), Some(SAMPLE_STEP_TOP_K));
        assert_eq!(ranges.last().map(|r| r.1), Some(SAMPLE_STEP_DRAW));
        assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0 && w[0].0 < w[0].1));
    }

    #[test]
    fn options_are_checked() {
        assert!(Sampler::default().check_options().is_ok());
        for bad in [
            Sampler { temperature: -1.0, ..Sampler::default() },
            Sampler { temperature: f32::NAN, ..Sampler::default() },
            Sampler { top_p: 0.0, ..Sampler::default() },
            Sampler { top_p: 1.5, ..Sampler::default() },
            Sampler { min_p: -0.1, ..Sampler::default() },
            Sampler { min_p: f32::NAN, ..Sampler::default() },
        ] {
            assert!(matches!(bad.check_options(), Err(Error::InvalidOption { .. })), "{bad:?}");
        }
        assert!(Sampler::check_shape(Shape::with_inner(2, 5, 3)).is_ok());
        let ragged = Sampler::check_shape(Shape { rows: 5, cols: 4, inner: 3 });
        assert!(matches!(ragged, Err(Error::InvalidLayout { .. })));
    }

    #[test]
    fn rows_past_the_longest_are_refused_with_the_limit() {
        assert_eq!(Sampler::MAX_COLS, 16_776_960);
        assert!(Sampler::check_shape(Shape::new(1, Sampler::MAX_COLS)).is_ok());
        let Err(Error::InvalidOption { option: "shape", problem }) =
            Sampler::check_shape(Shape::new(1, Sampler::MAX_COLS + 1))
        else {
            panic!("a row one class too long was not refused");
        };
        assert!(problem.contains("16776960"), "{problem}");
    }

    #[test]
    fn passes_are_counted() {
        assert_eq!(Sampler { temperature: 0.0, top_k: 5, ..Sampler::default() }.passes(), 2);
        assert_eq!(Sampler { top_k: 50, top_p: 0.9, ..Sampler::default() }.passes(), 18);
        assert_eq!(Sampler { top_p: 0.9, ..Sampler::default() }.passes(), 10);
        // Per-row settings: a per-row temperature is not greedy; a per-row top-k or top-p
        // turns its search on for every row.
        let flags = |temperature: bool, top_k: bool, top_p: bool| {
            let bit = |on: bool, bit: u32| if on { bit } else { 0 };
            bit(temperature, SAMPLE_FLAG_ROW_TEMPERATURE)
                | bit(top_k, SAMPLE_FLAG_ROW_TOP_K)
                | bit(top_p, SAMPLE_FLAG_ROW_TOP_P)
        };
        let greedy = Sampler { temperature: 0.0, ..Sampler::default() };
        assert_eq!(greedy.searches(flags(false, true, true)), (false, false));
        assert_eq!(greedy.searches(flags(true, true, false)), (true, false));
        assert_eq!(Sampler::default().searches(flags(false, false, true)), (false, true));
        assert_eq!(Sampler::default().searches(flags(false, false, false)), (false, false));
    }

    #[test]
    fn the_settings_status_words_follow_the_bad_rows() {
        assert!(SAMPLE_STATUS_WORDS > SAMPLE_STATUS_FIRST_BAD_SETTINGS as usize);
        assert!(SAMPLE_STATUS_BAD_SETTINGS as usize > STATUS_FIRST_BAD_ROW as usize);
    }

    #[test]
    fn row_settings_pick_each_rows_values() {
        let settings =
            RowSettings { top_k: Some(vec![3, 0]), min_p: Some(vec![0.1, 0.2]), ..RowSettings::default() };
        let base = Sampler { temperature: 0.5, top_k: 9, ..Sampler::default() };
        let second = settings.for_row(&base, 1);
        assert_eq!((second.temperature, second.top_k, second.min_p), (0.5, 0, 0.2));
        assert!(settings.check_rows(2).is_ok());
        assert!(matches!(settings.check_rows(3), Err(Error::ShapeMismatch { what: "row top_k", .. })));
    }
}
