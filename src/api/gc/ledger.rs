//! The collector's care of the reference ledger (`oas.ref_log`, kept by the triggers in
//! `sql/ledger.sql`): each real run compacts it, and `oas_ledger_rebuild()` makes it say what the
//! rows reference after the triggers were bypassed.

use oas_core::OasError;
use pgrx::prelude::*;

use crate::error::{OrRaise, SpiOk};
use crate::privilege::{as_owner, require_collector};

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

/// One correction of the ledger: schema, table, column, store, path and the change of its count.
type Correction = (String, String, String, String, String, i64);

/// Make the ledger (`oas.ledger`) say what the rows of every tracked table reference now, after
/// writes that bypassed the triggers (`session_replication_role = replica`, `ALTER TABLE ...
/// DISABLE TRIGGER`, `pg_restore --disable-triggers`). Records one `REBUILD` row in `oas.ref_log`
/// per table, column and object whose count was wrong, and returns them. Writers of tracked
/// tables wait for it to commit (SHARE ROW EXCLUSIVE); readers do not. Needs what `oas_gc` needs,
/// at READ COMMITTED.
#[allow(clippy::type_complexity)] // pgrx needs the row type spelled out here
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn oas_ledger_rebuild() -> TableIterator<
    'static,
    (
        name!(schema_name, String),
        name!(table_name, String),
        name!(column_name, String),
        name!(store, String),
        name!(path, String),
        name!(delta, i64),
    ),
> {
    TableIterator::new(rebuild().or_raise())
}

/// `oas_ledger_rebuild` past the SQL edge.
fn rebuild() -> Result<Vec<Correction>, OasError> {
    require_collector()?;
    super::require_current_catalog("oas_ledger_rebuild()")?;
    // The rows must be read after the locks are granted, under a snapshot of their own.
    super::require_read_committed("oas_ledger_rebuild()")?;
    // Only pg_oas's own query runs: it reads the tracked columns (jsonb, no user code) and
    // writes the ledger, which only the extension's owner may.
    as_owner(|| {
        Spi::connect_mut(|c| {
            c.update("SELECT * FROM oas._ledger_rebuild()", None, &[])?
                .map(|r| {
                    Ok((
                        r.get::<String>(1)?.unwrap_or_default(),
                        r.get::<String>(2)?.unwrap_or_default(),
                        r.get::<String>(3)?.unwrap_or_default(),
                        r.get::<String>(4)?.unwrap_or_default(),
                        r.get::<String>(5)?.unwrap_or_default(),
                        r.get::<i64>(6)?.unwrap_or_default(),
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
        })
        .spi()
    })
}
