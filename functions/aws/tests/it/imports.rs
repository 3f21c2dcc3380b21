//! Imports from another object store (the second moto server of the export tests, an
//! S3-compatible endpoint with credentials of its own held in a Secrets Manager secret; and
//! Azurite and the GCS emulator, each export store) into a bucket of the stack's account.

use crate::backups::{completed_run, policy};
use crate::exports::{
    backed_up, env_with_5_mib_parts, exported_snapshot, other_get, other_location, twenty_mib,
    Store,
};
use crate::harness::{md5_hex, TestEnv};
use batchops_aws::backup::{self, RestoreRequest};
use batchops_aws::imports::{self, ImportRequest};
use batchops_aws::runtime::{run, RunOptions};
use batchops_core::export::{parse_manifest, StoreLocation};
use batchops_core::import::{SOURCE_ETAG_METADATA, SOURCE_LAST_MODIFIED_METADATA};
use std::time::Duration;

/// `location` with another prefix (same store, same credentials).
fn under(location: &StoreLocation, new_prefix: &str) -> StoreLocation {
    let StoreLocation::S3 {
        bucket,
        endpoint,
        region,
        path_style,
        secret_arn,
        ..
    } = location
    else {
        unreachable!("the other store is S3-compatible")
    };
    StoreLocation::S3 {
        bucket: bucket.clone(),
        prefix: new_prefix.to_string(),
        endpoint: endpoint.clone(),
        region: region.clone(),
        path_style: *path_style,
        secret_arn: secret_arn.clone(),
    }
}

pub(crate) fn here(bucket: &str, prefix: &str) -> StoreLocation {
    StoreLocation::parse(&format!("s3://{bucket}/{prefix}"), &Default::default()).unwrap()
}

async fn new_bucket(env: &TestEnv, name: &str) -> String {
    env.clients
        .s3
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .unwrap();
    name.to_string()
}

/// The small objects of the import round trips (awkward keys), beside `data/big.bin`.
const SMALL: [&str; 4] = [
    "data/a b+c=d&e?.txt",
    "data/ünï/cødé %41",
    "data/x#y/[1]~'\"",
    "data/dir/.hidden",
];

/// Restores `prefix` of policy `name`'s latest snapshot under `r/` of a fresh bucket, to its
/// end (Complete); returns the bucket.
async fn restored(env: &TestEnv, name: &str, prefix: &str) -> String {
    let bucket = new_bucket(env, &format!("{}-restore", env.dst)).await;
    let job = backup::start_restore(
        &env.app,
        name,
        &RestoreRequest {
            to: Some((bucket.clone(), "r/".into())),
            prefix: Some(prefix.into()),
            allow_overwrite: true,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .job_id;
    env.run_until_idle().await;
    assert_eq!(env.describe(&job).await.status, "Complete");
    bucket
}

/// Runs an import to its end; returns its ID and (imported, unchanged) report rows' keys.
async fn import(
    env: &TestEnv,
    from: &StoreLocation,
    to: &StoreLocation,
) -> (String, Vec<String>, Vec<String>) {
    let created = imports::create_import(
        &env.app,
        &ImportRequest {
            from: from.clone(),
            to: to.clone(),
        },
    )
    .await
    .unwrap();
    env.run_until_idle().await;
    let described = imports::describe_import(&env.app, &created.job_id)
        .await
        .unwrap();
    assert_eq!(described.status, "Success", "{described:?}");
    let report = env.audit(&created.job_id).await;
    let (mut imported, mut unchanged) = (Vec::new(), Vec::new());
    for row in &report.rows {
        assert_eq!(row.task_status, "succeeded", "{row:?}");
        let key = batchops_core::encoding::decode_key(&row.key_encoded).unwrap();
        if row.message.starts_with("Imported ") {
            imported.push(key);
        } else if row.message.starts_with("Unchanged ") {
            unchanged.push(key);
        } else {
            panic!("unexpected row {row:?}");
        }
    }
    imported.sort();
    unchanged.sort();
    (created.job_id, imported, unchanged)
}

#[tokio::test]
async fn an_exported_snapshot_imported_back_copies_only_what_changed_on_later_runs() {
    let env = env_with_5_mib_parts().await;
    let big = twenty_mib();
    backed_up(&env, "imp", &SMALL, &big).await;
    let (other, bucket, to) = other_location(&env).await;
    exported_snapshot(&env, "imp", &to).await;

    // Back into a fresh bucket: every object, byte for byte; the export's manifest under the
    // source prefix is batchops' bookkeeping and stays where it is.
    let fresh = new_bucket(&env, &format!("{}-imported", env.dst)).await;
    let into = here(&fresh, "back");
    let (first, imported, unchanged) = import(&env, &to, &into).await;
    let mut all: Vec<String> = SMALL
        .iter()
        .chain(["data/big.bin"].iter())
        .map(|k| format!("exp/{k}"))
        .collect();
    all.sort();
    assert_eq!(imported, all);
    assert!(unchanged.is_empty());
    for key in SMALL {
        assert_eq!(
            env.get(&fresh, &format!("back/{key}")).await,
            Some(format!("body of {key}").into_bytes()),
            "{key}"
        );
    }
    assert_eq!(
        env.get(&fresh, "back/data/big.bin").await,
        Some(big.clone())
    );
    // The copy records the source's identity.
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&fresh)
        .key("back/data/big.bin")
        .send()
        .await
        .unwrap();
    let metadata = head.metadata().unwrap();
    let listed = other
        .head_object()
        .bucket(&bucket)
        .key("exp/data/big.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        metadata.get(SOURCE_ETAG_METADATA).map(String::as_str),
        listed.e_tag().map(|e| e.trim_matches('"'))
    );
    assert!(metadata.contains_key(SOURCE_LAST_MODIFIED_METADATA));
    // The import manifest (the export manifest's format) lists what was copied; verify checks it.
    let described = imports::describe_import(&env.app, &first).await.unwrap();
    let manifest = env
        .get(&fresh, &described.manifest_key)
        .await
        .expect("import manifest");
    assert!(described
        .manifest_key
        .starts_with("back/.batchops/imports/"));
    let lines = parse_manifest(&String::from_utf8(manifest).unwrap()).unwrap();
    assert_eq!(lines.len(), 5);
    let big_line = lines.iter().find(|l| l.key == "exp/data/big.bin").unwrap();
    assert_eq!(big_line.destination_key, "back/data/big.bin");
    assert_eq!(big_line.md5, md5_hex(&big));
    assert_eq!(big_line.size, big.len() as u64);
    assert!(big_line.source_etag.is_some());
    let verified = imports::verify_import(&env.app, &first).await.unwrap();
    assert_eq!((verified.objects, verified.verified), (5, 5));
    assert!(verified.mismatches.is_empty(), "{:?}", verified.mismatches);

    // Again: nothing changed, nothing copied.
    let (_, imported, unchanged) = import(&env, &to, &into).await;
    assert!(imported.is_empty(), "{imported:?}");
    assert_eq!(unchanged, all);

    // One object changes at the source (same size, other bytes): only it is copied.
    let changed = "exp/data/a b+c=d&e?.txt";
    let same_size = "BODY OF data/a b+c=d&e?.txt";
    other
        .put_object()
        .bucket(&bucket)
        .key(changed)
        .body(same_size.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    let (third, imported, unchanged) = import(&env, &to, &into).await;
    assert_eq!(imported, vec![changed.to_string()]);
    assert_eq!(unchanged.len(), 4);
    assert_eq!(
        env.get(&fresh, "back/data/a b+c=d&e?.txt").await,
        Some(same_size.as_bytes().to_vec())
    );
    let verified = imports::verify_import(&env.app, &third).await.unwrap();
    assert_eq!((verified.objects, verified.verified), (1, 1));
    // An object written at the destination by someone else is not taken for the import's copy.
    env.put(&fresh, "back/data/dir/.hidden", "body of data/dir/.hidden")
        .await;
    let (_, imported, _) = import(&env, &to, &into).await;
    assert_eq!(imported, vec!["exp/data/dir/.hidden".to_string()]);

    let listed = imports::list_imports(&env.app).await.unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0].import_id.len(), first.len());
}

/// A snapshot (awkward keys, a 20 MiB object written in parts) exported to `store` and imported
/// back into the policy's source prefix: byte for byte, with its manifest verified; a second
/// import copies nothing, one object changed at the store (same size) is the only one copied by
/// a third; then the next backup takes the imported objects and a restore brings them back.
async fn exported_snapshot_imported_back_and_restored(store: Store) {
    let env = env_with_5_mib_parts().await;
    let big = twenty_mib();
    backed_up(&env, "round", &SMALL, &big).await;
    let to = store.destination(&env).await;
    exported_snapshot(&env, "round", &to.location).await;

    // Into the backed-up prefix of the source bucket; the export's manifest stays behind.
    let into = here(&env.src, "data/back");
    let (first, imported, unchanged) = import(&env, &to.location, &into).await;
    let mut all: Vec<String> = SMALL
        .iter()
        .chain(["data/big.bin"].iter())
        .map(|k| format!("{}{k}", to.prefix))
        .collect();
    all.sort();
    assert_eq!(imported, all);
    assert!(unchanged.is_empty(), "{unchanged:?}");
    let mut expected: Vec<(String, Vec<u8>)> = SMALL
        .iter()
        .map(|k| (k.to_string(), format!("body of {k}").into_bytes()))
        .collect();
    expected.push(("data/big.bin".to_string(), big.clone()));
    for (key, body) in &expected {
        assert!(
            env.get(&env.src, &format!("data/back/{key}"))
                .await
                .as_ref()
                == Some(body),
            "{key}"
        );
    }
    let verified = imports::verify_import(&env.app, &first).await.unwrap();
    assert_eq!((verified.objects, verified.verified), (5, 5));
    assert!(verified.mismatches.is_empty(), "{:?}", verified.mismatches);

    // Again: nothing changed, nothing copied; then one object changes at the store.
    let (_, imported, unchanged) = import(&env, &to.location, &into).await;
    assert!(imported.is_empty(), "{imported:?}");
    assert_eq!(unchanged, all);
    let changed = format!("{}data/a b+c=d&e?.txt", to.prefix);
    let same_size = b"BODY OF data/a b+c=d&e?.txt".to_vec();
    to.put(&changed, &same_size).await;
    let (_, imported, unchanged) = import(&env, &to.location, &into).await;
    assert_eq!(imported, vec![changed]);
    assert_eq!(unchanged.len(), 4);
    expected[0].1 = same_size;

    // The next backup takes the imported objects; a restore brings them back.
    completed_run(&env, "round").await;
    let restored = restored(&env, "round", "data/back/").await;
    for (key, body) in &expected {
        assert!(
            env.get(&restored, &format!("r/data/back/{key}"))
                .await
                .as_ref()
                == Some(body),
            "{key}"
        );
    }
}

#[tokio::test]
async fn a_snapshot_exported_to_azure_blob_storage_is_imported_back_and_restored() {
    exported_snapshot_imported_back_and_restored(Store::Azurite).await;
}

#[tokio::test]
async fn a_snapshot_exported_to_google_cloud_storage_is_imported_back_and_restored() {
    exported_snapshot_imported_back_and_restored(Store::Gcs).await;
}

#[tokio::test]
async fn a_cancelled_import_keeps_what_it_wrote_and_lists_it() {
    // One task at a time, five per chunk: the import is cancelled after its first objects.
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_CHUNK_SIZE", "5"),
        ("BATCHOPS_TASK_CONCURRENCY", "1"),
    ])
    .await;
    let (other, bucket, location) = other_location(&env).await;
    let keys: Vec<String> = (0..40).map(|i| format!("many/{i:03} obj")).collect();
    for key in &keys {
        other
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(format!("object {key}").into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    let from = under(&location, "many/");
    let created = imports::create_import(
        &env.app,
        &ImportRequest {
            from,
            to: here(&env.dst, "in"),
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
    while env
        .keys(&env.dst)
        .await
        .iter()
        .all(|k| !k.starts_with("in/"))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
        assert!(waited < 3000, "nothing was imported");
    }
    let cancelled = imports::cancel_import(&env.app, &created.job_id)
        .await
        .unwrap();
    assert_eq!(cancelled.status, "In progress");
    runtime.await.unwrap().unwrap();
    let described = imports::describe_import(&env.app, &created.job_id)
        .await
        .unwrap();
    assert_eq!(described.status, "Cancelled", "{described:?}");
    let written: Vec<String> = env
        .keys(&env.dst)
        .await
        .into_iter()
        .filter(|k| k.starts_with("in/") && !k.starts_with("in/.batchops/"))
        .collect();
    assert!(
        !written.is_empty() && written.len() < keys.len(),
        "{} of {} written",
        written.len(),
        keys.len()
    );
    for key in &written {
        let source_key = key.strip_prefix("in/").unwrap();
        assert_eq!(
            env.get(&env.dst, key).await,
            Some(format!("object many/{source_key}").into_bytes())
        );
    }
    // The manifest lists exactly the objects written before the cancel.
    let verified = imports::verify_import(&env.app, &created.job_id)
        .await
        .unwrap();
    assert!(verified.mismatches.is_empty(), "{:?}", verified.mismatches);
    assert_eq!(verified.verified, written.len() as u64);
    assert_eq!(
        described.progress_summary.number_of_tasks_succeeded,
        written.len() as u64
    );
    // The source is left as it was.
    let listed = other
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("many/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), keys.len());
}

#[tokio::test]
async fn an_import_into_a_backed_up_bucket_is_backed_up_and_restored() {
    let env = TestEnv::new().await;
    backup::put_policy(&env.app, policy(&env, "covered"))
        .await
        .unwrap();
    let (other, bucket, location) = other_location(&env).await;
    for key in ["onprem/one", "onprem/two words ü+%"] {
        other
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(format!("object {key}").into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    // The policy backs up `data/` of the source bucket: import there.
    let (_, imported, _) = import(
        &env,
        &under(&location, "onprem/"),
        &here(&env.src, "data/in"),
    )
    .await;
    assert_eq!(imported.len(), 2);
    completed_run(&env, "covered").await;
    let restored = restored(&env, "covered", "data/in/").await;
    for key in ["one", "two words ü+%"] {
        assert_eq!(
            env.get(&restored, &format!("r/data/in/{key}")).await,
            Some(format!("object onprem/{key}").into_bytes()),
            "{key}"
        );
    }
    assert_eq!(
        other_get(&other, &bucket, "onprem/one").await,
        Some(b"object onprem/one".to_vec())
    );
}

#[tokio::test]
async fn imports_over_http_are_created_listed_described_verified_and_refused_clearly() {
    use crate::api::{assert_error, call};
    let env = TestEnv::new().await;
    let (other, bucket, location) = other_location(&env).await;
    other
        .put_object()
        .bucket(&bucket)
        .key("exp/http one")
        .body(b"one".to_vec().into())
        .send()
        .await
        .unwrap();
    let StoreLocation::S3 {
        secret_arn,
        endpoint,
        ..
    } = &location
    else {
        unreachable!()
    };
    let from = serde_json::json!({"url": format!("s3://{bucket}/exp"), "endpoint": endpoint,
        "pathStyle": true, "secretArn": secret_arn});
    // Imports write into S3 of this account only.
    let bad = call(
        &env,
        "POST",
        "/imports",
        &[],
        serde_json::json!({"From": from, "To": from}),
    )
    .await;
    assert_error(
        &bad,
        400,
        "InvalidRequest",
        "To: an import writes into S3 in this account",
    );
    let bad = call(
        &env,
        "POST",
        "/imports",
        &[],
        serde_json::json!({"From": "ftp://x/y", "To": format!("s3://{}/in", env.dst)}),
    )
    .await;
    assert_error(
        &bad,
        400,
        "InvalidRequest",
        "From: `ftp://` is not a supported store",
    );
    let created = call(
        &env,
        "POST",
        "/imports",
        &[],
        serde_json::json!({"From": from, "To": format!("s3://{}/in", env.dst)}),
    )
    .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let id = created.body["ImportId"].as_str().unwrap().to_string();
    env.run_until_idle().await;
    let described = call(
        &env,
        "GET",
        &format!("/imports/{id}"),
        &[],
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(described.body["Status"], "Success", "{:?}", described.body);
    assert_eq!(described.body["JobStatus"], "Complete");
    assert_eq!(
        env.get(&env.dst, "in/http one").await,
        Some(b"one".to_vec())
    );
    let listed = call(&env, "GET", "/imports", &[], serde_json::Value::Null).await;
    assert_eq!(listed.body["Imports"][0]["ImportId"], id.as_str());
    let verified = call(
        &env,
        "GET",
        &format!("/imports/{id}/verify"),
        &[],
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(verified.body["Verified"], 1, "{:?}", verified.body);
    assert_eq!(verified.body["ImportId"], id.as_str());
    let cancel = call(
        &env,
        "POST",
        &format!("/imports/{id}/cancel"),
        &[],
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(cancel.status, 409, "{:?}", cancel.body);
    let wrong = call(
        &env,
        "DELETE",
        &format!("/imports/{id}"),
        &[],
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(wrong.status, 405, "{:?}", wrong.body);
}
