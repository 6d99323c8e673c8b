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
