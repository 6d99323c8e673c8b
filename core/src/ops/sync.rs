//! Durability at commit for `file` stores: objects put through [`Store::deferring`] are written
//! without fsync, and every file a transaction wrote (and each directory that names it, up to the
//! store's location) is synced together, on several threads, before the transaction commits:
//! one round of parallel fsyncs per transaction instead of two sequential ones per object.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
    /// Record the object at `rel` of the `file` store `store`: the file, its directory (which
    /// names it), and the directories above up to the store's location that `synced` does not
    /// know as synced already (a directory made by a put that never synced, say one whose
    /// transaction aborted, must reach the disk as well).
    pub fn add(&mut self, store: &Store, rel: &str, synced: &SyncedDirs) -> Result<(), OasError> {
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
        let mut parent = true;
        while let Some(d) = dir {
            let e = entry(d.to_str().unwrap_or_default());
            if self.dirs.contains(&e) || (!parent && synced.holds(&e.path())) {
                break;
            }
            self.dirs.insert(e);
            parent = false;
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

/// Directories known to be on disk with every entry that leads to them: synced by this process
/// (with each one above), and still the same directory (device, inode and birth time), so one
/// removed and made again is synced again.
#[derive(Debug, Default)]
pub struct SyncedDirs(HashMap<PathBuf, DirId>);

type DirId = (u64, u64, SystemTime);

fn dir_id(meta: &std::fs::Metadata) -> Option<DirId> {
    Some((meta.dev(), meta.ino(), meta.created().ok()?))
}

impl SyncedDirs {
    /// Was `dir` synced by this process, and is it still the directory that was?
    pub fn holds(&self, dir: &Path) -> bool {
        self.0.get(dir).is_some_and(|id| {
            std::fs::symlink_metadata(dir)
                .ok()
                .and_then(|m| dir_id(&m))
                .as_ref()
                == Some(id)
        })
    }

    fn insert(&mut self, synced: Vec<(PathBuf, DirId)>) {
        self.0.extend(synced);
    }
}

/// fsync every file and directory in `written`, on up to [`SYNC_THREADS`] threads, and remember
/// the directories synced in `synced`. The first failure is the error (a transaction that gets
/// it must not commit).
pub async fn sync_written(written: Written, synced: &mut SyncedDirs) -> Result<(), OasError> {
    let entries: Vec<(Entry, bool)> = (written.files.into_iter().map(|e| (e, false)))
        .chain(written.dirs.into_iter().map(|e| (e, true)))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let threads = entries.len().min(SYNC_THREADS);
    let mut shares: Vec<Vec<(Entry, bool)>> = vec![Vec::new(); threads];
    for (i, e) in entries.into_iter().enumerate() {
        shares[i % threads].push(e);
    }
    let tasks = shares.into_iter().map(|share| {
        tokio::task::spawn_blocking(move || {
            let mut dirs = Vec::new();
            for (e, is_dir) in &share {
                let id = sync_one(e)?;
                if let (true, Some(id)) = (is_dir, id) {
                    dirs.push((e.path(), id));
                }
            }
            Ok::<_, OasError>(dirs)
        })
    });
    let mut dirs = Vec::new();
    for done in futures::future::join_all(tasks).await {
        dirs.extend(done.map_err(|e| OasError::Internal(format!("fsync thread: {e}")))??);
    }
    synced.insert(dirs);
    Ok(())
}

/// fsync one file or directory; the identity of what was synced.
fn sync_one(e: &Entry) -> Result<Option<DirId>, OasError> {
    let sync = || {
        let f = std::fs::File::open(e.path())?;
        let id = dir_id(&f.metadata()?);
        f.sync_all()?;
        Ok::<_, std::io::Error>(id)
    };
    // ENOSPC or EDQUOT at fsync (space the file system only claims now): the store is full.
    sync().map_err(|err| {
        OasError::store_failure(
            e.store.clone(),
            "fsync",
            e.rel.clone(),
            err.to_string(),
            &err,
        )
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
        let mut synced = SyncedDirs::default();
        assert!(w.is_empty());
        for data in [&b"one"[..], b"two", b"one"] {
            let (r, _) = put_hash(twin, "lab", Bytes::copy_from_slice(data))
                .await
                .unwrap();
            w.add(&store, &r.path, &synced).unwrap();
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
        sync_written(w, &mut synced).await.unwrap();
        // Nothing written: nothing to do.
        sync_written(Written::default(), &mut synced).await.unwrap();
        // Synced once, the directories above an object's own are not synced again ...
        let mut w = Written::default();
        let (r, _) = put_hash(twin, "lab", Bytes::from_static(b"three"))
            .await
            .unwrap();
        w.add(&store, &r.path, &synced).unwrap();
        let parent = root.join(&r.path).parent().unwrap().to_path_buf();
        let (mut got, mut want) = (w.paths(), vec![root.join(&r.path), parent.clone()]);
        got.sort();
        want.sort();
        assert_eq!(got, want);
        // ... unless one was removed and made again.
        std::fs::remove_dir_all(root.join("_hash")).unwrap();
        std::fs::create_dir_all(&parent).unwrap();
        assert!(!synced.holds(&root.join("_hash/lab")));
        assert!(synced.holds(root));
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
        let mut synced = SyncedDirs::default();
        w.add(&store, &r.path, &synced).unwrap();
        w.add(&store, "_hash/lab/gone", &synced).unwrap();
        let e = sync_written(w, &mut synced).await.unwrap_err();
        assert!(
            matches!(&e, OasError::Store { op: "fsync", path, .. } if path == "_hash/lab/gone"),
            "{e:?}"
        );
        assert!(Written::default()
            .add(&store, "../escape", &synced)
            .is_err());
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
