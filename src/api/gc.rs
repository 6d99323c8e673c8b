//! The garbage collector: `oas_gc()`, `oas_gc_restore()`, `oas_gc_purge()`, and the check the
//! reference triggers call before a new reference commits.
//!
//! One run per store, in this order (docs/gc-design.md has the reasoning):
//! 1. **mark**: read every reference of every tracked column into a [`RefSet`] per store;
//! 2. **trash**: put back trashed objects that are referenced again, record and purge the rest;
//! 3. **list**: walk the hash and schema sections of the schemas this database knows, and record
//!    every unreferenced object as a candidate with the time it was first seen so;
//! 4. **collect**: move candidates past the grace period, older than every running transaction,
//!    whose lock stripes are free and which the ledger shows no new reference to, to trash;
//! 5. sweep abandoned staging files and compact the ledger.
//!
//! A store whose listing fails, or some of whose references cannot be read, gets a report and no
//! deletion. Nothing under `filepath_prefix` is ever listed.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use futures::stream::{self, StreamExt};
use oas_core::backend::Store;
use oas_core::gc::{
    self, is_hash_object, owner_path, reference_paths, schema_of, section_prefix, trash_key,
    untrash_key, FolderSyncs, RefSet, Section, STAGING_PREFIX, TRASH_PREFIX,
};
use oas_core::OasError;
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;

use super::locks::{lock_keys, RUN_CLASS, STRIPE_CLASS};
use crate::catalog;
use crate::error::{raise, required, OrRaise};
use crate::privilege::{as_owner, require_collector};
use crate::runtime::block_on;

/// Objects moved per lock/veto/record round.
const BATCH: usize = 1_000;
/// Listed objects buffered before they are recorded.
const CHUNK: usize = 10_000;
/// Store requests in flight while moving objects.
const PARALLEL: usize = 16;

#[derive(Debug, Default)]
struct Report {
    store: String,
    run_id: Option<i64>,
    referenced: i64,
    referenced_bytes: i64,
    stored: i64,
    stored_bytes: i64,
    orphaned: i64,
    orphaned_bytes: i64,
    waiting: i64,
    trashed: i64,
    trashed_bytes: i64,
    restored: i64,
    purged: i64,
    purged_bytes: i64,
    staging_removed: i64,
    skipped: i64,
    errors: Vec<String>,
    /// Nothing may be deleted in this store in this run.
    refuse: bool,
}

/// Every configured store's name, in order.
fn store_names() -> Vec<String> {
    Spi::connect(|c| {
        c.select("SELECT name FROM oas.store ORDER BY name", None, &[])?
            .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
    })
    .or_raise()
}

/// An empty report per store.
fn reports_for(names: &[String]) -> Vec<Report> {
    names
        .iter()
        .map(|n| Report {
            store: n.clone(),
            ..Report::default()
        })
        .collect()
}

impl Report {
    fn refuse(&mut self, why: String) {
        self.refuse = true;
        self.errors.push(why);
    }
}

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
    require_collector().or_raise();
    let dry_run = required(dry_run, "dry_run");
    if !dry_run {
        require_read_committed("oas_gc(dry_run => false)");
    }
    let grace = seconds(grace, crate::guc::gc_grace_s(), "grace");
    let retention = seconds(
        trash_retention,
        crate::guc::gc_trash_retention_s(),
        "trash_retention",
    );
    let names: Vec<String> = match store {
        Some(s) => vec![catalog::store_row_unchecked(Some(s)).or_raise().name],
        None => store_names(),
    };
    let mut reports = reports_for(&names);
    for r in reports.iter_mut() {
        if !try_lock_run(&r.store) {
            r.refuse(
                "another oas_gc(), oas_gc_restore() or oas_gc_purge() is running on this store; nothing was done"
                    .into(),
            );
        }
    }
    // Whatever references commit from here on are in the ledger and veto their objects' moves.
    let snapshot = Spi::get_one::<String>("SELECT pg_catalog.pg_current_snapshot()::text")
        .or_raise()
        .unwrap_or_default();
    // A table with row security must be read whole or not at all, never filtered.
    let row_security = Spi::get_one::<String>("SELECT current_setting('row_security')")
        .or_raise()
        .unwrap_or_else(|| "on".into());
    Spi::run("SELECT pg_catalog.set_config('row_security', 'off', true)").or_raise();
    let mut sets = mark(&mut reports);
    // The references were read as the caller (its privileges decide what it could see); the
    // collector's own tables are written by the extension's owner only.
    as_owner(|| {
        for r in reports.iter_mut() {
            if r.errors.iter().any(|e| e.starts_with("another oas_gc()")) {
                continue;
            }
            let refs = sets.remove(&r.store).unwrap_or_default();
            collect_store(r, &refs, dry_run, grace, retention, &snapshot);
        }
    });
    Spi::run_with_args(
        "SELECT pg_catalog.set_config('row_security', $1, true)",
        &[row_security.as_str().into()],
    )
    .or_raise();
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

/// Put back objects a run moved to trash: all of run `run_id`, or the one object `path`.
/// Returns the paths restored.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_gc_restore(
    run_id: i64,
    path: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(store, String), name!(path, String))> {
    require_collector().or_raise();
    // It waits for a running collector: under a snapshot older than that run it would not see
    // what the run recorded.
    require_read_committed("oas_gc_restore()");
    // The collector's tables are written by the extension's owner only.
    TableIterator::new(as_owner(|| restore(run_id, path)))
}

/// `oas_gc_restore` past its checks: the paths put back, per store.
fn restore(run_id: i64, path: Option<&str>) -> Vec<(String, String)> {
    let stores: Vec<String> = Spi::connect(|c| {
        c.select(
            "SELECT DISTINCT store FROM oas.gc_trash
             WHERE run_id = $1 AND ($2::text IS NULL OR path = $2) ORDER BY 1",
            None,
            &[run_id.into(), path.into()],
        )?
        .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
        .collect::<Result<Vec<_>, _>>()
    })
    .or_raise();
    if stores.is_empty() {
        raise(OasError::invalid_argument_hint(
            format!(
                "nothing in trash for run {run_id}{}",
                path.map(|p| format!(" and path \"{p}\""))
                    .unwrap_or_default()
            ),
            "SELECT run_id, store, path FROM oas.gc_trash lists what can be restored",
        ));
    }
    let mut done: Vec<(String, String)> = Vec::new();
    let (mut failed, mut first_error, mut stopped) = (0usize, None::<OasError>, false);
    for name in stores {
        let store = catalog::store_unchecked(Some(&name)).or_raise();
        lock_run(&name);
        let mut last = String::new();
        let mut syncs = FolderSyncs::default();
        while let Some(page) =
            in_scratch(|| restore_page(&store, run_id, path, &mut last, &mut syncs))
        {
            failed += page.failed;
            if first_error.is_none() {
                first_error = page.error;
            }
            // A page where nothing could be moved back: the store is failing; stop here.
            stopped = page.paths.is_empty();
            done.extend(page.paths.into_iter().map(|p| (name.clone(), p)));
            if stopped {
                break;
            }
            pgrx::check_for_interrupts!();
        }
        syncs.sync(&store).or_raise();
        if stopped {
            break;
        }
    }
    if let Some(e) = first_error {
        pgrx::warning!(
            "oas_gc_restore: run {run_id}: {failed} object(s) could not be moved back{} and stay in trash; \
             the {} restored are returned; calling oas_gc_restore({run_id}) again retries the rest. First error: {e}",
            if stopped { " (then it stopped)" } else { "" },
            done.len()
        );
    }
    done
}

/// What [`restore_page`] did: the paths restored, and how many could not be moved back (with
/// the first error).
struct RestoredPage {
    paths: Vec<String>,
    failed: usize,
    error: Option<OasError>,
}

/// Restore the next page of run `run_id` in `store` (after the path `last`), in parallel, and
/// drop the trash records of what was restored; `None` when nothing is left.
fn restore_page(
    store: &Store,
    run_id: i64,
    path: Option<&str>,
    last: &mut String,
    syncs: &mut FolderSyncs,
) -> Option<RestoredPage> {
    // A page of the run in path order, or the one object asked for (already done once `last`
    // is set): two statements, each with a plan of its own.
    let (query, args): (&str, Vec<pgrx::datum::DatumWithOid>) = match path {
        None => (
            "SELECT path FROM oas.gc_trash
             WHERE run_id = $2 AND store = $1 AND path > $3 ORDER BY path LIMIT $4",
            vec![
                store.name.as_str().into(),
                run_id.into(),
                last.as_str().into(),
                (BATCH as i64).into(),
            ],
        ),
        Some(p) if last.is_empty() => (
            "SELECT path FROM oas.gc_trash WHERE run_id = $2 AND store = $1 AND path = $3",
            vec![store.name.as_str().into(), run_id.into(), p.into()],
        ),
        Some(_) => return None,
    };
    let page: Vec<String> = Spi::connect(|c| {
        c.select(query, None, &args)?
            .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
    })
    .or_raise();
    *last = page.last()?.clone();
    let moves: Vec<(String, String)> = page.iter().map(|p| (trash_key(p), p.clone())).collect();
    let results = block_on(gc::move_objects(store, &moves, PARALLEL, syncs)).or_raise();
    let mut out = RestoredPage {
        paths: Vec::new(),
        failed: 0,
        error: None,
    };
    for (p, res) in page.into_iter().zip(results) {
        match res {
            // Missing from trash: already put back for a new reference, or purged.
            Ok(()) | Err(OasError::ObjectMissing { .. }) => out.paths.push(p),
            Err(e) => {
                out.failed += 1;
                out.error.get_or_insert(e);
            }
        }
    }
    drop_trash_records(&store.name, out.paths.clone());
    Some(out)
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
    require_collector().or_raise();
    require_read_committed("oas_gc_purge()");
    let retention = seconds(older_than, crate::guc::gc_trash_retention_s(), "older_than");
    let names: Vec<String> = Spi::connect(|c| {
        c.select(
            "SELECT DISTINCT store FROM oas.gc_trash WHERE $1::text IS NULL OR store = $1 ORDER BY 1",
            None,
            &[store.into()],
        )?
        .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
        .collect::<Result<Vec<_>, _>>()
    })
    .or_raise();
    // Never purge what a row references again: read the references first (once no collector
    // is changing the trash).
    for name in &names {
        lock_run(name);
    }
    let mut reports = reports_for(&names);
    let sets = mark(&mut reports);
    // References read as the caller; the trash records are written by the extension's owner.
    TableIterator::new(as_owner(|| purge(reports, &sets, retention)))
}

/// `oas_gc_purge` past its checks and marking: objects and bytes purged per store.
fn purge(
    reports: Vec<Report>,
    sets: &HashMap<String, RefSet>,
    retention: f64,
) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for mut r in reports {
        let name = r.store.clone();
        if r.refuse {
            pgrx::warning!(
                "oas_gc_purge: store \"{name}\": nothing purged: {}",
                r.errors.join("; ")
            );
            out.push((name, 0, 0));
            continue;
        }
        let s = catalog::store_unchecked(Some(&name)).or_raise();
        purge_recorded(&mut r, &s, retention, false, sets.get(&name));
        if let Some(e) = r.errors.first() {
            pgrx::warning!("oas_gc_purge: store \"{name}\": {e}");
        }
        out.push((name, r.purged, r.purged_bytes));
    }
    out
}

/// Called by the reference triggers for an object that gains a reference while it may be in
/// trash: when it is missing from its place and present in trash, it is moved back. Returns
/// `present`, `restored` or `missing`. Never deletes anything.
#[pg_extern(volatile, parallel_unsafe, name = "_gc_ensure_present")]
#[search_path(pg_catalog, pg_temp)]
fn gc_ensure_present(store: &str, path: &str) -> String {
    let Ok(s) = catalog::store_unchecked(Some(store)) else {
        return "missing".into();
    };
    // Whatever of it is in trash goes back, even when something is still in place: a folder
    // may have been moved in part.
    let restored = block_on(gc::restore_from_trash(&s, path)).or_raise();
    if restored.is_empty() {
        return if block_on(gc::exists(&s, path)).or_raise() {
            "present".into()
        } else {
            "missing".into()
        };
    }
    Spi::run_with_args(
        "DELETE FROM oas.gc_trash WHERE store = $1 AND (ref_path = $2 OR path = ANY($3))",
        &[store.into(), path.into(), restored.into()],
    )
    .or_raise();
    pgrx::notice!(
        "pg_oas: object \"{path}\" of store \"{store}\" was in trash and has been put back for the new reference"
    );
    "restored".into()
}

/// The collector's checks need a new snapshot per statement: the ledger veto must see what
/// committed after the scan.
/// `what` moves or deletes objects and must see what the runs it waited for committed.
fn require_read_committed(what: &str) {
    let level = Spi::get_one::<String>("SELECT current_setting('transaction_isolation')")
        .or_raise()
        .unwrap_or_default();
    if level != "read committed" {
        raise(OasError::invalid_argument_hint(
            format!("{what} cannot run at isolation level {level}"),
            "run it at READ COMMITTED (the default), outside a REPEATABLE READ or SERIALIZABLE transaction",
        ));
    }
}

fn seconds(given: Option<Interval>, default_s: f64, what: &str) -> f64 {
    let s = match given {
        None => default_s,
        Some(iv) => Spi::get_one_with_args::<f64>(
            "SELECT extract(epoch FROM $1::interval)::float8",
            &[iv.into()],
        )
        .or_raise()
        .unwrap_or(0.0),
    };
    if s < 0.0 {
        raise(OasError::invalid_argument(format!(
            "{what} must not be negative"
        )));
    }
    s
}

fn store_key(store: &str) -> i32 {
    Spi::get_one_with_args::<i32>("SELECT pg_catalog.hashtext($1)", &[store.into()])
        .or_raise()
        .unwrap_or(0)
}

/// One collector per store at a time; the lock lasts until this transaction ends, so the
/// triggers see a collector as running until its records are visible.
fn try_lock_run(store: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_try_advisory_xact_lock($1, $2)",
        &[RUN_CLASS.into(), store_key(store).into()],
    )
    .or_raise()
    .unwrap_or(false)
}

/// Wait for the store's collector, if one is running, and keep others out until this
/// transaction ends: restore and purge must not act on trash a run is changing.
fn lock_run(store: &str) {
    lock_keys(
        RUN_CLASS,
        &[store_key(store)],
        false,
        &format!("of the collector of store \"{store}\""),
    );
}

// ---------------------------------------------------------------------------------------------
// Mark

struct Column {
    oid: pg_sys::Oid,
    name: String,
    label: String,
    resolved_store: Option<String>,
    readable: bool,
}

/// Every reference of every tracked column, per store. The schemas a reference names are not
/// recorded: a reference is what a user typed, and must never make this database collect
/// another database's section of a shared store (see `collect_store`).
fn mark(reports: &mut [Report]) -> HashMap<String, RefSet> {
    // References are collected per physical location: every store name of a location counts.
    let all_stores = store_names();
    let mut ident: HashMap<String, String> = HashMap::new();
    for name in all_stores {
        if let Ok(s) = catalog::store_unchecked(Some(&name)) {
            ident.insert(name.clone(), gc::location_identity(&s.spec));
        }
    }
    let wanted: HashSet<String> = reports
        .iter()
        .filter_map(|r| ident.get(&r.store).cloned())
        .collect();
    let columns: Vec<Column> = Spi::connect(|c| {
        c.select(
            "SELECT table_oid::oid, column_name, format('%I.%I.%I', schema_name, table_name, column_name),
                    resolved_store, pg_catalog.has_table_privilege(table_oid, 'SELECT')
                        AND NOT pg_catalog.row_security_active(table_oid)
             FROM oas.tracked_columns WHERE addressing <> 'filepath'
             ORDER BY schema_name, table_name, column_name",
            None,
            &[],
        )?
        .map(|r| {
            Ok(Column {
                oid: r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                name: r.get::<String>(2)?.unwrap_or_default(),
                label: r.get::<String>(3)?.unwrap_or_default(),
                resolved_store: r.get::<String>(4)?,
                readable: r.get::<bool>(5)?.unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .or_raise();
    let mut sets: HashMap<String, RefSet> = HashMap::new();
    let mut problems: Vec<(Option<String>, String)> = Vec::new();
    // References to stores this database cannot resolve may point anywhere, ours included.
    let mut unknown: HashSet<String> = HashSet::new();
    // Other sessions' temporary tables cannot be read, and may hold references.
    let foreign_temp = Spi::get_one::<i64>(
        "SELECT count(*) FROM pg_catalog.pg_description d
         JOIN pg_catalog.pg_class c ON d.classoid = 'pg_catalog.pg_class'::regclass AND d.objoid = c.oid
         WHERE d.objsubid > 0 AND c.relpersistence = 't' AND c.relnamespace <> pg_catalog.pg_my_temp_schema()
           AND EXISTS (SELECT 1 FROM oas.oas_parse_marker(d.description))",
    )
    .or_raise()
    .unwrap_or(0);
    if foreign_temp > 0 {
        problems.push((
            None,
            format!("{foreign_temp} column(s) of other sessions' temporary tables may hold references: nothing is deleted"),
        ));
    }
    for col in &columns {
        if !col.readable {
            problems.push((
                None,
                format!(
                    "cannot read {} (no SELECT privilege, or row security applies): nothing is deleted",
                    col.label
                ),
            ));
            continue;
        }
        let query = format!(
            "SELECT coalesce(nullif(c->>'store', ''), {default}), c->>'path',
                    CASE WHEN jsonb_typeof(c->'size') = 'number' AND (c->>'size')::numeric BETWEEN 0 AND 9e18
                         THEN (c->>'size')::numeric::int8 END
             FROM (SELECT {col} AS c FROM {rel}) t
             WHERE c IS NOT NULL AND c <> 'null'::jsonb",
            col = quote_ident(&col.name),
            rel = regclass_text(col.oid),
            default = col
                .resolved_store
                .as_deref()
                .map(crate::api::tracking::quote_literal)
                .unwrap_or_else(|| "NULL".into()),
        );
        let mut malformed: HashMap<String, i64> = HashMap::new();
        for_each_row(
            &query,
            |store: Option<String>, path: Option<String>, size: Option<i64>| {
                let Some(store) = store else {
                    unknown.insert("(no store named and no default store)".to_string());
                    return;
                };
                let Some(place) = ident.get(&store) else {
                    unknown.insert(store);
                    return;
                };
                if !wanted.contains(place) {
                    return;
                }
                match path {
                    Some(p) => {
                        sets.entry(place.clone())
                            .or_default()
                            .insert(&p, size.map(|z| z.max(0) as u64));
                    }
                    None => *malformed.entry(place.clone()).or_default() += 1,
                }
            },
        );
        for (place, n) in malformed {
            problems.push((
                Some(place),
                format!(
                    "{n} reference(s) in {} name no path: nothing is deleted",
                    col.label
                ),
            ));
        }
    }
    if !unknown.is_empty() {
        let mut names: Vec<String> = unknown.into_iter().collect();
        names.sort();
        problems.push((
            None,
            format!(
                "references name stores that are not configured ({}): they may point into any store, so nothing is deleted",
                names.join(", ")
            ),
        ));
    }
    for (place, why) in problems {
        for r in reports.iter_mut() {
            if place
                .as_ref()
                .is_none_or(|p| ident.get(&r.store) == Some(p))
            {
                r.refuse(why.clone());
            }
        }
    }
    // Keyed by store name again for the runs.
    let mut out_sets = HashMap::new();
    for r in reports.iter_mut() {
        let Some(i) = ident.get(&r.store) else {
            continue;
        };
        if let Some(set) = sets.get(i) {
            r.referenced = set.len() as i64;
            r.referenced_bytes = set.bytes() as i64;
            out_sets.insert(r.store.clone(), set.clone());
        }
    }
    out_sets
}

/// Run `query` as a cursor, 10 000 rows at a time (each batch freed before the next), and call
/// `f` with its three columns.
fn for_each_row(query: &str, mut f: impl FnMut(Option<String>, Option<String>, Option<i64>)) {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let cursor = format!(
        "oas_gc_mark_{}",
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    Spi::run(&format!("DECLARE {cursor} NO SCROLL CURSOR FOR {query}")).or_raise();
    loop {
        let n = Spi::connect(|c| {
            let mut n = 0usize;
            for row in c.select(&format!("FETCH {CHUNK} FROM {cursor}"), None, &[])? {
                f(
                    row.get::<String>(1)?,
                    row.get::<String>(2)?,
                    row.get::<i64>(3)?,
                );
                n += 1;
            }
            Ok::<_, pgrx::spi::SpiError>(n)
        })
        .or_raise();
        pgrx::check_for_interrupts!();
        if n == 0 {
            break;
        }
    }
    Spi::run(&format!("CLOSE {cursor}")).or_raise();
}

use super::tracking::{quote_ident, regclass_text};

/// One page of `(path, size)` rows from a keyset query whose parameters are
/// `(store, after_path, <number>, limit)`.
fn path_size_page(query: &str, store: &str, after: &str, number: f64) -> Vec<(String, i64)> {
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
    .or_raise()
}

// ---------------------------------------------------------------------------------------------
// One store

struct Listed {
    path: String,
    size: u64,
    mtime: f64,
}

fn collect_store(
    r: &mut Report,
    refs: &RefSet,
    dry_run: bool,
    grace: f64,
    retention: f64,
    snapshot: &str,
) {
    let store = match catalog::store_unchecked(Some(&r.store)) {
        Ok(s) => s,
        Err(e) => {
            r.refuse(e.to_string());
            return;
        }
    };
    if !dry_run {
        r.run_id = Spi::get_one_with_args::<i64>(
            "INSERT INTO oas.gc_run (store, grace) VALUES ($1, make_interval(secs => $2)) RETURNING run_id",
            &[r.store.as_str().into(), grace.into()],
        )
        .or_raise();
    }
    // The schemas to list come from this database's own records, never from what a reference
    // says: the schemas that exist here, those whose tables the ledger saw referencing this store,
    // and those earlier runs recorded. Objects of other databases sharing the store stay untouched
    // (a hand-written reference to `_hash/otherdb/...` once made a run trash them).
    let mut known: HashSet<String> = HashSet::new();
    let recorded: Vec<String> = Spi::connect(|c| {
        c.select(
            "SELECT nspname::text FROM pg_catalog.pg_namespace
              WHERE nspname !~ '^pg_' AND nspname NOT IN ('information_schema', 'oas')
             UNION SELECT schema FROM oas.gc_known_schema WHERE store = $1
             UNION SELECT DISTINCT schema_name FROM oas.ref_log WHERE store = $1",
            None,
            &[r.store.as_str().into()],
        )?
        .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
        .collect::<Result<Vec<_>, _>>()
    })
    .or_raise();
    known.extend(recorded);
    known.retain(|s| !s.is_empty() && s != "_oas" && !s.contains('/'));
    if !dry_run {
        let list: Vec<String> = known.iter().cloned().collect();
        Spi::run_with_args(
            "INSERT INTO oas.gc_known_schema SELECT $1, s FROM unnest($2::text[]) s ON CONFLICT DO NOTHING",
            &[r.store.as_str().into(), list.into()],
        )
        .or_raise();
    }

    // One database collects a store location: another one's rows are invisible here.
    if !dry_run {
        check_owner(r, &store);
    }
    // Trash is purged only when every reference could be read and the trash listed: a trashed
    // object referenced again is put back, never purged.
    // Folders the moves below change on a file store, synced once before the run returns.
    let mut syncs = FolderSyncs::default();
    reconcile_trash(r, &store, refs, dry_run, &mut syncs);
    if !r.refuse {
        purge_recorded(r, &store, retention, dry_run, Some(refs));
    }
    let horizon = gc_horizon(grace);
    list_sections(r, &store, refs, &known, dry_run, horizon);
    sweep_staging(r, &store, dry_run, horizon);
    if !dry_run && !r.refuse {
        Spi::run_with_args(
            "DELETE FROM oas.gc_candidate WHERE store = $1 AND last_seen < now()",
            &[r.store.as_str().into()],
        )
        .or_raise();
        // Fresh statistics for the batches that follow: without them the first run after many
        // new candidates plans its batch query badly (measured: 120 s instead of 68 s at 1M).
        // ANALYZE needs the table's owner; an oas_admin collector leaves it to autovacuum.
        let owner = Spi::get_one::<bool>(
            "SELECT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')
             FROM pg_catalog.pg_class c WHERE c.oid = 'oas.gc_candidate'::regclass",
        )
        .or_raise()
        .unwrap_or(false);
        if owner {
            Spi::run("ANALYZE oas.gc_candidate").or_raise();
        }
        let siblings = same_place(&store);
        move_to_trash(r, &store, horizon, snapshot, &siblings, &mut syncs);
    }
    // If the folders cannot be synced, the run fails as a whole: the objects it moved are then
    // in trash without a record, and the next run adopts them.
    syncs.sync(&store).or_raise();
    if !dry_run {
        compact_ledger(&r.store);
        Spi::run_with_args(
            "UPDATE oas.gc_run SET finished_at = clock_timestamp(), report = $2 WHERE run_id = $1",
            &[r.run_id.into(), pgrx::JsonB(report_json(r)).into()],
        )
        .or_raise();
    }
}

/// This database, as it claims store locations in `_oas/owner.json`.
fn this_database() -> String {
    Spi::get_one::<String>(
        "SELECT json_build_object('system_identifier', (SELECT system_identifier::text FROM pg_catalog.pg_control_system()),
                                  'database', current_database())::text",
    )
    .or_raise()
    .unwrap_or_default()
}

/// Claim the store location for this database, or refuse to delete anything in it when another
/// database's collector has (its rows are invisible here: all its objects would look unreferenced).
fn check_owner(r: &mut Report, store: &Store) {
    match block_on(gc::claim_owner(store, &this_database())) {
        Ok(None) => {}
        Ok(Some(other)) => r.refuse(format!(
            "the store location is collected by another database ({other} in {}): nothing is deleted; \
             give each database its own location, or delete {} if that database is gone",
            gc::OWNER_KEY,
            gc::OWNER_KEY
        )),
        Err(e) => r.refuse(format!("could not check {}: {e}", gc::OWNER_KEY)),
    }
}

/// Objects unreferenced since before this (seconds since the epoch) may be collected: the grace
/// period ago, and before every transaction still running started (`oas._gc_horizon`).
fn gc_horizon(grace: f64) -> f64 {
    Spi::get_one_with_args::<f64>(
        "SELECT extract(epoch FROM oas._gc_horizon(make_interval(secs => $1)))::float8",
        &[grace.into()],
    )
    .or_raise()
    .unwrap_or(f64::NEG_INFINITY)
}

/// The names of every store at the same place as `store` (itself included).
fn same_place(store: &Store) -> Vec<String> {
    let me = gc::location_identity(&store.spec);
    let names = store_names();
    let mut out: Vec<String> = names
        .into_iter()
        .filter(|n| {
            catalog::store_unchecked(Some(n)).is_ok_and(|s| gc::location_identity(&s.spec) == me)
        })
        .collect();
    if !out.contains(&store.name) {
        out.push(store.name.clone());
    }
    out
}

fn report_json(r: &Report) -> serde_json::Value {
    serde_json::json!({
        "referenced": r.referenced, "referenced_bytes": r.referenced_bytes,
        "stored": r.stored, "stored_bytes": r.stored_bytes,
        "orphaned": r.orphaned, "orphaned_bytes": r.orphaned_bytes, "waiting": r.waiting,
        "trashed": r.trashed, "trashed_bytes": r.trashed_bytes, "restored": r.restored,
        "purged": r.purged, "purged_bytes": r.purged_bytes,
        "staging_removed": r.staging_removed, "skipped": r.skipped, "errors": r.errors,
    })
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

/// Walk a prefix in chunks, calling `f` with each chunk. Returns false when the listing failed
/// (the error is in the report).
fn walk(
    r: &mut Report,
    store: &Store,
    prefix: &str,
    mut f: impl FnMut(&mut Report, Vec<Listed>),
) -> bool {
    let mut s = gc::list(store, prefix);
    loop {
        let chunk = block_on(async {
            let mut v = Vec::with_capacity(CHUNK);
            while v.len() < CHUNK {
                match s.next().await {
                    Some(Ok(m)) => v.push(Listed {
                        path: m.location.to_string(),
                        size: m.size,
                        mtime: m.last_modified.timestamp_micros() as f64 / 1e6,
                    }),
                    Some(Err(OasError::ObjectMissing { .. })) | None => break,
                    Some(Err(e)) => return Err(e),
                }
            }
            Ok(v)
        });
        match chunk {
            Ok(v) if v.is_empty() => return true,
            Ok(v) => {
                let full = v.len() == CHUNK;
                in_scratch(|| f(r, v));
                pgrx::check_for_interrupts!();
                if !full {
                    return true;
                }
            }
            Err(e) => {
                r.refuse(format!("listing {prefix} failed, nothing is deleted: {e}"));
                return false;
            }
        }
    }
}

fn list_sections(
    r: &mut Report,
    store: &Store,
    refs: &RefSet,
    known: &HashSet<String>,
    dry_run: bool,
    horizon: f64,
) {
    let spec = &store.spec;
    let mut prefixes: Vec<(Section, String)> = Vec::new();
    let mut schemas: Vec<&String> = known.iter().collect();
    schemas.sort();
    for s in &schemas {
        prefixes.push((Section::Hash, section_prefix(&spec.hash_prefix, Some(s))));
    }
    let partitioned = spec
        .partition_pattern
        .as_deref()
        .is_some_and(|p| !p.is_empty());
    if !partitioned {
        for s in &schemas {
            prefixes.push((
                Section::Schema,
                section_prefix(&spec.schema_prefix, Some(s)),
            ));
        }
    } else if !spec.schema_prefix.is_empty() {
        prefixes.push((Section::Schema, section_prefix(&spec.schema_prefix, None)));
    } else {
        r.errors.push(
            "partition_pattern with an empty schema_prefix: schema-addressed objects are not collected".into(),
        );
    }
    let filepath = spec.filepath_prefix.as_ref().map(|p| format!("{p}/"));
    let mut seen = 0i64;
    for (section, prefix) in prefixes {
        let section_prefix_str = match section {
            Section::Hash => spec.hash_prefix.clone(),
            Section::Schema => spec.schema_prefix.clone(),
        };
        walk(r, store, &prefix, |r, chunk| {
            let mut orphans = Vec::new();
            for o in chunk {
                if o.path.starts_with("_oas/")
                    || filepath.as_deref().is_some_and(|f| o.path.starts_with(f))
                {
                    continue;
                }
                if section == Section::Hash && !is_hash_object(&o.path) {
                    r.skipped += 1;
                    continue;
                }
                if section == Section::Schema
                    && partitioned
                    && !schema_of(section, &section_prefix_str, &o.path)
                        .is_some_and(|s| known.contains(s))
                {
                    continue;
                }
                r.stored += 1;
                r.stored_bytes += o.size as i64;
                if refs.covers(Section::Schema, &o.path) {
                    continue;
                }
                r.orphaned += 1;
                r.orphaned_bytes += o.size as i64;
                orphans.push(o);
            }
            seen += orphans.len() as i64;
            record_orphans(r, &orphans, dry_run, horizon);
        });
    }
    if seen > 0 {
        pgrx::notice!(
            "oas_gc: store \"{}\": {} objects listed, {} unreferenced",
            r.store,
            r.stored,
            r.orphaned
        );
    }
}

/// Record unreferenced objects as candidates (real run), or count those a real run would move
/// now (dry run). An object whose modification time changed starts its grace period again.
fn record_orphans(r: &mut Report, orphans: &[Listed], dry_run: bool, horizon: f64) {
    if orphans.is_empty() {
        return;
    }
    let paths: Vec<String> = orphans.iter().map(|o| o.path.clone()).collect();
    let sizes: Vec<i64> = orphans.iter().map(|o| o.size as i64).collect();
    let mtimes: Vec<f64> = orphans.iter().map(|o| o.mtime).collect();
    if dry_run {
        let (n, bytes) = Spi::get_two_with_args::<i64, i64>(
            "SELECT count(*), coalesce(sum(u.z), 0)::int8
             FROM unnest($2::text[], $3::int8[], $4::float8[]) u(p, z, m)
             JOIN oas.gc_candidate c ON c.store = $1 AND c.path = u.p
             WHERE c.first_seen < to_timestamp($5) AND to_timestamp(u.m) < to_timestamp($5)
               AND c.mtime = to_timestamp(u.m)",
            &[
                r.store.as_str().into(),
                paths.into(),
                sizes.into(),
                mtimes.into(),
                horizon.into(),
            ],
        )
        .or_raise();
        let (n, bytes) = (n.unwrap_or(0), bytes.unwrap_or(0));
        r.trashed += n;
        r.trashed_bytes += bytes;
        r.waiting += orphans.len() as i64 - n;
        return;
    }
    Spi::run_with_args(
        "INSERT INTO oas.gc_candidate AS c (store, path, size, mtime, first_seen, last_seen)
         SELECT $1, u.p, u.z, to_timestamp(u.m), clock_timestamp(), now()
         FROM unnest($2::text[], $3::int8[], $4::float8[]) u(p, z, m)
         ON CONFLICT (store, path) DO UPDATE
            SET last_seen = now(), size = EXCLUDED.size, mtime = EXCLUDED.mtime,
                first_seen = CASE WHEN c.mtime = EXCLUDED.mtime THEN c.first_seen ELSE clock_timestamp() END",
        &[
            r.store.as_str().into(),
            paths.into(),
            sizes.into(),
            mtimes.into(),
        ],
    )
    .or_raise();
}

/// Move eligible candidates to trash, a batch at a time: each object's lock stripes must be
/// free (no transaction is attaching a reference to it) and the ledger must show no reference
/// committed since the mark began.
fn move_to_trash(
    r: &mut Report,
    store: &Store,
    horizon: f64,
    snapshot: &str,
    siblings: &[String],
    syncs: &mut FolderSyncs,
) {
    let mut last = String::new();
    let mut done = 0i64;
    loop {
        let moved = in_scratch(|| {
            let batch = path_size_page(
                "SELECT path, size FROM oas.gc_candidate
                 WHERE store = $1 AND path > $2
                   AND first_seen < to_timestamp($3) AND mtime < to_timestamp($3)
                 ORDER BY path LIMIT $4",
                &r.store,
                &last,
                horizon,
            );
            let (l, _) = batch.last()?;
            last = l.clone();
            Some(move_batch(r, store, &batch, snapshot, siblings, syncs))
        });
        let Some(moved) = moved else { break };
        done += moved;
        if done > 0 && done % 10_000 < moved {
            pgrx::notice!(
                "oas_gc: store \"{}\": {done} objects moved to trash",
                r.store
            );
        }
        pgrx::check_for_interrupts!();
    }
    let waiting = Spi::get_one_with_args::<i64>(
        "SELECT count(*) FROM oas.gc_candidate WHERE store = $1",
        &[r.store.as_str().into()],
    )
    .or_raise()
    .unwrap_or(0);
    r.waiting = waiting;
}

fn move_batch(
    r: &mut Report,
    store: &Store,
    batch: &[(String, i64)],
    snapshot: &str,
    siblings: &[String],
    syncs: &mut FolderSyncs,
) -> i64 {
    // Every reference path that would cover each object (for the ledger veto), and the paths
    // a reference to it can have (the object itself, its owner), whose stripes writers take.
    let covering: Vec<Vec<String>> = batch
        .iter()
        .map(|(p, _)| reference_paths(p).map(str::to_string).collect())
        .collect();
    let all: Vec<String> = covering.iter().flatten().cloned().collect();
    let lock_paths: Vec<Vec<String>> = batch
        .iter()
        .map(|(p, _)| {
            let owner = owner_of(store, p);
            let mut v = vec![p.clone()];
            if owner != p {
                v.push(owner.to_string());
            }
            v
        })
        .collect();
    let all_lock: Vec<String> = lock_paths.iter().flatten().cloned().collect();
    let (locked, vetoed): (Vec<i32>, Vec<String>) = Spi::connect_mut(|c| {
        let locked = c
            .update(
                "SELECT k FROM (SELECT DISTINCT oas.lock_stripe($1, p) AS k FROM unnest($2::text[]) p) s
                 WHERE pg_catalog.pg_try_advisory_lock(1869705984, k)",
                None,
                &[r.store.as_str().into(), all_lock.clone().into()],
            )?
            .map(|row| row.get::<i32>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()?;
        hold_stripes(&locked);
        // A fresh snapshot: references committed since the mark began, as the ledger records them.
        let vetoed = c
            .update(
                "SELECT DISTINCT path FROM oas.ref_log
                 WHERE store = ANY($1) AND path = ANY($2) AND delta > 0
                   AND NOT pg_catalog.pg_visible_in_snapshot(xid, $3::pg_snapshot)",
                None,
                &[siblings.to_vec().into(), all.clone().into(), snapshot.into()],
            )?
            .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, pgrx::spi::SpiError>((locked, vetoed))
    })
    .or_raise();
    let vetoed: HashSet<String> = vetoed.into_iter().collect();
    let stripes: HashSet<i32> = locked.iter().copied().collect();
    let stripe_of = stripes_of(&r.store, &all_lock);
    let movable: Vec<&(String, i64)> = batch
        .iter()
        .zip(covering.iter().zip(&lock_paths))
        .filter(|(_, (cov, locks))| {
            locks
                .iter()
                .all(|p| stripe_of.get(p).is_some_and(|k| stripes.contains(k)))
                && !cov.iter().any(|p| vetoed.contains(p))
        })
        .map(|(b, _)| b)
        .collect();

    let moves: Vec<(String, String)> = movable
        .iter()
        .map(|(p, _)| (p.clone(), trash_key(p)))
        .collect();
    let results = block_on(gc::move_objects(store, &moves, PARALLEL, syncs)).or_raise();

    let mut moved_paths = Vec::new();
    let mut owners = Vec::new();
    let mut sizes = Vec::new();
    let mut gone = Vec::new();
    for (&(p, z), res) in movable.iter().zip(results) {
        let (p, z) = (p.clone(), *z);
        match res {
            Ok(()) => {
                r.trashed += 1;
                r.trashed_bytes += z;
                owners.push(owner_of(store, &p).to_string());
                sizes.push(z);
                moved_paths.push(p);
            }
            Err(OasError::ObjectMissing { .. }) => gone.push(p),
            Err(e) => {
                if r.errors.len() < 20 {
                    r.errors.push(e.to_string());
                }
            }
        }
    }
    let n = moved_paths.len() as i64;
    gone.extend(moved_paths.iter().cloned());
    Spi::connect_mut(|c| {
        c.update(
            "INSERT INTO oas.gc_trash AS t (store, path, ref_path, size, run_id)
             SELECT $1, p, o, z, $5 FROM unnest($2::text[], $3::text[], $4::int8[]) u(p, o, z)
             ON CONFLICT (store, path) DO UPDATE
                SET ref_path = EXCLUDED.ref_path, size = EXCLUDED.size, run_id = EXCLUDED.run_id,
                    trashed_at = now()",
            None,
            &[
                r.store.as_str().into(),
                moved_paths.into(),
                owners.into(),
                sizes.into(),
                r.run_id.into(),
            ],
        )?;
        c.update(
            "DELETE FROM oas.gc_candidate WHERE store = $1 AND path = ANY($2)",
            None,
            &[r.store.as_str().into(), gone.into()],
        )?;
        Ok::<_, pgrx::spi::SpiError>(())
    })
    .or_raise();
    release_stripes();
    n
}

fn section_of(store: &Store, path: &str) -> Section {
    gc::section_of(&store.spec.hash_prefix, &store.spec.schema_prefix, path)
}

/// The reference path that would own the listed object `path` (see [`owner_path`]).
fn owner_of<'a>(store: &Store, path: &'a str) -> &'a str {
    owner_path(section_of(store, path), &store.spec.schema_prefix, path)
}

thread_local! {
    /// Stripes this backend holds exclusively (session locks, which an error does not release).
    static HELD: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

/// Remember stripes taken; if the transaction aborts before they are released (a cancel in the
/// middle of a batch), release them then, or every writer touching them would wait forever.
fn hold_stripes(keys: &[i32]) {
    if keys.is_empty() {
        return;
    }
    let first = HELD.with_borrow(|h| h.is_empty());
    HELD.with_borrow_mut(|h| h.extend_from_slice(keys));
    if first {
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, release_stripes);
    }
}

fn release_stripes() {
    for k in HELD.with_borrow_mut(std::mem::take) {
        let tag = pg_sys::LOCKTAG {
            // SAFETY: MyDatabaseId is a plain backend global.
            locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            locktag_field2: STRIPE_CLASS as u32,
            locktag_field3: k as u32,
            locktag_field4: 2,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
        };
        // SAFETY: releases a session-level advisory lock this backend took (as
        // pg_advisory_unlock does); a lock not held is reported by LockRelease, not undefined.
        unsafe { pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as i32, true) };
    }
}

fn stripes_of(store: &str, paths: &[String]) -> HashMap<String, i32> {
    Spi::connect(|c| {
        c.select(
            "SELECT p, oas.lock_stripe($1, p) FROM unnest($2::text[]) p",
            None,
            &[store.into(), paths.to_vec().into()],
        )?
        .map(|row| {
            Ok((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<i32>(2)?.unwrap_or(-1),
            ))
        })
        .collect::<Result<HashMap<_, _>, pgrx::spi::SpiError>>()
    })
    .or_raise()
}

/// The trash area, a chunk of its listing at a time: objects referenced again go back (a
/// reference attached while they were being collected, or with triggers bypassed); objects no
/// run recorded (a run that aborted after moving them) are recorded now, and purged after the
/// retention like the rest. Both are safe on a partial listing: nothing is deleted here.
fn reconcile_trash(
    r: &mut Report,
    store: &Store,
    refs: &RefSet,
    dry_run: bool,
    syncs: &mut FolderSyncs,
) {
    let siblings = same_place(store);
    let before = r.restored;
    walk(r, store, TRASH_PREFIX, |r, chunk| {
        let mut back: Vec<String> = Vec::new();
        let mut rest: Vec<Listed> = Vec::new();
        for o in chunk {
            match untrash_key(&o.path) {
                Some(orig) if refs.covers(Section::Schema, orig) => back.push(orig.to_string()),
                Some(_) => rest.push(o),
                None => {}
            }
        }
        r.restored += back.len() as i64;
        if !dry_run && !back.is_empty() {
            put_back(r, store, back, syncs);
        }
        if !dry_run && !rest.is_empty() {
            record_unrecorded(r, store, &siblings, rest);
        }
    });
    if !dry_run && r.restored > before {
        pgrx::warning!(
            "oas_gc: store \"{}\": {} referenced object(s) were in trash and have been put back",
            r.store,
            r.restored - before
        );
    }
}

/// Move referenced objects back out of trash and drop their trash records. One that cannot be
/// moved blocks deletion in this store for the run.
fn put_back(r: &mut Report, store: &Store, paths: Vec<String>, syncs: &mut FolderSyncs) {
    let moves: Vec<(String, String)> = paths.iter().map(|p| (trash_key(p), p.clone())).collect();
    let results = block_on(gc::move_objects(store, &moves, PARALLEL, syncs)).or_raise();
    let mut done = Vec::new();
    for (p, res) in paths.into_iter().zip(results) {
        match res {
            Ok(()) | Err(OasError::ObjectMissing { .. }) => done.push(p),
            Err(e) => r.refuse(format!("could not put back referenced object {p}: {e}")),
        }
    }
    drop_trash_records(&r.store, done);
}

/// Record trashed objects that no store name of this place has a trash record for.
fn record_unrecorded(r: &mut Report, store: &Store, siblings: &[String], listed: Vec<Listed>) {
    let paths: Vec<String> = listed
        .iter()
        .map(|o| untrash_key(&o.path).unwrap_or_default().to_string())
        .collect();
    let known: HashSet<String> = Spi::connect(|c| {
        c.select(
            "SELECT path FROM oas.gc_trash WHERE store = ANY($1) AND path = ANY($2)",
            None,
            &[siblings.to_vec().into(), paths.clone().into()],
        )?
        .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
        .collect::<Result<HashSet<_>, _>>()
    })
    .or_raise();
    let (mut new, mut owners, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for (p, o) in paths.into_iter().zip(listed) {
        if !known.contains(&p) {
            owners.push(owner_of(store, &p).to_string());
            sizes.push(o.size as i64);
            new.push(p);
        }
    }
    if new.is_empty() {
        return;
    }
    Spi::run_with_args(
        // Dated now, not by the file (a rename keeps its old time): the full retention starts
        // when a run first finds it.
        "INSERT INTO oas.gc_trash (store, path, ref_path, size, run_id, trashed_at)
         SELECT $1, p, o, z, $5, clock_timestamp()
         FROM unnest($2::text[], $3::text[], $4::int8[]) u(p, o, z)
         ON CONFLICT DO NOTHING",
        &[
            r.store.as_str().into(),
            new.into(),
            owners.into(),
            sizes.into(),
            r.run_id.into(),
        ],
    )
    .or_raise();
}

/// Forget the trash records of `paths` (put back, restored or purged).
fn drop_trash_records(store: &str, paths: Vec<String>) {
    Spi::run_with_args(
        "DELETE FROM oas.gc_trash WHERE store = $1 AND path = ANY($2)",
        &[store.into(), paths.into()],
    )
    .or_raise();
}

/// Delete trash recorded longer ago than `retention`, except objects `refs` says are referenced
/// again (the next run puts those back). In a dry run (`count_only`), count it.
fn purge_recorded(
    r: &mut Report,
    store: &Store,
    retention: f64,
    count_only: bool,
    refs: Option<&RefSet>,
) {
    let mut last = String::new();
    while in_scratch(|| purge_page(r, store, retention, count_only, refs, &mut last)) {
        pgrx::check_for_interrupts!();
    }
}

/// One page of [`purge_recorded`]: false when there was nothing left.
fn purge_page(
    r: &mut Report,
    store: &Store,
    retention: f64,
    count_only: bool,
    refs: Option<&RefSet>,
    last: &mut String,
) -> bool {
    let batch = path_size_page(
        "SELECT path, size FROM oas.gc_trash
         WHERE store = $1 AND path > $2 AND trashed_at < now() - make_interval(secs => $3)
         ORDER BY path LIMIT $4",
        &r.store,
        last,
        retention,
    );
    let Some((l, _)) = batch.last() else {
        return false;
    };
    *last = l.clone();
    let batch: Vec<(String, i64)> = batch
        .into_iter()
        .filter(|(p, _)| !refs.is_some_and(|s| s.covers(Section::Schema, p)))
        .collect();
    if count_only {
        r.purged += batch.len() as i64;
        r.purged_bytes += batch.iter().map(|b| b.1).sum::<i64>();
        return true;
    }
    let results: Vec<(String, i64, Result<(), OasError>)> = block_on(async {
        Ok(stream::iter(batch.iter().map(|(p, z)| async move {
            (p.clone(), *z, gc::delete_object(store, &trash_key(p)).await)
        }))
        .buffer_unordered(PARALLEL)
        .collect()
        .await)
    })
    .unwrap_or_default();
    let mut purged = Vec::new();
    for (p, z, res) in results {
        match res {
            Ok(()) => {
                r.purged += 1;
                r.purged_bytes += z;
                purged.push(p);
            }
            Err(e) => {
                if r.errors.len() < 20 {
                    r.errors.push(e.to_string());
                }
            }
        }
    }
    drop_trash_records(&r.store, purged);
    true
}

/// Staging files are never referenced; one older than every running transaction and the grace
/// period belongs to a put that crashed.
fn sweep_staging(r: &mut Report, store: &Store, dry_run: bool, horizon: f64) {
    let mut old: Vec<String> = Vec::new();
    walk(r, store, STAGING_PREFIX, |_, chunk| {
        old.extend(
            chunk
                .into_iter()
                .filter(|o| o.mtime < horizon)
                .map(|o| o.path),
        );
    });
    r.staging_removed = old.len() as i64;
    if dry_run || r.refuse {
        return;
    }
    for p in old {
        if let Err(e) = block_on(gc::delete_object(store, &p)) {
            r.errors.push(e.to_string());
        }
    }
}

/// Fold ledger rows older than an hour into one net row per column and object.
fn compact_ledger(store: &str) {
    Spi::run_with_args(
        "WITH gone AS (
             DELETE FROM oas.ref_log
             WHERE store = $1 AND op <> 'COMPACT' AND at < now() - interval '1 hour'
             RETURNING table_oid, schema_name, table_name, column_name, store, path, delta)
         INSERT INTO oas.ref_log (op, table_oid, schema_name, table_name, column_name, store, path, delta)
         SELECT 'COMPACT', table_oid, max(schema_name), max(table_name), column_name, store, path, sum(delta)
         FROM gone GROUP BY table_oid, column_name, store, path HAVING sum(delta) <> 0",
        &[store.into()],
    )
    .or_raise();
}
