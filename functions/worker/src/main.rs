//! Lambda worker: SQS batch of chunk pointers -> run and commit tasks (ReportBatchItemFailures).
//! Thin: configuration and clients are built once here; the work is in `batchops_aws`.

use batchops_aws::{lambda, App};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_lambda_tracing();
    let app = App::from_env().await?;
    let app = &app;
    run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::sqs::SqsEvent>| async move {
            lambda::worker_handler(app, event).await
        },
    ))
    .await
}
