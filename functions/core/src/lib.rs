//! batchops domain logic. Everything here is pure: no clocks read, no network, no randomness
//! taken from the environment. The AWS adapters in `batchops-aws` call into these types.

pub mod arn;
pub mod backoff;
pub mod backup;
pub mod checksum;
pub mod chunk;
pub mod copies;
pub mod copy_options;
pub mod counts;
pub mod describe;
pub mod encoding;
pub mod events;
pub mod export;
pub mod import;
pub mod inventory;
pub mod invoke;
pub mod job;
pub mod manifest;
pub mod operation;
pub mod page;
pub mod plan;
pub mod recovery;
pub mod report;
pub mod request;
pub mod rerun;
pub mod schedule;
pub mod status;
pub mod verify;

pub use job::JobRecord;
pub use request::{CreateJobRequest, JobSpec, RequestError};
pub use status::JobStatus;
