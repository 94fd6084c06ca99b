//! `processor_parse_json_native`: turns a content holding a JSON object into one field per
//! member, as iLogtail's native processor of that name: strings become their text, numbers
//! their literal, booleans `true`/`false`, null an empty value, and nested objects and arrays
//! their JSON text (compact). Anything but an object (an array, a number, broken JSON, an empty
//! value) is a parse failure, handled by the `Keeping*` options.
//!
//! Values are views into the source line whenever the JSON text can be used as it is (strings
//! without escapes, numbers, compact nested values): parsing copies only what it must unescape.

use bytes::Bytes;
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use smallvec::SmallVec;

use super::common_parser_options::CommonParserOptions;
use super::{parse_options, EncodingParser, Line, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::proto::LineValues;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<ParseJsonConfig>("processor_parse_json_native", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParseJsonConfig {
    /// The content to parse. Mandatory in iLogtail; Tailrace defaults to `content`, the key
    /// every line read from a file has.
    #[serde(default = "default_source_key")]
    pub source_key: String,
    /// Keep the source content when it is not a JSON object (default false).
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

fn default_source_key() -> String {
    "content".to_owned()
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    let config: ParseJsonConfig = parse_options(options)?;
    Ok(Box::new(ParseJson::new(config)))
}

pub struct ParseJson {
    source_key: Bytes,
    common: CommonParserOptions,
    /// Values that were not a JSON object.
    pub parse_failures: u64,
    /// Reports failures (rate-limited) through the services of the side that runs it.
    failure_alarm: crate::context::FailureAlarm,
    /// Logs dropped because nothing was left of them.
    pub discarded: u64,
}

impl ParseJson {
    pub fn new(config: ParseJsonConfig) -> Self {
        ParseJson {
            common: CommonParserOptions::new(
                &config.source_key,
                config.keeping_source_when_parse_fail,
                config.keeping_source_when_parse_succeed,
                &config.renamed_source_key,
                config.coping_raw_log,
            ),
            source_key: Bytes::from(config.source_key),
            parse_failures: 0,
            failure_alarm: crate::context::FailureAlarm::new("PARSE_LOG_FAIL_ALARM", "JSON parse"),
            discarded: 0,
        }
    }
}

/// The members of one object, in order. Typical app logs have fewer than 16 fields: they stay
/// on the stack.
type Members = SmallVec<[(Bytes, Bytes); 16]>;

/// Whether no two of `members` share a key (`key_of`) and none is `source`. Keys of different
/// lengths or first bytes differ without a call to `memcmp`.
fn distinct_and_not<T>(members: &[T], key_of: impl Fn(&T) -> &[u8], source: &[u8]) -> bool {
    let same = |a: &[u8], b: &[u8]| a.len() == b.len() && a.first() == b.first() && a == b;
    members.iter().enumerate().all(|(i, member)| {
        let key = key_of(member);
        !same(key, source) && members[..i].iter().all(|other| !same(key, key_of(other)))
    })
}

/// The key of a member.
fn member_key(member: &(Bytes, Bytes)) -> &[u8] {
    &member.0
}

/// What the parser reuses from one line to the next: the members of the flat fast path, keys
/// and values in turn, as ranges of the line (or made, unescaped); those of serde_json.
#[derive(Default)]
pub struct Scratch {
    flat: LineValues,
    members: Members,
}

/// The members [`flat_object`] found in `line`, as (key, value) texts.
fn flat_members<'a>(
    flat: &'a LineValues,
    line: &'a [u8],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone + 'a {
    let mut texts = flat.texts(line);
    std::iter::from_fn(move || Some((texts.next()?, texts.next()?)))
}

impl Processor for ParseJson {
    fn init(&mut self, services: std::sync::Arc<dyn crate::context::Services>) {
        self.failure_alarm.attach(services);
    }

    fn parse_failures(&self) -> u64 {
        self.parse_failures
    }

    fn process(&mut self, group: &mut PipelineEventGroup) {
        let mut scratch = Scratch::default();
        self.discarded += super::process_logs(self, &mut scratch, group);
    }

    fn takes_lines(&self) -> bool {
        true
    }

    fn process_encoded(
        &mut self,
        group: &mut PipelineEventGroup,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let mut scratch = Scratch::default();
        let (written, dropped) = super::encode_logs(self, &mut scratch, group, out);
        self.discarded += dropped;
        Some(written)
    }
}

impl ParseJson {}

/// The members of the object `source` is into `scratch.members`; false when it is not one.
fn parse_object(source: &Bytes, scratch: &mut Scratch) -> bool {
    scratch.members.clear();
    if source.is_empty() {
        return false;
    }
    scratch.flat.clear();
    if flat_object(source, &mut scratch.flat) {
        let mut values = scratch.flat.to_bytes(source);
        while let (Some(key), Some(value)) = (values.next(), values.next()) {
            scratch.members.push((key, value));
        }
        return true;
    }
    serde_object(source, &mut scratch.members)
}

/// [`parse_object`] through serde_json: every object, nested values and escapes included.
fn serde_object(source: &Bytes, members: &mut Members) -> bool {
    let mut de = serde_json::Deserializer::from_slice(source);
    let parsed = ObjectSeed { source, members }.deserialize(&mut de).is_ok() && de.end().is_ok();
    if !parsed {
        members.clear();
    }
    parsed
}

/// The fast path of [`parse_object`]: a flat object (members whose values are strings,
/// numbers, `true`, `false` or `null`), the shape of nearly every JSON log line, scanned in one
/// pass with no UTF-8 check outside strings that hold non-ASCII bytes. It accepts only text
/// that serde_json accepts, giving the same members; anything else (nested values, `\u`
/// escapes, anything malformed) returns false and the line goes through serde_json, which then
/// decides.
fn flat_object(s: &[u8], found: &mut LineValues) -> bool {
    let mut at = skip_ws(s, 0);
    if s.get(at) != Some(&b'{') {
        return false;
    }
    at = skip_ws(s, at + 1);
    if s.get(at) == Some(&b'}') {
        return skip_ws(s, at + 1) == s.len();
    }
    loop {
        let Some(key_end) = string(s, at, found) else {
            return false;
        };
        at = skip_ws(s, key_end + 1);
        if s.get(at) != Some(&b':') {
            return false;
        }
        at = skip_ws(s, at + 1);
        // The value: its text in the line (`true` is the text `true`), or made.
        match s.get(at) {
            Some(b'"') => match string(s, at, found) {
                Some(end) => at = end + 1,
                None => return false,
            },
            Some(b't') if s[at..].starts_with(b"true") => {
                found.push_range(at, at + 4);
                at += 4;
            }
            Some(b'f') if s[at..].starts_with(b"false") => {
                found.push_range(at, at + 5);
                at += 5;
            }
            Some(b'n') if s[at..].starts_with(b"null") => {
                found.push_range(at, at);
                at += 4;
            }
            Some(b'-' | b'0'..=b'9') => match number_end(s, at) {
                Some(end) => {
                    found.push_range(at, end);
                    at = end;
                }
                None => return false,
            },
            _ => return false,
        }
        at = skip_ws(s, at);
        match s.get(at) {
            Some(b',') => at = skip_ws(s, at + 1),
            Some(b'}') => return skip_ws(s, at + 1) == s.len(),
            _ => return false,
        }
    }
}

/// The first byte at or after `at` that is not JSON whitespace.
fn skip_ws(s: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = s.get(at) {
        at += 1;
    }
    at
}

/// The string that opens at `at` (a quote): its text added to `found` (a range of `s`, or
/// unescaped), and the position of its closing quote returned. `None` when there is no string
/// there, or one that serde_json must judge: a control character, invalid UTF-8, a `\u`
/// escape (surrogates) or an unknown escape.
fn string(s: &[u8], at: usize, found: &mut LineValues) -> Option<usize> {
    if s.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let mut pos = start;
    let mut escaped = false;
    let end = loop {
        let found = pos + memchr::memchr2(b'"', b'\\', s.get(pos..)?)?;
        if s[found] == b'"' {
            break found;
        }
        escaped = true;
        pos = found + 2;
    };
    let raw = &s[start..end];
    // Escapes are ASCII: the raw text is valid UTF-8 exactly when the string is.
    // One pass for the common case (printable ASCII), the exact checks only when it fails.
    if !printable_ascii(raw) && (raw.iter().any(|&b| b < 0x20) || std::str::from_utf8(raw).is_err())
    {
        return None;
    }
    if !escaped {
        found.push_range(start, end);
        return Some(end);
    }
    let made = found.begin_made();
    let mut rest = raw;
    while let Some(i) = memchr::memchr(b'\\', rest) {
        found.extend_made(&rest[..i]);
        found.extend_made(&[match rest.get(i + 1)? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            _ => return None,
        }]);
        rest = &rest[i + 2..];
    }
    found.extend_made(rest);
    found.end_made(made);
    Some(end)
}

/// Whether every byte of `text` is printable ASCII (0x20 to 0x7f): eight bytes a step.
fn printable_ascii(text: &[u8]) -> bool {
    const LOW: u64 = 0x2020_2020_2020_2020;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = text.chunks_exact(8);
    let ok = words.all(|word| {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        // No byte with its high bit set, and none below 0x20: a byte below it sets bit 7 when
        // 0x20 is taken from it (a borrow it passes up can mark another byte too, but only
        // when there is one such byte already: the answer, any or none, is exact).
        w & HIGH == 0 && (w.wrapping_sub(LOW) & !w & HIGH) == 0
    });
    ok && words.remainder().iter().all(|&b| (0x20..0x80).contains(&b))
}

/// The end of the JSON number that starts at `at` (`-? (0 | [1-9][0-9]*) (.[0-9]+)?
/// ([eE][+-]?[0-9]+)?`), when one does and is followed by something other than a digit.
fn number_end(s: &[u8], mut at: usize) -> Option<usize> {
    let digits = |s: &[u8], at: usize| {
        at + s[at.min(s.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    if s.get(at) == Some(&b'-') {
        at += 1;
    }
    match s.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at = digits(s, at + 1),
        _ => return None,
    }
    if s.get(at) == Some(&b'.') {
        let end = digits(s, at + 1);
        if end == at + 1 {
            return None;
        }
        at = end;
    }
    if let Some(b'e' | b'E') = s.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = s.get(at) {
            at += 1;
        }
        let end = digits(s, at);
        if end == at {
            return None;
        }
        at = end;
    }
    match s.get(at) {
        Some(b'0'..=b'9') => None,
        _ => Some(at),
    }
}

struct ObjectSeed<'a> {
    source: &'a Bytes,
    members: &'a mut Members,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let raw: &'de RawValue = map.next_value()?;
            let key = key.into_bytes(self.source);
            let value = value_text(self.source, raw.get()).map_err(serde::de::Error::custom)?;
            self.members.push((key, value));
        }
        Ok(())
    }
}

/// A JSON string, borrowed from the source when it has no escapes.
pub(super) enum Text<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Text<'_> {
    /// The text as a field: a view into `source` (which it must be part of when borrowed), or
    /// the unescaped copy.
    pub(super) fn into_bytes(self, source: &Bytes) -> Bytes {
        match self {
            // A view into the line (`slice_ref` of a part of `source`).
            Text::Borrowed(s) => source.slice_ref(s.as_bytes()),
            Text::Owned(s) => Bytes::from(s),
        }
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text::Borrowed(s))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text::Owned(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text::Owned(s))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// The field value of one member, from its raw JSON text (a part of `source`).
fn value_text(source: &Bytes, raw: &str) -> Result<Bytes, serde_json::Error> {
    Ok(match raw.as_bytes().first() {
        // A string without escapes is its text between the quotes (the deserializer already
        // checked it): a view, without parsing it a second time.
        Some(b'"') if memchr::memchr(b'\\', raw.as_bytes()).is_none() => {
            source.slice_ref(&raw.as_bytes()[1..raw.len() - 1])
        }
        Some(b'"') => serde_json::from_str::<Text>(raw)?.into_bytes(source),
        Some(b't') => Bytes::from_static(b"true"),
        Some(b'f') => Bytes::from_static(b"false"),
        Some(b'n') => Bytes::new(),
        Some(b'{' | b'[') => compact(source, raw),
        // A number: its literal as written (iLogtail prints doubles with 6 significant digits,
        // which loses precision; the literal does not).
        _ => source.slice_ref(raw.as_bytes()),
    })
}

/// Nested JSON without the whitespace between tokens (iLogtail writes it back compactly); a
/// view into the source when it has none.
fn compact(source: &Bytes, raw: &str) -> Bytes {
    let bytes = raw.as_bytes();
    let mut in_string = false;
    let mut escaped = false;
    let mut has_space = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b.is_ascii_whitespace() {
            has_space = true;
            break;
        }
    }
    if !has_space {
        return source.slice_ref(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    in_string = false;
    escaped = false;
    for &b in bytes {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !b.is_ascii_whitespace() {
            out.push(b);
        }
    }
    Bytes::from(out)
}

impl EncodingParser for ParseJson {
    type Scratch = Scratch;

    /// Processes one log; false when it is to be dropped.
    fn process_log(&mut self, log: &mut crate::LogEvent, scratch: &mut Scratch) -> bool {
        // A line as read from a file holds only its source: it is taken out rather than
        // cloned (a reference count less each way), and put back if a member needs it.
        let only_source = super::only_source(log, &self.source_key).is_some();
        let raw = if only_source {
            log.contents.pop().map(|(_, raw)| raw)
        } else {
            log.content(&self.source_key).cloned()
        };
        let Some(raw) = raw else {
            return true;
        };
        // The whole object is parsed before any field is set: broken JSON adds nothing.
        let success = parse_object(&raw, scratch);
        let members = &mut scratch.members;
        let mut overwritten = false;
        if success {
            // When the object's keys are distinct and none is the source's, they make the
            // new contents of a line that held only its source, appended without a search
            // per field (`finish` puts a kept source back at the end).
            if only_source && distinct_and_not(members, member_key, &self.source_key) {
                log.contents.extend(members.drain(..));
            } else {
                if only_source {
                    log.contents.push((self.source_key.clone(), raw.clone()));
                }
                log.contents.reserve(members.len());
                for (key, value) in members.drain(..) {
                    overwritten |= key == self.source_key;
                    log.set_content(key, value);
                }
            }
        } else {
            self.parse_failures += 1;
            self.failure_alarm.failed(&raw);
        }
        self.common
            .finish(log, &self.source_key, raw, success, overwritten)
    }

    /// Writes the members of a line that is a JSON object whose keys are
    /// distinct and none of them the source's, with the source not kept, straight into `out`
    /// as a LogGroup's log; false, with nothing written, for any other log (which then takes
    /// [`ParseJson::process_log`]; a line that does not parse is parsed again there, and
    /// counted).
    fn encode_line(&mut self, line: &Line<'_>, scratch: &mut Scratch, out: &mut Vec<u8>) -> bool {
        if self.common.keep_on_success || !super::same_name(line.key, &self.source_key) {
            return false;
        }
        let text = line.text();
        scratch.flat.clear();
        if !text.is_empty() && flat_object(text, &mut scratch.flat) {
            // Resolved once: the keys are compared, then the members written.
            let members: SmallVec<[(&[u8], &[u8]); 16]> =
                flat_members(&scratch.flat, text).collect();
            if !distinct_and_not(&members, |(key, _)| key, &self.source_key) {
                return false;
            }
            crate::proto::encode_log(out, line.time, line.time_ns, members.iter().copied());
            return true;
        }
        let members = &mut scratch.members;
        members.clear();
        let raw = line.to_bytes();
        if raw.is_empty()
            || !serde_object(&raw, members)
            || !distinct_and_not(members, member_key, &self.source_key)
        {
            return false;
        }
        crate::proto::encode_log(
            out,
            line.time,
            line.time_ns,
            members.iter().map(|(k, v)| (&k[..], &v[..])),
        );
        members.clear();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_encoded_as_events, sampled_group};
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use crate::PipelineEvent;
    use serde_json::json;

    fn processor(value: serde_json::Value) -> ParseJson {
        ParseJson::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn process_encoded_writes_the_bytes_of_process_then_encode() {
        let samples: [&[u8]; 9] = [
            br#"{"time":"2026-11-24T10:00:00Z","level":"INFO","msg":"a \"quoted\" word","n":42}"#,
            br#"{"a":{"b":[1,2,{"c":null}]},"d":true,"e":-1.5e3}"#,
            br#"{"k":"v","k":"w"}"#,
            br#"{"content":"inner","x":"y"}"#,
            br#"{"u":"\u00e9\ud83d\ude00","t":"tab\there"}"#,
            br#"{"broken":"#,
            b"not json at all",
            br#"[1,2,3]"#,
            b"  {\"spaced\" : \"out\" }  ",
        ];
        let configs = [
            json!({}),
            json!({"KeepingSourceWhenParseFail": true, "CopingRawLog": true}),
            json!({"KeepingSourceWhenParseSucceed": true, "RenamedSourceKey": "raw"}),
        ];
        let mut seed: u32 = 9;
        let mut random = |n: usize| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as usize % n
        };
        for config in configs {
            let (mut by_events, mut by_bytes) = (processor(config.clone()), processor(config));
            for _ in 0..200 {
                let group = sampled_group(&mut random, &samples, 10);
                assert_encoded_as_events(&mut by_events, &mut by_bytes, group);
                assert_eq!(by_bytes.discarded, by_events.discarded);
            }
        }
    }

    #[test]
    fn app_log_with_nested_values() {
        let mut p = processor(json!({"SourceKey": "content"}));
        let mut group = lines(&[
            br#"{"url": "POST /PutData?Category=YunOsAccountOpLog HTTP/1.1", "ip": "10.200.98.220", "user-agent": "aliyun-sdk-java", "request": {"status": "200", "latency": "18204"}, "time": "07/Jul/2022:10:30:28", "tags": [1, 2.50, "a b"], "ok": true, "none": null, "n": -12}"#,
        ]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[
                ("url", "POST /PutData?Category=YunOsAccountOpLog HTTP/1.1"),
                ("ip", "10.200.98.220"),
                ("user-agent", "aliyun-sdk-java"),
                ("request", r#"{"status":"200","latency":"18204"}"#),
                ("time", "07/Jul/2022:10:30:28"),
                ("tags", r#"[1,2.50,"a b"]"#),
                ("ok", "true"),
                ("none", ""),
                ("n", "-12"),
            ])
        );
        assert_eq!((p.parse_failures, p.discarded), (0, 0));
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_and_the_source_key_its_place() {
        let mut p = processor(json!({"KeepingSourceWhenParseSucceed": true}));
        let mut group = lines(&[
            br#"{"a":"1","b":"2","a":"3"}"#,
            br#"{"x":"1","content":"y"}"#,
        ]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[
                ("a", "3"),
                ("b", "2"),
                ("content", r#"{"a":"1","b":"2","a":"3"}"#)
            ])
        );
        assert_eq!(contents(&group, 1), pairs(&[("content", "y"), ("x", "1")]));
    }

    #[test]
    fn escapes_are_unescaped_and_plain_strings_are_views() {
        let mut p = processor(json!({}));
        let line: &[u8] = br#"{"msg":"line1\nsaid \"hi\" \u00e9","k\u0031":"plain"}"#;
        let mut group = lines(&[line]);
        let PipelineEvent::Log(log) = &group.events[0] else {
            panic!()
        };
        let source = log.content(b"content").unwrap().clone();
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("msg", "line1\nsaid \"hi\" é"), ("k1", "plain")])
        );
        let PipelineEvent::Log(log) = &group.events[0] else {
            panic!()
        };
        let plain = log.content(b"k1").unwrap();
        assert_eq!(plain.as_ptr(), source[source.len() - 7..].as_ptr());
    }

    #[test]
    fn failures_follow_the_keep_options() {
        let broken: [&[u8]; 5] = [b"{\"a\": 1", b"[1, 2]", b"", b"\xff{}", b"{\"a\":1} x"];
        let mut drop = processor(json!({}));
        let mut group = lines(&broken);
        drop.process(&mut group);
        assert!(group.is_empty());
        assert_eq!((drop.parse_failures, drop.discarded), (5, 5));

        let mut keep = processor(json!({
            "KeepingSourceWhenParseFail": true, "RenamedSourceKey": "raw", "CopingRawLog": true,
        }));
        let mut group = lines(&[b"{\"a\": 1"]);
        keep.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("raw", "{\"a\": 1"), ("__raw_log__", "{\"a\": 1")])
        );
    }

    #[test]
    fn source_kept_on_success_unless_a_member_takes_its_key() {
        let mut p = processor(json!({"KeepingSourceWhenParseSucceed": true}));
        let mut group = lines(&[br#"{"a":"1"}"#, br#"{"content":"inner"}"#]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("a", "1"), ("content", r#"{"a":"1"}"#)])
        );
        assert_eq!(contents(&group, 1), pairs(&[("content", "inner")]));
    }

    #[test]
    fn random_bytes_never_panic() {
        const ALPHABET: &[u8] = b"{}[]\":,\\ a1tfn.-eE\xff";
        let mut p = processor(json!({"KeepingSourceWhenParseFail": true}));
        let mut seed: u32 = 7;
        for len in 0..300usize {
            let mut line = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                line.push(ALPHABET[(seed >> 16) as usize % ALPHABET.len()]);
            }
            let mut group = lines(&[&line]);
            p.process(&mut group);
        }
    }

    /// The fast path accepts only what serde_json accepts, with the same members: checked on
    /// flat objects with every kind of value and on random mutations of them.
    #[test]
    fn the_flat_object_fast_path_agrees_with_serde_json() {
        let seeds: [&[u8]; 9] = [
            br#"{"time":"2026-11-24T10:00:00.000Z","level":"INFO","n":-12.5e+3,"ok":true,"no":false,"z":null,"zero":0}"#,
            br#" { "a" : "1" , "b":2 } "#,
            b"{}",
            b"\t{\r\n}\n",
            "{\"k\":\"h\u{e9}llo \u{65e5}\u{672c}\"}".as_bytes(),
            br#"{"a":"1","a":"2"}"#,
            br#"{"a":[1],"b":{"c":"d"}}"#,
            br#"{"esc":"a\"b","k\\e\/y":"\b\f\n\r\t","m":"request 7 for \"user-1\""}"#,
            br#"{"u":"\u00e9\ud83d\ude00","x":"\x"}"#,
        ];
        let alphabet: &[u8] = b"{}[]\":,\\ a1-0.eE+tfnul\t\xff\x01\xc3\xa9";
        let mut seed: u32 = 11;
        let mut rand = |n: usize| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as usize % n
        };
        let mut checked = 0;
        for line in seeds {
            for round in 0..2000 {
                let mut text = line.to_vec();
                for _ in 0..round % 4 {
                    let at = rand(text.len() + 1);
                    match rand(3) {
                        0 if at < text.len() => {
                            text.remove(at);
                        }
                        1 if at < text.len() => text[at] = alphabet[rand(alphabet.len())],
                        _ => text.insert(at, alphabet[rand(alphabet.len())]),
                    }
                }
                let source = Bytes::from(text);
                let (mut flat, mut slow) = (LineValues::default(), Members::new());
                let slow_ok = serde_object(&source, &mut slow);
                if flat_object(&source, &mut flat) {
                    let fast: Members = flat_members(&flat, &source)
                        .map(|(k, v)| (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)))
                        .collect();
                    checked += 1;
                    assert!(
                        slow_ok,
                        "serde_json rejects {:?}",
                        String::from_utf8_lossy(&source)
                    );
                    assert_eq!(fast, slow, "{:?}", String::from_utf8_lossy(&source));
                }
            }
        }
        assert!(checked > 2000, "the fast path took only {checked} lines");
    }

    #[test]
    fn printable_ascii_is_the_bytewise_check() {
        let mut seed: u32 = 5;
        let mut rand = |n: usize| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as usize % n
        };
        let bytes = [
            0u8, 0x1f, 0x20, 0x21, b'a', 0x7e, 0x7f, 0x80, 0x9f, 0xa0, 0xff,
        ];
        for _ in 0..20_000 {
            let text: Vec<u8> = (0..rand(40))
                .map(|_| {
                    if rand(8) == 0 {
                        bytes[rand(bytes.len())]
                    } else {
                        b'x'
                    }
                })
                .collect();
            let expected = text.iter().all(|&b| (0x20..0x80).contains(&b));
            assert_eq!(printable_ascii(&text), expected, "{text:?}");
        }
    }

    #[test]
    fn bad_options() {
        let err = build(&options(json!({"SourceKey": 3}))).err().unwrap();
        assert_eq!(err.field, "SourceKey");
    }
}
