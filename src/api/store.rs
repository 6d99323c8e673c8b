//! Store management: create, alter, drop, pick the default, import DataJoint config, verify.

use oas_core::backend::Store;
use oas_core::ops::verify_store;
use oas_core::spec::{split_secrets, Protocol, StoreSpec};
use oas_core::OasError;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::catalog;
use crate::error::{raise, OrRaise, SpiOk};
use crate::privilege::{as_owner, current_user_name, require_store_admin};
use crate::runtime::block_on;

fn check_name(name: &str) -> Result<(), OasError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(OasError::invalid_argument_hint(
            format!("invalid store name \"{}\"", name.escape_default()),
            "use 1 to 63 letters, digits, '_', '.' or '-', starting with a letter, digit or '_'",
        ))
    }
}

/// Validate a spec fully: DataJoint's key rules, and that a client can be built from it
/// (for a file store, that its directory exists). Sends no request.
fn validated(name: &str, spec: &Value) -> Result<StoreSpec, OasError> {
    let parsed = StoreSpec::from_json(spec)?;
    Store::build(name, parsed.clone(), &crate::guc::client_settings())?;
    Ok(parsed)
}

fn exists(name: &str) -> bool {
    crate::spi::read_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM oas.store s WHERE s.name OPERATOR(pg_catalog.=) $1)",
        &[name.into()],
    )
    .or_raise()
    .unwrap_or(false)
}

/// The catalog tables are written by the extension's owner only, after the caller's checks:
/// nobody writes `oas.store` or `oas.store_secret` directly (a direct INSERT would skip the
/// check that a `file` store needs the server-file roles).
fn write_secrets(name: &str, spec: &Value) {
    let (_, secret) = split_secrets(spec);
    as_owner(|| {
        Spi::run_with_args(
            "DELETE FROM oas.store_secret s WHERE s.store OPERATOR(pg_catalog.=) $1",
            &[name.into()],
        )
        .or_raise();
        if !secret.is_empty() {
            Spi::run_with_args(
                "INSERT INTO oas.store_secret (store, secrets) VALUES ($1, $2)",
                &[name.into(), JsonB(Value::Object(secret)).into()],
            )
            .or_raise();
        }
    })
}

fn create(name: &str, spec: &Value) -> Result<(), OasError> {
    require_store_admin("create a store", false)?;
    check_name(name)?;
    let parsed = validated(name, spec)?;
    require_store_admin("create a store", parsed.protocol == Protocol::File)?;
    if exists(name) {
        return Err(OasError::StoreExists(name.to_string()));
    }
    let (public, _) = split_secrets(spec);
    let creator = current_user_name();
    as_owner(|| {
        Spi::run_with_args(
            "INSERT INTO oas.store (name, protocol, spec, created_by) VALUES ($1, $2, $3, $4)",
            &[
                name.into(),
                parsed.protocol.as_str().into(),
                JsonB(Value::Object(public)).into(),
                creator.as_str().into(),
            ],
        )
        .or_raise();
        // As every store behaved before per-store privileges: PUBLIC reads and writes. (Not yet
        // in a database still at 0.1.0: ALTER EXTENSION UPDATE grants it to every store.)
        let has_grants =
            Spi::get_one::<bool>("SELECT pg_catalog.to_regclass('oas.store_grant') IS NOT NULL")
                .or_raise()
                .unwrap_or(false);
        if !has_grants {
            return;
        }
        Spi::run_with_args(
            "INSERT INTO oas.store_grant (store, grantee, privilege, granted_by)
             SELECT $1, 0::pg_catalog.oid::pg_catalog.regrole, p, $2
               FROM pg_catalog.unnest(ARRAY['read', 'write']) p",
            &[name.into(), creator.as_str().into()],
        )
        .or_raise();
    });
    write_secrets(name, spec);
    Ok(())
}

fn alter(name: &str, spec: &Value) -> Result<(), OasError> {
    require_store_admin("alter a store", false)?;
    let parsed = validated(name, spec)?;
    let old = catalog::store_row_unchecked(Some(name))?;
    // A store whose old spec no longer parses is treated as a file store: changing it needs
    // every privilege a file store does.
    let old_is_file =
        StoreSpec::from_json(&old.spec).map_or(true, |s| s.protocol == Protocol::File);
    require_store_admin(
        "alter a store",
        parsed.protocol == Protocol::File || old_is_file,
    )?;
    let (public, _) = split_secrets(spec);
    as_owner(|| {
        Spi::run_with_args(
            "UPDATE oas.store s SET protocol = $2, spec = $3,
                    version = pg_catalog.nextval('oas.store_version_seq'::pg_catalog.regclass),
                    updated_at = pg_catalog.now()
              WHERE s.name OPERATOR(pg_catalog.=) $1",
            &[
                name.into(),
                parsed.protocol.as_str().into(),
                JsonB(Value::Object(public)).into(),
            ],
        )
        .or_raise()
    });
    write_secrets(name, spec);
    catalog::forget(name);
    Ok(())
}

fn set_default(name: &str, column: &str) -> Result<(), OasError> {
    require_store_admin("change the default store", false)?;
    catalog::store_row_unchecked(Some(name))?;
    // Two statements: the partial unique index allows one default at a time.
    as_owner(|| {
        Spi::run(&format!(
            "UPDATE oas.store s SET {column} = false WHERE s.{column}"
        ))
        .or_raise();
        Spi::run_with_args(
            &format!(
                "UPDATE oas.store s SET {column} = true WHERE s.name OPERATOR(pg_catalog.=) $1"
            ),
            &[name.into()],
        )
        .or_raise();
    });
    Ok(())
}

/// Create a store from a DataJoint store spec (the JSON object under `stores.<name>` in
/// `datajoint.json`). Credentials in the spec go to `oas.store_secret`.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_store_create(name: &str, spec: JsonB, make_default: default!(bool, false)) -> String {
    create(name, &spec.0).or_raise();
    if make_default {
        set_default(name, "is_default").or_raise();
    }
    name.to_string()
}

/// Replace a store's spec (the whole spec, credentials included).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_store_alter(name: &str, spec: JsonB) -> String {
    alter(name, &spec.0).or_raise();
    name.to_string()
}

/// Remove a store from the catalog. Refused while rows still reference it (or references could
/// not be counted), unless `force`. Its objects stay where they are either way.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_store_drop(
    name: &str,
    if_exists: default!(bool, false),
    force: default!(bool, false),
) -> bool {
    require_store_admin("drop a store", false).or_raise();
    if !force {
        refuse_if_referenced(name).or_raise();
    }
    let dropped = as_owner(|| {
        Spi::get_one_with_args::<bool>(
            "WITH d AS (DELETE FROM oas.store s WHERE s.name OPERATOR(pg_catalog.=) $1 RETURNING 1)
             SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 FROM d",
            &[name.into()],
        )
        .or_raise()
        .unwrap_or(false)
    });
    catalog::forget(name);
    if !dropped && !if_exists {
        raise(OasError::StoreNotConfigured(name.to_string()));
    }
    dropped
}

fn refuse_if_referenced(name: &str) -> Result<(), OasError> {
    let users: Vec<String> = Spi::connect(|client| {
        client
            .select(
                "SELECT format('%s.%s.%s (%s)', schema_name, table_name, column_name,
                               coalesce(refs || ' references', 'not readable by you'))
                 FROM oas.oas_store_references($1)",
                None,
                &[name.into()],
            )?
            .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
    })
    .or_raise();
    if users.is_empty() {
        return Ok(());
    }
    Err(OasError::InUse {
        message: format!("store \"{name}\" is still referenced by rows: {}", users.join(", ")),
        hint: Some(format!(
            "delete those rows or move their objects first, or drop with SELECT oas.oas_store_drop('{name}', force => true); the objects stay in the store either way"
        )),
    })
}

/// The role a grant names: a role's name, or `PUBLIC` (every role; stored as 0).
fn grantee_oid(role: &str) -> Result<pg_sys::Oid, OasError> {
    if role.eq_ignore_ascii_case("public") {
        return Ok(pg_sys::InvalidOid);
    }
    let c = std::ffi::CString::new(role)
        .map_err(|_| OasError::invalid_argument("a role name has no NUL byte"))?;
    // SAFETY: a catalog lookup by name.
    let oid = unsafe { pg_sys::get_role_oid(c.as_ptr(), true) };
    if oid == pg_sys::InvalidOid {
        return Err(OasError::invalid_argument_hint(
            format!("role \"{}\" does not exist", role.escape_default()),
            "name an existing role, or PUBLIC",
        ));
    }
    Ok(oid)
}

fn privilege_arg(privilege: &str) -> Result<&'static str, OasError> {
    match privilege.to_ascii_lowercase().as_str() {
        "read" => Ok("read"),
        "write" => Ok("write"),
        "admin" => Ok("admin"),
        _ => Err(OasError::invalid_argument_hint(
            format!("unknown store privilege \"{}\"", privilege.escape_default()),
            "a store privilege is read, write or admin",
        )),
    }
}

/// Grant or revoke: checks the caller may (superuser, oas_admin, or admin on this store), then
/// changes `oas.store_grant` as the extension's owner. Returns whether a row changed.
fn change_grant(store: &str, privilege: &str, role: &str, grant: bool) -> Result<bool, OasError> {
    let store = catalog::store_row_unchecked(Some(store))?.name;
    require_store_grant_admin(&store)?;
    let privilege = privilege_arg(privilege)?;
    // As int8: pgrx passes InvalidOid (PUBLIC's 0) as NULL.
    let grantee = i64::from(grantee_oid(role)?.to_u32());
    let by = current_user_name();
    let changed = as_owner(|| {
        if grant {
            Spi::get_one_with_args::<i64>(
                "WITH c AS (INSERT INTO oas.store_grant (store, grantee, privilege, granted_by)
                            VALUES ($1, $2::pg_catalog.oid::pg_catalog.regrole, $3, $4)
                            ON CONFLICT DO NOTHING RETURNING 1)
                 SELECT pg_catalog.count(*) FROM c",
                &[store.as_str().into(), grantee.into(), privilege.into(), by.as_str().into()],
            )
        } else {
            Spi::get_one_with_args::<i64>(
                "WITH c AS (DELETE FROM oas.store_grant g
                             WHERE g.store OPERATOR(pg_catalog.=) $1
                               AND g.grantee::pg_catalog.oid OPERATOR(pg_catalog.=) $2::pg_catalog.oid
                               AND g.privilege OPERATOR(pg_catalog.=) $3 RETURNING 1)
                 SELECT pg_catalog.count(*) FROM c",
                &[store.as_str().into(), grantee.into(), privilege.into()],
            )
        }
        .or_raise()
        .unwrap_or(0)
    });
    Ok(changed > 0)
}

/// Superusers, `oas_admin` members and holders of `admin` on the store change its grants.
fn require_store_grant_admin(store: &str) -> Result<(), OasError> {
    crate::privilege::require_writable("change the privileges of a store")?;
    if crate::privilege::is_store_admin() {
        return Ok(());
    }
    let allowed = catalog::holds_store_privilege(store, &["admin"]);
    if allowed {
        return Ok(());
    }
    Err(OasError::PermissionDenied {
        message: format!("permission denied to change the privileges of store \"{store}\""),
        hint: Some(
            "superusers, members of oas_admin and roles with admin on the store grant and revoke"
                .into(),
        ),
    })
}

/// Let `role` (a role name, or PUBLIC) `privilege` (read, write or admin) the objects of store
/// `store`. Returns false if it had that privilege already.
#[pg_extern(volatile, strict, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_store_grant(store: &str, privilege: &str, role: &str) -> bool {
    change_grant(store, privilege, role, true).or_raise()
}

/// Take back what [`oas_store_grant`] gave. Returns false if there was no such grant (a role
/// may still have the privilege through PUBLIC or a role it belongs to).
#[pg_extern(volatile, strict, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_store_revoke(store: &str, privilege: &str, role: &str) -> bool {
    change_grant(store, privilege, role, false).or_raise()
}

/// Whether reads of `store`'s objects need a row the reader may SELECT that references them (on
/// by default; README "Security"). Superusers, `oas_admin` and roles with admin on the store
/// switch it; off means any role with `read` on the store reads any object it can name.
#[pg_extern(volatile, strict, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_store_require_references(store: &str, required: bool) -> bool {
    switch_flag(store, StoreFlag::RequireReferences, required).or_raise()
}

/// Mark `store` read-only (an archive) or writable again. A read-only store refuses every write
/// into it (puts, pending values, uploads in parts; 25006), while reads, verification and
/// `<filepath@>` references to its files work, and the collector moves and deletes nothing in it.
/// Superusers, `oas_admin` and roles with admin on the store switch it.
#[pg_extern(volatile, strict, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_store_read_only(store: &str, read_only: bool) -> bool {
    switch_flag(store, StoreFlag::ReadOnly, read_only).or_raise()
}

/// Mark `store` to keep the hash-addressed objects (`<hash@>`, `<blob@>`, `<attach@>`) and the
/// `<object@>` files written into it from now on zstd-compressed: `method` is `'zstd'` (level 3),
/// `'zstd:N'` (level 1 to 19) or `'none'`; returns the method as `oas.stores` shows it. A
/// compressed object lies at its path followed by `.zst` and its reference adds
/// `"compression": "zstd"` (hash and size stay the uncompressed bytes'); plain DataJoint clients
/// cannot read it. Objects already stored keep their form, and every form stays readable.
/// `<npy@>` values, `<object@>` folders and uploads in parts are never compressed. Superusers,
/// `oas_admin` and roles with admin on the store switch it.
#[pg_extern(volatile, strict, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_store_compression(store: &str, method: &str) -> String {
    set_compression(store, method).or_raise()
}

fn set_compression(store: &str, method: &str) -> Result<String, OasError> {
    let method = oas_core::compress::method_name(oas_core::compress::parse_method(method)?);
    set_column(store, "compression", method.as_str().into())?;
    Ok(method)
}

/// A switch of a store's catalog row that store admins turn (`oas.store`'s boolean columns).
enum StoreFlag {
    RequireReferences,
    ReadOnly,
}

/// Set `flag` of `store` to `on` (see [`set_column`]).
fn switch_flag(store: &str, flag: StoreFlag, on: bool) -> Result<bool, OasError> {
    let column = match flag {
        StoreFlag::RequireReferences => "require_references",
        StoreFlag::ReadOnly => "read_only",
    };
    set_column(store, column, on.into())?;
    Ok(on)
}

/// Set `column` of `store`'s catalog row, for superusers, `oas_admin` and roles with admin on the
/// store. Every use reads the store's row afresh (catalog::read_row): no cache to invalidate.
fn set_column(
    store: &str,
    column: &str,
    value: pgrx::datum::DatumWithOid<'_>,
) -> Result<(), OasError> {
    let name = catalog::store_row_unchecked(Some(store))?.name;
    require_store_grant_admin(&name)?;
    as_owner(|| {
        Spi::run_with_args(
            &format!(
                "UPDATE oas.store s SET {column} = $2, updated_at = pg_catalog.now()
                  WHERE s.name OPERATOR(pg_catalog.=) $1"
            ),
            &[name.as_str().into(), value],
        )
        .spi()
    })
}

/// Make `name` the default store (DataJoint's `stores.default`).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_store_set_default(name: &str) -> String {
    set_default(name, "is_default").or_raise();
    name.to_string()
}

/// Import DataJoint's store configuration as-is: a whole `datajoint.json` (with a `stores` key) or
/// just its `stores` object. Existing stores of the same name are altered. `default` and
/// `filepath_default` are honoured.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_store_import(
    config: JsonB,
) -> TableIterator<'static, (name!(store, String), name!(action, String))> {
    let root = &config.0;
    let stores = root.get("stores").unwrap_or(root);
    let Some(map) = stores.as_object() else {
        raise(OasError::invalid_argument_hint(
            "oas_store_import expects a JSON object",
            r#"pass datajoint.json, or its "stores" object: {"default": "main", "main": {"protocol": "file", "location": "/data"}}"#,
        ));
    };
    let mut rows = Vec::new();
    for (name, spec) in map {
        if name == "default" || name == "filepath_default" {
            continue;
        }
        if exists(name) {
            alter(name, spec).or_raise();
            rows.push((name.clone(), "altered".to_string()));
        } else {
            create(name, spec).or_raise();
            rows.push((name.clone(), "created".to_string()));
        }
    }
    for (key, column) in [
        ("default", "is_default"),
        ("filepath_default", "is_filepath_default"),
    ] {
        if let Some(v) = map.get(key) {
            let Some(target) = v.as_str() else {
                raise(OasError::invalid_argument(format!(
                    "stores.{key} must be a store name"
                )));
            };
            set_default(target, column).or_raise();
            rows.push((target.to_string(), format!("set as {key}")));
        }
    }
    TableIterator::new(rows)
}

/// Check a store end to end: write a probe object, read it back whole and by range, test
/// conditional create, list, delete. One row per step; a failed step says why.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_store_verify(
    name: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(step, String),
        name!(ok, bool),
        name!(elapsed_ms, f64),
        name!(detail, String),
    ),
> {
    let store = catalog::store_to_write(name).or_raise();
    // Fixed width, so the probe's size (shown in the report) is the same every time.
    let probe = format!(
        "{:010}-{:020}",
        unsafe { pg_sys::MyProcPid },
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let steps = block_on(async { Ok(verify_store(&store, &probe).await) }).or_raise();
    TableIterator::new(
        steps
            .into_iter()
            .map(|s| (s.step.to_string(), s.ok, s.millis, s.detail)),
    )
}
