//! [`BlobValue`] ↔ JSON, for SQL functions that show a blob as `jsonb` or pack `jsonb` as a blob.
//! The mapping is documented in the [module doc](super).

use std::fmt;

use base64::Engine;
use ndarray::{ArrayD, ArrayViewD};
use num_bigint::BigInt;
use num_traits::ToPrimitive;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Value};

use super::value::{Array, BlobValue};
use crate::OasError;

/// The JSON form of a decoded blob (lossy: see the module doc).
pub fn to_json(value: &BlobValue) -> Value {
    match value {
        BlobValue::None => Value::Null,
        BlobValue::Bool(b) => Value::Bool(*b),
        BlobValue::Int(i) => int(i),
        BlobValue::Float(f) => float(*f),
        BlobValue::Complex(c) => complex(c.re, c.im),
        BlobValue::Str(s) | BlobValue::Decimal(s) => Value::String(s.clone()),
        BlobValue::Bytes(b) => {
            json!({ "bytes": base64::engine::general_purpose::STANDARD.encode(b) })
        }
        BlobValue::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
        BlobValue::Time(t) => Value::String(iso_time(t)),
        BlobValue::DateTime(dt) => Value::String(format!(
            "{}T{}",
            dt.date().format("%Y-%m-%d"),
            iso_time(&dt.time())
        )),
        BlobValue::Uuid(b) => Value::String(uuid::Uuid::from_bytes(*b).hyphenated().to_string()),
        BlobValue::Tuple(items) | BlobValue::List(items) | BlobValue::Set(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
        BlobValue::Dict(pairs) => {
            Value::Object(pairs.iter().map(|(k, v)| (key(k), to_json(v))).collect())
        }
        BlobValue::Array(a) => array(a),
        BlobValue::Cell(cells) => nested(cells, &to_json),
        BlobValue::Struct { fields, elements } => nested(elements, &|record: &Vec<BlobValue>| {
            Value::Object(
                fields
                    .iter()
                    .cloned()
                    .zip(record.iter().map(to_json))
                    .collect(),
            )
        }),
        BlobValue::Recarray(fields) => {
            let ndim = super::recarray_shape(fields).len();
            let columns = fields
                .iter()
                .map(|(name, v)| (name.clone(), to_json(v)))
                .collect();
            records(columns, ndim)
        }
    }
}

/// Python's `datetime.time.isoformat()`: microseconds only when non-zero.
fn iso_time(t: &chrono::NaiveTime) -> String {
    use chrono::Timelike;
    if t.nanosecond() == 0 {
        t.format("%H:%M:%S").to_string()
    } else {
        t.format("%H:%M:%S%.6f").to_string()
    }
}

fn int(i: &BigInt) -> Value {
    if let Some(v) = i.to_i64() {
        Value::from(v)
    } else if let Some(v) = i.to_u64() {
        Value::from(v)
    } else {
        Value::String(i.to_string())
    }
}

fn float(f: f64) -> Value {
    match serde_json::Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

fn complex(re: f64, im: f64) -> Value {
    json!({ "real": float(re), "imag": float(im) })
}

/// A dict key as JSON text would hold it: strings as they are, anything else as its JSON text.
fn key(k: &BlobValue) -> String {
    match to_json(k) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Nested lists in row-major order, as NumPy's `tolist()`; a 0-d array is its element.
fn nested<T>(array: &ArrayD<T>, element: &dyn Fn(&T) -> Value) -> Value {
    fn go<T>(view: ArrayViewD<T>, element: &dyn Fn(&T) -> Value) -> Value {
        if view.ndim() == 0 {
            return element(view.first().expect("0-d arrays have one element"));
        }
        Value::Array(view.outer_iter().map(|sub| go(sub, element)).collect())
    }
    go(array.view(), element)
}

fn array(a: &Array) -> Value {
    match a {
        Array::Bool(a) => nested(a, &|v| Value::Bool(*v)),
        Array::Int8(a) => nested(a, &|v| Value::from(*v)),
        Array::UInt8(a) => nested(a, &|v| Value::from(*v)),
        Array::Int16(a) => nested(a, &|v| Value::from(*v)),
        Array::UInt16(a) => nested(a, &|v| Value::from(*v)),
        Array::Int32(a) => nested(a, &|v| Value::from(*v)),
        Array::UInt32(a) => nested(a, &|v| Value::from(*v)),
        Array::Int64(a) => nested(a, &|v| Value::from(*v)),
        Array::UInt64(a) => nested(a, &|v| Value::from(*v)),
        Array::Float32(a) => nested(a, &|v| float(f64::from(*v))),
        Array::Float64(a) => nested(a, &|v| float(*v)),
        Array::Complex64(a) => nested(a, &|v| complex(v.re.into(), v.im.into())),
        Array::Complex128(a) => nested(a, &|v| complex(v.re, v.im)),
        Array::Datetime64(_, a) => nested(a, &|v| match *v {
            i64::MIN => Value::String("NaT".into()),
            ticks => Value::from(ticks),
        }),
        Array::Object(a) => nested(a, &to_json),
    }
}

/// Zips per-field nested lists (all `ndim` deep) into nested lists of `{field: value}` objects.
fn records(columns: Vec<(String, Value)>, ndim: usize) -> Value {
    if ndim == 0 {
        return Value::Object(columns.into_iter().collect());
    }
    let len = match columns.first() {
        Some((_, Value::Array(items))) => items.len(),
        _ => 0,
    };
    let rows = (0..len)
        .map(|i| {
            let row = columns
                .iter()
                .map(|(name, v)| (name.clone(), v.get(i).cloned().unwrap_or(Value::Null)))
                .collect();
            records(row, ndim - 1)
        })
        .collect();
    Value::Array(rows)
}

/// The value Python's `json.loads(text)` gives, for packing: objects become dicts in document
/// order (a repeated key keeps its first place and its last value), arrays become lists, integers
/// stay integers, other numbers are floats.
pub fn from_json_str(text: &str) -> Result<BlobValue, OasError> {
    let JsonValue(value) = serde_json::from_str(text)
        .map_err(|e| OasError::invalid_argument(format!("invalid JSON: {e}")))?;
    Ok(value)
}

/// [`from_json_str`] for a parsed value. Object keys come in `serde_json::Map` order (sorted,
/// since serde_json's `preserve_order` is off): use [`from_json_str`] when order matters.
pub fn from_json(value: &Value) -> Result<BlobValue, OasError> {
    let JsonValue(value) = JsonValue::deserialize(value)
        .map_err(|e| OasError::invalid_argument(format!("invalid JSON: {e}")))?;
    Ok(value)
}

struct JsonValue(BlobValue);

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor).map(JsonValue)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = BlobValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<BlobValue, E> {
        Ok(BlobValue::None)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<BlobValue, E> {
        Ok(BlobValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<BlobValue, E> {
        Ok(BlobValue::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<BlobValue, E> {
        Ok(BlobValue::Int(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<BlobValue, E> {
        Ok(BlobValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<BlobValue, E> {
        Ok(BlobValue::Str(v.to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BlobValue, A::Error> {
        let mut items = Vec::new();
        while let Some(JsonValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(BlobValue::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BlobValue, A::Error> {
        let mut pairs: Vec<(BlobValue, BlobValue)> = Vec::new();
        while let Some((k, JsonValue(v))) = map.next_entry::<String, JsonValue>()? {
            let k = BlobValue::Str(k);
            match pairs.iter_mut().find(|(existing, _)| *existing == k) {
                Some(pair) => pair.1 = v,
                None => pairs.push((k, v)),
            }
        }
        Ok(BlobValue::Dict(pairs))
    }
}
