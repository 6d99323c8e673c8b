//! A reference is not a capability: who may read an object.
//!
//! A role that may read a store's objects (`read` in `oas.store_grant`) still reads an object
//! only when a row it may SELECT references it. A JSON reference typed by hand (another schema's
//! hash, a guessed path) is input, never authority. The check, for roles that do not administer
//! stores (superusers and `oas_admin` need none) and stores that require it
//! (`oas.store.require_references`, on by default):
//!
//! 1. the ledger (`oas.ref_log`, read as the extension owner) names the tables and columns whose
//!    rows reference the object now;
//! 2. of those, only tables in the schema whose section holds the object count: a reference to
//!    `_hash/other_schema/...` copied into one's own table is no way in;
//! 3. the caller needs USAGE on the table's schema and SELECT on the table or the column, and
//!    where row security applies to it, a visible row that references the object.
//!
//! Cost: one indexed ledger lookup per read (README "Security"; BENCHMARKS.md).

use std::cell::RefCell;
use std::ffi::{CStr, CString};

use oas_core::backend::Store;
use oas_core::gc::owner_schema;
use oas_core::OasError;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{PgBuiltInOids, PgOid};

use crate::api::tracking::{quote_ident, regclass_text};
use crate::catalog::StoreRow;
use crate::error::OrRaise;
use crate::privilege::{as_owner, is_store_admin, pinned};

/// One column whose rows reference the object, as the ledger says.
struct Referrer {
    table: pg_sys::Oid,
    column: String,
}

/// May the current user read `path` of `store` (whose catalog row is `row`)? Errors with 42501
/// when not.
pub fn require_referenced(row: &StoreRow, store: &Store, path: &str) -> Result<(), OasError> {
    if !row.require_references || is_store_admin() {
        return Ok(());
    }
    let owner = owner_schema(&store.spec.hash_prefix, &store.spec.schema_prefix, path);
    let readable = owner.is_some_and(|schema| {
        referrers(&row.name, path)
            .iter()
            .any(|r| may_read_through(r, schema, &row.name, path))
    });
    if readable {
        return Ok(());
    }
    Err(OasError::PermissionDenied {
        message: format!(
            "permission denied to read object \"{path}\" of store \"{}\": no row you may read references it",
            row.name
        ),
        hint: Some(format!(
            "read objects through the rows that reference them (SELECT oas.oas_hash_get(col) FROM tbl); an administrator may switch this check off with SELECT oas.oas_store_require_references('{}', false)",
            row.name
        )),
    })
}

/// The columns whose rows reference `path` of `store` now. The ledger is readable only by
/// administrators, so it is read as the extension owner, through a plan prepared once per
/// backend (this is on the path of every read).
fn referrers(store: &str, path: &str) -> Vec<Referrer> {
    thread_local! {
        static LEDGER: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
    }
    as_owner(|| {
        Spi::connect(|c| {
            LEDGER.with_borrow_mut(|slot| {
                if slot.is_none() {
                    let text = PgOid::BuiltIn(PgBuiltInOids::TEXTOID);
                    *slot = Some(
                        c.prepare(
                            "SELECT r.table_oid, r.column_name FROM oas.ref_log r
                              WHERE r.store OPERATOR(pg_catalog.=) $1
                                AND r.path OPERATOR(pg_catalog.=) $2
                              GROUP BY r.table_oid, r.column_name
                             HAVING pg_catalog.sum(r.delta) OPERATOR(pg_catalog.>) 0",
                            &[text, text],
                        )?
                        .keep(),
                    );
                }
                let stmt = slot.as_ref().expect("prepared above");
                c.select(stmt, None, &[store.into(), path.into()])?
                    .map(|r| {
                        Ok(Referrer {
                            table: r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                            column: r.get::<String>(2)?.unwrap_or_default(),
                        })
                    })
                    .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
            })
        })
        .or_raise()
    })
}

/// May the current user read a row of `r.table` whose column `r.column` references `path` of
/// `store`? Only a table of `schema`, whose section holds the object, vouches for it.
fn may_read_through(r: &Referrer, schema: &str, store: &str, path: &str) -> bool {
    let Ok(column) = CString::new(r.column.as_str()) else {
        return false;
    };
    // SAFETY: syscache lookups by oid (a table dropped since the ledger row answers "none"), and
    // ACL and row-security checks of a table they found.
    let (privileged, row_security) = unsafe {
        let nsp = pg_sys::get_rel_namespace(r.table);
        if nsp == pg_sys::InvalidOid {
            return false;
        }
        let nsp_name = pg_sys::get_namespace_name(nsp);
        if nsp_name.is_null() || CStr::from_ptr(nsp_name).to_bytes() != schema.as_bytes() {
            return false;
        }
        let attnum = pg_sys::get_attnum(r.table, column.as_ptr());
        if attnum == pg_sys::InvalidAttrNumber as i16 {
            return false;
        }
        let me = pg_sys::GetUserId();
        let ok = |res: pg_sys::AclResult::Type| res == pg_sys::AclResult::ACLCHECK_OK;
        let usage = ok(pg_sys::pg_namespace_aclcheck(
            nsp,
            me,
            pg_sys::ACL_USAGE as _,
        ));
        let select = ok(pg_sys::pg_class_aclcheck(
            r.table,
            me,
            pg_sys::ACL_SELECT as _,
        )) || ok(pg_sys::pg_attribute_aclcheck(
            r.table,
            attnum,
            me,
            pg_sys::ACL_SELECT as _,
        ));
        (
            usage && select,
            pg_sys::check_enable_rls(r.table, pg_sys::InvalidOid, true)
                == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32,
        )
    };
    if !privileged {
        return false;
    }
    if !row_security {
        return true;
    }
    // Row security applies: look for a row the caller sees, as the caller (its policies are its
    // table owner's choice for this very caller). A scan; tables with policies cost more.
    visible_row_references(r, store, path)
}

/// Does a row the caller sees (its row-security policies applied) reference `path` of `store`?
/// The ledger named this column for `store`, so a reference naming no store is `store`'s: the
/// reading of a reference is `oas._reference`'s (sql/tracking.sql), inlined here.
fn visible_row_references(r: &Referrer, store: &str, path: &str) -> bool {
    let query = format!(
        "SELECT EXISTS (SELECT 1 FROM {} t CROSS JOIN LATERAL oas._reference(t.{}::pg_catalog.jsonb, $2) o
                         WHERE o.path OPERATOR(pg_catalog.=) $1 AND o.store OPERATOR(pg_catalog.=) $2)",
        regclass_text(r.table),
        quote_ident(&r.column),
    );
    pinned(|| {
        crate::spi::read_one::<bool>(&query, &[path.into(), store.into()])
            .or_raise()
            .unwrap_or(false)
    })
}
