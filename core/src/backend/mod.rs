//! Store clients: one builder per protocol, and [`Store`], the handle every operation goes through.
//!
//! A `Store` is rooted at the spec's `location`, so the paths that references record (relative to
//! `location`, exactly as DataJoint records them) are used as object keys directly.

mod aws;
mod azure;
mod gcs;
mod local;

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Masker, OasError};
use crate::path::validate_relative_path;
use crate::spec::{Protocol, StoreSpec};

pub use aws::{parse_aws_profile, AwsProfile};
pub use azure::ConnectionString;

/// Client-side settings that come from the `oas.*` GUCs. They are part of a cached client's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientSettings {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_retries: usize,
    /// fsync written files (and their directories) on `file` stores.
    pub file_fsync: bool,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            request_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
            file_fsync: true,
        }
    }
}

impl ClientSettings {
    fn client_options(&self) -> ClientOptions {
        ClientOptions::new().with_timeout(self.request_timeout).with_connect_timeout(self.connect_timeout)
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            max_retries: self.max_retries,
            retry_timeout: self.request_timeout.max(Duration::from_secs(1)),
            ..RetryConfig::default()
        }
    }
}

/// A configured store: its name, its spec and a client rooted at its location.
#[derive(Debug, Clone)]
pub struct Store {
    pub name: String,
    pub spec: StoreSpec,
    client: Arc<dyn ObjectStore>,
    masker: Masker,
}

impl Store {
    /// Build a client for `spec`. No request is sent; a wrong endpoint or credential shows on first use.
    pub fn build(name: &str, spec: StoreSpec, settings: &ClientSettings) -> Result<Self, OasError> {
        let masker = Masker::new(spec.secret_values());
        let raw: Arc<dyn ObjectStore> = match spec.protocol {
            Protocol::File => return local::build(name, spec, settings, masker),
            Protocol::S3 => aws::build(&spec, settings),
            Protocol::Gcs => gcs::build(&spec, settings),
            Protocol::Azure => azure::build(&spec, settings),
        }
        .map_err(|e| OasError::InvalidSpec { reason: masker.mask(e), hint: None })?;
        let client: Arc<dyn ObjectStore> = if spec.location.is_empty() {
            raw
        } else {
            Arc::new(PrefixStore::new(raw, spec.location.as_str()))
        };
        Ok(Store { name: name.to_string(), spec, client, masker })
    }

    fn from_parts(name: &str, spec: StoreSpec, client: Arc<dyn ObjectStore>, masker: Masker) -> Self {
        Store { name: name.to_string(), spec, client, masker }
    }

    pub fn client(&self) -> &Arc<dyn ObjectStore> {
        &self.client
    }

    /// The object key for a path relative to the store's location.
    pub fn key(&self, rel: &str) -> Result<ObjectPath, OasError> {
        validate_relative_path(rel)?;
        ObjectPath::parse(rel).map_err(|e| OasError::invalid_argument(format!("invalid object path \"{rel}\": {e}")))
    }

    /// A URL naming the object, in DataJoint's forms (`file:///…`, `s3://bucket/…`, `gs://…`, `az://…`).
    pub fn url(&self, rel: &str) -> String {
        let full = crate::path::join_location(&self.spec.location, rel);
        match self.spec.protocol {
            Protocol::File => format!("file://{}/{}", self.spec.location.trim_end_matches('/'), rel),
            Protocol::S3 => format!("s3://{}/{}", self.spec.bucket.as_deref().unwrap_or_default(), full),
            Protocol::Gcs => format!("gs://{}/{}", self.spec.bucket.as_deref().unwrap_or_default(), full),
            Protocol::Azure => format!("az://{}/{}", self.spec.container.as_deref().unwrap_or_default(), full),
        }
    }

    /// Turn a client error into an [`OasError`] naming this store, the operation and the path,
    /// with every credential masked.
    pub fn error(&self, e: object_store::Error, op: &'static str, rel: &str) -> OasError {
        let store = self.name.clone();
        let path = rel.to_string();
        match e {
            object_store::Error::NotFound { .. } => OasError::ObjectMissing { store, path },
            object_store::Error::Unauthenticated { source, .. } => {
                OasError::Unauthenticated { store, op, path, detail: self.masker.mask(source) }
            }
            object_store::Error::PermissionDenied { source, .. } => {
                let detail = self.masker.mask(&source);
                // S3 answers a bad signature with 403 SignatureDoesNotMatch / InvalidAccessKeyId.
                if detail.contains("SignatureDoesNotMatch") || detail.contains("InvalidAccessKeyId") || detail.contains("AccessDenied") && detail.contains("Signature") {
                    OasError::Unauthenticated { store, op, path, detail }
                } else {
                    OasError::StoreForbidden { store, op, path, detail }
                }
            }
            other => {
                let detail = self.masker.mask(&other);
                if is_timeout(&detail) {
                    OasError::Timeout { store, op, path }
                } else if detail.contains("SignatureDoesNotMatch") || detail.contains("InvalidAccessKeyId") {
                    OasError::Unauthenticated { store, op, path, detail }
                } else {
                    OasError::Store { store, op, path, detail }
                }
            }
        }
    }

    /// Mask credentials in any text about this store.
    pub fn mask(&self, text: impl std::fmt::Display) -> String {
        self.masker.mask(text)
    }
}

fn is_timeout(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("timed out") || d.contains("timeout")
}
