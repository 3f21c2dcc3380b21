//! DescribeJob / ListJobs response shapes (S3 Control `JobDescriptor` and `JobListDescriptor`),
//! with batchops' extensions as extra fields.

use crate::counts::Counters;
use crate::job::{FailureReason, GeneratedManifestDescriptor, JobRecord};
use crate::request::{Manifest, ManifestGenerator, Operation, Report};
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Timers {
    pub elapsed_time_in_active_seconds: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ProgressSummary {
    pub total_number_of_tasks: u64,
    pub number_of_tasks_succeeded: u64,
    pub number_of_tasks_failed: u64,
    pub timers: Timers,
    /// batchops extension: bytes written to destinations.
    pub number_of_bytes_copied: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct JobDescriptor {
    pub job_id: String,
    pub job_arn: String,
    pub status: String,
    pub confirmation_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub operation: Operation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    pub report: Report,
    pub priority: i64,
    pub progress_summary: ProgressSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_update_reason: Option<String>,
    pub failure_reasons: Vec<FailureReason>,
    pub creation_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_generator: Option<ManifestGenerator>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_manifest_descriptor: Option<GeneratedManifestDescriptor>,
    /// batchops extension: things the owner should know that did not stop the job.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct JobListDescriptor {
    pub job_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub operation: String,
    pub priority: i64,
    pub status: String,
    pub creation_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_date: Option<String>,
    pub progress_summary: ProgressSummary,
}

pub fn progress(job: &JobRecord, counters: &Counters, now: OffsetDateTime) -> ProgressSummary {
    ProgressSummary {
        // Until planning ends the total is what has been planned so far, as S3 shows it.
        total_number_of_tasks: job.plan.progress.tasks,
        number_of_tasks_succeeded: counters.succeeded,
        number_of_tasks_failed: counters.failed,
        timers: Timers {
            elapsed_time_in_active_seconds: job.elapsed_active_seconds(now),
        },
        number_of_bytes_copied: counters.bytes,
    }
}

pub fn describe(
    job: &JobRecord,
    counters: &Counters,
    region: &str,
    account: &str,
    now: OffsetDateTime,
) -> JobDescriptor {
    let account = job.request.account_id.as_deref().unwrap_or(account);
    JobDescriptor {
        job_id: job.job_id.clone(),
        job_arn: format!("arn:aws:s3:{region}:{account}:job/{}", job.job_id),
        status: job.status.to_string(),
        confirmation_required: job.request.confirmation_required,
        description: job.request.description.clone(),
        operation: job.request.operation.clone(),
        manifest: job.request.manifest.clone(),
        report: job.request.report.clone(),
        priority: job.priority,
        progress_summary: progress(job, counters, now),
        status_update_reason: job.status_update_reason.clone(),
        failure_reasons: job.failure_reasons.clone(),
        creation_time: job.created_at.clone(),
        termination_date: job.terminated_at.clone(),
        role_arn: job.request.role_arn.clone(),
        suspended_date: job.suspended_at.clone(),
        suspended_cause: (job.status == crate::JobStatus::Suspended)
            .then(|| "AwaitingConfirmation".to_string()),
        manifest_generator: job.request.manifest_generator.clone(),
        generated_manifest_descriptor: job.generated_manifest.clone(),
        warnings: job.warnings.clone(),
    }
}

pub fn list_entry(job: &JobRecord, counters: &Counters, now: OffsetDateTime) -> JobListDescriptor {
    JobListDescriptor {
        job_id: job.job_id.clone(),
        description: job.request.description.clone(),
        operation: job.spec.operation.name().to_string(),
        priority: job.priority,
        status: job.status.to_string(),
        creation_time: job.created_at.clone(),
        termination_date: job.terminated_at.clone(),
        progress_summary: progress(job, counters, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::CreateJobRequest;
    use time::macros::datetime;

    #[test]
    fn describe_uses_the_job_descriptor_field_names() {
        let doc = r#"{"Operation": {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::dest"}},
            "Report": {"Enabled": false}, "Priority": 5, "Description": "d",
            "ClientRequestToken": "t1", "RoleArn": "arn:aws:iam::123456789012:role/batch",
            "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket","Key"]},
                         "Location": {"ObjectArn": "arn:aws:s3:::b/m.csv", "ETag": "e"}}}"#;
        let request = CreateJobRequest::from_json(doc).unwrap();
        let spec = request.validate().unwrap();
        let mut job = JobRecord::new("j1".into(), request, spec, datetime!(2026-01-01 0:00 UTC));
        job.plan.progress.tasks = 10;
        let counters = Counters {
            succeeded: 7,
            failed: 2,
            bytes: 99,
            ranges: 1,
        };
        let described = |job: &JobRecord| {
            serde_json::to_value(describe(
                job,
                &counters,
                "us-east-1",
                "123",
                datetime!(2026-01-01 0:01 UTC),
            ))
            .unwrap()
        };
        let json = described(&job);
        assert_eq!(json["JobId"], "j1");
        assert_eq!(json["JobArn"], "arn:aws:s3:us-east-1:123:job/j1");
        assert_eq!(json["Status"], "New");
        assert_eq!(
            json["Operation"]["S3PutObjectCopy"]["TargetResource"],
            "arn:aws:s3:::dest"
        );
        assert_eq!(json["Manifest"]["Location"]["ETag"], "e");
        let progress = &json["ProgressSummary"];
        assert_eq!(progress["TotalNumberOfTasks"], 10);
        assert_eq!(progress["NumberOfTasksSucceeded"], 7);
        assert_eq!(progress["NumberOfTasksFailed"], 2);
        assert_eq!(progress["Timers"]["ElapsedTimeInActiveSeconds"], 0);
        assert_eq!(json["CreationTime"], "2026-01-01T00:00:00Z");
        assert!(json.get("TerminationDate").is_none());
        assert!(json.get("ManifestGenerator").is_none());
        assert!(json.get("GeneratedManifestDescriptor").is_none());
        job.generated_manifest = Some(GeneratedManifestDescriptor {
            format: "S3InventoryReport_CSV_20211130".into(),
            location: crate::request::ManifestLocation {
                object_arn: "arn:aws:s3:::out/job-j1/manifest.json".into(),
                object_version_id: None,
                etag: Some("\"abc\"".into()),
            },
        });
        let json = described(&job);
        let location = &json["GeneratedManifestDescriptor"]["Location"];
        assert_eq!(
            json["GeneratedManifestDescriptor"]["Format"],
            "S3InventoryReport_CSV_20211130"
        );
        assert_eq!(
            location["ObjectArn"],
            "arn:aws:s3:::out/job-j1/manifest.json"
        );
        assert_eq!(location["ETag"], "\"abc\"");
        let entry =
            serde_json::to_value(list_entry(&job, &counters, datetime!(2026-01-01 0:01 UTC)))
                .unwrap();
        assert_eq!(entry["Operation"], "S3PutObjectCopy");
        assert_eq!(entry["Priority"], 5);
    }
}
