//! Task counters summed from the job's counter shards, and the failure threshold.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub succeeded: u64,
    pub failed: u64,
    pub bytes: u64,
    /// Committed task ranges (a chunk, or part of one when a worker stopped early).
    pub ranges: u64,
}

impl Counters {
    pub fn tasks_done(&self) -> u64 {
        self.succeeded + self.failed
    }

    pub fn add(&mut self, other: &Counters) {
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.bytes += other.bytes;
        self.ranges += other.ranges;
    }
}

/// A job fails once at least `min_tasks` tasks ran and more than `max_failed_percent` of them failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureThreshold {
    pub min_tasks: u64,
    pub max_failed_percent: f64,
}

impl Default for FailureThreshold {
    fn default() -> Self {
        FailureThreshold {
            min_tasks: 1000,
            max_failed_percent: 50.0,
        }
    }
}

impl FailureThreshold {
    pub fn exceeded(&self, counters: &Counters) -> bool {
        let ran = counters.tasks_done();
        ran > 0
            && ran >= self.min_tasks
            && (counters.failed as f64) * 100.0 > self.max_failed_percent * ran as f64
    }

    pub fn reason(&self, counters: &Counters) -> String {
        format!(
            "{} of {} tasks failed, more than the {}% allowed once at least {} tasks have run",
            counters.failed,
            counters.tasks_done(),
            self.max_failed_percent,
            self.min_tasks
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(succeeded: u64, failed: u64) -> Counters {
        Counters {
            succeeded,
            failed,
            ..Default::default()
        }
    }

    #[test]
    fn threshold_needs_enough_tasks_and_more_than_half_failed() {
        let t = FailureThreshold::default();
        assert!(!t.exceeded(&counters(0, 999)), "too few tasks ran");
        assert!(t.exceeded(&counters(0, 1000)));
        assert!(
            !t.exceeded(&counters(500, 500)),
            "exactly half is not more than half"
        );
        assert!(t.exceeded(&counters(499, 501)));
        let small = FailureThreshold {
            min_tasks: 10,
            max_failed_percent: 20.0,
        };
        assert!(small.exceeded(&counters(7, 3)));
        assert!(!small.exceeded(&counters(8, 2)));
    }
}
