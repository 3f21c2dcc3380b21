//! The finalizer: once every task has run (or the job is cancelled or failing and no worker
//! holds a lease), sums the counter shards, applies the failure threshold, writes the report
//! manifest, sets the terminal status and sends the job status event. Idempotent: running it
//! twice changes nothing.

use crate::error::{Error, Result};
use crate::objects::put_bytes;
use crate::{now, unix_now, App};
use batchops_core::job::timestamp;
use batchops_core::report::{report_manifest_key, ReportManifest, ReportResult};
use batchops_core::{JobRecord, JobStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finalized {
    /// Tasks are still to run; nothing to do yet.
    NotReady,
    /// The job is stopping but workers still hold leases on running ranges.
    Waiting { leases: usize },
    /// The job is (now) in this terminal status.
    Terminal(JobStatus),
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
    loop {
        let job = app.store.get_job(job_id).await?;
        match job.status {
            JobStatus::Active => {
                let counters = app.store.counters(job_id).await?;
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
                move_job(app, job_id, JobStatus::Active, next, code, &reason).await?;
            }
            JobStatus::Completing => {
                let counters = app.store.counters(job_id).await?;
                write_report(app, job_id, counters.tasks_done()).await?;
                let threshold = app.config.failure_threshold;
                if !threshold.exceeded(&counters) {
                    // Backup runs: the snapshot exists once the job is Complete.
                    crate::backup::complete_snapshot(app, job_id).await?;
                }
                if threshold.exceeded(&counters) {
                    move_job(
                        app,
                        job_id,
                        JobStatus::Completing,
                        JobStatus::Failed,
                        Some("TaskFailureThresholdExceeded"),
                        &threshold.reason(&counters),
                    )
                    .await?;
                } else {
                    move_job(
                        app,
                        job_id,
                        JobStatus::Completing,
                        JobStatus::Complete,
                        None,
                        "Job complete",
                    )
                    .await?;
                }
            }
            JobStatus::Cancelling | JobStatus::Failing => {
                let leases = app.store.live_leases(job_id, unix_now()).await?;
                if leases > 0 {
                    return Ok(Finalized::Waiting { leases });
                }
                let counters = app.store.counters(job_id).await?;
                write_report(app, job_id, counters.tasks_done()).await?;
                let (to, reason) = if job.status == JobStatus::Cancelling {
                    (JobStatus::Cancelled, "Cancelled by request")
                } else {
                    (JobStatus::Failed, "Job failed")
                };
                move_job(app, job_id, job.status, to, None, reason).await?;
            }
            status if status.is_terminal() => {
                if !job.status_event_sent {
                    send_status_event(app, &job).await?;
                }
                return Ok(Finalized::Terminal(status));
            }
            _ => return Ok(Finalized::NotReady),
        }
    }
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

async fn move_job(
    app: &App,
    job_id: &str,
    from: JobStatus,
    to: JobStatus,
    failure_code: Option<&str>,
    reason: &str,
) -> Result<()> {
    let result = app
        .store
        .update_job(job_id, |job| {
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
    result.map(|_| ()).map_err(|_| Error::State {
        job_id: job_id.to_string(),
        message: format!("cannot move from {from} to {to}"),
    })
}

/// What a job status event says: its source, and its detail-type.
pub const STATUS_EVENT_SOURCE: &str = "batchops";
pub const STATUS_EVENT_DETAIL_TYPE: &str = "Batchops Job Status Change";

/// Sends the terminal status event to the configured EventBridge bus (detail: `{"Job": ...}`,
/// the DescribeJob shape), then records that it was sent. At least once: a crash between the two
/// sends it again.
async fn send_status_event(app: &App, record: &JobRecord) -> Result<()> {
    let job_id = record.job_id.as_str();
    if let Some(bus) = &app.config.event_bus {
        let job = crate::jobs::describe_record(app, record).await?;
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
    }
    app.store
        .update_job(job_id, |job| {
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

/// Writes `<prefix>/job-<id>/manifest.json` listing every committed shard, once any task ran.
async fn write_report(app: &App, job_id: &str, tasks_done: u64) -> Result<()> {
    let job = app.store.get_job(job_id).await?;
    let Some(target) = &job.spec.report else {
        return Ok(());
    };
    if tasks_done == 0 {
        return Ok(());
    }
    let ranges = app.store.committed_ranges(job_id).await?;
    let results: Vec<ReportResult> = ranges
        .iter()
        .flat_map(|range| range.shards.iter())
        .map(|shard| ReportResult {
            task_execution_status: shard.status,
            bucket: shard.bucket.clone(),
            md5_checksum: shard.md5.clone(),
            key: shard.key.clone(),
        })
        .collect();
    let manifest = ReportManifest::new(timestamp(now()), results);
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Data(e.to_string()))?;
    put_bytes(
        &app.s3,
        &target.bucket,
        &report_manifest_key(target, job_id),
        body,
        "application/json",
    )
    .await?;
    Ok(())
}
