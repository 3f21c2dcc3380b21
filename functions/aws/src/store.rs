//! The DynamoDB table: job items (optimistically locked), request tokens, committed task ranges,
//! counter shards and worker leases. Per-object rows never come here.

use crate::error::{aws, Error, Result};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use batchops_core::counts::Counters;
use batchops_core::report::TaskStatus;
use batchops_core::{JobRecord, JobStatus};
use std::collections::HashMap;

pub const STATUS_INDEX: &str = "by-status";
const META: &str = "META";

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

fn lease_sk(seq: u64, first_task: u64, attempt: &str) -> String {
    format!("LEASE#{seq:010}#{first_task:07}#{attempt}")
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
}

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

fn transaction_conflict<E: ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("TransactionCanceledException")
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
            .send()
            .await;
        match result {
            Ok(_) => Ok((record.job_id.clone(), Created::New)),
            Err(err) if err.as_service_error().is_some_and(transaction_conflict) => {
                let item = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", s(format!("TOKEN#{token}")))
                    .key("sk", s("TOKEN"))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(aws("DynamoDB", "GetItem"))?;
                let job_id = item
                    .item()
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
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(META))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws("DynamoDB", "GetItem"))?;
        match out.item() {
            Some(item) => Self::decode_job(item),
            None => Err(Error::JobNotFound(job_id.to_string())),
        }
    }

    /// Writes `record` if nobody wrote the job since it was read; bumps its revision.
    /// Returns false on a lost race (re-read and decide again).
    pub async fn put_job(&self, record: &mut JobRecord) -> Result<bool> {
        let expected = record.revision;
        record.revision += 1;
        let item = Self::job_item(record)?;
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
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(is_conditional_failure) => {
                record.revision = expected;
                Ok(false)
            }
            Err(err) => {
                record.revision = expected;
                Err(aws("DynamoDB", "PutItem")(err))
            }
        }
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
        let mut jobs = Vec::new();
        for status in statuses {
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
        }
        jobs.sort_by(|a, b| list_order((&a.created_at, &a.job_id), (&b.created_at, &b.job_id)));
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn query_prefix(&self, job_id: &str, prefix: &str) -> Result<Vec<Item>> {
        self.query_items(&job_pk(job_id), prefix).await
    }

    /// Every item of partition `pk` whose sort key starts with `prefix`, in sort-key order.
    async fn query_items(&self, pk: &str, prefix: &str) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":prefix", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(aws("DynamoDB", "Query"))?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        Ok(items)
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

    pub async fn range_committed(&self, job_id: &str, seq: u64, first_task: u64) -> Result<bool> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(range_sk(seq, first_task)))
            .consistent_read(true)
            .projection_expression("pk")
            .send()
            .await
            .map_err(aws("DynamoDB", "GetItem"))?;
        Ok(out.item().is_some())
    }

    /// Marks a range done and adds its counts, in one transaction that succeeds only the first
    /// time: a redelivered or replayed range changes nothing. Also drops the worker's lease.
    pub async fn commit_range(
        &self,
        job_id: &str,
        commit: &RangeCommit,
        lease_attempt: &str,
    ) -> Result<CommitOutcome> {
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
        let mut range_put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(job_pk(job_id)))
            .item("sk", s(range_sk(commit.seq, commit.first_task)))
            .item("seq", n(commit.seq))
            .item("first_task", n(commit.first_task))
            .item("end_task", n(commit.end_task))
            .item("succeeded", n(commit.counters.succeeded))
            .item("failed", n(commit.counters.failed))
            .item("bytes", n(commit.counters.bytes))
            .item("shards", AttributeValue::L(shards))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(fragment) = &commit.fragment {
            range_put = range_put.item("fragment", s(fragment.clone()));
        }
        let range_put = range_put
            .build()
            .map_err(aws("DynamoDB", "TransactWriteItems"))?;
        let shard = commit.seq % self.counter_shards as u64;
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
        let lease_delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key(
                "sk",
                s(lease_sk(commit.seq, commit.first_task, lease_attempt)),
            )
            .build()
            .map_err(aws("DynamoDB", "TransactWriteItems"))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(range_put).build())
            .transact_items(TransactWriteItem::builder().update(counter_add).build())
            .transact_items(TransactWriteItem::builder().delete(lease_delete).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(CommitOutcome::Committed),
            Err(err) if err.as_service_error().is_some_and(transaction_conflict) => {
                // Cancelled: either our condition failed (committed before) or a transient
                // conflict. Tell them apart by looking.
                if self
                    .range_committed(job_id, commit.seq, commit.first_task)
                    .await?
                {
                    self.drop_lease(job_id, commit.seq, commit.first_task, lease_attempt)
                        .await?;
                    Ok(CommitOutcome::AlreadyCommitted)
                } else {
                    Err(aws("DynamoDB", "TransactWriteItems")(err))
                }
            }
            Err(err) => Err(aws("DynamoDB", "TransactWriteItems")(err)),
        }
    }

    /// Every committed range of the job, in chunk order.
    pub async fn committed_ranges(&self, job_id: &str) -> Result<Vec<RangeCommit>> {
        let mut ranges = Vec::new();
        for item in self.query_prefix(job_id, "CHUNK#").await? {
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
            ranges.push(RangeCommit {
                seq: get_n(&item, "seq"),
                first_task: get_n(&item, "first_task"),
                end_task: get_n(&item, "end_task"),
                counters: Counters {
                    succeeded: get_n(&item, "succeeded"),
                    failed: get_n(&item, "failed"),
                    bytes: get_n(&item, "bytes"),
                    ranges: 1,
                },
                shards,
                fragment: get_s(&item, "fragment").map(str::to_string),
            });
        }
        Ok(ranges)
    }

    /// A worker announces it is running a range until `expires_at` (unix seconds), so a
    /// cancelled job is not closed while tasks are still writing.
    pub async fn put_lease(
        &self,
        job_id: &str,
        seq: u64,
        first_task: u64,
        attempt: &str,
        expires_at: u64,
    ) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(job_pk(job_id)))
            .item("sk", s(lease_sk(seq, first_task, attempt)))
            .item("expires_at", n(expires_at))
            .send()
            .await
            .map_err(aws("DynamoDB", "PutItem"))?;
        Ok(())
    }

    pub async fn drop_lease(
        &self,
        job_id: &str,
        seq: u64,
        first_task: u64,
        attempt: &str,
    ) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(job_pk(job_id)))
            .key("sk", s(lease_sk(seq, first_task, attempt)))
            .send()
            .await
            .map_err(aws("DynamoDB", "DeleteItem"))?;
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
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s("MARK"))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws("DynamoDB", "GetItem"))?;
        Ok(out.item().is_some())
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
        match result {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
            Err(err) => Err(aws("DynamoDB", "PutItem")(err)),
        }
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
        match request.send().await {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
            Err(err) => Err(aws("DynamoDB", "PutItem")(err)),
        }
    }

    /// The document and its revision.
    pub async fn get_doc<T: serde::de::DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<(T, u64)>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(aws("DynamoDB", "GetItem"))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let doc = get_s(item, "doc").ok_or_else(|| Error::Data(format!("{pk}/{sk} has no doc")))?;
        let value =
            serde_json::from_str(doc).map_err(|e| Error::Data(format!("{pk}/{sk}: {e}")))?;
        Ok(Some((value, get_n(item, "revision"))))
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
        self.query_items(pk, prefix)
            .await?
            .iter()
            .filter_map(|item| get_s(item, "doc"))
            .map(|doc| serde_json::from_str(doc).map_err(|e| Error::Data(format!("{pk}: {e}"))))
            .collect()
    }

    /// Documents put with `listed_as: Some(kind)`, from the status index (no table scan).
    pub async fn list_docs<T: serde::de::DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>> {
        let mut docs = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(STATUS_INDEX)
                .key_condition_expression("#status = :kind")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":kind", s(kind))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(aws("DynamoDB", "Query"))?;
            for item in out.items() {
                if let Some(doc) = get_s(item, "doc") {
                    docs.push(serde_json::from_str(doc).map_err(|e| Error::Data(e.to_string()))?);
                }
            }
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        Ok(docs)
    }
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
