//! Fixtures the unit tests of several modules share.

use crate::backend::{ClientSettings, Store};
use crate::spec::StoreSpec;
use serde_json::json;

/// A `file` store named "main" in `dir`, its spec extended by the keys of `extra`.
pub(crate) fn local_store(dir: &std::path::Path, extra: serde_json::Value) -> Store {
    let mut spec = json!({"protocol": "file", "location": dir.to_str().unwrap()});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    Store::build(
        "main",
        StoreSpec::from_json(&spec).unwrap(),
        &ClientSettings::default(),
    )
    .unwrap()
}

/// An `s3` store named "mem" whose objects live in memory (object_store's `InMemory`): the
/// object-store code paths without a server.
pub(crate) fn memory_store() -> Store {
    let spec = json!({"protocol": "s3", "endpoint": "127.0.0.1:1", "bucket": "b", "location": "l"});
    Store::with_client(
        "mem",
        StoreSpec::from_json(&spec).unwrap(),
        std::sync::Arc::new(object_store::memory::InMemory::new()),
    )
}

/// Staging files left in a `file` store's `_oas/staging/`.
pub(crate) fn staging_left(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("_oas/staging"))
        .map(|d| d.count())
        .unwrap_or(0)
}
