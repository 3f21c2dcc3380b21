//! Records -> Arrow record batches -> Parquet/ORC files (for tests and fixtures).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::timefmt::{format_millis, parse_rfc3339_millis};
use crate::{ColumnarError, ColumnarFormat, InventoryColumn, InventoryRecord, WriteOptions};

/// S3 columns that readers must skip, with the constant value we write
/// (`None`: all null).
enum ExtraValue {
    Bool(bool),
    Str(Option<&'static str>),
    NullTimestamp,
}

const EXTRA_COLUMNS: [(&str, ExtraValue); 9] = [
    ("is_multipart_uploaded", ExtraValue::Bool(false)),
    ("replication_status", ExtraValue::Str(None)),
    ("encryption_status", ExtraValue::Str(Some("SSE-S3"))),
    ("object_lock_retain_until_date", ExtraValue::NullTimestamp),
    ("object_lock_mode", ExtraValue::Str(None)),
    (
        "object_lock_legal_hold_status",
        ExtraValue::Str(Some("OFF")),
    ),
    ("intelligent_tiering_access_tier", ExtraValue::Str(None)),
    ("bucket_key_status", ExtraValue::Str(Some("DISABLED"))),
    ("checksum_algorithm", ExtraValue::Str(Some("CRC64NVME"))),
];

enum Column {
    Known(InventoryColumn),
    Extra(usize),
}

pub(crate) fn write(
    format: ColumnarFormat,
    path: &Path,
    records: &[InventoryRecord],
    options: &WriteOptions,
) -> Result<(), ColumnarError> {
    let file_name = path.display().to_string();
    let write_err = |source: Box<dyn std::error::Error + Send + Sync>| ColumnarError::Write {
        file: file_name.clone(),
        format,
        source,
    };
    if options.rows_per_group == 0 {
        return Err(write_err("rows_per_group must be positive".into()));
    }

    // bucket and key first, then the requested columns, then the extras.
    let mut columns = vec![
        Column::Known(InventoryColumn::Bucket),
        Column::Known(InventoryColumn::Key),
    ];
    for &column in &options.columns {
        if !matches!(column, InventoryColumn::Bucket | InventoryColumn::Key)
            && !columns
                .iter()
                .any(|c| matches!(c, Column::Known(k) if *k == column))
        {
            columns.push(Column::Known(column));
        }
    }
    if options.extra_s3_columns {
        columns.extend((0..EXTRA_COLUMNS.len()).map(Column::Extra));
    }

    // Parquet: INT64 TIMESTAMP(MILLIS, isAdjustedToUTC). ORC: a plain
    // `timestamp` column (orc-rust then records UTC as the writer time zone).
    let timezone: Option<Arc<str>> = match format {
        ColumnarFormat::Parquet => Some("UTC".into()),
        ColumnarFormat::Orc => None,
    };
    let timestamp = DataType::Timestamp(TimeUnit::Millisecond, timezone.clone());
    let fields: Vec<Field> = columns
        .iter()
        .map(|column| match column {
            Column::Known(c) => {
                let (data_type, nullable) = match c {
                    InventoryColumn::Bucket | InventoryColumn::Key => (DataType::Utf8, false),
                    InventoryColumn::VersionId
                    | InventoryColumn::ETag
                    | InventoryColumn::StorageClass => (DataType::Utf8, true),
                    InventoryColumn::IsLatest => (DataType::Boolean, true),
                    InventoryColumn::IsDeleteMarker => (DataType::Boolean, false),
                    InventoryColumn::Size => (DataType::Int64, true),
                    InventoryColumn::LastModifiedDate => (timestamp.clone(), true),
                };
                Field::new(c.name(), data_type, nullable)
            }
            Column::Extra(i) => {
                let data_type = match EXTRA_COLUMNS[*i].1 {
                    ExtraValue::Bool(_) => DataType::Boolean,
                    ExtraValue::Str(_) => DataType::Utf8,
                    ExtraValue::NullTimestamp => timestamp.clone(),
                };
                Field::new(EXTRA_COLUMNS[*i].0, data_type, true)
            }
        })
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));

    let file = File::create(path).map_err(|source| ColumnarError::Io {
        file: file_name.clone(),
        source,
    })?;
    let mut out = BufWriter::new(file);
    let mut offset = 0;
    let batches = records.chunks(options.rows_per_group).map(|chunk| {
        let batch = build_batch(&schema, &columns, chunk, offset, &timezone)?;
        let batch = batch.map_err(|e| write_err(e.into()));
        offset += chunk.len();
        batch
    });

    match format {
        ColumnarFormat::Parquet => {
            use parquet::arrow::arrow_writer::ArrowWriterOptions;
            use parquet::arrow::ArrowWriter;
            use parquet::basic::Compression;
            use parquet::file::properties::WriterProperties;

            let properties = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(options.rows_per_group))
                .build();
            // No embedded Arrow schema: like S3's files, readers must go by
            // the Parquet schema alone.
            let writer_options = ArrowWriterOptions::new()
                .with_properties(properties)
                .with_skip_arrow_metadata(true);
            let mut writer =
                ArrowWriter::try_new_with_options(&mut out, schema.clone(), writer_options)
                    .map_err(|e| write_err(e.into()))?;
            for batch in batches {
                writer.write(&batch?).map_err(|e| write_err(e.into()))?;
                writer.flush().map_err(|e| write_err(e.into()))?;
            }
            writer.close().map_err(|e| write_err(e.into()))?;
        }
        ColumnarFormat::Orc => {
            use orc_rust::compression::CompressionType;
            use orc_rust::ArrowWriterBuilder;

            // orc-rust 0.9.0's RLEv2 patched-base encoder can overflow on some
            // value distributions (fixed upstream after 0.9.0): a panic with
            // overflow checks on, a file that decodes wrongly without them.
            // So catch the panic, and read the file back below.
            let encode = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut writer = ArrowWriterBuilder::new(&mut out, schema.clone())
                    .with_compression(CompressionType::Zlib)
                    .try_build()
                    .map_err(|e| write_err(e.into()))?;
                for batch in batches {
                    writer.write(&batch?).map_err(|e| write_err(e.into()))?;
                    writer.flush_stripe().map_err(|e| write_err(e.into()))?;
                }
                writer.close().map_err(|e| write_err(e.into()))
            }));
            match encode {
                Ok(result) => result?,
                Err(panic) => {
                    let message = crate::read::panic_message(&*panic);
                    return Err(write_err(
                        format!("{ORC_ENCODER_BUG} (the encoder panicked: {message})").into(),
                    ));
                }
            }
        }
    }
    out.flush().map_err(|source| ColumnarError::Io {
        file: file_name.clone(),
        source,
    })?;
    out.get_ref()
        .sync_all()
        .map_err(|source| ColumnarError::Io {
            file: file_name.clone(),
            source,
        })?;
    drop(out);
    if format == ColumnarFormat::Orc {
        verify(format, path, records, &columns).map_err(write_err)?;
    }
    Ok(())
}

const ORC_ENCODER_BUG: &str = "hit a known bug of the orc-rust 0.9.0 integer encoder \
     (fixed upstream after 0.9.0); a slightly different data set will do";

/// Reads the file back and checks that it holds what was written.
fn verify(
    format: ColumnarFormat,
    path: &Path,
    records: &[InventoryRecord],
    columns: &[Column],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let has = |c: InventoryColumn| {
        columns
            .iter()
            .any(|k| matches!(k, Column::Known(k) if *k == c))
    };
    let mut read = crate::read_file(format, path)?;
    for (index, record) in records.iter().enumerate() {
        let expected = InventoryRecord {
            bucket: record.bucket.clone(),
            key: record.key.clone(),
            version_id: has(InventoryColumn::VersionId).then(|| {
                match record.version_id.as_deref() {
                    None | Some("") => "null".to_owned(),
                    Some(v) => v.to_owned(),
                }
            }),
            is_latest: record.is_latest.filter(|_| has(InventoryColumn::IsLatest)),
            is_delete_marker: record.is_delete_marker && has(InventoryColumn::IsDeleteMarker),
            size: record.size.filter(|_| has(InventoryColumn::Size)),
            last_modified: record
                .last_modified
                .as_deref()
                .filter(|_| has(InventoryColumn::LastModifiedDate))
                .and_then(parse_rfc3339_millis)
                .and_then(format_millis),
            e_tag: record.e_tag.clone().filter(|_| has(InventoryColumn::ETag)),
            storage_class: record
                .storage_class
                .clone()
                .filter(|_| has(InventoryColumn::StorageClass)),
        };
        match read.next() {
            Some(Ok(got)) if got == expected => {}
            Some(Err(e)) => return Err(format!("{ORC_ENCODER_BUG}: reading back: {e}").into()),
            _ => {
                return Err(format!("{ORC_ENCODER_BUG}: record {index} does not read back").into())
            }
        }
    }
    if read.next().is_some() {
        return Err(format!("{ORC_ENCODER_BUG}: more records read back than written").into());
    }
    Ok(())
}

fn build_batch(
    schema: &SchemaRef,
    columns: &[Column],
    records: &[InventoryRecord],
    offset: usize,
    timezone: &Option<Arc<str>>,
) -> Result<Result<RecordBatch, arrow::error::ArrowError>, ColumnarError> {
    let invalid = |i: usize, field, problem: String| ColumnarError::InvalidRecord {
        index: offset + i,
        field,
        problem,
    };
    let strings = |f: fn(&InventoryRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<StringArray>())
    };
    let timestamps = |values: Vec<Option<i64>>| -> ArrayRef {
        let array = TimestampMillisecondArray::from(values);
        Arc::new(match timezone {
            Some(tz) => array.with_timezone(tz.clone()),
            None => array,
        })
    };
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for column in columns {
        let array: ArrayRef = match column {
            Column::Known(InventoryColumn::Bucket) => strings(|r| Some(&r.bucket)),
            Column::Known(InventoryColumn::Key) => strings(|r| Some(&r.key)),
            Column::Known(InventoryColumn::VersionId) => {
                strings(|r| r.version_id.as_deref().filter(|v| *v != "null"))
            }
            Column::Known(InventoryColumn::IsLatest) => Arc::new(
                records
                    .iter()
                    .map(|r| r.is_latest)
                    .collect::<BooleanArray>(),
            ),
            Column::Known(InventoryColumn::IsDeleteMarker) => Arc::new(
                records
                    .iter()
                    .map(|r| Some(r.is_delete_marker))
                    .collect::<BooleanArray>(),
            ),
            Column::Known(InventoryColumn::Size) => {
                let sizes = records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        r.size
                            .map(|s| {
                                i64::try_from(s)
                                    .map_err(|_| invalid(i, "size", format!("is too large ({s})")))
                            })
                            .transpose()
                    })
                    .collect::<Result<Int64Array, _>>()?;
                Arc::new(sizes)
            }
            Column::Known(InventoryColumn::LastModifiedDate) => {
                let values = records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        r.last_modified
                            .as_deref()
                            .map(|s| {
                                parse_rfc3339_millis(s).ok_or_else(|| {
                                    invalid(
                                        i,
                                        "last_modified",
                                        format!("is not an RFC 3339 date-time ({s:?})"),
                                    )
                                })
                            })
                            .transpose()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                timestamps(values)
            }
            Column::Known(InventoryColumn::ETag) => strings(|r| r.e_tag.as_deref()),
            Column::Known(InventoryColumn::StorageClass) => strings(|r| r.storage_class.as_deref()),
            Column::Extra(i) => match EXTRA_COLUMNS[*i].1 {
                ExtraValue::Bool(b) => Arc::new(BooleanArray::from(vec![b; records.len()])),
                ExtraValue::Str(s) => {
                    Arc::new(std::iter::repeat_n(s, records.len()).collect::<StringArray>())
                }
                ExtraValue::NullTimestamp => timestamps(vec![None; records.len()]),
            },
        };
        arrays.push(array);
    }
    Ok(RecordBatch::try_new(schema.clone(), arrays))
}
