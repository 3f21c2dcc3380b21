//! Completion reports in bounded memory: staged rows rolled into a few large result files,
//! checkpointed so a killed finalizer resumes, idempotent once written.

use crate::harness::TestEnv;
use batchops_aws::finalizer::{finalize, roll_report, RollLimits};
use batchops_aws::store::{job_pk, RangeCommit, ShardRef};
use batchops_core::counts::Counters;
use batchops_core::report::{ReportManifest, ReportRoll, TaskStatus};
use batchops_core::JobStatus;
use std::collections::BTreeSet;

async fn manifest_of(env: &TestEnv, job: &str) -> (Vec<u8>, ReportManifest) {
    let body = env
        .get(&env.reports, &format!("reports/job-{job}/manifest.json"))
        .await
        .expect("manifest.json written");
    let manifest = serde_json::from_slice(&body).expect("manifest parses");
    (body, manifest)
}

/// A job of `ok` copies and `missing` failures, run to Complete.
async fn run_job(env: &TestEnv, ok: usize, missing: usize) -> String {
    let mut lines = Vec::new();
    for i in 0..ok {
        env.put(&env.src, &format!("obj/{i:03}"), format!("body {i}"))
            .await;
        lines.push(format!("{},obj/{i:03}", env.src));
    }
    for i in 0..missing {
        lines.push(format!("{},missing/{i:03}", env.src));
    }
    let manifest = env.manifest("rolled", &lines).await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    env.run_to_complete(&job).await;
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn report_rows_roll_into_several_files_one_write_per_finalizer_run() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_CHUNK_SIZE", "7"),
        ("BATCHOPS_REPORT_FILE_BYTES", "500"),
        // Every finalizer run writes one file and hands on to the next.
        ("BATCHOPS_REPORT_SLICE_WRITES", "1"),
    ])
    .await;
    let job = run_job(&env, 60, 9).await;
    let audit = env.audit(&job).await;
    assert_eq!((audit.succeeded_rows, audit.failed_rows), (60, 9));
    let keys: BTreeSet<String> = audit.rows.iter().map(|r| r.key_encoded.clone()).collect();
    assert_eq!(keys.len(), 69, "every task exactly once");

    let (_, manifest) = manifest_of(&env, &job).await;
    let succeeded = manifest
        .results
        .iter()
        .filter(|r| r.task_execution_status == TaskStatus::Succeeded)
        .count();
    assert!(succeeded >= 3, "rolled into {succeeded} succeeded files");
    assert!(
        succeeded < 10,
        "{succeeded} files for 10 ranges: not rolled"
    );
    // Only rolled files and the manifest reach the report bucket; rows were staged elsewhere.
    for key in env.keys(&env.reports).await {
        let name = key.trim_start_matches(&format!("reports/job-{job}/"));
        let rolled = name.starts_with("results/succeeded-") || name.starts_with("results/failed-");
        assert!(
            rolled || name == "manifest.json",
            "unexpected report object {key}"
        );
    }
    // Files close at the first range boundary past the size: at most one range's rows over.
    for result in &manifest.results {
        let body = env.get(&result.bucket, &result.key).await.expect("file");
        assert!(
            body.len() < 500 + 7 * 200,
            "{} has {} bytes",
            result.key,
            body.len()
        );
    }

    // Finalizing a finished job changes nothing.
    let (before, _) = manifest_of(&env, &job).await;
    finalize(&env.app, &job).await.expect("finalize again");
    let (after, _) = manifest_of(&env, &job).await;
    assert_eq!(before, after);
}

/// Runs the roll one S3 write at a time; every other run "dies" after its write and before its
/// checkpoint (the checkpoint is put back as it was), so the next run must redo that write.
async fn roll_with_kills(env: &TestEnv, job: &str) -> usize {
    let record = env.app.store.get_job(job).await.expect("job");
    let target = record.spec.report.clone().expect("report");
    let pk = job_pk(job);
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs < 500, "the roll does not finish");
        let before = env
            .app
            .store
            .get_doc::<ReportRoll>(&pk, "REPORT")
            .await
            .expect("checkpoint");
        let limits = RollLimits {
            deadline: None,
            max_writes: Some(1),
        };
        let done = roll_report(&env.app, job, &target, limits)
            .await
            .expect("roll run");
        if done {
            return runs;
        }
        if runs % 2 == 1 {
            let (_, revision) = env
                .app
                .store
                .get_doc::<ReportRoll>(&pk, "REPORT")
                .await
                .expect("checkpoint")
                .expect("a run that wrote checkpointed");
            match before {
                Some((roll, _)) => assert!(env
                    .app
                    .store
                    .put_doc(&pk, "REPORT", &roll, Some(revision), None)
                    .await
                    .expect("restore checkpoint")),
                None => env.app.store.delete_doc(&pk, "REPORT").await.expect("drop"),
            }
        }
    }
}

/// Forgets a written report: checkpoint, file items and objects, as if never rolled.
async fn forget_report(env: &TestEnv, job: &str, manifest: &ReportManifest) {
    let pk = job_pk(job);
    env.app.store.delete_doc(&pk, "REPORT").await.expect("drop");
    for result in &manifest.results {
        let name = result.key.rsplit('/').next().unwrap_or_default();
        let (status, index) = name.trim_end_matches(".csv").split_once('-').expect("name");
        let sk = format!("REPORTFILE#{status}#{index}");
        env.app.store.delete_doc(&pk, &sk).await.expect("drop file");
        batchops_aws::objects::delete_object(&env.app.s3, &result.bucket, &result.key)
            .await
            .expect("delete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_roll_killed_between_writes_and_checkpoints_resumes_to_the_same_report() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_CHUNK_SIZE", "5"),
        ("BATCHOPS_REPORT_FILE_BYTES", "300"),
    ])
    .await;
    let job = run_job(&env, 30, 6).await;
    let (_, first) = manifest_of(&env, &job).await;
    assert!(first.results.len() >= 4);
    forget_report(&env, &job, &first).await;

    let runs = roll_with_kills(&env, &job).await;
    assert!(runs > first.results.len(), "{runs} runs");
    let (_, again) = manifest_of(&env, &job).await;
    assert_eq!(
        again.results, first.results,
        "the same files, byte for byte"
    );
    let audit = env.audit(&job).await;
    assert_eq!((audit.succeeded_rows, audit.failed_rows), (30, 6));
}

/// Commits ranges whose staged rows are large (2.5 MiB each) directly, so result files need
/// multipart uploads of 5 MiB parts (S3's and moto's minimum).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_result_files_are_multipart_and_resume_mid_upload() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_REPORT_FILE_BYTES", &(8 << 20).to_string()),
        ("BATCHOPS_REPORT_PART_BYTES", &(5 << 20).to_string()),
    ])
    .await;
    env.put(&env.src, "m.csv", format!("{},a\n", env.src)).await;
    let job = env
        .create(env.request_json("m.csv", &["Bucket", "Key"]))
        .await;
    env.app
        .store
        .update_job(&job, |record| {
            record.status = JobStatus::Active;
            Ok::<bool, ()>(true)
        })
        .await
        .expect("update")
        .expect("active");
    let rows_per_range = 25_000u64;
    let mut all = BTreeSet::new();
    for seq in 0..5u64 {
        let mut body = String::new();
        for i in 0..rows_per_range {
            let key = format!("big/{seq:02}/{i:06}-padding-padding-padding-padding-padding");
            body.push_str(&format!("{},{key},,succeeded,200,,Successful\n", env.src));
            all.insert(key);
        }
        let key = format!("jobs/{job}/rows/{seq:010}-0000000-t-succeeded.csv");
        let md5 = batchops_aws::objects::put_bytes(
            &env.app.s3,
            &env.app.config.control_bucket,
            &key,
            body.into_bytes(),
            "text/csv",
        )
        .await
        .expect("stage");
        let now = batchops_aws::unix_now();
        env.app
            .store
            .acquire_range_lease(&job, seq, 0, "t", now + 60, now)
            .await
            .expect("lease");
        let commit = RangeCommit {
            seq,
            first_task: 0,
            end_task: rows_per_range,
            chunk_tasks: Some(rows_per_range),
            counters: Counters {
                succeeded: rows_per_range,
                ..Counters::default()
            },
            shards: vec![ShardRef {
                status: TaskStatus::Succeeded,
                bucket: env.app.config.control_bucket.clone(),
                key,
                md5,
            }],
            fragment: None,
        };
        env.app
            .store
            .commit_range(&job, &commit, "t")
            .await
            .expect("commit");
    }
    let runs = roll_with_kills(&env, &job).await;
    let (_, manifest) = manifest_of(&env, &job).await;
    // 12 MB (2.4 MB a range) at 8 MiB files: a file of two parts (3 ranges, then 1: the
    // range that took it past 8 MiB), then one of a single range, put whole.
    assert_eq!(manifest.results.len(), 2, "{:?}", manifest.results);
    // Runs 3 and 5 redo a part and a completed upload whose checkpoints were lost.
    assert!(runs >= 5, "{runs} runs");
    let head = env
        .app
        .s3
        .head_object()
        .bucket(&manifest.results[0].bucket)
        .key(&manifest.results[0].key)
        .send()
        .await
        .expect("head");
    assert!(
        head.e_tag().unwrap_or_default().ends_with("-2\""),
        "{:?}",
        head.e_tag()
    );
    let audit = env.audit(&job).await;
    assert_eq!(audit.succeeded_rows, 5 * rows_per_range);
    let keys: BTreeSet<String> = audit.rows.iter().map(|r| r.key_encoded.clone()).collect();
    assert_eq!(keys, all);
}
