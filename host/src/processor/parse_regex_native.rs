//! `processor_parse_regex_native`: extracts fields from one content with a regex, as
//! iLogtail's native processor of that name: capture group i becomes `Keys[i]`.

use bytes::Bytes;
use regex::bytes::Regex;
use serde::Deserialize;
use tailrace::plugin::Processor;
use tailrace::PipelineEventGroup;

use crate::config::PluginConfig;
use crate::flusher::parse_options;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParseRegexConfig {
    /// The content to parse.
    #[serde(default = "default_source_key")]
    pub source_key: String,
    /// The regex; its capture groups, in order, fill `Keys`. Required.
    pub regex: String,
    /// The names of the captured fields. Required.
    pub keys: Vec<String>,
    /// Keep the source content when the line does not match (default true).
    #[serde(default = "yes")]
    pub keeping_source_when_parse_fail: bool,
    /// Keep the source content when the line matches (default false).
    #[serde(default)]
    pub keeping_source_when_parse_succeed: bool,
    /// The name the kept source content gets (default: its own).
    #[serde(default)]
    pub renamed_source_key: String,
}

fn default_source_key() -> String {
    "content".to_owned()
}

fn yes() -> bool {
    true
}

pub fn build(plugin: &PluginConfig) -> Result<Box<dyn Processor>, (String, String)> {
    let config: ParseRegexConfig = parse_options(plugin)?;
    let field = |name: &str| format!("{}.{name}", plugin.field);
    let regex = Regex::new(&format!("^(?:{})$", config.regex)).map_err(|e| {
        (
            field("Regex"),
            format!("{:?} is not a valid regex: {e}", config.regex),
        )
    })?;
    let groups = regex.captures_len() - 1;
    if groups != config.keys.len() {
        return Err((
            field("Keys"),
            format!(
                "{} keys for a regex with {groups} capture groups",
                config.keys.len()
            ),
        ));
    }
    let renamed = if config.renamed_source_key.is_empty() {
        config.source_key.clone()
    } else {
        config.renamed_source_key.clone()
    };
    Ok(Box::new(ParseRegex {
        source_key: Bytes::from(config.source_key.clone()),
        renamed_source_key: Bytes::from(renamed),
        keys: config.keys.iter().map(|k| Bytes::from(k.clone())).collect(),
        regex,
        keep_on_fail: config.keeping_source_when_parse_fail,
        keep_on_success: config.keeping_source_when_parse_succeed,
    }))
}

struct ParseRegex {
    source_key: Bytes,
    renamed_source_key: Bytes,
    keys: Vec<Bytes>,
    regex: Regex,
    keep_on_fail: bool,
    keep_on_success: bool,
}

impl Processor for ParseRegex {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        let mut locations = self.regex.capture_locations();
        for log in group.logs_mut() {
            let Some(source) = log.remove_content(&self.source_key) else {
                continue;
            };
            let matched = self.regex.captures_read(&mut locations, &source).is_some();
            if matched {
                for (i, key) in self.keys.iter().enumerate() {
                    if let Some((start, end)) = locations.get(i + 1) {
                        // A view into the line: no copy.
                        log.set_content(key.clone(), source.slice(start..end));
                    }
                }
            }
            if (matched && self.keep_on_success) || (!matched && self.keep_on_fail) {
                log.set_content(self.renamed_source_key.clone(), source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tailrace::{LogEvent, PipelineEvent};

    fn plugin(options: serde_json::Value) -> PluginConfig {
        PluginConfig {
            plugin_type: "processor_parse_regex_native".into(),
            field: "processors[0]".into(),
            placement: crate::config::Placement::Native,
            options: options.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn captures_become_fields_and_failures_keep_the_line() {
        let mut p = build(&plugin(
            json!({"Regex": r"(\S+) (\d+)", "Keys": ["ip", "code"]}),
        ))
        .unwrap();
        let mut group = PipelineEventGroup::default();
        for line in ["10.0.0.1 200", "garbage"] {
            let mut log = LogEvent::new(0, None);
            log.set_content("content", line);
            group.events.push(PipelineEvent::Log(log));
        }
        p.process(&mut group);
        let PipelineEvent::Log(ok) = &group.events[0] else {
            panic!()
        };
        assert_eq!(&ok.content(b"ip").unwrap()[..], b"10.0.0.1");
        assert_eq!(&ok.content(b"code").unwrap()[..], b"200");
        assert!(ok.content(b"content").is_none());
        let PipelineEvent::Log(bad) = &group.events[1] else {
            panic!()
        };
        assert_eq!(&bad.content(b"content").unwrap()[..], b"garbage");
    }

    #[test]
    fn keys_must_match_the_groups() {
        let err = build(&plugin(json!({"Regex": "(a)(b)", "Keys": ["x"]})))
            .err()
            .unwrap();
        assert_eq!(err.0, "processors[0].Keys");
        let err = build(&plugin(json!({"Regex": "(", "Keys": []})))
            .err()
            .unwrap();
        assert_eq!(err.0, "processors[0].Regex");
    }
}
