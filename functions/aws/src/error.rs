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
        let status = match err {
            // The body could not be read whole (connection cut mid-response): no answer came,
            // whatever the status line said, and the call may or may not have acted, as with a
            // timeout. Retried, not reported as a failed task with status 200.
            SdkError::ResponseError(_) => None,
            _ => err.raw_response().map(|r| r.status().as_u16()),
        };
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

/// Wraps any SDK error as an [`Error::Aws`] naming the call.
pub fn aws<E: std::error::Error + 'static>(
    service: &'static str,
    operation: &'static str,
) -> impl FnOnce(E) -> Error {
    move |err| Error::Aws {
        service,
        operation,
        message: describe_sdk(&err),
    }
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
    fn a_service_error_keeps_its_status() {
        let err: SdkError<CopyObjectError, HttpResponse> =
            SdkError::service_error(CopyObjectError::unhandled("NoSuchKey"), response(404));
        let failure = S3Failure::from_sdk(&err);
        assert_eq!(failure.status, Some(404));
        assert_eq!(failure.class(), ErrorClass::Permanent);
    }
}
