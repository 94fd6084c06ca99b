//! `processor_split_char`: splits one field into `SplitKeys` at a single-byte `SplitSep`, as
//! iLogtail's extended processor of that name, optionally honouring a quote byte (`QuoteFlag`,
//! `Quote`: `a,"b,c",d` has three values, `""` inside quotes is one quote). Values beyond the
//! keys go to `_split_preserve_` when `PreserveOthers`. The fields are appended after the
//! log's contents; the source is removed unless `KeepSource` (or `KeepSourceIfParseError` and
//! a quote left open).

use bytes::Bytes;
use serde::Deserialize;

use super::{go_source_index, parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{LogEvent, PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<SplitCharConfig>("processor_split_char", build);

/// Where the values beyond `SplitKeys` go.
pub(super) const PRESERVE_KEY: &str = "_split_preserve_";

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SplitCharConfig {
    /// The quote byte (first byte of the string), used with `QuoteFlag`.
    pub quote: String,
    /// Honour `Quote` (default false).
    pub quote_flag: bool,
    /// The separator: exactly one byte (default a newline).
    pub split_sep: String,
    /// The names of the values, in order.
    pub split_keys: Vec<String>,
    /// The field to split; empty (the default) means the log's first content.
    pub source_key: String,
    /// Keep what is beyond the keys as `_split_preserve_` (default true).
    pub preserve_others: bool,
    /// Warn about logs without the field (default false).
    pub no_key_error: bool,
    /// Warn about values with fewer parts than keys (default false).
    pub no_match_error: bool,
    /// Keep the source field (default false).
    pub keep_source: bool,
    /// Keep the source field when a quote was left open (default true).
    pub keep_source_if_parse_error: bool,
}

impl Default for SplitCharConfig {
    fn default() -> Self {
        SplitCharConfig {
            quote: String::new(),
            quote_flag: false,
            split_sep: "\n".to_owned(),
            split_keys: Vec::new(),
            source_key: String::new(),
            preserve_others: true,
            no_key_error: false,
            no_match_error: false,
            keep_source: false,
            keep_source_if_parse_error: true,
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(SplitChar::new(parse_options(options)?)?))
}

pub struct SplitChar {
    sep: u8,
    /// The quote byte, when quotes are honoured.
    quote: Option<u8>,
    keys: Vec<Bytes>,
    source_key: Bytes,
    preserve_others: bool,
    no_key_error: bool,
    no_match_error: bool,
    keep_source: bool,
    keep_source_if_parse_error: bool,
    /// Logs without the source field.
    pub missing_key: u64,
    /// Values with fewer parts than keys.
    pub short_values: u64,
    /// Values with a quote left open or not followed by the separator.
    pub bad_quotes: u64,
}

impl SplitChar {
    pub fn new(config: SplitCharConfig) -> Result<Self, ProcessorError> {
        let [sep] = config.split_sep.as_bytes() else {
            return Err(ProcessorError::new(
                "SplitSep",
                format!(
                    "{:?}: processor_split_char takes a single-byte separator",
                    config.split_sep
                ),
            ));
        };
        let quote = config
            .quote_flag
            .then(|| config.quote.as_bytes().first().copied().unwrap_or(0));
        Ok(SplitChar {
            sep: *sep,
            quote,
            keys: config.split_keys.into_iter().map(Bytes::from).collect(),
            source_key: Bytes::from(config.source_key),
            preserve_others: config.preserve_others,
            no_key_error: config.no_key_error,
            no_match_error: config.no_match_error,
            keep_source: config.keep_source,
            keep_source_if_parse_error: config.keep_source_if_parse_error,
            missing_key: 0,
            short_values: 0,
            bad_quotes: 0,
        })
    }

    /// Appends the fields of `value` to `log`; false when a quote was not closed properly.
    fn split_value(&mut self, log: &mut LogEvent, value: &Bytes) -> bool {
        let preserve = Bytes::from_static(PRESERVE_KEY.as_bytes());
        if self.keys.is_empty() {
            if self.preserve_others {
                log.contents.push((preserve, value.clone()));
            }
            return true;
        }
        let len = value.len();
        let mut key = 0;
        let mut last = 0;
        match self.quote {
            Some(quote) => {
                let mut i = 0;
                while key < self.keys.len() && i < len {
                    if value[i] == self.sep {
                        log.contents.push((self.keys[key].clone(), Bytes::new()));
                        last = i + 1;
                        i += 1;
                    } else if value[i] == quote {
                        i += 1;
                        let mut unquoted = Vec::new();
                        while i < len {
                            if value[i] == quote {
                                if i == len - 1 || value[i + 1] == self.sep {
                                    log.contents
                                        .push((self.keys[key].clone(), Bytes::from(unquoted)));
                                    last = i + 2;
                                    i += 2;
                                    break;
                                }
                                if value[i + 1] != quote {
                                    self.bad_quotes += 1;
                                    return false;
                                }
                                i += 1;
                            }
                            unquoted.push(value[i]);
                            i += 1;
                        }
                    } else {
                        match memchr::memchr(self.sep, &value[i..]) {
                            Some(n) => {
                                log.contents
                                    .push((self.keys[key].clone(), value.slice(i..i + n)));
                                last = i + n + 1;
                                i = last;
                            }
                            None => break,
                        }
                    }
                    key += 1;
                }
                if key >= self.keys.len() && last < len && self.preserve_others {
                    log.contents.push((preserve, value.slice(last..)));
                    last = len;
                }
            }
            None => {
                for i in memchr::memchr_iter(self.sep, value) {
                    log.contents
                        .push((self.keys[key].clone(), value.slice(last..i)));
                    key += 1;
                    last = i + 1;
                    if key >= self.keys.len() {
                        if i != len - 1 && self.preserve_others {
                            log.contents.push((preserve, value.slice(i + 1..)));
                        }
                        break;
                    }
                }
            }
        }
        if key < self.keys.len() && last < len {
            log.contents
                .push((self.keys[key].clone(), value.slice(last.min(len)..)));
            key += 1;
        }
        if key < self.keys.len() {
            self.short_values += 1;
            if self.no_match_error && self.short_values.is_power_of_two() {
                tracing::warn!(
                    processor = REGISTRATION.name,
                    values = self.short_values,
                    "values with fewer parts than SplitKeys"
                );
            }
        }
        true
    }
}

impl Processor for SplitChar {
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
            let value = log.contents[at].1.clone();
            let ok = self.split_value(log, &value);
            if !(self.keep_source || (self.keep_source_if_parse_error && !ok)) {
                log.contents.remove(at);
            }
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
    fn splits_into_keys_and_preserves_the_rest() {
        assert_eq!(
            split(
                json!({"SplitSep": ",", "SplitKeys": ["a", "b"]}),
                b"1,2,3,4"
            ),
            pairs(&[("a", "1"), ("b", "2"), ("_split_preserve_", "3,4")])
        );
        assert_eq!(
            split(
                json!({"SplitSep": ",", "SplitKeys": ["a", "b", "c"], "KeepSource": true}),
                b"1,2"
            ),
            pairs(&[("content", "1,2"), ("a", "1"), ("b", "2")])
        );
        assert_eq!(
            split(
                json!({"SplitSep": "|", "SplitKeys": ["a"], "PreserveOthers": false}),
                b"x|y"
            ),
            pairs(&[("a", "x")])
        );
    }

    #[test]
    fn quotes_hold_separators_and_escaped_quotes() {
        let opts = json!({"SplitSep": ",", "SplitKeys": ["a", "b", "c"], "Quote": "\"", "QuoteFlag": true});
        assert_eq!(
            split(opts.clone(), br#"x,"y,""z""",w"#),
            pairs(&[("a", "x"), ("b", r#"y,"z""#), ("c", "w")])
        );
        // A quote followed by something else: the source stays (KeepSourceIfParseError).
        let kept = split(opts, br#""a"b,c"#);
        assert_eq!(kept, pairs(&[("content", r#""a"b,c"#)]));
    }

    #[test]
    fn bad_separator_is_an_error() {
        let err = build(&options(json!({"SplitSep": "ab"}))).err().unwrap();
        assert_eq!(err.field, "SplitSep");
        let err = build(&options(json!({"SplitSep": ""}))).err().unwrap();
        assert_eq!(err.field, "SplitSep");
    }
}
