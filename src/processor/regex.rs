//! `processor_regex`: extracts fields from one content with a regex, as iLogtail's extended
//! (Go) processor of that name, which users' configs use most: the regex is searched for (not
//! anchored), `(?s)` as iLogtail adds it (`.` matches newlines), and capture group i becomes
//! `Keys[i]`; a group that took no part in the match adds no field. With `FullMatch` the match
//! must cover the whole value. Go's RE2 syntax is the `regex` crate's; like Go, `\d`, `\w` and
//! `\s` are ASCII, and a value that is not UTF-8 is matched byte-wise rather than rejected.

use crate::processor::go_source;
use bytes::Bytes;
use regex::bytes::{CaptureLocations, Regex};
use serde::Deserialize;

use super::{go_regex, parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration = Registration::new::<RegexConfig>("processor_regex", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RegexConfig {
    /// The regex; its capture groups, in order, fill `Keys`. Required.
    pub regex: String,
    /// The names of the captured fields. Required.
    pub keys: Vec<String>,
    /// The match must cover the whole value (default false).
    pub full_match: bool,
    /// Report logs without `SourceKey` (default false; Tailrace counts them).
    pub no_key_error: bool,
    /// Report values that do not match (default true; Tailrace counts them either way).
    pub no_match_error: bool,
    /// Keep the source content (default false).
    pub keep_source: bool,
    /// Keep the source content when it does not match (default true).
    pub keep_source_if_parse_error: bool,
    /// The content to parse; empty (the default) means the log's first content.
    pub source_key: String,
}

impl Default for RegexConfig {
    fn default() -> Self {
        RegexConfig {
            regex: String::new(),
            keys: Vec::new(),
            full_match: false,
            no_key_error: false,
            no_match_error: true,
            keep_source: false,
            keep_source_if_parse_error: true,
            source_key: String::new(),
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(ProcessorRegex::new(parse_options(options)?)?))
}

pub struct ProcessorRegex {
    regex: Regex,
    locations: CaptureLocations,
    keys: Vec<Bytes>,
    full_match: bool,
    keep_source: bool,
    keep_source_if_parse_error: bool,
    /// Empty: the first content.
    source_key: Bytes,
    no_key_error: bool,
    /// Values that did not match.
    pub parse_failures: u64,
    /// Logs without the source content (with `NoKeyError`).
    pub missing_key: u64,
}

impl ProcessorRegex {
    pub fn new(config: RegexConfig) -> Result<Self, ProcessorError> {
        if config.keys.is_empty() {
            return Err(ProcessorError::new("Keys", "must name at least one field"));
        }
        let regex = go_regex("Regex", &config.regex)?;
        let groups = regex.captures_len() - 1;
        if groups < config.keys.len() {
            // iLogtail would fail on every line.
            return Err(ProcessorError::new(
                "Keys",
                format!(
                    "{} keys for a regex with {groups} capture groups",
                    config.keys.len()
                ),
            ));
        }
        Ok(ProcessorRegex {
            locations: regex.capture_locations(),
            regex,
            keys: config.keys.into_iter().map(Bytes::from).collect(),
            full_match: config.full_match,
            keep_source: config.keep_source,
            keep_source_if_parse_error: config.keep_source_if_parse_error,
            source_key: Bytes::from(config.source_key),
            no_key_error: config.no_key_error,
            parse_failures: 0,
            missing_key: 0,
        })
    }
}

impl Processor for ProcessorRegex {
    fn parse_failures(&self) -> u64 {
        self.parse_failures
    }

    fn process(&mut self, group: &mut PipelineEventGroup) {
        for event in &mut group.events {
            let PipelineEvent::Log(log) = event else {
                continue;
            };
            let found = go_source(log, &self.source_key);
            let Some((key, raw)) = found else {
                if self.no_key_error {
                    self.missing_key += 1;
                }
                continue;
            };
            let matched = self
                .regex
                .captures_read(&mut self.locations, &raw)
                .is_some_and(|m| !self.full_match || (m.start() == 0 && m.end() == raw.len()));
            if !matched {
                self.parse_failures += 1;
            }
            // The source goes before the fields come, so a key named like it stays.
            if !(self.keep_source || (self.keep_source_if_parse_error && !matched)) {
                log.remove_content(&key);
            }
            if matched {
                for (i, key) in self.keys.iter().enumerate() {
                    if let Some((start, end)) = self.locations.get(i + 1) {
                        log.set_content(key.clone(), raw.slice(start..end));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use serde_json::json;

    fn processor(value: serde_json::Value) -> ProcessorRegex {
        ProcessorRegex::new(serde_json::from_value(value).unwrap()).unwrap()
    }

    #[test]
    fn ilogtail_docs_nginx_example() {
        let mut p = processor(json!({
            "SourceKey": "content",
            "Regex": r#"(\S+)\s-\s(\S+)\s\[([^]]+)]\s"(\w+)\s(\S+)\s([^"]+)"\s(\d+)\s(\d+)\s"([^"]+)"\s"([^"]+).*"#,
            "Keys": ["remote_addr", "remote_user", "time_local", "method", "url", "protocol", "status", "body_bytes_sent", "http_referer", "http_user_agent"],
        }));
        let mut group = lines(&[
            br#"127.0.0.1 - - [16/Nov/2022:14:39:59 +0800] "GET /index.html HTTP/1.1" 200 615 "-" "curl/7.79.1" "-""#,
        ]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[
                ("remote_addr", "127.0.0.1"),
                ("remote_user", "-"),
                ("time_local", "16/Nov/2022:14:39:59 +0800"),
                ("method", "GET"),
                ("url", "/index.html"),
                ("protocol", "HTTP/1.1"),
                ("status", "200"),
                ("body_bytes_sent", "615"),
                ("http_referer", "-"),
                ("http_user_agent", "curl/7.79.1"),
            ])
        );
    }

    #[test]
    fn search_full_match_and_source_handling() {
        let mut p = processor(json!({"Regex": r"(\d+)ms", "Keys": ["ms"]}));
        let mut group = lines(&[b"took 12ms total", b"no number"]);
        p.process(&mut group);
        assert_eq!(contents(&group, 0), pairs(&[("ms", "12")]));
        assert_eq!(contents(&group, 1), pairs(&[("content", "no number")]));
        assert_eq!(p.parse_failures, 1);

        let mut full = processor(
            json!({"Regex": r"(\d+)ms", "Keys": ["ms"], "FullMatch": true, "KeepSourceIfParseError": false}),
        );
        let mut group = lines(&[b"took 12ms total", b"12ms"]);
        full.process(&mut group);
        assert!(contents(&group, 0).is_empty());
        assert_eq!(contents(&group, 1), pairs(&[("ms", "12")]));

        let mut keep = processor(
            json!({"Regex": r"(?P<x>a)|(b)", "Keys": ["x", "content"], "KeepSource": true}),
        );
        let mut group = lines(&[b"b"]);
        keep.process(&mut group);
        // Group 1 took no part: no field; the key named like the source replaces it.
        assert_eq!(contents(&group, 0), pairs(&[("content", "b")]));
    }

    #[test]
    fn multiline_values_and_the_first_content_by_default() {
        let mut p = processor(json!({"Regex": r"^(\w+): (.*)$", "Keys": ["level", "msg"]}));
        let mut group = lines(&[b"ERROR: line one\nline two", b"\xff\xfe"]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("level", "ERROR"), ("msg", "line one\nline two")])
        );
        assert_eq!(contents(&group, 1).len(), 1);
    }

    #[test]
    fn bad_options_name_the_field() {
        let err = build(&options(json!({"Regex": "(a)"}))).err().unwrap();
        assert_eq!(err.field, "Keys");
        let err = build(&options(json!({"Regex": "(?<=a)b", "Keys": ["k"]})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Regex");
        let err = build(&options(json!({"Regex": "a", "Keys": ["k"]})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Keys");
    }
}
