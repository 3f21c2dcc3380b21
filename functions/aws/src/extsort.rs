//! Bounded-memory external sort. An S3 Inventory report is split over many files whose rows are
//! not in key order across files, but a backup diff walks keys the way ListObjectVersions returns
//! them; an inventory of a large bucket does not fit in a Lambda's memory, so sorted runs are
//! spilled to anonymous temporary files and merged back. `ExternalSorter` sorts any
//! `SortRecord` (continuous mode's journal too); `EntrySorter` sorts object entries.
//!
//! Entry order: key ascending by UTF-8 bytes; within a key newest first — the `is_latest` entry, then
//! LastModified descending (compared as instants, so `Z`, offsets and fractional seconds mix
//! correctly; unparseable times after parsed ones, missing ones last), then version ID
//! descending, then delete markers before versions. Entries equal on all of that (exact
//! duplicates, or the same key in two buckets) keep the order they were pushed in, so the output
//! is fully deterministic.

use batchops_core::manifest::{ObjectEntry, ObjectRef};
use batchops_core::plan::parse_time;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

/// Most runs kept on disk at once, so open file descriptors stay far below Lambda's 1,024.
const MAX_OPEN_RUNS: usize = 256;

/// A field longer than this in a spill file can only be corruption; refusing it avoids a huge
/// allocation. S3 keys are at most 1,024 bytes.
const MAX_FIELD_LEN: u64 = 1 << 24;

const DELETE_MARKER: u16 = 1;
const HAS_VERSION: u16 = 1 << 1;
const HAS_ETAG: u16 = 1 << 2;
const HAS_SIZE: u16 = 1 << 3;
const HAS_LAST_MODIFIED: u16 = 1 << 4;
const HAS_IS_LATEST: u16 = 1 << 5;
const IS_LATEST: u16 = 1 << 6;
const HAS_STORAGE_CLASS: u16 = 1 << 7;
const HAS_MODIFIED_NANOS: u16 = 1 << 8;

/// What the external sort sorts: an order, and a self-delimiting encoding for spill files.
/// Records equal in `compare` come out in push order.
pub trait SortRecord: Sized {
    fn compare(&self, other: &Self) -> Ordering;
    fn encode(&self, w: &mut impl Write) -> io::Result<()>;
    fn decode(r: &mut impl Read) -> io::Result<Self>;
}

/// An entry with its LastModified parsed once, not at every comparison.
#[derive(Debug, Clone)]
struct Record {
    entry: ObjectEntry,
    delete_marker: bool,
    /// Nanoseconds since the Unix epoch; `None` when LastModified is missing or unparseable.
    modified: Option<i128>,
}

impl Record {
    fn new(entry: ObjectEntry, delete_marker: bool) -> Self {
        let modified = entry
            .last_modified
            .as_deref()
            .and_then(|t| parse_time(t).ok())
            .map(|t| t.unix_timestamp_nanos());
        Record {
            entry,
            delete_marker,
            modified,
        }
    }
}

/// The ListObjectVersions order (see the module docs). Not total over every field: entries equal
/// here are ordered by push order by the callers (stable sort, then source index in the merge).
fn compare(a: &Record, b: &Record) -> Ordering {
    let latest_rank = |r: &Record| r.entry.is_latest != Some(true);
    a.entry
        .object
        .key
        .cmp(&b.entry.object.key)
        .then_with(|| latest_rank(a).cmp(&latest_rank(b)))
        // Descending: `Some` sorts before `None`, so parsed times come first, newest first.
        .then_with(|| b.modified.cmp(&a.modified))
        // Same instant written differently, or unparseable: the text decides, missing last.
        .then_with(|| b.entry.last_modified.cmp(&a.entry.last_modified))
        .then_with(|| b.entry.object.version_id.cmp(&a.entry.object.version_id))
        .then_with(|| b.delete_marker.cmp(&a.delete_marker))
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("external sort: {what}: {e}"))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("external sort: {message}"),
    )
}

pub(crate) fn write_varint(w: &mut impl Write, mut value: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            buf[n] = byte;
            n += 1;
            break;
        }
        buf[n] = byte | 0x80;
        n += 1;
    }
    w.write_all(&buf[..n])
}

pub(crate) fn read_varint(r: &mut impl Read) -> io::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte)?;
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(invalid("varint longer than 64 bits in spill run".into()))
}

pub(crate) fn write_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    write_varint(w, s.len() as u64)?;
    w.write_all(s.as_bytes())
}

pub(crate) fn read_str(r: &mut impl Read) -> io::Result<String> {
    let len = read_varint(r)?;
    if len > MAX_FIELD_LEN {
        return Err(invalid(format!(
            "field of {len} bytes in spill run (corrupt)"
        )));
    }
    let mut bytes = vec![0u8; len as usize];
    r.read_exact(&mut bytes)?;
    String::from_utf8(bytes).map_err(|_| invalid("field in spill run is not UTF-8".into()))
}

impl SortRecord for Record {
    fn compare(&self, other: &Self) -> Ordering {
        compare(self, other)
    }

    fn encode(&self, w: &mut impl Write) -> io::Result<()> {
        encode(w, self)
    }

    fn decode(r: &mut impl Read) -> io::Result<Self> {
        decode(r)
    }
}

/// Self-delimiting: a flags word says which optional fields follow, strings are
/// length-prefixed, so keys with tabs, newlines or any Unicode survive as they are.
fn encode(w: &mut impl Write, record: &Record) -> io::Result<()> {
    let e = &record.entry;
    let mut flags = 0u16;
    for (set, bit) in [
        (record.delete_marker, DELETE_MARKER),
        (e.object.version_id.is_some(), HAS_VERSION),
        (e.etag.is_some(), HAS_ETAG),
        (e.size.is_some(), HAS_SIZE),
        (e.last_modified.is_some(), HAS_LAST_MODIFIED),
        (e.is_latest.is_some(), HAS_IS_LATEST),
        (e.is_latest == Some(true), IS_LATEST),
        (e.storage_class.is_some(), HAS_STORAGE_CLASS),
        (record.modified.is_some(), HAS_MODIFIED_NANOS),
    ] {
        if set {
            flags |= bit;
        }
    }
    w.write_all(&flags.to_le_bytes())?;
    write_str(w, &e.object.bucket)?;
    write_str(w, &e.object.key)?;
    for s in [
        &e.object.version_id,
        &e.etag,
        &e.last_modified,
        &e.storage_class,
    ]
    .into_iter()
    .flatten()
    {
        write_str(w, s)?;
    }
    if let Some(size) = e.size {
        write_varint(w, size)?;
    }
    if let Some(nanos) = record.modified {
        w.write_all(&nanos.to_le_bytes())?;
    }
    Ok(())
}

fn decode(r: &mut impl Read) -> io::Result<Record> {
    let mut word = [0u8; 2];
    r.read_exact(&mut word)?;
    let flags = u16::from_le_bytes(word);
    let has = |bit: u16| flags & bit != 0;
    let bucket = read_str(r)?;
    let key = read_str(r)?;
    let mut optional = |bit: u16| -> io::Result<Option<String>> {
        if has(bit) {
            read_str(r).map(Some)
        } else {
            Ok(None)
        }
    };
    let version_id = optional(HAS_VERSION)?;
    let etag = optional(HAS_ETAG)?;
    let last_modified = optional(HAS_LAST_MODIFIED)?;
    let storage_class = optional(HAS_STORAGE_CLASS)?;
    let size = if has(HAS_SIZE) {
        Some(read_varint(r)?)
    } else {
        None
    };
    let modified = if has(HAS_MODIFIED_NANOS) {
        let mut nanos = [0u8; 16];
        r.read_exact(&mut nanos)?;
        Some(i128::from_le_bytes(nanos))
    } else {
        None
    };
    Ok(Record {
        entry: ObjectEntry {
            object: ObjectRef {
                bucket,
                key,
                version_id,
            },
            etag,
            size,
            last_modified,
            is_latest: has(HAS_IS_LATEST).then_some(has(IS_LATEST)),
            storage_class,
        },
        delete_marker: has(DELETE_MARKER),
        modified,
    })
}

/// A sorted run in an anonymous temporary file (gone when dropped), rewound for reading.
#[derive(Debug)]
struct Run<R> {
    reader: BufReader<File>,
    /// Records written; reading stops here, so a short file is an error, not a silent end.
    len: u64,
    read: u64,
    records: std::marker::PhantomData<R>,
}

impl<R: SortRecord> Run<R> {
    fn write(records: impl Iterator<Item = io::Result<R>>) -> io::Result<Run<R>> {
        let file = tempfile::tempfile().map_err(|e| context(e, "creating a spill file"))?;
        let mut writer = BufWriter::new(file);
        let mut len = 0u64;
        for record in records {
            record?
                .encode(&mut writer)
                .map_err(|e| context(e, "writing a spill run"))?;
            len += 1;
        }
        let mut file = writer
            .into_inner()
            .map_err(|e| context(e.into_error(), "flushing a spill run"))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| context(e, "rewinding a spill run"))?;
        Ok(Run {
            reader: BufReader::new(file),
            len,
            read: 0,
            records: std::marker::PhantomData,
        })
    }

    fn next_record(&mut self) -> io::Result<Option<R>> {
        if self.read == self.len {
            return Ok(None);
        }
        let record = R::decode(&mut self.reader).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid(format!(
                    "spill run ended after {} of {} entries",
                    self.read, self.len
                ))
            } else {
                context(e, "reading a spill run")
            }
        })?;
        self.read += 1;
        Ok(Some(record))
    }
}

#[derive(Debug)]
enum Source<R> {
    Disk(Run<R>),
    Memory(std::vec::IntoIter<R>),
}

impl<R: SortRecord> Source<R> {
    fn next_record(&mut self) -> io::Result<Option<R>> {
        match self {
            Source::Disk(run) => run.next_record(),
            Source::Memory(records) => Ok(records.next()),
        }
    }
}

/// The smallest unread record of one source. Sources are numbered in push order, and equal
/// records come out lowest source first, which keeps the whole sort stable.
#[derive(Debug)]
struct Head<R> {
    record: R,
    source: usize,
}

impl<R: SortRecord> Ord for Head<R> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.record
            .compare(&other.record)
            .then_with(|| self.source.cmp(&other.source))
    }
}

impl<R: SortRecord> PartialOrd for Head<R> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<R: SortRecord> PartialEq for Head<R> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<R: SortRecord> Eq for Head<R> {}

/// k-way merge holding one record per source.
#[derive(Debug)]
struct Merger<R> {
    sources: Vec<Source<R>>,
    heap: BinaryHeap<Reverse<Head<R>>>,
    /// A source failed while refilling after a record was taken: that record is still good and
    /// goes out first, the error next.
    pending: Option<io::Error>,
}

impl<R: SortRecord> Merger<R> {
    fn new(mut sources: Vec<Source<R>>) -> io::Result<Self> {
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (source, s) in sources.iter_mut().enumerate() {
            if let Some(record) = s.next_record()? {
                heap.push(Reverse(Head { record, source }));
            }
        }
        Ok(Merger {
            sources,
            heap,
            pending: None,
        })
    }

    fn next_record(&mut self) -> io::Result<Option<R>> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        let Some(Reverse(head)) = self.heap.pop() else {
            return Ok(None);
        };
        if let Some(source) = self.sources.get_mut(head.source) {
            match source.next_record() {
                Ok(Some(record)) => self.heap.push(Reverse(Head {
                    record,
                    source: head.source,
                })),
                Ok(None) => {}
                Err(e) => self.pending = Some(e),
            }
        }
        Ok(Some(head.record))
    }
}

impl<R: SortRecord> Iterator for Merger<R> {
    type Item = io::Result<R>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// A spilled run and how many merge passes its entries went through. Levels never increase
/// along the list, so the runs of the lowest levels are always the newest ones, at the end.
#[derive(Debug)]
struct SpilledRun<R> {
    run: Run<R>,
    level: u32,
}

/// Sorts records in bounded memory: at most `run_entries` records are held before a sorted run
/// goes to a temporary file, and merging holds one record per run.
#[derive(Debug)]
pub struct ExternalSorter<R> {
    run_entries: usize,
    /// Most runs kept on disk; reaching it merges the newest runs into one.
    max_runs: usize,
    buffer: Vec<R>,
    runs: Vec<SpilledRun<R>>,
    pushed: u64,
    spilled: usize,
    /// Intermediate merges done to keep the number of runs bounded.
    merges: usize,
}

impl<R: SortRecord> ExternalSorter<R> {
    /// `run_entries`: records held in memory before a sorted run is spilled to a temporary file.
    pub fn new(run_entries: usize) -> Self {
        Self::with_max_runs(run_entries, MAX_OPEN_RUNS)
    }

    fn with_max_runs(run_entries: usize, max_runs: usize) -> Self {
        ExternalSorter {
            run_entries: run_entries.max(1),
            // The final merge reads every run plus the in-memory remainder.
            max_runs: max_runs.max(2),
            buffer: Vec::new(),
            runs: Vec::new(),
            pushed: 0,
            spilled: 0,
            merges: 0,
        }
    }

    pub fn push(&mut self, record: R) -> io::Result<()> {
        self.buffer.push(record);
        self.pushed += 1;
        if self.buffer.len() >= self.run_entries {
            self.spill()?;
        }
        Ok(())
    }

    /// Records pushed so far.
    pub fn len(&self) -> u64 {
        self.pushed
    }

    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Number of runs spilled to disk so far (for tests/metrics).
    pub fn spilled_runs(&self) -> usize {
        self.spilled
    }

    /// Sorted stream: k-way merge of the spilled runs and the in-memory remainder.
    pub fn finish(mut self) -> io::Result<Sorted<R>> {
        // Stable, so equal records keep push order within the run.
        self.buffer.sort_by(R::compare);
        let mut sources: Vec<Source<R>> =
            self.runs.into_iter().map(|r| Source::Disk(r.run)).collect();
        if !self.buffer.is_empty() {
            sources.push(Source::Memory(self.buffer.into_iter()));
        }
        Ok(Sorted {
            merger: Merger::new(sources)?,
            failed: false,
        })
    }

    fn spill(&mut self) -> io::Result<()> {
        self.buffer.sort_by(R::compare);
        let run = Run::write(self.buffer.drain(..).map(Ok))?;
        self.runs.push(SpilledRun { run, level: 0 });
        self.spilled += 1;
        if self.runs.len() >= self.max_runs {
            self.consolidate()?;
        }
        Ok(())
    }

    /// Merges the newest runs of the lowest level (at least two) into one run a level up.
    /// Like a counter, each entry is rewritten about once per level rather than once per
    /// consolidation, and only runs adjacent in push order are merged, so stability holds.
    fn consolidate(&mut self) -> io::Result<()> {
        let Some(mut level) = self.runs.last().map(|r| r.level) else {
            return Ok(());
        };
        let start = loop {
            let start = self
                .runs
                .iter()
                .rposition(|r| r.level > level)
                .map_or(0, |i| i + 1);
            if self.runs.len() - start >= 2 || start == 0 {
                break start;
            }
            level = self.runs[start - 1].level;
        };
        let group = self.runs.split_off(start);
        let merger = Merger::new(group.into_iter().map(|r| Source::Disk(r.run)).collect())?;
        let run = Run::write(merger)?;
        self.runs.push(SpilledRun {
            run,
            level: level + 1,
        });
        self.merges += 1;
        Ok(())
    }
}

/// The sorted records. Stops after the first error: a run that could not be read leaves a hole
/// in the order.
#[derive(Debug)]
pub struct Sorted<R> {
    merger: Merger<R>,
    failed: bool,
}

impl<R: SortRecord> Iterator for Sorted<R> {
    type Item = io::Result<R>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.merger.next_record() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Sorts inventory rows (entry, is delete marker) into the ListObjectVersions order.
#[derive(Debug)]
pub struct EntrySorter(ExternalSorter<Record>);

impl EntrySorter {
    /// `run_entries`: entries held in memory before a sorted run is spilled to a temporary file.
    pub fn new(run_entries: usize) -> Self {
        EntrySorter(ExternalSorter::new(run_entries))
    }

    pub fn push(&mut self, entry: ObjectEntry, is_delete_marker: bool) -> io::Result<()> {
        self.0.push(Record::new(entry, is_delete_marker))
    }

    /// Entries pushed so far.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of runs spilled to disk so far (for tests/metrics).
    pub fn spilled_runs(&self) -> usize {
        self.0.spilled_runs()
    }

    pub fn finish(self) -> io::Result<SortedEntries> {
        Ok(SortedEntries(self.0.finish()?))
    }
}

/// One inventory row at a time: the entry and whether it is a delete marker.
#[derive(Debug)]
pub struct SortedEntries(Sorted<Record>);

impl Iterator for SortedEntries {
    type Item = io::Result<(ObjectEntry, bool)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0
            .next()
            .map(|record| record.map(|r| (r.entry, r.delete_marker)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, version: Option<&str>, modified: Option<&str>) -> ObjectEntry {
        ObjectEntry {
            object: ObjectRef {
                bucket: "b".into(),
                key: key.into(),
                version_id: version.map(Into::into),
            },
            last_modified: modified.map(Into::into),
            ..Default::default()
        }
    }

    fn sort(
        mut sorter: EntrySorter,
        entries: impl IntoIterator<Item = (ObjectEntry, bool)>,
    ) -> Vec<(ObjectEntry, bool)> {
        for (entry, marker) in entries {
            sorter.push(entry, marker).unwrap();
        }
        sorter.finish().unwrap().map(Result::unwrap).collect()
    }

    fn sort_with(
        run_entries: usize,
        entries: impl IntoIterator<Item = (ObjectEntry, bool)>,
    ) -> Vec<(ObjectEntry, bool)> {
        sort(EntrySorter::new(run_entries), entries)
    }

    /// The same comparator over a stable in-memory sort.
    fn reference(entries: &[(ObjectEntry, bool)]) -> Vec<(ObjectEntry, bool)> {
        let mut records: Vec<Record> = entries
            .iter()
            .map(|(e, m)| Record::new(e.clone(), *m))
            .collect();
        records.sort_by(compare);
        records
            .into_iter()
            .map(|r| (r.entry, r.delete_marker))
            .collect()
    }

    fn keys(sorted: &[(ObjectEntry, bool)]) -> Vec<&str> {
        sorted.iter().map(|(e, _)| e.object.key.as_str()).collect()
    }

    fn versions(sorted: &[(ObjectEntry, bool)]) -> Vec<&str> {
        sorted
            .iter()
            .map(|(e, _)| e.object.version_id.as_deref().unwrap_or("-"))
            .collect()
    }

    /// Deterministic, so a failure reproduces.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    /// Few distinct keys and times, so many entries share a key and the within-key rules and
    /// the tie-breaks all get exercised.
    fn random_entries(seed: u64, n: usize) -> Vec<(ObjectEntry, bool)> {
        let mut rng = SplitMix(seed);
        let parts = [
            "a", "b", "é", "😀", "\t", "\n", " ", "z", "Z", "\u{fffd}", "/",
        ];
        let times = [
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.000Z",
            "2024-01-01T00:00:00.5Z",
            "2023-12-31T23:00:00-02:00",
            "2024-06-30T12:00:00+00:00",
            "not a time",
        ];
        (0..n)
            .map(|_| {
                let key: String = (0..1 + rng.below(3)).map(|_| rng.pick(&parts)).collect();
                let mut e = entry(&key, None, None);
                e.object.bucket = rng.pick(&["b", "c"]).into();
                e.object.version_id = match rng.below(4) {
                    0 => None,
                    1 => Some("null".into()),
                    _ => Some(format!("v{}", rng.below(8))),
                };
                e.last_modified = match rng.below(8) {
                    0 => None,
                    _ => Some(rng.pick(&times).into()),
                };
                e.is_latest = match rng.below(4) {
                    0 => None,
                    1 => Some(true),
                    _ => Some(false),
                };
                e.size = (rng.below(3) > 0).then(|| rng.next());
                e.etag = (rng.below(3) > 0).then(|| format!("\"{:x}\"", rng.next()));
                e.storage_class = (rng.below(2) > 0).then(|| "STANDARD".into());
                (e, rng.below(5) == 0)
            })
            .collect()
    }

    #[test]
    fn keys_sort_by_utf8_bytes() {
        let input = [
            "😀", "\u{fffd}", "é", "z", "ab", "a b", "a\nb", "a\tb", "a", "A", "a/b", "",
        ];
        let sorted = sort_with(4, input.iter().map(|k| (entry(k, Some("v"), None), false)));
        // UTF-16 order would put the emoji (a surrogate pair) before U+FFFD; S3 does not.
        assert_eq!(
            keys(&sorted),
            ["", "A", "a", "a\tb", "a\nb", "a b", "a/b", "ab", "z", "é", "\u{fffd}", "😀"]
        );
    }

    #[test]
    fn latest_first_then_newest_first() {
        let mut latest = entry("k", Some("current"), Some("2020-01-01T00:00:00Z"));
        latest.is_latest = Some(true);
        let input = vec![
            (entry("k", Some("old"), Some("2024-01-01T00:00:00Z")), false),
            // Earlier as text, later as an instant (01:00Z).
            (
                entry("k", Some("offset"), Some("2023-12-31T23:00:00-02:00")),
                false,
            ),
            (
                entry("k", Some("fraction"), Some("2024-01-01T00:00:00.5Z")),
                false,
            ),
            (latest, false),
            (entry("j", Some("other-key"), None), false),
        ];
        let sorted = sort_with(2, input);
        assert_eq!(
            versions(&sorted),
            ["other-key", "current", "offset", "fraction", "old"]
        );
    }

    #[test]
    fn unparseable_times_after_parsed_and_missing_last() {
        let input = vec![
            (entry("k", Some("missing"), None), false),
            (entry("k", Some("garbage"), Some("yesterday")), false),
            (
                entry("k", Some("parsed"), Some("2001-01-01T00:00:00Z")),
                false,
            ),
        ];
        assert_eq!(
            versions(&sort_with(1, input)),
            ["parsed", "garbage", "missing"]
        );
    }

    #[test]
    fn ties_break_by_version_descending_then_delete_marker_first() {
        let t = Some("2024-01-01T00:00:00Z");
        let input = vec![
            (entry("k", Some("a"), t), false),
            (entry("k", Some("b"), t), false),
            (entry("k", Some("a"), t), true),
            (entry("k", None, t), false),
        ];
        let sorted = sort_with(3, input);
        assert_eq!(versions(&sorted), ["b", "a", "a", "-"]);
        assert_eq!(
            sorted.iter().map(|(_, m)| *m).collect::<Vec<_>>(),
            [false, true, false, false]
        );
    }

    #[test]
    fn exact_duplicates_are_kept_in_push_order() {
        let first = entry("k", Some("v"), None);
        let mut second = first.clone();
        second.object.bucket = "other".into();
        let input = vec![
            (first.clone(), false),
            (second.clone(), false),
            (first.clone(), false),
        ];
        for run_entries in [1, 2, 10] {
            let sorted = sort_with(run_entries, input.clone());
            assert_eq!(sorted, input, "run_entries {run_entries}");
        }
    }

    #[test]
    fn empty_input_yields_nothing() {
        let sorter = EntrySorter::new(10);
        assert!(sorter.is_empty());
        assert_eq!(sorter.len(), 0);
        assert_eq!(sorter.spilled_runs(), 0);
        assert_eq!(sorter.finish().unwrap().count(), 0);
    }

    #[test]
    fn every_field_round_trips_through_a_spill() {
        let full = ObjectEntry {
            object: ObjectRef {
                bucket: "bucket.with-dots".into(),
                key: "dir/\tta b\nnewline\r\u{0}nul é 😀 %2F".into(),
                version_id: Some(
                    "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo".into(),
                ),
            },
            etag: Some("\"d41d8cd98f00b204e9800998ecf8427e-12\"".into()),
            size: Some(u64::MAX),
            last_modified: Some("2024-02-29T23:59:59.999Z".into()),
            is_latest: Some(false),
            storage_class: Some("DEEP_ARCHIVE".into()),
        };
        let mut latest = full.clone();
        latest.object.key = "latest".into();
        latest.is_latest = Some(true);
        latest.size = Some(0);
        latest.etag = Some(String::new());
        let bare = ObjectEntry::of(ObjectRef {
            bucket: String::new(),
            key: "bare".into(),
            version_id: None,
        });
        let input = vec![(full, false), (bare, true), (latest, false)];
        let mut sorter = EntrySorter::new(1);
        for (e, m) in input.clone() {
            sorter.push(e, m).unwrap();
        }
        assert_eq!(sorter.spilled_runs(), 3);
        assert_eq!(sorter.len(), 3);
        let sorted: Vec<_> = sorter.finish().unwrap().map(Result::unwrap).collect();
        assert_eq!(sorted, reference(&input));
        assert_eq!(sorted.len(), 3);
        for item in &input {
            assert!(sorted.contains(item), "lost {item:?}");
        }
    }

    #[test]
    fn many_spilled_runs_match_an_in_memory_sort() {
        let input = random_entries(1, 10_000);
        let mut sorter = EntrySorter::new(97);
        for (e, m) in input.clone() {
            sorter.push(e, m).unwrap();
        }
        assert_eq!(sorter.spilled_runs(), 10_000 / 97);
        assert_eq!(sorter.0.merges, 0);
        assert_eq!(sorter.len(), 10_000);
        let sorted: Vec<_> = sorter.finish().unwrap().map(Result::unwrap).collect();
        assert_eq!(sorted, reference(&input));
    }

    #[test]
    fn multi_pass_merge_keeps_runs_bounded_and_order_exact() {
        let input = random_entries(2, 3_000);
        let mut sorter = EntrySorter(ExternalSorter::with_max_runs(3, 4));
        for (e, m) in input.clone() {
            sorter.push(e, m).unwrap();
            assert!(sorter.0.runs.len() < 4, "{} runs open", sorter.0.runs.len());
            assert!(sorter.0.runs.windows(2).all(|w| w[0].level >= w[1].level));
        }
        assert_eq!(sorter.spilled_runs(), 1_000);
        assert!(sorter.0.merges > 100, "{} merges", sorter.0.merges);
        assert!(sorter.0.runs.iter().any(|r| r.level >= 3));
        let sorted: Vec<_> = sorter.finish().unwrap().map(Result::unwrap).collect();
        assert_eq!(sorted, reference(&input));
    }

    #[test]
    fn small_inputs_sort_the_same_at_every_run_size() {
        let input = random_entries(3, 200);
        let expected = reference(&input);
        for run_entries in [1, 2, 7, 199, 200, 201, usize::MAX] {
            assert_eq!(sort_with(run_entries, input.clone()), expected);
        }
        for max_runs in [0, 1, 2, 3] {
            let sorter = EntrySorter(ExternalSorter::with_max_runs(5, max_runs));
            assert_eq!(sort(sorter, input.clone()), expected);
        }
    }

    #[test]
    fn truncated_run_is_an_error_not_a_short_stream() {
        let records = random_entries(4, 3)
            .into_iter()
            .map(|(e, m)| Ok(Record::new(e, m)));
        let mut run = Run::write(records).unwrap();
        run.len += 1;
        let mut merged = SortedEntries(Sorted {
            merger: Merger::new(vec![Source::Disk(run)]).unwrap(),
            failed: false,
        });
        let results: Vec<_> = merged.by_ref().collect();
        assert_eq!(results.len(), 4);
        let err = results[3].as_ref().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("ended after 3 of 4"), "{err}");
        assert!(merged.next().is_none());
    }
}
