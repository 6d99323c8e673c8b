//! Object operations, written once for every backend. Async, no PostgreSQL: the extension drives
//! them through its cancellable `block_on`, and the unit tests drive them on a local store.

use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::backend::Store;
use crate::codec::ObjectRef;
use crate::error::OasError;
use crate::hash::ContentHasher;
use crate::path::hash_path;
use crate::reference::HashRef;
use crate::stage::{Body, Prepared, STAGE_MIN};

/// How a hash-addressed put ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Uploaded,
    /// An object with this hash and size was already there; nothing was sent.
    Deduplicated,
    /// An object was at the path with the wrong size (a damaged copy); it was replaced.
    Repaired,
}

/// Store `data` as a hash-addressed object of `schema` (DataJoint's `put_hash`): the path is derived
/// from the content, so equal bytes are stored once per schema and store.
pub async fn put_hash(
    store: &Store,
    schema: &str,
    data: Bytes,
) -> Result<(HashRef, PutOutcome), OasError> {
    let hash = content_hash_yielding(&data).await;
    put_prepared(
        store,
        schema,
        Prepared {
            hash,
            size: data.len() as u64,
            body: Body::Owned(data),
        },
    )
    .await
}

/// Publish a payload whose hash is known (see [`crate::stage::prepare`]).
///
/// An owned body is written with a conditional create where the backend has it, after a `head`
/// that skips the upload when the object is already there; a staged body (file stores) is moved
/// into place with an atomic rename-if-absent. Either way a concurrent writer of the same content
/// never sees a partial object, no write replaces a good copy, and a copy of the wrong size (a
/// damaged object) is replaced.
pub async fn put_prepared(
    store: &Store,
    schema: &str,
    p: Prepared,
) -> Result<(HashRef, PutOutcome), OasError> {
    let checked = hash_path(
        &store.spec.hash_prefix,
        schema,
        &p.hash,
        store.spec.subfolding.as_deref(),
    )
    .and_then(|path| {
        crate::gc::require_read_back(
            &store.spec.hash_prefix,
            &store.spec.schema_prefix,
            crate::gc::Section::Hash,
            schema,
            &path,
        )?;
        let key = store.key(&path)?;
        Ok((path, key))
    });
    let (path, key) = match checked {
        Ok(v) => v,
        Err(e) => {
            // Not published: the staged copy goes now rather than at the collector's sweep.
            if let Body::Staged(staging) = &p.body {
                if let Ok(k) = store.key(staging) {
                    let _ = store.client().delete(&k).await;
                }
            }
            return Err(e);
        }
    };
    let reference = HashRef {
        hash: p.hash,
        path: path.clone(),
        schema: schema.to_string(),
        store: Some(store.name.clone()),
        size: p.size,
    };
    let outcome = match p.body {
        Body::Owned(data) => put_owned(store, &key, &path, p.size, data).await?,
        Body::Staged(staging) => publish_staged(store, &key, &path, p.size, &staging).await?,
    };
    Ok((reference, outcome))
}

async fn put_owned(
    store: &Store,
    key: &ObjectPath,
    path: &str,
    size: u64,
    data: Bytes,
) -> Result<PutOutcome, OasError> {
    let payload = PutPayload::from_bytes(data);
    // A large payload is looked for first, so a duplicate is never sent twice. A small one goes
    // straight to a conditional create: one round trip for a new object instead of two.
    if size >= STAGE_MIN as u64 {
        if let Some(existing) = existing_size(store, key, path).await? {
            return keep_or_replace(store, key, path, size, existing, payload).await;
        }
    }
    match store
        .client()
        .put_opts(key, payload.clone(), PutMode::Create.into())
        .await
    {
        Ok(_) => Ok(PutOutcome::Uploaded),
        // Already there (stored earlier, or by a concurrent writer): keep it if it is intact.
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => {
            match existing_size(store, key, path).await? {
                Some(existing) => keep_or_replace(store, key, path, size, existing, payload).await,
                None => plain_put(store, key, path, payload)
                    .await
                    .map(|()| PutOutcome::Uploaded),
            }
        }
        // Backends without conditional create: look, then write.
        Err(object_store::Error::NotImplemented { .. }) => {
            match existing_size(store, key, path).await? {
                Some(existing) => keep_or_replace(store, key, path, size, existing, payload).await,
                None => plain_put(store, key, path, payload)
                    .await
                    .map(|()| PutOutcome::Uploaded),
            }
        }
        // The write failed (for instance a directory another client created that we may not write
        // into); if an intact copy is there anyway, that is all a put needs.
        Err(e) => match existing_size(store, key, path).await {
            Ok(Some(existing)) if existing == size => Ok(PutOutcome::Deduplicated),
            _ => Err(store.error(e, "put", path)),
        },
    }
}

/// An object of the right size is the same content (the path is its hash): keep it. Any other
/// size is a damaged copy: replace it.
async fn keep_or_replace(
    store: &Store,
    key: &ObjectPath,
    path: &str,
    size: u64,
    existing: u64,
    payload: PutPayload,
) -> Result<PutOutcome, OasError> {
    if existing == size {
        return Ok(PutOutcome::Deduplicated);
    }
    plain_put(store, key, path, payload).await?;
    Ok(PutOutcome::Repaired)
}

async fn plain_put(
    store: &Store,
    key: &ObjectPath,
    path: &str,
    payload: PutPayload,
) -> Result<(), OasError> {
    store
        .client()
        .put(key, payload)
        .await
        .map(|_| ())
        .map_err(|e| store.error(e, "put", path))
}

async fn publish_staged(
    store: &Store,
    key: &ObjectPath,
    path: &str,
    size: u64,
    staging: &str,
) -> Result<PutOutcome, OasError> {
    let staged = store.key(staging)?;
    let c = store.client();
    let outcome = match c.rename_if_not_exists(&staged, key).await {
        Ok(()) => return Ok(PutOutcome::Uploaded),
        Err(object_store::Error::AlreadyExists { .. }) => {
            match existing_size(store, key, path).await {
                Ok(Some(s)) if s == size => Ok(PutOutcome::Deduplicated),
                Ok(_) => c
                    .rename(&staged, key)
                    .await
                    .map(|()| PutOutcome::Repaired)
                    .map_err(|e| store.error(e, "rename", path)),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(store.error(e, "rename", path)),
    };
    // The staged copy was not needed (or could not be published): remove it.
    if !matches!(outcome, Ok(PutOutcome::Repaired)) {
        let _ = c.delete(&staged).await;
    }
    outcome
}

/// The size of the object at `key`, or `None` when there is none.
async fn existing_size(
    store: &Store,
    key: &ObjectPath,
    path: &str,
) -> Result<Option<u64>, OasError> {
    match store.client().head(key).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store.diagnose_forbidden(store.error(e, "head", path)).await),
    }
}

/// Bytes hashed between two yields: a few milliseconds of work, so a waiting caller (the query
/// cancel watch in the extension) gets to run while a large payload is hashed.
const HASH_SLICE: usize = 4 << 20;

/// [`crate::hash::content_hash`], yielding to the runtime every [`HASH_SLICE`] bytes.
pub async fn content_hash_yielding(data: &[u8]) -> String {
    let mut hasher = ContentHasher::new();
    for chunk in data.chunks(HASH_SLICE) {
        hasher.update(chunk);
        if data.len() > HASH_SLICE {
            tokio::task::yield_now().await;
        }
    }
    hasher.finish()
}

/// Read a hash-addressed object and check it against its reference: size always (before any
/// byte is read, from the object's metadata, and again at the end), MD5 when `verify`. Network
/// streams are hashed chunk by chunk as they arrive, so hashing overlaps the transfer.
pub async fn get_hash(store: &Store, r: &HashRef, verify: bool) -> Result<Vec<u8>, OasError> {
    let key = store.key(&r.path)?;
    let err = |e| store.error(e, "get", &r.path);
    let mismatch = |reason: String| OasError::IntegrityMismatch {
        store: store.name.clone(),
        path: r.path.clone(),
        reason,
    };
    let size_mismatch = |size: u64| {
        mismatch(format!(
            "size is {size} bytes, the reference records {}",
            r.size
        ))
    };

    let result = store.client().get(&key).await.map_err(err)?;
    if result.meta.size != r.size {
        return Err(size_mismatch(result.meta.size));
    }
    let capacity = usize::try_from(r.size).map_err(|_| size_mismatch(r.size))?;
    let (data, actual) = if matches!(result.payload, GetResultPayload::File(..)) {
        // A local file: one read (object_store does it off the runtime thread), then the hash.
        let data = Vec::from(result.bytes().await.map_err(err)?);
        let actual = if verify {
            Some(content_hash_yielding(&data).await)
        } else {
            None
        };
        (data, actual)
    } else {
        let mut data = Vec::with_capacity(capacity);
        let mut hasher = verify.then(ContentHasher::new);
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.try_next().await.map_err(err)? {
            if data.len() + chunk.len() > capacity {
                return Err(size_mismatch((data.len() + chunk.len()) as u64));
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            data.extend_from_slice(&chunk);
        }
        (data, hasher.map(ContentHasher::finish))
    };
    if data.len() as u64 != r.size {
        return Err(size_mismatch(data.len() as u64));
    }
    if let Some(actual) = actual {
        if actual != r.hash {
            return Err(mismatch(format!(
                "content hash is {actual}, the reference records {}",
                r.hash
            )));
        }
    }
    Ok(data)
}

/// Check that the object a reference names is there and intact: it exists (a folder: has at
/// least one object under it), its size matches where the reference records one, and, when
/// `check_content` and the reference records a hash, its MD5 matches. `Ok(None)` when intact,
/// `Ok(Some(problem))` when not; `Err` when the store could not be asked.
pub async fn check_reference(
    store: &Store,
    r: &ObjectRef,
    check_content: bool,
) -> Result<Option<String>, OasError> {
    let key = store.key(&r.path)?;
    if r.is_dir {
        let mut listing = store.client().list(Some(&key));
        return match listing.try_next().await {
            Ok(Some(_)) => Ok(None),
            Ok(None) => Ok(Some("missing: no objects under this folder".into())),
            Err(e) => Err(store.error(e, "list", &r.path)),
        };
    }
    let size = match existing_size(store, &key, &r.path).await? {
        None => return Ok(Some("missing".into())),
        Some(s) => s,
    };
    if let Some(expected) = r.size {
        if size != expected {
            return Ok(Some(format!(
                "size is {size} bytes, the reference records {expected}"
            )));
        }
    }
    if let (true, Some(hash)) = (check_content, &r.hash) {
        let as_hash_ref = HashRef {
            hash: hash.clone(),
            path: r.path.clone(),
            schema: String::new(),
            store: r.store.clone(),
            size,
        };
        return match get_hash(store, &as_hash_ref, true).await {
            Ok(_) => Ok(None),
            Err(OasError::IntegrityMismatch { reason, .. }) => Ok(Some(reason)),
            Err(OasError::ObjectMissing { .. }) => Ok(Some("missing".into())),
            Err(e) => Err(e),
        };
    }
    Ok(None)
}

/// Write a new object at `path` (a schema-addressed path with a fresh token): a conditional create,
/// so an existing object is never replaced.
pub async fn put_new(store: &Store, path: &str, data: Bytes) -> Result<(), OasError> {
    let key = store.key(path)?;
    match store
        .client()
        .put_opts(
            &key,
            PutPayload::from_bytes(data.clone()),
            PutMode::Create.into(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(object_store::Error::NotImplemented { .. }) => {
            plain_put(store, &key, path, PutPayload::from_bytes(data)).await
        }
        Err(e) => Err(store.error(e, "put", path)),
    }
}

/// Size of the object at `path`.
pub async fn object_size(store: &Store, path: &str) -> Result<u64, OasError> {
    let key = store.key(path)?;
    existing_size(store, &key, path)
        .await?
        .ok_or_else(|| OasError::ObjectMissing {
            store: store.name.clone(),
            path: path.to_string(),
        })
}

/// Read `range` of the object at `path` (clamped to the object's end).
pub async fn read_range(
    store: &Store,
    path: &str,
    range: std::ops::Range<u64>,
) -> Result<Bytes, OasError> {
    let key = store.key(path)?;
    if range.is_empty() {
        return Ok(Bytes::new());
    }
    store
        .client()
        .get_range(&key, range)
        .await
        .map_err(|e| store.error(e, "get_range", path))
}

/// Requests in flight at once when reading many ranges of one object.
const RANGE_CONCURRENCY: usize = 32;

/// Ranges longer than this are fetched as several parts at once.
pub const RANGE_PART: u64 = 8 << 20;

/// Read `ranges` of one object exactly as given (no merging: the caller decided the ranges),
/// several requests at a time, returning one buffer per range in the given order. A range longer
/// than `part` is fetched as parts of `part` bytes in parallel and joined.
pub async fn read_ranges(
    store: &Store,
    path: &str,
    ranges: &[std::ops::Range<u64>],
    part: u64,
) -> Result<Vec<Bytes>, OasError> {
    use futures::StreamExt;
    let key = store.key(path)?;
    let key = &key;
    let part = part.max(1);
    // (index of the range it belongs to, sub-range)
    let pieces: Vec<(usize, std::ops::Range<u64>)> = ranges
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            let starts = (r.start..r.end).step_by(part as usize);
            starts.map(move |s| (i, s..(s + part).min(r.end)))
        })
        .collect();
    let fetched: Vec<Bytes> = futures::stream::iter(pieces.iter().map(|(_, r)| r.clone()))
        .map(|r| async move {
            store
                .client()
                .get_range(key, r)
                .await
                .map_err(|e| store.error(e, "get_range", path))
        })
        .buffered(RANGE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut out: Vec<Vec<Bytes>> = vec![Vec::new(); ranges.len()];
    for ((i, _), bytes) in pieces.into_iter().zip(fetched) {
        out[i].push(bytes);
    }
    Ok(out
        .into_iter()
        .map(|mut parts| match parts.len() {
            0 => Bytes::new(),
            1 => parts.pop().expect("one part"),
            _ => Bytes::from(parts.concat()),
        })
        .collect())
}

/// Read and parse the header of the `.npy` object at `path`, checking that the object is as long
/// as the header says.
pub async fn read_npy_header(store: &Store, path: &str) -> Result<crate::npy::Header, OasError> {
    use crate::npy::{header_len, parse_header, HEADER_PROBE};
    let size = object_size(store, path).await?;
    let corrupt = |reason: String| OasError::IntegrityMismatch {
        store: store.name.clone(),
        path: path.to_string(),
        reason,
    };
    let mut head = read_range(store, path, 0..size.min(HEADER_PROBE as u64)).await?;
    let need = header_len(&head).map_err(|e| corrupt(e.to_string()))?;
    if need > head.len() as u64 {
        if need > size {
            return Err(corrupt(format!(
                "header of {need} bytes in an object of {size}"
            )));
        }
        head = read_range(store, path, 0..need).await?;
    }
    let header = parse_header(&head).map_err(|e| match e {
        e @ OasError::InvalidArgument { .. } => corrupt(e.to_string()),
        e => e,
    })?;
    if header.data_offset + header.nbytes > size {
        return Err(corrupt(format!(
            "truncated: the header describes {} bytes of data, the object has {}",
            header.nbytes,
            size.saturating_sub(header.data_offset)
        )));
    }
    Ok(header)
}

/// One step of [`verify_store`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeStep {
    pub step: &'static str,
    pub ok: bool,
    pub millis: f64,
    pub detail: String,
}

/// Write, read back, range-read, list and delete a probe object, reporting each step. Stops at the
/// first failing step that later steps depend on; always tries to delete the probe.
pub async fn verify_store(store: &Store, probe_name: &str) -> Vec<ProbeStep> {
    let path = format!("_oas/verify/{probe_name}");
    let mut steps = Vec::new();
    let key = match store.key(&path) {
        Ok(k) => k,
        Err(e) => {
            steps.push(ProbeStep {
                step: "path",
                ok: false,
                millis: 0.0,
                detail: e.to_string(),
            });
            return steps;
        }
    };
    let body: Bytes =
        Bytes::from(format!("pg_oas verify probe 0123456789abcdef {probe_name}").into_bytes());
    let c = store.client();

    macro_rules! step {
        ($name:literal, $fut:expr, |$v:ident| $check:expr) => {{
            let t = Instant::now();
            let r = $fut.await;
            let millis = (t.elapsed().as_secs_f64() * 1e6).round() / 1e3;
            let (ok, detail) = match r {
                Ok($v) => $check,
                Err(e) => (false, store.error(e, $name, &path).to_string()),
            };
            steps.push(ProbeStep {
                step: $name,
                ok,
                millis,
                detail,
            });
            ok
        }};
    }

    let written = step!(
        "put",
        c.put(&key, PutPayload::from_bytes(body.clone())),
        |_r| (true, format!("{} bytes", body.len()))
    );
    if written {
        step!("head", c.head(&key), |m| (
            m.size == body.len() as u64,
            format!("size {}", m.size)
        ));
        step!("get", async { c.get(&key).await?.bytes().await }, |b| (
            b == body,
            if b == body {
                "content matches".to_string()
            } else {
                "content differs".to_string()
            }
        ));
        step!("get_range", c.get_range(&key, 6..14), |b| (
            b[..] == body[6..14],
            format!("bytes 6..14 = {:?}", String::from_utf8_lossy(&b))
        ));
        step!(
            "conditional_put",
            async {
                match c.put_opts(&key, PutPayload::from_bytes(body.clone()), PutMode::Create.into()).await {
                    Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => Ok("refused to overwrite: conditional create works"),
                    Err(object_store::Error::NotImplemented { .. }) => Ok("not supported by this backend (dedup falls back to head + put)"),
                    Ok(_) => Ok("overwrote an existing object: conditional create is not honoured (dedup falls back to head + put)"),
                    Err(e) => Err(e),
                }
            },
            |msg| (true, msg.to_string())
        );
        step!("list", list_contains(c.as_ref(), &key), |found| (
            found,
            if found {
                "probe listed".into()
            } else {
                "probe not in listing".to_string()
            }
        ));
        step!("delete", c.delete(&key), |_r| (true, "deleted".to_string()));
        step!(
            "head_after_delete",
            async {
                match c.head(&key).await {
                    Err(object_store::Error::NotFound { .. }) => Ok(true),
                    Ok(_) => Ok(false),
                    Err(e) => Err(e),
                }
            },
            |gone| (
                gone,
                if gone {
                    "gone".to_string()
                } else {
                    "still present after delete".to_string()
                }
            )
        );
    }
    steps
}

async fn list_contains(
    c: &dyn ObjectStore,
    key: &object_store::path::Path,
) -> object_store::Result<bool> {
    let parent: object_store::path::Path = key.parts().take(key.parts().count() - 1).collect();
    let found = c
        .list(Some(&parent))
        .try_filter(|m| futures::future::ready(&m.location == key))
        .try_next()
        .await?;
    Ok(found.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ClientSettings;
    use crate::spec::StoreSpec;
    use serde_json::json;

    fn local_store(dir: &std::path::Path, extra: serde_json::Value) -> Store {
        let mut spec = json!({"protocol": "file", "location": dir.to_str().unwrap()});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        Store::build(
            "main",
            StoreSpec::from_json(&spec).unwrap(),
            &ClientSettings::default(),
        )
        .unwrap()
    }

    /// Found by the `paths` fuzz target (see `gc::require_read_back`): with an empty
    /// hash_prefix, schema "g" of a store whose schema_prefix is "g" put its hash objects in the
    /// schema-addressed section, owned there by a schema named like the hash.
    #[tokio::test]
    async fn fuzz_hash_objects_outside_their_schemas_part_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({"hash_prefix": "", "schema_prefix": "g"}));
        let e = put_hash(&store, "g", Bytes::from_static(b"hello"))
            .await
            .unwrap_err();
        assert!(matches!(e, OasError::InvalidArgument { .. }), "{e:?}");
        assert!(!dir.path().join("g").exists());
        let (r, _) = put_hash(&store, "lab", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(r.path, "lab/lvauakv4jmvhnolrtwiraf6fsi");
        // A staged payload: refused too, and its staged copy removed.
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let p = crate::stage::prepare(&store, &data, false, &|| false).unwrap();
        assert!(matches!(p.body, crate::stage::Body::Staged(_)));
        assert!(put_prepared(&store, "g", p).await.is_err());
        assert_eq!(staging_left(dir.path()), 0);
    }

    #[tokio::test]
    async fn put_get_dedup_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let (r, o) = put_hash(&store, "lab", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(o, PutOutcome::Uploaded);
        assert_eq!(r.path, "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi");
        assert_eq!(std::fs::read(dir.path().join(&r.path)).unwrap(), b"hello");
        let (r2, o2) = put_hash(&store, "lab", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!((r2, o2), (r.clone(), PutOutcome::Deduplicated));
        assert_eq!(
            get_hash(&store, &r, true).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        // Another schema is another namespace: stored again.
        let (r3, o3) = put_hash(&store, "other", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(
            (r3.path.as_str(), o3),
            (
                "_hash/other/lvauakv4jmvhnolrtwiraf6fsi",
                PutOutcome::Uploaded
            )
        );
    }

    #[tokio::test]
    async fn subfolding_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(
            dir.path(),
            json!({"subfolding": [2, 2], "hash_prefix": "objs"}),
        );
        let (r, _) = put_hash(&store, "lab", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(r.path, "objs/lab/lv/au/lvauakv4jmvhnolrtwiraf6fsi");
        assert!(dir
            .path()
            .join("objs/lab/lv/au/lvauakv4jmvhnolrtwiraf6fsi")
            .is_file());
    }

    #[tokio::test]
    async fn corruption_and_loss_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let (r, _) = put_hash(&store, "lab", Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        let file = dir.path().join(&r.path);
        std::fs::write(&file, b"hellO world").unwrap();
        let e = get_hash(&store, &r, true).await.unwrap_err();
        assert!(matches!(e, OasError::IntegrityMismatch { .. }), "{e}");
        assert!(e.to_string().contains(&r.path) && e.to_string().contains("\"main\""));
        // Without MD5 verification, a same-size change goes unseen; a size change never does.
        assert!(get_hash(&store, &r, false).await.is_ok());
        std::fs::write(&file, b"short").unwrap();
        assert!(matches!(
            get_hash(&store, &r, false).await.unwrap_err(),
            OasError::IntegrityMismatch { .. }
        ));
        // A damaged copy (wrong size) is replaced by the next put of the same content.
        let (_, o) = put_hash(&store, "lab", Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        assert_eq!(o, PutOutcome::Repaired);
        assert_eq!(
            get_hash(&store, &r, true).await.unwrap(),
            Bytes::from_static(b"hello world")
        );
        std::fs::remove_file(&file).unwrap();
        let e = get_hash(&store, &r, true).await.unwrap_err();
        assert!(matches!(e, OasError::ObjectMissing { .. }), "{e}");
    }

    #[tokio::test]
    async fn verify_probe_passes_on_a_local_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let steps = verify_store(&store, "t1").await;
        let names: Vec<_> = steps.iter().map(|s| s.step).collect();
        assert_eq!(
            names,
            [
                "put",
                "head",
                "get",
                "get_range",
                "conditional_put",
                "list",
                "delete",
                "head_after_delete"
            ]
        );
        assert!(steps.iter().all(|s| s.ok), "{steps:?}");
        assert!(
            steps[4].detail.contains("conditional create works"),
            "{:?}",
            steps[4]
        );
        assert!(!dir.path().join("_oas/verify/t1").exists());
    }

    #[test]
    fn missing_local_directory_is_a_spec_error() {
        let spec =
            StoreSpec::from_json(&json!({"protocol": "file", "location": "/nonexistent/oas"}))
                .unwrap();
        let e = Store::build("x", spec, &ClientSettings::default()).unwrap_err();
        assert!(
            e.to_string().contains("inaccessible local directory"),
            "{e}"
        );
    }

    fn staging_left(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("_oas/staging"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn staged_put_publishes_dedups_and_repairs() {
        use crate::stage::{prepare, Body};
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({"subfolding": [2]}));
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
        let p = prepare(&store, &data, true, &|| false).unwrap();
        assert!(matches!(p.body, Body::Staged(_)));
        assert_eq!(p.hash, crate::hash::content_hash(&data));
        let (r, o) = put_prepared(&store, "lab", p).await.unwrap();
        assert_eq!(o, PutOutcome::Uploaded);
        assert_eq!(r.path, format!("_hash/lab/{}/{}", &r.hash[..2], r.hash));
        assert_eq!(std::fs::read(dir.path().join(&r.path)).unwrap(), data);
        assert_eq!(staging_left(dir.path()), 0);
        // Same content again: deduplicated, the staged copy removed.
        let (r2, o2) = put_prepared(
            &store,
            "lab",
            prepare(&store, &data, true, &|| false).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!((r2, o2), (r.clone(), PutOutcome::Deduplicated));
        assert_eq!(staging_left(dir.path()), 0);
        // A truncated copy is replaced.
        std::fs::write(dir.path().join(&r.path), b"short").unwrap();
        let (_, o3) = put_prepared(
            &store,
            "lab",
            prepare(&store, &data, true, &|| false).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(o3, PutOutcome::Repaired);
        assert_eq!(get_hash(&store, &r, true).await.unwrap(), Bytes::from(data));
        assert_eq!(staging_left(dir.path()), 0);
        // The owned path agrees with the staged one.
        let (r4, _) = put_hash(&store, "lab", Bytes::from(vec![7u8; 3 << 20]))
            .await
            .unwrap();
        let (r5, o5) = put_prepared(
            &store,
            "lab",
            prepare(&store, &vec![7u8; 3 << 20], false, &|| false).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!((r4, o5), (r5, PutOutcome::Deduplicated));
    }

    #[test]
    fn cancelled_preparation_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let data = vec![1u8; 64 << 20];
        let e = crate::stage::prepare(&store, &data, true, &|| true).unwrap_err();
        assert!(matches!(e, OasError::Cancelled), "{e}");
        assert_eq!(staging_left(dir.path()), 0);
    }

    #[test]
    fn cloud_stores_get_an_owned_copy() {
        let spec = StoreSpec::from_json(
            &json!({"protocol": "s3", "endpoint": "127.0.0.1:1", "bucket": "b",
            "location": "l", "secure": false, "access_key": "k", "secret_key": "s"}),
        )
        .unwrap();
        let store = Store::build("s3", spec, &ClientSettings::default()).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let p = crate::stage::prepare(&store, &data, true, &|| false).unwrap();
        assert_eq!(p.hash, crate::hash::content_hash(&data));
        match p.body {
            crate::stage::Body::Owned(b) => assert_eq!(b, data),
            other => panic!("expected an owned copy, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_staging_write_is_a_store_error_naming_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        // A file where the staging directory should be: the write fails at once.
        std::fs::write(dir.path().join("_oas"), b"not a directory").unwrap();
        let e = crate::stage::prepare(&store, &vec![3u8; 16 << 20], true, &|| false).unwrap_err();
        match e {
            OasError::Store { store, op, .. } => {
                assert_eq!((store.as_str(), op), ("main", "create staging directory"))
            }
            other => panic!("expected a store error, got {other}"),
        }
    }

    #[tokio::test]
    async fn reference_checks_find_every_kind_of_damage() {
        use crate::codec::ObjectRef;
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let (r, _) = put_hash(&store, "lab", Bytes::from_static(b"intact object"))
            .await
            .unwrap();
        let obj = ObjectRef::from_json(&r.to_json()).unwrap();
        assert_eq!(check_reference(&store, &obj, true).await.unwrap(), None);
        let file = dir.path().join(&r.path);
        std::fs::write(&file, b"INTACT OBJECT").unwrap();
        assert_eq!(
            check_reference(&store, &obj, false).await.unwrap(),
            None,
            "same size, content not checked"
        );
        assert!(check_reference(&store, &obj, true)
            .await
            .unwrap()
            .unwrap()
            .starts_with("content hash is"));
        std::fs::write(&file, b"short").unwrap();
        assert_eq!(
            check_reference(&store, &obj, false).await.unwrap().unwrap(),
            "size is 5 bytes, the reference records 13"
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            check_reference(&store, &obj, true).await.unwrap().unwrap(),
            "missing"
        );
        // A folder object: present while anything is under it.
        std::fs::create_dir_all(dir.path().join("_schema/lab/t/id=1/d_x")).unwrap();
        std::fs::write(dir.path().join("_schema/lab/t/id=1/d_x/a.bin"), b"a").unwrap();
        let folder = ObjectRef::from_json(&json!({"path": "_schema/lab/t/id=1/d_x", "store": "main", "is_dir": true, "size": null})).unwrap();
        assert_eq!(check_reference(&store, &folder, true).await.unwrap(), None);
        std::fs::remove_file(dir.path().join("_schema/lab/t/id=1/d_x/a.bin")).unwrap();
        assert!(check_reference(&store, &folder, true)
            .await
            .unwrap()
            .unwrap()
            .starts_with("missing"));
    }

    #[tokio::test]
    async fn long_ranges_are_read_in_parts_and_joined() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("blob"), &data).unwrap();
        let ranges = [10..20, 100..5_100, 9_990..10_000, 0..0];
        let got = read_ranges(&store, "blob", &ranges, 1_000).await.unwrap();
        for (r, b) in ranges.iter().zip(&got) {
            assert_eq!(&b[..], &data[r.start as usize..r.end as usize], "{r:?}");
        }
    }
}
