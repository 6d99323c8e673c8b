//! Reads: whole hash-addressed objects checked against their reference, sizes, byte ranges and
//! `.npy` headers.

use std::mem::MaybeUninit;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{GetResultPayload, ObjectStoreExt};

use crate::backend::Store;
use crate::error::OasError;
use crate::hash::ContentHasher;
use crate::reference::HashRef;

use super::{existing_size, fill};

/// Read a hash-addressed object and check it against its reference: size always (before any
/// byte is read, from the object's metadata, and again at the end), MD5 when `verify`. See
/// [`open_hash`] to read straight into a buffer of the caller's.
pub async fn get_hash(store: &Store, r: &HashRef, verify: bool) -> Result<Vec<u8>, OasError> {
    open_hash(store, r).await?.read_vec(verify).await
}

/// A hash-addressed object opened for reading, its size already checked against the reference:
/// the caller can allocate the result at that size before any byte is read.
pub struct HashGet<'a> {
    store: &'a Store,
    r: &'a HashRef,
    payload: GetResultPayload,
}

/// Open a hash-addressed object and check its size against the reference (from the object's
/// metadata, before any byte is read); [`HashGet::source`] says how to read the rest.
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

/// The end of a whole read: `filled` bytes arrived, and their hash when verified.
fn check(store: &Store, r: &HashRef, filled: u64, hash: Option<String>) -> Result<(), OasError> {
    if filled != r.size {
        return Err(size_mismatch(store, r, filled));
    }
    match hash {
        Some(actual) if actual != r.hash => Err(mismatch(
            store,
            r,
            format!("content hash is {actual}, the reference records {}", r.hash),
        )),
        _ => Ok(()),
    }
}

/// `out` must be exactly the reference's size.
fn check_len(store: &Store, r: &HashRef, out: &[MaybeUninit<u8>]) -> Result<(), OasError> {
    match out.len() as u64 == r.size {
        true => Ok(()),
        false => Err(size_mismatch(store, r, out.len() as u64)),
    }
}

/// How the bytes of an opened object arrive: each is read into a buffer of the object's size
/// (uninitialized memory is fine), checked (size again at the end, MD5 when verified), and the
/// buffer comes back as initialized bytes.
pub enum Source<'a> {
    /// A local file, read straight into the buffer by a helper thread while this one hashes
    /// ([`FileGet::read_into`] blocks, polling the caller's `cancelled`).
    File(FileGet<'a>),
    /// A network stream, copied into the buffer as it arrives and hashed beside it
    /// ([`StreamGet::read_into`], on the runtime).
    Stream(StreamGet<'a>),
    /// A zstd-compressed object, inflated into the buffer ([`CompressedGet::read_into`], on the
    /// runtime; `ops::compressed`).
    Compressed(CompressedGet<'a>),
}

pub struct CompressedGet<'a> {
    store: &'a Store,
    r: &'a HashRef,
    payload: GetResultPayload,
}

pub struct FileGet<'a> {
    store: &'a Store,
    r: &'a HashRef,
    file: std::fs::File,
    path: std::path::PathBuf,
}

pub struct StreamGet<'a> {
    store: &'a Store,
    r: &'a HashRef,
    stream: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
}

impl<'a> HashGet<'a> {
    /// The object's size: the reference's, checked against the store's metadata.
    pub fn size(&self) -> u64 {
        self.r.size
    }

    pub fn source(self) -> Source<'a> {
        let (store, r) = (self.store, self.r);
        if r.compressed() {
            let payload = self.payload;
            return Source::Compressed(CompressedGet { store, r, payload });
        }
        match self.payload {
            GetResultPayload::File(file, path) => Source::File(FileGet {
                store,
                r,
                file,
                path,
            }),
            GetResultPayload::Stream(stream) => Source::Stream(StreamGet { store, r, stream }),
        }
    }

    /// The whole object in a new buffer, checked; on the runtime (a local file on its blocking
    /// pool, into a buffer that thread owns, so a dropped read stops it within a part).
    pub async fn read_vec(self, verify: bool) -> Result<Vec<u8>, OasError> {
        let size = usize::try_from(self.r.size)
            .map_err(|_| size_mismatch(self.store, self.r, self.r.size))?;
        match self.source() {
            Source::Stream(get) => {
                let mut out = Vec::with_capacity(size);
                get.read_into(out.spare_capacity_mut(), verify).await?;
                // SAFETY: `read_into` returned the first `size` bytes initialized.
                unsafe { out.set_len(size) };
                Ok(out)
            }
            Source::File(get) => get.read_vec(size, verify).await,
            Source::Compressed(get) => {
                let (store, r) = (get.store, get.r);
                let mut out = vec![0u8; size];
                super::compressed::read_into(store, r, get.payload, &mut out, verify).await?;
                Ok(out)
            }
        }
    }
}

impl CompressedGet<'_> {
    /// Inflate the whole object into `out` and check it (the frame's checksum; MD5 of the
    /// content when verified). The buffer is zeroed first: the decoder writes initialized memory.
    pub async fn read_into(
        self,
        out: &mut [MaybeUninit<u8>],
        verify: bool,
    ) -> Result<&mut [u8], OasError> {
        let (store, r) = (self.store, self.r);
        check_len(store, r, out)?;
        out.fill(MaybeUninit::new(0));
        // SAFETY: every byte was just initialized.
        let out = unsafe { fill::assume_init(out) };
        super::compressed::read_into(store, r, self.payload, out, verify).await?;
        Ok(out)
    }
}

impl FileGet<'_> {
    /// Read the whole file into `out` and check it (see [`Source`]). Blocks until done, or until
    /// `cancelled` (polled every few milliseconds) says so: then [`OasError::Cancelled`], and the
    /// helper thread has stopped, so nothing writes into `out` any more.
    pub fn read_into<'o>(
        self,
        out: &'o mut [MaybeUninit<u8>],
        verify: bool,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<&'o mut [u8], OasError> {
        let (store, r) = (self.store, self.r);
        check_len(store, r, out)?;
        let mut hasher = verify.then(ContentHasher::new);
        let filled = fill::from_file(&self.file, out, hasher.as_mut(), cancelled)
            .map_err(|e| store.error(io_error(&self.path, e), "get", &r.path))?
            .ok_or(OasError::Cancelled)?;
        check(store, r, filled as u64, hasher.map(ContentHasher::finish))?;
        // SAFETY: `from_file` filled all of `out` (checked just above).
        Ok(unsafe { fill::assume_init(out) })
    }

    async fn read_vec(self, size: usize, verify: bool) -> Result<Vec<u8>, OasError> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        // Set when this read is dropped (or done): the blocking thread stops within a part.
        struct StopOnDrop(Arc<AtomicBool>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let (file, stopped) = (self.file, stop.0.clone());
        let read = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(size);
            let mut hasher = verify.then(ContentHasher::new);
            let cancelled = || stopped.load(Ordering::Relaxed);
            let filled =
                fill::from_file(&file, out.spare_capacity_mut(), hasher.as_mut(), &cancelled)?;
            if let Some(n) = filled {
                // SAFETY: `from_file` filled the first `n` bytes.
                unsafe { out.set_len(n) };
            }
            Ok((out, filled, hasher.map(ContentHasher::finish)))
        });
        let (store, r) = (self.store, self.r);
        let (out, filled, hash) = read
            .await
            .map_err(|e| OasError::Internal(e.to_string()))?
            .map_err(|e| store.error(io_error(&self.path, e), "get", &r.path))?;
        let filled = filled.ok_or(OasError::Cancelled)?;
        check(store, r, filled as u64, hash)?;
        drop(stop);
        Ok(out)
    }
}

impl StreamGet<'_> {
    /// Read the whole stream into `out` and check it (see [`Source`]).
    pub async fn read_into(
        mut self,
        out: &mut [MaybeUninit<u8>],
        verify: bool,
    ) -> Result<&mut [u8], OasError> {
        let (store, r) = (self.store, self.r);
        check_len(store, r, out)?;
        let err = |e| store.error(e, "get", &r.path);
        let mut hashing = fill::Hashing::start(verify, out.len());
        let mut filled = 0;
        while let Some(chunk) = self.stream.try_next().await.map_err(err)? {
            let end = filled + chunk.len();
            let to = out
                .get_mut(filled..end)
                .ok_or_else(|| size_mismatch(store, r, end as u64))?;
            fill::copy_in(to, &chunk);
            hashing.update(chunk).await;
            filled = end;
        }
        let hash = hashing
            .finish()
            .await
            .map_err(|e| OasError::Internal(e.to_string()))?;
        check(store, r, filled as u64, hash)?;
        // SAFETY: the chunks filled all of `out` (checked just above).
        Ok(unsafe { fill::assume_init(out) })
    }
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

    /// A local file read through [`Source::File`] into a fresh buffer, or the error.
    fn read_file(
        get: HashGet<'_>,
        len: usize,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, OasError> {
        let Source::File(get) = get.source() else {
            panic!("a file store gives a file")
        };
        let mut out = Vec::with_capacity(len);
        let read = get.read_into(&mut out.spare_capacity_mut()[..len], true, cancelled)?;
        Ok(read.to_vec())
    }

    #[tokio::test]
    async fn local_files_longer_than_a_part_are_read_whole_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        // Long enough to be read beside its hashing, in parts, the last one short.
        let data: Vec<u8> = (0..2 * fill::BESIDE_MIN + 3)
            .map(|i| (i % 251) as u8)
            .collect();
        let (r, _) = put_hash(&store, "lab", Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!(get_hash(&store, &r, true).await.unwrap(), data);
        assert_eq!(get_hash(&store, &r, false).await.unwrap(), data);
        // Read into a buffer of the caller's; one of the wrong size is refused.
        let get = open_hash(&store, &r).await.unwrap();
        assert_eq!(get.size(), data.len() as u64);
        assert_eq!(read_file(get, data.len(), &|| false).unwrap(), data);
        let get = open_hash(&store, &r).await.unwrap();
        assert!(matches!(
            read_file(get, data.len() - 1, &|| false).unwrap_err(),
            OasError::IntegrityMismatch { .. }
        ));
        // A cancel stops the read.
        let get = open_hash(&store, &r).await.unwrap();
        assert!(matches!(
            read_file(get, data.len(), &|| true).unwrap_err(),
            OasError::Cancelled
        ));
        // A change in the last part is seen.
        let mut bad = data.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(dir.path().join(&r.path), &bad).unwrap();
        let e = get_hash(&store, &r, true).await.unwrap_err();
        assert!(e.to_string().contains("content hash"), "{e}");
        let get = open_hash(&store, &r).await.unwrap();
        let e = read_file(get, data.len(), &|| false).unwrap_err();
        assert!(e.to_string().contains("content hash"), "{e}");
        // A file cut short after it was opened (its size checked) is seen at the end of the read.
        std::fs::write(dir.path().join(&r.path), &data).unwrap();
        let get = open_hash(&store, &r).await.unwrap();
        std::fs::write(dir.path().join(&r.path), &data[..fill::BESIDE_MIN + 1]).unwrap();
        let e = read_file(get, data.len(), &|| false).unwrap_err();
        assert!(e.to_string().contains("size is"), "{e}");
    }

    #[tokio::test]
    async fn streams_are_read_whole_and_checked() {
        use crate::test_support::memory_store;
        let store = memory_store();
        for len in [5, 2 * fill::BESIDE_MIN + 3] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let (r, _) = put_hash(&store, "lab", Bytes::from(data.clone()))
                .await
                .unwrap();
            assert_eq!(get_hash(&store, &r, true).await.unwrap(), data);
            let Source::Stream(get) = open_hash(&store, &r).await.unwrap().source() else {
                panic!("an object store gives a stream")
            };
            let mut out = Vec::with_capacity(len);
            let read = get
                .read_into(&mut out.spare_capacity_mut()[..len], true)
                .await
                .unwrap();
            assert_eq!(read, &data[..]);
            // The same size, other bytes: the hash (beside the stream or not) sees it.
            let mut bad = data.clone();
            bad[len / 2] ^= 1;
            let key = store.key(&r.path).unwrap();
            store.client().put(&key, bad.into()).await.unwrap();
            let e = get_hash(&store, &r, true).await.unwrap_err();
            assert!(e.to_string().contains("content hash"), "{e}");
            assert_eq!(get_hash(&store, &r, false).await.unwrap().len(), len);
        }
    }
}
