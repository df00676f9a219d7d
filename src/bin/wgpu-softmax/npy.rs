//! A small reader and writer of NumPy's `.npy` format (versions 1.0, 2.0 and 3.0), for the
//! little-endian C-order arrays of the dtypes this tool uses.
//!
//! The format: the magic `\x93NUMPY`, a major and a minor version byte, the header's length
//! (u16 little-endian in version 1, u32 in versions 2 and 3), the header (a Python dict
//! literal with the keys `descr`, `fortran_order` and `shape`, padded with spaces and
//! ended by a newline), then the data. Every malformed file is an error, never a panic:
//! sizes are computed with checked arithmetic, and nothing is allocated from a size the
//! header claims before the file is known to hold that much.

use std::fmt::Write as _;

/// The magic bytes every `.npy` file starts with.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The element types this tool reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `<f4`
    F32,
    /// `<f8`
    F64,
    /// `<i8`
    I64,
    /// `<i4`
    I32,
    /// `<u4`
    U32,
}

impl Dtype {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Self::F32 | Self::I32 | Self::U32 => 4,
            Self::F64 | Self::I64 => 8,
        }
    }

    /// NumPy's name of the type.
    pub const fn name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F64 => "float64",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::U32 => "uint32",
        }
    }

    fn from_descr(descr: &str) -> Result<Self, String> {
        match descr {
            "<f4" => Ok(Self::F32),
            "<f8" => Ok(Self::F64),
            "<i8" => Ok(Self::I64),
            "<i4" => Ok(Self::I32),
            "<u4" => Ok(Self::U32),
            _ => Err(unsupported_descr(descr)),
        }
    }
}

/// The message for a dtype this tool does not read, saying what it is where that helps.
fn unsupported_descr(descr: &str) -> String {
    const SUPPORTED: &str = "float32 '<f4', float64 '<f8', int64 '<i8', int32 '<i4', uint32 '<u4'";
    let mut chars = descr.chars();
    let order = chars.next();
    let rest: String = chars.collect();
    let known = ["f4", "f8", "i8", "i4", "u4"].contains(&rest.as_str());
    match order {
        Some('>') if known => format!(
            "big-endian dtype '{descr}' is not supported; save it little-endian \
             (e.g. arr.astype('<{rest}'))"
        ),
        Some('=') if known => format!(
            "native-order dtype '{descr}' is not supported; save it with an explicit \
             little-endian dtype '<{rest}'"
        ),
        _ => {
            let kind = match rest.chars().next() {
                Some('c') => " (complex)",
                Some('f') => " (a float of another width)",
                Some('i' | 'u') => " (an integer of another width)",
                Some('b') => " (boolean)",
                Some('U' | 'S') => " (strings)",
                Some('O') => " (Python objects)",
                Some('M' | 'm') => " (dates or times)",
                _ => "",
            };
            format!("unsupported dtype '{descr}'{kind}; supported: {SUPPORTED}")
        }
    }
}

/// The elements of an array, in C order.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// float32
    F32(Vec<f32>),
    /// float64
    F64(Vec<f64>),
    /// int64
    I64(Vec<i64>),
    /// int32
    I32(Vec<i32>),
    /// uint32
    U32(Vec<u32>),
}

impl Data {
    /// The element type.
    pub const fn dtype(&self) -> Dtype {
        match self {
            Self::F32(_) => Dtype::F32,
            Self::F64(_) => Dtype::F64,
            Self::I64(_) => Dtype::I64,
            Self::I32(_) => Dtype::I32,
            Self::U32(_) => Dtype::U32,
        }
    }
}

/// An array read from a `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The shape; empty for a 0-d array.
    pub shape: Vec<usize>,
    /// The elements, C order.
    pub data: Data,
}

impl Array {
    /// The elements as f32 when they are floats (f64 rounded to the nearest f32, as
    /// NumPy's `astype` does), else `None`.
    pub fn into_f32(self) -> Option<Vec<f32>> {
        match self.data {
            Data::F32(v) => Some(v),
            Data::F64(v) => Some(f64_to_f32(&v)),
            Data::I64(_) | Data::I32(_) | Data::U32(_) => None,
        }
    }
}

/// f64 values rounded to the nearest f32 (out of range: infinite), as NumPy's `astype`.
pub fn f64_to_f32(values: &[f64]) -> Vec<f32> {
    // Rounding to f32 is the documented conversion.
    #[allow(clippy::cast_possible_truncation)]
    values.iter().map(|&x| x as f32).collect()
}

/// Formats a shape as NumPy does: `()`, `(3,)`, `(2, 3)`.
pub fn format_shape(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_owned(),
        [one] => format!("({one},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(ToString::to_string).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// Parses the bytes of a whole `.npy` file.
///
/// # Errors
///
/// A message (without the file's name) for every way the file can be malformed or hold
/// something this tool does not read.
pub fn parse(bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a .npy file: it does not start with the magic \\x93NUMPY".to_owned());
    }
    let truncated = |what: &str| format!("truncated .npy file: it ends inside the {what}");
    let (major, minor) = match bytes.get(6..8) {
        Some(&[major, minor]) => (major, minor),
        _ => return Err(truncated("version")),
    };
    let (header_len, header_start): (usize, usize) = match major {
        1 => match bytes.get(8..10) {
            Some(&[a, b]) => (usize::from(u16::from_le_bytes([a, b])), 10),
            _ => return Err(truncated("header length")),
        },
        2 | 3 => match bytes.get(8..12) {
            Some(&[a, b, c, d]) => {
                let len = usize::try_from(u32::from_le_bytes([a, b, c, d]))
                    .map_err(|_| "the header length does not fit in memory".to_owned())?;
                (len, 12)
            }
            _ => return Err(truncated("header length")),
        },
        _ => return Err(format!("unsupported .npy version {major}.{minor} (supported: 1.0, 2.0, 3.0)")),
    };
    let data_start =
        header_start.checked_add(header_len).ok_or_else(|| "the header length overflows".to_owned())?;
    let header_bytes = bytes.get(header_start..data_start).ok_or_else(|| {
        format!(
            "truncated .npy file: the header claims {header_len} bytes but the file ends after {}",
            bytes.len().saturating_sub(header_start)
        )
    })?;
    let header = decode_header_text(header_bytes, major)?;
    let (dtype, fortran_order, shape) = parse_header(&header)?;
    if fortran_order {
        return Err("Fortran-order arrays (fortran_order: True) are not supported; save a C-order array \
             (e.g. np.ascontiguousarray(arr))"
            .to_owned());
    }
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("the shape {} has more elements than fit in memory", format_shape(&shape)))?;
    let needed = count.checked_mul(dtype.size()).ok_or_else(|| {
        format!("the shape {} of {} is larger than fits in memory", format_shape(&shape), dtype.name())
    })?;
    let data = &bytes[data_start..];
    if data.len() < needed {
        return Err(format!(
            "truncated .npy file: the header claims shape {} of {} ({needed} bytes of data) but the \
             file holds {} bytes after the header",
            format_shape(&shape),
            dtype.name(),
            data.len()
        ));
    }
    if data.len() > needed {
        return Err(format!(
            "malformed .npy file: {} bytes follow the data of shape {} of {} ({needed} bytes)",
            data.len() - needed,
            format_shape(&shape),
            dtype.name()
        ));
    }
    let data = decode_data(dtype, data);
    Ok(Array { shape, data })
}

fn decode_header_text(header_bytes: &[u8], major: u8) -> Result<String, String> {
    if major >= 3 {
        String::from_utf8(header_bytes.to_vec())
            .map_err(|_| "malformed .npy header: it is not valid UTF-8".to_owned())
    } else {
        // Versions 1 and 2 are Latin-1: every byte is the code point of its value.
        Ok(header_bytes.iter().map(|&b| char::from(b)).collect())
    }
}

fn decode_data(dtype: Dtype, data: &[u8]) -> Data {
    fn each<const N: usize, T>(data: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
        data.chunks_exact(N)
            .map(|chunk| {
                let mut bytes = [0u8; N];
                bytes.copy_from_slice(chunk);
                from(bytes)
            })
            .collect()
    }
    match dtype {
        Dtype::F32 => Data::F32(each(data, f32::from_le_bytes)),
        Dtype::F64 => Data::F64(each(data, f64::from_le_bytes)),
        Dtype::I64 => Data::I64(each(data, i64::from_le_bytes)),
        Dtype::I32 => Data::I32(each(data, i32::from_le_bytes)),
        Dtype::U32 => Data::U32(each(data, u32::from_le_bytes)),
    }
}

/// A value of the header's Python literal.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

impl Value {
    fn describe(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Int(_) => "an integer",
            Self::Bool(_) => "a boolean",
            Self::None => "None",
            Self::Tuple(_) => "a tuple",
            Self::List(_) => "a list",
            Self::Dict(_) => "a dict",
        }
    }
}

fn parse_header(header: &str) -> Result<(Dtype, bool, Vec<usize>), String> {
    let malformed = |problem: &str| format!("malformed .npy header {:?}: {problem}", header.trim_end());
    let mut parser = Parser { text: header.as_bytes(), pos: 0 };
    let value = parser.value().map_err(|e| malformed(&e))?;
    parser.skip_space();
    if parser.pos != parser.text.len() {
        return Err(malformed("unexpected text after the dict"));
    }
    let Value::Dict(entries) = value else {
        return Err(malformed("it is not a dict"));
    };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    for (key, value) in entries {
        let Value::Str(key) = key else {
            return Err(malformed("a key is not a string"));
        };
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran_order,
            "shape" => &mut shape,
            other => return Err(malformed(&format!("unexpected key {other:?}"))),
        };
        if slot.replace(value).is_some() {
            return Err(malformed(&format!("the key {key:?} appears twice")));
        }
    }
    let missing = |key: &str| malformed(&format!("the key {key:?} is missing"));
    let descr = match descr.ok_or_else(|| missing("descr"))? {
        Value::Str(s) => s,
        Value::List(_) => {
            return Err("structured dtypes (a list of fields as descr) are not supported".to_owned());
        }
        other => return Err(malformed(&format!("descr is {}, not a string", other.describe()))),
    };
    let fortran_order = match fortran_order.ok_or_else(|| missing("fortran_order"))? {
        Value::Bool(b) => b,
        other => return Err(malformed(&format!("fortran_order is {}, not True or False", other.describe()))),
    };
    let shape = match shape.ok_or_else(|| missing("shape"))? {
        Value::Tuple(dims) => dims
            .into_iter()
            .map(|d| match d {
                Value::Int(n) => usize::try_from(n)
                    .map_err(|_| malformed(&format!("the shape has the dimension {n}, not a size"))),
                other => Err(malformed(&format!("the shape has {} as a dimension", other.describe()))),
            })
            .collect::<Result<Vec<usize>, String>>()?,
        other => return Err(malformed(&format!("shape is {}, not a tuple", other.describe()))),
    };
    let dtype = Dtype::from_descr(&descr)?;
    Ok((dtype, fortran_order, shape))
}

/// A recursive-descent parser of the Python literals a `.npy` header holds.
struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

/// Nesting deeper than this is refused, so that a hostile header cannot overflow the stack.
const MAX_DEPTH: usize = 32;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_space();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", char::from(byte), self.pos))
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".to_owned());
        }
        self.skip_space();
        match self.peek() {
            None => Err("it ends early".to_owned()),
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                loop {
                    self.skip_space();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Value::Dict(entries));
                    }
                    let key = self.value_at(depth + 1)?;
                    self.expect(b':')?;
                    let value = self.value_at(depth + 1)?;
                    entries.push((key, value));
                    if !self.separator(b'}')? {
                        return Ok(Value::Dict(entries));
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                self.pos += 1;
                let close = if open == b'(' { b')' } else { b']' };
                let mut items = Vec::new();
                let mut trailing_comma = false;
                loop {
                    self.skip_space();
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value_at(depth + 1)?);
                    trailing_comma = self.separator(close)?;
                    if !trailing_comma {
                        break;
                    }
                }
                if open == b'(' && items.len() == 1 && !trailing_comma {
                    // `(3)` is just 3 in Python, not a tuple.
                    return Ok(items.swap_remove(0));
                }
                Ok(if open == b'(' { Value::Tuple(items) } else { Value::List(items) })
            }
            Some(quote @ (b'\'' | b'"')) => {
                self.pos += 1;
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if c == b'\\' {
                        return Err("escapes in strings are not supported".to_owned());
                    }
                    if c == quote {
                        let s = String::from_utf8_lossy(&self.text[start..self.pos]).into_owned();
                        self.pos += 1;
                        return Ok(Value::Str(s));
                    }
                    self.pos += 1;
                }
                Err("a string is not closed".to_owned())
            }
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' => {
                let start = self.pos;
                self.pos += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                let digits = std::str::from_utf8(&self.text[start..self.pos]).unwrap_or_default();
                let n = digits.parse::<i128>().map_err(|_| format!("bad integer {digits:?}"))?;
                // Python 2 wrote long integers with an L suffix.
                if matches!(self.peek(), Some(b'L' | b'l')) {
                    self.pos += 1;
                }
                Ok(Value::Int(n))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    self.pos += 1;
                }
                match &self.text[start..self.pos] {
                    b"True" => Ok(Value::Bool(true)),
                    b"False" => Ok(Value::Bool(false)),
                    b"None" => Ok(Value::None),
                    word => Err(format!("unexpected word {:?}", String::from_utf8_lossy(word))),
                }
            }
            Some(c) => Err(format!("unexpected character {:?} at byte {}", char::from(c), self.pos)),
        }
    }

    /// After an item: a comma (returns true; the closing bracket may follow) or the
    /// closing bracket itself (consumed; returns false).
    fn separator(&mut self, close: u8) -> Result<bool, String> {
        self.skip_space();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(format!("expected ',' or '{}' at byte {}", char::from(close), self.pos)),
        }
    }
}

/// The bytes of a `.npy` file holding `data` (float32, little-endian, C order) of `shape`.
///
/// # Errors
///
/// When `data` does not hold exactly the elements of `shape`.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>, String> {
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(data.len()) {
        return Err(format!(
            "internal error: {} values for an output of shape {}",
            data.len(),
            format_shape(shape)
        ));
    }
    let mut header = String::new();
    // Writing to a String cannot fail.
    let _ = write!(header, "{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}", format_shape(shape));
    // Pad with spaces and end with a newline so that the data starts 64-byte aligned, as
    // NumPy does; version 2.0 only if the header needs more than a u16 of length.
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).saturating_add(128));
    let unpadded_v1 = MAGIC.len() + 2 + 2 + header.len() + 1;
    let (prefix_len, version) =
        if unpadded_v1.next_multiple_of(64) - 10 <= usize::from(u16::MAX) { (10, 1u8) } else { (12, 2u8) };
    let total = (prefix_len + header.len() + 1).next_multiple_of(64);
    header.extend(std::iter::repeat_n(' ', total - prefix_len - header.len() - 1));
    header.push('\n');
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    let header_len = header.len();
    if version == 1 {
        let len = u16::try_from(header_len).map_err(|_| "internal error: header too long".to_owned())?;
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        let len = u32::try_from(header_len).map_err(|_| "internal error: header too long".to_owned())?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    for value in data {
        out.extend_from_slice(&value.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in a test, a failed unwrap is a failed test

    use super::*;

    fn file(descr: &str, fortran: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let header = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn round_trips_f32_of_every_rank() {
        for shape in [vec![], vec![3], vec![2, 3], vec![2, 1, 2], vec![0, 4]] {
            let count: usize = shape.iter().product();
            #[allow(clippy::cast_precision_loss)]
            let data: Vec<f32> = (0..count).map(|i| i as f32 * 0.5 - 1.0).collect();
            let bytes = encode_f32(&shape, &data).unwrap();
            assert_eq!(bytes.len() % 16, (count * 4) % 16);
            let array = parse(&bytes).unwrap();
            assert_eq!(array, Array { shape: shape.clone(), data: Data::F32(data) });
        }
    }

    #[test]
    fn reads_every_supported_dtype() {
        let a = parse(&file(
            "<i8",
            "False",
            "(2,)",
            &[1, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255],
        ));
        assert_eq!(a.unwrap().data, Data::I64(vec![1, -1]));
        let a = parse(&file("<u4", "False", "(1,)", &[7, 0, 0, 0])).unwrap();
        assert_eq!(a.data, Data::U32(vec![7]));
        let a = parse(&file("<i4", "False", "(1L,)", &[255, 255, 255, 255])).unwrap();
        assert_eq!(a.data, Data::I32(vec![-1]));
        let a = parse(&file("<f8", "False", "()", &1.5f64.to_le_bytes())).unwrap();
        assert_eq!(a.shape, Vec::<usize>::new());
        assert_eq!(a.into_f32(), Some(vec![1.5]));
    }

    #[test]
    fn refuses_every_malformed_file_with_a_message() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"hello".to_vec(), "magic"),
            (MAGIC.to_vec(), "truncated"),
            (vec![0x93, b'N', b'U', b'M', b'P', b'Y', 9, 0, 0, 0], "version 9.0"),
            (file("<f4", "False", "(2,)", &[0; 4]), "truncated"),
            (file("<f4", "False", "(1,)", &[0; 8]), "follow the data"),
            (file(">f4", "False", "(1,)", &[0; 4]), "big-endian"),
            (file("<c8", "False", "(1,)", &[0; 8]), "complex"),
            (file("<f4", "True", "(1, 1)", &[0; 4]), "Fortran"),
            (file("<f4", "False", "(-1,)", &[]), "dimension -1"),
            (file("<f4", "False", "(99999999999, 99999999999, 99999999999)", &[]), "memory"),
            (file("<f4", "False", "[1]", &[0; 4]), "not a tuple"),
            (file("<f4", "Maybe", "(1,)", &[0; 4]), "unexpected word"),
        ];
        for (bytes, expected) in cases {
            let err = parse(&bytes).unwrap_err();
            assert!(err.contains(expected), "{err:?} should mention {expected:?}");
            assert!(!err.contains('\n'), "{err:?}");
        }
        let mut short = file("<f4", "False", "(1,)", &[0; 4]);
        short.truncate(20);
        assert!(parse(&short).unwrap_err().contains("header claims"));
        for len in 0..short.len() {
            assert!(parse(&short[..len]).is_err());
        }
    }

    #[test]
    fn no_single_byte_change_makes_it_panic() {
        let good = file("<f4", "False", "(2, 3)", &[0; 24]);
        for at in 0..good.len() - 24 {
            for value in 0..=255u8 {
                let mut bytes = good.clone();
                bytes[at] = value;
                // Ok or Err, never a panic; and an Ok is a whole, consistent array.
                if let Ok(array) = parse(&bytes) {
                    let count: usize = array.shape.iter().product();
                    let len = match &array.data {
                        Data::F32(v) => v.len(),
                        Data::F64(v) => v.len(),
                        Data::I64(v) => v.len(),
                        Data::I32(v) => v.len(),
                        Data::U32(v) => v.len(),
                    };
                    assert_eq!(len, count);
                }
            }
        }
    }
}
