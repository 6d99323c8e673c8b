//! Any object a reference names (`<object@>` files and folders, `<npy@>`, `<hash@>`, ...): ranged
//! reads, sizes, one file inside a folder object, and the listing of a folder.
//!
//! Every read goes through [`catalog::store_to_read`] with the reference's own path, so the
//! caller's `read` privilege and the row check apply to the object the reference names; a file
//! of a folder is then addressed below that path ([`oas_core::path::file_in_folder`]).

use oas_core::codec::ObjectRef;
use oas_core::ops::{object_size, read_range};
use oas_core::OasError;
use pgrx::prelude::*;
use pgrx::JsonB;

use super::MAX_BYTEA;
use crate::catalog;
use crate::error::{raise, OrRaise};
use crate::runtime::block_on;

/// `length` bytes of any object from `offset` (fewer at the end of the object).
#[pg_extern(volatile, parallel_unsafe)]
fn oas_read(reference: JsonB, offset: i64, length: i64) -> Vec<u8> {
    read(&reference, None, offset, Some(length)).or_raise()
}

/// The size of the object a reference names, asked of the store.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_object_size(reference: JsonB) -> i64 {
    size(&reference, None).or_raise()
}

/// Bytes of one file inside an `<object@>` folder, by its path below the folder (as the folder's
/// manifest names it, e.g. `'sub/b.tif'`): from `offset`, `length` bytes or to the end (at most
/// 1 GB). The path must stay inside the folder: relative, with no empty, `.` or `..` segment. A
/// NULL reference reads as NULL.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_object_file_read(
    reference: Option<JsonB>,
    subpath: Option<&str>,
    offset: default!(Option<i64>, 0),
    length: default!(Option<i64>, "NULL"),
) -> Option<Vec<u8>> {
    let subpath = crate::error::required(subpath, "subpath");
    let offset = crate::error::required(offset, "offset");
    Some(read(&reference?, Some(subpath), offset, length).or_raise())
}

/// The size of one file inside an `<object@>` folder, by its path below the folder.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_object_file_size(reference: JsonB, subpath: &str) -> i64 {
    size(&reference, Some(subpath)).or_raise()
}

/// The store and the path to touch: the reference's own path (checked for the caller), or a file
/// below it when `subpath` is given (which needs a folder reference).
fn place(
    reference: &JsonB,
    subpath: Option<&str>,
) -> Result<(std::sync::Arc<oas_core::backend::Store>, String), OasError> {
    let r = ObjectRef::from_json(&reference.0)?;
    let (_, store) = catalog::store_to_read(r.store.as_deref(), &r.path)?;
    let path = match subpath {
        None => r.path,
        Some(_) if !r.is_dir => {
            return Err(OasError::invalid_argument_hint(
                format!("\"{}\" is not a folder object", r.path),
                "a file path below an object needs a folder reference (<object@> with \"is_dir\": true); read a file object with oas_read",
            ))
        }
        Some(sub) => oas_core::path::file_in_folder(&r.path, sub)?,
    };
    Ok((store, path))
}

/// A compressed object (`"compression": "zstd"`, oas_core's `compress`: hash-addressed, or an
/// `<object@>` file) without a subpath: its size is its reference's, and it is read whole or not
/// at all.
fn compressed(reference: &JsonB, subpath: Option<&str>) -> Option<ObjectRef> {
    let r = ObjectRef::from_json(&reference.0).ok()?;
    (r.compressed && subpath.is_none()).then_some(r)
}

fn size(reference: &JsonB, subpath: Option<&str>) -> Result<i64, OasError> {
    if let Some(r) = compressed(reference, subpath) {
        catalog::store_to_read(r.store.as_deref(), &r.path)?;
        return Ok(r.size.unwrap_or_default() as i64);
    }
    let (store, path) = place(reference, subpath)?;
    Ok(block_on(object_size(&store, &path))? as i64)
}

/// `length` bytes (to the end when None) from `offset` of the object or folder file.
fn read(
    reference: &JsonB,
    subpath: Option<&str>,
    offset: i64,
    length: Option<i64>,
) -> Result<Vec<u8>, OasError> {
    if offset < 0 || length.is_some_and(|l| l < 0 || l as u64 > MAX_BYTEA) {
        return Err(OasError::invalid_argument_hint(
            format!(
                "invalid range: offset {offset}, length {}",
                length.map_or("to the end".into(), |l| l.to_string())
            ),
            "offset and length must be non-negative, and length at most 1 GB",
        ));
    }
    if let Some(r) = compressed(reference, subpath) {
        let whole = offset == 0 && length.is_none_or(|l| l as u64 >= r.size.unwrap_or_default());
        if !whole {
            return Err(oas_core::compress::unsupported(&r.path, "a ranged read"));
        }
        if r.hash.is_some() {
            return super::hash::get(&reference.0).map(|b| b.to_vec());
        }
        return read_compressed_file(&r);
    }
    let (store, path) = place(reference, subpath)?;
    let size = block_on(object_size(&store, &path))?;
    if offset as u64 > size {
        return Err(OasError::invalid_argument(format!(
            "offset {offset} is beyond the end of \"{path}\" ({size} bytes)"
        )));
    }
    let end = match length {
        Some(l) => (offset as u64).saturating_add(l as u64).min(size),
        None => size,
    };
    if end - offset as u64 > MAX_BYTEA {
        return Err(OasError::TooLarge {
            message: format!("\"{path}\" has {size} bytes from offset {offset}, more than a bytea value can hold (1 GB)"),
            hint: Some("give a length, and read the rest in further ranges".into()),
        });
    }
    Ok(block_on(read_range(&store, &path, offset as u64..end))?.to_vec())
}

/// A compressed `<object@>` file, whole and decompressed (no hash to check: the frame's checksum
/// and the reference's size are).
fn read_compressed_file(r: &ObjectRef) -> Result<Vec<u8>, OasError> {
    let size = r.size.ok_or_else(|| {
        OasError::invalid_argument(format!(
            "invalid object reference: the compressed \"{}\" records no size",
            r.path
        ))
    })?;
    if size > MAX_BYTEA {
        return Err(OasError::TooLarge {
            message: format!(
                "object \"{}\" has {size} bytes, more than a bytea value can hold (1 GB)",
                r.path
            ),
            hint: None,
        });
    }
    let (_, store) = catalog::store_to_read(r.store.as_deref(), &r.path)?;
    block_on(oas_core::ops::get_compressed_file(&store, &r.path, size))
}

/// The files of a folder object (`<object@>` with `is_dir`), or the object itself for a file:
/// paths relative to the folder, sizes and modification times, listed from the store.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_object_list(
    reference: JsonB,
) -> TableIterator<
    'static,
    (
        name!(path, String),
        name!(size, i64),
        name!(last_modified, pgrx::datum::TimestampWithTimeZone),
    ),
> {
    use futures::StreamExt;
    let r = ObjectRef::from_json(&reference.0).or_raise();
    let (_, store) = catalog::store_to_read(r.store.as_deref(), &r.path).or_raise();
    let prefix = format!("{}/", r.path);
    let listed: Vec<(String, u64, i64)> = block_on(async {
        let mut out = Vec::new();
        let mut s = oas_core::gc::list(&store, &prefix);
        while let Some(m) = s.next().await {
            match m {
                Ok(m) => {
                    let full = m.location.to_string();
                    let rel = full.strip_prefix(&prefix).unwrap_or(&full).to_string();
                    out.push((rel, m.size, m.last_modified.timestamp_micros()));
                }
                Err(OasError::ObjectMissing { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        if out.is_empty() && !r.is_dir {
            use object_store::ObjectStoreExt;
            let m = store
                .client()
                .head(&store.key(&r.path)?)
                .await
                .map_err(|e| store.error(e, "head", &r.path))?;
            let name = r.path.rsplit('/').next().unwrap_or(&r.path).to_string();
            out.push((name, m.size, m.last_modified.timestamp_micros()));
        }
        Ok(out)
    })
    .or_raise();
    if listed.is_empty() {
        raise(OasError::ObjectMissing {
            store: store.name.clone(),
            path: r.path.clone(),
        });
    }
    let mut rows = Vec::with_capacity(listed.len());
    for (path, size, micros) in listed {
        // PostgreSQL timestamps count from 2000-01-01.
        let pg = micros - 946_684_800_000_000;
        let ts = pgrx::datum::TimestampWithTimeZone::try_from(pg)
            .unwrap_or_else(|_| raise(OasError::invalid_argument("timestamp out of range")));
        rows.push((path, size as i64, ts));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    TableIterator::new(rows)
}
