//! Exports to another object store: a second moto server with credentials of its own (an
//! S3-compatible endpoint, started by scripts/test.sh; BATCHOPS_TEST_OTHER_S3 names it),
//! reached through a Secrets Manager secret held by the first moto.

use crate::backups::{completed_run, policy};
use crate::harness::{md5_hex, TestEnv};
use batchops_aws::exports::{self, ExportRequest, ExportSource};
use batchops_aws::runtime::{run, RunOptions};
use batchops_core::encoding::encode_key;
use batchops_core::export::{parse_manifest, LocationOptions, StoreLocation};
use batchops_core::request::Manifest;
use std::time::Duration;

const OTHER_KEY_ID: &str = "otherstore";
const OTHER_SECRET: &str = "otherstore-secret";

fn other_endpoint() -> String {
    std::env::var("BATCHOPS_TEST_OTHER_S3").unwrap_or_else(|_| {
        panic!("BATCHOPS_TEST_OTHER_S3 is not set: run the tests through scripts/test.sh, which starts the second moto")
    })
}

/// A client of the other store, with its own credentials.
fn other_s3() -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(other_endpoint())
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            OTHER_KEY_ID,
            OTHER_SECRET,
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A bucket on the other store, its credentials in a secret, and its location under `exp/`.
async fn other_location(env: &TestEnv) -> (aws_sdk_s3::Client, String, StoreLocation) {
    let other = other_s3();
    let bucket = format!("other-{}", &env.src[4..]);
    other.create_bucket().bucket(&bucket).send().await.unwrap();
    let secret = env
        .app
        .secrets
        .create_secret()
        .name(format!("export-{bucket}"))
        .secret_string(
            serde_json::json!({"accessKeyId": OTHER_KEY_ID, "secretAccessKey": OTHER_SECRET})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let location = StoreLocation::parse(
        &format!("s3://{bucket}/exp"),
        &LocationOptions {
            endpoint: Some(other_endpoint()),
            region: Some("us-east-1".into()),
            path_style: true,
            secret_arn: secret.arn().map(str::to_string),
        },
    )
    .unwrap();
    (other, bucket, location)
}

async fn other_get(other: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let answer = other
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    Some(answer.body.collect().await.ok()?.into_bytes().to_vec())
}

async fn other_keys(other: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let listed = other
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn an_exported_snapshot_arrives_byte_for_byte_with_its_manifest() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_EXPORT_PART_BYTES", "5242880"),
        ("BATCHOPS_EXPORT_PART_CONCURRENCY", "2"),
    ])
    .await;
    batchops_aws::backup::put_policy(&env.app, policy(&env, "exp"))
        .await
        .unwrap();
    let big: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let small = [
        "data/a b+c=d&e?.txt",
        "data/ünï/cødé %41",
        "data/x#y/[1]~'\"",
        "data/dir/.hidden",
    ];
    for key in small {
        env.put(&env.src, key, format!("body of {key}")).await;
    }
    env.put(&env.src, "data/big.bin", big.clone()).await;
    // The object store library cannot name a key with an empty segment: that task fails.
    env.put(&env.src, "data/dir//double", "x").await;
    completed_run(&env, "exp").await;
    let (other, bucket, to) = other_location(&env).await;

    let created = exports::create_export(
        &env.app,
        &ExportRequest {
            source: ExportSource::Snapshot {
                policy: "exp".into(),
                snapshot: None,
                as_of: None,
                prefix: None,
            },
            to,
        },
    )
    .await
    .unwrap();
    env.run_until_idle().await;
    let described = exports::describe_export(&env.app, &created.job_id)
        .await
        .unwrap();
    assert_eq!(described.status, "Success", "{described:?}");
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 5);
    assert_eq!(described.progress_summary.number_of_tasks_failed, 1);

    for key in small {
        assert_eq!(
            other_get(&other, &bucket, &format!("exp/{key}")).await,
            Some(format!("body of {key}").into_bytes()),
            "{key}"
        );
    }
    assert_eq!(
        other_get(&other, &bucket, "exp/data/big.bin").await,
        Some(big.clone())
    );
    let report = env.audit(&created.job_id).await;
    let failed = report
        .rows
        .iter()
        .find(|row| row.task_status == "failed")
        .expect("a failed row");
    assert_eq!(failed.error_code, "UnsupportedKey");
    assert!(
        failed
            .key_encoded
            .ends_with(&encode_key("data/dir//double")),
        "{failed:?}"
    );

    // The manifest at the destination lists what was exported, and verify checks it.
    let manifest = other_get(&other, &bucket, &described.manifest_key)
        .await
        .expect("export manifest");
    let lines = parse_manifest(&String::from_utf8(manifest).unwrap()).unwrap();
    assert_eq!(lines.len(), 5);
    let big_line = lines
        .iter()
        .find(|l| l.destination_key == "exp/data/big.bin")
        .unwrap();
    assert_eq!(big_line.size, big.len() as u64);
    assert_eq!(big_line.md5, md5_hex(&big));
    assert!(big_line.version_id.is_some(), "the backup copy's version");
    let verified = exports::verify_export(&env.app, &created.job_id)
        .await
        .unwrap();
    assert_eq!((verified.objects, verified.verified), (5, 5));
    assert!(verified.mismatches.is_empty(), "{:?}", verified.mismatches);

    // A changed object at the destination is found.
    other
        .put_object()
        .bucket(&bucket)
        .key("exp/data/big.bin")
        .body(b"tampered".to_vec().into())
        .send()
        .await
        .unwrap();
    let verified = exports::verify_export(&env.app, &created.job_id)
        .await
        .unwrap();
    assert_eq!(verified.verified, 4);
    assert_eq!(verified.mismatches.len(), 1, "{:?}", verified.mismatches);
    assert!(verified.mismatches[0].starts_with("exp/data/big.bin: 8 bytes"));

    let listed = exports::list_exports(&env.app).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].export_id, created.job_id);
}

#[tokio::test]
async fn a_cancelled_export_keeps_what_it_wrote_and_lists_it() {
    // One task at a time, five per chunk: the export is cancelled after its first objects.
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_CHUNK_SIZE", "5"),
        ("BATCHOPS_TASK_CONCURRENCY", "1"),
    ])
    .await;
    let keys: Vec<String> = (0..40).map(|i| format!("many/{i:03} obj")).collect();
    for key in &keys {
        env.put(&env.src, key, format!("object {key}")).await;
    }
    let lines: Vec<String> = keys
        .iter()
        .map(|k| format!("{},{}", env.src, encode_key(k)))
        .collect();
    let manifest_key = env.manifest("export", &lines).await;
    let manifest: Manifest = serde_json::from_value(serde_json::json!({
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
        "Location": {"ObjectArn": format!("arn:aws:s3:::{}/{}", env.src, manifest_key)}
    }))
    .unwrap();
    let (other, bucket, to) = other_location(&env).await;
    let created = exports::create_export(
        &env.app,
        &ExportRequest {
            source: ExportSource::Manifest(manifest),
            to,
        },
    )
    .await
    .unwrap();
    let runtime = tokio::spawn(run(
        env.app.clone(),
        RunOptions {
            until_idle: true,
            concurrency: 1,
            sweep_interval: Duration::from_millis(200),
            max_duration: Some(Duration::from_secs(120)),
        },
    ));
    let mut waited = 0;
    while other_keys(&other, &bucket, "exp/many/").await.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
        assert!(waited < 3000, "nothing was exported");
    }
    let cancelled = exports::cancel_export(&env.app, &created.job_id)
        .await
        .unwrap();
    assert_eq!(cancelled.status, "In progress");
    runtime.await.unwrap().unwrap();
    let described = exports::describe_export(&env.app, &created.job_id)
        .await
        .unwrap();
    assert_eq!(described.status, "Cancelled", "{described:?}");
    let written = other_keys(&other, &bucket, "exp/many/").await;
    assert!(
        !written.is_empty() && written.len() < keys.len(),
        "{} of {} written",
        written.len(),
        keys.len()
    );
    for key in &written {
        let source_key = key.strip_prefix("exp/").unwrap();
        assert_eq!(
            other_get(&other, &bucket, key).await,
            Some(format!("object {source_key}").into_bytes())
        );
    }
    // The manifest lists exactly the objects written before the cancel.
    let verified = exports::verify_export(&env.app, &created.job_id)
        .await
        .unwrap();
    assert!(verified.mismatches.is_empty(), "{:?}", verified.mismatches);
    assert_eq!(verified.verified, written.len() as u64);
    assert_eq!(
        described.progress_summary.number_of_tasks_succeeded,
        written.len() as u64
    );
}

#[tokio::test]
async fn exports_over_http_are_created_listed_described_and_verified() {
    use crate::api::{assert_error, call};
    let env = TestEnv::new().await;
    let keys = ["http/one", "http/two words"];
    for key in keys {
        env.put(&env.src, key, format!("object {key}")).await;
    }
    let lines: Vec<String> = keys
        .iter()
        .map(|k| format!("{},{}", env.src, encode_key(k)))
        .collect();
    let manifest_key = env.manifest("http", &lines).await;
    let (other, bucket, to) = other_location(&env).await;
    let StoreLocation::S3 { secret_arn, .. } = &to else {
        unreachable!()
    };
    let manifest = serde_json::json!({
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
        "Location": {"ObjectArn": format!("arn:aws:s3:::{}/{}", env.src, manifest_key)}
    });
    let bad = call(
        &env,
        "POST",
        "/exports",
        &[],
        serde_json::json!({"Manifest": manifest, "To": {"url": format!("s3://{bucket}/x"), "endpoint": other_endpoint()}}),
    )
    .await;
    assert_error(
        &bad,
        400,
        "InvalidRequest",
        "To: the S3-compatible endpoint",
    );
    let created = call(
        &env,
        "POST",
        "/exports",
        &[],
        serde_json::json!({"Manifest": manifest, "To": {"url": format!("s3://{bucket}/api"),
            "endpoint": other_endpoint(), "pathStyle": true, "secretArn": secret_arn}}),
    )
    .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let id = created.body["ExportId"].as_str().unwrap().to_string();
    env.run_until_idle().await;
    let described = call(
        &env,
        "GET",
        &format!("/exports/{id}"),
        &[],
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(described.body["Status"], "Success", "{:?}", described.body);
    assert_eq!(described.body["JobStatus"], "Complete");
    assert_eq!(
        other_get(&other, &bucket, "api/http/two words").await,
        Some(b"object http/two words".to_vec())
    );
    let listed = call(&env, "GET", "/exports", &[], serde_json::Value::Null).await;
    assert_eq!(listed.body["Exports"][0]["ExportId"], id.as_str());
    let verified = call(
        &env,
        "GET",
        &format!("/exports/{id}/verify"),
        &[],
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(verified.body["Verified"], 2, "{:?}", verified.body);
    let cancel = call(
        &env,
        "POST",
        &format!("/exports/{id}/cancel"),
        &[],
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(cancel.status, 409, "{:?}", cancel.body);
}
