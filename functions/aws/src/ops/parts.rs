//! The part loop of a streamed multipart transfer (exports and imports): cuts a byte stream
//! into fixed-size parts, uploads a bounded number at once through a [`PartSink`], and hashes
//! (MD5) what it cuts. Memory is about `part_bytes * (concurrency + 1)` whatever the object's
//! size. Each time the parts uploaded from the first grow, the sink may checkpoint them (the
//! part IDs and the MD5 so far), so a transfer cut short continues from its first missing part.

use super::export::Failure;
use batchops_core::backoff::ErrorClass;
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

    /// Parts `0..progress.parts.len()` are uploaded: a sink that keeps its upload across
    /// invocations records them.
    fn checkpoint<'s>(&'s self, _progress: &'s PartProgress) -> BoxFuture<'s, Result<(), Failure>> {
        Box::pin(async { Ok(()) })
    }
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

/// One streamed multipart transfer.
pub(super) struct PartLoop<'a> {
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
    pub fn cut(&self, read: u64, detail: impl std::fmt::Display) -> Failure {
        Failure::Error {
            class: ErrorClass::Transient,
            status: 500,
            code: "SourceReadCut".to_string(),
            message: format!(
                "reading {}: {detail} after {read} of {} bytes",
                self.from, self.size
            ),
        }
    }

    /// Uploads `body` (the object from `done.offset()`) as the parts after `done`, and answers
    /// every part with the MD5 of the whole object. Out of time, the parts in flight are let
    /// finish and checkpointed before it answers [`Failure::OutOfTime`].
    pub async fn run<S, E>(
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
