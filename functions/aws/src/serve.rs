//! `batchops serve`: the `api` Lambda's routes over plain HTTP/1.1 on a local address, through
//! the same [`crate::endpoint`]. S3 Control calls (`/v20180820/...`) must be SigV4-signed with
//! the access key `serve` is given ([`crate::s3control::sigv4`]), as API Gateway's IAM auth
//! requires on Lambda; the JSON routes are not authenticated, so `serve` is for a loopback or
//! otherwise trusted address.

use crate::api::ApiRequest;
use crate::endpoint::{self, HttpReply};
use crate::s3control::{self, sigv4, XmlResponse};
use crate::App;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Request bodies larger than this are refused (job documents are a few KB).
const MAX_BODY_BYTES: usize = 8 << 20;
/// A request line and headers larger than this are refused.
const MAX_HEAD_BYTES: usize = 64 << 10;
const MAX_HEADERS: usize = 100;

/// What `serve` checks S3 Control calls against.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// `None`: every S3 Control call is refused (AccessDenied), saying how to configure one.
    pub credentials: Option<sigv4::Credentials>,
}

/// Serves connections from `listener` until the task is dropped; one task per connection.
pub async fn serve(app: Arc<App>, listener: TcpListener, options: ServeOptions) {
    let options = Arc::new(options);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        let options = options.clone();
        tokio::spawn(async move {
            if let Err(err) = connection(&app, &options, stream).await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
}

/// One request as read off the wire (HTTP/1.1, `Content-Length` bodies).
struct WireRequest {
    method: String,
    /// The request target's path and query, as sent.
    raw_path: String,
    raw_query: String,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

/// Answers requests on one connection until the client closes it (or asks to).
async fn connection(
    app: &App,
    options: &ServeOptions,
    mut stream: TcpStream,
) -> std::io::Result<()> {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let request = match read_request(&mut stream, &mut buffer).await? {
            ReadOutcome::Closed => return Ok(()),
            ReadOutcome::Bad(reply) => {
                write_reply(&mut stream, &reply, false).await?;
                return Ok(());
            }
            ReadOutcome::Request(request) => request,
        };
        let reply = answer(app, options, &request).await;
        write_reply(&mut stream, &reply, request.keep_alive).await?;
        if !request.keep_alive {
            return Ok(());
        }
    }
}

enum ReadOutcome {
    Closed,
    Bad(HttpReply),
    Request(WireRequest),
}

async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<ReadOutcome> {
    let mut chunk = [0u8; 16 << 10];
    // The head: read until httparse has it all.
    let (head_len, mut request) = loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buffer) {
            Ok(httparse::Status::Complete(len)) => {
                let target = parsed.path.unwrap_or("/");
                // An absolute-form target (`http://host/path`) is reduced to its path.
                let target = match target.split_once("://") {
                    Some((_, rest)) => &rest[rest.find('/').unwrap_or(rest.len())..],
                    None => target,
                };
                let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect();
                let version_1_0 = parsed.version == Some(0);
                let connection = header(&headers, "connection").map(str::to_ascii_lowercase);
                let keep_alive = match connection.as_deref() {
                    Some("close") => false,
                    Some("keep-alive") => true,
                    _ => !version_1_0,
                };
                break (
                    len,
                    WireRequest {
                        method: parsed.method.unwrap_or("GET").to_string(),
                        raw_path: raw_path.to_string(),
                        raw_query: raw_query.to_string(),
                        headers,
                        body: Vec::new(),
                        keep_alive,
                    },
                );
            }
            Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD_BYTES => {}
            Ok(httparse::Status::Partial) => {
                return Ok(ReadOutcome::Bad(json_error(
                    431,
                    "RequestHeaderFieldsTooLarge",
                    &format!("the request line and headers exceed {MAX_HEAD_BYTES} bytes"),
                )))
            }
            Err(err) => {
                return Ok(ReadOutcome::Bad(json_error(
                    400,
                    "BadRequest",
                    &format!("not an HTTP/1.1 request: {err}"),
                )))
            }
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(ReadOutcome::Closed);
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    buffer.drain(..head_len);
    if header(&request.headers, "transfer-encoding").is_some() {
        return Ok(ReadOutcome::Bad(json_error(
            411,
            "MissingContentLength",
            "chunked request bodies are not taken: send Content-Length",
        )));
    }
    let length = match header(&request.headers, "content-length").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(length)) if length <= MAX_BODY_BYTES => length,
        Some(Ok(length)) => {
            return Ok(ReadOutcome::Bad(json_error(
                413,
                "RequestTooLarge",
                &format!("the body has {length} bytes, at most {MAX_BODY_BYTES} are taken"),
            )))
        }
        Some(Err(_)) => {
            return Ok(ReadOutcome::Bad(json_error(
                400,
                "BadRequest",
                "Content-Length is not a number",
            )))
        }
    };
    if header(&request.headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        && buffer.len() < length
    {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    while buffer.len() < length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(ReadOutcome::Closed);
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    request.body = buffer.drain(..length).collect();
    Ok(ReadOutcome::Request(request))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn write_reply(
    stream: &mut TcpStream,
    reply: &HttpReply,
    keep_alive: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nx-amz-request-id: {}\r\nConnection: {}\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len(),
        uuid::Uuid::new_v4().simple(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&reply.body).await?;
    stream.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "",
    }
}

async fn answer(app: &App, options: &ServeOptions, request: &WireRequest) -> HttpReply {
    let api_request = ApiRequest {
        method: request.method.clone(),
        path: decode(&request.raw_path),
        query: parse_query(&request.raw_query),
        body: request.body.clone(),
    };
    if s3control::is_s3control_path(&api_request.path) {
        let signed = sigv4::SignedRequest {
            method: &request.method,
            raw_path: &request.raw_path,
            raw_query: &request.raw_query,
            headers: request.headers.clone(),
            body: &request.body,
        };
        if let Err(refusal) = authenticate(options, &signed) {
            tracing::info!(code = refusal.code, message = %refusal.message, "S3 Control call refused");
            return XmlResponse::error(403, refusal.code, &refusal.message).into();
        }
    }
    let account_id = header(&request.headers, "x-amz-account-id");
    endpoint::respond(app, &api_request, account_id).await
}

fn authenticate(
    options: &ServeOptions,
    request: &sigv4::SignedRequest<'_>,
) -> Result<(), sigv4::Refusal> {
    match &options.credentials {
        Some(credentials) => sigv4::verify(request, credentials, OffsetDateTime::now_utc()),
        None => Err(sigv4::Refusal {
            code: "AccessDenied",
            message: "batchops serve has no access key for S3 Control calls: start it with --access-key-id and --secret-access-key (or BATCHOPS_SERVE_ACCESS_KEY_ID and BATCHOPS_SERVE_SECRET_ACCESS_KEY)".into(),
        }),
    }
}

fn json_error(status: u16, code: &str, message: &str) -> HttpReply {
    HttpReply {
        status,
        content_type: "application/json",
        body: serde_json::json!({"Code": code, "Message": message})
            .to_string()
            .into_bytes(),
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A query string's pairs, decoded (`+` is a space, as in forms and API Gateway).
fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                decode(&name.replace('+', " ")),
                decode(&value.replace('+', " ")),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded_and_repeats_kept() {
        assert_eq!(
            parse_query("jobStatuses=Active&jobStatuses=New&statusUpdateReason=too+slow%21&flag"),
            vec![
                ("jobStatuses".to_string(), "Active".to_string()),
                ("jobStatuses".to_string(), "New".to_string()),
                ("statusUpdateReason".to_string(), "too slow!".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
        assert!(parse_query("").is_empty());
    }
}
