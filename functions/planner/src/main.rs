//! Lambda planner: EventBridge schedule or plan-queue SQS batch -> advance jobs by a bounded slice.
//! Thin: configuration and clients are built once here; the work is in `batchops_aws`.

use batchops_aws::{lambda, App};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_lambda_tracing();
    let app = App::from_env().await?;
    let app = &app;
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            lambda::planner_handler(app, event).await
        },
    ))
    .await
}
