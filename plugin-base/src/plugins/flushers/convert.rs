//! iLogtail's converter (`Convert`, its `helper.ConvertConfig`) as `flusher_http` and
//! `flusher_kafka_v2` use it: every event of a group becomes its contents and tags (the collector's
//! own tags renamed as iLogtail names them, `TagFieldsRename` applied), then one JSON object —
//! `custom_single`: `{"contents": {...}, "tags": {...}, "time": <seconds>}`, or
//! `custom_single_flatten`: the same fields on one level. Keys come out sorted (Go's
//! `json.Marshal` of a map).
//!
//! The two flushers were written apart and differ in a few corners (which protocol names they
//! take, which field keeps a key two of them share, how a `tag.x` variable is looked up); each
//! keeps its own behaviour, and the differences are spelled out where they are chosen.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use tailrace::proto::{event_to_log, meta, Log};
use tailrace::PipelineEventGroup;

/// iLogtail's `helper.ConvertConfig`.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ConvertConfig {
    /// `custom_single` (default), `custom_single_flatten` (and, for `flusher_http`, `jsonline`).
    pub protocol: String,
    /// `json` (the only encoding of these protocols).
    pub encoding: String,
    /// Accepted for compatibility (used by iLogtail's `raw` protocol only).
    pub separator: String,
    /// Accepted for compatibility.
    pub ignore_un_expected_data: bool,
    /// Renames tags (`{"host.ip": "ip"}`); an empty new name drops the tag.
    pub tag_fields_rename: BTreeMap<String, String>,
    /// Renames the protocol's own keys (`time`, `contents`, `tags`).
    pub protocol_fields_rename: BTreeMap<String, String>,
}

impl Default for ConvertConfig {
    fn default() -> Self {
        ConvertConfig {
            protocol: "custom_single".to_owned(),
            encoding: "json".to_owned(),
            separator: String::new(),
            ignore_un_expected_data: true,
            tag_fields_rename: BTreeMap::new(),
            protocol_fields_rename: BTreeMap::new(),
        }
    }
}

/// `Convert.Protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `{"time": 1, "contents": {...}, "tags": {...}}`
    CustomSingle,
    /// `{"time": 1, ...contents, ...tags}`
    CustomSingleFlatten,
}

impl Protocol {
    /// The names `flusher_http` takes: `jsonline` is `custom_single_flatten` (the flusher sends
    /// a group as one body of JSON lines whatever the protocol); an empty name is refused.
    pub fn from_http_name(name: &str) -> Result<Protocol, String> {
        match name {
            "custom_single" => Ok(Protocol::CustomSingle),
            "custom_single_flatten" | "jsonline" => Ok(Protocol::CustomSingleFlatten),
            other => Err(format!(
                "Convert.Protocol: unsupported protocol {other:?} (supported: custom_single, \
                 custom_single_flatten, jsonline)"
            )),
        }
    }

    /// The names `flusher_kafka_v2` takes: an empty name is `custom_single`.
    pub fn from_kafka_name(name: &str) -> Result<Protocol, String> {
        match name {
            "" | "custom_single" => Ok(Protocol::CustomSingle),
            "custom_single_flatten" => Ok(Protocol::CustomSingleFlatten),
            other => Err(format!(
                "Convert.Protocol: {other:?} is not supported here (custom_single, custom_single_flatten)"
            )),
        }
    }
}

/// Group tags renamed the way iLogtail's converter does (outside Kubernetes mode).
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One event, converted: its contents and tags as the JSON object shows them.
#[derive(Debug, Default)]
pub struct Fields {
    pub contents: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// Tags under their names before conversion (`__path__`), for `%{tag.__path__}`.
    pub raw_tags: BTreeMap<String, String>,
    pub time: u32,
}

impl Fields {
    /// The value of `content.key` / `tag.key` (a tag also under its name before conversion), or
    /// of a bare content key: `flusher_kafka_v2`'s `Topic` and `HashKeys`.
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

/// The converter, its settings checked.
#[derive(Clone, Debug)]
pub struct Converter {
    pub protocol: Protocol,
    /// `TagFieldsRename`: a tag renamed, or dropped when renamed to "".
    pub tag_rename: BTreeMap<String, String>,
    /// `ProtocolFieldsRename`: new names for `contents`, `tags`, `time`.
    pub protocol_rename: BTreeMap<String, String>,
}

impl Converter {
    pub fn new(protocol: Protocol, config: &ConvertConfig) -> Converter {
        Converter {
            protocol,
            tag_rename: config.tag_fields_rename.clone(),
            protocol_rename: config.protocol_fields_rename.clone(),
        }
    }

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

    /// The value of a `content.x` / `tag.x` variable as iLogtail's `findTargetValues` finds it:
    /// a tag also under the new name `TagFieldsRename` gives it (`flusher_http`'s `Query` and
    /// `Headers`).
    pub fn target_value<'a>(&self, fields: &'a Fields, key: &str) -> Option<&'a str> {
        if let Some(name) = key.strip_prefix("content.") {
            fields.contents.get(name)
        } else if let Some(name) = key.strip_prefix("tag.") {
            fields.tags.get(name).or_else(|| {
                self.tag_rename
                    .get(name)
                    .and_then(|new| fields.tags.get(new))
            })
        } else {
            None
        }
        .map(String::as_str)
    }

    fn protocol_key<'a>(&'a self, key: &'a str) -> &'a str {
        self.protocol_rename
            .get(key)
            .map(String::as_str)
            .unwrap_or(key)
    }

    /// One event as a JSON object (one line: no newline inside).
    pub fn encode(&self, fields: &Fields) -> Vec<u8> {
        let strings = |m: &BTreeMap<String, String>| -> Map<String, Value> {
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect()
        };
        let time_key = self.protocol_key("time").to_owned();
        let time = Value::from(fields.time);
        // Later inserts win a shared key (a protocol key renamed onto another, or a content
        // and a tag of one name once flattened), in iLogtail's order: `custom_single` writes
        // time, then contents, then tags; flattened, contents, then tags, then time.
        let mut out = Map::new();
        match self.protocol {
            Protocol::CustomSingle => {
                out.insert(time_key, time);
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
                out.insert(time_key, time);
            }
        }
        serde_json::to_vec(&Value::Object(out)).unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tailrace::{LogEvent, PipelineEvent};

    fn converter(protocol: Protocol) -> Converter {
        Converter::new(protocol, &ConvertConfig::default())
    }

    fn json(converter: &Converter, group: &PipelineEventGroup) -> Value {
        serde_json::from_slice(&converter.encode(&converter.fields(group)[0])).unwrap()
    }

    /// The group of `flusher_http`'s tests.
    pub(crate) fn http_group() -> PipelineEventGroup {
        let mut group = PipelineEventGroup::default();
        group.set_tag("__path__", "/var/log/a.log");
        group.set_tag("env", "prod");
        group.set_metadata(meta::SOURCE, "10.0.0.1");
        let mut log = LogEvent::new(7, None);
        log.set_content("msg", "hi <b>");
        log.set_content("__tag__:zone", "z1");
        group.events.push(PipelineEvent::Log(log));
        group
    }

    /// The group of `flusher_kafka_v2`'s tests.
    pub(crate) fn kafka_group() -> PipelineEventGroup {
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
    fn custom_single_has_time_contents_and_tags_as_ilogtail_names_them() {
        let conv = converter(Protocol::CustomSingle);
        assert_eq!(
            json(&conv, &http_group()),
            serde_json::json!({"time": 7, "contents": {"msg": "hi <b>"},
                "tags": {"log.file.path": "/var/log/a.log", "env": "prod", "zone": "z1",
                         "host.ip": "10.0.0.1"}})
        );
    }

    #[test]
    fn flatten_renames_and_drops() {
        let config = ConvertConfig {
            tag_fields_rename: [
                ("host.ip".into(), String::new()),
                ("env".into(), "e".into()),
            ]
            .into(),
            protocol_fields_rename: [("time".into(), "ts".into())].into(),
            ..Default::default()
        };
        let conv = Converter::new(Protocol::CustomSingleFlatten, &config);
        assert_eq!(
            json(&conv, &http_group()),
            serde_json::json!({"ts": 7, "msg": "hi <b>", "log.file.path": "/var/log/a.log",
                "e": "prod", "zone": "z1"})
        );
    }

    #[test]
    fn custom_single_json_is_ilogtails_layout() {
        let c = converter(Protocol::CustomSingle);
        let fields = c.fields(&kafka_group());
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
        let fields = c.fields(&kafka_group());
        let body = String::from_utf8(c.encode(&fields[0])).unwrap();
        assert_eq!(
            body,
            r#"{"@timestamp":1700000000,"app":"web","env":"prod","ip":"10.0.0.1","log.file.path":"/var/log/a.log","msg":"hello \"x\""}"#
        );
    }

    #[test]
    fn shared_keys_go_where_ilogtail_puts_them() {
        let mut group = PipelineEventGroup::default();
        group.set_tag("env", "tag");
        let mut log = LogEvent::new(7, None);
        log.set_content("env", "content");
        log.set_content("time", "content");
        group.events.push(PipelineEvent::Log(log));
        // Flattened: contents, then tags, then time (converter_single_log_flatten.go).
        let flat = json(&converter(Protocol::CustomSingleFlatten), &group);
        assert_eq!(flat["env"], "tag");
        assert_eq!(flat["time"], 7);
        // custom_single: time, then contents, then tags (custom_single_log.go), so contents
        // renamed onto `time` replace it.
        let config = ConvertConfig {
            protocol_fields_rename: [("contents".into(), "time".into())].into(),
            ..Default::default()
        };
        let single = json(&Converter::new(Protocol::CustomSingle, &config), &group);
        assert_eq!(
            single["time"],
            serde_json::json!({"env": "content", "time": "content"})
        );
    }

    #[test]
    fn variables_find_tags_by_their_new_or_their_old_name() {
        let config = ConvertConfig {
            tag_fields_rename: [("env".into(), "e".into())].into(),
            ..Default::default()
        };
        let conv = Converter::new(Protocol::CustomSingle, &config);
        let fields = &conv.fields(&kafka_group())[0];
        // flusher_http (iLogtail's findTargetValues): the renamed tag under its old name.
        assert_eq!(conv.target_value(fields, "tag.env"), Some("prod"));
        assert_eq!(conv.target_value(fields, "tag.__path__"), None);
        assert_eq!(conv.target_value(fields, "content.app"), Some("web"));
        assert_eq!(conv.target_value(fields, "app"), None);
        // flusher_kafka_v2: a tag under its name before conversion, and bare content keys.
        assert_eq!(fields.lookup("tag.env"), Some("prod"));
        assert_eq!(fields.lookup("tag.__path__"), Some("/var/log/a.log"));
        assert_eq!(fields.lookup("tag.host.ip"), Some("10.0.0.1"));
        assert_eq!(fields.lookup("app"), Some("web"));
    }

    #[test]
    fn unsupported_protocol_names_the_field() {
        let err = Protocol::from_http_name("otlp_v1").unwrap_err();
        assert!(err.starts_with("Convert.Protocol"), "{err}");
        let err = Protocol::from_kafka_name("jsonline").unwrap_err();
        assert!(err.starts_with("Convert.Protocol"), "{err}");
        assert!(Protocol::from_http_name("").is_err());
        assert_eq!(Protocol::from_kafka_name(""), Ok(Protocol::CustomSingle));
        assert_eq!(
            Protocol::from_http_name("jsonline"),
            Ok(Protocol::CustomSingleFlatten)
        );
    }
}
