//! `processor_test_panic` (feature `test-faults`, tests only): panics while it is built
//! (`When: load`) or on every batch (`When: process`), to show that a panicking plugin costs its
//! own pipeline at most, with an alarm, and never crosses the C boundary.

use serde::Deserialize;
use serde_json::Value;
use tailrace::plugin::Processor;
use tailrace::PipelineEventGroup;

use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TestPanicConfig {
    /// `load` or `process`.
    pub when: String,
}

pub const PLUGIN: (&str, PluginFactory) = ("processor_test_panic", PluginFactory::Processor(build));

fn build(_ctx: &PluginContext, detail: &Value) -> Result<Box<dyn Processor>, String> {
    let config: TestPanicConfig = parse_detail(detail)?;
    match config.when.as_str() {
        "load" => panic!("processor_test_panic: asked to panic while loading"),
        "process" => Ok(Box::new(TestPanic)),
        other => Err(format!("When: expected load or process, got {other:?}")),
    }
}

struct TestPanic;

impl Processor for TestPanic {
    fn process(&mut self, _group: &mut PipelineEventGroup) {
        panic!("processor_test_panic: asked to panic while processing");
    }
}
