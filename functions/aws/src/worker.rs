//! The worker: runs the tasks of one chunk pointer and commits them exactly once.
//!
//! Order of work: lease, read job, skip if the range is committed or the job is stopping, run
//! tasks with bounded concurrency while watching the job's status and the deadline, write the
//! report rows, then ONE transaction marks the range done and adds its counts. A redelivered
//! pointer finds the range committed and changes nothing; a worker that runs short on time
//! commits the tasks it finished and re-queues the rest.

use crate::copy::{Copier, TaskResult};
use crate::error::{Error, Result};
use crate::objects::{delete_object, get_bytes, put_bytes};
use crate::queue::ChunkPointer;
use crate::store::{CommitOutcome, RangeCommit, ShardRef};
use crate::{now, App};
use batchops_core::chunk::{chunk_key, parse_chunk, ChunkTask};
use batchops_core::counts::Counters;
use batchops_core::report::{result_shard_key, TaskOutcome, TaskStatus};
use batchops_core::request::ManifestSource;
use batchops_core::JobStatus;
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkRun {
    /// Tasks ran and their range was committed by this delivery.
    Committed {
        tasks: u64,
        requeued_from: Option<u64>,
    },
    /// Another delivery had already committed this range; nothing changed.
    AlreadyCommitted,
    /// The job is gone, stopping or finished: the pointer is dropped.
    Skipped(String),
}

/// Runs one chunk pointer. `deadline` is when this invocation must have returned.
pub async fn process_chunk(
    app: &App,
    pointer: &ChunkPointer,
    deadline: SystemTime,
) -> Result<ChunkRun> {
    let attempt = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let lease_until = deadline
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 5;
    app.store
        .put_lease(
            &pointer.job,
            pointer.seq,
            pointer.first_task,
            &attempt,
            lease_until,
        )
        .await?;
    let result = run_leased(app, pointer, deadline, &attempt).await;
    let committed = matches!(
        result,
        Ok(ChunkRun::Committed { .. }) | Ok(ChunkRun::AlreadyCommitted)
    );
    if !committed {
        if let Err(err) = app
            .store
            .drop_lease(&pointer.job, pointer.seq, pointer.first_task, &attempt)
            .await
        {
            tracing::warn!(job_id = %pointer.job, seq = pointer.seq, error = %err, "could not drop lease; it expires on its own");
        }
    }
    if let Ok(ChunkRun::Committed { .. }) = &result {
        check_progress(app, &pointer.job).await?;
    }
    result
}

async fn run_leased(
    app: &App,
    pointer: &ChunkPointer,
    deadline: SystemTime,
    attempt: &str,
) -> Result<ChunkRun> {
    let job = match app.store.get_job(&pointer.job).await {
        Ok(job) => job,
        Err(Error::JobNotFound(id)) => {
            return Ok(ChunkRun::Skipped(format!("job {id} does not exist")))
        }
        Err(err) => return Err(err),
    };
    if job.status != JobStatus::Active {
        return Ok(ChunkRun::Skipped(format!("job is {}", job.status)));
    }
    if app
        .store
        .range_committed(&pointer.job, pointer.seq, pointer.first_task)
        .await?
    {
        return Ok(ChunkRun::AlreadyCommitted);
    }
    let body = get_bytes(
        &app.s3,
        &app.config.control_bucket,
        &chunk_key(&pointer.job, pointer.seq),
    )
    .await?;
    let text = String::from_utf8(body).map_err(|_| {
        Error::Data(format!(
            "chunk {} of job {} is not UTF-8",
            pointer.seq, pointer.job
        ))
    })?;
    let tasks = parse_chunk(&text)
        .map_err(|e| Error::Data(format!("chunk {} of job {}: {e}", pointer.seq, pointer.job)))?;
    let first = pointer.first_task as usize;
    if first >= tasks.len() {
        return Ok(ChunkRun::Skipped(format!(
            "chunk {} has {} tasks, none from {first}",
            pointer.seq,
            tasks.len()
        )));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_status(
        app.clone(),
        pointer.job.clone(),
        stop.clone(),
        finished.clone(),
    ));
    let copier = Copier {
        s3: &app.s3,
        spec: &job.spec.copy,
        settings: &app.copy,
        stop: &stop,
    };
    let stop_starting_at = deadline
        .checked_sub(app.config.worker_safety_margin)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let copier = &copier;
    let stop_flag = &stop;
    let tasks_ref = &tasks;
    // Consecutive tasks on the same key run one after another, in manifest order (a backup of
    // all versions must write them oldest first); everything else runs concurrently. Items are
    // plain index ranges: futures holding borrowed items trip the Send check of spawn.
    let units = same_key_runs(&tasks, first);
    let mut results: Vec<(usize, TaskResult)> = futures::stream::iter(units)
        .take_while(|_| {
            futures::future::ready(
                !stop_flag.load(Ordering::Relaxed) && SystemTime::now() < stop_starting_at,
            )
        })
        .map(|unit| async move {
            let mut done = Vec::with_capacity(unit.len());
            for index in unit {
                done.push((index, copier.run(&tasks_ref[index]).await));
            }
            done
        })
        .buffer_unordered(app.config.task_concurrency)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    finished.store(true, Ordering::Relaxed);
    watcher.abort();
    results.sort_by_key(|(index, _)| *index);
    let job_stopping = stop.load(Ordering::Relaxed);
    let started = results.len() as u64;
    if started == 0 {
        return if job_stopping {
            Ok(ChunkRun::Skipped(
                "job stopped before any task started".into(),
            ))
        } else {
            Err(Error::State {
                job_id: pointer.job.clone(),
                message: format!("chunk {}: no time left to start a task", pointer.seq),
            })
        };
    }
    let fragment = match &job.spec.manifest {
        ManifestSource::Backup(_) => {
            Some(write_fragment(app, pointer, attempt, &tasks, &results).await?)
        }
        _ => None,
    };
    let outcomes: Vec<TaskOutcome> = results
        .into_iter()
        .filter_map(|(_, r)| match r {
            TaskResult::Done(outcome) => Some(outcome),
            TaskResult::Abandoned => None,
        })
        .collect();
    let mut counters = Counters {
        ranges: 1,
        ..Default::default()
    };
    for outcome in &outcomes {
        match outcome.status {
            TaskStatus::Succeeded => counters.succeeded += 1,
            TaskStatus::Failed => counters.failed += 1,
        }
        counters.bytes += outcome.bytes;
    }
    let shards = write_shards(
        app,
        &job.job_id,
        pointer,
        attempt,
        &job.spec.report,
        &outcomes,
    )
    .await?;
    let end_task = pointer.first_task + started;
    let commit = RangeCommit {
        seq: pointer.seq,
        first_task: pointer.first_task,
        end_task,
        counters,
        shards,
        fragment,
    };
    match app
        .store
        .commit_range(&pointer.job, &commit, attempt)
        .await?
    {
        CommitOutcome::AlreadyCommitted => {
            for shard in &commit.shards {
                if let Err(err) = delete_object(&app.s3, &shard.bucket, &shard.key).await {
                    tracing::warn!(key = %shard.key, error = %err, "could not delete the losing attempt's report shard");
                }
            }
            Ok(ChunkRun::AlreadyCommitted)
        }
        CommitOutcome::Committed => {
            let remaining = (tasks.len() as u64).saturating_sub(end_task);
            let requeued_from = if remaining > 0 && !job_stopping {
                let next = ChunkPointer {
                    job: pointer.job.clone(),
                    seq: pointer.seq,
                    first_task: end_task,
                };
                app.queues.send_chunk(&next).await?;
                Some(end_task)
            } else {
                None
            };
            Ok(ChunkRun::Committed {
                tasks: outcomes.len() as u64,
                requeued_from,
            })
        }
    }
}

/// Backups: the destination version of every copy in this range, in task order (`S <version>`
/// for a copy made, `F` for one that failed), so the finalizer can complete the snapshot.
async fn write_fragment(
    app: &App,
    pointer: &ChunkPointer,
    attempt: &str,
    tasks: &[ChunkTask],
    results: &[(usize, TaskResult)],
) -> Result<String> {
    let mut body = String::new();
    for (index, result) in results {
        if !matches!(tasks.get(*index), Some(ChunkTask::Object { .. })) {
            continue;
        }
        match result {
            TaskResult::Done(outcome) if outcome.status == TaskStatus::Succeeded => {
                body.push_str("S\t");
                body.push_str(outcome.dest_version.as_deref().unwrap_or(""));
                body.push('\n');
            }
            _ => body.push_str("F\n"),
        }
    }
    let key = format!(
        "jobs/{}/fragments/{:010}-{:07}-{attempt}",
        pointer.job, pointer.seq, pointer.first_task
    );
    put_bytes(
        &app.s3,
        &app.config.control_bucket,
        &key,
        body.into_bytes(),
        "text/plain",
    )
    .await?;
    Ok(key)
}

/// Splits tasks `first..` into runs of consecutive tasks on the same source key.
fn same_key_runs(tasks: &[ChunkTask], first: usize) -> Vec<std::ops::Range<usize>> {
    let key = |task: &ChunkTask| match task {
        ChunkTask::Object { object, .. }
        | ChunkTask::Restore { object, .. }
        | ChunkTask::Delete { object, .. } => Some(object.key.clone()),
        ChunkTask::Malformed(_) => None,
    };
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for index in first..tasks.len() {
        match runs.last_mut() {
            Some(run)
                if key(&tasks[index]).is_some()
                    && key(&tasks[run.end - 1]) == key(&tasks[index]) =>
            {
                run.end = index + 1
            }
            _ => runs.push(index..index + 1),
        }
    }
    runs
}

/// Re-reads the job's status while tasks run; raises `stop` when it is cancelled or failing.
async fn watch_status(app: App, job_id: String, stop: Arc<AtomicBool>, finished: Arc<AtomicBool>) {
    let interval = app
        .config
        .status_check_interval
        .max(Duration::from_millis(10));
    while !finished.load(Ordering::Relaxed) {
        tokio::time::sleep(interval).await;
        match app.store.get_job(&job_id).await {
            Ok(job) if job.status.is_stopping() => {
                tracing::info!(job_id, status = %job.status, "job stopping: no new tasks start");
                stop.store(true, Ordering::Relaxed);
                return;
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(job_id, error = %err, "could not re-read job status"),
        }
    }
}

/// Writes this range's report rows: one shard per task status present (in the job's scope).
async fn write_shards(
    app: &App,
    job_id: &str,
    pointer: &ChunkPointer,
    attempt: &str,
    report: &Option<batchops_core::request::ReportTarget>,
    outcomes: &[TaskOutcome],
) -> Result<Vec<ShardRef>> {
    let Some(target) = report else {
        return Ok(Vec::new());
    };
    let mut shards = Vec::new();
    for status in [TaskStatus::Succeeded, TaskStatus::Failed] {
        let mut body = String::new();
        for outcome in outcomes
            .iter()
            .filter(|o| o.status == status && o.in_scope(target.scope))
        {
            outcome.write_row(&mut body);
        }
        if body.is_empty() {
            continue;
        }
        let key = result_shard_key(
            target,
            job_id,
            pointer.seq,
            pointer.first_task,
            attempt,
            status,
        );
        let md5 = put_bytes(&app.s3, &target.bucket, &key, body.into_bytes(), "text/csv").await?;
        shards.push(ShardRef {
            status,
            bucket: target.bucket.clone(),
            key,
            md5,
        });
    }
    Ok(shards)
}

/// After a commit: fail the job past the failure threshold, or wake the finalizer when every
/// task has run.
pub async fn check_progress(app: &App, job_id: &str) -> Result<()> {
    let counters = app.store.counters(job_id).await?;
    let job = app.store.get_job(job_id).await?;
    if job.status != JobStatus::Active {
        return Ok(());
    }
    let threshold = app.config.failure_threshold;
    if threshold.exceeded(&counters) {
        let reason = threshold.reason(&counters);
        let updated = app
            .store
            .update_job(job_id, |job| {
                if job.status != JobStatus::Active {
                    return Ok::<bool, ()>(false);
                }
                job.fail("TaskFailureThresholdExceeded", reason.clone(), now())
                    .map(|_| true)
                    .map_err(|_| ())
            })
            .await?;
        if updated.is_ok() {
            app.queues.request_finalize(job_id).await?;
        }
        return Ok(());
    }
    if job
        .total_tasks()
        .is_some_and(|total| counters.tasks_done() >= total)
    {
        app.queues.request_finalize(job_id).await?;
    }
    Ok(())
}

/// Lease expiry helper for callers that have no Lambda deadline.
pub fn local_deadline(app: &App) -> SystemTime {
    SystemTime::now() + app.config.local_chunk_deadline
}
