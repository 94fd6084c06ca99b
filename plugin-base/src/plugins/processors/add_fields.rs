//! `processor_add_fields`: adds fixed `Fields` to every log. With `IgnoreIfExist`, a field the
//! log already has keeps its value; without it, the configured value replaces it (iLogtail
//! appends a second content of the same key; one key, one value is what users query by).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tailrace::plugin::Processor;
use tailrace::PipelineEventGroup;

use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AddFieldsConfig {
    pub fields: BTreeMap<String, String>,
    pub ignore_if_exist: bool,
}

pub const PLUGIN: (&str, PluginFactory) = ("processor_add_fields", PluginFactory::Processor(build));

fn build(_ctx: &PluginContext, detail: &Value) -> Result<Box<dyn Processor>, String> {
    let config: AddFieldsConfig = parse_detail(detail)?;
    if config.fields.is_empty() {
        return Err("Fields: must name at least one field".to_owned());
    }
    Ok(Box::new(AddFields {
        fields: config
            .fields
            .into_iter()
            .map(|(k, v)| (Bytes::from(k), Bytes::from(v)))
            .collect(),
        ignore_if_exist: config.ignore_if_exist,
    }))
}

struct AddFields {
    fields: Vec<(Bytes, Bytes)>,
    ignore_if_exist: bool,
}

impl Processor for AddFields {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        for log in group.logs_mut() {
            for (k, v) in &self.fields {
                if self.ignore_if_exist && log.has_content(k) {
                    continue;
                }
                log.set_content(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::registry::tests_support::context;
    use tailrace::{LogEvent, PipelineEvent};

    fn group_with(pairs: &[(&'static str, &'static str)]) -> PipelineEventGroup {
        let mut log = LogEvent::new(1, None);
        for (k, v) in pairs {
            log.set_content(*k, *v);
        }
        let mut group = PipelineEventGroup::default();
        group.events.push(PipelineEvent::Log(log));
        group
    }

    fn value(group: &PipelineEventGroup, key: &[u8]) -> Vec<u8> {
        let PipelineEvent::Log(log) = &group.events[0] else {
            panic!()
        };
        log.content(key).unwrap().to_vec()
    }

    #[test]
    fn adds_and_respects_ignore_if_exist() {
        let ctx = context("c/2");
        let mut keep = build(
            &ctx,
            &serde_json::json!({"Fields": {"env": "prod"}, "IgnoreIfExist": true}),
        )
        .unwrap();
        let mut group = group_with(&[("env", "dev")]);
        keep.process(&mut group);
        assert_eq!(value(&group, b"env"), b"dev");
        let mut group = group_with(&[("msg", "x")]);
        keep.process(&mut group);
        assert_eq!(value(&group, b"env"), b"prod");

        let mut replace = build(&ctx, &serde_json::json!({"Fields": {"env": "prod"}})).unwrap();
        let mut group = group_with(&[("env", "dev")]);
        replace.process(&mut group);
        assert_eq!(value(&group, b"env"), b"prod");
    }

    #[test]
    fn no_fields_is_an_error() {
        assert!(build(&context("c/2"), &serde_json::json!({})).is_err());
    }
}
