//! `batchops`: job control, and the local runtime, over the same library the Lambdas run.

use anyhow::{bail, Context, Result};
use batchops_aws::audit::audit_report_with;
use batchops_aws::jobs::{
    create_job, delete_job_tagging, describe_job, get_job_tagging, list_jobs_page, put_job_tagging,
    rerun_job, update_job_priority, update_job_status,
};
use batchops_aws::runtime::{run, RunOptions};
use batchops_aws::{setup, App, Clients, Config};
use batchops_core::arn::{bucket_arn, object_arn};
use batchops_core::describe::JobDescriptor;
use batchops_core::{CreateJobRequest, JobStatus};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

mod export;
mod import;
mod serve;
mod transfer;

#[derive(Parser)]
#[command(
    name = "batchops",
    version,
    about = "Serverless S3 batch operations and backups; local runtime included."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Local stack set-up.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
    /// Create and control jobs (S3 Batch Operations shapes).
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Dry run: the prepare step of a job over a manifest, or of a backup run (--backup-policy),
    /// without creating the job or writing anything.
    Plan(PlanArgs),
    /// Scheduled, incremental, version-exact backups of buckets.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Export backups (or any manifest's objects) to other object stores, as jobs.
    Export {
        #[command(subcommand)]
        command: export::ExportCommand,
    },
    /// The api Lambda's HTTP routes on a local address: the JSON routes and S3 Control's
    /// job API (`aws s3control ... --endpoint-url`).
    Serve(serve::ServeArgs),
    /// Import objects from other object stores into a bucket of this account, as jobs.
    Import {
        #[command(subcommand)]
        command: import::ImportCommand,
    },
    /// Run planner, workers and finalizer locally against the configured endpoint.
    Run {
        /// Exit 0 once no job has work left.
        #[arg(long)]
        until_idle: bool,
        /// Chunks processed at once.
        #[arg(long, env = "BATCHOPS_RUN_CONCURRENCY", default_value_t = 2)]
        concurrency: usize,
        /// Fail if jobs still have work after this many seconds.
        #[arg(long)]
        max_seconds: Option<u64>,
    },
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Create the table, queues (with DLQ) and control bucket; idempotent.
    Init,
}

#[derive(Subcommand)]
enum JobCommand {
    /// Create a job from an `aws s3control create-job` JSON document, or from flags.
    Create(Box<CreateArgs>),
    /// Show a job (DescribeJob).
    Describe {
        job_id: String,
        /// Print `{"Job": {...}}` in the DescribeJob shape.
        #[arg(long)]
        json: bool,
        /// Show a live progress bar until the job ends.
        #[arg(long)]
        watch: bool,
    },
    /// List jobs (ListJobs).
    List {
        /// Only jobs in these statuses (repeatable).
        #[arg(long = "status")]
        statuses: Vec<JobStatus>,
        /// At most this many jobs (newest first); the rest is a later page.
        #[arg(long)]
        max_results: Option<usize>,
        /// The NextToken a previous page printed.
        #[arg(long)]
        next_token: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Confirm a job created with ConfirmationRequired (Suspended -> Ready). A delete job asks
    /// for its task count typed back (or `--yes-delete N`, N its task count).
    Confirm {
        job_id: String,
        /// Confirms a delete job without asking: must equal the job's task count.
        #[arg(long, value_name = "TASKS")]
        yes_delete: Option<u64>,
    },
    /// Cancel a job; what was already copied stays.
    Cancel { job_id: String },
    /// Change a job's priority.
    UpdatePriority { job_id: String, priority: i64 },
    /// Create a new job over an ended job's tasks: all of them, or with --failed-only exactly
    /// those its completion report lists as failed. Asking twice answers the same new job.
    Rerun {
        job_id: String,
        #[arg(long)]
        failed_only: bool,
    },
    /// A job's tags (PutJobTagging, GetJobTagging, DeleteJobTagging).
    Tag {
        #[command(subcommand)]
        command: TagCommand,
    },
    /// Read a job's completion report back and check it against the job's counters.
    Report {
        job_id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TagCommand {
    /// Replace the job's tags with these (none given: remove them all).
    Put {
        job_id: String,
        /// KEY=VALUE (the value may be empty; the first `=` separates).
        tags: Vec<String>,
    },
    /// Print the job's tags as `{"Tags": [...]}`.
    Get { job_id: String },
    /// Remove every tag of the job.
    Delete { job_id: String },
}

/// `KEY=VALUE` arguments as S3 tags.
fn parse_tags(args: &[String]) -> Result<Vec<batchops_core::request::Tag>> {
    args.iter()
        .map(|arg| match arg.split_once('=') {
            Some((key, value)) => Ok(batchops_core::request::Tag {
                key: key.to_string(),
                value: value.to_string(),
            }),
            None => bail!("tag `{arg}`: expected KEY=VALUE"),
        })
        .collect()
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Backup policies (stored in the table).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Start a run of a policy now (scheduled runs start by themselves).
    Run {
        name: String,
        /// A full backup that starts a new chain: no previous snapshot is read (for example
        /// after a run failed with SnapshotCatalogInvalid). Older snapshots stay restorable.
        #[arg(long)]
        full: bool,
    },
    /// A policy's snapshots, oldest first.
    Snapshots {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore from a snapshot: a normal job with progress, cancel and a report. Never deletes
    /// anything at the target.
    Restore(RestoreArgs),
    /// Check that every version a snapshot references is at the destination with its recorded
    /// size and ETag (from listings, about one request per 1,000 versions). Exit 1 if any is
    /// missing or different.
    Verify {
        name: String,
        /// Snapshot ID (see `backup snapshots`); default the newest.
        #[arg(long)]
        snapshot: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Create or replace a policy from a JSON or YAML file.
    Put {
        file: String,
    },
    Get {
        name: String,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Delete {
        name: String,
    },
}

#[derive(Args)]
struct RestoreArgs {
    name: String,
    /// Snapshot ID (see `backup snapshots`); default the newest.
    #[arg(long, conflicts_with = "as_of")]
    snapshot: Option<String>,
    /// The newest snapshot taken at or before this RFC 3339 time.
    #[arg(long)]
    as_of: Option<String>,
    /// Where to restore: s3://bucket[/prefix]. Default: the source bucket, original keys.
    #[arg(long)]
    to: Option<String>,
    /// Only keys starting with this.
    #[arg(long)]
    prefix: Option<String>,
    /// Only the keys listed in this file, one per line.
    #[arg(long)]
    keys_from: Option<String>,
    /// Count what would be restored; create no job.
    #[arg(long)]
    dry_run: bool,
    /// Restore into a target bucket that is not versioned, where a restored object replaces
    /// what is there for good. Without it such a restore is refused.
    #[arg(long)]
    allow_overwrite: bool,
}

#[derive(Args)]
struct PlanArgs {
    /// A local file or s3://bucket/key (for inventories: the report's manifest.json). Required
    /// unless --backup-policy is given.
    #[arg(long)]
    manifest: Option<String>,
    /// Instead of a manifest: a backup run's prepare step for this policy (a JSON or YAML file, as
    /// `backup policy put` takes it): the source listing diffed against --previous-catalog.
    #[arg(long, conflicts_with_all = ["manifest", "pin_versions", "as_of"])]
    backup_policy: Option<String>,
    /// With --backup-policy: the previous snapshot's catalog (s3://bucket/key). Without it the
    /// run is a full backup.
    #[arg(long, requires = "backup_policy")]
    previous_catalog: Option<String>,
    #[arg(long, value_enum, default_value_t = ManifestFormatArg::Csv)]
    format: ManifestFormatArg,
    /// CSV manifest columns, comma-separated.
    #[arg(long, default_value = "Bucket,Key")]
    fields: String,
    /// Pin tasks to the version and ETag current now (HEADs objects that need it).
    #[arg(long)]
    pin_versions: bool,
    /// Per key, the newest version not later than this RFC 3339 time.
    #[arg(long)]
    as_of: Option<String>,
    /// Tasks per chunk (default: BATCHOPS_CHUNK_SIZE).
    #[arg(long)]
    chunk_size: Option<usize>,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ManifestFormatArg {
    Csv,
    Inventory,
}

/// A job comes from one of two places; clap refuses neither (or both) as a usage error naming
/// both, instead of reading an empty `--manifest`.
#[derive(Args)]
#[command(group(
    clap::ArgGroup::new("job_source")
        .required(true)
        .args(["cli_input_json", "manifest"])
))]
struct CreateArgs {
    /// JSON document in the S3 Control CreateJob shape (`file://` prefix optional), as
    /// `aws s3control create-job --cli-input-json` takes it (RoleArn and ClientRequestToken
    /// included).
    #[arg(long, conflicts_with_all = ["manifest", "target", "role_arn"])]
    cli_input_json: Option<String>,
    /// CSV manifest: s3://bucket/key (with --target; the job is built from the flags).
    #[arg(long, requires = "target")]
    manifest: Option<String>,
    /// Manifest columns, comma-separated.
    #[arg(long, default_value = "Bucket,Key")]
    fields: String,
    /// Destination: s3://bucket[/prefix].
    #[arg(long)]
    target: Option<String>,
    /// Completion report location: s3://bucket[/prefix]. Without it no report is written.
    #[arg(long)]
    report: Option<String>,
    #[arg(long, default_value = "AllTasks")]
    report_scope: String,
    #[arg(long, default_value_t = 10)]
    priority: i64,
    #[arg(long)]
    confirmation_required: bool,
    #[arg(long)]
    description: Option<String>,
    /// Makes retries create one job; default: a new UUID, so each run creates a job.
    #[arg(long)]
    client_request_token: Option<String>,
    /// The job's RoleArn, recorded as S3 Control requires one. Default:
    /// arn:aws:iam::<BATCHOPS_ACCOUNT_ID>:role/batchops.
    #[arg(long, env = "BATCHOPS_ROLE_ARN")]
    role_arn: Option<String>,
    #[arg(long)]
    storage_class: Option<String>,
}

fn split_s3_url(url: &str) -> Result<(String, String)> {
    Ok(batchops_core::arn::split_s3_url(url)?)
}

/// The RoleArn of a job built from flags when --role-arn is not given.
fn default_role_arn(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:role/batchops")
}

fn request_from_flags(args: &CreateArgs, account_id: &str) -> Result<CreateJobRequest> {
    let (manifest_bucket, manifest_key) =
        split_s3_url(args.manifest.as_deref().unwrap_or_default())?;
    if manifest_key.is_empty() {
        bail!("--manifest must name an object: s3://bucket/key");
    }
    let (target_bucket, target_prefix) = split_s3_url(args.target.as_deref().unwrap_or_default())?;
    let fields: Vec<String> = args
        .fields
        .split(',')
        .map(|f| f.trim().to_string())
        .collect();
    let mut copy = json!({"TargetResource": bucket_arn(&target_bucket)});
    if !target_prefix.is_empty() {
        copy["TargetKeyPrefix"] = json!(target_prefix);
    }
    if let Some(class) = &args.storage_class {
        copy["StorageClass"] = json!(class);
    }
    let report = match &args.report {
        Some(url) => {
            let (bucket, prefix) = split_s3_url(url)?;
            json!({"Bucket": bucket_arn(&bucket), "Prefix": prefix, "Format": "Report_CSV_20180820",
                   "Enabled": true, "ReportScope": args.report_scope})
        }
        None => json!({"Enabled": false}),
    };
    let mut document = json!({
        "ConfirmationRequired": args.confirmation_required,
        "Operation": {"S3PutObjectCopy": copy},
        "Report": report,
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": fields},
                     "Location": {"ObjectArn": object_arn(&manifest_bucket, &manifest_key)}},
        "Priority": args.priority,
        "ClientRequestToken": args.client_request_token.clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        "RoleArn": args.role_arn.clone().unwrap_or_else(|| default_role_arn(account_id)),
    });
    if let Some(description) = &args.description {
        document["Description"] = json!(description);
    }
    Ok(CreateJobRequest::from_json(&document.to_string())?)
}

fn print_summary(job: &JobDescriptor) {
    let p = &job.progress_summary;
    println!("Job         {}", job.job_id);
    println!("Status      {}", job.status);
    if let Some(description) = &job.description {
        println!("Description {description}");
    }
    println!("Priority    {}", job.priority);
    println!(
        "Tasks       {} total, {} succeeded, {} failed ({} bytes copied)",
        p.total_number_of_tasks,
        p.number_of_tasks_succeeded,
        p.number_of_tasks_failed,
        p.number_of_bytes_copied
    );
    println!("Active      {}s", p.timers.elapsed_time_in_active_seconds);
    println!("Created     {}", job.creation_time);
    if let Some(ended) = &job.termination_date {
        println!("Ended       {ended}");
    }
    for reason in &job.failure_reasons {
        println!(
            "Failure     {}: {}",
            reason.failure_code, reason.failure_reason
        );
    }
    if job.report.enabled {
        if let Some(bucket) = job
            .report
            .bucket
            .as_deref()
            .and_then(|arn| arn.strip_prefix("arn:aws:s3:::"))
        {
            let prefix = job
                .report
                .prefix
                .as_deref()
                .unwrap_or("")
                .trim_end_matches('/');
            let root = if prefix.is_empty() {
                format!("job-{}", job.job_id)
            } else {
                format!("{prefix}/job-{}", job.job_id)
            };
            println!("Report      s3://{bucket}/{root}/manifest.json");
        }
    }
}

async fn watch(app: &App, job_id: &str) -> Result<JobDescriptor> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:>10} [{bar:40}] {pos}/{len} tasks ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    loop {
        let job = describe_job(app, job_id).await?;
        let p = &job.progress_summary;
        bar.set_length(p.total_number_of_tasks);
        bar.set_position(p.number_of_tasks_succeeded + p.number_of_tasks_failed);
        bar.set_message(job.status.clone());
        let status: JobStatus = job.status.parse()?;
        if status.is_terminal() || status == JobStatus::Suspended {
            bar.finish();
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn plan(config: &Config, clients: &Clients, args: &PlanArgs) -> Result<()> {
    use batchops_aws::prepare::{
        dry_run, ChunkWriter, Location, Reader, SourceOptions, SourceSpec,
    };
    use batchops_core::manifest::{ManifestField, ManifestFields};
    use batchops_core::request::ManifestObject;
    if let Some(policy_file) = &args.backup_policy {
        return plan_backup(config, clients, args, policy_file).await;
    }
    if args.previous_catalog.is_some() {
        bail!("--previous-catalog is for backup dry runs: give --backup-policy FILE with it, not --manifest");
    }
    let Some(manifest) = args.manifest.as_deref() else {
        bail!("--manifest is required: a local file or s3://bucket/key (or --backup-policy FILE to dry-run a backup run's prepare step instead)");
    };
    let location = match manifest.strip_prefix("s3://") {
        Some(_) => {
            let (bucket, key) = split_s3_url(manifest)?;
            Location::S3(ManifestObject {
                bucket,
                key,
                version_id: None,
                etag: None,
            })
        }
        None => Location::Local(manifest.into()),
    };
    let is_s3 = matches!(location, Location::S3(_));
    let source = match args.format {
        ManifestFormatArg::Csv => {
            let mut fields = Vec::new();
            for (i, name) in args.fields.split(',').map(str::trim).enumerate() {
                fields.push(match name {
                    "Bucket" => ManifestField::Bucket,
                    "Key" => ManifestField::Key,
                    "VersionId" => ManifestField::VersionId,
                    "Ignore" => ManifestField::Ignore,
                    other => bail!("--fields[{i}]: unknown field `{other}`; expected Bucket, Key, VersionId or Ignore"),
                });
            }
            let fields =
                ManifestFields::new(fields).map_err(|m| anyhow::anyhow!("--fields: {m}"))?;
            SourceSpec::Csv {
                location,
                fields,
                expected_etag: None,
            }
        }
        ManifestFormatArg::Inventory => SourceSpec::Inventory {
            location,
            expected_etag: None,
        },
    };
    let is_csv = matches!(source, SourceSpec::Csv { .. });
    let pinned = args.pin_versions || args.as_of.is_some();
    let needs_s3 = is_s3 || pinned;
    let mut writer = ChunkWriter {
        clients: needs_s3.then(|| clients.data.stack()),
        control: None,
        output: None,
        pin_with_head: args.pin_versions,
        as_of_lookup: if is_csv { args.as_of.clone() } else { None },
        concurrency: config.task_concurrency,
        task_limit: None,
        tasks_written: 0,
        stats: Default::default(),
    };
    let options = SourceOptions {
        chunk_size: args.chunk_size.unwrap_or(config.chunk_size),
        keep_etags: pinned,
        as_of: if is_csv { None } else { args.as_of.clone() },
    };
    let report = dry_run(
        Reader::new(needs_s3.then(|| clients.s3.clone())),
        source,
        options,
        &mut writer,
    )
    .await?;
    let p = &report.progress;
    if args.json {
        let malformed: Vec<_> = report
            .stats
            .malformed
            .iter()
            .map(|(line, message)| json!({"Line": line, "Message": message}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "Manifest": manifest,
                "TotalNumberOfTasks": p.tasks,
                "Chunks": p.next_seq,
                "BytesKnown": p.bytes,
                "MalformedLines": p.malformed,
                "Malformed": malformed,
                "Skipped": p.skipped,
                "LinesRead": p.cursor.line,
                "ElapsedSeconds": report.elapsed.as_secs_f64(),
                "LinesPerSecond": report.lines_per_second().round(),
                "PinRequests": report.stats.pin_requests,
                "FailureCode": report.failure.as_ref().map(|f| f.0.clone()),
                "FailureReason": report.failure.as_ref().map(|f| f.1.clone()),
            }))?
        );
    } else {
        println!("Manifest    {manifest}");
        println!(
            "Tasks       {} ({} malformed, {} entries skipped)",
            p.tasks, p.malformed, p.skipped
        );
        println!("Chunks      {}", p.next_seq);
        println!("Bytes       {} (where the manifest gives sizes)", p.bytes);
        println!(
            "Rate        {:.0} lines/s ({} lines in {:.3}s)",
            report.lines_per_second(),
            p.cursor.line,
            report.elapsed.as_secs_f64()
        );
        for (line, message) in &report.stats.malformed {
            println!("Malformed   line {line}: {message}");
        }
        if p.malformed as usize > report.stats.malformed.len() {
            println!(
                "Malformed   ... {} more",
                p.malformed as usize - report.stats.malformed.len()
            );
        }
        if let Some((code, reason)) = &report.failure {
            println!("Failure     {code}: {reason}");
        }
    }
    if let Some((code, reason)) = report.failure {
        bail!("the job would fail: {code}: {reason}");
    }
    Ok(())
}

/// `plan --backup-policy`: a backup run's prepare step (versioning preflight, source listing,
/// sorted-merge diff against the previous catalog) with nothing written.
async fn plan_backup(
    config: &Config,
    clients: &Clients,
    args: &PlanArgs,
    policy_file: &str,
) -> Result<()> {
    use batchops_aws::prepare::{dry_run, ChunkWriter, Reader, SourceOptions, SourceSpec};
    use batchops_core::request::{BackupRun, CatalogRef};
    let policy = read_policy(policy_file)?;
    policy
        .validate()
        .map_err(|(field, message)| anyhow::anyhow!("{policy_file}: {field}: {message}"))?;
    let previous = match &args.previous_catalog {
        Some(url) => {
            let (bucket, key) = split_s3_url(url)?;
            if key.is_empty() {
                bail!("--previous-catalog must name an object: s3://bucket/key, not `{url}`");
            }
            let file = key.rsplit('/').next().unwrap_or(&key);
            let snapshot_id = file.strip_suffix(".catalog.gz").unwrap_or(file).to_string();
            Some(CatalogRef {
                snapshot_id,
                bucket,
                key,
                version_id: None,
                etag: None,
            })
        }
        None => None,
    };
    let snapshot_id = batchops_aws::backup::snapshot_id(time::OffsetDateTime::now_utc());
    let delete_tasks_per_deletion = policy.marks_deletions();
    let run = BackupRun {
        policy,
        snapshot_id,
        previous,
        // Unknown in a dry run: the default deletion guard is its floor of 1,000.
        previous_objects: 0,
        inventory: None,
        journal_cutoff: None,
        journal_bucket: Some(config.control_bucket.clone()),
    };
    let mut writer = ChunkWriter::counting_only();
    let options = SourceOptions {
        chunk_size: args.chunk_size.unwrap_or(config.chunk_size),
        keep_etags: false,
        as_of: None,
    };
    let report = dry_run(
        Reader::new(Some(clients.s3.clone())),
        SourceSpec::Backup(Box::new(run.clone())),
        options,
        &mut writer,
    )
    .await?;
    let p = &report.progress;
    // Tasks are copies, plus one delete-marker task per deletion when the policy propagates them.
    let delete_tasks = if delete_tasks_per_deletion {
        p.deleted
    } else {
        0
    };
    let copies = p.tasks.saturating_sub(delete_tasks);
    let unchanged = p.skipped;
    let listed = copies + unchanged;
    let elapsed = report.elapsed.as_secs_f64();
    let rate = listed as f64 / elapsed.max(1e-9);
    let policy = &run.policy;
    let source = format!("s3://{}/{}", policy.source.bucket, policy.source.prefix);
    let previous = run
        .previous
        .as_ref()
        .map(|c| format!("s3://{}/{}", c.bucket, c.key));
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "Policy": policy.name,
                "Source": source,
                "PreviousCatalog": previous,
                "ObjectsListed": listed,
                "CatalogEntriesRead": p.cursor.catalog_entries,
                "CopyTasks": copies,
                "Unchanged": unchanged,
                "Deleted": p.deleted,
                "DeleteTasks": delete_tasks,
                "TotalNumberOfTasks": p.tasks,
                "Chunks": p.next_seq,
                "BytesToCopy": p.bytes,
                "ElapsedSeconds": elapsed,
                "EntriesPerSecond": rate.round(),
                "FailureCode": report.failure.as_ref().map(|f| f.0.clone()),
                "FailureReason": report.failure.as_ref().map(|f| f.1.clone()),
            }))?
        );
    } else {
        println!("Policy      {}", policy.name);
        println!("Source      {source}");
        println!(
            "Previous    {}",
            previous.as_deref().unwrap_or("none (a full backup)")
        );
        println!(
            "Listed      {listed} objects; {} previous catalog entries read",
            p.cursor.catalog_entries
        );
        println!(
            "Tasks       {copies} copies ({} bytes), {delete_tasks} delete markers, in {} chunks",
            p.bytes, p.next_seq
        );
        println!("Unchanged   {unchanged}");
        println!("Deleted     {}", p.deleted);
        println!("Rate        {rate:.0} entries/s ({listed} listed in {elapsed:.3}s)");
        if let Some((code, reason)) = &report.failure {
            println!("Failure     {code}: {reason}");
        }
    }
    if let Some((code, reason)) = report.failure {
        bail!("the backup run would fail: {code}: {reason}");
    }
    Ok(())
}

fn read_policy(path: &str) -> Result<batchops_core::backup::BackupPolicy> {
    let text = read_document(path)?;
    let policy = if path.ends_with(".yaml") || path.ends_with(".yml") {
        serde_yaml::from_str(&text).with_context(|| format!("{path}: not a backup policy"))?
    } else {
        serde_json::from_str(&text).with_context(|| format!("{path}: not a backup policy"))?
    };
    Ok(policy)
}

async fn backup_command(app: &App, command: BackupCommand) -> Result<()> {
    use batchops_aws::backup;
    match command {
        BackupCommand::Policy { command } => match command {
            PolicyCommand::Put { file } => {
                let record = backup::put_policy(app, read_policy(&file)?).await?;
                println!("{}", serde_json::to_string_pretty(&record.policy)?);
            }
            PolicyCommand::Get { name, json } => {
                let record = backup::get_policy(app, &name).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&record)?);
                } else {
                    print!("{}", serde_yaml::to_string(&record)?);
                }
            }
            PolicyCommand::List { json } => {
                let records = backup::list_policies(app).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&records)?);
                } else {
                    println!(
                        "{:<24}  {:<8}  {:<40}  {:<40}  {:<22}  LAST SNAPSHOT",
                        "NAME", "ENABLED", "SOURCE", "DESTINATION", "SCHEDULE"
                    );
                    for r in records {
                        let p = &r.policy;
                        println!(
                            "{:<24}  {:<8}  {:<40}  {:<40}  {:<22}  {}",
                            p.name,
                            p.enabled,
                            format!("s3://{}/{}", p.source.bucket, p.source.prefix),
                            format!("s3://{}/{}", p.destination.bucket, p.destination.prefix),
                            p.schedule.as_deref().unwrap_or("-"),
                            r.last_snapshot.as_deref().unwrap_or("-")
                        );
                    }
                }
            }
            PolicyCommand::Delete { name } => {
                backup::delete_policy(app, &name).await?;
                println!("{}", json!({"deleted": name}));
            }
        },
        BackupCommand::Run { name, full } => {
            let job = backup::start_run(app, &name, None, full).await?;
            println!("{}", json!({"jobId": job.job_id}));
        }
        BackupCommand::Snapshots { name, json } => {
            let snapshots = backup::list_snapshots(app, &name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&snapshots)?);
            } else {
                println!(
                    "{:<18}  {:>10}  {:>14}  {:>8}  {:>10}  {:>8}  {:>10}  CATALOG",
                    "SNAPSHOT", "OBJECTS", "BYTES", "COPIED", "UNCHANGED", "DELETED", "CONTINUOUS"
                );
                for s in snapshots {
                    println!(
                        "{:<18}  {:>10}  {:>14}  {:>8}  {:>10}  {:>8}  {:>10}  s3://{}/{}",
                        s.id,
                        s.objects,
                        s.bytes,
                        s.copied,
                        s.unchanged,
                        s.deleted,
                        s.continuous,
                        s.catalog.bucket,
                        s.catalog.key
                    );
                }
            }
        }
        BackupCommand::Restore(args) => {
            let keys = match &args.keys_from {
                Some(path) => Some(
                    read_document(path)?
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect(),
                ),
                None => None,
            };
            let to = match &args.to {
                Some(url) => Some(split_s3_url(url)?),
                None => None,
            };
            let request = backup::RestoreRequest {
                snapshot: args.snapshot.clone(),
                as_of: args.as_of.clone(),
                to,
                prefix: args.prefix.clone(),
                keys,
                allow_overwrite: args.allow_overwrite,
            };
            if args.dry_run {
                use batchops_aws::prepare::{
                    dry_run, ChunkWriter, Reader, SourceOptions, SourceSpec,
                };
                let (_, snapshot, source) =
                    backup::restore_source(app, &args.name, &request).await?;
                let spec = SourceSpec::Restore {
                    // Where the snapshot's copies are (an older chain may live elsewhere).
                    backup_bucket: snapshot.catalog.bucket.clone(),
                    source,
                    control_bucket: app.config.control_bucket.clone(),
                };
                let mut writer = ChunkWriter::counting_only();
                let options = SourceOptions {
                    chunk_size: app.config.chunk_size,
                    keep_etags: false,
                    as_of: None,
                };
                let report = dry_run(
                    Reader::new(Some(app.s3.clone())),
                    spec,
                    options,
                    &mut writer,
                )
                .await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "snapshot": snapshot.id, "objectsToRestore": report.progress.tasks,
                        "bytes": report.progress.bytes, "notSelected": report.progress.skipped,
                    }))?
                );
            } else {
                let job = backup::start_restore(app, &args.name, &request).await?;
                println!("{}", json!({"jobId": job.job_id}));
            }
        }
        BackupCommand::Verify {
            name,
            snapshot,
            json,
        } => {
            let report =
                batchops_aws::verify::verify_snapshot(app, &name, snapshot.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_verification(&report);
            }
            if !report.passed() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

fn print_verification(report: &batchops_aws::verify::VerifyReport) {
    let v = &report.verification;
    println!("Snapshot     {} of {}", report.snapshot, report.policy);
    println!("Destination  {}", report.destination);
    println!(
        "Checked      {} versions: {} ok, {} missing, {} different ({} listed in {} ListObjectVersions requests)",
        v.checked, v.ok, v.missing, v.different, v.listed, report.list_requests
    );
    for problem in &v.problems {
        println!("  {}", problem.describe());
    }
    if v.problems_truncated {
        println!(
            "  ... and {} more (the first {} are listed)",
            v.missing + v.different - v.problems.len() as u64,
            v.problems.len()
        );
    }
    println!("{}", if report.passed() { "OK" } else { "FAILED" });
}

fn read_document(path: &str) -> Result<String> {
    let path = path.strip_prefix("file://").unwrap_or(path);
    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let config = Config::from_env()?;
    let clients = Clients::load(&config).await;
    if let Command::Local {
        command: LocalCommand::Init,
    } = &cli.command
    {
        let report = setup::init(&clients, &config).await?;
        for item in &report.created {
            println!("created  {item}");
        }
        for item in &report.existing {
            println!("exists   {item}");
        }
        return Ok(());
    }
    if let Command::Plan(args) = &cli.command {
        return plan(&config, &clients, args).await;
    }
    let app = App::new(config, clients).await?;
    match cli.command {
        Command::Local { .. } | Command::Plan(_) => unreachable!("handled above"),
        Command::Backup { command } => backup_command(&app, command).await?,
        Command::Export { command } => export::run(&app, command).await?,
        Command::Import { command } => import::run(&app, command).await?,
        Command::Serve(args) => serve::run(app, args).await?,
        Command::Run {
            until_idle,
            concurrency,
            max_seconds,
        } => {
            let options = RunOptions {
                until_idle,
                concurrency,
                max_duration: max_seconds.map(Duration::from_secs),
                ..Default::default()
            };
            let stats = run(Arc::new(app), options).await?;
            eprintln!(
                "runtime stopped: {} chunk deliveries, {} finalizer runs, {} errors",
                stats.chunks.load(std::sync::atomic::Ordering::Relaxed),
                stats
                    .finalizations
                    .load(std::sync::atomic::Ordering::Relaxed),
                stats.errors.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        Command::Job { command } => match command {
            JobCommand::Create(args) => {
                let request = match &args.cli_input_json {
                    Some(path) => CreateJobRequest::from_json(&read_document(path)?)?,
                    None => request_from_flags(&args, &app.config.account_id)?,
                };
                let created = create_job(&app, request).await?;
                println!("{}", json!({"JobId": created.job_id}));
            }
            JobCommand::Describe {
                job_id,
                json,
                watch: live,
            } => {
                let job = if live {
                    watch(&app, &job_id).await?
                } else {
                    describe_job(&app, &job_id).await?
                };
                if json {
                    println!("{}", serde_json::to_string_pretty(&json!({"Job": job}))?);
                } else {
                    print_summary(&job);
                }
            }
            JobCommand::List {
                statuses,
                max_results,
                next_token,
                json,
            } => {
                let page = list_jobs_page(
                    &app,
                    &statuses,
                    max_results.unwrap_or(usize::MAX),
                    next_token.as_deref(),
                )
                .await?;
                let jobs = page.jobs;
                if json {
                    let mut body = json!({"Jobs": jobs});
                    if let Some(token) = &page.next_token {
                        body["NextToken"] = json!(token);
                    }
                    println!("{}", serde_json::to_string_pretty(&body)?);
                } else {
                    println!(
                        "{:<36}  {:<10}  {:>8}  {:>10}  {:>10}  {:>10}  CREATED",
                        "JOB ID", "STATUS", "PRIORITY", "TOTAL", "SUCCEEDED", "FAILED"
                    );
                    for job in jobs {
                        let p = &job.progress_summary;
                        println!(
                            "{:<36}  {:<10}  {:>8}  {:>10}  {:>10}  {:>10}  {}",
                            job.job_id,
                            job.status,
                            job.priority,
                            p.total_number_of_tasks,
                            p.number_of_tasks_succeeded,
                            p.number_of_tasks_failed,
                            job.creation_time
                        );
                    }
                    if let Some(token) = &page.next_token {
                        println!("more: --next-token {token}");
                    }
                }
            }
            JobCommand::Confirm { job_id, yes_delete } => {
                let job = app.store.get_job(&job_id).await?;
                let confirmed_tasks = match yes_delete {
                    Some(count) => Some(count),
                    None if job.spec.operation.needs_counted_confirmation() => {
                        ask_task_count(&job)?
                    }
                    None => None,
                };
                let change = update_job_status(
                    &app,
                    &job_id,
                    JobStatus::Ready,
                    Some("Confirmed by user"),
                    confirmed_tasks,
                )
                .await?;
                println!("{}", serde_json::to_string(&change)?);
            }
            JobCommand::Cancel { job_id } => {
                let change = update_job_status(
                    &app,
                    &job_id,
                    JobStatus::Cancelled,
                    Some("Cancelled by user"),
                    None,
                )
                .await?;
                println!("{}", serde_json::to_string(&change)?);
            }
            JobCommand::UpdatePriority { job_id, priority } => {
                let priority = update_job_priority(&app, &job_id, priority).await?;
                println!("{}", json!({"JobId": job_id, "Priority": priority}));
            }
            JobCommand::Rerun {
                job_id,
                failed_only,
            } => {
                let rerun = rerun_job(&app, &job_id, failed_only).await?;
                println!("{}", serde_json::to_string(&rerun)?);
            }
            JobCommand::Tag { command } => match command {
                TagCommand::Put { job_id, tags } => {
                    put_job_tagging(&app, &job_id, parse_tags(&tags)?).await?;
                    println!("{}", json!({"Tags": get_job_tagging(&app, &job_id).await?}));
                }
                TagCommand::Get { job_id } => {
                    println!("{}", json!({"Tags": get_job_tagging(&app, &job_id).await?}));
                }
                TagCommand::Delete { job_id } => {
                    delete_job_tagging(&app, &job_id).await?;
                    println!("{}", json!({"Tags": []}));
                }
            },
            JobCommand::Report { job_id, json } => {
                let audit = audit_report_with(&app, &job_id, false).await?;
                let job = app.store.get_job(&job_id).await?;
                let all_tasks = job
                    .spec
                    .report
                    .as_ref()
                    .is_some_and(|r| r.scope == batchops_core::request::ReportScope::AllTasks);
                let consistent = audit.consistent(all_tasks);
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&json!({
                            "Manifest": audit.manifest_url, "Shards": audit.shards,
                            "SucceededRows": audit.succeeded_rows, "FailedRows": audit.failed_rows,
                            "DuplicateRows": audit.duplicate_rows, "BadChecksums": audit.bad_checksums,
                            "CountersSucceeded": audit.counters_succeeded, "CountersFailed": audit.counters_failed,
                            "Consistent": consistent,
                        }))?
                    );
                } else {
                    println!("Report      {}", audit.manifest_url);
                    println!(
                        "Shards      {} (checksums {})",
                        audit.shards,
                        if audit.bad_checksums.is_empty() {
                            "ok"
                        } else {
                            "BAD"
                        }
                    );
                    println!(
                        "Rows        {} succeeded, {} failed, {} duplicates",
                        audit.succeeded_rows, audit.failed_rows, audit.duplicate_rows
                    );
                    println!(
                        "Counters    {} succeeded, {} failed",
                        audit.counters_succeeded, audit.counters_failed
                    );
                    println!(
                        "Verdict     {}",
                        if consistent {
                            "report matches the job's counters"
                        } else {
                            "MISMATCH"
                        }
                    );
                }
                if !consistent {
                    bail!("report and counters disagree for job {job_id}");
                }
            }
        },
    }
    Ok(())
}

/// Asks, on a terminal, for a destructive job's task count typed back; None when there is no
/// terminal to ask (the confirmation is then refused, naming `--yes-delete`).
fn ask_task_count(job: &batchops_core::JobRecord) -> anyhow::Result<Option<u64>> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let total = job.plan.progress.tasks;
    let mut err = std::io::stderr();
    writeln!(
        err,
        "Job {} ({}) deletes the versions its manifest lists: {total} tasks.",
        job.job_id,
        job.spec.operation.name()
    )?;
    for warning in &job.warnings {
        writeln!(err, "  warning: {warning}")?;
    }
    write!(err, "Type the task count ({total}) to confirm: ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_args(argv: &[&str]) -> std::result::Result<CreateArgs, clap::Error> {
        let mut full = vec!["batchops", "job", "create"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full)?.command {
            Command::Job {
                command: JobCommand::Create(args),
            } => Ok(*args),
            _ => panic!("not job create"),
        }
    }

    #[test]
    fn create_without_a_job_source_is_a_usage_error_naming_both_ways() {
        let Err(err) = create_args(&[]) else {
            panic!("parsed")
        };
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let message = err.to_string();
        assert!(message.contains("--cli-input-json"), "{message}");
        assert!(message.contains("--manifest"), "{message}");
        assert!(create_args(&["--target", "s3://dst"]).is_err());
    }

    #[test]
    fn a_job_from_flags_gets_a_token_and_a_role() {
        let argv = ["--manifest", "s3://src/m.csv", "--target", "s3://dst/p"];
        let args = create_args(&argv).unwrap();
        let first = request_from_flags(&args, "123456789012").unwrap();
        first.validate().unwrap();
        assert_eq!(
            first.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/batchops")
        );
        let token = first.client_request_token.clone().unwrap();
        assert!(uuid::Uuid::parse_str(&token).is_ok(), "{token}");
        // Each run is a new job unless the user gives a token.
        let second = request_from_flags(&args, "123456789012").unwrap();
        assert_ne!(second.client_request_token, first.client_request_token);

        let mut argv = argv.to_vec();
        argv.extend([
            "--client-request-token",
            "mine",
            "--role-arn",
            "arn:aws:iam::123456789012:role/copier",
        ]);
        let given = request_from_flags(&create_args(&argv).unwrap(), "123456789012").unwrap();
        assert_eq!(given.client_request_token.as_deref(), Some("mine"));
        assert_eq!(
            given.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/copier")
        );
    }

    fn backup_args(argv: &[&str]) -> BackupCommand {
        let mut full = vec!["batchops", "backup"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Backup { command } => command,
            _ => panic!("not backup"),
        }
    }

    #[test]
    fn backup_run_full_and_restore_allow_overwrite_are_flags() {
        assert!(matches!(
            backup_args(&["run", "nightly", "--full"]),
            BackupCommand::Run { full: true, .. }
        ));
        assert!(matches!(
            backup_args(&["run", "nightly"]),
            BackupCommand::Run { full: false, .. }
        ));
        let BackupCommand::Restore(args) = backup_args(&[
            "restore",
            "nightly",
            "--to",
            "s3://plain/p",
            "--allow-overwrite",
        ]) else {
            panic!("not restore")
        };
        assert!(args.allow_overwrite);
    }

    #[test]
    fn backup_verify_takes_a_snapshot_and_json() {
        assert!(matches!(
            backup_args(&["verify", "nightly"]),
            BackupCommand::Verify {
                snapshot: None,
                json: false,
                ..
            }
        ));
        let BackupCommand::Verify {
            name,
            snapshot,
            json,
        } = backup_args(&[
            "verify",
            "nightly",
            "--snapshot",
            "20261122T010000Z",
            "--json",
        ])
        else {
            panic!("not verify")
        };
        assert_eq!(name, "nightly");
        assert_eq!(snapshot.as_deref(), Some("20261122T010000Z"));
        assert!(json);
    }
}
