//! `S3ComputeObjectChecksum`: reads each object (GET, pinned to its version and ETag) and hashes
//! the body as it streams, one network chunk at a time: memory per task is a few hashers and a
//! chunk, whatever the object's size. COMPOSITE checksums of multipart objects hash each part
//! (boundaries from HEAD `?partNumber=`) and then the parts' checksums; an object stored in one
//! piece has no parts, and its checksum is reported as FULL_OBJECT. The value goes into the
//! report row's ResultMessage in S3 Batch Operations' JSON layout.

use super::{answered, head_failure, Acted, ObjectOperation};
use crate::error::S3Failure;
use aws_sdk_s3::Client;
use batchops_core::checksum::{ChecksumType, StreamingChecksum};
use batchops_core::manifest::ObjectRef;
use batchops_core::operation::ChecksumSpec;
use futures::future::BoxFuture;

pub struct ComputeChecksum(pub ChecksumSpec);

/// S3's limit on parts per object: more in a HEAD answer is a broken answer.
const MAX_PARTS: i32 = 10_000;

impl ComputeChecksum {
    /// The sizes of the object's parts (None: stored in one piece), and the version and ETag
    /// the body must be read at.
    async fn parts(
        &self,
        s3: &Client,
        object: &ObjectRef,
    ) -> Result<(Option<Vec<u64>>, Option<String>, Option<String>), S3Failure> {
        let head = |part: Option<i32>, version: Option<String>| {
            s3.head_object()
                .bucket(&object.bucket)
                .key(&object.key)
                .set_version_id(version)
                .set_part_number(part)
                .send()
        };
        // The object's version and ETag (a HEAD of a part may answer with the part's ETag).
        let whole = head(None, object.version_id.clone())
            .await
            .map_err(|e| head_failure(object, S3Failure::from_sdk(&e)))?;
        let version = whole
            .version_id()
            .map(str::to_string)
            .or(object.version_id.clone());
        let etag = whole.e_tag().map(str::to_string);
        let first = head(Some(1), version.clone())
            .await
            .map_err(|e| head_failure(object, S3Failure::from_sdk(&e)))?;
        let count = first.parts_count().unwrap_or(1);
        if count <= 1 {
            return Ok((None, version, etag));
        }
        if count > MAX_PARTS {
            return Err(S3Failure {
                status: Some(500),
                code: Some("InternalError".into()),
                message: format!("HEAD says the object has {count} parts, more than S3 allows"),
            });
        }
        let mut sizes = Vec::with_capacity(count as usize);
        sizes.push(first.content_length().unwrap_or(0).max(0) as u64);
        for part in 2..=count {
            let out = head(Some(part), version.clone())
                .await
                .map_err(|e| head_failure(object, S3Failure::from_sdk(&e)))?;
            sizes.push(out.content_length().unwrap_or(0).max(0) as u64);
        }
        Ok((Some(sizes), version, etag))
    }
}

impl ObjectOperation for ComputeChecksum {
    fn act<'a>(
        &'a self,
        s3: &'a Client,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Acted, S3Failure>> {
        Box::pin(async move {
            let spec = self.0;
            let (mut sum, version, if_match) = match spec.checksum_type {
                ChecksumType::FullObject => (
                    StreamingChecksum::full_object(spec.algorithm),
                    object.version_id.clone(),
                    None,
                ),
                ChecksumType::Composite => {
                    let (parts, version, etag) = self.parts(s3, object).await?;
                    let sum = match parts {
                        Some(sizes) => StreamingChecksum::composite(spec.algorithm, sizes),
                        None => StreamingChecksum::full_object(spec.algorithm),
                    };
                    (sum, version, etag)
                }
            };
            let out = answered(
                s3.get_object()
                    .bucket(&object.bucket)
                    .key(&object.key)
                    .set_version_id(version)
                    .set_if_match(if_match)
                    .send()
                    .await,
            )?;
            let etag = out.e_tag().unwrap_or_default().to_string();
            let mut body = out.body;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| S3Failure {
                    // No whole answer: retried like a timeout.
                    status: None,
                    code: None,
                    message: format!("reading the object: {e}"),
                })?;
                sum.update(&chunk);
            }
            let value = sum.finish().map_err(|message| S3Failure {
                status: None,
                code: None,
                message,
            })?;
            Ok(Acted {
                http_status: 200,
                message: value.result_message(&etag),
                new_version: None,
            })
        })
    }
}
