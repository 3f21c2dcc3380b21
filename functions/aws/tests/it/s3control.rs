//! `batchops serve` over real HTTP: its JSON routes, and S3 Control's XML job API driven by
//! boto3's `s3control` client and the AWS CLI, unchanged (s3control_clients.py), with the same
//! answers the JSON routes give.

use crate::api::call;
use crate::harness::TestEnv;
use batchops_aws::runtime::{run, RunOptions};
use batchops_aws::s3control::sigv4::Credentials;
use batchops_aws::serve::{serve, ServeOptions};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts `serve` for `env` on a free loopback port; it stops when the test's runtime ends.
async fn start_serve(env: &TestEnv, credentials: Option<Credentials>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(serve(
        env.app.clone(),
        listener,
        ServeOptions { credentials },
    ));
    address
}

/// One HTTP/1.1 request on a connection of its own: (status, headers as text, body).
async fn http(
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head[9..12].parse().expect("a status code");
    (status, head, response[split + 4..].to_vec())
}

fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_answers_the_json_routes_over_http() {
    let env = TestEnv::new().await;
    env.put(&env.src, "a", "1").await;
    let manifest = env.manifest("serve", &[format!("{},a", env.src)]).await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["ConfirmationRequired"] = json!(true);
    let address = start_serve(&env, None).await;

    let (status, head, body) = http(
        address,
        "POST",
        "/jobs",
        &[],
        document.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(head.contains("Content-Type: application/json"), "{head}");
    let job = json_body(&body)["JobId"]
        .as_str()
        .expect("JobId")
        .to_string();

    let (status, _, body) = http(address, "GET", &format!("/jobs/{job}"), &[], b"").await;
    assert_eq!(status, 200);
    let described = json_body(&body);
    assert_eq!(described["Job"]["JobId"], job.as_str());
    // The same document the in-process API gives.
    let direct = call(&env, "GET", &format!("/jobs/{job}"), &[], Value::Null).await;
    assert_eq!(
        described["Job"]["Operation"],
        direct.body["Job"]["Operation"]
    );
    assert_eq!(described["Job"]["Status"], direct.body["Job"]["Status"]);

    // Query parameters are decoded (`+` and %20 are spaces) and repeats kept.
    let (status, _, body) = http(
        address,
        "GET",
        "/jobs?jobStatuses=New&jobStatuses=Suspended%2CPreparing&maxResults=5",
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let listed: Vec<Value> = json_body(&body)["Jobs"].as_array().expect("Jobs").clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let (status, _, body) = http(
        address,
        "POST",
        &format!(
            "/jobs/{job}/status?requestedJobStatus=Cancelled&statusUpdateReason=not+needed%20now"
        ),
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_body(&body)["StatusUpdateReason"], "not needed now");

    // The job center page, as the api Lambda serves it.
    let (status, head, body) = http(address, "GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    assert!(head.contains("Content-Type: text/html"), "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains(&job),
        "the page lists the job"
    );

    // Errors keep their status and JSON shape.
    let (status, _, body) = http(address, "GET", "/jobs/no-such-job", &[], b"").await;
    assert_eq!(status, 404);
    assert_eq!(json_body(&body)["Code"], "NoSuchJob");
    let (status, _, body) = http(address, "GET", "/nowhere", &[], b"").await;
    assert_eq!(
        (status, json_body(&body)["Code"].clone()),
        (404, json!("NotFound"))
    );

    // S3 Control calls need a signature, and serve was given no key: refused in S3's XML.
    let (status, head, body) = http(
        address,
        "GET",
        "/v20180820/jobs",
        &[("x-amz-account-id", "123456789012")],
        b"",
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{body}");
    assert!(head.contains("Content-Type: application/xml"), "{head}");
    assert!(body.contains("<Error><Code>AccessDenied</Code>"), "{body}");
    assert!(body.contains("--access-key-id"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_refuses_unsigned_s3_control_calls() {
    let env = TestEnv::new().await;
    let credentials = Credentials {
        access_key_id: "AKIDSERVE".into(),
        secret_access_key: "serve-secret".into(),
    };
    let address = start_serve(&env, Some(credentials)).await;
    let (status, _, body) = http(
        address,
        "GET",
        "/v20180820/jobs",
        &[("x-amz-account-id", "123456789012")],
        b"",
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    let forged = "AWS4-HMAC-SHA256 Credential=AKIDSERVE/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
    let (status, _, body) = http(
        address,
        "GET",
        "/v20180820/jobs",
        &[
            ("authorization", forged),
            ("x-amz-date", "20260101T000000Z"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ],
        b"",
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("<Code>RequestTimeTooSkewed</Code>"), "{body}");
}

fn python() -> String {
    std::env::var("BATCHOPS_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/../../.venv/bin/python", env!("CARGO_MANIFEST_DIR")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boto3_and_the_aws_cli_drive_jobs_on_serve() {
    let env = TestEnv::new().await;
    let account = "123456789012";
    for key in ["one", "two"] {
        env.put(&env.src, key, key).await;
    }
    let manifest = env
        .manifest(
            "clients",
            &[format!("{},one", env.src), format!("{},two", env.src)],
        )
        .await;
    // S3 Control's model requires the manifest's ETag.
    let etag = env
        .clients
        .s3
        .head_object()
        .bucket(&env.src)
        .key(&manifest)
        .send()
        .await
        .expect("head manifest")
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    let job_document = |token: &str| {
        let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
        document["Manifest"]["Location"]["ETag"] = json!(etag);
        let object = document.as_object_mut().expect("an object");
        object.remove("AccountId");
        object.insert("ConfirmationRequired".into(), json!(true));
        object.insert("ClientRequestToken".into(), json!(token));
        object.insert("Description".into(), json!(format!("via {token} <&>")));
        document
    };
    let mut cli_document = job_document("aws-cli");
    cli_document["AccountId"] = json!(account);
    let credentials = Credentials {
        access_key_id: "AKIDSERVE".into(),
        secret_access_key: "serve-secret".into(),
    };
    let address = start_serve(&env, Some(credentials)).await;
    // The planner, workers and finalizer, as `batchops run` beside `serve`.
    let runtime = tokio::spawn(run(
        env.app.clone(),
        RunOptions {
            until_idle: false,
            concurrency: 2,
            sweep_interval: Duration::from_millis(200),
            max_duration: Some(Duration::from_secs(240)),
        },
    ));
    let scratch = tempfile::tempdir().expect("tempdir");
    let script = format!(
        "{}/tests/it/s3control_clients.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut command = std::process::Command::new(python());
    command
        .arg(&script)
        .env("SERVE_ENDPOINT", format!("http://{address}"))
        .env("ACCOUNT_ID", account)
        .env("SERVE_ACCESS_KEY_ID", "AKIDSERVE")
        .env("SERVE_SECRET_ACCESS_KEY", "serve-secret")
        .env("BOTO3_JOB", job_document("boto3").to_string())
        .env("CLI_JOB", cli_document.to_string())
        .env("CLI_JOB_FILE", scratch.path().join("job.json"));
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run python (the project's .venv, or BATCHOPS_TEST_PYTHON)");
    runtime.abort();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let got = json_body(&output.stdout);
    let job = got["boto3_job"].as_str().expect("boto3_job").to_string();
    let cli_job = got["cli_job"].as_str().expect("cli_job").to_string();

    // What boto3 saw is what the JSON routes say, field for field where S3 has the field.
    let direct = call(&env, "GET", &format!("/jobs/{job}"), &[], Value::Null).await;
    let direct = &direct.body["Job"];
    let seen = &got["complete"];
    assert_eq!(seen["Status"], "Complete", "{seen}");
    for field in [
        "JobId",
        "JobArn",
        "Status",
        "Priority",
        "Description",
        "Operation",
        "Manifest",
        "Report",
        "RoleArn",
        "ConfirmationRequired",
        "StatusUpdateReason",
        "FailureReasons",
    ] {
        assert_eq!(seen[field], direct[field], "{field}");
    }
    for field in [
        "TotalNumberOfTasks",
        "NumberOfTasksSucceeded",
        "NumberOfTasksFailed",
    ] {
        assert_eq!(
            seen["ProgressSummary"][field], direct["ProgressSummary"][field],
            "{field}"
        );
    }
    assert_eq!(seen["ProgressSummary"]["NumberOfTasksSucceeded"], 2);
    assert_eq!(seen["Description"], "via boto3 <&>");
    assert_eq!(got["suspended"]["Status"], "Suspended");
    assert_eq!(got["priority"], 42);
    // Another account's view of the job: not found, as S3 Control answers.
    assert_eq!(got["other_account"][0], "NotFoundException", "{got}");
    assert_eq!(got["other_account"][1], 404);
    assert_eq!(seen["Priority"], 42);
    assert_eq!(
        got["tags"],
        json!([{"Key": "team", "Value": "storage + backup"}, {"Key": "ticket", "Value": "14"}])
    );
    assert_eq!(got["tags_after_delete"], json!([]));
    assert_eq!(got["listed_suspended"], json!([job]));
    assert_eq!(
        got["confirmed"],
        json!({"JobId": job, "Status": "Ready", "StatusUpdateReason": "checked"})
    );
    assert_eq!(env.get(&env.dst, "copied/two").await, Some(b"two".to_vec()));

    // The AWS CLI's job: described, re-prioritised, cancelled, listed page by page.
    assert_eq!(got["cli_suspended"]["Description"], "via aws-cli <&>");
    assert_eq!(got["cli_priority"], 7);
    assert_eq!(got["cli_cancel"]["JobId"], cli_job.as_str());
    let cancelled = call(&env, "GET", &format!("/jobs/{cli_job}"), &[], Value::Null).await;
    assert_eq!(got["cli_cancelled"]["Status"], "Cancelled");
    assert_eq!(cancelled.body["Job"]["Status"], "Cancelled");
    assert_eq!(
        got["cli_cancelled"]["StatusUpdateReason"],
        cancelled.body["Job"]["StatusUpdateReason"]
    );
    let mut both = vec![job.clone(), cli_job.clone()];
    both.sort();
    assert_eq!(got["cli_listed"], json!(both));
    assert_eq!(got["first_page"].as_array().map(Vec::len), Some(1));
    assert_eq!(got["first_page_has_next"], true);
    assert_eq!(got["cli_listed_cancelled"], json!([cli_job]));

    // Errors as the SDK raises them: S3 Control's codes, statuses and batchops' messages.
    assert_eq!(got["missing_job"][0], "NotFoundException");
    assert_eq!(got["missing_job"][1], 404);
    assert_eq!(got["confirm_complete"][0], "JobStatusException");
    assert_eq!(got["bad_target"][0], "BadRequestException");
    assert_eq!(got["bad_target"][1], 400);
    assert!(
        got["bad_target"][2]
            .as_str()
            .unwrap_or_default()
            .contains("TargetResource"),
        "{}",
        got["bad_target"]
    );
    assert_eq!(got["wrong_secret"][0], "SignatureDoesNotMatch");
    assert_eq!(got["wrong_secret"][1], 403);
}
