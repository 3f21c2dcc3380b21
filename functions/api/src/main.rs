//! Lambda api: API Gateway HTTP API requests -> the job and backup calls (`batchops_aws::api`)
//! and S3 Control's XML job API (`batchops_aws::s3control`), through `batchops_aws::endpoint`
//! as `batchops serve` does. API Gateway's IAM auth has checked the SigV4 signature.
//! Thin: configuration and clients are built once here; this file only maps HTTP in and out.

use batchops_aws::api::ApiRequest;
use batchops_aws::endpoint::{respond, HttpReply};
use batchops_aws::{lambda, App};
use lambda_http::{run, service_fn, Body, Error, Request, RequestExt, Response};

/// The transport-free request the API routes.
fn api_request(request: &Request) -> ApiRequest {
    let query = request.query_string_parameters();
    ApiRequest {
        method: request.method().as_str().to_string(),
        path: request.raw_http_path().to_string(),
        query: query
            .iter()
            .flat_map(|(name, _)| {
                query
                    .all(name)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |value| (name.to_string(), value.to_string()))
            })
            .collect(),
        body: request.body().to_vec(),
    }
}

/// The `x-amz-account-id` header (S3 Control calls).
fn account_id(request: &Request) -> Option<&str> {
    request
        .headers()
        .get("x-amz-account-id")
        .and_then(|value| value.to_str().ok())
}

fn http_response(reply: HttpReply) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .body(Body::Text(String::from_utf8(reply.body)?))?)
}

async fn serve(app: &App, request: Request) -> Result<Response<Body>, Error> {
    http_response(respond(app, &api_request(&request), account_id(&request)).await)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_lambda_tracing();
    let app = App::from_env().await?;
    let app = &app;
    run(service_fn(move |request: Request| serve(app, request))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API Gateway HTTP API (payload 2.0) event, as the Lambda receives it.
    const EVENT: &str = r#"{
      "version": "2.0", "routeKey": "$default", "rawPath": "/jobs/abc/status",
      "rawQueryString": "requestedJobStatus=Cancelled&statusUpdateReason=too+slow",
      "headers": {"content-type": "application/json", "host": "x.execute-api.us-east-1.amazonaws.com", "x-amz-account-id": "123456789012"},
      "queryStringParameters": {"requestedJobStatus": "Cancelled", "statusUpdateReason": "too slow"},
      "requestContext": {"accountId": "123456789012", "apiId": "x", "domainName": "x.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "x", "http": {"method": "POST", "path": "/jobs/abc/status", "protocol": "HTTP/1.1",
        "sourceIp": "192.0.2.1", "userAgent": "curl"}, "requestId": "r", "routeKey": "$default", "stage": "$default",
        "time": "30/Nov/2026:05:00:00 +0000", "timeEpoch": 1796014800000},
      "body": "{\"note\": \"kept\"}", "isBase64Encoded": false
    }"#;

    #[test]
    fn http_api_events_become_api_requests() {
        let request = lambda_http::request::from_str(EVENT).unwrap();
        let api = api_request(&request);
        assert_eq!(api.method, "POST");
        assert_eq!(api.path, "/jobs/abc/status");
        let mut query = api.query.clone();
        query.sort();
        assert_eq!(
            query,
            vec![
                ("requestedJobStatus".to_string(), "Cancelled".to_string()),
                ("statusUpdateReason".to_string(), "too slow".to_string()),
            ]
        );
        assert_eq!(api.body, br#"{"note": "kept"}"#.to_vec());
        assert_eq!(account_id(&request), Some("123456789012"));
    }

    #[test]
    fn api_responses_become_json_http_responses() {
        let response = http_response(HttpReply {
            status: 404,
            content_type: "application/json",
            body: serde_json::json!({"Code": "NoSuchJob", "Message": "job abc not found"})
                .to_string()
                .into_bytes(),
        })
        .unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["content-type"], "application/json");
        let Body::Text(text) = response.body() else {
            panic!("a text body")
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(text).unwrap()["Code"],
            "NoSuchJob"
        );
    }
}
