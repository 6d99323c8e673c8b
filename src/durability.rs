//! What a transaction does before it commits (or is prepared for two-phase commit): wait for
//! the uploads still in flight ([`crate::write_behind`]), then make durable what it wrote.
//!
//! Durability at commit for `file` stores (README "Durability"): a put writes its object without
//! fsync ([`oas_core::backend::Store::deferring`]) and records it here; before the transaction
//! commits every object it wrote, and each directory that names one, is synced together
//! ([`oas_core::ops::sync_written`]). A failed upload or sync aborts the transaction. The list
//! outlives `ROLLBACK TO SAVEPOINT`: an object written in a rolled-back subtransaction may be
//! found again by a later put of the same content, whose reference commits. An aborted
//! transaction syncs nothing and cancels its uploads; what it wrote is the collector's.

use std::cell::RefCell;
use std::sync::Arc;

use oas_core::backend::Store;
use oas_core::ops::{sync_written, SyncedDirs, Written};
use oas_core::OasError;
use pgrx::{register_xact_callback, PgXactCallbackEvent};

use crate::error::OrRaise;

#[derive(Default)]
struct Pending {
    written: Written,
    /// Directories this backend has synced (kept across transactions: a directory on disk stays).
    synced: SyncedDirs,
    /// The transaction callbacks are registered (pgrx forgets them at commit and abort).
    hooked: bool,
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

/// The store to write `store`'s new objects through: for a `file` store that fsyncs, the same
/// store without fsync ([`Store::deferring`]), whose objects [`written`] then records; any
/// other store itself.
pub fn target(store: &Arc<Store>) -> Arc<Store> {
    store.deferring().unwrap_or(store).clone()
}

/// The object at `rel` of `store` was written (through [`target`]) or found by this transaction:
/// on a `file` store that fsyncs, sync it before the transaction commits; elsewhere nothing to
/// do. A copy found (a dedup hit) is recorded too: it may be another transaction's, not yet
/// synced.
pub fn written(store: &Store, rel: &str) -> Result<(), OasError> {
    if store.deferring().is_none() {
        return Ok(());
    }
    PENDING.with_borrow_mut(|p| p.written.add(store, rel, &p.synced))?;
    hook();
    Ok(())
}

/// Register this transaction's callbacks, once.
pub fn hook() {
    if !PENDING.with_borrow_mut(|p| std::mem::replace(&mut p.hooked, true)) {
        register_xact_callback(PgXactCallbackEvent::PreCommit, before_commit);
        register_xact_callback(PgXactCallbackEvent::PrePrepare, before_commit);
        register_xact_callback(PgXactCallbackEvent::Abort, at_abort);
    }
}

fn take() -> Written {
    PENDING.with_borrow_mut(|p| {
        p.hooked = false;
        std::mem::take(&mut p.written)
    })
}

fn before_commit() {
    crate::write_behind::flush().or_raise();
    crate::write_behind::end_transaction();
    let written = take();
    if !written.is_empty() {
        let mut synced = PENDING.with_borrow_mut(|p| std::mem::take(&mut p.synced));
        let done = crate::runtime::block_on(sync_written(written, &mut synced));
        PENDING.with_borrow_mut(|p| p.synced = synced);
        done.or_raise();
    }
}

fn at_abort() {
    crate::write_behind::end_transaction();
    take();
}
