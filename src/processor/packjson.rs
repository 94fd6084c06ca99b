//! `processor_packjson`: packs the contents named in `SourceKeys` into one JSON object under
//! `DestKey`, as iLogtail's extended processor of that name (Go's `json.Marshal` of a string
//! map: keys sorted, `<`, `>` and `&` escaped, bytes that are not UTF-8 replaced by U+FFFD).
//! The object is written even when none of the keys is present (`{}`).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<PackJsonConfig>("processor_packjson", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PackJsonConfig {
    /// The keys to pack. Required.
    pub source_keys: Vec<String>,
    /// Where the object goes. Required.
    pub dest_key: String,
    /// Keep the packed contents (default true).
    pub keep_source: bool,
    /// Report logs missing some of the keys (default true; Tailrace counts them).
    pub alarm_if_incomplete: bool,
}

impl Default for PackJsonConfig {
    fn default() -> Self {
        PackJsonConfig {
            source_keys: Vec::new(),
            dest_key: String::new(),
            keep_source: true,
            alarm_if_incomplete: true,
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    let config: PackJsonConfig = parse_options(options)?;
    if config.source_keys.is_empty() {
        return Err(ProcessorError::new(
            "SourceKeys",
            "must name at least one key",
        ));
    }
    if config.dest_key.is_empty() {
        return Err(ProcessorError::new(
            "DestKey",
            "required: where the object goes",
        ));
    }
    Ok(Box::new(PackJson {
        source_keys: config.source_keys.into_iter().map(Bytes::from).collect(),
        dest_key: Bytes::from(config.dest_key),
        keep_source: config.keep_source,
        count_incomplete: config.alarm_if_incomplete,
        incomplete: 0,
    }))
}

pub struct PackJson {
    source_keys: Vec<Bytes>,
    dest_key: Bytes,
    keep_source: bool,
    count_incomplete: bool,
    /// Logs missing some of the keys (with `AlarmIfIncomplete`).
    pub incomplete: u64,
}

impl Processor for PackJson {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        for log in group.logs_mut() {
            // Sorted by key, the first of a repeated key winning, as iLogtail's map gives.
            let mut packed: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
            for (key, value) in &log.contents {
                if self.source_keys.contains(key) {
                    packed.entry(&key[..]).or_insert(&value[..]);
                }
            }
            if self.count_incomplete && packed.len() < self.source_keys.len() {
                self.incomplete += 1;
            }
            let mut json = Vec::with_capacity(64);
            json.push(b'{');
            for (i, (key, value)) in packed.iter().enumerate() {
                if i > 0 {
                    json.push(b',');
                }
                go_json_string(&mut json, key);
                json.push(b':');
                go_json_string(&mut json, value);
            }
            json.push(b'}');
            if !self.keep_source {
                log.contents
                    .retain(|(key, _)| !self.source_keys.contains(key));
            }
            log.set_content(self.dest_key.clone(), Bytes::from(json));
        }
    }
}

/// `text` as Go's `encoding/json` writes a string.
fn go_json_string(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\0'..='\x1f' => {
                    let n = c as u32;
                    out.extend_from_slice(b"\\u");
                    for shift in [12, 8, 4, 0] {
                        out.push(HEX[((n >> shift) & 15) as usize]);
                    }
                }
                _ => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, options, pairs};
    use super::*;
    use crate::{LogEvent, PipelineEvent};
    use serde_json::json;

    fn run(
        config: serde_json::Value,
        fields: &[(&'static str, &'static [u8])],
    ) -> Vec<(String, String)> {
        let mut p = build(&options(config)).unwrap();
        let mut log = LogEvent::new(0, None);
        for (k, v) in fields {
            log.set_content(*k, Bytes::from_static(v));
        }
        let mut group = PipelineEventGroup::default();
        group.events.push(PipelineEvent::Log(log));
        p.process(&mut group);
        contents(&group, 0)
    }

    #[test]
    fn ilogtail_readme_example() {
        assert_eq!(
            run(
                json!({"SourceKeys": ["a", "b"], "DestKey": "d_key", "KeepSource": false}),
                &[("a", b"1"), ("b", b"2"), ("c", b"3")]
            ),
            pairs(&[("c", "3"), ("d_key", r#"{"a":"1","b":"2"}"#)])
        );
    }

    #[test]
    fn go_escaping_and_missing_keys() {
        assert_eq!(
            run(
                json!({"SourceKeys": ["z", "a", "none"], "DestKey": "d"}),
                &[("z", b"<b>&\"\n\x01"), ("a", b"\xff\xc3\xa9")]
            ),
            pairs(&[
                ("z", "<b>&\"\n\u{1}"),
                ("a", "\u{fffd}é"),
                (
                    "d",
                    r#"{"a":"\ufffdé","z":"\u003cb\u003e\u0026\"\n\u0001"}"#
                ),
            ])
        );
        let err = build(&options(json!({"SourceKeys": ["a"]}))).err().unwrap();
        assert_eq!(err.field, "DestKey");
    }
}
