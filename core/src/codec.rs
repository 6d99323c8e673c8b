//! DataJoint codec markers in column comments, and the object references codec columns hold.
//!
//! DataJoint records a column's type in its comment as `:{type}:{user comment}` (heading.py reads
//! it with `:(?P<type>[^:]+):(?P<comment>.*)`). A column is an object-store column when that type
//! is a codec with a store: `<blob@main>`, `<npy@>`, `<object@raw>`, `<filepath@raw>`, custom
//! `<graph@main>` too. Every such column holds JSON with at least `path` (and usually `store`),
//! whatever the codec; that is what reference checks and, later, the collector rely on.

use serde_json::Value;

use crate::error::OasError;
use crate::hash::is_content_hash;
use crate::path::validate_relative_path;
use crate::reference::store_name;

/// How objects of a codec are addressed in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `<hash@>`, `<blob@>`, `<attach@>`: content hash paths, shared between rows.
    Hash,
    /// `<npy@>`, `<object@>`: key-based paths, one object (or folder) per row and write.
    Schema,
    /// `<filepath@>`: files the user manages; never deleted by pg_oas.
    Filepath,
    /// A custom codec: its JSON names a path, its layout is its own.
    Custom,
}

impl Addressing {
    pub fn as_str(self) -> &'static str {
        match self {
            Addressing::Hash => "hash",
            Addressing::Schema => "schema",
            Addressing::Filepath => "filepath",
            Addressing::Custom => "custom",
        }
    }
}

/// A parsed codec marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnCodec {
    pub codec: String,
    /// The store named after `@`; `None` for a bare `@` (the default store).
    pub store: Option<String>,
    /// The user's part of the comment.
    pub comment: String,
}

impl ColumnCodec {
    pub fn addressing(&self) -> Addressing {
        match self.codec.as_str() {
            "blob" | "attach" | "hash" => Addressing::Hash,
            "npy" | "object" => Addressing::Schema,
            "filepath" => Addressing::Filepath,
            _ => Addressing::Custom,
        }
    }

    /// The comment DataJoint writes for this column.
    pub fn to_comment(&self) -> String {
        format!(
            ":<{}@{}>:{}",
            self.codec,
            self.store.as_deref().unwrap_or(""),
            self.comment
        )
    }
}

/// Parse a column comment. `Some` only for a codec with a store (`<name@...>`); plain types
/// (`:int32:`), in-table codecs (`<blob>`) and comments without a marker are not object columns.
pub fn parse_marker(comment: &str) -> Option<ColumnCodec> {
    let rest = comment.strip_prefix(':')?;
    let end = rest.find(':')?;
    let (ty, user) = (&rest[..end], &rest[end + 1..]);
    let inner = ty.strip_prefix('<')?.strip_suffix('>')?;
    let (codec, store) = inner.split_once('@')?;
    let valid_name = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    if !valid_name(codec) || store.contains(['<', '>', ':', '@']) {
        return None;
    }
    Some(ColumnCodec {
        codec: codec.to_string(),
        store: (!store.is_empty()).then(|| store.to_string()),
        comment: user.to_string(),
    })
}

/// A codec name as the user gives it to declare a column: `blob@main`, `<npy@>`, `hash@`.
pub fn parse_codec_spec(spec: &str) -> Result<ColumnCodec, OasError> {
    let s = spec.trim();
    let s = s
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s);
    parse_marker(&format!(":<{s}>:")).ok_or_else(|| {
        OasError::invalid_argument_hint(
            format!("\"{spec}\" is not an object-store codec"),
            "give a codec with a store, e.g. 'blob@main', 'hash@raw', 'npy@' (default store), 'object@raw', 'filepath@raw'",
        )
    })
}

/// What any object reference names, whatever its codec: read leniently, field by field, since a
/// custom codec's JSON need only have `path` (the shapes pg_oas writes are the types of
/// [`crate::reference`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub path: String,
    /// `None` (or DataJoint's `""`) is the default store.
    pub store: Option<String>,
    pub size: Option<u64>,
    /// The content hash, for hash-addressed references.
    pub hash: Option<String>,
    pub is_dir: bool,
    /// Stored zstd-compressed (`"compression": "zstd"`, hash-addressed objects of a compressed
    /// store, [`crate::compress`]): `size` and `hash` are the uncompressed bytes'.
    pub compressed: bool,
}

impl ObjectRef {
    pub fn from_json(v: &Value) -> Result<Self, OasError> {
        let bad = |m: &str| OasError::invalid_argument(format!("invalid object reference: {m}"));
        let obj = v.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let path = obj
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no \"path\""))?;
        validate_relative_path(path)?;
        let store = match obj.get("store") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => store_name(Some(s)).map(str::to_string),
            Some(_) => return Err(bad("\"store\" is not a string")),
        };
        let size = match obj.get("size") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| bad("\"size\" is not a non-negative integer"))?,
            ),
        };
        let hash = match obj.get("hash") {
            None | Some(Value::Null) => None,
            Some(Value::String(h)) if is_content_hash(h) => Some(h.clone()),
            Some(_) => return Err(bad("\"hash\" is not a content hash")),
        };
        let is_dir = obj.get("is_dir").and_then(Value::as_bool).unwrap_or(false);
        let compressed = crate::compress::marker_of(obj.get(crate::compress::KEY))?;
        // The marker and the path agree: a compressed object is one file named `*.zst`.
        if compressed && (is_dir || !path.ends_with(crate::compress::SUFFIX)) {
            return Err(bad(&format!(
                "\"{}\" is marked compressed, but only a file whose path ends with \"{}\" can be",
                crate::compress::KEY,
                crate::compress::SUFFIX
            )));
        }
        Ok(ObjectRef {
            path: path.to_string(),
            store,
            size,
            hash,
            is_dir,
            compressed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn markers_datajoint_writes() {
        let m = parse_marker(":<blob@main>:raw trace").unwrap();
        assert_eq!(
            (m.codec.as_str(), m.store.as_deref(), m.comment.as_str()),
            ("blob", Some("main"), "raw trace")
        );
        assert_eq!(m.addressing(), Addressing::Hash);
        let m = parse_marker(":<npy@>:").unwrap();
        assert_eq!(
            (m.store.clone(), m.addressing()),
            (None, Addressing::Schema)
        );
        assert_eq!(
            parse_marker(":<object@raw>:a: b: c").unwrap().comment,
            "a: b: c"
        );
        assert_eq!(
            parse_marker(":<filepath@raw>:").unwrap().addressing(),
            Addressing::Filepath
        );
        assert_eq!(
            parse_marker(":<attach@s3-lab>:x").unwrap().store.as_deref(),
            Some("s3-lab")
        );
        assert_eq!(
            parse_marker(":<graph@main>:custom").unwrap().addressing(),
            Addressing::Custom
        );
        assert_eq!(
            parse_marker(":<blob@main>:raw").unwrap().to_comment(),
            ":<blob@main>:raw"
        );
        assert_eq!(parse_marker(":<npy@>:").unwrap().to_comment(), ":<npy@>:");
    }

    #[test]
    fn not_object_columns() {
        for c in [
            ":int32:count",
            ":<blob>:in table",
            ":<attach>:",
            "plain comment",
            "",
            ":uuid:",
            "<blob@main>",
            ":<blob@main",
            ":<@main>:",
            ":<1x@main>:",
            ":<a b@main>:",
        ] {
            assert_eq!(parse_marker(c), None, "{c:?}");
        }
    }

    #[test]
    fn codec_specs_for_declaring() {
        assert_eq!(
            parse_codec_spec("blob@main").unwrap().to_comment(),
            ":<blob@main>:"
        );
        assert_eq!(parse_codec_spec("<npy@>").unwrap().store, None);
        assert!(parse_codec_spec("blob").is_err());
        assert!(parse_codec_spec("int32").is_err());
    }

    #[test]
    fn references_of_every_builtin_shape() {
        let h = ObjectRef::from_json(&json!({"hash": "lvauakv4jmvhnolrtwiraf6fsi", "path": "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi", "schema": "lab", "store": "main", "size": 5})).unwrap();
        assert_eq!(
            (h.size, h.hash.is_some(), h.store.as_deref()),
            (Some(5), true, Some("main"))
        );
        let npy = ObjectRef::from_json(&json!({"path": "_schema/lab/t/id=1/x_AbCd1234.npy", "store": "main", "dtype": "float32", "shape": [3]})).unwrap();
        assert_eq!((npy.size, npy.hash), (None, None));
        let dir = ObjectRef::from_json(&json!({"path": "_schema/lab/t/id=1/d_AbCd1234", "store": "main", "size": null, "ext": null, "is_dir": true, "item_count": 3, "timestamp": "2026-01-01T00:00:00"})).unwrap();
        assert!(dir.is_dir);
        let dflt = ObjectRef::from_json(&json!({"path": "raw/a.tif", "store": "", "size": 10, "is_dir": false, "timestamp": "x"})).unwrap();
        assert_eq!(dflt.store, None);
        assert!(ObjectRef::from_json(&json!({"path": "../etc/passwd", "store": "main"})).is_err());
        assert!(ObjectRef::from_json(&json!({"store": "main"})).is_err());
        assert!(ObjectRef::from_json(&json!({"path": "a", "size": -1})).is_err());
        assert!(ObjectRef::from_json(&json!("x")).is_err());
        // A compressed reference names one `.zst` file: the marker and the path agree.
        let z = json!({"path": "_schema/lab/t/id=1/f_AbCd1234.bin.zst", "store": "main", "size": 5, "compression": "zstd"});
        assert!(ObjectRef::from_json(&z).unwrap().compressed);
        let mut bad = z.clone();
        bad["path"] = json!("_schema/lab/t/id=1/f_AbCd1234.bin");
        assert!(ObjectRef::from_json(&bad).is_err());
        let mut bad = z.clone();
        bad["is_dir"] = json!(true);
        assert!(ObjectRef::from_json(&bad).is_err());
    }

    /// Every shape pg_oas writes reads back as what it names.
    #[test]
    fn written_shapes_read_back() {
        use crate::npy::{parse_header, write_header};
        use crate::reference::{NpyRef, ObjectKind, ObjectValueRef};
        let header = parse_header(&write_header("<f4", false, &[3])).unwrap();
        let npy = NpyRef::new("_schema/lab/t/id=1/x_AbCd1234.npy".into(), "main", &header);
        let r = ObjectRef::from_json(&npy.to_json()).unwrap();
        assert_eq!(
            (r.path, r.store, r.size, r.is_dir),
            (npy.path, Some("main".into()), None, false)
        );
        let dir = ObjectValueRef::new(
            "_schema/lab/t/id=1/d_AbCd1234".into(),
            "main",
            7,
            ObjectKind::Folder { item_count: 2 },
            "t".into(),
        );
        let r = ObjectRef::from_json(&dir.to_json()).unwrap();
        assert_eq!((r.size, r.is_dir), (Some(7), true));
        let file = ObjectValueRef::new(
            "f_AbCd1234.tif".into(),
            "main",
            7,
            ObjectKind::File {
                ext: Some(".tif".into()),
            },
            "t".into(),
        );
        assert!(!ObjectRef::from_json(&file.to_json()).unwrap().is_dir);
    }
}
