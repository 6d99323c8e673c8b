//! The garbage collector: `oas_gc()`, `oas_gc_restore()`, `oas_gc_purge()`, and the check the
//! reference triggers call before a new reference commits. The SQL functions are here; each
//! phase has a file, and the pure decisions are in `oas_core::gc`.
//!
//! One run per store, in this order (docs/gc-design.md has the reasoning):
//! 1. [`mark`]: read every reference of every tracked column into a `RefSet` per store;
//! 2. [`trash`]: put back trashed objects that are referenced again, record and purge the rest;
//! 3. [`list`]: walk the hash and schema sections of the schemas this database knows, and record
//!    every unreferenced object as a candidate with the time it was first seen so;
//! 4. [`collect`]: move candidates past the grace period, older than every running transaction,
//!    whose lock stripes are free and which the ledger shows no new reference to, to trash;
//! 5. sweep abandoned staging files ([`collect`]) and compact the ledger ([`ledger`]).
//!
//! Before it starts, a run warns when trash retention is too short for a point-in-time
//! recovery ([`pitr`]); [`ledger`] also has `oas_ledger_rebuild()`.
//!
//! A store whose listing fails, or some of whose references cannot be read, gets a report and no
//! deletion. Nothing under `filepath_prefix` is ever listed. The locks are in `super::locks`.

mod collect;
mod ledger;
mod list;
mod mark;
mod pitr;
mod trash;

use oas_core::gc::{self, Report};
use oas_core::OasError;
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;

use super::locks::{lock_run, try_lock_run};
use crate::catalog;
use crate::error::{OrRaise, SpiOk};
use crate::privilege::{as_owner, require_collector, require_primary, require_writable};
use crate::runtime::block_on;

/// Objects moved per lock/veto/record round.
const BATCH: usize = 1_000;
/// Listed objects buffered before they are recorded.
const CHUNK: usize = 10_000;
/// Store requests in flight while moving objects.
const PARALLEL: usize = 16;

/// Collect unreferenced objects. Dry run by default: nothing is written or moved, and the
/// report says what a real run would do now. A real run moves objects that have been
/// unreferenced for `grace` (default `oas.gc_grace`, 1 day) to `_oas/trash/`, puts back trashed
/// objects that are referenced again, and purges trash older than `trash_retention` (default
/// `oas.gc_trash_retention`, 7 days). One row per store.
#[allow(clippy::type_complexity)] // pgrx needs the row type spelled out here
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_gc(
    dry_run: default!(Option<bool>, true),
    store: default!(Option<&str>, "NULL"),
    grace: default!(Option<Interval>, "NULL"),
    trash_retention: default!(Option<Interval>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(store, String),
        name!(dry_run, bool),
        name!(run_id, Option<i64>),
        name!(referenced, i64),
        name!(referenced_bytes, i64),
        name!(stored, i64),
        name!(stored_bytes, i64),
        name!(orphaned, i64),
        name!(orphaned_bytes, i64),
        name!(waiting, i64),
        name!(trashed, i64),
        name!(trashed_bytes, i64),
        name!(restored, i64),
        name!(purged, i64),
        name!(purged_bytes, i64),
        name!(staging_removed, i64),
        name!(skipped, i64),
        name!(errors, Vec<String>),
    ),
> {
    let (dry_run, reports) = run(dry_run, store, grace, trash_retention).or_raise();
    TableIterator::new(reports.into_iter().map(move |r| {
        (
            r.store,
            dry_run,
            r.run_id,
            r.referenced,
            r.referenced_bytes,
            r.stored,
            r.stored_bytes,
            r.orphaned,
            r.orphaned_bytes,
            r.waiting,
            r.trashed,
            r.trashed_bytes,
            r.restored,
            r.purged,
            r.purged_bytes,
            r.staging_removed,
            r.skipped,
            r.errors,
        )
    }))
}

/// The message of a store a running collector keeps this run out of.
const BUSY: &str =
    "another oas_gc(), oas_gc_restore() or oas_gc_purge() is running on this store; nothing was done";

/// The message of a read-only store (an archive), which the collector leaves alone.
const READ_ONLY: &str =
    "the store is read-only (oas_store_read_only): nothing is moved or deleted in it";

/// `oas_gc` past its arguments: whether it was a dry run, and one report per store.
fn run(
    dry_run: Option<bool>,
    store: Option<&str>,
    grace: Option<Interval>,
    trash_retention: Option<Interval>,
) -> Result<(bool, Vec<Report>), OasError> {
    require_collector()?;
    // A dry run only reads, but the collector's report is the primary's (its running
    // transactions, its claim on each location).
    require_primary("run the collector (oas_gc(), a dry run too)")?;
    require_current_catalog("oas_gc()")?;
    let dry_run = dry_run.ok_or(OasError::NullArgument("dry_run"))?;
    if !dry_run {
        require_writable("collect garbage (oas_gc(dry_run => false))")?;
        require_read_committed("oas_gc(dry_run => false)")?;
    }
    let grace = seconds(grace, crate::guc::gc_grace_s(), "grace")?;
    let retention = seconds(
        trash_retention,
        crate::guc::gc_trash_retention_s(),
        "trash_retention",
    )?;
    pitr::warn_if_short(retention)?;
    let names: Vec<String> = match store {
        Some(s) => vec![catalog::store_row_unchecked(Some(s))?.name],
        None => store_names()?,
    };
    let mut reports = reports_for(&names);
    for r in reports.iter_mut() {
        if catalog::store_row_unchecked(Some(&r.store))?.read_only {
            r.refuse(READ_ONLY.into());
        } else if !try_lock_run(&r.store)? {
            r.refuse(BUSY.into());
        }
    }
    // Whatever references commit from here on are in the ledger and veto their objects' moves.
    let snapshot = Spi::get_one::<String>("SELECT pg_catalog.pg_current_snapshot()::text")
        .spi()?
        .unwrap_or_default();
    // A table with row security must be read whole or not at all, never filtered.
    let row_security = Spi::get_one::<String>("SELECT current_setting('row_security')")
        .spi()?
        .unwrap_or_else(|| "on".into());
    Spi::run("SELECT pg_catalog.set_config('row_security', 'off', true)").spi()?;
    let mut sets = mark::mark(&mut reports)?;
    // The references were read as the caller (its privileges decide what it could see); the
    // collector's own tables are written by the extension's owner only.
    as_owner(|| {
        for r in reports.iter_mut() {
            if r.errors.iter().any(|e| e == BUSY || e == READ_ONLY) {
                continue;
            }
            let refs = sets.remove(&r.store).unwrap_or_default();
            collect::collect_store(r, &refs, dry_run, grace, retention, &snapshot)?;
        }
        Ok::<_, OasError>(())
    })?;
    // A store that could not be read whole (down, refusing, ...): the report's errors say why;
    // the session is told too, as the result is easy to overlook in a scheduled job.
    for r in reports
        .iter()
        .filter(|r| r.refuse && r.errors.iter().all(|e| e != READ_ONLY))
    {
        pgrx::warning!(
            "oas_gc: store \"{}\": nothing was deleted: {}",
            r.store,
            r.errors.first().map(String::as_str).unwrap_or_default()
        );
    }
    Spi::run_with_args(
        "SELECT pg_catalog.set_config('row_security', $1, true)",
        &[row_security.as_str().into()],
    )
    .spi()?;
    Ok((dry_run, reports))
}

/// Put back objects a run moved to trash: all of run `run_id`, or the one object `path`.
/// Returns the paths restored.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_gc_restore(
    run_id: i64,
    path: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(store, String), name!(path, String))> {
    let restored = (|| {
        require_collector()?;
        require_writable("restore objects from trash")?;
        // It waits for a running collector: under a snapshot older than that run it would not
        // see what the run recorded.
        require_read_committed("oas_gc_restore()")?;
        // The collector's tables are written by the extension's owner only.
        as_owner(|| trash::restore(run_id, path))
    })()
    .or_raise();
    TableIterator::new(restored)
}

/// Delete trash older than `older_than` (default `oas.gc_trash_retention`) now. `oas_gc()` does
/// this on every real run. Returns objects and bytes purged per store.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_gc_purge(
    older_than: default!(Option<Interval>, "NULL"),
    store: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(store, String),
        name!(purged, i64),
        name!(purged_bytes, i64),
    ),
> {
    TableIterator::new(purge(older_than, store).or_raise())
}

/// `oas_gc_purge` past its arguments.
fn purge(
    older_than: Option<Interval>,
    store: Option<&str>,
) -> Result<Vec<(String, i64, i64)>, OasError> {
    require_collector()?;
    require_writable("purge trash")?;
    require_read_committed("oas_gc_purge()")?;
    let retention = seconds(older_than, crate::guc::gc_trash_retention_s(), "older_than")?;
    let mut names: Vec<String> = Spi::connect(|c| {
        c.select(
            "SELECT DISTINCT store FROM oas.gc_trash WHERE $1::text IS NULL OR store = $1 ORDER BY 1",
            None,
            &[store.into()],
        )?
        .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
        .collect::<Result<Vec<_>, _>>()
    })
    .spi()?;
    // A read-only store's trash stays as it is.
    names.retain(|n| !matches!(catalog::store_row_unchecked(Some(n)), Ok(r) if r.read_only));
    // Never purge what a row references again: read the references first (once no collector
    // is changing the trash).
    for name in &names {
        lock_run(name)?;
    }
    let mut reports = reports_for(&names);
    let sets = mark::mark(&mut reports)?;
    // References read as the caller; the trash records are written by the extension's owner.
    as_owner(|| trash::purge(reports, &sets, retention))
}

/// Called by the reference triggers for an object that gains a reference while it may be in
/// trash: when it is missing from its place and present in trash, it is moved back. Returns
/// `present`, `restored` or `missing`. Never deletes anything.
#[pg_extern(volatile, parallel_unsafe, name = "_gc_ensure_present")]
#[search_path(pg_catalog, pg_temp)]
fn gc_ensure_present(store: &str, path: &str) -> String {
    trash::ensure_present(store, path).or_raise().into()
}

/// Every configured store's name, in order.
fn store_names() -> Result<Vec<String>, OasError> {
    Spi::connect(|c| {
        c.select("SELECT name FROM oas.store ORDER BY name", None, &[])?
            .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
    })
    .spi()
}

/// An empty report per store.
fn reports_for(names: &[String]) -> Vec<Report> {
    names.iter().map(|n| Report::new(n)).collect()
}

/// The collector uses SQL of this version (`oas._tracked_refs`, `oas._reference`): between
/// installing a new library and `ALTER EXTENSION pg_oas UPDATE` it refuses to run rather than
/// guess with an older catalog.
fn require_current_catalog(what: &str) -> Result<(), OasError> {
    let catalog = Spi::get_one::<String>(
        "SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_oas'",
    )
    .spi()?
    .unwrap_or_default();
    let library = env!("CARGO_PKG_VERSION");
    if catalog != library {
        return Err(OasError::CatalogOutdated {
            catalog,
            library: library.into(),
            what: what.into(),
        });
    }
    Ok(())
}

/// The collector's checks need a new snapshot per statement: the ledger veto must see what
/// committed after the scan.
/// `what` moves or deletes objects and must see what the runs it waited for committed.
fn require_read_committed(what: &str) -> Result<(), OasError> {
    let level = Spi::get_one::<String>("SELECT current_setting('transaction_isolation')")
        .spi()?
        .unwrap_or_default();
    if level != "read committed" {
        return Err(OasError::invalid_argument_hint(
            format!("{what} cannot run at isolation level {level}"),
            "run it at READ COMMITTED (the default), outside a REPEATABLE READ or SERIALIZABLE transaction",
        ));
    }
    Ok(())
}

/// The seconds of an interval argument (`default_s` when NULL); a negative one is refused.
fn seconds(given: Option<Interval>, default_s: f64, what: &str) -> Result<f64, OasError> {
    let s = given.map_or(default_s, crate::api::interval_seconds);
    if s < 0.0 {
        return Err(OasError::invalid_argument(format!(
            "{what} must not be negative"
        )));
    }
    Ok(s)
}

/// Run `f` in a memory context of its own, deleted when it returns. Each batch builds SPI
/// argument arrays (10 000 paths are about 1.5 MB) in the current context, which for a
/// set-returning function lives until the call ends: without this, a run over a million objects
/// kept 150 MB of them. `f` must return nothing allocated by PostgreSQL.
fn in_scratch<R>(f: impl FnOnce() -> R) -> R {
    let mut cx = PgMemoryContexts::new("oas_gc batch");
    // SAFETY: `cx` is a fresh child of the current context; it becomes current only while `f`
    // runs, and `f` returns Rust-owned values. Dropping `cx` deletes it, also on an error.
    unsafe { cx.switch_to(|_| f()) }
}

/// One page of `(path, size)` rows from a keyset query whose parameters are
/// `(store, after_path, <number>, limit)`.
fn path_size_page(
    query: &str,
    store: &str,
    after: &str,
    number: f64,
) -> Result<Vec<(String, i64)>, OasError> {
    Spi::connect(|c| {
        c.select(
            query,
            None,
            &[
                store.into(),
                after.into(),
                number.into(),
                (BATCH as i64).into(),
            ],
        )?
        .map(|row| {
            Ok((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<i64>(2)?.unwrap_or(0),
            ))
        })
        .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .spi()
}

/// Move each `(from, to)` pair in `store`, [`PARALLEL`] at a time, noting the folders to sync.
fn move_objects(
    store: &oas_core::backend::Store,
    moves: &[(String, String)],
    syncs: &mut gc::FolderSyncs,
) -> Result<Vec<Result<(), OasError>>, OasError> {
    block_on(gc::move_objects(store, moves, PARALLEL, syncs))
}
