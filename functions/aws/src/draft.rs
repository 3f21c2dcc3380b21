//! A backup run's draft snapshot (written by its prepare step, in key order) walked with what
//! became of each planned copy (the committed ranges' fragments, see
//! [`batchops_core::copies`]). A completed run's snapshot is this walk; so is the record of the
//! copies a failed or cancelled run made. Memory: one draft part and one chunk's results.

use crate::error::{Error, Result};
use crate::objects::get_bytes;
use crate::planner::draft_key;
use crate::store::RangeCommit;
use crate::App;
use batchops_core::backup::{CatalogEntry, DraftRow};
use batchops_core::chunk::ChunkTask;
use batchops_core::copies::{chunk_results, covers_chunk, CopyResult, RangeResults};
use batchops_core::JobRecord;
use std::collections::VecDeque;

/// One draft row, a planned copy with its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftItem {
    /// In the snapshot as it is (unchanged, copied by continuous mode, or kept though deleted).
    Done(CatalogEntry),
    /// A continuous copy no snapshot takes: listed with the snapshot, freed with it.
    Superseded(CatalogEntry),
    /// A copy the run planned (`entry` without its destination version), and what became of it;
    /// `fallback` (the previous snapshot's entry) stands if it was not made.
    Pending {
        entry: CatalogEntry,
        fallback: Option<CatalogEntry>,
        result: CopyResult,
    },
}

/// Committed ranges read per page.
const RANGE_PAGE: i32 = 500;

/// Walks a backup job's draft rows with their copies' results, in order.
pub struct DraftWalk<'a> {
    app: &'a App,
    job_id: String,
    draft_parts: u64,
    next_part: u64,
    rows: std::vec::IntoIter<DraftRow>,
    results: CopyResults<'a>,
}

impl<'a> DraftWalk<'a> {
    pub fn new(app: &'a App, job: &JobRecord) -> Self {
        DraftWalk {
            app,
            job_id: job.job_id.clone(),
            draft_parts: job.plan.progress.draft_parts,
            next_part: 0,
            rows: Vec::new().into_iter(),
            results: CopyResults {
                app,
                job_id: job.job_id.clone(),
                chunks: job.plan.progress.next_seq,
                next_chunk: 0,
                ranges: VecDeque::new(),
                ranges_after: None,
                ranges_done: false,
                current: VecDeque::new(),
            },
        }
    }

    pub async fn next(&mut self) -> Result<Option<DraftItem>> {
        let row = loop {
            if let Some(row) = self.rows.next() {
                break row;
            }
            if self.next_part == self.draft_parts {
                return Ok(None);
            }
            let key = draft_key(&self.job_id, self.next_part);
            let body = get_bytes(&self.app.s3, &self.app.config.control_bucket, &key).await?;
            self.rows = DraftRow::parse_part(&String::from_utf8_lossy(&body))
                .map_err(|e| Error::Data(format!("draft snapshot part {key}: {e}")))?
                .into_iter();
            self.next_part += 1;
        };
        Ok(Some(match row {
            DraftRow::Done(entry) => DraftItem::Done(entry),
            DraftRow::Superseded(entry) => DraftItem::Superseded(entry),
            DraftRow::Pending { entry, fallback } => DraftItem::Pending {
                entry,
                fallback,
                result: self.results.next().await?,
            },
        }))
    }
}

/// The results of a job's copy tasks in task order (chunk by chunk), read from its committed
/// ranges; a chunk they do not cover end to end is read to tell copy tasks from others.
struct CopyResults<'a> {
    app: &'a App,
    job_id: String,
    chunks: u64,
    next_chunk: u64,
    ranges: VecDeque<RangeCommit>,
    ranges_after: Option<String>,
    ranges_done: bool,
    current: VecDeque<CopyResult>,
}

impl CopyResults<'_> {
    async fn next(&mut self) -> Result<CopyResult> {
        loop {
            if let Some(result) = self.current.pop_front() {
                return Ok(result);
            }
            if self.next_chunk >= self.chunks {
                return Err(Error::Data(format!(
                    "job {}: its draft snapshot plans more copies than its {} chunks hold",
                    self.job_id, self.chunks
                )));
            }
            let seq = self.next_chunk;
            self.next_chunk += 1;
            self.load_chunk(seq).await?;
        }
    }

    /// The committed ranges of chunk `seq`, in task order (ranges come in chunk order).
    async fn ranges_of(&mut self, seq: u64) -> Result<Vec<RangeCommit>> {
        let mut out = Vec::new();
        loop {
            while let Some(range) = self.ranges.front() {
                if range.seq > seq {
                    return Ok(out);
                }
                if let Some(range) = self.ranges.pop_front() {
                    if range.seq == seq {
                        out.push(range);
                    }
                }
            }
            if self.ranges_done {
                return Ok(out);
            }
            let (page, next) = self
                .app
                .store
                .committed_ranges_page(&self.job_id, self.ranges_after.as_deref(), RANGE_PAGE)
                .await?;
            self.ranges.extend(page.into_iter().map(|(_, range)| range));
            self.ranges_done = next.is_none();
            self.ranges_after = next;
        }
    }

    async fn load_chunk(&mut self, seq: u64) -> Result<()> {
        let ranges = self.ranges_of(seq).await?;
        let spans: Vec<(u64, u64)> = ranges.iter().map(|r| (r.first_task, r.end_task)).collect();
        let chunk_tasks = ranges.last().and_then(|r| r.chunk_tasks);
        let mut with_results = Vec::with_capacity(ranges.len());
        for range in ranges {
            let results = match &range.fragment {
                Some(key) => {
                    let text =
                        get_bytes(&self.app.s3, &self.app.config.control_bucket, key).await?;
                    String::from_utf8_lossy(&text)
                        .lines()
                        .map(CopyResult::parse_line)
                        .collect()
                }
                None => Vec::new(),
            };
            with_results.push(RangeResults {
                first_task: range.first_task,
                end_task: range.end_task,
                results,
            });
        }
        if covers_chunk(&spans, chunk_tasks) {
            // Every task ran: the fragments in order are the chunk's copy results.
            self.current
                .extend(with_results.into_iter().flat_map(|r| r.results));
            return Ok(());
        }
        // Some tasks never ran (the run stopped early): which of the chunk's tasks are copies
        // decides which results are missing.
        let tasks = crate::worker::read_chunk_file(self.app, &self.job_id, seq).await?;
        let is_copy: Vec<bool> = tasks
            .iter()
            .map(|t| matches!(t, ChunkTask::Object { .. }))
            .collect();
        let results = chunk_results(&is_copy, with_results)
            .map_err(|e| Error::Data(format!("job {} chunk {seq}: {e}", self.job_id)))?;
        self.current.extend(results);
        Ok(())
    }
}
