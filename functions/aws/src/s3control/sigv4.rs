//! Checks a request's AWS Signature Version 4 (`Authorization: AWS4-HMAC-SHA256 ...`), as S3
//! does (service `s3`, the path as sent, the body hash in `X-Amz-Content-SHA256`), against one
//! access key: what `batchops serve` does for S3 Control calls.
//!
//! The refusals are S3's: `AccessDenied` (no or a malformed signature), `InvalidAccessKeyId`,
//! `SignatureDoesNotMatch`, `RequestTimeTooSkewed`, `XAmzContentSHA256Mismatch`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The one access key `serve` accepts.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A request as signed: headers with lower-case names, the path and query as sent.
#[derive(Debug, Clone, Default)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

/// Why a request is refused: S3's error code, HTTP status 403, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// S3 allows 15 minutes between the signer's clock and its own.
const MAX_SKEW_SECONDS: i64 = 15 * 60;

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Checks `request`'s signature against `credentials` at time `now`.
pub fn verify(
    request: &SignedRequest<'_>,
    credentials: &Credentials,
    now: OffsetDateTime,
) -> Result<(), Refusal> {
    let authorization = request.header("authorization").ok_or_else(|| {
        refuse(
            "AccessDenied",
            "the request is not signed: batchops serve takes SigV4-signed S3 Control calls",
        )
    })?;
    let parts = parse_authorization(authorization)?;
    let scope: Vec<&str> = parts.credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(refuse(
            "AuthorizationHeaderMalformed",
            format!("the credential scope `{}` is malformed", parts.credential),
        ));
    };
    if *access_key != credentials.access_key_id {
        return Err(refuse(
            "InvalidAccessKeyId",
            format!(
                "the access key ID `{access_key}` is not the one batchops serve is configured with"
            ),
        ));
    }
    if *service != "s3" {
        return Err(refuse(
            "AuthorizationHeaderMalformed",
            format!("the credential scope's service is `{service}`, expected `s3`"),
        ));
    }
    let amz_date = request
        .header("x-amz-date")
        .ok_or_else(|| refuse("AccessDenied", "the X-Amz-Date header is missing"))?;
    let signed_at = parse_amz_date(amz_date)?;
    if !amz_date.starts_with(date) {
        return Err(refuse(
            "AuthorizationHeaderMalformed",
            format!("the credential scope's date {date} is not X-Amz-Date's {amz_date}"),
        ));
    }
    if (now - signed_at).whole_seconds().abs() > MAX_SKEW_SECONDS {
        return Err(refuse(
            "RequestTimeTooSkewed",
            format!("the request was signed at {amz_date}, more than 15 minutes from now"),
        ));
    }
    if !parts.signed_headers.contains(&"host") {
        return Err(refuse(
            "AccessDenied",
            "the signature must cover the Host header",
        ));
    }
    let payload_hash = request
        .header("x-amz-content-sha256")
        .ok_or_else(|| refuse("AccessDenied", "the X-Amz-Content-SHA256 header is missing"))?;
    if payload_hash != "UNSIGNED-PAYLOAD"
        && payload_hash != hex::encode(Sha256::digest(request.body))
    {
        return Err(refuse(
            "XAmzContentSHA256Mismatch",
            "the X-Amz-Content-SHA256 header is not the body's SHA-256",
        ));
    }
    let canonical = canonical_request(request, &parts.signed_headers, payload_hash)?;
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [region.as_bytes(), service.as_bytes(), b"aws4_request"] {
        key = hmac(&key, part);
    }
    let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    if !constant_time_eq(expected.as_bytes(), parts.signature.as_bytes()) {
        return Err(refuse(
            "SignatureDoesNotMatch",
            "the request signature we calculated does not match the signature you provided; check your key and signing method",
        ));
    }
    Ok(())
}

struct Authorization<'a> {
    credential: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(header: &str) -> Result<Authorization<'_>, Refusal> {
    let malformed = || {
        refuse(
            "AuthorizationHeaderMalformed",
            "the Authorization header is not `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`",
        )
    };
    let rest = header
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or_else(malformed)?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v.split(';').collect());
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    Ok(Authorization {
        credential: credential.ok_or_else(malformed)?,
        signed_headers: signed_headers.ok_or_else(malformed)?,
        signature: signature.ok_or_else(malformed)?,
    })
}

fn parse_amz_date(text: &str) -> Result<OffsetDateTime, Refusal> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(text, format)
        .map(|t| t.assume_utc())
        .map_err(|_| {
            refuse(
                "AccessDenied",
                format!("X-Amz-Date `{text}` is not YYYYMMDDTHHMMSSZ"),
            )
        })
}

fn canonical_request(
    request: &SignedRequest<'_>,
    signed_headers: &[&str],
    payload_hash: &str,
) -> Result<String, Refusal> {
    let mut canonical = format!(
        "{}\n{}\n{}\n",
        request.method,
        if request.raw_path.is_empty() {
            "/"
        } else {
            request.raw_path
        },
        canonical_query(request.raw_query)
    );
    for name in signed_headers {
        let values: Vec<String> = request
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(refuse(
                "AccessDenied",
                format!("the signed header `{name}` is not in the request"),
            ));
        }
        canonical.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers.join(";"));
    canonical.push('\n');
    canonical.push_str(payload_hash);
    Ok(canonical)
}

/// The query as SigV4 signs it: each name and value decoded, encoded again (unreserved
/// characters kept, everything else `%XX`), pairs sorted.
fn canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (uri_encode(&decode(name)), uri_encode(&decode(value)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn decode(text: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(text).collect()
}

fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// AWS's documented S3 example (GET Object with a Range header, "Signature Calculations for
    /// the Authorization Header: Transferring Payload in a Single Chunk").
    fn documented_example() -> (SignedRequest<'static>, Credentials) {
        let request = SignedRequest {
            method: "GET",
            raw_path: "/test.txt",
            raw_query: "",
            headers: vec![
                ("host".into(), "examplebucket.s3.amazonaws.com".into()),
                ("range".into(), "bytes=0-9".into()),
                (
                    "x-amz-content-sha256".into(),
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
                ),
                ("x-amz-date".into(), "20130524T000000Z".into()),
                (
                    "authorization".into(),
                    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41".into(),
                ),
            ],
            body: b"",
        };
        let credentials = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        };
        (request, credentials)
    }

    const SIGNED_AT: OffsetDateTime = datetime!(2013-05-24 00:01:00 UTC);

    #[test]
    fn the_documented_example_verifies() {
        let (request, credentials) = documented_example();
        assert_eq!(verify(&request, &credentials, SIGNED_AT), Ok(()));
    }

    #[test]
    fn a_changed_request_or_key_is_refused_with_s3s_codes() {
        let (request, credentials) = documented_example();
        let code = |request: &SignedRequest<'_>, credentials: &Credentials, now| {
            verify(request, credentials, now).unwrap_err().code
        };
        let mut other_host = request.clone();
        other_host.headers[0].1 = "otherbucket.s3.amazonaws.com".into();
        assert_eq!(
            code(&other_host, &credentials, SIGNED_AT),
            "SignatureDoesNotMatch"
        );
        let mut other_path = request.clone();
        other_path.raw_path = "/test2.txt";
        assert_eq!(
            code(&other_path, &credentials, SIGNED_AT),
            "SignatureDoesNotMatch"
        );
        let wrong_secret = Credentials {
            secret_access_key: "not-the-secret".into(),
            ..credentials.clone()
        };
        assert_eq!(
            code(&request, &wrong_secret, SIGNED_AT),
            "SignatureDoesNotMatch"
        );
        let other_key = Credentials {
            access_key_id: "AKIAOTHER".into(),
            ..credentials.clone()
        };
        assert_eq!(code(&request, &other_key, SIGNED_AT), "InvalidAccessKeyId");
        let mut with_body = request.clone();
        with_body.body = b"tampered";
        assert_eq!(
            code(&with_body, &credentials, SIGNED_AT),
            "XAmzContentSHA256Mismatch"
        );
        let mut unsigned = request.clone();
        unsigned.headers.retain(|(n, _)| n != "authorization");
        assert_eq!(code(&unsigned, &credentials, SIGNED_AT), "AccessDenied");
        let late = datetime!(2013-05-24 00:20:00 UTC);
        assert_eq!(code(&request, &credentials, late), "RequestTimeTooSkewed");
    }

    #[test]
    fn the_query_is_signed_decoded_encoded_and_sorted() {
        assert_eq!(
            canonical_query("maxResults=10&jobStatuses=Active&jobStatuses=Complete&x=a%20b+c"),
            "jobStatuses=Active&jobStatuses=Complete&maxResults=10&x=a%20b%2Bc"
        );
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("flag"), "flag=");
    }
}
