//! `aggregator_default`: packs processed groups into batches of up to `MaxLogCount` events;
//! groups are merged only when their tags and metadata are equal, so a batch's tags are true of
//! every event in it. Used when a pipeline names no aggregator, as in iLogtail.

use serde::Deserialize;
use serde_json::Value;
use tailrace::plugin::Aggregator;
use tailrace::PipelineEventGroup;

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
            max_log_count: 1024,
            topic: String::new(),
        }
    }
}

pub const PLUGIN: (&str, PluginFactory) = ("aggregator_default", PluginFactory::Aggregator(build));

fn build(_ctx: &PluginContext, detail: &Value) -> Result<Box<dyn Aggregator>, String> {
    let config: DefaultAggregatorConfig = parse_detail(detail)?;
    if config.max_log_count == 0 {
        return Err("MaxLogCount: must be at least 1".to_owned());
    }
    Ok(Box::new(DefaultAggregator {
        config,
        open: Vec::new(),
    }))
}

/// A default aggregator, for pipelines that name none.
pub fn default_aggregator() -> Box<dyn Aggregator> {
    Box::new(DefaultAggregator {
        config: DefaultAggregatorConfig::default(),
        open: Vec::new(),
    })
}

struct DefaultAggregator {
    config: DefaultAggregatorConfig,
    /// Batches being filled, one per distinct tags + metadata.
    open: Vec<PipelineEventGroup>,
}

impl Aggregator for DefaultAggregator {
    fn add(&mut self, mut group: PipelineEventGroup) -> Vec<PipelineEventGroup> {
        if !self.config.topic.is_empty() {
            group.set_metadata(tailrace::proto::meta::TOPIC, self.config.topic.clone());
        }
        let max = self.config.max_log_count;
        let mut full = Vec::new();
        let slot = self
            .open
            .iter()
            .position(|open| open.tags == group.tags && open.metadata == group.metadata);
        let batch = match slot {
            Some(i) => &mut self.open[i],
            None => {
                let empty = PipelineEventGroup {
                    tags: group.tags.clone(),
                    metadata: group.metadata.clone(),
                    ..Default::default()
                };
                self.open.push(empty);
                self.open.last_mut().expect("just pushed")
            }
        };
        let mut events = std::mem::take(&mut group.events).into_iter();
        loop {
            let room = max - batch.events.len();
            batch.events.extend(events.by_ref().take(room));
            if batch.events.len() < max {
                break;
            }
            let mut next = PipelineEventGroup {
                tags: batch.tags.clone(),
                metadata: batch.metadata.clone(),
                ..Default::default()
            };
            std::mem::swap(batch, &mut next);
            full.push(next);
            if events.len() == 0 {
                break;
            }
        }
        // The group is delivered when the batch holding its last event is.
        match full.last_mut() {
            Some(last) if batch.events.is_empty() => last.acks.append(&mut group.acks),
            _ => batch.acks.append(&mut group.acks),
        }
        full
    }

    fn flush(&mut self) -> Vec<PipelineEventGroup> {
        std::mem::take(&mut self.open)
            .into_iter()
            .filter(|g| {
                if g.is_empty() {
                    // Groups that had no event are done: their acknowledgements must not be lost.
                    g.acks.delivered();
                }
                !g.is_empty()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::registry::tests_support::context;
    use tailrace::{LogEvent, PipelineEvent};

    fn group(n: usize, tag: &'static str) -> PipelineEventGroup {
        let mut g = PipelineEventGroup::default();
        g.set_tag("t", tag);
        for _ in 0..n {
            g.events.push(PipelineEvent::Log(LogEvent::new(1, None)));
        }
        g
    }

    #[test]
    fn batches_by_count_and_tags() {
        let mut agg = build(&context("c"), &serde_json::json!({"MaxLogCount": 3})).unwrap();
        assert!(agg.add(group(2, "a")).is_empty());
        assert!(agg.add(group(1, "b")).is_empty());
        let full = agg.add(group(5, "a"));
        assert_eq!(full.iter().map(|g| g.len()).collect::<Vec<_>>(), vec![3, 3]);
        let rest = agg.flush();
        assert_eq!(rest.iter().map(|g| g.len()).sum::<usize>(), 2);
        assert!(rest.iter().all(|g| g.tag(b"t").is_some()));
        assert!(agg.flush().is_empty());
    }
}
