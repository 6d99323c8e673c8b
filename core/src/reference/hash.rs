//! `<hash@>` references (also the storage of `<blob@>` and `<attach@>`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::OasError;
use crate::hash::is_content_hash;
use crate::path::validate_relative_path;

/// `<hash@>`, `<blob@>`, `<attach@>`: `{"hash","path","schema","store","size"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashRef {
    pub hash: String,
    pub path: String,
    pub schema: String,
    /// The store name. DataJoint writes `null` (or `""`) for its default store; we always write the
    /// resolved name, and read `null`/`""` as "the default store".
    pub store: Option<String>,
    pub size: u64,
    /// `Some("zstd")` for an object a compressed store keeps zstd-compressed (at its hash path
    /// followed by `.zst`, see [`crate::compress`]); `hash` and `size` are still the uncompressed
    /// bytes'. Left out of the JSON when `None`, so uncompressed references are DataJoint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
}

impl HashRef {
    pub fn to_json(&self) -> Value {
        super::to_json(self)
    }

    /// Parse and check a reference taken from a row.
    pub fn from_json(value: &Value) -> Result<Self, OasError> {
        let r: HashRef = serde_json::from_value(value.clone()).map_err(|e| {
            OasError::invalid_argument_hint(
                format!("invalid hash reference: {e}"),
                r#"expected {"hash": ..., "path": ..., "schema": ..., "store": ..., "size": ...} as written by oas_hash_put or DataJoint"#,
            )
        })?;
        if !is_content_hash(&r.hash) {
            return Err(OasError::invalid_argument(format!(
                "invalid hash reference: \"hash\" must be 26 lowercase base32 characters, got \"{}\"",
                r.hash
            )));
        }
        validate_relative_path(&r.path)?;
        let compressed = crate::compress::marker_of(value.get(crate::compress::KEY))?;
        // The hash is the object's name: the last segment, not merely the end of one (followed by
        // `.zst` exactly when the reference says the object is compressed).
        let name = crate::compress::object_name(&r.hash, compressed);
        if r.path.rsplit('/').next() != Some(name.as_str()) {
            return Err(OasError::invalid_argument(format!(
                "invalid hash reference: path \"{}\" does not end with \"{name}\"",
                r.path
            )));
        }
        Ok(r)
    }

    /// The store name to resolve, `None` meaning the default store.
    pub fn store_name(&self) -> Option<&str> {
        super::store_name(self.store.as_deref())
    }

    /// Is the object stored zstd-compressed ([`crate::compress`])?
    pub fn compressed(&self) -> bool {
        self.compression.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_and_shape() {
        let r = HashRef {
            hash: "lvauakv4jmvhnolrtwiraf6fsi".into(),
            path: "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi".into(),
            schema: "lab".into(),
            store: Some("main".into()),
            size: 5,
            compression: None,
        };
        let v = r.to_json();
        assert_eq!(
            v,
            json!({"hash": "lvauakv4jmvhnolrtwiraf6fsi", "path": "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi",
                   "schema": "lab", "store": "main", "size": 5})
        );
        assert_eq!(HashRef::from_json(&v).unwrap(), r);
        // DataJoint's key order, and the sorted keys of what PostgreSQL is given.
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"hash":"lvauakv4jmvhnolrtwiraf6fsi","path":"_hash/lab/lvauakv4jmvhnolrtwiraf6fsi","schema":"lab","store":"main","size":5}"#
        );
        assert_eq!(
            v.to_string(),
            r#"{"hash":"lvauakv4jmvhnolrtwiraf6fsi","path":"_hash/lab/lvauakv4jmvhnolrtwiraf6fsi","schema":"lab","size":5,"store":"main"}"#
        );
    }

    #[test]
    fn datajoint_default_store_reads_as_default() {
        let v = json!({"hash": "lvauakv4jmvhnolrtwiraf6fsi", "path": "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi",
                       "schema": "lab", "store": null, "size": 5});
        assert_eq!(HashRef::from_json(&v).unwrap().store_name(), None);
        let v2 = json!({"hash": "lvauakv4jmvhnolrtwiraf6fsi", "path": "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi",
                       "schema": "lab", "store": "", "size": 5});
        assert_eq!(HashRef::from_json(&v2).unwrap().store_name(), None);
    }

    #[test]
    fn malformed_references_are_rejected() {
        let base = json!({"hash": "lvauakv4jmvhnolrtwiraf6fsi", "path": "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi",
                          "schema": "lab", "store": "main", "size": 5});
        let mut no_size = base.clone();
        no_size.as_object_mut().unwrap().remove("size");
        assert!(HashRef::from_json(&no_size)
            .unwrap_err()
            .to_string()
            .contains("size"));
        let mut escape = base.clone();
        escape["path"] = json!("_hash/../../etc/lvauakv4jmvhnolrtwiraf6fsi");
        assert!(HashRef::from_json(&escape).is_err());
        let mut wrong = base.clone();
        wrong["path"] = json!("_hash/lab/aaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert!(HashRef::from_json(&wrong)
            .unwrap_err()
            .to_string()
            .contains("does not end"));
        let mut neg = base;
        neg["size"] = json!(-1);
        assert!(HashRef::from_json(&neg).is_err());
        assert!(HashRef::from_json(&json!("text")).is_err());
    }

    /// Found by the `reference` fuzz target: the path only had to end with the hash, so
    /// `_hash/truelv...` (an object named otherwise) passed as the object named by the hash.
    #[test]
    fn fuzz_hash_must_be_the_last_segment() {
        let with_path = |p: &str| json!({"hash": "lvauakv4jmvhnolrtwiraf6fsi", "path": p, "schema": "lab", "store": "main", "size": 5});
        for bad in [
            "_hash/truelvauakv4jmvhnolrtwiraf6fsi",
            "_hash/lab/x_lvauakv4jmvhnolrtwiraf6fsi",
            "_hash/lab/alvauakv4jmvhnolrtwiraf6fsi",
        ] {
            assert!(
                HashRef::from_json(&with_path(bad))
                    .unwrap_err()
                    .to_string()
                    .contains("does not end"),
                "{bad}"
            );
        }
        for good in [
            "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi",
            "_hash/lab/lv/au/lvauakv4jmvhnolrtwiraf6fsi",
            "lab/lvauakv4jmvhnolrtwiraf6fsi",
            "lvauakv4jmvhnolrtwiraf6fsi",
        ] {
            assert!(HashRef::from_json(&with_path(good)).is_ok(), "{good}");
        }
    }
}
