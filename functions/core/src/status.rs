//! The S3 Batch Operations job state machine.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobStatus {
    New,
    Preparing,
    Suspended,
    Ready,
    Active,
    Pausing,
    Paused,
    Completing,
    Complete,
    Cancelling,
    Cancelled,
    Failing,
    Failed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 13] = [
        JobStatus::New,
        JobStatus::Preparing,
        JobStatus::Suspended,
        JobStatus::Ready,
        JobStatus::Active,
        JobStatus::Pausing,
        JobStatus::Paused,
        JobStatus::Completing,
        JobStatus::Complete,
        JobStatus::Cancelling,
        JobStatus::Cancelled,
        JobStatus::Failing,
        JobStatus::Failed,
    ];

    /// Statuses in which some component still has work to do for the job (a Suspended job waits
    /// for a person, so it is not listed).
    pub const WORKING: [JobStatus; 7] = [
        JobStatus::New,
        JobStatus::Preparing,
        JobStatus::Ready,
        JobStatus::Active,
        JobStatus::Completing,
        JobStatus::Cancelling,
        JobStatus::Failing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::New => "New",
            JobStatus::Preparing => "Preparing",
            JobStatus::Suspended => "Suspended",
            JobStatus::Ready => "Ready",
            JobStatus::Active => "Active",
            JobStatus::Pausing => "Pausing",
            JobStatus::Paused => "Paused",
            JobStatus::Completing => "Completing",
            JobStatus::Complete => "Complete",
            JobStatus::Cancelling => "Cancelling",
            JobStatus::Cancelled => "Cancelled",
            JobStatus::Failing => "Failing",
            JobStatus::Failed => "Failed",
        }
    }

    /// Some component still has work to do for a job in this status (see [`Self::WORKING`]).
    pub fn is_working(self) -> bool {
        JobStatus::WORKING.contains(&self)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Complete | JobStatus::Cancelled | JobStatus::Failed
        )
    }

    /// Workers stop taking tasks of a job in these statuses.
    pub fn is_stopping(self) -> bool {
        matches!(self, JobStatus::Cancelling | JobStatus::Failing) || self.is_terminal()
    }

    /// Whether the state machine allows `self -> next`. Terminal states never change.
    pub fn can_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        if self == next {
            return false;
        }
        match self {
            New => matches!(next, Preparing | Cancelling | Failed),
            Preparing => matches!(next, Suspended | Active | Cancelling | Failed),
            Suspended => matches!(next, Ready | Cancelling),
            Ready => matches!(next, Active | Cancelling | Failed),
            Active => matches!(next, Completing | Cancelling | Failing | Pausing),
            Pausing => matches!(next, Paused | Cancelling | Failing),
            Paused => matches!(next, Active | Cancelling),
            Completing => matches!(next, Complete | Failed),
            Cancelling => matches!(next, Cancelled),
            Failing => matches!(next, Failed),
            Complete | Cancelled | Failed => false,
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown job status `{0}`; expected one of New, Preparing, Suspended, Ready, Active, Pausing, Paused, Completing, Complete, Cancelling, Cancelled, Failing, Failed")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_never_change() {
        for from in [JobStatus::Complete, JobStatus::Cancelled, JobStatus::Failed] {
            for to in JobStatus::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn happy_path_and_cancel_are_allowed() {
        use JobStatus::*;
        let path = [
            New, Preparing, Suspended, Ready, Active, Completing, Complete,
        ];
        for pair in path.windows(2) {
            assert!(pair[0].can_become(pair[1]), "{} -> {}", pair[0], pair[1]);
        }
        assert!(Active.can_become(Cancelling));
        assert!(Cancelling.can_become(Cancelled));
        assert!(!Cancelling.can_become(Active));
    }

    #[test]
    fn parses_case_insensitively_and_rejects_unknown() {
        assert_eq!("active".parse::<JobStatus>(), Ok(JobStatus::Active));
        assert!("Running".parse::<JobStatus>().is_err());
    }
}
