//! Which S3 errors are worth retrying, and how long to wait between attempts.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling, 5xx, timeouts: the same request may succeed later.
    Transient,
    /// Everything else (404, 403, 400, 412 ...): the task fails with this error.
    Permanent,
}

const TRANSIENT_CODES: [&str; 9] = [
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
    "RequestLimitExceeded",
];

/// `status` is None when no HTTP response arrived (connect error, timeout).
pub fn classify(status: Option<u16>, code: Option<&str>) -> ErrorClass {
    if code.is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
        return ErrorClass::Transient;
    }
    match status {
        None => ErrorClass::Transient,
        Some(429) | Some(500..=599) => ErrorClass::Transient,
        Some(_) => ErrorClass::Permanent,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1 = first retry): "full jitter" exponential backoff.
    /// `jitter` in [0, 1) is supplied by the caller so this stays deterministic under test.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.min(20).saturating_sub(1));
        let ceiling = exp.min(self.cap);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    }

    pub fn should_retry(&self, attempt: u32, class: ErrorClass) -> bool {
        class == ErrorClass::Transient && attempt < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_throttling_and_server_errors_as_transient() {
        assert_eq!(classify(Some(503), Some("SlowDown")), ErrorClass::Transient);
        assert_eq!(classify(Some(500), None), ErrorClass::Transient);
        assert_eq!(classify(None, None), ErrorClass::Transient);
        assert_eq!(
            classify(Some(400), Some("RequestTimeout")),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(Some(404), Some("NoSuchKey")),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify(Some(403), Some("AccessDenied")),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify(Some(412), Some("PreconditionFailed")),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn delay_grows_exponentially_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        assert_eq!(p.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(p.delay(10, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(3, 0.5), Duration::from_millis(200));
        assert_eq!(p.delay(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn retries_only_transient_errors_within_the_budget() {
        let p = RetryPolicy::default();
        assert!(p.should_retry(1, ErrorClass::Transient));
        assert!(!p.should_retry(5, ErrorClass::Transient));
        assert!(!p.should_retry(1, ErrorClass::Permanent));
    }
}
