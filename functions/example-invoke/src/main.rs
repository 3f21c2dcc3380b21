//! An example function for `LambdaInvoke` jobs, written to S3 Batch Operations' contract (so it
//! runs under S3 as under batchops): it reads invocation schema 1.0 or 2.0, HEADs each task's
//! object (pinned to the task's version) and answers per task:
//!
//! - `Succeeded`, resultString `size=<bytes> etag=<etag>` (plus ` label=<value>` when the job's
//!   2.0 `userArguments` carry a `label`);
//! - `PermanentFailure` with S3's error when the object or version is missing;
//! - `TemporaryFailure` for a key containing `temporary-failure`, on the task's first N
//!   invocations (N: `userArguments.temporaryFailures`, else `EXAMPLE_TEMPORARY_FAILURES`, else
//!   2), counted per task in an S3 object `example-invoke/attempts/<jobId>/<taskId>` in
//!   `EXAMPLE_STATE_BUCKET` (else the task's bucket);
//! - a function error (the handler fails) for a key containing `function-error`;
//! - an answer naming another task for a key containing `wrong-task-id`;
//! - the same answers after sleeping `EXAMPLE_SLOW_SECONDS` (default 5) for a key containing
//!   `slow`.
//!
//! Not part of the stack (template.yaml does not deploy it); tests and `scripts/demo.sh` run it
//! under `scripts/lambda_emulator.py --invoke-port`.

use aws_config::BehaviorVersion;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use batchops_core::encoding::decode_key;
use batchops_core::invoke::{
    InvocationJob, InvocationRequest, InvocationResponse, InvocationTask, ResultCode, TaskResult,
};
use lambda_runtime::{run, service_fn, Diagnostic, LambdaEvent};
use std::time::Duration;

const STATE_PREFIX: &str = "example-invoke/attempts";

struct Settings {
    state_bucket: Option<String>,
    temporary_failures: u32,
    slow: Duration,
}

impl Settings {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Settings {
            state_bucket: var("EXAMPLE_STATE_BUCKET"),
            temporary_failures: var("EXAMPLE_TEMPORARY_FAILURES")
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
            slow: Duration::from_secs_f64(
                var("EXAMPLE_SLOW_SECONDS")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(5.0),
            ),
        }
    }
}

fn function_error(error_type: &str, message: String) -> Diagnostic {
    Diagnostic {
        error_type: error_type.to_string(),
        error_message: message,
    }
}

/// Counts this invocation of the task and returns its number (1 for the first). A
/// read-modify-write: S3 Batch Operations invokes one task at a time, so that is enough here.
async fn count_attempt(
    s3: &Client,
    bucket: &str,
    job_id: &str,
    task_id: &str,
) -> Result<u32, Diagnostic> {
    let key = format!("{STATE_PREFIX}/{job_id}/{task_id}");
    let previous = match s3.get_object().bucket(bucket).key(&key).send().await {
        Ok(out) => {
            let body = out
                .body
                .collect()
                .await
                .map_err(|e| function_error("StateError", format!("reading {key}: {e}")))?;
            String::from_utf8_lossy(&body.into_bytes())
                .trim()
                .parse()
                .unwrap_or(0)
        }
        Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => 0,
        Err(err) => {
            return Err(function_error(
                "StateError",
                format!("reading s3://{bucket}/{key}: {err:?}"),
            ))
        }
    };
    let attempt = previous + 1;
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .body(ByteStream::from(attempt.to_string().into_bytes()))
        .send()
        .await
        .map_err(|e| function_error("StateError", format!("writing s3://{bucket}/{key}: {e:?}")))?;
    Ok(attempt)
}

fn answer(task: &InvocationTask, code: ResultCode, message: String) -> TaskResult {
    TaskResult {
        task_id: task.task_id.clone(),
        result_code: code,
        result_string: Some(message),
    }
}

async fn run_task(
    s3: &Client,
    settings: &Settings,
    job: &InvocationJob,
    task: &InvocationTask,
) -> Result<TaskResult, Diagnostic> {
    // S3 sends keys URL-encoded, as they stand in the manifest.
    let key = decode_key(&task.s3_key).map_err(|e| {
        function_error(
            "BadTask",
            format!("task {}: s3Key `{}`: {e}", task.task_id, task.s3_key),
        )
    })?;
    let bucket = task.bucket().ok_or_else(|| {
        function_error(
            "BadTask",
            format!(
                "task {} names no bucket (s3Bucket or s3BucketArn)",
                task.task_id
            ),
        )
    })?;
    if key.contains("slow") {
        tokio::time::sleep(settings.slow).await;
    }
    if key.contains("function-error") {
        return Err(function_error(
            "ExampleError",
            format!("the key `{key}` asks for a function error"),
        ));
    }
    if key.contains("wrong-task-id") {
        let mut wrong = answer(
            task,
            ResultCode::Succeeded,
            "answered for another task".into(),
        );
        wrong.task_id = format!("not-{}", task.task_id);
        return Ok(wrong);
    }
    if key.contains("temporary-failure") {
        let failures = job
            .user_arguments
            .get("temporaryFailures")
            .and_then(|v| v.parse().ok())
            .unwrap_or(settings.temporary_failures);
        let state_bucket = settings.state_bucket.as_deref().unwrap_or(&bucket);
        let attempt = count_attempt(s3, state_bucket, &job.id, &task.task_id).await?;
        if attempt <= failures {
            return Ok(answer(
                task,
                ResultCode::TemporaryFailure,
                format!(
                    "attempt {attempt}: not yet (this key fails its first {failures} attempts)"
                ),
            ));
        }
    }
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .set_version_id(task.s3_version_id.clone())
        .send()
        .await;
    Ok(match head {
        Ok(head) => {
            let mut message = format!(
                "size={} etag={}",
                head.content_length().unwrap_or(0),
                head.e_tag().unwrap_or_default().trim_matches('"')
            );
            if let Some(label) = job.user_arguments.get("label") {
                message.push_str(&format!(" label={label}"));
            }
            answer(task, ResultCode::Succeeded, message)
        }
        Err(err) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let message = match status {
                Some(404) => format!("no such object: s3://{bucket}/{key} (HTTP 404)"),
                Some(403) => format!("access denied to s3://{bucket}/{key} (HTTP 403)"),
                // Throttling and server errors may pass: worth another invocation.
                Some(429) | Some(500..=599) | None => {
                    return Ok(answer(
                        task,
                        ResultCode::TemporaryFailure,
                        format!("HEAD s3://{bucket}/{key}: {err}"),
                    ))
                }
                Some(other) => format!("HEAD s3://{bucket}/{key}: HTTP {other}"),
            };
            answer(task, ResultCode::PermanentFailure, message)
        }
    })
}

async fn handle(
    s3: &Client,
    settings: &Settings,
    event: LambdaEvent<InvocationRequest>,
) -> Result<InvocationResponse, Diagnostic> {
    let request = event.payload;
    let mut results = Vec::with_capacity(request.tasks.len());
    for task in &request.tasks {
        results.push(run_task(s3, settings, &request.job, task).await?);
    }
    Ok(InvocationResponse {
        invocation_schema_version: Some(request.invocation_schema_version.as_str().to_string()),
        treat_missing_keys_as: Some(ResultCode::PermanentFailure),
        invocation_id: Some(request.invocation_id),
        results,
    })
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .without_time()
        .init();
    let shared = aws_config::load_defaults(BehaviorVersion::latest()).await;
    // A local stack (AWS_ENDPOINT_URL) serves buckets by path, not by host name.
    let local = std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty());
    let s3 = Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(local)
            .build(),
    );
    let settings = Settings::from_env();
    let (s3, settings) = (&s3, &settings);
    run(service_fn(move |event| handle(s3, settings, event))).await
}
