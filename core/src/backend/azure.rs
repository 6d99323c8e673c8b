//! `azure` stores: Azure Blob Storage (and Azurite). Credentials come from `connection_string`,
//! from `account_name` + `account_key`, or from the ambient chain (`AZURE_*` environment).

use object_store::azure::{split_sas, MicrosoftAzureBuilder};

use super::{signing_client, ClientSettings, RawClient};
use crate::spec::StoreSpec;

/// The parts of an Azure storage connection string we use.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    pub account_name: Option<String>,
    pub account_key: Option<String>,
    pub blob_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub sas: Option<String>,
    pub development_storage: bool,
}

impl ConnectionString {
    /// `Key=Value;Key=Value;...`; keys are case-insensitive, values may contain `=` (base64 keys).
    pub fn parse(s: &str) -> Self {
        let mut cs = ConnectionString::default();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "accountname" => cs.account_name = Some(v),
                "accountkey" => cs.account_key = Some(v),
                "blobendpoint" => cs.blob_endpoint = Some(v.trim_end_matches('/').to_string()),
                "defaultendpointsprotocol" => cs.protocol = Some(v),
                "sharedaccesssignature" => cs.sas = Some(v),
                "usedevelopmentstorage" => cs.development_storage = v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        cs
    }

    /// The SAS token's query pairs, percent-decoded (object_store encodes them again when it
    /// sends them): a token works as the portal shows it (`?sv=...&sig=...%2B...%3D`) and as the
    /// SDKs print it (`sig=...+...=`).
    pub fn sas_pairs(&self) -> object_store::Result<Option<Vec<(String, String)>>> {
        self.sas.as_deref().map(split_sas).transpose()
    }
}

pub(super) fn build(
    spec: &StoreSpec,
    settings: &ClientSettings,
) -> object_store::Result<RawClient> {
    let mut b = MicrosoftAzureBuilder::from_env()
        .with_container_name(spec.container.clone().unwrap_or_default())
        .with_retry(settings.retry());
    let mut allow_http = false;
    if let Some(cs) = spec
        .connection_string
        .as_deref()
        .map(ConnectionString::parse)
    {
        let sas = cs.sas_pairs()?;
        if cs.development_storage {
            b = b.with_use_emulator(true);
        }
        if let Some(a) = cs.account_name {
            b = b.with_account(a);
        }
        if let Some(k) = cs.account_key {
            b = b.with_access_key(k);
        }
        if let Some(pairs) = sas {
            b = b.with_sas_authorization(pairs);
        }
        if let Some(ep) = cs.blob_endpoint {
            allow_http = ep.starts_with("http://");
            b = b.with_endpoint(ep);
        }
    }
    if let Some(a) = &spec.account_name {
        b = b.with_account(a);
    }
    if let Some(k) = &spec.account_key {
        b = b.with_access_key(k);
    }
    b = b
        .with_allow_http(allow_http)
        .with_client_options(settings.client_options().with_allow_http(allow_http));
    Ok(signing_client(b.build()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azurite_connection_string() {
        let cs = ConnectionString::parse(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
        );
        assert_eq!(cs.account_name.as_deref(), Some("devstoreaccount1"));
        assert!(cs.account_key.unwrap().ends_with("GMGw=="));
        assert_eq!(
            cs.blob_endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        assert_eq!(cs.protocol.as_deref(), Some("http"));
    }

    #[test]
    fn a_sas_is_the_same_percent_encoded_or_not() {
        let sas = |token: &str| {
            ConnectionString::parse(&format!(
                "AccountName=dev;BlobEndpoint=http://127.0.0.1:10000/dev;SharedAccessSignature={token}"
            ))
            .sas_pairs()
            .unwrap()
            .unwrap()
        };
        let expected: Vec<(String, String)> = [
            ("sv", "2018-11-09"),
            ("se", "2030-01-01T00:00:00Z"),
            ("spr", "https,http"),
            ("sig", "a+b/c=="),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // As the portal shows it (encoded, with '?'), and as the SDKs print it.
        assert_eq!(
            sas("?sv=2018-11-09&se=2030-01-01T00%3A00%3A00Z&spr=https%2Chttp&sig=a%2Bb%2Fc%3D%3D"),
            expected
        );
        assert_eq!(
            sas("sv=2018-11-09&se=2030-01-01T00:00:00Z&spr=https,http&sig=a+b/c=="),
            expected
        );
        assert_eq!(
            ConnectionString::parse("AccountName=dev")
                .sas_pairs()
                .unwrap(),
            None
        );
        assert!(ConnectionString::parse("SharedAccessSignature=sv=1&sig")
            .sas_pairs()
            .is_err());
    }

    /// A pair without '=' was dropped before; now the store is refused with the reason.
    #[test]
    fn a_malformed_sas_is_an_invalid_spec() {
        let spec = crate::spec::StoreSpec::from_json(&serde_json::json!({
            "protocol": "azure", "container": "c", "location": "",
            "connection_string": "AccountName=dev;BlobEndpoint=http://127.0.0.1:9/dev;SharedAccessSignature=sv=1&sig"
        }))
        .unwrap();
        let e = crate::backend::Store::build("az", spec, &ClientSettings::default()).unwrap_err();
        assert!(
            matches!(&e, crate::OasError::InvalidSpec { reason, .. } if reason.contains("SAS")),
            "{e}"
        );
    }

    #[test]
    fn development_storage_shortcut() {
        assert!(ConnectionString::parse("UseDevelopmentStorage=true").development_storage);
    }
}
