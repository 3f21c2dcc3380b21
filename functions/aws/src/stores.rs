//! Other object stores (S3-compatible endpoints, Google Cloud Storage, Azure Blob Storage)
//! through the `object_store` crate, built from a [`StoreLocation`] and the credentials its
//! Secrets Manager secret holds. Secret values live only in the built store: never in errors,
//! logs, the table or reports.

use crate::error::{Error, Result};
use crate::App;
use aws_sdk_s3::config::ProvideCredentials;
use batchops_core::backoff::ErrorClass;
use batchops_core::export::{parse_secret, AzureSecret, S3Secret, StoreLocation};
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::multipart::MultipartStore;
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
#[derive(Clone)]
pub struct OpenStore {
    pub store: Arc<dyn ObjectStore>,
    /// The same store's multipart uploads part by part: an upload kept across invocations is
    /// continued by its ID and the IDs of the parts it has.
    pub multipart: Arc<dyn MultipartStore>,
    pub location: StoreLocation,
}

impl std::fmt::Debug for OpenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStore")
            .field("store", &self.store)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
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

/// What a store's error says of the request: refused for good (the HTTP status it stands for)
/// or worth another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreRefusal {
    /// 404: the object, bucket or container is not there.
    NotFound,
    /// 401 or 403: the credentials are refused or lack the permission.
    AccessDenied,
    /// The key cannot be named in this store.
    InvalidKey,
    /// The store does not do what was asked.
    NotSupported,
    /// Another 4xx answer (not 408 or 429): the request itself is refused.
    Refused(u16),
    /// Timeouts, cut connections, 5xx and throttling (which `object_store` already retried).
    Transient,
}

impl StoreRefusal {
    pub fn of(err: &object_store::Error) -> Self {
        use object_store::Error as E;
        match err {
            E::NotFound { .. } => StoreRefusal::NotFound,
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => StoreRefusal::AccessDenied,
            E::InvalidPath { .. } => StoreRefusal::InvalidKey,
            E::NotImplemented { .. } | E::NotSupported { .. } => StoreRefusal::NotSupported,
            other => match answered_status(&other.to_string()) {
                Some(status) if (400..500).contains(&status) && status != 408 && status != 429 => {
                    StoreRefusal::Refused(status)
                }
                _ => StoreRefusal::Transient,
            },
        }
    }

    pub fn class(self) -> ErrorClass {
        match self {
            StoreRefusal::Transient => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }

    /// The error code a task failed by this reports, by the end of the transfer the store is.
    pub fn code(self, end: End) -> &'static str {
        use StoreRefusal as R;
        match (self, end) {
            // A source object deleted since it was listed.
            (R::NotFound, End::Source) => "NoSuchKey",
            (R::NotFound, End::Destination) => "DestinationNotFound",
            (R::AccessDenied, End::Source) => "SourceAccessDenied",
            (R::AccessDenied, End::Destination) => "DestinationAccessDenied",
            (R::InvalidKey, _) => "UnsupportedKey",
            (R::NotSupported, _) => "NotSupported",
            (R::Refused(_), End::Source) => "SourceRefused",
            (R::Refused(_), End::Destination) => "DestinationRefused",
            (R::Transient, End::Source) => "SourceError",
            (R::Transient, End::Destination) => "DestinationError",
        }
    }

    /// The HTTP status this stands for (500 for a transient error).
    pub fn status(self) -> u16 {
        match self {
            StoreRefusal::NotFound => 404,
            StoreRefusal::AccessDenied => 403,
            StoreRefusal::InvalidKey => 400,
            StoreRefusal::NotSupported => 501,
            StoreRefusal::Refused(status) => status,
            StoreRefusal::Transient => 500,
        }
    }
}

/// A store error's text without the XML error document S3-compatible stores and Azure answer
/// with (object_store quotes the whole body): its code and message stand in for it.
pub fn error_text(err: &object_store::Error) -> String {
    let text = err.to_string();
    let Some(start) = text.find("<?xml").or_else(|| text.find("<Error>")) else {
        return text;
    };
    let element = |name: &str| {
        let open = format!("<{name}>");
        let from = text[start..].find(&open)? + start + open.len();
        let to = text[from..].find(&format!("</{name}>"))? + from;
        Some(text[from..to].to_string())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{}{code}: {message}", &text[..start]),
        (Some(code), None) => format!("{}{code}", &text[..start]),
        _ => text.clone(),
    }
}

/// Which end of a transfer a store is: exports write to one, imports read from one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Source,
    Destination,
}

/// The status in `object_store`'s text of an answered request ("... status code: 400 Bad
/// Request ..."): its error type is not public, so its text is all there is to read.
fn answered_status(text: &str) -> Option<u16> {
    let (_, after) = text.split_once("status code: ")?;
    after.get(..3)?.parse().ok()
}

fn build_error(location: &StoreLocation, err: object_store::Error) -> Error {
    Error::Invalid(format!("cannot open {}: {err}", location.url()))
}

/// Builds the store a location names, with its secret's credentials (or, for `s3://` in this
/// account, the stack's own).
pub async fn open(app: &App, location: &StoreLocation) -> Result<OpenStore> {
    /// Both views of one store.
    fn both<T: ObjectStore + MultipartStore>(
        store: T,
    ) -> (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>) {
        let store = Arc::new(store);
        (store.clone(), store)
    }
    let (store, multipart) = match location {
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
            both(builder.build().map_err(|e| build_error(location, e))?)
        }
        StoreLocation::Gcs {
            bucket, secret_arn, ..
        } => {
            // The secret is a service account key (JSON) as Google issues it.
            let key = secret_value(app, secret_arn).await?;
            let endpoint = serde_json::from_str::<serde_json::Value>(&key)
                .ok()
                .and_then(|v| v.get("gcs_base_url")?.as_str().map(str::to_string));
            both(
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
            both(builder.build().map_err(|e| build_error(location, e))?)
        }
    };
    Ok(OpenStore {
        store,
        multipart,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xml_error_document_is_cut_to_its_code_and_message() {
        let err = object_store::Error::NotFound {
            path: "p".into(),
            source: "Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><RequestId>1</RequestId></Error>".into(),
        };
        assert_eq!(
            error_text(&err),
            "Object at location p not found: Server returned non-2xx status code: 404 Not Found: NoSuchBucket: The specified bucket does not exist"
        );
        let plain = object_store::Error::NotFound {
            path: "p".into(),
            source: "gone".into(),
        };
        assert_eq!(error_text(&plain), plain.to_string());
    }

    #[test]
    fn an_answered_status_is_read_from_the_error_text() {
        assert_eq!(
            answered_status("Error performing PUT http://h/b in 2ms - Server returned non-2xx status code: 400 Bad Request: <Error>"),
            Some(400)
        );
        assert_eq!(answered_status("connection reset"), None);
    }

    #[test]
    fn store_errors_are_permanent_for_what_a_retry_cannot_change() {
        let not_found = object_store::Error::NotFound {
            path: "p".into(),
            source: "NoSuchBucket".into(),
        };
        assert_eq!(StoreRefusal::of(&not_found), StoreRefusal::NotFound);
        assert_eq!(StoreRefusal::of(&not_found).class(), ErrorClass::Permanent);
        let denied = object_store::Error::PermissionDenied {
            path: "p".into(),
            source: "AccessDenied".into(),
        };
        assert_eq!(StoreRefusal::of(&denied).status(), 403);
        let bad = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 400 Bad Request: InvalidArgument".into(),
        };
        assert_eq!(StoreRefusal::of(&bad), StoreRefusal::Refused(400));
        for transient in [
            "Server returned non-2xx status code: 503 Service Unavailable: SlowDown",
            "Server returned non-2xx status code: 429 Too Many Requests",
            "error sending request: operation timed out",
        ] {
            let err = object_store::Error::Generic {
                store: "S3",
                source: transient.into(),
            };
            assert_eq!(
                StoreRefusal::of(&err).class(),
                ErrorClass::Transient,
                "{transient}"
            );
        }
    }
}
