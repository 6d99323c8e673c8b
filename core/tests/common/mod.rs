//! What the integration tests against the real servers share: their settings from the
//! environment (`eval "$(scripts/servers.sh env)"`), a fresh location per run, and store building.

use std::time::{SystemTime, UNIX_EPOCH};

use oas_core::backend::{ClientSettings, Store};
use oas_core::spec::StoreSpec;

/// A variable of the servers' environment, `None` when unset or empty.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A location no other run uses: `<what>/<pid>-<nanos>`.
pub fn fresh_location(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}/{}-{nanos}", std::process::id())
}

pub fn build(name: &str, spec: serde_json::Value) -> Store {
    Store::build(
        name,
        StoreSpec::from_json(&spec).unwrap(),
        &ClientSettings::default(),
    )
    .unwrap()
}

/// Says why a test against a server is skipped (it then passes).
pub fn skipped(var: &str) {
    eprintln!(
        "skipped: {var} is not set (scripts/servers.sh start; eval \"$(scripts/servers.sh env)\")"
    );
}
