//! `processor_rename`: renames contents (`SourceKeys[i]` → `DestKeys[i]`), as iLogtail's
//! extended processor of that name (its pipeline-event version: a renamed content replaces a
//! content that already had the new name; a key that is absent is skipped, and counted when
//! `NoKeyError` asks for it).

use bytes::Bytes;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::PipelineEventGroup;

pub const REGISTRATION: Registration = Registration::new::<RenameConfig>("processor_rename", build);

/// iLogtail's options and defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RenameConfig {
    /// Report logs that lack a source key (default false).
    pub no_key_error: bool,
    /// The keys to rename. Required.
    pub source_keys: Vec<String>,
    /// Their new names, in the same order. Required, as many as `SourceKeys`.
    pub dest_keys: Vec<String>,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(Rename::new(parse_options(options)?)?))
}

impl Rename {
    pub fn new(config: RenameConfig) -> Result<Self, ProcessorError> {
        if config.source_keys.is_empty() {
            return Err(ProcessorError::new(
                "SourceKeys",
                "must name at least one key",
            ));
        }
        if config.source_keys.len() != config.dest_keys.len() {
            return Err(ProcessorError::new(
                "DestKeys",
                format!(
                    "{} keys for {} in SourceKeys: they go in pairs",
                    config.dest_keys.len(),
                    config.source_keys.len()
                ),
            ));
        }
        let mut renames: Vec<(Bytes, Bytes)> = Vec::new();
        for (source, dest) in config.source_keys.into_iter().zip(config.dest_keys) {
            // As in iLogtail: a key renamed to itself is no rename, and the last pair for a key wins.
            if source == dest {
                continue;
            }
            renames.retain(|(s, _)| s != source.as_bytes());
            renames.push((Bytes::from(source), Bytes::from(dest)));
        }
        Ok(Rename {
            renames,
            no_key_error: config.no_key_error,
            missing: 0,
        })
    }
}

pub struct Rename {
    renames: Vec<(Bytes, Bytes)>,
    no_key_error: bool,
    /// Source keys not found (counted with `NoKeyError`).
    pub missing: u64,
}

impl Processor for Rename {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        let missing_before = self.missing;
        for log in group.logs_mut() {
            for (source, dest) in &self.renames {
                match log.remove_content(source) {
                    Some(value) => log.set_content(dest.clone(), value),
                    None if self.no_key_error => self.missing += 1,
                    None => {}
                }
            }
        }
        if self.missing > missing_before {
            tracing::debug!(
                missing = self.missing - missing_before,
                "processor_rename: source keys not found"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, lines, options, pairs};
    use super::*;
    use serde_json::json;

    #[test]
    fn renames_and_replaces() {
        let mut p = build(&options(json!({
            "SourceKeys": ["content", "lvl", "same"], "DestKeys": ["message", "level", "same"],
        })))
        .unwrap();
        let mut group = lines(&[b"hello"]);
        if let crate::PipelineEvent::Log(log) = &mut group.events[0] {
            log.set_content("lvl", "WARN");
            log.set_content("level", "old");
        }
        p.process(&mut group);
        assert_eq!(
            contents(&group, 0),
            pairs(&[("level", "WARN"), ("message", "hello")])
        );
    }

    #[test]
    fn counts_missing_keys_when_asked() {
        let config = json!({"NoKeyError": true, "SourceKeys": ["a"], "DestKeys": ["b"]});
        let mut p = Rename::new(serde_json::from_value(config).unwrap()).unwrap();
        let mut group = lines(&[b"x", b"y"]);
        p.process(&mut group);
        assert_eq!(contents(&group, 1), pairs(&[("content", "y")]));
        assert_eq!(p.missing, 2);
    }

    #[test]
    fn keys_go_in_pairs() {
        let err = build(&options(json!({"SourceKeys": ["a"], "DestKeys": []})))
            .err()
            .unwrap();
        assert_eq!(err.field, "DestKeys");
        let err = build(&options(json!({}))).err().unwrap();
        assert_eq!(err.field, "SourceKeys");
    }
}
