//! Object Lock: `S3PutObjectLegalHold` (PutObjectLegalHold) and `S3PutObjectRetention`
//! (PutObjectRetention, with `x-amz-bypass-governance-retention` when the job asks), on each
//! object's version. The bucket must have Object Lock enabled; S3's refusal otherwise is the
//! task's error.

use super::{answered, Acted, ObjectOperation};
use crate::error::S3Failure;
use aws_sdk_s3::types::{
    ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockRetention, ObjectLockRetentionMode,
};
use aws_sdk_s3::Client;
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use batchops_core::manifest::ObjectRef;
use batchops_core::operation::{LegalHoldSpec, RetentionSpec};
use futures::future::BoxFuture;

pub struct PutLegalHold<'a>(pub &'a LegalHoldSpec);

impl ObjectOperation for PutLegalHold<'_> {
    fn act<'a>(
        &'a self,
        s3: &'a Client,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Acted, S3Failure>> {
        Box::pin(async move {
            let status = if self.0.on {
                ObjectLockLegalHoldStatus::On
            } else {
                ObjectLockLegalHoldStatus::Off
            };
            answered(
                at_object!(s3.put_object_legal_hold(), object)
                    .legal_hold(ObjectLockLegalHold::builder().status(status).build())
                    .send()
                    .await,
            )?;
            Ok(Acted::successful())
        })
    }
}

pub struct PutRetention<'a>(pub &'a RetentionSpec);

impl ObjectOperation for PutRetention<'_> {
    fn act<'a>(
        &'a self,
        s3: &'a Client,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Acted, S3Failure>> {
        Box::pin(async move {
            let spec = self.0;
            let mut retention = ObjectLockRetention::builder();
            if let Some((mode, until)) = &spec.retention {
                // Validated as RFC 3339 when the job was created.
                let until = DateTime::from_str(until, Format::DateTime).map_err(|e| S3Failure {
                    status: Some(400),
                    code: Some("InvalidArgument".into()),
                    message: format!("RetainUntilDate `{until}`: {e}"),
                })?;
                retention = retention
                    .mode(ObjectLockRetentionMode::from(mode.as_str()))
                    .retain_until_date(until);
            }
            answered(
                at_object!(s3.put_object_retention(), object)
                    .retention(retention.build())
                    .set_bypass_governance_retention(spec.bypass_governance.then_some(true))
                    .send()
                    .await,
            )?;
            Ok(Acted::successful())
        })
    }
}
