//! `processor_fields_with_condition`: a switch over conditions on field values, as iLogtail's
//! extended processor of that name. The first case whose condition holds runs its actions
//! (`processor_add_fields` with `Fields` and `IgnoreIfExist`, `processor_drop` with
//! `DropKeys`); a log that matches no case is dropped with `DropIfNotMatchCondition`. A
//! condition compares fields by `RelationOperator` (`equals`, the default; `regexp`, a search;
//! `contains`; `startwith`), combined by `LogicalOperator` (`and`, the default, or `or`).

use std::collections::BTreeMap;

use bytes::Bytes;
use regex::bytes::Regex;
use serde::Deserialize;

use super::{parse_options, regex_problem, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{LogEvent, PipelineEvent, PipelineEventGroup};

pub const REGISTRATION: Registration =
    Registration::new::<FieldsWithConditionConfig>("processor_fields_with_condition", build);

/// iLogtail's options.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct FieldsWithConditionConfig {
    /// Drop logs that match no case (default false).
    pub drop_if_not_match_condition: bool,
    /// The cases, in order.
    pub switch: Vec<ConditionConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ConditionConfig {
    pub case: CaseConfig,
    pub actions: Vec<ActionConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CaseConfig {
    /// `and` (default) or `or`.
    pub logical_operator: String,
    /// `equals` (default), `regexp`, `contains` or `startwith`.
    pub relation_operator: String,
    /// Field → what it is compared with. Absent: the case never holds.
    pub field_conditions: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ActionConfig {
    /// `processor_add_fields` or `processor_drop` (iLogtail's lower-case key).
    #[serde(rename = "type")]
    pub action_type: String,
    pub ignore_if_exist: bool,
    pub fields: BTreeMap<String, String>,
    pub drop_keys: Vec<String>,
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(FieldsWithCondition::new(parse_options(options)?)?))
}

enum Test {
    Equals(Bytes),
    Regexp(Regex),
    Contains(Box<memchr::memmem::Finder<'static>>),
    StartsWith(Bytes),
}

impl Test {
    fn holds(&self, value: &[u8]) -> bool {
        match self {
            Test::Equals(v) => value == &v[..],
            Test::Regexp(r) => r.is_match(value),
            Test::Contains(f) => f.find(value).is_some(),
            Test::StartsWith(v) => value.starts_with(v),
        }
    }
}

enum Action {
    AddFields {
        fields: Vec<(Bytes, Bytes)>,
        ignore_if_exist: bool,
    },
    Drop(Vec<Bytes>),
    /// An action without a type: iLogtail keeps it and does nothing.
    Nothing,
}

struct Case {
    any: bool,
    /// `None`: the case never holds.
    tests: Option<Vec<(Bytes, Test)>>,
    actions: Vec<Action>,
}

pub struct FieldsWithCondition {
    cases: Vec<Case>,
    drop_unmatched: bool,
    /// Logs dropped for matching no case.
    pub filtered: u64,
}

impl FieldsWithCondition {
    pub fn new(config: FieldsWithConditionConfig) -> Result<Self, ProcessorError> {
        let mut cases = Vec::new();
        for (i, condition) in config.switch.into_iter().enumerate() {
            let field = |name: &str| format!("Switch[{i}].{name}");
            let any = match condition.case.logical_operator.as_str() {
                "or" => true,
                "and" | "" => false,
                other => {
                    tracing::warn!(
                        operator = other,
                        "processor_fields_with_condition: unknown LogicalOperator, using and"
                    );
                    false
                }
            };
            let relation = match condition.case.relation_operator.as_str() {
                op @ ("equals" | "regexp" | "contains" | "startwith") => op.to_owned(),
                "" => "equals".to_owned(),
                other => {
                    tracing::warn!(
                        operator = other,
                        "processor_fields_with_condition: unknown RelationOperator, using equals"
                    );
                    "equals".to_owned()
                }
            };
            let tests = match condition.case.field_conditions {
                None => None,
                Some(conditions) => Some(
                    conditions
                        .into_iter()
                        .map(|(key, value)| {
                            let test = match relation.as_str() {
                                "regexp" => Test::Regexp(Regex::new(&value).map_err(|e| {
                                    ProcessorError::new(
                                        field(&format!("Case.FieldConditions.{key}")),
                                        format!(
                                            "{value:?} is not a valid regex: {}",
                                            regex_problem(&e)
                                        ),
                                    )
                                })?),
                                "contains" => Test::Contains(Box::new(
                                    memchr::memmem::Finder::new(value.as_bytes()).into_owned(),
                                )),
                                "startwith" => Test::StartsWith(Bytes::from(value)),
                                _ => Test::Equals(Bytes::from(value)),
                            };
                            Ok((Bytes::from(key), test))
                        })
                        .collect::<Result<Vec<_>, ProcessorError>>()?,
                ),
            };
            let mut actions = Vec::new();
            for (j, action) in condition.actions.into_iter().enumerate() {
                actions.push(match action.action_type.as_str() {
                    "processor_add_fields" => Action::AddFields {
                        fields: action
                            .fields
                            .into_iter()
                            .map(|(k, v)| (Bytes::from(k), Bytes::from(v)))
                            .collect(),
                        ignore_if_exist: action.ignore_if_exist,
                    },
                    "processor_drop" => {
                        Action::Drop(action.drop_keys.into_iter().map(Bytes::from).collect())
                    }
                    "" => Action::Nothing,
                    other => {
                        return Err(ProcessorError::new(
                            field(&format!("Actions[{j}].type")),
                            format!("{other:?}: expected processor_add_fields or processor_drop"),
                        ))
                    }
                });
            }
            cases.push(Case {
                any,
                tests,
                actions,
            });
        }
        Ok(FieldsWithCondition {
            cases,
            drop_unmatched: config.drop_if_not_match_condition,
            filtered: 0,
        })
    }

    /// Runs the first case that holds; whether one did.
    fn apply(&self, log: &mut LogEvent) -> bool {
        for case in &self.cases {
            let Some(tests) = &case.tests else {
                continue;
            };
            let matched = tests
                .iter()
                .filter(|(key, test)| log.content(key).is_some_and(|v| test.holds(v)))
                .count();
            let holds = if case.any {
                matched > 0
            } else {
                matched == tests.len()
            };
            if !holds {
                continue;
            }
            for action in &case.actions {
                match action {
                    Action::AddFields {
                        fields,
                        ignore_if_exist,
                    } => {
                        for (k, v) in fields {
                            if !(*ignore_if_exist && log.has_content(k)) {
                                log.set_content(k.clone(), v.clone());
                            }
                        }
                    }
                    Action::Drop(keys) => log.contents.retain(|(k, _)| !keys.contains(k)),
                    Action::Nothing => {}
                }
            }
            return true;
        }
        false
    }
}

impl Processor for FieldsWithCondition {
    fn process(&mut self, group: &mut PipelineEventGroup) {
        let before = group.events.len();
        group.events.retain_mut(|event| match event {
            PipelineEvent::Log(log) => self.apply(log) || !self.drop_unmatched,
            _ => true,
        });
        self.filtered += (before - group.events.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{contents, options, pairs};
    use super::*;
    use serde_json::json;

    fn group(logs: &[&[(&'static str, &'static str)]]) -> PipelineEventGroup {
        let mut group = PipelineEventGroup::default();
        for fields in logs {
            let mut log = LogEvent::new(0, None);
            for (k, v) in *fields {
                log.set_content(*k, *v);
            }
            group.events.push(PipelineEvent::Log(log));
        }
        group
    }

    #[test]
    fn ilogtail_example_switch() {
        let mut p = build(&options(json!({
            "DropIfNotMatchCondition": true,
            "Switch": [
                {"Case": {"FieldConditions": {"seq": "10"}},
                 "Actions": [{"type": "processor_add_fields", "IgnoreIfExist": false, "Fields": {"seq_id": "10"}},
                             {"type": "processor_drop", "DropKeys": ["content"]}]},
                {"Case": {"LogicalOperator": "or", "RelationOperator": "regexp",
                          "FieldConditions": {"level": "^ERR", "msg": "timeout"}},
                 "Actions": [{"type": "processor_add_fields", "IgnoreIfExist": true, "Fields": {"alert": "yes", "level": "x"}}]},
            ],
        })))
        .unwrap();
        let mut g = group(&[
            &[("seq", "10"), ("content", "c")],
            &[("level", "INFO"), ("msg", "read timeout")],
            &[("level", "INFO"), ("msg", "ok")],
        ]);
        p.process(&mut g);
        assert_eq!(g.len(), 2);
        assert_eq!(contents(&g, 0), pairs(&[("seq", "10"), ("seq_id", "10")]));
        assert_eq!(
            contents(&g, 1),
            pairs(&[("level", "INFO"), ("msg", "read timeout"), ("alert", "yes")])
        );
    }

    #[test]
    fn operators_and_bad_options() {
        let mut p = build(&options(json!({"Switch": [
            {"Case": {"RelationOperator": "startwith", "FieldConditions": {"path": "/api"}},
             "Actions": [{"type": "processor_add_fields", "Fields": {"api": "1"}}]},
            {"Case": {"RelationOperator": "contains", "FieldConditions": {"path": "static"}},
             "Actions": [{"type": "processor_add_fields", "Fields": {"static": "1"}}]},
        ]})))
        .unwrap();
        let mut g = group(&[
            &[("path", "/api/x")],
            &[("path", "/img/static/a")],
            &[("path", "/")],
        ]);
        p.process(&mut g);
        assert_eq!(contents(&g, 0), pairs(&[("path", "/api/x"), ("api", "1")]));
        assert_eq!(
            contents(&g, 1),
            pairs(&[("path", "/img/static/a"), ("static", "1")])
        );
        assert_eq!(contents(&g, 2), pairs(&[("path", "/")]));
        let err = build(&options(json!({"Switch": [{"Case": {"RelationOperator": "regexp", "FieldConditions": {"a": "("}}}]})))
            .err()
            .unwrap();
        assert_eq!(err.field, "Switch[0].Case.FieldConditions.a");
        let err = build(&options(
            json!({"Switch": [{"Case": {}, "Actions": [{"type": "processor_json"}]}]}),
        ))
        .err()
        .unwrap();
        assert_eq!(err.field, "Switch[0].Actions[0].type");
    }
}
