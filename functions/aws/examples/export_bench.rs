//! `scripts/bench.sh export`: one object exported to another S3-compatible store (a second moto).
//!
//!   export_bench seed --key K --mib N      (against moto) writes N MiB to bench-source/K as a
//!                                          multipart upload of generated 8 MiB parts
//!   export_bench export --key K --to URL   creates an export of bench-source/K to the store at
//!                                          URL (its own credentials, in a Secrets Manager
//!                                          secret), runs planner, worker and finalizer in this
//!                                          process until idle, and prints
//!                                          `{"bytes", "seconds", "status"}`
//!
//! The bench measures the second command's wall time and peak RSS (/usr/bin/time): the
//! export streams, so RSS must not grow with the object's size.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use batchops_aws::exports::{self, ExportRequest, ExportSource};
use batchops_aws::runtime::{run, RunOptions};
use batchops_aws::{setup, App, Clients, Config};
use batchops_core::export::{LocationOptions, StoreLocation};
use batchops_core::request::Manifest;
use std::time::{Duration, Instant};

const SOURCE: &str = "bench-source";
const PART: usize = 8 * 1024 * 1024;

async fn app() -> anyhow::Result<App> {
    let config = Config::from_env()?;
    let clients = Clients::load(&config).await;
    setup::init(&clients, &config).await?;
    Ok(App::new(config, clients).await?)
}

async fn seed(key: &str, mib: usize) -> anyhow::Result<()> {
    let app = app().await?;
    let _ = app.s3.create_bucket().bucket(SOURCE).send().await;
    let upload = app
        .s3
        .create_multipart_upload()
        .bucket(SOURCE)
        .key(key)
        .send()
        .await?;
    let upload_id = upload.upload_id().unwrap_or_default().to_string();
    let mut parts = Vec::new();
    let total = mib * 1024 * 1024;
    let mut offset = 0;
    let mut number = 1;
    while offset < total {
        let len = PART.min(total - offset);
        let body: Vec<u8> = (offset..offset + len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
            .collect();
        let part = app
            .s3
            .upload_part()
            .bucket(SOURCE)
            .key(key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await?;
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(part.e_tag().map(str::to_string))
                .build(),
        );
        offset += len;
        number += 1;
    }
    app.s3
        .complete_multipart_upload()
        .bucket(SOURCE)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

async fn export(key: &str, to: &str) -> anyhow::Result<()> {
    let app = std::sync::Arc::new(app().await?);
    // The other store takes any credentials (moto): a bucket and a secret of its own.
    let other = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(to)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "bench", "bench", None, None, "bench",
            ))
            .build(),
    );
    let _ = other.create_bucket().bucket("bench-export").send().await;
    let secret_name = format!("bench-export-{}", uuid::Uuid::new_v4().simple());
    let secret = app
        .secrets
        .create_secret()
        .name(&secret_name)
        .secret_string(r#"{"accessKeyId": "bench", "secretAccessKey": "bench"}"#)
        .send()
        .await?;
    let manifest_key = format!("manifests/{key}.csv");
    batchops_aws::objects::put_bytes(
        &app.s3,
        SOURCE,
        &manifest_key,
        format!("{SOURCE},{key}\n").into_bytes(),
        "text/csv",
    )
    .await?;
    let manifest: Manifest = serde_json::from_value(serde_json::json!({
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
        "Location": {"ObjectArn": format!("arn:aws:s3:::{SOURCE}/{manifest_key}")}
    }))?;
    let location = StoreLocation::parse(
        "s3://bench-export/exports",
        &LocationOptions {
            endpoint: Some(to.to_string()),
            region: Some("us-east-1".into()),
            path_style: true,
            secret_arn: secret.arn().map(str::to_string),
        },
    )
    .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let created = exports::create_export(
        &app,
        &ExportRequest {
            source: ExportSource::Manifest(manifest),
            to: location,
        },
    )
    .await?;
    run(
        app.clone(),
        RunOptions {
            until_idle: true,
            concurrency: 1,
            sweep_interval: Duration::from_millis(200),
            max_duration: Some(Duration::from_secs(3600)),
        },
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let described = exports::describe_export(&app, &created.job_id).await?;
    let bytes = other
        .head_object()
        .bucket("bench-export")
        .key(format!("exports/{key}"))
        .send()
        .await?
        .content_length()
        .unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({"bytes": bytes, "seconds": seconds, "status": described.status,
            "succeeded": described.progress_summary.number_of_tasks_succeeded})
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        ["seed", "--key", key, "--mib", mib] => seed(key, mib.parse()?).await,
        ["export", "--key", key, "--to", to] => export(key, to).await,
        _ => anyhow::bail!("usage: export_bench seed --key K --mib N | export --key K --to URL"),
    }
}
