//! `processor_json`: expands a content holding a JSON object into fields, as iLogtail's
//! extended (Go) processor of that name. Nested objects are expanded into keys joined by
//! `ExpandConnector` down to `ExpandDepth` levels (0: all); arrays are kept as their JSON text
//! unless `ExpandArray` (`key[0]`, `key[1]`...). Values are their raw JSON text except strings,
//! which are unescaped (so `null` stays `null`, unlike the native processor).
//!
//! Keys follow iLogtail's code to the letter: each level adds the connector before the key,
//! the first level too, so by default `{"a":1}` gives `_a` (`IgnoreFirstConnector` drops that
//! first connector; `UseSourceKeyAsPrefix` starts every key with `SourceKey`; `Prefix` comes
//! before everything). A value that is not a JSON object adds nothing; unlike iLogtail, broken
//! JSON never adds the members read before the error.

use bytes::Bytes;
use serde::de::{MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::parse_json_native::Text;
use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration = Registration::new::<JsonConfig>("processor_json", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct JsonConfig {
    /// The content to expand. Required.
    pub source_key: String,
    /// Report logs without `SourceKey` (default true; Tailrace counts them).
    pub no_key_error: bool,
    /// Levels to expand: 0 (default) all, 1 only the top one.
    pub expand_depth: usize,
    /// Put between the parts of an expanded key (default `_`).
    pub expand_connector: String,
    /// Put before every expanded key (default empty).
    pub prefix: String,
    /// Keep the source content (default true).
    pub keep_source: bool,
    /// Keep the source content when it is not a JSON object (default true).
    pub keep_source_if_parse_error: bool,
    /// Start every expanded key with `SourceKey` (default false).
    pub use_source_key_as_prefix: bool,
    /// No connector before the first level's keys (default false).
    pub ignore_first_connector: bool,
    /// Expand arrays into `key[i]` (default false).
    pub expand_array: bool,
}

impl Default for JsonConfig {
    fn default() -> Self {
        JsonConfig {
            source_key: String::new(),
            no_key_error: true,
            expand_depth: 0,
            expand_connector: "_".to_owned(),
            prefix: String::new(),
            keep_source: true,
            keep_source_if_parse_error: true,
            use_source_key_as_prefix: false,
            ignore_first_connector: false,
            expand_array: false,
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(ProcessorJson::new(parse_options(options)?)?))
}

pub struct ProcessorJson {
    config: JsonConfig,
    source_key: Bytes,
    /// Values that were not a JSON object.
    pub parse_failures: u64,
    /// Logs without `SourceKey` (with `NoKeyError`).
    pub missing_key: u64,
}

impl ProcessorJson {
    pub fn new(config: JsonConfig) -> Result<Self, ProcessorError> {
        if config.source_key.is_empty() {
            return Err(ProcessorError::new(
                "SourceKey",
                "required: the content to expand",
            ));
        }
        Ok(ProcessorJson {
            source_key: Bytes::from(config.source_key.clone()),
            config,
            parse_failures: 0,
            missing_key: 0,
        })
    }
}

impl Processor for ProcessorJson {
    fn parse_failures(&self) -> u64 {
        self.parse_failures
    }

    fn process(&mut self, group: &mut PipelineEventGroup) {
        let mut fields = Vec::new();
        for event in &mut group.events {
            let PipelineEvent::Log(log) = event else {
                continue;
            };
            let Some(raw) = log.content(&self.source_key).cloned() else {
                if self.config.no_key_error {
                    self.missing_key += 1;
                }
                continue;
            };
            fields.clear();
            let parsed = std::str::from_utf8(&raw).ok().is_some_and(|text| {
                let pre_key = if self.config.use_source_key_as_prefix {
                    self.config.source_key.as_str()
                } else {
                    ""
                };
                let mut expander = Expander {
                    config: &self.config,
                    source: &raw,
                    fields: &mut fields,
                };
                let ok = expander.object(text, pre_key, 0).is_ok();
                if !ok {
                    fields.clear();
                }
                ok
            });
            if !parsed {
                self.parse_failures += 1;
            }
            let mut overwritten = false;
            for (key, value) in fields.drain(..) {
                overwritten |= key == self.source_key;
                log.set_content(key, value);
            }
            let keep =
                self.config.keep_source || (!parsed && self.config.keep_source_if_parse_error);
            if !keep && !overwritten {
                log.remove_content(&self.source_key);
            }
        }
    }
}

struct Expander<'a> {
    config: &'a JsonConfig,
    /// The source value: every borrowed piece of text is a part of it.
    source: &'a Bytes,
    fields: &'a mut Vec<(Bytes, Bytes)>,
}

impl Expander<'_> {
    fn connector(&self, depth: usize) -> &str {
        if depth == 1 && self.config.ignore_first_connector {
            ""
        } else {
            &self.config.expand_connector
        }
    }

    /// The members of the object `text`, expanded under `pre_key`; `depth` is the object's.
    fn object(&mut self, text: &str, pre_key: &str, depth: usize) -> Result<(), serde_json::Error> {
        let members: Members = serde_json::from_str(text)?;
        let depth = depth + 1;
        for (key, raw) in members.0 {
            let key = match &key {
                Text::Borrowed(k) => k,
                Text::Owned(k) => k.as_str(),
            };
            let raw = raw.get();
            match raw.as_bytes().first() {
                Some(b'{') => self.nested_object(pre_key, key, raw, depth)?,
                Some(b'[') if self.config.expand_array && depth != self.config.expand_depth => {
                    let elements: Vec<&RawValue> = serde_json::from_str(raw)?;
                    for (i, element) in elements.into_iter().enumerate() {
                        let element_key = format!("{key}[{i}]");
                        let element = element.get();
                        if element.starts_with('{') {
                            self.nested_object(pre_key, &element_key, element, depth)?;
                        } else {
                            self.value(pre_key, &element_key, element, depth)?;
                        }
                    }
                }
                _ => self.value(pre_key, key, raw, depth)?,
            }
        }
        Ok(())
    }

    fn nested_object(
        &mut self,
        pre_key: &str,
        key: &str,
        raw: &str,
        depth: usize,
    ) -> Result<(), serde_json::Error> {
        let new_key = format!("{pre_key}{}{key}", self.connector(depth));
        if depth == self.config.expand_depth {
            self.add(&new_key, self.source.slice_ref(raw.as_bytes()));
            Ok(())
        } else {
            self.object(raw, &new_key, depth)
        }
    }

    fn value(
        &mut self,
        pre_key: &str,
        key: &str,
        raw: &str,
        depth: usize,
    ) -> Result<(), serde_json::Error> {
        let new_key = format!("{pre_key}{}{key}", self.connector(depth));
        let value = if raw.starts_with('"') {
            serde_json::from_str::<Text>(raw)?.into_bytes(self.source)
        } else {
            self.source.slice_ref(raw.as_bytes())
        };
        self.add(&new_key, value);
        Ok(())
    }

    fn add(&mut self, key: &str, value: Bytes) {
        let key = if self.config.prefix.is_empty() {
            Bytes::copy_from_slice(key.as_bytes())
        } else {
            Bytes::from(format!("{}{key}", self.config.prefix))
        };
        // Later members replace earlier ones of the same key, as in iLogtail's contents map.
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.fields.push((key, value)),
        }
    }
}

/// The members of one object, in order, values as raw JSON text.
struct Members<'a>(Vec<(Text<'a>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    members.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use serde_json::json;

    const NESTED: &str = r#"{"k1":{"k2":{"k3":{"k4":{"k51":"51","k52":"52"},"k41":"41"}}},"k6":[{"x":"a"},{"x":"b"}],"k7":[]}"#;

    /// iLogtail's own test setup: SourceKey s_key, connector `-`, prefix `j`, source as prefix.
    fn ilogtail_test_config() -> serde_json::Value {
        json!({
            "SourceKey": "s_key", "ExpandConnector": "-", "Prefix": "j",
            "UseSourceKeyAsPrefix": true,
        })
    }

    fn expand(config: serde_json::Value, value: &str) -> (Vec<(String, String)>, ProcessorJson) {
        let mut p = ProcessorJson::new(serde_json::from_value(config).unwrap()).unwrap();
        let mut log = crate::LogEvent::new(0, None);
        log.set_content("s_key", value.to_owned());
        let mut group = PipelineEventGroup::default();
        group.events.push(PipelineEvent::Log(log));
        p.process(&mut group);
        (contents(&group, 0), p)
    }

    #[test]
    fn ilogtail_expansion_cases() {
        let (got, _) = expand(ilogtail_test_config(), NESTED);
        assert_eq!(
            got,
            pairs(&[
                ("s_key", NESTED),
                ("js_key-k1-k2-k3-k4-k51", "51"),
                ("js_key-k1-k2-k3-k4-k52", "52"),
                ("js_key-k1-k2-k3-k41", "41"),
                ("js_key-k6", r#"[{"x":"a"},{"x":"b"}]"#),
                ("js_key-k7", "[]"),
            ])
        );
        let mut config = ilogtail_test_config();
        config["ExpandDepth"] = json!(1);
        config["KeepSource"] = json!(false);
        let (got, _) = expand(config, NESTED);
        assert_eq!(
            got,
            pairs(&[
                (
                    "js_key-k1",
                    r#"{"k2":{"k3":{"k4":{"k51":"51","k52":"52"},"k41":"41"}}}"#
                ),
                ("js_key-k6", r#"[{"x":"a"},{"x":"b"}]"#),
                ("js_key-k7", "[]"),
            ])
        );
        let mut config = ilogtail_test_config();
        config["ExpandArray"] = json!(true);
        config["KeepSource"] = json!(false);
        let (got, _) = expand(config, NESTED);
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "js_key-k1-k2-k3-k4-k51",
                "js_key-k1-k2-k3-k4-k52",
                "js_key-k1-k2-k3-k41",
                "js_key-k6[0]-x",
                "js_key-k6[1]-x",
            ]
        );
        let mut config = ilogtail_test_config();
        config["IgnoreFirstConnector"] = json!(true);
        config["UseSourceKeyAsPrefix"] = json!(false);
        let (got, _) = expand(config, NESTED);
        assert_eq!(got[1].0, "jk1-k2-k3-k4-k51");
    }

    #[test]
    fn defaults_prefix_the_connector_and_keep_raw_scalars() {
        let (got, _) = expand(
            json!({"SourceKey": "s_key", "KeepSource": false}),
            r#"{"msg":"a\tb","n":1.50,"ok":false,"none":null}"#,
        );
        assert_eq!(
            got,
            pairs(&[
                ("_msg", "a\tb"),
                ("_n", "1.50"),
                ("_ok", "false"),
                ("_none", "null")
            ])
        );
    }

    #[test]
    fn parse_errors_keep_the_source_and_add_nothing() {
        let config = json!({"SourceKey": "s_key", "KeepSource": false});
        let (got, p) = expand(config.clone(), r#"{"a":"1", "b": }"#);
        assert_eq!(got, pairs(&[("s_key", r#"{"a":"1", "b": }"#)]));
        assert_eq!(p.parse_failures, 1);
        let (got, _) = expand(config, "hello");
        assert_eq!(got, pairs(&[("s_key", "hello")]));
        let (got, _) = expand(
            json!({"SourceKey": "s_key", "KeepSource": false, "KeepSourceIfParseError": false}),
            "hello",
        );
        assert!(got.is_empty());
    }

    #[test]
    fn a_member_named_like_the_source_replaces_it() {
        let (got, _) = expand(
            json!({"SourceKey": "s_key", "ExpandConnector": "", "KeepSource": false, "KeepSourceIfParseError": false}),
            r#"{"s_key":"value"}"#,
        );
        assert_eq!(got, pairs(&[("s_key", "value")]));
    }

    #[test]
    fn missing_key_is_counted_and_garbage_never_panics() {
        let mut p =
            ProcessorJson::new(serde_json::from_value(json!({"SourceKey": "s_key"})).unwrap())
                .unwrap();
        let mut group = lines(&[b"{\"a\":1}", b"\xff\xfe", b"[{\"a\":[[[[{}]]]]}]"]);
        p.process(&mut group);
        assert_eq!(p.missing_key, 3);
        let (got, p) = expand(
            json!({"SourceKey": "s_key", "ExpandArray": true, "KeepSource": false}),
            "{\"a\":[[[[{\"b\":[1,{\"c\":null}]}]]]]}",
        );
        assert_eq!(got, pairs(&[("_a[0]", "[[[{\"b\":[1,{\"c\":null}]}]]]")]));
        assert_eq!(p.parse_failures, 0);
        // A lone surrogate escape is not valid JSON text: a failure, not a panic.
        let (_, p) = expand(json!({"SourceKey": "s_key"}), "{\"\\ud800\":1}");
        assert_eq!(p.parse_failures, 1);
        let err = build(&options(json!({}))).err().unwrap();
        assert_eq!(err.field, "SourceKey");
        let err = build(&options(json!({"SourceKey": "a", "ExpandDepth": -1})))
            .err()
            .unwrap();
        assert_eq!(err.field, "ExpandDepth");
    }
}
