//! `processor_split_log_string`: cuts one field (a raw block read from a file, or any log's
//! field) into logs at each `SplitSep`, as iLogtail's extended processor of that name. Empty
//! pieces are dropped. iLogtail 1.x put this processor first when a file pipeline had plugin
//! processors and no splitter, which is why its default cuts lines.
//!
//! As the first processor of a file pipeline it receives whole blocks (see
//! [`super::whole_block`]), which the reader ends after the last separator.

use bytes::Bytes;
use memchr::memmem;
use serde::Deserialize;

use super::whole_block::{BlockRule, FieldSplitter};
use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<SplitLogStringConfig>("processor_split_log_string", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SplitLogStringConfig {
    /// The field to split; empty (the default) means the log's first content.
    pub split_key: String,
    /// Between logs (default a newline; empty means `\0`, as in iLogtail).
    pub split_sep: String,
    /// Keep the log's other contents in each piece (default true).
    pub preserve_others: bool,
    /// Warn about logs without the field (default false).
    pub no_key_error: bool,
    /// Move `__file_offset__` to each piece's offset (default false).
    pub enable_log_position_meta: bool,
}

impl Default for SplitLogStringConfig {
    fn default() -> Self {
        SplitLogStringConfig {
            split_key: String::new(),
            split_sep: "\n".to_owned(),
            preserve_others: true,
            no_key_error: false,
            enable_log_position_meta: false,
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(SplitLogString::new(parse_options(options)?)))
}

/// The separator an option gives: empty means `\0` (iLogtail's).
fn separator(config: &SplitLogStringConfig) -> Bytes {
    if config.split_sep.is_empty() {
        Bytes::from_static(b"\0")
    } else {
        Bytes::from(config.split_sep.clone())
    }
}

/// The reader ends a block after the last separator.
pub(super) fn block_rule(options: &Options) -> Result<BlockRule, ProcessorError> {
    let config: SplitLogStringConfig = parse_options(options)?;
    Ok(BlockRule::Separator(separator(&config)))
}

pub struct SplitLogString {
    separator: memmem::Finder<'static>,
    splitter: FieldSplitter,
}

impl SplitLogString {
    pub fn new(config: SplitLogStringConfig) -> Self {
        SplitLogString {
            separator: memmem::Finder::new(&separator(&config)[..]).into_owned(),
            splitter: FieldSplitter::new(
                REGISTRATION.name,
                config.split_key,
                config.preserve_others,
                config.no_key_error,
                config.enable_log_position_meta,
            ),
        }
    }
}

impl Processor for SplitLogString {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        let separator = &self.separator;
        let width = separator.needle().len();
        self.splitter.split(group, |value, out| {
            let mut start = 0;
            for at in separator.find_iter(value) {
                if at > start {
                    out.push(start..at);
                }
                start = at + width;
            }
            if start < value.len() {
                out.push(start..value.len());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::test_support::{contents, options, pairs, processed};
    use crate::PipelineEvent;
    use serde_json::json;

    fn split(opts: serde_json::Value, value: &[u8]) -> Vec<Vec<(String, String)>> {
        let group = processed(build, opts, value);
        (0..group.len()).map(|i| contents(&group, i)).collect()
    }

    #[test]
    fn default_cuts_lines_and_drops_empty_ones() {
        assert_eq!(
            split(json!({}), b"a\n\nbb\nc\n"),
            vec![
                pairs(&[("content", "a")]),
                pairs(&[("content", "bb")]),
                pairs(&[("content", "c")])
            ]
        );
    }

    #[test]
    fn custom_and_empty_separators() {
        assert_eq!(
            split(json!({"SplitSep": "|#|"}), b"x\ny|#|z"),
            vec![pairs(&[("content", "x\ny")]), pairs(&[("content", "z")])]
        );
        // Empty: iLogtail's NUL.
        assert_eq!(
            split(json!({"SplitSep": ""}), b"a\0b\0"),
            vec![pairs(&[("content", "a")]), pairs(&[("content", "b")])]
        );
    }

    #[test]
    fn split_key_and_others() {
        let mut p = build(&options(
            json!({"SplitKey": "body", "PreserveOthers": false}),
        ))
        .unwrap();
        let mut log = crate::LogEvent::new(3, Some(9));
        log.set_content("host", "h");
        log.set_content("body", "1\n2");
        let mut group = PipelineEventGroup::default();
        group.events.push(PipelineEvent::Log(log));
        p.process(&mut group);
        assert_eq!(contents(&group, 0), pairs(&[("body", "1")]));
        assert_eq!(contents(&group, 1), pairs(&[("body", "2")]));
        let PipelineEvent::Log(second) = &group.events[1] else {
            panic!()
        };
        assert_eq!((second.time, second.time_ns), (3, Some(9)));
        // Without the key, the log stays (PreserveOthers is true by default).
        assert_eq!(
            split(json!({"SplitKey": "nope", "NoKeyError": true}), b"a\nb"),
            vec![pairs(&[("content", "a\nb")])]
        );
    }

    #[test]
    fn block_rule_ends_after_the_separator() {
        let rule = block_rule(&options(json!({"SplitSep": "||"}))).unwrap();
        assert_eq!(rule.cut(b"a||b||c", 0), Some(6));
    }
}
