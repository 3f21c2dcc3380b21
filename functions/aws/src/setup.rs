//! `batchops local init`: creates the table, queues (work queue with its DLQ, plan, finalize
//! and S3 events queues) and the control bucket, leaving whatever already exists alone.

use crate::clients::Clients;
use crate::config::Config;
use crate::error::{aws, Result};
use crate::store::STATUS_INDEX;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InitReport {
    pub created: Vec<String>,
    pub existing: Vec<String>,
}

/// Visibility timeout of the local work queue. Short, because the local runtime extends it by
/// heartbeats while a chunk runs: a killed runtime's chunks come back this soon.
pub fn work_visibility_seconds(config: &Config) -> i32 {
    config.local_visibility.as_secs().min(43_200) as i32
}

pub async fn init(clients: &Clients, config: &Config) -> Result<InitReport> {
    let mut report = InitReport::default();
    let table = &config.table;
    let exists = clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .is_ok();
    if exists {
        report.existing.push(format!("table {table}"));
    } else {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        clients
            .dynamodb
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk").map_err(aws("DynamoDB", "CreateTable"))?)
            .attribute_definitions(attr("sk").map_err(aws("DynamoDB", "CreateTable"))?)
            .attribute_definitions(attr("status").map_err(aws("DynamoDB", "CreateTable"))?)
            .attribute_definitions(attr("created_at").map_err(aws("DynamoDB", "CreateTable"))?)
            .key_schema(key("pk", KeyType::Hash).map_err(aws("DynamoDB", "CreateTable"))?)
            .key_schema(key("sk", KeyType::Range).map_err(aws("DynamoDB", "CreateTable"))?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(STATUS_INDEX)
                    .key_schema(
                        key("status", KeyType::Hash).map_err(aws("DynamoDB", "CreateTable"))?,
                    )
                    .key_schema(
                        key("created_at", KeyType::Range)
                            .map_err(aws("DynamoDB", "CreateTable"))?,
                    )
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(aws("DynamoDB", "CreateTable"))?,
            )
            .send()
            .await
            .map_err(aws("DynamoDB", "CreateTable"))?;
        report.created.push(format!("table {table}"));
    }

    let redrive = dead_letter_queue(clients, &config.work_queue, &mut report).await?;
    let visibility = work_visibility_seconds(config).to_string();
    create_queue(
        clients,
        &config.work_queue,
        &[
            (QueueAttributeName::RedrivePolicy, redrive),
            (QueueAttributeName::VisibilityTimeout, visibility),
        ],
        &mut report,
    )
    .await?;
    create_queue(
        clients,
        &config.plan_queue,
        &[(QueueAttributeName::VisibilityTimeout, "60".into())],
        &mut report,
    )
    .await?;
    create_queue(
        clients,
        &config.finalize_queue,
        &[(QueueAttributeName::VisibilityTimeout, "10".into())],
        &mut report,
    )
    .await?;
    // A notification that never succeeds ends in the DLQ instead of keeping `run
    // --until-idle` busy.
    let redrive = dead_letter_queue(clients, &config.events_queue, &mut report).await?;
    create_queue(
        clients,
        &config.events_queue,
        &[
            (QueueAttributeName::RedrivePolicy, redrive),
            (QueueAttributeName::VisibilityTimeout, "120".into()),
        ],
        &mut report,
    )
    .await?;

    let bucket = &config.control_bucket;
    if clients.s3.head_bucket().bucket(bucket).send().await.is_ok() {
        report.existing.push(format!("bucket {bucket}"));
    } else {
        clients
            .s3
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(aws("S3", "CreateBucket"))?;
        report.created.push(format!("bucket {bucket}"));
    }
    // Job status events: the default bus always exists; a named one is created here.
    if let Some(bus) = config
        .event_bus
        .as_ref()
        .filter(|bus| *bus != "default" && !bus.starts_with("arn:"))
    {
        let events = &clients.events;
        if events.describe_event_bus().name(bus).send().await.is_ok() {
            report.existing.push(format!("event bus {bus}"));
        } else {
            events
                .create_event_bus()
                .name(bus)
                .send()
                .await
                .map_err(aws("EventBridge", "CreateEventBus"))?;
            report.created.push(format!("event bus {bus}"));
        }
    }
    Ok(report)
}

/// Creates `<queue>-dlq`; returns the RedrivePolicy that sends `queue`'s messages there after
/// five receives.
async fn dead_letter_queue(
    clients: &Clients,
    queue: &str,
    report: &mut InitReport,
) -> Result<String> {
    let dlq_url = create_queue(clients, &format!("{queue}-dlq"), &[], report).await?;
    let dlq_arn = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws("SQS", "GetQueueAttributes"))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    Ok(serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}).to_string())
}

async fn create_queue(
    clients: &Clients,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
    report: &mut InitReport,
) -> Result<String> {
    if let Ok(out) = clients.sqs.get_queue_url().queue_name(name).send().await {
        if let Some(url) = out.queue_url() {
            report.existing.push(format!("queue {name}"));
            return Ok(url.to_string());
        }
    }
    let mut request = clients.sqs.create_queue().queue_name(name);
    for (key, value) in attributes {
        request = request.attributes(key.clone(), value);
    }
    let out = request.send().await.map_err(aws("SQS", "CreateQueue"))?;
    report.created.push(format!("queue {name}"));
    Ok(out.queue_url().unwrap_or_default().to_string())
}
