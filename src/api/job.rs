//! The job engine: one column of one table rewritten in keyset batches, one transaction per
//! batch (`oas_migrate_column`, `oas_move`; the procedures are in `sql/jobs.sql`).
//!
//! A job is a row of `oas.job`: what it rewrites, the last primary key done (`position`), the
//! rows and bytes done. Each call of `oas._job_step(job)` locks that row (a second caller for the
//! same job waits, then continues from the position the first recorded), rewrites the next
//! `batch_rows` rows that still need it (the kind's `filter`) in one `UPDATE`, checks every value
//! it wrote ([`oas_core::job::check_value`], and that each object exists with its size), and
//! records the position. The procedure commits after each step, so an interrupted run keeps its
//! batches and a new call resumes. When no row is left, the last step locks the table
//! (`ACCESS EXCLUSIVE`), rewrites the rows other sessions wrote meanwhile, and does the kind's
//! last change (renames, comments) in that one short transaction.
//!
//! Privileges: the rewrites and the DDL run as the caller (its privileges on its table); only the
//! job rows are written as the extension's owner, and only for the role that started the job.
//! Everyone reads their own jobs (`oas.job`, row security).

use oas_core::codec::ObjectRef;
use oas_core::job::{check_value, progress_text};
use oas_core::OasError;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::tracking::{quote_ident, quote_literal};
use crate::error::{OrRaise, SpiOk};
use crate::privilege::{as_owner, current_user_name, pinned};

/// The advisory lock class of job starts (one start per table at a time).
const JOB_CLASS: i32 = 0x6f61_736a; // "oasj"

/// A job's row.
pub(crate) struct Job {
    pub id: i64,
    pub kind: String,
    pub table: pg_sys::Oid,
    pub column: String,
    pub work_column: String,
    pub args: Value,
    pub batch_rows: i64,
    pub position: Option<Vec<String>>,
}

/// What a kind rewrites: SQL over the table's own columns.
pub(crate) struct Work {
    /// The rows that still need the job.
    pub filter: String,
    /// The assignment of the `UPDATE`; `ROW_LABEL` in it stands for the row's key as text
    /// (`id=5`), for errors.
    pub set: String,
    /// Three expressions the `UPDATE` returns for the check: the MD5 (hex) and size of the bytes
    /// in the table (or NULLs), and the reference.
    pub check: String,
    /// The store the references must name.
    pub store: Option<String>,
    /// Check that each object exists with its size (what was written to a store).
    pub stat: bool,
}

/// `CALL`ed procedures that commit as they go refuse to start inside a transaction block: they
/// could not commit their batches.
#[pg_extern(volatile, parallel_unsafe, name = "_job_top_level")]
fn job_top_level(what: &str) {
    // SAFETY: reads this backend's transaction state.
    if unsafe { pg_sys::IsTransactionBlock() } {
        crate::error::raise(OasError::TransactionBlock {
            message: format!("{what} cannot run inside a transaction block"),
            hint: Some(format!(
                "CALL {what}(...) on its own, outside BEGIN ... COMMIT: it commits after each batch"
            )),
        });
    }
}

/// One batch of job `job` (an id of `oas.job`, started by the current role); its progress as
/// JSON (`progress`, `rows_done`, `bytes_done`, `done`). Called by the job's procedure, which
/// commits after each call.
#[pg_extern(volatile, parallel_unsafe, name = "_job_step")]
#[search_path(pg_catalog, pg_temp)]
fn job_step(job: i64) -> JsonB {
    // The position is kept as text: written and read in one style, whatever the session's.
    let keys_as_text = [
        (c"DateStyle", "ISO, YMD"),
        (c"IntervalStyle", "postgres"),
        (c"extra_float_digits", "3"),
    ];
    JsonB(crate::guc::scoped(&keys_as_text, || step(job)).or_raise())
}

fn step(id: i64) -> Result<Value, OasError> {
    crate::privilege::require_writable("run a job")?;
    let Some(job) = load(id)? else {
        // Another call of this role finished the job meanwhile.
        return record(id, &[], 0, 0, true);
    };
    let table = table_name(job.table)?;
    let keys = primary_key(job.table, &table)?;
    let work = match job.kind.as_str() {
        "migrate" => super::migrate::work(&job)?,
        "move" => super::moves::work(&job)?,
        other => return Err(OasError::Internal(format!("unknown job kind {other}"))),
    };
    let key_list = keys
        .iter()
        .map(|(n, _)| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ");
    let key_row = |param: usize| {
        let values = keys
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("${param}[{}]::{ty}", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        format!("ROW({values})")
    };
    let key_text = format!(
        "ARRAY[{}]",
        keys.iter()
            .map(|(n, _)| format!("{}::pg_catalog.text", quote_ident(n)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let after = match job.position {
        Some(_) => format!("ROW({key_list}) OPERATOR(pg_catalog.>) {}", key_row(1)),
        None => "true".to_string(),
    };
    let position = job.position.clone().unwrap_or_default();
    let next = format!(
        "SELECT {key_text} FROM {table} WHERE ({}) AND {after} ORDER BY {key_list} LIMIT {}",
        work.filter, job.batch_rows
    );
    let batch: Vec<Vec<String>> = Spi::connect(|c| {
        c.select(&next, None, &[position.clone().into()])?
            .map(|r| r.get::<Vec<String>>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
    })
    .spi()?;
    let row_label = keys
        .iter()
        .map(|(n, _)| {
            format!(
                "{} OPERATOR(pg_catalog.||) {}::pg_catalog.text",
                quote_literal(format!("{n}=")),
                quote_ident(n)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let row_label = format!("pg_catalog.concat_ws(', ', {row_label})");
    let (last, range, done) = match batch.last() {
        Some(last) => (
            last.clone(),
            format!(
                "{after} AND ROW({key_list}) OPERATOR(pg_catalog.<=) {}",
                key_row(2)
            ),
            false,
        ),
        None => {
            // The end: with the table locked, the rows other sessions wrote meanwhile.
            Spi::run(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).spi()?;
            (position.clone(), "true".to_string(), true)
        }
    };
    let update = format!(
        "WITH u AS (UPDATE {table} SET {} WHERE ({}) AND ({range}) RETURNING {row_label}, {})
         SELECT * FROM u",
        work.set.replace("ROW_LABEL", &row_label),
        work.filter,
        work.check
    );
    let written = rewrite(&update, &position, &last, &work)?;
    if done {
        match job.kind.as_str() {
            "migrate" => super::migrate::finish(&job, &table)?,
            _ => super::moves::finish(&job, &table)?,
        }
    }
    record(id, &last, written.0, written.1, done)
}

/// Run one batch's `UPDATE` and check what it wrote; (rows, bytes).
fn rewrite(
    update: &str,
    from: &[String],
    to: &[String],
    work: &Work,
) -> Result<(i64, i64), OasError> {
    type Row = (String, Option<String>, Option<i64>, Option<JsonB>);
    let rows: Vec<Row> = Spi::connect_mut(|c| {
        c.update(update, None, &[from.to_vec().into(), to.to_vec().into()])?
            .map(|r| {
                Ok((
                    r.get::<String>(1)?.unwrap_or_default(),
                    r.get::<String>(2)?,
                    r.get::<i64>(3)?,
                    r.get::<JsonB>(4)?,
                ))
            })
            .collect::<Result<Vec<Row>, pgrx::spi::SpiError>>()
    })
    .spi()?;
    // The objects this statement wrote are in their stores before they are checked.
    crate::write_behind::flush()?;
    let mut bytes = 0i64;
    let mut objects = Vec::new();
    for (row, md5, size, reference) in &rows {
        let Some(reference) = reference else {
            continue;
        };
        let r = ObjectRef::from_json(&reference.0)?;
        check_value(row, &r, work.store.as_deref(), md5.as_deref(), *size)?;
        bytes += size.or(r.size.map(|s| s as i64)).unwrap_or(0);
        if work.stat {
            objects.push((row.clone(), r));
        }
    }
    stat_objects(objects)?;
    Ok((rows.len() as i64, bytes))
}

/// Each object exists with the size its reference records.
fn stat_objects(objects: Vec<(String, ObjectRef)>) -> Result<(), OasError> {
    let mut stores = std::collections::HashMap::new();
    let mut checks = Vec::with_capacity(objects.len());
    for (row, r) in objects {
        let name = r.store.clone().unwrap_or_default();
        if !stores.contains_key(&name) {
            stores.insert(
                name.clone(),
                crate::catalog::store_to_write(r.store.as_deref().filter(|s| !s.is_empty()))?,
            );
        }
        checks.push((stores[&name].clone(), row, r));
    }
    crate::runtime::block_on(async move {
        use futures::StreamExt;
        let results: Vec<Result<(), OasError>> =
            futures::stream::iter(checks.into_iter().map(|(store, row, r)| async move {
                // As oas_verify checks a reference: a folder has objects under it, a file the
                // size its reference records (when it records one).
                match oas_core::ops::check_reference(&store, &r, false).await? {
                    None => Ok(()),
                    Some(problem) => Err(OasError::IntegrityMismatch {
                        store: store.name.clone(),
                        path: r.path.clone(),
                        reason: format!("row {row}: {problem}"),
                    }),
                }
            }))
            .buffer_unordered(16)
            .collect()
            .await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(drop)
    })
}

/// Record a batch: the new position, the rows and bytes done; `done` ends the job.
fn record(
    id: i64,
    position: &[String],
    rows: i64,
    bytes: i64,
    done: bool,
) -> Result<Value, OasError> {
    let row = as_owner(|| {
        Spi::connect_mut(|c| {
            let r = c.update(
                "UPDATE oas.job SET position = CASE WHEN pg_catalog.cardinality($2) OPERATOR(pg_catalog.=) 0 THEN position ELSE $2 END,
                        rows_done = rows_done OPERATOR(pg_catalog.+) $3,
                        bytes_done = bytes_done OPERATOR(pg_catalog.+) $4,
                        state = CASE WHEN $5 THEN 'done' ELSE state END,
                        updated = pg_catalog.clock_timestamp(),
                        finished = CASE WHEN $5 THEN coalesce(finished, pg_catalog.clock_timestamp()) END
                 WHERE id OPERATOR(pg_catalog.=) $1
                 RETURNING kind, rows_done, GREATEST(rows_total, rows_done), bytes_done,
                           bytes_done OPERATOR(pg_catalog.-) bytes_resumed,
                           pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) resumed)",
                None,
                &[
                    id.into(),
                    position.to_vec().into(),
                    rows.into(),
                    bytes.into(),
                    done.into(),
                ],
            )?;
            let r = r.first();
            Ok::<_, pgrx::spi::SpiError>((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<i64>(2)?.unwrap_or(0),
                r.get::<i64>(3)?.unwrap_or(0),
                r.get::<i64>(4)?.unwrap_or(0),
                r.get::<i64>(5)?.unwrap_or(0),
                r.get::<f64>(6)?.unwrap_or(0.0),
            ))
        })
    })
    .spi()?;
    let (kind, rows_done, total, bytes_done, since_resume, seconds) = row;
    let what = if kind == "move" { "moved" } else { "migrated" };
    let mut progress = progress_text(what, rows_done, total, since_resume, seconds);
    if done {
        progress.push_str(", done");
    }
    Ok(json!({
        "job": id,
        "progress": progress,
        "rows_done": rows_done,
        "bytes_done": bytes_done,
        "done": done,
    }))
}

/// The job `id`, locked until the transaction ends (a second caller waits for this batch),
/// if the current role started it; `None` once it is done (by another call of the same role
/// that ran alongside).
fn load(id: i64) -> Result<Option<Job>, OasError> {
    let me = current_user_name();
    let row = as_owner(|| {
        Spi::connect_mut(|c| {
            let rows = c.update(
                "SELECT kind, table_oid, column_name, work_column, args, batch_rows::pg_catalog.int8, position, role::pg_catalog.text,
                        state OPERATOR(pg_catalog.=) 'done'
                 FROM oas.job WHERE id OPERATOR(pg_catalog.=) $1
                 FOR UPDATE",
                None,
                &[id.into()],
            )?;
            let Some(r) = rows.into_iter().next() else {
                return Ok(None);
            };
            Ok::<_, pgrx::spi::SpiError>(Some((
                Job {
                    id,
                    kind: r.get::<String>(1)?.unwrap_or_default(),
                    table: r.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
                    column: r.get::<String>(3)?.unwrap_or_default(),
                    work_column: r.get::<String>(4)?.unwrap_or_default(),
                    args: r.get::<JsonB>(5)?.map(|j| j.0).unwrap_or(Value::Null),
                    batch_rows: r.get::<i64>(6)?.unwrap_or(100),
                    position: r.get::<Vec<String>>(7)?,
                },
                r.get::<String>(8)?.unwrap_or_default(),
                r.get::<bool>(9)?.unwrap_or(false),
            )))
        })
    })
    .spi()?;
    match row {
        Some((job, role, done)) if role == me => Ok((!done).then_some(job)),
        _ => Err(OasError::PermissionDenied {
            message: format!("job {id} is not a job of role \"{me}\""),
            hint: Some(
                "a job is run by the role that started it: SELECT * FROM oas.job lists yours"
                    .into(),
            ),
        }),
    }
}

/// The running job of `column` of `table`: (id, kind, role, args).
pub(crate) fn running(
    table: pg_sys::Oid,
    column: &str,
) -> Result<Option<(i64, String, String, Value)>, OasError> {
    // One start per table at a time: two first calls do not both create a job.
    Spi::get_one_with_args::<bool>(
        "SELECT true FROM pg_catalog.pg_advisory_xact_lock($1, $2::pg_catalog.oid::pg_catalog.int4)",
        &[JOB_CLASS.into(), table.into()],
    )
    .spi()?;
    as_owner(|| {
        Spi::connect(|c| {
            let rows = c.select(
                "SELECT id, kind, role::pg_catalog.text, args FROM oas.job
                 WHERE table_oid OPERATOR(pg_catalog.=) $1 AND column_name OPERATOR(pg_catalog.=) $2
                   AND state OPERATOR(pg_catalog.=) 'running'",
                None,
                &[table.into(), column.into()],
            )?;
            match rows.into_iter().next() {
                None => Ok(None),
                Some(r) => Ok::<_, pgrx::spi::SpiError>(Some((
                    r.get::<i64>(1)?.unwrap_or(0),
                    r.get::<String>(2)?.unwrap_or_default(),
                    r.get::<String>(3)?.unwrap_or_default(),
                    r.get::<JsonB>(4)?.map(|j| j.0).unwrap_or(Value::Null),
                ))),
            }
        })
    })
    .spi()
}

/// A running job of another role on the column refuses; one of the caller's with other
/// arguments too. The caller's job with the same arguments resumes: its id, its batch size set
/// to `batch_rows`.
pub(crate) fn resume(
    found: (i64, String, String, Value),
    kind: &str,
    same: impl Fn(&Value) -> bool,
    batch_rows: i64,
) -> Result<i64, OasError> {
    let (id, found_kind, role, args) = found;
    if role != current_user_name() {
        return Err(OasError::PermissionDenied {
            message: format!("the column has a running job of another role (job {id})"),
            hint: Some("that role resumes it; a column has one job at a time".into()),
        });
    }
    if found_kind != kind || !same(&args) {
        return Err(OasError::invalid_argument_hint(
            format!(
                "the column has a running {found_kind} job with other arguments (job {id}): {args}"
            ),
            "call again with the arguments of that job to resume it (SELECT * FROM oas.job)",
        ));
    }
    as_owner(|| {
        Spi::run_with_args(
            "UPDATE oas.job SET batch_rows = $2, resumed = pg_catalog.clock_timestamp(), bytes_resumed = bytes_done
             WHERE id OPERATOR(pg_catalog.=) $1",
            &[id.into(), (batch_rows as i32).into()],
        )
    })
    .spi()?;
    Ok(id)
}

/// A new job row for the current role; its id.
pub(crate) fn create(
    kind: &str,
    table: pg_sys::Oid,
    column: &str,
    work_column: &str,
    args: &Value,
    batch_rows: i64,
    rows_total: i64,
) -> Result<i64, OasError> {
    let role = current_user_name();
    as_owner(|| {
        Spi::get_one_with_args::<i64>(
            "INSERT INTO oas.job (kind, table_oid, column_name, work_column, args, batch_rows, rows_total, role)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::pg_catalog.name) RETURNING id",
            &[
                kind.into(),
                table.into(),
                column.into(),
                work_column.into(),
                JsonB(args.clone()).into(),
                (batch_rows as i32).into(),
                rows_total.into(),
                role.into(),
            ],
        )
    })
    .spi()?
    .ok_or_else(|| OasError::Internal("no job id".into()))
}

/// The table's name as SQL names it (schema-qualified).
pub(crate) fn table_name(table: pg_sys::Oid) -> Result<String, OasError> {
    pinned(|| {
        Spi::get_one_with_args::<String>(
            "SELECT $1::pg_catalog.regclass::pg_catalog.text",
            &[table.into()],
        )
    })
    .spi()?
    .ok_or_else(|| OasError::invalid_argument(format!("table {table:?} does not exist")))
}

/// The table's primary key: each column's name and type, in key order. A table without one
/// refuses (55000): a job walks the table by its key.
pub(crate) fn primary_key(
    table: pg_sys::Oid,
    label: &str,
) -> Result<Vec<(String, String)>, OasError> {
    let keys: Vec<(String, String)> = pinned(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT a.attname::pg_catalog.text, pg_catalog.format_type(a.atttypid, a.atttypmod)
                 FROM pg_catalog.pg_index i,
                      pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY k(attnum, n),
                      pg_catalog.pg_attribute a
                 WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisprimary
                   AND a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                   AND a.attnum OPERATOR(pg_catalog.=) k.attnum
                 ORDER BY k.n",
                None,
                &[table.into()],
            )?
            .map(|r| {
                Ok((
                    r.get::<String>(1)?.unwrap_or_default(),
                    r.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
        })
    })
    .spi()?;
    if keys.is_empty() {
        return Err(OasError::Prerequisite {
            message: format!("table {label} has no primary key"),
            hint: Some("a job rewrites a table in batches by its primary key: ALTER TABLE ... ADD PRIMARY KEY (...) first (DataJoint tables always have one)".into()),
        });
    }
    Ok(keys)
}

/// Only the table's owner (or a member of its owning role) runs a job on it: a job alters it.
pub(crate) fn require_owner(table: pg_sys::Oid, label: &str) -> Result<(), OasError> {
    let owner = pinned(|| {
        crate::spi::read_one::<bool>(
            "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c
             WHERE c.oid OPERATOR(pg_catalog.=) $1",
            &[table.into()],
        )
    })
    .spi()?;
    if owner == Some(true) {
        return Ok(());
    }
    Err(OasError::PermissionDenied {
        message: format!("must be the owner of table {label} to migrate or move its columns"),
        hint: Some(
            "a job alters the table (columns, comments, a trigger): its owner runs it".into(),
        ),
    })
}

/// The comment of `column` of `table`, and whether it is NOT NULL, and its type.
pub(crate) fn column_info(
    table: pg_sys::Oid,
    column: &str,
    label: &str,
) -> Result<(String, String, bool), OasError> {
    let row = pinned(|| {
        Spi::connect(|c| {
            let rows = c.select(
                "SELECT pg_catalog.format_type(a.atttypid, NULL), coalesce(pg_catalog.col_description(a.attrelid, a.attnum), ''), a.attnotnull
                 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2
                   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
                None,
                &[table.into(), column.into()],
            )?;
            match rows.into_iter().next() {
                None => Ok(None),
                Some(r) => Ok::<_, pgrx::spi::SpiError>(Some((
                    r.get::<String>(1)?.unwrap_or_default(),
                    r.get::<String>(2)?.unwrap_or_default(),
                    r.get::<bool>(3)?.unwrap_or(false),
                ))),
            }
        })
    })
    .spi()?;
    row.ok_or_else(|| {
        OasError::invalid_argument(format!(
            "column \"{column}\" of table {label} does not exist"
        ))
    })
}

/// Does `column` exist in `table`?
pub(crate) fn has_column(table: pg_sys::Oid, column: &str) -> Result<bool, OasError> {
    Ok(pinned(|| {
        crate::spi::read_one::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute a
             WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2
               AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)",
            &[table.into(), column.into()],
        )
    })
    .spi()?
    .unwrap_or(false))
}
