//! The SQL functions, one file per topic. Each function parses its arguments, calls into
//! `oas_core` (through [`crate::runtime::block_on`] when it talks to a store) and raises errors
//! with [`crate::error::OrRaise`].

/// A type a `#[pg_extern]` returns through its own [`pgrx::IntoDatum`], as SQL type `$sql`.
macro_rules! returned_as {
    ($ty:ty, $sql:literal) => {
        // SAFETY: returns the datum `into_datum` made, of the declared SQL type.
        unsafe impl pgrx::callconv::BoxRet for $ty {
            unsafe fn box_into<'fcx>(
                self,
                fcinfo: &mut pgrx::callconv::FcInfo<'fcx>,
            ) -> pgrx::datum::Datum<'fcx> {
                match pgrx::IntoDatum::into_datum(self) {
                    // SAFETY: a datum of the function's declared return type.
                    Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
                    None => fcinfo.return_null(),
                }
            }
        }

        pgrx::impl_sql_translatable!($ty, $sql);
    };
}
pub(crate) use returned_as;

pub mod attach;
pub mod blob;
pub mod bytea;
pub mod copy;
pub mod filepath;
pub mod gc;
pub mod hash;
pub mod job;
pub mod locks;
pub mod migrate;
pub mod moves;
pub mod npy;
pub mod object;
pub mod paths;
pub mod presign;
pub mod store;
pub mod tracking;
pub mod upload;
pub mod write;

/// The largest value a `bytea` can hold: PostgreSQL's MaxAllocSize less the 4-byte header.
pub const MAX_BYTEA: u64 = (1 << 30) - 1 - 4;

/// Seconds in `interval`, as `extract(epoch FROM interval)` counts them, from pgrx's fields (no
/// query).
pub fn interval_seconds(interval: pgrx::datum::Interval) -> f64 {
    oas_core::interval::epoch_seconds(interval.months(), interval.days(), interval.micros())
}
