//! The advisory locks that keep new references and the collector apart: the one home of their
//! classes, keys and the ways they are taken.
//!
//! Every path to a new reference (`oas_hash_put`, the statement triggers on tracked tables) holds
//! a shared transaction lock on the object's stripe, `(STRIPE_CLASS, stripe(path))`; the
//! collector moves an object only while it holds that stripe exclusively (a session lock, taken
//! per batch). A collector holds `(RUN_CLASS, hashtext(store))` for its whole transaction;
//! restore and purge wait for it.
//!
//! Advisory locks are a name space every role can take, so a waiting writer gives up after
//! `oas.lock_timeout` with SQLSTATE 55P03 instead of waiting forever behind a role that holds
//! them all.

use std::cell::RefCell;

use oas_core::OasError;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::error::{OrRaise, SpiOk};

/// First half of the advisory lock keys guarding new references (see `oas.lock_stripe`).
pub const STRIPE_CLASS: i32 = 1_869_705_984;
/// First half of the key a collector holds on a store for its whole transaction.
pub const RUN_CLASS: i32 = 1_869_705_985;

/// How many stripes the lock space of new references has (their keys are 0..STRIPES).
const STRIPES: u32 = 1024;

/// The stripe of an object: `hashtext(path) & 1023`, computed here for the triggers
/// (`oas.lock_stripe`) and the collector alike. By path alone: two store names for one place (a
/// DataJoint config may name a bucket twice) must meet on the same stripe; unrelated objects that
/// share a stripe only wait for each other. Rust rather than SQL, so a library newer than a
/// database's catalog (before `ALTER EXTENSION pg_oas UPDATE`) takes the same locks.
pub fn stripe(path: &str) -> i32 {
    // hashtext() hashes the bytes alike under every deterministic collation (a database's default
    // collation is always one); C names one.
    let text = path.into_datum().expect("a &str is never NULL");
    // SAFETY: hashtext takes one text argument (made just now) and returns an int4 datum.
    let h = unsafe {
        pg_sys::OidFunctionCall1Coll(
            pg_sys::Oid::from(pg_sys::F_HASHTEXT),
            pg_sys::C_COLLATION_OID,
            text,
        )
    };
    (h.value() as u32 % STRIPES) as i32
}

/// `oas.lock_stripe(path)`: the second half of the advisory lock key guarding new references to
/// the object at `path` (the first half is [`STRIPE_CLASS`]).
#[pg_extern(immutable, strict, parallel_safe)]
fn lock_stripe(path: &str) -> i32 {
    stripe(path)
}

/// Run `take` (a statement that waits for advisory locks) with PostgreSQL's `lock_timeout` set
/// to `oas.lock_timeout`; a wait that runs out becomes an `OasError::LockTimeout` naming `what`.
fn within_lock_timeout(
    what: &str,
    take: impl FnOnce() -> Result<(), OasError>,
) -> Result<(), OasError> {
    let timeout = crate::guc::lock_timeout_ms();
    PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        crate::guc::scoped(&[(c"lock_timeout", &format!("{timeout}ms"))], take)
    }))
    .catch_when(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE, |_| {
        Err(OasError::LockTimeout {
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
pub fn lock_keys(class: i32, keys: &[i32], shared: bool, what: &str) -> Result<(), OasError> {
    if keys.is_empty() {
        return Ok(());
    }
    let query = if shared {
        "SELECT pg_catalog.pg_advisory_xact_lock_shared($1, k) FROM pg_catalog.unnest($2::pg_catalog.int4[]) k"
    } else {
        "SELECT pg_catalog.pg_advisory_xact_lock($1, k) FROM pg_catalog.unnest($2::pg_catalog.int4[]) k"
    };
    within_lock_timeout(what, || {
        Spi::run_with_args(query, &[class.into(), keys.to_vec().into()]).spi()
    })
}

/// Take the shared stripe lock for a new reference to `path` (held to the end of the
/// transaction), so no collector moves the object until the reference has committed. One
/// statement: this is on the path of every `oas_hash_put`.
pub fn lock_for_reference(path: &str) -> Result<(), OasError> {
    within_lock_timeout("that keeps the collector away from a new reference", || {
        Spi::run_with_args(
            "SELECT pg_catalog.pg_advisory_xact_lock_shared($1, $2)",
            &[STRIPE_CLASS.into(), stripe(path).into()],
        )
        .spi()
    })
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
    )
    .or_raise();
}

/// `oas._gc_running()`: does another session run a collector (or a restore or purge) on any
/// store? The triggers ask (through `oas._gc_may_hide()`) before they trust `oas.gc_trash`.
#[pg_extern(stable, parallel_unsafe, name = "_gc_running")]
#[search_path(pg_catalog, pg_temp)]
fn gc_running() -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks
                        WHERE locktype OPERATOR(pg_catalog.=) 'advisory'
                          AND classid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
                          AND objsubid OPERATOR(pg_catalog.=) 2 AND granted
                          AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid())",
        &[RUN_CLASS.into()],
    )
    .or_raise()
    .unwrap_or(false)
}

/// The second half of a store's run lock.
fn store_key(store: &str) -> Result<i32, OasError> {
    Ok(
        Spi::get_one_with_args::<i32>("SELECT pg_catalog.hashtext($1)", &[store.into()])
            .spi()?
            .unwrap_or(0),
    )
}

/// One collector per store at a time; the lock lasts until this transaction ends, so the
/// triggers see a collector as running until its records are visible.
pub fn try_lock_run(store: &str) -> Result<bool, OasError> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_try_advisory_xact_lock($1, $2)",
        &[RUN_CLASS.into(), store_key(store)?.into()],
    )
    .spi()?
    .unwrap_or(false))
}

/// Wait for the store's collector, if one is running, and keep others out until this
/// transaction ends: restore and purge must not act on trash a run is changing.
pub fn lock_run(store: &str) -> Result<(), OasError> {
    lock_keys(
        RUN_CLASS,
        &[store_key(store)?],
        false,
        &format!("of the collector of store \"{store}\""),
    )
}

/// Take, without waiting, the stripes of `paths` exclusively (session locks, released by
/// [`release_stripes`] or when the transaction aborts). Returns the stripes had; a writer holds
/// the others.
pub fn try_lock_stripes(paths: &[String]) -> Result<Vec<i32>, OasError> {
    let mut keys: Vec<i32> = paths.iter().map(|p| stripe(p)).collect();
    keys.sort_unstable();
    keys.dedup();
    let locked = Spi::connect_mut(|c| {
        c.update(
            "SELECT k FROM pg_catalog.unnest($1::pg_catalog.int4[]) k
             WHERE pg_catalog.pg_try_advisory_lock($2, k)",
            None,
            &[keys.into(), STRIPE_CLASS.into()],
        )?
        .map(|row| row.get::<i32>(1).map(Option::unwrap_or_default))
        .collect::<Result<Vec<_>, _>>()
    })
    .spi()?;
    hold_stripes(&locked);
    Ok(locked)
}

thread_local! {
    /// Stripes this backend holds exclusively (session locks, which an error does not release).
    static HELD: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

/// Remember stripes taken; if the transaction aborts before they are released (a cancel in the
/// middle of a batch), release them then, or every writer touching them would wait forever.
fn hold_stripes(keys: &[i32]) {
    if keys.is_empty() {
        return;
    }
    let first = HELD.with_borrow(|h| h.is_empty());
    HELD.with_borrow_mut(|h| h.extend_from_slice(keys));
    if first {
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, release_stripes);
    }
}

/// Release every stripe [`try_lock_stripes`] took.
pub fn release_stripes() {
    for k in HELD.with_borrow_mut(std::mem::take) {
        let tag = pg_sys::LOCKTAG {
            // SAFETY: MyDatabaseId is a plain backend global.
            locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            locktag_field2: STRIPE_CLASS as u32,
            locktag_field3: k as u32,
            locktag_field4: 2,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
        };
        // SAFETY: releases a session-level advisory lock this backend took (as
        // pg_advisory_unlock does); a lock not held is reported by LockRelease, not undefined.
        unsafe { pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as i32, true) };
    }
}
