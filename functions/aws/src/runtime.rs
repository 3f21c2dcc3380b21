//! `batchops run`: the local runtime. Polls the same queues and calls the same handler code as
//! the Lambda functions (planner sweep on a timer, workers on the work queue, finalizer on the
//! finalize queue), so a whole job runs on one machine against any S3/SQS/DynamoDB endpoint.

use crate::error::{Error, Result};
use crate::events::{handle_messages, EventMessage};
use crate::finalizer::{finalize_accounted, Finalized};
use crate::planner::{advance_accounted, sweep};
use crate::queue::{ChunkPointer, JobPointer};
use crate::setup::work_visibility_seconds;
use crate::worker::{
    busy_retry_seconds, local_deadline, process_chunk_within, ChunkRun, TaskBudget,
};
use crate::App;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Return once no job has work left (none New, Preparing, Ready, Active, Completing,
    /// Cancelling or Failing) and the events queue is empty.
    pub until_idle: bool,
    /// Chunk pointers processed at once. Their tasks share one budget of
    /// `BATCHOPS_TASK_CONCURRENCY` slots: while one chunk finishes (or commits), the others
    /// take its slots.
    pub concurrency: usize,
    /// How often the planner sweeps every job.
    pub sweep_interval: Duration,
    /// Give up (with an error) after this long.
    pub max_duration: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            until_idle: false,
            concurrency: 2,
            sweep_interval: Duration::from_secs(5),
            max_duration: None,
        }
    }
}

/// How often `--until-idle` lists working jobs (besides right after a job ends): a listing is a
/// query per working status.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How long the marking of working jobs waits for the planner's first look to end.
const MARKING_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct RunStats {
    pub chunks: AtomicU64,
    /// S3 event messages handled (continuous backups, inventory arrivals).
    pub events: AtomicU64,
    pub finalizations: AtomicU64,
    pub errors: AtomicU64,
    /// Raised when the finalizer ended a job (the runtime may now be idle).
    job_ended: tokio::sync::Notify,
}

pub async fn run(app: Arc<App>, options: RunOptions) -> Result<Arc<RunStats>> {
    // The planner and the workers share this process: chunks go from one to the other in memory.
    let app = match app.chunk_handoff {
        Some(_) => app,
        None => Arc::new((*app).clone().with_chunk_handoff()),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let stats = Arc::new(RunStats::default());
    let mut tasks = Vec::new();
    let first_look_ended = Arc::new(tokio::sync::Notify::new());
    tasks.push(tokio::spawn(planner_loop(
        app.clone(),
        options.sweep_interval,
        stop_rx.clone(),
        stats.clone(),
        first_look_ended.clone(),
    )));
    let budget = TaskBudget::new(app.config.task_concurrency);
    for _ in 0..options.concurrency.max(1) {
        tasks.push(tokio::spawn(worker_loop(
            app.clone(),
            budget.clone(),
            stop_rx.clone(),
            stats.clone(),
        )));
    }
    tasks.push(tokio::spawn(finalizer_loop(
        app.clone(),
        stop_rx.clone(),
        stats.clone(),
    )));
    // Jobs of a table written before working markers existed get theirs, or the idle check
    // and the sweep would not see them. Marked once the planner's first look (at the plan
    // queue) has ended, or after MARKING_WAIT: the marking reads every working job, and a job
    // created just before the runtime started should not wait on that for its first copy. A
    // sweep that runs before the marking ends sees such a job next time.
    // The events queue is optional locally: without it, continuous backups just wait for runs.
    let marking = async {
        let _ = tokio::time::timeout(MARKING_WAIT, first_look_ended.notified()).await;
        app.store.mark_working_jobs().await
    };
    let (marked, events_queue) = tokio::join!(
        marking,
        crate::queue::resolve(app.queues.client(), &app.config.events_queue)
    );
    let events_url = match events_queue {
        Ok(url) => {
            tasks.push(tokio::spawn(events_loop(
                app.clone(),
                url.clone(),
                stop_rx.clone(),
                stats.clone(),
            )));
            Some(url)
        }
        Err(err) => {
            tracing::info!(error = %err, "no events queue; S3 events are not handled");
            None
        }
    };

    // A failed marking stops the loops just started, as any other end does.
    let outcome = match marked {
        Ok(_) => until_done(&app, &options, events_url.as_deref(), &stats).await,
        Err(err) => Err(err),
    };
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    outcome.map(|_| stats)
}

/// Until the runtime should stop: idle (with `--until-idle`), told to (Ctrl-C), or out of
/// `--max-seconds`.
async fn until_done(
    app: &App,
    options: &RunOptions,
    events_url: Option<&str>,
    stats: &RunStats,
) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Some(limit) = options.max_duration {
            if started.elapsed() > limit {
                break Err(Error::Invalid(format!(
                    "jobs still had work after {limit:?}"
                )));
            }
        }
        if options.until_idle && idle(app, events_url).await {
            break Ok(());
        }
        // A job's end (the finalizer's) is when the runtime may have become idle: look at once.
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = tokio::time::sleep(IDLE_CHECK_INTERVAL) => {}
            _ = stats.job_ended.notified() => {}
        }
    }
}

/// No job has work left, and no S3 event waits or is being handled.
async fn idle(app: &App, events_url: Option<&str>) -> bool {
    // Both asked at once: this check is what a finished `--until-idle` run waits on.
    let events_pending = async {
        match events_url {
            Some(url) => app.queues.pending(url).await.unwrap_or(1),
            None => 0,
        }
    };
    match tokio::join!(app.store.any_working_job(), events_pending) {
        (Ok(false), pending) => pending == 0,
        (Ok(true), _) => false,
        (Err(err), _) => {
            tracing::warn!(error = %err, "could not look for working jobs");
            false
        }
    }
}

async fn planner_loop(
    app: Arc<App>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    stats: Arc<RunStats>,
    first_look_ended: Arc<tokio::sync::Notify>,
) {
    // Plan-queue wake-ups (they name one job) are long-polled, so a new job is planned as soon
    // as it is created; the sweep of all jobs (due backups, slices to resume, stuck jobs) runs
    // every `interval`. The first look is at the plan queue, without waiting: a job created
    // just before the runtime started is planned at once, not after a sweep of every job.
    let mut last_sweep: Option<Instant> = None;
    let mut first_look = true;
    while !*stop.borrow() {
        if !first_look && last_sweep.is_none_or(|at| at.elapsed() >= interval) {
            last_sweep = Some(Instant::now());
            if let Err(err) = sweep(&app, Instant::now() + app.config.plan_slice).await {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %err, "planner sweep failed");
            }
        }
        let wait = if first_look {
            0
        } else {
            interval
                .saturating_sub(last_sweep.map_or(Duration::ZERO, |at| at.elapsed()))
                .as_secs()
                .clamp(0, 1) as i32
        };
        let received = app.queues.receive(&app.queues.plan_url, 10, wait, 60);
        match until_stopped(&mut stop, received).await {
            None => break,
            Some(Ok(messages)) => {
                for message in messages {
                    if let Ok(pointer) = serde_json::from_str::<JobPointer>(&message.body) {
                        let deadline = Instant::now() + app.config.plan_slice;
                        if let Err(err) =
                            advance_accounted(&app, &pointer.job, deadline, true).await
                        {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(job_id = %pointer.job, error = %err, "planner failed");
                        }
                    }
                    let _ = app
                        .queues
                        .delete(&app.queues.plan_url, &message.receipt_handle)
                        .await;
                }
            }
            Some(Err(err)) => {
                tracing::warn!(error = %err, "plan queue receive failed");
                pause(&mut stop, Duration::from_secs(1)).await;
            }
        }
        if std::mem::take(&mut first_look) {
            first_look_ended.notify_one();
            continue;
        }
        if wait == 0 {
            // Less than a second to the next sweep: wait for it without spinning.
            let left =
                interval.saturating_sub(last_sweep.map_or(Duration::ZERO, |at| at.elapsed()));
            pause(&mut stop, left).await;
        }
    }
}

/// Chunks one worker loop holds at once: the one whose last tasks are finishing (and
/// committing) and the next, whose tasks take the slots they leave.
const CHUNKS_PER_WORKER_LOOP: usize = 2;

async fn worker_loop(
    app: Arc<App>,
    budget: TaskBudget,
    mut stop: watch::Receiver<bool>,
    stats: Arc<RunStats>,
) {
    let visibility = work_visibility_seconds(&app.config);
    let held = Arc::new(tokio::sync::Semaphore::new(CHUNKS_PER_WORKER_LOOP));
    let mut running = tokio::task::JoinSet::new();
    while !*stop.borrow() {
        while running.try_join_next().is_some() {}
        let Ok(permit) = held.clone().acquire_owned().await else {
            break;
        };
        let received = receive_work(&app);
        let messages = match until_stopped(&mut stop, received).await {
            None => break,
            Some(Ok(messages)) => messages,
            Some(Err(err)) => {
                tracing::warn!(error = %err, "work queue receive failed");
                pause(&mut stop, Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut permit = Some(permit);
        for message in messages {
            let pointer: ChunkPointer = match serde_json::from_str(&message.body) {
                Ok(p) => p,
                Err(err) => {
                    // Same as Lambda: a bad body is left to SQS, which moves it to the DLQ.
                    tracing::error!(body = %message.body, error = %err, "work message is not a chunk pointer");
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    let _ = app
                        .queues
                        .release(&app.queues.work_url, &message.receipt_handle, 5)
                        .await;
                    continue;
                }
            };
            let (all_started, started) = tokio::sync::oneshot::channel();
            let (app, budget, stats, permit) =
                (app.clone(), budget.clone(), stats.clone(), permit.take());
            running.spawn(async move {
                let _permit = permit;
                // Taken: the claim window becomes the full visibility, while the chunk starts.
                let ((), run) = tokio::join!(
                    extend_visibility(&app, &message.receipt_handle, visibility),
                    with_visibility_heartbeat(
                        &app,
                        &message.receipt_handle,
                        visibility,
                        process_chunk_within(
                            &app,
                            &pointer,
                            local_deadline(&app),
                            &budget,
                            Some(all_started),
                        ),
                    )
                );
                settle_work_message(&app, &message.receipt_handle, &pointer, run, &stats).await;
            });
            // Told when the chunk has no task left to start, or (dropped) when it ended.
            let _ = started.await;
        }
    }
    // Every chunk taken is finished (its message deleted or released) before the loop ends.
    while running.join_next().await.is_some() {}
}

/// How long a chunk pointer the runtime receives stays hidden before the worker loop that took
/// it says it has it (and extends that to the full visibility). SQS cannot call back a long
/// poll: one still waiting when the runtime stops (it stops at once, not at the end of its
/// polls) takes a message sent in the next second, a new job's first chunk say, for no one.
/// That message is back after this window, not after the full visibility.
pub const WORK_CLAIM_SECONDS: i32 = 2;

/// One long poll of the work queue, as the worker loops make it: a pointer it returns is hidden
/// for [`WORK_CLAIM_SECONDS`] only, until its taker extends it.
pub async fn receive_work(app: &App) -> Result<Vec<crate::queue::Received>> {
    app.queues
        .receive(&app.queues.work_url, 1, 1, WORK_CLAIM_SECONDS)
        .await
}

/// Deletes or releases a work message after its chunk ran.
async fn settle_work_message(
    app: &App,
    receipt_handle: &str,
    pointer: &ChunkPointer,
    run: Result<ChunkRun>,
    stats: &RunStats,
) {
    match run {
        Ok(ChunkRun::Busy { expires_at, .. }) => {
            // Another attempt holds the range. This may be that attempt's own message back
            // after it died: retry once its lease has run out, never drop it.
            let _ = app
                .queues
                .release(
                    &app.queues.work_url,
                    receipt_handle,
                    busy_retry_seconds(expires_at),
                )
                .await;
        }
        Ok(run) => {
            stats.chunks.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(job_id = %pointer.job, seq = pointer.seq, ?run, "chunk done");
            let _ = app
                .queues
                .delete(&app.queues.work_url, receipt_handle)
                .await;
        }
        Err(err) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(job_id = %pointer.job, seq = pointer.seq, error = %err, "chunk failed; will be retried");
            let _ = app
                .queues
                .release(&app.queues.work_url, receipt_handle, 2)
                .await;
        }
    }
}

/// `receive`, unless the runtime is told to stop first (None): stopping does not wait for a long
/// poll. Messages a poll cut short had taken are neither processed nor deleted: SQS shows them
/// again after their visibility timeout. Every message a loop did receive, it handles (deletes
/// or releases) before it looks at `stop` again.
async fn until_stopped<T>(
    stop: &mut watch::Receiver<bool>,
    receive: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = stop.wait_for(|stopped| *stopped) => None,
        received = receive => Some(received),
    }
}

/// Sleeps for `duration`, or until the runtime is told to stop.
async fn pause(stop: &mut watch::Receiver<bool>, duration: Duration) {
    let _ = tokio::time::timeout(duration, stop.wait_for(|stopped| *stopped)).await;
}

/// Hides a work message for `visibility` seconds from now; a failure is logged (the message
/// comes back early, and its range lease keeps a second taker off).
async fn extend_visibility(app: &App, receipt_handle: &str, visibility: i32) {
    if let Err(err) = app
        .queues
        .release(&app.queues.work_url, receipt_handle, visibility)
        .await
    {
        tracing::warn!(error = %err, "could not extend the work message's visibility");
    }
}

/// Runs `work` while extending the message's visibility every third of `visibility` seconds,
/// so a live runtime keeps its chunk however long it runs and a killed one loses it quickly.
async fn with_visibility_heartbeat<T>(
    app: &App,
    receipt_handle: &str,
    visibility: i32,
    work: impl std::future::Future<Output = T>,
) -> T {
    let every = Duration::from_secs((visibility as u64 / 3).max(1));
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tokio::time::sleep(every) => extend_visibility(app, receipt_handle, visibility).await,
        }
    }
}

async fn finalizer_loop(app: Arc<App>, mut stop: watch::Receiver<bool>, stats: Arc<RunStats>) {
    while !*stop.borrow() {
        let received = app.queues.receive(&app.queues.finalize_url, 10, 1, 30);
        let messages = match until_stopped(&mut stop, received).await {
            None => break,
            Some(Ok(messages)) => messages,
            Some(Err(err)) => {
                tracing::warn!(error = %err, "finalize queue receive failed");
                pause(&mut stop, Duration::from_secs(1)).await;
                continue;
            }
        };
        for message in messages {
            let Ok(pointer) = serde_json::from_str::<JobPointer>(&message.body) else {
                let _ = app
                    .queues
                    .delete(&app.queues.finalize_url, &message.receipt_handle)
                    .await;
                continue;
            };
            match finalize_accounted(&app, &pointer.job).await {
                Ok(Finalized::Waiting { .. }) => {
                    let _ = app
                        .queues
                        .release(&app.queues.finalize_url, &message.receipt_handle, 1)
                        .await;
                }
                Ok(outcome) => {
                    stats.finalizations.fetch_add(1, Ordering::Relaxed);
                    stats.job_ended.notify_one();
                    tracing::debug!(job_id = %pointer.job, ?outcome, "finalizer ran");
                    let _ = app
                        .queues
                        .delete(&app.queues.finalize_url, &message.receipt_handle)
                        .await;
                }
                Err(err) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(job_id = %pointer.job, error = %err, "finalizer failed; will be retried");
                    let _ = app
                        .queues
                        .release(&app.queues.finalize_url, &message.receipt_handle, 2)
                        .await;
                }
            }
        }
    }
}

/// Same as the events Lambda: batches of up to ten notifications; failed ones come back after a
/// short delay.
async fn events_loop(
    app: Arc<App>,
    url: String,
    mut stop: watch::Receiver<bool>,
    stats: Arc<RunStats>,
) {
    while !*stop.borrow() {
        let received = app.queues.receive(&url, 10, 1, 120);
        let messages = match until_stopped(&mut stop, received).await {
            None => break,
            Some(Ok(messages)) => messages,
            Some(Err(err)) => {
                tracing::warn!(error = %err, "events queue receive failed");
                pause(&mut stop, Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let batch = messages
            .iter()
            .map(|m| EventMessage {
                id: m.message_id.clone(),
                body: m.body.clone(),
            })
            .collect();
        let summary = handle_messages(&app, batch).await;
        tracing::debug!(?summary, "S3 events handled");
        for message in messages {
            stats.events.fetch_add(1, Ordering::Relaxed);
            if summary.failed.contains(&message.message_id) {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                let _ = app.queues.release(&url, &message.receipt_handle, 2).await;
            } else {
                let _ = app.queues.delete(&url, &message.receipt_handle).await;
            }
        }
    }
}
