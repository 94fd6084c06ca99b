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
use super::{parse_options, EncodingParser, Line, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::proto::{KeyField, LineValues};
use crate::PipelineEventGroup;

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
    /// The keys, then the `__column<i>__` made so far, as written in a LogGroup; `None` when
    /// one is too long for that writer (see [`crate::proto::KeyField`]).
    key_fields: Option<Vec<KeyField>>,
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

/// Columns of one line: ranges of it, or unescaped copies of quoted values.
type Columns = LineValues;

/// The positions of two bytes (a separator and a quote) in a line, in order, found 64 bytes a
/// step as bit masks (SSE2 compares). A line is scanned once, however many columns it has: the
/// splitter takes the next position of the byte it wants when it needs it (a few instructions),
/// instead of searching again per column (a call to `memchr` costs more than the search in
/// columns a few bytes long).
struct Hits<'a> {
    hay: &'a [u8],
    /// Where the block of the masks starts.
    at: usize,
    /// Bit `i` set where byte `at + i` is `a` (`b`), those before the last taken cleared.
    a_mask: u64,
    b_mask: u64,
    a: u8,
    b: u8,
}

impl<'a> Hits<'a> {
    /// The positions of `a` and `b` in `hay` from `from` on.
    fn new(hay: &'a [u8], from: usize, a: u8, b: u8) -> Self {
        let mut hits = Hits {
            hay,
            at: from,
            a_mask: 0,
            b_mask: 0,
            a,
            b,
        };
        (hits.a_mask, hits.b_mask) = hits.block_masks(from);
        hits
    }

    /// The masks of the 64 bytes at `at` (the bytes past the end of `hay` never match).
    #[inline(always)]
    fn block_masks(&self, at: usize) -> (u64, u64) {
        if let Some(block) = self.hay.get(at..at + 64) {
            return block_masks(block.try_into().expect("64 bytes"), self.a, self.b);
        }
        // The last bytes, fewer than 64: the last 64 of `hay` when it has them (the masks of
        // those before `at` shifted out), else a copy.
        let len = self.hay.len();
        if len >= 64 && at < len {
            let block = &self.hay[len - 64..];
            let (a, b) = block_masks(block.try_into().expect("64 bytes"), self.a, self.b);
            let shift = at - (len - 64);
            return (a >> shift, b >> shift);
        }
        let rest = self.hay.get(at..).unwrap_or_default();
        let mut block = [0u8; 64];
        block[..rest.len()].copy_from_slice(rest);
        let (a, b) = block_masks(&block, self.a, self.b);
        let valid = (1u64 << rest.len()) - 1;
        (a & valid, b & valid)
    }

    /// The next position of `a` (`which` false) or `b` (true), passing over the other.
    #[inline(always)]
    fn next_of(&mut self, which: bool) -> Option<usize> {
        loop {
            let (mask, other) = if which {
                (&mut self.b_mask, &mut self.a_mask)
            } else {
                (&mut self.a_mask, &mut self.b_mask)
            };
            if *mask != 0 {
                let bit = mask.trailing_zeros();
                *mask &= *mask - 1;
                // Those of the other byte before it are passed over.
                *other &= (u64::MAX << bit) << 1;
                return Some(self.at + bit as usize);
            }
            self.at += 64;
            if self.at >= self.hay.len() {
                return None;
            }
            (self.a_mask, self.b_mask) = self.block_masks(self.at);
        }
    }
}

/// Bit `i` of the first (second) mask set where `block[i]` is `a` (`b`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn block_masks(block: &[u8; 64], a: u8, b: u8) -> (u64, u64) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let (mut a_mask, mut b_mask) = (0u64, 0u64);
    // SAFETY: SSE2 is part of every x86_64 CPU; each load reads 16 of the 64 bytes of `block`
    // (`loadu` has no alignment requirement).
    unsafe {
        let (va, vb) = (_mm_set1_epi8(a as i8), _mm_set1_epi8(b as i8));
        for i in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * i).cast::<__m128i>());
            a_mask |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, va)) as u16) << (16 * i);
            b_mask |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, vb)) as u16) << (16 * i);
        }
    }
    (a_mask, b_mask)
}

/// Bit `i` of the first (second) mask set where `block[i]` is `a` (`b`).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn block_masks(block: &[u8; 64], a: u8, b: u8) -> (u64, u64) {
    let (mut a_mask, mut b_mask) = (0u64, 0u64);
    for (i, byte) in block.iter().enumerate() {
        a_mask |= u64::from(*byte == a) << i;
        b_mask |= u64::from(*byte == b) << i;
    }
    (a_mask, b_mask)
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
            key_fields: keys.iter().map(|k| KeyField::new(k)).collect(),
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
    fn split_plain(&self, line: &[u8], begin: usize, end: usize, out: &mut Columns) {
        let text = &line[..end];
        let mut pos = begin;
        loop {
            let next = self.finder.find(&text[pos..]).map_or(end, |i| pos + i);
            out.push_range(pos, next);
            if next == end {
                return;
            }
            if out.len() >= self.keys.len() && self.overflow != Overflow::Extend {
                // The rest, from this separator on, as one column.
                out.push_range(next, end);
                return;
            }
            pos = next + self.separator.len();
        }
    }

    /// Splits `line[begin..end]` by a one-byte separator with quotes (CSV); false when a quote
    /// is left open.
    ///
    /// A column that starts with the quote runs to the quote that is not doubled (`""` is one
    /// quote in its value); anything between that quote and the next separator belongs to the
    /// column too. A quote anywhere else is an ordinary byte.
    fn split_quoted(
        &self,
        line: &[u8],
        begin: usize,
        end: usize,
        quote: u8,
        out: &mut Columns,
    ) -> bool {
        let sep = self.separator[0];
        let bytes = &line[..end];
        const SEPARATOR: bool = false;
        const QUOTE: bool = true;
        let mut hits = Hits::new(bytes, begin, sep, quote);
        let mut pos = begin;
        loop {
            let next = if bytes.get(pos) == Some(&quote) {
                hits.next_of(QUOTE); // the opening quote
                let start = pos + 1;
                // Where the unescaped value began being made, once a doubled quote is met.
                let mut made = None;
                let mut rest = start;
                let close = loop {
                    let Some(at) = hits.next_of(QUOTE) else {
                        return false;
                    };
                    if bytes.get(at + 1) == Some(&quote) {
                        hits.next_of(QUOTE); // the second quote of the pair
                        made.get_or_insert_with(|| out.begin_made());
                        out.extend_made(&bytes[rest..=at]);
                        rest = at + 2;
                    } else {
                        if made.is_some() {
                            out.extend_made(&bytes[rest..at]);
                        }
                        break at;
                    }
                };
                let after = hits.next_of(SEPARATOR).unwrap_or(end);
                match made {
                    None if after == close + 1 => out.push_range(start, close),
                    None => out.push_made(&[&bytes[start..close], &bytes[close + 1..after]]),
                    Some(made) => {
                        out.extend_made(&bytes[close + 1..after]);
                        out.end_made(made);
                    }
                }
                after
            } else {
                let next = hits.next_of(SEPARATOR).unwrap_or(end);
                out.push_range(pos, next);
                next
            };
            if next == end {
                return true;
            }
            pos = next + 1;
            if pos == end {
                // A separator at the very end: one more, empty column.
                out.push_range(end, end);
                return true;
            }
        }
    }

    /// Makes `__column<i>__` for every column index below `count` that has no key.
    fn make_column_keys(&mut self, count: usize) {
        while self.column_keys.len() < count {
            let i = self.column_keys.len();
            let key = Bytes::from(format!("__column{i}__"));
            if i >= self.keys.len() {
                if let Some(fields) = self.key_fields.as_mut() {
                    fields.push(KeyField::new(&key).expect("a short key"));
                }
            }
            self.column_keys.push(key);
        }
    }

    /// The key of column `i`, or `None` for a column that `discard` drops. Columns beyond the
    /// keys need their `__column<i>__` made first (`split` does).
    #[inline(always)]
    fn key_of(&self, i: usize) -> Option<&Bytes> {
        let discard = self.overflow == Overflow::Discard;
        match self.keys.get(i) {
            Some(key) if discard && key == DISCARDED_KEY => None,
            Some(key) => Some(key),
            None if discard => None,
            None => self.column_keys.get(i),
        }
    }

    /// Splits one line into `columns`, those beyond the keys joined as `OverflowedFieldsTreatment`
    /// says; false on a parse failure.
    fn split(&mut self, raw: &[u8], begin: usize, end: usize, columns: &mut Columns) -> bool {
        columns.clear();
        match self.quote {
            Some(quote) => {
                if !self.split_quoted(raw, begin, end, quote, columns) {
                    return false;
                }
                if self.overflow != Overflow::Extend && columns.len() > self.keys.len() {
                    // iLogtail joins the extra columns, each after a separator.
                    let mut rest = Vec::new();
                    for text in columns.texts(raw).skip(self.keys.len()) {
                        rest.push(self.separator[0]);
                        rest.extend_from_slice(text);
                    }
                    columns.truncate(self.keys.len());
                    columns.push_made(&[&rest]);
                }
            }
            None => self.split_plain(raw, begin, end, columns),
        }
        if columns.is_empty() || (!self.allow_short && columns.len() < self.keys.len()) {
            return false;
        }
        if self.overflow != Overflow::Discard {
            self.make_column_keys(columns.len());
        }
        true
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
        if !self.split(raw, begin, end, columns) {
            return false;
        }
        log.contents.reserve(columns.len());
        for (i, value) in columns.to_bytes(raw).enumerate() {
            let Some(key) = self.key_of(i) else {
                continue;
            };
            let key = key.clone();
            if only_source {
                log.contents.push((key, value));
            } else {
                log.set_content(key, value);
            }
        }
        true
    }

    /// Whether `log` holds only its source, so that its fields can be appended (or written)
    /// without a search per field: a line as read from a file.
    fn only_source(&self, log: &crate::LogEvent) -> bool {
        self.distinct_keys
            && !self.overwritten
            && super::only_source(log, &self.source_key).is_some()
    }

    /// Whether a line that is the content `key` and nothing else can be written without a
    /// search per field (see [`ParseDelimiter::only_source`]).
    fn appends_to(&self, key: &[u8]) -> bool {
        self.distinct_keys && !self.overwritten && super::same_name(key, &self.source_key)
    }

    /// The non-blank part of `raw`: spaces before the first column and spaces and `\r` after
    /// the last are not part of any.
    fn trimmed(raw: &[u8]) -> (usize, usize) {
        let mut end = raw.len();
        while end > 0 && matches!(raw[end - 1], b' ' | b'\r') {
            end -= 1;
        }
        let begin = raw[..end].iter().take_while(|b| **b == b' ').count();
        (begin, end)
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
        let mut columns = Columns::with_capacity(self.keys.len() + 1);
        self.discarded += super::process_logs(self, &mut columns, group);
    }

    fn takes_lines(&self) -> bool {
        true
    }

    fn process_encoded(
        &mut self,
        group: &mut PipelineEventGroup,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let mut columns = Columns::with_capacity(self.keys.len() + 1);
        let (written, dropped) = super::encode_logs(self, &mut columns, group, out);
        self.discarded += dropped;
        Some(written)
    }
}

impl EncodingParser for ParseDelimiter {
    type Scratch = Columns;

    /// Processes one log; false when it is to be dropped.
    fn process_log(&mut self, log: &mut crate::LogEvent, columns: &mut Columns) -> bool {
        let only_source = self.only_source(log);
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
        let (begin, end) = Self::trimmed(&raw);
        if begin >= end {
            // Nothing to split: left as it is, as iLogtail does.
            if only_source {
                log.contents.push((self.source_key.clone(), raw));
            }
            return true;
        }
        let success = self.parse(log, &raw, begin, end, columns, only_source);
        if !success {
            self.parse_failures += 1;
            self.failure_alarm.failed(&raw);
        }
        self.common
            .finish(log, &self.source_key, raw, success, self.overwritten)
    }

    /// Writes the fields of a line parsed with success, with the source not kept, straight into
    /// `out` as a LogGroup's log; false, with nothing written, for any other line (which then
    /// takes [`ParseDelimiter::process_log`]).
    fn encode_line(&mut self, line: &Line<'_>, columns: &mut Columns, out: &mut Vec<u8>) -> bool {
        if self.common.keep_on_success || !self.appends_to(line.key) {
            return false;
        }
        let raw = line.text();
        let (begin, end) = Self::trimmed(raw);
        if begin >= end || !self.split(raw, begin, end, columns) {
            return false;
        }
        match &self.key_fields {
            // Every column has its key (none dropped): keys and columns go by index.
            Some(keys) if self.overflow != Overflow::Discard => {
                crate::proto::encode_keyed_log(out, line.time, line.time_ns, raw, keys, columns)
            }
            _ => {
                let this = &*self;
                crate::proto::encode_log(
                    out,
                    line.time,
                    line.time_ns,
                    columns
                        .texts(raw)
                        .enumerate()
                        .filter_map(|(i, text)| Some((&this.key_of(i)?[..], text))),
                )
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_encoded_as_events;
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use crate::PipelineEvent;
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
    fn hits_are_the_next_positions_of_the_byte_asked_for() {
        let mut seed: u32 = 7;
        let mut random = |n: usize| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as usize % n
        };
        for len in 0..300usize {
            for _ in 0..4 {
                // Mostly other bytes, with 0x00, 0x80, 0xff and the needles' neighbours.
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        *b",\"+-\x00\x80\xff\x2c\xac"
                            .get(random(64))
                            .unwrap_or(&b'a')
                    })
                    .collect();
                for (a, b) in [(b',', b'"'), (0u8, 0x80), (0xff, 0xac), (b'\t', b'\'')] {
                    for from in [0, len / 2, len] {
                        let mut hits = Hits::new(&hay, from, a, b);
                        // A scan from a cursor past the last position taken.
                        let mut cursor = from;
                        for _ in 0..len / 2 + 2 {
                            let which = random(3) == 0;
                            let byte = if which { b } else { a };
                            let expected = (cursor..len).find(|i| hay[*i] == byte);
                            assert_eq!(
                                hits.next_of(which),
                                expected,
                                "{byte:#x} from {cursor} in {hay:?}"
                            );
                            match expected {
                                Some(at) => cursor = at + 1,
                                None => break,
                            }
                        }
                    }
                }
            }
        }
    }

    /// The splitter the word-at-a-time one replaced, a `memchr` per column, kept as the
    /// reference it must agree with.
    fn reference_split_quoted(line: &[u8], begin: usize, end: usize, out: &mut Columns) -> bool {
        let (sep, quote) = (b',', b'"');
        let find = memchr::memchr;
        let bytes = &line[..end];
        let mut pos = begin;
        loop {
            if bytes.get(pos) == Some(&quote) {
                let mut value: Option<Vec<u8>> = None;
                let start = pos + 1;
                let mut i = start;
                let close = loop {
                    let Some(off) = find(quote, &bytes[i..]) else {
                        return false;
                    };
                    let at = i + off;
                    if bytes.get(at + 1) == Some(&quote) {
                        let buf = value.get_or_insert_with(Vec::new);
                        buf.extend_from_slice(&bytes[i..at]);
                        buf.push(quote);
                        i = at + 2;
                    } else {
                        if let Some(buf) = value.as_mut() {
                            buf.extend_from_slice(&bytes[i..at]);
                        }
                        break at;
                    }
                };
                let after = find(sep, &bytes[close + 1..]).map_or(end, |o| close + 1 + o);
                let mut v = value.unwrap_or_else(|| bytes[start..close].to_vec());
                v.extend_from_slice(&bytes[close + 1..after]);
                out.push_made(&[&v]);
                if after == end {
                    return true;
                }
                pos = after + 1;
            } else {
                let next = find(sep, &bytes[pos..]).map_or(end, |o| pos + o);
                out.push_range(pos, next);
                if next == end {
                    return true;
                }
                pos = next + 1;
            }
            if pos == end {
                out.push_range(end, end);
                return true;
            }
        }
    }

    #[test]
    fn a_quoted_column_with_nothing_to_unescape_is_a_range_of_the_line() {
        let p = processor(json!({"Separator": ",", "Keys": ["a", "b", "c"]}));
        let line = b"x,\"a,b\",\"c\"\"d\"";
        let mut columns = Columns::default();
        assert!(p.split_quoted(line, 0, line.len(), b'"', &mut columns));
        let kinds: Vec<(bool, &[u8])> = columns
            .values()
            .iter()
            .map(|c| matches!(c, crate::proto::LineValue::Range(..)))
            .zip(columns.texts(line))
            .collect();
        assert_eq!(kinds, [(true, &b"x"[..]), (true, b"a,b"), (false, b"c\"d")]);
    }

    #[test]
    fn split_quoted_agrees_with_the_memchr_splitter() {
        fn shape(result: bool, columns: &Columns, line: &[u8]) -> (bool, Vec<Vec<u8>>) {
            let columns = columns.texts(line).map(<[u8]>::to_vec).collect();
            (result, columns)
        }
        let p = processor(json!({"Separator": ",", "Keys": ["a", "b", "c"]}));
        let mut seed: u32 = 23;
        let (mut new, mut old) = (Columns::default(), Columns::default());
        for round in 0..20_000usize {
            let len = 1 + round % 180;
            let mut line = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let pick = (seed >> 16) as usize % 24;
                // Runs of plain bytes, and quotes doubled or not, before and after separators.
                line.push(*b",\",\" \xff\"".get(pick).unwrap_or(&b'x'));
            }
            for begin in [0, len / 3] {
                new.clear();
                old.clear();
                let a = p.split_quoted(&line, begin, len, b'"', &mut new);
                let b = reference_split_quoted(&line, begin, len, &mut old);
                assert_eq!(shape(a, &new, &line), shape(b, &old, &line), "{line:?}");
            }
        }
    }

    #[test]
    fn process_encoded_writes_the_bytes_of_process_then_encode() {
        let long_key = "k".repeat(40);
        let configs = [
            json!({"Separator": ",", "Keys": ["time", "ip", "method", "path", "agent"]}),
            json!({"Separator": ",", "Keys": ["a", "b"], "OverflowedFieldsTreatment": "keep"}),
            json!({"Separator": ",", "Keys": ["a", "_", "c"], "OverflowedFieldsTreatment": "discard"}),
            json!({"Separator": ",", "Keys": ["a", "b", "c"], "AllowingShortenedFields": false,
                   "KeepingSourceWhenParseFail": true, "CopingRawLog": true}),
            json!({"Separator": ",", "Keys": ["a", "b"], "KeepingSourceWhenParseSucceed": true,
                   "RenamedSourceKey": "raw"}),
            json!({"Separator": ",", "Keys": ["a", "content"]}),
            json!({"Separator": ",", "Keys": ["a", "a"]}),
            json!({"Separator": ",", "Keys": [long_key, "b"]}),
            json!({"Separator": ",", "Quote": "", "Keys": ["a", "b", "c"]}),
            json!({"Separator": "||", "Keys": ["a", "b", "c"]}),
            json!({"Separator": "\\t", "Quote": "'", "Keys": ["a", "b", "c"]}),
        ];
        let mut seed: u32 = 41;
        let mut random = |n: usize| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as usize % n
        };
        for config in configs {
            let (mut by_events, mut by_bytes) = (processor(config.clone()), processor(config));
            for _ in 0..300 {
                let mut group = PipelineEventGroup::default();
                for _ in 0..1 + random(12) {
                    // Short and long lines: values past 127 bytes take the general writer, a
                    // log under 128 bytes or over 16 KiB has a length of other than two bytes.
                    let kinds = if random(8) == 0 { 4 } else { 3 };
                    let len =
                        [random(40), random(200), random(400), 16_000 + random(800)][random(kinds)];
                    let line: Vec<u8> = (0..len)
                        .map(|_| *b",,\"\"'\t| \r\xffx".get(random(24)).unwrap_or(&b'v'))
                        .collect();
                    let mut log = crate::LogEvent::new(1_700_000_000 + random(100) as u32, None);
                    if random(4) == 0 {
                        log.time_ns = Some(random(1_000_000_000) as u32);
                    }
                    log.set_content("content", Bytes::from(line));
                    if random(8) == 0 {
                        // Not only its source: the fields are set one by one.
                        log.set_content("host", "h1");
                    }
                    if random(16) == 0 {
                        log.contents.clear();
                    }
                    group.events.push(PipelineEvent::Log(log));
                    if random(32) == 0 {
                        group.events.push(PipelineEvent::Metric(Box::new(
                            crate::MetricEvent::new("m", 1, crate::MetricValue::Untyped(1.0)),
                        )));
                    }
                }
                assert_encoded_as_events(&mut by_events, &mut by_bytes, group);
                assert_eq!(by_bytes.discarded, by_events.discarded);
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
