//! The worker: runs the tasks of one chunk pointer and commits them exactly once.
//!
//! Order of work: lease, read job, skip if the range is committed or the job is stopping, run
//! tasks with bounded concurrency while watching the job's status and the deadline, write the
//! report rows, then ONE transaction marks the range done and adds its counts. A redelivered
//! pointer finds the range committed and changes nothing; a worker that runs short on time
//! commits the tasks it finished and re-queues the rest.

use crate::error::{Error, Result};
use crate::objects::{delete_object, get_bytes, put_bytes};
use crate::ops::{self, RangeContext, TaskResult};
use crate::queue::ChunkPointer;
use crate::store::{CommitOutcome, RangeCommit, RangeLease, ShardRef};
use crate::{now, App};
use batchops_core::backoff::ErrorClass;
use batchops_core::chunk::{chunk_key, parse_chunk, ChunkTask};
use batchops_core::copies::CopyResult;
use batchops_core::counts::Counters;
use batchops_core::report::{staged_rows_key, TaskOutcome, TaskStatus};
use batchops_core::request::ManifestSource;
use batchops_core::{JobRecord, JobStatus};
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
    /// Another delivery had already committed this range; nothing changed (except that a
    /// successor pointer the first delivery owed is sent again).
    AlreadyCommitted,
    /// The job is gone, stopping or finished: the pointer is dropped.
    Skipped(String),
    /// Another attempt holds a live lease on this range: it runs the tasks; this delivery must
    /// come back later (if that attempt dies, its lease expires and a later delivery runs them).
    Busy { holder: String, expires_at: u64 },
    /// The range was tried too often: its tasks are failed in the report so the job can end.
    GaveUp { tasks: u64, attempts: u64 },
    /// The range's first task is a multipart copy that needs more than one invocation: its
    /// upload is kept and the same pointer was sent again to continue it.
    Continued,
}

/// What one attempt of a range produced before committing: outcomes of tasks `first..end`.
struct RangeWork {
    end_task: u64,
    chunk_tasks: u64,
    outcomes: Vec<TaskOutcome>,
    /// Backup runs: per task in the range, the destination version written (None: failed).
    fragment: Option<String>,
    /// The job began stopping while tasks ran: no successor is sent.
    job_stopping: bool,
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Until when a lease taken or renewed now lasts: a short term renewed while tasks run, never
/// past the invocation's own end.
fn lease_until(app: &App, deadline: SystemTime) -> u64 {
    let short = unix_secs(SystemTime::now() + app.config.lease_duration);
    short.min(unix_secs(deadline) + 5)
}

/// Tasks in flight, shared by every chunk an invocation (or the local runtime) holds: when one
/// chunk is down to its last few tasks, or between its commit and the next chunk's first task,
/// the other chunks it holds take the free slots instead of leaving them idle.
#[derive(Clone)]
pub struct TaskBudget {
    slots: Arc<tokio::sync::Semaphore>,
    size: usize,
}

impl TaskBudget {
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        TaskBudget {
            slots: Arc::new(tokio::sync::Semaphore::new(size)),
            size,
        }
    }

    /// A slot for one task, held while it runs; None only if the budget was closed.
    async fn slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.slots.acquire().await.ok()
    }
}

/// Runs one chunk pointer with a task budget of its own (`BATCHOPS_TASK_CONCURRENCY`).
/// `deadline` is when this invocation must have returned.
pub async fn process_chunk(
    app: &App,
    pointer: &ChunkPointer,
    deadline: SystemTime,
) -> Result<ChunkRun> {
    let budget = TaskBudget::new(app.config.task_concurrency);
    process_chunk_within(app, pointer, deadline, &budget, None).await
}

/// Runs one chunk pointer, its tasks taking slots from `budget` (shared with the other chunks
/// the caller holds). `deadline` is when this invocation must have returned. `all_started` is
/// told (or dropped) once no task of the chunk is left to start: its last tasks are in flight,
/// and a caller with more chunks to run can take its next one now instead of leaving slots
/// idle while they finish and commit.
pub async fn process_chunk_within(
    app: &App,
    pointer: &ChunkPointer,
    deadline: SystemTime,
    budget: &TaskBudget,
    all_started: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<ChunkRun> {
    let attempt = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let grant = app
        .store
        .acquire_range_lease(
            &pointer.job,
            pointer.seq,
            pointer.first_task,
            &attempt,
            lease_until(app, deadline),
            crate::unix_now(),
        )
        .await?;
    let (attempts, last_error) = match grant {
        RangeLease::Busy { holder, expires_at } => {
            tracing::info!(job_id = %pointer.job, seq = pointer.seq, first_task = pointer.first_task, holder, expires_at, "range is leased by another attempt; backing off");
            return Ok(ChunkRun::Busy { holder, expires_at });
        }
        RangeLease::Granted {
            attempts,
            last_error,
        } => (attempts, last_error),
    };
    let max = app.config.max_deliveries;
    let result = if attempts > max {
        let why = last_error
            .unwrap_or_else(|| "every attempt ended without a word (killed or timed out)".into());
        give_up(app, pointer, &attempt, attempts - 1, &why).await
    } else {
        match run_leased(app, pointer, deadline, &attempt, budget, all_started).await {
            // The last allowed attempt failed too: give up now, with its error.
            Err(err) if attempts >= max => {
                tracing::warn!(job_id = %pointer.job, seq = pointer.seq, attempts, error = %err, "range failed on its last attempt");
                give_up(app, pointer, &attempt, attempts, &err.to_string()).await
            }
            result => result,
        }
    };
    let result = match result {
        // Not even the failed rows could be written (the report bucket refuses them, say): the
        // job cannot account for these tasks, so it fails, saying why, instead of waiting.
        Err(err)
            if attempts > max + 2 || (attempts >= max && err.class() == ErrorClass::Permanent) =>
        {
            crate::planner::fail_job(
                app,
                &pointer.job,
                &err.failure_code("InternalError"),
                format!(
                    "chunk {} from task {}: could not run or fail its tasks after {attempts} attempts: {err}",
                    pointer.seq, pointer.first_task
                ),
            )
            .await?;
            Ok(ChunkRun::Skipped(format!("job failed: {err}")))
        }
        result => result,
    };
    match &result {
        Ok(ChunkRun::Committed { .. }) | Ok(ChunkRun::GaveUp { .. }) => {
            check_progress(app, &pointer.job).await?;
        }
        Ok(ChunkRun::Busy { .. }) | Ok(ChunkRun::Continued) => {}
        Ok(ChunkRun::AlreadyCommitted) | Ok(ChunkRun::Skipped(_)) | Err(_) => {
            let error = result.as_ref().err().map(|e| e.to_string());
            if let Err(err) = app
                .store
                .release_range_lease(
                    &pointer.job,
                    pointer.seq,
                    pointer.first_task,
                    &attempt,
                    error.as_deref(),
                )
                .await
            {
                tracing::warn!(job_id = %pointer.job, seq = pointer.seq, error = %err, "could not release lease; it expires on its own");
            }
        }
    }
    result
}

/// The job, when it is Active and this range is still owed; otherwise what the delivery ends
/// with (a committed range re-sends the successor it owed).
async fn job_owing_range(
    app: &App,
    pointer: &ChunkPointer,
) -> Result<std::result::Result<JobRecord, ChunkRun>> {
    let job = match app.store.get_job(&pointer.job).await {
        Ok(job) => job,
        Err(Error::JobNotFound(id)) => {
            return Ok(Err(ChunkRun::Skipped(format!("job {id} does not exist"))))
        }
        Err(err) => return Err(err),
    };
    if job.status != JobStatus::Active {
        return Ok(Err(ChunkRun::Skipped(format!("job is {}", job.status))));
    }
    if app
        .store
        .range_committed(&pointer.job, pointer.seq, pointer.first_task)
        .await?
    {
        resend_owed_successor(app, pointer).await?;
        return Ok(Err(ChunkRun::AlreadyCommitted));
    }
    Ok(Ok(job))
}

/// Chunk files this process's planner has just stored, held for this process's worker (the
/// local runtime runs both): a chunk taken from here is not read back, which spares a job's first
/// chunk a round trip before its first task. A stored file's body is all a read would return
/// (chunk files are written once, or again with the same body). Bounded: when a planner runs far
/// ahead of its workers, the oldest are let go and read from S3 as before.
#[derive(Debug, Default)]
pub struct ChunkHandoff {
    held: std::sync::Mutex<std::collections::VecDeque<(String, u64, Vec<u8>)>>,
}

impl ChunkHandoff {
    /// Chunk files held at most.
    pub const HELD: usize = 32;

    /// Holds chunk `seq` of a job, stored with `body`.
    pub fn offer(&self, job_id: &str, seq: u64, body: Vec<u8>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() >= Self::HELD {
            held.pop_front();
        }
        held.push_back((job_id.to_string(), seq, body));
    }

    /// Chunk `seq` of a job, if held: given once (a later delivery reads it from S3).
    pub fn take(&self, job_id: &str, seq: u64) -> Option<Vec<u8>> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let at = held.iter().position(|(j, s, _)| j == job_id && *s == seq)?;
        held.remove(at).map(|(_, _, body)| body)
    }
}

/// Reads and parses a chunk file.
async fn read_chunk(app: &App, pointer: &ChunkPointer) -> Result<Vec<ChunkTask>> {
    read_chunk_file(app, &pointer.job, pointer.seq).await
}

/// The tasks of chunk `seq` of a job.
pub(crate) async fn read_chunk_file(app: &App, job_id: &str, seq: u64) -> Result<Vec<ChunkTask>> {
    let handed = app
        .chunk_handoff
        .as_ref()
        .and_then(|handoff| handoff.take(job_id, seq));
    let body = match handed {
        Some(body) => body,
        None => get_bytes(&app.s3, &app.config.control_bucket, &chunk_key(job_id, seq)).await?,
    };
    let text = String::from_utf8(body)
        .map_err(|_| Error::Data(format!("chunk {seq} of job {job_id} is not UTF-8")))?;
    parse_chunk(&text).map_err(|e| Error::Data(format!("chunk {seq} of job {job_id}: {e}")))
}

/// A redelivered pointer whose range is committed: the first delivery may have died between
/// its commit and sending the pointer for the rest of the chunk. Follows the chain of committed
/// ranges and sends the pointer for the first task none covers (a duplicate is harmless: it
/// finds the range leased or committed).
async fn resend_owed_successor(app: &App, pointer: &ChunkPointer) -> Result<Option<u64>> {
    let mut at = pointer.first_task;
    let mut chunk_tasks = None;
    // Each step moves forward within one chunk; bounded by its task count.
    for _ in 0..=app.config.chunk_size {
        match app
            .store
            .committed_range_end(&pointer.job, pointer.seq, at)
            .await?
        {
            Some((end, tasks)) if end > at => {
                chunk_tasks = tasks.or(chunk_tasks);
                if chunk_tasks.is_some_and(|n| end >= n) {
                    return Ok(None);
                }
                at = end;
            }
            _ => break,
        }
    }
    if at == pointer.first_task {
        return Ok(None);
    }
    let chunk_tasks = match chunk_tasks {
        Some(n) => n,
        // Ranges committed before chunk sizes were recorded: count the chunk's tasks.
        None => read_chunk(app, pointer).await?.len() as u64,
    };
    if at >= chunk_tasks {
        return Ok(None);
    }
    let next = ChunkPointer {
        job: pointer.job.clone(),
        seq: pointer.seq,
        first_task: at,
    };
    tracing::info!(job_id = %pointer.job, seq = pointer.seq, first_task = at, "re-sending the successor pointer a committed range owed");
    app.queues.send_chunk(&next).await?;
    Ok(Some(at))
}

async fn run_leased(
    app: &App,
    pointer: &ChunkPointer,
    deadline: SystemTime,
    attempt: &str,
    budget: &TaskBudget,
    all_started: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<ChunkRun> {
    // The chunk file is read while the job, the range and the target bucket's Region are
    // looked up: each is a round trip, and none needs another's answer.
    let job_and_target = async {
        let job = match job_owing_range(app, pointer).await? {
            Ok(job) => job,
            Err(done) => return Ok(Err(done)),
        };
        // The job's clients (its role): one for the bucket it writes to, and each task's
        // source bucket's own, each in that bucket's Region.
        let clients = app.job_clients(&job);
        let target_s3 = match job.spec.operation.target_bucket() {
            Some(bucket) => Some(clients.s3(bucket).await),
            None => None,
        };
        Ok::<_, Error>(Ok((job, clients, target_s3)))
    };
    let (job_and_target, tasks) = tokio::join!(job_and_target, read_chunk(app, pointer));
    let (job, clients, target_s3) = match job_and_target? {
        Ok(found) => found,
        Err(done) => return Ok(done),
    };
    let tasks = tasks?;
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
        pointer.clone(),
        attempt.to_string(),
        deadline,
        stop.clone(),
        finished.clone(),
    ));
    let stop_starting_at = deadline
        .checked_sub(app.config.worker_safety_margin)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let source_bucket = tasks[first..]
        .iter()
        .find_map(|task| task.object().map(|object| object.bucket.as_str()));
    let source_s3 = match source_bucket {
        Some(bucket) => clients.s3(bucket).await,
        None => clients.default_s3(),
    };
    let target_s3 = target_s3.unwrap_or_else(|| source_s3.clone());
    let runner = ops::runner(
        &job.spec.operation,
        RangeContext {
            app,
            job_id: &pointer.job,
            seq: pointer.seq,
            stop: &stop,
            stop_starting_at,
            s3: &target_s3,
            sources: &clients,
        },
    );
    let runner = &*runner;
    let stop_flag = &stop;
    let tasks_ref = &tasks;
    let may_start =
        move || !stop_flag.load(Ordering::Relaxed) && SystemTime::now() < stop_starting_at;
    // Consecutive tasks on the same key run one after another, in manifest order (a backup of
    // all versions must write them oldest first); everything else runs concurrently, each task
    // holding a slot of the budget while it runs. Every task, inside a unit too, starts only
    // while there is time left and the job runs (checked once it has its slot: waiting for one
    // can take a while). A unit that starts nothing leaves a gap: the range ends before it.
    // Items are plain index ranges: futures holding borrowed items trip the Send check of spawn.
    // Once the stream has taken its last unit, at most `budget.size` tasks are left to start.
    let mut all_started = all_started;
    let units = same_key_runs(&tasks, first)
        .into_iter()
        .chain(std::iter::from_fn(move || {
            if let Some(told) = all_started.take() {
                let _ = told.send(());
            }
            None
        }));
    let mut results: Vec<(usize, TaskResult)> = futures::stream::iter(units)
        .take_while(|_| futures::future::ready(may_start()))
        .map(|unit| async move {
            let mut done = Vec::with_capacity(unit.len());
            for index in unit {
                let Some(_slot) = budget.slot().await else {
                    break;
                };
                if !may_start() {
                    break;
                }
                let result = ops::run_task(runner, index as u64, &tasks_ref[index]).await;
                let suspended = result == TaskResult::Suspended;
                done.push((index, result));
                if suspended {
                    break;
                }
            }
            done
        })
        .buffer_unordered(budget.size)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    finished.store(true, Ordering::Relaxed);
    watcher.abort();
    results.sort_by_key(|(index, _)| *index);
    // The range committed is the unbroken run of tasks from `first`: a unit cut short leaves a
    // gap, and tasks after the gap run again with the successor (counted once, there).
    // A suspended multipart copy ends the range too: the successor starts with it.
    let contiguous = results
        .iter()
        .enumerate()
        .take_while(|(i, (index, result))| *index == first + i && *result != TaskResult::Suspended)
        .count();
    let first_suspended = results
        .first()
        .is_some_and(|(index, result)| *index == first && *result == TaskResult::Suspended);
    results.truncate(contiguous);
    let job_stopping = stop.load(Ordering::Relaxed);
    let started = results.len() as u64;
    if started == 0 && first_suspended && !job_stopping {
        // Only the first task ran, and it needs more invocations (a copy of hundreds of GiB):
        // hand the same range on. Parts were copied, so this counts as progress, not an attempt.
        app.queues.send_chunk(pointer).await?;
        app.store
            .release_range_lease_after_progress(
                &pointer.job,
                pointer.seq,
                pointer.first_task,
                attempt,
            )
            .await?;
        return Ok(ChunkRun::Continued);
    }
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
        ManifestSource::Backup(_) => Some(fragment_body(&tasks, &results)),
        _ => None,
    };
    let outcomes: Vec<TaskOutcome> = results
        .into_iter()
        .filter_map(|(_, r)| match r {
            TaskResult::Done(outcome) => Some(outcome),
            TaskResult::Abandoned | TaskResult::Suspended => None,
        })
        .collect();
    let work = RangeWork {
        end_task: pointer.first_task + started,
        chunk_tasks: tasks.len() as u64,
        outcomes,
        fragment,
        job_stopping,
    };
    let tasks_run = work.outcomes.len() as u64;
    let requeued_from = match commit_work(app, &job, pointer, attempt, work).await? {
        Some(committed) => committed,
        None => return Ok(ChunkRun::AlreadyCommitted),
    };
    Ok(ChunkRun::Committed {
        tasks: tasks_run,
        requeued_from,
    })
}

/// Writes a range's report shards and catalog fragment, commits it, and sends the pointer for
/// the rest of the chunk. Some(successor sent) when this attempt committed; None when another
/// delivery had (its own files are removed) or the job stopped first.
async fn commit_work(
    app: &App,
    job: &JobRecord,
    pointer: &ChunkPointer,
    attempt: &str,
    work: RangeWork,
) -> Result<Option<Option<u64>>> {
    let fragment = match work.fragment {
        Some(body) => Some(write_fragment(app, pointer, attempt, body).await?),
        None => None,
    };
    let mut counters = Counters {
        ranges: 1,
        ..Default::default()
    };
    for outcome in &work.outcomes {
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
        &work.outcomes,
    )
    .await?;
    let commit = RangeCommit {
        seq: pointer.seq,
        first_task: pointer.first_task,
        end_task: work.end_task,
        chunk_tasks: Some(work.chunk_tasks),
        counters,
        shards,
        fragment,
    };
    match app
        .store
        .commit_range(&pointer.job, &commit, attempt)
        .await?
    {
        outcome @ (CommitOutcome::AlreadyCommitted
        | CommitOutcome::JobStopped
        | CommitOutcome::LeaseLost) => {
            tracing::info!(job_id = %pointer.job, seq = pointer.seq, first_task = pointer.first_task, ?outcome, "range not committed by this attempt; removing its files");
            let files = commit
                .shards
                .iter()
                .map(|shard| (shard.bucket.as_str(), shard.key.as_str()))
                .chain(
                    commit
                        .fragment
                        .iter()
                        .map(|key| (app.config.control_bucket.as_str(), key.as_str())),
                );
            for (bucket, key) in files {
                if let Err(err) = delete_object(&app.s3, bucket, key).await {
                    tracing::warn!(key, error = %err, "could not delete the losing attempt's file");
                }
            }
            if outcome == CommitOutcome::AlreadyCommitted {
                resend_owed_successor(app, pointer).await?;
            }
            Ok(None)
        }
        CommitOutcome::Committed => {
            let remaining = work.chunk_tasks.saturating_sub(work.end_task);
            let requeued_from = if remaining > 0 && !work.job_stopping {
                let next = ChunkPointer {
                    job: pointer.job.clone(),
                    seq: pointer.seq,
                    first_task: work.end_task,
                };
                app.queues.send_chunk(&next).await?;
                Some(work.end_task)
            } else {
                None
            };
            Ok(Some(requeued_from))
        }
    }
}

/// The range was attempted `attempts` times without a commit: fail its tasks in the report
/// (naming the last error) and commit them, so the job can end. The DLQ keeps the pointer for
/// inspection; the job does not wait for it.
async fn give_up(
    app: &App,
    pointer: &ChunkPointer,
    attempt: &str,
    attempts: u64,
    last_error: &str,
) -> Result<ChunkRun> {
    let job = match job_owing_range(app, pointer).await? {
        Ok(job) => job,
        Err(done) => return Ok(done),
    };
    let tasks = match read_chunk(app, pointer).await {
        Ok(tasks) => tasks,
        Err(err) => {
            // Without the chunk there are no rows to write: the job cannot account for its tasks.
            crate::planner::fail_job(
                app,
                &pointer.job,
                "ChunkUnreadable",
                format!(
                    "chunk {} could not be read after {attempts} deliveries: {err}",
                    pointer.seq
                ),
            )
            .await?;
            return Ok(ChunkRun::Skipped(format!("chunk unreadable: {err}")));
        }
    };
    let first = (pointer.first_task as usize).min(tasks.len());
    let message = format!("gave up after {attempts} deliveries: {last_error}");
    tracing::error!(job_id = %pointer.job, seq = pointer.seq, first_task = first, message, "failing the range's tasks");
    let failed: Vec<(usize, TaskResult)> = (first..tasks.len())
        .map(|index| {
            let outcome = tasks[index].failed_outcome(500, "InternalError", message.clone());
            (index, TaskResult::Done(outcome))
        })
        .collect();
    let fragment = match &job.spec.manifest {
        ManifestSource::Backup(_) => Some(fragment_body(&tasks, &failed)),
        _ => None,
    };
    let outcomes: Vec<TaskOutcome> = failed
        .into_iter()
        .filter_map(|(_, result)| match result {
            TaskResult::Done(outcome) => Some(outcome),
            _ => None,
        })
        .collect();
    let count = outcomes.len() as u64;
    let work = RangeWork {
        end_task: tasks.len() as u64,
        chunk_tasks: tasks.len() as u64,
        outcomes,
        fragment,
        job_stopping: false,
    };
    match commit_work(app, &job, pointer, attempt, work).await? {
        Some(_) => Ok(ChunkRun::GaveUp {
            tasks: count,
            attempts,
        }),
        None => Ok(ChunkRun::AlreadyCommitted),
    }
}

/// Backups: the result of every copy in this range, in task order (see
/// [`batchops_core::copies`]), so the finalizer can complete the snapshot.
fn fragment_body(tasks: &[ChunkTask], results: &[(usize, TaskResult)]) -> String {
    let mut body = String::new();
    for (index, result) in results {
        if !matches!(tasks.get(*index), Some(ChunkTask::Object { .. })) {
            continue;
        }
        let result = match result {
            TaskResult::Done(outcome) if outcome.status == TaskStatus::Succeeded => {
                CopyResult::Copied {
                    dest_version: outcome.dest_version.clone(),
                }
            }
            _ => CopyResult::Failed,
        };
        result.write_line(&mut body);
    }
    body
}

async fn write_fragment(
    app: &App,
    pointer: &ChunkPointer,
    attempt: &str,
    body: String,
) -> Result<String> {
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
    let key = |task: &ChunkTask| task.object().map(|object| object.key.clone());
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

/// While tasks run: re-reads the job's status (raising `stop` when it is cancelled or failing)
/// and renews the range's lease (raising `stop` when another attempt took it over).
async fn watch_status(
    app: App,
    pointer: ChunkPointer,
    attempt: String,
    deadline: SystemTime,
    stop: Arc<AtomicBool>,
    finished: Arc<AtomicBool>,
) {
    let job_id = pointer.job.as_str();
    let interval = app
        .config
        .status_check_interval
        .max(Duration::from_millis(10));
    let renew_every = (app.config.lease_duration / 3).max(Duration::from_millis(10));
    let mut renewed = std::time::Instant::now();
    while !finished.load(Ordering::Relaxed) {
        tokio::time::sleep(interval.min(renew_every)).await;
        if renewed.elapsed() >= renew_every {
            match app
                .store
                .renew_range_lease(
                    job_id,
                    pointer.seq,
                    pointer.first_task,
                    &attempt,
                    lease_until(&app, deadline),
                )
                .await
            {
                Ok(true) => renewed = std::time::Instant::now(),
                Ok(false) => {
                    tracing::warn!(
                        job_id,
                        seq = pointer.seq,
                        "another attempt took this range's lease over: no new tasks start"
                    );
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
                Err(err) => tracing::warn!(job_id, error = %err, "could not renew the range lease"),
            }
        }
        match app.store.get_job(job_id).await {
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
        // Staged in the control bucket: the finalizer rolls them into the report's few large
        // result files (a report of a billion tasks lists thousands of files, not millions).
        let bucket = &app.config.control_bucket;
        let key = staged_rows_key(job_id, pointer.seq, pointer.first_task, attempt, status);
        let md5 = put_bytes(&app.s3, bucket, &key, body.into_bytes(), "text/csv").await?;
        shards.push(ShardRef {
            status,
            bucket: bucket.clone(),
            key,
            md5,
        });
    }
    Ok(shards)
}

/// After a commit: fail the job past the failure threshold, or wake the finalizer when every
/// task has run.
pub async fn check_progress(app: &App, job_id: &str) -> Result<()> {
    let (counters, job) = tokio::join!(app.store.counters(job_id), app.store.get_job(job_id));
    let (counters, job) = (counters?, job?);
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

/// When a delivery that found its range leased (`ChunkRun::Busy`) should come back: just after
/// the holder's lease runs out, so a dead holder's range is taken over at once.
pub fn busy_retry_seconds(expires_at: u64) -> i32 {
    expires_at
        .saturating_sub(crate::unix_now())
        .saturating_add(1)
        .clamp(1, 43_200) as i32
}

/// Lease expiry helper for callers that have no Lambda deadline.
pub fn local_deadline(app: &App) -> SystemTime {
    SystemTime::now() + app.config.local_chunk_deadline
}

#[cfg(test)]
mod tests {
    use super::ChunkHandoff;

    #[test]
    fn a_handed_off_chunk_is_given_once_and_the_oldest_are_let_go_past_the_bound() {
        let handoff = ChunkHandoff::default();
        for seq in 0..ChunkHandoff::HELD as u64 + 2 {
            handoff.offer("job", seq, format!("chunk {seq}").into_bytes());
        }
        // The first two went to make room; the rest are held, each for one taker.
        assert_eq!(handoff.take("job", 0), None);
        assert_eq!(handoff.take("job", 1), None);
        assert_eq!(handoff.take("job", 2), Some(b"chunk 2".to_vec()));
        assert_eq!(handoff.take("job", 2), None);
        assert_eq!(handoff.take("other", 3), None);
        let last = ChunkHandoff::HELD as u64 + 1;
        assert_eq!(
            handoff.take("job", last),
            Some(format!("chunk {last}").into_bytes())
        );
    }
}
