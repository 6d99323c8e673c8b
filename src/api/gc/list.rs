//! List: walk the sections of the schemas this database knows, count what is stored, and record
//! what no reference covers as a candidate (with when it was first seen so).

use std::collections::HashSet;

use futures::StreamExt;
use oas_core::backend::Store;
use oas_core::gc::{self, Layout, RefSet, Report, Section, Sighting};
use oas_core::OasError;
use pgrx::prelude::*;

use super::{in_scratch, CHUNK};
use crate::error::SpiOk;
use crate::runtime::block_on;

/// A listed object: its path, size and modification time (seconds since the epoch).
pub(super) struct Listed {
    pub path: String,
    pub size: u64,
    pub mtime: f64,
}

/// The schemas to list, from this database's own records, never from what a reference says: the
/// schemas that exist here, those whose tables the ledger saw referencing this store, and those
/// earlier runs recorded (a real run records them). Objects of other databases sharing the store
/// stay untouched (a hand-written reference to `_hash/otherdb/...` once made a run trash them).
pub(super) fn known_schemas(store: &str, dry_run: bool) -> Result<HashSet<String>, OasError> {
    let mut known: HashSet<String> = Spi::connect(|c| {
        c.select(
            "SELECT nspname::text FROM pg_catalog.pg_namespace
              WHERE nspname !~ '^pg_' AND nspname NOT IN ('information_schema', 'oas')
             UNION SELECT schema FROM oas.gc_known_schema WHERE store = $1
             UNION SELECT DISTINCT schema_name FROM oas.ref_log WHERE store = $1",
            None,
            &[store.into()],
        )?
        .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
        .collect::<Result<HashSet<_>, _>>()
    })
    .spi()?;
    known.retain(|s| !s.is_empty() && s != "_oas" && !s.contains('/'));
    if !dry_run {
        let list: Vec<String> = known.iter().cloned().collect();
        Spi::run_with_args(
            "INSERT INTO oas.gc_known_schema SELECT $1, s FROM unnest($2::text[]) s ON CONFLICT DO NOTHING",
            &[store.into(), list.into()],
        )
        .spi()?;
    }
    Ok(known)
}

/// Walk a prefix in chunks, calling `f` with each chunk. Returns false when the listing failed
/// (the report then refuses deletion and says why).
pub(super) fn walk(
    r: &mut Report,
    store: &Store,
    prefix: &str,
    mut f: impl FnMut(&mut Report, Vec<Listed>) -> Result<(), OasError>,
) -> Result<bool, OasError> {
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
            Ok(v) if v.is_empty() => return Ok(true),
            Ok(v) => {
                let full = v.len() == CHUNK;
                in_scratch(|| f(r, v))?;
                pgrx::check_for_interrupts!();
                if !full {
                    return Ok(true);
                }
            }
            Err(e) => {
                r.refuse(format!("listing {prefix} failed, nothing is deleted: {e}"));
                return Ok(false);
            }
        }
    }
}

/// List the hash and schema sections of the `known` schemas (each prefix once), counting what is
/// stored and recording what `refs` does not cover. Which section an object lies in is decided
/// by its path alone ([`Layout::sight`]), never by the prefix it was listed under.
pub(super) fn list_sections(
    r: &mut Report,
    store: &Store,
    refs: &RefSet,
    known: &HashSet<String>,
    dry_run: bool,
    horizon: f64,
) -> Result<(), OasError> {
    let layout = Layout::new(&store.spec);
    let mut schemas: Vec<&str> = known.iter().map(String::as_str).collect();
    schemas.sort();
    let (listings, warning) = layout.listings(&schemas);
    if let Some(w) = warning {
        r.errors.push(w.into());
    }
    let mut seen = 0i64;
    for (prefix, sections) in listings {
        walk(r, store, &prefix, |r, chunk| {
            let mut orphans = Vec::new();
            for o in chunk {
                match layout.sight(&sections, &o.path, |s| known.contains(s)) {
                    Sighting::Ignore => continue,
                    Sighting::Skip => {
                        r.skipped += 1;
                        continue;
                    }
                    Sighting::Managed(_) => {}
                }
                r.stored += 1;
                r.stored_bytes += o.size as i64;
                // DataJoint's coverage rule for every object: a hash object is covered by its
                // own path, which the rule includes (anything more only keeps more).
                if refs.covers(Section::Schema, &o.path) {
                    continue;
                }
                r.orphaned += 1;
                r.orphaned_bytes += o.size as i64;
                orphans.push(o);
            }
            seen += orphans.len() as i64;
            record_orphans(r, &orphans, dry_run, horizon)
        })?;
    }
    if seen > 0 {
        pgrx::notice!(
            "oas_gc: store \"{}\": {} objects listed, {} unreferenced",
            r.store,
            r.stored,
            r.orphaned
        );
    }
    Ok(())
}

/// Record unreferenced objects as candidates (real run), or count those a real run would move
/// now (dry run). An object whose modification time changed starts its grace period again.
fn record_orphans(
    r: &mut Report,
    orphans: &[Listed],
    dry_run: bool,
    horizon: f64,
) -> Result<(), OasError> {
    if orphans.is_empty() {
        return Ok(());
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
        .spi()?;
        let (n, bytes) = (n.unwrap_or(0), bytes.unwrap_or(0));
        r.trashed += n;
        r.trashed_bytes += bytes;
        r.waiting += orphans.len() as i64 - n;
        return Ok(());
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
    .spi()
}
