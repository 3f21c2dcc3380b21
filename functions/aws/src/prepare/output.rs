use crate::error::{aws, Error, Result};
use crate::objects::{md5_hex, put_bytes, put_bytes_pinned};
use aws_sdk_s3::Client;
use batchops_core::chunk::ChunkTask;
use batchops_core::encoding::encode_key;
use batchops_core::job::GeneratedManifestDescriptor;
use batchops_core::request::ManifestOutput;

/// `<prefix>/job-<id>` under the manifest output location.
pub fn output_root(output: &ManifestOutput, job_id: &str) -> String {
    if output.prefix.is_empty() {
        format!("job-{job_id}")
    } else {
        format!("{}/job-{job_id}", output.prefix)
    }
}

/// One gzip CSV data file of a generated manifest, in S3 Inventory's quoting.
pub(super) fn generated_part(tasks: &[ChunkTask], with_versions: bool) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut csv = String::new();
    for task in tasks {
        if let ChunkTask::Object { object, .. } = task {
            csv.push_str(&format!(
                "\"{}\",\"{}\"",
                object.bucket,
                encode_key(&object.key)
            ));
            if with_versions {
                csv.push_str(&format!(
                    ",\"{}\"",
                    object.version_id.as_deref().unwrap_or("")
                ));
            }
            csv.push('\n');
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(csv.as_bytes())
        .map_err(|e| Error::Data(e.to_string()))?;
    gz.finish().map_err(|e| Error::Data(e.to_string()))
}

/// Writes the generated manifest's `manifest.json` and `manifest.checksum` once planning is
/// done: an S3 Inventory-style report any later job can take as its manifest. Answers where
/// manifest.json is (DescribeJob's GeneratedManifestDescriptor).
pub async fn write_generated_manifest(
    s3: &Client,
    output: &ManifestOutput,
    job_id: &str,
    source_bucket: &str,
    with_versions: bool,
) -> Result<GeneratedManifestDescriptor> {
    let root = output_root(output, job_id);
    let mut files = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(&output.bucket)
        .prefix(format!("{root}/data/"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws("S3", "ListObjectsV2"))?;
        for object in page.contents() {
            files.push(serde_json::json!({
                "key": object.key().unwrap_or_default(),
                "size": object.size().unwrap_or(0),
                "MD5checksum": object.e_tag().unwrap_or_default().trim_matches('"'),
            }));
        }
    }
    let manifest = serde_json::json!({
        "sourceBucket": source_bucket,
        "destinationBucket": batchops_core::arn::bucket_arn(&output.bucket),
        "version": "2016-11-30",
        "creationTimestamp": (crate::unix_now() * 1000).to_string(),
        "fileFormat": "CSV",
        "fileSchema": if with_versions { "Bucket, Key, VersionId" } else { "Bucket, Key" },
        "files": files,
    });
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Data(e.to_string()))?;
    let checksum = md5_hex(&body);
    let key = format!("{root}/manifest.json");
    let written = put_bytes_pinned(s3, &output.bucket, &key, body, "application/json").await?;
    put_bytes(
        s3,
        &output.bucket,
        &format!("{root}/manifest.checksum"),
        checksum.into_bytes(),
        "text/plain",
    )
    .await?;
    Ok(GeneratedManifestDescriptor {
        format: batchops_core::request::GENERATED_MANIFEST_FORMAT.to_string(),
        location: batchops_core::request::ManifestLocation {
            object_arn: batchops_core::arn::object_arn(&output.bucket, &key),
            object_version_id: written.version_id,
            etag: written.etag,
        },
    })
}
