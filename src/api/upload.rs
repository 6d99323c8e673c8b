//! Uploads in parts: values over 1 GB (a `bytea`'s limit) for `<npy@>` and `<object@>` columns.
//! `oas_upload_begin(table, field, key)` picks the path from the row's key (as the row trigger
//! would), `oas_upload_part(id, bytes)` streams as often as needed with at most a few parts
//! buffered (`oas.upload_part_size`, `oas.upload_parts_in_flight`; see
//! [`oas_core::ops::PartUpload`]), and `oas_upload_finish(id)` gives the reference to insert.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use oas_core::backend::Store;
use oas_core::npy::parse_header;
use oas_core::ops::PartUpload;
use oas_core::reference::{NpyRef, ObjectKind, ObjectValueRef};
use oas_core::OasError;
use pgrx::prelude::*;
use pgrx::JsonB;

use super::paths::KeySource;
use super::write::{extension, new_object_path, next_id, utc_now};
use crate::error::{raise, required, OrRaise};
use crate::runtime::{block_on, block_on_watching};

thread_local! {
    static UPLOADS: RefCell<HashMap<String, Upload>> = RefCell::new(HashMap::new());
}

struct Upload {
    store: Arc<Store>,
    path: String,
    codec: String,
    ext: Option<String>,
    writer: PartUpload,
    size: u64,
    /// The first bytes, for the `.npy` header.
    head: Vec<u8>,
}

/// Start an upload of a value of `field` for the row of `table` whose primary key is `key`,
/// written straight to its final path. Returns the upload's id for `oas_upload_part`.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_upload_begin(
    table: Option<&str>,
    field: Option<&str>,
    key: Option<JsonB>,
    ext: default!(Option<&str>, "NULL"),
) -> String {
    let (table, field, key) = (
        required(table, "table"),
        required(field, "field"),
        required(key, "key"),
    );
    let rel = crate::spi::read_one::<pg_sys::Oid>("SELECT $1::regclass::oid", &[table.into()])
        .or_raise()
        .unwrap_or(pg_sys::InvalidOid);
    // The column's codec picks the extension; an unknown column is refused below.
    let codec_of = super::write::column_of(rel, field)
        .map(|c| c.codec)
        .unwrap_or_default();
    let ext = match codec_of.as_str() {
        "npy" => Some(".npy".to_string()),
        _ => extension(ext),
    };
    crate::privilege::require_table_write(rel, table).or_raise();
    let (store, path, column) =
        new_object_path(rel, field, &KeySource::Json(&key.0), ext.as_deref()).or_raise();
    let codec = column.codec;
    if codec != "npy" && codec != "object" {
        raise(OasError::invalid_argument(format!(
            "column \"{field}\" is an <{codec}@> column; uploads in parts are for <npy@> and <object@> columns"
        )));
    }
    let plan = crate::guc::part_plan();
    let writer = block_on(PartUpload::start(&store, &path, plan)).or_raise();
    let id = next_id("u");
    UPLOADS.with_borrow_mut(|u| {
        u.insert(
            id.clone(),
            Upload {
                store,
                path,
                codec,
                ext,
                writer,
                size: 0,
                head: Vec::new(),
            },
        )
    });
    id
}

fn take_upload(id: &str) -> Upload {
    UPLOADS
        .with_borrow_mut(|u| u.remove(id))
        .unwrap_or_else(|| {
            raise(OasError::invalid_argument_hint(
                format!("no upload \"{id}\" in this session"),
                "start one with oas_upload_begin(table, field, key); uploads belong to the session that started them",
            ))
        })
}

/// Append `data` to an upload. Returns the bytes written so far.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_upload_part(id: &str, data: &[u8]) -> i64 {
    crate::privilege::require_writable("upload parts").or_raise();
    let mut up = take_upload(id);
    if up.head.len() < 65_536 {
        let n = (65_536 - up.head.len()).min(data.len());
        up.head.extend_from_slice(&data[..n]);
    }
    // A part at a time, waiting for room before each: at most a few parts buffered, however
    // large `data` is. A failure or a cancel aborts the upload.
    let written = block_on_watching(|cancel| up.writer.write_or_abandon(data, cancel));
    if let Err(e) = written {
        raise(e)
    }
    up.size += data.len() as u64;
    let size = up.size as i64;
    UPLOADS.with_borrow_mut(|u| u.insert(id.to_string(), up));
    size
}

/// The upload is over: abort it (what the store has of it is abandoned, as far as the store
/// allows) and raise `e`.
fn abandon(mut up: Upload, e: OasError) -> ! {
    let _ = block_on_watching(|_| async {
        up.writer.abandon().await;
        Ok(())
    });
    raise(e)
}

/// Finish an upload and return DataJoint's reference for it, to insert into the row it was
/// started for. An `<npy@>` upload must be a complete `.npy` file.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_upload_finish(id: &str) -> JsonB {
    crate::privilege::require_writable("finish an upload").or_raise();
    let mut up = take_upload(id);
    let header = if up.codec == "npy" {
        match parse_header(&up.head) {
            Ok(h) if h.data_offset + h.nbytes == up.size => Some(h),
            Ok(h) => {
                let e = OasError::invalid_argument(format!(
                    "the upload has {} bytes, the .npy header describes {}",
                    up.size,
                    h.data_offset + h.nbytes
                ));
                abandon(up, e)
            }
            Err(e) => abandon(up, e),
        }
    } else {
        None
    };
    block_on_watching(|cancel| up.writer.finish_or_abandon(cancel)).or_raise();
    JsonB(match header {
        Some(h) => NpyRef::new(up.path, &up.store.name, &h).to_json(),
        None => ObjectValueRef::new(
            up.path,
            &up.store.name,
            up.size,
            ObjectKind::File { ext: up.ext },
            utc_now(),
        )
        .to_json(),
    })
}

/// Abandon an upload (what the store holds of it is deleted where the store allows).
#[pg_extern(volatile, parallel_unsafe)]
fn oas_upload_abort(id: &str) -> bool {
    let mut up = take_upload(id);
    block_on(up.writer.abort()).or_raise();
    true
}
