//! `processor_pick_key`: keeps only the contents named in `Include` and removes those named in
//! `Exclude`, as iLogtail's extended processor of that name; a log left with no contents is
//! dropped.

use bytes::Bytes;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<PickKeyConfig>("processor_pick_key", build);

/// iLogtail's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PickKeyConfig {
    /// When given, only these keys stay.
    pub include: Vec<String>,
    /// These keys go.
    pub exclude: Vec<String>,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    let config: PickKeyConfig = parse_options(options)?;
    Ok(Box::new(PickKey {
        include: config.include.into_iter().map(Bytes::from).collect(),
        exclude: config.exclude.into_iter().map(Bytes::from).collect(),
        dropped: 0,
    }))
}

pub struct PickKey {
    include: Vec<Bytes>,
    exclude: Vec<Bytes>,
    /// Logs dropped because no content was left.
    pub dropped: u64,
}

impl Processor for PickKey {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        let before = group.events.len();
        group.events.retain_mut(|event| {
            let PipelineEvent::Log(log) = event else {
                return true;
            };
            log.contents.retain(|(key, _)| {
                (self.include.is_empty() || self.include.contains(key))
                    && !self.exclude.contains(key)
            });
            !log.contents.is_empty()
        });
        self.dropped += (before - group.events.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, options, pairs};
    use super::*;
    use crate::LogEvent;
    use serde_json::json;

    fn group() -> PipelineEventGroup {
        let mut a = LogEvent::new(0, None);
        a.set_content("content", "x");
        a.set_content("level", "INFO");
        a.set_content("secret", "s");
        let mut b = LogEvent::new(0, None);
        b.set_content("secret", "s");
        PipelineEventGroup {
            events: vec![PipelineEvent::Log(a), PipelineEvent::Log(b)],
            ..Default::default()
        }
    }

    #[test]
    fn include_then_exclude_and_empty_logs_go() {
        let mut p = build(&options(
            json!({"Include": ["content", "secret"], "Exclude": ["secret"]}),
        ))
        .unwrap();
        let mut g = group();
        p.process(&mut g);
        assert_eq!(g.len(), 1);
        assert_eq!(contents(&g, 0), pairs(&[("content", "x")]));
        let mut only_exclude = build(&options(json!({"Exclude": ["level"]}))).unwrap();
        let mut g = group();
        only_exclude.process(&mut g);
        assert_eq!(contents(&g, 0), pairs(&[("content", "x"), ("secret", "s")]));
        assert_eq!(g.len(), 2);
    }
}
