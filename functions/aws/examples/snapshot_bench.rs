//! `scripts/bench.sh backup`, completion case: a backup run's snapshot completion and the
//! retention it applies, over N objects.
//!
//!   snapshot_bench seed --objects N --changed-every K --draft-rows R --chunk-tasks C
//!                       --catalog-etag E
//!       (the table on moto; S3 is scripts/bench_s3.py) stores policy `bench` (keep the last
//!       snapshot), its previous snapshot (the catalog bench_s3.py serves, ETag E, N objects) and
//!       a run of it that has run every task: N / R draft parts and, for the N / K changed
//!       objects, committed ranges of C copies each, whose draft rows and fragments bench_s3.py
//!       generates; prints the job ID
//!   snapshot_bench complete --job ID
//!       runs `backup::complete_snapshot` (the catalog written, the policy's newest snapshot,
//!       journal cleanup, retention expiring the previous snapshot and freing the versions only
//!       it referenced) and prints the snapshot and the snapshots left as JSON

use batchops_aws::backup::{self, SnapshotRecord};
use batchops_aws::store::RangeCommit;
use batchops_aws::{setup, App, Clients, Config};
use batchops_core::backup::{
    BackupPolicy, DeleteMode, Location, MaxDeletes, Retention, VersionsMode,
};
use batchops_core::counts::Counters;
use batchops_core::operation::OperationSpec;
use batchops_core::request::{BackupRun, CatalogRef, ManifestSource};
use batchops_core::{JobSpec, JobStatus};

const SOURCE: &str = "bench-source";
const VAULT: &str = "bench-vault";
const PREFIX: &str = "backups/source/";
const PREVIOUS: &str = "20261101T000000Z";
const ATTEMPT: &str = "bench";

fn policy() -> BackupPolicy {
    BackupPolicy {
        name: "bench".into(),
        source: Location {
            bucket: SOURCE.into(),
            prefix: String::new(),
        },
        destination: Location {
            bucket: VAULT.into(),
            prefix: PREFIX.into(),
        },
        schedule: None,
        time_zone: "UTC".into(),
        retention: Retention {
            keep_last: Some(1),
            keep_days: None,
        },
        deletes: DeleteMode::Record,
        max_deletes: Some(MaxDeletes::Unlimited),
        versions: VersionsMode::Current,
        storage_class: None,
        enabled: true,
        allow_unversioned_destination: false,
        continuous: false,
        inventory: None,
        role_arn: None,
    }
}

async fn app() -> anyhow::Result<App> {
    let config = Config::from_env()?;
    let clients = Clients::load(&config).await;
    Ok(App::new(config, clients).await?)
}

struct Seed {
    objects: u64,
    changed_every: u64,
    draft_rows: u64,
    chunk_tasks: u64,
    catalog_etag: String,
}

async fn seed(seed: Seed) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let clients = Clients::load(&config).await;
    setup::init(&clients, &config).await?;
    let app = App::new(config, clients).await?;
    let policy = policy();
    backup::put_policy(&app, policy.clone()).await?;
    let previous = CatalogRef {
        snapshot_id: PREVIOUS.into(),
        bucket: VAULT.into(),
        key: format!("{}{PREVIOUS}.catalog.gz", policy.catalog_prefix()),
        version_id: Some("bench-catalog".into()),
        etag: Some(format!("\"{}\"", seed.catalog_etag)),
    };
    let record = SnapshotRecord {
        id: PREVIOUS.into(),
        policy: policy.name.clone(),
        job_id: "bench-previous".into(),
        created_at: "2026-11-01T00:10:00Z".into(),
        catalog: previous.clone(),
        objects: seed.objects,
        bytes: 0,
        copied: seed.objects,
        unchanged: 0,
        deleted: 0,
        continuous: 0,
        superseded: 0,
        superseded_catalog: None,
        readers: Vec::new(),
        expiring: false,
        settling: false,
    };
    app.store
        .put_doc(
            &format!("POLICY#{}", policy.name),
            &format!("SNAP#{PREVIOUS}"),
            &record,
            None,
            None,
        )
        .await?;
    let copies = if seed.objects == 0 {
        0
    } else {
        (seed.objects - 1) / seed.changed_every + 1
    };
    let chunks = copies.div_ceil(seed.chunk_tasks);
    let run = BackupRun {
        policy: policy.clone(),
        snapshot_id: backup::snapshot_id(time::OffsetDateTime::now_utc()),
        previous: Some(previous),
        previous_objects: seed.objects,
        inventory: None,
        journal_cutoff: Some(batchops_aws::journal::journal_stamp(
            time::OffsetDateTime::now_utc(),
        )),
        journal_bucket: Some(app.config.control_bucket.clone()),
    };
    let spec = JobSpec {
        operation: OperationSpec::Copy(backup::copy_spec(VAULT, PREFIX, None)),
        manifest: ManifestSource::Backup(Box::new(run)),
        report: None,
        priority: 10,
        confirmation_required: false,
        pinning: Default::default(),
        expected_owners: Vec::new(),
    };
    let request = serde_json::json!({
        "AccountId": "000000000000",
        "ClientRequestToken": uuid::Uuid::new_v4().to_string(),
        "ConfirmationRequired": false,
        "Operation": {"S3PutObjectCopy": {"TargetResource": format!("arn:aws:s3:::{VAULT}"), "TargetKeyPrefix": PREFIX}},
        "Report": {"Enabled": false},
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": format!("arn:aws:s3:::{SOURCE}/unused.csv")}},
        "Priority": 10,
        "RoleArn": "arn:aws:iam::000000000000:role/batchops"
    });
    let request = batchops_core::CreateJobRequest::from_json(&request.to_string())?;
    let job = batchops_aws::jobs::create_job_with_spec(&app, request, spec)
        .await?
        .job_id;
    // Planned and run: every draft part written, every copy committed.
    app.store
        .update_job(&job, |record| {
            let progress = &mut record.plan.progress;
            progress.draft_parts = seed.objects.div_ceil(seed.draft_rows);
            progress.next_seq = chunks;
            progress.tasks = copies;
            progress.skipped = seed.objects - copies;
            record.plan.finished = true;
            record.status = JobStatus::Completing;
            Ok::<bool, ()>(true)
        })
        .await?
        .map_err(|_| anyhow::anyhow!("job {job} could not be made Completing"))?;
    let mut commits = Vec::with_capacity(1000);
    for seq in 0..chunks {
        let tasks = seed.chunk_tasks.min(copies - seq * seed.chunk_tasks);
        commits.push(RangeCommit {
            seq,
            first_task: 0,
            end_task: tasks,
            chunk_tasks: Some(tasks),
            counters: Counters {
                succeeded: tasks,
                ranges: 1,
                ..Default::default()
            },
            shards: Vec::new(),
            fragment: Some(format!("jobs/{job}/fragments/{seq:010}-0000000-{ATTEMPT}")),
        });
        if commits.len() == 1000 || seq + 1 == chunks {
            app.store
                .import_committed_ranges(&job, &commits, ATTEMPT)
                .await?;
            commits.clear();
        }
    }
    println!("{job}");
    Ok(())
}

async fn complete(job: &str) -> anyhow::Result<()> {
    let app = app().await?;
    let snapshot = backup::complete_snapshot(&app, job)
        .await?
        .ok_or_else(|| anyhow::anyhow!("job {job} is not a backup run"))?;
    let left: Vec<String> = backup::list_snapshots(&app, "bench")
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    println!(
        "{}",
        serde_json::json!({ "snapshot": snapshot, "snapshots": left })
    );
    Ok(())
}

fn flag<T: std::str::FromStr>(args: &[String], name: &str) -> anyhow::Result<T> {
    let at = args
        .iter()
        .position(|a| a == name)
        .ok_or_else(|| anyhow::anyhow!("missing {name}"))?;
    args.get(at + 1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("seed") => {
            seed(Seed {
                objects: flag(&args, "--objects")?,
                changed_every: flag::<u64>(&args, "--changed-every")?.max(1),
                draft_rows: flag::<u64>(&args, "--draft-rows")?.max(1),
                chunk_tasks: flag::<u64>(&args, "--chunk-tasks")?.max(1),
                catalog_etag: flag(&args, "--catalog-etag")?,
            })
            .await
        }
        Some("complete") => complete(&flag::<String>(&args, "--job")?).await,
        _ => anyhow::bail!(
            "usage: snapshot_bench seed --objects N --changed-every K --draft-rows R --chunk-tasks C --catalog-etag E | complete --job ID"
        ),
    }
}
