//! What a Kafka message holds, as iLogtail's converter makes it: one message per event, the
//! `custom_single` protocol in JSON — `{"contents": {...}, "tags": {...}, "time": <seconds>}`
//! with keys sorted (Go's `json.Marshal` of a map) — or `custom_single_flatten`, the same fields
//! on one level. Also the dynamic topic (`%{content.key}`, `%{tag.key}`) and the hash key.

use std::collections::BTreeMap;

use tailrace::proto::{event_to_log, meta, Log};
use tailrace::PipelineEventGroup;

/// The tag names iLogtail's converter gives to the collector's own tags.
const TAG_CONVERSION: &[(&str, &str)] = &[
    ("__path__", "log.file.path"),
    ("__hostname__", "host.name"),
    ("_node_ip_", "k8s.node.ip"),
    ("_node_name_", "k8s.node.name"),
    ("_namespace_", "k8s.namespace.name"),
    ("_pod_name_", "k8s.pod.name"),
    ("_pod_ip_", "k8s.pod.ip"),
    ("_pod_uid_", "k8s.pod.uid"),
    ("_container_name_", "container.name"),
    ("_container_ip_", "container.ip"),
    ("_image_name_", "container.image.name"),
];

const TAG_PREFIX: &str = "__tag__:";

fn converted_tag_name(key: &str) -> Option<&'static str> {
    TAG_CONVERSION
        .iter()
        .find(|(from, _)| *from == key)
        .map(|(_, to)| *to)
}

/// `Convert.Protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    CustomSingle,
    CustomSingleFlatten,
}

impl Protocol {
    pub fn parse(name: &str) -> Result<Protocol, String> {
        match name {
            "" | "custom_single" => Ok(Protocol::CustomSingle),
            "custom_single_flatten" => Ok(Protocol::CustomSingleFlatten),
            other => Err(format!(
                "Convert.Protocol: {other:?} is not supported here (custom_single, custom_single_flatten)"
            )),
        }
    }
}

/// The converter's settings (`Convert`).
#[derive(Clone, Debug)]
pub struct Converter {
    pub protocol: Protocol,
    /// `TagFieldsRename`: a tag renamed, or dropped when renamed to "".
    pub tag_rename: BTreeMap<String, String>,
    /// `ProtocolFieldsRename`: new names for `contents`, `tags`, `time`.
    pub protocol_rename: BTreeMap<String, String>,
}

/// One event, converted: its contents and tags as the message shows them.
#[derive(Debug, Default)]
pub struct Fields {
    pub contents: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// Tags under their names before conversion (`__path__`), for `%{tag.__path__}`.
    pub raw_tags: BTreeMap<String, String>,
    pub time: u32,
}

impl Fields {
    /// The value of `content.key` / `tag.key` (or a bare content key, as iLogtail's HashKeys).
    pub fn lookup(&self, field: &str) -> Option<&str> {
        if let Some(key) = field.strip_prefix("content.") {
            self.contents.get(key).map(String::as_str)
        } else if let Some(key) = field.strip_prefix("tag.") {
            self.tags
                .get(key)
                .or_else(|| self.raw_tags.get(key))
                .map(String::as_str)
        } else {
            self.contents.get(field).map(String::as_str)
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Converter {
    fn add_tag(&self, fields: &mut Fields, key: &str, value: String) {
        match self.tag_rename.get(key) {
            Some(new) if new.is_empty() => {}
            Some(new) => {
                fields.tags.insert(new.clone(), value);
            }
            None => {
                fields.tags.insert(key.to_owned(), value);
            }
        }
    }

    /// The fields of every event of `group`, in order (iLogtail's `convertLogToMap`).
    pub fn fields(&self, group: &PipelineEventGroup) -> Vec<Fields> {
        let mut group_tags = Fields::default();
        for (key, value) in &group.tags {
            let key = text(key);
            if key == "__user_defined_id__" || key == "__pack_id__" {
                continue;
            }
            let value = text(value);
            group_tags.raw_tags.insert(key.clone(), value.clone());
            let name = converted_tag_name(&key).unwrap_or(&key);
            self.add_tag(&mut group_tags, name, value);
        }
        self.add_tag(
            &mut group_tags,
            "host.ip",
            group.metadata(meta::SOURCE).unwrap_or_default().to_owned(),
        );
        if let Some(topic) = group.metadata(meta::TOPIC).filter(|t| !t.is_empty()) {
            self.add_tag(&mut group_tags, "log.topic", topic.to_owned());
        }
        group
            .events
            .iter()
            .map(|event| self.event_fields(&event_to_log(event), &group_tags))
            .collect()
    }

    fn event_fields(&self, log: &Log, group_tags: &Fields) -> Fields {
        let mut fields = Fields {
            time: log.time,
            ..Fields::default()
        };
        for content in &log.contents {
            let key = text(&content.key);
            let value = text(&content.value);
            if key == "__log_topic__" {
                self.add_tag(&mut fields, "log.topic", value);
            } else if key == "__tag__:__user_defined_id__" {
                continue;
            } else if let Some(tag) = key.strip_prefix(TAG_PREFIX) {
                fields.raw_tags.insert(tag.to_owned(), value.clone());
                let name = converted_tag_name(tag).unwrap_or(tag).to_owned();
                self.add_tag(&mut fields, &name, value);
            } else if let Some(name) = converted_tag_name(&key) {
                fields.raw_tags.insert(key.clone(), value.clone());
                self.add_tag(&mut fields, name, value);
            } else {
                fields.contents.insert(key, value);
            }
        }
        // The group's tags come after the event's own, and win (as in iLogtail).
        for (k, v) in &group_tags.tags {
            fields.tags.insert(k.clone(), v.clone());
        }
        for (k, v) in &group_tags.raw_tags {
            fields.raw_tags.insert(k.clone(), v.clone());
        }
        fields
    }

    fn protocol_key<'a>(&'a self, key: &'a str) -> &'a str {
        self.protocol_rename
            .get(key)
            .map(String::as_str)
            .unwrap_or(key)
    }

    /// The message body of one event.
    pub fn encode(&self, fields: &Fields) -> Vec<u8> {
        use serde_json::{Map, Value};
        let strings = |m: &BTreeMap<String, String>| -> Map<String, Value> {
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect()
        };
        let mut out = Map::new();
        match self.protocol {
            Protocol::CustomSingle => {
                out.insert(
                    self.protocol_key("contents").to_owned(),
                    Value::Object(strings(&fields.contents)),
                );
                out.insert(
                    self.protocol_key("tags").to_owned(),
                    Value::Object(strings(&fields.tags)),
                );
            }
            Protocol::CustomSingleFlatten => {
                out = strings(&fields.contents);
                out.extend(strings(&fields.tags));
            }
        }
        out.insert(
            self.protocol_key("time").to_owned(),
            Value::from(fields.time),
        );
        serde_json::to_vec(&Value::Object(out)).unwrap_or_default()
    }
}

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
    use tailrace::{LogEvent, PipelineEvent};

    fn converter(protocol: Protocol) -> Converter {
        Converter {
            protocol,
            tag_rename: BTreeMap::new(),
            protocol_rename: BTreeMap::new(),
        }
    }

    fn group() -> PipelineEventGroup {
        let mut group = PipelineEventGroup::default();
        group.set_tag("__path__", "/var/log/a.log");
        group.set_tag("__pack_id__", "ABC-1");
        group.set_metadata(meta::SOURCE, "10.0.0.1");
        let mut log = LogEvent::new(1700000000, None);
        log.set_content("app", "web");
        log.set_content("__tag__:env", "prod");
        log.set_content("msg", "hello \"x\"");
        group.events.push(PipelineEvent::Log(log));
        group
    }

    #[test]
    fn custom_single_json_is_ilogtails_layout() {
        let c = converter(Protocol::CustomSingle);
        let fields = c.fields(&group());
        let body = String::from_utf8(c.encode(&fields[0])).unwrap();
        assert_eq!(
            body,
            r#"{"contents":{"app":"web","msg":"hello \"x\""},"tags":{"env":"prod","host.ip":"10.0.0.1","log.file.path":"/var/log/a.log"},"time":1700000000}"#
        );
    }

    #[test]
    fn flatten_and_renames() {
        let mut c = converter(Protocol::CustomSingleFlatten);
        c.tag_rename.insert("host.ip".into(), "ip".into());
        c.protocol_rename.insert("time".into(), "@timestamp".into());
        let fields = c.fields(&group());
        let body = String::from_utf8(c.encode(&fields[0])).unwrap();
        assert_eq!(
            body,
            r#"{"@timestamp":1700000000,"app":"web","env":"prod","ip":"10.0.0.1","log.file.path":"/var/log/a.log","msg":"hello \"x\""}"#
        );
    }

    #[test]
    fn dynamic_topics_and_hash_keys() {
        let c = converter(Protocol::CustomSingle);
        let fields = c.fields(&group());
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
