//! The finalizer: once every task has run (or the job is cancelled or failing and no worker
//! holds a lease), sums the counter shards, applies the failure threshold, writes the report
//! manifest, sets the terminal status and sends the job status event. Idempotent: running it
//! twice changes nothing.

use crate::error::{Error, Result};
use crate::objects::{get_bytes, md5_hex, put_bytes};
use crate::store::job_pk;
use crate::{now, unix_now, App};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use batchops_core::counts::Counters;
use batchops_core::job::timestamp;
use batchops_core::report::{
    report_manifest_key, rolled_file_key, OpenFile, ReportManifest, ReportResult, ReportRoll,
    ResumableMd5, TaskStatus,
};
use batchops_core::request::ReportTarget;
use batchops_core::{JobRecord, JobStatus};
use futures::{StreamExt, TryStreamExt};
use md5::Digest;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finalized {
    /// Tasks are still to run; nothing to do yet.
    NotReady,
    /// The job is stopping but workers still hold leases on running ranges.
    Waiting { leases: usize },
    /// The job is (now) in this terminal status.
    Terminal(JobStatus),
    /// The report is still being rolled: this run checkpointed it and asked for another.
    Reporting,
}

/// [`finalize`], with its errors accounted on the job: a permanent one (the report bucket
/// refuses the report, a snapshot catalog is unreadable), or transient ones past the bound, end
/// the job Failed with the reason instead of retrying for ever.
pub async fn finalize_accounted(app: &App, job_id: &str) -> Result<Finalized> {
    match finalize(app, job_id).await {
        Ok(outcome) => Ok(outcome),
        Err(err) => {
            crate::planner::account_job_error(app, job_id, &err, "FinalizationFailed").await?;
            Err(err)
        }
    }
}

pub async fn finalize(app: &App, job_id: &str) -> Result<Finalized> {
    // Each step goes on from the record the previous one wrote (a lost race re-reads it), and
    // reads what it needs at once: a job's end is a chain of round trips, each on its latency.
    // The steps' own futures are boxed: inline, they made this one too large for a debug
    // build's stack.
    let (job, counters) = tokio::join!(app.store.get_job(job_id), app.store.counters(job_id));
    let mut job = job?;
    // Active can only be the first step (a move returns the job in another status), and the
    // one that needs the counters read with the job.
    if job.status == JobStatus::Active {
        let counters = counters?;
        let threshold = app.config.failure_threshold;
        let (next, code, reason) = if threshold.exceeded(&counters) {
            (
                JobStatus::Failing,
                Some("TaskFailureThresholdExceeded"),
                threshold.reason(&counters),
            )
        } else if job
            .total_tasks()
            .is_some_and(|total| counters.tasks_done() >= total)
        {
            (
                JobStatus::Completing,
                None,
                "All tasks have run".to_string(),
            )
        } else {
            return Ok(Finalized::NotReady);
        };
        job = Box::pin(move_job(app, job, JobStatus::Active, next, code, &reason)).await?;
    }
    loop {
        job = match job.status {
            JobStatus::Completing => {
                let counters = abort_uploads_and_count(app, &job).await?;
                if !Box::pin(write_report(app, &job, counters.tasks_done())).await? {
                    return Ok(Finalized::Reporting);
                }
                let refused = Box::pin(write_transfer_manifest(app, &job)).await?;
                let threshold = app.config.failure_threshold;
                if !threshold.exceeded(&counters) {
                    // Backup runs: the snapshot exists once the job is Complete.
                    Box::pin(crate::backup::complete_snapshot_of(app, &job)).await?;
                } else {
                    // A backup run failing: its copies are recorded before it ends.
                    Box::pin(crate::backup::journal_unfinished_run(app, &job)).await?;
                }
                if threshold.exceeded(&counters) {
                    if let Some((code, reason)) = &refused {
                        job = Box::pin(note_failure(app, job, code, reason)).await?;
                    }
                    Box::pin(move_job(
                        app,
                        job,
                        JobStatus::Completing,
                        JobStatus::Failed,
                        Some("TaskFailureThresholdExceeded"),
                        &threshold.reason(&counters),
                    ))
                    .await?
                } else if let Some((code, reason)) = &refused {
                    Box::pin(move_job(
                        app,
                        job,
                        JobStatus::Completing,
                        JobStatus::Failed,
                        Some(code),
                        reason,
                    ))
                    .await?
                } else {
                    Box::pin(move_job(
                        app,
                        job,
                        JobStatus::Completing,
                        JobStatus::Complete,
                        None,
                        "Job complete",
                    ))
                    .await?
                }
            }
            JobStatus::Cancelling | JobStatus::Failing => {
                let leases = app.store.live_leases(job_id, unix_now()).await?;
                if leases > 0 {
                    return Ok(Finalized::Waiting { leases });
                }
                let counters = abort_uploads_and_count(app, &job).await?;
                if !Box::pin(write_report(app, &job, counters.tasks_done())).await? {
                    return Ok(Finalized::Reporting);
                }
                // Backup runs: the copies made are recorded before the run ends, so the next
                // run (which may start once this one has ended) takes them.
                Box::pin(crate::backup::journal_unfinished_run(app, &job)).await?;
                let refused = Box::pin(write_transfer_manifest(app, &job)).await?;
                let (to, reason) = if job.status == JobStatus::Cancelling {
                    (JobStatus::Cancelled, "Cancelled by request")
                } else {
                    (JobStatus::Failed, "Job failed")
                };
                let from = job.status;
                match &refused {
                    Some((code, why)) => {
                        Box::pin(move_job(app, job, from, to, Some(code), why)).await?
                    }
                    None => Box::pin(move_job(app, job, from, to, None, reason)).await?,
                }
            }
            status if status.is_terminal() => {
                // Backup runs: the policy may start its next run (one run per policy at a time).
                Box::pin(crate::backup::run_ended(app, &job)).await?;
                if !job.status_event_sent {
                    Box::pin(send_status_event(app, job)).await?;
                }
                return Ok(Finalized::Terminal(status));
            }
            _ => return Ok(Finalized::NotReady),
        };
    }
}

/// An ending job's first step: its kept multipart uploads aborted, and its counters (final by
/// now) read meanwhile.
async fn abort_uploads_and_count(app: &App, job: &JobRecord) -> Result<Counters> {
    let (aborted, counters) = tokio::join!(
        Box::pin(abort_kept_uploads(app, job)),
        app.store.counters(&job.job_id)
    );
    aborted?;
    counters
}

/// Exports and imports: writes the manifest of what was written at the destination, its
/// transient errors retried within the retry policy. A destination that refuses it for good
/// (bad credentials, no such bucket or container, access denied) answers the failure (code,
/// reason naming the destination and the store's error) the job ends with, rather than the
/// finalizer trying again for ever. Other errors, and transient ones past the retries, go to
/// the caller, whose retries are bounded ([`finalize_accounted`]).
async fn write_transfer_manifest(app: &App, job: &JobRecord) -> Result<Option<(String, String)>> {
    let written = crate::ops::retry_within(
        &app.config.retry,
        crate::ops::RetryBounds::default(),
        |err: &Error| Some(err.class()),
        || write_manifests(app, job),
    )
    .await;
    match written.map_err(crate::ops::GaveUp::into_last) {
        Ok(()) => Ok(None),
        Err(
            err @ Error::Aws {
                service: crate::exports::STORE_SERVICE,
                ..
            },
        ) if err.class() == batchops_core::backoff::ErrorClass::Permanent => {
            tracing::error!(job_id = %job.job_id, error = %err, "the destination refuses the manifest; ending the job");
            Ok(Some((
                err.failure_code("ManifestNotWritten"),
                format!("the manifest of what was written could not be written: {err}"),
            )))
        }
        Err(err) => Err(err),
    }
}

/// The export or import manifest, for a job of either (others have none).
async fn write_manifests(app: &App, job: &JobRecord) -> Result<()> {
    Box::pin(crate::exports::write_manifest(app, job)).await?;
    Box::pin(crate::imports::write_manifest(app, job)).await
}

/// Records a failure reason on a job that is ending for another; returns the job as stored.
async fn note_failure(app: &App, job: JobRecord, code: &str, reason: &str) -> Result<JobRecord> {
    let job_id = job.job_id.clone();
    app.store
        .update_job_from(job, |job| {
            job.failure_reasons.push(batchops_core::job::FailureReason {
                failure_code: code.to_string(),
                failure_reason: reason.to_string(),
            });
            Ok::<bool, ()>(true)
        })
        .await?
        .map_err(|_| Error::State {
            job_id,
            message: format!("cannot record its failure ({code})"),
        })
}

/// Aborts every multipart upload the job's tasks kept for a later invocation that never came
/// (the job was cancelled, or the range was given up): no incomplete upload outlives its job.
async fn abort_kept_uploads(app: &App, job: &JobRecord) -> Result<()> {
    if let Some(export) = job.spec.operation.export() {
        return abort_kept_exports(app, job, &export.to).await;
    }
    // Copies and imports keep theirs in the bucket they write to.
    let Some(bucket) = job.spec.operation.target_bucket() else {
        return Ok(());
    };
    let s3 = app.job_clients(job).s3(bucket).await;
    for ((seq, task), upload) in app.store.kept_uploads(&job.job_id).await? {
        let aborted = s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(&upload.target_key)
            .upload_id(&upload.upload_id)
            .send()
            .await;
        match aborted {
            Ok(_) => {}
            Err(err)
                if aws_sdk_s3::error::ProvideErrorMetadata::code(&err) == Some("NoSuchUpload") => {}
            Err(err) => {
                return Err(Error::aws_call(
                    "S3",
                    "AbortMultipartUpload",
                    &format!(
                        "s3://{bucket}/{} upload {}",
                        upload.target_key, upload.upload_id
                    ),
                    &err,
                ))
            }
        }
        tracing::info!(job_id = %job.job_id, seq, task, upload_id = %upload.upload_id, "aborted a kept multipart upload");
        app.store.forget_upload(&job.job_id, seq, task).await?;
    }
    Ok(())
}

/// [`abort_kept_uploads`] for an export: its uploads are in the destination store. One the
/// store refuses to abort for good is forgotten (the store's own expiry of incomplete uploads
/// is all that is left); a transient error is retried by the next finalizer run.
async fn abort_kept_exports(
    app: &App,
    job: &JobRecord,
    to: &batchops_core::export::StoreLocation,
) -> Result<()> {
    let kept = app.store.kept_uploads(&job.job_id).await?;
    if kept.is_empty() {
        return Ok(());
    }
    let store = crate::stores::open(app, to).await?;
    for ((seq, task), upload) in kept {
        if let Err(err) = crate::ops::export::abort_kept(&store, &upload).await {
            let refusal = crate::stores::StoreRefusal::of(&err);
            if refusal.class() == batchops_core::backoff::ErrorClass::Transient {
                return Err(crate::exports::store_error(&store, &upload.target_key, err));
            }
            tracing::warn!(job_id = %job.job_id, key = %upload.target_key, error = %err, "the destination refuses to abort a kept upload; forgetting it");
        } else {
            tracing::info!(job_id = %job.job_id, seq, task, upload_id = %upload.upload_id, "aborted a kept export upload");
        }
        app.store.forget_upload(&job.job_id, seq, task).await?;
    }
    Ok(())
}

/// Ends a job that cannot go on (a permanent error, or transient ones past the bound) with a
/// failure code and reason: Failed (through Failing when workers may still hold ranges), or
/// Cancelled for a job that was being cancelled. The finalizer then sends its status event.
pub async fn end_failed(app: &App, job_id: &str, code: &str, reason: &str) -> Result<()> {
    app.store
        .update_job(job_id, |job| {
            if job.status.is_terminal() {
                return Ok::<bool, ()>(false);
            }
            if job.status == JobStatus::Cancelling {
                job.failure_reasons.push(batchops_core::job::FailureReason {
                    failure_code: code.to_string(),
                    failure_reason: reason.to_string(),
                });
                return job
                    .transition(JobStatus::Cancelled, now(), reason)
                    .map(|_| true)
                    .map_err(|_| ());
            }
            job.fail(code, reason.to_string(), now())
                .map(|_| true)
                .map_err(|_| ())
        })
        .await?
        .map_err(|_| Error::State {
            job_id: job_id.to_string(),
            message: format!("cannot end the job failed ({code}: {reason})"),
        })?;
    app.queues.request_finalize(job_id).await
}

/// Moves `job` (as last read or written) from `from` to `to`; returns the job as stored after.
/// A job no longer in `from` is left as it is (someone else moved it first): the caller goes
/// on from the status it is in.
async fn move_job(
    app: &App,
    job: JobRecord,
    from: JobStatus,
    to: JobStatus,
    failure_code: Option<&str>,
    reason: &str,
) -> Result<JobRecord> {
    let job_id = job.job_id.clone();
    let result = app
        .store
        .update_job_from(job, |job| {
            if job.status != from {
                return Ok::<bool, ()>(false);
            }
            if let Some(code) = failure_code {
                job.failure_reasons.push(batchops_core::job::FailureReason {
                    failure_code: code.to_string(),
                    failure_reason: reason.to_string(),
                });
            }
            if to.is_terminal() {
                job.report_written = job.spec.report.is_some();
            }
            job.transition(to, now(), reason)
                .map(|_| true)
                .map_err(|_| ())
        })
        .await?;
    result.map_err(|_| Error::State {
        job_id,
        message: format!("cannot move from {from} to {to}"),
    })
}

/// What a job status event says: its source, and its detail-type.
pub const STATUS_EVENT_SOURCE: &str = "batchops";
pub const STATUS_EVENT_DETAIL_TYPE: &str = "Batchops Job Status Change";

/// Sends the terminal status event to the configured EventBridge bus (detail: `{"Job": ...}`,
/// the DescribeJob shape), then records that it was sent. At least once: a crash between the two
/// sends it again. Without a bus there is nothing to send, and nothing to record.
async fn send_status_event(app: &App, record: JobRecord) -> Result<()> {
    let job_id = record.job_id.clone();
    let job_id = job_id.as_str();
    let Some(bus) = &app.config.event_bus else {
        return Ok(());
    };
    let job = crate::jobs::describe_record(app, &record).await?;
    let detail = serde_json::json!({ "Job": job }).to_string();
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .event_bus_name(bus)
        .source(STATUS_EVENT_SOURCE)
        .detail_type(STATUS_EVENT_DETAIL_TYPE)
        .resources(job.job_arn.clone())
        .detail(detail)
        .build();
    let failed = |message: String| {
        Error::State {
            job_id: job_id.to_string(),
            message: format!(
                "sending its status event to EventBridge bus `{bus}`: {message} (BATCHOPS_EVENT_BUS=none sends none)"
            ),
        }
    };
    let out = app
        .events
        .put_events()
        .entries(entry)
        .send()
        .await
        .map_err(|e| failed(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string()))?;
    // PutEvents answers 200 with per-entry failures.
    if out.failed_entry_count() > 0 {
        let why = out
            .entries()
            .iter()
            .filter_map(|e| e.error_message().or(e.error_code()))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(failed(why));
    }
    app.store
        .update_job_from(record, |job| {
            let change = !job.status_event_sent;
            job.status_event_sent = true;
            Ok::<bool, ()>(change)
        })
        .await?
        .map(|_| ())
        .map_err(|_| Error::State {
            job_id: job_id.to_string(),
            message: "cannot record its status event".into(),
        })
}

/// The roll's checkpoint item; each result file gets its own item (`REPORTFILE#...`), so the
/// checkpoint stays small however many files a report has.
const ROLL_SK: &str = "REPORT";
const FILE_SK_PREFIX: &str = "REPORTFILE#";
/// Committed ranges read per page, and staged row files fetched at once, while rolling: with
/// the part being filled, all the roll holds in memory.
const RANGE_PAGE: i32 = 500;
const READ_AHEAD: usize = 8;

fn file_sk(status: TaskStatus, index: u64) -> String {
    format!("{FILE_SK_PREFIX}{}#{index:06}", status.as_str())
}

/// How much one run of the roll may do before it checkpoints and hands on.
#[derive(Debug, Clone, Copy, Default)]
pub struct RollLimits {
    pub deadline: Option<Instant>,
    /// S3 writes (parts, files) in this run.
    pub max_writes: Option<u64>,
}

/// Writes the job's report (`<prefix>/job-<id>/results/*.csv` and `manifest.json`) once any
/// task ran. True when it is complete; false when this run's slice ran out, in which case it
/// has checkpointed and asked for another finalizer run.
async fn write_report(app: &App, job: &JobRecord, tasks_done: u64) -> Result<bool> {
    let job_id = job.job_id.as_str();
    let Some(target) = &job.spec.report else {
        return Ok(true);
    };
    if tasks_done == 0 {
        return Ok(true);
    }
    let limits = RollLimits {
        deadline: Some(Instant::now() + app.config.plan_slice),
        max_writes: app.config.report_slice_writes,
    };
    if roll_report(app, job_id, target, limits).await? {
        return Ok(true);
    }
    app.queues.request_finalize(job_id).await?;
    Ok(false)
}

/// Rolls the rows every committed range staged (in range order, succeeded then failed) into
/// result files of about `report_file_bytes` (multipart uploads of `report_part_bytes` parts,
/// MD5 computed while streaming), then writes `manifest.json` listing them. Memory is bounded
/// by a part and a page of ranges, not by the number of tasks.
///
/// Resumable and idempotent: after every part or file the position (last range consumed, the
/// open upload and its parts, the MD5 state) is checkpointed in the table, always with nothing
/// buffered, so a run killed anywhere resumes by reading the same ranges again and writing the
/// same bytes to the same keys; a run after completion changes nothing. True when complete;
/// false when `limits` stopped it or another run moved the checkpoint first.
pub async fn roll_report(
    app: &App,
    job_id: &str,
    target: &ReportTarget,
    limits: RollLimits,
) -> Result<bool> {
    let pk = job_pk(job_id);
    let (mut roll, revision) = match app.store.get_doc::<ReportRoll>(&pk, ROLL_SK).await? {
        Some((roll, revision)) => (roll, Some(revision)),
        None => (ReportRoll::start(), None),
    };
    // Report files are written with the job's role, in the report bucket's Region.
    let s3 = app
        .job_clients(&app.store.get_job(job_id).await?)
        .s3(&target.bucket)
        .await;
    let mut run = RollRun {
        app,
        s3: &s3,
        job_id,
        target,
        pk: &pk,
        limits,
        writes: 0,
        revision,
    };
    while let Some(status) = roll.status {
        let mut buffer: Vec<u8> = Vec::new();
        let mut cursor = roll.after.clone();
        loop {
            let (page, next) = app
                .store
                .committed_ranges_page(job_id, cursor.as_deref(), RANGE_PAGE)
                .await?;
            let mut rows = futures::stream::iter(
                page.into_iter()
                    .map(|(sk, range)| staged_rows(app, sk, range, status)),
            )
            .buffered(READ_AHEAD);
            while let Some((sk, body)) = rows.try_next().await? {
                buffer.extend_from_slice(&body);
                // The last range whose rows are in `buffer` (or uploaded).
                let consumed = Some(sk);
                let file_bytes =
                    roll.open.as_ref().map_or(0, |open| open.bytes) + buffer.len() as u64;
                if file_bytes >= app.config.report_file_bytes {
                    if !run.close_file(&mut roll, status, &mut buffer).await? {
                        return Ok(false);
                    }
                    roll.file_closed(consumed);
                } else if buffer.len() as u64 >= app.config.report_part_bytes {
                    if !run.upload_part(&mut roll, status, &mut buffer).await? {
                        return Ok(false);
                    }
                    roll.after = consumed;
                } else {
                    continue;
                }
                if !run.checkpoint(&roll).await? || run.spent() {
                    return Ok(false);
                }
            }
            match next {
                Some(sk) => cursor = Some(sk),
                None => break,
            }
        }
        if (!buffer.is_empty() || roll.open.is_some())
            && !run.close_file(&mut roll, status, &mut buffer).await?
        {
            return Ok(false);
        }
        roll.status_done();
        if !run.checkpoint(&roll).await? || run.spent() {
            return Ok(false);
        }
    }
    if !roll.manifest_written {
        let files: Vec<ReportResult> = app.store.query_docs(&pk, FILE_SK_PREFIX).await?;
        let manifest = ReportManifest::new(timestamp(now()), files);
        let body = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Data(e.to_string()))?;
        put_bytes(
            &s3,
            &target.bucket,
            &report_manifest_key(target, job_id),
            body,
            "application/json",
        )
        .await?;
        roll.manifest_written = true;
        if !run.checkpoint(&roll).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The rows of `status` a committed range staged, each file's MD5 checked against the one the
/// range recorded.
async fn staged_rows(
    app: &App,
    sk: String,
    range: crate::store::RangeCommit,
    status: TaskStatus,
) -> Result<(String, Vec<u8>)> {
    let mut rows = Vec::new();
    for shard in range.shards.iter().filter(|shard| shard.status == status) {
        let body = get_bytes(&app.s3, &shard.bucket, &shard.key).await?;
        let md5 = md5_hex(&body);
        if md5 != shard.md5 {
            return Err(Error::Data(format!(
                "staged report rows s3://{}/{} of range {sk}: MD5 {md5}, the range recorded {}",
                shard.bucket, shard.key, shard.md5
            )));
        }
        rows.extend_from_slice(&body);
    }
    Ok((sk, rows))
}

/// One run of the roll: what it writes, and its checkpoint's revision.
struct RollRun<'a> {
    app: &'a App,
    /// The job's client for the report bucket.
    s3: &'a aws_sdk_s3::Client,
    job_id: &'a str,
    target: &'a ReportTarget,
    pk: &'a str,
    limits: RollLimits,
    writes: u64,
    revision: Option<u64>,
}

impl RollRun<'_> {
    fn spent(&self) -> bool {
        self.limits.max_writes.is_some_and(|max| self.writes >= max)
            || self
                .limits
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Writes the checkpoint over the revision this run read; false when another run moved it
    /// first (this run then stops: the other one goes on from its own checkpoint).
    async fn checkpoint(&mut self, roll: &ReportRoll) -> Result<bool> {
        let written = self
            .app
            .store
            .put_doc(self.pk, ROLL_SK, roll, self.revision, None)
            .await?;
        if written {
            self.revision = Some(self.revision.map_or(0, |r| r + 1));
        } else {
            tracing::info!(
                job_id = self.job_id,
                "another finalizer run moved the report checkpoint; stopping this one"
            );
        }
        Ok(written)
    }

    fn what(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.target.bucket)
    }

    /// Uploads `buffer` as the next part of the open file (started, and checkpointed at once so
    /// no upload is orphaned, if none is open). False when this run must stop.
    async fn upload_part(
        &mut self,
        roll: &mut ReportRoll,
        status: TaskStatus,
        buffer: &mut Vec<u8>,
    ) -> Result<bool> {
        if roll.open.is_none() {
            let key = rolled_file_key(self.target, self.job_id, status, roll.next_file);
            let out = self
                .s3
                .create_multipart_upload()
                .bucket(&self.target.bucket)
                .key(&key)
                .content_type("text/csv")
                .send()
                .await
                .map_err(|e| {
                    Error::aws_call("S3", "CreateMultipartUpload", &self.what(&key), &e)
                })?;
            let upload_id = out.upload_id().unwrap_or_default().to_string();
            roll.open = Some(OpenFile {
                key: key.clone(),
                upload_id: upload_id.clone(),
                parts: Vec::new(),
                bytes: 0,
                md5: ResumableMd5::default(),
            });
            if !self.checkpoint(roll).await? {
                // Another run is rolling: this upload is nobody's.
                let _ = self
                    .s3
                    .abort_multipart_upload()
                    .bucket(&self.target.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Ok(false);
            }
        }
        let Some(open) = roll.open.as_mut() else {
            return Ok(false);
        };
        if !self.put_part(open, buffer).await? {
            tracing::warn!(job_id = self.job_id, key = %open.key, upload_id = %open.upload_id, "the report file's upload is gone (completed by another run); stopping this one");
            return Ok(false);
        }
        Ok(true)
    }

    /// UploadPart of `buffer` (emptied) as the open file's next part. False when the upload
    /// no longer exists.
    async fn put_part(&mut self, open: &mut OpenFile, buffer: &mut Vec<u8>) -> Result<bool> {
        let body = std::mem::take(buffer);
        let number = open.parts.len() as i32 + 1;
        let digest = md5::Md5::digest(&body);
        open.md5.update(&body);
        open.bytes += body.len() as u64;
        let sent = self
            .app
            .s3
            .upload_part()
            .bucket(&self.target.bucket)
            .key(&open.key)
            .upload_id(&open.upload_id)
            .part_number(number)
            .content_md5(base64::engine::general_purpose::STANDARD.encode(digest))
            .body(ByteStream::from(body))
            .send()
            .await;
        self.writes += 1;
        match sent {
            Ok(out) => {
                open.parts
                    .push((number, out.e_tag().unwrap_or_default().to_string()));
                Ok(true)
            }
            Err(err)
                if aws_sdk_s3::error::ProvideErrorMetadata::code(&err) == Some("NoSuchUpload") =>
            {
                // Its ETag, as S3 would have returned it: the finished object is checked with it.
                open.parts
                    .push((number, format!("\"{}\"", hex::encode(digest))));
                Ok(false)
            }
            Err(err) => Err(Error::aws_call(
                "S3",
                "UploadPart",
                &format!("{} part {number}", self.what(&open.key)),
                &err,
            )),
        }
    }

    /// Writes the current file's last bytes and finishes it (PutObject when it never needed a
    /// part), then records it for the manifest. False when this run must stop.
    async fn close_file(
        &mut self,
        roll: &mut ReportRoll,
        status: TaskStatus,
        buffer: &mut Vec<u8>,
    ) -> Result<bool> {
        let index = roll.next_file;
        let result = match roll.open.clone() {
            None => {
                let key = rolled_file_key(self.target, self.job_id, status, index);
                let md5 = put_bytes(
                    self.s3,
                    &self.target.bucket,
                    &key,
                    std::mem::take(buffer),
                    "text/csv",
                )
                .await?;
                self.writes += 1;
                ReportResult {
                    task_execution_status: status,
                    bucket: self.target.bucket.clone(),
                    md5_checksum: md5,
                    key,
                }
            }
            Some(mut open) => {
                // A run killed after completing the upload (or one racing this) left the
                // finished object: it is accepted if it is exactly these parts.
                let mut parts = open.parts.clone();
                if !buffer.is_empty() {
                    let digest = hex::encode(md5::Md5::digest(&buffer[..]));
                    parts.push((parts.len() as i32 + 1, format!("\"{digest}\"")));
                }
                if self.finished_as(&open.key, &parts).await? {
                    open.md5.update(buffer);
                    buffer.clear();
                } else {
                    let mut live = buffer.is_empty() || self.put_part(&mut open, buffer).await?;
                    if live {
                        live = self.complete(&open).await?;
                    }
                    if !live && !self.finished_as(&open.key, &open.parts).await? {
                        return Ok(false);
                    }
                }
                ReportResult {
                    task_execution_status: status,
                    bucket: self.target.bucket.clone(),
                    md5_checksum: open.md5.hex(),
                    key: open.key,
                }
            }
        };
        // Already there when a killed run got this far: the same file.
        self.app
            .store
            .put_doc(self.pk, &file_sk(status, index), &result, None, None)
            .await?;
        Ok(true)
    }

    /// CompleteMultipartUpload; false when the upload no longer exists.
    async fn complete(&mut self, open: &OpenFile) -> Result<bool> {
        let parts = open
            .parts
            .iter()
            .map(|(number, etag)| {
                CompletedPart::builder()
                    .part_number(*number)
                    .e_tag(etag)
                    .build()
            })
            .collect::<Vec<_>>();
        let done = self
            .app
            .s3
            .complete_multipart_upload()
            .bucket(&self.target.bucket)
            .key(&open.key)
            .upload_id(&open.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        self.writes += 1;
        match done {
            Ok(_) => Ok(true),
            Err(err)
                if aws_sdk_s3::error::ProvideErrorMetadata::code(&err) == Some("NoSuchUpload") =>
            {
                Ok(false)
            }
            Err(err) => Err(Error::aws_call(
                "S3",
                "CompleteMultipartUpload",
                &format!("{} upload {}", self.what(&open.key), open.upload_id),
                &err,
            )),
        }
    }

    /// Whether the object at `key` is the multipart upload of exactly `parts`
    /// (S3's multipart ETag: MD5 of the parts' MD5s, `-<parts>`).
    async fn finished_as(&self, key: &str, parts: &[(i32, String)]) -> Result<bool> {
        let mut digests = Vec::new();
        for (_, etag) in parts {
            digests.extend(hex::decode(etag.trim_matches('"')).unwrap_or_default());
        }
        let expected = format!("{}-{}", md5_hex(&digests), parts.len());
        let head = self
            .app
            .s3
            .head_object()
            .bucket(&self.target.bucket)
            .key(key)
            .send()
            .await;
        match head {
            Ok(out) => Ok(out.e_tag().map(|e| e.trim_matches('"')) == Some(expected.as_str())),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(err) => Err(Error::aws_call("S3", "HeadObject", &self.what(key), &err)),
        }
    }
}
