//! `S3PutObjectAcl`: PutObjectAcl on each object's version, with a canned ACL (`x-amz-acl`) or
//! the job's grants as `x-amz-grant-*` headers (as copies send them: `copy_options`).
//! S3 keeps an object's owner whatever an ACL says, so a request that names an Owner is checked
//! against the object's owner (GetObjectAcl) and the task fails when they differ, rather than
//! applying grants meant for another owner's object.

use super::{answered, Acted, ObjectOperation};
use crate::error::S3Failure;
use aws_sdk_s3::types::ObjectCannedAcl;
use aws_sdk_s3::Client;
use batchops_core::manifest::ObjectRef;
use batchops_core::operation::AclSpec;
use futures::future::BoxFuture;

pub struct PutAcl<'a>(pub &'a AclSpec);

impl ObjectOperation for PutAcl<'_> {
    fn act<'a>(
        &'a self,
        s3: &'a Client,
        object: &'a ObjectRef,
    ) -> BoxFuture<'a, Result<Acted, S3Failure>> {
        Box::pin(async move {
            let request = at_object!(s3.put_object_acl(), object);
            let request = match self.0 {
                AclSpec::Canned(canned) => request.acl(ObjectCannedAcl::from(canned.as_str())),
                AclSpec::Grants { owner, headers } => {
                    if let Some(expected) = owner.as_ref().and_then(|o| o.id.as_deref()) {
                        let current =
                            answered(at_object!(s3.get_object_acl(), object).send().await)?;
                        let actual = current.owner().and_then(|o| o.id()).unwrap_or_default();
                        if actual != expected {
                            return Err(S3Failure {
                                status: Some(400),
                                code: Some("InvalidArgument".into()),
                                message: format!(
                                    "the ACL's Owner ID `{expected}` is not the object's owner `{actual}`: an ACL cannot change an object's owner"
                                ),
                            });
                        }
                    }
                    request
                        .set_grant_full_control(headers.full_control.clone())
                        .set_grant_read(headers.read.clone())
                        .set_grant_read_acp(headers.read_acp.clone())
                        .set_grant_write_acp(headers.write_acp.clone())
                }
            };
            answered(request.send().await)?;
            Ok(Acted::successful())
        })
    }
}
