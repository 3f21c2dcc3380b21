//! `Batchops.Delete` (an extension; S3 Batch Operations has no delete): DeleteObject on each
//! manifest entry. With a version ID that version is deleted for good; without one, a versioned
//! bucket gets a delete marker (the data stays as an older version) and an unversioned bucket
//! loses the object. Object Lock still applies: a locked version fails its task (AccessDenied).
//! The job's confirmation and MaxDeletes guard are applied before any task runs (see
//! `JobRecord::request_status` and the planner's task limit).

use super::{answered, Acted, ObjectOperation};
use crate::error::S3Failure;
use aws_sdk_s3::Client;
use batchops_core::manifest::ObjectRef;
use futures::future::BoxFuture;

pub struct DeleteVersion;

impl ObjectOperation for DeleteVersion {
    fn act<'a>(
        &'a self,
        s3: &'a Client,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Acted, S3Failure>> {
        Box::pin(async move {
            let out = answered(at_object!(s3.delete_object(), object).send().await)?;
            let message = match (&object.version_id, out.delete_marker(), out.version_id()) {
                (Some(version), _, _) => format!("Deleted version {version}"),
                (None, Some(true), Some(marker)) => format!("Delete marker {marker} placed"),
                (None, _, _) => "Deleted (the bucket keeps no versions)".to_string(),
            };
            Ok(Acted {
                http_status: 204,
                message,
                new_version: out
                    .version_id()
                    .filter(|_| object.version_id.is_none())
                    .map(str::to_string),
            })
        })
    }
}
