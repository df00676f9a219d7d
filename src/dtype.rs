//! Storage types: how the elements of a tensor with the class axis are stored in a
//! buffer. Arithmetic is always in f32; 16-bit values are widened when loaded and rounded
//! once, to nearest even, when stored.

pub use half::{bf16, f16};

/// The storage type of a tensor that has the class axis (logits, probabilities,
/// gradients, softmax inputs and outputs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// IEEE binary32, one element per 32-bit word.
    #[default]
    F32,
    /// IEEE binary16, two elements per 32-bit word (element `2w` in the low half).
    F16,
    /// bfloat16, the top half of an f32, two elements per 32-bit word.
    BF16,
}

impl DType {
    /// Every storage type, in a fixed order.
    pub const ALL: [Self; 3] = [Self::F32, Self::F16, Self::BF16];

    /// Bytes per element.
    #[must_use]
    pub const fn size(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
        }
    }

    /// Elements per 32-bit word.
    #[must_use]
    pub const fn per_word(self) -> u32 {
        self.format().per_word()
    }

    /// How the kernels lay this type's elements into 32-bit words.
    pub(crate) const fn format(self) -> WordFormat {
        match self {
            Self::F32 => WordFormat { bits: 32 },
            Self::F16 | Self::BF16 => WordFormat { bits: 16 },
        }
    }

    /// The name NumPy and PyTorch use: `float32`, `float16`, `bfloat16`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
        }
    }

    /// Half the distance between 1 and the next value of the type: the largest relative
    /// error of rounding a normal value to it (2^-24, 2^-11, 2^-8).
    #[must_use]
    pub const fn unit_roundoff(self) -> f64 {
        match self {
            Self::F32 => 5.960_464_477_539_063e-8,
            Self::F16 => 4.882_812_5e-4,
            Self::BF16 => 3.906_25e-3,
        }
    }

    /// The largest absolute error of rounding a value below the normal range to the type:
    /// half its smallest subnormal for f16 (whose normal range starts at 6.1e-5). For f32
    /// and bf16, which share f32's range, the smallest normal f32, since GPUs may flush
    /// subnormals to zero.
    #[must_use]
    pub const fn subnormal_error(self) -> f64 {
        match self {
            Self::F32 | Self::BF16 => 1.175_494_350_822_287_5e-38,
            Self::F16 => 2.980_232_238_769_531_3e-8,
        }
    }

    /// The storage type named `name` (`f32`, `float32`, `f16`, `float16`, `bf16`,
    /// `bfloat16`), case-insensitively.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(Self::F32),
            "f16" | "float16" | "half" => Some(Self::F16),
            "bf16" | "bfloat16" => Some(Self::BF16),
            _ => None,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A host element type of a [`DType`]: `f32`, [`f16`](struct@f16) or [`bf16`]. The host API takes and
/// returns slices of these.
pub trait Element:
    bytemuck::Pod + Copy + Default + PartialEq + std::fmt::Debug + Send + Sync + sealed::Sealed
{
    /// The storage type.
    const DTYPE: DType;
    /// The value as an f32 (exact for every element type).
    fn to_f32(self) -> f32;
    /// The nearest value of the type, ties to even.
    fn from_f32(value: f32) -> Self;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(value: f32) -> Self {
        value
    }
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    fn to_f32(self) -> f32 {
        Self::to_f32(self)
    }
    fn from_f32(value: f32) -> Self {
        Self::from_f32(value)
    }
}

impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
    fn to_f32(self) -> f32 {
        Self::to_f32(self)
    }
    fn from_f32(value: f32) -> Self {
        Self::from_f32(value)
    }
}

/// `values` rounded to the element type `T`, to nearest even.
#[must_use]
pub fn round_to<T: Element>(values: &[f32]) -> Vec<T> {
    values.iter().map(|&v| T::from_f32(v)).collect()
}

/// `values` widened to f32 (exactly).
#[must_use]
pub fn widen<T: Element>(values: &[T]) -> Vec<f32> {
    values.iter().map(|&v| v.to_f32()).collect()
}

impl DType {
    /// `values` rounded to this storage type (to nearest even) and widened back to f32:
    /// what a tensor of this type holds of them.
    ///
    /// ```
    /// use wgpu_softmax::DType;
    /// assert_eq!(DType::BF16.round_f32(&[1.0 + 1.0 / 512.0]), [1.0]);
    /// assert_eq!(DType::F32.round_f32(&[0.1]), [0.1]);
    /// ```
    #[must_use]
    pub fn round_f32(self, values: &[f32]) -> Vec<f32> {
        match self {
            Self::F32 => values.to_vec(),
            Self::F16 => widen(&round_to::<f16>(values)),
            Self::BF16 => widen(&round_to::<bf16>(values)),
        }
    }
}

/// How a storage type lays its elements into the 32-bit words the kernels load and store:
/// element `e` of a tensor lies in word `e / per_word`, `(e % per_word) * bits` bits up. The
/// one place this is written: the WGSL parts read it as `PER_WORD`, `ELEMENT_BITS` and
/// `ELEMENT_MASK` (generated into every module), and the packet size, the edge rule, the
/// edge pass's scratch and the split's segments are derived from it here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WordFormat {
    /// Bits per element: 32, or 16 for the 16-bit types (an 8-bit type would be 8).
    pub(crate) bits: u32,
}

/// Words of the edge pass's scratch per row: the row's elements in the word it starts in
/// (shared with the row before) and in the word it ends in (shared with the row after), each
/// at its place in the word.
pub(crate) const EDGE_WORDS_PER_ROW: u64 = 2;

impl WordFormat {
    /// Elements per word.
    pub(crate) const fn per_word(self) -> u32 {
        32 / self.bits
    }

    /// The bits of one element, at the bottom of a word.
    pub(crate) const fn mask(self) -> u32 {
        if self.bits >= 32 { u32::MAX } else { (1 << self.bits) - 1 }
    }

    /// Elements one access of `words` words moves.
    pub(crate) const fn packet(self, words: u32) -> u32 {
        self.per_word() * words
    }

    /// Whether a tensor of rows of `cols` elements has words that two rows share, which
    /// the edge pass writes once every row is done.
    pub(crate) const fn rows_share_words(self, cols: u64) -> bool {
        !cols.is_multiple_of(self.per_word() as u64)
    }

    /// The edge rule's premise: with at least this many elements a row, no word holds
    /// elements of three rows, so each row shares at most the word it starts in and the
    /// word it ends in (always true of two elements a word).
    pub(crate) const fn edge_rule_holds(self, cols: u64) -> bool {
        cols + 1 >= self.per_word() as u64
    }

    /// The constants the WGSL parts read the format from.
    pub(crate) fn wgsl_constants(self) -> [(&'static str, String); 3] {
        [
            ("PER_WORD", format!("{}u", self.per_word())),
            ("ELEMENT_BITS", format!("{}u", self.bits)),
            ("ELEMENT_MASK", format!("{:#x}u", self.mask())),
        ]
    }
}

/// The most elements any storage type's widest access (128 bits) moves.
pub(crate) const WIDEST_PACKET: u32 = {
    let mut widest = 0;
    let mut i = 0;
    while i < DType::ALL.len() {
        let packet = DType::ALL[i].format().packet(4);
        if packet > widest {
            widest = packet;
        }
        i += 1;
    }
    widest
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        assert_eq!(DType::ALL.map(DType::size), [4, 2, 2]);
        assert_eq!(DType::ALL.map(DType::per_word), [1, 2, 2]);
        for dtype in DType::ALL {
            assert_eq!(DType::from_name(dtype.name()), Some(dtype));
        }
        assert_eq!(DType::from_name("BF16"), Some(DType::BF16));
        assert_eq!(DType::from_name("f64"), None);
    }

    #[test]
    fn roundoff_is_half_an_ulp_of_one() {
        assert_eq!(DType::BF16.unit_roundoff(), 2f64.powi(-8));
        assert_eq!(DType::F16.unit_roundoff(), 2f64.powi(-11));
        assert_eq!(DType::F32.unit_roundoff(), 2f64.powi(-24));
        assert_eq!(DType::F16.subnormal_error(), 2f64.powi(-25));
        assert_eq!(DType::F32.subnormal_error(), f64::from(f32::MIN_POSITIVE));
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-8 is halfway between bf16's 1 and 1 + 2^-7: ties to the even 1.
        assert_eq!(round_to::<bf16>(&[1.0 + 2f32.powi(-8)])[0].to_f32(), 1.0);
        assert_eq!(round_to::<bf16>(&[1.0 + 3.0 * 2f32.powi(-8)])[0].to_f32(), 1.0 + 2f32.powi(-6));
        assert_eq!(round_to::<f16>(&[65520.0])[0].to_f32(), f32::INFINITY);
        assert_eq!(round_to::<f16>(&[65519.0])[0].to_f32(), 65504.0);
        assert_eq!(widen(&round_to::<f16>(&[0.1])), vec![f16::from_f32(0.1).to_f32()]);
    }
}
