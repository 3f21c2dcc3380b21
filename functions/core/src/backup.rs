//! Backups: policies, snapshot catalogs, and the sorted-merge diff of a bucket listing against
//! the previous snapshot. All pure; the AWS side streams listings and catalogs through here.

use crate::encoding::{decode_key, encode_key};
use crate::manifest::{ObjectEntry, ObjectRef};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeleteMode {
    /// Objects deleted at the source stay in new snapshots as they were.
    #[default]
    Ignore,
    /// Deleted objects leave new snapshots; their backup copies stay for older snapshots.
    Record,
    /// As `record`, and a delete marker is put on the backup copy (its data stays as an older
    /// version until retention frees it).
    Propagate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VersionsMode {
    /// Back up the current version of each object.
    #[default]
    Current,
    /// Back up every version, oldest first, so the destination's history matches the source's.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retention {
    /// Keep the newest N snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep snapshots younger than N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Location {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
}

/// A backup policy, as `batchops backup policy put` takes it (JSON or YAML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupPolicy {
    pub name: String,
    pub source: Location,
    /// The backup "directory": copies land at `<prefix><source key>`.
    pub destination: Location,
    /// EventBridge syntax: `rate(1 day)`, `cron(0 2 * * ? *)`; none for manual runs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default = "utc")]
    pub time_zone: String,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub deletes: DeleteMode,
    /// A run that would delete more than this many objects fails instead (continuous removals
    /// count too). Absent: the larger of 1,000 and 10% of the previous snapshot's objects;
    /// `"unlimited"` turns the guard off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deletes: Option<MaxDeletes>,
    #[serde(default)]
    pub versions: VersionsMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Accept an unversioned destination (an overwrite there destroys the earlier copy).
    #[serde(default)]
    pub allow_unversioned_destination: bool,
    /// Between runs, copy objects as S3 reports them (ObjectCreated/ObjectRemoved events on the
    /// events queue); the next run records those copies in its snapshot instead of redoing them.
    #[serde(default)]
    pub continuous: bool,
    /// Where S3 Inventory delivers the source's reports (`<prefix>.../manifest.json`): runs read
    /// the newest report instead of listing the bucket, and a report landing starts a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Location>,
    /// The IAM role the policy's data is reached with (the source's objects, the backup
    /// bucket's copies and catalogs): runs, restores, retention and continuous copies assume
    /// it. None: the stack's own credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

/// The deletion guard as a policy sets it: a number, or `"unlimited"` (off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxDeletes {
    Limit(u64),
    Unlimited,
}

impl Serialize for MaxDeletes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxDeletes::Limit(n) => serializer.serialize_u64(*n),
            MaxDeletes::Unlimited => serializer.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for MaxDeletes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "maxDeletes: expected a whole number of objects (0 or more) or \"unlimited\"",
            )
        })? {
            Raw::Number(n) => Ok(MaxDeletes::Limit(n)),
            Raw::Text(t) if t == "unlimited" => Ok(MaxDeletes::Unlimited),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "maxDeletes: `{t}` is neither a whole number nor \"unlimited\""
            ))),
        }
    }
}

/// The deletion guard when a policy sets none: at least this many deletions are allowed...
pub const DEFAULT_MAX_DELETES_FLOOR: u64 = 1_000;
/// ...or this percentage of the previous snapshot's objects, whichever is larger.
pub const DEFAULT_MAX_DELETES_PERCENT: u64 = 10;

fn utc() -> String {
    "UTC".to_string()
}

fn yes() -> bool {
    true
}

impl BackupPolicy {
    /// Checks what can be checked without AWS; names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return err("name", "1 to 64 characters of letters, digits, `-` and `_`");
        }
        for (field, location) in [("source", &self.source), ("destination", &self.destination)] {
            if !crate::manifest::is_valid_bucket_name(&location.bucket) {
                return Err((
                    format!("{field}.bucket"),
                    format!("`{}` is not a valid bucket name", location.bucket),
                ));
            }
        }
        // Either way round, overlapping ranges destroy data: copies land on live keys (a run
        // reverts newer writes) and continuous mode copies its own copies for ever.
        if self.source.bucket == self.destination.bucket
            && (self.destination.prefix.starts_with(&self.source.prefix)
                || self.source.prefix.starts_with(&self.destination.prefix))
        {
            return Err((
                "destination.prefix".to_string(),
                format!(
                    "s3://{}/{} and the source s3://{}/{} overlap (one contains the other): backup copies would land on source keys. \
                     Choose another destination bucket, or a destination prefix outside the source prefix in the same bucket",
                    self.destination.bucket, self.destination.prefix, self.source.bucket, self.source.prefix
                ),
            ));
        }
        if self.deletes == DeleteMode::Propagate && self.allow_unversioned_destination {
            return err(
                "deletes",
                "`propagate` cannot be combined with allowUnversionedDestination: on an unversioned destination the delete removes the only copy that older snapshots still reference. \
                 Use `deletes: record` (deleted objects leave new snapshots, their copies stay), or enable versioning on the destination and drop allowUnversionedDestination",
            );
        }
        if let Some(inventory) = &self.inventory {
            if !crate::manifest::is_valid_bucket_name(&inventory.bucket) {
                return Err((
                    "inventory.bucket".to_string(),
                    format!("`{}` is not a valid bucket name", inventory.bucket),
                ));
            }
        }
        if self.retention.keep_last == Some(0) {
            return err("retention.keepLast", "must be at least 1");
        }
        if let Some(role) = &self.role_arn {
            crate::arn::check_role_arn(role).map_err(|message| ("roleArn".to_string(), message))?;
        }
        Ok(())
    }

    /// How many objects one run (with the continuous removals before it) may delete from the
    /// snapshot: the policy's maxDeletes, or by default the larger of 1,000 and 10% of the
    /// previous snapshot's objects. None: unlimited.
    pub fn deletion_limit(&self, previous_objects: u64) -> Option<u64> {
        match self.max_deletes {
            Some(MaxDeletes::Limit(n)) => Some(n),
            Some(MaxDeletes::Unlimited) => None,
            None => Some(
                DEFAULT_MAX_DELETES_FLOOR
                    .max(previous_objects.saturating_mul(DEFAULT_MAX_DELETES_PERCENT) / 100),
            ),
        }
    }

    /// Whether a new policy diffs against the snapshots of `old`: only if it backs up the same
    /// source into the same destination; anything else starts a new chain (a full run).
    pub fn same_chain(&self, old: &BackupPolicy) -> bool {
        self.source == old.source && self.destination == old.destination
    }

    /// Where this policy's snapshot catalogs live in the destination bucket.
    pub fn catalog_prefix(&self) -> String {
        format!(
            "{}.batchops/snapshots/{}/",
            self.destination.prefix, self.name
        )
    }

    /// Whether an object deleted at the source gets a delete marker on its backup copy
    /// (`deletes: propagate` with current versions; with all versions history is kept).
    pub fn marks_deletions(&self) -> bool {
        self.deletes == DeleteMode::Propagate && self.versions == VersionsMode::Current
    }

    /// Where continuous mode journals its copies, one part per batch: in the stack's control
    /// bucket, which no copy can land in (a source object named like a journal part is backed
    /// up like any other and never read as one).
    pub fn journal_prefix(&self) -> String {
        format!("journal/{}/", self.name)
    }

    /// Whether an object of `bucket` is this policy's to back up.
    pub fn covers(&self, bucket: &str, key: &str) -> bool {
        bucket == self.source.bucket && key.starts_with(&self.source.prefix)
    }

    /// Whether `key` of `bucket` is an inventory report's manifest.json for this policy.
    pub fn is_inventory_manifest(&self, bucket: &str, key: &str) -> bool {
        self.inventory.as_ref().is_some_and(|inventory| {
            bucket == inventory.bucket
                && key.starts_with(&inventory.prefix)
                && key.ends_with("/manifest.json")
        })
    }
}

/// The backup directory a snapshot catalog belongs to: the part of its key before
/// `.batchops/snapshots/` (catalogs live at `<prefix>.batchops/snapshots/<policy>/<id>...`).
pub fn catalog_directory(catalog_key: &str) -> Option<&str> {
    catalog_key
        .find(".batchops/snapshots/")
        .map(|at| &catalog_key[..at])
}

/// Whether a catalog entry's backup copy lies inside `directory` (and not in its metadata):
/// retention deletes and restores read only such copies, whatever a catalog says.
pub fn copy_within(directory: &str, dest_key: &str) -> bool {
    dest_key
        .strip_prefix(directory)
        .is_some_and(|rest| !rest.is_empty())
}

/// Whether a backup copy's key is in the directory's own metadata (`<directory>.batchops/`).
pub fn in_metadata(directory: &str, dest_key: &str) -> bool {
    dest_key
        .strip_prefix(directory)
        .is_some_and(|rest| rest.starts_with(".batchops/"))
}

/// What continuous mode did between runs, as journal rows in the destination bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalRow {
    /// An object (version) copied into the backup.
    Copied(CatalogEntry),
    /// A delete marker placed on the backup copy of `key` (deletes: propagate).
    Removed { key: String },
}

impl JournalRow {
    pub fn key(&self) -> &str {
        match self {
            JournalRow::Copied(entry) => &entry.key,
            JournalRow::Removed { key } => key,
        }
    }

    pub fn write_line(&self, out: &mut String) {
        match self {
            JournalRow::Copied(entry) => {
                out.push_str("C\t");
                entry.write_line(out);
            }
            JournalRow::Removed { key } => {
                out.push_str("R\t");
                out.push_str(&encode_key(key));
                out.push('\n');
            }
        }
    }

    /// Parses one line of a journal part (None for a blank line).
    pub fn parse_line(line: &str) -> Result<Option<JournalRow>, String> {
        match line.split_once('\t') {
            Some(("C", rest)) => Ok(CatalogEntry::parse_line(rest)?.map(JournalRow::Copied)),
            Some(("R", key)) => Ok(Some(JournalRow::Removed {
                key: decode_key(key).map_err(|e| format!("key: {e}"))?,
            })),
            _ if line.is_empty() => Ok(None),
            _ => Err(format!("not a journal row: `{line}`")),
        }
    }

    /// Parses a journal part; names the line that is wrong.
    pub fn parse_part(body: &str) -> Result<Vec<JournalRow>, String> {
        let mut rows = Vec::new();
        for (index, line) in body.lines().enumerate() {
            rows.extend(
                JournalRow::parse_line(line).map_err(|e| format!("line {}: {e}", index + 1))?,
            );
        }
        Ok(rows)
    }
}

/// One object (version) in a snapshot: what was backed up, and where its copy is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatalogEntry {
    pub key: String,
    pub source_version: Option<String>,
    pub etag: Option<String>,
    pub size: u64,
    pub last_modified: String,
    pub dest_key: String,
    pub dest_version: Option<String>,
}

pub const CATALOG_HEADER: &str =
    "#batchops-catalog\tv1\tkey\tsource_version\tetag\tsize\tlast_modified\tdest_key\tdest_version";

impl CatalogEntry {
    pub fn write_line(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            encode_key(&self.key),
            self.source_version.as_deref().unwrap_or(""),
            self.etag.as_deref().unwrap_or("").trim_matches('"'),
            self.size,
            self.last_modified,
            encode_key(&self.dest_key),
            self.dest_version.as_deref().unwrap_or("")
        );
    }

    pub fn parse_line(line: &str) -> Result<Option<CatalogEntry>, String> {
        if line.is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 7 {
            return Err(format!(
                "catalog line has {} fields, expected 7: `{line}`",
                f.len()
            ));
        }
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Ok(Some(CatalogEntry {
            key: decode_key(f[0]).map_err(|e| format!("catalog key `{}`: {e}", f[0]))?,
            source_version: opt(f[1]),
            etag: opt(f[2]),
            size: f[3]
                .parse()
                .map_err(|_| format!("catalog size `{}`", f[3]))?,
            last_modified: f[4].to_string(),
            dest_key: decode_key(f[5]).map_err(|e| format!("catalog dest key `{}`: {e}", f[5]))?,
            dest_version: opt(f[6]),
        }))
    }

    /// The backup copy, as a copy source for restores.
    pub fn backup_object(&self, dest_bucket: &str) -> ObjectRef {
        ObjectRef {
            bucket: dest_bucket.to_string(),
            key: self.dest_key.clone(),
            version_id: self.dest_version.clone(),
        }
    }
}

/// What the diff says about one source object (version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Not in the previous snapshot: copy it.
    New(ObjectEntry),
    /// In the previous snapshot with other content: copy it; `previous` stays valid if the copy fails.
    Changed {
        entry: ObjectEntry,
        previous: CatalogEntry,
    },
    /// Same as in the previous snapshot: nothing to copy.
    Unchanged(CatalogEntry),
    /// Already copied by continuous mode since the previous snapshot: nothing to copy.
    Journaled(CatalogEntry),
    /// In the previous snapshot, gone from the source.
    Deleted(CatalogEntry),
    /// Gone from the source, and continuous mode already put the delete marker on its copy.
    DeletedMarked(CatalogEntry),
    /// A copy continuous mode made that this snapshot does not take (a later version replaced
    /// it, or the object is gone) and no later run will see again: it belongs to no snapshot,
    /// so retention frees it with this one.
    Superseded(CatalogEntry),
}

/// The journal as the diff reads it: sorted by key, oldest first within a key.
pub type JournalRows = Box<dyn Iterator<Item = Result<JournalRead, String>> + Send>;

/// A journal row as a run reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRead {
    pub row: JournalRow,
    /// Its part is deleted when this run completes, so no later run reads it again.
    pub last_read: bool,
}

/// The journal rows of the key the diff is at, with whether the snapshot took each, and the
/// destination versions the previous catalog holds for that key.
#[derive(Debug, Default)]
struct JournalKey {
    key: String,
    rows: Vec<(JournalRead, bool)>,
    previous: Vec<Option<String>>,
}

/// Sorted merge of a listing (keys ascending; with all versions, each key's versions oldest
/// first) against the previous catalog (same order). Memory: one key's versions.
pub struct Differ<C: Iterator<Item = Result<CatalogEntry, String>>> {
    catalog: std::iter::Peekable<C>,
    /// Catalog entries taken so far (a resumed diff skips this many).
    pub catalog_taken: u64,
    versioned: bool,
    all_versions: bool,
    /// Continuous mode's rows since the previous snapshot, sorted by key (stable: oldest
    /// first within a key), streamed. Rows of keys the diff has passed are settled and dropped.
    journal: std::iter::Peekable<JournalRows>,
    /// The journal could not be read on: the diff fails at the next key.
    journal_error: Option<String>,
    journal_key: Option<JournalKey>,
    /// Settled copies no snapshot takes, not yet handed out as changes.
    superseded: Vec<CatalogEntry>,
}

impl<C: Iterator<Item = Result<CatalogEntry, String>>> Differ<C> {
    pub fn new(catalog: C, versioned: bool, all_versions: bool) -> Self {
        Differ {
            catalog: catalog.peekable(),
            catalog_taken: 0,
            versioned,
            all_versions,
            journal: no_journal(),
            journal_error: None,
            journal_key: None,
            superseded: Vec::new(),
        }
    }

    /// Merges continuous mode's journal in (sorted by key, oldest first within a key): its
    /// copies count as known copies of their keys. A resumed diff passes the last key it
    /// finished: rows up to it were settled before.
    pub fn with_journal(mut self, rows: JournalRows, after_key: Option<&str>) -> Self {
        let after = after_key.map(str::to_string);
        let rows = rows.skip_while(move |read| {
            matches!((read, &after), (Ok(read), Some(after)) if read.row.key() <= after.as_str())
        });
        self.journal = (Box::new(rows) as JournalRows).peekable();
        self
    }

    /// The next journal row, if its key is before (or at, `or_equal`) `key`. A read error is
    /// kept for the diff to report and ends the journal.
    fn next_journal_row(&mut self, key: &str, or_equal: bool) -> Option<JournalRead> {
        let wanted = match self.journal.peek()? {
            Ok(read) => read.row.key() < key || (or_equal && read.row.key() == key),
            Err(_) => true,
        };
        if !wanted {
            return None;
        }
        match self.journal.next()? {
            Ok(read) => Some(read),
            Err(e) => {
                self.journal_error.get_or_insert(e);
                self.journal = no_journal();
                None
            }
        }
    }

    fn journal_failed(&self) -> Result<(), String> {
        match &self.journal_error {
            Some(e) => Err(format!("continuous-mode journal: {e}")),
            None => Ok(()),
        }
    }

    /// Moves the journal to `key` (keys come in ascending order), settling the keys passed.
    fn journal_at(&mut self, key: &str) -> &mut JournalKey {
        if self.journal_key.as_ref().is_none_or(|at| at.key != key) {
            self.settle_current();
            while let Some(read) = self.next_journal_row(key, false) {
                settle_untaken(read, &[], &mut self.superseded);
            }
            let mut at = JournalKey {
                key: key.to_string(),
                ..Default::default()
            };
            while let Some(read) = self.next_journal_row(key, true) {
                at.rows.push((read, false));
            }
            self.journal_key = Some(at);
        }
        self.journal_key.get_or_insert_with(Default::default)
    }

    fn settle_current(&mut self) {
        if let Some(at) = self.journal_key.take() {
            settle(at.rows, &at.previous, &mut self.superseded);
        }
    }

    /// A journaled copy of exactly this listed object, newest first; the snapshot takes it.
    fn journaled_copy(&mut self, entry: &ObjectEntry) -> Option<CatalogEntry> {
        let versioned = self.versioned;
        self.journal_at(&entry.object.key)
            .rows
            .iter_mut()
            .rev()
            .find_map(|(read, taken)| match &read.row {
                JournalRow::Copied(copy) if same_object(copy, entry, versioned) => {
                    *taken = true;
                    Some(copy.clone())
                }
                _ => None,
            })
    }

    fn deleted(&mut self, previous: CatalogEntry) -> Change {
        let marked = matches!(
            self.journal_at(&previous.key).rows.last(),
            Some((
                JournalRead {
                    row: JournalRow::Removed { .. },
                    ..
                },
                _
            ))
        );
        if marked {
            Change::DeletedMarked(previous)
        } else {
            Change::Deleted(previous)
        }
    }

    fn hand_out_superseded(&mut self, out: &mut Vec<Change>) {
        out.extend(self.superseded.drain(..).map(Change::Superseded));
    }

    fn next_catalog_key(&mut self) -> Result<Option<String>, String> {
        match self.catalog.peek() {
            None => Ok(None),
            Some(Ok(entry)) => Ok(Some(entry.key.clone())),
            Some(Err(e)) => Err(e.clone()),
        }
    }

    fn take_catalog(&mut self) -> Result<CatalogEntry, String> {
        self.catalog_taken += 1;
        let entry = self.catalog.next().ok_or("catalog ended")??;
        // A journaled copy the previous snapshot already holds is not superseded.
        self.journal_at(&entry.key)
            .previous
            .push(entry.dest_version.clone());
        Ok(entry)
    }

    /// Emits catalog entries with keys before `key` as deleted.
    fn deletions_before(&mut self, key: Option<&str>, out: &mut Vec<Change>) -> Result<(), String> {
        while let Some(next) = self.next_catalog_key()? {
            if key.is_some_and(|k| next.as_str() >= k) {
                break;
            }
            let previous = self.take_catalog()?;
            let change = self.deleted(previous);
            out.push(change);
        }
        Ok(())
    }

    /// Diffs one key's listed versions (one in `current` mode).
    pub fn feed_key(
        &mut self,
        listed: Vec<ObjectEntry>,
        out: &mut Vec<Change>,
    ) -> Result<(), String> {
        let Some(key) = listed.first().map(|e| e.object.key.clone()) else {
            return Ok(());
        };
        self.deletions_before(Some(&key), out)?;
        let mut previous = Vec::new();
        while self.next_catalog_key()?.as_deref() == Some(key.as_str()) {
            previous.push(self.take_catalog()?);
        }
        if !self.all_versions {
            let entry = listed.into_iter().next_back().ok_or("no entry")?;
            let change = match previous.pop() {
                Some(prev) if same_object(&prev, &entry, self.versioned) => Change::Unchanged(prev),
                prev => match (self.journaled_copy(&entry), prev) {
                    (Some(copy), _) => Change::Journaled(copy),
                    (None, None) => Change::New(entry),
                    (None, Some(prev)) => Change::Changed {
                        entry,
                        previous: prev,
                    },
                },
            };
            out.push(change);
            self.settle_current();
            self.hand_out_superseded(out);
            return self.journal_failed();
        }
        let mut matched = vec![false; previous.len()];
        for entry in listed {
            match previous
                .iter()
                .position(|p| p.source_version == entry.object.version_id)
            {
                Some(i) => {
                    matched[i] = true;
                    out.push(Change::Unchanged(previous[i].clone()));
                }
                None => match self.journaled_copy(&entry) {
                    Some(copy) => out.push(Change::Journaled(copy)),
                    None => out.push(Change::New(entry)),
                },
            }
        }
        for (prev, seen) in previous.into_iter().zip(matched) {
            if !seen {
                let change = self.deleted(prev);
                out.push(change);
            }
        }
        // The key is done (a checkpoint may follow): settle its journal rows now.
        self.settle_current();
        self.hand_out_superseded(out);
        self.journal_failed()
    }

    /// The listing ended: every remaining catalog entry is deleted.
    pub fn finish(&mut self, out: &mut Vec<Change>) -> Result<(), String> {
        self.deletions_before(None, out)?;
        self.settle_current();
        for read in self.journal.by_ref() {
            match read {
                Ok(read) => settle_untaken(read, &[], &mut self.superseded),
                Err(e) => {
                    self.journal_error.get_or_insert(e);
                    break;
                }
            }
        }
        self.hand_out_superseded(out);
        self.journal_failed()
    }
}

fn no_journal() -> std::iter::Peekable<JournalRows> {
    (Box::new(std::iter::empty()) as JournalRows).peekable()
}

/// A key's journal rows once the diff is past it: the copies the snapshot did not take, that
/// the previous snapshot does not hold, and that no later run reads, are superseded.
fn settle(
    rows: Vec<(JournalRead, bool)>,
    previous: &[Option<String>],
    superseded: &mut Vec<CatalogEntry>,
) {
    for (read, taken) in rows {
        if !taken {
            settle_untaken(read, previous, superseded);
        }
    }
}

/// One journal row the snapshot did not take.
fn settle_untaken(
    read: JournalRead,
    previous: &[Option<String>],
    superseded: &mut Vec<CatalogEntry>,
) {
    if let (JournalRow::Copied(copy), true) = (read.row, read.last_read) {
        if copy.dest_version.is_some() && !previous.contains(&copy.dest_version) {
            superseded.push(copy);
        }
    }
}

/// Whether a catalog entry is a copy of the listed object: the same version when the source is
/// versioned, else the same ETag and size.
fn same_object(copy: &CatalogEntry, entry: &ObjectEntry, versioned: bool) -> bool {
    if versioned {
        copy.source_version == entry.object.version_id
    } else {
        copy.etag.as_deref().map(|e| e.trim_matches('"'))
            == entry.etag.as_deref().map(|e| e.trim_matches('"'))
            && Some(copy.size) == entry.size
    }
}

/// One row of a run's draft snapshot: complete, or waiting for its copy's destination version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftRow {
    Done(CatalogEntry),
    /// Not in the snapshot: a continuous copy retention frees with it (see `Change::Superseded`).
    Superseded(CatalogEntry),
    /// Filled from the copy task's result; if the copy failed, `fallback` (the previous
    /// snapshot's entry) stands, or the key is left out.
    Pending {
        entry: CatalogEntry,
        fallback: Option<CatalogEntry>,
    },
}

impl DraftRow {
    pub fn write_line(&self, out: &mut String) {
        match self {
            DraftRow::Done(e) => {
                out.push_str("D\t");
                e.write_line(out);
            }
            DraftRow::Superseded(e) => {
                out.push_str("U\t");
                e.write_line(out);
            }
            DraftRow::Pending { entry, fallback } => {
                out.push_str("P\t");
                entry.write_line(out);
                match fallback {
                    Some(f) => {
                        out.push_str("F\t");
                        f.write_line(out);
                    }
                    None => out.push_str("N\n"),
                }
            }
        }
    }

    /// Parses a whole draft part back.
    pub fn parse_part(body: &str) -> Result<Vec<DraftRow>, String> {
        let mut rows = Vec::new();
        let mut lines = body.lines();
        while let Some(line) = lines.next() {
            let (tag, rest) = line.split_once('\t').unwrap_or((line, ""));
            match tag {
                "D" => rows.push(DraftRow::Done(
                    CatalogEntry::parse_line(rest)?.ok_or("empty draft row")?,
                )),
                "U" => rows.push(DraftRow::Superseded(
                    CatalogEntry::parse_line(rest)?.ok_or("empty draft row")?,
                )),
                "P" => {
                    let entry = CatalogEntry::parse_line(rest)?.ok_or("empty draft row")?;
                    let next = lines
                        .next()
                        .ok_or("pending row without its fallback line")?;
                    let fallback = match next.split_once('\t') {
                        Some(("F", f)) => CatalogEntry::parse_line(f)?,
                        _ if next == "N" => None,
                        _ => return Err(format!("bad fallback line `{next}`")),
                    };
                    rows.push(DraftRow::Pending { entry, fallback });
                }
                "" => {}
                other => return Err(format!("bad draft row tag `{other}`")),
            }
        }
        Ok(rows)
    }
}

/// A snapshot's ID: its run's start (or schedule slot) in UTC to the second, fixed width, so
/// text order is time order.
pub fn snapshot_id(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The time a snapshot ID stands for (unix seconds); None for an ID not of that form.
pub fn snapshot_id_unix(id: &str) -> Option<i64> {
    let b = id.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| id.get(r)?.parse::<u32>().ok();
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(num(0..4)?).ok()?,
        month,
        u8::try_from(num(6..8)?).ok()?,
    )
    .ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(num(9..11)?).ok()?,
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(13..15)?).ok()?,
    )
    .ok()?;
    Some(date.with_time(clock).assume_utc().unix_timestamp())
}

/// The one order of a policy's snapshots, used everywhere (retention's newest, the previous
/// snapshot a run diffs against, as-of restores, listings): by ID, i.e. by when the run
/// started, not by when it completed. A run that started later and completed first is the
/// newer snapshot; the earlier one completing afterwards does not become the newest.
pub fn snapshot_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.cmp(b)
}

/// The newest of `ids` in [`snapshot_order`].
pub fn newest_snapshot<'a>(ids: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    ids.into_iter().max_by(|a, b| snapshot_order(a, b))
}

/// Which snapshots retention keeps: the newest `keep_last` (in [`snapshot_order`]), and those
/// younger than `keep_days` (age from the ID's time; either rule keeps a snapshot; with no
/// rule, all are kept). The newest snapshot is always kept, and so is every snapshot in
/// `in_use` (an unfinished run diffs against it or an unfinished restore reads it). Returns
/// the IDs to expire, newest first.
pub fn expired_snapshots(
    ids: &[String],
    retention: &Retention,
    now_unix: i64,
    in_use: &std::collections::HashSet<String>,
) -> Vec<String> {
    if retention.keep_last.is_none() && retention.keep_days.is_none() {
        return Vec::new();
    }
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort_by(|a, b| snapshot_order(b, a));
    sorted
        .iter()
        .enumerate()
        .filter(|(rank, id)| {
            let by_count = retention.keep_last.is_some_and(|n| (*rank as u32) < n);
            // An ID of no known form has no age: kept by the age rule, never wrongly expired.
            let by_age = retention.keep_days.is_some_and(|d| {
                snapshot_id_unix(id).is_none_or(|t| now_unix - t < i64::from(d) * 86_400)
            });
            *rank > 0 && !by_count && !by_age && !in_use.contains(id.as_str())
        })
        .map(|(_, id)| (*id).clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn listed(key: &str, version: &str, etag: &str, size: u64) -> ObjectEntry {
        ObjectEntry {
            object: ObjectRef {
                bucket: "src".into(),
                key: key.into(),
                version_id: Some(version.into()),
            },
            etag: Some(etag.into()),
            size: Some(size),
            last_modified: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        }
    }

    fn cataloged(key: &str, version: &str, etag: &str, size: u64) -> CatalogEntry {
        CatalogEntry {
            key: key.into(),
            source_version: Some(version.into()),
            etag: Some(etag.into()),
            size,
            last_modified: "2026-01-01T00:00:00Z".into(),
            dest_key: format!("backup/{key}"),
            dest_version: Some(format!("d-{version}")),
        }
    }

    fn kinds(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::New(e) => format!("new {}", e.object.key),
                Change::Changed { entry, .. } => format!("changed {}", entry.object.key),
                Change::Unchanged(e) => format!("unchanged {}", e.key),
                Change::Journaled(e) => format!("journaled {} {:?}", e.key, e.dest_version),
                Change::Deleted(e) => format!("deleted {}", e.key),
                Change::DeletedMarked(e) => format!("deleted-marked {}", e.key),
                Change::Superseded(e) => format!("superseded {} {:?}", e.key, e.dest_version),
            })
            .collect()
    }

    #[test]
    fn catalog_entries_are_held_to_their_directory() {
        let key = "backups/a/.batchops/snapshots/p/20261101T000000Z.catalog.gz";
        let directory = catalog_directory(key).unwrap();
        assert_eq!(directory, "backups/a/");
        assert!(copy_within(directory, "backups/a/x/y"));
        assert!(!copy_within(directory, "backups/b/x"));
        assert!(!copy_within(directory, "backups/a/"));
        assert!(!copy_within(directory, "other"));
        assert!(in_metadata(directory, "backups/a/.batchops/journal/p/1"));
        assert!(!in_metadata(directory, "backups/a/.batchopsx"));
        assert_eq!(catalog_directory("elsewhere/c.gz"), None);
        assert_eq!(
            catalog_directory(".batchops/snapshots/p/x.catalog.gz"),
            Some("")
        );
    }

    #[test]
    fn journal_copies_count_as_known_copies() {
        let catalog = vec![
            cataloged("a", "1", "e", 1),
            cataloged("b", "1", "e", 1),
            cataloged("c", "1", "e", 1),
            cataloged("d", "1", "e", 1),
        ];
        let mut copied_b2 = cataloged("b", "2", "e", 1);
        copied_b2.dest_version = Some("journal-b2".into());
        let mut stale_c = cataloged("c", "0", "e", 1);
        stale_c.dest_version = Some("journal-c0".into());
        let mut new_n = cataloged("n", "1", "e", 1);
        new_n.dest_version = Some("journal-n1".into());
        let journal = vec![
            // Out of key order, as parts from many batches are.
            JournalRow::Copied(new_n),
            JournalRow::Removed { key: "d".into() },
            JournalRow::Copied(copied_b2),
            JournalRow::Copied(stale_c),
            // A key created and removed between runs: never listed, dropped.
            JournalRow::Removed { key: "gone".into() },
        ];
        let listing = [("a", "1"), ("b", "2"), ("c", "3"), ("n", "1")];
        assert_eq!(
            diff_with_journal(catalog, reads(journal, false), &listing),
            vec![
                "unchanged a",
                "journaled b Some(\"journal-b2\")",
                "changed c",
                "deleted-marked d",
                "journaled n Some(\"journal-n1\")",
            ]
        );
    }

    /// A current-versions diff of `listing` (key, version) with a journal merged in.
    fn diff_with_journal(
        catalog: Vec<CatalogEntry>,
        journal: Vec<JournalRead>,
        listing: &[(&str, &str)],
    ) -> Vec<String> {
        let mut differ = Differ::new(catalog.into_iter().map(Ok), true, false)
            .with_journal(sorted_journal(journal), None);
        let mut out = Vec::new();
        for (key, version) in listing {
            differ
                .feed_key(vec![listed(key, version, "e", 1)], &mut out)
                .unwrap();
        }
        differ.finish(&mut out).unwrap();
        kinds(&out)
    }

    /// The journal as a run hands it to the diff: sorted by key, stable.
    fn sorted_journal(mut rows: Vec<JournalRead>) -> JournalRows {
        rows.sort_by(|a, b| a.row.key().cmp(b.row.key()));
        Box::new(rows.into_iter().map(Ok))
    }

    fn reads(rows: Vec<JournalRow>, last_read: bool) -> Vec<JournalRead> {
        rows.into_iter()
            .map(|row| JournalRead { row, last_read })
            .collect()
    }

    fn journal_copy(key: &str, version: &str, dest_version: &str) -> JournalRow {
        let mut copy = cataloged(key, version, "e", 1);
        copy.dest_version = Some(dest_version.into());
        JournalRow::Copied(copy)
    }

    #[test]
    fn continuous_copies_no_snapshot_takes_are_superseded_once_their_part_is_read_last() {
        let mut in_previous = cataloged("a", "2", "e", 1);
        in_previous.dest_version = Some("journal-a2".into());
        let catalog = vec![in_previous, cataloged("d", "1", "e", 1)];
        let last_read = vec![
            // b: two versions copied, the second is current: the first is superseded.
            journal_copy("b", "1", "journal-b1"),
            journal_copy("b", "2", "journal-b2"),
            // a: the previous snapshot took this copy already: not superseded.
            journal_copy("a", "2", "journal-a2"),
            // d: copied then the object deleted: nothing takes the copy.
            journal_copy("d", "2", "journal-d2"),
            // g: created, copied and deleted between runs; z: past the last listed key.
            journal_copy("g", "1", "journal-g1"),
            journal_copy("z", "1", "journal-z1"),
        ];
        // c's older copy is read again by the next run: not settled by this one.
        let read_again = vec![journal_copy("c", "1", "journal-c1")];
        let mut rows = reads(last_read, true);
        rows.extend(reads(read_again, false));
        let listing = [("a", "2"), ("b", "2"), ("c", "2"), ("h", "1")];
        assert_eq!(
            diff_with_journal(catalog, rows, &listing),
            vec![
                "unchanged a",
                "journaled b Some(\"journal-b2\")",
                "superseded b Some(\"journal-b1\")",
                "new c",
                "deleted d",
                "new h",
                // Keys passed on the way to h are settled with it, in key order.
                "superseded d Some(\"journal-d2\")",
                "superseded g Some(\"journal-g1\")",
                "superseded z Some(\"journal-z1\")",
            ]
        );

        // A resumed diff (after key `b`) does not settle rows of keys it finished before.
        let rows = reads(
            vec![
                journal_copy("b", "1", "journal-b1"),
                journal_copy("g", "1", "journal-g1"),
            ],
            true,
        );
        let mut differ = Differ::new(std::iter::empty(), true, false)
            .with_journal(sorted_journal(rows), Some("b"));
        let mut out = Vec::new();
        differ.finish(&mut out).unwrap();
        assert_eq!(kinds(&out), vec!["superseded g Some(\"journal-g1\")"]);
    }

    #[test]
    fn a_journal_that_cannot_be_read_on_fails_the_diff() {
        let rows: JournalRows = Box::new(
            vec![
                Ok(JournalRead {
                    row: journal_copy("a", "1", "journal-a1"),
                    last_read: false,
                }),
                Err("spill run ended after 1 of 2 entries".to_string()),
            ]
            .into_iter(),
        );
        let mut differ = Differ::new(std::iter::empty(), true, false).with_journal(rows, None);
        let err = differ
            .feed_key(vec![listed("a", "1", "e", 1)], &mut Vec::new())
            .unwrap_err();
        assert!(err.contains("journal: spill run ended"), "{err}");
    }

    #[test]
    fn journal_rows_round_trip_and_name_bad_lines() {
        let rows = vec![
            JournalRow::Copied(cataloged("dir/a b+✓", "v1", "abc", 42)),
            JournalRow::Removed {
                key: "x y/z".into(),
            },
        ];
        let mut part = String::new();
        for row in &rows {
            row.write_line(&mut part);
        }
        assert_eq!(JournalRow::parse_part(&part).unwrap(), rows);
        let err = JournalRow::parse_part(&format!("{part}Q\tbad\n")).unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
    }

    #[test]
    fn versioned_diff_by_version_id() {
        let catalog = vec![
            cataloged("a", "1", "e", 1),
            cataloged("b", "1", "e", 1),
            cataloged("c", "1", "e", 1),
        ];
        let mut differ = Differ::new(catalog.into_iter().map(Ok), true, false);
        let mut out = Vec::new();
        differ
            .feed_key(vec![listed("a", "1", "e", 1)], &mut out)
            .unwrap();
        differ
            .feed_key(vec![listed("aa", "1", "e", 1)], &mut out)
            .unwrap();
        differ
            .feed_key(vec![listed("c", "2", "e", 1)], &mut out)
            .unwrap();
        differ.finish(&mut out).unwrap();
        assert_eq!(
            kinds(&out),
            vec!["unchanged a", "new aa", "deleted b", "changed c"]
        );
        assert_eq!(differ.catalog_taken, 3);
    }

    #[test]
    fn unversioned_diff_by_etag_and_size() {
        let catalog = vec![
            cataloged("a", "null", "e1", 1),
            cataloged("b", "null", "e1", 1),
            cataloged("z", "null", "e", 1),
        ];
        let mut differ = Differ::new(catalog.into_iter().map(Ok), false, false);
        let mut out = Vec::new();
        differ
            .feed_key(vec![listed("a", "x", "\"e1\"", 1)], &mut out)
            .unwrap();
        differ
            .feed_key(vec![listed("b", "x", "e1", 2)], &mut out)
            .unwrap();
        differ.finish(&mut out).unwrap();
        assert_eq!(kinds(&out), vec!["unchanged a", "changed b", "deleted z"]);
    }

    #[test]
    fn all_versions_diff_per_version() {
        let catalog = vec![cataloged("a", "1", "e", 1), cataloged("a", "2", "e", 1)];
        let mut differ = Differ::new(catalog.into_iter().map(Ok), true, true);
        let mut out = Vec::new();
        differ
            .feed_key(
                vec![listed("a", "2", "e", 1), listed("a", "3", "e", 1)],
                &mut out,
            )
            .unwrap();
        differ.finish(&mut out).unwrap();
        assert_eq!(kinds(&out), vec!["unchanged a", "new a", "deleted a"]);
    }

    #[test]
    fn catalog_and_draft_round_trip() {
        let entry = cataloged("dir/a b+✓", "v1", "\"abc\"", 42);
        let mut body = String::new();
        entry.write_line(&mut body);
        let back = CatalogEntry::parse_line(body.trim_end()).unwrap().unwrap();
        assert_eq!(back.key, "dir/a b+✓");
        assert_eq!(back.etag.as_deref(), Some("abc"));
        assert_eq!(CatalogEntry::parse_line(CATALOG_HEADER).unwrap(), None);
        let rows = vec![
            DraftRow::Done(back.clone()),
            DraftRow::Pending {
                entry: back.clone(),
                fallback: Some(back.clone()),
            },
            DraftRow::Pending {
                entry: back.clone(),
                fallback: None,
            },
            DraftRow::Superseded(back.clone()),
        ];
        let mut part = String::new();
        for r in &rows {
            r.write_line(&mut part);
        }
        assert_eq!(DraftRow::parse_part(&part).unwrap(), rows);
    }

    #[test]
    fn policy_routes_events_and_inventory_manifests() {
        let mut policy: BackupPolicy = serde_json::from_str(
            r#"{"name":"p","source":{"bucket":"src","prefix":"data/"},"destination":{"bucket":"vault"},
                "continuous":true,"inventory":{"bucket":"inv","prefix":"src/all/"}}"#,
        )
        .unwrap();
        assert!(policy.covers("src", "data/x"));
        assert!(!policy.covers("src", "other/x"));
        assert!(!policy.covers("vault", "data/x"));
        assert!(policy.is_inventory_manifest("inv", "src/all/2026-11-20T00-00Z/manifest.json"));
        assert!(!policy.is_inventory_manifest("inv", "src/all/2026-11-20T00-00Z/manifest.checksum"));
        assert!(!policy.is_inventory_manifest("src", "src/all/x/manifest.json"));
        assert_eq!(policy.journal_prefix(), "journal/p/");
        policy.inventory = Some(Location {
            bucket: "a".into(),
            prefix: String::new(),
        });
        assert_eq!(policy.validate().unwrap_err().0, "inventory.bucket");
    }

    #[test]
    fn retention_keeps_by_count_or_age_and_always_the_newest() {
        let day = 86_400;
        let t0 = snapshot_id_unix("20261101T000000Z").unwrap();
        let at =
            |i: i64| snapshot_id(time::OffsetDateTime::from_unix_timestamp(t0 + i * day).unwrap());
        let snaps: Vec<String> = (0..5).map(at).collect();
        let s = |i: i64| at(i);
        let now = t0 + 4 * day + 10;
        let none = HashSet::new();
        let rule = |keep_last, keep_days| Retention {
            keep_last,
            keep_days,
        };
        assert_eq!(
            expired_snapshots(&snaps, &rule(Some(2), None), now, &none),
            vec![s(2), s(1), s(0)]
        );
        assert_eq!(
            expired_snapshots(&snaps, &rule(None, Some(2)), now, &none),
            vec![s(2), s(1), s(0)]
        );
        assert_eq!(
            expired_snapshots(&snaps, &rule(Some(1), Some(3)), now, &none),
            vec![s(1), s(0)]
        );
        assert!(expired_snapshots(&snaps, &Retention::default(), now, &none).is_empty());
        assert!(expired_snapshots(&snaps, &rule(None, Some(0)), now, &none)
            .iter()
            .all(|id| *id != s(4)));
    }

    #[test]
    fn retention_never_expires_a_snapshot_in_use() {
        let snaps: Vec<String> = ["20261101T000000Z", "20261102T000000Z", "20261103T000000Z"]
            .map(String::from)
            .to_vec();
        let in_use: HashSet<String> = [snaps[0].clone()].into();
        let keep_one = Retention {
            keep_last: Some(1),
            keep_days: None,
        };
        let now = snapshot_id_unix("20261110T000000Z").unwrap();
        assert_eq!(
            expired_snapshots(&snaps, &keep_one, now, &in_use),
            vec![snaps[1].clone()]
        );
    }

    #[test]
    fn snapshots_order_by_id_whatever_order_they_come_in() {
        // The run that started at 02:00 is newer than the one that started at 01:00, however
        // the completions fell.
        let ids = ["20261102T020000Z", "20261102T010000Z", "20261101T230000Z"];
        assert_eq!(newest_snapshot(ids), Some("20261102T020000Z"));
        let mut sorted = ids.to_vec();
        sorted.sort_by(|a, b| snapshot_order(a, b));
        assert_eq!(
            sorted,
            ["20261101T230000Z", "20261102T010000Z", "20261102T020000Z"]
        );
        let t = time::macros::datetime!(2026-11-02 01:00:05 +1);
        assert_eq!(snapshot_id(t), "20261102T000005Z");
        assert_eq!(
            snapshot_id_unix("20261102T000005Z"),
            Some(t.unix_timestamp())
        );
        assert_eq!(snapshot_id_unix("s1"), None);
        assert_eq!(snapshot_id_unix("20261302T000005Z"), None);
    }

    #[test]
    fn policies_validate_names_and_buckets() {
        let json = r#"{"name": "nightly", "source": {"bucket": "src", "prefix": "data/"},
            "destination": {"bucket": "vault", "prefix": "backups/src/"}, "schedule": "cron(0 2 * * ? *)",
            "retention": {"keepLast": 30}, "deletes": "propagate", "maxDeletes": 100, "versions": "all"}"#;
        let policy: BackupPolicy = serde_json::from_str(json).unwrap();
        policy.validate().unwrap();
        assert_eq!(policy.deletes, DeleteMode::Propagate);
        assert!(policy.enabled);
        assert_eq!(
            policy.catalog_prefix(),
            "backups/src/.batchops/snapshots/nightly/"
        );
        let mut bad = policy.clone();
        bad.name = "has space".into();
        assert_eq!(bad.validate().unwrap_err().0, "name");
        let mut inside = policy.clone();
        inside.destination = Location {
            bucket: "src".into(),
            prefix: "data/backup/".into(),
        };
        assert_eq!(inside.validate().unwrap_err().0, "destination.prefix");
        // The source inside the destination: runs and continuous copies land on live keys.
        let mut around = policy.clone();
        around.destination = Location {
            bucket: "src".into(),
            prefix: String::new(),
        };
        let (field, message) = around.validate().unwrap_err();
        assert_eq!(field, "destination.prefix");
        assert!(message.contains("overlap"), "{message}");
        around.destination.prefix = "da".into();
        assert!(around.validate().is_err(), "`da` contains `data/`");
        around.destination.prefix = "backups/".into();
        around.validate().unwrap();
        // Propagated deletes on an unversioned destination remove the only copy.
        let mut unversioned = policy.clone();
        unversioned.allow_unversioned_destination = true;
        let (field, message) = unversioned.validate().unwrap_err();
        assert_eq!(field, "deletes");
        assert!(message.contains("deletes: record"), "{message}");
        unversioned.deletes = DeleteMode::Record;
        unversioned.validate().unwrap();
        assert!(
            serde_json::from_str::<BackupPolicy>(&json.replace("\"deletes\"", "\"delets\""))
                .is_err()
        );
    }
}

/// What a backup's prepare step emits: chunks of tasks and the draft snapshot parts that go
/// with them, flushed together at key boundaries so a checkpoint never splits a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupOut {
    Chunk(crate::plan::ChunkOut),
    Draft {
        seq: u64,
        rows: Vec<DraftRow>,
        resume: Option<crate::plan::PlanProgress>,
    },
}

/// Turns diff changes into copy (and delete-marker) tasks and draft snapshot rows.
pub struct BackupPlanner {
    pub progress: crate::plan::PlanProgress,
    policy: BackupPolicy,
    chunk_size: usize,
    draft_rows: usize,
    tasks: Vec<crate::chunk::ChunkTask>,
    draft: Vec<DraftRow>,
    /// Deletions allowed (see [`BackupPolicy::deletion_limit`]); None: unlimited.
    deletion_limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this run would delete {deleted} objects from the snapshot (continuous removals since the last snapshot included), more than {limit}; nothing was changed. If the deletions are intended, raise maxDeletes in the policy (or set it to \"unlimited\") and run again")]
pub struct TooManyDeletes {
    pub deleted: u64,
    pub max: u64,
    /// Whether `max` is the default guard (the policy sets no maxDeletes).
    pub default: bool,
    limit: String,
}

impl TooManyDeletes {
    pub fn new(deleted: u64, max: u64, default: bool) -> Self {
        let limit = if default {
            format!("the default maxDeletes of {max} (the larger of {DEFAULT_MAX_DELETES_FLOOR} and {DEFAULT_MAX_DELETES_PERCENT}% of the previous snapshot's objects)")
        } else {
            format!("the policy's maxDeletes of {max}")
        };
        TooManyDeletes {
            deleted,
            max,
            default,
            limit,
        }
    }
}

impl BackupPlanner {
    pub fn new(
        policy: BackupPolicy,
        progress: crate::plan::PlanProgress,
        chunk_size: usize,
        draft_rows: usize,
        previous_objects: u64,
    ) -> Self {
        BackupPlanner {
            progress,
            deletion_limit: policy.deletion_limit(previous_objects),
            policy,
            chunk_size: chunk_size.max(1),
            draft_rows: draft_rows.max(1),
            tasks: Vec::new(),
            draft: Vec::new(),
        }
    }

    fn catalog_entry(&self, entry: &ObjectEntry) -> CatalogEntry {
        CatalogEntry {
            key: entry.object.key.clone(),
            source_version: entry.object.version_id.clone(),
            etag: entry.etag.as_ref().map(|e| e.trim_matches('"').to_string()),
            size: entry.size.unwrap_or(0),
            last_modified: entry.last_modified.clone().unwrap_or_default(),
            dest_key: format!("{}{}", self.policy.destination.prefix, entry.object.key),
            dest_version: None,
        }
    }

    pub fn apply(&mut self, change: Change) -> Result<(), TooManyDeletes> {
        use crate::chunk::ChunkTask;
        match change {
            Change::Unchanged(previous) => {
                self.progress.skipped += 1;
                self.draft.push(DraftRow::Done(previous));
            }
            Change::Journaled(copy) => {
                self.progress.journaled += 1;
                self.draft.push(DraftRow::Done(copy));
            }
            Change::Superseded(copy) => {
                self.progress.superseded += 1;
                self.draft.push(DraftRow::Superseded(copy));
            }
            Change::New(entry) => self.copy(entry, None),
            Change::Changed { entry, previous } => self.copy(entry, Some(previous)),
            Change::Deleted(previous) | Change::DeletedMarked(previous)
                if self.policy.deletes == DeleteMode::Ignore =>
            {
                self.draft.push(DraftRow::Done(previous))
            }
            Change::DeletedMarked(_) => self.count_deletion()?,
            Change::Deleted(previous) => match self.policy.deletes {
                DeleteMode::Ignore => self.draft.push(DraftRow::Done(previous)),
                _ => {
                    self.count_deletion()?;
                    if self.policy.marks_deletions() {
                        self.progress.cursor.line += 1;
                        self.tasks.push(ChunkTask::Delete {
                            line: self.progress.cursor.line,
                            object: ObjectRef {
                                bucket: self.policy.destination.bucket.clone(),
                                key: previous.dest_key,
                                version_id: None,
                            },
                        });
                    }
                }
            },
        }
        Ok(())
    }

    /// One more object leaves the snapshot; past the policy's maxDeletes the run stops.
    fn count_deletion(&mut self) -> Result<(), TooManyDeletes> {
        self.progress.deleted += 1;
        match self.deletion_limit {
            Some(max) if self.progress.deleted > max => Err(TooManyDeletes::new(
                self.progress.deleted,
                max,
                self.policy.max_deletes.is_none(),
            )),
            _ => Ok(()),
        }
    }

    fn copy(&mut self, entry: ObjectEntry, fallback: Option<CatalogEntry>) {
        let row = self.catalog_entry(&entry);
        self.progress.cursor.line += 1;
        self.progress.bytes += entry.size.unwrap_or(0);
        self.tasks.push(crate::chunk::ChunkTask::Object {
            line: self.progress.cursor.line,
            etag: entry.etag.clone(),
            size: entry.size,
            object: entry.object,
        });
        self.draft.push(DraftRow::Pending {
            entry: row,
            fallback,
        });
    }

    /// At a key boundary (`cursor` is where a resumed run continues, `catalog_taken` how much of
    /// the previous catalog the diff consumed): flushes when a chunk is full, the draft is large,
    /// or `force` (the end).
    pub fn boundary(
        &mut self,
        cursor: &crate::plan::Cursor,
        catalog_taken: u64,
        force: bool,
        out: &mut Vec<BackupOut>,
    ) {
        if !force && self.tasks.len() < self.chunk_size && self.draft.len() < self.draft_rows {
            return;
        }
        if !self.tasks.is_empty() {
            let tasks = std::mem::take(&mut self.tasks);
            self.progress.tasks += tasks.len() as u64;
            self.progress.next_seq += 1;
            out.push(BackupOut::Chunk(crate::plan::ChunkOut {
                seq: self.progress.next_seq - 1,
                tasks,
                resume: None,
            }));
        }
        if !self.draft.is_empty() || force {
            let rows = std::mem::take(&mut self.draft);
            self.progress.draft_parts += 1;
            let mut resume = self.progress.clone();
            let line = resume.cursor.line;
            resume.cursor = crate::plan::Cursor {
                line,
                catalog_entries: catalog_taken,
                ..cursor.clone()
            };
            self.progress.cursor = resume.cursor.clone();
            out.push(BackupOut::Draft {
                seq: self.progress.draft_parts - 1,
                rows,
                resume: Some(resume),
            });
        }
    }
}

#[cfg(test)]
mod planner_tests {
    use super::*;
    use crate::plan::{Cursor, PlanProgress};

    fn policy(deletes: DeleteMode, max: Option<MaxDeletes>) -> BackupPolicy {
        BackupPolicy {
            name: "p".into(),
            source: Location {
                bucket: "src".into(),
                prefix: String::new(),
            },
            destination: Location {
                bucket: "vault".into(),
                prefix: "b/".into(),
            },
            schedule: None,
            time_zone: "UTC".into(),
            retention: Retention::default(),
            deletes,
            max_deletes: max,
            versions: VersionsMode::Current,
            storage_class: None,
            enabled: true,
            allow_unversioned_destination: false,
            continuous: false,
            inventory: None,
            role_arn: None,
        }
    }

    fn entry(key: &str) -> ObjectEntry {
        ObjectEntry {
            object: ObjectRef {
                bucket: "src".into(),
                key: key.into(),
                version_id: Some("v".into()),
            },
            etag: Some("e".into()),
            size: Some(3),
            last_modified: Some("t".into()),
            ..Default::default()
        }
    }

    fn prev(key: &str) -> CatalogEntry {
        CatalogEntry {
            key: key.into(),
            dest_key: format!("b/{key}"),
            dest_version: Some("d".into()),
            ..Default::default()
        }
    }

    #[test]
    fn changes_become_tasks_and_draft_rows_flushed_together() {
        let mut planner = BackupPlanner::new(
            policy(DeleteMode::Propagate, None),
            PlanProgress::default(),
            2,
            100,
            0,
        );
        let mut out = Vec::new();
        planner.apply(Change::New(entry("a"))).unwrap();
        planner.apply(Change::Unchanged(prev("b"))).unwrap();
        planner.boundary(
            &Cursor {
                key_marker: Some("b".into()),
                ..Default::default()
            },
            1,
            false,
            &mut out,
        );
        assert!(out.is_empty(), "one task is not a chunk yet");
        planner.apply(Change::Deleted(prev("c"))).unwrap();
        planner.boundary(
            &Cursor {
                key_marker: Some("c".into()),
                ..Default::default()
            },
            2,
            false,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        let BackupOut::Chunk(chunk) = &out[0] else {
            panic!()
        };
        assert_eq!(chunk.tasks.len(), 2);
        assert!(
            matches!(&chunk.tasks[1], crate::chunk::ChunkTask::Delete { object, .. } if object.key == "b/c")
        );
        let BackupOut::Draft { seq, rows, resume } = &out[1] else {
            panic!()
        };
        assert_eq!((*seq, rows.len()), (0, 2));
        let resume = resume.as_ref().unwrap();
        assert_eq!(
            (
                resume.cursor.key_marker.as_deref(),
                resume.cursor.catalog_entries
            ),
            (Some("c"), 2)
        );
        assert_eq!(
            (
                resume.tasks,
                resume.next_seq,
                resume.skipped,
                resume.deleted,
                resume.draft_parts
            ),
            (2, 1, 1, 1, 1)
        );
        let DraftRow::Pending {
            entry,
            fallback: None,
        } = &rows[0]
        else {
            panic!()
        };
        assert_eq!(entry.dest_key, "b/a");
    }

    #[test]
    fn delete_modes_and_the_guard() {
        let mut ignore = BackupPlanner::new(
            policy(DeleteMode::Ignore, Some(MaxDeletes::Limit(0))),
            PlanProgress::default(),
            10,
            10,
            0,
        );
        ignore.apply(Change::Deleted(prev("x"))).unwrap();
        let mut out = Vec::new();
        ignore.boundary(&Cursor::default(), 1, true, &mut out);
        assert!(
            matches!(&out[0], BackupOut::Draft { rows, .. } if rows.len() == 1),
            "ignore keeps the entry"
        );
        let mut record = BackupPlanner::new(
            policy(DeleteMode::Record, Some(MaxDeletes::Limit(1))),
            PlanProgress::default(),
            10,
            10,
            0,
        );
        record.apply(Change::Deleted(prev("x"))).unwrap();
        let err = record.apply(Change::Deleted(prev("y"))).unwrap_err();
        assert_eq!(err, TooManyDeletes::new(2, 1, false));
        assert!(
            err.to_string().contains("the policy's maxDeletes of 1"),
            "{err}"
        );
    }

    /// Deletions until the planner refuses one.
    fn deletions_allowed(max: Option<MaxDeletes>, previous_objects: u64) -> u64 {
        let mut planner = BackupPlanner::new(
            policy(DeleteMode::Record, max),
            PlanProgress::default(),
            10,
            10,
            previous_objects,
        );
        for i in 0..100_000u64 {
            if planner
                .apply(Change::Deleted(prev(&format!("k{i}"))))
                .is_err()
            {
                return i;
            }
        }
        u64::MAX
    }

    #[test]
    fn the_deletion_guard_is_on_by_default_and_counts_journaled_removals() {
        // No maxDeletes: the larger of 1,000 and 10% of the previous snapshot.
        assert_eq!(deletions_allowed(None, 0), 1_000);
        assert_eq!(deletions_allowed(None, 5_000), 1_000);
        assert_eq!(deletions_allowed(None, 50_000), 5_000);
        assert_eq!(deletions_allowed(Some(MaxDeletes::Limit(3)), 50_000), 3);
        assert_eq!(deletions_allowed(Some(MaxDeletes::Unlimited), 10), u64::MAX);
        let mut planner = BackupPlanner::new(
            policy(DeleteMode::Propagate, None),
            PlanProgress::default(),
            10,
            10,
            0,
        );
        for i in 0..1_000 {
            planner
                .apply(Change::DeletedMarked(prev(&format!("k{i}"))))
                .unwrap();
        }
        let err = planner.apply(Change::Deleted(prev("last"))).unwrap_err();
        assert!(err.default);
        assert!(
            err.to_string().contains("the default maxDeletes of 1000")
                && err.to_string().contains("\"unlimited\""),
            "{err}"
        );
    }

    #[test]
    fn a_policy_role_must_be_an_iam_role_arn() {
        let mut p = policy(DeleteMode::Ignore, None);
        p.role_arn = Some("arn:aws:iam::123456789012:role/backup".into());
        assert_eq!(p.validate(), Ok(()));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["roleArn"], "arn:aws:iam::123456789012:role/backup");
        assert_eq!(serde_json::from_value::<BackupPolicy>(json).unwrap(), p);
        for wrong in [
            "arn:aws:iam::123456789012:user/backup",
            "backup",
            "arn:aws:iam::1:role/x",
        ] {
            p.role_arn = Some(wrong.into());
            let (field, message) = p.validate().unwrap_err();
            assert_eq!(field, "roleArn");
            assert!(message.contains(wrong), "{message}");
        }
    }

    #[test]
    fn max_deletes_takes_a_number_or_unlimited() {
        let parse = |v: &str| {
            serde_json::from_str::<BackupPolicy>(&format!(
                r#"{{"name":"p","source":{{"bucket":"src"}},"destination":{{"bucket":"vault"}},"maxDeletes":{v}}}"#
            ))
        };
        assert_eq!(parse("5").unwrap().max_deletes, Some(MaxDeletes::Limit(5)));
        let unlimited = parse("\"unlimited\"").unwrap();
        assert_eq!(unlimited.max_deletes, Some(MaxDeletes::Unlimited));
        assert_eq!(
            serde_json::to_value(&unlimited).unwrap()["maxDeletes"],
            "unlimited"
        );
        let err = parse("-1").unwrap_err().to_string();
        assert!(err.contains("\"unlimited\""), "{err}");
        assert!(parse("\"lots\"")
            .unwrap_err()
            .to_string()
            .contains("`lots`"));
    }
}
