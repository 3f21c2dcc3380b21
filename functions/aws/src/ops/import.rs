//! One import task: an object of another store, copied into the destination bucket unless the
//! destination already holds it as the store listed it (the incremental rule of core's
//! `import` module, checked with one HEAD). The object is read from the store as a stream; up
//! to one part it is one PutObject, larger it is a multipart upload of fixed-size parts with a
//! bounded number uploading at once, so memory per task is about
//! `part_bytes * (part_concurrency + 1)` whatever the object's size. Every request carries its
//! Content-MD5, and the MD5 of the whole object is computed as it streams (the import manifest
//! records it). The upload's ID and the parts it holds are kept in the table, as exports keep
//! theirs ([`super::parts::StreamedUploads`]): an object that outlasts one invocation, or whose
//! transfer was cut short, continues from its first missing part, reading the source pinned by
//! version and ETag from there (a ranged GET); a source changed since is read anew. A transfer
//! cut short is tried again with backoff up to the task's attempts. A stopped job, or a task
//! that fails, aborts the object in flight and forgets its upload; objects already written stay.

use super::export::Failure;
use super::parts::{read_whole, StreamedUploads, TransferRange, UploadAbort, UploadTarget};
use super::{RangeContext, TaskResult, TaskRunner};
use crate::error::S3Failure;
use crate::store::KeptUpload;
use crate::stores::{self, End, OpenStore};
use crate::App;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use batchops_core::backoff::ErrorClass;
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
use object_store::{Attribute, GetOptions, GetRange, ObjectStore};
use std::collections::HashMap;
use tokio::sync::OnceCell;

pub struct Import<'a> {
    app: &'a App,
    spec: &'a ImportSpec,
    /// The destination bucket's client.
    s3: &'a aws_sdk_s3::Client,
    transfer: TransferRange<'a>,
    /// The source store, opened (its secret read) once per range, by the first task.
    store: OnceCell<Result<OpenStore, String>>,
}

pub fn runner<'a>(spec: &'a ImportSpec, range: RangeContext<'a>) -> Import<'a> {
    Import {
        app: range.app,
        spec,
        s3: range.s3,
        transfer: TransferRange::new(&range),
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
    fn run<'t>(&'t self, index: u64, task: &'t ChunkTask) -> BoxFuture<'t, TaskResult> {
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
            let uploads = self.transfer.uploads(index, self);
            let tried = uploads
                .attempts(task, || {
                    self.attempt(&uploads, object, &listed, &destination_key)
                })
                .await;
            tried.map_or_else(|ended| ended, TaskResult::Done)
        })
    }
}

impl Import<'_> {
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
        uploads: &StreamedUploads<'_>,
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
        if let Some(stop) = self.transfer.should_stop() {
            return Err(stop);
        }
        let written = self.copy(uploads, object, listed, destination_key).await?;
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

    /// Streams the object from the store into the destination bucket, from the first part
    /// its kept upload lacks.
    async fn copy(
        &self,
        uploads: &StreamedUploads<'_>,
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
        let part_bytes = self.transfer.settings.part_bytes;
        // An object listed as one part has no upload to continue: no table read for it.
        let looked = listed.size > part_bytes;
        if looked {
            if let Some(record) = uploads.resumable(destination_key).await? {
                let resumed = self
                    .resume(uploads, store, &path, &from, listed, &record)
                    .await?;
                if let Some(written) = resumed {
                    return Ok(written);
                }
            }
        }
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
            version: got.meta.version.clone().or(object.version_id.clone()),
        };
        let identity = identity_to_record(listed, &read);
        let target = BucketTarget {
            import: self,
            key: destination_key,
            metadata: copy_metadata(&identity)
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
            content_type: got
                .attributes
                .get(&Attribute::ContentType)
                .map(|v| v.to_string()),
        };
        let size = read.size;
        let body = got.into_stream();
        if size > part_bytes {
            if !looked {
                // Larger than listed: an upload an earlier delivery kept is not continued.
                uploads.discard().await;
            }
            // Pinned to what this GET read, for the ranged GETs of later deliveries.
            let record = uploads
                .start(&target, destination_key, size, read.version, read.etag)
                .await?;
            let (done, version) = uploads.finish(&target, &record, &from, size, body).await?;
            return Ok(Written {
                size,
                md5: done.md5.hex(),
                etag: identity.etag,
                version,
            });
        }
        // One part or less: one PUT.
        let buffer = read_whole(body, size, &from).await?;
        if let Some(stop) = self.transfer.should_stop() {
            return Err(stop);
        }
        let digest = Md5::digest(&buffer);
        let put = self
            .s3
            .put_object()
            .bucket(&self.spec.to_bucket)
            .key(destination_key)
            .set_metadata(Some(target.metadata))
            .set_content_type(target.content_type)
            .content_md5(base64::engine::general_purpose::STANDARD.encode(digest))
            .body(ByteStream::from(buffer))
            .send()
            .await
            .map_err(|e| Failure::from_s3(S3Failure::from_sdk(&e)))?;
        Ok(Written {
            size,
            md5: hex::encode(digest),
            etag: identity.etag,
            version: put.version_id().map(str::to_string),
        })
    }

    /// Continues the upload an earlier invocation kept, reading the source from its first
    /// missing part on, pinned to the version and ETag the upload was started from. None: the
    /// source changed since (the kept upload is aborted and forgotten; the object is read anew).
    async fn resume(
        &self,
        uploads: &StreamedUploads<'_>,
        store: &OpenStore,
        path: &Path,
        from: &str,
        listed: &SourceIdentity,
        record: &KeptUpload,
    ) -> Result<Option<Written>, Failure> {
        let Some(streamed) = &record.streamed else {
            return Ok(None);
        };
        let offset = streamed.progress.offset();
        let (length, body) = if offset == streamed.size {
            // Every part is there; only the completion is missing.
            (0, futures::stream::empty().boxed())
        } else {
            let got = store
                .store
                .get_opts(
                    path,
                    GetOptions {
                        if_match: streamed.source_etag.clone(),
                        version: streamed.source_version.clone(),
                        range: Some(GetRange::Offset(offset)),
                        ..Default::default()
                    },
                )
                .await;
            match got {
                Ok(got) => (got.range.end - got.range.start, got.into_stream()),
                Err(object_store::Error::Precondition { .. }) => {
                    tracing::info!(key = %record.target_key, upload_id = %record.upload_id, "the source changed since its kept upload began; importing it anew");
                    uploads.discard().await;
                    return Ok(None);
                }
                Err(err) => return Err(Failure::from_store(err, End::Source, from)),
            }
        };
        tracing::info!(key = %record.target_key, upload_id = %record.upload_id, parts_done = streamed.progress.parts.len(), offset, "continuing a kept import upload");
        // Its metadata and content type were set when the upload started.
        let target = BucketTarget {
            import: self,
            key: &record.target_key,
            metadata: HashMap::new(),
            content_type: None,
        };
        let (done, version) = uploads.finish(&target, record, from, length, body).await?;
        let pinned = SourceIdentity {
            size: streamed.size,
            etag: streamed.source_etag.clone(),
            last_modified: None,
            version: streamed.source_version.clone(),
        };
        Ok(Some(Written {
            size: streamed.size,
            md5: done.md5.hex(),
            etag: identity_to_record(listed, &pinned).etag,
            version,
        }))
    }
}

impl UploadAbort for Import<'_> {
    fn abort<'s>(&'s self, record: &'s KeptUpload) -> BoxFuture<'s, Result<(), String>> {
        Box::pin(async move {
            let aborted = self
                .s3
                .abort_multipart_upload()
                .bucket(&self.spec.to_bucket)
                .key(&record.target_key)
                .upload_id(&record.upload_id)
                .send()
                .await;
            match aborted {
                Ok(_) => Ok(()),
                Err(err) if err.code() == Some("NoSuchUpload") => Ok(()),
                Err(err) => Err(crate::error::describe_sdk(&err)),
            }
        })
    }
}

/// One object's multipart upload into the destination bucket, each part with its Content-MD5.
struct BucketTarget<'i, 'a> {
    import: &'i Import<'a>,
    key: &'i str,
    /// What the object carries, set when the upload starts.
    metadata: HashMap<String, String>,
    content_type: Option<String>,
}

impl UploadTarget for BucketTarget<'_, '_> {
    fn create(&self) -> BoxFuture<'_, Result<String, Failure>> {
        Box::pin(async move {
            let created = self
                .import
                .s3
                .create_multipart_upload()
                .bucket(&self.import.spec.to_bucket)
                .key(self.key)
                .set_metadata(Some(self.metadata.clone()))
                .set_content_type(self.content_type.clone())
                .send()
                .await
                .map_err(|e| Failure::from_s3(S3Failure::from_sdk(&e)))?;
            created
                .upload_id()
                .map(str::to_string)
                .ok_or_else(|| Failure::Error {
                    class: ErrorClass::Transient,
                    status: 500,
                    code: "InternalError".to_string(),
                    message: "CreateMultipartUpload returned no UploadId".to_string(),
                })
        })
    }

    fn put_part<'s>(
        &'s self,
        upload_id: &'s str,
        index: usize,
        bytes: Vec<u8>,
    ) -> BoxFuture<'s, Result<String, Failure>> {
        Box::pin(async move {
            let md5 = content_md5(&bytes);
            let part = self
                .import
                .s3
                .upload_part()
                .bucket(&self.import.spec.to_bucket)
                .key(self.key)
                .upload_id(upload_id)
                .part_number(index as i32 + 1)
                .content_md5(md5)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| Failure::from_s3(S3Failure::from_sdk(&e)))?;
            Ok(part.e_tag().unwrap_or_default().to_string())
        })
    }

    fn complete<'s>(
        &'s self,
        upload_id: &'s str,
        parts: &'s [String],
    ) -> BoxFuture<'s, Result<Option<String>, Failure>> {
        Box::pin(async move {
            let parts = parts
                .iter()
                .enumerate()
                .map(|(index, etag)| {
                    CompletedPart::builder()
                        .part_number(index as i32 + 1)
                        .e_tag(etag)
                        .build()
                })
                .collect();
            let out = self
                .import
                .s3
                .complete_multipart_upload()
                .bucket(&self.import.spec.to_bucket)
                .key(self.key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| Failure::from_s3(S3Failure::from_sdk(&e)))?;
            Ok(out.version_id().map(str::to_string))
        })
    }
}
