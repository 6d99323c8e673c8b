//! `oas_move`: the objects of tracked columns copied to another store, each column a job of the
//! engine in `job.rs`. Each batch rewrites its references with `oas._copy_to_store(ref, store)`
//! (which copies the object and returns the new reference) in the transaction that copies them;
//! the old copies are the collector's. When a column is done its comment names the new store,
//! so new values go there.

use oas_core::codec::parse_marker;
use oas_core::job as plan;
use oas_core::OasError;
use pgrx::prelude::*;
use serde_json::json;

use super::job::{self, Job, Work};
use super::tracking::{quote_ident, quote_literal};
use crate::error::{required, OrRaise, SpiOk};

/// Start (or resume) a job per tracked column selected (of `table`, named `column`, or all) whose
/// objects move from `from_store` (default: any other store) to `to_store`; their ids. Called by
/// the procedure `oas_move`.
#[pg_extern(volatile, parallel_unsafe, name = "_move_start")]
#[search_path(pg_catalog, pg_temp)]
fn move_start(
    to_store: Option<&str>,
    from_store: Option<&str>,
    table: Option<pg_sys::Oid>,
    column: Option<&str>,
    batch_rows: Option<i32>,
) -> Vec<i64> {
    let to = required(to_store, "to_store");
    let batch_rows = plan::batch_rows(required(batch_rows, "batch_rows").into()).or_raise();
    start(to, from_store, table, column, batch_rows).or_raise()
}

fn start(
    to: &str,
    from: Option<&str>,
    table: Option<pg_sys::Oid>,
    column: Option<&str>,
    batch_rows: i64,
) -> Result<Vec<i64>, OasError> {
    crate::privilege::require_writable("move objects")?;
    // A read-only or missing destination refuses before anything is written (25006).
    crate::catalog::store_to_write(Some(to))?;
    let copy = crate::spi::read_one::<bool>(
        "SELECT pg_catalog.to_regprocedure('oas._copy_to_store(jsonb, text)') IS NOT NULL",
        &[],
    )
    .spi()?;
    if copy != Some(true) {
        return Err(OasError::Prerequisite {
            message:
                "oas_move needs oas._copy_to_store(jsonb, text), which this installation lacks"
                    .into(),
            hint: Some(
                "install a pg_oas build that has it, then ALTER EXTENSION pg_oas UPDATE".into(),
            ),
        });
    }
    // A named source the caller may not read refuses before anything is done too (42501); each
    // copy checks its object again.
    if let Some(from) = from {
        crate::catalog::store_row_to(crate::catalog::Access::Read, Some(from))?;
    }
    let columns: Vec<(pg_sys::Oid, String, String, Option<String>)> = Spi::connect(|c| {
        c.select(
            "SELECT t.table_oid::pg_catalog.oid, t.column_name::pg_catalog.text, t.addressing::pg_catalog.text,
                    t.store::pg_catalog.text
             FROM oas.tracked_columns t
             WHERE ($1 IS NULL OR t.table_oid OPERATOR(pg_catalog.=) $1)
               AND ($2 IS NULL OR t.column_name OPERATOR(pg_catalog.=) $2)
             ORDER BY t.table_oid::pg_catalog.regclass::pg_catalog.text, t.column_name",
            None,
            &[table.into(), column.into()],
        )?
        .map(|r| {
            Ok((
                r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                r.get::<String>(2)?.unwrap_or_default(),
                r.get::<String>(3)?.unwrap_or_default(),
                r.get::<String>(4)?,
            ))
        })
        .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .spi()?;
    let mut ids = Vec::new();
    for (oid, name, addressing, comment_store) in columns {
        if table.is_none() && !concerns(oid, &name, comment_store.as_deref(), to, from)? {
            continue;
        }
        let label = job::table_name(oid)?;
        if addressing == "filepath" {
            pgrx::notice!(
                "{label}.{name} is a <filepath@> column: its files are the user's, not moved"
            );
            continue;
        }
        let same =
            |args: &serde_json::Value| args["to"] == json!(to) && args["from"] == json!(from);
        if let Some(found) = job::running(oid, &name)? {
            ids.push(job::resume(found, "move", same, batch_rows)?);
            continue;
        }
        job::require_owner(oid, &label)?;
        job::primary_key(oid, &label)?;
        let (_, comment, _) = job::column_info(oid, &name, &label)?;
        let q = quote_ident(&name);
        let work = filter(&q, to, from);
        let total = Spi::get_one::<i64>(&format!("SELECT count(*) FROM {label} WHERE {work}"))
            .spi()?
            .unwrap_or(0);
        let args = json!({"to": to, "from": from, "comment": comment});
        ids.push(job::create(
            "move", oid, &name, &name, &args, batch_rows, total,
        )?);
    }
    if ids.is_empty() {
        return Err(OasError::invalid_argument_hint(
            "no tracked column to move",
            "SELECT * FROM oas.tracked_columns lists the columns that hold references",
        ));
    }
    Ok(ids)
}

/// Whether a move of a whole store (no table named) concerns a column: its comment names the
/// store moved from (with none named, a store other than `to`), so [`finish`] retargets it, or
/// the ledger records references of it outside `to` (in `from`). Other columns of the database
/// (other roles' tables among them) are left alone.
fn concerns(
    table: pg_sys::Oid,
    column: &str,
    comment_store: Option<&str>,
    to: &str,
    from: Option<&str>,
) -> Result<bool, OasError> {
    if plan::move_retargets(comment_store, to, from) {
        return Ok(true);
    }
    let referenced = crate::privilege::as_owner(|| {
        crate::spi::read_one::<bool>(
            "SELECT EXISTS (SELECT FROM oas.ref_log l
                            WHERE l.table_oid OPERATOR(pg_catalog.=) $1
                              AND l.column_name OPERATOR(pg_catalog.=) $2
                              AND l.store OPERATOR(pg_catalog.<>) $3
                              AND ($4::pg_catalog.text IS NULL OR l.store OPERATOR(pg_catalog.=) $4)
                            GROUP BY l.store, l.path
                            HAVING pg_catalog.sum(l.delta) OPERATOR(pg_catalog.<>) 0)",
            &[table.into(), column.into(), to.into(), from.into()],
        )
    })
    .spi()?;
    Ok(referenced == Some(true))
}

/// The rows whose reference in column `q` (quoted) is not yet in `to` (and is in `from`).
fn filter(q: &str, to: &str, from: Option<&str>) -> String {
    let store = format!("({q} OPERATOR(pg_catalog.->>) 'store')");
    let mut f = format!(
        "{q} IS NOT NULL AND {store} IS DISTINCT FROM {}",
        quote_literal(to)
    );
    if let Some(from) = from {
        f.push_str(&format!(
            " AND {store} OPERATOR(pg_catalog.=) {}",
            quote_literal(from)
        ));
    }
    f
}

/// What a batch of a move rewrites.
pub(crate) fn work(job: &Job) -> Result<Work, OasError> {
    let q = quote_ident(&job.column);
    let to = job.args["to"].as_str().unwrap_or_default().to_string();
    let from = job.args["from"].as_str();
    Ok(Work {
        filter: filter(&q, &to, from),
        set: format!("{q} = oas._copy_to_store({q}, {})", quote_literal(&to)),
        check: format!("NULL::pg_catalog.text, NULL::pg_catalog.int8, {q}"),
        store: Some(to),
        stat: true,
    })
}

/// A column whose objects all moved: its comment names the new store (when it named the store
/// moved from, or any store when none was given), so new values go there.
pub(crate) fn finish(job: &Job, table: &str) -> Result<(), OasError> {
    let to = job.args["to"].as_str().unwrap_or_default();
    let (_, comment, _) = job::column_info(job.table, &job.column, table)?;
    let from = job.args["from"].as_str();
    let Some(marker) = parse_marker(&comment) else {
        return Ok(());
    };
    if !plan::move_retargets(marker.store.as_deref(), to, from) {
        return Ok(());
    }
    if let Some(new) = plan::comment_with_store(&comment, to) {
        Spi::run(&format!(
            "COMMENT ON COLUMN {table}.{} IS {}",
            quote_ident(&job.column),
            quote_literal(&new)
        ))
        .spi()?;
    }
    Ok(())
}
