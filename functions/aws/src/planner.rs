//! The planner: advances every unfinished job by a bounded slice. Preparing jobs stream their
//! manifest into chunk files with checkpoints, so a killed or timed-out planner resumes exactly
//! where the last checkpoint left it; Active jobs get their chunk pointers dispatched.

use crate::error::{aws, Error, Result, S3Failure};
use crate::objects::{bucket_reachable, put_bytes, same_etag};
use crate::queue::ChunkPointer;
use crate::{now, App};
use batchops_core::chunk::{chunk_key, ChunkTask};
use batchops_core::manifest::{CsvManifestParser, ParsedLine};
use batchops_core::{JobRecord, JobStatus};
use std::time::Instant;
use tokio::io::AsyncBufReadExt;

/// Chunk pointers sent between two dispatch checkpoints.
const DISPATCH_BATCH: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// Nothing for the planner to do now (waiting for confirmation, workers or the finalizer).
    Idle,
    /// The slice's time ran out with work left: call again.
    MoreWork,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepSummary {
    pub jobs_seen: usize,
    pub jobs_with_more_work: Vec<String>,
    pub errors: Vec<String>,
}

/// The scheduled run: every job that has work, highest priority first, oldest first. One job's
/// error is logged and does not stop the others.
pub async fn sweep(app: &App, deadline: Instant) -> Result<SweepSummary> {
    let mut jobs = app.store.list_jobs(&JobStatus::WORKING).await?;
    jobs.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.created_at.cmp(&b.created_at))
    });
    let mut summary = SweepSummary {
        jobs_seen: jobs.len(),
        ..Default::default()
    };
    for job in jobs {
        if Instant::now() >= deadline {
            summary.jobs_with_more_work.push(job.job_id);
            continue;
        }
        match advance(app, &job.job_id, deadline).await {
            Ok(Advance::MoreWork) => summary.jobs_with_more_work.push(job.job_id),
            Ok(Advance::Idle) => {}
            Err(err) => {
                tracing::error!(job_id = %job.job_id, error = %err, "planner could not advance job");
                summary.errors.push(format!("{}: {err}", job.job_id));
            }
        }
    }
    Ok(summary)
}

/// Moves one job forward until it waits on someone else or `deadline` passes.
pub async fn advance(app: &App, job_id: &str, deadline: Instant) -> Result<Advance> {
    loop {
        let job = app.store.get_job(job_id).await?;
        match job.status {
            JobStatus::New => {
                transition(
                    app,
                    job_id,
                    JobStatus::New,
                    JobStatus::Preparing,
                    "Reading the manifest",
                )
                .await?;
            }
            JobStatus::Preparing => {
                if plan_slice(app, job, deadline).await? == Advance::MoreWork {
                    return Ok(Advance::MoreWork);
                }
            }
            JobStatus::Ready => {
                transition(
                    app,
                    job_id,
                    JobStatus::Ready,
                    JobStatus::Active,
                    "Confirmed; running",
                )
                .await?;
            }
            JobStatus::Active => {
                if dispatch(app, &job, deadline).await? == Advance::MoreWork {
                    return Ok(Advance::MoreWork);
                }
                let total = job.total_tasks().unwrap_or(u64::MAX);
                if total == 0 || app.store.counters(job_id).await?.tasks_done() >= total {
                    app.queues.request_finalize(job_id).await?;
                }
                return Ok(Advance::Idle);
            }
            JobStatus::Completing | JobStatus::Cancelling | JobStatus::Failing => {
                app.queues.request_finalize(job_id).await?;
                return Ok(Advance::Idle);
            }
            _ => return Ok(Advance::Idle),
        }
    }
}

/// Moves `from -> to` unless someone else moved the job first (then the caller re-reads).
async fn transition(
    app: &App,
    job_id: &str,
    from: JobStatus,
    to: JobStatus,
    reason: &str,
) -> Result<()> {
    app.store
        .update_job(job_id, |job| {
            if job.status != from {
                return Ok::<bool, ()>(false);
            }
            job.transition(to, now(), reason).map_err(|_| ())?;
            Ok(true)
        })
        .await?
        .map(|_| ())
        .map_err(|_| Error::State {
            job_id: job_id.to_string(),
            message: format!("cannot move from {from} to {to}"),
        })
}

/// Fails a job that cannot run, with a reason a person can act on.
pub async fn fail_job(app: &App, job_id: &str, code: &str, reason: String) -> Result<()> {
    tracing::warn!(job_id, code, reason, "failing job");
    app.store
        .update_job(job_id, |job| {
            if job.status.is_terminal() || job.status.is_stopping() {
                return Ok::<bool, ()>(false);
            }
            job.fail(code, reason.clone(), now())
                .map(|_| true)
                .map_err(|_| ())
        })
        .await?
        .map_err(|_| Error::State {
            job_id: job_id.to_string(),
            message: "cannot fail".into(),
        })?;
    app.queues.request_finalize(job_id).await
}

/// Reads the manifest from the checkpoint on, writing chunk files, until it ends or the
/// deadline passes. One DynamoDB write per checkpoint, one S3 PUT per chunk.
async fn plan_slice(app: &App, mut job: JobRecord, deadline: Instant) -> Result<Advance> {
    let job_id = job.job_id.clone();
    let spec = job.spec.clone();
    let source = &spec.manifest;
    let first_slice = job.plan.next_seq == 0 && job.plan.offset == 0;
    if first_slice {
        if let Err(reason) = bucket_reachable(&app.s3, &spec.copy.target_bucket).await {
            fail_job(
                app,
                &job_id,
                "TargetBucketUnreachable",
                format!("Operation.S3PutObjectCopy.TargetResource: {reason}"),
            )
            .await?;
            return Ok(Advance::Idle);
        }
        if let Some(report) = &spec.report {
            if let Err(reason) = bucket_reachable(&app.s3, &report.bucket).await {
                fail_job(
                    app,
                    &job_id,
                    "ReportBucketUnreachable",
                    format!("Report.Bucket: {reason}"),
                )
                .await?;
                return Ok(Advance::Idle);
            }
        }
    }
    let expected_etag = job
        .plan
        .manifest_etag
        .clone()
        .or_else(|| source.etag.clone());
    let mut request = app
        .s3
        .get_object()
        .bucket(&source.bucket)
        .key(&source.key)
        .set_version_id(source.version_id.clone())
        .set_if_match(expected_etag.clone());
    if job.plan.offset > 0 {
        request = request.range(format!("bytes={}-", job.plan.offset));
    }
    let manifest_url = format!("s3://{}/{}", source.bucket, source.key);
    let mut state = job.plan.clone();
    let body = match request.send().await {
        Ok(out) => {
            if state.manifest_etag.is_none() {
                state.manifest_etag = out.e_tag().map(str::to_string);
            }
            Some(out.body)
        }
        Err(err) => {
            let failure = S3Failure::from_sdk(&err);
            match failure.status {
                Some(412) => {
                    let actual = app
                        .s3
                        .head_object()
                        .bucket(&source.bucket)
                        .key(&source.key)
                        .set_version_id(source.version_id.clone())
                        .send()
                        .await
                        .ok()
                        .and_then(|h| h.e_tag().map(str::to_string))
                        .unwrap_or_else(|| "unknown".to_string());
                    let expected = expected_etag.unwrap_or_default();
                    fail_job(
                        app,
                        &job_id,
                        "ManifestETagMismatch",
                        format!("Manifest.Location.ETag: the manifest {manifest_url} has ETag {actual}, but the job expects {expected}; the manifest changed after the job was created"),
                    )
                    .await?;
                    return Ok(Advance::Idle);
                }
                Some(404) | Some(403) => {
                    fail_job(
                        app,
                        &job_id,
                        "ManifestNotReadable",
                        format!(
                            "Manifest.Location.ObjectArn: cannot read {manifest_url}: {} ({})",
                            failure.code.unwrap_or_default(),
                            failure.message
                        ),
                    )
                    .await?;
                    return Ok(Advance::Idle);
                }
                // Resuming exactly at the end of the manifest: nothing left to read.
                Some(416) if job.plan.offset > 0 => None,
                _ => return Err(aws("S3", "GetObject")(err)),
            }
        }
    };
    if let (Some(expected), Some(seen)) = (source.etag.as_deref(), state.manifest_etag.as_deref()) {
        // Emulators may ignore If-Match; compare as well.
        if !same_etag(expected, seen) {
            fail_job(
                app,
                &job_id,
                "ManifestETagMismatch",
                format!("Manifest.Location.ETag: the manifest {manifest_url} has ETag {seen}, but the job expects {expected}; the manifest changed after the job was created"),
            )
            .await?;
            return Ok(Advance::Idle);
        }
    }

    let chunk_size = app.config.chunk_size as u64;
    let has_version_field = source.fields.has_version();
    let mut parser = CsvManifestParser::new(source.fields.clone());
    let mut chunk_body = String::with_capacity(chunk_size as usize * 96);
    let mut chunk_tasks = 0u64;
    // Position and line number just after the last line read.
    let mut position = state.offset;
    let mut line_no = state.next_line.max(1);
    let mut chunks_since_checkpoint = 0u64;
    let mut line = Vec::with_capacity(1024);

    if let Some(body) = body {
        let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, body.into_async_read());
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| Error::Aws {
                    service: "S3",
                    operation: "GetObject",
                    message: format!("reading {manifest_url}: {e}"),
                })?;
            if read == 0 {
                break;
            }
            position += read as u64;
            let raw = line.strip_suffix(b"\n").unwrap_or(&line);
            match parser.parse(line_no, raw) {
                ParsedLine::Blank => {}
                ParsedLine::Object(object) => {
                    if has_version_field {
                        if let Err(reason) =
                            state.versions.observe(line_no, object.version_id.is_some())
                        {
                            fail_job(
                                app,
                                &job_id,
                                "ManifestVersionIdsMixed",
                                format!("{manifest_url}: {reason}"),
                            )
                            .await?;
                            return Ok(Advance::Idle);
                        }
                    }
                    ChunkTask::Object {
                        line: line_no,
                        object,
                    }
                    .write_line(&mut chunk_body);
                    chunk_tasks += 1;
                }
                ParsedLine::Malformed(malformed) => {
                    ChunkTask::Malformed(malformed).write_line(&mut chunk_body);
                    chunk_tasks += 1;
                    state.malformed += 1;
                }
            }
            line_no += 1;
            if chunk_tasks == chunk_size {
                write_chunk(
                    app,
                    &job_id,
                    state.next_seq,
                    std::mem::take(&mut chunk_body),
                )
                .await?;
                state.next_seq += 1;
                state.tasks += chunk_tasks;
                state.offset = position;
                state.next_line = line_no;
                chunk_tasks = 0;
                chunks_since_checkpoint += 1;
                let out_of_time = Instant::now() >= deadline;
                if chunks_since_checkpoint >= app.config.checkpoint_every_chunks || out_of_time {
                    job.plan = state.clone();
                    if !app.store.put_job(&mut job).await? {
                        // Cancelled, or another planner got here first: let the next advance re-read.
                        return Ok(Advance::MoreWork);
                    }
                    chunks_since_checkpoint = 0;
                    if out_of_time {
                        return Ok(Advance::MoreWork);
                    }
                }
            }
        }
    }
    if chunk_tasks > 0 {
        write_chunk(app, &job_id, state.next_seq, chunk_body).await?;
        state.next_seq += 1;
        state.tasks += chunk_tasks;
    }
    state.offset = position;
    state.next_line = line_no;
    state.finished = true;
    job.plan = state;
    let (next, reason) = if spec.confirmation_required {
        (JobStatus::Suspended, "Awaiting confirmation")
    } else {
        (JobStatus::Active, "Manifest read; running")
    };
    job.transition(next, now(), reason)
        .map_err(|e| Error::State {
            job_id: job_id.clone(),
            message: e.to_string(),
        })?;
    if !app.store.put_job(&mut job).await? {
        return Ok(Advance::MoreWork);
    }
    tracing::info!(job_id, tasks = job.plan.tasks, chunks = job.plan.next_seq, malformed = job.plan.malformed, status = %job.status, "manifest planned");
    Ok(Advance::Idle)
}

async fn write_chunk(app: &App, job_id: &str, seq: u64, body: String) -> Result<()> {
    put_bytes(
        &app.s3,
        &app.config.control_bucket,
        &chunk_key(job_id, seq),
        body.into_bytes(),
        "text/plain",
    )
    .await?;
    Ok(())
}

/// Sends the pointers of every planned chunk not yet sent, checkpointing every hundred.
async fn dispatch(app: &App, job: &JobRecord, deadline: Instant) -> Result<Advance> {
    let total = job.total_chunks().unwrap_or(0);
    let mut next = job.dispatched_chunks;
    while next < total {
        let end = (next + DISPATCH_BATCH).min(total);
        let pointers: Vec<ChunkPointer> = (next..end)
            .map(|seq| ChunkPointer {
                job: job.job_id.clone(),
                seq,
                first_task: 0,
            })
            .collect();
        app.queues.send_chunks(&pointers).await?;
        next = end;
        let still_active = app
            .store
            .update_job(&job.job_id, |record| {
                if record.status != JobStatus::Active {
                    return Err(());
                }
                if record.dispatched_chunks >= next {
                    return Ok(false);
                }
                record.dispatched_chunks = next;
                Ok(true)
            })
            .await?;
        if still_active.is_err() {
            return Ok(Advance::Idle);
        }
        if next < total && Instant::now() >= deadline {
            return Ok(Advance::MoreWork);
        }
    }
    Ok(Advance::Idle)
}
