//! Operations: one module per operation, behind one small interface.
//!
//! For each range of a chunk the worker asks [`runner`] for the job's operation, ready to run
//! tasks (it takes what it needs from the [`RangeContext`]: clients, settings, the stop flag, the
//! time left), then runs every task through [`run_task`]. A task ends as a [`TaskResult`]; a
//! finished one carries its [`TaskOutcome`], which is both the task's report row (status, error
//! code, HTTP status, message) and what it adds to the job's counters (succeeded or failed,
//! bytes). The worker never names an operation: adding one touches this module and core's
//! `OperationSpec`, not the worker.

/// `$request` addressed to `$object`: its bucket, key, and version when the manifest names one.
macro_rules! at_object {
    ($request:expr, $object:expr) => {
        $request
            .bucket(&$object.bucket)
            .key(&$object.key)
            .set_version_id($object.version_id.clone())
    };
}

pub mod acl;
pub mod checksum;
pub mod copy;
pub mod delete;
pub mod export;
pub mod import;
pub mod lambda_invoke;
pub mod lock;
pub mod parts;
pub mod restore;
pub mod tagging;

use crate::error::S3Failure;
use crate::App;
use aws_sdk_s3::Client;
use batchops_core::backoff::{ErrorClass, RetryPolicy};
use batchops_core::chunk::ChunkTask;
use batchops_core::encoding::encode_key;
use batchops_core::manifest::{MalformedLine, ObjectRef};
use batchops_core::report::{TaskOutcome, TaskStatus};
use batchops_core::request::OperationSpec;
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskResult {
    Done(TaskOutcome),
    /// The job was stopped while this task ran; what it had started was undone (a copy aborts
    /// its own multipart upload) and it is neither counted nor reported.
    Abandoned,
    /// The invocation ran out of time inside a long task (a multipart copy): its progress is
    /// kept and the next delivery of this task continues it.
    Suspended,
}

/// What the worker gives an operation for one range of a chunk.
#[derive(Clone, Copy)]
pub struct RangeContext<'a> {
    pub app: &'a App,
    pub job_id: &'a str,
    /// The chunk's sequence number (tasks are numbered within it).
    pub seq: u64,
    /// Raised when the job is cancelled or failing, or the range's lease was lost.
    pub stop: &'a AtomicBool,
    /// No new piece of work starts after this (the invocation's deadline, less a margin).
    pub stop_starting_at: SystemTime,
    /// The job's S3 client (its role, see [`crate::JobClients`]) for the bucket the operation
    /// writes to: the target bucket's Region, else the source objects'.
    pub s3: &'a aws_sdk_s3::Client,
    /// The job's S3 clients for the range's source objects: each task's bucket's own (its
    /// Region; a CSV manifest may name buckets in many).
    pub sources: &'a crate::clients::JobClients,
}

/// One operation, ready to run the tasks of one range.
pub trait TaskRunner: Send + Sync {
    /// Runs task `index` of the chunk. Malformed manifest lines never reach an operation
    /// (see [`run_task`]).
    fn run<'t>(&'t self, index: u64, task: &'t ChunkTask) -> BoxFuture<'t, TaskResult>;
}

/// The job's operation, for one range.
pub fn runner<'a>(
    operation: &'a OperationSpec,
    range: RangeContext<'a>,
) -> Box<dyn TaskRunner + 'a> {
    match operation {
        OperationSpec::Copy(spec) => Box::new(copy::runner(spec, range)),
        OperationSpec::LambdaInvoke(spec) => Box::new(lambda_invoke::runner(spec, range)),
        OperationSpec::Export(spec) => Box::new(export::runner(spec, range)),
        OperationSpec::Import(spec) => Box::new(import::runner(spec, range)),
        OperationSpec::PutTagging(tags) => objects(range, tagging::PutTagging(tags)),
        OperationSpec::DeleteTagging => objects(range, tagging::DeleteTagging),
        OperationSpec::PutAcl(acl) => objects(range, acl::PutAcl(acl)),
        OperationSpec::InitiateRestore(spec) => objects(range, restore::InitiateRestore(spec)),
        OperationSpec::PutLegalHold(spec) => objects(range, lock::PutLegalHold(spec)),
        OperationSpec::PutRetention(spec) => objects(range, lock::PutRetention(spec)),
        OperationSpec::ComputeChecksum(spec) => objects(range, checksum::ComputeChecksum(*spec)),
        OperationSpec::Delete(_) => objects(range, delete::DeleteVersion),
    }
}

/// Runs one task with `runner`; a malformed manifest line, or a task refused at planning, fails
/// the same way whatever the operation, without an S3 call.
pub async fn run_task(runner: &dyn TaskRunner, index: u64, task: &ChunkTask) -> TaskResult {
    match task {
        ChunkTask::Malformed(_) | ChunkTask::Refused { .. } => settle(task),
        _ => runner.run(index, task).await,
    }
}

/// The failed row of a task no operation runs: a malformed manifest line, or a task refused at
/// planning (past the job's task limit), with its code.
pub fn settle(task: &ChunkTask) -> TaskResult {
    match task {
        ChunkTask::Malformed(line) => malformed(line),
        ChunkTask::Refused {
            object,
            code,
            message,
            ..
        } => TaskResult::Done(failed(
            object,
            S3Failure {
                status: Some(400),
                code: Some(code.clone()),
                message: message.clone(),
            },
        )),
        other => TaskResult::Done(other.failed_outcome(
            500,
            "InternalError",
            "the task was settled without running its operation".into(),
        )),
    }
}

/// The failed task of a manifest line that names no object.
pub fn malformed(line: &MalformedLine) -> TaskResult {
    TaskResult::Done(TaskOutcome {
        bucket: line.bucket.clone(),
        key_encoded: line.key_encoded.clone(),
        version_id: None,
        status: TaskStatus::Failed,
        http_status: 400,
        error_code: Some("InvalidManifestLine".to_string()),
        message: line.message.clone(),
        bytes: 0,
        dest_version: None,
    })
}

/// What an object operation answers for one object it acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acted {
    pub http_status: u16,
    /// The report row's ResultMessage.
    pub message: String,
    /// A version the operation wrote (a delete marker's), if any.
    pub new_version: Option<String>,
}

impl Acted {
    /// What S3 Batch Operations reports for a task that went through: `200,,Successful`.
    pub fn successful() -> Self {
        Acted {
            http_status: 200,
            message: "Successful".to_string(),
            new_version: None,
        }
    }
}

/// An operation made of one S3 request (or a few) per manifest object, with nothing to keep
/// between invocations: tagging, ACLs, restores, object lock, checksums, deletes.
pub trait ObjectOperation: Send + Sync {
    /// One attempt on `object`; throttling and 5xx answers are retried by the caller.
    fn act<'a>(
        &'a self,
        s3: &'a Client,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Acted, S3Failure>>;
}

/// Runs an [`ObjectOperation`] over a range's object tasks.
struct Objects<'a, O> {
    sources: &'a crate::clients::JobClients,
    retry: &'a RetryPolicy,
    operation: O,
}

fn objects<'a, O: ObjectOperation + 'a>(
    range: RangeContext<'a>,
    operation: O,
) -> Box<dyn TaskRunner + 'a> {
    Box::new(Objects {
        // The manifest's objects are what these operations act on.
        sources: range.sources,
        retry: &range.app.copy.retry,
        operation,
    })
}

impl<O: ObjectOperation> TaskRunner for Objects<'_, O> {
    fn run<'t>(&'t self, _index: u64, task: &'t ChunkTask) -> BoxFuture<'t, TaskResult> {
        Box::pin(async move {
            let ChunkTask::Object { object, .. } = task else {
                // Restore and delete-marker tasks come from backups, which copy.
                return TaskResult::Done(task.failed_outcome(
                    400,
                    "InvalidRequest",
                    "this task belongs to a backup copy, not to this job's operation".into(),
                ));
            };
            let s3 = self.sources.s3(&object.bucket).await;
            let acted = with_retry(self.retry, || self.operation.act(&s3, object)).await;
            TaskResult::Done(match acted {
                Ok(acted) => TaskOutcome {
                    bucket: object.bucket.clone(),
                    key_encoded: encode_key(&object.key),
                    version_id: object.version_id.clone(),
                    status: TaskStatus::Succeeded,
                    http_status: acted.http_status,
                    error_code: None,
                    message: acted.message,
                    bytes: 0,
                    dest_version: acted.new_version,
                },
                Err(failure) => failed(object, failure),
            })
        })
    }
}

/// A request the SDK could not build from a validated spec (a missing required member): a
/// permanent failure of the task, never retried.
pub fn unbuildable(what: &str, err: impl std::fmt::Display) -> S3Failure {
    S3Failure {
        status: Some(400),
        code: Some("InvalidRequest".into()),
        message: format!("could not build the {what} request: {err}"),
    }
}

/// S3's answer to a request: the output, or the failure the report row needs.
pub fn answered<T, E>(
    result: Result<
        T,
        aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    >,
) -> Result<T, S3Failure>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    result.map_err(|e| S3Failure::from_sdk(&e))
}

/// Runs `call` until it succeeds, fails permanently, or the retry budget is spent.
pub async fn with_retry<T, F, Fut>(policy: &RetryPolicy, call: F) -> Result<T, S3Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S3Failure>>,
{
    retry_within(
        policy,
        RetryBounds::default(),
        |f: &S3Failure| Some(f.class()),
        call,
    )
    .await
    .map_err(GaveUp::into_last)
}

/// Why [`retry_within`] stopped trying, with the last attempt's error.
#[derive(Debug)]
pub enum GaveUp<E> {
    /// Not retryable, or the policy's attempts are spent.
    Failed(E),
    /// Retryable, but the stop flag was raised.
    Stopped(E),
    /// Retryable, but the next attempt would start after `start_by`.
    OutOfTime(E),
}

impl<E> GaveUp<E> {
    pub fn into_last(self) -> E {
        match self {
            GaveUp::Failed(e) | GaveUp::Stopped(e) | GaveUp::OutOfTime(e) => e,
        }
    }
}

/// When a retry loop starts no further attempt.
#[derive(Clone, Copy, Debug, Default)]
pub struct RetryBounds<'a> {
    /// Raised when the job is cancelled or failing (or the range's lease was lost).
    pub stop: Option<&'a AtomicBool>,
    /// No attempt starts after this (the invocation's deadline, less a margin).
    pub start_by: Option<SystemTime>,
}

/// The one retry loop (S3 calls, invocations, exports): runs `call` again after the policy's
/// backoff while its error is retryable (`class_of`: None for an error never retried) within
/// the policy's attempts, the stop flag is down and the next attempt would start before
/// `start_by`; else answers the last error and why it stopped.
pub async fn retry_within<T, E, F, Fut>(
    policy: &RetryPolicy,
    bounds: RetryBounds<'_>,
    class_of: impl Fn(&E) -> Option<ErrorClass>,
    mut call: F,
) -> Result<T, GaveUp<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        let err = match call().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if !class_of(&err).is_some_and(|class| policy.should_retry(attempt, class)) {
            return Err(GaveUp::Failed(err));
        }
        if bounds.stop.is_some_and(|stop| stop.load(Ordering::Relaxed)) {
            return Err(GaveUp::Stopped(err));
        }
        let delay = policy.delay(attempt, rand::random::<f64>());
        if bounds
            .start_by
            .is_some_and(|start_by| SystemTime::now() + delay >= start_by)
        {
            return Err(GaveUp::OutOfTime(err));
        }
        tracing::debug!(attempt, ?delay, "retrying");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// The failed report row of a task S3 refused (or that could not reach S3).
pub fn failed(object: &ObjectRef, failure: S3Failure) -> TaskOutcome {
    TaskOutcome {
        bucket: object.bucket.clone(),
        key_encoded: encode_key(&object.key),
        version_id: object.version_id.clone(),
        status: TaskStatus::Failed,
        http_status: failure.status.unwrap_or(500),
        error_code: Some(failure.code.unwrap_or_else(|| "InternalError".to_string())),
        message: failure.message,
        bytes: 0,
        dest_version: None,
    }
}

/// HEAD responses carry no error body: name the error as GET would.
pub fn head_failure(object: &ObjectRef, mut failure: S3Failure) -> S3Failure {
    let (code, message) = match (failure.status, object.version_id.is_some()) {
        (Some(404), false) => ("NoSuchKey", "The specified key does not exist."),
        (Some(404), true) => ("NoSuchVersion", "The specified version does not exist."),
        (Some(403), _) => ("AccessDenied", "Access Denied"),
        (Some(405), _) => (
            "MethodNotAllowed",
            "The specified version is a delete marker.",
        ),
        (Some(400), true) => ("InvalidArgument", "Invalid version id specified"),
        _ => return failure,
    };
    if failure
        .code
        .as_deref()
        .is_none_or(|c| c == "NotFound" || c == "Forbidden" || c == "BadRequest" || c.is_empty())
    {
        failure.code = Some(code.to_string());
        failure.message = message.to_string();
    }
    failure
}
