//! The job API: CreateJob, DescribeJob, ListJobs, UpdateJobStatus, UpdateJobPriority and
//! Put/Get/DeleteJobTagging. The CLI and any HTTP front end call these.

use crate::error::{Error, Result};
use crate::store::{Created, JobsCursor};
use crate::{now, App};
use batchops_core::describe::{describe, list_entry, JobDescriptor, JobListDescriptor};
use batchops_core::job::StatusRequestError;
use batchops_core::request::{validate_job_tags, Tag};
use batchops_core::{CreateJobRequest, JobRecord, JobStatus, RequestError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedJob {
    pub job_id: String,
    /// False when the ClientRequestToken had already created this job.
    pub created: bool,
}

pub async fn create_job(app: &App, request: CreateJobRequest) -> Result<CreatedJob> {
    let mut spec = request.validate()?;
    // Checked with the job's role, as the job will read and write: the role session names the
    // job ID chosen now.
    let job_id = uuid::Uuid::new_v4().to_string();
    // A role STS refuses is named as such, not as an unreadable manifest or bucket.
    if let Some((_, reason)) = app
        .data
        .refused_role(&job_id, request.role_arn.as_deref())
        .await?
    {
        return Err(RequestError::new("RoleArn", reason).into());
    }
    let clients = app
        .data
        .for_role(&job_id, request.role_arn.as_deref(), &spec.expected_owners);
    // Buckets the request names an owner for: refused now when owned by another account.
    crate::objects::check_expected_owners(&clients, &spec.expected_owners)
        .await
        .map_err(|(field, why)| RequestError::new(field, why))?;
    // The manifest must exist now; its ETag is recorded so a later change fails the job.
    if let Some(manifest) = spec.manifest.object_mut() {
        let head = clients
            .s3(&manifest.bucket)
            .await
            .head_object()
            .bucket(&manifest.bucket)
            .key(&manifest.key)
            .set_version_id(manifest.version_id.clone())
            .send()
            .await
            .map_err(|e| {
                let failure = crate::error::S3Failure::from_sdk(&e);
                let status = failure
                    .status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| failure.message.clone());
                RequestError::new(
                    "Manifest.Location.ObjectArn",
                    format!(
                        "cannot read manifest s3://{}/{} (HTTP {status})",
                        manifest.bucket, manifest.key
                    ),
                )
            })?;
        if manifest.etag.is_none() {
            manifest.etag = head.e_tag().map(str::to_string);
        }
    }
    if let Some(report) = &spec.report {
        clients
            .reachable(&report.bucket)
            .await
            .map_err(|m| RequestError::new("Report.Bucket", m))?;
    }
    create_job_with_id(app, job_id, request, spec).await
}

/// Stores a job whose spec is already built (CreateJob after validation, backup runs and
/// restores), idempotent on the request's ClientRequestToken, and wakes the planner.
pub async fn create_job_with_spec(
    app: &App,
    request: CreateJobRequest,
    spec: batchops_core::JobSpec,
) -> Result<CreatedJob> {
    create_job_with_id(app, uuid::Uuid::new_v4().to_string(), request, spec).await
}

/// [`create_job_with_spec`] under a job ID chosen beforehand (a backup run or restore records
/// its job ID where it claims a policy or a snapshot before the job exists). Idempotent on the
/// request token: an existing job for it is answered instead, under its own ID.
pub async fn create_job_with_id(
    app: &App,
    job_id: String,
    request: CreateJobRequest,
    spec: batchops_core::JobSpec,
) -> Result<CreatedJob> {
    let token = request
        .client_request_token
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let record = JobRecord::new(job_id, request, spec, now());
    let (job_id, created) = app.store.create_job(&record, &token).await?;
    if created == Created::New {
        // Wake the planner now rather than at its next scheduled run; losing this only delays.
        if let Err(err) = app.queues.request_planning(&job_id).await {
            tracing::warn!(job_id, error = %err, "could not wake the planner");
        }
    }
    Ok(CreatedJob {
        job_id,
        created: created == Created::New,
    })
}

pub async fn describe_job(app: &App, job_id: &str) -> Result<JobDescriptor> {
    describe_record(app, &app.store.get_job(job_id).await?).await
}

/// DescribeJob of a job record already read (its counters are read here).
pub async fn describe_record(app: &App, job: &JobRecord) -> Result<JobDescriptor> {
    let counters = app.store.counters(&job.job_id).await?;
    Ok(describe(
        job,
        &counters,
        &app.config.region,
        &app.config.account_id,
        now(),
    ))
}

/// Jobs in the given statuses (all statuses when empty), newest first.
pub async fn list_jobs(app: &App, statuses: &[JobStatus]) -> Result<Vec<JobListDescriptor>> {
    Ok(list_jobs_page(app, statuses, usize::MAX, None).await?.jobs)
}

/// One page of ListJobs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobsPage {
    pub jobs: Vec<JobListDescriptor>,
    /// Pass back for the next page; None on the last one.
    pub next_token: Option<String>,
}

/// ListJobs with MaxResults and NextToken (an opaque position in the newest-first order).
pub async fn list_jobs_page(
    app: &App,
    statuses: &[JobStatus],
    max_results: usize,
    next_token: Option<&str>,
) -> Result<JobsPage> {
    let statuses = if statuses.is_empty() {
        &JobStatus::ALL[..]
    } else {
        statuses
    };
    let after = next_token.map(decode_next_token).transpose()?;
    let max_results = max_results.max(1);
    // One more than asked: whether there is a next page.
    let mut jobs = app
        .store
        .list_jobs_page(statuses, after.as_ref(), max_results.saturating_add(1))
        .await?;
    let more = jobs.len() > max_results;
    jobs.truncate(max_results);
    let next_token = match (more, jobs.last()) {
        (true, Some(last)) => Some(encode_next_token(&JobsCursor::of(last))),
        _ => None,
    };
    let mut entries = Vec::with_capacity(jobs.len());
    for job in jobs {
        let counters = app.store.counters(&job.job_id).await?;
        entries.push(list_entry(&job, &counters, now()));
    }
    Ok(JobsPage {
        jobs: entries,
        next_token,
    })
}

fn encode_next_token(cursor: &JobsCursor) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}\t{}", cursor.created_at, cursor.job_id))
}

fn decode_next_token(token: &str) -> Result<JobsCursor> {
    use base64::Engine;
    let invalid = || {
        Error::Invalid(format!(
            "NextToken: `{token}` is not a token ListJobs returned"
        ))
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (created_at, job_id) = text.split_once('\t').ok_or_else(invalid)?;
    Ok(JobsCursor {
        created_at: created_at.to_string(),
        job_id: job_id.to_string(),
    })
}

/// UpdateJobStatus's answer: `{"JobId", "Status", "StatusUpdateReason"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusChange {
    pub job_id: String,
    pub status: JobStatus,
    pub status_update_reason: Option<String>,
}

/// UpdateJobStatus: `Ready` confirms a Suspended job, `Cancelled` cancels a running one.
/// `confirmed_tasks`: the task count typed back, which confirming a delete job needs.
pub async fn update_job_status(
    app: &App,
    job_id: &str,
    requested: JobStatus,
    reason: Option<&str>,
    confirmed_tasks: Option<u64>,
) -> Result<StatusChange> {
    let updated = app
        .store
        .update_job(job_id, |job| {
            job.request_status(requested, reason, confirmed_tasks, now())
                .map(|_| true)
        })
        .await?;
    let job = updated.map_err(|e: StatusRequestError| Error::State {
        job_id: job_id.to_string(),
        message: e.to_string(),
    })?;
    let wake = match job.status {
        JobStatus::Ready => app.queues.request_planning(job_id).await,
        _ => app.queues.request_finalize(job_id).await,
    };
    if let Err(err) = wake {
        tracing::warn!(job_id, error = %err, "could not wake the next step; the scheduled planner will");
    }
    Ok(StatusChange {
        job_id: job_id.to_string(),
        status: job.status,
        status_update_reason: job.status_update_reason,
    })
}

pub async fn update_job_priority(app: &App, job_id: &str, priority: i64) -> Result<i64> {
    if !(0..=i32::MAX as i64).contains(&priority) {
        return Err(RequestError::new(
            "Priority",
            format!("must be between 0 and {}, got {priority}", i32::MAX),
        )
        .into());
    }
    let updated = app
        .store
        .update_job(job_id, |job| {
            if job.status.is_terminal() {
                return Err(format!(
                    "the job is {}; its priority can no longer change",
                    job.status
                ));
            }
            job.priority = priority;
            Ok(true)
        })
        .await?;
    updated
        .map(|job| job.priority)
        .map_err(|message| Error::State {
            job_id: job_id.to_string(),
            message,
        })
}

/// GetJobTagging: the job's tags (those put last, or those it was created with).
pub async fn get_job_tagging(app: &App, job_id: &str) -> Result<Vec<Tag>> {
    Ok(app.store.get_job(job_id).await?.tags().to_vec())
}

/// PutJobTagging: replaces the job's tag set (an empty set removes every tag), checked as
/// S3 Control checks it. Any job, whatever its status, can be tagged.
pub async fn put_job_tagging(app: &App, job_id: &str, tags: Vec<Tag>) -> Result<()> {
    validate_job_tags(&tags, "Tags")?;
    let updated = app
        .store
        .update_job(job_id, |job| {
            if job.tags() == tags.as_slice() && job.tags.is_some() {
                return Ok::<_, std::convert::Infallible>(false);
            }
            job.tags = Some(tags.clone());
            Ok(true)
        })
        .await?;
    match updated {
        Ok(_) => Ok(()),
        Err(never) => match never {},
    }
}

/// DeleteJobTagging: removes every tag of the job.
pub async fn delete_job_tagging(app: &App, job_id: &str) -> Result<()> {
    put_job_tagging(app, job_id, Vec::new()).await
}

/// What `job rerun` created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rerun {
    pub job_id: String,
    /// False when this rerun had been asked for before: its job is answered again.
    pub created: bool,
    /// Tasks in the new manifest (failed-only reruns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u64>,
    /// Failed report rows naming no object (malformed manifest lines), not rerun.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<u64>,
}

/// Where a failed-only rerun's manifest is written: one key per first job, so asking again
/// writes the same bytes and CreateJob's token answers the same job.
pub fn rerun_manifest_key(job_id: &str) -> String {
    format!("reruns/job-{job_id}/failed-tasks.csv")
}

/// `job rerun`: a new job over the first job's tasks, with the same operation and report
/// settings. `failed_only`: exactly the tasks its completion report lists as failed (version IDs
/// kept), from a CSV manifest written to the control bucket; otherwise its whole manifest.
pub async fn rerun_job(app: &App, job_id: &str, failed_only: bool) -> Result<Rerun> {
    use batchops_core::report::{parse_row, report_manifest_key, ReportManifest, TaskStatus};
    use batchops_core::rerun::{check_rerunnable, failed_tasks_manifest, rerun_request};
    let job = app.store.get_job(job_id).await?;
    let refused = |e: batchops_core::rerun::RerunRefused| Error::State {
        job_id: e.job_id,
        message: format!("cannot be rerun: {}", e.reason),
    };
    check_rerunnable(&job, failed_only).map_err(refused)?;
    if !failed_only {
        let created = create_job(app, rerun_request(&job, None)).await?;
        return Ok(Rerun {
            job_id: created.job_id,
            created: created.created,
            tasks: None,
            skipped: None,
        });
    }
    let target = job.spec.report.clone().ok_or_else(|| Error::State {
        job_id: job_id.to_string(),
        message: "cannot be rerun: it has no completion report".into(),
    })?;
    let key = report_manifest_key(&target, job_id);
    // The report is the job's data: read with its role, in the report bucket's Region.
    let report_s3 = app.job_clients(&job).s3(&target.bucket).await;
    let body = crate::objects::get_bytes(&report_s3, &target.bucket, &key).await?;
    let report: ReportManifest = serde_json::from_slice(&body)
        .map_err(|e| Error::Data(format!("s3://{}/{key}: {e}", target.bucket)))?;
    let mut rows = Vec::new();
    for result in report
        .results
        .iter()
        .filter(|r| r.task_execution_status == TaskStatus::Failed)
    {
        let text = crate::objects::get_bytes(&report_s3, &result.bucket, &result.key).await?;
        for line in String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| !l.is_empty())
        {
            rows.push(parse_row(line).ok_or_else(|| {
                Error::Data(format!(
                    "s3://{}/{}: unreadable report row `{line}`",
                    result.bucket, result.key
                ))
            })?);
        }
    }
    let manifest = failed_tasks_manifest(&job, &rows).map_err(refused)?;
    let manifest_key = rerun_manifest_key(job_id);
    let written = crate::objects::put_bytes_pinned(
        &app.s3,
        &app.config.control_bucket,
        &manifest_key,
        manifest.csv.clone().into_bytes(),
        "text/csv",
    )
    .await?;
    let location = batchops_core::request::ManifestLocation {
        object_arn: batchops_core::arn::object_arn(&app.config.control_bucket, &manifest_key),
        object_version_id: written.version_id,
        etag: written.etag,
    };
    let created = create_job(app, rerun_request(&job, Some((&manifest, location)))).await?;
    Ok(Rerun {
        job_id: created.job_id,
        created: created.created,
        tasks: Some(manifest.tasks),
        skipped: Some(manifest.skipped),
    })
}
