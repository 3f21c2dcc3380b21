//! The job center page against moto: the overview lists jobs with their progress and policies
//! with their snapshots; a job's page shows the first failed tasks from its report and the
//! buttons its status allows.

use crate::harness::TestEnv;
use batchops_aws::page::handle_page;
use serde_json::json;

async fn page(env: &TestEnv, path: &str) -> (u16, String) {
    let answer = Box::pin(handle_page(&env.app, "GET", path))
        .await
        .unwrap_or_else(|| panic!("{path} is a page"));
    (answer.status, answer.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_shows_jobs_their_failed_tasks_and_backup_policies() {
    let env = TestEnv::new().await;
    env.put(&env.src, "here <1>.txt", "1").await;
    let manifest = env
        .manifest(
            "page",
            &[
                format!("{},here+%3C1%3E.txt", env.src),
                format!("{},gone+%26+lost.txt", env.src),
            ],
        )
        .await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["Description"] = json!("copy <two> objects");
    let job = env.create(document).await;
    env.run_until_idle().await;

    let (status, html) = page(&env, "/").await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("data-job-id=\"{job}\"")), "{html}");
    assert!(html.contains("copy &lt;two&gt; objects"));
    assert!(
        html.contains("<td class=\"n succeeded\">1</td><td class=\"n failed\">1</td>"),
        "{html}"
    );
    assert!(
        html.contains("data-live=\"false\""),
        "nothing runs: no refresh"
    );

    let (status, html) = page(&env, &format!("/ui/jobs/{job}")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("gone &amp; lost.txt"),
        "the failed task, decoded: {html}"
    );
    assert!(html.contains("NoSuchKey"), "{html}");
    assert!(html.contains(&format!("job-{job}/manifest.json")));
    assert!(
        !html.contains("id=\"cancel\""),
        "a finished job cannot be cancelled"
    );

    // A job awaiting confirmation offers both buttons, and the page refreshes while it waits.
    let mut waiting = env.request_json(&manifest, &["Bucket", "Key"]);
    waiting["ConfirmationRequired"] = json!(true);
    let suspended = env.create(waiting).await;
    env.run_until_idle().await;
    let (_, html) = page(&env, &format!("/ui/jobs/{suspended}")).await;
    assert!(
        html.contains("id=\"confirm\"") && html.contains("id=\"cancel\""),
        "{html}"
    );
    assert!(html.contains("data-live=\"true\""));

    // Policies with their snapshots.
    let policy = json!({"name": "site", "source": {"bucket": env.src, "prefix": ""},
        "destination": {"bucket": env.dst, "prefix": "vault/"}, "schedule": "rate(1 day)"});
    batchops_aws::backup::put_policy(&env.app, serde_json::from_value(policy).unwrap())
        .await
        .unwrap();
    let run = batchops_aws::backup::start_run(&env.app, "site", None, false)
        .await
        .unwrap();
    env.run_to_complete(&run.job_id).await;
    let snapshot = batchops_aws::backup::list_snapshots(&env.app, "site")
        .await
        .unwrap()
        .remove(0);
    let (_, html) = page(&env, "/").await;
    assert!(html.contains("data-policy=\"site\""), "{html}");
    assert!(html.contains(&snapshot.id));
    assert!(
        html.contains("Schedule: rate(1 day); next run: 20"),
        "{html}"
    );

    assert_eq!(page(&env, "/ui/jobs/no-such-job").await.0, 404);
    assert!(handle_page(&env.app, "POST", "/").await.is_none());
    assert!(handle_page(&env.app, "GET", "/jobs").await.is_none());
}

/// The overview lists imports beside exports: an import from the other store (second moto)
/// shows with its ID, status, where from and where to, and an export in the exports' table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_lists_imports_beside_exports() {
    use batchops_aws::exports::{self, ExportRequest, ExportSource};
    use batchops_aws::imports::{self, ImportRequest};
    use batchops_core::export::StoreLocation;
    let env = TestEnv::new().await;
    let (other, bucket, from) = crate::exports::other_location(&env).await;
    other
        .put_object()
        .bucket(&bucket)
        .key("exp/in.txt")
        .body(b"in".to_vec().into())
        .send()
        .await
        .unwrap();
    let to =
        StoreLocation::parse(&format!("s3://{}/imported", env.dst), &Default::default()).unwrap();
    let import = imports::create_import(
        &env.app,
        &ImportRequest {
            from: from.clone(),
            to,
        },
    )
    .await
    .unwrap();
    env.put(&env.src, "out.txt", "out").await;
    let manifest_key = env
        .manifest("page-export", &[format!("{},out.txt", env.src)])
        .await;
    let manifest = serde_json::from_value(json!({
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
        "Location": {"ObjectArn": format!("arn:aws:s3:::{}/{manifest_key}", env.src)}
    }))
    .unwrap();
    let export = exports::create_export(
        &env.app,
        &ExportRequest {
            source: ExportSource::Manifest(manifest),
            to: from.clone(),
        },
    )
    .await
    .unwrap();
    env.run_until_idle().await;

    let (status, html) = page(&env, "/").await;
    assert_eq!(status, 200);
    assert!(html.contains("<h2>Imports (1)</h2>"), "{html}");
    assert!(html.contains("<h2>Exports (1)</h2>"), "{html}");
    let imports_table = &html[html.find("id=\"imports\"").expect("an imports table")..];
    let exports_table = &html[html.find("id=\"exports\"").expect("an exports table")..];
    assert!(
        imports_table.contains(&format!(
            "<td><a href=\"/ui/jobs/{id}\">{id}</a></td><td>Success</td><td>{from}</td><td>s3://{dst}/imported/</td>",
            id = import.job_id,
            from = from.url(),
            dst = env.dst,
        )),
        "{html}"
    );
    assert!(
        exports_table.contains(&format!("/ui/jobs/{}", export.job_id))
            && !imports_table.contains(&format!("/ui/jobs/{}", export.job_id)),
        "{html}"
    );
}
