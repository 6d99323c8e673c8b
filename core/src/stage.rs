//! Preparing a large payload for upload while it is still borrowed from the caller (in the
//! extension: PostgreSQL's copy of the query parameter), on two threads at once:
//!
//! - one thread computes the content hash;
//! - the other either writes the bytes to a staging file inside a `file` store (no copy at all),
//!   or copies them into the owned buffer an HTTP client needs (cloud stores).
//!
//! The wall time is the longer of the two instead of their sum. The caller's `cancelled` check is
//! polled every few milliseconds; on cancel both threads stop within one chunk and nothing of the
//! caller's memory is touched after this returns.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;

use crate::backend::{check_below, Store, SYMLINK_HINT};
use crate::error::OasError;
use crate::hash::ContentHasher;

/// Payloads from this size up are prepared on two threads; smaller ones are not worth a thread.
pub const STAGE_MIN: usize = 1 << 20;
/// Work done between two looks at the stop flag.
const CHUNK: usize = 4 << 20;
/// How often the caller's `cancelled` is polled while the threads work.
const POLL: Duration = Duration::from_millis(5);

/// A payload ready to be published.
#[derive(Debug)]
pub struct Prepared {
    pub hash: String,
    pub size: u64,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    /// Written and (if the store fsyncs) synced to this staging path, relative to the store root.
    Staged(String),
    /// Copied into memory the caller no longer owns.
    Owned(Bytes),
}

/// Hash `data` and stage it (file stores) or copy it (others), on two threads.
pub fn prepare(
    store: &Store,
    data: &[u8],
    fsync: bool,
    cancelled: &dyn Fn() -> bool,
) -> Result<Prepared, OasError> {
    let stop = AtomicBool::new(false);
    let staging = store
        .local_root()
        .map(|root| (root.to_path_buf(), staging_name()));
    // Each worker reports whether it succeeded; the first failure stops the other one.
    let (tx, rx) = mpsc::channel::<bool>();
    let mut was_cancelled = false;
    let (hash, body) = std::thread::scope(|s| {
        // The workers start with every signal blocked (they inherit the mask); the main thread's
        // mask is restored right after, so PostgreSQL's handlers keep running on it while it waits.
        let (hasher, mover) = with_signals_blocked(|| {
            let hasher = {
                let (tx, stop) = (tx.clone(), &stop);
                s.spawn(move || {
                    let r = hash_chunks(data, stop);
                    let _ = tx.send(r.is_some());
                    r
                })
            };
            let mover = {
                let (tx, stop, staging) = (tx.clone(), &stop, staging.as_ref());
                s.spawn(move || {
                    let r = match staging {
                        Some((root, rel)) => write_staging(root, rel, data, fsync, stop)
                            .map(|()| Body::Staged(rel.clone())),
                        None => copy_chunks(data, stop).map(Body::Owned),
                    };
                    let _ = tx.send(r.is_ok());
                    r
                })
            };
            (hasher, mover)
        });
        drop(tx);
        // Wait for both threads, looking at `cancelled` in between.
        let mut done = 0;
        while done < 2 {
            match rx.recv_timeout(POLL) {
                Ok(ok) => {
                    done += 1;
                    if !ok {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if cancelled() {
                        was_cancelled = true;
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        (hasher.join(), mover.join())
    });
    let panicked = || OasError::invalid_argument("a staging thread panicked");
    let outcome = (|| {
        if was_cancelled {
            return Err(OasError::Cancelled);
        }
        let body = body
            .map_err(|_| panicked())?
            .map_err(|e| e.naming_store(&store.name))?;
        let hash = hash.map_err(|_| panicked())?.ok_or_else(panicked)?;
        Ok(Prepared {
            hash,
            size: data.len() as u64,
            body,
        })
    })();
    if outcome.is_err() {
        if let Some((root, rel)) = &staging {
            // Never through a link (one could have been put there since).
            if check_below(root, rel.split('/')).is_ok() {
                let _ = std::fs::remove_file(root.join(rel));
            }
        }
    }
    outcome
}

fn hash_chunks(data: &[u8], stop: &AtomicBool) -> Option<String> {
    let mut h = ContentHasher::new();
    for chunk in data.chunks(CHUNK) {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        h.update(chunk);
    }
    Some(h.finish())
}

fn copy_chunks(data: &[u8], stop: &AtomicBool) -> Result<Bytes, OasError> {
    let mut out = Vec::with_capacity(data.len());
    for chunk in data.chunks(CHUNK) {
        if stop.load(Ordering::Relaxed) {
            return Err(OasError::Cancelled);
        }
        out.extend_from_slice(chunk);
    }
    Ok(Bytes::from(out))
}

/// Write `data` to the new file `rel` below the store's directory `root`. No symbolic link below
/// `root` is followed: the folders are checked before and after they are created, and the file
/// itself is created exclusively (`O_EXCL` does not follow a link). See [`crate::backend::NoFollow`]
/// for what a check cannot exclude (a link swapped in right after it).
fn write_staging(
    root: &Path,
    rel: &str,
    data: &[u8],
    fsync: bool,
    stop: &AtomicBool,
) -> Result<(), OasError> {
    let path = root.join(rel);
    let io = |op: &'static str, e: std::io::Error| {
        OasError::store_failure("", op, path.display().to_string(), e.to_string(), &e)
    };
    let no_links = || {
        check_below(root, rel.split('/')).map_err(|e| OasError::StoreForbidden {
            store: String::new(),
            op: "stage",
            path: rel.to_string(),
            detail: e.to_string(),
            hint: Some(SYMLINK_HINT.into()),
        })
    };
    if let Some(dir) = path.parent() {
        no_links()?;
        std::fs::create_dir_all(dir).map_err(|e| io("create staging directory", e))?;
    }
    no_links()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| io("create staging file", e))?;
    for chunk in data.chunks(CHUNK) {
        if stop.load(Ordering::Relaxed) {
            return Err(OasError::Cancelled);
        }
        f.write_all(chunk)
            .map_err(|e| io("write staging file", e))?;
    }
    if fsync {
        f.sync_all().map_err(|e| io("sync staging file", e))?;
    }
    Ok(())
}

/// Staging objects live under `_oas/staging/` of the store, named uniquely per process and call.
/// A crash can leave one behind; they are never referenced, so the collector may remove them.
fn staging_name() -> String {
    unique_name(STAGING_PREFIX)
}

/// `prefix` followed by a name unique per process and call (process id, time, sequence).
pub(crate) fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::AtomicU64;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where staged uploads wait to be published.
pub const STAGING_PREFIX: &str = "_oas/staging/";

/// Run `f` with every signal blocked in the calling thread, so the threads it starts never take
/// a process-directed signal (PostgreSQL's handlers must run on the main thread). The mask is
/// restored afterwards; signals that arrived meanwhile are delivered then.
pub fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: plain libc calls on stack-allocated signal sets, for the calling thread only.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        struct Restore(libc::sigset_t);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: restores the mask saved above.
                unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
            }
        }
        let _restore = Restore(old);
        f()
    }
}

impl Store {
    /// The directory a `file` store writes to; `None` for cloud stores.
    pub fn local_root(&self) -> Option<&Path> {
        (self.spec.protocol == crate::spec::Protocol::File).then(|| Path::new(&self.spec.location))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ClientSettings;
    use crate::spec::StoreSpec;
    use crate::test_support::{local_store, staging_left};
    use serde_json::json;

    #[test]
    fn cancelled_preparation_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        let data = vec![1u8; 64 << 20];
        let e = crate::stage::prepare(&store, &data, true, &|| true).unwrap_err();
        assert!(matches!(e, OasError::Cancelled), "{e}");
        assert_eq!(staging_left(dir.path()), 0);
    }

    #[test]
    fn cloud_stores_get_an_owned_copy() {
        let spec = StoreSpec::from_json(
            &json!({"protocol": "s3", "endpoint": "127.0.0.1:1", "bucket": "b",
            "location": "l", "secure": false, "access_key": "k", "secret_key": "s"}),
        )
        .unwrap();
        let store = Store::build("s3", spec, &ClientSettings::default()).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let p = crate::stage::prepare(&store, &data, true, &|| false).unwrap();
        assert_eq!(p.hash, crate::hash::content_hash(&data));
        match p.body {
            crate::stage::Body::Owned(b) => assert_eq!(b, data),
            other => panic!("expected an owned copy, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_staging_write_is_a_store_error_naming_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path(), json!({}));
        // A file where the staging directory should be: the write fails at once.
        std::fs::write(dir.path().join("_oas"), b"not a directory").unwrap();
        let e = crate::stage::prepare(&store, &vec![3u8; 16 << 20], true, &|| false).unwrap_err();
        match e {
            OasError::Store { store, op, .. } => {
                assert_eq!((store.as_str(), op), ("main", "create staging directory"))
            }
            other => panic!("expected a store error, got {other}"),
        }
    }
}
