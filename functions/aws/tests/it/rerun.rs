//! `job rerun`: a new job over exactly the failed tasks of a finished job (read from its
//! completion report, version IDs kept), or over all its tasks; idempotent; refused clearly.

use crate::harness::TestEnv;
use batchops_aws::jobs::{rerun_job, rerun_manifest_key};
use batchops_aws::Error;
use batchops_core::arn::object_arn;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerun_runs_exactly_the_failed_tasks_again_with_their_versions() {
    let env = TestEnv::new().await;
    let good = env.put(&env.src, "ok/one", "one").await;
    // Its only version deleted: fails in both runs, under the same version ID.
    let later = "late/sp ace+plus é";
    // A version that never existed: fails in both runs, under the same version ID.
    let bogus = "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo";
    let awkward = env.put(&env.src, "ok/a,b \"q\"", "awkward").await;
    let missing_version = env.put(&env.src, later, "placeholder").await;
    env.clients
        .s3
        .delete_object()
        .bucket(&env.src)
        .key(later)
        .version_id(&missing_version)
        .send()
        .await
        .unwrap();
    let encoded = "late/sp+ace%2Bplus+%C3%A9";
    // Reports encode a space as %20.
    let reported = "late/sp%20ace%2Bplus%20%C3%A9";
    let manifest = env
        .manifest(
            "rerun",
            &[
                format!("{},ok/one,{good}", env.src),
                format!("{},ok/a%2Cb+%22q%22,{awkward}", env.src),
                format!("{},{encoded},{missing_version}", env.src),
                format!("{},ok/one,{bogus}", env.src),
            ],
        )
        .await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key", "VersionId"]);
    document["Tags"] = json!([{"Key": "team", "Value": "data"}]);
    let first = env.create(document).await;
    env.run_until_idle().await;
    let described = env.describe(&first).await;
    assert_eq!(described.progress_summary.number_of_tasks_failed, 2);

    let rerun = rerun_job(&env.app, &first, true).await.expect("rerun");
    assert!(rerun.created);
    assert_eq!((rerun.tasks, rerun.skipped), (Some(2), Some(0)));
    // The new manifest names the failed tasks with their versions, keys as the report has them.
    let written = env
        .get(&env.app.config.control_bucket, &rerun_manifest_key(&first))
        .await
        .expect("rerun manifest written");
    let mut lines: Vec<String> = String::from_utf8(written)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    let mut expected = vec![
        format!("{},{reported},{missing_version}", env.src),
        format!("{},ok/one,{bogus}", env.src),
    ];
    expected.sort();
    assert_eq!(lines, expected);

    // Asking again answers the same job.
    let again = rerun_job(&env.app, &first, true).await.unwrap();
    assert_eq!(again.job_id, rerun.job_id);
    assert!(!again.created);

    env.run_until_idle().await;
    let second = env.describe(&rerun.job_id).await;
    assert_eq!(second.status, "Complete");
    assert_eq!(second.progress_summary.total_number_of_tasks, 2);
    assert_eq!(second.progress_summary.number_of_tasks_failed, 2);
    assert_eq!(second.operation, described.operation);
    assert_eq!(second.report, described.report);
    let location = &second.manifest.as_ref().unwrap().location;
    assert_eq!(
        location.object_arn,
        object_arn(&env.app.config.control_bucket, &rerun_manifest_key(&first))
    );
    assert_eq!(
        batchops_aws::jobs::get_job_tagging(&env.app, &rerun.job_id)
            .await
            .unwrap()
            .len(),
        1
    );
    // Its report lists the same failed tasks, versions kept (the deleted version is still
    // missing: the rerun copies exactly the version the first job named, not a newer one).
    let audit = env.audit(&rerun.job_id).await;
    let mut failed: Vec<(String, String)> = audit
        .rows
        .iter()
        .map(|r| (r.key_encoded.clone(), r.version_id.clone()))
        .collect();
    failed.sort();
    let mut want = vec![
        (reported.to_string(), missing_version.clone()),
        ("ok/one".to_string(), bogus.to_string()),
    ];
    want.sort();
    assert_eq!(failed, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerun_of_all_tasks_copies_the_manifest_and_refusals_say_why() {
    let env = TestEnv::new().await;
    env.put(&env.src, "a", "1").await;
    let manifest = env
        .manifest(
            "all",
            &[format!("{},a", env.src), format!("{},gone", env.src)],
        )
        .await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["Report"] = json!({"Enabled": false});
    let first = env.create(document).await;

    // Not ended yet.
    match rerun_job(&env.app, &first, false).await {
        Err(Error::State { message, .. }) => {
            assert!(message.contains("once it has ended"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    env.run_until_idle().await;
    // No report: its failed tasks are not known.
    match rerun_job(&env.app, &first, true).await {
        Err(Error::State { message, .. }) => {
            assert!(message.contains("Report.Enabled was false"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The manifest changing after the first job does not change what a full rerun runs.
    env.put(
        &env.src,
        &manifest,
        format!("{},a\n{},b\n{},c\n", env.src, env.src, env.src),
    )
    .await;
    let all = rerun_job(&env.app, &first, false).await.unwrap();
    assert!(all.created);
    assert_eq!(
        rerun_job(&env.app, &first, false).await.unwrap().job_id,
        all.job_id
    );
    env.run_until_idle().await;
    let described = env.describe(&all.job_id).await;
    assert_eq!(
        described.status, "Failed",
        "{:?}",
        described.failure_reasons
    );
    assert_eq!(
        described.failure_reasons[0].failure_code, "ManifestETagMismatch",
        "the rerun reads the first job's manifest or nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerun_of_a_job_without_failures_is_refused_over_http() {
    let env = TestEnv::new().await;
    env.put(&env.src, "a", "1").await;
    let manifest = env.manifest("clean", &[format!("{},a", env.src)]).await;
    let first = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    env.run_to_complete(&first).await;
    let request = batchops_aws::api::ApiRequest {
        method: "POST".into(),
        path: format!("/jobs/{first}/rerun"),
        query: vec![("failedOnly".into(), "true".into())],
        body: Vec::new(),
    };
    let response = batchops_aws::api::handle(&env.app, &request).await;
    assert_eq!(response.status, 409, "{:?}", response.body);
    let message = response.body["Message"].as_str().unwrap();
    assert!(message.contains("no failed tasks"), "{message}");
    let request = batchops_aws::api::ApiRequest {
        query: Vec::new(),
        ..request
    };
    let response = batchops_aws::api::handle(&env.app, &request).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["Created"], true);
}
