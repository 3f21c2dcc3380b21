//! AWS clients, built once per process.

use crate::config::Config;
use aws_config::BehaviorVersion;

#[derive(Clone, Debug)]
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub events: aws_sdk_eventbridge::Client,
    /// LambdaInvoke jobs. Retries are batchops' own (`invoke::Invoker`): the SDK's would invoke
    /// again after a timeout, when the function may already have run.
    pub lambda: aws_sdk_lambda::Client,
}

impl Clients {
    /// Loads the standard AWS configuration chain. With `AWS_ENDPOINT_URL` set (the local stack),
    /// S3 uses path-style addressing and checksums only where the API requires them. Each
    /// client also honours its service's own endpoint variable (`AWS_ENDPOINT_URL_LAMBDA`: a
    /// local Invoke endpoint such as `scripts/lambda_emulator.py --invoke-port`).
    pub async fn load(config: &Config) -> Self {
        let local = std::env::var("AWS_ENDPOINT_URL")
            .map(|v| !v.is_empty())
            .unwrap_or(false);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()));
        if local && std::env::var("AWS_ACCESS_KEY_ID").is_err() {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "batchops-local",
            ));
        }
        let shared = loader.load().await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared);
        if local {
            s3 = s3
                .force_path_style(true)
                .request_checksum_calculation(
                    aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                )
                .response_checksum_validation(
                    aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                );
        }
        Clients {
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            sqs: aws_sdk_sqs::Client::new(&shared),
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            events: aws_sdk_eventbridge::Client::new(&shared),
            lambda: aws_sdk_lambda::Client::from_conf(
                aws_sdk_lambda::config::Builder::from(&shared)
                    .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
                    .build(),
            ),
        }
    }
}
