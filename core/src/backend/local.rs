//! `file` stores: a directory on the database server.

use std::sync::Arc;

use object_store::local::LocalFileSystem;

use super::{ClientSettings, NoFollow, Store};
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
    // Symbolic links below the location are never followed (see `NoFollow`); the location
    // itself may be one.
    let client = |fsync: bool| {
        LocalFileSystem::new_with_prefix(dir)
            .and_then(|fs| NoFollow::new(fs.with_automatic_cleanup(false).with_fsync(fsync)))
            .map_err(|e| OasError::InvalidSpec {
                reason: format!("local directory \"{}\": {e}", spec.location),
                hint: None,
            })
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

#[cfg(test)]
mod tests {
    use crate::backend::{ClientSettings, Store};
    use crate::spec::StoreSpec;
    use serde_json::json;

    #[test]
    fn missing_local_directory_is_a_spec_error() {
        let spec =
            StoreSpec::from_json(&json!({"protocol": "file", "location": "/nonexistent/oas"}))
                .unwrap();
        let e = Store::build("x", spec, &ClientSettings::default()).unwrap_err();
        assert!(
            e.to_string().contains("inaccessible local directory"),
            "{e}"
        );
    }
}
