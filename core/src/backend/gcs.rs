//! `gcs` stores: Google Cloud Storage. `token` follows gcsfs: a service-account JSON (object or
//! text), a path to one, `anon` for public buckets, or `google_default`/`cloud`/absent for the
//! ambient application-default credentials.

use object_store::gcp::GoogleCloudStorageBuilder;

use super::{signing_client, ClientSettings, RawClient};
use crate::spec::StoreSpec;

pub(super) fn builder(spec: &StoreSpec, settings: &ClientSettings) -> GoogleCloudStorageBuilder {
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(spec.bucket.clone().unwrap_or_default())
        .with_client_options(settings.client_options())
        .with_retry(settings.retry());
    match spec.token.as_deref().map(str::trim) {
        None | Some("google_default") | Some("cloud") => {}
        Some("anon") => b = b.with_skip_signature(true),
        Some(t) if t.starts_with('{') => b = b.with_service_account_key(t),
        Some(path) => b = b.with_service_account_path(path),
    }
    b
}

pub(super) fn build(
    spec: &StoreSpec,
    settings: &ClientSettings,
) -> object_store::Result<RawClient> {
    Ok(signing_client(builder(spec, settings).build()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::gcp::GoogleConfigKey;
    use serde_json::json;

    fn spec(token: serde_json::Value) -> StoreSpec {
        StoreSpec::from_json(&json!({"protocol": "gcs", "bucket": "lab-data", "location": "proj", "token": token, "project": "p"}))
            .unwrap()
    }

    #[test]
    fn bucket_and_token_forms_map_to_client_config() {
        let b = builder(&spec(json!("/etc/gcs/sa.json")), &ClientSettings::default());
        assert_eq!(
            b.get_config_value(&GoogleConfigKey::Bucket).as_deref(),
            Some("lab-data")
        );
        assert_eq!(
            b.get_config_value(&GoogleConfigKey::ServiceAccount)
                .as_deref(),
            Some("/etc/gcs/sa.json")
        );

        let key = json!({"type": "service_account", "client_email": "x@y", "private_key": "k"});
        let b = builder(&spec(key.clone()), &ClientSettings::default());
        assert_eq!(
            b.get_config_value(&GoogleConfigKey::ServiceAccountKey),
            Some(key.to_string())
        );

        let b = builder(&spec(json!("anon")), &ClientSettings::default());
        assert_eq!(
            b.get_config_value(&GoogleConfigKey::SkipSignature)
                .as_deref(),
            Some("true")
        );
    }

    #[test]
    fn anonymous_client_builds_without_network() {
        // Building sends no request; the bucket is only contacted on first use.
        assert!(build(&spec(json!("anon")), &ClientSettings::default()).is_ok());
    }
}
