//! `processor_split_key_value`: splits one content into key/value fields, as iLogtail's
//! extended processor of that name: pairs are separated by `Delimiter` (default tab), a key from
//! its value by the first `Separator` (default `:`). A pair without a separator becomes
//! `no_separator_key_<i>` (unless `DiscardWhenSeparatorNotFound`), an empty key
//! `empty_key_<i>`. Keys and values are views into the source value.
//!
//! Not implemented yet: the newer `Quote` option (values in quotes spanning delimiters); a
//! config that sets it is rejected rather than split differently.

use crate::processor::go_source;
use bytes::Bytes;
use memchr::memmem;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<SplitKeyValueConfig>("processor_split_key_value", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SplitKeyValueConfig {
    /// The content to split; empty (the default) means the log's first content.
    pub source_key: String,
    /// Between pairs (default a tab).
    pub delimiter: String,
    /// Between a key and its value (default `:`).
    pub separator: String,
    /// Keep the source content (default true).
    pub keep_source: bool,
    /// The key prefix of pairs with an empty key (default `empty_key_`).
    pub empty_key_prefix: String,
    /// The key prefix of pairs without a separator (default `no_separator_key_`).
    pub no_separator_key_prefix: String,
    /// Drop pairs without a separator (default false).
    pub discard_when_separator_not_found: bool,
    /// Report logs without the source content (default true; Tailrace counts them).
    pub err_if_source_key_not_found: bool,
    /// Report pairs without a separator (default true; Tailrace does not report them).
    pub err_if_separator_not_found: bool,
    /// Report pairs with an empty key (default true; Tailrace does not report them).
    pub err_if_key_is_empty: bool,
    /// Not implemented yet: an error when set.
    pub quote: String,
}

impl Default for SplitKeyValueConfig {
    fn default() -> Self {
        SplitKeyValueConfig {
            source_key: String::new(),
            delimiter: "\t".to_owned(),
            separator: ":".to_owned(),
            keep_source: true,
            empty_key_prefix: "empty_key_".to_owned(),
            no_separator_key_prefix: "no_separator_key_".to_owned(),
            discard_when_separator_not_found: false,
            err_if_source_key_not_found: true,
            err_if_separator_not_found: true,
            err_if_key_is_empty: true,
            quote: String::new(),
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(SplitKeyValue::new(parse_options(options)?)?))
}

pub struct SplitKeyValue {
    source_key: Bytes,
    delimiter: memmem::Finder<'static>,
    separator: memmem::Finder<'static>,
    keep_source: bool,
    empty_key_prefix: String,
    no_separator_key_prefix: String,
    discard_no_separator: bool,
    count_missing: bool,
    /// Logs without the source content.
    pub missing_key: u64,
}

impl SplitKeyValue {
    pub fn new(config: SplitKeyValueConfig) -> Result<Self, ProcessorError> {
        if !config.quote.is_empty() {
            return Err(ProcessorError::new(
                "Quote",
                "quoted values are not implemented yet",
            ));
        }
        // As in iLogtail, an empty option means its default.
        let or = |value: String, default: &str| {
            if value.is_empty() {
                default.to_owned()
            } else {
                value
            }
        };
        let delimiter = or(config.delimiter, "\t");
        let separator = or(config.separator, ":");
        Ok(SplitKeyValue {
            source_key: Bytes::from(config.source_key),
            delimiter: memmem::Finder::new(delimiter.as_bytes()).into_owned(),
            separator: memmem::Finder::new(separator.as_bytes()).into_owned(),
            keep_source: config.keep_source,
            empty_key_prefix: or(config.empty_key_prefix, "empty_key_"),
            no_separator_key_prefix: or(config.no_separator_key_prefix, "no_separator_key_"),
            discard_no_separator: config.discard_when_separator_not_found,
            count_missing: config.err_if_source_key_not_found,
            missing_key: 0,
        })
    }
}

impl Processor for SplitKeyValue {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        for event in &mut group.events {
            let PipelineEvent::Log(log) = event else {
                continue;
            };
            let found = go_source(log, &self.source_key);
            let Some((key, value)) = found else {
                if self.count_missing {
                    self.missing_key += 1;
                }
                continue;
            };
            if !self.keep_source {
                log.remove_content(&key);
            }
            let (mut empty_keys, mut no_separator) = (0, 0);
            let delimiter_len = self.delimiter.needle().len();
            let separator_len = self.separator.needle().len();
            let mut start = 0;
            loop {
                let end = self
                    .delimiter
                    .find(&value[start..])
                    .map_or(value.len(), |i| start + i);
                let pair = &value[start..end];
                match self.separator.find(pair) {
                    None if self.discard_no_separator => {}
                    None => {
                        let key = format!("{}{no_separator}", self.no_separator_key_prefix);
                        no_separator += 1;
                        log.set_content(Bytes::from(key), value.slice(start..end));
                    }
                    Some(at) => {
                        let key = if at == 0 {
                            empty_keys += 1;
                            Bytes::from(format!("{}{}", self.empty_key_prefix, empty_keys - 1))
                        } else {
                            value.slice(start..start + at)
                        };
                        log.set_content(key, value.slice(start + at + separator_len..end));
                    }
                }
                if end == value.len() {
                    break;
                }
                start = end + delimiter_len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use serde_json::json;

    fn run(config: serde_json::Value, line: &[u8]) -> Vec<(String, String)> {
        let mut p = build(&options(config)).unwrap();
        let mut group = lines(&[line]);
        p.process(&mut group);
        contents(&group, 0)
    }

    #[test]
    fn ilogtail_docs_example() {
        assert_eq!(
            run(
                json!({"SourceKey": "content", "Delimiter": "\t", "Separator": ":", "KeepSource": false}),
                b"class:main\tuserid:123456\tmethod:get\tmessage:\"wrong user\""
            ),
            pairs(&[
                ("class", "main"),
                ("userid", "123456"),
                ("method", "get"),
                ("message", "\"wrong user\""),
            ])
        );
    }

    #[test]
    fn missing_separators_empty_keys_and_the_source() {
        assert_eq!(
            run(
                json!({"SourceKey": "content", "Delimiter": " ", "Separator": "="}),
                b"a=1 lonely =2 b=x=y"
            ),
            pairs(&[
                ("content", "a=1 lonely =2 b=x=y"),
                ("a", "1"),
                ("no_separator_key_0", "lonely"),
                ("empty_key_0", "2"),
                ("b", "x=y"),
            ])
        );
        assert_eq!(
            run(
                json!({"Delimiter": " ", "Separator": "=", "DiscardWhenSeparatorNotFound": true, "KeepSource": false}),
                b"a=1 lonely \xff=\xfe"
            ),
            pairs(&[("a", "1"), ("\u{fffd}", "\u{fffd}")])
        );
        let err = build(&options(json!({"Quote": "\""}))).err().unwrap();
        assert_eq!(err.field, "Quote");
    }
}
