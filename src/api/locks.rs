//! The advisory locks that keep new references and the collector apart.
//!
//! Every path to a new reference (`oas_hash_put`, the statement triggers on tracked tables) holds
//! a shared transaction lock on the object's stripe, `(STRIPE_CLASS, oas.lock_stripe(path))`; the
//! collector moves an object only while it holds that stripe exclusively. Restore and purge wait
//! for a store's collector on `(RUN_CLASS, hashtext(store))`.
//!
//! Advisory locks are a name space every role can take, so a waiting writer gives up after
//! `oas.lock_timeout` with SQLSTATE 55P03 instead of waiting forever behind a role that holds
//! them all.

use oas_core::OasError;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::error::{raise, OrRaise};

/// First half of the advisory lock keys guarding new references (see `oas.lock_stripe`).
pub const STRIPE_CLASS: i32 = 1_869_705_984;
/// First half of the key a collector holds on a store for its whole transaction.
pub const RUN_CLASS: i32 = 1_869_705_985;

/// Run `take` (a statement that waits for advisory locks) with PostgreSQL's `lock_timeout` set
/// to `oas.lock_timeout`; a wait that runs out becomes an `OasError::LockTimeout` naming `what`.
fn within_lock_timeout(what: &str, take: impl FnOnce()) {
    let timeout = crate::guc::lock_timeout_ms();
    PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        crate::guc::scoped(&[(c"lock_timeout", &format!("{timeout}ms"))], take)
    }))
    .catch_when(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE, |_| {
        raise(OasError::LockTimeout {
            message: format!("pg_oas: gave up waiting {timeout} ms for the lock {what}"),
            hint: Some(
                "another session holds it: a running oas_gc(), or a session holding pg_oas's advisory locks (see pg_locks, locktype 'advisory'); retry, or raise oas.lock_timeout".into(),
            ),
        })
    })
    .execute()
}

/// Take the transaction-level advisory locks `(class, k)` for each of `keys`, in the order given
/// (callers sort them, so two writers never deadlock), shared or exclusive. Gives up after
/// `oas.lock_timeout`.
pub fn lock_keys(class: i32, keys: &[i32], shared: bool, what: &str) {
    if keys.is_empty() {
        return;
    }
    let query = if shared {
        "SELECT pg_catalog.pg_advisory_xact_lock_shared($1, k) FROM pg_catalog.unnest($2::pg_catalog.int4[]) k"
    } else {
        "SELECT pg_catalog.pg_advisory_xact_lock($1, k) FROM pg_catalog.unnest($2::pg_catalog.int4[]) k"
    };
    within_lock_timeout(what, || {
        Spi::run_with_args(query, &[class.into(), keys.to_vec().into()]).or_raise()
    });
}

/// Take the shared stripe lock for a new reference to `path` (held to the end of the
/// transaction), so no collector moves the object until the reference has committed. One
/// statement: this is on the path of every `oas_hash_put`.
pub fn lock_for_reference(store: &str, path: &str) {
    within_lock_timeout("that keeps the collector away from a new reference", || {
        Spi::run_with_args(
            "SELECT pg_catalog.pg_advisory_xact_lock_shared($1, oas.lock_stripe($2, $3))",
            &[STRIPE_CLASS.into(), store.into(), path.into()],
        )
        .or_raise()
    });
}

/// `oas._lock_stripes(keys)`: the triggers' way to take the stripes of the objects a statement
/// references anew (sorted, distinct).
#[pg_extern(volatile, parallel_unsafe, name = "_lock_stripes")]
fn lock_stripes(keys: Vec<i32>) {
    lock_keys(
        STRIPE_CLASS,
        &keys,
        true,
        "that keeps the collector away from new references",
    );
}
