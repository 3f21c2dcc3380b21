//! One import task: an object of another store, copied into the destination bucket unless the
//! destination already holds it as the store listed it (the incremental rule of core's
//! `import` module, checked with one HEAD). The object is read from the store as a stream; up
//! to one part it is one PutObject, larger it is a multipart upload of fixed-size parts with a
//! bounded number uploading at once, so memory per task is about
//! `part_bytes * (part_concurrency + 1)` whatever the object's size. Every request carries its
//! Content-MD5, and the MD5 of the whole object is computed as it streams (the import manifest
//! records it). A transfer cut short is started again with backoff up to the task's attempts;
//! a stopped job aborts the object in flight, and objects already written stay.

use super::export::{with_retries, Failure};
use super::parts::{PartLoop, PartProgress, PartSink};
use super::{RangeContext, TaskResult, TaskRunner};
use crate::error::S3Failure;
use crate::stores::{self, End, ExportSettings, OpenStore};
use crate::App;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use batchops_core::backoff::{ErrorClass, RetryPolicy};
use batchops_core::chunk::ChunkTask;
use batchops_core::encoding::encode_key;
use batchops_core::import::{
    copy_metadata, decide, identity_to_record, imported_result_message, last_modified_label,
    unchanged_result_message, ImportDecision, ImportSpec, RecordedCopy, SourceIdentity,
};
use batchops_core::manifest::ObjectRef;
use batchops_core::report::{TaskOutcome, TaskStatus};
use futures::future::BoxFuture;
use futures::StreamExt;
use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::{Attribute, GetOptions, ObjectStore};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;
use tokio::sync::OnceCell;

pub struct Import<'a> {
    app: &'a App,
    spec: &'a ImportSpec,
    /// The destination bucket's client.
    s3: &'a aws_sdk_s3::Client,
    settings: &'a ExportSettings,
    retry: RetryPolicy,
    stop: &'a AtomicBool,
    /// No part starts after this: the object in flight is aborted and the task is run again
    /// by the next delivery of the range.
    stop_starting_at: SystemTime,
    /// The source store, opened (its secret read) once per range, by the first task.
    store: OnceCell<Result<OpenStore, String>>,
}

pub fn runner<'a>(spec: &'a ImportSpec, range: RangeContext<'a>) -> Import<'a> {
    Import {
        app: range.app,
        spec,
        s3: range.s3,
        settings: &range.app.config.export,
        retry: range.app.config.retry,
        stop: range.stop,
        stop_starting_at: range.stop_starting_at,
        store: OnceCell::new(),
    }
}

/// What one copy wrote.
struct Written {
    size: u64,
    md5: String,
    etag: Option<String>,
    version: Option<String>,
}

fn content_md5(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes))
}

impl TaskRunner for Import<'_> {
    fn run<'t>(&'t self, _index: u64, task: &'t ChunkTask) -> BoxFuture<'t, TaskResult> {
        Box::pin(async move {
            let ChunkTask::Import {
                object,
                etag,
                size,
                last_modified,
                ..
            } = task
            else {
                return match task {
                    ChunkTask::Malformed(_) | ChunkTask::Refused { .. } => super::settle(task),
                    _ => TaskResult::Done(task.failed_outcome(
                        400,
                        "InvalidRequest",
                        "an import job runs import tasks only".to_string(),
                    )),
                };
            };
            let listed = SourceIdentity {
                size: *size,
                etag: etag.clone(),
                last_modified: last_modified.clone(),
                version: object.version_id.clone(),
            };
            let destination_key = match self.spec.destination_key(&object.key) {
                Ok(key) => key,
                Err(message) => {
                    return TaskResult::Done(task.failed_outcome(400, "UnsupportedKey", message))
                }
            };
            let tried = with_retries(&self.retry, self.stop, self.stop_starting_at, task, || {
                self.attempt(object, &listed, &destination_key)
            })
            .await;
            tried.map_or_else(|ended| ended, TaskResult::Done)
        })
    }
}

impl Import<'_> {
    fn should_stop(&self) -> Option<Failure> {
        Failure::stopping(self.stop, self.stop_starting_at)
    }

    async fn source(&self) -> Result<&OpenStore, Failure> {
        let store = self
            .store
            .get_or_init(|| async {
                stores::open(self.app, &self.spec.from)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        store.as_ref().map_err(|message| Failure::Error {
            class: ErrorClass::Permanent,
            status: 403,
            code: "SourceStoreUnavailable".to_string(),
            message: message.clone(),
        })
    }

    /// What the destination holds at `key` (None: nothing).
    async fn recorded(&self, key: &str) -> Result<Option<RecordedCopy>, Failure> {
        match self
            .s3
            .head_object()
            .bucket(&self.spec.to_bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(RecordedCopy::from_metadata(
                head.content_length().unwrap_or(0).max(0) as u64,
                head.metadata()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ))),
            Err(err) => {
                let failure = S3Failure::from_sdk(&err);
                if failure.status == Some(404) {
                    Ok(None)
                } else {
                    Err(Failure::from_s3(failure))
                }
            }
        }
    }

    /// One attempt at one object: skip it if unchanged, else copy it.
    async fn attempt(
        &self,
        object: &ObjectRef,
        listed: &SourceIdentity,
        destination_key: &str,
    ) -> Result<TaskOutcome, Failure> {
        let outcome = |message: String, bytes: u64, dest_version: Option<String>| TaskOutcome {
            bucket: object.bucket.clone(),
            key_encoded: encode_key(&object.key),
            version_id: object.version_id.clone(),
            status: TaskStatus::Succeeded,
            http_status: 200,
            error_code: None,
            message,
            bytes,
            dest_version,
        };
        let recorded = self.recorded(destination_key).await?;
        match decide(listed, recorded.as_ref()) {
            ImportDecision::Unchanged => {
                return Ok(outcome(
                    unchanged_result_message(listed.size, listed.etag.as_deref(), destination_key),
                    0,
                    None,
                ))
            }
            ImportDecision::Copy(reason) => {
                tracing::debug!(key = %object.key, reason, "importing");
            }
        }
        if let Some(stop) = self.should_stop() {
            return Err(stop);
        }
        let written = self.copy(object, listed, destination_key).await?;
        Ok(outcome(
            imported_result_message(
                written.size,
                &written.md5,
                written.etag.as_deref(),
                destination_key,
            ),
            written.size,
            written.version,
        ))
    }

    /// Streams the object from the store into the destination bucket.
    async fn copy(
        &self,
        object: &ObjectRef,
        listed: &SourceIdentity,
        destination_key: &str,
    ) -> Result<Written, Failure> {
        let store = self.source().await?;
        let from = format!("`{}` in {}", object.key, store.location.url());
        let path = Path::parse(&object.key).map_err(|e| Failure::Error {
            class: ErrorClass::Permanent,
            status: 400,
            code: "UnsupportedKey".to_string(),
            message: e.to_string(),
        })?;
        let got = store
            .store
            .get_opts(
                &path,
                GetOptions {
                    version: object.version_id.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| Failure::from_store(e, End::Source, &from))?;
        let read = SourceIdentity {
            size: got.meta.size,
            etag: got.meta.e_tag.clone(),
            last_modified: last_modified_label(got.meta.last_modified.timestamp()),
            version: got.meta.version.clone(),
        };
        let identity = identity_to_record(listed, &read);
        let metadata: HashMap<String, String> = copy_metadata(&identity)
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect();
        let content_type = got
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.to_string());
        let size = read.size;
        let mut body = got.into_stream();
        let part_bytes = self.settings.part_bytes as usize;
        let mut md5 = Md5::new();
        let mut read_bytes: u64 = 0;
        let cut = |read: u64, detail: String| Failure::Error {
            class: ErrorClass::Transient,
            status: 500,
            code: "SourceReadCut".to_string(),
            message: format!("reading {from}: {detail} after {read} of {size} bytes"),
        };
        let bucket = &self.spec.to_bucket;
        if size <= part_bytes as u64 {
            // One part or less: one PUT.
            let mut buffer = Vec::with_capacity(size as usize);
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| cut(read_bytes, e.to_string()))?;
                read_bytes += chunk.len() as u64;
                if read_bytes > size {
                    return Err(cut(read_bytes, "more bytes than its length".to_string()));
                }
                buffer.extend_from_slice(&chunk);
            }
            if read_bytes != size {
                return Err(cut(read_bytes, "body ended early".to_string()));
            }
            if let Some(stop) = self.should_stop() {
                return Err(stop);
            }
            md5.update(&buffer);
            let digest = md5.finalize();
            let put = self
                .s3
                .put_object()
                .bucket(bucket)
                .key(destination_key)
                .set_metadata(Some(metadata))
                .set_content_type(content_type)
                .content_md5(base64::engine::general_purpose::STANDARD.encode(digest))
                .body(ByteStream::from(buffer))
                .send()
                .await
                .map_err(|e| Failure::from_s3(S3Failure::from_sdk(&e)))?;
            return Ok(Written {
                size,
                md5: hex::encode(digest),
                etag: identity.etag,
                version: put.version_id().map(str::to_string),
            });
        }
        let created = self
            .s3
            .create_multipart_upload()
            .bucket(bucket)
            .key(destination_key)
            .set_metadata(Some(metadata))
            .set_content_type(content_type)
            .send()
            .await
            .map_err(|e| Failure::from_s3(S3Failure::from_sdk(&e)))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let parts = PartLoop {
            part_bytes,
            concurrency: self.settings.part_concurrency,
            size,
            stop: self.stop,
            stop_starting_at: self.stop_starting_at,
            from: &from,
        };
        let sink = BucketParts {
            import: self,
            key: destination_key,
            upload_id: &upload_id,
        };
        let streamed = parts.run(body, PartProgress::default(), &sink).await;
        let completed = match streamed {
            Ok(done) => self
                .s3
                .complete_multipart_upload()
                .bucket(bucket)
                .key(destination_key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(
                            done.parts
                                .iter()
                                .enumerate()
                                .map(|(index, etag)| {
                                    CompletedPart::builder()
                                        .part_number(index as i32 + 1)
                                        .e_tag(etag)
                                        .build()
                                })
                                .collect(),
                        ))
                        .build(),
                )
                .send()
                .await
                .map(|out| (out, done))
                .map_err(|e| Failure::from_s3(S3Failure::from_sdk(&e))),
            Err(failure) => Err(failure),
        };
        match completed {
            Ok((out, done)) => Ok(Written {
                size,
                md5: done.md5.hex(),
                etag: identity.etag,
                version: out.version_id().map(str::to_string),
            }),
            Err(failure) => {
                // Nothing half-written stays behind.
                if let Err(err) = self
                    .s3
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(destination_key)
                    .upload_id(&upload_id)
                    .send()
                    .await
                {
                    tracing::warn!(key = destination_key, error = %S3Failure::from_sdk(&err).message, "could not abort a multipart upload");
                }
                Err(failure)
            }
        }
    }
}

/// The parts of one multipart upload into the destination bucket, each with its Content-MD5.
struct BucketParts<'i, 'a> {
    import: &'i Import<'a>,
    key: &'i str,
    upload_id: &'i str,
}

impl PartSink for BucketParts<'_, '_> {
    fn put_part(&self, index: usize, bytes: Vec<u8>) -> BoxFuture<'_, Result<String, Failure>> {
        Box::pin(async move {
            let md5 = content_md5(&bytes);
            let part = self
                .import
                .s3
                .upload_part()
                .bucket(&self.import.spec.to_bucket)
                .key(self.key)
                .upload_id(self.upload_id)
                .part_number(index as i32 + 1)
                .content_md5(md5)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| Failure::from_s3(S3Failure::from_sdk(&e)))?;
            Ok(part.e_tag().unwrap_or_default().to_string())
        })
    }
}
