//! Manifests at scale: S3 Inventory reports, generated manifests, pinning, resumable planning,
//! dry runs.

use crate::harness::{gzip, TestEnv};
use batchops_aws::planner::{advance, Advance};
use batchops_aws::prepare::{dry_run, ChunkWriter, Location, Reader, SourceOptions, SourceSpec};
use batchops_core::encoding::encode_key;
use batchops_core::manifest::ManifestFields;
use batchops_core::request::ManifestObject;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const SCHEMA: &str =
    "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass";

fn row(
    bucket: &str,
    key: &str,
    version: &str,
    latest: bool,
    delete_marker: bool,
    size: &str,
) -> String {
    format!(
        "\"{bucket}\",\"{}\",\"{version}\",\"{latest}\",\"{delete_marker}\",\"{size}\",\"2026-11-21T00:00:00.000Z\",\"{}\",\"STANDARD\"\n",
        encode_key(key).replace("%20", "+"),
        if delete_marker { "" } else { "d41d8cd98f00b204e9800998ecf8427e" }
    )
}

async fn plan_to(env: &TestEnv, job: &str) {
    let mut slices = 0;
    while advance(&env.app, job, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap()
        == Advance::MoreWork
    {
        slices += 1;
        assert!(slices < 50);
    }
}

async fn versions_of(env: &TestEnv, bucket: &str, key: &str) -> Vec<Vec<u8>> {
    let out = env
        .clients
        .s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for v in out.versions().iter().filter(|v| v.key() == Some(key)) {
        let obj = env
            .clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .version_id(v.version_id().unwrap())
            .send()
            .await
            .unwrap();
        bodies.push(obj.body.collect().await.unwrap().into_bytes().to_vec());
    }
    bodies.sort();
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_all_versions_inventory_plans_exactly_its_versions_and_copies_them() {
    let env = TestEnv::with_vars(&[("BATCHOPS_CHUNK_SIZE", "3")]).await;
    // A bucket whose first object predates versioning: its version ID is the literal null.
    let legacy = format!("{}-legacy", env.src);
    env.clients
        .s3
        .create_bucket()
        .bucket(&legacy)
        .send()
        .await
        .unwrap();
    env.put(&legacy, "old key", "from before versioning").await;
    env.set_versioning(&legacy).await;
    let legacy_v2 = env.put(&legacy, "old key", "after versioning").await;
    let a1 = env.put(&env.src, "dir/a b.txt", "a one").await;
    let a2 = env.put(&env.src, "dir/a b.txt", "a two").await;
    let p1 = env.put(&env.src, "plus+sign/ü.txt", "plus").await;
    let gone = env.put(&env.src, "deleted.txt", "deleted later").await;
    let rows_file1 = [
        row(&env.src, "dir/a b.txt", &a2, true, false, "5"),
        row(&env.src, "dir/a b.txt", &a1, false, false, "5"),
        row(&env.src, "deleted.txt", "marker-1", true, true, ""),
    ]
    .concat();
    let rows_file2 = [
        row(&env.src, "deleted.txt", &gone, false, false, "13"),
        row(&env.src, "plus+sign/ü.txt", &p1, true, false, "4"),
    ]
    .concat();
    let rows_file3 = [
        row(&legacy, "old key", &legacy_v2, true, false, "16"),
        row(&legacy, "old key", "", false, false, "22"),
    ]
    .concat();
    let manifest = env
        .inventory(
            "all-versions",
            "CSV",
            SCHEMA,
            vec![
                ("one.csv.gz".into(), gzip(&rows_file1)),
                ("two.csv.gz".into(), gzip(&rows_file2)),
                ("three.csv.gz".into(), gzip(&rows_file3)),
            ],
        )
        .await;
    let job = env.create(env.inventory_request(&manifest)).await;
    plan_to(&env, &job).await;
    let planned: Vec<(String, Option<String>)> = env
        .planned(&job)
        .await
        .into_iter()
        .map(|(_, k, v, _)| (k, v))
        .collect();
    assert_eq!(
        planned,
        vec![
            ("dir/a b.txt".to_string(), Some(a2.clone())),
            ("dir/a b.txt".to_string(), Some(a1.clone())),
            ("deleted.txt".to_string(), Some(gone.clone())),
            ("plus+sign/ü.txt".to_string(), Some(p1.clone())),
            ("old key".to_string(), Some(legacy_v2.clone())),
            ("old key".to_string(), Some("null".to_string())),
        ]
    );
    let record = env.app.store.get_job(&job).await.unwrap();
    assert_eq!(record.plan.progress.skipped, 1, "the delete marker");
    assert_eq!(record.plan.progress.bytes, 5 + 5 + 13 + 4 + 16 + 22);
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 6);
    assert_eq!(
        versions_of(&env, &env.dst, "copied/dir/a b.txt").await,
        vec![b"a one".to_vec(), b"a two".to_vec()]
    );
    assert_eq!(
        versions_of(&env, &env.dst, "copied/old key").await,
        vec![
            b"after versioning".to_vec(),
            b"from before versioning".to_vec()
        ]
    );
    env.audit(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupted_inventory_file_fails_the_job_naming_it() {
    let env = TestEnv::new().await;
    let good = gzip(&row(&env.src, "k", "v", true, false, "1"));
    let manifest = env
        .inventory(
            "corrupt",
            "CSV",
            SCHEMA,
            vec![("good.csv.gz".into(), good.clone())],
        )
        .await;
    // The data file is replaced after the manifest recorded its MD5.
    let data_key = format!("inventory/{}/corrupt/data/good.csv.gz", env.src);
    env.put(
        &env.reports,
        &data_key,
        gzip(&row(&env.src, "other", "v", true, false, "1")),
    )
    .await;
    let job = env.create(env.inventory_request(&manifest)).await;
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Failed");
    assert_eq!(
        described.failure_reasons[0].failure_code,
        "ManifestChecksumMismatch"
    );
    assert!(
        described.failure_reasons[0]
            .failure_reason
            .contains("good.csv.gz"),
        "{}",
        described.failure_reasons[0].failure_reason
    );

    // A manifest.json that does not match manifest.checksum fails the same way.
    let manifest_key = env
        .inventory("tampered", "CSV", SCHEMA, vec![("g.csv.gz".into(), good)])
        .await;
    let checksum_key = manifest_key.replace("manifest.json", "manifest.checksum");
    env.put(
        &env.reports,
        &checksum_key,
        "00000000000000000000000000000000",
    )
    .await;
    let job = env.create(env.inventory_request(&manifest_key)).await;
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Failed");
    assert_eq!(
        described.failure_reasons[0].failure_code,
        "ManifestChecksumMismatch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventory_planning_resumes_mid_file_without_skipping_or_repeating() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_CHUNK_SIZE", "4"),
        ("BATCHOPS_CHECKPOINT_EVERY_CHUNKS", "1"),
    ])
    .await;
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|f| {
            let rows: String = (0..10)
                .map(|i| row(&env.src, &format!("f{f}/k{i:02}"), "v", true, false, "1"))
                .collect();
            (format!("part-{f}.csv.gz"), gzip(&rows))
        })
        .collect();
    let manifest = env.inventory("resume", "CSV", SCHEMA, files).await;
    let job = env.create(env.inventory_request(&manifest)).await;
    let mut slices = 0;
    while advance(&env.app, &job, Instant::now()).await.unwrap() == Advance::MoreWork {
        slices += 1;
        assert!(slices < 100);
    }
    assert!(slices >= 7, "planned in {slices} slices");
    let lines: Vec<u64> = env
        .planned(&job)
        .await
        .into_iter()
        .map(|(line, ..)| line)
        .collect();
    assert_eq!(lines, (1..=30).collect::<Vec<u64>>());
}

fn generator(env: &TestEnv, filter: Value, output: bool) -> Value {
    let mut document = env.request_json("unused", &["Bucket", "Key"]);
    document.as_object_mut().unwrap().remove("Manifest");
    document["ConfirmationRequired"] = json!(true);
    let mut generator = json!({"SourceBucket": format!("arn:aws:s3:::{}", env.src), "EnableManifestOutput": output, "Filter": filter});
    if output {
        generator["ManifestOutputLocation"] = json!({"Bucket": format!("arn:aws:s3:::{}", env.reports), "ManifestPrefix": "generated", "ManifestFormat": "S3InventoryReport_CSV_20211130"});
    }
    document["ManifestGenerator"] = json!({"S3JobManifestGenerator": generator});
    document
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generated_manifests_honour_each_filter() {
    let env = TestEnv::with_vars(&[("BATCHOPS_CHUNK_SIZE", "2")]).await;
    let started = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    for (key, size) in [
        ("logs/2026/a.gz", 50),
        ("logs/2026/b.txt", 50),
        ("logs/2025/c.gz", 50),
        ("data/2026/d.gz", 5),
        ("other/f.gz", 50),
    ] {
        env.put(&env.src, key, vec![b'x'; size]).await;
    }
    env.clients
        .s3
        .put_object()
        .bucket(&env.src)
        .key("data/2026/e.gz")
        .storage_class(aws_sdk_s3::types::StorageClass::StandardIa)
        .body(vec![b'y'; 500].into())
        .send()
        .await
        .unwrap();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let later = fmt(time::OffsetDateTime::now_utc() + time::Duration::hours(1));
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({}),
            vec![
                "data/2026/d.gz",
                "data/2026/e.gz",
                "logs/2025/c.gz",
                "logs/2026/a.gz",
                "logs/2026/b.txt",
                "other/f.gz",
            ],
        ),
        (
            json!({"KeyNameConstraint": {"MatchAnyPrefix": ["logs/", "logs/2026/"]}}),
            vec!["logs/2025/c.gz", "logs/2026/a.gz", "logs/2026/b.txt"],
        ),
        (
            json!({"KeyNameConstraint": {"MatchAnySuffix": [".gz"]}}),
            vec![
                "data/2026/d.gz",
                "data/2026/e.gz",
                "logs/2025/c.gz",
                "logs/2026/a.gz",
                "other/f.gz",
            ],
        ),
        (
            json!({"KeyNameConstraint": {"MatchAnySubstring": ["2026"]}}),
            vec![
                "data/2026/d.gz",
                "data/2026/e.gz",
                "logs/2026/a.gz",
                "logs/2026/b.txt",
            ],
        ),
        (
            json!({"ObjectSizeGreaterThanBytes": 10, "ObjectSizeLessThanBytes": 100}),
            vec![
                "logs/2025/c.gz",
                "logs/2026/a.gz",
                "logs/2026/b.txt",
                "other/f.gz",
            ],
        ),
        (
            json!({"MatchAnyStorageClass": ["STANDARD_IA"]}),
            vec!["data/2026/e.gz"],
        ),
        (json!({"CreatedAfter": later}), vec![]),
        (
            json!({"CreatedBefore": later, "CreatedAfter": fmt(started)}),
            vec![
                "data/2026/d.gz",
                "data/2026/e.gz",
                "logs/2025/c.gz",
                "logs/2026/a.gz",
                "logs/2026/b.txt",
                "other/f.gz",
            ],
        ),
        (
            json!({"KeyNameConstraint": {"MatchAnyPrefix": ["logs/"], "MatchAnySuffix": [".gz"]}, "ObjectSizeGreaterThanBytes": 1}),
            vec!["logs/2025/c.gz", "logs/2026/a.gz"],
        ),
    ];
    for (filter, expected) in cases {
        let job = env.create(generator(&env, filter.clone(), false)).await;
        plan_to(&env, &job).await;
        assert_eq!(env.describe(&job).await.status, "Suspended", "{filter}");
        let keys: Vec<String> = env
            .planned(&job)
            .await
            .into_iter()
            .map(|(_, k, ..)| k)
            .collect();
        assert_eq!(keys, expected, "filter {filter}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generated_manifest_is_written_and_reusable_as_an_inventory() {
    let env = TestEnv::with_vars(&[("BATCHOPS_CHUNK_SIZE", "2")]).await;
    for key in ["g/one", "g/two words", "g/three+", "h/not-me"] {
        env.put(&env.src, key, key.as_bytes().to_vec()).await;
    }
    let mut document = generator(
        &env,
        json!({"KeyNameConstraint": {"MatchAnyPrefix": ["g/"]}}),
        true,
    );
    document["ConfirmationRequired"] = json!(false);
    let job = env.create(document).await;
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Complete");
    assert_eq!(
        env.keys(&env.dst).await,
        vec!["copied/g/one", "copied/g/three+", "copied/g/two words"]
    );
    let manifest_key = format!("generated/job-{job}/manifest.json");
    // DescribeJob points at what was written, and echoes the generator it was given.
    let descriptor = described
        .generated_manifest_descriptor
        .expect("GeneratedManifestDescriptor");
    assert_eq!(descriptor.format, "S3InventoryReport_CSV_20211130");
    assert_eq!(
        descriptor.location.object_arn,
        format!("arn:aws:s3:::{}/{manifest_key}", env.reports)
    );
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&env.reports)
        .key(&manifest_key)
        .send()
        .await
        .unwrap();
    assert_eq!(descriptor.location.etag.as_deref(), head.e_tag());
    let echoed = described
        .manifest_generator
        .expect("ManifestGenerator echoed");
    assert_eq!(
        echoed.s3_job_manifest_generator.unwrap().source_bucket,
        format!("arn:aws:s3:::{}", env.src)
    );
    let manifest: Value = serde_json::from_slice(
        &env.get(&env.reports, &manifest_key)
            .await
            .expect("manifest.json written"),
    )
    .unwrap();
    assert_eq!(
        manifest["fileSchema"], "Bucket, Key",
        "unpinned listings name no versions"
    );
    assert_eq!(
        manifest["files"].as_array().unwrap().len(),
        2,
        "one data file per chunk"
    );
    // Reused as the manifest of a second job, into another prefix.
    let mut again = env.inventory_request(&manifest_key);
    again["Operation"]["S3PutObjectCopy"]["TargetKeyPrefix"] = json!("again");
    let second = env.create(again).await;
    let described = env.run_to_complete(&second).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 3);
    assert_eq!(
        env.get(&env.dst, "again/g/two words").await,
        Some(b"g/two words".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pinned_job_copies_what_was_current_at_planning_time() {
    let env = TestEnv::new().await;
    let keys = ["p/one", "p/two", "p/three"];
    for key in keys {
        env.put(&env.src, key, format!("planned {key}")).await;
    }
    let lines: Vec<String> = keys.iter().map(|k| format!("{},{}", env.src, k)).collect();
    let manifest = env.manifest("pinned", &lines).await;
    let mut pinned = env.request_json(&manifest, &["Bucket", "Key"]);
    pinned["Batchops"] = json!({"PinVersions": true});
    let pinned_job = env.create(pinned).await;
    let mut unpinned = env.request_json(&manifest, &["Bucket", "Key"]);
    unpinned["Operation"]["S3PutObjectCopy"]["TargetKeyPrefix"] = json!("unpinned");
    let unpinned_job = env.create(unpinned).await;
    plan_to(&env, &pinned_job).await;
    plan_to(&env, &unpinned_job).await;
    for (_, _, version, etag) in env.planned(&pinned_job).await {
        assert!(
            version.is_some() && etag.is_some(),
            "pinned tasks carry version and ETag"
        );
    }
    // The bucket changes after planning, before the tasks run.
    for key in keys {
        env.put(&env.src, key, format!("overwritten {key}")).await;
    }
    env.run_until_idle().await;
    assert_eq!(env.describe(&pinned_job).await.status, "Complete");
    for key in keys {
        assert_eq!(
            env.get(&env.dst, &format!("copied/{key}")).await,
            Some(format!("planned {key}").into_bytes())
        );
        assert_eq!(
            env.get(&env.dst, &format!("unpinned/{key}")).await,
            Some(format!("overwritten {key}").into_bytes()),
            "S3 semantics without pinning"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn as_of_copies_each_key_as_it_was_at_that_time() {
    let env = TestEnv::new().await;
    env.put(&env.src, "t/changed", "before").await;
    env.put(&env.src, "t/deleted-later", "existed").await;
    env.put(&env.src, "t/deleted-before", "gone").await;
    env.clients
        .s3
        .delete_object()
        .bucket(&env.src)
        .key("t/deleted-before")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let as_of = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.put(&env.src, "t/changed", "after").await;
    env.put(&env.src, "t/created-later", "new").await;
    env.clients
        .s3
        .delete_object()
        .bucket(&env.src)
        .key("t/deleted-later")
        .send()
        .await
        .unwrap();

    let mut document = generator(
        &env,
        json!({"KeyNameConstraint": {"MatchAnyPrefix": ["t/"]}}),
        false,
    );
    document["ConfirmationRequired"] = json!(false);
    document["Batchops"] = json!({"AsOf": as_of});
    let job = env.create(document).await;
    env.run_until_idle().await;
    assert_eq!(env.describe(&job).await.status, "Complete");
    assert_eq!(
        env.keys(&env.dst).await,
        vec!["copied/t/changed", "copied/t/deleted-later"]
    );
    assert_eq!(
        env.get(&env.dst, "copied/t/changed").await,
        Some(b"before".to_vec())
    );
    assert_eq!(
        env.get(&env.dst, "copied/t/deleted-later").await,
        Some(b"existed".to_vec())
    );

    // A CSV manifest with an as-of time looks each key's versions up.
    let manifest = env
        .manifest(
            "as-of",
            &[
                format!("{},t/changed", env.src),
                format!("{},t/created-later", env.src),
            ],
        )
        .await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["Operation"]["S3PutObjectCopy"]["TargetKeyPrefix"] = json!("csv");
    document["Batchops"] = json!({"AsOf": as_of});
    let job = env.create(document).await;
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    assert_eq!(
        (
            described.progress_summary.number_of_tasks_succeeded,
            described.progress_summary.number_of_tasks_failed
        ),
        (1, 1)
    );
    assert_eq!(
        env.get(&env.dst, "csv/t/changed").await,
        Some(b"before".to_vec())
    );
    let audit = env.audit(&job).await;
    let failed = audit
        .rows
        .iter()
        .find(|r| r.task_status == "failed")
        .unwrap();
    assert!(
        failed.message.contains("no version of this key existed at"),
        "{}",
        failed.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_reports_what_the_job_then_plans() {
    let env = TestEnv::with_vars(&[("BATCHOPS_CHUNK_SIZE", "4")]).await;
    let mut lines: Vec<String> = (0..23).map(|i| format!("{},d{i:02}", env.src)).collect();
    lines.insert(5, "only-one-field".to_string());
    lines.insert(17, format!("{},bad%zz", env.src));
    let manifest = env.manifest("dry", &lines).await;
    let location = Location::S3(ManifestObject {
        bucket: env.src.clone(),
        key: manifest.clone(),
        version_id: None,
        etag: None,
    });
    let mut writer = ChunkWriter {
        clients: Some(env.app.data.stack()),
        control: None,
        output: None,
        pin_with_head: false,
        as_of_lookup: None,
        concurrency: 4,
        task_limit: None,
        tasks_written: 0,
        stats: Default::default(),
    };
    let options = SourceOptions {
        chunk_size: 4,
        keep_etags: false,
        as_of: None,
    };
    let source = SourceSpec::Csv {
        location,
        fields: ManifestFields::bucket_key(),
        expected_etag: None,
    };
    let report = dry_run(
        Reader::new(Some(env.app.s3.clone())),
        source,
        options,
        &mut writer,
    )
    .await
    .unwrap();
    assert!(report.failure.is_none());
    assert_eq!(
        (
            report.progress.tasks,
            report.progress.next_seq,
            report.progress.malformed
        ),
        (25, 7, 2)
    );
    let malformed_lines: Vec<u64> = report
        .stats
        .malformed
        .iter()
        .map(|(line, _)| *line)
        .collect();
    assert_eq!(malformed_lines, vec![6, 18]);
    assert_eq!(writer.stats.s3_puts, 0, "a dry run writes nothing");

    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    plan_to(&env, &job).await;
    let record = env.app.store.get_job(&job).await.unwrap();
    assert_eq!(record.plan.progress.tasks, report.progress.tasks);
    assert_eq!(record.plan.progress.next_seq, report.progress.next_seq);
    assert_eq!(record.plan.progress.malformed, report.progress.malformed);
    let planned_malformed: Vec<u64> = env
        .planned(&job)
        .await
        .into_iter()
        .filter(|(_, k, ..)| k.starts_with("MALFORMED"))
        .map(|(l, ..)| l)
        .collect();
    assert_eq!(planned_malformed, malformed_lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parquet_and_orc_inventories_run_like_csv_ones() {
    use batchops_columnar::{write_orc, write_parquet, InventoryRecord};
    let env = TestEnv::new().await;
    let v1 = env.put(&env.src, "col/a b", "A").await;
    let v2 = env.put(&env.src, "col/ü+", "U").await;
    let record = |key: &str, version: &str, delete_marker: bool| InventoryRecord {
        bucket: env.src.clone(),
        key: key.to_string(),
        version_id: Some(version.to_string()),
        is_latest: Some(true),
        is_delete_marker: delete_marker,
        size: Some(1),
        last_modified: Some("2026-11-21T00:00:00.000Z".into()),
        e_tag: Some("e".into()),
        storage_class: Some("STANDARD".into()),
    };
    let records = vec![
        record("col/a b", &v1, false),
        record("col/gone", "dm", true),
        record("col/ü+", &v2, false),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (format, file) in [("Parquet", "part.parquet"), ("ORC", "part.orc")] {
        let path = dir.path().join(file);
        if format == "Parquet" {
            write_parquet(&path, &records).unwrap();
        } else {
            write_orc(&path, &records).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        let schema = "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); optional binary version_id (UTF8); }";
        let manifest = env
            .inventory(
                &format.to_lowercase(),
                format,
                schema,
                vec![(file.to_string(), bytes)],
            )
            .await;
        let mut document = env.inventory_request(&manifest);
        document["Operation"]["S3PutObjectCopy"]["TargetKeyPrefix"] = json!(format.to_lowercase());
        let job = env.create(document).await;
        env.run_until_idle().await;
        let described = env.describe(&job).await;
        assert_eq!(
            described.status, "Complete",
            "{format}: {:?}",
            described.failure_reasons
        );
        assert_eq!(
            described.progress_summary.number_of_tasks_succeeded, 2,
            "{format}"
        );
        let prefix = format.to_lowercase();
        assert_eq!(
            env.get(&env.dst, &format!("{prefix}/col/a b")).await,
            Some(b"A".to_vec()),
            "{format}"
        );
        assert_eq!(
            env.get(&env.dst, &format!("{prefix}/col/ü+")).await,
            Some(b"U".to_vec()),
            "{format}"
        );
    }
    let planned: BTreeSet<String> = env.keys(&env.dst).await.into_iter().collect();
    assert_eq!(planned.len(), 4);
}

/// A size the manifest carries is what a copy counts: the copy sends CopyObject without a HEAD
/// first (a HEAD would have counted the objects' real sizes). A CSV line carries no size: the
/// copy goes through too, and its bytes are left out, as S3 Batch Operations leaves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_count_the_manifests_sizes_without_a_head_and_csv_lines_none() {
    let env = TestEnv::new().await;
    let a = env.put(&env.src, "sized/a", "12345").await;
    let b = env.put(&env.src, "sized/b", "1234567").await;
    // The inventory says 100 and 200 bytes (a report older than the objects' last writes).
    let rows = [
        row(&env.src, "sized/a", &a, true, false, "100"),
        row(&env.src, "sized/b", &b, true, false, "200"),
    ]
    .concat();
    let manifest = env
        .inventory(
            "sized",
            "CSV",
            SCHEMA,
            vec![("one.csv.gz".into(), gzip(&rows))],
        )
        .await;
    let job = env.create(env.inventory_request(&manifest)).await;
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 2);
    assert_eq!(described.progress_summary.number_of_bytes_copied, 300);
    assert_eq!(
        env.get(&env.dst, "copied/sized/b").await.as_deref(),
        Some(&b"1234567"[..])
    );

    let csv = env
        .manifest(
            "sized",
            &[
                format!("{},sized/a", env.src),
                format!("{},sized/b", env.src),
            ],
        )
        .await;
    let mut document = env.request_json(&csv, &["Bucket", "Key"]);
    document["Operation"]["S3PutObjectCopy"]["TargetKeyPrefix"] = json!("csv");
    let job = env.create(document).await;
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 2);
    assert_eq!(described.progress_summary.number_of_bytes_copied, 0);
    assert_eq!(
        env.get(&env.dst, "csv/sized/a").await.as_deref(),
        Some(&b"12345"[..])
    );
}
