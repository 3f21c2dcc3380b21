//! Parquet/ORC -> Arrow record batches (by the format crates) -> records.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Schema, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use prost::Message;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::timefmt::format_millis;
use crate::{ChunkSource, ColumnarError, ColumnarFormat, InventoryRecord, RecordIter};

/// Rows per decoded batch.
const BATCH_SIZE: usize = 8192;

const BUCKET: &str = "bucket";
const KEY: &str = "key";
const VERSION_ID: &str = "version_id";
const IS_LATEST: &str = "is_latest";
const IS_DELETE_MARKER: &str = "is_delete_marker";
const SIZE: &str = "size";
const LAST_MODIFIED_DATE: &str = "last_modified_date";
const E_TAG: &str = "e_tag";
const STORAGE_CLASS: &str = "storage_class";

/// The columns we decode; everything else in the file is skipped.
const WANTED: [&str; 9] = [
    BUCKET,
    KEY,
    VERSION_ID,
    IS_LATEST,
    IS_DELETE_MARKER,
    SIZE,
    LAST_MODIFIED_DATE,
    E_TAG,
    STORAGE_CLASS,
];

pub(crate) fn read_source<R: ChunkSource>(
    format: ColumnarFormat,
    source: R,
    file: String,
) -> Result<RecordIter, ColumnarError> {
    // The decoders panic on some kinds of damage (orc-rust much more than
    // parquet). Where panics unwind, turn them into errors; under
    // `panic = "abort"` they still end the process.
    let opened = catch_unwind(AssertUnwindSafe(|| {
        let batches: Box<dyn RecordBatchReader + Send> = match format {
            ColumnarFormat::Parquet => open_parquet(source, &file)?,
            ColumnarFormat::Orc => open_orc(source, &file)?,
        };
        let layout = Layout::resolve(&batches.schema(), &file)?;
        Ok((batches, layout))
    }));
    let (batches, layout) = match opened {
        Ok(result) => result?,
        Err(panic) => {
            return Err(ColumnarError::Corrupt {
                file,
                format,
                message: format!("the decoder panicked: {}", panic_message(&*panic)),
            })
        }
    };
    Ok(Box::new(Records {
        file,
        format,
        layout,
        batches: Some(batches),
        current: None,
        pos: 0,
        next_row: 1,
    }))
}

fn open_parquet<R: ChunkSource>(
    source: R,
    file: &str,
) -> Result<Box<dyn RecordBatchReader + Send>, ColumnarError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;

    let parquet_err = |source| ColumnarError::Parquet {
        file: file.to_owned(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(source).map_err(parquet_err)?;
    let roots: Vec<&str> = builder
        .parquet_schema()
        .root_schema()
        .get_fields()
        .iter()
        .map(|field| field.name())
        .collect();
    let wanted = wanted_indices(&roots);
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_SIZE)
        .build()
        .map_err(parquet_err)?;
    Ok(Box::new(reader))
}

fn open_orc<R: ChunkSource>(
    source: R,
    file: &str,
) -> Result<Box<dyn RecordBatchReader + Send>, ColumnarError> {
    use orc_rust::projection::ProjectionMask;
    use orc_rust::{ArrowReaderBuilder, TimestampPrecision};

    let file_len = check_orc_tail(&source, file)?;
    let builder = ArrowReaderBuilder::try_new(source).map_err(|source| ColumnarError::Orc {
        file: file.to_owned(),
        source,
    })?;
    for (i, stripe) in builder
        .file_metadata()
        .stripe_metadatas()
        .iter()
        .enumerate()
    {
        let end = stripe
            .offset()
            .checked_add(stripe.index_length())
            .and_then(|n| n.checked_add(stripe.data_length()))
            .and_then(|n| n.checked_add(stripe.footer_length()));
        if end.is_none_or(|end| end > file_len) {
            return Err(corrupt_orc(
                file,
                format!("stripe {i} extends past the end of the file"),
            ));
        }
    }
    let root = builder.file_metadata().root_data_type();
    let names: Vec<&str> = root.children().iter().map(|c| c.name()).collect();
    let wanted = wanted_indices(&names);
    let mask = ProjectionMask::roots(
        root,
        wanted
            .iter()
            .map(|&i| root.children()[i].data_type().column_index()),
    );
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_SIZE)
        // Microseconds rather than the default nanoseconds: no overflow for
        // any date a timestamp can hold.
        .with_timestamp_precision(TimestampPrecision::Microsecond)
        .build();
    Ok(Box::new(reader))
}

fn corrupt_orc(file: &str, message: String) -> ColumnarError {
    ColumnarError::Corrupt {
        file: file.to_owned(),
        format: ColumnarFormat::Orc,
        message,
    }
}

/// orc-rust trusts the lengths in the file tail (a corrupt one makes it
/// allocate whatever the file claims, or overflow an offset computation), so
/// check them against the file size first. Returns the file length.
fn check_orc_tail<R: ChunkSource>(source: &R, file: &str) -> Result<u64, ColumnarError> {
    use orc_rust::reader::ChunkReader as OrcChunkReader;

    let io_err = |source| ColumnarError::Io {
        file: file.to_owned(),
        source,
    };
    let len = OrcChunkReader::len(source);
    // "ORC" + postscript + its length byte, at the very least.
    if len < 5 {
        return Err(corrupt_orc(file, format!("only {len} bytes long")));
    }
    let head = OrcChunkReader::get_bytes(source, 0, 3).map_err(io_err)?;
    if head.as_ref() != b"ORC" {
        return Err(corrupt_orc(
            file,
            "does not start with the ORC magic".to_owned(),
        ));
    }
    let last = OrcChunkReader::get_bytes(source, len - 1, 1).map_err(io_err)?;
    let ps_len = u64::from(last[0]);
    if ps_len == 0 || ps_len + 4 > len {
        return Err(corrupt_orc(
            file,
            format!("invalid postscript length {ps_len}"),
        ));
    }
    let ps_bytes = OrcChunkReader::get_bytes(source, len - 1 - ps_len, ps_len).map_err(io_err)?;
    let ps = orc_rust::proto::PostScript::decode(ps_bytes)
        .map_err(|e| corrupt_orc(file, format!("cannot decode the postscript: {e}")))?;
    if ps.magic.as_deref().is_some_and(|magic| magic != "ORC") {
        return Err(corrupt_orc(file, "postscript magic is not ORC".to_owned()));
    }
    let tail = ps
        .footer_length()
        .checked_add(ps.metadata_length())
        .and_then(|n| n.checked_add(ps_len + 4));
    if tail.is_none_or(|tail| tail > len) {
        return Err(corrupt_orc(
            file,
            format!(
                "footer ({} bytes) and metadata ({} bytes) do not fit in the file ({len} bytes)",
                ps.footer_length(),
                ps.metadata_length()
            ),
        ));
    }
    Ok(len)
}

/// Finds a column by name: exact match first, then ASCII case-insensitive.
fn find_column<S: AsRef<str>>(names: &[S], wanted: &str) -> Option<usize> {
    names.iter().position(|n| n.as_ref() == wanted).or_else(|| {
        names
            .iter()
            .position(|n| n.as_ref().eq_ignore_ascii_case(wanted))
    })
}

/// Indices (ascending, deduplicated) of the columns we decode.
fn wanted_indices(names: &[&str]) -> Vec<usize> {
    let mut indices: Vec<usize> = WANTED
        .iter()
        .filter_map(|wanted| find_column(names, wanted))
        .collect();
    indices.sort_unstable();
    indices.dedup();
    indices
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    Time(TimeScale),
}

/// How to turn a raw i64 of a timestamp column into epoch milliseconds.
#[derive(Clone, Copy)]
enum TimeScale {
    Mul(i64),
    Div(i64),
}

impl TimeScale {
    fn to_millis(self, v: i64) -> Option<i64> {
        match self {
            TimeScale::Mul(m) => v.checked_mul(m),
            TimeScale::Div(d) => Some(v.div_euclid(d)),
        }
    }
}

fn kind_of(column: &'static str, data_type: &DataType, file: &str) -> Result<Kind, ColumnarError> {
    let (kind, expected) = match column {
        IS_LATEST | IS_DELETE_MARKER => (
            matches!(data_type, DataType::Boolean).then_some(Kind::Bool),
            "a boolean",
        ),
        SIZE => (data_type.is_integer().then_some(Kind::Int), "an integer"),
        LAST_MODIFIED_DATE => (
            match data_type {
                DataType::Timestamp(unit, _) => Some(Kind::Time(match unit {
                    TimeUnit::Second => TimeScale::Mul(1000),
                    TimeUnit::Millisecond => TimeScale::Mul(1),
                    TimeUnit::Microsecond => TimeScale::Div(1000),
                    TimeUnit::Nanosecond => TimeScale::Div(1_000_000),
                })),
                // A bare INT64 / Date64: epoch milliseconds.
                DataType::Int64 | DataType::Date64 => Some(Kind::Time(TimeScale::Mul(1))),
                _ => None,
            },
            "a timestamp",
        ),
        _ => (is_stringish(data_type).then_some(Kind::Str), "a string"),
    };
    kind.ok_or_else(|| ColumnarError::ColumnType {
        file: file.to_owned(),
        column,
        expected,
        found: data_type.to_string(),
    })
}

fn is_stringish(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => true,
        DataType::Dictionary(_, values) => is_stringish(values),
        _ => false,
    }
}

/// Where each known column sits in the (projected) batch schema.
struct Layout {
    bucket: usize,
    key: usize,
    version_id: Option<usize>,
    is_latest: Option<usize>,
    is_delete_marker: Option<usize>,
    size: Option<usize>,
    last_modified: Option<(usize, TimeScale)>,
    e_tag: Option<usize>,
    storage_class: Option<usize>,
}

impl Layout {
    fn resolve(schema: &Schema, file: &str) -> Result<Layout, ColumnarError> {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let find = |column: &'static str| -> Result<Option<(usize, Kind)>, ColumnarError> {
            match find_column(&names, column) {
                None => Ok(None),
                Some(i) => Ok(Some((
                    i,
                    kind_of(column, schema.field(i).data_type(), file)?,
                ))),
            }
        };
        let required = |column: &'static str| -> Result<usize, ColumnarError> {
            find(column)?
                .map(|(i, _)| i)
                .ok_or_else(|| ColumnarError::MissingColumn {
                    file: file.to_owned(),
                    column,
                })
        };
        let optional = |column: &'static str| -> Result<Option<usize>, ColumnarError> {
            Ok(find(column)?.map(|(i, _)| i))
        };
        Ok(Layout {
            bucket: required(BUCKET)?,
            key: required(KEY)?,
            version_id: optional(VERSION_ID)?,
            is_latest: optional(IS_LATEST)?,
            is_delete_marker: optional(IS_DELETE_MARKER)?,
            size: optional(SIZE)?,
            last_modified: find(LAST_MODIFIED_DATE)?.map(|(i, kind)| match kind {
                Kind::Time(scale) => (i, scale),
                _ => unreachable!("kind_of returns Time for last_modified_date"),
            }),
            e_tag: optional(E_TAG)?,
            storage_class: optional(STORAGE_CLASS)?,
        })
    }

    fn columns(&self, batch: &RecordBatch) -> Result<Columns, ArrowError> {
        let col = |i: usize| batch.column(i);
        let strings = |i: Option<usize>| i.map(|i| to_strings(col(i))).transpose();
        let bools = |i: Option<usize>| i.map(|i| to_bools(col(i))).transpose();
        Ok(Columns {
            len: batch.num_rows(),
            bucket: to_strings(col(self.bucket))?,
            key: to_strings(col(self.key))?,
            version_id: strings(self.version_id)?,
            is_latest: bools(self.is_latest)?,
            is_delete_marker: bools(self.is_delete_marker)?,
            size: self.size.map(|i| to_i64(col(i))).transpose()?,
            last_modified: self
                .last_modified
                .map(|(i, scale)| to_i64(col(i)).map(|a| (a, scale)))
                .transpose()?,
            e_tag: strings(self.e_tag)?,
            storage_class: strings(self.storage_class)?,
        })
    }
}

const STRICT: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: arrow::util::display::FormatOptions::new(),
};

/// Any string-like array (incl. binary, which is UTF-8-checked) as Utf8.
fn to_strings(array: &ArrayRef) -> Result<StringArray, ArrowError> {
    if let Some(strings) = array.as_string_opt::<i32>() {
        return Ok(strings.clone());
    }
    Ok(cast_with_options(array, &DataType::Utf8, &STRICT)?
        .as_string::<i32>()
        .clone())
}

fn to_bools(array: &ArrayRef) -> Result<BooleanArray, ArrowError> {
    array.as_boolean_opt().cloned().ok_or_else(|| {
        ArrowError::SchemaError(format!("expected booleans, got {}", array.data_type()))
    })
}

/// Any integer / timestamp / Date64 array as its raw i64 values.
fn to_i64(array: &ArrayRef) -> Result<Int64Array, ArrowError> {
    Ok(cast_with_options(array, &DataType::Int64, &STRICT)?
        .as_primitive()
        .clone())
}

/// One decoded batch, normalised to a handful of array types.
struct Columns {
    len: usize,
    bucket: StringArray,
    key: StringArray,
    version_id: Option<StringArray>,
    is_latest: Option<BooleanArray>,
    is_delete_marker: Option<BooleanArray>,
    size: Option<Int64Array>,
    last_modified: Option<(Int64Array, TimeScale)>,
    e_tag: Option<StringArray>,
    storage_class: Option<StringArray>,
}

fn get_str(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn get_bool(a: &BooleanArray, i: usize) -> Option<bool> {
    a.is_valid(i).then(|| a.value(i))
}

fn get_i64(a: &Int64Array, i: usize) -> Option<i64> {
    a.is_valid(i).then(|| a.value(i))
}

impl Columns {
    fn record(&self, i: usize) -> Result<InventoryRecord, (&'static str, String)> {
        let required = |a: &StringArray, column| {
            get_str(a, i)
                .map(str::to_owned)
                .ok_or((column, "is null".to_owned()))
        };
        let optional =
            |a: &Option<StringArray>| a.as_ref().and_then(|a| get_str(a, i)).map(str::to_owned);
        let size = match self.size.as_ref().and_then(|a| get_i64(a, i)) {
            None => None,
            Some(v) => Some(u64::try_from(v).map_err(|_| (SIZE, format!("is negative ({v})")))?),
        };
        let last_modified = match &self.last_modified {
            None => None,
            Some((a, scale)) => match get_i64(a, i) {
                None => None,
                Some(v) => Some(
                    scale
                        .to_millis(v)
                        .and_then(format_millis)
                        .ok_or((LAST_MODIFIED_DATE, format!("is out of range ({v})")))?,
                ),
            },
        };
        Ok(InventoryRecord {
            bucket: required(&self.bucket, BUCKET)?,
            key: required(&self.key, KEY)?,
            version_id: self.version_id.as_ref().map(|a| match get_str(a, i) {
                None | Some("") => "null".to_owned(),
                Some(v) => v.to_owned(),
            }),
            is_latest: self.is_latest.as_ref().and_then(|a| get_bool(a, i)),
            is_delete_marker: self
                .is_delete_marker
                .as_ref()
                .and_then(|a| get_bool(a, i))
                .unwrap_or(false),
            size,
            last_modified,
            e_tag: optional(&self.e_tag),
            storage_class: optional(&self.storage_class),
        })
    }
}

struct Records {
    file: String,
    format: ColumnarFormat,
    layout: Layout,
    /// `None` once exhausted or failed.
    batches: Option<Box<dyn RecordBatchReader + Send>>,
    current: Option<Columns>,
    /// Next row within `current`.
    pos: usize,
    /// 1-based number (within the file) of the next row to be returned.
    next_row: u64,
}

impl Records {
    /// Ends the iteration with `error`.
    fn fail(&mut self, error: ColumnarError) -> Option<Result<InventoryRecord, ColumnarError>> {
        self.batches = None;
        self.current = None;
        Some(Err(error))
    }

    /// Decodes the next batch; `None` at the end.
    fn next_batch(&mut self) -> Option<Result<Columns, ColumnarError>> {
        let batches = self.batches.as_mut()?;
        let layout = &self.layout;
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            batches
                .next()
                .map(|batch| batch.and_then(|batch| layout.columns(&batch)))
        }));
        match decoded {
            Ok(None) => None,
            Ok(Some(Ok(columns))) => Some(Ok(columns)),
            Ok(Some(Err(source))) => Some(Err(ColumnarError::Decode {
                file: self.file.clone(),
                row: self.next_row,
                source,
            })),
            Err(panic) => Some(Err(ColumnarError::Corrupt {
                file: self.file.clone(),
                format: self.format,
                message: format!(
                    "the decoder panicked on the rows from row {} on: {}",
                    self.next_row,
                    panic_message(&*panic)
                ),
            })),
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

impl Iterator for Records {
    type Item = Result<InventoryRecord, ColumnarError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(columns) = &self.current {
                if self.pos < columns.len {
                    let row = self.next_row;
                    let result = columns.record(self.pos).map_err(|(column, problem)| {
                        ColumnarError::Value {
                            file: self.file.clone(),
                            row,
                            column,
                            problem,
                        }
                    });
                    self.pos += 1;
                    self.next_row += 1;
                    return Some(result);
                }
                self.current = None;
            }
            match self.next_batch() {
                None => {
                    self.batches = None;
                    return None;
                }
                Some(Err(e)) => return self.fail(e),
                Some(Ok(columns)) => {
                    self.current = Some(columns);
                    self.pos = 0;
                }
            }
        }
    }
}
