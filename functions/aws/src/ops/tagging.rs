//! `S3PutObjectTagging` and `S3DeleteObjectTagging`: PutObjectTagging / DeleteObjectTagging on
//! each object, pinned to the manifest's version when it names one.

use super::{answered, unbuildable, Acted, ObjectOperation};
use crate::error::S3Failure;
use aws_sdk_s3::types::{Tag, Tagging};
use aws_sdk_s3::Client;
use batchops_core::manifest::ObjectRef;
use batchops_core::operation::TagSet;
use futures::future::BoxFuture;

/// Replaces every tag of the object with the job's tag set.
pub struct PutTagging<'a>(pub &'a TagSet);

impl ObjectOperation for PutTagging<'_> {
    fn act<'a>(
        &'a self,
        s3: &'a Client,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Acted, S3Failure>> {
        Box::pin(async move {
            let tags = self
                .0
                .tags
                .iter()
                .map(|(key, value)| Tag::builder().key(key).value(value).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| unbuildable("PutObjectTagging", e))?;
            let tagging = Tagging::builder()
                .set_tag_set(Some(tags))
                .build()
                .map_err(|e| unbuildable("PutObjectTagging", e))?;
            answered(
                at_object!(s3.put_object_tagging(), object)
                    .tagging(tagging)
                    .send()
                    .await,
            )?;
            Ok(Acted::successful())
        })
    }
}

/// Removes every tag of the object.
pub struct DeleteTagging;

impl ObjectOperation for DeleteTagging {
    fn act<'a>(
        &'a self,
        s3: &'a Client,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Acted, S3Failure>> {
        Box::pin(async move {
            answered(at_object!(s3.delete_object_tagging(), object).send().await)?;
            Ok(Acted::successful())
        })
    }
}
