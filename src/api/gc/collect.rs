//! One store's run, and its last phase: move the candidates that are past the grace period and
//! older than every running transaction, whose lock stripes are free and which the ledger shows
//! no new reference to, to trash; then sweep abandoned staging files and abort the uploads in
//! parts that writers who died left recorded.

use std::collections::HashSet;

use oas_core::backend::Store;
use oas_core::gc::{
    self, owner_path, reference_paths, trash_key, uploads, FolderSyncs, Layout, RefSet, Report,
    Sighting, STAGING_PREFIX,
};
use oas_core::OasError;
use pgrx::prelude::*;

use super::list::{known_schemas, list_sections, walk};
use super::{in_scratch, ledger, path_size_page, trash};
use crate::api::locks::{release_stripes, stripe, try_lock_stripes};
use crate::catalog;
use crate::error::SpiOk;
use crate::runtime::block_on;

/// Everything one real or dry run does in one store, in order.
pub(super) fn collect_store(
    r: &mut Report,
    refs: &RefSet,
    dry_run: bool,
    grace: f64,
    retention: f64,
    snapshot: &str,
) -> Result<(), OasError> {
    let store = match catalog::store_unchecked(Some(&r.store)) {
        Ok(s) => s,
        Err(e) => {
            r.refuse(e.to_string());
            return Ok(());
        }
    };
    if !dry_run {
        r.run_id = Spi::get_one_with_args::<i64>(
            "INSERT INTO oas.gc_run (store, grace) VALUES ($1, make_interval(secs => $2)) RETURNING run_id",
            &[r.store.as_str().into(), grace.into()],
        )
        .spi()?;
    }
    let known = known_schemas(&r.store, dry_run)?;
    // One database collects a store location: another one's rows are invisible here.
    if !dry_run {
        check_owner(r, &store)?;
    }
    // Trash is purged only when every reference could be read and the trash listed: a trashed
    // object referenced again is put back, never purged.
    // Folders the moves below change on a file store, synced once before the run returns.
    let mut syncs = FolderSyncs::default();
    trash::reconcile(r, &store, refs, dry_run, &mut syncs)?;
    if !r.refuse {
        trash::purge_recorded(r, &store, retention, dry_run, Some(refs))?;
    }
    let horizon = gc_horizon(grace)?;
    list_sections(r, &store, refs, &known, dry_run, horizon)?;
    sweep_staging(r, &store, dry_run, horizon)?;
    sweep_local_temp(r, &store, &known, dry_run, horizon)?;
    abort_abandoned_uploads(r, &store, dry_run, horizon)?;
    if !dry_run && !r.refuse {
        Spi::run_with_args(
            "DELETE FROM oas.gc_candidate WHERE store = $1 AND last_seen < now()",
            &[r.store.as_str().into()],
        )
        .spi()?;
        // Fresh statistics for the batches that follow: without them the first run after many
        // new candidates plans its batch query badly (measured: 120 s instead of 68 s at 1M).
        // ANALYZE needs the table's owner; an oas_admin collector leaves it to autovacuum.
        let owner = Spi::get_one::<bool>(
            "SELECT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')
             FROM pg_catalog.pg_class c WHERE c.oid = 'oas.gc_candidate'::regclass",
        )
        .spi()?
        .unwrap_or(false);
        if owner {
            Spi::run("ANALYZE oas.gc_candidate").spi()?;
        }
        let siblings = same_place(&store)?;
        move_to_trash(r, &store, horizon, snapshot, &siblings, &mut syncs)?;
    }
    // If the folders cannot be synced, the run fails as a whole: the objects it moved are then
    // in trash without a record, and the next run adopts them.
    syncs.sync(&store)?;
    if !dry_run {
        ledger::compact(&r.store)?;
        Spi::run_with_args(
            "UPDATE oas.gc_run SET finished_at = clock_timestamp(), report = $2 WHERE run_id = $1",
            &[r.run_id.into(), pgrx::JsonB(r.to_json()).into()],
        )
        .spi()?;
    }
    Ok(())
}

/// This database, as it claims store locations in `_oas/owner.json`.
fn this_database() -> Result<String, OasError> {
    Ok(Spi::get_one::<String>(
        "SELECT json_build_object('system_identifier', (SELECT system_identifier::text FROM pg_catalog.pg_control_system()),
                                  'database', current_database())::text",
    )
    .spi()?
    .unwrap_or_default())
}

/// Claim the store location for this database, or refuse to delete anything in it when another
/// database's collector has (its rows are invisible here: all its objects would look unreferenced).
fn check_owner(r: &mut Report, store: &Store) -> Result<(), OasError> {
    let me = this_database()?;
    match block_on(gc::claim_owner(store, &me)) {
        Ok(None) => {}
        Ok(Some(other)) => r.refuse(format!(
            "the store location is collected by another database ({other} in {}): nothing is deleted; \
             give each database its own location, or delete {} if that database is gone",
            gc::OWNER_KEY,
            gc::OWNER_KEY
        )),
        Err(e) => r.refuse(format!("could not check {}: {e}", gc::OWNER_KEY)),
    }
    Ok(())
}

/// Objects unreferenced since before this (seconds since the epoch) may be collected: the grace
/// period ago, and before every transaction still running started (`oas._gc_horizon`).
fn gc_horizon(grace: f64) -> Result<f64, OasError> {
    Ok(Spi::get_one_with_args::<f64>(
        "SELECT extract(epoch FROM oas._gc_horizon(make_interval(secs => $1)))::float8",
        &[grace.into()],
    )
    .spi()?
    .unwrap_or(f64::NEG_INFINITY))
}

/// The names of every store at the same place as `store` (itself included).
pub(super) fn same_place(store: &Store) -> Result<Vec<String>, OasError> {
    let me = gc::location_identity(&store.spec);
    let mut out: Vec<String> = super::store_names()?
        .into_iter()
        .filter(|n| {
            catalog::store_unchecked(Some(n)).is_ok_and(|s| gc::location_identity(&s.spec) == me)
        })
        .collect();
    if !out.contains(&store.name) {
        out.push(store.name.clone());
    }
    Ok(out)
}

/// The reference path that would own the listed object `path` (see [`owner_path`]), in the
/// section [`gc::section_of`] says it lies in.
pub(super) fn owner_of<'a>(store: &Store, path: &'a str) -> &'a str {
    let section = gc::section_of(&store.spec.hash_prefix, &store.spec.schema_prefix, path);
    owner_path(section, &store.spec.schema_prefix, path)
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
) -> Result<(), OasError> {
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
            )?;
            let Some((l, _)) = batch.last() else {
                return Ok(None);
            };
            last = l.clone();
            move_batch(r, store, &batch, snapshot, siblings, syncs).map(Some)
        })?;
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
    r.waiting = Spi::get_one_with_args::<i64>(
        "SELECT count(*) FROM oas.gc_candidate WHERE store = $1",
        &[r.store.as_str().into()],
    )
    .spi()?
    .unwrap_or(0);
    Ok(())
}

/// One batch of [`move_to_trash`]: the number of objects moved.
fn move_batch(
    r: &mut Report,
    store: &Store,
    batch: &[(String, i64)],
    snapshot: &str,
    siblings: &[String],
    syncs: &mut FolderSyncs,
) -> Result<i64, OasError> {
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
    let locked = try_lock_stripes(&all_lock)?;
    // A fresh snapshot: references committed since the mark began, as the ledger records them.
    // (`update`: a statement that may write runs with a new snapshot; a read-only one would not.)
    let vetoed: HashSet<String> = Spi::connect_mut(|c| {
        c.update(
            "SELECT DISTINCT path FROM oas.ref_log
             WHERE store = ANY($1) AND path = ANY($2) AND delta > 0
               AND NOT pg_catalog.pg_visible_in_snapshot(xid, $3::pg_snapshot)",
            None,
            &[
                siblings.to_vec().into(),
                all.clone().into(),
                snapshot.into(),
            ],
        )?
        .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
        .collect::<Result<HashSet<_>, _>>()
    })
    .spi()?;
    let stripes: HashSet<i32> = locked.iter().copied().collect();
    let movable: Vec<&(String, i64)> = batch
        .iter()
        .zip(covering.iter().zip(&lock_paths))
        .filter(|(_, (cov, locks))| {
            locks.iter().all(|p| stripes.contains(&stripe(p)))
                && !cov.iter().any(|p| vetoed.contains(p))
        })
        .map(|(b, _)| b)
        .collect();

    let moves: Vec<(String, String)> = movable
        .iter()
        .map(|(p, _)| (p.clone(), trash_key(p)))
        .collect();
    let results = super::move_objects(store, &moves, syncs)?;

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
            Err(e) => r.note(e.to_string()),
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
    .spi()?;
    release_stripes();
    Ok(n)
}

/// What lies under `prefix` (of `_oas/`) modified before `horizon`: left by writers that died.
fn left_behind(
    r: &mut Report,
    store: &Store,
    prefix: &str,
    horizon: f64,
) -> Result<Vec<String>, OasError> {
    let mut old: Vec<String> = Vec::new();
    walk(r, store, prefix, |_, chunk| {
        old.extend(gc::older_than(
            chunk.into_iter().map(|o| (o.path, o.mtime)),
            horizon,
        ));
        Ok(())
    })?;
    Ok(old)
}

/// Staging files are never referenced; one older than every running transaction and the grace
/// period belongs to a put that crashed.
fn sweep_staging(
    r: &mut Report,
    store: &Store,
    dry_run: bool,
    horizon: f64,
) -> Result<(), OasError> {
    let old = left_behind(r, store, STAGING_PREFIX, horizon)?;
    r.staging_removed = old.len() as i64;
    if dry_run || r.refuse {
        return Ok(());
    }
    for p in old {
        if let Err(e) = block_on(gc::delete_object(store, &p)) {
            r.errors.push(e.to_string());
        }
    }
    Ok(())
}

/// Uploads in parts are recorded while they run ([`uploads`]); a record older than every running
/// transaction and the grace period belongs to a writer that died: its upload is aborted and the
/// record removed. Counted in `staging_removed` (and alone as `uploads_aborted`).
fn abort_abandoned_uploads(
    r: &mut Report,
    store: &Store,
    dry_run: bool,
    horizon: f64,
) -> Result<(), OasError> {
    let old = left_behind(r, store, uploads::UPLOADS_PREFIX, horizon)?;
    r.uploads_aborted = old.len() as i64;
    r.staging_removed += r.uploads_aborted;
    if dry_run || r.refuse {
        return Ok(());
    }
    for p in old {
        if let Err(e) = block_on(uploads::abort_recorded(store, &p)) {
            r.note(e.to_string());
        }
    }
    Ok(())
}

/// A `file` store's temporary files (`{path}#{digits}`, hidden from listings) of objects in the
/// sections this run lists, older than every running transaction and the grace period: writes a
/// crash cut short. Counted in `staging_removed`.
fn sweep_local_temp(
    r: &mut Report,
    store: &Store,
    known: &HashSet<String>,
    dry_run: bool,
    horizon: f64,
) -> Result<(), OasError> {
    if store.local_root().is_none() {
        return Ok(());
    }
    let layout = Layout::new(&store.spec);
    let mut schemas: Vec<&str> = known.iter().map(String::as_str).collect();
    schemas.sort();
    for (prefix, sections) in layout.listings(&schemas).0 {
        let found = match uploads::local_temp_files(store, &prefix, horizon) {
            Ok(f) => f,
            Err(e) => {
                r.note(e.to_string());
                continue;
            }
        };
        for (object, file) in found {
            let ours = layout.sight(&sections, &object, |s| known.contains(s));
            if !matches!(ours, Sighting::Managed(_)) {
                continue;
            }
            r.staging_removed += 1;
            if !dry_run && !r.refuse {
                if let Err(e) = uploads::remove_local_temp(store, &object, &file) {
                    r.note(e.to_string());
                }
            }
        }
    }
    Ok(())
}
