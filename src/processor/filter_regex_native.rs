//! `processor_filter_regex_native`: keeps only the logs whose fields match, as iLogtail's native
//! filter. Regexes must match the whole value (boost's `regex_match`), in boost's Perl syntax
//! (look-around, backreferences: [`super::native_regex`]).
//!
//! * `FilterKey` + `FilterRegex` (iLogtail 2.0's documented form): two lists of the same
//!   length; a log is kept when every named field exists and matches its regex.
//! * `Include` (the older map form, key → regex): the same rule; used when `FilterKey` is not
//!   given.
//! * `Exclude` (key → regex, Tailrace's addition, named as in `processor_filter_regex`): a log
//!   with any named field that matches is dropped.
//!
//! A log without contents is dropped, as in iLogtail. iLogtail's `ConditionExp` expression
//! trees are not implemented: the option is rejected rather than ignored, so that a config
//! relying on it does not silently keep everything.

use crate::processor::retain_logs;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::native_regex::NativeRegex;
use super::{native_regex, parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{LogEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<FilterRegexConfig>("processor_filter_regex_native", build);

/// iLogtail's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct FilterRegexConfig {
    /// Fields that must exist and match (with `FilterRegex`, the same length).
    pub filter_key: Vec<String>,
    /// The regexes of `FilterKey`, in order.
    pub filter_regex: Vec<String>,
    /// Field → regex: every one must match (when `FilterKey` is not given).
    pub include: BTreeMap<String, String>,
    /// Field → regex: a log with any of them matching is dropped.
    pub exclude: BTreeMap<String, String>,
    /// iLogtail's condition expressions: not implemented (an error when given).
    pub condition_exp: Option<Value>,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    let config: FilterRegexConfig = parse_options(options)?;
    Ok(Box::new(FilterRegex::new(config)?))
}

pub struct FilterRegex {
    include: Vec<(Bytes, NativeRegex)>,
    exclude: Vec<(Bytes, NativeRegex)>,
    /// Logs dropped.
    pub filtered: u64,
}

impl FilterRegex {
    pub fn new(config: FilterRegexConfig) -> Result<Self, ProcessorError> {
        if config.condition_exp.is_some() {
            return Err(ProcessorError::new(
                "ConditionExp",
                "condition expressions are not implemented yet; use FilterKey and FilterRegex",
            ));
        }
        if config.filter_key.len() != config.filter_regex.len() {
            return Err(ProcessorError::new(
                "FilterRegex",
                format!(
                    "{} regexes for {} keys in FilterKey: they go in pairs",
                    config.filter_regex.len(),
                    config.filter_key.len()
                ),
            ));
        }
        let compile = |field: String,
                       key: String,
                       pattern: &str|
         -> Result<(Bytes, NativeRegex), ProcessorError> {
            Ok((Bytes::from(key), native_regex(&field, pattern, true)?))
        };
        let include: Vec<(Bytes, NativeRegex)> = if !config.filter_key.is_empty() {
            config
                .filter_key
                .into_iter()
                .zip(&config.filter_regex)
                .enumerate()
                .map(|(i, (key, pattern))| compile(format!("FilterRegex[{i}]"), key, pattern))
                .collect::<Result<_, _>>()?
        } else {
            config
                .include
                .into_iter()
                .map(|(key, pattern)| compile(format!("Include.{key}"), key, &pattern))
                .collect::<Result<_, _>>()?
        };
        let exclude: Vec<(Bytes, NativeRegex)> = config
            .exclude
            .into_iter()
            .map(|(key, pattern)| compile(format!("Exclude.{key}"), key, &pattern))
            .collect::<Result<_, _>>()?;
        if include.is_empty() && exclude.is_empty() {
            return Err(ProcessorError::new(
                "",
                "no condition: give FilterKey and FilterRegex (or Include, or Exclude)",
            ));
        }
        Ok(FilterRegex {
            include,
            exclude,
            filtered: 0,
        })
    }

    fn keeps(&mut self, log: &LogEvent) -> bool {
        if log.contents.is_empty() {
            return false;
        }
        let matches = |(key, regex): &mut (Bytes, NativeRegex)| {
            log.content(key).is_some_and(|value| regex.is_match(value))
        };
        self.include.iter_mut().all(matches) && !self.exclude.iter_mut().any(matches)
    }
}

impl Processor for FilterRegex {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        let filtered = retain_logs(group, |log| self.keeps(log));
        self.filtered += filtered;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::options;
    use super::*;
    use crate::PipelineEvent;
    use serde_json::json;

    fn access_log(method: &str, status: &str) -> PipelineEvent {
        let mut log = LogEvent::new(0, None);
        log.set_content("ip", "127.0.0.1");
        log.set_content("method", method.to_owned());
        log.set_content("status", status.to_owned());
        PipelineEvent::Log(log)
    }

    fn kept(p: &mut FilterRegex, events: Vec<PipelineEvent>) -> Vec<PipelineEvent> {
        let mut group = PipelineEventGroup {
            events,
            ..Default::default()
        };
        p.process(&mut group);
        group.events
    }

    fn filter(value: serde_json::Value) -> FilterRegex {
        FilterRegex::new(serde_json::from_value(value).unwrap()).unwrap()
    }

    #[test]
    fn ilogtail_docs_example_keeps_post_or_put_with_200() {
        let mut p = filter(json!({
            "FilterKey": ["method", "status"],
            "FilterRegex": ["^(POST|PUT)$", "^200$"],
        }));
        let out = kept(
            &mut p,
            vec![
                access_log("POST", "200"),
                access_log("Get", "200"),
                access_log("PUT", "404"),
                access_log("PUT", "200"),
                PipelineEvent::Log(LogEvent::new(0, None)),
            ],
        );
        assert_eq!(
            out,
            vec![access_log("POST", "200"), access_log("PUT", "200")]
        );
        assert_eq!(p.filtered, 3);
    }

    #[test]
    fn full_match_missing_keys_include_and_exclude() {
        let mut p =
            filter(json!({"Include": {"status": "2\\d\\d"}, "Exclude": {"method": "GET|HEAD"}}));
        let out = kept(
            &mut p,
            vec![
                access_log("POST", "201"),
                access_log("POST", "2011"),
                access_log("GET", "200"),
                access_log("GETX", "200"),
            ],
        );
        assert_eq!(
            out,
            vec![access_log("POST", "201"), access_log("GETX", "200")]
        );
        let mut missing = filter(json!({"Include": {"nope": ".*"}}));
        assert!(kept(&mut missing, vec![access_log("GET", "200")]).is_empty());
    }

    #[test]
    fn non_utf8_values_are_matched_bytewise() {
        let mut p = filter(json!({"FilterKey": ["m"], "FilterRegex": ["a.b"]}));
        let mut log = LogEvent::new(0, None);
        log.set_content("m", Bytes::from_static(b"a\xffb"));
        assert_eq!(kept(&mut p, vec![PipelineEvent::Log(log)]).len(), 1);
    }

    #[test]
    fn perl_syntax_as_boost() {
        // Negative look-ahead: every method but GET; a backreference: repeated digit pairs.
        let mut p = filter(json!({
            "FilterKey": ["method", "status"],
            "FilterRegex": ["(?!GET$)[A-Z]+", r"(\d)\1\d"],
        }));
        let out = kept(
            &mut p,
            vec![
                access_log("POST", "200"),
                access_log("GET", "200"),
                access_log("PUT", "404"),
                access_log("GETX", "550"),
            ],
        );
        assert_eq!(
            out,
            vec![access_log("GETX", "550")],
            "POST 200 has no repeated digit, GET is excluded, 404 neither"
        );
    }

    #[test]
    fn bad_options_name_the_field() {
        let err = build(&options(json!({"FilterKey": ["a"], "FilterRegex": []})))
            .err()
            .unwrap();
        assert_eq!(err.field, "FilterRegex");
        let err = build(&options(
            json!({"FilterKey": ["a", "b"], "FilterRegex": ["x", "("]}),
        ))
        .err()
        .unwrap();
        assert_eq!(err.field, "FilterRegex[1]");
        let err = build(&options(json!({"Include": {"level": "[a-"}})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Include.level");
        assert!(
            err.message.starts_with("\"[a-\" is not a valid regex"),
            "{err}"
        );
        let err = build(&options(json!({"Exclude": {"path": r"(?<=\w*)x"}})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Exclude.path");
        let err = build(&options(json!({}))).err().unwrap();
        assert!(err.message.contains("no condition"), "{err}");
        let err = build(&options(json!({"ConditionExp": {}}))).err().unwrap();
        assert_eq!(err.field, "ConditionExp");
    }
}
