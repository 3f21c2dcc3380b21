//! Operations: one module per operation, behind one small interface.
//!
//! For each range of a chunk the worker asks [`runner`] for the job's operation, ready to run
//! tasks (it takes what it needs from the [`RangeContext`]: clients, settings, the stop flag, the
//! time left), then runs every task through [`run_task`]. A task ends as a [`TaskResult`]; a
//! finished one carries its [`TaskOutcome`], which is both the task's report row (status, error
//! code, HTTP status, message) and what it adds to the job's counters (succeeded or failed,
//! bytes). The worker never names an operation: adding one touches this module and core's
//! `OperationSpec`, not the worker.

pub mod copy;
pub mod export;
pub mod lambda_invoke;

use crate::App;
use batchops_core::chunk::ChunkTask;
use batchops_core::manifest::MalformedLine;
use batchops_core::report::{TaskOutcome, TaskStatus};
use batchops_core::request::OperationSpec;
use futures::future::BoxFuture;
use std::sync::atomic::AtomicBool;
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
    /// The job's S3 client for the range's source objects (their bucket's Region).
    pub source_s3: &'a aws_sdk_s3::Client,
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
    }
}

/// Runs one task with `runner`; a malformed manifest line fails the same way whatever the
/// operation.
pub async fn run_task(runner: &dyn TaskRunner, index: u64, task: &ChunkTask) -> TaskResult {
    match task {
        ChunkTask::Malformed(line) => malformed(line),
        _ => runner.run(index, task).await,
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
