use super::*;
use crate::error::{Error, Result};
use aws_sdk_s3::Client;
use batchops_core::manifest::{ObjectEntry, ObjectRef, ParsedLine};
use batchops_core::plan::{parse_time, Cursor, GeneratorFilter, PlanProgress, Planner};
use batchops_core::request::GeneratedManifest;

/// Lists the source bucket (each filter prefix in turn), applying the generator's filter.
pub(super) async fn read_listing(
    reader: &Reader,
    generated: &GeneratedManifest,
    progress: PlanProgress,
    options: &SourceOptions,
    emitter: &Emitter,
) -> Result<()> {
    let s3 = reader
        .s3
        .as_ref()
        .ok_or_else(|| Error::Invalid("no S3 client configured".into()))?;
    let versions_needed = generated.all_versions || options.keep_etags || options.as_of.is_some();
    let mut planner = match Planner::new(
        options.chunk_size,
        progress.clone(),
        options.keep_etags || generated.all_versions,
        options.as_of.as_deref(),
        false,
    ) {
        Ok(p) => p,
        Err(reason) => {
            emitter
                .send(Ok(SourceEvent::Failed {
                    code: "ManifestInvalid",
                    reason,
                }))
                .await;
            return Ok(());
        }
    };
    let prefixes = generated.filter.listing_prefixes();
    let mut cursor = progress.cursor.clone();
    let mut out = Vec::new();
    while (cursor.prefix_index as usize) < prefixes.len() {
        let prefix = &prefixes[cursor.prefix_index as usize];
        loop {
            let page = if versions_needed {
                list_versions_page(s3, &generated.source_bucket, prefix, &cursor).await?
            } else {
                list_objects_page(s3, &generated.source_bucket, prefix, &cursor).await?
            };
            for (entry, is_delete_marker) in page.entries {
                let before = cursor.clone();
                cursor.line += 1;
                cursor.key_marker = Some(entry.object.key.clone());
                cursor.version_marker = entry.object.version_id.clone().filter(|_| versions_needed);
                let parsed = if is_delete_marker {
                    ParsedLine::DeleteMarker(entry)
                } else if !passes(&generated.filter, &entry)
                    || (!generated.all_versions
                        && options.as_of.is_none()
                        && entry.is_latest == Some(false))
                {
                    planner.skip();
                    continue;
                } else {
                    ParsedLine::Object(entry)
                };
                if let Err(reason) = planner.feed(cursor.line, parsed, &before, &cursor, &mut out) {
                    emitter
                        .send(Ok(SourceEvent::Failed {
                            code: "ManifestInvalid",
                            reason,
                        }))
                        .await;
                    return Ok(());
                }
                for chunk in out.drain(..) {
                    if !emitter.send(Ok(SourceEvent::Chunk(chunk))).await {
                        return Ok(());
                    }
                }
            }
            if !page.truncated {
                break;
            }
        }
        cursor.prefix_index += 1;
        cursor.key_marker = None;
        cursor.version_marker = None;
    }
    let progress = match planner.finish(&cursor, &mut out) {
        Ok(p) => p,
        Err(reason) => {
            emitter
                .send(Ok(SourceEvent::Failed {
                    code: "ManifestInvalid",
                    reason,
                }))
                .await;
            return Ok(());
        }
    };
    for chunk in out {
        if !emitter.send(Ok(SourceEvent::Chunk(chunk))).await {
            return Ok(());
        }
    }
    emitter.send(Ok(SourceEvent::Finished(progress))).await;
    Ok(())
}

pub(super) fn passes(filter: &GeneratorFilter, entry: &ObjectEntry) -> bool {
    let modified = entry
        .last_modified
        .as_deref()
        .and_then(|t| parse_time(t).ok());
    filter.matches(
        &entry.object.key,
        modified,
        entry.size.unwrap_or(0),
        entry.storage_class.as_deref(),
    )
}

pub(crate) struct Page {
    pub(crate) entries: Vec<(ObjectEntry, bool)>,
    pub(crate) truncated: bool,
}

pub(super) fn rfc3339(t: Option<&aws_smithy_types::DateTime>) -> Option<String> {
    t.and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
}

pub(super) async fn list_objects_page(
    s3: &Client,
    bucket: &str,
    prefix: &str,
    cursor: &Cursor,
) -> Result<Page> {
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_start_after(cursor.key_marker.clone())
        .send()
        .await
        .map_err(|e| {
            Error::aws_call(
                "S3",
                "ListObjectsV2",
                &format!("s3://{bucket}/{prefix}"),
                &e,
            )
        })?;
    let entries = out
        .contents()
        .iter()
        .map(|o| {
            let entry = ObjectEntry {
                object: ObjectRef {
                    bucket: bucket.to_string(),
                    key: o.key().unwrap_or_default().to_string(),
                    version_id: None,
                },
                etag: o.e_tag().map(str::to_string),
                size: o.size().map(|s| s.max(0) as u64),
                last_modified: rfc3339(o.last_modified()),
                is_latest: Some(true),
                storage_class: o.storage_class().map(|c| c.as_str().to_string()),
            };
            (entry, false)
        })
        .collect();
    Ok(Page {
        entries,
        truncated: out.is_truncated().unwrap_or(false),
    })
}

/// One ListObjectVersions page, versions and delete markers merged in listing order (key
/// ascending, newest first). It has no paginator: the cursor's markers are the loop.
pub(crate) async fn list_versions_page(
    s3: &Client,
    bucket: &str,
    prefix: &str,
    cursor: &Cursor,
) -> Result<Page> {
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(prefix)
        .set_key_marker(cursor.key_marker.clone())
        .set_version_id_marker(
            cursor
                .key_marker
                .as_ref()
                .and(cursor.version_marker.clone()),
        )
        .send()
        .await
        .map_err(|e| {
            Error::aws_call(
                "S3",
                "ListObjectVersions",
                &format!("s3://{bucket}/{prefix}"),
                &e,
            )
        })?;
    let mut entries: Vec<(ObjectEntry, bool, Option<aws_smithy_types::DateTime>)> = Vec::new();
    for v in out.versions() {
        entries.push((
            ObjectEntry {
                object: ObjectRef {
                    bucket: bucket.to_string(),
                    key: v.key().unwrap_or_default().to_string(),
                    version_id: Some(v.version_id().unwrap_or("null").to_string()),
                },
                etag: v.e_tag().map(str::to_string),
                size: v.size().map(|s| s.max(0) as u64),
                last_modified: rfc3339(v.last_modified()),
                is_latest: v.is_latest(),
                storage_class: v.storage_class().map(|c| c.as_str().to_string()),
            },
            false,
            v.last_modified().cloned(),
        ));
    }
    for m in out.delete_markers() {
        entries.push((
            ObjectEntry {
                object: ObjectRef {
                    bucket: bucket.to_string(),
                    key: m.key().unwrap_or_default().to_string(),
                    version_id: Some(m.version_id().unwrap_or("null").to_string()),
                },
                last_modified: rfc3339(m.last_modified()),
                is_latest: m.is_latest(),
                ..Default::default()
            },
            true,
            m.last_modified().cloned(),
        ));
    }
    // Key ascending, then newest first; the API orders each list this way but not the two merged.
    // Equal times (second-precision emulators, or bad luck) put the latest version first.
    entries.sort_by(|a, b| {
        a.0.object.key.cmp(&b.0.object.key).then_with(|| {
            let (ta, tb) = (
                a.2.map(|t| (t.secs(), t.subsec_nanos())),
                b.2.map(|t| (t.secs(), t.subsec_nanos())),
            );
            tb.cmp(&ta).then_with(|| {
                b.0.is_latest
                    .unwrap_or(false)
                    .cmp(&a.0.is_latest.unwrap_or(false))
            })
        })
    });
    Ok(Page {
        entries: entries.into_iter().map(|(e, dm, _)| (e, dm)).collect(),
        truncated: out.is_truncated().unwrap_or(false),
    })
}

/// A generated manifest: a listing of the source bucket.
pub(super) struct Listing(pub(super) GeneratedManifest);

impl ManifestReader for Listing {
    fn read(
        &self,
        reader: &Reader,
        progress: PlanProgress,
        options: &SourceOptions,
        emitter: &Emitter,
    ) -> Result<()> {
        // Listing is S3 calls page after page, not parsing: run them on the reader's runtime.
        reader
            .handle
            .block_on(read_listing(reader, &self.0, progress, options, emitter))
    }
}
