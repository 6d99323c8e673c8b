//! Symbols that earlier versions' SQL names and this version no longer calls. A database keeps
//! its old function definitions until `ALTER EXTENSION pg_oas UPDATE`, and creating an old
//! version (`CREATE EXTENSION pg_oas VERSION '0.2.0'`, as the upgrade test does) looks every C
//! symbol up in the installed library: so each one stays here, working, with `sql = false`.
//! `tests/client/test_upgrade.py` checks every symbol of `sql/history/` is in the library.

use pgrx::prelude::*;

use crate::api::npy::oas_npy_slice_array;

/// 0.1.0 and 0.2.0: the text form of `oas_npy_slice_array`, which their SQL wrapper cast back to
/// `double precision[]`.
#[pg_extern(volatile, parallel_unsafe, sql = false)]
fn npy_slice_array_text(reference: pgrx::JsonB, slice: &str) -> String {
    let datum = oas_npy_slice_array(reference, slice).into_datum();
    match datum {
        // SAFETY: a float8[] datum made just now; array_out returns a palloc'd C string.
        Some(d) => unsafe {
            let text = pg_sys::OidOutputFunctionCall(pg_sys::Oid::from(pg_sys::F_ARRAY_OUT), d);
            std::ffi::CStr::from_ptr(text)
                .to_string_lossy()
                .into_owned()
        },
        None => String::from("{}"),
    }
}

/// 0.1.0 to 0.3.0: their row trigger (in PL/pgSQL) stored each pending value through this, with
/// the row as `to_jsonb(NEW)`.
#[pg_extern(volatile, parallel_unsafe, sql = false)]
fn write_pending(
    table: pg_sys::Oid,
    field: &str,
    row: pgrx::JsonB,
    pending: pgrx::JsonB,
) -> pgrx::JsonB {
    use crate::api::paths::KeySource;
    use crate::error::OrRaise;
    let reference =
        crate::api::write::store_pending(table, field, &KeySource::Json(&row.0), &pending.0);
    pgrx::JsonB(reference.or_raise())
}
