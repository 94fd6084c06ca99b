//! Native processors, one per file (none yet: the native parsers come with their issue).

use tailrace::plugin::Processor;

use crate::config::PluginConfig;

/// Processor types the host runs itself.
pub const NATIVE_PROCESSORS: &[&str] = &[];

/// Checks a native processor's options.
pub fn check_options(plugin: &PluginConfig) -> Result<(), (String, String)> {
    build(plugin).map(|_| ())
}

/// Builds a native processor.
pub fn build(plugin: &PluginConfig) -> Result<Box<dyn Processor>, (String, String)> {
    Err((
        plugin.field.clone(),
        format!("{:?} is not a native processor", plugin.plugin_type),
    ))
}
