//! `aggregator_content_value_group`: packs events by the values of some of their contents
//! (`GroupKeys`, required), so that each batch holds one combination, and tags each batch with
//! it (`KEY=value`, unless the batch already has a tag of that name), as iLogtail does.
//! A missing content counts as the empty value (`ErrIfKeyNotFound`: also an alarm). `Topic`
//! sets every batch's topic; `EnablePackID` (true) tags each batch with a `__pack_id__`.
//!
//! (iLogtail's own version builds its group key without the values, so all logs land in one
//! group; Tailrace groups as the documentation says.)

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tailrace::plugin::Aggregator;
use tailrace::{PipelineEvent, PipelineEventGroup};

use super::pack::{self, BatchLabels, Limits, Packer};
use crate::context::AlarmLevel;
use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory};

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContentValueGroupConfig {
    /// The contents whose values make a group.
    pub group_keys: Vec<String>,
    pub topic: String,
    /// Raise an alarm when an event lacks one of the keys.
    pub err_if_key_not_found: bool,
    #[serde(rename = "EnablePackID")]
    pub enable_pack_id: bool,
}

impl Default for ContentValueGroupConfig {
    fn default() -> Self {
        ContentValueGroupConfig {
            group_keys: Vec::new(),
            topic: String::new(),
            err_if_key_not_found: false,
            enable_pack_id: true,
        }
    }
}

pub const PLUGIN: (&str, PluginFactory) = (
    "aggregator_content_value_group",
    PluginFactory::Aggregator(build),
);

fn build(ctx: &PluginContext, detail: &Value) -> Result<Box<dyn Aggregator>, String> {
    let config: ContentValueGroupConfig = parse_detail(detail)?;
    if config.group_keys.is_empty() {
        return Err("GroupKeys: must name at least one content key".to_owned());
    }
    Ok(Box::new(ContentValueGroup {
        packer: Packer::new(Limits::default()),
        labels: BatchLabels::new(
            config.topic.clone(),
            config.enable_pack_id,
            &ctx.config_name,
        ),
        ctx: ctx.clone(),
        config,
    }))
}

type Values = Vec<Bytes>;
type Key = (Vec<(Bytes, Bytes)>, BTreeMap<String, String>, Values);

struct ContentValueGroup {
    config: ContentValueGroupConfig,
    packer: Packer<Key>,
    labels: BatchLabels,
    ctx: PluginContext,
}

impl ContentValueGroup {
    fn values_of(&self, event: &PipelineEvent) -> (Values, Option<&str>) {
        let mut missing = None;
        let values = self
            .config
            .group_keys
            .iter()
            .map(|key| {
                let value = match event {
                    PipelineEvent::Log(log) => log.content(key.as_bytes()).cloned(),
                    _ => None,
                };
                value.unwrap_or_else(|| {
                    missing.get_or_insert(key.as_str());
                    Bytes::new()
                })
            })
            .collect();
        (values, missing)
    }
}

impl Aggregator for ContentValueGroup {
    fn add(&mut self, group: PipelineEventGroup) -> Vec<PipelineEventGroup> {
        let mut missing_key = None;
        let runs = pack::split_by_key(group, |event| {
            let (values, missing) = self.values_of(event);
            if missing_key.is_none() {
                missing_key = missing.map(str::to_owned);
            }
            values
        });
        if let (Some(key), true) = (missing_key, self.config.err_if_key_not_found) {
            self.ctx.alarm(
                "AGG_GROUP_ALARM",
                AlarmLevel::Warning,
                format!("aggregator_content_value_group: an event has no content {key:?}"),
            );
        }
        let mut full = Vec::new();
        for (values, run) in runs {
            let mut shape = pack::shape_of(&run);
            for (key, value) in self.config.group_keys.iter().zip(&values) {
                if shape.tag(key.as_bytes()).is_none() {
                    shape.set_tag(key.clone(), value.clone());
                }
            }
            let key = (
                run.tags.clone(),
                pack::metadata_without_pack_id(&run),
                values,
            );
            full.extend(self.packer.add(key, run, || shape.clone()));
        }
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
    fn one_batch_per_value_tagged_with_it() {
        let ctx = context("c/1");
        let detail = serde_json::json!({"GroupKeys": ["k"], "ErrIfKeyNotFound": true});
        let mut agg = build(&ctx, &detail).unwrap();
        let mut g = test_group(2, "t", "x");
        g.events.extend(test_group(1, "t", "y").events);
        g.events.extend(test_group(1, "t", "x").events);
        let mut no_key = PipelineEventGroup::default();
        no_key.set_tag("t", "t");
        no_key
            .events
            .push(PipelineEvent::Log(tailrace::LogEvent::new(1, None)));
        assert!(agg.add(g).is_empty());
        assert!(agg.add(no_key).is_empty());
        let out = agg.flush();
        let summary: Vec<(String, usize)> = out
            .iter()
            .map(|b| {
                (
                    String::from_utf8_lossy(b.tag(b"k").unwrap()).into(),
                    b.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [("x".into(), 3), ("y".into(), 1), (String::new(), 1)]
        );
        assert!(out.iter().all(|b| b.tag(b"__pack_id__").is_some()));
        let alarms = ctx
            .alarms
            .take_group(1)
            .expect("an alarm for the missing key");
        assert_eq!(alarms.len(), 1);
    }

    #[test]
    fn group_keys_are_required() {
        let err = build(&context("c/1"), &serde_json::json!({}))
            .err()
            .unwrap();
        assert!(err.contains("GroupKeys"), "{err}");
    }
}
