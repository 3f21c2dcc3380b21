//! A job acts on its data with its own role (STS AssumeRole) and with one client per bucket
//! Region, proved by the signatures of the requests themselves: scripts/fault_proxy.py, between
//! batchops and moto, records each S3 request's access key ID and credential-scope Region per
//! bucket.

use crate::harness::TestEnv;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The recording proxy, stopped when dropped.
pub(crate) struct Proxy {
    child: Child,
    port: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    pub(crate) async fn start() -> Proxy {
        let upstream = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/fault_proxy.py");
        let port_file = std::env::temp_dir().join(format!("proxy-{}.port", uuid::Uuid::new_v4()));
        let mut proxy = Proxy {
            child: Command::new("python3")
                .arg(script)
                .arg("--upstream")
                .arg(&upstream)
                .arg("--port-file")
                .arg(&port_file)
                .spawn()
                .expect("python3 runs scripts/fault_proxy.py"),
            port: 0,
        };
        for _ in 0..100 {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let _ = std::fs::remove_file(&port_file);
                proxy.port = text.trim().parse().expect("port");
                return proxy;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(proxy);
        panic!("the proxy did not start");
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One control request (`GET /__faults`, `POST /__faults/config`): the proxy's counters.
    async fn control(&self, method: &str, path: &str, body: &str) -> Value {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let request = format!(
            "{method} {path} HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(" 200 "), "{path}: {head}\n{body}");
        serde_json::from_str(body).unwrap()
    }

    /// Per bucket: "<method> <access key ID> <region>" -> requests.
    pub(crate) async fn signers(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let snapshot = self.control("GET", "/__faults", "").await;
        serde_json::from_value(snapshot["signers"].clone()).unwrap()
    }

    /// Per bucket: "<method> <x-amz-expected-bucket-owner or ->" -> requests.
    async fn owners(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let snapshot = self.control("GET", "/__faults", "").await;
        serde_json::from_value(snapshot["owners"].clone()).unwrap()
    }
}

/// The access keys used for `method` requests on `bucket`, with their Regions.
pub(crate) fn signed(
    signers: &BTreeMap<String, BTreeMap<String, u64>>,
    bucket: &str,
    method: &str,
) -> Vec<(String, String)> {
    signers
        .get(bucket)
        .into_iter()
        .flat_map(|keys| keys.keys())
        .filter_map(|signer| {
            let mut parts = signer.split(' ');
            (parts.next() == Some(method)).then(|| {
                (
                    parts.next().unwrap_or_default().to_string(),
                    parts.next().unwrap_or_default().to_string(),
                )
            })
        })
        .collect()
}

/// A new bucket in eu-west-1, named after `like` (`eu-` and its suffix).
pub(crate) async fn eu_bucket(env: &TestEnv, like: &str) -> String {
    let eu = format!("eu-{}", &like[4..]);
    env.clients
        .s3
        .create_bucket()
        .bucket(&eu)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .expect("bucket in eu-west-1");
    eu
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_uses_its_role_and_each_buckets_region_for_its_data() {
    let proxy = Proxy::start().await;
    let url = proxy.url();
    let env = TestEnv::through(Some(&url), &[]).await;
    // The target bucket is in another Region.
    let eu = eu_bucket(&env, &env.dst).await;
    env.put(&env.src, "a b", "1").await;
    env.put(&env.src, "c", "2").await;
    let manifest = env
        .manifest(
            "role",
            &[format!("{},a+b", env.src), format!("{},c", env.src)],
        )
        .await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["Operation"]["S3PutObjectCopy"]["TargetResource"] =
        json!(format!("arn:aws:s3:::{eu}"));
    document["RoleArn"] = json!("arn:aws:iam::000000000000:role/batchops-job");
    let job = env.create(document).await;
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 2);
    assert_eq!(env.get(&eu, "copied/a b").await, Some(b"1".to_vec()));

    let signers = proxy.signers().await;
    let stack_key = "testing";
    // The copies (PUT on the target) are signed with the job's assumed credentials, in the
    // target's Region, and by nothing else.
    let copies = signed(&signers, &eu, "PUT");
    let (job_keys, regions): (Vec<_>, Vec<_>) = copies
        .iter()
        .filter(|(key, _)| key != stack_key)
        .cloned()
        .unzip();
    assert!(
        !job_keys.is_empty(),
        "no copy signed by the job's role: {signers:?}"
    );
    assert!(
        job_keys.iter().all(|k| k.starts_with("ASIA")),
        "STS session keys: {job_keys:?}"
    );
    assert!(regions.iter().all(|r| r == "eu-west-1"), "{copies:?}");
    // (the test's own CreateBucket is the only PUT with the stack's key.)
    assert_eq!(
        copies.iter().filter(|(k, _)| k == stack_key).count(),
        1,
        "{copies:?}"
    );
    // The manifest read (GET on the source bucket) and the report (PUT on the report bucket)
    // with the job's role too; the report bucket is in the stack's Region.
    let manifest_reads = signed(&signers, &env.src, "GET");
    assert!(
        manifest_reads
            .iter()
            .any(|(k, r)| k.starts_with("ASIA") && r == "us-east-1"),
        "{manifest_reads:?}"
    );
    let reports = signed(&signers, &env.reports, "PUT");
    assert!(
        reports.iter().any(|(k, _)| k.starts_with("ASIA")),
        "{reports:?}"
    );
    // The stack's own bucket keeps the stack's credentials.
    let control = &env.app.config.control_bucket;
    let control_keys: Vec<String> = ["GET", "PUT"]
        .iter()
        .flat_map(|m| signed(&signers, control, m))
        .map(|(k, _)| k)
        .collect();
    assert!(!control_keys.is_empty());
    assert!(
        control_keys.iter().all(|k| k == stack_key),
        "control bucket: {control_keys:?}"
    );
}

/// Requests per key ("<method> <owner>", "<method> <access key> <region>") on `bucket`
/// between two snapshots of the proxy's counters.
pub(crate) fn counts_since(
    before: &BTreeMap<String, BTreeMap<String, u64>>,
    after: &BTreeMap<String, BTreeMap<String, u64>>,
    bucket: &str,
) -> BTreeMap<String, u64> {
    let earlier = before.get(bucket).cloned().unwrap_or_default();
    after
        .get(bucket)
        .into_iter()
        .flatten()
        .map(|(key, n)| (key.clone(), n - earlier.get(key).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A generated-manifest job whose three `ExpectedBucketOwner` fields name the source, the
/// manifest output and the report bucket's owners.
fn owned_job(env: &TestEnv, source_owner: &str, reports_owner: &str) -> Value {
    let mut document = env.request_json("unused", &["Bucket", "Key"]);
    document.as_object_mut().unwrap().remove("Manifest");
    document["Report"]["ExpectedBucketOwner"] = json!(reports_owner);
    document["ManifestGenerator"] = json!({"S3JobManifestGenerator": {
        "ExpectedBucketOwner": source_owner,
        "SourceBucket": format!("arn:aws:s3:::{}", env.src),
        "EnableManifestOutput": true,
        "ManifestOutputLocation": {"Bucket": format!("arn:aws:s3:::{}", env.reports), "ManifestPrefix": "generated",
            "ExpectedManifestBucketOwner": reports_owner, "ManifestFormat": "S3InventoryReport_CSV_20211130"},
        "Filter": {}}});
    document
}

/// moto 5.2.5 ignores `x-amz-expected-bucket-owner`, so the recording proxy stands in for S3's
/// check: it records the header of every request per bucket and answers AccessDenied, as S3
/// does, when it names another owner than the one configured for the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expected_bucket_owners_go_with_every_request_on_their_bucket() {
    let proxy = Proxy::start().await;
    let url = proxy.url();
    let env = TestEnv::through(Some(&url), &[]).await;
    let (source_owner, reports_owner) = ("111122223333", "444455556666");
    let owners = json!({"bucket_owners": {env.src.clone(): source_owner, env.reports.clone(): reports_owner}});
    proxy
        .control("POST", "/__faults/config", &owners.to_string())
        .await;
    env.put(&env.src, "a b", "1").await;
    env.put(&env.src, "c", "2").await;
    let before = proxy.owners().await;
    let job = env
        .create(owned_job(&env, source_owner, reports_owner))
        .await;
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 2);
    assert_eq!(env.get(&env.dst, "copied/a b").await, Some(b"1".to_vec()));
    // `job report` reads the report with the job's clients too (the owner goes with its GETs).
    let audit = batchops_aws::audit::audit_report(&env.app, &job)
        .await
        .unwrap();
    assert_eq!(audit.succeeded_rows, 2);
    let after = proxy.owners().await;

    // Every request the job sent on the source (listing, HEADs) and on the report bucket
    // (generated manifest, report parts, manifest.json) named the expected owner.
    for (bucket, owner, methods) in [
        (&env.src, source_owner, &["HEAD", "GET"][..]),
        (&env.reports, reports_owner, &["HEAD", "PUT", "GET"][..]),
    ] {
        let seen = counts_since(&before, &after, bucket);
        assert!(
            seen.keys().all(|k| k.ends_with(&format!(" {owner}"))),
            "{bucket}: {seen:?}"
        );
        for method in methods {
            assert!(
                seen.contains_key(&format!("{method} {owner}")),
                "{bucket}: no {method}: {seen:?}"
            );
        }
    }
    // The target bucket has no owner in the request: its requests carry none.
    let target = counts_since(&before, &after, &env.dst);
    assert!(
        !target.is_empty() && target.keys().all(|k| k.ends_with(" -")),
        "{target:?}"
    );

    // A bucket owned by another account: CreateJob is refused naming the field and the bucket.
    let err = batchops_aws::jobs::create_job(
        &env.app,
        batchops_core::CreateJobRequest::from_json(
            &owned_job(&env, source_owner, "999988887777").to_string(),
        )
        .unwrap(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("Report.ExpectedBucketOwner")
            && err.contains("AccessDenied")
            && err.contains(&env.reports)
            && err.contains("999988887777"),
        "{err}"
    );
}

/// One chunk whose tasks name buckets in two Regions: each task's requests go to its own
/// bucket's Region (they used the first task's), for an object operation and for a copy's
/// source HEAD.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_task_uses_its_own_buckets_region() {
    let proxy = Proxy::start().await;
    let url = proxy.url();
    let env = TestEnv::through(Some(&url), &[]).await;
    let eu = eu_bucket(&env, &env.src).await;
    for bucket in [&env.src, &eu] {
        env.put(bucket, "a", "1").await;
        env.put(bucket, "b", "2").await;
    }
    // The first task is in us-east-1; the chunk mixes both Regions.
    let lines = [
        format!("{},a", env.src),
        format!("{eu},a"),
        format!("{},b", env.src),
        format!("{eu},b"),
    ];
    let manifest = env.manifest("regions", &lines).await;
    let mut tagging = env.request_json(&manifest, &["Bucket", "Key"]);
    tagging["Operation"] = json!({"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}});
    let job = env.create(tagging).await;
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 4);
    let copy = env.request_json(&manifest, &["Bucket", "Key"]);
    let job = env.create(copy).await;
    let described = env.run_to_complete(&job).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 4);

    let signers = proxy.signers().await;
    let by_job = |bucket: &str, method: &str| -> Vec<(String, String)> {
        signed(&signers, bucket, method)
            .into_iter()
            .filter(|(key, _)| key != "testing")
            .collect()
    };
    for (bucket, region) in [(&eu, "eu-west-1"), (&env.src, "us-east-1")] {
        // The tagging PUTs (signed by the job's role; the test's own use the stack's key).
        let puts = by_job(bucket, "PUT");
        assert!(!puts.is_empty(), "{bucket}: {signers:?}");
        assert!(
            puts.iter().all(|(_, r)| r == region),
            "{bucket} PUT outside {region}: {puts:?}"
        );
    }
    // The copies need no source HEAD (CopyObject first): each CopyObject goes to the destination,
    // signed in the destination's Region, whichever Region its source is in.
    let copies = by_job(&env.dst, "PUT");
    assert!(!copies.is_empty(), "{signers:?}");
    assert!(copies.iter().all(|(_, r)| r == "us-east-1"), "{copies:?}");
}

/// Adds what was counted on each bucket between two snapshots to `into`.
fn add_since(
    into: &mut BTreeMap<String, BTreeMap<String, u64>>,
    before: &BTreeMap<String, BTreeMap<String, u64>>,
    after: &BTreeMap<String, BTreeMap<String, u64>>,
) {
    for bucket in after.keys() {
        for (key, n) in counts_since(before, after, bucket) {
            *into
                .entry(bucket.clone())
                .or_default()
                .entry(key)
                .or_default() += n;
        }
    }
}

/// A backup policy's `roleArn` signs every request a run, its retention, a restore and a verify
/// send on the source and the backup bucket (listings, versioning checks, copies, catalogs,
/// reports, version deletes); the control bucket (journals, chunk files) keeps the stack's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_policy_role_signs_every_request_on_its_buckets() {
    use batchops_aws::backup;
    let proxy = Proxy::start().await;
    let url = proxy.url();
    let env = TestEnv::through(Some(&url), &[]).await;
    let mut policy = crate::backups::policy(&env, "roled");
    policy.role_arn = Some("arn:aws:iam::000000000000:role/batchops-backup".into());
    // The second run expires the first snapshot: retention deletes its replaced copy.
    policy.retention.keep_last = Some(1);
    backup::put_policy(&env.app, policy).await.unwrap();
    env.put(&env.src, "data/a b", "1").await;
    env.put(&env.src, "data/c", "2").await;

    // Only what batchops sends is counted: the test's own requests fall between windows.
    let mut sent = BTreeMap::new();
    let before = proxy.signers().await;
    let (_, described) = crate::backups::completed_run(&env, "roled").await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 2);
    add_since(&mut sent, &before, &proxy.signers().await);
    env.put(&env.src, "data/a b", "3").await;
    let before = proxy.signers().await;
    let (_, described) = crate::backups::completed_run(&env, "roled").await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 1);
    let restore = backup::start_restore(
        &env.app,
        "roled",
        &backup::RestoreRequest {
            to: Some((env.src.clone(), "restored/".into())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let described = env.run_to_complete(&restore.job_id).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 2);
    let verified = batchops_aws::verify::verify_snapshot(&env.app, "roled", None)
        .await
        .unwrap();
    assert!(verified.passed(), "{verified:?}");
    add_since(&mut sent, &before, &proxy.signers().await);
    assert_eq!(
        env.get(&env.src, "restored/data/a b").await,
        Some(b"3".to_vec())
    );
    let snapshots = backup::list_snapshots(&env.app, "roled").await.unwrap();
    assert_eq!(snapshots.len(), 1, "retention ran");

    let assumed = |key: &str| key.split(' ').nth(1).is_some_and(|k| k.starts_with("ASIA"));
    for (bucket, methods) in [
        // Listing, versioning checks, copy sources (GET); restored copies (PUT).
        (&env.src, &["GET", "PUT"][..]),
        // Copies, catalogs and reports (PUT), catalog reads (GET), the expired catalog
        // (DELETE) and its unreferenced copy (POST ?delete).
        (&env.dst, &["GET", "PUT", "DELETE", "POST"][..]),
    ] {
        let seen = sent.get(bucket.as_str()).cloned().unwrap_or_default();
        assert!(
            seen.keys().all(|k| assumed(k)),
            "{bucket}: a request not signed by the policy's role: {seen:?}"
        );
        for method in methods {
            assert!(
                seen.keys().any(|k| k.starts_with(&format!("{method} "))),
                "{bucket}: no {method}: {seen:?}"
            );
        }
    }
    let control = &env.app.config.control_bucket;
    let stack = sent.get(control.as_str()).cloned().unwrap_or_default();
    assert!(
        !stack.is_empty() && stack.keys().all(|k| k.split(' ').nth(1) == Some("testing")),
        "control bucket: {stack:?}"
    );
}

/// A role STS refuses fails its job at planning, naming the role and STS's error code, once
/// (no task runs, nothing is retried); a job with another role runs on. The same for a backup
/// run of a policy whose `roleArn` is refused. moto's STS accepts every role: the proxy refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_role_fails_its_job_at_planning_and_others_run_on() {
    use batchops_aws::backup;
    let proxy = Proxy::start().await;
    let url = proxy.url();
    let env = TestEnv::through(Some(&url), &[]).await;
    let refused = "arn:aws:iam::000000000000:role/batchops-job-refused";
    env.put(&env.src, "a", "1").await;
    let manifest = env.manifest("refused", &[format!("{},a", env.src)]).await;
    let mut document = env.request_json(&manifest, &["Bucket", "Key"]);
    document["RoleArn"] = json!(refused);
    let failing = env.create(document.clone()).await;
    document["RoleArn"] = json!("arn:aws:iam::000000000000:role/batchops-job");
    document["ClientRequestToken"] = json!("another");
    let running = env.create(document.clone()).await;
    // Refused from now on: the jobs were created while it was accepted.
    let refuse = json!({"refuse_roles": [refused]});
    proxy
        .control("POST", "/__faults/config", &refuse.to_string())
        .await;
    // CreateJob names the role, not the manifest it could not read with it.
    document["RoleArn"] = json!(refused);
    document["ClientRequestToken"] = json!("a third");
    let err = batchops_aws::jobs::create_job(
        &env.app,
        batchops_core::CreateJobRequest::from_json(&document.to_string()).unwrap(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("RoleArn") && err.contains(refused) && err.contains("AccessDenied"),
        "{err}"
    );
    let mut policy = crate::backups::policy(&env, "refused");
    policy.role_arn = Some(refused.to_string());
    backup::put_policy(&env.app, policy).await.unwrap();
    let (run, _) = crate::backups::run(&env, "refused").await;
    env.run_until_idle().await;

    let described = env.run_to_complete(&running).await;
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 1);
    for job in [&failing, &run] {
        let described = env.describe(job).await;
        assert_eq!(described.status, "Failed", "{described:?}");
        assert_eq!(described.progress_summary.total_number_of_tasks, 0);
        let reasons = &described.failure_reasons;
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert_eq!(reasons[0].failure_code, "AccessDenied", "{reasons:?}");
        assert!(
            reasons[0].failure_reason.contains(refused)
                && reasons[0].failure_reason.contains("AccessDenied")
                && reasons[0].failure_reason.starts_with("RoleArn"),
            "{reasons:?}"
        );
    }
    // One refusal per job (and the CreateJob): at planning, not once per task or retry.
    let snapshot = proxy.control("GET", "/__faults", "").await;
    assert_eq!(snapshot["faults"]["sts_refused_403"], 3, "{snapshot}");
}
