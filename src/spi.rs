//! Queries that only read, through a read-only SPI client.
//!
//! pgrx's `Spi::get_one*` and `Spi::run*` run every query as an update, and so assign the
//! transaction an id first (`Spi::mark_mutable`): a hot standby refuses that ("cannot assign
//! TransactionIds during recovery"), and on a primary it gives every read an xid of its own.
//! Whatever a read of an object runs (the store's secrets, the extension's owner, the read check)
//! uses [`read_one`] instead, as `catalog::read_row` and the ledger lookup use `Spi::connect`.

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::prelude::*;

/// The first column of the first row of `query`, which must only read (`Spi::get_one_with_args`
/// without the transaction id).
pub fn read_one<A: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid<'_>],
) -> Result<Option<A>, pgrx::spi::SpiError> {
    Spi::connect(|c| c.select(query, Some(1), args)?.first().get_one())
}
