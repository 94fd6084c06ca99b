//! `aggregator_metadata_group`: packs groups by the values of some of their metadata
//! (`GroupMetadataKeys`), up to `GroupMaxEventLength` events (1024) and `GroupMaxByteLength`
//! bytes (3 MiB) a batch. As in iLogtail, a batch's metadata is the grouping keys only. Unlike
//! iLogtail, groups with different tags are not merged (their tags would be lost).
//! An event larger than `GroupMaxByteLength` on its own is sent alone with
//! `OversizeDirectOutput`, else dropped with an `AGGREGATE_OVERSIZE_ALARM`, as iLogtail does.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tailrace::plugin::Aggregator;
use tailrace::PipelineEventGroup;

use super::pack::{self, Limits, Packer};
use crate::context::statistics::event_bytes;
use crate::context::AlarmLevel;
use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory};

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct MetadataGroupConfig {
    pub group_metadata_keys: Vec<String>,
    pub group_max_event_length: usize,
    pub group_max_byte_length: usize,
    pub oversize_direct_output: bool,
}

impl Default for MetadataGroupConfig {
    fn default() -> Self {
        MetadataGroupConfig {
            group_metadata_keys: Vec::new(),
            group_max_event_length: pack::DEFAULT_MAX_EVENTS,
            group_max_byte_length: pack::DEFAULT_MAX_BYTES,
            oversize_direct_output: false,
        }
    }
}

pub const PLUGIN: (&str, PluginFactory) = (
    "aggregator_metadata_group",
    PluginFactory::Aggregator(build),
);

fn build(ctx: &PluginContext, detail: &Value) -> Result<Box<dyn Aggregator>, String> {
    let config: MetadataGroupConfig = parse_detail(detail)?;
    let limits = Limits {
        max_events: config.group_max_event_length,
        max_bytes: config.group_max_byte_length,
    }
    .checked("GroupMaxEventLength", "GroupMaxByteLength")?;
    Ok(Box::new(MetadataGroup {
        packer: Packer::new(limits),
        ctx: ctx.clone(),
        config,
    }))
}

type Key = (Vec<(Bytes, Bytes)>, Vec<String>);

struct MetadataGroup {
    config: MetadataGroupConfig,
    packer: Packer<Key>,
    ctx: PluginContext,
}

impl Aggregator for MetadataGroup {
    fn add(&mut self, mut group: PipelineEventGroup) -> Vec<PipelineEventGroup> {
        let mut shape = PipelineEventGroup {
            tags: group.tags.clone(),
            metadata: BTreeMap::new(),
            ..Default::default()
        };
        let mut values = Vec::with_capacity(self.config.group_metadata_keys.len());
        for key in &self.config.group_metadata_keys {
            let value = group.metadata(key).unwrap_or_default().to_owned();
            shape.set_metadata(key.clone(), value.clone());
            values.push(value);
        }
        let max_bytes = self.config.group_max_byte_length;
        let mut alone = Vec::new();
        let mut dropped = 0;
        group.events.retain(|event| {
            if event_bytes(event) <= max_bytes {
                return true;
            }
            if self.config.oversize_direct_output {
                let mut single = shape.clone();
                single.events.push(event.clone());
                alone.push(single);
            } else {
                dropped += 1;
            }
            false
        });
        if dropped > 0 {
            self.ctx.alarm(
                "AGGREGATE_OVERSIZE_ALARM",
                AlarmLevel::Error,
                format!(
                    "aggregator_metadata_group: {dropped} events larger than \
                     GroupMaxByteLength ({max_bytes} bytes) dropped"
                ),
            );
        }
        let key = (group.tags.clone(), values);
        let mut full = self.packer.add(key, group, || shape.clone());
        full.extend(alone);
        full
    }

    fn flush(&mut self) -> Vec<PipelineEventGroup> {
        self.packer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::aggregators::pack::test_group;
    use crate::runtime::registry::tests_support::context;

    fn with_meta(n: usize, host: &str) -> PipelineEventGroup {
        let mut g = test_group(n, "t", "x");
        g.set_metadata("host", host);
        g.set_metadata("other", "dropped");
        g
    }

    #[test]
    fn packs_by_metadata_values_and_limits() {
        let detail = serde_json::json!({"GroupMetadataKeys": ["host"], "GroupMaxEventLength": 3});
        let mut agg = build(&context("c/1"), &detail).unwrap();
        assert!(agg.add(with_meta(2, "a")).is_empty());
        assert!(agg.add(with_meta(1, "b")).is_empty());
        let full = agg.add(with_meta(2, "a"));
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].len(), 3);
        assert_eq!(full[0].metadata("host"), Some("a"));
        assert_eq!(full[0].metadata("other"), None);
        let rest = agg.flush();
        let summary: Vec<_> = rest
            .iter()
            .map(|g| (g.metadata("host").unwrap().to_owned(), g.len()))
            .collect();
        assert_eq!(summary, [("a".to_owned(), 1), ("b".to_owned(), 1)]);
    }

    #[test]
    fn oversize_events_go_alone_or_are_dropped_loudly() {
        let ctx = context("c/1");
        // A test log is 13 bytes.
        let drop = serde_json::json!({"GroupMetadataKeys": ["host"], "GroupMaxByteLength": 12});
        let mut agg = build(&ctx, &drop).unwrap();
        assert!(agg.add(with_meta(2, "a")).is_empty());
        assert!(agg.flush().is_empty());
        assert!(ctx.alarms.take_group(1).is_some());
        let direct = serde_json::json!({"GroupMetadataKeys": ["host"], "GroupMaxByteLength": 12,
            "OversizeDirectOutput": true});
        let mut agg = build(&ctx, &direct).unwrap();
        let out = agg.add(with_meta(2, "a"));
        assert_eq!(out.iter().map(|g| g.len()).collect::<Vec<_>>(), [1, 1]);
        let err = build(&ctx, &serde_json::json!({"GroupMaxByteLength": 0}))
            .err()
            .unwrap();
        assert!(err.contains("GroupMaxByteLength"), "{err}");
    }
}
