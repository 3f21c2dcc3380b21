//! Completion reports in S3's `Report_CSV_20180820` layout:
//! `<prefix>/job-<id>/manifest.json` listing headerless CSV shards under `job-<id>/results/`.
//!
//! Rows are written as S3 writes them: `Bucket,Key,VersionId,TaskStatus,<HTTP status>,<error
//! code>,ResultMessage` (S3's own rows put the HTTP status before the error code, whatever the
//! schema string says), keys URL-encoded.

use crate::request::{ReportScope, ReportTarget, REPORT_FORMAT};
use serde::{Deserialize, Serialize};

pub const REPORT_SCHEMA: &str =
    "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Succeeded,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
        }
    }
}

/// The result of one task, as it appears in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    pub bucket: String,
    pub key_encoded: String,
    pub version_id: Option<String>,
    pub status: TaskStatus,
    pub http_status: u16,
    pub error_code: Option<String>,
    pub message: String,
    /// Bytes written to the destination (0 for failures).
    pub bytes: u64,
    /// Version ID of the copy written (versioned destinations); backups record it.
    pub dest_version: Option<String>,
}

impl TaskOutcome {
    pub fn in_scope(&self, scope: ReportScope) -> bool {
        scope == ReportScope::AllTasks || self.status == TaskStatus::Failed
    }

    pub fn write_row(&self, out: &mut String) {
        push_csv_field(out, &self.bucket);
        out.push(',');
        push_csv_field(out, &self.key_encoded);
        out.push(',');
        push_csv_field(out, self.version_id.as_deref().unwrap_or(""));
        out.push(',');
        out.push_str(self.status.as_str());
        out.push(',');
        out.push_str(&self.http_status.to_string());
        out.push(',');
        push_csv_field(out, self.error_code.as_deref().unwrap_or(""));
        out.push(',');
        push_csv_field(out, &self.message);
        out.push('\n');
    }
}

/// One CSV field. A row is one line (reports are read line by line: audits, reruns, the CLI),
/// so line breaks in a value (a store's multi-line error body in a message) become spaces.
fn push_csv_field(out: &mut String, value: &str) {
    let value = if value.contains(['\n', '\r']) {
        std::borrow::Cow::Owned(value.replace("\r\n", " ").replace(['\n', '\r'], " "))
    } else {
        std::borrow::Cow::Borrowed(value)
    };
    if value.contains([',', '"']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&value);
    }
}

/// Parses a report row back (for tests, audits and the CLI); the inverse of [`TaskOutcome::write_row`].
pub fn parse_row(line: &str) -> Option<ReportRow> {
    let mut fields = Vec::new();
    crate::manifest::split_csv_record(line, &mut fields)?;
    if fields.len() != 7 {
        return None;
    }
    let mut it = fields.into_iter();
    let mut next = || it.next().unwrap_or_default();
    Some(ReportRow {
        bucket: next(),
        key_encoded: next(),
        version_id: next(),
        task_status: next(),
        http_status: next(),
        error_code: next(),
        message: next(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub bucket: String,
    pub key_encoded: String,
    pub version_id: String,
    pub task_status: String,
    pub http_status: String,
    pub error_code: String,
    pub message: String,
}

/// `<prefix>/job-<id>` (no prefix: `job-<id>`).
pub fn report_root(target: &ReportTarget, job_id: &str) -> String {
    if target.prefix.is_empty() {
        format!("job-{job_id}")
    } else {
        format!("{}/job-{job_id}", target.prefix)
    }
}

pub fn report_manifest_key(target: &ReportTarget, job_id: &str) -> String {
    format!("{}/manifest.json", report_root(target, job_id))
}

/// Where a committed range stages its rows of one status: the control bucket, where no report
/// reader looks (`attempt` keeps racing attempts apart). The finalizer rolls them into the
/// report's result files.
pub fn staged_rows_key(
    job_id: &str,
    seq: u64,
    first_task: u64,
    attempt: &str,
    status: TaskStatus,
) -> String {
    format!(
        "jobs/{job_id}/rows/{seq:010}-{first_task:07}-{attempt}-{}.csv",
        status.as_str()
    )
}

/// The report's `index`th result file of `status` (rows of many ranges rolled together).
pub fn rolled_file_key(
    target: &ReportTarget,
    job_id: &str,
    status: TaskStatus,
    index: u64,
) -> String {
    format!(
        "{}/results/{}-{index:06}.csv",
        report_root(target, job_id),
        status.as_str()
    )
}

/// The statuses in the order their rows are rolled (and listed in the manifest).
pub fn next_roll_status(status: TaskStatus) -> Option<TaskStatus> {
    match status {
        TaskStatus::Succeeded => Some(TaskStatus::Failed),
        TaskStatus::Failed => None,
    }
}

/// The finalizer's checkpoint while it rolls staged rows into result files: everything before
/// `after` (a committed range's position) of `status` is in a closed file or an uploaded part,
/// so a killed finalizer resumes here and neither repeats nor skips a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRoll {
    /// The status being rolled; None once both are.
    pub status: Option<TaskStatus>,
    /// The last range whose rows of `status` are consumed (None: none yet).
    pub after: Option<String>,
    /// Index of the open (or next) result file of `status`.
    pub next_file: u64,
    /// The open multipart upload of that file, if it has parts.
    pub open: Option<OpenFile>,
    pub manifest_written: bool,
}

impl ReportRoll {
    pub fn start() -> Self {
        ReportRoll {
            status: Some(TaskStatus::Succeeded),
            after: None,
            next_file: 0,
            open: None,
            manifest_written: false,
        }
    }

    pub fn done(&self) -> bool {
        self.status.is_none() && self.manifest_written
    }

    /// After a file of the current status closed.
    pub fn file_closed(&mut self, consumed_through: Option<String>) {
        self.open = None;
        self.next_file += 1;
        self.after = consumed_through;
    }

    /// After the current status's last range: the next status starts from the first range.
    pub fn status_done(&mut self) {
        self.open = None;
        self.after = None;
        self.next_file = 0;
        self.status = self.status.and_then(next_roll_status);
    }
}

/// A result file being written as a multipart upload across finalizer runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    pub key: String,
    pub upload_id: String,
    /// (part number, ETag) of the parts uploaded, in order.
    pub parts: Vec<(i32, String)>,
    pub bytes: u64,
    /// MD5 of the bytes uploaded so far: the file's MD5Checksum is computed while streaming.
    pub md5: ResumableMd5,
}

/// MD5 whose state can be checkpointed: a result file's parts are uploaded by different
/// finalizer runs, and its MD5 covers them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumableMd5 {
    state: [u32; 4],
    /// Bytes consumed in all.
    length: u64,
    /// The bytes of the last, incomplete 64-byte block (hex).
    tail: String,
}

impl Default for ResumableMd5 {
    fn default() -> Self {
        ResumableMd5 {
            state: [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476],
            length: 0,
            tail: String::new(),
        }
    }
}

const MD5_SHIFTS: [u32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

fn md5_constants() -> [u32; 64] {
    // RFC 1321: K[i] = floor(|sin(i + 1)| * 2^32); exact in f64 (checked by the tests).
    std::array::from_fn(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
}

fn md5_block(state: &mut [u32; 4], block: &[u8], k: &[u32; 64]) {
    let m: [u32; 16] = std::array::from_fn(|i| {
        u32::from_le_bytes([
            block[4 * i],
            block[4 * i + 1],
            block[4 * i + 2],
            block[4 * i + 3],
        ])
    });
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let (f, g) = match i / 16 {
            0 => ((b & c) | (!b & d), i),
            1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let rotated = a
            .wrapping_add(f)
            .wrapping_add(k[i])
            .wrapping_add(m[g])
            .rotate_left(MD5_SHIFTS[(i / 16) * 4 + i % 4]);
        a = d;
        d = c;
        c = b;
        b = b.wrapping_add(rotated);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

impl ResumableMd5 {
    /// Bytes consumed in all.
    pub fn consumed(&self) -> u64 {
        self.length
    }

    pub fn update(&mut self, data: &[u8]) {
        let k = md5_constants();
        let mut pending = hex::decode(&self.tail).unwrap_or_default();
        self.length += data.len() as u64;
        let mut data = data;
        if !pending.is_empty() {
            let take = (64 - pending.len()).min(data.len());
            pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if pending.len() < 64 {
                self.tail = hex::encode(&pending);
                return;
            }
            md5_block(&mut self.state, &pending, &k);
        }
        let mut blocks = data.chunks_exact(64);
        for block in &mut blocks {
            md5_block(&mut self.state, block, &k);
        }
        self.tail = hex::encode(blocks.remainder());
    }

    /// The hex MD5 of everything consumed (the state itself is left as it was).
    pub fn hex(&self) -> String {
        let mut done = self.clone();
        let bits = self.length.wrapping_mul(8);
        let tail_len = (self.length % 64) as usize;
        let pad = if tail_len < 56 {
            56 - tail_len
        } else {
            120 - tail_len
        };
        let mut padding = vec![0u8; pad];
        padding[0] = 0x80;
        done.update(&padding);
        done.update(&bits.to_le_bytes());
        done.state
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReportResult {
    pub task_execution_status: TaskStatus,
    pub bucket: String,
    #[serde(rename = "MD5Checksum")]
    pub md5_checksum: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReportManifest {
    pub format: String,
    pub report_creation_date: String,
    pub results: Vec<ReportResult>,
    pub report_schema: String,
}

impl ReportManifest {
    pub fn new(created: String, mut results: Vec<ReportResult>) -> Self {
        // Succeeded shards first, then failed, each in key order: the same input always gives
        // the same document.
        results.sort_by(|a, b| {
            (a.task_execution_status, &a.key).cmp(&(b.task_execution_status, &b.key))
        });
        ReportManifest {
            format: REPORT_FORMAT.to_string(),
            report_creation_date: created,
            results,
            report_schema: REPORT_SCHEMA.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: TaskStatus) -> TaskOutcome {
        TaskOutcome {
            bucket: "src".into(),
            key_encoded: "a%20b".into(),
            version_id: None,
            status,
            http_status: if status == TaskStatus::Succeeded {
                200
            } else {
                404
            },
            error_code: (status == TaskStatus::Failed).then(|| "NoSuchKey".to_string()),
            message: if status == TaskStatus::Succeeded {
                "Successful".into()
            } else {
                "Not Found, \"k\"".into()
            },
            bytes: 0,
            dest_version: None,
        }
    }

    #[test]
    fn rows_match_s3_layout() {
        let mut out = String::new();
        outcome(TaskStatus::Succeeded).write_row(&mut out);
        outcome(TaskStatus::Failed).write_row(&mut out);
        assert_eq!(
            out,
            "src,a%20b,,succeeded,200,,Successful\nsrc,a%20b,,failed,404,NoSuchKey,\"Not Found, \"\"k\"\"\"\n"
        );
        let row = parse_row(out.lines().nth(1).unwrap()).unwrap();
        assert_eq!(row.message, "Not Found, \"k\"");
        assert_eq!(row.error_code, "NoSuchKey");
    }

    #[test]
    fn a_message_with_line_breaks_is_written_on_one_line() {
        let mut failed = outcome(TaskStatus::Failed);
        failed.message = "500: <?xml version=\"1.0\"?>\n<Error>\r\n<Code>X</Code>\r</Error>".into();
        let mut out = String::new();
        failed.write_row(&mut out);
        assert_eq!(out.lines().count(), 1, "{out}");
        let row = parse_row(out.trim_end()).unwrap();
        assert_eq!(
            row.message,
            "500: <?xml version=\"1.0\"?> <Error> <Code>X</Code> </Error>"
        );
    }

    #[test]
    fn scope_filters_successes() {
        assert!(!outcome(TaskStatus::Succeeded).in_scope(ReportScope::FailedTasksOnly));
        assert!(outcome(TaskStatus::Failed).in_scope(ReportScope::FailedTasksOnly));
        assert!(outcome(TaskStatus::Succeeded).in_scope(ReportScope::AllTasks));
    }

    #[test]
    fn keys_follow_s3_layout() {
        let target = ReportTarget {
            bucket: "r".into(),
            prefix: "batch".into(),
            scope: ReportScope::AllTasks,
        };
        assert_eq!(
            report_manifest_key(&target, "j1"),
            "batch/job-j1/manifest.json"
        );
        assert_eq!(
            rolled_file_key(&target, "j1", TaskStatus::Failed, 3),
            "batch/job-j1/results/failed-000003.csv"
        );
        assert_eq!(
            staged_rows_key("j1", 3, 0, "ab", TaskStatus::Failed),
            "jobs/j1/rows/0000000003-0000000-ab-failed.csv"
        );
        let root = ReportTarget {
            prefix: String::new(),
            ..target
        };
        assert_eq!(report_manifest_key(&root, "j1"), "job-j1/manifest.json");
    }

    #[test]
    fn manifest_json_has_s3_field_names() {
        let manifest = ReportManifest::new(
            "2026-01-01T00:00:00Z".into(),
            vec![ReportResult {
                task_execution_status: TaskStatus::Failed,
                bucket: "r".into(),
                md5_checksum: "00".into(),
                key: "job-j/results/x.csv".into(),
            }],
        );
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["Format"], "Report_CSV_20180820");
        assert_eq!(json["ReportSchema"], REPORT_SCHEMA);
        assert_eq!(json["Results"][0]["TaskExecutionStatus"], "failed");
        assert_eq!(json["Results"][0]["MD5Checksum"], "00");
    }

    #[test]
    fn resumable_md5_matches_md5_across_checkpoints() {
        use md5::{Digest, Md5};
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 5000] {
            let whole = &data[..len];
            let expected = hex::encode(Md5::digest(whole));
            let mut one = ResumableMd5::default();
            one.update(whole);
            assert_eq!(one.hex(), expected, "length {len}");
            // Pieces of odd sizes, each through a JSON checkpoint, as the finalizer does.
            let mut pieces = ResumableMd5::default();
            for piece in whole.chunks(37) {
                let json = serde_json::to_string(&pieces).unwrap();
                pieces = serde_json::from_str(&json).unwrap();
                pieces.update(piece);
            }
            assert_eq!(pieces.hex(), expected, "length {len} in pieces");
        }
    }

    #[test]
    fn roll_visits_succeeded_then_failed_then_ends() {
        let mut roll = ReportRoll::start();
        roll.file_closed(Some("CHUNK#1".into()));
        assert_eq!(
            (roll.next_file, roll.after.as_deref()),
            (1, Some("CHUNK#1"))
        );
        roll.status_done();
        assert_eq!(roll.status, Some(TaskStatus::Failed));
        assert_eq!((roll.next_file, roll.after.as_deref()), (0, None));
        roll.status_done();
        assert_eq!(roll.status, None);
        assert!(!roll.done());
        roll.manifest_written = true;
        assert!(roll.done());
    }
}
