//! Exports to other object stores: where (a [`StoreLocation`]), how a source key is named there,
//! what a task records in its report row, the export manifest written at the destination, and
//! the statuses an export shows. Pure: the stores themselves are reached in the aws crate.

use crate::JobStatus;
use serde::{Deserialize, Serialize};

/// Where an export writes (or an import reads): a bucket or container and a key prefix in one
/// object store. Credentials are never part of it: only the ARN of a Secrets Manager secret
/// holding them (see README "Exports" for each store's secret shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "store", rename_all = "camelCase")]
pub enum StoreLocation {
    /// `s3://bucket/prefix`: S3 in this account with the stack's credentials, or (with an
    /// endpoint or a secret) any S3-compatible store with its own credentials.
    #[serde(rename_all = "camelCase")]
    S3 {
        bucket: String,
        prefix: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        #[serde(default)]
        path_style: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_arn: Option<String>,
    },
    /// `gs://bucket/prefix`: Google Cloud Storage.
    #[serde(rename_all = "camelCase")]
    Gcs {
        bucket: String,
        prefix: String,
        secret_arn: String,
    },
    /// `az://account/container/prefix`: Azure Blob Storage.
    #[serde(rename_all = "camelCase")]
    Azure {
        account: String,
        container: String,
        prefix: String,
        /// The Blob service endpoint when not `https://<account>.blob.core.windows.net`
        /// (Azurite, sovereign clouds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        secret_arn: String,
    },
}

/// The options a location takes besides its URL (CLI flags, or the fields of the JSON form).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocationOptions {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub path_style: bool,
    #[serde(default)]
    pub secret_arn: Option<String>,
}

/// The JSON form of a location: `{"url": "s3://bucket/prefix", "endpoint": "https://...",
/// "region": "...", "pathStyle": true, "secretArn": "arn:aws:secretsmanager:..."}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LocationDocument {
    url: String,
    #[serde(flatten)]
    options: LocationOptions,
}

impl StoreLocation {
    /// Parses a location URL (`s3://`, `gs://`, `az://`) with its options. Errors name the part
    /// that is wrong.
    pub fn parse(url: &str, options: &LocationOptions) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!("`{url}` is not a location: expected s3://bucket/prefix, gs://bucket/prefix or az://account/container/prefix")
        })?;
        if let Some(arn) = &options.secret_arn {
            check_secret_arn(arn)?;
        }
        if let Some(endpoint) = &options.endpoint {
            check_endpoint(endpoint)?;
        }
        let refuse = |what: &str, scheme: &str| {
            Err(format!(
                "{what} does not apply to {scheme}:// locations (only to s3:// and, for endpoint, az://)"
            ))
        };
        match scheme {
            "s3" => {
                let (bucket, prefix) = split_first(rest);
                check_bucket(bucket, "S3 bucket")?;
                if options.endpoint.is_some() && options.secret_arn.is_none() {
                    return Err(format!(
                        "the S3-compatible endpoint of `{url}` needs a secretArn: credentials for other stores come from Secrets Manager"
                    ));
                }
                if let Some(region) = &options.region {
                    if region.is_empty()
                        || !region
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    {
                        return Err(format!("region `{region}` is not a region name"));
                    }
                }
                Ok(StoreLocation::S3 {
                    bucket: bucket.to_string(),
                    prefix: directory(prefix, url)?,
                    endpoint: options.endpoint.clone(),
                    region: options.region.clone(),
                    path_style: options.path_style,
                    secret_arn: options.secret_arn.clone(),
                })
            }
            "gs" => {
                let (bucket, prefix) = split_first(rest);
                check_bucket(bucket, "GCS bucket")?;
                if options.endpoint.is_some() {
                    return refuse("endpoint", "gs");
                }
                if options.region.is_some() {
                    return refuse("region", "gs");
                }
                if options.path_style {
                    return refuse("pathStyle", "gs");
                }
                Ok(StoreLocation::Gcs {
                    bucket: bucket.to_string(),
                    prefix: directory(prefix, url)?,
                    secret_arn: required_secret(options, url)?,
                })
            }
            "az" => {
                let (account, rest) = split_first(rest);
                let (container, prefix) = split_first(rest);
                if account.len() < 3
                    || account.len() > 24
                    || !account
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                {
                    return Err(format!(
                        "`{account}` in `{url}` is not an Azure storage account name (3-24 lowercase letters and digits); expected az://account/container/prefix"
                    ));
                }
                if container.len() < 3
                    || container.len() > 63
                    || !container
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    || container.starts_with('-')
                    || container.ends_with('-')
                    || container.contains("--")
                {
                    return Err(format!(
                        "`{container}` in `{url}` is not an Azure container name (3-63 lowercase letters, digits and single hyphens); expected az://account/container/prefix"
                    ));
                }
                if options.region.is_some() {
                    return refuse("region", "az");
                }
                if options.path_style {
                    return refuse("pathStyle", "az");
                }
                Ok(StoreLocation::Azure {
                    account: account.to_string(),
                    container: container.to_string(),
                    prefix: directory(prefix, url)?,
                    endpoint: options.endpoint.clone(),
                    secret_arn: required_secret(options, url)?,
                })
            }
            other => Err(format!(
                "`{other}://` is not a supported store in `{url}`: use s3://, gs:// or az://"
            )),
        }
    }

    /// Parses a location given as a URL string or as the JSON form.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        match value {
            serde_json::Value::String(url) => Self::parse(url, &LocationOptions::default()),
            serde_json::Value::Object(_) => {
                let doc: LocationDocument =
                    serde_json::from_value(value.clone()).map_err(|e| format!("location: {e}"))?;
                Self::parse(&doc.url, &doc.options)
            }
            _ => Err("location must be a URL string or an object with `url`".to_string()),
        }
    }

    /// The key prefix (empty, or ending with `/`).
    pub fn prefix(&self) -> &str {
        match self {
            StoreLocation::S3 { prefix, .. }
            | StoreLocation::Gcs { prefix, .. }
            | StoreLocation::Azure { prefix, .. } => prefix,
        }
    }

    pub fn secret_arn(&self) -> Option<&str> {
        match self {
            StoreLocation::S3 { secret_arn, .. } => secret_arn.as_deref(),
            StoreLocation::Gcs { secret_arn, .. } | StoreLocation::Azure { secret_arn, .. } => {
                Some(secret_arn)
            }
        }
    }

    /// The location as a URL (without its options): for messages, reports and listings.
    pub fn url(&self) -> String {
        match self {
            StoreLocation::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
            StoreLocation::Gcs { bucket, prefix, .. } => format!("gs://{bucket}/{prefix}"),
            StoreLocation::Azure {
                account,
                container,
                prefix,
                ..
            } => format!("az://{account}/{container}/{prefix}"),
        }
    }

    /// The key the export writes for `source_key`: the prefix joined with the key, refused when
    /// the object store library cannot name it (see [`check_store_key`]).
    pub fn destination_key(&self, source_key: &str) -> Result<String, String> {
        let key = format!("{}{source_key}", self.prefix());
        check_store_key(&key)?;
        Ok(key)
    }

    /// Where the export manifest of job `job_id` is written.
    pub fn manifest_key(&self, job_id: &str) -> String {
        format!("{}.batchops/exports/{job_id}/manifest.jsonl", self.prefix())
    }
}

fn split_first(rest: &str) -> (&str, &str) {
    rest.split_once('/').unwrap_or((rest, ""))
}

fn required_secret(options: &LocationOptions, url: &str) -> Result<String, String> {
    options.secret_arn.clone().ok_or_else(|| {
        format!("`{url}` needs a secretArn (--secret): credentials for other stores come from Secrets Manager")
    })
}

/// A prefix as a directory: empty, or checked and ending with `/`.
fn directory(prefix: &str, url: &str) -> Result<String, String> {
    if prefix.is_empty() {
        return Ok(String::new());
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    check_store_key(trimmed).map_err(|e| format!("prefix of `{url}`: {e}"))?;
    Ok(format!("{trimmed}/"))
}

fn check_bucket(bucket: &str, what: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_'
        })
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{bucket}` is not a {what} name (3-63 lowercase letters, digits, '.', '-', starting and ending with a letter or digit)"
        ))
    }
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!(
            "endpoint `{endpoint}` is not an http:// or https:// URL"
        )),
    }
}

/// A Secrets Manager secret ARN: `arn:<partition>:secretsmanager:<region>:<account>:secret:<name>`.
pub fn check_secret_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let ok = parts.len() == 7
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "secretsmanager"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5] == "secret"
        && !parts[6].is_empty();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{arn}` is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
        ))
    }
}

/// Whether the object store library can name `key` as it is: it joins keys from segments
/// between `/`, so a key with an empty segment (`a//b`, a leading or trailing `/`), a `.` or
/// `..` segment, or an ASCII control character would be written under another name. Such keys
/// are refused rather than renamed.
pub fn check_store_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty".to_string());
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return Err(format!(
                "`{key}` has an empty path segment (a leading, trailing or doubled `/`), which other object stores cannot name"
            ));
        }
        if segment == "." || segment == ".." {
            return Err(format!(
                "`{key}` has a `{segment}` path segment, which other object stores cannot name"
            ));
        }
    }
    if key.chars().any(|c| c.is_ascii_control()) {
        return Err(format!(
            "`{}` has an ASCII control character, which other object stores cannot name",
            key.escape_debug()
        ));
    }
    Ok(())
}

/// What an export writes: validated, stored in the job spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSpec {
    pub to: StoreLocation,
}

/// One exported object, as its report row's ResultMessage says it and as a line of the export
/// manifest holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedObject {
    /// The source key (not encoded).
    pub key: String,
    /// The source version exported (None: unversioned source).
    #[serde(default)]
    pub version_id: Option<String>,
    /// The key written at the destination.
    pub destination_key: String,
    pub size: u64,
    /// Hex MD5 of the bytes written, computed while streaming.
    pub md5: String,
    /// Imports: the ETag the source store gave the object (without quotes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_etag: Option<String>,
}

/// The ResultMessage of an exported object's report row.
pub fn export_result_message(size: u64, md5: &str, destination_key: &str) -> String {
    format!("Exported size={size} md5={md5} to={destination_key}")
}

/// Reads an [`export_result_message`] back: (size, md5, destination key).
pub fn parse_export_result_message(message: &str) -> Option<(u64, String, String)> {
    let rest = message.strip_prefix("Exported size=")?;
    let (size, rest) = rest.split_once(" md5=")?;
    let (md5, key) = rest.split_once(" to=")?;
    if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((size.parse().ok()?, md5.to_string(), key.to_string()))
}

/// One line of the export manifest (JSON lines, one object per line, in report order).
pub fn manifest_line(object: &ExportedObject) -> String {
    let mut line = serde_json::to_string(object).unwrap_or_default();
    line.push('\n');
    line
}

/// Reads an export manifest, naming the line that is wrong.
pub fn parse_manifest(text: &str) -> Result<Vec<ExportedObject>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| format!("export manifest line {}: {e}", i + 1))
        })
        .collect()
}

/// The status an export shows, from its job's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportStatus {
    #[serde(rename = "In progress")]
    InProgress,
    Success,
    Error,
    Cancelled,
}

impl ExportStatus {
    pub fn of(job: JobStatus) -> Self {
        match job {
            JobStatus::Complete => ExportStatus::Success,
            JobStatus::Failed => ExportStatus::Error,
            JobStatus::Cancelled => ExportStatus::Cancelled,
            _ => ExportStatus::InProgress,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportStatus::InProgress => "In progress",
            ExportStatus::Success => "Success",
            ExportStatus::Error => "Error",
            ExportStatus::Cancelled => "Cancelled",
        }
    }
}

/// Credentials of an S3-compatible store, as its secret holds them (JSON).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Secret {
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
}

/// Credentials of an Azure storage account, as its secret holds them (JSON): the account key,
/// or a SAS token.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureSecret {
    #[serde(default)]
    pub access_key: Option<String>,
    #[serde(default)]
    pub sas_token: Option<String>,
}

/// Reads a secret's JSON into `T`, naming the secret (never its value) when it does not fit.
pub fn parse_secret<T: serde::de::DeserializeOwned>(arn: &str, text: &str) -> Result<T, String> {
    // serde's message may quote a value; only the field path is kept.
    let deserializer = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let kind = err.inner().classify();
        let path = err.path().to_string();
        format!(
            "secret {arn} does not hold the expected JSON (at `{path}`: {kind:?} error; see README \"Exports\" for its shape)"
        )
    })
}

impl AzureSecret {
    pub fn check(&self, arn: &str) -> Result<(), String> {
        match (&self.access_key, &self.sas_token) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(format!(
                "secret {arn} must hold exactly one of accessKey and sasToken"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:other-store-AbCdEf";

    fn with_secret() -> LocationOptions {
        LocationOptions {
            secret_arn: Some(ARN.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn s3_locations_in_this_account_and_compatible_endpoints() {
        let here =
            StoreLocation::parse("s3://my-bucket/backups/2024", &Default::default()).unwrap();
        assert_eq!(here.prefix(), "backups/2024/");
        assert_eq!(here.secret_arn(), None);
        assert_eq!(here.url(), "s3://my-bucket/backups/2024/");
        let root = StoreLocation::parse("s3://my-bucket", &Default::default()).unwrap();
        assert_eq!(root.prefix(), "");
        let other = StoreLocation::parse(
            "s3://other/exp/",
            &LocationOptions {
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
                path_style: true,
                secret_arn: Some(ARN.into()),
            },
        )
        .unwrap();
        assert_eq!(
            other,
            StoreLocation::S3 {
                bucket: "other".into(),
                prefix: "exp/".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
                path_style: true,
                secret_arn: Some(ARN.into()),
            }
        );
        let err = StoreLocation::parse(
            "s3://other/exp",
            &LocationOptions {
                endpoint: Some("http://127.0.0.1:9000".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("needs a secretArn"), "{err}");
    }

    #[test]
    fn gcs_and_azure_locations_need_a_secret() {
        let gcs = StoreLocation::parse("gs://bucket-1/a/b", &with_secret()).unwrap();
        assert_eq!(gcs.prefix(), "a/b/");
        assert_eq!(gcs.secret_arn(), Some(ARN));
        let err = StoreLocation::parse("gs://bucket-1/a", &Default::default()).unwrap_err();
        assert!(err.contains("needs a secretArn"), "{err}");
        let az = StoreLocation::parse("az://devstoreaccount1/exports/x", &with_secret()).unwrap();
        assert_eq!(
            az,
            StoreLocation::Azure {
                account: "devstoreaccount1".into(),
                container: "exports".into(),
                prefix: "x/".into(),
                endpoint: None,
                secret_arn: ARN.into(),
            }
        );
        assert_eq!(az.url(), "az://devstoreaccount1/exports/x/");
    }

    #[test]
    fn bad_locations_name_what_is_wrong() {
        let cases = [
            ("bucket/prefix", "is not a location"),
            ("ftp://host/x", "`ftp://` is not a supported store"),
            ("s3://AB/x", "`AB` is not a S3 bucket name"),
            ("s3://b", "`b` is not a S3 bucket name"),
            ("az://Account/cont/x", "not an Azure storage account name"),
            ("az://acct/c/x", "not an Azure container name"),
            ("az://acct/bad--name/x", "not an Azure container name"),
            ("s3://bucket/a//b", "empty path segment"),
            ("s3://bucket/a/../b", "`..` path segment"),
        ];
        for (url, expected) in cases {
            let err = StoreLocation::parse(url, &with_secret()).unwrap_err();
            assert!(err.contains(expected), "{url}: {err}");
        }
        let err = StoreLocation::parse(
            "gs://bucket/x",
            &LocationOptions {
                region: Some("us".into()),
                secret_arn: Some(ARN.into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("region does not apply to gs://"), "{err}");
        let err = StoreLocation::parse(
            "s3://bucket/x",
            &LocationOptions {
                secret_arn: Some("arn:aws:s3:::bucket".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("is not a Secrets Manager secret ARN"), "{err}");
        let err = StoreLocation::parse(
            "s3://bucket/x",
            &LocationOptions {
                endpoint: Some("localhost:9000".into()),
                secret_arn: Some(ARN.into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("not an http:// or https:// URL"), "{err}");
    }

    #[test]
    fn json_form_of_a_location() {
        let value = serde_json::json!({"url": "s3://other/p", "endpoint": "http://h:1",
            "pathStyle": true, "secretArn": ARN});
        let location = StoreLocation::from_json(&value).unwrap();
        assert!(matches!(
            location,
            StoreLocation::S3 {
                path_style: true,
                ..
            }
        ));
        let err =
            StoreLocation::from_json(&serde_json::json!({"url": "s3://other/p", "secret": "x"}))
                .unwrap_err();
        assert!(err.contains("unknown field `secret`"), "{err}");
        let plain = StoreLocation::from_json(&serde_json::json!("s3://mine/x")).unwrap();
        assert_eq!(plain.prefix(), "x/");
        // The stored form reads back the same.
        let stored = serde_json::to_string(&location).unwrap();
        assert_eq!(
            serde_json::from_str::<StoreLocation>(&stored).unwrap(),
            location
        );
    }

    #[test]
    fn destination_keys_keep_awkward_names_and_refuse_unnameable_ones() {
        let to = StoreLocation::parse("s3://bucket/exp", &Default::default()).unwrap();
        for key in [
            "a b+c=d&e?.txt",
            "ünï/cødé %41",
            "x#y/[1]~",
            "dir/.hidden",
            "...",
        ] {
            assert_eq!(to.destination_key(key).unwrap(), format!("exp/{key}"));
        }
        for key in ["a//b", "dir/", "/lead", "a/./b", "a/../b", "tab\there"] {
            assert!(to.destination_key(key).is_err(), "{key}");
        }
        assert_eq!(
            to.manifest_key("j-1"),
            "exp/.batchops/exports/j-1/manifest.jsonl"
        );
    }

    #[test]
    fn result_messages_and_manifest_lines_read_back() {
        let md5 = "0123456789abcdef0123456789abcdef";
        let message = export_result_message(20 << 20, md5, "exp/a b=c to=d");
        assert_eq!(
            parse_export_result_message(&message),
            Some((20 << 20, md5.to_string(), "exp/a b=c to=d".to_string()))
        );
        assert_eq!(parse_export_result_message("Successful"), None);
        assert_eq!(
            parse_export_result_message("Exported size=1 md5=zz to=k"),
            None
        );
        let object = ExportedObject {
            key: "a\nb".into(),
            version_id: Some("v1".into()),
            destination_key: "exp/a\nb".into(),
            size: 3,
            md5: md5.into(),
            source_etag: None,
        };
        let text = format!("{}{}", manifest_line(&object), manifest_line(&object));
        assert_eq!(text.lines().count(), 2);
        assert_eq!(parse_manifest(&text).unwrap(), vec![object.clone(), object]);
        let err = parse_manifest("{\"key\": 1}\n").unwrap_err();
        assert!(err.starts_with("export manifest line 1:"), "{err}");
    }

    #[test]
    fn export_statuses_from_job_statuses() {
        for status in JobStatus::ALL {
            let expected = match status {
                JobStatus::Complete => "Success",
                JobStatus::Failed => "Error",
                JobStatus::Cancelled => "Cancelled",
                _ => "In progress",
            };
            assert_eq!(ExportStatus::of(status).as_str(), expected);
        }
    }

    #[test]
    fn secrets_are_read_without_echoing_their_values() {
        let s3: S3Secret =
            parse_secret(ARN, r#"{"accessKeyId": "AK", "secretAccessKey": "SK"}"#).unwrap();
        assert_eq!(s3.access_key_id, "AK");
        let err = parse_secret::<S3Secret>(ARN, r#"{"accessKeyId": "AK", "secretKey": "hunter2"}"#)
            .err()
            .unwrap();
        assert!(err.contains(ARN) && !err.contains("hunter2"), "{err}");
        let err = parse_secret::<S3Secret>(ARN, r#"{"accessKeyId": 97531}"#)
            .err()
            .unwrap();
        assert!(!err.contains("97531"), "{err}");
        let azure: AzureSecret = parse_secret(ARN, r#"{"accessKey": "k"}"#).unwrap();
        assert!(azure.check(ARN).is_ok());
        let both: AzureSecret =
            parse_secret(ARN, r#"{"accessKey": "k", "sasToken": "s"}"#).unwrap();
        assert!(both.check(ARN).is_err());
    }
}
