use super::*;
use crate::error::{Error, Result};
use crate::objects::md5_hex;
use batchops_core::inventory::InventoryFormat;
use batchops_core::manifest::{ObjectEntry, ObjectRef, ParsedLine};
use batchops_core::plan::Cursor;
use md5::{Digest, Md5};

/// Parquet and ORC inventory files: downloaded to a temporary file (their readers seek), MD5
/// computed on the way, then read record by record.
pub(super) fn read_columnar<S: LineSink>(
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
