//! S3 Batch Operations' `LambdaInvoke` operation: its fields as S3 Control takes them, the
//! payload S3 sends the function for one task (invocation schema 1.0 and 2.0), and how the
//! function's answer becomes the task's report row.
//!
//! The contract is S3's, so a function written for S3 Batch Operations runs here unchanged:
//! one task per invocation; keys URL-encoded as in the manifest (S3's own examples decode
//! `s3Key`); `s3BucketArn` in 1.0, `s3Bucket` and `job.userArguments` in 2.0; the answer's
//! `results[{taskId, resultCode, resultString}]` with `treatMissingKeysAs` for a task left
//! out; the report row's ResultMessage is the function's `resultString`.

use crate::arn::bucket_arn;
use crate::encoding::encode_key;
use crate::manifest::ObjectRef;
use crate::report::{TaskOutcome, TaskStatus};
use crate::request::RequestError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// S3 Control's limits on `UserArguments`.
pub const MAX_USER_ARGUMENTS: usize = 10;
pub const MAX_USER_ARGUMENT_KEY_CHARS: usize = 64;
pub const MAX_USER_ARGUMENT_VALUE_CHARS: usize = 1024;
/// S3 Control's limit on `FunctionArn`, and Lambda's on a function name.
pub const MAX_FUNCTION_ARN_CHARS: usize = 1024;
pub const MAX_FUNCTION_NAME_CHARS: usize = 64;
/// How much of an unreadable answer a ResultMessage quotes.
const QUOTED_ANSWER_CHARS: usize = 300;

/// `Operation.LambdaInvoke` as S3 Control takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LambdaInvokeOperation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_schema_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_arguments: Option<BTreeMap<String, String>>,
}

/// The payload layout the function receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchemaVersion {
    /// `1.0` (S3's default): tasks carry `s3BucketArn`.
    #[serde(rename = "1.0")]
    V1,
    /// `2.0`: tasks carry `s3Bucket`, the job carries `userArguments`.
    #[serde(rename = "2.0")]
    V2,
}

impl SchemaVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaVersion::V1 => "1.0",
            SchemaVersion::V2 => "2.0",
        }
    }
}

/// A validated LambdaInvoke: what every invocation of the job carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvokeSpec {
    /// The FunctionArn as given: Lambda's Invoke takes a name, an ARN or a partial ARN, each
    /// with or without an alias or version qualifier, so it is passed on unchanged.
    pub function: String,
    pub schema: SchemaVersion,
    /// Sent as `job.userArguments` (schema 2.0 only).
    #[serde(default)]
    pub user_arguments: BTreeMap<String, String>,
}

/// The parts of a FunctionArn, read with S3 Control's pattern
/// `(arn:(aws[a-zA-Z-]*)?:lambda:)?(<region>:)?(<12 digits>:)?(function:)?<name>(:<qualifier>)?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef<'a> {
    pub region: Option<&'a str>,
    pub account: Option<&'a str>,
    pub name: &'a str,
    /// An alias, a version number or `$LATEST`.
    pub qualifier: Option<&'a str>,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `[a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\d`, e.g. `us-east-1`, `us-gov-west-1`, `us-isob-east-1`.
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lower = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    let digit = |p: &str| p.len() == 1 && p.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [area, place, n] => area.len() == 2 && lower(area) && lower(place) && digit(n),
        [area, partition, place, n] => {
            area.len() == 2
                && lower(area)
                && matches!(*partition, "gov" | "iso" | "isob")
                && lower(place)
                && digit(n)
        }
        _ => false,
    }
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Matches `tokens` (the FunctionArn after any `arn:…:lambda:` prefix) against
/// `[region] [account] ["function"] name [qualifier]`, preferring the reading with the most
/// parts named, as the pattern's optional groups do.
fn match_function_tokens<'a>(tokens: &[&'a str]) -> Option<FunctionRef<'a>> {
    for (region, account, function) in [
        (true, true, true),
        (true, true, false),
        (false, true, true),
        (false, true, false),
        (true, false, true),
        (true, false, false),
        (false, false, true),
        (false, false, false),
    ] {
        let mut rest = tokens;
        let mut take = |wanted: bool, test: &dyn Fn(&str) -> bool| -> Option<Option<&'a str>> {
            if !wanted {
                return Some(None);
            }
            let (first, tail) = rest.split_first()?;
            if !test(first) {
                return None;
            }
            rest = tail;
            Some(Some(*first))
        };
        let Some(region) = take(region, &is_region) else {
            continue;
        };
        let Some(account) = take(account, &is_account) else {
            continue;
        };
        if take(function, &|t| t == "function").is_none() {
            continue;
        }
        match rest {
            [name] if is_name(name) => {
                return Some(FunctionRef {
                    region,
                    account,
                    name,
                    qualifier: None,
                })
            }
            [name, qualifier]
                if is_name(name) && (*qualifier == "$LATEST" || is_name(qualifier)) =>
            {
                return Some(FunctionRef {
                    region,
                    account,
                    name,
                    qualifier: Some(*qualifier),
                })
            }
            _ => continue,
        }
    }
    None
}

/// Reads a FunctionArn (function name, full or partial ARN, with an optional alias or version)
/// as S3 Control's pattern does; the error says what a valid one looks like.
pub fn parse_function_arn(value: &str) -> Result<FunctionRef<'_>, String> {
    let count = value.chars().count();
    if count == 0 || count > MAX_FUNCTION_ARN_CHARS {
        return Err(format!(
            "must be 1 to {MAX_FUNCTION_ARN_CHARS} characters long, got {count}"
        ));
    }
    let tokens: Vec<&str> = value.split(':').collect();
    let with_prefix = match tokens.as_slice() {
        ["arn", partition, "lambda", rest @ ..]
            if partition.is_empty()
                || (partition.starts_with("aws")
                    && partition
                        .bytes()
                        .all(|b| b.is_ascii_alphabetic() || b == b'-')) =>
        {
            match_function_tokens(rest)
        }
        _ => None,
    };
    let parsed = with_prefix
        .or_else(|| match_function_tokens(&tokens))
        .ok_or_else(|| {
            format!(
                "`{value}` is not a Lambda function: expected a function name (my-function), an ARN \
                 (arn:aws:lambda:us-east-1:123456789012:function:my-function) or a partial ARN \
                 (123456789012:function:my-function), optionally ending in :<alias>, :<version> or :$LATEST"
            )
        })?;
    if parsed.name.len() > MAX_FUNCTION_NAME_CHARS {
        return Err(format!(
            "function name `{}` is longer than Lambda's {MAX_FUNCTION_NAME_CHARS} characters",
            parsed.name
        ));
    }
    Ok(parsed)
}

impl LambdaInvokeOperation {
    /// Validates the fields; `base` is the operation's JSON path (`Operation.LambdaInvoke`).
    pub fn validate(&self, base: &str) -> Result<InvokeSpec, RequestError> {
        let field = |name: &str| format!("{base}.{name}");
        let function = self.function_arn.as_deref().ok_or_else(|| {
            RequestError::new(
                field("FunctionArn"),
                "required: the function to invoke for every object (name, ARN or partial ARN, optionally with an alias or version)",
            )
        })?;
        parse_function_arn(function)
            .map_err(|message| RequestError::new(field("FunctionArn"), message))?;
        let schema = match self.invocation_schema_version.as_deref() {
            None | Some("1.0") => SchemaVersion::V1,
            Some("2.0") => SchemaVersion::V2,
            Some(other) => {
                return Err(RequestError::new(
                    field("InvocationSchemaVersion"),
                    format!("expected 1.0 or 2.0, got `{other}`"),
                ))
            }
        };
        let user_arguments = match (&self.user_arguments, schema) {
            (None, _) => BTreeMap::new(),
            (Some(_), SchemaVersion::V1) => {
                return Err(RequestError::new(
                    field("UserArguments"),
                    "requires InvocationSchemaVersion 2.0 (schema 1.0 has no place for them)",
                ))
            }
            (Some(arguments), SchemaVersion::V2) => {
                check_user_arguments(arguments, &field("UserArguments"))?;
                arguments.clone()
            }
        };
        Ok(InvokeSpec {
            function: function.to_string(),
            schema,
            user_arguments,
        })
    }
}

fn check_user_arguments(
    arguments: &BTreeMap<String, String>,
    path: &str,
) -> Result<(), RequestError> {
    if arguments.len() > MAX_USER_ARGUMENTS {
        return Err(RequestError::new(
            path,
            format!(
                "at most {MAX_USER_ARGUMENTS} entries, got {}",
                arguments.len()
            ),
        ));
    }
    for (key, value) in arguments {
        let key_chars = key.chars().count();
        if key_chars == 0 || key_chars > MAX_USER_ARGUMENT_KEY_CHARS {
            return Err(RequestError::new(
                path,
                format!(
                    "key `{key}`: must be 1 to {MAX_USER_ARGUMENT_KEY_CHARS} characters long, got {key_chars}"
                ),
            ));
        }
        let value_chars = value.chars().count();
        if value_chars > MAX_USER_ARGUMENT_VALUE_CHARS {
            return Err(RequestError::new(
                format!("{path}.{key}"),
                format!(
                    "must be at most {MAX_USER_ARGUMENT_VALUE_CHARS} characters long, got {value_chars}"
                ),
            ));
        }
    }
    Ok(())
}

/// The event S3 Batch Operations sends a function: one invocation, one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRequest {
    pub invocation_schema_version: SchemaVersion,
    pub invocation_id: String,
    pub job: InvocationJob,
    pub tasks: Vec<InvocationTask>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationJob {
    pub id: String,
    /// Schema 2.0: the job's `UserArguments` (left out when there are none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_arguments: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationTask {
    pub task_id: String,
    /// URL-encoded, as in the manifest.
    pub s3_key: String,
    /// `null` when the task names no version.
    pub s3_version_id: Option<String>,
    /// Schema 1.0: `arn:aws:s3:::bucket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_bucket_arn: Option<String>,
    /// Schema 2.0: the bucket name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_bucket: Option<String>,
}

impl InvocationTask {
    /// The task's bucket name, from `s3Bucket` (2.0) or `s3BucketArn` (1.0).
    pub fn bucket(&self) -> Option<String> {
        self.s3_bucket.clone().or_else(|| {
            self.s3_bucket_arn
                .as_deref()
                .and_then(|arn| crate::arn::bucket_from_arn(arn).ok())
        })
    }
}

/// The `taskId` of task `index` of chunk `seq`: the same on every attempt and redelivery of the
/// task, different for every task of the job (S3's are opaque too; a function must not parse
/// them, only echo them and may key its own bookkeeping on them with the job ID).
pub fn task_id(seq: u64, index: u64) -> String {
    format!("{seq}.{index}")
}

impl InvokeSpec {
    /// The event for one task of job `job_id`; `invocation_id` is new for every attempt,
    /// `task_id` is the same for every attempt of the task.
    pub fn request(
        &self,
        job_id: &str,
        invocation_id: &str,
        task_id: &str,
        object: &ObjectRef,
    ) -> InvocationRequest {
        let (s3_bucket_arn, s3_bucket, user_arguments) = match self.schema {
            SchemaVersion::V1 => (Some(bucket_arn(&object.bucket)), None, BTreeMap::new()),
            SchemaVersion::V2 => (
                None,
                Some(object.bucket.clone()),
                self.user_arguments.clone(),
            ),
        };
        InvocationRequest {
            invocation_schema_version: self.schema,
            invocation_id: invocation_id.to_string(),
            job: InvocationJob {
                id: job_id.to_string(),
                user_arguments,
            },
            tasks: vec![InvocationTask {
                task_id: task_id.to_string(),
                s3_key: encode_key(&object.key),
                s3_version_id: object.version_id.clone(),
                s3_bucket_arn,
                s3_bucket,
            }],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResultCode {
    Succeeded,
    /// Worth another invocation (with backoff, up to a bound).
    TemporaryFailure,
    PermanentFailure,
}

impl ResultCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultCode::Succeeded => "Succeeded",
            ResultCode::TemporaryFailure => "TemporaryFailure",
            ResultCode::PermanentFailure => "PermanentFailure",
        }
    }
}

/// What the function answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_schema_version: Option<String>,
    /// The result of a task the answer leaves out (S3's default: PermanentFailure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub treat_missing_keys_as: Option<ResultCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    pub results: Vec<TaskResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    pub task_id: String,
    pub result_code: ResultCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_string: Option<String>,
}

/// How one invocation of a task came out: the task's result code and its ResultMessage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub code: ResultCode,
    pub message: String,
}

impl Judgement {
    fn permanent(message: String) -> Self {
        Judgement {
            code: ResultCode::PermanentFailure,
            message,
        }
    }

    /// Whether another invocation may change the outcome.
    pub fn is_temporary(&self) -> bool {
        self.code == ResultCode::TemporaryFailure
    }

    /// The task's report row.
    pub fn outcome(&self, object: &ObjectRef) -> TaskOutcome {
        let (status, error_code) = match self.code {
            ResultCode::Succeeded => (TaskStatus::Succeeded, None),
            code => (TaskStatus::Failed, Some(code.as_str())),
        };
        // The Invoke call itself succeeded; the verdict is the function's (as S3 reports it).
        row(object, status, 200, error_code, self.message.clone())
    }
}

/// The report row of a task whose invocation Lambda refused or never answered in time.
pub fn call_failed(
    object: &ObjectRef,
    http_status: u16,
    error_code: &str,
    message: String,
) -> TaskOutcome {
    row(
        object,
        TaskStatus::Failed,
        http_status,
        Some(error_code),
        message,
    )
}

fn row(
    object: &ObjectRef,
    status: TaskStatus,
    http_status: u16,
    error_code: Option<&str>,
    message: String,
) -> TaskOutcome {
    TaskOutcome {
        bucket: object.bucket.clone(),
        key_encoded: encode_key(&object.key),
        version_id: object.version_id.clone(),
        status,
        http_status,
        error_code: error_code.map(str::to_string),
        message,
        bytes: 0,
        dest_version: None,
    }
}

/// The start of `text`, for quoting an unreadable answer.
fn quote(text: &str) -> String {
    let mut quoted: String = text.chars().take(QUOTED_ANSWER_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

/// Reads the function's answer (Invoke answered without a function error) for task `task_id`.
/// A malformed answer is a permanent failure whose message says what was wrong.
pub fn judge_answer(payload: &[u8], task_id: &str) -> Judgement {
    let text = String::from_utf8_lossy(payload);
    let deserializer = &mut serde_json::Deserializer::from_slice(payload);
    let response: InvocationResponse = match serde_path_to_error::deserialize(deserializer) {
        Ok(response) => response,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let what = if inner.is_syntax() || inner.is_eof() {
                format!("not JSON ({inner})")
            } else if path == "." {
                format!("not an S3 Batch Operations answer ({inner})")
            } else {
                format!("{path}: {inner}")
            };
            return Judgement::permanent(format!(
                "malformed answer from the function: {what}; answer: {}",
                quote(&text)
            ));
        }
    };
    if let Some(result) = response.results.iter().find(|r| r.task_id == task_id) {
        return Judgement {
            code: result.result_code,
            message: result.result_string.clone().unwrap_or_default(),
        };
    }
    let code = response
        .treat_missing_keys_as
        .unwrap_or(ResultCode::PermanentFailure);
    let answered: Vec<&str> = response
        .results
        .iter()
        .map(|r| r.task_id.as_str())
        .collect();
    let why = if answered.is_empty() {
        "no results".to_string()
    } else {
        format!("results only for task {}", answered.join(", "))
    };
    Judgement {
        code,
        message: format!(
            "the function's answer has no result for task {task_id} ({why}); treatMissingKeysAs: {}",
            code.as_str()
        ),
    }
}

/// An invocation Lambda answered with `X-Amz-Function-Error` (the function failed, crashed or
/// timed out): a permanent failure carrying the error payload's type and message.
pub fn judge_function_error(kind: &str, payload: &[u8]) -> Judgement {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ErrorPayload {
        error_type: Option<String>,
        error_message: Option<String>,
    }
    let text = String::from_utf8_lossy(payload);
    let detail = match serde_json::from_slice::<ErrorPayload>(payload) {
        Ok(ErrorPayload {
            error_type: Some(error_type),
            error_message: Some(message),
        }) => format!("{error_type}: {message}"),
        Ok(ErrorPayload {
            error_message: Some(message),
            ..
        }) => message,
        Ok(ErrorPayload {
            error_type: Some(error_type),
            ..
        }) => error_type,
        _ => quote(&text),
    };
    Judgement::permanent(format!("Lambda returned function error ({kind}): {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn operation(value: serde_json::Value) -> LambdaInvokeOperation {
        serde_json::from_value(value).unwrap()
    }

    fn object(key: &str, version: Option<&str>) -> ObjectRef {
        ObjectRef {
            bucket: "photos".into(),
            key: key.into(),
            version_id: version.map(str::to_string),
        }
    }

    #[test]
    fn function_arns_in_every_form_s3_accepts() {
        let cases = [
            ("my-function", None, None, "my-function", None),
            ("my_function:live", None, None, "my_function", Some("live")),
            (
                "my-function:$LATEST",
                None,
                None,
                "my-function",
                Some("$LATEST"),
            ),
            ("my-function:7", None, None, "my-function", Some("7")),
            (
                "arn:aws:lambda:us-east-1:123456789012:function:my-function",
                Some("us-east-1"),
                Some("123456789012"),
                "my-function",
                None,
            ),
            (
                "arn:aws:lambda:us-west-2:123456789012:function:my-function:prod",
                Some("us-west-2"),
                Some("123456789012"),
                "my-function",
                Some("prod"),
            ),
            (
                "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f",
                Some("us-gov-west-1"),
                Some("123456789012"),
                "f",
                None,
            ),
            (
                "123456789012:function:my-function",
                None,
                Some("123456789012"),
                "my-function",
                None,
            ),
            (
                "123456789012:function:my-function:3",
                None,
                Some("123456789012"),
                "my-function",
                Some("3"),
            ),
            // A name that looks like a region is still a name when nothing follows it.
            ("us-east-1", None, None, "us-east-1", None),
            ("function", None, None, "function", None),
        ];
        for (text, region, account, name, qualifier) in cases {
            let parsed = parse_function_arn(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                parsed,
                FunctionRef {
                    region,
                    account,
                    name,
                    qualifier
                },
                "{text}"
            );
        }
    }

    #[test]
    fn bad_function_arns_are_refused_with_the_expected_forms() {
        for text in [
            "",
            "my function",
            "arn:aws:s3:::bucket",
            "arn:aws:lambda:us-east-1:123456789012:function:my-function:prod:extra",
            "my-function:",
            "my-function:v1.0",
            "12345:function:f",
            "a/b",
        ] {
            let err = parse_function_arn(text).unwrap_err();
            assert!(
                err.contains("not a Lambda function") || err.contains("characters"),
                "{text}: {err}"
            );
        }
        let long = "f".repeat(65);
        assert!(parse_function_arn(&long).unwrap_err().contains("64"));
        let too_long = format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{}",
            "f".repeat(1000)
        );
        assert!(parse_function_arn(&too_long)
            .unwrap_err()
            .contains("1 to 1024"));
    }

    #[test]
    fn validates_into_a_spec() {
        let spec = operation(
            json!({"FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f:live"}),
        )
        .validate("Operation.LambdaInvoke")
        .unwrap();
        assert_eq!(
            spec,
            InvokeSpec {
                function: "arn:aws:lambda:us-east-1:123456789012:function:f:live".into(),
                schema: SchemaVersion::V1,
                user_arguments: BTreeMap::new(),
            }
        );
        let spec = operation(json!({"FunctionArn": "f", "InvocationSchemaVersion": "2.0",
                                    "UserArguments": {"mode": "thumbnails", "size": "128"}}))
        .validate("Operation.LambdaInvoke")
        .unwrap();
        assert_eq!(spec.schema, SchemaVersion::V2);
        assert_eq!(spec.user_arguments.len(), 2);
    }

    #[test]
    fn bad_fields_are_named_by_json_path() {
        let ten: BTreeMap<String, String> = (0..11)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let cases = [
            (json!({}), "Operation.LambdaInvoke.FunctionArn", "required"),
            (
                json!({"FunctionArn": "arn:aws:sqs:us-east-1:123456789012:q"}),
                "Operation.LambdaInvoke.FunctionArn",
                "not a Lambda function",
            ),
            (
                json!({"FunctionArn": "f", "InvocationSchemaVersion": "3.0"}),
                "Operation.LambdaInvoke.InvocationSchemaVersion",
                "expected 1.0 or 2.0",
            ),
            (
                json!({"FunctionArn": "f", "UserArguments": {"a": "b"}}),
                "Operation.LambdaInvoke.UserArguments",
                "requires InvocationSchemaVersion 2.0",
            ),
            (
                json!({"FunctionArn": "f", "InvocationSchemaVersion": "1.0", "UserArguments": {}}),
                "Operation.LambdaInvoke.UserArguments",
                "requires InvocationSchemaVersion 2.0",
            ),
            (
                json!({"FunctionArn": "f", "InvocationSchemaVersion": "2.0", "UserArguments": ten}),
                "Operation.LambdaInvoke.UserArguments",
                "at most 10 entries, got 11",
            ),
            (
                json!({"FunctionArn": "f", "InvocationSchemaVersion": "2.0", "UserArguments": {"": "v"}}),
                "Operation.LambdaInvoke.UserArguments",
                "1 to 64 characters",
            ),
            (
                json!({"FunctionArn": "f", "InvocationSchemaVersion": "2.0",
                       "UserArguments": {"k".repeat(65): "v"}}),
                "Operation.LambdaInvoke.UserArguments",
                "got 65",
            ),
            (
                json!({"FunctionArn": "f", "InvocationSchemaVersion": "2.0",
                       "UserArguments": {"big": "v".repeat(1025)}}),
                "Operation.LambdaInvoke.UserArguments.big",
                "at most 1024 characters",
            ),
        ];
        for (value, field, message) in cases {
            let err = operation(value.clone())
                .validate("Operation.LambdaInvoke")
                .unwrap_err();
            assert_eq!(err.field, field, "{value}: {err}");
            assert!(err.message.contains(message), "{value}: {err}");
        }
        // Exactly at the limits is fine; characters are counted, not bytes.
        let ok: BTreeMap<String, String> = (0..10)
            .map(|i| (format!("{i}{}", "ü".repeat(63)), "é".repeat(1024)))
            .collect();
        operation(
            json!({"FunctionArn": "f", "InvocationSchemaVersion": "2.0", "UserArguments": ok}),
        )
        .validate("Operation.LambdaInvoke")
        .unwrap();
        // Unknown fields are refused by the parser.
        assert!(serde_json::from_value::<LambdaInvokeOperation>(
            json!({"FunctionArn": "f", "Qualifier": "live"})
        )
        .is_err());
    }

    #[test]
    fn schema_1_payload_is_s3s() {
        let spec = operation(json!({"FunctionArn": "f"}))
            .validate("Operation.LambdaInvoke")
            .unwrap();
        let request = spec.request(
            "job-1",
            "inv-1",
            "task-1",
            &object("dir/a b+ü.jpg", Some("v1")),
        );
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "invocationSchemaVersion": "1.0",
                "invocationId": "inv-1",
                "job": {"id": "job-1"},
                "tasks": [{"taskId": "task-1", "s3Key": "dir/a%20b%2B%C3%BC.jpg",
                           "s3VersionId": "v1", "s3BucketArn": "arn:aws:s3:::photos"}]
            })
        );
        let unversioned = spec.request("job-1", "inv-2", "task-2", &object("k", None));
        assert_eq!(
            serde_json::to_value(&unversioned).unwrap()["tasks"][0]["s3VersionId"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn schema_2_payload_is_s3s() {
        let spec = operation(json!({"FunctionArn": "f", "InvocationSchemaVersion": "2.0",
                                    "UserArguments": {"k1": "v1", "k2": "v2"}}))
        .validate("Operation.LambdaInvoke")
        .unwrap();
        let request = spec.request("job-2", "inv-1", "task-1", &object("a.jpg", None));
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "invocationSchemaVersion": "2.0",
                "invocationId": "inv-1",
                "job": {"id": "job-2", "userArguments": {"k1": "v1", "k2": "v2"}},
                "tasks": [{"taskId": "task-1", "s3Key": "a.jpg", "s3VersionId": null, "s3Bucket": "photos"}]
            })
        );
        // What a function reads back: the bucket from either schema.
        let read: InvocationRequest =
            serde_json::from_value(serde_json::to_value(&request).unwrap()).unwrap();
        assert_eq!(read.tasks[0].bucket().as_deref(), Some("photos"));
        let v1 = InvokeSpec {
            schema: SchemaVersion::V1,
            ..spec
        }
        .request("job-2", "inv-1", "task-1", &object("a.jpg", None));
        assert_eq!(v1.tasks[0].bucket().as_deref(), Some("photos"));
        assert!(serde_json::to_value(&v1).unwrap()["job"]
            .get("userArguments")
            .is_none());
    }

    #[test]
    fn answers_become_results() {
        let answer = json!({
            "invocationSchemaVersion": "1.0",
            "treatMissingKeysAs": "PermanentFailure",
            "invocationId": "inv-1",
            "results": [{"taskId": "task-1", "resultCode": "Succeeded", "resultString": "[\"Alice\", \"Bob\"]"}]
        });
        let judged = judge_answer(answer.to_string().as_bytes(), "task-1");
        assert_eq!(
            judged,
            Judgement {
                code: ResultCode::Succeeded,
                message: "[\"Alice\", \"Bob\"]".into()
            }
        );
        let row = judged.outcome(&object("a b.jpg", Some("v1")));
        assert_eq!(
            (
                row.status,
                row.http_status,
                row.error_code,
                row.key_encoded.as_str()
            ),
            (TaskStatus::Succeeded, 200, None, "a%20b.jpg")
        );
        for code in ["TemporaryFailure", "PermanentFailure"] {
            let answer =
                json!({"results": [{"taskId": "t", "resultCode": code, "resultString": "busy"}]});
            let judged = judge_answer(answer.to_string().as_bytes(), "t");
            assert_eq!(judged.code.as_str(), code);
            assert_eq!(judged.is_temporary(), code == "TemporaryFailure");
            let row = judged.outcome(&object("k", None));
            assert_eq!(
                (row.status, row.error_code.as_deref(), row.message.as_str()),
                (TaskStatus::Failed, Some(code), "busy")
            );
        }
        // No resultString: an empty ResultMessage.
        let answer = json!({"results": [{"taskId": "t", "resultCode": "Succeeded"}]});
        assert_eq!(judge_answer(answer.to_string().as_bytes(), "t").message, "");
    }

    #[test]
    fn a_missing_result_follows_treat_missing_keys_as() {
        let answer = json!({"treatMissingKeysAs": "TemporaryFailure",
                            "results": [{"taskId": "other", "resultCode": "Succeeded"}]});
        let judged = judge_answer(answer.to_string().as_bytes(), "mine");
        assert_eq!(judged.code, ResultCode::TemporaryFailure);
        assert!(
            judged.message.contains("no result for task mine")
                && judged.message.contains("results only for task other")
                && judged
                    .message
                    .contains("treatMissingKeysAs: TemporaryFailure"),
            "{}",
            judged.message
        );
        let answer = json!({"results": []});
        let judged = judge_answer(answer.to_string().as_bytes(), "mine");
        assert_eq!(judged.code, ResultCode::PermanentFailure);
        assert!(
            judged.message.contains("(no results)"),
            "{}",
            judged.message
        );
    }

    #[test]
    fn malformed_answers_fail_permanently_saying_why() {
        let cases: [(&[u8], &str); 6] = [
            (b"<html>502</html>", "not JSON"),
            (b"", "not JSON"),
            (b"\"done\"", "not an S3 Batch Operations answer"),
            (b"{\"invocationId\": \"x\"}", "missing field `results`"),
            (
                br#"{"results": [{"taskId": "t", "resultCode": "Maybe"}]}"#,
                "results[0].resultCode: unknown variant `Maybe`",
            ),
            (
                br#"{"treatMissingKeysAs": "Ignore", "results": []}"#,
                "treatMissingKeysAs: unknown variant `Ignore`",
            ),
        ];
        for (payload, expected) in cases {
            let judged = judge_answer(payload, "t");
            assert_eq!(judged.code, ResultCode::PermanentFailure);
            assert!(
                judged
                    .message
                    .starts_with("malformed answer from the function: ")
                    && judged.message.contains(expected),
                "{}: {}",
                String::from_utf8_lossy(payload),
                judged.message
            );
        }
        // A long answer is quoted, not copied whole.
        let long = format!("not json {}", "x".repeat(10_000));
        let judged = judge_answer(long.as_bytes(), "t");
        assert!(judged.message.len() < 600, "{}", judged.message.len());
        assert!(judged.message.ends_with('…'));
    }

    #[test]
    fn function_errors_carry_the_payloads_message() {
        let judged = judge_function_error(
            "Unhandled",
            br#"{"errorType": "ClientError", "errorMessage": "An error occurred (404)"}"#,
        );
        assert_eq!(judged.code, ResultCode::PermanentFailure);
        assert_eq!(
            judged.message,
            "Lambda returned function error (Unhandled): ClientError: An error occurred (404)"
        );
        let judged = judge_function_error(
            "Unhandled",
            br#"{"errorMessage": "2019-04-05T17:35:21.155Z Task timed out after 3.00 seconds"}"#,
        );
        assert!(judged
            .message
            .ends_with("Task timed out after 3.00 seconds"));
        let judged = judge_function_error("Unhandled", b"segfault");
        assert_eq!(
            judged.message,
            "Lambda returned function error (Unhandled): segfault"
        );
    }
}
