//! Reads: whole hash-addressed objects checked against their reference, sizes, byte ranges and
//! `.npy` headers.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{GetResultPayload, ObjectStoreExt};

use crate::backend::Store;
use crate::error::OasError;
use crate::hash::ContentHasher;
use crate::reference::HashRef;

use super::existing_size;

/// Read a hash-addressed object and check it against its reference: size always (before any
/// byte is read, from the object's metadata, and again at the end), MD5 when `verify`. See
/// [`open_hash`] to read straight into a buffer of the caller's.
pub async fn get_hash(store: &Store, r: &HashRef, verify: bool) -> Result<Vec<u8>, OasError> {
    let get = open_hash(store, r).await?;
    let size = usize::try_from(r.size).map_err(|_| size_mismatch(store, r, r.size))?;
    let mut data = vec![0; size];
    get.read_into(&mut data, verify).await?;
    Ok(data)
}

/// Bytes of a local file read at a time: the next part is read (on tokio's blocking pool) while
/// this one is copied and hashed.
const FILE_PART: usize = 4 << 20;

/// A hash-addressed object opened for reading, its size already checked against the reference:
/// the caller can allocate the result at that size before any byte is read.
pub struct HashGet<'a> {
    store: &'a Store,
    r: &'a HashRef,
    payload: GetResultPayload,
}

/// Open a hash-addressed object and check its size against the reference (from the object's
/// metadata, before any byte is read); [`HashGet::read_into`] reads and checks the rest.
pub async fn open_hash<'a>(store: &'a Store, r: &'a HashRef) -> Result<HashGet<'a>, OasError> {
    let key = store.key(&r.path)?;
    let result = store
        .client()
        .get(&key)
        .await
        .map_err(|e| store.error(e, "get", &r.path))?;
    if r.compressed() {
        super::compressed::check_stored_size(store, r, result.meta.size)?;
    } else if result.meta.size != r.size {
        return Err(size_mismatch(store, r, result.meta.size));
    }
    Ok(HashGet {
        store,
        r,
        payload: result.payload,
    })
}

fn mismatch(store: &Store, r: &HashRef, reason: String) -> OasError {
    OasError::IntegrityMismatch {
        store: store.name.clone(),
        path: r.path.clone(),
        reason,
    }
}

fn size_mismatch(store: &Store, r: &HashRef, size: u64) -> OasError {
    let reason = format!("size is {size} bytes, the reference records {}", r.size);
    mismatch(store, r, reason)
}

impl HashGet<'_> {
    /// The object's size: the reference's, checked against the store's metadata.
    pub fn size(&self) -> u64 {
        self.r.size
    }

    /// Read the whole object into `out`, which must be exactly the reference's size, and check
    /// it: size again at the end, MD5 when `verify`. Each part is hashed as it arrives, so
    /// hashing overlaps the transfer (network streams) or the read of the next part (local files).
    pub async fn read_into(self, out: &mut [u8], verify: bool) -> Result<(), OasError> {
        let (store, r) = (self.store, self.r);
        if out.len() as u64 != r.size {
            return Err(size_mismatch(store, r, out.len() as u64));
        }
        if r.compressed() {
            return super::compressed::read_into(store, r, self.payload, out, verify).await;
        }
        let err = |e| store.error(e, "get", &r.path);
        let mut hasher = verify.then(ContentHasher::new);
        let filled = match self.payload {
            GetResultPayload::File(file, path) => read_file_into(file, out, hasher.as_mut())
                .await
                .map_err(|e| err(io_error(&path, e)))?,
            GetResultPayload::Stream(mut stream) => {
                let mut filled = 0;
                while let Some(chunk) = stream.try_next().await.map_err(err)? {
                    let end = filled + chunk.len();
                    let to = out
                        .get_mut(filled..end)
                        .ok_or_else(|| size_mismatch(store, r, end as u64))?;
                    to.copy_from_slice(&chunk);
                    if let Some(h) = hasher.as_mut() {
                        h.update(&chunk);
                    }
                    filled = end;
                }
                filled
            }
        };
        if filled != out.len() {
            return Err(size_mismatch(store, r, filled as u64));
        }
        if let Some(actual) = hasher.map(ContentHasher::finish) {
            if actual != r.hash {
                return Err(mismatch(
                    store,
                    r,
                    format!("content hash is {actual}, the reference records {}", r.hash),
                ));
            }
        }
        Ok(())
    }
}

/// Fill `out` from the start of `file` (up to its end, if shorter), hashing each part: parts of
/// [`FILE_PART`] bytes read with positional reads on the blocking pool, one part ahead. The bytes
/// read into `out`.
async fn read_file_into(
    file: std::fs::File,
    out: &mut [u8],
    mut hasher: Option<&mut ContentHasher>,
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let file = std::sync::Arc::new(file);
    // Read up to `len` bytes at `offset` into `buf` on the blocking pool; `buf` comes back.
    let read = |mut buf: Vec<u8>, offset: usize, len: usize| {
        let file = file.clone();
        tokio::task::spawn_blocking(move || {
            let mut n = 0;
            while n < len {
                match file.read_at(&mut buf[n..len], (offset + n) as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((buf, n))
        })
    };
    let part = out.len().clamp(1, FILE_PART);
    let mut spare = (out.len() > part).then(|| vec![0u8; part]);
    let mut pending = (!out.is_empty()).then(|| read(vec![0u8; part], 0, part));
    let mut filled = 0;
    while let Some(task) = pending.take() {
        let asked = part.min(out.len() - filled);
        let (buf, n) = task.await.map_err(std::io::Error::other)??;
        let next = filled + n;
        if n == asked && next < out.len() {
            let buf = spare.take().expect("two buffers take turns");
            pending = Some(read(buf, next, part.min(out.len() - next)));
        }
        out[filled..next].copy_from_slice(&buf[..n]);
        if let Some(h) = hasher.as_mut() {
            h.update(&buf[..n]);
        }
        filled = next;
        spare = Some(buf);
    }
    Ok(filled)
}

/// An I/O error reading a local file, as object_store reports one.
pub(super) fn io_error(path: &std::path::Path, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("cannot read {}: {e}", path.display()).into(),
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
/// request. Of a compressed hash-addressed object (named `{hash}.zst`): its uncompressed bytes
/// and size.
pub async fn read_head(store: &Store, path: &str, n: u64) -> Result<(Bytes, u64), OasError> {
    use object_store::{GetOptions, GetRange};
    if super::compressed::is_compressed_path(path) {
        return super::compressed::read_head(store, path, n).await;
    }
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
    async fn local_files_longer_than_a_part_are_read_whole_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let data: Vec<u8> = (0..2 * FILE_PART + 3).map(|i| (i % 251) as u8).collect();
        let (r, _) = put_hash(&store, "lab", Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!(get_hash(&store, &r, true).await.unwrap(), data);
        // Read into a buffer of the caller's; one of the wrong size is refused.
        let mut out = vec![0; data.len()];
        let get = open_hash(&store, &r).await.unwrap();
        assert_eq!(get.size(), data.len() as u64);
        get.read_into(&mut out, true).await.unwrap();
        assert_eq!(out, data);
        let get = open_hash(&store, &r).await.unwrap();
        assert!(matches!(
            get.read_into(&mut out[1..], true).await.unwrap_err(),
            OasError::IntegrityMismatch { .. }
        ));
        // A change in the last part is seen.
        let mut bad = data.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(dir.path().join(&r.path), &bad).unwrap();
        let e = get_hash(&store, &r, true).await.unwrap_err();
        assert!(e.to_string().contains("content hash"), "{e}");
    }
}
