//! Reading a plugin's options (the keys of its config item but `Type`) into its option struct,
//! the same way on both sides: the host's validation and the plugin base build processors from
//! the same code, so an option means the same thing wherever the plugin runs.
//!
//! Keys the struct does not take are ignored, as iLogtail does (real configs carry options of
//! other versions), but [`unknown_options`] lists them so that validation can warn about typos.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// What is wrong with one option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionError {
    /// The option, below the plugin: `Regex`, `Include.level`; empty for the options as a
    /// whole (a required option missing).
    pub field: String,
    /// What is wrong with its value.
    pub message: String,
}

impl OptionError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        OptionError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for OptionError {}

/// Deserializes `options` into `T`. The error names the option (`Keys[2]`) and says what is
/// wrong with it (serde's message: `invalid type: integer 3, expected a string`).
pub fn parse<T: DeserializeOwned>(options: &Map<String, Value>) -> Result<T, OptionError> {
    // The map is borrowed: `&Map` deserializes without cloning the config.
    let result: Result<T, _> = serde_path_to_error::deserialize(MapRef(options));
    result.map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        OptionError::new(field, e.inner().to_string())
    })
}

/// The keys of `options` that `T` does not take, as paths below the plugin (`FilePath`,
/// `Multiline.StartPatern`), in the order serde meets them.
pub fn unknown_options<T: DeserializeOwned>(options: &Map<String, Value>) -> Vec<String> {
    let mut ignored = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| ignored.push(option_path(&path));
    // Whether it parses is `parse`'s business; only the keys matter here.
    let _: Result<T, _> = serde_ignored::deserialize(MapRef(options), &mut note);
    ignored
}

/// `Multiline.StartPatern`, `Keys[3]`: where a key was ignored, below the plugin.
pub fn option_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", option_path(parent)),
        Path::Map { parent, key } => {
            let parent = option_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => option_path(parent),
    }
}

/// A borrowed options map as a deserializer (serde_json implements `Deserializer` for `&Value`
/// but not for `&Map`).
struct MapRef<'a>(&'a Map<String, Value>);

impl<'de> serde::Deserializer<'de> for MapRef<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        use serde::de::value::MapDeserializer;
        let mut map = MapDeserializer::new(self.0.iter().map(|(k, v)| (k.as_str(), v)));
        let value = visitor.visit_map(&mut map)?;
        map.end()?;
        Ok(value)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// The top-level field names (as written in configs) of a derived option struct: serde hands
/// them to `deserialize_struct`, which this deserializer records and then stops. Empty for a
/// type that is not a plain struct. Used for "did you mean" and "takes ..." in warnings.
pub fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(FieldProbe) {
        Err(ProbeDone(fields)) => fields,
        Ok(_) => &[],
    }
}

struct FieldProbe;

#[derive(Debug)]
struct ProbeDone(&'static [&'static str]);

impl fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for ProbeDone {}

impl serde::de::Error for ProbeDone {
    fn custom<M: fmt::Display>(_: M) -> Self {
        ProbeDone(&[])
    }
}

impl<'de> serde::Deserializer<'de> for FieldProbe {
    type Error = ProbeDone;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone(&[]))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    #[allow(dead_code)]
    struct Opts {
        source_key: String,
        #[serde(default)]
        keys: Vec<String>,
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn errors_name_the_option() {
        let e = parse::<Opts>(&map(json!({"SourceKey": "c", "Keys": ["a", 3]}))).unwrap_err();
        assert_eq!(e.field, "Keys[1]");
        assert!(e.message.contains("invalid type: integer `3`"), "{e}");
        let e = parse::<Opts>(&map(json!({}))).unwrap_err();
        assert_eq!(e.field, "");
        assert!(e.message.contains("missing field `SourceKey`"), "{e}");
    }

    #[test]
    fn unknown_keys_are_listed_and_fields_known() {
        let unknown = unknown_options::<Opts>(&map(json!({"SourceKey": "c", "Kyes": [], "X": 1})));
        assert_eq!(unknown, ["Kyes", "X"]);
        assert_eq!(struct_fields::<Opts>(), ["SourceKey", "Keys"]);
    }
}
