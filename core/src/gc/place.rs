//! Where a store's objects physically are, and which database collects them.

use object_store::ObjectStoreExt;

use crate::backend::Store;
use crate::error::OasError;

/// Where a store's objects physically are. Two store names with the same identity (a DataJoint
/// config may name one bucket twice) share their objects, so the collector must count the
/// references of both before it calls anything in that place unreferenced.
pub fn location_identity(spec: &crate::spec::StoreSpec) -> String {
    let endpoint = spec
        .endpoint
        .as_deref()
        .unwrap_or(match spec.protocol {
            crate::spec::Protocol::S3 => "s3.amazonaws.com",
            _ => "",
        })
        .trim()
        .to_ascii_lowercase();
    let endpoint = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .unwrap_or(&endpoint)
        .trim_end_matches('/')
        .to_string();
    format!(
        "{}|{}|{}|{}|{}|{}",
        spec.protocol.as_str(),
        endpoint,
        spec.bucket.as_deref().unwrap_or(""),
        spec.container.as_deref().unwrap_or(""),
        spec.account_name.as_deref().unwrap_or(""),
        spec.location.trim_end_matches('/'),
    )
}

/// Where the collector records which database collects a store location.
pub const OWNER_KEY: &str = "_oas/owner.json";

/// Claim the store location for the database `me` (a JSON text naming cluster and database), or
/// find who has: `Ok(None)` when it is ours (now or before), `Ok(Some(owner))` when another
/// database's collector owns it. A location claimed before is only read, so that a collector
/// can run (and free space) on a full file system.
pub async fn claim_owner(store: &Store, me: &str) -> Result<Option<String>, OasError> {
    let key = store.key(OWNER_KEY)?;
    if let Some(found) = read_owner(store, &key).await? {
        return Ok(other_owner(&found, me));
    }
    let payload = object_store::PutPayload::from(bytes::Bytes::from(me.as_bytes().to_vec()));
    match store
        .client()
        .put_opts(&key, payload, object_store::PutMode::Create.into())
        .await
    {
        Ok(_) => return Ok(None),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. })
        | Err(object_store::Error::NotImplemented { .. }) => {}
        Err(e) => return Err(store.error(e, "put", OWNER_KEY)),
    }
    match read_owner(store, &key).await? {
        Some(found) => Ok(other_owner(&found, me)),
        None => {
            // Backends without conditional create: write it.
            let payload =
                object_store::PutPayload::from(bytes::Bytes::from(me.as_bytes().to_vec()));
            store
                .client()
                .put(&key, payload)
                .await
                .map_err(|e| store.error(e, "put", OWNER_KEY))?;
            Ok(None)
        }
    }
}

/// The owner recorded at `key`, `None` if there is none yet.
async fn read_owner(
    store: &Store,
    key: &object_store::path::Path,
) -> Result<Option<bytes::Bytes>, OasError> {
    match store.client().get(key).await {
        Ok(r) => Ok(Some(
            r.bytes()
                .await
                .map_err(|e| store.error(e, "get", OWNER_KEY))?,
        )),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store.error(e, "get", OWNER_KEY)),
    }
}

/// `found` when it names another database than `me`.
fn other_owner(found: &[u8], me: &str) -> Option<String> {
    let found = String::from_utf8_lossy(found).trim().to_string();
    (found != me.trim()).then_some(found)
}
