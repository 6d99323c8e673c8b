//! pg_oas: DataJoint's Object-Augmented Schema inside PostgreSQL.
//!
//! This crate is the thin PostgreSQL layer. Everything that can be written without PostgreSQL
//! (store specs, hashes, paths, references, store clients, object operations) lives in the
//! `oas_core` crate under `core/`. Here:
//!
//! | module | what it holds |
//! |---|---|
//! | [`guc`] | the `oas.*` settings |
//! | [`runtime`] | the per-backend tokio runtime and the cancellable `block_on` |
//! | [`write_behind`] | uploads a statement keeps in flight, and the statement ends that wait for them |
//! | [`durability`] | what a transaction does before it commits: wait for uploads, sync files |
//! | [`error`] | `OasError` → SQLSTATE, message and hint |
//! | [`catalog`] | reading stores from `oas.store`, the client cache |
//! | [`capability`] | a reference is not a capability: may the caller read this object |
//! | [`privilege`] | who may do what; running as the extension owner with a pinned `search_path` |
//! | [`spi`] | queries that only read, without a transaction id (hot standbys) |
//! | [`compat`] | C symbols earlier versions' SQL names, kept until their databases update |
//! | [`comments`] | `COMMENT ON FUNCTION` from the doc comments (collected by `build.rs`) |
//! | [`api`] | the SQL functions, one file per topic |

use pgrx::prelude::*;

pub mod api;
pub mod capability;
pub mod catalog;
pub mod comments;
pub mod compat;
pub mod durability;
pub mod error;
pub mod guc;
pub mod privilege;
pub mod runtime;
pub mod spi;
pub mod write_behind;

::pgrx::pg_module_magic!(name, version);

// The catalog (tables, views, roles) comes first; the functions pgrx generates follow.
pgrx::extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);
// Custom codecs registered in SQL (tracked_columns resolves chains through them).
pgrx::extension_sql_file!("../sql/codecs.sql", name = "codecs");
// Views and functions over tracked columns use generated functions.
pgrx::extension_sql_file!(
    "../sql/tracking.sql",
    name = "tracking",
    requires = [
        "codecs",
        api::tracking::oas_parse_marker,
        api::tracking::oas_check_reference,
        api::paths::oas_encode_pk_text
    ]
);
// The collector's tables and the checks the ledger's trigger asks of it.
pgrx::extension_sql_file!(
    "../sql/collector.sql",
    name = "collector",
    requires = [
        "tracking",
        api::locks::gc_running,
        api::gc::gc_ensure_present
    ]
);
// The reference ledger and the triggers that keep it.
pgrx::extension_sql_file!(
    "../sql/ledger.sql",
    name = "ledger",
    requires = [
        "tracking",
        "collector",
        api::locks::lock_stripes,
        api::locks::lock_stripe,
        api::filepath::check_filepaths,
        api::blob::check_blobs
    ]
);
// Blob values of other types, and the grants of functions that read or list without a row.
pgrx::extension_sql_file!(
    "../sql/writes.sql",
    name = "writes",
    requires = [
        api::write::oas_hash,
        api::write::oas_blob_jsonb,
        api::blob::oas_blob_pack_jsonb,
        api::presign::oas_presign_url,
        api::object::oas_object_list
    ]
);
// Jobs (migrations, moves): their catalog and the procedures that commit after each batch.
pgrx::extension_sql_file!(
    "../sql/jobs.sql",
    name = "jobs",
    requires = [
        "writes",
        api::job::job_top_level,
        api::job::job_step,
        api::migrate::migrate_start,
        api::moves::move_start
    ]
);
// Last: every function's doc comment becomes its COMMENT ON FUNCTION (src/comments.rs).
pgrx::extension_sql!(
    "REVOKE ALL ON FUNCTION oas._comment_functions() FROM PUBLIC;\nSELECT oas._comment_functions();",
    name = "comments",
    finalize
);

/// Called once when the library is loaded into a backend. Registers settings and the
/// statement-end hooks only: the runtime and store clients are created on first use, never here
/// (this may run in the postmaster).
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    write_behind::install_hooks();
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
