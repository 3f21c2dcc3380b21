//! What `batchops export` and `batchops import` share: describe, list, cancel and verify, the
//! same for both directions (one [`Transfer`] each), printed as the HTTP API answers them.

use anyhow::{bail, Result};
use batchops_aws::transfers::{self, Transfer};
use batchops_aws::App;
use batchops_core::export::{LocationOptions, StoreLocation};
use clap::Args;
use serde_json::json;

/// How to reach the other store: the destination of an export, the source of an import.
#[derive(Args)]
pub struct StoreArgs {
    /// Secrets Manager ARN of the other store's credentials (required but for s3:// in this
    /// account).
    #[arg(long)]
    secret: Option<String>,
    /// S3-compatible endpoint of the other store (https://...), or its Azure Blob endpoint when
    /// not the default.
    #[arg(long)]
    endpoint: Option<String>,
    /// Region of an S3-compatible store.
    #[arg(long)]
    region: Option<String>,
    /// Path-style requests to an S3-compatible store.
    #[arg(long)]
    path_style: bool,
}

impl StoreArgs {
    /// The location `url` (given as `flag`) names, reached as these options say.
    pub fn location(self, url: &str, flag: &str) -> Result<StoreLocation> {
        StoreLocation::parse(
            url,
            &LocationOptions {
                endpoint: self.endpoint,
                region: self.region,
                path_style: self.path_style,
                secret_arn: self.secret,
            },
        )
        .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
    }
}

/// A look at transfers of one direction, or a cancel.
pub enum Look {
    Describe(String),
    List,
    Cancel(String),
    /// Fails (after printing what it found) when an object differs from the manifest.
    Verify(String),
}

pub async fn run<T: Transfer>(app: &App, look: Look) -> Result<()> {
    let shown = match look {
        Look::Describe(id) => serde_json::to_value(transfers::describe::<T>(app, &id).await?)?,
        Look::List => {
            let listed = transfers::list::<T>(app).await?;
            json!({ (T::LIST_FIELD): listed })
        }
        Look::Cancel(id) => serde_json::to_value(transfers::cancel::<T>(app, &id).await?)?,
        Look::Verify(id) => {
            let report = T::verify(app, &id).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.mismatches.is_empty() {
                bail!(
                    "{} object(s) differ from the {} manifest",
                    report.mismatches.len(),
                    T::NOUN
                );
            }
            return Ok(());
        }
    };
    print(&shown)
}

pub fn print(shown: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(shown)?);
    Ok(())
}
