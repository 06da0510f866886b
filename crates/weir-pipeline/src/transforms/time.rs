//! Calendar arithmetic for parsers (no time-zone database needed: log
//! lines carry their offset).

/// Seconds since the Unix epoch of a UTC calendar time; `None` if invalid.
pub fn civil_to_unix(year: i64, month: u32, day: u32, h: i64, m: i64, s: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // Days from civil (proleptic Gregorian), counting from 1970-01-01.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// The UTC calendar time of seconds since the epoch: (year, month, day,
/// hour, minute, second).
pub fn unix_to_civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (the inverse of `civil_to_unix`'s algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// RFC 3339 (`2024-03-05T10:20:30+08:00`, `...Z`, fractional seconds) to
/// nanoseconds since the epoch.
pub fn parse_rfc3339_ns(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        let mut padded = digits.chars().take(9).collect::<String>();
        while padded.len() < 9 {
            padded.push('0');
        }
        frac_ns = padded.parse().ok()?;
    }
    let offset = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let v = tz[1..3].parse::<i64>().ok()? * 3600 + tz[4..6].parse::<i64>().ok()? * 60;
            if tz.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    let secs = civil_to_unix(year, month, day, h, m, sec)? - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips() {
        for secs in [
            0,
            951_782_400,
            1_700_000_000,
            -1,
            -86_400 * 365 * 3,
            4_102_444_800 + 86_399,
        ] {
            let (y, mo, d, h, mi, s) = unix_to_civil(secs);
            assert_eq!(
                civil_to_unix(y, mo, d, i64::from(h), i64::from(mi), i64::from(s)),
                Some(secs),
                "{secs}"
            );
        }
        assert_eq!(unix_to_civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(unix_to_civil(-1), (1969, 12, 31, 23, 59, 59));
    }

    #[test]
    fn calendar() {
        assert_eq!(civil_to_unix(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(civil_to_unix(2000, 10, 10, 20, 55, 36), Some(971_211_336));
        assert_eq!(civil_to_unix(2024, 2, 29, 0, 0, 0), Some(1_709_164_800));
        assert_eq!(civil_to_unix(2023, 2, 29, 0, 0, 0), None);
        assert_eq!(civil_to_unix(1969, 12, 31, 23, 59, 59), Some(-1));
    }

    #[test]
    fn rfc3339() {
        assert_eq!(
            parse_rfc3339_ns("1970-01-01T00:00:01Z"),
            Some(1_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-03-05T10:20:30+08:00"),
            Some(1_709_605_230_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-03-05T02:20:30.5Z"),
            Some(1_709_605_230_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-03-05 02:20:30.123456789Z"),
            Some(1_709_605_230_123_456_789)
        );
        for bad in [
            "2024-03-05",
            "2024-13-05T00:00:00Z",
            "2024-03-05T00:00:00+8",
            "x",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad}");
        }
    }
}
