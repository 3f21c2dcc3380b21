//! Backup verification: a snapshot catalog checked against a listing of the destination by one
//! streaming sorted merge on the destination key. Memory holds one key's catalog entries and
//! listed versions (plus at most `MAX_LISTED_PROBLEMS` problems), never the whole of either.

use crate::backup::CatalogEntry;
use crate::manifest::ObjectEntry;
use serde::Serialize;

/// Problems kept for the report; the counts go on past this.
pub const MAX_LISTED_PROBLEMS: usize = 1_000;

/// What is wrong with one catalog entry's backup copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind")]
pub enum Issue {
    /// No such version at the destination (deleted, or never written).
    Missing,
    /// The recorded version is a delete marker, or the key's current version is one.
    DeleteMarker,
    /// Present, but not what was recorded.
    Different { expected: String, found: String },
}

/// One catalog entry whose backup copy is missing or different.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// The source key, as a restore would write it back.
    pub key: String,
    #[serde(rename = "destinationKey")]
    pub dest_key: String,
    /// The recorded backup version (none: the key's current version was meant).
    #[serde(rename = "destinationVersionId")]
    pub dest_version: Option<String>,
    #[serde(flatten)]
    pub issue: Issue,
}

impl Problem {
    /// One line for people: key, version, what is wrong.
    pub fn describe(&self) -> String {
        let version = self.dest_version.as_deref().unwrap_or("(current)");
        let what = match &self.issue {
            Issue::Missing => "missing".to_string(),
            Issue::DeleteMarker => "a delete marker".to_string(),
            Issue::Different { expected, found } => {
                format!("different: expected {expected}, found {found}")
            }
        };
        format!("{}  version {version}: {what}", self.dest_key)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Catalog entries checked, and how they came out.
    pub checked: u64,
    pub ok: u64,
    pub missing: u64,
    pub different: u64,
    /// Destination versions read from the listing (the merge stops when the catalog ends).
    #[serde(rename = "versionsListed")]
    pub listed: u64,
    /// The first `MAX_LISTED_PROBLEMS` problems, in key order.
    pub problems: Vec<Problem>,
    pub problems_truncated: bool,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.missing == 0 && self.different == 0
    }

    fn record(&mut self, entry: &CatalogEntry, issue: Option<Issue>) {
        self.checked += 1;
        let Some(issue) = issue else {
            self.ok += 1;
            return;
        };
        match issue {
            Issue::Different { .. } => self.different += 1,
            Issue::Missing | Issue::DeleteMarker => self.missing += 1,
        }
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(Problem {
                key: entry.key.clone(),
                dest_key: entry.dest_key.clone(),
                dest_version: entry.dest_version.clone(),
                issue,
            });
        } else {
            self.problems_truncated = true;
        }
    }
}

/// Merges `catalog` (sorted by key, and so by destination key: the destination key is the
/// destination prefix plus the key) with `listing` (ListObjectVersions order: key ascending;
/// each item is a version and whether it is a delete marker). The listing is read only as far
/// as the catalog goes. Errors: a catalog or listing read failure, or a catalog out of order.
pub fn verify<C, L>(catalog: C, listing: L) -> Result<Verification, String>
where
    C: Iterator<Item = Result<CatalogEntry, String>>,
    L: Iterator<Item = Result<(ObjectEntry, bool), String>>,
{
    let mut out = Verification::default();
    let mut catalog = catalog.peekable();
    let mut listing = listing.peekable();
    let mut entries: Vec<CatalogEntry> = Vec::new();
    let mut versions: Vec<(ObjectEntry, bool)> = Vec::new();
    let mut previous_key: Option<String> = None;
    while let Some(first) = catalog.next() {
        let first = first?;
        if previous_key
            .as_deref()
            .is_some_and(|p| first.dest_key.as_str() < p)
        {
            return Err(format!(
                "catalog is not in destination key order: `{}` after `{}`",
                first.dest_key,
                previous_key.unwrap_or_default()
            ));
        }
        let key = first.dest_key.clone();
        entries.clear();
        entries.push(first);
        while let Some(next) = catalog.next_if(|n| n.as_ref().is_ok_and(|n| n.dest_key == key)) {
            entries.extend(next.ok());
        }
        versions.clear();
        loop {
            match listing.peek() {
                Some(Err(_)) => {
                    return Err(listing.next().and_then(Result::err).unwrap_or_default())
                }
                Some(Ok((v, _))) if v.object.key < key => {}
                Some(Ok((v, _))) if v.object.key == key => {
                    versions.extend(listing.next().and_then(Result::ok));
                    out.listed += 1;
                    continue;
                }
                _ => break,
            }
            listing.next();
            out.listed += 1;
        }
        for entry in &entries {
            let issue = check(entry, &versions);
            out.record(entry, issue);
        }
        previous_key = Some(key);
    }
    Ok(out)
}

/// One entry against its key's listed versions: the recorded version, or without one (an
/// unversioned destination) the key's current version.
fn check(entry: &CatalogEntry, versions: &[(ObjectEntry, bool)]) -> Option<Issue> {
    let found = match &entry.dest_version {
        Some(id) => versions
            .iter()
            .find(|(v, _)| v.object.version_id.as_deref() == Some(id.as_str())),
        None => versions
            .iter()
            .find(|(v, _)| v.is_latest == Some(true))
            .or(versions.first()),
    };
    let Some((version, delete_marker)) = found else {
        return Some(Issue::Missing);
    };
    if *delete_marker {
        return Some(Issue::DeleteMarker);
    }
    let size = version.size.unwrap_or(0);
    if size != entry.size {
        return Some(Issue::Different {
            expected: format!("size {}", entry.size),
            found: format!("size {size}"),
        });
    }
    let expected = entry.etag.as_deref().map(|e| e.trim_matches('"'));
    let actual = version.etag.as_deref().map(|e| e.trim_matches('"'));
    if let (Some(expected), Some(actual)) = (expected, actual) {
        // The catalog records the source's ETag. A copy has the same one only when both are
        // single-part MD5s: a multipart source or a multipart copy gives another ETag for the
        // same bytes, so those are checked by size alone.
        if !expected.contains('-') && !actual.contains('-') && expected != actual {
            return Some(Issue::Different {
                expected: format!("ETag {expected}"),
                found: format!("ETag {actual}"),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ObjectRef;

    fn entry(key: &str, version: Option<&str>, etag: &str, size: u64) -> CatalogEntry {
        CatalogEntry {
            key: key.to_string(),
            source_version: Some("s".into()),
            etag: Some(etag.to_string()),
            size,
            last_modified: String::new(),
            dest_key: format!("b/{key}"),
            dest_version: version.map(str::to_string),
        }
    }

    fn listed(
        key: &str,
        version: &str,
        etag: &str,
        size: u64,
        latest: bool,
    ) -> (ObjectEntry, bool) {
        let entry = ObjectEntry {
            object: ObjectRef {
                bucket: "dest".into(),
                key: format!("b/{key}"),
                version_id: Some(version.to_string()),
            },
            etag: Some(format!("\"{etag}\"")),
            size: Some(size),
            is_latest: Some(latest),
            ..Default::default()
        };
        (entry, false)
    }

    fn marker(key: &str, version: &str) -> (ObjectEntry, bool) {
        let (mut entry, _) = listed(key, version, "", 0, true);
        entry.etag = None;
        entry.size = None;
        (entry, true)
    }

    fn run(
        catalog: Vec<CatalogEntry>,
        listing: Vec<(ObjectEntry, bool)>,
    ) -> Result<Verification, String> {
        verify(catalog.into_iter().map(Ok), listing.into_iter().map(Ok))
    }

    #[test]
    fn every_recorded_version_present_passes() {
        let out = run(
            vec![
                entry("a", Some("1"), "e1", 3),
                entry("b", Some("2"), "e2", 4),
                entry("b", Some("3"), "e3", 5),
            ],
            vec![
                listed("0-extra", "9", "x", 1, true),
                listed("a", "1", "e1", 3, true),
                listed("b", "3", "e3", 5, true),
                listed("b", "2", "e2", 4, false),
                listed("c", "4", "e4", 6, true),
            ],
        )
        .unwrap();
        assert!(out.passed());
        assert_eq!(
            (out.checked, out.ok, out.missing, out.different),
            (3, 3, 0, 0)
        );
        assert!(out.problems.is_empty());
    }

    #[test]
    fn missing_versions_delete_markers_and_differences_are_named() {
        let out = run(
            vec![
                entry("a", Some("1"), "e1", 3),
                entry("b", Some("2"), "e2", 4),
                entry("c", Some("3"), "e3", 5),
                entry("d", Some("4"), "e4", 6),
                entry("e", Some("5"), "e5", 7),
                entry("f", Some("6"), "e6", 8),
            ],
            vec![
                // a: only another version of the key
                listed("a", "7", "e1", 3, true),
                // b: absent altogether
                listed("c", "3", "e3", 99, true),
                listed("d", "4", "other", 6, true),
                marker("e", "5"),
                listed("f", "6", "e6", 8, true),
            ],
        )
        .unwrap();
        assert!(!out.passed());
        assert_eq!(
            (out.checked, out.ok, out.missing, out.different),
            (6, 1, 3, 2)
        );
        let described: Vec<String> = out.problems.iter().map(Problem::describe).collect();
        assert_eq!(
            described,
            vec![
                "b/a  version 1: missing",
                "b/b  version 2: missing",
                "b/c  version 3: different: expected size 5, found size 99",
                "b/d  version 4: different: expected ETag e4, found ETag other",
                "b/e  version 5: a delete marker",
            ]
        );
    }

    #[test]
    fn multipart_etags_are_checked_by_size_alone() {
        let out = run(
            vec![
                entry("a", Some("1"), "abc-3", 10),
                entry("b", Some("2"), "md5", 10),
            ],
            vec![
                listed("a", "1", "def", 10, true),
                listed("b", "2", "ghi-2", 10, true),
            ],
        )
        .unwrap();
        assert!(out.passed(), "{out:?}");
    }

    #[test]
    fn without_a_recorded_version_the_current_one_is_checked() {
        let out = run(
            vec![entry("a", None, "e1", 3), entry("b", None, "e2", 4)],
            vec![
                listed("a", "null", "e1", 3, true),
                marker("b", "m"),
                listed("b", "x", "e2", 4, false),
            ],
        )
        .unwrap();
        assert_eq!((out.ok, out.missing), (1, 1));
        assert_eq!(out.problems[0].issue, Issue::DeleteMarker);
    }

    #[test]
    fn the_listing_is_read_only_as_far_as_the_catalog_goes() {
        let listing = (0..10_000).map(|i| Ok(listed(&format!("k{i:05}"), "1", "e", 1, true)));
        let out = verify(
            vec![Ok(entry("k00002", Some("1"), "e", 1))].into_iter(),
            listing,
        )
        .unwrap();
        assert!(out.passed());
        // k00000..k00002 read, and k00003 peeked at to end the key.
        assert!(out.listed <= 4, "{}", out.listed);
    }

    #[test]
    fn a_catalog_out_of_order_and_read_failures_are_errors() {
        let err = run(
            vec![entry("b", Some("1"), "e", 1), entry("a", Some("2"), "e", 1)],
            vec![],
        )
        .unwrap_err();
        assert!(
            err.contains("not in destination key order: `b/a` after `b/b`"),
            "{err}"
        );
        let err = verify(
            vec![Ok(entry("a", Some("1"), "e", 1))].into_iter(),
            vec![Err("ListObjectVersions failed".to_string())].into_iter(),
        )
        .unwrap_err();
        assert_eq!(err, "ListObjectVersions failed");
        let err = verify(
            vec![Err("catalog line 3".to_string())].into_iter(),
            Vec::new().into_iter(),
        )
        .unwrap_err();
        assert_eq!(err, "catalog line 3");
    }

    #[test]
    fn problems_past_the_limit_are_counted_not_kept() {
        let catalog: Vec<CatalogEntry> = (0..MAX_LISTED_PROBLEMS + 5)
            .map(|i| entry(&format!("k{i:05}"), Some("1"), "e", 1))
            .collect();
        let out = run(catalog, vec![]).unwrap();
        assert_eq!(out.missing, MAX_LISTED_PROBLEMS as u64 + 5);
        assert_eq!(out.problems.len(), MAX_LISTED_PROBLEMS);
        assert!(out.problems_truncated);
    }
}
