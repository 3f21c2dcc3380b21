//! The operations other than the copy, end to end on moto: a job per operation over an awkward key
//! pinned to an older version (where moto keeps the operation's state per version), a failing task,
//! and the report rows S3's columns carry.

use crate::harness::TestEnv;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, ObjectLockLegalHold,
    ObjectLockLegalHoldStatus, StorageClass,
};
use batchops_core::encoding::encode_key;
use batchops_core::report::ReportRow;
use serde_json::{json, Value};

/// Space, `+`, a literal `%`, unicode: what URL-encoding in manifests and reports gets wrong.
const AWKWARD: &str = "ops/sp ace+plus%25 ünï✓.txt";

fn versioned_line(bucket: &str, key: &str, version: &str) -> String {
    format!("{bucket},{},{version}", encode_key(key))
}

/// Creates and runs a job with `operation` (the JSON of `Operation`) over `lines`.
async fn run_job(env: &TestEnv, name: &str, lines: &[String], operation: Value) -> String {
    let fields: &[&str] = if lines.iter().all(|l| l.matches(',').count() >= 2) {
        &["Bucket", "Key", "VersionId"]
    } else {
        &["Bucket", "Key"]
    };
    let manifest = env.manifest(name, lines).await;
    let mut document = env.request_json(&manifest, fields);
    document["Operation"] = operation;
    let job = env.create(document).await;
    env.run_to_complete(&job).await;
    job
}

/// The report's rows by (key as written, version).
async fn report_rows(env: &TestEnv, job: &str) -> Vec<ReportRow> {
    let mut rows = env.audit(job).await.rows;
    rows.sort_by(|a, b| (&a.key_encoded, &a.version_id).cmp(&(&b.key_encoded, &b.version_id)));
    rows
}

fn row<'r>(rows: &'r [ReportRow], key: &str, version: &str) -> &'r ReportRow {
    rows.iter()
        .find(|r| r.key_encoded == encode_key(key) && r.version_id == version)
        .unwrap_or_else(|| panic!("no row for {key:?} {version:?} in {rows:?}"))
}

fn status(row: &ReportRow) -> (&str, &str, &str) {
    (&row.task_status, &row.http_status, &row.error_code)
}

async fn tags(env: &TestEnv, bucket: &str, key: &str, version: &str) -> Vec<(String, String)> {
    let out = env
        .clients
        .s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .unwrap();
    out.tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// A bucket with Object Lock enabled (and so versioning).
async fn lock_bucket(env: &TestEnv) -> String {
    let bucket = format!("lock-{}", &env.src[4..]);
    env.clients
        .s3
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    bucket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tagging_jobs_replace_and_remove_the_tags_of_pinned_versions() {
    let env = TestEnv::new().await;
    let old = env.put(&env.src, AWKWARD, "old").await;
    let current = env.put(&env.src, AWKWARD, "current").await;
    let lines = [
        versioned_line(&env.src, AWKWARD, &old),
        versioned_line(&env.src, "ops/missing.txt", "3HL4kqtJlcpXroDTDmJ"),
    ];
    let job = run_job(
        &env,
        "tag",
        &lines,
        json!({"S3PutObjectTagging": {"TagSet": [{"Key": "team", "Value": "data"}, {"Key": "k ü+", "Value": "v=1+2 @:/"}]}}),
    )
    .await;
    let rows = report_rows(&env, &job).await;
    assert_eq!(
        status(row(&rows, AWKWARD, &old)),
        ("succeeded", "200", ""),
        "{rows:?}"
    );
    assert_eq!(row(&rows, AWKWARD, &old).message, "Successful");
    let missing = row(&rows, "ops/missing.txt", "3HL4kqtJlcpXroDTDmJ");
    assert_eq!(missing.task_status, "failed");
    assert!(
        missing.error_code == "NoSuchKey" || missing.error_code == "NoSuchVersion",
        "{missing:?}"
    );
    assert_eq!(
        tags(&env, &env.src, AWKWARD, &old).await,
        vec![
            ("team".to_string(), "data".to_string()),
            ("k ü+".to_string(), "v=1+2 @:/".to_string())
        ]
    );
    assert!(
        tags(&env, &env.src, AWKWARD, &current).await.is_empty(),
        "only the pinned version is tagged"
    );

    // The current version gets a tag of its own; removing the old version's tags leaves it.
    env.clients
        .s3
        .put_object_tagging()
        .bucket(&env.src)
        .key(AWKWARD)
        .version_id(&current)
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .tag_set(
                    aws_sdk_s3::types::Tag::builder()
                        .key("keep")
                        .value("me")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let lines = [
        versioned_line(&env.src, AWKWARD, &old),
        // moto answers DeleteObjectTagging on a missing key with a 500; a missing bucket it
        // names as S3 does.
        versioned_line("no-such-bucket-batchops", "k", &old),
    ];
    let job = run_job(&env, "untag", &lines, json!({"S3DeleteObjectTagging": {}})).await;
    let rows = report_rows(&env, &job).await;
    assert_eq!(status(row(&rows, AWKWARD, &old)), ("succeeded", "200", ""));
    assert_eq!(
        status(row(&rows, "k", &old)),
        ("failed", "404", "NoSuchBucket")
    );
    assert!(tags(&env, &env.src, AWKWARD, &old).await.is_empty());
    assert_eq!(
        tags(&env, &env.src, AWKWARD, &current).await,
        vec![("keep".to_string(), "me".to_string())]
    );
}

/// The current ACL of AWKWARD in the source bucket: (grantee ID or group URI, permission).
async fn acl_grants(env: &TestEnv) -> Vec<(String, String)> {
    let acl = env
        .clients
        .s3
        .get_object_acl()
        .bucket(&env.src)
        .key(AWKWARD)
        .send()
        .await
        .unwrap();
    acl.grants()
        .iter()
        .map(|g| {
            let who = g.grantee().unwrap();
            (
                who.id().or(who.uri()).unwrap_or_default().to_string(),
                g.permission().unwrap().as_str().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acl_jobs_apply_grants_and_canned_acls() {
    // moto keeps ACLs on an object's current version only: the tasks pin the current version.
    let env = TestEnv::new().await;
    let version = env.put(&env.src, AWKWARD, "acl").await;
    let owner = env
        .clients
        .s3
        .get_object_acl()
        .bucket(&env.src)
        .key(AWKWARD)
        .send()
        .await
        .unwrap()
        .owner()
        .and_then(|o| o.id())
        .unwrap()
        .to_string();
    let all_users = "http://acs.amazonaws.com/groups/global/AllUsers";
    let grantee = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be";
    let grants = |owner: &str| {
        json!({"S3PutObjectAcl": {"AccessControlPolicy": {"AccessControlList": {
        "Owner": {"ID": owner},
        "Grants": [
            {"Grantee": {"TypeIdentifier": "id", "Identifier": grantee}, "Permission": "READ"},
            {"Grantee": {"TypeIdentifier": "uri", "Identifier": all_users}, "Permission": "READ_ACP"}
        ]}}}})
    };
    let lines = [
        versioned_line(&env.src, AWKWARD, &version),
        versioned_line("no-such-bucket-batchops", "k", &version),
    ];
    let job = run_job(&env, "acl", &lines, grants(&owner)).await;
    let rows = report_rows(&env, &job).await;
    assert_eq!(
        status(row(&rows, AWKWARD, &version)),
        ("succeeded", "200", "")
    );
    assert_eq!(
        status(row(&rows, "k", &version)),
        ("failed", "404", "NoSuchBucket")
    );
    let granted = acl_grants(&env).await;
    assert!(
        granted.contains(&(grantee.to_string(), "READ".to_string())),
        "{granted:?}"
    );
    assert!(
        granted.contains(&(all_users.to_string(), "READ_ACP".to_string())),
        "{granted:?}"
    );

    // An ACL for another owner's object is refused per task, not applied.
    let lines = [versioned_line(&env.src, AWKWARD, &version)];
    let job = run_job(&env, "acl-owner", &lines, grants("someone-else")).await;
    let rows = report_rows(&env, &job).await;
    let refused = row(&rows, AWKWARD, &version);
    assert_eq!(status(refused), ("failed", "400", "InvalidArgument"));
    assert!(refused.message.contains("someone-else"), "{refused:?}");

    let job = run_job(
        &env,
        "acl-canned",
        &lines,
        json!({"S3PutObjectAcl": {"AccessControlPolicy": {"CannedAccessControlList": "public-read"}}}),
    )
    .await;
    assert_eq!(
        status(row(&report_rows(&env, &job).await, AWKWARD, &version)),
        ("succeeded", "200", "")
    );
    let granted = acl_grants(&env).await;
    assert!(
        granted.contains(&(all_users.to_string(), "READ".to_string())),
        "{granted:?}"
    );
    assert!(
        !granted.iter().any(|(who, _)| who == grantee),
        "the canned ACL replaced the grants: {granted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_jobs_initiate_restores_of_archived_objects() {
    // moto restores the current version whatever version is asked and finishes at once: a second
    // restore answers 200 (already restored), never 409 RestoreAlreadyInProgress.
    let env = TestEnv::new().await;
    let put_archived = |key: &'static str| {
        let env = &env;
        async move {
            env.clients
                .s3
                .put_object()
                .bucket(&env.src)
                .key(key)
                .storage_class(StorageClass::Glacier)
                .body(ByteStream::from_static(b"cold"))
                .send()
                .await
                .unwrap()
                .version_id()
                .unwrap()
                .to_string()
        }
    };
    let archived = put_archived(AWKWARD).await;
    let restored = put_archived("ops/restored already.txt").await;
    env.clients
        .s3
        .restore_object()
        .bucket(&env.src)
        .key("ops/restored already.txt")
        .restore_request(aws_sdk_s3::types::RestoreRequest::builder().days(1).build())
        .send()
        .await
        .unwrap();
    let standard = env.put(&env.src, "ops/standard.txt", "warm").await;
    let lines = [
        versioned_line(&env.src, AWKWARD, &archived),
        versioned_line(&env.src, "ops/restored already.txt", &restored),
        versioned_line(&env.src, "ops/standard.txt", &standard),
        versioned_line(&env.src, "ops/missing.txt", &standard),
    ];
    let job = run_job(
        &env,
        "restore",
        &lines,
        json!({"S3InitiateRestoreObject": {"ExpirationInDays": 3, "GlacierJobTier": "BULK"}}),
    )
    .await;
    let rows = report_rows(&env, &job).await;
    assert_eq!(
        status(row(&rows, AWKWARD, &archived)),
        ("succeeded", "200", "")
    );
    assert_eq!(
        status(row(&rows, "ops/restored already.txt", &restored)),
        ("succeeded", "200", "")
    );
    assert_eq!(
        status(row(&rows, "ops/standard.txt", &standard)),
        ("failed", "403", "InvalidObjectState")
    );
    assert_eq!(
        status(row(&rows, "ops/missing.txt", &standard)),
        ("failed", "404", "NoSuchKey")
    );
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&env.src)
        .key(AWKWARD)
        .version_id(&archived)
        .send()
        .await
        .unwrap();
    assert!(
        head.restore().is_some(),
        "the archived object has a restore: {head:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_lock_jobs_hold_and_retain_pinned_versions() {
    // moto answers GetObjectRetention with a 500: the locks are read from HEAD.
    let env = TestEnv::new().await;
    let bucket = lock_bucket(&env).await;
    let old = env.put(&bucket, AWKWARD, "old").await;
    let current = env.put(&bucket, AWKWARD, "current").await;
    // A bucket without Object Lock refuses both: the failing task.
    let unlocked = env.put(&env.src, "ops/no lock.txt", "x").await;
    let lines = [
        versioned_line(&bucket, AWKWARD, &old),
        versioned_line(&env.src, "ops/no lock.txt", &unlocked),
    ];
    let head = |version: String| {
        let env = &env;
        let bucket = bucket.clone();
        async move {
            env.clients
                .s3
                .head_object()
                .bucket(&bucket)
                .key(AWKWARD)
                .version_id(version)
                .send()
                .await
                .unwrap()
        }
    };

    let job = run_job(
        &env,
        "hold",
        &lines,
        json!({"S3PutObjectLegalHold": {"LegalHold": {"Status": "ON"}}}),
    )
    .await;
    let rows = report_rows(&env, &job).await;
    assert_eq!(status(row(&rows, AWKWARD, &old)), ("succeeded", "200", ""));
    let refused = row(&rows, "ops/no lock.txt", &unlocked);
    assert_eq!(refused.task_status, "failed");
    assert_eq!(refused.http_status, "400", "{refused:?}");
    assert_eq!(
        head(old.clone())
            .await
            .object_lock_legal_hold_status()
            .map(|s| s.as_str()),
        Some("ON")
    );
    assert_eq!(
        head(current.clone()).await.object_lock_legal_hold_status(),
        None
    );

    let job = run_job(
        &env,
        "retain",
        &lines,
        json!({"S3PutObjectRetention": {"BypassGovernanceRetention": true,
               "Retention": {"Mode": "GOVERNANCE", "RetainUntilDate": "2099-01-02T03:04:05Z"}}}),
    )
    .await;
    let rows = report_rows(&env, &job).await;
    assert_eq!(status(row(&rows, AWKWARD, &old)), ("succeeded", "200", ""));
    assert_eq!(
        row(&rows, "ops/no lock.txt", &unlocked).task_status,
        "failed"
    );
    let locked = head(old.clone()).await;
    assert_eq!(
        locked.object_lock_mode().map(|m| m.as_str()),
        Some("GOVERNANCE")
    );
    assert_eq!(
        locked.object_lock_retain_until_date().map(|d| d.secs()),
        Some(4_071_006_245),
        "2099-01-02T03:04:05Z"
    );
    assert_eq!(head(current).await.object_lock_mode(), None);
}

/// The JSON a Compute checksum row carries in ResultMessage.
fn checksum_message(row: &ReportRow) -> Value {
    serde_json::from_str(&row.message).unwrap_or_else(|e| panic!("{row:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checksum_jobs_stream_objects_and_report_their_checksums() {
    let env = TestEnv::new().await;
    let old = env.put(&env.src, AWKWARD, "the old body").await;
    env.put(&env.src, AWKWARD, "the current body").await;
    // MD5 of one-piece objects is their ETag, which moto computes itself (Python's hashlib).
    let etag = env
        .clients
        .s3
        .head_object()
        .bucket(&env.src)
        .key(AWKWARD)
        .version_id(&old)
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .trim_matches('"')
        .to_string();
    let lines = [
        versioned_line(&env.src, AWKWARD, &old),
        versioned_line(&env.src, "ops/missing.txt", &old),
    ];
    let job = run_job(
        &env,
        "md5",
        &lines,
        json!({"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "MD5", "ChecksumType": "FULL_OBJECT"}}),
    )
    .await;
    let rows = report_rows(&env, &job).await;
    let summed = row(&rows, AWKWARD, &old);
    assert_eq!(status(summed), ("succeeded", "200", ""));
    let message = checksum_message(summed);
    assert_eq!(message["checksum_hex"], json!(etag.to_uppercase()));
    assert_eq!(message["etag"], json!(etag));
    assert_eq!(message["checksumAlgorithm"], json!("MD5"));
    assert_eq!(message["checksumType"], json!("FULL_OBJECT"));
    assert!(
        summed.message.contains("\\u003d"),
        "= written as S3 writes it"
    );
    let missing = row(&rows, "ops/missing.txt", &old);
    assert_eq!(missing.task_status, "failed");
    assert_eq!(missing.http_status, "404");

    // A multipart object uploaded with SHA256: moto composes its checksum from the parts
    // (hashlib); the job, streaming the object once, must find the same `<value>-3`.
    let key = "ops/multi part ✓.bin";
    let part_size = 5 * 1024 * 1024;
    let body: Vec<u8> = (0..2 * part_size + 1000).map(|i| (i % 251) as u8).collect();
    let s3 = &env.clients.s3;
    let upload = s3
        .create_multipart_upload()
        .bucket(&env.src)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    for (i, chunk) in body.chunks(part_size).enumerate() {
        let number = i as i32 + 1;
        let out = s3
            .upload_part()
            .bucket(&env.src)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .set_checksum_sha256(out.checksum_sha256().map(str::to_string))
                .build(),
        );
    }
    let done = s3
        .complete_multipart_upload()
        .bucket(&env.src)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let version = done.version_id().unwrap().to_string();
    // moto qualifies a COMPOSITE checksum with its part count on GET (not on HEAD).
    let expected = s3
        .get_object()
        .bucket(&env.src)
        .key(key)
        .version_id(&version)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap()
        .checksum_sha256()
        .unwrap()
        .to_string();
    assert!(expected.ends_with("-3"), "{expected}");
    let job = run_job(
        &env,
        "composite",
        &[versioned_line(&env.src, key, &version)],
        json!({"S3ComputeObjectChecksum": {"ChecksumAlgorithm": "SHA256", "ChecksumType": "COMPOSITE"}}),
    )
    .await;
    let rows = report_rows(&env, &job).await;
    let summed = row(&rows, key, &version);
    assert_eq!(status(summed), ("succeeded", "200", ""));
    let message = checksum_message(summed);
    assert_eq!(message["checksum_base64"], json!(expected));
    assert_eq!(message["checksumType"], json!("COMPOSITE"));
}

/// UpdateJobStatus Ready with `count` typed back.
async fn confirm(
    env: &TestEnv,
    job: &str,
    count: Option<u64>,
) -> batchops_aws::Result<batchops_aws::jobs::StatusChange> {
    batchops_aws::jobs::update_job_status(
        &env.app,
        job,
        batchops_core::JobStatus::Ready,
        None,
        count,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_jobs_wait_for_the_counted_confirmation_and_stop_at_max_deletes() {
    let env = TestEnv::new().await;
    let locks = lock_bucket(&env).await;
    let old = env.put(&env.src, AWKWARD, "old").await;
    let current = env.put(&env.src, AWKWARD, "current").await;
    let held = env.put(&locks, "ops/held.txt", "held").await;
    env.clients
        .s3
        .put_object_legal_hold()
        .bucket(&locks)
        .key("ops/held.txt")
        .version_id(&held)
        .legal_hold(
            ObjectLockLegalHold::builder()
                .status(ObjectLockLegalHoldStatus::On)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let spare = env.put(&env.src, "ops/past the limit.txt", "spare").await;
    let lines = [
        versioned_line(&env.src, AWKWARD, &old),
        versioned_line(&locks, "ops/held.txt", &held),
        versioned_line(&env.src, "ops/past the limit.txt", &spare),
    ];
    let manifest = env.manifest("delete", &lines).await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key", "VersionId"]);
    document["Operation"] = json!({"Batchops": {"Delete": {"MaxDeletes": 2}}});
    // ConfirmationRequired false does not let a delete job start on its own.
    document["ConfirmationRequired"] = json!(false);
    let job = env.create(document).await;
    env.run_until_idle().await;
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Suspended");
    assert_eq!(described.progress_summary.total_number_of_tasks, 3);
    let record = env.app.store.get_job(&job).await.unwrap();
    assert!(
        record
            .warnings
            .iter()
            .any(|w| w.contains("1 of the job's 3 tasks are past its limit of 2")),
        "{:?}",
        record.warnings
    );
    for given in [None, Some(2)] {
        let err = confirm(&env, &job, given).await.unwrap_err();
        assert!(err.to_string().contains("--yes-delete 3"), "{err}");
    }
    assert_eq!(env.describe(&job).await.status, "Suspended");
    confirm(&env, &job, Some(3)).await.unwrap();
    env.run_to_complete(&job).await;
    let rows = report_rows(&env, &job).await;
    let deleted = row(&rows, AWKWARD, &old);
    assert_eq!(status(deleted), ("succeeded", "204", ""));
    assert_eq!(deleted.message, format!("Deleted version {old}"));
    assert_eq!(
        status(row(&rows, "ops/held.txt", &held)),
        ("failed", "403", "AccessDenied")
    );
    let guarded = row(&rows, "ops/past the limit.txt", &spare);
    assert_eq!(status(guarded), ("failed", "400", "MaxDeletesExceeded"));
    assert!(guarded.message.contains("MaxDeletes (2)"), "{guarded:?}");
    let versions = |key: &'static str, bucket: String| {
        let env = &env;
        async move {
            let out = env
                .clients
                .s3
                .list_object_versions()
                .bucket(bucket)
                .prefix(key)
                .send()
                .await
                .unwrap();
            let mut ids: Vec<String> = out
                .versions()
                .iter()
                .map(|v| v.version_id().unwrap().to_string())
                .collect();
            ids.extend(
                out.delete_markers()
                    .iter()
                    .map(|m| format!("marker {}", m.version_id().unwrap())),
            );
            ids
        }
    };
    assert_eq!(
        versions(AWKWARD, env.src.clone()).await,
        vec![current.clone()],
        "the old version is gone for good, the current one stays"
    );
    assert_eq!(versions("ops/held.txt", locks.clone()).await, vec![held]);
    assert_eq!(
        versions("ops/past the limit.txt", env.src.clone()).await,
        vec![spare]
    );

    // Without version IDs: a delete marker over the current version, which stays.
    let manifest = env
        .manifest("marker", &[format!("{},{}", env.src, encode_key(AWKWARD))])
        .await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["Operation"] = json!({"Batchops": {"Delete": {"MaxDeletes": "unlimited"}}});
    let job = env.create(document).await;
    env.run_until_idle().await;
    assert_eq!(env.describe(&job).await.status, "Suspended");
    confirm(&env, &job, Some(1)).await.unwrap();
    env.run_to_complete(&job).await;
    let rows = report_rows(&env, &job).await;
    let marked = row(&rows, AWKWARD, "");
    assert_eq!(status(marked), ("succeeded", "204", ""));
    assert!(marked.message.starts_with("Delete marker"), "{marked:?}");
    let after = versions(AWKWARD, env.src.clone()).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.contains(&current));
    assert!(after.iter().any(|v| v.starts_with("marker ")));
}
