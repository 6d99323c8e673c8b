//! Which columns hold object references, and checking what they reference.
//!
//! A column is tracked when its comment carries a DataJoint codec marker with a store (see
//! `oas_core::codec`); the `oas.tracked_columns` view derives this from the comments themselves,
//! so tables DataJoint creates are included with no call from the client. `oas._tracked_refs()`
//! (in `sql/tracking.sql`) is the one walk over those columns: `oas_verify()`, `oas_usage()`,
//! `oas_store_references()`, the ledger and the collector use it.

use std::cell::RefCell;
use std::collections::HashMap;

use oas_core::codec::{parse_codec_spec, parse_marker, ObjectRef};
use oas_core::ops::check_reference;
use oas_core::OasError;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::catalog;
use crate::error::{raise, required, OrRaise};
use crate::runtime::block_on;

/// The codec behind a column comment: one row for an object-store codec marker, none otherwise.
#[pg_extern(immutable, strict, parallel_safe)]
fn oas_parse_marker(
    comment: &str,
) -> TableIterator<
    'static,
    (
        name!(codec, String),
        name!(store, Option<String>),
        name!(addressing, String),
        name!(user_comment, String),
    ),
> {
    TableIterator::new(parse_marker(comment).map(|c| {
        let addressing = c.addressing().as_str().to_string();
        (c.codec, c.store, addressing, c.comment)
    }))
}

/// Declare `column` of `table` an object-store column with `codec` (`blob@main`, `npy@`, ...):
/// writes DataJoint's comment `:<codec@store>:comment`, so DataJoint reads the column the same
/// way. Without `comment`, the column's existing user comment is kept.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_declare_column(
    table: Option<&str>,
    column: Option<&str>,
    codec: Option<&str>,
    comment: default!(Option<&str>, "NULL"),
) -> String {
    let (table, column, codec) = (
        required(table, "table"),
        required(column, "column"),
        required(codec, "codec"),
    );
    let mut c = parse_codec_spec(codec).or_raise();
    let (rel, typ, old) = Spi::get_three_with_args::<pg_sys::Oid, String, String>(
        "SELECT c.oid, format_type(a.atttypid, a.atttypmod), col_description(c.oid, a.attnum)
         FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
         WHERE c.oid = $1::regclass AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
        &[table.into(), column.into()],
    )
    .or_else(|e| match e {
        pgrx::spi::SpiError::InvalidPosition => Ok((None, None, None)),
        e => Err(e),
    })
    .or_raise();
    let Some(rel) = rel else {
        raise(OasError::invalid_argument(format!(
            "column \"{column}\" of relation \"{table}\" does not exist"
        )));
    };
    if typ.as_deref() != Some("jsonb") {
        raise(OasError::invalid_argument_hint(
            format!(
                "column \"{column}\" of \"{table}\" is {}, but object-store columns are jsonb",
                typ.unwrap_or_default()
            ),
            format!("ALTER TABLE {table} ALTER COLUMN {column} TYPE jsonb USING {column}::jsonb"),
        ));
    }
    c.comment = match comment {
        Some(given) => given.to_string(),
        None => match old {
            Some(old) => parse_marker(&old).map(|m| m.comment).unwrap_or(old),
            None => String::new(),
        },
    };
    let text = c.to_comment();
    // COMMENT checks that the caller owns the table.
    Spi::run(&format!(
        "COMMENT ON COLUMN {}.{} IS {}",
        regclass_text(rel),
        quote_ident(column),
        quote_literal(&text)
    ))
    .or_raise();
    text
}

pub(crate) fn regclass_text(rel: pg_sys::Oid) -> String {
    crate::spi::read_one::<String>("SELECT $1::regclass::text", &[rel.into()])
        .or_raise()
        .unwrap_or_default()
}

pub(crate) use pgrx::spi::{quote_identifier as quote_ident, quote_literal};

/// Results of reference checks within one statement: objects shared by many rows are checked
/// once per `oas_verify()` run. Keyed by store, store version, path and whether content was checked.
#[derive(Default)]
struct CheckCache {
    statement: i64,
    results: HashMap<(String, i64, String, bool), Option<String>>,
}

thread_local! {
    static CHECKED: RefCell<CheckCache> = RefCell::new(CheckCache::default());
}

/// Check the object `reference` names: NULL when it is there and intact, otherwise what is wrong
/// (missing, wrong size, wrong content, unknown store, or why it could not be checked).
#[pg_extern(volatile, parallel_unsafe)]
fn oas_check_reference(reference: JsonB, check_content: default!(bool, true)) -> Option<String> {
    let r = match ObjectRef::from_json(&reference.0) {
        Ok(r) => r,
        Err(e) => return Some(e.to_string()),
    };
    let (row, store) = match catalog::store_to_read(r.store.as_deref(), &r.path) {
        Ok(found) => found,
        Err(e) => return Some(e.to_string()),
    };
    // SAFETY: reads the current statement's start time, a plain backend global.
    let statement = unsafe { pg_sys::GetCurrentStatementStartTimestamp() };
    let key = (row.name.clone(), row.version, r.path.clone(), check_content);
    let cached = CHECKED.with_borrow_mut(|cache| {
        if cache.statement != statement {
            cache.statement = statement;
            cache.results.clear();
        }
        cache.results.get(&key).cloned()
    });
    if let Some(result) = cached {
        return result;
    }
    let result = match block_on(check_reference(&store, &r, check_content)) {
        Ok(problem) => problem,
        Err(e @ OasError::Cancelled) => crate::error::raise(e),
        Err(e) => Some(format!("could not be checked: {e}")),
    };
    CHECKED.with_borrow_mut(|cache| cache.results.insert(key, result.clone()));
    result
}
