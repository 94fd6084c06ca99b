//! `processor_gotime`: parses one content with a Go time layout (`2006-01-02 15:04:05`) and
//! writes it again with another under `DestKey`, as iLogtail's extended processor of that name;
//! with `SetTime` (default) the log takes the parsed time. `SourceFormat` may also be
//! `seconds`, `milliseconds`, `microseconds` or `nanoseconds` (an epoch number).
//! `SourceLocation` / `DestLocation` are hours east of UTC; unset, the machine's zone.
//!
//! Layout elements: `2006 06 01 1 Jan January 02 2 _2 002 15 03 3 04 4 05 5 PM pm Mon Monday
//! MST -0700 -07:00 -07 Z0700 Z07:00` and fractions `.000`/`.999` (or with `,`). Unlike iLogtail,
//! a value that does not parse leaves the log as it is even when `AlarmIfFail` is off (iLogtail
//! then goes on with Go's zero time).

use bytes::Bytes;
use serde::Deserialize;

use super::parse_timestamp_native::local_offset_at;
use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration = Registration::new::<GotimeConfig>("processor_gotime", build);

/// iLogtail's "machine time zone" value of the location options.
const MACHINE_ZONE: i64 = -100;

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct GotimeConfig {
    /// The content holding the time. Required.
    pub source_key: String,
    /// Its Go layout, or `seconds` / `milliseconds` / `microseconds` / `nanoseconds`. Required.
    pub source_format: String,
    /// Hours east of UTC of the source (default: the machine's zone).
    pub source_location: i64,
    /// Where the rewritten time goes. Required.
    pub dest_key: String,
    /// Its Go layout. Required.
    pub dest_format: String,
    /// Hours east of UTC of the rewritten time (default: the machine's zone).
    pub dest_location: i64,
    /// Set the log's time (default true).
    pub set_time: bool,
    /// Keep the source content (default true).
    pub keep_source: bool,
    /// Report logs without the source content (default true; Tailrace counts them).
    pub no_key_error: bool,
    /// Report values that do not parse (default true; Tailrace counts them either way).
    pub alarm_if_fail: bool,
}

impl Default for GotimeConfig {
    fn default() -> Self {
        GotimeConfig {
            source_key: String::new(),
            source_format: String::new(),
            source_location: MACHINE_ZONE,
            dest_key: String::new(),
            dest_format: String::new(),
            dest_location: MACHINE_ZONE,
            set_time: true,
            keep_source: true,
            no_key_error: true,
            alarm_if_fail: true,
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(Gotime::new(parse_options(options)?)?))
}

/// How the source is read.
enum Source {
    /// An epoch number, in units of this many nanoseconds.
    Epoch(i64),
    Layout(Vec<Element>),
}

pub struct Gotime {
    source_key: Bytes,
    source: Source,
    /// Seconds east of UTC; `None`: the machine's zone.
    source_zone: Option<i64>,
    dest_key: Bytes,
    dest: Vec<Element>,
    dest_zone: Option<i64>,
    set_time: bool,
    keep_source: bool,
    count_missing: bool,
    /// Values that did not parse.
    pub parse_failures: u64,
    /// Logs without the source content (with `NoKeyError`).
    pub missing_key: u64,
}

fn zone(hours: i64) -> Option<i64> {
    (hours != MACHINE_ZONE).then_some(hours * 3600)
}

impl Gotime {
    pub fn new(config: GotimeConfig) -> Result<Self, ProcessorError> {
        for (field, value) in [
            ("SourceKey", &config.source_key),
            ("SourceFormat", &config.source_format),
            ("DestKey", &config.dest_key),
            ("DestFormat", &config.dest_format),
        ] {
            if value.is_empty() {
                return Err(ProcessorError::new(field, "required"));
            }
        }
        let source = match config.source_format.as_str() {
            "seconds" => Source::Epoch(1_000_000_000),
            "milliseconds" => Source::Epoch(1_000_000),
            "microseconds" => Source::Epoch(1_000),
            "nanoseconds" => Source::Epoch(1),
            layout => Source::Layout(elements(layout)),
        };
        Ok(Gotime {
            source_key: Bytes::from(config.source_key),
            source,
            source_zone: zone(config.source_location),
            dest_key: Bytes::from(config.dest_key),
            dest: elements(&config.dest_format),
            dest_zone: zone(config.dest_location),
            set_time: config.set_time,
            keep_source: config.keep_source,
            count_missing: config.no_key_error,
            parse_failures: 0,
            missing_key: 0,
        })
    }

    /// Nanoseconds since the epoch.
    fn parse(&self, value: &[u8]) -> Option<i128> {
        match &self.source {
            Source::Epoch(unit) => {
                let n: i64 = std::str::from_utf8(value).ok()?.parse().ok()?;
                Some(i128::from(n) * i128::from(*unit))
            }
            Source::Layout(layout) => parse_layout(layout, value, self.source_zone),
        }
    }
}

impl Processor for Gotime {
    fn parse_failures(&self) -> u64 {
        self.parse_failures
    }

    fn process(&mut self, group: &mut PipelineEventGroup) {
        for event in &mut group.events {
            let PipelineEvent::Log(log) = event else {
                continue;
            };
            let Some(value) = log.content(&self.source_key) else {
                if self.count_missing {
                    self.missing_key += 1;
                }
                continue;
            };
            let Some(nanos) = self.parse(value) else {
                self.parse_failures += 1;
                continue;
            };
            let seconds = nanos.div_euclid(1_000_000_000) as i64;
            let fraction = nanos.rem_euclid(1_000_000_000) as u32;
            if self.set_time {
                if let Ok(time) = u32::try_from(seconds) {
                    log.time = time;
                    log.time_ns = Some(fraction);
                }
            }
            if !self.keep_source {
                log.remove_content(&self.source_key);
            }
            let offset = self.dest_zone.unwrap_or_else(|| local_offset_at(seconds));
            let text = format_layout(&self.dest, seconds, fraction, offset);
            log.set_content(self.dest_key.clone(), Bytes::from(text));
        }
    }
}

/// One piece of a Go layout.
#[derive(Clone, Debug, PartialEq)]
enum Element {
    Literal(String),
    Year4,
    Year2,
    Month2,
    Month1,
    MonthShort,
    MonthLong,
    Day2,
    Day1,
    DaySpace,
    YearDay,
    Hour24,
    Hour12Padded,
    Hour12,
    Minute2,
    Minute1,
    Second2,
    Second1,
    PmUpper,
    PmLower,
    WeekdayShort,
    WeekdayLong,
    ZoneName,
    /// `-0700`, `-07:00`, `-07`; with `Z` first, `Z` for UTC.
    Offset {
        colon: bool,
        minutes: bool,
        z: bool,
    },
    /// `.000` (exact digits) or `.999` (trailing zeros dropped), with its separator.
    Fraction {
        sep: char,
        digits: usize,
        trim: bool,
    },
}

/// Splits a Go layout into its elements (Go's `nextStdChunk`, for the elements above).
fn elements(layout: &str) -> Vec<Element> {
    use Element::*;
    const TOKENS: &[(&str, Element)] = &[
        ("January", MonthLong),
        ("Monday", WeekdayLong),
        (
            "Z07:00",
            Offset {
                colon: true,
                minutes: true,
                z: true,
            },
        ),
        (
            "-07:00",
            Offset {
                colon: true,
                minutes: true,
                z: false,
            },
        ),
        (
            "Z0700",
            Offset {
                colon: false,
                minutes: true,
                z: true,
            },
        ),
        (
            "-0700",
            Offset {
                colon: false,
                minutes: true,
                z: false,
            },
        ),
        ("2006", Year4),
        (
            "-07",
            Offset {
                colon: false,
                minutes: false,
                z: false,
            },
        ),
        ("Jan", MonthShort),
        ("Mon", WeekdayShort),
        ("MST", ZoneName),
        ("002", YearDay),
        ("_2", DaySpace),
        ("01", Month2),
        ("02", Day2),
        ("03", Hour12Padded),
        ("04", Minute2),
        ("05", Second2),
        ("06", Year2),
        ("15", Hour24),
        ("PM", PmUpper),
        ("pm", PmLower),
        ("1", Month1),
        ("2", Day1),
        ("3", Hour12),
        ("4", Minute1),
        ("5", Second1),
    ];
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut rest = layout;
    'outer: while let Some(c) = rest.chars().next() {
        // Fractional seconds: `.000`, `,999` right after a seconds element.
        if (c == '.' || c == ',')
            && matches!(out.last(), Some(Second2 | Second1))
            && literal.is_empty()
        {
            let digits = &rest[1..];
            let zeros = digits.bytes().take_while(|b| *b == b'0').count();
            let nines = digits.bytes().take_while(|b| *b == b'9').count();
            let (n, trim) = if zeros > 0 {
                (zeros, false)
            } else {
                (nines, true)
            };
            if n > 0 && !digits[n..].starts_with(|d: char| d.is_ascii_digit()) {
                out.push(Fraction {
                    sep: c,
                    digits: n,
                    trim,
                });
                rest = &digits[n..];
                continue;
            }
        }
        for (token, element) in TOKENS {
            if rest.starts_with(token) {
                if !literal.is_empty() {
                    out.push(Literal(std::mem::take(&mut literal)));
                }
                out.push(element.clone());
                rest = &rest[token.len()..];
                continue 'outer;
            }
        }
        literal.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !literal.is_empty() {
        out.push(Literal(literal));
    }
    out
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Nanoseconds since the epoch of `value` read with `layout`; `None` when it does not fit
/// (Go's `time.ParseInLocation`: the whole value must be consumed).
fn parse_layout(layout: &[Element], value: &[u8], zone: Option<i64>) -> Option<i128> {
    use Element::*;
    let text = std::str::from_utf8(value).ok()?;
    let mut rest = text;
    let (mut year, mut month, mut day, mut hour, mut minute, mut second) =
        (1i64, 1i64, 1i64, 0i64, 0i64, 0i64);
    let mut yday: Option<i64> = None;
    let mut nanos: i64 = 0;
    let mut pm: Option<bool> = None;
    let mut offset: Option<i64> = None;
    let digits = |rest: &mut &str, min: usize, max: usize| -> Option<i64> {
        let n = rest
            .bytes()
            .take(max)
            .take_while(u8::is_ascii_digit)
            .count();
        if n < min {
            return None;
        }
        let v = rest[..n].parse().ok()?;
        *rest = &rest[n..];
        Some(v)
    };
    let name = |rest: &mut &str, names: &[&str], short: bool| -> Option<usize> {
        for (i, full) in names.iter().enumerate() {
            let candidate = if short { &full[..3] } else { full };
            if rest
                .get(..candidate.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(candidate))
            {
                *rest = &rest[candidate.len()..];
                return Some(i);
            }
        }
        None
    };
    for element in layout {
        match element {
            Literal(l) => rest = rest.strip_prefix(l.as_str())?,
            Year4 => year = digits(&mut rest, 4, 4)?,
            Year2 => {
                let y = digits(&mut rest, 2, 2)?;
                year = if y >= 69 { 1900 + y } else { 2000 + y };
            }
            Month2 => month = digits(&mut rest, 2, 2)?,
            Month1 => month = digits(&mut rest, 1, 2)?,
            MonthShort => month = name(&mut rest, &MONTHS, true)? as i64 + 1,
            MonthLong => month = name(&mut rest, &MONTHS, false)? as i64 + 1,
            Day2 => day = digits(&mut rest, 2, 2)?,
            Day1 => day = digits(&mut rest, 1, 2)?,
            DaySpace => {
                rest = rest.strip_prefix(' ').unwrap_or(rest);
                day = digits(&mut rest, 1, 2)?;
            }
            YearDay => yday = Some(digits(&mut rest, 3, 3)?),
            Hour24 => hour = digits(&mut rest, 1, 2)?,
            Hour12Padded => hour = digits(&mut rest, 2, 2)?,
            Hour12 => hour = digits(&mut rest, 1, 2)?,
            Minute2 => minute = digits(&mut rest, 2, 2)?,
            Minute1 => minute = digits(&mut rest, 1, 2)?,
            Second2 => second = digits(&mut rest, 2, 2)?,
            Second1 => second = digits(&mut rest, 1, 2)?,
            PmUpper | PmLower => {
                let word = rest.get(..2)?;
                pm = Some(match word.to_ascii_uppercase().as_str() {
                    "AM" => false,
                    "PM" => true,
                    _ => return None,
                });
                rest = &rest[2..];
            }
            WeekdayShort => {
                name(&mut rest, &WEEKDAYS, true)?;
            }
            WeekdayLong => {
                name(&mut rest, &WEEKDAYS, false)?;
            }
            ZoneName => {
                let n = rest.bytes().take_while(u8::is_ascii_uppercase).count();
                if n < 3 {
                    return None;
                }
                if &rest[..n] == "UTC" || &rest[..n] == "GMT" {
                    offset = Some(0);
                }
                rest = &rest[n..];
            }
            Offset { colon, minutes, z } => {
                if *z && rest.starts_with('Z') {
                    rest = &rest[1..];
                    offset = Some(0);
                    continue;
                }
                let sign = match rest.as_bytes().first()? {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                rest = &rest[1..];
                let hours = digits(&mut rest, 2, 2)?;
                let mut mins = 0;
                if *minutes {
                    if *colon {
                        rest = rest.strip_prefix(':')?;
                    }
                    mins = digits(&mut rest, 2, 2)?;
                }
                offset = Some(sign * (hours * 3600 + mins * 60));
            }
            Fraction {
                sep,
                digits: n,
                trim,
            } => {
                let Some(after) = rest.strip_prefix(*sep) else {
                    if *trim {
                        continue;
                    }
                    return None;
                };
                let count = after.bytes().take_while(u8::is_ascii_digit).count();
                if count == 0 || (!*trim && count != *n) || count > 9 {
                    return None;
                }
                nanos = after[..count].parse::<i64>().ok()? * 10i64.pow(9 - count as u32);
                rest = &after[count..];
            }
        }
    }
    if !rest.is_empty() {
        return None;
    }
    if let Some(pm) = pm {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = hour % 12 + if pm { 12 } else { 0 };
    }
    let days = match yday {
        Some(d) if (1..=366).contains(&d) => days_from_civil(year, 1, 1) + d - 1,
        Some(_) => return None,
        None => {
            if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
                return None;
            }
            days_from_civil(year, month, day)
        }
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let wall = days * 86_400 + hour * 3600 + minute * 60 + second;
    let seconds = match offset.or(zone) {
        Some(offset) => wall - offset,
        None => wall - local_offset_at(wall - local_offset_at(wall)),
    };
    Some(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
}

/// `seconds` (+ `fraction` ns) at `offset` seconds east, written with `layout` (Go's
/// `Time.Format`).
fn format_layout(layout: &[Element], seconds: i64, fraction: u32, offset: i64) -> String {
    use std::fmt::Write;
    use Element::*;
    let local = seconds + offset;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let weekday = (days + 4).rem_euclid(7) as usize;
    let yday = days - days_from_civil(year, 1, 1) + 1;
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let mut out = String::new();
    for element in layout {
        let _ = match element {
            Literal(l) => write!(out, "{l}"),
            Year4 => write!(out, "{year:04}"),
            Year2 => write!(out, "{:02}", year.rem_euclid(100)),
            Month2 => write!(out, "{month:02}"),
            Month1 => write!(out, "{month}"),
            MonthShort => write!(out, "{}", &MONTHS[(month - 1) as usize][..3]),
            MonthLong => write!(out, "{}", MONTHS[(month - 1) as usize]),
            Day2 => write!(out, "{day:02}"),
            Day1 => write!(out, "{day}"),
            DaySpace => write!(out, "{day:>2}"),
            YearDay => write!(out, "{yday:03}"),
            Hour24 => write!(out, "{hour:02}"),
            Hour12Padded => write!(out, "{hour12:02}"),
            Hour12 => write!(out, "{hour12}"),
            Minute2 => write!(out, "{minute:02}"),
            Minute1 => write!(out, "{minute}"),
            Second2 => write!(out, "{second:02}"),
            Second1 => write!(out, "{second}"),
            PmUpper => write!(out, "{}", if hour >= 12 { "PM" } else { "AM" }),
            PmLower => write!(out, "{}", if hour >= 12 { "pm" } else { "am" }),
            WeekdayShort => write!(out, "{}", &WEEKDAYS[weekday][..3]),
            WeekdayLong => write!(out, "{}", WEEKDAYS[weekday]),
            ZoneName if offset == 0 => write!(out, "UTC"),
            // Go writes a fixed zone without a name as its offset.
            ZoneName => write!(out, "{:+03}{:02}", offset / 3600, (offset.abs() / 60) % 60),
            Offset { z: true, .. } if offset == 0 => write!(out, "Z"),
            Offset { colon, minutes, .. } => {
                let sign = if offset < 0 { '-' } else { '+' };
                let (h, m) = (offset.abs() / 3600, offset.abs() / 60 % 60);
                match (minutes, colon) {
                    (false, _) => write!(out, "{sign}{h:02}"),
                    (true, true) => write!(out, "{sign}{h:02}:{m:02}"),
                    (true, false) => write!(out, "{sign}{h:02}{m:02}"),
                }
            }
            Fraction { sep, digits, trim } => {
                let text = format!("{fraction:09}");
                let mut shown = &text[..(*digits).min(9)];
                if *trim {
                    shown = shown.trim_end_matches('0');
                }
                if shown.is_empty() {
                    Ok(())
                } else {
                    write!(out, "{sep}{shown}")
                }
            }
        };
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// The date of a day since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::options;
    use super::*;
    use crate::LogEvent;
    use serde_json::json;

    fn run(config: serde_json::Value, value: &str) -> LogEvent {
        let mut p = build(&options(config)).unwrap();
        let mut log = LogEvent::new(7, None);
        log.set_content("s_key", value.to_owned());
        let mut group = PipelineEventGroup::default();
        group.events.push(PipelineEvent::Log(log));
        p.process(&mut group);
        let PipelineEvent::Log(log) = group.events.remove(0) else {
            unreachable!()
        };
        log
    }

    fn dest(log: &LogEvent) -> String {
        String::from_utf8_lossy(log.content(b"d_key").unwrap()).into_owned()
    }

    #[test]
    fn ilogtail_readme_example() {
        // iLogtail's README: 2006-01-02 15:04:05 at UTC+8 rewritten as 2006/01/02 15:04:05 at
        // UTC+9, the log's time set.
        let log = run(
            json!({"SourceKey": "s_key", "SourceFormat": "2006-01-02 15:04:05", "SourceLocation": 8,
                   "DestKey": "d_key", "DestFormat": "2006/01/02 15:04:05", "DestLocation": 9,
                   "SetTime": true, "KeepSource": true}),
            "2006-01-02 15:04:05",
        );
        assert_eq!(dest(&log), "2006/01/02 16:04:05");
        assert_eq!(log.time, 1_136_185_445);
        assert_eq!(&log.content(b"s_key").unwrap()[..], b"2006-01-02 15:04:05");
    }

    #[test]
    fn layouts_fractions_zones_and_epochs() {
        let log = run(
            json!({"SourceKey": "s_key", "SourceFormat": "Mon Jan _2 15:04:05.000 MST 2006",
                   "DestKey": "d_key", "DestFormat": "2006-01-02T15:04:05.999Z07:00", "DestLocation": 0,
                   "KeepSource": false}),
            "Thu Jul  7 02:43:30.120 UTC 2022",
        );
        assert_eq!(dest(&log), "2022-07-07T02:43:30.12Z");
        assert_eq!((log.time, log.time_ns), (1_657_161_810, Some(120_000_000)));
        assert!(log.content(b"s_key").is_none());
        let log = run(
            json!({"SourceKey": "s_key", "SourceFormat": "milliseconds", "DestKey": "d_key",
                   "DestFormat": "02/Jan/2006:03:04:05 PM -0700", "DestLocation": -5}),
            "1657161810123",
        );
        assert_eq!(dest(&log), "06/Jul/2022:09:43:30 PM -0500");
        assert_eq!(log.time_ns, Some(123_000_000));
        let log = run(
            json!({"SourceKey": "s_key", "SourceFormat": "2006-01-02T15:04:05Z07:00", "DestKey": "d_key",
                   "DestFormat": "002 Monday January 2 3:4:5 pm", "DestLocation": 8}),
            "2022-07-07T10:43:30+08:00",
        );
        assert_eq!(dest(&log), "188 Thursday July 7 10:43:30 am");
        assert_eq!(log.time, 1_657_161_810);
    }

    #[test]
    fn failures_leave_the_log_and_options_are_required() {
        // A name cut in the middle of a character must not panic.
        let names = json!({"SourceKey": "s_key", "SourceFormat": "Jan 2006", "DestKey": "d_key", "DestFormat": "2006"});
        assert_eq!(run(names, "éé 2006").time, 7);
        let config = json!({"SourceKey": "s_key", "SourceFormat": "2006-01-02", "DestKey": "d_key", "DestFormat": "2006"});
        for bad in ["2022-13-01", "2022-01-01 trailing", "", "\u{fffd}"] {
            let log = run(config.clone(), bad);
            assert_eq!(log.time, 7, "{bad}");
            assert!(log.content(b"d_key").is_none());
        }
        let err = build(&options(
            json!({"SourceKey": "a", "SourceFormat": "2006", "DestKey": "b"}),
        ))
        .err()
        .unwrap();
        assert_eq!(err.field, "DestFormat");
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
