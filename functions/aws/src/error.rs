//! Errors of the AWS-facing services, and the S3 error details a report row needs.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use batchops_core::backoff::{classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{service} {operation}: {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        message: String,
        /// HTTP status of the answer (None when none came) and the service's error code: what
        /// decides whether the same call may succeed later.
        status: Option<u16>,
        code: Option<String>,
    },
    #[error("job {0} not found")]
    JobNotFound(String),
    #[error("no backup policy named `{0}`")]
    PolicyNotFound(String),
    #[error(transparent)]
    Request(#[from] batchops_core::RequestError),
    #[error("{0}")]
    Invalid(String),
    #[error("job {job_id}: {message}")]
    State { job_id: String, message: String },
    #[error("data error: {0}")]
    Data(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What S3 said about a failed request: HTTP status (None when no response came), error code
/// and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Failure {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
}

impl S3Failure {
    pub fn from_sdk<E>(err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = answered_status(err);
        let code = err.code().map(str::to_string);
        let message = err
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| describe_sdk(err));
        S3Failure {
            status,
            code,
            message,
        }
    }

    pub fn class(&self) -> ErrorClass {
        classify(self.status, self.code.as_deref())
    }
}

/// The HTTP status of the answer, None when none was read. A body that could not be read whole
/// (connection cut mid-response) is no answer, whatever the status line said: the call may or
/// may not have acted, as with a timeout, so it is retried rather than taken as refused with 200.
fn answered_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ResponseError(_) => None,
        _ => err.raw_response().map(|r| r.status().as_u16()),
    }
}

/// The HTTP status and error code an error carries, for [`Error::class`].
pub trait ErrorMeta {
    fn status_and_code(&self) -> (Option<u16>, Option<String>);

    /// `Code: message (HTTP status)` when the service answered with an error code: what a
    /// person needs, without the SDK's debug dump of the whole response.
    fn concise(&self) -> Option<String> {
        None
    }
}

impl<E: ProvideErrorMetadata> ErrorMeta for SdkError<E, HttpResponse> {
    fn status_and_code(&self) -> (Option<u16>, Option<String>) {
        (answered_status(self), self.code().map(str::to_string))
    }

    fn concise(&self) -> Option<String> {
        let code = self.code()?;
        let status = self
            .raw_response()
            .map(|r| format!(" (HTTP {})", r.status().as_u16()))
            .unwrap_or_default();
        Some(match self.message() {
            Some(message) if !message.is_empty() => format!("{code}: {message}{status}"),
            _ => format!("{code}{status}"),
        })
    }
}

/// A request that could not be built is a defect of the request: never worth retrying.
impl ErrorMeta for aws_smithy_types::error::operation::BuildError {
    fn status_and_code(&self) -> (Option<u16>, Option<String>) {
        (Some(400), Some("InvalidRequest".to_string()))
    }
}

/// A body cut off while streaming: the same read may succeed later.
impl ErrorMeta for aws_smithy_types::byte_stream::error::Error {
    fn status_and_code(&self) -> (Option<u16>, Option<String>) {
        (None, None)
    }
}

impl Error {
    /// An [`Error::Aws`] for `err`, its message prefixed with what was being done.
    pub fn aws_call<E: std::error::Error + ErrorMeta + 'static>(
        service: &'static str,
        operation: &'static str,
        context: &str,
        err: &E,
    ) -> Error {
        let (status, code) = err.status_and_code();
        let detail = err.concise().unwrap_or_else(|| describe_sdk(err));
        Error::Aws {
            service,
            operation,
            message: if context.is_empty() {
                detail
            } else {
                format!("{context}: {detail}")
            },
            status,
            code,
        }
    }

    /// Whether the same step may succeed if tried again later. Missing jobs and policies, bad
    /// requests and data never do; state races and AWS errors without an answer may.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Aws { status, code, .. } => classify(*status, code.as_deref()),
            Error::State { .. } => ErrorClass::Transient,
            Error::JobNotFound(_)
            | Error::PolicyNotFound(_)
            | Error::Request(_)
            | Error::Invalid(_)
            | Error::Data(_) => ErrorClass::Permanent,
        }
    }

    /// A failure code for a job that this error ended: the AWS error code when there is one.
    pub fn failure_code(&self, default: &str) -> String {
        match self {
            Error::Aws {
                code: Some(code), ..
            } if !code.is_empty() => code.clone(),
            _ => default.to_string(),
        }
    }
}

/// Wraps any SDK error as an [`Error::Aws`] naming the call.
pub fn aws<E: std::error::Error + ErrorMeta + 'static>(
    service: &'static str,
    operation: &'static str,
) -> impl FnOnce(E) -> Error {
    move |err| Error::aws_call(service, operation, "", &err)
}

/// The full error chain of an SDK error, readable in logs.
pub fn describe_sdk<E: std::error::Error + 'static>(err: &E) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(err).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::copy_object::CopyObjectError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty())
    }

    #[test]
    fn a_response_cut_mid_body_is_transient_even_after_a_200_status_line() {
        // The chaos run's cut CopyObject: S3 copied, the connection dropped mid-body, the SDK
        // gave up; the status line said 200 but no answer was read.
        let err: SdkError<CopyObjectError, HttpResponse> = SdkError::response_error(
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "IncompleteBody"),
            response(200),
        );
        let failure = S3Failure::from_sdk(&err);
        assert_eq!(failure.status, None, "{failure:?}");
        assert_eq!(failure.class(), ErrorClass::Transient);
    }

    #[test]
    fn a_step_whose_response_was_cut_is_transient() {
        // The chaos run's cut DynamoDB Query failed the job at once (PlanningFailed) as if
        // the call had been refused with status 200.
        let err: SdkError<aws_sdk_dynamodb::operation::query::QueryError, HttpResponse> =
            SdkError::response_error(
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "IncompleteBody"),
                response(200),
            );
        let err = aws("DynamoDB", "Query")(err);
        assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    }

    #[test]
    fn a_service_error_keeps_its_status() {
        let err: SdkError<CopyObjectError, HttpResponse> =
            SdkError::service_error(CopyObjectError::unhandled("NoSuchKey"), response(404));
        let failure = S3Failure::from_sdk(&err);
        assert_eq!(failure.status, Some(404));
        assert_eq!(failure.class(), ErrorClass::Permanent);
    }
}
