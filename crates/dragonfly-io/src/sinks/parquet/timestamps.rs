//! Suricata's timestamps as typed columns, their text kept exactly.
//!
//! A string column whose values are all EVE timestamps of one form —
//! `YYYY-MM-DDTHH:MM:SS.ffffff+HHMM` (six fraction digits, one UTC offset, as Suricata
//! writes `timestamp`, `flow.start`, `flow.end`) — is stored as a Parquet
//! `TIMESTAMP(MICROS, UTC)` column (Arrow `Timestamp(Microsecond, "+00:00")`): 8 bytes a
//! value before encoding instead of 31 characters, and readers get a time, not text (DuckDB:
//! `TIMESTAMPTZ`). The field's metadata [`OFFSET_METADATA`] holds the offset the text had
//! (`+0100`): the text is the UTC time shifted by it and written in that form, byte for byte
//! ([`render`]). A value is accepted only when it renders back to exactly its own bytes
//! ([`parse`]), so nothing is ever normalised: a value of another form or offset (a
//! daylight-saving change, a hand-written event) makes the column text again.
//!
//! Cost: parsing and rendering are fixed-width digit arithmetic, about 30 ns a value each.

/// Field metadata of a typed timestamp column: the UTC offset of its text, `+HHMM`.
pub const OFFSET_METADATA: &str = "dragonfly:timestamp_offset";

/// Length of the one form accepted.
const LEN: usize = 31;

/// Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count from 1970-01-01 (`civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// An offset in minutes as `+HHMM`.
pub fn offset_text(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("{sign}{:02}{:02}", m / 60, m % 60)
}

/// `+HHMM` (as [`offset_text`] writes it) in minutes.
pub fn offset_minutes(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    if b.len() != 5 || !b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |i: usize| (b[i] - b'0') as i32;
    let m = (n(1) * 10 + n(2)) * 60 + n(3) * 10 + n(4);
    match b[0] {
        b'+' => Some(m),
        b'-' => Some(-m),
        _ => None,
    }
}

/// Write the UTC time `micros` as the text of a column with offset `minutes`.
pub fn render(micros: i64, minutes: i32, out: &mut Vec<u8>) {
    let local = micros + i64::from(minutes) * 60_000_000;
    let (secs, frac) = (local.div_euclid(1_000_000), local.rem_euclid(1_000_000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    let mut buf = [0u8; LEN];
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v.rem_euclid(10)) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, mo);
    put(8, 2, d);
    put(11, 2, sod / 3600);
    put(14, 2, sod / 60 % 60);
    put(17, 2, sod % 60);
    put(20, 6, frac);
    let m = minutes.unsigned_abs() as i64;
    put(27, 2, m / 60);
    put(29, 2, m % 60);
    buf[4] = b'-';
    buf[7] = b'-';
    buf[10] = b'T';
    buf[13] = b':';
    buf[16] = b':';
    buf[19] = b'.';
    buf[26] = if minutes < 0 { b'-' } else { b'+' };
    if (0..=9999).contains(&y) {
        out.extend_from_slice(&buf);
    } else {
        // never made by parse (four-digit years): the UTC time in RFC 3339 form
        out.extend_from_slice(crate::sinks::parquet::manifest::rfc3339(micros).as_bytes());
    }
}

/// A timestamp of the one form, as (UTC microseconds, offset minutes), only when
/// [`render`] gives back exactly `s`.
pub fn parse(s: &[u8]) -> Option<(i64, i32)> {
    if s.len() != LEN
        || s[4] != b'-'
        || s[7] != b'-'
        || s[10] != b'T'
        || s[13] != b':'
        || s[16] != b':'
        || s[19] != b'.'
        || !(s[26] == b'+' || s[26] == b'-')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        s[r].iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, frac) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
    let (oh, om) = (num(27..29)?, num(29..31)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 || om > 59
    {
        return None;
    }
    let minutes = (oh * 60 + om) as i32 * if s[26] == b'-' { -1 } else { 1 };
    let local = (days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000 + frac;
    let micros = local - i64::from(minutes) * 60_000_000;
    // a day past its month's end (02-30) or `-0000` would render otherwise: not this form
    let mut back = Vec::with_capacity(LEN);
    render(micros, minutes, &mut back);
    (back == s).then_some((micros, minutes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn suricata_timestamps_round_trip_and_others_do_not_parse() {
        let s = b"2025-03-10T09:00:17.260943+0000";
        let (t, m) = parse(s).unwrap();
        assert_eq!(m, 0);
        assert_eq!(Some(t), crate::sinks::parquet::manifest::parse_timestamp(s));
        let (t2, m2) = parse(b"2025-03-10T10:00:17.260943+0100").unwrap();
        assert_eq!((t2, m2), (t, 60));
        assert_eq!(parse(b"1969-12-31T23:59:59.999999-0130").unwrap().1, -90);
        for bad in [
            &b"2025-02-30T09:00:17.260943+0000"[..],
            b"2025-03-10T09:00:17.260943-0000",
            b"2025-03-10T09:00:60.000000+0000",
            b"2025-03-10T09:00:17.26094+00000",
            b"2025-03-10T09:00:17.260943Z",
            b"2025-03-10 09:00:17.260943+0000",
            b"2025-03-10T09:00:17+0000",
            b"2025-13-10T09:00:17.260943+0000",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(offset_minutes(&offset_text(-330)), Some(-330));
        assert_eq!(offset_text(60), "+0100");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Any time from year 0 to 9999 and any offset of a whole minute under a day:
        /// rendered, it parses back to itself and renders the same bytes.
        #[test]
        fn any_time_renders_and_parses_back(micros in -62_000_000_000_000_000i64..253_000_000_000_000_000,
                                            minutes in -1439i32..=1439) {
            let mut text = Vec::new();
            render(micros, minutes, &mut text);
            let local = micros + i64::from(minutes) * 60_000_000;
            prop_assume!((-62_167_219_200_000_000..253_402_300_800_000_000).contains(&local));
            prop_assert_eq!(parse(&text), Some((micros, minutes)), "{}", String::from_utf8_lossy(&text));
        }
    }
}
