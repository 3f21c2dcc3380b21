use super::*;
use crate::error::{Error, Result};
use crate::extsort::{EntrySorter, ExternalSorter, SortRecord};
use aws_sdk_s3::Client;
use batchops_core::backup::{
    BackupOut, BackupPlanner, BackupPolicy, CatalogEntry, Differ, JournalRead, JournalRow,
    JournalRows, VersionsMode,
};
use batchops_core::inventory::InventoryManifest;
use batchops_core::manifest::{ObjectEntry, ParsedLine};
use batchops_core::plan::{Cursor, PlanProgress};
use batchops_core::request::BackupRun;

/// Draft snapshot rows per part (a part is also flushed with every chunk).
pub(super) const DRAFT_ROWS: usize = 10_000;

pub use crate::catalog_io::open_catalog;

pub(super) fn bucket_versioned(reader: &Reader, bucket: &str) -> Result<bool> {
    let s3 = reader.s3_for(bucket)?;
    reader.handle.block_on(versioning_enabled(&s3, bucket))
}

/// Whether `bucket` has versioning enabled (suspended counts as not: a write or an unpinned
/// delete there replaces the `null` version for good).
pub async fn versioning_enabled(s3: &Client, bucket: &str) -> Result<bool> {
    match s3.get_bucket_versioning().bucket(bucket).send().await {
        Ok(out) => Ok(out.status() == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled)),
        Err(err) => {
            // Some emulators (moto 5.2) answer 200 with a differently named XML root that the SDK
            // refuses; the status element inside is the same, so read it from the raw body.
            if let Some(raw) = err.raw_response().filter(|r| r.status().as_u16() == 200) {
                if let Some(body) = raw.body().bytes() {
                    let text = String::from_utf8_lossy(body);
                    return Ok(text.contains("<Status>Enabled</Status>"));
                }
            }
            Err(Error::aws_call("S3", "GetBucketVersioning", bucket, &err))
        }
    }
}

/// In-memory entries per sorted run when a backup reads an inventory (about 100 MB).
pub(super) const SORT_RUN_ENTRIES: usize = 250_000;

/// A backup's source entries in listing order: the bucket listed page by page, or an inventory
/// report sorted.
pub(super) enum BackupEntries {
    Listing {
        s3: Client,
        bucket: String,
        prefix: String,
        versioned: bool,
        cursor: Cursor,
        done: bool,
    },
    Sorted {
        sorted: crate::extsort::SortedEntries,
        /// Resuming: keys up to this one were diffed by an earlier slice.
        after_key: Option<String>,
    },
}

/// Entries per page taken from a sorted inventory.
pub(super) const SORTED_PAGE: usize = 1000;

impl BackupEntries {
    pub(super) fn next_page(
        &mut self,
        reader: &Reader,
    ) -> Result<Option<Vec<(ObjectEntry, bool)>>> {
        match self {
            BackupEntries::Listing {
                s3,
                bucket,
                prefix,
                versioned,
                cursor,
                done,
            } => {
                if *done {
                    return Ok(None);
                }
                let page = if *versioned {
                    reader
                        .handle
                        .block_on(list_versions_page(s3, bucket, prefix, cursor))?
                } else {
                    reader
                        .handle
                        .block_on(list_objects_page(s3, bucket, prefix, cursor))?
                };
                if let Some((last, _)) = page.entries.last() {
                    cursor.key_marker = Some(last.object.key.clone());
                    cursor.version_marker = last.object.version_id.clone().filter(|_| *versioned);
                }
                *done = !page.truncated;
                Ok(Some(page.entries))
            }
            BackupEntries::Sorted { sorted, after_key } => {
                let mut page = Vec::with_capacity(SORTED_PAGE);
                for item in sorted.by_ref() {
                    let (entry, is_delete_marker) =
                        item.map_err(|e| Error::Data(format!("sorted inventory: {e}")))?;
                    if after_key
                        .as_deref()
                        .is_some_and(|after| entry.object.key.as_str() <= after)
                    {
                        continue;
                    }
                    page.push((entry, is_delete_marker));
                    if page.len() == SORTED_PAGE {
                        break;
                    }
                }
                Ok((!page.is_empty()).then_some(page))
            }
        }
    }
}

/// Inventory rows of the policy's source into the sorter. A row that cannot be read fails the
/// run: a missing row would look like a deletion.
pub(super) struct SorterSink<'a> {
    pub(super) sorter: crate::extsort::EntrySorter,
    pub(super) policy: &'a BackupPolicy,
    /// Whether any row named a version (current-versions inventories have no VersionId).
    pub(super) version_ids_seen: bool,
}

impl LineSink for SorterSink<'_> {
    fn take(
        &mut self,
        parsed: ParsedLine,
        _before: &Cursor,
        _after: &Cursor,
    ) -> std::result::Result<(), String> {
        let (entry, is_delete_marker) = match parsed {
            ParsedLine::Blank => return Ok(()),
            ParsedLine::Object(entry) => (entry, false),
            ParsedLine::DeleteMarker(entry) => (entry, true),
            ParsedLine::Malformed(m) => return Err(format!("line {}: {}", m.line, m.message)),
        };
        if entry.object.bucket != self.policy.source.bucket {
            // A row of another bucket: the report is not the source's, and a diff against it
            // would take the source's objects for deleted.
            return Err(format!(
                "a row of bucket `{}`, but policy `{}` backs up `{}`",
                entry.object.bucket, self.policy.name, self.policy.source.bucket
            ));
        }
        if !self.policy.covers(&entry.object.bucket, &entry.object.key) {
            return Ok(());
        }
        self.version_ids_seen |= entry
            .object
            .version_id
            .as_deref()
            .is_some_and(|v| v != "null");
        self.sorter
            .push(entry, is_delete_marker)
            .map_err(|e| format!("sorting the inventory on local disk: {e}"))
    }

    fn flush(&mut self, _emitter: &Emitter) -> bool {
        true
    }

    fn failure_code(&self, _default: &'static str) -> &'static str {
        "InventoryInvalid"
    }

    fn check_report(&self, manifest: &InventoryManifest) -> std::result::Result<(), String> {
        let policy = self.policy;
        if manifest.source_bucket != policy.source.bucket {
            return Err(format!(
                "this S3 Inventory report lists bucket `{}` (sourceBucket), but policy `{}` backs up `{}`: every object would look deleted. \
                 Point the policy's inventory location at the report of `{}` (batchops backup policy put)",
                manifest.source_bucket, policy.name, policy.source.bucket, policy.source.bucket
            ));
        }
        Ok(())
    }
}

/// A journal row in the external sort: by key, then in the order parts and rows were read
/// (parts are named by time, so oldest first within a key).
pub(super) struct JournalRecord {
    pub(super) seq: u64,
    pub(super) read: JournalRead,
}

impl SortRecord for JournalRecord {
    fn compare(&self, other: &Self) -> std::cmp::Ordering {
        self.read
            .row
            .key()
            .cmp(other.read.row.key())
            .then(self.seq.cmp(&other.seq))
    }

    fn encode(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut line = String::new();
        self.read.row.write_line(&mut line);
        crate::extsort::write_varint(w, self.seq)?;
        w.write_all(&[u8::from(self.read.last_read)])?;
        crate::extsort::write_str(w, &line)
    }

    fn decode(r: &mut impl std::io::Read) -> std::io::Result<Self> {
        let seq = crate::extsort::read_varint(r)?;
        let mut flag = [0u8; 1];
        r.read_exact(&mut flag)?;
        let line = crate::extsort::read_str(r)?;
        let bad = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
        let row = JournalRow::parse_line(line.trim_end_matches('\n'))
            .map_err(bad)?
            .ok_or_else(|| bad("empty journal row in spill run".into()))?;
        Ok(JournalRecord {
            seq,
            read: JournalRead {
                row,
                last_read: flag[0] == 1,
            },
        })
    }
}

/// The run's journal: the policy's recorded parts (all of them: rows older than the previous
/// snapshot only ever match what that snapshot already has), each read pinned to the version
/// and ETag recorded when it was written, each row marked with whether this run settles its
/// part, sorted by key (on local disk past `SORT_RUN_ENTRIES` rows, so a busy bucket's changes
/// between runs need not fit in memory). Errors name the part and line. Objects under the
/// journal prefix that this run would settle but that have no record are not read: each is
/// named in `unrecorded` (younger ones may be a part whose record is being written).
pub(super) fn read_journal(
    reader: &Reader,
    run: &BackupRun,
    unrecorded: &mut Vec<String>,
) -> std::result::Result<JournalRows, String> {
    let Some(store) = reader.store.as_ref() else {
        return Ok(Box::new(std::iter::empty()));
    };
    let policy = &run.policy;
    let Some(bucket) = run.journal_bucket.as_ref() else {
        return Ok(Box::new(std::iter::empty()));
    };
    let s3 = &reader.s3_for(bucket).map_err(|e| e.to_string())?;
    // Listed before the records are read, so that a part written meanwhile has its record.
    let mut listed = std::collections::BTreeSet::new();
    let mut cursor = Cursor::default();
    loop {
        let page = reader
            .handle
            .block_on(list_objects_page(
                s3,
                bucket,
                &policy.journal_prefix(),
                &cursor,
            ))
            .map_err(|e| e.to_string())?;
        for (entry, _) in &page.entries {
            let key = &entry.object.key;
            if run.settles_journal_part(key) {
                listed.insert(key.clone());
            }
            cursor.key_marker = Some(key.clone());
        }
        if !page.truncated {
            break;
        }
    }
    let mut sorter = ExternalSorter::new(SORT_RUN_ENTRIES);
    let mut seq = 0u64;
    let mut after: Option<String> = None;
    loop {
        let (parts, next) = reader
            .handle
            .block_on(crate::journal::parts_page(store, policy, after.as_deref()))
            .map_err(|e| e.to_string())?;
        for part in parts {
            listed.remove(&part.key);
            let pin = part.pin(bucket);
            let lines = crate::catalog_io::pinned_lines(reader, &pin)
                .map_err(|f| format!("journal part {f}"))?;
            let last_read = run.settles_journal_part(&part.key);
            for (index, line) in lines.enumerate() {
                let line = line.map_err(|e| format!("journal part {}: {e}", pin.describe()))?;
                let row = JournalRow::parse_line(&line).map_err(|e| {
                    format!("journal part {}: line {}: {e}", pin.describe(), index + 1)
                })?;
                if let Some(row) = row {
                    seq += 1;
                    sorter
                        .push(JournalRecord {
                            seq,
                            read: JournalRead { row, last_read },
                        })
                        .map_err(|e| format!("sorting the journal: {e}"))?;
                }
            }
        }
        match next {
            Some(position) => after = Some(position),
            None => break,
        }
    }
    unrecorded.extend(listed);
    let sorted = sorter
        .finish()
        .map_err(|e| format!("sorting the journal: {e}"))?;
    Ok(Box::new(sorted.map(|record| {
        record
            .map(|r| r.read)
            .map_err(|e| format!("sorting the journal: {e}"))
    })))
}

pub(super) fn emit_backup(outs: &mut Vec<BackupOut>, emitter: &Emitter) -> bool {
    for out in outs.drain(..) {
        let event = match out {
            BackupOut::Chunk(chunk) => SourceEvent::Chunk(chunk),
            BackupOut::Draft { seq, rows, resume } => SourceEvent::Draft { seq, rows, resume },
        };
        if !emitter.send_blocking(Ok(event)) {
            return false;
        }
    }
    true
}

/// A backup run's prepare step: versioning preflight, then the source listing diffed against
/// the previous snapshot's catalog by sorted merge, key by key.
pub(super) fn read_backup(
    reader: &Reader,
    run: &BackupRun,
    progress: PlanProgress,
    options: &SourceOptions,
    emitter: &Emitter,
) -> Result<()> {
    let policy = &run.policy;
    let s3 = reader.s3_for(&policy.source.bucket)?;
    let source_versioned = bucket_versioned(reader, &policy.source.bucket)?;
    let first_slice = progress == PlanProgress::default();
    if !policy.allow_unversioned_destination
        && !bucket_versioned(reader, &policy.destination.bucket)?
    {
        return job_failure(
            emitter,
            "DestinationNotVersioned",
            format!(
                "destination bucket `{}` does not have versioning enabled: an overwrite there would destroy the earlier backup copy. \
                 Enable versioning on it (aws s3api put-bucket-versioning --bucket {} --versioning-configuration Status=Enabled), \
                 or set allowUnversionedDestination in policy `{}` to accept that risk",
                policy.destination.bucket, policy.destination.bucket, policy.name
            ),
        );
    }
    if !source_versioned {
        if policy.versions == VersionsMode::All {
            return job_failure(
                emitter,
                "SourceNotVersioned",
                format!(
                    "policy `{}` backs up all versions, but source bucket `{}` is not versioned",
                    policy.name, policy.source.bucket
                ),
            );
        }
        if first_slice
            && !emitter.send_blocking(Ok(SourceEvent::Warning(format!(
                "source bucket `{}` is not versioned: objects are compared by ETag and size, and an object overwritten between listing and copy cannot be pinned (its copy fails and the previous backup stands)",
                policy.source.bucket
            ))))
        {
            return Ok(());
        }
    }
    let skip = progress.cursor.catalog_entries;
    let catalog: Box<dyn Iterator<Item = std::result::Result<CatalogEntry, String>> + Send> =
        match &run.previous {
            Some(previous) => match open_catalog(reader, previous) {
                Ok(entries) => Box::new(entries.skip(skip as usize)),
                // Gone or unreadable: no retry brings it back, and a diff without it would
                // take every object for new (or none for deleted). Fail, naming the way on.
                Err(Error::Data(reason)) => {
                    return job_failure(
                        emitter,
                        "SnapshotCatalogInvalid",
                        format!(
                            "the previous snapshot {}'s catalog s3://{}/{} cannot be read ({reason}). \
                             Start a new chain with a full run: batchops backup run {} --full \
                             (API: POST /backup-policies/{}/runs?full=true); older snapshots stay restorable",
                            previous.snapshot_id, previous.bucket, previous.key, policy.name, policy.name
                        ),
                    )
                }
                Err(err) => return Err(err),
            },
            None => Box::new(std::iter::empty()),
        };
    let mut unrecorded = Vec::new();
    let journal = match read_journal(reader, run, &mut unrecorded) {
        Ok(rows) => rows,
        Err(reason) => return job_failure(emitter, "JournalInvalid", reason),
    };
    if first_slice && !unrecorded.is_empty() {
        let shown: Vec<String> = unrecorded
            .iter()
            .take(10)
            .map(|key| {
                format!(
                    "s3://{}/{key}",
                    run.journal_bucket.as_deref().unwrap_or_default()
                )
            })
            .collect();
        let more = unrecorded.len().saturating_sub(shown.len());
        let warning = format!(
            "{} object(s) under the journal prefix have no record of batchops writing them and were not read: {}{}. \
             batchops did not write them as recorded (or their record was never written); remove them once checked",
            unrecorded.len(),
            shown.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        );
        if !emitter.send_blocking(Ok(SourceEvent::Warning(warning))) {
            return Ok(());
        }
    }
    let all_versions = policy.versions == VersionsMode::All;
    let mut compare_versions = source_versioned;
    let mut entries = match &run.inventory {
        None => BackupEntries::Listing {
            s3,
            bucket: policy.source.bucket.clone(),
            prefix: policy.source.prefix.clone(),
            versioned: source_versioned,
            cursor: Cursor {
                key_marker: progress.cursor.key_marker.clone(),
                ..Default::default()
            },
            done: false,
        },
        Some(report) => {
            // Inventory files are not in key order across files: sort them (on local disk
            // past a bound) into the order a listing has. A resumed slice sorts again.
            let mut sink = SorterSink {
                sorter: EntrySorter::new(SORT_RUN_ENTRIES),
                policy,
                version_ids_seen: false,
            };
            let location = Location::S3(report.clone());
            let Some(_) = read_inventory_files(
                reader,
                &location,
                None,
                Cursor::default(),
                all_versions,
                &mut sink,
                emitter,
            )?
            else {
                return Ok(());
            };
            // A current-versions inventory has no version IDs: compare by ETag and size then.
            compare_versions = source_versioned && sink.version_ids_seen;
            let sorted = sink
                .sorter
                .finish()
                .map_err(|e| Error::Data(format!("sorting {}: {e}", location.describe())))?;
            BackupEntries::Sorted {
                sorted,
                after_key: progress.cursor.key_marker.clone(),
            }
        }
    };
    let mut differ = Differ::new(catalog, compare_versions, all_versions)
        .with_journal(journal, progress.cursor.key_marker.as_deref());
    differ.catalog_taken = skip;
    let mut planner = BackupPlanner::new(
        policy.clone(),
        progress.clone(),
        options.chunk_size,
        DRAFT_ROWS,
        run.previous_objects,
    );
    let mut group_key: Option<String> = None;
    let mut group: Vec<ObjectEntry> = Vec::new();
    let mut outs = Vec::new();
    let mut changes = Vec::new();

    // Diffs one key's versions, applies the changes, and flushes at this key boundary.
    let mut finish_group = |key: &str,
                            group: &mut Vec<ObjectEntry>,
                            differ: &mut Differ<_>,
                            planner: &mut BackupPlanner,
                            outs: &mut Vec<BackupOut>|
     -> Result<std::result::Result<(), String>> {
        if !group.is_empty() {
            if all_versions {
                group.reverse();
            }
            if let Err(reason) = differ.feed_key(std::mem::take(group), &mut changes) {
                return Ok(Err(reason));
            }
        }
        for change in changes.drain(..) {
            if let Err(err) = planner.apply(change) {
                return Ok(Err(format!("MaxDeletes:{err}")));
            }
        }
        let cursor = Cursor {
            key_marker: Some(key.to_string()),
            ..Default::default()
        };
        planner.boundary(&cursor, differ.catalog_taken, false, outs);
        Ok(Ok(()))
    };
    let fail = |reason: String| -> Result<()> {
        match reason.strip_prefix("MaxDeletes:") {
            Some(message) => job_failure(emitter, "MaxDeletesExceeded", message.to_string()),
            None if reason.starts_with("continuous-mode journal") => {
                job_failure(emitter, "JournalInvalid", reason)
            }
            None => job_failure(
                emitter,
                "SnapshotCatalogInvalid",
                format!(
                    "{reason}. Start a new chain with a full run: batchops backup run {} --full",
                    policy.name
                ),
            ),
        }
    };
    while let Some(page) = entries.next_page(reader)? {
        for (entry, is_delete_marker) in page {
            if group_key.as_deref() != Some(entry.object.key.as_str()) {
                if let Some(key) = group_key.take() {
                    if let Err(reason) =
                        finish_group(&key, &mut group, &mut differ, &mut planner, &mut outs)?
                    {
                        return fail(reason);
                    }
                    if !emit_backup(&mut outs, emitter) {
                        return Ok(());
                    }
                }
                group_key = Some(entry.object.key.clone());
            }
            let wanted = if all_versions {
                !is_delete_marker
            } else {
                !is_delete_marker && entry.is_latest != Some(false)
            };
            if wanted {
                group.push(entry);
            }
        }
    }
    if let Some(key) = group_key.take() {
        if let Err(reason) = finish_group(&key, &mut group, &mut differ, &mut planner, &mut outs)? {
            return fail(reason);
        }
    }
    if let Err(reason) = differ.finish(&mut changes) {
        return fail(reason);
    }
    for change in changes.drain(..) {
        if let Err(err) = planner.apply(change) {
            return fail(format!("MaxDeletes:{err}"));
        }
    }
    let end = Cursor {
        key_marker: Some("\u{10FFFF}".to_string()),
        ..Default::default()
    };
    planner.boundary(&end, differ.catalog_taken, true, &mut outs);
    if !emit_backup(&mut outs, emitter) {
        return Ok(());
    }
    emitter.send_blocking(Ok(SourceEvent::Finished(planner.progress.clone())));
    Ok(())
}

/// A backup run: the source diffed against the previous snapshot.
pub(super) struct BackupDiff(pub(super) Box<BackupRun>);

impl ManifestReader for BackupDiff {
    fn read(
        &self,
        reader: &Reader,
        progress: PlanProgress,
        options: &SourceOptions,
        emitter: &Emitter,
    ) -> Result<()> {
        read_backup(reader, &self.0, progress, options, emitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(key: &str, dest_version: &str) -> JournalRow {
        JournalRow::Copied(CatalogEntry {
            key: key.into(),
            dest_key: format!("vault/{key}"),
            dest_version: Some(dest_version.into()),
            ..Default::default()
        })
    }

    #[test]
    fn journal_rows_sort_by_key_through_spill_files_oldest_first_within_a_key() {
        // Parts as a run lists them (by time); keys out of order across parts.
        let read = [
            (copy("z z", "z1"), true),
            (copy("a\tb", "a1"), true),
            (JournalRow::Removed { key: "m".into() }, false),
            (copy("a\tb", "a2"), false),
            (copy("é", "e1"), false),
            (copy("a\tb", "a3"), true),
        ];
        let mut sorter = ExternalSorter::new(2);
        for (seq, (row, last_read)) in read.iter().cloned().enumerate() {
            sorter
                .push(JournalRecord {
                    seq: seq as u64,
                    read: JournalRead { row, last_read },
                })
                .unwrap();
        }
        assert!(sorter.spilled_runs() >= 2, "the test spills");
        let sorted: Vec<(String, bool)> = sorter
            .finish()
            .unwrap()
            .map(|r| {
                let r = r.unwrap().read;
                let label = match &r.row {
                    JournalRow::Copied(e) => e.dest_version.clone().unwrap_or_default(),
                    JournalRow::Removed { key } => format!("removed {key}"),
                };
                (label, r.last_read)
            })
            .collect();
        let expected: Vec<(String, bool)> = [
            ("a1", true),
            ("a2", false),
            ("a3", true),
            ("removed m", false),
            ("z1", true),
            ("e1", false),
        ]
        .iter()
        .map(|(l, f)| (l.to_string(), *f))
        .collect();
        assert_eq!(sorted, expected);
    }
}
