//! `<object@>` references: `{"path","store","size","ext","is_dir","item_count","timestamp"}`,
//! for one file or a folder (whose files are listed in `{path}.manifest.json`). A file written
//! into a store marked for compression ([`crate::compress`]) adds `"compression": "zstd"` and its
//! path ends with `.zst`; `size` and `ext` stay the uncompressed file's.

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
    /// `Some("zstd")` for a file kept zstd-compressed ([`ObjectValueRef::compressed`]); left out
    /// of the JSON when `None`, so uncompressed references are DataJoint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
}

/// What an `<object@>` value is: one file (with its extension, if any) or a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    File { ext: Option<String> },
    Folder { item_count: u64 },
}

impl ObjectValueRef {
    /// A file of `size` bytes, or a folder of files of `size` bytes in all, at `path` of `store`.
    pub fn new(path: String, store: &str, size: u64, kind: ObjectKind, timestamp: String) -> Self {
        let (ext, is_dir, item_count) = match kind {
            ObjectKind::File { ext } => (ext, false, None),
            ObjectKind::Folder { item_count } => (None, true, Some(item_count)),
        };
        ObjectValueRef {
            path,
            store: Some(store.to_string()),
            size,
            ext,
            is_dir,
            item_count,
            timestamp,
            compression: None,
        }
    }

    /// The same file kept zstd-compressed: the path gets [`crate::compress::SUFFIX`] and the
    /// reference the marker, together, so they always agree. Folders are never compressed (their
    /// files are read and listed one by one, by their own names): a folder is returned unchanged.
    pub fn compressed(mut self) -> Self {
        if !self.is_dir && self.compression.is_none() {
            self.path.push_str(crate::compress::SUFFIX);
            self.compression = Some(crate::compress::MARKER.into());
        }
        self
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
        let txt = ObjectKind::File {
            ext: Some(".txt".into()),
        };
        let f = ObjectValueRef::new(
            "_schema/lab/t/id=1/f_AbCd1234.txt".into(),
            "main",
            5,
            txt,
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
        let no_ext = ObjectValueRef::new(
            "p".into(),
            "main",
            0,
            ObjectKind::File { ext: None },
            TS.into(),
        );
        assert_eq!(no_ext.to_json()["ext"], Value::Null);
        let back: ObjectValueRef = serde_json::from_value(f.to_json()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn a_compressed_file_keeps_the_shape_and_adds_the_marker() {
        let txt = ObjectKind::File {
            ext: Some(".txt".into()),
        };
        let plain = ObjectValueRef::new(
            "_schema/lab/t/id=1/f_AbCd1234.txt".into(),
            "main",
            5,
            txt,
            TS.into(),
        );
        let z = plain.clone().compressed();
        assert_eq!(
            serde_json::to_string(&z).unwrap(),
            r#"{"path":"_schema/lab/t/id=1/f_AbCd1234.txt.zst","store":"main","size":5,"ext":".txt","is_dir":false,"item_count":null,"timestamp":"2026-11-29T01:02:03.456789+00:00","compression":"zstd"}"#
        );
        // Idempotent; the general reading sees the marker.
        assert_eq!(z.clone().compressed(), z);
        let general = crate::codec::ObjectRef::from_json(&z.to_json()).unwrap();
        assert!(general.compressed && general.path.ends_with(".txt.zst"));
        let back: ObjectValueRef = serde_json::from_value(z.to_json()).unwrap();
        assert_eq!(back, z);
        // Folders stay as they are.
        let d = ObjectValueRef::new(
            "d".into(),
            "main",
            3,
            ObjectKind::Folder { item_count: 2 },
            TS.into(),
        );
        assert_eq!(d.clone().compressed(), d);
        assert!(d.to_json().get("compression").is_none());
    }

    #[test]
    fn folder_text_is_pinned() {
        let d = ObjectValueRef::new(
            "_schema/lab/t/id=1/d_AbCd1234".into(),
            "main",
            3,
            ObjectKind::Folder { item_count: 2 },
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
