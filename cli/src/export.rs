//! `batchops export`: exports of backups (or any manifest's objects) to other object stores.

use super::transfer::{self, Look, StoreArgs};
use anyhow::{bail, Result};
use batchops_aws::exports::{self, ExportDescriptor, ExportRequest, ExportSource};
use batchops_aws::transfers::Transfer;
use batchops_aws::App;
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
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(app: &App, command: ExportCommand) -> Result<()> {
    match command {
        ExportCommand::Create(args) => {
            let to = args.store.location(&args.to, "--to")?;
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
            transfer::print(&json!({ (ExportDescriptor::ID_FIELD): job.job_id }))
        }
        ExportCommand::Describe { export_id } => {
            transfer::run::<ExportDescriptor>(app, Look::Describe(export_id)).await
        }
        ExportCommand::List => transfer::run::<ExportDescriptor>(app, Look::List).await,
        ExportCommand::Cancel { export_id } => {
            transfer::run::<ExportDescriptor>(app, Look::Cancel(export_id)).await
        }
        ExportCommand::Verify { export_id } => {
            transfer::run::<ExportDescriptor>(app, Look::Verify(export_id)).await
        }
    }
}
