//! The host's processors: every processor of the core registry (`tailrace::processor`), the
//! same code the plugin base runs. This module only adapts the registry to the host's config
//! types.

pub mod services;

use tailrace::plugin::Processor;

use crate::config::PluginConfig;

/// Whether the host runs processor type `kind` itself: every processor Tailrace implements.
pub fn is_native(kind: &str) -> bool {
    tailrace::processor::find(kind).is_some()
}

/// Checks a processor's options; the options it does not take are noted for the warnings of
/// a config check.
pub fn check_options(plugin: &PluginConfig) -> Result<(), (String, String)> {
    match tailrace::processor::find(plugin.kind()) {
        Some(registration) if crate::config::collecting_ignored() => {
            let unknown = (registration.unknown_options)(&plugin.options);
            crate::config::note_ignored(plugin, unknown, (registration.known_options)());
        }
        _ => {}
    }
    build(plugin).map(|_| ())
}

/// Builds a processor; the error names the field (`processors[1].Regex`) and the problem.
pub fn build(plugin: &PluginConfig) -> Result<Box<dyn Processor>, (String, String)> {
    tailrace::processor::build(plugin.kind(), &plugin.options).map_err(|e| {
        let field = if e.field.is_empty() {
            plugin.field.clone()
        } else {
            format!("{}.{}", plugin.field, e.field)
        };
        (field, e.message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Placement;

    #[test]
    fn errors_carry_the_plugin_field() {
        let plugin = PluginConfig {
            plugin_type: "processor_parse_regex_native/3".into(),
            field: "processors[2]".into(),
            placement: Placement::Native,
            options: serde_json::json!({"Regex": "(", "Keys": ["a"]})
                .as_object()
                .unwrap()
                .clone(),
        };
        let (field, message) = build(&plugin).err().unwrap();
        assert_eq!(field, "processors[2].Regex");
        assert!(message.contains("not a valid regex"), "{message}");
        assert!(is_native("processor_add_fields"));
        assert!(!is_native("processor_geoip"));
    }
}
