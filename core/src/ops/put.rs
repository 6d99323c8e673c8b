//! Hash-addressed puts: dedup, repair of damaged copies, staged publish; new schema-addressed objects.

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::backend::Store;
use crate::error::OasError;
use crate::hash::ContentHasher;
use crate::path::hash_path;
use crate::reference::HashRef;
use crate::stage::{Body, Prepared, STAGE_MIN};

use super::existing_size;

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

/// The reference a payload with this hash and size has in `store` for `schema`, its path checked
/// (a path the collector could not read back is refused). Known before anything is sent, so
/// a caller may hand the upload on ([`publish`]) and use the reference at once. In a store marked
/// for compression it names the compressed object ([`crate::compress`]).
pub fn reference_for(
    store: &Store,
    schema: &str,
    hash: &str,
    size: u64,
) -> Result<HashRef, OasError> {
    let mut path = hash_path(
        &store.spec.hash_prefix,
        schema,
        hash,
        store.spec.subfolding.as_deref(),
    )?;
    let compression = store.spec.compression.map(|_| {
        path.push_str(crate::compress::SUFFIX);
        crate::compress::MARKER.to_string()
    });
    crate::gc::require_read_back(
        &store.spec.hash_prefix,
        &store.spec.schema_prefix,
        crate::gc::Section::Hash,
        schema,
        &path,
    )?;
    store.key(&path)?;
    Ok(HashRef {
        hash: hash.to_string(),
        path,
        schema: schema.to_string(),
        store: Some(store.name.clone()),
        size,
        compression,
    })
}

/// Publish a payload whose hash is known (see [`crate::stage::prepare`]).
pub async fn put_prepared(
    store: &Store,
    schema: &str,
    p: Prepared,
) -> Result<(HashRef, PutOutcome), OasError> {
    match reference_for(store, schema, &p.hash, p.size) {
        Ok(reference) => {
            let outcome = publish(store, &reference, p.body).await?;
            Ok((reference, outcome))
        }
        Err(e) => {
            discard(store, &p.body).await;
            Err(e)
        }
    }
}

/// Drop a body that will not be published: a staged copy goes now rather than at the
/// collector's sweep.
pub async fn discard(store: &Store, body: &Body) {
    if let Body::Staged(staging) = body {
        if let Ok(k) = store.key(staging) {
            let _ = store.client().delete(&k).await;
        }
    }
}

/// Write `body` as the object `reference` names ([`reference_for`]).
///
/// An owned body is written with a conditional create where the backend has it, after a `head`
/// that skips the upload when the object is already there; a staged body (file stores) is moved
/// into place with an atomic rename-if-absent. Either way a concurrent writer of the same content
/// never sees a partial object, no write replaces a good copy, and a copy of the wrong size (a
/// damaged object) is replaced.
pub async fn publish(
    store: &Store,
    reference: &HashRef,
    body: Body,
) -> Result<PutOutcome, OasError> {
    let path = &reference.path;
    let key = store.key(path)?;
    if reference.compressed() {
        return super::compressed::publish(store, &key, reference, body).await;
    }
    match body {
        Body::Owned(data) => put_owned(store, &key, path, reference.size, data).await,
        Body::Staged(staging) => publish_staged(store, &key, path, reference.size, &staging).await,
    }
}

pub(super) async fn put_owned(
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
        // Backends without conditional create: look, then write.
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. })
        | Err(object_store::Error::NotImplemented { .. }) => {
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

/// Bytes hashed between two yields: a few milliseconds of work, so a waiting caller (the query
/// cancel watch in the extension) gets to run while a large payload is hashed.
const HASH_SLICE: usize = 4 << 20;

/// [`crate::hash::content_hash`], yielding to the runtime every `HASH_SLICE` (4 MiB) bytes.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::get_hash;
    use crate::test_support::{local_store, staging_left};
    use serde_json::json;

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
}
