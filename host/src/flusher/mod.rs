//! Native flushers, one per file. Each runs on its own thread behind a bounded sender queue
//! (`runner::flusher`), so a slow one slows only its pipeline.

pub mod blackhole;
pub mod file;
pub mod sls;
pub mod stdout;

use serde::de::DeserializeOwned;
use tailrace::plugin::Flusher;

use crate::config::PluginConfig;

/// Flusher types the host runs itself.
pub const NATIVE_FLUSHERS: &[&str] = &[
    "flusher_stdout",
    "flusher_blackhole",
    "flusher_file",
    "flusher_sls",
];

/// Parses a plugin's options into its config struct; the error names the field.
pub fn parse_options<T: DeserializeOwned>(plugin: &PluginConfig) -> Result<T, (String, String)> {
    let value = serde_json::Value::Object(plugin.options.clone());
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            plugin.field.clone()
        } else {
            format!("{}.{path}", plugin.field)
        };
        (field, e.inner().to_string())
    })
}

/// Checks a native flusher's options.
pub fn check_options(plugin: &PluginConfig) -> Result<(), (String, String)> {
    build(plugin).map(|_| ())
}

/// Builds a native flusher.
pub fn build(plugin: &PluginConfig) -> Result<Box<dyn Flusher>, (String, String)> {
    match plugin.kind() {
        "flusher_stdout" => stdout::build(plugin),
        "flusher_blackhole" => blackhole::build(plugin),
        "flusher_file" => file::build(plugin),
        "flusher_sls" => sls::build(plugin),
        other => Err((
            plugin.field.clone(),
            format!("{other:?} is not a native flusher"),
        )),
    }
}
