//! What `oas_npy()`, `oas_object()`, `oas_object_folder()`, `oas_blob()`, `oas_attach()` and
//! `oas_encode()` return: a *pending* value, kept in the session until the row trigger stores its
//! bytes and puts the real reference in the row. `{"oas_pending": id, "kind":
//! "npy"|"file"|"folder"|"blob"|"attach", ...}` with the value's metadata, and `"codec"` when a
//! custom codec made it (the value then goes only into that codec's columns).

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// The session's id of the bytes.
    pub oas_pending: String,
    #[serde(flatten)]
    pub value: PendingValue,
    /// The custom codec that encoded the value, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
}

/// The metadata a pending value shows, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PendingValue {
    Npy {
        dtype: String,
        shape: Vec<u64>,
    },
    File {
        size: u64,
        ext: Option<String>,
    },
    Folder {
        size: u64,
        item_count: u64,
    },
    /// DataJoint blob bytes for a `<blob@>` column.
    Blob {
        size: u64,
    },
    /// `filename\0contents` for an `<attach@>` column.
    Attach {
        filename: String,
        size: u64,
    },
    /// Bytes for a `<hash@>` column.
    Hash {
        size: u64,
    },
}

impl PendingValue {
    /// The built-in codec whose columns take this value (a custom codec's column when that codec
    /// chains to it).
    pub fn codec(&self) -> &'static str {
        match self {
            PendingValue::Npy { .. } => "npy",
            PendingValue::File { .. } | PendingValue::Folder { .. } => "object",
            PendingValue::Blob { .. } => "blob",
            PendingValue::Attach { .. } => "attach",
            PendingValue::Hash { .. } => "hash",
        }
    }
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
            codec: None,
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
        let blob = Pending {
            codec: Some("graph".into()),
            ..p(PendingValue::Blob { size: 30 })
        };
        assert_eq!(
            blob.to_json().to_string(),
            r#"{"codec":"graph","kind":"blob","oas_pending":"v-0-AAAA","size":30}"#
        );
        let attach = p(PendingValue::Attach {
            filename: "a.txt".into(),
            size: 3,
        });
        assert_eq!(
            attach.to_json().to_string(),
            r#"{"filename":"a.txt","kind":"attach","oas_pending":"v-0-AAAA","size":3}"#
        );
        assert_eq!(blob.value.codec(), "blob");
        assert_eq!(attach.value.codec(), "attach");
        assert_eq!(folder.value.codec(), "object");
        assert_eq!(Pending::id_of(&json!({"path": "x"})), None);
        assert_eq!(Pending::id_of(&json!({"oas_pending": 1})), None);
    }
}
