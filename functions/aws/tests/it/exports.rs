//! Exports to other object stores, each started by scripts/test.sh: a second moto server with
//! credentials of its own (an S3-compatible endpoint; BATCHOPS_TEST_OTHER_S3), Azurite's Blob
//! service (BATCHOPS_TEST_AZURE_BLOB) and gcp-storage-emulator through scripts/gcs_emulator.py
//! (BATCHOPS_TEST_GCS). Credentials are Secrets Manager secrets held by the first moto. One test
//! body runs per store.

use crate::backups::{completed_run, policy};
use crate::harness::{md5_hex, FaultProxy, TestEnv};
use batchops_aws::exports::{self, ExportRequest, ExportSource};
use batchops_aws::runtime::{run, RunOptions};
use batchops_aws::stores::{self, OpenStore};
use batchops_core::encoding::encode_key;
use batchops_core::export::{parse_manifest, LocationOptions, StoreLocation};
use batchops_core::request::Manifest;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use std::time::Duration;

const OTHER_KEY_ID: &str = "otherstore";
const OTHER_SECRET: &str = "otherstore-secret";
/// Azurite's well-known development account and key (scripts/local-stack.sh).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The Azurite container and the GCS emulator's bucket scripts/local-stack.sh creates.
const EMULATOR_CONTAINER: &str = "batchops-exports";

fn test_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts the export stores")
    })
}

pub(crate) fn other_endpoint() -> String {
    test_var("BATCHOPS_TEST_OTHER_S3")
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
pub(crate) async fn other_location(env: &TestEnv) -> (aws_sdk_s3::Client, String, StoreLocation) {
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

pub(crate) async fn other_get(
    other: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Option<Vec<u8>> {
    let answer = other
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    Some(answer.body.collect().await.ok()?.into_bytes().to_vec())
}

/// The stores exports are tested against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    OtherS3,
    Azurite,
    Gcs,
}

/// Where one test exports to, and the store opened to read it back.
pub(crate) struct Destination {
    pub(crate) location: StoreLocation,
    store: OpenStore,
    /// The location's key prefix, with its trailing `/`.
    pub(crate) prefix: String,
}

async fn secret(env: &TestEnv, name: &str, value: serde_json::Value) -> String {
    let created = env
        .app
        .secrets
        .create_secret()
        .name(format!("export-{name}-{}", &env.src[4..]))
        .secret_string(value.to_string())
        .send()
        .await
        .unwrap();
    created.arn().unwrap().to_string()
}

/// `gs://batchops-exports/exp-<unique>` reached at `base_url`, its secret (named after
/// `secret_name`) a service account key as Google issues it, pointed there: no OAuth.
async fn gcs_location(env: &TestEnv, base_url: &str, secret_name: &str) -> StoreLocation {
    let key = serde_json::json!({
        "type": "service_account",
        "private_key": "unused: disable_oauth sends no token",
        "private_key_id": "emulator",
        "client_email": "batchops-tests@example.iam.gserviceaccount.com",
        "disable_oauth": true,
        "gcs_base_url": base_url,
    });
    let arn = secret(env, secret_name, key).await;
    StoreLocation::parse(
        &format!("gs://{EMULATOR_CONTAINER}/exp-{}", &env.src[4..]),
        &LocationOptions {
            secret_arn: Some(arn),
            ..Default::default()
        },
    )
    .unwrap()
}

impl Store {
    /// A destination of this store of its own (a fresh bucket, or a fresh prefix in the
    /// emulator's container), its credentials in a secret.
    pub(crate) async fn destination(self, env: &TestEnv) -> Destination {
        let unique = format!("exp-{}", &env.src[4..]);
        let location = match self {
            Store::OtherS3 => other_location(env).await.2,
            Store::Azurite => {
                let arn = secret(env, "az", serde_json::json!({"accessKey": AZURITE_KEY})).await;
                StoreLocation::parse(
                    &format!("az://{AZURITE_ACCOUNT}/{EMULATOR_CONTAINER}/{unique}"),
                    &LocationOptions {
                        endpoint: Some(test_var("BATCHOPS_TEST_AZURE_BLOB")),
                        secret_arn: Some(arn),
                        ..Default::default()
                    },
                )
                .unwrap()
            }
            Store::Gcs => gcs_location(env, &test_var("BATCHOPS_TEST_GCS"), "gs").await,
        };
        let store = stores::open(&env.app, &location).await.unwrap();
        let prefix = format!("{}/", location.prefix().trim_end_matches('/'));
        Destination {
            location,
            store,
            prefix,
        }
    }
}

impl Destination {
    pub(crate) async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let got = self
            .store
            .store
            .get(&Path::parse(key).unwrap())
            .await
            .ok()?;
        Some(got.bytes().await.unwrap().to_vec())
    }

    pub(crate) async fn put(&self, key: &str, body: &[u8]) {
        self.store
            .store
            .put(&Path::parse(key).unwrap(), PutPayload::from(body.to_vec()))
            .await
            .unwrap();
    }

    /// Keys under `prefix` (relative to the location's prefix).
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let under = Path::parse(format!("{}{prefix}", self.prefix)).unwrap();
        let listed: Vec<_> = self
            .store
            .store
            .list(Some(&under))
            .try_collect()
            .await
            .unwrap();
        listed.into_iter().map(|o| o.location.to_string()).collect()
    }
}

/// A CreateJob manifest naming the CSV manifest (Bucket, Key) at `manifest_key` in env.src.
fn csv_manifest(env: &TestEnv, manifest_key: &str) -> Manifest {
    serde_json::from_value(serde_json::json!({
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
        "Location": {"ObjectArn": format!("arn:aws:s3:::{}/{}", env.src, manifest_key)}
    }))
    .unwrap()
}

/// The local runtime in the background, one chunk at a time, until no job has work left.
fn spawn_runtime(
    env: &TestEnv,
) -> tokio::task::JoinHandle<
    batchops_aws::error::Result<std::sync::Arc<batchops_aws::runtime::RunStats>>,
> {
    tokio::spawn(run(
        env.app.clone(),
        RunOptions {
            until_idle: true,
            concurrency: 1,
            sweep_interval: Duration::from_millis(200),
            max_duration: Some(Duration::from_secs(120)),
        },
    ))
}

/// A test env whose exports and imports write objects over 5 MiB in 5 MiB parts, two at once.
pub(crate) async fn env_with_5_mib_parts() -> TestEnv {
    TestEnv::with_vars(&[
        ("BATCHOPS_EXPORT_PART_BYTES", "5242880"),
        ("BATCHOPS_EXPORT_PART_CONCURRENCY", "2"),
    ])
    .await
}

/// 20 MiB whose bytes differ from part to part (a multipart upload of four 5 MiB parts).
pub(crate) fn twenty_mib() -> Vec<u8> {
    (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Backs up `small` (each with body `body of KEY`) and `data/big.bin` (`big`) of the source
/// bucket with policy `name` (see `policy`), created here, in one completed run.
pub(crate) async fn backed_up(env: &TestEnv, name: &str, small: &[&str], big: &[u8]) {
    batchops_aws::backup::put_policy(&env.app, policy(env, name))
        .await
        .unwrap();
    for key in small {
        env.put(&env.src, key, format!("body of {key}")).await;
    }
    env.put(&env.src, "data/big.bin", big.to_vec()).await;
    completed_run(env, name).await;
}

/// Exports the latest snapshot of policy `name` to `to` and runs it to its end, which must be
/// Success; returns the export's ID and description.
pub(crate) async fn exported_snapshot(
    env: &TestEnv,
    name: &str,
    to: &StoreLocation,
) -> (String, exports::ExportDescriptor) {
    let created = exports::create_export(
        &env.app,
        &ExportRequest {
            source: ExportSource::Snapshot {
                policy: name.into(),
                snapshot: None,
                as_of: None,
                prefix: None,
            },
            to: to.clone(),
        },
    )
    .await
    .unwrap();
    env.run_until_idle().await;
    let described = exports::describe_export(&env.app, &created.job_id)
        .await
        .unwrap();
    assert_eq!(described.status, "Success", "{described:?}");
    (created.job_id, described)
}

/// Awkward keys (spaces, unicode, `+`, `%`, `&`, `#`, brackets, quotes, deep paths) and a
/// 20 MiB object (a multipart upload of 5 MiB parts), exported from a snapshot: byte for byte,
/// with the export manifest, which verify checks and which finds a changed object.
async fn exported_snapshot_arrives_byte_for_byte(store: Store) {
    let env = env_with_5_mib_parts().await;
    let big = twenty_mib();
    let small = [
        "data/a b+c=d&e?.txt",
        "data/ünï/cødé %41 100%",
        "data/x#y/[1]~'\"",
        "data/deep/er/and/deeper/still/.hidden",
    ];
    // The object store library cannot name a key with an empty segment: that task fails.
    env.put(&env.src, "data/dir//double", "x").await;
    backed_up(&env, "exp", &small, &big).await;
    let to = store.destination(&env).await;
    let (export_id, described) = exported_snapshot(&env, "exp", &to.location).await;
    let report = env.audit(&export_id).await;
    assert_eq!(
        described.progress_summary.number_of_tasks_succeeded, 5,
        "{:?}",
        report.rows
    );
    assert_eq!(described.progress_summary.number_of_tasks_failed, 1);

    for key in small {
        assert_eq!(
            to.get(&format!("{}{key}", to.prefix)).await,
            Some(format!("body of {key}").into_bytes()),
            "{key}"
        );
    }
    let big_key = format!("{}data/big.bin", to.prefix);
    assert!(to.get(&big_key).await == Some(big.clone()), "{big_key}");
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
    let manifest = to
        .get(&described.manifest_key)
        .await
        .expect("export manifest");
    let lines = parse_manifest(&String::from_utf8(manifest).unwrap()).unwrap();
    assert_eq!(lines.len(), 5);
    let big_line = lines.iter().find(|l| l.destination_key == big_key).unwrap();
    assert_eq!(big_line.size, big.len() as u64);
    assert_eq!(big_line.md5, md5_hex(&big));
    assert!(big_line.version_id.is_some(), "the backup copy's version");
    let verified = exports::verify_export(&env.app, &export_id).await.unwrap();
    assert_eq!((verified.objects, verified.verified), (5, 5));
    assert!(verified.mismatches.is_empty(), "{:?}", verified.mismatches);

    // A changed object at the destination is found.
    to.put(&big_key, b"tampered").await;
    let verified = exports::verify_export(&env.app, &export_id).await.unwrap();
    assert_eq!(verified.verified, 4);
    assert_eq!(verified.mismatches.len(), 1, "{:?}", verified.mismatches);
    assert!(
        verified.mismatches[0].starts_with(&format!("{big_key}: 8 bytes")),
        "{:?}",
        verified.mismatches
    );

    let listed = exports::list_exports(&env.app).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].export_id, export_id);
}

#[tokio::test]
async fn an_exported_snapshot_arrives_byte_for_byte_in_an_s3_compatible_store() {
    exported_snapshot_arrives_byte_for_byte(Store::OtherS3).await;
}

#[tokio::test]
async fn an_exported_snapshot_arrives_byte_for_byte_in_azure_blob_storage() {
    exported_snapshot_arrives_byte_for_byte(Store::Azurite).await;
}

#[tokio::test]
async fn an_exported_snapshot_arrives_byte_for_byte_in_google_cloud_storage() {
    exported_snapshot_arrives_byte_for_byte(Store::Gcs).await;
}

/// An export cancelled after its first objects: the job ends Cancelled, what was written
/// stays (and is listed by the manifest), the rest was never written.
async fn cancelled_export_keeps_what_it_wrote(store: Store) {
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
    let manifest = csv_manifest(&env, &manifest_key);
    let to = store.destination(&env).await;
    let created = exports::create_export(
        &env.app,
        &ExportRequest {
            source: ExportSource::Manifest(manifest),
            to: to.location.clone(),
        },
    )
    .await
    .unwrap();
    let runtime = spawn_runtime(&env);
    let mut waited = 0;
    while to.keys("many/").await.is_empty() {
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
    let written = to.keys("many/").await;
    assert!(
        !written.is_empty() && written.len() < keys.len(),
        "{} of {} written",
        written.len(),
        keys.len()
    );
    for key in &written {
        let source_key = key.strip_prefix(&to.prefix).unwrap();
        assert_eq!(
            to.get(key).await,
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
async fn a_cancelled_export_to_an_s3_compatible_store_keeps_what_it_wrote() {
    cancelled_export_keeps_what_it_wrote(Store::OtherS3).await;
}

#[tokio::test]
async fn a_cancelled_export_to_azure_blob_storage_keeps_what_it_wrote() {
    cancelled_export_keeps_what_it_wrote(Store::Azurite).await;
}

#[tokio::test]
async fn a_cancelled_export_to_google_cloud_storage_keeps_what_it_wrote() {
    cancelled_export_keeps_what_it_wrote(Store::Gcs).await;
}

/// An export reads its sources with the job's data clients: a source bucket in eu-west-1 is
/// read by requests signed in eu-west-1 (scripts/fault_proxy.py records each signature).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_reads_its_sources_in_their_buckets_region() {
    use crate::roles::{eu_bucket, signed, Proxy};
    let proxy = Proxy::start().await;
    let url = proxy.url();
    let env = TestEnv::through(Some(&url), &[]).await;
    let eu = eu_bucket(&env, &env.src).await;
    env.put(&eu, "far away", "from eu").await;
    let manifest_key = env
        .manifest("eu", &[format!("{eu},{}", encode_key("far away"))])
        .await;
    let manifest = csv_manifest(&env, &manifest_key);
    let to = Store::OtherS3.destination(&env).await;
    let created = exports::create_export(
        &env.app,
        &ExportRequest {
            source: ExportSource::Manifest(manifest),
            to: to.location.clone(),
        },
    )
    .await
    .unwrap();
    env.run_until_idle().await;
    let described = exports::describe_export(&env.app, &created.job_id)
        .await
        .unwrap();
    assert_eq!(described.status, "Success", "{described:?}");
    assert_eq!(
        to.get(&format!("{}far away", to.prefix)).await,
        Some(b"from eu".to_vec())
    );
    let reads = signed(&proxy.signers().await, &eu, "GET");
    assert!(!reads.is_empty(), "no GET on {eu}");
    assert!(
        reads.iter().all(|(_, region)| region == "eu-west-1"),
        "{reads:?}"
    );
}

/// A multipart upload whose CompleteMultipartUpload keeps failing is aborted (object_store's
/// `WriteMultipart::finish` aborts on a failed completion, and a stopped or failed stream is
/// aborted by the export): the task fails, and the other store keeps no upload and no object.
#[tokio::test]
async fn a_failed_multipart_completion_leaves_no_upload_behind() {
    let proxy = FaultProxy::start(&other_endpoint(), &["--s3-fail-complete", "1"]);
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_EXPORT_PART_BYTES", "5242880"),
        ("BATCHOPS_TASK_MAX_ATTEMPTS", "2"),
    ])
    .await;
    env.put(&env.src, "big", vec![7u8; 11 * 1024 * 1024]).await;
    let manifest_key = env
        .manifest("complete", &[format!("{},big", env.src)])
        .await;
    let manifest = csv_manifest(&env, &manifest_key);
    let (other, bucket, mut to) = other_location(&env).await;
    let StoreLocation::S3 { endpoint, .. } = &mut to else {
        unreachable!()
    };
    *endpoint = Some(proxy.url.clone());
    let created = exports::create_export(
        &env.app,
        &ExportRequest {
            source: ExportSource::Manifest(manifest),
            to,
        },
    )
    .await
    .unwrap();
    let runtime = spawn_runtime(&env);
    // Both attempts at the object (each completion tried 6 times by object_store), then the
    // export manifest, written by the finalizer through the same store, may complete.
    let mut waited = 0;
    while proxy.counts()["faults"]["s3_fail_complete"].as_u64() < Some(12) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 1200, "{}", proxy.counts());
    }
    proxy.configure(serde_json::json!({"s3_fail_complete": 0}));
    runtime.await.unwrap().unwrap();
    let report = env.audit(&created.job_id).await;
    assert_eq!(report.rows.len(), 1);
    assert_eq!(report.rows[0].task_status, "failed", "{:?}", report.rows);
    let uploads = other
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    assert_eq!(other_get(&other, &bucket, "exp/big").await, None);
}

/// The body of an HTTP/1.0 GET of `url` (`http://host:port/path`) that must answer 200.
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (address, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

/// The same against GCS (the proxy fails every XML multipart completion, `POST ?uploadId`): the
/// upload is aborted (`DELETE ?uploadId`), so the emulator lists no open upload, and no object.
#[tokio::test]
async fn a_failed_multipart_completion_on_google_cloud_storage_leaves_no_upload_behind() {
    let gcs = test_var("BATCHOPS_TEST_GCS");
    let proxy = FaultProxy::start(&gcs, &["--s3-fail-complete", "1"]);
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_EXPORT_PART_BYTES", "5242880"),
        ("BATCHOPS_TASK_MAX_ATTEMPTS", "2"),
    ])
    .await;
    env.put(&env.src, "big", vec![7u8; 11 * 1024 * 1024]).await;
    let manifest_key = env
        .manifest("complete", &[format!("{},big", env.src)])
        .await;
    let manifest = csv_manifest(&env, &manifest_key);
    let to = gcs_location(&env, &proxy.url, "gs-proxied").await;
    let created = exports::create_export(
        &env.app,
        &ExportRequest {
            source: ExportSource::Manifest(manifest),
            to: to.clone(),
        },
    )
    .await
    .unwrap();
    let runtime = spawn_runtime(&env);
    // Both attempts at the object, each completion tried 6 times; then the manifest may complete.
    let mut waited = 0;
    while proxy.counts()["faults"]["s3_fail_complete"].as_u64() < Some(12) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 1200, "{}", proxy.counts());
    }
    proxy.configure(serde_json::json!({"s3_fail_complete": 0}));
    runtime.await.unwrap().unwrap();
    let report = env.audit(&created.job_id).await;
    assert_eq!(report.rows.len(), 1);
    assert_eq!(report.rows[0].task_status, "failed", "{:?}", report.rows);
    let prefix = to.prefix();
    let uploads = http_get(&format!(
        "{gcs}/{EMULATOR_CONTAINER}?uploads&prefix={}",
        encode_key(prefix)
    ));
    assert!(uploads.contains("<ListMultipartUploadsResult"), "{uploads}");
    assert!(!uploads.contains("<Upload>"), "{uploads}");
    let direct = Store::Gcs.destination(&env).await;
    assert_eq!(direct.get(&format!("{prefix}big")).await, None);
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
