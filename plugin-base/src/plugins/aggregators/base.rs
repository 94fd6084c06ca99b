//! `aggregator_base`: iLogtail's basic aggregator. Packs events into batches of up to
//! `MaxLogCount` events and `MaxLogGroupSize` bytes (iLogtail's fixed 3 MiB, an option here),
//! sent when full and at every aggregation interval; `Topic` sets every batch's topic;
//! `PackFlag` tags each batch with a `__pack_id__` (`PREFIX-SEQ`), as iLogtail does.
//!
//! Groups are packed together only when their tags and metadata are equal (pack ids aside), so
//! a batch's tags are true of every event in it.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tailrace::plugin::Aggregator;
use tailrace::PipelineEventGroup;

use super::pack::{self, BatchLabels, Limits, Packer};
use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory};

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct BaseAggregatorConfig {
    /// Events per batch (iLogtail: 1024).
    pub max_log_count: usize,
    /// Bytes per batch, as iLogtail estimates a log's size (iLogtail: 3 MiB, fixed).
    pub max_log_group_size: usize,
    /// iLogtail's count of full batches held per key before the oldest is sent (4). Tailrace
    /// sends a batch as soon as it is full, so it only has to be at least 1.
    pub max_log_group_count: usize,
    /// Tag each batch with a `__pack_id__`.
    pub pack_flag: bool,
    /// The topic of every batch, when set.
    pub topic: String,
}

impl Default for BaseAggregatorConfig {
    fn default() -> Self {
        BaseAggregatorConfig {
            max_log_count: pack::DEFAULT_MAX_EVENTS,
            max_log_group_size: pack::DEFAULT_MAX_BYTES,
            max_log_group_count: 4,
            pack_flag: true,
            topic: String::new(),
        }
    }
}

pub const PLUGIN: (&str, PluginFactory) = ("aggregator_base", PluginFactory::Aggregator(build));

fn build(ctx: &PluginContext, detail: &Value) -> Result<Box<dyn Aggregator>, String> {
    let config: BaseAggregatorConfig = parse_detail(detail)?;
    Ok(Box::new(BaseAggregator::new(config, &ctx.config_name)?))
}

type Key = (Vec<(Bytes, Bytes)>, BTreeMap<String, String>);

/// The aggregator; `aggregator_default` is this one without pack ids.
pub struct BaseAggregator {
    packer: Packer<Key>,
    labels: BatchLabels,
}

impl BaseAggregator {
    pub fn new(config: BaseAggregatorConfig, config_name: &str) -> Result<BaseAggregator, String> {
        pack::check_max_log_group_count(config.max_log_group_count)?;
        let limits = Limits {
            max_events: config.max_log_count,
            max_bytes: config.max_log_group_size,
        }
        .checked("MaxLogCount", "MaxLogGroupSize")?;
        Ok(BaseAggregator {
            packer: Packer::new(limits),
            labels: BatchLabels::new(config.topic, config.pack_flag, config_name),
        })
    }
}

impl Aggregator for BaseAggregator {
    fn add(&mut self, group: PipelineEventGroup) -> Vec<PipelineEventGroup> {
        let key = (group.tags.clone(), pack::metadata_without_pack_id(&group));
        let shape = pack::shape_of(&group);
        let full = self.packer.add(key, group, || shape.clone());
        self.labels.apply(full, |_| String::new())
    }

    fn flush(&mut self) -> Vec<PipelineEventGroup> {
        self.labels.apply(self.packer.flush(), |_| String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::aggregators::pack::test_group;
    use crate::runtime::registry::tests_support::context;

    #[test]
    fn packs_by_count_size_and_tags_with_topic_and_pack_ids() {
        let detail = serde_json::json!({"MaxLogCount": 3, "Topic": "tp"});
        let mut agg = build(&context("c/1"), &detail).unwrap();
        assert!(agg.add(test_group(2, "a", "x")).is_empty());
        assert!(agg.add(test_group(1, "b", "x")).is_empty());
        let full = agg.add(test_group(5, "a", "x"));
        assert_eq!(full.iter().map(|g| g.len()).collect::<Vec<_>>(), [3, 3]);
        let rest = agg.flush();
        assert_eq!(rest.iter().map(|g| g.len()).collect::<Vec<_>>(), [1, 1]);
        let all: Vec<_> = full.iter().chain(&rest).collect();
        assert!(all.iter().all(|g| g.metadata("__topic__") == Some("tp")));
        let ids: std::collections::BTreeSet<_> = all
            .iter()
            .map(|g| g.tag(b"__pack_id__").unwrap().clone())
            .collect();
        assert_eq!(ids.len(), 4, "one pack id per batch");
        assert!(agg.flush().is_empty());

        // 13 bytes a log (see pack.rs): 30 bytes hold 2.
        let by_size = serde_json::json!({"MaxLogGroupSize": 30, "PackFlag": false});
        let mut agg = build(&context("c/1"), &by_size).unwrap();
        let full = agg.add(test_group(5, "a", "x"));
        assert_eq!(full.iter().map(|g| g.len()).collect::<Vec<_>>(), [2, 2]);
        assert!(full[0].tag(b"__pack_id__").is_none());
    }

    #[test]
    fn bad_options_name_the_field() {
        for (detail, field) in [
            (serde_json::json!({"MaxLogCount": 0}), "MaxLogCount"),
            (serde_json::json!({"MaxLogGroupSize": 0}), "MaxLogGroupSize"),
            (serde_json::json!({"MaxLogCount": "x"}), "MaxLogCount"),
            (
                serde_json::json!({"MaxLogGroupCount": 0}),
                "MaxLogGroupCount",
            ),
        ] {
            let err = build(&context("c/1"), &detail).err().unwrap();
            assert!(err.contains(field), "{err}");
        }
    }
}
