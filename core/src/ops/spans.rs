//! Reads of many byte ranges of one object, streamed: each chunk goes to the caller the moment it
//! arrives and is dropped, so a read holds a few chunk buffers however much it fetches.
//!
//! Over HTTP each range is read as ranged GETs of at most a part each, many in flight, and their
//! bodies are consumed as they stream in. A `file` store's object is opened once and read with
//! positional reads, batched into jobs on tokio's blocking pool, one job ahead of the caller.

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryFutureExt, TryStreamExt};
use object_store::{GetOptions, GetRange, GetResultPayload};

use super::read::io_error;
use crate::backend::Store;
use crate::error::OasError;
use crate::spec::Protocol;

/// Ranges longer than this are read as several requests (over HTTP, in parallel).
pub const RANGE_PART: u64 = 8 << 20;

/// One job of positional reads on a local file reads at most this many bytes...
const FILE_BATCH_BYTES: u64 = 8 << 20;
/// ...in at most this many reads.
const FILE_BATCH_READS: usize = 4096;

/// Where the chunks of a read go: `sink(offset, bytes)` for each, as it arrives.
pub type Sink<'a> = dyn FnMut(u64, &[u8]) -> Result<(), OasError> + 'a;

/// Read `ranges` (sorted, disjoint) of the object at `path`, as parts of at most `part` bytes with
/// up to `in_flight` requests at once, and hand every chunk to `sink(offset, bytes)` in whatever
/// order the chunks arrive; each byte of the ranges comes exactly once. Returns the number of
/// requests made. An object shorter than a range is an integrity error.
pub async fn read_spans(
    store: &Store,
    path: &str,
    ranges: &[Range<u64>],
    part: u64,
    in_flight: usize,
    sink: &mut Sink<'_>,
) -> Result<u64, OasError> {
    let part = part.max(1);
    let parts: Vec<Range<u64>> = ranges
        .iter()
        .flat_map(|r| {
            (r.start..r.end)
                .step_by(part as usize)
                .map(move |s| s..(s + part).min(r.end))
        })
        .collect();
    if parts.is_empty() {
        return Ok(0);
    }
    if store.spec.protocol == Protocol::File {
        read_file_spans(store, path, &parts, sink).await?;
    } else {
        read_http_spans(store, path, &parts, in_flight.max(1), sink).await?;
    }
    Ok(parts.len() as u64)
}

fn short_read(store: &Store, path: &str, r: &Range<u64>, got: u64) -> OasError {
    OasError::IntegrityMismatch {
        store: store.name.clone(),
        path: path.to_string(),
        reason: format!(
            "bytes {}..{} of the object came back as {got} bytes",
            r.start, r.end
        ),
    }
}

async fn read_http_spans(
    store: &Store,
    path: &str,
    parts: &[Range<u64>],
    in_flight: usize,
    sink: &mut Sink<'_>,
) -> Result<(), OasError> {
    let key = store.key(path)?;
    let key = &key;
    let requests = parts.iter().map(|r| {
        let r = r.clone();
        let get = async move {
            let opts = GetOptions {
                range: Some(GetRange::Bounded(r.clone())),
                ..Default::default()
            };
            let got = store
                .client()
                .get_opts(key, opts)
                .await
                .map_err(|e| store.error(e, "get_range", path))?;
            if got.range != r {
                let n = got.range.end - got.range.start;
                return Err(short_read(store, path, &r, n));
            }
            Ok(chunks_of(store, path, r, got.into_stream()))
        };
        Box::pin(get.try_flatten_stream())
    });
    let mut chunks = futures::stream::iter(requests).flatten_unordered(in_flight);
    while let Some((offset, bytes)) = chunks.try_next().await? {
        sink(offset, &bytes)?;
    }
    Ok(())
}

/// The body of a ranged GET of `r` as `(offset, chunk)`, failing if it is not exactly `r` long.
fn chunks_of<'a>(
    store: &'a Store,
    path: &'a str,
    r: Range<u64>,
    body: BoxStream<'static, object_store::Result<Bytes>>,
) -> impl futures::Stream<Item = Result<(u64, Bytes), OasError>> + 'a {
    futures::stream::try_unfold((body, r.start), move |(mut body, at)| {
        let r = r.clone();
        async move {
            match body
                .try_next()
                .await
                .map_err(|e| store.error(e, "get_range", path))?
            {
                Some(chunk) if at + chunk.len() as u64 <= r.end => {
                    let next = at + chunk.len() as u64;
                    Ok(Some(((at, chunk), (body, next))))
                }
                Some(chunk) => Err(short_read(
                    store,
                    path,
                    &r,
                    at - r.start + chunk.len() as u64,
                )),
                None if at == r.end => Ok(None),
                None => Err(short_read(store, path, &r, at - r.start)),
            }
        }
    })
}

async fn read_file_spans(
    store: &Store,
    path: &str,
    parts: &[Range<u64>],
    sink: &mut Sink<'_>,
) -> Result<(), OasError> {
    let key = store.key(path)?;
    // Opens the file (never through a symbolic link) and reads nothing.
    let got = store
        .client()
        .get_opts(&key, GetOptions::default())
        .await
        .map_err(|e| store.error(e, "get_range", path))?;
    let GetResultPayload::File(file, file_path) = got.payload else {
        return Err(OasError::invalid_argument(format!(
            "store \"{}\" did not open \"{path}\" as a local file",
            store.name
        )));
    };
    let file = Arc::new(file);
    // Batches of consecutive parts: at most FILE_BATCH_BYTES and FILE_BATCH_READS each.
    let mut batches: Vec<&[Range<u64>]> = Vec::new();
    let mut rest = parts;
    while !rest.is_empty() {
        let mut bytes = 0;
        let n = rest
            .iter()
            .take(FILE_BATCH_READS)
            .take_while(|r| {
                bytes += r.end - r.start;
                bytes <= FILE_BATCH_BYTES
            })
            .count()
            .max(1);
        let (batch, tail) = rest.split_at(n);
        batches.push(batch);
        rest = tail;
    }
    let failed = |e| store.error(io_error(&file_path, e), "get_range", path);
    let mut spare = Some(Vec::new());
    let mut pending = Some(read_batch(file.clone(), Vec::new(), batches[0]));
    for (i, batch) in batches.iter().enumerate() {
        let job = pending.take().expect("one job ahead");
        let buf = match job
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(failed)?
        {
            Ok(buf) => buf,
            Err((r, n)) => return Err(short_read(store, path, &r, n)),
        };
        if let Some(next) = batches.get(i + 1) {
            let buf = spare.take().expect("two buffers take turns");
            pending = Some(read_batch(file.clone(), buf, next));
        }
        let mut at = 0;
        for r in batch.iter() {
            let n = (r.end - r.start) as usize;
            sink(r.start, &buf[at..at + n])?;
            at += n;
        }
        spare = Some(buf);
    }
    Ok(())
}

/// What a batch of reads gives: the buffer filled with the parts one after another, or the first
/// part the file ended in, with the bytes it had.
type BatchRead = std::io::Result<Result<Vec<u8>, (Range<u64>, u64)>>;

/// Read the parts of `batch` into `buf` (emptied first) on the blocking pool.
fn read_batch(
    file: Arc<std::fs::File>,
    mut buf: Vec<u8>,
    batch: &[Range<u64>],
) -> tokio::task::JoinHandle<BatchRead> {
    let batch = batch.to_vec();
    tokio::task::spawn_blocking(move || {
        buf.clear();
        for r in batch {
            let at = buf.len();
            buf.resize(at + (r.end - r.start) as usize, 0);
            let n = read_full_at(&file, &mut buf[at..], r.start)?;
            if at + n != buf.len() {
                return Ok(Err((r, n as u64)));
            }
        }
        Ok(Ok(buf))
    })
}

/// Fill `buf` from `offset` of `file`, or up to the file's end; the bytes read.
fn read_full_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{local_store, memory_store};
    use object_store::ObjectStoreExt;
    use serde_json::json;

    /// A one-range read.
    fn one(r: Range<u64>) -> [Range<u64>; 1] {
        [r]
    }

    /// Read `ranges` and put every chunk back where it came from.
    async fn gather(
        store: &Store,
        ranges: &[Range<u64>],
        part: u64,
    ) -> Result<(Vec<Option<u8>>, u64), OasError> {
        let mut seen = vec![None; 10_000];
        let requests = read_spans(store, "blob", ranges, part, 4, &mut |at, bytes| {
            for (i, b) in bytes.iter().enumerate() {
                let slot = &mut seen[at as usize + i];
                assert!(slot.is_none(), "byte {} came twice", at as usize + i);
                *slot = Some(*b);
            }
            Ok(())
        })
        .await?;
        Ok((seen, requests))
    }

    #[tokio::test]
    async fn every_byte_of_every_range_comes_once_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("blob"), &data).unwrap();
        every_byte_of_every_range_comes_once(&store, &data).await;
    }

    #[tokio::test]
    async fn every_byte_of_every_range_comes_once_from_an_object_store() {
        let store = memory_store();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let key = store.key("blob").unwrap();
        store.client().put(&key, data.clone().into()).await.unwrap();
        every_byte_of_every_range_comes_once(&store, &data).await;
    }

    async fn every_byte_of_every_range_comes_once(store: &Store, data: &[u8]) {
        let store = store.clone();
        // Long ranges in parts, many tiny ones (more than one batch of reads), an empty one.
        let mut ranges = vec![10..20, 100..5_100, 5_200..5_200];
        ranges.extend((0..4_500).map(|i| 5_300 + i..5_301 + i).step_by(2));
        ranges.push(9_990..10_000);
        let (seen, requests) = gather(&store, &ranges, 1_000).await.unwrap();
        for (i, b) in seen.iter().enumerate() {
            let wanted = ranges.iter().any(|r| r.contains(&(i as u64)));
            assert_eq!(*b, wanted.then_some(data[i]), "byte {i}");
        }
        assert_eq!(requests, 1 + 5 + 2_250 + 1);
        // Past the end of the object: an error, never a short result (from a file, an integrity
        // error; a server refuses the range).
        let e = gather(&store, &one(9_000..10_001), 1_000)
            .await
            .unwrap_err();
        let local = store.spec.protocol == Protocol::File;
        assert!(
            !local || matches!(e, OasError::IntegrityMismatch { .. }),
            "{e}"
        );
        let e = gather(&store, &one(9_000..10_001), 2_000)
            .await
            .unwrap_err();
        assert!(
            !local || matches!(e, OasError::IntegrityMismatch { .. }),
            "{e}"
        );
        assert_eq!(gather(&store, &[], 1_000).await.unwrap().1, 0);
        // A failing sink stops the read with its error.
        let e = read_spans(&store, "blob", &one(0..10), 1_000, 4, &mut |_, _| {
            Err(OasError::invalid_argument("stop"))
        })
        .await
        .unwrap_err();
        assert!(e.to_string().contains("stop"));
        let e = gather(&store, &one(0..1), 1)
            .await
            .and(read_spans(&store, "nothing", &one(0..1), 1, 1, &mut |_, _| Ok(())).await)
            .unwrap_err();
        assert!(matches!(e, OasError::ObjectMissing { .. }), "{e}");
    }
}
