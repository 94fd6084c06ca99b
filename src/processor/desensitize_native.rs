//! `processor_desensitize_native`: masks sensitive parts of one content, as iLogtail's native
//! processor of that name. Wherever `ContentPatternBeforeReplacedString` is followed by
//! `ReplacedContentPattern`, the second part is replaced: by `ReplacingString` (`Method:
//! const`) or by the MD5 of what it replaces, in upper-case hex as iLogtail writes it
//! (`Method: md5`); every occurrence, or only the first with `ReplacingAll: false`. The regexes
//! are RE2 in iLogtail (the `regex` crate's syntax). A value with nothing to mask is not copied.

use std::borrow::Cow;

use bytes::Bytes;
use md5::{Digest, Md5};
use regex::bytes::{Captures, Regex, RegexBuilder};
use serde::Deserialize;

use super::{parse_options, regex_problem, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<DesensitizeConfig>("processor_desensitize_native", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DesensitizeConfig {
    /// The content to mask. Mandatory in iLogtail; Tailrace defaults to `content`.
    #[serde(default = "default_source_key")]
    pub source_key: String,
    /// `const` or `md5`. Required.
    pub method: Method,
    /// What replaces sensitive parts with `Method: const`.
    #[serde(default)]
    pub replacing_string: Option<String>,
    /// The regex of what comes before a sensitive part (kept). Required.
    pub content_pattern_before_replaced_string: String,
    /// The regex of the sensitive part (replaced). Required.
    pub replaced_content_pattern: String,
    /// Replace every occurrence (default true), or only the first.
    #[serde(default = "yes")]
    pub replacing_all: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Const,
    Md5,
}

fn default_source_key() -> String {
    "content".to_owned()
}

fn yes() -> bool {
    true
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(Desensitize::new(parse_options(options)?)?))
}

pub struct Desensitize {
    source_key: Bytes,
    /// `(before)replaced`: group 1 is kept.
    regex: Regex,
    /// `None` for md5.
    replacing: Option<Vec<u8>>,
    replacing_all: bool,
    /// Values that had something masked.
    pub masked: u64,
}

impl Desensitize {
    pub fn new(config: DesensitizeConfig) -> Result<Self, ProcessorError> {
        for (field, pattern) in [
            (
                "ContentPatternBeforeReplacedString",
                &config.content_pattern_before_replaced_string,
            ),
            ("ReplacedContentPattern", &config.replaced_content_pattern),
        ] {
            if pattern.is_empty() {
                return Err(ProcessorError::new(field, "required: a regex"));
            }
            if let Err(e) = Regex::new(pattern) {
                return Err(ProcessorError::new(
                    field,
                    format!("{pattern:?} is not a valid regex: {}", regex_problem(&e)),
                ));
            }
        }
        let replacing = match (config.method, config.replacing_string) {
            (Method::Const, Some(s)) => Some(s.into_bytes()),
            (Method::Const, None) => {
                return Err(ProcessorError::new(
                    "ReplacingString",
                    "required with Method: const",
                ))
            }
            (Method::Md5, _) => None,
        };
        let pattern = format!(
            "({}){}",
            config.content_pattern_before_replaced_string, config.replaced_content_pattern
        );
        let regex = RegexBuilder::new(&pattern)
            .build()
            .map_err(|e| ProcessorError::new("ReplacedContentPattern", regex_problem(&e)))?;
        Ok(Desensitize {
            source_key: Bytes::from(config.source_key),
            regex,
            replacing,
            replacing_all: config.replacing_all,
            masked: 0,
        })
    }

    fn mask<'v>(&self, value: &'v [u8]) -> Cow<'v, [u8]> {
        let replace = |caps: &Captures| -> Vec<u8> {
            let whole = caps.get(0).map_or(&[][..], |m| m.as_bytes());
            let kept = caps.get(1).map_or(&[][..], |m| m.as_bytes());
            let mut out = kept.to_vec();
            match &self.replacing {
                Some(constant) => out.extend_from_slice(constant),
                None => {
                    let digest = Md5::digest(&whole[kept.len()..]);
                    for byte in digest.iter() {
                        out.extend_from_slice(format!("{byte:02X}").as_bytes());
                    }
                }
            }
            out
        };
        if self.replacing_all {
            self.regex.replace_all(value, replace)
        } else {
            self.regex.replace(value, replace)
        }
    }
}

impl Processor for Desensitize {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        let mut masked = 0;
        for log in group.logs_mut() {
            let Some(value) = log.content(&self.source_key) else {
                continue;
            };
            if let Cow::Owned(new) = self.mask(value) {
                masked += 1;
                log.set_content(self.source_key.clone(), Bytes::from(new));
            }
        }
        self.masked += masked;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use serde_json::json;

    fn processor(value: serde_json::Value) -> Desensitize {
        Desensitize::new(serde_json::from_value(value).unwrap()).unwrap()
    }

    #[test]
    fn ilogtail_docs_example_masks_the_password() {
        let mut p = processor(json!({
            "SourceKey": "content", "Method": "const", "ReplacingString": "******",
            "ContentPatternBeforeReplacedString": "password\":\"", "ReplacedContentPattern": "[^\"]+",
        }));
        let mut group = lines(&[
            br#"{"account":"1812213231432969","password":"04a23f38"}"#,
            b"nothing here",
        ]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[(
                "content",
                r#"{"account":"1812213231432969","password":"******"}"#
            )])
        );
        assert_eq!(contents(&group, 1), pairs(&[("content", "nothing here")]));
        assert_eq!(p.masked, 1);
    }

    #[test]
    fn md5_in_upper_hex_first_or_all() {
        let config = json!({
            "Method": "md5", "ContentPatternBeforeReplacedString": "psw=",
            "ReplacedContentPattern": "[a-z0-9]+",
        });
        let mut all = processor(config.clone());
        let mut group = lines(&[b"a psw=123abc, b psw=hello"]);
        all.process(&mut group);
        // md5("123abc") and md5("hello").
        assert_eq!(
            contents(&group, 0),
            pairs(&[(
                "content",
                "a psw=A906449D5769FA7361D7ECC6AA3F6D28, b psw=5D41402ABC4B2A76B9719D911017C592"
            )])
        );
        let mut config = config;
        config["ReplacingAll"] = json!(false);
        let mut first = processor(config);
        let mut group = lines(&[b"psw=hello psw=hello"]);
        first.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("content", "psw=5D41402ABC4B2A76B9719D911017C592 psw=hello")])
        );
    }

    #[test]
    fn bad_options_name_the_field() {
        let err = build(&options(json!({
            "Method": "const", "ContentPatternBeforeReplacedString": "a", "ReplacedContentPattern": "b",
        })))
        .err()
        .unwrap();
        assert_eq!(err.field, "ReplacingString");
        let err = build(&options(json!({
            "Method": "md5", "ContentPatternBeforeReplacedString": "(", "ReplacedContentPattern": "b",
        })))
        .err()
        .unwrap();
        assert_eq!(err.field, "ContentPatternBeforeReplacedString");
        let err = build(&options(json!({
            "Method": "sha1", "ContentPatternBeforeReplacedString": "a", "ReplacedContentPattern": "b",
        })))
        .err()
        .unwrap();
        assert_eq!(err.field, "Method");
    }

    #[test]
    fn non_utf8_values_never_panic() {
        let mut p = processor(json!({
            "Method": "md5", "ContentPatternBeforeReplacedString": "k=", "ReplacedContentPattern": "\\S+",
        }));
        let mut group = lines(&[b"k=\xff\xfe x", b"\xc3k=v"]);
        p.process(&mut group);
        assert_eq!(group.len(), 2);
    }
}
