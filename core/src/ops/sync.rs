//! Durability at commit for `file` stores: objects put through [`Store::deferring`] are written
//! without fsync, and every file a transaction wrote (and each directory that names it, up to the
//! store's location) is synced together, on several threads, before the transaction commits:
//! one round of parallel fsyncs per transaction instead of two sequential ones per object.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::backend::Store;
use crate::error::OasError;
use crate::path::validate_relative_path;

/// At most this many fsyncs run at once.
pub const SYNC_THREADS: usize = 8;

/// One file or directory to sync: its store, the store's location and the path below it
/// (empty for the location itself).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    store: String,
    root: PathBuf,
    rel: String,
}

impl Entry {
    fn path(&self) -> PathBuf {
        if self.rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(&self.rel)
        }
    }
}

/// What a transaction wrote to `file` stores without fsync: each object once, and each directory
/// once however many objects it holds.
#[derive(Debug, Default)]
pub struct Written {
    files: BTreeSet<Entry>,
    dirs: BTreeSet<Entry>,
}

impl Written {
    /// Record the object at `rel` of the `file` store `store`, and the directories from its
    /// parent up to the store's location (a directory created by an earlier put that never
    /// synced, say one whose transaction aborted, must reach the disk as well).
    pub fn add(&mut self, store: &Store, rel: &str) -> Result<(), OasError> {
        validate_relative_path(rel)?;
        let entry = |rel: &str| Entry {
            store: store.name.clone(),
            root: PathBuf::from(&store.spec.location),
            rel: rel.to_string(),
        };
        if !self.files.insert(entry(rel)) {
            return Ok(());
        }
        let mut dir = Path::new(rel).parent();
        while let Some(d) = dir {
            let known = !self.dirs.insert(entry(d.to_str().unwrap_or_default()));
            if known {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The files and directories to sync, as paths on the server.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .chain(&self.dirs)
            .map(Entry::path)
            .collect()
    }
}

/// fsync every file and directory in `written`, on up to [`SYNC_THREADS`] threads. The first
/// failure is the error (a transaction that gets it must not commit).
pub async fn sync_written(written: Written) -> Result<(), OasError> {
    let entries: Vec<Entry> = written.files.into_iter().chain(written.dirs).collect();
    if entries.is_empty() {
        return Ok(());
    }
    let threads = entries.len().min(SYNC_THREADS);
    let mut shares: Vec<Vec<Entry>> = vec![Vec::new(); threads];
    for (i, e) in entries.into_iter().enumerate() {
        shares[i % threads].push(e);
    }
    let tasks = shares
        .into_iter()
        .map(|share| tokio::task::spawn_blocking(move || share.iter().try_for_each(sync_one)));
    for done in futures::future::join_all(tasks).await {
        done.map_err(|e| OasError::Internal(format!("fsync thread: {e}")))??;
    }
    Ok(())
}

fn sync_one(e: &Entry) -> Result<(), OasError> {
    std::fs::File::open(e.path())
        .and_then(|f| f.sync_all())
        .map_err(|err| OasError::Store {
            store: e.store.clone(),
            op: "fsync",
            path: e.rel.clone(),
            detail: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{put_hash, PutOutcome};
    use crate::test_support::local_store;
    use bytes::Bytes;
    use serde_json::json;

    #[tokio::test]
    async fn deferred_puts_name_each_file_and_directory_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({"subfolding": [2]}));
        let twin = store.deferring().expect("a file store that fsyncs defers");
        assert!(twin.deferring().is_none() && twin.unsynced().is_none());
        let mut w = Written::default();
        assert!(w.is_empty());
        for data in [&b"one"[..], b"two", b"one"] {
            let (r, _) = put_hash(twin, "lab", Bytes::copy_from_slice(data))
                .await
                .unwrap();
            w.add(&store, &r.path).unwrap();
        }
        let root = dir.path();
        let mut paths = w.paths();
        paths.sort();
        let (one, two) = (
            crate::hash::content_hash(b"one"),
            crate::hash::content_hash(b"two"),
        );
        let mut want = vec![
            root.to_path_buf(),
            root.join("_hash"),
            root.join("_hash/lab"),
            root.join(format!("_hash/lab/{}", &one[..2])),
            root.join(format!("_hash/lab/{}/{one}", &one[..2])),
            root.join(format!("_hash/lab/{}", &two[..2])),
            root.join(format!("_hash/lab/{}/{two}", &two[..2])),
        ];
        want.sort();
        want.dedup();
        assert_eq!(paths, want);
        sync_written(w).await.unwrap();
        assert!(w_is_readable(root, &one));
        // Nothing written: nothing to do.
        sync_written(Written::default()).await.unwrap();
    }

    fn w_is_readable(root: &Path, hash: &str) -> bool {
        root.join(format!("_hash/lab/{}/{hash}", &hash[..2]))
            .is_file()
    }

    #[tokio::test]
    async fn a_missing_object_fails_the_sync_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let (r, o) = put_hash(store.deferring().unwrap(), "lab", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(o, PutOutcome::Uploaded);
        let mut w = Written::default();
        w.add(&store, &r.path).unwrap();
        w.add(&store, "_hash/lab/gone").unwrap();
        let e = sync_written(w).await.unwrap_err();
        assert!(
            matches!(&e, OasError::Store { op: "fsync", path, .. } if path == "_hash/lab/gone"),
            "{e:?}"
        );
        assert!(Written::default().add(&store, "../escape").is_err());
    }

    #[test]
    fn stores_without_fsync_and_object_stores_do_not_defer() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::spec::StoreSpec::from_json(
            &json!({"protocol": "file", "location": dir.path().to_str().unwrap()}),
        )
        .unwrap();
        let settings = crate::backend::ClientSettings {
            file_fsync: false,
            ..Default::default()
        };
        let store = Store::build("main", spec, &settings).unwrap();
        assert!(store.deferring().is_none());
        let s3 = crate::spec::StoreSpec::from_json(&json!({
            "protocol": "s3", "endpoint": "127.0.0.1:9", "bucket": "b", "location": "l",
            "access_key": "a", "secret_key": "s"
        }))
        .unwrap();
        let s3 = Store::build("s3", s3, &crate::backend::ClientSettings::default()).unwrap();
        assert!(s3.deferring().is_none());
    }
}
