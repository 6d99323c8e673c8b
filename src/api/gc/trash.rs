//! Trash: restore (`oas_gc_restore`), purge (`oas_gc_purge` and every real run), reconcile the
//! trash area with the references (each run), and put an object back for a new reference.

use std::collections::{HashMap, HashSet};

use futures::stream::{self, StreamExt};
use oas_core::backend::Store;
use oas_core::gc::{
    self, trash_key, untrash_key, FolderSyncs, RefSet, Report, Section, TRASH_PREFIX,
};
use oas_core::OasError;
use pgrx::prelude::*;

use super::collect::{owner_of, same_place};
use super::list::{walk, Listed};
use super::{in_scratch, move_objects, path_size_page, BATCH, PARALLEL};
use crate::api::locks::lock_run;
use crate::catalog;
use crate::error::SpiOk;
use crate::runtime::block_on;

/// `oas_gc_restore` past its checks: the paths put back, per store.
pub(super) fn restore(run_id: i64, path: Option<&str>) -> Result<Vec<(String, String)>, OasError> {
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
    .spi()?;
    if stores.is_empty() {
        return Err(OasError::invalid_argument_hint(
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
        let row = catalog::store_row_unchecked(Some(&name))?;
        if row.read_only {
            return Err(catalog::read_only_store(&name));
        }
        let store = catalog::store_for(&row)?;
        lock_run(&name)?;
        let mut last = String::new();
        let mut syncs = FolderSyncs::default();
        while let Some(page) =
            in_scratch(|| restore_page(&store, run_id, path, &mut last, &mut syncs))?
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
        syncs.sync(&store)?;
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
    Ok(done)
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
) -> Result<Option<RestoredPage>, OasError> {
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
        Some(_) => return Ok(None),
    };
    let page: Vec<String> = Spi::connect(|c| {
        c.select(query, None, &args)?
            .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
    })
    .spi()?;
    let Some(l) = page.last() else {
        return Ok(None);
    };
    *last = l.clone();
    let moves: Vec<(String, String)> = page.iter().map(|p| (trash_key(p), p.clone())).collect();
    let results = move_objects(store, &moves, syncs)?;
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
    drop_records(&store.name, out.paths.clone())?;
    Ok(Some(out))
}

/// `oas_gc_purge` past its checks and marking: objects and bytes purged per store.
pub(super) fn purge(
    reports: Vec<Report>,
    sets: &HashMap<String, RefSet>,
    retention: f64,
) -> Result<Vec<(String, i64, i64)>, OasError> {
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
        let s = catalog::store_unchecked(Some(&name))?;
        purge_recorded(&mut r, &s, retention, false, sets.get(&name))?;
        if let Some(e) = r.errors.first() {
            pgrx::warning!("oas_gc_purge: store \"{name}\": {e}");
        }
        out.push((name, r.purged, r.purged_bytes));
    }
    Ok(out)
}

/// `oas._gc_ensure_present(store, path)`: put back whatever of `path` is in trash.
pub(super) fn ensure_present(store: &str, path: &str) -> Result<&'static str, OasError> {
    let Ok(s) = catalog::store_unchecked(Some(store)) else {
        return Ok("missing");
    };
    // Whatever of it is in trash goes back, even when something is still in place: a folder
    // may have been moved in part.
    let restored = block_on(gc::restore_from_trash(&s, path))?;
    if restored.is_empty() {
        return Ok(if block_on(gc::exists(&s, path))? {
            "present"
        } else {
            "missing"
        });
    }
    Spi::run_with_args(
        "DELETE FROM oas.gc_trash WHERE store = $1 AND (ref_path = $2 OR path = ANY($3))",
        &[store.into(), path.into(), restored.into()],
    )
    .spi()?;
    pgrx::notice!(
        "pg_oas: object \"{path}\" of store \"{store}\" was in trash and has been put back for the new reference"
    );
    Ok("restored")
}

/// The trash area, a chunk of its listing at a time: objects referenced again go back (a
/// reference attached while they were being collected, or with triggers bypassed); objects no
/// run recorded (a run that aborted after moving them) are recorded now, and purged after the
/// retention like the rest. Both are safe on a partial listing: nothing is deleted here.
pub(super) fn reconcile(
    r: &mut Report,
    store: &Store,
    refs: &RefSet,
    dry_run: bool,
    syncs: &mut FolderSyncs,
) -> Result<(), OasError> {
    let siblings = same_place(store)?;
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
            put_back(r, store, back, syncs)?;
        }
        if !dry_run && !rest.is_empty() {
            record_unrecorded(r, store, &siblings, rest)?;
        }
        Ok(())
    })?;
    if !dry_run && r.restored > before {
        pgrx::warning!(
            "oas_gc: store \"{}\": {} referenced object(s) were in trash and have been put back",
            r.store,
            r.restored - before
        );
    }
    Ok(())
}

/// Move referenced objects back out of trash and drop their trash records. One that cannot be
/// moved blocks deletion in this store for the run.
fn put_back(
    r: &mut Report,
    store: &Store,
    paths: Vec<String>,
    syncs: &mut FolderSyncs,
) -> Result<(), OasError> {
    let moves: Vec<(String, String)> = paths.iter().map(|p| (trash_key(p), p.clone())).collect();
    let results = move_objects(store, &moves, syncs)?;
    let mut done = Vec::new();
    for (p, res) in paths.into_iter().zip(results) {
        match res {
            Ok(()) | Err(OasError::ObjectMissing { .. }) => done.push(p),
            Err(e) => r.refuse(format!("could not put back referenced object {p}: {e}")),
        }
    }
    drop_records(&r.store, done)
}

/// Record trashed objects that no store name of this place has a trash record for.
fn record_unrecorded(
    r: &mut Report,
    store: &Store,
    siblings: &[String],
    listed: Vec<Listed>,
) -> Result<(), OasError> {
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
    .spi()?;
    let (mut new, mut owners, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for (p, o) in paths.into_iter().zip(listed) {
        if !known.contains(&p) {
            owners.push(owner_of(store, &p).to_string());
            sizes.push(o.size as i64);
            new.push(p);
        }
    }
    if new.is_empty() {
        return Ok(());
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
    .spi()
}

/// Forget the trash records of `paths` (put back, restored or purged).
fn drop_records(store: &str, paths: Vec<String>) -> Result<(), OasError> {
    Spi::run_with_args(
        "DELETE FROM oas.gc_trash WHERE store = $1 AND path = ANY($2)",
        &[store.into(), paths.into()],
    )
    .spi()
}

/// Delete trash recorded longer ago than `retention`, except objects `refs` says are referenced
/// again (the next run puts those back). In a dry run (`count_only`), count it.
pub(super) fn purge_recorded(
    r: &mut Report,
    store: &Store,
    retention: f64,
    count_only: bool,
    refs: Option<&RefSet>,
) -> Result<(), OasError> {
    let mut last = String::new();
    while in_scratch(|| purge_page(r, store, retention, count_only, refs, &mut last))? {
        pgrx::check_for_interrupts!();
    }
    Ok(())
}

/// One page of [`purge_recorded`]: false when there was nothing left.
fn purge_page(
    r: &mut Report,
    store: &Store,
    retention: f64,
    count_only: bool,
    refs: Option<&RefSet>,
    last: &mut String,
) -> Result<bool, OasError> {
    let batch = path_size_page(
        "SELECT path, size FROM oas.gc_trash
         WHERE store = $1 AND path > $2 AND trashed_at < now() - make_interval(secs => $3)
         ORDER BY path LIMIT $4",
        &r.store,
        last,
        retention,
    )?;
    let Some((l, _)) = batch.last() else {
        return Ok(false);
    };
    *last = l.clone();
    let batch: Vec<(String, i64)> = batch
        .into_iter()
        .filter(|(p, _)| !refs.is_some_and(|s| s.covers(Section::Schema, p)))
        .collect();
    if count_only {
        r.purged += batch.len() as i64;
        r.purged_bytes += batch.iter().map(|b| b.1).sum::<i64>();
        return Ok(true);
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
            Err(e) => r.note(e.to_string()),
        }
    }
    drop_records(&r.store, purged)?;
    Ok(true)
}
