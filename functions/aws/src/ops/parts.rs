//! The part loop of a streamed multipart transfer (exports and imports): cuts a byte stream
//! into fixed-size parts, uploads a bounded number at once through a [`PartSink`], and hashes
//! (MD5) what it cuts. Memory is about `part_bytes * (concurrency + 1)` whatever the object's
//! size. Each time the parts uploaded from the first grow, the sink checkpoints them (the part
//! IDs and the MD5 so far), so a transfer cut short continues from its first missing part.
//!
//! [`StreamedUploads`] keeps such an upload in the table between invocations (as copies keep
//! theirs): wherever the upload is written ([`UploadTarget`]: another store for exports, the
//! destination bucket for imports), it is started, checkpointed, continued, completed and
//! forgotten, or aborted and forgotten, the same way.

use super::copy::KeptUploads;
use super::export::Failure;
use super::{retry_within, GaveUp, RangeContext, RetryBounds, TaskResult};
use crate::store::{KeptUpload, StreamedUpload};
use crate::stores::ExportSettings;
use batchops_core::backoff::{ErrorClass, RetryPolicy};
use batchops_core::chunk::ChunkTask;
use batchops_core::report::ResumableMd5;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

/// Where the parts go.
pub(super) trait PartSink: Send + Sync {
    /// Uploads part `index` (from 0), answering the ID its completion names it by (an ETag, a
    /// block ID).
    fn put_part(&self, index: usize, bytes: Vec<u8>) -> BoxFuture<'_, Result<String, Failure>>;

    /// Parts `0..progress.parts.len()` are uploaded: the sink records them for the next
    /// invocation.
    fn checkpoint<'s>(&'s self, progress: &'s PartProgress) -> BoxFuture<'s, Result<(), Failure>>;
}

/// The parts uploaded from the first, and the MD5 of the bytes they hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartProgress {
    pub parts: Vec<String>,
    pub md5: ResumableMd5,
}

impl PartProgress {
    /// Where the next part starts in the object.
    pub fn offset(&self) -> u64 {
        self.md5.consumed()
    }
}

/// A read of `from` (an object of `size` bytes) cut short after `read` bytes: retried.
fn cut(from: &str, size: u64, read: u64, detail: impl std::fmt::Display) -> Failure {
    Failure::Error {
        class: ErrorClass::Transient,
        status: 500,
        code: "SourceReadCut".to_string(),
        message: format!("reading {from}: {detail} after {read} of {size} bytes"),
    }
}

/// Reads an object of one part or less whole: `body`, `size` bytes of `from`.
pub(super) async fn read_whole<S, E>(mut body: S, size: u64, from: &str) -> Result<Vec<u8>, Failure>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut buffer = Vec::with_capacity(size as usize);
    while let Some(chunk) = body.next().await {
        let read = buffer.len() as u64;
        let chunk = chunk.map_err(|e| cut(from, size, read, e))?;
        if read + chunk.len() as u64 > size {
            return Err(cut(from, size, read, "more bytes than its length"));
        }
        buffer.extend_from_slice(&chunk);
    }
    if buffer.len() as u64 != size {
        return Err(cut(from, size, buffer.len() as u64, "body ended early"));
    }
    Ok(buffer)
}

/// One streamed multipart transfer.
struct PartLoop<'a> {
    pub part_bytes: usize,
    pub concurrency: usize,
    /// The object's whole size.
    pub size: u64,
    pub stop: &'a AtomicBool,
    pub stop_starting_at: SystemTime,
    /// What is read, for errors (`s3://bucket/key`, "`key` in gs://...").
    pub from: &'a str,
}

impl PartLoop<'_> {
    /// A read cut short (retried: the next attempt continues from the last checkpoint).
    fn cut(&self, read: u64, detail: impl std::fmt::Display) -> Failure {
        cut(self.from, self.size, read, detail)
    }

    /// Uploads `body` (the object from `done.offset()`) as the parts after `done`, and answers
    /// every part with the MD5 of the whole object. Out of time, the parts in flight are let
    /// finish and checkpointed before it answers [`Failure::OutOfTime`].
    async fn run<S, E>(
        &self,
        mut body: S,
        done: PartProgress,
        sink: &dyn PartSink,
    ) -> Result<PartProgress, Failure>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let part_bytes = self.part_bytes;
        let mut md5 = done.md5;
        let mut uploaded = done.parts;
        // Parts uploaded out of order, and the MD5 at the end of each part not yet checkpointed.
        let mut finished: BTreeMap<usize, String> = BTreeMap::new();
        let mut md5_at: BTreeMap<usize, ResumableMd5> = BTreeMap::new();
        let mut in_flight = FuturesUnordered::new();
        let mut next = uploaded.len();
        let mut read = md5.consumed();
        let mut buffer: Vec<u8> = Vec::with_capacity(part_bytes);
        // What of the last chunk read did not fit in the part being filled.
        let mut carry: Option<Bytes> = None;
        let mut ended = false;
        // Records a finished part; checkpoints when the run from the first part grew.
        let settle = |index: usize,
                      id: String,
                      uploaded: &mut Vec<String>,
                      finished: &mut BTreeMap<usize, String>,
                      md5_at: &mut BTreeMap<usize, ResumableMd5>|
         -> Option<PartProgress> {
            finished.insert(index, id);
            let before = uploaded.len();
            while let Some(id) = finished.remove(&uploaded.len()) {
                uploaded.push(id);
            }
            let last = uploaded
                .len()
                .checked_sub(1)
                .filter(|_| uploaded.len() > before)?;
            let md5 = md5_at.remove(&last)?;
            md5_at.retain(|&part, _| part > last);
            Some(PartProgress {
                parts: uploaded.clone(),
                md5,
            })
        };
        while !ended {
            // Fill one part (the last may be shorter).
            while buffer.len() < part_bytes {
                if let Some(mut rest) = carry.take() {
                    let piece = rest.split_to(rest.len().min(part_bytes - buffer.len()));
                    md5.update(&piece);
                    buffer.extend_from_slice(&piece);
                    if !rest.is_empty() {
                        carry = Some(rest);
                    }
                    continue;
                }
                match body.next().await {
                    Some(chunk) => {
                        let chunk = chunk.map_err(|e| self.cut(read, e))?;
                        read += chunk.len() as u64;
                        if read > self.size {
                            return Err(self.cut(read, "more bytes than its length"));
                        }
                        carry = Some(chunk);
                    }
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            if buffer.is_empty() {
                break;
            }
            // At most `concurrency` parts upload while the next one fills.
            while in_flight.len() >= self.concurrency {
                if let Some((index, id)) = in_flight.next().await {
                    let id: String = id?;
                    if let Some(progress) =
                        settle(index, id, &mut uploaded, &mut finished, &mut md5_at)
                    {
                        sink.checkpoint(&progress).await?;
                    }
                }
            }
            if let Some(stop) = Failure::stopping(self.stop, self.stop_starting_at) {
                if matches!(stop, Failure::OutOfTime) {
                    // What was started finishes, and is kept for the next invocation.
                    while let Some((index, id)) = in_flight.next().await {
                        let id: String = id?;
                        if let Some(progress) =
                            settle(index, id, &mut uploaded, &mut finished, &mut md5_at)
                        {
                            sink.checkpoint(&progress).await?;
                        }
                    }
                }
                return Err(stop);
            }
            let index = next;
            next += 1;
            md5_at.insert(index, md5.clone());
            let full = std::mem::replace(&mut buffer, Vec::with_capacity(part_bytes));
            let upload = sink.put_part(index, full);
            in_flight.push(async move { (index, upload.await) });
        }
        if read != self.size {
            return Err(self.cut(read, "body ended early"));
        }
        while let Some((index, id)) = in_flight.next().await {
            let id: String = id?;
            if let Some(progress) = settle(index, id, &mut uploaded, &mut finished, &mut md5_at) {
                sink.checkpoint(&progress).await?;
            }
        }
        Ok(PartProgress {
            parts: uploaded,
            md5,
        })
    }
}

/// Where a streamed multipart upload is written, at one key.
pub(super) trait UploadTarget: Send + Sync {
    /// Starts a multipart upload; answers its ID.
    fn create(&self) -> BoxFuture<'_, Result<String, Failure>>;

    /// Uploads part `index` (from 0), answering the ID its completion names it by (an ETag, a
    /// block ID).
    fn put_part<'s>(
        &'s self,
        upload_id: &'s str,
        index: usize,
        bytes: Vec<u8>,
    ) -> BoxFuture<'s, Result<String, Failure>>;

    /// Completes the upload from its parts' IDs; answers the version it wrote, where the
    /// target keeps versions.
    fn complete<'s>(
        &'s self,
        upload_id: &'s str,
        parts: &'s [String],
    ) -> BoxFuture<'s, Result<Option<String>, Failure>>;
}

/// Aborts a kept upload where it was started, by its record (one already gone is no error):
/// for a task that ends without its object, or whose upload cannot be continued.
pub(super) trait UploadAbort: Send + Sync {
    fn abort<'s>(&'s self, record: &'s KeptUpload) -> BoxFuture<'s, Result<(), String>>;
}

/// What a streamed transfer (an export or an import) takes from its range.
#[derive(Clone, Copy)]
pub(super) struct TransferRange<'a> {
    pub settings: &'a ExportSettings,
    retry: RetryPolicy,
    stop: &'a AtomicBool,
    /// No part starts after this: the object in flight is kept and the task is run again by
    /// the next delivery of the range.
    stop_starting_at: SystemTime,
    /// Where each task's multipart upload is kept between invocations (each task its own).
    kept: KeptUploads<'a>,
}

impl<'a> TransferRange<'a> {
    pub fn new(range: &RangeContext<'a>) -> Self {
        TransferRange {
            settings: &range.app.config.export,
            retry: range.app.config.retry,
            stop: range.stop,
            stop_starting_at: range.stop_starting_at,
            kept: KeptUploads {
                store: &range.app.store,
                job_id: range.job_id,
                seq: range.seq,
                task: 0,
            },
        }
    }

    /// Why no further piece of a transfer may start (the job stopped, or no time is left).
    pub fn should_stop(&self) -> Option<Failure> {
        Failure::stopping(self.stop, self.stop_starting_at)
    }

    /// Task `index`'s upload, aborted (when it must be) through `abort`.
    pub fn uploads<'t>(&self, index: u64, abort: &'t dyn UploadAbort) -> StreamedUploads<'t>
    where
        'a: 't,
    {
        let mut range = *self;
        range.kept.task = index;
        StreamedUploads { range, abort }
    }
}

/// One task's streamed upload, kept in the table between invocations and attempts.
pub(super) struct StreamedUploads<'a> {
    range: TransferRange<'a>,
    abort: &'a dyn UploadAbort,
}

impl StreamedUploads<'_> {
    /// Runs the task's attempts within its retries, bounded by the stop flag and the
    /// invocation's time: what the attempts made, or how the task ended without it. A task
    /// that ends without its object (it failed, or the job stopped) aborts and forgets its
    /// upload; one out of time keeps it for the next delivery.
    pub async fn attempts<T, F, Fut>(&self, task: &ChunkTask, attempt: F) -> Result<T, TaskResult>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let bounds = RetryBounds {
            stop: Some(self.range.stop),
            start_by: Some(self.range.stop_starting_at),
        };
        let class_of = |failure: &Failure| match failure {
            Failure::Error { class, .. } => Some(*class),
            Failure::Stopped | Failure::OutOfTime => None,
        };
        let ended = match retry_within(&self.range.retry, bounds, class_of, attempt).await {
            Ok(done) => return Ok(done),
            // A retryable error when time runs out: as if the next attempt had found it so.
            Err(GaveUp::OutOfTime(_)) | Err(GaveUp::Failed(Failure::OutOfTime)) => {
                return Err(TaskResult::Suspended)
            }
            Err(GaveUp::Stopped(_)) | Err(GaveUp::Failed(Failure::Stopped)) => {
                TaskResult::Abandoned
            }
            Err(GaveUp::Failed(Failure::Error {
                status,
                code,
                message,
                ..
            })) => TaskResult::Done(task.failed_outcome(status, &code, message)),
        };
        self.discard().await;
        Err(ended)
    }

    /// The upload an earlier invocation (or attempt) kept for this task, to continue; None
    /// when there is none. One for another key or part size is aborted and forgotten.
    pub async fn resumable(&self, key: &str) -> Result<Option<KeptUpload>, Failure> {
        let kept = self.range.kept;
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
            && record.target_key == key
            && record.part_size == self.range.settings.part_bytes
        {
            return Ok(Some(record));
        }
        self.discard().await;
        Ok(None)
    }

    /// Starts an upload of an object of `size` bytes at `key` and records it, pinned to the
    /// source object read (for the ranged reads of later deliveries).
    pub async fn start(
        &self,
        target: &dyn UploadTarget,
        key: &str,
        size: u64,
        source_version: Option<String>,
        source_etag: Option<String>,
    ) -> Result<KeptUpload, Failure> {
        let record = KeptUpload {
            upload_id: target.create().await?,
            target_key: key.to_string(),
            part_size: self.range.settings.part_bytes,
            streamed: Some(StreamedUpload {
                progress: PartProgress::default(),
                size,
                source_version,
                source_etag,
            }),
        };
        if let Err(failure) = self.keep(&record).await {
            // Unrecorded, the upload could be neither continued nor cleaned up later.
            if let Err(err) = self.abort.abort(&record).await {
                tracing::warn!(key, error = %err, "could not abort a multipart upload");
            }
            return Err(failure);
        }
        Ok(record)
    }

    /// Uploads `body` (the `length` bytes of the source from the record's first missing part
    /// on; `from` names the source, for errors) as the parts the record lacks, completes the
    /// upload and forgets it: every part with the MD5 of the whole object, and the version
    /// written. Out of time, the upload stays recorded for the next invocation.
    pub async fn finish<S, E>(
        &self,
        target: &dyn UploadTarget,
        record: &KeptUpload,
        from: &str,
        length: u64,
        body: S,
    ) -> Result<(PartProgress, Option<String>), Failure>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let Some(streamed) = &record.streamed else {
            return Err(Failure::Error {
                class: ErrorClass::Permanent,
                status: 500,
                code: "InternalError".to_string(),
                message: format!("kept upload {} records no parts", record.upload_id),
            });
        };
        let parts = PartLoop {
            part_bytes: self.range.settings.part_bytes as usize,
            concurrency: self.range.settings.part_concurrency,
            size: streamed.size,
            stop: self.range.stop,
            stop_starting_at: self.range.stop_starting_at,
            from,
        };
        let offset = streamed.progress.offset();
        if offset + length != streamed.size {
            return Err(parts.cut(offset, format!("a ranged read answered {length} bytes")));
        }
        let sink = Checkpointed {
            uploads: self,
            target,
            record,
        };
        let done = parts.run(body, streamed.progress.clone(), &sink).await?;
        let version = target.complete(&record.upload_id, &done.parts).await?;
        let kept = self.range.kept;
        if let Err(err) = kept
            .store
            .forget_upload(kept.job_id, kept.seq, kept.task)
            .await
        {
            tracing::warn!(upload_id = %record.upload_id, error = %err, "could not forget a finished upload; the finalizer will");
        }
        Ok((done, version))
    }

    /// Aborts the upload the task kept, and forgets it: nothing half-written stays behind.
    pub async fn discard(&self) {
        let kept = self.range.kept;
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
        if let Err(err) = self.abort.abort(&record).await {
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

    /// Records the task's upload in the table.
    async fn keep(&self, record: &KeptUpload) -> Result<(), Failure> {
        let kept = self.range.kept;
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
}

/// The parts of a kept upload, put into its target and checkpointed in the table.
struct Checkpointed<'s, 'a> {
    uploads: &'s StreamedUploads<'a>,
    target: &'s dyn UploadTarget,
    record: &'s KeptUpload,
}

impl PartSink for Checkpointed<'_, '_> {
    fn put_part(&self, index: usize, bytes: Vec<u8>) -> BoxFuture<'_, Result<String, Failure>> {
        self.target.put_part(&self.record.upload_id, index, bytes)
    }

    fn checkpoint<'c>(&'c self, progress: &'c PartProgress) -> BoxFuture<'c, Result<(), Failure>> {
        Box::pin(async move {
            let mut record = self.record.clone();
            if let Some(streamed) = &mut record.streamed {
                streamed.progress = progress.clone();
            }
            self.uploads.keep(&record).await
        })
    }
}
