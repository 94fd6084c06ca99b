//! `processor_desensitize_native`: masks sensitive parts of one content, as iLogtail's native
//! processor of that name. Wherever `ContentPatternBeforeReplacedString` is followed by
//! `ReplacedContentPattern`, the second part is replaced: by `ReplacingString` (`Method:
//! const`) or by the MD5 of what it replaces, in upper-case hex as iLogtail writes it
//! (`Method: md5`); every occurrence, or only the first with `ReplacingAll: false`. The regexes
//! are RE2 in iLogtail; here they run on PCRE2's JIT ([`super::native_regex`]), which takes
//! every RE2 pattern and finds the same leftmost-first matches (with RE2's default, `.` does
//! not match a newline), and also takes Perl's look-around. A value with nothing to mask is not
//! copied.

use std::borrow::Cow;

use bytes::Bytes;
use md5::{Digest, Md5};
use serde::Deserialize;

use super::native_regex::{Anchor, NativeRegex};
use super::{parse_options, Options, ProcessorError, Registration};
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
    regex: NativeRegex,
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
            // Each part alone, so that an error names the option at fault.
            NativeRegex::new(field, pattern, Anchor::Search)?;
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
        // `(?-s)`: RE2's default, `.` does not match a newline.
        let pattern = format!(
            "(?-s)({}){}",
            config.content_pattern_before_replaced_string, config.replaced_content_pattern
        );
        let regex = NativeRegex::new("ReplacedContentPattern", &pattern, Anchor::Search)?;
        Ok(Desensitize {
            source_key: Bytes::from(config.source_key),
            regex,
            replacing,
            replacing_all: config.replacing_all,
            masked: 0,
        })
    }

    /// `value` with its sensitive parts replaced; borrowed when there was none.
    fn mask<'v>(&mut self, value: &'v [u8]) -> Cow<'v, [u8]> {
        let mut out: Vec<u8> = Vec::new();
        // Copied up to here.
        let mut copied = 0;
        let mut at = 0;
        let mut replaced = false;
        while at <= value.len() {
            let Some((start, end)) = self.regex.find_at(value, at) else {
                break;
            };
            if start == end && replaced && start == copied {
                at = next_char(value, at, self.regex.is_unicode());
                continue;
            }
            replaced = true;
            let kept_end = self.regex.group(1).map_or(start, |(_, e)| e);
            out.extend_from_slice(&value[copied..kept_end]);
            match &self.replacing {
                Some(constant) => out.extend_from_slice(constant),
                None => {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    for byte in Md5::digest(&value[kept_end..end]).iter() {
                        out.extend_from_slice(&[
                            HEX[usize::from(byte >> 4)],
                            HEX[usize::from(byte & 15)],
                        ]);
                    }
                }
            }
            copied = end;
            if !self.replacing_all {
                break;
            }
            // An empty match moves on by one character, as RE2's GlobalReplace does.
            at = if end > start {
                end
            } else {
                next_char(value, end, self.regex.is_unicode())
            };
        }
        if !replaced {
            return Cow::Borrowed(value);
        }
        out.extend_from_slice(&value[copied..]);
        Cow::Owned(out)
    }
}

/// The offset after the character at `at`: one byte, or a whole UTF-8 sequence in Unicode mode.
fn next_char(value: &[u8], at: usize, unicode: bool) -> usize {
    let mut next = at + 1;
    while unicode && next < value.len() && value[next] & 0xC0 == 0x80 {
        next += 1;
    }
    next
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
    fn perl_look_around_and_empty_matches() {
        // Look-ahead in the sensitive part: only digits followed by a space are masked.
        let mut p = processor(json!({
            "Method": "const", "ReplacingString": "*",
            "ContentPatternBeforeReplacedString": "id=", "ReplacedContentPattern": r"\d+(?= )",
        }));
        let mut group = lines(&[b"id=12 id=34", b"id=56 x"]);
        p.process(&mut group);
        assert_eq!(contents(&group, 0), pairs(&[("content", "id=* id=34")]));
        assert_eq!(contents(&group, 1), pairs(&[("content", "id=* x")]));
        // A pattern that can match empty moves on and ends; as in RE2's GlobalReplace, no
        // empty match right where the previous match ended.
        let mut p = processor(json!({
            "Method": "const", "ReplacingString": "#",
            "ContentPatternBeforeReplacedString": "(?:)", "ReplacedContentPattern": "x*",
        }));
        let mut group = lines(&[b"axxb"]);
        p.process(&mut group);
        assert_eq!(contents(&group, 0), pairs(&[("content", "#a#b#")]));
        // `.` stops at a newline, as in RE2.
        let mut p = processor(json!({
            "Method": "const", "ReplacingString": "***",
            "ContentPatternBeforeReplacedString": "pw=", "ReplacedContentPattern": ".+",
        }));
        let mut group = lines(&[b"pw=abc\nnext line"]);
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("content", "pw=***\nnext line")])
        );
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
