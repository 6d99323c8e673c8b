//! Uploads in parts (S3 multipart uploads, Azure blocks, GCS XML multipart uploads): parts of a
//! fixed size, a bounded number of them in flight, each buffered once. Hash-addressed puts of
//! large payloads to cloud stores go this way ([`put_hash_in_parts`]), and so do the extension's
//! uploads in parts (`oas_upload_*`), whose values arrive over many calls.
//!
//! The upload is driven by the future that writes to it: parts make progress while it waits for
//! room for the next one, so at most `in_flight` parts (and the one being filled) are in memory,
//! however large the value. The handle keeps the upload until it is finished or aborted, so a
//! failed or cancelled upload is aborted rather than dropped (see [`PartUpload::abandon`]).
//!
//! A crash cannot abort anything: so each upload to a cloud store is started by id and recorded
//! in the store before its first part, and the record is removed when the upload is finished or
//! aborted. The collector aborts the uploads of records a dead writer left
//! ([`crate::gc::uploads`]).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use object_store::multipart::PartId;
use object_store::path::Path as ObjectPath;
use object_store::{
    MultipartId, MultipartUpload, ObjectStoreExt, PutPayload, PutResult, UploadPart,
};

use crate::backend::{PartsStore, Store};
use crate::error::OasError;
use crate::gc::uploads::{self, UploadRecord};
use crate::reference::HashRef;

use super::existing_size;
use super::put::{reference_for, PutOutcome};

/// How an upload is cut into parts and paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// Bytes per part (the last part may be smaller).
    pub size: usize,
    /// Parts sent at the same time, at most; each holds a buffer of `size` bytes.
    pub in_flight: usize,
}

impl PartPlan {
    /// S3's smallest part (every part but the last).
    pub const MIN_SIZE: usize = 5 << 20;
    /// Parts of 8 MiB, four in flight.
    pub const DEFAULT: PartPlan = PartPlan {
        size: 8 << 20,
        in_flight: 4,
    };

    /// A plan of parts of `size` bytes (at least [`Self::MIN_SIZE`]), `in_flight` at a time (at
    /// least one).
    pub fn new(size: usize, in_flight: usize) -> Self {
        PartPlan {
            size: size.max(Self::MIN_SIZE),
            in_flight: in_flight.max(1),
        }
    }

    /// Whether a hash-addressed payload of `len` bytes goes to `store` in parts: cloud stores, and
    /// payloads of more than one part. File stores stage and link (see [`crate::stage`]); a
    /// payload of one part is one conditional create.
    pub fn splits(&self, store: &Store, len: usize) -> bool {
        store.local_root().is_none() && len > self.size
    }
}

impl Default for PartPlan {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The longest a failed or cancelled upload waits for its abort: a store that hangs must not
/// hold up a cancel (parts an abort could not remove are the store's to expire, see README).
const ABORT_WAIT: Duration = Duration::from_millis(500);

/// One upload in parts to one key, written as the bytes come.
pub struct PartUpload {
    store: Store,
    path: String,
    upload: Box<dyn MultipartUpload>,
    /// Where the upload is recorded (cloud stores), until it is finished or aborted.
    record: Option<String>,
    plan: PartPlan,
    /// The part being filled, when writes do not end on a part boundary.
    buffer: Vec<u8>,
    in_flight: FuturesUnordered<UploadPart>,
}

impl std::fmt::Debug for PartUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartUpload")
            .field("store", &self.store.name)
            .field("path", &self.path)
            .field("plan", &self.plan)
            .field("buffered", &self.buffer.len())
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl PartUpload {
    /// Start an upload to `path` of `store`. Nothing is visible at `path` until [`Self::finish`].
    /// On a cloud store the upload is recorded before this returns (see the module's doc).
    pub async fn start(store: &Store, path: &str, plan: PartPlan) -> Result<Self, OasError> {
        let key = store.key(path)?;
        let failed = |e| store.error(e, "start upload", path);
        let (upload, record): (Box<dyn MultipartUpload>, _) = match store.multipart() {
            Some(parts) => {
                let full = store.full_key(&key);
                let id = parts.create_multipart(&full).await.map_err(failed)?;
                let at = uploads::record_path();
                let record = UploadRecord {
                    path: path.to_string(),
                    upload_id: id.clone(),
                };
                if let Err(e) = uploads::write_record(store, &at, &record).await {
                    let abort = parts.abort_multipart(&full, &id);
                    let _ = tokio::time::timeout(ABORT_WAIT, abort).await;
                    return Err(e);
                }
                (Box::new(ById::new(parts.clone(), full, id)), Some(at))
            }
            // A file store's upload is a temporary file beside the path, which the collector
            // finds by its name when a crash leaves it.
            None => (
                store.client().put_multipart(&key).await.map_err(failed)?,
                None,
            ),
        };
        Ok(PartUpload {
            store: store.clone(),
            path: path.to_string(),
            upload,
            record,
            plan,
            buffer: Vec::new(),
            in_flight: FuturesUnordered::new(),
        })
    }

    /// Append `data`. Each part is sent as soon as it is full, after waiting until fewer than
    /// `in_flight` parts are on their way; what does not fill a part waits for the next write.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), OasError> {
        let size = self.plan.size;
        while !data.is_empty() {
            if self.buffer.is_empty() && data.len() >= size {
                let (part, rest) = data.split_at(size);
                self.send(Bytes::copy_from_slice(part)).await?;
                data = rest;
                continue;
            }
            if self.buffer.capacity() == 0 {
                self.buffer.reserve_exact(size);
            }
            let n = (size - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buffer.len() == size {
                let part = std::mem::take(&mut self.buffer);
                self.send(Bytes::from(part)).await?;
            }
        }
        Ok(())
    }

    /// Send the last part, wait for every part and publish the object at the upload's path.
    pub async fn finish(&mut self) -> Result<(), OasError> {
        if !self.buffer.is_empty() {
            let part = std::mem::take(&mut self.buffer);
            self.send(Bytes::from(part)).await?;
        }
        self.drain(0).await?;
        self.upload
            .complete()
            .await
            .map_err(|e| self.store.error(e, "finish upload", &self.path))?;
        self.forget_record().await;
        Ok(())
    }

    /// The upload is over: remove its record. A record left behind (this failed) only costs the
    /// collector an abort that changes nothing.
    async fn forget_record(&mut self) {
        if let Some(at) = self.record.take() {
            let _ = crate::gc::delete_object(&self.store, &at).await;
        }
    }

    /// Stop sending and abort the upload: the store drops the parts it has (as far as it
    /// allows: S3 may keep a part that was still arriving, until its lifecycle rules expire it).
    pub async fn abort(&mut self) -> Result<(), OasError> {
        self.in_flight = FuturesUnordered::new();
        self.buffer = Vec::new();
        self.upload
            .abort()
            .await
            .map_err(|e| self.store.error(e, "abort upload", &self.path))?;
        self.forget_record().await;
        Ok(())
    }

    /// The upload failed or was cancelled: abort it, waiting at most [`ABORT_WAIT`]. A failed
    /// abort is not reported (the caller raises why the upload ended).
    pub async fn abandon(&mut self) {
        let _ = tokio::time::timeout(ABORT_WAIT, self.abort()).await;
    }

    /// [`Self::write`], unless `cancel` completes first ([`OasError::Cancelled`]); an upload whose
    /// write fails or is cancelled is abandoned.
    pub async fn write_or_abandon(
        &mut self,
        data: &[u8],
        cancel: impl Future<Output = ()>,
    ) -> Result<(), OasError> {
        let written = unless_cancelled(cancel, self.write(data)).await;
        self.abandon_on_error(written).await
    }

    /// [`Self::finish`], unless `cancel` completes first; an upload that cannot be finished is
    /// abandoned.
    pub async fn finish_or_abandon(
        &mut self,
        cancel: impl Future<Output = ()>,
    ) -> Result<(), OasError> {
        let finished = unless_cancelled(cancel, self.finish()).await;
        self.abandon_on_error(finished).await
    }

    pub(super) async fn abandon_on_error<T>(
        &mut self,
        r: Result<T, OasError>,
    ) -> Result<T, OasError> {
        if r.is_err() {
            self.abandon().await;
        }
        r
    }

    /// Queue a full part once there is room for it, and start sending it.
    async fn send(&mut self, part: Bytes) -> Result<(), OasError> {
        self.drain(self.plan.in_flight - 1).await?;
        self.in_flight
            .push(self.upload.put_part(PutPayload::from_bytes(part)));
        // Poll once so the part's request starts (signing, connecting, the first bytes) while the
        // caller copies the next one.
        while let Poll::Ready(Some(done)) = futures::poll!(self.in_flight.next()) {
            self.part_done(done)?;
        }
        Ok(())
    }

    /// Wait until at most `max` parts are in flight.
    async fn drain(&mut self, max: usize) -> Result<(), OasError> {
        while self.in_flight.len() > max {
            match self.in_flight.next().await {
                Some(done) => self.part_done(done)?,
                None => break,
            }
        }
        Ok(())
    }

    fn part_done(&self, done: object_store::Result<()>) -> Result<(), OasError> {
        done.map_err(|e| self.store.error(e, "upload part", &self.path))
    }
}

/// An upload in parts driven by its id (object_store's `MultipartStore`), so that the id can be
/// recorded: the parts' ids are kept in order for completing it.
#[derive(Debug)]
struct ById {
    parts: Arc<dyn PartsStore>,
    key: ObjectPath,
    id: MultipartId,
    done: Arc<Mutex<Vec<Option<PartId>>>>,
    next: usize,
}

impl ById {
    fn new(parts: Arc<dyn PartsStore>, key: ObjectPath, id: MultipartId) -> Self {
        ById {
            parts,
            key,
            id,
            done: Arc::default(),
            next: 0,
        }
    }
}

#[async_trait]
impl MultipartUpload for ById {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let idx = self.next;
        self.next += 1;
        let (parts, key, id, done) = (
            self.parts.clone(),
            self.key.clone(),
            self.id.clone(),
            self.done.clone(),
        );
        Box::pin(async move {
            let part = parts.put_part(&key, &id, idx, data).await?;
            let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
            if done.len() <= idx {
                done.resize(idx + 1, None);
            }
            done[idx] = Some(part);
            Ok(())
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let parts = self
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| object_store::Error::Generic {
                store: "upload in parts",
                source: "a part was not stored".into(),
            })?;
        self.parts
            .complete_multipart(&self.key, &self.id, parts)
            .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.parts.abort_multipart(&self.key, &self.id).await
    }
}

/// `fut`'s result, unless `cancel` completes first: then [`OasError::Cancelled`].
pub(super) async fn unless_cancelled<T>(
    cancel: impl Future<Output = ()>,
    fut: impl Future<Output = Result<T, OasError>>,
) -> Result<T, OasError> {
    let (cancel, fut) = (std::pin::pin!(cancel), std::pin::pin!(fut));
    match futures::future::select(cancel, fut).await {
        futures::future::Either::Left(((), _)) => Err(OasError::Cancelled),
        futures::future::Either::Right((r, _)) => r,
    }
}

/// Store `data` as a hash-addressed object of `schema` in parts: hashed first (the hash is the
/// path), then uploaded straight to its path with `plan.in_flight` parts in flight.
///
/// The guarantees of [`super::put_prepared`]: an object of the right size already there is kept
/// and nothing is sent (looked for before the upload and again before it is published, so a
/// concurrent writer's copy is not replaced); a copy of the wrong size is replaced; readers see
/// the old object or the whole new one, never a part (the store publishes an upload at once).
/// An upload that fails, or that `cancel` ends ([`OasError::Cancelled`]), is aborted.
///
/// Unlike a single conditional create, publishing an upload in parts is not conditional on the
/// stores' clients: two writers of the same content that both pass the second look within the
/// same few milliseconds both publish, and the later replaces the earlier with the same bytes.
pub async fn put_hash_in_parts(
    store: &Store,
    schema: &str,
    hash: String,
    data: &[u8],
    plan: PartPlan,
    cancel: impl Future<Output = ()>,
) -> Result<(HashRef, PutOutcome), OasError> {
    let mut cancel = std::pin::pin!(cancel);
    let reference = reference_for(store, schema, &hash, data.len() as u64)?;
    // A compressed store is sent, and compared with, the compressed bytes.
    let packed = super::compressed::pack(store, &reference, data).await?;
    let data = packed.as_deref().unwrap_or(data);
    let size = data.len() as u64;
    let path = reference.path.clone();
    let key = store.key(&path)?;
    let looked = unless_cancelled(cancel.as_mut(), existing_size(store, &key, &path)).await?;
    if looked == Some(size) {
        return Ok((reference, PutOutcome::Deduplicated));
    }
    // A cancel while the upload is being created leaves it to the store's lifecycle rules: its
    // id never arrived, and it has no parts.
    let mut up = unless_cancelled(cancel.as_mut(), PartUpload::start(store, &path, plan)).await?;
    // Ok(true): published; Ok(false): an intact copy arrived meanwhile, the upload is abandoned.
    let published = async {
        up.write_or_abandon(data, cancel.as_mut()).await?;
        // Every full part is stored: look again before publishing over what may have arrived.
        let again = unless_cancelled(cancel.as_mut(), async {
            up.drain(0).await?;
            existing_size(store, &key, &path).await
        })
        .await;
        if up.abandon_on_error(again).await? == Some(size) {
            up.abandon().await;
            return Ok(false);
        }
        up.finish_or_abandon(cancel.as_mut()).await.map(|()| true)
    }
    .await;
    match published {
        Ok(true) if looked.is_some() => Ok((reference, PutOutcome::Repaired)),
        Ok(true) => Ok((reference, PutOutcome::Uploaded)),
        Ok(false) => Ok((reference, PutOutcome::Deduplicated)),
        Err(OasError::Cancelled) => Err(OasError::Cancelled),
        // An intact copy there anyway (a concurrent writer's) is all a put needs.
        Err(e) => match existing_size(store, &key, &path).await {
            Ok(Some(s)) if s == size => Ok((reference, PutOutcome::Deduplicated)),
            _ => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::multipart::MultipartStore;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutResult,
    };
    use serde_json::json;

    use super::*;
    use crate::backend::ClientSettings;
    use crate::ops::{get_hash, put_hash};
    use crate::spec::StoreSpec;

    /// What the store saw, and what it is told to do wrong.
    #[derive(Debug, Default)]
    struct Probe {
        starts: AtomicUsize,
        parts: AtomicUsize,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
        completes: AtomicUsize,
        aborts: AtomicUsize,
        /// This part (0-based) fails.
        fail_part: Option<usize>,
        /// When this part is sent, another writer stores these bytes at this key.
        plant: Mutex<Option<(usize, Path, Bytes)>>,
    }

    impl Probe {
        /// Uploads completed and aborted.
        fn ends(&self) -> (usize, usize) {
            (self.completes.load(SeqCst), self.aborts.load(SeqCst))
        }
    }

    /// An in-memory store whose parts take a moment each, behind a [`Probe`].
    #[derive(Debug)]
    struct Probed {
        inner: Arc<InMemory>,
        probe: Arc<Probe>,
    }

    impl std::fmt::Display for Probed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Probed")
        }
    }

    #[derive(Debug)]
    struct ProbedUpload {
        inner: Box<dyn MultipartUpload>,
        store: Arc<InMemory>,
        probe: Arc<Probe>,
        next: usize,
    }

    #[async_trait]
    impl MultipartUpload for ProbedUpload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            let (idx, probe, store) = (self.next, self.probe.clone(), self.store.clone());
            self.next += 1;
            probe.parts.fetch_add(1, SeqCst);
            let now = probe.in_flight.fetch_add(1, SeqCst) + 1;
            probe.most_in_flight.fetch_max(now, SeqCst);
            let part = self.inner.put_part(data);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let planted = probe.plant.lock().unwrap().take();
                if let Some((at, key, bytes)) = planted {
                    if at == idx {
                        store.put(&key, bytes.into()).await?;
                    } else {
                        *probe.plant.lock().unwrap() = Some((at, key, bytes));
                    }
                }
                probe.in_flight.fetch_sub(1, SeqCst);
                if probe.fail_part == Some(idx) {
                    return Err(object_store::Error::Generic {
                        store: "Probed",
                        source: "connection reset by peer".into(),
                    });
                }
                part.await
            })
        }

        async fn complete(&mut self) -> object_store::Result<PutResult> {
            self.probe.completes.fetch_add(1, SeqCst);
            self.inner.complete().await
        }

        async fn abort(&mut self) -> object_store::Result<()> {
            self.probe.aborts.fetch_add(1, SeqCst);
            self.inner.abort().await
        }
    }

    #[async_trait]
    impl ObjectStore for Probed {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.probe.starts.fetch_add(1, SeqCst);
            Ok(Box::new(ProbedUpload {
                inner: self.inner.put_multipart_opts(location, opts).await?,
                store: self.inner.clone(),
                probe: self.probe.clone(),
                next: 0,
            }))
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// An S3 store (never contacted) whose client is an in-memory store behind `probe`.
    fn probed_store(probe: Probe) -> (Store, Arc<Probe>) {
        let spec = StoreSpec::from_json(&json!({"protocol": "s3", "endpoint": "127.0.0.1:1",
            "bucket": "b", "location": "loc", "secure": false, "access_key": "k", "secret_key": "s"}))
        .unwrap();
        let probe = Arc::new(probe);
        let client = Arc::new(Probed {
            inner: Arc::new(InMemory::new()),
            probe: probe.clone(),
        });
        let store = Store::build("cloud", spec, &ClientSettings::default())
            .unwrap()
            .replacing_client(client);
        (store, probe)
    }

    /// Parts of the smallest size, two in flight.
    const PLAN: PartPlan = PartPlan {
        size: PartPlan::MIN_SIZE,
        in_flight: 2,
    };

    fn payload(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
            .collect()
    }

    fn never() -> futures::future::Pending<()> {
        futures::future::pending()
    }

    async fn put_in_parts(store: &Store, data: &[u8]) -> Result<(HashRef, PutOutcome), OasError> {
        let hash = crate::hash::content_hash(data);
        put_hash_in_parts(store, "lab", hash, data, PLAN, never()).await
    }

    #[test]
    fn plans_respect_the_smallest_part_and_split_only_cloud_payloads_over_one_part() {
        assert_eq!(PartPlan::new(1, 0), PartPlan::new(PartPlan::MIN_SIZE, 1));
        assert_eq!(PartPlan::default(), PartPlan::new(8 << 20, 4));
        let (cloud, _) = probed_store(Probe::default());
        let plan = PartPlan::DEFAULT;
        assert!(!plan.splits(&cloud, 8 << 20));
        assert!(plan.splits(&cloud, (8 << 20) + 1));
        let dir = tempfile::tempdir().unwrap();
        let local = crate::test_support::local_store(dir.path(), json!({}));
        assert!(!plan.splits(&local, 1 << 30));
    }

    #[tokio::test]
    async fn streamed_writes_of_any_size_make_one_object_with_a_bounded_number_of_parts_in_flight()
    {
        let (store, probe) = probed_store(Probe::default());
        let data = payload(4 * PLAN.size + 12_345, 1);
        let mut up = PartUpload::start(&store, "_schema/lab/t/big", PLAN)
            .await
            .unwrap();
        // Pieces that straddle part boundaries, a whole part at once, and empty writes.
        let mut rest = &data[..];
        for n in [
            3,
            PLAN.size - 1,
            0,
            PLAN.size,
            2 * PLAN.size + 7,
            usize::MAX,
        ] {
            let (piece, tail) = rest.split_at(n.min(rest.len()));
            up.write(piece).await.unwrap();
            rest = tail;
        }
        up.finish().await.unwrap();
        let got = store
            .client()
            .get(&store.key("_schema/lab/t/big").unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got, Bytes::from(data));
        assert_eq!(probe.parts.load(SeqCst), 5);
        assert_eq!(probe.most_in_flight.load(SeqCst), PLAN.in_flight);
        assert_eq!(probe.ends(), (1, 0));
    }

    /// A cloud store whose uploads in parts go by id to an in-memory store (rooted at `loc`).
    fn recording_store(mem: &Arc<InMemory>) -> Store {
        let (store, _) = probed_store(Probe::default());
        store
            .replacing_client(Arc::new(object_store::prefix::PrefixStore::new(
                mem.clone(),
                "loc",
            )))
            .with_multipart(mem.clone())
    }

    async fn records(store: &Store) -> Vec<String> {
        crate::gc::list(store, uploads::UPLOADS_PREFIX)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await
    }

    #[tokio::test]
    async fn uploads_are_recorded_until_they_end_and_a_dead_writers_is_aborted() {
        let mem = Arc::new(InMemory::new());
        let store = recording_store(&mem);
        let plan = PartPlan::new(0, 2);
        let data = vec![7u8; PartPlan::MIN_SIZE + 10];
        // Finished: the object is there, its record gone.
        let mut up = PartUpload::start(&store, "s/a.bin", plan).await.unwrap();
        assert_eq!(records(&store).await.len(), 1);
        up.write(&data).await.unwrap();
        up.finish().await.unwrap();
        assert!(records(&store).await.is_empty());
        let got = store.client().get(&store.key("s/a.bin").unwrap()).await;
        assert_eq!(got.unwrap().bytes().await.unwrap().len(), data.len());
        // Aborted: no record either.
        let mut up = PartUpload::start(&store, "s/b.bin", plan).await.unwrap();
        up.write(&data).await.unwrap();
        up.abort().await.unwrap();
        assert!(records(&store).await.is_empty());
        // A writer that dies after a part: its record stays, and names the upload, which the
        // collector aborts by its id before removing the record.
        let mut up = PartUpload::start(&store, "s/c.bin", plan).await.unwrap();
        up.write(&data).await.unwrap();
        up.drain(0).await.unwrap();
        std::mem::forget(up); // a crash: nothing runs
        let left = records(&store).await;
        assert_eq!(left.len(), 1);
        let bytes = store.client().get(&store.key(&left[0]).unwrap()).await;
        let record = UploadRecord::parse(&bytes.unwrap().bytes().await.unwrap()).unwrap();
        assert_eq!(record.path, "s/c.bin");
        assert!(uploads::abort_recorded(&store, &left[0]).await.unwrap());
        assert!(records(&store).await.is_empty());
        let full = store.full_key(&store.key("s/c.bin").unwrap());
        assert!(mem
            .complete_multipart(&full, &record.upload_id, vec![])
            .await
            .is_err());
        assert!(!uploads::abort_recorded(&store, &left[0]).await.unwrap());
    }

    #[tokio::test]
    async fn a_file_stores_upload_left_by_a_crash_is_found_once_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::test_support::local_store(dir.path(), json!({}));
        let mut up = PartUpload::start(&store, "s/t/v.bin", PartPlan::new(0, 1))
            .await
            .unwrap();
        up.write(&vec![1u8; PartPlan::MIN_SIZE]).await.unwrap();
        up.drain(0).await.unwrap();
        std::mem::forget(up); // a crash: the temporary file stays
        assert!(records(&store).await.is_empty());
        // Newer than the horizon (a writer may be at work): not found.
        assert!(uploads::local_temp_files(&store, "s", 0.0)
            .unwrap()
            .is_empty());
        let found = uploads::local_temp_files(&store, "s/", f64::MAX).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "s/t/v.bin");
        uploads::remove_local_temp(&store, &found[0].0, &found[0].1).unwrap();
        uploads::remove_local_temp(&store, &found[0].0, &found[0].1).unwrap();
        assert!(uploads::local_temp_files(&store, "", f64::MAX)
            .unwrap()
            .is_empty());
        assert!(uploads::local_temp_files(&store, "missing", f64::MAX)
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_put_in_parts_stores_what_a_single_put_stores_and_deduplicates() {
        let (store, probe) = probed_store(Probe::default());
        let data = payload(3 * PLAN.size + 1, 2);
        let (r, o) = put_in_parts(&store, &data).await.unwrap();
        assert_eq!(o, PutOutcome::Uploaded);
        assert_eq!(probe.parts.load(SeqCst), 4);
        assert_eq!(
            get_hash(&store, &r, true).await.unwrap(),
            Bytes::from(data.clone())
        );
        // The single put of the same bytes names the same object, and finds it.
        let (single, o) = put_hash(&store, "lab", Bytes::from(data.clone()))
            .await
            .unwrap();
        assert_eq!((single, o), (r.clone(), PutOutcome::Deduplicated));
        // Again in parts: found by its size, nothing sent.
        assert_eq!(
            put_in_parts(&store, &data).await.unwrap(),
            (r.clone(), PutOutcome::Deduplicated)
        );
        assert_eq!(probe.starts.load(SeqCst), 1);
        // A damaged copy (wrong size) is replaced.
        let key = store.key(&r.path).unwrap();
        store.client().put(&key, "short".into()).await.unwrap();
        assert_eq!(
            put_in_parts(&store, &data).await.unwrap(),
            (r.clone(), PutOutcome::Repaired)
        );
        assert_eq!(get_hash(&store, &r, true).await.unwrap(), Bytes::from(data));
    }

    #[tokio::test]
    async fn a_failed_part_aborts_the_upload_and_is_a_store_error() {
        let (store, probe) = probed_store(Probe {
            fail_part: Some(2),
            ..Probe::default()
        });
        let data = payload(4 * PLAN.size, 3);
        let e = put_in_parts(&store, &data).await.unwrap_err();
        match &e {
            OasError::Store {
                store, op, detail, ..
            } => {
                assert_eq!((store.as_str(), *op), ("cloud", "upload part"));
                assert!(detail.contains("connection reset"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(probe.ends(), (0, 1));
        let listed: Vec<_> = store.client().list(None).collect().await;
        assert!(listed.is_empty(), "{listed:?}");
    }

    #[tokio::test]
    async fn a_cancelled_put_aborts_the_upload_and_leaves_no_object() {
        let (store, probe) = probed_store(Probe::default());
        let data = payload(6 * PLAN.size, 4);
        let watch = probe.clone();
        let cancel = async move {
            while watch.parts.load(SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let hash = crate::hash::content_hash(&data);
        let e = put_hash_in_parts(&store, "lab", hash, &data, PLAN, cancel)
            .await
            .unwrap_err();
        assert!(matches!(e, OasError::Cancelled), "{e:?}");
        assert!(probe.parts.load(SeqCst) < 6);
        assert_eq!(probe.ends(), (0, 1));
        let listed: Vec<_> = store.client().list(None).collect().await;
        assert!(listed.is_empty(), "{listed:?}");
    }

    #[tokio::test]
    async fn a_copy_that_arrives_during_the_upload_is_kept_and_the_upload_abandoned() {
        let (store, probe) = probed_store(Probe::default());
        let data = payload(3 * PLAN.size, 5);
        let hash = crate::hash::content_hash(&data);
        let path = crate::path::hash_path("_hash", "lab", &hash, None).unwrap();
        let theirs = Bytes::from(data.clone());
        *probe.plant.lock().unwrap() = Some((1, store.key(&path).unwrap(), theirs));
        let (r, o) = put_in_parts(&store, &data).await.unwrap();
        assert_eq!(
            (r.path.as_str(), o),
            (path.as_str(), PutOutcome::Deduplicated)
        );
        assert_eq!(probe.ends(), (0, 1));
        assert_eq!(get_hash(&store, &r, true).await.unwrap(), Bytes::from(data));
    }
}
