//! `aggregator_default`: `aggregator_base` without pack ids, iLogtail's aggregator for a
//! pipeline with inputs of its own that names none. Options: `MaxLogCount`, `Topic`.

use serde::Deserialize;
use serde_json::Value;
use tailrace::plugin::Aggregator;

use super::base::{BaseAggregator, BaseAggregatorConfig};
use super::pack;
use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory};

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DefaultAggregatorConfig {
    /// Events per batch (iLogtail's default: 1024).
    pub max_log_count: usize,
    /// A topic for every batch, when set.
    pub topic: String,
}

impl Default for DefaultAggregatorConfig {
    fn default() -> Self {
        DefaultAggregatorConfig {
            max_log_count: pack::DEFAULT_MAX_EVENTS,
            topic: String::new(),
        }
    }
}

pub const PLUGIN: (&str, PluginFactory) = ("aggregator_default", PluginFactory::Aggregator(build));

fn build(ctx: &PluginContext, detail: &Value) -> Result<Box<dyn Aggregator>, String> {
    let config: DefaultAggregatorConfig = parse_detail(detail)?;
    with(config, &ctx.config_name)
}

fn with(config: DefaultAggregatorConfig, name: &str) -> Result<Box<dyn Aggregator>, String> {
    let base = BaseAggregatorConfig {
        max_log_count: config.max_log_count,
        topic: config.topic,
        pack_flag: false,
        ..Default::default()
    };
    Ok(Box::new(BaseAggregator::new(base, name)?))
}

/// A default aggregator, for pipelines with inputs that name none.
pub fn default_aggregator() -> Box<dyn Aggregator> {
    with(DefaultAggregatorConfig::default(), "").expect("the defaults are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::aggregators::pack::test_group;
    use crate::runtime::registry::tests_support::context;

    #[test]
    fn batches_by_count_and_tags() {
        let mut agg = build(&context("c"), &serde_json::json!({"MaxLogCount": 3})).unwrap();
        assert!(agg.add(test_group(2, "a", "x")).is_empty());
        assert!(agg.add(test_group(1, "b", "x")).is_empty());
        let full = agg.add(test_group(5, "a", "x"));
        assert_eq!(full.iter().map(|g| g.len()).collect::<Vec<_>>(), vec![3, 3]);
        let rest = agg.flush();
        assert_eq!(rest.iter().map(|g| g.len()).sum::<usize>(), 2);
        assert!(rest.iter().all(|g| g.tag(b"t").is_some()));
        assert!(rest.iter().all(|g| g.tag(b"__pack_id__").is_none()));
        assert!(agg.flush().is_empty());
        let err = build(&context("c"), &serde_json::json!({"MaxLogCount": 0}))
            .err()
            .unwrap();
        assert!(err.contains("MaxLogCount"), "{err}");
    }
}
