//! The one error type of pg_oas. Each variant is one thing a user can act on; the PostgreSQL
//! layer maps it to a SQLSTATE (see `src/error.rs` of the extension) and shows [`OasError::hint`].
//!
//! Messages never contain credentials: store-client errors pass through [`Masker`] first.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum OasError {
    /// A store spec that DataJoint's rules (or ours) reject.
    #[error("invalid store spec: {reason}")]
    InvalidSpec {
        reason: String,
        hint: Option<String>,
    },

    /// A store name that is not in the catalog.
    #[error("store \"{0}\" is not configured")]
    StoreNotConfigured(String),

    /// A store with this name exists already.
    #[error("store \"{0}\" already exists")]
    StoreExists(String),

    /// No store was named and none is marked default.
    #[error("no store was given and no default store is configured")]
    NoDefaultStore,

    /// The extension's SQL objects are of another version than the library (a new library is
    /// installed and `ALTER EXTENSION pg_oas UPDATE` has not run yet).
    #[error("pg_oas's catalog in this database is version {catalog}, its library {library}: {what} waits for the update")]
    CatalogOutdated {
        catalog: String,
        library: String,
        what: String,
    },

    /// A malformed argument (store name, schema name, reference JSON, ...).
    #[error("{message}")]
    InvalidArgument {
        message: String,
        hint: Option<String>,
    },

    /// A value beyond what PostgreSQL can hold (a `bytea` is at most 1 GB).
    #[error("{message}")]
    TooLarge {
        message: String,
        hint: Option<String>,
    },

    /// Something pg_oas does not do (for instance a ranged read of a compressed object).
    #[error("{message}")]
    Unsupported {
        message: String,
        hint: Option<String>,
    },

    /// Something still depends on what the caller wants to remove.
    #[error("{message}")]
    InUse {
        message: String,
        hint: Option<String>,
    },

    /// A required argument was NULL.
    #[error("argument \"{0}\" must not be NULL")]
    NullArgument(&'static str),

    /// A lock could not be had within `oas.lock_timeout`.
    #[error("{message}")]
    LockTimeout {
        message: String,
        hint: Option<String>,
    },

    /// Writing objects (or changing stores, or collecting) where nothing may be written: on a hot
    /// standby, in a read-only transaction, or into a read-only store.
    #[error("{message}")]
    ReadOnly {
        message: String,
        hint: Option<String>,
    },

    /// What the call needs first is not there (a table without a primary key for a job).
    #[error("{message}")]
    Prerequisite {
        message: String,
        hint: Option<String>,
    },

    /// A call that commits as it goes (a procedure such as `oas_migrate_column`) inside a
    /// transaction block, where it cannot.
    #[error("{message}")]
    TransactionBlock {
        message: String,
        hint: Option<String>,
    },

    /// The caller may not do this.
    #[error("{message}")]
    PermissionDenied {
        message: String,
        hint: Option<String>,
    },

    /// The object a reference points to is not in the store.
    #[error("object \"{path}\" is missing from store \"{store}\"")]
    ObjectMissing { store: String, path: String },

    /// The object exists but its size or content hash is not what the reference records.
    #[error("object \"{path}\" in store \"{store}\" failed its integrity check: {reason}")]
    IntegrityMismatch {
        store: String,
        path: String,
        reason: String,
    },

    /// The store rejected our credentials (bad key, bad signature).
    #[error("store \"{store}\" rejected the credentials ({op} \"{path}\"): {detail}")]
    Unauthenticated {
        store: String,
        op: &'static str,
        path: String,
        detail: String,
    },

    /// The store accepted the credentials but refused the operation, or pg_oas refused it (a
    /// symbolic link inside a `file` store).
    #[error("store \"{store}\" denied {op} \"{path}\": {detail}")]
    StoreForbidden {
        store: String,
        op: &'static str,
        path: String,
        detail: String,
        /// What to do instead of the generic advice about credentials.
        hint: Option<String>,
    },

    /// The store did not answer within `oas.request_timeout`.
    #[error("store \"{store}\": {op} \"{path}\" timed out")]
    Timeout {
        store: String,
        op: &'static str,
        path: String,
    },

    /// Any other failure talking to the store (network, server error, local I/O).
    #[error("store \"{store}\": {op} \"{path}\" failed: {detail}")]
    Store {
        store: String,
        op: &'static str,
        path: String,
        detail: String,
    },

    /// The store has no room for what was written: its file system is full, or a quota is
    /// reached (`ENOSPC`, `EDQUOT`, see [`is_out_of_space`]).
    #[error("store \"{store}\" is full: {op} \"{path}\" failed: {detail}")]
    StoreFull {
        store: String,
        op: &'static str,
        path: String,
        detail: String,
    },

    /// The query was cancelled (cancel request or statement_timeout) while waiting on a store.
    #[error("canceling statement while waiting for the object store")]
    Cancelled,

    /// A query pg_oas runs failed: a bug or a broken catalog, not user input.
    #[error("pg_oas catalog query failed: {0}")]
    Internal(String),
}

impl OasError {
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        OasError::InvalidArgument {
            message: message.into(),
            hint: None,
        }
    }

    pub fn invalid_argument_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        OasError::InvalidArgument {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A store operation that failed because of `cause`: [`OasError::StoreFull`] when the file
    /// system or a quota is full ([`is_out_of_space`]), else [`OasError::Store`].
    pub fn store_failure(
        store: impl Into<String>,
        op: &'static str,
        path: impl Into<String>,
        detail: impl Into<String>,
        cause: &(dyn std::error::Error + 'static),
    ) -> Self {
        let (store, path, detail) = (store.into(), path.into(), detail.into());
        if is_out_of_space(cause) || is_out_of_space_text(&detail) {
            OasError::StoreFull {
                store,
                op,
                path,
                detail,
            }
        } else {
            OasError::Store {
                store,
                op,
                path,
                detail,
            }
        }
    }

    /// The same error naming `store` (for errors made where the store's name was not known).
    pub fn naming_store(self, name: &str) -> Self {
        match self {
            OasError::Store {
                op, path, detail, ..
            } => OasError::Store {
                store: name.into(),
                op,
                path,
                detail,
            },
            OasError::StoreFull {
                op, path, detail, ..
            } => OasError::StoreFull {
                store: name.into(),
                op,
                path,
                detail,
            },
            OasError::StoreForbidden {
                op,
                path,
                detail,
                hint,
                ..
            } => OasError::StoreForbidden {
                store: name.into(),
                op,
                path,
                detail,
                hint,
            },
            e => e,
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            OasError::InvalidSpec { hint, .. }
            | OasError::InvalidArgument { hint, .. }
            | OasError::PermissionDenied { hint, .. }
            | OasError::ReadOnly { hint, .. }
            | OasError::TooLarge { hint, .. }
            | OasError::InUse { hint, .. }
            | OasError::Unsupported { hint, .. }
            | OasError::LockTimeout { hint, .. }
            | OasError::Prerequisite { hint, .. }
            | OasError::TransactionBlock { hint, .. } => hint.clone(),
            OasError::NullArgument(_) => Some("pass a value, or leave the argument out where it has a default".into()),
            OasError::StoreNotConfigured(name) => Some(format!(
                "create it with SELECT oas.oas_store_create('{name}', '{{\"protocol\": \"file\", \"location\": \"/path/to/dir\"}}'); list stores with SELECT * FROM oas.stores"
            )),
            OasError::StoreExists(name) => Some(format!(
                "change it with SELECT oas.oas_store_alter('{name}', '<spec>'), or drop it first with SELECT oas.oas_store_drop('{name}')"
            )),
            OasError::CatalogOutdated { .. } => {
                Some("run ALTER EXTENSION pg_oas UPDATE in this database".into())
            }
            OasError::NoDefaultStore => Some(
                "name a store, or mark one default with SELECT oas.oas_store_set_default('name')".into(),
            ),
            OasError::ObjectMissing { .. } => Some(
                "the object was deleted or never written; if the same bytes are stored again the reference heals (hash-addressed objects only)".into(),
            ),
            OasError::IntegrityMismatch { .. } => {
                Some("the object was changed or truncated in the store after it was written; restore it from a backup".into())
            }
            OasError::Unauthenticated { store, .. } => Some(format!(
                "check the store's credentials, then SELECT * FROM oas.oas_store_verify('{store}')"
            )),
            OasError::StoreForbidden { hint: Some(h), .. } => Some(h.clone()),
            OasError::StoreForbidden { store, .. } => Some(format!(
                "the store refused the operation: its credentials lack the permission, or are wrong; SELECT * FROM oas.oas_store_verify('{store}') shows each step"
            )),
            OasError::Timeout { .. } => Some("raise oas.request_timeout, or check that the store is reachable".into()),
            OasError::Store { store, .. } => {
                Some(format!("SELECT * FROM oas.oas_store_verify('{store}') checks the store step by step"))
            }
            OasError::StoreFull { store, .. } => Some(format!(
                "store \"{store}\" has no space left: free space on its file system (or raise its quota), delete rows whose objects are no longer needed and run SELECT * FROM oas.oas_gc() to remove unreferenced objects, or move the store to a larger volume; then retry the transaction"
            )),
            OasError::Cancelled | OasError::Internal(_) => None,
        }
    }
}

/// Does `e`, or one of its sources, say that the file system or a quota is full (`ENOSPC`,
/// `EDQUOT`)? The one test of "out of space" for every store error.
pub fn is_out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    // Bounded: error chains are short; a cyclic one must not hang a backend.
    for _ in 0..32 {
        let Some(err) = cur else { return false };
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
                || matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                )
            {
                return true;
            }
        }
        if is_out_of_space_text(&err.to_string()) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// An error already turned into text on its way (the file-system errors of
/// [`crate::backend::NoFollow`] and a detail string are only a message): the operating system's
/// wording of `ENOSPC` or `EDQUOT`, "(os error N)".
fn is_out_of_space_text(text: &str) -> bool {
    [libc::ENOSPC, libc::EDQUOT]
        .iter()
        .any(|code| text.contains(&format!("(os error {code})")))
}

/// Replaces every known secret in a message with `***`.
#[derive(Debug, Default, Clone)]
pub struct Masker {
    secrets: Vec<String>,
}

impl Masker {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        // Very short strings would mask unrelated text; credentials are never that short.
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Masker { secrets }
    }

    pub fn mask(&self, text: impl fmt::Display) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_space_is_found_in_a_chain_or_in_text() {
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(is_out_of_space(&enospc));
        let edquot = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert!(is_out_of_space(&edquot));
        let eio = std::io::Error::from_raw_os_error(libc::EIO);
        assert!(!is_out_of_space(&eio));
        // Wrapped: object_store's local client keeps the io::Error as a source.
        let wrapped = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::other(std::io::Error::from_raw_os_error(
                libc::ENOSPC,
            ))),
        };
        assert!(is_out_of_space(&wrapped));
        // Flattened into a message on the way.
        let text = std::io::Error::other(format!(
            "write /x: {}",
            std::io::Error::from_raw_os_error(libc::ENOSPC)
        ));
        assert!(is_out_of_space(&text));
        match OasError::store_failure("main", "put", "p", "d", &wrapped) {
            OasError::StoreFull { store, op, .. } => {
                assert_eq!((store.as_str(), op), ("main", "put"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            OasError::store_failure("main", "put", "p", "d", &eio),
            OasError::Store { .. }
        ));
        assert!(matches!(
            OasError::store_failure("", "stage", "p", "d", &enospc).naming_store("main"),
            OasError::StoreFull { store, .. } if store == "main"
        ));
    }

    #[test]
    fn masker_hides_every_secret() {
        let m = Masker::new(vec![
            "AKIAEXAMPLE".into(),
            "s3cr3t/with+chars".into(),
            "ab".into(),
        ]);
        let msg = m.mask(
            "key AKIAEXAMPLE secret s3cr3t/with+chars in url ?X-Amz-Credential=AKIAEXAMPLE ab",
        );
        assert_eq!(msg, "key *** secret *** in url ?X-Amz-Credential=*** ab");
    }

    #[test]
    fn every_variant_with_a_fix_has_a_hint() {
        assert!(OasError::StoreNotConfigured("x".into())
            .hint()
            .unwrap()
            .contains("oas_store_create('x'"));
        assert!(OasError::NoDefaultStore.hint().is_some());
        let full = OasError::StoreFull {
            store: "main".into(),
            op: "put",
            path: "p".into(),
            detail: "d".into(),
        };
        assert!(full.hint().unwrap().contains("store \"main\""));
        assert!(OasError::ObjectMissing {
            store: "s".into(),
            path: "p".into()
        }
        .to_string()
        .contains("\"p\""));
    }
}
