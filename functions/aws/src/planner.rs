//! The planner: advances every unfinished job by a bounded slice. Preparing jobs stream their
//! manifest into chunk files with checkpoints, so a killed or timed-out planner resumes exactly
//! where the last checkpoint left it; Active jobs get their chunk pointers dispatched.

use crate::error::{Error, Result};
use crate::objects::put_bytes;
use crate::prepare::{
    self, write_generated_manifest, ChunkWriter, Reader, SourceEvent, SourceOptions, SourceSpec,
};
use crate::queue::ChunkPointer;
use crate::{now, App};
use batchops_core::plan::PlanProgress;
use batchops_core::recovery::{CommittedRange, ErrorVerdict, OwedScan, StallWatch};
use batchops_core::request::{GeneratedManifest, ManifestSource};
use batchops_core::{JobRecord, JobStatus};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use std::time::Instant;

/// Chunk pointers sent between two dispatch checkpoints.
const DISPATCH_BATCH: u64 = 100;

/// Chunk files being written at once while planning (each holds one encoded chunk in memory).
const WRITES_IN_FLIGHT: usize = 16;

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
    // Backup policies whose schedule slot has come start their run first (once per slot).
    if let Err(err) = crate::backup::fire_due_policies(app, now()).await {
        tracing::error!(error = %err, "could not start due backup runs");
    }
    let mut jobs = working_jobs(app).await?;
    jobs.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.created_at.cmp(&b.created_at))
    });
    let mut summary = SweepSummary {
        jobs_seen: jobs.len(),
        ..Default::default()
    };
    let now_secs = crate::unix_now();
    for job in jobs {
        if Instant::now() >= deadline {
            summary.jobs_with_more_work.push(job.job_id);
            continue;
        }
        if job.error_streak.retry_at(&app.config.job_errors) > now_secs {
            // Backing off after a transient error.
            continue;
        }
        match advance_accounted(app, &job.job_id, deadline, !job.error_streak.is_empty()).await {
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

/// The jobs in a working status: one query of their markers, then each job's record.
async fn working_jobs(app: &App) -> Result<Vec<JobRecord>> {
    let mut jobs = Vec::new();
    for job_id in app.store.working_job_ids().await? {
        match app.store.get_job(&job_id).await {
            Ok(job) => jobs.push(job),
            Err(Error::JobNotFound(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(jobs)
}

/// [`advance`], with the job's errors accounted: a permanent error, or transient ones past the
/// bound (`BATCHOPS_JOB_ERROR_*`), fail the job with a failure code and reason; a success ends a
/// streak of transient errors (`had_errors`: the job had one).
pub async fn advance_accounted(
    app: &App,
    job_id: &str,
    deadline: Instant,
    had_errors: bool,
) -> Result<Advance> {
    match advance(app, job_id, deadline).await {
        Ok(outcome) => {
            if had_errors {
                app.store
                    .update_job(job_id, |job| {
                        let change = !job.error_streak.is_empty();
                        job.error_streak = Default::default();
                        Ok::<bool, ()>(change)
                    })
                    .await?
                    .ok();
            }
            Ok(outcome)
        }
        Err(err) => {
            account_job_error(app, job_id, &err, "PlanningFailed").await?;
            Err(err)
        }
    }
}

/// Records a step's error on the job and fails the job when it is permanent or the transient
/// streak has lasted past the bound. The finalizer's errors go through here too.
pub async fn account_job_error(
    app: &App,
    job_id: &str,
    err: &Error,
    default_code: &str,
) -> Result<()> {
    if matches!(err, Error::JobNotFound(_)) {
        return Ok(());
    }
    let now = crate::unix_now();
    let bound = app.config.job_errors;
    let class = err.class();
    let message = err.to_string();
    let mut verdict = None;
    app.store
        .update_job(job_id, |job| {
            if job.status.is_terminal() {
                return Ok::<bool, ()>(false);
            }
            verdict = Some(job.error_streak.record(class, &message, now, &bound));
            Ok(true)
        })
        .await?
        .ok();
    match verdict {
        Some(ErrorVerdict::GiveUp(reason)) => {
            let code = err.failure_code(default_code);
            tracing::error!(job_id, code, reason, "job cannot proceed; failing it");
            crate::finalizer::end_failed(app, job_id, &code, &reason).await
        }
        Some(ErrorVerdict::RetryAt(at)) => {
            tracing::warn!(job_id, error = %err, retry_in_s = at.saturating_sub(now), "transient error; will retry");
            Ok(())
        }
        None => Ok(()),
    }
}

/// Moves one job forward until it waits on someone else or `deadline` passes.
pub async fn advance(app: &App, job_id: &str, deadline: Instant) -> Result<Advance> {
    // The job as a move of this loop wrote it: the next step goes on from it, with no read.
    let mut moved: Option<JobRecord> = None;
    loop {
        let job = match moved.take() {
            Some(job) => job,
            None => app.store.get_job(job_id).await?,
        };
        match job.status {
            JobStatus::New => {
                moved = Some(
                    Box::pin(transition(
                        app,
                        job,
                        JobStatus::New,
                        JobStatus::Preparing,
                        "Reading the manifest",
                    ))
                    .await?,
                );
            }
            // Dispatch while planning: an Active job whose planning has not ended runs its
            // first chunks while the manifest is still being read.
            JobStatus::Preparing | JobStatus::Active if !job.plan.finished => {
                match Box::pin(plan_with_lease(app, job, deadline)).await? {
                    // Another planner is on it.
                    None => return Ok(Advance::Idle),
                    Some(Advance::MoreWork) => return Ok(Advance::MoreWork),
                    // Planned (or failed): the job's next status is handled next.
                    Some(Advance::Idle) => {}
                }
            }
            JobStatus::Ready => {
                moved = Some(
                    Box::pin(transition(
                        app,
                        job,
                        JobStatus::Ready,
                        JobStatus::Active,
                        "Confirmed; running",
                    ))
                    .await?,
                );
            }
            JobStatus::Active => {
                if dispatch(app, &job, deadline).await? == Advance::MoreWork {
                    return Ok(Advance::MoreWork);
                }
                let total = job.total_tasks().unwrap_or(u64::MAX);
                let counters = app.store.counters(job_id).await?;
                if total == 0 || counters.tasks_done() >= total {
                    app.queues.request_finalize(job_id).await?;
                } else {
                    heal_if_stalled(app, &job, counters.ranges).await?;
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

/// Plans a slice of a job under its planning lease: one planner per job, since a second one (an
/// overlapping sweep, a plan-queue wake-up) would rewrite the same chunk files from the same
/// checkpoint. None when another planner holds the lease.
async fn plan_with_lease(app: &App, job: JobRecord, deadline: Instant) -> Result<Option<Advance>> {
    let job_id = job.job_id.clone();
    let holder = uuid::Uuid::new_v4().simple().to_string();
    let acquired = app
        .store
        .acquire_plan_lease(&job_id, &holder, plan_lease_until(app), crate::unix_now())
        .await;
    let acquired = match acquired {
        Ok(acquired) => acquired,
        Err(err) => {
            // The put may have landed with its answer lost: give it back, or the job would
            // wait for a holder that no longer exists.
            let _ = app.store.release_plan_lease(&job_id, &holder).await;
            return Err(err);
        }
    };
    if !acquired {
        tracing::info!(job_id, "another planner holds this job's planning lease");
        return Ok(None);
    }
    // The lease is short and renewed while the slice runs, so a killed planner holds its job
    // for one lease, not for the rest of its slice. The renewal stops (its last request
    // answered) before the lease is given back, so no late renewal can take it again.
    let finished = tokio::sync::Notify::new();
    let planning = async {
        // Boxed: the slice's future is large, and debug builds run handlers on small stacks.
        let planned = Box::pin(plan_slice(app, job, deadline, &holder)).await;
        finished.notify_one();
        planned
    };
    let (planned, ()) = tokio::join!(planning, renew_plan_lease(app, &job_id, &holder, &finished));
    if let Err(err) = app.store.release_plan_lease(&job_id, &holder).await {
        tracing::warn!(job_id, error = %err, "could not release the planning lease; it expires on its own");
    }
    planned.map(Some)
}

/// Until when a planning lease taken or renewed now lasts (`BATCHOPS_PLAN_LEASE_SECONDS`); a
/// killed planner's job is planned again after it.
fn plan_lease_until(app: &App) -> u64 {
    crate::unix_now() + app.config.plan_lease.as_secs().max(1)
}

/// Renews `holder`'s planning lease every third of its length until `finished` is notified. A
/// renewal that finds the lease taken stops renewing: the slice itself stops at its next
/// checkpoint, whose own renewal fails. A failed request is tried again at the next beat.
async fn renew_plan_lease(app: &App, job_id: &str, holder: &str, finished: &tokio::sync::Notify) {
    let beat = app.config.plan_lease / 3;
    loop {
        tokio::select! {
            _ = finished.notified() => return,
            _ = tokio::time::sleep(beat) => {}
        }
        match app
            .store
            .acquire_plan_lease(job_id, holder, plan_lease_until(app), crate::unix_now())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job_id, "another planner took this job's planning lease");
                return;
            }
            Err(err) => {
                tracing::warn!(job_id, error = %err, "could not renew the planning lease");
            }
        }
    }
}

/// The self-healing sweep of an Active job: when no range was committed for
/// `BATCHOPS_STALL_SECONDS`, no worker holds a live lease and no message waits in the work
/// queue, every range the job still owes (a lost or dead-lettered pointer, a crashed worker's
/// successor) is dispatched again. Duplicates are harmless: leases and commits are idempotent.
async fn heal_if_stalled(app: &App, job: &JobRecord, ranges_done: u64) -> Result<()> {
    let job_id = job.job_id.as_str();
    let now = crate::unix_now();
    let previous = app.store.stall_watch(job_id).await?;
    if let Some(updated) = StallWatch::observe(previous, ranges_done, now) {
        return app.store.put_stall_watch(job_id, &updated).await;
    }
    let Some(watch) = previous else {
        return Ok(());
    };
    if !watch.stalled(now, app.config.stall_after.as_secs()) {
        return Ok(());
    }
    if app.store.live_leases(job_id, now).await? > 0
        || app.queues.waiting(&app.queues.work_url).await? > 0
    {
        return Ok(());
    }
    let Some(total_chunks) = job.total_chunks() else {
        return Ok(());
    };
    // Page through the committed ranges in chunk order, sending what each page shows is owed.
    let mut scan = OwedScan::new(total_chunks);
    let mut after: Option<String> = None;
    let mut owed = 0usize;
    loop {
        let (page, next) = app
            .store
            .committed_ranges_page(job_id, after.as_deref(), 500)
            .await?;
        let mut pointers = Vec::new();
        for (_, r) in page {
            pointers.extend(scan.push(CommittedRange {
                seq: r.seq,
                first_task: r.first_task,
                end_task: r.end_task,
                chunk_tasks: r.chunk_tasks,
            }));
        }
        if next.is_none() {
            pointers.extend(std::mem::replace(&mut scan, OwedScan::new(0)).finish());
        }
        owed += pointers.len();
        let pointers: Vec<ChunkPointer> = pointers
            .into_iter()
            .map(|(seq, first_task)| ChunkPointer {
                job: job_id.to_string(),
                seq,
                first_task,
            })
            .collect();
        app.queues.send_chunks(&pointers).await?;
        match next {
            Some(position) => after = Some(position),
            None => break,
        }
    }
    tracing::warn!(
        job_id,
        owed,
        stalled_s = now.saturating_sub(watch.since),
        "job made no progress and nothing runs or waits for it: dispatched its owed ranges again"
    );
    app.store
        .put_stall_watch(
            job_id,
            &StallWatch {
                ranges: ranges_done,
                since: now,
                redispatches: watch.redispatches + 1,
            },
        )
        .await
}

/// Moves `job` (as just read) `from -> to`, unless someone else moved it first; returns the job
/// as stored after, in whatever status it is then.
async fn transition(
    app: &App,
    job: JobRecord,
    from: JobStatus,
    to: JobStatus,
    reason: &str,
) -> Result<JobRecord> {
    let job_id = job.job_id.clone();
    app.store
        .update_job_from(job, |job| {
            if job.status != from {
                return Ok::<bool, ()>(false);
            }
            job.transition(to, now(), reason).map_err(|_| ())?;
            Ok(true)
        })
        .await?
        .map_err(|_| Error::State {
            job_id,
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

/// A planning slice's checkpoints: where a resumed planner may start, recorded every
/// `checkpoint_every_chunks` chunks or at the deadline (then the slice ends). A job that needs
/// no confirmation goes Active at its first checkpoint, and every checkpoint dispatches the
/// chunks it covers: a resumed planner starts after them, so a dispatched chunk file is never
/// rewritten.
struct Checkpoints<'a> {
    app: &'a App,
    deadline: Instant,
    lease_holder: &'a str,
    /// The last progress a resumed planner may start from, not yet recorded.
    resumable: Option<PlanProgress>,
    /// Resumable points taken since the last recorded checkpoint.
    since_checkpoint: u64,
}

impl Checkpoints<'_> {
    /// Takes what was just written (`resume`: where a resumed planner may start, if anywhere)
    /// and records a checkpoint if one is due. Some(advance) when the slice must stop.
    async fn take(
        &mut self,
        job: &mut JobRecord,
        resume: Option<PlanProgress>,
    ) -> Result<Option<Advance>> {
        let app = self.app;
        if let Some(progress) = resume {
            self.resumable = Some(progress);
            self.since_checkpoint += 1;
        }
        let out_of_time = Instant::now() >= self.deadline;
        let Some(progress) = self.resumable.as_ref() else {
            return Ok(None);
        };
        let starts_running = runs_while_planning(job) && job.status == JobStatus::Preparing;
        if self.since_checkpoint < app.config.checkpoint_every_chunks
            && !out_of_time
            && !starts_running
        {
            return Ok(None);
        }
        job.plan.progress = progress.clone();
        if starts_running && job.plan.progress.next_seq > 0 {
            job.transition(JobStatus::Active, now(), "Reading the manifest; running")
                .map_err(|e| Error::State {
                    job_id: job.job_id.clone(),
                    message: e.to_string(),
                })?;
        }
        if !app.store.put_job(job).await? {
            // Cancelled, or another planner got here first: let the next advance re-read.
            return Ok(Some(Advance::MoreWork));
        }
        self.since_checkpoint = 0;
        self.resumable = None;
        send_checkpointed(app, job).await?;
        // Renew the planning lease; a planner that lost it (it ran past its lease) stops here.
        if !app
            .store
            .acquire_plan_lease(
                &job.job_id,
                self.lease_holder,
                plan_lease_until(app),
                crate::unix_now(),
            )
            .await?
        {
            return Ok(Some(Advance::MoreWork));
        }
        Ok(out_of_time.then_some(Advance::MoreWork))
    }
}

/// Jobs that need no confirmation run their chunks while planning goes on; backup runs do not:
/// a run that fails or is cancelled journals its copies from a finished plan only.
fn runs_while_planning(job: &JobRecord) -> bool {
    !job.spec.confirmation_required && !matches!(job.spec.manifest, ManifestSource::Backup(_))
}

/// While an Active job is being planned: sends the pointers of the checkpointed chunks not yet
/// sent. `dispatched_chunks` is advanced in `job` only, and stored with the next checkpoint: a
/// planner killed before then sends them again, which workers take as the duplicates they are
/// (one commit per range).
async fn send_checkpointed(app: &App, job: &mut JobRecord) -> Result<()> {
    if job.status != JobStatus::Active {
        return Ok(());
    }
    let planned = job.plan.progress.next_seq;
    while job.dispatched_chunks < planned {
        let end = (job.dispatched_chunks + DISPATCH_BATCH).min(planned);
        let pointers: Vec<ChunkPointer> = (job.dispatched_chunks..end)
            .map(|seq| ChunkPointer {
                job: job.job_id.clone(),
                seq,
                first_task: 0,
            })
            .collect();
        app.queues.send_chunks(&pointers).await?;
        job.dispatched_chunks = end;
    }
    Ok(())
}

/// Where a backup run's draft snapshot part `seq` lives in the control bucket.
pub fn draft_key(job_id: &str, seq: u64) -> String {
    format!("jobs/{job_id}/draft/{seq:010}")
}

/// Generated manifests name versions when the job lists them (all versions, or pinned).
fn generated_with_versions(
    generated: &GeneratedManifest,
    pinning: &batchops_core::plan::Pinning,
) -> bool {
    generated.all_versions || pinning.is_pinned()
}

/// The writer and source options for a job's prepare step.
pub fn job_writer(
    app: &App,
    job: &JobRecord,
    clients: crate::clients::JobClients,
    control: bool,
) -> (ChunkWriter, SourceOptions) {
    let spec = &job.spec;
    let pinning = &spec.pinning;
    let (pin_with_head, as_of_lookup, as_of_in_source) = match &spec.manifest {
        // CSV manifests name keys only: pin with a HEAD, or look the versions up for as-of.
        ManifestSource::Csv { .. } => (pinning.pin_versions, pinning.as_of.clone(), None),
        // Inventories carry versions and ETags when configured to; HEAD fills any gap.
        ManifestSource::Inventory { .. } => (pinning.pin_versions, None, pinning.as_of.clone()),
        // Listings have everything.
        ManifestSource::Generated(_) => (false, None, pinning.as_of.clone()),
        // Backups pin from their listing; restores name exact backup versions; imports carry
        // what the other store listed.
        ManifestSource::Backup(_) | ManifestSource::Restore(_) | ManifestSource::Store(_) => {
            (false, None, None)
        }
    };
    let output = match &spec.manifest {
        ManifestSource::Generated(g) => g
            .output
            .clone()
            .map(|o| (o, job.job_id.clone(), generated_with_versions(g, pinning))),
        _ => None,
    };
    let writer = ChunkWriter {
        clients: Some(clients),
        control: control.then(|| {
            (
                app.s3.clone(),
                app.config.control_bucket.clone(),
                job.job_id.clone(),
            )
        }),
        output,
        pin_with_head,
        as_of_lookup,
        concurrency: app.config.task_concurrency,
        task_limit: spec.operation.task_limit(),
        // Planning resumes at the checkpoint: the chunks before it hold this many tasks.
        tasks_written: job.plan.progress.tasks,
        stats: Default::default(),
    };
    let options = SourceOptions {
        chunk_size: app.config.chunk_size,
        keep_etags: pinning.is_pinned(),
        as_of: as_of_in_source,
    };
    (writer, options)
}

/// Reads the manifest from the checkpoint on, writing chunk files, until it ends or the
/// deadline passes. One DynamoDB write per checkpoint, one S3 PUT per chunk.
async fn plan_slice(
    app: &App,
    mut job: JobRecord,
    deadline: Instant,
    lease_holder: &str,
) -> Result<Advance> {
    let job_id = job.job_id.clone();
    let spec = job.spec.clone();
    let first_slice =
        job.plan.progress.next_seq == 0 && job.plan.progress.cursor == Default::default();
    // The job's data is reached with its clients (its role, each bucket's Region).
    let clients = app.job_clients(&job);
    if first_slice {
        // A role that cannot be assumed fails the job now, naming the role and STS's answer
        // (a transient answer: the next slice asks again).
        if let Some((code, reason)) = app
            .data
            .refused_role(&job_id, job.request.role_arn.as_deref())
            .await?
        {
            fail_job(app, &job_id, &code, format!("RoleArn: {reason}")).await?;
            return Ok(Advance::Idle);
        }
        if let batchops_core::request::OperationSpec::LambdaInvoke(invoke) = &spec.operation {
            if let Err(err) = crate::invoke::check_function(&app.lambda, &invoke.function).await {
                // Throttling or no answer: the next slice asks again.
                if err.class() == batchops_core::backoff::ErrorClass::Transient {
                    return Err(err);
                }
                let code = match &err {
                    Error::Aws {
                        code: Some(code), ..
                    } => code.clone(),
                    _ => "FunctionNotInvocable".to_string(),
                };
                fail_job(
                    app,
                    &job_id,
                    &code,
                    format!(
                        "Operation.LambdaInvoke.FunctionArn: function `{}` cannot be invoked: {err}",
                        invoke.function
                    ),
                )
                .await?;
                return Ok(Advance::Idle);
            }
        }
        // The buckets are checked at once (each check is a round trip, the first for a bucket
        // also learns its Region), and their failures named in this order.
        let reachable = |bucket: Option<String>| {
            let clients = &clients;
            async move {
                match bucket {
                    Some(bucket) => clients.reachable(&bucket).await,
                    None => Ok(()),
                }
            }
        };
        let generated_source = match &spec.manifest {
            ManifestSource::Generated(g) => Some(g.source_bucket.clone()),
            _ => None,
        };
        let (target, report, source) = tokio::join!(
            reachable(spec.operation.target_bucket().map(str::to_string)),
            reachable(spec.report.as_ref().map(|r| r.bucket.clone())),
            reachable(generated_source),
        );
        let unreachable = [
            target.map_err(|reason| {
                (
                    "TargetBucketUnreachable",
                    format!(
                        "Operation.{}.TargetResource: {reason}",
                        spec.operation.name()
                    ),
                )
            }),
            report.map_err(|reason| {
                (
                    "ReportBucketUnreachable",
                    format!("Report.Bucket: {reason}"),
                )
            }),
        ];
        for checked in unreachable {
            if let Err((code, message)) = checked {
                fail_job(app, &job_id, code, message).await?;
                return Ok(Advance::Idle);
            }
        }
        if let Err((field, why)) =
            crate::objects::check_expected_owners(&clients, &spec.expected_owners).await
        {
            fail_job(app, &job_id, "AccessDenied", format!("{field}: {why}")).await?;
            return Ok(Advance::Idle);
        }
        if let Err(reason) = source {
            fail_job(
                app,
                &job_id,
                "SourceBucketUnreachable",
                format!("ManifestGenerator.S3JobManifestGenerator.SourceBucket: {reason}"),
            )
            .await?;
            return Ok(Advance::Idle);
        }
    }
    // Manifests and listed sources with the job's client for their bucket; backup runs and
    // restores read several buckets (source, backup bucket, journals in the control bucket):
    // each with the job's client for it (`with_clients`).
    let data_s3 = match (&spec.manifest, spec.manifest.object()) {
        (_, Some(object)) => clients.s3(&object.bucket).await,
        (ManifestSource::Generated(g), None) => clients.s3(&g.source_bucket).await,
        _ => app.s3.clone(),
    };
    let (mut writer, options) = job_writer(app, &job, clients.clone(), true);
    let source = SourceSpec::of_job(
        &spec.manifest,
        job.plan.manifest_etag.clone(),
        &app.config.control_bucket,
    );
    let mut reader = Reader::new(Some(data_s3)).with_store(app.store.clone());
    if matches!(
        spec.manifest,
        ManifestSource::Backup(_) | ManifestSource::Restore(_)
    ) {
        reader = reader.with_clients(clients.clone());
    }
    if let ManifestSource::Store(listing) = &spec.manifest {
        // An import lists another store, with the credentials its secret holds.
        match crate::stores::open(app, &listing.from).await {
            Ok(opened) => reader = reader.with_object_store(opened),
            Err(err) => {
                fail_job(app, &job_id, "SourceStoreUnavailable", err.to_string()).await?;
                return Ok(Advance::Idle);
            }
        }
    }
    // A resumed slice of an Active job: the pointers of the chunks its last checkpoint covers
    // may not all have gone out before the previous planner stopped.
    send_checkpointed(app, &mut job).await?;
    let mut events = prepare::start(reader, source, job.plan.progress.clone(), options);
    let mut checkpoints = Checkpoints {
        app,
        deadline,
        lease_holder,
        resumable: None,
        since_checkpoint: 0,
    };
    // Chunk files and draft parts being written, oldest first: each yields where a resumed
    // planner may start once it, and every write before it, has landed.
    let mut writes: FuturesOrdered<BoxFuture<'static, Result<Option<PlanProgress>>>> =
        FuturesOrdered::new();
    loop {
        // A landed write first (it may complete a checkpoint), else the next event while
        // fewer than WRITES_IN_FLIGHT writes are out.
        let step = tokio::select! {
            biased;
            Some(written) = writes.next(), if !writes.is_empty() => PlanStep::Written(written),
            event = events.recv(), if writes.len() < WRITES_IN_FLIGHT => PlanStep::Event(event),
        };
        // What was just written, and where a resumed planner may start after it.
        let resume = match step {
            PlanStep::Written(written) => written?,
            PlanStep::Event(None) => {
                return Err(Error::Data(format!(
                    "job {job_id}: the manifest reader stopped without finishing"
                )))
            }
            PlanStep::Event(Some(event)) => match event? {
                SourceEvent::ManifestEtag(etag) => {
                    if job.plan.manifest_etag.is_none() {
                        job.plan.manifest_etag = Some(etag);
                    }
                    None
                }
                SourceEvent::Failed { code, reason } => {
                    fail_job(app, &job_id, code, reason).await?;
                    return Ok(Advance::Idle);
                }
                SourceEvent::Warning(warning) => {
                    tracing::warn!(job_id, warning, "job warning");
                    if !job.warnings.contains(&warning) {
                        job.warnings.push(warning);
                    }
                    None
                }
                SourceEvent::Chunk(mut chunk) => {
                    let put = writer.prepare(&mut chunk).await?;
                    let resume = chunk.resume.take();
                    // Once stored, this process's worker may take the chunk from memory.
                    let handoff = app.chunk_handoff.clone().and_then(|handoff| {
                        let body = put.chunk_file()?.to_vec();
                        Some((handoff, job_id.clone(), chunk.seq, body))
                    });
                    writes.push_back(
                        async move {
                            put.send().await?;
                            if let Some((handoff, job_id, seq, body)) = handoff {
                                handoff.offer(&job_id, seq, body);
                            }
                            Ok(resume)
                        }
                        .boxed(),
                    );
                    None
                }
                SourceEvent::Draft { seq, rows, resume } => {
                    let mut body = String::new();
                    for row in &rows {
                        row.write_line(&mut body);
                    }
                    let (s3, bucket) = (app.s3.clone(), app.config.control_bucket.clone());
                    let key = draft_key(&job_id, seq);
                    writes.push_back(
                        async move {
                            put_bytes(&s3, &bucket, &key, body.into_bytes(), "text/plain")
                                .await
                                .map(|_| resume)
                        }
                        .boxed(),
                    );
                    None
                }
                SourceEvent::Finished(progress) => {
                    // The totals are final once every chunk file is stored; a slice out of
                    // time still ends at its next checkpoint.
                    while let Some(written) = writes.next().await {
                        if let Some(advance) = checkpoints.take(&mut job, written?).await? {
                            return Ok(advance);
                        }
                    }
                    job.plan.progress = progress;
                    job.plan.finished = true;
                    if let Some(limit) = spec.operation.task_limit() {
                        let tasks = job.plan.progress.tasks;
                        if tasks > limit.max {
                            let warning = format!(
                            "{} of the job's {tasks} tasks are past its limit of {}: they fail with {} and change nothing",
                            tasks - limit.max,
                            limit.max,
                            limit.code
                        );
                            if !job.warnings.contains(&warning) {
                                job.warnings.push(warning);
                            }
                        }
                    }
                    if let ManifestSource::Generated(
                        generated @ GeneratedManifest {
                            output: Some(output),
                            ..
                        },
                    ) = &spec.manifest
                    {
                        let with_versions = generated_with_versions(generated, &spec.pinning);
                        job.generated_manifest = Some(
                            write_generated_manifest(
                                &clients.s3(&output.bucket).await,
                                output,
                                &job_id,
                                &generated.source_bucket,
                                with_versions,
                            )
                            .await?,
                        );
                    }
                    // A job already running while planned stays Active: its totals are now final.
                    if job.status == JobStatus::Preparing {
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
                    }
                    if !app.store.put_job(&mut job).await? {
                        return Ok(Advance::MoreWork);
                    }
                    let p = &job.plan.progress;
                    tracing::info!(job_id, tasks = p.tasks, chunks = p.next_seq, malformed = p.malformed, skipped = p.skipped, status = %job.status, "manifest planned");
                    return Ok(Advance::Idle);
                }
            },
        };
        if let Some(advance) = checkpoints.take(&mut job, resume).await? {
            return Ok(advance);
        }
    }
}

/// What the planning loop does next.
enum PlanStep {
    /// A chunk file or draft part landed (with where a resumed planner may start after it).
    Written(Result<Option<PlanProgress>>),
    /// The manifest reader's next event; None when it stopped.
    Event(Option<Result<SourceEvent>>),
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
