//! Millisecond timestamps <-> RFC 3339 UTC strings.

/// 0000-01-01T00:00:00.000Z
pub(crate) const MIN_MILLIS: i64 = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z
pub(crate) const MAX_MILLIS: i64 = 253_402_300_799_999;

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
/// `None` outside years 0000..=9999. (Hand-rolled rather than chrono's
/// formatter because it runs once per record; tested against chrono.)
pub(crate) fn format_millis(ms: i64) -> Option<String> {
    if !(MIN_MILLIS..=MAX_MILLIS).contains(&ms) {
        return None;
    }
    let days = ms.div_euclid(86_400_000);
    let ms_of_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hour, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (minute, rest) = (rest / 60_000, rest % 60_000);
    let (second, milli) = (rest / 1000, rest % 1000);

    let mut buf = [0u8; 24];
    put_digits(&mut buf[0..4], year);
    buf[4] = b'-';
    put_digits(&mut buf[5..7], month);
    buf[7] = b'-';
    put_digits(&mut buf[8..10], day);
    buf[10] = b'T';
    put_digits(&mut buf[11..13], hour);
    buf[13] = b':';
    put_digits(&mut buf[14..16], minute);
    buf[16] = b':';
    put_digits(&mut buf[17..19], second);
    buf[19] = b'.';
    put_digits(&mut buf[20..23], milli);
    buf[23] = b'Z';
    Some(buf.iter().map(|&b| b as char).collect())
}

/// Parses an RFC 3339 date-time (any offset, any fraction) to milliseconds
/// since the Unix epoch, truncating sub-millisecond digits.
pub(crate) fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn put_digits(out: &mut [u8], mut value: i64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat};

    fn chrono_format(ms: i64) -> String {
        DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    #[test]
    fn matches_chrono() {
        let mut samples = vec![
            0,
            -1,
            1,
            MIN_MILLIS,
            MAX_MILLIS,
            951_782_400_000,     // 2000-02-29
            1_767_323_045_678,   // 2026-01-02T03:04:05.678Z
            -2_208_988_800_001,  // 1899-12-31T23:59:59.999Z
            4_107_542_399_999,   // 2100-02-28T23:59:59.999Z
            253_402_300_800_000, // out of range below
        ];
        // A walk over the whole range with an odd stride hits every month,
        // leap days and all times of day.
        let mut ms = MIN_MILLIS;
        while ms <= MAX_MILLIS {
            samples.push(ms);
            ms += 7_777_777_777;
        }
        for ms in samples {
            if ms > MAX_MILLIS {
                assert_eq!(format_millis(ms), None);
                continue;
            }
            let ours = format_millis(ms).unwrap();
            assert_eq!(ours, chrono_format(ms), "{ms}");
            assert_eq!(parse_rfc3339_millis(&ours), Some(ms), "{ours}");
        }
        assert_eq!(format_millis(MIN_MILLIS - 1), None);
        assert_eq!(
            format_millis(1_767_323_045_678).as_deref(),
            Some("2026-01-02T03:04:05.678Z")
        );
    }

    #[test]
    fn parses_offsets_and_fractions() {
        assert_eq!(
            parse_rfc3339_millis("2026-01-02T04:04:05.678999+01:00"),
            Some(1_767_323_045_678)
        );
        assert_eq!(
            parse_rfc3339_millis("2026-01-02T03:04:05Z"),
            Some(1_767_323_045_000)
        );
        assert_eq!(parse_rfc3339_millis("2026-01-02 03:04:05"), None);
    }
}
