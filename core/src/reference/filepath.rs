//! `<filepath@>` references: `{"path","store","size","is_dir","timestamp"}` for a file or folder
//! the user manages in the store (pg_oas never writes or deletes it), and the rule for which
//! paths may be registered.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::path::validate_relative_path;
use crate::spec::StoreSpec;
use crate::OasError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilepathRef {
    pub path: String,
    pub store: Option<String>,
    /// The file's size; `null` for a folder (as DataJoint records it).
    pub size: Option<u64>,
    pub is_dir: bool,
    /// When the path was registered: ISO 8601 UTC with microseconds and `+00:00`.
    pub timestamp: String,
}

impl FilepathRef {
    /// The reference as the JSON value handed to PostgreSQL.
    pub fn to_json(&self) -> Value {
        super::to_json(self)
    }
}

/// The path a user may register as a `<filepath@>` value of a store with layout `spec`, made
/// canonical. As DataJoint: a leading `/` is dropped, the hash and schema sections are refused,
/// and with a `filepath_prefix` the path must lie under it. Better than DataJoint, which checks
/// prefixes on the text as given: the path must be canonical (no empty, `.` or `..` segment, so
/// `x/../_hash/...` cannot reach a reserved section), the sections are refused whole (`_hash`
/// itself too), and pg_oas's own `_oas/` area is refused as well.
pub fn registrable_path(spec: &StoreSpec, path: &str) -> Result<String, OasError> {
    let path = path.trim_start_matches('/');
    validate_relative_path(path).map_err(|_| {
        OasError::invalid_argument_hint(
            format!("invalid <filepath@> path \"{}\"", path.escape_default()),
            "give a path relative to the store's location, with no empty, '.' or '..' segment",
        )
    })?;
    let within = |prefix: &str| {
        let p = prefix.trim_matches('/');
        !p.is_empty() && (path == p || path.starts_with(&format!("{p}/")))
    };
    for (what, prefix) in [
        ("hash_prefix", spec.hash_prefix.as_str()),
        ("schema_prefix", spec.schema_prefix.as_str()),
        ("pg_oas's own area", "_oas"),
    ] {
        if within(prefix) {
            return Err(OasError::invalid_argument_hint(
                format!("<filepath@> path \"{path}\" lies in the reserved section \"{prefix}\" ({what})"),
                "the hash- and schema-addressed sections are managed by DataJoint and pg_oas; register files that lie elsewhere in the store",
            ));
        }
    }
    if let Some(prefix) = spec.filepath_prefix.as_deref() {
        if !within(prefix) || path.trim_matches('/') == prefix.trim_matches('/') {
            return Err(OasError::invalid_argument_hint(
                format!("<filepath@> path \"{path}\" is not under the store's filepath_prefix \"{prefix}\""),
                format!("this store keeps user-managed files under \"{}/\"", prefix.trim_matches('/')),
            ));
        }
    }
    Ok(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: Value) -> StoreSpec {
        let mut v = json!({"protocol": "file", "location": "/data"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        StoreSpec::from_json(&v).unwrap()
    }

    #[test]
    fn paths_are_made_canonical_and_kept_out_of_reserved_sections() {
        let s = spec(json!({}));
        assert_eq!(registrable_path(&s, "/raw/a.tif").unwrap(), "raw/a.tif");
        assert_eq!(
            registrable_path(&s, "raw/session 1").unwrap(),
            "raw/session 1"
        );
        for bad in [
            "",
            "/",
            "_hash/lab/x",
            "_hash",
            "_schema/lab/t/id=1/f",
            "/_schema/x",
            "x/../_hash/lab/x",
            "raw/./a",
            "raw//a",
            "../outside",
            "_oas/trash/x",
            "a\\b",
        ] {
            assert!(registrable_path(&s, bad).is_err(), "{bad:?}");
        }
        // A name that only begins like a prefix is fine.
        assert!(registrable_path(&s, "_hashes/x").is_ok());
    }

    #[test]
    fn a_filepath_prefix_is_required_when_set() {
        let s = spec(json!({"filepath_prefix": "user/files"}));
        assert_eq!(
            registrable_path(&s, "user/files/a.bin").unwrap(),
            "user/files/a.bin"
        );
        assert!(registrable_path(&s, "user/other/a.bin").is_err());
        assert!(registrable_path(&s, "user/files").is_err());
        assert!(registrable_path(&s, "user/filesX/a").is_err());
    }

    #[test]
    fn serialises_in_datajoints_key_order() {
        let r = FilepathRef {
            path: "raw/a.tif".into(),
            store: Some("main".into()),
            size: Some(3),
            is_dir: false,
            timestamp: "2026-11-29T02:31:05.123456+00:00".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"path":"raw/a.tif","store":"main","size":3,"is_dir":false,"timestamp":"2026-11-29T02:31:05.123456+00:00"}"#
        );
    }
}
