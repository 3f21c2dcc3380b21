//! Exports and imports are one kind of job seen from two directions: described, listed,
//! cancelled and verified the same way, over the CLI and the HTTP API alike. [`Transfer`] is
//! what a direction adds: its descriptor, its create request and its manifest's place.

use crate::error::{Error, Result};
use crate::exports::VerifyReport;
use crate::jobs::{self, CreatedJob};
use crate::App;
use batchops_core::counts::Counters;
use batchops_core::{JobRecord, JobStatus};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One direction of transfer jobs; implemented by its descriptor (what describe and list show).
pub trait Transfer: Serialize + Sized + Send {
    /// "export" or "import": in messages, and the request body's name.
    const NOUN: &'static str;
    /// The `Operation` its jobs list under.
    const OPERATION: &'static str;
    /// The HTTP collection (`/exports`), and create's and list's answer fields.
    const COLLECTION: &'static str;
    const ID_FIELD: &'static str;
    const LIST_FIELD: &'static str;
    /// The body of `POST /<collection>`.
    type Body: DeserializeOwned + Send;

    /// The descriptor of one of its jobs (an error for a job of another operation).
    fn descriptor(job: &JobRecord, counters: &Counters) -> Result<Self>;

    /// Creates one from its request body.
    fn create(app: &App, body: Self::Body) -> BoxFuture<'_, Result<CreatedJob>>;

    /// Checks the destination against the job's manifest.
    fn verify<'a>(app: &'a App, id: &'a str) -> BoxFuture<'a, Result<VerifyReport>>;
}

/// A job of this direction, or [`Error::JobNotFound`] naming what it is not.
pub fn not_this<T: Transfer>(job: &JobRecord) -> Error {
    Error::JobNotFound(format!("{} (not an {})", job.job_id, T::NOUN))
}

pub async fn describe<T: Transfer>(app: &App, id: &str) -> Result<T> {
    let job = app.store.get_job(id).await?;
    let counters = app.store.counters(&job.job_id).await?;
    T::descriptor(&job, &counters)
}

/// Every job of this direction, newest first.
pub async fn list<T: Transfer>(app: &App) -> Result<Vec<T>> {
    let mut found = Vec::new();
    for entry in jobs::list_jobs(app, &[]).await? {
        if entry.operation != T::OPERATION {
            continue;
        }
        found.push(describe(app, &entry.job_id).await?);
    }
    Ok(found)
}

/// Cancels one: objects already written stay; the one in flight is aborted.
pub async fn cancel<T: Transfer>(app: &App, id: &str) -> Result<T> {
    describe::<T>(app, id).await?;
    let reason = format!("{} cancelled", T::NOUN);
    jobs::update_job_status(app, id, JobStatus::Cancelled, Some(&reason), None).await?;
    describe(app, id).await
}
