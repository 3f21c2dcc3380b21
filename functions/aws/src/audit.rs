//! Reads a job's completion report back and checks it against the job's counters: every shard's
//! MD5, rows per status, and that no task appears twice. Used by `batchops job report`, the demo
//! and the tests.

use crate::error::{Error, Result};
use crate::objects::{get_bytes, md5_hex};
use crate::App;
use batchops_core::report::{
    parse_row, report_manifest_key, ReportManifest, ReportRow, TaskStatus,
};
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

pub async fn audit_report(app: &App, job_id: &str) -> Result<ReportAudit> {
    let job = app.store.get_job(job_id).await?;
    let target = job.spec.report.clone().ok_or_else(|| {
        Error::Invalid(format!(
            "job {job_id} has no completion report (Report.Enabled is false)"
        ))
    })?;
    let key = report_manifest_key(&target, job_id);
    let manifest_url = format!("s3://{}/{key}", target.bucket);
    let body = get_bytes(&app.s3, &target.bucket, &key).await?;
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
        let shard = get_bytes(&app.s3, &result.bucket, &result.key).await?;
        if md5_hex(&shard) != result.md5_checksum {
            audit.bad_checksums.push(result.key.clone());
        }
        let text = String::from_utf8_lossy(&shard);
        for line in text.lines().filter(|l| !l.is_empty()) {
            let row = parse_row(line)
                .ok_or_else(|| Error::Data(format!("{}: unreadable row `{line}`", result.key)))?;
            match result.task_execution_status {
                TaskStatus::Succeeded => audit.succeeded_rows += 1,
                TaskStatus::Failed => audit.failed_rows += 1,
            }
            if !seen.insert((
                row.bucket.clone(),
                row.key_encoded.clone(),
                row.version_id.clone(),
                row.message.clone(),
            )) {
                audit.duplicate_rows += 1;
            }
            audit.rows.push(row);
        }
    }
    Ok(audit)
}
