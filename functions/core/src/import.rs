//! Imports from other object stores into S3: where from and where to (an [`ImportSpec`]), how a
//! source key is named in the destination bucket, the incremental rule (whether the destination
//! already holds an object as the source lists it), what a task records in its report row and
//! on the S3 copy, and the statuses an import shows. Pure: the stores are reached in the aws
//! crate.
//!
//! The incremental rule: every object an import writes carries, as S3 user metadata, the
//! identity the source store gave it (`x-amz-meta-batchops-source-etag`,
//! `x-amz-meta-batchops-source-last-modified`). An object is skipped when the destination holds
//! it with the same size and the same recorded identity: the ETag when the source lists one,
//! else the last-modified time (to the second). Anything else is copied.

use crate::export::{check_store_key, ExportStatus, StoreLocation};
use serde::{Deserialize, Serialize};

/// User metadata (`x-amz-meta-` + this) holding the source's ETag on an imported copy.
pub const SOURCE_ETAG_METADATA: &str = "batchops-source-etag";
/// User metadata holding the source's last-modified time (RFC 3339, whole seconds).
pub const SOURCE_LAST_MODIFIED_METADATA: &str = "batchops-source-last-modified";
/// User metadata holding the source's version, when the store versions objects.
pub const SOURCE_VERSION_METADATA: &str = "batchops-source-version";

/// Keys under a location's prefix that batchops writes for itself (export and import
/// manifests): an import does not copy them.
const BOOKKEEPING_DIRECTORY: &str = ".batchops/";

/// What an import reads and where it writes: validated, stored in the job spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSpec {
    /// The source: any location the export side takes (another store, or S3).
    pub from: StoreLocation,
    /// The destination bucket, in this account (reached with the stack's S3 clients).
    pub to_bucket: String,
    /// The destination key prefix (empty, or ending with `/`).
    pub to_prefix: String,
}

impl ImportSpec {
    /// An import from `from` into `to` (`s3://bucket/prefix` in this account: no endpoint and
    /// no secret, as the stack's own S3 writes it and backup policies can cover it).
    pub fn new(from: StoreLocation, to: &StoreLocation) -> Result<Self, String> {
        match to {
            StoreLocation::S3 {
                bucket,
                prefix,
                endpoint: None,
                secret_arn: None,
                ..
            } => {
                // An import within one bucket of this account must not list what it writes.
                if let StoreLocation::S3 {
                    bucket: from_bucket,
                    prefix: from_prefix,
                    endpoint: None,
                    secret_arn: None,
                    ..
                } = &from
                {
                    if from_bucket == bucket
                        && (from_prefix.starts_with(prefix.as_str())
                            || prefix.starts_with(from_prefix.as_str()))
                    {
                        return Err(format!(
                            "`{}` and `{}` overlap: an import would list what it writes; import into another bucket or a prefix outside the source's",
                            from.url(),
                            to.url()
                        ));
                    }
                }
                Ok(ImportSpec {
                    from,
                    to_bucket: bucket.clone(),
                    to_prefix: prefix.clone(),
                })
            }
            other => Err(format!(
                "an import writes into S3 in this account: `{}` must be s3://bucket/prefix without an endpoint or a secret",
                other.url()
            )),
        }
    }

    /// The destination as a location (S3 in this account), for reading back what was written.
    pub fn destination(&self) -> StoreLocation {
        StoreLocation::S3 {
            bucket: self.to_bucket.clone(),
            prefix: self.to_prefix.clone(),
            endpoint: None,
            region: None,
            path_style: false,
            secret_arn: None,
        }
    }

    /// `s3://bucket/prefix` of the destination.
    pub fn to_url(&self) -> String {
        format!("s3://{}/{}", self.to_bucket, self.to_prefix)
    }

    /// The key a source object (its full key in the source store) is written under: its key
    /// below the source prefix, under the destination prefix.
    pub fn destination_key(&self, source_key: &str) -> Result<String, String> {
        let relative = relative_key(&self.from, source_key)?;
        Ok(format!("{}{relative}", self.to_prefix))
    }

    /// Where the import manifest of job `job_id` is written in the destination bucket.
    pub fn manifest_key(&self, job_id: &str) -> String {
        format!(
            "{}.batchops/imports/{job_id}/manifest.jsonl",
            self.to_prefix
        )
    }
}

/// `source_key` below the location's prefix; refused when it is not under it or cannot be named.
fn relative_key<'a>(from: &StoreLocation, source_key: &'a str) -> Result<&'a str, String> {
    let relative = source_key.strip_prefix(from.prefix()).ok_or_else(|| {
        format!(
            "`{source_key}` is not under the import's source prefix `{}`",
            from.prefix()
        )
    })?;
    check_store_key(relative)?;
    Ok(relative)
}

/// Whether a listed source key is batchops' own bookkeeping (an export or import manifest under
/// the source prefix), which an import leaves where it is.
pub fn is_bookkeeping(from: &StoreLocation, source_key: &str) -> bool {
    source_key
        .strip_prefix(from.prefix())
        .is_some_and(|relative| relative.starts_with(BOOKKEEPING_DIRECTORY))
}

/// The name of the source bucket (or Azure container) in report rows.
pub fn source_bucket_label(from: &StoreLocation) -> &str {
    match from {
        StoreLocation::S3 { bucket, .. } | StoreLocation::Gcs { bucket, .. } => bucket,
        StoreLocation::Azure { container, .. } => container,
    }
}

/// An object as the source store lists it (or, after a change, as its GET answers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceIdentity {
    pub size: u64,
    pub etag: Option<String>,
    /// RFC 3339, whole seconds (see [`last_modified_label`]).
    pub last_modified: Option<String>,
    pub version: Option<String>,
}

/// What the destination holds at an object's key: its size and the identity recorded on it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordedCopy {
    pub size: u64,
    pub source_etag: Option<String>,
    pub source_last_modified: Option<String>,
}

impl RecordedCopy {
    /// From a HEAD's size and user metadata (names without `x-amz-meta-`).
    pub fn from_metadata<'a>(
        size: u64,
        metadata: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut recorded = RecordedCopy {
            size,
            ..Default::default()
        };
        for (name, value) in metadata {
            if name.eq_ignore_ascii_case(SOURCE_ETAG_METADATA) {
                recorded.source_etag = Some(value.to_string());
            } else if name.eq_ignore_ascii_case(SOURCE_LAST_MODIFIED_METADATA) {
                recorded.source_last_modified = Some(value.to_string());
            }
        }
        recorded
    }
}

/// Whether an import copies an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportDecision {
    /// The destination holds it as listed: reported as succeeded, unchanged.
    Unchanged,
    /// Copy it; the reason is for logs.
    Copy(&'static str),
}

/// The incremental rule (see the module's documentation).
pub fn decide(listed: &SourceIdentity, recorded: Option<&RecordedCopy>) -> ImportDecision {
    let Some(recorded) = recorded else {
        return ImportDecision::Copy("not at the destination");
    };
    if recorded.source_etag.is_none() && recorded.source_last_modified.is_none() {
        return ImportDecision::Copy("the destination object was not written by an import");
    }
    if recorded.size != listed.size {
        return ImportDecision::Copy("the size differs");
    }
    match (&listed.etag, &recorded.source_etag) {
        (Some(listed), Some(recorded)) => {
            if same_etag(listed, recorded) {
                ImportDecision::Unchanged
            } else {
                ImportDecision::Copy("the ETag differs")
            }
        }
        (Some(_), None) => ImportDecision::Copy("no ETag was recorded"),
        (None, _) => match (&listed.last_modified, &recorded.source_last_modified) {
            (Some(listed), Some(recorded)) if listed == recorded => ImportDecision::Unchanged,
            (Some(_), Some(_)) => ImportDecision::Copy("the last-modified time differs"),
            _ => ImportDecision::Copy("the source lists neither an ETag nor a time to compare"),
        },
    }
}

/// The identity recorded on the copy: the listing's (what the next run's listing is compared
/// with), unless the object changed between the listing and the GET (another size or ETag):
/// then the GET's, which describes the bytes copied.
pub fn identity_to_record(listed: &SourceIdentity, read: &SourceIdentity) -> SourceIdentity {
    let changed = read.size != listed.size
        || matches!((&listed.etag, &read.etag), (Some(a), Some(b)) if !same_etag(a, b));
    let mut recorded = if changed {
        read.clone()
    } else {
        listed.clone()
    };
    if recorded.version.is_none() {
        recorded.version = read.version.clone();
    }
    recorded
}

/// The user metadata (names without `x-amz-meta-`) an imported copy carries.
pub fn copy_metadata(identity: &SourceIdentity) -> Vec<(&'static str, String)> {
    let mut metadata = Vec::new();
    if let Some(etag) = &identity.etag {
        metadata.push((SOURCE_ETAG_METADATA, bare_etag(etag).to_string()));
    }
    if let Some(time) = &identity.last_modified {
        metadata.push((SOURCE_LAST_MODIFIED_METADATA, time.clone()));
    }
    if let Some(version) = &identity.version {
        metadata.push((SOURCE_VERSION_METADATA, version.clone()));
    }
    metadata
}

/// ETags compare without their quotes and weak marker (stores list them with or without).
pub fn same_etag(a: &str, b: &str) -> bool {
    bare_etag(a) == bare_etag(b)
}

/// An ETag without `W/` and quotes: how it is recorded and reported.
pub fn bare_etag(etag: &str) -> &str {
    etag.trim().trim_start_matches("W/").trim_matches('"')
}

/// A last-modified time (seconds since the epoch) as recorded: RFC 3339 in whole seconds, so a
/// listing (milliseconds) and a HEAD (seconds) of the same object agree.
pub fn last_modified_label(unix_seconds: i64) -> Option<String> {
    let time = time::OffsetDateTime::from_unix_timestamp(unix_seconds).ok()?;
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time.format(&format).ok()
}

/// The ResultMessage of a copied object's report row (the import manifest is made from these).
pub fn imported_result_message(size: u64, md5: &str, etag: Option<&str>, to: &str) -> String {
    format!(
        "Imported size={size} md5={md5} etag={} to={to}",
        crate::encoding::encode_key(etag.map(bare_etag).unwrap_or(""))
    )
}

/// The ResultMessage of an object the destination already held (the incremental rule).
pub fn unchanged_result_message(size: u64, etag: Option<&str>, to: &str) -> String {
    format!(
        "Unchanged size={size} etag={} to={to}",
        crate::encoding::encode_key(etag.map(bare_etag).unwrap_or(""))
    )
}

/// A copied object's row read back: (size, md5, source ETag, destination key).
pub fn parse_imported_result_message(
    message: &str,
) -> Option<(u64, String, Option<String>, String)> {
    let rest = message.strip_prefix("Imported size=")?;
    let (size, rest) = rest.split_once(" md5=")?;
    let (md5, rest) = rest.split_once(" etag=")?;
    let (etag, key) = rest.split_once(" to=")?;
    if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let etag = crate::encoding::decode_key(etag).ok()?;
    Some((
        size.parse().ok()?,
        md5.to_string(),
        Some(etag).filter(|e| !e.is_empty()),
        key.to_string(),
    ))
}

/// Whether a report row's message says the object was skipped as unchanged.
pub fn is_unchanged_result_message(message: &str) -> bool {
    message.starts_with("Unchanged size=")
}

/// The status an import shows: the same as an export's.
pub type ImportStatus = ExportStatus;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::LocationOptions;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:other-store-AbCdEf";

    fn other(url: &str) -> StoreLocation {
        StoreLocation::parse(
            url,
            &LocationOptions {
                endpoint: Some("http://127.0.0.1:9000".into()),
                path_style: true,
                secret_arn: Some(ARN.into()),
                ..Default::default()
            },
        )
        .unwrap()
    }

    fn here(url: &str) -> StoreLocation {
        StoreLocation::parse(url, &Default::default()).unwrap()
    }

    #[test]
    fn imports_write_into_s3_in_this_account() {
        let spec = ImportSpec::new(other("s3://theirs/exp"), &here("s3://mine/in")).unwrap();
        assert_eq!(spec.to_bucket, "mine");
        assert_eq!(spec.to_prefix, "in/");
        assert_eq!(spec.to_url(), "s3://mine/in/");
        assert_eq!(spec.destination().url(), "s3://mine/in/");
        // Within one bucket of this account, source and destination may not overlap.
        assert!(ImportSpec::new(here("s3://mine/a"), &here("s3://mine/b")).is_ok());
        for (from, to) in [
            ("s3://mine/a", "s3://mine/a/in"),
            ("s3://mine/a/b", "s3://mine"),
        ] {
            let err = ImportSpec::new(here(from), &here(to)).unwrap_err();
            assert!(err.contains("overlap"), "{err}");
        }
        for to in ["s3://theirs/x", "gs://bucket/x"] {
            let err = ImportSpec::new(here("s3://mine/a"), &other_or_gcs(to)).unwrap_err();
            assert!(
                err.contains("an import writes into S3 in this account"),
                "{err}"
            );
        }
    }

    fn other_or_gcs(url: &str) -> StoreLocation {
        if url.starts_with("gs://") {
            StoreLocation::parse(
                url,
                &LocationOptions {
                    secret_arn: Some(ARN.into()),
                    ..Default::default()
                },
            )
            .unwrap()
        } else {
            other(url)
        }
    }

    #[test]
    fn destination_keys_move_from_the_source_prefix_to_the_destination_prefix() {
        let spec = ImportSpec::new(other("s3://theirs/exp"), &here("s3://mine/in")).unwrap();
        for key in ["a b+c=d&e?.txt", "ünï/cødé %41", "x#y/[1]~", "dir/.hidden"] {
            assert_eq!(
                spec.destination_key(&format!("exp/{key}")).unwrap(),
                format!("in/{key}")
            );
        }
        let err = spec.destination_key("other/x").unwrap_err();
        assert!(
            err.contains("not under the import's source prefix `exp/`"),
            "{err}"
        );
        assert!(spec.destination_key("exp/").is_err());
        let root = ImportSpec::new(other("s3://theirs"), &here("s3://mine")).unwrap();
        assert_eq!(root.destination_key("a/b").unwrap(), "a/b");
        assert_eq!(
            spec.manifest_key("j-1"),
            "in/.batchops/imports/j-1/manifest.jsonl"
        );
        assert_eq!(source_bucket_label(&spec.from), "theirs");
    }

    #[test]
    fn bookkeeping_under_the_source_prefix_is_not_imported() {
        let from = other("s3://theirs/exp");
        assert!(is_bookkeeping(
            &from,
            "exp/.batchops/exports/j/manifest.jsonl"
        ));
        assert!(!is_bookkeeping(&from, "exp/data/.batchops"));
        assert!(!is_bookkeeping(&from, "exp/.batchopsish"));
        assert!(!is_bookkeeping(&from, ".batchops/x"));
    }

    fn listed(size: u64, etag: Option<&str>, modified: Option<&str>) -> SourceIdentity {
        SourceIdentity {
            size,
            etag: etag.map(str::to_string),
            last_modified: modified.map(str::to_string),
            version: None,
        }
    }

    fn recorded(size: u64, etag: Option<&str>, modified: Option<&str>) -> RecordedCopy {
        RecordedCopy {
            size,
            source_etag: etag.map(str::to_string),
            source_last_modified: modified.map(str::to_string),
        }
    }

    #[test]
    fn an_object_is_skipped_only_when_size_and_identity_match() {
        let t1 = Some("2026-12-02T10:00:00Z");
        let t2 = Some("2026-12-02T10:00:01Z");
        use ImportDecision::*;
        let cases = [
            (listed(5, Some("\"abc\""), t1), None, false),
            // A plain object at the key (not written by an import) is overwritten.
            (
                listed(5, Some("abc"), t1),
                Some(recorded(5, None, None)),
                false,
            ),
            (
                listed(5, Some("abc"), t1),
                Some(recorded(5, Some("abc"), t1)),
                true,
            ),
            // Quotes and the weak marker do not make ETags differ; a newer time with the
            // same ETag is the same content.
            (
                listed(5, Some("\"abc\""), t2),
                Some(recorded(5, Some("W/abc"), t1)),
                true,
            ),
            (
                listed(6, Some("abc"), t1),
                Some(recorded(5, Some("abc"), t1)),
                false,
            ),
            (
                listed(5, Some("abd"), t1),
                Some(recorded(5, Some("abc"), t1)),
                false,
            ),
            (
                listed(5, Some("abc"), t1),
                Some(recorded(5, None, t1)),
                false,
            ),
            // Without an ETag, the time decides.
            (listed(5, None, t1), Some(recorded(5, None, t1)), true),
            (listed(5, None, t2), Some(recorded(5, None, t1)), false),
            (listed(5, None, None), Some(recorded(5, None, t1)), false),
        ];
        for (i, (listed, recorded, skipped)) in cases.iter().enumerate() {
            let decision = decide(listed, recorded.as_ref());
            assert_eq!(decision == Unchanged, *skipped, "case {i}: {decision:?}");
        }
    }

    #[test]
    fn the_copy_records_the_listing_unless_the_object_changed_since() {
        let t1 = Some("2026-12-02T10:00:00Z");
        let t2 = Some("2026-12-02T10:05:00Z");
        let mut at_listing = listed(5, Some("\"abc\""), t1);
        let mut read = listed(5, Some("abc"), t2);
        read.version = Some("v1".into());
        let recorded = identity_to_record(&at_listing, &read);
        assert_eq!(recorded.last_modified.as_deref(), t1);
        assert_eq!(recorded.version.as_deref(), Some("v1"));
        // Rewritten between the listing and the GET: the GET's identity describes the bytes.
        for changed in [listed(6, Some("abc"), t2), listed(5, Some("abd"), t2)] {
            assert_eq!(identity_to_record(&at_listing, &changed), changed);
        }
        at_listing.version = Some("v0".into());
        let metadata = copy_metadata(&identity_to_record(&at_listing, &read));
        assert_eq!(
            metadata,
            vec![
                (SOURCE_ETAG_METADATA, "abc".to_string()),
                (
                    SOURCE_LAST_MODIFIED_METADATA,
                    "2026-12-02T10:00:00Z".to_string()
                ),
                (SOURCE_VERSION_METADATA, "v0".to_string()),
            ]
        );
        // What is recorded is what the next run compares with: unchanged.
        let copy = RecordedCopy::from_metadata(5, metadata.iter().map(|(k, v)| (*k, v.as_str())));
        assert_eq!(decide(&at_listing, Some(&copy)), ImportDecision::Unchanged);
    }

    #[test]
    fn recorded_identity_is_read_from_user_metadata() {
        let copy = RecordedCopy::from_metadata(
            7,
            [
                ("Batchops-Source-ETag", "abc"),
                (SOURCE_LAST_MODIFIED_METADATA, "2026-12-02T10:00:00Z"),
                ("other", "x"),
            ],
        );
        assert_eq!(copy, recorded(7, Some("abc"), Some("2026-12-02T10:00:00Z")));
    }

    #[test]
    fn last_modified_times_are_whole_seconds() {
        assert_eq!(
            last_modified_label(1_796_220_000).as_deref(),
            Some("2026-12-02T14:00:00Z")
        );
        assert_eq!(last_modified_label(i64::MAX), None);
    }

    #[test]
    fn result_messages_read_back() {
        let md5 = "0123456789abcdef0123456789abcdef";
        let message = imported_result_message(3, md5, Some("\"e t\""), "in/a b etag=x to=y");
        assert_eq!(
            parse_imported_result_message(&message),
            Some((
                3,
                md5.to_string(),
                Some("e t".to_string()),
                "in/a b etag=x to=y".to_string()
            ))
        );
        let no_etag = imported_result_message(0, md5, None, "k");
        assert_eq!(
            parse_imported_result_message(&no_etag),
            Some((0, md5.to_string(), None, "k".to_string()))
        );
        let unchanged = unchanged_result_message(3, Some("abc"), "k");
        assert_eq!(unchanged, "Unchanged size=3 etag=abc to=k");
        assert!(is_unchanged_result_message(&unchanged));
        assert_eq!(parse_imported_result_message(&unchanged), None);
        assert!(!is_unchanged_result_message(&message));
    }
}
