//! Lambda event adapters: parse the event, call the library, map the result. The binaries in
//! `functions/*` wire these to `lambda_runtime`; tests drive them with real event JSON.

use crate::events::{handle_messages, EventMessage};
use crate::finalizer::{finalize_accounted, Finalized};
use crate::planner::{advance_accounted, sweep, Advance};
use crate::queue::{ChunkPointer, JobPointer};
use crate::worker::{
    busy_retry_seconds, local_deadline, process_chunk_within, ChunkRun, TaskBudget,
};
use crate::App;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime};

/// The invocation's deadline, or the local default when the context has none (tests).
fn deadline_of(app: &App, context: &Context) -> SystemTime {
    if context.deadline == 0 {
        local_deadline(app)
    } else {
        context.deadline()
    }
}

fn instant_before(deadline: SystemTime, margin: Duration) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(margin);
    Instant::now() + left
}

/// Runs `handle` on every record concurrently; each failure is reported by its message id so
/// SQS retries only that message. A record without an id cannot be reported and is logged.
async fn per_record<F, Fut>(records: Vec<SqsMessage>, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let results = futures::future::join_all(records.into_iter().map(|record| {
        let id = record.message_id.clone().unwrap_or_default();
        let fut = handle(record);
        async move { (id, fut.await) }
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for (id, result) in results {
        if let Err(error) = result {
            if id.is_empty() {
                tracing::error!(
                    error,
                    "failed SQS record has no messageId; it cannot be retried individually"
                );
            } else {
                tracing::error!(
                    message_id = id,
                    error,
                    "SQS record failed; SQS will redeliver it"
                );
                response.add_failure(id);
            }
        }
    }
    response
}

fn parse_body<T: serde::de::DeserializeOwned>(record: &SqsMessage) -> Result<T, String> {
    let body = record.body.as_deref().ok_or("message has no body")?;
    serde_json::from_str(body)
        .map_err(|e| format!("message body is not a valid pointer ({e}): {body}"))
}

/// Worker: SQS batch of chunk pointers -> partial batch response.
pub async fn worker_handler(
    app: &App,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let deadline = deadline_of(app, &event.context);
    // The batch's pointers run at once, their tasks sharing one budget: a chunk's tail leaves
    // its slots to the others instead of idling them.
    let budget = TaskBudget::new(app.config.task_concurrency);
    let budget = &budget;
    Ok(per_record(event.payload.records, |record| async move {
        let pointer: ChunkPointer = parse_body(&record)?;
        let run = process_chunk_within(app, &pointer, deadline, budget, None)
            .await
            .map_err(|e| e.to_string())?;
        if let ChunkRun::Busy { holder, expires_at } = &run {
            // Another attempt holds the range; this may be that attempt's own message back
            // after it died. Come back just after its lease runs out (else after the queue's
            // visibility timeout), never dropped.
            if let Some(receipt) = record.receipt_handle.as_deref() {
                if let Err(err) = app
                    .queues
                    .release(&app.queues.work_url, receipt, busy_retry_seconds(*expires_at))
                    .await
                {
                    tracing::warn!(error = %err, "could not shorten the busy message's visibility");
                }
            }
            return Err(format!(
                "chunk {} from task {} is leased by attempt {holder} until {expires_at}; retried then",
                pointer.seq, pointer.first_task
            ));
        }
        tracing::info!(job_id = %pointer.job, seq = pointer.seq, first_task = pointer.first_task, ?run, "chunk done");
        Ok(())
    })
    .await)
}

/// Finalizer: SQS batch of job pointers. A job still waiting on workers is retried later.
pub async fn finalizer_handler(
    app: &App,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    Ok(per_record(event.payload.records, |record| async move {
        let pointer: JobPointer = parse_body(&record)?;
        match finalize_accounted(app, &pointer.job)
            .await
            .map_err(|e| e.to_string())?
        {
            Finalized::Waiting { leases } => Err(format!(
                "job {} waits for {leases} running ranges",
                pointer.job
            )),
            outcome => {
                tracing::info!(job_id = %pointer.job, ?outcome, "finalizer ran");
                Ok(())
            }
        }
    })
    .await)
}

/// Planner: an EventBridge scheduled event (sweep every job) or an SQS batch of job pointers
/// from the plan queue (advance those jobs, re-queueing any that need another slice).
pub async fn planner_handler(
    app: &App,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let deadline = deadline_of(app, &event.context);
    let budget_end = instant_before(deadline, Duration::from_secs(10))
        .min(Instant::now() + app.config.plan_slice);
    if event.payload.get("Records").is_some() {
        let sqs: SqsEvent = serde_json::from_value(event.payload)?;
        let response = per_record(sqs.records, |record| async move {
            let pointer: JobPointer = parse_body(&record)?;
            match advance_accounted(app, &pointer.job, budget_end, true)
                .await
                .map_err(|e| e.to_string())?
            {
                Advance::MoreWork => app
                    .queues
                    .request_planning(&pointer.job)
                    .await
                    .map_err(|e| e.to_string()),
                Advance::Idle => Ok(()),
            }
        })
        .await;
        return Ok(serde_json::to_value(response)?);
    }
    // Once per container: jobs written before working markers existed get theirs (the sweep
    // sees working jobs through them).
    static MARKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !MARKED.load(std::sync::atomic::Ordering::Relaxed) {
        app.store.mark_working_jobs().await?;
        MARKED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let summary = sweep(app, budget_end).await?;
    for job_id in &summary.jobs_with_more_work {
        app.queues.request_planning(job_id).await?;
    }
    Ok(json!({
        "jobsSeen": summary.jobs_seen,
        "jobsWithMoreWork": summary.jobs_with_more_work,
        "errors": summary.errors,
    }))
}

/// Events: an SQS batch of S3 event notifications (continuous backups, inventory reports
/// landing) -> partial batch response naming the messages to redeliver.
pub async fn events_handler(
    app: &App,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let mut response = SqsBatchResponse::default();
    let mut messages = Vec::new();
    for record in event.payload.records {
        let id = record.message_id.unwrap_or_default();
        match record.body {
            Some(body) => messages.push(EventMessage { id, body }),
            None => {
                tracing::error!(message_id = %id, "events queue message has no body");
                if !id.is_empty() {
                    response.add_failure(id);
                }
            }
        }
    }
    let summary = handle_messages(app, messages).await;
    tracing::info!(?summary, "S3 events handled");
    for id in summary.failed {
        if id.is_empty() {
            tracing::error!(
                "a failed events message has no messageId; it cannot be retried individually"
            );
        } else {
            response.add_failure(id);
        }
    }
    Ok(response)
}

/// Logging for the Lambda binaries: JSON lines, level from RUST_LOG (default info).
pub fn init_lambda_tracing() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .try_init();
}
