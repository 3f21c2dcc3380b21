//! `job rerun`: a new job over a finished job's tasks, either all of them (the same manifest) or
//! exactly those that failed (a CSV manifest built from the completion report's failed rows,
//! version IDs kept). Pure: the AWS side reads the report and writes the manifest.

use crate::report::ReportRow;
use crate::request::{
    CreateJobRequest, Manifest, ManifestLocation, ManifestSource, ManifestSpec, CSV_MANIFEST_FORMAT,
};
use crate::JobRecord;

/// The ClientRequestToken of a rerun of `job_id`: derived from the job, so asking twice gives
/// the same job back (CreateJob is idempotent on its token).
pub fn rerun_token(job_id: &str, failed_only: bool) -> String {
    let token = if failed_only {
        format!("rerun-failed-{job_id}")
    } else {
        format!("rerun-all-{job_id}")
    };
    if token.len() <= 64 {
        token
    } else {
        // Tokens are at most 64 characters; a long job ID is folded into its digest.
        use md5::{Digest, Md5};
        let digest = hex::encode(Md5::digest(token.as_bytes()));
        format!(
            "rerun-{}-{digest}",
            if failed_only { "failed" } else { "all" }
        )
    }
}

/// Why a job cannot be rerun.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job_id} cannot be rerun: {reason}")]
pub struct RerunRefused {
    pub job_id: String,
    pub reason: String,
}

fn refuse(job: &JobRecord, reason: impl Into<String>) -> RerunRefused {
    RerunRefused {
        job_id: job.job_id.clone(),
        reason: reason.into(),
    }
}

/// Checks that `job` can be rerun at all: it has ended, it is a CreateJob job (backup runs and
/// restores are started again with `backup run` / `backup restore`), and for `failed_only`
/// its completion report of failed tasks was written.
pub fn check_rerunnable(job: &JobRecord, failed_only: bool) -> Result<(), RerunRefused> {
    if !job.status.is_terminal() {
        return Err(refuse(
            job,
            format!("it is {}; rerun a job once it has ended", job.status),
        ));
    }
    if matches!(
        job.spec.manifest,
        ManifestSource::Backup(_) | ManifestSource::Restore(_)
    ) {
        return Err(refuse(
            job,
            "it is a backup run or restore; start another with `batchops backup run` or `backup restore`",
        ));
    }
    if matches!(job.spec.manifest, ManifestSource::Store(_)) {
        return Err(refuse(
            job,
            "it is an import; run `batchops import create` again, which copies only what changed",
        ));
    }
    if failed_only {
        if job.spec.report.is_none() {
            return Err(refuse(
                job,
                "it has no completion report (Report.Enabled was false), so its failed tasks are not known; rerun all its tasks without --failed-only",
            ));
        }
        if !job.report_written {
            return Err(refuse(
                job,
                "its completion report was not written (no task ran), so there are no failed tasks to rerun",
            ));
        }
    }
    Ok(())
}

/// The failed tasks as a CSV manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedTasksManifest {
    /// `S3BatchOperations_CSV_20180820` lines (keys stay URL-encoded, as the report has them).
    pub csv: String,
    /// `Bucket, Key` or `Bucket, Key, VersionId`.
    pub fields: Vec<String>,
    pub tasks: u64,
    /// Failed rows naming no object (a malformed manifest line): nothing to run again.
    pub skipped: u64,
}

/// Builds the manifest of the failed rows of a report. Version IDs are kept; a manifest is all
/// versions or none, so rows with and without one cannot go in one manifest.
pub fn failed_tasks_manifest<'a>(
    job: &JobRecord,
    rows: impl IntoIterator<Item = &'a ReportRow>,
) -> Result<FailedTasksManifest, RerunRefused> {
    let mut csv = String::new();
    let (mut tasks, mut skipped, mut versioned) = (0u64, 0u64, 0u64);
    for row in rows {
        if row.task_status != "failed" {
            continue;
        }
        if row.bucket.is_empty() || row.key_encoded.is_empty() {
            skipped += 1;
            continue;
        }
        tasks += 1;
        csv.push_str(&row.bucket);
        csv.push(',');
        csv.push_str(&row.key_encoded);
        if !row.version_id.is_empty() {
            versioned += 1;
            csv.push(',');
            csv.push_str(&row.version_id);
        }
        csv.push('\n');
    }
    if tasks == 0 {
        return Err(refuse(
            job,
            if skipped == 0 {
                "its report lists no failed tasks; nothing to rerun".to_string()
            } else {
                format!("its report's {skipped} failed rows name no object (malformed manifest lines); nothing to rerun")
            },
        ));
    }
    if versioned != 0 && versioned != tasks {
        return Err(refuse(
            job,
            format!("{versioned} of its {tasks} failed tasks have a version ID and the others none; a manifest must be all one or the other"),
        ));
    }
    let mut fields = vec!["Bucket".to_string(), "Key".to_string()];
    if versioned != 0 {
        fields.push("VersionId".to_string());
    }
    Ok(FailedTasksManifest {
        csv,
        fields,
        tasks,
        skipped,
    })
}

/// The CreateJob document of a rerun: the first job's document (operation, report settings,
/// priority, role, tags, confirmation) with a derived token, and either the failed tasks'
/// manifest (`failed`: where it was written, with its ETag) or the first job's own manifest,
/// pinned to the ETag and version it was read with.
pub fn rerun_request(
    job: &JobRecord,
    failed: Option<(&FailedTasksManifest, ManifestLocation)>,
) -> CreateJobRequest {
    let mut request = job.request.clone();
    let failed_only = failed.is_some();
    request.client_request_token = Some(rerun_token(&job.job_id, failed_only));
    request.tags = job.tags().to_vec();
    let what = if failed_only {
        "failed tasks"
    } else {
        "all tasks"
    };
    let mut description = format!("Rerun of the {what} of job {}", job.job_id);
    if let Some(original) = &job.request.description {
        description = format!("{description}: {original}");
    }
    request.description = Some(description.chars().take(256).collect());
    match failed {
        Some((manifest, location)) => {
            request.manifest = Some(Manifest {
                spec: ManifestSpec {
                    format: CSV_MANIFEST_FORMAT.to_string(),
                    fields: Some(manifest.fields.clone()),
                },
                location,
            });
            request.manifest_generator = None;
            // The failed rows name their objects (and versions) already; listing options and
            // AsOf would choose other ones.
            if let Some(options) = &mut request.batchops {
                options.as_of = None;
                options.all_versions = false;
            }
        }
        None => {
            // The same manifest object the first job read, not one written there since.
            if let (Some(manifest), Some(object)) =
                (&mut request.manifest, job.spec.manifest.object())
            {
                manifest.location.etag = object.etag.clone();
                manifest.location.object_version_id = object.version_id.clone();
            }
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::sample;
    use crate::JobStatus;
    use time::macros::datetime;

    fn job() -> JobRecord {
        let request = CreateJobRequest::from_json(&sample()).unwrap();
        let spec = request.validate().unwrap();
        let mut job = JobRecord::new("j-1".into(), request, spec, datetime!(2026-01-01 0:00 UTC));
        job.status = JobStatus::Complete;
        job.report_written = true;
        job
    }

    fn row(bucket: &str, key: &str, version: &str, status: &str) -> ReportRow {
        ReportRow {
            bucket: bucket.into(),
            key_encoded: key.into(),
            version_id: version.into(),
            task_status: status.into(),
            http_status: "404".into(),
            error_code: "NoSuchKey".into(),
            message: "gone, really".into(),
        }
    }

    #[test]
    fn tokens_are_derived_from_the_job_and_fit_s3s_limit() {
        assert_eq!(rerun_token("abc", true), "rerun-failed-abc");
        assert_eq!(rerun_token("abc", false), "rerun-all-abc");
        let long = "x".repeat(80);
        let token = rerun_token(&long, true);
        assert!(token.len() <= 64, "{token}");
        assert_eq!(token, rerun_token(&long, true));
        assert_ne!(token, rerun_token(&long, false));
    }

    #[test]
    fn failed_rows_become_a_manifest_keeping_versions() {
        let job = job();
        let rows = [
            row("b", "a+b%2Fc", "v1", "failed"),
            row("b", "ok", "v2", "succeeded"),
            row("b", "x", "v3", "failed"),
        ];
        let manifest = failed_tasks_manifest(&job, &rows).unwrap();
        assert_eq!(manifest.csv, "b,a+b%2Fc,v1\nb,x,v3\n");
        assert_eq!(manifest.fields, ["Bucket", "Key", "VersionId"]);
        assert_eq!((manifest.tasks, manifest.skipped), (2, 0));

        let unversioned = [row("b", "k", "", "failed"), row("", "", "", "failed")];
        let manifest = failed_tasks_manifest(&job, &unversioned).unwrap();
        assert_eq!(manifest.csv, "b,k\n");
        assert_eq!(manifest.fields, ["Bucket", "Key"]);
        assert_eq!((manifest.tasks, manifest.skipped), (1, 1));
    }

    #[test]
    fn nothing_failed_or_mixed_versions_is_refused_saying_why() {
        let job = job();
        let err = failed_tasks_manifest(&job, &[row("b", "k", "", "succeeded")]).unwrap_err();
        assert!(err.to_string().contains("no failed tasks"), "{err}");
        let mixed = [row("b", "k", "v", "failed"), row("b", "l", "", "failed")];
        let err = failed_tasks_manifest(&job, &mixed).unwrap_err();
        assert!(err.to_string().contains("1 of its 2"), "{err}");
    }

    #[test]
    fn only_ended_jobs_with_a_report_rerun_their_failures() {
        let mut job = job();
        assert!(check_rerunnable(&job, true).is_ok());
        job.report_written = false;
        let err = check_rerunnable(&job, true).unwrap_err();
        assert!(err.reason.contains("not written"), "{err}");
        assert!(check_rerunnable(&job, false).is_ok());
        job.spec.report = None;
        let err = check_rerunnable(&job, true).unwrap_err();
        assert!(err.reason.contains("Report.Enabled was false"), "{err}");
        job.status = JobStatus::Active;
        let err = check_rerunnable(&job, false).unwrap_err();
        assert!(err.reason.contains("it is Active"), "{err}");
    }

    #[test]
    fn imports_are_run_again_not_rerun() {
        let mut job = job();
        job.spec.manifest = ManifestSource::Store(crate::request::StoreListing {
            from: crate::export::StoreLocation::parse("s3://theirs/x", &Default::default())
                .unwrap(),
        });
        let err = check_rerunnable(&job, false).unwrap_err();
        assert!(err.reason.contains("batchops import create"), "{err}");
    }

    #[test]
    fn the_rerun_keeps_the_operation_and_report_and_takes_the_new_manifest() {
        let job = job();
        let failed = failed_tasks_manifest(&job, &[row("b", "k", "v", "failed")]).unwrap();
        let location = ManifestLocation {
            object_arn: "arn:aws:s3:::control/reruns/job-j-1/failed-tasks.csv".into(),
            object_version_id: None,
            etag: Some("\"e\"".into()),
        };
        let request = rerun_request(&job, Some((&failed, location.clone())));
        assert_eq!(request.operation, job.request.operation);
        assert_eq!(request.report, job.request.report);
        assert_eq!(request.role_arn, job.request.role_arn);
        assert_eq!(request.tags, job.request.tags);
        assert_eq!(
            request.client_request_token.as_deref(),
            Some("rerun-failed-j-1")
        );
        let manifest = request.manifest.clone().unwrap();
        assert_eq!(manifest.location, location);
        assert_eq!(
            manifest.spec.fields.unwrap(),
            ["Bucket", "Key", "VersionId"]
        );
        assert!(request
            .description
            .as_deref()
            .unwrap()
            .starts_with("Rerun of the failed tasks of job j-1"));
        // It validates as any CreateJob document.
        request.validate().unwrap();

        let all = rerun_request(&job, None);
        assert_eq!(all.client_request_token.as_deref(), Some("rerun-all-j-1"));
        assert_eq!(
            all.manifest.unwrap().location.object_arn,
            job.request.manifest.clone().unwrap().location.object_arn
        );
    }
}
