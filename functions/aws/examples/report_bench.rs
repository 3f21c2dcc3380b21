//! `scripts/bench.sh finalize`: the finalizer's report roll over a job of N tasks.
//!
//!   report_bench seed --tasks N   (against moto: S3, DynamoDB) creates a job and commits its
//!                                 ranges of 1,000 tasks, each naming staged rows as the bench's
//!                                 fake S3 generates them; prints the job ID
//!   report_bench roll --job ID    runs `finalizer::roll_report` (no limits) and prints the
//!                                 manifest's files as JSON
//!
//! Rows are a function of the range and status (`rows` below; `scripts/bench_s3.py` generates
//! the same bytes), so no row is stored anywhere.

use batchops_aws::finalizer::{roll_report, RollLimits};
use batchops_aws::store::{RangeCommit, ShardRef};
use batchops_aws::{setup, App, Clients, Config};
use batchops_core::counts::Counters;
use batchops_core::report::{staged_rows_key, TaskStatus};
use batchops_core::request::CreateJobRequest;
use batchops_core::JobStatus;
use md5::{Digest, Md5};

const RANGE: u64 = 1000;
const ATTEMPT: &str = "bench";

/// A range's staged rows of `status`: every 100th task failed.
fn rows(seq: u64, status: TaskStatus) -> String {
    let mut out = String::new();
    for task in seq * RANGE..(seq + 1) * RANGE {
        match (task % 100 == 99, status) {
            (false, TaskStatus::Succeeded) => out.push_str(&format!(
                "bench-source,data/{task:08}.bin,,succeeded,200,,Successful\n"
            )),
            (true, TaskStatus::Failed) => out.push_str(&format!(
                "bench-source,data/{task:08}.bin,,failed,404,NoSuchKey,Not Found\n"
            )),
            _ => {}
        }
    }
    out
}

async fn app() -> anyhow::Result<App> {
    let config = Config::from_env()?;
    let clients = Clients::load(&config).await;
    Ok(App::new(config, clients).await?)
}

async fn seed(tasks: u64) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let clients = Clients::load(&config).await;
    setup::init(&clients, &config).await?;
    let app = App::new(config, clients).await?;
    for bucket in ["bench-source", "bench-reports"] {
        let _ = app.s3.create_bucket().bucket(bucket).send().await;
    }
    batchops_aws::objects::put_bytes(
        &app.s3,
        "bench-source",
        "m.csv",
        b"bench-source,a\n".to_vec(),
        "text/csv",
    )
    .await?;
    let request = serde_json::json!({
        "AccountId": "000000000000",
        "ClientRequestToken": uuid::Uuid::new_v4().to_string(),
        "ConfirmationRequired": false,
        "Operation": {"S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::bench-source", "TargetKeyPrefix": "copied"}},
        "Report": {"Bucket": "arn:aws:s3:::bench-reports", "Prefix": "reports", "Format": "Report_CSV_20180820",
                   "Enabled": true, "ReportScope": "AllTasks"},
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": "arn:aws:s3:::bench-source/m.csv"}},
        "Priority": 10,
        "RoleArn": "arn:aws:iam::000000000000:role/batchops"
    });
    let request = CreateJobRequest::from_json(&request.to_string())?;
    let job = batchops_aws::jobs::create_job(&app, request).await?.job_id;
    app.store
        .update_job(&job, |record| {
            record.status = JobStatus::Active;
            Ok::<bool, ()>(true)
        })
        .await?
        .map_err(|_| anyhow::anyhow!("job {job} could not be made Active"))?;
    let ranges = tasks.div_ceil(RANGE);
    let mut commits = Vec::with_capacity(1000);
    for seq in 0..ranges {
        let mut shards = Vec::new();
        let mut counters = Counters::default();
        for status in [TaskStatus::Succeeded, TaskStatus::Failed] {
            let body = rows(seq, status);
            let count = body.lines().count() as u64;
            match status {
                TaskStatus::Succeeded => counters.succeeded = count,
                TaskStatus::Failed => counters.failed = count,
            }
            shards.push(ShardRef {
                status,
                bucket: app.config.control_bucket.clone(),
                key: staged_rows_key(&job, seq, 0, ATTEMPT, status),
                md5: hex::encode(Md5::digest(body.as_bytes())),
            });
        }
        commits.push(RangeCommit {
            seq,
            first_task: 0,
            end_task: RANGE,
            chunk_tasks: Some(RANGE),
            counters,
            shards,
            fragment: None,
        });
        // Batches of committed range items (moto's transactions slow down as the table grows).
        if commits.len() == 1000 || seq + 1 == ranges {
            app.store
                .import_committed_ranges(&job, &commits, ATTEMPT)
                .await?;
            commits.clear();
        }
    }
    println!("{job}");
    Ok(())
}

async fn roll(job: &str) -> anyhow::Result<()> {
    let app = app().await?;
    let record = app.store.get_job(job).await?;
    let target = record
        .spec
        .report
        .clone()
        .ok_or_else(|| anyhow::anyhow!("job {job} has no report"))?;
    if !roll_report(&app, job, &target, RollLimits::default()).await? {
        anyhow::bail!("the roll of job {job} stopped before the end");
    }
    let (manifest, _) = app
        .store
        .get_doc::<serde_json::Value>(&batchops_aws::store::job_pk(job), "REPORT")
        .await?
        .ok_or_else(|| anyhow::anyhow!("job {job} has no report checkpoint"))?;
    println!("{manifest}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        ["seed", "--tasks", tasks] => seed(tasks.parse()?).await,
        ["roll", "--job", job] => roll(job).await,
        _ => anyhow::bail!("usage: report_bench seed --tasks N | roll --job ID"),
    }
}
