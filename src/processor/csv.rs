//! `processor_csv`: decodes one content as a CSV record into `SplitKeys`, as iLogtail's
//! extended processor of that name, with Go's `encoding/csv` rules: fields may be quoted
//! (`""` is a quote inside), a quoted field may span lines, a bare quote in an unquoted field
//! or text after a closing quote is an error (the log is left as it is), blank lines before the
//! record are skipped and only the first record counts. Fields beyond the keys are dropped, or
//! kept with `PreserveOthers`: as one CSV text under `_decode_preserve_`, or one by one under
//! `ExpandKeyPrefix<i>` with `ExpandOthers`.

use crate::processor::go_source;
use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration = Registration::new::<CsvConfig>("processor_csv", build);

/// The key of the fields beyond `SplitKeys`, with `PreserveOthers`.
const PRESERVE_KEY: &[u8] = b"_decode_preserve_";

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CsvConfig {
    /// The content to decode; empty (the default) means the log's first content.
    pub source_key: String,
    /// Report logs without the source content (default false; Tailrace counts them).
    pub no_key_error: bool,
    /// The names of the fields, in order.
    pub split_keys: Vec<String>,
    /// The separator, one character (default `,`).
    pub split_sep: String,
    /// Ignore spaces at the start of fields (default false).
    pub trim_leading_space: bool,
    /// Keep the fields beyond `SplitKeys` (default false).
    pub preserve_others: bool,
    /// Keep them one by one, under `ExpandKeyPrefix<i>` (default false).
    pub expand_others: bool,
    /// The key prefix of expanded fields.
    pub expand_key_prefix: String,
    /// Keep the source content after a successful decode (default false).
    pub keep_source: bool,
}

impl Default for CsvConfig {
    fn default() -> Self {
        CsvConfig {
            source_key: String::new(),
            no_key_error: false,
            split_keys: Vec::new(),
            split_sep: ",".to_owned(),
            trim_leading_space: false,
            preserve_others: false,
            expand_others: false,
            expand_key_prefix: String::new(),
            keep_source: false,
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(Csv::new(parse_options(options)?)?))
}

pub struct Csv {
    source_key: Bytes,
    keys: Vec<Bytes>,
    sep: char,
    trim_leading_space: bool,
    preserve_others: bool,
    expand_others: bool,
    expand_key_prefix: String,
    keep_source: bool,
    count_missing: bool,
    /// Values that were not valid CSV.
    pub decode_failures: u64,
    /// Logs without the source content (with `NoKeyError`).
    pub missing_key: u64,
}

impl Csv {
    pub fn new(config: CsvConfig) -> Result<Self, ProcessorError> {
        let mut chars = config.split_sep.chars();
        let sep = match (chars.next(), chars.next()) {
            (Some(c), None) if !matches!(c, '"' | '\r' | '\n' | '\u{fffd}') => c,
            _ => {
                return Err(ProcessorError::new(
                    "SplitSep",
                    format!(
                        "{:?}: expected one character, not a quote or newline",
                        config.split_sep
                    ),
                ))
            }
        };
        Ok(Csv {
            source_key: Bytes::from(config.source_key),
            keys: config.split_keys.into_iter().map(Bytes::from).collect(),
            sep,
            trim_leading_space: config.trim_leading_space,
            preserve_others: config.preserve_others,
            expand_others: config.expand_others,
            expand_key_prefix: config.expand_key_prefix,
            keep_source: config.keep_source,
            count_missing: config.no_key_error,
            decode_failures: 0,
            missing_key: 0,
        })
    }

    /// Decodes `value` into `log`; false when it is not valid CSV.
    fn decode(&self, log: &mut crate::LogEvent, value: &[u8]) -> bool {
        if self.keys.is_empty() {
            if self.preserve_others {
                log.set_content(
                    Bytes::from_static(PRESERVE_KEY),
                    Bytes::copy_from_slice(value),
                );
            }
            return true;
        }
        let text = String::from_utf8_lossy(value);
        let Some(record) = first_record(&text, self.sep, self.trim_leading_space) else {
            return false;
        };
        for (key, field) in self.keys.iter().zip(&record) {
            log.set_content(key.clone(), Bytes::from(field.clone()));
        }
        if record.len() > self.keys.len() && self.preserve_others {
            let rest = &record[self.keys.len()..];
            if self.expand_others {
                for (i, field) in rest.iter().enumerate() {
                    let key = format!("{}{}", self.expand_key_prefix, i + 1);
                    log.set_content(Bytes::from(key), Bytes::from(field.clone()));
                }
            } else {
                log.set_content(
                    Bytes::from_static(PRESERVE_KEY),
                    Bytes::from(write_record(rest, self.sep)),
                );
            }
        }
        true
    }
}

impl Processor for Csv {
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
            // The source goes first, so that a field named like it stays.
            let position = log.contents.iter().position(|(k, _)| *k == key);
            let removed = position.map(|i| log.contents.remove(i));
            let ok = self.decode(log, &value);
            if !ok {
                self.decode_failures += 1;
            }
            if (self.keep_source || !ok) && !log.has_content(&key) {
                if let (Some(i), Some(pair)) = (position, removed) {
                    log.contents.insert(i.min(log.contents.len()), pair);
                }
            }
        }
    }
}

/// The first record of `text` by Go's `encoding/csv` reader rules; `None` on a quote error.
pub(super) fn first_record(text: &str, sep: char, trim_leading_space: bool) -> Option<Vec<String>> {
    let text = text.replace("\r\n", "\n");
    let mut rest = text.trim_start_matches('\n');
    if rest.is_empty() {
        // Go reports EOF, which iLogtail reads as one empty field.
        return Some(vec![String::new()]);
    }
    let mut record = Vec::new();
    loop {
        if trim_leading_space {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() && c != '\n');
        }
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut chars = quoted.char_indices();
            let after = loop {
                match chars.next() {
                    None => return None,
                    Some((i, '"')) => {
                        if quoted[i + 1..].starts_with('"') {
                            field.push('"');
                            chars.next();
                        } else {
                            break &quoted[i + 1..];
                        }
                    }
                    Some((_, c)) => field.push(c),
                }
            };
            record.push(field);
            if after.is_empty() || after.starts_with('\n') {
                return Some(record);
            }
            rest = after.strip_prefix(sep)?;
        } else {
            let end = rest.find([sep, '\n']).unwrap_or(rest.len());
            let field = &rest[..end];
            if field.contains('"') {
                return None;
            }
            record.push(field.to_owned());
            match rest[end..].chars().next() {
                Some(c) if c == sep => rest = &rest[end + c.len_utf8()..],
                _ => return Some(record),
            }
        }
    }
}

/// `fields` as Go's `csv.Writer` writes one record, without its newline.
fn write_record(fields: &[String], sep: char) -> String {
    let mut out = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        let needs_quotes = !field.is_empty()
            && (field == "\\."
                || field.contains([sep, '"', '\r', '\n'])
                || field.starts_with(char::is_whitespace));
        let field: Cow<str> = if needs_quotes {
            Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
        } else {
            Cow::Borrowed(field)
        };
        out.push_str(&field);
    }
    out
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
    fn quoted_csv_and_preserved_fields() {
        let config = json!({"SourceKey": "content", "SplitKeys": ["date", "ip", "content"]});
        assert_eq!(
            run(
                config,
                b"2022-06-09,192.0.2.0,\"POST /PutData?Category=YunOsAccountOpLog HTTP/1.1\",200"
            ),
            pairs(&[
                ("date", "2022-06-09"),
                ("ip", "192.0.2.0"),
                (
                    "content",
                    "POST /PutData?Category=YunOsAccountOpLog HTTP/1.1"
                ),
            ])
        );
        assert_eq!(
            run(
                json!({"SplitKeys": ["a"], "PreserveOthers": true, "KeepSource": true}),
                b"1,\"x,y\",\" z\",w"
            ),
            pairs(&[
                ("content", "1,\"x,y\",\" z\",w"),
                ("a", "1"),
                ("_decode_preserve_", "\"x,y\",\" z\",w")
            ])
        );
        assert_eq!(
            run(
                json!({"SplitKeys": ["a"], "PreserveOthers": true, "ExpandOthers": true, "ExpandKeyPrefix": "e_", "SplitSep": "|", "TrimLeadingSpace": true}),
                b"1| \"say \"\"hi\"\"\"|3"
            ),
            pairs(&[("a", "1"), ("e_1", "say \"hi\""), ("e_2", "3")])
        );
    }

    #[test]
    fn quote_errors_keep_the_source_and_odd_input_never_panics() {
        let config = json!({"SplitKeys": ["a", "b"]});
        assert_eq!(
            run(config.clone(), b"a\"b,c"),
            pairs(&[("content", "a\"b,c")])
        );
        assert_eq!(
            run(config.clone(), b"\"open,c"),
            pairs(&[("content", "\"open,c")])
        );
        assert_eq!(
            run(config.clone(), b"\"x\"y,c"),
            pairs(&[("content", "\"x\"y,c")])
        );
        assert_eq!(run(config.clone(), b""), pairs(&[("a", "")]));
        assert_eq!(
            run(config.clone(), b"\n\n1,2\n3,4"),
            pairs(&[("a", "1"), ("b", "2")])
        );
        assert_eq!(
            run(config, b"\xff,\"\n\""),
            pairs(&[("a", "\u{fffd}"), ("b", "\n")])
        );
        let err = build(&options(json!({"SplitSep": "||"}))).err().unwrap();
        assert_eq!(err.field, "SplitSep");
    }
}
