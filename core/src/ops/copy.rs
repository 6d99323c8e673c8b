//! Copying the objects a reference names into another store, at the same relative path (moves
//! between tiers: `oas._copy_to_store`, `oas_move`).
//!
//! - [`CopyPlan`]: which reference shapes are copied (hash-addressed, `<npy@>`, `<object@>` files
//!   and folders; never `<filepath@>`), whether the path belongs where it claims in both stores,
//!   and the reference the copy gets ([`destination_reference`]).
//! - [`files_to_copy`]: the files a reference names, their sizes checked against it.
//! - [`copy_files`]: each file streamed from one store to the other, checked on the way (size
//!   always, MD5 for hash-addressed objects); a file larger than one part goes as an upload in
//!   parts ([`super::PartUpload`]), so memory holds a few parts however large the object.
//!   An object already at the destination path is kept when [`existing_acceptable`] says so.
//!   Nothing is ever deleted: the source's copy becomes the collector's once no row names it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{GetResultPayload, ObjectStoreExt, PutMode, PutPayload};
use serde_json::Value;

use super::existing_size;
use super::multipart::{unless_cancelled, PartPlan, PartUpload};
use crate::backend::Store;
use crate::error::OasError;
use crate::gc::{owner_schema, require_read_back, Section, MANIFEST_SUFFIX};
use crate::hash::ContentHasher;
use crate::reference::{HashRef, NpyRef};
use crate::spec::StoreSpec;

/// What a reference names, as a copy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// `<hash@>`, `<blob@>`, `<attach@>`: one object named by its content hash. A compressed
    /// one ([`crate::compress`]) is copied as it is stored: its frame, not the content.
    Hash {
        hash: String,
        size: u64,
        compressed: bool,
    },
    /// `<npy@>` (no recorded size) or an `<object@>` file. A compressed file
    /// ([`crate::compress`]) is copied as it is stored, like a compressed hash-addressed object.
    File { size: Option<u64>, compressed: bool },
    /// An `<object@>` folder: the files under `{path}/` and `{path}.manifest.json`.
    Folder {
        size: Option<u64>,
        item_count: Option<u64>,
    },
}

/// A reference to copy: its path, its store (`None`: the default store) and its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    pub path: String,
    pub store: Option<String>,
    pub shape: Shape,
}

fn refuse(message: impl Into<String>, hint: &str) -> OasError {
    OasError::invalid_argument_hint(message, hint)
}

impl CopyPlan {
    /// Read a reference taken from a row. `<filepath@>` values (user-managed files) and shapes
    /// pg_oas does not write are refused.
    pub fn from_json(v: &Value) -> Result<Self, OasError> {
        let obj = v.as_object().ok_or_else(|| {
            OasError::invalid_argument("invalid object reference: not a JSON object")
        })?;
        let has = |k: &str| obj.contains_key(k);
        if obj.get("hash").is_some_and(|h| !h.is_null()) {
            let r = HashRef::from_json(v)?;
            return Ok(CopyPlan {
                path: r.path.clone(),
                store: r.store_name().map(str::to_string),
                shape: Shape::Hash {
                    compressed: r.compressed(),
                    hash: r.hash,
                    size: r.size,
                },
            });
        }
        let general = crate::codec::ObjectRef::from_json(v)?;
        let shape = if has("dtype") && has("shape") {
            NpyRef::shape_of(v)?;
            Shape::File {
                size: general.size,
                compressed: false,
            }
        } else if has("ext") && has("item_count") {
            if general.is_dir {
                Shape::Folder {
                    size: general.size,
                    item_count: obj.get("item_count").and_then(Value::as_u64),
                }
            } else {
                Shape::File {
                    size: general.size,
                    compressed: general.compressed,
                }
            }
        } else if has("is_dir") && has("timestamp") {
            return Err(refuse(
                format!(
                    "\"{}\" is a <filepath@> value: user-managed files are not copied between stores",
                    general.path
                ),
                "copy the files yourself and register them in the other store with oas_filepath; only objects pg_oas manages (<hash@>, <blob@>, <attach@>, <npy@>, <object@>) are copied",
            ));
        } else {
            return Err(refuse(
                format!(
                    "the reference to \"{}\" is not of a shape pg_oas copies",
                    general.path
                ),
                "references of <hash@>, <blob@>, <attach@>, <npy@> and <object@> columns are copied; custom codecs' and <filepath@> values are not",
            ));
        };
        Ok(CopyPlan {
            path: general.path,
            store: general.store,
            shape,
        })
    }

    /// The size the reference records for its one file (hash-addressed objects, `<object@>`
    /// files); `None` for `<npy@>` files and folders, whose sizes only the store knows.
    pub fn recorded_size(&self) -> Option<u64> {
        match self.shape {
            Shape::Hash { size, .. } => Some(size),
            Shape::File { size, .. } => size,
            Shape::Folder { .. } => None,
        }
    }

    /// The section the object lies in.
    pub fn section(&self) -> Section {
        match self.shape {
            Shape::Hash { .. } => Section::Hash,
            _ => Section::Schema,
        }
    }

    /// Refuse a path that does not lie where its shape says in `spec`'s layout (the section,
    /// read back as its owner schema's), or that lies in pg_oas's own area or `filepath_prefix`.
    /// Checked for the source (a crafted path) and the destination (another layout).
    pub fn check_layout(&self, store: &str, spec: &StoreSpec) -> Result<(), OasError> {
        let hint = "objects are copied to the same relative path: both stores need the same hash_prefix and schema_prefix";
        let outside = self.path.starts_with("_oas/")
            || spec
                .filepath_prefix
                .as_deref()
                .is_some_and(|f| self.path.starts_with(&format!("{f}/")));
        let owner = owner_schema(&spec.hash_prefix, &spec.schema_prefix, &self.path);
        let fits = !outside
            && owner.is_some_and(|schema| {
                require_read_back(
                    &spec.hash_prefix,
                    &spec.schema_prefix,
                    self.section(),
                    schema,
                    &self.path,
                )
                .is_ok()
            });
        if fits {
            return Ok(());
        }
        Err(refuse(
            format!(
                "object path \"{}\" does not lie in a {} section of store \"{store}\"",
                self.path.escape_default(),
                match self.section() {
                    Section::Hash => "hash",
                    Section::Schema => "schema-addressed",
                }
            ),
            hint,
        ))
    }
}

/// The reference after its objects are copied into `store`: the same JSON, `store` replaced.
pub fn destination_reference(reference: &Value, store: &str) -> Value {
    let mut out = reference.clone();
    if let Some(obj) = out.as_object_mut() {
        obj.insert("store".into(), Value::String(store.to_string()));
    }
    out
}

/// One file to copy: its path (the same in both stores), its size, and for hash-addressed
/// objects the content hash its bytes must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFile {
    pub path: String,
    pub size: u64,
    pub hash: Option<String>,
}

/// An object already at the destination path (a hash-addressed copy of the same content, a
/// re-run after a crash) is kept when it has the size of the source. For a hash-addressed
/// object the path is the content hash and every writer checks its bytes, so the size is the
/// check, as for puts; a schema-addressed path has a fresh random token, so only an earlier
/// copy of this very object is there.
pub fn existing_acceptable(source_size: u64, found_size: u64) -> bool {
    source_size == found_size
}

/// A folder's files as listed, checked against what the reference records (number and total
/// size, where recorded).
pub fn check_folder(
    listed: &[(String, u64)],
    size: Option<u64>,
    item_count: Option<u64>,
) -> Result<(), String> {
    let total: u64 = listed.iter().map(|(_, s)| s).sum();
    let count = listed.len() as u64;
    if item_count.is_some_and(|n| n != count) {
        return Err(format!(
            "the folder has {count} files, the reference records {}",
            item_count.unwrap_or_default()
        ));
    }
    if size.is_some_and(|s| s != total) {
        return Err(format!(
            "the folder's files have {total} bytes, the reference records {}",
            size.unwrap_or_default()
        ));
    }
    Ok(())
}

fn mismatch(store: &Store, path: &str, reason: String) -> OasError {
    OasError::IntegrityMismatch {
        store: store.name.clone(),
        path: path.to_string(),
        reason,
    }
}

fn missing(store: &Store, path: &str) -> OasError {
    OasError::ObjectMissing {
        store: store.name.clone(),
        path: path.to_string(),
    }
}

/// The files `plan` names in `src`, checked against the reference: an object's size, a folder's
/// file count and total size (its manifest last, when it has one).
pub async fn files_to_copy(src: &Store, plan: &CopyPlan) -> Result<Vec<CopyFile>, OasError> {
    let path = &plan.path;
    let size_of = async |p: &str| {
        existing_size(src, &src.key(p)?, p)
            .await?
            .ok_or_else(|| missing(src, p))
    };
    match &plan.shape {
        Shape::Hash {
            size,
            compressed: true,
            ..
        }
        | Shape::File {
            size: Some(size),
            compressed: true,
        } => {
            // The frame is copied byte for byte; its size is bounded by the content's, and
            // reads check the frame's checksum (and a hash object's MD5, `ops::compressed`).
            let found = size_of(path).await?;
            if found > crate::compress::max_stored_size(*size) {
                let reason = format!(
                    "the compressed object has {found} bytes, more than {size} bytes of content can take"
                );
                return Err(mismatch(src, path, reason));
            }
            Ok(vec![CopyFile {
                path: path.clone(),
                size: found,
                hash: None,
            }])
        }
        Shape::Hash { hash, size, .. } => {
            let found = size_of(path).await?;
            if found != *size {
                let reason = format!("size is {found} bytes, the reference records {size}");
                return Err(mismatch(src, path, reason));
            }
            Ok(vec![CopyFile {
                path: path.clone(),
                size: found,
                hash: Some(hash.clone()),
            }])
        }
        Shape::File { size, .. } => {
            let found = size_of(path).await?;
            if size.is_some_and(|s| s != found) {
                let reason = format!(
                    "size is {found} bytes, the reference records {}",
                    size.unwrap_or_default()
                );
                return Err(mismatch(src, path, reason));
            }
            Ok(vec![CopyFile {
                path: path.clone(),
                size: found,
                hash: None,
            }])
        }
        Shape::Folder { size, item_count } => {
            let mut listed: Vec<(String, u64)> = crate::gc::list(src, &format!("{path}/"))
                .map_ok(|m| (m.location.to_string(), m.size))
                .try_collect()
                .await?;
            listed.sort();
            check_folder(&listed, *size, *item_count).map_err(|r| mismatch(src, path, r))?;
            let manifest = format!("{path}{MANIFEST_SUFFIX}");
            let manifest_size = existing_size(src, &src.key(&manifest)?, &manifest).await?;
            let mut files: Vec<CopyFile> = listed
                .into_iter()
                .map(|(path, size)| CopyFile {
                    path,
                    size,
                    hash: None,
                })
                .collect();
            // The manifest last: at the destination, a folder with a manifest is complete.
            files.extend(manifest_size.map(|size| CopyFile {
                path: manifest,
                size,
                hash: None,
            }));
            Ok(files)
        }
    }
}

/// Copy `files` from `src` to `dst` (each at its own path), one after the other. A file larger
/// than one part of `plan` is streamed as an upload in parts; smaller ones are read whole and
/// written with a conditional create. `cancel` ends the copy ([`OasError::Cancelled`]), aborting
/// an upload in parts.
pub async fn copy_files<C: Future<Output = ()>>(
    src: Arc<Store>,
    dst: Arc<Store>,
    files: Vec<CopyFile>,
    plan: PartPlan,
    cancel: C,
) -> Result<(), OasError> {
    let mut cancel = std::pin::pin!(cancel);
    for f in &files {
        copy_file(&src, &dst, f, plan, cancel.as_mut()).await?;
    }
    Ok(())
}

/// Checks the bytes of one file as they pass: their number, and MD5 when a hash is expected.
struct Check<'a> {
    store: &'a Store,
    file: &'a CopyFile,
    seen: u64,
    hasher: Option<ContentHasher>,
}

impl<'a> Check<'a> {
    fn new(store: &'a Store, file: &'a CopyFile) -> Self {
        Check {
            store,
            file,
            seen: 0,
            hasher: file.hash.as_ref().map(|_| ContentHasher::new()),
        }
    }

    fn update(&mut self, chunk: &[u8]) -> Result<(), OasError> {
        self.seen += chunk.len() as u64;
        if self.seen > self.file.size {
            return Err(self.size_mismatch());
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(chunk);
        }
        Ok(())
    }

    fn size_mismatch(&self) -> OasError {
        let reason = format!(
            "{} bytes were read, the object has {}",
            self.seen, self.file.size
        );
        mismatch(self.store, &self.file.path, reason)
    }

    fn finish(self) -> Result<(), OasError> {
        if self.seen != self.file.size {
            return Err(self.size_mismatch());
        }
        if let (Some(h), Some(expected)) = (self.hasher, self.file.hash.as_ref()) {
            let actual = h.finish();
            if &actual != expected {
                let reason = format!("content hash is {actual}, the reference records {expected}");
                return Err(mismatch(self.store, &self.file.path, reason));
            }
        }
        Ok(())
    }
}

/// Bytes of a local file read at a time.
const FILE_PART: usize = 1 << 20;

/// The bytes of a source object, chunk by chunk.
enum Source {
    File {
        file: Arc<std::fs::File>,
        offset: u64,
        path: std::path::PathBuf,
    },
    Stream(futures::stream::BoxStream<'static, object_store::Result<Bytes>>),
}

impl Source {
    async fn open(store: &Store, path: &str) -> Result<Self, OasError> {
        let key = store.key(path)?;
        let got = store
            .client()
            .get(&key)
            .await
            .map_err(|e| store.error(e, "get", path))?;
        Ok(match got.payload {
            GetResultPayload::File(file, path) => Source::File {
                file: Arc::new(file),
                offset: 0,
                path,
            },
            GetResultPayload::Stream(s) => Source::Stream(s),
        })
    }

    async fn next(&mut self, store: &Store, rel: &str) -> Result<Option<Bytes>, OasError> {
        match self {
            Source::Stream(s) => s.try_next().await.map_err(|e| store.error(e, "get", rel)),
            Source::File { file, offset, path } => {
                use std::os::unix::fs::FileExt;
                let (f, at) = (file.clone(), *offset);
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; FILE_PART];
                    let n = loop {
                        match f.read_at(&mut buf, at) {
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            r => break r?,
                        }
                    };
                    buf.truncate(n);
                    Ok::<_, std::io::Error>(buf)
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|e| store.error(super::read::io_error(path, e), "get", rel))?;
                *offset += read.len() as u64;
                Ok((!read.is_empty()).then(|| Bytes::from(read)))
            }
        }
    }
}

/// Copy one file (see [`copy_files`]).
async fn copy_file(
    src: &Store,
    dst: &Store,
    f: &CopyFile,
    plan: PartPlan,
    mut cancel: Pin<&mut impl Future<Output = ()>>,
) -> Result<(), OasError> {
    let key = dst.key(&f.path)?;
    if let Some(found) =
        unless_cancelled(cancel.as_mut(), existing_size(dst, &key, &f.path)).await?
    {
        return accept_existing(dst, f, found);
    }
    let mut source = unless_cancelled(cancel.as_mut(), Source::open(src, &f.path)).await?;
    let mut check = Check::new(src, f);
    if f.size <= plan.size as u64 {
        let mut data = Vec::with_capacity(f.size as usize);
        unless_cancelled(cancel.as_mut(), async {
            while let Some(chunk) = source.next(src, &f.path).await? {
                check.update(&chunk)?;
                data.extend_from_slice(&chunk);
            }
            Ok(())
        })
        .await?;
        check.finish()?;
        return unless_cancelled(cancel, create(dst, f, Bytes::from(data))).await;
    }
    let mut up = unless_cancelled(cancel.as_mut(), PartUpload::start(dst, &f.path, plan)).await?;
    loop {
        let next = unless_cancelled(cancel.as_mut(), source.next(src, &f.path)).await;
        let Some(chunk) = up.abandon_on_error(next).await? else {
            break;
        };
        let checked = check.update(&chunk);
        up.abandon_on_error(checked).await?;
        up.write_or_abandon(&chunk, cancel.as_mut()).await?;
    }
    // Nothing is published unless every byte was right.
    up.abandon_on_error(check.finish()).await?;
    up.finish_or_abandon(cancel).await
}

fn accept_existing(dst: &Store, f: &CopyFile, found: u64) -> Result<(), OasError> {
    if existing_acceptable(f.size, found) {
        return Ok(());
    }
    Err(OasError::IntegrityMismatch {
        store: dst.name.clone(),
        path: f.path.clone(),
        reason: format!(
            "an object of {found} bytes is already at the destination path, the copy has {}; it is left alone",
            f.size
        ),
    })
}

/// Write a small file with a conditional create; an object that arrived meanwhile is judged as
/// one found before.
async fn create(dst: &Store, f: &CopyFile, data: Bytes) -> Result<(), OasError> {
    let key = dst.key(&f.path)?;
    let payload = PutPayload::from_bytes(data);
    let client = dst.client();
    match client
        .put_opts(&key, payload.clone(), PutMode::Create.into())
        .await
    {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => {
            match existing_size(dst, &key, &f.path).await? {
                Some(found) => accept_existing(dst, f, found),
                None => Err(missing(dst, &f.path)),
            }
        }
        Err(object_store::Error::NotImplemented { .. }) => client
            .put(&key, payload)
            .await
            .map(drop)
            .map_err(|e| dst.error(e, "put", &f.path)),
        Err(e) => Err(dst.error(e, "put", &f.path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{local_store, memory_store};
    use serde_json::json;

    const H: &str = "lvauakv4jmvhnolrtwiraf6fsi"; // content_hash(b"hello")

    fn hash_ref() -> Value {
        json!({"hash": H, "path": format!("_hash/lab/{H}"), "schema": "lab", "store": "a", "size": 5})
    }

    #[test]
    fn shapes() {
        let p = CopyPlan::from_json(&hash_ref()).unwrap();
        assert_eq!(
            p.shape,
            Shape::Hash {
                hash: H.into(),
                size: 5,
                compressed: false
            }
        );
        assert_eq!(
            (p.store.as_deref(), p.section()),
            (Some("a"), Section::Hash)
        );
        let npy = json!({"path": "_schema/lab/t/id=1/x_AbCd1234.npy", "store": "a", "dtype": "int16", "shape": [2]});
        assert_eq!(
            CopyPlan::from_json(&npy).unwrap().shape,
            Shape::File {
                size: None,
                compressed: false
            }
        );
        let file = json!({"path": "_schema/lab/t/id=1/f_AbCd1234.txt", "store": "", "size": 5, "ext": ".txt",
                          "is_dir": false, "item_count": null, "timestamp": "t"});
        let p = CopyPlan::from_json(&file).unwrap();
        assert_eq!(
            (p.shape, p.store),
            (
                Shape::File {
                    size: Some(5),
                    compressed: false
                },
                None
            )
        );
        let mut zipped = file.clone();
        zipped["path"] = json!("_schema/lab/t/id=1/f_AbCd1234.txt.zst");
        zipped["compression"] = json!("zstd");
        assert_eq!(
            CopyPlan::from_json(&zipped).unwrap().shape,
            Shape::File {
                size: Some(5),
                compressed: true
            }
        );
        let dir = json!({"path": "_schema/lab/t/id=1/d_AbCd1234", "store": "a", "size": 3, "ext": null,
                         "is_dir": true, "item_count": 2, "timestamp": "t"});
        assert_eq!(
            CopyPlan::from_json(&dir).unwrap().shape,
            Shape::Folder {
                size: Some(3),
                item_count: Some(2)
            }
        );
        assert_eq!(
            CopyPlan::from_json(&dir).unwrap().section(),
            Section::Schema
        );
    }

    #[test]
    fn filepath_custom_and_crafted_references_are_refused() {
        let fp = json!({"path": "raw/a.tif", "store": "a", "size": 10, "is_dir": false, "timestamp": "x"});
        let e = CopyPlan::from_json(&fp).unwrap_err();
        assert!(e.to_string().contains("<filepath@>"), "{e}");
        assert!(e.hint().unwrap().contains("oas_filepath"));
        let custom = json!({"path": "_schema/lab/t/id=1/g_x", "store": "a"});
        assert!(CopyPlan::from_json(&custom)
            .unwrap_err()
            .to_string()
            .contains("not of a shape"));
        for bad in ["../etc/passwd", "/etc/passwd", "_schema/../../x"] {
            let mut r = json!({"path": bad, "store": "a", "size": 1, "ext": null, "is_dir": false, "item_count": null, "timestamp": "t"});
            assert!(CopyPlan::from_json(&r).is_err(), "{bad}");
            r = json!({"hash": H, "path": format!("{bad}/{H}"), "schema": "lab", "store": "a", "size": 5});
            assert!(CopyPlan::from_json(&r).is_err(), "{bad}");
        }
        assert!(CopyPlan::from_json(&json!("x")).is_err());
    }

    fn spec(extra: Value) -> StoreSpec {
        let mut s = json!({"protocol": "file", "location": "/d"});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        StoreSpec::from_json(&s).unwrap()
    }

    #[test]
    fn layouts() {
        let plain = spec(json!({}));
        let p = CopyPlan::from_json(&hash_ref()).unwrap();
        p.check_layout("a", &plain).unwrap();
        // Another hash_prefix: the same path would not be a hash object there.
        let other = spec(json!({"hash_prefix": "h", "schema_prefix": "s"}));
        assert!(p
            .check_layout("b", &other)
            .unwrap_err()
            .to_string()
            .contains("does not lie in a hash section of store \"b\""));
        // A schema-addressed shape whose path is in the hash section, pg_oas's own area, or the
        // filepath section.
        let mk = |path: &str| {
            CopyPlan::from_json(&json!({"path": path, "store": "a", "size": 1, "ext": null,
                "is_dir": false, "item_count": null, "timestamp": "t"}))
            .unwrap()
        };
        mk("_schema/lab/t/id=1/f_AbCd1234")
            .check_layout("a", &plain)
            .unwrap();
        assert!(mk(&format!("_hash/lab/{H}"))
            .check_layout("a", &plain)
            .is_err());
        assert!(mk("_oas/uploads/x").check_layout("a", &plain).is_err());
        let fp = spec(json!({"filepath_prefix": "raw"}));
        assert!(mk("raw/lab/t/id=1/f_x").check_layout("a", &fp).is_err());
    }

    #[test]
    fn destination_reference_changes_only_the_store() {
        let mut r = hash_ref();
        r["extra"] = json!({"k": [1, 2]});
        let d = destination_reference(&r, "cold");
        let mut want = r.clone();
        want["store"] = json!("cold");
        assert_eq!(d, want);
        let dflt = json!({"path": "p", "store": null, "dtype": "int8", "shape": []});
        assert_eq!(destination_reference(&dflt, "b")["store"], json!("b"));
    }

    #[test]
    fn existing_and_folder_checks() {
        assert!(existing_acceptable(5, 5));
        assert!(!existing_acceptable(5, 4));
        let listed = vec![("d/a".to_string(), 1), ("d/b".to_string(), 2)];
        check_folder(&listed, Some(3), Some(2)).unwrap();
        check_folder(&listed, None, None).unwrap();
        assert!(check_folder(&listed, Some(4), Some(2))
            .unwrap_err()
            .contains("3 bytes"));
        assert!(check_folder(&listed, Some(3), Some(3))
            .unwrap_err()
            .contains("2 files"));
    }

    async fn copy(src: &Arc<Store>, dst: &Arc<Store>, r: &Value) -> Result<(), OasError> {
        let files = files_to_copy(src, &CopyPlan::from_json(r)?).await?;
        copy_files(
            src.clone(),
            dst.clone(),
            files,
            PartPlan::new(0, 2),
            futures::future::pending(),
        )
        .await
    }

    #[tokio::test]
    async fn a_compressed_object_is_copied_as_its_frame() {
        let dir = tempfile::tempdir().unwrap();
        let mut zipped = local_store(dir.path(), json!({}));
        zipped.spec.compression = Some(crate::compress::Zstd { level: 3 });
        let (zipped, mem) = (Arc::new(zipped), Arc::new(memory_store()));
        let data: Vec<u8> = (0..200_000u32).map(|i| ((i / 40) % 5) as u8).collect();
        let (r, _) = crate::ops::put_hash(&zipped, "lab", Bytes::from(data.clone()))
            .await
            .unwrap();
        assert!(r.compressed());
        copy(&zipped, &mem, &r.to_json()).await.unwrap();
        // The destination holds the same frame, and reads back the content.
        let stored = std::fs::read(dir.path().join(&r.path)).unwrap();
        let copied = mem.client().get(&mem.key(&r.path).unwrap()).await.unwrap();
        assert_eq!(copied.bytes().await.unwrap().as_ref(), stored.as_slice());
        assert_eq!(crate::ops::get_hash(&mem, &r, true).await.unwrap(), data);
        // A frame larger than the content could compress to is refused before anything is sent.
        std::fs::write(dir.path().join(&r.path), vec![0u8; 300_000]).unwrap();
        let other = Arc::new(memory_store());
        let e = copy(&zipped, &other, &r.to_json()).await.unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
    }

    #[tokio::test]
    async fn a_compressed_object_file_is_copied_as_its_frame() {
        use crate::reference::{ObjectKind, ObjectValueRef};
        let dir = tempfile::tempdir().unwrap();
        let mut zipped = local_store(dir.path(), json!({}));
        zipped.spec.compression = Some(crate::compress::Zstd { level: 3 });
        let (zipped, mem) = (Arc::new(zipped), Arc::new(memory_store()));
        let data: Vec<u8> = (0..200_000u32).map(|i| ((i / 40) % 5) as u8).collect();
        let kind = ObjectKind::File {
            ext: Some(".bin".into()),
        };
        let r = ObjectValueRef::new(
            "_schema/lab/t/id=1/f_AbCd1234.bin".into(),
            "a",
            200_000,
            kind,
            "t".into(),
        )
        .compressed();
        let frame = crate::ops::compress_for(&zipped, Bytes::from(data.clone()))
            .await
            .unwrap();
        assert!(frame.len() < 20_000);
        crate::ops::put_new(&zipped, &r.path, frame.clone())
            .await
            .unwrap();
        copy(&zipped, &mem, &r.to_json()).await.unwrap();
        // The destination holds the same frame, and reads back the content.
        let copied = mem.client().get(&mem.key(&r.path).unwrap()).await.unwrap();
        assert_eq!(copied.bytes().await.unwrap(), frame);
        let back = crate::ops::get_compressed_file(&mem, &r.path, 200_000)
            .await
            .unwrap();
        assert_eq!(back, data);
        // A frame larger than the content could compress to is refused before anything is sent.
        std::fs::write(dir.path().join(&r.path), vec![0u8; 300_000]).unwrap();
        let other = Arc::new(memory_store());
        let e = copy(&zipped, &other, &r.to_json()).await.unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        // And a damaged frame is an error when read, never content.
        let mut bad = frame.to_vec();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        std::fs::write(dir.path().join(&r.path), &bad).unwrap();
        let e = crate::ops::get_compressed_file(&zipped, &r.path, 200_000)
            .await
            .unwrap_err();
        assert!(matches!(e, OasError::IntegrityMismatch { .. }), "{e}");
    }

    #[tokio::test]
    async fn copies_small_large_and_folders_between_file_and_cloud() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(local_store(dir.path(), json!({})));
        let mem = Arc::new(memory_store());
        // A hash object of more than one part (5 MiB parts): an upload in parts.
        let big: Vec<u8> = (0..12_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let (r, _) = crate::ops::put_hash(&file, "lab", Bytes::from(big.clone()))
            .await
            .unwrap();
        copy(&file, &mem, &r.to_json()).await.unwrap();
        assert_eq!(crate::ops::get_hash(&mem, &r, true).await.unwrap(), big);
        // And back into another file store, from the cloud stream.
        let dir2 = tempfile::tempdir().unwrap();
        let file2 = Arc::new(local_store(dir2.path(), json!({})));
        copy(&mem, &file2, &r.to_json()).await.unwrap();
        assert_eq!(std::fs::read(dir2.path().join(&r.path)).unwrap(), big);
        // Again: the copy there is kept.
        copy(&mem, &file2, &r.to_json()).await.unwrap();
        // A folder with its manifest.
        let base = "_schema/lab/t/id=1/d_AbCd1234";
        for (p, b) in [("a", &b"x"[..]), ("s/b", b"yz")] {
            crate::ops::put_new(&file, &format!("{base}/{p}"), Bytes::from_static(b))
                .await
                .unwrap();
        }
        let manifest = format!("{base}{MANIFEST_SUFFIX}");
        crate::ops::put_new(&file, &manifest, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let folder = json!({"path": base, "store": "main", "size": 3, "ext": null, "is_dir": true,
                            "item_count": 2, "timestamp": "t"});
        copy(&file, &mem, &folder).await.unwrap();
        let got = |p: String| {
            let mem = mem.clone();
            async move {
                mem.client()
                    .get(&mem.key(&p).unwrap())
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            }
        };
        assert_eq!(got(format!("{base}/s/b")).await, Bytes::from_static(b"yz"));
        assert_eq!(got(manifest).await, Bytes::from_static(b"{}"));
        // A reference that records another item count is refused before anything is copied.
        let mut wrong = folder.clone();
        wrong["item_count"] = json!(3);
        let e = copy(&file, &file2, &wrong).await.unwrap_err();
        assert!(matches!(e, OasError::IntegrityMismatch { .. }), "{e:?}");
        assert!(!dir2.path().join(base).exists());
    }

    #[tokio::test]
    async fn wrong_bytes_are_never_published() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(local_store(dir.path(), json!({})));
        let mem = Arc::new(memory_store());
        // The object at a hash path does not have that hash (same size): refused, nothing written.
        let path = format!("_hash/lab/{H}");
        crate::ops::put_new(&file, &path, Bytes::from_static(b"HELLO"))
            .await
            .unwrap();
        let e = copy(&file, &mem, &hash_ref()).await.unwrap_err();
        assert!(e.to_string().contains("content hash"), "{e}");
        assert!(crate::ops::stat(&mem, &path).await.unwrap().is_none());
        // The same, larger than a part: the upload in parts is abandoned.
        let data = vec![3u8; 6 << 20];
        let h = crate::hash::content_hash(&data);
        let p2 = format!("_hash/lab/{h}");
        let mut other = data.clone();
        other[0] = 4;
        crate::ops::put_new(&file, &p2, Bytes::from(other))
            .await
            .unwrap();
        let r2 =
            json!({"hash": h, "path": p2, "schema": "lab", "store": "main", "size": data.len()});
        assert!(copy(&file, &mem, &r2).await.is_err());
        assert!(crate::ops::stat(&mem, &p2).await.unwrap().is_none());
        // An object of another size at the destination is an error, and is left alone.
        let good = crate::ops::put_hash(&file, "lab", Bytes::from_static(b"hello!"))
            .await
            .unwrap()
            .0;
        crate::ops::put_new(&mem, &good.path, Bytes::from_static(b"xx"))
            .await
            .unwrap();
        let e = copy(&file, &mem, &good.to_json()).await.unwrap_err();
        assert!(e.to_string().contains("already at the destination"), "{e}");
        assert_eq!(crate::ops::object_size(&mem, &good.path).await.unwrap(), 2);
    }
}
