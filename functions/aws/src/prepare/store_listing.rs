use super::*;
use crate::error::{Error, Result};
use batchops_core::chunk::ChunkTask;
use batchops_core::import::{is_bookkeeping, last_modified_label, source_bucket_label};
use batchops_core::manifest::ObjectRef;
use batchops_core::plan::{ChunkOut, PlanProgress};
use batchops_core::request::StoreListing;
use futures::StreamExt;
use object_store::path::Path;

/// An import's prepare step: every object under the source location of another store, listed
/// as a stream (the store's pages one at a time), as import tasks carrying the identity the
/// listing gives (size, ETag, last-modified, version). A resumed planner lists again after the
/// last key it planned.
pub(super) async fn read_store_listing(
    reader: &Reader,
    listing: &StoreListing,
    progress: PlanProgress,
    options: &SourceOptions,
    emitter: &Emitter,
) -> Result<()> {
    let opened = reader.object_store.as_ref().ok_or_else(|| {
        Error::Invalid(format!(
            "the source store {} was not opened",
            listing.from.url()
        ))
    })?;
    let from = &listing.from;
    let bucket = source_bucket_label(from).to_string();
    let prefix = from.prefix().trim_end_matches('/');
    // Keys as they are (`Path::parse`, not `Path::from`, which would percent-encode them).
    let as_path = |key: &str| {
        Path::parse(key).map_err(|err| Error::Invalid(format!("`{key}` in {}: {err}", from.url())))
    };
    let prefix = match prefix {
        "" => None,
        prefix => Some(as_path(prefix)?),
    };
    let mut progress = progress;
    let mut listed = match progress.cursor.key_marker.clone() {
        Some(after) => opened
            .store
            .list_with_offset(prefix.as_ref(), &as_path(&after)?),
        None => opened.store.list(prefix.as_ref()),
    };
    let mut tasks = Vec::new();
    while let Some(meta) = listed.next().await {
        let meta = match meta {
            Ok(meta) => meta,
            // The store lists a key the library cannot name: no listing gets past it.
            Err(err @ object_store::Error::InvalidPath { .. }) => {
                return job_failure_async(
                    emitter,
                    "UnsupportedKey",
                    format!(
                        "listing {}: {err} (keys with an empty, `.` or `..` segment cannot be imported)",
                        from.url()
                    ),
                )
                .await
            }
            Err(err) => {
                return Err(Error::Aws {
                    service: "ObjectStore",
                    operation: "List",
                    message: format!("listing {}: {err}", from.url()),
                    status: None,
                    code: None,
                })
            }
        };
        let key = meta.location.to_string();
        // A resumed listing starts after the last key planned: that only holds when the
        // store lists in key order, as S3, GCS and Azure do.
        if progress
            .cursor
            .key_marker
            .as_deref()
            .is_some_and(|last| key.as_str() <= last)
        {
            return job_failure_async(
                emitter,
                "SourceListingUnordered",
                format!(
                    "{} listed `{key}` after `{}`: an import needs a store that lists keys in order",
                    from.url(),
                    progress.cursor.key_marker.as_deref().unwrap_or_default()
                ),
            )
            .await;
        }
        progress.cursor.key_marker = Some(key.clone());
        if is_bookkeeping(from, &key) {
            progress.skipped += 1;
            continue;
        }
        progress.cursor.line += 1;
        progress.bytes += meta.size;
        tasks.push(ChunkTask::Import {
            line: progress.cursor.line,
            object: ObjectRef {
                bucket: bucket.clone(),
                key,
                version_id: meta.version,
            },
            etag: meta.e_tag,
            size: meta.size,
            last_modified: last_modified_label(meta.last_modified.timestamp()),
        });
        if tasks.len() >= options.chunk_size.max(1)
            && !send_chunk(&mut progress, &mut tasks, emitter).await
        {
            return Ok(());
        }
    }
    if !tasks.is_empty() && !send_chunk(&mut progress, &mut tasks, emitter).await {
        return Ok(());
    }
    emitter.send(Ok(SourceEvent::Finished(progress))).await;
    Ok(())
}

/// Sends the tasks gathered as the next chunk; false once the consumer has gone.
async fn send_chunk(
    progress: &mut PlanProgress,
    tasks: &mut Vec<ChunkTask>,
    emitter: &Emitter,
) -> bool {
    progress.tasks += tasks.len() as u64;
    progress.next_seq += 1;
    let chunk = ChunkOut {
        seq: progress.next_seq - 1,
        tasks: std::mem::take(tasks),
        resume: Some(progress.clone()),
    };
    emitter.send(Ok(SourceEvent::Chunk(chunk))).await
}

async fn job_failure_async(emitter: &Emitter, code: &'static str, reason: String) -> Result<()> {
    emitter.send(Ok(SourceEvent::Failed { code, reason })).await;
    Ok(())
}

/// An import's source: a listing of another store.
pub(super) struct StoreObjects(pub(super) StoreListing);

impl ManifestReader for StoreObjects {
    fn read(
        &self,
        reader: &Reader,
        progress: PlanProgress,
        options: &SourceOptions,
        emitter: &Emitter,
    ) -> Result<()> {
        // Listing is the store's requests page after page: run them on the reader's runtime.
        reader.handle.block_on(read_store_listing(
            reader, &self.0, progress, options, emitter,
        ))
    }
}
