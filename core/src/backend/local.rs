//! `file` stores: a directory on the database server.

use std::sync::Arc;

use object_store::local::LocalFileSystem;

use super::{ClientSettings, Store};
use crate::error::{Masker, OasError};
use crate::spec::StoreSpec;

pub(super) fn build(
    name: &str,
    spec: StoreSpec,
    settings: &ClientSettings,
    masker: Masker,
) -> Result<Store, OasError> {
    let dir = std::path::Path::new(&spec.location);
    if !dir.is_dir() {
        return Err(OasError::InvalidSpec {
            reason: format!("inaccessible local directory \"{}\"", spec.location),
            hint: Some(
                "create the directory on the database server and make it writable by the server's OS user (usually postgres)".into(),
            ),
        });
    }
    let client = |fsync: bool| {
        LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| OasError::InvalidSpec {
                reason: format!("local directory \"{}\": {e}", spec.location),
                hint: None,
            })
            .map(|fs| fs.with_automatic_cleanup(false).with_fsync(fsync))
    };
    let synced = client(settings.file_fsync)?;
    // Batches of renames go through a twin that does not fsync every rename, and sync each
    // directory they touched once (`Store::unsynced`).
    let unsynced = if settings.file_fsync {
        Some(Arc::new(client(false)?))
    } else {
        None
    };
    Ok(Store::from_parts(
        name,
        spec,
        Arc::new(synced),
        unsynced,
        masker,
    ))
}
