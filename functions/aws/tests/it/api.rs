//! The HTTP API's routes against moto: the same calls as the CLI, in S3 Control's shapes, with
//! errors that say what was wrong.

use crate::harness::TestEnv;
use batchops_aws::api::{handle, ApiRequest, ApiResponse};
use serde_json::{json, Value};

pub(crate) async fn call(
    env: &TestEnv,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Value,
) -> ApiResponse {
    let request = ApiRequest {
        method: method.into(),
        path: path.into(),
        query: query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        },
    };
    // Boxed: a route's future is large in debug builds, and each call's would otherwise sit in
    // the test's own stack frame (a test with many calls outgrows the thread's 2 MiB stack).
    Box::pin(handle(&env.app, &request)).await
}

pub(crate) fn assert_error(response: &ApiResponse, status: u16, code: &str, message_part: &str) {
    assert_eq!(response.status, status, "{:?}", response.body);
    assert_eq!(response.body["Code"], code, "{:?}", response.body);
    let message = response.body["Message"].as_str().unwrap_or_default();
    assert!(message.contains(message_part), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_are_created_confirmed_prioritised_listed_and_described_over_http() {
    let env = TestEnv::new().await;
    env.put(&env.src, "a b", "1").await;
    let manifest = env.manifest("api", &[format!("{},a+b", env.src)]).await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["ConfirmationRequired"] = json!(true);

    let created = call(&env, "POST", "/jobs", &[], document.clone()).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let job = created.body["JobId"].as_str().unwrap().to_string();
    env.run_until_idle().await;
    let described = call(&env, "GET", &format!("/jobs/{job}"), &[], Value::Null).await;
    assert_eq!(described.body["Job"]["Status"], "Suspended");

    let priority = call(
        &env,
        "POST",
        &format!("/jobs/{job}/priority"),
        &[("priority", "42")],
        Value::Null,
    )
    .await;
    assert_eq!(priority.body, json!({"JobId": job, "Priority": 42}));
    let confirmed = call(
        &env,
        "POST",
        &format!("/jobs/{job}/status"),
        &[
            ("requestedJobStatus", "Ready"),
            ("statusUpdateReason", "ok by me"),
        ],
        Value::Null,
    )
    .await;
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
    assert_eq!(confirmed.body["Status"], "Ready");
    let done = env.run_to_complete(&job).await;
    assert_eq!(done.priority, 42);
    assert_eq!(env.get(&env.dst, "copied/a b").await, Some(b"1".to_vec()));

    let listed = call(
        &env,
        "GET",
        "/jobs",
        &[("jobStatuses", "Complete,Failed")],
        Value::Null,
    )
    .await;
    let ids: Vec<&str> = listed.body["Jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["JobId"].as_str())
        .collect();
    assert_eq!(ids, vec![job.as_str()]);

    // Pages: two more jobs, listed two at a time, newest first, each once.
    let mut created_ids = vec![job.clone()];
    for n in 0..2 {
        // A new token each: the same token would return the first job again.
        document["ClientRequestToken"] = json!(format!("more-jobs-{n}"));
        let more = call(&env, "POST", "/jobs", &[], document.clone()).await;
        created_ids.push(more.body["JobId"].as_str().unwrap().to_string());
    }
    let first = call(&env, "GET", "/jobs", &[("maxResults", "2")], Value::Null).await;
    let token = first.body["NextToken"]
        .as_str()
        .expect("a next page")
        .to_string();
    let second = call(
        &env,
        "GET",
        "/jobs",
        &[("maxResults", "2"), ("nextToken", &token)],
        Value::Null,
    )
    .await;
    assert!(second.body.get("NextToken").is_none(), "{:?}", second.body);
    let paged: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|page| page.body["Jobs"].as_array().unwrap().clone())
        .map(|j| j["JobId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paged.len(), 3, "{paged:?}");
    created_ids.reverse();
    assert_eq!(paged, created_ids, "newest first");
    let bad_token = call(
        &env,
        "GET",
        "/jobs",
        &[("nextToken", "garbage!")],
        Value::Null,
    )
    .await;
    assert_error(&bad_token, 400, "InvalidRequest", "NextToken");
    let zero = call(&env, "GET", "/jobs", &[("maxResults", "0")], Value::Null).await;
    assert_error(&zero, 400, "InvalidRequest", "maxResults");

    // What is wrong is named: the field, the job, the status, the route.
    document["Operation"]["S3PutObjectCopy"]["StorageKlass"] = json!("STANDARD");
    let refused = call(&env, "POST", "/jobs", &[], document).await;
    assert_error(&refused, 400, "InvalidRequest", "StorageKlass");
    for required in ["RoleArn", "ClientRequestToken"] {
        let mut incomplete = env.request_json(&manifest, &["Bucket", "Key"]);
        incomplete.as_object_mut().unwrap().remove(required);
        let refused = call(&env, "POST", "/jobs", &[], incomplete).await;
        assert_error(&refused, 400, "InvalidRequest", required);
    }
    let missing = call(&env, "GET", "/jobs/no-such-job", &[], Value::Null).await;
    assert_error(&missing, 404, "NoSuchJob", "no-such-job");
    let too_late = call(
        &env,
        "POST",
        &format!("/jobs/{job}/status"),
        &[("requestedJobStatus", "Cancelled")],
        Value::Null,
    )
    .await;
    assert_error(&too_late, 409, "JobStatusException", &job);
    let no_status = call(
        &env,
        "POST",
        &format!("/jobs/{job}/status"),
        &[],
        Value::Null,
    )
    .await;
    assert_error(&no_status, 400, "InvalidRequest", "requestedJobStatus");
    let bad_filter = call(
        &env,
        "GET",
        "/jobs",
        &[("jobStatuses", "Done")],
        Value::Null,
    )
    .await;
    assert_error(&bad_filter, 400, "InvalidRequest", "`Done`");
    let wrong_method = call(&env, "DELETE", &format!("/jobs/{job}"), &[], Value::Null).await;
    assert_error(&wrong_method, 405, "MethodNotAllowed", "DELETE");
    let nowhere = call(&env, "GET", "/nowhere", &[], Value::Null).await;
    assert_error(&nowhere, 404, "NotFound", "/nowhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_policies_run_list_snapshots_and_restore_over_http() {
    let env = TestEnv::new().await;
    env.put(&env.src, "data/k", "v1").await;
    let policy = json!({
        "name": "web", "source": {"bucket": env.src, "prefix": "data/"},
        "destination": {"bucket": env.dst, "prefix": "vault/"}, "retention": {"keepLast": 3}
    });
    let put = call(&env, "PUT", "/backup-policies/web", &[], policy.clone()).await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let got = call(&env, "GET", "/backup-policies/web", &[], Value::Null).await;
    assert_eq!(got.body["policy"]["retention"]["keepLast"], 3);
    let listed = call(&env, "GET", "/backup-policies", &[], Value::Null).await;
    assert_eq!(listed.body["policies"].as_array().unwrap().len(), 1);

    let run = call(&env, "POST", "/backup-policies/web/runs", &[], Value::Null).await;
    let job = run.body["jobId"].as_str().unwrap().to_string();
    env.run_to_complete(&job).await;
    let snapshots = call(
        &env,
        "GET",
        "/backup-policies/web/snapshots",
        &[],
        Value::Null,
    )
    .await;
    let snapshot = snapshots.body["snapshots"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    env.put(&env.src, "data/k", "v2").await;
    // The reports bucket is not versioned: restoring there must be asked for.
    let to = format!("s3://{}/restored/", env.reports);
    let refused = call(
        &env,
        "POST",
        "/backup-policies/web/restores",
        &[],
        json!({"snapshot": snapshot, "to": to}),
    )
    .await;
    assert_error(&refused, 400, "InvalidRequest", "allowOverwrite");
    let restore = call(
        &env,
        "POST",
        "/backup-policies/web/restores",
        &[],
        json!({"snapshot": snapshot, "to": to, "allowOverwrite": true}),
    )
    .await;
    assert_eq!(restore.status, 200, "{:?}", restore.body);
    env.run_to_complete(restore.body["jobId"].as_str().unwrap())
        .await;
    assert_eq!(
        env.get(&env.reports, "restored/data/k").await,
        Some(b"v1".to_vec())
    );

    // A name that disagrees with the path, a bad field, an unknown policy, a bad restore body.
    let mut renamed = policy.clone();
    renamed["name"] = json!("other");
    let mismatch = call(&env, "PUT", "/backup-policies/web", &[], renamed).await;
    assert_error(&mismatch, 400, "InvalidRequest", "`other`");
    let mut bad = policy.clone();
    bad["retention"]["keepLast"] = json!("thirty");
    let invalid = call(&env, "PUT", "/backup-policies/web", &[], bad).await;
    assert_error(&invalid, 400, "InvalidRequest", "retention.keepLast");
    let not_a_flag = call(
        &env,
        "POST",
        "/backup-policies/web/runs",
        &[("full", "yes")],
        Value::Null,
    )
    .await;
    assert_error(&not_a_flag, 400, "InvalidRequest", "full");
    // After an incremental run that takes data/k v2, a full one copies it again.
    let incremental = call(&env, "POST", "/backup-policies/web/runs", &[], Value::Null).await;
    env.run_to_complete(incremental.body["jobId"].as_str().unwrap())
        .await;
    let full = call(
        &env,
        "POST",
        "/backup-policies/web/runs",
        &[("full", "true")],
        Value::Null,
    )
    .await;
    let described = env
        .run_to_complete(full.body["jobId"].as_str().unwrap())
        .await;
    assert_eq!(
        described.progress_summary.total_number_of_tasks, 1,
        "a full run reads no previous snapshot"
    );
    let unknown = call(&env, "POST", "/backup-policies/nope/runs", &[], Value::Null).await;
    assert_error(&unknown, 404, "NoSuchBackupPolicy", "nope");
    let typo = call(
        &env,
        "POST",
        "/backup-policies/web/restores",
        &[],
        json!({"Snapshott": "x"}),
    )
    .await;
    assert_error(&typo, 400, "InvalidRequest", "Snapshott");

    let deleted = call(&env, "DELETE", "/backup-policies/web", &[], Value::Null).await;
    assert_eq!(deleted.status, 200);
    let gone = call(&env, "GET", "/backup-policies/web", &[], Value::Null).await;
    assert_error(&gone, 404, "NoSuchBackupPolicy", "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_tags_are_kept_put_read_and_deleted_over_http() {
    let env = TestEnv::new().await;
    env.put(&env.src, "t", "1").await;
    let manifest = env.manifest("tags", &[format!("{},t", env.src)]).await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["ConfirmationRequired"] = json!(true);
    document["Tags"] = json!([{"Key": "team", "Value": "data"}]);
    let created = call(&env, "POST", "/jobs", &[], document).await;
    let job = created.body["JobId"].as_str().unwrap().to_string();
    let path = format!("/jobs/{job}/tagging");

    // The CreateJob document's tags are the job's tags.
    let got = call(&env, "GET", &path, &[], Value::Null).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(
        got.body,
        json!({"Tags": [{"Key": "team", "Value": "data"}]})
    );

    let tags = json!([{"Key": "cost-centre", "Value": "42"}, {"Key": "owner", "Value": ""}]);
    let put = call(&env, "PUT", &path, &[], json!({"Tags": tags})).await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let got = call(&env, "GET", &path, &[], Value::Null).await;
    assert_eq!(got.body["Tags"], tags);

    // Refused as S3 Control refuses them, naming the tag; the stored set is unchanged.
    let too_many: Vec<Value> = (0..51)
        .map(|i| json!({"Key": format!("k{i}"), "Value": "v"}))
        .collect();
    let refused = call(&env, "PUT", &path, &[], json!({"Tags": too_many})).await;
    assert_error(&refused, 400, "InvalidRequest", "at most 50 tags");
    let long_key = json!({"Tags": [{"Key": "k".repeat(129), "Value": "v"}]});
    let refused = call(&env, "PUT", &path, &[], long_key).await;
    assert_error(&refused, 400, "InvalidRequest", "Tags[0].Key");
    let refused = call(&env, "PUT", &path, &[], json!({"Tagz": []})).await;
    assert_error(&refused, 400, "InvalidRequest", "Tagz");
    assert_eq!(
        call(&env, "GET", &path, &[], Value::Null).await.body["Tags"],
        tags
    );

    let deleted = call(&env, "DELETE", &path, &[], Value::Null).await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    let got = call(&env, "GET", &path, &[], Value::Null).await;
    assert_eq!(got.body, json!({"Tags": []}));

    let missing = call(&env, "GET", "/jobs/no-such-job/tagging", &[], Value::Null).await;
    assert_error(&missing, 404, "NoSuchJob", "no-such-job");
    let wrong = call(&env, "POST", &path, &[], Value::Null).await;
    assert_eq!(wrong.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_job_is_confirmed_over_http_only_with_its_task_count() {
    let env = TestEnv::new().await;
    let version = env.put(&env.src, "gone soon", "1").await;
    let manifest = env
        .manifest("api-delete", &[format!("{},gone+soon,{version}", env.src)])
        .await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key", "VersionId"]);
    document["Operation"] = json!({"Batchops": {"Delete": {}}});
    let created = call(&env, "POST", "/jobs", &[], document).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let job = created.body["JobId"].as_str().unwrap().to_string();
    env.run_until_idle().await;
    let path = format!("/jobs/{job}/status");
    let unconfirmed = call(
        &env,
        "POST",
        &path,
        &[("requestedJobStatus", "Ready")],
        Value::Null,
    )
    .await;
    assert_error(
        &unconfirmed,
        409,
        "JobStatusException",
        "confirmTaskCount=1",
    );
    let not_a_count = call(
        &env,
        "POST",
        &path,
        &[("requestedJobStatus", "Ready"), ("confirmTaskCount", "all")],
        Value::Null,
    )
    .await;
    assert_error(&not_a_count, 400, "InvalidRequest", "confirmTaskCount");
    let confirmed = call(
        &env,
        "POST",
        &path,
        &[("requestedJobStatus", "Ready"), ("confirmTaskCount", "1")],
        Value::Null,
    )
    .await;
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
    env.run_to_complete(&job).await;
    assert_eq!(env.get(&env.src, "gone soon").await, None);
}
