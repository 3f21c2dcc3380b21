//! Imports of huge objects that resume, as exports do (tests/it/export_resume.rs): an object
//! whose upload into the destination bucket outlasts one worker invocation continues from its
//! first missing part on the next delivery, and a cancelled import aborts and forgets the
//! upload it kept. The source is the second moto (BATCHOPS_TEST_OTHER_S3); every call of the
//! stack's own goes through a proxy that counts the PUTs on the destination bucket.

use crate::export_resume::{puts, run_for};
use crate::exports::other_location;
use crate::harness::{md5_hex, FaultProxy, TestEnv};
use crate::imports::here;
use batchops_aws::imports::{self, ImportRequest};
use batchops_aws::planner::{advance, Advance};
use batchops_aws::queue::ChunkPointer;
use batchops_aws::store::KeptUpload;
use batchops_aws::worker::{process_chunk, ChunkRun};
use batchops_core::export::{parse_manifest, StoreLocation};
use batchops_core::import::SOURCE_ETAG_METADATA;
use std::time::{Duration, Instant, SystemTime};

const PART: usize = 5 * 1024 * 1024;

/// A test environment whose calls go through `proxy`, with 5 MiB parts and a 100 s margin
/// before each invocation's deadline (so a deadline 100 s + a window away stops mid-object).
async fn env_through(proxy: &FaultProxy, part_concurrency: &str) -> TestEnv {
    TestEnv::through(
        Some(&proxy.url),
        &[
            ("BATCHOPS_EXPORT_PART_BYTES", "5242880"),
            ("BATCHOPS_EXPORT_PART_CONCURRENCY", part_concurrency),
            ("BATCHOPS_TASK_CONCURRENCY", "1"),
            ("BATCHOPS_WORKER_SAFETY_SECONDS", "100"),
        ],
    )
    .await
}

fn main_moto() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL")
}

/// Creates an import of everything under `from` into `s3://<env.dst>/<prefix>` and plans it,
/// running no task.
async fn planned_import(env: &TestEnv, from: &StoreLocation, prefix: &str) -> String {
    let created = imports::create_import(
        &env.app,
        &ImportRequest {
            from: from.clone(),
            to: here(&env.dst, prefix),
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

/// The object of `parts` 5 MiB parts (the last shorter), its bytes not repeating per part.
fn huge(parts: usize) -> Vec<u8> {
    (0..((parts - 1) * PART + 12345) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Imports `location` (one object of several parts) until an invocation stops mid-object
/// with some parts kept: a deadline that stops the upload after some parts and before the
/// last. How many parts fit depends on the machine: the window is widened or narrowed until
/// one does that. Each round imports under a prefix of its own, so none finds another's copy.
/// Answers the job, its pointer, the kept upload, its parts and the round's prefix.
async fn stopped_mid_object(
    env: &TestEnv,
    location: &StoreLocation,
) -> (String, ChunkPointer, KeptUpload, u64, String) {
    let mut window = Duration::from_millis(1500);
    for round in 0..6 {
        let prefix = format!("in{round}");
        let job = planned_import(env, location, &prefix).await;
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
        match (first, kept) {
            (Ok(ChunkRun::Continued), Some(kept)) if done > 0 => {
                return (job, pointer, kept, done, prefix)
            }
            (Ok(ChunkRun::Committed { .. }), _) => window /= 2,
            (other, _) => {
                eprintln!("round {round}: {other:?} with {done} parts kept in {window:?}");
                window *= 2;
            }
        }
    }
    panic!("no invocation stopped mid-object with an upload kept");
}

/// An object of seven 5 MiB parts whose import outlasts the first invocation (a deadline
/// mid-object): the upload and the parts done are kept in the table, and the next delivery
/// of the range uploads only the missing parts into the destination bucket (PUTs counted by
/// the proxy), reading the source from there on. The copy is byte for byte the source, with
/// the source's content type and identity metadata, and the import manifest's MD5 (carried
/// across the invocations) is the object's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_huge_import_continues_from_its_first_missing_part() {
    const PARTS: u64 = 7;
    let proxy = FaultProxy::start(&main_moto(), &[]);
    let env = env_through(&proxy, "2").await;
    let big = huge(PARTS as usize);
    let (other, bucket, location) = other_location(&env).await;
    let source = other
        .put_object()
        .bucket(&bucket)
        .key("exp/huge.bin")
        .content_type("application/x-huge")
        .body(big.clone().into())
        .send()
        .await
        .unwrap();

    let (job, pointer, kept, done, prefix) = stopped_mid_object(&env, &location).await;
    assert!(done < PARTS, "{done} parts");
    assert_eq!(kept.target_key, format!("{prefix}/huge.bin"));
    let streamed = kept.streamed.unwrap();
    assert_eq!(streamed.progress.offset(), done * PART as u64);
    assert_eq!(streamed.size, big.len() as u64);
    assert_eq!(
        streamed.source_etag.as_deref().map(|e| e.trim_matches('"')),
        source.e_tag().map(|e| e.trim_matches('"'))
    );

    let before = puts(&proxy, &env.dst);
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
        puts(&proxy, &env.dst) - before,
        PARTS - done,
        "parts uploaded again"
    );
    let key = format!("{prefix}/huge.bin");
    assert!(
        env.get(&env.dst, &key).await == Some(big.clone()),
        "the object differs"
    );
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&env.dst)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/x-huge"));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get(SOURCE_ETAG_METADATA))
            .map(String::as_str),
        source.e_tag().map(|e| e.trim_matches('"'))
    );
    assert_eq!(env.app.store.kept_upload(&job, 0, 0).await.unwrap(), None);

    // The other rounds' jobs and this one end; no upload is left open in the destination.
    run_for(&env, Duration::from_secs(120)).await;
    let described = imports::describe_import(&env.app, &job).await.unwrap();
    assert_eq!(described.status, "Success", "{described:?}");
    let verified = imports::verify_import(&env.app, &job).await.unwrap();
    assert_eq!(
        (verified.objects, verified.verified),
        (1, 1),
        "{verified:?}"
    );
    let manifest = env
        .get(&env.dst, &described.manifest_key)
        .await
        .expect("import manifest");
    let lines = parse_manifest(&String::from_utf8(manifest).unwrap()).unwrap();
    assert_eq!(lines[0].md5, md5_hex(&big));
    let uploads = env
        .clients
        .s3
        .list_multipart_uploads()
        .bucket(&env.dst)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
}

/// The source object changes between the invocation that kept the upload and the next: the
/// ranged read pinned to the old ETag is refused, the kept upload is aborted and forgotten,
/// and the object is imported anew, whole, with the new source's identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kept_import_upload_whose_source_changed_starts_over() {
    let proxy = FaultProxy::start(&main_moto(), &[]);
    let env = env_through(&proxy, "2").await;
    let (other, bucket, location) = other_location(&env).await;
    let put = |body: Vec<u8>| {
        other
            .put_object()
            .bucket(&bucket)
            .key("exp/huge.bin")
            .body(body.into())
            .send()
    };
    put(huge(7)).await.unwrap();
    let (job, pointer, kept, _, prefix) = stopped_mid_object(&env, &location).await;
    // Same size, other bytes.
    let changed: Vec<u8> = huge(7).into_iter().rev().collect();
    let now = put(changed.clone()).await.unwrap();

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
    let key = format!("{prefix}/huge.bin");
    assert!(
        env.get(&env.dst, &key).await == Some(changed),
        "the object is not the changed source"
    );
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&env.dst)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get(SOURCE_ETAG_METADATA))
            .map(String::as_str),
        now.e_tag().map(|e| e.trim_matches('"'))
    );
    assert_eq!(env.app.store.kept_upload(&job, 0, 0).await.unwrap(), None);
    let uploads = env
        .clients
        .s3
        .list_multipart_uploads()
        .bucket(&env.dst)
        .send()
        .await
        .unwrap();
    assert!(
        uploads
            .uploads()
            .iter()
            .all(|u| u.upload_id() != Some(kept.upload_id.as_str())),
        "the kept upload is still open: {:?}",
        uploads.uploads()
    );
}

/// A task stopped mid-object (out of time) keeps its upload; the import is then cancelled:
/// the finalizer aborts the upload in the destination bucket and forgets it, and no object
/// is left at the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_import_aborts_and_forgets_its_kept_upload() {
    let proxy = FaultProxy::start(&main_moto(), &[]);
    let env = env_through(&proxy, "1").await;
    let (other, bucket, location) = other_location(&env).await;
    other
        .put_object()
        .bucket(&bucket)
        .key("exp/huge.bin")
        .body(vec![3u8; 4 * PART].into())
        .send()
        .await
        .unwrap();
    let job = planned_import(&env, &location, "in").await;
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
    assert!(
        env.app
            .store
            .kept_upload(&job, 0, 0)
            .await
            .unwrap()
            .is_some(),
        "the task stopped out of time kept no upload"
    );
    imports::cancel_import(&env.app, &job).await.unwrap();
    run_for(&env, Duration::from_secs(60)).await;
    let described = imports::describe_import(&env.app, &job).await.unwrap();
    assert_eq!(described.status, "Cancelled", "{described:?}");
    assert!(env.app.store.kept_uploads(&job).await.unwrap().is_empty());
    let uploads = env
        .clients
        .s3
        .list_multipart_uploads()
        .bucket(&env.dst)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    assert_eq!(env.get(&env.dst, "in/huge.bin").await, None);
}
