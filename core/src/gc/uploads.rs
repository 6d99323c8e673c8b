//! Records of uploads in parts, so that one a crash cut short can be found and aborted.
//!
//! An upload in parts (S3 multipart upload, Azure blocks, GCS XML multipart upload) is invisible
//! to a listing until it is completed, and its parts take space until it is aborted; no listing
//! object_store offers shows it. So a writer records each one in the store itself before the
//! first part is sent: `_oas/uploads/{unique}.json` holds the object's path and the upload's id
//! ([`UploadRecord`]). Finishing or aborting the upload removes its record. A record the
//! collector finds older than its horizon (grace, and the start of every running transaction)
//! belongs to a writer that died: the collector aborts the upload by its id and removes the
//! record ([`abort_recorded`]). Aborting an upload that was completed (a writer that died
//! between completing and removing the record) changes nothing: the store answers that the
//! upload is unknown and the object stays.
//!
//! An upload started but not yet recorded when its writer died (one request's window) has no
//! parts: it holds no data, only the store's note of it (S3 lifecycle rules can expire those).
//!
//! On a `file` store every write through object_store's local client (a put, a schema-addressed
//! value, an upload in parts) goes to a temporary file beside the object's path,
//! `{path}#{digits}`, renamed into place when complete; listings hide such files. A crash leaves
//! them: the collector finds those of its sections older than its horizon with
//! [`local_temp_files`] and removes them.

use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use walkdir::WalkDir;

use crate::backend::{check_below, Store};
use crate::error::OasError;

/// Where records of uploads in parts are kept.
pub const UPLOADS_PREFIX: &str = "_oas/uploads/";

/// One upload in parts: the object's path (relative to the store's location) and the upload's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub path: String,
    pub upload_id: String,
}

impl UploadRecord {
    /// The record as stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record serializes")
    }

    /// A stored record; `None` for anything else found under [`UPLOADS_PREFIX`].
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Self>(bytes)
            .ok()
            .filter(|r| !r.path.is_empty() && !r.upload_id.is_empty())
    }
}

/// The object path a `file` store's temporary file stands for: `{path}#{digits}`; `None` for any
/// other path.
pub fn local_temp_object(path: &str) -> Option<&str> {
    let (object, n) = path.rsplit_once('#')?;
    let named = !object.is_empty() && !object.ends_with('/');
    (named && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(object)
}

/// A new, unique record path.
pub fn record_path() -> String {
    format!("{}.json", crate::stage::unique_name(UPLOADS_PREFIX))
}

/// Write `record` at `at` (a [`record_path`]) before the upload's first part.
pub async fn write_record(store: &Store, at: &str, record: &UploadRecord) -> Result<(), OasError> {
    let key = store.key(at)?;
    store
        .client()
        .put(&key, PutPayload::from(record.to_bytes()))
        .await
        .map(|_| ())
        .map_err(|e| store.error(e, "record upload", at))
}

/// Abort the upload recorded at `at` and remove the record. Returns whether an upload was
/// recorded there; a record that is gone, or is not a record, is removed all the same.
pub async fn abort_recorded(store: &Store, at: &str) -> Result<bool, OasError> {
    let key = store.key(at)?;
    let bytes = match store.client().get(&key).await {
        Ok(got) => got.bytes().await.map_err(|e| store.error(e, "read", at))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(store.error(e, "read", at)),
    };
    let record = UploadRecord::parse(&bytes);
    if let (Some(r), Some(parts)) = (&record, store.multipart()) {
        let full = store.full_key(&store.key(&r.path)?);
        match parts.abort_multipart(&full, &r.upload_id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store.error(e, "abort upload", &r.path)),
        }
    }
    super::delete_object(store, at).await?;
    Ok(record.is_some())
}

/// A `file` store's temporary files under `prefix` (see the module's doc) modified before
/// `horizon` (seconds since the epoch): the object path each stands for, and the file. Symbolic
/// links are not followed, and a prefix behind one lists nothing.
pub fn local_temp_files(
    store: &Store,
    prefix: &str,
    horizon: f64,
) -> Result<Vec<(String, PathBuf)>, OasError> {
    let Some(root) = store.local_root() else {
        return Ok(Vec::new());
    };
    let prefix = prefix.trim_end_matches('/');
    if check_below(root, prefix.split('/').filter(|p| !p.is_empty())).is_err() {
        return Ok(Vec::new());
    }
    let failed = |detail: String| OasError::Store {
        store: store.name.clone(),
        op: "list",
        path: prefix.to_string(),
        detail,
    };
    let mut out = Vec::new();
    for entry in WalkDir::new(root.join(prefix)).follow_links(false) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.io_error().map(|io| io.kind()) == Some(ErrorKind::NotFound) => continue,
            Err(e) => return Err(failed(e.to_string())),
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let Some(rel) = entry
            .path()
            .strip_prefix(root)
            .ok()
            .and_then(|p| p.to_str())
        else {
            continue;
        };
        let Some(object) = local_temp_object(rel) else {
            continue;
        };
        let mtime = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(f64::MAX, |d| d.as_secs_f64());
        if mtime < horizon {
            out.push((object.to_string(), entry.path().to_path_buf()));
        }
    }
    Ok(out)
}

/// Remove a temporary file [`local_temp_files`] found (object_store's clients refuse its name).
/// Removing a symbolic link would remove the link, never its target; one already gone is done.
pub fn remove_local_temp(store: &Store, object: &str, file: &Path) -> Result<(), OasError> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(OasError::Store {
            store: store.name.clone(),
            op: "delete",
            path: object.to_string(),
            detail: e.to_string(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_junk_is_not_one() {
        let r = UploadRecord {
            path: "lab/t/k=1/v.bin".into(),
            upload_id: "abc_123".into(),
        };
        assert_eq!(UploadRecord::parse(&r.to_bytes()), Some(r));
        assert_eq!(UploadRecord::parse(b"{}"), None);
        assert_eq!(
            UploadRecord::parse(br#"{"path": "a", "upload_id": ""}"#),
            None
        );
        assert_eq!(UploadRecord::parse(b"not json"), None);
        assert_eq!(
            UploadRecord::parse(br#"{"path": "", "upload_id": "x"}"#),
            None
        );
    }

    #[test]
    fn a_file_stores_temporary_files_are_a_path_hash_digits() {
        assert_eq!(local_temp_object("s/t/v.bin#1"), Some("s/t/v.bin"));
        assert_eq!(local_temp_object("s/a#b/v.bin#12"), Some("s/a#b/v.bin"));
        assert_eq!(local_temp_object("s/t/v.bin"), None);
        assert_eq!(local_temp_object("s/t/v.bin#"), None);
        assert_eq!(local_temp_object("s/t/v.bin#1a"), None);
        assert_eq!(local_temp_object("s/t/#1"), None);
        assert_eq!(local_temp_object("#1"), None);
    }

    #[test]
    fn record_paths_are_unique_and_under_the_prefix() {
        let (a, b) = (record_path(), record_path());
        assert_ne!(a, b);
        assert!(a.starts_with(UPLOADS_PREFIX) && a.ends_with(".json"));
    }
}
