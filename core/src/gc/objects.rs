//! The store operations the collector needs: list, move (in parallel, with folder syncs on file
//! stores), delete, and put back from trash.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use futures::stream::{self, BoxStream};
use futures::StreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use super::{trash_key, untrash_key, MANIFEST_SUFFIX};
use crate::backend::{NoFollow, Store};
use crate::error::OasError;

/// Everything under `prefix` (which ends with `/`, or is empty for the whole store), as a stream.
pub fn list(store: &Store, prefix: &str) -> BoxStream<'static, Result<ObjectMeta, OasError>> {
    let client = store.client().clone();
    let s = store.clone();
    let prefix = prefix.trim_end_matches('/').to_string();
    let path = if prefix.is_empty() {
        None
    } else {
        Some(object_store::path::Path::from(prefix.as_str()))
    };
    client
        .list(path.as_ref())
        .map(move |r| r.map_err(|e| s.error(e, "list", &prefix)))
        .boxed()
}

/// Move `from` to `to` in the store (a rename on file stores; copy then delete elsewhere).
/// A missing source is [`OasError::ObjectMissing`].
pub async fn move_object(store: &Store, from: &str, to: &str) -> Result<(), OasError> {
    let (f, t) = (store.key(from)?, store.key(to)?);
    store
        .client()
        .rename(&f, &t)
        .await
        .map_err(|e| store.error(e, "move", from))
}

/// Move each `(from, to)` pair, at most `parallel` at a time: one result per pair, in order.
/// A missing source is [`OasError::ObjectMissing`].
///
/// Through its own client, a file store that fsyncs would sync two directories per rename: a
/// million directory fsyncs, each a journal commit, to move 500 k objects. Here the renames go
/// through [`Store::unsynced`] and the folders they changed are noted in `syncs`, to be synced
/// once each before the work is committed ([`FolderSyncs::sync`]). The outer error is a failed
/// sync (when enough folders were pending to sync early): the caller must then fail as a whole.
pub async fn move_objects(
    store: &Store,
    moves: &[(String, String)],
    parallel: usize,
    syncs: &mut FolderSyncs,
) -> Result<Vec<Result<(), OasError>>, OasError> {
    let Some(fs) = store.unsynced() else {
        return Ok(move_each(store, store.client(), moves, parallel).await);
    };
    let client: Arc<dyn ObjectStore> = fs.clone();
    let mut results = move_each(store, &client, moves, parallel).await;
    for ((from, to), res) in moves.iter().zip(results.iter_mut()) {
        if res.is_ok() {
            if let Err(e) = syncs.note(store, fs, from, to) {
                *res = Err(e);
            }
        }
    }
    if syncs.folders.len() >= FolderSyncs::LIMIT {
        syncs.sync(store)?;
    }
    Ok(results)
}

async fn move_each(
    store: &Store,
    client: &Arc<dyn ObjectStore>,
    moves: &[(String, String)],
    parallel: usize,
) -> Vec<Result<(), OasError>> {
    stream::iter(moves.iter().map(|(from, to)| async move {
        let (f, t) = (store.key(from)?, store.key(to)?);
        client
            .rename(&f, &t)
            .await
            .map_err(|e| store.error(e, "move", from))
    }))
    .buffered(parallel.max(1))
    .collect()
    .await
}

/// Folders of a file store that renames changed and that still need an fsync: each source's
/// folder, and each destination's folder with every folder above it up to the store's root (a
/// rename may have created them). They are the parents of the files the client renamed, as it
/// maps them (names are not percent-decoded or encoded on the way).
///
/// A collector run or a restore is one transaction: what it records about its moves becomes
/// durable at commit, so syncing the folders once before it returns is as safe as syncing after
/// every rename. A move that is lost in a crash anyway leaves an object in its old place or in
/// trash without a record; the collector handles both (see `docs/gc-design.md`).
#[derive(Debug, Default)]
pub struct FolderSyncs {
    folders: BTreeSet<PathBuf>,
}

impl FolderSyncs {
    /// Sync early once this many folders are pending (objects stored one per folder).
    pub const LIMIT: usize = 10_000;

    fn note(&mut self, store: &Store, fs: &NoFollow, from: &str, to: &str) -> Result<(), OasError> {
        let file = |key: &str| {
            store.key(key).and_then(|k| {
                fs.path_to_filesystem(&k)
                    .map_err(|e| store.error(e, "map", key))
            })
        };
        let (from_file, to_file) = (file(from)?, file(to)?);
        if let Some(d) = from_file.parent() {
            self.folders.insert(d.to_path_buf());
        }
        // `to` is relative to the root: its file has one folder per `/` in it, the root last.
        let mut dir = to_file.parent();
        for _ in 0..=to.matches('/').count() {
            let Some(d) = dir else { break };
            self.folders.insert(d.to_path_buf());
            dir = d.parent();
        }
        Ok(())
    }

    /// Fsync every pending folder of `store` (nothing for stores without [`Store::unsynced`]).
    /// A folder that is gone has nothing left to sync. On failure the folders not yet synced
    /// stay pending.
    pub fn sync(&mut self, store: &Store) -> Result<(), OasError> {
        if store.unsynced().is_none() {
            self.folders.clear();
            return Ok(());
        }
        while let Some(dir) = self.folders.pop_first() {
            match std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let detail = store.mask(format!("{}: {e}", dir.display()));
                    self.folders.insert(dir);
                    return Err(OasError::Store {
                        store: store.name.clone(),
                        op: "sync folder",
                        path: "(moved objects)".into(),
                        detail,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Delete an object; an object that is already gone is not an error.
pub async fn delete_object(store: &Store, path: &str) -> Result<(), OasError> {
    let key = store.key(path)?;
    match store.client().delete(&key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(store.error(e, "delete", path)),
    }
}

/// Does anything exist at `path`: an object, or (for folder objects) something under it?
pub async fn exists(store: &Store, path: &str) -> Result<bool, OasError> {
    let key = store.key(path)?;
    match store.client().head(&key).await {
        Ok(_) => return Ok(true),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(store.error(e, "head", path)),
    }
    let mut under = list(store, &format!("{path}/"));
    match under.next().await {
        Some(Ok(_)) => Ok(true),
        None => Ok(false),
        Some(Err(OasError::ObjectMissing { .. })) => Ok(false),
        Some(Err(e)) => Err(e),
    }
}

/// Put back what the collector moved to trash for the reference path `path`: the object itself,
/// everything under it, and its manifest. Returns the object paths restored.
pub async fn restore_from_trash(store: &Store, path: &str) -> Result<Vec<String>, OasError> {
    let mut restored = Vec::new();
    let exact = trash_key(path);
    let manifest = trash_key(&format!("{path}{MANIFEST_SUFFIX}"));
    for key in [exact.clone(), manifest] {
        // Only objects: on file stores a folder's trash key is a directory, moved file by file below.
        match store.client().head(&store.key(&key)?).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(store.error(e, "head", &key)),
        }
        match move_object(store, &key, untrash_key(&key).unwrap_or(path)).await {
            Ok(()) => restored.push(untrash_key(&key).unwrap_or(path).to_string()),
            Err(OasError::ObjectMissing { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let mut under = list(store, &format!("{exact}/"));
    let mut keys = Vec::new();
    while let Some(m) = under.next().await {
        match m {
            Ok(m) => keys.push(m.location.to_string()),
            Err(OasError::ObjectMissing { .. }) => break,
            Err(e) => return Err(e),
        }
    }
    for key in keys {
        if let Some(orig) = untrash_key(&key) {
            move_object(store, &key, orig).await?;
            restored.push(orig.to_string());
        }
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ClientSettings;
    use crate::spec::StoreSpec;
    use bytes::Bytes;
    use object_store::PutPayload;
    const H: &str = "lvauakv4jmvhnolrtwiraf6fsi";

    fn local_store(dir: &std::path::Path) -> Store {
        let spec = StoreSpec::from_json(&serde_json::json!({
            "protocol": "file", "location": dir.to_str().unwrap()
        }))
        .unwrap();
        Store::build("t", spec, &ClientSettings::default()).unwrap()
    }

    async fn put(store: &Store, path: &str, data: &'static [u8]) {
        store
            .client()
            .put(
                &store.key(path).unwrap(),
                PutPayload::from(Bytes::from(data)),
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn trash_and_restore_files_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path());
        let file = format!("_hash/lab/{H}");
        let folder = "_schema/lab/rec/id=1/movie_zz";
        put(&store, &file, b"hello").await;
        put(&store, &format!("{folder}/a.tif"), b"a").await;
        put(&store, &format!("{folder}/sub/b.tif"), b"b").await;
        put(&store, &format!("{folder}.manifest.json"), b"{}").await;

        let mut listed: Vec<String> = list(&store, "_schema/")
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        listed.sort();
        assert_eq!(listed.len(), 3);

        for key in [file.clone()].into_iter().chain(listed.iter().cloned()) {
            move_object(&store, &key, &trash_key(&key)).await.unwrap();
        }
        assert!(!exists(&store, &file).await.unwrap());
        assert!(!exists(&store, folder).await.unwrap());
        assert!(matches!(
            move_object(&store, &file, "x").await,
            Err(OasError::ObjectMissing { .. })
        ));

        assert_eq!(
            restore_from_trash(&store, &file).await.unwrap(),
            vec![file.clone()]
        );
        let mut back = restore_from_trash(&store, folder).await.unwrap();
        back.sort();
        assert_eq!(back, listed);
        assert!(exists(&store, &file).await.unwrap());
        assert!(exists(&store, folder).await.unwrap());
        assert!(restore_from_trash(&store, folder).await.unwrap().is_empty());

        delete_object(&store, &file).await.unwrap();
        delete_object(&store, &file).await.unwrap();
        assert!(!exists(&store, &file).await.unwrap());
        // Listing a prefix that does not exist is empty, not an error.
        assert_eq!(list(&store, "_nothing/").count().await, 0);
    }

    #[tokio::test]
    async fn moves_in_batches_with_and_without_fsync() {
        for fsync in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let spec = StoreSpec::from_json(&serde_json::json!({
                "protocol": "file", "location": dir.path().to_str().unwrap()
            }))
            .unwrap();
            let settings = ClientSettings {
                file_fsync: fsync,
                ..ClientSettings::default()
            };
            let store = Store::build("t", spec, &settings).unwrap();
            assert_eq!(store.unsynced().is_some(), fsync);
            // Names object_store would percent-encode in an ObjectPath built from a string:
            // the folders synced must be the ones the files are in.
            let mut paths: Vec<String> = (0..40).map(|i| format!("_hash/lab/{i:02}")).collect();
            paths.push("_schema/lab/t/name=a%3Ab #1/é~[x].npy".into());
            for p in &paths {
                put(&store, p, b"x").await;
            }
            let mut moves: Vec<(String, String)> =
                paths.iter().map(|p| (p.clone(), trash_key(p))).collect();
            moves.insert(7, ("_hash/lab/gone".into(), trash_key("_hash/lab/gone")));
            let mut syncs = FolderSyncs::default();
            let results = move_objects(&store, &moves, 8, &mut syncs).await.unwrap();
            assert_eq!(results.len(), moves.len());
            // Only a store that fsyncs has folders to sync: the sources' and destinations'
            // folders and those above them, each an existing directory.
            if fsync {
                let root = std::fs::canonicalize(dir.path()).unwrap();
                let rel: BTreeSet<String> = syncs
                    .folders
                    .iter()
                    .map(|d| d.strip_prefix(&root).unwrap().to_str().unwrap().to_string())
                    .collect();
                let want: BTreeSet<String> = [
                    "",
                    "_hash/lab",
                    "_oas",
                    "_oas/trash",
                    "_oas/trash/_hash",
                    "_oas/trash/_hash/lab",
                    "_oas/trash/_schema",
                    "_oas/trash/_schema/lab",
                    "_oas/trash/_schema/lab/t",
                    "_oas/trash/_schema/lab/t/name=a%3Ab #1",
                    "_schema/lab/t/name=a%3Ab #1",
                ]
                .into_iter()
                .map(String::from)
                .collect();
                assert_eq!(rel, want);
                assert!(syncs.folders.iter().all(|d| d.is_dir()));
            } else {
                assert!(syncs.folders.is_empty());
            }
            syncs.sync(&store).unwrap();
            assert!(syncs.folders.is_empty());
            for ((from, to), res) in moves.iter().zip(&results) {
                if from.ends_with("gone") {
                    assert!(
                        matches!(res, Err(OasError::ObjectMissing { .. })),
                        "{res:?}"
                    );
                } else {
                    assert!(res.is_ok(), "{from}: {res:?}");
                    assert!(!dir.path().join(from).exists());
                    assert!(dir.path().join(to).is_file());
                }
            }
        }
    }
}
