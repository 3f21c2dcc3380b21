//! The pure half of planning: manifest entries in, chunks out. Sources (CSV, inventory files,
//! bucket listings) produce [`ParsedLine`]s with resumable cursors; [`Chunker`] turns them into
//! chunk task lists while keeping the counts a checkpoint records, so a planner killed between
//! two checkpoints resumes without skipping or repeating a task.

use crate::chunk::ChunkTask;
use crate::manifest::{ObjectEntry, ParsedLine, VersionPresence};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Where a source resumes. Every source kind keeps its own fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cursor {
    /// CSV manifests and inventory data files: byte offset in the (decompressed) stream.
    pub offset: u64,
    /// Lines consumed so far (1-based number of the next line is `line + 1`), across the report.
    pub line: u64,
    /// Inventory reports: index of the data file being read, and lines consumed in it.
    pub file_index: u64,
    pub file_line: u64,
    /// Bucket listings: which prefix is being listed, and the last key (and version) planned.
    pub prefix_index: u64,
    pub key_marker: Option<String>,
    pub version_marker: Option<String>,
    /// Backups: entries of the previous snapshot's catalog consumed by the diff.
    pub catalog_entries: u64,
}

/// Progress of planning, checkpointed in the job item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanProgress {
    pub cursor: Cursor,
    /// Sequence number of the next chunk to write.
    pub next_seq: u64,
    /// Tasks in chunks written so far (malformed lines included).
    pub tasks: u64,
    pub malformed: u64,
    /// Entries read that are not tasks: delete markers, versions not chosen by as-of, filtered.
    pub skipped: u64,
    /// Sum of sizes of planned objects, where the manifest knows them.
    pub bytes: u64,
    pub versions: VersionPresence,
    /// Backups: objects deleted at the source since the previous snapshot.
    pub deleted: u64,
    /// Backups: draft snapshot parts written.
    pub draft_parts: u64,
    /// Backups: objects continuous mode copied since the previous snapshot (not copied again).
    pub journaled: u64,
    /// Continuous copies this snapshot does not take (retention frees them with it).
    pub superseded: u64,
}

/// How tasks are pinned to one point in time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinning {
    /// Pin every task to the version ID and ETag current at planning time.
    pub pin_versions: bool,
    /// Per key, the newest version not later than this time (RFC 3339).
    pub as_of: Option<String>,
}

impl Pinning {
    pub fn is_pinned(&self) -> bool {
        self.pin_versions || self.as_of.is_some()
    }
}

/// Collects tasks into chunks of `chunk_size`, counting as it goes.
#[derive(Debug)]
pub struct Chunker {
    chunk_size: usize,
    keep_etags: bool,
    check_versions: bool,
    pending: Vec<ChunkTask>,
    pub progress: PlanProgress,
}

impl Chunker {
    /// `keep_etags`: pinned jobs keep the ETag (sent as If-Match); others copy what is current.
    /// `check_versions`: refuse manifests that mix lines with and without version IDs.
    pub fn new(
        chunk_size: usize,
        progress: PlanProgress,
        keep_etags: bool,
        check_versions: bool,
    ) -> Self {
        Chunker {
            chunk_size: chunk_size.max(1),
            keep_etags,
            check_versions,
            pending: Vec::with_capacity(chunk_size.max(1)),
            progress,
        }
    }

    /// Takes one parsed line. Returns a full chunk when this line completed one, or the job's
    /// failure reason when the manifest cannot run at all.
    pub fn push(
        &mut self,
        line_no: u64,
        parsed: ParsedLine,
    ) -> Result<Option<Vec<ChunkTask>>, String> {
        let task = match parsed {
            ParsedLine::Blank => return Ok(None),
            ParsedLine::DeleteMarker(_) => {
                self.progress.skipped += 1;
                return Ok(None);
            }
            ParsedLine::Object(entry) => {
                if self.check_versions {
                    self.progress
                        .versions
                        .observe(line_no, entry.object.version_id.is_some())?;
                }
                self.progress.bytes += entry.size.unwrap_or(0);
                ChunkTask::Object {
                    line: line_no,
                    etag: if self.keep_etags { entry.etag } else { None },
                    size: entry.size,
                    object: entry.object,
                }
            }
            ParsedLine::Malformed(m) => {
                self.progress.malformed += 1;
                ChunkTask::Malformed(m)
            }
        };
        self.pending.push(task);
        Ok(self.full_chunk())
    }

    /// Counts an entry that is read but not planned (filtered out, or not chosen by as-of).
    pub fn skip(&mut self) {
        self.progress.skipped += 1;
    }

    fn full_chunk(&mut self) -> Option<Vec<ChunkTask>> {
        (self.pending.len() >= self.chunk_size).then(|| self.take())
    }

    fn take(&mut self) -> Vec<ChunkTask> {
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(self.chunk_size));
        self.progress.tasks += chunk.len() as u64;
        self.progress.next_seq += 1;
        chunk
    }

    /// The last, partial chunk at the end of the manifest.
    pub fn finish(&mut self) -> Option<Vec<ChunkTask>> {
        (!self.pending.is_empty()).then(|| self.take())
    }

    /// Tasks taken but not yet in a chunk.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Encodes a chunk file body.
pub fn encode_chunk(tasks: &[ChunkTask]) -> String {
    let mut body = String::with_capacity(tasks.len() * 96);
    for task in tasks {
        task.write_line(&mut body);
    }
    body
}

pub fn parse_time(value: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|e| format!("`{value}` is not an RFC 3339 time: {e}"))
}

/// Point-in-time selection over versions listed key by key (each key's versions together, as
/// ListObjectVersions and all-versions inventories give them): per key, the newest version whose
/// LastModified is not later than `as_of`; nothing when that is a delete marker or no version
/// existed yet.
#[derive(Debug)]
pub struct AsOfSelector {
    as_of: OffsetDateTime,
    current_key: Option<(String, String)>,
    /// The newest version so far not later than `as_of`: its time, and (unless it is a delete
    /// marker) its line and entry.
    best: Option<(OffsetDateTime, Option<(u64, ObjectEntry)>)>,
}

/// What the selector says about one input entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Selected {
    /// The previous key's group ended: this is its chosen version (if any); the input entry
    /// starts a new group.
    GroupEnded(Option<(u64, ObjectEntry)>),
    /// The entry joined the current group.
    Same,
}

impl AsOfSelector {
    pub fn new(as_of: OffsetDateTime) -> Self {
        AsOfSelector {
            as_of,
            current_key: None,
            best: None,
        }
    }

    /// Feeds one version or delete marker. The chosen entry comes back with its `line_no`.
    pub fn feed(
        &mut self,
        line_no: u64,
        entry: &ObjectEntry,
        is_delete_marker: bool,
    ) -> Result<Selected, String> {
        let key = (entry.object.bucket.clone(), entry.object.key.clone());
        let modified = entry
            .last_modified
            .as_deref()
            .ok_or_else(|| {
                format!(
                    "as-of selection needs LastModified for {}",
                    entry.object.key
                )
            })
            .and_then(parse_time)?;
        let outcome = if self.current_key.as_ref() != Some(&key) {
            let ended = self.take_choice();
            self.current_key = Some(key);
            Selected::GroupEnded(ended)
        } else {
            Selected::Same
        };
        if modified <= self.as_of && self.best.as_ref().is_none_or(|(t, _)| modified > *t) {
            self.best = Some((
                modified,
                (!is_delete_marker).then(|| (line_no, entry.clone())),
            ));
        }
        Ok(outcome)
    }

    fn take_choice(&mut self) -> Option<(u64, ObjectEntry)> {
        self.best.take().and_then(|(_, chosen)| chosen)
    }

    /// The last group's choice, at the end of the input.
    pub fn finish(&mut self) -> Option<(u64, ObjectEntry)> {
        self.current_key = None;
        self.take_choice()
    }
}

/// A chunk ready to be written. `resume` is the checkpoint that may be recorded once this chunk
/// (and every one before it) is written: None when the planner holds tasks read before the
/// cursor that are not yet in a chunk, so a checkpoint here could lose them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkOut {
    pub seq: u64,
    pub tasks: Vec<ChunkTask>,
    pub resume: Option<PlanProgress>,
}

/// Sources feed lines with the cursors before and after each; the planner selects (as-of),
/// chunks and says where a resumed planner must start.
#[derive(Debug)]
pub struct Planner {
    chunker: Chunker,
    as_of: Option<AsOfSelector>,
    /// Cursor before the first line of the key group the as-of selector is holding.
    group_start: Cursor,
    group_size: u64,
    /// Malformed lines read inside a held group: released with it.
    held: Vec<(u64, ParsedLine)>,
}

impl Planner {
    /// `keep_etags`: tasks keep the ETags the source knows (pinned jobs). `as_of`: select per key
    /// here (sources that list versions); None when the source has no versions to choose from.
    pub fn new(
        chunk_size: usize,
        progress: PlanProgress,
        keep_etags: bool,
        as_of: Option<&str>,
        check_versions: bool,
    ) -> Result<Self, String> {
        let as_of = match as_of {
            Some(t) => Some(AsOfSelector::new(parse_time(t)?)),
            None => None,
        };
        let group_start = progress.cursor.clone();
        Ok(Planner {
            chunker: Chunker::new(chunk_size, progress, keep_etags, check_versions),
            as_of,
            group_start,
            group_size: 0,
            held: Vec::new(),
        })
    }

    pub fn progress(&self) -> &PlanProgress {
        &self.chunker.progress
    }

    /// Counts an entry a source read but filtered out.
    pub fn skip(&mut self) {
        self.chunker.skip();
    }

    fn emit(&mut self, tasks: Vec<ChunkTask>, out: &mut Vec<ChunkOut>) {
        out.push(ChunkOut {
            seq: self.chunker.progress.next_seq - 1,
            tasks,
            resume: None,
        });
    }

    /// Marks the last chunk of `out` resumable at `cursor` when nothing read before it is held.
    fn mark_resumable(&mut self, first_new: usize, cursor: &Cursor, out: &mut [ChunkOut]) {
        if out.len() > first_new && self.chunker.pending() == 0 && self.held.is_empty() {
            let mut progress = self.chunker.progress.clone();
            progress.cursor = cursor.clone();
            if let Some(last) = out.last_mut() {
                last.resume = Some(progress);
            }
        }
    }

    pub fn feed(
        &mut self,
        line_no: u64,
        parsed: ParsedLine,
        before: &Cursor,
        after: &Cursor,
        out: &mut Vec<ChunkOut>,
    ) -> Result<(), String> {
        let first_new = out.len();
        if self.as_of.is_none() {
            if let Some(tasks) = self.chunker.push(line_no, parsed)? {
                self.emit(tasks, out);
            }
            self.mark_resumable(first_new, after, out);
            return Ok(());
        }
        let (entry, is_delete_marker) = match parsed {
            ParsedLine::Blank => return Ok(()),
            ParsedLine::Malformed(_) => {
                self.held.push((line_no, parsed));
                return Ok(());
            }
            ParsedLine::Object(entry) => (entry, false),
            ParsedLine::DeleteMarker(entry) => (entry, true),
        };
        let selector = self.as_of.as_mut().ok_or("as-of selector missing")?;
        if let Selected::GroupEnded(choice) = selector.feed(line_no, &entry, is_delete_marker)? {
            self.release_group(choice, out)?;
            self.group_start = before.clone();
            self.group_size = 0;
            self.mark_resumable(first_new, before, out);
        }
        self.group_size += 1;
        Ok(())
    }

    fn release_group(
        &mut self,
        choice: Option<(u64, ObjectEntry)>,
        out: &mut Vec<ChunkOut>,
    ) -> Result<(), String> {
        let chosen = u64::from(choice.is_some());
        for _ in chosen..self.group_size {
            self.chunker.skip();
        }
        let mut lines: Vec<(u64, ParsedLine)> = std::mem::take(&mut self.held);
        if let Some((line, entry)) = choice {
            lines.push((line, ParsedLine::Object(entry)));
        }
        lines.sort_by_key(|(line, _)| *line);
        for (line, parsed) in lines {
            if let Some(tasks) = self.chunker.push(line, parsed)? {
                self.emit(tasks, out);
            }
        }
        Ok(())
    }

    /// The end of the manifest: releases what is held and the last partial chunk.
    pub fn finish(
        &mut self,
        end: &Cursor,
        out: &mut Vec<ChunkOut>,
    ) -> Result<PlanProgress, String> {
        let first_new = out.len();
        if let Some(selector) = self.as_of.as_mut() {
            let choice = selector.finish();
            self.release_group(choice, out)?;
            self.group_size = 0;
        }
        if let Some(tasks) = self.chunker.finish() {
            self.emit(tasks, out);
        }
        self.chunker.progress.cursor = end.clone();
        self.mark_resumable(first_new, end, out);
        Ok(self.chunker.progress.clone())
    }
}

/// S3 `JobManifestGeneratorFilter`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorFilter {
    pub prefixes: Vec<String>,
    pub suffixes: Vec<String>,
    pub substrings: Vec<String>,
    pub created_after: Option<String>,
    pub created_before: Option<String>,
    pub size_greater_than: Option<u64>,
    pub size_less_than: Option<u64>,
    pub storage_classes: Vec<String>,
}

impl GeneratorFilter {
    /// Prefixes to list: the constraint's prefixes with those covered by a shorter one removed,
    /// sorted; one empty prefix (the whole bucket) when there are none.
    pub fn listing_prefixes(&self) -> Vec<String> {
        let mut prefixes = self.prefixes.clone();
        prefixes.sort();
        prefixes.dedup();
        let mut kept: Vec<String> = Vec::new();
        for p in prefixes {
            if !kept.iter().any(|k| p.starts_with(k.as_str())) {
                kept.push(p);
            }
        }
        if kept.is_empty() {
            kept.push(String::new());
        }
        kept
    }

    pub fn matches(
        &self,
        key: &str,
        last_modified: Option<OffsetDateTime>,
        size: u64,
        storage_class: Option<&str>,
    ) -> bool {
        let any = |list: &[String], f: &dyn Fn(&str) -> bool| {
            list.is_empty() || list.iter().any(|v| f(v))
        };
        if !any(&self.prefixes, &|p| key.starts_with(p))
            || !any(&self.suffixes, &|s| key.ends_with(s))
            || !any(&self.substrings, &|s| key.contains(s))
        {
            return false;
        }
        if let (Some(after), Some(modified)) = (
            self.created_after
                .as_deref()
                .and_then(|t| parse_time(t).ok()),
            last_modified,
        ) {
            if modified <= after {
                return false;
            }
        }
        if let (Some(before), Some(modified)) = (
            self.created_before
                .as_deref()
                .and_then(|t| parse_time(t).ok()),
            last_modified,
        ) {
            if modified >= before {
                return false;
            }
        }
        if self.size_greater_than.is_some_and(|min| size <= min)
            || self.size_less_than.is_some_and(|max| size >= max)
        {
            return false;
        }
        let class = storage_class.unwrap_or("STANDARD");
        self.storage_classes.is_empty() || self.storage_classes.iter().any(|c| c == class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{MalformedLine, ObjectRef};

    fn entry(key: &str, version: &str, modified: &str) -> ObjectEntry {
        ObjectEntry {
            object: ObjectRef {
                bucket: "b".into(),
                key: key.into(),
                version_id: Some(version.into()),
            },
            etag: Some(format!("etag-{version}")),
            size: Some(10),
            last_modified: Some(modified.into()),
            ..Default::default()
        }
    }

    #[test]
    fn chunker_fills_chunks_and_counts() {
        let mut chunker = Chunker::new(2, PlanProgress::default(), false, true);
        assert_eq!(chunker.push(1, ParsedLine::Blank).unwrap(), None);
        assert_eq!(
            chunker
                .push(2, ParsedLine::Object(entry("a", "v1", "t")))
                .unwrap(),
            None
        );
        let malformed = MalformedLine {
            line: 3,
            bucket: String::new(),
            key_encoded: "x".into(),
            message: "bad".into(),
        };
        let chunk = chunker
            .push(3, ParsedLine::Malformed(malformed))
            .unwrap()
            .expect("full");
        assert_eq!(chunk.len(), 2);
        assert!(
            matches!(
                &chunk[0],
                ChunkTask::Object {
                    etag: None,
                    size: Some(10),
                    ..
                }
            ),
            "unpinned jobs drop the ETag"
        );
        chunker
            .push(4, ParsedLine::DeleteMarker(entry("a", "v2", "t")))
            .unwrap();
        chunker
            .push(5, ParsedLine::Object(entry("b", "v1", "t")))
            .unwrap();
        assert_eq!(chunker.finish().unwrap().len(), 1);
        assert_eq!(chunker.finish(), None);
        let p = &chunker.progress;
        assert_eq!(
            (p.tasks, p.next_seq, p.malformed, p.skipped, p.bytes),
            (3, 2, 1, 1, 20)
        );
    }

    #[test]
    fn chunker_refuses_mixed_versions_when_asked() {
        let mut chunker = Chunker::new(10, PlanProgress::default(), true, true);
        chunker
            .push(1, ParsedLine::Object(entry("a", "v1", "t")))
            .unwrap();
        let mut unversioned = entry("b", "v1", "t");
        unversioned.object.version_id = None;
        assert!(chunker.push(2, ParsedLine::Object(unversioned)).is_err());
    }

    #[test]
    fn as_of_picks_the_newest_version_not_later_than_the_time() {
        let mut selector = AsOfSelector::new(parse_time("2026-01-10T00:00:00Z").unwrap());
        let feed = |s: &mut AsOfSelector, line, e: ObjectEntry, dm| s.feed(line, &e, dm).unwrap();
        // key a: v3 (after), v2 (chosen), v1 (older)
        assert_eq!(
            feed(
                &mut selector,
                1,
                entry("a", "v3", "2026-01-11T00:00:00Z"),
                false
            ),
            Selected::GroupEnded(None)
        );
        assert_eq!(
            feed(
                &mut selector,
                2,
                entry("a", "v2", "2026-01-09T00:00:00Z"),
                false
            ),
            Selected::Same
        );
        assert_eq!(
            feed(
                &mut selector,
                3,
                entry("a", "v1", "2026-01-01T00:00:00Z"),
                false
            ),
            Selected::Same
        );
        // key b: deleted before the time -> nothing
        let Selected::GroupEnded(Some((line, chosen))) = feed(
            &mut selector,
            4,
            entry("b", "d1", "2026-01-05T00:00:00Z"),
            true,
        ) else {
            panic!()
        };
        assert_eq!((line, chosen.object.version_id.as_deref()), (2, Some("v2")));
        feed(
            &mut selector,
            5,
            entry("b", "v1", "2026-01-02T00:00:00Z"),
            false,
        );
        // key c: created after the time -> nothing
        assert_eq!(
            feed(
                &mut selector,
                6,
                entry("c", "v1", "2026-01-12T00:00:00Z"),
                false
            ),
            Selected::GroupEnded(None)
        );
        assert_eq!(selector.finish(), None);
    }

    #[test]
    fn generator_filter_matches_every_constraint() {
        let filter = GeneratorFilter {
            prefixes: vec!["logs/".into(), "data/".into()],
            suffixes: vec![".gz".into()],
            substrings: vec!["2026".into()],
            created_after: Some("2026-01-01T00:00:00Z".into()),
            created_before: Some("2026-02-01T00:00:00Z".into()),
            size_greater_than: Some(10),
            size_less_than: Some(1000),
            storage_classes: vec!["STANDARD".into()],
        };
        let t = |s: &str| Some(parse_time(s).unwrap());
        let jan = t("2026-01-15T00:00:00Z");
        assert!(filter.matches("logs/2026/a.gz", jan, 100, None));
        assert!(!filter.matches("other/2026/a.gz", jan, 100, None), "prefix");
        assert!(!filter.matches("logs/2026/a.txt", jan, 100, None), "suffix");
        assert!(
            !filter.matches("logs/2025/a.gz", jan, 100, None),
            "substring"
        );
        assert!(
            !filter.matches("logs/2026/a.gz", t("2025-12-31T00:00:00Z"), 100, None),
            "created after"
        );
        assert!(
            !filter.matches("logs/2026/a.gz", t("2026-02-02T00:00:00Z"), 100, None),
            "created before"
        );
        assert!(
            !filter.matches("logs/2026/a.gz", jan, 10, None),
            "size greater than is strict"
        );
        assert!(
            !filter.matches("logs/2026/a.gz", jan, 1000, None),
            "size less than is strict"
        );
        assert!(
            !filter.matches("logs/2026/a.gz", jan, 100, Some("GLACIER")),
            "storage class"
        );
        assert!(GeneratorFilter::default().matches("anything", None, 0, Some("GLACIER")));
    }

    #[test]
    fn listing_prefixes_drop_covered_ones() {
        let filter = GeneratorFilter {
            prefixes: vec!["a/b/".into(), "a/".into(), "c".into(), "a/".into()],
            ..Default::default()
        };
        assert_eq!(
            filter.listing_prefixes(),
            vec!["a/".to_string(), "c".to_string()]
        );
        assert_eq!(
            GeneratorFilter::default().listing_prefixes(),
            vec![String::new()]
        );
    }

    fn cursor(line: u64) -> Cursor {
        Cursor {
            line,
            ..Default::default()
        }
    }

    #[test]
    fn planner_marks_every_chunk_resumable_without_as_of() {
        let mut planner = Planner::new(2, PlanProgress::default(), false, None, false).unwrap();
        let mut out = Vec::new();
        for i in 1..=5u64 {
            planner
                .feed(
                    i,
                    ParsedLine::Object(entry(&format!("k{i}"), "v", "t")),
                    &cursor(i - 1),
                    &cursor(i),
                    &mut out,
                )
                .unwrap();
        }
        let progress = planner.finish(&cursor(5), &mut out).unwrap();
        assert_eq!(
            out.iter()
                .map(|c| (c.seq, c.tasks.len()))
                .collect::<Vec<_>>(),
            vec![(0, 2), (1, 2), (2, 1)]
        );
        assert_eq!(out[0].resume.as_ref().unwrap().cursor, cursor(2));
        assert_eq!(out[1].resume.as_ref().unwrap().next_seq, 2);
        assert_eq!(out[2].resume.as_ref().unwrap().cursor, cursor(5));
        assert_eq!(progress.tasks, 5);
    }

    #[test]
    fn planner_resumes_as_of_groups_from_their_first_line() {
        let lines = [
            ("a", "a2", "2026-01-09T00:00:00Z"),
            ("a", "a1", "2026-01-01T00:00:00Z"),
            ("b", "b1", "2026-01-02T00:00:00Z"),
            ("c", "c2", "2026-01-11T00:00:00Z"),
            ("c", "c1", "2026-01-03T00:00:00Z"),
        ];
        let run = |start: usize, progress: PlanProgress| {
            let mut planner =
                Planner::new(1, progress, true, Some("2026-01-10T00:00:00Z"), false).unwrap();
            let mut out = Vec::new();
            for (i, (key, version, time)) in lines.iter().enumerate().skip(start) {
                let line = i as u64 + 1;
                planner
                    .feed(
                        line,
                        ParsedLine::Object(entry(key, version, time)),
                        &cursor(line - 1),
                        &cursor(line),
                        &mut out,
                    )
                    .unwrap();
            }
            planner.finish(&cursor(5), &mut out).unwrap();
            out
        };
        let all = run(0, PlanProgress::default());
        let chosen: Vec<String> = all
            .iter()
            .flat_map(|c| c.tasks.iter())
            .map(|t| match t {
                ChunkTask::Object { object, .. } => object.version_id.clone().unwrap(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(chosen, vec!["a2", "b1", "c1"]);
        // Chunk 0 (a2) is emitted when b starts at line 3: resume before line 3.
        let resume = all[0].resume.clone().unwrap();
        assert_eq!(resume.cursor, cursor(2));
        assert_eq!(resume.skipped, 1);
        // A planner resumed there plans exactly the rest.
        let rest = run(2, resume);
        assert_eq!(rest.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(rest, all[1..].to_vec());
    }
}
