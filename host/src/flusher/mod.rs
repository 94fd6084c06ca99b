//! Native flushers, one per file. Each runs on its own thread behind a bounded sender queue
//! (`runner::flusher`), so a slow one slows only its pipeline.

pub mod blackhole;
pub mod file;
pub mod sls;
pub mod stdout;
#[cfg(feature = "test-faults")]
pub mod test_panic;

use tailrace::plugin::Flusher;

use crate::config::PluginConfig;

/// Flusher types the host runs itself.
pub const NATIVE_FLUSHERS: &[&str] = &[
    "flusher_stdout",
    "flusher_blackhole",
    "flusher_file",
    "flusher_sls",
    #[cfg(feature = "test-faults")]
    "flusher_test_panic",
];

/// Parses a plugin's options into its config struct (it lives with the config checks, which
/// also turn ignored keys into warnings).
pub use crate::config::parse_options;

/// Checks a native flusher's options.
pub fn check_options(plugin: &PluginConfig) -> Result<(), (String, String)> {
    match plugin.kind() {
        // Checking must not create their output files (`validate` creates nothing).
        "flusher_file" => file::check(plugin).map(|_| ()),
        "flusher_stdout" => parse_options::<stdout::StdoutConfig>(plugin).map(|_| ()),
        _ => build(plugin).map(|_| ()),
    }
}

/// Builds a native flusher.
pub fn build(plugin: &PluginConfig) -> Result<Box<dyn Flusher>, (String, String)> {
    match plugin.kind() {
        "flusher_stdout" => stdout::build(plugin),
        "flusher_blackhole" => blackhole::build(plugin),
        "flusher_file" => file::build(plugin),
        "flusher_sls" => sls::build(plugin),
        #[cfg(feature = "test-faults")]
        "flusher_test_panic" => test_panic::build(plugin),
        other => Err((
            plugin.field.clone(),
            format!("{other:?} is not a native flusher"),
        )),
    }
}
