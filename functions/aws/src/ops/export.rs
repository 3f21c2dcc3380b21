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

use super::parts::{
    read_whole, PartProgress, StreamedUploads, TransferRange, UploadAbort, UploadTarget,
};
use super::{RangeContext, TaskResult, TaskRunner};
use crate::error::S3Failure;
use crate::store::KeptUpload;
use crate::stores::{self, End, OpenStore, StoreRefusal};
use crate::App;
use batchops_core::backoff::ErrorClass;
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
    transfer: TransferRange<'a>,
    /// The destination, opened (its secret read) once per range, by the first task.
    store: OnceCell<Result<OpenStore, String>>,
}

pub fn runner<'a>(spec: &'a ExportSpec, range: RangeContext<'a>) -> Export<'a> {
    Export {
        app: range.app,
        sources: range.sources,
        spec,
        transfer: TransferRange::new(&range),
        store: OnceCell::new(),
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

impl Written {
    /// A multipart upload's: every part of the object.
    fn of(done: &PartProgress) -> Self {
        Written {
            size: done.offset(),
            md5: done.md5.hex(),
        }
    }
}

impl TaskRunner for Export<'_> {
    fn run<'t>(&'t self, index: u64, task: &'t ChunkTask) -> BoxFuture<'t, TaskResult> {
        Box::pin(async move {
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
            let uploads = self.transfer.uploads(index, store);
            let tried = uploads
                .attempts(task, || {
                    self.attempt(store, &uploads, object, etag, size, &destination_key)
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
                Err(ended) => ended,
            }
        })
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

impl UploadAbort for OpenStore {
    fn abort<'s>(&'s self, record: &'s KeptUpload) -> BoxFuture<'s, Result<(), String>> {
        Box::pin(async move { abort_kept(self, record).await.map_err(|e| e.to_string()) })
    }
}

/// One object's multipart upload into the destination store.
struct StoreTarget<'s> {
    store: &'s OpenStore,
    path: &'s Path,
    /// The object written, for errors.
    to: &'s str,
}

impl UploadTarget for StoreTarget<'_> {
    fn create(&self) -> BoxFuture<'_, Result<String, Failure>> {
        Box::pin(async move {
            self.store
                .multipart
                .create_multipart(self.path)
                .await
                .map_err(|e| Failure::from_store(e, End::Destination, self.to))
        })
    }

    fn put_part<'s>(
        &'s self,
        upload_id: &'s str,
        index: usize,
        bytes: Vec<u8>,
    ) -> BoxFuture<'s, Result<String, Failure>> {
        // object_store names an upload by a `String` (its `MultipartId`).
        let upload_id = upload_id.to_string();
        Box::pin(async move {
            let part = self
                .store
                .multipart
                .put_part(self.path, &upload_id, index, PutPayload::from(bytes))
                .await
                .map_err(|e| Failure::from_store(e, End::Destination, self.to))?;
            Ok(part.content_id)
        })
    }

    fn complete<'s>(
        &'s self,
        upload_id: &'s str,
        parts: &'s [String],
    ) -> BoxFuture<'s, Result<Option<String>, Failure>> {
        let upload_id = upload_id.to_string();
        Box::pin(async move {
            let parts = parts
                .iter()
                .map(|id| PartId {
                    content_id: id.clone(),
                })
                .collect();
            self.store
                .multipart
                .complete_multipart(self.path, &upload_id, parts)
                .await
                .map_err(|e| Failure::from_store(e, End::Destination, self.to))?;
            Ok(None)
        })
    }
}

impl Export<'_> {
    /// One attempt at one object: GET and stream it into the destination, from the first part
    /// its kept upload lacks.
    async fn attempt(
        &self,
        store: &OpenStore,
        uploads: &StreamedUploads<'_>,
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
        let target = StoreTarget {
            store,
            path: &path,
            to: &to,
        };
        let from = format!("s3://{}/{}", object.bucket, object.key);
        let part_bytes = self.transfer.settings.part_bytes;
        // An object planned as one part has no upload to continue: no table read for it.
        let looked = planned_size.is_none_or(|size| size > part_bytes);
        let resumed = if looked {
            uploads.resumable(destination_key).await?
        } else {
            None
        };
        let pinned = resumed.as_ref().and_then(|r| r.streamed.as_ref());
        let offset = pinned.map_or(0, |s| s.progress.offset());
        if let (Some(record), Some(streamed)) = (&resumed, pinned) {
            if offset == streamed.size {
                // Every part is there; only the completion is missing.
                let nothing = futures::stream::empty::<Result<bytes::Bytes, String>>();
                let (done, _) = uploads.finish(&target, record, &from, 0, nothing).await?;
                return Ok(Written::of(&done));
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
                    uploads.discard().await;
                }
                // Pinned to what this GET read, for the ranged GETs of later deliveries.
                let source_version = answer.version_id().map(str::to_string).or(version);
                let source_etag = answer.e_tag().map(str::to_string);
                uploads
                    .start(
                        &target,
                        destination_key,
                        length,
                        source_version,
                        source_etag,
                    )
                    .await?
            }
        };
        let body = byte_stream(answer.body);
        let (done, _) = uploads
            .finish(&target, &record, &from, length, body)
            .await?;
        Ok(Written::of(&done))
    }

    /// An object of one part or less: read whole, then one PUT.
    async fn put_whole(
        &self,
        store: &OpenStore,
        path: &Path,
        to: &str,
        from: &str,
        size: u64,
        body: aws_sdk_s3::primitives::ByteStream,
    ) -> Result<Written, Failure> {
        let buffer = read_whole(byte_stream(body), size, from).await?;
        if let Some(stop) = self.transfer.should_stop() {
            return Err(stop);
        }
        let md5 = Md5::digest(&buffer);
        store
            .store
            .put(path, PutPayload::from(buffer))
            .await
            .map_err(|e| Failure::from_store(e, End::Destination, to))?;
        Ok(Written {
            size,
            md5: hex::encode(md5),
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
