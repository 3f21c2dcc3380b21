//! The prepare step: read a manifest (CSV, S3 Inventory report, or a listing of the source
//! bucket) from a cursor on, and turn it into chunks. The planner writes the chunks to the
//! control bucket and checkpoints; `batchops plan` (dry run) counts them and writes nothing.
//!
//! CSV and inventory files are parsed on a blocking thread (decompression and parsing are CPU
//! work) that hands whole chunks to the async side through a small bounded channel, so memory
//! stays flat whatever the manifest's size.

mod backup;
mod columnar;
mod csv;
mod dry_run;
mod inventory;
mod lines;
mod listing;
mod output;
mod reader;
mod restore;
mod store_listing;
mod writer;

use crate::error::{Error, Result};
use backup::*;
pub use backup::{open_catalog, versioning_enabled};
use batchops_core::backup::DraftRow;
use batchops_core::manifest::ManifestFields;
use batchops_core::plan::{ChunkOut, PlanProgress};
use batchops_core::request::{
    BackupRun, GeneratedManifest, ManifestSource, RestoreSource, StoreListing,
};
use columnar::*;
use csv::*;
pub use dry_run::{dry_run, DryRunReport};
use inventory::*;
use lines::*;
pub(crate) use listing::list_versions_page;
use listing::*;
use output::*;
pub use output::{output_root, write_generated_manifest};
use reader::*;
pub use reader::{Location, Reader};
use restore::*;
use store_listing::*;
use tokio::sync::mpsc;
pub use writer::{ChunkPut, ChunkWriter, WriteStats};

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

/// One manifest source, read from `progress.cursor` on, sending its chunks and other events to
/// `emitter`: what every file of this module offers [`start`] (CSV manifests, S3 Inventory
/// reports, listings, backup diffs, restores, other stores' listings).
trait ManifestReader: Send {
    /// Runs on a blocking thread: decompression and parsing are CPU work; S3 calls go through
    /// the reader's runtime handle.
    fn read(
        &self,
        reader: &Reader,
        progress: PlanProgress,
        options: &SourceOptions,
        emitter: &Emitter,
    ) -> Result<()>;
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
    let source = source.manifest_reader();
    tokio::task::spawn_blocking(move || {
        if let Err(err) = source.read(&reader, progress, &options, &emitter) {
            emitter.send_blocking(Err(err));
        }
    });
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
    /// An import's source: read through the reader's opened store.
    StoreListing(StoreListing),
}

impl SourceSpec {
    /// The file of this module that reads this source.
    fn manifest_reader(self) -> Box<dyn ManifestReader> {
        match self {
            SourceSpec::Csv {
                location,
                fields,
                expected_etag,
            } => Box::new(CsvManifest {
                location,
                fields,
                expected_etag,
            }),
            SourceSpec::Inventory {
                location,
                expected_etag,
            } => Box::new(InventoryReport {
                location,
                expected_etag,
            }),
            SourceSpec::Listing(generated) => Box::new(Listing(generated)),
            SourceSpec::Backup(run) => Box::new(BackupDiff(run)),
            SourceSpec::Restore {
                source,
                backup_bucket,
                control_bucket,
            } => Box::new(SnapshotRestore {
                source,
                backup_bucket,
                control_bucket,
            }),
            SourceSpec::StoreListing(listing) => Box::new(StoreObjects(listing)),
        }
    }

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
            ManifestSource::Store(listing) => SourceSpec::StoreListing(listing.clone()),
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
