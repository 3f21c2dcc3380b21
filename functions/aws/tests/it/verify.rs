//! `backup verify` against moto: a snapshot verifies while its copies are there, from a few
//! listing requests; a deleted backup version and catalog rows that no longer match are named.

use crate::backups::{completed_run, policy};
use crate::harness::{gzip, TestEnv};
use batchops_aws::api::{handle, ApiRequest};
use batchops_aws::backup;
use batchops_aws::prepare::Reader;
use batchops_aws::verify::verify_snapshot;
use batchops_core::backup::CATALOG_HEADER;
use batchops_core::verify::Issue;

async fn get(env: &TestEnv, path: &str, method: &str) -> (u16, serde_json::Value) {
    let request = ApiRequest {
        method: method.into(),
        path: path.into(),
        query: Vec::new(),
        body: Vec::new(),
    };
    let response = handle(&env.app, &request).await;
    (response.status, response.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_verifies_until_a_copy_is_missing_or_different() {
    let env = TestEnv::new().await;
    backup::put_policy(&env.app, policy(&env, "nightly"))
        .await
        .unwrap();
    for key in ["a", "b", "c", "d", "e e"] {
        env.put(&env.src, &format!("data/{key}"), format!("v1 {key}"))
            .await;
    }
    completed_run(&env, "nightly").await;
    env.put(&env.src, "data/b", "v2 b, longer").await;
    completed_run(&env, "nightly").await;
    let snapshots = backup::list_snapshots(&env.app, "nightly").await.unwrap();
    assert_eq!(snapshots.len(), 2);
    let (first, newest) = (&snapshots[0], &snapshots[1]);
    // Versions the snapshot does not reference, sorting before its keys: the merge reads past
    // them page by page.
    let fillers = (0..1100)
        .map(|i| (format!("backups/src/data/0-filler-{i:04}"), b"x".to_vec()))
        .collect();
    env.put_many(&env.dst, fillers).await;

    let report = verify_snapshot(&env.app, "nightly", None).await.unwrap();
    assert_eq!(report.snapshot, newest.id, "the newest by default");
    assert!(report.passed(), "{report:?}");
    let v = &report.verification;
    assert_eq!((v.checked, v.ok, v.missing, v.different), (5, 5, 0, 0));
    assert!(v.listed > 1100, "{}", v.listed);
    assert!(
        report.list_requests <= v.listed / 1000 + 1,
        "{} requests for {} versions",
        report.list_requests,
        v.listed
    );
    assert_eq!(report.destination, format!("s3://{}/backups/src/", env.dst));
    // The older snapshot's version of b is still kept.
    let report = verify_snapshot(&env.app, "nightly", Some(&first.id))
        .await
        .unwrap();
    assert_eq!(report.snapshot, first.id);
    assert!(report.passed(), "{report:?}");

    // A delete marker on top of a backup key leaves the recorded version restorable.
    env.clients
        .s3
        .delete_object()
        .bucket(&env.dst)
        .key("backups/src/data/c")
        .send()
        .await
        .unwrap();
    assert!(verify_snapshot(&env.app, "nightly", None)
        .await
        .unwrap()
        .passed());

    // Break it: a's backup version deleted (both snapshots reference it), and the newest
    // catalog rewritten so that d's ETag and e's size no longer match their copies.
    let reader = Reader::new(Some(env.app.s3.clone()));
    let entries = backup::read_catalog(&reader, &newest.catalog)
        .await
        .unwrap();
    let a_version = entries[0].dest_version.clone().unwrap();
    env.clients
        .s3
        .delete_object()
        .bucket(&env.dst)
        .key("backups/src/data/a")
        .version_id(&a_version)
        .send()
        .await
        .unwrap();
    let mut text = format!("{CATALOG_HEADER}\n");
    for mut entry in entries.clone() {
        match entry.key.as_str() {
            "data/d" => entry.etag = Some("0123456789abcdef0123456789abcdef".into()),
            "data/e e" => entry.size += 1,
            _ => {}
        }
        entry.write_line(&mut text);
    }
    let written = env
        .clients
        .s3
        .put_object()
        .bucket(&newest.catalog.bucket)
        .key(&newest.catalog.key)
        .body(gzip(&text).into())
        .send()
        .await
        .unwrap();
    // Catalogs are read pinned to the version their snapshot recorded: record the rewritten one,
    // as if the run had written it so.
    let (pk, sk) = ("POLICY#nightly".to_string(), format!("SNAP#{}", newest.id));
    let (mut record, revision) = env
        .app
        .store
        .get_doc::<backup::SnapshotRecord>(&pk, &sk)
        .await
        .unwrap()
        .unwrap();
    record.catalog.version_id = written.version_id().map(str::to_string);
    record.catalog.etag = written.e_tag().map(str::to_string);
    assert!(env
        .app
        .store
        .put_doc(&pk, &sk, &record, Some(revision), None)
        .await
        .unwrap());

    let report = verify_snapshot(&env.app, "nightly", None).await.unwrap();
    assert!(!report.passed());
    let v = &report.verification;
    assert_eq!((v.checked, v.ok, v.missing, v.different), (5, 2, 1, 2));
    let problems: Vec<(&str, Option<&str>, &Issue)> = v
        .problems
        .iter()
        .map(|p| (p.key.as_str(), p.dest_version.as_deref(), &p.issue))
        .collect();
    let etag = entries[3].etag.clone().unwrap();
    let version = |i: usize| entries[i].dest_version.as_deref();
    assert_eq!(
        problems,
        vec![
            ("data/a", Some(a_version.as_str()), &Issue::Missing),
            (
                "data/d",
                version(3),
                &Issue::Different {
                    expected: "ETag 0123456789abcdef0123456789abcdef".into(),
                    found: format!("ETag {etag}"),
                }
            ),
            (
                "data/e e",
                version(4),
                &Issue::Different {
                    expected: "size 7".into(),
                    found: "size 6".into(),
                }
            ),
        ]
    );
    let report = verify_snapshot(&env.app, "nightly", Some(&first.id))
        .await
        .unwrap();
    assert_eq!(
        (report.verification.missing, report.verification.different),
        (1, 0),
        "the older snapshot misses a too"
    );

    // The same over HTTP; a verification that finds problems is still an answer (200).
    let (status, body) = get(
        &env,
        "/backup-policies/nightly/snapshots/newest/verify",
        "GET",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["passed"],
            &body["missing"],
            &body["different"],
            &body["snapshot"]
        ),
        (
            &serde_json::json!(false),
            &serde_json::json!(1),
            &serde_json::json!(2),
            &serde_json::json!(newest.id)
        )
    );
    assert_eq!(body["problems"][0]["kind"], "Missing");
    assert_eq!(body["problems"][0]["destinationKey"], "backups/src/data/a");
    let path = format!("/backup-policies/nightly/snapshots/{}/verify", first.id);
    let (status, body) = get(&env, &path, "GET").await;
    assert_eq!(
        (status, &body["snapshot"]),
        (200, &serde_json::json!(first.id))
    );
    assert_eq!(get(&env, &path, "POST").await.0, 405);
    let (status, body) = get(&env, "/backup-policies/nope/snapshots/newest/verify", "GET").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(
        &env,
        "/backup-policies/nightly/snapshots/19990101T000000Z/verify",
        "GET",
    )
    .await;
    assert_eq!(status, 400, "{body}");
}
