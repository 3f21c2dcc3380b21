//! `batchops import`: copies from other object stores into a bucket of this account.

use anyhow::{bail, Result};
use batchops_aws::imports::{self, ImportRequest};
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
    /// Secrets Manager ARN of the source's credentials (required but for s3:// in this
    /// account).
    #[arg(long)]
    secret: Option<String>,
    /// S3-compatible endpoint of the source (https://...), or its Azure Blob endpoint when not
    /// the default.
    #[arg(long)]
    endpoint: Option<String>,
    /// Region of an S3-compatible source.
    #[arg(long)]
    region: Option<String>,
    /// Path-style requests to an S3-compatible source.
    #[arg(long)]
    path_style: bool,
}

pub async fn run(app: &App, command: ImportCommand) -> Result<()> {
    let shown = match command {
        ImportCommand::Create(args) => {
            let from = StoreLocation::parse(
                &args.from,
                &LocationOptions {
                    endpoint: args.endpoint,
                    region: args.region,
                    path_style: args.path_style,
                    secret_arn: args.secret,
                },
            )
            .map_err(|e| anyhow::anyhow!("--from: {e}"))?;
            let to = StoreLocation::parse(&args.to, &LocationOptions::default())
                .map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            let job = imports::create_import(app, &ImportRequest { from, to }).await?;
            json!({"ImportId": job.job_id})
        }
        ImportCommand::Describe { import_id } => {
            serde_json::to_value(imports::describe_import(app, &import_id).await?)?
        }
        ImportCommand::List => json!({"Imports": imports::list_imports(app).await?}),
        ImportCommand::Cancel { import_id } => {
            serde_json::to_value(imports::cancel_import(app, &import_id).await?)?
        }
        ImportCommand::Verify { import_id } => {
            let report = imports::verify_import(app, &import_id).await?;
            let clean = report.mismatches.is_empty();
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !clean {
                bail!(
                    "{} object(s) differ from the import manifest",
                    report.mismatches.len()
                );
            }
            return Ok(());
        }
    };
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(())
}
