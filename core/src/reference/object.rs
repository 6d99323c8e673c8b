//! `<object@>` references: `{"path","store","size","ext","is_dir","item_count","timestamp"}`,
//! for one file or a folder (whose files are listed in `{path}.manifest.json`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectValueRef {
    pub path: String,
    pub store: Option<String>,
    /// The file's size, or the total size of a folder's files.
    pub size: u64,
    /// The file's extension as pg_oas stores it (`.tif`); `null` for none and for folders.
    pub ext: Option<String>,
    pub is_dir: bool,
    /// Files in a folder; `null` for a file.
    pub item_count: Option<u64>,
    /// ISO 8601 UTC with microseconds and `+00:00`.
    pub timestamp: String,
}

impl ObjectValueRef {
    /// One file of `size` bytes.
    pub fn file(
        path: String,
        store: &str,
        size: u64,
        ext: Option<String>,
        timestamp: String,
    ) -> Self {
        ObjectValueRef {
            path,
            store: Some(store.to_string()),
            size,
            ext,
            is_dir: false,
            item_count: None,
            timestamp,
        }
    }

    /// A folder of `item_count` files of `size` bytes in all.
    pub fn folder(
        path: String,
        store: &str,
        size: u64,
        item_count: u64,
        timestamp: String,
    ) -> Self {
        ObjectValueRef {
            path,
            store: Some(store.to_string()),
            size,
            ext: None,
            is_dir: true,
            item_count: Some(item_count),
            timestamp,
        }
    }

    pub fn to_json(&self) -> Value {
        super::to_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TS: &str = "2026-11-29T01:02:03.456789+00:00";

    #[test]
    fn file_text_is_pinned() {
        let f = ObjectValueRef::file(
            "_schema/lab/t/id=1/f_AbCd1234.txt".into(),
            "main",
            5,
            Some(".txt".into()),
            TS.into(),
        );
        // DataJoint's order (ObjectCodec.encode).
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"path":"_schema/lab/t/id=1/f_AbCd1234.txt","store":"main","size":5,"ext":".txt","is_dir":false,"item_count":null,"timestamp":"2026-11-29T01:02:03.456789+00:00"}"#
        );
        // What pg_oas hands PostgreSQL, unchanged from the json! literal it replaces.
        assert_eq!(
            f.to_json(),
            json!({"path": "_schema/lab/t/id=1/f_AbCd1234.txt", "store": "main", "size": 5, "ext": ".txt",
                   "is_dir": false, "item_count": null, "timestamp": TS})
        );
        assert_eq!(
            f.to_json().to_string(),
            r#"{"ext":".txt","is_dir":false,"item_count":null,"path":"_schema/lab/t/id=1/f_AbCd1234.txt","size":5,"store":"main","timestamp":"2026-11-29T01:02:03.456789+00:00"}"#
        );
        let no_ext = ObjectValueRef::file("p".into(), "main", 0, None, TS.into());
        assert_eq!(no_ext.to_json()["ext"], Value::Null);
        let back: ObjectValueRef = serde_json::from_value(f.to_json()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn folder_text_is_pinned() {
        let d = ObjectValueRef::folder(
            "_schema/lab/t/id=1/d_AbCd1234".into(),
            "main",
            3,
            2,
            TS.into(),
        );
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"path":"_schema/lab/t/id=1/d_AbCd1234","store":"main","size":3,"ext":null,"is_dir":true,"item_count":2,"timestamp":"2026-11-29T01:02:03.456789+00:00"}"#
        );
        assert_eq!(
            d.to_json(),
            json!({"path": "_schema/lab/t/id=1/d_AbCd1234", "store": "main", "size": 3, "ext": null,
                   "is_dir": true, "item_count": 2, "timestamp": TS})
        );
    }
}
