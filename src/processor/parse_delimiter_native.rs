//! `processor_parse_delimiter_native`: splits a content by a separator into the fields named
//! by `Keys`, as iLogtail's native processor of that name (CSV, TSV, `|`-separated, `||`...).
//!
//! iLogtail's rules, kept here: spaces before the first column and spaces and `\r` after the
//! last are trimmed; a value that is empty after trimming is left untouched. A single-character
//! separator honours `Quote` (CSV: `"a,b"` is one column, `""` inside quotes is one quote); a
//! separator of 2 to 4 characters is split on as it is. Fewer columns than keys fail unless
//! `AllowingShortenedFields` (default true); more columns than keys follow
//! `OverflowedFieldsTreatment`:
//! * `extend` (default): each extra column becomes `__column<i>__`, `i` its index from 0;
//! * `keep`: the rest of the line, from the separator after the last key's column, becomes
//!   `__column<n>__`, `n` the number of keys (iLogtail keeps that leading separator);
//! * `discard`: extra columns are dropped, and so are columns whose key is `_`.

use bytes::Bytes;
use memchr::memmem;
use serde::Deserialize;

use super::common_parser_options::CommonParserOptions;
use super::field_names::field_name;
use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<ParseDelimiterConfig>("processor_parse_delimiter_native", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParseDelimiterConfig {
    /// The content to parse. Mandatory in iLogtail; Tailrace defaults to `content`.
    #[serde(default = "default_source_key")]
    pub source_key: String,
    /// The separator, 1 to 4 characters; `\t` written as the two characters `\` `t` means a
    /// tab, as in iLogtail. Required.
    pub separator: String,
    /// The quote of a single-character separator (default `"`); ignored for longer ones.
    #[serde(default)]
    pub quote: Option<String>,
    /// The names of the columns, in order. Required.
    pub keys: Vec<String>,
    /// Accept fewer columns than keys (default true).
    #[serde(default = "yes")]
    pub allowing_shortened_fields: bool,
    /// `extend` (default), `keep` or `discard`: what to do with columns beyond the keys.
    #[serde(default)]
    pub overflowed_fields_treatment: Overflow,
    /// Keep the source content when the line cannot be split into the keys (default false).
    #[serde(default)]
    pub keeping_source_when_parse_fail: bool,
    /// Keep the source content when it was parsed (default false).
    #[serde(default)]
    pub keeping_source_when_parse_succeed: bool,
    /// The name the kept source content gets (default: `SourceKey`).
    #[serde(default)]
    pub renamed_source_key: String,
    /// On a failure with the source kept, also copy it to `__raw_log__` (default false).
    #[serde(default)]
    pub coping_raw_log: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    #[default]
    Extend,
    Keep,
    Discard,
}

fn default_source_key() -> String {
    "content".to_owned()
}

fn yes() -> bool {
    true
}

/// The key of a column that `discard` drops.
const DISCARDED_KEY: &[u8] = b"_";

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    let config: ParseDelimiterConfig = parse_options(options)?;
    Ok(Box::new(ParseDelimiter::new(config)?))
}

pub struct ParseDelimiter {
    source_key: Bytes,
    separator: Vec<u8>,
    finder: memmem::Finder<'static>,
    /// The quote, when the separator is one character (and differs from it).
    quote: Option<u8>,
    keys: Vec<Bytes>,
    /// `__column<i>__` for the columns beyond the keys, made once.
    column_keys: Vec<Bytes>,
    allow_short: bool,
    overflow: Overflow,
    overwritten: bool,
    /// No two keys alike, and none that an extra column's `__columnN__` could repeat: the
    /// fields of a line that holds only its source can be appended without a search.
    distinct_keys: bool,
    common: CommonParserOptions,
    /// Lines that could not be split into the keys.
    pub parse_failures: u64,
    /// Reports failures (rate-limited) through the services of the side that runs it.
    failure_alarm: crate::context::FailureAlarm,
    /// Logs dropped because nothing was left of them.
    pub discarded: u64,
}

/// Columns of one line: ranges of it, or unescaped copies of quoted values. A range becomes
/// a view (`Bytes::slice`, a reference count) only once, when it is set as a field.
type Columns = Vec<Column>;

enum Column {
    Range(usize, usize),
    Owned(Bytes),
}

impl Column {
    fn text<'a>(&'a self, line: &'a [u8]) -> &'a [u8] {
        match self {
            Column::Range(start, end) => &line[*start..*end],
            Column::Owned(bytes) => bytes,
        }
    }

    fn into_bytes(self, line: &Bytes) -> Bytes {
        match self {
            Column::Range(start, end) => line.slice(start..end),
            Column::Owned(bytes) => bytes,
        }
    }
}

/// The first `needle` in `hay`: eight bytes a step in a word (SWAR), then `memchr` past 64
/// bytes. Columns are mostly a few to a few dozen bytes long, where a call to `memchr` (an
/// indirect call, then a byte-by-byte loop under 16 bytes) costs more than the search itself.
#[inline(always)]
fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let pattern = ONES * u64::from(needle);
    let mut i = 0;
    while let Some(chunk) = hay.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // Bit 7 of a byte is set exactly where that byte of `x` is zero (no carry crosses
        // bytes: the low seven bits plus 0x7f stay below 0x100).
        let found = !(((x & LOW7) + LOW7) | x | LOW7);
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
        if i >= 64 {
            return memchr::memchr(needle, &hay[i..]).map(|o| i + o);
        }
    }
    hay[i..].iter().position(|b| *b == needle).map(|o| i + o)
}

impl ParseDelimiter {
    pub fn new(config: ParseDelimiterConfig) -> Result<Self, ProcessorError> {
        let separator = if config.separator == "\\t" {
            "\t".to_owned()
        } else {
            config.separator
        };
        if separator.is_empty() || separator.len() > 4 {
            return Err(ProcessorError::new(
                "Separator",
                format!("{separator:?}: expected 1 to 4 characters"),
            ));
        }
        if config.keys.is_empty() {
            return Err(ProcessorError::new("Keys", "must name at least one column"));
        }
        let quote = match config.quote.as_deref() {
            _ if separator.len() > 1 => None,
            None => Some(b'"'),
            Some("") => None,
            Some(q) if q.len() == 1 => Some(q.as_bytes()[0]),
            Some(q) => {
                return Err(ProcessorError::new(
                    "Quote",
                    format!("{q:?}: expected a single character"),
                ))
            }
        }
        .filter(|q| *q != separator.as_bytes()[0]);
        let common = CommonParserOptions::new(
            &config.source_key,
            config.keeping_source_when_parse_fail,
            config.keeping_source_when_parse_succeed,
            &config.renamed_source_key,
            config.coping_raw_log,
        );
        // Static names: no atomic count per field and log (see `field_names`).
        let keys: Vec<Bytes> = config.keys.iter().map(|k| field_name(k)).collect();
        Ok(ParseDelimiter {
            overwritten: keys.iter().any(|k| k == config.source_key.as_bytes()),
            distinct_keys: {
                let mut sorted: Vec<&Bytes> = keys.iter().filter(|k| *k != DISCARDED_KEY).collect();
                sorted.sort();
                sorted.dedup();
                sorted.len() == keys.iter().filter(|k| *k != DISCARDED_KEY).count()
                    && !keys.iter().any(|k| k.starts_with(b"__column"))
            },
            source_key: field_name(&config.source_key),
            finder: memmem::Finder::new(separator.as_bytes()).into_owned(),
            separator: separator.into_bytes(),
            quote,
            column_keys: Vec::new(),
            keys,
            allow_short: config.allowing_shortened_fields,
            overflow: config.overflowed_fields_treatment,
            common,
            parse_failures: 0,
            failure_alarm: crate::context::FailureAlarm::new(
                "PARSE_LOG_FAIL_ALARM",
                "delimiter parse",
            ),
            discarded: 0,
        })
    }

    /// Splits `line[begin..end]` without quotes: iLogtail's `SplitString`.
    fn split_plain(&self, line: &Bytes, begin: usize, end: usize, out: &mut Columns) {
        let text = &line[..end];
        let mut pos = begin;
        loop {
            let next = self.finder.find(&text[pos..]).map_or(end, |i| pos + i);
            out.push(Column::Range(pos, next));
            if next == end {
                return;
            }
            if out.len() >= self.keys.len() && self.overflow != Overflow::Extend {
                // The rest, from this separator on, as one column.
                out.push(Column::Range(next, end));
                return;
            }
            pos = next + self.separator.len();
        }
    }

    /// Splits `line[begin..end]` by a one-byte separator with quotes (CSV); false when a quote
    /// is left open.
    fn split_quoted(
        &self,
        line: &Bytes,
        begin: usize,
        end: usize,
        quote: u8,
        out: &mut Columns,
    ) -> bool {
        self.split_quoted_by(find_byte, line, begin, end, quote, out)
    }

    /// [`ParseDelimiter::split_quoted`] with `find` as the byte search (the tests compare
    /// `find_byte` with `memchr` through it).
    #[inline(always)]
    fn split_quoted_by(
        &self,
        find: impl Fn(u8, &[u8]) -> Option<usize>,
        line: &Bytes,
        begin: usize,
        end: usize,
        quote: u8,
        out: &mut Columns,
    ) -> bool {
        let sep = self.separator[0];
        let bytes = &line[..end];
        let mut pos = begin;
        loop {
            if bytes.get(pos) == Some(&quote) {
                // A quoted column: up to the quote that is not doubled.
                let mut value: Option<Vec<u8>> = None;
                let start = pos + 1;
                let mut i = start;
                let close = loop {
                    match find(quote, &bytes[i..]) {
                        None => return false,
                        Some(off) => {
                            let at = i + off;
                            if bytes.get(at + 1) == Some(&quote) {
                                let buf = value.get_or_insert_with(Vec::new);
                                if buf.is_empty() {
                                    buf.extend_from_slice(&bytes[start..at]);
                                } else {
                                    buf.extend_from_slice(&bytes[i..at]);
                                }
                                buf.push(quote);
                                i = at + 2;
                            } else {
                                if let Some(buf) = value.as_mut() {
                                    buf.extend_from_slice(&bytes[i..at]);
                                }
                                break at;
                            }
                        }
                    }
                };
                // Anything between the closing quote and the separator belongs to the column.
                let after = find(sep, &bytes[close + 1..]).map_or(end, |o| close + 1 + o);
                let column = match value {
                    None if after == close + 1 => Column::Range(start, close),
                    None => {
                        let mut v = bytes[start..close].to_vec();
                        v.extend_from_slice(&bytes[close + 1..after]);
                        Column::Owned(Bytes::from(v))
                    }
                    Some(mut v) => {
                        v.extend_from_slice(&bytes[close + 1..after]);
                        Column::Owned(Bytes::from(v))
                    }
                };
                out.push(column);
                if after == end {
                    return true;
                }
                pos = after + 1;
            } else {
                let next = find(sep, &bytes[pos..]).map_or(end, |o| pos + o);
                out.push(Column::Range(pos, next));
                if next == end {
                    return true;
                }
                pos = next + 1;
            }
            if pos == end {
                // A separator at the very end: one more, empty column.
                out.push(Column::Owned(Bytes::new()));
                return true;
            }
        }
    }

    fn column_key(&mut self, index: usize) -> Bytes {
        while self.column_keys.len() <= index {
            let i = self.column_keys.len();
            self.column_keys.push(Bytes::from(format!("__column{i}__")));
        }
        self.column_keys[index].clone()
    }

    /// Parses one line into `log`; false on a parse failure.
    fn parse(
        &mut self,
        log: &mut crate::LogEvent,
        raw: &Bytes,
        begin: usize,
        end: usize,
        columns: &mut Columns,
        only_source: bool,
    ) -> bool {
        columns.clear();
        match self.quote {
            Some(quote) => {
                if !self.split_quoted(raw, begin, end, quote, columns) {
                    return false;
                }
                if self.overflow != Overflow::Extend && columns.len() > self.keys.len() {
                    // iLogtail joins the extra columns, each after a separator.
                    let mut rest = Vec::new();
                    for column in &columns[self.keys.len()..] {
                        rest.push(self.separator[0]);
                        rest.extend_from_slice(column.text(raw));
                    }
                    columns.truncate(self.keys.len());
                    columns.push(Column::Owned(Bytes::from(rest)));
                }
            }
            None => self.split_plain(raw, begin, end, columns),
        }
        if columns.is_empty() || (!self.allow_short && columns.len() < self.keys.len()) {
            return false;
        }
        let discard = self.overflow == Overflow::Discard;
        log.contents.reserve(columns.len());
        for (i, column) in columns.drain(..).enumerate() {
            let key = match self.keys.get(i) {
                Some(key) if discard && key == DISCARDED_KEY => continue,
                Some(key) => key.clone(),
                None if discard => continue,
                None => self.column_key(i),
            };
            let value = column.into_bytes(raw);
            if only_source {
                log.contents.push((key, value));
            } else {
                log.set_content(key, value);
            }
        }
        true
    }
}

impl Processor for ParseDelimiter {
    fn init(&mut self, services: std::sync::Arc<dyn crate::context::Services>) {
        self.failure_alarm.attach(services);
    }

    fn parse_failures(&self) -> u64 {
        self.parse_failures
    }

    fn process(&mut self, group: &mut PipelineEventGroup) {
        let before = group.events.len();
        let mut columns = Columns::with_capacity(self.keys.len() + 1);
        let mut events = std::mem::take(&mut group.events);
        events.retain_mut(|event| {
            let PipelineEvent::Log(log) = event else {
                return true;
            };
            // A line as read from a file holds only its source: the fields then make the new
            // contents, appended without a search per field.
            let only_source = self.distinct_keys
                && !self.overwritten
                && matches!(log.contents.as_slice(), [(key, _)] if *key == self.source_key);
            // Taken out rather than cloned: a reference count less each way.
            let raw = if only_source {
                match log.contents.pop() {
                    Some((_, raw)) => raw,
                    None => return true,
                }
            } else {
                match log.content(&self.source_key) {
                    Some(raw) => raw.clone(),
                    None => return true,
                }
            };
            let mut end = raw.len();
            while end > 0 && matches!(raw[end - 1], b' ' | b'\r') {
                end -= 1;
            }
            let begin = raw[..end].iter().take_while(|b| **b == b' ').count();
            if begin >= end {
                // Nothing to split: left as it is, as iLogtail does.
                if only_source {
                    log.contents.push((self.source_key.clone(), raw));
                }
                return true;
            }
            let success = self.parse(log, &raw, begin, end, &mut columns, only_source);
            if !success {
                self.parse_failures += 1;
                self.failure_alarm.failed(&raw);
            }
            self.common
                .finish(log, &self.source_key, raw, success, self.overwritten)
        });
        group.events = events;
        self.discarded += (before - group.events.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use serde_json::json;

    fn processor(value: serde_json::Value) -> ParseDelimiter {
        ParseDelimiter::new(serde_json::from_value(value).unwrap()).unwrap()
    }

    fn parse_one(p: &mut ParseDelimiter, line: &[u8]) -> Vec<(String, String)> {
        let mut group = lines(&[line]);
        p.process(&mut group);
        if group.is_empty() {
            return Vec::new();
        }
        contents(&group, 0)
    }

    #[test]
    fn quoted_csv_from_ilogtail_docs() {
        let mut p = processor(json!({
            "SourceKey": "content", "Separator": ",", "Quote": "\"",
            "Keys": ["time", "ip", "request", "status", "size", "useragent"],
        }));
        assert_eq!(
            parse_one(
                &mut p,
                br#"2022-06-09,192.0.2.0,"POST /PutData?Category=YunOsAccountOpLog HTTP/1.1",200,18204,aliyun-sdk-java"#
            ),
            pairs(&[
                ("time", "2022-06-09"),
                ("ip", "192.0.2.0"),
                ("request", "POST /PutData?Category=YunOsAccountOpLog HTTP/1.1"),
                ("status", "200"),
                ("size", "18204"),
                ("useragent", "aliyun-sdk-java"),
            ])
        );
        assert_eq!(
            parse_one(&mut p, br#"  a,"say ""hi"", ok",,"",x"y,z  "#),
            pairs(&[
                ("time", "a"),
                ("ip", "say \"hi\", ok"),
                ("request", ""),
                ("status", ""),
                ("size", "x\"y"),
                ("useragent", "z"),
            ])
        );
    }

    #[test]
    fn tab_separated_and_multi_character_separators() {
        let mut tsv = processor(json!({"Separator": "\\t", "Keys": ["a", "b", "c"]}));
        assert_eq!(
            parse_one(&mut tsv, b"1\t\t3\r"),
            pairs(&[("a", "1"), ("b", ""), ("c", "3")])
        );
        let mut pipes =
            processor(json!({"Separator": "||", "Keys": ["a", "b", "c"], "Quote": "'"}));
        assert_eq!(
            parse_one(&mut pipes, b"x||'y||z'||w"),
            pairs(&[("a", "x"), ("b", "'y"), ("c", "z'"), ("__column3__", "w")])
        );
    }

    #[test]
    fn overflow_treatments() {
        let line: &[u8] = b"1,2,3,4";
        let mut extend = processor(json!({"Separator": ",", "Keys": ["a", "b"]}));
        assert_eq!(
            parse_one(&mut extend, line),
            pairs(&[
                ("a", "1"),
                ("b", "2"),
                ("__column2__", "3"),
                ("__column3__", "4")
            ])
        );
        let mut keep = processor(
            json!({"Separator": ",", "Keys": ["a", "b"], "OverflowedFieldsTreatment": "keep"}),
        );
        assert_eq!(
            parse_one(&mut keep, line),
            pairs(&[("a", "1"), ("b", "2"), ("__column2__", ",3,4")])
        );
        let mut keep_plain = processor(
            json!({"Separator": ",,", "Keys": ["a"], "OverflowedFieldsTreatment": "keep"}),
        );
        assert_eq!(
            parse_one(&mut keep_plain, b"1,,2,,3"),
            pairs(&[("a", "1"), ("__column1__", ",,2,,3")])
        );
        let mut discard = processor(
            json!({"Separator": ",", "Keys": ["a", "_", "c"], "OverflowedFieldsTreatment": "discard"}),
        );
        assert_eq!(
            parse_one(&mut discard, line),
            pairs(&[("a", "1"), ("c", "3")])
        );
    }

    #[test]
    fn short_lines_and_failures() {
        let mut lenient = processor(json!({"Separator": ",", "Keys": ["a", "b", "c"]}));
        assert_eq!(
            parse_one(&mut lenient, b"1,2"),
            pairs(&[("a", "1"), ("b", "2")])
        );
        let mut strict = processor(json!({
            "Separator": ",", "Keys": ["a", "b", "c"], "AllowingShortenedFields": false,
            "KeepingSourceWhenParseFail": true,
        }));
        assert_eq!(parse_one(&mut strict, b"1,2"), pairs(&[("content", "1,2")]));
        assert_eq!(
            parse_one(&mut strict, b"1,\"open,3"),
            pairs(&[("content", "1,\"open,3")])
        );
        assert_eq!(strict.parse_failures, 2);
        let mut dropping = processor(json!({"Separator": ",", "Keys": ["a"]}));
        assert_eq!(parse_one(&mut dropping, b"\"never closed"), pairs(&[]));
        assert_eq!(dropping.discarded, 1);
        // Blank values are left as they are.
        assert_eq!(
            parse_one(&mut dropping, b"   \r"),
            pairs(&[("content", "   \r")])
        );
    }

    #[test]
    fn non_utf8_and_random_bytes_never_panic() {
        let mut p = processor(
            json!({"Separator": ",", "Keys": ["a", "b"], "OverflowedFieldsTreatment": "keep"}),
        );
        assert_eq!(
            contents(
                &{
                    let mut g = lines(&[b"\xff,\xfe\"x\""]);
                    p.process(&mut g);
                    g
                },
                0
            )[0]
            .1,
            "\u{fffd}"
        );
        let mut multi = processor(json!({"Separator": "ab", "Keys": ["a"]}));
        let mut seed: u32 = 11;
        for len in 0..200usize {
            let mut line = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                line.push(b"ab,\" \r\xff"[(seed >> 16) as usize % 7]);
            }
            let mut group = lines(&[&line]);
            p.process(&mut group);
            let mut group = lines(&[&line]);
            multi.process(&mut group);
        }
    }

    #[test]
    fn find_byte_agrees_with_memchr() {
        let mut seed: u32 = 7;
        for len in 0..300usize {
            for _ in 0..4 {
                let mut hay = Vec::with_capacity(len);
                for _ in 0..len {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    // Mostly other bytes, with 0x00, 0x80, 0xff and the needle's neighbours.
                    let pick = (seed >> 16) as usize % 64;
                    hay.push(*b",\"+-\x00\x80\xff\x2c\xac".get(pick).unwrap_or(&b'a'));
                }
                for needle in [b',', b'"', 0u8, 0x80, 0xff, 0xac] {
                    assert_eq!(
                        find_byte(needle, &hay),
                        memchr::memchr(needle, &hay),
                        "{needle:#x} in {hay:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn split_quoted_agrees_with_the_memchr_splitter() {
        fn shape(result: bool, columns: &Columns, line: &[u8]) -> (bool, Vec<(bool, Vec<u8>)>) {
            let columns = columns
                .iter()
                .map(|c| (matches!(c, Column::Range(..)), c.text(line).to_vec()))
                .collect();
            (result, columns)
        }
        let p = processor(json!({"Separator": ",", "Keys": ["a", "b", "c"]}));
        let mut seed: u32 = 23;
        let (mut new, mut old) = (Columns::new(), Columns::new());
        for round in 0..20_000usize {
            let len = 1 + round % 180;
            let mut line = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let pick = (seed >> 16) as usize % 24;
                // Runs of plain bytes long enough to reach the `memchr` fallback sometimes.
                line.push(*b",\",\" \xff\"".get(pick).unwrap_or(&b'x'));
            }
            let line = Bytes::from(line);
            for begin in [0, len / 3] {
                new.clear();
                old.clear();
                let a = p.split_quoted(&line, begin, len, b'"', &mut new);
                let b = p.split_quoted_by(memchr::memchr, &line, begin, len, b'"', &mut old);
                assert_eq!(shape(a, &new, &line), shape(b, &old, &line), "{line:?}");
            }
        }
    }

    #[test]
    fn bad_options_name_the_field() {
        let err = build(&options(json!({"Separator": "|||||", "Keys": ["a"]})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Separator");
        let err = build(&options(
            json!({"Separator": ",", "Quote": "''", "Keys": ["a"]}),
        ))
        .err()
        .unwrap();
        assert_eq!(err.field, "Quote");
        let err = build(&options(json!({"Separator": ",", "Keys": []})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Keys");
        let err = build(&options(
            json!({"Separator": ",", "Keys": ["a"], "OverflowedFieldsTreatment": "spill"}),
        ))
        .err()
        .unwrap();
        assert_eq!(err.field, "OverflowedFieldsTreatment");
        assert!(err.message.contains("extend"), "{err}");
    }
}
