//! The job record kept in DynamoDB, and the pure state transitions on it. Every change is made
//! on a copy read with its `revision` and written back conditionally, so two components racing
//! on one job cannot both win.

use crate::plan::PlanProgress;
use crate::request::{CreateJobRequest, JobSpec};
use crate::status::JobStatus;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FailureReason {
    pub failure_code: String,
    pub failure_reason: String,
}

/// Where planning stands; written at each checkpoint so a new planner invocation resumes exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanCheckpoint {
    pub progress: PlanProgress,
    /// ETag of the manifest as it was first read; every later read must see the same object.
    pub manifest_etag: Option<String>,
    pub finished: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub status: JobStatus,
    /// The CreateJob document as given (echoed by DescribeJob).
    pub request: CreateJobRequest,
    pub spec: JobSpec,
    pub priority: i64,
    pub created_at: String,
    pub updated_at: String,
    pub active_at: Option<String>,
    pub suspended_at: Option<String>,
    pub terminated_at: Option<String>,
    pub status_update_reason: Option<String>,
    pub failure_reasons: Vec<FailureReason>,
    pub plan: PlanCheckpoint,
    /// Chunks whose pointers have been sent to the work queue.
    pub dispatched_chunks: u64,
    /// Whether the completion report has been written (or was not wanted).
    pub report_written: bool,
    /// Things the owner should know that did not stop the job (e.g. an unversioned backup source).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Optimistic-locking counter: bumped on every write.
    #[serde(default)]
    pub revision: u64,
    /// The terminal status event has been sent (see `BATCHOPS_EVENT_BUS`).
    #[serde(default)]
    pub status_event_sent: bool,
    /// Consecutive transient errors of the planner or finalizer on this job (retried with
    /// backoff until a bound, then the job fails).
    #[serde(
        default,
        skip_serializing_if = "crate::recovery::ErrorStreak::is_empty"
    )]
    pub error_streak: crate::recovery::ErrorStreak,
    /// The job's tags once PutJobTagging or DeleteJobTagging changed them; until then the
    /// CreateJob document's `Tags` (see [`JobRecord::tags`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<crate::request::Tag>>,
    /// The manifest a ManifestGenerator wrote (EnableManifestOutput), once planning wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_manifest: Option<GeneratedManifestDescriptor>,
    /// The status as last read from or written to the store (not itself stored): tells the
    /// store whether a write moves the job in or out of the working statuses.
    #[serde(skip)]
    pub stored_status: Option<JobStatus>,
}

/// S3 Control's `GeneratedManifestDescriptor`: where the generated manifest's manifest.json is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GeneratedManifestDescriptor {
    pub format: String,
    pub location: crate::request::ManifestLocation,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("job {job_id} cannot go from {from} to {to}")]
pub struct TransitionError {
    pub job_id: String,
    pub from: JobStatus,
    pub to: JobStatus,
}

pub fn timestamp(now: OffsetDateTime) -> String {
    now.format(&Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

pub fn parse_timestamp(value: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc3339).ok()
}

impl JobRecord {
    pub fn new(
        job_id: String,
        request: CreateJobRequest,
        spec: JobSpec,
        now: OffsetDateTime,
    ) -> Self {
        let created = timestamp(now);
        JobRecord {
            job_id,
            status: JobStatus::New,
            priority: spec.priority,
            request,
            spec,
            created_at: created.clone(),
            updated_at: created,
            active_at: None,
            suspended_at: None,
            terminated_at: None,
            status_update_reason: None,
            failure_reasons: Vec::new(),
            plan: PlanCheckpoint::default(),
            dispatched_chunks: 0,
            report_written: false,
            warnings: Vec::new(),
            revision: 0,
            status_event_sent: false,
            error_streak: Default::default(),
            tags: None,
            generated_manifest: None,
            stored_status: None,
        }
    }

    /// Moves the job to `to`, stamping the times DescribeJob reports.
    pub fn transition(
        &mut self,
        to: JobStatus,
        now: OffsetDateTime,
        reason: &str,
    ) -> Result<(), TransitionError> {
        if !self.status.can_become(to) {
            return Err(TransitionError {
                job_id: self.job_id.clone(),
                from: self.status,
                to,
            });
        }
        let stamp = timestamp(now);
        match to {
            JobStatus::Active if self.active_at.is_none() => self.active_at = Some(stamp.clone()),
            JobStatus::Suspended => self.suspended_at = Some(stamp.clone()),
            s if s.is_terminal() => self.terminated_at = Some(stamp.clone()),
            _ => {}
        }
        self.status = to;
        self.status_update_reason = Some(reason.to_string());
        self.updated_at = stamp;
        Ok(())
    }

    /// Fails the job with a reason (from any non-terminal state that allows it, via Failing when
    /// tasks may be in flight).
    pub fn fail(
        &mut self,
        code: &str,
        reason: String,
        now: OffsetDateTime,
    ) -> Result<(), TransitionError> {
        let to = if self.status.can_become(JobStatus::Failed) {
            JobStatus::Failed
        } else {
            JobStatus::Failing
        };
        self.failure_reasons.push(FailureReason {
            failure_code: code.to_string(),
            failure_reason: reason,
        });
        self.transition(to, now, "Job failed")
    }

    /// GetJobTagging: the tags last put, or those the job was created with.
    pub fn tags(&self) -> &[crate::request::Tag] {
        self.tags.as_deref().unwrap_or(&self.request.tags)
    }

    /// Planning finished: the totals are known.
    pub fn total_tasks(&self) -> Option<u64> {
        self.plan.finished.then_some(self.plan.progress.tasks)
    }

    pub fn total_chunks(&self) -> Option<u64> {
        self.plan.finished.then_some(self.plan.progress.next_seq)
    }

    /// Seconds spent since the job became Active, until it ended (or `now`).
    pub fn elapsed_active_seconds(&self, now: OffsetDateTime) -> u64 {
        let Some(start) = self.active_at.as_deref().and_then(parse_timestamp) else {
            return 0;
        };
        let end = self
            .terminated_at
            .as_deref()
            .and_then(parse_timestamp)
            .unwrap_or(now);
        (end - start).whole_seconds().max(0) as u64
    }

    /// What `UpdateJobStatus` asks for; S3 accepts only Ready (confirm) and Cancelled.
    /// `confirmed_tasks`: the task count the person confirming typed back; a job whose operation
    /// destroys data (a delete) is confirmed only with its exact task count, so no script or
    /// habit confirms it by accident.
    pub fn request_status(
        &mut self,
        requested: JobStatus,
        reason: Option<&str>,
        confirmed_tasks: Option<u64>,
        now: OffsetDateTime,
    ) -> Result<(), StatusRequestError> {
        let target = match requested {
            JobStatus::Ready => {
                if self.status != JobStatus::Suspended {
                    return Err(StatusRequestError::NotSuspended(self.status));
                }
                if self.spec.operation.needs_counted_confirmation() {
                    let total = self.plan.progress.tasks;
                    if confirmed_tasks != Some(total) {
                        return Err(StatusRequestError::CountNotConfirmed {
                            operation: self.spec.operation.name(),
                            total,
                            given: confirmed_tasks,
                        });
                    }
                }
                JobStatus::Ready
            }
            JobStatus::Cancelled => {
                if self.status.is_terminal() || self.status == JobStatus::Cancelling {
                    return Err(StatusRequestError::AlreadyEnding(self.status));
                }
                JobStatus::Cancelling
            }
            other => return Err(StatusRequestError::NotRequestable(other)),
        };
        self.transition(target, now, reason.unwrap_or("Requested by user"))
            .map_err(|e| StatusRequestError::Transition(e.to_string()))
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StatusRequestError {
    #[error("RequestedJobStatus must be Ready or Cancelled, got {0}")]
    NotRequestable(JobStatus),
    #[error("only a Suspended job can be confirmed (set Ready); this job is {0}")]
    NotSuspended(JobStatus),
    #[error("the job is already {0}")]
    AlreadyEnding(JobStatus),
    #[error("this {operation} job deletes data: confirm it with its task count, {total} (CLI: `job confirm JOB_ID --yes-delete {total}`; HTTP: `&confirmTaskCount={total}`){}", given.map(|n| format!("; {n} was given")).unwrap_or_default())]
    CountNotConfirmed {
        operation: &'static str,
        total: u64,
        given: Option<u64>,
    },
    #[error("{0}")]
    Transition(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::CreateJobRequest;
    use time::macros::datetime;

    pub fn record() -> JobRecord {
        let doc = r#"{"Operation": {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::dest"}},
            "Report": {"Enabled": false}, "Priority": 5, "ConfirmationRequired": true,
            "ClientRequestToken": "t1", "RoleArn": "arn:aws:iam::123456789012:role/batch",
            "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket","Key"]},
                         "Location": {"ObjectArn": "arn:aws:s3:::b/m.csv", "ETag": "e"}}}"#;
        let request = CreateJobRequest::from_json(doc).unwrap();
        let spec = request.validate().unwrap();
        JobRecord::new("j1".into(), request, spec, datetime!(2026-01-01 0:00 UTC))
    }

    #[test]
    fn confirm_only_from_suspended() {
        let mut job = record();
        let now = datetime!(2026-01-01 0:01 UTC);
        assert_eq!(
            job.request_status(JobStatus::Ready, None, None, now),
            Err(StatusRequestError::NotSuspended(JobStatus::New))
        );
        job.transition(JobStatus::Preparing, now, "").unwrap();
        job.transition(JobStatus::Suspended, now, "").unwrap();
        job.request_status(JobStatus::Ready, None, None, now)
            .unwrap();
        assert_eq!(job.status, JobStatus::Ready);
        assert!(job.suspended_at.is_some());
    }

    #[test]
    fn a_delete_job_is_confirmed_only_with_its_task_count() {
        let doc = r#"{"Operation": {"Batchops": {"Delete": {"MaxDeletes": 10}}},
            "Report": {"Enabled": false}, "Priority": 5, "ConfirmationRequired": false,
            "ClientRequestToken": "t1", "RoleArn": "arn:aws:iam::123456789012:role/batch",
            "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket","Key","VersionId"]},
                         "Location": {"ObjectArn": "arn:aws:s3:::b/m.csv", "ETag": "e"}}}"#;
        let request = CreateJobRequest::from_json(doc).unwrap();
        let spec = request.validate().unwrap();
        let mut job = JobRecord::new("j2".into(), request, spec, datetime!(2026-01-01 0:00 UTC));
        let now = datetime!(2026-01-01 0:01 UTC);
        job.transition(JobStatus::Preparing, now, "").unwrap();
        job.plan.progress.tasks = 42;
        job.plan.finished = true;
        job.transition(JobStatus::Suspended, now, "").unwrap();
        for given in [None, Some(41), Some(0)] {
            let err = job
                .request_status(JobStatus::Ready, None, given, now)
                .unwrap_err();
            assert!(matches!(
                err,
                StatusRequestError::CountNotConfirmed { total: 42, .. }
            ));
            assert!(err.to_string().contains("--yes-delete 42"), "{err}");
            assert_eq!(job.status, JobStatus::Suspended);
        }
        job.request_status(JobStatus::Ready, None, Some(42), now)
            .unwrap();
        assert_eq!(job.status, JobStatus::Ready);
    }

    #[test]
    fn cancel_goes_through_cancelling_and_terminal_is_final() {
        let mut job = record();
        let now = datetime!(2026-01-01 0:01 UTC);
        job.request_status(JobStatus::Cancelled, Some("stop"), None, now)
            .unwrap();
        assert_eq!(job.status, JobStatus::Cancelling);
        assert!(job
            .request_status(JobStatus::Cancelled, None, None, now)
            .is_err());
        job.transition(JobStatus::Cancelled, now, "done").unwrap();
        assert!(job.terminated_at.is_some());
        assert!(job.transition(JobStatus::Active, now, "").is_err());
        assert!(job
            .request_status(JobStatus::Active, None, None, now)
            .is_err());
    }

    #[test]
    fn elapsed_active_time_counts_from_active_to_termination() {
        let mut job = record();
        job.transition(JobStatus::Preparing, datetime!(2026-01-01 0:00 UTC), "")
            .unwrap();
        job.transition(JobStatus::Active, datetime!(2026-01-01 0:00:10 UTC), "")
            .unwrap();
        assert_eq!(
            job.elapsed_active_seconds(datetime!(2026-01-01 0:00:40 UTC)),
            30
        );
        job.transition(JobStatus::Completing, datetime!(2026-01-01 0:01 UTC), "")
            .unwrap();
        job.transition(JobStatus::Complete, datetime!(2026-01-01 0:01:10 UTC), "")
            .unwrap();
        assert_eq!(
            job.elapsed_active_seconds(datetime!(2026-01-01 5:00 UTC)),
            60
        );
    }

    #[test]
    fn fail_from_preparing_is_immediate_from_active_goes_through_failing() {
        let now = datetime!(2026-01-01 0:00 UTC);
        let mut job = record();
        job.transition(JobStatus::Preparing, now, "").unwrap();
        job.fail("ManifestMismatch", "etag".into(), now).unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        let mut job = record();
        job.transition(JobStatus::Preparing, now, "").unwrap();
        job.transition(JobStatus::Active, now, "").unwrap();
        job.fail("TaskFailureThresholdExceeded", "many".into(), now)
            .unwrap();
        assert_eq!(job.status, JobStatus::Failing);
        assert_eq!(job.failure_reasons.len(), 1);
    }
}
