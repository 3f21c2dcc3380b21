//! The S3 Control `CreateJob` request, as `aws s3control create-job --cli-input-json` takes it,
//! and its validation into the [`JobSpec`] the engine runs.
//!
//! Unknown fields are refused (a typo must not be silently dropped), and so are real S3 fields
//! that batchops cannot honour yet, each with the JSON path of the field in the message.

use crate::arn::{bucket_from_arn, object_from_arn};
pub use crate::copy_options::{CopyOptions, S3Grant};
use crate::manifest::{ManifestField, ManifestFields};
use crate::operation as op;
pub use crate::operation::OperationSpec;
use crate::plan::{parse_time, GeneratorFilter, Pinning};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const CSV_MANIFEST_FORMAT: &str = "S3BatchOperations_CSV_20180820";
pub const INVENTORY_MANIFEST_FORMAT: &str = "S3InventoryReport_CSV_20161130";
pub const REPORT_FORMAT: &str = "Report_CSV_20180820";
/// The format of a ManifestGenerator's output (an S3 Inventory-style report).
pub const GENERATED_MANIFEST_FORMAT: &str = "S3InventoryReport_CSV_20211130";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateJobRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default)]
    pub confirmation_required: bool,
    pub operation: Operation,
    pub report: Report,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub priority: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_generator: Option<ManifestGenerator>,
    /// batchops extensions (snapshot pinning); absent from plain S3 documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batchops: Option<BatchopsOptions>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct BatchopsOptions {
    /// Pin every task to the version ID and ETag current when the job is planned.
    #[serde(default)]
    pub pin_versions: bool,
    /// Per key, act on the newest version not later than this RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    /// Generated manifests: list every version (ListObjectVersions), not only current ones.
    #[serde(default)]
    pub all_versions: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ManifestGenerator {
    #[serde(
        default,
        rename = "S3JobManifestGenerator",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_job_manifest_generator: Option<S3JobManifestGenerator>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct S3JobManifestGenerator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_bucket_owner: Option<String>,
    pub source_bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_output_location: Option<ManifestOutputLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<JobManifestGeneratorFilter>,
    #[serde(default)]
    pub enable_manifest_output: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ManifestOutputLocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_manifest_bucket_owner: Option<String>,
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_encryption: Option<Value>,
    pub manifest_format: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct JobManifestGeneratorFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_for_replication: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_replication_statuses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name_constraint: Option<KeyNameConstraint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_size_greater_than_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_size_less_than_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_any_storage_class: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KeyNameConstraint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_any_prefix: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_any_suffix: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_any_substring: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// One field per operation S3 knows (and `Batchops` for batchops' own); exactly one must be set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Operation {
    #[serde(
        default,
        rename = "S3PutObjectCopy",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_put_object_copy: Option<PutObjectCopy>,
    #[serde(
        default,
        rename = "LambdaInvoke",
        skip_serializing_if = "Option::is_none"
    )]
    pub lambda_invoke: Option<crate::invoke::LambdaInvokeOperation>,
    #[serde(
        default,
        rename = "S3PutObjectAcl",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_put_object_acl: Option<op::PutObjectAcl>,
    #[serde(
        default,
        rename = "S3PutObjectTagging",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_put_object_tagging: Option<op::PutObjectTagging>,
    #[serde(
        default,
        rename = "S3DeleteObjectTagging",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_delete_object_tagging: Option<op::DeleteObjectTagging>,
    #[serde(
        default,
        rename = "S3InitiateRestoreObject",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_initiate_restore_object: Option<op::InitiateRestoreObject>,
    #[serde(
        default,
        rename = "S3PutObjectLegalHold",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_put_object_legal_hold: Option<op::PutObjectLegalHold>,
    #[serde(
        default,
        rename = "S3PutObjectRetention",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_put_object_retention: Option<op::PutObjectRetention>,
    /// Refused (see `operation::refusal`): kept as given, only to name it.
    #[serde(
        default,
        rename = "S3ReplicateObject",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_replicate_object: Option<Value>,
    #[serde(
        default,
        rename = "S3ComputeObjectChecksum",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_compute_object_checksum: Option<op::ComputeObjectChecksum>,
    /// Refused (see `operation::refusal`): kept as given, only to name it.
    #[serde(
        default,
        rename = "S3UpdateObjectEncryption",
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_update_object_encryption: Option<Value>,
    /// batchops extensions (`{"Delete": {...}}`); absent from plain S3 documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batchops: Option<op::BatchopsOperation>,
}

/// The operations batchops runs, by their names in `Operation`.
const SUPPORTED_OPERATIONS: [&str; 10] = [
    "S3PutObjectCopy",
    "LambdaInvoke",
    "S3PutObjectTagging",
    "S3DeleteObjectTagging",
    "S3PutObjectAcl",
    "S3InitiateRestoreObject",
    "S3PutObjectLegalHold",
    "S3PutObjectRetention",
    "S3ComputeObjectChecksum",
    "Batchops.Delete",
];

impl Operation {
    /// The names of the operation fields set, in the order S3 Control lists them.
    pub fn named(&self) -> Vec<&'static str> {
        [
            ("S3PutObjectCopy", self.s3_put_object_copy.is_some()),
            ("LambdaInvoke", self.lambda_invoke.is_some()),
            ("S3PutObjectAcl", self.s3_put_object_acl.is_some()),
            ("S3PutObjectTagging", self.s3_put_object_tagging.is_some()),
            (
                "S3DeleteObjectTagging",
                self.s3_delete_object_tagging.is_some(),
            ),
            (
                "S3InitiateRestoreObject",
                self.s3_initiate_restore_object.is_some(),
            ),
            (
                "S3PutObjectLegalHold",
                self.s3_put_object_legal_hold.is_some(),
            ),
            (
                "S3PutObjectRetention",
                self.s3_put_object_retention.is_some(),
            ),
            ("S3ReplicateObject", self.s3_replicate_object.is_some()),
            (
                "S3ComputeObjectChecksum",
                self.s3_compute_object_checksum.is_some(),
            ),
            (
                "S3UpdateObjectEncryption",
                self.s3_update_object_encryption.is_some(),
            ),
            ("Batchops", self.batchops.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PutObjectCopy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_key_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_directive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_object_metadata: Option<NewObjectMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_object_tagging: Option<Vec<Tag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canned_access_control_list: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_control_grants: Option<Vec<S3Grant>>,
    /// An ISO 8601 time or seconds since the epoch, as the AWS CLI takes timestamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_since_constraint: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub un_modified_since_constraint: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_pays: Option<bool>,
    #[serde(
        default,
        rename = "SSEAwsKmsKeyId",
        skip_serializing_if = "Option::is_none"
    )]
    pub sse_aws_kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock_legal_hold_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock_retain_until_date: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_key_enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NewObjectMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<i64>,
    #[serde(
        default,
        rename = "ContentMD5",
        skip_serializing_if = "Option::is_none"
    )]
    pub content_md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_expires_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_charged: Option<bool>,
    #[serde(
        default,
        rename = "SSEAlgorithm",
        skip_serializing_if = "Option::is_none"
    )]
    pub sse_algorithm: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Manifest {
    pub spec: ManifestSpec,
    pub location: ManifestLocation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ManifestSpec {
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ManifestLocation {
    pub object_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_version_id: Option<String>,
    #[serde(default, rename = "ETag", skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Report {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_bucket_owner: Option<String>,
}

/// A refused request: which field, and why.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid CreateJob request: {field}: {message}")]
pub struct RequestError {
    pub field: String,
    pub message: String,
}

impl RequestError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        RequestError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportScope {
    AllTasks,
    FailedTasksOnly,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportTarget {
    pub bucket: String,
    /// Prefix without a trailing slash; empty for the bucket root.
    pub prefix: String,
    pub scope: ReportScope,
}

/// An object holding a manifest (a CSV file, or an inventory's manifest.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    /// ETag the manifest had when the job was created; checked again when it is read.
    pub etag: Option<String>,
}

/// Where a generated manifest is written for inspection and reuse (an S3 Inventory-style
/// `manifest.json` with gzip CSV data files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestOutput {
    pub bucket: String,
    /// Without a trailing slash; empty for the bucket root.
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedManifest {
    pub source_bucket: String,
    pub filter: GeneratorFilter,
    pub all_versions: bool,
    pub output: Option<ManifestOutput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManifestSource {
    /// `S3BatchOperations_CSV_20180820`.
    Csv {
        object: ManifestObject,
        fields: ManifestFields,
    },
    /// `S3InventoryReport_CSV_20161130`: the object is the report's manifest.json.
    Inventory { object: ManifestObject },
    /// `ManifestGenerator`: a listing of the source bucket.
    Generated(GeneratedManifest),
    /// A backup run: the source listing diffed against the previous snapshot's catalog.
    Backup(Box<BackupRun>),
    /// A restore: a snapshot's catalog, filtered.
    Restore(RestoreSource),
    /// An import: a listing of another object store's location.
    Store(StoreListing),
}

/// A listing of every object under a location of another store (an import's source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreListing {
    pub from: crate::export::StoreLocation,
}

/// A snapshot catalog object. camelCase like all backup output; the snake_case names it was
/// stored under before are still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogRef {
    #[serde(alias = "snapshot_id")]
    pub snapshot_id: String,
    pub bucket: String,
    pub key: String,
    /// The version and ETag the catalog was written with: it is read back pinned to them, so a
    /// later write to its key (a source object of that name, a forgery) is never read instead.
    #[serde(default, alias = "version_id", skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// Tokens of the jobs batchops creates itself (backup runs, restores) start with this, which
/// a CreateJob's ClientRequestToken may not: no request can take a scheduled run's slot.
pub const INTERNAL_TOKEN_PREFIX: char = '#';

/// `token` in the namespace of the jobs batchops creates itself.
pub fn internal_token(token: &str) -> String {
    format!("{INTERNAL_TOKEN_PREFIX}{token}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRun {
    /// The policy as it was when the run started.
    pub policy: crate::backup::BackupPolicy,
    pub snapshot_id: String,
    pub previous: Option<CatalogRef>,
    /// Objects in the previous snapshot: the default deletion guard is 10% of them.
    #[serde(default)]
    pub previous_objects: u64,
    /// Read this S3 Inventory report (its manifest.json) instead of listing the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<ManifestObject>,
    /// Continuous-mode journal parts named (stamped) before this are settled by this run and
    /// deleted when it completes; later ones are read again by the next run. None: none are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_cutoff: Option<String>,
    /// The bucket holding the journal (the control bucket). None: runs read no journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_bucket: Option<String>,
}

impl BackupRun {
    /// Whether this run settles a continuous-mode journal part (by its key): what it does not
    /// take from it is superseded, and the part is deleted when the run completes.
    pub fn settles_journal_part(&self, key: &str) -> bool {
        let prefix = self.policy.journal_prefix();
        let name = key.strip_prefix(prefix.as_str()).unwrap_or(key);
        self.journal_cutoff
            .as_deref()
            .is_some_and(|cutoff| name < cutoff)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSource {
    pub catalog: CatalogRef,
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Only these keys: a newline-separated list in the control bucket.
    pub keys_object: Option<String>,
}

impl ManifestSource {
    /// The manifest object, for sources read from one.
    pub fn object(&self) -> Option<&ManifestObject> {
        match self {
            ManifestSource::Csv { object, .. } | ManifestSource::Inventory { object } => {
                Some(object)
            }
            _ => None,
        }
    }

    pub fn object_mut(&mut self) -> Option<&mut ManifestObject> {
        match self {
            ManifestSource::Csv { object, .. } | ManifestSource::Inventory { object } => {
                Some(object)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataDirective {
    Copy,
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReplacementMetadata {
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub content_type: Option<String>,
    pub expires: Option<String>,
    pub user_metadata: Vec<(String, String)>,
    pub sse_algorithm: Option<String>,
}

/// What a copy task does, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySpec {
    pub target_bucket: String,
    /// Joined in front of every key; ends with `/` when not empty.
    pub target_key_prefix: String,
    pub storage_class: Option<String>,
    pub metadata_directive: MetadataDirective,
    pub new_metadata: ReplacementMetadata,
    /// `Some` replaces the tags (possibly with none); `None` copies the source's tags.
    pub new_tagging: Option<Vec<(String, String)>>,
    pub checksum_algorithm: Option<String>,
    /// Encryption key, ACL, Object Lock, redirect, requester pays and copy-source conditions.
    #[serde(default)]
    pub options: CopyOptions,
}

impl CopySpec {
    pub fn target_key(&self, source_key: &str) -> String {
        format!("{}{}", self.target_key_prefix, source_key)
    }
}

/// A validated job: everything the planner, workers and finalizer need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    #[serde(
        alias = "copy",
        deserialize_with = "crate::operation::operation_or_stored_copy"
    )]
    pub operation: OperationSpec,
    pub manifest: ManifestSource,
    pub report: Option<ReportTarget>,
    pub priority: i64,
    pub confirmation_required: bool,
    #[serde(default)]
    pub pinning: Pinning,
    /// The `ExpectedBucketOwner` fields: sent with every S3 request on their bucket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_owners: Vec<ExpectedOwner>,
}

/// A bucket's expected owner (an `ExpectedBucketOwner` field of the request): S3 refuses any
/// request that carries it with AccessDenied when the bucket belongs to another account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedOwner {
    /// The request field that named it (`Report.ExpectedBucketOwner`, ...).
    pub field: String,
    pub bucket: String,
    /// The 12-digit account ID.
    pub owner: String,
}

/// A tag's key is 1 to 128 characters and its value at most 256, both of letters, digits,
/// spaces and `_ . : / = + - @` (object and job tags alike, as S3 Control's S3Tag takes them).
fn check_tag(tag: &Tag, field: &str) -> Result<(), RequestError> {
    if tag.key.is_empty() || tag.key.chars().count() > 128 {
        return Err(RequestError::new(
            format!("{field}.Key"),
            "must be 1 to 128 characters",
        ));
    }
    if tag.value.chars().count() > 256 {
        return Err(RequestError::new(
            format!("{field}.Value"),
            "must be at most 256 characters",
        ));
    }
    for (name, text) in [("Key", &tag.key), ("Value", &tag.value)] {
        let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
        if let Some(c) = text.chars().find(|c| !allowed(*c)) {
            return Err(RequestError::new(
                format!("{field}.{name}"),
                format!(
                    "`{c}` is not allowed in tags; use letters, digits, spaces and _ . : / = + - @"
                ),
            ));
        }
    }
    Ok(())
}

/// At most this many tags on a job (S3 Control's limit for CreateJob and PutJobTagging).
pub const MAX_JOB_TAGS: usize = 50;

/// A job's tag set as S3 Control checks it: at most 50 tags (see [`validate_tags`]). `field`
/// names the list (`Tags`).
pub fn validate_job_tags(tags: &[Tag], field: &str) -> Result<(), RequestError> {
    validate_tags(tags, field, MAX_JOB_TAGS, "job")
}

/// A tag set as S3 Control checks it, for a job's tags and an object's alike: at most `max`
/// tags (per `of`), unique keys, each tag as [`check_tag`] takes it.
pub fn validate_tags(tags: &[Tag], field: &str, max: usize, of: &str) -> Result<(), RequestError> {
    if tags.len() > max {
        return Err(RequestError::new(
            field,
            format!("at most {max} tags per {of}, got {}", tags.len()),
        ));
    }
    for (i, tag) in tags.iter().enumerate() {
        check_tag(tag, &format!("{field}[{i}]"))?;
        if tags[..i].iter().any(|earlier| earlier.key == tag.key) {
            return Err(RequestError::new(
                format!("{field}[{i}].Key"),
                format!("`{}` is given twice; tag keys must be unique", tag.key),
            ));
        }
    }
    Ok(())
}

const STORAGE_CLASSES: [&str; 8] = [
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "GLACIER",
    "INTELLIGENT_TIERING",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "REDUCED_REDUNDANCY",
];
/// A storage class S3 still lists (and generator filters match) but refuses for a copy: S3
/// Control's copy StorageClass does not take it.
const NOT_FOR_COPIES: &str = "REDUCED_REDUNDANCY";
/// S3 Control's `S3ChecksumAlgorithm` values, all of which CopyObject and CreateMultipartUpload
/// take.
const CHECKSUM_ALGORITHMS: [&str; 5] = ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"];

impl CreateJobRequest {
    /// Parses the JSON document, naming the path of the first offending field.
    pub fn from_json(document: &str) -> Result<Self, RequestError> {
        let deserializer = &mut serde_json::Deserializer::from_str(document);
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let path = err.path().to_string();
            let field = if path == "." {
                "request".to_string()
            } else {
                path
            };
            RequestError::new(field, err.into_inner().to_string())
        })
    }

    /// Validates every field and returns what the engine runs.
    pub fn validate(&self) -> Result<JobSpec, RequestError> {
        if self.priority < 0 || self.priority > i32::MAX as i64 {
            return Err(RequestError::new(
                "Priority",
                format!("must be between 0 and {}, got {}", i32::MAX, self.priority),
            ));
        }
        // S3 Control requires both: the token is what makes CreateJob idempotent, and a
        // document that runs here must also run with `aws s3control create-job`.
        let token = self.client_request_token.as_deref().ok_or_else(|| {
            RequestError::new(
                "ClientRequestToken",
                "required: a unique token (1 to 64 characters, e.g. a UUID) that makes retries of this request create one job",
            )
        })?;
        if token.is_empty() || token.len() > 64 {
            return Err(RequestError::new(
                "ClientRequestToken",
                "must be 1 to 64 characters long",
            ));
        }
        if token.starts_with(INTERNAL_TOKEN_PREFIX) {
            return Err(RequestError::new(
                "ClientRequestToken",
                format!("must not start with `{INTERNAL_TOKEN_PREFIX}`: batchops keeps those tokens for the backup runs and restores it starts itself; choose another token"),
            ));
        }
        let role = self.role_arn.as_deref().ok_or_else(|| {
            RequestError::new(
                "RoleArn",
                "required: the ARN of the IAM role the job runs as (arn:aws:iam::<account>:role/<name>)",
            )
        })?;
        crate::arn::check_role_arn(role)
            .map_err(|message| RequestError::new("RoleArn", message))?;
        if let Some(description) = &self.description {
            if description.chars().count() > 256 {
                return Err(RequestError::new(
                    "Description",
                    "must be at most 256 characters",
                ));
            }
        }
        validate_job_tags(&self.tags, "Tags")?;
        let operation = self.validate_operation()?;
        let manifest = match (&self.manifest, &self.manifest_generator) {
            (Some(_), Some(_)) => {
                return Err(RequestError::new(
                    "ManifestGenerator",
                    "give either Manifest or ManifestGenerator, not both",
                ))
            }
            (None, Some(generator)) => self.validate_generator(generator)?,
            _ => self.validate_manifest()?,
        };
        let report = self.validate_report()?;
        let pinning = self.validate_pinning(&manifest)?;
        let expected_owners = self.validate_expected_owners(&manifest, report.as_ref())?;
        Ok(JobSpec {
            manifest,
            report,
            expected_owners,
            priority: self.priority,
            // A job that destroys data waits for a confirmation whatever the request says.
            confirmation_required: self.confirmation_required
                || operation.needs_counted_confirmation(),
            operation,
            pinning,
        })
    }

    fn validate_operation(&self) -> Result<OperationSpec, RequestError> {
        match self.operation.named().as_slice() {
            [] => Err(RequestError::new(
                "Operation",
                format!(
                    "no operation given; expected one of {}",
                    SUPPORTED_OPERATIONS.join(", ")
                ),
            )),
            [_, second, ..] => Err(RequestError::new(
                format!("Operation.{second}"),
                "an operation must name exactly one action",
            )),
            [name] => {
                let operation = &self.operation;
                let spec = match *name {
                    "S3PutObjectCopy" => Some(self.validate_copy().map(OperationSpec::Copy)),
                    "LambdaInvoke" => operation.lambda_invoke.as_ref().map(|invoke| {
                        invoke
                            .validate("Operation.LambdaInvoke")
                            .map(OperationSpec::LambdaInvoke)
                    }),
                    "S3PutObjectTagging" => operation
                        .s3_put_object_tagging
                        .as_ref()
                        .map(op::validate_put_tagging),
                    "S3DeleteObjectTagging" => Some(Ok(OperationSpec::DeleteTagging)),
                    "S3PutObjectAcl" => operation
                        .s3_put_object_acl
                        .as_ref()
                        .map(op::validate_put_acl),
                    "S3InitiateRestoreObject" => operation
                        .s3_initiate_restore_object
                        .as_ref()
                        .map(op::validate_restore),
                    "S3PutObjectLegalHold" => operation
                        .s3_put_object_legal_hold
                        .as_ref()
                        .map(op::validate_legal_hold),
                    "S3PutObjectRetention" => operation
                        .s3_put_object_retention
                        .as_ref()
                        .map(|r| op::validate_retention(r, time::OffsetDateTime::now_utc())),
                    "S3ComputeObjectChecksum" => operation
                        .s3_compute_object_checksum
                        .as_ref()
                        .map(op::validate_checksum),
                    "Batchops" => operation.batchops.as_ref().map(op::validate_batchops),
                    other => {
                        let why = op::refusal(other).map(str::to_string).unwrap_or_else(|| {
                            format!(
                                "this operation is not supported by batchops yet; supported: {}",
                                SUPPORTED_OPERATIONS.join(", ")
                            )
                        });
                        return Err(RequestError::new(format!("Operation.{other}"), why));
                    }
                };
                spec.unwrap_or_else(|| {
                    Err(RequestError::new(format!("Operation.{name}"), "required"))
                })
            }
        }
    }

    fn validate_copy(&self) -> Result<CopySpec, RequestError> {
        let Some(copy) = &self.operation.s3_put_object_copy else {
            return Err(RequestError::new("Operation.S3PutObjectCopy", "required"));
        };
        let base = "Operation.S3PutObjectCopy";
        let target = copy.target_resource.as_deref().ok_or_else(|| {
            RequestError::new(
                format!("{base}.TargetResource"),
                "required: the destination bucket ARN",
            )
        })?;
        let target_bucket = bucket_from_arn(target)
            .map_err(|e| RequestError::new(format!("{base}.TargetResource"), e.to_string()))?;
        let target_key_prefix = match copy.target_key_prefix.as_deref() {
            None | Some("") => String::new(),
            Some(prefix) if prefix.ends_with('/') => prefix.to_string(),
            Some(prefix) => format!("{prefix}/"),
        };
        if let Some(class) = &copy.storage_class {
            if class == NOT_FOR_COPIES || !STORAGE_CLASSES.contains(&class.as_str()) {
                let expected: Vec<&str> = STORAGE_CLASSES
                    .into_iter()
                    .filter(|c| *c != NOT_FOR_COPIES)
                    .collect();
                return Err(RequestError::new(
                    format!("{base}.StorageClass"),
                    format!(
                        "storage class `{class}` is not one S3 copies into; expected one of {}",
                        expected.join(", ")
                    ),
                ));
            }
        }
        let metadata_directive = match copy.metadata_directive.as_deref() {
            None | Some("COPY") => MetadataDirective::Copy,
            Some("REPLACE") => MetadataDirective::Replace,
            Some(other) => {
                return Err(RequestError::new(
                    format!("{base}.MetadataDirective"),
                    format!("expected COPY or REPLACE, got `{other}`"),
                ))
            }
        };
        let new_metadata = match &copy.new_object_metadata {
            None => ReplacementMetadata::default(),
            Some(meta) => {
                let field = |name: &str| format!("{base}.NewObjectMetadata.{name}");
                if meta.content_length.is_some() {
                    return Err(RequestError::new(
                        field("ContentLength"),
                        "cannot be set on a copy",
                    ));
                }
                if meta.content_md5.is_some() {
                    return Err(RequestError::new(
                        field("ContentMD5"),
                        "cannot be set on a copy",
                    ));
                }
                if meta.requester_charged.is_some() {
                    return Err(RequestError::new(
                        field("RequesterCharged"),
                        "CopyObject cannot carry it: x-amz-request-charged is S3's answer, not a request header; to copy from or to a Requester Pays bucket set RequesterPays",
                    ));
                }
                if let Some(sse) = &meta.sse_algorithm {
                    if sse != "AES256" && sse != "KMS" {
                        return Err(RequestError::new(
                            field("SSEAlgorithm"),
                            format!("expected AES256 or KMS, got `{sse}`"),
                        ));
                    }
                }
                if let Some(expires) = &meta.http_expires_date {
                    time::OffsetDateTime::parse(
                        expires,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map_err(|e| {
                        RequestError::new(
                            field("HttpExpiresDate"),
                            format!("not an ISO 8601 time: {e}"),
                        )
                    })?;
                }
                // Encryption is not metadata: S3 encrypts a copy as asked under either directive.
                let sets_metadata = meta.cache_control.is_some()
                    || meta.content_disposition.is_some()
                    || meta.content_encoding.is_some()
                    || meta.content_language.is_some()
                    || meta.content_type.is_some()
                    || meta.http_expires_date.is_some()
                    || meta.user_metadata.is_some();
                if sets_metadata && metadata_directive != MetadataDirective::Replace {
                    return Err(RequestError::new(
                        format!("{base}.NewObjectMetadata"),
                        "new metadata is only applied with MetadataDirective REPLACE",
                    ));
                }
                ReplacementMetadata {
                    cache_control: meta.cache_control.clone(),
                    content_disposition: meta.content_disposition.clone(),
                    content_encoding: meta.content_encoding.clone(),
                    content_language: meta.content_language.clone(),
                    content_type: meta.content_type.clone(),
                    expires: meta.http_expires_date.clone(),
                    user_metadata: meta
                        .user_metadata
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                    sse_algorithm: meta.sse_algorithm.clone(),
                }
            }
        };
        let new_tagging = copy
            .new_object_tagging
            .as_deref()
            .map(|tags| op::validate_tag_set(tags, &format!("{base}.NewObjectTagging")))
            .transpose()?;
        if let Some(algorithm) = &copy.checksum_algorithm {
            if !CHECKSUM_ALGORITHMS.contains(&algorithm.as_str()) {
                return Err(RequestError::new(
                    format!("{base}.ChecksumAlgorithm"),
                    format!(
                        "expected one of {}, got `{algorithm}`",
                        CHECKSUM_ALGORITHMS.join(", ")
                    ),
                ));
            }
        }
        let options = crate::copy_options::validate(
            base,
            &format!("{base}.NewObjectMetadata.SSEAlgorithm"),
            &crate::copy_options::RequestedOptions {
                sse_algorithm: new_metadata.sse_algorithm.as_deref(),
                sse_aws_kms_key_id: copy.sse_aws_kms_key_id.as_deref(),
                bucket_key_enabled: copy.bucket_key_enabled,
                canned_access_control_list: copy.canned_access_control_list.as_deref(),
                access_control_grants: copy.access_control_grants.as_deref(),
                object_lock_legal_hold_status: copy.object_lock_legal_hold_status.as_deref(),
                object_lock_mode: copy.object_lock_mode.as_deref(),
                object_lock_retain_until_date: copy.object_lock_retain_until_date.as_ref(),
                redirect_location: copy.redirect_location.as_deref(),
                requester_pays: copy.requester_pays,
                modified_since_constraint: copy.modified_since_constraint.as_ref(),
                un_modified_since_constraint: copy.un_modified_since_constraint.as_ref(),
            },
        )?;
        Ok(CopySpec {
            target_bucket,
            target_key_prefix,
            storage_class: copy.storage_class.clone(),
            metadata_directive,
            new_metadata,
            new_tagging,
            checksum_algorithm: copy.checksum_algorithm.clone(),
            options,
        })
    }

    fn manifest_object(manifest: &Manifest) -> Result<ManifestObject, RequestError> {
        let (bucket, key) = object_from_arn(&manifest.location.object_arn)
            .map_err(|e| RequestError::new("Manifest.Location.ObjectArn", e.to_string()))?;
        if let Some(etag) = &manifest.location.etag {
            if etag.trim_matches('"').is_empty() {
                return Err(RequestError::new(
                    "Manifest.Location.ETag",
                    "must not be empty",
                ));
            }
        }
        Ok(ManifestObject {
            bucket,
            key,
            version_id: manifest
                .location
                .object_version_id
                .clone()
                .filter(|v| !v.is_empty()),
            etag: manifest.location.etag.clone(),
        })
    }

    /// The request's `Manifest`, validated (exports take any CreateJob-style manifest).
    pub fn validate_manifest(&self) -> Result<ManifestSource, RequestError> {
        let manifest = self
            .manifest
            .as_ref()
            .ok_or_else(|| RequestError::new("Manifest", "required (or ManifestGenerator)"))?;
        match manifest.spec.format.as_str() {
            CSV_MANIFEST_FORMAT => {}
            INVENTORY_MANIFEST_FORMAT => {
                if manifest.spec.fields.is_some() {
                    return Err(RequestError::new(
                        "Manifest.Spec.Fields",
                        "not used with S3 Inventory manifests: their manifest.json names the columns",
                    ));
                }
                if !manifest.location.object_arn.ends_with("manifest.json") {
                    return Err(RequestError::new(
                        "Manifest.Location.ObjectArn",
                        "an S3 Inventory manifest is the report's manifest.json",
                    ));
                }
                return Ok(ManifestSource::Inventory { object: Self::manifest_object(manifest)? });
            }
            other => {
                return Err(RequestError::new(
                    "Manifest.Spec.Format",
                    format!("unknown format `{other}`; expected {CSV_MANIFEST_FORMAT} or {INVENTORY_MANIFEST_FORMAT}"),
                ))
            }
        }
        let names = manifest.spec.fields.as_ref().ok_or_else(|| {
            RequestError::new(
                "Manifest.Spec.Fields",
                "required for CSV manifests, e.g. [\"Bucket\", \"Key\"] or [\"Bucket\", \"Key\", \"VersionId\"]",
            )
        })?;
        let mut fields = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let field = match name.as_str() {
                "Bucket" => ManifestField::Bucket,
                "Key" => ManifestField::Key,
                "VersionId" => ManifestField::VersionId,
                "Ignore" => ManifestField::Ignore,
                other => {
                    return Err(RequestError::new(
                        format!("Manifest.Spec.Fields[{i}]"),
                        format!(
                            "unknown field `{other}`; expected Bucket, Key, VersionId or Ignore"
                        ),
                    ))
                }
            };
            fields.push(field);
        }
        let fields = ManifestFields::new(fields)
            .map_err(|message| RequestError::new("Manifest.Spec.Fields", message))?;
        Ok(ManifestSource::Csv {
            object: Self::manifest_object(manifest)?,
            fields,
        })
    }

    fn validate_generator(
        &self,
        generator: &ManifestGenerator,
    ) -> Result<ManifestSource, RequestError> {
        let base = "ManifestGenerator.S3JobManifestGenerator";
        let g = generator
            .s3_job_manifest_generator
            .as_ref()
            .ok_or_else(|| RequestError::new(base, "required"))?;
        let source_bucket = bucket_from_arn(&g.source_bucket)
            .map_err(|e| RequestError::new(format!("{base}.SourceBucket"), e.to_string()))?;
        let output = match (&g.manifest_output_location, g.enable_manifest_output) {
            (None, true) => {
                return Err(RequestError::new(
                    format!("{base}.ManifestOutputLocation"),
                    "required when EnableManifestOutput is true",
                ))
            }
            (Some(location), true) => {
                let field = |name: &str| format!("{base}.ManifestOutputLocation.{name}");
                if location.manifest_format != GENERATED_MANIFEST_FORMAT {
                    return Err(RequestError::new(
                        field("ManifestFormat"),
                        format!(
                            "expected {GENERATED_MANIFEST_FORMAT}, got `{}`",
                            location.manifest_format
                        ),
                    ));
                }
                if let Some(encryption) = &location.manifest_encryption {
                    if encryption.get("SSES3").is_none() || encryption.get("SSEKMS").is_some() {
                        return Err(RequestError::new(
                            field("ManifestEncryption"),
                            "only SSES3 is supported by batchops",
                        ));
                    }
                }
                let bucket = bucket_from_arn(&location.bucket)
                    .map_err(|e| RequestError::new(field("Bucket"), e.to_string()))?;
                let prefix = location
                    .manifest_prefix
                    .clone()
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_string();
                Some(ManifestOutput { bucket, prefix })
            }
            (_, false) => None,
        };
        let mut filter = GeneratorFilter::default();
        if let Some(f) = &g.filter {
            let field = |name: &str| format!("{base}.Filter.{name}");
            if f.eligible_for_replication.is_some() {
                return Err(RequestError::new(
                    field("EligibleForReplication"),
                    "batchops cannot honour this filter yet",
                ));
            }
            if f.object_replication_statuses.is_some() {
                return Err(RequestError::new(
                    field("ObjectReplicationStatuses"),
                    "batchops cannot honour this filter yet",
                ));
            }
            for (name, value) in [
                ("CreatedAfter", &f.created_after),
                ("CreatedBefore", &f.created_before),
            ] {
                if let Some(v) = value {
                    parse_time(v).map_err(|e| RequestError::new(field(name), e))?;
                }
            }
            let size = |name: &str, v: Option<i64>| -> Result<Option<u64>, RequestError> {
                match v {
                    Some(n) if n < 0 => Err(RequestError::new(field(name), "must not be negative")),
                    other => Ok(other.map(|n| n as u64)),
                }
            };
            let constraint = f.key_name_constraint.clone().unwrap_or_default();
            filter = GeneratorFilter {
                prefixes: constraint.match_any_prefix.unwrap_or_default(),
                suffixes: constraint.match_any_suffix.unwrap_or_default(),
                substrings: constraint.match_any_substring.unwrap_or_default(),
                created_after: f.created_after.clone(),
                created_before: f.created_before.clone(),
                size_greater_than: size(
                    "ObjectSizeGreaterThanBytes",
                    f.object_size_greater_than_bytes,
                )?,
                size_less_than: size("ObjectSizeLessThanBytes", f.object_size_less_than_bytes)?,
                storage_classes: f.match_any_storage_class.clone().unwrap_or_default(),
            };
            for (i, class) in filter.storage_classes.iter().enumerate() {
                if !STORAGE_CLASSES.contains(&class.as_str()) {
                    return Err(RequestError::new(
                        field(&format!("MatchAnyStorageClass[{i}]")),
                        format!("unknown storage class `{class}`"),
                    ));
                }
            }
        }
        let all_versions = self.batchops.as_ref().is_some_and(|b| b.all_versions);
        Ok(ManifestSource::Generated(GeneratedManifest {
            source_bucket,
            filter,
            all_versions,
            output,
        }))
    }

    fn validate_pinning(&self, manifest: &ManifestSource) -> Result<Pinning, RequestError> {
        let Some(options) = &self.batchops else {
            return Ok(Pinning::default());
        };
        if let Some(as_of) = &options.as_of {
            parse_time(as_of).map_err(|e| RequestError::new("Batchops.AsOf", e))?;
            if options.pin_versions {
                return Err(RequestError::new(
                    "Batchops.AsOf",
                    "give AsOf or PinVersions, not both",
                ));
            }
        }
        if options.all_versions && !matches!(manifest, ManifestSource::Generated(_)) {
            return Err(RequestError::new(
                "Batchops.AllVersions",
                "only applies to ManifestGenerator jobs",
            ));
        }
        if options.all_versions && (options.pin_versions || options.as_of.is_some()) {
            return Err(RequestError::new(
                "Batchops.AllVersions",
                "every version is already pinned; drop PinVersions/AsOf",
            ));
        }
        Ok(Pinning {
            pin_versions: options.pin_versions,
            as_of: options.as_of.clone(),
        })
    }

    /// The `ExpectedBucketOwner` fields, each a 12-digit account ID, by the bucket it guards:
    /// the report bucket, the generator's source bucket and its manifest output bucket. One
    /// bucket named with two different owners is refused (one of them is wrong).
    fn validate_expected_owners(
        &self,
        manifest: &ManifestSource,
        report: Option<&ReportTarget>,
    ) -> Result<Vec<ExpectedOwner>, RequestError> {
        let generator = self
            .manifest_generator
            .as_ref()
            .and_then(|g| g.s3_job_manifest_generator.as_ref());
        let generated = match manifest {
            ManifestSource::Generated(g) => Some(g),
            _ => None,
        };
        let base = "ManifestGenerator.S3JobManifestGenerator";
        let named = [
            (
                "Report.ExpectedBucketOwner".to_string(),
                self.report.expected_bucket_owner.as_deref(),
                report.map(|r| r.bucket.as_str()),
            ),
            (
                format!("{base}.ExpectedBucketOwner"),
                generator.and_then(|g| g.expected_bucket_owner.as_deref()),
                generated.map(|g| g.source_bucket.as_str()),
            ),
            (
                format!("{base}.ManifestOutputLocation.ExpectedManifestBucketOwner"),
                generator
                    .and_then(|g| g.manifest_output_location.as_ref())
                    .and_then(|o| o.expected_manifest_bucket_owner.as_deref()),
                generated
                    .and_then(|g| g.output.as_ref())
                    .map(|o| o.bucket.as_str()),
            ),
        ];
        let mut owners: Vec<ExpectedOwner> = Vec::new();
        for (field, owner, bucket) in named {
            let Some(owner) = owner else { continue };
            if owner.len() != 12 || !owner.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RequestError::new(
                    field,
                    format!("`{owner}` is not an account ID (12 digits)"),
                ));
            }
            // The report of a disabled report, or an output that is not written: nothing to guard.
            let Some(bucket) = bucket else { continue };
            if let Some(other) = owners
                .iter()
                .find(|o| o.bucket == bucket && o.owner != owner)
            {
                return Err(RequestError::new(
                    field,
                    format!(
                        "bucket `{bucket}` is expected to be owned by {owner} here and by {} in {}",
                        other.owner, other.field
                    ),
                ));
            }
            owners.push(ExpectedOwner {
                field,
                bucket: bucket.to_string(),
                owner: owner.to_string(),
            });
        }
        Ok(owners)
    }

    fn validate_report(&self) -> Result<Option<ReportTarget>, RequestError> {
        let report = &self.report;
        if !report.enabled {
            return Ok(None);
        }
        let bucket_arn = report.bucket.as_deref().ok_or_else(|| {
            RequestError::new("Report.Bucket", "required when Report.Enabled is true")
        })?;
        let bucket = bucket_from_arn(bucket_arn)
            .map_err(|e| RequestError::new("Report.Bucket", e.to_string()))?;
        match report.format.as_deref() {
            Some(REPORT_FORMAT) => {}
            None => {
                return Err(RequestError::new(
                    "Report.Format",
                    format!("required when Report.Enabled is true; expected {REPORT_FORMAT}"),
                ))
            }
            Some(other) => {
                return Err(RequestError::new(
                    "Report.Format",
                    format!("unknown format `{other}`; expected {REPORT_FORMAT}"),
                ))
            }
        }
        let scope = match report.report_scope.as_deref() {
            None | Some("AllTasks") => ReportScope::AllTasks,
            Some("FailedTasksOnly") => ReportScope::FailedTasksOnly,
            Some(other) => {
                return Err(RequestError::new(
                    "Report.ReportScope",
                    format!("expected AllTasks or FailedTasksOnly, got `{other}`"),
                ))
            }
        };
        let prefix = report
            .prefix
            .clone()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        Ok(Some(ReportTarget {
            bucket,
            prefix,
            scope,
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> String {
        r#"{
          "AccountId": "123456789012",
          "ConfirmationRequired": false,
          "Operation": {"S3PutObjectCopy": {
              "TargetResource": "arn:aws:s3:::dest",
              "TargetKeyPrefix": "copies",
              "StorageClass": "STANDARD",
              "MetadataDirective": "COPY"}},
          "Report": {"Bucket": "arn:aws:s3:::reports", "Prefix": "batch/", "Format": "Report_CSV_20180820",
                     "Enabled": true, "ReportScope": "AllTasks"},
          "ClientRequestToken": "token-1",
          "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                       "Location": {"ObjectArn": "arn:aws:s3:::control/manifests/m.csv", "ETag": "\"abc\""}},
          "Description": "copy job",
          "Priority": 10,
          "RoleArn": "arn:aws:iam::123456789012:role/batch",
          "Tags": [{"Key": "team", "Value": "data"}]
        }"#
        .to_string()
    }

    #[test]
    fn accepts_an_s3control_document() {
        let request = CreateJobRequest::from_json(&sample()).unwrap();
        let spec = request.validate().unwrap();
        let copy = spec.operation.copy().unwrap();
        assert_eq!(copy.target_bucket, "dest");
        assert_eq!(copy.target_key("a/b.txt"), "copies/a/b.txt");
        let object = spec.manifest.object().unwrap();
        assert_eq!(object.bucket, "control");
        assert_eq!(object.key, "manifests/m.csv");
        assert_eq!(object.etag.as_deref(), Some("\"abc\""));
        let report = spec.report.unwrap();
        assert_eq!(
            (report.bucket.as_str(), report.prefix.as_str()),
            ("reports", "batch")
        );
        assert_eq!(spec.priority, 10);
    }

    /// Every field of S3 Control's CreateJob shape (with the copy operation; the operations'
    /// own fields have their own tests) is either honoured, and visible in the spec or in
    /// DescribeJob, or refused naming the field.
    #[test]
    fn every_create_job_field_is_honoured_or_refused_by_name() {
        use crate::describe::describe;
        let full = r#"{
          "AccountId": "123456789012",
          "ConfirmationRequired": true,
          "Operation": {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::dest"}},
          "Report": {"Bucket": "arn:aws:s3:::reports", "Format": "Report_CSV_20180820",
                     "Enabled": true, "Prefix": "batch/", "ReportScope": "FailedTasksOnly",
                     "ExpectedBucketOwner": "111122223333"},
          "ClientRequestToken": "token-1",
          "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Ignore", "Bucket", "Key", "VersionId"]},
                       "Location": {"ObjectArn": "arn:aws:s3:::control/m.csv", "ObjectVersionId": "v7", "ETag": "\"abc\""}},
          "Description": "every field",
          "Priority": 42,
          "RoleArn": "arn:aws:iam::123456789012:role/batch",
          "Tags": [{"Key": "team", "Value": "data"}]
        }"#;
        let request = CreateJobRequest::from_json(full).unwrap();
        let spec = request.validate().unwrap();
        assert!(spec.confirmation_required);
        assert_eq!(spec.priority, 42);
        let report = spec.report.clone().unwrap();
        assert_eq!(
            (report.bucket.as_str(), report.prefix.as_str(), report.scope),
            ("reports", "batch", ReportScope::FailedTasksOnly)
        );
        assert_eq!(
            spec.expected_owners,
            [ExpectedOwner {
                field: "Report.ExpectedBucketOwner".into(),
                bucket: "reports".into(),
                owner: "111122223333".into(),
            }]
        );
        let object = spec.manifest.object().unwrap();
        assert_eq!(
            (object.version_id.as_deref(), object.etag.as_deref()),
            (Some("v7"), Some("\"abc\""))
        );
        let job = crate::JobRecord::new(
            "j".into(),
            request.clone(),
            spec,
            time::macros::datetime!(2026-01-01 0:00 UTC),
        );
        assert_eq!(job.tags(), request.tags.as_slice());
        let described = serde_json::to_value(describe(
            &job,
            &Default::default(),
            "eu-west-1",
            "000000000000",
            time::macros::datetime!(2026-01-01 0:00 UTC),
        ))
        .unwrap();
        assert_eq!(
            described["JobArn"],
            "arn:aws:s3:eu-west-1:123456789012:job/j"
        );
        assert_eq!(described["Description"], "every field");
        assert_eq!(described["RoleArn"], "arn:aws:iam::123456789012:role/batch");
        assert_eq!(described["ConfirmationRequired"], true);

        let generated = r#"{
          "AccountId": "123456789012",
          "Operation": {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::dest"}},
          "Report": {"Enabled": false},
          "ClientRequestToken": "token-2", "Priority": 1,
          "RoleArn": "arn:aws:iam::123456789012:role/batch",
          "ManifestGenerator": {"S3JobManifestGenerator": {
              "ExpectedBucketOwner": "111122223333",
              "SourceBucket": "arn:aws:s3:::src",
              "EnableManifestOutput": true,
              "ManifestOutputLocation": {"Bucket": "arn:aws:s3:::out", "ManifestPrefix": "gen",
                  "ExpectedManifestBucketOwner": "444455556666",
                  "ManifestEncryption": {"SSES3": {}}, "ManifestFormat": "S3InventoryReport_CSV_20211130"},
              "Filter": {"CreatedAfter": "2026-01-01T00:00:00Z", "CreatedBefore": "2026-02-01T00:00:00Z",
                  "KeyNameConstraint": {"MatchAnyPrefix": ["a/"], "MatchAnySuffix": [".gz"], "MatchAnySubstring": ["x"]},
                  "ObjectSizeGreaterThanBytes": 1, "ObjectSizeLessThanBytes": 100,
                  "MatchAnyStorageClass": ["STANDARD"]}}}
        }"#;
        let spec = CreateJobRequest::from_json(generated)
            .unwrap()
            .validate()
            .unwrap();
        let ManifestSource::Generated(g) = &spec.manifest else {
            panic!("a generated manifest");
        };
        assert_eq!(g.source_bucket, "src");
        assert_eq!(g.output.as_ref().unwrap().prefix, "gen");
        let f = &g.filter;
        assert_eq!(
            (f.prefixes.len(), f.suffixes.len(), f.substrings.len()),
            (1, 1, 1)
        );
        assert_eq!(
            (f.size_greater_than, f.size_less_than),
            (Some(1), Some(100))
        );
        assert!(f.created_after.is_some() && f.created_before.is_some());
        assert_eq!(f.storage_classes, ["STANDARD"]);
        let owners: Vec<(&str, &str)> = spec
            .expected_owners
            .iter()
            .map(|o| (o.bucket.as_str(), o.owner.as_str()))
            .collect();
        assert_eq!(owners, [("src", "111122223333"), ("out", "444455556666")]);

        // Fields batchops cannot honour, or that are malformed, are refused by their path.
        let generator = "ManifestGenerator.S3JobManifestGenerator";
        let refused = [
            (
                full,
                r#""ExpectedBucketOwner": "111122223333""#,
                r#""ExpectedBucketOwner": "arn:aws:iam::111122223333:root""#,
                "Report.ExpectedBucketOwner".to_string(),
            ),
            (
                generated,
                r#""ExpectedBucketOwner": "111122223333""#,
                r#""ExpectedBucketOwner": "11112222333""#,
                format!("{generator}.ExpectedBucketOwner"),
            ),
            (
                generated,
                r#""Bucket": "arn:aws:s3:::out""#,
                r#""Bucket": "arn:aws:s3:::src""#,
                format!("{generator}.ManifestOutputLocation.ExpectedManifestBucketOwner"),
            ),
            (
                generated,
                r#""SSES3": {}"#,
                r#""SSEKMS": {"KeyId": "k"}"#,
                format!("{generator}.ManifestOutputLocation.ManifestEncryption"),
            ),
            (
                generated,
                r#""CreatedAfter""#,
                r#""EligibleForReplication": true, "CreatedAfter""#,
                format!("{generator}.Filter.EligibleForReplication"),
            ),
            (
                generated,
                r#""CreatedAfter""#,
                r#""ObjectReplicationStatuses": ["NONE"], "CreatedAfter""#,
                format!("{generator}.Filter.ObjectReplicationStatuses"),
            ),
            (
                full,
                r#""Priority": 42"#,
                r#""Priority": 42, "Unknown": 1"#,
                "Unknown".to_string(),
            ),
        ];
        for (document, from, to, field) in refused {
            let changed = document.replacen(from, to, 1);
            assert_ne!(changed, document, "{field}: the document did not change");
            let err = CreateJobRequest::from_json(&changed)
                .and_then(|r| r.validate().map(|_| ()))
                .unwrap_err();
            assert!(err.field.starts_with(&field), "{field}: {err}");
        }
    }

    #[test]
    fn job_tags_are_checked_as_s3_control_does() {
        let tag = |k: &str, v: &str| Tag {
            key: k.into(),
            value: v.into(),
        };
        let fifty: Vec<Tag> = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert!(validate_job_tags(&fifty, "Tags").is_ok());
        let mut too_many = fifty.clone();
        too_many.push(tag("k50", "v"));
        let err = validate_job_tags(&too_many, "Tags").unwrap_err();
        assert_eq!(err.field, "Tags");
        assert!(err.message.contains("at most 50"), "{err}");
        let cases = [
            (vec![tag("", "v")], "Tags[0].Key"),
            (
                vec![tag("a", "v"), tag(&"k".repeat(129), "v")],
                "Tags[1].Key",
            ),
            (vec![tag("a", &"v".repeat(257))], "Tags[0].Value"),
            (
                vec![tag("a", "1"), tag("b", "2"), tag("a", "3")],
                "Tags[2].Key",
            ),
        ];
        for (tags, field) in cases {
            assert_eq!(validate_job_tags(&tags, "Tags").unwrap_err().field, field);
        }
        // Limits count characters, not bytes; an empty value is a value.
        assert!(validate_job_tags(&[tag(&"é".repeat(128), "")], "Tags").is_ok());
        // CreateJob checks its Tags the same way.
        let doc = sample().replace(
            r#""Tags": [{"Key": "team", "Value": "data"}]"#,
            r#""Tags": [{"Key": "team", "Value": "data"}, {"Key": "team", "Value": "ops"}]"#,
        );
        let err = CreateJobRequest::from_json(&doc)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.field, "Tags[1].Key");
    }

    #[test]
    fn job_specs_stored_with_a_copy_field_still_load() {
        let spec = CreateJobRequest::from_json(&sample())
            .unwrap()
            .validate()
            .unwrap();
        let mut stored = serde_json::to_value(&spec).unwrap();
        assert!(stored.get("copy").is_none());
        // A job record written before operations other than the copy existed.
        let object = stored.as_object_mut().unwrap();
        let operation = object.remove("operation").unwrap();
        object.insert("copy".into(), operation["Copy"].clone());
        let old: JobSpec = serde_json::from_value(stored).unwrap();
        assert_eq!(old, spec);
        // And today's records read back as written.
        let text = serde_json::to_string(&spec).unwrap();
        assert!(text.contains("\"operation\":{\"Copy\":"), "{text}");
        assert_eq!(serde_json::from_str::<JobSpec>(&text).unwrap(), spec);
    }

    #[test]
    fn unknown_field_is_refused_with_its_path() {
        let doc = sample().replace("\"StorageClass\"", "\"StorageKlass\"");
        let err = CreateJobRequest::from_json(&doc).unwrap_err();
        assert_eq!(err.field, "Operation.S3PutObjectCopy.StorageKlass");
        assert!(err.message.contains("StorageKlass"), "{}", err.message);
    }

    #[test]
    fn unsupported_option_is_refused_not_dropped() {
        let doc = sample().replace(
            "\"MetadataDirective\": \"COPY\"",
            "\"MetadataDirective\": \"REPLACE\", \"NewObjectMetadata\": {\"RequesterCharged\": true}",
        );
        let err = CreateJobRequest::from_json(&doc)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            err.field,
            "Operation.S3PutObjectCopy.NewObjectMetadata.RequesterCharged"
        );
        assert!(err.message.contains("set RequesterPays"), "{err}");
    }

    /// `sample()` with `options` added to its S3PutObjectCopy.
    fn copy_with(options: &str) -> String {
        sample().replace(
            "\"MetadataDirective\": \"COPY\"",
            &format!("\"MetadataDirective\": \"COPY\", {options}"),
        )
    }

    #[test]
    fn every_copy_option_s3_copy_object_carries_is_honoured() {
        let doc = copy_with(
            r#""SSEAwsKmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
               "BucketKeyEnabled": true, "NewObjectMetadata": {"SSEAlgorithm": "KMS"},
               "CannedAccessControlList": "bucket-owner-full-control",
               "ObjectLockLegalHoldStatus": "ON", "ObjectLockMode": "GOVERNANCE",
               "ObjectLockRetainUntilDate": "2099-01-01T00:00:00Z",
               "RedirectLocation": "/moved/here", "RequesterPays": true,
               "ModifiedSinceConstraint": "2026-01-01T00:00:00Z", "UnModifiedSinceConstraint": 1800000000,
               "ChecksumAlgorithm": "CRC64NVME""#,
        );
        let spec = CreateJobRequest::from_json(&doc)
            .unwrap()
            .validate()
            .unwrap();
        let copy = spec.operation.copy().unwrap();
        // SSE under MetadataDirective COPY: encryption is not metadata.
        assert_eq!(copy.metadata_directive, MetadataDirective::Copy);
        assert_eq!(copy.new_metadata.sse_algorithm.as_deref(), Some("KMS"));
        assert_eq!(copy.checksum_algorithm.as_deref(), Some("CRC64NVME"));
        let o = &copy.options;
        assert!(o.kms_key_id.as_deref().unwrap().ends_with("1234567890ab"));
        assert_eq!(o.bucket_key_enabled, Some(true));
        assert_eq!(
            o.acl,
            Some(crate::copy_options::ObjectAcl::Canned(
                "bucket-owner-full-control".into()
            ))
        );
        assert_eq!(o.object_lock.legal_hold.as_deref(), Some("ON"));
        assert_eq!(o.object_lock.mode.as_deref(), Some("GOVERNANCE"));
        assert_eq!(
            o.object_lock.retain_until.as_deref(),
            Some("2099-01-01T00:00:00Z")
        );
        assert_eq!(o.redirect_location.as_deref(), Some("/moved/here"));
        assert!(o.requester_pays);
        assert_eq!(o.modified_since, Some(1_767_225_600));
        assert_eq!(o.unmodified_since, Some(1_800_000_000));
        // Stored and read back whole; records without options read as none.
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<JobSpec>(&text).unwrap(), spec);
        let plain = CreateJobRequest::from_json(&sample())
            .unwrap()
            .validate()
            .unwrap();
        let mut stored = serde_json::to_value(&plain).unwrap();
        stored["operation"]["Copy"]
            .as_object_mut()
            .unwrap()
            .remove("options");
        let old: JobSpec = serde_json::from_value(stored).unwrap();
        assert_eq!(old, plain);
        assert_eq!(
            old.operation.copy().unwrap().options,
            CopyOptions::default()
        );
    }

    #[test]
    fn copy_option_mistakes_name_their_json_path() {
        let cases = [
            // Typed fields: the parser names the path.
            (
                r#""RequesterPays": "yes""#,
                "Operation.S3PutObjectCopy.RequesterPays",
            ),
            (
                r#""AccessControlGrants": [{"Grantee": {"TypeIdentifer": "id"}, "Permission": "READ"}]"#,
                "Operation.S3PutObjectCopy.AccessControlGrants[0].Grantee.TypeIdentifer",
            ),
            // Not an S3 field: S3 Control's copy has no TargetKeyPrefixTransform.
            (
                r#""TargetKeyPrefixTransform": {}"#,
                "Operation.S3PutObjectCopy.TargetKeyPrefixTransform",
            ),
            // Validated values.
            (
                r#""AccessControlGrants": [{"Grantee": {"TypeIdentifier": "id", "Identifier": "a"}, "Permission": "WRITE"}]"#,
                "Operation.S3PutObjectCopy.AccessControlGrants[0].Permission",
            ),
            (
                r#""SSEAwsKmsKeyId": "1234abcd-12ab-34cd-56ef-1234567890ab""#,
                "Operation.S3PutObjectCopy.SSEAwsKmsKeyId",
            ),
            (
                r#""ObjectLockMode": "COMPLIANCE""#,
                "Operation.S3PutObjectCopy.ObjectLockRetainUntilDate",
            ),
            (
                r#""ModifiedSinceConstraint": "last week""#,
                "Operation.S3PutObjectCopy.ModifiedSinceConstraint",
            ),
            (
                r#""RedirectLocation": "elsewhere""#,
                "Operation.S3PutObjectCopy.RedirectLocation",
            ),
            (
                r#""NewObjectMetadata": {"SSEAlgorithm": "aws:kms"}"#,
                "Operation.S3PutObjectCopy.NewObjectMetadata.SSEAlgorithm",
            ),
            // New metadata still needs REPLACE; encryption alone does not.
            (
                r#""NewObjectMetadata": {"SSEAlgorithm": "AES256", "ContentType": "text/plain"}"#,
                "Operation.S3PutObjectCopy.NewObjectMetadata",
            ),
        ];
        for (options, field) in cases {
            let err = CreateJobRequest::from_json(&copy_with(options))
                .and_then(|r| r.validate().map(|_| r))
                .unwrap_err();
            assert_eq!(err.field, field, "{options}: {err}");
        }
    }

    #[test]
    fn reduced_redundancy_is_not_a_storage_class_for_copies() {
        let doc = sample().replace("\"STANDARD\"", "\"REDUCED_REDUNDANCY\"");
        let err = CreateJobRequest::from_json(&doc)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.field, "Operation.S3PutObjectCopy.StorageClass");
        assert!(err.message.contains("GLACIER_IR"), "{err}");
        for class in ["STANDARD_IA", "GLACIER_IR", "DEEP_ARCHIVE"] {
            let doc = sample().replace("\"STANDARD\"", &format!("\"{class}\""));
            CreateJobRequest::from_json(&doc)
                .unwrap()
                .validate()
                .unwrap_or_else(|e| panic!("{class}: {e}"));
        }
    }

    #[test]
    fn other_operations_are_refused_by_name() {
        let doc = sample().replace(
            "\"S3PutObjectCopy\": {",
            "\"S3PutObjectTagging\": {\"TagSet\": []}, \"S3ReplicateObject\": {}, \"Unused\": {",
        );
        // `Unused` is not an operation at all: the parser names it.
        let err = CreateJobRequest::from_json(&doc).unwrap_err();
        assert_eq!(err.field, "Operation.Unused");
        // Two operations at once: the second is named.
        let doc = sample().replace(
            "\"S3PutObjectCopy\": {",
            "\"S3PutObjectTagging\": {\"TagSet\": []}, \"S3PutObjectCopy\": {",
        );
        let err = CreateJobRequest::from_json(&doc)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.field, "Operation.S3PutObjectTagging");
        assert!(err.message.contains("exactly one"), "{err}");
    }

    #[test]
    fn lambda_invoke_jobs_validate_and_name_bad_fields() {
        let invoke = |operation: &str| {
            sample().replace(
                r#"{"S3PutObjectCopy": {
              "TargetResource": "arn:aws:s3:::dest",
              "TargetKeyPrefix": "copies",
              "StorageClass": "STANDARD",
              "MetadataDirective": "COPY"}}"#,
                operation,
            )
        };
        let doc = invoke(
            r#"{"LambdaInvoke": {"FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:thumbs:live",
                                 "InvocationSchemaVersion": "2.0", "UserArguments": {"size": "128"}}}"#,
        );
        assert_ne!(doc, sample());
        let request = CreateJobRequest::from_json(&doc).unwrap();
        let spec = request.validate().unwrap();
        let OperationSpec::LambdaInvoke(invoke_spec) = &spec.operation else {
            panic!("{:?}", spec.operation)
        };
        assert_eq!(
            invoke_spec.function,
            "arn:aws:lambda:us-east-1:123456789012:function:thumbs:live"
        );
        assert_eq!(invoke_spec.schema, crate::invoke::SchemaVersion::V2);
        assert_eq!(spec.operation.name(), "LambdaInvoke");
        assert_eq!(spec.operation.target_bucket(), None);
        // Stored and read back as the job record keeps it.
        let stored = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<JobSpec>(&stored).unwrap(), spec);
        // DescribeJob echoes the operation as it was given.
        assert_eq!(
            serde_json::to_value(&request.operation).unwrap()["LambdaInvoke"]["UserArguments"],
            serde_json::json!({"size": "128"})
        );

        let cases = [
            (
                r#"{"LambdaInvoke": {"FunctionArn": "thumbs", "Qualifier": "live"}}"#,
                "Operation.LambdaInvoke.Qualifier",
            ),
            (
                r#"{"LambdaInvoke": {"FunctionArn": "thumbs", "UserArguments": {"a": "b"}}}"#,
                "Operation.LambdaInvoke.UserArguments",
            ),
            (
                r#"{"LambdaInvoke": {"FunctionArn": "arn:aws:s3:::thumbs"}}"#,
                "Operation.LambdaInvoke.FunctionArn",
            ),
            (
                r#"{"LambdaInvoke": {"InvocationSchemaVersion": "1.0"}}"#,
                "Operation.LambdaInvoke.FunctionArn",
            ),
            (
                r#"{"LambdaInvoke": {"FunctionArn": "thumbs"}, "S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::d"}}"#,
                "Operation.LambdaInvoke",
            ),
        ];
        for (operation, field) in cases {
            let doc = invoke(operation);
            let err = CreateJobRequest::from_json(&doc)
                .and_then(|r| r.validate().map(|_| r))
                .unwrap_err();
            assert_eq!(err.field, field, "{operation}: {err}");
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (
                "\"arn:aws:s3:::dest\"",
                "\"dest\"",
                "Operation.S3PutObjectCopy.TargetResource",
            ),
            (
                "\"STANDARD\"",
                "\"FAST\"",
                "Operation.S3PutObjectCopy.StorageClass",
            ),
            ("\"Key\"]", "\"Key\", \"Size\"]", "Manifest.Spec.Fields[2]"),
            ("\"Bucket\", \"Key\"]", "\"Key\"]", "Manifest.Spec.Fields"),
            ("\"AllTasks\"", "\"Some\"", "Report.ReportScope"),
            ("\"Priority\": 10", "\"Priority\": -1", "Priority"),
            (
                "S3BatchOperations_CSV_20180820",
                "S3BatchOperations_CSV_20990101",
                "Manifest.Spec.Format",
            ),
            (
                "S3BatchOperations_CSV_20180820",
                "S3InventoryReport_CSV_20161130",
                "Manifest.Spec.Fields",
            ),
            (
                "\"arn:aws:s3:::control/manifests/m.csv\"",
                "\"arn:aws:s3:::control\"",
                "Manifest.Location.ObjectArn",
            ),
        ];
        for (from, to, field) in cases {
            let doc = sample().replace(from, to);
            assert_ne!(doc, sample(), "{from}");
            let err = CreateJobRequest::from_json(&doc)
                .and_then(|r| r.validate().map(|_| r))
                .unwrap_err();
            assert_eq!(err.field, field, "{from} -> {to}: {err}");
        }
    }

    #[test]
    fn role_arn_and_client_request_token_are_required_and_named() {
        let cases = [
            (
                "\"ClientRequestToken\": \"token-1\",",
                "",
                "ClientRequestToken",
                "required",
            ),
            (
                "\"ClientRequestToken\": \"token-1\",",
                "\"ClientRequestToken\": \"\",",
                "ClientRequestToken",
                "1 to 64",
            ),
            (
                "\"ClientRequestToken\": \"token-1\",",
                "\"ClientRequestToken\": \"#backup-nightly-20261122T0200Z\",",
                "ClientRequestToken",
                "must not start with `#`",
            ),
            (
                "\"RoleArn\": \"arn:aws:iam::123456789012:role/batch\",",
                "",
                "RoleArn",
                "required",
            ),
            (
                "arn:aws:iam::123456789012:role/batch",
                "batch",
                "RoleArn",
                "not an IAM role ARN",
            ),
            (
                "arn:aws:iam::123456789012:role/batch",
                "arn:aws:iam::1234:role/batch",
                "RoleArn",
                "not an IAM role ARN",
            ),
            (
                "arn:aws:iam::123456789012:role/batch",
                "arn:aws:iam::123456789012:user/batch",
                "RoleArn",
                "not an IAM role ARN",
            ),
            (
                "arn:aws:iam::123456789012:role/batch",
                "arn:aws:s3:::123456789012:role/batch",
                "RoleArn",
                "not an IAM role ARN",
            ),
        ];
        for (from, to, field, message) in cases {
            let doc = sample().replace(from, to);
            assert_ne!(doc, sample(), "{from}");
            let err = CreateJobRequest::from_json(&doc)
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(err.field, field, "{from} -> {to}: {err}");
            assert!(err.message.contains(message), "{from} -> {to}: {err}");
            assert!(err.to_string().contains(field), "{err}");
        }
        // Other partitions and role paths are IAM role ARNs too.
        for role in [
            "arn:aws-us-gov:iam::123456789012:role/batch",
            "arn:aws:iam::123456789012:role/service-role/batch",
        ] {
            let doc = sample().replace("arn:aws:iam::123456789012:role/batch", role);
            CreateJobRequest::from_json(&doc)
                .unwrap()
                .validate()
                .unwrap_or_else(|e| panic!("{role}: {e}"));
        }
    }

    #[test]
    fn new_metadata_requires_replace() {
        let doc = sample().replace(
            "\"MetadataDirective\": \"COPY\"",
            "\"MetadataDirective\": \"COPY\", \"NewObjectMetadata\": {\"ContentType\": \"text/plain\"}",
        );
        let err = CreateJobRequest::from_json(&doc)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.field, "Operation.S3PutObjectCopy.NewObjectMetadata");
        let doc = doc.replace("\"COPY\"", "\"REPLACE\"");
        let spec = CreateJobRequest::from_json(&doc)
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            spec.operation
                .copy()
                .unwrap()
                .new_metadata
                .content_type
                .as_deref(),
            Some("text/plain")
        );
    }

    #[test]
    fn inventory_and_generated_manifests_validate() {
        let inventory = r#"{"Operation": {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::dest"}},
            "Report": {"Enabled": false}, "Priority": 1,
            "ClientRequestToken": "t1", "RoleArn": "arn:aws:iam::123456789012:role/batch",
            "Manifest": {"Spec": {"Format": "S3InventoryReport_CSV_20161130"},
                         "Location": {"ObjectArn": "arn:aws:s3:::inv/src/config/2026-01-01T00-00Z/manifest.json"}},
            "Batchops": {"PinVersions": true}}"#;
        let spec = CreateJobRequest::from_json(inventory)
            .unwrap()
            .validate()
            .unwrap();
        assert!(matches!(spec.manifest, ManifestSource::Inventory { .. }));
        assert!(spec.pinning.pin_versions);

        let generated = r#"{"Operation": {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::dest"}},
            "Report": {"Enabled": false}, "Priority": 1,
            "ClientRequestToken": "t1", "RoleArn": "arn:aws:iam::123456789012:role/batch",
            "ManifestGenerator": {"S3JobManifestGenerator": {"SourceBucket": "arn:aws:s3:::src",
                "EnableManifestOutput": true,
                "ManifestOutputLocation": {"Bucket": "arn:aws:s3:::out", "ManifestPrefix": "gen/", "ManifestFormat": "S3InventoryReport_CSV_20211130"},
                "Filter": {"KeyNameConstraint": {"MatchAnyPrefix": ["logs/"], "MatchAnySuffix": [".gz"]},
                           "CreatedAfter": "2026-01-01T00:00:00Z", "ObjectSizeGreaterThanBytes": 10,
                           "MatchAnyStorageClass": ["STANDARD"]}}},
            "Batchops": {"AsOf": "2026-02-01T00:00:00Z"}}"#;
        let spec = CreateJobRequest::from_json(generated)
            .unwrap()
            .validate()
            .unwrap();
        let ManifestSource::Generated(g) = &spec.manifest else {
            panic!()
        };
        assert_eq!(g.source_bucket, "src");
        assert_eq!(g.filter.prefixes, vec!["logs/".to_string()]);
        assert_eq!(g.filter.size_greater_than, Some(10));
        assert_eq!(
            g.output,
            Some(ManifestOutput {
                bucket: "out".into(),
                prefix: "gen".into()
            })
        );
        assert_eq!(spec.pinning.as_of.as_deref(), Some("2026-02-01T00:00:00Z"));

        let cases = [
            (
                generated.replace(
                    "\"ObjectSizeGreaterThanBytes\": 10",
                    "\"EligibleForReplication\": true",
                ),
                "ManifestGenerator.S3JobManifestGenerator.Filter.EligibleForReplication",
            ),
            (
                generated.replace("2026-01-01T00:00:00Z", "yesterday"),
                "ManifestGenerator.S3JobManifestGenerator.Filter.CreatedAfter",
            ),
            (
                generated.replace("S3InventoryReport_CSV_20211130", "CSV"),
                "ManifestGenerator.S3JobManifestGenerator.ManifestOutputLocation.ManifestFormat",
            ),
            (
                generated.replace("2026-02-01T00:00:00Z", "later"),
                "Batchops.AsOf",
            ),
            (
                inventory.replace("\"PinVersions\": true", "\"AllVersions\": true"),
                "Batchops.AllVersions",
            ),
        ];
        for (doc, field) in cases {
            let err = CreateJobRequest::from_json(&doc)
                .and_then(|r| r.validate().map(|_| ()))
                .unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }
}
