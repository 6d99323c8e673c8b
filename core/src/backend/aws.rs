//! `s3` stores: AWS S3 and any S3-compatible server.
//!
//! Credentials: the spec's `access_key`/`secret_key` if given; otherwise the server's ambient chain:
//! `AWS_*` environment variables, then the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE` or
//! `~/.aws/credentials`, profile `AWS_PROFILE` or `default`), then object_store's own chain
//! (web identity, ECS task role, instance metadata).

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::StaticCredentialProvider;

use super::{signing_client, ClientSettings, RawClient};
use crate::spec::StoreSpec;

pub(super) fn build(
    spec: &StoreSpec,
    settings: &ClientSettings,
) -> object_store::Result<RawClient> {
    let endpoint = spec.endpoint.as_deref().unwrap_or_default();
    // DataJoint: ("https" if secure else "http") + "://" + endpoint, unless it already has a scheme.
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!(
            "{}://{}",
            if spec.secure { "https" } else { "http" },
            endpoint
        )
    };
    let allow_http = url.starts_with("http://");
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(spec.bucket.clone().unwrap_or_default())
        .with_endpoint(url)
        .with_allow_http(allow_http)
        .with_virtual_hosted_style_request(false)
        .with_client_options(settings.client_options().with_allow_http(allow_http))
        .with_retry(settings.retry());
    let profile = AwsProfile::from_environment();
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        b = b.with_region(
            profile
                .as_ref()
                .and_then(|p| p.region.clone())
                .unwrap_or_else(|| "us-east-1".into()),
        );
    }
    if let (Some(key), Some(secret)) = (&spec.access_key, &spec.secret_key) {
        b = b.with_access_key_id(key).with_secret_access_key(secret);
    } else if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        if let Some(AwsProfile {
            key_id: Some(key_id),
            secret_key: Some(secret_key),
            token,
            ..
        }) = profile
        {
            b = b.with_credentials(Arc::new(StaticCredentialProvider::new(AwsCredential {
                key_id,
                secret_key,
                token,
            })));
        }
    }
    if let Some(proxy) = &spec.proxy_server {
        b = b.with_proxy_url(proxy);
    }
    Ok(signing_client(b.build()?))
}

/// What the shared AWS files say for one profile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AwsProfile {
    pub key_id: Option<String>,
    pub secret_key: Option<String>,
    pub token: Option<String>,
    pub region: Option<String>,
}

impl AwsProfile {
    /// Read the profile named by `AWS_PROFILE` (default `default`) from the server's shared files.
    fn from_environment() -> Option<Self> {
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let creds = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
            .map(Into::into)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
        let config = std::env::var_os("AWS_CONFIG_FILE")
            .map(Into::into)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
        let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        let read = |p: Option<std::path::PathBuf>| p.and_then(|p| std::fs::read_to_string(p).ok());
        parse_aws_profile(read(creds).as_deref(), read(config).as_deref(), &profile)
    }
}

/// Resolve `profile` from the text of the credentials file and the config file. In the config file
/// a non-default profile's section is `[profile NAME]`; in the credentials file it is `[NAME]`.
/// The credentials file wins where both set a key.
pub fn parse_aws_profile(
    credentials: Option<&str>,
    config: Option<&str>,
    profile: &str,
) -> Option<AwsProfile> {
    let section = |text: &str, name: &str| -> Option<ini::Properties> {
        let ini = ini::Ini::load_from_str(text).ok()?;
        ini.section(Some(name)).cloned()
    };
    let from_creds = credentials.and_then(|t| section(t, profile));
    let config_name = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let from_config = config.and_then(|t| section(t, &config_name));
    if from_creds.is_none() && from_config.is_none() {
        return None;
    }
    let get = |key: &str| {
        from_creds
            .as_ref()
            .and_then(|s| s.get(key))
            .or_else(|| from_config.as_ref().and_then(|s| s.get(key)))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Some(AwsProfile {
        key_id: get("aws_access_key_id"),
        secret_key: get("aws_secret_access_key"),
        token: get("aws_session_token"),
        region: get("region"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDS: &str = "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = secretdefault\n\n[lab]\naws_access_key_id=AKLAB\naws_secret_access_key=secretlab\naws_session_token = tok\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n\n[profile lab]\nregion = us-west-2\n";

    #[test]
    fn default_profile() {
        let p = parse_aws_profile(Some(CREDS), Some(CONFIG), "default").unwrap();
        assert_eq!(p.key_id.as_deref(), Some("AKDEFAULT"));
        assert_eq!(p.secret_key.as_deref(), Some("secretdefault"));
        assert_eq!(p.region.as_deref(), Some("eu-west-1"));
        assert_eq!(p.token, None);
    }

    #[test]
    fn named_profile_uses_profile_prefix_in_config() {
        let p = parse_aws_profile(Some(CREDS), Some(CONFIG), "lab").unwrap();
        assert_eq!(p.key_id.as_deref(), Some("AKLAB"));
        assert_eq!(p.token.as_deref(), Some("tok"));
        assert_eq!(p.region.as_deref(), Some("us-west-2"));
    }

    #[test]
    fn missing_profile_is_none() {
        assert_eq!(parse_aws_profile(Some(CREDS), Some(CONFIG), "nope"), None);
        assert_eq!(parse_aws_profile(None, None, "default"), None);
    }
}
