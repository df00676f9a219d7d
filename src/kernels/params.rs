//! The per-dispatch parameters every kernel reads as its `params` uniform: one Rust struct,
//! and its WGSL declaration generated from the same field list.

/// The parameters of one dispatch, laid out as the WGSL `Params` struct ([`PARAMS_FIELDS`]
/// in the same order; a test checks the offsets against the composed modules).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RowParams {
    /// Rows of this chunk.
    pub(crate) rows: u32,
    /// Columns (classes).
    pub(crate) cols: u32,
    /// Workgroups along x: grids past the per-dimension limit are spread over y.
    pub(crate) groups_x: u32,
    /// The chunk's first row in the whole matrix (for messages about rows).
    pub(crate) first_row: u32,
    /// The cross-entropy's ignored class index.
    pub(crate) ignore_index: i32,
    /// The cross-entropy's label smoothing.
    pub(crate) label_smoothing: f32,
    /// Rows of the whole matrix (the mean over probability targets divides by it).
    pub(crate) total_rows: u32,
    /// The chunk's index; for the combining passes, the number of chunks.
    pub(crate) chunk: u32,
    /// Workgroups per row of the split strategy.
    pub(crate) segments: u32,
    /// The cross-entropy's logit softcap `T` (logits become `T * tanh(x / T)`); 0 for none.
    pub(crate) softcap: f32,
    /// The cross-entropy's z-loss coefficient as the kernel applies it: each row adds
    /// `z_loss * lse^2` before the reduction's scale (see the cross-entropy's encode).
    pub(crate) z_loss: f32,
    /// Elements between one class of a row and the next (1: rows contiguous; see
    /// [`crate::Shape`]).
    pub(crate) inner: u32,
    /// The linear cross-entropy's features per hidden state (`D`, the sums' length).
    pub(crate) hidden: u32,
    /// The distillation's temperature `T`.
    pub(crate) temperature: f32,
    /// The packed cross-entropy's rows per part of its `extras` binding (the most rows
    /// of any chunk).
    pub(crate) extras_rows: u32,
    /// How many chunks the op's rows are dispatched in (the cross-entropy's folded
    /// reduction finishes after the last).
    pub(crate) chunks: u32,
}

/// The fields of [`RowParams`] as WGSL declares them, in order.
pub(crate) const PARAMS_FIELDS: [(&str, &str); 16] = [
    ("rows", "u32"),
    ("cols", "u32"),
    ("groups_x", "u32"),
    ("first_row", "u32"),
    ("ignore_index", "i32"),
    ("label_smoothing", "f32"),
    ("total_rows", "u32"),
    ("chunk", "u32"),
    ("segments", "u32"),
    ("softcap", "f32"),
    ("z_loss", "f32"),
    ("inner", "u32"),
    ("hidden", "u32"),
    ("temperature", "f32"),
    ("extras_rows", "u32"),
    ("chunks", "u32"),
];

/// The parameters of one dispatch of the matmul module, laid out as its WGSL `Params`
/// ([`MATMUL_PARAMS_FIELDS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MatmulParams {
    /// Rows of the product (`column_sums`: rows summed; `pack_halves`: elements).
    pub(crate) m: u32,
    /// Columns of the product.
    pub(crate) n: u32,
    /// Terms of each sum.
    pub(crate) k: u32,
    /// Workgroups along x: grids past the per-dimension limit are spread over y.
    pub(crate) groups_x: u32,
    /// The first term this dispatch sums (a multiple of the tile's depth).
    pub(crate) k_first: u32,
    /// One past the last term this dispatch sums.
    pub(crate) k_end: u32,
    /// Slices the terms are split into, one partial product each (`sum_slices`: how many
    /// to add); 1 where the product is not split.
    pub(crate) slices: u32,
    /// Terms of each slice (a multiple of the tile's depth), the last slice's up to
    /// `k_end`.
    pub(crate) slice_terms: u32,
}

/// The fields of [`MatmulParams`] as WGSL declares them, in order.
pub(crate) const MATMUL_PARAMS_FIELDS: [(&str, &str); 8] = [
    ("m", "u32"),
    ("n", "u32"),
    ("k", "u32"),
    ("groups_x", "u32"),
    ("k_first", "u32"),
    ("k_end", "u32"),
    ("slices", "u32"),
    ("slice_terms", "u32"),
];

/// The WGSL declaration of `Params` with `fields`.
pub(crate) fn params_wgsl(fields: &[(&str, &str)]) -> String {
    let fields: Vec<String> = fields.iter().map(|(name, ty)| format!("    {name}: {ty},\n")).collect();
    format!("struct Params {{\n{}}}\n", fields.concat())
}

/// The parameters of one dispatch of the sampler's module, laid out as its WGSL `Params`
/// ([`SAMPLE_PARAMS_FIELDS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SampleParams {
    /// Rows of the logits.
    pub(crate) rows: u32,
    /// Classes per row.
    pub(crate) cols: u32,
    /// Workgroups along x: grids past the per-dimension limit are spread over y.
    pub(crate) groups_x: u32,
    /// The first row of the block of rows this dispatch samples (its logits and masks
    /// bound from that row on).
    pub(crate) row_base: u32,
    /// Rows in the block (a multiple of `inner`).
    pub(crate) block_rows: u32,
    /// Elements between one class of a row and the next: 1 for the class axis last (see
    /// [`crate::Shape::inner`]).
    pub(crate) inner: u32,
    /// Pads the struct to a multiple of 16 bytes.
    pub(crate) padding0: u32,
    /// The first step this dispatch takes (the module's `STEP_*`).
    pub(crate) first_step: u32,
    /// One past its last.
    pub(crate) end_step: u32,
    /// Top-k's k (0: off).
    pub(crate) top_k: u32,
    /// Draws per row.
    pub(crate) num_samples: u32,
    /// The first draw of each row this dispatch makes.
    pub(crate) first_sample: u32,
    /// One past the last.
    pub(crate) end_sample: u32,
    /// The seed's low 32 bits (Philox's first key word).
    pub(crate) seed_lo: u32,
    /// The seed's high 32 bits.
    pub(crate) seed_hi: u32,
    /// The `SAMPLE_FLAG_*` bits: log-probabilities written, which settings are per row,
    /// which masks are written.
    pub(crate) flags: u32,
    /// The temperature (0: greedy).
    pub(crate) temperature: f32,
    /// Top-p's p (1: off).
    pub(crate) top_p: f32,
    /// `ln(min_p)`, the min-p bound below each row's largest scaled logit (0 when off).
    pub(crate) log_min_p: f32,
    /// Whether min-p is on.
    pub(crate) min_p_on: u32,
}

/// The fields of [`SampleParams`] as WGSL declares them, in order.
pub(crate) const SAMPLE_PARAMS_FIELDS: [(&str, &str); 20] = [
    ("rows", "u32"),
    ("cols", "u32"),
    ("groups_x", "u32"),
    ("row_base", "u32"),
    ("block_rows", "u32"),
    ("inner", "u32"),
    ("padding0", "u32"),
    ("first_step", "u32"),
    ("end_step", "u32"),
    ("top_k", "u32"),
    ("num_samples", "u32"),
    ("first_sample", "u32"),
    ("end_sample", "u32"),
    ("seed_lo", "u32"),
    ("seed_hi", "u32"),
    ("flags", "u32"),
    ("temperature", "f32"),
    ("top_p", "f32"),
    ("log_min_p", "f32"),
    ("min_p_on", "u32"),
];

/// The parameters of the chain verifier's dispatch, laid out as its WGSL `Params`
/// ([`VERIFY_PARAMS_FIELDS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct VerifyParams {
    /// Rows (sequences) verified.
    pub(crate) rows: u32,
    /// The vocabulary.
    pub(crate) cols: u32,
    /// Draft tokens per row.
    pub(crate) drafts: u32,
    /// Workgroups along x: grids past the per-dimension limit are spread over y.
    pub(crate) groups_x: u32,
    /// The seed's low 32 bits (Philox's first key word).
    pub(crate) seed_lo: u32,
    /// The seed's high 32 bits.
    pub(crate) seed_hi: u32,
    /// The `CHAIN_VERIFY_FLAG_*` bits.
    pub(crate) flags: u32,
    /// The first row of the block of rows this dispatch verifies (the probabilities are
    /// bound from that row on).
    pub(crate) row_base: u32,
    /// Rows in the block.
    pub(crate) block_rows: u32,
    /// Pads the struct to a multiple of 16 bytes.
    pub(crate) padding0: u32,
    /// See `padding0`.
    pub(crate) padding1: u32,
    /// See `padding0`.
    pub(crate) padding2: u32,
}

/// The fields of [`VerifyParams`] as WGSL declares them, in order.
pub(crate) const VERIFY_PARAMS_FIELDS: [(&str, &str); 12] = [
    ("rows", "u32"),
    ("cols", "u32"),
    ("drafts", "u32"),
    ("groups_x", "u32"),
    ("seed_lo", "u32"),
    ("seed_hi", "u32"),
    ("flags", "u32"),
    ("row_base", "u32"),
    ("block_rows", "u32"),
    ("padding0", "u32"),
    ("padding1", "u32"),
    ("padding2", "u32"),
];
