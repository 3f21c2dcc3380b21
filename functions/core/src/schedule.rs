//! Backup schedules in Amazon EventBridge (Scheduler) syntax, evaluated in an IANA time zone.
//!
//! The planner wakes up every minute (sometimes late, sometimes twice) and asks
//! [`Schedule::latest_slot_at_or_before`] for the slot that is due; [`slot_token`] turns the
//! policy and that slot into the idempotency token of the run, so a slot yields one run however
//! often the planner asks.
//!
//! Three kinds of expression, as in EventBridge Scheduler:
//!
//! * `rate(N unit)`, unit `minute(s)`, `hour(s)` or `day(s)` (singular only with 1). A rate is a
//!   fixed duration (a day is 24 hours, whatever daylight saving does, as in EventBridge), and the
//!   slots are `anchor + k * period` for k = 0, 1, 2, ..., the anchor (the policy's creation time)
//!   truncated to its minute. The time zone does not change rate slots.
//! * `cron(minutes hours day-of-month month day-of-week year)`: EventBridge's six fields, with
//!   `* , - /`, `?` (exactly one of day-of-month and day-of-week must be `?`), `L`, `W`, `LW`,
//!   `#`, month names JAN-DEC and weekday names SUN-SAT, day-of-week numbers 1-7 with 1 = Sunday,
//!   years 1970-2199. Evaluation uses the `croner` crate (in its Quartz mode, which has the same
//!   weekday numbering) on wall-clock time in the schedule's time zone (`chrono-tz`).
//! * `at(yyyy-mm-ddThh:mm:ss)`: one slot, a wall-clock time in the schedule's time zone.
//!
//! Slots are instants (UTC [`OffsetDateTime`]) on whole minutes.
//!
//! # Daylight saving time
//!
//! We follow what EventBridge Scheduler documents: "When the time shifts forward in Spring, your
//! schedule invocation gets skipped if the cron expression falls on a non-existent date and time.
//! When the time shifts back in the Fall, your schedule runs only once and doesn't repeat its
//! invocation." So a cron slot is a wall-clock time that matches the pattern, exists in the time
//! zone, and is taken at its first instant:
//!
//! * spring forward: `cron(30 2 * * ? *)` in Europe/Paris has no slot on the day 02:00 jumps to
//!   03:00 (it is skipped, not moved to 03:00);
//! * fall back: a wall-clock time that happens twice is one slot, at its first (summer-time)
//!   instant; this holds for interval patterns too (`cron(0/30 * * * ? *)` runs at 02:00 and 02:30
//!   once, in the first pass of the repeated hour).
//!
//! An `at(...)` whose wall-clock time does not exist in the time zone is rejected by
//! [`Schedule::parse`] (skipping it would mean never running); one that happens twice is taken at
//! its first instant.

use chrono::{DateTime, NaiveDate, TimeZone as _};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use time::OffsetDateTime;

/// A parsed schedule: see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    expression: String,
    time_zone: Tz,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    /// Slots at `anchor + k * period`, in Unix seconds; `anchor` is on a whole minute.
    Rate { anchor: i64, period: i64 },
    /// Slots where the wall clock in the time zone matches the pattern (seconds field fixed at 0).
    Cron(Box<Cron>),
    /// One slot, in Unix seconds.
    At(i64),
}

/// Why an expression or a time zone was refused. Each message quotes the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("`{expression}`: expected `rate(...)`, `cron(...)` or `at(...)`")]
    UnknownKind { expression: String },
    #[error("{expression}: {reason}")]
    InvalidRate { expression: String, reason: String },
    #[error("{expression}: {reason}")]
    InvalidCron { expression: String, reason: String },
    #[error("{expression}: {reason}")]
    InvalidAt { expression: String, reason: String },
    #[error(
        "unknown time zone `{time_zone}`: expected an IANA name such as `UTC` or `Europe/Paris`"
    )]
    UnknownTimeZone { time_zone: String },
}

/// At most this many candidates a cron search discards (wall-clock times skipped or repeated by
/// daylight saving changes) before giving up. Zones change at most a few times a year, so this
/// is never reached by a real schedule; it only bounds the loop.
const MAX_DISCARDED_CANDIDATES: usize = 64;

impl Schedule {
    /// Parses `expression` (see the module documentation) to be evaluated in `time_zone`, an IANA
    /// name ("UTC", "Europe/Paris", ...). Rates are anchored at `anchor` (the policy's creation
    /// time), truncated to its minute.
    pub fn parse(
        expression: &str,
        time_zone: &str,
        anchor: OffsetDateTime,
    ) -> Result<Schedule, ScheduleError> {
        let tz: Tz = time_zone
            .parse()
            .map_err(|_| ScheduleError::UnknownTimeZone {
                time_zone: time_zone.to_string(),
            })?;
        let expression = expression.trim();
        let kind = if let Some(inner) = inside(expression, "rate") {
            parse_rate(inner, anchor).map_err(|reason| ScheduleError::InvalidRate {
                expression: expression.to_string(),
                reason,
            })?
        } else if let Some(inner) = inside(expression, "cron") {
            parse_cron(inner).map_err(|reason| ScheduleError::InvalidCron {
                expression: expression.to_string(),
                reason,
            })?
        } else if let Some(inner) = inside(expression, "at") {
            parse_at(inner, tz).map_err(|reason| ScheduleError::InvalidAt {
                expression: expression.to_string(),
                reason,
            })?
        } else {
            return Err(ScheduleError::UnknownKind {
                expression: expression.to_string(),
            });
        };
        Ok(Schedule {
            expression: expression.to_string(),
            time_zone: tz,
            kind,
        })
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The IANA name of the time zone.
    pub fn time_zone(&self) -> &str {
        self.time_zone.name()
    }

    /// True for `at(...)`: the schedule has a single slot.
    pub fn is_one_time(&self) -> bool {
        matches!(self.kind, Kind::At(_))
    }

    /// The latest slot at or before `now`, or None if there is none (before the rate's anchor or
    /// the `at` time, a cron whose years are all later, ...). Rates take constant time; cron
    /// searches backwards with `croner`, which jumps over non-matching years, months, days and
    /// hours rather than stepping minute by minute.
    pub fn latest_slot_at_or_before(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let now = now.unix_timestamp();
        let slot = match &self.kind {
            Kind::Rate { anchor, period } => {
                if now < *anchor {
                    return None;
                }
                let k = (now - anchor) / period;
                anchor.checked_add(k.checked_mul(*period)?)?
            }
            Kind::At(at) => {
                if *at > now {
                    return None;
                }
                *at
            }
            Kind::Cron(cron) => self.cron_search(cron, now, Direction::Backward)?,
        };
        from_unix(slot)
    }

    /// The first slot strictly after `after`, or None if there is none.
    pub fn next_slot_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        // Slots are on whole seconds, so "after `after`" is "after its whole second".
        let after = after.unix_timestamp();
        let slot = match &self.kind {
            Kind::Rate { anchor, period } => {
                if after < *anchor {
                    *anchor
                } else {
                    let k = (after - anchor) / period + 1;
                    anchor.checked_add(k.checked_mul(*period)?)?
                }
            }
            Kind::At(at) => {
                if *at <= after {
                    return None;
                }
                *at
            }
            Kind::Cron(cron) => self.cron_search(cron, after, Direction::Forward)?,
        };
        from_unix(slot)
    }

    /// Backward: the latest slot at or before `from`. Forward: the first slot after `from`.
    /// Both in Unix seconds.
    fn cron_search(&self, cron: &Cron, from: i64, direction: Direction) -> Option<i64> {
        let mut cursor = DateTime::from_timestamp(from, 0)?.with_timezone(&self.time_zone);
        let mut inclusive = direction == Direction::Backward;
        for _ in 0..MAX_DISCARDED_CANDIDATES {
            let candidate = match direction {
                Direction::Backward => cron.find_previous_occurrence(&cursor, inclusive),
                Direction::Forward => cron.find_next_occurrence(&cursor, inclusive),
            }
            .ok()?;
            if self.is_cron_slot(cron, &candidate) {
                return Some(candidate.timestamp());
            }
            cursor = candidate;
            inclusive = false;
        }
        None
    }

    /// Whether an occurrence croner found is a slot under the daylight-saving rules of the module
    /// documentation. croner moves a fixed time that falls in a spring-forward gap to just after
    /// the gap, and runs interval patterns in both passes of a repeated hour; EventBridge skips
    /// the former and runs each wall-clock time once.
    fn is_cron_slot(&self, cron: &Cron, candidate: &DateTime<Tz>) -> bool {
        // A moved occurrence (02:30 run at 03:00) does not match the pattern on the wall clock.
        if !cron.is_time_matching(candidate).unwrap_or(false) {
            return false;
        }
        // A repeated wall-clock time is a slot only at its first instant.
        match self
            .time_zone
            .from_local_datetime(&candidate.naive_local())
            .earliest()
        {
            Some(first) => first.timestamp() == candidate.timestamp(),
            None => false,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Backward,
    Forward,
}

/// The idempotency token for one run of `policy` in `slot`: `backup-<policy>-<yyyymmddThhmmZ>`
/// (the slot in UTC, truncated to its minute). The same policy and slot always give the same
/// token, and it is at most 64 characters (S3's `ClientRequestToken` limit) of `[A-Za-z0-9._-]`.
///
/// `<policy>` is the policy name itself when it is at most 41 characters of `[A-Za-z0-9._-]`;
/// otherwise it is exactly 42 characters: the name's first 9 characters (others replaced by `_`,
/// padded with `_`), `-`, and the MD5 of the whole name in hex. The lengths differ, so a name
/// used as-is never collides with a hashed one.
pub fn slot_token(policy: &str, slot: OffsetDateTime) -> String {
    const MAX_VERBATIM: usize = 41;
    let verbatim =
        !policy.is_empty() && policy.len() <= MAX_VERBATIM && policy.chars().all(is_token_char);
    let policy_part = if verbatim {
        policy.to_string()
    } else {
        use md5::{Digest, Md5};
        let prefix: String = policy
            .chars()
            .take(9)
            .map(|c| if is_token_char(c) { c } else { '_' })
            .collect();
        format!(
            "{prefix:_<9}-{}",
            hex::encode(Md5::digest(policy.as_bytes()))
        )
    };
    let utc = slot.to_offset(time::UtcOffset::UTC);
    format!(
        "backup-{policy_part}-{:04}{:02}{:02}T{:02}{:02}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute()
    )
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// `name(inner)` → `inner`.
fn inside<'a>(expression: &'a str, name: &str) -> Option<&'a str> {
    expression
        .strip_prefix(name)?
        .strip_prefix('(')?
        .strip_suffix(')')
}

fn from_unix(seconds: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).ok()
}

fn parse_rate(inner: &str, anchor: OffsetDateTime) -> Result<Kind, String> {
    let parts: Vec<&str> = inner.split_whitespace().collect();
    let [value, unit] = parts[..] else {
        return Err("expected `rate(value unit)`, e.g. `rate(5 minutes)`".to_string());
    };
    let value: i64 = match value.parse::<u32>() {
        Ok(v) if v > 0 => i64::from(v),
        _ => {
            return Err(format!(
                "the value `{value}` is not a positive whole number"
            ))
        }
    };
    let (singular, seconds) = match unit {
        "minute" | "minutes" => ("minute", 60),
        "hour" | "hours" => ("hour", 3_600),
        "day" | "days" => ("day", 86_400),
        _ => {
            return Err(format!(
                "unknown unit `{unit}`: expected minute(s), hour(s) or day(s)"
            ))
        }
    };
    let plural = unit != singular;
    if value == 1 && plural {
        return Err(format!("a value of 1 takes the singular unit `{singular}`"));
    }
    if value != 1 && !plural {
        return Err(format!(
            "a value other than 1 takes the plural unit `{singular}s`"
        ));
    }
    Ok(Kind::Rate {
        anchor: anchor.unix_timestamp().div_euclid(60) * 60,
        period: value * seconds,
    })
}

fn parse_at(inner: &str, tz: Tz) -> Result<Kind, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let local = time::PrimitiveDateTime::parse(inner.trim(), format)
        .map_err(|e| format!("expected `at(yyyy-mm-ddThh:mm:ss)`: {e}"))?;
    if local.second() != 0 {
        return Err("the seconds must be 00: slots are whole minutes".to_string());
    }
    let naive = NaiveDate::from_ymd_opt(
        local.year(),
        u32::from(u8::from(local.month())),
        u32::from(local.day()),
    )
    .and_then(|d| d.and_hms_opt(u32::from(local.hour()), u32::from(local.minute()), 0))
    .ok_or_else(|| format!("{inner} is not a valid date and time"))?;
    match tz.from_local_datetime(&naive).earliest() {
        Some(instant) => Ok(Kind::At(instant.timestamp())),
        None => Err(format!(
            "{inner} does not exist in {} (skipped by a daylight-saving change)",
            tz.name()
        )),
    }
}

const CRON_FIELDS: [&str; 6] = [
    "minutes",
    "hours",
    "day-of-month",
    "month",
    "day-of-week",
    "year",
];
/// Inclusive ranges of the numbers each field takes (day-of-week: 1 = Sunday ... 7 = Saturday).
const CRON_RANGES: [(u32, u32); 6] = [(0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2199)];
const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn parse_cron(inner: &str) -> Result<Kind, String> {
    let fields: Vec<String> = inner
        .split_whitespace()
        .map(|f| f.to_ascii_uppercase())
        .collect();
    if fields.len() != 6 {
        return Err(format!(
            "expected 6 fields (minutes hours day-of-month month day-of-week year), found {}",
            fields.len()
        ));
    }
    for (i, field) in fields.iter().enumerate() {
        check_cron_field(i, field)?;
    }
    match (fields[2] == "?", fields[4] == "?") {
        (false, false) => {
            return Err("one of day-of-month and day-of-week must be `?`".to_string());
        }
        (true, true) => {
            return Err("day-of-month and day-of-week cannot both be `?`".to_string());
        }
        _ => {}
    }
    // A lone `L` in day-of-week is the last day of the week, Saturday (Quartz); croner would
    // take it as a modifier without a weekday and never match.
    let day_of_week = if fields[4] == "L" {
        "7"
    } else {
        fields[4].as_str()
    };
    // croner in Quartz mode: seconds first (always 0), weekdays 1-7 from Sunday, and `5/15`
    // (a start and a step, which EventBridge accepts) allowed.
    let pattern = format!(
        "0 {} {} {} {} {} {}",
        fields[0], fields[1], fields[2], fields[3], day_of_week, fields[5]
    );
    let cron = CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Required)
        .alternative_weekdays(true)
        .sloppy_ranges(true)
        .dom_and_dow(false)
        .build()
        .parse(&pattern)
        .map_err(|e| e.to_string())?;
    Ok(Kind::Cron(Box::new(cron)))
}

/// Checks the characters, words and numbers of field `index` (upper case), so that errors name
/// the field; croner checks the rest of the syntax.
fn check_cron_field(index: usize, field: &str) -> Result<(), String> {
    let name = CRON_FIELDS[index];
    let is_day_field = index == 2 || index == 4;
    if field.contains('?') && (field != "?" || !is_day_field) {
        return Err(format!(
            "{name} `{field}`: `?` is only allowed as the whole day-of-month or day-of-week field"
        ));
    }
    if let Some(c) = field
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !matches!(c, '*' | ',' | '-' | '/' | '?' | '#'))
    {
        return Err(format!("{name} `{field}`: unexpected character `{c}`"));
    }
    if field.contains('#') && index != 4 {
        return Err(format!(
            "{name} `{field}`: `#` is only allowed in day-of-week"
        ));
    }
    // Words: each run of letters must be one this field knows.
    for word in field
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
    {
        let known = match index {
            2 => matches!(word, "L" | "W" | "LW"),
            3 => MONTH_NAMES.contains(&word),
            4 => word == "L" || WEEKDAY_NAMES.contains(&word),
            _ => false,
        };
        if !known {
            return Err(format!("{name} `{field}`: unexpected `{word}`"));
        }
    }
    // Numbers: values must be in the field's range; a step (after `/`) must be at least 1, an
    // occurrence (after `#`) 1 to 5.
    let (low, high) = CRON_RANGES[index];
    let mut rest = field;
    let mut previous = None;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            let mut chars = rest.chars();
            previous = chars.next();
            rest = chars.as_str();
            continue;
        }
        let (number, tail) = rest.split_at(digits);
        rest = tail;
        let value: u32 = number
            .parse()
            .map_err(|_| format!("{name} `{field}`: `{number}` is too large"))?;
        match previous {
            Some('/') if value == 0 => {
                return Err(format!("{name} `{field}`: a step must be at least 1"));
            }
            Some('/') => {}
            Some('#') if !(1..=5).contains(&value) => {
                return Err(format!(
                    "{name} `{field}`: the occurrence after `#` must be 1 to 5"
                ));
            }
            Some('#') => {}
            _ if !(low..=high).contains(&value) => {
                return Err(format!(
                    "{name} `{field}`: {value} is out of range {low}-{high}"
                ));
            }
            _ => {}
        }
        previous = number.chars().last();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn latest(s: &Schedule, now: OffsetDateTime) -> Option<OffsetDateTime> {
        s.latest_slot_at_or_before(now)
    }

    fn parse(expression: &str, zone: &str) -> Schedule {
        Schedule::parse(expression, zone, datetime!(2026-01-01 00:00 UTC))
            .unwrap_or_else(|e| panic!("{expression} in {zone}: {e}"))
    }

    fn error(expression: &str, zone: &str) -> String {
        Schedule::parse(expression, zone, datetime!(2026-01-01 00:00 UTC))
            .expect_err(expression)
            .to_string()
    }

    /// The next `n` slots after `after`.
    fn next_n(s: &Schedule, mut after: OffsetDateTime, n: usize) -> Vec<OffsetDateTime> {
        let mut slots = Vec::new();
        for _ in 0..n {
            after = s.next_slot_after(after).expect("a next slot");
            slots.push(after);
        }
        slots
    }

    // ---- parse errors ----

    #[test]
    fn parse_errors_name_what_is_wrong() {
        assert_eq!(
            error("rate(5 weeks)", "UTC"),
            "rate(5 weeks): unknown unit `weeks`: expected minute(s), hour(s) or day(s)"
        );
        assert_eq!(
            error("rate(1 minutes)", "UTC"),
            "rate(1 minutes): a value of 1 takes the singular unit `minute`"
        );
        assert_eq!(
            error("rate(5 minute)", "UTC"),
            "rate(5 minute): a value other than 1 takes the plural unit `minutes`"
        );
        assert!(error("rate(0 minutes)", "UTC").contains("not a positive whole number"));
        assert!(error("rate(-5 minutes)", "UTC").contains("not a positive whole number"));
        assert!(error("rate(5)", "UTC").contains("expected `rate(value unit)`"));
        assert_eq!(
            error("cron(0 2 * * ?)", "UTC"),
            "cron(0 2 * * ?): expected 6 fields (minutes hours day-of-month month day-of-week year), found 5"
        );
        assert!(error("cron(0 0 2 * * ? *)", "UTC").ends_with("found 7"));
        assert_eq!(
            error("cron(0 2 * * * *)", "UTC"),
            "cron(0 2 * * * *): one of day-of-month and day-of-week must be `?`"
        );
        assert_eq!(
            error("cron(0 2 ? * ? *)", "UTC"),
            "cron(0 2 ? * ? *): day-of-month and day-of-week cannot both be `?`"
        );
        assert_eq!(
            error("cron(0 24 * * ? *)", "UTC"),
            "cron(0 24 * * ? *): hours `24`: 24 is out of range 0-23"
        );
        assert!(
            error("cron(0 2 ? * 0 *)", "UTC").contains("day-of-week `0`: 0 is out of range 1-7")
        );
        assert!(error("cron(0 2 ? * 8 *)", "UTC").contains("out of range 1-7"));
        assert!(error("cron(0 2 * * ? 1969)", "UTC").contains("year `1969`"));
        assert!(error("cron(0 2 * FOO ? *)", "UTC").contains("month `FOO`: unexpected `FOO`"));
        assert!(error("cron(0 2 * * +MON *)", "UTC").contains("unexpected character `+`"));
        assert!(error("cron(0 2 ? * 2#6 *)", "UTC").contains("1 to 5"));
        assert!(error("cron(0/0 2 * * ? *)", "UTC").contains("step must be at least 1"));
        assert!(error("cron(? 2 * * ? *)", "UTC").contains("`?` is only allowed"));
        assert!(error("cron(5-1 2 * * ? *)", "UTC").starts_with("cron(5-1 2 * * ? *): "));
        assert!(error("at(2026-12-01 02:00:00)", "UTC")
            .starts_with("at(2026-12-01 02:00:00): expected"));
        assert!(error("at(2026-12-01T02:00:30)", "UTC").contains("seconds must be 00"));
        assert_eq!(
            error("every day", "UTC"),
            "`every day`: expected `rate(...)`, `cron(...)` or `at(...)`"
        );
        assert_eq!(
            error("rate(5 minutes)", "Mars/Olympus_Mons"),
            "unknown time zone `Mars/Olympus_Mons`: expected an IANA name such as `UTC` or `Europe/Paris`"
        );
        assert!(matches!(
            Schedule::parse("cron(0 2 * * * *)", "UTC", datetime!(2026-01-01 00:00 UTC)),
            Err(ScheduleError::InvalidCron { .. })
        ));
    }

    #[test]
    fn accepted_expressions() {
        for e in [
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(1 hour)",
            "rate(2 days)",
            "cron(0 2 * * ? *)",
            "cron(0/15 * * * ? *)",
            "cron(0 9 ? * MON-FRI *)",
            "cron(0 9 ? * mon-fri *)",
            "cron(0 18 ? * 6L 2026-2030)",
            "cron(0 8 15W * ? *)",
            "cron(0 8 LW * ? *)",
            "cron(0 8 ? JAN,JUL 2#1 *)",
            "cron(0 8 ? * L *)",
            "at(2026-12-01T02:00:00)",
        ] {
            let s = parse(e, "Europe/Paris");
            assert_eq!(s.expression(), e);
            assert_eq!(s.time_zone(), "Europe/Paris");
            assert_eq!(s.is_one_time(), e.starts_with("at("));
        }
    }

    // ---- rates ----

    #[test]
    fn rate_slots_are_anchored_at_the_anchor() {
        let s = Schedule::parse("rate(1 hour)", "UTC", datetime!(2026-03-10 10:07:42 UTC)).unwrap();
        // The anchor is truncated to its minute: slots are 10:07, 11:07, ...
        assert_eq!(
            latest(&s, datetime!(2026-03-10 13:30 UTC)),
            Some(datetime!(2026-03-10 13:07 UTC))
        );
        assert_eq!(
            latest(&s, datetime!(2026-03-10 13:07 UTC)),
            Some(datetime!(2026-03-10 13:07 UTC))
        );
        assert_eq!(
            latest(&s, datetime!(2026-03-10 13:06:59.999 UTC)),
            Some(datetime!(2026-03-10 12:07 UTC))
        );
        assert_eq!(
            latest(&s, datetime!(2026-03-10 10:07 UTC)),
            Some(datetime!(2026-03-10 10:07 UTC))
        );
        assert_eq!(latest(&s, datetime!(2026-03-10 10:06:59 UTC)), None);
        assert_eq!(
            s.next_slot_after(datetime!(2026-03-10 09:00 UTC)),
            Some(datetime!(2026-03-10 10:07 UTC))
        );
        assert_eq!(
            s.next_slot_after(datetime!(2026-03-10 10:07 UTC)),
            Some(datetime!(2026-03-10 11:07 UTC))
        );
        assert_eq!(
            s.next_slot_after(datetime!(2026-03-10 13:06:59.5 UTC)),
            Some(datetime!(2026-03-10 13:07 UTC))
        );
        // Far from the anchor: arithmetic, not iteration.
        assert_eq!(
            latest(&s, datetime!(2036-03-10 13:30 UTC)),
            Some(datetime!(2036-03-10 13:07 UTC))
        );
    }

    #[test]
    fn rate_units() {
        let anchor = datetime!(2026-03-10 10:07 UTC);
        let every5 = Schedule::parse("rate(5 minutes)", "UTC", anchor).unwrap();
        assert_eq!(
            every5.latest_slot_at_or_before(datetime!(2026-03-10 10:21 UTC)),
            Some(datetime!(2026-03-10 10:17 UTC))
        );
        // Days are 24 hours, also across a daylight-saving change in the schedule's zone.
        let days = Schedule::parse("rate(2 days)", "Europe/Paris", anchor).unwrap();
        assert_eq!(
            days.latest_slot_at_or_before(datetime!(2026-03-31 00:00 UTC)),
            Some(datetime!(2026-03-30 10:07 UTC))
        );
        assert_eq!(
            days.next_slot_after(datetime!(2026-03-30 10:07 UTC)),
            Some(datetime!(2026-04-01 10:07 UTC))
        );
    }

    // ---- cron ----

    #[test]
    fn cron_daily_in_utc() {
        let s = parse("cron(0 2 * * ? *)", "UTC");
        assert_eq!(
            latest(&s, datetime!(2026-06-15 01:59:59 UTC)),
            Some(datetime!(2026-06-14 02:00 UTC))
        );
        assert_eq!(
            latest(&s, datetime!(2026-06-15 02:00 UTC)),
            Some(datetime!(2026-06-15 02:00 UTC))
        );
        assert_eq!(
            latest(&s, datetime!(2026-06-15 02:00:30 UTC)),
            Some(datetime!(2026-06-15 02:00 UTC))
        );
        assert_eq!(
            s.next_slot_after(datetime!(2026-06-15 02:00 UTC)),
            Some(datetime!(2026-06-16 02:00 UTC))
        );
        assert_eq!(
            s.next_slot_after(datetime!(2026-06-15 01:59:59.9 UTC)),
            Some(datetime!(2026-06-15 02:00 UTC))
        );
        // Results are in UTC.
        assert_eq!(
            s.next_slot_after(datetime!(2026-06-15 05:00 +05:00))
                .unwrap()
                .offset(),
            time::UtcOffset::UTC
        );
    }

    #[test]
    fn cron_daily_in_new_york() {
        let s = parse("cron(0 2 * * ? *)", "America/New_York");
        // Winter: EST = UTC-5.
        assert_eq!(
            latest(&s, datetime!(2026-01-15 12:00 UTC)),
            Some(datetime!(2026-01-15 07:00 UTC))
        );
        assert_eq!(
            latest(&s, datetime!(2026-01-15 06:59 UTC)),
            Some(datetime!(2026-01-14 07:00 UTC))
        );
        // Summer: EDT = UTC-4.
        assert_eq!(
            latest(&s, datetime!(2026-07-15 12:00 UTC)),
            Some(datetime!(2026-07-15 06:00 UTC))
        );
        assert_eq!(
            s.next_slot_after(datetime!(2026-07-15 06:00 UTC)),
            Some(datetime!(2026-07-16 06:00 UTC))
        );
    }

    #[test]
    fn cron_weekday_names_and_numbers_agree() {
        let names = parse("cron(0 9 ? * MON-FRI *)", "UTC");
        let numbers = parse("cron(0 9 ? * 2-6 *)", "UTC");
        // 2026-03-06 is a Friday.
        let start = datetime!(2026-03-06 12:00 UTC);
        let expected = vec![
            datetime!(2026-03-09 09:00 UTC), // Monday
            datetime!(2026-03-10 09:00 UTC),
            datetime!(2026-03-11 09:00 UTC),
            datetime!(2026-03-12 09:00 UTC),
            datetime!(2026-03-13 09:00 UTC), // Friday
            datetime!(2026-03-16 09:00 UTC), // Monday
        ];
        assert_eq!(next_n(&names, start, 6), expected);
        assert_eq!(next_n(&numbers, start, 6), expected);
        // Saturday noon: the latest is Friday 09:00.
        assert_eq!(
            latest(&names, datetime!(2026-03-07 12:00 UTC)),
            Some(datetime!(2026-03-06 09:00 UTC))
        );
        assert_eq!(
            latest(&numbers, datetime!(2026-03-07 12:00 UTC)),
            Some(datetime!(2026-03-06 09:00 UTC))
        );
        // 1 is Sunday, 7 is Saturday.
        let sunday = parse("cron(0 9 ? * 1 *)", "UTC");
        assert_eq!(
            sunday.next_slot_after(start),
            Some(datetime!(2026-03-08 09:00 UTC))
        );
        let saturday = parse("cron(0 9 ? * SAT *)", "UTC");
        assert_eq!(
            saturday.next_slot_after(start),
            Some(datetime!(2026-03-07 09:00 UTC))
        );
        let lone_l = parse("cron(0 9 ? * L *)", "UTC");
        assert_eq!(
            lone_l.next_slot_after(start),
            Some(datetime!(2026-03-07 09:00 UTC))
        );
    }

    #[test]
    fn cron_last_day_of_month_and_friends() {
        let last = parse("cron(0 3 L * ? *)", "UTC");
        assert_eq!(
            next_n(&last, datetime!(2026-01-15 00:00 UTC), 3),
            vec![
                datetime!(2026-01-31 03:00 UTC),
                datetime!(2026-02-28 03:00 UTC),
                datetime!(2026-03-31 03:00 UTC),
            ]
        );
        assert_eq!(
            latest(&last, datetime!(2028-03-15 00:00 UTC)),
            Some(datetime!(2028-02-29 03:00 UTC))
        );
        // Last Friday (6L): 2026-03-27.
        let last_friday = parse("cron(0 3 ? * 6L *)", "UTC");
        assert_eq!(
            last_friday.next_slot_after(datetime!(2026-03-01 00:00 UTC)),
            Some(datetime!(2026-03-27 03:00 UTC))
        );
        // Second Monday (2#2): 2026-03-09.
        let second_monday = parse("cron(0 3 ? * MON#2 *)", "UTC");
        assert_eq!(
            second_monday.next_slot_after(datetime!(2026-03-01 00:00 UTC)),
            Some(datetime!(2026-03-09 03:00 UTC))
        );
        // Nearest weekday to the 15th: 2026-03-15 is a Sunday, so Monday the 16th.
        let near_15 = parse("cron(0 3 15W * ? *)", "UTC");
        assert_eq!(
            near_15.next_slot_after(datetime!(2026-03-01 00:00 UTC)),
            Some(datetime!(2026-03-16 03:00 UTC))
        );
        // Last weekday of May 2026 (the 31st is a Sunday): Friday the 29th.
        let last_weekday = parse("cron(0 3 LW * ? *)", "UTC");
        assert_eq!(
            last_weekday.next_slot_after(datetime!(2026-05-01 00:00 UTC)),
            Some(datetime!(2026-05-29 03:00 UTC))
        );
        // Month names and a start/step minute.
        let quarterly = parse("cron(5/20 6 1 JAN,APR,JUL,OCT ? *)", "UTC");
        assert_eq!(
            next_n(&quarterly, datetime!(2026-02-01 00:00 UTC), 4),
            vec![
                datetime!(2026-04-01 06:05 UTC),
                datetime!(2026-04-01 06:25 UTC),
                datetime!(2026-04-01 06:45 UTC),
                datetime!(2026-07-01 06:05 UTC),
            ]
        );
    }

    #[test]
    fn cron_year_field() {
        let s = parse("cron(0 2 1 1 ? 2027,2029)", "UTC");
        assert_eq!(latest(&s, datetime!(2026-06-01 00:00 UTC)), None);
        assert_eq!(
            s.next_slot_after(datetime!(2026-06-01 00:00 UTC)),
            Some(datetime!(2027-01-01 02:00 UTC))
        );
        assert_eq!(
            s.next_slot_after(datetime!(2027-01-01 02:00 UTC)),
            Some(datetime!(2029-01-01 02:00 UTC))
        );
        assert_eq!(s.next_slot_after(datetime!(2029-01-01 02:00 UTC)), None);
        assert_eq!(
            latest(&s, datetime!(2028-06-01 00:00 UTC)),
            Some(datetime!(2027-01-01 02:00 UTC))
        );
        // Years in the past: the latest slot stays the last one, however long ago.
        assert_eq!(
            latest(&s, datetime!(2100-06-01 00:00 UTC)),
            Some(datetime!(2029-01-01 02:00 UTC))
        );
        let range = parse("cron(0 2 ? * MON 2026-2027)", "UTC");
        assert_eq!(range.next_slot_after(datetime!(2027-12-27 02:00 UTC)), None);
        assert_eq!(
            latest(&range, datetime!(2031-01-01 00:00 UTC)),
            Some(datetime!(2027-12-27 02:00 UTC))
        );
    }

    #[test]
    fn cron_that_never_matches_is_bounded() {
        // 30 February never exists: both searches give up (croner stops at its year limits).
        let s = parse("cron(0 2 30 2 ? *)", "UTC");
        let started = std::time::Instant::now();
        assert_eq!(latest(&s, datetime!(2026-06-01 00:00 UTC)), None);
        assert_eq!(s.next_slot_after(datetime!(2026-06-01 00:00 UTC)), None);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    // ---- daylight saving ----

    #[test]
    fn dst_gap_skips_the_missing_wall_clock_time() {
        // Europe/Paris, 2026-03-29: 02:00 CET (01:00Z) jumps to 03:00 CEST. 02:30 does not exist
        // that day, so there is no slot on the 29th (as EventBridge Scheduler skips it).
        let s = parse("cron(30 2 * * ? *)", "Europe/Paris");
        assert_eq!(
            latest(&s, datetime!(2026-03-29 12:00 UTC)),
            Some(datetime!(2026-03-28 01:30 UTC))
        );
        assert_eq!(
            s.next_slot_after(datetime!(2026-03-28 01:30 UTC)),
            Some(datetime!(2026-03-30 00:30 UTC))
        );
        // An hourly pattern runs at 01:00 CET, then 03:00 CEST: nothing in the gap, no duplicates.
        let hourly = parse("cron(0 * * * ? *)", "Europe/Paris");
        assert_eq!(
            next_n(&hourly, datetime!(2026-03-28 23:30 UTC), 3),
            vec![
                datetime!(2026-03-29 00:00 UTC), // 01:00 CET
                datetime!(2026-03-29 01:00 UTC), // 03:00 CEST
                datetime!(2026-03-29 02:00 UTC), // 04:00 CEST
            ]
        );
        assert_eq!(
            latest(&hourly, datetime!(2026-03-29 01:30 UTC)),
            Some(datetime!(2026-03-29 01:00 UTC))
        );
        // An `at` in the gap is refused rather than never run.
        assert!(error("at(2026-03-29T02:30:00)", "Europe/Paris")
            .contains("does not exist in Europe/Paris"));
    }

    #[test]
    fn dst_overlap_runs_once_at_the_first_instant() {
        // Europe/Paris, 2026-10-25: 03:00 CEST (01:00Z) falls back to 02:00 CET; 02:30 happens
        // at 00:30Z and again at 01:30Z. One slot, the first.
        let s = parse("cron(30 2 * * ? *)", "Europe/Paris");
        assert_eq!(
            latest(&s, datetime!(2026-10-25 03:00 UTC)),
            Some(datetime!(2026-10-25 00:30 UTC))
        );
        assert_eq!(
            s.next_slot_after(datetime!(2026-10-25 00:30 UTC)),
            Some(datetime!(2026-10-26 01:30 UTC))
        );
        // Interval patterns too: each wall-clock time once.
        let half_hourly = parse("cron(0/30 * * * ? *)", "Europe/Paris");
        assert_eq!(
            next_n(&half_hourly, datetime!(2026-10-24 23:45 UTC), 5),
            vec![
                datetime!(2026-10-25 00:00 UTC), // 02:00 CEST
                datetime!(2026-10-25 00:30 UTC), // 02:30 CEST
                // 02:00 and 02:30 CET (01:00Z, 01:30Z) repeat wall-clock times: skipped.
                datetime!(2026-10-25 02:00 UTC), // 03:00 CET
                datetime!(2026-10-25 02:30 UTC),
                datetime!(2026-10-25 03:00 UTC),
            ]
        );
        assert_eq!(
            latest(&half_hourly, datetime!(2026-10-25 01:45 UTC)),
            Some(datetime!(2026-10-25 00:30 UTC))
        );
        let at = parse("at(2026-10-25T02:30:00)", "Europe/Paris");
        assert_eq!(
            latest(&at, datetime!(2026-10-25 12:00 UTC)),
            Some(datetime!(2026-10-25 00:30 UTC))
        );
    }

    // ---- at ----

    #[test]
    fn at_has_one_slot() {
        let s = parse("at(2026-12-01T02:00:00)", "UTC");
        assert_eq!(latest(&s, datetime!(2026-12-01 01:59:59 UTC)), None);
        assert_eq!(
            latest(&s, datetime!(2026-12-01 02:00 UTC)),
            Some(datetime!(2026-12-01 02:00 UTC))
        );
        assert_eq!(
            latest(&s, datetime!(2027-12-01 02:00 UTC)),
            Some(datetime!(2026-12-01 02:00 UTC))
        );
        assert_eq!(
            s.next_slot_after(datetime!(2026-11-01 00:00 UTC)),
            Some(datetime!(2026-12-01 02:00 UTC))
        );
        assert_eq!(s.next_slot_after(datetime!(2026-12-01 02:00 UTC)), None);
        // A wall-clock time in the schedule's zone: 02:00 in Tokyo is 17:00Z the day before.
        let tokyo = parse("at(2026-12-01T02:00:00)", "Asia/Tokyo");
        assert_eq!(
            latest(&tokyo, datetime!(2026-12-01 00:00 UTC)),
            Some(datetime!(2026-11-30 17:00 UTC))
        );
    }

    // ---- slot tokens ----

    #[test]
    fn slot_token_is_stable_short_and_distinct() {
        let slot = datetime!(2026-12-01 02:00 UTC);
        assert_eq!(slot_token("nightly", slot), "backup-nightly-20261201T0200Z");
        assert_eq!(slot_token("nightly", slot), slot_token("nightly", slot));
        // The same instant in another offset is the same slot.
        assert_eq!(
            slot_token("nightly", datetime!(2026-12-01 03:00 +01:00)),
            "backup-nightly-20261201T0200Z"
        );
        assert_ne!(
            slot_token("nightly", slot),
            slot_token("nightly", datetime!(2026-12-01 02:01 UTC))
        );
        assert_ne!(slot_token("nightly", slot), slot_token("weekly", slot));

        let long = "a-very-long-policy-name-for-the-production-data-lake-backups";
        let hashed = slot_token(long, slot);
        assert!(hashed.len() <= 64, "{hashed}");
        assert!(hashed.starts_with("backup-a-very-lo-"), "{hashed}");
        assert!(hashed.ends_with("-20261201T0200Z"));
        assert_eq!(hashed, slot_token(long, slot));
        assert_ne!(hashed, slot_token(&format!("{long}2"), slot));

        // Names that would sanitise alike still differ; all tokens stay short and plain.
        let names = [
            "a b",
            "a_b",
            "",
            "é",
            "x".repeat(41).as_str(),
            "x".repeat(42).as_str(),
            "policy/with/slashes",
        ]
        .map(|n| slot_token(n, slot));
        for (i, a) in names.iter().enumerate() {
            assert!(a.len() <= 64, "{a}");
            assert!(a.chars().all(is_token_char), "{a}");
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // 41 characters are kept as they are (63 in all); 42 are hashed, to the 64 maximum.
        assert_eq!(
            slot_token(&"x".repeat(41), slot),
            format!("backup-{}-20261201T0200Z", "x".repeat(41))
        );
        assert_eq!(slot_token(&"x".repeat(42), slot).len(), 64);
    }
}
