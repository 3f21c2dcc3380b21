//! Reads S3 Inventory report data files written in Apache Parquet or Apache ORC
//! into plain [`InventoryRecord`]s, and writes such files for tests.
//!
//! S3 Inventory names its Parquet/ORC columns in snake_case: `bucket`, `key`,
//! `version_id`, `is_latest`, `is_delete_marker`, `size`, `last_modified_date`,
//! `e_tag`, `storage_class`, and more that this crate ignores
//! (`is_multipart_uploaded`, `replication_status`, `encryption_status`,
//! `object_lock_*`, `intelligent_tiering_access_tier`, `checksum_algorithm`, ...).
//! Only `bucket` and `key` are always present; the other columns depend on the
//! inventory configuration. Columns are looked up by name (ASCII
//! case-insensitively if there is no exact match), never by position.
//!
//! Reading is streamed: Parquet is decoded a batch of rows at a time from one
//! row group, ORC one stripe at a time, so memory is bounded by a row group /
//! stripe and never by the whole file. Only the columns above are decoded.
//!
//! Both formats are decoded by the Apache Arrow implementations (`parquet` from
//! arrow-rs, `orc-rust`); this crate only maps their Arrow batches to records.
//!
//! Damaged files: both decoders panic on some kinds of damage (orc-rust
//! often, e.g. on corrupt compressed blocks; parquet rarely). The readers
//! catch such panics and return [`ColumnarError::Corrupt`], but only where
//! panics unwind: in a binary built with `panic = "abort"` (this workspace's
//! release profile) a damaged file can still abort the process. The ORC file
//! tail and stripe offsets are checked against the file size up front so that
//! a damaged tail cannot make orc-rust allocate absurd amounts.
//!
//! The writers are for tests and fixtures. orc-rust 0.9.0's integer encoder
//! has a bug that some value distributions trip (e.g. ~90% tiny objects and
//! ~10% of 20–30 MB, or dates before 2015 mixed with recent ones);
//! [`write_orc`] then fails with an error saying so rather than writing a bad
//! file (every ORC file written is read back and compared).

use std::fmt;
use std::path::Path;

mod read;
mod timefmt;
mod write;

/// The two columnar formats S3 Inventory can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnarFormat {
    Parquet,
    Orc,
}

impl fmt::Display for ColumnarFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnarFormat::Parquet => "Parquet",
            ColumnarFormat::Orc => "ORC",
        })
    }
}

/// One row of an S3 Inventory report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InventoryRecord {
    pub bucket: String,
    /// As stored (Parquet and ORC keys are not URL-encoded, unlike CSV).
    pub key: String,
    /// `None` when the file has no `version_id` column; `Some("null")` when the
    /// column exists but the value is null or empty (the "null" version).
    pub version_id: Option<String>,
    pub is_latest: Option<bool>,
    /// `false` when the column is absent (or the value is null).
    pub is_delete_marker: bool,
    pub size: Option<u64>,
    /// RFC 3339 UTC with millisecond precision, e.g. `2026-01-02T03:04:05.678Z`.
    pub last_modified: Option<String>,
    /// As stored.
    pub e_tag: Option<String>,
    pub storage_class: Option<String>,
}

/// Errors from reading or writing inventory data files. Every message names the
/// file (`<input>` for in-memory sources) and, where relevant, the column and
/// the 1-based row number within the file.
#[derive(Debug, thiserror::Error)]
pub enum ColumnarError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: cannot read Parquet file: {source}")]
    Parquet {
        file: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{file}: cannot read ORC file: {source}")]
    Orc {
        file: String,
        #[source]
        source: orc_rust::error::OrcError,
    },
    /// Damage found before handing the file to the decoder, or a decoder
    /// panic caught while opening or reading (only where panics unwind; under
    /// `panic = "abort"` such a panic ends the process). No further records
    /// are produced.
    #[error("{file}: not a valid {format} file: {message}")]
    Corrupt {
        file: String,
        format: ColumnarFormat,
        message: String,
    },
    /// The decoder failed part-way; no further records are produced.
    #[error("{file}: cannot decode the rows from row {row} on: {source}")]
    Decode {
        file: String,
        row: u64,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{file}: required column `{column}` is missing")]
    MissingColumn { file: String, column: &'static str },
    #[error("{file}: column `{column}` is not {expected} (its type is {found})")]
    ColumnType {
        file: String,
        column: &'static str,
        expected: &'static str,
        found: String,
    },
    /// One bad value; the iterator goes on with the next row.
    #[error("{file}: row {row}: column `{column}` {problem}")]
    Value {
        file: String,
        row: u64,
        column: &'static str,
        problem: String,
    },
    /// A record given to a writer cannot be written (`index` is 0-based).
    #[error("record {index}: field `{field}` {problem}")]
    InvalidRecord {
        index: usize,
        field: &'static str,
        problem: String,
    },
    #[error("{file}: cannot write {format} file: {source}")]
    Write {
        file: String,
        format: ColumnarFormat,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The iterator returned by the readers.
pub type RecordIter = Box<dyn Iterator<Item = Result<InventoryRecord, ColumnarError>> + Send>;

/// Something both decoders can read from: `std::fs::File` and `bytes::Bytes`
/// qualify. (Blanket-implemented; there is nothing to implement by hand.)
pub trait ChunkSource:
    parquet::file::reader::ChunkReader + orc_rust::reader::ChunkReader + Send + 'static
{
}

impl<T> ChunkSource for T where
    T: parquet::file::reader::ChunkReader + orc_rust::reader::ChunkReader + Send + 'static
{
}

/// Opens `path` and streams its records. Errors name the file by `path`.
///
/// Errors about the file as a whole (unreadable, not Parquet/ORC, missing
/// `bucket`/`key` column, column of the wrong type) are returned here; errors
/// about single values come from the iterator, which then goes on with the
/// next row. After a decoding error ([`ColumnarError::Decode`]) the iterator ends.
pub fn read_file(format: ColumnarFormat, path: &Path) -> Result<RecordIter, ColumnarError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ColumnarError::Io {
        file: name.clone(),
        source,
    })?;
    read::read_source(format, file, name)
}

/// Streams the records of a data file held in memory.
pub fn read_bytes(
    format: ColumnarFormat,
    bytes: bytes::Bytes,
) -> Result<RecordIter, ColumnarError> {
    read::read_source(format, bytes, "<input>".to_owned())
}

/// Streams the records of any [`ChunkSource`]. Errors name the file `<input>`.
pub fn read_records<R>(format: ColumnarFormat, file: R) -> Result<RecordIter, ColumnarError>
where
    R: ChunkSource,
{
    read::read_source(format, file, "<input>".to_owned())
}

/// The S3 Inventory columns this crate knows (and writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InventoryColumn {
    Bucket,
    Key,
    VersionId,
    IsLatest,
    IsDeleteMarker,
    Size,
    LastModifiedDate,
    ETag,
    StorageClass,
}

impl InventoryColumn {
    pub const ALL: [InventoryColumn; 9] = [
        InventoryColumn::Bucket,
        InventoryColumn::Key,
        InventoryColumn::VersionId,
        InventoryColumn::IsLatest,
        InventoryColumn::IsDeleteMarker,
        InventoryColumn::Size,
        InventoryColumn::LastModifiedDate,
        InventoryColumn::ETag,
        InventoryColumn::StorageClass,
    ];

    /// The column name S3 uses in Parquet and ORC files.
    pub fn name(self) -> &'static str {
        match self {
            InventoryColumn::Bucket => "bucket",
            InventoryColumn::Key => "key",
            InventoryColumn::VersionId => "version_id",
            InventoryColumn::IsLatest => "is_latest",
            InventoryColumn::IsDeleteMarker => "is_delete_marker",
            InventoryColumn::Size => "size",
            InventoryColumn::LastModifiedDate => "last_modified_date",
            InventoryColumn::ETag => "e_tag",
            InventoryColumn::StorageClass => "storage_class",
        }
    }
}

/// Options for [`write_parquet_with`] and [`write_orc_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// Rows per Parquet row group / ORC stripe. Default 100 000.
    pub rows_per_group: usize,
    /// Columns to write, in this order; `bucket` and `key` are written even if
    /// not listed. Default: all of [`InventoryColumn::ALL`].
    pub columns: Vec<InventoryColumn>,
    /// Also write S3 columns that readers must ignore (`is_multipart_uploaded`,
    /// `replication_status`, `encryption_status`, `object_lock_*`,
    /// `intelligent_tiering_access_tier`, `bucket_key_status`,
    /// `checksum_algorithm`), with constant or null values. Default false.
    pub extra_s3_columns: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            rows_per_group: 100_000,
            columns: InventoryColumn::ALL.to_vec(),
            extra_s3_columns: false,
        }
    }
}

/// Writes `records` as an S3-Inventory-style Parquet file (snappy; every field
/// of [`InventoryRecord`] as a column; `last_modified_date` as INT64
/// TIMESTAMP(MILLIS, UTC)). A `version_id` of `None` or `Some("null")` is
/// written as null, which reads back as `Some("null")`.
pub fn write_parquet(path: &Path, records: &[InventoryRecord]) -> Result<(), ColumnarError> {
    write_parquet_with(path, records, &WriteOptions::default())
}

/// [`write_parquet`] with options (row group size, subset of columns, extra columns).
pub fn write_parquet_with(
    path: &Path,
    records: &[InventoryRecord],
    options: &WriteOptions,
) -> Result<(), ColumnarError> {
    write::write(ColumnarFormat::Parquet, path, records, options)
}

/// Writes `records` as an S3-Inventory-style ORC file (zlib; every field of
/// [`InventoryRecord`] as a column; `last_modified_date` as an ORC `timestamp`
/// with writer time zone UTC). `version_id` is handled as in [`write_parquet`].
/// ORC cannot represent a time in the last second before the Unix epoch with
/// a non-zero fraction (ORC-763, e.g. `1969-12-31T23:59:59.500Z`); such a
/// record makes this fail.
pub fn write_orc(path: &Path, records: &[InventoryRecord]) -> Result<(), ColumnarError> {
    write_orc_with(path, records, &WriteOptions::default())
}

/// [`write_orc`] with options (stripe size, subset of columns, extra columns).
pub fn write_orc_with(
    path: &Path,
    records: &[InventoryRecord],
    options: &WriteOptions,
) -> Result<(), ColumnarError> {
    write::write(ColumnarFormat::Orc, path, records, options)
}
