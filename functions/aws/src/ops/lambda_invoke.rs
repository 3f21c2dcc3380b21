//! `LambdaInvoke`: the job's function, invoked once per task with the event S3 Batch Operations
//! sends (the call, its retries and its report row: `crate::invoke`; the contract:
//! `batchops_core::invoke`).

use super::{RangeContext, TaskResult, TaskRunner};
use crate::invoke::Invoker;
use batchops_core::chunk::ChunkTask;
use batchops_core::invoke::{task_id, InvokeSpec};
use futures::future::BoxFuture;

/// The job's function, for the tasks of one range.
pub struct LambdaInvoke<'a> {
    invoker: Invoker<'a>,
    seq: u64,
}

pub fn runner<'a>(spec: &'a InvokeSpec, range: RangeContext<'a>) -> LambdaInvoke<'a> {
    let app = range.app;
    LambdaInvoke {
        invoker: Invoker {
            lambda: &app.lambda,
            spec,
            settings: &app.config.invoke,
            job_id: range.job_id,
            start_by: Some(range.stop_starting_at),
            // An invocation started before the worker stops starting work may run into the
            // safety margin, but not through its second half: the range must still be committed.
            deadline: Some(range.stop_starting_at + app.config.worker_safety_margin / 2),
            stop: Some(range.stop),
        },
        seq: range.seq,
    }
}

impl TaskRunner for LambdaInvoke<'_> {
    fn run<'t>(&'t self, index: u64, task: &'t ChunkTask) -> BoxFuture<'t, TaskResult> {
        Box::pin(async move {
            match task {
                ChunkTask::Object { object, .. } => TaskResult::Done(
                    self.invoker
                        .run(&task_id(self.seq, index), object)
                        .await,
                ),
                ChunkTask::Malformed(_) | ChunkTask::Refused { .. } => super::settle(task),
                // Backup runs, restores and imports plan these, and they always copy.
                ChunkTask::Restore { .. } | ChunkTask::Delete { .. } | ChunkTask::Import { .. } => {
                    TaskResult::Done(task.failed_outcome(
                        400,
                        "InvalidRequest",
                        "a LambdaInvoke job runs object tasks only; this restore, delete or import task belongs to a backup or import job".to_string(),
                    ))
                }
            }
        })
    }
}
