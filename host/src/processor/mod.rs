//! Native processors, one per file.

pub mod parse_regex_native;

use tailrace::plugin::Processor;

use crate::config::PluginConfig;

/// Processor types the host runs itself.
pub const NATIVE_PROCESSORS: &[&str] = &["processor_parse_regex_native"];

/// Checks a native processor's options.
pub fn check_options(plugin: &PluginConfig) -> Result<(), (String, String)> {
    build(plugin).map(|_| ())
}

/// Builds a native processor.
pub fn build(plugin: &PluginConfig) -> Result<Box<dyn Processor>, (String, String)> {
    match plugin.kind() {
        "processor_parse_regex_native" => parse_regex_native::build(plugin),
        _ => Err((
            plugin.field.clone(),
            format!("{:?} is not a native processor", plugin.plugin_type),
        )),
    }
}
