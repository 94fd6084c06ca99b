//! The plugin manager's JSON: what a core sends its plugin base in `LoadConfig`.
//!
//! Shape (iLogtail's): `{"global":{...},"inputs":[{"type":"...","detail":{...}}],
//! "processors":[...],"aggregators":[...],"flushers":[...],"extensions":[...]}`.
//! The `global` block keeps iLogtail's `GlobalConfig` names and defaults, spelling included
//! (`AggregatIntervalMs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One pipeline as the plugin base sees it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PluginManagerConfig {
    pub global: GlobalConfig,
    pub inputs: Vec<PluginEntry>,
    pub processors: Vec<PluginEntry>,
    pub aggregators: Vec<PluginEntry>,
    pub flushers: Vec<PluginEntry>,
    pub extensions: Vec<PluginEntry>,
}

/// One plugin: its `type` (possibly with iLogtail's `/id` and `#priority` suffixes) and its
/// options.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PluginEntry {
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The plugin's options; `null` or absent means none.
    #[serde(default = "empty_object", deserialize_with = "null_as_empty_object")]
    pub detail: Value,
}

/// iLogtail's GlobalConfig, with its names and defaults. Fields the base does not use are kept
/// in `extra` rather than rejected: real configs carry many of them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, rename_all = "PascalCase")]
pub struct GlobalConfig {
    pub input_interval_ms: u64,
    /// iLogtail's spelling.
    pub aggregat_interval_ms: u64,
    pub flush_interval_ms: u64,
    pub input_max_first_collect_delay_ms: u64,
    pub default_log_queue_size: usize,
    pub default_log_group_queue_size: usize,
    /// Tailrace's: the byte budget of a pipeline's process queue, next to iLogtail's count of
    /// `DefaultLogQueueSize` groups (a group of a syslog or HTTP input can hold a megabyte).
    pub default_log_queue_bytes: usize,
    pub tags: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            input_interval_ms: 1000,
            aggregat_interval_ms: 3000,
            flush_interval_ms: 3000,
            input_max_first_collect_delay_ms: 10_000,
            default_log_queue_size: 1000,
            default_log_group_queue_size: 4,
            default_log_queue_bytes: 16 << 20,
            tags: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }
}

impl PluginManagerConfig {
    /// Parses the JSON; the error names the line, column and what was wrong.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

impl PluginEntry {
    /// The registry name of the plugin: the type without iLogtail's `/id` and `#priority`
    /// suffixes (`processor_regex/3` → `processor_regex`, `flusher_sls/4#100` → `flusher_sls`).
    pub fn kind(&self) -> &str {
        plugin_kind(&self.plugin_type)
    }
}

/// See [`PluginEntry::kind`].
pub fn plugin_kind(plugin_type: &str) -> &str {
    let end = plugin_type.find(['/', '#']).unwrap_or(plugin_type.len());
    &plugin_type[..end]
}

/// The pipeline name a config name refers to: iLogtail's core loads the plugin part of pipeline
/// `P` as `P/1` (it has the input) or `P/2` (fed by the core); data sent back goes under `P`.
pub fn real_config_name(config_name: &str) -> &str {
    match config_name.rsplit_once('/') {
        Some((name, suffix))
            if !name.is_empty()
                && !suffix.is_empty()
                && suffix.bytes().all(|b| b.is_ascii_digit()) =>
        {
            name
        }
        _ => config_name,
    }
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn null_as_empty_object<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    Ok(match value {
        None | Some(Value::Null) => empty_object(),
        Some(v) => v,
    })
}

/// The plugin types Tailrace's own plugin base implements, by section, for the host's
/// validation (which runs without loading the base): a type outside these lists and outside
/// the host's own is rejected unless a third-party base is loaded. The base checks in a test
/// that its registry holds exactly these.
pub const BASE_INPUTS: &[&str] = &[
    "metric_mock",
    "metric_system_v2",
    "service_http_server",
    "service_syslog",
];
/// Every processor of the core registry: the base registers them all.
pub const BASE_PROCESSORS: &[&str] = &crate::processor::NAMES;
pub const BASE_AGGREGATORS: &[&str] = &[
    "aggregator_default",
    "aggregator_base",
    "aggregator_context",
    "aggregator_content_value_group",
    "aggregator_metadata_group",
];
pub const BASE_FLUSHERS: &[&str] = &[
    "flusher_http",
    "flusher_kafka_v2",
    "flusher_sls",
    "flusher_stdout",
];
pub const BASE_EXTENSIONS: &[&str] = &[];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_plugin_suffixes() {
        assert_eq!(plugin_kind("processor_regex/3"), "processor_regex");
        assert_eq!(plugin_kind("flusher_sls/4#100"), "flusher_sls");
        assert_eq!(plugin_kind("flusher_sls#100"), "flusher_sls");
        assert_eq!(plugin_kind("metric_mock"), "metric_mock");
    }

    #[test]
    fn strips_config_suffixes() {
        assert_eq!(real_config_name("P/1"), "P");
        assert_eq!(real_config_name("my/conf/2"), "my/conf");
        assert_eq!(real_config_name("P"), "P");
        assert_eq!(real_config_name("P/x"), "P/x");
        assert_eq!(real_config_name("/1"), "/1");
    }

    #[test]
    fn ilogtail_defaults_and_names() {
        let cfg = PluginManagerConfig::from_json(
            r#"{"global":{"AggregatIntervalMs":100,"Tags":{"a":"b"},"KeepInputs":true},
               "inputs":[{"type":"metric_mock/1","detail":null}],
               "flushers":[{"type":"flusher_sls"}]}"#,
        )
        .unwrap();
        assert_eq!(cfg.global.aggregat_interval_ms, 100);
        assert_eq!(cfg.global.input_interval_ms, 1000);
        assert_eq!(cfg.global.flush_interval_ms, 3000);
        assert_eq!(cfg.global.tags["a"], "b");
        assert_eq!(cfg.global.extra["KeepInputs"], Value::Bool(true));
        assert_eq!(cfg.inputs[0].kind(), "metric_mock");
        assert!(cfg.inputs[0].detail.as_object().unwrap().is_empty());
        assert!(cfg.flushers[0].detail.is_object());
    }

    #[test]
    fn wrong_types_are_errors() {
        let err =
            PluginManagerConfig::from_json(r#"{"global":{"InputIntervalMs":"fast"}}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }
}
