//! batchops services over S3, SQS and DynamoDB. The Lambda binaries and the `batchops` CLI are
//! thin shells over this crate: they build one [`App`] per process and call in.

/// Every process that links this crate (the Lambda functions, the CLI and its local runtime)
/// allocates with mimalloc. The planner makes a few small strings per manifest line on one
/// thread and frees them on another; glibc's malloc spent half its CPU on that, much of it
/// waiting on arena locks (`scripts/bench.sh planner`: twice as fast with mimalloc).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod audit;
pub mod backup;
pub mod catalog_io;
pub mod clients;
pub mod config;
pub mod draft;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod exports;
pub mod extsort;
pub mod finalizer;
pub mod imports;
pub mod invoke;
pub mod jobs;
pub mod journal;
pub mod lambda;
pub mod objects;
pub mod ops;
pub mod page;
pub mod planner;
pub mod prepare;
pub mod queue;
pub mod runtime;
pub mod s3control;
pub mod serve;
pub mod setup;
pub mod store;
pub mod stores;
pub mod transfers;
pub mod verify;
pub mod worker;

pub use clients::{Clients, DataClients, JobClients};
pub use config::Config;
pub use error::{Error, Result};

use ops::copy::CopySettings;
use queue::Queues;
use std::sync::Arc;
use store::Store;

/// Everything a handler needs, built once per process.
#[derive(Clone, Debug)]
pub struct App {
    pub config: Config,
    pub s3: aws_sdk_s3::Client,
    pub store: Store,
    pub queues: Queues,
    pub copy: CopySettings,
    /// Job status events.
    pub events: aws_sdk_eventbridge::Client,
    /// LambdaInvoke jobs' functions.
    pub lambda: aws_sdk_lambda::Client,
    /// S3 clients for jobs' data (the job's role, the bucket's Region).
    pub data: DataClients,
    /// Credentials of other object stores (exports, imports).
    pub secrets: aws_sdk_secretsmanager::Client,
    /// Chunk files this process's planner stored, held for its own worker: set where both run
    /// in one process (the local runtime), None elsewhere.
    pub chunk_handoff: Option<Arc<worker::ChunkHandoff>>,
}

impl App {
    pub async fn new(config: Config, clients: Clients) -> Result<Self> {
        let queues = Queues::resolve(
            clients.sqs.clone(),
            &config.work_queue,
            &config.plan_queue,
            &config.finalize_queue,
        )
        .await?;
        Ok(Self::with_queues(config, clients, queues))
    }

    pub fn with_queues(config: Config, clients: Clients, queues: Queues) -> Self {
        App {
            store: Store::new(
                clients.dynamodb.clone(),
                config.table.clone(),
                config.counter_shards,
            ),
            copy: CopySettings {
                multipart_threshold: config.multipart_threshold,
                part_size: config.multipart_part_size,
                part_concurrency: config.part_concurrency,
                retry: config.retry,
            },
            s3: clients.s3,
            events: clients.events,
            lambda: clients.lambda,
            data: clients.data,
            secrets: clients.secrets,
            queues,
            config,
            chunk_handoff: None,
        }
    }

    /// This app with a [`worker::ChunkHandoff`]: for a process that plans and works.
    pub fn with_chunk_handoff(mut self) -> Self {
        self.chunk_handoff = Some(Arc::new(worker::ChunkHandoff::default()));
        self
    }

    /// The S3 clients of `job`'s data.
    pub fn job_clients(&self, job: &batchops_core::JobRecord) -> JobClients {
        self.data.for_job(job)
    }

    /// Reads the configuration from the environment and builds the clients.
    pub async fn from_env() -> Result<Self> {
        let config = Config::from_env().map_err(|e| Error::Invalid(e.to_string()))?;
        let clients = Clients::load(&config).await;
        Self::new(config, clients).await
    }
}

pub fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
