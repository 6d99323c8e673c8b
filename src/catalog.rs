//! Stores as the catalog (`oas.store`, `oas.store_secret`) describes them, and the per-backend
//! cache of store clients.
//!
//! Every use of a store reads its catalog row (one indexed lookup) and compares the row's
//! `version` and the current `oas.*` client settings with the cached client's; a changed store is
//! rebuilt on its next use, in every backend, as soon as the change commits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use oas_core::backend::{ClientSettings, Store};
use oas_core::spec::{merge_secrets, Protocol, StoreSpec};
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
            "SELECT name, spec, version FROM oas.store WHERE name = $1",
            &[n.into()],
        ),
        None => Spi::get_three::<String, JsonB, i64>(
            "SELECT name, spec, version FROM oas.store WHERE is_default",
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
/// credentials, so the lookup runs as the extension's owner.
fn read_secrets(name: &str) -> Option<serde_json::Value> {
    as_extension_owner(|| {
        Spi::get_one_with_args::<JsonB>(
            "SELECT secrets FROM oas.store_secret WHERE store = $1",
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

/// Run `f` with the extension owner as the current user; the caller's identity is restored after,
/// also when `f` raises (and PostgreSQL restores it on abort regardless).
fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = Spi::get_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'pg_oas'",
    )
    .or_raise()
    .expect("pg_oas is installed");
    struct Restore(pg_sys::Oid, i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores the identity saved below, on this backend's only thread.
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
        }
    }
    let mut uid = pg_sys::Oid::INVALID;
    let mut ctx: i32 = 0;
    // SAFETY: standard save/switch of the current user id, as SECURITY DEFINER functions do.
    let _restore = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut uid, &mut ctx);
        pg_sys::SetUserIdAndSecContext(owner, ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
        Restore(uid, ctx)
    };
    f()
}

/// Creating, changing and dropping stores is for superusers and members of `oas_admin`; a `file`
/// store reads and writes server files, so it also needs `pg_read_server_files` and
/// `pg_write_server_files` (superusers have both).
pub fn require_store_admin(action: &str, protocol: Option<Protocol>) -> Result<(), OasError> {
    let (admin, files) = Spi::get_two::<bool, bool>(
        "SELECT pg_catalog.pg_has_role(current_user, 'oas_admin', 'USAGE'),
                pg_catalog.pg_has_role(current_user, 'pg_read_server_files', 'USAGE')
                AND pg_catalog.pg_has_role(current_user, 'pg_write_server_files', 'USAGE')",
    )
    .or_raise();
    if admin != Some(true) {
        return Err(OasError::PermissionDenied {
            message: format!("permission denied to {action}"),
            hint: Some("only superusers and members of role oas_admin manage stores: GRANT oas_admin TO <role>".into()),
        });
    }
    if protocol == Some(Protocol::File) && files != Some(true) {
        return Err(OasError::PermissionDenied {
            message: format!("permission denied to {action}: a file store reads and writes files on the database server"),
            hint: Some("it also needs GRANT pg_read_server_files, pg_write_server_files TO <role>".into()),
        });
    }
    Ok(())
}
