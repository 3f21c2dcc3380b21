use super::*;
use crate::error::{Error, Result};
use batchops_core::inventory::InventoryManifest;
use batchops_core::manifest::{LineParser, ParsedLine};
use batchops_core::plan::{ChunkOut, Cursor, Planner};
use std::io::BufRead;

/// Feeds every line of `reader` to the planner, sending chunks as they fill. Returns the cursor
/// after the last line, or None when the consumer went away or the job failed.
/// Where parsed manifest lines go: a job's planner, or (a backup read from an inventory) a
/// sorter.
pub(super) trait LineSink {
    /// Takes one line; `Err` is a reason the whole manifest is unusable.
    fn take(
        &mut self,
        parsed: ParsedLine,
        before: &Cursor,
        after: &Cursor,
    ) -> std::result::Result<(), String>;
    /// Sends what is ready; false once the consumer has gone (stop reading).
    fn flush(&mut self, emitter: &Emitter) -> bool;
    /// The job failure code for a line `take` refused.
    fn failure_code(&self, default: &'static str) -> &'static str {
        default
    }
    /// Whether the report is what this reader expects (checked before any file is read).
    fn check_report(&self, _manifest: &InventoryManifest) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The job path: lines become chunks.
pub(super) struct PlannerSink<'a> {
    pub(super) planner: &'a mut Planner,
    pub(super) out: Vec<ChunkOut>,
}

impl LineSink for PlannerSink<'_> {
    fn take(
        &mut self,
        parsed: ParsedLine,
        before: &Cursor,
        after: &Cursor,
    ) -> std::result::Result<(), String> {
        self.planner
            .feed(after.line, parsed, before, after, &mut self.out)
    }

    fn flush(&mut self, emitter: &Emitter) -> bool {
        self.out
            .drain(..)
            .all(|chunk| emitter.send_blocking(Ok(SourceEvent::Chunk(chunk))))
    }
}

/// Reads lines into `sink`; `Some(end cursor)` when the input ended, None when reading stopped
/// (consumer gone, or the job failed with `invalid_code`).
#[allow(clippy::too_many_arguments)]
pub(super) fn feed_lines<R: BufRead, P: LineParser, S: LineSink>(
    mut reader: R,
    parser: &mut P,
    sink: &mut S,
    mut cursor: Cursor,
    skip_lines: u64,
    per_file: bool,
    emitter: &Emitter,
    source_name: &str,
    invalid_code: &'static str,
) -> Result<Option<Cursor>> {
    let mut line = Vec::with_capacity(1024);
    let mut skipped = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::Aws {
                service: "S3",
                operation: "GetObject",
                message: format!("reading {source_name}: {e}"),
                status: None,
                code: None,
            })?;
        if read == 0 {
            return Ok(Some(cursor));
        }
        if skipped < skip_lines {
            // Resuming inside a compressed file: lines before the cursor were planned already.
            skipped += 1;
            continue;
        }
        let before = cursor.clone();
        cursor.offset += read as u64;
        cursor.line += 1;
        if per_file {
            cursor.file_line += 1;
        }
        let raw = line.strip_suffix(b"\n").unwrap_or(&line);
        let parsed = parser.parse_line(cursor.line, raw);
        if let Err(reason) = sink.take(parsed, &before, &cursor) {
            let code = sink.failure_code(invalid_code);
            job_failure(emitter, code, format!("{source_name}: {reason}"))?;
            return Ok(None);
        }
        if !sink.flush(emitter) {
            return Ok(None);
        }
    }
}

pub(super) fn finish(planner: &mut Planner, end: &Cursor, emitter: &Emitter) -> Result<()> {
    let mut out = Vec::new();
    let progress = match planner.finish(end, &mut out) {
        Ok(progress) => progress,
        Err(reason) => return job_failure(emitter, "ManifestInvalid", reason),
    };
    for chunk in out {
        if !emitter.send_blocking(Ok(SourceEvent::Chunk(chunk))) {
            return Ok(());
        }
    }
    emitter.send_blocking(Ok(SourceEvent::Finished(progress)));
    Ok(())
}
