//! Presigned GET URLs, so clients can fetch an object with their own tools (curl, a browser,
//! `fsspec`, a notebook) without the store's credentials.
//!
//! | protocol | URL | signed by |
//! |---|---|---|
//! | `s3` | `http(s)://endpoint/bucket/key?X-Amz-…` | SigV4 with the store's credentials (the URL names the access key id) |
//! | `gcs` | `https://storage.googleapis.com/bucket/key?X-Goog-…` | V4 with the service-account key, or IAM `signBlob` with ambient credentials |
//! | `azure` | `https://account.blob.core.windows.net/container/key?sv=…&sig=…` | a service SAS from the account key, or a user delegation SAS with Azure AD credentials |
//! | `file` | `file:///location/key` | nothing: a plain path on the database server |
//!
//! Signing is local (no request) for S3, for GCS with a service-account key and for Azure with
//! an account key. Ambient credentials may need one request: a token (S3, GCS), an IAM `signBlob`
//! call (GCS) or a user delegation key (Azure).

use std::time::Duration;

use object_store::signer::{Method, Url};
use object_store::ObjectStoreExt;

use crate::backend::{compact_detail, error_chain, Store};
use crate::error::OasError;
use crate::spec::Protocol;

/// The longest a presigned URL may live: 7 days, the limit of S3 SigV4 and GCS V4 signatures and
/// of Azure user delegation SAS. Applied to every protocol, so a call that works on one store
/// does not fail on another.
pub const MAX_EXPIRES: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A URL from which anyone holding it can GET the object at `rel_path` (a path relative to the
/// store's location, as references record it) for `expires`.
///
/// - `s3`, `gcs`, `azure`: a URL signed for the object's full key (location prefix + `rel_path`).
///   The store is not asked whether the object exists (signing is usually local, and a URL may be
///   handed out for an object about to be written): a missing object shows as a 404 when the URL
///   is used.
/// - `file`: a `file://` URL of the object's absolute path on the database server (percent-encoded,
///   so spaces, `#`, `?`, `%` and non-ASCII names survive), after checking that the object exists;
///   a missing one is [`OasError::ObjectMissing`], as in every other operation. A `file://` URL
///   does not expire: whoever can read the path can read the object. It is only useful on a host
///   that sees the same filesystem.
///
/// `expires` is used in whole seconds (fractions are dropped) and must be between 1 second and
/// [`MAX_EXPIRES`] (7 days) for every protocol; otherwise [`OasError::InvalidArgument`] with a
/// hint. A URL signed with temporary credentials (an AWS session token, an Azure user delegation
/// key) stops working when those credentials expire, even if `expires` is longer.
///
/// Errors: an invalid `rel_path` or `expires` is [`OasError::InvalidArgument`]; credentials that
/// cannot sign (GCS `token: "anon"`, an Azure SAS token) are [`OasError::InvalidArgument`] with a
/// hint naming what can; so is, on Azure only, a key with characters a URL must percent-encode
/// (space, `%`, `#`, `?`, non-ASCII, ...), because object_store 0.14 signs such keys wrongly; a failure fetching credentials is [`OasError::Store`] (or
/// `Unauthenticated` / `StoreForbidden` / `Timeout`), naming the store, op `"presign"` and the
/// path, with the credentials masked.
///
/// # For the SQL wrapper `oas_presign_url(reference jsonb, expires interval) RETURNS text`
///
/// 1. Parse the reference with [`crate::codec::ObjectRef::from_json`] (any codec's reference:
///    hash-addressed, schema-addressed, filepath). Refuse `is_dir` references with
///    `OasError::invalid_argument_hint` (a folder has no single URL; hint: presign the files in
///    it by their paths under the folder's path).
/// 2. Resolve the store with `catalog::store(r.store.as_deref())` (the default store when the
///    reference names none), as `oas_read` does.
/// 3. Turn the interval into seconds as `EXTRACT(EPOCH FROM expires)` does (a day is 86,400 s,
///    a month 30 days) and pass them to [`expires_from_secs`], which refuses zero, negative and
///    over-7-day values with a hint and drops fractions.
/// 4. `block_on(presign_get(&store, &r.path, expires)).or_raise()` — through the cancellable
///    `block_on`, because ambient credentials and `file` stores make a request.
/// 5. Return the URL as `text`. Mark the function `volatile` (a new signature each call) and
///    `parallel_unsafe` like the other store functions; `STRICT` is natural.
///
/// Access: a URL grants read access to the object to whoever holds it until it expires, with no
/// later check by PostgreSQL, and an S3 URL contains the store's access key id (which the catalog
/// otherwise hides). Whether every role that can read a reference may call it is the wrapper's
/// decision (e.g. `REVOKE EXECUTE ... FROM PUBLIC` and grant it to a reader role).
pub async fn presign_get(
    store: &Store,
    rel_path: &str,
    expires: Duration,
) -> Result<String, OasError> {
    let key = store.key(rel_path)?;
    let expires = check_expires(expires)?;
    if store.spec.protocol == Protocol::File {
        return file_url(store, &key, rel_path).await;
    }
    if let Some((reason, hint)) = cannot_sign(store) {
        return Err(cannot_sign_error(store, reason, hint));
    }
    let Some(signer) = store.signer() else {
        return Err(cannot_sign_error(
            store,
            "its client has no signer".into(),
            requirement(store.spec.protocol).into(),
        ));
    };
    let full_key = store.full_key(&key);
    if store.spec.protocol == Protocol::Azure && url_path_encodes(&full_key) {
        return Err(OasError::invalid_argument_hint(
            format!(
                "store \"{}\" cannot presign \"{rel_path}\": object_store signs Azure SAS URLs over the percent-encoded path, which Azure rejects for keys with characters a URL must encode (space, %, #, ?, non-ASCII, ...)",
                store.name
            ),
            "objects with plain names (letters, digits and - _ . = + ~ ! $ & ' ( ) * , ; : @) can be presigned; read this one through pg_oas (oas_read, oas_hash_get)",
        ));
    }
    signer
        .signed_url(Method::GET, &full_key, expires)
        .await
        .map(String::from)
        .map_err(|e| signing_error(store, e, rel_path))
}

/// Whether a URL path for `key` needs percent-encoding. object_store (0.14) signs an Azure SAS
/// over the encoded path, while Azure verifies it over the decoded blob name, so such keys get a
/// signature Azure refuses (checked against Azurite: `core/tests/presign.rs`).
fn url_path_encodes(key: &object_store::path::Path) -> bool {
    let mut url = Url::parse("http://h/").expect("a valid URL");
    url.path_segments_mut()
        .expect("an http URL has a path")
        .pop_if_empty()
        .extend(key.parts());
    url.path().contains('%')
}

/// `expires` in whole seconds, within 1 s ..= [`MAX_EXPIRES`].
pub fn check_expires(expires: Duration) -> Result<Duration, OasError> {
    expires_from_secs(expires.as_secs_f64())
}

/// An expiry given in seconds (PostgreSQL's `EXTRACT(EPOCH FROM interval)`), as the whole-second
/// [`Duration`] [`presign_get`] takes: between 1 second and [`MAX_EXPIRES`], fractions dropped.
/// Zero, negative, NaN or longer than 7 days is [`OasError::InvalidArgument`] with a hint.
pub fn expires_from_secs(secs: f64) -> Result<Duration, OasError> {
    if secs.is_finite() && secs >= 1.0 && secs < (MAX_EXPIRES.as_secs() + 1) as f64 {
        return Ok(Duration::from_secs(secs as u64));
    }
    Err(OasError::invalid_argument_hint(
        format!(
            "a presigned URL must expire in 1 second to 7 days ({} s), got {secs} s",
            MAX_EXPIRES.as_secs()
        ),
        "7 days is the longest S3 and GCS signatures are valid; ask for a new URL when one expires, e.g. interval '1 hour'",
    ))
}

async fn file_url(
    store: &Store,
    key: &object_store::path::Path,
    rel_path: &str,
) -> Result<String, OasError> {
    // Through the client, so a missing object (or a directory) is the same error as elsewhere.
    store
        .client()
        .head(key)
        .await
        .map_err(|e| store.error(e, "head", rel_path))?;
    let path = std::path::Path::new(&store.spec.location).join(rel_path);
    Url::from_file_path(&path).map(String::from).map_err(|()| {
        OasError::invalid_argument(format!(
            "cannot make a file:// URL of \"{}\"",
            path.display()
        ))
    })
}

/// What a store needs to sign URLs, by protocol.
fn requirement(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::S3 => {
            "signing uses the store's access_key/secret_key, or the database server's AWS credentials (environment, ~/.aws/credentials, instance role)"
        }
        Protocol::Gcs => {
            "give the store a service-account key in \"token\" (the JSON key or a path to it); ambient credentials sign through IAM signBlob, which needs the role Service Account Token Creator on the service account"
        }
        Protocol::Azure => {
            "give the store account_name and account_key (or a connection_string with AccountKey=); Azure AD credentials sign with a user delegation key, which needs the role Storage Blob Delegator"
        }
        Protocol::File => "file stores give file:// URLs and need no credentials",
    }
}

/// Credentials that cannot sign, known from the spec alone (no request is sent).
fn cannot_sign(store: &Store) -> Option<(String, String)> {
    match (store.spec.protocol, store.spec.token.as_deref().map(str::trim)) {
        (Protocol::Gcs, Some("anon")) => Some((
            "it reads the bucket anonymously (token \"anon\"), with no key to sign with".into(),
            format!(
                "{}; objects of a public bucket need no signature: https://storage.googleapis.com/<bucket>/<key>",
                requirement(Protocol::Gcs)
            ),
        )),
        _ => None,
    }
}

fn cannot_sign_error(store: &Store, reason: String, hint: String) -> OasError {
    OasError::InvalidArgument {
        message: format!("store \"{}\" cannot presign URLs: {reason}", store.name),
        hint: Some(hint),
    }
}

/// A failed signing: credentials of a kind that cannot sign are an argument error with a hint;
/// a failure fetching credentials is a store error naming what signing needs.
fn signing_error(store: &Store, e: object_store::Error, rel_path: &str) -> OasError {
    let detail = compact_detail(&store.mask(error_chain(&e)));
    let unsignable = [
        (
            "with SAS tokens auth is not supported",
            "its credentials are a SAS token, which cannot sign another URL",
        ),
        (
            "while skipping signatures is not supported",
            "it sends unsigned (anonymous) requests, with no key to sign with",
        ),
    ];
    if let Some((_, reason)) = unsignable.iter().find(|(m, _)| detail.contains(m)) {
        return cannot_sign_error(
            store,
            (*reason).into(),
            requirement(store.spec.protocol).into(),
        );
    }
    let needs = requirement(store.spec.protocol);
    match store.error(e, "presign", rel_path) {
        OasError::Store {
            store,
            op,
            path,
            detail,
        } => OasError::Store {
            store,
            op,
            path,
            detail: format!("{detail} ({needs})"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ClientSettings;
    use crate::spec::StoreSpec;
    use serde_json::{json, Value};

    const HOUR: Duration = Duration::from_secs(3600);

    fn store(spec: Value) -> Store {
        Store::build(
            "s",
            StoreSpec::from_json(&spec).unwrap(),
            &ClientSettings::default(),
        )
        .unwrap()
    }

    fn query(url: &Url, name: &str) -> Option<String> {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    #[tokio::test]
    async fn file_store_gives_a_file_url_of_the_absolute_path() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(json!({"protocol": "file", "location": dir.path().to_str().unwrap()}));
        std::fs::create_dir_all(dir.path().join("_hash/lab")).unwrap();
        std::fs::write(dir.path().join("_hash/lab/obj"), b"x").unwrap();
        let url = presign_get(&s, "_hash/lab/obj", HOUR).await.unwrap();
        assert_eq!(
            url,
            format!("file://{}/_hash/lab/obj", dir.path().to_str().unwrap())
        );
    }

    #[tokio::test]
    async fn file_urls_percent_encode_odd_names() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(json!({"protocol": "file", "location": dir.path().to_str().unwrap()}));
        let rel = "odd dir/a b#c?d%e\u{fc}+&=;.npy";
        std::fs::create_dir_all(dir.path().join("odd dir")).unwrap();
        std::fs::write(dir.path().join(rel), b"x").unwrap();
        let url = presign_get(&s, rel, HOUR).await.unwrap();
        assert!(
            url.ends_with("/odd%20dir/a%20b%23c%3Fd%25e%C3%BC+&=;.npy"),
            "{url}"
        );
        // A client decoding the URL finds the file.
        let parsed = Url::parse(&url).unwrap();
        assert_eq!(parsed.scheme(), "file");
        assert_eq!(parsed.query(), None);
        assert_eq!(parsed.fragment(), None);
        assert_eq!(parsed.to_file_path().unwrap(), dir.path().join(rel));
    }

    #[tokio::test]
    async fn file_store_missing_object_is_object_missing() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(json!({"protocol": "file", "location": dir.path().to_str().unwrap()}));
        match presign_get(&s, "_hash/lab/nothing", HOUR)
            .await
            .unwrap_err()
        {
            OasError::ObjectMissing { store, path } => {
                assert_eq!((store.as_str(), path.as_str()), ("s", "_hash/lab/nothing"))
            }
            e => panic!("expected ObjectMissing, got {e}"),
        }
        // A directory is not an object either.
        std::fs::create_dir_all(dir.path().join("folder")).unwrap();
        assert!(matches!(
            presign_get(&s, "folder", HOUR).await.unwrap_err(),
            OasError::ObjectMissing { .. }
        ));
        // Paths are checked before anything is touched.
        assert!(matches!(
            presign_get(&s, "../etc/passwd", HOUR).await.unwrap_err(),
            OasError::InvalidArgument { .. }
        ));
    }

    #[test]
    fn expiry_is_whole_seconds_between_one_second_and_seven_days() {
        assert_eq!(
            check_expires(Duration::from_millis(1_900)).unwrap(),
            Duration::from_secs(1)
        );
        assert_eq!(check_expires(MAX_EXPIRES).unwrap(), MAX_EXPIRES);
        for bad in [
            Duration::ZERO,
            Duration::from_millis(999),
            MAX_EXPIRES + Duration::from_secs(1),
        ] {
            let e = check_expires(bad).unwrap_err();
            assert!(matches!(e, OasError::InvalidArgument { .. }), "{e}");
            assert!(e.to_string().contains("1 second to 7 days"), "{e}");
            assert!(e.hint().unwrap().contains("7 days"));
        }
        assert!(check_expires(Duration::from_millis(500))
            .unwrap_err()
            .to_string()
            .ends_with("got 0.5 s"));
        // As the SQL wrapper passes them: seconds from EXTRACT(EPOCH FROM interval).
        assert_eq!(expires_from_secs(3600.75).unwrap(), HOUR);
        assert_eq!(expires_from_secs(604_800.9).unwrap(), MAX_EXPIRES);
        for bad in [-60.0, 0.0, 0.5, 604_801.0, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    expires_from_secs(bad).unwrap_err(),
                    OasError::InvalidArgument { .. }
                ),
                "{bad}"
            );
        }
        assert!(expires_from_secs(-60.0)
            .unwrap_err()
            .to_string()
            .ends_with("got -60 s"));
    }

    #[tokio::test]
    async fn expiry_is_checked_for_every_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let f = store(json!({"protocol": "file", "location": dir.path().to_str().unwrap()}));
        std::fs::write(dir.path().join("obj"), b"x").unwrap();
        let long = Duration::from_secs(8 * 24 * 3600);
        assert!(matches!(
            presign_get(&f, "obj", long).await.unwrap_err(),
            OasError::InvalidArgument { .. }
        ));
        let s3 = store(s3_spec());
        assert!(matches!(
            presign_get(&s3, "obj", long).await.unwrap_err(),
            OasError::InvalidArgument { .. }
        ));
    }

    fn s3_spec() -> Value {
        json!({"protocol": "s3", "endpoint": "127.0.0.1:9", "bucket": "b", "location": "lab/store",
               "secure": false, "access_key": "AKIDPRESIGNTEST", "secret_key": "secret-presign-test"})
    }

    #[tokio::test]
    async fn s3_urls_sign_the_full_key_locally() {
        // Port 9 (discard): nothing listens, so this passes only if no request is sent.
        let s = store(s3_spec());
        let url = presign_get(&s, "_hash/lab/a b+c", HOUR).await.unwrap();
        let u = Url::parse(&url).unwrap();
        assert_eq!(
            (u.scheme(), u.host_str(), u.port()),
            ("http", Some("127.0.0.1"), Some(9))
        );
        assert_eq!(u.path(), "/b/lab/store/_hash/lab/a%20b%2Bc");
        assert_eq!(query(&u, "X-Amz-Expires").as_deref(), Some("3600"));
        assert_eq!(
            query(&u, "X-Amz-Algorithm").as_deref(),
            Some("AWS4-HMAC-SHA256")
        );
        assert!(query(&u, "X-Amz-Credential")
            .unwrap()
            .starts_with("AKIDPRESIGNTEST/"));
        assert!(query(&u, "X-Amz-Signature").is_some());
        assert!(!url.contains("secret-presign-test"));
    }

    #[tokio::test]
    async fn gcs_anonymous_store_cannot_sign() {
        let s = store(
            json!({"protocol": "gcs", "bucket": "lab-data", "location": "proj", "token": "anon"}),
        );
        let e = presign_get(&s, "_hash/lab/x", HOUR).await.unwrap_err();
        match &e {
            OasError::InvalidArgument { message, hint } => {
                assert!(
                    message.contains("store \"s\" cannot presign URLs"),
                    "{message}"
                );
                assert!(message.contains("anonymously"), "{message}");
                assert!(hint.as_deref().unwrap().contains("service-account key"));
            }
            e => panic!("expected InvalidArgument, got {e}"),
        }
    }

    /// A throwaway RSA key, made at test time so no private key is committed.
    fn throwaway_rsa_key() -> Option<String> {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).ok())
            .flatten()
    }

    #[tokio::test]
    async fn gcs_service_account_key_signs_locally() {
        let Some(pem) = throwaway_rsa_key() else {
            eprintln!("skipped: `openssl genpkey` is not available to make a test key");
            return;
        };
        let key = json!({"type": "service_account", "client_email": "oas@proj.iam.gserviceaccount.com",
                         "private_key": pem, "private_key_id": "k1", "project_id": "proj"});
        let s = store(
            json!({"protocol": "gcs", "bucket": "lab-data", "location": "proj/store", "token": key}),
        );
        let url = presign_get(&s, "_hash/lab/a b", HOUR).await.unwrap();
        let u = Url::parse(&url).unwrap();
        assert_eq!(u.host_str(), Some("storage.googleapis.com"));
        assert_eq!(u.path(), "/lab-data/proj/store/_hash/lab/a%20b");
        assert_eq!(query(&u, "X-Goog-Expires").as_deref(), Some("3600"));
        assert!(query(&u, "X-Goog-Credential")
            .unwrap()
            .starts_with("oas@proj.iam.gserviceaccount.com/"));
        // RSA-2048: 256 signature bytes, hex.
        assert_eq!(query(&u, "X-Goog-Signature").unwrap().len(), 512);
        assert!(!url.contains("PRIVATE KEY"));
    }

    const AZURITE_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    #[tokio::test]
    async fn azure_account_key_signs_a_read_sas_locally() {
        let cs = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        );
        let s = store(
            json!({"protocol": "azure", "container": "c", "location": "lab", "connection_string": cs}),
        );
        let url = presign_get(&s, "_hash/lab/a+b", HOUR).await.unwrap();
        let u = Url::parse(&url).unwrap();
        assert_eq!(u.path(), "/devstoreaccount1/c/lab/_hash/lab/a+b");
        assert_eq!(query(&u, "sp").as_deref(), Some("r"));
        assert!(query(&u, "sig").is_some() && query(&u, "se").is_some());
        assert!(!url.contains(AZURITE_KEY));
    }

    #[tokio::test]
    async fn azure_keys_that_need_url_encoding_are_refused() {
        let cs = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        );
        let s = store(
            json!({"protocol": "azure", "container": "c", "location": "lab", "connection_string": cs}),
        );
        for odd in ["a b", "x%y", "caf\u{e9}", "q#r", "q?r"] {
            let e = presign_get(&s, odd, HOUR).await.unwrap_err();
            assert!(matches!(e, OasError::InvalidArgument { .. }), "{odd}: {e}");
            assert!(e.to_string().contains("percent-encoded path"), "{e}");
        }
        for plain in [
            "_hash/lab/lvauakv4jmvhnolrtwiraf6fsi",
            "_schema/lab/t/id=1+x/f_Ab3~.npy",
        ] {
            assert!(presign_get(&s, plain, HOUR).await.is_ok(), "{plain}");
        }
        // The location counts too.
        let s = store(
            json!({"protocol": "azure", "container": "c", "location": "my lab", "connection_string": cs}),
        );
        assert!(presign_get(&s, "plain", HOUR).await.is_err());
    }

    #[tokio::test]
    async fn azure_sas_token_cannot_sign() {
        let cs = "AccountName=devstoreaccount1;BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;SharedAccessSignature=sv=2021-08-06&ss=b&srt=sco&sp=rl&sig=c2VjcmV0c2lnbmF0dXJl";
        let s = store(
            json!({"protocol": "azure", "container": "c", "location": "lab", "connection_string": cs}),
        );
        let e = presign_get(&s, "_hash/lab/x", HOUR).await.unwrap_err();
        match &e {
            OasError::InvalidArgument { message, hint } => {
                assert!(message.contains("cannot presign URLs"), "{message}");
                assert!(message.contains("a SAS token"), "{message}");
                assert!(hint.as_deref().unwrap().contains("account_key"));
                assert!(!message.contains("c2VjcmV0c2lnbmF0dXJl"));
            }
            e => panic!("expected InvalidArgument, got {e}"),
        }
    }
}
