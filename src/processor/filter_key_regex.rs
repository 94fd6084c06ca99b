//! `processor_filter_key_regex`: keeps logs by the names of their contents, as iLogtail's
//! extended processor of that name: every regex of `Include` must match (a search) some key of
//! the log, and no key may match a regex of `Exclude`.

use crate::processor::retain_logs;
use bytes::Bytes;
use regex::bytes::Regex;
use serde::Deserialize;

use super::{parse_options, regex_problem, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{LogEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<FilterKeyRegexConfig>("processor_filter_key_regex", build);

/// iLogtail's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct FilterKeyRegexConfig {
    /// Regexes that must each match some key.
    pub include: Vec<String>,
    /// Regexes that no key may match.
    pub exclude: Vec<String>,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(FilterKeyRegex::new(parse_options(options)?)?))
}

fn compile(option: &str, patterns: Vec<String>) -> Result<Vec<Regex>, ProcessorError> {
    patterns
        .into_iter()
        .enumerate()
        .map(|(i, pattern)| {
            Regex::new(&pattern).map_err(|e| {
                ProcessorError::new(
                    format!("{option}[{i}]"),
                    format!("{pattern:?} is not a valid regex: {}", regex_problem(&e)),
                )
            })
        })
        .collect()
}

pub struct FilterKeyRegex {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    /// Logs dropped.
    pub filtered: u64,
}

impl FilterKeyRegex {
    pub fn new(config: FilterKeyRegexConfig) -> Result<Self, ProcessorError> {
        Ok(FilterKeyRegex {
            include: compile("Include", config.include)?,
            exclude: compile("Exclude", config.exclude)?,
            filtered: 0,
        })
    }

    fn keeps(&self, log: &LogEvent) -> bool {
        let keys = || log.contents.iter().map(|(k, _): &(Bytes, Bytes)| k);
        self.include.iter().all(|r| keys().any(|k| r.is_match(k)))
            && !keys().any(|k| self.exclude.iter().any(|r| r.is_match(k)))
    }
}

impl Processor for FilterKeyRegex {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        self.filtered += retain_logs(group, |log| self.keeps(log));
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::options;
    use super::*;
    use crate::PipelineEvent;
    use serde_json::json;

    fn log(keys: &[&'static str]) -> PipelineEvent {
        let mut log = LogEvent::new(0, None);
        for k in keys {
            log.set_content(*k, "v");
        }
        PipelineEvent::Log(log)
    }

    #[test]
    fn include_every_regex_exclude_any_key() {
        let mut p = FilterKeyRegex::new(
            serde_json::from_value(json!({"Include": ["^key", "^trace"], "Exclude": ["secret"]}))
                .unwrap(),
        )
        .unwrap();
        let mut group = PipelineEventGroup {
            events: vec![
                log(&["key1", "trace_id"]),
                log(&["key1"]),
                log(&["key1", "trace_id", "my_secret"]),
            ],
            ..Default::default()
        };
        p.process(&mut group);
        assert_eq!(group.events, vec![log(&["key1", "trace_id"])]);
        assert_eq!(p.filtered, 2);
        let err = build(&options(json!({"Exclude": ["ok", "("]})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Exclude[1]");
    }
}
