use crate::harness::TestEnv;
use batchops_aws::ops::copy::{Copier, SourceSize};
use batchops_aws::ops::TaskResult;
use batchops_aws::planner::{advance, Advance};
use batchops_aws::queue::ChunkPointer;
use batchops_aws::worker::{process_chunk, ChunkRun};
use batchops_core::encoding::encode_key;
use batchops_core::manifest::ObjectRef;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

const AWKWARD_KEYS: [&str; 12] = [
    "plain.txt",
    "with space.txt",
    "plus+sign.txt",
    "percent%25literal%.txt",
    "ünïcödé/日本語/✓.txt",
    "emoji 🎉/party.txt",
    "deep/a/b/c/d/e/f/g/h/file.txt",
    "query?x=1&y=2#frag",
    "comma,and\"quote'.txt",
    "tilde~and*star(paren).txt",
    "trailing space ",
    "dir//double/slash.txt",
];

fn line(bucket: &str, key: &str) -> String {
    format!("{bucket},{}", encode_key(key))
}

fn rows_by_key(audit: &batchops_aws::audit::ReportAudit) -> BTreeSet<(String, String, String)> {
    audit
        .rows
        .iter()
        .map(|r| {
            (
                r.key_encoded.clone(),
                r.task_status.clone(),
                r.error_code.clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_every_awkward_key_and_reports_each_task_once() {
    let env = TestEnv::new().await;
    let mut lines = Vec::new();
    for (i, key) in AWKWARD_KEYS.iter().enumerate() {
        env.put(&env.src, key, format!("body {i} of {key}")).await;
        lines.push(line(&env.src, key));
    }
    // A manifest written with `+` for spaces decodes the same way.
    env.put(&env.src, "form encoded key.txt", "form").await;
    lines.push(format!("{},form+encoded+key.txt", env.src));
    let manifest = env.manifest("awkward", &lines).await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    let described = env.run_to_complete(&job).await;
    let total = AWKWARD_KEYS.len() as u64 + 1;
    assert_eq!(described.progress_summary.total_number_of_tasks, total);
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, total);
    assert_eq!(described.progress_summary.number_of_tasks_failed, 0);
    for (i, key) in AWKWARD_KEYS.iter().enumerate() {
        let copied = env.get(&env.dst, &format!("copied/{key}")).await;
        assert_eq!(
            copied,
            Some(format!("body {i} of {key}").into_bytes()),
            "key {key:?}"
        );
    }
    assert_eq!(
        env.get(&env.dst, "copied/form encoded key.txt").await,
        Some(b"form".to_vec())
    );
    assert_eq!(env.keys(&env.dst).await.len(), AWKWARD_KEYS.len() + 1);

    let audit = env.audit(&job).await;
    assert_eq!(audit.succeeded_rows, total);
    let mut expected: BTreeSet<(String, String, String)> = AWKWARD_KEYS
        .iter()
        .map(|k| (encode_key(k), "succeeded".to_string(), String::new()))
        .collect();
    expected.insert((
        encode_key("form encoded key.txt"),
        "succeeded".into(),
        String::new(),
    ));
    assert_eq!(rows_by_key(&audit), expected);
    assert!(audit
        .rows
        .iter()
        .all(|r| r.http_status == "200" && r.message == "Successful" && r.bucket == env.src));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versioned_manifest_copies_the_pinned_version_after_an_overwrite() {
    let env = TestEnv::new().await;
    let v1 = env.put(&env.src, "doc.txt", "first version").await;
    let other = env.put(&env.src, "other.txt", "other v1").await;
    env.put(&env.src, "doc.txt", "second version").await;
    env.put(&env.src, "other.txt", "other v2").await;
    let manifest = env
        .manifest(
            "versioned",
            &[
                format!("{},doc.txt,{v1}", env.src),
                format!("{},other.txt,{other}", env.src),
            ],
        )
        .await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key", "VersionId"]))
        .await;
    env.run_until_idle().await;
    assert_eq!(env.describe(&job).await.status, "Complete");
    assert_eq!(
        env.get(&env.dst, "copied/doc.txt").await,
        Some(b"first version".to_vec())
    );
    assert_eq!(
        env.get(&env.dst, "copied/other.txt").await,
        Some(b"other v1".to_vec())
    );
    let audit = env.audit(&job).await;
    let versions: BTreeSet<String> = audit.rows.iter().map(|r| r.version_id.clone()).collect();
    assert_eq!(versions, BTreeSet::from([v1, other]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_few_thousand_tasks_over_many_chunks_each_run_once() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_CHUNK_SIZE", "50"),
        ("BATCHOPS_CHECKPOINT_EVERY_CHUNKS", "3"),
    ])
    .await;
    let objects: Vec<(String, Vec<u8>)> = (0..2000)
        .map(|i| {
            (
                format!("many/{:04}/obj {i}.bin", i % 97),
                format!("payload-{i}").into_bytes(),
            )
        })
        .collect();
    let lines: Vec<String> = objects.iter().map(|(k, _)| line(&env.src, k)).collect();
    env.put_many(&env.src, objects.clone()).await;
    let manifest = env.manifest("many", &lines).await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.total_number_of_tasks, 2000);
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 2000);
    let record = env.app.store.get_job(&job).await.unwrap();
    assert_eq!(
        record.plan.progress.next_seq, 40,
        "2000 tasks in chunks of 50"
    );
    let ranges = env.app.store.committed_ranges(&job).await.unwrap();
    let covered: u64 = ranges.iter().map(|r| r.end_task - r.first_task).sum();
    assert_eq!(covered, 2000);
    let audit = env.audit(&job).await;
    assert_eq!(audit.succeeded_rows, 2000);
    let keys = env.keys(&env.dst).await;
    assert_eq!(keys.len(), 2000);
    for (key, body) in objects.iter().step_by(199) {
        assert_eq!(
            env.get(&env.dst, &format!("copied/{key}")).await.as_ref(),
            Some(body)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_objects_use_multipart_copy_and_keep_bytes_and_metadata() {
    let five_mib = (5 * 1024 * 1024).to_string();
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_MULTIPART_THRESHOLD_BYTES", five_mib.as_str()),
        ("BATCHOPS_MULTIPART_PART_SIZE_BYTES", five_mib.as_str()),
    ])
    .await;
    let size = 12 * 1024 * 1024 + 3;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    env.clients
        .s3
        .put_object()
        .bucket(&env.src)
        .key("big/blob with space.bin")
        .content_type("application/x-test")
        .metadata("origin", "batchops-test")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    env.put(&env.src, "small.txt", "small").await;
    let manifest = env
        .manifest(
            "big",
            &[
                line(&env.src, "big/blob with space.bin"),
                line(&env.src, "small.txt"),
            ],
        )
        .await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 2);
    assert_eq!(
        described.progress_summary.number_of_bytes_copied,
        size as u64 + 5
    );
    let copied = env
        .get(&env.dst, "copied/big/blob with space.bin")
        .await
        .expect("copied");
    assert_eq!(copied.len(), body.len());
    assert!(copied == body, "multipart copy changed the bytes");
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&env.dst)
        .key("copied/big/blob with space.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/x-test"));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("batchops-test")
    );
    assert!(
        head.e_tag().unwrap_or_default().contains('-'),
        "a multipart ETag: {:?}",
        head.e_tag()
    );
    assert_eq!(env.open_uploads().await, 0);
    env.audit(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_mid_multipart_aborts_the_upload_and_writes_nothing() {
    let five_mib = 5 * 1024 * 1024;
    let env = TestEnv::new().await;
    let body: Vec<u8> = vec![7u8; five_mib * 2 + 1];
    env.put(&env.src, "big.bin", body).await;
    let request = batchops_core::CreateJobRequest::from_json(
        &env.request_json("unused", &["Bucket", "Key"]).to_string(),
    )
    .unwrap();
    let spec = request.validate().unwrap();
    let mut settings = env.app.copy.clone();
    settings.multipart_threshold = five_mib as u64;
    settings.part_size = five_mib as u64;
    let stop = AtomicBool::new(true);
    let sources = env.app.data.stack();
    let copier = Copier {
        s3: &env.app.s3,
        sources: &sources,
        spec: spec.operation.copy().unwrap(),
        settings: &settings,
        stop: &stop,
        part_deadline: None,
        uploads: None,
    };
    let object = ObjectRef {
        bucket: env.src.clone(),
        key: "big.bin".into(),
        version_id: None,
    };
    assert_eq!(
        copier
            .copy(&object, None, "copied/big.bin", SourceSize::Unknown)
            .await,
        TaskResult::Abandoned
    );
    assert!(
        env.keys(&env.dst).await.is_empty(),
        "nothing is written by an abandoned copy"
    );
    assert_eq!(
        env.open_uploads().await,
        0,
        "its multipart upload was aborted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_source_fails_its_task_with_no_such_key_while_the_rest_succeed() {
    let env = TestEnv::new().await;
    env.put(&env.src, "here-1", "1").await;
    env.put(&env.src, "here-2", "2").await;
    let manifest = env
        .manifest(
            "missing",
            &[
                line(&env.src, "here-1"),
                line(&env.src, "gone"),
                line(&env.src, "here-2"),
                "not,a,valid,line".to_string(),
            ],
        )
        .await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 2);
    assert_eq!(described.progress_summary.number_of_tasks_failed, 2);
    let audit = env.audit(&job).await;
    let gone = audit
        .rows
        .iter()
        .find(|r| r.key_encoded == "gone")
        .expect("row for gone");
    assert_eq!(
        (
            gone.task_status.as_str(),
            gone.http_status.as_str(),
            gone.error_code.as_str()
        ),
        ("failed", "404", "NoSuchKey")
    );
    let bad = audit
        .rows
        .iter()
        .find(|r| r.error_code == "InvalidManifestLine")
        .expect("row for the bad line");
    assert_eq!(
        bad.message,
        "manifest line 4: expected 2 fields (Bucket, Key), found 4"
    );
    assert_eq!(
        env.keys(&env.dst).await,
        vec!["copied/here-1".to_string(), "copied/here-2".to_string()]
    );
}

/// Plans and dispatches a job without running workers; returns its id.
async fn plan_only(env: &TestEnv, document: serde_json::Value) -> String {
    let job = env.create(document).await;
    let outcome = advance(&env.app, &job, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(outcome, Advance::Idle);
    job
}

fn deadline() -> SystemTime {
    SystemTime::now() + Duration::from_secs(120)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_chunk_delivered_twice_changes_nothing() {
    let env = TestEnv::with_vars(&[("BATCHOPS_CHUNK_SIZE", "3")]).await;
    let mut lines = Vec::new();
    for i in 0..7 {
        env.put(&env.src, &format!("k{i}"), format!("v{i}")).await;
        lines.push(line(&env.src, &format!("k{i}")));
    }
    let manifest = env.manifest("twice", &lines).await;
    let job = plan_only(&env, env.request_json(&manifest, &["Bucket", "Key"])).await;
    let pointer = ChunkPointer {
        job: job.clone(),
        seq: 1,
        first_task: 0,
    };
    let first = process_chunk(&env.app, &pointer, deadline()).await.unwrap();
    assert_eq!(
        first,
        ChunkRun::Committed {
            tasks: 3,
            requeued_from: None
        }
    );
    let counters_after_first = env.app.store.counters(&job).await.unwrap();
    let second = process_chunk(&env.app, &pointer, deadline()).await.unwrap();
    assert_eq!(second, ChunkRun::AlreadyCommitted);
    assert_eq!(
        env.app.store.counters(&job).await.unwrap(),
        counters_after_first
    );
    // The queue still holds every dispatched pointer, chunk 1 included: a third delivery.
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 7);
    let audit = env.audit(&job).await;
    assert_eq!(audit.succeeded_rows, 7);
    assert_eq!(env.app.store.committed_ranges(&job).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_planned_in_the_same_process_runs_from_memory_once_and_from_s3_after() {
    let env = TestEnv::with_vars(&[("BATCHOPS_CHUNK_SIZE", "2")]).await;
    let mut lines = Vec::new();
    for i in 0..3 {
        env.put(&env.src, &format!("h{i}"), format!("v{i}")).await;
        lines.push(line(&env.src, &format!("h{i}")));
    }
    let manifest = env.manifest("handoff", &lines).await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    // One process plans and works, as the local runtime does.
    let app = (*env.app).clone().with_chunk_handoff();
    let outcome = advance(&app, &job, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(outcome, Advance::Idle);
    // Chunk 0's stored file is gone: only the one handed off can run it.
    let chunk_file = |seq| batchops_core::chunk::chunk_key(&job, seq);
    batchops_aws::objects::delete_object(&app.s3, &app.config.control_bucket, &chunk_file(0))
        .await
        .unwrap();
    let pointer = |seq| ChunkPointer {
        job: job.clone(),
        seq,
        first_task: 0,
    };
    assert_eq!(
        process_chunk(&app, &pointer(0), deadline()).await.unwrap(),
        ChunkRun::Committed {
            tasks: 2,
            requeued_from: None
        }
    );
    assert_eq!(
        env.get(&env.dst, "copied/h1").await.as_deref(),
        Some(&b"v1"[..])
    );
    // Given once: a second read of chunk 0 goes to S3, where it no longer is.
    let handoff = app.chunk_handoff.as_ref().unwrap();
    assert_eq!(handoff.take(&job, 0), None);
    // Chunk 1 runs from S3 as well, the same tasks as its handed-off copy.
    let handed = handoff.take(&job, 1).expect("chunk 1 handed off");
    let stored =
        batchops_aws::objects::get_bytes(&app.s3, &app.config.control_bucket, &chunk_file(1))
            .await
            .unwrap();
    assert_eq!(handed, stored);
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 3);
    assert_eq!(
        env.get(&env.dst, "copied/h2").await.as_deref(),
        Some(&b"v2"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_out_of_time_commits_what_it_did_and_requeues_the_rest() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_CHUNK_SIZE", "300"),
        ("BATCHOPS_TASK_CONCURRENCY", "1"),
        ("BATCHOPS_WORKER_SAFETY_SECONDS", "100"),
    ])
    .await;
    // Absent objects make quick tasks (one HEAD each): what matters here is where it stops.
    let lines: Vec<String> = (0..300)
        .map(|i| line(&env.src, &format!("absent-{i:03}")))
        .collect();
    let manifest = env.manifest("deadline", &lines).await;
    let job = plan_only(&env, env.request_json(&manifest, &["Bucket", "Key"])).await;
    let pointer = ChunkPointer {
        job: job.clone(),
        seq: 0,
        first_task: 0,
    };
    // Past the safety margin already: no task may start, nothing is committed, SQS retries.
    let spent = SystemTime::now() + Duration::from_secs(50);
    assert!(process_chunk(&env.app, &pointer, spent).await.is_err());
    assert!(!env.app.store.range_committed(&job, 0, 0).await.unwrap());
    // Half a second of starting time: some tasks run one at a time, then the worker commits
    // them and re-queues the remainder. On a loaded machine the chunk read alone can take that
    // long (no task started, nothing committed): then again with a longer window.
    let mut window = Duration::from_millis(500);
    let run = loop {
        let short = SystemTime::now() + Duration::from_secs(100) + window;
        match process_chunk(&env.app, &pointer, short).await {
            Ok(run) => break run,
            Err(err) if window < Duration::from_secs(4) => {
                assert!(!env.app.store.range_committed(&job, 0, 0).await.unwrap());
                eprintln!("no task started in {window:?} ({err}); retrying with more time");
                window *= 2;
            }
            Err(err) => panic!("no task started even in {window:?}: {err}"),
        }
    };
    let ChunkRun::Committed {
        tasks,
        requeued_from: Some(next),
    } = run
    else {
        panic!("expected a partial commit, got {run:?}")
    };
    assert!((1..300).contains(&tasks), "ran {tasks}");
    assert_eq!(next, tasks);
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_failed, 300);
    let ranges = env.app.store.committed_ranges(&job).await.unwrap();
    assert!(ranges.len() >= 2);
    assert_eq!(
        ranges
            .iter()
            .map(|r| r.end_task - r.first_task)
            .sum::<u64>(),
        300
    );
    env.audit(&job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_mid_job_keeps_what_was_copied_and_reports_it() {
    let env = TestEnv::with_vars(&[("BATCHOPS_CHUNK_SIZE", "5")]).await;
    let objects: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("c{i:02}"), vec![b'x'; 10]))
        .collect();
    let lines: Vec<String> = objects.iter().map(|(k, _)| line(&env.src, k)).collect();
    env.put_many(&env.src, objects).await;
    let manifest = env.manifest("cancel", &lines).await;
    let job = plan_only(&env, env.request_json(&manifest, &["Bucket", "Key"])).await;
    for seq in 0..2 {
        let run = process_chunk(
            &env.app,
            &ChunkPointer {
                job: job.clone(),
                seq,
                first_task: 0,
            },
            deadline(),
        )
        .await
        .unwrap();
        assert_eq!(
            run,
            ChunkRun::Committed {
                tasks: 5,
                requeued_from: None
            }
        );
    }
    let change = batchops_aws::jobs::update_job_status(
        &env.app,
        &job,
        batchops_core::JobStatus::Cancelled,
        Some("test"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(change.status, batchops_core::JobStatus::Cancelling);
    // A worker receiving a pointer now does nothing.
    let late = process_chunk(
        &env.app,
        &ChunkPointer {
            job: job.clone(),
            seq: 5,
            first_task: 0,
        },
        deadline(),
    )
    .await
    .unwrap();
    assert!(matches!(late, ChunkRun::Skipped(_)), "{late:?}");
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Cancelled");
    assert!(described.termination_date.is_some());
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 10);
    assert_eq!(described.progress_summary.total_number_of_tasks, 50);
    assert_eq!(
        env.keys(&env.dst).await.len(),
        10,
        "copied objects stay, nothing else ran"
    );
    let audit = env.audit(&job).await;
    assert_eq!(audit.succeeded_rows, 10);
    // Cancelling again is refused: the job is terminal.
    assert!(batchops_aws::jobs::update_job_status(
        &env.app,
        &job,
        batchops_core::JobStatus::Cancelled,
        None,
        None
    )
    .await
    .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confirmation_required_waits_suspended_until_confirmed() {
    let env = TestEnv::new().await;
    env.put(&env.src, "a", "a").await;
    let manifest = env.manifest("confirm", &[line(&env.src, "a")]).await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["ConfirmationRequired"] = json!(true);
    let job = env.create(document).await;
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Suspended");
    assert_eq!(
        described.suspended_cause.as_deref(),
        Some("AwaitingConfirmation")
    );
    assert_eq!(described.progress_summary.total_number_of_tasks, 1);
    assert!(
        env.keys(&env.dst).await.is_empty(),
        "nothing runs before confirmation"
    );
    batchops_aws::jobs::update_job_status(
        &env.app,
        &job,
        batchops_core::JobStatus::Ready,
        None,
        None,
    )
    .await
    .unwrap();
    env.run_until_idle().await;
    assert_eq!(env.describe(&job).await.status, "Complete");
    assert_eq!(env.keys(&env.dst).await, vec!["copied/a".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn too_many_failures_fail_the_job_past_the_threshold() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_FAILURE_THRESHOLD_MIN_TASKS", "10"),
        ("BATCHOPS_CHUNK_SIZE", "10"),
    ])
    .await;
    env.put(&env.src, "only-one", "1").await;
    let mut lines = vec![line(&env.src, "only-one")];
    lines.extend((0..29).map(|i| line(&env.src, &format!("missing-{i}"))));
    let manifest = env.manifest("threshold", &lines).await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Failed");
    let reason = described
        .failure_reasons
        .iter()
        .find(|r| r.failure_code == "TaskFailureThresholdExceeded")
        .expect("threshold reason");
    assert!(
        reason.failure_reason.contains("more than the 50% allowed"),
        "{}",
        reason.failure_reason
    );
    let audit = env.audit(&job).await;
    assert!(
        audit.failed_rows >= 9,
        "the report is written for a failed job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_manifest_fails_the_job_on_its_etag() {
    let env = TestEnv::new().await;
    env.put(&env.src, "a", "a").await;
    let manifest = env.manifest("etag", &[line(&env.src, "a")]).await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    // The manifest is replaced after the job was created.
    env.manifest("etag", &[line(&env.src, "a"), line(&env.src, "b")])
        .await;
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Failed");
    assert_eq!(
        described.failure_reasons[0].failure_code,
        "ManifestETagMismatch"
    );
    assert!(described.failure_reasons[0]
        .failure_reason
        .contains("changed after the job was created"));
    assert!(env.keys(&env.dst).await.is_empty());

    // A wrong ETag given in the request fails the same way.
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["Manifest"]["Location"]["ETag"] = json!("\"0123456789abcdef0123456789abcdef\"");
    let job = env.create(document).await;
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Failed");
    assert!(described.failure_reasons[0]
        .failure_reason
        .contains("0123456789abcdef0123456789abcdef"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_version_ids_fail_the_job_naming_the_lines() {
    let env = TestEnv::new().await;
    let v = env.put(&env.src, "a", "a").await;
    env.put(&env.src, "b", "b").await;
    let manifest = env
        .manifest(
            "mixed",
            &[format!("{},a,{v}", env.src), format!("{},b,", env.src)],
        )
        .await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key", "VersionId"]))
        .await;
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Failed");
    assert_eq!(
        described.failure_reasons[0].failure_code,
        "ManifestVersionIdsMixed"
    );
    assert!(described.failure_reasons[0]
        .failure_reason
        .contains("line 1 has a VersionId, line 2 has none"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_client_request_token_creates_one_job() {
    let env = TestEnv::new().await;
    env.put(&env.src, "a", "a").await;
    let manifest = env.manifest("token", &[line(&env.src, "a")]).await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["ClientRequestToken"] = json!("same-token-1");
    let first = env.create(document.clone()).await;
    let second = env.create(document).await;
    assert_eq!(first, second);
    let jobs = batchops_aws::jobs::list_jobs(&env.app, &[]).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_id, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_requests_are_refused_naming_the_field() {
    let env = TestEnv::new().await;
    let mut document = env.request_json("manifests/absent.csv", &["Bucket", "Key"]);
    let request = batchops_core::CreateJobRequest::from_json(&document.to_string()).unwrap();
    let err = batchops_aws::jobs::create_job(&env.app, request)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Manifest.Location.ObjectArn"),
        "{err}"
    );
    env.put(&env.src, "manifests/present.csv", "x,y\n").await;
    document = env.request_json("manifests/present.csv", &["Bucket", "Key"]);
    document["Report"]["Bucket"] = json!("arn:aws:s3:::no-such-report-bucket-here");
    let request = batchops_core::CreateJobRequest::from_json(&document.to_string()).unwrap();
    let err = batchops_aws::jobs::create_job(&env.app, request)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Report.Bucket"), "{err}");
    // S3 Control requires both; a document without one is refused before anything is stored.
    for required in ["RoleArn", "ClientRequestToken"] {
        let mut document = env.request_json("manifests/present.csv", &["Bucket", "Key"]);
        document.as_object_mut().unwrap().remove(required);
        let request = batchops_core::CreateJobRequest::from_json(&document.to_string()).unwrap();
        let err = batchops_aws::jobs::create_job(&env.app, request)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!("{required}: required")),
            "{err}"
        );
    }
    assert!(batchops_aws::jobs::list_jobs(&env.app, &[])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_planner_stopped_after_every_slice_plans_every_task_once() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_CHUNK_SIZE", "7"),
        ("BATCHOPS_CHECKPOINT_EVERY_CHUNKS", "1"),
    ])
    .await;
    let lines: Vec<String> = (0..100)
        .map(|i| line(&env.src, &format!("p{i:03}")))
        .collect();
    let manifest = env.manifest("slices", &lines).await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    // A deadline already past: every call writes one chunk, checkpoints and stops.
    let mut slices = 0;
    while advance(&env.app, &job, Instant::now()).await.unwrap() == Advance::MoreWork {
        slices += 1;
        assert!(slices < 100, "planning does not converge");
    }
    let record = env.app.store.get_job(&job).await.unwrap();
    assert!(slices >= 14, "planned in {slices} slices");
    assert_eq!(record.plan.progress.tasks, 100);
    assert_eq!(record.plan.progress.next_seq, 15);
    let mut planned = Vec::new();
    for seq in 0..15 {
        let body = batchops_aws::objects::get_bytes(
            &env.app.s3,
            &env.app.config.control_bucket,
            &batchops_core::chunk::chunk_key(&job, seq),
        )
        .await
        .unwrap();
        for task in batchops_core::chunk::parse_chunk(&String::from_utf8(body).unwrap()).unwrap() {
            planned.push(task.manifest_line());
        }
    }
    assert_eq!(
        planned,
        (1..=100).collect::<Vec<u64>>(),
        "every manifest line once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn priority_can_change_until_the_job_ends() {
    let env = TestEnv::new().await;
    let manifest = env.manifest("prio", &[line(&env.src, "absent")]).await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    assert_eq!(
        batchops_aws::jobs::update_job_priority(&env.app, &job, 99)
            .await
            .unwrap(),
        99
    );
    assert_eq!(env.describe(&job).await.priority, 99);
    env.run_until_idle().await;
    assert!(batchops_aws::jobs::update_job_priority(&env.app, &job, 1)
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_tasks_only_reports_list_only_failures() {
    let env = TestEnv::new().await;
    env.put(&env.src, "ok", "ok").await;
    let manifest = env
        .manifest(
            "failed-only",
            &[line(&env.src, "ok"), line(&env.src, "nope")],
        )
        .await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["Report"]["ReportScope"] = json!("FailedTasksOnly");
    let job = env.create(document).await;
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 1);
    let audit = batchops_aws::audit::audit_report(&env.app, &job)
        .await
        .unwrap();
    assert_eq!((audit.succeeded_rows, audit.failed_rows), (0, 1));
    assert!(audit.consistent(false));
    assert_eq!(audit.rows[0].key_encoded, "nope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_finished_job_sends_one_status_event_to_eventbridge() {
    let env = TestEnv::new().await;
    let bus = env.app.config.event_bus.clone().expect("a bus per test");
    // A rule on the test's bus that forwards batchops events to a queue we can read.
    let sqs = &env.clients.sqs;
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("{bus}-watch"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let queue_arn = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .unwrap()
        .clone();
    let events = &env.clients.events;
    events
        .put_rule()
        .name("job-status")
        .event_bus_name(&bus)
        .event_pattern(r#"{"source": ["batchops"], "detail-type": ["Batchops Job Status Change"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("job-status")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("watch")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    env.put(&env.src, "one", "1").await;
    let manifest = env
        .manifest("events", &[line(&env.src, "one"), line(&env.src, "absent")])
        .await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    env.run_to_complete(&job).await;
    // The finalizer asked again (SQS redelivers): no second event.
    let again = batchops_aws::finalizer::finalize(&env.app, &job)
        .await
        .unwrap();
    assert_eq!(
        again,
        batchops_aws::finalizer::Finalized::Terminal(batchops_core::JobStatus::Complete)
    );

    let mut bodies = Vec::new();
    for _ in 0..3 {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        bodies.extend(
            out.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_string)),
        );
    }
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let event: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(event["source"], "batchops");
    assert_eq!(event["detail-type"], "Batchops Job Status Change");
    let described = &event["detail"]["Job"];
    assert_eq!(described["JobId"], json!(job));
    assert_eq!(described["Status"], "Complete");
    assert_eq!(
        described["ProgressSummary"]["NumberOfTasksSucceeded"],
        json!(1)
    );
    assert_eq!(
        described["ProgressSummary"]["NumberOfTasksFailed"],
        json!(1)
    );
}
