//! Writing schema-addressed values (`<npy@>`, `<object@>`) from plain SQL.
//!
//! `oas_npy(...)`, `oas_object(...)` and `oas_object_folder(...)` validate a value and keep its
//! bytes in this backend, returning a small *pending* JSON (`{"oas_pending": ...}`). The row
//! trigger `oas_fill_values` on the table (attached with the ledger triggers) replaces it with
//! DataJoint's reference: it renders the path from the row's own primary key, uploads the bytes
//! once, and the row stores only the reference. Pending values live until the transaction ends.
//!
//! Values over 1 GB (a `bytea`'s limit) are uploaded in parts: `oas_upload_begin(table, field,
//! key)`, `oas_upload_part(id, bytes)` as often as needed, then `oas_upload_finish(id)` gives the
//! reference to insert. Memory stays at a few 8 MiB parts.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use oas_core::backend::Store;
use oas_core::manifest::{Manifest, ManifestFile};
use oas_core::npy::{numpy_dtype_name, parse_header, Header};
use oas_core::objpath::{build_object_path, random_token, ObjectSite};
use oas_core::ops::put_new;
use oas_core::path::validate_relative_path;
use oas_core::reference::{NpyRef, ObjectKind, ObjectValueRef, Pending, PendingValue};
use oas_core::OasError;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use pgrx::prelude::*;
use pgrx::{JsonB, PgXactCallbackEvent};
use serde_json::Value;

use crate::catalog;
use crate::error::{raise, required, OrRaise};
use crate::runtime::block_on;

enum Payload {
    Npy { data: Bytes, header: Header },
    File { data: Bytes, ext: Option<String> },
    Folder { files: Vec<(String, Bytes)> },
}

impl Payload {
    /// What the pending value shows of this payload.
    fn pending_value(&self) -> PendingValue {
        match self {
            Payload::Npy { header, .. } => PendingValue::Npy {
                dtype: numpy_dtype_name(&header.dtype),
                shape: header.shape.clone(),
            },
            Payload::File { data, ext } => PendingValue::File {
                size: data.len() as u64,
                ext: ext.clone(),
            },
            Payload::Folder { files } => PendingValue::Folder {
                size: files.iter().map(|f| f.1.len() as u64).sum(),
                item_count: files.len() as u64,
            },
        }
    }
}

thread_local! {
    static PENDING: RefCell<HashMap<String, Payload>> = RefCell::new(HashMap::new());
    static UPLOADS: RefCell<HashMap<String, Upload>> = RefCell::new(HashMap::new());
}
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Unguessable, so a pending value copied into another row can never name someone else's bytes.
fn next_id(prefix: &str) -> String {
    let token = random_token(16).or_raise();
    format!("{prefix}-{}-{token}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Keep `payload` until the transaction ends; return its pending JSON.
fn pend(payload: Payload) -> JsonB {
    let id = next_id("v");
    let first = PENDING.with_borrow(|p| p.is_empty());
    if first {
        // Pending values never outlive their transaction.
        let clear = || PENDING.with_borrow_mut(|p| p.clear());
        pgrx::register_xact_callback(PgXactCallbackEvent::Commit, clear);
        pgrx::register_xact_callback(PgXactCallbackEvent::Abort, clear);
    }
    let pending = Pending {
        oas_pending: id.clone(),
        value: payload.pending_value(),
    };
    PENDING.with_borrow_mut(|p| p.insert(id, payload));
    JsonB(pending.to_json())
}

fn validated_npy(npy: &[u8]) -> Header {
    let header = parse_header(npy).or_raise();
    if (npy.len() as u64) < header.data_offset + header.nbytes {
        raise(OasError::invalid_argument(format!(
            "truncated .npy value: {} bytes, the header describes {}",
            npy.len(),
            header.data_offset + header.nbytes
        )));
    }
    header
}

/// An `<npy@>` value from a `.npy` file's bytes (validated), to use in an INSERT or UPDATE of a
/// table with an `<npy@>` column: the row trigger stores it at the row's key-based path.
#[pg_extern(volatile, parallel_unsafe, name = "oas_npy")]
fn oas_npy_bytes(npy: &[u8]) -> JsonB {
    let header = validated_npy(npy);
    pend(Payload::Npy {
        data: Bytes::copy_from_slice(npy),
        header,
    })
}

/// An `<npy@>` value from a PostgreSQL array (bool, smallint, integer, bigint, real, double
/// precision, numeric as float64; any number of dimensions): the right dtype and shape, as
/// `np.save` writes it (see `oas_npy_from_array`).
#[pg_extern(volatile, parallel_unsafe, name = "oas_npy")]
fn oas_npy_array(values: pgrx::AnyArray) -> JsonB {
    let npy = super::npy::npy_from_array(values);
    oas_npy_bytes(&npy)
}

/// `tif` or `.tif` as `.tif`; none for NULL or empty. One path segment's tail, at most 32 bytes.
fn extension(ext: Option<&str>) -> Option<String> {
    ext.filter(|e| !e.is_empty()).map(|e| {
        let e = if e.starts_with('.') {
            e.to_string()
        } else {
            format!(".{e}")
        };
        if e.contains('/') || e.contains('\\') || e.chars().any(char::is_control) || e.len() > 32 {
            raise(OasError::invalid_argument_hint(
                format!("invalid extension \"{}\"", e.escape_default()),
                "an extension is a short suffix such as '.tif', without '/' or '\\'",
            ));
        }
        e
    })
}

/// An `<object@>` value: one file with these bytes and extension (`'.tif'`, or NULL for none).
/// A NULL `data` is a NULL value, as DataJoint stores `None`.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_object(data: Option<&[u8]>, ext: default!(Option<&str>, "NULL")) -> Option<JsonB> {
    let data = data?;
    let ext = extension(ext);
    Some(pend(Payload::File {
        data: Bytes::copy_from_slice(data),
        ext,
    }))
}

/// An `<object@>` folder value: files named by relative paths (`'a.tif'`, `'sub/b.bin'`), stored
/// under the folder's path with DataJoint's `.manifest.json` beside it.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn oas_object_folder(names: Vec<Option<String>>, contents: pgrx::Array<&[u8]>) -> JsonB {
    if names.len() != contents.len() || names.is_empty() {
        raise(OasError::invalid_argument_hint(
            format!(
                "a folder needs as many names as contents ({} names, {} contents) and at least one file",
                names.len(),
                contents.len()
            ),
            "oas_object_folder(ARRAY['a.tif', 'sub/b.bin'], ARRAY[bytes_a, bytes_b])",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut files = Vec::with_capacity(names.len());
    for (name, data) in names.into_iter().zip(contents.iter()) {
        let name = required(name, "names (an element)");
        validate_relative_path(&name).or_raise();
        if !seen.insert(name.clone()) {
            raise(OasError::invalid_argument(format!(
                "file \"{name}\" appears twice in the folder"
            )));
        }
        let Some(data) = data else {
            raise(OasError::invalid_argument(format!(
                "file \"{name}\" has no content (NULL)"
            )));
        };
        files.push((name, Bytes::copy_from_slice(data)));
    }
    pend(Payload::Folder { files })
}

/// The column's store and codec, and the path a new value of it gets for the row `row` (its
/// primary-key values, rendered as DataJoint renders them, a fresh token, and `ext`).
fn new_object_path(
    table: pg_sys::Oid,
    field: &str,
    row: &Value,
    ext: Option<&str>,
) -> (Arc<Store>, String, String) {
    let (store_name, codec, root) = Spi::get_three_with_args::<String, String, pg_sys::Oid>(
        "SELECT resolved_store, codec, table_oid FROM oas.tracked_columns
         WHERE table_oid = coalesce(pg_catalog.pg_partition_root($1), $1) AND column_name = $2",
        &[table.into(), field.into()],
    )
    .or_else(|e| match e {
        pgrx::spi::SpiError::InvalidPosition => Ok((None, None, None)),
        e => Err(e),
    })
    .or_raise();
    let Some(codec) = codec else {
        raise(OasError::invalid_argument_hint(
            format!("column \"{field}\" is not an object-store column"),
            "declare it with SELECT oas.oas_declare_column(table, column, 'npy@store') or 'object@store'",
        ));
    };
    let store = catalog::store_to_write(store_name.as_deref()).or_raise();
    let root = root.unwrap_or(table);
    let key = super::paths::render_key(root, row).or_raise();
    let path = schema_object_path(&store, &key.schema, &key.table, field, ext, &key.values);
    (store, path, codec)
}

/// The path DataJoint builds for a schema-addressed object of `schema.table`'s `field` at the
/// row whose key `rendered` renders, with a new random token; refused when the collector and
/// the read check would not read it back as `schema`'s ([`oas_core::gc::require_read_back`]).
pub(crate) fn schema_object_path(
    store: &Store,
    schema: &str,
    table: &str,
    field: &str,
    ext: Option<&str>,
    rendered: &[(String, String)],
) -> String {
    let key_parts: Vec<(&str, String)> = rendered
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let site = ObjectSite {
        schema_prefix: &store.spec.schema_prefix,
        partition_pattern: store.spec.partition_pattern.as_deref(),
        schema,
        table,
        field,
        ext,
    };
    let token = random_token(store.spec.token_length).or_raise();
    let path = build_object_path(&site, &key_parts, &token);
    oas_core::gc::require_read_back(
        &store.spec.hash_prefix,
        &store.spec.schema_prefix,
        oas_core::gc::Section::Schema,
        schema,
        &path,
    )
    .or_raise();
    path
}

fn require_codec(field: &str, codec: &str, want: &str, kind: &str) {
    if codec != want {
        raise(OasError::invalid_argument_hint(
            format!("column \"{field}\" is an <{codec}@> column; a {kind} value needs an <{want}@> column"),
            match want {
                "npy" => "make the value with oas_object() for <object@> columns",
                _ => "make the value with oas_npy() for <npy@> columns",
            },
        ));
    }
}

/// ISO 8601 UTC with microseconds and `+00:00`, as DataJoint's timestamps.
pub(crate) fn utc_now() -> String {
    Spi::get_one::<String>(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')",
    )
    .or_raise()
    .unwrap_or_default()
}

/// Called by the row trigger: store the pending value `pending` of column `field` for the row
/// `row` (the new row as JSON) and return DataJoint's reference for it.
#[pg_extern(volatile, parallel_unsafe, name = "_write_pending")]
fn write_pending(table: pg_sys::Oid, field: &str, row: JsonB, pending: JsonB) -> JsonB {
    let id = Pending::id_of(&pending.0).unwrap_or_default().to_string();
    let Some(payload) = PENDING.with_borrow_mut(|p| p.remove(&id)) else {
        raise(OasError::invalid_argument_hint(
            format!("pending value \"{id}\" of column \"{field}\" is not known to this session"),
            "values made by oas_npy(), oas_object() and oas_object_folder() are used once, in the transaction that made them",
        ));
    };
    let ext = match &payload {
        Payload::Npy { .. } => Some(".npy".to_string()),
        Payload::File { ext, .. } => ext.clone(),
        Payload::Folder { .. } => None,
    };
    let (store, path, codec) = new_object_path(table, field, &row.0, ext.as_deref());
    JsonB(match payload {
        Payload::Npy { data, header } => {
            require_codec(field, &codec, "npy", "NumPy");
            block_on(put_new(&store, &path, data)).or_raise();
            NpyRef::new(path, &store.name, &header).to_json()
        }
        Payload::File { data, ext } => {
            require_codec(field, &codec, "object", "file");
            let size = data.len();
            block_on(put_new(&store, &path, data)).or_raise();
            ObjectValueRef::new(
                path,
                &store.name,
                size as u64,
                ObjectKind::File { ext },
                utc_now(),
            )
            .to_json()
        }
        Payload::Folder { files } => {
            require_codec(field, &codec, "object", "folder");
            let manifest = Manifest::new(
                files
                    .iter()
                    .map(|(name, data)| ManifestFile {
                        path: name.clone(),
                        size: data.len() as u64,
                    })
                    .collect(),
                utc_now(),
            );
            let count = files.len();
            let total = manifest.total_size;
            let manifest_bytes = Bytes::from(manifest.to_bytes());
            let store2 = store.clone();
            let base = path.clone();
            block_on(async move {
                use futures::StreamExt;
                let results: Vec<Result<(), OasError>> =
                    futures::stream::iter(files.into_iter().map(|(name, data)| {
                        let store = store2.clone();
                        let p = format!("{base}/{name}");
                        async move { put_new(&store, &p, data).await }
                    }))
                    .buffer_unordered(8)
                    .collect()
                    .await;
                results.into_iter().collect::<Result<Vec<()>, _>>()?;
                // The manifest last: a folder with a manifest is complete.
                put_new(&store2, &format!("{base}.manifest.json"), manifest_bytes).await
            })
            .or_raise();
            ObjectValueRef::new(
                path,
                &store.name,
                total,
                ObjectKind::Folder {
                    item_count: count as u64,
                },
                utc_now(),
            )
            .to_json()
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Uploads in parts

/// Size of each part sent to the store.
const PART: usize = 8 << 20;
/// Parts in flight (and so buffered) at most.
const IN_FLIGHT: usize = 4;

struct Upload {
    store: Arc<Store>,
    path: String,
    codec: String,
    ext: Option<String>,
    writer: WriteMultipart,
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
    let rel = Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[table.into()])
        .or_raise()
        .unwrap_or(pg_sys::InvalidOid);
    let codec_of = Spi::get_one_with_args::<String>(
        "SELECT codec FROM oas.tracked_columns WHERE table_oid = $1 AND column_name = $2",
        &[rel.into(), field.into()],
    )
    .or_else(|e| match e {
        pgrx::spi::SpiError::InvalidPosition => Ok(None),
        e => Err(e),
    })
    .or_raise()
    .unwrap_or_default();
    let ext = match codec_of.as_str() {
        "npy" => Some(".npy".to_string()),
        _ => extension(ext),
    };
    crate::privilege::require_table_write(rel, table).or_raise();
    let (store, path, codec) = new_object_path(rel, field, &key.0, ext.as_deref());
    if codec != "npy" && codec != "object" {
        raise(OasError::invalid_argument(format!(
            "column \"{field}\" is an <{codec}@> column; uploads in parts are for <npy@> and <object@> columns"
        )));
    }
    let key_path = store.key(&path).or_raise();
    let client: Arc<dyn ObjectStore> = store.client().clone();
    let upload = block_on(async {
        client
            .put_multipart(&key_path)
            .await
            .map_err(|e| store.error(e, "start upload", &path))
    })
    .or_raise();
    let id = next_id("u");
    UPLOADS.with_borrow_mut(|u| {
        u.insert(
            id.clone(),
            Upload {
                store,
                path,
                codec,
                ext,
                writer: WriteMultipart::new_with_chunk_size(upload, PART),
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
    let mut up = take_upload(id);
    if up.head.len() < 65_536 {
        let n = (65_536 - up.head.len()).min(data.len());
        up.head.extend_from_slice(&data[..n]);
    }
    let store = up.store.clone();
    let path = up.path.clone();
    // PART at a time, waiting for room before each: at most IN_FLIGHT parts buffered, however
    // large `data` is.
    let result = block_on(async {
        for piece in data.chunks(PART) {
            up.writer
                .wait_for_capacity(IN_FLIGHT)
                .await
                .map_err(|e| store.error(e, "upload part", &path))?;
            up.writer.write(piece);
        }
        up.writer
            .wait_for_capacity(IN_FLIGHT)
            .await
            .map_err(|e| store.error(e, "upload part", &path))
    });
    if let Err(e) = result {
        // The upload is over; what the store has of it is abandoned.
        let _ = block_on(async {
            let _ = up.writer.abort().await;
            Ok(())
        });
        raise(e);
    }
    up.size += data.len() as u64;
    let size = up.size as i64;
    UPLOADS.with_borrow_mut(|u| u.insert(id.to_string(), up));
    size
}

/// Finish an upload and return DataJoint's reference for it, to insert into the row it was
/// started for. An `<npy@>` upload must be a complete `.npy` file.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_upload_finish(id: &str) -> JsonB {
    let up = take_upload(id);
    let header = if up.codec == "npy" {
        match parse_header(&up.head) {
            Ok(h) if h.data_offset + h.nbytes == up.size => Some(h),
            Ok(h) => {
                let _ = block_on(async {
                    let _ = up.writer.abort().await;
                    Ok(())
                });
                raise(OasError::invalid_argument(format!(
                    "the upload has {} bytes, the .npy header describes {}",
                    up.size,
                    h.data_offset + h.nbytes
                )));
            }
            Err(e) => {
                let _ = block_on(async {
                    let _ = up.writer.abort().await;
                    Ok(())
                });
                raise(e);
            }
        }
    } else {
        None
    };
    let store = up.store.clone();
    let path = up.path.clone();
    block_on(async {
        up.writer
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| store.error(e, "finish upload", &path))
    })
    .or_raise();
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
    let up = take_upload(id);
    let store = up.store.clone();
    let path = up.path.clone();
    block_on(async {
        up.writer
            .abort()
            .await
            .map_err(|e| store.error(e, "abort upload", &path))
    })
    .or_raise();
    true
}
