//! `<filepath@>` values: references to files and folders the user manages in a store. pg_oas
//! validates and records them (`oas_core::reference::registrable_path`) and never writes, moves
//! or deletes what they name; the collector never lists them, `oas_verify()` reports the ones
//! whose files vanished.

use oas_core::ops::{stat, Entry};
use oas_core::reference::{registrable_path, FilepathRef};
use oas_core::OasError;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::catalog;
use crate::error::OrRaise;
use crate::runtime::block_on;

/// A `<filepath@>` value for a file or folder already in `store` (default: the store marked
/// `filepath_default`, else the default store):
/// `{"path","store","size","is_dir","timestamp"}` as DataJoint records it. The path is made
/// canonical and must not lie in the hash or schema sections (nor pg_oas's `_oas/`), must lie
/// under the store's `filepath_prefix` if it has one, and must exist. Needs `write` on the store.
#[pg_extern(volatile, parallel_unsafe)]
fn oas_filepath(path: &str, store: default!(Option<&str>, "NULL")) -> JsonB {
    JsonB(register(path, store).or_raise())
}

fn register(path: &str, store: Option<&str>) -> Result<serde_json::Value, OasError> {
    let store = catalog::filepath_store_to_write(store)?;
    let path = registrable_path(&store.spec, path)?;
    let (size, is_dir) = match block_on(stat(&store, &path))? {
        Some(Entry::File { size }) => (Some(size), false),
        Some(Entry::Folder) => (None, true),
        None => return Err(missing(&store.name, &path)),
    };
    Ok(FilepathRef {
        path,
        store: Some(store.name.clone()),
        size,
        is_dir,
        timestamp: super::write::utc_now(),
    }
    .to_json())
}

/// Called by the ledger's trigger for the new references of a `<filepath@>` column (however
/// they were built): each path must be one `oas_filepath` would register, as written (canonical),
/// and exist. Refuses the statement otherwise.
#[pg_extern(volatile, parallel_unsafe, name = "_check_filepaths")]
fn check_filepaths(stores: Vec<Option<String>>, paths: Vec<Option<String>>) {
    check(&stores, &paths).or_raise()
}

fn check(stores: &[Option<String>], paths: &[Option<String>]) -> Result<(), OasError> {
    let mut store_named = catalog::stores_unchecked();
    for (store, path) in stores.iter().zip(paths) {
        let (Some(store), Some(path)) = (store, path) else {
            continue;
        };
        let s = store_named(store)?;
        let canonical = registrable_path(&s.spec, path)?;
        if &canonical != path {
            return Err(OasError::invalid_argument_hint(
                format!("<filepath@> path \"{path}\" is not canonical (\"{canonical}\")"),
                "build <filepath@> values with oas_filepath(path, store)",
            ));
        }
        if block_on(stat(&s, path))?.is_none() {
            return Err(missing(store, path));
        }
    }
    Ok(())
}

fn missing(store: &str, path: &str) -> OasError {
    OasError::ObjectMissing {
        store: store.to_string(),
        path: path.to_string(),
    }
}
