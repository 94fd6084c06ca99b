//! `processor_parse_timestamp_native`: sets a log's time from one of its contents, parsed with
//! a strftime format, as iLogtail's native processor of that name.
//!
//! The format takes strptime's conversions (`%Y %y %m %d %e %j %H %I %p %M %S %b %h %B %a %A
//! %z %Z %T %D %F %R %n %t %%`, whitespace matching any run of whitespace) plus iLogtail's
//! `%f` (fractional seconds, up to 9 digits, which become the log's nanoseconds) and `%s`
//! (seconds since the epoch). As in iLogtail, text after the format's end is ignored
//! (`2024-01-02 03:04:05,678` parses with `%Y-%m-%d %H:%M:%S`), a format without a year takes
//! `SourceYear` or the current year, and the time is in `SourceTimezone` (`GMT+08:00`), or the
//! machine's time zone when it is empty (a `%z` in the value wins over both). A value that does
//! not parse leaves the log as it is and is counted; a time at or before the epoch drops the
//! log, as iLogtail does.
//!
//! Not replicated: iLogtail's global `ilogtail_discard_old_data` (on by default), which drops
//! logs more than 12 hours old — that would silently discard every line of an old file read
//! with `--once`; and its shift of `%s` values by `SourceTimezone`, which moves exact epochs.

use bytes::Bytes;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<ParseTimestampConfig>("processor_parse_timestamp_native", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParseTimestampConfig {
    /// The content holding the time. Required.
    pub source_key: String,
    /// Its strftime format (`%Y-%m-%d %H:%M:%S`). Required.
    pub source_format: String,
    /// `GMT+HH:MM` or `GMT-HH:MM`; empty (the default): the machine's time zone.
    #[serde(default)]
    pub source_timezone: String,
    /// The year of formats without one (default: the current year).
    #[serde(default = "no_year")]
    pub source_year: i32,
}

fn no_year() -> i32 {
    -1
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(ParseTimestamp::new(parse_options(options)?)?))
}

/// The time zone of values without `%z`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Zone {
    /// Seconds east of UTC.
    Fixed(i64),
    Local,
}

pub struct ParseTimestamp {
    source_key: Bytes,
    format: Vec<u8>,
    zone: Zone,
    year: Option<i64>,
    /// Whether the format sets nanoseconds.
    has_fraction: bool,
    /// Values that did not parse.
    pub parse_failures: u64,
    /// Reports failures (rate-limited) through the services of the side that runs it.
    failure_alarm: crate::context::FailureAlarm,
    /// Logs dropped for a time at or before the epoch.
    pub discarded: u64,
}

impl ParseTimestamp {
    pub fn new(config: ParseTimestampConfig) -> Result<Self, ProcessorError> {
        if config.source_key.is_empty() {
            return Err(ProcessorError::new(
                "SourceKey",
                "required: the content holding the time",
            ));
        }
        if config.source_format.is_empty() {
            return Err(ProcessorError::new(
                "SourceFormat",
                "required: a strftime format",
            ));
        }
        check_format(config.source_format.as_bytes())
            .map_err(|problem| ProcessorError::new("SourceFormat", problem))?;
        let zone = if config.source_timezone.is_empty() {
            Zone::Local
        } else {
            Zone::Fixed(parse_gmt_offset(&config.source_timezone).ok_or_else(|| {
                ProcessorError::new(
                    "SourceTimezone",
                    format!(
                        "{:?}: expected GMT+HH:MM or GMT-HH:MM",
                        config.source_timezone
                    ),
                )
            })?)
        };
        Ok(ParseTimestamp {
            source_key: Bytes::from(config.source_key),
            has_fraction: config.source_format.contains("%f"),
            format: config.source_format.into_bytes(),
            zone,
            year: (config.source_year >= 0).then_some(i64::from(config.source_year)),
            parse_failures: 0,
            failure_alarm: crate::context::FailureAlarm::new("PARSE_TIME_FAIL_ALARM", "time parse"),
            discarded: 0,
        })
    }
}

impl Processor for ParseTimestamp {
    fn init(&mut self, services: std::sync::Arc<dyn crate::context::Services>) {
        self.failure_alarm.attach(services);
    }

    fn parse_failures(&self) -> u64 {
        self.parse_failures
    }

    fn process(&mut self, group: &mut PipelineEventGroup) {
        let before = group.events.len();
        let current_year = self.year.unwrap_or_else(current_year);
        group.events.retain_mut(|event| {
            let PipelineEvent::Log(log) = event else {
                return true;
            };
            let Some(value) = log.content(&self.source_key) else {
                return true;
            };
            let Some(fields) = parse(&self.format, value, current_year) else {
                self.parse_failures += 1;
                self.failure_alarm.failed(value);
                return true;
            };
            let Some(seconds) = fields.epoch(self.zone) else {
                self.parse_failures += 1;
                self.failure_alarm.failed(value);
                return true;
            };
            if seconds <= 0 || seconds > i64::from(u32::MAX) {
                return false;
            }
            log.time = seconds as u32;
            if self.has_fraction {
                log.time_ns = Some(fields.nanos);
            }
            true
        });
        self.discarded += (before - group.events.len()) as u64;
    }
}

/// `GMT+08:00` → 28800.
fn parse_gmt_offset(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 9 || !text.starts_with("GMT") || b[6] != b':' {
        return None;
    }
    let sign = match b[3] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours: i64 = text.get(4..6)?.parse().ok()?;
    let minutes: i64 = text.get(7..9)?.parse().ok()?;
    Some(sign * (hours * 3600 + minutes * 60))
}

/// Rejects conversions the parser does not know, so that a typo fails validation instead of
/// every line.
pub(super) fn check_format(format: &[u8]) -> Result<(), String> {
    let mut i = 0;
    while i < format.len() {
        if format[i] == b'%' {
            match format.get(i + 1) {
                Some(c) if b"YymdejHIpMSbhBaAzZTDFRnt%fs".contains(c) => i += 2,
                Some(c) => {
                    return Err(format!(
                        "%{} is not a conversion Tailrace knows",
                        *c as char
                    ))
                }
                None => return Err("ends with a lone %".to_owned()),
            }
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// What a value said.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Fields {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    pub(super) nanos: u32,
    /// From `%j`, when given without a month and day.
    day_of_year: Option<i64>,
    pm: Option<bool>,
    /// From `%z`.
    offset: Option<i64>,
    /// From `%s`.
    epoch: Option<i64>,
}

impl Fields {
    pub(super) fn epoch(&self, zone: Zone) -> Option<i64> {
        if let Some(epoch) = self.epoch {
            return Some(epoch);
        }
        let mut hour = self.hour;
        if let Some(pm) = self.pm {
            if !(1..=12).contains(&hour) {
                return None;
            }
            hour = hour % 12 + if pm { 12 } else { 0 };
        }
        let days = match self.day_of_year {
            Some(yday) if self.month == 0 => days_from_civil(self.year, 1, 1) + yday - 1,
            _ => {
                if !(1..=12).contains(&self.month) || !(1..=31).contains(&self.day) {
                    return None;
                }
                days_from_civil(self.year, self.month, self.day)
            }
        };
        if hour > 23 || self.minute > 59 || self.second > 60 {
            return None;
        }
        let wall = days * 86_400 + hour * 3600 + self.minute * 60 + self.second;
        Some(match (self.offset, zone) {
            (Some(offset), _) | (None, Zone::Fixed(offset)) => wall - offset,
            (None, Zone::Local) => wall - local_offset_at(wall - local_offset_at(wall)),
        })
    }
}

/// Parses `value` with `format`; `None` when it does not fit.
pub(super) fn parse(format: &[u8], value: &[u8], current_year: i64) -> Option<Fields> {
    parse_prefix(format, value, current_year).map(|(fields, _)| fields)
}

/// A time at the start of `value` in the strftime `format`, read as this processor reads times:
/// the epoch seconds, the nanoseconds and how many bytes it took. A value without a zone is
/// read in the machine's local time, and in the current year when the format has no year. For
/// plugins that find times inside messages (`service_syslog`).
pub fn parse_time_prefix(format: &str, value: &[u8]) -> Option<(i64, u32, usize)> {
    let (fields, used) = parse_prefix(format.as_bytes(), value, current_year())?;
    let seconds = fields.epoch(Zone::Local)?;
    Some((seconds, fields.nanos, used))
}

/// Parses the start of `value` with `format`: the fields and how many bytes they took.
fn parse_prefix(format: &[u8], value: &[u8], current_year: i64) -> Option<(Fields, usize)> {
    let mut f = Fields {
        year: current_year,
        ..Fields::default()
    };
    let mut v = 0usize;
    let mut i = 0usize;
    while i < format.len() {
        let c = format[i];
        if c.is_ascii_whitespace() {
            while value.get(v).is_some_and(u8::is_ascii_whitespace) {
                v += 1;
            }
            i += 1;
            continue;
        }
        if c != b'%' {
            if value.get(v) != Some(&c) {
                return None;
            }
            v += 1;
            i += 1;
            continue;
        }
        let conversion = *format.get(i + 1)?;
        i += 2;
        match conversion {
            b'Y' => f.year = number(value, &mut v, 4)?,
            b'y' => {
                let y = number(value, &mut v, 2)?;
                f.year = if y < 69 { 2000 + y } else { 1900 + y };
            }
            b'm' => f.month = number(value, &mut v, 2)?,
            b'd' | b'e' => {
                skip_spaces(value, &mut v);
                f.day = number(value, &mut v, 2)?;
            }
            b'j' => f.day_of_year = Some(number(value, &mut v, 3)?),
            b'H' | b'I' => f.hour = number(value, &mut v, 2)?,
            b'M' => f.minute = number(value, &mut v, 2)?,
            b'S' => f.second = number(value, &mut v, 2)?,
            b'f' => {
                let start = v;
                let mut nanos: u32 = 0;
                while v - start < 9 && value.get(v).is_some_and(u8::is_ascii_digit) {
                    nanos = nanos * 10 + u32::from(value[v] - b'0');
                    v += 1;
                }
                if v == start {
                    return None;
                }
                f.nanos = nanos * 10u32.pow(9 - (v - start) as u32);
            }
            b's' => f.epoch = Some(number(value, &mut v, 10)?),
            b'p' => {
                let word = value.get(v..v + 2)?;
                f.pm = Some(match word.to_ascii_uppercase().as_slice() {
                    b"AM" => false,
                    b"PM" => true,
                    _ => return None,
                });
                v += 2;
            }
            b'b' | b'h' | b'B' => f.month = name(value, &mut v, &MONTHS)? as i64 + 1,
            b'a' | b'A' => {
                name(value, &mut v, &WEEKDAYS)?;
            }
            b'z' => f.offset = Some(zone_offset(value, &mut v)?),
            b'Z' => {
                let start = v;
                while value.get(v).is_some_and(u8::is_ascii_alphabetic) {
                    v += 1;
                }
                if v == start {
                    return None;
                }
            }
            b'T' | b'D' | b'F' | b'R' => {
                let expanded: &[u8] = match conversion {
                    b'T' => b"%H:%M:%S",
                    b'D' => b"%m/%d/%y",
                    b'F' => b"%Y-%m-%d",
                    _ => b"%H:%M",
                };
                let (inner, consumed) = parse_prefix(expanded, value.get(v..)?, f.year)?;
                match conversion {
                    b'T' | b'R' => {
                        f.hour = inner.hour;
                        f.minute = inner.minute;
                        f.second = inner.second;
                    }
                    _ => {
                        f.year = inner.year;
                        f.month = inner.month;
                        f.day = inner.day;
                    }
                }
                v += consumed;
            }
            b'n' | b't' => skip_spaces(value, &mut v),
            b'%' => {
                if value.get(v) != Some(&b'%') {
                    return None;
                }
                v += 1;
            }
            _ => return None,
        }
    }
    Some((f, v))
}

fn skip_spaces(value: &[u8], v: &mut usize) {
    while value.get(*v) == Some(&b' ') {
        *v += 1;
    }
}

/// Up to `max` digits, at least one.
fn number(value: &[u8], v: &mut usize, max: usize) -> Option<i64> {
    let start = *v;
    let mut n: i64 = 0;
    while *v - start < max && value.get(*v).is_some_and(u8::is_ascii_digit) {
        n = n * 10 + i64::from(value[*v] - b'0');
        *v += 1;
    }
    (*v > start).then_some(n)
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

/// A full or three-letter name from `names`, any case; its index.
fn name(value: &[u8], v: &mut usize, names: &[&str]) -> Option<usize> {
    let rest = &value[(*v).min(value.len())..];
    for (index, full) in names.iter().enumerate() {
        for candidate in [full.as_bytes(), &full.as_bytes()[..3]] {
            if rest.len() >= candidate.len()
                && rest[..candidate.len()].eq_ignore_ascii_case(candidate)
            {
                *v += candidate.len();
                return Some(index);
            }
        }
    }
    None
}

/// `+0800`, `-05:30`, `Z`: seconds east of UTC.
fn zone_offset(value: &[u8], v: &mut usize) -> Option<i64> {
    match value.get(*v)? {
        b'Z' => {
            *v += 1;
            Some(0)
        }
        sign @ (b'+' | b'-') => {
            let sign = if *sign == b'-' { -1 } else { 1 };
            *v += 1;
            let hours = number(value, v, 2)?;
            if value.get(*v) == Some(&b':') {
                *v += 1;
            }
            let minutes = number(value, v, 2).unwrap_or(0);
            Some(sign * (hours * 3600 + minutes * 60))
        }
        _ => None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The machine's offset from UTC (seconds east) at `epoch`, from the C library's time zone
/// data (TZ, /etc/localtime), daylight saving included.
pub(super) fn local_offset_at(epoch: i64) -> i64 {
    // time_t is 64 bits on the platforms Tailrace builds for.
    let t = epoch as libc::time_t;
    // SAFETY: `localtime_r` writes only into `tm`, which lives on this stack frame, and reads
    // `t`; it is the thread-safe variant.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    }
}

pub(super) fn current_year() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let local = now + local_offset_at(now);
    // The year of day `local / 86400` (inverse of days_from_civil, year only).
    let days = local.div_euclid(86_400);
    let mut year = 1970 + days / 366;
    while days_from_civil(year + 1, 1, 1) <= days {
        year += 1;
    }
    year
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_time_prefix_says_how_much_it_took() {
        let value = b"2003-10-11T22:14:15.003Z host app";
        let (secs, nanos, used) =
            super::parse_time_prefix("%Y-%m-%dT%H:%M:%S.%f%z", value).unwrap();
        assert_eq!((secs, nanos, used), (1_065_910_455, 3_000_000, 24));
        assert!(super::parse_time_prefix("%Y-%m-%d", b"nope").is_none());
    }

    use super::super::test_support::options;
    use super::*;
    use crate::LogEvent;
    use serde_json::json;

    fn processor(value: serde_json::Value) -> ParseTimestamp {
        ParseTimestamp::new(serde_json::from_value(value).unwrap()).unwrap()
    }

    fn times(p: &mut ParseTimestamp, values: &[&[u8]]) -> Vec<(u32, Option<u32>)> {
        let mut group = PipelineEventGroup::default();
        for value in values {
            let mut log = LogEvent::new(7, None);
            log.set_content("time", Bytes::copy_from_slice(value));
            group.events.push(PipelineEvent::Log(log));
        }
        p.process(&mut group);
        group
            .events
            .iter()
            .map(|e| match e {
                PipelineEvent::Log(log) => (log.time, log.time_ns),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn ilogtail_docs_formats_with_a_fixed_zone() {
        // 2022-07-07 10:43:30 at GMT+08:00 is 02:43:30 UTC: 1657161810.
        let mut p = processor(json!({
            "SourceKey": "time", "SourceFormat": "%Y-%m-%d %H:%M:%S", "SourceTimezone": "GMT+08:00",
        }));
        assert_eq!(
            times(
                &mut p,
                &[b"2022-07-07 10:43:30", b"2022-07-07 10:43:30,123 trailing"]
            ),
            [(1_657_161_810, None), (1_657_161_810, None)]
        );
        let mut nginx = processor(json!({
            "SourceKey": "time", "SourceFormat": "%d/%b/%Y:%H:%M:%S %z",
        }));
        assert_eq!(
            times(&mut nginx, &[b"07/Jul/2022:10:43:30 +0800"]),
            [(1_657_161_810, None)]
        );
    }

    #[test]
    fn fractions_epochs_and_twelve_hour_clocks() {
        let mut millis = processor(json!({
            "SourceKey": "time", "SourceFormat": "%Y-%m-%dT%H:%M:%S.%f%z",
        }));
        assert_eq!(
            times(&mut millis, &[b"2022-07-07T02:43:30.123Z"]),
            [(1_657_161_810, Some(123_000_000))]
        );
        let mut epoch = processor(json!({"SourceKey": "time", "SourceFormat": "%s"}));
        assert_eq!(times(&mut epoch, &[b"1657161810"]), [(1_657_161_810, None)]);
        let mut pm = processor(json!({
            "SourceKey": "time", "SourceFormat": "%a %b %e %I:%M:%S %p %Y", "SourceTimezone": "GMT+00:00",
        }));
        assert_eq!(
            times(&mut pm, &[b"Thu Jul  7 02:43:30 AM 2022"]),
            [(1_657_161_810, None)]
        );
        let mut composite = processor(json!({
            "SourceKey": "time", "SourceFormat": "%F %T", "SourceTimezone": "GMT-01:00",
        }));
        assert_eq!(
            times(&mut composite, &[b"2022-07-07 01:43:30"]),
            [(1_657_161_810, None)]
        );
    }

    #[test]
    fn a_syslog_time_takes_the_source_year() {
        let mut p = processor(json!({
            "SourceKey": "time", "SourceFormat": "%b %d %H:%M:%S", "SourceYear": 2022,
            "SourceTimezone": "GMT+00:00",
        }));
        assert_eq!(
            times(&mut p, &[b"Jul  7 02:43:30"]),
            [(1_657_161_810, None)]
        );
    }

    #[test]
    fn failures_leave_the_log_and_the_epoch_drops_it() {
        let mut p = processor(json!({
            "SourceKey": "time", "SourceFormat": "%Y-%m-%d %H:%M:%S", "SourceTimezone": "GMT+00:00",
        }));
        assert_eq!(
            times(
                &mut p,
                &[
                    b"garbage",
                    b"2022-13-07 10:43:30",
                    b"\xff\xfe",
                    b"",
                    b"1970-01-01 00:00:00"
                ]
            ),
            [(7, None), (7, None), (7, None), (7, None)]
        );
        assert_eq!((p.parse_failures, p.discarded), (4, 1));
    }

    #[test]
    fn local_zone_round_trips() {
        let mut p = processor(json!({"SourceKey": "time", "SourceFormat": "%Y-%m-%d %H:%M:%S"}));
        let [(t, _)] = times(&mut p, &[b"2022-07-07 02:43:30"])[..] else {
            panic!()
        };
        assert_eq!(i64::from(t) + local_offset_at(i64::from(t)), 1_657_161_810);
    }

    #[test]
    fn bad_options_name_the_field() {
        let err = build(&options(json!({"SourceKey": "t", "SourceFormat": "%Y %Q"})))
            .err()
            .unwrap();
        assert_eq!(err.field, "SourceFormat");
        let err = build(&options(
            json!({"SourceKey": "t", "SourceFormat": "%Y", "SourceTimezone": "UTC+8"}),
        ))
        .err()
        .unwrap();
        assert_eq!(err.field, "SourceTimezone");
        let err = build(&options(json!({"SourceFormat": "%Y"})))
            .err()
            .unwrap();
        assert!(err.message.contains("SourceKey"), "{err}");
    }

    #[test]
    fn random_values_never_panic() {
        const ALPHABET: &[u8] = b"0123456789-:. +ZAPMJul\xff";
        let mut p = processor(json!({"SourceKey": "time", "SourceFormat": "%F %T.%f %z %p %j %b"}));
        let mut seed: u32 = 3;
        for len in 0..200usize {
            let mut value = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                value.push(ALPHABET[(seed >> 16) as usize % ALPHABET.len()]);
            }
            times(&mut p, &[&value]);
        }
    }
}
