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
use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{PipelineEvent, PipelineEventGroup};

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

/// Whether no two members share a key and none is `source`. Keys of different lengths or first
/// bytes differ without a call to `memcmp`.
fn distinct_and_not(members: &Members, source: &[u8]) -> bool {
    let same = |a: &[u8], b: &[u8]| a.len() == b.len() && a.first() == b.first() && a == b;
    members.iter().enumerate().all(|(i, (key, _))| {
        !same(key, source) && members[..i].iter().all(|(other, _)| !same(key, other))
    })
}

impl Processor for ParseJson {
    fn init(&mut self, services: std::sync::Arc<dyn crate::context::Services>) {
        self.failure_alarm.attach(services);
    }

    fn parse_failures(&self) -> u64 {
        self.parse_failures
    }

    fn process(&mut self, group: &mut PipelineEventGroup) {
        let before = group.events.len();
        let mut members = Members::new();
        group.events.retain_mut(|event| {
            let PipelineEvent::Log(log) = event else {
                return true;
            };
            let Some(raw) = log.content(&self.source_key).cloned() else {
                return true;
            };
            members.clear();
            // The whole object is parsed before any field is set: broken JSON adds nothing.
            let success = parse_object(&raw, &mut members);
            let mut overwritten = false;
            if success {
                // A line as read from a file holds only its source: when the object's keys are
                // distinct and none is the source's, they make the new contents, appended
                // without a search per field (`finish` puts a kept source back at the end).
                let only_source =
                    matches!(log.contents.as_slice(), [(key, _)] if *key == self.source_key)
                        && distinct_and_not(&members, &self.source_key);
                if only_source {
                    log.contents.clear();
                    log.contents.extend(members.drain(..));
                } else {
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
        });
        self.discarded += (before - group.events.len()) as u64;
    }
}

/// Parses `source` as one JSON object into `members`; false when it is not one.
fn parse_object(source: &Bytes, members: &mut Members) -> bool {
    if source.is_empty() {
        return false;
    }
    let mut de = serde_json::Deserializer::from_slice(source);
    let parsed = ObjectSeed { source, members }.deserialize(&mut de).is_ok() && de.end().is_ok();
    if !parsed {
        members.clear();
    }
    parsed
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use serde_json::json;

    fn processor(value: serde_json::Value) -> ParseJson {
        ParseJson::new(serde_json::from_value(value).unwrap())
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

    #[test]
    fn bad_options() {
        let err = build(&options(json!({"SourceKey": 3}))).err().unwrap();
        assert_eq!(err.field, "SourceKey");
    }
}
