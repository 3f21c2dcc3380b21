//! SQS: the work queue of chunk pointers, and the plan and finalize queues that wake the planner
//! and finalizer for one job.

use crate::error::{aws, Error, Result};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use serde::{Deserialize, Serialize};

/// What the work queue carries: run tasks `first_task..` of chunk `seq` of `job`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPointer {
    pub job: String,
    pub seq: u64,
    pub first_task: u64,
}

/// What the plan and finalize queues carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPointer {
    pub job: String,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub body: String,
    pub receipt_handle: String,
}

#[derive(Clone, Debug)]
pub struct Queues {
    client: Client,
    pub work_url: String,
    pub plan_url: String,
    pub finalize_url: String,
}

pub async fn resolve(client: &Client, name_or_url: &str) -> Result<String> {
    if name_or_url.starts_with("http://") || name_or_url.starts_with("https://") {
        return Ok(name_or_url.to_string());
    }
    let out = client
        .get_queue_url()
        .queue_name(name_or_url)
        .send()
        .await
        .map_err(|e| Error::Invalid(format!("queue `{name_or_url}` not found ({}); run `batchops local init` or set the queue URL", crate::error::describe_sdk(&e))))?;
    out.queue_url()
        .map(str::to_string)
        .ok_or_else(|| Error::Data(format!("no URL for queue {name_or_url}")))
}

impl Queues {
    /// The SQS client, for queues resolved later (the optional events queue).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn resolve(client: Client, work: &str, plan: &str, finalize: &str) -> Result<Self> {
        // Asked at once: every command (and the runtime) starts with these three round trips.
        let (work_url, plan_url, finalize_url) = tokio::try_join!(
            resolve(&client, work),
            resolve(&client, plan),
            resolve(&client, finalize)
        )?;
        Ok(Queues {
            work_url,
            plan_url,
            finalize_url,
            client,
        })
    }

    /// Sends chunk pointers in batches of ten, retrying entries SQS reports as failed.
    pub async fn send_chunks(&self, pointers: &[ChunkPointer]) -> Result<()> {
        for batch in pointers.chunks(10) {
            let mut pending: Vec<(String, String)> = batch
                .iter()
                .enumerate()
                .map(|(i, p)| serde_json::to_string(p).map(|body| (i.to_string(), body)))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::Data(e.to_string()))?;
            for _attempt in 0..5 {
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(body)
                            .build()
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(aws("SQS", "SendMessageBatch"))?;
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.work_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(aws("SQS", "SendMessageBatch"))?;
                let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
                pending.retain(|(id, _)| failed.contains(&id.as_str()));
                if pending.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            if !pending.is_empty() {
                return Err(Error::Aws {
                    service: "SQS",
                    operation: "SendMessageBatch",
                    message: format!("{} messages still failing after retries", pending.len()),
                    status: None,
                    code: None,
                });
            }
        }
        Ok(())
    }

    pub async fn send_chunk(&self, pointer: &ChunkPointer) -> Result<()> {
        self.send_json(&self.work_url, pointer).await
    }

    pub async fn request_planning(&self, job_id: &str) -> Result<()> {
        self.send_json(
            &self.plan_url,
            &JobPointer {
                job: job_id.to_string(),
            },
        )
        .await
    }

    pub async fn request_finalize(&self, job_id: &str) -> Result<()> {
        self.send_json(
            &self.finalize_url,
            &JobPointer {
                job: job_id.to_string(),
            },
        )
        .await
    }

    async fn send_json<T: Serialize>(&self, url: &str, value: &T) -> Result<()> {
        let body = serde_json::to_string(value).map_err(|e| Error::Data(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map_err(aws("SQS", "SendMessage"))?;
        Ok(())
    }

    /// Long-polls up to `max` messages (the local runtime's stand-in for Lambda's poller).
    pub async fn receive(
        &self,
        url: &str,
        max: i32,
        wait_seconds: i32,
        visibility_seconds: i32,
    ) -> Result<Vec<Received>> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(visibility_seconds)
            .send()
            .await
            .map_err(aws("SQS", "ReceiveMessage"))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Received {
                    message_id: m.message_id().unwrap_or_default().to_string(),
                    body: m.body()?.to_string(),
                    receipt_handle: m.receipt_handle()?.to_string(),
                })
            })
            .collect())
    }

    pub async fn delete(&self, url: &str, receipt_handle: &str) -> Result<()> {
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(aws("SQS", "DeleteMessage"))?;
        Ok(())
    }

    /// Messages waiting or in flight (approximate, as SQS counts them).
    pub async fn pending(&self, url: &str) -> Result<u64> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        self.count(
            url,
            &[
                A::ApproximateNumberOfMessages,
                A::ApproximateNumberOfMessagesNotVisible,
            ],
        )
        .await
    }

    /// Messages waiting to be received, delayed ones included (in-flight ones are not).
    pub async fn waiting(&self, url: &str) -> Result<u64> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        self.count(
            url,
            &[
                A::ApproximateNumberOfMessages,
                A::ApproximateNumberOfMessagesDelayed,
            ],
        )
        .await
    }

    /// The sum of these approximate message counts of the queue.
    async fn count(
        &self,
        url: &str,
        counts: &[aws_sdk_sqs::types::QueueAttributeName],
    ) -> Result<u64> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(counts.to_vec()))
            .send()
            .await
            .map_err(aws("SQS", "GetQueueAttributes"))?;
        let attrs = out.attributes();
        Ok(counts
            .iter()
            .map(|name| {
                attrs
                    .and_then(|m| m.get(name))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum())
    }
}

impl Queues {
    /// Makes a received message visible again after `seconds` (a retry sooner than the queue's
    /// visibility timeout).
    pub async fn release(&self, url: &str, receipt_handle: &str, seconds: i32) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(aws("SQS", "ChangeMessageVisibility"))?;
        Ok(())
    }
}
