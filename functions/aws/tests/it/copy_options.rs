//! S3PutObjectCopy's options (issue 11), read back from moto: SSE-KMS and the Bucket Key, canned
//! ACLs and grants, Object Lock, the website redirect, checksums, and the copy-source conditions
//! reported as S3 reports them. What moto keeps no trace of (RequesterPays, the Object Lock and
//! Bucket Key headers of a multipart upload, `bucket-owner-full-control` in one account) is
//! checked on the requests as they leave the SDK for moto.

use crate::harness::TestEnv;
use aws_sdk_s3::types::{ChecksumMode, Permission, Type};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use batchops_aws::ops::copy::{Copier, SourceSize};
use batchops_aws::ops::TaskResult;
use batchops_core::encoding::encode_key;
use batchops_core::manifest::ObjectRef;
use batchops_core::report::TaskStatus;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

const KEY: &str = "ünïcödé/with space+plus %25.txt";
const KMS_KEY: &str = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const FIVE_MIB: usize = 5 * 1024 * 1024;

/// Runs a copy job over `KEY` (pinned to its version) with `options` added to its
/// S3PutObjectCopy; returns the job's report rows after it completes.
async fn copy_job(env: &TestEnv, options: Value) -> Vec<batchops_core::report::ReportRow> {
    let version = env.put(&env.src, KEY, "payload").await;
    let manifest = env
        .manifest(
            &uuid::Uuid::new_v4().to_string(),
            &[format!("{},{},{version}", env.src, encode_key(KEY))],
        )
        .await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key", "VersionId"]);
    let copy = document["Operation"]["S3PutObjectCopy"]
        .as_object_mut()
        .expect("copy operation");
    for (name, value) in options.as_object().expect("options object") {
        copy.insert(name.clone(), value.clone());
    }
    let job = env.create(document).await;
    env.run_to_complete(&job).await;
    env.audit(&job).await.rows
}

async fn lock_bucket(env: &TestEnv) -> String {
    let bucket = format!("{}-lock", env.dst);
    env.clients
        .s3
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("create lock bucket");
    bucket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_kms_with_a_bucket_key_and_a_redirect_are_read_back_from_head_object() {
    let env = TestEnv::new().await;
    let rows = copy_job(
        &env,
        json!({"NewObjectMetadata": {"SSEAlgorithm": "KMS"}, "SSEAwsKmsKeyId": KMS_KEY,
               "BucketKeyEnabled": true, "RedirectLocation": "/moved/elsewhere.txt"}),
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].task_status, "succeeded", "{rows:?}");
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&env.dst)
        .key(format!("copied/{KEY}"))
        .send()
        .await
        .expect("copy exists");
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert_eq!(head.ssekms_key_id(), Some(KMS_KEY));
    assert_eq!(head.bucket_key_enabled(), Some(true));
    assert_eq!(
        head.website_redirect_location(),
        Some("/moved/elsewhere.txt")
    );
}

/// The grants moto holds for `key` in `bucket`, as (grantee, permission) pairs.
async fn grants(env: &TestEnv, bucket: &str, key: &str) -> Vec<(String, String)> {
    let acl = env
        .clients
        .s3
        .get_object_acl()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("get object acl");
    let mut grants: Vec<(String, String)> = acl
        .grants()
        .iter()
        .map(|g| {
            let grantee = g.grantee().expect("grantee");
            let who = match grantee.r#type() {
                Type::Group => format!("uri={}", grantee.uri().unwrap_or_default()),
                _ => format!("id={}", grantee.id().unwrap_or_default()),
            };
            (
                who,
                g.permission()
                    .map(Permission::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    grants.sort();
    grants
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canned_acls_and_grants_are_read_back_with_get_object_acl() {
    let env = TestEnv::new().await;
    let rows = copy_job(&env, json!({"CannedAccessControlList": "public-read"})).await;
    assert_eq!(rows[0].task_status, "succeeded", "{rows:?}");
    let all_users = "uri=http://acs.amazonaws.com/groups/global/AllUsers".to_string();
    let copied = grants(&env, &env.dst, &format!("copied/{KEY}")).await;
    assert!(
        copied.contains(&(all_users.clone(), "READ".to_string())),
        "{copied:?}"
    );

    let rows = copy_job(
        &env,
        json!({"TargetKeyPrefix": "granted", "AccessControlGrants": [
            {"Grantee": {"TypeIdentifier": "id", "Identifier": "abc123", "DisplayName": "someone"}, "Permission": "READ_ACP"},
            {"Grantee": {"TypeIdentifier": "uri", "Identifier": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ"}]}),
    )
    .await;
    assert_eq!(rows[0].task_status, "succeeded", "{rows:?}");
    assert_eq!(
        grants(&env, &env.dst, &format!("granted/{KEY}")).await,
        vec![
            ("id=abc123".to_string(), "READ_ACP".to_string()),
            (all_users, "READ".to_string()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_lock_is_read_back_and_a_bucket_without_it_fails_the_task_clearly() {
    let env = TestEnv::new().await;
    let locked = lock_bucket(&env).await;
    let rows = copy_job(
        &env,
        json!({"TargetResource": format!("arn:aws:s3:::{locked}"),
               "ObjectLockLegalHoldStatus": "ON", "ObjectLockMode": "GOVERNANCE",
               "ObjectLockRetainUntilDate": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(rows[0].task_status, "succeeded", "{rows:?}");
    let target = format!("copied/{KEY}");
    // moto answers GetObjectRetention with a 500; HEAD shows the retention it holds.
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&locked)
        .key(&target)
        .send()
        .await
        .expect("copy exists");
    assert_eq!(
        head.object_lock_mode().map(|m| m.as_str()),
        Some("GOVERNANCE")
    );
    assert_eq!(
        head.object_lock_retain_until_date().map(|d| d.secs()),
        Some(4_070_908_800)
    );
    let hold = env
        .clients
        .s3
        .get_object_legal_hold()
        .bucket(&locked)
        .key(&target)
        .send()
        .await
        .expect("legal hold");
    assert_eq!(
        hold.legal_hold()
            .and_then(|h| h.status())
            .map(|s| s.as_str()),
        Some("ON")
    );

    // The same settings into a bucket without Object Lock: a failed task saying why.
    let rows = copy_job(&env, json!({"ObjectLockLegalHoldStatus": "ON"})).await;
    let row = &rows[0];
    assert_eq!(
        (
            row.task_status.as_str(),
            row.http_status.as_str(),
            row.error_code.as_str()
        ),
        ("failed", "400", "InvalidRequest"),
        "{row:?}"
    );
    assert!(
        row.message.contains("ObjectLockConfiguration")
            && row.message.contains(&format!(
                "target bucket {} does not have Object Lock enabled",
                env.dst
            )),
        "{}",
        row.message
    );
    assert!(env.keys(&env.dst).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_source_conditions_that_fail_are_reported_as_s3_reports_them() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_MULTIPART_THRESHOLD_BYTES", &FIVE_MIB.to_string()),
        ("BATCHOPS_MULTIPART_PART_SIZE_BYTES", &FIVE_MIB.to_string()),
    ])
    .await;
    let big_version = env.put(&env.src, "big.bin", vec![3u8; FIVE_MIB + 1]).await;
    let big = format!("{},big.bin,{big_version}", env.src);
    // Written now: not modified since an hour from now, modified since 2001.
    let later = (time::OffsetDateTime::now_utc() + time::Duration::hours(1)).unix_timestamp();
    let cases = [
        (json!({"ModifiedSinceConstraint": later}), false),
        (
            json!({"UnModifiedSinceConstraint": "2001-01-01T00:00:00Z"}),
            false,
        ),
        (
            json!({"ModifiedSinceConstraint": "2001-01-01T00:00:00Z", "UnModifiedSinceConstraint": later}),
            true,
        ),
    ];
    for (i, (conditions, copies)) in cases.into_iter().enumerate() {
        let version = env.put(&env.src, KEY, "payload").await;
        let manifest = env
            .manifest(
                &format!("conditions-{i}"),
                &[
                    format!("{},{},{version}", env.src, encode_key(KEY)),
                    big.clone(),
                ],
            )
            .await;
        let mut document = env.request_json(&manifest, &["Bucket", "Key", "VersionId"]);
        let prefix = format!("case-{i}");
        let copy = document["Operation"]["S3PutObjectCopy"]
            .as_object_mut()
            .unwrap();
        copy.insert("TargetKeyPrefix".into(), json!(prefix));
        for (name, value) in conditions.as_object().unwrap() {
            copy.insert(name.clone(), value.clone());
        }
        let job = env.create(document).await;
        env.run_to_complete(&job).await;
        let rows = env.audit(&job).await.rows;
        assert_eq!(rows.len(), 2);
        for row in &rows {
            if copies {
                assert_eq!(row.task_status, "succeeded", "case {i}: {row:?}");
            } else {
                assert_eq!(
                    (
                        row.task_status.as_str(),
                        row.http_status.as_str(),
                        row.error_code.as_str(),
                        row.message.as_str()
                    ),
                    (
                        "failed",
                        "412",
                        "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold"
                    ),
                    "case {i}"
                );
            }
        }
        let written: Vec<String> = env
            .keys(&env.dst)
            .await
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .collect();
        assert_eq!(written.len(), if copies { 2 } else { 0 }, "case {i}");
    }
    assert_eq!(
        env.open_uploads().await,
        0,
        "a refused copy leaves no upload"
    );
}

/// A request's headers, names lowercased.
type Headers = HashMap<String, String>;

/// Every request the SDK sends: its operation name and its headers.
#[derive(Debug, Default, Clone)]
struct SentRequests(Arc<Mutex<Vec<(String, Headers)>>>);

impl Intercept for SentRequests {
    fn name(&self) -> &'static str {
        "SentRequests"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_default();
        let headers = context
            .request()
            .headers()
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
            .collect();
        self.0
            .lock()
            .map_err(|_| "poisoned")?
            .push((operation, headers));
        Ok(())
    }
}

impl SentRequests {
    fn of(&self, operation: &str) -> Vec<Headers> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| name == operation)
            .map(|(_, headers)| headers.clone())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_and_multipart_copies_send_every_option_and_requester_pays() {
    let env = TestEnv::new().await;
    let locked = lock_bucket(&env).await;
    let small_version = env.put(&env.src, KEY, "payload").await;
    let big_version = env.put(&env.src, "big.bin", vec![5u8; FIVE_MIB + 1]).await;
    let mut document = env.request_json("unused", &["Bucket", "Key"]);
    let copy = document["Operation"]["S3PutObjectCopy"]
        .as_object_mut()
        .unwrap();
    let options = json!({"TargetResource": format!("arn:aws:s3:::{locked}"),
        "NewObjectMetadata": {"SSEAlgorithm": "KMS"}, "SSEAwsKmsKeyId": KMS_KEY, "BucketKeyEnabled": true,
        "CannedAccessControlList": "bucket-owner-full-control", "RedirectLocation": "https://example.com/moved",
        "ObjectLockLegalHoldStatus": "ON", "ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": "2099-01-01T00:00:00Z",
        "RequesterPays": true, "ChecksumAlgorithm": "SHA256",
        "ModifiedSinceConstraint": "2001-01-01T00:00:00Z", "UnModifiedSinceConstraint": "2098-01-01T00:00:00Z"});
    for (name, value) in options.as_object().unwrap() {
        copy.insert(name.clone(), value.clone());
    }
    let spec = batchops_core::CreateJobRequest::from_json(&document.to_string())
        .unwrap()
        .validate()
        .unwrap();
    let sent = SentRequests::default();
    let s3 = aws_sdk_s3::Client::from_conf(
        env.app
            .s3
            .config()
            .to_builder()
            .interceptor(sent.clone())
            .build(),
    );
    let mut settings = env.app.copy.clone();
    settings.multipart_threshold = FIVE_MIB as u64;
    settings.part_size = FIVE_MIB as u64;
    let stop = AtomicBool::new(false);
    let sources = env.app.data.through(s3.clone());
    let copier = Copier {
        s3: &s3,
        sources: &sources,
        spec: spec.operation.copy().unwrap(),
        settings: &settings,
        stop: &stop,
        part_deadline: None,
        uploads: None,
    };
    for (key, version) in [(KEY, small_version), ("big.bin", big_version)] {
        let object = ObjectRef {
            bucket: env.src.clone(),
            key: key.to_string(),
            version_id: Some(version),
        };
        match copier
            .copy(&object, None, &format!("copied/{key}"), SourceSize::Unknown)
            .await
        {
            TaskResult::Done(outcome) => {
                assert_eq!(outcome.status, TaskStatus::Succeeded, "{key}: {outcome:?}")
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    let expect = |headers: &Headers, wanted: &[(&str, &str)], what: &str| {
        for (name, value) in wanted {
            assert_eq!(
                headers.get(*name).map(String::as_str),
                Some(*value),
                "{what}: {name} in {headers:?}"
            );
        }
    };
    let written = [
        ("x-amz-server-side-encryption", "aws:kms"),
        ("x-amz-server-side-encryption-aws-kms-key-id", KMS_KEY),
        ("x-amz-server-side-encryption-bucket-key-enabled", "true"),
        ("x-amz-acl", "bucket-owner-full-control"),
        (
            "x-amz-website-redirect-location",
            "https://example.com/moved",
        ),
        ("x-amz-object-lock-legal-hold", "ON"),
        ("x-amz-object-lock-mode", "COMPLIANCE"),
        (
            "x-amz-object-lock-retain-until-date",
            "2099-01-01T00:00:00Z",
        ),
        ("x-amz-checksum-algorithm", "SHA256"),
        ("x-amz-request-payer", "requester"),
    ];
    let conditions = [
        (
            "x-amz-copy-source-if-modified-since",
            "Mon, 01 Jan 2001 00:00:00 GMT",
        ),
        (
            "x-amz-copy-source-if-unmodified-since",
            "Wed, 01 Jan 2098 00:00:00 GMT",
        ),
        ("x-amz-request-payer", "requester"),
    ];
    let copies = sent.of("CopyObject");
    assert_eq!(copies.len(), 1);
    expect(&copies[0], &written, "CopyObject");
    expect(&copies[0], &conditions, "CopyObject");
    let creates = sent.of("CreateMultipartUpload");
    assert_eq!(creates.len(), 1);
    expect(&creates[0], &written, "CreateMultipartUpload");
    let parts = sent.of("UploadPartCopy");
    assert_eq!(parts.len(), 2);
    for part in &parts {
        expect(part, &conditions, "UploadPartCopy");
    }
    for operation in ["HeadObject", "GetObjectTagging", "CompleteMultipartUpload"] {
        let requests = sent.of(operation);
        assert!(!requests.is_empty(), "{operation} sent");
        for request in &requests {
            expect(request, &[("x-amz-request-payer", "requester")], operation);
        }
    }
    // moto keeps what it can of the multipart copy: the key, the ACL owner, the lock it ignores.
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&locked)
        .key("copied/big.bin")
        .send()
        .await
        .expect("multipart copy exists");
    assert_eq!(head.ssekms_key_id(), Some(KMS_KEY));
    assert_eq!(head.content_length(), Some(FIVE_MIB as i64 + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_checksum_algorithm_s3_control_allows_is_computed_on_the_copy() {
    let env = TestEnv::new().await;
    env.put(&env.src, KEY, "payload").await;
    env.put(&env.src, "big.bin", vec![9u8; FIVE_MIB + 1]).await;
    let mut settings = env.app.copy.clone();
    settings.multipart_threshold = FIVE_MIB as u64;
    settings.part_size = FIVE_MIB as u64;
    let stop = AtomicBool::new(false);
    for algorithm in ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"] {
        let mut document = env.request_json("unused", &["Bucket", "Key"]);
        document["Operation"]["S3PutObjectCopy"]["ChecksumAlgorithm"] = json!(algorithm);
        document["Operation"]["S3PutObjectCopy"]["TargetKeyPrefix"] = json!(algorithm);
        let spec = batchops_core::CreateJobRequest::from_json(&document.to_string())
            .unwrap()
            .validate()
            .unwrap();
        let sources = env.app.data.stack();
        let copier = Copier {
            s3: &env.app.s3,
            sources: &sources,
            spec: spec.operation.copy().unwrap(),
            settings: &settings,
            stop: &stop,
            part_deadline: None,
            uploads: None,
        };
        for key in [KEY, "big.bin"] {
            let object = ObjectRef {
                bucket: env.src.clone(),
                key: key.to_string(),
                version_id: None,
            };
            let target = format!("{algorithm}/{key}");
            match copier
                .copy(&object, None, &target, SourceSize::Unknown)
                .await
            {
                TaskResult::Done(outcome) => assert_eq!(
                    outcome.status,
                    TaskStatus::Succeeded,
                    "{algorithm} {key}: {outcome:?}"
                ),
                other => panic!("{algorithm} {key}: {other:?}"),
            }
            let head = env
                .clients
                .s3
                .head_object()
                .bucket(&env.dst)
                .key(&target)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .expect("copy exists");
            let value = match algorithm {
                "CRC32" => head.checksum_crc32(),
                "CRC32C" => head.checksum_crc32_c(),
                "SHA1" => head.checksum_sha1(),
                "SHA256" => head.checksum_sha256(),
                _ => head.checksum_crc64_nvme(),
            };
            assert!(
                value.is_some_and(|v| !v.is_empty()),
                "{algorithm} {key}: {head:?}"
            );
        }
    }
}
