use super::*;
use crate::error::Result;
use batchops_core::backup::{catalog_directory, copy_within};
use batchops_core::chunk::ChunkTask;
use batchops_core::plan::{ChunkOut, PlanProgress};
use batchops_core::request::{ManifestObject, RestoreSource};

/// A restore's prepare step: the snapshot's catalog, filtered by prefix and key list, as copy
/// tasks from the backup copies back to their original keys.
pub(super) fn read_restore(
    reader: &Reader,
    source: &RestoreSource,
    backup_bucket: &str,
    control_bucket: &str,
    progress: PlanProgress,
    options: &SourceOptions,
    emitter: &Emitter,
) -> Result<()> {
    let keys: Option<std::collections::HashSet<String>> = match &source.keys_object {
        None => None,
        Some(key) => {
            let location = Location::S3(ManifestObject {
                bucket: control_bucket.to_string(),
                key: key.clone(),
                version_id: None,
                etag: None,
            });
            let body = match reader.read_all(&location) {
                Ok(body) => body,
                Err(failure) => return open_failure(emitter, failure),
            };
            Some(
                String::from_utf8_lossy(&body)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        }
    };
    let skip = progress.cursor.catalog_entries;
    let catalog = open_catalog(reader, &source.catalog)?;
    let mut progress = progress;
    let mut tasks = Vec::new();
    for (index, entry) in catalog.enumerate().skip(skip as usize) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(reason) => return job_failure(emitter, "SnapshotCatalogInvalid", reason),
        };
        progress.cursor.catalog_entries = index as u64 + 1;
        let directory = catalog_directory(&source.catalog.key).unwrap_or_default();
        if !copy_within(directory, &entry.dest_key) {
            // Only copies inside the catalog's own backup directory are restored.
            return job_failure(
                emitter,
                "SnapshotCatalogInvalid",
                format!(
                    "snapshot catalog s3://{}/{} lists {} (for {}), outside its backup directory `{directory}`: refusing to restore from it",
                    source.catalog.bucket, source.catalog.key, entry.dest_key, entry.key
                ),
            );
        }
        let wanted = source
            .prefix
            .as_deref()
            .is_none_or(|p| entry.key.starts_with(p))
            && keys.as_ref().is_none_or(|k| k.contains(&entry.key));
        if !wanted {
            progress.skipped += 1;
        } else {
            progress.cursor.line += 1;
            progress.bytes += entry.size;
            tasks.push(ChunkTask::Restore {
                line: progress.cursor.line,
                object: entry.backup_object(backup_bucket),
                target_key: entry.key,
            });
        }
        if tasks.len() >= options.chunk_size.max(1) {
            progress.tasks += tasks.len() as u64;
            progress.next_seq += 1;
            let chunk = ChunkOut {
                seq: progress.next_seq - 1,
                tasks: std::mem::take(&mut tasks),
                resume: Some(progress.clone()),
            };
            if !emitter.send_blocking(Ok(SourceEvent::Chunk(chunk))) {
                return Ok(());
            }
        }
    }
    if !tasks.is_empty() {
        progress.tasks += tasks.len() as u64;
        progress.next_seq += 1;
        let chunk = ChunkOut {
            seq: progress.next_seq - 1,
            tasks,
            resume: Some(progress.clone()),
        };
        if !emitter.send_blocking(Ok(SourceEvent::Chunk(chunk))) {
            return Ok(());
        }
    }
    emitter.send_blocking(Ok(SourceEvent::Finished(progress)));
    Ok(())
}

/// A restore: a snapshot's catalog (copies in `backup_bucket`), filtered.
pub(super) struct SnapshotRestore {
    pub(super) source: RestoreSource,
    pub(super) backup_bucket: String,
    pub(super) control_bucket: String,
}

impl ManifestReader for SnapshotRestore {
    fn read(
        &self,
        reader: &Reader,
        progress: PlanProgress,
        options: &SourceOptions,
        emitter: &Emitter,
    ) -> Result<()> {
        read_restore(
            reader,
            &self.source,
            &self.backup_bucket,
            &self.control_bucket,
            progress,
            options,
            emitter,
        )
    }
}
