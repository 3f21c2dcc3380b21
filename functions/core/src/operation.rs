//! The job's operation: the request shapes of the operations other than the copy (S3 Control's
//! field names, `S3Set...Operation` types in its API) and their validation into the
//! [`OperationSpec`] the engine runs. The worker runs it through the aws crate's `ops` without
//! naming a variant.

use crate::backup::{MaxDeletes, DEFAULT_MAX_DELETES_FLOOR};
use crate::checksum::{ChecksumAlgorithm, ChecksumType};
use crate::copy_options::{grant_headers, GrantHeaders, S3Grant, CANNED_ACLS};
use crate::export::ExportSpec;
use crate::import::ImportSpec;
use crate::invoke::InvokeSpec;
use crate::plan::parse_time;
use crate::request::{validate_tags, CopySpec, RequestError, Tag};
use serde::{Deserialize, Serialize};

// ---- Request shapes (as `aws s3control create-job` takes them) ----

/// `S3PutObjectTagging` (S3SetObjectTaggingOperation): replaces every tag of each object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PutObjectTagging {
    #[serde(default)]
    pub tag_set: Vec<Tag>,
}

/// `S3DeleteObjectTagging`: removes every tag of each object; takes no fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeleteObjectTagging {}

/// `S3PutObjectAcl` (S3SetObjectAclOperation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PutObjectAcl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_control_policy: Option<AccessControlPolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AccessControlPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_control_list: Option<AccessControlList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canned_access_control_list: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AccessControlList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ObjectOwner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<S3Grant>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ObjectOwner {
    #[serde(default, rename = "ID", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// `S3InitiateRestoreObject`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct InitiateRestoreObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_in_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glacier_job_tier: Option<String>,
}

/// `S3PutObjectLegalHold` (S3SetObjectLegalHoldOperation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PutObjectLegalHold {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<LegalHold>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LegalHold {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `S3PutObjectRetention` (S3SetObjectRetentionOperation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PutObjectRetention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass_governance_retention: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `S3ComputeObjectChecksum`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ComputeObjectChecksum {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
}

/// `Operation.Batchops`: operations S3 Batch Operations does not have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct BatchopsOperation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<DeleteObjects>,
}

/// `Operation.Batchops.Delete`: deletes the manifest's versions (delete markers for entries
/// without a version ID).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DeleteObjects {
    /// At most this many tasks delete; the rest fail with `MaxDeletesExceeded`. Default 1,000;
    /// `"unlimited"` turns the guard off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deletes: Option<MaxDeletes>,
}

// ---- Validated operations ----

/// The operations batchops runs.
// One per job (record, spec), never in a collection: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationSpec {
    /// `S3PutObjectCopy` (also every backup run and restore).
    Copy(CopySpec),
    /// `LambdaInvoke`: the job's function, invoked once per task.
    LambdaInvoke(InvokeSpec),
    /// An export: each task streams its object version into another object store.
    Export(ExportSpec),
    /// An import: each task streams an object of another store into the destination bucket.
    Import(ImportSpec),
    /// `S3PutObjectTagging`: the tag set every object gets (possibly empty).
    PutTagging(TagSet),
    /// `S3DeleteObjectTagging`.
    DeleteTagging,
    /// `S3PutObjectAcl`.
    PutAcl(AclSpec),
    /// `S3InitiateRestoreObject`.
    InitiateRestore(RestoreSpec),
    /// `S3PutObjectLegalHold`.
    PutLegalHold(LegalHoldSpec),
    /// `S3PutObjectRetention`.
    PutRetention(RetentionSpec),
    /// `S3ComputeObjectChecksum`.
    ComputeChecksum(ChecksumSpec),
    /// `Batchops.Delete`.
    Delete(DeleteSpec),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagSet {
    pub tags: Vec<(String, String)>,
}

/// An object ACL: a canned one, or grants as `x-amz-grant-*` headers (with the owner when the
/// request names one: it must be the object's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclSpec {
    Canned(String),
    Grants {
        owner: Option<AclOwner>,
        headers: GrantHeaders,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclOwner {
    pub id: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlacierTier {
    Bulk,
    Standard,
}

impl GlacierTier {
    pub fn as_str(self) -> &'static str {
        match self {
            GlacierTier::Bulk => "Bulk",
            GlacierTier::Standard => "Standard",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSpec {
    /// Days the restored copy stays (archives in Glacier storage classes); None for
    /// Intelligent-Tiering archive tiers, which take none.
    pub expiration_days: Option<i32>,
    pub tier: Option<GlacierTier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalHoldSpec {
    pub on: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionMode {
    Governance,
    Compliance,
}

impl RetentionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionMode::Governance => "GOVERNANCE",
            RetentionMode::Compliance => "COMPLIANCE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionSpec {
    /// Mode and retain-until time (RFC 3339); None removes the retention (where S3 allows).
    pub retention: Option<(RetentionMode, String)>,
    pub bypass_governance: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksumSpec {
    pub algorithm: ChecksumAlgorithm,
    pub checksum_type: ChecksumType,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteSpec {
    /// At most this many tasks delete; None: no limit (`"unlimited"`).
    pub max_deletes: Option<u64>,
}

/// The default deletion guard of a delete job that sets no `MaxDeletes`.
pub const DEFAULT_DELETE_JOB_MAX_DELETES: u64 = DEFAULT_MAX_DELETES_FLOOR;

/// A bound on the tasks of a job that may act: tasks past it (in manifest order) are written as
/// refused tasks at planning and fail without an S3 call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLimit {
    pub max: u64,
    pub code: &'static str,
    pub message: String,
}

impl OperationSpec {
    /// The operation's name in S3 Control's `Operation` (for messages and field paths).
    pub fn name(&self) -> &'static str {
        match self {
            OperationSpec::Copy(_) => "S3PutObjectCopy",
            OperationSpec::LambdaInvoke(_) => "LambdaInvoke",
            OperationSpec::Export(_) => "BatchopsExport",
            OperationSpec::Import(_) => "BatchopsImport",
            OperationSpec::PutTagging(_) => "S3PutObjectTagging",
            OperationSpec::DeleteTagging => "S3DeleteObjectTagging",
            OperationSpec::PutAcl(_) => "S3PutObjectAcl",
            OperationSpec::InitiateRestore(_) => "S3InitiateRestoreObject",
            OperationSpec::PutLegalHold(_) => "S3PutObjectLegalHold",
            OperationSpec::PutRetention(_) => "S3PutObjectRetention",
            OperationSpec::ComputeChecksum(_) => "S3ComputeObjectChecksum",
            OperationSpec::Delete(_) => "Batchops.Delete",
        }
    }

    /// The bucket the operation writes to besides the manifest's objects (a copy's target).
    pub fn target_bucket(&self) -> Option<&str> {
        match self {
            OperationSpec::Import(import) => Some(&import.to_bucket),
            _ => self.copy().map(|copy| copy.target_bucket.as_str()),
        }
    }

    /// The import, for import jobs.
    pub fn import(&self) -> Option<&ImportSpec> {
        match self {
            OperationSpec::Import(import) => Some(import),
            _ => None,
        }
    }

    /// The export, for export jobs.
    pub fn export(&self) -> Option<&ExportSpec> {
        match self {
            OperationSpec::Export(export) => Some(export),
            _ => None,
        }
    }

    /// The copy, for jobs that copy (backups, restores, S3PutObjectCopy).
    pub fn copy(&self) -> Option<&CopySpec> {
        match self {
            OperationSpec::Copy(copy) => Some(copy),
            _ => None,
        }
    }

    /// Whether confirming the job takes its task count typed back (see
    /// `JobRecord::request_status`): the operation destroys data.
    pub fn needs_counted_confirmation(&self) -> bool {
        matches!(self, OperationSpec::Delete(_))
    }

    /// The bound on tasks that may act, if the operation has one.
    pub fn task_limit(&self) -> Option<TaskLimit> {
        match self {
            OperationSpec::Delete(DeleteSpec {
                max_deletes: Some(max),
            }) => Some(TaskLimit {
                max: *max,
                code: "MaxDeletesExceeded",
                message: format!(
                    "not deleted: the job's MaxDeletes ({max}) allows no more deletions; raise Operation.Batchops.Delete.MaxDeletes (or set it to \"unlimited\") and run a job over the rest"
                ),
            }),
            _ => None,
        }
    }
}

/// Reads a stored job's operation: `operation` as written today, or the `copy` field job records
/// held before other operations existed (then always a copy).
pub(crate) fn operation_or_stored_copy<'de, D>(deserializer: D) -> Result<OperationSpec, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Operation(OperationSpec),
        Copy(CopySpec),
    }
    Ok(match Stored::deserialize(deserializer)? {
        Stored::Operation(operation) => operation,
        Stored::Copy(copy) => OperationSpec::Copy(copy),
    })
}

// ---- Validation ----

/// An object's tag set as S3 takes it (at most 10 tags; see `request::validate_tags`), as the
/// (key, value) pairs a request carries. `path` is the JSON path of the list.
pub fn validate_tag_set(tags: &[Tag], path: &str) -> Result<Vec<(String, String)>, RequestError> {
    validate_tags(tags, path, 10, "object")?;
    Ok(tags
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect())
}

pub fn validate_put_tagging(op: &PutObjectTagging) -> Result<OperationSpec, RequestError> {
    let tags = validate_tag_set(&op.tag_set, "Operation.S3PutObjectTagging.TagSet")?;
    Ok(OperationSpec::PutTagging(TagSet { tags }))
}

pub fn validate_put_acl(op: &PutObjectAcl) -> Result<OperationSpec, RequestError> {
    let base = "Operation.S3PutObjectAcl.AccessControlPolicy";
    let policy = op.access_control_policy.as_ref().ok_or_else(|| {
        RequestError::new(
            base,
            "required: a CannedAccessControlList or an AccessControlList",
        )
    })?;
    let acl = match (
        &policy.canned_access_control_list,
        &policy.access_control_list,
    ) {
        (Some(_), Some(_)) => {
            return Err(RequestError::new(
                format!("{base}.AccessControlList"),
                "give CannedAccessControlList or AccessControlList, not both",
            ))
        }
        (None, None) => {
            return Err(RequestError::new(
                base,
                "give CannedAccessControlList or AccessControlList",
            ))
        }
        (Some(canned), None) => {
            if !CANNED_ACLS.contains(&canned.as_str()) {
                return Err(RequestError::new(
                    format!("{base}.CannedAccessControlList"),
                    format!(
                        "unknown canned ACL `{canned}`; expected one of {}",
                        CANNED_ACLS.join(", ")
                    ),
                ));
            }
            AclSpec::Canned(canned.clone())
        }
        (None, Some(list)) => {
            let path = format!("{base}.AccessControlList");
            let owner = list.owner.as_ref().map(|o| AclOwner {
                id: o.id.clone(),
                display_name: o.display_name.clone(),
            });
            let grants = list.grants.as_deref().unwrap_or_default();
            if grants.is_empty() {
                return Err(RequestError::new(
                    format!("{path}.Grants"),
                    "give at least one grant (CannedAccessControlList `private` leaves the owner alone)",
                ));
            }
            if grants.len() > 100 {
                return Err(RequestError::new(
                    format!("{path}.Grants"),
                    format!("at most 100 grants per ACL, got {}", grants.len()),
                ));
            }
            let headers = grant_headers(&format!("{path}.Grants"), grants)?;
            AclSpec::Grants { owner, headers }
        }
    };
    Ok(OperationSpec::PutAcl(acl))
}

pub fn validate_restore(op: &InitiateRestoreObject) -> Result<OperationSpec, RequestError> {
    let base = "Operation.S3InitiateRestoreObject";
    let expiration_days = match op.expiration_in_days {
        None => None,
        Some(days) if (1..=i32::MAX as i64).contains(&days) => Some(days as i32),
        Some(days) => {
            return Err(RequestError::new(
                format!("{base}.ExpirationInDays"),
                format!("must be 1 or more, got {days} (leave it out for Intelligent-Tiering archive tiers)"),
            ))
        }
    };
    let tier = match op.glacier_job_tier.as_deref() {
        None => None,
        Some("BULK") => Some(GlacierTier::Bulk),
        Some("STANDARD") => Some(GlacierTier::Standard),
        Some("EXPEDITED") => {
            return Err(RequestError::new(
                format!("{base}.GlacierJobTier"),
                "S3 Batch Operations restores with BULK or STANDARD only, not EXPEDITED",
            ))
        }
        Some(other) => {
            return Err(RequestError::new(
                format!("{base}.GlacierJobTier"),
                format!("expected BULK or STANDARD, got `{other}`"),
            ))
        }
    };
    Ok(OperationSpec::InitiateRestore(RestoreSpec {
        expiration_days,
        tier,
    }))
}

pub fn validate_legal_hold(op: &PutObjectLegalHold) -> Result<OperationSpec, RequestError> {
    let base = "Operation.S3PutObjectLegalHold.LegalHold";
    let hold = op
        .legal_hold
        .as_ref()
        .ok_or_else(|| RequestError::new(base, "required: {\"Status\": \"ON\" | \"OFF\"}"))?;
    let on = match hold.status.as_deref() {
        Some("ON") => true,
        Some("OFF") => false,
        Some(other) => {
            return Err(RequestError::new(
                format!("{base}.Status"),
                format!("expected ON or OFF, got `{other}`"),
            ))
        }
        None => {
            return Err(RequestError::new(
                format!("{base}.Status"),
                "required: ON or OFF",
            ))
        }
    };
    Ok(OperationSpec::PutLegalHold(LegalHoldSpec { on }))
}

/// `now`: the creation time; a retain-until date must be later.
pub fn validate_retention(
    op: &PutObjectRetention,
    now: time::OffsetDateTime,
) -> Result<OperationSpec, RequestError> {
    let base = "Operation.S3PutObjectRetention.Retention";
    let retention = op.retention.as_ref().ok_or_else(|| {
        RequestError::new(
            base,
            "required: {\"Mode\": \"GOVERNANCE\" | \"COMPLIANCE\", \"RetainUntilDate\": time}",
        )
    })?;
    let retention = match (&retention.mode, &retention.retain_until_date) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(RequestError::new(
                format!("{base}.RetainUntilDate"),
                "required with Mode",
            ))
        }
        (None, Some(_)) => {
            return Err(RequestError::new(
                format!("{base}.Mode"),
                "required with RetainUntilDate: GOVERNANCE or COMPLIANCE",
            ))
        }
        (Some(mode), Some(until)) => {
            let mode = match mode.as_str() {
                "GOVERNANCE" => RetentionMode::Governance,
                "COMPLIANCE" => RetentionMode::Compliance,
                other => {
                    return Err(RequestError::new(
                        format!("{base}.Mode"),
                        format!("expected GOVERNANCE or COMPLIANCE, got `{other}`"),
                    ))
                }
            };
            let at = parse_time(until)
                .map_err(|e| RequestError::new(format!("{base}.RetainUntilDate"), e))?;
            if at <= now {
                return Err(RequestError::new(
                    format!("{base}.RetainUntilDate"),
                    format!("`{until}` is not in the future"),
                ));
            }
            Some((mode, until.clone()))
        }
    };
    Ok(OperationSpec::PutRetention(RetentionSpec {
        retention,
        bypass_governance: op.bypass_governance_retention.unwrap_or(false),
    }))
}

pub fn validate_checksum(op: &ComputeObjectChecksum) -> Result<OperationSpec, RequestError> {
    let base = "Operation.S3ComputeObjectChecksum";
    let name = op.checksum_algorithm.as_deref().ok_or_else(|| {
        RequestError::new(
            format!("{base}.ChecksumAlgorithm"),
            format!("required: one of {}", ChecksumAlgorithm::NAMES.join(", ")),
        )
    })?;
    let algorithm = ChecksumAlgorithm::from_name(name)
        .map_err(|message| RequestError::new(format!("{base}.ChecksumAlgorithm"), message))?;
    let checksum_type = match op.checksum_type.as_deref() {
        None | Some("FULL_OBJECT") => ChecksumType::FullObject,
        Some("COMPOSITE") => ChecksumType::Composite,
        Some(other) => {
            return Err(RequestError::new(
                format!("{base}.ChecksumType"),
                format!("expected FULL_OBJECT or COMPOSITE, got `{other}`"),
            ))
        }
    };
    if checksum_type == ChecksumType::Composite && !algorithm.composes() {
        return Err(RequestError::new(
            format!("{base}.ChecksumType"),
            format!("{} has FULL_OBJECT checksums only", algorithm.name()),
        ));
    }
    Ok(OperationSpec::ComputeChecksum(ChecksumSpec {
        algorithm,
        checksum_type,
    }))
}

pub fn validate_batchops(op: &BatchopsOperation) -> Result<OperationSpec, RequestError> {
    let Some(delete) = &op.delete else {
        return Err(RequestError::new(
            "Operation.Batchops",
            "name the operation: {\"Delete\": {...}}",
        ));
    };
    let max_deletes = match delete.max_deletes {
        None => Some(DEFAULT_DELETE_JOB_MAX_DELETES),
        Some(MaxDeletes::Limit(n)) => Some(n),
        Some(MaxDeletes::Unlimited) => None,
    };
    Ok(OperationSpec::Delete(DeleteSpec { max_deletes }))
}

/// Why an operation S3 has is refused: batchops cannot prove it against the local stack.
pub fn refusal(name: &str) -> Option<&'static str> {
    match name {
        "S3ReplicateObject" => Some(
            "refused: S3 Batch Replication replicates through the source bucket's replication configuration with S3's internal replication (there is no public per-object replicate call batchops could make), and the local stack (moto) has no replication to prove it against; use S3 Batch Operations for replication",
        ),
        "S3UpdateObjectEncryption" => Some(
            "refused: it changes objects' server-side encryption to SSE-KMS in place (S3's UpdateObjectEncryption); the local stack (moto) has neither that call nor KMS-encrypted objects to prove it against; use S3 Batch Operations for it",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::CreateJobRequest;

    /// A valid job document around `operation` (the JSON of the `Operation` object).
    fn document(operation: &str) -> String {
        format!(
            r#"{{"Operation": {operation}, "Report": {{"Enabled": false}}, "Priority": 1,
            "ClientRequestToken": "t1", "RoleArn": "arn:aws:iam::123456789012:role/batch",
            "Manifest": {{"Spec": {{"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]}},
                         "Location": {{"ObjectArn": "arn:aws:s3:::b/m.csv"}}}}}}"#
        )
    }

    fn validate(operation: &str) -> Result<crate::JobSpec, RequestError> {
        CreateJobRequest::from_json(&document(operation))?.validate()
    }

    fn refused(operation: &str) -> RequestError {
        match validate(operation) {
            Ok(spec) => panic!("{operation} was accepted: {:?}", spec.operation),
            Err(err) => err,
        }
    }

    #[test]
    fn tagging_operations_validate() {
        let spec = validate(
            r#"{"S3PutObjectTagging": {"TagSet": [{"Key": "team", "Value": "data"}, {"Key": "k 2", "Value": ""}]}}"#,
        )
        .unwrap();
        assert_eq!(
            spec.operation,
            OperationSpec::PutTagging(TagSet {
                tags: vec![
                    ("team".into(), "data".into()),
                    ("k 2".into(), String::new())
                ]
            })
        );
        assert_eq!(
            validate(r#"{"S3PutObjectTagging": {}}"#).unwrap().operation,
            OperationSpec::PutTagging(TagSet { tags: vec![] })
        );
        assert_eq!(
            validate(r#"{"S3DeleteObjectTagging": {}}"#)
                .unwrap()
                .operation,
            OperationSpec::DeleteTagging
        );
        let cases = [
            (
                r#"{"S3PutObjectTagging": {"TagSet": [{"Key": "", "Value": "v"}]}}"#,
                "Operation.S3PutObjectTagging.TagSet[0].Key",
            ),
            (
                r#"{"S3PutObjectTagging": {"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]}}"#,
                "Operation.S3PutObjectTagging.TagSet[1].Key",
            ),
            (
                r#"{"S3PutObjectTagging": {"TagSet": [{"Key": "a", "Value": "1&2"}]}}"#,
                "Operation.S3PutObjectTagging.TagSet[0].Value",
            ),
            (
                r#"{"S3PutObjectTagging": {"TagSet": [{"Key": "a", "Valu": "1"}]}}"#,
                "Operation.S3PutObjectTagging.TagSet[0].Valu",
            ),
            (
                r#"{"S3PutObjectTagging": {"Tags": []}}"#,
                "Operation.S3PutObjectTagging.Tags",
            ),
            (
                r#"{"S3DeleteObjectTagging": {"TagSet": []}}"#,
                "Operation.S3DeleteObjectTagging.TagSet",
            ),
        ];
        for (operation, field) in cases {
            assert_eq!(refused(operation).field, field, "{operation}");
        }
        let eleven: Vec<String> = (0..11)
            .map(|i| format!(r#"{{"Key": "k{i}", "Value": "v"}}"#))
            .collect();
        let err = refused(&format!(
            r#"{{"S3PutObjectTagging": {{"TagSet": [{}]}}}}"#,
            eleven.join(",")
        ));
        assert_eq!(err.field, "Operation.S3PutObjectTagging.TagSet");
        assert!(err.message.contains("at most 10"), "{err}");
    }

    #[test]
    fn acl_operations_validate() {
        let spec = validate(
            r#"{"S3PutObjectAcl": {"AccessControlPolicy": {"CannedAccessControlList": "public-read"}}}"#,
        )
        .unwrap();
        assert_eq!(
            spec.operation,
            OperationSpec::PutAcl(AclSpec::Canned("public-read".into()))
        );
        let spec = validate(
            r#"{"S3PutObjectAcl": {"AccessControlPolicy": {"AccessControlList": {
                "Owner": {"ID": "owner-id", "DisplayName": "me"},
                "Grants": [{"Grantee": {"TypeIdentifier": "id", "Identifier": "abc", "DisplayName": "friend"}, "Permission": "READ"},
                           {"Grantee": {"TypeIdentifier": "uri", "Identifier": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ_ACP"}]}}}}"#,
        )
        .unwrap();
        let OperationSpec::PutAcl(AclSpec::Grants { owner, headers }) = spec.operation else {
            panic!("not grants")
        };
        assert_eq!(owner.unwrap().id.as_deref(), Some("owner-id"));
        assert_eq!(headers.read.as_deref(), Some("id=\"abc\""));
        assert_eq!(
            headers.read_acp.as_deref(),
            Some("uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"")
        );
        assert_eq!(headers.full_control, None);
        let base = "Operation.S3PutObjectAcl.AccessControlPolicy";
        let cases = [
            (r#"{"S3PutObjectAcl": {}}"#.to_string(), base.to_string()),
            (
                r#"{"S3PutObjectAcl": {"AccessControlPolicy": {"CannedAccessControlList": "everyone"}}}"#.into(),
                format!("{base}.CannedAccessControlList"),
            ),
            (
                r#"{"S3PutObjectAcl": {"AccessControlPolicy": {"CannedAccessControlList": "private", "AccessControlList": {"Grants": []}}}}"#.into(),
                format!("{base}.AccessControlList"),
            ),
            (
                r#"{"S3PutObjectAcl": {"AccessControlPolicy": {"AccessControlList": {"Grants": [{"Grantee": {"TypeIdentifier": "id", "Identifier": "a"}, "Permission": "OWN"}]}}}}"#.into(),
                format!("{base}.AccessControlList.Grants[0].Permission"),
            ),
            (
                r#"{"S3PutObjectAcl": {"AccessControlPolicy": {"AccessControlList": {"Grants": [{"Grantee": {"TypeIdentifier": "arn", "Identifier": "a"}, "Permission": "READ"}]}}}}"#.into(),
                format!("{base}.AccessControlList.Grants[0].Grantee.TypeIdentifier"),
            ),
            (
                r#"{"S3PutObjectAcl": {"AccessControlPolicy": {"AccessControlList": {"Grants": [{"Grantee": {"TypeIdentifier": "id"}, "Permission": "READ"}]}}}}"#.into(),
                format!("{base}.AccessControlList.Grants[0].Grantee.Identifier"),
            ),
            (
                r#"{"S3PutObjectAcl": {"AccessControlPolicy": {"AccessControlList": {"Owner": {"Id": "x"}}}}}"#.into(),
                format!("{base}.AccessControlList.Owner.Id"),
            ),
            (
                r#"{"S3PutObjectAcl": {"AccessControlPolicy": {"AccessControlList": {"Owner": {"ID": "x"}, "Grants": []}}}}"#.into(),
                format!("{base}.AccessControlList.Grants"),
            ),
        ];
        for (operation, field) in cases {
            assert_eq!(refused(&operation).field, field, "{operation}");
        }
    }

    #[test]
    fn restore_lock_and_checksum_operations_validate() {
        assert_eq!(
            validate(
                r#"{"S3InitiateRestoreObject": {"ExpirationInDays": 3, "GlacierJobTier": "BULK"}}"#
            )
            .unwrap()
            .operation,
            OperationSpec::InitiateRestore(RestoreSpec {
                expiration_days: Some(3),
                tier: Some(GlacierTier::Bulk)
            })
        );
        assert_eq!(
            validate(r#"{"S3PutObjectLegalHold": {"LegalHold": {"Status": "ON"}}}"#)
                .unwrap()
                .operation,
            OperationSpec::PutLegalHold(LegalHoldSpec { on: true })
        );
        assert_eq!(
            validate(r#"{"S3PutObjectRetention": {"BypassGovernanceRetention": true, "Retention": {"Mode": "GOVERNANCE", "RetainUntilDate": "2099-01-01T00:00:00Z"}}}"#)
                .unwrap()
                .operation,
            OperationSpec::PutRetention(RetentionSpec {
                retention: Some((RetentionMode::Governance, "2099-01-01T00:00:00Z".into())),
                bypass_governance: true
            })
        );
        assert_eq!(
            validate(r#"{"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "SHA256", "ChecksumType": "COMPOSITE"}}"#)
                .unwrap()
                .operation,
            OperationSpec::ComputeChecksum(ChecksumSpec {
                algorithm: ChecksumAlgorithm::Sha256,
                checksum_type: ChecksumType::Composite
            })
        );
        let cases = [
            (
                r#"{"S3InitiateRestoreObject": {"ExpirationInDays": 0}}"#,
                "Operation.S3InitiateRestoreObject.ExpirationInDays",
            ),
            (
                r#"{"S3InitiateRestoreObject": {"GlacierJobTier": "EXPEDITED"}}"#,
                "Operation.S3InitiateRestoreObject.GlacierJobTier",
            ),
            (
                r#"{"S3InitiateRestoreObject": {"Tier": "BULK"}}"#,
                "Operation.S3InitiateRestoreObject.Tier",
            ),
            (
                r#"{"S3PutObjectLegalHold": {}}"#,
                "Operation.S3PutObjectLegalHold.LegalHold",
            ),
            (
                r#"{"S3PutObjectLegalHold": {"LegalHold": {"Status": "on"}}}"#,
                "Operation.S3PutObjectLegalHold.LegalHold.Status",
            ),
            (
                r#"{"S3PutObjectRetention": {"Retention": {"Mode": "GOVERNANCE"}}}"#,
                "Operation.S3PutObjectRetention.Retention.RetainUntilDate",
            ),
            (
                r#"{"S3PutObjectRetention": {"Retention": {"Mode": "LEGAL", "RetainUntilDate": "2099-01-01T00:00:00Z"}}}"#,
                "Operation.S3PutObjectRetention.Retention.Mode",
            ),
            (
                r#"{"S3PutObjectRetention": {"Retention": {"Mode": "COMPLIANCE", "RetainUntilDate": "2001-01-01T00:00:00Z"}}}"#,
                "Operation.S3PutObjectRetention.Retention.RetainUntilDate",
            ),
            (
                r#"{"S3PutObjectRetention": {"Retention": {"Mode": "COMPLIANCE", "RetainUntilDate": "next year"}}}"#,
                "Operation.S3PutObjectRetention.Retention.RetainUntilDate",
            ),
            (
                r#"{"S3ComputeObjectChecksum": {}}"#,
                "Operation.S3ComputeObjectChecksum.ChecksumAlgorithm",
            ),
            (
                r#"{"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "XXHASH64"}}"#,
                "Operation.S3ComputeObjectChecksum.ChecksumAlgorithm",
            ),
            (
                r#"{"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "CRC64NVME", "ChecksumType": "COMPOSITE"}}"#,
                "Operation.S3ComputeObjectChecksum.ChecksumType",
            ),
        ];
        for (operation, field) in cases {
            assert_eq!(refused(operation).field, field, "{operation}");
        }
    }

    #[test]
    fn replicate_and_update_encryption_are_refused_saying_why() {
        for (operation, name) in [
            (r#"{"S3ReplicateObject": {}}"#, "S3ReplicateObject"),
            (
                r#"{"S3UpdateObjectEncryption": {"ObjectEncryption": {"SSEKMS": {"KMSKeyArn": "arn:aws:kms:us-east-1:123456789012:key/k"}}}}"#,
                "S3UpdateObjectEncryption",
            ),
        ] {
            let err = refused(operation);
            assert_eq!(err.field, format!("Operation.{name}"));
            assert!(err.message.contains("moto"), "{err}");
        }
    }

    #[test]
    fn delete_jobs_are_guarded_and_always_confirmed() {
        let spec = validate(r#"{"Batchops": {"Delete": {}}}"#).unwrap();
        assert_eq!(
            spec.operation,
            OperationSpec::Delete(DeleteSpec {
                max_deletes: Some(1_000)
            })
        );
        // ConfirmationRequired false does not skip the confirmation of a delete.
        assert!(spec.confirmation_required);
        assert!(spec.operation.needs_counted_confirmation());
        let limit = spec.operation.task_limit().unwrap();
        assert_eq!((limit.max, limit.code), (1_000, "MaxDeletesExceeded"));
        let spec = validate(r#"{"Batchops": {"Delete": {"MaxDeletes": "unlimited"}}}"#).unwrap();
        assert_eq!(spec.operation.task_limit(), None);
        let spec = validate(r#"{"Batchops": {"Delete": {"MaxDeletes": 5}}}"#).unwrap();
        assert_eq!(spec.operation.task_limit().unwrap().max, 5);
        for (operation, field) in [
            (r#"{"Batchops": {}}"#, "Operation.Batchops"),
            (
                r#"{"Batchops": {"Delete": {"MaxDeletes": "lots"}}}"#,
                "Operation.Batchops.Delete.MaxDeletes",
            ),
            (
                r#"{"Batchops": {"Delete": {}}, "S3DeleteObjectTagging": {}}"#,
                "Operation.Batchops",
            ),
            (r#"{"Batchops": {"Purge": {}}}"#, "Operation.Batchops.Purge"),
        ] {
            assert_eq!(refused(operation).field, field, "{operation}");
        }
        // Other operations keep the request's choice.
        let spec = validate(r#"{"S3DeleteObjectTagging": {}}"#).unwrap();
        assert!(!spec.confirmation_required);
        assert!(!spec.operation.needs_counted_confirmation());
    }
}
