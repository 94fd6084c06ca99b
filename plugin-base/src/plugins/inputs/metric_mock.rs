//! `metric_mock`: iLogtail's mock input. Each input interval it emits one log with the
//! configured `Fields` plus `Index` (1, 2, 3, ...), tagged with `Tags`.
//!
//! The last `Index` is kept in the plugin's checkpoint store when the pipeline stops, and the
//! next instance continues from it, so a reload or a restart neither repeats nor skips an
//! index: the test of "nothing lost" counts on it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use tailrace::plugin::MetricInput;
use tailrace::{LogEvent, PipelineEvent, PipelineEventGroup};

use crate::context::AlarmLevel;
use crate::runtime::clock::now;
use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct MetricMockConfig {
    /// Tags of every log (as LogTags).
    pub tags: BTreeMap<String, String>,
    /// Contents of every log.
    pub fields: BTreeMap<String, String>,
    /// The index before the first log (the first log gets `Index + 1`), unless a checkpoint
    /// says where a previous instance stopped.
    pub index: i64,
}

pub const PLUGIN: (&str, PluginFactory) = ("metric_mock", PluginFactory::MetricInput(build));

/// The checkpoint key of the last index emitted.
const INDEX_KEY: &str = "Index";

fn build(ctx: &PluginContext, detail: &Value) -> Result<Box<dyn MetricInput>, String> {
    let config: MetricMockConfig = parse_detail(detail)?;
    Ok(Box::new(MetricMock {
        config,
        ctx: ctx.clone(),
        resumed: false,
    }))
}

struct MetricMock {
    config: MetricMockConfig,
    ctx: PluginContext,
    /// Whether the checkpoint was read. It is read at the first collect, not when the plugin is
    /// built: a new instance may be built before the old one stopped and saved it.
    resumed: bool,
}

impl MetricMock {
    fn resume_from_checkpoint(&mut self) {
        self.resumed = true;
        match self.ctx.checkpoints().get_typed::<i64>(INDEX_KEY) {
            Ok(Some(index)) => self.config.index = index,
            Ok(None) => {}
            Err(e) => self.ctx.alarm(
                "CHECKPOINT_ALARM",
                AlarmLevel::Error,
                format!("metric_mock: cannot read its checkpoint, starts from Index: {e}"),
            ),
        }
    }
}

impl MetricInput for MetricMock {
    fn collect(&mut self, out: &mut Vec<PipelineEventGroup>) {
        if !self.resumed {
            self.resume_from_checkpoint();
        }
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

    fn stop(&mut self) {
        if !self.resumed {
            // Never collected: the checkpoint is still what it should be.
            return;
        }
        if let Err(e) = self
            .ctx
            .checkpoints()
            .save_typed(INDEX_KEY, &self.config.index)
        {
            self.ctx.alarm(
                "CHECKPOINT_ALARM",
                AlarmLevel::Error,
                format!("metric_mock: cannot save its checkpoint: {e}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::registry::tests_support::context;

    fn index_of(group: &PipelineEventGroup) -> String {
        let PipelineEvent::Log(log) = &group.events[0] else {
            panic!()
        };
        String::from_utf8_lossy(log.content(b"Index").unwrap()).into_owned()
    }

    #[test]
    fn emits_fields_index_and_tags() {
        let detail = serde_json::json!({"Fields": {"f1": "a"}, "Tags": {"t": "v"}});
        let mut input = build(&context("c/1").for_plugin("metric_mock/1"), &detail).unwrap();
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
    fn a_new_instance_continues_from_the_checkpoint() {
        let ctx = context("c/1").for_plugin("metric_mock/1");
        let detail = serde_json::json!({"Index": 10});
        let mut first = build(&ctx, &detail).unwrap();
        let mut out = Vec::new();
        first.collect(&mut out);
        first.collect(&mut out);
        first.stop();
        // The same pipeline reloaded under its other suffix, same plugin id.
        let mut reloaded_ctx = ctx.clone();
        reloaded_ctx.config_name = "c/2".into();
        let mut second = build(&reloaded_ctx, &detail).unwrap();
        second.collect(&mut out);
        assert_eq!(
            out.iter().map(index_of).collect::<Vec<_>>(),
            ["11", "12", "13"]
        );
        // Another plugin id has its own counter.
        let mut other = build(&ctx.for_plugin("metric_mock/2"), &detail).unwrap();
        out.clear();
        other.collect(&mut out);
        assert_eq!(index_of(&out[0]), "11");
    }

    #[test]
    fn wrong_option_type_is_an_error() {
        let err = build(&context("c/1"), &serde_json::json!({"Fields": "x"}))
            .err()
            .unwrap();
        assert!(err.contains("Fields"), "{err}");
    }
}
