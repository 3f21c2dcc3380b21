//! `batchops serve`: the api Lambda's routes (JSON and S3 Control's XML) on a local address.

use anyhow::{Context, Result};
use batchops_aws::s3control::sigv4::Credentials;
use batchops_aws::serve::{serve, ServeOptions};
use batchops_aws::App;
use clap::Args;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on. S3 Control clients call `<account-id>.<this host>`: see README
    /// "batchops serve".
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// The access key S3 Control calls must be signed with (SigV4); without it they are refused.
    #[arg(
        long,
        env = "BATCHOPS_SERVE_ACCESS_KEY_ID",
        requires = "secret_access_key"
    )]
    access_key_id: Option<String>,
    #[arg(
        long,
        env = "BATCHOPS_SERVE_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "access_key_id"
    )]
    secret_access_key: Option<String>,
}

pub async fn run(app: App, args: ServeArgs) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let credentials = match (args.access_key_id, args.secret_access_key) {
        (Some(access_key_id), Some(secret_access_key)) => Some(Credentials {
            access_key_id,
            secret_access_key,
        }),
        _ => {
            eprintln!("no --access-key-id/--secret-access-key: S3 Control calls will be refused");
            None
        }
    };
    eprintln!(
        "batchops serve listening on http://{}",
        listener.local_addr()?
    );
    tokio::select! {
        () = serve(Arc::new(app), listener, ServeOptions { credentials }) => Ok(()),
        signal = tokio::signal::ctrl_c() => signal.context("waiting for Ctrl-C"),
    }
}
