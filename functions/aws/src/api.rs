//! The HTTP API (the `api` Lambda behind an API Gateway HTTP API with IAM auth): the job calls in
//! S3 Control's shapes, and the backup calls, routed from method and path. Transport-free: the
//! Lambda adapter turns an HTTP request into an `ApiRequest` and the `ApiResponse` back.
//!
//! ```text
//! POST   /jobs                              CreateJob document          -> {"JobId"}
//! GET    /jobs[?jobStatuses=Active,Failed][&maxResults=N][&nextToken=T] -> {"Jobs", "NextToken"}
//! GET    /jobs/{id}                                                     -> {"Job": {...}}
//! POST   /jobs/{id}/status?requestedJobStatus=Ready|Cancelled[&statusUpdateReason=...][&confirmTaskCount=N]
//!                                           (a Delete job is confirmed only with its task count)
//! POST   /jobs/{id}/priority?priority=N
//! GET    /jobs/{id}/tagging                                             -> {"Tags": [{"Key", "Value"}]}
//! PUT    /jobs/{id}/tagging                 {"Tags": [{"Key", "Value"}]} -> {}
//! DELETE /jobs/{id}/tagging                                             -> {}
//! POST   /jobs/{id}/rerun[?failedOnly=true]                             -> {"JobId", "Created", "Tasks", "Skipped"}
//! GET    /backup-policies                                               -> {"policies": [...]}
//! PUT    /backup-policies/{name}            policy (JSON)               -> the stored policy
//! GET    /backup-policies/{name}
//! DELETE /backup-policies/{name}
//! POST   /backup-policies/{name}/runs[?full=true]                       -> {"jobId"}
//! GET    /backup-policies/{name}/snapshots                              -> {"snapshots": [...]}
//! POST   /backup-policies/{name}/restores   {"snapshot"|"asOf", "to", "prefix", "keys", "allowOverwrite"} -> {"jobId"}
//! GET    /backup-policies/{name}/snapshots/{id}/verify  ("newest" for the newest) -> {"passed", "checked", "missing", "different", "problems", ...}
//! ```
//!
//! S3 Control's XML job API (`/v20180820/jobs...`) is `crate::s3control`, over these routes.
//!
//! Errors are `{"Code", "Message"}` with 400 (bad request, naming the field), 404 (no such job,
//! policy or route), 405, 409 (the job's status does not allow it) or 500.

use crate::backup::{self, RestoreRequest};
use crate::error::Error;
use crate::exports::ExportDescriptor;
use crate::imports::ImportDescriptor;
use crate::jobs;
use crate::transfers::{self, Transfer};
use crate::App;
use batchops_core::backup::BackupPolicy;
use batchops_core::{CreateJobRequest, JobStatus};
use serde::Deserialize;
use serde_json::{json, Value};

/// An HTTP request, as far as the API cares.
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    pub method: String,
    /// The path without the stage, e.g. `/jobs/123`.
    pub path: String,
    /// Query parameters, decoded; a repeated name appears more than once.
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
}

impl ApiResponse {
    fn ok(body: Value) -> Self {
        ApiResponse { status: 200, body }
    }

    fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiResponse {
            status,
            body: json!({"Code": code, "Message": message.into()}),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::error(400, "InvalidRequest", message)
    }
}

impl From<Error> for ApiResponse {
    fn from(err: Error) -> Self {
        match &err {
            Error::JobNotFound(_) => ApiResponse::error(404, "NoSuchJob", err.to_string()),
            Error::PolicyNotFound(_) => {
                ApiResponse::error(404, "NoSuchBackupPolicy", err.to_string())
            }
            Error::Request(_) | Error::Invalid(_) => ApiResponse::bad_request(err.to_string()),
            Error::State { .. } => ApiResponse::error(409, "JobStatusException", err.to_string()),
            Error::Aws { .. } | Error::Data(_) => {
                tracing::error!(error = %err, "api request failed");
                ApiResponse::error(500, "InternalError", err.to_string())
            }
        }
    }
}

/// ListJobs pages hold at most this many jobs (S3 Control's limit), so a response stays well
/// inside Lambda's 6 MB.
const MAX_LIST_RESULTS: usize = 1000;

/// A restore request's body: camelCase like every backup call (the PascalCase names of earlier
/// releases are still taken).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RestoreBody {
    #[serde(alias = "Snapshot")]
    snapshot: Option<String>,
    #[serde(alias = "AsOf")]
    as_of: Option<String>,
    /// `s3://bucket/prefix`; default: the source bucket, original keys.
    #[serde(alias = "To")]
    to: Option<String>,
    #[serde(alias = "Prefix")]
    prefix: Option<String>,
    #[serde(alias = "Keys")]
    keys: Option<Vec<String>>,
    /// Restore into an unversioned target, replacing what is there for good.
    #[serde(default, alias = "AllowOverwrite")]
    allow_overwrite: bool,
}

/// PutJobTagging's body, in S3 Control's JSON names.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TaggingBody {
    tags: Vec<batchops_core::request::Tag>,
}

pub async fn handle(app: &App, request: &ApiRequest) -> ApiResponse {
    // The `/exports` and `/imports` routes in functions of their own, boxed: `route`'s stack frame (large in
    // debug builds, where every arm's temporaries get their own slot) does not grow with them.
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    let answer = if segments.first() == Some(&ExportDescriptor::COLLECTION) {
        transfer_route::<ExportDescriptor>(app, request, segments).await
    } else if segments.first() == Some(&ImportDescriptor::COLLECTION) {
        transfer_route::<ImportDescriptor>(app, request, segments).await
    } else {
        route(app, request).await
    };
    match answer {
        Ok(response) => response,
        Err(err) => err.into(),
    }
}

async fn route(app: &App, request: &ApiRequest) -> Result<ApiResponse, Error> {
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method.to_ascii_uppercase();
    let response = match (method.as_str(), segments.as_slice()) {
        ("POST", ["jobs"]) => {
            let document = body_text(request)?;
            let created = jobs::create_job(app, CreateJobRequest::from_json(document)?).await?;
            ApiResponse::ok(json!({"JobId": created.job_id}))
        }
        ("GET", ["jobs"]) => {
            let mut statuses = Vec::new();
            for value in query_all(request, "jobStatuses") {
                for name in value.split(',').filter(|n| !n.is_empty()) {
                    statuses.push(name.parse::<JobStatus>().map_err(|e| {
                        Error::Invalid(format!("query parameter jobStatuses: {e}"))
                    })?);
                }
            }
            let max_results = match query_one(request, "maxResults") {
                None => MAX_LIST_RESULTS,
                Some(text) => match text.parse::<usize>() {
                    Ok(n) if (1..=MAX_LIST_RESULTS).contains(&n) => n,
                    _ => {
                        return Err(Error::Invalid(format!(
                            "query parameter maxResults: `{text}` is not a number from 1 to {MAX_LIST_RESULTS}"
                        )))
                    }
                },
            };
            let next_token = query_one(request, "nextToken");
            let page = jobs::list_jobs_page(app, &statuses, max_results, next_token).await?;
            let mut body = json!({"Jobs": page.jobs});
            if let Some(token) = page.next_token {
                body["NextToken"] = json!(token);
            }
            ApiResponse::ok(body)
        }
        ("GET", ["jobs", id]) => {
            ApiResponse::ok(json!({"Job": jobs::describe_job(app, id).await?}))
        }
        ("POST", ["jobs", id, "status"]) => {
            let requested = required(request, "requestedJobStatus")?;
            let requested: JobStatus = requested
                .parse()
                .map_err(|e| Error::Invalid(format!("query parameter requestedJobStatus: {e}")))?;
            let reason = query_one(request, "statusUpdateReason");
            let confirmed_tasks = query_one(request, "confirmTaskCount")
                .map(|count| {
                    count.parse::<u64>().map_err(|_| {
                        Error::Invalid(format!(
                            "query parameter confirmTaskCount: `{count}` is not a whole number"
                        ))
                    })
                })
                .transpose()?;
            let change =
                jobs::update_job_status(app, id, requested, reason, confirmed_tasks).await?;
            ApiResponse::ok(to_value(change)?)
        }
        ("POST", ["jobs", id, "priority"]) => {
            let priority = required(request, "priority")?;
            let priority: i64 = priority.parse().map_err(|_| {
                Error::Invalid(format!(
                    "query parameter priority: `{priority}` is not a whole number"
                ))
            })?;
            let priority = jobs::update_job_priority(app, id, priority).await?;
            ApiResponse::ok(json!({"JobId": id, "Priority": priority}))
        }
        ("GET", ["jobs", id, "tagging"]) => {
            ApiResponse::ok(json!({"Tags": jobs::get_job_tagging(app, id).await?}))
        }
        ("PUT", ["jobs", id, "tagging"]) => {
            let body: TaggingBody = parse_body(request, "tagging")?;
            jobs::put_job_tagging(app, id, body.tags).await?;
            ApiResponse::ok(json!({}))
        }
        ("DELETE", ["jobs", id, "tagging"]) => {
            jobs::delete_job_tagging(app, id).await?;
            ApiResponse::ok(json!({}))
        }
        ("POST", ["jobs", id, "rerun"]) => {
            let failed_only = query_flag(request, "failedOnly")?;
            // Boxed: its future is large, and `route` holds every arm's.
            let rerun = Box::pin(jobs::rerun_job(app, id, failed_only)).await?;
            ApiResponse::ok(to_value(rerun)?)
        }
        ("GET", ["backup-policies"]) => {
            ApiResponse::ok(json!({"policies": backup::list_policies(app).await?}))
        }
        ("PUT", ["backup-policies", name]) => {
            let policy: BackupPolicy = parse_body(request, "policy")?;
            if policy.name != *name {
                return Err(Error::Invalid(format!(
                    "policy name: the body says `{}`, the path `{name}`",
                    policy.name
                )));
            }
            ApiResponse::ok(to_value(backup::put_policy(app, policy).await?)?)
        }
        ("GET", ["backup-policies", name]) => {
            ApiResponse::ok(to_value(backup::get_policy(app, name).await?)?)
        }
        ("DELETE", ["backup-policies", name]) => {
            backup::delete_policy(app, name).await?;
            ApiResponse::ok(json!({"deleted": name}))
        }
        ("POST", ["backup-policies", name, "runs"]) => {
            // ?full=true: a full run that starts a new chain (no previous snapshot).
            let full = query_flag(request, "full")?;
            let job = backup::start_run(app, name, None, full).await?;
            ApiResponse::ok(json!({"jobId": job.job_id}))
        }
        ("GET", ["backup-policies", name, "snapshots"]) => {
            ApiResponse::ok(json!({"snapshots": backup::list_snapshots(app, name).await?}))
        }
        ("GET", ["backup-policies", name, "snapshots", id, "verify"]) => {
            let snapshot = (*id != "newest").then_some(*id);
            let report = crate::verify::verify_snapshot(app, name, snapshot).await?;
            ApiResponse::ok(to_value(report)?)
        }
        ("POST", ["backup-policies", name, "restores"]) => {
            let body: RestoreBody = if request.body.is_empty() {
                RestoreBody::default()
            } else {
                parse_body(request, "restore request")?
            };
            let to = match &body.to {
                Some(url) => Some(
                    batchops_core::arn::split_s3_url(url)
                        .map_err(|e| Error::Invalid(format!("To: {e}")))?,
                ),
                None => None,
            };
            let restore = RestoreRequest {
                snapshot: body.snapshot,
                as_of: body.as_of,
                to,
                prefix: body.prefix,
                keys: body.keys,
                allow_overwrite: body.allow_overwrite,
            };
            let job = backup::start_restore(app, name, &restore).await?;
            ApiResponse::ok(json!({"jobId": job.job_id}))
        }
        (_, ["jobs"] | ["jobs", _] | ["jobs", _, "status" | "priority" | "tagging" | "rerun"])
        | (_, ["backup-policies"] | ["backup-policies", _])
        | (_, ["backup-policies", _, "runs" | "snapshots" | "restores"])
        | (_, ["backup-policies", _, "snapshots", _, "verify"]) => ApiResponse::error(
            405,
            "MethodNotAllowed",
            format!("{method} is not allowed on {}", request.path),
        ),
        _ => ApiResponse::error(404, "NotFound", format!("no route for {}", request.path)),
    };
    Ok(response)
}

/// The `/exports` and `/imports` routes (see `handle`), one [`Transfer`] direction each. The
/// future is built and boxed inside this plain function, so no caller's stack frame holds it.
#[inline(never)]
fn transfer_route<'a, T: Transfer + 'a>(
    app: &'a App,
    request: &'a ApiRequest,
    segments: Vec<&'a str>,
) -> futures::future::BoxFuture<'a, Result<ApiResponse, Error>> {
    Box::pin(async move {
        let method = request.method.to_ascii_uppercase();
        let Some((_, rest)) = segments.split_first() else {
            return Ok(ApiResponse::error(
                404,
                "NotFound",
                format!("no route for {}", request.path),
            ));
        };
        Ok(match (method.as_str(), rest) {
            ("POST", []) => {
                let body: T::Body = parse_body(request, &format!("{} request", T::NOUN))?;
                let job = T::create(app, body).await?;
                ApiResponse::ok(json!({ (T::ID_FIELD): job.job_id }))
            }
            ("GET", []) => {
                let listed = transfers::list::<T>(app).await?;
                ApiResponse::ok(json!({ (T::LIST_FIELD): listed }))
            }
            ("GET", [id]) => ApiResponse::ok(to_value(transfers::describe::<T>(app, id).await?)?),
            ("POST", [id, "cancel"]) => {
                ApiResponse::ok(to_value(transfers::cancel::<T>(app, id).await?)?)
            }
            ("GET", [id, "verify"]) => ApiResponse::ok(to_value(T::verify(app, id).await?)?),
            (method, [] | [_] | [_, "cancel" | "verify"]) => ApiResponse::error(
                405,
                "MethodNotAllowed",
                format!("{method} is not allowed on {}", request.path),
            ),
            _ => ApiResponse::error(404, "NotFound", format!("no route for {}", request.path)),
        })
    })
}

fn to_value(value: impl serde::Serialize) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::Data(e.to_string()))
}

fn body_text(request: &ApiRequest) -> Result<&str, Error> {
    std::str::from_utf8(&request.body)
        .map_err(|_| Error::Invalid("the request body is not UTF-8 text".into()))
}

/// Parses a JSON body; the error names the field (`what: keep_last: invalid type ...`).
fn parse_body<T: serde::de::DeserializeOwned>(
    request: &ApiRequest,
    what: &str,
) -> Result<T, Error> {
    let text = body_text(request)?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| Error::Invalid(format!("{what}: {}: {}", e.path(), e.inner())))
}

fn query_all<'a>(request: &'a ApiRequest, name: &'a str) -> impl Iterator<Item = &'a str> {
    request
        .query
        .iter()
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn query_one<'a>(request: &'a ApiRequest, name: &'a str) -> Option<&'a str> {
    query_all(request, name).next()
}

/// A `true`/`false` query parameter; absent is false.
fn query_flag(request: &ApiRequest, name: &str) -> Result<bool, Error> {
    match query_one(request, name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(Error::Invalid(format!(
            "query parameter {name}: `{other}` is not true or false"
        ))),
    }
}

fn required<'a>(request: &'a ApiRequest, name: &'a str) -> Result<&'a str, Error> {
    query_one(request, name)
        .ok_or_else(|| Error::Invalid(format!("query parameter {name} is required")))
}
