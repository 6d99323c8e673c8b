//! Copying a reference's objects into another store, for moves between tiers:
//! `UPDATE t SET col = oas._copy_to_store(col, 'cold') WHERE col->>'store' = 'hot'`.
//!
//! What is copied and checked on the way: [`oas_core::ops::CopyPlan`] and
//! [`oas_core::ops::copy_files`]. Here, who may copy (the reference is input, not authority:
//! `read` on the source store and a row the caller may SELECT that references the object, as for
//! reads; `write` on the destination, which refuses read-only stores) and how the copy runs: a
//! copy that fits in memory is an upload of the statement ([`crate::write_behind`]), so the rows
//! of one UPDATE copy concurrently; a larger one streams in parts before the function returns.
//! Nothing is deleted: the old copy is garbage for the collector once no row names it.

use std::sync::Arc;

use oas_core::backend::Store;
use oas_core::ops::{copy_files, destination_reference, files_to_copy, CopyPlan};
use oas_core::OasError;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::catalog;
use crate::error::OrRaise;
use crate::runtime::{block_on, block_on_watching};
use crate::write_behind::{flush_object, submit, Upload};

/// Copy the object(s) `reference` names (a `<hash@>`, `<blob@>`, `<attach@>`, `<npy@>` or
/// `<object@>` value, file or folder) into `store` at the same path, checking size (and MD5 for
/// hash-addressed objects) on the way, and return the reference with `store` replaced; a
/// reference already in `store` comes back unchanged. Needs `read` on the source store and a row
/// you may read that references the object, and `write` on `store`. `<filepath@>` values are
/// refused. The old copy is left to the collector.
#[pg_extern(volatile, strict, parallel_unsafe, name = "_copy_to_store")]
fn copy_to_store(reference: JsonB, store: &str) -> JsonB {
    JsonB(copy(&reference.0, store).or_raise())
}

fn copy(reference: &Value, to: &str) -> Result<Value, OasError> {
    let plan = CopyPlan::from_json(reference)?;
    let from = match &plan.store {
        Some(name) => name.clone(),
        None => catalog::store_row_unchecked(None)?.name,
    };
    if from == to {
        return Ok(reference.clone());
    }
    let (_, src) = catalog::store_to_read_now(Some(&from), &plan.path)?;
    let dst = catalog::store_to_write(Some(to))?;
    plan.check_layout(&src.name, &src.spec)?;
    plan.check_layout(&dst.name, &dst.spec)?;
    // An upload of this statement's own to the source is finished first.
    flush_object(&src.name, &plan.path)?;
    flush_object(
        &src.name,
        &format!("{}{}", plan.path, oas_core::gc::MANIFEST_SUFFIX),
    )?;
    // From here to the end of the transaction no collector moves the object at this path (in
    // either store), so a copy found at the destination cannot end in a dangling reference.
    super::locks::lock_for_reference(&plan.path)?;
    let dst_name = dst.name.clone();
    start(src, dst, plan)?;
    Ok(destination_reference(reference, &dst_name))
}

/// Copy what `plan` names. A single object whose reference records a size of at most one part
/// (`oas.upload_part_size`) is an upload of the statement ([`crate::write_behind`]): looked at,
/// read whole and written while the statement goes on, so the rows of one UPDATE copy
/// concurrently. Anything else (a larger object, an `<npy@>` file, a folder) is looked at now;
/// it is an upload of the statement too if every file fits in one part and all in
/// `oas.upload_memory`, otherwise it streams in parts before this returns, cancellably (a cancel
/// aborts the upload). Either way a `file` destination is written without fsync and synced
/// before commit.
fn start(src: Arc<Store>, dst: Arc<Store>, plan: CopyPlan) -> Result<(), OasError> {
    let part = crate::guc::part_plan();
    let memory = crate::guc::upload_memory() as u64;
    let target = crate::durability::target(&dst);
    if let Some(size) = plan
        .recorded_size()
        .filter(|&s| s <= part.size as u64 && s <= memory)
    {
        let upload = Upload {
            store: dst,
            paths: vec![plan.path.clone()],
            bytes: size as usize,
            restore: None,
        };
        // The source's size is checked against the reference before anything is read.
        return submit(upload, async move {
            let files = files_to_copy(&src, &plan).await?;
            copy_files(src, target, files, part, futures::future::pending()).await
        });
    }
    let files = block_on(files_to_copy(&src, &plan))?;
    let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    let total: u64 = files.iter().map(|f| f.size).sum();
    let small = files.iter().all(|f| f.size <= part.size as u64);
    if small && total <= memory && !paths.is_empty() {
        let upload = Upload {
            store: dst,
            paths,
            bytes: total as usize,
            restore: None,
        };
        return submit(
            upload,
            copy_files(src, target, files, part, futures::future::pending()),
        );
    }
    block_on_watching(|cancel| copy_files(src, target, files, part, cancel))?;
    paths
        .iter()
        .try_for_each(|p| crate::durability::written(&dst, p))
}
