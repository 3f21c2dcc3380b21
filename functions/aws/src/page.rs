//! The job center page (`GET /`, `GET /ui/jobs/{id}`): gathers jobs, backup policies, exports
//! and imports and hands them to core's renderer. Served by `batchops serve` and by the api Lambda,
//! before the JSON routes.

use crate::error::{Error, Result};
use crate::{backup, exports, imports, jobs, App};
use batchops_core::job::{parse_timestamp, timestamp};
use batchops_core::page::{
    render_job, render_overview, PolicyRow, SnapshotRow, TransferRow, FAILED_TASKS_SHOWN,
};
use batchops_core::report::{
    parse_row, report_manifest_key, ReportManifest, ReportRow, TaskStatus,
};
use batchops_core::schedule::Schedule;
use time::OffsetDateTime;

/// An HTML answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageResponse {
    pub status: u16,
    pub body: String,
}

impl PageResponse {
    pub const CONTENT_TYPE: &'static str = "text/html; charset=utf-8";
}

/// Bytes of the first failed-tasks file read for the job page: enough for its first rows.
const FAILED_ROWS_READ: u64 = 64 * 1024;

/// The page for `method path`, or None when the request is not for a page (the JSON API's).
pub async fn handle_page(app: &App, method: &str, path: &str) -> Option<PageResponse> {
    if !method.eq_ignore_ascii_case("GET") {
        return None;
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let answer = match segments.as_slice() {
        [] => overview(app).await,
        ["ui", "jobs", id] => job_page(app, id).await,
        _ => return None,
    };
    Some(answer.unwrap_or_else(|err| {
        let status = match err {
            Error::JobNotFound(_) => 404,
            _ => 500,
        };
        PageResponse {
            status,
            body: format!(
                "<!doctype html><meta charset=\"utf-8\"><title>batchops</title>\
<p><a href=\"/\">← all jobs</a></p><p>{}</p>",
                batchops_core::page::escape(&err.to_string())
            ),
        }
    }))
}

async fn overview(app: &App) -> Result<PageResponse> {
    let jobs = jobs::list_jobs(app, &[]).await?;
    let now = OffsetDateTime::now_utc();
    let mut policies = Vec::new();
    for record in backup::list_policies(app).await? {
        let policy = &record.policy;
        let next_run = match (&policy.schedule, policy.enabled) {
            (Some(expression), true) => parse_timestamp(&record.created_at)
                .and_then(|anchor| Schedule::parse(expression, &policy.time_zone, anchor).ok())
                .and_then(|schedule| schedule.next_slot_after(now))
                .map(timestamp),
            _ => None,
        };
        let mut snapshots = backup::list_snapshots(app, &policy.name).await?;
        snapshots.reverse(); // newest first
        policies.push(PolicyRow {
            name: policy.name.clone(),
            enabled: policy.enabled,
            source: format!("s3://{}/{}", policy.source.bucket, policy.source.prefix),
            destination: format!(
                "s3://{}/{}",
                policy.destination.bucket, policy.destination.prefix
            ),
            schedule: policy.schedule.clone(),
            next_run,
            snapshots: snapshots
                .into_iter()
                .map(|s| SnapshotRow {
                    id: s.id,
                    created_at: s.created_at,
                    objects: s.objects,
                    bytes: s.bytes,
                })
                .collect(),
        });
    }
    let exports = exports::list_exports(app)
        .await?
        .into_iter()
        .map(|e| TransferRow {
            id: e.export_id,
            status: e.status.to_string(),
            from: None,
            to: e.to,
            progress: e.progress_summary,
        })
        .collect::<Vec<_>>();
    let imports = imports::list_imports(app)
        .await?
        .into_iter()
        .map(|i| TransferRow {
            id: i.import_id,
            status: i.status.to_string(),
            from: Some(i.from),
            to: i.to,
            progress: i.progress_summary,
        })
        .collect::<Vec<_>>();
    Ok(PageResponse {
        status: 200,
        body: render_overview(&jobs, &policies, &exports, &imports),
    })
}

async fn job_page(app: &App, job_id: &str) -> Result<PageResponse> {
    let record = app.store.get_job(job_id).await?;
    let job = jobs::describe_record(app, &record).await?;
    let report_key = record
        .spec
        .report
        .as_ref()
        .map(|target| (target.bucket.clone(), report_manifest_key(target, job_id)));
    let failed = match &report_key {
        Some((bucket, key)) if job.progress_summary.number_of_tasks_failed > 0 => {
            // The report exists once the job has ended; a page must show even when it cannot.
            first_failed_rows(app, bucket, key)
                .await
                .unwrap_or_else(|err| {
                    tracing::warn!(job_id, error = %err, "no failed tasks for the job page");
                    Vec::new()
                })
        }
        _ => Vec::new(),
    };
    let confirm_count = record
        .spec
        .operation
        .needs_counted_confirmation()
        .then_some(record.plan.progress.tasks);
    let report_url = report_key.map(|(bucket, key)| format!("s3://{bucket}/{key}"));
    Ok(PageResponse {
        status: 200,
        body: render_job(&job, report_url.as_deref(), &failed, confirm_count),
    })
}

/// The first rows of the report's first failed-tasks file (none before the report is written).
async fn first_failed_rows(app: &App, bucket: &str, key: &str) -> Result<Vec<ReportRow>> {
    let what = format!("s3://{bucket}/{key}");
    let manifest = match app.s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out
            .body
            .collect()
            .await
            .map_err(|e| Error::Data(format!("{what}: reading: {e}")))?
            .into_bytes(),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
            return Ok(Vec::new())
        }
        Err(err) => return Err(Error::aws_call("S3", "GetObject", &what, &err)),
    };
    let manifest: ReportManifest =
        serde_json::from_slice(&manifest).map_err(|e| Error::Data(format!("{what}: {e}")))?;
    let Some(failed) = manifest
        .results
        .iter()
        .find(|r| r.task_execution_status == TaskStatus::Failed)
    else {
        return Ok(Vec::new());
    };
    let file = format!("s3://{}/{}", failed.bucket, failed.key);
    let out = app
        .s3
        .get_object()
        .bucket(&failed.bucket)
        .key(&failed.key)
        .range(format!("bytes=0-{}", FAILED_ROWS_READ - 1))
        .send()
        .await
        .map_err(|e| Error::aws_call("S3", "GetObject", &file, &e))?;
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| Error::Data(format!("{file}: reading: {e}")))?
        .into_bytes();
    let text = String::from_utf8_lossy(&bytes);
    // Whole lines only: the range may end inside the last one.
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    Ok(whole
        .lines()
        .filter_map(parse_row)
        .take(FAILED_TASKS_SHOWN)
        .collect())
}
