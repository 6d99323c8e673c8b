//! The garbage collector's pure parts: which listed objects a set of references covers, where
//! collected objects go, and the store operations the collector needs (list, move, delete).
//!
//! The decisions that need PostgreSQL (what rows reference, grace, running transactions, locks)
//! are made in the extension; see `docs/gc-design.md`.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use futures::stream::{self, BoxStream};
use futures::StreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::backend::{NoFollow, Store};
use crate::error::OasError;
use crate::hash::is_content_hash;

/// Where collected objects wait for their retention period: `_oas/trash/{path}`.
pub const TRASH_PREFIX: &str = "_oas/trash/";
/// Where large payloads are staged before they are published (see [`crate::stage`]).
pub const STAGING_PREFIX: &str = "_oas/staging/";
/// DataJoint writes a folder object's listing beside it as `{path}.manifest.json`.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// Where a store's objects physically are. Two store names with the same identity (a DataJoint
/// config may name one bucket twice) share their objects, so the collector must count the
/// references of both before it calls anything in that place unreferenced.
pub fn location_identity(spec: &crate::spec::StoreSpec) -> String {
    let endpoint = spec
        .endpoint
        .as_deref()
        .unwrap_or(match spec.protocol {
            crate::spec::Protocol::S3 => "s3.amazonaws.com",
            _ => "",
        })
        .trim()
        .to_ascii_lowercase();
    let endpoint = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .unwrap_or(&endpoint)
        .trim_end_matches('/')
        .to_string();
    format!(
        "{}|{}|{}|{}|{}|{}",
        spec.protocol.as_str(),
        endpoint,
        spec.bucket.as_deref().unwrap_or(""),
        spec.container.as_deref().unwrap_or(""),
        spec.account_name.as_deref().unwrap_or(""),
        spec.location.trim_end_matches('/'),
    )
}

/// Where the collector records which database collects a store location.
pub const OWNER_KEY: &str = "_oas/owner.json";

/// Claim the store location for the database `me` (a JSON text naming cluster and database), or
/// find who has: `Ok(None)` when it is ours (now or before), `Ok(Some(owner))` when another
/// database's collector owns it.
pub async fn claim_owner(store: &Store, me: &str) -> Result<Option<String>, OasError> {
    let key = store.key(OWNER_KEY)?;
    let payload = object_store::PutPayload::from(bytes::Bytes::from(me.as_bytes().to_vec()));
    match store
        .client()
        .put_opts(&key, payload, object_store::PutMode::Create.into())
        .await
    {
        Ok(_) => return Ok(None),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. })
        | Err(object_store::Error::NotImplemented { .. }) => {}
        Err(e) => return Err(store.error(e, "put", OWNER_KEY)),
    }
    let found = match store.client().get(&key).await {
        Ok(r) => r
            .bytes()
            .await
            .map_err(|e| store.error(e, "get", OWNER_KEY))?,
        Err(object_store::Error::NotFound { .. }) => {
            // Backends without conditional create: write it.
            let payload =
                object_store::PutPayload::from(bytes::Bytes::from(me.as_bytes().to_vec()));
            store
                .client()
                .put(&key, payload)
                .await
                .map_err(|e| store.error(e, "put", OWNER_KEY))?;
            return Ok(None);
        }
        Err(e) => return Err(store.error(e, "get", OWNER_KEY)),
    };
    let found = String::from_utf8_lossy(&found).trim().to_string();
    Ok((found != me.trim()).then_some(found))
}

/// The trash key of an object path.
pub fn trash_key(path: &str) -> String {
    format!("{TRASH_PREFIX}{path}")
}

/// The object path a trash key came from, if it is one.
pub fn untrash_key(key: &str) -> Option<&str> {
    key.strip_prefix(TRASH_PREFIX).filter(|p| !p.is_empty())
}

/// The two managed sections of a store. `<filepath@>` content is in neither and never listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `{hash_prefix}/{schema}/[folds/]{hash}`: one object per reference, exact paths.
    Hash,
    /// `{schema_prefix}/[partitions/]{schema}/{table}/{pk=v}/.../{field}_{token}{ext}`: a
    /// reference covers its path, everything under it (folders) and its `.manifest.json`.
    Schema,
}

/// The set of referenced paths of one store, with the size each reference records. Paths are
/// kept as 64-bit hashes, so a million references take tens of megabytes. A collision can only
/// make an unreferenced object look referenced, which keeps it: the safe direction.
#[derive(Debug, Default, Clone)]
pub struct RefSet {
    sizes: HashMap<u64, u64>,
}

fn path_hash(path: &str) -> u64 {
    let mut h = DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

impl RefSet {
    pub fn insert(&mut self, path: &str, size: Option<u64>) {
        let e = self.sizes.entry(path_hash(path)).or_insert(0);
        *e = (*e).max(size.unwrap_or(0));
    }

    pub fn contains(&self, path: &str) -> bool {
        self.sizes.contains_key(&path_hash(path))
    }

    /// Distinct referenced paths.
    pub fn len(&self) -> u64 {
        self.sizes.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// The sizes the references record, summed once per distinct path (0 where none is recorded).
    pub fn bytes(&self) -> u64 {
        self.sizes.values().sum()
    }

    /// Is the listed object `key` of `section` referenced? Hash objects must be named exactly.
    /// Schema objects follow DataJoint's coverage rule: the key itself, any folder above it, or,
    /// for a manifest, the object it describes.
    pub fn covers(&self, section: Section, key: &str) -> bool {
        match section {
            Section::Hash => self.contains(key),
            Section::Schema => reference_paths(key).any(|p| self.contains(p)),
        }
    }
}

/// Every reference path that would cover the schema-addressed object `key`: the key, each
/// folder above it, and the key without `.manifest.json`.
pub fn reference_paths(key: &str) -> impl Iterator<Item = &str> {
    let manifest = key.strip_suffix(MANIFEST_SUFFIX).filter(|p| !p.is_empty());
    let ancestors = key.match_indices('/').map(move |(i, _)| &key[..i]);
    std::iter::once(key).chain(manifest).chain(ancestors)
}

/// The reference path that owns a schema-addressed object in DataJoint's layout: after
/// `schema_prefix`, partition folders (`attr=v`), then schema and table, then the primary key
/// folders (`attr=v`), then the field's own entry `{field}_{token}{ext}`; a manifest belongs to
/// the entry it describes. Keys that do not follow the layout own themselves.
pub fn owner_path<'a>(section: Section, schema_prefix: &str, key: &'a str) -> &'a str {
    if section == Section::Hash {
        return key;
    }
    let rest_start = if schema_prefix.is_empty() {
        0
    } else {
        match key
            .strip_prefix(schema_prefix)
            .and_then(|r| r.strip_prefix('/'))
        {
            Some(r) => key.len() - r.len(),
            None => return key,
        }
    };
    let mut end = rest_start;
    let mut stage = 0; // 0: partitions, 1: table, 2: key folders
    for comp in key[rest_start..].split('/') {
        let comp_end = end + comp.len();
        match stage {
            0 if comp.contains('=') => {}
            0 => stage = 1, // the schema
            1 => stage = 2, // the table
            _ if comp.contains('=') => {}
            _ => {
                let owner = &key[..comp_end];
                // A manifest (the last component) belongs to the entry it describes; an entry
                // with files under it is a folder, whatever its name ends with.
                if comp_end < key.len() {
                    return owner;
                }
                return owner.strip_suffix(MANIFEST_SUFFIX).unwrap_or(owner);
            }
        }
        end = comp_end + 1;
    }
    key
}

/// The schema a listed object belongs to: the first path segment after the section prefix that
/// is not a partition folder.
pub fn schema_of<'a>(section: Section, prefix: &str, key: &'a str) -> Option<&'a str> {
    let rest = if prefix.is_empty() {
        key
    } else {
        key.strip_prefix(prefix)?.strip_prefix('/')?
    };
    let mut comps = rest.split('/');
    match section {
        Section::Hash => comps.next(),
        Section::Schema => comps.find(|c| !c.contains('=')),
    }
}

/// Which section a path of a store lies in: the hash section when it is under `hash_prefix`, or
/// when `hash_prefix` is empty and it is not under `schema_prefix`; otherwise the schema section.
/// The one home of the rule (the collector and the read check use it).
pub fn section_of(hash_prefix: &str, schema_prefix: &str, key: &str) -> Section {
    let under = |prefix: &str| !prefix.is_empty() && key.starts_with(&format!("{prefix}/"));
    if under(hash_prefix) || (hash_prefix.is_empty() && !under(schema_prefix)) {
        Section::Hash
    } else {
        Section::Schema
    }
}

/// The schema whose section `key` lies in (see [`section_of`] and [`schema_of`]).
pub fn owner_schema<'a>(hash_prefix: &str, schema_prefix: &str, key: &'a str) -> Option<&'a str> {
    match section_of(hash_prefix, schema_prefix, key) {
        Section::Hash => schema_of(Section::Hash, hash_prefix, key),
        Section::Schema => schema_of(Section::Schema, schema_prefix, key),
    }
}

/// Refuse to write `path` as an object of `schema` in `section` unless the rules that read paths
/// back ([`section_of`], [`owner_schema`], [`owner_path`]) give the same answers: the read check
/// lets a schema's rows vouch only for objects in its part of the section, and the collector
/// locks a schema-addressed object through its owner entry. DataJoint's layout cannot tell apart
/// everything its builders make:
///
/// - with an empty `hash_prefix`, the hash objects of a schema named like the first segment of
///   `schema_prefix` lie in the schema section (their owner would be a fold or the hash);
/// - with an empty `schema_prefix`, the schema-addressed objects of a schema named like the
///   first segment of `hash_prefix` lie in the hash section (their owner would be the table);
/// - a schema named with `=` reads as a partition folder (the owner would be the table);
/// - a field or extension with `=` reads as a primary-key folder (a folder's files would own
///   themselves);
/// - an extension ending with `.manifest.json` reads as the manifest of another entry.
pub fn require_read_back(
    hash_prefix: &str,
    schema_prefix: &str,
    section: Section,
    schema: &str,
    path: &str,
) -> Result<(), OasError> {
    let found = section_of(hash_prefix, schema_prefix, path);
    let owner = owner_schema(hash_prefix, schema_prefix, path);
    let entry = match section {
        Section::Hash => true,
        Section::Schema => {
            owner_path(section, schema_prefix, path) == path
                && owner_path(section, schema_prefix, &format!("{path}/x")) == path
        }
    };
    // With both prefixes empty the layout cannot tell the sections apart (every path reads as
    // hash-addressed); the owner schema still reads back, which is what the read check needs.
    let same_section = found == section || (hash_prefix.is_empty() && schema_prefix.is_empty());
    if same_section && owner == Some(schema) && entry {
        return Ok(());
    }
    Err(OasError::invalid_argument_hint(
        format!(
            "object path \"{}\" of schema \"{}\" would not read back as that schema's: \
             it lies in the {} section and names {} as its schema{}",
            path.escape_default(),
            schema.escape_default(),
            match found {
                Section::Hash => "hash",
                Section::Schema => "schema-addressed",
            },
            owner.map_or("nothing".into(), |o| format!("\"{}\"", o.escape_default())),
            if entry {
                ""
            } else {
                ", and it does not read back as its own entry"
            },
        ),
        "schema names must not contain '=' nor equal the first segment of the other section's \
         prefix when a store's hash_prefix or schema_prefix is empty; column names and extensions \
         of schema-addressed objects must not contain '=', nor extensions end with .manifest.json",
    ))
}

/// Is `key` named like a hash-addressed object (DataJoint only collects files named by a hash)?
pub fn is_hash_object(key: &str) -> bool {
    is_content_hash(key.rsplit('/').next().unwrap_or(key))
}

/// The prefix to list for a section: `{prefix}/` (or the store root when `prefix` is empty)
/// followed by `schema/` when given.
pub fn section_prefix(prefix: &str, schema: Option<&str>) -> String {
    let mut p = String::new();
    if !prefix.is_empty() {
        p.push_str(prefix);
        p.push('/');
    }
    if let Some(s) = schema {
        p.push_str(s);
        p.push('/');
    }
    p
}

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

    #[test]
    fn sections_and_owner_schemas() {
        // DataJoint's defaults: _hash for hash objects, the root for schema-addressed ones.
        assert_eq!(section_of("_hash", "", "_hash/lab/abc"), Section::Hash);
        assert_eq!(
            section_of("_hash", "", "lab/rec/id=1/f_x.npy"),
            Section::Schema
        );
        assert_eq!(owner_schema("_hash", "", "_hash/lab/abc"), Some("lab"));
        assert_eq!(
            owner_schema("_hash", "", "lab/rec/id=1/f_x.npy"),
            Some("lab")
        );
        // A schema named like the hash prefix does not own the hash section.
        assert_eq!(
            owner_schema("_hash", "", "_hash/victim/abc"),
            Some("victim")
        );
        // Partition folders are skipped in the schema section.
        assert_eq!(
            owner_schema("_hash", "obj", "obj/year=2024/lab/rec/f"),
            Some("lab")
        );
        // An empty hash prefix: everything outside the schema prefix is hash-addressed.
        assert_eq!(section_of("", "obj", "lab/abc"), Section::Hash);
        assert_eq!(section_of("", "obj", "obj/lab/rec/f"), Section::Schema);
        assert_eq!(owner_schema("", "obj", "lab/abc"), Some("lab"));
        assert_eq!(owner_schema("", "obj", "obj/lab/rec/f"), Some("lab"));
        // Both empty: every path is hash-addressed, its first segment the schema.
        assert_eq!(owner_schema("", "", "lab/abc"), Some("lab"));
        assert_eq!(owner_schema("_hash", "obj", "elsewhere/x"), None);
    }

    /// Found by the `paths` fuzz target: with an empty hash_prefix, the hash objects of a
    /// schema named like the schema prefix ("g/<hash>") lie in the schema section, where
    /// owner_schema names the hash (or its first fold) as their schema: a schema of that name
    /// could vouch for them. Writes that would not read back are refused.
    #[test]
    fn fuzz_writes_must_read_back_as_their_schemas() {
        let hash = format!("g/{H}");
        assert_eq!(owner_schema("", "g", &hash), Some(H));
        let e = require_read_back("", "g", Section::Hash, "g", &hash).unwrap_err();
        assert!(e.to_string().contains("schema-addressed section"), "{e}");
        assert!(require_read_back("", "g", Section::Hash, "lab", &format!("lab/{H}")).is_ok());
        assert!(
            require_read_back("_hash", "g", Section::Hash, "g", &format!("_hash/g/{H}")).is_ok()
        );
        // Schema-addressed objects of a schema named like the hash prefix, with an empty
        // schema_prefix, lie in the hash section.
        assert!(
            require_read_back("_hash", "", Section::Schema, "_hash", "_hash/t/id=1/f_tok").is_err()
        );
        assert!(require_read_back("_hash", "", Section::Schema, "lab", "lab/t/id=1/f_tok").is_ok());
        // Both prefixes empty: the sections cannot be told apart, the owner schema still can.
        assert!(require_read_back("", "", Section::Schema, "lab", "lab/t/id=1/f_tok").is_ok());
        assert!(require_read_back("", "", Section::Schema, "lab", "other/t/id=1/f_tok").is_err());
        // '=' in a schema name reads as a partition folder; in a field, as a key folder.
        assert!(require_read_back(
            "_hash",
            "_schema",
            Section::Schema,
            "a=b",
            "_schema/a=b/t/id=1/f_tok"
        )
        .is_err());
        assert!(require_read_back(
            "_hash",
            "_schema",
            Section::Schema,
            "lab",
            "_schema/lab/t/id=1/f=x_tok"
        )
        .is_err());
        assert!(require_read_back(
            "_hash",
            "_schema",
            Section::Schema,
            "lab",
            "_schema/lab/t/id=1/f_tok.a=b"
        )
        .is_err());
        // An extension ending like a manifest reads as the manifest of another entry.
        assert!(require_read_back(
            "_hash",
            "_schema",
            Section::Schema,
            "lab",
            "_schema/lab/t/id=1/f_tok.manifest.json"
        )
        .is_err());
        // Partition folders and '=' in a table name are fine.
        assert!(require_read_back(
            "_hash",
            "_schema",
            Section::Schema,
            "lab",
            "_schema/s=1/lab/t/id=1/f_tok.npy"
        )
        .is_ok());
        assert!(require_read_back(
            "_hash",
            "_schema",
            Section::Schema,
            "lab",
            "_schema/lab/a=b/id=1/f_tok"
        )
        .is_ok());
        assert!(require_read_back(
            "_hash",
            "_schema",
            Section::Schema,
            "lab",
            "_schema/lab/t/f_tok"
        )
        .is_ok());
    }

    /// Found by the `paths` fuzz target: inside a folder entry named like a manifest
    /// (`f_x.manifest.json/`, e.g. an `<object@>` folder with that extension), owner_path cut the
    /// suffix off the folder, giving an owner that no reference to the folder covers, so the
    /// collector locked another stripe than a writer referencing the folder.
    #[test]
    fn fuzz_a_folder_named_like_a_manifest_owns_its_files() {
        let key = "_schema/lab/t/id=1/f_x.manifest.json/inner.tif";
        let owner = owner_path(Section::Schema, "_schema", key);
        assert_eq!(owner, "_schema/lab/t/id=1/f_x.manifest.json");
        assert!(reference_paths(key).any(|p| p == owner));
        let key = "//.manifest.json/";
        let owner = owner_path(Section::Schema, "", key);
        assert_eq!(owner, "//.manifest.json");
        assert!(reference_paths(key).any(|p| p == owner));
        // The manifest beside the folder still belongs to the folder.
        assert_eq!(
            owner_path(
                Section::Schema,
                "_schema",
                "_schema/lab/t/id=1/f_x.manifest.json.manifest.json"
            ),
            "_schema/lab/t/id=1/f_x.manifest.json"
        );
    }

    use super::*;
    use crate::backend::ClientSettings;
    use crate::spec::StoreSpec;
    use bytes::Bytes;
    use object_store::PutPayload;

    const H: &str = "lvauakv4jmvhnolrtwiraf6fsi";

    #[test]
    fn hash_objects_are_covered_exactly() {
        let mut refs = RefSet::default();
        refs.insert(&format!("_hash/lab/{H}"), Some(10));
        assert!(refs.covers(Section::Hash, &format!("_hash/lab/{H}")));
        assert!(!refs.covers(Section::Hash, &format!("_hash/lab/{H}/x")));
        assert!(!refs.covers(Section::Hash, &format!("_hash/other/{H}")));
        assert_eq!(refs.len(), 1);
        assert_eq!(refs.bytes(), 10);
        refs.insert(&format!("_hash/lab/{H}"), Some(10));
        assert_eq!((refs.len(), refs.bytes()), (1, 10));
    }

    #[test]
    fn schema_objects_follow_datajoint_coverage() {
        let mut refs = RefSet::default();
        refs.insert("_schema/lab/rec/id=1/traces_abcd1234.npy", None);
        refs.insert("_schema/lab/rec/id=1/movie_zz99zz99", None);
        let live = |k: &str| refs.covers(Section::Schema, k);
        assert!(live("_schema/lab/rec/id=1/traces_abcd1234.npy"));
        assert!(live("_schema/lab/rec/id=1/movie_zz99zz99/frame0.tif"));
        assert!(live("_schema/lab/rec/id=1/movie_zz99zz99/sub/dir/f"));
        assert!(live("_schema/lab/rec/id=1/movie_zz99zz99.manifest.json"));
        assert!(!live("_schema/lab/rec/id=1/traces_abcd1235.npy"));
        assert!(!live("_schema/lab/rec/id=1/movie_zz99zz99x/frame0.tif"));
        assert!(!live("_schema/lab/rec/id=2/traces_abcd1234.npy"));
    }

    #[test]
    fn owners_of_schema_objects() {
        let o = |k| owner_path(Section::Schema, "_schema", k);
        assert_eq!(
            o("_schema/lab/rec/id=1/traces_abcd1234.npy"),
            "_schema/lab/rec/id=1/traces_abcd1234.npy"
        );
        assert_eq!(
            o("_schema/lab/rec/id=1/s=a/movie_zz/frame0.tif"),
            "_schema/lab/rec/id=1/s=a/movie_zz"
        );
        assert_eq!(
            o("_schema/lab/rec/id=1/movie_zz.manifest.json"),
            "_schema/lab/rec/id=1/movie_zz"
        );
        // Partition folders come before the schema.
        assert_eq!(
            o("_schema/subject=m1/lab/rec/id=1/movie_zz/a/b"),
            "_schema/subject=m1/lab/rec/id=1/movie_zz"
        );
        // Keys off the layout own themselves.
        assert_eq!(o("_schema/lab/rec"), "_schema/lab/rec");
        assert_eq!(o("elsewhere/x"), "elsewhere/x");
        assert_eq!(
            owner_path(Section::Schema, "", "lab/rec/id=1/f_t/x"),
            "lab/rec/id=1/f_t"
        );
        assert_eq!(owner_path(Section::Hash, "_hash", "_hash/a/b"), "_hash/a/b");
    }

    #[test]
    fn schemas_of_listed_objects() {
        assert_eq!(
            schema_of(Section::Hash, "_hash", &format!("_hash/lab/{H}")),
            Some("lab")
        );
        assert_eq!(
            schema_of(
                Section::Schema,
                "_schema",
                "_schema/subject=m1/lab/rec/id=1/f_t"
            ),
            Some("lab")
        );
        assert_eq!(
            schema_of(Section::Schema, "", "lab/rec/id=1/f_t"),
            Some("lab")
        );
        assert_eq!(schema_of(Section::Hash, "_hash", "_hashx/lab"), None);
        assert!(is_hash_object(&format!("_hash/lab/ab/{H}")));
        assert!(!is_hash_object(&format!("_hash/lab/{H}.saving")));
        assert_eq!(section_prefix("_hash", Some("lab")), "_hash/lab/");
        assert_eq!(section_prefix("", Some("lab")), "lab/");
        assert_eq!(section_prefix("_hash", None), "_hash/");
        assert_eq!(untrash_key(&trash_key("_hash/a/b")), Some("_hash/a/b"));
        assert_eq!(untrash_key("_oas/trash/"), None);
    }

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
