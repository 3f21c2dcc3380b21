use super::*;
use crate::clients::JobClients;
use crate::error::{Error, Result};
use crate::objects::put_bytes;
use aws_sdk_s3::Client;
use batchops_core::chunk::{chunk_key, ChunkTask};
use batchops_core::encoding::encode_key;
use batchops_core::manifest::ObjectRef;
use batchops_core::operation::TaskLimit;
use batchops_core::plan::{encode_chunk, parse_time, ChunkOut, Cursor};
use batchops_core::request::ManifestOutput;

/// What a planning-time HEAD pins: version ID, ETag, size.
pub(super) type HeadPin = (Option<String>, Option<String>, Option<u64>);

/// Where prepared chunks go, and what pinning still needs S3 for.
pub struct ChunkWriter {
    /// The job's clients for its data (each bucket's own: Region, expected owner): pinning
    /// HEADs, version look-ups, generated-manifest output.
    pub clients: Option<JobClients>,
    /// Where chunk files go: the stack's client, the control bucket and the job ID. None for a
    /// dry run: chunks are encoded, counted and dropped.
    pub control: Option<(Client, String, String)>,
    /// Generated manifests written for inspection: (output, job id, with a VersionId column).
    pub output: Option<(ManifestOutput, String, bool)>,
    /// Fill a missing version ID and ETag with a HEAD at planning time.
    pub pin_with_head: bool,
    /// CSV manifests with an as-of time: look each key's versions up.
    pub as_of_lookup: Option<String>,
    pub concurrency: usize,
    /// Tasks past this bound (in manifest order) are written refused: they fail without an S3
    /// call (a delete job's MaxDeletes).
    pub task_limit: Option<TaskLimit>,
    /// Tasks in the job's chunks before the next one this writer writes.
    pub tasks_written: u64,
    pub stats: WriteStats,
}

impl ChunkWriter {
    /// A writer that encodes and counts chunks but stores nothing: for dry runs of sources whose
    /// entries are already pinned (backups, restores).
    pub fn counting_only() -> Self {
        ChunkWriter {
            clients: None,
            control: None,
            output: None,
            pin_with_head: false,
            as_of_lookup: None,
            concurrency: 1,
            task_limit: None,
            tasks_written: 0,
            stats: Default::default(),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteStats {
    pub chunks: u64,
    pub encoded_bytes: u64,
    /// The first malformed lines (line number, message), for dry runs.
    pub malformed: Vec<(u64, String)>,
    pub s3_puts: u64,
    pub pin_requests: u64,
}

pub(super) const MALFORMED_KEPT: usize = 100;

/// A prepared chunk's PUTs (its chunk file, and its part of a generated manifest), made by
/// [`ChunkPut::send`]; owns all it needs, so several can be in flight at once.
pub struct ChunkPut {
    /// None for a dry run: nothing is stored.
    chunk_file: Option<PendingPut>,
    manifest_part: Option<PendingPut>,
}

struct PendingPut {
    s3: Client,
    bucket: String,
    key: String,
    body: Vec<u8>,
    content_type: &'static str,
}

impl ChunkPut {
    /// The body of the chunk file this write stores, if it stores one (not a dry run's).
    pub fn chunk_file(&self) -> Option<&[u8]> {
        self.chunk_file.as_ref().map(|put| put.body.as_slice())
    }

    pub async fn send(self) -> Result<()> {
        for put in self.chunk_file.into_iter().chain(self.manifest_part) {
            put_bytes(&put.s3, &put.bucket, &put.key, put.body, put.content_type).await?;
        }
        Ok(())
    }
}

impl ChunkWriter {
    /// Prepares `chunk` (pinning, limits, encoding) and stores it before returning.
    pub async fn write(&mut self, chunk: &mut ChunkOut) -> Result<()> {
        self.prepare(chunk).await?.send().await
    }

    /// Everything of a write but its PUTs, which the returned [`ChunkPut`] makes: the planner
    /// keeps several in flight while the next chunks are prepared. Chunks are prepared in
    /// order (task numbering and limits depend on the chunks before).
    pub async fn prepare(&mut self, chunk: &mut ChunkOut) -> Result<ChunkPut> {
        if self.pin_with_head {
            self.pin(&mut chunk.tasks).await?;
        }
        if let Some(as_of) = self.as_of_lookup.clone() {
            self.select_as_of(&mut chunk.tasks, &as_of).await?;
        }
        if let Some(limit) = &self.task_limit {
            let first = self.tasks_written;
            for (index, task) in chunk.tasks.iter_mut().enumerate() {
                if first + index as u64 >= limit.max {
                    *task = task.refused(limit.code, &limit.message);
                }
            }
        }
        self.tasks_written += chunk.tasks.len() as u64;
        for task in &chunk.tasks {
            if let ChunkTask::Malformed(m) = task {
                if self.stats.malformed.len() < MALFORMED_KEPT {
                    self.stats.malformed.push((m.line, m.message.clone()));
                }
            }
        }
        let body = encode_chunk(&chunk.tasks);
        self.stats.chunks += 1;
        self.stats.encoded_bytes += body.len() as u64;
        let mut put = ChunkPut {
            chunk_file: None,
            manifest_part: None,
        };
        if let Some((control_s3, bucket, job_id)) = &self.control {
            put.chunk_file = Some(PendingPut {
                s3: control_s3.clone(),
                bucket: bucket.clone(),
                key: chunk_key(job_id, chunk.seq),
                body: body.into_bytes(),
                content_type: "text/plain",
            });
            if let Some((output, job_id, with_versions)) = &self.output {
                let part = generated_part(&chunk.tasks, *with_versions)?;
                let key = format!(
                    "{}/data/{:010}.csv.gz",
                    output_root(output, job_id),
                    chunk.seq
                );
                let Some(clients) = &self.clients else {
                    return Err(Error::Invalid(
                        "writing a generated manifest needs S3 access".into(),
                    ));
                };
                put.manifest_part = Some(PendingPut {
                    s3: clients.s3(&output.bucket).await,
                    bucket: output.bucket.clone(),
                    key,
                    body: part,
                    content_type: "application/gzip",
                });
            }
        }
        self.stats.s3_puts += put.chunk_file.is_some() as u64 + put.manifest_part.is_some() as u64;
        Ok(put)
    }

    pub(super) async fn pin(&mut self, tasks: &mut [ChunkTask]) -> Result<()> {
        use futures::StreamExt;
        let Some(clients) = self.clients.clone() else {
            return Err(Error::Invalid("pinning needs S3 access".into()));
        };
        let lookups: Vec<usize> = tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t, ChunkTask::Object { object, etag, .. } if object.version_id.is_none() || etag.is_none()))
            .map(|(i, _)| i)
            .collect();
        self.stats.pin_requests += lookups.len() as u64;
        let heads: Vec<(usize, Option<HeadPin>)> = futures::stream::iter(lookups)
            .map(|i| {
                let clients = clients.clone();
                let object = match &tasks[i] {
                    ChunkTask::Object { object, .. } => object.clone(),
                    _ => ObjectRef::default(),
                };
                async move {
                    // Each task's own bucket: a CSV manifest may name buckets in many Regions.
                    let head = clients
                        .s3(&object.bucket)
                        .await
                        .head_object()
                        .bucket(&object.bucket)
                        .key(&object.key)
                        .set_version_id(object.version_id.clone())
                        .send()
                        .await
                        .ok()
                        .map(|h| {
                            (
                                h.version_id().map(str::to_string),
                                h.e_tag().map(str::to_string),
                                h.content_length().map(|l| l.max(0) as u64),
                            )
                        });
                    (i, head)
                }
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        for (i, head) in heads {
            // An object missing at planning time stays unpinned and fails when it runs.
            if let (
                ChunkTask::Object {
                    object, etag, size, ..
                },
                Some((version, head_etag, length)),
            ) = (&mut tasks[i], head)
            {
                if object.version_id.is_none() {
                    object.version_id = version;
                }
                *etag = head_etag;
                *size = length;
            }
        }
        Ok(())
    }

    pub(super) async fn select_as_of(
        &mut self,
        tasks: &mut [ChunkTask],
        as_of: &str,
    ) -> Result<()> {
        use batchops_core::plan::{AsOfSelector, Selected};
        let Some(clients) = self.clients.clone() else {
            return Err(Error::Invalid("as-of selection needs S3 access".into()));
        };
        for task in tasks.iter_mut() {
            let ChunkTask::Object {
                line,
                object,
                etag,
                size,
            } = task
            else {
                continue;
            };
            self.stats.pin_requests += 1;
            let mut selector = AsOfSelector::new(parse_time(as_of).map_err(Error::Invalid)?);
            let mut cursor = Cursor::default();
            let mut chosen = None;
            let s3 = clients.s3(&object.bucket).await;
            loop {
                let page = list_versions_page(&s3, &object.bucket, &object.key, &cursor).await?;
                for (entry, is_delete_marker) in &page.entries {
                    if entry.object.key != object.key {
                        continue;
                    }
                    if let Selected::GroupEnded(Some(choice)) = selector
                        .feed(*line, entry, *is_delete_marker)
                        .map_err(Error::Invalid)?
                    {
                        chosen = Some(choice);
                    }
                    cursor.key_marker = Some(entry.object.key.clone());
                    cursor.version_marker = entry.object.version_id.clone();
                }
                if !page.truncated {
                    break;
                }
            }
            if let Some(choice) = selector.finish().or(chosen) {
                object.version_id = choice.1.object.version_id;
                *etag = choice.1.etag;
                *size = choice.1.size;
            } else {
                *task = ChunkTask::Malformed(batchops_core::manifest::MalformedLine {
                    line: *line,
                    bucket: object.bucket.clone(),
                    key_encoded: encode_key(&object.key),
                    message: format!(
                        "manifest line {line}: no version of this key existed at {as_of}"
                    ),
                });
            }
        }
        Ok(())
    }
}
