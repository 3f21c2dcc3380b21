//! One copy task: CopyObject, or a multipart UploadPartCopy with parts in parallel above the
//! threshold. A source whose size the manifest carries is copied without a HEAD (one round trip
//! per object); one of unknown size is sent to CopyObject first and HEADed (then copied in parts)
//! only when S3 answers that it is too large for CopyObject. Throttling and 5xx are retried with
//! backoff and jitter; what remains becomes a failed task carrying S3's error code and HTTP status.

use super::{failed, head_failure, with_retry, RangeContext, TaskResult, TaskRunner};
use crate::error::S3Failure;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, MetadataDirective as SdkDirective,
    ObjectCannedAcl, ObjectLockLegalHoldStatus, ObjectLockMode, RequestPayer, ServerSideEncryption,
    StorageClass, TaggingDirective,
};
use aws_sdk_s3::Client;
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use batchops_core::backoff::RetryPolicy;
use batchops_core::chunk::ChunkTask;
use batchops_core::copy_options::ObjectAcl;
use batchops_core::encoding::{copy_source, encode_key, encode_tag_set};
use batchops_core::manifest::ObjectRef;
use batchops_core::report::{TaskOutcome, TaskStatus};
use batchops_core::request::{CopySpec, MetadataDirective, ReplacementMetadata};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use std::sync::atomic::{AtomicBool, Ordering};

/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;

/// The largest source CopyObject copies (5 GiB); larger ones need UploadPartCopy.
const COPY_OBJECT_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// What a copy knows of its source's size before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceSize {
    /// From the manifest (an inventory, a listing, a backup's chunk): no HEAD unless the copy is
    /// multipart or the job's copy-source conditions need one. The bytes copied are this size.
    Known(u64),
    /// Not known (a CSV line, a restore): CopyObject first, HEAD (and a multipart copy) only
    /// when S3 answers that the source is too large for CopyObject. The bytes copied are left
    /// out (0), as S3 Batch Operations does.
    Unknown,
    /// The caller needs the size counted (a catalog row): HEAD first.
    Head,
}

/// S3's answer to a CopyObject whose source is over 5 GiB: `InvalidRequest`, "The specified
/// copy source is larger than the maximum allowable size for a copy source: 5368709120".
pub fn too_large_to_copy(failure: &S3Failure) -> bool {
    failure.status == Some(400)
        && failure.code.as_deref() == Some("InvalidRequest")
        && failure
            .message
            .contains("copy source is larger than the maximum allowable size")
}

#[derive(Debug, Clone)]
pub struct CopySettings {
    pub multipart_threshold: u64,
    pub part_size: u64,
    pub part_concurrency: usize,
    pub retry: RetryPolicy,
}

enum CopyError {
    Failed(S3Failure),
    Stopped,
    /// No time left to start another part: the upload is kept for the next invocation.
    OutOfTime,
}

/// Multipart uploads kept across invocations, one per task of a chunk, in the table: a copy too
/// large for one invocation continues in the next from the parts S3 already holds, and the
/// finalizer aborts whatever a job leaves unfinished.
#[derive(Clone, Copy)]
pub struct KeptUploads<'a> {
    pub store: &'a crate::store::Store,
    pub job_id: &'a str,
    pub seq: u64,
    pub task: u64,
}

impl From<S3Failure> for CopyError {
    fn from(f: S3Failure) -> Self {
        CopyError::Failed(f)
    }
}

pub struct Copier<'a> {
    /// For the target bucket (copies, multipart uploads, delete markers).
    pub s3: &'a Client,
    /// For HEAD of the source objects: each source bucket's own client (its Region).
    pub sources: &'a crate::clients::JobClients,
    pub spec: &'a CopySpec,
    pub settings: &'a CopySettings,
    /// Set when the job is cancelled or failing: running multipart copies abort.
    pub stop: &'a AtomicBool,
    /// No part of a multipart copy starts after this: the copy is suspended (with `uploads`).
    pub part_deadline: Option<std::time::SystemTime>,
    /// Where this task's multipart upload is kept between invocations (the worker's tasks).
    pub uploads: Option<KeptUploads<'a>>,
}

/// A part for CompleteMultipartUpload from what S3 said of it (a ListParts `Part` or an
/// UploadPartCopy `CopyPartResult`: the same accessors): its ETag and any checksums.
macro_rules! completed_part {
    ($number:expr, $from:expr) => {
        CompletedPart::builder()
            .set_part_number($number)
            .set_e_tag($from.e_tag().map(str::to_string))
            .set_checksum_crc32($from.checksum_crc32().map(str::to_string))
            .set_checksum_crc32_c($from.checksum_crc32_c().map(str::to_string))
            .set_checksum_crc64_nvme($from.checksum_crc64_nvme().map(str::to_string))
            .set_checksum_sha1($from.checksum_sha1().map(str::to_string))
            .set_checksum_sha256($from.checksum_sha256().map(str::to_string))
            .build()
    };
}

/// What a copy sets on the object it writes besides metadata, storage class and tags, on a
/// CopyObject or CreateMultipartUpload request (the same setters): encryption, ACL, Object Lock,
/// website redirect and the requester-pays acknowledgement.
macro_rules! with_write_options {
    ($request:expr, $spec:expr) => {{
        let spec: &CopySpec = $spec;
        let options = &spec.options;
        let mut request = $request
            .set_website_redirect_location(options.redirect_location.clone())
            .set_request_payer(request_payer(spec))
            .set_object_lock_legal_hold_status(
                options
                    .object_lock
                    .legal_hold
                    .as_deref()
                    .map(ObjectLockLegalHoldStatus::from),
            )
            .set_object_lock_mode(
                options
                    .object_lock
                    .mode
                    .as_deref()
                    .map(ObjectLockMode::from),
            )
            .set_object_lock_retain_until_date(
                options
                    .object_lock
                    .retain_until
                    .as_deref()
                    .and_then(parse_expires),
            );
        request = match spec.new_metadata.sse_algorithm.as_deref() {
            Some("AES256") => request.server_side_encryption(ServerSideEncryption::Aes256),
            Some("KMS") => request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(options.kms_key_id.clone())
                .set_bucket_key_enabled(options.bucket_key_enabled),
            _ => request,
        };
        match &options.acl {
            Some(ObjectAcl::Canned(canned)) => request.acl(ObjectCannedAcl::from(canned.as_str())),
            Some(ObjectAcl::Grants(grants)) => request
                .set_grant_full_control(grants.full_control.clone())
                .set_grant_read(grants.read.clone())
                .set_grant_read_acp(grants.read_acp.clone())
                .set_grant_write_acp(grants.write_acp.clone()),
            None => request,
        }
    }};
}

/// `x-amz-request-payer` for every request of a copy whose job says RequesterPays.
fn request_payer(spec: &CopySpec) -> Option<RequestPayer> {
    spec.options
        .requester_pays
        .then_some(RequestPayer::Requester)
}

/// The MD5 of an empty body. A copy carrying Object Lock settings sends it as Content-MD5: S3
/// asks writes with Object Lock parameters for a digest of their body (moto 5.2 refuses copies
/// without one), and a copy's body is empty.
const EMPTY_BODY_MD5: &str = "1B2M2Y8AsgTpgAmY7PHvCg==";

/// What every part of one multipart copy shares.
struct PartCopy<'p> {
    target_key: &'p str,
    /// The URL-encoded copy source, pinned to one version.
    source: &'p str,
    if_match: Option<&'p str>,
    size: u64,
    part_size: u64,
}

/// One ListParts page: the parts S3 holds, and where the next page starts.
struct PartsPage {
    parts: Vec<CompletedPart>,
    next_marker: Option<String>,
}

/// The text of the first `<name>...</name>` element in `xml`.
fn xml_element<'x>(xml: &'x str, name: &str) -> Option<&'x str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

/// Reads a ListParts answer body: each `<Part>`'s number, ETag and checksums.
fn parse_list_parts(xml: &str) -> PartsPage {
    let mut parts = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<Part>") {
        let Some(len) = rest[start..].find("</Part>") else {
            break;
        };
        let part = &rest[start..start + len];
        let text = |name: &str| {
            xml_element(part, name).map(|v| v.replace("&quot;", "\"").replace("&amp;", "&"))
        };
        parts.push(
            CompletedPart::builder()
                .set_part_number(text("PartNumber").and_then(|n| n.parse().ok()))
                .set_e_tag(text("ETag"))
                .set_checksum_crc32(text("ChecksumCRC32"))
                .set_checksum_crc32_c(text("ChecksumCRC32C"))
                .set_checksum_crc64_nvme(text("ChecksumCRC64NVME"))
                .set_checksum_sha1(text("ChecksumSHA1"))
                .set_checksum_sha256(text("ChecksumSHA256"))
                .build(),
        );
        rest = &rest[start + len..];
    }
    let truncated = xml_element(xml, "IsTruncated") == Some("true");
    PartsPage {
        parts,
        next_marker: xml_element(xml, "NextPartNumberMarker")
            .filter(|_| truncated)
            .map(str::to_string),
    }
}

fn parse_expires(value: &str) -> Option<DateTime> {
    DateTime::from_str(value, Format::DateTime).ok()
}

/// The copy of a job's range: its multipart uploads are kept between invocations in the table.
pub fn runner<'a>(spec: &'a CopySpec, range: RangeContext<'a>) -> Copier<'a> {
    Copier {
        s3: range.s3,
        sources: range.sources,
        spec,
        settings: &range.app.copy,
        stop: range.stop,
        // A multipart copy too large for this invocation keeps its upload for the next one.
        part_deadline: Some(range.stop_starting_at),
        uploads: Some(KeptUploads {
            store: &range.app.store,
            job_id: range.job_id,
            seq: range.seq,
            task: 0,
        }),
    }
}

impl TaskRunner for Copier<'_> {
    fn run<'t>(&'t self, index: u64, task: &'t ChunkTask) -> BoxFuture<'t, TaskResult> {
        Box::pin(async move { self.for_task(index).run_task(task).await })
    }
}

impl<'a> Copier<'a> {
    /// This copier for task `index` of the chunk its kept uploads belong to.
    pub fn for_task(&self, index: u64) -> Copier<'a> {
        Copier {
            s3: self.s3,
            sources: self.sources,
            spec: self.spec,
            settings: self.settings,
            stop: self.stop,
            part_deadline: self.part_deadline,
            uploads: self.uploads.map(|kept| KeptUploads {
                task: index,
                ..kept
            }),
        }
    }

    async fn run_task(&self, task: &ChunkTask) -> TaskResult {
        match task {
            ChunkTask::Malformed(_) | ChunkTask::Refused { .. } => super::settle(task),
            ChunkTask::Object {
                object, etag, size, ..
            } => {
                // Pinned tasks carry the ETag seen at planning: the copy must find that object.
                let if_match = etag
                    .as_deref()
                    .map(|e| format!("\"{}\"", e.trim_matches('"')));
                let size = size.map_or(SourceSize::Unknown, SourceSize::Known);
                self.copy(
                    object,
                    if_match.as_deref(),
                    &self.spec.target_key(&object.key),
                    size,
                )
                .await
            }
            ChunkTask::Restore {
                object, target_key, ..
            } => {
                self.copy(
                    object,
                    None,
                    &self.spec.target_key(target_key),
                    SourceSize::Unknown,
                )
                .await
            }
            ChunkTask::Delete { object, .. } => self.delete_marker(object).await,
            ChunkTask::Import { .. } => TaskResult::Done(task.failed_outcome(
                400,
                "InvalidRequest",
                "this task imports from another store; only an import job runs it".to_string(),
            )),
        }
    }

    /// Puts a delete marker on `object` (the data stays as an older version).
    pub async fn delete_marker(&self, object: &ObjectRef) -> TaskResult {
        let result = with_retry(&self.settings.retry, || async {
            self.s3
                .delete_object()
                .bucket(&object.bucket)
                .key(&object.key)
                .send()
                .await
                .map_err(|e| S3Failure::from_sdk(&e))
        })
        .await;
        TaskResult::Done(match result {
            Ok(out) => TaskOutcome {
                bucket: object.bucket.clone(),
                key_encoded: encode_key(&object.key),
                version_id: None,
                status: TaskStatus::Succeeded,
                http_status: 204,
                error_code: None,
                message: "Delete marker placed".to_string(),
                bytes: 0,
                dest_version: out.version_id().map(str::to_string),
            },
            Err(failure) => failed(object, failure),
        })
    }

    /// Copies one object to `target_key`; `if_match` pins the source ETag when it is known.
    pub async fn copy(
        &self,
        object: &ObjectRef,
        if_match: Option<&str>,
        target_key: &str,
        size: SourceSize,
    ) -> TaskResult {
        let options = &self.spec.options;
        let threshold = self.settings.multipart_threshold;
        // Copy-source conditions are checked on the HEAD before any multipart upload starts
        // (and S3-compatible stores such as moto ignore them on CopyObject).
        let head_first = options.modified_since.is_some()
            || options.unmodified_since.is_some()
            || match size {
                SourceSize::Known(bytes) => bytes > threshold,
                // Below CopyObject's own limit the threshold decides, which needs the size.
                SourceSize::Unknown => threshold < COPY_OBJECT_LIMIT,
                SourceSize::Head => true,
            };
        if !head_first {
            let bytes = match size {
                SourceSize::Known(bytes) => bytes,
                _ => 0,
            };
            match self.single_copy(object, if_match, target_key).await {
                Err(CopyError::Failed(failure)) if too_large_to_copy(&failure) => {
                    tracing::debug!(key = %object.key, "source over CopyObject's limit: HEAD, then a multipart copy");
                }
                result => return self.settled(object, bytes, result),
            }
        }
        let head = match self.head(object).await {
            Ok(head) => head,
            Err(failure) => return TaskResult::Done(failed(object, failure)),
        };
        let size = head.content_length().unwrap_or(0).max(0) as u64;
        // S3 checks the copy-source conditions on every CopyObject and UploadPartCopy; checked
        // here too, a copy that cannot hold starts no multipart upload.
        if let Some(failure) = self.unmet_source_conditions(&head, if_match) {
            return TaskResult::Done(failed(object, failure));
        }
        let result = if size > threshold {
            self.multipart_copy(object, &head, size, if_match, target_key)
                .await
        } else {
            self.single_copy(object, if_match, target_key).await
        };
        self.settled(object, size, result)
    }

    /// The task's result from its copy's: `bytes` counted when it succeeded.
    fn settled(
        &self,
        object: &ObjectRef,
        bytes: u64,
        result: Result<Option<String>, CopyError>,
    ) -> TaskResult {
        match result {
            Ok(dest_version) => TaskResult::Done(TaskOutcome {
                bucket: object.bucket.clone(),
                key_encoded: encode_key(&object.key),
                version_id: object.version_id.clone(),
                status: TaskStatus::Succeeded,
                http_status: 200,
                error_code: None,
                message: "Successful".to_string(),
                bytes,
                dest_version,
            }),
            Err(CopyError::Failed(failure)) => {
                TaskResult::Done(failed(object, self.explain(failure)))
            }
            Err(CopyError::Stopped) => TaskResult::Abandoned,
            Err(CopyError::OutOfTime) if self.uploads.is_some() => TaskResult::Suspended,
            Err(CopyError::OutOfTime) => TaskResult::Done(failed(
                object,
                S3Failure {
                    status: Some(500),
                    code: Some("InternalError".into()),
                    message: "ran out of time inside a multipart copy".into(),
                },
            )),
        }
    }

    /// S3's 412 when the source (as HEAD saw it) fails the job's copy-source conditions.
    fn unmet_source_conditions(
        &self,
        head: &HeadObjectOutput,
        if_match: Option<&str>,
    ) -> Option<S3Failure> {
        let options = &self.spec.options;
        if options.modified_since.is_none() && options.unmodified_since.is_none() {
            return None;
        }
        let last_modified = head.last_modified().map(|t| t.secs())?;
        let if_match_holds = if_match.is_some_and(|wanted| {
            head.e_tag()
                .is_some_and(|etag| etag.trim_matches('"') == wanted.trim_matches('"'))
        });
        (!options.source_conditions_hold(last_modified, if_match_holds)).then(|| S3Failure {
            status: Some(412),
            code: Some("PreconditionFailed".to_string()),
            message: "At least one of the pre-conditions you specified did not hold".to_string(),
        })
    }

    /// S3's answer, with what the job asked for when that is why it was refused.
    fn explain(&self, mut failure: S3Failure) -> S3Failure {
        if self.spec.options.object_lock.is_set()
            && failure.message.contains("ObjectLockConfiguration")
        {
            failure.message = format!(
                "{}: the target bucket {} does not have Object Lock enabled, which the job's ObjectLock settings need",
                failure.message, self.spec.target_bucket
            );
        }
        failure
    }

    async fn head(&self, object: &ObjectRef) -> Result<HeadObjectOutput, S3Failure> {
        let source_s3 = self.sources.s3(&object.bucket).await;
        with_retry(&self.settings.retry, || async {
            source_s3
                .head_object()
                .bucket(&object.bucket)
                .key(&object.key)
                .set_version_id(object.version_id.clone())
                .set_request_payer(request_payer(self.spec))
                .send()
                .await
                .map_err(|e| head_failure(object, S3Failure::from_sdk(&e)))
        })
        .await
    }

    async fn single_copy(
        &self,
        object: &ObjectRef,
        if_match: Option<&str>,
        target_key: &str,
    ) -> Result<Option<String>, CopyError> {
        let spec = self.spec;
        let source = copy_source(&object.bucket, &object.key, object.version_id.as_deref());
        with_retry(&self.settings.retry, || async {
            let mut request = self
                .s3
                .copy_object()
                .bucket(&spec.target_bucket)
                .key(target_key)
                .copy_source(&source)
                .set_copy_source_if_match(if_match.map(str::to_string))
                .set_copy_source_if_modified_since(
                    spec.options.modified_since.map(DateTime::from_secs),
                )
                .set_copy_source_if_unmodified_since(
                    spec.options.unmodified_since.map(DateTime::from_secs),
                )
                .set_storage_class(spec.storage_class.as_deref().map(StorageClass::from))
                .set_checksum_algorithm(
                    spec.checksum_algorithm
                        .as_deref()
                        .map(ChecksumAlgorithm::from),
                );
            request = match spec.metadata_directive {
                MetadataDirective::Copy => request.metadata_directive(SdkDirective::Copy),
                MetadataDirective::Replace => {
                    let m: &ReplacementMetadata = &spec.new_metadata;
                    let mut r = request
                        .metadata_directive(SdkDirective::Replace)
                        .set_cache_control(m.cache_control.clone())
                        .set_content_disposition(m.content_disposition.clone())
                        .set_content_encoding(m.content_encoding.clone())
                        .set_content_language(m.content_language.clone())
                        .set_content_type(m.content_type.clone())
                        .set_expires(m.expires.as_deref().and_then(parse_expires));
                    for (k, v) in &m.user_metadata {
                        r = r.metadata(k, v);
                    }
                    r
                }
            };
            request = with_write_options!(request, spec);
            if let Some(tags) = &spec.new_tagging {
                request = request
                    .tagging_directive(TaggingDirective::Replace)
                    .tagging(encode_tag_set(tags));
            }
            let sent = if spec.options.object_lock.is_set() {
                request
                    .customize()
                    .mutate_request(|r| {
                        r.headers_mut().insert("Content-MD5", EMPTY_BODY_MD5);
                    })
                    .send()
                    .await
            } else {
                request.send().await
            };
            let out = sent.map_err(|e| S3Failure::from_sdk(&e))?;
            // A 200 whose body is an error document parses to no CopyObjectResult.
            match out.copy_object_result().and_then(|r| r.e_tag()) {
                Some(_) => Ok(out.version_id().map(str::to_string)),
                None => Err(S3Failure {
                    status: Some(500),
                    code: Some("InternalError".to_string()),
                    message: "CopyObject answered 200 without a CopyObjectResult (error in body)"
                        .to_string(),
                }),
            }
        })
        .await
        .map_err(CopyError::from)
    }

    async fn multipart_copy(
        &self,
        object: &ObjectRef,
        head: &HeadObjectOutput,
        size: u64,
        if_match: Option<&str>,
        target_key: &str,
    ) -> Result<Option<String>, CopyError> {
        let spec = self.spec;
        // Pin every part to one source version: the given one, else the one HEAD saw.
        let version = object
            .version_id
            .clone()
            .or_else(|| head.version_id().map(str::to_string));
        let source = copy_source(&object.bucket, &object.key, version.as_deref());
        let part_if_match = if version.is_some() {
            if_match.map(str::to_string)
        } else {
            head.e_tag().map(str::to_string)
        };
        let part_size = self.settings.part_size.max(size.div_ceil(MAX_PARTS));
        let parts = PartCopy {
            target_key,
            source: &source,
            if_match: part_if_match.as_deref(),
            size,
            part_size,
        };
        if let Some(kept) = self.kept_upload(target_key, part_size).await {
            let (upload_id, done) = kept;
            tracing::info!(key = %target_key, upload_id, parts_done = done.len(), "continuing a kept multipart copy");
            return self.finish_upload(&parts, &upload_id, done).await;
        }
        let tagging = match &spec.new_tagging {
            Some(tags) => Some(encode_tag_set(tags)),
            None => self.source_tags(object, version.as_deref()).await?,
        };
        let upload_id = with_retry(&self.settings.retry, || async {
            let mut request = self
                .s3
                .create_multipart_upload()
                .bucket(&spec.target_bucket)
                .key(target_key)
                .set_storage_class(spec.storage_class.as_deref().map(StorageClass::from))
                .set_checksum_algorithm(
                    spec.checksum_algorithm
                        .as_deref()
                        .map(ChecksumAlgorithm::from),
                )
                .set_tagging(tagging.clone());
            request = match spec.metadata_directive {
                // Multipart uploads do not inherit anything: carry the source's metadata over.
                MetadataDirective::Copy => request
                    .set_cache_control(head.cache_control().map(str::to_string))
                    .set_content_disposition(head.content_disposition().map(str::to_string))
                    .set_content_encoding(head.content_encoding().map(str::to_string))
                    .set_content_language(head.content_language().map(str::to_string))
                    .set_content_type(head.content_type().map(str::to_string))
                    .set_metadata(head.metadata().cloned()),
                MetadataDirective::Replace => {
                    let m = &spec.new_metadata;
                    request
                        .set_cache_control(m.cache_control.clone())
                        .set_content_disposition(m.content_disposition.clone())
                        .set_content_encoding(m.content_encoding.clone())
                        .set_content_language(m.content_language.clone())
                        .set_content_type(m.content_type.clone())
                        .set_expires(m.expires.as_deref().and_then(parse_expires))
                        .set_metadata(Some(m.user_metadata.iter().cloned().collect()))
                }
            };
            request = with_write_options!(request, spec);
            let out = request.send().await.map_err(|e| S3Failure::from_sdk(&e))?;
            out.upload_id()
                .map(str::to_string)
                .ok_or_else(|| S3Failure {
                    status: Some(500),
                    code: Some("InternalError".into()),
                    message: "CreateMultipartUpload returned no UploadId".into(),
                })
        })
        .await?;

        if let Some(kept) = self.uploads {
            let record = crate::store::KeptUpload {
                upload_id: upload_id.clone(),
                target_key: target_key.to_string(),
                part_size,
                streamed: None,
            };
            if let Err(err) = kept
                .store
                .keep_upload(kept.job_id, kept.seq, kept.task, &record)
                .await
            {
                // Unrecorded, the upload could not be continued or cleaned up later: stop here.
                self.abort(target_key, &upload_id).await;
                return Err(CopyError::Failed(S3Failure {
                    status: None,
                    code: Some("InternalError".into()),
                    message: format!("could not record multipart upload {upload_id}: {err}"),
                }));
            }
        }
        self.finish_upload(&parts, &upload_id, Vec::new()).await
    }

    /// Copies the parts not in `done`, completes the upload, and forgets it. Out of time, the
    /// upload is kept for the next invocation; stopped or failed, it is aborted.
    async fn finish_upload(
        &self,
        parts: &PartCopy<'_>,
        upload_id: &str,
        done: Vec<CompletedPart>,
    ) -> Result<Option<String>, CopyError> {
        let target_key = parts.target_key;
        let result = self.copy_parts(parts, upload_id, done).await;
        let completed = match result {
            Ok(parts) => self.complete(target_key, upload_id, parts).await,
            Err(e) => Err(e),
        };
        match &completed {
            Err(CopyError::OutOfTime) if self.uploads.is_some() => return completed,
            // Abort only this task's own upload; nothing already written is touched.
            Err(_) => self.abort(target_key, upload_id).await,
            Ok(_) => {}
        }
        if let Some(kept) = self.uploads {
            if let Err(err) = kept
                .store
                .forget_upload(kept.job_id, kept.seq, kept.task)
                .await
            {
                tracing::warn!(upload_id, error = %err, "could not forget a finished multipart upload; the finalizer will");
            }
        }
        completed
    }

    async fn abort(&self, target_key: &str, upload_id: &str) {
        let bucket = &self.spec.target_bucket;
        let abort = self
            .s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(target_key)
            .upload_id(upload_id)
            .set_request_payer(request_payer(self.spec))
            .send()
            .await;
        if let Err(err) = abort {
            tracing::warn!(bucket = %bucket, key = %target_key, upload_id, error = %crate::error::describe_sdk(&err), "could not abort multipart upload");
        }
    }

    /// The upload an earlier invocation kept for this task, with the parts S3 holds of it;
    /// None when there is none to continue (it was finished, aborted, or is for another key).
    async fn kept_upload(
        &self,
        target_key: &str,
        part_size: u64,
    ) -> Option<(String, Vec<CompletedPart>)> {
        let kept = self.uploads?;
        let record = match kept
            .store
            .kept_upload(kept.job_id, kept.seq, kept.task)
            .await
        {
            Ok(record) => record?,
            Err(err) => {
                tracing::warn!(error = %err, "could not read the kept multipart upload; starting anew");
                return None;
            }
        };
        if record.target_key != target_key || record.part_size != part_size {
            self.abort(&record.target_key, &record.upload_id).await;
            return None;
        }
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = with_retry(&self.settings.retry, || async {
                match self
                    .s3
                    .list_parts()
                    .bucket(&self.spec.target_bucket)
                    .key(target_key)
                    .upload_id(&record.upload_id)
                    .set_request_payer(request_payer(self.spec))
                    .set_part_number_marker(marker.clone())
                    .send()
                    .await
                {
                    Ok(out) => Ok(PartsPage {
                        parts: out
                            .parts()
                            .iter()
                            .map(|part| completed_part!(part.part_number(), part))
                            .collect(),
                        next_marker: out
                            .next_part_number_marker()
                            .filter(|_| out.is_truncated() == Some(true))
                            .map(str::to_string),
                    }),
                    Err(err) => {
                        // Some emulators (moto 5.2) answer 200 under another XML root that the
                        // SDK refuses; the elements inside are S3's own, so read them directly.
                        let body = err
                            .raw_response()
                            .filter(|r| r.status().as_u16() == 200)
                            .and_then(|r| r.body().bytes())
                            .map(|b| String::from_utf8_lossy(b).into_owned());
                        match body {
                            Some(body) => Ok(parse_list_parts(&body)),
                            None => Err(S3Failure::from_sdk(&err)),
                        }
                    }
                }
            })
            .await;
            let page = match page {
                Ok(page) => page,
                Err(failure) => {
                    // NoSuchUpload: completed or aborted since. Start anew.
                    tracing::info!(upload_id = %record.upload_id, code = ?failure.code, message = %failure.message, "kept multipart upload cannot be continued; starting anew");
                    return None;
                }
            };
            parts.extend(page.parts);
            match page.next_marker {
                Some(next) => marker = Some(next),
                None => break,
            }
        }
        Some((record.upload_id, parts))
    }

    async fn source_tags(
        &self,
        object: &ObjectRef,
        version: Option<&str>,
    ) -> Result<Option<String>, CopyError> {
        let out = with_retry(&self.settings.retry, || async {
            self.s3
                .get_object_tagging()
                .bucket(&object.bucket)
                .key(&object.key)
                .set_version_id(version.map(str::to_string))
                .set_request_payer(request_payer(self.spec))
                .send()
                .await
                .map_err(|e| S3Failure::from_sdk(&e))
        })
        .await?;
        let tags: Vec<(String, String)> = out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        Ok((!tags.is_empty()).then(|| encode_tag_set(&tags)))
    }

    async fn copy_parts(
        &self,
        parts: &PartCopy<'_>,
        upload_id: &str,
        done: Vec<CompletedPart>,
    ) -> Result<Vec<CompletedPart>, CopyError> {
        let PartCopy {
            target_key,
            source,
            if_match,
            size,
            part_size,
        } = *parts;
        let done_numbers: std::collections::HashSet<i32> =
            done.iter().filter_map(|p| p.part_number()).collect();
        let ranges: Vec<(i32, u64, u64)> = (0..size.div_ceil(part_size))
            .map(|i| {
                (
                    i as i32 + 1,
                    i * part_size,
                    ((i + 1) * part_size).min(size) - 1,
                )
            })
            .filter(|(number, _, _)| !done_numbers.contains(number))
            .collect();
        let mut parts: Vec<CompletedPart> = futures::stream::iter(ranges)
            .map(|(number, first, last)| async move {
                if self.stop.load(Ordering::Relaxed) {
                    return Err(CopyError::Stopped);
                }
                if self
                    .part_deadline
                    .is_some_and(|at| std::time::SystemTime::now() >= at)
                {
                    return Err(CopyError::OutOfTime);
                }
                let out = with_retry(&self.settings.retry, || async {
                    self.s3
                        .upload_part_copy()
                        .bucket(&self.spec.target_bucket)
                        .key(target_key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .copy_source(source)
                        .copy_source_range(format!("bytes={first}-{last}"))
                        .set_copy_source_if_match(if_match.map(str::to_string))
                        .set_copy_source_if_modified_since(
                            self.spec.options.modified_since.map(DateTime::from_secs),
                        )
                        .set_copy_source_if_unmodified_since(
                            self.spec.options.unmodified_since.map(DateTime::from_secs),
                        )
                        .set_request_payer(request_payer(self.spec))
                        .send()
                        .await
                        .map_err(|e| S3Failure::from_sdk(&e))
                })
                .await?;
                let result = out.copy_part_result().ok_or_else(|| S3Failure {
                    status: Some(500),
                    code: Some("InternalError".into()),
                    message: format!("UploadPartCopy of part {number} answered without a CopyPartResult (error in body)"),
                })?;
                Ok(completed_part!(Some(number), result))
            })
            .buffer_unordered(self.settings.part_concurrency)
            .try_collect()
            .await?;
        if self.stop.load(Ordering::Relaxed) {
            return Err(CopyError::Stopped);
        }
        parts.extend(done);
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }

    async fn complete(
        &self,
        target_key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<Option<String>, CopyError> {
        let upload = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        with_retry(&self.settings.retry, || async {
            let out = self
                .s3
                .complete_multipart_upload()
                .bucket(&self.spec.target_bucket)
                .key(target_key)
                .upload_id(upload_id)
                .set_request_payer(request_payer(self.spec))
                .multipart_upload(upload.clone())
                .send()
                .await
                .map_err(|e| S3Failure::from_sdk(&e))?;
            match out.e_tag() {
                Some(_) => Ok(out.version_id().map(str::to_string)),
                None => Err(S3Failure {
                    status: Some(500),
                    code: Some("InternalError".into()),
                    message: "CompleteMultipartUpload answered 200 without an ETag (error in body)"
                        .into(),
                }),
            }
        })
        .await
        .map_err(CopyError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_list_parts, too_large_to_copy};
    use crate::error::S3Failure;

    #[test]
    fn only_s3s_copy_source_limit_answer_sends_a_copy_to_head_and_multipart() {
        let answer = |status, code: &str, message: &str| S3Failure {
            status: Some(status),
            code: Some(code.to_string()),
            message: message.to_string(),
        };
        assert!(too_large_to_copy(&answer(400, "InvalidRequest", "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120")));
        assert!(!too_large_to_copy(&answer(
            400,
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself"
        )));
        assert!(!too_large_to_copy(&answer(
            404,
            "NoSuchKey",
            "The specified key does not exist."
        )));
        assert!(!too_large_to_copy(&answer(
            500,
            "InternalError",
            "copy source is larger than the maximum allowable size"
        )));
    }

    #[test]
    fn list_parts_bodies_are_read_under_any_root() {
        let body = r#"<?xml version="1.0"?><ListPartsResponse><Bucket>b</Bucket><NextPartNumberMarker>2</NextPartNumberMarker><IsTruncated>true</IsTruncated><Part><PartNumber>1</PartNumber><ETag>"aa"</ETag><Size>5</Size></Part><Part><PartNumber>2</PartNumber><ETag>&quot;bb&quot;</ETag><ChecksumCRC32>xyz=</ChecksumCRC32></Part></ListPartsResponse>"#;
        let page = parse_list_parts(body);
        assert_eq!(page.parts.len(), 2);
        assert_eq!(page.parts[0].part_number(), Some(1));
        assert_eq!(page.parts[0].e_tag(), Some("\"aa\""));
        assert_eq!(page.parts[1].e_tag(), Some("\"bb\""));
        assert_eq!(page.parts[1].checksum_crc32(), Some("xyz="));
        assert_eq!(page.next_marker.as_deref(), Some("2"));
        let last = parse_list_parts("<ListPartsResult><IsTruncated>false</IsTruncated><NextPartNumberMarker>9</NextPartNumberMarker></ListPartsResult>");
        assert!(last.parts.is_empty());
        assert_eq!(last.next_marker, None);
    }
}
