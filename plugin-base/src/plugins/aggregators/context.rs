//! `aggregator_context`: keeps each source's events together and in order, for consumers that
//! show a log in its context (the lines around it in its file). iLogtail's aggregator after a
//! file input, and Tailrace's default for a pipeline fed by the host (whose input is the host's
//! file input).
//!
//! A source is what the host's pack id names (`PREFIX-SEQ`: one prefix per file), so batches
//! from different files are never mixed, and a file's batches leave in the order its events
//! came. Options as iLogtail's: `MaxLogCount` (1024), `MaxLogGroupCount` (2; a full batch is
//! sent at once here, so only checked), `Topic`, `PackFlag` (true: each batch gets a
//! `__pack_id__` of its source, with a sequence per source), `ContextPreservationToleranceSize`
//! (accepted; Tailrace forgets a source's sequence only with the instance).

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
pub struct ContextAggregatorConfig {
    pub max_log_count: usize,
    pub max_log_group_count: usize,
    pub topic: String,
    pub pack_flag: bool,
    pub context_preservation_tolerance_size: usize,
}

impl Default for ContextAggregatorConfig {
    fn default() -> Self {
        ContextAggregatorConfig {
            max_log_count: pack::DEFAULT_MAX_EVENTS,
            max_log_group_count: 2,
            topic: String::new(),
            pack_flag: true,
            context_preservation_tolerance_size: 10,
        }
    }
}

pub const PLUGIN: (&str, PluginFactory) = ("aggregator_context", PluginFactory::Aggregator(build));

fn build(ctx: &PluginContext, detail: &Value) -> Result<Box<dyn Aggregator>, String> {
    let config: ContextAggregatorConfig = parse_detail(detail)?;
    Ok(Box::new(ContextAggregator::new(config, &ctx.config_name)?))
}

/// The default aggregator of a pipeline fed by the host: no pack ids of its own (the host's
/// flushers do not need them, and its output stays as it was sent).
pub fn default_for_host_feed() -> Box<dyn Aggregator> {
    let config = ContextAggregatorConfig {
        pack_flag: false,
        ..Default::default()
    };
    Box::new(ContextAggregator::new(config, "").expect("the defaults are valid"))
}

type Key = (String, Vec<(Bytes, Bytes)>, BTreeMap<String, String>);

struct ContextAggregator {
    packer: Packer<Key>,
    labels: BatchLabels,
}

impl ContextAggregator {
    fn new(config: ContextAggregatorConfig, config_name: &str) -> Result<Self, String> {
        pack::check_max_log_group_count(config.max_log_group_count)?;
        let limits = Limits {
            max_events: config.max_log_count,
            max_bytes: pack::DEFAULT_MAX_BYTES,
        }
        .checked("MaxLogCount", "MaxLogGroupSize")?;
        Ok(ContextAggregator {
            packer: Packer::new(limits),
            labels: BatchLabels::new(config.topic, config.pack_flag, config_name),
        })
    }
}

/// The source a group comes from: the prefix of its pack id, remembered in the batch's
/// metadata so that the batch's own pack id can name it.
fn source_of(group: &PipelineEventGroup) -> String {
    group
        .metadata(SOURCE_META)
        .or_else(|| {
            group
                .metadata(tailrace::proto::meta::PACK_ID)
                .map(|id| id.rsplit_once('-').map_or(id, |(prefix, _)| prefix))
        })
        .unwrap_or_default()
        .to_owned()
}

/// Metadata (never output) holding a batch's source.
const SOURCE_META: &str = "__context_source__";

impl Aggregator for ContextAggregator {
    fn add(&mut self, group: PipelineEventGroup) -> Vec<PipelineEventGroup> {
        let source = source_of(&group);
        let key = (
            source.clone(),
            group.tags.clone(),
            pack::metadata_without_pack_id(&group),
        );
        let mut shape = pack::shape_of(&group);
        if !source.is_empty() {
            shape.set_metadata(SOURCE_META, source);
        }
        let full = self.packer.add(key, group, || shape.clone());
        self.labels.apply(full, source_of)
    }

    fn flush(&mut self) -> Vec<PipelineEventGroup> {
        self.labels.apply(self.packer.flush(), source_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::aggregators::pack::test_group;
    use crate::runtime::registry::tests_support::context;
    use tailrace::PipelineEvent;

    fn from(source: &str, seq: u32, values: &[&str]) -> PipelineEventGroup {
        let mut g = PipelineEventGroup::default();
        for v in values {
            g.events.extend(test_group(1, "t", v).events);
        }
        g.set_metadata(tailrace::proto::meta::PACK_ID, format!("{source}-{seq:X}"));
        g
    }

    fn values(g: &PipelineEventGroup) -> Vec<String> {
        g.events
            .iter()
            .map(|e| match e {
                PipelineEvent::Log(l) => String::from_utf8_lossy(l.content(b"k").unwrap()).into(),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn keeps_each_source_apart_and_in_order() {
        let detail = serde_json::json!({"MaxLogCount": 3});
        let mut agg = build(&context("c/2"), &detail).unwrap();
        assert!(agg.add(from("FILEA", 0, &["a1", "a2"])).is_empty());
        assert!(agg.add(from("FILEB", 0, &["b1"])).is_empty());
        let full = agg.add(from("FILEA", 1, &["a3", "a4"]));
        assert_eq!(full.len(), 1);
        assert_eq!(values(&full[0]), ["a1", "a2", "a3"]);
        assert_eq!(&full[0].tag(b"__pack_id__").unwrap()[..], b"FILEA-0");
        let rest = agg.flush();
        assert_eq!(values(&rest[0]), ["a4"]);
        assert_eq!(&rest[0].tag(b"__pack_id__").unwrap()[..], b"FILEA-1");
        assert_eq!(values(&rest[1]), ["b1"]);
        assert_eq!(&rest[1].tag(b"__pack_id__").unwrap()[..], b"FILEB-0");
        assert!(agg.flush().is_empty());
    }

    #[test]
    fn the_host_feed_default_adds_no_pack_id() {
        let mut agg = default_for_host_feed();
        agg.add(from("FILEA", 0, &["a1"]));
        let out = agg.flush();
        assert!(out[0].tag(b"__pack_id__").is_none());
        let err = build(&context("c/2"), &serde_json::json!({"MaxLogGroupCount": 0}))
            .err()
            .unwrap();
        assert!(err.contains("MaxLogGroupCount"), "{err}");
    }
}
