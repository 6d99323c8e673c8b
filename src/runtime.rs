//! The per-backend async runtime and the one way to wait on a store.
//!
//! One current-thread tokio runtime per backend, built on first use (never in `_PG_init`, which
//! may run in the postmaster before fork). Helper threads that tokio starts for blocking work
//! (file I/O, DNS) block every signal, so PostgreSQL's signal handlers always run on the main thread.
//!
//! [`block_on`] polls PostgreSQL's interrupt flags while the request runs: on a cancel request,
//! `statement_timeout` or backend termination it drops the request (closing its connection) within
//! about [`INTERRUPT_POLL`] and lets PostgreSQL raise the usual error. While it waits, the backend
//! shows `wait_event_type = 'Extension'` in `pg_stat_activity`.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use oas_core::OasError;
use pgrx::pg_sys;
use tokio::runtime::Runtime;

/// How often a waiting backend looks at its interrupt flags.
pub const INTERRUPT_POLL: Duration = Duration::from_millis(10);

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("pg_oas-io")
            .on_thread_start(block_all_signals)
            .build()
            .unwrap_or_else(|e| {
                crate::error::raise(OasError::Store {
                    store: String::new(),
                    op: "start runtime",
                    path: String::new(),
                    detail: e.to_string(),
                })
            })
    })
}

/// The runtime's handle, to start tasks that run while this backend waits on any store
/// ([`crate::write_behind`]).
pub fn handle() -> tokio::runtime::Handle {
    runtime().handle().clone()
}

fn block_all_signals() {
    // SAFETY: plain libc calls on a zeroed, then filled, signal set for the current thread only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// True when PostgreSQL wants the current query to stop (cancel, timeout, termination).
pub fn cancel_requested() -> bool {
    // SAFETY: these are `volatile sig_atomic_t` flags set by signal handlers on this thread.
    unsafe {
        std::ptr::read_volatile(&raw const pg_sys::InterruptPending) != 0
            && (std::ptr::read_volatile(&raw const pg_sys::QueryCancelPending) != 0
                || std::ptr::read_volatile(&raw const pg_sys::ProcDiePending) != 0)
    }
}

async fn until_cancelled() {
    loop {
        if cancel_requested() {
            return;
        }
        tokio::time::sleep(INTERRUPT_POLL).await;
    }
}

/// Run `fut` to completion unless the query is cancelled first. On cancel the future is dropped
/// and PostgreSQL's own interrupt processing raises the error (57014, or FATAL on termination).
pub fn block_on<T>(fut: impl Future<Output = Result<T, OasError>>) -> Result<T, OasError> {
    run_cancellable(|_| {
        runtime().block_on(async {
            tokio::select! {
                biased;
                () = until_cancelled() => Err(OasError::Cancelled),
                r = fut => r,
            }
        })
    })
}

/// Run the future `make` builds from a future that completes when the query is cancelled: for
/// work that must clean up before it gives up (abort an upload in parts). The work watches the
/// cancel itself and returns [`OasError::Cancelled`] when it has cleaned up; PostgreSQL then raises
/// its error as for [`block_on`].
pub fn block_on_watching<T, F>(
    make: impl FnOnce(Pin<Box<dyn Future<Output = ()>>>) -> F,
) -> Result<T, OasError>
where
    F: Future<Output = Result<T, OasError>>,
{
    run_cancellable(|_| runtime().block_on(make(Box::pin(until_cancelled()))))
}

/// Run blocking work that polls `cancel_requested` itself (such as [`oas_core::stage::prepare`]),
/// shown as a wait, with the same error handling on cancel as [`block_on`].
pub fn run_cancellable<T>(
    work: impl FnOnce(&dyn Fn() -> bool) -> Result<T, OasError>,
) -> Result<T, OasError> {
    let waiting = WaitEvent::start();
    let result = work(&cancel_requested);
    drop(waiting);
    if matches!(result, Err(OasError::Cancelled)) {
        pgrx::check_for_interrupts!();
    }
    result
}

/// While a backend waits on a store, `pg_stat_activity` shows `wait_event_type = 'Extension'`.
struct WaitEvent;

impl WaitEvent {
    fn start() -> Self {
        // SAFETY: sets this backend's own wait-event word, as every PostgreSQL wait does.
        unsafe { pg_sys::pgstat_report_wait_start(pg_sys::PG_WAIT_EXTENSION) };
        WaitEvent
    }
}

impl Drop for WaitEvent {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { pg_sys::pgstat_report_wait_end() };
    }
}
