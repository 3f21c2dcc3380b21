//! One export task: GET the (pinned) S3 object version as a stream and write it into another
//! object store, hashing (MD5) as it goes. An object up to one part is one PUT; a larger one is
//! a multipart upload of fixed-size parts with a bounded number in flight (the shared part loop,
//! [`super::parts`]), so memory per task is about `part_bytes * (part_concurrency + 1)`
//! whatever the object's size. The upload's ID and the parts it holds are kept in the table
//! (as copies keep theirs): an object that outlasts one invocation, or whose transfer was cut
//! short, continues from its first missing part, reading the source pinned by version and ETag
//! from there (a ranged GET). The store's own requests are retried by `object_store`; a
//! transfer cut short is tried again with backoff up to the task's attempts. A stopped job, or
//! a task that fails, aborts the object in flight and forgets its upload; objects already
//! written stay.

use super::copy::KeptUploads;
use super::parts::{PartLoop, PartProgress, PartSink};
use super::{retry_within, GaveUp, RangeContext, RetryBounds, TaskResult, TaskRunner};
use crate::error::S3Failure;
use crate::store::{KeptUpload, StreamedUpload};
use crate::stores::{self, End, ExportSettings, OpenStore, StoreRefusal};
use crate::App;
use batchops_core::backoff::{ErrorClass, RetryPolicy};
use batchops_core::chunk::ChunkTask;
use batchops_core::encoding::encode_key;
use batchops_core::export::{export_result_message, ExportSpec};
use batchops_core::manifest::ObjectRef;
use batchops_core::report::{TaskOutcome, TaskStatus};
use futures::future::BoxFuture;
use md5::{Digest, Md5};
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;
use tokio::sync::OnceCell;

pub struct Export<'a> {
    app: &'a App,
    /// The job's clients for the source objects (its role, each bucket's Region).
    sources: &'a crate::clients::JobClients,
    spec: &'a ExportSpec,
    settings: &'a ExportSettings,
    retry: RetryPolicy,
    stop: &'a AtomicBool,
    /// No part starts after this: the object in flight is aborted and the task is run again
    /// by the next delivery of the range.
    stop_starting_at: SystemTime,
    /// The destination, opened (its secret read) once per range, by the first task.
    store: OnceCell<Result<OpenStore, String>>,
    /// Where each task's multipart upload is kept between invocations (task 0 here; each
    /// task its own).
    kept: KeptUploads<'a>,
}

pub fn runner<'a>(spec: &'a ExportSpec, range: RangeContext<'a>) -> Export<'a> {
    Export {
        app: range.app,
        sources: range.sources,
        spec,
        settings: &range.app.config.export,
        retry: range.app.config.retry,
        stop: range.stop,
        stop_starting_at: range.stop_starting_at,
        store: OnceCell::new(),
        kept: KeptUploads {
            store: &range.app.store,
            job_id: range.job_id,
            seq: range.seq,
            task: 0,
        },
    }
}

/// Why one attempt at an object did not write it (exports and imports).
pub(super) enum Failure {
    /// Fails the task with this HTTP status, error code and message, or is retried when the
    /// class says so.
    Error {
        class: ErrorClass,
        status: u16,
        code: String,
        message: String,
    },
    Stopped,
    OutOfTime,
}

impl Failure {
    /// Why no further piece of a transfer may start (the job stopped, or no time is left).
    pub(super) fn stopping(stop: &AtomicBool, stop_starting_at: SystemTime) -> Option<Self> {
        if stop.load(Ordering::Relaxed) {
            Some(Failure::Stopped)
        } else if SystemTime::now() >= stop_starting_at {
            Some(Failure::OutOfTime)
        } else {
            None
        }
    }

    pub(super) fn from_s3(failure: S3Failure) -> Self {
        Failure::Error {
            class: failure.class(),
            status: failure.status.unwrap_or(500),
            code: failure.code.unwrap_or_else(|| "InternalError".to_string()),
            message: failure.message,
        }
    }

    /// A store error, as a failure of the task: permanent for what a retry cannot change.
    pub(super) fn from_store(err: object_store::Error, end: End, object: &str) -> Self {
        let refusal = StoreRefusal::of(&err);
        let verb = match end {
            End::Source => "reading",
            End::Destination => "writing",
        };
        Failure::Error {
            class: refusal.class(),
            status: refusal.status(),
            code: refusal.code(end).to_string(),
            message: format!("{verb} {object}: {}", stores::error_text(&err)),
        }
    }
}

/// What an object export wrote.
struct Written {
    size: u64,
    md5: String,
}

impl TaskRunner for Export<'_> {
    fn run<'t>(&'t self, index: u64, task: &'t ChunkTask) -> BoxFuture<'t, TaskResult> {
        Box::pin(async move {
            let kept = KeptUploads {
                task: index,
                ..self.kept
            };
            // A snapshot's tasks name the backup copy and the key it was backed up from: the
            // export keeps the original key under its prefix.
            let (object, etag, size, relative_key) = match task {
                ChunkTask::Object {
                    object, etag, size, ..
                } => (object, etag.as_deref(), *size, &object.key),
                ChunkTask::Restore {
                    object, target_key, ..
                } => (object, None, None, target_key),
                ChunkTask::Malformed(_) | ChunkTask::Refused { .. } => return super::settle(task),
                ChunkTask::Delete { .. } | ChunkTask::Import { .. } => {
                    return TaskResult::Done(task.failed_outcome(
                        400,
                        "InvalidRequest",
                        "exports write S3 objects to other stores; this task deletes or imports one"
                            .to_string(),
                    ))
                }
            };
            let destination_key = match self.spec.to.destination_key(relative_key) {
                Ok(key) => key,
                Err(message) => {
                    return TaskResult::Done(task.failed_outcome(400, "UnsupportedKey", message))
                }
            };
            let store = self
                .store
                .get_or_init(|| async {
                    stores::open(self.app, &self.spec.to)
                        .await
                        .map_err(|e| e.to_string())
                })
                .await;
            let store = match store {
                Ok(store) => store,
                Err(message) => {
                    return TaskResult::Done(task.failed_outcome(
                        403,
                        "DestinationUnavailable",
                        message.clone(),
                    ))
                }
            };
            let tried = with_retries(&self.retry, self.stop, self.stop_starting_at, task, || {
                self.attempt(store, kept, object, etag, size, &destination_key)
            })
            .await;
            match tried {
                Ok(written) => TaskResult::Done(TaskOutcome {
                    bucket: object.bucket.clone(),
                    key_encoded: encode_key(&object.key),
                    version_id: object.version_id.clone(),
                    status: TaskStatus::Succeeded,
                    http_status: 200,
                    error_code: None,
                    message: export_result_message(written.size, &written.md5, &destination_key),
                    bytes: written.size,
                    dest_version: None,
                }),
                // Out of time, the upload is kept for the next delivery.
                Err(TaskResult::Suspended) => TaskResult::Suspended,
                Err(ended) => {
                    discard(store, kept).await;
                    ended
                }
            }
        })
    }
}

/// Runs a transfer's attempts (exports and imports) within the task's retries, bounded by the
/// stop flag and the invocation's time: what the attempts made, or how the task ended without
/// it (the job stopped, no time left, a failure).
pub(super) async fn with_retries<T, F, Fut>(
    retry: &RetryPolicy,
    stop: &AtomicBool,
    stop_starting_at: SystemTime,
    task: &ChunkTask,
    attempt: F,
) -> Result<T, TaskResult>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let bounds = RetryBounds {
        stop: Some(stop),
        start_by: Some(stop_starting_at),
    };
    let class_of = |failure: &Failure| match failure {
        Failure::Error { class, .. } => Some(*class),
        Failure::Stopped | Failure::OutOfTime => None,
    };
    match retry_within(retry, bounds, class_of, attempt).await {
        Ok(done) => Ok(done),
        // A retryable error when the job stops or time runs out: as if the next attempt had
        // found it so.
        Err(GaveUp::Stopped(_)) | Err(GaveUp::Failed(Failure::Stopped)) => {
            Err(TaskResult::Abandoned)
        }
        Err(GaveUp::OutOfTime(_)) | Err(GaveUp::Failed(Failure::OutOfTime)) => {
            Err(TaskResult::Suspended)
        }
        Err(GaveUp::Failed(Failure::Error {
            status,
            code,
            message,
            ..
        })) => Err(TaskResult::Done(
            task.failed_outcome(status, &code, message),
        )),
    }
}

/// Aborts the upload a task kept, and forgets it: nothing half-written stays behind.
pub(crate) async fn discard(store: &OpenStore, kept: KeptUploads<'_>) {
    let record = match kept
        .store
        .kept_upload(kept.job_id, kept.seq, kept.task)
        .await
    {
        Ok(Some(record)) => record,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(error = %err, "could not read a kept upload; the finalizer aborts it");
            return;
        }
    };
    if let Err(err) = abort_kept(store, &record).await {
        tracing::warn!(key = %record.target_key, error = %err, "could not abort a multipart upload; the finalizer will");
        return;
    }
    if let Err(err) = kept
        .store
        .forget_upload(kept.job_id, kept.seq, kept.task)
        .await
    {
        tracing::warn!(error = %err, "could not forget an aborted upload; the finalizer will");
    }
}

/// Aborts a kept upload in the destination store (one already gone is no error).
pub(crate) async fn abort_kept(
    store: &OpenStore,
    record: &KeptUpload,
) -> Result<(), object_store::Error> {
    let path = Path::parse(&record.target_key)?;
    match store
        .multipart
        .abort_multipart(&path, &record.upload_id)
        .await
    {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(err) => Err(err),
    }
}

/// The parts of one upload, put into the destination store and checkpointed in the table.
struct StoreParts<'s> {
    store: &'s OpenStore,
    path: &'s Path,
    to: &'s str,
    kept: KeptUploads<'s>,
    record: KeptUpload,
}

impl PartSink for StoreParts<'_> {
    fn put_part(&self, index: usize, bytes: Vec<u8>) -> BoxFuture<'_, Result<String, Failure>> {
        Box::pin(async move {
            let part = self
                .store
                .multipart
                .put_part(
                    self.path,
                    &self.record.upload_id,
                    index,
                    PutPayload::from(bytes),
                )
                .await
                .map_err(|e| Failure::from_store(e, End::Destination, self.to))?;
            Ok(part.content_id)
        })
    }

    fn checkpoint<'c>(&'c self, progress: &'c PartProgress) -> BoxFuture<'c, Result<(), Failure>> {
        Box::pin(async move {
            let mut record = self.record.clone();
            if let Some(streamed) = &mut record.streamed {
                streamed.progress = progress.clone();
            }
            keep(self.kept, &record).await
        })
    }
}

/// Records a task's upload in the table.
async fn keep(kept: KeptUploads<'_>, record: &KeptUpload) -> Result<(), Failure> {
    kept.store
        .keep_upload(kept.job_id, kept.seq, kept.task, record)
        .await
        .map_err(|err| Failure::Error {
            class: err.class(),
            status: 500,
            code: "InternalError".to_string(),
            message: format!(
                "could not record multipart upload {}: {err}",
                record.upload_id
            ),
        })
}

impl Export<'_> {
    fn should_stop(&self) -> Option<Failure> {
        Failure::stopping(self.stop, self.stop_starting_at)
    }

    /// The upload an earlier invocation (or attempt) kept for this task, to continue; None
    /// when there is none. One for another key or part size is aborted and forgotten.
    async fn resumable(
        &self,
        store: &OpenStore,
        kept: KeptUploads<'_>,
        destination_key: &str,
    ) -> Result<Option<KeptUpload>, Failure> {
        let record = kept
            .store
            .kept_upload(kept.job_id, kept.seq, kept.task)
            .await
            .map_err(|err| Failure::Error {
                class: err.class(),
                status: 500,
                code: "InternalError".to_string(),
                message: format!("could not read the kept multipart upload: {err}"),
            })?;
        let Some(record) = record else {
            return Ok(None);
        };
        if record.streamed.is_some()
            && record.target_key == destination_key
            && record.part_size == self.settings.part_bytes
        {
            return Ok(Some(record));
        }
        discard(store, kept).await;
        Ok(None)
    }

    /// One attempt at one object: GET and stream it into the destination, from the first part
    /// its kept upload lacks.
    async fn attempt(
        &self,
        store: &OpenStore,
        kept: KeptUploads<'_>,
        object: &ObjectRef,
        etag: Option<&str>,
        planned_size: Option<u64>,
        destination_key: &str,
    ) -> Result<Written, Failure> {
        let to = format!("`{destination_key}` in {}", store.location.url());
        let path = Path::parse(destination_key).map_err(|e| Failure::Error {
            class: ErrorClass::Permanent,
            status: 400,
            code: "UnsupportedKey".to_string(),
            message: e.to_string(),
        })?;
        let from = format!("s3://{}/{}", object.bucket, object.key);
        let part_bytes = self.settings.part_bytes;
        // An object planned as one part has no upload to continue: no table read for it.
        let looked = planned_size.is_none_or(|size| size > part_bytes);
        let resumed = if looked {
            self.resumable(store, kept, destination_key).await?
        } else {
            None
        };
        let pinned = resumed.as_ref().and_then(|r| r.streamed.as_ref());
        let offset = pinned.map_or(0, |s| s.progress.offset());
        if let (Some(record), Some(streamed)) = (&resumed, pinned) {
            if offset == streamed.size {
                // Every part is there; only the completion is missing.
                return self
                    .complete(store, kept, &path, &to, record, &streamed.progress)
                    .await;
            }
            tracing::info!(key = %destination_key, upload_id = %record.upload_id, parts_done = streamed.progress.parts.len(), offset, "continuing a kept export upload");
        }
        let (version, if_match) = match pinned {
            Some(streamed) => (
                streamed.source_version.clone(),
                streamed.source_etag.clone(),
            ),
            None => (
                object.version_id.clone(),
                etag.map(|e| format!("\"{}\"", e.trim_matches('"'))),
            ),
        };
        let answer = self
            .sources
            .s3(&object.bucket)
            .await
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(version.clone())
            .set_if_match(if_match)
            .set_range((offset > 0).then(|| format!("bytes={offset}-")))
            .send()
            .await
            .map_err(|err| Failure::from_s3(S3Failure::from_sdk(&err)))?;
        let length = answer.content_length().unwrap_or(0).max(0) as u64;
        let record = match resumed {
            Some(record) => record,
            None if length <= part_bytes => {
                return self
                    .put_whole(store, &path, &to, &from, length, answer.body)
                    .await
            }
            None => {
                if !looked {
                    // Larger than planned: an upload an earlier delivery kept is not continued.
                    discard(store, kept).await;
                }
                let upload_id = store
                    .multipart
                    .create_multipart(&path)
                    .await
                    .map_err(|e| Failure::from_store(e, End::Destination, &to))?;
                let record = KeptUpload {
                    upload_id,
                    target_key: destination_key.to_string(),
                    part_size: part_bytes,
                    streamed: Some(StreamedUpload {
                        progress: PartProgress::default(),
                        size: length,
                        // Pinned to what this GET read, for the ranged GETs of later deliveries.
                        source_version: answer.version_id().map(str::to_string).or(version),
                        source_etag: answer.e_tag().map(str::to_string),
                    }),
                };
                if let Err(failure) = keep(kept, &record).await {
                    // Unrecorded, the upload could be neither continued nor cleaned up later.
                    if let Err(err) = abort_kept(store, &record).await {
                        tracing::warn!(to, error = %err, "could not abort a multipart upload");
                    }
                    return Err(failure);
                }
                record
            }
        };
        let Some(streamed) = &record.streamed else {
            return Err(Failure::Error {
                class: ErrorClass::Permanent,
                status: 500,
                code: "InternalError".to_string(),
                message: format!("kept upload {} records no parts", record.upload_id),
            });
        };
        let size = streamed.size;
        let parts = PartLoop {
            part_bytes: part_bytes as usize,
            concurrency: self.settings.part_concurrency,
            size,
            stop: self.stop,
            stop_starting_at: self.stop_starting_at,
            from: &from,
        };
        if offset + length != size {
            return Err(parts.cut(offset, format!("a ranged GET answered {length} bytes")));
        }
        let sink = StoreParts {
            store,
            path: &path,
            to: &to,
            kept,
            record: record.clone(),
        };
        let done = parts
            .run(byte_stream(answer.body), streamed.progress.clone(), &sink)
            .await?;
        self.complete(store, kept, &path, &to, &record, &done).await
    }

    /// Completes a multipart upload whose parts are all there, and forgets it.
    async fn complete(
        &self,
        store: &OpenStore,
        kept: KeptUploads<'_>,
        path: &Path,
        to: &str,
        record: &KeptUpload,
        done: &PartProgress,
    ) -> Result<Written, Failure> {
        let parts = done
            .parts
            .iter()
            .map(|id| PartId {
                content_id: id.clone(),
            })
            .collect();
        store
            .multipart
            .complete_multipart(path, &record.upload_id, parts)
            .await
            .map_err(|e| Failure::from_store(e, End::Destination, to))?;
        if let Err(err) = kept
            .store
            .forget_upload(kept.job_id, kept.seq, kept.task)
            .await
        {
            tracing::warn!(upload_id = %record.upload_id, error = %err, "could not forget a finished upload; the finalizer will");
        }
        Ok(Written {
            size: done.offset(),
            md5: done.md5.hex(),
        })
    }

    /// An object of one part or less: read whole, then one PUT.
    async fn put_whole(
        &self,
        store: &OpenStore,
        path: &Path,
        to: &str,
        from: &str,
        size: u64,
        mut body: aws_sdk_s3::primitives::ByteStream,
    ) -> Result<Written, Failure> {
        let cut = |read: u64, detail: String| Failure::Error {
            class: ErrorClass::Transient,
            status: 500,
            code: "SourceReadCut".to_string(),
            message: format!("reading {from}: {detail} after {read} of {size} bytes"),
        };
        let mut md5 = Md5::new();
        let mut read: u64 = 0;
        let mut buffer = Vec::with_capacity(size as usize);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| cut(read, e.to_string()))?;
            read += chunk.len() as u64;
            if read > size {
                return Err(cut(read, "more bytes than its length".to_string()));
            }
            md5.update(&chunk);
            buffer.extend_from_slice(&chunk);
        }
        if read != size {
            return Err(cut(read, "body ended early".to_string()));
        }
        if let Some(stop) = self.should_stop() {
            return Err(stop);
        }
        store
            .store
            .put(path, PutPayload::from(buffer))
            .await
            .map_err(|e| Failure::from_store(e, End::Destination, to))?;
        Ok(Written {
            size,
            md5: hex::encode(md5.finalize()),
        })
    }
}

/// An S3 body as a stream of chunks, for the part loop.
fn byte_stream(
    body: aws_sdk_s3::primitives::ByteStream,
) -> impl futures::Stream<Item = Result<bytes::Bytes, String>> + Unpin {
    Box::pin(futures::stream::unfold(body, |mut body| async move {
        let chunk = body.next().await?;
        Some((chunk.map_err(|e| e.to_string()), body))
    }))
}
