//! `processor_string_replace`: rewrites one content, as iLogtail's extended processor of that
//! name: `Method: const` replaces every `Match` by `ReplaceString`; `regex` replaces every match
//! of the regex `Match` (RE2 syntax), `ReplaceString` referring to groups as `$1`, `${name}`
//! (`$&` the whole match, `$$` a dollar); `unquote` undoes Go string escapes (`\"`, `\n`,
//! `\u00e9`, `\x41`...). With `DestKey` the result goes there and the source stays. A value
//! that cannot be unquoted is left as it is; a value with nothing to replace is not copied.

use std::borrow::Cow;

use bytes::Bytes;
use memchr::memmem;
use regex::bytes::Regex;
use serde::Deserialize;

use super::{parse_options, regex_problem, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<StringReplaceConfig>("processor_string_replace", build);

/// iLogtail's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct StringReplaceConfig {
    /// The content to rewrite. Required.
    pub source_key: String,
    /// `const`, `regex` or `unquote`. Required.
    pub method: String,
    /// The text (`const`) or regex (`regex`) to replace.
    #[serde(rename = "Match")]
    pub match_: String,
    /// What replaces it.
    pub replace_string: String,
    /// Where the result goes (default: the source content itself).
    pub dest_key: String,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(StringReplace::new(parse_options(options)?)?))
}

enum Method {
    Const(Box<memmem::Finder<'static>>, Vec<u8>),
    Regex(Regex, String),
    Unquote,
}

pub struct StringReplace {
    source_key: Bytes,
    dest_key: Bytes,
    method: Method,
    /// Values that could not be unquoted.
    pub failures: u64,
}

impl StringReplace {
    pub fn new(config: StringReplaceConfig) -> Result<Self, ProcessorError> {
        if config.source_key.is_empty() {
            return Err(ProcessorError::new(
                "SourceKey",
                "required: the content to rewrite",
            ));
        }
        let method = match config.method.as_str() {
            "const" if config.match_.is_empty() => {
                return Err(ProcessorError::new(
                    "Match",
                    "required: the text to replace",
                ))
            }
            "const" => Method::Const(
                Box::new(memmem::Finder::new(config.match_.as_bytes()).into_owned()),
                config.replace_string.into_bytes(),
            ),
            "regex" => {
                let regex = Regex::new(&config.match_).map_err(|e| {
                    ProcessorError::new(
                        "Match",
                        format!(
                            "{:?} is not a valid regex: {}",
                            config.match_,
                            regex_problem(&e)
                        ),
                    )
                })?;
                Method::Regex(regex, dotnet_replacement(&config.replace_string))
            }
            "unquote" => Method::Unquote,
            other => {
                return Err(ProcessorError::new(
                    "Method",
                    format!("{other:?}: expected const, regex or unquote"),
                ))
            }
        };
        let dest = if config.dest_key.is_empty() {
            config.source_key.clone()
        } else {
            config.dest_key
        };
        Ok(StringReplace {
            source_key: Bytes::from(config.source_key),
            dest_key: Bytes::from(dest),
            method,
            failures: 0,
        })
    }

    fn rewrite<'v>(&mut self, value: &'v [u8]) -> Cow<'v, [u8]> {
        match &self.method {
            Method::Const(finder, replacement) => {
                let mut out: Option<Vec<u8>> = None;
                let mut last = 0;
                for at in finder.find_iter(value) {
                    let buf = out.get_or_insert_with(|| Vec::with_capacity(value.len()));
                    buf.extend_from_slice(&value[last..at]);
                    buf.extend_from_slice(replacement);
                    last = at + finder.needle().len();
                }
                match out {
                    Some(mut buf) => {
                        buf.extend_from_slice(&value[last..]);
                        Cow::Owned(buf)
                    }
                    None => Cow::Borrowed(value),
                }
            }
            Method::Regex(regex, replacement) => regex.replace_all(value, replacement.as_bytes()),
            Method::Unquote => {
                let unquoted =
                    if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                        go_unquote(&value[1..value.len() - 1])
                    } else {
                        // iLogtail quotes the value first, its quotes escaped.
                        go_unquote_allowing_quotes(value)
                    };
                match unquoted {
                    Some(v) => Cow::Owned(v),
                    None => {
                        self.failures += 1;
                        Cow::Borrowed(value)
                    }
                }
            }
        }
    }
}

impl Processor for StringReplace {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        for event in &mut group.events {
            let crate::PipelineEvent::Log(log) = event else {
                continue;
            };
            let Some(value) = log.content(&self.source_key).cloned() else {
                continue;
            };
            let new = match self.rewrite(&value) {
                Cow::Borrowed(_) => value,
                Cow::Owned(v) => Bytes::from(v),
            };
            log.set_content(self.dest_key.clone(), new);
        }
    }
}

/// .NET-style replacement (iLogtail's regexp2) in the `regex` crate's syntax: `$1` → `${1}`
/// (so that `$1a` stays group 1 then `a`), `$&` → `${0}`, `$$` and `${name}` as they are, any
/// other `$` literal.
fn dotnet_replacement(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 4);
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            let next = text[i..].find('$').map_or(b.len(), |o| i + o);
            out.push_str(&text[i..next]);
            i = next;
            continue;
        }
        match b.get(i + 1) {
            Some(d) if d.is_ascii_digit() => {
                let end = (i + 1..b.len())
                    .find(|&j| !b[j].is_ascii_digit())
                    .unwrap_or(b.len());
                out.push_str(&format!("${{{}}}", &text[i + 1..end]));
                i = end;
            }
            Some(b'&') => {
                out.push_str("${0}");
                i += 2;
            }
            Some(b'$') => {
                out.push_str("$$");
                i += 2;
            }
            Some(b'{') => match text[i..].find('}') {
                Some(close) => {
                    out.push_str(&text[i..i + close + 1]);
                    i += close + 1;
                }
                None => {
                    out.push_str("$$");
                    i += 1;
                }
            },
            _ => {
                out.push_str("$$");
                i += 1;
            }
        }
    }
    out
}

/// `value` as iLogtail unquotes a value without surrounding quotes: its quotes count as
/// escaped.
fn go_unquote_allowing_quotes(value: &[u8]) -> Option<Vec<u8>> {
    let mut quoted = Vec::with_capacity(value.len() + 8);
    for &b in value {
        if b == b'"' {
            quoted.extend_from_slice(b"\\x22");
        } else {
            quoted.push(b);
        }
    }
    go_unquote(&quoted)
}

/// The body of a Go double-quoted string literal, unescaped (Go's `strconv.Unquote`); `None`
/// when it is not a valid body (a bare quote or newline, a bad escape).
fn go_unquote(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    // Digits only: `from_str_radix` would also take a sign.
    let number = |digits: &[u8], radix: u32| -> Option<u32> {
        digits.iter().try_fold(0u32, |n, &d| {
            Some(n * radix + char::from(d).to_digit(radix)?)
        })
    };
    let hex = |digits: &[u8]| number(digits, 16);
    while i < body.len() {
        match body[i] {
            b'"' | b'\n' => return None,
            b'\\' => {
                let escape = *body.get(i + 1)?;
                i += 2;
                match escape {
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(11),
                    b'\\' => out.push(b'\\'),
                    b'"' => out.push(b'"'),
                    b'x' => {
                        out.push(hex(body.get(i..i + 2)?)? as u8);
                        i += 2;
                    }
                    b'0'..=b'7' => {
                        let value = number(body.get(i - 1..i + 2)?, 8)?;
                        out.push(u8::try_from(value).ok()?);
                        i += 2;
                    }
                    b'u' | b'U' => {
                        let len = if escape == b'u' { 4 } else { 8 };
                        let c = char::from_u32(hex(body.get(i..i + len)?)?)?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        i += len;
                    }
                    _ => return None,
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
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
    fn ilogtail_readme_cases() {
        // Masking digits with a regex and a group reference.
        assert_eq!(
            run(
                json!({"SourceKey": "content", "Method": "regex", "Match": "(\\d{3})\\d{4}(\\d{4})", "ReplaceString": "$1****$2"}),
                b"phone: 13812345678"
            ),
            pairs(&[("content", "phone: 138****5678")])
        );
        assert_eq!(
            run(
                json!({"SourceKey": "content", "Method": "const", "Match": "how old are you?", "ReplaceString": "", "DestKey": "new"}),
                b"hello,how old are you? nice to meet you"
            ),
            pairs(&[
                ("content", "hello,how old are you? nice to meet you"),
                ("new", "hello, nice to meet you")
            ])
        );
        assert_eq!(
            run(
                json!({"SourceKey": "content", "Method": "unquote"}),
                br#""{\"key\": \"\u00e9\\n\"}""#
            ),
            pairs(&[("content", "{\"key\": \"é\\n\"}")])
        );
        assert_eq!(
            run(
                json!({"SourceKey": "content", "Method": "unquote"}),
                br#"say "hi"\tnow"#
            ),
            pairs(&[("content", "say \"hi\"\tnow")])
        );
    }

    #[test]
    fn bad_escapes_leave_the_value_and_options_are_checked() {
        assert_eq!(go_unquote(b"\\x+1"), None);
        assert_eq!(go_unquote(b"\\101\\x42"), Some(b"AB".to_vec()));
        assert_eq!(
            run(
                json!({"SourceKey": "content", "Method": "unquote"}),
                b"bad \\q escape"
            ),
            pairs(&[("content", "bad \\q escape")])
        );
        assert_eq!(
            dotnet_replacement("$1a ${n} $& $$ $ x"),
            "${1}a ${n} ${0} $$ $$ x"
        );
        let err = build(&options(json!({"SourceKey": "c", "Method": "swap"})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Method");
        let err = build(&options(
            json!({"SourceKey": "c", "Method": "regex", "Match": "("}),
        ))
        .err()
        .unwrap();
        assert_eq!(err.field, "Match");
        let err = build(&options(json!({"SourceKey": "c", "Method": "const"})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Match");
        let err = build(&options(json!({"Method": "const", "Match": "a"})))
            .err()
            .unwrap();
        assert_eq!(err.field, "SourceKey");
    }

    #[test]
    fn random_bytes_never_panic() {
        const ALPHABET: &[u8] = b"\\\"xuU0123abf\n\xff";
        let mut p = build(&options(
            json!({"SourceKey": "content", "Method": "unquote"}),
        ))
        .unwrap();
        let mut seed: u32 = 5;
        for len in 0..200usize {
            let mut line = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                line.push(ALPHABET[(seed >> 16) as usize % ALPHABET.len()]);
            }
            let mut group = lines(&[&line]);
            p.process(&mut group);
        }
    }
}
