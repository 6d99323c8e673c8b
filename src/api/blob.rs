//! DataJoint blobs (`<blob>` in a `bytea` column, `<blob@store>` hash-addressed) from SQL: values
//! packed to and unpacked from DataJoint's serialization (`oas_core::blob`, byte for byte what
//! DataJoint's `blob.pack` writes), as JSON.
//!
//! JSON given as text (or `json::text`) keeps its keys in the order written, so `oas_blob_pack(t)`
//! is exactly `blob.pack(json.loads(t))`; a `jsonb` value has already put its keys in its own order.

use oas_core::blob;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::error::OrRaise;

/// A `<blob>` value from JSON text: `null`, booleans, numbers (integers stay integers), strings,
/// arrays (Python lists) and objects (dicts, keys in the order written), packed exactly as
/// DataJoint's `blob.pack(json.loads(value))` packs them, compressed as DataJoint compresses.
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_blob_pack(value: &str) -> Vec<u8> {
    blob::pack(&blob::from_json_str(value).or_raise()).or_raise()
}

/// A `<blob>` value from `jsonb` (dict keys in `jsonb`'s order: pass `json` to keep yours).
#[pg_extern(immutable, strict, parallel_safe, name = "oas_blob_pack")]
fn oas_blob_pack_jsonb(value: JsonB) -> Vec<u8> {
    blob::pack(&blob::from_json(&value.0).or_raise()).or_raise()
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
    let packed = blob::pack(&blob::from_json_str(value?).or_raise()).or_raise();
    Some(JsonB(super::hash::put(&packed, store, schema).or_raise()))
}

/// A `<blob@>` reference read (size and MD5 checked, as `oas_hash_get` reads) and unpacked to
/// JSON as `oas_blob_unpack` does.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_blob_get(reference: JsonB) -> JsonB {
    let packed = super::hash::get(&reference.0).or_raise();
    JsonB(blob::to_json(&blob::unpack(&packed).or_raise()))
}
