//! `S3InitiateRestoreObject`: RestoreObject on each archived object (pinned to the manifest's
//! version). The task succeeds once the restore is initiated (202), or when the object is already
//! restored (200: S3 moves the restored copy's expiry); a restore already in progress fails the
//! task with S3's `RestoreAlreadyInProgress` (409), as S3 Batch Operations reports overlapping
//! restores it cannot speed up, and an object that is not archived with `InvalidObjectState`.

use super::{answered, unbuildable, Acted, ObjectOperation};
use crate::error::S3Failure;
use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest, Tier};
use aws_sdk_s3::Client;
use batchops_core::manifest::ObjectRef;
use batchops_core::operation::RestoreSpec;
use futures::future::BoxFuture;

pub struct InitiateRestore<'a>(pub &'a RestoreSpec);

impl ObjectOperation for InitiateRestore<'_> {
    fn act<'a>(
        &'a self,
        s3: &'a Client,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Acted, S3Failure>> {
        Box::pin(async move {
            let spec = self.0;
            let tier = spec
                .tier
                .map(|tier| {
                    GlacierJobParameters::builder()
                        .tier(Tier::from(tier.as_str()))
                        .build()
                })
                .transpose()
                .map_err(|e| unbuildable("RestoreObject", e))?;
            let request = RestoreRequest::builder()
                .set_days(spec.expiration_days)
                .set_glacier_job_parameters(tier)
                .build();
            answered(
                at_object!(s3.restore_object(), object)
                    .restore_request(request)
                    .send()
                    .await,
            )?;
            Ok(Acted::successful())
        })
    }
}
