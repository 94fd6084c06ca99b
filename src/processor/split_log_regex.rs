//! `processor_split_log_regex`: cuts one field (a raw block read from a file, or any log's
//! field) into multi-line logs, as iLogtail's extended processor of that name: a line that
//! matches `SplitRegex` as a whole starts a log, the lines after it up to the next such line
//! belong to it. Lines before the first matching line form a log of their own. The newline
//! before a starting line is not part of the previous log; the value's last log keeps what
//! ends it.
//!
//! As the first processor of a file pipeline it receives whole blocks (see
//! [`super::whole_block`]); the reader then holds a block's last log back until the next one
//! starts, so that a Java stack trace straddling two reads stays one log.

use serde::Deserialize;

use super::whole_block::{BlockRule, FieldSplitter, LineMatcher};
use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<SplitLogRegexConfig>("processor_split_log_regex", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SplitLogRegexConfig {
    /// The field to split; empty (the default) means the log's first content.
    pub split_key: String,
    /// A line that matches it as a whole starts a log (Go's RE2 syntax; default `.*`: every
    /// line is a log).
    pub split_regex: String,
    /// Keep the log's other contents in each piece (default false).
    pub preserve_others: bool,
    /// Warn about logs without the field (default false).
    pub no_key_error: bool,
    /// Move `__file_offset__` to each piece's offset (default false).
    pub enable_log_position_meta: bool,
}

impl Default for SplitLogRegexConfig {
    fn default() -> Self {
        SplitLogRegexConfig {
            split_key: String::new(),
            split_regex: ".*".to_owned(),
            preserve_others: false,
            no_key_error: false,
            enable_log_position_meta: false,
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(SplitLogRegex::new(parse_options(options)?)?))
}

/// The reader holds back the last log of a block: it may go on in the next read.
pub(super) fn block_rule(options: &Options) -> Result<BlockRule, ProcessorError> {
    let config: SplitLogRegexConfig = parse_options(options)?;
    Ok(BlockRule::EventStart(LineMatcher::go(
        "SplitRegex",
        &config.split_regex,
    )?))
}

pub struct SplitLogRegex {
    starts: LineMatcher,
    splitter: FieldSplitter,
}

impl SplitLogRegex {
    pub fn new(config: SplitLogRegexConfig) -> Result<Self, ProcessorError> {
        Ok(SplitLogRegex {
            starts: LineMatcher::go("SplitRegex", &config.split_regex)?,
            splitter: FieldSplitter::new(
                REGISTRATION.name,
                config.split_key,
                config.preserve_others,
                config.no_key_error,
                config.enable_log_position_meta,
            ),
        })
    }
}

/// The ranges of `value` that are logs: iLogtail's line grouping.
fn cut(starts: &LineMatcher, value: &[u8], out: &mut Vec<std::ops::Range<usize>>) {
    // Start of the log being gathered, and of the line being looked at.
    let mut log_start = 0;
    let mut line_start = 0;
    for newline in memchr::memchr_iter(b'\n', value) {
        // The first line starts the first log whether it matches or not.
        if line_start != 0 && starts.matches(&value[line_start..newline]) {
            out.push(log_start..line_start - 1);
            log_start = line_start;
        }
        line_start = newline + 1;
    }
    // A last line without newline.
    if line_start != 0 && line_start < value.len() && starts.matches(&value[line_start..]) {
        out.push(log_start..line_start - 1);
        log_start = line_start;
    }
    if log_start < value.len() {
        out.push(log_start..value.len());
    }
}

impl Processor for SplitLogRegex {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        let starts = &self.starts;
        self.splitter
            .split(group, |value, out| cut(starts, value, out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::test_support::{contents, options, pairs, processed};
    use crate::PipelineEvent;
    use serde_json::json;

    fn values(group: &PipelineEventGroup, key: &str) -> Vec<String> {
        (0..group.len())
            .map(|i| {
                contents(group, i)
                    .into_iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .unwrap_or_default()
            })
            .collect()
    }

    const JAVA: &str = "2024-05-01 10:00:00.123 ERROR [main] c.e.App - request failed\n\
java.lang.IllegalStateException: boom\n\
\tat com.example.App.handle(App.java:42)\n\
\tat com.example.App.main(App.java:10)\n\
Caused by: java.io.IOException: disk full\n\
\t... 2 more\n\
2024-05-01 10:00:01.000 INFO [main] c.e.App - recovered\n\
2024-05-01 10:00:02.000 WARN [pool-1] c.e.Job - slow\n\
\tat com.example.Job.run(Job.java:7)";

    #[test]
    fn java_stack_traces_become_one_log_each() {
        let group = processed(
            build,
            json!({"SplitRegex": r"\d{4}-\d{2}-\d{2}.*"}),
            JAVA.as_bytes(),
        );
        let logs = values(&group, "content");
        assert_eq!(logs.len(), 3, "{logs:?}");
        assert!(logs[0].starts_with("2024-05-01 10:00:00.123 ERROR"));
        assert!(
            logs[0].ends_with("\t... 2 more"),
            "no trailing newline: {:?}",
            logs[0]
        );
        assert_eq!(logs[0].lines().count(), 6);
        assert_eq!(
            logs[1],
            "2024-05-01 10:00:01.000 INFO [main] c.e.App - recovered"
        );
        assert_eq!(
            logs[2],
            "2024-05-01 10:00:02.000 WARN [pool-1] c.e.Job - slow\n\tat com.example.Job.run(Job.java:7)"
        );
        // Nothing lost, nothing added: the logs and the newlines between them are the input.
        assert_eq!(logs.join("\n"), JAVA);
    }

    #[test]
    fn ilogtail_grouping_cases() {
        let cases: &[(&str, &str, &[&str])] = &[
            // Default: every line; a final newline stays with the last log.
            (".*", "xxxx\nyyyy\nzzzz\n", &["xxxx", "yyyy", "zzzz\n"]),
            (".*", "\nxxxx\nyyyy", &["", "xxxx", "yyyy"]),
            (
                r"\[.*",
                "[2017-12-12 00:00:00] a\nhello\n\n[2017xxxxxx]yyyy\n [zzzz\n[",
                &[
                    "[2017-12-12 00:00:00] a\nhello\n",
                    "[2017xxxxxx]yyyy\n [zzzz",
                    "[",
                ],
            ),
            (r"\[.*", "[2017] x\n", &["[2017] x\n"]),
            (r"\[.*", "xx\nyy\nzz", &["xx\nyy\nzz"]),
        ];
        for (regex, input, expected) in cases {
            let group = processed(build, json!({"SplitRegex": regex}), input.as_bytes());
            assert_eq!(values(&group, "content"), *expected, "{regex} on {input:?}");
        }
    }

    #[test]
    fn preserve_others_keeps_the_other_fields_before_the_piece() {
        let mut p = build(&options(json!({
            "SplitRegex": r"\S+.*", "SplitKey": "content", "PreserveOthers": true
        })))
        .unwrap();
        let mut log = crate::LogEvent::new(7, None);
        log.set_content("p1", "1");
        log.set_content("content", "[a] x\n  more\n[b] y");
        log.set_content("p2", "2");
        let mut group = PipelineEventGroup::default();
        group.events.push(PipelineEvent::Log(log));
        p.process(&mut group);
        assert_eq!(group.len(), 2);
        assert_eq!(
            contents(&group, 1),
            pairs(&[("p1", "1"), ("p2", "2"), ("content", "[b] y")])
        );
        let PipelineEvent::Log(first) = &group.events[0] else {
            panic!()
        };
        assert_eq!(first.time, 7, "the log's time is kept");
    }

    #[test]
    fn a_missing_key_drops_the_log_unless_others_are_preserved() {
        let dropped = processed(
            build,
            json!({"SplitKey": "nope", "NoKeyError": true}),
            b"a\nb",
        );
        assert!(dropped.is_empty());
        let kept = processed(
            build,
            json!({"SplitKey": "nope", "PreserveOthers": true}),
            b"a\nb",
        );
        assert_eq!(contents(&kept, 0), pairs(&[("content", "a\nb")]));
    }

    #[test]
    fn positions_and_file_offsets_follow_the_pieces() {
        let mut p = build(&options(json!({
            "SplitRegex": r"\[.*", "EnableLogPositionMeta": true, "PreserveOthers": true
        })))
        .unwrap();
        let mut log = crate::LogEvent::new(1, None);
        log.set_content("content", "[1] a\nb\n[2] c\n[3] d");
        log.set_content("__file_offset__", "1000");
        log.position = Some((1000, 19));
        let mut group = PipelineEventGroup::default();
        group.events.push(PipelineEvent::Log(log));
        p.process(&mut group);
        assert_eq!(values(&group, "__file_offset__"), ["1000", "1008", "1014"]);
        let positions: Vec<_> = group
            .events
            .iter()
            .map(|e| match e {
                PipelineEvent::Log(l) => l.position.unwrap(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(positions, [(1000, 7), (1008, 5), (1014, 5)]);
    }

    #[test]
    fn bad_options_name_the_field() {
        let err = build(&options(json!({"SplitRegex": "(unclosed"})))
            .err()
            .unwrap();
        assert_eq!(err.field, "SplitRegex");
        let err = build(&options(json!({"PreserveOthers": "yes"})))
            .err()
            .unwrap();
        assert!(err.to_string().contains("PreserveOthers"), "{err}");
    }
}
