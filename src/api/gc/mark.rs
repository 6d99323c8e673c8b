//! Mark: every reference of every tracked column, per store location, read in the caller's
//! snapshot. Anything that cannot be read refuses deletion in the stores it may concern.

use std::collections::{HashMap, HashSet};

use oas_core::gc::{self, RefSet, Report};
use oas_core::OasError;
use pgrx::prelude::*;

use super::CHUNK;
use crate::catalog;
use crate::error::SpiOk;

struct Column {
    label: String,
    /// Why the caller may not read the whole table, if it may not.
    why_not: Option<String>,
    /// The query over the column's references (see `oas._tracked_refs`).
    refs: String,
}

/// Every reference of every tracked column, per store. The schemas a reference names are not
/// recorded: a reference is what a user typed, and must never make this database collect
/// another database's section of a shared store (see `collect_store`).
pub(super) fn mark(reports: &mut [Report]) -> Result<HashMap<String, RefSet>, OasError> {
    // References are collected per physical location: every store name of a location counts.
    let mut ident: HashMap<String, String> = HashMap::new();
    for name in super::store_names()? {
        if let Ok(s) = catalog::store_unchecked(Some(&name)) {
            ident.insert(name.clone(), gc::location_identity(&s.spec));
        }
    }
    let wanted: HashSet<String> = reports
        .iter()
        .filter_map(|r| ident.get(&r.store).cloned())
        .collect();
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
    .spi()?
    .unwrap_or(0);
    if foreign_temp > 0 {
        problems.push((
            None,
            format!("{foreign_temp} column(s) of other sessions' temporary tables may hold references: nothing is deleted"),
        ));
    }
    for col in &columns()? {
        if col.why_not.is_some() {
            problems.push((
                None,
                format!(
                    "cannot read {} (no SELECT privilege, or row security applies): nothing is deleted",
                    col.label
                ),
            ));
            continue;
        }
        // The column's references as oas._tracked_refs reads them (oas._reference gives store
        // and path), with the size each records.
        let query = format!(
            "SELECT q.store, q.path,
                    CASE WHEN jsonb_typeof(q.ref->'size') = 'number' AND (q.ref->>'size')::numeric BETWEEN 0 AND 9e18
                         THEN (q.ref->>'size')::numeric::int8 END
             FROM ({}) q WHERE q.ref <> 'null'::jsonb",
            col.refs
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
        )?;
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
    Ok(out_sets)
}

/// The tracked columns that hold references into stores (not `<filepath@>`), as the one walk over
/// them (`oas._tracked_refs`) gives them: whether the caller may read each whole, and the query
/// that reads its references.
fn columns() -> Result<Vec<Column>, OasError> {
    Spi::connect(|c| {
        c.select(
            "SELECT format('%I.%I.%I', schema_name, table_name, column_name), why_not, refs
             FROM oas._tracked_refs() WHERE addressing <> 'filepath'",
            None,
            &[],
        )?
        .map(|r| {
            Ok(Column {
                label: r.get::<String>(1)?.unwrap_or_default(),
                why_not: r.get::<String>(2)?,
                refs: r.get::<String>(3)?.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
    })
    .spi()
}

/// Run `query` as a cursor, 10 000 rows at a time (each batch freed before the next), and call
/// `f` with its three columns.
fn for_each_row(
    query: &str,
    mut f: impl FnMut(Option<String>, Option<String>, Option<i64>),
) -> Result<(), OasError> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let cursor = format!(
        "oas_gc_mark_{}",
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    Spi::run(&format!("DECLARE {cursor} NO SCROLL CURSOR FOR {query}")).spi()?;
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
        .spi()?;
        pgrx::check_for_interrupts!();
        if n == 0 {
            break;
        }
    }
    Spi::run(&format!("CLOSE {cursor}")).spi()
}
