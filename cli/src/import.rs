//! `batchops import`: copies from other object stores into a bucket of this account.

use super::transfer::{self, Look, StoreArgs};
use anyhow::Result;
use batchops_aws::imports::{self, ImportDescriptor, ImportRequest};
use batchops_aws::transfers::Transfer;
use batchops_aws::App;
use batchops_core::export::{LocationOptions, StoreLocation};
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Import every object under a location into s3://bucket/prefix (only what changed since
    /// an earlier import is copied).
    Create(CreateArgs),
    /// An import's status (In progress, Success, Error, Cancelled) and progress.
    Describe { import_id: String },
    /// Every import, newest first.
    List,
    /// Cancel an import: what was already written stays.
    Cancel { import_id: String },
    /// Check the destination against the import manifest (sizes and MD5 of every object).
    Verify { import_id: String },
}

#[derive(Args)]
pub struct CreateArgs {
    /// Where from: s3://bucket/prefix, gs://bucket/prefix or az://account/container/prefix.
    #[arg(long)]
    from: String,
    /// Where to: s3://bucket/prefix in this account.
    #[arg(long)]
    to: String,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(app: &App, command: ImportCommand) -> Result<()> {
    match command {
        ImportCommand::Create(args) => {
            let from = args.store.location(&args.from, "--from")?;
            let to = StoreLocation::parse(&args.to, &LocationOptions::default())
                .map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            let job = imports::create_import(app, &ImportRequest { from, to }).await?;
            transfer::print(&json!({ (ImportDescriptor::ID_FIELD): job.job_id }))
        }
        ImportCommand::Describe { import_id } => {
            transfer::run::<ImportDescriptor>(app, Look::Describe(import_id)).await
        }
        ImportCommand::List => transfer::run::<ImportDescriptor>(app, Look::List).await,
        ImportCommand::Cancel { import_id } => {
            transfer::run::<ImportDescriptor>(app, Look::Cancel(import_id)).await
        }
        ImportCommand::Verify { import_id } => {
            transfer::run::<ImportDescriptor>(app, Look::Verify(import_id)).await
        }
    }
}
