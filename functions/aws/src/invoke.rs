//! One LambdaInvoke task: a synchronous Invoke (RequestResponse) of the job's function with the
//! S3 Batch Operations event for the task, read as S3 reads the answer. `TemporaryFailure`
//! answers, throttling and 5xx from Lambda, and calls that never reached it are tried again with
//! exponential backoff up to `BATCHOPS_INVOKE_MAX_ATTEMPTS`; the last attempt's result is the
//! task's report row. A function error, an invocation that outlives its timeout (the function
//! may have run: never repeated) or a malformed answer fails the task, saying which.

use crate::error::S3Failure;
use crate::ops::{retry_within, RetryBounds};
use aws_sdk_lambda::config::timeout::TimeoutConfig;
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_smithy_types::error::display::DisplayErrorContext;
use batchops_core::backoff::{ErrorClass, RetryPolicy};
use batchops_core::invoke::{judge_answer, judge_function_error, InvokeSpec, Judgement};
use batchops_core::manifest::ObjectRef;
use batchops_core::report::TaskOutcome;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, PartialEq)]
pub struct InvokeSettings {
    /// Attempts per task and the backoff between them.
    pub retry: RetryPolicy,
    /// The longest wait for one invocation's answer.
    pub timeout: Duration,
}

/// How one Invoke call ended.
#[derive(Debug)]
enum Attempt {
    /// The function answered, or failed with a function error.
    Judged(Judgement),
    /// Lambda refused the call (unknown function, access denied, throttled, 5xx), or no answer
    /// came because the call never got through.
    Refused(S3Failure),
    /// No answer within the timeout: the function may have run.
    TimedOut(Duration),
    /// An answer began but could not be read whole (the connection was cut): the function ran,
    /// or may have.
    Unread(String),
}

impl Attempt {
    fn worth_retrying(&self) -> bool {
        match self {
            Attempt::Judged(judgement) => judgement.is_temporary(),
            Attempt::Refused(failure) => failure.class() == ErrorClass::Transient,
            Attempt::TimedOut(_) | Attempt::Unread(_) => false,
        }
    }
}

/// Whether the call gave up waiting (the operation timeout, or a connect or read timeout), as
/// opposed to a call that was refused or never sent.
fn timed_out<E, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::TimeoutError(_) => true,
        SdkError::DispatchFailure(failure) => failure.is_timeout(),
        _ => false,
    }
}

/// Whether `function` can be invoked, asked before any task runs: a DryRun Invoke (Lambda
/// checks that the function, its qualifier and the permission to invoke it exist, and runs
/// nothing).
pub async fn check_function(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
) -> crate::error::Result<()> {
    lambda
        .invoke()
        .function_name(function)
        .invocation_type(InvocationType::DryRun)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| crate::error::Error::aws_call("Lambda", "Invoke", function, &e))
}

pub struct Invoker<'a> {
    pub lambda: &'a aws_sdk_lambda::Client,
    pub spec: &'a InvokeSpec,
    pub settings: &'a InvokeSettings,
    pub job_id: &'a str,
    /// No further attempt starts after this (when the worker stops starting work).
    pub start_by: Option<SystemTime>,
    /// No invocation waits past this (the worker's own deadline, less time to commit).
    pub deadline: Option<SystemTime>,
    /// Raised when the job is cancelled or failing: no further attempt starts (the last
    /// one's result stands; an invocation cannot be undone).
    pub stop: Option<&'a AtomicBool>,
}

impl Invoker<'_> {
    /// Runs task `task_id` (the same ID on every attempt) on `object`; returns its report row.
    pub async fn run(&self, task_id: &str, object: &ObjectRef) -> TaskOutcome {
        let bounds = RetryBounds {
            stop: self.stop,
            start_by: self.start_by,
        };
        // An attempt worth repeating is the loop's "error"; any other ends it.
        let result = retry_within(
            &self.settings.retry,
            bounds,
            |_: &Attempt| Some(ErrorClass::Transient),
            || async {
                let attempt = self.invoke_once(task_id, object).await;
                if attempt.worth_retrying() {
                    Err(attempt)
                } else {
                    Ok(attempt)
                }
            },
        )
        .await
        .unwrap_or_else(|gave_up| {
            let last = gave_up.into_last();
            tracing::warn!(
                job_id = self.job_id,
                task_id,
                result = ?last,
                "giving up on a task after its last attempt"
            );
            last
        });
        self.outcome(object, result)
    }

    fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|deadline| {
            deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default()
        })
    }

    async fn invoke_once(&self, task_id: &str, object: &ObjectRef) -> Attempt {
        let invocation_id = uuid::Uuid::new_v4().to_string();
        let request = self
            .spec
            .request(self.job_id, &invocation_id, task_id, object);
        let payload = match serde_json::to_vec(&request) {
            Ok(payload) => payload,
            Err(err) => {
                return Attempt::Refused(S3Failure {
                    status: Some(400),
                    code: Some("InvalidRequest".into()),
                    message: format!("the invocation event could not be written: {err}"),
                })
            }
        };
        let timeout = self.time_left().map_or(self.settings.timeout, |left| {
            left.min(self.settings.timeout)
        });
        if timeout.is_zero() {
            return Attempt::TimedOut(timeout);
        }
        let result = self
            .lambda
            .invoke()
            .function_name(&self.spec.function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload))
            .customize()
            .config_override(
                aws_sdk_lambda::config::Builder::default()
                    .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build()),
            )
            .send()
            .await;
        match result {
            Ok(out) => {
                let answer = out.payload().map(|p| p.as_ref()).unwrap_or_default();
                Attempt::Judged(match out.function_error() {
                    Some(kind) => judge_function_error(kind, answer),
                    None => judge_answer(answer, task_id),
                })
            }
            Err(err) if timed_out(&err) => Attempt::TimedOut(timeout),
            Err(err @ SdkError::ResponseError(_)) => {
                Attempt::Unread(std::error::Error::source(&err).map_or_else(
                    || "the connection was cut".to_string(),
                    |cause| DisplayErrorContext(cause).to_string(),
                ))
            }
            Err(err) => Attempt::Refused(S3Failure::from_sdk(&err)),
        }
    }

    fn outcome(&self, object: &ObjectRef, attempt: Attempt) -> TaskOutcome {
        let function = &self.spec.function;
        match attempt {
            Attempt::Judged(judgement) => judgement.outcome(object),
            Attempt::Refused(failure) => batchops_core::invoke::call_failed(
                object,
                failure.status.unwrap_or(503),
                failure.code.as_deref().unwrap_or("ServiceUnavailable"),
                format!("Lambda Invoke of {function}: {}", failure.message),
            ),
            Attempt::Unread(error) => batchops_core::invoke::call_failed(
                object,
                502,
                "IncompleteAnswer",
                format!(
                    "Lambda Invoke of {function}: the answer could not be read whole ({error}); the function may have run, so it is not invoked again"
                ),
            ),
            Attempt::TimedOut(timeout) => batchops_core::invoke::call_failed(
                object,
                504,
                "RequestTimeout",
                format!(
                    "Lambda Invoke of {function}: no answer within {:.1} s (BATCHOPS_INVOKE_TIMEOUT_SECONDS, or the worker's deadline); the function may still have run",
                    timeout.as_secs_f64()
                ),
            ),
        }
    }
}
