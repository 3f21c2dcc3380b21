//! Typed configuration, read once per process from environment variables (all listed in the
//! README). Every value has a default that works against the local stack.

use batchops_core::backoff::RetryPolicy;
use batchops_core::counts::FailureThreshold;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub table: String,
    /// Queue names or URLs (a name is resolved with GetQueueUrl at start).
    pub work_queue: String,
    pub plan_queue: String,
    pub finalize_queue: String,
    /// S3 event notifications for continuous backups and inventory arrivals (the local runtime
    /// polls it when it exists; in AWS it is the events function's event source).
    pub events_queue: String,
    pub control_bucket: String,
    pub account_id: String,
    pub region: String,
    pub chunk_size: usize,
    pub counter_shards: u32,
    pub task_concurrency: usize,
    pub multipart_threshold: u64,
    pub multipart_part_size: u64,
    pub part_concurrency: usize,
    pub failure_threshold: FailureThreshold,
    pub retry: RetryPolicy,
    /// Longest time one planner invocation spends on a job before checkpointing and handing on.
    pub plan_slice: Duration,
    /// How long a planner's lease on a job lasts without renewal; a running planner renews it
    /// every third of this, so a killed one holds its job this long, not a whole slice. At least
    /// 3 s: lease times are whole seconds.
    pub plan_lease: Duration,
    /// Write the planning checkpoint after this many chunk files.
    pub checkpoint_every_chunks: u64,
    /// A worker stops starting tasks this long before its invocation's deadline.
    pub worker_safety_margin: Duration,
    /// How often a worker re-reads its job's status while running a chunk (cancel, failure).
    pub status_check_interval: Duration,
    /// Deadline given to one chunk by the local runtime (Lambda supplies its own).
    pub local_chunk_deadline: Duration,
    /// Continuous-mode journal parts stamped this long before a backup run started may still
    /// be in flight (a batch's part is written after its copies): the run reads them, but only
    /// older parts are settled and deleted when it completes.
    pub journal_margin: Duration,
    /// A worker's lease on a task range lasts this long and is renewed while tasks run; a
    /// killed worker's range is free again this long after its last renewal.
    pub lease_duration: Duration,
    /// Attempts at one task range before its tasks are failed in the report
    /// (`InternalError: gave up after N deliveries`) so the job can end.
    pub max_deliveries: u64,
    /// An Active job with no committed range for this long, no live lease and an empty work
    /// queue gets its owed ranges dispatched again by the planner's sweep.
    pub stall_after: Duration,
    /// Visibility timeout the local runtime asks for on work messages, extended by heartbeats
    /// while a chunk runs: how soon a killed `batchops run`'s chunks come back.
    pub local_visibility: Duration,
    /// How long the planner and finalizer retry a job's transient errors before failing it.
    pub job_errors: batchops_core::recovery::ErrorBound,
    /// EventBridge bus (name or ARN) that gets an event when a job reaches a terminal status;
    /// None (`BATCHOPS_EVENT_BUS=none`): no events.
    pub event_bus: Option<String>,
    /// The finalizer rolls staged report rows into result files of about this size (closed at
    /// the first range boundary past it).
    pub report_file_bytes: u64,
    /// Part size of the finalizer's streamed uploads (S3's minimum: 5 MiB): result files (with
    /// one range's rows and a few ranges read ahead, what the report roll holds in memory),
    /// snapshot catalogs, superseded lists, and the journal part of a run that did not complete.
    pub report_part_bytes: u64,
    /// S3 writes of the report roll per finalizer run before it hands on (None: only its time
    /// slice, BATCHOPS_PLAN_SLICE_SECONDS, bounds it). Tests make runs short with it.
    pub report_slice_writes: Option<u64>,
    /// LambdaInvoke jobs: attempts per task (TemporaryFailure answers, throttling, 5xx), their
    /// backoff, and the longest wait for one invocation.
    pub invoke: crate::invoke::InvokeSettings,
    /// Jobs act on their data with their `RoleArn` (STS AssumeRole); false: with the stack's
    /// credentials (`BATCHOPS_ASSUME_JOB_ROLES=false`, e.g. a local stack without STS).
    pub assume_job_roles: bool,
    /// Exports: part size and parts in flight per object (memory per task is about their
    /// product), and attempts per object when the transfer fails transiently.
    pub export: crate::stores::ExportSettings,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("environment variable {name}={value}: {message}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub message: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads configuration from a variable map, so tests can build one without touching the
    /// process environment.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let text = |name: &str, default: &str| -> String {
            vars.get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| default.to_string())
        };
        fn number<T>(
            vars: &HashMap<String, String>,
            name: &str,
            default: T,
            min: T,
        ) -> Result<T, ConfigError>
        where
            T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
        {
            match vars.get(name).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(raw) => {
                    let value: T = raw.trim().parse().map_err(|_| ConfigError {
                        name: name.to_string(),
                        value: raw.clone(),
                        message: "not a number".to_string(),
                    })?;
                    if value < min {
                        return Err(ConfigError {
                            name: name.to_string(),
                            value: raw.clone(),
                            message: format!("must be at least {min}"),
                        });
                    }
                    Ok(value)
                }
            }
        }
        let secs = |name: &str, default: f64, min: f64| -> Result<Duration, ConfigError> {
            number(vars, name, default, min).map(Duration::from_secs_f64)
        };
        let percent: f64 = number(vars, "BATCHOPS_FAILURE_THRESHOLD_PERCENT", 50.0, 0.0)?;
        if percent > 100.0 {
            return Err(ConfigError {
                name: "BATCHOPS_FAILURE_THRESHOLD_PERCENT".into(),
                value: percent.to_string(),
                message: "must be at most 100".into(),
            });
        }
        let region = vars
            .get("AWS_REGION")
            .or_else(|| vars.get("AWS_DEFAULT_REGION"))
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| "us-east-1".to_string());
        let assume_job_roles = match vars.get("BATCHOPS_ASSUME_JOB_ROLES").map(String::as_str) {
            None | Some("") | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(ConfigError {
                    name: "BATCHOPS_ASSUME_JOB_ROLES".into(),
                    value: other.into(),
                    message: "expected true or false".into(),
                })
            }
        };
        let config = Config {
            assume_job_roles,
            table: text("BATCHOPS_TABLE", "batchops"),
            work_queue: text("BATCHOPS_WORK_QUEUE", "batchops-work"),
            plan_queue: text("BATCHOPS_PLAN_QUEUE", "batchops-plan"),
            finalize_queue: text("BATCHOPS_FINALIZE_QUEUE", "batchops-finalize"),
            events_queue: text("BATCHOPS_EVENTS_QUEUE", "batchops-events"),
            control_bucket: text("BATCHOPS_CONTROL_BUCKET", "batchops-control"),
            account_id: text("BATCHOPS_ACCOUNT_ID", "000000000000"),
            region,
            chunk_size: number(vars, "BATCHOPS_CHUNK_SIZE", 1000, 1)?,
            counter_shards: number(vars, "BATCHOPS_COUNTER_SHARDS", 8, 1)?,
            task_concurrency: number(vars, "BATCHOPS_TASK_CONCURRENCY", 32, 1)?,
            multipart_threshold: number(
                vars,
                "BATCHOPS_MULTIPART_THRESHOLD_BYTES",
                5 * 1024 * 1024 * 1024,
                1,
            )?,
            multipart_part_size: number(
                vars,
                "BATCHOPS_MULTIPART_PART_SIZE_BYTES",
                512 * 1024 * 1024,
                5 * 1024 * 1024,
            )?,
            part_concurrency: number(vars, "BATCHOPS_PART_CONCURRENCY", 8, 1)?,
            failure_threshold: FailureThreshold {
                min_tasks: number(vars, "BATCHOPS_FAILURE_THRESHOLD_MIN_TASKS", 1000, 1)?,
                max_failed_percent: percent,
            },
            retry: RetryPolicy {
                max_attempts: number(vars, "BATCHOPS_TASK_MAX_ATTEMPTS", 5, 1)?,
                base: Duration::from_millis(number(vars, "BATCHOPS_RETRY_BASE_MS", 100, 1)?),
                cap: Duration::from_millis(number(vars, "BATCHOPS_RETRY_CAP_MS", 20_000, 1)?),
            },
            plan_slice: secs("BATCHOPS_PLAN_SLICE_SECONDS", 600.0, 0.001)?,
            plan_lease: secs("BATCHOPS_PLAN_LEASE_SECONDS", 60.0, 3.0)?,
            checkpoint_every_chunks: number(vars, "BATCHOPS_CHECKPOINT_EVERY_CHUNKS", 10, 1)?,
            worker_safety_margin: secs("BATCHOPS_WORKER_SAFETY_SECONDS", 60.0, 0.0)?,
            status_check_interval: secs("BATCHOPS_STATUS_CHECK_SECONDS", 2.0, 0.01)?,
            local_chunk_deadline: secs("BATCHOPS_LOCAL_CHUNK_DEADLINE_SECONDS", 600.0, 1.0)?,
            journal_margin: secs("BATCHOPS_JOURNAL_MARGIN_SECONDS", 600.0, 0.0)?,
            event_bus: Some(text("BATCHOPS_EVENT_BUS", "default")).filter(|bus| bus != "none"),
            report_file_bytes: number(vars, "BATCHOPS_REPORT_FILE_BYTES", 512 * 1024 * 1024, 1)?,
            report_part_bytes: number(
                vars,
                "BATCHOPS_REPORT_PART_BYTES",
                16 * 1024 * 1024,
                5 * 1024 * 1024,
            )?,
            report_slice_writes: Some(number(vars, "BATCHOPS_REPORT_SLICE_WRITES", 0, 0)?)
                .filter(|&writes| writes > 0),
            export: crate::stores::ExportSettings {
                part_bytes: number(
                    vars,
                    "BATCHOPS_EXPORT_PART_BYTES",
                    8 * 1024 * 1024,
                    5 * 1024 * 1024,
                )?,
                part_concurrency: number(vars, "BATCHOPS_EXPORT_PART_CONCURRENCY", 4, 1)?,
            },
            lease_duration: secs("BATCHOPS_LEASE_SECONDS", 30.0, 1.0)?,
            max_deliveries: number(vars, "BATCHOPS_MAX_DELIVERIES", 5, 1)?,
            stall_after: secs("BATCHOPS_STALL_SECONDS", 300.0, 0.0)?,
            local_visibility: Duration::from_secs(number(
                vars,
                "BATCHOPS_LOCAL_VISIBILITY_SECONDS",
                30,
                3,
            )?),
            invoke: crate::invoke::InvokeSettings {
                retry: RetryPolicy {
                    max_attempts: number(vars, "BATCHOPS_INVOKE_MAX_ATTEMPTS", 5, 1)?,
                    base: Duration::from_millis(number(
                        vars,
                        "BATCHOPS_INVOKE_RETRY_BASE_MS",
                        1000,
                        1,
                    )?),
                    cap: Duration::from_millis(number(vars, "BATCHOPS_RETRY_CAP_MS", 20_000, 1)?),
                },
                // Lambda's longest function timeout.
                timeout: secs("BATCHOPS_INVOKE_TIMEOUT_SECONDS", 900.0, 0.001)?,
            },
            job_errors: batchops_core::recovery::ErrorBound {
                window_seconds: number(vars, "BATCHOPS_JOB_ERROR_WINDOW_SECONDS", 900, 0)?,
                min_attempts: number(vars, "BATCHOPS_JOB_ERROR_MIN_ATTEMPTS", 3, 1)?,
                max_backoff_seconds: number(vars, "BATCHOPS_JOB_ERROR_BACKOFF_SECONDS", 300, 1)?,
            },
        };
        // A chunk deadline inside the safety margin leaves no time to start any task: every
        // chunk would fail "no time left" until its tasks are given up.
        if config.local_chunk_deadline <= config.worker_safety_margin {
            return Err(ConfigError {
                name: "BATCHOPS_LOCAL_CHUNK_DEADLINE_SECONDS".into(),
                value: config.local_chunk_deadline.as_secs_f64().to_string(),
                message: format!(
                    "must be more than BATCHOPS_WORKER_SAFETY_SECONDS ({}): a worker stops starting tasks that long before its deadline",
                    config.worker_safety_margin.as_secs_f64()
                ),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_without_any_variable() {
        let config = Config::from_vars(&HashMap::new()).unwrap();
        assert_eq!(config.table, "batchops");
        assert_eq!(config.chunk_size, 1000);
        assert_eq!(config.multipart_threshold, 5 * 1024 * 1024 * 1024);
        assert_eq!(config.failure_threshold, FailureThreshold::default());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let vars = HashMap::from([("BATCHOPS_CHUNK_SIZE".to_string(), "lots".to_string())]);
        let err = Config::from_vars(&vars).unwrap_err();
        assert_eq!(err.name, "BATCHOPS_CHUNK_SIZE");
        let vars = HashMap::from([(
            "BATCHOPS_MULTIPART_PART_SIZE_BYTES".to_string(),
            "1024".to_string(),
        )]);
        assert!(Config::from_vars(&vars)
            .unwrap_err()
            .message
            .contains("at least"));
    }

    #[test]
    fn a_chunk_deadline_inside_the_safety_margin_is_refused() {
        let vars = HashMap::from([
            (
                "BATCHOPS_LOCAL_CHUNK_DEADLINE_SECONDS".to_string(),
                "30".to_string(),
            ),
            (
                "BATCHOPS_WORKER_SAFETY_SECONDS".to_string(),
                "60".to_string(),
            ),
        ]);
        let err = Config::from_vars(&vars).unwrap_err();
        assert_eq!(err.name, "BATCHOPS_LOCAL_CHUNK_DEADLINE_SECONDS");
        assert!(
            err.message.contains("BATCHOPS_WORKER_SAFETY_SECONDS"),
            "{err}"
        );
    }
}
