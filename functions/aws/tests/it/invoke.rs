//! The LambdaInvoke client against a real Invoke endpoint: the example function
//! (functions/example-invoke) under scripts/lambda_emulator.py, S3 on moto.

use crate::harness::{FaultProxy, InvokeEndpoint, TestEnv, EXAMPLE_FUNCTION};
use batchops_aws::invoke::{InvokeSettings, Invoker};
use batchops_core::backoff::RetryPolicy;
use batchops_core::encoding::encode_key;
use batchops_core::invoke::{InvokeSpec, SchemaVersion};
use batchops_core::manifest::ObjectRef;
use batchops_core::report::{TaskOutcome, TaskStatus};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

fn settings(max_attempts: u32, timeout: Duration) -> InvokeSettings {
    InvokeSettings {
        retry: RetryPolicy {
            max_attempts,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
        },
        timeout,
    }
}

fn spec(function: &str, schema: SchemaVersion, arguments: &[(&str, &str)]) -> InvokeSpec {
    InvokeSpec {
        function: function.to_string(),
        schema,
        user_arguments: arguments
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn object(bucket: &str, key: &str, version: Option<&str>) -> ObjectRef {
    ObjectRef {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version_id: version.map(str::to_string),
    }
}

async fn invoke(
    lambda: &aws_sdk_lambda::Client,
    spec: &InvokeSpec,
    settings: &InvokeSettings,
    task_id: &str,
    object: &ObjectRef,
) -> TaskOutcome {
    invoker(lambda, spec, settings).run(task_id, object).await
}

fn invoker<'a>(
    lambda: &'a aws_sdk_lambda::Client,
    spec: &'a InvokeSpec,
    settings: &'a InvokeSettings,
) -> Invoker<'a> {
    Invoker {
        lambda,
        spec,
        settings,
        job_id: "job-invoke-test",
        start_by: None,
        deadline: None,
        stop: None,
    }
}

fn row(outcome: &TaskOutcome) -> (TaskStatus, u16, Option<&str>, &str) {
    (
        outcome.status,
        outcome.http_status,
        outcome.error_code.as_deref(),
        outcome.message.as_str(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invokes_the_function_per_task_with_either_schema() {
    let env = TestEnv::new().await;
    let endpoint = InvokeEndpoint::start(30.0, &[("EXAMPLE_STATE_BUCKET", &env.reports)]);
    let lambda = endpoint.client(&env.clients);
    let key = "dir/a b+ü%.txt";
    let v1 = env.put(&env.src, key, "first").await;
    env.put(&env.src, key, "second version").await;
    let once = settings(1, Duration::from_secs(20));

    // Schema 1.0 by plain name: the pinned version is HEADed, the key decoded from s3Key.
    let v1_spec = spec(EXAMPLE_FUNCTION, SchemaVersion::V1, &[]);
    let pinned = object(&env.src, key, Some(&v1));
    let outcome = invoke(&lambda, &v1_spec, &once, "t1", &pinned).await;
    let etag = crate::harness::md5_hex(b"first");
    assert_eq!(
        row(&outcome),
        (
            TaskStatus::Succeeded,
            200,
            None,
            format!("size=5 etag={etag}").as_str()
        )
    );
    assert_eq!(outcome.key_encoded, "dir/a%20b%2B%C3%BC%25.txt");
    assert_eq!(outcome.version_id.as_deref(), Some(v1.as_str()));
    let current = invoke(&lambda, &v1_spec, &once, "t2", &object(&env.src, key, None)).await;
    assert!(current.message.starts_with("size=14 "), "{current:?}");

    // Schema 2.0 through the alias, by full ARN: s3Bucket and userArguments reach the function.
    let arn = format!("arn:aws:lambda:us-east-1:000000000000:function:{EXAMPLE_FUNCTION}:live");
    let v2_spec = spec(&arn, SchemaVersion::V2, &[("label", "from-job")]);
    let outcome = invoke(&lambda, &v2_spec, &once, "t3", &pinned).await;
    assert_eq!(
        outcome.message,
        format!("size=5 etag={etag} label=from-job"),
        "{outcome:?}"
    );

    // A missing key and a missing version: the function's PermanentFailure, its resultString.
    let gone = invoke(
        &lambda,
        &v1_spec,
        &once,
        "t4",
        &object(&env.src, "gone.txt", None),
    )
    .await;
    assert_eq!(
        row(&gone),
        (
            TaskStatus::Failed,
            200,
            Some("PermanentFailure"),
            format!("no such object: s3://{}/gone.txt (HTTP 404)", env.src).as_str()
        )
    );

    // A function error: failed with the error payload's type and message.
    let error_key = "function-error.txt";
    env.put(&env.src, error_key, "x").await;
    let failed = invoke(
        &lambda,
        &v1_spec,
        &once,
        "t5",
        &object(&env.src, error_key, None),
    )
    .await;
    assert_eq!(
        row(&failed),
        (
            TaskStatus::Failed,
            200,
            Some("PermanentFailure"),
            "Lambda returned function error (Unhandled): ExampleError: the key `function-error.txt` asks for a function error"
        )
    );

    // An answer for another task: S3's treatMissingKeysAs (the function says PermanentFailure).
    let wrong_key = "wrong-task-id.txt";
    env.put(&env.src, wrong_key, "x").await;
    let wrong = invoke(
        &lambda,
        &v1_spec,
        &once,
        "t6",
        &object(&env.src, wrong_key, None),
    )
    .await;
    assert_eq!(wrong.error_code.as_deref(), Some("PermanentFailure"));
    assert!(
        wrong
            .message
            .contains("no result for task t6 (results only for task not-t6)"),
        "{wrong:?}"
    );

    // A function Lambda does not have, or an alias it does not have: Lambda's 404.
    for missing in ["no-such-function", "example-invoke:staging"] {
        let absent = spec(missing, SchemaVersion::V1, &[]);
        let outcome = invoke(&lambda, &absent, &once, "t7", &pinned).await;
        assert_eq!(
            (
                outcome.status,
                outcome.http_status,
                outcome.error_code.as_deref()
            ),
            (TaskStatus::Failed, 404, Some("ResourceNotFoundException")),
            "{missing}: {outcome:?}"
        );
        assert!(
            outcome
                .message
                .starts_with(&format!("Lambda Invoke of {missing}: Function not found")),
            "{outcome:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temporary_failures_are_retried_up_to_the_bound() {
    let env = TestEnv::new().await;
    let endpoint = InvokeEndpoint::start(30.0, &[("EXAMPLE_STATE_BUCKET", &env.reports)]);
    let lambda = endpoint.client(&env.clients);
    let key = "temporary-failure/x.txt";
    env.put(&env.src, key, "eventually").await;
    let target = object(&env.src, key, None);
    let v1_spec = spec(EXAMPLE_FUNCTION, SchemaVersion::V1, &[]);

    // Two temporary failures (the example's default), then success within 5 attempts.
    let outcome = invoke(
        &lambda,
        &v1_spec,
        &settings(5, Duration::from_secs(20)),
        "retried",
        &target,
    )
    .await;
    assert_eq!(outcome.status, TaskStatus::Succeeded, "{outcome:?}");
    assert!(outcome.message.starts_with("size=10 "), "{outcome:?}");
    let attempts = env
        .get(
            &env.reports,
            "example-invoke/attempts/job-invoke-test/retried",
        )
        .await
        .expect("the function counted its attempts");
    assert_eq!(attempts, b"3", "two temporary failures, then the success");

    // With 2 attempts allowed the bound is reached: the last attempt's answer is the row.
    let v2_spec = spec(
        EXAMPLE_FUNCTION,
        SchemaVersion::V2,
        &[("temporaryFailures", "3")],
    );
    let outcome = invoke(
        &lambda,
        &v2_spec,
        &settings(2, Duration::from_secs(20)),
        "bounded",
        &target,
    )
    .await;
    assert_eq!(
        row(&outcome),
        (
            TaskStatus::Failed,
            200,
            Some("TemporaryFailure"),
            "attempt 2: not yet (this key fails its first 3 attempts)"
        )
    );
    assert_eq!(
        env.get(
            &env.reports,
            "example-invoke/attempts/job-invoke-test/bounded"
        )
        .await,
        Some(b"2".to_vec())
    );

    // A job that is stopping starts no further attempt: the first answer stands.
    let stop = AtomicBool::new(true);
    let five = settings(5, Duration::from_secs(20));
    let stopping = Invoker {
        stop: Some(&stop),
        ..invoker(&lambda, &v1_spec, &five)
    };
    let outcome = stopping.run("stopped", &target).await;
    assert_eq!(outcome.error_code.as_deref(), Some("TemporaryFailure"));
    assert_eq!(
        env.get(
            &env.reports,
            "example-invoke/attempts/job-invoke-test/stopped"
        )
        .await,
        Some(b"1".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeouts_fail_the_task_without_invoking_again() {
    let env = TestEnv::new().await;
    // The function's own timeout (1 s) is shorter than its sleep (2 s): Lambda's timeout error,
    // and the emulator resets the function as Lambda does.
    let endpoint = InvokeEndpoint::start(
        1.0,
        &[
            ("EXAMPLE_STATE_BUCKET", &env.reports),
            ("EXAMPLE_SLOW_SECONDS", "2"),
        ],
    );
    let lambda = endpoint.client(&env.clients);
    env.put(&env.src, "slow.txt", "zzz").await;
    env.put(&env.src, "quick.txt", "hi").await;
    let v1_spec = spec(EXAMPLE_FUNCTION, SchemaVersion::V1, &[]);
    let slow = object(&env.src, "slow.txt", None);
    let outcome = invoke(
        &lambda,
        &v1_spec,
        &settings(5, Duration::from_secs(20)),
        "s1",
        &slow,
    )
    .await;
    assert_eq!(
        row(&outcome),
        (
            TaskStatus::Failed,
            200,
            Some("PermanentFailure"),
            "Lambda returned function error (Unhandled): Sandbox.Timedout: Task timed out after 1.00 seconds"
        )
    );
    let quick = invoke(
        &lambda,
        &v1_spec,
        &settings(1, Duration::from_secs(20)),
        "q1",
        &object(&env.src, "quick.txt", None),
    )
    .await;
    assert_eq!(
        quick.status,
        TaskStatus::Succeeded,
        "the reset function answers again: {quick:?}"
    );

    // batchops' own timeout (0.5 s) is shorter still: a clear failure, and no second attempt
    // (the function may have run).
    let started = Instant::now();
    let outcome = invoke(
        &lambda,
        &v1_spec,
        &settings(5, Duration::from_millis(500)),
        "s2",
        &slow,
    )
    .await;
    assert_eq!(
        (
            outcome.status,
            outcome.http_status,
            outcome.error_code.as_deref()
        ),
        (TaskStatus::Failed, 504, Some("RequestTimeout"))
    );
    assert!(
        outcome.message.contains("no answer within 0.5 s")
            && outcome.message.contains("may still have run"),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "invoked again: {:?}",
        started.elapsed()
    );
}

/// A LambdaInvoke job end to end (planner, workers, finalizer through the local runtime): every
/// task invokes the example function once per attempt, and the report carries its answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lambda_invoke_job_reports_each_tasks_answer() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_INVOKE_MAX_ATTEMPTS", "4"),
        ("BATCHOPS_INVOKE_RETRY_BASE_MS", "10"),
        ("BATCHOPS_CHUNK_SIZE", "4"),
    ])
    .await;
    let endpoint = InvokeEndpoint::start(30.0, &[("EXAMPLE_STATE_BUCKET", &env.reports)]);
    let lambda = endpoint.client(&env.clients);
    let env = env.with_lambda(lambda);

    // Awkward keys, each pinned to its version; one pinned to a version since overwritten.
    let awkward = [
        "with space.txt",
        "plus+sign.txt",
        "percent%25literal%.txt",
        "ünïcödé/日本語/✓.txt",
        "query?x=1&y=2#frag",
        "comma,and\"quote'.txt",
        "trailing space ",
    ];
    let mut lines = Vec::new();
    let mut expected = BTreeMap::new();
    for (i, key) in awkward.iter().enumerate() {
        let body = format!("body {i}");
        let version = env.put(&env.src, key, body.clone()).await;
        lines.push(format!("{},{},{version}", env.src, encode_key(key)));
        let etag = crate::harness::md5_hex(body.as_bytes());
        expected.insert(
            encode_key(key),
            (
                "succeeded",
                "",
                format!("size={} etag={etag} label=nightly", body.len()),
            ),
        );
    }
    let old = env.put(&env.src, "doc.txt", "first version").await;
    env.put(&env.src, "doc.txt", "second, longer version").await;
    lines.push(format!("{},doc.txt,{old}", env.src));
    let etag = crate::harness::md5_hex(b"first version");
    expected.insert(
        "doc.txt".into(),
        (
            "succeeded",
            "",
            format!("size=13 etag={etag} label=nightly"),
        ),
    );
    // A version that no longer exists: the function's PermanentFailure.
    let deleted = env.put(&env.src, "deleted.txt", "gone soon").await;
    env.clients
        .s3
        .delete_object()
        .bucket(&env.src)
        .key("deleted.txt")
        .version_id(&deleted)
        .send()
        .await
        .unwrap();
    lines.push(format!("{},deleted.txt,{deleted}", env.src));
    expected.insert(
        "deleted.txt".into(),
        (
            "failed",
            "PermanentFailure",
            format!("no such object: s3://{}/deleted.txt (HTTP 404)", env.src),
        ),
    );
    // Two TemporaryFailure answers, then success on the third invocation.
    let retried = env.put(&env.src, "temporary-failure.txt", "later").await;
    lines.push(format!("{},temporary-failure.txt,{retried}", env.src));
    let etag = crate::harness::md5_hex(b"later");
    expected.insert(
        "temporary-failure.txt".into(),
        ("succeeded", "", format!("size=5 etag={etag} label=nightly")),
    );
    // A function error: failed, with the error's message.
    let crashing = env.put(&env.src, "function-error.txt", "boom").await;
    lines.push(format!("{},function-error.txt,{crashing}", env.src));
    expected.insert(
        "function-error.txt".into(),
        (
            "failed",
            "PermanentFailure",
            "Lambda returned function error (Unhandled): ExampleError: the key `function-error.txt` asks for a function error".into(),
        ),
    );

    let manifest = env.manifest("invoke", &lines).await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key", "VersionId"]);
    document["Operation"] = serde_json::json!({"LambdaInvoke": {
        "FunctionArn": format!("arn:aws:lambda:us-east-1:000000000000:function:{EXAMPLE_FUNCTION}:live"),
        "InvocationSchemaVersion": "2.0",
        "UserArguments": {"label": "nightly"}
    }});
    let job = env.create(document).await;
    let described = env.run_to_complete(&job).await;
    let total = lines.len() as u64;
    assert_eq!(described.progress_summary.total_number_of_tasks, total);
    assert_eq!(described.progress_summary.number_of_tasks_failed, 2);
    assert_eq!(
        described.progress_summary.number_of_tasks_succeeded,
        total - 2
    );
    assert_eq!(described.progress_summary.number_of_bytes_copied, 0);
    assert_eq!(
        serde_json::to_value(&described.operation).unwrap()["LambdaInvoke"]["UserArguments"]
            ["label"],
        "nightly"
    );
    let listed = batchops_aws::jobs::list_jobs(&env.app, &[]).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|j| (j.job_id.as_str(), j.operation.as_str()))
            .collect::<Vec<_>>(),
        vec![(job.as_str(), "LambdaInvoke")]
    );

    let audit = env.audit(&job).await;
    let rows: BTreeMap<String, (&str, &str, String)> = audit
        .rows
        .iter()
        .map(|r| {
            assert_eq!(r.http_status, "200", "{r:?}");
            assert_eq!(r.bucket, env.src, "{r:?}");
            (
                r.key_encoded.clone(),
                (
                    if r.task_status == "succeeded" {
                        "succeeded"
                    } else {
                        "failed"
                    },
                    if r.error_code.is_empty() {
                        ""
                    } else {
                        "PermanentFailure"
                    },
                    r.message.clone(),
                ),
            )
        })
        .collect();
    assert_eq!(rows, expected);
    assert!(audit
        .rows
        .iter()
        .all(|r| r.task_status == "succeeded" || r.error_code == "PermanentFailure"));
    // Pinned versions are reported as the manifest gave them.
    let doc_row = audit
        .rows
        .iter()
        .find(|r| r.key_encoded == "doc.txt")
        .unwrap();
    assert_eq!(doc_row.version_id, old);

    // The retried task was invoked three times, under one taskId; every other task once.
    let attempts = env
        .clients
        .s3
        .list_objects_v2()
        .bucket(&env.reports)
        .prefix(format!("example-invoke/attempts/{job}/"))
        .send()
        .await
        .unwrap();
    let counters: Vec<String> = attempts
        .contents()
        .iter()
        .map(|o| o.key().unwrap_or_default().to_string())
        .collect();
    assert_eq!(counters.len(), 1, "{counters:?}");
    assert_eq!(
        env.get(&env.reports, &counters[0]).await,
        Some(b"3".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lambda_faults_are_retried_only_when_the_function_did_not_run() {
    let env = TestEnv::new().await;
    let endpoint = InvokeEndpoint::start(30.0, &[("EXAMPLE_STATE_BUCKET", &env.reports)]);
    let key = "temporary-failure/counted.txt";
    env.put(&env.src, key, "x").await;
    let target = object(&env.src, key, None);
    let v1_spec = spec(EXAMPLE_FUNCTION, SchemaVersion::V1, &[]);
    let three = settings(3, Duration::from_secs(20));
    let client = |url: &str| {
        aws_sdk_lambda::Client::from_conf(
            env.clients
                .lambda
                .config()
                .to_builder()
                .endpoint_url(url)
                .build(),
        )
    };

    // Lambda answers 503 without running the function: invoked again, up to the bound.
    let refusing = FaultProxy::start(&endpoint.url, &["--s3-slowdown", "1"]);
    let outcome = invoke(&client(&refusing.url), &v1_spec, &three, "refused", &target).await;
    assert_eq!(
        (outcome.status, outcome.http_status),
        (TaskStatus::Failed, 503),
        "{outcome:?}"
    );
    assert!(
        outcome
            .message
            .starts_with("Lambda Invoke of example-invoke: "),
        "{outcome:?}"
    );
    assert_eq!(
        refusing.counts()["faults"]["s3_slowdown_503"],
        3,
        "one call per attempt"
    );

    // The function ran, but its answer was cut short: not invoked again.
    let cutting = FaultProxy::start(&endpoint.url, &["--cut-s3", "1"]);
    let outcome = invoke(&client(&cutting.url), &v1_spec, &three, "cut", &target).await;
    assert_eq!(cutting.counts()["faults"]["cut_s3"], 1, "{outcome:?}");
    assert_eq!(
        env.get(&env.reports, "example-invoke/attempts/job-invoke-test/cut")
            .await,
        Some(b"1".to_vec()),
        "the function ran once"
    );
    assert_eq!(
        (
            outcome.status,
            outcome.http_status,
            outcome.error_code.as_deref()
        ),
        (TaskStatus::Failed, 502, Some("IncompleteAnswer")),
        "{outcome:?}"
    );
    assert!(outcome.message.contains("may have run"), "{outcome:?}");
}

/// A LambdaInvoke job whose function (or its alias) does not exist fails at preparation, before
/// any task runs, naming the function; Lambda is asked with a DryRun Invoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_whose_function_cannot_be_invoked_fails_before_any_task() {
    let env = TestEnv::new().await;
    let endpoint = InvokeEndpoint::start(30.0, &[("EXAMPLE_STATE_BUCKET", &env.reports)]);
    let lambda = endpoint.client(&env.clients);
    let env = env.with_lambda(lambda);
    env.put(&env.src, "a", "1").await;
    let manifest = env.manifest("missing", &[format!("{},a", env.src)]).await;
    for function in [
        "arn:aws:lambda:us-east-1:000000000000:function:no-such-function".to_string(),
        format!("arn:aws:lambda:us-east-1:000000000000:function:{EXAMPLE_FUNCTION}:no-such-alias"),
    ] {
        let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
        document["Operation"] = serde_json::json!({"LambdaInvoke": {
            "FunctionArn": function, "InvocationSchemaVersion": "2.0"}});
        let job = env.create(document).await;
        env.run_until_idle().await;
        let described = env.describe(&job).await;
        assert_eq!(described.status, "Failed", "{function}");
        let reason = &described.failure_reasons[0];
        assert_eq!(reason.failure_code, "ResourceNotFoundException");
        assert!(
            reason
                .failure_reason
                .contains(&format!("function `{function}` cannot be invoked"))
                && reason
                    .failure_reason
                    .contains("Operation.LambdaInvoke.FunctionArn"),
            "{reason:?}"
        );
        let progress = &described.progress_summary;
        assert_eq!(
            progress.number_of_tasks_succeeded + progress.number_of_tasks_failed,
            0,
            "{function}: no task ran"
        );
    }
}
