//! `processor_drop`: removes the contents named in `DropKeys` from every log, as iLogtail's
//! extended processor of that name.

use bytes::Bytes;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration = Registration::new::<DropConfig>("processor_drop", build);

/// iLogtail's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DropConfig {
    /// The keys to remove. Required (at least one).
    pub drop_keys: Vec<String>,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    let config: DropConfig = parse_options(options)?;
    if config.drop_keys.is_empty() {
        return Err(ProcessorError::new(
            "DropKeys",
            "must name at least one key",
        ));
    }
    let mut keys: Vec<Bytes> = config.drop_keys.into_iter().map(Bytes::from).collect();
    keys.sort();
    keys.dedup();
    Ok(Box::new(Drop { keys }))
}

struct Drop {
    keys: Vec<Bytes>,
}

impl Processor for Drop {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        for log in group.logs_mut() {
            log.contents.retain(|(key, _)| !self.keys.contains(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use serde_json::json;

    #[test]
    fn drops_every_named_key_and_only_those() {
        let mut p = build(&options(json!({"DropKeys": ["content", "absent"]}))).unwrap();
        let mut group = lines(&[b"x"]);
        if let crate::PipelineEvent::Log(log) = &mut group.events[0] {
            log.set_content("level", "INFO");
        }
        p.process(&mut group);
        assert_eq!(contents(&group, 0), pairs(&[("level", "INFO")]));
    }

    #[test]
    fn needs_keys() {
        let err = build(&options(json!({}))).err().unwrap();
        assert_eq!(err.field, "DropKeys");
    }
}
