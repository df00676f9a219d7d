//! The shape of a tensor as the ops see it: independent rows along a class axis.

use crate::error::{Error, Result};

/// A tensor as rows along its class axis: the ops normalise over `cols` (the classes)
/// independently for each of `rows` rows.
///
/// With `inner == 1` (what [`Shape::new`] makes) it is a row-major `[rows, cols]` matrix,
/// each row contiguous. Otherwise it is a C-order tensor `[outer, cols, inner]`, the class
/// axis anywhere but last: PyTorch's `dim` of an N-D tensor, or the `(N, C, d1..dk)`
/// layout of its cross-entropy, with `outer` the product of the axes before the class
/// axis and `inner` the product of those after it. Its rows are the `outer * inner`
/// positions off the class axis, in C order (row `o * inner + i`: the order of a
/// cross-entropy's `(N, d1..dk)` targets), and the classes of a row lie `inner` elements
/// apart. The kernels read such a tensor where it lies, neighbouring invocations on
/// neighbouring rows so that loads stay coalesced: nothing is transposed.
///
/// ```
/// use wgpu_softmax::Shape;
/// // Softmax over dim 1 of a (2, 5, 3, 4) tensor: 2 x 12 rows of 5 classes, 12 apart.
/// let shape = Shape::of_dims(&[2, 5, 3, 4], 1)?;
/// assert_eq!((shape.rows, shape.cols, shape.inner), (24, 5, 12));
/// assert_eq!(shape, Shape::with_inner(2, 5, 12));
/// // The last axis (dim -1) is the plain row-major matrix.
/// assert_eq!(Shape::of_dims(&[2, 5, 3, 4], -1)?, Shape::new(30, 4));
/// # Ok::<(), wgpu_softmax::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Number of rows: every position off the class axis (`outer * inner`).
    pub rows: usize,
    /// Number of columns (the classes).
    pub cols: usize,
    /// Elements between one class and the next of a row: the product of the axes after
    /// the class axis, 1 for the last axis. `rows` is a multiple of it.
    pub inner: usize,
}

impl Shape {
    /// A row-major `[rows, cols]` shape: the class axis last.
    #[must_use]
    pub const fn new(rows: usize, cols: usize) -> Self {
        Self { rows, cols, inner: 1 }
    }

    /// A C-order `[outer, cols, inner]` tensor with the class axis in the middle: `outer *
    /// inner` rows of `cols` classes, each class `inner` elements after the one before.
    /// `inner == 1` is [`Shape::new`]`(outer, cols)`. Saturates where `outer * inner`
    /// overflows (which [`Shape::len`] then reports).
    #[must_use]
    pub const fn with_inner(outer: usize, cols: usize, inner: usize) -> Self {
        Self { rows: outer.saturating_mul(inner), cols, inner: if inner == 0 { 1 } else { inner } }
    }

    /// The shape of a C-order tensor of dimensions `dims` normalised over axis `dim`
    /// (negative counts from the end, as in PyTorch: -1 is the last). A 0-d tensor is
    /// one row of one class, as PyTorch treats it.
    ///
    /// # Errors
    ///
    /// [`Error::AxisOutOfRange`] when `dim` is not from `-ndim` to `ndim - 1`,
    /// [`Error::ShapeOverflow`] when the dimensions' product overflows.
    pub fn of_dims(dims: &[usize], dim: isize) -> Result<Self> {
        if dims.is_empty() && (dim == 0 || dim == -1) {
            return Ok(Self::new(1, 1));
        }
        let ndim = dims.len();
        let axis =
            usize::try_from(if dim < 0 { dim + isize::try_from(ndim).unwrap_or(isize::MAX) } else { dim })
                .ok()
                .filter(|&axis| axis < ndim)
                .ok_or(Error::AxisOutOfRange { dim, ndim })?;
        let product = |part: &[usize]| part.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let cols = dims[axis];
        let overflow = || Error::ShapeOverflow { rows: usize::MAX, cols };
        let outer = product(&dims[..axis]).ok_or_else(overflow)?;
        let inner = product(&dims[axis + 1..]).ok_or_else(overflow)?;
        let rows = outer.checked_mul(inner).ok_or_else(overflow)?;
        // An empty inner run has no rows; keep the stride at least 1 all the same.
        Ok(Self { rows, cols, inner: inner.max(1) })
    }

    /// Whether the class axis is the last (each row contiguous).
    #[must_use]
    pub const fn is_row_major(&self) -> bool {
        self.inner == 1
    }

    /// The index in the tensor of class `col` of row `row`.
    #[must_use]
    pub const fn index(&self, row: usize, col: usize) -> usize {
        let (outer, within) = (row / self.inner, row % self.inner);
        (outer * self.cols + col) * self.inner + within
    }

    /// Checks that `rows` is whole runs of `inner` (a shape built by hand may not be).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLayout`] when it is not.
    pub const fn check_layout(&self) -> Result<()> {
        if self.inner == 0 || !self.rows.is_multiple_of(self.inner) {
            return Err(Error::InvalidLayout { rows: self.rows, inner: self.inner });
        }
        Ok(())
    }

    /// The number of elements, `rows * cols`.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeOverflow`] when the product does not fit in `usize`.
    pub fn len(&self) -> Result<usize> {
        self.rows.checked_mul(self.cols).ok_or(Error::ShapeOverflow { rows: self.rows, cols: self.cols })
    }

    /// Whether the shape holds no element (zero rows or zero columns).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.rows == 0 || self.cols == 0
    }

    /// Checks that a slice or buffer of `actual` elements matches this shape.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] when the lengths differ, [`Error::ShapeOverflow`] when the
    /// shape itself overflows.
    pub fn check_len(&self, what: &'static str, actual: usize) -> Result<()> {
        let expected = self.len()?;
        if expected == actual {
            Ok(())
        } else {
            Err(Error::ShapeMismatch { what, rows: self.rows, cols: self.cols, expected, actual })
        }
    }

    /// The size in bytes of an f32 matrix of this shape.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeOverflow`] when it does not fit in `u64`.
    pub fn byte_len(&self) -> Result<u64> {
        let overflow = Error::ShapeOverflow { rows: self.rows, cols: self.cols };
        let len = u64::try_from(self.len()?)
            .map_err(|_| Error::ShapeOverflow { rows: self.rows, cols: self.cols })?;
        len.checked_mul(4).ok_or(overflow)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_row_major() {
            write!(f, "{}x{}", self.rows, self.cols)
        } else {
            write!(f, "{}x{}x{}", self.rows / self.inner.max(1), self.cols, self.inner)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn len_and_bytes() {
        let shape = Shape::new(3, 7);
        assert_eq!(shape.len().ok(), Some(21));
        assert_eq!(shape.byte_len().ok(), Some(84));
        assert!(!shape.is_empty());
        assert!(Shape::new(0, 5).is_empty());
        assert!(Shape::new(5, 0).is_empty());
    }

    #[test]
    fn overflow_is_an_error() {
        let shape = Shape::new(usize::MAX, 2);
        assert!(matches!(shape.len(), Err(Error::ShapeOverflow { .. })));
        assert!(matches!(shape.byte_len(), Err(Error::ShapeOverflow { .. })));
    }

    #[test]
    fn class_axis_anywhere() {
        let shape = Shape::of_dims(&[2, 3, 4, 5], 1).unwrap();
        assert_eq!(shape, Shape::with_inner(2, 3, 20));
        assert_eq!(shape.len().ok(), Some(120));
        assert_eq!(Shape::of_dims(&[2, 3, 4, 5], -3).unwrap(), shape);
        assert_eq!(Shape::of_dims(&[2, 3, 4, 5], 0).unwrap(), Shape::with_inner(1, 2, 60));
        assert_eq!(Shape::of_dims(&[7], 0).unwrap(), Shape::new(1, 7));
        assert_eq!(Shape::of_dims(&[], -1).unwrap(), Shape::new(1, 1));
        // Row 7 of [2, 3, 20]: outer 0, position 7; its class 2 lies 2 * 20 further on.
        assert_eq!(shape.index(7, 2), 47);
        assert_eq!(shape.index(27, 1), 60 + 20 + 7);
        assert_eq!(shape.to_string(), "2x3x20");
        assert!(shape.check_layout().is_ok());
        assert!(matches!(
            Shape { rows: 7, cols: 3, inner: 2 }.check_layout(),
            Err(Error::InvalidLayout { rows: 7, inner: 2 })
        ));
    }

    #[test]
    fn axis_out_of_range_is_an_error() {
        for dim in [4, -5, 100] {
            let err = Shape::of_dims(&[2, 3, 4, 5], dim).unwrap_err();
            assert!(matches!(err, Error::AxisOutOfRange { ndim: 4, .. }), "{err}");
            assert!(err.to_string().contains("from -4 to 3"), "{err}");
        }
        let err = Shape::of_dims(&[], 1).unwrap_err();
        assert!(err.to_string().contains("from -1 to 0"), "{err}");
        assert!(Shape::of_dims(&[usize::MAX, 3, 2], 1).is_err());
    }

    #[test]
    fn mismatch_names_the_argument() {
        let err = Shape::new(2, 3).check_len("input", 5).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("input") && text.contains('5') && text.contains('6'), "{text}");
    }
}
