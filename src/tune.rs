//! What autotuning remembers: the strategy chosen per (op family, shape bucket), cached on
//! the device. The timing itself is in `ops::autotune`; this module holds only the keys
//! and the cache, so that the context can own a cache without depending on the ops.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::dtype::DType;
use crate::shape::Shape;
use crate::strategy::Strategy;

/// Which kernel family a tuned choice is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpFamily {
    /// Softmax and log-softmax.
    Softmax,
    /// Their backward passes.
    SoftmaxBackward,
    /// The fused cross-entropy.
    CrossEntropy,
    /// The distillation from logits.
    Distill,
}

/// What a tuned choice is for: everything that changes the kernel (the op family, the
/// storage type, the vector width, the op's options, whether rows are kept in registers)
/// and a shape bucket (columns and rows rounded up to powers of two).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TuneKey {
    /// The kernel family.
    pub family: OpFamily,
    /// The storage type of the class-axis tensors.
    pub dtype: DType,
    /// 32-bit words per access (1 or 4).
    pub vector_words: u32,
    /// The op's options that change its kernel (the cross-entropy's gradient, reduction
    /// and targets), packed by the op; 0 for the others.
    pub variant: u32,
    /// Whether the kernels keep rows in registers (see `Context::with_cached_rows`).
    pub cached_rows: bool,
    /// Columns, rounded up to a power of two.
    pub cols_bucket: usize,
    /// Rows, rounded up to a power of two.
    pub rows_bucket: usize,
    /// Elements between a row's classes (1: contiguous rows), rounded up to a power of
    /// two: a strided class axis runs other kernels.
    pub inner_bucket: usize,
}

impl TuneKey {
    /// The bucket of `shape` for `family`, f32 in 128-bit vectors, no options, rows not
    /// kept in registers.
    #[must_use]
    pub fn new(family: OpFamily, shape: Shape) -> Self {
        Self {
            family,
            dtype: DType::F32,
            vector_words: 4,
            variant: 0,
            cached_rows: false,
            cols_bucket: shape.cols.max(1).checked_next_power_of_two().unwrap_or(usize::MAX),
            rows_bucket: shape.rows.max(1).checked_next_power_of_two().unwrap_or(usize::MAX),
            inner_bucket: shape.inner.max(1).checked_next_power_of_two().unwrap_or(usize::MAX),
        }
    }

    /// The same bucket for another storage type, vector width and options.
    #[must_use]
    pub const fn with(self, dtype: DType, vector_words: u32, variant: u32) -> Self {
        Self { dtype, vector_words, variant, ..self }
    }

    /// The same bucket for kernels that keep (`true`) or do not keep rows in registers.
    #[must_use]
    pub const fn with_cached_rows(self, cached_rows: bool) -> Self {
        Self { cached_rows, ..self }
    }
}

/// Elements of the sample a bucket is timed on, at most: tuning stays quick.
const SAMPLE_ELEMENTS: usize = 1 << 22;

/// The shape a bucket is timed on: the caller's columns and layout, and as many of its
/// rows as fit in the sample (whole runs of a strided class axis's rows, at least one).
#[must_use]
pub(crate) fn sample_shape(shape: Shape) -> Shape {
    let run = shape.inner.max(1);
    let fit = (SAMPLE_ELEMENTS / shape.cols.max(1) / run).max(1) * run;
    Shape { rows: shape.rows.min(fit), ..shape }
}

/// The choices made so far on one device.
#[derive(Debug, Default)]
pub(crate) struct TuneCache {
    choices: RwLock<HashMap<TuneKey, Strategy>>,
}

impl TuneCache {
    /// The choice stored for `key`, if any.
    pub(crate) fn get(&self, key: &TuneKey) -> Option<Strategy> {
        self.choices.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).copied()
    }

    /// Stores `chosen` for `key` unless a racing thread stored a choice first; returns the
    /// choice that stands.
    pub(crate) fn insert(&self, key: TuneKey, chosen: Strategy) -> Strategy {
        let mut choices = self.choices.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *choices.entry(key).or_insert(chosen)
    }

    /// Every choice so far.
    #[cfg(feature = "testing")]
    pub(crate) fn choices(&self) -> Vec<(TuneKey, Strategy)> {
        let choices = self.choices.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        choices.iter().map(|(&k, &s)| (k, s)).collect()
    }
}
