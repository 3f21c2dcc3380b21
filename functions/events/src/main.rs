//! Lambda events: SQS batches of S3 event notifications -> continuous backup copies and runs
//! started by S3 Inventory reports landing (ReportBatchItemFailures).
//! Thin: configuration and clients are built once here; the work is in `batchops_aws`.

use aws_lambda_events::sqs::SqsEvent;
use batchops_aws::{lambda, App};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_lambda_tracing();
    let app = App::from_env().await?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        lambda::events_handler(app, event).await
    }))
    .await
}
