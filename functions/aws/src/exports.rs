//! Exports as jobs: create one (from a backup snapshot's catalog or any CreateJob-style
//! manifest), describe, list and cancel them with export statuses, write the export manifest at
//! the destination when the job ends, and verify a destination against it.

use crate::backup::{self, RestoreRequest};
use crate::error::{Error, Result};
use crate::jobs::{self, CreatedJob};
use crate::stores::{self, OpenStore};
use crate::transfers::{self, Transfer};
use crate::{now, App};
use batchops_core::backoff::ErrorClass;
use batchops_core::counts::Counters;
use batchops_core::describe::{progress, ProgressSummary};
use batchops_core::encoding::decode_key;
use batchops_core::export::{
    manifest_line, parse_export_result_message, parse_manifest, ExportSpec, ExportStatus,
    ExportedObject, StoreLocation,
};
use batchops_core::report::{parse_row, report_manifest_key, ReportManifest, ReportRow};
use batchops_core::request::{
    internal_token, CreateJobRequest, Manifest, ManifestSource, Operation, Report, ReportScope,
    ReportTarget,
};
use batchops_core::{JobRecord, JobSpec, RequestError};
use futures::future::BoxFuture;
use futures::StreamExt;
use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};
use serde::Serialize;
use tokio::io::AsyncBufReadExt;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub source: ExportSource,
    pub to: StoreLocation,
}

#[derive(Debug, Clone)]
pub enum ExportSource {
    /// A backup policy's snapshot (the newest, one by ID, or the newest at or before a time),
    /// optionally only keys under a prefix: the backup's copies are exported.
    Snapshot {
        policy: String,
        snapshot: Option<String>,
        as_of: Option<String>,
        prefix: Option<String>,
    },
    /// Any CreateJob-style `Manifest` (CSV or S3 Inventory report).
    Manifest(Manifest),
}

/// Where export jobs' completion reports go: every task's row (the export manifest is made
/// from them).
fn report_target(app: &App) -> ReportTarget {
    ReportTarget {
        bucket: app.config.control_bucket.clone(),
        prefix: "exports".to_string(),
        scope: ReportScope::AllTasks,
    }
}

/// Creates an export job. The destination is opened first (its secret read), so a wrong
/// location or secret is refused now rather than failing every task.
pub async fn create_export(app: &App, request: &ExportRequest) -> Result<CreatedJob> {
    stores::open(app, &request.to).await?;
    let report = report_target(app);
    let (description, manifest, snapshot) = match &request.source {
        ExportSource::Snapshot {
            policy,
            snapshot,
            as_of,
            prefix,
        } => {
            let restore = RestoreRequest {
                snapshot: snapshot.clone(),
                as_of: as_of.clone(),
                prefix: prefix.clone(),
                ..Default::default()
            };
            let (_, chosen, source) = backup::restore_source(app, policy, &restore).await?;
            (
                format!(
                    "export {policy} snapshot {} to {}",
                    chosen.id,
                    request.to.url()
                ),
                ManifestSource::Restore(source),
                Some((policy.clone(), chosen.id)),
            )
        }
        ExportSource::Manifest(manifest) => {
            let holder = CreateJobRequest {
                manifest: Some(manifest.clone()),
                ..blank_request()
            };
            let mut source = holder.validate_manifest()?;
            if !matches!(
                source,
                ManifestSource::Csv { .. } | ManifestSource::Inventory { .. }
            ) {
                return Err(RequestError::new("Manifest", "a CSV or S3 Inventory manifest").into());
            }
            record_manifest_etag(app, &mut source).await?;
            (
                format!("export manifest to {}", request.to.url()),
                source,
                None,
            )
        }
    };
    let job_request = CreateJobRequest {
        description: Some(description),
        client_request_token: Some(internal_token(&format!(
            "export-{}",
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
    let spec = JobSpec {
        operation: batchops_core::request::OperationSpec::Export(ExportSpec {
            to: request.to.clone(),
        }),
        manifest,
        report: Some(report),
        priority: 10,
        confirmation_required: false,
        pinning: Default::default(),
        expected_owners: Vec::new(),
    };
    let job_id = uuid::Uuid::new_v4().to_string();
    if let Some((policy, snapshot)) = snapshot {
        // Retention keeps the snapshot while this export reads it.
        if !backup::add_snapshot_reader(app, &policy, &snapshot, &job_id).await? {
            return Err(Error::Invalid(format!(
                "policy `{policy}` snapshot {snapshot} is being expired by retention; export another snapshot"
            )));
        }
    }
    jobs::create_job_with_id(app, job_id, job_request, spec).await
}

/// The manifest must exist now; its ETag is recorded so a later change fails the job.
async fn record_manifest_etag(app: &App, source: &mut ManifestSource) -> Result<()> {
    if let Some(manifest) = source.object_mut() {
        let head = app
            .s3
            .head_object()
            .bucket(&manifest.bucket)
            .key(&manifest.key)
            .set_version_id(manifest.version_id.clone())
            .send()
            .await
            .map_err(|e| {
                RequestError::new(
                    "Manifest.Location.ObjectArn",
                    format!(
                        "cannot read manifest s3://{}/{}: {}",
                        manifest.bucket,
                        manifest.key,
                        crate::error::S3Failure::from_sdk(&e).message
                    ),
                )
            })?;
        if manifest.etag.is_none() {
            manifest.etag = head.e_tag().map(str::to_string);
        }
    }
    Ok(())
}

pub(crate) fn blank_request() -> CreateJobRequest {
    CreateJobRequest {
        account_id: None,
        confirmation_required: false,
        operation: Operation::default(),
        report: Report {
            bucket: None,
            format: None,
            enabled: false,
            prefix: None,
            report_scope: None,
            expected_bucket_owner: None,
        },
        client_request_token: None,
        manifest: None,
        description: None,
        priority: 10,
        role_arn: None,
        tags: Vec::new(),
        manifest_generator: None,
        batchops: None,
    }
}

/// An export as `export describe|list` and the API show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExportDescriptor {
    pub export_id: String,
    /// In progress, Success, Error or Cancelled.
    pub status: &'static str,
    /// The job's own status.
    pub job_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub to: String,
    /// Where the export manifest is (or will be) written at the destination.
    pub manifest_key: String,
    pub creation_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_update_reason: Option<String>,
    pub progress_summary: ProgressSummary,
}

fn export_spec(job: &JobRecord) -> Result<&ExportSpec> {
    job.spec
        .operation
        .export()
        .ok_or_else(|| transfers::not_this::<ExportDescriptor>(job))
}

impl Transfer for ExportDescriptor {
    const NOUN: &'static str = "export";
    const OPERATION: &'static str = "BatchopsExport";
    const COLLECTION: &'static str = "exports";
    const ID_FIELD: &'static str = "ExportId";
    const LIST_FIELD: &'static str = "Exports";
    type Body = ExportBody;

    fn descriptor(job: &JobRecord, counters: &Counters) -> Result<Self> {
        let spec = export_spec(job)?;
        Ok(ExportDescriptor {
            export_id: job.job_id.clone(),
            status: ExportStatus::of(job.status).as_str(),
            job_status: job.status.as_str().to_string(),
            description: job.request.description.clone(),
            to: spec.to.url(),
            manifest_key: spec.to.manifest_key(&job.job_id),
            creation_time: job.created_at.clone(),
            status_update_reason: job.status_update_reason.clone(),
            progress_summary: progress(job, counters, now()),
        })
    }

    fn create(app: &App, body: ExportBody) -> BoxFuture<'_, Result<CreatedJob>> {
        Box::pin(async move { create_export(app, &body.into_request()?).await })
    }

    fn verify<'a>(app: &'a App, id: &'a str) -> BoxFuture<'a, Result<VerifyReport>> {
        Box::pin(verify_export(app, id))
    }
}

pub async fn describe_export(app: &App, export_id: &str) -> Result<ExportDescriptor> {
    transfers::describe(app, export_id).await
}

/// Every export, newest first.
pub async fn list_exports(app: &App) -> Result<Vec<ExportDescriptor>> {
    transfers::list(app).await
}

/// Cancels an export: objects already written stay; the one in flight is aborted.
pub async fn cancel_export(app: &App, export_id: &str) -> Result<ExportDescriptor> {
    transfers::cancel(app, export_id).await
}

/// Writes the export manifest of an export job that has run (its report written): one JSON
/// line per exported object, from the report's succeeded rows, streamed to the destination.
/// Writing it again writes the same bytes. Jobs of other operations are left alone.
pub async fn write_manifest(app: &App, job: &JobRecord) -> Result<()> {
    let Some(spec) = job.spec.operation.export() else {
        return Ok(());
    };
    let destination = stores::open(app, &spec.to).await?;
    let key = spec.to.manifest_key(&job.job_id);
    let lines = write_report_manifest(app, job, &destination, &key, exported_object).await?;
    tracing::info!(job_id = %job.job_id, lines, to = %spec.to.url(), "wrote the export manifest");
    Ok(())
}

/// An exported object, from its report row (None: the row exported nothing).
fn exported_object(row: &ReportRow) -> Option<ExportedObject> {
    let (size, md5, destination_key) = parse_export_result_message(&row.message)?;
    Some(ExportedObject {
        key: decode_key(&row.key_encoded).ok()?,
        version_id: Some(row.version_id.clone()).filter(|v| !v.is_empty()),
        destination_key,
        size,
        md5,
        source_etag: None,
    })
}

/// Streams a manifest (JSON lines, the export manifest's format) made from a job's report rows
/// to `key` in `destination`: one line per row `object_of` turns into an object, in report
/// order. Returns the lines written. Exports and imports write theirs with it.
pub(crate) async fn write_report_manifest(
    app: &App,
    job: &JobRecord,
    destination: &OpenStore,
    key: &str,
    object_of: fn(&ReportRow) -> Option<ExportedObject>,
) -> Result<u64> {
    let Some(target) = &job.spec.report else {
        return Ok(0);
    };
    let path = Path::parse(key).map_err(|e| Error::Invalid(e.to_string()))?;
    let upload = destination
        .store
        .put_multipart(&path)
        .await
        .map_err(|e| store_error(destination, key, e))?;
    let mut writer =
        WriteMultipart::new_with_chunk_size(upload, app.config.export.part_bytes as usize);
    let written: Result<u64> = async {
        let mut lines = 0;
        let report_key = report_manifest_key(target, &job.job_id);
        let report: Option<ReportManifest> =
            match crate::objects::get_bytes(&app.s3, &target.bucket, &report_key).await {
                Ok(bytes) => Some(
                    serde_json::from_slice(&bytes)
                        .map_err(|e| Error::Data(format!("{report_key}: {e}")))?,
                ),
                // No task ran: no report, an empty manifest.
                Err(Error::Aws {
                    status: Some(404), ..
                }) => None,
                Err(err) => return Err(err),
            };
        for result in report.map(|r| r.results).unwrap_or_default() {
            let answer = app
                .s3
                .get_object()
                .bucket(&target.bucket)
                .key(&result.key)
                .send()
                .await
                .map_err(|e| Error::aws_call("S3", "GetObject", &result.key, &e))?;
            let mut rows = answer.body.into_async_read().lines();
            while let Some(line) = rows
                .next_line()
                .await
                .map_err(|e| Error::Data(format!("{}: {e}", result.key)))?
            {
                let Some(row) = parse_row(&line) else {
                    continue;
                };
                if row.task_status != "succeeded" {
                    continue;
                }
                let Some(object) = object_of(&row) else {
                    continue;
                };
                writer
                    .wait_for_capacity(app.config.export.part_concurrency)
                    .await
                    .map_err(|e| store_error(destination, &key_of(&path), e))?;
                writer.write(manifest_line(&object).as_bytes());
                lines += 1;
            }
        }
        Ok(lines)
    }
    .await;
    match written {
        Ok(lines) => {
            writer
                .finish()
                .await
                .map_err(|e| store_error(destination, key, e))?;
            Ok(lines)
        }
        Err(err) => {
            let _ = writer.abort().await;
            Err(err)
        }
    }
}

fn key_of(path: &Path) -> String {
    path.to_string()
}

/// The service [`store_error`]s name: another object store's.
pub const STORE_SERVICE: &str = "ObjectStore";

/// A store's error on `key`, classified (see [`stores::StoreRefusal`]): a refusal is permanent,
/// anything else may be retried.
pub(crate) fn store_error(destination: &OpenStore, key: &str, err: object_store::Error) -> Error {
    let refusal = stores::StoreRefusal::of(&err);
    Error::Aws {
        service: STORE_SERVICE,
        operation: "Write",
        message: format!(
            "`{key}` in {}: {}",
            destination.location.url(),
            stores::error_text(&err)
        ),
        status: (refusal.class() == ErrorClass::Permanent).then_some(refusal.status()),
        code: Some(refusal.code(stores::End::Destination).to_string()),
    }
}

/// What `export verify` (or `import verify`) found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_id: Option<String>,
    pub manifest_key: String,
    pub objects: u64,
    pub bytes: u64,
    pub verified: u64,
    /// One line per object that is missing, of another size or of other content.
    pub mismatches: Vec<String>,
}

/// Reads the export manifest at the destination and checks every object it lists there: it
/// exists, with the size, and (read whole, hashed as it streams) the MD5 the manifest records.
pub async fn verify_export(app: &App, export_id: &str) -> Result<VerifyReport> {
    let job = app.store.get_job(export_id).await?;
    let spec = export_spec(&job)?;
    let destination = stores::open(app, &spec.to).await?;
    let report = verify_manifest(&destination, &spec.to.manifest_key(export_id)).await?;
    Ok(VerifyReport {
        export_id: Some(export_id.to_string()),
        ..report
    })
}

/// Checks every object a manifest (the export manifest's format) at `manifest_key` in
/// `destination` lists: it exists there, with the size, and (read whole, hashed as it streams)
/// the MD5 the manifest records.
pub(crate) async fn verify_manifest(
    destination: &OpenStore,
    manifest_key: &str,
) -> Result<VerifyReport> {
    let path = Path::parse(manifest_key).map_err(|e| Error::Invalid(e.to_string()))?;
    let text = destination
        .store
        .get(&path)
        .await
        .map_err(|e| store_error(destination, manifest_key, e))?
        .bytes()
        .await
        .map_err(|e| store_error(destination, manifest_key, e))?;
    let objects = parse_manifest(&String::from_utf8_lossy(&text)).map_err(Error::Data)?;
    let mut report = VerifyReport {
        manifest_key: manifest_key.to_string(),
        ..Default::default()
    };
    for object in objects {
        report.objects += 1;
        report.bytes += object.size;
        let Ok(path) = Path::parse(&object.destination_key) else {
            report
                .mismatches
                .push(format!("{}: not a key", object.destination_key));
            continue;
        };
        let found = match destination.store.get(&path).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => {
                report
                    .mismatches
                    .push(format!("{}: missing", object.destination_key));
                continue;
            }
            Err(e) => return Err(store_error(destination, &object.destination_key, e)),
        };
        let size = found.meta.size;
        let mut md5 = Md5::new();
        let mut stream = found.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| store_error(destination, &object.destination_key, e))?;
            md5.update(&chunk);
        }
        let digest = hex::encode(md5.finalize());
        if size != object.size {
            report.mismatches.push(format!(
                "{}: {size} bytes, the manifest says {}",
                object.destination_key, object.size
            ));
        } else if digest != object.md5 {
            report.mismatches.push(format!(
                "{}: MD5 {digest}, the manifest says {}",
                object.destination_key, object.md5
            ));
        } else {
            report.verified += 1;
        }
    }
    Ok(report)
}

/// The body of `POST /exports`: `{"Policy": "...", "Snapshot"|"AsOf": ..., "Prefix": ...}` or
/// `{"Manifest": {CreateJob's Manifest}}`, and `"To"`: a location URL or its JSON form
/// (`{"url", "endpoint", "region", "pathStyle", "secretArn"}`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ExportBody {
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub snapshot: Option<String>,
    #[serde(default)]
    pub as_of: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub manifest: Option<Manifest>,
    pub to: serde_json::Value,
}

impl ExportBody {
    pub fn into_request(self) -> Result<ExportRequest> {
        let to =
            StoreLocation::from_json(&self.to).map_err(|e| Error::Invalid(format!("To: {e}")))?;
        let source = match (self.policy, self.manifest) {
            (Some(policy), None) => ExportSource::Snapshot {
                policy,
                snapshot: self.snapshot,
                as_of: self.as_of,
                prefix: self.prefix,
            },
            (None, Some(manifest))
                if self.snapshot.is_none() && self.as_of.is_none() && self.prefix.is_none() =>
            {
                ExportSource::Manifest(manifest)
            }
            (None, Some(_)) => {
                return Err(Error::Invalid(
                    "Snapshot, AsOf and Prefix go with Policy, not with Manifest".into(),
                ))
            }
            _ => {
                return Err(Error::Invalid(
                    "give exactly one of Policy and Manifest".into(),
                ))
            }
        };
        Ok(ExportRequest { source, to })
    }
}
