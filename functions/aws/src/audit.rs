//! Reads a job's completion report back and checks it against the job's counters: every shard's
//! MD5, rows per status, and that no task appears twice. Used by `batchops job report`, the demo
//! and the tests.

use crate::error::{Error, Result};
use crate::objects::get_bytes;
use crate::App;
use batchops_core::report::{
    parse_row, report_manifest_key, ReportManifest, ReportResult, ReportRow, TaskStatus,
};
use md5::{Digest, Md5};
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportAudit {
    pub manifest_url: String,
    pub shards: usize,
    pub succeeded_rows: u64,
    pub failed_rows: u64,
    /// Rows naming the same (bucket, key, version) more than once.
    pub duplicate_rows: u64,
    pub bad_checksums: Vec<String>,
    pub counters_succeeded: u64,
    pub counters_failed: u64,
    pub rows: Vec<ReportRow>,
}

impl ReportAudit {
    /// True when the report lists exactly the tasks the counters counted, each once, intact.
    pub fn consistent(&self, scope_all_tasks: bool) -> bool {
        let succeeded_ok = !scope_all_tasks || self.succeeded_rows == self.counters_succeeded;
        self.bad_checksums.is_empty()
            && self.duplicate_rows == 0
            && succeeded_ok
            && self.failed_rows == self.counters_failed
    }
}

/// [`audit_report_with`], keeping every row (tests look at them).
pub async fn audit_report(app: &App, job_id: &str) -> Result<ReportAudit> {
    audit_report_with(app, job_id, true).await
}

/// Reads the report's manifest and streams each result file (a file is read a block at a time,
/// its MD5 computed as it goes): memory holds one block and a 16-byte fingerprint per row for
/// the duplicate check, plus every row only when `keep_rows`.
pub async fn audit_report_with(app: &App, job_id: &str, keep_rows: bool) -> Result<ReportAudit> {
    let job = app.store.get_job(job_id).await?;
    let target = job.spec.report.clone().ok_or_else(|| {
        Error::Invalid(format!(
            "job {job_id} has no completion report (Report.Enabled is false)"
        ))
    })?;
    let key = report_manifest_key(&target, job_id);
    let manifest_url = format!("s3://{}/{key}", target.bucket);
    // The report is the job's data: read with its clients (its role, the report bucket's
    // Region and expected owner).
    let clients = app.job_clients(&job);
    let body = get_bytes(&clients.s3(&target.bucket).await, &target.bucket, &key).await?;
    let manifest: ReportManifest =
        serde_json::from_slice(&body).map_err(|e| Error::Data(format!("{manifest_url}: {e}")))?;
    let counters = app.store.counters(job_id).await?;
    let mut audit = ReportAudit {
        manifest_url,
        shards: manifest.results.len(),
        succeeded_rows: 0,
        failed_rows: 0,
        duplicate_rows: 0,
        bad_checksums: Vec::new(),
        counters_succeeded: counters.succeeded,
        counters_failed: counters.failed,
        rows: Vec::new(),
    };
    let mut seen = HashSet::new();
    for result in &manifest.results {
        let what = format!("s3://{}/{}", result.bucket, result.key);
        let out = clients
            .s3(&result.bucket)
            .await
            .get_object()
            .bucket(&result.bucket)
            .key(&result.key)
            .send()
            .await
            .map_err(|e| Error::aws_call("S3", "GetObject", &what, &e))?;
        let mut body = out.body;
        let mut md5 = Md5::new();
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let block = body
                .try_next()
                .await
                .map_err(|e| Error::Data(format!("{what}: reading: {e}")))?;
            let Some(block) = block else { break };
            md5.update(&block);
            pending.extend_from_slice(&block);
            // Whole lines now; the last, partial one waits for the next block.
            let Some(last_newline) = pending.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            let rest = pending.split_off(last_newline + 1);
            count_rows(&mut audit, &mut seen, result, &pending, keep_rows)?;
            pending = rest;
        }
        count_rows(&mut audit, &mut seen, result, &pending, keep_rows)?;
        if hex::encode(md5.finalize()) != result.md5_checksum {
            audit.bad_checksums.push(result.key.clone());
        }
    }
    Ok(audit)
}

fn count_rows(
    audit: &mut ReportAudit,
    seen: &mut HashSet<[u8; 16]>,
    result: &ReportResult,
    text: &[u8],
    keep_rows: bool,
) -> Result<()> {
    let text = String::from_utf8_lossy(text);
    for line in text.lines().filter(|l| !l.is_empty()) {
        let row = parse_row(line)
            .ok_or_else(|| Error::Data(format!("{}: unreadable row `{line}`", result.key)))?;
        match result.task_execution_status {
            TaskStatus::Succeeded => audit.succeeded_rows += 1,
            TaskStatus::Failed => audit.failed_rows += 1,
        }
        let mut fingerprint = Md5::new();
        for field in [&row.bucket, &row.key_encoded, &row.version_id, &row.message] {
            fingerprint.update(field.as_bytes());
            fingerprint.update([0u8]);
        }
        if !seen.insert(fingerprint.finalize().into()) {
            audit.duplicate_rows += 1;
        }
        if keep_rows {
            audit.rows.push(row);
        }
    }
    Ok(())
}
