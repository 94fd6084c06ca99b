//! `processor_filter_regex`: keeps only the logs whose fields match, as iLogtail's extended
//! (Go) filter: every key of `Include` must be present and its regex must match somewhere in
//! the value (Go's `MatchString`, not a full match); a log with any key of `Exclude` whose regex
//! matches is dropped. Regexes have Go's RE2 syntax, which the `regex` crate shares.

use crate::processor::retain_logs;
use std::collections::BTreeMap;

use bytes::Bytes;
use regex::bytes::Regex;
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{LogEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<FilterRegexConfig>("processor_filter_regex", build);

/// iLogtail's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct FilterRegexConfig {
    /// Field → regex: every field must exist and match.
    pub include: BTreeMap<String, String>,
    /// Field → regex: a log with any of them matching is dropped.
    pub exclude: BTreeMap<String, String>,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(GoFilterRegex::new(parse_options(options)?)?))
}

pub struct GoFilterRegex {
    include: Vec<(Bytes, Regex)>,
    exclude: Vec<(Bytes, Regex)>,
    /// Logs dropped.
    pub filtered: u64,
}

/// Compiles the regexes of one map option, naming the entry that fails.
fn compile(
    option: &str,
    map: BTreeMap<String, String>,
) -> Result<Vec<(Bytes, Regex)>, ProcessorError> {
    map.into_iter()
        .map(|(key, pattern)| match Regex::new(&pattern) {
            Ok(regex) => Ok((Bytes::from(key), regex)),
            Err(e) => Err(ProcessorError::new(
                format!("{option}.{key}"),
                format!(
                    "{pattern:?} is not a valid regex: {}",
                    super::regex_problem(&e)
                ),
            )),
        })
        .collect()
}

impl GoFilterRegex {
    pub fn new(config: FilterRegexConfig) -> Result<Self, ProcessorError> {
        Ok(GoFilterRegex {
            include: compile("Include", config.include)?,
            exclude: compile("Exclude", config.exclude)?,
            filtered: 0,
        })
    }

    fn keeps(&self, log: &LogEvent) -> bool {
        let matches = |(key, regex): &(Bytes, Regex)| {
            log.content(key).is_some_and(|value| regex.is_match(value))
        };
        self.include.iter().all(matches) && !self.exclude.iter().any(matches)
    }
}

impl Processor for GoFilterRegex {
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

    fn log(pairs: &[(&'static str, &'static str)]) -> PipelineEvent {
        let mut log = LogEvent::new(0, None);
        for (k, v) in pairs {
            log.set_content(*k, *v);
        }
        PipelineEvent::Log(log)
    }

    #[test]
    fn ilogtail_readme_example() {
        // iLogtail's README: keep logs whose ip starts with 10.200, whose method is POST or
        // PUT... and drop those whose browser is aliyun-sdk.
        let mut p = GoFilterRegex::new(
            serde_json::from_value(json!({
                "Include": {"ip": "^10\\.200\\.", "method": "^(POST|PUT)$"},
                "Exclude": {"browser": "aliyun.*"},
            }))
            .unwrap(),
        )
        .unwrap();
        let kept_post = log(&[
            ("ip", "10.200.98.220"),
            ("method", "POST"),
            ("browser", "curl"),
        ]);
        let mut group = PipelineEventGroup {
            events: vec![
                kept_post.clone(),
                log(&[
                    ("ip", "10.200.98.220"),
                    ("method", "GET"),
                    ("browser", "curl"),
                ]),
                log(&[
                    ("ip", "10.200.98.220"),
                    ("method", "PUT"),
                    ("browser", "aliyun-sdk-java"),
                ]),
                log(&[("method", "POST")]),
            ],
            ..Default::default()
        };
        p.process(&mut group);
        assert_eq!(group.events, vec![kept_post]);
        assert_eq!(p.filtered, 3);
    }

    #[test]
    fn partial_matches_count_and_bad_regexes_are_named() {
        let mut p = build(&options(json!({"Include": {"level": "ERR"}}))).unwrap();
        let mut group = PipelineEventGroup {
            events: vec![log(&[("level", "ERROR")]), log(&[("level", "INFO")])],
            ..Default::default()
        };
        p.process(&mut group);
        assert_eq!(group.events, vec![log(&[("level", "ERROR")])]);
        let err = build(&options(json!({"Exclude": {"a": "(?<=x)y"}})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Exclude.a");
    }
}
