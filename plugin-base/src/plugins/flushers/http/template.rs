//! The `%{content.x}` / `%{tag.x}` variables of `flusher_http`'s `Query` and `Headers`
//! (iLogtail's `FormatTopic`): a value missing from an event is replaced by its key.

use crate::plugins::flushers::convert::{Converter, Fields};

/// A `Query` or `Headers` value with iLogtail's `%{content.x}` / `%{tag.x}` variables.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Var(usize),
}

impl Template {
    /// Parses `text`, adding the variables it uses to `var_keys`.
    pub fn compile(text: &str, var_keys: &mut Vec<String>) -> Template {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("%{") {
            let Some(len) = rest[start + 2..].find('}') else {
                break;
            };
            let key = &rest[start + 2..start + 2 + len];
            if !(key.starts_with("content.") || key.starts_with("tag.")) {
                parts.push(Part::Text(rest[..start + 3 + len].to_owned()));
                rest = &rest[start + 3 + len..];
                continue;
            }
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let index = match var_keys.iter().position(|k| k == key) {
                Some(i) => i,
                None => {
                    var_keys.push(key.to_owned());
                    var_keys.len() - 1
                }
            };
            parts.push(Part::Var(index));
            rest = &rest[start + 3 + len..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Template { parts }
    }

    pub fn render(&self, vars: &[String]) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(i) => out.push_str(vars.get(*i).map(String::as_str).unwrap_or("")),
            }
        }
        out
    }
}

/// The values of `var_keys` in one event, in order: what [`Template::render`] takes.
pub fn values(converter: &Converter, var_keys: &[String], fields: &Fields) -> Vec<String> {
    var_keys
        .iter()
        .map(|key| {
            // iLogtail's FormatTopic: a missing value is replaced by its key.
            converter
                .target_value(fields, key)
                .unwrap_or(key)
                .to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::flushers::convert::tests::http_group;
    use crate::plugins::flushers::convert::{ConvertConfig, Protocol};

    #[test]
    fn variables_take_content_and_tag_values_or_their_key() {
        let group = http_group();
        let conv = Converter::new(Protocol::CustomSingle, &ConvertConfig::default());
        let mut keys = Vec::new();
        let t = Template::compile("%{content.msg}/%{tag.env}-%{tag.nope}%{+x}", &mut keys);
        let fields = conv.fields(&group);
        assert_eq!(
            t.render(&values(&conv, &keys, &fields[0])),
            "hi <b>/prod-tag.nope%{+x}"
        );
    }
}
