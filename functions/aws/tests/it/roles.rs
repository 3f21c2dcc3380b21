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
struct Proxy {
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
    async fn start() -> Proxy {
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

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Per bucket: "<method> <access key ID> <region>" -> requests.
    async fn signers(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        stream
            .write_all(b"GET /__faults HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8(response).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        let snapshot: Value = serde_json::from_str(body).unwrap();
        serde_json::from_value(snapshot["signers"].clone()).unwrap()
    }
}

/// The access keys used for `method` requests on `bucket`, with their Regions.
fn signed(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_uses_its_role_and_each_buckets_region_for_its_data() {
    let proxy = Proxy::start().await;
    let url = proxy.url();
    let env = TestEnv::through(Some(&url), &[]).await;
    // The target bucket is in another Region.
    let eu = format!("eu-{}", &env.dst[4..]);
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
