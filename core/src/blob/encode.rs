//! Writing a blob: `datajoint.blob.pack`, byte for byte.

use std::io::Write;

use ndarray::ArrayD;
use num_bigint::BigInt;
use num_complex::Complex;

use super::value::{Array, BlobValue};
use super::{recarray_shape, COMPRESSION_PREFIX, COMPRESS_ABOVE, MAX_DEPTH};
use crate::OasError;

type Result<T> = std::result::Result<T, OasError>;

/// Encodes `value` as `datajoint.blob.pack(value)` does: the `mYm\0` protocol unless a part of
/// the value needs `dj0\0`, then zlib compression when the blob exceeds 1000 bytes and the
/// compressed form is shorter.
pub fn pack(value: &BlobValue) -> Result<Vec<u8>> {
    pack_with(value, true)
}

/// [`pack`] with compression on or off (`blob.pack(obj, compress=...)`).
pub fn pack_with(value: &BlobValue, compress: bool) -> Result<Vec<u8>> {
    let mut writer = Writer {
        out: Vec::new(),
        dj0: false,
    };
    writer.blob(value, 0)?;
    let protocol: &[u8] = if writer.dj0 { b"dj0\0" } else { b"mYm\0" };
    let mut blob = Vec::with_capacity(protocol.len() + writer.out.len());
    blob.extend_from_slice(protocol);
    blob.extend_from_slice(&writer.out);
    if compress && blob.len() > COMPRESS_ABOVE {
        let compressed = deflate(&blob)?;
        if compressed.len() < blob.len() {
            return Ok(compressed);
        }
    }
    Ok(blob)
}

/// `b"ZL123\0" + uint64(len(blob)) + zlib.compress(blob)` at zlib's default level (6), with the
/// zlib C library as CPython uses it.
fn deflate(blob: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(blob.len() / 2 + 64);
    out.extend_from_slice(COMPRESSION_PREFIX);
    out.extend_from_slice(&(blob.len() as u64).to_le_bytes());
    let mut encoder = flate2::write::ZlibEncoder::new(out, flate2::Compression::new(6));
    encoder
        .write_all(blob)
        .and_then(|_| encoder.finish())
        .map_err(|e| OasError::Internal(format!("zlib: {e}")))
}

fn unsupported(message: impl std::fmt::Display) -> OasError {
    OasError::invalid_argument(format!("cannot pack as a DataJoint blob: {message}"))
}

struct Writer {
    out: Vec<u8>,
    /// Set when a part of the value is beyond MATLAB's mYm (blob.py's `set_dj0`).
    dj0: bool,
}

impl Writer {
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn shape(&mut self, shape: &[usize]) {
        self.u64(shape.len() as u64);
        for dim in shape {
            self.u64(*dim as u64);
        }
    }

    fn bytes(&mut self, code: u8, bytes: &[u8]) {
        self.out.push(code);
        self.u64(bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    /// A value with its uint64 length in front, as containers hold them.
    fn item(&mut self, value: &BlobValue, depth: usize) -> Result<()> {
        let at = self.out.len();
        self.u64(0);
        self.blob(value, depth)?;
        let len = (self.out.len() - at - 8) as u64;
        self.out[at..at + 8].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    fn items<'v>(
        &mut self,
        code: u8,
        items: impl ExactSizeIterator<Item = &'v BlobValue>,
        depth: usize,
    ) -> Result<()> {
        self.out.push(code);
        self.u64(items.len() as u64);
        for item in items {
            self.item(item, depth)?;
        }
        Ok(())
    }

    fn blob(&mut self, value: &BlobValue, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(unsupported(format!(
                "nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let depth = depth + 1;
        match value {
            // MATLAB-compatible: cells, structs and plain arrays keep the mYm protocol.
            BlobValue::Cell(cells) => {
                self.out.push(b'C');
                self.shape(cells.shape());
                for cell in fortran_order(cells) {
                    self.item(cell, depth)?;
                }
                return Ok(());
            }
            BlobValue::Struct { fields, elements } => {
                self.out.push(b'S');
                self.shape(elements.shape());
                self.field_names(fields)?;
                for record in fortran_order(elements) {
                    if record.len() != fields.len() {
                        return Err(unsupported("a struct element without one value per field"));
                    }
                    for value in record {
                        self.item(value, depth)?;
                    }
                }
                return Ok(());
            }
            BlobValue::Array(array) => return self.array(array, depth),
            _ => {}
        }
        self.dj0 = true;
        match value {
            BlobValue::None => self.out.push(0xff),
            BlobValue::Bool(b) => self.out.extend_from_slice(&[0x0b, u8::from(*b)]),
            BlobValue::Int(i) => self.int(i)?,
            BlobValue::Complex(c) => {
                self.out.push(0x0c);
                self.out.extend_from_slice(&c.re.to_le_bytes());
                self.out.extend_from_slice(&c.im.to_le_bytes());
            }
            BlobValue::Float(f) => {
                self.out.push(0x0d);
                self.out.extend_from_slice(&f.to_le_bytes());
            }
            BlobValue::Recarray(fields) => self.recarray(fields, depth)?,
            BlobValue::Date(_) | BlobValue::Time(_) | BlobValue::DateTime(_) => {
                self.datetime(value)
            }
            BlobValue::Decimal(text) => self.bytes(b'd', text.as_bytes()),
            BlobValue::Uuid(bytes) => {
                self.out.push(b'u');
                self.out.extend_from_slice(bytes);
            }
            BlobValue::Dict(pairs) => {
                self.out.push(0x04);
                self.u64(pairs.len() as u64);
                for (key, value) in pairs {
                    self.item(key, depth)?;
                    self.item(value, depth)?;
                }
            }
            BlobValue::Str(s) => self.bytes(0x05, s.as_bytes()),
            BlobValue::Bytes(b) => self.bytes(0x06, b),
            BlobValue::List(items) => self.items(0x02, items.iter(), depth)?,
            BlobValue::Tuple(items) => self.items(0x01, items.iter(), depth)?,
            BlobValue::Set(items) => self.items(0x03, items.iter(), depth)?,
            BlobValue::Cell(_) | BlobValue::Struct { .. } | BlobValue::Array(_) => {
                unreachable!("handled above")
            }
        }
        Ok(())
    }

    /// `bit_length(|v|) // 8 + 1` bytes of little-endian two's complement, as blob.py's `pack_int`.
    fn int(&mut self, v: &BigInt) -> Result<()> {
        let n_bytes = v.bits() / 8 + 1;
        if n_bytes > 0xFFFF {
            return Err(unsupported("integers are limited to 65535 bytes"));
        }
        let mut bytes = v.to_signed_bytes_le();
        let fill = if v.sign() == num_bigint::Sign::Minus {
            0xff
        } else {
            0
        };
        bytes.resize(n_bytes as usize, fill);
        self.out.push(0x0a);
        self.out.extend_from_slice(&(n_bytes as u16).to_le_bytes());
        self.out.extend_from_slice(&bytes);
        Ok(())
    }

    fn datetime(&mut self, value: &BlobValue) {
        use chrono::{Datelike, Timelike};
        let (date, time) = match value {
            BlobValue::DateTime(dt) => (Some(dt.date()), Some(dt.time())),
            BlobValue::Date(d) => (Some(*d), None),
            BlobValue::Time(t) => (None, Some(*t)),
            _ => (None, None),
        };
        let date = date.map_or(-1, |d| {
            (d.year() * 100 + d.month() as i32) * 100 + d.day() as i32
        });
        let time = time.map_or(-1, |t| {
            let hms =
                (i64::from(t.hour()) * 100 + i64::from(t.minute())) * 100 + i64::from(t.second());
            hms * 1_000_000 + i64::from(t.nanosecond() / 1000)
        });
        self.out.push(b't');
        self.out.extend_from_slice(&date.to_le_bytes());
        self.out.extend_from_slice(&time.to_le_bytes());
    }

    fn field_names(&mut self, fields: &[String]) -> Result<()> {
        if fields.iter().any(|f| f.contains('\0')) {
            return Err(unsupported("a field name with a NUL character"));
        }
        self.out
            .extend_from_slice(&(fields.len() as u32).to_le_bytes());
        self.out.extend_from_slice(fields.join("\0").as_bytes());
        self.out.push(0);
        Ok(())
    }

    fn recarray(&mut self, fields: &[(String, BlobValue)], depth: usize) -> Result<()> {
        if fields.is_empty() {
            return Err(unsupported("a recarray without fields"));
        }
        let shape = recarray_shape(fields);
        self.out.push(b'F');
        let names: Vec<String> = fields.iter().map(|(n, _)| n.clone()).collect();
        self.field_names(&names)?;
        for (name, value) in fields {
            match value {
                BlobValue::Array(a) if a.shape() == shape.as_slice() => self.array(a, depth)?,
                BlobValue::Recarray(f) if recarray_shape(f) == shape => self.recarray(f, depth)?,
                _ => {
                    return Err(unsupported(format!(
                        "recarray field {name:?} is not an array of shape {shape:?}"
                    )))
                }
            }
        }
        Ok(())
    }

    fn array(&mut self, array: &Array, depth: usize) -> Result<()> {
        self.out.push(b'A');
        self.shape(array.shape());
        let (type_id, is_complex): (u32, u32) = match array {
            Array::Bool(_) => (3, 0),
            Array::Object(_) => (5, 0),
            Array::Float64(_) => (6, 0),
            Array::Complex128(_) => (6, 1),
            Array::Float32(_) => (7, 0),
            Array::Complex64(_) => (7, 1),
            Array::Int8(_) => (8, 0),
            Array::UInt8(_) => (9, 0),
            Array::Int16(_) => (10, 0),
            Array::UInt16(_) => (11, 0),
            Array::Int32(_) => (12, 0),
            Array::UInt32(_) => (13, 0),
            Array::Int64(_) => (14, 0),
            Array::UInt64(_) => (15, 0),
            Array::Datetime64(unit, _) => {
                self.dj0 = true;
                (unit.type_id(), 0)
            }
        };
        self.out.extend_from_slice(&type_id.to_le_bytes());
        self.out.extend_from_slice(&is_complex.to_le_bytes());
        if let Array::Object(elements) = array {
            for element in fortran_order(elements) {
                self.item(element, depth)?;
            }
            self.dj0 = true; // not supported by the original mYm
            return Ok(());
        }
        if array.shape().is_empty() {
            self.dj0 = true; // 0-d arrays (NumPy scalars) are not supported by mYm
        }
        let out = &mut self.out;
        match array {
            Array::Bool(a) => out.extend(fortran_order(a).map(|b| u8::from(*b))),
            Array::Int8(a) => le(out, a, |v| v.to_le_bytes()),
            Array::UInt8(a) => le(out, a, |v| v.to_le_bytes()),
            Array::Int16(a) => le(out, a, |v| v.to_le_bytes()),
            Array::UInt16(a) => le(out, a, |v| v.to_le_bytes()),
            Array::Int32(a) => le(out, a, |v| v.to_le_bytes()),
            Array::UInt32(a) => le(out, a, |v| v.to_le_bytes()),
            Array::Int64(a) | Array::Datetime64(_, a) => le(out, a, |v| v.to_le_bytes()),
            Array::UInt64(a) => le(out, a, |v| v.to_le_bytes()),
            Array::Float32(a) => le(out, a, |v| v.to_le_bytes()),
            Array::Float64(a) => le(out, a, |v| v.to_le_bytes()),
            Array::Complex64(a) => {
                le(out, a, |v: &Complex<f32>| v.re.to_le_bytes());
                le(out, a, |v: &Complex<f32>| v.im.to_le_bytes());
            }
            Array::Complex128(a) => {
                le(out, a, |v: &Complex<f64>| v.re.to_le_bytes());
                le(out, a, |v: &Complex<f64>| v.im.to_le_bytes());
            }
            Array::Object(_) => unreachable!("handled above"),
        }
        Ok(())
    }
}

/// The elements of `array` in Fortran (column-major) order.
fn fortran_order<T>(array: &ArrayD<T>) -> impl Iterator<Item = &T> {
    array.t().into_iter()
}

fn le<T, const N: usize>(out: &mut Vec<u8>, array: &ArrayD<T>, bytes: impl Fn(&T) -> [u8; N]) {
    for v in fortran_order(array) {
        out.extend_from_slice(&bytes(v));
    }
}
