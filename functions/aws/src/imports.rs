//! Imports as jobs: create one (a listing of another store's location, copied into a bucket of
//! this account), describe, list and cancel them with the export statuses, write the import
//! manifest in the destination bucket when the job ends, and verify the bucket against it.

use crate::error::{Error, Result};
use crate::exports::{blank_request, verify_manifest, write_report_manifest, VerifyReport};
use crate::jobs::{self, CreatedJob};
use crate::stores;
use crate::transfers::{self, Transfer};
use crate::{now, App};
use batchops_core::counts::Counters;
use batchops_core::describe::{progress, ProgressSummary};
use batchops_core::encoding::decode_key;
use batchops_core::export::{ExportedObject, StoreLocation};
use batchops_core::import::{parse_imported_result_message, ImportSpec, ImportStatus};
use batchops_core::report::ReportRow;
use batchops_core::request::{
    internal_token, CreateJobRequest, ManifestSource, OperationSpec, Report, ReportScope,
    ReportTarget, StoreListing,
};
use batchops_core::{JobRecord, JobSpec};
use futures::future::BoxFuture;
use serde::Serialize;

/// The `Operation` name import jobs list under.
const IMPORT_OPERATION: &str = "BatchopsImport";

/// What to import: every object under `from`, into `to` (`s3://bucket/prefix` of this account).
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub from: StoreLocation,
    pub to: StoreLocation,
}

/// Where import jobs' completion reports go: every task's row (the import manifest is made
/// from them).
fn report_target(app: &App) -> ReportTarget {
    ReportTarget {
        bucket: app.config.control_bucket.clone(),
        prefix: "imports".to_string(),
        scope: ReportScope::AllTasks,
    }
}

/// Creates an import job. The source is opened first (its secret read), so a wrong location or
/// secret is refused now rather than failing the job.
pub async fn create_import(app: &App, request: &ImportRequest) -> Result<CreatedJob> {
    let spec = ImportSpec::new(request.from.clone(), &request.to).map_err(Error::Invalid)?;
    if spec.to_bucket == app.config.control_bucket {
        return Err(Error::Invalid(format!(
            "`{}` is batchops' control bucket: import into a bucket of your own",
            spec.to_bucket
        )));
    }
    stores::open(app, &spec.from).await?;
    let report = report_target(app);
    let job_request = CreateJobRequest {
        description: Some(format!("import {} to {}", spec.from.url(), spec.to_url())),
        client_request_token: Some(internal_token(&format!(
            "import-{}",
            uuid::Uuid::new_v4().simple()
        ))),
        report: Report {
            bucket: Some(format!("arn:aws:s3:::{}", report.bucket)),
            format: Some(batchops_core::request::REPORT_FORMAT.to_string()),
            enabled: true,
            prefix: Some(report.prefix.clone()),
            report_scope: Some("AllTasks".to_string()),
            expected_bucket_owner: None,
        },
        ..blank_request()
    };
    let job_spec = JobSpec {
        manifest: ManifestSource::Store(StoreListing {
            from: spec.from.clone(),
        }),
        operation: OperationSpec::Import(spec),
        report: Some(report),
        priority: 10,
        confirmation_required: false,
        pinning: Default::default(),
        expected_owners: Vec::new(),
    };
    let job_id = uuid::Uuid::new_v4().to_string();
    jobs::create_job_with_id(app, job_id, job_request, job_spec).await
}

/// An import as `import describe|list` and the API show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportDescriptor {
    pub import_id: String,
    /// In progress, Success, Error or Cancelled.
    pub status: &'static str,
    /// The job's own status.
    pub job_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub from: String,
    pub to: String,
    /// Where the import manifest is (or will be) written in the destination bucket.
    pub manifest_key: String,
    pub creation_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_update_reason: Option<String>,
    /// Succeeded tasks include objects skipped as unchanged; the report's rows say which
    /// (ResultMessage `Unchanged ...` against `Imported ...`).
    pub progress_summary: ProgressSummary,
}

fn import_spec(job: &JobRecord) -> Result<&ImportSpec> {
    job.spec
        .operation
        .import()
        .ok_or_else(|| transfers::not_this::<ImportDescriptor>(job))
}

impl Transfer for ImportDescriptor {
    const NOUN: &'static str = "import";
    const OPERATION: &'static str = IMPORT_OPERATION;
    const COLLECTION: &'static str = "imports";
    const ID_FIELD: &'static str = "ImportId";
    const LIST_FIELD: &'static str = "Imports";
    type Body = ImportBody;

    fn descriptor(job: &JobRecord, counters: &Counters) -> Result<Self> {
        let spec = import_spec(job)?;
        Ok(ImportDescriptor {
            import_id: job.job_id.clone(),
            status: ImportStatus::of(job.status).as_str(),
            job_status: job.status.as_str().to_string(),
            description: job.request.description.clone(),
            from: spec.from.url(),
            to: spec.to_url(),
            manifest_key: spec.manifest_key(&job.job_id),
            creation_time: job.created_at.clone(),
            status_update_reason: job.status_update_reason.clone(),
            progress_summary: progress(job, counters, now()),
        })
    }

    fn create(app: &App, body: ImportBody) -> BoxFuture<'_, Result<CreatedJob>> {
        Box::pin(async move { create_import(app, &body.into_request()?).await })
    }

    fn verify<'a>(app: &'a App, id: &'a str) -> BoxFuture<'a, Result<VerifyReport>> {
        Box::pin(verify_import(app, id))
    }
}

pub async fn describe_import(app: &App, import_id: &str) -> Result<ImportDescriptor> {
    transfers::describe(app, import_id).await
}

/// Every import, newest first.
pub async fn list_imports(app: &App) -> Result<Vec<ImportDescriptor>> {
    transfers::list(app).await
}

/// Cancels an import: objects already written stay; the one in flight is aborted.
pub async fn cancel_import(app: &App, import_id: &str) -> Result<ImportDescriptor> {
    transfers::cancel(app, import_id).await
}

/// An imported object, from its report row (None: the row copied nothing: skipped as
/// unchanged, or failed).
fn imported_object(row: &ReportRow) -> Option<ExportedObject> {
    let (size, md5, source_etag, destination_key) = parse_imported_result_message(&row.message)?;
    Some(ExportedObject {
        key: decode_key(&row.key_encoded).ok()?,
        version_id: Some(row.version_id.clone()).filter(|v| !v.is_empty()),
        destination_key,
        size,
        md5,
        source_etag,
    })
}

/// Writes the import manifest of an import job that has run (its report written) in the
/// destination bucket: one JSON line per object this import copied (the export manifest's
/// format, with the source ETag). Objects skipped as unchanged are in the report, not here.
/// Jobs of other operations are left alone.
pub async fn write_manifest(app: &App, job: &JobRecord) -> Result<()> {
    let Some(spec) = job.spec.operation.import() else {
        return Ok(());
    };
    let destination = stores::open(app, &spec.destination()).await?;
    let key = spec.manifest_key(&job.job_id);
    let lines = write_report_manifest(app, job, &destination, &key, imported_object).await?;
    tracing::info!(job_id = %job.job_id, lines, to = %spec.to_url(), "wrote the import manifest");
    Ok(())
}

/// Checks the destination bucket against the import manifest: every object it lists exists
/// with its size and MD5.
pub async fn verify_import(app: &App, import_id: &str) -> Result<VerifyReport> {
    let job = app.store.get_job(import_id).await?;
    let spec = import_spec(&job)?;
    let destination = stores::open(app, &spec.destination()).await?;
    let report = verify_manifest(&destination, &spec.manifest_key(import_id)).await?;
    Ok(VerifyReport {
        import_id: Some(import_id.to_string()),
        ..report
    })
}

/// The body of `POST /imports`: `{"From": location, "To": "s3://bucket/prefix"}`, each a URL or
/// the JSON form of a location (`{"url", "endpoint", "region", "pathStyle", "secretArn"}`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ImportBody {
    pub from: serde_json::Value,
    pub to: serde_json::Value,
}

impl ImportBody {
    pub fn into_request(self) -> Result<ImportRequest> {
        let from = StoreLocation::from_json(&self.from)
            .map_err(|e| Error::Invalid(format!("From: {e}")))?;
        let to =
            StoreLocation::from_json(&self.to).map_err(|e| Error::Invalid(format!("To: {e}")))?;
        ImportSpec::new(from.clone(), &to).map_err(|e| Error::Invalid(format!("To: {e}")))?;
        Ok(ImportRequest { from, to })
    }
}
