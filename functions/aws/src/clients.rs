//! AWS clients, built once per process: the stack's own (table, queues, control bucket), and
//! [`DataClients`], the S3 clients a job's data is reached with.

use crate::config::Config;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use batchops_core::request::ExpectedOwner;
use batchops_core::JobRecord;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

#[derive(Clone, Debug)]
pub struct Clients {
    /// The stack's S3 client (control bucket; jobs without a role).
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub events: aws_sdk_eventbridge::Client,
    /// LambdaInvoke jobs. Retries are batchops' own (`invoke::Invoker`): the SDK's would invoke
    /// again after a timeout, when the function may already have run.
    pub lambda: aws_sdk_lambda::Client,
    pub data: DataClients,
    /// Credentials of other object stores, by secret ARN (exports).
    pub secrets: aws_sdk_secretsmanager::Client,
}

/// Whether the stack is local (`AWS_ENDPOINT_URL` set): S3 then uses path-style addressing and
/// checksums only where the API requires them.
fn local_endpoint() -> bool {
    std::env::var("AWS_ENDPOINT_URL")
        .map(|v| !v.is_empty())
        .unwrap_or(false)
}

fn s3_config(
    shared: &aws_config::SdkConfig,
    local: bool,
    region: &str,
) -> aws_sdk_s3::config::Builder {
    let mut s3 = aws_sdk_s3::config::Builder::from(shared).region(Region::new(region.to_string()));
    if local {
        s3 = s3
            .force_path_style(true)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
    }
    s3
}

impl Clients {
    /// Loads the standard AWS configuration chain. With `AWS_ENDPOINT_URL` set (the local stack),
    /// S3 uses path-style addressing and checksums only where the API requires them. Each
    /// client also honours its service's own endpoint variable (`AWS_ENDPOINT_URL_LAMBDA`: a
    /// local Invoke endpoint such as `scripts/lambda_emulator.py --invoke-port`).
    pub async fn load(config: &Config) -> Self {
        Self::load_with_endpoint(config, None).await
    }

    /// [`Clients::load`] with every service sent to `endpoint` (a local stack, or a proxy in
    /// front of it) instead of `AWS_ENDPOINT_URL`.
    pub async fn load_with_endpoint(config: &Config, endpoint: Option<&str>) -> Self {
        let local = local_endpoint() || endpoint.is_some();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()));
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if local && std::env::var("AWS_ACCESS_KEY_ID").is_err() {
            loader = loader.credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "batchops-local",
            ));
        }
        let shared = loader.load().await;
        let s3 = aws_sdk_s3::Client::from_conf(s3_config(&shared, local, &config.region).build());
        Clients {
            data: DataClients {
                shared: shared.clone(),
                local,
                region: config.region.clone(),
                assume_job_roles: config.assume_job_roles,
                control_bucket: config.control_bucket.clone(),
                sts: aws_sdk_sts::Client::new(&shared),
                stack_s3: s3.clone(),
                state: Arc::default(),
            },
            s3,
            sqs: aws_sdk_sqs::Client::new(&shared),
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            events: aws_sdk_eventbridge::Client::new(&shared),
            secrets: aws_sdk_secretsmanager::Client::new(&shared),
            lambda: aws_sdk_lambda::Client::from_conf(
                aws_sdk_lambda::config::Builder::from(&shared)
                    .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
                    .build(),
            ),
        }
    }
}

/// S3 clients for jobs' data (manifests, sources, targets, reports, generated manifests): one per
/// (job role, bucket Region). A job with a `RoleArn` acts with that role's credentials (STS
/// AssumeRole, session `batchops-<job id>`, cached per job for this process and refreshed by the
/// client before they expire); a job without one with the stack's credentials. Backup runs and
/// restores carry their policy's `roleArn` as their RoleArn. A bucket's Region is learned once from HeadBucket's `x-amz-bucket-region`
/// header (also sent with 301 and 403 answers) and cached.
#[derive(Clone, Debug)]
pub struct DataClients {
    shared: aws_config::SdkConfig,
    local: bool,
    /// The stack's Region: where Region look-ups are sent, and the fallback.
    region: String,
    /// `BATCHOPS_ASSUME_JOB_ROLES=false` runs every job with the stack's credentials.
    assume_job_roles: bool,
    /// The stack's own bucket: always reached with the stack's client (chunk files, staged
    /// rows, and the manifests batchops writes itself, e.g. a rerun's failed tasks).
    control_bucket: String,
    sts: aws_sdk_sts::Client,
    stack_s3: aws_sdk_s3::Client,
    state: Arc<Mutex<DataState>>,
}

#[derive(Debug, Default)]
struct DataState {
    /// Bucket -> Region.
    regions: HashMap<String, String>,
    /// (Job ID, role ARN) -> the role's credentials provider (a policy may change its role).
    roles: HashMap<(String, String), SharedCredentialsProvider>,
    /// ((job ID, role ARN) or none for the stack's credentials, Region, expected bucket owner)
    /// -> client.
    clients: HashMap<ClientKey, aws_sdk_s3::Client>,
}

type ClientKey = (Option<(String, String)>, String, Option<String>);

/// Who a job's data requests are signed as.
#[derive(Clone, Debug, PartialEq, Eq)]
struct JobRole {
    job_id: String,
    role_arn: String,
}

impl JobRole {
    fn cache_key(&self) -> (String, String) {
        (self.job_id.clone(), self.role_arn.clone())
    }
}

/// A job's S3 clients: [`JobClients::s3`] gives the client for one bucket.
#[derive(Clone, Debug)]
pub struct JobClients {
    data: DataClients,
    role: Option<JobRole>,
    /// Bucket -> the account ID every request on it names as its owner (the job's
    /// `ExpectedBucketOwner` fields).
    owners: HashMap<String, String>,
    /// Every request through this one client instead (see [`DataClients::through`]).
    only: Option<aws_sdk_s3::Client>,
}

impl DataClients {
    /// The clients of `job`'s data: its RoleArn's, or the stack's when it has none.
    pub fn for_job(&self, job: &JobRecord) -> JobClients {
        self.for_role(
            &job.job_id,
            job.request.role_arn.as_deref(),
            &job.spec.expected_owners,
        )
    }

    /// The clients of a job's data before its record exists (CreateJob's checks): `session`
    /// names the request in the role session; `owners` are the buckets' expected owners.
    pub fn for_role(
        &self,
        session: &str,
        role_arn: Option<&str>,
        owners: &[ExpectedOwner],
    ) -> JobClients {
        JobClients {
            data: self.clone(),
            role: role_arn
                .filter(|_| self.assume_job_roles)
                .map(|role_arn| JobRole {
                    job_id: session.to_string(),
                    role_arn: role_arn.to_string(),
                }),
            owners: owners
                .iter()
                .map(|o| (o.bucket.clone(), o.owner.clone()))
                .collect(),
            only: None,
        }
    }

    /// The clients of a backup policy's data (its runs, restores, retention, verification and
    /// continuous copies): its `roleArn`'s, session `batchops-backup-<name>`, or the stack's.
    pub fn for_policy(&self, policy: &batchops_core::backup::BackupPolicy) -> JobClients {
        self.for_role(
            &format!("backup-{}", policy.name),
            policy.role_arn.as_deref(),
            &[],
        )
    }

    /// Whether a job's role can be assumed now: one STS AssumeRole (CreateJob and planning call
    /// this once, so that a role that cannot be used fails the job with STS's answer instead of
    /// every task failing its retries). `Ok(Some((code, reason)))`: STS refused, with its error
    /// code and a reason naming the role and the code; `Err`: no answer or a transient one (ask
    /// again later).
    pub async fn refused_role(
        &self,
        session: &str,
        role_arn: Option<&str>,
    ) -> crate::error::Result<Option<(String, String)>> {
        let Some(role_arn) = role_arn.filter(|_| self.assume_job_roles) else {
            return Ok(None);
        };
        let asked = self
            .sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session_name(session))
            .send()
            .await;
        let Err(err) = asked else {
            return Ok(None);
        };
        let error = crate::error::Error::aws_call("STS", "AssumeRole", role_arn, &err);
        if error.class() == batchops_core::backoff::ErrorClass::Transient {
            return Err(error);
        }
        let code = aws_sdk_sts::error::ProvideErrorMetadata::code(&err)
            .unwrap_or("AccessDenied")
            .to_string();
        let message = aws_sdk_sts::error::ProvideErrorMetadata::message(&err).unwrap_or_default();
        Ok(Some((
            code.clone(),
            format!("STS refused AssumeRole of `{role_arn}`: {code}: {message}"),
        )))
    }

    /// The stack's own clients (jobs batchops starts itself, with no role), by bucket Region.
    pub fn stack(&self) -> JobClients {
        JobClients {
            data: self.clone(),
            role: None,
            owners: HashMap::new(),
            only: None,
        }
    }

    /// Every bucket reached through `client` (one the caller configured itself, e.g. with an
    /// interceptor that records what is sent).
    pub fn through(&self, client: aws_sdk_s3::Client) -> JobClients {
        JobClients {
            only: Some(client),
            ..self.stack()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DataState> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn credentials(&self, role: &JobRole) -> SharedCredentialsProvider {
        let mut state = self.lock();
        state
            .roles
            .entry(role.cache_key())
            .or_insert_with(|| {
                SharedCredentialsProvider::new(AssumedRole {
                    sts: self.sts.clone(),
                    role_arn: role.role_arn.clone(),
                    session_name: session_name(&role.job_id),
                })
            })
            .clone()
    }

    fn client(
        &self,
        role: Option<&JobRole>,
        region: &str,
        owner: Option<&str>,
    ) -> aws_sdk_s3::Client {
        let key = (
            role.map(JobRole::cache_key),
            region.to_string(),
            owner.map(str::to_string),
        );
        if let Some(client) = self.lock().clients.get(&key) {
            return client.clone();
        }
        let client = if role.is_none() && owner.is_none() && region == self.region {
            self.stack_s3.clone()
        } else {
            let mut config = s3_config(&self.shared, self.local, region);
            if let Some(role) = role {
                config = config.credentials_provider(self.credentials(role));
            }
            if let Some(owner) = owner {
                config = config.interceptor(ExpectedBucketOwner(owner.to_string()));
            }
            aws_sdk_s3::Client::from_conf(config.build())
        };
        self.lock().clients.insert(key, client.clone());
        client
    }

    /// `bucket`'s Region: cached, else asked with HeadBucket (whose answer carries it even
    /// when it is a 301 or a 403); the stack's Region when S3 does not say. The bool: this
    /// call's HeadBucket succeeded (the bucket exists and these credentials reach it).
    async fn region_of(
        &self,
        role: Option<&JobRole>,
        bucket: &str,
        owner: Option<&str>,
    ) -> (String, bool) {
        if let Some(region) = self.lock().regions.get(bucket) {
            return (region.clone(), false);
        }
        let asked = self
            .client(role, &self.region, owner)
            .head_bucket()
            .bucket(bucket)
            .send()
            .await;
        let reached = asked.is_ok();
        let region = match &asked {
            Ok(out) => out.bucket_region().map(str::to_string),
            Err(err) => err
                .raw_response()
                .and_then(|r| r.headers().get("x-amz-bucket-region"))
                .map(str::to_string),
        };
        let region = match region {
            Some(region) => {
                self.lock()
                    .regions
                    .insert(bucket.to_string(), region.clone());
                region
            }
            None => {
                tracing::debug!(
                    bucket,
                    "S3 named no Region for the bucket; using the stack's"
                );
                self.region.clone()
            }
        };
        (region, reached)
    }
}

impl JobClients {
    /// The client for requests on `bucket`: the job's credentials, the bucket's Region, and
    /// the bucket's expected owner on every request when the job names one (the control
    /// bucket: the stack's client).
    pub async fn s3(&self, bucket: &str) -> aws_sdk_s3::Client {
        self.s3_and_reached(bucket).await.0
    }

    /// Whether `bucket` exists and the job's credentials reach it (Err: why not). The
    /// HeadBucket that learns a bucket's Region answers that too; when the Region was known
    /// already, one HeadBucket asks now (so a bucket is checked once, not twice).
    pub async fn reachable(&self, bucket: &str) -> std::result::Result<(), String> {
        let (client, reached) = self.s3_and_reached(bucket).await;
        if reached {
            return Ok(());
        }
        crate::objects::bucket_reachable(&client, bucket).await
    }

    async fn s3_and_reached(&self, bucket: &str) -> (aws_sdk_s3::Client, bool) {
        if let Some(client) = &self.only {
            return (client.clone(), false);
        }
        if bucket == self.data.control_bucket {
            return (self.data.stack_s3.clone(), false);
        }
        let owner = self.owners.get(bucket).map(String::as_str);
        // Boxed: a HeadBucket future is large, and this is awaited inside already deep ones.
        let (region, reached) =
            Box::pin(self.data.region_of(self.role.as_ref(), bucket, owner)).await;
        (
            self.data.client(self.role.as_ref(), &region, owner),
            reached,
        )
    }

    /// The client in the stack's Region (requests that name no bucket yet).
    pub fn default_s3(&self) -> aws_sdk_s3::Client {
        if let Some(client) = &self.only {
            return client.clone();
        }
        self.data
            .client(self.role.as_ref(), &self.data.region, None)
    }
}

/// Sends `x-amz-expected-bucket-owner` with every request of a client made for one bucket
/// (every S3 bucket and object request takes it; S3 answers AccessDenied when the bucket
/// belongs to another account). Set before signing: SigV4 signs `x-amz-*` headers.
#[derive(Debug)]
struct ExpectedBucketOwner(String);

impl Intercept for ExpectedBucketOwner {
    fn name(&self) -> &'static str {
        "ExpectedBucketOwner"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert("x-amz-expected-bucket-owner", self.0.clone());
        Ok(())
    }
}

/// `batchops-<job id>`, within STS's 64 characters and its allowed characters.
fn session_name(job_id: &str) -> String {
    let cleaned: String = job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("batchops-{cleaned}").chars().take(64).collect()
}

/// Credentials of a job's role from STS AssumeRole. The S3 client's identity cache keeps them
/// and asks again shortly before they expire.
#[derive(Debug)]
struct AssumedRole {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    session_name: String,
}

impl AssumedRole {
    async fn assume(&self) -> aws_credential_types::provider::Result {
        use aws_credential_types::provider::error::CredentialsError;
        let out = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .send()
            .await
            .map_err(|e| {
                CredentialsError::provider_error(format!(
                    "STS AssumeRole {}: {}",
                    self.role_arn,
                    aws_sdk_sts::error::DisplayErrorContext(&e)
                ))
            })?;
        let credentials = out.credentials().ok_or_else(|| {
            CredentialsError::provider_error(format!(
                "STS AssumeRole {} answered no credentials",
                self.role_arn
            ))
        })?;
        let expiry = SystemTime::try_from(*credentials.expiration()).ok();
        Ok(Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_string()),
            expiry,
            "batchops-job-role",
        ))
    }
}

impl aws_credential_types::provider::ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(self.assume())
    }
}

#[cfg(test)]
mod tests {
    use super::session_name;

    #[test]
    fn session_names_name_the_job_within_sts_rules() {
        assert_eq!(
            session_name("0b5c1d2e-0000-4000-8000-123456789abc"),
            "batchops-0b5c1d2e-0000-4000-8000-123456789abc"
        );
        assert_eq!(session_name("a b/c"), "batchops-a-b-c");
        assert_eq!(session_name(&"x".repeat(100)).len(), 64);
    }
}
