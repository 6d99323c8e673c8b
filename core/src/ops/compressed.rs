//! Objects of a store marked for compression ([`crate::compress`]): hash-addressed objects and
//! `<object@>` files. Publishing the compressed bytes, reading them back decompressed into a
//! buffer of the reference's size, their first bytes, and checking them. The hooks in `put.rs`,
//! `multipart.rs`, `read.rs` and `verify.rs` hand compressed references (`"compression": "zstd"`)
//! over to these; the extension's `<object@>` writer and reader call [`compress_for`] and
//! [`get_file`].

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStoreExt};

use crate::backend::Store;
use crate::compress::{self, Inflater};
use crate::error::OasError;
use crate::reference::HashRef;
use crate::stage::Body;

use super::put::{put_owned, PutOutcome};

/// The level of `store`'s compression (zstd's default when it is no longer marked).
fn level(store: &Store) -> i32 {
    store
        .spec
        .compression
        .map_or(compress::DEFAULT_LEVEL, |z| z.level)
}

fn damaged(store: &Store, path: &str, reason: String) -> OasError {
    OasError::IntegrityMismatch {
        store: store.name.clone(),
        path: path.to_string(),
        reason: format!("compressed object: {reason}"),
    }
}

/// Compress `body` and write it as the object `reference` names (at `key`) with [`put_owned`]'s
/// guarantees: an object of the compressed size already there is kept, one of another size
/// replaced. An owned body is compressed on the blocking pool; a staged one (file stores) is read
/// back piece by piece, so only its compressed bytes are held, and removed.
pub(super) async fn publish(
    store: &Store,
    key: &ObjectPath,
    reference: &HashRef,
    body: Body,
) -> Result<PutOutcome, OasError> {
    let packed = match body {
        Body::Owned(data) => compress_for(store, data).await?,
        Body::Staged(staging) => {
            let k = store.key(&staging)?;
            let packed = compress_object(store, &k, &staging, reference.size, level(store)).await;
            let _ = store.client().delete(&k).await;
            Bytes::from(packed?)
        }
    };
    let size = packed.len() as u64;
    put_owned(store, key, &reference.path, size, packed).await
}

/// The object at `key` (`path`), of `size` bytes, compressed as it is read.
async fn compress_object(
    store: &Store,
    key: &ObjectPath,
    path: &str,
    size: u64,
    level: i32,
) -> Result<Vec<u8>, OasError> {
    let err = |e| store.error(e, "get", path);
    let mut stream = store.client().get(key).await.map_err(err)?.into_stream();
    let mut deflater = compress::Deflater::new(level, size)?;
    while let Some(chunk) = stream.try_next().await.map_err(err)? {
        deflater.feed(&chunk)?;
        tokio::task::yield_now().await;
    }
    deflater.finish()
}

/// The compressed bytes to send in parts for `reference`, or `None` when it is not compressed:
/// compressed a slice at a time, yielding to the runtime between slices.
pub(super) async fn pack(
    store: &Store,
    reference: &HashRef,
    data: &[u8],
) -> Result<Option<Vec<u8>>, OasError> {
    if !reference.compressed() {
        return Ok(None);
    }
    let mut deflater = compress::Deflater::new(level(store), data.len() as u64)?;
    for slice in data.chunks(4 << 20) {
        deflater.feed(slice)?;
        tokio::task::yield_now().await;
    }
    deflater.finish().map(Some)
}

/// A compressed object's stored size can be anything up to zstd's bound for the reference's
/// size; a larger one is refused before anything is read.
pub(super) fn check_stored_size(store: &Store, r: &HashRef, stored: u64) -> Result<(), OasError> {
    check_bound(store, &r.path, r.size, stored)
}

fn check_bound(store: &Store, path: &str, size: u64, stored: u64) -> Result<(), OasError> {
    if stored > compress::max_stored_size(size) {
        return Err(damaged(
            store,
            path,
            format!(
                "{stored} bytes, more than zstd makes of the {size} bytes the reference records"
            ),
        ));
    }
    Ok(())
}

/// `data` compressed as `store` compresses (one frame, on the blocking pool): what an `<object@>`
/// file of a compressed store is written as.
pub async fn compress_for(store: &Store, data: Bytes) -> Result<Bytes, OasError> {
    let level = level(store);
    tokio::task::spawn_blocking(move || compress::compress(&data, level))
        .await
        .map_err(|e| OasError::Internal(e.to_string()))?
        .map(Bytes::from)
}

/// The compressed `<object@>` file at `path` whose reference records `size` uncompressed bytes
/// (and no content hash): its stored size bounded before anything is read, then decompressed
/// into a buffer of `size` bytes, which the frame (its checksum checked) must fill exactly.
pub async fn get_file(store: &Store, path: &str, size: u64) -> Result<Vec<u8>, OasError> {
    let key = store.key(path)?;
    let got = store
        .client()
        .get(&key)
        .await
        .map_err(|e| store.error(e, "get", path))?;
    check_bound(store, path, size, got.meta.size)?;
    let len = usize::try_from(size)
        .map_err(|_| damaged(store, path, format!("{size} bytes do not fit in memory")))?;
    let mut out = vec![0u8; len];
    inflate_into(store, path, None, got.payload, &mut out).await?;
    Ok(out)
}

/// Decompress the object into `out` (the reference's size, which bounds the output), piece by
/// piece as it arrives, and check it: the frame fills `out` exactly, its checksum, and MD5 of
/// the uncompressed bytes when `verify`.
pub(super) async fn read_into(
    store: &Store,
    r: &HashRef,
    payload: GetResultPayload,
    out: &mut [u8],
    verify: bool,
) -> Result<(), OasError> {
    let hash = verify.then_some(r.hash.as_str());
    inflate_into(store, &r.path, hash, payload, out).await
}

/// [`read_into`] of the object at `path`, checked against `hash` (MD5 of the uncompressed bytes)
/// when given.
async fn inflate_into(
    store: &Store,
    path: &str,
    hash: Option<&str>,
    payload: GetResultPayload,
    out: &mut [u8],
) -> Result<(), OasError> {
    let bad = |reason: String| damaged(store, path, reason);
    let mut inflater = Inflater::new().map_err(OasError::Internal)?;
    match payload {
        GetResultPayload::File(mut file, local) => {
            use std::io::Read;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file
                    .read(&mut buf)
                    .map_err(|e| store.error(super::read::io_error(&local, e), "get", path))?;
                if n == 0 {
                    break;
                }
                inflater.feed(&buf[..n], out).map_err(bad)?;
                tokio::task::yield_now().await;
            }
        }
        GetResultPayload::Stream(mut stream) => {
            while let Some(chunk) = stream
                .try_next()
                .await
                .map_err(|e| store.error(e, "get", path))?
            {
                inflater.feed(&chunk, out).map_err(bad)?;
            }
        }
    }
    inflater.finish(out).map_err(bad)?;
    if let Some(hash) = hash {
        let actual = super::content_hash_yielding(out).await;
        if actual != hash {
            return Err(OasError::IntegrityMismatch {
                store: store.name.clone(),
                path: path.to_string(),
                reason: format!("content hash is {actual}, the reference records {hash}"),
            });
        }
    }
    Ok(())
}

/// Is `path` a compressed hash-addressed object (its name is a content hash followed by `.zst`)?
pub(super) fn is_compressed_path(path: &str) -> bool {
    compress::parse_object_name(path.rsplit('/').next().unwrap_or(path)).is_some_and(|(_, z)| z)
}

/// The first `n` uncompressed bytes of the compressed object at `path` and its uncompressed size
/// (as its frame records it), from one ranged request.
pub(super) async fn read_head(store: &Store, path: &str, n: u64) -> Result<(Bytes, u64), OasError> {
    let key = store.key(path)?;
    let opts = GetOptions {
        range: Some(GetRange::Bounded(0..compress::HEAD_FETCH)),
        ..Default::default()
    };
    let prefix = async { store.client().get_opts(&key, opts).await?.bytes().await }
        .await
        .map_err(|e| store.error(e, "get", path))?;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let (head, size) =
        compress::decompress_head(&prefix, n).map_err(|reason| damaged(store, path, reason))?;
    Ok((Bytes::from(head), size))
}

/// [`super::check_reference`] of a compressed object of `stored` bytes: within the bound of the
/// recorded size, the size its frame records, and with `check_content` the whole object
/// decompressed and checked against the hash (an `<object@>` file, which has none: against its
/// frame's checksum and size).
pub(super) async fn check(
    store: &Store,
    path: &str,
    hash: Option<&str>,
    size: Option<u64>,
    stored: u64,
    check_content: bool,
) -> Result<Option<String>, OasError> {
    let Some(size) = size else {
        return Ok(Some(
            "a compressed reference must record the size of its content".into(),
        ));
    };
    let checked = async {
        check_bound(store, path, size, stored)?;
        if check_content {
            match hash {
                Some(hash) => {
                    let r = HashRef {
                        hash: hash.to_string(),
                        path: path.to_string(),
                        schema: String::new(),
                        store: Some(store.name.clone()),
                        size,
                        compression: Some(compress::MARKER.into()),
                    };
                    super::get_hash(store, &r, true).await.map(drop)
                }
                // An `<object@>` file records no hash: the frame's checksum and size.
                None => get_file(store, path, size).await.map(drop),
            }
        } else {
            match read_head(store, path, 0).await? {
                (_, s) if s == size => Ok(()),
                (_, s) => Err(damaged(
                    store,
                    path,
                    format!("its frame records {s} bytes, the reference {size}"),
                )),
            }
        }
    };
    match checked.await {
        Ok(()) => Ok(None),
        Err(OasError::IntegrityMismatch { reason, .. }) => Ok(Some(reason)),
        Err(OasError::ObjectMissing { .. }) => Ok(Some("missing".into())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ObjectRef;
    use crate::compress::Zstd;
    use crate::ops::{check_reference, get_hash, put_hash, put_prepared};
    use crate::test_support::{local_store, staging_left};
    use serde_json::json;

    fn stores(dir: &std::path::Path) -> (Store, Store) {
        let mut zipped = local_store(dir, json!({"subfolding": [2]}));
        zipped.spec.compression = Some(Zstd { level: 3 });
        (zipped, local_store(dir, json!({"subfolding": [2]})))
    }

    fn trace(n: usize) -> Vec<u8> {
        (0..n).map(|i| ((i / 50) % 7) as u8).collect()
    }

    #[tokio::test]
    async fn compressed_puts_keep_the_reference_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (zipped, plain) = stores(dir.path());
        let data = trace(100_000);
        let (z, o) = put_hash(&zipped, "lab", Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!(o, PutOutcome::Uploaded);
        let (p, _) = put_hash(&plain, "lab", Bytes::from(data.clone()))
            .await
            .unwrap();
        // Same hash and size as the uncompressed store's; the path and the marker differ.
        assert_eq!((&z.hash, z.size), (&p.hash, p.size));
        assert_eq!(z.path, format!("{}.zst", p.path));
        assert_eq!(z.to_json()["compression"], json!("zstd"));
        assert!(p.to_json().get("compression").is_none());
        assert_eq!(HashRef::from_json(&z.to_json()).unwrap(), z);
        let stored = std::fs::metadata(dir.path().join(&z.path)).unwrap().len();
        assert!(stored < 10_000, "{stored}");
        // Both forms read back, whichever store the client now has.
        for (store, r) in [(&zipped, &z), (&plain, &z), (&zipped, &p), (&plain, &p)] {
            assert_eq!(get_hash(store, r, true).await.unwrap(), data);
        }
        // Dedup in each form, never across forms.
        let (_, o) = put_hash(&zipped, "lab", Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!(o, PutOutcome::Deduplicated);
        // The first bytes and the check of a reference see the uncompressed content.
        let (head, size) = crate::ops::read_head(&zipped, &z.path, 10).await.unwrap();
        assert_eq!((&head[..], size), (&data[..10], 100_000));
        let obj = ObjectRef::from_json(&z.to_json()).unwrap();
        assert!(obj.compressed);
        for content in [false, true] {
            assert_eq!(check_reference(&plain, &obj, content).await.unwrap(), None);
        }
        // A reference whose marker and path disagree is refused.
        let mut wrong = z.to_json();
        wrong.as_object_mut().unwrap().remove("compression");
        assert!(HashRef::from_json(&wrong).is_err());
        let mut wrong = p.to_json();
        wrong["compression"] = json!("zstd");
        assert!(HashRef::from_json(&wrong).is_err());
    }

    #[tokio::test]
    async fn object_files_are_checked_by_their_frame() {
        let dir = tempfile::tempdir().unwrap();
        let (zipped, plain) = stores(dir.path());
        let data = trace(100_000);
        let path = "_schema/lab/t/id=1/f_AbCd1234.bin.zst";
        let frame = compress_for(&zipped, Bytes::from(data.clone()))
            .await
            .unwrap();
        crate::ops::put_new(&zipped, path, frame).await.unwrap();
        let r = json!({"path": path, "store": "a", "size": 100_000, "ext": ".bin", "is_dir": false,
                       "item_count": null, "timestamp": "t", "compression": "zstd"});
        let obj = ObjectRef::from_json(&r).unwrap();
        assert!(obj.compressed && obj.hash.is_none());
        for content in [false, true] {
            assert_eq!(check_reference(&plain, &obj, content).await.unwrap(), None);
        }
        assert_eq!(get_file(&plain, path, 100_000).await.unwrap(), data);
        // Another recorded size: the frame's header says so, and a whole read fails.
        let other = ObjectRef {
            size: Some(99_999),
            ..obj.clone()
        };
        for content in [false, true] {
            let problem = check_reference(&plain, &other, content).await.unwrap();
            assert!(problem.is_some(), "{content}");
        }
        assert!(get_file(&plain, path, 99_999).await.is_err());
        // A damaged frame: caught by its checksum when the content is checked.
        let file = dir.path().join(path);
        let mut bad = std::fs::read(&file).unwrap();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        std::fs::write(&file, &bad).unwrap();
        assert!(check_reference(&plain, &obj, true).await.unwrap().is_some());
        let e = get_file(&plain, path, 100_000).await.unwrap_err();
        assert!(matches!(e, OasError::IntegrityMismatch { .. }), "{e}");
    }

    #[tokio::test]
    async fn staged_payloads_are_compressed_and_their_staging_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (zipped, _) = stores(dir.path());
        let data = trace(5_000_000);
        let p = crate::stage::prepare(&zipped, &data, false, &|| false).unwrap();
        assert!(matches!(p.body, Body::Staged(_)));
        let (r, _) = put_prepared(&zipped, "lab", p).await.unwrap();
        assert!(r.compressed());
        assert_eq!(staging_left(dir.path()), 0);
        assert_eq!(get_hash(&zipped, &r, true).await.unwrap(), data);
        // The same frame as an owned body's: the next put of the same bytes deduplicates.
        let stored = std::fs::read(dir.path().join(&r.path)).unwrap();
        assert_eq!(stored, compress::compress(&data, 3).unwrap());
        let (_, o) = put_hash(&zipped, "lab", Bytes::from(data)).await.unwrap();
        assert_eq!(o, PutOutcome::Deduplicated);
    }

    #[tokio::test]
    async fn damage_and_bombs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (zipped, _) = stores(dir.path());
        let data = trace(200_000);
        let (r, _) = put_hash(&zipped, "lab", Bytes::from(data.clone()))
            .await
            .unwrap();
        let file = dir.path().join(&r.path);
        let good = std::fs::read(&file).unwrap();
        // A flipped byte: caught by the frame's checksum even without MD5.
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        std::fs::write(&file, &bad).unwrap();
        for verify in [false, true] {
            let e = get_hash(&zipped, &r, verify).await.unwrap_err();
            assert!(matches!(e, OasError::IntegrityMismatch { .. }), "{e}");
        }
        let obj = ObjectRef::from_json(&r.to_json()).unwrap();
        assert!(check_reference(&zipped, &obj, true)
            .await
            .unwrap()
            .is_some());
        // Raw bytes where a compressed object should be: not a frame.
        std::fs::write(&file, &data[..1000]).unwrap();
        assert!(get_hash(&zipped, &r, false).await.is_err());
        // A bomb: a frame of many bytes under a reference that records few.
        let bomb = compress::compress(&vec![0u8; 50_000_000], 3).unwrap();
        std::fs::write(&file, &bomb).unwrap();
        let small = HashRef {
            size: 5000,
            ..r.clone()
        };
        let e = get_hash(&zipped, &small, false).await.unwrap_err();
        assert!(e.to_string().contains("more than the 5000 bytes"), "{e}");
        // An object larger than zstd's bound for the recorded size is refused before reading.
        std::fs::write(&file, vec![1u8; 2000]).unwrap();
        let e = get_hash(
            &zipped,
            &HashRef {
                size: 10,
                ..r.clone()
            },
            false,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("more than zstd makes"), "{e}");
        // A damaged copy is replaced by the next put of the same content.
        let (_, o) = put_hash(&zipped, "lab", Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!(o, PutOutcome::Repaired);
        assert_eq!(get_hash(&zipped, &r, true).await.unwrap(), data);
    }
}
