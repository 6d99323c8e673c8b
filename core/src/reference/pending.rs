//! What `oas_npy()`, `oas_object()` and `oas_object_folder()` return: a *pending* value, kept in
//! the session until the row trigger stores its bytes and puts the real reference in the row.
//! `{"oas_pending": id, "kind": "npy"|"file"|"folder", ...}` with the value's metadata.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// The session's id of the bytes.
    pub oas_pending: String,
    #[serde(flatten)]
    pub value: PendingValue,
}

/// The metadata a pending value shows, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PendingValue {
    Npy { dtype: String, shape: Vec<u64> },
    File { size: u64, ext: Option<String> },
    Folder { size: u64, item_count: u64 },
}

impl Pending {
    pub fn to_json(&self) -> Value {
        super::to_json(self)
    }

    /// The id of a pending value, if `v` looks like one (`{"oas_pending": ...}`).
    pub fn id_of(v: &Value) -> Option<&str> {
        v.get("oas_pending").and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn texts_are_pinned() {
        let p = |value| Pending {
            oas_pending: "v-0-AAAA".into(),
            value,
        };
        let npy = p(PendingValue::Npy {
            dtype: "int16".into(),
            shape: vec![2, 3],
        });
        assert_eq!(
            npy.to_json().to_string(),
            r#"{"dtype":"int16","kind":"npy","oas_pending":"v-0-AAAA","shape":[2,3]}"#
        );
        let file = p(PendingValue::File {
            size: 5,
            ext: Some(".txt".into()),
        });
        assert_eq!(
            file.to_json(),
            json!({"oas_pending": "v-0-AAAA", "kind": "file", "size": 5, "ext": ".txt"})
        );
        let none = p(PendingValue::File { size: 0, ext: None });
        assert_eq!(
            none.to_json().to_string(),
            r#"{"ext":null,"kind":"file","oas_pending":"v-0-AAAA","size":0}"#
        );
        let folder = p(PendingValue::Folder {
            size: 3,
            item_count: 2,
        });
        assert_eq!(
            folder.to_json().to_string(),
            r#"{"item_count":2,"kind":"folder","oas_pending":"v-0-AAAA","size":3}"#
        );
        assert_eq!(Pending::id_of(&folder.to_json()), Some("v-0-AAAA"));
        assert_eq!(Pending::id_of(&json!({"path": "x"})), None);
        assert_eq!(Pending::id_of(&json!({"oas_pending": 1})), None);
    }
}
