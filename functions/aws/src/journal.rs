//! Backup journal parts: copies made outside a completed run (continuous mode's event batches,
//! and the copies of a run that failed or was cancelled), in the control bucket under
//! `journal/<policy>/`, each part named by the time it was written. Every part is recorded in
//! the table when written (key, version ID, ETag; one item per part under its policy, a
//! conditional put after the S3 write succeeded), and runs read exactly the recorded parts,
//! pinned: a part replaced or damaged since fails the run naming it, and an object under the
//! prefix that has no record is never read. Cleanup deletes a settled part's record, then the
//! part.

use crate::backup::policy_pk;
use crate::catalog_io::{ObjectPin, Stored};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::App;
use batchops_core::backup::BackupPolicy;
use serde::{Deserialize, Serialize};

/// Journal parts are tab-separated text ([`batchops_core::backup::JournalRow`] lines).
pub const JOURNAL_CONTENT_TYPE: &str = "text/tab-separated-values";

/// Journal part names start with the time written, so a run can tell old parts from new
/// (`BackupRun::settles_journal_part`); `tag` makes the name unique.
pub fn journal_part_key(policy: &BackupPolicy, at: time::OffsetDateTime, tag: &str) -> String {
    format!("{}{}-{tag}.tsv", policy.journal_prefix(), journal_stamp(at))
}

/// `YYYYMMDDTHHMMSS.mmmZ`: sorts as time does.
pub fn journal_stamp(at: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// A journal part as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPart {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl JournalPart {
    pub fn new(key: &str, stored: Stored) -> Self {
        JournalPart {
            key: key.to_string(),
            version_id: stored.version_id,
            etag: stored.etag,
        }
    }

    pub fn pin(&self, bucket: &str) -> ObjectPin {
        ObjectPin {
            bucket: bucket.to_string(),
            key: self.key.clone(),
            version_id: self.version_id.clone(),
            etag: self.etag.clone(),
        }
    }
}

const PART_PREFIX: &str = "JOURNAL#";

fn part_sk(key: &str) -> String {
    format!("{PART_PREFIX}{key}")
}

/// Records a part just written (create-only). A record already there is accepted only if it
/// names this very write (a retried record of it).
pub async fn record_part(app: &App, policy: &str, part: &JournalPart) -> Result<()> {
    let pk = policy_pk(policy);
    if app
        .store
        .put_doc(&pk, &part_sk(&part.key), part, None, None)
        .await?
    {
        return Ok(());
    }
    match app
        .store
        .get_doc::<JournalPart>(&pk, &part_sk(&part.key))
        .await?
    {
        Some((existing, _)) if existing == *part => Ok(()),
        existing => Err(Error::Data(format!(
            "journal part s3://{}/{} is recorded as {:?}, not as the write just made ({part:?})",
            app.config.control_bucket,
            part.key,
            existing.map(|(e, _)| e)
        ))),
    }
}

/// The recorded part of `key`, if any.
pub async fn recorded_part(app: &App, policy: &str, key: &str) -> Result<Option<JournalPart>> {
    Ok(app
        .store
        .get_doc::<JournalPart>(&policy_pk(policy), &part_sk(key))
        .await?
        .map(|(part, _)| part))
}

/// Parts recorded per page read.
pub const PARTS_PAGE: i32 = 500;

/// One page of the policy's recorded parts, oldest first (their keys start with the time they
/// were written), after the position `after` (None: from the first); the position of the next
/// page when more may follow.
pub async fn parts_page(
    store: &Store,
    policy: &BackupPolicy,
    after: Option<&str>,
) -> Result<(Vec<JournalPart>, Option<String>)> {
    let (parts, next) = store
        .query_docs_page::<JournalPart>(&policy_pk(&policy.name), PART_PREFIX, after, PARTS_PAGE)
        .await?;
    Ok((parts.into_iter().map(|(_, part)| part).collect(), next))
}

/// Deletes a settled part: its record first (an object without a record is never read), then
/// the object (by key: the control bucket is not versioned, and no role may delete versions
/// outside the backup destinations).
pub async fn drop_part(app: &App, bucket: &str, policy: &str, part: &JournalPart) -> Result<()> {
    app.store
        .delete_doc(&policy_pk(policy), &part_sk(&part.key))
        .await?;
    crate::objects::delete_object(&app.s3, bucket, &part.key).await
}
