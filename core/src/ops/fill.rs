//! Filling a caller's buffer with a whole object and hashing it on the way: the loops under a
//! verified get ([`super::read`]). The buffer may be uninitialized (a `bytea` or a `Vec` allocated
//! at the object's size and never zeroed); what a loop reports as filled has been written.
//!
//! - A local file is read with positional reads straight into the buffer, part after part, by a
//!   helper thread, while the calling thread hashes the parts already read: MD5 overlaps the read,
//!   with no buffer in between and no second copy. The helper is scoped, so it has ended before
//!   [`from_file`] returns: nothing writes into the caller's memory afterwards, cancelled or not
//!   (a cancel waits for at most the one positional read under way, [`PART`] bytes).
//! - A network stream is copied into the buffer chunk by chunk (by the caller); a large object is
//!   hashed beside it on the blocking pool ([`Hashing`]), from the chunks themselves (owned and
//!   reference-counted), so a dropped read leaves no thread with the caller's memory.

use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;

use crate::hash::ContentHasher;
use crate::stage::with_signals_blocked;

/// Bytes of a local file read at a time (one positional read, then a look at the stop flag).
pub(super) const PART: usize = 256 << 10;
/// Objects from this size up are hashed beside the read. Smaller ones are read and hashed on the
/// calling thread: what a helper saves on them (the read, about a quarter of the MD5 here) is less
/// than a hand-off between threads costs on a busy machine (measured: 1 MiB gets got slower).
pub(super) const BESIDE_MIN: usize = 16 * PART;
/// How often the caller's `cancelled` is polled while the helper reads.
const POLL: Duration = Duration::from_millis(5);
/// A stream's chunks go to the hashing thread in batches of this many bytes (one hand-off each)...
const BATCH: usize = 4 * PART;
/// ... and at most this many batches wait for it (bounds what it holds beyond the result).
const QUEUED: usize = 4;

/// Fill `out` from the start of `file` (up to the file's end, if shorter), hashing what is read
/// when `hasher` is given. The bytes filled, from the start of `out`; `None` when `cancelled`
/// said so first. Small objects, and reads without a hash, are read on this thread.
pub(super) fn from_file(
    file: &File,
    out: &mut [MaybeUninit<u8>],
    hasher: Option<&mut ContentHasher>,
    cancelled: &dyn Fn() -> bool,
) -> io::Result<Option<usize>> {
    match hasher {
        Some(hasher) if out.len() >= BESIDE_MIN => read_beside(file, out, hasher, cancelled),
        hasher => read_here(file, out, hasher, cancelled),
    }
}

fn read_here(
    file: &File,
    out: &mut [MaybeUninit<u8>],
    mut hasher: Option<&mut ContentHasher>,
    cancelled: &dyn Fn() -> bool,
) -> io::Result<Option<usize>> {
    let mut filled = 0;
    for part in out.chunks_mut(PART) {
        if cancelled() {
            return Ok(None);
        }
        let asked = part.len();
        let read = read_part(file, part, filled as u64)?;
        if let Some(h) = hasher.as_mut() {
            h.update(read);
        }
        filled += read.len();
        if read.len() < asked {
            break;
        }
    }
    Ok(Some(filled))
}

/// A helper thread reads part after part into `out`; this thread hashes each as it arrives.
fn read_beside(
    file: &File,
    out: &mut [MaybeUninit<u8>],
    hasher: &mut ContentHasher,
    cancelled: &dyn Fn() -> bool,
) -> io::Result<Option<usize>> {
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<io::Result<&[u8]>>();
    let mut filled = 0;
    let mut outcome = Ok(Some(0));
    std::thread::scope(|s| {
        let stop = &stop;
        // The helper starts with every signal blocked (PostgreSQL's handlers stay on this thread).
        with_signals_blocked(|| {
            s.spawn(move || {
                let mut offset = 0;
                for part in out.chunks_mut(PART) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let asked = part.len();
                    let read = read_part(file, part, offset);
                    let last = !matches!(&read, Ok(r) if r.len() == asked);
                    if let Ok(r) = &read {
                        offset += r.len() as u64;
                    }
                    if tx.send(read).is_err() || last {
                        return;
                    }
                }
            })
        });
        loop {
            match rx.recv_timeout(POLL) {
                Ok(Ok(read)) => {
                    hasher.update(read);
                    filled += read.len();
                    if !cancelled() {
                        continue;
                    }
                    outcome = Ok(None);
                }
                Ok(Err(e)) => outcome = Err(e),
                Err(mpsc::RecvTimeoutError::Timeout) if !cancelled() => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => outcome = Ok(None),
                // The helper has read everything there is.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            stop.store(true, Ordering::Relaxed);
            break;
        }
    });
    outcome.map(|o| o.map(|_| filled))
}

/// Fill `buf` from `offset` of `file` (less at the file's end): the bytes read, now initialized.
fn read_part<'b>(file: &File, buf: &'b mut [MaybeUninit<u8>], offset: u64) -> io::Result<&'b [u8]> {
    let mut n = 0;
    while n < buf.len() {
        let rest = &mut buf[n..];
        let at = libc::off_t::try_from(offset + n as u64).map_err(io::Error::other)?;
        // SAFETY: pread writes at most `rest.len()` bytes into `rest`, valid for writes.
        let k = unsafe { libc::pread(file.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), at) };
        match k {
            0 => break,
            k if k > 0 => n += k as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    // SAFETY: pread wrote the first `n` bytes.
    Ok(unsafe { assume_init(&mut buf[..n]) })
}

/// `buf` as the bytes it holds.
///
/// # Safety
/// Every byte of `buf` has been written.
pub(super) unsafe fn assume_init(buf: &mut [MaybeUninit<u8>]) -> &mut [u8] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the caller vouches for the bytes.
    unsafe { &mut *(buf as *mut [MaybeUninit<u8>] as *mut [u8]) }
}

/// Copy `from` into `to`, which is as long.
pub(super) fn copy_in(to: &mut [MaybeUninit<u8>], from: &[u8]) {
    assert_eq!(to.len(), from.len());
    // SAFETY: as many bytes on both sides; `to` is borrowed mutably, so they do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(from.as_ptr(), to.as_mut_ptr().cast(), from.len()) };
}

/// MD5 of a stream's chunks, on this thread (small objects) or beside it on the blocking pool.
pub(super) enum Hashing {
    Off,
    Here(ContentHasher),
    Beside {
        batch: Vec<Bytes>,
        batched: usize,
        batches: tokio::sync::mpsc::Sender<Vec<Bytes>>,
        digest: tokio::task::JoinHandle<String>,
    },
}

impl Hashing {
    /// No hash unless `verify`; beside the stream for objects of [`BESIDE_MIN`] bytes and more.
    pub(super) fn start(verify: bool, size: usize) -> Self {
        if !verify {
            return Hashing::Off;
        }
        if size < BESIDE_MIN {
            return Hashing::Here(ContentHasher::new());
        }
        let (batches, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(QUEUED);
        // Ends when the sender is dropped: at the end of the stream, or with a dropped read.
        let digest = tokio::task::spawn_blocking(move || {
            let mut h = ContentHasher::new();
            while let Some(batch) = rx.blocking_recv() {
                batch.iter().for_each(|chunk| h.update(chunk));
            }
            h.finish()
        });
        Hashing::Beside {
            batch: Vec::new(),
            batched: 0,
            batches,
            digest,
        }
    }

    pub(super) async fn update(&mut self, chunk: Bytes) {
        match self {
            Hashing::Off => {}
            Hashing::Here(h) => h.update(&chunk),
            Hashing::Beside {
                batch,
                batched,
                batches,
                ..
            } => {
                *batched += chunk.len();
                batch.push(chunk);
                if *batched >= BATCH {
                    *batched = 0;
                    // The thread only stops when the sender is gone, so this cannot fail.
                    drop(batches.send(std::mem::take(batch)).await);
                }
            }
        }
    }

    /// The content hash of everything updated, or `None` when off.
    pub(super) async fn finish(self) -> io::Result<Option<String>> {
        match self {
            Hashing::Off => Ok(None),
            Hashing::Here(h) => Ok(Some(h.finish())),
            Hashing::Beside {
                batch,
                batches,
                digest,
                ..
            } => {
                drop(batches.send(batch).await);
                drop(batches);
                digest.await.map(Some).map_err(io::Error::other)
            }
        }
    }
}
