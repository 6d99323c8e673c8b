//! `oas_migrate_column`: an in-table `bytea` column (`<blob>`, `<attach>`, plain bytes) into an
//! object-store column (`<blob@store>`, `<attach@store>`, `<hash@store>`), or back, as a job of
//! the engine in `job.rs` (README "Migrating a column").
//!
//! The start adds the column that will hold the migrated values (`_{column}_migrating`, hidden
//! from DataJoint, with DataJoint's comment for the new codec) and a row trigger that empties it
//! when another session writes the old column (`oas._job_stale`), so that row is migrated again.
//! Each batch writes pending values (`oas._pending_stored`, stored by `oas._fill_values` and
//! uploaded concurrently, `src/api/write.rs`) or reads the objects back (`oas_hash_get`); the
//! last step gives the new column the old one's name (and NOT NULL), and keeps the old column
//! as `_{column}_premigration` (nullable) or drops it.

use oas_core::job::{self as plan, Migration};
use oas_core::reference::PendingValue;
use oas_core::OasError;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use super::job::{self, Job, Work};
use super::tracking::{quote_ident, quote_literal};
use crate::error::{raise, required, OrRaise, SpiOk};

/// A pending `<blob@>`, `<attach@>` or `<hash@>` value (`codec`) from bytes already in the form
/// the store keeps (a packed blob, `filename\0contents`, plain bytes), checked as that codec's
/// values are (a blob's header; an attachment's file name); an error names `row`. What
/// `oas_migrate_column` writes for each in-table value.
#[pg_extern(volatile, parallel_unsafe, name = "_pending_stored")]
fn pending_stored(
    data: Option<&[u8]>,
    codec: &str,
    row: default!(Option<&str>, "NULL"),
) -> Option<JsonB> {
    let data = data?;
    let value = stored_value(data, codec).unwrap_or_else(|e| {
        raise(match (row, e) {
            (Some(row), OasError::InvalidArgument { message, hint }) => OasError::InvalidArgument {
                message: format!("row {row}: {message}"),
                hint,
            },
            (_, e) => e,
        })
    });
    Some(super::write::pend_hashed(data.to_vec(), value))
}

fn stored_value(data: &[u8], codec: &str) -> Result<PendingValue, OasError> {
    Ok(match codec {
        "blob" => {
            let head = &data[..data.len().min(oas_core::blob::HEAD_LEN)];
            oas_core::blob::check_head(head, data.len() as u64)?;
            PendingValue::Blob {
                size: data.len() as u64,
            }
        }
        "attach" => {
            let (filename, contents) = oas_core::attach::unpack(data)?;
            PendingValue::Attach {
                filename: filename.to_string(),
                size: contents.len() as u64,
            }
        }
        "hash" => PendingValue::Hash {
            size: data.len() as u64,
        },
        other => {
            return Err(OasError::invalid_argument(format!(
                "\"{other}\" is not a hash-addressed codec (blob, attach, hash)"
            )))
        }
    })
}

/// Start (or resume) the migration of `column` of `table` into `codec`; the job's id. Called by
/// the procedure `oas_migrate_column`.
#[pg_extern(volatile, parallel_unsafe, name = "_migrate_start")]
#[search_path(pg_catalog, pg_temp)]
fn migrate_start(
    table: Option<pg_sys::Oid>,
    column: Option<&str>,
    codec: Option<&str>,
    batch_rows: Option<i32>,
    drop_old: Option<bool>,
    max_bytes: Option<i64>,
) -> i64 {
    let table = required(table, "table");
    let column = required(column, "column");
    let codec = required(codec, "codec");
    let batch_rows = plan::batch_rows(required(batch_rows, "batch_rows").into()).or_raise();
    start(
        table,
        column,
        codec,
        batch_rows,
        drop_old.unwrap_or(false),
        max_bytes,
    )
    .or_raise()
}

fn start(
    table: pg_sys::Oid,
    column: &str,
    codec: &str,
    batch_rows: i64,
    drop_old: bool,
    max_bytes: Option<i64>,
) -> Result<i64, OasError> {
    crate::privilege::require_writable("migrate a column")?;
    let label = job::table_name(table)?;
    if let Some(found) = job::running(table, column)? {
        return job::resume(
            found,
            "migrate",
            |args| {
                args["codec"] == json!(codec)
                    && args["drop_old"] == json!(drop_old)
                    && args["max_bytes"] == json!(max_bytes)
            },
            batch_rows,
        );
    }
    job::require_owner(table, &label)?;
    job::primary_key(table, &label)?;
    let (ty, comment, not_null) = job::column_info(table, column, &label)?;
    let migration = plan::plan_migration(column, &ty, &comment, codec)?;
    let old = quote_ident(column);
    match &migration {
        // A read-only or missing store refuses before anything is written (25006).
        Migration::Forward { to, .. } => {
            crate::catalog::store_to_write(to.store.as_deref())?;
        }
        Migration::Reverse { .. } => {
            let max = required(max_bytes, "max_bytes");
            if !(0..=super::MAX_BYTEA as i64).contains(&max) {
                return Err(OasError::invalid_argument_hint(
                    format!(
                        "max_bytes must be between 0 and {}, not {max}",
                        super::MAX_BYTEA
                    ),
                    "a bytea holds at most 1 GB",
                ));
            }
            let sizes = format!(
                "SELECT count(*) FILTER (WHERE s OPERATOR(pg_catalog.>) $1), coalesce(max(s), 0)
                 FROM (SELECT ({old} OPERATOR(pg_catalog.->>) 'size')::pg_catalog.int8 AS s FROM {label}
                       WHERE {old} IS NOT NULL) v"
            );
            let (over, largest) = Spi::connect(|c| {
                let r = c.select(&sizes, Some(1), &[max.into()])?.first();
                Ok::<_, pgrx::spi::SpiError>((
                    r.get::<i64>(1)?.unwrap_or(0),
                    r.get::<i64>(2)?.unwrap_or(0),
                ))
            })
            .spi()?;
            plan::check_sizes(over, largest, max)?;
        }
    }
    let new = plan::new_column_name(column);
    let keep = plan::old_column_name(column);
    for (name, why) in [
        (&new, "the migration's new column"),
        (&keep, "the old column kept"),
    ] {
        if job::has_column(table, name)? && (name != &keep || !drop_old) {
            return Err(OasError::invalid_argument_hint(
                format!("table {label} already has a column \"{name}\", the name of {why}"),
                "rename or drop that column first",
            ));
        }
    }
    let total = Spi::get_one::<i64>(&format!(
        "SELECT count(*) FROM {label} WHERE {old} IS NOT NULL"
    ))
    .spi()?
    .unwrap_or(0);
    let args = json!({
        "codec": codec,
        "target": migration.target(),
        "reverse": matches!(migration, Migration::Reverse { .. }),
        "store_codec": match &migration {
            Migration::Forward { to, .. } => to.codec.clone(),
            Migration::Reverse { from, .. } => from.codec.clone(),
        },
        "store": match &migration {
            Migration::Forward { to, .. } => to.store.clone(),
            Migration::Reverse { .. } => None,
        },
        "drop_old": drop_old,
        "max_bytes": max_bytes,
        "not_null": not_null,
    });
    let id = job::create("migrate", table, column, &new, &args, batch_rows, total)?;
    let q_new = quote_ident(&new);
    Spi::run(&format!(
        "ALTER TABLE {label} ADD COLUMN {q_new} {}",
        migration.new_type()
    ))
    .spi()?;
    Spi::run(&format!(
        "COMMENT ON COLUMN {label}.{q_new} IS {}",
        quote_literal(migration.new_comment())
    ))
    .spi()?;
    // Named `oas_job_*`, it fires after `oas_fill_values` (BEFORE triggers go in name order): a
    // pending value another session writes into the old column is stored first, and the new
    // column of that row is emptied whatever `oas_fill_values` did, so a batch rewrites it.
    Spi::run(&format!(
        "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OF {old} ON {label}
         FOR EACH ROW EXECUTE FUNCTION oas._job_stale({})",
        quote_ident(format!("oas_job_{id}")),
        quote_literal(&new)
    ))
    .spi()?;
    Ok(id)
}

/// What a batch of a migration rewrites.
pub(crate) fn work(job: &Job) -> Result<Work, OasError> {
    let (old, new) = (quote_ident(&job.column), quote_ident(&job.work_column));
    let codec = job.args["store_codec"].as_str().unwrap_or_default();
    let filter = format!("{new} IS NULL AND {old} IS NOT NULL");
    Ok(if job.args["reverse"] == json!(true) {
        Work {
            filter,
            set: format!("{new} = oas.oas_hash_get({old})"),
            check: format!(
                "pg_catalog.md5({new}), pg_catalog.octet_length({new})::pg_catalog.int8, {old}"
            ),
            store: None,
            stat: false,
        }
    } else {
        Work {
            filter,
            set: format!(
                "{new} = oas._pending_stored({old}, {}, ROW_LABEL)",
                quote_literal(codec)
            ),
            check: format!(
                "pg_catalog.md5({old}), pg_catalog.octet_length({old})::pg_catalog.int8, {new}"
            ),
            store: None,
            stat: true,
        }
    })
}

/// The migration's last change, with the table locked: the new column takes the old one's name
/// (and NOT NULL if the old had it); the old is dropped, or kept nullable under another name.
pub(crate) fn finish(job: &Job, table: &str) -> Result<(), OasError> {
    let (old, new) = (quote_ident(&job.column), quote_ident(&job.work_column));
    let keep = quote_ident(plan::old_column_name(&job.column));
    let mut ddl = vec![format!(
        "DROP TRIGGER IF EXISTS {} ON {table}",
        quote_ident(format!("oas_job_{}", job.id))
    )];
    if job.args["drop_old"] == json!(true) {
        ddl.push(format!("ALTER TABLE {table} DROP COLUMN {old}"));
    } else {
        ddl.push(format!("ALTER TABLE {table} RENAME COLUMN {old} TO {keep}"));
        ddl.push(format!(
            "ALTER TABLE {table} ALTER COLUMN {keep} DROP NOT NULL"
        ));
    }
    ddl.push(format!("ALTER TABLE {table} RENAME COLUMN {new} TO {old}"));
    if job.args["not_null"] == json!(true) {
        ddl.push(format!(
            "ALTER TABLE {table} ALTER COLUMN {old} SET NOT NULL"
        ));
    }
    for statement in ddl {
        Spi::run(&statement).spi()?;
    }
    Ok(())
}
