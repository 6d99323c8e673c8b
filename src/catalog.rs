//! Stores as the catalog (`oas.store`, `oas.store_secret`) describes them, and the per-backend
//! cache of store clients. Who may change them: [`crate::privilege`].
//!
//! Every use of a store reads its catalog row (one indexed lookup) and compares the row's
//! `version` and the current `oas.*` client settings with the cached client's; a changed store is
//! rebuilt on its next use, in every backend, as soon as the change commits.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use oas_core::backend::{ClientSettings, Store};
use oas_core::spec::{merge_secrets, StoreSpec};
use oas_core::OasError;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{JsonB, PgBuiltInOids, PgOid};

use crate::error::{OrRaise, SpiOk};

struct Cached {
    version: i64,
    settings: ClientSettings,
    store: Arc<Store>,
}

thread_local! {
    static CACHE: RefCell<HashMap<String, Cached>> = RefCell::new(HashMap::new());
}

/// The public part of a store's catalog row.
pub struct StoreRow {
    pub name: String,
    pub spec: serde_json::Value,
    pub version: i64,
    /// Reads need a referencing row the reader may SELECT ([`crate::capability`]). Read only for
    /// checked rows ([`store_row_to`]); true otherwise.
    pub require_references: bool,
    /// An archive: writes are refused ([`store_row_to`]), the collector leaves it alone.
    pub read_only: bool,
    /// How hash-addressed objects written into it now are compressed (`oas_store_compression`).
    pub compression: Option<oas_core::compress::Zstd>,
}

/// What a caller wants to do with a store's objects (`oas.store_grant`, README "Security").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read objects through any `oas_*` function.
    Read,
    /// Put objects, pending values, uploads.
    Write,
    /// Reference files that are already there (`<filepath@>`): the `write` privilege, but
    /// nothing is written, so a read-only store allows it.
    Register,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write | Access::Register => "write",
        }
    }
}

/// Read a store's row: by name, or the default store when `name` is `None` (or empty, which is
/// how DataJoint writes its default store into references); with `access`, also whether the
/// current user holds that privilege on it (or `admin`, which implies both).
fn read_row(name: Option<&str>, access: Option<Access>) -> Result<(StoreRow, bool), OasError> {
    let name = name.filter(|n| !n.is_empty());
    let wanted: Option<Vec<String>> =
        access.map(|a| vec![a.as_str().to_string(), "admin".to_string()]);
    // With `access`, the grantees of that privilege come with the row (as int8: pgrx reads oid 0,
    // PUBLIC, as NULL) and `holds_grant` decides in C whether the user is one of them; the query
    // runs pinned, as its answer is a privilege. Without `access` it does not name
    // oas.store_grant at all, so store management and the collector also work between
    // installing a new library and ALTER EXTENSION UPDATE.
    let query = format!(
        // read_only and compression through the row's jsonb: a library newer than the schema
        // (between installing it and ALTER EXTENSION UPDATE) finds no such column and reads false
        // and none.
        "SELECT s.name, s.spec, s.version, {},
                coalesce((pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'read_only')::pg_catalog.bool, false),
                pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'compression'
           FROM oas.store s WHERE {}",
        if access.is_some() {
            "s.require_references, ARRAY(SELECT g.grantee::pg_catalog.oid::pg_catalog.int8 FROM oas.store_grant g
                    WHERE g.store OPERATOR(pg_catalog.=) s.name
                      AND g.privilege OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]))"
        } else {
            "true, CASE WHEN $2::pg_catalog.text[] IS NULL THEN NULL::pg_catalog.int8[] END"
        },
        if name.is_some() {
            "s.name OPERATOR(pg_catalog.=) $1"
        } else {
            "s.is_default AND $1::pg_catalog.text IS NULL"
        }
    );
    // Every put and read looks its store up: the plan is prepared once per backend and shape.
    thread_local! {
        static PLANS: RefCell<HashMap<(bool, bool), OwnedPreparedStatement>> =
            RefCell::new(HashMap::new());
    }
    let shape = (access.is_some(), name.is_some());
    let row = crate::privilege::pinned(|| {
        Spi::connect(|c| {
            let rows = PLANS.with_borrow_mut(|plans| {
                let stmt = match plans.entry(shape) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(v) => v.insert(
                        c.prepare(
                            &query,
                            &[
                                PgOid::BuiltIn(PgBuiltInOids::TEXTOID),
                                PgOid::BuiltIn(PgBuiltInOids::TEXTARRAYOID),
                            ],
                        )?
                        .keep(),
                    ),
                };
                c.select(&*stmt, Some(1), &[name.into(), wanted.into()])
            })?;
            let Some(r) = rows.into_iter().next() else {
                return Ok(None);
            };
            Ok::<_, pgrx::spi::SpiError>(Some((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<JsonB>(2)?,
                r.get::<i64>(3)?.unwrap_or_default(),
                r.get::<bool>(4)?.unwrap_or(true),
                r.get::<Vec<i64>>(5)?.unwrap_or_default(),
                r.get::<bool>(6)?.unwrap_or(false),
                r.get::<String>(7)?,
            )))
        })
    })
    .or_raise();
    match row {
        Some((name, Some(spec), version, require_references, grantees, read_only, method)) => Ok((
            StoreRow {
                name,
                spec: spec.0,
                version,
                require_references,
                read_only,
                // The column's CHECK admits only what parses.
                compression: method
                    .and_then(|m| oas_core::compress::parse_method(&m).ok().flatten()),
            },
            crate::privilege::holds_grant(&grantees),
        )),
        _ => Err(match name {
            Some(n) => OasError::StoreNotConfigured(n.to_string()),
            None => OasError::NoDefaultStore,
        }),
    }
}

/// Does the current user hold one of `privileges` on store `store` (see [`read_row`])?
pub fn holds_store_privilege(store: &str, privileges: &[&str]) -> bool {
    let privileges: Vec<String> = privileges.iter().map(|p| p.to_string()).collect();
    let grantees = crate::privilege::pinned(|| {
        crate::spi::read_one::<Vec<i64>>(
            "SELECT ARRAY(SELECT g.grantee::pg_catalog.oid::pg_catalog.int8 FROM oas.store_grant g
                           WHERE g.store OPERATOR(pg_catalog.=) $1
                             AND g.privilege OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]))",
            &[store.into(), privileges.into()],
        )
        .or_raise()
        .unwrap_or_default()
    });
    crate::privilege::holds_grant(&grantees)
}

/// A store's row, for code that has already checked the caller's rights (store management,
/// the collector) or acts for pg_oas itself. User paths use [`store_row_to`].
pub fn store_row_unchecked(name: Option<&str>) -> Result<StoreRow, OasError> {
    read_row(name, None).map(|(row, _)| row)
}

/// A store's row, if the current user may `access` its objects: superusers and `oas_admin`
/// members always may; others need the privilege in `oas.store_grant`. Writing also needs a
/// transaction that may write ([`crate::privilege::require_writable`]).
pub(crate) fn store_row_to(access: Access, name: Option<&str>) -> Result<StoreRow, OasError> {
    if access != Access::Read {
        crate::privilege::require_writable("write objects")?;
    }
    let (row, allowed) = if crate::privilege::is_store_admin() {
        (store_row_unchecked(name)?, true)
    } else {
        read_row(name, Some(access))?
    };
    if access == Access::Write && row.read_only {
        return Err(read_only_store(&row.name));
    }
    if allowed {
        Ok(row)
    } else {
        Err(OasError::PermissionDenied {
            message: format!(
                "permission denied to {} objects of store \"{}\"",
                access.as_str(),
                row.name
            ),
            hint: Some(format!(
                "an administrator grants it: SELECT oas.oas_store_grant('{}', '{}', '<role>')",
                row.name,
                access.as_str()
            )),
        })
    }
}

/// The refusal of a write into a read-only store (an archive).
pub fn read_only_store(name: &str) -> OasError {
    OasError::ReadOnly {
        message: format!("store \"{name}\" is read-only: nothing is written into it"),
        hint: Some(format!(
            "write into another store; an administrator makes it writable again with SELECT oas.oas_store_read_only('{name}', false)"
        )),
    }
}

/// The client for a store, without a privilege check (see [`store_row_unchecked`]).
pub fn store_unchecked(name: Option<&str>) -> Result<Arc<Store>, OasError> {
    store_for(&store_row_unchecked(name)?)
}

/// [`store_unchecked`] for a call that looks up the stores of many references (the triggers'
/// checks): each store is looked up once per call.
pub fn stores_unchecked() -> impl FnMut(&str) -> Result<Arc<Store>, OasError> {
    let mut found: HashMap<String, Arc<Store>> = HashMap::new();
    move |name| {
        if let Some(s) = found.get(name) {
            return Ok(s.clone());
        }
        let s = store_unchecked(Some(name))?;
        found.insert(name.to_string(), s.clone());
        Ok(s)
    }
}

/// The client for a store the current user may write objects to.
pub fn store_to_write(name: Option<&str>) -> Result<Arc<Store>, OasError> {
    store_for(&store_row_to(Access::Write, name)?)
}

/// The client for the store a `<filepath@>` value is registered in, which the current user may
/// write to: `name`, or as DataJoint the store marked `filepath_default`, else the default store.
pub fn filepath_store_to_write(name: Option<&str>) -> Result<Arc<Store>, OasError> {
    let filepath_default = match name {
        Some(_) => None,
        None => crate::privilege::pinned(|| {
            crate::spi::read_one::<String>(
                "SELECT (SELECT s.name FROM oas.store s WHERE s.is_filepath_default)",
                &[],
            )
        })
        .spi()?,
    };
    store_for(&store_row_to(
        Access::Register,
        name.or(filepath_default.as_deref()),
    )?)
}

/// The row and client of the store of a reference whose object `path` the current user may
/// read: `read` on the store, and a row it may SELECT that references the object
/// ([`crate::capability`]).
pub fn store_to_read(name: Option<&str>, path: &str) -> Result<(StoreRow, Arc<Store>), OasError> {
    // This backend's uploads in flight first: a statement reads what it wrote.
    crate::write_behind::flush()?;
    store_to_read_now(name, path)
}

/// [`store_to_read`] without waiting for this backend's uploads in flight: for a caller that
/// waits only for the object it reads ([`crate::write_behind::flush_object`]).
pub fn store_to_read_now(
    name: Option<&str>,
    path: &str,
) -> Result<(StoreRow, Arc<Store>), OasError> {
    let row = store_row_to(Access::Read, name)?;
    let store = store_for(&row)?;
    crate::capability::require_referenced(&row, &store, path)?;
    Ok((row, store))
}

/// The client for a store whose catalog row the caller has already read.
pub fn store_for(row: &StoreRow) -> Result<Arc<Store>, OasError> {
    let settings = crate::guc::client_settings();
    let hit = CACHE.with_borrow(|c| {
        c.get(&row.name)
            .filter(|e| {
                e.version == row.version
                    && e.settings == settings
                    && e.store.spec.compression == row.compression
            })
            .map(|e| e.store.clone())
    });
    if let Some(store) = hit {
        return Ok(store);
    }
    let secrets = read_secrets(&row.name);
    let mut spec = StoreSpec::from_json(&merge_secrets(&row.spec, secrets.as_ref()))?;
    spec.compression = row.compression;
    let store = Arc::new(Store::build(&row.name, spec, &settings)?);
    CACHE.with_borrow_mut(|c| {
        c.insert(
            row.name.clone(),
            Cached {
                version: row.version,
                settings,
                store: store.clone(),
            },
        );
    });
    Ok(store)
}

/// Drop a store's cached client in this backend (other backends notice the new version).
pub fn forget(name: &str) {
    CACHE.with_borrow_mut(|c| c.remove(name));
}

/// Read a store's secrets. Ordinary users may use a store without being able to read its
/// credentials, so the lookup runs as the extension's owner (see [`crate::privilege::as_owner`]).
fn read_secrets(name: &str) -> Option<serde_json::Value> {
    crate::privilege::as_owner(|| {
        crate::spi::read_one::<JsonB>(
            "SELECT s.secrets FROM oas.store_secret s WHERE s.store OPERATOR(pg_catalog.=) $1",
            &[name.into()],
        )
        .or_else(|e| match e {
            pgrx::spi::SpiError::InvalidPosition => Ok(None),
            e => Err(e),
        })
        .or_raise()
        .map(|j| j.0)
    })
}
