//! Pipeline configs: iLogtail 2.0's format, one YAML or JSON file per pipeline, the file name
//! (without extension) being the pipeline's name.
//!
//! `load` parses and validates a file into a [`PipelineConfig`] whose plugins are each marked
//! native (run by the host) or extended (run by the plugin base); every problem is a
//! [`ConfigError`] naming the file, the field and the value.
//!
//! Options that a native plugin does not take are warnings, not errors, as in iLogtail (which
//! ignores unknown keys): a config written for iLogtail still loads, but a typo such as
//! `FilePath` for `FilePaths` no longer passes in silence. [`check`] returns them beside the
//! result; the watcher logs them and `validate` prints them.

pub mod catalog;
pub mod watcher;

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::flusher;
use crate::input;
use crate::processor;

/// One problem with one config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Where in the file: `inputs[0].FilePaths`, or empty for the file as a whole.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            )
        }
    }
}

/// Where a plugin runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In the host.
    Native,
    /// In the plugin base: Tailrace's implements it.
    Extended,
    /// An iLogtail plugin that neither the host nor Tailrace's base implements: it can run only
    /// in a third-party plugin base (iLogtail's own, for one). `validate` rejects it; the daemon
    /// hands it to a third-party base with a warning, and rejects it otherwise.
    ThirdParty,
}

impl Placement {
    /// Whether the plugin runs in the plugin base.
    pub fn in_base(self) -> bool {
        self != Placement::Native
    }
}

/// What Tailrace implements nowhere in `config`: one error per plugin that only a third-party
/// plugin base could run.
pub fn plugins_not_implemented(config: &PipelineConfig) -> Vec<ConfigError> {
    [
        &config.inputs,
        &config.processors,
        &config.aggregators,
        &config.flushers,
        &config.extensions,
    ]
    .into_iter()
    .flatten()
    .filter(|p| p.placement == Placement::ThirdParty)
    .map(|p| {
        error(
            &config.file,
            format!("{}.Type", p.field),
            format!(
                "{:?} is an iLogtail plugin that Tailrace does not implement yet (only a \
                 third-party plugin base could run it)",
                p.plugin_type
            ),
        )
    })
    .collect()
}

/// The four sections of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Inputs,
    Processors,
    Aggregators,
    Flushers,
    Extensions,
}

impl Section {
    pub fn key(self) -> &'static str {
        match self {
            Section::Inputs => "inputs",
            Section::Processors => "processors",
            Section::Aggregators => "aggregators",
            Section::Flushers => "flushers",
            Section::Extensions => "extensions",
        }
    }
}

/// One plugin of a pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginConfig {
    /// `Type`, as written (iLogtail suffixes kept).
    pub plugin_type: String,
    /// Where it stands: `processors[2]`.
    pub field: String,
    pub placement: Placement,
    /// Every key but `Type`.
    pub options: Map<String, Value>,
}

impl PluginConfig {
    /// The registry name (`Type` without `/id` and `#priority`).
    pub fn kind(&self) -> &str {
        tailrace::plugin_config::plugin_kind(&self.plugin_type)
    }
}

/// A parsed, validated pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    pub name: String,
    pub file: PathBuf,
    pub enable: bool,
    pub global: Map<String, Value>,
    pub inputs: Vec<PluginConfig>,
    pub processors: Vec<PluginConfig>,
    pub aggregators: Vec<PluginConfig>,
    pub flushers: Vec<PluginConfig>,
    pub extensions: Vec<PluginConfig>,
}

/// Whether a path is a config file (by extension).
pub fn is_config_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The pipeline name of a config file: its name without extension.
pub fn pipeline_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What checking a config found: the pipeline or its errors, and the warnings either way
/// (options that were ignored).
pub struct Checked {
    pub result: Result<PipelineConfig, Vec<ConfigError>>,
    pub warnings: Vec<ConfigError>,
}

/// Reads, parses and validates a config file. All problems found are returned, not just the
/// first.
pub fn load(path: &Path) -> Checked {
    match std::fs::read(path) {
        Ok(text) => check(path, &text),
        Err(e) => Checked {
            result: Err(vec![error(path, "", format!("cannot read: {e}"))]),
            warnings: Vec::new(),
        },
    }
}

/// Parses and validates config text as the file `path` (warnings dropped: see [`check`]).
/// For callers that only need the pipeline (the pipeline tests).
#[allow(dead_code)]
pub fn parse(path: &Path, text: &[u8]) -> Result<PipelineConfig, Vec<ConfigError>> {
    check(path, text).result
}

/// Parses and validates config text as the file `path`, with the warnings.
pub fn check(path: &Path, text: &[u8]) -> Checked {
    let mut warnings = Vec::new();
    let result = parse_value(path, text).and_then(|value| {
        let mut errors = Vec::new();
        let config = validate(path, value, &mut errors, &mut warnings);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    });
    // The top-level keys come sorted by name (serde_json's map); report in the file's order.
    let rank = |w: &ConfigError| {
        let section = w.field.split('[').next().unwrap_or_default();
        [
            "inputs",
            "processors",
            "aggregators",
            "flushers",
            "extensions",
        ]
        .iter()
        .position(|s| *s == section)
        .unwrap_or(usize::MAX)
    };
    warnings.sort_by_key(rank);
    Checked { result, warnings }
}

fn parse_value(path: &Path, text: &[u8]) -> Result<Value, Vec<ConfigError>> {
    let text = std::str::from_utf8(text)
        .map_err(|e| vec![error(path, "", format!("not valid UTF-8: {e}"))])?;
    let is_json = path.extension().and_then(|e| e.to_str()) == Some("json");
    if is_json {
        serde_json::from_str(text).map_err(|e| vec![error(path, "", format!("invalid JSON: {e}"))])
    } else {
        serde_yaml::from_str(text).map_err(|e| vec![error(path, "", format!("invalid YAML: {e}"))])
    }
}

fn error(file: &Path, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        field: field.into(),
        message: message.into(),
    }
}

/// A value as it appears in a message: JSON, shortened.
pub fn show(value: &Value) -> String {
    let mut s = value.to_string();
    if s.len() > 80 {
        s.truncate(77);
        s.push_str("...");
    }
    s
}

fn validate(
    path: &Path,
    value: Value,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> PipelineConfig {
    let mut config = PipelineConfig {
        name: pipeline_name(path),
        file: path.to_owned(),
        enable: true,
        global: Map::new(),
        inputs: Vec::new(),
        processors: Vec::new(),
        aggregators: Vec::new(),
        flushers: Vec::new(),
        extensions: Vec::new(),
    };
    let Value::Object(top) = value else {
        errors.push(error(
            path,
            "",
            format!("expected a mapping at the top, got {}", show(&value)),
        ));
        return config;
    };
    for (key, value) in top {
        match key.as_str() {
            "enable" => match value {
                Value::Bool(b) => config.enable = b,
                other => errors.push(error(path, "enable", format!("expected true or false, got {}", show(&other)))),
            },
            "global" => match value {
                Value::Object(map) => config.global = map,
                Value::Null => {}
                other => errors.push(error(path, "global", format!("expected a mapping, got {}", show(&other)))),
            },
            "inputs" => config.inputs = plugins(path, Section::Inputs, value, errors, warnings),
            "processors" => config.processors = plugins(path, Section::Processors, value, errors, warnings),
            "aggregators" => config.aggregators = plugins(path, Section::Aggregators, value, errors, warnings),
            "flushers" => config.flushers = plugins(path, Section::Flushers, value, errors, warnings),
            "extensions" => config.extensions = plugins(path, Section::Extensions, value, errors, warnings),
            // iLogtail's config server adds these; they carry nothing for the pipeline.
            "createTime" | "configName" | "version" => {}
            other => errors.push(error(path, other, "unknown top-level key (expected enable, global, inputs, processors, aggregators, flushers, extensions)")),
        }
    }
    place_processors(&mut config);
    check_structure(path, &config, errors);
    config
}

/// Where each processor runs (DESIGN §5). With a native input the host runs the chain up to the
/// first processor it lacks, and the plugin base the rest of it: data crosses to the base once
/// per batch and never comes back for a processor. With an extended input the base runs the
/// whole chain, with the same processors (it registers every one the host has).
fn place_processors(config: &mut PipelineConfig) {
    let native_input = config
        .inputs
        .iter()
        .any(|p| p.placement == Placement::Native);
    let mut in_base = !native_input;
    for p in &mut config.processors {
        if p.placement != Placement::Native {
            in_base = true;
        } else if in_base {
            p.placement = Placement::Extended;
        }
    }
}

fn plugins(
    path: &Path,
    section: Section,
    value: Value,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Vec<PluginConfig> {
    let key = section.key();
    let items = match value {
        Value::Array(items) => items,
        Value::Null => return Vec::new(),
        other => {
            errors.push(error(
                path,
                key,
                format!("expected a list of plugins, got {}", show(&other)),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let field = format!("{key}[{i}]");
        let Value::Object(mut options) = item else {
            errors.push(error(
                path,
                &field,
                format!("expected a mapping with a Type, got {}", show(&item)),
            ));
            continue;
        };
        let plugin_type = match options.remove("Type") {
            Some(Value::String(t)) if !t.is_empty() => t,
            Some(other) => {
                errors.push(error(
                    path,
                    format!("{field}.Type"),
                    format!("expected a plugin type name, got {}", show(&other)),
                ));
                continue;
            }
            None => {
                errors.push(error(
                    path,
                    format!("{field}.Type"),
                    "missing (every plugin needs a Type)",
                ));
                continue;
            }
        };
        let kind = tailrace::plugin_config::plugin_kind(&plugin_type).to_owned();
        let placement = match placement(section, &kind) {
            Some(p) => p,
            None => {
                let known_elsewhere = match section {
                    Section::Inputs => catalog::ILOGTAIL_NATIVE_INPUTS.contains(&kind.as_str()),
                    Section::Processors => {
                        catalog::ILOGTAIL_NATIVE_PROCESSORS.contains(&kind.as_str())
                    }
                    Section::Flushers => catalog::ILOGTAIL_NATIVE_FLUSHERS.contains(&kind.as_str()),
                    Section::Aggregators | Section::Extensions => false,
                };
                let message = if known_elsewhere {
                    format!("{plugin_type:?} is an iLogtail native {} that Tailrace does not implement yet", singular(section))
                } else {
                    format!("unknown {} type {plugin_type:?}", singular(section))
                };
                errors.push(error(path, format!("{field}.Type"), message));
                continue;
            }
        };
        let plugin = PluginConfig {
            plugin_type,
            field: field.clone(),
            placement,
            options,
        };
        if placement == Placement::Native {
            let (checked, ignored) = collect_ignored(|| check_native_options(section, &plugin));
            if let Err(e) = checked {
                errors.push(error(path, e.0, e.1));
            }
            for option in ignored {
                let message = option.message(plugin.kind());
                warnings.push(error(path, option.field, message));
            }
        }
        out.push(plugin);
    }
    out
}

fn singular(section: Section) -> &'static str {
    match section {
        Section::Inputs => "input",
        Section::Processors => "processor",
        Section::Aggregators => "aggregator",
        Section::Flushers => "flusher",
        Section::Extensions => "extension",
    }
}

/// Native if the host implements it; extended if Tailrace's plugin base does; third-party if
/// only iLogtail's Go base has it; unknown otherwise. An iLogtail native plugin the host does
/// not implement yet is unknown too: the message says so.
fn placement(section: Section, kind: &str) -> Option<Placement> {
    let native = match section {
        Section::Inputs => input::NATIVE_INPUTS.contains(&kind),
        Section::Processors => processor::is_native(kind),
        Section::Aggregators | Section::Extensions => false,
        Section::Flushers => flusher::NATIVE_FLUSHERS.contains(&kind),
    };
    if native {
        return Some(Placement::Native);
    }
    use tailrace::plugin_config as base;
    let (ours, ilogtail) = match section {
        Section::Inputs => (base::BASE_INPUTS, catalog::EXTENDED_INPUTS),
        Section::Processors => (base::BASE_PROCESSORS, catalog::EXTENDED_PROCESSORS),
        Section::Aggregators => (base::BASE_AGGREGATORS, catalog::EXTENDED_AGGREGATORS),
        Section::Flushers => (base::BASE_FLUSHERS, catalog::EXTENDED_FLUSHERS),
        Section::Extensions => (base::BASE_EXTENSIONS, catalog::EXTENDED_EXTENSIONS),
    };
    if ours.contains(&kind) {
        Some(Placement::Extended)
    } else if ilogtail.contains(&kind) {
        Some(Placement::ThirdParty)
    } else {
        None
    }
}

fn check_native_options(section: Section, plugin: &PluginConfig) -> Result<(), (String, String)> {
    match section {
        Section::Inputs => input::check_options(plugin),
        Section::Processors => processor::check_options(plugin),
        Section::Flushers => flusher::check_options(plugin),
        Section::Aggregators | Section::Extensions => Ok(()),
    }
}

/// Deserializes a native plugin's options into its option struct. An error names the field
/// (`flushers[0].MaxSizeKB`) and says what is wrong. Keys the struct does not take are ignored,
/// as iLogtail does; while a config is being validated ([`collect_ignored`]) they are noted, so
/// that they become warnings.
pub fn parse_options<T: DeserializeOwned>(plugin: &PluginConfig) -> Result<T, (String, String)> {
    if collecting_ignored() {
        note_ignored(
            plugin,
            tailrace::plugin_options::unknown_options::<T>(&plugin.options),
            tailrace::plugin_options::struct_fields::<T>(),
        );
    }
    tailrace::plugin_options::parse(&plugin.options).map_err(|e| {
        let field = if e.field.is_empty() {
            plugin.field.clone()
        } else {
            format!("{}.{}", plugin.field, e.field)
        };
        (field, e.message)
    })
}

/// Whether a config check is collecting ignored options now (so that building a pipeline from
/// a checked config does not look for them again).
pub fn collecting_ignored() -> bool {
    IGNORED.with(|c| c.borrow().is_some())
}

/// Notes options of `plugin` that it does not take (`keys`, below the plugin), while a config
/// is being validated ([`collect_ignored`]); `known` are the options it takes.
pub fn note_ignored(plugin: &PluginConfig, keys: Vec<String>, known: &'static [&'static str]) {
    if keys.is_empty() {
        return;
    }
    IGNORED.with(|collector| {
        if let Some(found) = collector.borrow_mut().as_mut() {
            found.extend(keys.into_iter().map(|key| IgnoredOption {
                field: format!("{}.{key}", plugin.field),
                key,
                known,
            }));
        }
    });
}

thread_local! {
    /// Where [`parse_options`] notes ignored keys while [`collect_ignored`] runs. Outside of it
    /// (when a pipeline is built from a config that was already checked) nothing is noted.
    static IGNORED: RefCell<Option<Vec<IgnoredOption>>> = const { RefCell::new(None) };
}

/// A key of a native plugin's options that its option struct does not take.
#[derive(Debug)]
struct IgnoredOption {
    /// Where it stands: `inputs[0].FilePath`.
    field: String,
    /// The key below the plugin: `FilePath`, `Multiline.StartPatern`.
    key: String,
    /// The top-level options the plugin takes (for "did you mean").
    known: &'static [&'static str],
}

impl IgnoredOption {
    fn message(&self, kind: &str) -> String {
        if not_implemented(kind).contains(&self.key.as_str()) {
            return "an iLogtail option that Tailrace does not implement yet; ignored".to_owned();
        }
        let top_level = !self.key.contains('.');
        match suggestion(&self.key, self.known) {
            Some(near) if top_level => format!("unknown option (did you mean {near}?); ignored"),
            _ if top_level && !self.known.is_empty() => format!(
                "unknown option; ignored ({kind} takes {})",
                self.known.join(", ")
            ),
            _ => "unknown option; ignored".to_owned(),
        }
    }
}

/// Options of iLogtail's native plugins that Tailrace accepts but does not act on yet.
fn not_implemented(kind: &str) -> &'static [&'static str] {
    match kind {
        "input_file" => input::file::config::NOT_IMPLEMENTED,
        _ => &[],
    }
}

/// Runs `f` (which checks native options with [`parse_options`]) and returns the options that
/// were ignored on the way.
fn collect_ignored<R>(f: impl FnOnce() -> R) -> (R, Vec<IgnoredOption>) {
    let outer = IGNORED.with(|c| c.borrow_mut().replace(Vec::new()));
    let result = f();
    let found = IGNORED.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (result, found.unwrap_or_default())
}

/// The known option closest to `key`, if one is close enough to be a likely typo: the same but
/// for case, or a few edits away.
fn suggestion(key: &str, known: &[&'static str]) -> Option<&'static str> {
    if let Some(same) = known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
        return Some(same);
    }
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.len().max(key.len()) / 4).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance (on bytes: option names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// Rules across plugins: one kind of input, at least one input and one flusher. (Processors
/// may come in any order: [`place_processors`] decides where each runs.)
fn check_structure(path: &Path, config: &PipelineConfig, errors: &mut Vec<ConfigError>) {
    if config.inputs.is_empty() && errors.iter().all(|e| !e.field.starts_with("inputs")) {
        errors.push(error(path, "inputs", "a pipeline needs at least one input"));
    }
    if config.flushers.is_empty() && errors.iter().all(|e| !e.field.starts_with("flushers")) {
        errors.push(error(
            path,
            "flushers",
            "a pipeline needs at least one flusher",
        ));
    }
    let native_inputs = config
        .inputs
        .iter()
        .filter(|p| p.placement == Placement::Native)
        .count();
    if native_inputs > 0 && native_inputs < config.inputs.len() {
        errors.push(error(
            path,
            "inputs",
            "native and extended inputs cannot be mixed in one pipeline",
        ));
    }
    if native_inputs > 1 {
        errors.push(error(path, "inputs", "only one native input per pipeline"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(name: &str, text: &str) -> Vec<ConfigError> {
        parse(Path::new(name), text.as_bytes()).unwrap_err()
    }

    fn one_error(name: &str, text: &str) -> ConfigError {
        let errors = errors_of(name, text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().unwrap()
    }

    const FILE_INPUT: &str = "inputs:\n  - Type: input_file\n    FilePaths: [/var/log/*.log]\n";

    #[test]
    fn valid_ilogtail_config_is_split_by_placement() {
        let text = format!(
            "enable: true\n{FILE_INPUT}processors:\n  - Type: processor_parse_regex_native\n    Regex: (.*)\n    Keys: [msg]\n  - Type: processor_add_fields/2\n    Fields: {{a: b}}\naggregators:\n  - Type: aggregator_default\nflushers:\n  - Type: flusher_stdout\n"
        );
        let config = parse(Path::new("/c/app.yaml"), text.as_bytes()).unwrap();
        assert_eq!(config.name, "app");
        assert_eq!(config.processors[0].placement, Placement::Native);
        assert_eq!(config.processors[1].placement, Placement::Native);
        assert_eq!(config.processors[1].kind(), "processor_add_fields");
        assert_eq!(config.aggregators[0].placement, Placement::Extended);
    }

    #[test]
    fn json_configs_load_too() {
        let text = r#"{"inputs":[{"Type":"metric_mock"}],"flushers":[{"Type":"flusher_stdout"}]}"#;
        assert!(parse(Path::new("m.json"), text.as_bytes()).is_ok());
    }

    #[test]
    fn unknown_type_names_file_field_and_value() {
        let e = one_error(
            "/c/a.yaml",
            "inputs: [{Type: input_nope}]\nflushers: [{Type: flusher_stdout}]\n",
        );
        assert_eq!(e.file, Path::new("/c/a.yaml"));
        assert_eq!(e.field, "inputs[0].Type");
        assert!(e.message.contains("input_nope"), "{e}");
        assert!(e.to_string().starts_with("/c/a.yaml: inputs[0].Type: "));
    }

    #[test]
    fn unimplemented_ilogtail_native_plugins_say_so() {
        let e = one_error(
            "a.yaml",
            &format!("{FILE_INPUT}processors: [{{Type: processor_parse_apsara_native}}]\nflushers: [{{Type: flusher_stdout}}]\n"),
        );
        assert!(e.message.contains("does not implement yet"), "{e}");
    }

    #[test]
    fn wrong_option_type_and_missing_option() {
        let e = one_error(
            "a.yaml",
            "inputs: [{Type: input_file, FilePaths: 3}]\nflushers: [{Type: flusher_stdout}]\n",
        );
        assert_eq!(e.field, "inputs[0].FilePaths");
        assert!(e.message.contains("invalid type"), "{e}");
        let e = one_error(
            "a.yaml",
            "inputs: [{Type: input_file}]\nflushers: [{Type: flusher_stdout}]\n",
        );
        assert_eq!(e.field, "inputs[0]");
        assert!(e.message.contains("FilePaths"), "{e}");
        let e = one_error(
            "a.yaml",
            &format!("{FILE_INPUT}flushers: [{{Type: flusher_file}}]\n"),
        );
        assert!(e.message.contains("FilePath"), "{e}");
        let e = one_error(
            "a.yaml",
            "inputs: [{Type: input_file, FilePaths: [/x/*.log], EnableContainerDiscovery: true}]\nflushers: [{Type: flusher_stdout}]\n",
        );
        assert_eq!(e.field, "inputs[0].EnableContainerDiscovery");
        assert!(e.message.contains("not supported yet"));
    }

    #[test]
    fn the_chain_from_the_first_processor_the_host_lacks_runs_in_the_base() {
        let config = parse(
            Path::new("a.yaml"),
            format!(
                "{FILE_INPUT}processors:\n  - Type: processor_parse_json_native\n  - Type: processor_geoip\n  - Type: processor_parse_regex_native\n    Regex: (.*)\n    Keys: [m]\nflushers: [{{Type: flusher_stdout}}]\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let placements: Vec<Placement> = config.processors.iter().map(|p| p.placement).collect();
        assert_eq!(
            placements,
            [
                Placement::Native,
                Placement::ThirdParty,
                Placement::Extended
            ]
        );
    }

    #[test]
    fn with_an_extended_input_every_processor_runs_in_the_base() {
        let config = parse(
            Path::new("a.yaml"),
            b"inputs: [{Type: metric_mock}]\nprocessors: [{Type: processor_add_fields, Fields: {a: b}}, {Type: processor_filter_regex_native, Include: {a: b}}]\nflushers: [{Type: flusher_stdout}]\n",
        )
        .unwrap();
        assert!(config
            .processors
            .iter()
            .all(|p| p.placement == Placement::Extended));
        // Their options are still checked by the host.
        let e = one_error(
            "a.yaml",
            "inputs: [{Type: metric_mock}]\nprocessors: [{Type: processor_filter_regex_native, Include: {a: '['}}]\nflushers: [{Type: flusher_stdout}]\n",
        );
        assert_eq!(e.field, "processors[0].Include.a");
    }

    #[test]
    fn structural_errors() {
        let e = one_error("a.yaml", "inputs: [{Type: metric_mock}, {Type: input_file, FilePaths: [/a/*.log]}]\nflushers: [{Type: flusher_stdout}]\n");
        assert!(e.message.contains("cannot be mixed"), "{e}");
        let e = one_error("a.yaml", "inputs: [{Type: metric_mock}]\n");
        assert_eq!(e.field, "flushers");
        let e = one_error(
            "a.yaml",
            "inputs: [{Type: metric_mock}]\nflushers: [{Type: flusher_stdout}]\nbogus: 1\n",
        );
        assert_eq!(e.field, "bogus");
        let e = one_error("a.yaml", "inputs: [\n");
        assert!(e.message.starts_with("invalid YAML"), "{e}");
        let e = one_error(
            "a.yaml",
            "inputs: [{FilePaths: [/a]}]\nflushers: [{Type: flusher_stdout}]\n",
        );
        assert_eq!(e.field, "inputs[0].Type");
    }

    fn warnings_of(text: &str) -> (bool, Vec<ConfigError>) {
        let checked = check(Path::new("/c/w.yaml"), text.as_bytes());
        (checked.result.is_ok(), checked.warnings)
    }

    #[test]
    fn a_typo_is_a_warning_with_a_suggestion() {
        let (ok, warnings) = warnings_of(
            "inputs: [{Type: input_file, FilePaths: [/x/*.log], FilePath: /x/a.log}]\nflushers: [{Type: flusher_stdout}]\n",
        );
        assert!(ok);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].field, "inputs[0].FilePath");
        assert_eq!(
            warnings[0].to_string(),
            "/c/w.yaml: inputs[0].FilePath: unknown option (did you mean FilePaths?); ignored"
        );
    }

    #[test]
    fn a_typo_that_leaves_a_required_option_out_is_an_error_and_a_warning() {
        let checked = check(
            Path::new("w.yaml"),
            b"inputs: [{Type: input_file, FilePath: /x/a.log}]\nflushers: [{Type: flusher_stdout}]\n",
        );
        let errors = checked.result.unwrap_err();
        assert!(errors[0].message.contains("FilePaths"), "{errors:?}");
        assert_eq!(checked.warnings.len(), 1);
        assert!(checked.warnings[0]
            .message
            .contains("did you mean FilePaths?"));
    }

    #[test]
    fn known_ilogtail_options_are_accepted_but_said_to_be_unimplemented() {
        let (ok, warnings) = warnings_of(
            "inputs:\n  - Type: input_file\n    FilePaths: [/x/*.log]\n    CloseUnusedReaderIntervalSec: 60\n    EnableExactlyOnce: 0\n    AllowingCollectingFilesInRootDir: true\n    Multiline: {StartPattern: 'a.*', IgnoringUnmatchWarning: true}\nflushers: [{Type: flusher_stdout}]\n",
        );
        assert!(ok);
        let fields: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "inputs[0].AllowingCollectingFilesInRootDir",
                "inputs[0].CloseUnusedReaderIntervalSec",
                "inputs[0].EnableExactlyOnce",
                "inputs[0].Multiline.IgnoringUnmatchWarning",
            ]
        );
        for w in &warnings {
            assert!(w.message.contains("does not implement yet"), "{w}");
        }
    }

    #[test]
    fn unknown_options_of_processors_and_flushers_and_nested_ones() {
        let (ok, warnings) = warnings_of(&format!(
            "{FILE_INPUT}processors: [{{Type: processor_parse_regex_native, Regex: '(.*)', Keys: [m], SourceKye: content}}]\nflushers: [{{Type: flusher_file, FilePath: /tmp/o, MaxRoll: 3, Zzz: 1}}]\n"
        ));
        assert!(ok);
        let shown: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
        let has = |text: &str| shown.iter().any(|w| w.contains(text));
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(
            shown[0].contains("processors[0]"),
            "not in the file's order: {shown:?}"
        );
        assert!(
            has("processors[0].SourceKye: unknown option (did you mean SourceKey?)"),
            "{shown:?}"
        );
        assert!(
            has("flushers[0].MaxRoll: unknown option (did you mean MaxRolls?)"),
            "{shown:?}"
        );
        // Nothing close: the known options are listed instead.
        assert!(has("flushers[0].Zzz: unknown option; ignored (flusher_file takes FilePath, MaxSizeKB, MaxRolls)"), "{shown:?}");
        let (_, warnings) = warnings_of(
            "inputs: [{Type: input_file, FilePaths: [/x/*.log], Multiline: {StartPatern: x}}]\nflushers: [{Type: flusher_stdout}]\n",
        );
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].field, "inputs[0].Multiline.StartPatern");
    }

    #[test]
    fn extended_plugins_and_clean_configs_have_no_warnings() {
        let (ok, warnings) = warnings_of(
            "inputs: [{Type: metric_mock, Anything: 1}]\nflushers: [{Type: flusher_stdout}]\n",
        );
        assert!(ok && warnings.is_empty(), "{warnings:?}");
        let (ok, warnings) = warnings_of(&format!(
            "{FILE_INPUT}flushers: [{{Type: flusher_stdout}}]\n"
        ));
        assert!(ok && warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn building_outside_a_check_notes_nothing() {
        let plugin = PluginConfig {
            plugin_type: "flusher_file".into(),
            field: "flushers[0]".into(),
            placement: Placement::Native,
            options: serde_json::json!({"FilePath": "/tmp/x", "Bogus": 1})
                .as_object()
                .unwrap()
                .clone(),
        };
        let (_, inside) = collect_ignored(|| crate::flusher::check_options(&plugin));
        assert_eq!(inside.len(), 1);
        crate::flusher::check_options(&plugin).unwrap();
        assert!(IGNORED.with(|c| c.borrow().is_none()));
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        let known = &[
            "FilePaths",
            "MaxDirSearchDepth",
            "TailSizeKB",
            "ExcludeFiles",
        ];
        assert_eq!(suggestion("filepaths", known), Some("FilePaths"));
        assert_eq!(suggestion("TailSizeKb", known), Some("TailSizeKB"));
        assert_eq!(
            suggestion("MaxDirSearchDept", known),
            Some("MaxDirSearchDepth")
        );
        assert_eq!(suggestion("ExcludeFile", known), Some("ExcludeFiles"));
        assert_eq!(suggestion("Tags", known), None);
        assert_eq!(suggestion("Zzz", known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
