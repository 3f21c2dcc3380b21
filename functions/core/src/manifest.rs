//! `S3BatchOperations_CSV_20180820` manifests: headerless CSV, one object per line, columns named
//! by the job's `Fields`, keys URL-encoded. Parsing works on byte lines so a planner can stream
//! any size of manifest; a malformed line is reported, never fatal.

use crate::encoding::{decode_key, encode_key};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManifestField {
    Bucket,
    Key,
    VersionId,
    Ignore,
}

impl ManifestField {
    pub fn name(self) -> &'static str {
        match self {
            ManifestField::Bucket => "Bucket",
            ManifestField::Key => "Key",
            ManifestField::VersionId => "VersionId",
            ManifestField::Ignore => "Ignore",
        }
    }
}

/// The column layout of a CSV manifest, checked once: exactly one Bucket and Key, at most one
/// VersionId.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<ManifestField>", into = "Vec<ManifestField>")]
pub struct ManifestFields {
    fields: Vec<ManifestField>,
    bucket: usize,
    key: usize,
    version: Option<usize>,
}

impl ManifestFields {
    pub fn new(fields: Vec<ManifestField>) -> Result<Self, String> {
        let position = |wanted: ManifestField| -> Result<Option<usize>, String> {
            let mut found = fields
                .iter()
                .enumerate()
                .filter(|(_, f)| **f == wanted)
                .map(|(i, _)| i);
            let first = found.next();
            if found.next().is_some() {
                return Err(format!("{} appears more than once", wanted.name()));
            }
            Ok(first)
        };
        let bucket = position(ManifestField::Bucket)?.ok_or("must include Bucket")?;
        let key = position(ManifestField::Key)?.ok_or("must include Key")?;
        let version = position(ManifestField::VersionId)?;
        Ok(ManifestFields {
            fields,
            bucket,
            key,
            version,
        })
    }

    pub fn bucket_key() -> Self {
        Self::new(vec![ManifestField::Bucket, ManifestField::Key]).expect("static layout")
    }

    pub fn bucket_key_version() -> Self {
        Self::new(vec![
            ManifestField::Bucket,
            ManifestField::Key,
            ManifestField::VersionId,
        ])
        .expect("static layout")
    }

    pub fn has_version(&self) -> bool {
        self.version.is_some()
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn names(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl TryFrom<Vec<ManifestField>> for ManifestFields {
    type Error = String;
    fn try_from(fields: Vec<ManifestField>) -> Result<Self, Self::Error> {
        ManifestFields::new(fields)
    }
}

impl From<ManifestFields> for Vec<ManifestField> {
    fn from(fields: ManifestFields) -> Self {
        fields.fields
    }
}

/// One object named by a manifest line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectRef {
    pub bucket: String,
    /// The decoded key, as S3 stores it.
    pub key: String,
    /// `Some("null")` is the literal null version of an unversioned-then-versioned bucket.
    pub version_id: Option<String>,
}

/// A line that could not be read as an object. The task still exists and fails with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine {
    pub line: u64,
    /// Whatever could be read of the bucket and (encoded) key, for the report row.
    pub bucket: String,
    pub key_encoded: String,
    pub message: String,
}

/// One object a manifest names, with what the manifest knows about it (inventories and listings
/// know more than CSV manifests).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectEntry {
    pub object: ObjectRef,
    pub etag: Option<String>,
    pub size: Option<u64>,
    pub last_modified: Option<String>,
    pub is_latest: Option<bool>,
    pub storage_class: Option<String>,
}

impl ObjectEntry {
    pub fn of(object: ObjectRef) -> Self {
        ObjectEntry {
            object,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedLine {
    Blank,
    Object(ObjectEntry),
    /// A delete marker in an all-versions inventory or listing: not a task, but it matters to
    /// point-in-time selection.
    DeleteMarker(ObjectEntry),
    Malformed(MalformedLine),
}

/// Anything that turns one manifest line into a [`ParsedLine`].
pub trait LineParser {
    /// `line_no` is 1-based; `raw` is the line without its `\n`.
    fn parse_line(&mut self, line_no: u64, raw: &[u8]) -> ParsedLine;
    /// Whether every object line carries a version ID column (mixing is then checked).
    fn has_version_field(&self) -> bool;
}

/// Splits one CSV record into `out`, reusing its strings (this runs once per manifest line).
/// Fields may be double-quoted with `""` escapes (S3 Inventory quotes every field); returns
/// `None` when a quote is left open.
pub fn split_csv_record(line: &str, out: &mut Vec<String>) -> Option<()> {
    fn slot(out: &mut Vec<String>, index: usize) -> &mut String {
        if index == out.len() {
            out.push(String::new());
        }
        let field = &mut out[index];
        field.clear();
        field
    }
    let bytes = line.as_bytes();
    let find = |from: usize, byte: u8| {
        bytes[from..]
            .iter()
            .position(|b| *b == byte)
            .map(|p| from + p)
    };
    let mut i = 0;
    let mut count = 0;
    loop {
        let field = slot(out, count);
        count += 1;
        if bytes.get(i) == Some(&b'"') {
            i += 1;
            loop {
                let quote = find(i, b'"')?;
                field.push_str(&line[i..quote]);
                i = quote + 1;
                if bytes.get(i) == Some(&b'"') {
                    field.push('"');
                    i += 1;
                } else {
                    break;
                }
            }
        }
        match find(i, b',') {
            Some(comma) => {
                field.push_str(&line[i..comma]);
                i = comma + 1;
            }
            None => {
                field.push_str(&line[i..]);
                break;
            }
        }
    }
    out.truncate(count);
    Some(())
}

/// Whether `name` can be an S3 bucket name (lenient towards legacy names with capitals and `_`).
pub fn is_valid_bucket_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// S3's limit on a key's length, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a decoded key against what S3 accepts, so a key S3 would refuse (or that would be
/// truncated on the wire, as a NUL is) fails as a malformed manifest line, not as an S3 call.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "Key is {} bytes long (UTF-8, decoded); S3 keys are at most {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    if let Some(at) = key.bytes().position(|b| b == 0) {
        return Err(format!(
            "Key contains a NUL byte (at byte {at} of the decoded key)"
        ));
    }
    Ok(())
}

/// Parses manifest lines one at a time, reusing its buffers.
pub struct CsvManifestParser {
    fields: ManifestFields,
    scratch: Vec<String>,
}

impl CsvManifestParser {
    pub fn new(fields: ManifestFields) -> Self {
        CsvManifestParser {
            fields,
            scratch: Vec::with_capacity(4),
        }
    }

    /// `line_no` is 1-based; `raw` is the line without its `\n` (a trailing `\r` is ignored).
    pub fn parse(&mut self, line_no: u64, raw: &[u8]) -> ParsedLine {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            return ParsedLine::Blank;
        }
        let malformed = |bucket: &str, key: &str, message: String| {
            ParsedLine::Malformed(MalformedLine {
                line: line_no,
                bucket: bucket.to_string(),
                key_encoded: key.to_string(),
                message: format!("manifest line {line_no}: {message}"),
            })
        };
        let text = match std::str::from_utf8(raw) {
            Ok(text) => text,
            Err(_) => {
                let lossy = String::from_utf8_lossy(raw);
                return malformed(
                    "",
                    &encode_key(&lossy),
                    "line is not valid UTF-8".to_string(),
                );
            }
        };
        if split_csv_record(text, &mut self.scratch).is_none() {
            return malformed(
                "",
                &encode_key(text),
                "unterminated quoted field".to_string(),
            );
        }
        let columns = &self.scratch;
        if columns.len() != self.fields.len() {
            return malformed(
                "",
                &encode_key(text),
                format!(
                    "expected {} fields ({}), found {}",
                    self.fields.len(),
                    self.fields.names(),
                    columns.len()
                ),
            );
        }
        let bucket = columns[self.fields.bucket].trim();
        let key_encoded = columns[self.fields.key].as_str();
        if bucket.is_empty() {
            return malformed(bucket, key_encoded, "Bucket is empty".to_string());
        }
        if !is_valid_bucket_name(bucket) {
            return malformed(
                bucket,
                key_encoded,
                format!("`{bucket}` is not a valid bucket name"),
            );
        }
        if key_encoded.is_empty() {
            return malformed(bucket, key_encoded, "Key is empty".to_string());
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
        let version_id = match self.fields.version {
            None => None,
            Some(i) => {
                let version = columns[i].trim();
                if version.bytes().any(|b| b.is_ascii_control()) {
                    return malformed(
                        bucket,
                        key_encoded,
                        "VersionId contains a control character".to_string(),
                    );
                }
                (!version.is_empty()).then(|| version.to_string())
            }
        };
        ParsedLine::Object(ObjectEntry::of(ObjectRef {
            bucket: bucket.to_string(),
            key,
            version_id,
        }))
    }
}

impl LineParser for CsvManifestParser {
    fn parse_line(&mut self, line_no: u64, raw: &[u8]) -> ParsedLine {
        self.parse(line_no, raw)
    }

    fn has_version_field(&self) -> bool {
        self.fields.has_version()
    }
}

/// Tracks whether version IDs are given on all lines or none: S3 refuses a manifest that mixes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionPresence {
    pub first_line_with: Option<u64>,
    pub first_line_without: Option<u64>,
}

impl VersionPresence {
    /// Records one object line; returns the job's failure reason once the manifest is mixed.
    pub fn observe(&mut self, line_no: u64, has_version: bool) -> Result<(), String> {
        let slot = if has_version {
            &mut self.first_line_with
        } else {
            &mut self.first_line_without
        };
        if slot.is_none() {
            *slot = Some(line_no);
        }
        match (self.first_line_with, self.first_line_without) {
            (Some(with), Some(without)) => Err(format!(
                "manifest mixes lines with and without version IDs (line {with} has a VersionId, line {without} has none); give a VersionId on every line or on none"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(fields: ManifestFields, line: &str) -> ParsedLine {
        CsvManifestParser::new(fields).parse(7, line.as_bytes())
    }

    #[test]
    fn reads_bucket_key_and_decodes_the_key() {
        assert_eq!(
            parse(ManifestFields::bucket_key(), "src,dir/a+b%2Bc%C3%A9.txt\r"),
            ParsedLine::Object(ObjectEntry::of(ObjectRef {
                bucket: "src".into(),
                key: "dir/a b+cé.txt".into(),
                version_id: None
            }))
        );
    }

    #[test]
    fn reads_versions_including_literal_null() {
        let fields = ManifestFields::bucket_key_version();
        let ParsedLine::Object(ObjectEntry { object: obj, .. }) =
            parse(fields.clone(), "src,k,null")
        else {
            panic!()
        };
        assert_eq!(obj.version_id.as_deref(), Some("null"));
        let ParsedLine::Object(ObjectEntry { object: obj, .. }) = parse(fields, "src,k,") else {
            panic!()
        };
        assert_eq!(obj.version_id, None);
    }

    #[test]
    fn ignore_columns_and_quoted_fields() {
        let fields = ManifestFields::new(vec![
            ManifestField::Ignore,
            ManifestField::Bucket,
            ManifestField::Key,
        ])
        .unwrap();
        let ParsedLine::Object(ObjectEntry { object: obj, .. }) =
            parse(fields, "\"x,y\",\"src\",\"k%20\"\"q\"").unwrap_or_else_panic()
        else {
            panic!()
        };
        assert_eq!((obj.bucket.as_str(), obj.key.as_str()), ("src", "k \"q"));
    }

    trait UnwrapPanic {
        fn unwrap_or_else_panic(self) -> Self;
    }
    impl UnwrapPanic for ParsedLine {
        fn unwrap_or_else_panic(self) -> Self {
            if let ParsedLine::Malformed(m) = &self {
                panic!("{}", m.message);
            }
            self
        }
    }

    #[test]
    fn malformed_lines_name_the_line_and_the_problem() {
        let cases = [
            ("src", "expected 2 fields (Bucket, Key), found 1"),
            ("src,k,extra", "expected 2 fields (Bucket, Key), found 3"),
            (",k", "Bucket is empty"),
            ("src,", "Key is empty"),
            ("b@d,k", "`b@d` is not a valid bucket name"),
            (
                "src,bad%zz",
                "Key `bad%zz`: malformed percent-encoding at byte 3",
            ),
            ("src,\"open", "unterminated quoted field"),
        ];
        for (line, message) in cases {
            match parse(ManifestFields::bucket_key(), line) {
                ParsedLine::Malformed(m) => {
                    assert_eq!(m.line, 7);
                    assert_eq!(m.message, format!("manifest line 7: {message}"), "{line}");
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn keys_s3_would_refuse_are_malformed_lines() {
        let fields = ManifestFields::bucket_key();
        // A NUL, encoded: it decodes fine but S3 cannot store it.
        match parse(fields.clone(), "src,dir/a%00b") {
            ParsedLine::Malformed(m) => {
                assert_eq!(m.line, 7);
                assert_eq!(m.bucket, "src");
                assert_eq!(m.key_encoded, "dir/a%00b");
                assert_eq!(
                    m.message,
                    "manifest line 7: Key contains a NUL byte (at byte 5 of the decoded key)"
                );
            }
            other => panic!("{other:?}"),
        }
        // The limit is on decoded UTF-8 bytes: 512 two-byte characters are exactly 1,024 bytes
        // (4,608 characters encoded), one more is over.
        let at_limit = "%C3%A9".repeat(512);
        assert!(matches!(
            parse(fields.clone(), &format!("src,{at_limit}")),
            ParsedLine::Object(_)
        ));
        match parse(fields.clone(), &format!("src,{at_limit}x")) {
            ParsedLine::Malformed(m) => assert_eq!(
                m.message,
                "manifest line 7: Key is 1025 bytes long (UTF-8, decoded); S3 keys are at most 1024"
            ),
            other => panic!("{other:?}"),
        }
        // Encoded escapes do not count: a 1,024-byte key written as 3,072 characters is fine.
        let escaped = "%41".repeat(1024);
        assert!(matches!(
            parse(fields, &format!("src,{escaped}")),
            ParsedLine::Object(_)
        ));
    }

    #[test]
    fn csv_records_split_with_quotes_escapes_and_empty_fields() {
        let mut out = vec!["stale".to_string(); 5];
        split_csv_record(r#""a,b","say ""hi""",,plain,"""#, &mut out).unwrap();
        assert_eq!(out, vec!["a,b", "say \"hi\"", "", "plain", ""]);
        split_csv_record("x,y,", &mut out).unwrap();
        assert_eq!(out, vec!["x", "y", ""]);
        split_csv_record("", &mut out).unwrap();
        assert_eq!(out, vec![""]);
        assert!(split_csv_record(r#""open,x"#, &mut out).is_none());
        split_csv_record(r#"ü"q,"ä""#, &mut out).unwrap();
        assert_eq!(out, vec!["ü\"q", "ä"]);
    }

    #[test]
    fn blank_lines_are_not_tasks() {
        assert_eq!(parse(ManifestFields::bucket_key(), ""), ParsedLine::Blank);
        assert_eq!(
            parse(ManifestFields::bucket_key(), "  \r"),
            ParsedLine::Blank
        );
    }

    #[test]
    fn fields_must_name_bucket_and_key_once() {
        assert!(ManifestFields::new(vec![ManifestField::Key]).is_err());
        assert!(ManifestFields::new(vec![
            ManifestField::Bucket,
            ManifestField::Key,
            ManifestField::Key
        ])
        .is_err());
    }

    #[test]
    fn mixed_versions_are_detected_with_line_numbers() {
        let mut presence = VersionPresence::default();
        presence.observe(1, true).unwrap();
        presence.observe(2, true).unwrap();
        let err = presence.observe(5, false).unwrap_err();
        assert!(
            err.contains("line 1 has a VersionId, line 5 has none"),
            "{err}"
        );
        let mut none = VersionPresence::default();
        none.observe(1, false).unwrap();
        none.observe(2, false).unwrap();
    }
}
