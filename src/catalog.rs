//! Stores as the catalog (`oas.store`, `oas.store_secret`) describes them, and the per-backend
//! cache of store clients. Who may change them: [`crate::privilege`].
//!
//! Every use of a store reads its catalog row (one indexed lookup) and compares the row's
//! `version` and the current `oas.*` client settings with the cached client's; a changed store is
//! rebuilt on its next use, in every backend, as soon as the change commits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use oas_core::backend::{ClientSettings, Store};
use oas_core::spec::{merge_secrets, StoreSpec};
use oas_core::OasError;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::error::OrRaise;

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
}

/// Read a store's row: by name, or the default store when `name` is `None` (or empty, which is
/// how DataJoint writes its default store into references).
pub fn store_row(name: Option<&str>) -> Result<StoreRow, OasError> {
    let name = name.filter(|n| !n.is_empty());
    let row = match name {
        Some(n) => Spi::get_three_with_args::<String, JsonB, i64>(
            "SELECT s.name, s.spec, s.version FROM oas.store s WHERE s.name OPERATOR(pg_catalog.=) $1",
            &[n.into()],
        ),
        None => Spi::get_three::<String, JsonB, i64>(
            "SELECT s.name, s.spec, s.version FROM oas.store s WHERE s.is_default",
        ),
    };
    match row {
        Ok((Some(name), Some(spec), Some(version))) => Ok(StoreRow {
            name,
            spec: spec.0,
            version,
        }),
        Ok(_) | Err(pgrx::spi::SpiError::InvalidPosition) => Err(match name {
            Some(n) => OasError::StoreNotConfigured(n.to_string()),
            None => OasError::NoDefaultStore,
        }),
        Err(e) => Err(e).or_raise(),
    }
}

/// The client for a store, from the cache when it is current.
pub fn store(name: Option<&str>) -> Result<Arc<Store>, OasError> {
    store_for(&store_row(name)?)
}

/// The client for a store whose catalog row the caller has already read.
pub fn store_for(row: &StoreRow) -> Result<Arc<Store>, OasError> {
    let settings = crate::guc::client_settings();
    let hit = CACHE.with_borrow(|c| {
        c.get(&row.name)
            .filter(|e| e.version == row.version && e.settings == settings)
            .map(|e| e.store.clone())
    });
    if let Some(store) = hit {
        return Ok(store);
    }
    let secrets = read_secrets(&row.name);
    let spec = StoreSpec::from_json(&merge_secrets(&row.spec, secrets.as_ref()))?;
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
        Spi::get_one_with_args::<JsonB>(
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
