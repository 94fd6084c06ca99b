//! Every processor, written once and linked into both the host and the plugin base, so that a
//! processor gives the same result on either side (DESIGN §5). One file per processor, named
//! after iLogtail's `Type` (`processor_parse_regex_native` → `parse_regex_native.rs`): its option
//! struct with iLogtail's names and defaults at the top, its validation, the processor, and its
//! tests.
//!
//! [`PROCESSORS`] is the registry: each `Type` with its constructor and its option checker. The
//! host runs every processor listed here itself (they are native to it); the plugin base
//! registers every one of them too, for pipelines whose input runs there.

pub mod add_fields;
pub mod appender;
pub mod base64_decoding;
pub mod base64_encoding;
mod common_parser_options;
pub mod csv;
pub mod default;
pub mod desensitize_native;
pub mod dict_map;
pub mod drop;
pub mod field_names;
pub mod fields_with_condition;
pub mod filter_key_regex;
pub mod filter_regex;
pub mod filter_regex_native;
pub mod gotime;
pub mod grok;
pub mod json;
pub mod md5;
pub mod native_regex;
mod one_pass_regex;
pub mod packjson;
pub mod parse_delimiter_native;
pub mod parse_json_native;
pub mod parse_regex_native;
pub mod parse_timestamp_native;
pub mod pick_key;
pub mod rate_limit;
pub mod regex;
pub mod regex_accelerate;
pub mod rename;
pub mod split_char;
pub mod split_key_value;
pub mod split_log_regex;
pub mod split_log_string;
pub mod split_string;
pub mod string_replace;
pub mod strptime;
pub mod whole_block;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::plugin::Processor;
use crate::plugin_options;
pub use crate::plugin_options::OptionError as ProcessorError;

/// A processor's options: its config item without `Type`.
pub type Options = Map<String, Value>;

/// Builds a processor from its options; the error names the option and what is wrong with it.
pub type Constructor = fn(&Options) -> Result<Box<dyn Processor>, ProcessorError>;

/// One processor type.
#[derive(Clone, Copy)]
pub struct Registration {
    /// iLogtail's `Type`.
    pub name: &'static str,
    pub build: Constructor,
    /// The options given that the processor does not take (paths below the plugin).
    pub unknown_options: fn(&Options) -> Vec<String>,
    /// The top-level options the processor takes, for "did you mean".
    pub known_options: fn() -> &'static [&'static str],
}

impl Registration {
    /// The registration of a processor whose options deserialize into `T`.
    pub const fn new<T: DeserializeOwned>(name: &'static str, build: Constructor) -> Self {
        Registration {
            name,
            build,
            unknown_options: plugin_options::unknown_options::<T>,
            known_options: plugin_options::struct_fields::<T>,
        }
    }
}

/// The registry: every processor Tailrace implements.
pub const PROCESSORS: &[Registration] = &[
    parse_regex_native::REGISTRATION,
    parse_json_native::REGISTRATION,
    parse_delimiter_native::REGISTRATION,
    parse_timestamp_native::REGISTRATION,
    filter_regex_native::REGISTRATION,
    desensitize_native::REGISTRATION,
    json::REGISTRATION,
    filter_regex::REGISTRATION,
    drop::REGISTRATION,
    rename::REGISTRATION,
    default::REGISTRATION,
    regex::REGISTRATION,
    pick_key::REGISTRATION,
    string_replace::REGISTRATION,
    split_key_value::REGISTRATION,
    strptime::REGISTRATION,
    md5::REGISTRATION,
    base64_encoding::REGISTRATION,
    base64_decoding::REGISTRATION,
    packjson::REGISTRATION,
    csv::REGISTRATION,
    gotime::REGISTRATION,
    dict_map::REGISTRATION,
    rate_limit::REGISTRATION,
    fields_with_condition::REGISTRATION,
    filter_key_regex::REGISTRATION,
    add_fields::REGISTRATION,
    grok::REGISTRATION,
    appender::REGISTRATION,
    split_log_regex::REGISTRATION,
    split_log_string::REGISTRATION,
    split_char::REGISTRATION,
    split_string::REGISTRATION,
    regex_accelerate::REGISTRATION,
];

/// The names of [`PROCESSORS`], in the same order (a constant, so that the lists of what the
/// plugin base implements can be built from it).
pub const NAMES: [&str; PROCESSORS.len()] = names();

const fn names() -> [&'static str; PROCESSORS.len()] {
    let mut out = [""; PROCESSORS.len()];
    let mut i = 0;
    while i < PROCESSORS.len() {
        out[i] = PROCESSORS[i].name;
        i += 1;
    }
    out
}

/// The registration of `kind` (a `Type` without iLogtail's `/id` and `#priority` suffixes).
pub fn find(kind: &str) -> Option<&'static Registration> {
    PROCESSORS.iter().find(|r| r.name == kind)
}

/// Builds the processor `kind` from its options.
pub fn build(kind: &str, options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    match find(kind) {
        Some(registration) => (registration.build)(options),
        None => Err(ProcessorError::new(
            "Type",
            format!("{kind:?} is not a processor Tailrace implements"),
        )),
    }
}

/// Parses a processor's options into its option struct (see [`plugin_options::parse`]).
/// The field a Go-side processor works on (`SourceKey`, iLogtail's extended semantics): the
/// named content, or the first content when the key is empty. Its key and value.
fn go_source(
    log: &crate::LogEvent,
    source_key: &bytes::Bytes,
) -> Option<(bytes::Bytes, bytes::Bytes)> {
    if source_key.is_empty() {
        log.contents.first().map(|(k, v)| (k.clone(), v.clone()))
    } else {
        log.content(source_key)
            .map(|v| (source_key.clone(), v.clone()))
    }
}

/// Keeps the logs `keep` accepts (other events stay); returns how many logs were dropped (the
/// filter processors' counter).
fn retain_logs(
    group: &mut crate::PipelineEventGroup,
    mut keep: impl FnMut(&crate::LogEvent) -> bool,
) -> u64 {
    let before = group.events.len();
    group.events.retain(|event| match event {
        crate::PipelineEvent::Log(log) => keep(log),
        _ => true,
    });
    (before - group.events.len()) as u64
}

fn parse_options<T: DeserializeOwned>(options: &Options) -> Result<T, ProcessorError> {
    plugin_options::parse(options)
}

/// Compiles a regex option of a native processor (boost's Perl syntax and byte semantics in
/// iLogtail, PCRE2 here: see [`native_regex`]); `anchored` makes it a full match (boost's
/// `regex_match`), else it is searched for.
fn native_regex(
    field: &str,
    pattern: &str,
    anchored: bool,
) -> Result<native_regex::NativeRegex, ProcessorError> {
    let anchor = if anchored {
        native_regex::Anchor::Full
    } else {
        native_regex::Anchor::Search
    };
    native_regex::NativeRegex::new(field, pattern, anchor)
}

/// Compiles a regex option of an extended (Go-side) processor: Go's RE2 syntax, which is the
/// `regex` crate's, with iLogtail's `(?s)` (`.` matches a newline) and byte semantics (a value
/// that is not UTF-8 is matched byte-wise); a pattern that needs Unicode classes (`\p{Han}`)
/// is compiled with Unicode on instead.
fn go_regex(field: &str, pattern: &str) -> Result<::regex::bytes::Regex, ProcessorError> {
    let build = |unicode: bool| {
        ::regex::bytes::RegexBuilder::new(pattern)
            .unicode(unicode)
            .dot_matches_new_line(true)
            .build()
    };
    build(false).or_else(|_| build(true)).map_err(|e| {
        ProcessorError::new(
            field,
            format!("{pattern:?} is not a valid regex: {}", regex_problem(&e)),
        )
    })
}

/// [`native_regex`] for a regex whose capture groups fill `keys` fields: more groups than keys
/// is fine (iLogtail ignores the rest), fewer would fail on every line.
fn keyed_regex(
    pattern: &str,
    keys: usize,
    anchored: bool,
) -> Result<native_regex::NativeRegex, ProcessorError> {
    let regex = native_regex("Regex", pattern, anchored)?;
    let groups = regex.groups();
    if groups < keys {
        return Err(ProcessorError::new(
            "Keys",
            format!("{keys} keys for a regex with {groups} capture groups"),
        ));
    }
    Ok(regex)
}

/// Where the field a Go-side processor works on is in `log` (`SourceKey`; the first content
/// when the key is empty). A log without it is counted in `missing`, and reported now and then
/// when `report` (iLogtail's `NoKeyError`).
fn go_source_index(
    log: &crate::LogEvent,
    source_key: &bytes::Bytes,
    missing: &mut u64,
    report: bool,
    processor: &str,
) -> Option<usize> {
    let found = log
        .contents
        .iter()
        .position(|(k, _)| source_key.is_empty() || k == source_key);
    if found.is_none() {
        *missing += 1;
        if report && missing.is_power_of_two() {
            tracing::warn!(
                processor,
                key = %String::from_utf8_lossy(source_key),
                logs = *missing,
                "logs without the source key"
            );
        }
    }
    found
}

/// The regex crate's error in one line, without the pattern it quotes (which carries our
/// anchors): messages are printed one per line, naming the user's pattern.
fn regex_problem(e: &::regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.lines().map(str::trim).collect::<Vec<_>>().join(" "))
}

/// Whether two field names are equal: the same interned name (one pointer compared, as for a
/// line from the file input and a configured `SourceKey`), or the same bytes.
#[inline(always)]
pub(crate) fn same_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.as_ptr() == b.as_ptr() || a == b)
}

/// The source of `log` when it holds nothing else (a line as read from a file): a parser with
/// distinct keys, none of them the source's, can then append its fields without a search per
/// field, or write them straight into a LogGroup.
#[inline(always)]
pub(crate) fn only_source<'a>(
    log: &'a crate::LogEvent,
    source_key: &[u8],
) -> Option<&'a bytes::Bytes> {
    match log.contents.as_slice() {
        [(key, raw)] if same_name(key, source_key) => Some(raw),
        _ => None,
    }
}

/// A line a parser may write straight into a LogGroup: a log whose only content is `key` =
/// the line (one of a group's [`crate::Lines`], or a log that holds nothing else).
pub(crate) struct Line<'a> {
    pub time: u32,
    pub time_ns: Option<u32>,
    pub key: &'a [u8],
    /// The buffer the line is in, and where.
    buffer: &'a bytes::Bytes,
    range: std::ops::Range<usize>,
}

impl<'a> Line<'a> {
    /// The line.
    #[inline(always)]
    pub fn text(&self) -> &'a [u8] {
        &self.buffer[self.range.clone()]
    }

    /// The line as a view of its buffer.
    pub fn to_bytes(&self) -> bytes::Bytes {
        if self.range.len() == self.buffer.len() {
            self.buffer.clone()
        } else {
            self.buffer.slice(self.range.clone())
        }
    }
}

/// A parser that can write the logs it parses straight into a LogGroup (see
/// `Processor::process_encoded`), and otherwise processes them as events.
pub(crate) trait EncodingParser {
    /// What it reuses from one line to the next.
    type Scratch;
    /// Writes `line` parsed into `out`; false, with nothing written, when it cannot (the line
    /// then takes [`EncodingParser::process_log`] as a log).
    fn encode_line(
        &mut self,
        line: &Line<'_>,
        scratch: &mut Self::Scratch,
        out: &mut Vec<u8>,
    ) -> bool;
    /// Processes `log` as an event; false when it is to be dropped.
    fn process_log(&mut self, log: &mut crate::LogEvent, scratch: &mut Self::Scratch) -> bool;
}

/// The loop of a parser's `Processor::process`: every log of `group` processed as an event
/// ([`EncodingParser::process_log`]), those it drops removed. Returns how many were dropped.
pub(crate) fn process_logs<P: EncodingParser>(
    parser: &mut P,
    scratch: &mut P::Scratch,
    group: &mut crate::PipelineEventGroup,
) -> u64 {
    group.make_events();
    let before = group.events.len();
    group.events.retain_mut(|event| match event {
        crate::PipelineEvent::Log(log) => parser.process_log(log, scratch),
        _ => true,
    });
    (before - group.events.len()) as u64
}

/// The loop of a parser's `Processor::process_encoded`: every log of `group` (its lines first,
/// then its events), in order, is written by the parser itself or processed as an event;
/// events kept, and events that are not logs, are written by the general encoder in their
/// place. `group` is left empty. Returns how many logs were written and how many dropped.
pub(crate) fn encode_logs<P: EncodingParser>(
    parser: &mut P,
    scratch: &mut P::Scratch,
    group: &mut crate::PipelineEventGroup,
    out: &mut Vec<u8>,
) -> (usize, u64) {
    let (mut written, mut dropped) = (0, 0);
    if let Some(lines) = group.lines.take() {
        for (i, range) in lines.ranges.iter().enumerate() {
            let line = Line {
                time: lines.time,
                time_ns: lines.time_ns,
                key: &lines.key,
                buffer: &lines.block,
                range: range.clone(),
            };
            if parser.encode_line(&line, scratch, out) {
                written += 1;
                continue;
            }
            let mut log = lines.event(i);
            if parser.process_log(&mut log, scratch) {
                crate::proto::encode_event(&crate::PipelineEvent::Log(log), out);
                written += 1;
            } else {
                dropped += 1;
            }
        }
    }
    for event in group.events.iter_mut() {
        let keep = match event {
            crate::PipelineEvent::Log(log) => {
                if let [(key, value)] = log.contents.as_slice() {
                    let line = Line {
                        time: log.time,
                        time_ns: log.time_ns,
                        key,
                        buffer: value,
                        range: 0..value.len(),
                    };
                    if parser.encode_line(&line, scratch, out) {
                        written += 1;
                        continue;
                    }
                }
                parser.process_log(log, scratch)
            }
            _ => true,
        };
        if keep {
            crate::proto::encode_event(event, out);
            written += 1;
        } else {
            dropped += 1;
        }
    }
    group.events.clear();
    (written, dropped)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Groups of logs for the processors' tests.

    use bytes::Bytes;

    use crate::{LogEvent, PipelineEvent, PipelineEventGroup};

    /// `group` through `by_events.process` then `encode_group`, and through
    /// `by_bytes.process_encoded`: the same bytes, the same number of logs, the same failures,
    /// and the group left empty by the latter. The same then for the `content` values of its
    /// logs as the [`crate::Lines`] of a group (as the file reader hands them), against the
    /// events they make.
    pub fn assert_encoded_as_events(
        by_events: &mut dyn crate::plugin::Processor,
        by_bytes: &mut dyn crate::plugin::Processor,
        group: PipelineEventGroup,
    ) {
        let as_lines = lines_of(&group);
        assert_same_encoding(by_events, group.clone(), by_bytes, group);
        let mut made = as_lines.clone();
        made.make_events();
        assert!(made.lines.is_none());
        assert_eq!(made.len(), as_lines.len());
        assert_same_encoding(by_events, made, by_bytes, as_lines);
    }

    /// `events` through `by_events.process` then `encode_group`, and `group` (the same logs)
    /// through `by_bytes.process_encoded`: the same bytes, logs and failures, `group` left empty.
    fn assert_same_encoding(
        by_events: &mut dyn crate::plugin::Processor,
        mut events: PipelineEventGroup,
        by_bytes: &mut dyn crate::plugin::Processor,
        mut group: PipelineEventGroup,
    ) {
        by_events.process(&mut events);
        let mut expected = Vec::new();
        crate::proto::encode_group(&events, &mut expected);
        let mut got = Vec::new();
        let written = by_bytes.process_encoded(&mut group, &mut got);
        assert_eq!(written, Some(events.events.len()));
        assert!(group.is_empty());
        assert_eq!(got, expected);
        assert_eq!(by_bytes.parse_failures(), by_events.parse_failures());
    }

    /// The `content` values of `group`'s logs as the lines of a block, with the time of its
    /// first log; the key interned (as the file reader's) when the group has an even number
    /// of events, else not.
    fn lines_of(group: &PipelineEventGroup) -> PipelineEventGroup {
        let mut block = Vec::new();
        let mut ranges = Vec::new();
        let (mut time, mut time_ns) = (1_700_000_000, None);
        for event in &group.events {
            let PipelineEvent::Log(log) = event else {
                continue;
            };
            if ranges.is_empty() {
                (time, time_ns) = (log.time, log.time_ns);
            }
            if let Some(value) = log.content(b"content") {
                ranges.push(block.len()..block.len() + value.len());
                block.extend_from_slice(value);
                block.push(b'\n');
            }
        }
        let key = if group.events.len().is_multiple_of(2) {
            crate::processor::field_names::field_name("content")
        } else {
            Bytes::from_static(b"content")
        };
        PipelineEventGroup {
            lines: Some(Box::new(crate::Lines {
                block: Bytes::from(block),
                offset: 1000,
                key,
                time,
                time_ns,
                ranges,
            })),
            ..Default::default()
        }
    }

    /// A group of 1 to `most` logs, each with one of `samples` as `content` (a time in
    /// nanoseconds in a quarter of them, a second content `host` in an eighth), drawn by
    /// `random(n)` (a number below `n`).
    pub fn sampled_group(
        random: &mut dyn FnMut(usize) -> usize,
        samples: &[&'static [u8]],
        most: usize,
    ) -> PipelineEventGroup {
        let mut group = PipelineEventGroup::default();
        for _ in 0..1 + random(most) {
            let mut log = LogEvent::new(1_700_000_000, None);
            if random(4) == 0 {
                log.time_ns = Some(random(1_000_000_000) as u32);
            }
            log.set_content(
                "content",
                Bytes::from_static(samples[random(samples.len())]),
            );
            if random(8) == 0 {
                log.set_content("host", "h1");
            }
            group.events.push(PipelineEvent::Log(log));
        }
        group
    }

    /// A group of one log per line, each with the line as `content`.
    pub fn lines(lines: &[&[u8]]) -> PipelineEventGroup {
        let mut group = PipelineEventGroup::default();
        for line in lines {
            let mut log = LogEvent::new(1_700_000_000, None);
            log.set_content("content", Bytes::copy_from_slice(line));
            group.events.push(PipelineEvent::Log(log));
        }
        group
    }

    /// The contents of the `i`-th event (a log), as text pairs.
    pub fn contents(group: &PipelineEventGroup, i: usize) -> Vec<(String, String)> {
        let PipelineEvent::Log(log) = &group.events[i] else {
            panic!("event {i} is not a log")
        };
        log.contents
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    /// `[("a", "1"), ...]` as owned pairs, to compare with [`contents`].
    pub fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn options(value: serde_json::Value) -> super::Options {
        value.as_object().expect("options are an object").clone()
    }

    /// One line (as `content`) through the processor `build` makes from `opts`.
    pub fn processed(
        build: super::Constructor,
        opts: serde_json::Value,
        line: &[u8],
    ) -> PipelineEventGroup {
        let mut processor = build(&options(opts)).expect("the options build the processor");
        let mut group = lines(&[line]);
        processor.process(&mut group);
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_registry_and_are_unique() {
        assert_eq!(NAMES.len(), PROCESSORS.len());
        for (name, registration) in NAMES.iter().zip(PROCESSORS) {
            assert_eq!(*name, registration.name);
            assert_eq!(find(name).unwrap().name, *name);
        }
        let mut sorted = NAMES.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), NAMES.len());
    }

    /// Options that build each processor, for the random-input test (every registered
    /// processor must be here).
    fn sample_options(name: &str) -> serde_json::Value {
        use serde_json::json;
        match name {
            "processor_parse_regex_native" => {
                json!({"Regex": "(\\S+) (.*)", "Keys": ["a", "b"], "KeepingSourceWhenParseFail": true})
            }
            "processor_parse_json_native" => {
                json!({"CopingRawLog": true, "KeepingSourceWhenParseFail": true})
            }
            "processor_parse_delimiter_native" => {
                json!({"Separator": ",", "Keys": ["a", "b"], "OverflowedFieldsTreatment": "keep"})
            }
            "processor_parse_timestamp_native" => {
                json!({"SourceKey": "content", "SourceFormat": "%Y-%m-%d %H:%M:%S.%f %z"})
            }
            "processor_filter_regex_native" => json!({"Include": {"content": ".*a.*"}}),
            "processor_desensitize_native" => {
                json!({"Method": "md5", "ContentPatternBeforeReplacedString": "a", "ReplacedContentPattern": "[^,]+"})
            }
            "processor_json" => json!({"SourceKey": "content", "ExpandArray": true}),
            "processor_filter_regex" => json!({"Exclude": {"content": "^b"}}),
            "processor_drop" => json!({"DropKeys": ["x"]}),
            "processor_rename" => json!({"SourceKeys": ["content"], "DestKeys": ["c"]}),
            "processor_default" => json!({}),
            "processor_regex" => {
                json!({"Regex": "(a+)(.*)", "Keys": ["a", "b"], "FullMatch": true})
            }
            "processor_pick_key" => json!({"Exclude": ["x"]}),
            "processor_string_replace" => json!({"SourceKey": "content", "Method": "unquote"}),
            "processor_split_key_value" => {
                json!({"SourceKey": "content", "Delimiter": ",", "Separator": "="})
            }
            "processor_strptime" => {
                json!({"SourceKey": "content", "Format": "%d/%b/%Y:%H:%M:%S %z"})
            }
            "processor_md5" => json!({"SourceKey": "content", "MD5Key": "m"}),
            "processor_base64_encoding" => json!({"SourceKey": "content"}),
            "processor_base64_decoding" => json!({"SourceKey": "content", "NewKey": "d"}),
            "processor_packjson" => json!({"SourceKeys": ["content", "a"], "DestKey": "packed"}),
            "processor_csv" => {
                json!({"SplitKeys": ["a", "b"], "PreserveOthers": true, "TrimLeadingSpace": true})
            }
            "processor_gotime" => {
                json!({"SourceKey": "content", "SourceFormat": "Jan _2 15:04:05.999 -07:00 2006", "DestKey": "d", "DestFormat": "Monday 002 3PM MST Z07:00 .000"})
            }
            "processor_dict_map" => {
                json!({"SourceKey": "content", "DestKey": "d", "MapDict": {"a": "b"}, "HandleMissing": true})
            }
            "processor_rate_limit" => json!({"Fields": ["content"], "Limit": "1000/s"}),
            "processor_fields_with_condition" => {
                json!({"DropIfNotMatchCondition": true, "Switch": [{"Case": {"RelationOperator": "regexp", "FieldConditions": {"content": "a"}}, "Actions": [{"type": "processor_drop", "DropKeys": ["x"]}]}]})
            }
            "processor_filter_key_regex" => json!({"Include": ["^c"], "Exclude": ["x"]}),
            "processor_add_fields" => json!({"Fields": {"a": "b"}}),
            "processor_grok" => {
                json!({"Match": ["%{COMBINEDAPACHELOG}", "%{SYSLOGLINE}", "%{WORD:w}=%{NUMBER:n}"], "SourceKey": "", "IgnoreParseFailure": false, "TimeoutMilliSeconds": 50})
            }
            "processor_appender" => {
                json!({"Key": "content", "Value": "|a#$#{{__host__}}|{{$HOME}}", "SortLabels": true})
            }
            "processor_split_log_regex" => {
                json!({"SplitRegex": "\\d.*", "PreserveOthers": true, "EnableLogPositionMeta": true})
            }
            "processor_split_log_string" => json!({"SplitSep": "a"}),
            "processor_split_char" => {
                json!({"SplitSep": ",", "SplitKeys": ["a", "b"], "Quote": "\"", "QuoteFlag": true})
            }
            "processor_split_string" => {
                json!({"SplitSep": "=", "SplitKeys": ["a"], "ExpandOthers": true})
            }
            "processor_regex_accelerate" => {
                json!({"Regex": "(\\S+) (.*)", "Keys": ["time", "b"], "LogBeginRegex": "\\d.*", "DiscardUnmatch": false, "TimeFormat": "%Y-%m-%d", "FilterKey": ["b"], "FilterRegex": [".*"]})
            }
            other => panic!("no sample options for {other}: add them here"),
        }
    }

    /// Random bytes (JSON, CSV, escapes, digits, non-UTF-8) through every processor, chained:
    /// no input makes any of them panic.
    #[test]
    fn random_bytes_through_every_processor_never_panic() {
        const ALPHABET: &[u8] = b"{}[]\",:=\\ \t\nab01-+.%Z/\xff\xc3";
        let mut chain: Vec<Box<dyn Processor>> = PROCESSORS
            .iter()
            .map(|r| {
                let options = test_support::options(sample_options(r.name));
                (r.build)(&options).unwrap_or_else(|e| panic!("{}: {e}", r.name))
            })
            .collect();
        let mut seed: u32 = 17;
        for round in 0..400usize {
            let mut lines = Vec::new();
            for _ in 0..4 {
                let len = (round * 7 + lines.len() * 13) % 120;
                let mut line = Vec::with_capacity(len);
                for _ in 0..len {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    line.push(ALPHABET[(seed >> 16) as usize % ALPHABET.len()]);
                }
                lines.push(line);
            }
            let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
            // Each processor alone, then all of them in a row.
            for p in chain.iter_mut() {
                let mut group = test_support::lines(&refs);
                p.process(&mut group);
            }
            let mut group = test_support::lines(&refs);
            for p in chain.iter_mut() {
                p.process(&mut group);
            }
        }
    }

    #[test]
    fn regex_errors_are_one_line_about_the_users_pattern() {
        let e = native_regex("Regex", "(a", true).err().unwrap();
        assert_eq!(e.field, "Regex");
        assert_eq!(
            e.message,
            "\"(a\" is not a valid regex: missing closing parenthesis (at byte 2)"
        );
        let e = go_regex("Regex", "(a").err().unwrap();
        assert_eq!(e.message, "\"(a\" is not a valid regex: unclosed group");
        // Go's RE2 has no look-around: the Go-side processors reject it, as iLogtail's do.
        assert!(go_regex("Regex", "a(?=b)").is_err());
        assert!(native_regex("Regex", "a(?=b)b", true).is_ok());
    }

    #[test]
    fn unknown_types_and_options() {
        let err = build("processor_nope", &Options::new()).err().unwrap();
        assert_eq!(err.field, "Type");
        let reg = find("processor_add_fields").unwrap();
        let options = test_support::options(serde_json::json!({"Fields": {"a": "b"}, "Feilds": 1}));
        assert_eq!((reg.unknown_options)(&options), ["Feilds"]);
        assert!((reg.known_options)().contains(&"IgnoreIfExist"));
    }
}
