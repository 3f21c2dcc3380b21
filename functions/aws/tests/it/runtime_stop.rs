//! `batchops run --until-idle` stops as soon as no job has work left, without waiting for its
//! long polls, and a message it received is handled or left in the queue: never deleted
//! unhandled.

use crate::harness::TestEnv;
use batchops_aws::queue::ChunkPointer;
use batchops_aws::runtime::{receive_work, run, RunOptions, WORK_CLAIM_SECONDS};
use batchops_core::encoding::encode_key;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn until_idle() -> RunOptions {
    RunOptions {
        until_idle: true,
        concurrency: 4,
        sweep_interval: Duration::from_millis(200),
        max_duration: Some(Duration::from_secs(60)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_runtime_stops_at_once() {
    let env = TestEnv::new().await;
    let started = Instant::now();
    run(env.app.clone(), until_idle()).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runtime_that_stops_deletes_no_message_it_did_not_handle() {
    let env = TestEnv::new().await;
    env.put(&env.src, "stop/k0", "x").await;
    let manifest = env
        .manifest("stop", &[format!("{},{}", env.src, encode_key("stop/k0"))])
        .await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    env.run_to_complete(&job).await;
    // Pointers of the ended job arrive while runtimes start and stop: each one a runtime
    // received is handled (skipped, then deleted); every other one stays in the queue.
    let sent = Arc::new(AtomicU64::new(0));
    let mut handled = 0u64;
    for _ in 0..8 {
        let sending = Arc::new(AtomicBool::new(true));
        let sender = {
            let (app, job, sent, sending) =
                (env.app.clone(), job.clone(), sent.clone(), sending.clone());
            tokio::spawn(async move {
                while sending.load(Ordering::SeqCst) {
                    let pointer = ChunkPointer {
                        job: job.clone(),
                        seq: 0,
                        first_task: 0,
                    };
                    app.queues.send_chunks(&[pointer]).await.unwrap();
                    sent.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let stats = run(env.app.clone(), until_idle()).await.unwrap();
        sending.store(false, Ordering::SeqCst);
        sender.await.unwrap();
        handled += stats.chunks.load(Ordering::SeqCst);
    }
    let left = env
        .app
        .queues
        .pending(&env.app.queues.work_url)
        .await
        .unwrap();
    assert_eq!(handled + left, sent.load(Ordering::SeqCst));
    assert!(handled > 0, "no runtime received a message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pointer_taken_by_a_long_poll_a_stopped_runtime_left_is_back_within_the_claim_window() {
    let env = TestEnv::new().await;
    let app = env.app.clone();
    // A worker loop's long poll, left waiting in SQS when its runtime stopped at once.
    let left = tokio::spawn({
        let app = app.clone();
        async move { receive_work(&app).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    left.abort();
    // The next job's first pointer, sent now, is taken by that poll, for no one.
    let pointer = ChunkPointer {
        job: "next-job".into(),
        seq: 0,
        first_task: 0,
    };
    app.queues.send_chunks(&[pointer]).await.unwrap();
    let sent = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The next runtime gets it after the claim window, not after the full visibility (30 s):
    // a job whose first chunk waited that long ran half a minute late.
    let claim = Duration::from_secs(WORK_CLAIM_SECONDS as u64);
    let mut back = None;
    while sent.elapsed() < claim + Duration::from_secs(4) {
        let got = app
            .queues
            .receive(&app.queues.work_url, 1, 1, 30)
            .await
            .unwrap();
        if !got.is_empty() {
            back = Some(sent.elapsed());
            break;
        }
    }
    let back = back.expect("the pointer was not back within the claim window");
    // Hidden for the window: the abandoned poll did take it (else this proves nothing).
    assert!(
        back >= claim - Duration::from_millis(300),
        "back after {back:?}: the left poll did not take it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_idle_check_sees_every_job_that_has_work_and_no_other() {
    let env = TestEnv::new().await;
    let store = &env.app.store;
    assert!(!store.any_working_job().await.unwrap());
    env.put(&env.src, "idle/k0", "x").await;
    let manifest = env
        .manifest("idle", &[format!("{},{}", env.src, encode_key("idle/k0"))])
        .await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["ConfirmationRequired"] = true.into();
    let job = env.create(document).await;
    // New: work for the planner.
    assert!(store.any_working_job().await.unwrap());
    assert_eq!(store.working_job_ids().await.unwrap(), vec![job.clone()]);
    // Suspended waits for a person: the runtime may stop.
    run(env.app.clone(), until_idle()).await.unwrap();
    assert_eq!(env.describe(&job).await.status, "Suspended");
    assert!(!store.any_working_job().await.unwrap());
    // Confirmed (Ready): work again, and a runtime started now runs it to the end.
    batchops_aws::jobs::update_job_status(
        &env.app,
        &job,
        batchops_core::JobStatus::Ready,
        None,
        None,
    )
    .await
    .unwrap();
    assert!(store.any_working_job().await.unwrap());
    env.run_to_complete(&job).await;
    assert!(!store.any_working_job().await.unwrap());
    assert!(store.working_job_ids().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_written_before_working_markers_is_marked_and_run_to_the_end() {
    let env = TestEnv::new().await;
    env.put(&env.src, "old/k0", "x").await;
    let manifest = env
        .manifest("old", &[format!("{},{}", env.src, encode_key("old/k0"))])
        .await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    // What an earlier version wrote: the job, no marker.
    env.clients
        .dynamodb
        .delete_item()
        .table_name(&env.app.config.table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("WORKING".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(job.clone()),
        )
        .send()
        .await
        .unwrap();
    assert!(!env.app.store.any_working_job().await.unwrap());
    // The runtime marks it as it starts, and does not stop before it has run.
    env.run_to_complete(&job).await;
    assert!(!env.app.store.any_working_job().await.unwrap());
    // Marking again adds nothing for a job that has ended.
    assert_eq!(env.app.store.mark_working_jobs().await.unwrap(), 0);
}
