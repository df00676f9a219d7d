//! NumPy `.npy` files, read and written through the npyz crate: every file `np.save`
//! writes (header versions 1 to 3, little- and big-endian, C and Fortran order, bytes after
//! the data ignored as NumPy ignores them), with the array always handed out in C order.
//!
//! npyz is chosen over ndarray-npy because it reads a file whose dtype is only known once
//! the header is read (float16/32/64 and 8- to 64-bit integers here) without pulling in
//! ndarray, reads float16 through `half`, and reports the header's version, order and
//! dtype; the Fortran-to-C reordering is done here, in a few lines.

use half::f16;
use npyz::{DType, NpyFile, Order, TypeChar};

/// The elements of an array, as stored (floats) or widened (integers, for class targets).
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// float16.
    F16(Vec<f16>),
    /// float32.
    F32(Vec<f32>),
    /// float64.
    F64(Vec<f64>),
    /// Any signed or unsigned integer of 8 to 64 bits, widened to i64 (uint64 values above
    /// `i64::MAX` are refused when read).
    Int(Vec<i64>),
}

/// An array read from a `.npy` file: its shape, its elements in C order, and the NumPy
/// name of its dtype (for messages).
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The shape; empty for a 0-d array.
    pub shape: Vec<usize>,
    /// The elements, row-major (C order).
    pub data: Data,
    /// NumPy's name of the dtype: `float32`, `int64`, `uint8`...
    pub dtype: String,
}

/// Parses a whole `.npy` file held in `bytes`.
///
/// # Errors
///
/// A message (without the file's name) when the file is not a `.npy` file, is truncated,
/// holds a dtype other than a float or an integer, or an integer that does not fit i64.
pub fn parse(bytes: &[u8]) -> Result<Array, String> {
    let file = NpyFile::new(bytes).map_err(|e| header_error(&e))?;
    let header = file.header().clone();
    let shape: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| too_large(header.shape())))
        .collect::<Result<_, _>>()?;
    let len = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| too_large(header.shape()))?;
    let DType::Plain(type_str) = header.dtype() else {
        return Err(format!(
            "unsupported dtype {}: structured arrays are not arrays of numbers",
            header.dtype().descr()
        ));
    };
    let size = usize::try_from(type_str.size_field()).unwrap_or(usize::MAX);
    let name = match (type_str.type_char(), size) {
        (TypeChar::Float, 2 | 4 | 8) => format!("float{}", 8 * size),
        (TypeChar::Int, 1 | 2 | 4 | 8) => format!("int{}", 8 * size),
        (TypeChar::Uint, 1 | 2 | 4 | 8) => format!("uint{}", 8 * size),
        (TypeChar::Complex, _) => return Err(format!("unsupported dtype '{type_str}': complex numbers")),
        (TypeChar::Bool, _) => return Err(format!("unsupported dtype '{type_str}': booleans")),
        _ => return Err(format!("unsupported dtype '{type_str}': only floats and integers are read")),
    };
    let data_bytes = file.into_inner();
    let needed = len.checked_mul(size).ok_or_else(|| too_large(header.shape()))?;
    if data_bytes.len() < needed {
        return Err(format!(
            "truncated: the header claims shape {} of {name} ({needed} bytes) but the file holds {} bytes of data",
            format_shape(&shape),
            data_bytes.len()
        ));
    }
    // Only the array's own bytes: NumPy ignores what follows them, and so does this.
    let file = NpyFile::with_header(header.clone(), &data_bytes[..needed]);
    let data = match type_str.type_char() {
        TypeChar::Float => match size {
            2 => Data::F16(read(file)?),
            4 => Data::F32(read(file)?),
            _ => Data::F64(read(file)?),
        },
        TypeChar::Int => Data::Int(match size {
            1 => widen(read::<i8>(file)?),
            2 => widen(read::<i16>(file)?),
            4 => widen(read::<i32>(file)?),
            _ => read::<i64>(file)?,
        }),
        _ => Data::Int(match size {
            1 => widen(read::<u8>(file)?),
            2 => widen(read::<u16>(file)?),
            4 => widen(read::<u32>(file)?),
            _ => {
                let values: Vec<u64> = read(file)?;
                let mut widened = Vec::with_capacity(values.len());
                for (index, value) in values.into_iter().enumerate() {
                    let value = i64::try_from(value).map_err(|_| {
                        format!("the uint64 value {value} at index {index} does not fit in int64")
                    })?;
                    widened.push(value);
                }
                widened
            }
        }),
    };
    let data = if header.order() == Order::Fortran { data.fortran_to_c(&shape) } else { data };
    Ok(Array { shape, data, dtype: name })
}

fn read<T: npyz::Deserialize>(file: NpyFile<&[u8]>) -> Result<Vec<T>, String> {
    file.into_vec().map_err(|e| format!("cannot read the data: {e}"))
}

fn widen<T: Into<i64>>(values: Vec<T>) -> Vec<i64> {
    values.into_iter().map(Into::into).collect()
}

fn header_error(error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        "truncated: the file ends inside its header".to_owned()
    } else {
        format!("not a valid .npy file: {error}")
    }
}

fn too_large(shape: &[u64]) -> String {
    let shape: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("the shape ({}) is too large to fit in memory", shape.join(", "))
}

impl Data {
    /// The same elements reordered from Fortran (column-major) to C (row-major) order.
    fn fortran_to_c(self, shape: &[usize]) -> Self {
        match self {
            Self::F16(v) => Self::F16(fortran_to_c(&v, shape)),
            Self::F32(v) => Self::F32(fortran_to_c(&v, shape)),
            Self::F64(v) => Self::F64(fortran_to_c(&v, shape)),
            Self::Int(v) => Self::Int(fortran_to_c(&v, shape)),
        }
    }
}

/// `values` of `shape` stored in Fortran order, in C order: the C index `(i0, .., ik)` is
/// the Fortran offset `i0 + d0 * (i1 + d1 * (..))`.
fn fortran_to_c<T: Copy>(values: &[T], shape: &[usize]) -> Vec<T> {
    if shape.len() < 2 {
        return values.to_vec();
    }
    // Fortran strides: the first axis is contiguous.
    let mut strides = vec![1usize; shape.len()];
    for axis in 1..shape.len() {
        strides[axis] = strides[axis - 1] * shape[axis - 1];
    }
    let mut out = Vec::with_capacity(values.len());
    let mut index = vec![0usize; shape.len()];
    for _ in 0..values.len() {
        let offset: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(values[offset]);
        // Advance the C index: the last axis fastest.
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// A shape as NumPy prints it: `(2, 3)`, `(5,)`, `()`.
pub fn format_shape(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_owned(),
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// An element type the tool writes.
pub trait Element: npyz::AutoSerialize + Copy {}
impl Element for f32 {}
impl Element for f16 {}
// Token ids.
impl Element for i64 {}

/// The bytes of a `.npy` file (version 1, little-endian, C order) holding `data` of `shape`.
///
/// # Errors
///
/// When `data` does not hold `shape`'s elements (a bug).
pub fn encode<T: Element>(shape: &[usize], data: &[T]) -> Result<Vec<u8>, String> {
    let expected: usize = shape.iter().product();
    if expected != data.len() {
        return Err(format!("internal error: {} elements for shape {}", data.len(), format_shape(shape)));
    }
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut out = Vec::new();
    write_npy(&mut out, &shape, data).map_err(|e| format!("cannot encode: {e}"))?;
    Ok(out)
}

fn write_npy<T: Element>(out: &mut Vec<u8>, shape: &[u64], data: &[T]) -> std::io::Result<()> {
    use npyz::WriterBuilder as _;
    let mut writer = npyz::WriteOptions::new().default_dtype().shape(shape).writer(out).begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()
}

/// A float array as f32 for the kernels: float16 exactly, float32 as it is, float64
/// rounded to nearest. NaN and infinities pass as they are.
///
/// # Errors
///
/// A message naming the first float64 value that is finite but too large for float32
/// (rounding it would silently make it infinite), or the dtype when it is not a float.
pub fn to_f32(data: Data, dtype: &str) -> Result<Vec<f32>, String> {
    match data {
        Data::F16(v) => Ok(v.into_iter().map(f32::from).collect()),
        Data::F32(v) => Ok(v),
        Data::F64(v) => f64_to_f32(&v),
        Data::Int(_) => Err(format!("must be float16, float32 or float64, not {dtype}")),
    }
}

/// float64 values rounded to float32.
///
/// # Errors
///
/// A message naming the first finite value whose magnitude exceeds float32's largest.
pub fn f64_to_f32(values: &[f64]) -> Result<Vec<f32>, String> {
    values
        .iter()
        .enumerate()
        .map(|(index, &value)| {
            #[allow(clippy::cast_possible_truncation)] // rounding to f32 is the point; overflow is checked
            let rounded = value as f32;
            if value.is_finite() && rounded.is_infinite() {
                Err(format!(
                    "the value {value:e} at index {index} does not fit in float32 (largest {:e}); \
                     scale the data or use a smaller range",
                    f32::MAX
                ))
            } else {
                Ok(rounded)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_is_reordered_to_c_order() {
        // A (2, 3) array [[0, 1, 2], [3, 4, 5]] stored column by column.
        let fortran = [0, 3, 1, 4, 2, 5];
        assert_eq!(fortran_to_c(&fortran, &[2, 3]), vec![0, 1, 2, 3, 4, 5]);
        // (2, 2, 2): C element (i, j, k) sits at i + 2j + 4k.
        let values: Vec<usize> = (0..8).collect();
        let c = fortran_to_c(&values, &[2, 2, 2]);
        assert_eq!(c, vec![0, 4, 2, 6, 1, 5, 3, 7]);
    }

    #[test]
    fn written_files_read_back() {
        let bytes = encode(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap_or_default();
        let array = parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(array.shape, vec![2, 3]);
        assert_eq!(array.data, Data::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        assert_eq!(array.dtype, "float32");
    }

    #[test]
    fn float64_out_of_float32_range_is_refused_with_its_index() {
        let err = f64_to_f32(&[1.0, f64::INFINITY, -1e300]).unwrap_err();
        assert!(err.contains("index 2") && err.contains("1e300"), "{err}");
        let ok = f64_to_f32(&[f64::NAN, f64::NEG_INFINITY, 1e-300]).unwrap_or_default();
        assert!(ok[0].is_nan() && ok[1] == f32::NEG_INFINITY && ok[2] == 0.0);
    }
}
