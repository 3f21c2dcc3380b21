//! Each Lambda handler driven with the event JSON AWS delivers.

use crate::harness::TestEnv;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use batchops_aws::lambda::{finalizer_handler, planner_handler, worker_handler};
use batchops_core::encoding::encode_key;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

fn context() -> Context {
    let mut context = Context::default();
    context.request_id = "test-request".into();
    // Lambda deadlines are epoch milliseconds: two minutes from now.
    context.deadline = (std::time::SystemTime::now() + std::time::Duration::from_secs(120))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    context
}

fn scheduled_event() -> Value {
    json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-22T00:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/batchops-planner"],
        "detail": {}
    })
}

fn sqs_event(bodies: &[(&str, String)]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("AQEB{id}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1700000000000",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1700000000001"
                },
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:batchops-work",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({"Records": records})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handlers_run_a_job_from_real_event_json() {
    let env = TestEnv::new().await;
    env.put(&env.src, "lambda key.txt", "from lambda").await;
    let manifest = env
        .manifest(
            "lambda",
            &[format!("{},{}", env.src, encode_key("lambda key.txt"))],
        )
        .await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;

    // The scheduled tick plans the job and dispatches its one chunk.
    let out = planner_handler(&env.app, LambdaEvent::new(scheduled_event(), context()))
        .await
        .unwrap();
    assert_eq!(out["jobsSeen"], 1);
    assert_eq!(env.describe(&job).await.status, "Active");

    // The worker gets the pointer (as SQS would deliver it) next to a body that is not one.
    let pointer = json!({"job": job, "seq": 0, "first_task": 0}).to_string();
    let event: SqsEvent = serde_json::from_value(sqs_event(&[
        ("good-1", pointer),
        ("bad-1", "{not json".to_string()),
    ]))
    .unwrap();
    let response: SqsBatchResponse = worker_handler(&env.app, LambdaEvent::new(event, context()))
        .await
        .unwrap();
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["bad-1"], "only the bad body is retried");
    assert_eq!(
        env.get(&env.dst, "copied/lambda key.txt").await,
        Some(b"from lambda".to_vec())
    );

    // The finalizer closes the job; a second delivery is a no-op.
    let finalize = json!({"job": job}).to_string();
    for _ in 0..2 {
        let event: SqsEvent =
            serde_json::from_value(sqs_event(&[("fin-1", finalize.clone())])).unwrap();
        let response = finalizer_handler(&env.app, LambdaEvent::new(event, context()))
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
    }
    let described = env.describe(&job).await;
    assert_eq!(described.status, "Complete");
    assert_eq!(described.progress_summary.number_of_tasks_succeeded, 1);
    env.audit(&job).await;

    // The planner also takes plan-queue SQS batches.
    let event = sqs_event(&[("plan-1", json!({"job": job}).to_string())]);
    let out = planner_handler(&env.app, LambdaEvent::new(event, context()))
        .await
        .unwrap();
    assert_eq!(out["batchItemFailures"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_planner_continues_itself_through_the_plan_queue() {
    let env = TestEnv::with_vars(&[
        ("BATCHOPS_CHUNK_SIZE", "2"),
        ("BATCHOPS_PLAN_SLICE_SECONDS", "0.001"),
        ("BATCHOPS_CHECKPOINT_EVERY_CHUNKS", "1"),
    ])
    .await;
    let lines: Vec<String> = (0..6).map(|i| format!("{},k{i}", env.src)).collect();
    let manifest = env.manifest("continue", &lines).await;
    let job = env
        .create(env.request_json(&manifest, &["Bucket", "Key"]))
        .await;
    // Drain the wake-up CreateJob sent, then invoke the planner with it like SQS would.
    let mut invocations = 0;
    loop {
        let messages = env
            .app
            .queues
            .receive(&env.app.queues.plan_url, 10, 1, 30)
            .await
            .unwrap();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            let event = sqs_event(&[("m", message.body.clone())]);
            planner_handler(&env.app, LambdaEvent::new(event, context()))
                .await
                .unwrap();
            env.app
                .queues
                .delete(&env.app.queues.plan_url, &message.receipt_handle)
                .await
                .unwrap();
            invocations += 1;
        }
        assert!(invocations < 20);
    }
    let record = env.app.store.get_job(&job).await.unwrap();
    assert!(invocations >= 3, "planning took {invocations} invocations");
    assert_eq!(record.plan.progress.tasks, 6);
    assert!(record.plan.finished);
    assert_eq!(record.status, batchops_core::JobStatus::Active);
}
