//! S3 events on the events queue. Continuous backups: objects are copied into the backup within
//! seconds of being written, each batch journaled in the destination so the next run records
//! those copies in its snapshot instead of copying again. Inventory arrivals: a new report's
//! manifest.json starts that policy's run from the report.
//!
//! Delivery is at least once. An applied event leaves a marker (DynamoDB, expiring by TTL), so
//! a redelivered event is not copied again.

use crate::backup::{
    copy_spec, list_policies, reserve_continuous_removals, start_inventory_run, PolicyRecord,
};
use crate::catalog_io::Stored;
use crate::error::S3Failure;
use crate::journal::{journal_part_key, record_part, JournalPart, JOURNAL_CONTENT_TYPE};
use crate::objects::{delete_object, md5_hex, put_bytes_pinned};
use crate::ops::copy::{Copier, SourceSize};
use crate::ops::TaskResult;
use crate::{now, unix_now, App};
use batchops_core::backup::{BackupPolicy, CatalogEntry, JournalRow, VersionsMode};
use batchops_core::events::{coalesce, parse_notification, EventKind, Notification, ObjectEvent};
use batchops_core::manifest::ObjectRef;
use batchops_core::report::TaskStatus;
use batchops_core::request::CopySpec;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;

/// Markers outlive SQS's longest retention (14 days), so no redelivery can find one gone.
const MARKER_SECONDS: u64 = 15 * 86_400;

/// One queue message.
#[derive(Debug, Clone)]
pub struct EventMessage {
    pub id: String,
    pub body: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsSummary {
    pub copied: u64,
    /// Delete markers placed on backup copies (policies with `deletes: propagate`).
    pub removed: u64,
    /// Events already applied by an earlier delivery.
    pub already_applied: u64,
    /// Events whose object changed again (or went) before it could be copied: a later event
    /// or the next run covers it.
    pub superseded: u64,
    /// Removals left to the next run: past the deletion guard (maxDeletes) since the last
    /// snapshot, or of a policy whose destination is not safe to write (see the logs).
    pub deferred: u64,
    pub test_events: u64,
    /// Backup runs started by inventory reports landing: (policy, job id).
    pub runs_started: Vec<(String, String)>,
    /// Messages to redeliver (their failure is logged).
    pub failed: Vec<String>,
}

/// What applying one event did.
enum EventOutcome {
    Journal(JournalRow),
    AlreadyApplied,
    Superseded,
    /// Nothing to do now (a removal the next run records).
    Deferred,
}

/// Handles one batch of queue messages.
pub async fn handle_messages(app: &App, messages: Vec<EventMessage>) -> EventsSummary {
    let mut summary = EventsSummary::default();
    let mut events: Vec<(ObjectEvent, String)> = Vec::new();
    for message in messages {
        match parse_notification(&message.body) {
            Ok(Notification::Test) => summary.test_events += 1,
            Ok(Notification::Objects(objects)) => {
                events.extend(objects.into_iter().map(|e| (e, message.id.clone())))
            }
            Err(reason) => {
                // Left to SQS: after its receive limit the message waits in the DLQ.
                tracing::error!(message_id = %message.id, body = %message.body, reason, "events queue message is not an S3 event notification");
                summary.failed.push(message.id);
            }
        }
    }
    if events.is_empty() {
        return summary;
    }
    let policies = match list_policies(app).await {
        Ok(records) => records,
        Err(err) => {
            tracing::error!(error = %err, "cannot read backup policies; the batch will be retried");
            summary.failed.extend(events.into_iter().map(|(_, id)| id));
            dedupe(&mut summary.failed);
            return summary;
        }
    };
    for record in policies {
        let policy = &record.policy;
        if !policy.enabled {
            continue;
        }
        for (event, message_id) in &events {
            if event.kind == EventKind::Created
                && policy.is_inventory_manifest(&event.bucket, &event.key)
            {
                match start_inventory_run(app, &policy.name, &event.bucket, &event.key).await {
                    Ok(job) => summary.runs_started.push((policy.name.clone(), job.job_id)),
                    Err(err) => {
                        tracing::error!(policy = %policy.name, key = %event.key, error = %err, "inventory report landed but the run could not start");
                        summary.failed.push(message_id.clone());
                    }
                }
            }
        }
        if policy.continuous {
            let covered: Vec<(ObjectEvent, String)> = events
                .iter()
                .filter(|(e, _)| policy.covers(&e.bucket, &e.key))
                .cloned()
                .collect();
            if !covered.is_empty() {
                continuous_batch(app, &record, covered, &mut summary).await;
            }
        }
    }
    dedupe(&mut summary.failed);
    summary
}

fn dedupe(ids: &mut Vec<String>) {
    ids.sort();
    ids.dedup();
}

/// Applies one policy's share of a batch: copies (or delete markers) in parallel, then one
/// journal part, then the markers that make redelivery harmless.
async fn continuous_batch(
    app: &App,
    record: &PolicyRecord,
    events: Vec<(ObjectEvent, String)>,
    summary: &mut EventsSummary,
) {
    let policy = &record.policy;
    match destination_safe(app, policy).await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => {
            // Nothing is lost: the next run lists the source, and refuses the same way until
            // the policy or the bucket is fixed.
            tracing::error!(policy = %policy.name, reason, "continuous backup skipped for this policy");
            summary.deferred += events.len() as u64;
            return;
        }
        Err(err) => {
            tracing::error!(policy = %policy.name, error = %err, "cannot check the destination's versioning; the batch will be retried");
            summary.failed.extend(events.into_iter().map(|(_, id)| id));
            return;
        }
    }
    // Messages behind each key: if the key's newest event fails, all of them come back.
    let mut messages_of: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (event, id) in &events {
        messages_of
            .entry((event.bucket.clone(), event.key.clone()))
            .or_default()
            .insert(id.clone());
    }
    let every_version = policy.versions == VersionsMode::All;
    let latest = coalesce(events.into_iter().map(|(e, _)| e).collect(), every_version);
    // Delete markers count against the deletion guard, like the deletions of a run.
    let removals = if policy.marks_deletions() {
        latest
            .iter()
            .filter(|e| e.kind == EventKind::Removed)
            .count() as u64
    } else {
        0
    };
    let mut allowed_removals = if removals > 0 {
        match reserve_continuous_removals(app, record, removals).await {
            Ok(granted) => granted,
            Err(err) => {
                tracing::error!(policy = %policy.name, error = %err, "cannot count removals against maxDeletes; they are left to the next run");
                0
            }
        }
    } else {
        0
    };
    if allowed_removals < removals {
        tracing::warn!(policy = %policy.name, removals, allowed = allowed_removals, "continuous removals past the policy's deletion guard (maxDeletes) are left to the next run");
    }
    let latest: Vec<(ObjectEvent, bool)> = latest
        .into_iter()
        .map(|event| {
            let may_remove = event.kind == EventKind::Removed && allowed_removals > 0;
            if may_remove {
                allowed_removals -= 1;
            }
            (event, may_remove)
        })
        .collect();
    let spec = copy_spec(
        &policy.destination.bucket,
        &policy.destination.prefix,
        policy.storage_class.clone(),
    );
    let stop = AtomicBool::new(false);
    // The source's objects and the backup bucket with the policy's role.
    let sources = app.data.for_policy(policy);
    let destination = sources.s3(&policy.destination.bucket).await;
    let copier = Copier {
        s3: &destination,
        sources: &sources,
        spec: &spec,
        settings: &app.copy,
        stop: &stop,
        part_deadline: None,
        uploads: None,
    };
    let results: Vec<(ObjectEvent, Result<EventOutcome, String>)> = futures::stream::iter(latest)
        .map(|(event, may_remove)| {
            let copier = &copier;
            let spec = &spec;
            async move {
                let result = apply_event(app, policy, copier, spec, &event, may_remove).await;
                (event, result)
            }
        })
        .buffer_unordered(app.config.task_concurrency)
        .collect()
        .await;

    let mut rows = Vec::new();
    let mut applied = Vec::new();
    let mut failed_keys = BTreeSet::new();
    for (event, result) in results {
        let key = (event.bucket.clone(), event.key.clone());
        match result {
            Ok(EventOutcome::Journal(row)) => {
                match &row {
                    JournalRow::Copied(_) => summary.copied += 1,
                    JournalRow::Removed { .. } => summary.removed += 1,
                }
                rows.push(row);
                applied.push(event);
            }
            Ok(EventOutcome::AlreadyApplied) => summary.already_applied += 1,
            Ok(EventOutcome::Superseded) => summary.superseded += 1,
            // Under `propagate`, a removal deferred past the guard; otherwise the usual path.
            Ok(EventOutcome::Deferred) if policy.marks_deletions() => summary.deferred += 1,
            Ok(EventOutcome::Deferred) => {}
            Err(reason) => {
                tracing::error!(policy = %policy.name, bucket = %event.bucket, key = %event.key, event = %event.name, reason, "continuous backup of an event failed; it will be retried");
                failed_keys.insert(key);
            }
        }
    }
    if !rows.is_empty() {
        if let Err(err) = write_journal(app, policy, &rows).await {
            // The copies stand; redelivery copies again (an extra backup version) and journals.
            tracing::error!(policy = %policy.name, error = %err, "journal part not written; the batch will be retried");
            failed_keys.extend(applied.iter().map(|e| (e.bucket.clone(), e.key.clone())));
            applied.clear();
        }
    }
    let expires_at = unix_now() + MARKER_SECONDS;
    for event in &applied {
        if let Err(err) = app.store.mark(&marker(policy, event), expires_at).await {
            tracing::warn!(policy = %policy.name, key = %event.key, error = %err, "applied-event marker not written; a redelivery would copy again");
        }
    }
    for key in failed_keys {
        summary
            .failed
            .extend(messages_of.remove(&key).unwrap_or_default());
    }
}

fn marker(policy: &BackupPolicy, event: &ObjectEvent) -> String {
    let kind = match event.kind {
        EventKind::Created => "C",
        EventKind::Removed => "R",
    };
    format!(
        "EVENT#{}#{}",
        policy.name,
        md5_hex(format!("{kind}:{}", event.identity()).as_bytes())
    )
}

/// The source's current object, or None when the key has no current object.
async fn head_current(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<(Option<String>, Option<String>, Option<String>)>, String> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => Ok(Some((
            head.version_id().map(str::to_string),
            head.e_tag().map(|e| e.trim_matches('"').to_string()),
            head.last_modified()
                .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
        ))),
        Err(err) => {
            let failure = S3Failure::from_sdk(&err);
            match failure.status {
                // 404: no such key; 405: the current version is a delete marker.
                Some(404) | Some(405) => Ok(None),
                _ => Err(format!(
                    "HEAD s3://{bucket}/{key}: {} {}",
                    failure.code.unwrap_or_default(),
                    failure.message
                )),
            }
        }
    }
}

async fn apply_event(
    app: &App,
    policy: &BackupPolicy,
    copier: &Copier<'_>,
    spec: &CopySpec,
    event: &ObjectEvent,
    may_remove: bool,
) -> Result<EventOutcome, String> {
    let current_only = policy.versions == VersionsMode::Current;
    if event.kind == EventKind::Removed && !(policy.marks_deletions() && may_remove) {
        // Recorded by the next run's diff, under the policy's maxDeletes guard.
        return Ok(EventOutcome::Deferred);
    }
    if app
        .store
        .marked(&marker(policy, event))
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(EventOutcome::AlreadyApplied);
    }
    let dest_key = spec.target_key(&event.key);
    let etag = event
        .etag
        .as_deref()
        .map(|e| e.trim_matches('"').to_string());
    let current = if current_only || event.kind == EventKind::Removed {
        let s3 = copier.sources.s3(&event.bucket).await;
        head_current(&s3, &event.bucket, &event.key).await?
    } else {
        None
    };
    if event.kind == EventKind::Removed {
        if current.is_some() {
            // Written again since: the backup keeps its copy.
            return Ok(EventOutcome::Superseded);
        }
        let object = ObjectRef {
            bucket: policy.destination.bucket.clone(),
            key: dest_key,
            version_id: None,
        };
        return match copier.delete_marker(&object).await {
            TaskResult::Done(outcome) if outcome.status == TaskStatus::Succeeded => {
                Ok(EventOutcome::Journal(JournalRow::Removed {
                    key: event.key.clone(),
                }))
            }
            TaskResult::Done(outcome) => Err(format!(
                "delete marker on s3://{}/{}: {} {}",
                policy.destination.bucket,
                spec.target_key(&event.key),
                outcome.error_code.unwrap_or_default(),
                outcome.message
            )),
            TaskResult::Abandoned | TaskResult::Suspended => Err("delete marker abandoned".into()),
        };
    }
    let mut last_modified = event.time.clone();
    let mut version_id = event.version_id.clone();
    if current_only {
        // Copy only what is still current: an older event arriving late must not put an old
        // version on top of the backup.
        let Some((version, current_etag, modified)) = current else {
            return Ok(EventOutcome::Superseded);
        };
        let same = match &event.version_id {
            Some(v) => version.as_deref() == Some(v.as_str()),
            None => etag.is_none() || current_etag == etag,
        };
        if !same {
            return Ok(EventOutcome::Superseded);
        }
        last_modified = modified.unwrap_or(last_modified);
        // An event without a version ID from a versioned bucket: the version just seen has
        // the event's ETag, so pin to it (the next run's diff compares versions).
        version_id = version_id.or(version);
    }
    let object = ObjectRef {
        bucket: event.bucket.clone(),
        key: event.key.clone(),
        version_id: version_id.clone(),
    };
    let if_match = etag.as_deref().map(|e| format!("\"{e}\""));
    // The catalog row needs the size copied: HEAD first.
    match copier
        .copy(&object, if_match.as_deref(), &dest_key, SourceSize::Head)
        .await
    {
        TaskResult::Done(outcome) if outcome.status == TaskStatus::Succeeded => {
            Ok(EventOutcome::Journal(JournalRow::Copied(CatalogEntry {
                key: event.key.clone(),
                source_version: version_id,
                etag,
                size: outcome.bytes,
                last_modified,
                dest_key,
                dest_version: outcome.dest_version,
            })))
        }
        // Gone or changed since the event: a later event (or the next run) has it.
        TaskResult::Done(outcome) if matches!(outcome.http_status, 404 | 412) => {
            Ok(EventOutcome::Superseded)
        }
        TaskResult::Done(outcome) => Err(format!(
            "copy s3://{}/{} to s3://{}/{}: {} {}",
            event.bucket,
            event.key,
            policy.destination.bucket,
            dest_key,
            outcome.error_code.unwrap_or_default(),
            outcome.message
        )),
        TaskResult::Abandoned | TaskResult::Suspended => Err("copy abandoned".into()),
    }
}

/// Whether continuous mode may write to the policy's destination now: the policy passes
/// today's checks (a policy stored before a check existed may not), and the destination is
/// versioned unless the policy accepts otherwise. `Ok(Err(reason))`: not now, with the fix.
async fn destination_safe(app: &App, policy: &BackupPolicy) -> crate::Result<Result<(), String>> {
    if let Err((field, message)) = policy.validate() {
        return Ok(Err(format!(
            "policy {} {field}: {message}; fix it with `batchops backup policy put`",
            policy.name
        )));
    }
    let bucket = &policy.destination.bucket;
    let s3 = app.data.for_policy(policy).s3(bucket).await;
    if !crate::prepare::versioning_enabled(&s3, bucket).await? {
        if !policy.allow_unversioned_destination {
            return Ok(Err(format!(
                "destination bucket `{bucket}` does not have versioning enabled: an overwrite or delete there would destroy the backup copy. \
                 Enable versioning on it (aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled), \
                 or set allowUnversionedDestination in policy `{}` to accept that risk for copies",
                policy.name
            )));
        }
        if policy.marks_deletions() {
            return Ok(Err(format!(
                "destination bucket `{bucket}` is not versioned: `deletes: propagate` would remove the only copy; use `deletes: record` in policy `{}`",
                policy.name
            )));
        }
    }
    Ok(Ok(()))
}

async fn write_journal(app: &App, policy: &BackupPolicy, rows: &[JournalRow]) -> crate::Result<()> {
    let mut body = String::new();
    for row in rows {
        row.write_line(&mut body);
    }
    let key = journal_part_key(policy, now(), &uuid::Uuid::new_v4().simple().to_string());
    let written = put_bytes_pinned(
        &app.s3,
        &app.config.control_bucket,
        &key,
        body.into_bytes(),
        JOURNAL_CONTENT_TYPE,
    )
    .await?;
    // Recorded only once written: a run reads exactly the recorded parts.
    let part = JournalPart::new(
        &key,
        Stored {
            version_id: written.version_id,
            etag: written.etag,
        },
    );
    if let Err(err) = record_part(app, &policy.name, &part).await {
        // Never read without its record: removed, so that runs need not warn about it (the
        // batch is retried and journaled again).
        if let Err(cleanup) = delete_object(&app.s3, &app.config.control_bucket, &key).await {
            tracing::warn!(key, error = %cleanup, "an unrecorded journal part could not be removed; runs will name it");
        }
        return Err(err);
    }
    Ok(())
}
