//! S3 Control's REST-XML job API (`/v20180820/jobs...`), as `aws s3control` and the SDKs call
//! it, over the JSON `/jobs` routes of [`crate::api`]: each call's XML body becomes the JSON
//! document the JSON route takes (`xml`), the JSON route answers, and its answer becomes S3
//! Control's XML. So both APIs give the same answers, and validation (naming the field) is the
//! JSON route's.
//!
//! ```text
//! POST   /v20180820/jobs                    CreateJob        (x-amz-account-id: the account)
//! GET    /v20180820/jobs[?jobStatuses=..]*[&maxResults=N][&nextToken=T]   ListJobs
//! GET    /v20180820/jobs/{id}               DescribeJob
//! POST   /v20180820/jobs/{id}/priority?priority=N                         UpdateJobPriority
//! POST   /v20180820/jobs/{id}/status?requestedJobStatus=..[&statusUpdateReason=..]  UpdateJobStatus
//! GET|PUT|DELETE /v20180820/jobs/{id}/tagging   GetJobTagging, PutJobTagging, DeleteJobTagging
//! ```
//!
//! Errors are `<ErrorResponse><Error><Code/><Message/></Error><RequestId/></ErrorResponse>`
//! with the codes S3 Control's model names (`NotFoundException`, `BadRequestException`,
//! `JobStatusException`, ...), which the SDKs raise as those exceptions.
//!
//! Authentication is the transport's: API Gateway's IAM auth on Lambda, [`sigv4`] on
//! `batchops serve`.

pub mod sigv4;
pub mod xml;

use crate::api::{self, ApiRequest, ApiResponse};
use crate::App;
use serde_json::{json, Value};

/// The first path segment of every S3 Control call (its API version).
pub const PATH_PREFIX: &str = "/v20180820/";

/// Whether `path` is an S3 Control call (rather than a JSON route).
pub fn is_s3control_path(path: &str) -> bool {
    path.starts_with(PATH_PREFIX) || path == PATH_PREFIX.trim_end_matches('/')
}

/// An XML answer.
#[derive(Debug, Clone, PartialEq)]
pub struct XmlResponse {
    pub status: u16,
    /// Empty for the calls that answer with no body (PutJobTagging, DeleteJobTagging).
    pub body: String,
}

impl XmlResponse {
    /// S3 Control's error document.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        XmlResponse {
            status,
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
                quick_xml::escape::escape(code),
                quick_xml::escape::escape(message),
            ),
        }
    }
}

/// One S3 Control operation: its request body's shape (if it has one) and its answer's.
struct Operation {
    request_shape: Option<&'static str>,
    /// `None`: an empty body.
    response_shape: Option<&'static str>,
    /// The error code S3 Control gives for a bad request to this operation.
    bad_request_code: &'static str,
}

fn operation(method: &str, segments: &[&str]) -> Option<Operation> {
    let (request_shape, response_shape, bad_request_code) = match (method, segments) {
        ("POST", ["jobs"]) => (
            Some("CreateJobRequest"),
            Some("CreateJobResult"),
            "BadRequestException",
        ),
        ("GET", ["jobs"]) => (None, Some("ListJobsResult"), "InvalidRequestException"),
        ("GET", ["jobs", _]) => (None, Some("DescribeJobResult"), "BadRequestException"),
        ("POST", ["jobs", _, "priority"]) => {
            (None, Some("UpdateJobPriorityResult"), "BadRequestException")
        }
        ("POST", ["jobs", _, "status"]) => {
            (None, Some("UpdateJobStatusResult"), "BadRequestException")
        }
        ("GET", ["jobs", _, "tagging"]) => {
            (None, Some("GetJobTaggingResult"), "BadRequestException")
        }
        ("PUT", ["jobs", _, "tagging"]) => {
            (Some("PutJobTaggingRequest"), None, "BadRequestException")
        }
        ("DELETE", ["jobs", _, "tagging"]) => (None, None, "BadRequestException"),
        _ => return None,
    };
    Some(Operation {
        request_shape,
        response_shape,
        bad_request_code,
    })
}

/// Answers an S3 Control call. `account_id`: the `x-amz-account-id` header.
pub async fn handle(app: &App, request: &ApiRequest, account_id: Option<&str>) -> XmlResponse {
    let path = request
        .path
        .strip_prefix(PATH_PREFIX.trim_end_matches('/'))
        .unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method.to_ascii_uppercase();
    let Some(operation) = operation(&method, &segments) else {
        let known = matches!(
            segments.as_slice(),
            ["jobs"] | ["jobs", _] | ["jobs", _, "priority" | "status" | "tagging"]
        );
        return if known {
            XmlResponse::error(
                405,
                "MethodNotAllowed",
                &format!("{method} is not allowed on {}", request.path),
            )
        } else {
            XmlResponse::error(
                404,
                "NotFound",
                &format!("no S3 Control operation at {}", request.path),
            )
        };
    };
    let Some(account_id) = account_id.filter(|a| !a.is_empty()) else {
        return XmlResponse::error(
            400,
            operation.bad_request_code,
            "the x-amz-account-id header is required",
        );
    };
    // A job of another account is not found, as S3 Control answers (ListJobs is not filtered:
    // one stack serves one account).
    if let ["jobs", job_id, ..] = segments.as_slice() {
        if let Ok(job) = app.store.get_job(job_id).await {
            let owner = job
                .request
                .account_id
                .as_deref()
                .unwrap_or(&app.config.account_id);
            if owner != account_id {
                return XmlResponse::error(
                    404,
                    "NotFoundException",
                    &format!("job {job_id} not found in account {account_id}"),
                );
            }
        }
    }
    let body = match operation.request_shape {
        None => Vec::new(),
        Some(shape) => match request_document(request, shape, account_id) {
            Ok(document) => document.to_string().into_bytes(),
            Err(message) => {
                return XmlResponse::error(400, operation.bad_request_code, &message);
            }
        },
    };
    let json_request = ApiRequest {
        method,
        path: path.to_string(),
        query: request.query.clone(),
        body,
    };
    // Boxed: a route's future is large in debug builds (see `api::handle`).
    let answer = json_route(app, &json_request).await;
    if answer.status != 200 {
        return error_from_json(&answer, operation.bad_request_code);
    }
    match operation.response_shape {
        None => XmlResponse {
            status: 200,
            body: String::new(),
        },
        Some(shape) => match xml::write_response(shape, &answer.body) {
            Ok(body) => XmlResponse { status: 200, body },
            Err(message) => {
                tracing::error!(%message, shape, "an answer does not fit S3 Control's shape");
                XmlResponse::error(500, "InternalServiceException", &message)
            }
        },
    }
}

#[inline(never)]
fn json_route<'a>(
    app: &'a App,
    request: &'a ApiRequest,
) -> futures::future::BoxFuture<'a, ApiResponse> {
    Box::pin(api::handle(app, request))
}

/// The JSON document for a request body of shape `shape`; CreateJob's `AccountId` comes from
/// the header, where S3 Control puts it.
fn request_document(request: &ApiRequest, shape: &str, account_id: &str) -> Result<Value, String> {
    let text = std::str::from_utf8(&request.body)
        .map_err(|_| "the request body is not UTF-8 text".to_string())?;
    let mut document = xml::read_request(text, shape)?;
    if shape == "CreateJobRequest" {
        document["AccountId"] = json!(account_id);
    }
    Ok(document)
}

/// A JSON route's error as S3 Control's: the codes its model names, the message as it was.
fn error_from_json(answer: &ApiResponse, bad_request_code: &str) -> XmlResponse {
    let code = answer.body["Code"].as_str().unwrap_or_default();
    let message = answer.body["Message"].as_str().unwrap_or_default();
    let code = match (answer.status, code) {
        (404, "NoSuchJob") => "NotFoundException",
        (409, _) => "JobStatusException",
        (400, _) => bad_request_code,
        (500..=599, _) => "InternalServiceException",
        (_, code) => code,
    };
    XmlResponse::error(answer.status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3control_paths_are_told_from_json_routes() {
        assert!(is_s3control_path("/v20180820/jobs"));
        assert!(is_s3control_path("/v20180820/jobs/abc/tagging"));
        assert!(!is_s3control_path("/jobs"));
        assert!(!is_s3control_path("/v20180820jobs"));
    }

    #[test]
    fn every_job_operation_is_routed_and_others_are_not() {
        assert!(operation("POST", &["jobs"]).is_some());
        assert!(operation("GET", &["jobs"]).is_some());
        assert!(operation("GET", &["jobs", "a"]).is_some());
        assert!(operation("POST", &["jobs", "a", "priority"]).is_some());
        assert!(operation("POST", &["jobs", "a", "status"]).is_some());
        for method in ["GET", "PUT", "DELETE"] {
            assert!(operation(method, &["jobs", "a", "tagging"]).is_some());
        }
        // batchops' own calls stay on the JSON routes.
        assert!(operation("POST", &["jobs", "a", "rerun"]).is_none());
        assert!(operation("DELETE", &["jobs", "a"]).is_none());
    }

    #[test]
    fn json_errors_become_s3_control_errors() {
        let answer = |status, code: &str| ApiResponse {
            status,
            body: json!({"Code": code, "Message": "what & why"}),
        };
        let error = error_from_json(&answer(404, "NoSuchJob"), "BadRequestException");
        assert_eq!(error.status, 404);
        assert!(error.body.contains("<Code>NotFoundException</Code>"));
        assert!(error.body.contains("<Message>what &amp; why</Message>"));
        let error = error_from_json(&answer(409, "JobStatusException"), "BadRequestException");
        assert!(error.body.contains("<Code>JobStatusException</Code>"));
        let error = error_from_json(&answer(400, "InvalidRequest"), "InvalidRequestException");
        assert!(error.body.contains("<Code>InvalidRequestException</Code>"));
        let parsed = xml::parse(&error.body).unwrap();
        assert_eq!(parsed.name, "ErrorResponse");
        assert_eq!(parsed.children[0].name, "Error");
    }
}
