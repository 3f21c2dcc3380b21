//! Backups: policies in the table, runs started on schedule slots (exactly once per slot) or by
//! hand, snapshot catalogs written when a run completes, retention, and restores. A run and a
//! restore are ordinary jobs, so they have progress, cancel and a completion report.

use crate::catalog_io::{abort_recorded_uploads, StreamedUpload, UploadLedger};
use crate::clients::JobClients;
use crate::draft::{DraftItem, DraftWalk};
use crate::error::{Error, Result};
use crate::jobs::{create_job_with_id, CreatedJob};
use crate::objects::put_bytes;
use crate::prepare::{open_catalog, Reader};
use crate::{now, App};
use batchops_core::arn::bucket_arn;
pub use batchops_core::backup::snapshot_id;
use batchops_core::backup::{
    catalog_directory, copy_within, expired_snapshots, in_metadata, newest_snapshot,
    snapshot_id_unix, snapshot_order, BackupPolicy, CatalogEntry, JournalRow, CATALOG_HEADER,
};
use batchops_core::copies::CopyResult;
use batchops_core::job::timestamp;
use batchops_core::plan::parse_time;
use batchops_core::request::{
    internal_token, BackupRun, CatalogRef, CopySpec, CreateJobRequest, ManifestObject,
    ManifestSource, MetadataDirective, Operation, OperationSpec, PutObjectCopy,
    ReplacementMetadata, Report, ReportScope, ReportTarget, RestoreSource,
};
use batchops_core::schedule::{slot_token, Schedule};
use batchops_core::{JobRecord, JobSpec, JobStatus};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use time::OffsetDateTime;

/// A policy as stored: the policy plus what the scheduler and snapshots need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRecord {
    pub policy: BackupPolicy,
    /// When the policy was first stored: rate schedules count from here.
    #[serde(alias = "created_at")]
    pub created_at: String,
    /// The last schedule slot a run was started for.
    #[serde(alias = "last_slot")]
    pub last_slot: Option<String>,
    /// The newest completed snapshot: the next run diffs against it.
    #[serde(alias = "last_snapshot")]
    pub last_snapshot: Option<String>,
    /// The policy's run that may not have ended: one run per policy at a time. Set by a
    /// conditional write only while absent or naming an ended job; cleared when the job ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<RunClaim>,
    /// The last scheduled or inventory-triggered run not started because a run was still
    /// running (that slot or report is skipped; the next one runs).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "last_skipped"
    )]
    pub last_skipped: Option<SkippedRun>,
}

/// A claim on a policy's one running run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunClaim {
    #[serde(alias = "job_id")]
    pub job_id: String,
    /// The run's request token: a retried start of the same run finds its own claim.
    pub token: String,
    /// When claimed: a claim whose job never came to exist expires after [`CLAIM_GRACE_SECONDS`].
    pub since: String,
}

/// A run that was not started because another run of the policy had not ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedRun {
    pub at: String,
    /// What was skipped: `slot <time>` or `inventory <s3 url>`.
    pub what: String,
    #[serde(alias = "running_job")]
    pub running_job: String,
}

/// A job that reads a snapshot (a run diffing against it, a restore copying from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotReader {
    #[serde(alias = "job_id")]
    pub job_id: String,
    pub since: String,
}

/// How long a claim or reader whose job does not exist (yet) still counts: the job is created
/// right after the claim, so only a start that died in between leaves one behind.
pub const CLAIM_GRACE_SECONDS: i64 = 300;

/// One completed run's snapshot, indexed under its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecord {
    pub id: String,
    pub policy: String,
    #[serde(alias = "job_id")]
    pub job_id: String,
    #[serde(alias = "created_at")]
    pub created_at: String,
    pub catalog: CatalogRef,
    /// Objects (versions) in the snapshot, and their bytes.
    pub objects: u64,
    pub bytes: u64,
    /// Copied by this run; carried over unchanged; dropped as deleted at the source.
    pub copied: u64,
    pub unchanged: u64,
    pub deleted: u64,
    /// Copied since the previous snapshot outside a completed run, taken from the journal:
    /// by continuous mode (from S3 events), or by runs that failed or were cancelled.
    #[serde(default)]
    pub continuous: u64,
    /// Continuous copies this snapshot does not take (replaced by a later version, or of
    /// objects since deleted), listed in `superseded_catalog`: retention frees them with it.
    #[serde(default)]
    pub superseded: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "superseded_catalog"
    )]
    pub superseded_catalog: Option<CatalogRef>,
    /// Jobs that read this snapshot (recorded before each job is created); retention keeps a
    /// snapshot while any of them has not ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readers: Vec<SnapshotReader>,
    /// Set by retention (a conditional write, only with no live reader) before it deletes
    /// anything: no new reader may then be recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expiring: bool,
    /// Written, but the journal cleanup and retention that follow its completion may not have
    /// run yet: every finalize attempt runs them (again) until they have, then clears this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settling: bool,
}

/// How policy items are listed in the status index (every scheduler tick lists them).
const POLICY_KIND: &str = "#POLICY";

pub(crate) fn policy_pk(name: &str) -> String {
    format!("POLICY#{name}")
}

pub async fn put_policy(app: &App, policy: BackupPolicy) -> Result<PolicyRecord> {
    policy
        .validate()
        .map_err(|(field, message)| Error::Invalid(format!("policy {field}: {message}")))?;
    if let Some(expression) = &policy.schedule {
        Schedule::parse(expression, &policy.time_zone, now())
            .map_err(|e| Error::Invalid(format!("policy schedule: {e}")))?;
    }
    // The control bucket holds job files and journals: no copy may land there, nor be read
    // from there as data.
    for (field, location) in [
        ("destination.bucket", &policy.destination),
        ("source.bucket", &policy.source),
    ] {
        if location.bucket == app.config.control_bucket {
            return Err(Error::Invalid(format!(
                "policy {field}: `{}` is batchops' own control bucket (chunk files, journals); choose another bucket",
                location.bucket
            )));
        }
    }
    for _ in 0..10 {
        let existing: Option<(PolicyRecord, u64)> =
            app.store.get_doc(&policy_pk(&policy.name), "META").await?;
        let (record, revision) = match existing {
            Some((mut record, revision)) => {
                if !policy.same_chain(&record.policy) {
                    // Another source or destination: the old snapshots' copies are not where
                    // the next run's diff would assume. The next run is full; the old
                    // snapshots stay restorable from where they are.
                    record.last_snapshot = None;
                }
                record.policy = policy.clone();
                (record, Some(revision))
            }
            None => (
                PolicyRecord {
                    policy: policy.clone(),
                    created_at: timestamp(now()),
                    last_slot: None,
                    last_snapshot: None,
                    running: None,
                    last_skipped: None,
                },
                None,
            ),
        };
        let stored = match revision {
            Some(r) => {
                app.store
                    .put_doc(
                        &policy_pk(&policy.name),
                        "META",
                        &record,
                        Some(r),
                        Some(POLICY_KIND),
                    )
                    .await?
            }
            None => put_new(app, &record).await?,
        };
        if stored {
            return Ok(record);
        }
    }
    Err(Error::Invalid(format!(
        "policy {}: too many concurrent updates",
        policy.name
    )))
}

async fn put_new(app: &App, record: &PolicyRecord) -> Result<bool> {
    // Create-only: a policy created concurrently makes this false and the caller re-reads.
    app.store
        .put_doc(
            &policy_pk(&record.policy.name),
            "META",
            record,
            None,
            Some(POLICY_KIND),
        )
        .await
}

pub async fn get_policy(app: &App, name: &str) -> Result<PolicyRecord> {
    app.store
        .get_doc::<PolicyRecord>(&policy_pk(name), "META")
        .await?
        .map(|(record, _)| record)
        .ok_or_else(|| Error::PolicyNotFound(name.to_string()))
}

pub async fn list_policies(app: &App) -> Result<Vec<PolicyRecord>> {
    let mut policies: Vec<PolicyRecord> = app.store.list_docs(POLICY_KIND).await?;
    policies.sort_by(|a, b| a.policy.name.cmp(&b.policy.name));
    Ok(policies)
}

pub async fn delete_policy(app: &App, name: &str) -> Result<()> {
    get_policy(app, name).await?;
    app.store.delete_doc(&policy_pk(name), "META").await
}

/// The policy's snapshots, oldest first in [`snapshot_order`].
pub async fn list_snapshots(app: &App, name: &str) -> Result<Vec<SnapshotRecord>> {
    let mut snapshots: Vec<SnapshotRecord> =
        app.store.query_docs(&policy_pk(name), "SNAP#").await?;
    snapshots.sort_by(|a, b| snapshot_order(&a.id, &b.id));
    Ok(snapshots)
}

/// The status of `job_id` if it has not ended: a job that does not exist counts as not ended
/// for [`CLAIM_GRACE_SECONDS`] after `since` (its creation may be under way).
async fn unfinished_job(app: &App, job_id: &str, since: &str) -> Result<Option<String>> {
    match app.store.get_job(job_id).await {
        Ok(job) if job.status.is_terminal() => Ok(None),
        Ok(job) => Ok(Some(format!("{:?}", job.status))),
        Err(Error::JobNotFound(_)) => {
            let young =
                parse_time(since).is_ok_and(|t| (now() - t).whole_seconds() < CLAIM_GRACE_SECONDS);
            Ok(young.then(|| "being created".to_string()))
        }
        Err(err) => Err(err),
    }
}

/// Records `job_id` as a reader of the snapshot (dropping readers that have ended), unless
/// retention is expiring it. Returns false when the snapshot is gone or expiring.
pub(crate) async fn add_snapshot_reader(
    app: &App,
    policy: &str,
    snapshot: &str,
    job_id: &str,
) -> Result<bool> {
    let key = format!("SNAP#{snapshot}");
    for _ in 0..10 {
        let Some((mut record, revision)) = app
            .store
            .get_doc::<SnapshotRecord>(&policy_pk(policy), &key)
            .await?
        else {
            return Ok(false);
        };
        if record.expiring {
            return Ok(false);
        }
        let mut live = Vec::new();
        for reader in record.readers.drain(..) {
            if unfinished_job(app, &reader.job_id, &reader.since)
                .await?
                .is_some()
            {
                live.push(reader);
            }
        }
        live.push(SnapshotReader {
            job_id: job_id.to_string(),
            since: timestamp(now()),
        });
        record.readers = live;
        if app
            .store
            .put_doc(&policy_pk(policy), &key, &record, Some(revision), None)
            .await?
        {
            return Ok(true);
        }
    }
    Err(Error::Invalid(format!(
        "policy {policy} snapshot {snapshot}: too many concurrent updates"
    )))
}

/// Whether a reader of a snapshot still reads it: its job has not ended, and it is not
/// `finished` (the run whose snapshot is written: its diff is done).
async fn live_reader(
    app: &App,
    reader: &SnapshotReader,
    finished: Option<&str>,
) -> Result<Option<String>> {
    if finished == Some(reader.job_id.as_str()) {
        return Ok(None);
    }
    unfinished_job(app, &reader.job_id, &reader.since).await
}

/// Marks the snapshot expiring if no reader of it is unfinished (conditional on the revision
/// read, so a reader recorded meanwhile wins). Returns whether it may be expired.
async fn mark_expiring(
    app: &App,
    policy: &str,
    snapshot: &str,
    finished: Option<&str>,
) -> Result<bool> {
    let key = format!("SNAP#{snapshot}");
    let Some((mut record, revision)) = app
        .store
        .get_doc::<SnapshotRecord>(&policy_pk(policy), &key)
        .await?
    else {
        return Ok(false);
    };
    if record.expiring {
        return Ok(true);
    }
    for reader in &record.readers {
        if let Some(status) = live_reader(app, reader, finished).await? {
            tracing::info!(policy, snapshot, job_id = %reader.job_id, status, "retention keeps a snapshot an unfinished job reads");
            return Ok(false);
        }
    }
    record.expiring = true;
    app.store
        .put_doc(&policy_pk(policy), &key, &record, Some(revision), None)
        .await
}

/// Called when a job ends: a backup run that did not complete has its copies recorded (if
/// the finalizer did not already, before it ended the run), then gives up its policy's run
/// claim.
pub async fn run_ended(app: &App, job: &JobRecord) -> Result<()> {
    let ManifestSource::Backup(run) = &job.spec.manifest else {
        return Ok(());
    };
    if let Err(err) = journal_unfinished_run(app, job).await {
        // The job has ended either way: its claim and status event do not wait on this.
        tracing::error!(job_id = %job.job_id, error = %err, "the copies of a backup run that did not complete could not be recorded; the next run copies them again");
    }
    release_claim(app, &run.policy.name, &job.job_id).await
}

async fn release_claim(app: &App, name: &str, job_id: &str) -> Result<()> {
    match update_policy_record(app, name, |r| {
        if r.running.as_ref().is_some_and(|c| c.job_id == job_id) {
            r.running = None;
            return true;
        }
        false
    })
    .await
    {
        // A deleted policy has no claim to give up.
        Err(Error::PolicyNotFound(_)) => Ok(()),
        other => other,
    }
}

/// Changes a stored policy record (read, change, conditional write; retried on races).
async fn update_policy_record(
    app: &App,
    name: &str,
    change: impl Fn(&mut PolicyRecord) -> bool,
) -> Result<()> {
    for _ in 0..10 {
        let Some((mut record, revision)) = app
            .store
            .get_doc::<PolicyRecord>(&policy_pk(name), "META")
            .await?
        else {
            return Err(Error::PolicyNotFound(name.to_string()));
        };
        if !change(&mut record) {
            return Ok(());
        }
        if app
            .store
            .put_doc(
                &policy_pk(name),
                "META",
                &record,
                Some(revision),
                Some(POLICY_KIND),
            )
            .await?
        {
            return Ok(());
        }
    }
    Err(Error::Invalid(format!(
        "policy {name}: too many concurrent updates"
    )))
}

/// Continuous removals placed since the policy's last snapshot: they count against the same
/// deletion guard as the next run, which counts them again with its own deletions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RemovalCount {
    /// The policy record's creation and last snapshot: a new snapshot starts a new count.
    since: String,
    removed: u64,
}

/// Reserves up to `wanted` continuous removals (delete markers) under the policy's deletion
/// guard; returns how many may go ahead. The rest wait for the next run, whose guard then
/// fails it if they are too many.
pub async fn reserve_continuous_removals(
    app: &App,
    record: &PolicyRecord,
    wanted: u64,
) -> Result<u64> {
    let name = &record.policy.name;
    let previous_objects = match &record.last_snapshot {
        Some(snapshot) => app
            .store
            .get_doc::<SnapshotRecord>(&policy_pk(name), &format!("SNAP#{snapshot}"))
            .await?
            .map_or(0, |(s, _)| s.objects),
        None => 0,
    };
    let Some(limit) = record.policy.deletion_limit(previous_objects) else {
        return Ok(wanted);
    };
    let since = format!(
        "{} {}",
        record.created_at,
        record.last_snapshot.as_deref().unwrap_or("-")
    );
    for _ in 0..10 {
        let existing = app
            .store
            .get_doc::<RemovalCount>(&policy_pk(name), "REMOVALS")
            .await?;
        let used = match &existing {
            Some((count, _)) if count.since == since => count.removed,
            _ => 0,
        };
        let granted = wanted.min(limit.saturating_sub(used));
        if granted == 0 {
            return Ok(0);
        }
        let count = RemovalCount {
            since: since.clone(),
            removed: used + granted,
        };
        let revision = existing.map(|(_, r)| r);
        if app
            .store
            .put_doc(&policy_pk(name), "REMOVALS", &count, revision, None)
            .await?
        {
            return Ok(granted);
        }
    }
    Err(Error::State {
        job_id: String::new(),
        message: format!("policy {name}: too many concurrent updates of its removal count"),
    })
}

/// How backup and restore copies are made: metadata and tags as the source has them, at
/// `<target_prefix><key>`.
pub fn copy_spec(
    target_bucket: &str,
    target_prefix: &str,
    storage_class: Option<String>,
) -> CopySpec {
    CopySpec {
        target_bucket: target_bucket.to_string(),
        // Taken literally: a backup "directory" is exactly the prefix the policy names.
        target_key_prefix: target_prefix.to_string(),
        storage_class,
        metadata_directive: MetadataDirective::Copy,
        new_metadata: ReplacementMetadata::default(),
        new_tagging: None,
        checksum_algorithm: None,
        options: Default::default(),
    }
}

/// A copy job's spec and request around a backup or restore source: `copy` (see [`copy_spec`])
/// as its operation, run with the policy's `role_arn`.
fn internal_job(
    description: String,
    token: String,
    copy: CopySpec,
    report: ReportTarget,
    manifest: ManifestSource,
    role_arn: Option<String>,
) -> (CreateJobRequest, JobSpec) {
    let request = CreateJobRequest {
        account_id: None,
        confirmation_required: false,
        operation: Operation {
            s3_put_object_copy: Some(PutObjectCopy {
                target_resource: Some(bucket_arn(&copy.target_bucket)),
                target_key_prefix: (!copy.target_key_prefix.is_empty())
                    .then(|| copy.target_key_prefix.clone()),
                storage_class: copy.storage_class.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        report: Report {
            bucket: Some(bucket_arn(&report.bucket)),
            format: Some(batchops_core::request::REPORT_FORMAT.to_string()),
            enabled: true,
            prefix: Some(report.prefix.clone()),
            report_scope: Some("FailedTasksOnly".to_string()),
            expected_bucket_owner: None,
        },
        client_request_token: Some(token),
        manifest: None,
        description: Some(description),
        priority: 10,
        // The policy's role: workers, planner and finalizer act on the data with it.
        role_arn,
        tags: Vec::new(),
        manifest_generator: None,
        batchops: None,
    };
    let spec = JobSpec {
        operation: OperationSpec::Copy(copy),
        manifest,
        report: Some(report),
        priority: 10,
        confirmation_required: false,
        pinning: Default::default(),
        expected_owners: Vec::new(),
    };
    (request, spec)
}

/// Starts a run of `name`: for a schedule slot (idempotent: one job per policy and slot,
/// however many triggers fire), or by hand now. A policy that names an inventory location
/// runs from its newest report. `full`: diff against no previous snapshot (a new chain).
pub async fn start_run(
    app: &App,
    name: &str,
    slot: Option<OffsetDateTime>,
    full: bool,
) -> Result<CreatedJob> {
    match try_start_run(app, name, slot, full).await? {
        RunStart::Started(job) => Ok(job),
        RunStart::Busy { job_id, status } => Err(run_in_progress(name, &job_id, &status)),
    }
}

/// What starting a run did.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStart {
    Started(CreatedJob),
    /// Not started: this run of the policy has not ended.
    Busy {
        job_id: String,
        status: String,
    },
}

fn run_in_progress(name: &str, job_id: &str, status: &str) -> Error {
    Error::Invalid(format!(
        "RunInProgress: job {job_id} (a run of policy {name}) has not ended (status {status}); \
         a policy runs one run at a time: wait for it to end, or cancel it (batchops job cancel {job_id}), then run again"
    ))
}

/// [`start_run`], answering a run still in progress instead of failing.
pub async fn try_start_run(
    app: &App,
    name: &str,
    slot: Option<OffsetDateTime>,
    full: bool,
) -> Result<RunStart> {
    let record = get_policy(app, name).await?;
    let inventory = match &record.policy.inventory {
        Some(location) => Some(newest_inventory_report(app, &record.policy, location).await?),
        None => None,
    };
    // Tokens in batchops' own namespace: no CreateJob request can take a slot's run.
    let token = internal_token(&match slot {
        Some(slot) => slot_token(name, slot),
        None => format!(
            "backup-{}-{}",
            &name[..name.len().min(20)],
            uuid::Uuid::new_v4().simple()
        ),
    });
    start_run_with(
        app,
        record,
        full,
        slot.unwrap_or_else(now),
        token,
        inventory,
    )
    .await
}

/// Starts the run an inventory report landing asks for: once per report, however often its
/// event is delivered.
pub async fn start_inventory_run(
    app: &App,
    name: &str,
    bucket: &str,
    manifest_key: &str,
) -> Result<CreatedJob> {
    let record = get_policy(app, name).await?;
    let token = internal_token(&format!(
        "inventory-{}",
        crate::objects::md5_hex(format!("{name}\n{bucket}\n{manifest_key}").as_bytes())
    ));
    let report = ManifestObject {
        bucket: bucket.to_string(),
        key: manifest_key.to_string(),
        version_id: None,
        etag: None,
    };
    match start_run_with(app, record, false, now(), token, Some(report)).await? {
        RunStart::Started(job) => Ok(job),
        RunStart::Busy { job_id, status } => {
            // Skipped, not queued: the next report (or scheduled run) reads the newest report.
            tracing::warn!(
                policy = name,
                job_id,
                status,
                key = manifest_key,
                "inventory report landed while a run is in progress: skipped"
            );
            record_skip(
                app,
                name,
                format!("inventory s3://{bucket}/{manifest_key}"),
                &job_id,
            )
            .await?;
            Ok(CreatedJob {
                job_id,
                created: false,
            })
        }
    }
}

async fn record_skip(app: &App, name: &str, what: String, running_job: &str) -> Result<()> {
    let skipped = SkippedRun {
        at: timestamp(now()),
        what,
        running_job: running_job.to_string(),
    };
    update_policy_record(app, name, |r| {
        r.last_skipped = Some(skipped.clone());
        true
    })
    .await
}

/// The newest complete report under the policy's inventory location: S3 Inventory writes
/// `<prefix><YYYY-MM-DDTHH-MMZ>/manifest.json` last, so a folder without it is still being written.
async fn newest_inventory_report(
    app: &App,
    policy: &BackupPolicy,
    location: &batchops_core::backup::Location,
) -> Result<ManifestObject> {
    let s3 = app.data.for_policy(policy).s3(&location.bucket).await;
    let policy = &policy.name;
    let mut prefix = location.prefix.clone();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    let mut folders = Vec::new();
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(&location.bucket)
            .prefix(&prefix)
            .delimiter("/")
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(crate::error::aws("S3", "ListObjectsV2"))?;
        folders.extend(
            out.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix())
                .filter(|p| p[prefix.len()..].starts_with(|c: char| c.is_ascii_digit()))
                .map(str::to_string),
        );
        match out.next_continuation_token() {
            Some(next) if out.is_truncated().unwrap_or(false) => token = Some(next.to_string()),
            _ => break,
        }
    }
    folders.sort();
    for folder in folders.iter().rev() {
        let key = format!("{folder}manifest.json");
        match s3
            .head_object()
            .bucket(&location.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => {
                return Ok(ManifestObject {
                    bucket: location.bucket.clone(),
                    key,
                    version_id: None,
                    etag: None,
                })
            }
            Err(err)
                if err
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 404) =>
            {
                continue
            }
            Err(err) => return Err(crate::error::aws("S3", "HeadObject")(err)),
        }
    }
    Err(Error::Invalid(format!(
        "policy {policy}: no S3 Inventory report (<date folder>/manifest.json) under s3://{}/{prefix}",
        location.bucket
    )))
}

/// Claims the policy's one run (a conditional write on the policy item: only while no claim
/// names a job that has not ended), records the run as a reader of its previous snapshot, and
/// creates the job under the claimed ID.
async fn start_run_with(
    app: &App,
    record: PolicyRecord,
    full: bool,
    at: OffsetDateTime,
    token: String,
    inventory: Option<ManifestObject>,
) -> Result<RunStart> {
    let name = record.policy.name.clone();
    let name = name.as_str();
    // A policy stored before a check existed is held to it here too.
    record.policy.validate().map_err(|(field, message)| {
        Error::Invalid(format!(
            "policy {name} {field}: {message}; fix the policy (batchops backup policy put) and run again"
        ))
    })?;
    let (mut record, job_id) = match claim_run(app, name, &token).await? {
        Ok(claimed) => claimed,
        Err(busy) => return Ok(busy),
    };
    if full {
        record.last_snapshot = None;
    }
    let policy = record.policy.clone();
    // IDs are to the second, and a small bucket backs up in less than one: a run starting in
    // the same second as a snapshot of the policy takes the next free second. (With the same
    // ID it found that snapshot at its end, took it for its own, and its copies were in none.)
    // The claim held here keeps any other run from taking the same one meanwhile.
    let mut id = snapshot_id(at);
    let mut tried = at;
    while app
        .store
        .get_doc::<SnapshotRecord>(&policy_pk(name), &format!("SNAP#{id}"))
        .await?
        .is_some()
    {
        tried += time::Duration::seconds(1);
        id = snapshot_id(tried);
    }
    let previous = match &record.last_snapshot {
        Some(snapshot) => app
            .store
            .get_doc::<SnapshotRecord>(&policy_pk(name), &format!("SNAP#{snapshot}"))
            .await?
            .map(|(s, _)| s)
            // Only a snapshot of this destination: its catalog names copies the diff can trust.
            .filter(|s| {
                s.catalog.bucket == policy.destination.bucket
                    && s.catalog.key.starts_with(&policy.catalog_prefix())
            }),
        None => None,
    };
    // Retention keeps the snapshot while this run diffs against it. One being expired (never
    // the newest, so only after a chain change) is not diffed against: the run is full.
    let previous = match previous {
        Some(s) if add_snapshot_reader(app, name, &s.id, &job_id).await? => Some(s),
        _ => None,
    };
    let previous_objects = previous.as_ref().map_or(0, |s| s.objects);
    let previous = previous.map(|s| s.catalog);
    let report = ReportTarget {
        bucket: policy.destination.bucket.clone(),
        prefix: format!(
            "{}.batchops/reports/{}",
            policy.destination.prefix, policy.name
        ),
        scope: ReportScope::FailedTasksOnly,
    };
    let (request, spec) = internal_job(
        format!("backup {name} snapshot {id}"),
        token,
        copy_spec(
            &policy.destination.bucket,
            &policy.destination.prefix,
            policy.storage_class.clone(),
        ),
        report,
        ManifestSource::Backup(Box::new(BackupRun {
            policy: policy.clone(),
            snapshot_id: id,
            previous,
            previous_objects,
            inventory,
            journal_cutoff: Some(crate::journal::journal_stamp(
                now() - app.config.journal_margin,
            )),
            journal_bucket: Some(app.config.control_bucket.clone()),
        })),
        policy.role_arn.clone(),
    );
    let created = match create_job_with_id(app, job_id.clone(), request, spec).await {
        Ok(created) => created,
        Err(err) => {
            release_claim(app, name, &job_id).await?;
            return Err(err);
        }
    };
    if created.job_id != job_id {
        // The token already had a job (a slot started before): the claim follows that job
        // while it runs, and is given up if it has ended.
        let existing = app.store.get_job(&created.job_id).await?;
        let ended = existing.status.is_terminal();
        update_policy_record(app, name, |r| match &mut r.running {
            Some(claim) if claim.job_id == job_id => {
                if ended {
                    r.running = None;
                } else {
                    claim.job_id = created.job_id.clone();
                }
                true
            }
            _ => false,
        })
        .await?;
    }
    Ok(RunStart::Started(created))
}

/// Takes the policy's run claim for `token`: the policy record as claimed and the job ID to
/// create, or (as Err) the run that holds it.
async fn claim_run(
    app: &App,
    name: &str,
    token: &str,
) -> Result<std::result::Result<(PolicyRecord, String), RunStart>> {
    for _ in 0..10 {
        let Some((mut record, revision)) = app
            .store
            .get_doc::<PolicyRecord>(&policy_pk(name), "META")
            .await?
        else {
            return Err(Error::PolicyNotFound(name.to_string()));
        };
        if let Some(claim) = &record.running {
            if claim.token == token {
                // A retried start of this very run: the job's creation is idempotent.
                let job_id = claim.job_id.clone();
                return Ok(Ok((record, job_id)));
            }
            if let Some(status) = unfinished_job(app, &claim.job_id, &claim.since).await? {
                return Ok(Err(RunStart::Busy {
                    job_id: claim.job_id.clone(),
                    status,
                }));
            }
        }
        let job_id = uuid::Uuid::new_v4().to_string();
        record.running = Some(RunClaim {
            job_id: job_id.clone(),
            token: token.to_string(),
            since: timestamp(now()),
        });
        if app
            .store
            .put_doc(
                &policy_pk(name),
                "META",
                &record,
                Some(revision),
                Some(POLICY_KIND),
            )
            .await?
        {
            return Ok(Ok((record, job_id)));
        }
    }
    Err(Error::Invalid(format!(
        "policy {name}: too many concurrent updates"
    )))
}

/// Starts every enabled policy's run for its latest due slot not yet started. Two overlapping
/// invocations compute the same slot and the same request token, so one job is created.
pub async fn fire_due_policies(app: &App, at: OffsetDateTime) -> Result<Vec<(String, String)>> {
    let mut started = Vec::new();
    for record in list_policies(app).await? {
        let policy = &record.policy;
        let (Some(expression), true) = (&policy.schedule, policy.enabled) else {
            continue;
        };
        let created = parse_time(&record.created_at).map_err(Error::Data)?;
        let schedule = match Schedule::parse(expression, &policy.time_zone, created) {
            Ok(s) => s,
            Err(err) => {
                tracing::error!(policy = %policy.name, error = %err, "invalid schedule");
                continue;
            }
        };
        let Some(slot) = schedule.latest_slot_at_or_before(at) else {
            continue;
        };
        if slot < created
            || record
                .last_slot
                .as_deref()
                .and_then(|s| parse_time(s).ok())
                .is_some_and(|last| last >= slot)
        {
            continue;
        }
        let slot_text = timestamp(slot);
        let job = match try_start_run(app, &policy.name, Some(slot), false).await? {
            RunStart::Started(job) => Some(job),
            RunStart::Busy { job_id, status } => {
                // The slot is skipped (recorded on the policy); the next slot runs.
                tracing::warn!(policy = %policy.name, slot = %slot_text, job_id, status, "a run of this policy is still in progress: slot skipped");
                record_skip(app, &policy.name, format!("slot {slot_text}"), &job_id).await?;
                None
            }
        };
        update_policy_record(app, &policy.name, |r| {
            if r.last_slot
                .as_deref()
                .and_then(|s| parse_time(s).ok())
                .is_some_and(|last| last >= slot)
            {
                return false;
            }
            r.last_slot = Some(slot_text.clone());
            true
        })
        .await?;
        if let Some(job) = job {
            started.push((policy.name.clone(), job.job_id));
        }
    }
    Ok(started)
}

/// Called by the finalizer when a backup run completes: writes its snapshot, then settles
/// what the snapshot makes obsolete. Every step may be repeated, so a finalize attempt that
/// stopped anywhere is repaired by the next: the catalog (and superseded list) are streamed to
/// the destination and indexed with the record marked `settling` before anything is deleted;
/// then the policy's newest snapshot, journal cleanup and retention; then the mark is cleared.
pub async fn complete_snapshot(app: &App, job_id: &str) -> Result<Option<SnapshotRecord>> {
    complete_snapshot_of(app, &app.store.get_job(job_id).await?).await
}

/// [`complete_snapshot`] of a job as the caller read it (its plan has ended: what the snapshot
/// records of it no longer changes).
pub async fn complete_snapshot_of(app: &App, job: &JobRecord) -> Result<Option<SnapshotRecord>> {
    let ManifestSource::Backup(run) = &job.spec.manifest else {
        return Ok(None);
    };
    let snapshot_key = format!("SNAP#{}", run.snapshot_id);
    let snapshot = match app
        .store
        .get_doc::<SnapshotRecord>(&policy_pk(&run.policy.name), &snapshot_key)
        .await?
    {
        Some((existing, _)) if !existing.settling => return Ok(Some(existing)),
        Some((existing, _)) => existing,
        None => write_snapshot(app, job, run).await?,
    };
    settle_snapshot(app, job, run, snapshot).await.map(Some)
}

/// What became of a backup run's copies, claimed once per job (the first claim stands): in its
/// snapshot, or (a run that failed or was cancelled) in a journal part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum RunCopies {
    Snapshot,
    Journal { key: String, done: bool },
}

const RUN_COPIES: &str = "RUNCOPIES";

/// The job's claim on where its copies go: `wanted` if none was made yet, else the one made.
async fn claim_run_copies(app: &App, job_id: &str, wanted: RunCopies) -> Result<(RunCopies, u64)> {
    let pk = crate::store::job_pk(job_id);
    loop {
        if let Some(claimed) = app.store.get_doc::<RunCopies>(&pk, RUN_COPIES).await? {
            return Ok(claimed);
        }
        if app
            .store
            .put_doc(&pk, RUN_COPIES, &wanted, None, None)
            .await?
        {
            return Ok((wanted, 0));
        }
    }
}

/// Writes the snapshot's catalog (and superseded list), streamed, and its record, marked
/// `settling`. A record written meanwhile by a racing attempt stands (this one's files go).
async fn write_snapshot(app: &App, job: &JobRecord, run: &BackupRun) -> Result<SnapshotRecord> {
    let job_id = job.job_id.as_str();
    if let (RunCopies::Journal { key, .. }, _) =
        claim_run_copies(app, job_id, RunCopies::Snapshot).await?
    {
        return Err(Error::State {
            job_id: job_id.to_string(),
            message: format!("its copies were recorded as journal part {key}, not a snapshot"),
        });
    }
    let policy = &run.policy;
    // An interrupted attempt's uploads are not finished: abort them, then start over.
    let ledger = UploadLedger {
        pk: crate::store::job_pk(job_id),
    };
    // The catalogs go into the backup bucket: the run's data, written with its role.
    let clients = app.job_clients(job);
    abort_recorded_uploads(app, &clients, &ledger).await?;
    let catalog_s3 = clients.s3(&policy.destination.bucket).await;
    let catalog_ref = |suffix: &str| CatalogRef {
        snapshot_id: run.snapshot_id.clone(),
        bucket: policy.destination.bucket.clone(),
        key: format!("{}{}.{suffix}", policy.catalog_prefix(), run.snapshot_id),
        version_id: None,
        etag: None,
    };
    let mut snapshot = SnapshotRecord {
        id: run.snapshot_id.clone(),
        policy: policy.name.clone(),
        job_id: job_id.to_string(),
        created_at: timestamp(now()),
        catalog: catalog_ref("catalog.gz"),
        objects: 0,
        bytes: 0,
        copied: 0,
        unchanged: job.plan.progress.skipped,
        deleted: job.plan.progress.deleted,
        continuous: job.plan.progress.journaled,
        superseded: 0,
        superseded_catalog: None,
        readers: Vec::new(),
        expiring: false,
        settling: true,
    };
    let new_list = |list: &CatalogRef| {
        StreamedUpload::new(
            app,
            catalog_s3.clone(),
            &list.bucket,
            &list.key,
            "application/gzip",
            ledger.clone(),
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()),
        )
    };
    let header = format!("{CATALOG_HEADER}\n");
    let mut catalog = new_list(&snapshot.catalog);
    catalog.write(header.as_bytes()).await?;
    let mut superseded = None;
    let mut line = String::with_capacity(256);
    let mut walk = DraftWalk::new(app, job);
    while let Some(item) = walk.next().await? {
        let entry = match item {
            DraftItem::Done(entry) => Some(entry),
            DraftItem::Superseded(entry) => {
                snapshot.superseded += 1;
                line.clear();
                entry.write_line(&mut line);
                let list = match superseded.as_mut() {
                    Some(list) => list,
                    None => {
                        let mut list = new_list(&catalog_ref("superseded.gz"));
                        list.write(header.as_bytes()).await?;
                        superseded.insert(list)
                    }
                };
                list.write(line.as_bytes()).await?;
                None
            }
            DraftItem::Pending {
                mut entry,
                fallback,
                result,
            } => match result {
                CopyResult::Copied { dest_version } => {
                    entry.dest_version = dest_version;
                    snapshot.copied += 1;
                    Some(entry)
                }
                CopyResult::Failed => fallback,
                CopyResult::NotRun => {
                    return Err(Error::Data(format!(
                        "job {job_id}: the copy of {} has no result, though every task ran",
                        entry.key
                    )))
                }
            },
        };
        if let Some(entry) = entry {
            snapshot.objects += 1;
            snapshot.bytes += entry.size;
            line.clear();
            entry.write_line(&mut line);
            catalog.write(line.as_bytes()).await?;
        }
    }
    if let Some(list) = superseded {
        let stored = list.finish().await?;
        let mut list = catalog_ref("superseded.gz");
        (list.version_id, list.etag) = (stored.version_id, stored.etag);
        snapshot.superseded_catalog = Some(list);
    }
    // Read back only as written: the snapshot record pins the catalog's version and ETag.
    let stored = catalog.finish().await?;
    (snapshot.catalog.version_id, snapshot.catalog.etag) = (stored.version_id, stored.etag);
    let pk = policy_pk(&policy.name);
    let snapshot_key = format!("SNAP#{}", run.snapshot_id);
    if app
        .store
        .put_doc(&pk, &snapshot_key, &snapshot, None, None)
        .await?
    {
        return Ok(snapshot);
    }
    let Some((winner, _)) = app
        .store
        .get_doc::<SnapshotRecord>(&pk, &snapshot_key)
        .await?
    else {
        return Err(Error::State {
            job_id: job_id.to_string(),
            message: format!("snapshot {} vanished while being written", run.snapshot_id),
        });
    };
    // This attempt's versions are nobody's: remove them (never the winner's).
    for (mine, theirs) in [
        (Some(&snapshot.catalog), Some(&winner.catalog)),
        (
            snapshot.superseded_catalog.as_ref(),
            winner.superseded_catalog.as_ref(),
        ),
    ] {
        if let Some(mine) = mine.filter(|m| m.version_id.is_some() && Some(*m) != theirs) {
            delete_catalog_version(&clients, mine).await?;
        }
    }
    Ok(winner)
}

/// Makes the snapshot the policy's newest, deletes the journal parts it settles, applies
/// retention, then clears its `settling` mark. Each step may be repeated.
async fn settle_snapshot(
    app: &App,
    job: &JobRecord,
    run: &BackupRun,
    mut snapshot: SnapshotRecord,
) -> Result<SnapshotRecord> {
    let policy = &run.policy;
    let id = snapshot.id.clone();
    update_policy_record(app, &policy.name, |r| {
        // A run of the policy's previous source or destination does not continue the new chain.
        if !r.policy.same_chain(policy)
            || r.last_snapshot
                .as_deref()
                .is_some_and(|last| snapshot_order(last, &id).is_ge())
        {
            return false;
        }
        r.last_snapshot = Some(id.clone());
        true
    })
    .await?;
    drop_settled_journal(app, run, &job.created_at).await?;
    retain(app, &policy.name, now(), Some(&job.job_id)).await?;
    let pk = policy_pk(&policy.name);
    let snapshot_key = format!("SNAP#{id}");
    for _ in 0..10 {
        // Gone: retention expired it already (an older snapshot completing late).
        let Some((mut record, revision)) = app
            .store
            .get_doc::<SnapshotRecord>(&pk, &snapshot_key)
            .await?
        else {
            break;
        };
        if !record.settling {
            break;
        }
        record.settling = false;
        if app
            .store
            .put_doc(&pk, &snapshot_key, &record, Some(revision), None)
            .await?
        {
            break;
        }
    }
    snapshot.settling = false;
    Ok(snapshot)
}

/// Deletes the exact version of a catalog (or superseded list) that a record pins; by key when
/// it has no version (an unversioned destination).
async fn delete_catalog_version(clients: &JobClients, catalog: &CatalogRef) -> Result<()> {
    clients
        .s3(&catalog.bucket)
        .await
        .delete_object()
        .bucket(&catalog.bucket)
        .key(&catalog.key)
        .set_version_id(catalog.version_id.clone())
        .send()
        .await
        .map_err(|e| {
            Error::aws_call(
                "S3",
                "DeleteObject",
                &format!("s3://{}/{}", catalog.bucket, catalog.key),
                &e,
            )
        })?;
    Ok(())
}

/// Records the copies a backup run made before it failed or was cancelled as a journal part
/// (continuous mode's row format), so the next run takes them as already copied (or, replaced
/// since, lists them as superseded for retention to free) instead of copying again and leaving
/// versions no snapshot references. Once per job, whatever the number of calls: the part's key
/// is claimed first, and a part already recorded is not written again.
pub async fn journal_unfinished_run(app: &App, job: &JobRecord) -> Result<()> {
    let ManifestSource::Backup(run) = &job.spec.manifest else {
        return Ok(());
    };
    // Workers run only once planning has finished: before, no copy was made.
    if !job.plan.finished || job.status == JobStatus::Complete {
        return Ok(());
    }
    let job_id = job.job_id.as_str();
    let policy = &run.policy;
    let wanted = RunCopies::Journal {
        key: crate::journal::journal_part_key(policy, now(), &format!("run-{job_id}")),
        done: false,
    };
    let (key, revision) = match claim_run_copies(app, job_id, wanted).await? {
        // The run wrote (or began writing) its snapshot: the copies are there.
        (RunCopies::Snapshot, _) | (RunCopies::Journal { done: true, .. }, _) => return Ok(()),
        (RunCopies::Journal { key, done: false }, revision) => (key, revision),
    };
    let bucket = run
        .journal_bucket
        .clone()
        .unwrap_or_else(|| app.config.control_bucket.clone());
    let mut copies = 0u64;
    if crate::journal::recorded_part(app, &policy.name, &key)
        .await?
        .is_none()
    {
        let ledger = UploadLedger {
            pk: crate::store::job_pk(job_id),
        };
        let clients = app.job_clients(job);
        abort_recorded_uploads(app, &clients, &ledger).await?;
        let mut part = StreamedUpload::new(
            app,
            clients.s3(&bucket).await,
            &bucket,
            &key,
            crate::journal::JOURNAL_CONTENT_TYPE,
            ledger,
            Vec::new(),
        );
        let mut walk = DraftWalk::new(app, job);
        let mut line = String::with_capacity(256);
        while let Some(item) = walk.next().await? {
            if let DraftItem::Pending {
                mut entry,
                result: CopyResult::Copied { dest_version },
                ..
            } = item
            {
                entry.dest_version = dest_version;
                line.clear();
                JournalRow::Copied(entry).write_line(&mut line);
                part.write(line.as_bytes()).await?;
                copies += 1;
            }
        }
        if copies > 0 {
            let stored = part.finish().await?;
            crate::journal::record_part(
                app,
                &policy.name,
                &crate::journal::JournalPart::new(&key, stored),
            )
            .await?;
            tracing::info!(job_id, policy = %policy.name, copies, key, "recorded the copies of a run that did not complete; the next run takes them");
        }
    }
    let done = RunCopies::Journal { key, done: true };
    app.store
        .put_doc(
            &crate::store::job_pk(job_id),
            RUN_COPIES,
            &done,
            Some(revision),
            None,
        )
        .await?;
    Ok(())
}

/// Journal parts written well before this run started are in its snapshot (or superseded by
/// it): delete them. Parts from around the start or later stay for the next run.
async fn drop_settled_journal(app: &App, run: &BackupRun, run_created: &str) -> Result<()> {
    let mut run = run.clone();
    if run.journal_cutoff.is_none() {
        // A run created before cutoffs were recorded: its start less the margin.
        let started = parse_time(run_created).map_err(Error::Data)?;
        run.journal_cutoff = Some(crate::journal::journal_stamp(
            started - app.config.journal_margin,
        ));
    }
    let Some(bucket) = run.journal_bucket.clone() else {
        return Ok(());
    };
    let policy = &run.policy;
    let mut after: Option<String> = None;
    loop {
        let (parts, next) =
            crate::journal::parts_page(&app.store, policy, after.as_deref()).await?;
        for part in parts {
            if run.settles_journal_part(&part.key) {
                crate::journal::drop_part(app, &bucket, &policy.name, &part).await?;
            }
        }
        match next {
            Some(position) => after = Some(position),
            None => return Ok(()),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub expired_snapshots: Vec<String>,
    pub deleted_versions: u64,
}

/// Expires snapshots past the policy's retention, and with them only the backup object versions
/// no kept snapshot still references.
pub async fn apply_retention(
    app: &App,
    name: &str,
    at: OffsetDateTime,
) -> Result<RetentionOutcome> {
    retain(app, name, at, None).await
}

/// [`apply_retention`] as run `finished` completes (it no longer reads its previous snapshot).
async fn retain(
    app: &App,
    name: &str,
    at: OffsetDateTime,
    finished: Option<&str>,
) -> Result<RetentionOutcome> {
    let record = get_policy(app, name).await?;
    let snapshots = list_snapshots(app, name).await?;
    let ids: Vec<String> = snapshots.iter().map(|s| s.id.clone()).collect();
    // Snapshots an unfinished job reads (a run's previous snapshot, a restore's) are kept;
    // mark_expiring checks again, race-free, before one is expired.
    let mut in_use = HashSet::new();
    for snapshot in &snapshots {
        for reader in &snapshot.readers {
            if live_reader(app, reader, finished).await?.is_some() {
                in_use.insert(snapshot.id.clone());
            }
        }
    }
    // Snapshots an interrupted retention marked are finished whatever the rules say now.
    let mut expired: HashSet<String> = snapshots
        .iter()
        .filter(|s| s.expiring)
        .map(|s| s.id.clone())
        .collect();
    for id in expired_snapshots(&ids, &record.policy.retention, at.unix_timestamp(), &in_use) {
        if !expired.contains(&id) && mark_expiring(app, name, &id, finished).await? {
            expired.insert(id);
        }
    }
    let mut outcome = RetentionOutcome::default();
    if expired.is_empty() {
        return Ok(outcome);
    }
    let (gone, kept): (Vec<&SnapshotRecord>, Vec<&SnapshotRecord>) =
        snapshots.iter().partition(|s| expired.contains(&s.id));
    // Catalogs and copies are in the backup bucket: reached with the policy's role.
    let clients = app.data.for_policy(&record.policy);
    let reader = Reader::new(Some(app.s3.clone())).with_clients(clients.clone());
    let kept_catalogs: Vec<CatalogRef> = kept.iter().map(|s| s.catalog.clone()).collect();
    // An expired snapshot's superseded continuous copies go with it (still only if no kept
    // snapshot references them).
    let gone_catalogs: Vec<CatalogRef> = gone
        .iter()
        .flat_map(|s| std::iter::once(s.catalog.clone()).chain(s.superseded_catalog.clone()))
        .collect();
    outcome.deleted_versions = tokio::task::spawn_blocking(move || {
        delete_unreferenced_versions(&reader, &kept_catalogs, &gone_catalogs)
    })
    .await
    .map_err(|e| Error::Data(e.to_string()))??;
    // Catalogs after the versions they name, records last: retention interrupted anywhere
    // finds what is left and finishes it (a catalog already deleted had its versions freed).
    for snapshot in gone {
        delete_catalog_version(&clients, &snapshot.catalog).await?;
        if let Some(list) = &snapshot.superseded_catalog {
            delete_catalog_version(&clients, list).await?;
        }
        app.store
            .delete_doc(&policy_pk(name), &format!("SNAP#{}", snapshot.id))
            .await?;
        outcome.expired_snapshots.push(snapshot.id.clone());
    }
    outcome.expired_snapshots.sort();
    Ok(outcome)
}

/// A catalog read in key order, one entry ahead.
struct CatalogCursor {
    entries: Box<dyn Iterator<Item = std::result::Result<CatalogEntry, String>> + Send>,
    head: Option<CatalogEntry>,
}

impl CatalogCursor {
    fn new(
        entries: Box<dyn Iterator<Item = std::result::Result<CatalogEntry, String>> + Send>,
    ) -> Result<Self> {
        let mut cursor = CatalogCursor {
            entries,
            head: None,
        };
        cursor.advance()?;
        Ok(cursor)
    }

    fn advance(&mut self) -> Result<()> {
        self.head = self.entries.next().transpose().map_err(Error::Data)?;
        Ok(())
    }

    /// Takes the entries of `key` (skipping smaller keys).
    fn take_key(&mut self, key: &str, out: &mut Vec<CatalogEntry>) -> Result<()> {
        while let Some(head) = &self.head {
            if head.key.as_str() > key {
                break;
            }
            if head.key == key {
                out.extend(self.head.take());
            }
            self.advance()?;
        }
        Ok(())
    }
}

/// Versions per DeleteObjects request (S3's maximum).
const DELETE_BATCH: usize = 1000;

/// Backup versions to delete, sent a batch at a time.
struct VersionDeletes<'a> {
    reader: &'a Reader,
    bucket: String,
    batch: Vec<aws_sdk_s3::types::ObjectIdentifier>,
    deleted: u64,
}

impl VersionDeletes<'_> {
    fn push(&mut self, bucket: &str, key: &str, version: &str) -> Result<()> {
        if bucket != self.bucket {
            self.flush()?;
            self.bucket = bucket.to_string();
        }
        let id = aws_sdk_s3::types::ObjectIdentifier::builder()
            .key(key)
            .version_id(version)
            .build()
            .map_err(|e| Error::Data(e.to_string()))?;
        self.batch.push(id);
        if self.batch.len() >= DELETE_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let count = self.batch.len() as u64;
        let request = aws_sdk_s3::types::Delete::builder()
            .set_objects(Some(std::mem::take(&mut self.batch)))
            .quiet(true)
            .build()
            .map_err(|e| Error::Data(e.to_string()))?;
        let s3 = self.reader.s3_for(&self.bucket)?;
        let out = self
            .reader
            .handle
            .block_on(
                s3.delete_objects()
                    .bucket(&self.bucket)
                    .delete(request)
                    .send(),
            )
            .map_err(|e| Error::aws_call("S3", "DeleteObjects", &self.bucket, &e))?;
        // Quiet: only the versions that could not be deleted are listed.
        if let Some(failed) = out.errors().first() {
            return Err(Error::Data(format!(
                "retention could not delete {} of {count} backup versions in s3://{}, first s3://{}/{} version {}: {} {}",
                out.errors().len(),
                self.bucket,
                self.bucket,
                failed.key().unwrap_or_default(),
                failed.version_id().unwrap_or_default(),
                failed.code().unwrap_or_default(),
                failed.message().unwrap_or_default()
            )));
        }
        self.deleted += count;
        Ok(())
    }
}

/// Deletes the backup versions the expired catalogs name and no kept catalog does, by a
/// sorted merge of all of them streamed (memory: one key's entries and a batch of deletes).
/// An expired catalog that is gone was deleted by an interrupted retention after its versions
/// were: it is skipped.
fn delete_unreferenced_versions(
    reader: &Reader,
    kept: &[CatalogRef],
    expired: &[CatalogRef],
) -> Result<u64> {
    let mut kept: Vec<CatalogCursor> = kept
        .iter()
        .map(|c| CatalogCursor::new(open_catalog(reader, c)?))
        .collect::<Result<_>>()?;
    let mut expiring = Vec::new();
    for catalog in expired {
        match crate::catalog_io::open_catalog_pinned(reader, catalog) {
            Ok(entries) => expiring.push((CatalogCursor::new(entries)?, catalog)),
            Err(crate::catalog_io::PinFailure::Gone(reason)) => {
                tracing::info!(reason, "an expired snapshot's catalog is gone already (retention was interrupted after deleting it)");
            }
            Err(failure) => return Err(failure.into_error("snapshot catalog")),
        }
    }
    let mut deletes = VersionDeletes {
        reader,
        bucket: String::new(),
        batch: Vec::with_capacity(DELETE_BATCH),
        deleted: 0,
    };
    let (mut referenced, mut candidates) = (Vec::new(), Vec::new());
    loop {
        let Some(key) = expiring
            .iter()
            .filter_map(|(c, _)| c.head.as_ref().map(|e| e.key.clone()))
            .min()
        else {
            deletes.flush()?;
            return Ok(deletes.deleted);
        };
        referenced.clear();
        for cursor in &mut kept {
            cursor.take_key(&key, &mut referenced)?;
        }
        let mut done: HashSet<(String, String)> = HashSet::new();
        for (cursor, catalog) in &mut expiring {
            candidates.clear();
            cursor.take_key(&key, &mut candidates)?;
            let directory = catalog_directory(&catalog.key).unwrap_or_default();
            for entry in candidates.drain(..) {
                // Whatever a catalog says, retention deletes only backup copies inside the
                // directory the catalog belongs to, and never its metadata.
                if !copy_within(directory, &entry.dest_key)
                    || in_metadata(directory, &entry.dest_key)
                {
                    tracing::error!(catalog = %catalog.key, dest_key = %entry.dest_key, directory, "catalog entry outside its backup directory (or in its metadata): not deleted");
                    continue;
                }
                // Only exact versions are deleted: an unversioned copy (no version ID) may have
                // been overwritten by a kept snapshot's copy of the same key.
                let Some(version) = entry.dest_version.clone() else {
                    continue;
                };
                let still_needed = referenced.iter().any(|r| {
                    r.dest_key == entry.dest_key && r.dest_version.as_deref() == Some(&version)
                });
                if still_needed || !done.insert((entry.dest_key.clone(), version.clone())) {
                    continue;
                }
                deletes.push(&catalog.bucket, &entry.dest_key, &version)?;
            }
        }
    }
}

/// Reads a whole catalog (on a blocking thread: the reader streams it from S3).
pub async fn read_catalog(reader: &Reader, catalog: &CatalogRef) -> Result<Vec<CatalogEntry>> {
    let reader = reader.clone();
    let catalog = catalog.clone();
    tokio::task::spawn_blocking(move || {
        open_catalog(&reader, &catalog)?
            .collect::<std::result::Result<Vec<_>, String>>()
            .map_err(Error::Data)
    })
    .await
    .map_err(|e| Error::Data(e.to_string()))?
}

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    pub snapshot: Option<String>,
    /// The newest snapshot taken at or before this time.
    pub as_of: Option<String>,
    /// Target bucket and prefix; default: the policy's source bucket, keys as they were.
    pub to: Option<(String, String)>,
    pub prefix: Option<String>,
    pub keys: Option<Vec<String>>,
    /// Restore into an unversioned target (a restored object replaces what is there for good).
    pub allow_overwrite: bool,
}

/// Picks the snapshot a restore reads.
pub async fn choose_snapshot(
    app: &App,
    name: &str,
    request: &RestoreRequest,
) -> Result<SnapshotRecord> {
    // Being expired: no longer restorable.
    let snapshots: Vec<SnapshotRecord> = list_snapshots(app, name)
        .await?
        .into_iter()
        .filter(|s| !s.expiring)
        .collect();
    let newest_of = |candidates: Vec<&SnapshotRecord>| {
        let id = newest_snapshot(candidates.iter().map(|s| s.id.as_str()))?.to_string();
        snapshots.iter().find(|s| s.id == id).cloned()
    };
    let chosen = match (&request.snapshot, &request.as_of) {
        (Some(id), _) => snapshots.iter().find(|s| &s.id == id).cloned(),
        (None, Some(as_of)) => {
            // A snapshot is "taken" when its run started (its ID), as listings are read then.
            let at = parse_time(as_of).map_err(Error::Invalid)?.unix_timestamp();
            newest_of(
                snapshots
                    .iter()
                    .filter(|s| snapshot_id_unix(&s.id).is_some_and(|t| t <= at))
                    .collect(),
            )
        }
        (None, None) => newest_of(snapshots.iter().collect()),
    };
    chosen.ok_or_else(|| {
        Error::Invalid(format!(
            "policy `{name}` has no snapshot matching the request"
        ))
    })
}

/// The restore job's source and spec (shared by the job and its dry run).
pub async fn restore_source(
    app: &App,
    name: &str,
    request: &RestoreRequest,
) -> Result<(PolicyRecord, SnapshotRecord, RestoreSource)> {
    let record = get_policy(app, name).await?;
    let snapshot = choose_snapshot(app, name, request).await?;
    let keys_object = match &request.keys {
        None => None,
        Some(keys) => {
            let key = format!("restores/{}/keys", uuid::Uuid::new_v4());
            put_bytes(
                &app.s3,
                &app.config.control_bucket,
                &key,
                keys.join("\n").into_bytes(),
                "text/plain",
            )
            .await?;
            Some(key)
        }
    };
    let source = RestoreSource {
        catalog: snapshot.catalog.clone(),
        prefix: request.prefix.clone(),
        keys_object,
    };
    Ok((record, snapshot, source))
}

/// Creates a restore job: copies the snapshot's backup versions back (to their original keys in
/// the source bucket, or under `to`). It never deletes anything at the target.
pub async fn start_restore(app: &App, name: &str, request: &RestoreRequest) -> Result<CreatedJob> {
    let (record, snapshot, source) = restore_source(app, name, request).await?;
    let policy = &record.policy;
    let (bucket, prefix) = request
        .to
        .clone()
        .unwrap_or_else(|| (policy.source.bucket.clone(), String::new()));
    let target_s3 = app.data.for_policy(policy).s3(&bucket).await;
    if !request.allow_overwrite && !crate::prepare::versioning_enabled(&target_s3, &bucket).await? {
        return Err(Error::Invalid(format!(
            "restore target bucket `{bucket}` does not have versioning enabled: a restored object would replace the one at its key for good. \
             Enable versioning on it (aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled), \
             restore elsewhere (--to s3://other-bucket/prefix), or pass --allow-overwrite (API: \"allowOverwrite\": true)"
        )));
    }
    let report = ReportTarget {
        bucket: policy.destination.bucket.clone(),
        prefix: format!(
            "{}.batchops/restores/{}",
            policy.destination.prefix, policy.name
        ),
        scope: ReportScope::AllTasks,
    };
    let (request_doc, spec) = internal_job(
        format!("restore {name} snapshot {}", snapshot.id),
        internal_token(&format!("restore-{}", uuid::Uuid::new_v4().simple())),
        copy_spec(&bucket, &prefix, None),
        report,
        ManifestSource::Restore(source),
        policy.role_arn.clone(),
    );
    // Retention keeps the snapshot while this restore reads it.
    let job_id = uuid::Uuid::new_v4().to_string();
    if !add_snapshot_reader(app, name, &snapshot.id, &job_id).await? {
        return Err(Error::Invalid(format!(
            "policy `{name}` snapshot {} is being expired by retention; restore another snapshot",
            snapshot.id
        )));
    }
    create_job_with_id(app, job_id, request_doc, spec).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A snapshot record as stored before backup output became camelCase.
    fn snake_case_snapshot() -> serde_json::Value {
        json!({
            "id": "20261201T000000Z", "policy": "web", "job_id": "j1",
            "created_at": "2026-12-01T00:00:00Z",
            "catalog": {"snapshot_id": "20261201T000000Z", "bucket": "vault", "key": "c.gz",
                        "version_id": "v1", "etag": "\"e\""},
            "objects": 3, "bytes": 30, "copied": 3, "unchanged": 0, "deleted": 0,
            "superseded_catalog": {"snapshot_id": "20261201T000000Z", "bucket": "vault",
                                   "key": "s.gz"},
            "readers": [{"job_id": "j2", "since": "2026-12-01T00:00:01Z"}]
        })
    }

    #[test]
    fn snapshot_records_stored_in_snake_case_are_still_read() {
        let record: SnapshotRecord = serde_json::from_value(snake_case_snapshot()).unwrap();
        assert_eq!(record.job_id, "j1");
        assert_eq!(record.created_at, "2026-12-01T00:00:00Z");
        assert_eq!(record.catalog.version_id.as_deref(), Some("v1"));
        assert_eq!(record.catalog.snapshot_id, "20261201T000000Z");
        assert_eq!(record.superseded_catalog.unwrap().key, "s.gz");
        assert_eq!(record.readers[0].job_id, "j2");
    }

    #[test]
    fn backup_records_are_written_in_camel_case_only() {
        let record: SnapshotRecord = serde_json::from_value(snake_case_snapshot()).unwrap();
        let text = serde_json::to_string(&record).unwrap();
        for name in [
            "\"jobId\"",
            "\"createdAt\"",
            "\"snapshotId\"",
            "\"versionId\"",
            "\"supersededCatalog\"",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
        assert!(!text.contains('_'), "a snake_case name in {text}");
        let again: SnapshotRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(again, record);

        let policy: PolicyRecord = serde_json::from_value(json!({
            "policy": {"name": "web", "source": {"bucket": "src", "prefix": ""},
                       "destination": {"bucket": "vault", "prefix": "b/"}},
            "created_at": "2026-12-01T00:00:00Z", "last_slot": null, "last_snapshot": "s1",
            "running": {"job_id": "j3", "token": "t", "since": "x"},
            "last_skipped": {"at": "y", "what": "slot y", "running_job": "j3"}
        }))
        .unwrap();
        assert_eq!(policy.last_snapshot.as_deref(), Some("s1"));
        let value = serde_json::to_value(&policy).unwrap();
        assert_eq!(value["lastSnapshot"], "s1");
        assert_eq!(value["running"]["jobId"], "j3");
        assert_eq!(value["lastSkipped"]["runningJob"], "j3");
        assert_eq!(value["createdAt"], "2026-12-01T00:00:00Z");
    }
}
