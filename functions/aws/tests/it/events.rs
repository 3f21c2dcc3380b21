//! S3 events against moto: continuous backups (copied once, journaled into the next snapshot,
//! removals under `propagate`) and runs started by an S3 Inventory report landing.

use crate::backups::{completed_run, put_legacy_policy, run, version_count};
use crate::harness::{gzip, md5_hex, TestEnv};
use aws_lambda_events::sqs::SqsEvent;
use batchops_aws::backup;
use batchops_aws::events::{handle_messages, EventMessage};
use batchops_core::backup::{
    BackupPolicy, DeleteMode, Location, MaxDeletes, Retention, VersionsMode,
};
use batchops_core::encoding::encode_key;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;

fn continuous_policy(env: &TestEnv, name: &str, deletes: DeleteMode) -> BackupPolicy {
    BackupPolicy {
        name: name.to_string(),
        source: Location {
            bucket: env.src.clone(),
            prefix: "data/".into(),
        },
        destination: Location {
            bucket: env.dst.clone(),
            prefix: "vault/".into(),
        },
        schedule: None,
        time_zone: "UTC".into(),
        retention: Retention::default(),
        deletes,
        max_deletes: None,
        versions: VersionsMode::Current,
        storage_class: None,
        enabled: true,
        allow_unversioned_destination: false,
        continuous: true,
        inventory: None,
        role_arn: None,
    }
}

/// A test environment with a continuous policy `name` stored.
async fn continuous_env(name: &str, deletes: DeleteMode) -> TestEnv {
    let env = TestEnv::new().await;
    backup::put_policy(&env.app, continuous_policy(&env, name, deletes))
        .await
        .unwrap();
    env
}

/// One S3 notification record, key form-encoded the way S3 sends it (`+` for a space).
fn record(
    name: &str,
    bucket: &str,
    key: &str,
    version: &str,
    body: &[u8],
    seq: u32,
) -> serde_json::Value {
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T10:00:00.000Z", "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "batchops",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": encode_key(key).replace("%20", "+"), "size": body.len(),
                          "eTag": md5_hex(body), "versionId": version,
                          "sequencer": format!("{seq:016X}")}}
    })
}

fn message(id: &str, records: Vec<serde_json::Value>) -> EventMessage {
    EventMessage {
        id: id.to_string(),
        body: json!({ "Records": records }).to_string(),
    }
}

const TEST_EVENT: &str = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-22T10:00:00.000Z","Bucket":"src","RequestId":"r","HostId":"h"}"#;

/// Versions and delete markers of a key in the destination.
async fn versions(env: &TestEnv, key: &str) -> (usize, usize) {
    version_count(env, &env.dst, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_batch_is_copied_once_and_recorded_in_the_next_snapshot() {
    let env = continuous_env("live", DeleteMode::Ignore).await;
    env.put(&env.src, "data/old.txt", "old").await;
    completed_run(&env, "live").await;

    let spaced = b"with spaces".to_vec();
    let v_spaced = env.put(&env.src, "data/a b+c.txt", spaced.clone()).await;
    let v1 = env.put(&env.src, "data/x.txt", "x1").await;
    let v2 = env.put(&env.src, "data/x.txt", "x2").await;
    let batch = vec![
        EventMessage {
            id: "m-test".into(),
            body: TEST_EVENT.into(),
        },
        message(
            "m1",
            vec![record(
                "ObjectCreated:Put",
                &env.src,
                "data/a b+c.txt",
                &v_spaced,
                &spaced,
                1,
            )],
        ),
        // Two writes of one key in one batch: the newer is what the backup gets.
        message(
            "m2",
            vec![record(
                "ObjectCreated:Put",
                &env.src,
                "data/x.txt",
                &v1,
                b"x1",
                2,
            )],
        ),
        message(
            "m3",
            vec![record(
                "ObjectCreated:Put",
                &env.src,
                "data/x.txt",
                &v2,
                b"x2",
                3,
            )],
        ),
        // Outside the policy's prefix: not backed up.
        message(
            "m4",
            vec![record(
                "ObjectCreated:Put",
                &env.src,
                "other/y",
                "v",
                b"y",
                4,
            )],
        ),
    ];
    let summary = handle_messages(&env.app, batch.clone()).await;
    assert_eq!(summary.failed, Vec::<String>::new());
    assert_eq!((summary.copied, summary.test_events), (2, 1));
    assert_eq!(
        env.get(&env.dst, "vault/data/a b+c.txt").await,
        Some(spaced)
    );
    assert_eq!(
        env.get(&env.dst, "vault/data/x.txt").await,
        Some(b"x2".to_vec())
    );
    assert_eq!(env.get(&env.dst, "vault/other/y").await, None);

    // SQS delivers the batch again: nothing is copied twice.
    let again = handle_messages(&env.app, batch).await;
    assert_eq!((again.copied, again.already_applied), (0, 2), "{again:?}");
    assert_eq!(versions(&env, "vault/data/a b+c.txt").await, (1, 0));
    assert_eq!(versions(&env, "vault/data/x.txt").await, (1, 0));

    // A late event for the overwritten version must not put x1 over x2.
    let late = handle_messages(
        &env.app,
        vec![message(
            "m5",
            vec![record(
                "ObjectCreated:Put",
                &env.src,
                "data/x.txt",
                &v1,
                b"x1",
                2,
            )],
        )],
    )
    .await;
    assert_eq!((late.copied, late.superseded), (0, 1));
    assert_eq!(
        env.get(&env.dst, "vault/data/x.txt").await,
        Some(b"x2".to_vec())
    );

    // The next run copies nothing the events already copied, and its snapshot has them.
    let described = completed_run(&env, "live").await.1;
    assert_eq!(described.progress_summary.total_number_of_tasks, 0);
    let snapshots = backup::list_snapshots(&env.app, "live").await.unwrap();
    let last = snapshots.last().unwrap();
    assert_eq!(
        (last.objects, last.copied, last.unchanged, last.continuous),
        (3, 0, 1, 2)
    );
    let catalog = backup::read_catalog(
        &batchops_aws::prepare::Reader::new(Some(env.app.s3.clone())),
        &last.catalog,
    )
    .await
    .unwrap();
    let x = catalog.iter().find(|e| e.key == "data/x.txt").unwrap();
    assert_eq!(x.source_version.as_deref(), Some(v2.as_str()));
    assert!(
        x.dest_version.is_some(),
        "the journal recorded the backup version"
    );
    assert_eq!(versions(&env, "vault/data/x.txt").await, (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continuous_copies_no_snapshot_takes_are_freed_by_retention_with_their_snapshot() {
    // No margin: every journal part written before a run starts is settled by it.
    let env = TestEnv::with_vars(&[("BATCHOPS_JOURNAL_MARGIN_SECONDS", "0")]).await;
    let mut policy = continuous_policy(&env, "churn", DeleteMode::Record);
    policy.retention.keep_last = Some(1);
    backup::put_policy(&env.app, policy).await.unwrap();
    env.put(&env.src, "data/k", "k1").await;
    completed_run(&env, "churn").await;

    // k is written twice, each copied by its own event batch; tmp is copied, then deleted.
    let mut seq = 0;
    for (key, body) in [("data/k", "k2"), ("data/k", "k3"), ("data/tmp", "t1")] {
        let version = env.put(&env.src, key, body).await;
        seq += 1;
        let record = record(
            "ObjectCreated:Put",
            &env.src,
            key,
            &version,
            body.as_bytes(),
            seq,
        );
        let summary =
            handle_messages(&env.app, vec![message(&format!("m{seq}"), vec![record])]).await;
        assert_eq!(summary.copied, 1, "{key} {body}: {summary:?}");
    }
    env.clients
        .s3
        .delete_object()
        .bucket(&env.src)
        .key("data/tmp")
        .send()
        .await
        .unwrap();
    assert_eq!(versions(&env, "vault/data/k").await, (3, 0));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    // The run takes k3's copy; k2's and tmp's copies are in no snapshot: listed as superseded.
    let described = completed_run(&env, "churn").await.1;
    assert_eq!(described.progress_summary.total_number_of_tasks, 0);
    let snapshots = backup::list_snapshots(&env.app, "churn").await.unwrap();
    assert_eq!(snapshots.len(), 1, "keepLast 1 expired the first snapshot");
    let second = snapshots[0].clone();
    assert_eq!(
        (second.objects, second.continuous, second.superseded),
        (1, 1, 2)
    );
    let list = second.superseded_catalog.clone().expect("superseded list");
    // The first snapshot's k1 copy went with it; k2's stays until this snapshot expires.
    assert_eq!(versions(&env, "vault/data/k").await, (2, 0));
    assert_eq!(versions(&env, "vault/data/tmp").await, (1, 0));
    let journal = env.keys(&env.app.config.control_bucket).await;
    assert!(
        !journal.iter().any(|k| k.starts_with("journal/churn/")),
        "settled journal parts are deleted: {journal:?}"
    );

    // The next snapshot expires this one: the superseded copies go, the current one stays.
    completed_run(&env, "churn").await;
    assert_eq!(versions(&env, "vault/data/k").await, (1, 0));
    assert_eq!(
        env.get(&env.dst, "vault/data/k").await,
        Some(b"k3".to_vec())
    );
    assert_eq!(versions(&env, "vault/data/tmp").await, (0, 0));
    assert_eq!(env.get(&list.bucket, &list.key).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removal_events_place_one_delete_marker_under_propagate() {
    let env = continuous_env("mirror", DeleteMode::Propagate).await;
    env.put(&env.src, "data/gone.txt", "bye").await;
    env.put(&env.src, "data/back.txt", "v1").await;
    completed_run(&env, "mirror").await;

    for key in ["data/gone.txt", "data/back.txt"] {
        env.clients
            .s3
            .delete_object()
            .bucket(&env.src)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    // Deleted, then written again before the event is handled: the backup keeps it.
    let back = env.put(&env.src, "data/back.txt", "v2").await;
    let removed = |key: &str, seq| {
        record(
            "ObjectRemoved:DeleteMarkerCreated",
            &env.src,
            key,
            "dm",
            b"",
            seq,
        )
    };
    let summary = handle_messages(
        &env.app,
        vec![
            message("r1", vec![removed("data/gone.txt", 10)]),
            message("r2", vec![removed("data/back.txt", 11)]),
        ],
    )
    .await;
    assert_eq!((summary.removed, summary.superseded), (1, 1), "{summary:?}");
    assert_eq!(versions(&env, "vault/data/gone.txt").await, (1, 1));
    assert_eq!(
        env.get(&env.dst, "vault/data/back.txt").await,
        Some(b"v1".to_vec())
    );
    let _ = back;

    let described = completed_run(&env, "mirror").await.1;
    assert_eq!(
        described.progress_summary.total_number_of_tasks, 1,
        "back.txt v2 is copied; gone.txt already has its marker"
    );
    assert_eq!(
        versions(&env, "vault/data/gone.txt").await,
        (1, 1),
        "one marker, not two"
    );
    let snapshot = backup::list_snapshots(&env.app, "mirror")
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!((snapshot.objects, snapshot.deleted), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lambda_events_handler_reports_only_bad_messages() {
    let env = TestEnv::new().await;
    backup::put_policy(&env.app, continuous_policy(&env, "lam", DeleteMode::Ignore))
        .await
        .unwrap();
    let version = env.put(&env.src, "data/k l", "body").await;
    let good = record(
        "ObjectCreated:Put",
        &env.src,
        "data/k l",
        &version,
        b"body",
        1,
    );
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "good", "body": json!({"Records": [good]}).to_string(), "eventSource": "aws:sqs"},
        {"messageId": "test", "body": TEST_EVENT, "eventSource": "aws:sqs"},
        {"messageId": "bad", "body": "{\"Records\": [{\"eventSource\": \"aws:s3\", \"eventName\": \"ObjectCreated:Put\"}]}", "eventSource": "aws:sqs"},
    ]}))
    .unwrap();
    let response =
        batchops_aws::lambda::events_handler(&env.app, LambdaEvent::new(event, Context::default()))
            .await
            .unwrap();
    let failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, vec!["bad".to_string()]);
    assert_eq!(
        env.get(&env.dst, "vault/data/k l").await,
        Some(b"body".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventory_report_landing_starts_one_run_from_the_report() {
    let env = TestEnv::new().await;
    let mut policy = continuous_policy(&env, "inv", DeleteMode::Record);
    policy.continuous = false;
    policy.inventory = Some(Location {
        bucket: env.reports.clone(),
        prefix: format!("inventory/{}/nightly/", env.src),
    });
    backup::put_policy(&env.app, policy).await.unwrap();
    // Source objects, and an inventory of them whose files are not in key order.
    let mut rows = Vec::new();
    for key in ["data/m", "data/a", "data/z z", "data/c", "skip/outside"] {
        let body = format!("body of {key}");
        let version = env.put(&env.src, key, body.clone()).await;
        rows.push(format!(
            "\"{}\",\"{}\",\"{version}\",\"true\",\"false\",\"{}\",\"2026-11-21T00:00:00.000Z\",\"{}\",\"STANDARD\"\n",
            env.src,
            encode_key(key).replace("%20", "+"),
            body.len(),
            md5_hex(body.as_bytes())
        ));
    }
    let schema = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass";
    let files = vec![
        ("part-1.csv.gz".to_string(), gzip(&rows[..2].concat())),
        ("part-0.csv.gz".to_string(), gzip(&rows[2..].concat())),
    ];
    let manifest_key = env.inventory("nightly", "CSV", schema, files).await;
    // A newer folder still being written (no manifest.json yet) is not a report.
    env.put(
        &env.reports,
        &format!("inventory/{}/nightly/2026-11-23T00-00Z/partial", env.src),
        "x",
    )
    .await;
    let landed = message(
        "inv-1",
        vec![record(
            "ObjectCreated:Put",
            &env.reports,
            &manifest_key,
            "v",
            b"{}",
            1,
        )],
    );
    let first = handle_messages(&env.app, vec![landed.clone()]).await;
    let second = handle_messages(&env.app, vec![landed]).await;
    assert_eq!(first.runs_started.len(), 1, "{first:?}");
    assert_eq!(
        first.runs_started, second.runs_started,
        "one run per report"
    );
    let job = first.runs_started[0].1.clone();
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 4);
    assert_eq!(
        env.get(&env.dst, "vault/data/z z").await,
        Some(b"body of data/z z".to_vec())
    );
    assert_eq!(env.get(&env.dst, "vault/skip/outside").await, None);
    let snapshot = backup::list_snapshots(&env.app, "inv")
        .await
        .unwrap()
        .pop()
        .unwrap();
    let catalog = backup::read_catalog(
        &batchops_aws::prepare::Reader::new(Some(env.app.s3.clone())),
        &snapshot.catalog,
    )
    .await
    .unwrap();
    let keys: Vec<&str> = catalog.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["data/a", "data/c", "data/m", "data/z z"],
        "sorted"
    );

    // The next day's report lists current versions only (no VersionId column): the diff
    // compares ETags and sizes, and copies just the object that changed.
    env.put(&env.src, "data/c", "changed c").await;
    let mut rows = String::new();
    for key in ["data/a", "data/c", "data/m", "data/z z"] {
        let body = env.get(&env.src, key).await.unwrap();
        rows.push_str(&format!(
            "\"{}\",\"{}\",\"{}\",\"{}\"\n",
            env.src,
            encode_key(key).replace("%20", "+"),
            body.len(),
            md5_hex(&body)
        ));
    }
    let next = env
        .inventory_at(
            "nightly",
            "2026-11-23T00-00Z",
            "CSV",
            "Bucket, Key, Size, ETag",
            vec![("part-2.csv.gz".to_string(), gzip(&rows))],
        )
        .await;
    let landed = message(
        "inv-2",
        vec![record(
            "ObjectCreated:Put",
            &env.reports,
            &next,
            "v",
            b"{}",
            2,
        )],
    );
    let started = handle_messages(&env.app, vec![landed]).await.runs_started;
    assert_eq!(started.len(), 1);
    let described = env.run_to_complete(&started[0].1).await;
    assert_eq!(described.progress_summary.total_number_of_tasks, 1);
    assert_eq!(
        env.get(&env.dst, "vault/data/c").await,
        Some(b"changed c".to_vec())
    );

    // A run by hand (or schedule) reads the newest complete report: nothing changed.
    let described = completed_run(&env, "inv").await.1;
    assert_eq!(described.progress_summary.total_number_of_tasks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bucket_notifications_reach_the_backup_through_the_events_queue() {
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    let env = continuous_env("notified", DeleteMode::Ignore).await;
    let queue_url =
        batchops_aws::queue::resolve(env.app.queues.client(), &env.app.config.events_queue)
            .await
            .unwrap();
    let queue_arn = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}",
        env.app.config.events_queue
    );
    env.clients
        .s3
        .put_bucket_notification_configuration()
        .bucket(&env.src)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(queue_arn)
                        .events(Event::S3ObjectCreated)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    env.put(&env.src, "data/n 1.txt", "one").await;
    env.put(&env.src, "data/n2.txt", "two").await;
    env.put(&env.src, "data/n2.txt", "two again").await;
    // What S3 (here moto) put on the queue: a TestEvent, then one message per write.
    let mut messages = Vec::new();
    for _ in 0..20 {
        for m in env.app.queues.receive(&queue_url, 10, 1, 30).await.unwrap() {
            messages.push(EventMessage {
                id: m.message_id,
                body: m.body,
            });
        }
        if messages.len() >= 4 {
            break;
        }
    }
    assert_eq!(messages.len(), 4, "TestEvent and three writes");
    let summary = handle_messages(&env.app, messages).await;
    assert_eq!(summary.failed, Vec::<String>::new());
    assert_eq!(summary.test_events, 1);
    assert_eq!(
        summary.copied, 2,
        "the two writes of n2.txt are one copy: {summary:?}"
    );
    assert_eq!(
        env.get(&env.dst, "vault/data/n 1.txt").await,
        Some(b"one".to_vec())
    );
    assert_eq!(
        env.get(&env.dst, "vault/data/n2.txt").await,
        Some(b"two again".to_vec())
    );
    // The run after records both without copying them again.
    let described = completed_run(&env, "notified").await.1;
    assert_eq!(described.progress_summary.total_number_of_tasks, 0);
}

/// Deletes `key` at the source (a delete marker) and returns its removal event.
async fn remove(env: &TestEnv, key: &str, seq: u32) -> serde_json::Value {
    env.clients
        .s3
        .delete_object()
        .bucket(&env.src)
        .key(key)
        .send()
        .await
        .unwrap();
    record(
        "ObjectRemoved:DeleteMarkerCreated",
        &env.src,
        key,
        "dm",
        b"",
        seq,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continuous_removals_count_against_the_deletion_guard() {
    let env = TestEnv::new().await;
    let mut policy = continuous_policy(&env, "capped", DeleteMode::Propagate);
    policy.max_deletes = Some(MaxDeletes::Limit(1));
    backup::put_policy(&env.app, policy).await.unwrap();
    for key in ["data/one", "data/two", "data/three"] {
        env.put(&env.src, key, "x").await;
    }
    completed_run(&env, "capped").await;
    let first = remove(&env, "data/one", 10).await;
    let second = remove(&env, "data/two", 11).await;
    let summary = handle_messages(&env.app, vec![message("m1", vec![first, second])]).await;
    assert_eq!((summary.removed, summary.deferred), (1, 1), "{summary:?}");
    let markers: usize = [
        versions(&env, "vault/data/one").await.1,
        versions(&env, "vault/data/two").await.1,
    ]
    .iter()
    .sum();
    assert_eq!(markers, 1, "one delete marker, within maxDeletes");
    // Later batches get no more until a snapshot is taken.
    let third = remove(&env, "data/three", 12).await;
    let summary = handle_messages(&env.app, vec![message("m2", vec![third])]).await;
    assert_eq!((summary.removed, summary.deferred), (0, 1), "{summary:?}");
    assert_eq!(versions(&env, "vault/data/three").await, (1, 0));
    // The run counts the continuous removal with its own: past maxDeletes, it fails.
    let (_, described) = run(&env, "capped").await;
    assert_eq!(described.status, "Failed");
    assert_eq!(
        described.failure_reasons[0].failure_code,
        "MaxDeletesExceeded"
    );
    assert_eq!(versions(&env, "vault/data/three").await, (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continuous_mode_leaves_unsafe_destinations_alone() {
    let env = TestEnv::new().await;
    // Propagate into a bucket that is not versioned: the delete would remove the only copy.
    let plain = format!("{}-plain", env.dst);
    env.clients
        .s3
        .create_bucket()
        .bucket(&plain)
        .send()
        .await
        .unwrap();
    let mut unversioned = continuous_policy(&env, "unversioned", DeleteMode::Propagate);
    unversioned.destination.bucket = plain.clone();
    backup::put_policy(&env.app, unversioned).await.unwrap();
    env.put(&plain, "vault/data/gone", "the only copy").await;
    env.put(&env.src, "data/gone", "bye").await;
    // A policy stored before the overlap check: its copies would land on its own source.
    let mut looping = continuous_policy(&env, "looping", DeleteMode::Ignore);
    looping.destination = Location {
        bucket: env.src.clone(),
        prefix: String::new(),
    };
    looping.source.prefix = "loop/".into();
    put_legacy_policy(&env, looping).await;
    let version = env.put(&env.src, "loop/x", "x").await;

    let gone = remove(&env, "data/gone", 20).await;
    let created = record("ObjectCreated:Put", &env.src, "loop/x", &version, b"x", 21);
    let summary = handle_messages(&env.app, vec![message("m", vec![gone, created])]).await;
    assert!(summary.failed.is_empty(), "{summary:?}");
    assert_eq!((summary.removed, summary.copied), (0, 0), "{summary:?}");
    assert_eq!(
        env.get(&plain, "vault/data/gone").await,
        Some(b"the only copy".to_vec())
    );
    assert_eq!(
        version_count(&env, &env.src, "loop/x").await,
        (1, 0),
        "not copied onto itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inventory_report_of_another_bucket_fails_the_run() {
    let env = TestEnv::new().await;
    let mut policy = continuous_policy(&env, "inv", DeleteMode::Record);
    policy.continuous = false;
    policy.max_deletes = Some(MaxDeletes::Unlimited);
    policy.inventory = Some(Location {
        bucket: env.reports.clone(),
        prefix: format!("inventory/{}/nightly/", env.src),
    });
    backup::put_policy(&env.app, policy).await.unwrap();
    let mut rows = String::new();
    for key in ["data/a", "data/b"] {
        let version = env.put(&env.src, key, key).await;
        rows.push_str(&format!(
            "\"{}\",\"{key}\",\"{version}\",\"true\",\"false\",\"{}\",\"2026-11-21T00:00:00.000Z\",\"{}\",\"STANDARD\"\n",
            env.src,
            key.len(),
            md5_hex(key.as_bytes())
        ));
    }
    let schema = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass";
    env.inventory(
        "nightly",
        "CSV",
        schema,
        vec![("a.csv.gz".into(), gzip(&rows))],
    )
    .await;
    completed_run(&env, "inv").await;

    // The next report under the policy's prefix is another bucket's: its objects are not the
    // source's, and diffing against it would drop every object from the snapshot.
    let other = format!("{}-other", env.src);
    let data_key = format!("inventory/{}/nightly/data/other.csv.gz", env.src);
    let data = gzip(&format!(
        "\"{other}\",\"data/zzz\",\"v\",\"true\",\"false\",\"1\",\"2026-11-22T00:00:00.000Z\",\"{}\",\"STANDARD\"\n",
        md5_hex(b"z")
    ));
    env.put(&env.reports, &data_key, data.clone()).await;
    let manifest = serde_json::to_vec(&json!({
        "sourceBucket": other, "destinationBucket": format!("arn:aws:s3:::{}", env.reports),
        "version": "2016-11-30", "creationTimestamp": "1763856000000", "fileFormat": "CSV",
        "fileSchema": schema,
        "files": [{"key": data_key, "size": data.len(), "MD5checksum": md5_hex(&data)}],
    }))
    .unwrap();
    let root = format!("inventory/{}/nightly/2026-11-23T00-00Z", env.src);
    env.put(
        &env.reports,
        &format!("{root}/manifest.checksum"),
        md5_hex(&manifest),
    )
    .await;
    env.put(&env.reports, &format!("{root}/manifest.json"), manifest)
        .await;
    let (_, described) = run(&env, "inv").await;
    assert_eq!(described.status, "Failed");
    let reason = &described.failure_reasons[0];
    assert_eq!(reason.failure_code, "InventoryInvalid", "{reason:?}");
    assert!(reason.failure_reason.contains("sourceBucket"), "{reason:?}");
    assert_eq!(
        backup::list_snapshots(&env.app, "inv").await.unwrap().len(),
        1,
        "no snapshot without the source's objects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn journal_parts_are_read_only_as_recorded_when_written() {
    let env = continuous_env("pinned", DeleteMode::Ignore).await;
    env.put(&env.src, "data/old", "old").await;
    completed_run(&env, "pinned").await;
    let ctl = env.app.config.control_bucket.clone();

    let vx = env.put(&env.src, "data/x", "x1").await;
    let summary = handle_messages(
        &env.app,
        vec![message(
            "m1",
            vec![record(
                "ObjectCreated:Put",
                &env.src,
                "data/x",
                &vx,
                b"x1",
                1,
            )],
        )],
    )
    .await;
    assert_eq!(summary.copied, 1, "{summary:?}");
    let parts: Vec<String> = env
        .keys(&ctl)
        .await
        .into_iter()
        .filter(|k| k.starts_with("journal/pinned/"))
        .collect();
    assert_eq!(parts.len(), 1, "{parts:?}");
    let recorded = parts[0].clone();

    // An object under the journal prefix that batchops did not write (old enough that the run
    // would settle it): a forged row claiming y is backed up already, so y would never be copied.
    let vy = env.put(&env.src, "data/y", "y1").await;
    let mut forged_row = String::new();
    batchops_core::backup::JournalRow::Copied(batchops_core::backup::CatalogEntry {
        key: "data/y".into(),
        source_version: Some(vy),
        etag: Some(md5_hex(b"y1")),
        size: 2,
        last_modified: "2026-11-22T10:00:00Z".into(),
        dest_key: "vault/data/y".into(),
        dest_version: Some("forged".into()),
    })
    .write_line(&mut forged_row);
    let planted = "journal/pinned/20000101T000000.000Z-planted.tsv";
    env.put(&ctl, planted, forged_row.clone()).await;
    let (job, described) = completed_run(&env, "pinned").await;
    assert_eq!(
        described.progress_summary.total_number_of_tasks, 1,
        "y is copied (the planted row was not read); x was journaled"
    );
    assert_eq!(
        env.get(&env.dst, "vault/data/y").await,
        Some(b"y1".to_vec())
    );
    assert!(
        described
            .warnings
            .iter()
            .any(|w| w.contains(planted) && w.contains("not read")),
        "job {job}: {:?}",
        described.warnings
    );
    let snapshot = backup::list_snapshots(&env.app, "pinned")
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!((snapshot.objects, snapshot.continuous), (3, 1));

    // The recorded part (young: read again by the next run) is overwritten with a forged row:
    // the run fails naming it rather than read what it did not write.
    env.put(&ctl, &recorded, forged_row).await;
    let (_, described) = run(&env, "pinned").await;
    assert_eq!(described.status, "Failed");
    let reason = &described.failure_reasons[0];
    assert_eq!(reason.failure_code, "JournalInvalid", "{reason:?}");
    assert!(
        reason.failure_reason.contains(&recorded)
            && reason.failure_reason.contains("replaced or damaged"),
        "{reason:?}"
    );
}
