//! `batchops run`: the local runtime. Polls the same queues and calls the same handler code as
//! the Lambda functions (planner sweep on a timer, workers on the work queue, finalizer on the
//! finalize queue), so a whole job runs on one machine against any S3/SQS/DynamoDB endpoint.

use crate::error::{Error, Result};
use crate::events::{handle_messages, EventMessage};
use crate::finalizer::{finalize_accounted, Finalized};
use crate::planner::{advance_accounted, sweep};
use crate::queue::{ChunkPointer, JobPointer};
use crate::setup::work_visibility_seconds;
use crate::worker::{local_deadline, process_chunk};
use crate::App;
use batchops_core::JobStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Return once no job has work left (none New, Preparing, Ready, Active, Completing,
    /// Cancelling or Failing) and the events queue is empty.
    pub until_idle: bool,
    /// Chunk pointers processed at once.
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
            sweep_interval: Duration::from_secs(1),
            max_duration: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct RunStats {
    pub chunks: AtomicU64,
    /// S3 event messages handled (continuous backups, inventory arrivals).
    pub events: AtomicU64,
    pub finalizations: AtomicU64,
    pub errors: AtomicU64,
}

pub async fn run(app: Arc<App>, options: RunOptions) -> Result<Arc<RunStats>> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stats = Arc::new(RunStats::default());
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(planner_loop(
        app.clone(),
        options.sweep_interval,
        stop_rx.clone(),
        stats.clone(),
    )));
    for _ in 0..options.concurrency.max(1) {
        tasks.push(tokio::spawn(worker_loop(
            app.clone(),
            stop_rx.clone(),
            stats.clone(),
        )));
    }
    tasks.push(tokio::spawn(finalizer_loop(
        app.clone(),
        stop_rx.clone(),
        stats.clone(),
    )));
    // The events queue is optional locally: without it, continuous backups just wait for runs.
    let events_url =
        match crate::queue::resolve(app.queues.client(), &app.config.events_queue).await {
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

    let started = Instant::now();
    let outcome = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if let Some(limit) = options.max_duration {
            if started.elapsed() > limit {
                break Err(Error::Invalid(format!(
                    "jobs still had work after {limit:?}"
                )));
            }
        }
        if options.until_idle {
            match app.store.list_jobs(&JobStatus::WORKING).await {
                Ok(jobs) if jobs.is_empty() => {
                    // Idle also means no S3 event waiting or being handled.
                    let events_waiting = match &events_url {
                        Some(url) => app.queues.pending(url).await.unwrap_or(1),
                        None => 0,
                    };
                    if events_waiting == 0 {
                        break Ok(());
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "could not list jobs"),
            }
        }
    };
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    outcome.map(|_| stats)
}

async fn planner_loop(
    app: Arc<App>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    stats: Arc<RunStats>,
) {
    while !*stop.borrow() {
        // Plan-queue wake-ups first (they name one job), then the periodic sweep of all jobs.
        match app.queues.receive(&app.queues.plan_url, 10, 0, 60).await {
            Ok(messages) => {
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
            Err(err) => tracing::warn!(error = %err, "plan queue receive failed"),
        }
        if let Err(err) = sweep(&app, Instant::now() + app.config.plan_slice).await {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %err, "planner sweep failed");
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

async fn worker_loop(app: Arc<App>, stop: watch::Receiver<bool>, stats: Arc<RunStats>) {
    let visibility = work_visibility_seconds(&app.config);
    while !*stop.borrow() {
        let messages = match app
            .queues
            .receive(&app.queues.work_url, 1, 1, visibility)
            .await
        {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(error = %err, "work queue receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
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
            let run = with_visibility_heartbeat(
                &app,
                &message.receipt_handle,
                visibility,
                process_chunk(&app, &pointer, local_deadline(&app)),
            )
            .await;
            match run {
                Ok(run) => {
                    stats.chunks.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(job_id = %pointer.job, seq = pointer.seq, ?run, "chunk done");
                    // Busy too: the attempt holding the range has its own message, which comes
                    // back if that attempt dies.
                    let _ = app
                        .queues
                        .delete(&app.queues.work_url, &message.receipt_handle)
                        .await;
                }
                Err(err) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(job_id = %pointer.job, seq = pointer.seq, error = %err, "chunk failed; will be retried");
                    let _ = app
                        .queues
                        .release(&app.queues.work_url, &message.receipt_handle, 2)
                        .await;
                }
            }
        }
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
            _ = tokio::time::sleep(every) => {
                if let Err(err) = app.queues.release(&app.queues.work_url, receipt_handle, visibility).await {
                    tracing::warn!(error = %err, "could not extend the work message's visibility");
                }
            }
        }
    }
}

async fn finalizer_loop(app: Arc<App>, stop: watch::Receiver<bool>, stats: Arc<RunStats>) {
    while !*stop.borrow() {
        let messages = match app
            .queues
            .receive(&app.queues.finalize_url, 10, 1, 30)
            .await
        {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(error = %err, "finalize queue receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
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
    stop: watch::Receiver<bool>,
    stats: Arc<RunStats>,
) {
    while !*stop.borrow() {
        let messages = match app.queues.receive(&url, 10, 1, 120).await {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(error = %err, "events queue receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
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
