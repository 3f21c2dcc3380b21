//! `batchops export`: exports of backups (or any manifest's objects) to other object stores.

use anyhow::{bail, Result};
use batchops_aws::exports::{self, ExportRequest, ExportSource};
use batchops_aws::App;
use batchops_core::export::{LocationOptions, StoreLocation};
use batchops_core::request::Manifest;
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Subcommand)]
pub enum ExportCommand {
    /// Export a backup snapshot (or a CreateJob-style manifest's objects) to a location.
    Create(CreateArgs),
    /// An export's status (In progress, Success, Error, Cancelled) and progress.
    Describe { export_id: String },
    /// Every export, newest first.
    List,
    /// Cancel an export: what was already written stays.
    Cancel { export_id: String },
    /// Check the destination against the export manifest (sizes and MD5 of every object).
    Verify { export_id: String },
}

#[derive(Args)]
pub struct CreateArgs {
    /// Backup policy whose snapshot is exported.
    #[arg(
        long,
        conflicts_with = "manifest",
        required_unless_present = "manifest"
    )]
    policy: Option<String>,
    /// Snapshot ID (default: the newest).
    #[arg(long, requires = "policy", conflicts_with = "as_of")]
    snapshot: Option<String>,
    /// The newest snapshot taken at or before this time (RFC 3339).
    #[arg(long, requires = "policy")]
    as_of: Option<String>,
    /// Only keys starting with this.
    #[arg(long, requires = "policy")]
    prefix: Option<String>,
    /// A file holding a CreateJob `Manifest` (JSON: Spec and Location) instead of a snapshot.
    #[arg(long)]
    manifest: Option<String>,
    /// Where to: s3://bucket/prefix, gs://bucket/prefix or az://account/container/prefix.
    #[arg(long)]
    to: String,
    /// Secrets Manager ARN of the destination's credentials (required but for s3:// in this
    /// account).
    #[arg(long)]
    secret: Option<String>,
    /// S3-compatible endpoint (https://...), or the Azure Blob endpoint when not the default.
    #[arg(long)]
    endpoint: Option<String>,
    /// Region of an S3-compatible destination.
    #[arg(long)]
    region: Option<String>,
    /// Path-style requests to an S3-compatible endpoint.
    #[arg(long)]
    path_style: bool,
}

pub async fn run(app: &App, command: ExportCommand) -> Result<()> {
    let shown = match command {
        ExportCommand::Create(args) => {
            let to = StoreLocation::parse(
                &args.to,
                &LocationOptions {
                    endpoint: args.endpoint,
                    region: args.region,
                    path_style: args.path_style,
                    secret_arn: args.secret,
                },
            )
            .map_err(anyhow::Error::msg)?;
            let source = match (args.policy, args.manifest) {
                (Some(policy), None) => ExportSource::Snapshot {
                    policy,
                    snapshot: args.snapshot,
                    as_of: args.as_of,
                    prefix: args.prefix,
                },
                (None, Some(path)) => {
                    let text = super::read_document(&path)?;
                    let manifest: Manifest = serde_json::from_str(&text)
                        .map_err(|e| anyhow::anyhow!("{path}: not a CreateJob Manifest: {e}"))?;
                    ExportSource::Manifest(manifest)
                }
                _ => bail!("give --policy or --manifest"),
            };
            let job = exports::create_export(app, &ExportRequest { source, to }).await?;
            json!({"ExportId": job.job_id})
        }
        ExportCommand::Describe { export_id } => {
            serde_json::to_value(exports::describe_export(app, &export_id).await?)?
        }
        ExportCommand::List => {
            json!({"Exports": exports::list_exports(app).await?})
        }
        ExportCommand::Cancel { export_id } => {
            serde_json::to_value(exports::cancel_export(app, &export_id).await?)?
        }
        ExportCommand::Verify { export_id } => {
            let report = exports::verify_export(app, &export_id).await?;
            let clean = report.mismatches.is_empty();
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !clean {
                bail!(
                    "{} object(s) differ from the export manifest",
                    report.mismatches.len()
                );
            }
            return Ok(());
        }
    };
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(())
}
