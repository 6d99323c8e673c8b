//! The value a DataJoint blob holds, as Python's `datajoint.blob.unpack` would return it.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use ndarray::ArrayD;
use num_bigint::BigInt;
use num_complex::Complex;

/// One decoded blob value. Each variant names the Python value `blob.py` reads or writes.
#[derive(Debug, Clone, PartialEq)]
pub enum BlobValue {
    /// `None` (code `\xff`).
    None,
    /// Python `bool` (code `\x0b`).
    Bool(bool),
    /// Python `int`, unbounded (code `\x0a`; DataJoint packs at most 65535 bytes).
    Int(BigInt),
    /// Python `float` (code `\x0d`).
    Float(f64),
    /// Python `complex` (code `\x0c`).
    Complex(Complex<f64>),
    /// Python `str` (code `\x05`).
    Str(String),
    /// Python `bytes` (code `\x06`).
    Bytes(Vec<u8>),
    /// `decimal.Decimal`, kept as its `str()` text (code `d`).
    Decimal(String),
    /// `datetime.date` (code `t`, no time).
    Date(NaiveDate),
    /// `datetime.time` (code `t`, no date).
    Time(NaiveTime),
    /// `datetime.datetime`, naive (code `t`).
    DateTime(NaiveDateTime),
    /// `uuid.UUID` (code `u`), its 16 bytes.
    Uuid([u8; 16]),
    /// Python `tuple` (code `\x01`).
    Tuple(Vec<BlobValue>),
    /// Python `list` (code `\x02`).
    List(Vec<BlobValue>),
    /// Python `set` (code `\x03`), in the order the blob lists it.
    Set(Vec<BlobValue>),
    /// Python `dict` (code `\x04`), in insertion order.
    Dict(Vec<(BlobValue, BlobValue)>),
    /// A NumPy array without fields (code `A`); 0-d arrays are NumPy scalars.
    Array(Array),
    /// A MATLAB cell array, `datajoint.blob.MatCell` (code `C`).
    Cell(ArrayD<BlobValue>),
    /// A MATLAB struct array, `datajoint.blob.MatStruct` (code `S`): field names, and for each
    /// element one value per field.
    Struct {
        fields: Vec<String>,
        elements: ArrayD<Vec<BlobValue>>,
    },
    /// A NumPy array with fields (code `F`): each field is an [`BlobValue::Array`] or a nested
    /// [`BlobValue::Recarray`], all of the same shape.
    Recarray(Vec<(String, BlobValue)>),
}

/// A NumPy array with its dtype. Arrays are stored in logical (row-major) order; the blob's
/// Fortran order is handled by the codec.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    Bool(ArrayD<bool>),
    Int8(ArrayD<i8>),
    UInt8(ArrayD<u8>),
    Int16(ArrayD<i16>),
    UInt16(ArrayD<u16>),
    Int32(ArrayD<i32>),
    UInt32(ArrayD<u32>),
    Int64(ArrayD<i64>),
    UInt64(ArrayD<u64>),
    Float32(ArrayD<f32>),
    Float64(ArrayD<f64>),
    Complex64(ArrayD<Complex<f32>>),
    Complex128(ArrayD<Complex<f64>>),
    /// `datetime64[unit]`: ticks since the epoch; `i64::MIN` is `NaT`.
    Datetime64(DatetimeUnit, ArrayD<i64>),
    /// dtype `object` (blob type 5), also what MATLAB char arrays and NumPy `U` arrays become.
    Object(ArrayD<BlobValue>),
}

/// The units of `datetime64`, in blob type-id order (65536 + index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatetimeUnit {
    Y,
    M,
    W,
    D,
    H,
    Min,
    S,
    Ms,
    Us,
    Ns,
    Ps,
    Fs,
    As,
}

const UNITS: [(DatetimeUnit, &str); 13] = [
    (DatetimeUnit::Y, "Y"),
    (DatetimeUnit::M, "M"),
    (DatetimeUnit::W, "W"),
    (DatetimeUnit::D, "D"),
    (DatetimeUnit::H, "h"),
    (DatetimeUnit::Min, "m"),
    (DatetimeUnit::S, "s"),
    (DatetimeUnit::Ms, "ms"),
    (DatetimeUnit::Us, "us"),
    (DatetimeUnit::Ns, "ns"),
    (DatetimeUnit::Ps, "ps"),
    (DatetimeUnit::Fs, "fs"),
    (DatetimeUnit::As, "as"),
];

impl DatetimeUnit {
    /// The blob type id: 65536 for years up to 65548 for attoseconds.
    pub fn type_id(self) -> u32 {
        65_536 + UNITS.iter().position(|(u, _)| *u == self).unwrap_or(0) as u32
    }

    pub fn from_type_id(id: u32) -> Option<Self> {
        let index = id.checked_sub(65_536)? as usize;
        UNITS.get(index).map(|(u, _)| *u)
    }

    /// NumPy's unit code, as in `datetime64[ms]`.
    pub fn code(self) -> &'static str {
        UNITS
            .iter()
            .find(|(u, _)| *u == self)
            .map_or("", |(_, c)| c)
    }
}

impl Array {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Array::Bool(a) => a.shape(),
            Array::Int8(a) => a.shape(),
            Array::UInt8(a) => a.shape(),
            Array::Int16(a) => a.shape(),
            Array::UInt16(a) => a.shape(),
            Array::Int32(a) => a.shape(),
            Array::UInt32(a) => a.shape(),
            Array::Int64(a) => a.shape(),
            Array::UInt64(a) => a.shape(),
            Array::Float32(a) => a.shape(),
            Array::Float64(a) => a.shape(),
            Array::Complex64(a) => a.shape(),
            Array::Complex128(a) => a.shape(),
            Array::Datetime64(_, a) => a.shape(),
            Array::Object(a) => a.shape(),
        }
    }

    /// NumPy's name for the dtype, as `str(arr.dtype)` prints it.
    pub fn dtype(&self) -> String {
        match self {
            Array::Bool(_) => "bool".into(),
            Array::Int8(_) => "int8".into(),
            Array::UInt8(_) => "uint8".into(),
            Array::Int16(_) => "int16".into(),
            Array::UInt16(_) => "uint16".into(),
            Array::Int32(_) => "int32".into(),
            Array::UInt32(_) => "uint32".into(),
            Array::Int64(_) => "int64".into(),
            Array::UInt64(_) => "uint64".into(),
            Array::Float32(_) => "float32".into(),
            Array::Float64(_) => "float64".into(),
            Array::Complex64(_) => "complex64".into(),
            Array::Complex128(_) => "complex128".into(),
            Array::Datetime64(unit, _) => format!("datetime64[{}]", unit.code()),
            Array::Object(_) => "object".into(),
        }
    }
}

impl BlobValue {
    /// Python's type name for the value (`dtype` for arrays), for messages and tests.
    pub fn type_name(&self) -> String {
        match self {
            BlobValue::None => "NoneType".into(),
            BlobValue::Bool(_) => "bool".into(),
            BlobValue::Int(_) => "int".into(),
            BlobValue::Float(_) => "float".into(),
            BlobValue::Complex(_) => "complex".into(),
            BlobValue::Str(_) => "str".into(),
            BlobValue::Bytes(_) => "bytes".into(),
            BlobValue::Decimal(_) => "Decimal".into(),
            BlobValue::Date(_) => "date".into(),
            BlobValue::Time(_) => "time".into(),
            BlobValue::DateTime(_) => "datetime".into(),
            BlobValue::Uuid(_) => "UUID".into(),
            BlobValue::Tuple(_) => "tuple".into(),
            BlobValue::List(_) => "list".into(),
            BlobValue::Set(_) => "set".into(),
            BlobValue::Dict(_) => "dict".into(),
            BlobValue::Array(a) => format!("ndarray[{}]", a.dtype()),
            BlobValue::Cell(_) => "MatCell".into(),
            BlobValue::Struct { .. } => "MatStruct".into(),
            BlobValue::Recarray(_) => "recarray".into(),
        }
    }
}
