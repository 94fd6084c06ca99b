//! `processor_regex_accelerate`: iLogtail 1.x's accelerated regex mode, where the C++ core
//! parsed the blocks it read itself. Here it is a whole-block processor (see
//! [`super::whole_block`]): it cuts its `content` into events (each line, or each
//! `LogBeginRegex` line with the lines after it), parses each with `Regex` into `Keys`, keeps the
//! events whose `FilterKey` fields match `FilterRegex`, and takes the log time from the `time`
//! field with `TimeFormat`. Regexes have the native processors' semantics (a full match on
//! bytes, boost's in iLogtail).
//!
//! Unmatched events are dropped (`DiscardUnmatch`, the default) or kept as `__raw_log__`, as
//! iLogtail 1.x keeps them; lines before the first `LogBeginRegex` line follow the same rule.
//! A `time` value that does not parse leaves the read time and is counted.
//!
//! Not implemented: `LogContinueRegex`, `LogEndRegex` and `SensitiveKeys` (rejected rather
//! than ignored, so that a config relying on them does not silently change its output).
//! `MergeType` and `EnableTimestampNanosecond` are accepted: batches are per file already, and
//! a `%f` in `TimeFormat` sets the nanoseconds.

use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::common_parser_options::LEGACY_UNMATCHED_RAW_LOG_KEY;
use super::filter_regex_native::{FilterRegex, FilterRegexConfig};
use super::native_regex::NativeRegex;
use super::parse_timestamp_native::{ParseTimestamp, ParseTimestampConfig};
use super::whole_block::{BlockRule, LineMatcher};
use super::{keyed_regex, parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{LogEvent, PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<RegexAccelerateConfig>("processor_regex_accelerate", build);

/// The field holding the block (the reader's `content`).
const SOURCE_KEY: &[u8] = b"content";
/// The field `TimeFormat` parses.
const TIME_KEY: &str = "time";

/// iLogtail 1.x's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RegexAccelerateConfig {
    /// The names of the captured fields (default `["content"]`).
    pub keys: Vec<String>,
    /// The regex (full match); its groups fill `Keys` (default `(.*)`: the event as it is).
    pub regex: String,
    /// A line that matches it starts an event (multi-line logs); empty: every line is one.
    pub log_begin_regex: String,
    /// Not implemented: an error when set.
    pub log_continue_regex: String,
    /// Not implemented: an error when set.
    pub log_end_regex: String,
    /// Fields that must match `FilterRegex` for the event to be kept.
    pub filter_key: Vec<String>,
    /// The regexes of `FilterKey`, in order (full match).
    pub filter_regex: Vec<String>,
    /// The strftime format of the `time` field; empty: the read time is the log time.
    pub time_format: String,
    /// Take `time` in `LogTimezone` rather than the machine's zone (default false).
    pub adjust_timezone: bool,
    /// `GMT+HH:MM` / `GMT-HH:MM`, with `AdjustTimezone`.
    pub log_timezone: String,
    /// Accepted: nanoseconds come from `%f` in `TimeFormat`.
    pub enable_timestamp_nanosecond: bool,
    /// Also keep the event's raw text under `RawLogTag` (default false).
    pub enable_raw_log: bool,
    /// The key of the raw text (default `__raw__`).
    pub raw_log_tag: String,
    /// Drop events the regex does not match (default true); else keep them as `__raw_log__`.
    pub discard_unmatch: bool,
    /// Accepted (`topic` or `logstore`): batches are per file already.
    pub merge_type: String,
    /// Not implemented: an error when set.
    pub sensitive_keys: Option<Value>,
}

impl Default for RegexAccelerateConfig {
    fn default() -> Self {
        RegexAccelerateConfig {
            keys: vec!["content".to_owned()],
            regex: "(.*)".to_owned(),
            log_begin_regex: String::new(),
            log_continue_regex: String::new(),
            log_end_regex: String::new(),
            filter_key: Vec::new(),
            filter_regex: Vec::new(),
            time_format: String::new(),
            adjust_timezone: false,
            log_timezone: String::new(),
            enable_timestamp_nanosecond: false,
            enable_raw_log: false,
            raw_log_tag: "__raw__".to_owned(),
            discard_unmatch: true,
            merge_type: String::new(),
            sensitive_keys: None,
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(RegexAccelerate::new(parse_options(options)?)?))
}

/// The reader holds a block's last event back when events span lines.
pub(super) fn block_rule(options: &Options) -> Result<BlockRule, ProcessorError> {
    let config: RegexAccelerateConfig = parse_options(options)?;
    Ok(match begin_matcher(&config.log_begin_regex)? {
        Some(matcher) => BlockRule::EventStart(matcher),
        None => BlockRule::Line,
    })
}

/// `LogBeginRegex`, unless every line starts an event.
fn begin_matcher(pattern: &str) -> Result<Option<LineMatcher>, ProcessorError> {
    if pattern.is_empty() || pattern == ".*" {
        return Ok(None);
    }
    LineMatcher::native("LogBeginRegex", pattern).map(Some)
}

pub struct RegexAccelerate {
    starts: Option<LineMatcher>,
    /// None in whole-event mode (`(.*)`).
    regex: Option<NativeRegex>,
    keys: Vec<Bytes>,
    discard_unmatch: bool,
    raw_log_tag: Option<Bytes>,
    filter: Option<FilterRegex>,
    time: Option<ParseTimestamp>,
    /// Events the regex did not match.
    pub parse_failures: u64,
    /// Lines before the first `LogBeginRegex` line.
    pub unmatched_lines: u64,
}

impl RegexAccelerate {
    pub fn new(config: RegexAccelerateConfig) -> Result<Self, ProcessorError> {
        for (field, value) in [
            ("LogContinueRegex", &config.log_continue_regex),
            ("LogEndRegex", &config.log_end_regex),
        ] {
            if !value.is_empty() {
                return Err(ProcessorError::new(
                    field,
                    "not implemented yet: only LogBeginRegex starts multi-line events",
                ));
            }
        }
        if config.sensitive_keys.is_some() {
            return Err(ProcessorError::new(
                "SensitiveKeys",
                "not implemented yet: use processor_desensitize_native after this processor",
            ));
        }
        if config.keys.is_empty() {
            return Err(ProcessorError::new("Keys", "must name at least one field"));
        }
        let regex = if config.regex == "(.*)" {
            None
        } else {
            Some(keyed_regex(&config.regex, config.keys.len(), true)?)
        };
        let filter = if config.filter_key.is_empty() && config.filter_regex.is_empty() {
            None
        } else {
            Some(FilterRegex::new(FilterRegexConfig {
                filter_key: config.filter_key,
                filter_regex: config.filter_regex,
                ..FilterRegexConfig::default()
            })?)
        };
        let time = if config.time_format.is_empty() || !config.keys.iter().any(|k| k == TIME_KEY) {
            None
        } else {
            let zone = if config.adjust_timezone {
                config.log_timezone
            } else {
                String::new()
            };
            let parser = ParseTimestamp::new(ParseTimestampConfig {
                source_key: TIME_KEY.to_owned(),
                source_format: config.time_format,
                source_timezone: zone,
                source_year: -1,
            })
            .map_err(|e| {
                let field = match e.field.as_str() {
                    "SourceTimezone" => "LogTimezone",
                    _ => "TimeFormat",
                };
                ProcessorError::new(field, e.message)
            })?;
            Some(parser)
        };
        Ok(RegexAccelerate {
            starts: begin_matcher(&config.log_begin_regex)?,
            regex,
            keys: config.keys.into_iter().map(Bytes::from).collect(),
            discard_unmatch: config.discard_unmatch,
            raw_log_tag: config
                .enable_raw_log
                .then(|| Bytes::from(config.raw_log_tag)),
            filter,
            time,
            parse_failures: 0,
            unmatched_lines: 0,
        })
    }

    /// Logs dropped by `FilterKey`/`FilterRegex`.
    pub fn filtered(&self) -> u64 {
        self.filter.as_ref().map_or(0, |f| f.filtered)
    }

    /// `time` values that did not parse.
    pub fn time_failures(&self) -> u64 {
        self.time.as_ref().map_or(0, |t| t.parse_failures)
    }

    /// The events of `value`: their ranges, and whether each started with a begin line (lines
    /// before the first begin line do not).
    fn events(&self, value: &[u8], out: &mut Vec<(Range<usize>, bool)>) {
        let mut current: Option<usize> = None;
        let mut previous_end = 0;
        let mut start = 0;
        while start < value.len() {
            let end = memchr::memchr(b'\n', &value[start..]).map_or(value.len(), |i| start + i);
            let mut line_end = end;
            if line_end > start && value[line_end - 1] == b'\r' {
                line_end -= 1;
            }
            match &self.starts {
                None => out.push((start..line_end, true)),
                Some(starts) if starts.matches(&value[start..line_end]) => {
                    if let Some(s) = current {
                        out.push((s..previous_end, true));
                    }
                    current = Some(start);
                }
                Some(_) if current.is_none() => out.push((start..line_end, false)),
                Some(_) => {}
            }
            previous_end = line_end;
            start = end + 1;
        }
        if let Some(s) = current {
            out.push((s..previous_end, true));
        }
    }

    /// The log parsed from `text`, or None when it is dropped.
    fn parse(
        &mut self,
        source: &LogEvent,
        text: Bytes,
        position: Option<(u64, u64)>,
    ) -> Option<LogEvent> {
        let mut log = LogEvent::new(source.time, source.time_ns);
        log.position = position;
        let matched = match &mut self.regex {
            None => {
                log.contents.push((self.keys[0].clone(), text.clone()));
                true
            }
            Some(regex) => {
                let matched = regex.find_at(&text, 0).is_some();
                if matched {
                    for (i, key) in self.keys.iter().enumerate() {
                        let value = regex
                            .group(i + 1)
                            .map_or_else(Bytes::new, |(s, e)| text.slice(s..e));
                        log.contents.push((key.clone(), value));
                    }
                }
                matched
            }
        };
        if !matched {
            self.parse_failures += 1;
            if self.discard_unmatch {
                return None;
            }
            log.contents
                .push((Bytes::from_static(LEGACY_UNMATCHED_RAW_LOG_KEY), text));
            return Some(log);
        }
        if let Some(tag) = &self.raw_log_tag {
            log.contents.push((tag.clone(), text));
        }
        Some(log)
    }
}

impl Processor for RegexAccelerate {
    fn parse_failures(&self) -> u64 {
        self.parse_failures
    }

    fn process(&mut self, group: &mut PipelineEventGroup) {
        let mut out = Vec::with_capacity(group.events.len());
        let mut ranges = Vec::new();
        for event in std::mem::take(&mut group.events) {
            let PipelineEvent::Log(source) = event else {
                out.push(event);
                continue;
            };
            let Some(value) = source.content(SOURCE_KEY).cloned() else {
                out.push(PipelineEvent::Log(source));
                continue;
            };
            ranges.clear();
            self.events(&value, &mut ranges);
            for (range, begun) in ranges.drain(..) {
                if !begun {
                    self.unmatched_lines += 1;
                    if self.discard_unmatch {
                        continue;
                    }
                }
                let position = source
                    .position
                    .map(|(offset, _)| (offset + range.start as u64, range.len() as u64));
                if let Some(log) = self.parse(&source, value.slice(range), position) {
                    out.push(PipelineEvent::Log(log));
                }
            }
        }
        group.events = out;
        if let Some(filter) = &mut self.filter {
            filter.process(group);
        }
        if let Some(time) = &mut self.time {
            time.process(group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::test_support::{contents, options, pairs, processed};
    use serde_json::json;

    fn run(opts: serde_json::Value, block: &str) -> PipelineEventGroup {
        processed(build, opts, block.as_bytes())
    }

    const ACCESS: &str = "127.0.0.1 - - [07/Jul/2022:10:43:30 +0800] \"POST /PutData\" 200\n\
10.0.0.2 - - [07/Jul/2022:10:43:31 +0800] \"GET /health\" 200\n\
garbage line\n\
10.0.0.3 - - [07/Jul/2022:10:43:32 +0800] \"GET /x\" 500";

    #[test]
    fn lines_are_parsed_filtered_and_timed() {
        let group = run(
            json!({
                "Regex": r#"(\S+) \S+ \S+ \[([^\]]+)\] "(\w+) ([^"]*)" (\d+)"#,
                "Keys": ["ip", "time", "method", "url", "status"],
                "FilterKey": ["method"],
                "FilterRegex": ["POST|GET"],
                "TimeFormat": "%d/%b/%Y:%H:%M:%S %z",
            }),
            ACCESS,
        );
        assert_eq!(group.len(), 3, "the garbage line is dropped");
        assert_eq!(
            contents(&group, 0),
            pairs(&[
                ("ip", "127.0.0.1"),
                ("time", "07/Jul/2022:10:43:30 +0800"),
                ("method", "POST"),
                ("url", "/PutData"),
                ("status", "200")
            ])
        );
        let PipelineEvent::Log(first) = &group.events[0] else {
            panic!()
        };
        assert_eq!(first.time, 1_657_161_810);
    }

    #[test]
    fn unmatched_events_kept_as_raw_log_when_asked() {
        let group = run(
            json!({"Regex": r"(\d+\.\d+\.\d+\.\d+) (.*)", "Keys": ["ip", "rest"], "DiscardUnmatch": false, "EnableRawLog": true}),
            ACCESS,
        );
        assert_eq!(group.len(), 4);
        assert_eq!(
            contents(&group, 2),
            pairs(&[("__raw_log__", "garbage line")])
        );
        assert_eq!(contents(&group, 0)[2].0, "__raw__");
    }

    #[test]
    fn log_begin_regex_joins_lines_and_drops_the_leading_fragment() {
        let block = concat!(
            "\tat leftover.Frame(X.java:1)\n",
            "[2022-07-07 10:43:27,360] [INFO] java.lang.Exception: boom\n",
            "    at a.b(C.java:1)\n",
            "[2022-07-07 10:43:28,000] [WARN] done"
        );
        let opts = json!({
            "Regex": r"\[([^\]]+)\]\s\[(\S+)\]\s(.*)",
            "Keys": ["time", "level", "msg"],
            "LogBeginRegex": r"\[\d+-\d+-\d+ \d+:\d+:\d+,\d+\]\s\[\w+\]\s.*",
        });
        let group = run(opts.clone(), block);
        assert_eq!(group.len(), 2);
        assert_eq!(
            contents(&group, 0),
            pairs(&[
                ("time", "2022-07-07 10:43:27,360"),
                ("level", "INFO"),
                ("msg", "java.lang.Exception: boom\n    at a.b(C.java:1)")
            ])
        );
        let rule = block_rule(&options(opts)).unwrap();
        assert!(matches!(rule, BlockRule::EventStart(_)));
    }

    #[test]
    fn unsupported_and_bad_options_are_errors() {
        for (opts, field) in [
            (json!({"LogEndRegex": "x"}), "LogEndRegex"),
            (json!({"SensitiveKeys": []}), "SensitiveKeys"),
            (json!({"Regex": "(a)", "Keys": ["a", "b"]}), "Keys"),
            (json!({"Regex": "(a"}), "Regex"),
            (json!({"FilterKey": ["a"]}), "FilterRegex"),
            (json!({"Keys": ["time"], "TimeFormat": "%Q"}), "TimeFormat"),
            (
                json!({"Keys": ["time"], "TimeFormat": "%Y", "AdjustTimezone": true, "LogTimezone": "Mars"}),
                "LogTimezone",
            ),
        ] {
            let err = build(&options(opts.clone()))
                .err()
                .unwrap_or_else(|| panic!("{opts}"));
            assert_eq!(err.field, field, "{opts}: {err}");
        }
    }
}
