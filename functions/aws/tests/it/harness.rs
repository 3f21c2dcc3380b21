//! Test harness: every test gets its own table, queues and buckets (random suffix) on the one
//! moto server that scripts/test.sh started, so tests run in parallel without seeing each other.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use batchops_aws::audit::{audit_report, ReportAudit};
use batchops_aws::runtime::{run, RunOptions};
use batchops_aws::{setup, App, Clients, Config};
use batchops_core::describe::JobDescriptor;
use batchops_core::CreateJobRequest;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct TestEnv {
    pub app: Arc<App>,
    pub clients: Clients,
    pub src: String,
    pub dst: String,
    pub reports: String,
}

fn require_endpoint() {
    if std::env::var("AWS_ENDPOINT_URL")
        .map(|v| v.is_empty())
        .unwrap_or(true)
    {
        panic!(
            "AWS_ENDPOINT_URL is not set: run the tests through scripts/test.sh, which starts moto"
        );
    }
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with_vars(&[]).await
    }

    /// `vars` override batchops configuration (BATCHOPS_CHUNK_SIZE, thresholds, ...).
    pub async fn with_vars(vars: &[(&str, &str)]) -> Self {
        Self::through(None, vars).await
    }

    /// [`TestEnv::with_vars`] with every AWS call sent to `endpoint` (a recording proxy in
    /// front of moto).
    pub async fn through(endpoint: Option<&str>, vars: &[(&str, &str)]) -> Self {
        require_endpoint();
        // RUST_LOG=batchops_aws=debug shows what the services do during a test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
        let mut map: HashMap<String, String> = HashMap::from([
            ("BATCHOPS_TABLE".into(), format!("t-{suffix}")),
            ("BATCHOPS_WORK_QUEUE".into(), format!("w-{suffix}")),
            ("BATCHOPS_PLAN_QUEUE".into(), format!("p-{suffix}")),
            ("BATCHOPS_FINALIZE_QUEUE".into(), format!("f-{suffix}")),
            ("BATCHOPS_EVENTS_QUEUE".into(), format!("e-{suffix}")),
            ("BATCHOPS_EVENT_BUS".into(), format!("bus-{suffix}")),
            ("BATCHOPS_CONTROL_BUCKET".into(), format!("ctl-{suffix}")),
            ("BATCHOPS_STATUS_CHECK_SECONDS".into(), "0.1".into()),
            ("BATCHOPS_RETRY_BASE_MS".into(), "10".into()),
            ("BATCHOPS_LOCAL_CHUNK_DEADLINE_SECONDS".into(), "120".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]);
        for (k, v) in vars {
            map.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_vars(&map).expect("test config");
        let clients = Clients::load_with_endpoint(&config, endpoint).await;
        setup::init(&clients, &config).await.expect("local init");
        let app = App::new(config, clients.clone()).await.expect("app");
        let env = TestEnv {
            app: Arc::new(app),
            clients,
            src: format!("src-{suffix}"),
            dst: format!("dst-{suffix}"),
            reports: format!("rep-{suffix}"),
        };
        for bucket in [&env.src, &env.dst, &env.reports] {
            env.clients
                .s3
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .expect("create bucket");
        }
        for bucket in [&env.src, &env.dst] {
            env.set_versioning(bucket).await;
        }
        env
    }

    /// This environment with LambdaInvoke jobs invoking through `lambda` (an
    /// [`InvokeEndpoint`]'s client).
    pub fn with_lambda(mut self, lambda: aws_sdk_lambda::Client) -> Self {
        let mut app = (*self.app).clone();
        app.lambda = lambda;
        self.app = Arc::new(app);
        self
    }

    pub async fn set_versioning(&self, bucket: &str) {
        self.clients
            .s3
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("versioning");
    }

    /// Writes an object and returns its version id.
    pub async fn put(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) -> String {
        let out = self
            .clients
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.into()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e:?}"));
        out.version_id().unwrap_or("null").to_string()
    }

    /// Writes many objects, 16 at a time.
    pub async fn put_many(&self, bucket: &str, objects: Vec<(String, Vec<u8>)>) {
        use futures::StreamExt;
        futures::stream::iter(objects)
            .for_each_concurrent(16, |(key, body)| async move {
                self.put(bucket, &key, body).await;
            })
            .await;
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let out = self
            .clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(
            out.body
                .collect()
                .await
                .expect("read body")
                .into_bytes()
                .to_vec(),
        )
    }

    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for object in page.expect("list").contents() {
                keys.push(object.key().unwrap_or_default().to_string());
            }
        }
        keys.sort();
        keys
    }

    /// Multipart uploads left open in the destination bucket.
    pub async fn open_uploads(&self) -> usize {
        self.clients
            .s3
            .list_multipart_uploads()
            .bucket(&self.dst)
            .send()
            .await
            .expect("list multipart uploads")
            .uploads()
            .len()
    }

    /// Uploads a manifest (lines joined with `\n`) to the source bucket; returns its key.
    pub async fn manifest(&self, name: &str, lines: &[String]) -> String {
        let key = format!("manifests/{name}.csv");
        let mut body = lines.join("\n");
        body.push('\n');
        self.put(&self.src, &key, body).await;
        key
    }

    /// A CreateJob document copying to `dst/copied/` with an AllTasks report, and a token of its
    /// own (S3 Control requires one), so two documents create two jobs.
    pub fn request_json(&self, manifest_key: &str, fields: &[&str]) -> Value {
        json!({
            "AccountId": "000000000000",
            "ClientRequestToken": uuid::Uuid::new_v4().to_string(),
            "ConfirmationRequired": false,
            "Operation": {"S3PutObjectCopy": {"TargetResource": format!("arn:aws:s3:::{}", self.dst), "TargetKeyPrefix": "copied"}},
            "Report": {"Bucket": format!("arn:aws:s3:::{}", self.reports), "Prefix": "reports", "Format": "Report_CSV_20180820",
                       "Enabled": true, "ReportScope": "AllTasks"},
            "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": fields},
                         "Location": {"ObjectArn": format!("arn:aws:s3:::{}/{}", self.src, manifest_key)}},
            "Priority": 10,
            "RoleArn": "arn:aws:iam::123456789012:role/batchops"
        })
    }

    pub async fn create(&self, document: Value) -> String {
        let request = CreateJobRequest::from_json(&document.to_string()).expect("request parses");
        batchops_aws::jobs::create_job(&self.app, request)
            .await
            .expect("create job")
            .job_id
    }

    /// Runs the local runtime until no job has work left.
    pub async fn run_until_idle(&self) {
        let options = RunOptions {
            until_idle: true,
            concurrency: 4,
            sweep_interval: Duration::from_millis(200),
            max_duration: Some(Duration::from_secs(240)),
        };
        run(self.app.clone(), options)
            .await
            .expect("runtime reaches idle");
    }

    pub async fn describe(&self, job_id: &str) -> JobDescriptor {
        batchops_aws::jobs::describe_job(&self.app, job_id)
            .await
            .expect("describe")
    }

    /// Runs the local runtime until idle and asserts the job completed (showing why if not).
    pub async fn run_to_complete(&self, job_id: &str) -> JobDescriptor {
        self.run_until_idle().await;
        let described = self.describe(job_id).await;
        assert_eq!(
            described.status, "Complete",
            "job {job_id}: {:?}",
            described.failure_reasons
        );
        described
    }

    /// Every message in the work queue, removed from it: what a lost send or a dead letter
    /// leaves.
    pub async fn drain_work_queue(&self) -> Vec<batchops_aws::queue::ChunkPointer> {
        let mut pointers = Vec::new();
        loop {
            let messages = self
                .app
                .queues
                .receive(&self.app.queues.work_url, 10, 0, 30)
                .await
                .unwrap();
            if messages.is_empty() {
                return pointers;
            }
            for message in messages {
                pointers.push(serde_json::from_str(&message.body).unwrap());
                self.app
                    .queues
                    .delete(&self.app.queues.work_url, &message.receipt_handle)
                    .await
                    .unwrap();
            }
        }
    }

    /// Reads the report back and asserts it lists every counted task exactly once, intact.
    pub async fn audit(&self, job_id: &str) -> ReportAudit {
        let audit = audit_report(&self.app, job_id)
            .await
            .expect("report readable");
        assert!(
            audit.bad_checksums.is_empty(),
            "bad shard checksums: {:?}",
            audit.bad_checksums
        );
        assert_eq!(audit.duplicate_rows, 0, "a task is reported twice");
        assert_eq!(
            audit.succeeded_rows, audit.counters_succeeded,
            "succeeded rows vs counters"
        );
        assert_eq!(
            audit.failed_rows, audit.counters_failed,
            "failed rows vs counters"
        );
        audit
    }
}

pub fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

pub fn md5_hex(bytes: &[u8]) -> String {
    batchops_aws::objects::md5_hex(bytes)
}

impl TestEnv {
    /// Writes an S3 Inventory report the way S3 lays it out: data files under `data/`,
    /// `manifest.json` listing them with their MD5s, and `manifest.checksum`. Returns the
    /// manifest.json key. `files` are (file name, bytes).
    pub async fn inventory(
        &self,
        name: &str,
        format: &str,
        schema: &str,
        files: Vec<(String, Vec<u8>)>,
    ) -> String {
        self.inventory_at(name, "2026-11-22T00-00Z", format, schema, files)
            .await
    }

    /// As `inventory`, in the date folder `date` (S3 writes one per report).
    pub async fn inventory_at(
        &self,
        name: &str,
        date: &str,
        format: &str,
        schema: &str,
        files: Vec<(String, Vec<u8>)>,
    ) -> String {
        let root = format!("inventory/{}/{name}/{date}", self.src);
        let mut listed = Vec::new();
        for (file, bytes) in files {
            let key = format!("inventory/{}/{name}/data/{file}", self.src);
            listed.push(json!({"key": key, "size": bytes.len(), "MD5checksum": md5_hex(&bytes)}));
            self.put(&self.reports, &key, bytes).await;
        }
        let manifest = json!({
            "sourceBucket": self.src,
            "destinationBucket": format!("arn:aws:s3:::{}", self.reports),
            "version": "2016-11-30",
            "creationTimestamp": "1763769600000",
            "fileFormat": format,
            "fileSchema": schema,
            "files": listed,
        });
        let body = serde_json::to_vec(&manifest).unwrap();
        let checksum = md5_hex(&body);
        self.put(&self.reports, &format!("{root}/manifest.json"), body)
            .await;
        self.put(
            &self.reports,
            &format!("{root}/manifest.checksum"),
            checksum,
        )
        .await;
        format!("{root}/manifest.json")
    }

    /// A CreateJob document over an inventory manifest in the reports bucket.
    pub fn inventory_request(&self, manifest_key: &str) -> Value {
        let mut document = self.request_json("unused", &["Bucket", "Key"]);
        document["Manifest"] = json!({
            "Spec": {"Format": "S3InventoryReport_CSV_20161130"},
            "Location": {"ObjectArn": format!("arn:aws:s3:::{}/{}", self.reports, manifest_key)}
        });
        document
    }

    /// The tasks planned for a job, read back from its chunk files: (line, key, version, etag).
    pub async fn planned(
        &self,
        job_id: &str,
    ) -> Vec<(u64, String, Option<String>, Option<String>)> {
        let record = self.app.store.get_job(job_id).await.unwrap();
        let mut tasks = Vec::new();
        for seq in 0..record.plan.progress.next_seq {
            let body = batchops_aws::objects::get_bytes(
                &self.app.s3,
                &self.app.config.control_bucket,
                &batchops_core::chunk::chunk_key(job_id, seq),
            )
            .await
            .unwrap();
            for task in
                batchops_core::chunk::parse_chunk(&String::from_utf8(body).unwrap()).unwrap()
            {
                match task {
                    batchops_core::chunk::ChunkTask::Object {
                        line, object, etag, ..
                    } => tasks.push((line, object.key, object.version_id, etag)),
                    other @ (batchops_core::chunk::ChunkTask::Restore { .. }
                    | batchops_core::chunk::ChunkTask::Delete { .. }
                    | batchops_core::chunk::ChunkTask::Import { .. }
                    | batchops_core::chunk::ChunkTask::Refused { .. }) => {
                        tasks.push((other.manifest_line(), format!("{other:?}"), None, None))
                    }
                    batchops_core::chunk::ChunkTask::Malformed(m) => {
                        tasks.push((m.line, format!("MALFORMED {}", m.message), None, None))
                    }
                }
            }
        }
        tasks
    }
}

/// A real Lambda Invoke endpoint for LambdaInvoke tests: `scripts/lambda_emulator.py
/// --invoke-port` running the example function (`functions/example-invoke`, built by
/// scripts/test.sh before the tests) under the Runtime API emulator. Ends with the test: the
/// emulator stops its function when its stdin closes.
pub struct InvokeEndpoint {
    child: std::process::Child,
    pub url: String,
}

/// The function name the example is served under.
pub const EXAMPLE_FUNCTION: &str = "example-invoke";

impl InvokeEndpoint {
    /// Starts the example function with a function timeout of `timeout_seconds`, the alias
    /// `live`, and `vars` in its environment (EXAMPLE_* settings).
    pub fn start(timeout_seconds: f64, vars: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/it-<hash> -> target/<profile>/example-invoke
        let binary = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(|dir| dir.join(EXAMPLE_FUNCTION))
            .expect("target directory");
        assert!(
            binary.exists(),
            "{} is missing: build it with `cargo build -p batchops-example-invoke` (scripts/test.sh does)",
            binary.display()
        );
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/lambda_emulator.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .args(["--name", EXAMPLE_FUNCTION, "--alias", "live", "--timeout"])
            .arg(timeout_seconds.to_string())
            .args(["--invoke-port", "0", "--exit-with-stdin", "--"])
            .arg(&binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // The function's own logs (a function error is logged as an error) only when asked for.
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "off");
        }
        for (name, value) in vars {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start scripts/lambda_emulator.py");
        let stdout = child.stdout.take().expect("emulator stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the emulator's endpoint line");
        let url = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["invoke_endpoint"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("the emulator did not start: {line:?}"));
        InvokeEndpoint { child, url }
    }

    /// A Lambda client (batchops' own settings: no SDK retries) aimed at this endpoint.
    pub fn client(&self, clients: &Clients) -> aws_sdk_lambda::Client {
        aws_sdk_lambda::Client::from_conf(
            clients
                .lambda
                .config()
                .to_builder()
                .endpoint_url(&self.url)
                .build(),
        )
    }
}

impl Drop for InvokeEndpoint {
    fn drop(&mut self) {
        // Closing stdin stops the emulator and its function; wait so no process outlives us.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// `scripts/fault_proxy.py` in front of another endpoint (a Lambda Invoke endpoint here: the
/// proxy treats every request without `X-Amz-Target` like S3's, so its `--s3-*` and `--cut-s3`
/// faults hit Invoke calls). Killed with the test.
pub struct FaultProxy {
    child: std::process::Child,
    pub url: String,
}

impl FaultProxy {
    pub fn start(upstream: &str, faults: &[&str]) -> Self {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("temp dir");
        let port_file = dir.path().join("port");
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fault_proxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--upstream", upstream, "--port", "0", "--port-file"])
            .arg(&port_file)
            .args(faults)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scripts/fault_proxy.py");
        for _ in 0..100 {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                return FaultProxy {
                    child,
                    url: format!("http://127.0.0.1:{}", port.trim()),
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("scripts/fault_proxy.py did not start");
    }

    /// What the proxy counted: `{"faults": {kind: n}, "requests": {service: n}, ...}`.
    pub fn counts(&self) -> Value {
        use std::io::{Read, Write};
        let address = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).expect("connect to the proxy");
        write!(stream, "GET /__faults HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("ask");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
    }
}

impl FaultProxy {
    /// Sets fault rates (`{"s3_fail_complete": 0}`), as `POST /__faults/config` takes them.
    pub fn configure(&self, config: Value) {
        use std::io::{Read, Write};
        let address = self.url.trim_start_matches("http://");
        let body = config.to_string();
        let mut stream = std::net::TcpStream::connect(address).expect("connect to the proxy");
        write!(
            stream,
            "POST /__faults/config HTTP/1.0\r\nHost: {address}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("configure");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        assert!(
            answer.starts_with("HTTP/1.0 200") || answer.contains(" 200 "),
            "{answer}"
        );
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
