//! `flusher_kafka_v2`'s dynamic topic (`Topic` with `%{content.key}`, `%{tag.key}` and
//! `${ENV}`) and the message key of its hash partitioner (`HashKeys`), both read from an
//! event's converted fields.

use crate::plugins::flushers::convert::Fields;

/// A `Topic` with `%{content.key}` / `%{tag.key}` parts, `${ENV}` already replaced.
#[derive(Clone, Debug)]
pub struct TopicFormat {
    parts: Vec<TopicPart>,
}

#[derive(Clone, Debug)]
enum TopicPart {
    Text(String),
    Field(String),
}

impl TopicFormat {
    /// Parses `Topic`; `env` looks up `${NAME}` (iLogtail reads the environment).
    pub fn parse(
        pattern: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<TopicFormat, String> {
        let mut parts = Vec::new();
        let mut rest = pattern;
        let mut literal = String::new();
        while !rest.is_empty() {
            let (open, is_field) = match (rest.find("%{"), rest.find("${")) {
                (Some(a), Some(b)) if a < b => (a, true),
                (Some(_), Some(b)) => (b, false),
                (Some(a), None) => (a, true),
                (None, Some(b)) => (b, false),
                (None, None) => {
                    literal.push_str(rest);
                    break;
                }
            };
            literal.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("Topic: {pattern:?} has an unclosed {{"))?;
            let name = after[..close].trim();
            if is_field {
                if !(name.starts_with("content.") || name.starts_with("tag.")) {
                    return Err(format!(
                        "Topic: {pattern:?}: %{{{name}}} must name content.<key> or tag.<key>"
                    ));
                }
                if !literal.is_empty() {
                    parts.push(TopicPart::Text(std::mem::take(&mut literal)));
                }
                parts.push(TopicPart::Field(name.to_owned()));
            } else {
                let value = env(name).ok_or_else(|| {
                    format!("Topic: {pattern:?}: the environment variable {name} is not set")
                })?;
                literal.push_str(&value);
            }
            rest = &after[close + 1..];
        }
        if !literal.is_empty() {
            parts.push(TopicPart::Text(literal));
        }
        if parts.is_empty() {
            return Err("Topic: must not be empty".into());
        }
        Ok(TopicFormat { parts })
    }

    /// The topic of one event. A field the event lacks stays as its name (iLogtail's
    /// `FormatTopic`).
    pub fn format(&self, fields: &Fields) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TopicPart::Text(t) => out.push_str(t),
                TopicPart::Field(name) => out.push_str(fields.lookup(name).unwrap_or(name)),
            }
        }
        out
    }
}

/// The message key of the hash partitioner: the values of `HashKeys` the event has, joined by
/// `###`, or `default` (the logstore) when it has none.
pub fn hash_key(hash_keys: &[String], fields: &Fields, default: &str) -> String {
    let values: Vec<&str> = hash_keys.iter().filter_map(|k| fields.lookup(k)).collect();
    if values.is_empty() {
        default.to_owned()
    } else {
        values.join("###")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::flushers::convert::tests::kafka_group;
    use crate::plugins::flushers::convert::{ConvertConfig, Converter, Protocol};

    #[test]
    fn dynamic_topics_and_hash_keys() {
        let c = Converter::new(Protocol::CustomSingle, &ConvertConfig::default());
        let fields = c.fields(&kafka_group());
        let env = |k: &str| (k == "ENV").then(|| "e".to_owned());
        let t = TopicFormat::parse("t_${ENV}_%{content.app}_%{tag.__path__}", env).unwrap();
        assert_eq!(t.format(&fields[0]), "t_e_web_/var/log/a.log");
        let t = TopicFormat::parse("t_%{content.missing}", env).unwrap();
        assert_eq!(t.format(&fields[0]), "t_content.missing");
        assert_eq!(
            TopicFormat::parse("fixed", env).unwrap().format(&fields[0]),
            "fixed"
        );
        assert!(TopicFormat::parse("t_%{app}", env).is_err());
        assert!(TopicFormat::parse("t_${NOPE}", env).is_err());
        assert!(TopicFormat::parse("t_%{content.app", env).is_err());
        let keys = vec!["content.app".to_owned(), "tag.log.file.path".to_owned()];
        assert_eq!(hash_key(&keys, &fields[0], "ls"), "web###/var/log/a.log");
        assert_eq!(hash_key(&["nope".to_owned()], &fields[0], "ls"), "ls");
        assert_eq!(hash_key(&["app".to_owned()], &fields[0], "ls"), "web");
    }
}
