//! What `flusher_http` sends: iLogtail's converter protocols (`Convert.Protocol`), one JSON
//! object per event, and the `%{content.x}` / `%{tag.x}` variables of `Query` and `Headers`.
//!
//! iLogtail sends each event of `custom_single` and `custom_single_flatten` in a request of its
//! own, and `jsonline` as one request per group; here every protocol sends a group as one body of
//! JSON lines (objects joined by `\n`), split only where the variables of `Query`/`Headers`
//! take other values: one request per batch instead of one per event.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use tailrace::proto::{event_to_log, meta};
use tailrace::PipelineEventGroup;

/// iLogtail's `helper.ConvertConfig`.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ConvertConfig {
    /// `custom_single` (default), `custom_single_flatten` or `jsonline`.
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

#[derive(Clone, Copy, Debug, PartialEq)]
enum Protocol {
    /// `{"time": 1, "contents": {...}, "tags": {...}}`
    CustomSingle,
    /// `{"time": 1, ...contents, ...tags}`
    Flatten,
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

fn converted_tag(key: &str) -> Option<&'static str> {
    TAG_CONVERSION
        .iter()
        .find(|(from, _)| *from == key)
        .map(|(_, to)| *to)
}

/// One event, converted: its JSON line and the values of the variables.
pub struct Row {
    pub line: Vec<u8>,
    pub vars: Vec<String>,
}

pub struct Converter {
    protocol: Protocol,
    tag_rename: BTreeMap<String, String>,
    key_time: String,
    key_contents: String,
    key_tags: String,
    /// The variables `Query` and `Headers` use (`content.x`, `tag.x`), in order.
    pub var_keys: Vec<String>,
}

impl Converter {
    pub fn new(config: &ConvertConfig) -> Result<Converter, String> {
        let protocol = match config.protocol.as_str() {
            "custom_single" => Protocol::CustomSingle,
            "custom_single_flatten" | "jsonline" => Protocol::Flatten,
            other => {
                return Err(format!(
                    "Convert.Protocol: unsupported protocol {other:?} (supported: custom_single, \
                     custom_single_flatten, jsonline)"
                ))
            }
        };
        if config.encoding != "json" {
            return Err(format!(
                "Convert.Encoding: unsupported encoding {:?} for protocol {:?} (supported: json)",
                config.encoding, config.protocol
            ));
        }
        let key = |k: &str| {
            config
                .protocol_fields_rename
                .get(k)
                .cloned()
                .unwrap_or_else(|| k.to_owned())
        };
        Ok(Converter {
            protocol,
            tag_rename: config.tag_fields_rename.clone(),
            key_time: key("time"),
            key_contents: key("contents"),
            key_tags: key("tags"),
            var_keys: Vec::new(),
        })
    }

    fn add_tag(&self, tags: &mut BTreeMap<String, String>, key: &str, value: String) {
        match self.tag_rename.get(key) {
            Some(new) if !new.is_empty() => {
                tags.insert(new.clone(), value);
            }
            Some(_) => {}
            None => {
                tags.insert(key.to_owned(), value);
            }
        }
    }

    /// Every event of `group` as a row.
    pub fn rows(&self, group: &PipelineEventGroup) -> Vec<Row> {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut group_tags = BTreeMap::new();
        for (k, v) in &group.tags {
            let key = lossy(k);
            if key == "__user_defined_id__" || key == "__pack_id__" {
                continue;
            }
            let name = converted_tag(&key).map(str::to_owned).unwrap_or(key);
            self.add_tag(&mut group_tags, &name, lossy(v));
        }
        self.add_tag(
            &mut group_tags,
            "host.ip",
            group.metadata(meta::SOURCE).unwrap_or_default().to_owned(),
        );
        if let Some(topic) = group.metadata(meta::TOPIC).filter(|t| !t.is_empty()) {
            self.add_tag(&mut group_tags, "log.topic", topic.to_owned());
        }
        let mut rows = Vec::with_capacity(group.events.len());
        for event in &group.events {
            let log = event_to_log(event);
            let mut contents = BTreeMap::new();
            let mut tags = BTreeMap::new();
            for c in &log.contents {
                let key = lossy(&c.key);
                if key == "__log_topic__" {
                    self.add_tag(&mut tags, "log.topic", lossy(&c.value));
                    continue;
                }
                if key == "__tag__:__user_defined_id__" {
                    continue;
                }
                let tag_name = match key.strip_prefix(TAG_PREFIX) {
                    Some(name) => Some(converted_tag(name).unwrap_or(name).to_owned()),
                    None => converted_tag(&key).map(str::to_owned),
                };
                match tag_name {
                    Some(name) => self.add_tag(&mut tags, &name, lossy(&c.value)),
                    None => {
                        contents.insert(key, lossy(&c.value));
                    }
                }
            }
            for (k, v) in &group_tags {
                tags.insert(k.clone(), v.clone());
            }
            let vars = self
                .var_keys
                .iter()
                .map(|key| {
                    let found = if let Some(name) = key.strip_prefix("content.") {
                        contents.get(name)
                    } else if let Some(name) = key.strip_prefix("tag.") {
                        tags.get(name)
                            .or_else(|| self.tag_rename.get(name).and_then(|new| tags.get(new)))
                    } else {
                        None
                    };
                    // iLogtail's FormatTopic: a missing value is replaced by its key.
                    found.cloned().unwrap_or_else(|| key.clone())
                })
                .collect();
            let mut object = Map::new();
            object.insert(self.key_time.clone(), Value::from(log.time));
            let to_object = |m: BTreeMap<String, String>| -> Map<String, Value> {
                m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
            };
            match self.protocol {
                Protocol::CustomSingle => {
                    object.insert(
                        self.key_contents.clone(),
                        Value::Object(to_object(contents)),
                    );
                    object.insert(self.key_tags.clone(), Value::Object(to_object(tags)));
                }
                Protocol::Flatten => {
                    for (k, v) in contents.into_iter().chain(tags) {
                        object.entry(k).or_insert(Value::String(v));
                    }
                }
            }
            let line = serde_json::to_vec(&Value::Object(object)).unwrap_or_default();
            rows.push(Row { line, vars });
        }
        rows
    }
}

/// A `Query` or `Headers` value with iLogtail's `%{content.x}` / `%{tag.x}` variables.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Var(usize),
}

impl Template {
    /// Parses `text`, adding the variables it uses to `var_keys`.
    pub fn compile(text: &str, var_keys: &mut Vec<String>) -> Template {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("%{") {
            let Some(len) = rest[start + 2..].find('}') else {
                break;
            };
            let key = &rest[start + 2..start + 2 + len];
            if !(key.starts_with("content.") || key.starts_with("tag.")) {
                parts.push(Part::Text(rest[..start + 3 + len].to_owned()));
                rest = &rest[start + 3 + len..];
                continue;
            }
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let index = match var_keys.iter().position(|k| k == key) {
                Some(i) => i,
                None => {
                    var_keys.push(key.to_owned());
                    var_keys.len() - 1
                }
            };
            parts.push(Part::Var(index));
            rest = &rest[start + 3 + len..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Template { parts }
    }

    pub fn render(&self, vars: &[String]) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(i) => out.push_str(vars.get(*i).map(String::as_str).unwrap_or("")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailrace::{LogEvent, PipelineEvent};

    fn group() -> PipelineEventGroup {
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

    #[test]
    fn custom_single_has_time_contents_and_tags_as_ilogtail_names_them() {
        let conv = Converter::new(&ConvertConfig::default()).unwrap();
        let rows = conv.rows(&group());
        let v: Value = serde_json::from_slice(&rows[0].line).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time": 7, "contents": {"msg": "hi <b>"},
                "tags": {"log.file.path": "/var/log/a.log", "env": "prod", "zone": "z1",
                         "host.ip": "10.0.0.1"}})
        );
    }

    #[test]
    fn flatten_renames_and_drops() {
        let config = ConvertConfig {
            protocol: "custom_single_flatten".into(),
            tag_fields_rename: [
                ("host.ip".into(), String::new()),
                ("env".into(), "e".into()),
            ]
            .into(),
            protocol_fields_rename: [("time".into(), "ts".into())].into(),
            ..Default::default()
        };
        let conv = Converter::new(&config).unwrap();
        let v: Value = serde_json::from_slice(&conv.rows(&group())[0].line).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ts": 7, "msg": "hi <b>", "log.file.path": "/var/log/a.log",
                "e": "prod", "zone": "z1"})
        );
    }

    #[test]
    fn variables_take_content_and_tag_values_or_their_key() {
        let mut conv = Converter::new(&ConvertConfig::default()).unwrap();
        let mut keys = Vec::new();
        let t = Template::compile("%{content.msg}/%{tag.env}-%{tag.nope}%{+x}", &mut keys);
        conv.var_keys = keys;
        let rows = conv.rows(&group());
        assert_eq!(t.render(&rows[0].vars), "hi <b>/prod-tag.nope%{+x}");
    }

    #[test]
    fn unsupported_protocol_names_the_field() {
        let config = ConvertConfig {
            protocol: "otlp_v1".into(),
            ..Default::default()
        };
        let err = Converter::new(&config).err().unwrap();
        assert!(err.starts_with("Convert.Protocol"), "{err}");
    }
}
