//! Presigned URLs: clients stream an object with their own tools (curl, fsspec, a browser)
//! without credentials for the store.

use oas_core::codec::ObjectRef;
use oas_core::presign::{expires_from_secs, presign_get};
use oas_core::OasError;
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::catalog;
use crate::error::{raise, OrRaise};
use crate::runtime::block_on;

/// A URL that reads the object `reference` names for `expires` (default 1 hour, at most 7 days):
/// a presigned GET URL on S3, GCS and Azure (the URL is signed, the store is not asked), a
/// `file://` URL of the object on a file store (checked to exist). Whoever holds the URL can read
/// the object until it expires, so EXECUTE is granted to `oas_admin` only; grant it to readers
/// deliberately.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_presign_url(reference: JsonB, expires: default!(Option<Interval>, "'1 hour'")) -> String {
    let r = ObjectRef::from_json(&reference.0).or_raise();
    if r.is_dir {
        raise(OasError::invalid_argument_hint(
            format!(
                "\"{}\" is a folder object: a folder has no single URL",
                r.path
            ),
            "presign the files in it by their paths under the folder's path",
        ));
    }
    if r.compressed {
        raise(oas_core::compress::unsupported(&r.path, "a presigned URL"));
    }
    let secs = expires.map_or(3600.0, super::interval_seconds);
    let expires = expires_from_secs(secs).or_raise();
    let (_, store) = catalog::store_to_read(r.store.as_deref(), &r.path).or_raise();
    block_on(presign_get(&store, &r.path, expires)).or_raise()
}
