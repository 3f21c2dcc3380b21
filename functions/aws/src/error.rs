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
        let status = err.raw_response().map(|r| r.status().as_u16());
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
