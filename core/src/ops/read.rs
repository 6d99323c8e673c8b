//! Reads: whole hash-addressed objects checked against their reference, sizes, byte ranges and
//! `.npy` headers.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{GetResultPayload, ObjectStoreExt};

use crate::backend::Store;
use crate::error::OasError;
use crate::hash::ContentHasher;
use crate::reference::HashRef;

use super::{content_hash_yielding, existing_size};

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

/// What is at `path`: a file (with its size), a folder (something lies below `path/`), or
/// nothing. On object stores a folder is a common prefix; the file is asked first.
pub async fn stat(store: &Store, path: &str) -> Result<Option<Entry>, OasError> {
    let key = store.key(path)?;
    if let Some(size) = existing_size(store, &key, path).await? {
        return Ok(Some(Entry::File { size }));
    }
    let mut below = crate::gc::list(store, &format!("{path}/"));
    match below.try_next().await {
        Ok(Some(_)) => Ok(Some(Entry::Folder)),
        Ok(None) | Err(OasError::ObjectMissing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What [`stat`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    File { size: u64 },
    Folder,
}

/// The first `n` bytes of the object at `path` (all of it when shorter) and its size, in one
/// request.
pub async fn read_head(store: &Store, path: &str, n: u64) -> Result<(Bytes, u64), OasError> {
    use object_store::{GetOptions, GetRange};
    let key = store.key(path)?;
    let opts = GetOptions {
        range: Some(GetRange::Bounded(0..n)),
        ..Default::default()
    };
    match store.client().get_opts(&key, opts).await {
        Ok(got) => {
            let size = got.meta.size;
            let bytes = got.bytes().await.map_err(|e| store.error(e, "get", path))?;
            Ok((bytes, size))
        }
        Err(e) => {
            let err = store.error(e, "get", path);
            if matches!(err, OasError::ObjectMissing { .. }) {
                return Err(err);
            }
            // An empty object has no first byte to start a range at.
            match object_size(store, path).await? {
                0 => Ok((Bytes::new(), 0)),
                _ => Err(err),
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{put_hash, PutOutcome};
    use crate::test_support::local_store;
    use serde_json::json;

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
