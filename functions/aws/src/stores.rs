//! Other object stores (S3-compatible endpoints, Google Cloud Storage, Azure Blob Storage)
//! through the `object_store` crate, built from a [`StoreLocation`] and the credentials its
//! Secrets Manager secret holds. Secret values live only in the built store: never in errors,
//! logs, the table or reports.

use crate::error::{Error, Result};
use crate::App;
use aws_sdk_s3::config::ProvideCredentials;
use batchops_core::export::{parse_secret, AzureSecret, S3Secret, StoreLocation};
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{ClientOptions, ObjectStore, RetryConfig, StaticCredentialProvider};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// Part size of the multipart upload of one object (and the most read ahead of it).
    pub part_bytes: u64,
    /// Parts of one object uploading at once.
    pub part_concurrency: usize,
}

/// A store and the key prefix the location names in it.
#[derive(Debug, Clone)]
pub struct OpenStore {
    pub store: Arc<dyn ObjectStore>,
    pub location: StoreLocation,
}

/// Reads a secret's string value.
async fn secret_value(app: &App, arn: &str) -> Result<String> {
    let answer = app
        .secrets
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|err| Error::aws_call("SecretsManager", "GetSecretValue", arn, &err))?;
    answer.secret_string().map(str::to_string).ok_or_else(|| {
        Error::Invalid(format!(
            "secret {arn} has no string value: store its credentials as JSON (README \"Exports\")"
        ))
    })
}

/// Retries of the store's own requests (throttling, 5xx, cut connections) with backoff.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: Default::default(),
        max_retries: 5,
        retry_timeout: Duration::from_secs(120),
    }
}

fn client_options(endpoint: Option<&str>) -> ClientOptions {
    ClientOptions::new().with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
}

fn build_error(location: &StoreLocation, err: object_store::Error) -> Error {
    Error::Invalid(format!("cannot open {}: {err}", location.url()))
}

/// Builds the store a location names, with its secret's credentials (or, for `s3://` in this
/// account, the stack's own).
pub async fn open(app: &App, location: &StoreLocation) -> Result<OpenStore> {
    let store: Arc<dyn ObjectStore> = match location {
        StoreLocation::S3 {
            bucket,
            endpoint,
            region,
            path_style,
            secret_arn,
            ..
        } => {
            let credential = match secret_arn {
                Some(arn) => {
                    let secret: S3Secret = parse_secret(arn, &secret_value(app, arn).await?)
                        .map_err(Error::Invalid)?;
                    AwsCredential {
                        key_id: secret.access_key_id,
                        secret_key: secret.secret_access_key,
                        token: secret.session_token,
                    }
                }
                None => stack_credential(app).await?,
            };
            // This account's S3 is reached as the SDK reaches it (AWS_ENDPOINT_URL locally).
            let (endpoint, path_style) = match (endpoint, secret_arn) {
                (Some(e), _) => (Some(e.clone()), *path_style),
                (None, None) => match std::env::var("AWS_ENDPOINT_URL") {
                    Ok(local) if !local.is_empty() => (Some(local), true),
                    _ => (None, *path_style),
                },
                (None, Some(_)) => (None, *path_style),
            };
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(region.clone().unwrap_or_else(|| app.config.region.clone()))
                .with_credentials(Arc::new(StaticCredentialProvider::new(credential)))
                .with_virtual_hosted_style_request(!path_style)
                .with_client_options(client_options(endpoint.as_deref()))
                .with_retry(retry_config());
            if let Some(endpoint) = endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            Arc::new(builder.build().map_err(|e| build_error(location, e))?)
        }
        StoreLocation::Gcs {
            bucket, secret_arn, ..
        } => {
            // The secret is a service account key (JSON) as Google issues it.
            let key = secret_value(app, secret_arn).await?;
            let endpoint = serde_json::from_str::<serde_json::Value>(&key)
                .ok()
                .and_then(|v| v.get("gcs_base_url")?.as_str().map(str::to_string));
            Arc::new(
                GoogleCloudStorageBuilder::new()
                    .with_bucket_name(bucket)
                    .with_service_account_key(key)
                    .with_client_options(client_options(endpoint.as_deref()))
                    .with_retry(retry_config())
                    .build()
                    .map_err(|e| build_error(location, e))?,
            )
        }
        StoreLocation::Azure {
            account,
            container,
            endpoint,
            secret_arn,
            ..
        } => {
            let secret: AzureSecret =
                parse_secret(secret_arn, &secret_value(app, secret_arn).await?)
                    .map_err(Error::Invalid)?;
            secret.check(secret_arn).map_err(Error::Invalid)?;
            let mut builder = MicrosoftAzureBuilder::new()
                .with_account(account)
                .with_container_name(container)
                .with_client_options(client_options(endpoint.as_deref()))
                .with_retry(retry_config());
            if let Some(endpoint) = endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            if let Some(key) = secret.access_key {
                builder = builder.with_access_key(key);
            }
            if let Some(sas) = secret.sas_token {
                let pairs = url_query_pairs(&sas);
                builder = builder.with_sas_authorization(pairs);
            }
            Arc::new(builder.build().map_err(|e| build_error(location, e))?)
        }
    };
    Ok(OpenStore {
        store,
        location: location.clone(),
    })
}

/// The stack's own credentials, as the SDK clients use them.
async fn stack_credential(app: &App) -> Result<AwsCredential> {
    let local = std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty());
    if local && std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        // As `Clients::load` does for the local stack.
        return Ok(AwsCredential {
            key_id: "testing".to_string(),
            secret_key: "testing".to_string(),
            token: None,
        });
    }
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(app.config.region.clone()))
        .load()
        .await;
    let provider = shared.credentials_provider().ok_or_else(|| {
        Error::Invalid("no AWS credentials for s3:// in this account".to_string())
    })?;
    let credentials = provider.provide_credentials().await.map_err(|err| {
        Error::Invalid(format!("cannot read this stack's AWS credentials: {err}"))
    })?;
    Ok(AwsCredential {
        key_id: credentials.access_key_id().to_string(),
        secret_key: credentials.secret_access_key().to_string(),
        token: credentials.session_token().map(str::to_string),
    })
}

/// A SAS token (`sv=...&sig=...`, with or without a leading `?`) as query pairs.
fn url_query_pairs(sas: &str) -> Vec<(String, String)> {
    sas.trim_start_matches('?')
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}
