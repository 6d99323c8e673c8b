//! Store specifications in DataJoint's own format (`dj.config.stores.<name>`).
//!
//! A spec is accepted exactly as a DataJoint user keeps it in `datajoint.json`: the same keys,
//! the same required/allowed sets per protocol, the same defaults. Validation is stricter where
//! DataJoint fails late or silently (relative local paths, half-given key pairs, nested prefixes).
//!
//! Secrets (keys listed in [`SECRET_KEYS`]) are split off by [`split_secrets`] so the
//! catalog can keep them in a table only administrators may read.

use serde_json::{Map, Value};

use crate::error::OasError;

/// Storage protocols pg_oas can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    File,
    S3,
    Gcs,
    Azure,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::File => "file",
            Protocol::S3 => "s3",
            Protocol::Gcs => "gcs",
            Protocol::Azure => "azure",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "file" => Some(Protocol::File),
            "s3" => Some(Protocol::S3),
            "gcs" => Some(Protocol::Gcs),
            "azure" => Some(Protocol::Azure),
            _ => None,
        }
    }

    /// Keys that must be present (and not null), besides `protocol`.
    pub fn required_keys(self) -> &'static [&'static str] {
        match self {
            Protocol::File => &["location"],
            Protocol::S3 => &["endpoint", "bucket", "location"],
            Protocol::Gcs => &["bucket", "location"],
            Protocol::Azure => &["container", "location"],
        }
    }

    /// Protocol-specific optional keys.
    pub fn extra_keys(self) -> &'static [&'static str] {
        match self {
            Protocol::File => &[],
            Protocol::S3 => &["access_key", "secret_key", "secure", "proxy_server"],
            Protocol::Gcs => &["token", "project"],
            Protocol::Azure => &["account_name", "account_key", "connection_string"],
        }
    }
}

/// Keys every protocol accepts (DataJoint's common keys).
pub const COMMON_KEYS: &[&str] = &[
    "protocol",
    "location",
    "subfolding",
    "partition_pattern",
    "token_length",
    "hash_prefix",
    "schema_prefix",
    "filepath_prefix",
    "stage",
];

/// Keys whose values are credentials. They never appear in the public catalog view or in errors.
pub const SECRET_KEYS: &[&str] = &[
    "access_key",
    "secret_key",
    "account_key",
    "connection_string",
    "token",
];

pub const DEFAULT_TOKEN_LENGTH: u32 = 8;
pub const DEFAULT_HASH_PREFIX: &str = "_hash";
pub const DEFAULT_SCHEMA_PREFIX: &str = "_schema";

/// A validated store specification.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSpec {
    pub protocol: Protocol,
    /// Root of the store: an absolute directory (file) or a key prefix inside the bucket/container
    /// (no leading or trailing `/`; may be empty).
    pub location: String,
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub secure: bool,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub proxy_server: Option<String>,
    /// GCS credentials: a service-account JSON (object or string), a path to one, or `anon`.
    pub token: Option<String>,
    pub project: Option<String>,
    pub container: Option<String>,
    pub account_name: Option<String>,
    pub account_key: Option<String>,
    pub connection_string: Option<String>,
    pub subfolding: Option<Vec<usize>>,
    pub partition_pattern: Option<String>,
    /// Token length as DataJoint uses it: the given value clamped to 4..=16.
    pub token_length: u32,
    pub hash_prefix: String,
    pub schema_prefix: String,
    pub filepath_prefix: Option<String>,
    /// How hash-addressed objects written now are compressed: not part of the spec's JSON but
    /// the catalog's `oas.store.compression` (`oas_store_compression`), set when the client is
    /// built. `None` when not marked.
    pub compression: Option<crate::compress::Zstd>,
}

fn invalid(reason: impl Into<String>) -> OasError {
    OasError::InvalidSpec {
        reason: reason.into(),
        hint: None,
    }
}

fn invalid_hint(reason: impl Into<String>, hint: impl Into<String>) -> OasError {
    OasError::InvalidSpec {
        reason: reason.into(),
        hint: Some(hint.into()),
    }
}

/// Every spelling of a SAS signature (`sig`) in connection string `cs`: as written, decoded, and
/// percent-encoded as a request URL carries it, so that the masker finds it in any of them.
fn sas_signature_forms(cs: &str) -> Vec<String> {
    use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
    let Some(sas) = cs
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("SharedAccessSignature"))
        .map(|(_, v)| v)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, raw) in sas
        .trim_start_matches('?')
        .split('&')
        .filter_map(|kv| kv.split_once('='))
    {
        if k != "sig" {
            continue;
        }
        let decoded = percent_decode_str(raw).decode_utf8_lossy().into_owned();
        let encoded = utf8_percent_encode(&decoded, NON_ALPHANUMERIC).to_string();
        out.extend([raw.to_string(), encoded, decoded]);
    }
    out
}

impl StoreSpec {
    /// Parse and validate a spec given as DataJoint JSON.
    pub fn from_json(value: &Value) -> Result<Self, OasError> {
        let map = value.as_object().ok_or_else(|| {
            invalid_hint(
                "a store spec must be a JSON object",
                r#"e.g. {"protocol": "file", "location": "/data/store"}"#,
            )
        })?;
        let protocol_str = match map.get("protocol") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(invalid("\"protocol\" must be a string")),
            None => {
                return Err(invalid_hint(
                    "missing required key \"protocol\"",
                    "use one of \"file\", \"s3\", \"gcs\", \"azure\"",
                ))
            }
        };
        let protocol = Protocol::parse(protocol_str).ok_or_else(|| {
            invalid_hint(
                format!("unsupported protocol \"{protocol_str}\""),
                "use one of \"file\", \"s3\", \"gcs\", \"azure\"",
            )
        })?;

        let mut unknown: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| {
                !COMMON_KEYS.contains(k)
                    && !protocol.extra_keys().contains(k)
                    && !protocol.required_keys().contains(k)
            })
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            let mut allowed: Vec<&str> = COMMON_KEYS
                .iter()
                .chain(protocol.required_keys())
                .chain(protocol.extra_keys())
                .copied()
                .collect();
            allowed.sort_unstable();
            allowed.dedup();
            return Err(invalid_hint(
                format!(
                    "unknown key(s) for protocol \"{}\": {}",
                    protocol.as_str(),
                    unknown.join(", ")
                ),
                format!("allowed keys: {}", allowed.join(", ")),
            ));
        }
        let mut missing: Vec<&str> = protocol
            .required_keys()
            .iter()
            .copied()
            .filter(|k| map.get(*k).is_none_or(Value::is_null))
            .collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            return Err(invalid(format!(
                "missing required key(s) for protocol \"{}\": {}",
                protocol.as_str(),
                missing.join(", ")
            )));
        }

        let location = string_key(map, "location")?.unwrap_or_default();
        let location = match protocol {
            Protocol::File => {
                if !location.starts_with('/') {
                    return Err(invalid_hint(
                        format!("\"location\" must be an absolute directory path on the database server, got \"{location}\""),
                        "the server resolves paths, not the client: give the full path, e.g. \"/var/lib/oas/store\"",
                    ));
                }
                let trimmed = location.trim_end_matches('/');
                if location.split('/').any(|seg| seg == "..") {
                    return Err(invalid("\"location\" must not contain \"..\""));
                }
                if trimmed.is_empty() {
                    "/".to_string()
                } else {
                    trimmed.to_string()
                }
            }
            _ => {
                let trimmed = location.trim_matches('/').to_string();
                if trimmed.split('/').any(|seg| seg == ".." || seg == ".") {
                    return Err(invalid(
                        "\"location\" must not contain \".\" or \"..\" segments",
                    ));
                }
                trimmed
            }
        };

        let access_key = string_key(map, "access_key")?;
        let secret_key = string_key(map, "secret_key")?;
        if access_key.is_some() != secret_key.is_some() {
            return Err(invalid_hint(
                "\"access_key\" and \"secret_key\" must be given together",
                "give both, or neither to use the server's ambient credentials (environment, ~/.aws/credentials)",
            ));
        }
        let account_key = string_key(map, "account_key")?;
        let account_name = string_key(map, "account_name")?;
        if account_key.is_some() && account_name.is_none() {
            return Err(invalid("\"account_key\" needs \"account_name\""));
        }

        let secure = match map.get("secure") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("\"secure\" must be true or false")),
        };

        let subfolding =
            match map.get("subfolding") {
                None | Some(Value::Null) => None,
                Some(Value::Array(items)) => {
                    let mut folds = Vec::with_capacity(items.len());
                    for item in items {
                        match item.as_u64() {
                            Some(n) if (1..crate::hash::HASH_LEN as u64).contains(&n) => {
                                folds.push(n as usize)
                            }
                            _ => return Err(invalid(
                                "\"subfolding\" must be a list of positive integers, e.g. [2, 2]",
                            )),
                        }
                    }
                    if folds.iter().sum::<usize>() >= crate::hash::HASH_LEN {
                        return Err(invalid(
                            "\"subfolding\" levels must add up to fewer than 26 characters",
                        ));
                    }
                    if folds.is_empty() {
                        None
                    } else {
                        Some(folds)
                    }
                }
                Some(_) => {
                    return Err(invalid(
                        "\"subfolding\" must be null or a list of positive integers",
                    ))
                }
            };

        let token_length = match map.get("token_length") {
            None | Some(Value::Null) => DEFAULT_TOKEN_LENGTH,
            Some(v) => match v.as_i64() {
                Some(n) => n.clamp(4, 16) as u32,
                None => return Err(invalid("\"token_length\" must be an integer")),
            },
        };

        let hash_prefix =
            prefix_key(map, "hash_prefix")?.unwrap_or_else(|| DEFAULT_HASH_PREFIX.to_string());
        let schema_prefix =
            prefix_key(map, "schema_prefix")?.unwrap_or_else(|| DEFAULT_SCHEMA_PREFIX.to_string());
        let filepath_prefix = prefix_key(map, "filepath_prefix")?;
        check_prefix_separation(&hash_prefix, &schema_prefix, filepath_prefix.as_deref())?;

        // `token` may be a service-account JSON object; keep it as its JSON text.
        let token = match map.get("token") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v @ Value::Object(_)) => Some(v.to_string()),
            Some(_) => return Err(invalid("\"token\" must be a string or a JSON object")),
        };
        // `stage` is accepted and unused, as in DataJoint.
        let _ = map.get("stage");

        let endpoint = string_key(map, "endpoint")?;
        if let Some(ep) = &endpoint {
            if ep.trim().is_empty() {
                return Err(invalid("\"endpoint\" must not be empty"));
            }
        }

        Ok(StoreSpec {
            protocol,
            location,
            endpoint,
            bucket: string_key(map, "bucket")?,
            secure,
            access_key,
            secret_key,
            proxy_server: string_key(map, "proxy_server")?,
            token,
            project: string_key(map, "project")?,
            container: string_key(map, "container")?,
            account_name,
            account_key,
            connection_string: string_key(map, "connection_string")?,
            subfolding,
            partition_pattern: string_key(map, "partition_pattern")?,
            token_length,
            hash_prefix,
            schema_prefix,
            filepath_prefix,
            compression: None,
        })
    }

    /// Every secret value in this spec, for masking in messages.
    pub fn secret_values(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            &self.access_key,
            &self.secret_key,
            &self.account_key,
            &self.token,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        if let Some(cs) = &self.connection_string {
            out.push(cs.clone());
            // An account key inside a connection string is masked on its own too.
            out.extend(
                cs.split(';')
                    .filter_map(|kv| kv.split_once('='))
                    .filter(|(k, _)| {
                        k.eq_ignore_ascii_case("AccountKey")
                            || k.eq_ignore_ascii_case("SharedAccessSignature")
                    })
                    .map(|(_, v)| v.to_string()),
            );
            // A client's error names the URL it requested, where the SAS's signature appears
            // re-encoded (`sig=a%2Bb%2F`), not as the connection string has it.
            out.extend(sas_signature_forms(cs));
        }
        out
    }

    /// True when the spec carries its own credentials (as opposed to ambient ones).
    pub fn has_credentials(&self) -> bool {
        self.access_key.is_some()
            || self.account_key.is_some()
            || self.connection_string.is_some()
            || self.token.is_some()
    }
}

/// Split a spec's JSON into its public part and its secret part. The JSON should already have
/// passed [`StoreSpec::from_json`]; merging the two parts back gives the original object.
pub fn split_secrets(value: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let mut public = Map::new();
    let mut secret = Map::new();
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            if SECRET_KEYS.contains(&k.as_str()) {
                secret.insert(k.clone(), v.clone());
            } else {
                public.insert(k.clone(), v.clone());
            }
        }
    }
    (public, secret)
}

/// Merge public and secret parts back into one spec object.
pub fn merge_secrets(public: &Value, secret: Option<&Value>) -> Value {
    let mut merged = public.as_object().cloned().unwrap_or_default();
    if let Some(Value::Object(s)) = secret {
        for (k, v) in s {
            merged.insert(k.clone(), v.clone());
        }
    }
    Value::Object(merged)
}

fn string_key(map: &Map<String, Value>, key: &str) -> Result<Option<String>, OasError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("\"{key}\" must be a string"))),
    }
}

fn prefix_key(map: &Map<String, Value>, key: &str) -> Result<Option<String>, OasError> {
    let Some(raw) = string_key(map, key)? else {
        return Ok(None);
    };
    // DataJoint strips surrounding slashes (`hash_prefix.strip("/")`); an empty prefix means
    // "no section" (objects directly under the location).
    let p = raw.trim_matches('/').to_string();
    // Every object path starts with the prefix, and object paths have no backslash or control
    // character (`validate_relative_path`): a prefix with one would make every path invalid.
    if !p.is_empty()
        && (p.split('/').any(|s| s.is_empty() || s == "." || s == "..")
            || p.contains('\\')
            || p.chars().any(char::is_control))
    {
        return Err(invalid_hint(
            format!("\"{key}\" must be a relative path without empty, \".\" or \"..\" segments, backslashes or control characters, got \"{}\"", raw.escape_default()),
            "e.g. \"_hash\", \"_schema\", \"raw/imaging\"",
        ));
    }
    Ok(Some(p))
}

/// DataJoint's `_validate_prefix_separation`: no reserved prefix may contain another.
fn check_prefix_separation(
    hash: &str,
    schema: &str,
    filepath: Option<&str>,
) -> Result<(), OasError> {
    let mut named = vec![("hash_prefix", hash), ("schema_prefix", schema)];
    if let Some(f) = filepath {
        named.push(("filepath_prefix", f));
    }
    named.retain(|(_, p)| !p.is_empty());
    for (i, (na, a)) in named.iter().enumerate() {
        for (nb, b) in &named[i + 1..] {
            let (a2, b2) = (format!("{a}/"), format!("{b}/"));
            if a2.starts_with(&b2) || b2.starts_with(&a2) {
                return Err(invalid(format!(
                    "{na} \"{a}\" and {nb} \"{b}\" overlap; reserved prefixes must not nest"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        StoreSpec::from_json(&v).unwrap_err().to_string()
    }

    #[test]
    fn datajoint_example_is_accepted_as_is() {
        let s = StoreSpec::from_json(&json!({
            "protocol": "s3", "endpoint": "s3.amazonaws.com", "bucket": "b", "location": "proj",
            "secure": true, "subfolding": [2,2], "partition_pattern": "{subject_id}",
            "token_length": 8, "hash_prefix": "_hash", "schema_prefix": "_schema", "filepath_prefix": null
        }))
        .unwrap();
        assert_eq!(s.protocol, Protocol::S3);
        assert_eq!(s.subfolding, Some(vec![2, 2]));
        assert_eq!(s.location, "proj");
        assert!(s.secure);
        assert!(!s.has_credentials());
    }

    #[test]
    fn defaults_follow_datajoint() {
        let s =
            StoreSpec::from_json(&json!({"protocol": "file", "location": "/data/store/"})).unwrap();
        assert_eq!(s.location, "/data/store");
        assert_eq!(s.token_length, 8);
        assert_eq!(s.hash_prefix, "_hash");
        assert_eq!(s.schema_prefix, "_schema");
        assert_eq!(s.filepath_prefix, None);
        assert_eq!(s.subfolding, None);
    }

    #[test]
    fn token_length_is_clamped_like_datajoint() {
        let f = |n: i64| {
            StoreSpec::from_json(&json!({"protocol": "file", "location": "/d", "token_length": n}))
                .unwrap()
                .token_length
        };
        assert_eq!(f(1), 4);
        assert_eq!(f(12), 12);
        assert_eq!(f(40), 16);
    }

    #[test]
    fn unknown_and_missing_keys_are_rejected() {
        let e = err(json!({"protocol": "file", "location": "/d", "project_name": "x"}));
        assert!(
            e.contains("unknown key(s)") && e.contains("project_name"),
            "{e}"
        );
        // A key valid for another protocol is unknown here.
        let e = err(json!({"protocol": "file", "location": "/d", "bucket": "b"}));
        assert!(e.contains("bucket"), "{e}");
        let e = err(json!({"protocol": "s3", "location": "p"}));
        assert!(e.contains("bucket, endpoint"), "{e}");
        let e = err(json!({"protocol": "azure", "location": "p"}));
        assert!(e.contains("container"), "{e}");
        assert!(err(json!({"location": "/d"})).contains("protocol"));
        assert!(err(json!({"protocol": "ftp", "location": "/d"})).contains("unsupported protocol"));
        assert!(err(json!(["file"])).contains("JSON object"));
    }

    #[test]
    fn half_key_pairs_are_rejected() {
        let e = err(
            json!({"protocol": "s3", "endpoint": "e", "bucket": "b", "location": "", "access_key": "AK"}),
        );
        assert!(e.contains("together"), "{e}");
        let e = err(
            json!({"protocol": "s3", "endpoint": "e", "bucket": "b", "location": "", "secret_key": "SK"}),
        );
        assert!(e.contains("together"), "{e}");
        let e =
            err(json!({"protocol": "azure", "container": "c", "location": "", "account_key": "K"}));
        assert!(e.contains("account_name"), "{e}");
    }

    #[test]
    fn types_are_checked() {
        assert!(err(json!({"protocol": "file", "location": 5})).contains("string"));
        assert!(err(json!({"protocol": "s3", "endpoint": "e", "bucket": "b", "location": "", "secure": "yes"})).contains("secure"));
        assert!(
            err(json!({"protocol": "file", "location": "/d", "subfolding": [2, 0]}))
                .contains("subfolding")
        );
        assert!(
            err(json!({"protocol": "file", "location": "/d", "subfolding": [20, 10]}))
                .contains("26")
        );
        assert!(
            err(json!({"protocol": "file", "location": "/d", "subfolding": [u64::MAX, 1u64]}))
                .contains("subfolding")
        );
        assert!(
            err(json!({"protocol": "file", "location": "/d", "token_length": "8"}))
                .contains("integer")
        );
    }

    #[test]
    fn local_location_must_be_absolute_and_canonical() {
        assert!(err(json!({"protocol": "file", "location": "data"})).contains("absolute"));
        assert!(err(json!({"protocol": "file", "location": "/data/../etc"})).contains(".."));
        assert!(err(
            json!({"protocol": "s3", "endpoint": "e", "bucket": "b", "location": "a/../b"})
        )
        .contains(".."));
    }

    #[test]
    fn prefixes_must_not_nest() {
        let e = err(json!({"protocol": "file", "location": "/d", "filepath_prefix": "_hash/raw"}));
        assert!(e.contains("overlap"), "{e}");
        let e = err(
            json!({"protocol": "file", "location": "/d", "hash_prefix": "x", "schema_prefix": "x"}),
        );
        assert!(e.contains("overlap"), "{e}");
        assert!(
            err(json!({"protocol": "file", "location": "/d", "hash_prefix": "a//b"}))
                .contains("hash_prefix")
        );
        assert!(
            err(json!({"protocol": "file", "location": "/d", "hash_prefix": "a/../b"}))
                .contains("hash_prefix")
        );
        // Surrounding slashes are stripped, as DataJoint does.
        let s = StoreSpec::from_json(
            &json!({"protocol": "file", "location": "/d", "hash_prefix": "/objs/"}),
        )
        .unwrap();
        assert_eq!(s.hash_prefix, "objs");
        // Legacy root layout is allowed.
        let s = StoreSpec::from_json(
            &json!({"protocol": "file", "location": "/d", "schema_prefix": ""}),
        )
        .unwrap();
        assert_eq!(s.schema_prefix, "");
    }

    /// Found by the `paths` fuzz target: a prefix with a control character (or a backslash)
    /// was accepted, and every object path of the store then failed validation.
    #[test]
    fn fuzz_prefixes_have_no_backslash_or_control_character() {
        for key in ["hash_prefix", "schema_prefix", "filepath_prefix"] {
            for bad in ["\u{e}", "a\\b", "objs/a\nb", "\u{7f}"] {
                let e = err(json!({"protocol": "file", "location": "/d", key: bad}));
                assert!(e.contains(key), "{key} {bad:?}: {e}");
            }
        }
    }

    #[test]
    fn secrets_split_and_merge_round_trip() {
        let v = json!({"protocol": "s3", "endpoint": "e", "bucket": "b", "location": "l",
                       "access_key": "AKIA", "secret_key": "s3cr3t"});
        let s = StoreSpec::from_json(&v).unwrap();
        assert!(s.has_credentials());
        assert_eq!(
            s.secret_values(),
            vec!["AKIA".to_string(), "s3cr3t".to_string()]
        );
        let (public, secret) = split_secrets(&v);
        assert!(!public.contains_key("secret_key") && !public.contains_key("access_key"));
        assert_eq!(secret.len(), 2);
        assert_eq!(
            merge_secrets(&Value::Object(public), Some(&Value::Object(secret))),
            v
        );
    }

    #[test]
    fn connection_string_account_key_is_a_secret_on_its_own() {
        let v = json!({"protocol": "azure", "container": "c", "location": "",
            "connection_string": "DefaultEndpointsProtocol=http;AccountName=dev;AccountKey=Zm9vYmFy;BlobEndpoint=http://127.0.0.1:10000/dev;"});
        let s = StoreSpec::from_json(&v).unwrap();
        assert!(s.secret_values().contains(&"Zm9vYmFy".to_string()));
    }

    #[test]
    fn a_sas_signature_is_masked_however_a_url_spells_it() {
        // As the Azure portal shows a SAS: the signature percent-encoded.
        let v = json!({"protocol": "azure", "container": "c", "location": "",
            "connection_string": "BlobEndpoint=http://127.0.0.1:10000/dev;SharedAccessSignature=sv=2021-08-06&ss=b&sig=F9q%2Bhg%2Fx%3D;"});
        let masker = crate::error::Masker::new(StoreSpec::from_json(&v).unwrap().secret_values());
        for url in [
            "GET http://127.0.0.1:10000/dev/c/x?sv=2021-08-06&ss=b&sig=F9q%2Bhg%2Fx%3D failed",
            "signature F9q+hg/x= rejected",
        ] {
            let masked = masker.mask(url);
            assert!(!masked.contains("F9q"), "{masked}");
        }
    }

    #[test]
    fn gcs_token_object_is_kept_as_json_text() {
        let s = StoreSpec::from_json(&json!({"protocol": "gcs", "bucket": "b", "location": "l",
            "token": {"type": "service_account", "private_key": "k"}, "project": "p"}))
        .unwrap();
        assert!(s.token.unwrap().contains("service_account"));
    }
}
