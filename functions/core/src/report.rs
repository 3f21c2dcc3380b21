//! Completion reports in S3's `Report_CSV_20180820` layout:
//! `<prefix>/job-<id>/manifest.json` listing headerless CSV shards under `job-<id>/results/`.
//!
//! Rows are written as S3 writes them: `Bucket,Key,VersionId,TaskStatus,<HTTP status>,<error
//! code>,ResultMessage` (S3's own rows put the HTTP status before the error code, whatever the
//! schema string says), keys URL-encoded.

use crate::request::{ReportScope, ReportTarget, REPORT_FORMAT};
use serde::{Deserialize, Serialize};

pub const REPORT_SCHEMA: &str =
    "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Succeeded,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
        }
    }
}

/// The result of one task, as it appears in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    pub bucket: String,
    pub key_encoded: String,
    pub version_id: Option<String>,
    pub status: TaskStatus,
    pub http_status: u16,
    pub error_code: Option<String>,
    pub message: String,
    /// Bytes written to the destination (0 for failures).
    pub bytes: u64,
    /// Version ID of the copy written (versioned destinations); backups record it.
    pub dest_version: Option<String>,
}

impl TaskOutcome {
    pub fn in_scope(&self, scope: ReportScope) -> bool {
        scope == ReportScope::AllTasks || self.status == TaskStatus::Failed
    }

    pub fn write_row(&self, out: &mut String) {
        push_csv_field(out, &self.bucket);
        out.push(',');
        push_csv_field(out, &self.key_encoded);
        out.push(',');
        push_csv_field(out, self.version_id.as_deref().unwrap_or(""));
        out.push(',');
        out.push_str(self.status.as_str());
        out.push(',');
        out.push_str(&self.http_status.to_string());
        out.push(',');
        push_csv_field(out, self.error_code.as_deref().unwrap_or(""));
        out.push(',');
        push_csv_field(out, &self.message);
        out.push('\n');
    }
}

fn push_csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// Parses a report row back (for tests, audits and the CLI); the inverse of [`TaskOutcome::write_row`].
pub fn parse_row(line: &str) -> Option<ReportRow> {
    let mut fields = Vec::new();
    crate::manifest::split_csv_record(line, &mut fields)?;
    if fields.len() != 7 {
        return None;
    }
    let mut it = fields.into_iter();
    let mut next = || it.next().unwrap_or_default();
    Some(ReportRow {
        bucket: next(),
        key_encoded: next(),
        version_id: next(),
        task_status: next(),
        http_status: next(),
        error_code: next(),
        message: next(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub bucket: String,
    pub key_encoded: String,
    pub version_id: String,
    pub task_status: String,
    pub http_status: String,
    pub error_code: String,
    pub message: String,
}

/// `<prefix>/job-<id>` (no prefix: `job-<id>`).
pub fn report_root(target: &ReportTarget, job_id: &str) -> String {
    if target.prefix.is_empty() {
        format!("job-{job_id}")
    } else {
        format!("{}/job-{job_id}", target.prefix)
    }
}

pub fn report_manifest_key(target: &ReportTarget, job_id: &str) -> String {
    format!("{}/manifest.json", report_root(target, job_id))
}

/// One result shard per committed task range and status; `attempt` keeps racing attempts apart.
pub fn result_shard_key(
    target: &ReportTarget,
    job_id: &str,
    seq: u64,
    first_task: u64,
    attempt: &str,
    status: TaskStatus,
) -> String {
    format!(
        "{}/results/{seq:010}-{first_task:07}-{attempt}-{}.csv",
        report_root(target, job_id),
        status.as_str()
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReportResult {
    pub task_execution_status: TaskStatus,
    pub bucket: String,
    #[serde(rename = "MD5Checksum")]
    pub md5_checksum: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReportManifest {
    pub format: String,
    pub report_creation_date: String,
    pub results: Vec<ReportResult>,
    pub report_schema: String,
}

impl ReportManifest {
    pub fn new(created: String, mut results: Vec<ReportResult>) -> Self {
        // Succeeded shards first, then failed, each in key order: the same input always gives
        // the same document.
        results.sort_by(|a, b| {
            (a.task_execution_status, &a.key).cmp(&(b.task_execution_status, &b.key))
        });
        ReportManifest {
            format: REPORT_FORMAT.to_string(),
            report_creation_date: created,
            results,
            report_schema: REPORT_SCHEMA.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: TaskStatus) -> TaskOutcome {
        TaskOutcome {
            bucket: "src".into(),
            key_encoded: "a%20b".into(),
            version_id: None,
            status,
            http_status: if status == TaskStatus::Succeeded {
                200
            } else {
                404
            },
            error_code: (status == TaskStatus::Failed).then(|| "NoSuchKey".to_string()),
            message: if status == TaskStatus::Succeeded {
                "Successful".into()
            } else {
                "Not Found, \"k\"".into()
            },
            bytes: 0,
            dest_version: None,
        }
    }

    #[test]
    fn rows_match_s3_layout() {
        let mut out = String::new();
        outcome(TaskStatus::Succeeded).write_row(&mut out);
        outcome(TaskStatus::Failed).write_row(&mut out);
        assert_eq!(
            out,
            "src,a%20b,,succeeded,200,,Successful\nsrc,a%20b,,failed,404,NoSuchKey,\"Not Found, \"\"k\"\"\"\n"
        );
        let row = parse_row(out.lines().nth(1).unwrap()).unwrap();
        assert_eq!(row.message, "Not Found, \"k\"");
        assert_eq!(row.error_code, "NoSuchKey");
    }

    #[test]
    fn scope_filters_successes() {
        assert!(!outcome(TaskStatus::Succeeded).in_scope(ReportScope::FailedTasksOnly));
        assert!(outcome(TaskStatus::Failed).in_scope(ReportScope::FailedTasksOnly));
        assert!(outcome(TaskStatus::Succeeded).in_scope(ReportScope::AllTasks));
    }

    #[test]
    fn keys_follow_s3_layout() {
        let target = ReportTarget {
            bucket: "r".into(),
            prefix: "batch".into(),
            scope: ReportScope::AllTasks,
        };
        assert_eq!(
            report_manifest_key(&target, "j1"),
            "batch/job-j1/manifest.json"
        );
        assert_eq!(
            result_shard_key(&target, "j1", 3, 0, "ab", TaskStatus::Failed),
            "batch/job-j1/results/0000000003-0000000-ab-failed.csv"
        );
        let root = ReportTarget {
            prefix: String::new(),
            ..target
        };
        assert_eq!(report_manifest_key(&root, "j1"), "job-j1/manifest.json");
    }

    #[test]
    fn manifest_json_has_s3_field_names() {
        let manifest = ReportManifest::new(
            "2026-01-01T00:00:00Z".into(),
            vec![ReportResult {
                task_execution_status: TaskStatus::Failed,
                bucket: "r".into(),
                md5_checksum: "00".into(),
                key: "job-j/results/x.csv".into(),
            }],
        );
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["Format"], "Report_CSV_20180820");
        assert_eq!(json["ReportSchema"], REPORT_SCHEMA);
        assert_eq!(json["Results"][0]["TaskExecutionStatus"], "failed");
        assert_eq!(json["Results"][0]["MD5Checksum"], "00");
    }
}
