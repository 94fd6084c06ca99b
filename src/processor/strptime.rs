//! `processor_strptime`: sets a log's time from one of its contents, as iLogtail's extended
//! (Go) processor of that name. The format is C strptime's (the same parser as
//! `processor_parse_timestamp_native`, `%f` and `%s` included). A time without `%z` is in the
//! machine's zone as it was when the processor started (iLogtail reads it once), or at
//! `UTCOffset` seconds east with `AdjustUTCOffset`. With `EnablePreciseTimestamp` the time is
//! also written to `PreciseTimestampKey` in ms, us or ns. A value that does not parse leaves
//! the log as it is.

use bytes::Bytes;
use serde::Deserialize;

use super::parse_timestamp_native::{check_format, current_year, local_offset_at, parse, Zone};
use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<StrptimeConfig>("processor_strptime", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct StrptimeConfig {
    /// The content holding the time (default `time`).
    pub source_key: String,
    /// Its strptime format. Required.
    pub format: String,
    /// Keep the source content (default true).
    pub keep_source: bool,
    /// Use `UTCOffset` instead of the machine's zone (default false).
    #[serde(rename = "AdjustUTCOffset")]
    pub adjust_utc_offset: bool,
    /// Seconds east of UTC, -12 h to +14 h.
    #[serde(rename = "UTCOffset")]
    pub utc_offset: i64,
    /// Report values that do not parse (default true; Tailrace counts them either way).
    pub alarm_if_fail: bool,
    /// Also write the time, with its fraction, to `PreciseTimestampKey` (default false).
    pub enable_precise_timestamp: bool,
    /// Default `precise_timestamp`.
    pub precise_timestamp_key: String,
    /// `ms` (default), `us` or `ns`.
    pub precise_timestamp_unit: String,
}

impl Default for StrptimeConfig {
    fn default() -> Self {
        StrptimeConfig {
            source_key: "time".to_owned(),
            format: String::new(),
            keep_source: true,
            adjust_utc_offset: false,
            utc_offset: 0,
            alarm_if_fail: true,
            enable_precise_timestamp: false,
            precise_timestamp_key: "precise_timestamp".to_owned(),
            precise_timestamp_unit: "ms".to_owned(),
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(Strptime::new(parse_options(options)?)?))
}

pub struct Strptime {
    source_key: Bytes,
    format: Vec<u8>,
    zone: Zone,
    keep_source: bool,
    has_fraction: bool,
    /// `(key, nanoseconds per unit)` with `EnablePreciseTimestamp`.
    precise: Option<(Bytes, i64)>,
    /// Values that did not parse.
    pub parse_failures: u64,
}

impl Strptime {
    pub fn new(config: StrptimeConfig) -> Result<Self, ProcessorError> {
        if config.format.is_empty() {
            return Err(ProcessorError::new("Format", "required: a strptime format"));
        }
        check_format(config.format.as_bytes()).map_err(|p| ProcessorError::new("Format", p))?;
        let zone = if config.adjust_utc_offset {
            if !(-12 * 3600..=14 * 3600).contains(&config.utc_offset) {
                return Err(ProcessorError::new(
                    "UTCOffset",
                    format!(
                        "{} is out of range (-43200 to 50400 seconds)",
                        config.utc_offset
                    ),
                ));
            }
            Zone::Fixed(config.utc_offset)
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            Zone::Fixed(local_offset_at(now))
        };
        let precise = config.enable_precise_timestamp.then(|| {
            let per_unit = match config.precise_timestamp_unit.as_str() {
                "us" => 1_000,
                "ns" => 1,
                _ => 1_000_000,
            };
            let key = if config.precise_timestamp_key.is_empty() {
                "precise_timestamp".to_owned()
            } else {
                config.precise_timestamp_key
            };
            (Bytes::from(key), per_unit)
        });
        let source_key = if config.source_key.is_empty() {
            "time".to_owned()
        } else {
            config.source_key
        };
        Ok(Strptime {
            source_key: Bytes::from(source_key),
            has_fraction: config.format.contains("%f"),
            format: config.format.into_bytes(),
            zone,
            keep_source: config.keep_source,
            precise,
            parse_failures: 0,
        })
    }
}

impl Processor for Strptime {
    fn parse_failures(&self) -> u64 {
        self.parse_failures
    }

    fn process(&mut self, group: &mut PipelineEventGroup) {
        let year = current_year();
        for event in &mut group.events {
            let PipelineEvent::Log(log) = event else {
                continue;
            };
            let Some(value) = log.content(&self.source_key) else {
                continue;
            };
            let parsed = parse(&self.format, value, year)
                .and_then(|fields| Some((fields.epoch(self.zone)?, fields.nanos)));
            let Some((seconds, nanos)) =
                parsed.filter(|(s, _)| (1..=i64::from(u32::MAX)).contains(s))
            else {
                self.parse_failures += 1;
                continue;
            };
            log.time = seconds as u32;
            log.time_ns = self.has_fraction.then_some(nanos);
            if !self.keep_source {
                log.remove_content(&self.source_key);
            }
            if let Some((key, per_unit)) = &self.precise {
                let total = seconds * 1_000_000_000 + i64::from(nanos);
                log.set_content(key.clone(), Bytes::from((total / per_unit).to_string()));
            }
        }
    }
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
        log.set_content("time", value.to_owned());
        let mut group = PipelineEventGroup::default();
        group.events.push(PipelineEvent::Log(log));
        p.process(&mut group);
        let PipelineEvent::Log(log) = group.events.remove(0) else {
            unreachable!()
        };
        log
    }

    #[test]
    fn ilogtail_readme_cases() {
        // 2016/01/02 12:59:59 at UTC+8 (AdjustUTCOffset) is 04:59:59 UTC: 1451710799.
        let log = run(
            json!({"Format": "%Y/%m/%d %H:%M:%S", "AdjustUTCOffset": true, "UTCOffset": 28800}),
            "2016/01/02 12:59:59",
        );
        assert_eq!(log.time, 1_451_710_799);
        assert_eq!(&log.content(b"time").unwrap()[..], b"2016/01/02 12:59:59");
        // With %z the value says its own offset.
        let log = run(
            json!({"Format": "%Y/%m/%d %H:%M:%S %z", "KeepSource": false}),
            "2016/01/02 12:59:59 +0800",
        );
        assert_eq!(log.time, 1_451_710_799);
        assert!(log.contents.is_empty());
    }

    #[test]
    fn precise_timestamps_and_failures() {
        let log = run(
            json!({"Format": "%Y-%m-%d %H:%M:%S.%f", "AdjustUTCOffset": true, "UTCOffset": 0,
                   "EnablePreciseTimestamp": true, "PreciseTimestampUnit": "us"}),
            "2016-01-02 04:59:59.123456",
        );
        assert_eq!((log.time, log.time_ns), (1_451_710_799, Some(123_456_000)));
        assert_eq!(
            &log.content(b"precise_timestamp").unwrap()[..],
            b"1451710799123456"
        );
        let log = run(json!({"Format": "%Y-%m-%d"}), "not a date");
        assert_eq!(log.time, 7);
        let err = build(&options(
            json!({"Format": "%Y", "AdjustUTCOffset": true, "UTCOffset": 90000}),
        ))
        .err()
        .unwrap();
        assert_eq!(err.field, "UTCOffset");
        let err = build(&options(json!({}))).err().unwrap();
        assert_eq!(err.field, "Format");
    }
}
