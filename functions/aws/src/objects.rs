//! Small S3 helpers shared by the planner, worker and finalizer: whole-object reads and writes
//! of the control files and report files.

use crate::error::{aws, Error, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use base64::Engine;
use md5::{Digest, Md5};

/// Hex MD5 of `body`, as the report manifest lists it.
pub fn md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Writes `body` with a Content-MD5 header (so S3 verifies it arrived intact) and returns its
/// hex MD5.
pub async fn put_bytes(
    s3: &Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Result<String> {
    Ok(put_bytes_pinned(s3, bucket, key, body, content_type)
        .await?
        .md5)
}

/// What a write left: the body's hex MD5, and the version ID (versioned buckets) and ETag S3
/// gave it, to read it back pinned.
pub struct Written {
    pub md5: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
}

/// [`put_bytes`], returning the version and ETag written too.
pub async fn put_bytes_pinned(
    s3: &Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Result<Written> {
    let digest = Md5::digest(&body);
    let out = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .content_md5(base64::engine::general_purpose::STANDARD.encode(digest))
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| Error::aws_call("S3", "PutObject", &format!("s3://{bucket}/{key}"), &e))?;
    Ok(Written {
        md5: hex::encode(digest),
        version_id: out.version_id().map(str::to_string),
        etag: out.e_tag().map(str::to_string),
    })
}

pub async fn get_bytes(s3: &Client, bucket: &str, key: &str) -> Result<Vec<u8>> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| Error::aws_call("S3", "GetObject", &format!("s3://{bucket}/{key}"), &e))?;
    let body = out.body.collect().await.map_err(aws("S3", "GetObject"))?;
    Ok(body.into_bytes().to_vec())
}

pub async fn delete_object(s3: &Client, bucket: &str, key: &str) -> Result<()> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(aws("S3", "DeleteObject"))?;
    Ok(())
}

/// The ETag an object (version) has now, or `unknown` if it cannot be read: what a failed
/// If-Match found instead of the ETag expected.
pub async fn etag_now(s3: &Client, bucket: &str, key: &str, version_id: Option<&str>) -> String {
    s3.head_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id.map(str::to_string))
        .send()
        .await
        .ok()
        .and_then(|h| h.e_tag().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Whether the bucket exists and can be reached with these credentials.
pub async fn bucket_reachable(s3: &Client, bucket: &str) -> std::result::Result<(), String> {
    s3.head_bucket()
        .bucket(bucket)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            let failure = crate::error::S3Failure::from_sdk(&e);
            match failure.status {
                Some(404) => format!("bucket `{bucket}` does not exist"),
                Some(403) => format!("access to bucket `{bucket}` is denied"),
                _ => format!(
                    "bucket `{bucket}` could not be reached: {}",
                    failure.message
                ),
            }
        })
}

/// Each expected owner checked with a HeadBucket that carries it (the job's client for the
/// bucket sends the header): S3 answers AccessDenied when the bucket belongs to another
/// account. Err: (the field that named the owner, why).
pub async fn check_expected_owners(
    clients: &crate::clients::JobClients,
    owners: &[batchops_core::request::ExpectedOwner],
) -> std::result::Result<(), (String, String)> {
    for expected in owners {
        let asked = clients
            .s3(&expected.bucket)
            .await
            .head_bucket()
            .bucket(&expected.bucket)
            .send()
            .await;
        if let Err(e) = asked {
            let failure = crate::error::S3Failure::from_sdk(&e);
            let why = match failure.status {
                Some(403) => format!(
                    "AccessDenied: S3 refused bucket `{}` to a request expecting owner {}: the bucket belongs to another account (or the job's role may not reach it)",
                    expected.bucket, expected.owner
                ),
                Some(404) => format!("bucket `{}` does not exist", expected.bucket),
                _ => format!(
                    "bucket `{}` could not be reached: {}",
                    expected.bucket, failure.message
                ),
            };
            return Err((expected.field.clone(), why));
        }
    }
    Ok(())
}

/// ETags compare without their quotes (S3 returns them quoted, users often paste them bare).
pub fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}
