//! `<npy@>` references: `{"path","store","dtype","shape"}`, with no size, hash or timestamp.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::OasError;
use crate::npy::{numpy_dtype_name, Header};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NpyRef {
    pub path: String,
    pub store: Option<String>,
    /// `str(arr.dtype)`: `float32`, `>i8`, ...
    pub dtype: String,
    pub shape: Vec<u64>,
}

impl NpyRef {
    /// The reference of the `.npy` file with this header stored at `path` of `store`.
    pub fn new(path: String, store: &str, header: &Header) -> Self {
        NpyRef {
            path,
            store: Some(store.to_string()),
            dtype: numpy_dtype_name(&header.dtype),
            shape: header.shape.clone(),
        }
    }

    pub fn to_json(&self) -> Value {
        super::to_json(self)
    }

    /// The shape a reference records: `None` when it has no `"shape"`, an error when that is not
    /// a list of non-negative integers.
    pub fn shape_of(reference: &Value) -> Result<Option<Vec<i64>>, OasError> {
        let Some(shape) = reference.get("shape") else {
            return Ok(None);
        };
        shape
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_i64().filter(|&d| d >= 0))
                    .collect::<Option<Vec<_>>>()
            })
            .map(Some)
            .ok_or_else(|| {
                OasError::invalid_argument(format!("invalid npy reference: \"shape\" is {shape}"))
            })
    }

    /// The dtype a reference records, if it records one as a string.
    pub fn dtype_of(reference: &Value) -> Option<&str> {
        reference.get("dtype").and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::{parse_header, write_header};
    use serde_json::json;

    #[test]
    fn serialised_text_is_pinned() {
        let header = parse_header(&write_header("<i2", false, &[2, 3])).unwrap();
        let r = NpyRef::new("_schema/lab/t/id=1/x_AbCd1234.npy".into(), "main", &header);
        // DataJoint's order (NpyCodec.encode: path, store, dtype, shape).
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"path":"_schema/lab/t/id=1/x_AbCd1234.npy","store":"main","dtype":"int16","shape":[2,3]}"#
        );
        // What pg_oas hands PostgreSQL (sorted keys), unchanged from the json! literal it replaces.
        assert_eq!(
            r.to_json().to_string(),
            r#"{"dtype":"int16","path":"_schema/lab/t/id=1/x_AbCd1234.npy","shape":[2,3],"store":"main"}"#
        );
        assert_eq!(
            r.to_json(),
            json!({"path": "_schema/lab/t/id=1/x_AbCd1234.npy", "store": "main", "dtype": "int16", "shape": [2, 3]})
        );
        let big = parse_header(&write_header(">i8", false, &[])).unwrap();
        assert_eq!(
            NpyRef::new("p.npy".into(), "s", &big).to_json().to_string(),
            r#"{"dtype":">i8","path":"p.npy","shape":[],"store":"s"}"#
        );
        let back: NpyRef = serde_json::from_value(r.to_json()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn shape_and_dtype_from_any_reference() {
        let r = json!({"path": "a.npy", "store": "main", "dtype": "float32", "shape": [3, 0]});
        assert_eq!(NpyRef::shape_of(&r).unwrap(), Some(vec![3, 0]));
        assert_eq!(NpyRef::dtype_of(&r), Some("float32"));
        assert_eq!(NpyRef::shape_of(&json!({"path": "a"})).unwrap(), None);
        assert_eq!(NpyRef::dtype_of(&json!({"dtype": 3})), None);
        for bad in [
            json!({"shape": [-1]}),
            json!({"shape": "3"}),
            json!({"shape": [1.5]}),
        ] {
            assert!(NpyRef::shape_of(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("invalid npy reference: \"shape\" is "));
        }
    }
}
