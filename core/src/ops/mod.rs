//! Object operations, written once for every backend. Async, no PostgreSQL: the extension drives
//! them through its cancellable `block_on`, and the unit tests drive them on a local store.
//!
//! | file | what it holds |
//! |---|---|
//! | `compressed.rs` | objects of stores marked for compression: compressed puts, decompressed reads |
//! | `put.rs` | hash-addressed puts (dedup, repair, staged publish) and new schema-addressed objects |
//! | `multipart.rs` | uploads in parts: large hash-addressed puts to cloud stores, `oas_upload_*` |
//! | `read.rs` | verified reads of hash-addressed objects, sizes, ranged reads, `.npy` headers |
//! | `fill.rs` | the loops of a whole read: a local file read beside its hashing, a stream's hash beside it |
//! | `spans.rs` | many ranges of one object, streamed to the caller chunk by chunk |
//! | `verify.rs` | checking a reference's object, and the store probe of `oas_verify_store` |
//! | `sync.rs` | durability at commit for `file` stores: what a transaction wrote, synced together |
//! | `copy.rs` | copying a reference's objects into another store at the same path (moves between tiers) |

mod compressed;
mod copy;
mod fill;
mod multipart;
mod put;
mod read;
mod spans;
mod sync;
mod verify;

pub use compressed::{compress_for, get_file as get_compressed_file};
pub use copy::{
    check_folder, copy_files, destination_reference, existing_acceptable, files_to_copy, CopyFile,
    CopyPlan, Shape,
};
pub use multipart::{put_hash_in_parts, PartPlan, PartUpload};
pub use put::{
    content_hash_yielding, discard, publish, put_hash, put_new, put_prepared, reference_for,
    PutOutcome,
};
pub use read::{
    get_hash, object_size, open_hash, read_head, read_npy_header, read_range, stat, CompressedGet,
    Entry, FileGet, HashGet, Source, StreamGet,
};
pub use spans::{read_spans, RANGE_PART};
pub use sync::{sync_written, SyncedDirs, Written};
pub use verify::{check_reference, verify_store, ProbeStep};

use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;

use crate::backend::Store;
use crate::error::OasError;

/// The size of the object at `key`, or `None` when there is none.
async fn existing_size(
    store: &Store,
    key: &ObjectPath,
    path: &str,
) -> Result<Option<u64>, OasError> {
    match store.client().head(key).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store.diagnose_forbidden(store.error(e, "head", path)).await),
    }
}
