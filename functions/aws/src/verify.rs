//! `backup verify`: checks that every version a snapshot references is at the destination with
//! its recorded size (and ETag where comparable), from ListObjectVersions pages (about one
//! request per 1,000 versions) merged with the streamed catalog, never one HEAD per object.

use crate::backup::{choose_snapshot, get_policy, RestoreRequest};
use crate::error::{Error, Result};
use crate::prepare::{list_versions_page, open_catalog, Reader};
use crate::App;
use batchops_core::manifest::ObjectEntry;
use batchops_core::plan::Cursor;
use batchops_core::verify::{verify, Verification};
use serde::Serialize;
use std::collections::VecDeque;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub policy: String,
    pub snapshot: String,
    pub catalog: String,
    /// Where the snapshot's copies are: s3://bucket/prefix.
    pub destination: String,
    /// ListObjectVersions requests made.
    pub list_requests: u64,
    /// No version missing or different.
    pub passed: bool,
    #[serde(flatten)]
    pub verification: Verification,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.verification.passed()
    }
}

/// Verifies snapshot `snapshot` (default: the newest) of policy `name`.
pub async fn verify_snapshot(
    app: &App,
    name: &str,
    snapshot: Option<&str>,
) -> Result<VerifyReport> {
    let record = get_policy(app, name).await?;
    let request = RestoreRequest {
        snapshot: snapshot.map(str::to_string),
        ..Default::default()
    };
    let snapshot = choose_snapshot(app, name, &request).await?;
    let catalog = snapshot.catalog.clone();
    // The copies live beside the catalog: `<destination prefix>.batchops/snapshots/<policy>/`.
    // Taken from the catalog's key, not the policy, so a snapshot of an older chain (another
    // destination) is checked where it is.
    let suffix = format!(".batchops/snapshots/{name}/{}.catalog.gz", snapshot.id);
    let prefix = catalog
        .key
        .strip_suffix(&suffix)
        .unwrap_or_default()
        .to_string();
    // The backup bucket is the policy's data: read with its role.
    let reader =
        Reader::new(Some(app.s3.clone())).with_clients(app.data.for_policy(&record.policy));
    let (bucket, pinned) = (catalog.bucket.clone(), catalog.clone());
    let listing_prefix = prefix.clone();
    let (verification, list_requests) = tokio::task::spawn_blocking(move || {
        let entries = open_catalog(&reader, &pinned)?;
        let mut pages = VersionPages {
            reader: reader.clone(),
            bucket,
            prefix: listing_prefix,
            cursor: Cursor::default(),
            page: VecDeque::new(),
            done: false,
            requests: 0,
            error: None,
        };
        let result = verify(entries, &mut pages);
        if let Some(err) = pages.error.take() {
            return Err(err);
        }
        Ok((result.map_err(Error::Data)?, pages.requests))
    })
    .await
    .map_err(|e| Error::Data(format!("verify of {name}: {e}")))??;
    Ok(VerifyReport {
        policy: name.to_string(),
        snapshot: snapshot.id,
        catalog: format!("s3://{}/{}", catalog.bucket, catalog.key),
        destination: format!("s3://{}/{prefix}", catalog.bucket),
        list_requests,
        passed: verification.passed(),
        verification,
    })
}

/// The destination's versions, one ListObjectVersions page at a time (blocking: call from a
/// blocking thread). A failed request ends the stream; its typed error is kept in `error`.
struct VersionPages {
    reader: Reader,
    bucket: String,
    prefix: String,
    cursor: Cursor,
    page: VecDeque<(ObjectEntry, bool)>,
    done: bool,
    requests: u64,
    error: Option<Error>,
}

impl Iterator for VersionPages {
    type Item = std::result::Result<(ObjectEntry, bool), String>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.page.is_empty() {
            if self.done || self.error.is_some() {
                return None;
            }
            let s3 = match self.reader.s3_for(&self.bucket) {
                Ok(s3) => s3,
                Err(err) => {
                    self.error = Some(err);
                    return None;
                }
            };
            self.requests += 1;
            match self.reader.handle.block_on(list_versions_page(
                &s3,
                &self.bucket,
                &self.prefix,
                &self.cursor,
            )) {
                Ok(page) => {
                    if let Some((last, _)) = page.entries.last() {
                        self.cursor.key_marker = Some(last.object.key.clone());
                        self.cursor.version_marker = last.object.version_id.clone();
                    }
                    // A truncated page with no entries would loop for ever on the same markers.
                    self.done = !page.truncated || page.entries.is_empty();
                    self.page.extend(page.entries);
                }
                Err(err) => {
                    let text = err.to_string();
                    self.error = Some(err);
                    return Some(Err(text));
                }
            }
        }
        self.page.pop_front().map(Ok)
    }
}
