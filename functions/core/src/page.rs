//! The job center page: plain server-rendered HTML (no build step, nothing fetched from the
//! internet) with a little script that refreshes while jobs run and calls the API for confirm
//! and cancel. Pure: the callers gather jobs, policies and exports; this only renders them.

use crate::describe::{JobDescriptor, JobListDescriptor, ProgressSummary};
use crate::encoding::decode_key;
use crate::report::ReportRow;
use std::fmt::Write as _;

/// A backup policy as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    pub name: String,
    pub enabled: bool,
    pub source: String,
    pub destination: String,
    pub schedule: Option<String>,
    /// The next scheduled run (RFC 3339), when the policy has a schedule and is enabled.
    pub next_run: Option<String>,
    /// Newest first.
    pub snapshots: Vec<SnapshotRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub id: String,
    pub created_at: String,
    pub objects: u64,
    pub bytes: u64,
}

/// An export or an import as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRow {
    /// The export's or import's ID (its job's).
    pub id: String,
    /// In progress, Success, Error or Cancelled.
    pub status: String,
    /// Imports: the other store read from.
    pub from: Option<String>,
    pub to: String,
    pub progress: ProgressSummary,
}

/// Snapshots listed per policy on the overview.
pub const SNAPSHOTS_SHOWN: usize = 5;
/// Failed tasks listed on a job's page.
pub const FAILED_TASKS_SHOWN: usize = 20;

/// `&`, `<`, `>`, `"` and `'` escaped: safe in text and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Statuses after which nothing changes any more.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "Complete" | "Failed" | "Cancelled")
}

/// Seconds left at the rate so far (tasks finished per active second), when there is a rate.
pub fn eta_seconds(progress: &ProgressSummary) -> Option<u64> {
    let done = progress.number_of_tasks_succeeded + progress.number_of_tasks_failed;
    let elapsed = progress.timers.elapsed_time_in_active_seconds;
    if done == 0 || elapsed == 0 || done >= progress.total_number_of_tasks {
        return None;
    }
    let left = progress.total_number_of_tasks - done;
    Some(((left as u128 * elapsed as u128).div_ceil(done as u128)) as u64)
}

/// `1h 02m`, `3m 07s`, `12s`.
pub fn duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `0 B`, `1.5 KiB`, `20.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Percent of tasks finished (succeeded or failed), 0–100.
pub fn percent_done(progress: &ProgressSummary) -> u64 {
    let done = progress.number_of_tasks_succeeded + progress.number_of_tasks_failed;
    match progress.total_number_of_tasks {
        0 => 0,
        total => (done.min(total) * 100) / total,
    }
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd}\
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.bar{width:10em;height:.9em;background:#eee;border-radius:3px;overflow:hidden;display:inline-block;vertical-align:middle}\
.bar span{display:block;height:100%;background:#2a7ae2}.bar span.failed{background:#d9534f}\
.status-Complete{color:#1a7f37}.status-Failed{color:#cf222e}.status-Cancelled{color:#777}\
.muted{color:#777}code{font-size:.95em}button{margin-right:.6em}#message{margin:.8em 0;color:#cf222e}";

/// Reloads every 2 s while anything shown still runs; the buttons call the API, then reload.
const SCRIPT: &str = "const live=document.body.dataset.live==='true';\
if(live){setTimeout(()=>location.reload(),2000);}\
async function jobStatus(id,status,count){\
let url='/jobs/'+encodeURIComponent(id)+'/status?requestedJobStatus='+status;\
if(count!==undefined){url+='&confirmTaskCount='+count;}\
const r=await fetch(url,{method:'POST'});const body=await r.json();\
if(!r.ok){document.getElementById('message').textContent=(body.Code||r.status)+': '+(body.Message||'');return;}\
location.reload();}";

fn page(title: &str, live: bool, content: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title}</title><style>{STYLE}</style></head>\
<body data-live=\"{live}\">{content}<script>{SCRIPT}</script></body></html>\n",
        title = escape(title),
    )
}

fn progress_bar(progress: &ProgressSummary) -> String {
    let total = progress.total_number_of_tasks.max(1);
    let ok = progress.number_of_tasks_succeeded.min(total) * 100 / total;
    let failed = progress.number_of_tasks_failed.min(total) * 100 / total;
    format!(
        "<span class=\"bar\" role=\"progressbar\" aria-valuenow=\"{pct}\" aria-valuemin=\"0\" \
aria-valuemax=\"100\"><span style=\"width:{ok}%;float:left\"></span>\
<span class=\"failed\" style=\"width:{failed}%;float:left\"></span></span> {pct}%",
        pct = percent_done(progress),
    )
}

fn eta_cell(status: &str, progress: &ProgressSummary) -> String {
    if is_terminal(status) {
        return "—".to_string();
    }
    eta_seconds(progress).map_or_else(|| "…".to_string(), duration)
}

/// The overview: every job (newest first, as listed), backup policies with their newest
/// snapshots and next run, exports and imports.
pub fn render_overview(
    jobs: &[JobListDescriptor],
    policies: &[PolicyRow],
    exports: &[TransferRow],
    imports: &[TransferRow],
) -> String {
    let live = jobs.iter().any(|j| !is_terminal(&j.status));
    let mut html = String::from("<h1>batchops job center</h1><div id=\"message\"></div>");
    let _ = write!(html, "<h2>Jobs ({})</h2>", jobs.len());
    if jobs.is_empty() {
        html.push_str("<p class=\"muted\">No jobs yet.</p>");
    } else {
        html.push_str(
            "<table id=\"jobs\"><tr><th>Job</th><th>Operation</th><th>Status</th>\
<th>Progress</th><th>Succeeded</th><th>Failed</th><th>Bytes</th><th>Elapsed</th><th>ETA</th>\
<th>Created</th></tr>",
        );
        for job in jobs {
            let p = &job.progress_summary;
            let _ = write!(
                html,
                "<tr class=\"job\" data-job-id=\"{id}\" data-status=\"{status}\">\
<td><a href=\"/ui/jobs/{id}\">{short}</a><br><span class=\"muted\">{description}</span></td>\
<td>{operation}</td><td class=\"status status-{status}\">{status}</td><td>{bar}</td>\
<td class=\"n succeeded\">{ok}</td><td class=\"n failed\">{failed}</td><td class=\"n\">{bytes}</td>\
<td class=\"n\">{elapsed}</td><td class=\"n\">{eta}</td><td>{created}</td></tr>",
                id = escape(&job.job_id),
                short = escape(job.job_id.get(..8).unwrap_or(&job.job_id)),
                description = escape(job.description.as_deref().unwrap_or("")),
                operation = escape(&job.operation),
                status = escape(&job.status),
                bar = progress_bar(p),
                ok = p.number_of_tasks_succeeded,
                failed = p.number_of_tasks_failed,
                bytes = bytes(p.number_of_bytes_copied),
                elapsed = duration(p.timers.elapsed_time_in_active_seconds),
                eta = eta_cell(&job.status, p),
                created = escape(&job.creation_time),
            );
        }
        html.push_str("</table>");
    }
    let _ = write!(html, "<h2>Backup policies ({})</h2>", policies.len());
    if policies.is_empty() {
        html.push_str("<p class=\"muted\">No backup policies.</p>");
    }
    for policy in policies {
        let _ = write!(
            html,
            "<h3 class=\"policy\" data-policy=\"{name}\">{name}{disabled}</h3>\
<p>{source} → {destination}<br>Schedule: {schedule}; next run: {next}</p>",
            name = escape(&policy.name),
            disabled = if policy.enabled {
                ""
            } else {
                " <span class=\"muted\">(disabled)</span>"
            },
            source = escape(&policy.source),
            destination = escape(&policy.destination),
            schedule = escape(
                policy
                    .schedule
                    .as_deref()
                    .unwrap_or("none (runs on demand)")
            ),
            next = escape(policy.next_run.as_deref().unwrap_or("—")),
        );
        if policy.snapshots.is_empty() {
            html.push_str("<p class=\"muted\">No snapshots yet.</p>");
            continue;
        }
        html.push_str(
            "<table class=\"snapshots\"><tr><th>Snapshot</th><th>Created</th><th>Objects</th>\
<th>Bytes</th></tr>",
        );
        for s in policy.snapshots.iter().take(SNAPSHOTS_SHOWN) {
            let _ = write!(
                html,
                "<tr><td>{id}</td><td>{created}</td><td class=\"n\">{objects}</td>\
<td class=\"n\">{bytes}</td></tr>",
                id = escape(&s.id),
                created = escape(&s.created_at),
                objects = s.objects,
                bytes = bytes(s.bytes),
            );
        }
        html.push_str("</table>");
        if policy.snapshots.len() > SNAPSHOTS_SHOWN {
            let _ = write!(
                html,
                "<p class=\"muted\">and {} older snapshots</p>",
                policy.snapshots.len() - SNAPSHOTS_SHOWN
            );
        }
    }
    transfer_table(&mut html, "Export", exports, false);
    transfer_table(&mut html, "Import", imports, true);
    page("batchops job center", live, &html)
}

/// The exports' (or imports') section of the overview; `with_from`: a From column.
fn transfer_table(html: &mut String, noun: &str, rows: &[TransferRow], with_from: bool) {
    let lower = noun.to_lowercase();
    let _ = write!(html, "<h2>{noun}s ({})</h2>", rows.len());
    if rows.is_empty() {
        let _ = write!(html, "<p class=\"muted\">No {lower}s.</p>");
        return;
    }
    let from_head = if with_from { "<th>From</th>" } else { "" };
    let _ = write!(
        html,
        "<table id=\"{lower}s\"><tr><th>{noun}</th><th>Status</th>{from_head}<th>To</th>\
<th>Progress</th><th>Bytes</th></tr>"
    );
    for row in rows {
        let from = match (&row.from, with_from) {
            (Some(from), true) => format!("<td>{}</td>", escape(from)),
            (None, true) => "<td></td>".to_string(),
            (_, false) => String::new(),
        };
        let _ = write!(
            html,
            "<tr><td><a href=\"/ui/jobs/{id}\">{id}</a></td><td>{status}</td>{from}<td>{to}</td>\
<td>{bar}</td><td class=\"n\">{bytes}</td></tr>",
            id = escape(&row.id),
            status = escape(&row.status),
            to = escape(&row.to),
            bar = progress_bar(&row.progress),
            bytes = bytes(row.progress.number_of_bytes_copied),
        );
    }
    html.push_str("</table>");
}

/// A job's page: its numbers, failure reasons, report, the first failed tasks, and the
/// confirm/cancel buttons its status allows. `confirm_task_count`: what a confirmation must
/// name (jobs that delete data), if anything.
pub fn render_job(
    job: &JobDescriptor,
    report_url: Option<&str>,
    failed_tasks: &[ReportRow],
    confirm_task_count: Option<u64>,
) -> String {
    let p = &job.progress_summary;
    let id = escape(&job.job_id);
    let status = escape(&job.status);
    let mut html = format!(
        "<p><a href=\"/\">← all jobs</a></p><h1>Job <code>{id}</code></h1>\
<div id=\"message\"></div><table class=\"job-detail\" data-job-id=\"{id}\" data-status=\"{status}\">"
    );
    let mut row = |name: &str, value: String| {
        let _ = write!(html, "<tr><th>{name}</th><td>{value}</td></tr>");
    };
    row(
        "Status",
        format!("<span class=\"status status-{status}\">{status}</span>"),
    );
    if let Some(description) = &job.description {
        row("Description", escape(description));
    }
    row("Operation", escape(&job.operation.named().join(", ")));
    row("Priority", job.priority.to_string());
    row("Progress", progress_bar(p));
    row(
        "Tasks",
        format!(
            "{} total, <span class=\"succeeded\">{}</span> succeeded, \
<span class=\"failed\">{}</span> failed",
            p.total_number_of_tasks, p.number_of_tasks_succeeded, p.number_of_tasks_failed
        ),
    );
    row("Bytes", bytes(p.number_of_bytes_copied));
    row("Elapsed", duration(p.timers.elapsed_time_in_active_seconds));
    row("ETA", eta_cell(&job.status, p));
    row("Created", escape(&job.creation_time));
    if let Some(ended) = &job.termination_date {
        row("Ended", escape(ended));
    }
    if let Some(reason) = &job.status_update_reason {
        row("Status reason", escape(reason));
    }
    if let Some(url) = report_url {
        row(
            "Report",
            format!("<code class=\"report\">{}</code>", escape(url)),
        );
    }
    html.push_str("</table>");
    let can_confirm = job.status == "Suspended";
    let can_cancel = !is_terminal(&job.status) && job.status != "Cancelling";
    if can_confirm || can_cancel {
        html.push_str("<p>");
        let quoted_id = escape(&serde_json::to_string(&job.job_id).unwrap_or_default());
        if can_confirm {
            let count = confirm_task_count.map_or(String::new(), |n| format!(",{n}"));
            let _ = write!(
                html,
                "<button id=\"confirm\" onclick=\"jobStatus({quoted_id},'Ready'{count})\">Confirm\
{label}</button>",
                label = confirm_task_count.map_or(String::new(), |n| format!(" ({n} tasks)")),
            );
        }
        if can_cancel {
            let _ = write!(
                html,
                "<button id=\"cancel\" onclick=\"jobStatus({quoted_id},'Cancelled')\">Cancel\
</button>"
            );
        }
        html.push_str("</p>");
    }
    if !job.failure_reasons.is_empty() {
        html.push_str("<h2>Failure reasons</h2><ul class=\"failure-reasons\">");
        for reason in &job.failure_reasons {
            let _ = write!(
                html,
                "<li><code>{}</code>: {}</li>",
                escape(&reason.failure_code),
                escape(&reason.failure_reason)
            );
        }
        html.push_str("</ul>");
    }
    if !job.warnings.is_empty() {
        html.push_str("<h2>Warnings</h2><ul>");
        for warning in &job.warnings {
            let _ = write!(html, "<li>{}</li>", escape(warning));
        }
        html.push_str("</ul>");
    }
    if !failed_tasks.is_empty() {
        let _ = write!(
            html,
            "<h2>First failed tasks</h2><table id=\"failed-tasks\"><tr><th>Bucket</th><th>Key\
</th><th>Version</th><th>HTTP</th><th>Code</th><th>Message</th></tr>"
        );
        for task in failed_tasks.iter().take(FAILED_TASKS_SHOWN) {
            // Report keys are URL-encoded; shown decoded (as written where that fails).
            let key = decode_key(&task.key_encoded).unwrap_or_else(|_| task.key_encoded.clone());
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&task.bucket),
                escape(&key),
                escape(&task.version_id),
                escape(&task.http_status),
                escape(&task.error_code),
                escape(&task.message),
            );
        }
        html.push_str("</table>");
    }
    page(
        &format!("batchops job {}", job.job_id),
        !is_terminal(&job.status),
        &html,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::describe::Timers;

    fn progress(total: u64, ok: u64, failed: u64, elapsed: u64) -> ProgressSummary {
        ProgressSummary {
            total_number_of_tasks: total,
            number_of_tasks_succeeded: ok,
            number_of_tasks_failed: failed,
            timers: Timers {
                elapsed_time_in_active_seconds: elapsed,
            },
            number_of_bytes_copied: 1536,
        }
    }

    fn listed(id: &str, status: &str, p: ProgressSummary) -> JobListDescriptor {
        JobListDescriptor {
            job_id: id.to_string(),
            description: Some("<copy> & \"more\"".to_string()),
            operation: "S3PutObjectCopy".to_string(),
            priority: 10,
            status: status.to_string(),
            creation_time: "2026-12-02T10:00:00Z".to_string(),
            termination_date: None,
            progress_summary: p,
        }
    }

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn eta_is_the_rate_so_far_and_absent_without_one() {
        assert_eq!(eta_seconds(&progress(100, 20, 5, 50)), Some(150));
        assert_eq!(eta_seconds(&progress(100, 0, 0, 50)), None);
        assert_eq!(eta_seconds(&progress(100, 100, 0, 50)), None);
        assert_eq!(eta_seconds(&progress(100, 10, 0, 0)), None);
        assert_eq!(duration(3725), "1h 02m");
        assert_eq!(duration(187), "3m 07s");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(20 * 1024 * 1024), "20.0 MiB");
        assert_eq!(percent_done(&progress(3, 1, 1, 1)), 66);
        assert_eq!(percent_done(&progress(0, 0, 0, 0)), 0);
    }

    #[test]
    fn the_overview_shows_progress_escapes_text_and_refreshes_only_while_jobs_run() {
        let running = listed("job-running-1", "Active", progress(10, 4, 1, 10));
        let html = render_overview(std::slice::from_ref(&running), &[], &[], &[]);
        assert!(html.contains("data-live=\"true\""));
        assert!(html.contains("aria-valuenow=\"50\""), "{html}");
        assert!(html.contains("&lt;copy&gt; &amp; &quot;more&quot;"));
        assert!(!html.contains("<copy>"));
        assert!(html.contains("href=\"/ui/jobs/job-running-1\""));
        assert!(
            html.contains("<td class=\"n\">10s</td><td class=\"n\">10s</td>"),
            "ETA: {html}"
        );
        let done = listed("job-done-1", "Complete", progress(10, 10, 0, 10));
        let html = render_overview(&[done], &[], &[], &[]);
        assert!(html.contains("data-live=\"false\""));
        assert!(html.contains("No backup policies.") && html.contains("No exports."));
        assert!(html.contains("No imports."));
    }

    #[test]
    fn the_overview_lists_exports_and_imports_each_in_its_table() {
        let row = |id: &str, from: Option<&str>, to: &str| TransferRow {
            id: id.to_string(),
            status: "In progress".to_string(),
            from: from.map(str::to_string),
            to: to.to_string(),
            progress: progress(4, 1, 0, 4),
        };
        let exports = [row("exp-1", None, "gs://far/away")];
        let imports = [
            row("imp-1", Some("az://acct/box/<in>"), "s3://mine/in/"),
            row("imp-2", Some("s3://other/x"), "s3://mine/x/"),
        ];
        let html = render_overview(&[], &[], &exports, &imports);
        assert!(html.contains("<h2>Exports (1)</h2>"), "{html}");
        assert!(html.contains("<h2>Imports (2)</h2>"), "{html}");
        assert!(
            html.contains("<table id=\"exports\"><tr><th>Export</th><th>Status</th><th>To</th>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<table id=\"imports\"><tr><th>Import</th><th>Status</th><th>From</th><th>To</th>"
            ),
            "{html}"
        );
        assert!(
            html.contains(
                "<td><a href=\"/ui/jobs/imp-1\">imp-1</a></td><td>In progress</td>\
<td>az://acct/box/&lt;in&gt;</td><td>s3://mine/in/</td>"
            ),
            "{html}"
        );
        assert!(html.contains("href=\"/ui/jobs/exp-1\""));
        let imports_at = html.find("id=\"imports\"").unwrap();
        assert!(html.find("id=\"exports\"").unwrap() < imports_at);
        assert!(!html.contains("No imports."));
    }

    #[test]
    fn the_overview_lists_policies_with_snapshots_and_next_run() {
        let policy = PolicyRow {
            name: "web".to_string(),
            enabled: true,
            source: "s3://src/".to_string(),
            destination: "s3://vault/b/".to_string(),
            schedule: Some("rate(1 day)".to_string()),
            next_run: Some("2026-12-03T00:00:00Z".to_string()),
            snapshots: (0..7)
                .map(|i| SnapshotRow {
                    id: format!("2026120{i}T000000Z"),
                    created_at: "t".to_string(),
                    objects: i,
                    bytes: 0,
                })
                .collect(),
        };
        let html = render_overview(&[], &[policy], &[], &[]);
        assert!(html.contains("next run: 2026-12-03T00:00:00Z"));
        assert!(html.contains("20261204T000000Z") && !html.contains("20261205T000000Z"));
        assert!(html.contains("and 2 older snapshots"));
    }

    #[test]
    fn a_job_page_shows_failures_and_the_buttons_its_status_allows() {
        let doc = r#"{"Operation": {"S3PutObjectTagging": {"TagSet": []}},
            "Report": {"Enabled": false}, "Priority": 5, "Description": "tag <all>",
            "ClientRequestToken": "t1", "RoleArn": "arn:aws:iam::123456789012:role/batch",
            "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket","Key"]},
                         "Location": {"ObjectArn": "arn:aws:s3:::b/m.csv", "ETag": "e"}}}"#;
        let request = crate::request::CreateJobRequest::from_json(doc).unwrap();
        let spec = request.validate().unwrap();
        let now = time::macros::datetime!(2026-01-01 0:00 UTC);
        let mut record = crate::job::JobRecord::new("j1".into(), request, spec, now);
        record.status = crate::JobStatus::Suspended;
        let counters = crate::counts::Counters::default();
        let job = crate::describe::describe(&record, &counters, "us-east-1", "123", now);
        let failed = vec![ReportRow {
            bucket: "b".into(),
            key_encoded: "a%20b%3Cc%3E".into(),
            version_id: "v1".into(),
            task_status: "failed".into(),
            http_status: "403".into(),
            error_code: "AccessDenied".into(),
            message: "denied".into(),
        }];
        let html = render_job(&job, Some("s3://r/job-j1/manifest.json"), &failed, Some(12));
        assert!(html.contains("S3PutObjectTagging"));
        assert!(html.contains("tag &lt;all&gt;"));
        assert!(
            html.contains("jobStatus(&quot;j1&quot;,'Ready',12)"),
            "{html}"
        );
        assert!(html.contains("id=\"cancel\""));
        assert!(
            html.contains("<td>a b&lt;c&gt;</td>"),
            "decoded, escaped key: {html}"
        );
        assert!(html.contains("s3://r/job-j1/manifest.json"));
        assert!(html.contains("data-live=\"true\""));

        record.status = crate::JobStatus::Complete;
        let job = crate::describe::describe(&record, &counters, "us-east-1", "123", now);
        let html = render_job(&job, None, &[], None);
        assert!(!html.contains("id=\"confirm\"") && !html.contains("id=\"cancel\""));
        assert!(html.contains("data-live=\"false\""));
    }
}
