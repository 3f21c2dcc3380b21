//! What keeps every job finishing under faults: how a range commit that DynamoDB cancelled is
//! read, which task ranges of a job are still owed work, when a stalled job is re-dispatched,
//! and how long a job's transient errors are retried before it fails. Pure decisions only; the
//! AWS adapters supply the facts.

use crate::backoff::ErrorClass;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The parts of a range commit transaction, in the order they are sent.
pub const COMMIT_PARTS: [&str; 4] = ["range", "counter", "lease", "job"];

/// Why DynamoDB cancelled a range commit, read from its cancellation reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitVerdict {
    /// The range item exists: another delivery committed this range first.
    AlreadyCommitted,
    /// The job is no longer running (cancelled or finished): nothing may be counted now.
    JobStopped,
    /// Another attempt took this range's lease over: that attempt commits it.
    LeaseLost,
    /// A concurrent transaction or throttling: send the same transaction again.
    Retry,
    /// No reason given (some emulators): look at the table to decide.
    Unknown,
}

/// Reads the cancellation reasons of a range commit (codes in [`COMMIT_PARTS`] order; `None` or
/// `"None"` for a part that did not fail).
pub fn commit_verdict(reasons: &[Option<&str>]) -> CommitVerdict {
    let code = |part: usize| reasons.get(part).copied().flatten().unwrap_or("None");
    if code(0) == "ConditionalCheckFailed" {
        return CommitVerdict::AlreadyCommitted;
    }
    if code(3) == "ConditionalCheckFailed" {
        return CommitVerdict::JobStopped;
    }
    if code(2) == "ConditionalCheckFailed" {
        return CommitVerdict::LeaseLost;
    }
    let transient = |c: &str| {
        matches!(
            c,
            "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
        )
    };
    if (0..COMMIT_PARTS.len()).any(|part| transient(code(part))) {
        return CommitVerdict::Retry;
    }
    CommitVerdict::Unknown
}

/// A committed task range of one chunk, as the sweep needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommittedRange {
    pub seq: u64,
    pub first_task: u64,
    pub end_task: u64,
    /// Tasks in the whole chunk; None when the range item predates this field.
    pub chunk_tasks: Option<u64>,
}

/// Where the committed chain of ranges of one chunk, starting at `from`, ends: the first task
/// not yet committed, or None when the chain reaches the end of the chunk.
pub fn chain_end(ranges_of_chunk: &BTreeMap<u64, CommittedRange>, from: u64) -> Option<u64> {
    let mut at = from;
    // Bounded by the number of ranges: each step moves strictly forward.
    for _ in 0..=ranges_of_chunk.len() {
        match ranges_of_chunk.get(&at) {
            Some(range) if range.chunk_tasks.is_some_and(|n| range.end_task >= n) => return None,
            Some(range) if range.end_task > at => at = range.end_task,
            _ => return Some(at),
        }
    }
    Some(at)
}

/// The chunk pointers `(seq, first_task)` a job of `total_chunks` chunks still owes: for each
/// chunk, the first task its chain of committed ranges does not cover. A chunk whose task count
/// is unknown gets a pointer past its last range; the worker drops it when no task is there.
pub fn owed_pointers(total_chunks: u64, ranges: &[CommittedRange]) -> Vec<(u64, u64)> {
    let mut sorted = ranges.to_vec();
    sorted.sort_by_key(|r| (r.seq, r.first_task));
    let mut scan = OwedScan::new(total_chunks);
    let mut owed = Vec::new();
    for range in sorted {
        owed.extend(scan.push(range));
    }
    owed.extend(scan.finish());
    owed
}

/// [`owed_pointers`] over committed ranges read in chunk order, a page at a time: memory of one
/// chunk's ranges, whatever the size of the job.
#[derive(Debug, Clone)]
pub struct OwedScan {
    total_chunks: u64,
    /// Chunks before this one are settled.
    next_seq: u64,
    current: BTreeMap<u64, CommittedRange>,
}

impl OwedScan {
    pub fn new(total_chunks: u64) -> Self {
        OwedScan {
            total_chunks,
            next_seq: 0,
            current: BTreeMap::new(),
        }
    }

    /// Takes the next range (in (seq, first_task) order); returns the pointers owed by the
    /// chunks it moved past.
    pub fn push(&mut self, range: CommittedRange) -> Vec<(u64, u64)> {
        let mut owed = Vec::new();
        if self
            .current
            .values()
            .next()
            .is_some_and(|r| r.seq != range.seq)
        {
            owed.extend(self.settle_current());
        }
        // Chunks with no committed range at all are owed from their first task.
        while self.next_seq < range.seq.min(self.total_chunks) {
            owed.push((self.next_seq, 0));
            self.next_seq += 1;
        }
        if range.seq < self.total_chunks {
            self.current.insert(range.first_task, range);
        }
        owed
    }

    /// The pointers owed by the chunks not yet settled.
    pub fn finish(mut self) -> Vec<(u64, u64)> {
        let mut owed = self.settle_current();
        while self.next_seq < self.total_chunks {
            owed.push((self.next_seq, 0));
            self.next_seq += 1;
        }
        owed
    }

    fn settle_current(&mut self) -> Vec<(u64, u64)> {
        let Some(seq) = self.current.values().next().map(|r| r.seq) else {
            return Vec::new();
        };
        let owed = chain_end(&self.current, 0).map(|first| (seq, first));
        self.current.clear();
        self.next_seq = seq + 1;
        owed.into_iter().collect()
    }
}

/// The sweep's memory of one Active job: how many ranges were committed when it last looked,
/// and since when that number has not moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StallWatch {
    pub ranges: u64,
    /// Unix seconds when `ranges` was first seen (or when the job was last re-dispatched).
    pub since: u64,
    /// Times the sweep re-dispatched owed ranges.
    #[serde(default)]
    pub redispatches: u64,
}

impl StallWatch {
    /// Looks at the job's committed range count now: Some(updated watch) when it must be saved
    /// (progress was made, or first look), None when nothing moved.
    pub fn observe(previous: Option<StallWatch>, ranges: u64, now: u64) -> Option<StallWatch> {
        match previous {
            Some(watch) if watch.ranges == ranges => None,
            Some(watch) => Some(StallWatch {
                ranges,
                since: now,
                ..watch
            }),
            None => Some(StallWatch {
                ranges,
                since: now,
                redispatches: 0,
            }),
        }
    }

    /// Whether the job made no progress for at least `stall_seconds`.
    pub fn stalled(&self, now: u64, stall_seconds: u64) -> bool {
        now.saturating_sub(self.since) >= stall_seconds
    }
}

/// Consecutive transient errors of one job's planner or finalizer step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorStreak {
    pub count: u32,
    /// Unix seconds of the first error of the streak, and of the last.
    pub first_at: u64,
    pub last_at: u64,
    pub last_error: String,
}

/// How a job's step error is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorVerdict {
    /// Try again, not before this unix second.
    RetryAt(u64),
    /// Stop: fail the job with this reason.
    GiveUp(String),
}

/// How long transient errors of a job are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorBound {
    /// Give up once the streak has lasted this long and counts at least `min_attempts`.
    pub window_seconds: u64,
    pub min_attempts: u32,
    /// Longest wait between two attempts.
    pub max_backoff_seconds: u64,
}

impl Default for ErrorBound {
    fn default() -> Self {
        ErrorBound {
            window_seconds: 900,
            min_attempts: 3,
            max_backoff_seconds: 300,
        }
    }
}

impl ErrorStreak {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Records one more error and decides: permanent errors give up at once; transient ones are
    /// retried with exponential backoff until the bound.
    pub fn record(
        &mut self,
        class: ErrorClass,
        error: &str,
        now: u64,
        bound: &ErrorBound,
    ) -> ErrorVerdict {
        if self.count == 0 {
            self.first_at = now;
        }
        self.count += 1;
        self.last_at = now;
        self.last_error = error.to_string();
        if class == ErrorClass::Permanent {
            return ErrorVerdict::GiveUp(error.to_string());
        }
        let lasted = now.saturating_sub(self.first_at);
        if self.count >= bound.min_attempts && lasted >= bound.window_seconds {
            return ErrorVerdict::GiveUp(format!(
                "gave up after {} attempts over {lasted} s: {error}",
                self.count
            ));
        }
        let backoff = 1u64
            .checked_shl(self.count.min(20))
            .unwrap_or(u64::MAX)
            .min(bound.max_backoff_seconds);
        ErrorVerdict::RetryAt(now + backoff)
    }

    /// When the next attempt may start.
    pub fn retry_at(&self, bound: &ErrorBound) -> u64 {
        if self.count == 0 {
            return 0;
        }
        self.last_at
            + 1u64
                .checked_shl(self.count.min(20))
                .unwrap_or(u64::MAX)
                .min(bound.max_backoff_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(seq: u64, first: u64, end: u64, n: Option<u64>) -> CommittedRange {
        CommittedRange {
            seq,
            first_task: first,
            end_task: end,
            chunk_tasks: n,
        }
    }

    #[test]
    fn a_cancelled_commit_is_read_part_by_part() {
        use CommitVerdict::*;
        let v = |r: [Option<&str>; 4]| commit_verdict(&r);
        assert_eq!(
            v([Some("ConditionalCheckFailed"), None, None, None]),
            AlreadyCommitted
        );
        // The range condition wins: a committed range is committed whatever else failed.
        assert_eq!(
            v([
                Some("ConditionalCheckFailed"),
                None,
                Some("ConditionalCheckFailed"),
                Some("ConditionalCheckFailed")
            ]),
            AlreadyCommitted
        );
        assert_eq!(
            v([Some("None"), None, None, Some("ConditionalCheckFailed")]),
            JobStopped
        );
        assert_eq!(
            v([None, None, Some("ConditionalCheckFailed"), None]),
            LeaseLost
        );
        assert_eq!(v([None, Some("TransactionConflict"), None, None]), Retry);
        assert_eq!(
            v([Some("None"), Some("ThrottlingError"), None, None]),
            Retry
        );
        assert_eq!(commit_verdict(&[]), Unknown);
    }

    #[test]
    fn owed_pointers_follow_each_chunks_chain_of_ranges() {
        let ranges = [
            // chunk 0: whole
            range(0, 0, 10, Some(10)),
            // chunk 1: [0,6) committed, successor (1,6) lost
            range(1, 0, 6, Some(10)),
            // chunk 2: [0,4) then [4,10)
            range(2, 0, 4, Some(10)),
            range(2, 4, 10, Some(10)),
            // chunk 3: nothing committed
            // chunk 4: an old range item without a task count
            range(4, 0, 7, None),
        ];
        assert_eq!(owed_pointers(5, &ranges), vec![(1, 6), (3, 0), (4, 7)]);
        assert_eq!(owed_pointers(0, &ranges), vec![]);
        // Chunks with nothing committed, before, between and after committed ones.
        assert_eq!(
            owed_pointers(6, &[range(2, 0, 10, Some(10)), range(4, 0, 3, Some(10))]),
            vec![(0, 0), (1, 0), (3, 0), (4, 3), (5, 0)]
        );
        assert_eq!(owed_pointers(2, &[]), vec![(0, 0), (1, 0)]);
    }

    #[test]
    fn chain_end_stops_on_a_gap() {
        let mut chunk = BTreeMap::new();
        chunk.insert(0, range(0, 0, 3, Some(9)));
        chunk.insert(5, range(0, 5, 9, Some(9)));
        assert_eq!(chain_end(&chunk, 0), Some(3));
        assert_eq!(chain_end(&chunk, 5), None);
    }

    #[test]
    fn a_stall_is_progress_standing_still_long_enough() {
        let first = StallWatch::observe(None, 3, 100).unwrap();
        assert_eq!(first.since, 100);
        assert_eq!(StallWatch::observe(Some(first), 3, 500), None);
        assert!(first.stalled(400, 300));
        assert!(!first.stalled(399, 300));
        let moved = StallWatch::observe(Some(first), 4, 450).unwrap();
        assert_eq!((moved.ranges, moved.since), (4, 450));
    }

    #[test]
    fn permanent_errors_give_up_at_once_transient_ones_after_the_bound() {
        let bound = ErrorBound {
            window_seconds: 60,
            min_attempts: 3,
            max_backoff_seconds: 30,
        };
        let mut streak = ErrorStreak::default();
        assert_eq!(
            streak.record(ErrorClass::Permanent, "AccessDenied", 10, &bound),
            ErrorVerdict::GiveUp("AccessDenied".into())
        );

        let mut streak = ErrorStreak::default();
        assert_eq!(
            streak.record(ErrorClass::Transient, "SlowDown", 0, &bound),
            ErrorVerdict::RetryAt(2)
        );
        assert_eq!(
            streak.record(ErrorClass::Transient, "SlowDown", 2, &bound),
            ErrorVerdict::RetryAt(6)
        );
        // Three attempts, but the window has not passed yet.
        assert_eq!(
            streak.record(ErrorClass::Transient, "SlowDown", 6, &bound),
            ErrorVerdict::RetryAt(14)
        );
        assert_eq!(streak.retry_at(&bound), 14);
        match streak.record(ErrorClass::Transient, "SlowDown", 61, &bound) {
            ErrorVerdict::GiveUp(reason) => {
                assert!(
                    reason.contains("4 attempts over 61 s: SlowDown"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
