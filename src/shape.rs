//! The shape of a row-major matrix.

use crate::error::{Error, Result};

/// A row-major `[rows, cols]` matrix of f32: the ops normalise over `cols` (the class
/// axis) independently for each row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Number of rows (the batch).
    pub rows: usize,
    /// Number of columns (the classes).
    pub cols: usize,
}

impl Shape {
    /// A `[rows, cols]` shape.
    #[must_use]
    pub const fn new(rows: usize, cols: usize) -> Self {
        Self { rows, cols }
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
        write!(f, "{}x{}", self.rows, self.cols)
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
    fn mismatch_names_the_argument() {
        let err = Shape::new(2, 3).check_len("input", 5).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("input") && text.contains('5') && text.contains('6'), "{text}");
    }
}
