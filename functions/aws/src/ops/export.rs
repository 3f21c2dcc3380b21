//! One export task: GET the (pinned) S3 object version as a stream and write it into another
//! object store, hashing (MD5) as it goes. An object up to one part is one PUT; a larger one is
//! a multipart upload of fixed-size parts with a bounded number in flight, so memory per task
//! is about `part_bytes * (part_concurrency + 1)` whatever the object's size. The store's own
//! requests are retried by `object_store`; a transfer cut short (the GET body, a part that
//! kept failing) is started again with backoff up to the task's attempts. A stopped job aborts
//! the object in flight; objects already written stay.

use super::{retry_within, GaveUp, RangeContext, RetryBounds, TaskResult, TaskRunner};
use crate::error::S3Failure;
use crate::stores::{self, ExportSettings, OpenStore};
use crate::App;
use batchops_core::backoff::{ErrorClass, RetryPolicy};
use batchops_core::chunk::ChunkTask;
use batchops_core::encoding::encode_key;
use batchops_core::export::{export_result_message, ExportSpec};
use batchops_core::manifest::ObjectRef;
use batchops_core::report::{TaskOutcome, TaskStatus};
use futures::future::BoxFuture;
use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
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

    /// A destination store error: permanent for what a retry cannot change.
    fn from_store(err: object_store::Error, to: &str) -> Self {
        use object_store::Error as E;
        let (class, status, code) = match &err {
            E::NotFound { .. } => (ErrorClass::Permanent, 404, "DestinationNotFound"),
            E::PermissionDenied { .. } => (ErrorClass::Permanent, 403, "DestinationAccessDenied"),
            E::Unauthenticated { .. } => (ErrorClass::Permanent, 403, "DestinationAccessDenied"),
            E::InvalidPath { .. } => (ErrorClass::Permanent, 400, "UnsupportedKey"),
            E::NotImplemented { .. } | E::NotSupported { .. } => {
                (ErrorClass::Permanent, 501, "NotSupported")
            }
            _ => (ErrorClass::Transient, 500, "DestinationError"),
        };
        Failure::Error {
            class,
            status,
            code: code.to_string(),
            message: format!("writing {to}: {err}"),
        }
    }
}

/// What an object export wrote.
struct Written {
    size: u64,
    md5: String,
}

impl TaskRunner for Export<'_> {
    fn run<'t>(&'t self, _index: u64, task: &'t ChunkTask) -> BoxFuture<'t, TaskResult> {
        Box::pin(async move {
            // A snapshot's tasks name the backup copy and the key it was backed up from: the
            // export keeps the original key under its prefix.
            let (object, etag, relative_key) = match task {
                ChunkTask::Object { object, etag, .. } => (object, etag.as_deref(), &object.key),
                ChunkTask::Restore {
                    object, target_key, ..
                } => (object, None, target_key),
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
            let bounds = RetryBounds {
                stop: Some(self.stop),
                start_by: Some(self.stop_starting_at),
            };
            let class_of = |failure: &Failure| match failure {
                Failure::Error { class, .. } => Some(*class),
                Failure::Stopped | Failure::OutOfTime => None,
            };
            let tried = retry_within(&self.retry, bounds, class_of, || {
                self.attempt(store, object, etag, &destination_key)
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
                // A retryable error when the job stops or time runs out: as if the next attempt
                // had found it so.
                Err(GaveUp::Stopped(_)) | Err(GaveUp::Failed(Failure::Stopped)) => {
                    TaskResult::Abandoned
                }
                Err(GaveUp::OutOfTime(_)) | Err(GaveUp::Failed(Failure::OutOfTime)) => {
                    TaskResult::Suspended
                }
                Err(GaveUp::Failed(Failure::Error {
                    status,
                    code,
                    message,
                    ..
                })) => TaskResult::Done(task.failed_outcome(status, &code, message)),
            }
        })
    }
}

impl Export<'_> {
    fn should_stop(&self) -> Option<Failure> {
        Failure::stopping(self.stop, self.stop_starting_at)
    }

    /// One attempt at one object: GET and stream it into the destination.
    async fn attempt(
        &self,
        store: &OpenStore,
        object: &ObjectRef,
        etag: Option<&str>,
        destination_key: &str,
    ) -> Result<Written, Failure> {
        let to = format!("`{destination_key}` in {}", store.location.url());
        let path = Path::parse(destination_key).map_err(|e| Failure::Error {
            class: ErrorClass::Permanent,
            status: 400,
            code: "UnsupportedKey".to_string(),
            message: e.to_string(),
        })?;
        let answer = self
            .sources
            .s3(&object.bucket)
            .await
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .set_if_match(etag.map(|e| format!("\"{}\"", e.trim_matches('"'))))
            .send()
            .await
            .map_err(|err| Failure::from_s3(S3Failure::from_sdk(&err)))?;
        let size = answer.content_length().unwrap_or(0).max(0) as u64;
        let mut body = answer.body;
        let part_bytes = self.settings.part_bytes as usize;
        let mut md5 = Md5::new();
        let mut read: u64 = 0;
        let cut = |read: u64, detail: String| Failure::Error {
            class: ErrorClass::Transient,
            status: 500,
            code: "SourceReadCut".to_string(),
            message: format!(
                "reading s3://{}/{}: {detail} after {read} of {size} bytes",
                object.bucket, object.key
            ),
        };
        if size <= part_bytes as u64 {
            // One part or less: one PUT.
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
                .put(&path, PutPayload::from(buffer))
                .await
                .map_err(|e| Failure::from_store(e, &to))?;
        } else {
            let upload = store
                .store
                .put_multipart(&path)
                .await
                .map_err(|e| Failure::from_store(e, &to))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, part_bytes);
            let streamed: Result<(), Failure> = async {
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| cut(read, e.to_string()))?;
                    read += chunk.len() as u64;
                    if read > size {
                        return Err(cut(read, "more bytes than its length".to_string()));
                    }
                    md5.update(&chunk);
                    // At most `part_concurrency` parts upload while the next one fills.
                    writer
                        .wait_for_capacity(self.settings.part_concurrency)
                        .await
                        .map_err(|e| Failure::from_store(e, &to))?;
                    if let Some(stop) = self.should_stop() {
                        return Err(stop);
                    }
                    writer.put(chunk);
                }
                if read != size {
                    return Err(cut(read, "body ended early".to_string()));
                }
                Ok(())
            }
            .await;
            match streamed {
                Ok(()) => {
                    writer
                        .finish()
                        .await
                        .map_err(|e| Failure::from_store(e, &to))?;
                }
                Err(failure) => {
                    // Nothing half-written stays behind.
                    if let Err(err) = writer.abort().await {
                        tracing::warn!(to, error = %err, "could not abort a multipart upload");
                    }
                    return Err(failure);
                }
            }
        }
        Ok(Written {
            size,
            md5: hex::encode(md5.finalize()),
        })
    }
}
