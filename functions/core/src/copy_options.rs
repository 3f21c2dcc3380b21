//! The copy's options beyond data, metadata and tags, as S3 Control's `S3PutObjectCopy` takes
//! them (`SSEAwsKmsKeyId`, `BucketKeyEnabled`, `CannedAccessControlList`,
//! `AccessControlGrants`, the three `ObjectLock*` fields, `RedirectLocation`, `RequesterPays`,
//! `ModifiedSinceConstraint`, `UnModifiedSinceConstraint`), validated into what CopyObject and
//! CreateMultipartUpload/UploadPartCopy carry. Bad values are named by their JSON path.

use crate::request::RequestError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// S3 Control's `CannedAccessControlList` values; CopyObject's `x-amz-acl` takes each of them.
pub const CANNED_ACLS: [&str; 7] = [
    "private",
    "public-read",
    "public-read-write",
    "aws-exec-read",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];

/// One entry of S3 Control's `AccessControlGrants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct S3Grant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grantee: Option<S3Grantee>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct S3Grantee {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// Grants as S3's `x-amz-grant-*` headers: each a comma-separated list of `id="..."`,
/// `emailAddress="..."` or `uri="..."` grantees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GrantHeaders {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_acp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_acp: Option<String>,
}

/// The ACL a copy gives the objects it writes (without one, S3's default: private).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectAcl {
    /// `x-amz-acl`.
    Canned(String),
    /// `x-amz-grant-*`.
    Grants(GrantHeaders),
}

/// Object Lock settings for the objects a copy writes; the target bucket must have Object Lock
/// enabled (S3 fails each task otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ObjectLock {
    /// `ON` or `OFF`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<String>,
    /// `COMPLIANCE` or `GOVERNANCE`, always with `retain_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<String>,
}

impl ObjectLock {
    pub fn is_set(&self) -> bool {
        self.legal_hold.is_some() || self.mode.is_some() || self.retain_until.is_some()
    }
}

/// What a copy sets besides data, metadata and tags, and the conditions it copies under.
/// Stored with the job (absent from jobs stored before these options existed: all default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CopyOptions {
    /// SSE-KMS key (key ID, key ARN or alias ARN); only with `SSEAlgorithm` KMS. None with KMS:
    /// the account's AWS managed key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// S3 Bucket Key for SSE-KMS (`x-amz-server-side-encryption-bucket-key-enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_key_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<ObjectAcl>,
    #[serde(default)]
    pub object_lock: ObjectLock,
    /// `x-amz-website-redirect-location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_location: Option<String>,
    /// `x-amz-request-payer: requester` on every request of the copy.
    #[serde(default)]
    pub requester_pays: bool,
    /// `x-amz-copy-source-if-modified-since`, in whole seconds (HTTP dates carry no fraction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_since: Option<i64>,
    /// `x-amz-copy-source-if-unmodified-since`, in whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmodified_since: Option<i64>,
}

impl CopyOptions {
    /// Whether S3 copies a source last modified at `last_modified` (epoch seconds, as a HEAD's
    /// Last-Modified gives it) under the copy-source conditions, S3's way: a copy pinned by
    /// ETag (`x-amz-copy-source-if-match` that holds) is not refused for having been modified
    /// since `unmodified_since`.
    pub fn source_conditions_hold(&self, last_modified: i64, if_match_holds: bool) -> bool {
        let modified = self
            .modified_since
            .is_none_or(|since| last_modified > since);
        let unmodified = if_match_holds
            || self
                .unmodified_since
                .is_none_or(|since| last_modified <= since);
        modified && unmodified
    }
}

/// The options of `S3PutObjectCopy` this module validates, as the request gave them.
pub struct RequestedOptions<'r> {
    pub sse_algorithm: Option<&'r str>,
    pub sse_aws_kms_key_id: Option<&'r str>,
    pub bucket_key_enabled: Option<bool>,
    pub canned_access_control_list: Option<&'r str>,
    pub access_control_grants: Option<&'r [S3Grant]>,
    pub object_lock_legal_hold_status: Option<&'r str>,
    pub object_lock_mode: Option<&'r str>,
    pub object_lock_retain_until_date: Option<&'r Value>,
    pub redirect_location: Option<&'r str>,
    pub requester_pays: Option<bool>,
    pub modified_since_constraint: Option<&'r Value>,
    pub un_modified_since_constraint: Option<&'r Value>,
}

/// Validates the options; `base` is the JSON path of the `S3PutObjectCopy` object and
/// `sse_field` that of `NewObjectMetadata.SSEAlgorithm`.
pub fn validate(
    base: &str,
    sse_field: &str,
    requested: &RequestedOptions<'_>,
) -> Result<CopyOptions, RequestError> {
    let field = |name: &str| format!("{base}.{name}");
    let kms = requested.sse_algorithm == Some("KMS");
    let kms_key_id = match requested.sse_aws_kms_key_id {
        None => None,
        Some(_) if !kms => {
            return Err(RequestError::new(
                field("SSEAwsKmsKeyId"),
                format!("a KMS key needs SSE-KMS: set {sse_field} to KMS"),
            ))
        }
        Some(key) => {
            check_kms_key(key).map_err(|m| RequestError::new(field("SSEAwsKmsKeyId"), m))?;
            Some(key.to_string())
        }
    };
    if requested.bucket_key_enabled == Some(true) && !kms {
        return Err(RequestError::new(
            field("BucketKeyEnabled"),
            format!("an S3 Bucket Key applies to SSE-KMS only: set {sse_field} to KMS"),
        ));
    }
    // Not sent without SSE-KMS: false there is what S3 does anyway.
    let bucket_key_enabled = requested.bucket_key_enabled.filter(|_| kms);
    let acl = match (
        requested.canned_access_control_list,
        requested.access_control_grants,
    ) {
        (Some(_), Some(_)) => {
            return Err(RequestError::new(
                field("AccessControlGrants"),
                "give CannedAccessControlList or AccessControlGrants, not both (S3 refuses a canned ACL together with grants)",
            ))
        }
        (Some(canned), None) => {
            if !CANNED_ACLS.contains(&canned) {
                return Err(RequestError::new(
                    field("CannedAccessControlList"),
                    format!(
                        "unknown canned ACL `{canned}`; expected one of {}",
                        CANNED_ACLS.join(", ")
                    ),
                ));
            }
            Some(ObjectAcl::Canned(canned.to_string()))
        }
        (None, Some(grants)) => Some(ObjectAcl::Grants(grant_headers(
            &field("AccessControlGrants"),
            grants,
        )?)),
        (None, None) => None,
    };
    let object_lock = object_lock(base, requested)?;
    let redirect_location = match requested.redirect_location {
        None => None,
        Some(location) => {
            let len = location.chars().count();
            if !(1..=2048).contains(&len) {
                return Err(RequestError::new(
                    field("RedirectLocation"),
                    "must be 1 to 2048 characters",
                ));
            }
            if !(location.starts_with('/')
                || location.starts_with("http://")
                || location.starts_with("https://"))
            {
                return Err(RequestError::new(
                    field("RedirectLocation"),
                    format!("`{location}` must start with `/`, `http://` or `https://` (an object in the target bucket or a URL)"),
                ));
            }
            Some(location.to_string())
        }
    };
    let modified_since = requested
        .modified_since_constraint
        .map(|v| timestamp(v).map(|t| t.unix_timestamp()))
        .transpose()
        .map_err(|m| RequestError::new(field("ModifiedSinceConstraint"), m))?;
    let unmodified_since = requested
        .un_modified_since_constraint
        .map(|v| timestamp(v).map(|t| t.unix_timestamp()))
        .transpose()
        .map_err(|m| RequestError::new(field("UnModifiedSinceConstraint"), m))?;
    Ok(CopyOptions {
        kms_key_id,
        bucket_key_enabled,
        acl,
        object_lock,
        redirect_location,
        requester_pays: requested.requester_pays == Some(true),
        modified_since,
        unmodified_since,
    })
}

fn object_lock(base: &str, requested: &RequestedOptions<'_>) -> Result<ObjectLock, RequestError> {
    let field = |name: &str| format!("{base}.{name}");
    let legal_hold = match requested.object_lock_legal_hold_status {
        None => None,
        Some(status @ ("ON" | "OFF")) => Some(status.to_string()),
        Some(other) => {
            return Err(RequestError::new(
                field("ObjectLockLegalHoldStatus"),
                format!("expected ON or OFF, got `{other}`"),
            ))
        }
    };
    let mode = match requested.object_lock_mode {
        None => None,
        Some(mode @ ("COMPLIANCE" | "GOVERNANCE")) => Some(mode.to_string()),
        Some(other) => {
            return Err(RequestError::new(
                field("ObjectLockMode"),
                format!("expected COMPLIANCE or GOVERNANCE, got `{other}`"),
            ))
        }
    };
    let retain_until = requested
        .object_lock_retain_until_date
        .map(|v| {
            timestamp(v).and_then(|t| {
                t.format(&Rfc3339)
                    .map_err(|e| format!("cannot be written as RFC 3339: {e}"))
            })
        })
        .transpose()
        .map_err(|m| RequestError::new(field("ObjectLockRetainUntilDate"), m))?;
    match (&mode, &retain_until) {
        (Some(_), None) => Err(RequestError::new(
            field("ObjectLockRetainUntilDate"),
            "required with ObjectLockMode (S3 takes a retention mode only with its date)",
        )),
        (None, Some(_)) => Err(RequestError::new(
            field("ObjectLockMode"),
            "required with ObjectLockRetainUntilDate (S3 takes a retention date only with its mode)",
        )),
        _ => Ok(ObjectLock {
            legal_hold,
            mode,
            retain_until,
        }),
    }
}

/// A timestamp as `aws s3control --cli-input-json` takes one: an ISO 8601 (RFC 3339) string or
/// seconds since the epoch.
fn timestamp(value: &Value) -> Result<OffsetDateTime, String> {
    let at = match value {
        Value::String(text) => OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|e| format!("`{text}` is not an ISO 8601 time: {e}"))?,
        Value::Number(n) => {
            let seconds = n
                .as_f64()
                .filter(|s| s.is_finite())
                .ok_or_else(|| format!("`{n}` is not a time in seconds since the epoch"))?;
            OffsetDateTime::from_unix_timestamp_nanos((seconds * 1e9) as i128)
                .map_err(|e| format!("`{n}` is out of range: {e}"))?
        }
        other => {
            return Err(format!(
                "expected an ISO 8601 time or seconds since the epoch, got {other}"
            ))
        }
    };
    Ok(at.to_offset(time::UtcOffset::UTC))
}

/// A KMS key as S3 takes one for SSE-KMS: a key ID (a UUID, or `mrk-` and 32 hex digits for a
/// multi-Region key), a key ARN, or an alias ARN.
fn check_kms_key(key: &str) -> Result<(), String> {
    let expected = "expected a KMS key ID, key ARN (arn:aws:kms:<region>:<account>:key/<id>) or alias ARN (arn:aws:kms:<region>:<account>:alias/<name>)";
    if key.is_empty() || key.len() > 2000 {
        return Err("must be 1 to 2000 characters".to_string());
    }
    if is_key_id(key) {
        return Ok(());
    }
    let mut parts = key.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("kms"), Some(region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(format!("`{key}`: {expected}"));
    };
    let resource_ok = match resource.split_once('/') {
        Some(("key", id)) => is_key_id(id),
        Some(("alias", name)) => {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
        }
        _ => false,
    };
    if !partition.starts_with("aws")
        || region.is_empty()
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
        || !resource_ok
    {
        return Err(format!("`{key}`: {expected}"));
    }
    Ok(())
}

fn is_key_id(id: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rest) = id.strip_prefix("mrk-") {
        return rest.len() == 32 && hex(rest);
    }
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| hex(g))
}

/// S3 Control's grants as the `x-amz-grant-*` headers of CopyObject and PutObjectAcl. `WRITE` is
/// refused: S3 grants it on buckets only, and CopyObject has no header for it.
pub fn grant_headers(path: &str, grants: &[S3Grant]) -> Result<GrantHeaders, RequestError> {
    if grants.is_empty() {
        return Err(RequestError::new(
            path,
            "must not be empty; leave it out to give the copies S3's default ACL",
        ));
    }
    let mut headers = GrantHeaders::default();
    for (i, grant) in grants.iter().enumerate() {
        let at = |name: &str| format!("{path}[{i}].{name}");
        let grantee = grant
            .grantee
            .as_ref()
            .ok_or_else(|| RequestError::new(at("Grantee"), "required"))?;
        let kind = match grantee.type_identifier.as_deref() {
            Some(kind @ ("id" | "emailAddress" | "uri")) => kind,
            Some(other) => {
                return Err(RequestError::new(
                    at("Grantee.TypeIdentifier"),
                    format!("expected id, emailAddress or uri, got `{other}`"),
                ))
            }
            None => {
                return Err(RequestError::new(
                    at("Grantee.TypeIdentifier"),
                    "required: id, emailAddress or uri",
                ))
            }
        };
        let identifier = grantee
            .identifier
            .as_deref()
            .ok_or_else(|| RequestError::new(at("Grantee.Identifier"), "required"))?;
        if identifier.is_empty()
            || identifier.chars().count() > 1024
            || identifier
                .chars()
                .any(|c| c == '"' || c == ',' || c.is_control())
        {
            return Err(RequestError::new(
                at("Grantee.Identifier"),
                "must be 1 to 1024 characters without quotes, commas or control characters",
            ));
        }
        let slot = match grant.permission.as_deref() {
            Some("FULL_CONTROL") => &mut headers.full_control,
            Some("READ") => &mut headers.read,
            Some("READ_ACP") => &mut headers.read_acp,
            Some("WRITE_ACP") => &mut headers.write_acp,
            Some("WRITE") => {
                return Err(RequestError::new(
                    at("Permission"),
                    "WRITE applies to buckets, not objects: an object ACL cannot grant it; expected FULL_CONTROL, READ, READ_ACP or WRITE_ACP",
                ))
            }
            Some(other) => {
                return Err(RequestError::new(
                    at("Permission"),
                    format!("expected FULL_CONTROL, READ, READ_ACP or WRITE_ACP, got `{other}`"),
                ))
            }
            None => return Err(RequestError::new(at("Permission"), "required")),
        };
        let entry = format!("{kind}=\"{identifier}\"");
        *slot = Some(match slot.take() {
            Some(list) => format!("{list}, {entry}"),
            None => entry,
        });
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn none() -> RequestedOptions<'static> {
        RequestedOptions {
            sse_algorithm: None,
            sse_aws_kms_key_id: None,
            bucket_key_enabled: None,
            canned_access_control_list: None,
            access_control_grants: None,
            object_lock_legal_hold_status: None,
            object_lock_mode: None,
            object_lock_retain_until_date: None,
            redirect_location: None,
            requester_pays: None,
            modified_since_constraint: None,
            un_modified_since_constraint: None,
        }
    }

    const BASE: &str = "Operation.S3PutObjectCopy";
    const SSE: &str = "Operation.S3PutObjectCopy.NewObjectMetadata.SSEAlgorithm";

    fn check(requested: &RequestedOptions<'_>) -> Result<CopyOptions, RequestError> {
        validate(BASE, SSE, requested)
    }

    #[test]
    fn nothing_requested_is_the_default() {
        assert_eq!(check(&none()).unwrap(), CopyOptions::default());
    }

    #[test]
    fn kms_keys_in_every_form_s3_takes() {
        for key in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:eu-west-1:111122223333:alias/backup-key",
        ] {
            let options = check(&RequestedOptions {
                sse_algorithm: Some("KMS"),
                sse_aws_kms_key_id: Some(key),
                bucket_key_enabled: Some(true),
                ..none()
            })
            .unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(options.kms_key_id.as_deref(), Some(key));
            assert_eq!(options.bucket_key_enabled, Some(true));
        }
        // KMS without a key: the AWS managed key.
        let options = check(&RequestedOptions {
            sse_algorithm: Some("KMS"),
            ..none()
        })
        .unwrap();
        assert_eq!(options.kms_key_id, None);
    }

    #[test]
    fn kms_mistakes_name_their_field() {
        let cases = [
            (
                RequestedOptions {
                    sse_algorithm: Some("KMS"),
                    sse_aws_kms_key_id: Some("my-key"),
                    ..none()
                },
                "SSEAwsKmsKeyId",
                "expected a KMS key ID",
            ),
            (
                RequestedOptions {
                    sse_algorithm: Some("KMS"),
                    sse_aws_kms_key_id: Some("arn:aws:kms:us-east-1:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
                    ..none()
                },
                "SSEAwsKmsKeyId",
                "expected a KMS key ID",
            ),
            (
                RequestedOptions {
                    sse_algorithm: Some("KMS"),
                    sse_aws_kms_key_id: Some("arn:aws:s3:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
                    ..none()
                },
                "SSEAwsKmsKeyId",
                "expected a KMS key ID",
            ),
            (
                RequestedOptions {
                    sse_aws_kms_key_id: Some("1234abcd-12ab-34cd-56ef-1234567890ab"),
                    ..none()
                },
                "SSEAwsKmsKeyId",
                "set Operation.S3PutObjectCopy.NewObjectMetadata.SSEAlgorithm to KMS",
            ),
            (
                RequestedOptions {
                    sse_algorithm: Some("AES256"),
                    bucket_key_enabled: Some(true),
                    ..none()
                },
                "BucketKeyEnabled",
                "SSE-KMS only",
            ),
        ];
        for (requested, name, message) in cases {
            let err = check(&requested).unwrap_err();
            assert_eq!(err.field, format!("{BASE}.{name}"), "{err}");
            assert!(err.message.contains(message), "{err}");
        }
        // False without KMS is what S3 does anyway: accepted, not sent.
        let options = check(&RequestedOptions {
            bucket_key_enabled: Some(false),
            ..none()
        })
        .unwrap();
        assert_eq!(options.bucket_key_enabled, None);
    }

    #[test]
    fn canned_acls_and_grants_become_s3_headers() {
        for canned in CANNED_ACLS {
            let options = check(&RequestedOptions {
                canned_access_control_list: Some(canned),
                ..none()
            })
            .unwrap();
            assert_eq!(options.acl, Some(ObjectAcl::Canned(canned.to_string())));
        }
        let grants: Vec<S3Grant> = serde_json::from_value(json!([
            {"Grantee": {"TypeIdentifier": "id", "Identifier": "abc123", "DisplayName": "owner"}, "Permission": "FULL_CONTROL"},
            {"Grantee": {"TypeIdentifier": "uri", "Identifier": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ"},
            {"Grantee": {"TypeIdentifier": "emailAddress", "Identifier": "ops@example.com"}, "Permission": "READ"},
            {"Grantee": {"TypeIdentifier": "id", "Identifier": "def456"}, "Permission": "READ_ACP"},
            {"Grantee": {"TypeIdentifier": "id", "Identifier": "def456"}, "Permission": "WRITE_ACP"}
        ]))
        .unwrap();
        let options = check(&RequestedOptions {
            access_control_grants: Some(&grants),
            ..none()
        })
        .unwrap();
        assert_eq!(
            options.acl,
            Some(ObjectAcl::Grants(GrantHeaders {
                full_control: Some("id=\"abc123\"".into()),
                read: Some(
                    "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\", emailAddress=\"ops@example.com\""
                        .into()
                ),
                read_acp: Some("id=\"def456\"".into()),
                write_acp: Some("id=\"def456\"".into()),
            }))
        );
    }

    #[test]
    fn acl_mistakes_name_their_field() {
        let grant = |value: Value| -> Vec<S3Grant> { serde_json::from_value(value).unwrap() };
        let write = grant(
            json!([{"Grantee": {"TypeIdentifier": "id", "Identifier": "a"}, "Permission": "WRITE"}]),
        );
        let kind = grant(
            json!([{"Grantee": {"TypeIdentifier": "group", "Identifier": "a"}, "Permission": "READ"}]),
        );
        let quote = grant(
            json!([{"Grantee": {"TypeIdentifier": "id", "Identifier": "a\"b"}, "Permission": "READ"}]),
        );
        let no_grantee = grant(json!([{"Permission": "READ"}]));
        let cases: [(RequestedOptions<'_>, &str, &str); 6] = [
            (
                RequestedOptions {
                    canned_access_control_list: Some("owner-only"),
                    ..none()
                },
                "CannedAccessControlList",
                "bucket-owner-full-control",
            ),
            (
                RequestedOptions {
                    canned_access_control_list: Some("private"),
                    access_control_grants: Some(&write),
                    ..none()
                },
                "AccessControlGrants",
                "not both",
            ),
            (
                RequestedOptions {
                    access_control_grants: Some(&write),
                    ..none()
                },
                "AccessControlGrants[0].Permission",
                "buckets, not objects",
            ),
            (
                RequestedOptions {
                    access_control_grants: Some(&kind),
                    ..none()
                },
                "AccessControlGrants[0].Grantee.TypeIdentifier",
                "id, emailAddress or uri",
            ),
            (
                RequestedOptions {
                    access_control_grants: Some(&quote),
                    ..none()
                },
                "AccessControlGrants[0].Grantee.Identifier",
                "without quotes",
            ),
            (
                RequestedOptions {
                    access_control_grants: Some(&no_grantee),
                    ..none()
                },
                "AccessControlGrants[0].Grantee",
                "required",
            ),
        ];
        for (requested, name, message) in cases {
            let err = check(&requested).unwrap_err();
            assert_eq!(err.field, format!("{BASE}.{name}"), "{err}");
            assert!(err.message.contains(message), "{err}");
        }
    }

    #[test]
    fn object_lock_needs_mode_and_date_together() {
        let date = json!("2099-01-01T12:30:00.250+02:00");
        let options = check(&RequestedOptions {
            object_lock_legal_hold_status: Some("ON"),
            object_lock_mode: Some("GOVERNANCE"),
            object_lock_retain_until_date: Some(&date),
            ..none()
        })
        .unwrap();
        assert_eq!(
            options.object_lock,
            ObjectLock {
                legal_hold: Some("ON".into()),
                mode: Some("GOVERNANCE".into()),
                retain_until: Some("2099-01-01T10:30:00.25Z".into()),
            }
        );
        let epoch = json!(4_070_908_800u64);
        let options = check(&RequestedOptions {
            object_lock_mode: Some("COMPLIANCE"),
            object_lock_retain_until_date: Some(&epoch),
            ..none()
        })
        .unwrap();
        assert_eq!(
            options.object_lock.retain_until.as_deref(),
            Some("2099-01-01T00:00:00Z")
        );
        let bad = json!("next year");
        let cases = [
            (
                RequestedOptions {
                    object_lock_mode: Some("GOVERNANCE"),
                    ..none()
                },
                "ObjectLockRetainUntilDate",
                "required with ObjectLockMode",
            ),
            (
                RequestedOptions {
                    object_lock_retain_until_date: Some(&date),
                    ..none()
                },
                "ObjectLockMode",
                "required with ObjectLockRetainUntilDate",
            ),
            (
                RequestedOptions {
                    object_lock_mode: Some("STRICT"),
                    object_lock_retain_until_date: Some(&date),
                    ..none()
                },
                "ObjectLockMode",
                "COMPLIANCE or GOVERNANCE",
            ),
            (
                RequestedOptions {
                    object_lock_mode: Some("GOVERNANCE"),
                    object_lock_retain_until_date: Some(&bad),
                    ..none()
                },
                "ObjectLockRetainUntilDate",
                "not an ISO 8601 time",
            ),
            (
                RequestedOptions {
                    object_lock_legal_hold_status: Some("on"),
                    ..none()
                },
                "ObjectLockLegalHoldStatus",
                "ON or OFF",
            ),
        ];
        for (requested, name, message) in cases {
            let err = check(&requested).unwrap_err();
            assert_eq!(err.field, format!("{BASE}.{name}"), "{err}");
            assert!(err.message.contains(message), "{err}");
        }
    }

    #[test]
    fn redirect_locations_are_paths_or_urls() {
        for location in ["/other/key", "https://example.com/x"] {
            let options = check(&RequestedOptions {
                redirect_location: Some(location),
                ..none()
            })
            .unwrap();
            assert_eq!(options.redirect_location.as_deref(), Some(location));
        }
        let err = check(&RequestedOptions {
            redirect_location: Some("example.com"),
            ..none()
        })
        .unwrap_err();
        assert_eq!(err.field, format!("{BASE}.RedirectLocation"));
    }

    #[test]
    fn conditions_are_whole_seconds_and_hold_as_s3_says() {
        let since = json!("2026-03-01T00:00:00.900Z");
        let until = json!(1_772_409_600); // 2026-03-02T00:00:00Z
        let options = check(&RequestedOptions {
            modified_since_constraint: Some(&since),
            un_modified_since_constraint: Some(&until),
            requester_pays: Some(true),
            ..none()
        })
        .unwrap();
        assert_eq!(options.modified_since, Some(1_772_323_200));
        assert_eq!(options.unmodified_since, Some(1_772_409_600));
        assert!(options.requester_pays);
        // Modified after the first and not after the second: copied.
        assert!(options.source_conditions_hold(1_772_323_201, false));
        assert!(options.source_conditions_hold(1_772_409_600, false));
        // Not modified since (same second), or modified too late: 412.
        assert!(!options.source_conditions_hold(1_772_323_200, false));
        assert!(!options.source_conditions_hold(1_772_409_601, false));
        // An ETag that matches overrides if-unmodified-since, as in S3; not if-modified-since.
        assert!(options.source_conditions_hold(1_772_409_601, true));
        assert!(!options.source_conditions_hold(1_772_323_200, true));
        assert!(CopyOptions::default().source_conditions_hold(0, false));
        let bad = json!(true);
        let err = check(&RequestedOptions {
            un_modified_since_constraint: Some(&bad),
            ..none()
        })
        .unwrap_err();
        assert_eq!(err.field, format!("{BASE}.UnModifiedSinceConstraint"));
    }

    #[test]
    fn options_stored_before_they_existed_read_as_default() {
        assert_eq!(
            serde_json::from_str::<CopyOptions>("{}").unwrap(),
            CopyOptions::default()
        );
    }
}
