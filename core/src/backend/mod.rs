//! Store clients: one builder per protocol, and [`Store`], the handle every operation goes through.
//!
//! A `Store` is rooted at the spec's `location`, so the paths that references record (relative to
//! `location`, exactly as DataJoint records them) are used as object keys directly.

mod aws;
mod azure;
mod gcs;
mod local;
mod nofollow;

use std::sync::Arc;
use std::time::Duration;

use object_store::client::{HttpError, HttpErrorKind};
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Masker, OasError};
use crate::path::validate_relative_path;
use crate::spec::{Protocol, StoreSpec};

pub use aws::{parse_aws_profile, AwsProfile};
pub use azure::ConnectionString;
pub use nofollow::{check_below, NoFollow, SymlinkRefused, SYMLINK_HINT};

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
        ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(self.connect_timeout)
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            max_retries: self.max_retries,
            retry_timeout: self.request_timeout.max(Duration::from_secs(1)),
            ..RetryConfig::default()
        }
    }
}

/// A client's uploads in parts by id (object_store's `MultipartStore`; every cloud client has them).
pub trait PartsStore: MultipartStore + std::fmt::Debug {}
impl<T: MultipartStore + std::fmt::Debug> PartsStore for T {}

/// What a protocol builder returns: the raw client (not yet rooted at the location), the same
/// client as a URL signer and as uploads in parts by id, where the protocol has them.
type RawClient = (
    Arc<dyn ObjectStore>,
    Option<Arc<dyn Signer>>,
    Option<Arc<dyn PartsStore>>,
);

/// Every view of one cloud client.
fn signing_client<C: ObjectStore + Signer + MultipartStore>(client: C) -> RawClient {
    let client = Arc::new(client);
    (client.clone(), Some(client.clone()), Some(client))
}

/// A configured store: its name, its spec and a client rooted at its location.
#[derive(Debug, Clone)]
pub struct Store {
    pub name: String,
    pub spec: StoreSpec,
    client: Arc<dyn ObjectStore>,
    /// The raw client as a URL signer (S3, GCS, Azure). Not rooted at the location: it signs
    /// full keys, see [`Store::full_key`].
    signer: Option<Arc<dyn Signer>>,
    /// The raw client's uploads in parts by id (S3, GCS, Azure), so that an upload can be
    /// recorded and aborted later (see [`crate::gc::uploads`]). Not rooted: use full keys.
    multipart: Option<Arc<dyn PartsStore>>,
    /// `file` stores that fsync: the same directory through a client that does not. Batches of
    /// renames use it and then fsync each directory they touched once, instead of two directory
    /// fsyncs per rename (see [`crate::gc::move_objects`]).
    unsynced: Option<Arc<NoFollow>>,
    /// `file` stores that fsync: this store writing through `unsynced`, for puts whose objects
    /// are made durable together before their transaction commits (see [`Store::deferring`]).
    deferring: Option<Arc<Store>>,
    masker: Masker,
}

impl Store {
    /// Build a client for `spec`. No request is sent; a wrong endpoint or credential shows on first use.
    pub fn build(name: &str, spec: StoreSpec, settings: &ClientSettings) -> Result<Self, OasError> {
        let masker = Masker::new(spec.secret_values());
        let (raw, signer, multipart) = match spec.protocol {
            Protocol::File => return local::build(name, spec, settings, masker),
            Protocol::S3 => aws::build(&spec, settings),
            Protocol::Gcs => gcs::build(&spec, settings),
            Protocol::Azure => azure::build(&spec, settings),
        }
        .map_err(|e| OasError::InvalidSpec {
            reason: masker.mask(e),
            hint: None,
        })?;
        let client: Arc<dyn ObjectStore> = if spec.location.is_empty() {
            raw
        } else {
            Arc::new(PrefixStore::new(raw, spec.location.as_str()))
        };
        Ok(Store {
            name: name.to_string(),
            spec,
            client,
            signer,
            multipart,
            unsynced: None,
            deferring: None,
            masker,
        })
    }

    fn from_parts(
        name: &str,
        spec: StoreSpec,
        client: Arc<dyn ObjectStore>,
        unsynced: Option<Arc<NoFollow>>,
        masker: Masker,
    ) -> Self {
        let deferring = unsynced.clone().map(|raw| {
            Arc::new(Store {
                name: name.to_string(),
                spec: spec.clone(),
                client: raw,
                signer: None,
                multipart: None,
                unsynced: None,
                deferring: None,
                masker: masker.clone(),
            })
        });
        Store {
            name: name.to_string(),
            spec,
            client,
            signer: None,
            multipart: None,
            unsynced,
            deferring,
            masker,
        }
    }

    /// A store of `spec`'s protocol whose requests go to `client` (tests: an in-memory object
    /// store standing in for a server).
    #[cfg(test)]
    pub(crate) fn with_client(name: &str, spec: StoreSpec, client: Arc<dyn ObjectStore>) -> Self {
        let masker = Masker::new(spec.secret_values());
        Self::from_parts(name, spec, client, None, masker)
    }

    /// For `file` stores that fsync: the same store writing without fsync. Whoever puts through
    /// it must sync what it wrote ([`crate::ops::sync_written`]) before relying on it; the
    /// extension does so before the transaction commits. `None` for every other store.
    pub fn deferring(&self) -> Option<&Arc<Store>> {
        self.deferring.as_ref()
    }

    /// For `file` stores that fsync: a client for the same directory that does not. Whoever
    /// renames through it must fsync the directories involved before relying on the result.
    /// Like the store's own client, it never goes through a symbolic link (see [`NoFollow`]).
    pub fn unsynced(&self) -> Option<&Arc<NoFollow>> {
        self.unsynced.as_ref()
    }

    pub fn client(&self) -> &Arc<dyn ObjectStore> {
        &self.client
    }

    /// The client's uploads in parts by id; `None` for `file` stores. It is not rooted at the
    /// location: name objects by [`Store::full_key`].
    pub fn multipart(&self) -> Option<&Arc<dyn PartsStore>> {
        self.multipart.as_ref()
    }

    /// The client as a URL signer; `None` for `file` stores. It is not rooted at the location:
    /// sign [`Store::full_key`]s with it.
    pub fn signer(&self) -> Option<&Arc<dyn Signer>> {
        self.signer.as_ref()
    }

    /// The key of `key` (from [`Store::key`]) in the bucket or container: the location prefix
    /// joined to it, exactly as the rooted client sends it.
    pub fn full_key(&self, key: &ObjectPath) -> ObjectPath {
        // The same construction as PrefixStore's, so both name the same object.
        ObjectPath::from(self.spec.location.as_str())
            .parts()
            .chain(key.parts())
            .collect()
    }

    /// `text` with this store's credentials replaced by `***`.
    pub(crate) fn mask(&self, text: impl std::fmt::Display) -> String {
        self.masker.mask(text)
    }

    /// The object key for a path relative to the store's location.
    pub fn key(&self, rel: &str) -> Result<ObjectPath, OasError> {
        validate_relative_path(rel)?;
        ObjectPath::parse(rel)
            .map_err(|e| OasError::invalid_argument(format!("invalid object path \"{rel}\": {e}")))
    }

    /// Turn a client error into an [`OasError`] naming this store, the operation and the path,
    /// with every credential masked and the server's reply shortened to its code and message.
    pub fn error(&self, e: object_store::Error, op: &'static str, rel: &str) -> OasError {
        let store = self.name.clone();
        let path = rel.to_string();
        let detail =
            |source: &dyn std::error::Error| compact_detail(&self.masker.mask(error_chain(source)));
        // A refusal or a failure, unless the reply says the credentials are bad.
        let (refused, detail) = match &e {
            object_store::Error::NotFound { .. } => return OasError::ObjectMissing { store, path },
            object_store::Error::Unauthenticated { source, .. } => {
                return OasError::Unauthenticated {
                    store,
                    op,
                    path,
                    detail: detail(source.as_ref()),
                }
            }
            object_store::Error::PermissionDenied { source, .. } => {
                if let Some(link) = source.downcast_ref::<SymlinkRefused>() {
                    return OasError::StoreForbidden {
                        store,
                        op,
                        path,
                        detail: self.masker.mask(link),
                        hint: Some(SYMLINK_HINT.into()),
                    };
                }
                (true, detail(source.as_ref()))
            }
            other => {
                if http_error_kind(other) == Some(HttpErrorKind::Timeout) {
                    return OasError::Timeout { store, op, path };
                }
                (false, detail(other))
            }
        };
        if is_bad_credentials(&detail) {
            OasError::Unauthenticated {
                store,
                op,
                path,
                detail,
            }
        } else if refused {
            OasError::StoreForbidden {
                store,
                op,
                path,
                detail,
                hint: None,
            }
        } else {
            OasError::store_failure(store, op, path, detail, &e)
        }
    }

    /// S3 answers a HEAD with a bad signature with a bare 403, indistinguishable from a missing
    /// permission. When a HEAD is refused, one LIST of the same key (whose reply has a body) tells
    /// the two apart. Costs a request only on failure.
    pub async fn diagnose_forbidden(&self, err: OasError) -> OasError {
        let OasError::StoreForbidden {
            op: "head", path, ..
        } = &err
        else {
            return err;
        };
        let Ok(key) = self.key(path) else { return err };
        match self.client.list_with_delimiter(Some(&key)).await {
            Err(e) => match self.error(e, "list", path) {
                OasError::Unauthenticated { store, detail, .. } => OasError::Unauthenticated {
                    store,
                    op: "head",
                    path: path.clone(),
                    detail,
                },
                _ => err,
            },
            Ok(_) => err,
        }
    }
}

#[cfg(test)]
impl Store {
    /// This store with another client (tests put a client that fails or counts in front), and
    /// no uploads in parts by id (see [`Store::with_multipart`]).
    pub(crate) fn replacing_client(mut self, client: Arc<dyn ObjectStore>) -> Self {
        self.client = client;
        self.multipart = None;
        self
    }

    /// This store with uploads in parts by id through `parts` (tests: an in-memory store).
    pub(crate) fn with_multipart(mut self, parts: Arc<dyn PartsStore>) -> Self {
        self.multipart = Some(parts);
        self
    }
}

fn is_bad_credentials(detail: &str) -> bool {
    [
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AuthenticationFailed",
        "AuthorizationFailure",
        "InvalidClientTokenId",
    ]
    .iter()
    .any(|code| detail.contains(code))
}

/// Shorten a client error: keep the request line and status, and of an XML error body only its
/// `<Code>` and `<Message>`.
pub fn compact_detail(detail: &str) -> String {
    let tag = |name: &str| -> Option<&str> {
        let open = format!("<{name}>");
        let start = detail.find(&open)? + open.len();
        let len = detail[start..].find(&format!("</{name}>"))?;
        Some(&detail[start..start + len])
    };
    let head = match detail.find("<?xml").or_else(|| detail.find("<Error>")) {
        Some(i) => detail[..i].trim_end().trim_end_matches(':'),
        None => return detail.trim().to_string(),
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(msg)) => format!("{head}: {code}: {msg}"),
        (Some(code), None) => format!("{head}: {code}"),
        _ => head.to_string(),
    }
}

/// The kind of the HTTP failure behind a client error, if any (timeout, connect, ...).
fn http_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<HttpErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return Some(http.kind());
        }
        cur = err.source();
    }
    None
}

/// An error and its causes, each once: "outer: cause: root cause".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !s.is_empty() && !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_error_bodies_are_shortened() {
        let raw = "Error performing PUT http://h/b/k in 1ms - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match.</Message><Resource>/b/k</Resource></Error>";
        assert_eq!(
            compact_detail(raw),
            "Error performing PUT http://h/b/k in 1ms - Server returned non-2xx status code: 403 Forbidden: SignatureDoesNotMatch: The request signature we calculated does not match."
        );
        assert!(is_bad_credentials(&compact_detail(raw)));
        assert_eq!(compact_detail(" plain error "), "plain error");
    }

    #[test]
    fn full_keys_join_the_location_and_cloud_stores_have_a_signer() {
        let build = |location: &str| {
            let spec = StoreSpec::from_json(&serde_json::json!({"protocol": "s3",
                "endpoint": "127.0.0.1:9", "bucket": "b", "location": location, "secure": false,
                "access_key": "k", "secret_key": "s"}))
            .unwrap();
            Store::build("s", spec, &ClientSettings::default()).unwrap()
        };
        let s = build("lab/store");
        assert!(s.signer().is_some());
        let key = s.key("_hash/lab/a b").unwrap();
        assert_eq!(s.full_key(&key).as_ref(), "lab/store/_hash/lab/a b");
        let s = build("");
        assert_eq!(s.full_key(&key).as_ref(), "_hash/lab/a b");

        let dir = std::env::temp_dir();
        let spec = StoreSpec::from_json(
            &serde_json::json!({"protocol": "file", "location": dir.to_str().unwrap()}),
        )
        .unwrap();
        assert!(Store::build("f", spec, &ClientSettings::default())
            .unwrap()
            .signer()
            .is_none());
    }
}
