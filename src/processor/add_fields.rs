//! `processor_add_fields`: adds fixed `Fields` to every log, as iLogtail's extended processor of
//! that name. With `IgnoreIfExist`, a field the log already has keeps its value; without it, the
//! configured value replaces it (iLogtail appends a second content of the same key; one key,
//! one value is what users query by).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration =
    Registration::new::<AddFieldsConfig>("processor_add_fields", build);

/// iLogtail's options and defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AddFieldsConfig {
    /// The fields to add. Required (at least one).
    pub fields: BTreeMap<String, String>,
    /// Leave a field the log already has as it is (default false).
    pub ignore_if_exist: bool,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    let config: AddFieldsConfig = parse_options(options)?;
    if config.fields.is_empty() {
        return Err(ProcessorError::new(
            "Fields",
            "must name at least one field",
        ));
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
                // Clones of `Bytes` share the configured value: no copy per log.
                log.set_content(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use serde_json::json;

    #[test]
    fn adds_and_respects_ignore_if_exist() {
        let mut keep = build(&options(
            json!({"Fields": {"env": "prod"}, "IgnoreIfExist": true}),
        ))
        .unwrap();
        let mut group = lines(&[b"x"]);
        keep.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("content", "x"), ("env", "prod")])
        );
        keep.process(&mut group);
        let mut dev = lines(&[b"x"]);
        build(&options(json!({"Fields": {"env": "dev"}})))
            .unwrap()
            .process(&mut dev);
        keep.process(&mut dev);
        assert_eq!(
            contents(&dev, 0),
            pairs(&[("content", "x"), ("env", "dev")])
        );

        let mut replace = build(&options(json!({"Fields": {"env": "prod"}}))).unwrap();
        replace.process(&mut dev);
        assert_eq!(
            contents(&dev, 0),
            pairs(&[("content", "x"), ("env", "prod")])
        );
    }

    #[test]
    fn no_fields_or_wrong_types_are_errors() {
        let err = build(&options(json!({}))).err().unwrap();
        assert_eq!(err.field, "Fields");
        let err = build(&options(json!({"Fields": {"a": 1}}))).err().unwrap();
        assert_eq!(err.field, "Fields.a");
    }
}
