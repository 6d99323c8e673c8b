//! The collector's care of the reference ledger (`oas.ref_log`, kept by the triggers in
//! `sql/ledger.sql`): each real run compacts it.

use oas_core::OasError;
use pgrx::prelude::*;

use crate::error::SpiOk;

/// Fold ledger rows older than an hour into one net row per column and object.
pub(super) fn compact(store: &str) -> Result<(), OasError> {
    Spi::run_with_args(
        "WITH gone AS (
             DELETE FROM oas.ref_log
             WHERE store = $1 AND op <> 'COMPACT' AND at < now() - interval '1 hour'
             RETURNING table_oid, schema_name, table_name, column_name, store, path, delta)
         INSERT INTO oas.ref_log (op, table_oid, schema_name, table_name, column_name, store, path, delta)
         SELECT 'COMPACT', table_oid, max(schema_name), max(table_name), column_name, store, path, sum(delta)
         FROM gone GROUP BY table_oid, column_name, store, path HAVING sum(delta) <> 0",
        &[store.into()],
    )
    .spi()
}
