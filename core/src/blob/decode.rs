//! Reading a blob: `datajoint.blob.unpack`, with every length checked against the input.

use std::io::Read;

use chrono::{NaiveDate, NaiveTime};
use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use num_bigint::BigInt;
use num_complex::Complex;

use super::value::{Array, BlobValue, DatetimeUnit};
use super::{COMPRESSION_PREFIX, MAX_DEPTH};
use crate::OasError;

type Result<T> = std::result::Result<T, OasError>;

fn invalid(message: impl std::fmt::Display) -> OasError {
    OasError::invalid_argument(format!("invalid DataJoint blob: {message}"))
}

/// Decodes DataJoint blob bytes (`ZL123\0`-compressed or not) into a [`BlobValue`].
pub fn unpack(blob: &[u8]) -> Result<BlobValue> {
    let raw;
    let mut data = blob;
    if let Some(rest) = blob.strip_prefix(COMPRESSION_PREFIX) {
        let (declared, compressed) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| invalid("truncated compression header"))?;
        let declared = u64::from_le_bytes(*declared);
        raw = inflate(compressed, declared)?;
        data = &raw;
    }
    let mut reader = Reader { buf: data, pos: 0 };
    let protocol = reader.zero_terminated()?;
    if protocol != "mYm" && protocol != "dj0" {
        return Err(invalid(format!("unknown protocol {protocol:?}")));
    }
    let n_bytes = (data.len() - reader.pos) as u64;
    reader.blob(Some(n_bytes), 0)
}

/// zlib-inflates `compressed`, which must give exactly `declared` bytes. The output never grows
/// past `declared + 1` bytes, whatever the header claims. Bytes after the zlib stream are ignored,
/// as Python's `zlib.decompress` does.
fn inflate(compressed: &[u8], declared: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(declared.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| invalid(format!("zlib: {e}")))?;
    if out.len() as u64 != declared {
        return Err(invalid(format!(
            "size mismatch: expected {declared}, got {}",
            out.len()
        )));
    }
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        if n > self.remaining() as u64 {
            return Err(invalid(format!(
                "truncated: {n} bytes needed at offset {}, {} left",
                self.pos,
                self.remaining()
            )));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N as u64)?;
        Ok(bytes.try_into().expect("take returned N bytes"))
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    fn zero_terminated(&mut self) -> Result<String> {
        let rest = &self.buf[self.pos..];
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| invalid("missing NUL terminator"))?;
        let text = std::str::from_utf8(&rest[..end]).map_err(invalid)?;
        self.pos += end + 1;
        Ok(text.to_owned())
    }

    fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| invalid(format!("string: {e}")))
    }

    /// A count of items each at least `min_item` bytes long: at most what the input can hold.
    fn capacity(&self, count: u64, min_item: usize) -> usize {
        count.min((self.remaining() / min_item.max(1)) as u64) as usize
    }

    /// `ndim`, then `ndim` dimensions; returns the shape and its element count.
    fn shape(&mut self) -> Result<(Vec<usize>, usize)> {
        let n_dims = self.u64()?;
        if n_dims > (self.remaining() / 8) as u64 {
            return Err(invalid(format!("{n_dims} dimensions in a truncated blob")));
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        let mut n_elem: usize = 1;
        for _ in 0..n_dims {
            let dim = usize::try_from(self.u64()?).map_err(|_| invalid("dimension too large"))?;
            n_elem = n_elem
                .checked_mul(dim)
                .ok_or_else(|| invalid("array size overflows"))?;
            shape.push(dim);
        }
        // An empty array may still have huge dimensions, and its nested-list form (NumPy's
        // `tolist()`, our JSON) one list per row: keep that within the blob's size.
        let rows = shape
            .iter()
            .filter(|d| **d > 0)
            .try_fold(1usize, |acc, d| acc.checked_mul(*d));
        if n_elem == 0 && rows.is_none_or(|rows| rows > self.buf.len()) {
            return Err(invalid(format!(
                "empty array of shape {shape:?} is larger than the blob"
            )));
        }
        Ok((shape, n_elem))
    }

    /// One value: a type code, its body, and (when `n_bytes` is given) the length check.
    fn blob(&mut self, n_bytes: Option<u64>, depth: usize) -> Result<BlobValue> {
        if depth > MAX_DEPTH {
            return Err(invalid(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let start = self.pos;
        let code = self.u8()?;
        let depth = depth + 1;
        let value = match code {
            b'A' => BlobValue::Array(self.read_array(depth)?),
            b'P' => return Err(invalid("sparse arrays are not supported (DataJoint #590)")),
            b'S' => self.read_struct(depth)?,
            b'C' => self.read_cell(depth)?,
            b'F' => self.read_recarray(depth)?,
            0xff => BlobValue::None,
            0x01 => BlobValue::Tuple(self.items(depth)?),
            0x02 => BlobValue::List(self.items(depth)?),
            0x03 => BlobValue::Set(self.items(depth)?),
            0x04 => self.read_dict(depth)?,
            0x05 => BlobValue::Str(self.string()?),
            0x06 => {
                let n = self.u64()?;
                BlobValue::Bytes(self.take(n)?.to_vec())
            }
            0x0a => {
                let n = self.u16()?;
                BlobValue::Int(BigInt::from_signed_bytes_le(self.take(n.into())?))
            }
            0x0b => BlobValue::Bool(self.u8()? != 0),
            0x0c => BlobValue::Complex(Complex::new(self.f64()?, self.f64()?)),
            0x0d => BlobValue::Float(self.f64()?),
            b'd' => BlobValue::Decimal(self.string()?),
            b't' => self.read_datetime()?,
            b'u' => BlobValue::Uuid(self.array()?),
            other => return Err(invalid(format!("unknown data structure code {other:#04x}"))),
        };
        if let Some(n) = n_bytes {
            if (self.pos - start) as u64 != n {
                return Err(invalid(format!(
                    "length check failed: {n} bytes declared, {} read",
                    self.pos - start
                )));
            }
        }
        Ok(value)
    }

    /// A length-prefixed value, as containers hold them.
    fn item(&mut self, depth: usize) -> Result<BlobValue> {
        let n = self.u64()?;
        self.blob(Some(n), depth)
    }

    fn items(&mut self, depth: usize) -> Result<Vec<BlobValue>> {
        let count = self.u64()?;
        let mut items = Vec::with_capacity(self.capacity(count, 9));
        for _ in 0..count {
            items.push(self.item(depth)?);
        }
        Ok(items)
    }

    fn read_dict(&mut self, depth: usize) -> Result<BlobValue> {
        let count = self.u64()?;
        let mut pairs = Vec::with_capacity(self.capacity(count, 18));
        for _ in 0..count {
            let key = self.item(depth)?;
            pairs.push((key, self.item(depth)?));
        }
        Ok(BlobValue::Dict(pairs))
    }

    fn read_datetime(&mut self) -> Result<BlobValue> {
        let (date, time) = (self.i32()?, self.i64()?);
        let date = if date >= 0 {
            let (year, month, day) = (date / 10000, (date / 100) % 100, date % 100);
            Some(
                NaiveDate::from_ymd_opt(year, month as u32, day as u32)
                    .filter(|_| (1..=9999).contains(&year))
                    .ok_or_else(|| invalid(format!("bad date {date}")))?,
            )
        } else {
            None
        };
        let time = if time >= 0 {
            let part = |div: i64| ((time / div) % 100) as u32;
            Some(
                NaiveTime::from_hms_micro_opt(
                    part(10_000_000_000),
                    part(100_000_000),
                    part(1_000_000),
                    (time % 1_000_000) as u32,
                )
                .ok_or_else(|| invalid(format!("bad time {time}")))?,
            )
        } else {
            None
        };
        Ok(match (date, time) {
            (Some(d), Some(t)) => BlobValue::DateTime(d.and_time(t)),
            (Some(d), None) => BlobValue::Date(d),
            (None, Some(t)) => BlobValue::Time(t),
            (None, None) => BlobValue::None,
        })
    }

    fn field_names(&mut self, n_fields: u32) -> Result<Vec<String>> {
        let mut names: Vec<String> = Vec::with_capacity(self.capacity(n_fields.into(), 1));
        for i in 0..n_fields {
            let mut name = self.zero_terminated()?;
            if name.is_empty() {
                name = format!("f{i}"); // NumPy names an empty field f<index>
            }
            if names.contains(&name) {
                return Err(invalid(format!("duplicate field name {name:?}")));
            }
            names.push(name);
        }
        Ok(names)
    }

    fn read_struct(&mut self, depth: usize) -> Result<BlobValue> {
        let (shape, n_elem) = self.shape()?;
        let n_fields = self.u32()?;
        if n_fields == 0 {
            return Ok(empty_record());
        }
        let fields = self.field_names(n_fields)?;
        let mut elements = Vec::with_capacity(self.capacity(n_elem as u64, 9 * fields.len()));
        for _ in 0..n_elem {
            let mut record = Vec::with_capacity(fields.len());
            for _ in 0..fields.len() {
                record.push(self.item(depth)?);
            }
            elements.push(record);
        }
        let elements = fortran(&shape, elements)?;
        Ok(BlobValue::Struct { fields, elements })
    }

    fn read_cell(&mut self, depth: usize) -> Result<BlobValue> {
        let (shape, n_elem) = self.shape()?;
        let mut elements = Vec::with_capacity(self.capacity(n_elem as u64, 9));
        for _ in 0..n_elem {
            elements.push(self.item(depth)?);
        }
        if n_elem == 0 {
            return Ok(BlobValue::Cell(ArrayD::from_elem(
                IxDyn(&[0]),
                BlobValue::None,
            )));
        }
        Ok(BlobValue::Cell(fortran(&shape, elements)?))
    }

    fn read_recarray(&mut self, depth: usize) -> Result<BlobValue> {
        let n_fields = self.u32()?;
        if n_fields == 0 {
            return Ok(empty_record());
        }
        let names = self.field_names(n_fields)?;
        let mut fields = Vec::with_capacity(names.len());
        let mut first_shape: Option<Vec<usize>> = None;
        for name in names {
            let value = self.blob(None, depth)?;
            let shape = match &value {
                BlobValue::Array(a) => a.shape().to_vec(),
                BlobValue::Recarray(f) => super::recarray_shape(f),
                other => {
                    return Err(invalid(format!(
                        "recarray field {name:?} is {}",
                        other.type_name()
                    )))
                }
            };
            match &first_shape {
                None => first_shape = Some(shape),
                Some(first) if *first != shape => {
                    return Err(invalid(format!(
                        "recarray field {name:?} has shape {shape:?}, not {first:?}"
                    )))
                }
                Some(_) => {}
            }
            fields.push((name, value));
        }
        Ok(BlobValue::Recarray(fields))
    }

    fn read_array(&mut self, depth: usize) -> Result<Array> {
        let (shape, n_elem) = self.shape()?;
        let type_id = self.u32()?;
        let is_complex = self.u32()? != 0;
        match type_id {
            4 => return self.read_char(&shape, n_elem),
            5 => {
                let mut elements = Vec::with_capacity(self.capacity(n_elem as u64, 9));
                for _ in 0..n_elem {
                    elements.push(self.item(depth)?);
                }
                return Ok(Array::Object(fortran(&shape, elements)?));
            }
            _ => {}
        }
        let mut numeric = Numeric {
            reader: self,
            n_elem,
            shape: &shape,
            is_complex,
        };
        Ok(match type_id {
            // UNKNOWN, CELL, STRUCT and FUNCTION have no dtype: blob.py then reads uint64s.
            0 | 1 | 2 | 15 | 16 => {
                numeric.read(Array::UInt64, Array::Complex128, |v: u64| v as f64)?
            }
            3 => numeric
                .read(Array::UInt8, Array::Complex128, |v: u8| {
                    f64::from(u8::from(v != 0))
                })?
                .map_bool(),
            6 => numeric.read(Array::Float64, Array::Complex128, |v: f64| v)?,
            7 => numeric.read_f32()?,
            8 => numeric.read(Array::Int8, Array::Complex128, |v: i8| v.into())?,
            9 => numeric.read(Array::UInt8, Array::Complex128, |v: u8| v.into())?,
            10 => numeric.read(Array::Int16, Array::Complex128, |v: i16| v.into())?,
            11 => numeric.read(Array::UInt16, Array::Complex128, |v: u16| v.into())?,
            12 => numeric.read(Array::Int32, Array::Complex128, |v: i32| v.into())?,
            13 => numeric.read(Array::UInt32, Array::Complex128, |v: u32| v.into())?,
            14 => numeric.read(Array::Int64, Array::Complex128, |v: i64| v as f64)?,
            id => {
                let unit = DatetimeUnit::from_type_id(id)
                    .ok_or_else(|| invalid(format!("unknown array type id {id}")))?;
                if is_complex {
                    return Err(invalid("complex datetime64 array"));
                }
                let values = numeric.values::<i64>()?;
                Array::Datetime64(unit, fortran(&shape, values)?)
            }
        })
    }

    /// MATLAB char arrays: UTF-16 code units of which blob.py keeps the low byte, as `U1`
    /// strings; a row (1-d, or 2-d with one row) becomes one string in an array of shape (1,).
    fn read_char(&mut self, shape: &[usize], n_elem: usize) -> Result<Array> {
        let n = (n_elem as u64)
            .checked_mul(2)
            .ok_or_else(|| invalid("array size overflows"))?;
        let raw = self.take(n)?;
        let mut chars = Vec::with_capacity(n_elem);
        for unit in raw.chunks_exact(2) {
            match unit[0] {
                0 => chars.push(String::new()),
                b if b.is_ascii() => chars.push(char::from(b).to_string()),
                b => return Err(invalid(format!("char array byte {b:#04x} is not ASCII"))),
            }
        }
        let row = shape.len() == 1 || (shape.len() == 2 && shape[0] == 1);
        if row {
            let text = if chars.len() == 1 {
                chars.remove(0)
            } else {
                chars.concat()
            };
            return Ok(Array::Object(ArrayD::from_elem(
                IxDyn(&[1]),
                BlobValue::Str(text),
            )));
        }
        Ok(Array::Object(fortran(
            shape,
            chars.into_iter().map(BlobValue::Str).collect(),
        )?))
    }
}

/// `np.array(None)`: what blob.py returns for a struct or recarray without fields.
fn empty_record() -> BlobValue {
    BlobValue::Array(Array::Object(ArrayD::from_elem(
        IxDyn(&[]),
        BlobValue::None,
    )))
}

/// Builds an array of `shape` from elements listed in Fortran order.
fn fortran<T>(shape: &[usize], elements: Vec<T>) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape).f(), elements)
        .map_err(|e| invalid(format!("shape {shape:?}: {e}")))
}

/// Fixed-size little-endian elements of a numeric array, real part then imaginary part.
struct Numeric<'r, 'a> {
    reader: &'r mut Reader<'a>,
    n_elem: usize,
    shape: &'r [usize],
    is_complex: bool,
}

trait Le: Sized + Copy {
    const SIZE: usize;
    fn from_le(bytes: &[u8]) -> Self;
}

macro_rules! le {
    ($($t:ty),*) => {$(
        impl Le for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn from_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("chunk of SIZE bytes"))
            }
        }
    )*};
}
le!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

impl Numeric<'_, '_> {
    fn values<T: Le>(&mut self) -> Result<Vec<T>> {
        let n = (self.n_elem as u64)
            .checked_mul(T::SIZE as u64)
            .ok_or_else(|| invalid("array size overflows"))?;
        Ok(self
            .reader
            .take(n)?
            .chunks_exact(T::SIZE)
            .map(T::from_le)
            .collect())
    }

    /// Reads a real array, or (`is_complex`) real and imaginary parts as NumPy's
    /// `data + 1j * imag` gives them: complex128 for every dtype but float32.
    fn read<T: Le, R>(
        &mut self,
        real: impl Fn(ArrayD<T>) -> R,
        complex: impl Fn(ArrayD<Complex<f64>>) -> R,
        widen: impl Fn(T) -> f64,
    ) -> Result<R> {
        let re = self.values::<T>()?;
        if !self.is_complex {
            return Ok(real(fortran(self.shape, re)?));
        }
        let im = self.values::<T>()?;
        let values = re
            .into_iter()
            .zip(im)
            .map(|(r, i)| Complex::new(widen(r), widen(i)))
            .collect();
        Ok(complex(fortran(self.shape, values)?))
    }

    fn read_f32(&mut self) -> Result<Array> {
        let re = self.values::<f32>()?;
        if !self.is_complex {
            return Ok(Array::Float32(fortran(self.shape, re)?));
        }
        let im = self.values::<f32>()?;
        let values = re
            .into_iter()
            .zip(im)
            .map(|(r, i)| Complex::new(r, i))
            .collect();
        Ok(Array::Complex64(fortran(self.shape, values)?))
    }
}

impl Array {
    /// Bool arrays are read as bytes; any non-zero byte is `True`.
    fn map_bool(self) -> Array {
        match self {
            Array::UInt8(a) => Array::Bool(a.mapv(|v| v != 0)),
            other => other,
        }
    }
}
