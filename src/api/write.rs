//! Writing values from plain SQL into the columns that hold them: `<npy@>` and `<object@>`
//! (schema-addressed), `<blob@>`, `<attach@>` and `<hash@>` (hash-addressed), and custom codecs'
//! columns (`oas_encode`, `sql/codecs.sql`).
//!
//! `oas_npy(...)`, `oas_object(...)`, `oas_object_folder(...)`, `oas_blob(...)`, `oas_attach(...)`
//! and `oas_hash(...)` validate a value and keep its bytes in this backend, returning a small
//! *pending* JSON (`{"oas_pending": ...}`). The row trigger `oas._fill_values` on the table
//! (attached with the ledger triggers) replaces it with DataJoint's reference: a schema-addressed
//! value goes to the path rendered from the row's own primary key, a hash-addressed one to
//! `_hash/{the table's schema}/{hash}` in the column's store, deduplicated; the row stores only the
//! reference. Pending values live until the transaction ends.
//!
//! Values over 1 GB (a `bytea`'s limit) are uploaded in parts (`upload.rs`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
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
use pgrx::prelude::*;
use pgrx::{JsonB, PgXactCallbackEvent};
use serde_json::Value;

use super::paths::KeySource;
use crate::catalog;
use crate::error::{raise, required, OrRaise, SpiOk};
use crate::write_behind::{submit, Upload};

#[derive(Clone)]
enum Payload {
    Npy {
        data: Bytes,
        header: Header,
    },
    File {
        data: Bytes,
        ext: Option<String>,
    },
    Folder {
        files: Vec<(String, Bytes)>,
    },
    /// Hash-addressed bytes for a `<blob@>` (packed), `<attach@>` (`filename\0contents`) or
    /// `<hash@>` column.
    Hashed {
        data: Vec<u8>,
        value: PendingValue,
    },
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
            Payload::Hashed { value, .. } => value.clone(),
        }
    }
}

/// A value waiting for its row: the bytes, and the custom codec that made it (if one did).
#[derive(Clone)]
struct Held {
    payload: Payload,
    codec: Option<String>,
}

thread_local! {
    static PENDING: RefCell<HashMap<String, Held>> = RefCell::new(HashMap::new());
}
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Unguessable, so a pending value copied into another row can never name someone else's bytes.
pub(crate) fn next_id(prefix: &str) -> String {
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
        codec: None,
    };
    PENDING.with_borrow_mut(|p| {
        p.insert(
            id,
            Held {
                payload,
                codec: None,
            },
        )
    });
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
pub(crate) fn extension(ext: Option<&str>) -> Option<String> {
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

fn pend_blob(packed: Vec<u8>) -> JsonB {
    let value = PendingValue::Blob {
        size: packed.len() as u64,
    };
    pend(Payload::Hashed {
        data: packed,
        value,
    })
}

/// A `<blob@>` value from JSON text (as `oas_blob_pack(text)` packs it): the row trigger stores
/// it as DataJoint does, packed and hash-addressed in the column's store for the table's schema,
/// deduplicated. A NULL value stays NULL.
#[pg_extern(volatile, parallel_unsafe, name = "oas_blob")]
fn oas_blob_text(value: Option<&str>) -> Option<JsonB> {
    Some(pend_blob(super::blob::pack_text(value?).or_raise()))
}

/// A `<blob@>` value from `jsonb` (as `oas_blob_pack(jsonb)` packs it), stored by the row trigger.
#[pg_extern(volatile, parallel_unsafe, name = "oas_blob")]
fn oas_blob_jsonb(value: Option<JsonB>) -> Option<JsonB> {
    Some(pend_blob(super::blob::pack_json(&value?.0).or_raise()))
}

/// A `<blob@>` value from a PostgreSQL array (a NumPy array of its type and shape, as
/// `oas_blob_pack(anyarray)` packs it), stored by the row trigger.
#[pg_extern(volatile, parallel_unsafe, name = "oas_blob")]
fn oas_blob_array(values: Option<pgrx::AnyArray>) -> Option<JsonB> {
    Some(pend_blob(super::blob::pack_array(&values?).or_raise()))
}

/// A `<blob@>` value from bytes (Python `bytes`, as `oas_blob_pack(bytea)` packs them), stored by
/// the row trigger.
#[pg_extern(volatile, parallel_unsafe, name = "oas_blob")]
fn oas_blob_bytes(value: Option<&[u8]>) -> Option<JsonB> {
    Some(pend_blob(super::blob::pack_bytes(value?).or_raise()))
}

/// An `<attach@>` value: the file `filename` (a plain name) with `contents`, stored by the row
/// trigger as DataJoint stores attachments (`filename\0contents`, hash-addressed, deduplicated).
#[pg_extern(volatile, parallel_unsafe)]
fn oas_attach(filename: Option<&str>, contents: Option<&[u8]>) -> Option<JsonB> {
    let contents = contents?;
    let filename = required(filename, "filename");
    let data = oas_core::attach::pack(filename, contents).or_raise();
    Some(pend(Payload::Hashed {
        data,
        value: PendingValue::Attach {
            filename: filename.to_string(),
            size: contents.len() as u64,
        },
    }))
}

/// A `<hash@>` value: `data` stored by the row trigger hash-addressed in the column's store for
/// the table's schema (what `oas_hash_put(data, store, schema)` does with both named).
#[pg_extern(volatile, parallel_unsafe)]
fn oas_hash(data: Option<&[u8]>) -> Option<JsonB> {
    let data = data?.to_vec();
    let value = PendingValue::Hash {
        size: data.len() as u64,
    };
    Some(pend(Payload::Hashed { data, value }))
}

/// A pending hash-addressed value (`<blob@>`, `<attach@>`, `<hash@>`) of bytes already in the
/// form the store keeps, checked by the caller (`oas._pending_stored`, `src/api/migrate.rs`).
pub(crate) fn pend_hashed(data: Vec<u8>, value: PendingValue) -> JsonB {
    pend(Payload::Hashed { data, value })
}

/// The built-in codec a registered custom codec's chain ends at (`oas._codec_end`).
fn chain_end(codec: &str) -> Result<String, OasError> {
    Spi::get_one_with_args::<String>("SELECT oas._codec_end($1)", &[codec.into()])
        .spi()?
        .ok_or_else(|| {
            OasError::invalid_argument_hint(
                format!("codec \"{codec}\" is not registered in this database"),
                "register it with SELECT oas.oas_codec_register(name, chains_to, encode, decode); SELECT * FROM oas.codec lists them",
            )
        })
}

/// Mark the pending value `pending` as made by the custom codec `codec` (by `oas_encode`, after
/// the codec's encode functions ran): it then goes only into that codec's columns.
#[pg_extern(volatile, strict, parallel_unsafe, name = "_pending_codec")]
fn pending_codec(pending: JsonB, codec: &str) -> JsonB {
    let end = chain_end(codec).or_raise();
    let id = Pending::id_of(&pending.0).unwrap_or_default().to_string();
    let value = PENDING
        .with_borrow_mut(|p| {
            let held = p.get_mut(&id)?;
            let value = held.payload.pending_value();
            (value.codec() == end).then(|| {
                held.codec = Some(codec.to_string());
                value
            })
        })
        .unwrap_or_else(|| {
            raise(OasError::invalid_argument(format!(
                "codec \"{codec}\" chains to <{end}>, and \"{id}\" is not a pending <{end}> value of this session"
            )))
        });
    JsonB(
        Pending {
            oas_pending: id,
            value,
            codec: Some(codec.to_string()),
        }
        .to_json(),
    )
}

/// A column that holds references: its codec, the built-in codec its chain ends at (`None` for
/// a codec this database does not know), its store, and the table it is declared on (a
/// partition's root).
#[derive(Clone)]
pub(crate) struct Column {
    pub codec: String,
    pub end: Option<String>,
    pub store: Option<String>,
    pub root: pg_sys::Oid,
    /// The schema of `root` (DataJoint's schema of the column's objects).
    pub schema: String,
}

/// The object-store column `field` of `table` (or of its partition root). Looked up once per
/// command: the row trigger asks for every row of a statement.
pub(crate) fn column_of(table: pg_sys::Oid, field: &str) -> Result<Column, OasError> {
    // SAFETY: reads this backend's own transaction and command counters.
    let now = unsafe { ((*pg_sys::MyProc).lxid, pg_sys::GetCurrentCommandId(false)) };
    let key = (table, field.to_string());
    let hit = COLUMNS.with_borrow(|c| {
        c.as_ref()
            .filter(|(at, _)| *at == now)
            .and_then(|(_, m)| m.get(&key).cloned())
    });
    if let Some(column) = hit {
        return Ok(column);
    }
    let column = look_up_column(table, field)?;
    COLUMNS.with_borrow_mut(|c| {
        let (at, memo) = c.get_or_insert_with(|| (now, HashMap::new()));
        if *at != now {
            *at = now;
            memo.clear();
        }
        memo.insert(key, column.clone());
    });
    Ok(column)
}

type ColumnMemo = (
    (pg_sys::LocalTransactionId, pg_sys::CommandId),
    HashMap<(pg_sys::Oid, String), Column>,
);

thread_local! {
    static COLUMNS: RefCell<Option<ColumnMemo>> = const { RefCell::new(None) };
}

fn look_up_column(table: pg_sys::Oid, field: &str) -> Result<Column, OasError> {
    let row = Spi::connect(|c| {
        let rows = c.select(
            "SELECT t.codec, t.chain_end, t.resolved_store, t.table_oid::pg_catalog.oid, n.nspname::pg_catalog.text
             FROM oas.tracked_columns t
             JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) t.table_oid
             JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) r.relnamespace
             WHERE t.table_oid OPERATOR(pg_catalog.=) coalesce(pg_catalog.pg_partition_root($1), $1)
               AND t.column_name OPERATOR(pg_catalog.=) $2",
            Some(1),
            &[table.into(), field.into()],
        )?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(r) => Ok::<_, pgrx::spi::SpiError>(Some((
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
                r.get::<pg_sys::Oid>(4)?,
                r.get::<String>(5)?,
            ))),
        }
    })
    .spi()?;
    let Some((Some(codec), end, store, Some(root), Some(schema))) = row else {
        return Err(OasError::invalid_argument_hint(
            format!("column \"{field}\" is not an object-store column"),
            "declare it with SELECT oas.oas_declare_column(table, column, 'npy@store'), or give it DataJoint's codec comment",
        ));
    };
    Ok(Column {
        codec,
        end,
        store,
        root,
        schema,
    })
}

/// The column's store and codec, and the path a new value of it gets for the row whose key
/// `key` gives (its primary-key values, rendered as DataJoint renders them, a fresh token, and
/// `ext`).
pub(crate) fn new_object_path(
    table: pg_sys::Oid,
    field: &str,
    key: &KeySource,
    ext: Option<&str>,
) -> Result<(Arc<Store>, String, Column), OasError> {
    let column = column_of(table, field)?;
    let store = catalog::store_to_write(column.store.as_deref())?;
    let key = super::paths::render_key(column.root, key)?;
    let path = schema_object_path(&store, &key.schema, &key.table, field, ext, &key.values);
    Ok((store, path, column))
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

/// A pending value goes only into a column of the codec that made it: DataJoint decodes a
/// column by its codec, so a value of another codec would read back wrong, or as `None`.
fn require_codec(field: &str, column: &Column, held: &Held) -> Result<(), OasError> {
    let made_by = held
        .codec
        .as_deref()
        .unwrap_or(held.payload.pending_value().codec());
    if column.codec == made_by {
        return Ok(());
    }
    let hint = match (
        column.end.as_deref(),
        column.codec == column.end.as_deref().unwrap_or(""),
    ) {
        (Some("npy"), true) => "make <npy@> values with oas_npy()".to_string(),
        (Some("object"), true) => {
            "make <object@> values with oas_object() or oas_object_folder()".to_string()
        }
        (Some("blob"), true) => "make <blob@> values with oas_blob()".to_string(),
        (Some("attach"), true) => "make <attach@> values with oas_attach()".to_string(),
        (Some("hash"), true) => "make <hash@> values with oas_hash()".to_string(),
        (Some(_), false) => format!(
            "make <{}@> values with oas.oas_encode('{}', value)",
            column.codec, column.codec
        ),
        _ => format!(
            "codec <{}> is not registered in this database (see oas_codec_register)",
            column.codec
        ),
    };
    Err(OasError::invalid_argument_hint(
        format!(
            "column \"{field}\" is a <{}@> column; this value was made for <{made_by}@> columns",
            column.codec
        ),
        hint,
    ))
}

/// ISO 8601 UTC with microseconds and `+00:00`, as DataJoint's timestamps.
pub(crate) fn utc_now() -> String {
    Spi::get_one::<String>(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')",
    )
    .or_raise()
    .unwrap_or_default()
}

/// Store the pending value `pending` of column `field` of `table` for the row whose key `key`
/// gives, and return DataJoint's reference for it. A value is used once; one that could not be
/// stored (the wrong column, a store error) stays usable, in another column or after `ROLLBACK
/// TO SAVEPOINT`.
pub(crate) fn store_pending(
    table: pg_sys::Oid,
    field: &str,
    key: &KeySource,
    pending: &Value,
) -> Result<Value, OasError> {
    let id = Pending::id_of(pending).unwrap_or_default().to_string();
    let Some(held) = PENDING.with_borrow_mut(|p| p.remove(&id)) else {
        return Err(OasError::invalid_argument_hint(
            format!("pending value \"{id}\" of column \"{field}\" is not known to this session"),
            "values made by oas_npy(), oas_object(), oas_blob() and the like are used once, in the transaction that made them",
        ));
    };
    // An upload that fails or is rolled back later (`write_behind`) gives the value back too.
    let restore: Box<dyn FnOnce()> = {
        let (id, held) = (id.clone(), held.clone());
        Box::new(move || {
            PENDING.with_borrow_mut(|p| p.insert(id, held));
        })
    };
    let stored = store_held(table, field, key, &held, restore);
    if stored.is_err() {
        PENDING.with_borrow_mut(|p| p.insert(id, held));
    }
    stored
}

/// Store `held` as the value of column `field` of `table` for the row whose key `key` gives;
/// `restore` is called if its upload fails or is rolled back after this returned.
fn store_held(
    table: pg_sys::Oid,
    field: &str,
    key: &KeySource,
    held: &Held,
    restore: Box<dyn FnOnce()>,
) -> Result<Value, OasError> {
    if let Payload::Hashed { data, .. } = &held.payload {
        let column = column_of(table, field)?;
        require_codec(field, &column, held)?;
        return super::hash::put(
            data,
            column.store.as_deref(),
            Some(&column.schema),
            Some(restore),
        );
    }
    let ext = match &held.payload {
        Payload::Npy { .. } => Some(".npy".to_string()),
        Payload::File { ext, .. } => ext.clone(),
        _ => None,
    };
    let (store, path, column) = new_object_path(table, field, key, ext.as_deref())?;
    require_codec(field, &column, held)?;
    // The upload may finish with the statement (`write_behind`); a file store that fsyncs is
    // written without, and every file is synced when the transaction commits
    // (`crate::durability`), as hash-addressed puts are.
    let target = crate::durability::target(&store);
    let upload = |paths: Vec<String>, bytes: usize| Upload {
        store: store.clone(),
        paths,
        bytes,
        restore: Some(restore),
    };
    Ok(match &held.payload {
        Payload::Npy { data, header } => {
            let (p, data) = (path.clone(), data.clone());
            submit(upload(vec![path.clone()], data.len()), async move {
                put_new(&target, &p, data).await
            })?;
            NpyRef::new(path, &store.name, header).to_json()
        }
        Payload::File { data, ext } => {
            let size = data.len();
            let mut r = ObjectValueRef::new(
                path,
                &store.name,
                size as u64,
                ObjectKind::File { ext: ext.clone() },
                utc_now(),
            );
            // A store marked for compression keeps the file zstd-compressed at `{path}.zst`.
            let zstd = store.spec.compression.is_some();
            if zstd {
                r = r.compressed();
            }
            let (p, data) = (r.path.clone(), data.clone());
            submit(upload(vec![r.path.clone()], size), async move {
                let data = match zstd {
                    true => oas_core::ops::compress_for(&target, data).await?,
                    false => data,
                };
                put_new(&target, &p, data).await
            })?;
            r.to_json()
        }
        Payload::Folder { files } => {
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
            let base = path.clone();
            // The manifest first in the list (it names the upload), last on the wire.
            let mut paths = vec![format!("{base}.manifest.json")];
            paths.extend(files.iter().map(|(n, _)| format!("{base}/{n}")));
            let files = files.clone();
            let bytes = files.iter().map(|(_, d)| d.len()).sum();
            submit(upload(paths, bytes), async move {
                use futures::StreamExt;
                let results: Vec<Result<(), OasError>> =
                    futures::stream::iter(files.into_iter().map(|(name, data)| {
                        let store = target.clone();
                        let p = format!("{base}/{name}");
                        async move { put_new(&store, &p, data).await }
                    }))
                    .buffer_unordered(8)
                    .collect()
                    .await;
                results.into_iter().collect::<Result<Vec<()>, _>>()?;
                // The manifest last: a folder with a manifest is complete.
                put_new(&target, &format!("{base}.manifest.json"), manifest_bytes).await
            })?;
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
        Payload::Hashed { .. } => unreachable!("stored above"),
    })
}

/// The row trigger `oas_fill_values` (BEFORE INSERT OR UPDATE, FOR EACH ROW; arguments: the
/// table's columns that can take pending values). Each pending value in them is stored, and the
/// row gets DataJoint's reference instead. The key is read from the row itself, each value as
/// its type writes it, so nothing is lost on the way (`-0`, `1.50`).
#[pg_trigger(sql = r#"
CREATE FUNCTION oas."_fill_values"() RETURNS trigger
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', '_fill_values_wrapper';
"#)]
fn _fill_values<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::PgTriggerError> {
    Ok(fill_values(trigger).or_raise())
}

fn fill_values<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, OasError> {
    let internal = |e: pgrx::PgTriggerError| OasError::Internal(e.to_string());
    let data = trigger.trigger_data();
    let update = matches!(
        trigger.op().map_err(internal)?,
        pgrx::PgTriggerOperation::Update
    );
    let tuple = if update {
        data.tg_newtuple
    } else {
        data.tg_trigtuple
    };
    let table = trigger.relid().map_err(internal)?;
    // SAFETY: the trigger's relation, open for the call.
    let desc = unsafe { (*data.tg_relation).rd_att };
    let key = KeySource::Tuple { tuple, desc };
    let mut attnums = Vec::new();
    let mut values = Vec::new();
    for field in trigger.extra_args().map_err(internal)? {
        let name = CString::new(field.as_str()).expect("column names have no NUL byte");
        // SAFETY: the trigger's tuple and descriptor; the column is jsonb or a domain over it
        // (oas.tracked_columns admits no other type), so its datum is a jsonb.
        let value = unsafe {
            let attnum = pg_sys::SPI_fnumber(desc, name.as_ptr());
            if attnum <= 0 {
                continue;
            }
            let mut isnull = false;
            let datum = pg_sys::SPI_getbinval(tuple, desc, attnum, &mut isnull);
            match JsonB::from_polymorphic_datum(datum, isnull, pg_sys::JSONBOID) {
                Some(v) => (attnum, v.0),
                None => continue,
            }
        };
        if Pending::id_of(&value.1).is_none() {
            continue;
        }
        let reference = store_pending(table, &field, &key, &value.1)?;
        let datum = JsonB(reference).into_datum().expect("jsonb is never NULL");
        // SAFETY: the column's type from the descriptor; a domain's constraints are checked as
        // an assignment would check them.
        unsafe {
            let att = *(*desc).attrs.as_ptr().add(value.0 as usize - 1);
            if att.atttypid != pg_sys::JSONBOID {
                pg_sys::domain_check(
                    datum,
                    false,
                    att.atttypid,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
            }
        }
        attnums.push(value.0);
        values.push(datum);
    }
    if attnums.is_empty() {
        return Ok(trigger.new());
    }
    let nulls = vec![false; attnums.len()];
    // SAFETY: a new tuple of the same descriptor with these columns replaced, palloc'd in the
    // trigger's memory context, which PostgreSQL then stores.
    Ok(Some(unsafe {
        let modified = pg_sys::heap_modify_tuple_by_cols(
            tuple,
            desc,
            attnums.len() as i32,
            attnums.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_ptr().cast_mut(),
        );
        PgHeapTuple::from_heap_tuple(pgrx::PgTupleDesc::from_pg_unchecked(desc), modified)
    }))
}
