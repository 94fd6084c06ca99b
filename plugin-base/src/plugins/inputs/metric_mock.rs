//! `metric_mock`: iLogtail's mock input. Each input interval it emits one log with the
//! configured `Fields` plus `Index` (1, 2, 3, ...), tagged with `Tags`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use tailrace::plugin::MetricInput;
use tailrace::{LogEvent, PipelineEvent, PipelineEventGroup};

use crate::runtime::clock::now;
use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct MetricMockConfig {
    /// Tags of every log (as LogTags).
    pub tags: BTreeMap<String, String>,
    /// Contents of every log.
    pub fields: BTreeMap<String, String>,
    /// The index before the first log (the first log gets `Index + 1`).
    pub index: i64,
}

pub const PLUGIN: (&str, PluginFactory) = ("metric_mock", PluginFactory::MetricInput(build));

fn build(_ctx: &PluginContext, detail: &Value) -> Result<Box<dyn MetricInput>, String> {
    let config: MetricMockConfig = parse_detail(detail)?;
    Ok(Box::new(MetricMock { config }))
}

struct MetricMock {
    config: MetricMockConfig,
}

impl MetricInput for MetricMock {
    fn collect(&mut self, out: &mut Vec<PipelineEventGroup>) {
        self.config.index += 1;
        let (secs, nanos) = now();
        let mut log = LogEvent::new(secs, Some(nanos));
        for (k, v) in &self.config.fields {
            log.set_content(k.clone(), v.clone());
        }
        log.set_content("Index", self.config.index.to_string());
        let mut group = PipelineEventGroup::with_capacity(1);
        for (k, v) in &self.config.tags {
            group.set_tag(k.clone(), v.clone());
        }
        group.events.push(PipelineEvent::Log(log));
        out.push(group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::registry::tests_support::context;

    #[test]
    fn emits_fields_index_and_tags() {
        let detail = serde_json::json!({"Fields": {"f1": "a"}, "Tags": {"t": "v"}});
        let mut input = build(&context("c/1"), &detail).unwrap();
        let mut out = Vec::new();
        input.collect(&mut out);
        input.collect(&mut out);
        assert_eq!(out.len(), 2);
        let PipelineEvent::Log(log) = &out[1].events[0] else {
            panic!()
        };
        assert_eq!(&log.content(b"Index").unwrap()[..], b"2");
        assert_eq!(&log.content(b"f1").unwrap()[..], b"a");
        assert_eq!(&out[1].tag(b"t").unwrap()[..], b"v");
    }

    #[test]
    fn wrong_option_type_is_an_error() {
        let err = build(&context("c/1"), &serde_json::json!({"Fields": "x"}))
            .err()
            .unwrap();
        assert!(err.contains("Fields"), "{err}");
    }
}
