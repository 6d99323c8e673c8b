//! Uploads one statement keeps in flight (README "Many objects in one statement").
//!
//! A put knows its reference before its bytes reach the store: the path comes from the content
//! hash (hash-addressed) or from the key (schema-addressed). So `INSERT … SELECT oas_hash_put(…)
//! FROM …`, a multi-row `VALUES` or a `COPY` of pending values does not wait for each upload:
//! [`submit`] starts it on the backend's runtime and returns, up to `oas.uploads_in_flight`
//! uploads and `oas.upload_memory` bytes at once, and waits for the oldest when either is full.
//!
//! Every upload a statement started has finished before the statement does:
//!
//! - a top-level query waits for its uploads when its executor has run and again when it
//!   finishes (after its AFTER triggers, whose own uploads count too), a top-level utility
//!   statement (`COPY`, `DO`, `CALL`, `FETCH`, `EXECUTE`) when it returns: a failed upload
//!   fails that statement;
//! - anything that reads an object of this backend first waits for all ([`flush`]: the reads
//!   through the catalog, the `<blob@>` check of the ledger's trigger), so a statement reads what
//!   it wrote;
//! - the transaction waits before it commits or prepares ([`crate::durability`]), whatever
//!   ran its uploads (an open cursor, a procedure that commits).
//!
//! An aborted (sub)transaction cancels the uploads it started; what they wrote is the
//! collector's. After `ROLLBACK TO SAVEPOINT` a pending value whose upload did not finish is
//! usable again ([`Upload::restore`]). The runtime is the backend's one current-thread runtime:
//! uploads make progress while this backend waits on any store, and in the kernel's socket
//! buffers meanwhile.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use oas_core::backend::Store;
use oas_core::OasError;
use pgrx::pg_sys;
use pgrx::{register_subxact_callback, PgSubXactCallbackEvent};
use tokio::task::{AbortHandle, Id, JoinSet};

use crate::runtime::block_on;

/// What an upload leaves behind once it has finished, and what undoes its caller's side.
pub struct Upload {
    /// The store the object goes to (as the caller resolved it, not the write target).
    pub store: Arc<Store>,
    /// The objects written, relative to the store's location (a folder's files and manifest).
    pub paths: Vec<String>,
    /// Bytes this upload holds in memory until it finishes.
    pub bytes: usize,
    /// Called if the upload is cancelled or fails: a pending value is made usable again.
    pub restore: Option<Box<dyn FnOnce()>>,
}

struct Entry {
    upload: Upload,
    subxact: pg_sys::SubTransactionId,
    task: AbortHandle,
    /// The `restore` of later puts of the same object, made while this one was in flight.
    joined: Vec<Box<dyn FnOnce()>>,
}

impl Upload {
    /// The upload failed or was cancelled: give its caller's value back.
    fn undo(self) {
        if let Some(restore) = self.restore {
            restore();
        }
    }
}

impl Entry {
    fn undo(self) {
        self.upload.undo();
        self.joined.into_iter().for_each(|restore| restore());
    }
}

#[derive(Default)]
struct Queue {
    tasks: JoinSet<Result<(), OasError>>,
    entries: HashMap<Id, Entry>,
    /// `(store, path)` of every upload in flight: a second put of the same content waits for
    /// nothing and sends nothing (its `restore` joins the first's).
    paths: HashMap<(String, String), Id>,
    bytes: usize,
    /// The subtransaction callback is registered (pgrx forgets it when the transaction ends).
    hooked: bool,
}

thread_local! {
    static QUEUE: RefCell<Queue> = RefCell::new(Queue::default());
}

/// Start `work`, the upload that `upload` describes. With `oas.uploads_in_flight = 1` it runs
/// to its end before this returns, as every put did before; otherwise this waits only while the
/// limits are reached. The error of an earlier upload of this statement may surface here.
pub fn submit(
    upload: Upload,
    work: impl Future<Output = Result<(), OasError>> + Send + 'static,
) -> Result<(), OasError> {
    let limit = crate::guc::uploads_in_flight();
    if limit <= 1 {
        return match block_on(work) {
            Ok(()) => finished(upload),
            Err(e) => {
                upload.undo();
                Err(e)
            }
        };
    }
    let key = (upload.store.name.clone(), upload.paths[0].clone());
    let mut upload = Some(upload);
    QUEUE.with_borrow_mut(|q| {
        if let Some(entry) = q.paths.get(&key).and_then(|id| q.entries.get_mut(id)) {
            // The same object is on its way already; this put's reference names it too.
            let restore = upload.take().and_then(|u| u.restore);
            entry.joined.extend(restore);
        }
    });
    let Some(upload) = upload else {
        return Ok(());
    };
    let memory = crate::guc::upload_memory();
    loop {
        let full = QUEUE.with_borrow(|q| {
            !q.tasks.is_empty() && (q.tasks.len() >= limit || q.bytes + upload.bytes > memory)
        });
        if !full {
            break;
        }
        wait_for_one()?;
    }
    hook();
    // SAFETY: reads this backend's own transaction state.
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let handle = crate::runtime::handle();
    QUEUE.with_borrow_mut(|q| {
        let task = q.tasks.spawn_on(work, &handle);
        q.bytes += upload.bytes;
        q.paths.insert(key, task.id());
        q.entries.insert(
            task.id(),
            Entry {
                upload,
                subxact,
                task,
                joined: Vec::new(),
            },
        );
    });
    Ok(())
}

/// Wait for every upload in flight; the first failure is the error (the others still finish
/// or are cancelled with the statement).
pub fn flush() -> Result<(), OasError> {
    while QUEUE.with_borrow(|q| !q.tasks.is_empty()) {
        wait_for_one()?;
    }
    Ok(())
}

/// Wait while an upload of `path` of store `store` is in flight: [`flush`] for one object, so a
/// copy of an object this statement wrote reads it whole without waiting for every other upload.
pub fn flush_object(store: &str, path: &str) -> Result<(), OasError> {
    let key = (store.to_string(), path.to_string());
    while QUEUE.with_borrow(|q| q.paths.contains_key(&key)) {
        wait_for_one()?;
    }
    Ok(())
}

/// Wait until one upload has ended and settle it.
fn wait_for_one() -> Result<(), OasError> {
    // The queue stays borrowed while the runtime runs: nothing the uploads do touches it.
    let done =
        QUEUE.with_borrow_mut(|q| block_on(async { Ok(q.tasks.join_next_with_id().await) }))?;
    let (id, result) = match done {
        None => return Ok(()),
        Some(Ok((id, r))) => (id, r),
        Some(Err(e)) => (
            e.id(),
            Err(OasError::Internal(format!("upload task ended: {e}"))),
        ),
    };
    let Some(entry) = QUEUE.with_borrow_mut(|q| q.remove(id)) else {
        // Cancelled with its subtransaction: nothing of it is used.
        return Ok(());
    };
    match result {
        Ok(()) => finished(entry.upload),
        Err(e) => {
            entry.undo();
            Err(e)
        }
    }
}

/// An upload ended well: its files are synced before the transaction commits.
fn finished(upload: Upload) -> Result<(), OasError> {
    upload
        .paths
        .iter()
        .try_for_each(|p| crate::durability::written(&upload.store, p))
}

impl Queue {
    fn remove(&mut self, id: Id) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.bytes -= entry.upload.bytes;
        self.paths.remove(&(
            entry.upload.store.name.clone(),
            entry.upload.paths[0].clone(),
        ));
        Some(entry)
    }

    /// Cancel the uploads started in subtransaction `since` or any later one (0: all).
    fn cancel_since(&mut self, since: pg_sys::SubTransactionId) -> Vec<Entry> {
        let ids: Vec<Id> = self
            .entries
            .iter()
            .filter(|(_, e)| e.subxact >= since)
            .map(|(id, _)| *id)
            .collect();
        let cancelled: Vec<Entry> = ids.into_iter().filter_map(|id| self.remove(id)).collect();
        if self.entries.is_empty() {
            // Dropping the set cancels every task in it, those cancelled before included.
            self.tasks = JoinSet::new();
        } else {
            cancelled.iter().for_each(|e| e.task.abort());
        }
        cancelled
    }
}

/// Register the transaction's callbacks once: durability's (which waits for the uploads before
/// commit and calls [`end_transaction`]) and the subtransaction abort that cancels a rolled-back
/// part's uploads and makes its pending values usable again.
fn hook() {
    crate::durability::hook();
    if !QUEUE.with_borrow_mut(|q| std::mem::replace(&mut q.hooked, true)) {
        register_subxact_callback(PgSubXactCallbackEvent::AbortSub, |subid, _parent| {
            let cancelled = QUEUE.with_borrow_mut(|q| q.cancel_since(subid));
            cancelled.into_iter().for_each(Entry::undo);
        });
    }
}

/// The transaction is about to commit (after [`flush`]) or has aborted: cancel what is left
/// (an aborted transaction's pending values are gone with it) and forget the callbacks.
pub fn end_transaction() {
    QUEUE.with_borrow_mut(|q| {
        q.hooked = false;
        q.cancel_since(0);
    });
}

// ---- Statement ends ----
//
// A statement is a query or utility command the client sent: one that runs while no other
// query of this backend is running (pg_stat_statements counts the same way). Queries run by
// functions, triggers, `DO` and `CALL` are inside one.

static mut PREV_EXECUTOR_RUN: pg_sys::ExecutorRun_hook_type = None;
static mut PREV_EXECUTOR_FINISH: pg_sys::ExecutorFinish_hook_type = None;
static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

thread_local! {
    /// Queries and utility commands of this backend running now.
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Install the statement-end hooks (from `_PG_init`; they do nothing while no upload is in
/// flight). Loaded in the middle of a query, this backend counts that query's inner queries as
/// statements: it waits more often than it needs to, never less.
pub fn install_hooks() {
    // SAFETY: `_PG_init` runs once per process, before any query of this library; the previous
    // hooks are kept and called.
    unsafe {
        PREV_EXECUTOR_RUN = pg_sys::ExecutorRun_hook;
        pg_sys::ExecutorRun_hook = Some(executor_run);
        PREV_EXECUTOR_FINISH = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(executor_finish);
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}

/// Runs `inner` one level deeper; true if it was a statement of its own (level 0). The level
/// comes back on error too.
fn nested(inner: impl FnOnce()) -> bool {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            DEPTH.set(DEPTH.get().saturating_sub(1));
        }
    }
    let top = DEPTH.get() == 0;
    DEPTH.set(DEPTH.get() + 1);
    let leave = Leave;
    inner();
    drop(leave);
    top
}

/// At the end of a statement: wait for its uploads; a failed one fails the statement.
fn statement_ends() {
    if QUEUE.with_borrow(|q| !q.tasks.is_empty()) {
        crate::error::OrRaise::or_raise(flush());
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn executor_run(
    query: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
    execute_once: bool,
) {
    // SAFETY (all three hooks): called by PostgreSQL with its arguments, which are passed on
    // unchanged; a PostgreSQL error inside becomes a Rust panic at the FFI boundary.
    let top = nested(|| match PREV_EXECUTOR_RUN {
        Some(prev) => {
            pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query, direction, count, execute_once))
        }
        None => pg_sys::standard_ExecutorRun(query, direction, count, execute_once),
    });
    // The rows went to the client (or to a cursor's FETCH): their references' objects are in
    // place before the statement ends. A SELECT's executor finishes only when its portal is
    // dropped, which may be at COMMIT, after `statement_timeout` has stopped counting.
    if top {
        statement_ends();
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn executor_finish(query: *mut pg_sys::QueryDesc) {
    // AFTER triggers run in here: their uploads are waited for too.
    let top = nested(|| match PREV_EXECUTOR_FINISH {
        Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(query)),
        None => pg_sys::standard_ExecutorFinish(query),
    });
    if top {
        statement_ends();
    }
}

#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let top = nested(|| match PREV_PROCESS_UTILITY {
        Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| {
            prev(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            )
        }),
        None => pg_sys::standard_ProcessUtility(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        ),
    });
    // COMMIT waits in the pre-commit callback, ROLLBACK cancels: neither waits here.
    let transaction_control =
        !pstmt.is_null() && pgrx::is_a((*pstmt).utilityStmt, pg_sys::NodeTag::T_TransactionStmt);
    if top && !transaction_control {
        statement_ends();
    }
}
