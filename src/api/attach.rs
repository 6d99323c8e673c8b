//! Attachments (`<attach>` in a `bytea` column, `<attach@store>` hash-addressed): DataJoint's
//! `filename\0contents` layout (`oas_core::attach`), written from a file name and bytes and read
//! back as both.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::error::OrRaise;

/// An `<attach>` value from a file name and the file's bytes: `filename\0contents`, as DataJoint
/// writes it. The name is the file's name alone (no folder, `/` or NUL).
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_attach_pack(filename: &str, contents: &[u8]) -> Vec<u8> {
    oas_core::attach::pack(filename, contents).or_raise()
}

/// The file name and bytes of an `<attach>` value (one row).
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_attach_unpack(
    value: &[u8],
) -> TableIterator<'static, (name!(filename, String), name!(contents, Vec<u8>))> {
    let (name, contents) = oas_core::attach::unpack(value).or_raise();
    TableIterator::once((name.to_string(), contents.to_vec()))
}

/// Store an attachment in an `<attach@store>` column's store, as DataJoint does: the packed
/// `filename\0contents` hash-addressed for `schema` (default: the current schema), deduplicated.
/// Returns the reference the row keeps. A NULL file stays NULL.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_attach_put(
    filename: Option<&str>,
    contents: Option<&[u8]>,
    store: default!(Option<&str>, "NULL"),
    schema: default!(Option<&str>, "NULL"),
) -> Option<JsonB> {
    let contents = contents?;
    let filename = crate::error::required(filename, "filename");
    let packed = oas_core::attach::pack(filename, contents).or_raise();
    Some(JsonB(
        super::hash::put(&packed, store, schema, None).or_raise(),
    ))
}

/// The file name and bytes of an `<attach@>` reference (one row): the object is read with its
/// size and MD5 checked, as `oas_hash_get` reads it, then split.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_attach_get(
    reference: JsonB,
) -> TableIterator<'static, (name!(filename, String), name!(contents, Vec<u8>))> {
    let packed = super::hash::get(&reference.0).or_raise();
    let (name, contents) = oas_core::attach::unpack(&packed).or_raise();
    TableIterator::once((name.to_string(), contents.to_vec()))
}
