//! Dispatch while planning: a job that needs no confirmation goes Active at its first
//! checkpoint and runs the chunks planned so far while the rest of its manifest is read; its
//! totals become final (and the finalizer may end it) only when planning ends.

use crate::harness::TestEnv;
use batchops_aws::finalizer::{finalize, Finalized};
use batchops_aws::planner::{advance, Advance};
use batchops_aws::worker::{process_chunk, ChunkRun};
use batchops_core::encoding::encode_key;
use batchops_core::JobStatus;
use std::time::{Duration, Instant, SystemTime};

/// A job copying `count` one-chunk-per-object objects (`name/k000..`), created, not yet planned.
/// More chunks than the planner keeps in flight, so its first slice cannot read to the end.
async fn one_task_chunks_job(env: &TestEnv, name: &str, count: usize) -> String {
    let objects = (0..count)
        .map(|i| (format!("{name}/k{i:03}"), format!("body {i}").into_bytes()))
        .collect::<Vec<_>>();
    let lines: Vec<String> = objects
        .iter()
        .map(|(key, _)| format!("{},{}", env.src, encode_key(key)))
        .collect();
    env.put_many(&env.src, objects).await;
    let manifest = env.manifest(name, &lines).await;
    env.create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await
}

fn one_task_env_vars() -> [(&'static str, &'static str); 2] {
    [
        ("BATCHOPS_CHUNK_SIZE", "1"),
        ("BATCHOPS_CHECKPOINT_EVERY_CHUNKS", "5"),
    ]
}

const OBJECTS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_runs_its_first_chunk_before_its_manifest_is_fully_planned() {
    let env = TestEnv::with_vars(&one_task_env_vars()).await;
    let job = one_task_chunks_job(&env, "early", OBJECTS).await;
    // A planner slice whose time is up at once: it stops at its first checkpoint.
    let outcome = advance(&env.app, &job, Instant::now()).await.unwrap();
    assert_eq!(outcome, Advance::MoreWork);
    let record = env.app.store.get_job(&job).await.unwrap();
    assert_eq!(record.status, JobStatus::Active, "running while planned");
    assert!(!record.plan.finished);
    let planned = record.plan.progress.tasks;
    assert!(planned >= 1 && planned < OBJECTS as u64, "{planned}");
    // DescribeJob: Active, with the total planned so far.
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Active");
    assert_eq!(described.progress_summary.total_number_of_tasks, planned);
    // The chunks planned so far are dispatched, in order; the first one runs now.
    let pointers = env.drain_work_queue().await;
    let seqs: Vec<u64> = pointers.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, (0..record.plan.progress.next_seq).collect::<Vec<_>>());
    let deadline = SystemTime::now() + Duration::from_secs(120);
    let run = process_chunk(&env.app, &pointers[0], deadline)
        .await
        .unwrap();
    assert!(
        matches!(run, ChunkRun::Committed { tasks: 1, .. }),
        "{run:?}"
    );
    assert!(env.get(&env.dst, "copied/early/k000").await.is_some());
    // Every task planned so far may have run: the finalizer still waits for planning's end.
    for pointer in &pointers[1..] {
        process_chunk(&env.app, pointer, deadline).await.unwrap();
    }
    let counters = env.app.store.counters(&job).await.unwrap();
    assert_eq!(counters.tasks_done(), planned);
    assert_eq!(finalize(&env.app, &job).await.unwrap(), Finalized::NotReady);
    assert_eq!(env.describe(&job).await.status, "Active");
    // Planning goes on; the job ends with every task counted once.
    let described = env.run_to_complete(&job).await;
    assert_eq!(
        described.progress_summary.total_number_of_tasks,
        OBJECTS as u64
    );
    assert_eq!(
        described.progress_summary.number_of_tasks_succeeded,
        OBJECTS as u64
    );
    let audit = env.audit(&job).await;
    assert_eq!(audit.succeeded_rows, OBJECTS as u64);
    assert_eq!(env.keys(&env.dst).await.len(), OBJECTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_needs_confirmation_is_planned_to_the_end_before_it_is_suspended() {
    let env = TestEnv::with_vars(&one_task_env_vars()).await;
    let mut document = {
        let objects: Vec<String> = (0..OBJECTS)
            .map(|i| format!("{},{}", env.src, encode_key(&format!("confirm/k{i:03}"))))
            .collect();
        let manifest = env.manifest("confirm", &objects).await;
        env.request_json(&manifest, &["Bucket", "Key"])
    };
    document["ConfirmationRequired"] = true.into();
    let job = env.create(document).await;
    assert_eq!(
        advance(&env.app, &job, Instant::now()).await.unwrap(),
        Advance::MoreWork
    );
    let record = env.app.store.get_job(&job).await.unwrap();
    assert_eq!(record.status, JobStatus::Preparing);
    assert!(
        env.drain_work_queue().await.is_empty(),
        "nothing dispatched"
    );
    while advance(&env.app, &job, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap()
        == Advance::MoreWork
    {}
    let record = env.app.store.get_job(&job).await.unwrap();
    assert_eq!(record.status, JobStatus::Suspended);
    assert_eq!(record.total_tasks(), Some(OBJECTS as u64));
    assert!(
        env.drain_work_queue().await.is_empty(),
        "nothing dispatched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_planner_stopped_after_dispatching_is_resumed_without_counting_a_task_twice() {
    let env = TestEnv::with_vars(&one_task_env_vars()).await;
    let job = one_task_chunks_job(&env, "resumed", OBJECTS).await;
    // The first slice checkpoints, sends its pointers and stops before recording them sent:
    // what a planner killed right after its send leaves.
    advance(&env.app, &job, Instant::now()).await.unwrap();
    let record = env.app.store.get_job(&job).await.unwrap();
    assert_eq!(record.status, JobStatus::Active);
    assert_eq!(record.dispatched_chunks, 0, "sent, not yet recorded");
    let first = env.drain_work_queue().await;
    assert!(!first.is_empty());
    // Chunk 0 runs.
    let deadline = SystemTime::now() + Duration::from_secs(120);
    process_chunk(&env.app, &first[0], deadline).await.unwrap();
    // The killed planner's lease is still live: a redelivered planning message leaves the job
    // alone.
    let now = batchops_aws::unix_now();
    assert!(env
        .app
        .store
        .acquire_plan_lease(&job, "killed-planner", now + 600, now)
        .await
        .unwrap());
    assert_eq!(
        advance(&env.app, &job, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap(),
        Advance::Idle
    );
    assert!(env.drain_work_queue().await.is_empty());
    // Once it has expired (taken over as at a later time, then given back), the redelivered
    // message resumes planning at the checkpoint and sends the unrecorded pointers again.
    let later = now + 3600;
    assert!(env
        .app
        .store
        .acquire_plan_lease(&job, "successor", later + 600, later)
        .await
        .unwrap());
    env.app
        .store
        .release_plan_lease(&job, "successor")
        .await
        .unwrap();
    while advance(&env.app, &job, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap()
        == Advance::MoreWork
    {}
    let record = env.app.store.get_job(&job).await.unwrap();
    assert_eq!(record.total_tasks(), Some(OBJECTS as u64));
    assert_eq!(record.dispatched_chunks, OBJECTS as u64);
    let mut resent = env.drain_work_queue().await;
    let seqs: Vec<u64> = resent.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, (0..OBJECTS as u64).collect::<Vec<_>>());
    // The duplicate of chunk 0 changes nothing; the job ends with each task counted once.
    let again = process_chunk(&env.app, &resent.remove(0), deadline)
        .await
        .unwrap();
    assert_eq!(again, ChunkRun::AlreadyCommitted);
    env.app.queues.send_chunks(&resent).await.unwrap();
    let described = env.run_to_complete(&job).await;
    assert_eq!(
        described.progress_summary.number_of_tasks_succeeded,
        OBJECTS as u64
    );
    let audit = env.audit(&job).await;
    assert_eq!(audit.succeeded_rows, OBJECTS as u64);
    assert_eq!(env.keys(&env.dst).await.len(), OBJECTS);
}

/// A planner killed mid-slice holds its job for one short planning lease, not for the rest of its
/// slice: the next planner takes the job over and plans it to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_planner_killed_mid_slice_gives_its_job_up_after_one_lease() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_CHUNK_SIZE", "1"),
        ("BATCHOPS_CHECKPOINT_EVERY_CHUNKS", "5"),
        ("BATCHOPS_PLAN_LEASE_SECONDS", "3"),
    ])
    .await;
    let objects = 300;
    let job = one_task_chunks_job(&env, "killed", objects).await;
    // A long slice, killed (its task aborted) once it has checkpointed at least once.
    let app = env.app.clone();
    let planner_job = job.clone();
    let planner = tokio::spawn(async move {
        advance(
            &app,
            &planner_job,
            Instant::now() + Duration::from_secs(600),
        )
        .await
    });
    let started = Instant::now();
    while env.app.store.get_job(&job).await.unwrap().status != JobStatus::Active {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    planner.abort();
    let _ = planner.await;
    let killed_at = Instant::now();
    assert!(
        !env.app.store.get_job(&job).await.unwrap().plan.finished,
        "planning ended before the kill: make the manifest longer"
    );
    // Redelivered planning messages: within a few leases the job is planned to the end.
    loop {
        let outcome = advance(&env.app, &job, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        if env.app.store.get_job(&job).await.unwrap().plan.finished {
            break;
        }
        if outcome == Advance::Idle {
            assert!(
                killed_at.elapsed() < Duration::from_secs(20),
                "the killed planner's lease still holds the job after {:?}",
                killed_at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let record = env.app.store.get_job(&job).await.unwrap();
    assert_eq!(record.total_tasks(), Some(objects as u64));
}

/// A planner that runs longer than its lease keeps renewing it: no second planner gets the job
/// while the first is still planning.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_planner_keeps_its_lease_past_its_length() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_CHUNK_SIZE", "1"),
        ("BATCHOPS_CHECKPOINT_EVERY_CHUNKS", "5"),
        ("BATCHOPS_PLAN_LEASE_SECONDS", "3"),
    ])
    .await;
    let objects = 600;
    let job = one_task_chunks_job(&env, "alive", objects).await;
    let app = env.app.clone();
    let planner_job = job.clone();
    let started = Instant::now();
    let planner = tokio::spawn(async move {
        advance(
            &app,
            &planner_job,
            Instant::now() + Duration::from_secs(600),
        )
        .await
    });
    // Once it has checkpointed, the planner surely holds the lease.
    while env.app.store.get_job(&job).await.unwrap().status != JobStatus::Active {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut intrusions = 0;
    let planned_for = loop {
        if env.app.store.get_job(&job).await.unwrap().plan.finished {
            break started.elapsed();
        }
        let now = batchops_aws::unix_now();
        if env
            .app
            .store
            .acquire_plan_lease(&job, "intruder", now + 1, now)
            .await
            .unwrap()
        {
            // The lease is given up only once planning has ended.
            if !env.app.store.get_job(&job).await.unwrap().plan.finished {
                intrusions += 1;
            }
            env.app
                .store
                .release_plan_lease(&job, "intruder")
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    planner.await.unwrap().unwrap();
    assert!(
        planned_for > Duration::from_millis(4500),
        "planning took {planned_for:?}, under one and a half leases: make the manifest longer"
    );
    assert_eq!(
        intrusions, 0,
        "another planner got the lease while the first planned"
    );
    let record = env.app.store.get_job(&job).await.unwrap();
    assert_eq!(record.total_tasks(), Some(objects as u64));
}
