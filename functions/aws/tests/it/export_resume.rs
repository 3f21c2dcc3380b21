//! Exports that always end and huge objects that resume: a destination refusing the export
//! manifest for good ends the export Error (not a finalizer retrying for ever), and an object
//! whose upload outlasts one worker invocation continues from its first missing part on the
//! next delivery. Against the second moto (BATCHOPS_TEST_OTHER_S3), as tests/it/exports.rs.

use crate::exports::{other_get, other_location};
use crate::harness::{md5_hex, FaultProxy, TestEnv};
use batchops_aws::exports::{self, ExportRequest, ExportSource};
use batchops_aws::planner::{advance, Advance};
use batchops_aws::queue::ChunkPointer;
use batchops_aws::runtime::{run, RunOptions};
use batchops_aws::worker::{process_chunk, ChunkRun};
use batchops_core::export::{parse_manifest, StoreLocation};
use batchops_core::request::Manifest;
use std::time::{Duration, Instant, SystemTime};

/// A CreateJob manifest naming the CSV manifest (Bucket, Key) at `manifest_key` in env.src.
fn csv_manifest(env: &TestEnv, manifest_key: &str) -> Manifest {
    serde_json::from_value(serde_json::json!({
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
        "Location": {"ObjectArn": format!("arn:aws:s3:::{}/{}", env.src, manifest_key)}
    }))
    .unwrap()
}

/// Creates an export of `keys` (in env.src) to `to` and plans it, running no task.
async fn planned_export(env: &TestEnv, name: &str, keys: &[&str], to: StoreLocation) -> String {
    let lines: Vec<String> = keys.iter().map(|k| format!("{},{k}", env.src)).collect();
    let manifest_key = env.manifest(name, &lines).await;
    let created = exports::create_export(
        &env.app,
        &ExportRequest {
            source: ExportSource::Manifest(csv_manifest(env, &manifest_key)),
            to,
        },
    )
    .await
    .unwrap();
    let planned = advance(
        &env.app,
        &created.job_id,
        Instant::now() + Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(planned, Advance::Idle);
    created.job_id
}

/// The local runtime until idle, for at most `limit`: a job that never ends shows as one left
/// unfinished rather than as a hung test.
pub(crate) async fn run_for(env: &TestEnv, limit: Duration) {
    let options = RunOptions {
        until_idle: true,
        concurrency: 2,
        sweep_interval: Duration::from_millis(200),
        max_duration: Some(limit),
    };
    let ran = tokio::time::timeout(
        limit + Duration::from_secs(30),
        run(env.app.clone(), options),
    )
    .await;
    assert!(ran.is_ok(), "the runtime did not stop within {limit:?}");
}

/// The destination's bucket is deleted after the export wrote its objects: writing the export
/// manifest there fails for good (NoSuchBucket). The export ends Error within bounded time,
/// its failure reason naming the destination and the store's error, its report written.
#[tokio::test]
async fn an_export_whose_destination_refuses_its_manifest_ends_in_error() {
    let env = TestEnv::new().await;
    env.put(&env.src, "one", "object one").await;
    let (other, bucket, to) = other_location(&env).await;
    let job = planned_export(&env, "refused", &["one"], to).await;
    let pointer = ChunkPointer {
        job: job.clone(),
        seq: 0,
        first_task: 0,
    };
    process_chunk(
        &env.app,
        &pointer,
        SystemTime::now() + Duration::from_secs(120),
    )
    .await
    .unwrap();
    assert_eq!(
        other_get(&other, &bucket, "exp/one").await,
        Some(b"object one".to_vec())
    );
    // The destination goes away before the finalizer writes the manifest.
    other
        .delete_object()
        .bucket(&bucket)
        .key("exp/one")
        .send()
        .await
        .unwrap();
    other.delete_bucket().bucket(&bucket).send().await.unwrap();

    let started = Instant::now();
    run_for(&env, Duration::from_secs(60)).await;
    let described = exports::describe_export(&env.app, &job).await.unwrap();
    assert_eq!(described.status, "Error", "{described:?}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    let job_view = env.describe(&job).await;
    assert_eq!(job_view.status, "Failed");
    let reason = job_view
        .failure_reasons
        .iter()
        .find(|r| r.failure_reason.contains("manifest"))
        .unwrap_or_else(|| panic!("no manifest failure in {:?}", job_view.failure_reasons));
    assert!(
        reason
            .failure_reason
            .contains(&format!("s3://{bucket}/exp")),
        "{reason:?}"
    );
    assert!(
        reason.failure_reason.to_lowercase().contains("not found")
            || reason.failure_reason.contains("NoSuchBucket"),
        "{reason:?}"
    );
    assert_eq!(reason.failure_code, "DestinationNotFound", "{reason:?}");
    // The report was written all the same.
    let report = env.audit(&job).await;
    assert_eq!(report.succeeded_rows, 1);
}

/// PUT requests the proxy saw on `bucket` (parts and whole objects; moto is path-style).
pub(crate) fn puts(proxy: &FaultProxy, bucket: &str) -> u64 {
    let counts = proxy.counts();
    counts["signers"][bucket]
        .as_object()
        .map(|signers| {
            signers
                .iter()
                .filter(|(signer, _)| signer.starts_with("PUT "))
                .filter_map(|(_, n)| n.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// An object of seven 5 MiB parts whose export outlasts the first invocation (a deadline
/// mid-object): the upload and the parts done are kept in the table, and the next delivery
/// of the range uploads only the missing parts (counted by the proxy in front of the other
/// store), reading the source from there on. The result is byte for byte the source, and the
/// MD5 the export manifest records (carried across the invocations) is the object's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_huge_object_continues_from_its_first_missing_part() {
    const PART: usize = 5 * 1024 * 1024;
    const PARTS: u64 = 7;
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_EXPORT_PART_BYTES", "5242880"),
        ("BATCHOPS_EXPORT_PART_CONCURRENCY", "2"),
        ("BATCHOPS_TASK_CONCURRENCY", "1"),
        ("BATCHOPS_WORKER_SAFETY_SECONDS", "100"),
    ])
    .await;
    let big: Vec<u8> = (0..(6 * PART + 12345) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    env.put(&env.src, "huge.bin", big.clone()).await;
    let proxy = FaultProxy::start(&crate::exports::other_endpoint(), &[]);
    let (other, bucket, mut to) = other_location(&env).await;
    let StoreLocation::S3 { endpoint, .. } = &mut to else {
        unreachable!()
    };
    *endpoint = Some(proxy.url.clone());

    // A deadline that stops the upload after some parts and before the last. How many parts
    // fit depends on the machine: the window is widened or narrowed until one does that.
    let mut window = Duration::from_millis(1500);
    let mut found = None;
    for round in 0..6 {
        let job = planned_export(&env, &format!("huge-{round}"), &["huge.bin"], to.clone()).await;
        let pointer = ChunkPointer {
            job: job.clone(),
            seq: 0,
            first_task: 0,
        };
        let deadline = SystemTime::now() + Duration::from_secs(100) + window;
        let first = process_chunk(&env.app, &pointer, deadline).await;
        let kept = env.app.store.kept_upload(&job, 0, 0).await.unwrap();
        let done = kept
            .as_ref()
            .and_then(|k| k.streamed.as_ref())
            .map_or(0, |s| s.progress.parts.len() as u64);
        match first {
            Ok(ChunkRun::Continued) if done > 0 => {
                found = Some((job, pointer, kept.unwrap(), done));
                break;
            }
            Ok(ChunkRun::Committed { .. }) => window /= 2,
            other => {
                eprintln!("round {round}: {other:?} with {done} parts kept in {window:?}");
                window *= 2;
            }
        }
    }
    let (job, pointer, kept, done) = found.expect("no invocation stopped mid-object");
    assert!(done < PARTS, "{done} parts");
    let streamed = kept.streamed.unwrap();
    assert_eq!(streamed.progress.offset(), done * PART as u64);
    assert_eq!(streamed.size, big.len() as u64);
    assert!(streamed.source_version.is_some() && streamed.source_etag.is_some());

    let before = puts(&proxy, &bucket);
    let second = process_chunk(
        &env.app,
        &pointer,
        SystemTime::now() + Duration::from_secs(160),
    )
    .await
    .unwrap();
    assert!(
        matches!(second, ChunkRun::Committed { tasks: 1, .. }),
        "{second:?}"
    );
    assert_eq!(
        puts(&proxy, &bucket) - before,
        PARTS - done,
        "parts uploaded again"
    );
    assert!(
        other_get(&other, &bucket, "exp/huge.bin").await == Some(big.clone()),
        "the object differs"
    );
    assert_eq!(env.app.store.kept_upload(&job, 0, 0).await.unwrap(), None);

    // The other rounds' jobs and this one end; no upload is left open at the destination.
    run_for(&env, Duration::from_secs(120)).await;
    let described = exports::describe_export(&env.app, &job).await.unwrap();
    assert_eq!(described.status, "Success", "{described:?}");
    let verified = exports::verify_export(&env.app, &job).await.unwrap();
    assert_eq!(
        (verified.objects, verified.verified),
        (1, 1),
        "{verified:?}"
    );
    let manifest = other_get(&other, &bucket, &described.manifest_key)
        .await
        .expect("export manifest");
    let lines = parse_manifest(&String::from_utf8(manifest).unwrap()).unwrap();
    assert_eq!(lines[0].md5, md5_hex(&big));
    let uploads = other
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
}

/// A task that stops mid-object because the export is cancelled aborts its upload and
/// forgets it: the kept record does not outlive the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_export_aborts_and_forgets_its_kept_upload() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_EXPORT_PART_BYTES", "5242880"),
        ("BATCHOPS_EXPORT_PART_CONCURRENCY", "1"),
        ("BATCHOPS_WORKER_SAFETY_SECONDS", "100"),
    ])
    .await;
    env.put(&env.src, "huge.bin", vec![3u8; 4 * 5 * 1024 * 1024])
        .await;
    let (other, bucket, to) = other_location(&env).await;
    let job = planned_export(&env, "cancelled", &["huge.bin"], to).await;
    let pointer = ChunkPointer {
        job: job.clone(),
        seq: 0,
        first_task: 0,
    };
    // Out of time at once after the first part or so: the upload is kept.
    let mut window = Duration::from_millis(300);
    loop {
        let deadline = SystemTime::now() + Duration::from_secs(100) + window;
        let run = process_chunk(&env.app, &pointer, deadline).await;
        if matches!(run, Ok(ChunkRun::Continued)) {
            break;
        }
        assert!(
            !matches!(run, Ok(ChunkRun::Committed { .. })),
            "the whole object fit in {window:?}"
        );
        window *= 2;
        assert!(window < Duration::from_secs(20), "no task started");
    }
    assert!(env
        .app
        .store
        .kept_upload(&job, 0, 0)
        .await
        .unwrap()
        .is_some());
    exports::cancel_export(&env.app, &job).await.unwrap();
    run_for(&env, Duration::from_secs(60)).await;
    let described = exports::describe_export(&env.app, &job).await.unwrap();
    assert_eq!(described.status, "Cancelled", "{described:?}");
    assert!(env.app.store.kept_uploads(&job).await.unwrap().is_empty());
    let uploads = other
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    assert_eq!(other_get(&other, &bucket, "exp/huge.bin").await, None);
}
