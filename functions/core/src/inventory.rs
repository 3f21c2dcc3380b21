//! S3 Inventory reports as manifests (`S3InventoryReport_CSV_20161130`): `manifest.json` (verified
//! against `manifest.checksum`), then data files whose columns `fileSchema` names. CSV data files
//! are gzip, every field quoted, keys URL-encoded; ORC and Parquet files carry typed columns.

use crate::encoding::{decode_key, encode_key};
use crate::manifest::{
    check_key, split_csv_record, LineParser, MalformedLine, ObjectEntry, ObjectRef, ParsedLine,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryFile {
    pub key: String,
    #[serde(default)]
    pub size: u64,
    #[serde(rename = "MD5checksum")]
    pub md5_checksum: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryFormat {
    #[serde(rename = "CSV")]
    Csv,
    #[serde(rename = "ORC")]
    Orc,
    #[serde(rename = "Parquet")]
    Parquet,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryManifest {
    pub source_bucket: String,
    #[serde(default)]
    pub destination_bucket: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    pub file_format: InventoryFormat,
    pub file_schema: String,
    pub files: Vec<InventoryFile>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InventoryError {
    #[error("manifest.json is not an S3 Inventory manifest: {0}")]
    BadManifest(String),
    #[error("manifest.json has MD5 {actual} but manifest.checksum says {expected}")]
    ManifestChecksum { expected: String, actual: String },
    #[error("inventory file {key} has MD5 {actual} but manifest.json says {expected}")]
    FileChecksum {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("fileSchema `{0}` has no `Key` column")]
    NoKeyColumn(String),
    #[error("fileSchema `{0}` has no `Bucket` column")]
    NoBucketColumn(String),
}

impl InventoryManifest {
    pub fn parse(json: &[u8]) -> Result<Self, InventoryError> {
        let manifest: InventoryManifest =
            serde_json::from_slice(json).map_err(|e| InventoryError::BadManifest(e.to_string()))?;
        if manifest.files.is_empty() {
            return Err(InventoryError::BadManifest("it lists no files".into()));
        }
        Ok(manifest)
    }
}

/// `manifest.checksum` holds the hex MD5 of `manifest.json`.
pub fn verify_manifest_checksum(
    manifest_json: &[u8],
    checksum_file: &str,
) -> Result<(), InventoryError> {
    use md5::{Digest, Md5};
    let actual = hex::encode(Md5::digest(manifest_json));
    let expected = checksum_file.trim().to_ascii_lowercase();
    if actual != expected {
        return Err(InventoryError::ManifestChecksum { expected, actual });
    }
    Ok(())
}

pub fn verify_file_checksum(
    file: &InventoryFile,
    actual_md5_hex: &str,
) -> Result<(), InventoryError> {
    if !file.md5_checksum.eq_ignore_ascii_case(actual_md5_hex) {
        return Err(InventoryError::FileChecksum {
            key: file.key.clone(),
            expected: file.md5_checksum.clone(),
            actual: actual_md5_hex.to_string(),
        });
    }
    Ok(())
}

/// Column positions named by a CSV `fileSchema` (`Bucket, Key, VersionId, IsLatest, ...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventorySchema {
    pub columns: usize,
    pub bucket: usize,
    pub key: usize,
    pub version_id: Option<usize>,
    pub is_latest: Option<usize>,
    pub is_delete_marker: Option<usize>,
    pub size: Option<usize>,
    pub last_modified: Option<usize>,
    pub etag: Option<usize>,
    pub storage_class: Option<usize>,
}

impl InventorySchema {
    pub fn parse(file_schema: &str) -> Result<Self, InventoryError> {
        let names: Vec<String> = file_schema
            .split(',')
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        let find = |name: &str| names.iter().position(|c| c == name);
        Ok(InventorySchema {
            columns: names.len(),
            bucket: find("bucket")
                .ok_or_else(|| InventoryError::NoBucketColumn(file_schema.to_string()))?,
            key: find("key").ok_or_else(|| InventoryError::NoKeyColumn(file_schema.to_string()))?,
            version_id: find("versionid"),
            is_latest: find("islatest"),
            is_delete_marker: find("isdeletemarker"),
            size: find("size"),
            last_modified: find("lastmodifieddate"),
            etag: find("etag"),
            storage_class: find("storageclass"),
        })
    }
}

/// Parses inventory CSV lines into entries; `line_no` counts lines across the whole report so
/// messages can name `file, line`.
pub struct InventoryCsvParser {
    schema: InventorySchema,
    /// Names the data file in messages.
    pub file_key: String,
    scratch: Vec<String>,
}

impl InventoryCsvParser {
    pub fn new(schema: InventorySchema, file_key: impl Into<String>) -> Self {
        InventoryCsvParser {
            schema,
            file_key: file_key.into(),
            scratch: Vec::with_capacity(12),
        }
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" | "TRUE" | "True" => Some(true),
        "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl LineParser for InventoryCsvParser {
    fn parse_line(&mut self, line_no: u64, raw: &[u8]) -> ParsedLine {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            return ParsedLine::Blank;
        }
        let file = &self.file_key;
        let malformed = |bucket: &str, key: &str, message: String| {
            ParsedLine::Malformed(MalformedLine {
                line: line_no,
                bucket: bucket.to_string(),
                key_encoded: key.to_string(),
                message: format!("inventory file {file} line {line_no}: {message}"),
            })
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            return malformed(
                "",
                &encode_key(&String::from_utf8_lossy(raw)),
                "line is not valid UTF-8".into(),
            );
        };
        if split_csv_record(text, &mut self.scratch).is_none() {
            return malformed("", &encode_key(text), "unterminated quoted field".into());
        }
        let columns = &self.scratch;
        let schema = &self.schema;
        if columns.len() != schema.columns {
            return malformed(
                "",
                &encode_key(text),
                format!(
                    "expected {} fields as fileSchema names, found {}",
                    schema.columns,
                    columns.len()
                ),
            );
        }
        let column = |i: Option<usize>| i.map(|i| columns[i].as_str()).filter(|v| !v.is_empty());
        let is_delete_marker = column(schema.is_delete_marker).and_then(parse_bool) == Some(true);
        let bucket = columns[schema.bucket].as_str();
        let key_encoded = columns[schema.key].as_str();
        if bucket.is_empty() || key_encoded.is_empty() {
            return malformed(bucket, key_encoded, "Bucket or Key is empty".into());
        }
        let key = match decode_key(key_encoded) {
            Ok(key) => key,
            Err(err) => {
                return malformed(
                    bucket,
                    &encode_key(key_encoded),
                    format!("Key `{key_encoded}`: {err}"),
                )
            }
        };
        if let Err(message) = check_key(&key) {
            return malformed(bucket, &encode_key(&key), message);
        }
        // In an all-versions report an empty VersionId is the null version.
        let version_id = schema.version_id.map(|i| columns[i].as_str()).map(|v| {
            if v.is_empty() {
                "null".to_string()
            } else {
                v.to_string()
            }
        });
        let size = match column(schema.size) {
            _ if is_delete_marker => None,
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(size) => Some(size),
                Err(_) => {
                    return malformed(bucket, key_encoded, format!("Size `{v}` is not a number"))
                }
            },
        };
        let entry = ObjectEntry {
            object: ObjectRef {
                bucket: bucket.to_string(),
                key,
                version_id,
            },
            etag: column(schema.etag).map(str::to_string),
            size,
            last_modified: column(schema.last_modified).map(str::to_string),
            is_latest: column(schema.is_latest).and_then(parse_bool),
            storage_class: column(schema.storage_class).map(str::to_string),
        };
        if is_delete_marker {
            ParsedLine::DeleteMarker(entry)
        } else {
            ParsedLine::Object(entry)
        }
    }

    fn has_version_field(&self) -> bool {
        // Every row has a version (or the null version) when the column exists: nothing mixes.
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    const SCHEMA: &str = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass";

    fn parser() -> InventoryCsvParser {
        InventoryCsvParser::new(InventorySchema::parse(SCHEMA).unwrap(), "files/a.csv.gz")
    }

    #[test]
    fn parses_quoted_rows_and_decodes_keys() {
        let line = br#""src","dir/a+b%2Bc","v1","true","false","12","2026-01-01T00:00:00.000Z","0cc175b9c0f1b6a831c399e269772661","STANDARD""#;
        let ParsedLine::Object(entry) = parser().parse_line(1, line) else {
            panic!()
        };
        assert_eq!(entry.object.key, "dir/a b+c");
        assert_eq!(entry.object.version_id.as_deref(), Some("v1"));
        assert_eq!(entry.size, Some(12));
        assert_eq!(
            entry.etag.as_deref(),
            Some("0cc175b9c0f1b6a831c399e269772661")
        );
        assert_eq!(entry.is_latest, Some(true));
        assert_eq!(entry.storage_class.as_deref(), Some("STANDARD"));
    }

    #[test]
    fn empty_version_is_null_and_delete_markers_are_not_tasks() {
        let line = br#""src","k","","true","false","1","2026-01-01T00:00:00.000Z","e","STANDARD""#;
        let ParsedLine::Object(entry) = parser().parse_line(1, line) else {
            panic!()
        };
        assert_eq!(entry.object.version_id.as_deref(), Some("null"));
        let marker = br#""src","k","v2","true","true","","2026-01-02T00:00:00.000Z","","""#;
        let ParsedLine::DeleteMarker(marker) = parser().parse_line(2, marker) else {
            panic!()
        };
        assert_eq!(marker.object.version_id.as_deref(), Some("v2"));
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let ParsedLine::Malformed(m) = parser().parse_line(9, br#""src","k""#) else {
            panic!()
        };
        assert_eq!(
            m.message,
            "inventory file files/a.csv.gz line 9: expected 9 fields as fileSchema names, found 2"
        );
        let line = br#""src","k","v","true","false","big","t","e","S""#;
        let ParsedLine::Malformed(m) = parser().parse_line(3, line) else {
            panic!()
        };
        assert!(m.message.ends_with("Size `big` is not a number"));
    }

    #[test]
    fn keys_s3_would_refuse_are_malformed_rows() {
        let line = br#""src","a%00b","v","true","false","1","t","e","S""#;
        let ParsedLine::Malformed(m) = parser().parse_line(4, line) else {
            panic!()
        };
        assert_eq!(
            m.message,
            "inventory file files/a.csv.gz line 4: Key contains a NUL byte (at byte 1 of the decoded key)"
        );
        let long = "k".repeat(1025);
        let line = format!(r#""src","{long}","v","true","false","1","t","e","S""#);
        let ParsedLine::Malformed(m) = parser().parse_line(5, line.as_bytes()) else {
            panic!()
        };
        assert!(
            m.message
                .ends_with("Key is 1025 bytes long (UTF-8, decoded); S3 keys are at most 1024"),
            "{}",
            m.message
        );
    }

    #[test]
    fn manifest_and_checksums() {
        let json = br#"{"sourceBucket": "src", "destinationBucket": "arn:aws:s3:::inv", "version": "2016-11-30",
            "creationTimestamp": "1514944800000", "fileFormat": "CSV", "fileSchema": "Bucket, Key",
            "files": [{"key": "inv/src/data/a.csv.gz", "size": 10, "MD5checksum": "abc"}]}"#;
        let manifest = InventoryManifest::parse(json).unwrap();
        assert_eq!(manifest.file_format, InventoryFormat::Csv);
        assert_eq!(manifest.files[0].md5_checksum, "abc");
        let md5 = hex::encode(Md5::digest(json));
        verify_manifest_checksum(json, &format!("{md5}\n")).unwrap();
        assert!(matches!(
            verify_manifest_checksum(json, "00"),
            Err(InventoryError::ManifestChecksum { .. })
        ));
        assert!(verify_file_checksum(&manifest.files[0], "ABC").is_ok());
        assert!(matches!(
            verify_file_checksum(&manifest.files[0], "abd"),
            Err(InventoryError::FileChecksum { .. })
        ));
        assert!(InventorySchema::parse("Key, Size").is_err());
    }
}
