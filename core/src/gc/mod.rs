//! The garbage collector's pure parts, and the store operations it needs. The decisions that need
//! PostgreSQL (what rows reference, grace, running transactions, locks) are made in the extension
//! (`src/api/gc/`); see `docs/gc-design.md`.
//!
//! | module | what it holds |
//! |---|---|
//! | [`section`] | which section (hash or schema) a path lies in, its schema and owner entry |
//! | [`refset`] | the referenced paths of a store and DataJoint's coverage rule |
//! | [`place`] | where a store's objects physically are, and which database collects them |
//! | [`objects`] | list, move, delete and restore objects; folder syncs |
//! | [`pitr`] | trash retention against the backup window (point-in-time recovery) |
//! | [`report`] | what a run reports per store |
//! | [`uploads`] | records of uploads in parts, aborting those a crash left |

pub mod objects;
pub mod pitr;
pub mod place;
pub mod refset;
pub mod report;
pub mod section;
pub mod uploads;

pub use objects::{
    delete_object, exists, list, move_object, move_objects, restore_from_trash, FolderSyncs,
};
pub use pitr::{pitr_warning, BackupWindow, PITR_RETENTION_FLOOR_S};
pub use place::{claim_owner, location_identity, OWNER_KEY};
pub use refset::{reference_paths, RefSet};
pub use report::Report;
pub use section::{
    is_hash_object, owner_path, owner_schema, require_read_back, schema_of, section_of,
    section_prefix, Layout, Section, Sighting,
};

/// Where collected objects wait for their retention period: `_oas/trash/{path}`.
pub const TRASH_PREFIX: &str = "_oas/trash/";
/// Where large payloads are staged before they are published (see [`crate::stage`]).
pub const STAGING_PREFIX: &str = "_oas/staging/";
/// DataJoint writes a folder object's listing beside it as `{path}.manifest.json`.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// The trash key of an object path.
pub fn trash_key(path: &str) -> String {
    format!("{TRASH_PREFIX}{path}")
}

/// Which of the listed paths (with modification times, in seconds since the epoch) were modified
/// before `horizon`: in `_oas/staging/` and `_oas/uploads/`, what writers that died left (the
/// collector's horizon is now less grace, and before every running transaction; a living
/// writer's file is newer, so an upload in parts must finish within grace).
pub fn older_than(listed: impl IntoIterator<Item = (String, f64)>, horizon: f64) -> Vec<String> {
    listed
        .into_iter()
        .filter(|(_, mtime)| *mtime < horizon)
        .map(|(p, _)| p)
        .collect()
}

/// The object path a trash key came from, if it is one.
pub fn untrash_key(key: &str) -> Option<&str> {
    key.strip_prefix(TRASH_PREFIX).filter(|p| !p.is_empty())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_older_than_the_horizon_was_left_behind() {
        let listed = vec![
            ("_oas/uploads/old.json".to_string(), 10.0),
            ("_oas/uploads/new.json".to_string(), 30.0),
            ("_oas/staging/edge".to_string(), 20.0),
        ];
        assert_eq!(older_than(listed, 20.0), vec!["_oas/uploads/old.json"]);
    }

    #[test]
    fn trash_keys() {
        assert_eq!(untrash_key(&trash_key("_hash/a/b")), Some("_hash/a/b"));
        assert_eq!(untrash_key("_oas/trash/"), None);
    }
}
