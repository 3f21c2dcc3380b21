//! The prepare step: read a manifest (CSV, S3 Inventory report, or a listing of the source
//! bucket) from a cursor on, and turn it into chunks. The planner writes the chunks to the
//! control bucket and checkpoints; `batchops plan` (dry run) counts them and writes nothing.
//!
//! CSV and inventory files are parsed on a blocking thread (decompression and parsing are CPU
//! work) that hands whole chunks to the async side through a small bounded channel, so memory
//! stays flat whatever the manifest's size.

use crate::error::{aws, Error, Result, S3Failure};
use crate::extsort::{EntrySorter, ExternalSorter, SortRecord};
use crate::objects::{md5_hex, put_bytes, put_bytes_pinned, same_etag};
use aws_sdk_s3::Client;
use batchops_core::backup::{
    catalog_directory, copy_within, BackupOut, BackupPlanner, BackupPolicy, CatalogEntry, Differ,
    DraftRow, JournalRead, JournalRow, JournalRows, VersionsMode,
};
use batchops_core::chunk::{chunk_key, ChunkTask};
use batchops_core::encoding::encode_key;
use batchops_core::inventory::{
    verify_file_checksum, verify_manifest_checksum, InventoryCsvParser, InventoryFormat,
    InventoryManifest, InventorySchema,
};
use batchops_core::job::GeneratedManifestDescriptor;
use batchops_core::manifest::{
    CsvManifestParser, LineParser, ManifestFields, ObjectEntry, ObjectRef, ParsedLine,
};
use batchops_core::operation::TaskLimit;
use batchops_core::plan::{
    encode_chunk, parse_time, ChunkOut, Cursor, GeneratorFilter, PlanProgress, Planner,
};
use batchops_core::request::{
    BackupRun, GeneratedManifest, ManifestObject, ManifestOutput, ManifestSource, RestoreSource,
};
use md5::{Digest, Md5};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// Chunks buffered between the parsing thread and the writer.
const CHANNEL_CHUNKS: usize = 4;

/// What a source reports to the consumer.
#[derive(Debug)]
pub enum SourceEvent {
    /// The manifest object's ETag as read (recorded at the first read, checked later).
    ManifestEtag(String),
    Chunk(ChunkOut),
    Finished(PlanProgress),
    /// The manifest cannot run; the job fails with this code and reason.
    Failed {
        code: &'static str,
        reason: String,
    },
    /// Backups: a draft snapshot part, written with the chunks before it.
    Draft {
        seq: u64,
        rows: Vec<DraftRow>,
        resume: Option<PlanProgress>,
    },
    /// Something the job owner should know; the job runs anyway.
    Warning(String),
}

/// Where manifest bytes come from: S3, or the local disk (dry runs and benchmarks).
#[derive(Debug, Clone)]
pub enum Location {
    S3(ManifestObject),
    Local(PathBuf),
}

impl Location {
    fn describe(&self) -> String {
        match self {
            Location::S3(o) => format!("s3://{}/{}", o.bucket, o.key),
            Location::Local(path) => path.display().to_string(),
        }
    }
}

/// What reading needs: the S3 client (absent for purely local dry runs), the table (backup
/// runs read their journal's records there; absent in dry runs, which read no journal) and the
/// runtime handle the blocking thread uses for its calls.
#[derive(Clone)]
pub struct Reader {
    pub s3: Option<Client>,
    pub store: Option<crate::store::Store>,
    pub(crate) handle: Handle,
}

/// Failures the job owner must fix, as opposed to errors worth retrying.
enum OpenFailure {
    Job { code: &'static str, reason: String },
    RangeNotSatisfiable,
    Retry(Error),
}

struct Opened {
    reader: Box<dyn Read + Send>,
    etag: Option<String>,
}

impl Reader {
    pub fn new(s3: Option<Client>) -> Self {
        Reader {
            s3,
            store: None,
            handle: Handle::current(),
        }
    }

    /// With the table: a backup run reads its journal's records from it.
    pub fn with_store(mut self, store: crate::store::Store) -> Self {
        self.store = Some(store);
        self
    }

    fn client(&self) -> std::result::Result<&Client, OpenFailure> {
        self.s3
            .as_ref()
            .ok_or_else(|| OpenFailure::Retry(Error::Invalid("no S3 client configured".into())))
    }

    /// Opens `location` from byte `offset`, requiring `if_match` when given. Blocking: call from
    /// a blocking thread.
    fn open(
        &self,
        location: &Location,
        offset: u64,
        if_match: Option<&str>,
    ) -> std::result::Result<Opened, OpenFailure> {
        match location {
            Location::Local(path) => {
                use std::io::{Seek, SeekFrom};
                let mut file = std::fs::File::open(path).map_err(|e| OpenFailure::Job {
                    code: "ManifestNotReadable",
                    reason: format!("cannot open {}: {e}", path.display()),
                })?;
                file.seek(SeekFrom::Start(offset))
                    .map_err(|e| OpenFailure::Retry(Error::Data(e.to_string())))?;
                Ok(Opened {
                    reader: Box::new(file),
                    etag: None,
                })
            }
            Location::S3(object) => {
                let s3 = self.client()?;
                let mut request = s3
                    .get_object()
                    .bucket(&object.bucket)
                    .key(&object.key)
                    .set_version_id(object.version_id.clone())
                    .set_if_match(if_match.map(str::to_string));
                if offset > 0 {
                    request = request.range(format!("bytes={offset}-"));
                }
                let url = location.describe();
                match self.handle.block_on(request.send()) {
                    Ok(out) => {
                        let etag = out.e_tag().map(str::to_string);
                        let reader = tokio_util::io::SyncIoBridge::new_with_handle(
                            out.body.into_async_read(),
                            self.handle.clone(),
                        );
                        Ok(Opened {
                            reader: Box::new(reader),
                            etag,
                        })
                    }
                    Err(err) => {
                        let failure = S3Failure::from_sdk(&err);
                        Err(match failure.status {
                            Some(412) => {
                                let actual = self.handle.block_on(crate::objects::etag_now(
                                    s3,
                                    &object.bucket,
                                    &object.key,
                                    object.version_id.as_deref(),
                                ));
                                OpenFailure::Job {
                                    code: "ManifestETagMismatch",
                                    reason: format!(
                                        "Manifest.Location.ETag: {url} has ETag {actual}, but the job expects {}; the manifest changed after the job was created",
                                        if_match.unwrap_or_default()
                                    ),
                                }
                            }
                            Some(404) | Some(403) => OpenFailure::Job {
                                code: "ManifestNotReadable",
                                reason: format!(
                                    "cannot read {url}: {} ({})",
                                    failure.code.unwrap_or_default(),
                                    failure.message
                                ),
                            },
                            Some(416) => OpenFailure::RangeNotSatisfiable,
                            _ => OpenFailure::Retry(aws("S3", "GetObject")(err)),
                        })
                    }
                }
            }
        }
    }

    fn read_all(&self, location: &Location) -> std::result::Result<Vec<u8>, OpenFailure> {
        let mut opened = self.open(location, 0, None)?;
        let mut body = Vec::new();
        opened.reader.read_to_end(&mut body).map_err(|e| {
            OpenFailure::Retry(Error::Data(format!("reading {}: {e}", location.describe())))
        })?;
        Ok(body)
    }
}

/// Updates an MD5 with every byte read through it (inventory files are verified as they stream).
struct HashingReader<R> {
    inner: R,
    md5: Md5,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads decompressed bytes that another thread produces.
struct PipeReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    position: usize,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.position == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(block)) => {
                    self.current = block;
                    self.position = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.position);
        buf[..n].copy_from_slice(&self.current[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

/// Gunzips `compressed` on a thread of its own. The thread returns the MD5 of every compressed
/// byte (the whole file, members and trailing bytes alike) once the output is consumed; if the
/// reader stops early, the thread stops at its next block.
fn spawn_gunzip(
    compressed: Box<dyn Read + Send>,
) -> (PipeReader, std::thread::JoinHandle<std::io::Result<String>>) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(8);
    let handle = std::thread::spawn(move || {
        let hashing = HashingReader {
            inner: compressed,
            md5: Md5::new(),
        };
        let mut buffered = BufReader::with_capacity(256 * 1024, hashing);
        {
            let mut gz = flate2::bufread::MultiGzDecoder::new(&mut buffered);
            loop {
                let mut block = vec![0u8; 256 * 1024];
                let mut filled = 0;
                while filled < block.len() {
                    match gz.read(&mut block[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => {
                            let message = e.to_string();
                            let _ = tx.send(Err(e));
                            return Err(std::io::Error::other(message));
                        }
                    }
                }
                if filled == 0 {
                    break;
                }
                block.truncate(filled);
                if tx.send(Ok(block)).is_err() {
                    return Ok(String::new());
                }
            }
        }
        std::io::copy(&mut buffered, &mut std::io::sink())?;
        Ok(hex::encode(buffered.into_inner().md5.finalize()))
    });
    (
        PipeReader {
            rx,
            current: Vec::new(),
            position: 0,
        },
        handle,
    )
}

/// How the source should treat pinning, decided by the planner from the job's options.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    pub chunk_size: usize,
    /// Tasks keep ETags the source knows (pinned jobs).
    pub keep_etags: bool,
    /// As-of selection done while reading (sources that list versions).
    pub as_of: Option<String>,
}

/// Sends events to the consumer; false once it has gone (deadline, lost race): stop reading.
struct Emitter {
    tx: mpsc::Sender<Result<SourceEvent>>,
}

impl Emitter {
    fn send_blocking(&self, event: Result<SourceEvent>) -> bool {
        self.tx.blocking_send(event).is_ok()
    }
    async fn send(&self, event: Result<SourceEvent>) -> bool {
        self.tx.send(event).await.is_ok()
    }
}

/// Starts reading `source` from `progress.cursor`; events arrive on the returned receiver.
pub fn start(
    reader: Reader,
    source: SourceSpec,
    progress: PlanProgress,
    options: SourceOptions,
) -> mpsc::Receiver<Result<SourceEvent>> {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let emitter = Emitter { tx };
    match source {
        SourceSpec::Csv {
            location,
            fields,
            expected_etag,
        } => {
            tokio::task::spawn_blocking(move || {
                let result = read_csv(
                    &reader,
                    &location,
                    fields,
                    expected_etag.as_deref(),
                    progress,
                    &options,
                    &emitter,
                );
                if let Err(err) = result {
                    emitter.send_blocking(Err(err));
                }
            });
        }
        SourceSpec::Inventory {
            location,
            expected_etag,
        } => {
            tokio::task::spawn_blocking(move || {
                let result = read_inventory(
                    &reader,
                    &location,
                    expected_etag.as_deref(),
                    progress,
                    &options,
                    &emitter,
                );
                if let Err(err) = result {
                    emitter.send_blocking(Err(err));
                }
            });
        }
        SourceSpec::Backup(run) => {
            tokio::task::spawn_blocking(move || {
                if let Err(err) = read_backup(&reader, &run, progress, &options, &emitter) {
                    emitter.send_blocking(Err(err));
                }
            });
        }
        SourceSpec::Restore {
            source,
            backup_bucket,
            control_bucket,
        } => {
            tokio::task::spawn_blocking(move || {
                if let Err(err) = read_restore(
                    &reader,
                    &source,
                    &backup_bucket,
                    &control_bucket,
                    progress,
                    &options,
                    &emitter,
                ) {
                    emitter.send_blocking(Err(err));
                }
            });
        }
        SourceSpec::Listing(generated) => {
            tokio::spawn(async move {
                let result = read_listing(&reader, &generated, progress, &options, &emitter).await;
                if let Err(err) = result {
                    emitter.send(Err(err)).await;
                }
            });
        }
    }
    rx
}

/// A manifest to read, resolved to where its bytes are.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    Csv {
        location: Location,
        fields: ManifestFields,
        expected_etag: Option<String>,
    },
    /// `location` is the report's manifest.json.
    Inventory {
        location: Location,
        expected_etag: Option<String>,
    },
    Listing(GeneratedManifest),
    Backup(Box<BackupRun>),
    /// `backup_bucket` holds the copies the catalog names.
    Restore {
        source: RestoreSource,
        backup_bucket: String,
        control_bucket: String,
    },
}

impl SourceSpec {
    /// The S3 source of a job's manifest; `recorded_etag` is the ETag seen at the first read.
    pub fn of_job(
        manifest: &ManifestSource,
        recorded_etag: Option<String>,
        control_bucket: &str,
    ) -> Self {
        match manifest {
            ManifestSource::Csv { object, fields } => SourceSpec::Csv {
                expected_etag: recorded_etag.or_else(|| object.etag.clone()),
                location: Location::S3(object.clone()),
                fields: fields.clone(),
            },
            ManifestSource::Inventory { object } => SourceSpec::Inventory {
                expected_etag: recorded_etag.or_else(|| object.etag.clone()),
                location: Location::S3(object.clone()),
            },
            ManifestSource::Generated(generated) => SourceSpec::Listing(generated.clone()),
            ManifestSource::Backup(run) => SourceSpec::Backup(run.clone()),
            ManifestSource::Restore(source) => SourceSpec::Restore {
                backup_bucket: source.catalog.bucket.clone(),
                source: source.clone(),
                control_bucket: control_bucket.to_string(),
            },
        }
    }
}

fn job_failure(emitter: &Emitter, code: &'static str, reason: String) -> Result<()> {
    emitter.send_blocking(Ok(SourceEvent::Failed { code, reason }));
    Ok(())
}

fn open_failure(emitter: &Emitter, failure: OpenFailure) -> Result<()> {
    match failure {
        OpenFailure::Job { code, reason } => job_failure(emitter, code, reason),
        OpenFailure::Retry(err) => Err(err),
        OpenFailure::RangeNotSatisfiable => Err(Error::Data("range not satisfiable".into())),
    }
}

/// Feeds every line of `reader` to the planner, sending chunks as they fill. Returns the cursor
/// after the last line, or None when the consumer went away or the job failed.
/// Where parsed manifest lines go: a job's planner, or (a backup read from an inventory) a
/// sorter.
trait LineSink {
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
struct PlannerSink<'a> {
    planner: &'a mut Planner,
    out: Vec<ChunkOut>,
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
fn feed_lines<R: BufRead, P: LineParser, S: LineSink>(
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

fn finish(planner: &mut Planner, end: &Cursor, emitter: &Emitter) -> Result<()> {
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

fn read_csv(
    reader: &Reader,
    location: &Location,
    fields: ManifestFields,
    expected_etag: Option<&str>,
    progress: PlanProgress,
    options: &SourceOptions,
    emitter: &Emitter,
) -> Result<()> {
    let check_versions = fields.has_version();
    let mut planner = match Planner::new(
        options.chunk_size,
        progress.clone(),
        options.keep_etags,
        None,
        check_versions,
    ) {
        Ok(p) => p,
        Err(reason) => return job_failure(emitter, "ManifestInvalid", reason),
    };
    let start = progress.cursor.clone();
    let opened = match reader.open(location, start.offset, expected_etag) {
        Ok(opened) => opened,
        // Resuming exactly at the end of the manifest: nothing left to read.
        Err(OpenFailure::RangeNotSatisfiable) if start.offset > 0 => {
            return finish(&mut planner, &start, emitter)
        }
        Err(failure) => return open_failure(emitter, failure),
    };
    if let Some(etag) = &opened.etag {
        if let Some(expected) = expected_etag {
            // Emulators may ignore If-Match; compare as well.
            if !same_etag(expected, etag) {
                return job_failure(
                    emitter,
                    "ManifestETagMismatch",
                    format!("Manifest.Location.ETag: {} has ETag {etag}, but the job expects {expected}; the manifest changed after the job was created", location.describe()),
                );
            }
        }
        if !emitter.send_blocking(Ok(SourceEvent::ManifestEtag(etag.clone()))) {
            return Ok(());
        }
    }
    let mut parser = CsvManifestParser::new(fields);
    let buffered = BufReader::with_capacity(256 * 1024, opened.reader);
    let mut sink = PlannerSink {
        planner: &mut planner,
        out: Vec::new(),
    };
    match feed_lines(
        buffered,
        &mut parser,
        &mut sink,
        start,
        0,
        false,
        emitter,
        &location.describe(),
        "ManifestVersionIdsMixed",
    )? {
        Some(end) => finish(&mut planner, &end, emitter),
        None => Ok(()),
    }
}

/// Resolves an inventory data file key: in S3, in the manifest's bucket; on disk, next to
/// manifest.json (by its full key, or by its file name).
fn data_file_location(
    manifest_location: &Location,
    manifest: &InventoryManifest,
    key: &str,
) -> Location {
    match manifest_location {
        Location::S3(object) => {
            let bucket = manifest
                .destination_bucket
                .as_deref()
                .and_then(|arn| batchops_core::arn::bucket_from_arn(arn).ok())
                .unwrap_or_else(|| object.bucket.clone());
            Location::S3(ManifestObject {
                bucket,
                key: key.to_string(),
                version_id: None,
                etag: None,
            })
        }
        Location::Local(path) => {
            let dir = path.parent().map(PathBuf::from).unwrap_or_default();
            let full = dir.join(key);
            if full.exists() {
                Location::Local(full)
            } else {
                Location::Local(dir.join(key.rsplit('/').next().unwrap_or(key)))
            }
        }
    }
}

fn sibling(location: &Location, name: &str) -> Location {
    match location {
        Location::S3(object) => {
            let key = match object.key.rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/{name}"),
                None => name.to_string(),
            };
            Location::S3(ManifestObject {
                bucket: object.bucket.clone(),
                key,
                version_id: None,
                etag: None,
            })
        }
        Location::Local(path) => Location::Local(path.with_file_name(name)),
    }
}

fn read_inventory(
    reader: &Reader,
    location: &Location,
    expected_etag: Option<&str>,
    progress: PlanProgress,
    options: &SourceOptions,
    emitter: &Emitter,
) -> Result<()> {
    let mut planner = match Planner::new(
        options.chunk_size,
        progress.clone(),
        options.keep_etags,
        options.as_of.as_deref(),
        false,
    ) {
        Ok(p) => p,
        Err(reason) => return job_failure(emitter, "ManifestInvalid", reason),
    };
    let mut sink = PlannerSink {
        planner: &mut planner,
        out: Vec::new(),
    };
    let needs_versions = options.as_of.is_some();
    match read_inventory_files(
        reader,
        location,
        expected_etag,
        progress.cursor.clone(),
        needs_versions,
        &mut sink,
        emitter,
    )? {
        Some(end) => finish(&mut planner, &end, emitter),
        None => Ok(()),
    }
}

/// Verifies an inventory report (manifest.json, its checksum, each file's MD5) and reads its
/// files from `cursor` into `sink`. `Some(end cursor)` when all files were read.
fn read_inventory_files<S: LineSink>(
    reader: &Reader,
    location: &Location,
    expected_etag: Option<&str>,
    mut cursor: Cursor,
    needs_versions: bool,
    sink: &mut S,
    emitter: &Emitter,
) -> Result<Option<Cursor>> {
    let stop = |result: Result<()>| result.map(|_| None);
    let manifest_json = match reader.open(location, 0, expected_etag) {
        Ok(mut opened) => {
            let mut body = Vec::new();
            opened
                .reader
                .read_to_end(&mut body)
                .map_err(|e| Error::Data(e.to_string()))?;
            if let Some(etag) = opened.etag {
                if let Some(expected) = expected_etag {
                    if !same_etag(expected, &etag) {
                        return stop(job_failure(emitter, "ManifestETagMismatch", format!("Manifest.Location.ETag: {} has ETag {etag}, but the job expects {expected}; the manifest changed after the job was created", location.describe())));
                    }
                }
                if !emitter.send_blocking(Ok(SourceEvent::ManifestEtag(etag))) {
                    return Ok(None);
                }
            }
            body
        }
        Err(failure) => return stop(open_failure(emitter, failure)),
    };
    let url = location.describe();
    match reader.read_all(&sibling(location, "manifest.checksum")) {
        Ok(checksum) => {
            if let Err(err) =
                verify_manifest_checksum(&manifest_json, &String::from_utf8_lossy(&checksum))
            {
                return stop(job_failure(
                    emitter,
                    "ManifestChecksumMismatch",
                    format!("{url}: {err}"),
                ));
            }
        }
        Err(OpenFailure::Job { .. }) => {
            return stop(job_failure(
                emitter,
                "ManifestChecksumMissing",
                format!("{url}: manifest.checksum is missing next to manifest.json"),
            ));
        }
        Err(failure) => return stop(open_failure(emitter, failure)),
    }
    let manifest = match InventoryManifest::parse(&manifest_json) {
        Ok(m) => m,
        Err(err) => {
            return stop(job_failure(
                emitter,
                "ManifestInvalid",
                format!("{url}: {err}"),
            ))
        }
    };
    if let Err(reason) = sink.check_report(&manifest) {
        return stop(job_failure(
            emitter,
            sink.failure_code("ManifestInvalid"),
            format!("{url}: {reason}"),
        ));
    }
    let schema = if manifest.file_format == InventoryFormat::Csv {
        match InventorySchema::parse(&manifest.file_schema) {
            Ok(schema) => Some(schema),
            Err(err) => {
                return stop(job_failure(
                    emitter,
                    "ManifestInvalid",
                    format!("{url}: {err}"),
                ))
            }
        }
    } else {
        None
    };
    if needs_versions {
        let has_versions = match &schema {
            Some(s) => s.version_id.is_some() && s.last_modified.is_some(),
            None => {
                manifest.file_schema.contains("version_id")
                    && manifest.file_schema.contains("last_modified_date")
            }
        };
        if !has_versions {
            return stop(job_failure(emitter, "ManifestInvalid", format!("{url}: this needs an inventory with all versions (VersionId and LastModifiedDate columns)")));
        }
    }
    while (cursor.file_index as usize) < manifest.files.len() {
        let file = &manifest.files[cursor.file_index as usize];
        let data = data_file_location(location, &manifest, &file.key);
        let name = data.describe();
        let skip = cursor.file_line;
        let md5 = match &schema {
            Some(schema) => {
                let opened = match reader.open(&data, 0, None) {
                    Ok(o) => o,
                    Err(failure) => return stop(open_failure(emitter, failure)),
                };
                // Decompression runs on its own thread, parsing on this one: on two cores the
                // pair keeps pace with `gzip -dc` alone.
                let (gz, decompressor) = spawn_gunzip(opened.reader);
                let mut parser = InventoryCsvParser::new(schema.clone(), file.key.clone());
                let start = Cursor {
                    offset: 0,
                    ..cursor.clone()
                };
                let fed = feed_lines(
                    BufReader::with_capacity(256 * 1024, gz),
                    &mut parser,
                    sink,
                    start,
                    skip,
                    true,
                    emitter,
                    &name,
                    "ManifestVersionIdsMixed",
                )?;
                let md5 = decompressor
                    .join()
                    .map_err(|_| Error::Data(format!("{name}: the decompressor thread panicked")))?
                    .map_err(|e| Error::Data(format!("{name}: {e}")))?;
                let Some(end) = fed else { return Ok(None) };
                cursor = end;
                md5
            }
            None => match read_columnar(
                reader,
                &data,
                manifest.file_format,
                sink,
                &mut cursor,
                skip,
                emitter,
            )? {
                Some(md5) => md5,
                None => return Ok(None),
            },
        };
        if let Err(err) = verify_file_checksum(file, &md5) {
            return stop(job_failure(
                emitter,
                "ManifestChecksumMismatch",
                format!("{url}: {err}"),
            ));
        }
        cursor.file_index += 1;
        cursor.file_line = 0;
        cursor.offset = 0;
    }
    Ok(Some(cursor))
}

/// Parquet and ORC inventory files: downloaded to a temporary file (their readers seek), MD5
/// computed on the way, then read record by record.
fn read_columnar<S: LineSink>(
    reader: &Reader,
    data: &Location,
    format: InventoryFormat,
    sink: &mut S,
    cursor: &mut Cursor,
    skip: u64,
    emitter: &Emitter,
) -> Result<Option<String>> {
    let name = data.describe();
    let (path, md5, _guard) = match data {
        Location::Local(path) => {
            let bytes = std::fs::read(path).map_err(|e| Error::Data(format!("{name}: {e}")))?;
            (path.clone(), md5_hex(&bytes), None)
        }
        Location::S3(_) => {
            let mut opened = match reader.open(data, 0, None) {
                Ok(o) => o,
                Err(failure) => {
                    open_failure(emitter, failure)?;
                    return Ok(None);
                }
            };
            let mut temp = tempfile::NamedTempFile::new()
                .map_err(|e| Error::Data(format!("temporary file: {e}")))?;
            let mut hashing = HashingReader {
                inner: &mut opened.reader,
                md5: Md5::new(),
            };
            std::io::copy(&mut hashing, temp.as_file_mut())
                .map_err(|e| Error::Data(format!("{name}: {e}")))?;
            let md5 = hex::encode(hashing.md5.finalize());
            (temp.path().to_path_buf(), md5, Some(temp))
        }
    };
    let columnar_format = match format {
        InventoryFormat::Parquet => batchops_columnar::ColumnarFormat::Parquet,
        InventoryFormat::Orc => batchops_columnar::ColumnarFormat::Orc,
        InventoryFormat::Csv => return Err(Error::Data("CSV is not columnar".into())),
    };
    let records = match batchops_columnar::read_file(columnar_format, &path) {
        Ok(records) => records,
        Err(err) => {
            job_failure(emitter, "ManifestInvalid", format!("{name}: {err}"))?;
            return Ok(None);
        }
    };
    for (index, record) in records.enumerate() {
        if (index as u64) < skip {
            continue;
        }
        let before = cursor.clone();
        cursor.line += 1;
        cursor.file_line += 1;
        let parsed = match record {
            Ok(r) => {
                let entry = ObjectEntry {
                    object: ObjectRef {
                        bucket: r.bucket,
                        key: r.key,
                        version_id: r.version_id,
                    },
                    etag: r.e_tag,
                    size: r.size,
                    last_modified: r.last_modified,
                    is_latest: r.is_latest,
                    storage_class: r.storage_class,
                };
                if r.is_delete_marker {
                    ParsedLine::DeleteMarker(entry)
                } else {
                    ParsedLine::Object(entry)
                }
            }
            Err(err) => ParsedLine::Malformed(batchops_core::manifest::MalformedLine {
                line: cursor.line,
                bucket: String::new(),
                key_encoded: String::new(),
                message: format!("inventory file {name} record {}: {err}", index + 1),
            }),
        };
        if let Err(reason) = sink.take(parsed, &before, cursor) {
            let code = sink.failure_code("ManifestInvalid");
            job_failure(emitter, code, format!("{name}: {reason}"))?;
            return Ok(None);
        }
        if !sink.flush(emitter) {
            return Ok(None);
        }
    }
    Ok(Some(md5))
}

/// Lists the source bucket (each filter prefix in turn), applying the generator's filter.
async fn read_listing(
    reader: &Reader,
    generated: &GeneratedManifest,
    progress: PlanProgress,
    options: &SourceOptions,
    emitter: &Emitter,
) -> Result<()> {
    let s3 = reader
        .s3
        .as_ref()
        .ok_or_else(|| Error::Invalid("no S3 client configured".into()))?;
    let versions_needed = generated.all_versions || options.keep_etags || options.as_of.is_some();
    let mut planner = match Planner::new(
        options.chunk_size,
        progress.clone(),
        options.keep_etags || generated.all_versions,
        options.as_of.as_deref(),
        false,
    ) {
        Ok(p) => p,
        Err(reason) => {
            emitter
                .send(Ok(SourceEvent::Failed {
                    code: "ManifestInvalid",
                    reason,
                }))
                .await;
            return Ok(());
        }
    };
    let prefixes = generated.filter.listing_prefixes();
    let mut cursor = progress.cursor.clone();
    let mut out = Vec::new();
    while (cursor.prefix_index as usize) < prefixes.len() {
        let prefix = &prefixes[cursor.prefix_index as usize];
        loop {
            let page = if versions_needed {
                list_versions_page(s3, &generated.source_bucket, prefix, &cursor).await?
            } else {
                list_objects_page(s3, &generated.source_bucket, prefix, &cursor).await?
            };
            for (entry, is_delete_marker) in page.entries {
                let before = cursor.clone();
                cursor.line += 1;
                cursor.key_marker = Some(entry.object.key.clone());
                cursor.version_marker = entry.object.version_id.clone().filter(|_| versions_needed);
                let parsed = if is_delete_marker {
                    ParsedLine::DeleteMarker(entry)
                } else if !passes(&generated.filter, &entry)
                    || (!generated.all_versions
                        && options.as_of.is_none()
                        && entry.is_latest == Some(false))
                {
                    planner.skip();
                    continue;
                } else {
                    ParsedLine::Object(entry)
                };
                if let Err(reason) = planner.feed(cursor.line, parsed, &before, &cursor, &mut out) {
                    emitter
                        .send(Ok(SourceEvent::Failed {
                            code: "ManifestInvalid",
                            reason,
                        }))
                        .await;
                    return Ok(());
                }
                for chunk in out.drain(..) {
                    if !emitter.send(Ok(SourceEvent::Chunk(chunk))).await {
                        return Ok(());
                    }
                }
            }
            if !page.truncated {
                break;
            }
        }
        cursor.prefix_index += 1;
        cursor.key_marker = None;
        cursor.version_marker = None;
    }
    let progress = match planner.finish(&cursor, &mut out) {
        Ok(p) => p,
        Err(reason) => {
            emitter
                .send(Ok(SourceEvent::Failed {
                    code: "ManifestInvalid",
                    reason,
                }))
                .await;
            return Ok(());
        }
    };
    for chunk in out {
        if !emitter.send(Ok(SourceEvent::Chunk(chunk))).await {
            return Ok(());
        }
    }
    emitter.send(Ok(SourceEvent::Finished(progress))).await;
    Ok(())
}

fn passes(filter: &GeneratorFilter, entry: &ObjectEntry) -> bool {
    let modified = entry
        .last_modified
        .as_deref()
        .and_then(|t| parse_time(t).ok());
    filter.matches(
        &entry.object.key,
        modified,
        entry.size.unwrap_or(0),
        entry.storage_class.as_deref(),
    )
}

pub(crate) struct Page {
    pub(crate) entries: Vec<(ObjectEntry, bool)>,
    pub(crate) truncated: bool,
}

fn rfc3339(t: Option<&aws_smithy_types::DateTime>) -> Option<String> {
    t.and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
}

async fn list_objects_page(
    s3: &Client,
    bucket: &str,
    prefix: &str,
    cursor: &Cursor,
) -> Result<Page> {
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_start_after(cursor.key_marker.clone())
        .send()
        .await
        .map_err(|e| {
            Error::aws_call(
                "S3",
                "ListObjectsV2",
                &format!("s3://{bucket}/{prefix}"),
                &e,
            )
        })?;
    let entries = out
        .contents()
        .iter()
        .map(|o| {
            let entry = ObjectEntry {
                object: ObjectRef {
                    bucket: bucket.to_string(),
                    key: o.key().unwrap_or_default().to_string(),
                    version_id: None,
                },
                etag: o.e_tag().map(str::to_string),
                size: o.size().map(|s| s.max(0) as u64),
                last_modified: rfc3339(o.last_modified()),
                is_latest: Some(true),
                storage_class: o.storage_class().map(|c| c.as_str().to_string()),
            };
            (entry, false)
        })
        .collect();
    Ok(Page {
        entries,
        truncated: out.is_truncated().unwrap_or(false),
    })
}

/// One ListObjectVersions page, versions and delete markers merged in listing order (key
/// ascending, newest first). It has no paginator: the cursor's markers are the loop.
pub(crate) async fn list_versions_page(
    s3: &Client,
    bucket: &str,
    prefix: &str,
    cursor: &Cursor,
) -> Result<Page> {
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(prefix)
        .set_key_marker(cursor.key_marker.clone())
        .set_version_id_marker(
            cursor
                .key_marker
                .as_ref()
                .and(cursor.version_marker.clone()),
        )
        .send()
        .await
        .map_err(|e| {
            Error::aws_call(
                "S3",
                "ListObjectVersions",
                &format!("s3://{bucket}/{prefix}"),
                &e,
            )
        })?;
    let mut entries: Vec<(ObjectEntry, bool, Option<aws_smithy_types::DateTime>)> = Vec::new();
    for v in out.versions() {
        entries.push((
            ObjectEntry {
                object: ObjectRef {
                    bucket: bucket.to_string(),
                    key: v.key().unwrap_or_default().to_string(),
                    version_id: Some(v.version_id().unwrap_or("null").to_string()),
                },
                etag: v.e_tag().map(str::to_string),
                size: v.size().map(|s| s.max(0) as u64),
                last_modified: rfc3339(v.last_modified()),
                is_latest: v.is_latest(),
                storage_class: v.storage_class().map(|c| c.as_str().to_string()),
            },
            false,
            v.last_modified().cloned(),
        ));
    }
    for m in out.delete_markers() {
        entries.push((
            ObjectEntry {
                object: ObjectRef {
                    bucket: bucket.to_string(),
                    key: m.key().unwrap_or_default().to_string(),
                    version_id: Some(m.version_id().unwrap_or("null").to_string()),
                },
                last_modified: rfc3339(m.last_modified()),
                is_latest: m.is_latest(),
                ..Default::default()
            },
            true,
            m.last_modified().cloned(),
        ));
    }
    // Key ascending, then newest first; the API orders each list this way but not the two merged.
    // Equal times (second-precision emulators, or bad luck) put the latest version first.
    entries.sort_by(|a, b| {
        a.0.object.key.cmp(&b.0.object.key).then_with(|| {
            let (ta, tb) = (
                a.2.map(|t| (t.secs(), t.subsec_nanos())),
                b.2.map(|t| (t.secs(), t.subsec_nanos())),
            );
            tb.cmp(&ta).then_with(|| {
                b.0.is_latest
                    .unwrap_or(false)
                    .cmp(&a.0.is_latest.unwrap_or(false))
            })
        })
    });
    Ok(Page {
        entries: entries.into_iter().map(|(e, dm, _)| (e, dm)).collect(),
        truncated: out.is_truncated().unwrap_or(false),
    })
}

/// What a planning-time HEAD pins: version ID, ETag, size.
type HeadPin = (Option<String>, Option<String>, Option<u64>);

/// Where prepared chunks go, and what pinning still needs S3 for.
pub struct ChunkWriter {
    /// The job's client for its data: pinning HEADs, version look-ups, generated-manifest
    /// output.
    pub s3: Option<Client>,
    /// Where chunk files go: the stack's client, the control bucket and the job ID. None for a
    /// dry run: chunks are encoded, counted and dropped.
    pub control: Option<(Client, String, String)>,
    /// Generated manifests written for inspection: (output, job id, with a VersionId column).
    pub output: Option<(ManifestOutput, String, bool)>,
    /// Fill a missing version ID and ETag with a HEAD at planning time.
    pub pin_with_head: bool,
    /// CSV manifests with an as-of time: look each key's versions up.
    pub as_of_lookup: Option<String>,
    pub concurrency: usize,
    /// Tasks past this bound (in manifest order) are written refused: they fail without an S3
    /// call (a delete job's MaxDeletes).
    pub task_limit: Option<TaskLimit>,
    /// Tasks in the job's chunks before the next one this writer writes.
    pub tasks_written: u64,
    pub stats: WriteStats,
}

impl ChunkWriter {
    /// A writer that encodes and counts chunks but stores nothing: for dry runs of sources whose
    /// entries are already pinned (backups, restores).
    pub fn counting_only() -> Self {
        ChunkWriter {
            s3: None,
            control: None,
            output: None,
            pin_with_head: false,
            as_of_lookup: None,
            concurrency: 1,
            task_limit: None,
            tasks_written: 0,
            stats: Default::default(),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteStats {
    pub chunks: u64,
    pub encoded_bytes: u64,
    /// The first malformed lines (line number, message), for dry runs.
    pub malformed: Vec<(u64, String)>,
    pub s3_puts: u64,
    pub pin_requests: u64,
}

const MALFORMED_KEPT: usize = 100;

impl ChunkWriter {
    pub async fn write(&mut self, chunk: &mut ChunkOut) -> Result<()> {
        if self.pin_with_head {
            self.pin(&mut chunk.tasks).await?;
        }
        if let Some(as_of) = self.as_of_lookup.clone() {
            self.select_as_of(&mut chunk.tasks, &as_of).await?;
        }
        if let Some(limit) = &self.task_limit {
            let first = self.tasks_written;
            for (index, task) in chunk.tasks.iter_mut().enumerate() {
                if first + index as u64 >= limit.max {
                    *task = task.refused(limit.code, &limit.message);
                }
            }
        }
        self.tasks_written += chunk.tasks.len() as u64;
        for task in &chunk.tasks {
            if let ChunkTask::Malformed(m) = task {
                if self.stats.malformed.len() < MALFORMED_KEPT {
                    self.stats.malformed.push((m.line, m.message.clone()));
                }
            }
        }
        let body = encode_chunk(&chunk.tasks);
        self.stats.chunks += 1;
        self.stats.encoded_bytes += body.len() as u64;
        if let Some((control_s3, bucket, job_id)) = &self.control {
            put_bytes(
                control_s3,
                bucket,
                &chunk_key(job_id, chunk.seq),
                body.into_bytes(),
                "text/plain",
            )
            .await?;
            self.stats.s3_puts += 1;
            if let Some((output, job_id, with_versions)) = &self.output {
                let part = generated_part(&chunk.tasks, *with_versions)?;
                let key = format!(
                    "{}/data/{:010}.csv.gz",
                    output_root(output, job_id),
                    chunk.seq
                );
                let Some(s3) = &self.s3 else {
                    return Err(Error::Invalid(
                        "writing a generated manifest needs S3 access".into(),
                    ));
                };
                put_bytes(s3, &output.bucket, &key, part, "application/gzip").await?;
                self.stats.s3_puts += 1;
            }
        }
        Ok(())
    }

    async fn pin(&mut self, tasks: &mut [ChunkTask]) -> Result<()> {
        use futures::StreamExt;
        let Some(s3) = self.s3.clone() else {
            return Err(Error::Invalid("pinning needs S3 access".into()));
        };
        let lookups: Vec<usize> = tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t, ChunkTask::Object { object, etag, .. } if object.version_id.is_none() || etag.is_none()))
            .map(|(i, _)| i)
            .collect();
        self.stats.pin_requests += lookups.len() as u64;
        let heads: Vec<(usize, Option<HeadPin>)> = futures::stream::iter(lookups)
            .map(|i| {
                let s3 = s3.clone();
                let object = match &tasks[i] {
                    ChunkTask::Object { object, .. } => object.clone(),
                    _ => ObjectRef::default(),
                };
                async move {
                    let head = s3
                        .head_object()
                        .bucket(&object.bucket)
                        .key(&object.key)
                        .set_version_id(object.version_id.clone())
                        .send()
                        .await
                        .ok()
                        .map(|h| {
                            (
                                h.version_id().map(str::to_string),
                                h.e_tag().map(str::to_string),
                                h.content_length().map(|l| l.max(0) as u64),
                            )
                        });
                    (i, head)
                }
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        for (i, head) in heads {
            // An object missing at planning time stays unpinned and fails when it runs.
            if let (
                ChunkTask::Object {
                    object, etag, size, ..
                },
                Some((version, head_etag, length)),
            ) = (&mut tasks[i], head)
            {
                if object.version_id.is_none() {
                    object.version_id = version;
                }
                *etag = head_etag;
                *size = length;
            }
        }
        Ok(())
    }

    async fn select_as_of(&mut self, tasks: &mut [ChunkTask], as_of: &str) -> Result<()> {
        use batchops_core::plan::{AsOfSelector, Selected};
        let Some(s3) = self.s3.clone() else {
            return Err(Error::Invalid("as-of selection needs S3 access".into()));
        };
        for task in tasks.iter_mut() {
            let ChunkTask::Object {
                line,
                object,
                etag,
                size,
            } = task
            else {
                continue;
            };
            self.stats.pin_requests += 1;
            let mut selector = AsOfSelector::new(parse_time(as_of).map_err(Error::Invalid)?);
            let mut cursor = Cursor::default();
            let mut chosen = None;
            loop {
                let page = list_versions_page(&s3, &object.bucket, &object.key, &cursor).await?;
                for (entry, is_delete_marker) in &page.entries {
                    if entry.object.key != object.key {
                        continue;
                    }
                    if let Selected::GroupEnded(Some(choice)) = selector
                        .feed(*line, entry, *is_delete_marker)
                        .map_err(Error::Invalid)?
                    {
                        chosen = Some(choice);
                    }
                    cursor.key_marker = Some(entry.object.key.clone());
                    cursor.version_marker = entry.object.version_id.clone();
                }
                if !page.truncated {
                    break;
                }
            }
            if let Some(choice) = selector.finish().or(chosen) {
                object.version_id = choice.1.object.version_id;
                *etag = choice.1.etag;
                *size = choice.1.size;
            } else {
                *task = ChunkTask::Malformed(batchops_core::manifest::MalformedLine {
                    line: *line,
                    bucket: object.bucket.clone(),
                    key_encoded: encode_key(&object.key),
                    message: format!(
                        "manifest line {line}: no version of this key existed at {as_of}"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// `<prefix>/job-<id>` under the manifest output location.
pub fn output_root(output: &ManifestOutput, job_id: &str) -> String {
    if output.prefix.is_empty() {
        format!("job-{job_id}")
    } else {
        format!("{}/job-{job_id}", output.prefix)
    }
}

/// One gzip CSV data file of a generated manifest, in S3 Inventory's quoting.
fn generated_part(tasks: &[ChunkTask], with_versions: bool) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut csv = String::new();
    for task in tasks {
        if let ChunkTask::Object { object, .. } = task {
            csv.push_str(&format!(
                "\"{}\",\"{}\"",
                object.bucket,
                encode_key(&object.key)
            ));
            if with_versions {
                csv.push_str(&format!(
                    ",\"{}\"",
                    object.version_id.as_deref().unwrap_or("")
                ));
            }
            csv.push('\n');
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(csv.as_bytes())
        .map_err(|e| Error::Data(e.to_string()))?;
    gz.finish().map_err(|e| Error::Data(e.to_string()))
}

/// Writes the generated manifest's `manifest.json` and `manifest.checksum` once planning is
/// done: an S3 Inventory-style report any later job can take as its manifest. Answers where
/// manifest.json is (DescribeJob's GeneratedManifestDescriptor).
pub async fn write_generated_manifest(
    s3: &Client,
    output: &ManifestOutput,
    job_id: &str,
    source_bucket: &str,
    with_versions: bool,
) -> Result<GeneratedManifestDescriptor> {
    let root = output_root(output, job_id);
    let mut files = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(&output.bucket)
        .prefix(format!("{root}/data/"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("S3", "ListObjectsV2"))?;
        for object in page.contents() {
            files.push(serde_json::json!({
                "key": object.key().unwrap_or_default(),
                "size": object.size().unwrap_or(0),
                "MD5checksum": object.e_tag().unwrap_or_default().trim_matches('"'),
            }));
        }
    }
    let manifest = serde_json::json!({
        "sourceBucket": source_bucket,
        "destinationBucket": batchops_core::arn::bucket_arn(&output.bucket),
        "version": "2016-11-30",
        "creationTimestamp": (crate::unix_now() * 1000).to_string(),
        "fileFormat": "CSV",
        "fileSchema": if with_versions { "Bucket, Key, VersionId" } else { "Bucket, Key" },
        "files": files,
    });
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Data(e.to_string()))?;
    let checksum = md5_hex(&body);
    let key = format!("{root}/manifest.json");
    let written = put_bytes_pinned(s3, &output.bucket, &key, body, "application/json").await?;
    put_bytes(
        s3,
        &output.bucket,
        &format!("{root}/manifest.checksum"),
        checksum.into_bytes(),
        "text/plain",
    )
    .await?;
    Ok(GeneratedManifestDescriptor {
        format: batchops_core::request::GENERATED_MANIFEST_FORMAT.to_string(),
        location: batchops_core::request::ManifestLocation {
            object_arn: batchops_core::arn::object_arn(&output.bucket, &key),
            object_version_id: written.version_id,
            etag: written.etag,
        },
    })
}

/// What a dry run found: the same prepare step as a job's, with nothing written.
#[derive(Debug, Clone)]
pub struct DryRunReport {
    pub progress: PlanProgress,
    pub stats: WriteStats,
    pub elapsed: std::time::Duration,
    /// Set when the manifest could not run at all (the job would fail with this).
    pub failure: Option<(String, String)>,
}

impl DryRunReport {
    /// Manifest lines (or listed entries) read per second.
    pub fn lines_per_second(&self) -> f64 {
        self.progress.cursor.line as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs the prepare step over a whole manifest without creating a job or writing anything.
pub async fn dry_run(
    reader: Reader,
    source: SourceSpec,
    options: SourceOptions,
    writer: &mut ChunkWriter,
) -> Result<DryRunReport> {
    let started = std::time::Instant::now();
    let mut events = start(reader, source, PlanProgress::default(), options);
    while let Some(event) = events.recv().await {
        match event? {
            SourceEvent::ManifestEtag(_) | SourceEvent::Warning(_) | SourceEvent::Draft { .. } => {}
            SourceEvent::Chunk(mut chunk) => writer.write(&mut chunk).await?,
            SourceEvent::Failed { code, reason } => {
                return Ok(DryRunReport {
                    progress: PlanProgress::default(),
                    stats: writer.stats.clone(),
                    elapsed: started.elapsed(),
                    failure: Some((code.to_string(), reason)),
                })
            }
            SourceEvent::Finished(progress) => {
                return Ok(DryRunReport {
                    progress,
                    stats: writer.stats.clone(),
                    elapsed: started.elapsed(),
                    failure: None,
                })
            }
        }
    }
    Err(Error::Data(
        "the manifest reader stopped without finishing".into(),
    ))
}

/// Draft snapshot rows per part (a part is also flushed with every chunk).
const DRAFT_ROWS: usize = 10_000;

pub use crate::catalog_io::open_catalog;

fn bucket_versioned(reader: &Reader, bucket: &str) -> Result<bool> {
    let s3 = reader
        .s3
        .as_ref()
        .ok_or_else(|| Error::Invalid("no S3 client configured".into()))?;
    reader.handle.block_on(versioning_enabled(s3, bucket))
}

/// Whether `bucket` has versioning enabled (suspended counts as not: a write or an unpinned
/// delete there replaces the `null` version for good).
pub async fn versioning_enabled(s3: &Client, bucket: &str) -> Result<bool> {
    match s3.get_bucket_versioning().bucket(bucket).send().await {
        Ok(out) => Ok(out.status() == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled)),
        Err(err) => {
            // Some emulators (moto 5.2) answer 200 with a differently named XML root that the SDK
            // refuses; the status element inside is the same, so read it from the raw body.
            if let Some(raw) = err.raw_response().filter(|r| r.status().as_u16() == 200) {
                if let Some(body) = raw.body().bytes() {
                    let text = String::from_utf8_lossy(body);
                    return Ok(text.contains("<Status>Enabled</Status>"));
                }
            }
            Err(Error::aws_call("S3", "GetBucketVersioning", bucket, &err))
        }
    }
}

/// In-memory entries per sorted run when a backup reads an inventory (about 100 MB).
const SORT_RUN_ENTRIES: usize = 250_000;

/// A backup's source entries in listing order: the bucket listed page by page, or an inventory
/// report sorted.
enum BackupEntries {
    Listing {
        s3: Client,
        bucket: String,
        prefix: String,
        versioned: bool,
        cursor: Cursor,
        done: bool,
    },
    Sorted {
        sorted: crate::extsort::SortedEntries,
        /// Resuming: keys up to this one were diffed by an earlier slice.
        after_key: Option<String>,
    },
}

/// Entries per page taken from a sorted inventory.
const SORTED_PAGE: usize = 1000;

impl BackupEntries {
    fn next_page(&mut self, reader: &Reader) -> Result<Option<Vec<(ObjectEntry, bool)>>> {
        match self {
            BackupEntries::Listing {
                s3,
                bucket,
                prefix,
                versioned,
                cursor,
                done,
            } => {
                if *done {
                    return Ok(None);
                }
                let page = if *versioned {
                    reader
                        .handle
                        .block_on(list_versions_page(s3, bucket, prefix, cursor))?
                } else {
                    reader
                        .handle
                        .block_on(list_objects_page(s3, bucket, prefix, cursor))?
                };
                if let Some((last, _)) = page.entries.last() {
                    cursor.key_marker = Some(last.object.key.clone());
                    cursor.version_marker = last.object.version_id.clone().filter(|_| *versioned);
                }
                *done = !page.truncated;
                Ok(Some(page.entries))
            }
            BackupEntries::Sorted { sorted, after_key } => {
                let mut page = Vec::with_capacity(SORTED_PAGE);
                for item in sorted.by_ref() {
                    let (entry, is_delete_marker) =
                        item.map_err(|e| Error::Data(format!("sorted inventory: {e}")))?;
                    if after_key
                        .as_deref()
                        .is_some_and(|after| entry.object.key.as_str() <= after)
                    {
                        continue;
                    }
                    page.push((entry, is_delete_marker));
                    if page.len() == SORTED_PAGE {
                        break;
                    }
                }
                Ok((!page.is_empty()).then_some(page))
            }
        }
    }
}

/// Inventory rows of the policy's source into the sorter. A row that cannot be read fails the
/// run: a missing row would look like a deletion.
struct SorterSink<'a> {
    sorter: crate::extsort::EntrySorter,
    policy: &'a BackupPolicy,
    /// Whether any row named a version (current-versions inventories have no VersionId).
    version_ids_seen: bool,
}

impl LineSink for SorterSink<'_> {
    fn take(
        &mut self,
        parsed: ParsedLine,
        _before: &Cursor,
        _after: &Cursor,
    ) -> std::result::Result<(), String> {
        let (entry, is_delete_marker) = match parsed {
            ParsedLine::Blank => return Ok(()),
            ParsedLine::Object(entry) => (entry, false),
            ParsedLine::DeleteMarker(entry) => (entry, true),
            ParsedLine::Malformed(m) => return Err(format!("line {}: {}", m.line, m.message)),
        };
        if entry.object.bucket != self.policy.source.bucket {
            // A row of another bucket: the report is not the source's, and a diff against it
            // would take the source's objects for deleted.
            return Err(format!(
                "a row of bucket `{}`, but policy `{}` backs up `{}`",
                entry.object.bucket, self.policy.name, self.policy.source.bucket
            ));
        }
        if !self.policy.covers(&entry.object.bucket, &entry.object.key) {
            return Ok(());
        }
        self.version_ids_seen |= entry
            .object
            .version_id
            .as_deref()
            .is_some_and(|v| v != "null");
        self.sorter
            .push(entry, is_delete_marker)
            .map_err(|e| format!("sorting the inventory on local disk: {e}"))
    }

    fn flush(&mut self, _emitter: &Emitter) -> bool {
        true
    }

    fn failure_code(&self, _default: &'static str) -> &'static str {
        "InventoryInvalid"
    }

    fn check_report(&self, manifest: &InventoryManifest) -> std::result::Result<(), String> {
        let policy = self.policy;
        if manifest.source_bucket != policy.source.bucket {
            return Err(format!(
                "this S3 Inventory report lists bucket `{}` (sourceBucket), but policy `{}` backs up `{}`: every object would look deleted. \
                 Point the policy's inventory location at the report of `{}` (batchops backup policy put)",
                manifest.source_bucket, policy.name, policy.source.bucket, policy.source.bucket
            ));
        }
        Ok(())
    }
}

/// A journal row in the external sort: by key, then in the order parts and rows were read
/// (parts are named by time, so oldest first within a key).
struct JournalRecord {
    seq: u64,
    read: JournalRead,
}

impl SortRecord for JournalRecord {
    fn compare(&self, other: &Self) -> std::cmp::Ordering {
        self.read
            .row
            .key()
            .cmp(other.read.row.key())
            .then(self.seq.cmp(&other.seq))
    }

    fn encode(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut line = String::new();
        self.read.row.write_line(&mut line);
        crate::extsort::write_varint(w, self.seq)?;
        w.write_all(&[u8::from(self.read.last_read)])?;
        crate::extsort::write_str(w, &line)
    }

    fn decode(r: &mut impl std::io::Read) -> std::io::Result<Self> {
        let seq = crate::extsort::read_varint(r)?;
        let mut flag = [0u8; 1];
        r.read_exact(&mut flag)?;
        let line = crate::extsort::read_str(r)?;
        let bad = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
        let row = JournalRow::parse_line(line.trim_end_matches('\n'))
            .map_err(bad)?
            .ok_or_else(|| bad("empty journal row in spill run".into()))?;
        Ok(JournalRecord {
            seq,
            read: JournalRead {
                row,
                last_read: flag[0] == 1,
            },
        })
    }
}

/// The run's journal: the policy's recorded parts (all of them: rows older than the previous
/// snapshot only ever match what that snapshot already has), each read pinned to the version
/// and ETag recorded when it was written, each row marked with whether this run settles its
/// part, sorted by key (on local disk past `SORT_RUN_ENTRIES` rows, so a busy bucket's changes
/// between runs need not fit in memory). Errors name the part and line. Objects under the
/// journal prefix that this run would settle but that have no record are not read: each is
/// named in `unrecorded` (younger ones may be a part whose record is being written).
fn read_journal(
    reader: &Reader,
    run: &BackupRun,
    unrecorded: &mut Vec<String>,
) -> std::result::Result<JournalRows, String> {
    let (Some(s3), Some(store)) = (reader.s3.as_ref(), reader.store.as_ref()) else {
        return Ok(Box::new(std::iter::empty()));
    };
    let policy = &run.policy;
    let Some(bucket) = run.journal_bucket.as_ref() else {
        return Ok(Box::new(std::iter::empty()));
    };
    // Listed before the records are read, so that a part written meanwhile has its record.
    let mut listed = std::collections::BTreeSet::new();
    let mut cursor = Cursor::default();
    loop {
        let page = reader
            .handle
            .block_on(list_objects_page(
                s3,
                bucket,
                &policy.journal_prefix(),
                &cursor,
            ))
            .map_err(|e| e.to_string())?;
        for (entry, _) in &page.entries {
            let key = &entry.object.key;
            if run.settles_journal_part(key) {
                listed.insert(key.clone());
            }
            cursor.key_marker = Some(key.clone());
        }
        if !page.truncated {
            break;
        }
    }
    let mut sorter = ExternalSorter::new(SORT_RUN_ENTRIES);
    let mut seq = 0u64;
    let mut after: Option<String> = None;
    loop {
        let (parts, next) = reader
            .handle
            .block_on(crate::journal::parts_page(store, policy, after.as_deref()))
            .map_err(|e| e.to_string())?;
        for part in parts {
            listed.remove(&part.key);
            let pin = part.pin(bucket);
            let lines = crate::catalog_io::pinned_lines(reader, &pin)
                .map_err(|f| format!("journal part {f}"))?;
            let last_read = run.settles_journal_part(&part.key);
            for (index, line) in lines.enumerate() {
                let line = line.map_err(|e| format!("journal part {}: {e}", pin.describe()))?;
                let row = JournalRow::parse_line(&line).map_err(|e| {
                    format!("journal part {}: line {}: {e}", pin.describe(), index + 1)
                })?;
                if let Some(row) = row {
                    seq += 1;
                    sorter
                        .push(JournalRecord {
                            seq,
                            read: JournalRead { row, last_read },
                        })
                        .map_err(|e| format!("sorting the journal: {e}"))?;
                }
            }
        }
        match next {
            Some(position) => after = Some(position),
            None => break,
        }
    }
    unrecorded.extend(listed);
    let sorted = sorter
        .finish()
        .map_err(|e| format!("sorting the journal: {e}"))?;
    Ok(Box::new(sorted.map(|record| {
        record
            .map(|r| r.read)
            .map_err(|e| format!("sorting the journal: {e}"))
    })))
}

fn emit_backup(outs: &mut Vec<BackupOut>, emitter: &Emitter) -> bool {
    for out in outs.drain(..) {
        let event = match out {
            BackupOut::Chunk(chunk) => SourceEvent::Chunk(chunk),
            BackupOut::Draft { seq, rows, resume } => SourceEvent::Draft { seq, rows, resume },
        };
        if !emitter.send_blocking(Ok(event)) {
            return false;
        }
    }
    true
}

/// A backup run's prepare step: versioning preflight, then the source listing diffed against
/// the previous snapshot's catalog by sorted merge, key by key.
fn read_backup(
    reader: &Reader,
    run: &BackupRun,
    progress: PlanProgress,
    options: &SourceOptions,
    emitter: &Emitter,
) -> Result<()> {
    let policy = &run.policy;
    let s3 = reader
        .s3
        .clone()
        .ok_or_else(|| Error::Invalid("no S3 client configured".into()))?;
    let source_versioned = bucket_versioned(reader, &policy.source.bucket)?;
    let first_slice = progress == PlanProgress::default();
    if !policy.allow_unversioned_destination
        && !bucket_versioned(reader, &policy.destination.bucket)?
    {
        return job_failure(
            emitter,
            "DestinationNotVersioned",
            format!(
                "destination bucket `{}` does not have versioning enabled: an overwrite there would destroy the earlier backup copy. \
                 Enable versioning on it (aws s3api put-bucket-versioning --bucket {} --versioning-configuration Status=Enabled), \
                 or set allowUnversionedDestination in policy `{}` to accept that risk",
                policy.destination.bucket, policy.destination.bucket, policy.name
            ),
        );
    }
    if !source_versioned {
        if policy.versions == VersionsMode::All {
            return job_failure(
                emitter,
                "SourceNotVersioned",
                format!(
                    "policy `{}` backs up all versions, but source bucket `{}` is not versioned",
                    policy.name, policy.source.bucket
                ),
            );
        }
        if first_slice
            && !emitter.send_blocking(Ok(SourceEvent::Warning(format!(
                "source bucket `{}` is not versioned: objects are compared by ETag and size, and an object overwritten between listing and copy cannot be pinned (its copy fails and the previous backup stands)",
                policy.source.bucket
            ))))
        {
            return Ok(());
        }
    }
    let skip = progress.cursor.catalog_entries;
    let catalog: Box<dyn Iterator<Item = std::result::Result<CatalogEntry, String>> + Send> =
        match &run.previous {
            Some(previous) => match open_catalog(reader, previous) {
                Ok(entries) => Box::new(entries.skip(skip as usize)),
                // Gone or unreadable: no retry brings it back, and a diff without it would
                // take every object for new (or none for deleted). Fail, naming the way on.
                Err(Error::Data(reason)) => {
                    return job_failure(
                        emitter,
                        "SnapshotCatalogInvalid",
                        format!(
                            "the previous snapshot {}'s catalog s3://{}/{} cannot be read ({reason}). \
                             Start a new chain with a full run: batchops backup run {} --full \
                             (API: POST /backup-policies/{}/runs?full=true); older snapshots stay restorable",
                            previous.snapshot_id, previous.bucket, previous.key, policy.name, policy.name
                        ),
                    )
                }
                Err(err) => return Err(err),
            },
            None => Box::new(std::iter::empty()),
        };
    let mut unrecorded = Vec::new();
    let journal = match read_journal(reader, run, &mut unrecorded) {
        Ok(rows) => rows,
        Err(reason) => return job_failure(emitter, "JournalInvalid", reason),
    };
    if first_slice && !unrecorded.is_empty() {
        let shown: Vec<String> = unrecorded
            .iter()
            .take(10)
            .map(|key| {
                format!(
                    "s3://{}/{key}",
                    run.journal_bucket.as_deref().unwrap_or_default()
                )
            })
            .collect();
        let more = unrecorded.len().saturating_sub(shown.len());
        let warning = format!(
            "{} object(s) under the journal prefix have no record of batchops writing them and were not read: {}{}. \
             batchops did not write them as recorded (or their record was never written); remove them once checked",
            unrecorded.len(),
            shown.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        );
        if !emitter.send_blocking(Ok(SourceEvent::Warning(warning))) {
            return Ok(());
        }
    }
    let all_versions = policy.versions == VersionsMode::All;
    let mut compare_versions = source_versioned;
    let mut entries = match &run.inventory {
        None => BackupEntries::Listing {
            s3,
            bucket: policy.source.bucket.clone(),
            prefix: policy.source.prefix.clone(),
            versioned: source_versioned,
            cursor: Cursor {
                key_marker: progress.cursor.key_marker.clone(),
                ..Default::default()
            },
            done: false,
        },
        Some(report) => {
            // Inventory files are not in key order across files: sort them (on local disk
            // past a bound) into the order a listing has. A resumed slice sorts again.
            let mut sink = SorterSink {
                sorter: EntrySorter::new(SORT_RUN_ENTRIES),
                policy,
                version_ids_seen: false,
            };
            let location = Location::S3(report.clone());
            let Some(_) = read_inventory_files(
                reader,
                &location,
                None,
                Cursor::default(),
                all_versions,
                &mut sink,
                emitter,
            )?
            else {
                return Ok(());
            };
            // A current-versions inventory has no version IDs: compare by ETag and size then.
            compare_versions = source_versioned && sink.version_ids_seen;
            let sorted = sink
                .sorter
                .finish()
                .map_err(|e| Error::Data(format!("sorting {}: {e}", location.describe())))?;
            BackupEntries::Sorted {
                sorted,
                after_key: progress.cursor.key_marker.clone(),
            }
        }
    };
    let mut differ = Differ::new(catalog, compare_versions, all_versions)
        .with_journal(journal, progress.cursor.key_marker.as_deref());
    differ.catalog_taken = skip;
    let mut planner = BackupPlanner::new(
        policy.clone(),
        progress.clone(),
        options.chunk_size,
        DRAFT_ROWS,
        run.previous_objects,
    );
    let mut group_key: Option<String> = None;
    let mut group: Vec<ObjectEntry> = Vec::new();
    let mut outs = Vec::new();
    let mut changes = Vec::new();

    // Diffs one key's versions, applies the changes, and flushes at this key boundary.
    let mut finish_group = |key: &str,
                            group: &mut Vec<ObjectEntry>,
                            differ: &mut Differ<_>,
                            planner: &mut BackupPlanner,
                            outs: &mut Vec<BackupOut>|
     -> Result<std::result::Result<(), String>> {
        if !group.is_empty() {
            if all_versions {
                group.reverse();
            }
            if let Err(reason) = differ.feed_key(std::mem::take(group), &mut changes) {
                return Ok(Err(reason));
            }
        }
        for change in changes.drain(..) {
            if let Err(err) = planner.apply(change) {
                return Ok(Err(format!("MaxDeletes:{err}")));
            }
        }
        let cursor = Cursor {
            key_marker: Some(key.to_string()),
            ..Default::default()
        };
        planner.boundary(&cursor, differ.catalog_taken, false, outs);
        Ok(Ok(()))
    };
    let fail = |reason: String| -> Result<()> {
        match reason.strip_prefix("MaxDeletes:") {
            Some(message) => job_failure(emitter, "MaxDeletesExceeded", message.to_string()),
            None if reason.starts_with("continuous-mode journal") => {
                job_failure(emitter, "JournalInvalid", reason)
            }
            None => job_failure(
                emitter,
                "SnapshotCatalogInvalid",
                format!(
                    "{reason}. Start a new chain with a full run: batchops backup run {} --full",
                    policy.name
                ),
            ),
        }
    };
    while let Some(page) = entries.next_page(reader)? {
        for (entry, is_delete_marker) in page {
            if group_key.as_deref() != Some(entry.object.key.as_str()) {
                if let Some(key) = group_key.take() {
                    if let Err(reason) =
                        finish_group(&key, &mut group, &mut differ, &mut planner, &mut outs)?
                    {
                        return fail(reason);
                    }
                    if !emit_backup(&mut outs, emitter) {
                        return Ok(());
                    }
                }
                group_key = Some(entry.object.key.clone());
            }
            let wanted = if all_versions {
                !is_delete_marker
            } else {
                !is_delete_marker && entry.is_latest != Some(false)
            };
            if wanted {
                group.push(entry);
            }
        }
    }
    if let Some(key) = group_key.take() {
        if let Err(reason) = finish_group(&key, &mut group, &mut differ, &mut planner, &mut outs)? {
            return fail(reason);
        }
    }
    if let Err(reason) = differ.finish(&mut changes) {
        return fail(reason);
    }
    for change in changes.drain(..) {
        if let Err(err) = planner.apply(change) {
            return fail(format!("MaxDeletes:{err}"));
        }
    }
    let end = Cursor {
        key_marker: Some("\u{10FFFF}".to_string()),
        ..Default::default()
    };
    planner.boundary(&end, differ.catalog_taken, true, &mut outs);
    if !emit_backup(&mut outs, emitter) {
        return Ok(());
    }
    emitter.send_blocking(Ok(SourceEvent::Finished(planner.progress.clone())));
    Ok(())
}

/// A restore's prepare step: the snapshot's catalog, filtered by prefix and key list, as copy
/// tasks from the backup copies back to their original keys.
fn read_restore(
    reader: &Reader,
    source: &RestoreSource,
    backup_bucket: &str,
    control_bucket: &str,
    progress: PlanProgress,
    options: &SourceOptions,
    emitter: &Emitter,
) -> Result<()> {
    let keys: Option<std::collections::HashSet<String>> = match &source.keys_object {
        None => None,
        Some(key) => {
            let location = Location::S3(ManifestObject {
                bucket: control_bucket.to_string(),
                key: key.clone(),
                version_id: None,
                etag: None,
            });
            let body = match reader.read_all(&location) {
                Ok(body) => body,
                Err(failure) => return open_failure(emitter, failure),
            };
            Some(
                String::from_utf8_lossy(&body)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        }
    };
    let skip = progress.cursor.catalog_entries;
    let catalog = open_catalog(reader, &source.catalog)?;
    let mut progress = progress;
    let mut tasks = Vec::new();
    for (index, entry) in catalog.enumerate().skip(skip as usize) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(reason) => return job_failure(emitter, "SnapshotCatalogInvalid", reason),
        };
        progress.cursor.catalog_entries = index as u64 + 1;
        let directory = catalog_directory(&source.catalog.key).unwrap_or_default();
        if !copy_within(directory, &entry.dest_key) {
            // Only copies inside the catalog's own backup directory are restored.
            return job_failure(
                emitter,
                "SnapshotCatalogInvalid",
                format!(
                    "snapshot catalog s3://{}/{} lists {} (for {}), outside its backup directory `{directory}`: refusing to restore from it",
                    source.catalog.bucket, source.catalog.key, entry.dest_key, entry.key
                ),
            );
        }
        let wanted = source
            .prefix
            .as_deref()
            .is_none_or(|p| entry.key.starts_with(p))
            && keys.as_ref().is_none_or(|k| k.contains(&entry.key));
        if !wanted {
            progress.skipped += 1;
        } else {
            progress.cursor.line += 1;
            progress.bytes += entry.size;
            tasks.push(ChunkTask::Restore {
                line: progress.cursor.line,
                object: entry.backup_object(backup_bucket),
                target_key: entry.key,
            });
        }
        if tasks.len() >= options.chunk_size.max(1) {
            progress.tasks += tasks.len() as u64;
            progress.next_seq += 1;
            let chunk = ChunkOut {
                seq: progress.next_seq - 1,
                tasks: std::mem::take(&mut tasks),
                resume: Some(progress.clone()),
            };
            if !emitter.send_blocking(Ok(SourceEvent::Chunk(chunk))) {
                return Ok(());
            }
        }
    }
    if !tasks.is_empty() {
        progress.tasks += tasks.len() as u64;
        progress.next_seq += 1;
        let chunk = ChunkOut {
            seq: progress.next_seq - 1,
            tasks,
            resume: Some(progress.clone()),
        };
        if !emitter.send_blocking(Ok(SourceEvent::Chunk(chunk))) {
            return Ok(());
        }
    }
    emitter.send_blocking(Ok(SourceEvent::Finished(progress)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(key: &str, dest_version: &str) -> JournalRow {
        JournalRow::Copied(CatalogEntry {
            key: key.into(),
            dest_key: format!("vault/{key}"),
            dest_version: Some(dest_version.into()),
            ..Default::default()
        })
    }

    #[test]
    fn journal_rows_sort_by_key_through_spill_files_oldest_first_within_a_key() {
        // Parts as a run lists them (by time); keys out of order across parts.
        let read = [
            (copy("z z", "z1"), true),
            (copy("a\tb", "a1"), true),
            (JournalRow::Removed { key: "m".into() }, false),
            (copy("a\tb", "a2"), false),
            (copy("é", "e1"), false),
            (copy("a\tb", "a3"), true),
        ];
        let mut sorter = ExternalSorter::new(2);
        for (seq, (row, last_read)) in read.iter().cloned().enumerate() {
            sorter
                .push(JournalRecord {
                    seq: seq as u64,
                    read: JournalRead { row, last_read },
                })
                .unwrap();
        }
        assert!(sorter.spilled_runs() >= 2, "the test spills");
        let sorted: Vec<(String, bool)> = sorter
            .finish()
            .unwrap()
            .map(|r| {
                let r = r.unwrap().read;
                let label = match &r.row {
                    JournalRow::Copied(e) => e.dest_version.clone().unwrap_or_default(),
                    JournalRow::Removed { key } => format!("removed {key}"),
                };
                (label, r.last_read)
            })
            .collect();
        let expected: Vec<(String, bool)> = [
            ("a1", true),
            ("a2", false),
            ("a3", true),
            ("removed m", false),
            ("z1", true),
            ("e1", false),
        ]
        .iter()
        .map(|(l, f)| (l.to_string(), *f))
        .collect();
        assert_eq!(sorted, expected);
    }
}
