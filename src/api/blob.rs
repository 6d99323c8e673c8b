//! DataJoint blobs (`<blob>` in a `bytea` column, `<blob@store>` hash-addressed) from SQL: values
//! packed to and unpacked from DataJoint's serialization (`oas_core::blob`, byte for byte what
//! DataJoint's `blob.pack` writes), as JSON.
//!
//! JSON given as text (or `json::text`) keeps its keys in the order written, so `oas_blob_pack(t)`
//! is exactly `blob.pack(json.loads(t))`; a `jsonb` value has already put its keys in its own order.

use std::cell::RefCell;
use std::collections::HashSet;

use oas_core::blob;
use oas_core::OasError;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::catalog;
use crate::error::OrRaise;
use crate::runtime::block_on;

/// A `<blob>` value from JSON text: `null`, booleans, numbers (integers stay integers), strings,
/// arrays (Python lists) and objects (dicts, keys in the order written), packed exactly as
/// DataJoint's `blob.pack(json.loads(value))` packs them, compressed as DataJoint compresses.
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_blob_pack(value: &str) -> Vec<u8> {
    pack_text(value).or_raise()
}

/// What `oas_blob_pack(text)` packs.
pub(crate) fn pack_text(value: &str) -> Result<Vec<u8>, OasError> {
    blob::pack(&blob::from_json_str(value)?)
}

/// What `oas_blob_pack(jsonb)` packs.
pub(crate) fn pack_json(value: &serde_json::Value) -> Result<Vec<u8>, OasError> {
    blob::pack(&blob::from_json(value)?)
}

/// What `oas_blob_pack(anyarray)` packs.
pub(crate) fn pack_array(values: &pgrx::AnyArray) -> Result<Vec<u8>, OasError> {
    blob::pack(&array_value(values)?)
}

/// A `<blob>` value from `jsonb` (dict keys in `jsonb`'s order: pass `json` to keep yours).
#[pg_extern(immutable, strict, parallel_safe, name = "oas_blob_pack")]
fn oas_blob_pack_jsonb(value: JsonB) -> Vec<u8> {
    pack_json(&value.0).or_raise()
}

/// A `<blob>` value from bytes: Python `bytes`, packed as `blob.pack(b"...")` packs them.
#[pg_extern(immutable, strict, parallel_safe, name = "oas_blob_pack")]
fn oas_blob_pack_bytes(value: &[u8]) -> Vec<u8> {
    pack_bytes(value).or_raise()
}

/// What `oas_blob_pack(bytea)` packs.
pub(crate) fn pack_bytes(value: &[u8]) -> Result<Vec<u8>, OasError> {
    blob::pack(&blob::BlobValue::Bytes(value.to_vec()))
}

/// A DataJoint blob as JSON: arrays as nested lists (row-major, as NumPy's `tolist()`), dicts as
/// objects, bytes as `{"bytes": base64}`, NaN and infinities as strings, dates in ISO form (see
/// README "DataJoint blobs"). Refuses bytes that are not a DataJoint blob.
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_blob_unpack(value: &[u8]) -> JsonB {
    JsonB(blob::to_json(&blob::unpack(value).or_raise()))
}

/// Store a `<blob@store>` value (JSON text, as `oas_blob_pack` takes it) as DataJoint does: packed, hash-addressed in `store` (default:
/// the default store) for `schema` (default: the current schema), deduplicated. The reference.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_blob_put(
    value: Option<&str>,
    store: default!(Option<&str>, "NULL"),
    schema: default!(Option<&str>, "NULL"),
) -> Option<JsonB> {
    let packed = pack_text(value?).or_raise();
    Some(JsonB(
        super::hash::put(&packed, store, schema, None).or_raise(),
    ))
}

/// A `<blob@>` reference read (size and MD5 checked, as `oas_hash_get` reads) and unpacked to
/// JSON as `oas_blob_unpack` does.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_blob_get(reference: JsonB) -> JsonB {
    let packed = super::hash::get(&reference.0).or_raise();
    JsonB(blob::to_json(&blob::unpack(&packed).or_raise()))
}

/// A `<blob>` value from a PostgreSQL array (boolean, smallint, integer, bigint, real, double
/// precision; numeric as double precision; any number of dimensions): the NumPy array of that
/// dtype and shape, packed as DataJoint's `blob.pack` packs it. NULL elements are refused.
#[pg_extern(immutable, strict, parallel_safe, name = "oas_blob_pack")]
fn oas_blob_pack_array(values: pgrx::AnyArray) -> Vec<u8> {
    pack_array(&values).or_raise()
}

/// The numeric array a DataJoint blob holds, as `double precision[]` with its dimensions
/// (booleans as 0 and 1; integers beyond 2^53 are refused rather than rounded). Bytes that are
/// not a blob, or a blob that is not a numeric array, are refused.
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_blob_unpack_array(value: &[u8]) -> super::npy::Float8Array {
    let (values, shape) = blob::array_doubles(&blob::unpack(value).or_raise()).or_raise();
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    super::npy::Float8Array::new(values, &shape)
}

fn array_value(values: &pgrx::AnyArray) -> Result<blob::BlobValue, oas_core::OasError> {
    use blob::Numbers;
    let (raw, shape) = super::npy::array_shape(values)?;
    // The elements in the array's (row-major) order; NULLs were refused above.
    macro_rules! all {
        ($t:ty) => {
            pgrx::AnyArray::into::<pgrx::Array<$t>>(values)
                .expect("the array's element type")
                .iter()
                .flatten()
                .collect::<Vec<$t>>()
        };
    }
    let numbers =
        match raw.oid() {
            pg_sys::BOOLOID => Numbers::Bool(all!(bool)),
            pg_sys::INT2OID => Numbers::Int16(all!(i16)),
            pg_sys::INT4OID => Numbers::Int32(all!(i32)),
            pg_sys::INT8OID => Numbers::Int64(all!(i64)),
            pg_sys::FLOAT4OID => Numbers::Float32(all!(f32)),
            pg_sys::FLOAT8OID => Numbers::Float64(all!(f64)),
            pg_sys::NUMERICOID => Numbers::Float64(
                all!(pgrx::AnyNumeric)
                    .iter()
                    .map(|n| oas_core::npy::numeric_to_f64(&n.to_string()))
                    .collect::<Result<_, _>>()?,
            ),
            other => return Err(oas_core::OasError::invalid_argument_hint(
                format!(
                    "arrays of type {} cannot become NumPy arrays",
                    super::paths::type_name(other)
                ),
                "use boolean, smallint, integer, bigint, real, double precision or numeric arrays",
            )),
        };
    blob::array_value(&shape, numbers)
}

thread_local! {
    /// Objects this backend found to be blobs: hash-addressed objects never change, so once is
    /// enough. Bounded; cleared when full.
    static KNOWN_BLOBS: RefCell<HashSet<(String, String)>> = RefCell::new(HashSet::new());
}
const KNOWN_BLOBS_MAX: usize = 100_000;

/// Called by the ledger's trigger for the new references of a `<blob@>` column (and of custom
/// codecs chained to `<blob>`) of a table in `schema`: each object in that schema's part of the
/// hash section must be a DataJoint blob (its header; a small object is unpacked whole), or
/// DataJoint would read it as `None`. References elsewhere, and in stores this database does not
/// know, are not read (a role may only probe its own schema's objects).
#[pg_extern(volatile, parallel_unsafe, name = "_check_blobs")]
fn check_blobs(stores: Vec<Option<String>>, paths: Vec<Option<String>>, schema: &str) {
    check(&stores, &paths, schema).or_raise()
}

fn check(
    stores: &[Option<String>],
    paths: &[Option<String>],
    schema: &str,
) -> Result<(), OasError> {
    use futures::StreamExt;
    let mut todo = Vec::new();
    let mut store_named = catalog::stores_unchecked();
    for (store, path) in stores.iter().zip(paths) {
        let (Some(store), Some(path)) = (store, path) else {
            continue;
        };
        if KNOWN_BLOBS.with_borrow(|k| k.contains(&(store.clone(), path.clone()))) {
            continue;
        }
        // A store this database does not know (one only DataJoint is configured for) cannot be
        // read: its references are recorded, not checked.
        let s = match store_named(store) {
            Err(OasError::StoreNotConfigured(_)) => continue,
            s => s?,
        };
        let spec = &s.spec;
        let own = oas_core::gc::section_of(&spec.hash_prefix, &spec.schema_prefix, path)
            == oas_core::gc::Section::Hash
            && oas_core::gc::owner_schema(&spec.hash_prefix, &spec.schema_prefix, path)
                == Some(schema);
        if own {
            todo.push((s, path.clone()));
        }
    }
    if todo.is_empty() {
        return Ok(());
    }
    // Values this statement stored may still be on their way (`write_behind`).
    crate::write_behind::flush()?;
    let checked: Vec<Result<(String, String), OasError>> = block_on(async {
        Ok(
            futures::stream::iter(todo.into_iter().map(|(store, path)| async move {
                let (head, size) =
                    oas_core::ops::read_head(&store, &path, blob::HEAD_LEN as u64).await?;
                blob::check_head(&head, size).map_err(|e| match e {
                    OasError::InvalidArgument { message, hint } => OasError::InvalidArgument {
                        message: format!(
                            "object \"{path}\" of store \"{}\" is {message}",
                            store.name
                        ),
                        hint,
                    },
                    e => e,
                })?;
                Ok((store.name.clone(), path))
            }))
            .buffer_unordered(8)
            .collect()
            .await,
        )
    })?;
    for c in checked {
        let known = c?;
        KNOWN_BLOBS.with_borrow_mut(|k| {
            if k.len() >= KNOWN_BLOBS_MAX {
                k.clear();
            }
            k.insert(known);
        });
    }
    Ok(())
}
