//! The DynamoDB table: job items (optimistically locked), request tokens, committed task ranges,
//! counter shards and worker leases. Per-object rows never come here.

use crate::error::{aws, Error, Result};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use batchops_core::counts::Counters;
use batchops_core::recovery::{commit_verdict, CommitVerdict, StallWatch};
use batchops_core::report::TaskStatus;
use batchops_core::{JobRecord, JobStatus};
use std::collections::HashMap;

pub const STATUS_INDEX: &str = "by-status";
const META: &str = "META";
/// The partition of working markers: one item (sort key: the job ID) per job in a working
/// status, written in the same transaction as the job's move in or out of them, so one query
/// answers whether any job has work (the local runtime's idle check, the planner's sweep).
const WORKING_PK: &str = "WORKING";

type Item = HashMap<String, AttributeValue>;

/// A position in the ListJobs order: newest first, ties by job ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsCursor {
    pub created_at: String,
    pub job_id: String,
}

impl JobsCursor {
    pub fn of(job: &JobRecord) -> Self {
        JobsCursor {
            created_at: job.created_at.clone(),
            job_id: job.job_id.clone(),
        }
    }

    /// Whether a job (created_at, job_id) comes after this position.
    fn precedes(&self, created_at: &str, job_id: &str) -> bool {
        list_order((&self.created_at, &self.job_id), (created_at, job_id))
            == std::cmp::Ordering::Less
    }
}

/// The ListJobs order of (created_at, job_id): newest first, ties by job ID.
fn list_order(a: (&str, &str), b: (&str, &str)) -> std::cmp::Ordering {
    b.0.cmp(a.0).then(a.1.cmp(b.1))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn job_pk(job_id: &str) -> String {
    format!("JOB#{job_id}")
}

fn range_sk(seq: u64, first_task: u64) -> String {
    format!("CHUNK#{seq:010}#{first_task:07}")
}

/// A committed range item (`CHUNK#...`) as a [`RangeCommit`].
fn range_of_item(item: &Item) -> RangeCommit {
    let shards = item
        .get("shards")
        .and_then(|v| v.as_l().ok())
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_m().ok())
                .map(|m| ShardRef {
                    status: if get_s(m, "status") == Some("failed") {
                        TaskStatus::Failed
                    } else {
                        TaskStatus::Succeeded
                    },
                    bucket: get_s(m, "bucket").unwrap_or_default().to_string(),
                    key: get_s(m, "key").unwrap_or_default().to_string(),
                    md5: get_s(m, "md5").unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    RangeCommit {
        seq: get_n(item, "seq"),
        first_task: get_n(item, "first_task"),
        end_task: get_n(item, "end_task"),
        counters: Counters {
            succeeded: get_n(item, "succeeded"),
            failed: get_n(item, "failed"),
            bytes: get_n(item, "bytes"),
            ranges: 1,
        },
        shards,
        fragment: get_s(item, "fragment").map(str::to_string),
        chunk_tasks: item
            .contains_key("chunk_tasks")
            .then(|| get_n(item, "chunk_tasks")),
    }
}

fn lease_sk(seq: u64, first_task: u64) -> String {
    format!("LEASE#{seq:010}#{first_task:07}")
}

/// The job's planning lease: one planner at a time.
const PLAN_LEASE: &str = "PLANLEASE";
/// The sweep's record of the job's progress (a [`StallWatch`]).
const STALL_WATCH: &str = "STALLWATCH";

/// A multipart upload kept between invocations for one task (see `ops::copy::KeptUploads`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeptUpload {
    pub upload_id: String,
    pub target_key: String,
    pub part_size: u64,
    /// A streamed upload (an export to another store, which cannot list its parts): what it
    /// holds and what it was cut from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streamed: Option<StreamedUpload>,
}

/// The parts a streamed upload holds, and the source object they were cut from, pinned: its
/// next delivery reads that object from the first missing part on (a ranged GET).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamedUpload {
    pub progress: crate::ops::parts::PartProgress,
    /// The object's whole size.
    pub size: u64,
    pub source_version: Option<String>,
    pub source_etag: Option<String>,
}

fn upload_sk(seq: u64, task: u64) -> String {
    format!("UPLOAD#{seq:010}#{task:07}")
}

/// The table item of a committed range.
fn range_item(job_id: &str, commit: &RangeCommit, attempt: &str) -> Item {
    let shards: Vec<AttributeValue> = commit
        .shards
        .iter()
        .map(|shard| {
            AttributeValue::M(HashMap::from([
                ("status".to_string(), s(shard.status.as_str())),
                ("bucket".to_string(), s(shard.bucket.clone())),
                ("key".to_string(), s(shard.key.clone())),
                ("md5".to_string(), s(shard.md5.clone())),
            ]))
        })
        .collect();
    let mut item = HashMap::from([
        ("pk".to_string(), s(job_pk(job_id))),
        ("sk".to_string(), s(range_sk(commit.seq, commit.first_task))),
        ("seq".to_string(), n(commit.seq)),
        ("first_task".to_string(), n(commit.first_task)),
        ("end_task".to_string(), n(commit.end_task)),
        ("succeeded".to_string(), n(commit.counters.succeeded)),
        ("failed".to_string(), n(commit.counters.failed)),
        ("bytes".to_string(), n(commit.counters.bytes)),
        ("shards".to_string(), AttributeValue::L(shards)),
        // Who committed: a retried commit whose first answer was lost finds its own.
        ("attempt".to_string(), s(attempt)),
    ]);
    if let Some(fragment) = &commit.fragment {
        item.insert("fragment".to_string(), s(fragment.clone()));
    }
    if let Some(chunk_tasks) = commit.chunk_tasks {
        item.insert("chunk_tasks".to_string(), n(chunk_tasks));
    }
    item
}

/// What asking for a range's lease gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeLease {
    /// This attempt holds the range. `attempts` counts every attempt that was ever granted it
    /// (this one included); `last_error` is what the previous attempt reported, if it failed.
    Granted {
        attempts: u64,
        last_error: Option<String>,
    },
    /// Another attempt holds a live lease on the range until `expires_at` (unix seconds).
    Busy { holder: String, expires_at: u64 },
}

/// One report shard written by a committed range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRef {
    pub status: TaskStatus,
    pub bucket: String,
    pub key: String,
    pub md5: String,
}

/// A committed task range of a chunk: tasks `[first_task, end_task)` ran exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeCommit {
    pub seq: u64,
    pub first_task: u64,
    pub end_task: u64,
    /// Tasks in the whole chunk, so a redelivery or the sweep knows what follows this range.
    pub chunk_tasks: Option<u64>,
    pub counters: Counters,
    pub shards: Vec<ShardRef>,
    /// Backups: the control-bucket key of this range's catalog fragment.
    pub fragment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// Another delivery of the same range committed first; nothing changed.
    AlreadyCommitted,
    /// The job stopped (cancelled or ended) before the commit: nothing was counted.
    JobStopped,
    /// Another attempt took the range's lease over; it will commit the range.
    LeaseLost,
}

/// Job statuses in which a range commit may still be counted.
const COMMITTABLE: [JobStatus; 4] = [
    JobStatus::Active,
    JobStatus::Pausing,
    JobStatus::Cancelling,
    JobStatus::Failing,
];

/// Attempts at a range commit that DynamoDB cancels for a conflict or throttling.
const COMMIT_ATTEMPTS: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    /// The ClientRequestToken was seen before: this is the job it created.
    Existing,
}

#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    table: String,
    counter_shards: u32,
}

fn is_conditional_failure<E: ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

/// Ok(true) when a conditional write went through, Ok(false) when its condition did not hold.
fn condition_held<T, E>(
    result: std::result::Result<T, SdkError<E, HttpResponse>>,
    operation: &'static str,
) -> Result<bool>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(err) if err.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
        Err(err) => Err(aws("DynamoDB", operation)(err)),
    }
}

fn transaction_conflict<E: ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("TransactionCanceledException")
}

/// A cancelled transaction lost a race: a condition did not hold, or another transaction
/// wrote one of its items at the same time.
fn lost_race(codes: &[Option<String>]) -> bool {
    codes
        .iter()
        .flatten()
        .any(|code| code == "ConditionalCheckFailed" || code == "TransactionConflict")
}

/// The cancellation reason codes of a cancelled TransactWriteItems, in item order.
fn cancellation_codes(
    err: &aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
) -> Vec<Option<String>> {
    match err {
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e) => e
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>, counter_shards: u32) -> Self {
        Store {
            client,
            table: table.into(),
            counter_shards: counter_shards.max(1),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn job_item(record: &JobRecord) -> Result<Item> {
        let doc =
            serde_json::to_string(record).map_err(|e| Error::Data(format!("encode job: {e}")))?;
        Ok(HashMap::from([
            ("pk".to_string(), s(job_pk(&record.job_id))),
            ("sk".to_string(), s(META)),
            ("status".to_string(), s(record.status.as_str())),
            ("created_at".to_string(), s(record.created_at.clone())),
            ("priority".to_string(), n(record.priority)),
            ("revision".to_string(), n(record.revision)),
            ("doc".to_string(), s(doc)),
        ]))
    }

    fn decode_job(item: &Item) -> Result<JobRecord> {
        let doc = get_s(item, "doc").ok_or_else(|| Error::Data("job item without doc".into()))?;
        let mut record: JobRecord =
            serde_json::from_str(doc).map_err(|e| Error::Data(format!("decode job: {e}")))?;
        record.revision = get_n(item, "revision");
        record.stored_status = Some(record.status);
        Ok(record)
    }

    /// Creates the job unless its request token was used before; returns the job that owns the
    /// token either way.
    pub async fn create_job(&self, record: &JobRecord, token: &str) -> Result<(String, Created)> {
        let token_put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(format!("TOKEN#{token}")))
            .item("sk", s("TOKEN"))
            .item("job_id", s(record.job_id.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(aws("DynamoDB", "TransactWriteItems"))?;
        let job_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::job_item(record)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(aws("DynamoDB", "TransactWriteItems"))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(token_put).build())
            .transact_items(TransactWriteItem::builder().put(job_put).build())
            .transact_items(self.working_marker(&record.job_id, true)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok((record.job_id.clone(), Created::New)),
            Err(err) if err.as_service_error().is_some_and(transaction_conflict) => {
                let item = self
                    .read_item(&format!("TOKEN#{token}"), "TOKEN", Some("job_id"))
                    .await?;
                let job_id = item
                    .as_ref()
                    .and_then(|i| get_s(i, "job_id"))
                    .ok_or_else(|| {
                        Error::Data(format!(
                            "CreateJob transaction for token {token} was cancelled: {}",
                            crate::error::describe_sdk(&err)
                        ))
                    })?;
                Ok((job_id.to_string(), Created::Existing))
            }
            Err(err) => Err(aws("DynamoDB", "TransactWriteItems")(err)),
        }
    }

    pub async fn get_job(&self, job_id: &str) -> Result<JobRecord> {
        match self.read_item(&job_pk(job_id), META, None).await? {
            Some(item) => Self::decode_job(&item),
            None => Err(Error::JobNotFound(job_id.to_string())),
        }
    }

    /// Writes `record` if nobody wrote the job since it was read; bumps its revision.
    /// Returns false on a lost race (re-read and decide again).
    pub async fn put_job(&self, record: &mut JobRecord) -> Result<bool> {
        let expected = record.revision;
        record.revision += 1;
        let working = record.status.is_working();
        let result = match Self::job_item(record) {
            // Still (or still not) working: the marker stays as it is.
            Ok(item) if record.stored_status.map(JobStatus::is_working) == Some(working) => {
                let result = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("revision = :expected")
                    .expression_attribute_values(":expected", n(expected))
                    .send()
                    .await;
                match result {
                    // A worker's commit transaction checking the job at this moment is a lost
                    // race too: nothing was written.
                    Err(err)
                        if err
                            .as_service_error()
                            .is_some_and(|e| e.code() == Some("TransactionConflictException")) =>
                    {
                        Ok(false)
                    }
                    result => condition_held(result, "PutItem"),
                }
            }
            Ok(item) => {
                self.put_job_with_marker(item, expected, &record.job_id, working)
                    .await
            }
            Err(err) => Err(err),
        };
        match result {
            Ok(true) => {
                record.stored_status = Some(record.status);
                Ok(true)
            }
            other => {
                record.revision = expected;
                other
            }
        }
    }

    /// The job's write and its working marker's put (`working`) or delete, in one transaction:
    /// false on a lost race.
    async fn put_job_with_marker(
        &self,
        item: Item,
        expected: u64,
        job_id: &str,
        working: bool,
    ) -> Result<bool> {
        let job_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("revision = :expected")
            .expression_attribute_values(":expected", n(expected))
            .build()
            .map_err(aws("DynamoDB", "TransactWriteItems"))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(job_put).build())
            .transact_items(self.working_marker(job_id, working)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| lost_race(&cancellation_codes(e))) =>
            {
                Ok(false)
            }
            Err(err) => Err(aws("DynamoDB", "TransactWriteItems")(err)),
        }
    }

    /// The put (`working`) or delete of a job's working marker, as a transaction item.
    fn working_marker(&self, job_id: &str, working: bool) -> Result<TransactWriteItem> {
        let item = if working {
            TransactWriteItem::builder().put(
                Put::builder()
                    .table_name(&self.table)
                    .item("pk", s(WORKING_PK))
                    .item("sk", s(job_id))
                    .build()
                    .map_err(aws("DynamoDB", "TransactWriteItems"))?,
            )
        } else {
            TransactWriteItem::builder().delete(
                Delete::builder()
                    .table_name(&self.table)
                    .key("pk", s(WORKING_PK))
                    .key("sk", s(job_id))
                    .build()
                    .map_err(aws("DynamoDB", "TransactWriteItems"))?,
            )
        };
        Ok(item.build())
    }

    /// Whether some job is in a working status: one strongly consistent read of at most one
    /// marker.
    pub async fn any_working_job(&self) -> Result<bool> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(WORKING_PK))
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(aws("DynamoDB", "Query"))?;
        Ok(!out.items().is_empty())
    }

    /// The IDs of the jobs in a working status, from their markers.
    pub async fn working_job_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .query_items(WORKING_PK, None)
            .await?
            .iter()
            .filter_map(|i| get_s(i, "sk"))
            .map(str::to_string)
            .collect())
    }

    /// Gives every working job a marker it lacks (jobs created before markers existed): each
    /// put only while the job is still as listed, so a job that has just ended gets none.
    /// Returns how many were added.
    pub async fn mark_working_jobs(&self) -> Result<usize> {
        // Read at once: a job created between the two reads has its marker already, and putting
        // it again changes nothing.
        let (marked, working) =
            tokio::join!(self.working_job_ids(), self.list_jobs(&JobStatus::WORKING));
        let marked: std::collections::HashSet<String> = marked?.into_iter().collect();
        let mut added = 0;
        for job in working? {
            if marked.contains(&job.job_id) {
                continue;
            }
            let unchanged = ConditionCheck::builder()
                .table_name(&self.table)
                .key("pk", s(job_pk(&job.job_id)))
                .key("sk", s(META))
                .condition_expression("revision = :seen")
                .expression_attribute_values(":seen", n(job.revision))
                .build()
                .map_err(aws("DynamoDB", "TransactWriteItems"))?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(
                    TransactWriteItem::builder()
                        .condition_check(unchanged)
                        .build(),
                )
                .transact_items(self.working_marker(&job.job_id, true)?)
                .send()
                .await;
            match result {
                Ok(_) => added += 1,
                // The job changed since it was listed: that write kept its marker right.
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| lost_race(&cancellation_codes(e))) => {}
                Err(err) => return Err(aws("DynamoDB", "TransactWriteItems")(err)),
            }
        }
        Ok(added)
    }

    /// Read-modify-write with retries on lost races. `change` returns Ok(false) to leave the
    /// job as it is. Returns the job as stored afterwards.
    pub async fn update_job<F, E>(
        &self,
        job_id: &str,
        mut change: F,
    ) -> Result<std::result::Result<JobRecord, E>>
    where
        F: FnMut(&mut JobRecord) -> std::result::Result<bool, E>,
    {
        for _ in 0..20 {
            let mut record = self.get_job(job_id).await?;
            match change(&mut record) {
                Err(e) => return Ok(Err(e)),
                Ok(false) => return Ok(Ok(record)),
                Ok(true) => {
                    if self.put_job(&mut record).await? {
                        return Ok(Ok(record));
                    }
                }
            }
        }
        Err(Error::State {
            job_id: job_id.to_string(),
            message: "too many concurrent updates".into(),
        })
    }

    /// [`Self::update_job`] starting from `record`, a read the caller has just made (or the
    /// record a write of its own returned): no second read unless someone wrote the job since.
    /// A change to a record that is no longer current loses the race, and is decided again on
    /// fresh reads.
    pub async fn update_job_from<F, E>(
        &self,
        mut record: JobRecord,
        mut change: F,
    ) -> Result<std::result::Result<JobRecord, E>>
    where
        F: FnMut(&mut JobRecord) -> std::result::Result<bool, E>,
    {
        match change(&mut record) {
            Err(e) => return Ok(Err(e)),
            Ok(false) => return Ok(Ok(record)),
            Ok(true) => {
                if self.put_job(&mut record).await? {
                    return Ok(Ok(record));
                }
            }
        }
        // Boxed: `update_job`'s future inline would double this one's size.
        Box::pin(self.update_job(&record.job_id, change)).await
    }

    /// Jobs in the given statuses, newest first.
    pub async fn list_jobs(&self, statuses: &[JobStatus]) -> Result<Vec<JobRecord>> {
        self.list_jobs_page(statuses, None, usize::MAX).await
    }

    /// At most `limit` jobs in the given statuses that come after `after`, newest first (ties by
    /// job ID): one page of ListJobs.
    pub async fn list_jobs_page(
        &self,
        statuses: &[JobStatus],
        after: Option<&JobsCursor>,
        limit: usize,
    ) -> Result<Vec<JobRecord>> {
        // One query per status, all at once: ListJobs of every status is seven of them.
        let per_status = statuses.iter().map(|status| async move {
            let mut jobs = Vec::new();
            let mut start: Option<Item> = None;
            let mut taken = 0;
            loop {
                let mut query = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(STATUS_INDEX)
                    .scan_index_forward(false)
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":status", s(status.as_str()))
                    .set_exclusive_start_key(start.take());
                query = match after {
                    // `<=`: jobs created in the same instant as the cursor are sorted by ID below.
                    Some(cursor) => query
                        .key_condition_expression("#status = :status AND #created <= :created")
                        .expression_attribute_names("#created", "created_at")
                        .expression_attribute_values(":created", s(cursor.created_at.as_str())),
                    None => query.key_condition_expression("#status = :status"),
                };
                if limit < usize::MAX {
                    query = query.limit((limit + 1).min(1000) as i32);
                }
                let out = query.send().await.map_err(aws("DynamoDB", "Query"))?;
                for item in out.items() {
                    let job = Self::decode_job(item)?;
                    if after.is_none_or(|cursor| cursor.precedes(&job.created_at, &job.job_id)) {
                        jobs.push(job);
                        taken += 1;
                    }
                }
                match out.last_evaluated_key() {
                    Some(key) if !key.is_empty() && taken < limit => start = Some(key.clone()),
                    _ => break,
                }
            }
            Ok::<_, Error>(jobs)
        });
        let mut jobs: Vec<JobRecord> = futures::future::try_join_all(per_status)
            .await?
            .into_iter()
            .flatten()
            .collect();
        jobs.sort_by(|a, b| list_order((&a.created_at, &a.job_id), (&b.created_at, &b.job_id)));
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn query_prefix(&self, job_id: &str, prefix: &str) -> Result<Vec<Item>> {
        self.query_items(&job_pk(job_id), Some(prefix)).await
    }

    /// Every item of partition `pk` (whose sort key starts with `prefix`, if given), in sort-key
    /// order.
    async fn query_items(&self, pk: &str, prefix: Option<&str>) -> Result<Vec<Item>> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true);
        let query = match prefix {
            Some(prefix) => query
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix)),
            None => query.key_condition_expression("pk = :pk"),
        };
        self.query_all(query).await
    }

    /// Every item `query` matches, page after page.
    async fn query_all(&self, query: QueryFluentBuilder) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(aws("DynamoDB", "Query"))?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(items),
            }
        }
    }

    /// Sums the job's counter shards.
    pub async fn counters(&self, job_id: &str) -> Result<Counters> {
        let mut total = Counters::default();
        for item in self.query_prefix(job_id, "COUNT#").await? {
            total.add(&Counters {
                succeeded: get_n(&item, "succeeded"),
                failed: get_n(&item, "failed"),
                bytes: get_n(&item, "bytes"),
                ranges: get_n(&item, "ranges"),
            });
        }
        Ok(total)
    }

    /// One item by key, read consistently (only `projection`'s attributes when given).
    async fn read_item(
        &self,
        pk: &str,
        sk: &str,
        projection: Option<&str>,
    ) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .set_projection_expression(projection.map(str::to_string))
            .send()
            .await
            .map_err(aws("DynamoDB", "GetItem"))?;
        Ok(out.item().cloned())
    }

    /// An update of the lease item of task range (seq, first_task).
    fn lease_update(
        &self,
        job_id: &str,
        seq: u64,
        first_task: u64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(lease_sk(seq, first_task)))
    }

    pub async fn range_committed(&self, job_id: &str, seq: u64, first_task: u64) -> Result<bool> {
        Ok(self
            .read_item(&job_pk(job_id), &range_sk(seq, first_task), Some("pk"))
            .await?
            .is_some())
    }

    /// Marks a range done and adds its counts, in one transaction that succeeds only the first
    /// time, only while this attempt holds the range's lease and only while the job still runs:
    /// a redelivered or replayed range changes nothing, and nothing is counted on a finished job.
    /// Conflicts and throttling retry the same transaction (on another counter shard).
    pub async fn commit_range(
        &self,
        job_id: &str,
        commit: &RangeCommit,
        lease_attempt: &str,
    ) -> Result<CommitOutcome> {
        let range_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(range_item(job_id, commit, lease_attempt)))
            .condition_expression("attribute_not_exists(pk)");
        let range_put = range_put
            .build()
            .map_err(aws("DynamoDB", "TransactWriteItems"))?;
        let lease_release = Update::builder()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(lease_sk(commit.seq, commit.first_task)))
            // Removing the holder too: a renewal still in flight from this attempt fails.
            .update_expression("SET expires_at = :zero REMOVE attempt")
            .condition_expression("attempt = :me")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":me", s(lease_attempt))
            .build()
            .map_err(aws("DynamoDB", "TransactWriteItems"))?;
        let mut job_running = aws_sdk_dynamodb::types::ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(META))
            .expression_attribute_names("#status", "status");
        let mut names = Vec::new();
        for (i, status) in COMMITTABLE.iter().enumerate() {
            let name = format!(":st{i}");
            job_running = job_running.expression_attribute_values(&name, s(status.as_str()));
            names.push(name);
        }
        let job_running = job_running
            .condition_expression(format!("#status IN ({})", names.join(", ")))
            .build()
            .map_err(aws("DynamoDB", "TransactWriteItems"))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A random shard per attempt: neighbours committing at once rarely meet, and a retry
            // after a conflict goes elsewhere.
            let shard = rand::random_range(0..self.counter_shards as u64);
            let counter_add = Update::builder()
                .table_name(&self.table)
                .key("pk", s(job_pk(job_id)))
                .key("sk", s(format!("COUNT#{shard:04}")))
                .update_expression("ADD succeeded :s, failed :f, bytes :b, ranges :one")
                .expression_attribute_values(":s", n(commit.counters.succeeded))
                .expression_attribute_values(":f", n(commit.counters.failed))
                .expression_attribute_values(":b", n(commit.counters.bytes))
                .expression_attribute_values(":one", n(1))
                .build()
                .map_err(aws("DynamoDB", "TransactWriteItems"))?;
            // Item order is COMMIT_PARTS: range, counter, lease, job.
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(range_put.clone()).build())
                .transact_items(TransactWriteItem::builder().update(counter_add).build())
                .transact_items(
                    TransactWriteItem::builder()
                        .update(lease_release.clone())
                        .build(),
                )
                .transact_items(
                    TransactWriteItem::builder()
                        .condition_check(job_running.clone())
                        .build(),
                )
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(CommitOutcome::Committed),
                Err(err) => err,
            };
            let codes = err
                .as_service_error()
                .map(cancellation_codes)
                .unwrap_or_default();
            let codes: Vec<Option<&str>> = codes.iter().map(|c| c.as_deref()).collect();
            // Classified from status and code alone: no message is built for a retry.
            let (status, code) = crate::error::ErrorMeta::status_and_code(&err);
            let transient = batchops_core::backoff::classify(status, code.as_deref())
                == batchops_core::backoff::ErrorClass::Transient;
            let verdict = match commit_verdict(&codes) {
                CommitVerdict::Unknown if transient => CommitVerdict::Retry,
                CommitVerdict::Unknown
                    if err.as_service_error().is_some_and(transaction_conflict) =>
                {
                    // No reasons given: tell the cases apart by looking.
                    if self
                        .range_committed(job_id, commit.seq, commit.first_task)
                        .await?
                    {
                        CommitVerdict::AlreadyCommitted
                    } else if !COMMITTABLE.contains(&self.get_job(job_id).await?.status) {
                        CommitVerdict::JobStopped
                    } else {
                        CommitVerdict::Retry
                    }
                }
                verdict => verdict,
            };
            if verdict == CommitVerdict::AlreadyCommitted
                && self
                    .range_committer(job_id, commit.seq, commit.first_task)
                    .await?
                    .as_deref()
                    == Some(lease_attempt)
            {
                // The SDK retried a commit whose answer was lost: the first try went through.
                return Ok(CommitOutcome::Committed);
            }
            match verdict {
                CommitVerdict::AlreadyCommitted => {
                    self.release_range_lease(
                        job_id,
                        commit.seq,
                        commit.first_task,
                        lease_attempt,
                        None,
                    )
                    .await?;
                    return Ok(CommitOutcome::AlreadyCommitted);
                }
                CommitVerdict::JobStopped => {
                    self.release_range_lease(
                        job_id,
                        commit.seq,
                        commit.first_task,
                        lease_attempt,
                        None,
                    )
                    .await?;
                    return Ok(CommitOutcome::JobStopped);
                }
                CommitVerdict::LeaseLost => return Ok(CommitOutcome::LeaseLost),
                CommitVerdict::Retry if attempt < COMMIT_ATTEMPTS => {
                    let backoff = batchops_core::backoff::RetryPolicy {
                        max_attempts: COMMIT_ATTEMPTS,
                        base: std::time::Duration::from_millis(25),
                        cap: std::time::Duration::from_secs(2),
                    }
                    .delay(attempt, rand::random::<f64>());
                    tracing::debug!(
                        job_id,
                        seq = commit.seq,
                        attempt,
                        ?codes,
                        "range commit conflicted; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                }
                CommitVerdict::Retry | CommitVerdict::Unknown => {
                    return Err(aws("DynamoDB", "TransactWriteItems")(err))
                }
            }
        }
    }

    /// The attempt that committed the range starting at (seq, first_task), if it is committed.
    async fn range_committer(
        &self,
        job_id: &str,
        seq: u64,
        first_task: u64,
    ) -> Result<Option<String>> {
        Ok(self
            .read_item(&job_pk(job_id), &range_sk(seq, first_task), Some("attempt"))
            .await?
            .map(|item| get_s(&item, "attempt").unwrap_or_default().to_string()))
    }

    /// Writes committed range items as they are, 25 per BatchWriteItem, without the commit's
    /// conditions or counters: for benches that need a job of many ranges quickly (moto's
    /// transactions slow down with the table's size). Never used on a running job.
    pub async fn import_committed_ranges(
        &self,
        job_id: &str,
        commits: &[RangeCommit],
        attempt: &str,
    ) -> Result<()> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        for batch in commits.chunks(25) {
            let mut pending = batch
                .iter()
                .map(|commit| {
                    PutRequest::builder()
                        .set_item(Some(range_item(job_id, commit, attempt)))
                        .build()
                        .map(|put| WriteRequest::builder().put_request(put).build())
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(aws("DynamoDB", "BatchWriteItem"))?;
            for _ in 0..10 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(aws("DynamoDB", "BatchWriteItem"))?;
                pending = out
                    .unprocessed_items()
                    .and_then(|items| items.get(&self.table).cloned())
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
            }
            if !pending.is_empty() {
                return Err(Error::Data(format!(
                    "{} range items of job {job_id} still unprocessed",
                    pending.len()
                )));
            }
        }
        Ok(())
    }

    /// Where the committed range starting at (seq, first_task) ends, and how many tasks its
    /// chunk has (when recorded). None when that range is not committed.
    pub async fn committed_range_end(
        &self,
        job_id: &str,
        seq: u64,
        first_task: u64,
    ) -> Result<Option<(u64, Option<u64>)>> {
        Ok(self
            .read_item(
                &job_pk(job_id),
                &range_sk(seq, first_task),
                Some("end_task, chunk_tasks"),
            )
            .await?
            .map(|item| {
                (
                    get_n(&item, "end_task"),
                    item.contains_key("chunk_tasks")
                        .then(|| get_n(&item, "chunk_tasks")),
                )
            }))
    }

    /// Every committed range of the job, in chunk order.
    pub async fn committed_ranges(&self, job_id: &str) -> Result<Vec<RangeCommit>> {
        Ok(self
            .query_prefix(job_id, "CHUNK#")
            .await?
            .iter()
            .map(range_of_item)
            .collect())
    }

    /// One page of the job's committed ranges in chunk order, after the range at position
    /// `after` (a position this returns; None: from the first), at most `limit` of them, each
    /// with its position; the last position when more may follow. Memory stays bounded by the
    /// page, whatever the number of ranges.
    pub async fn committed_ranges_page(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: i32,
    ) -> Result<(Vec<(String, RangeCommit)>, Option<String>)> {
        let (items, next) = self
            .query_page(&job_pk(job_id), "CHUNK#", after, limit)
            .await?;
        let ranges = items
            .iter()
            .map(|item| {
                let sk = get_s(item, "sk").unwrap_or_default().to_string();
                (sk, range_of_item(item))
            })
            .collect();
        Ok((ranges, next))
    }

    /// One page of the items of partition `pk` whose sort key starts with `prefix`, in sort-key
    /// order, after sort key `after` (None: from the first), at most `limit` of them; the last
    /// sort key when more may follow.
    async fn query_page(
        &self,
        pk: &str,
        prefix: &str,
        after: Option<&str>,
        limit: i32,
    ) -> Result<(Vec<Item>, Option<String>)> {
        let start =
            after.map(|sk| HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))]));
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true)
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(aws("DynamoDB", "Query"))?;
        let items = out.items().to_vec();
        let more = out.last_evaluated_key().is_some_and(|key| !key.is_empty());
        let next = if more {
            items
                .last()
                .and_then(|item| get_s(item, "sk"))
                .map(str::to_string)
        } else {
            None
        };
        Ok((items, next))
    }

    /// [`Store::query_docs`] a page at a time (see [`Store::query_page`]): each document with
    /// its sort key, and where the next page starts.
    pub async fn query_docs_page<T: serde::de::DeserializeOwned>(
        &self,
        pk: &str,
        prefix: &str,
        after: Option<&str>,
        limit: i32,
    ) -> Result<(Vec<(String, T)>, Option<String>)> {
        let (items, next) = self.query_page(pk, prefix, after, limit).await?;
        let docs = items
            .iter()
            .filter_map(|item| Some((get_s(item, "sk")?, get_s(item, "doc")?)))
            .map(|(sk, doc)| {
                serde_json::from_str(doc)
                    .map(|doc| (sk.to_string(), doc))
                    .map_err(|e| Error::Data(format!("{pk}/{sk}: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok((docs, next))
    }

    /// Asks for the lease on a task range until `expires_at` (unix seconds): granted when
    /// nobody holds it, its holder's lease has expired, or this attempt holds it already. A
    /// granted lease counts one more attempt at the range. While it lives, a cancelled job is not
    /// closed and a duplicate delivery of the range backs off.
    pub async fn acquire_range_lease(
        &self,
        job_id: &str,
        seq: u64,
        first_task: u64,
        attempt: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<RangeLease> {
        let result = self
            .lease_update(job_id, seq, first_task)
            .update_expression("SET attempt = :me, expires_at = :until ADD attempts :one")
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now OR attempt = :me")
            .expression_attribute_values(":me", s(attempt))
            .expression_attribute_values(":until", n(expires_at))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes().cloned().unwrap_or_default();
                Ok(RangeLease::Granted {
                    attempts: get_n(&item, "attempts").max(1),
                    last_error: get_s(&item, "last_error").map(str::to_string),
                })
            }
            Err(err) if err.as_service_error().is_some_and(is_conditional_failure) => {
                let item = self
                    .read_item(&job_pk(job_id), &lease_sk(seq, first_task), None)
                    .await?
                    .unwrap_or_default();
                Ok(RangeLease::Busy {
                    holder: get_s(&item, "attempt").unwrap_or_default().to_string(),
                    expires_at: get_n(&item, "expires_at"),
                })
            }
            Err(err) => Err(aws("DynamoDB", "UpdateItem")(err)),
        }
    }

    /// Extends this attempt's lease; false when another attempt has taken it over.
    pub async fn renew_range_lease(
        &self,
        job_id: &str,
        seq: u64,
        first_task: u64,
        attempt: &str,
        expires_at: u64,
    ) -> Result<bool> {
        let result = self
            .lease_update(job_id, seq, first_task)
            .update_expression("SET expires_at = :until")
            .condition_expression("attempt = :me")
            .expression_attribute_values(":me", s(attempt))
            .expression_attribute_values(":until", n(expires_at))
            .send()
            .await;
        condition_held(result, "UpdateItem")
    }

    /// Gives the range's lease up (if this attempt still holds it), recording why the attempt
    /// failed so the attempt that gives up on the range can say.
    pub async fn release_range_lease(
        &self,
        job_id: &str,
        seq: u64,
        first_task: u64,
        attempt: &str,
        error: Option<&str>,
    ) -> Result<()> {
        let mut request = self
            .lease_update(job_id, seq, first_task)
            .condition_expression("attempt = :me")
            .expression_attribute_values(":me", s(attempt))
            .expression_attribute_values(":zero", n(0));
        request = match error {
            Some(error) => request
                .update_expression("SET expires_at = :zero, last_error = :error REMOVE attempt")
                .expression_attribute_values(":error", s(error)),
            None => request.update_expression("SET expires_at = :zero REMOVE attempt"),
        };
        condition_held(request.send().await, "UpdateItem").map(|_| ())
    }

    /// Gives the lease up after an attempt that made progress without committing (a multipart
    /// copy continued in the next invocation): its attempts start counting again.
    pub async fn release_range_lease_after_progress(
        &self,
        job_id: &str,
        seq: u64,
        first_task: u64,
        attempt: &str,
    ) -> Result<()> {
        let result = self
            .lease_update(job_id, seq, first_task)
            .update_expression(
                "SET expires_at = :zero, attempts = :zero REMOVE last_error, attempt",
            )
            .condition_expression("attempt = :me")
            .expression_attribute_values(":me", s(attempt))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        condition_held(result, "UpdateItem").map(|_| ())
    }

    /// Takes the job's planning lease until `expires_at` for `holder`: false when another
    /// planner holds a live one.
    pub async fn acquire_plan_lease(
        &self,
        job_id: &str,
        holder: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(job_pk(job_id)))
            .item("sk", s(PLAN_LEASE))
            .item("holder", s(holder))
            .item("expires_at", n(expires_at))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now OR holder = :me")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":me", s(holder))
            .send()
            .await;
        condition_held(result, "PutItem")
    }

    /// Gives the planning lease up, if `holder` still has it.
    pub async fn release_plan_lease(&self, job_id: &str, holder: &str) -> Result<()> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(PLAN_LEASE))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", s(holder))
            .send()
            .await;
        condition_held(result, "DeleteItem").map(|_| ())
    }

    /// Records the multipart upload a task started, so a later invocation can continue it and
    /// the finalizer can abort it if nobody does.
    pub async fn keep_upload(
        &self,
        job_id: &str,
        seq: u64,
        task: u64,
        upload: &KeptUpload,
    ) -> Result<()> {
        let body = serde_json::to_string(upload).map_err(|e| Error::Data(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(job_pk(job_id)))
            .item("sk", s(upload_sk(seq, task)))
            .item("doc", s(body))
            .send()
            .await
            .map_err(aws("DynamoDB", "PutItem"))?;
        Ok(())
    }

    pub async fn kept_upload(
        &self,
        job_id: &str,
        seq: u64,
        task: u64,
    ) -> Result<Option<KeptUpload>> {
        Ok(self
            .get_doc::<KeptUpload>(&job_pk(job_id), &upload_sk(seq, task))
            .await?
            .map(|(upload, _)| upload))
    }

    pub async fn forget_upload(&self, job_id: &str, seq: u64, task: u64) -> Result<()> {
        self.delete_doc(&job_pk(job_id), &upload_sk(seq, task))
            .await
    }

    /// Every multipart upload the job's tasks still keep, with its (seq, task).
    pub async fn kept_uploads(&self, job_id: &str) -> Result<Vec<((u64, u64), KeptUpload)>> {
        let mut uploads = Vec::new();
        for item in self.query_prefix(job_id, "UPLOAD#").await? {
            let sk = get_s(&item, "sk").unwrap_or_default();
            let mut fields = sk.split('#').skip(1).map(|f| f.parse::<u64>().unwrap_or(0));
            let slot = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
            let doc = get_s(&item, "doc").unwrap_or_default();
            let upload: KeptUpload = serde_json::from_str(doc)
                .map_err(|e| Error::Data(format!("kept upload {sk} of job {job_id}: {e}")))?;
            uploads.push((slot, upload));
        }
        Ok(uploads)
    }

    /// The sweep's last look at the job's progress.
    pub async fn stall_watch(&self, job_id: &str) -> Result<Option<StallWatch>> {
        Ok(self
            .get_doc::<StallWatch>(&job_pk(job_id), STALL_WATCH)
            .await?
            .map(|(watch, _)| watch))
    }

    /// Records the sweep's look (last writer wins: only the sweep writes it).
    pub async fn put_stall_watch(&self, job_id: &str, watch: &StallWatch) -> Result<()> {
        let body = serde_json::to_string(watch).map_err(|e| Error::Data(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(job_pk(job_id)))
            .item("sk", s(STALL_WATCH))
            .item("doc", s(body))
            .send()
            .await
            .map_err(aws("DynamoDB", "PutItem"))?;
        Ok(())
    }

    /// Leases that have not expired at `now` (unix seconds).
    pub async fn live_leases(&self, job_id: &str, now: u64) -> Result<usize> {
        Ok(self
            .query_prefix(job_id, "LEASE#")
            .await?
            .iter()
            .filter(|item| get_n(item, "expires_at") > now)
            .count())
    }
}

/// Once-only markers: an S3 event applied by continuous backup. They expire through the
/// table's TTL on `expires_at`, once SQS can no longer redeliver the event.
impl Store {
    pub async fn marked(&self, pk: &str) -> Result<bool> {
        Ok(self.read_item(pk, "MARK", Some("pk")).await?.is_some())
    }

    /// Puts the marker; false if it was already there.
    pub async fn mark(&self, pk: &str, expires_at: u64) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s("MARK"))
            .item("expires_at", n(expires_at))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        condition_held(result, "PutItem")
    }
}

/// A document item (`pk`, `sk`, JSON `doc`, optimistic `revision`): policies and snapshots.
impl Store {
    /// Writes a document: with `expected_revision`, only over that revision; without, only if
    /// absent. False when the condition failed. `listed_as`: also list the item in the status
    /// index under this kind (see `list_docs`).
    pub async fn put_doc<T: serde::Serialize>(
        &self,
        pk: &str,
        sk: &str,
        doc: &T,
        expected_revision: Option<u64>,
        listed_as: Option<&str>,
    ) -> Result<bool> {
        let body = serde_json::to_string(doc).map_err(|e| Error::Data(e.to_string()))?;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("doc", s(body))
            .item("revision", n(expected_revision.map(|r| r + 1).unwrap_or(0)));
        if let Some(kind) = listed_as {
            // Kinds start with `#`, which no job status does: ListJobs never sees these items.
            request = request.item("status", s(kind)).item("created_at", s(pk));
        }
        request = match expected_revision {
            Some(r) => request
                .condition_expression("revision = :r")
                .expression_attribute_values(":r", n(r)),
            // No revision: create only; a racing writer makes this return false, not overwrite.
            None => request.condition_expression("attribute_not_exists(pk)"),
        };
        condition_held(request.send().await, "PutItem")
    }

    /// The document and its revision.
    pub async fn get_doc<T: serde::de::DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<(T, u64)>> {
        let Some(item) = self.read_item(pk, sk, None).await? else {
            return Ok(None);
        };
        let doc =
            get_s(&item, "doc").ok_or_else(|| Error::Data(format!("{pk}/{sk} has no doc")))?;
        let value =
            serde_json::from_str(doc).map_err(|e| Error::Data(format!("{pk}/{sk}: {e}")))?;
        Ok(Some((value, get_n(&item, "revision"))))
    }

    pub async fn delete_doc(&self, pk: &str, sk: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .send()
            .await
            .map_err(aws("DynamoDB", "DeleteItem"))?;
        Ok(())
    }

    /// Documents under one partition whose sort key starts with `prefix`, in sort-key order.
    pub async fn query_docs<T: serde::de::DeserializeOwned>(
        &self,
        pk: &str,
        prefix: &str,
    ) -> Result<Vec<T>> {
        decode_docs(&self.query_items(pk, Some(prefix)).await?, pk)
    }

    /// Documents put with `listed_as: Some(kind)`, from the status index (no table scan).
    pub async fn list_docs<T: serde::de::DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(STATUS_INDEX)
            .key_condition_expression("#status = :kind")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":kind", s(kind));
        decode_docs(&self.query_all(query).await?, kind)
    }
}

/// The `doc` attributes of `items`, decoded; errors name `context` (a partition, a kind).
fn decode_docs<T: serde::de::DeserializeOwned>(items: &[Item], context: &str) -> Result<Vec<T>> {
    items
        .iter()
        .filter_map(|item| get_s(item, "doc"))
        .map(|doc| serde_json::from_str(doc).map_err(|e| Error::Data(format!("{context}: {e}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::JobsCursor;

    #[test]
    fn jobs_cursor_orders_newest_first_then_by_job_id() {
        let cursor = JobsCursor {
            created_at: "2026-11-30T05:00:00.5Z".into(),
            job_id: "m".into(),
        };
        assert!(cursor.precedes("2026-11-30T05:00:00.1Z", "a"), "older");
        assert!(
            cursor.precedes("2026-11-30T05:00:00.5Z", "z"),
            "same instant, later ID"
        );
        assert!(!cursor.precedes("2026-11-30T05:00:00.5Z", "m"), "itself");
        assert!(!cursor.precedes("2026-11-30T05:00:00.5Z", "b"));
        assert!(!cursor.precedes("2026-11-30T05:00:01Z", "a"), "newer");
    }
}
