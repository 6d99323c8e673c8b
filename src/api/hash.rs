//! Hash-addressed objects (`<hash@>`, and the storage of `<blob@>`/`<attach@>`): the row keeps
//! `{"hash","path","schema","store","size"}`, the store keeps the bytes at
//! `{hash_prefix}/{schema}/{hash}`, one copy per schema however many rows use it.

use bytes::Bytes;
use oas_core::backend::Store;
use oas_core::hash::content_hash;
use oas_core::ops::{
    content_hash_yielding, discard, open_hash, publish, put_hash_in_parts, reference_for, PartPlan,
    Source,
};
use oas_core::reference::HashRef;
use oas_core::stage::{prepare, Body, Prepared, STAGE_MIN};
use pgrx::prelude::*;
use pgrx::JsonB;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::catalog;
use oas_core::OasError;

use super::bytea::Bytea;
use super::MAX_BYTEA;
use crate::error::{OrRaise, SpiOk};
use crate::runtime::{block_on, block_on_watching, run_cancellable};
use crate::write_behind::{submit, Upload};

/// Store `data` and return its DataJoint reference. `store` defaults to the default store,
/// `schema` to the current schema (DataJoint's schema is the database schema of the table).
/// A NULL value stays NULL and touches no store, as DataJoint stores `None`.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_hash_put(
    data: Option<&[u8]>,
    store: default!(Option<&str>, "NULL"),
    schema: default!(Option<&str>, "NULL"),
) -> Option<JsonB> {
    Some(JsonB(put(data?, store, schema, None).or_raise()))
}

/// Read the bytes a reference points to, checking size and (with `oas.verify_reads`) MD5.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_hash_get(reference: JsonB) -> Bytea {
    get(&reference.0).or_raise()
}

/// Store `data` hash-addressed in `store` (default: the default store) for `schema` (default:
/// the current schema); the reference. What `oas_hash_put` and `oas_attach_put` do. The upload
/// may still be in flight when this returns ([`crate::write_behind`]); `restore` is called if
/// it fails or is rolled back.
pub(crate) fn put(
    data: &[u8],
    store: Option<&str>,
    schema: Option<&str>,
    restore: Option<Box<dyn FnOnce()>>,
) -> Result<serde_json::Value, OasError> {
    let store = catalog::store_to_write(store)?;
    let schema = match schema {
        Some(s) => s.to_string(),
        None => Spi::get_one::<String>("SELECT pg_catalog.current_schema()::pg_catalog.text")
            .spi()?
            .unwrap_or_else(|| "public".into()),
    };
    crate::privilege::require_schema_usage(&schema)?;
    // A file store that fsyncs is written without, and synced when the transaction commits
    // (`crate::durability`).
    let target = crate::durability::target(&store);
    let plan = crate::guc::part_plan();
    if plan.splits(&target, data.len()) {
        return put_in_parts(&store, &target, &schema, data, plan);
    }
    // Large payloads are hashed and staged (or copied) on two threads, straight from
    // PostgreSQL's copy of the parameter; small ones are not worth the threads.
    let prepared = if data.len() >= STAGE_MIN {
        let fsync = crate::guc::file_fsync() && store.deferring().is_none();
        run_cancellable(|cancelled| prepare(&target, data, fsync, cancelled))?
    } else {
        Prepared {
            hash: content_hash(data),
            size: data.len() as u64,
            body: Body::Owned(Bytes::copy_from_slice(data)),
        }
    };
    let reference = match reference_for(&store, &schema, &prepared.hash, prepared.size) {
        Ok(r) => r,
        Err(e) => {
            block_on(async {
                discard(&target, &prepared.body).await;
                Ok(())
            })?;
            return Err(e);
        }
    };
    // Before looking for an existing copy: from here to the end of the transaction no collector
    // moves this object, so a dedup hit cannot end in a dangling reference.
    super::locks::lock_for_reference(&reference.path)?;
    let json = reference.to_json();
    let bytes = match &prepared.body {
        Body::Owned(data) => data.len(),
        Body::Staged(_) => 0,
    };
    // The reference is known now; the upload may finish with the statement (`write_behind`).
    let upload = Upload {
        store,
        paths: vec![reference.path.clone()],
        bytes,
        restore,
    };
    submit(upload, async move {
        publish(&target, &reference, prepared.body).await.map(drop)
    })?;
    Ok(json)
}

/// A payload of several parts to a cloud store: hashed on this thread (the hash is the path),
/// then sent straight from PostgreSQL's copy of the parameter, a few parts in flight and only
/// those buffered. A cancel aborts the upload before the query ends.
fn put_in_parts(
    store: &Store,
    target: &Store,
    schema: &str,
    data: &[u8],
    plan: PartPlan,
) -> Result<serde_json::Value, OasError> {
    let hash = block_on(async { Ok(content_hash_yielding(data).await) })?;
    // Before looking for an existing copy: from here to the end of the transaction no collector
    // moves this object, so a dedup hit cannot end in a dangling reference.
    let path = reference_for(store, schema, &hash, data.len() as u64)?.path;
    super::locks::lock_for_reference(&path)?;
    let (reference, _outcome) =
        block_on_watching(|cancel| put_hash_in_parts(target, schema, hash, data, plan, cancel))?;
    crate::durability::written(store, &reference.path)?;
    Ok(reference.to_json())
}

/// The bytes of a hash-addressed reference, size and (with `oas.verify_reads`) MD5 checked, read
/// straight into the `bytea` that is returned.
pub(crate) fn get(reference: &serde_json::Value) -> Result<Bytea, OasError> {
    let r = HashRef::from_json(reference)?;
    if r.size > MAX_BYTEA {
        return Err(OasError::TooLarge {
            message: format!(
                "object \"{}\" has {} bytes, more than a bytea value can hold (1 GB)",
                r.path, r.size
            ),
            hint: Some(
                "read objects this large in ranges with oas_read(reference, offset, length), or directly from the store"
                    .into(),
            ),
        });
    }
    let (_, store) = catalog::store_to_read(r.store_name(), &r.path)?;
    let verify = crate::guc::verify_reads();
    let get = block_on(open_hash(&store, &r))?;
    // The size is the object's (checked) and at most MAX_BYTEA. A local file is read on a helper
    // thread that has ended when `read_into` returns (cancelled or not); a stream is copied in
    // (or inflated) on this thread, so a dropped read leaves nothing writing into the result.
    Bytea::filled(get.size() as usize, |out| match get.source() {
        Source::File(file) => run_cancellable(|cancelled| file.read_into(out, verify, cancelled)),
        Source::Stream(stream) => block_on(stream.read_into(out, verify)),
        Source::Compressed(zstd) => block_on(zstd.read_into(out, verify)),
    })
}

/// The bytes of many hash-addressed references, in their order (`ordinality` counts from 1; a
/// NULL reference gives a NULL row), size and (with `oas.verify_reads`) MD5 checked. Up to
/// `oas.reads_in_flight` objects holding at most `oas.upload_memory` are fetched at once, ahead
/// of the row being returned:
/// `SELECT * FROM oas_hash_get_many(ARRAY(SELECT raw FROM lab.recording ORDER BY id))`.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_hash_get_many(
    refs: Vec<Option<JsonB>>,
) -> TableIterator<'static, (name!(ordinality, i64), name!(data, Option<Vec<u8>>))> {
    let stream = get_many(refs).or_raise();
    let mut stream = Box::pin(stream);
    TableIterator::new(
        std::iter::from_fn(move || {
            block_on(async { Ok(futures::StreamExt::next(&mut stream).await) }).or_raise()
        })
        .enumerate()
        // The row's bytes leave the budget when the row is made (the permit drops).
        .map(|(i, got)| (i as i64 + 1, got.or_raise().map(|(data, _permit)| data))),
    )
}

/// An object fetched ahead, with its share of the memory budget.
type Fetched = (Vec<u8>, OwnedSemaphorePermit);

/// Every reference's store and read privilege are checked before anything is fetched; the
/// fetches then run `oas.reads_in_flight` at a time, in order, while the objects fetched and
/// not yet returned hold at most `oas.upload_memory` (one larger object is fetched alone).
fn get_many(
    references: Vec<Option<JsonB>>,
) -> Result<impl futures::Stream<Item = Result<Option<Fetched>, OasError>>, OasError> {
    use futures::StreamExt;
    let mut reads = Vec::with_capacity(references.len());
    for reference in references {
        let Some(JsonB(json)) = reference else {
            reads.push(None);
            continue;
        };
        let r = HashRef::from_json(&json)?;
        let (_, store) = catalog::store_to_read(r.store_name(), &r.path)?;
        reads.push(Some((store, r)));
    }
    let verify = crate::guc::verify_reads();
    // The budget in KiB; the semaphore is fair, so the next row's object always comes first.
    let budget = (crate::guc::upload_memory() / 1024).min(Semaphore::MAX_PERMITS) as u32;
    let memory = Arc::new(Semaphore::new(budget as usize));
    Ok(futures::stream::iter(reads)
        .map(move |read| {
            let memory = memory.clone();
            async move {
                let Some((store, r)) = read else {
                    return Ok(None);
                };
                let kib = r.size.div_ceil(1024).clamp(1, u64::from(budget)) as u32;
                let permit = memory
                    .acquire_many_owned(kib)
                    .await
                    .map_err(|e| OasError::Internal(e.to_string()))?;
                let out = open_hash(&store, &r).await?.read_vec(verify).await?;
                Ok(Some((out, permit)))
            }
        })
        .buffered(crate::guc::reads_in_flight()))
}

/// DataJoint's content hash of `data`: MD5, base32, lowercase, unpadded (26 characters).
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_content_hash(data: &[u8]) -> String {
    oas_core::hash::content_hash(data)
}
