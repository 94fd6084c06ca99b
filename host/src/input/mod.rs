//! Native inputs. File collection (`input_file`) is the host's own; its FileServer serves every
//! file input of every pipeline from one thread.

pub mod file;

use crate::config::PluginConfig;

/// Input types the host runs itself.
pub const NATIVE_INPUTS: &[&str] = &["input_file"];

/// Checks a native input's options.
pub fn check_options(plugin: &PluginConfig) -> Result<(), (String, String)> {
    match plugin.kind() {
        "input_file" => file::InputFileConfig::from_plugin(plugin).map(|_| ()),
        other => Err((
            plugin.field.clone(),
            format!("{other:?} is not a native input"),
        )),
    }
}
