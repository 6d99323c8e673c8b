//! Hash-addressed objects (`<hash@>`, and the storage of `<blob@>`/`<attach@>`): the row keeps
//! `{"hash","path","schema","store","size"}`, the store keeps the bytes at
//! `{hash_prefix}/{schema}/{hash}`, one copy per schema however many rows use it.

use bytes::Bytes;
use oas_core::backend::Store;
use oas_core::hash::content_hash;
use oas_core::ops::{
    content_hash_yielding, hash_target, open_hash, put_hash_in_parts, put_prepared, PartPlan,
};
use oas_core::reference::HashRef;
use oas_core::stage::{prepare, Body, Prepared, STAGE_MIN};
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::catalog;
use oas_core::OasError;

use super::bytea::Bytea;
use super::MAX_BYTEA;
use crate::error::{OrRaise, SpiOk};
use crate::runtime::{block_on, block_on_watching, run_cancellable};

/// Store `data` and return its DataJoint reference. `store` defaults to the default store,
/// `schema` to the current schema (DataJoint's schema is the database schema of the table).
/// A NULL value stays NULL and touches no store, as DataJoint stores `None`.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_hash_put(
    data: Option<&[u8]>,
    store: default!(Option<&str>, "NULL"),
    schema: default!(Option<&str>, "NULL"),
) -> Option<JsonB> {
    Some(JsonB(put(data?, store, schema).or_raise()))
}

/// Read the bytes a reference points to, checking size and (with `oas.verify_reads`) MD5.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_hash_get(reference: JsonB) -> Bytea {
    get(&reference.0).or_raise()
}

/// Store `data` hash-addressed in `store` (default: the default store) for `schema` (default:
/// the current schema); the reference. What `oas_hash_put` and `oas_attach_put` do.
pub(crate) fn put(
    data: &[u8],
    store: Option<&str>,
    schema: Option<&str>,
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
    lock_for_reference(&store, &schema, &prepared.hash)?;
    let (reference, _outcome) = block_on(put_prepared(&target, &schema, prepared))?;
    crate::durability::written(&store, &reference.path)?;
    Ok(reference.to_json())
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
    lock_for_reference(store, schema, &hash)?;
    let (reference, _outcome) =
        block_on_watching(|cancel| put_hash_in_parts(target, schema, hash, data, plan, cancel))?;
    crate::durability::written(store, &reference.path)?;
    Ok(reference.to_json())
}

/// Before looking for an existing copy: from here to the end of the transaction no collector
/// moves the object `hash` of `schema`, so a dedup hit cannot end in a dangling reference.
fn lock_for_reference(store: &Store, schema: &str, hash: &str) -> Result<(), OasError> {
    let (path, _) = hash_target(store, schema, hash)?;
    super::locks::lock_for_reference(&path)
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
    // The size is the object's (checked) and at most MAX_BYTEA.
    let mut out = Bytea::zeroed(get.size() as usize);
    block_on(get.read_into(&mut out, verify))?;
    Ok(out)
}

/// DataJoint's content hash of `data`: MD5, base32, lowercase, unpadded (26 characters).
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_content_hash(data: &[u8]) -> String {
    oas_core::hash::content_hash(data)
}
