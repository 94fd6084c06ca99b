//! `processor_split_string`: splits one field into `SplitKeys` at a multi-byte `SplitSep`, as
//! iLogtail's extended processor of that name. What is beyond the keys goes to
//! `_split_preserve_` when `PreserveOthers`, or, with `ExpandOthers`, to one field per part
//! (`ExpandKeyPrefix` + 1, 2, ...). The source is removed unless `KeepSource`; the fields are
//! appended after the log's other contents.

use bytes::Bytes;
use memchr::memmem;
use serde::Deserialize;

use super::split_char::PRESERVE_KEY;
use super::{go_source_index, parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{LogEvent, PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<SplitStringConfig>("processor_split_string", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SplitStringConfig {
    /// The separator (default a newline; must not be empty).
    pub split_sep: String,
    /// The names of the parts, in order.
    pub split_keys: Vec<String>,
    /// The field to split; empty (the default) means the log's first content.
    pub source_key: String,
    /// Keep what is beyond the keys (default true).
    pub preserve_others: bool,
    /// Keep it as one field per part rather than one `_split_preserve_` (default false).
    pub expand_others: bool,
    /// The prefix of those fields' keys (default none: `1`, `2`, ...).
    pub expand_key_prefix: String,
    /// Warn about logs without the field (default false).
    pub no_key_error: bool,
    /// Warn about values with fewer parts than keys (default false).
    pub no_match_error: bool,
    /// Keep the source field (default false).
    pub keep_source: bool,
}

impl Default for SplitStringConfig {
    fn default() -> Self {
        SplitStringConfig {
            split_sep: "\n".to_owned(),
            split_keys: Vec::new(),
            source_key: String::new(),
            preserve_others: true,
            expand_others: false,
            expand_key_prefix: String::new(),
            no_key_error: false,
            no_match_error: false,
            keep_source: false,
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(SplitString::new(parse_options(options)?)?))
}

pub struct SplitString {
    sep: memmem::Finder<'static>,
    keys: Vec<Bytes>,
    source_key: Bytes,
    preserve_others: bool,
    expand_others: bool,
    expand_key_prefix: String,
    no_key_error: bool,
    no_match_error: bool,
    keep_source: bool,
    /// Logs without the source field.
    pub missing_key: u64,
    /// Values with fewer parts than keys.
    pub short_values: u64,
}

impl SplitString {
    pub fn new(config: SplitStringConfig) -> Result<Self, ProcessorError> {
        if config.split_sep.is_empty() {
            return Err(ProcessorError::new(
                "SplitSep",
                "must not be empty: the separator between the parts",
            ));
        }
        Ok(SplitString {
            sep: memmem::Finder::new(config.split_sep.as_bytes()).into_owned(),
            keys: config.split_keys.into_iter().map(Bytes::from).collect(),
            source_key: Bytes::from(config.source_key),
            preserve_others: config.preserve_others,
            expand_others: config.expand_others,
            expand_key_prefix: config.expand_key_prefix,
            no_key_error: config.no_key_error,
            no_match_error: config.no_match_error,
            keep_source: config.keep_source,
            missing_key: 0,
            short_values: 0,
        })
    }

    /// The parts of `value`: at most `limit` (the last one holds the rest).
    fn parts(&self, value: &Bytes, limit: usize) -> Vec<Bytes> {
        let width = self.sep.needle().len();
        let mut parts = Vec::new();
        let mut start = 0;
        for at in self.sep.find_iter(value) {
            if parts.len() + 1 >= limit {
                break;
            }
            parts.push(value.slice(start..at));
            start = at + width;
        }
        parts.push(value.slice(start..));
        parts
    }

    fn expanded_key(&self, n: usize) -> Bytes {
        Bytes::from(format!("{}{n}", self.expand_key_prefix))
    }

    fn split_value(&mut self, log: &mut LogEvent, value: &Bytes) {
        if self.keys.is_empty() {
            if self.preserve_others {
                if self.expand_others {
                    for (i, part) in self.parts(value, usize::MAX).into_iter().enumerate() {
                        log.contents.push((self.expanded_key(i + 1), part));
                    }
                } else {
                    log.contents
                        .push((Bytes::from_static(PRESERVE_KEY.as_bytes()), value.clone()));
                }
            }
            return;
        }
        let limit = if self.expand_others {
            usize::MAX
        } else {
            self.keys.len() + 1
        };
        let parts = self.parts(value, limit);
        if parts.len() < self.keys.len() {
            self.short_values += 1;
            if self.no_match_error && self.short_values.is_power_of_two() {
                tracing::warn!(
                    processor = REGISTRATION.name,
                    values = self.short_values,
                    "values with fewer parts than SplitKeys"
                );
            }
        }
        let keyed = parts.len().min(self.keys.len());
        for (key, part) in self.keys.iter().zip(&parts) {
            log.contents.push((key.clone(), part.clone()));
        }
        if parts.len() > keyed && self.preserve_others {
            if self.expand_others {
                for (i, part) in parts[keyed..].iter().enumerate() {
                    log.contents.push((self.expanded_key(i + 1), part.clone()));
                }
            } else {
                log.contents.push((
                    Bytes::from_static(PRESERVE_KEY.as_bytes()),
                    parts[keyed].clone(),
                ));
            }
        }
    }
}

impl Processor for SplitString {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        for event in &mut group.events {
            let PipelineEvent::Log(log) = event else {
                continue;
            };
            let Some(at) = go_source_index(
                log,
                &self.source_key,
                &mut self.missing_key,
                self.no_key_error,
                REGISTRATION.name,
            ) else {
                continue;
            };
            let value = if self.keep_source {
                log.contents[at].1.clone()
            } else {
                log.contents.remove(at).1
            };
            self.split_value(log, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::test_support::{contents, options, pairs, processed};
    use serde_json::json;

    fn split(opts: serde_json::Value, value: &[u8]) -> Vec<(String, String)> {
        contents(&processed(build, opts, value), 0)
    }

    #[test]
    fn keys_then_the_rest() {
        assert_eq!(
            split(
                json!({"SplitSep": "::", "SplitKeys": ["a", "b"]}),
                b"1::2::3::4"
            ),
            pairs(&[("a", "1"), ("b", "2"), ("_split_preserve_", "3::4")])
        );
        assert_eq!(
            split(
                json!({"SplitSep": "::", "SplitKeys": ["a"], "ExpandOthers": true, "ExpandKeyPrefix": "x_"}),
                b"1::2::3"
            ),
            pairs(&[("a", "1"), ("x_1", "2"), ("x_2", "3")])
        );
        assert_eq!(
            split(
                json!({"SplitSep": "::", "SplitKeys": ["a", "b", "c"], "KeepSource": true}),
                b"1::2"
            ),
            pairs(&[("content", "1::2"), ("a", "1"), ("b", "2")])
        );
    }

    #[test]
    fn no_keys_preserves_or_expands_everything() {
        assert_eq!(
            split(json!({"SplitSep": ","}), b"a,b"),
            pairs(&[("_split_preserve_", "a,b")])
        );
        assert_eq!(
            split(json!({"SplitSep": ",", "ExpandOthers": true}), b"a,b"),
            pairs(&[("1", "a"), ("2", "b")])
        );
    }

    #[test]
    fn empty_separator_is_an_error() {
        let err = build(&options(json!({"SplitSep": ""}))).err().unwrap();
        assert_eq!(err.field, "SplitSep");
    }
}
