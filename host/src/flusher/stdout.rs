//! `flusher_stdout`: one JSON line per event (DESIGN §7) on stdout, or appended to `FileName`.

use serde::Deserialize;
use tailrace::plugin::Flusher;
use tailrace::stdout_format::JsonLinesWriter;

use crate::config::PluginConfig;
use crate::flusher::parse_options;

#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct StdoutConfig {
    /// Append to this file instead of stdout, rolling it by size as `flusher_file` does.
    pub file_name: String,
    /// With `FileName`: roll the file over when it would pass this size (0: never).
    #[serde(rename = "MaxSizeKB")]
    pub max_size_kb: u64,
    /// With `FileName`: how many rolled files are kept.
    pub max_rolls: usize,
    /// iLogtail's switch between stdout and its own log file; output here is always stdout (or
    /// `FileName`), so it is accepted for compatibility.
    pub only_stdout: bool,
}

impl Default for StdoutConfig {
    fn default() -> Self {
        StdoutConfig {
            file_name: String::new(),
            max_size_kb: crate::flusher::file::default_max_size_kb(),
            max_rolls: crate::flusher::file::default_max_rolls(),
            only_stdout: false,
        }
    }
}

pub fn build(plugin: &PluginConfig) -> Result<Box<dyn Flusher>, (String, String)> {
    let config: StdoutConfig = parse_options(plugin)?;
    let out = if config.file_name.is_empty() {
        JsonLinesWriter::stdout().on_broken_pipe(stop_daemon)
    } else {
        JsonLinesWriter::rolling(
            config.file_name.as_ref(),
            config.max_size_kb * 1024,
            config.max_rolls,
        )
        .map_err(|e| {
            (
                format!("{}.FileName", plugin.field),
                format!("cannot open {:?}: {e}", config.file_name),
            )
        })?
    };
    Ok(Box::new(out))
}

/// Stdout was closed under the daemon (`tailrace --once | head`): nothing written there can
/// ever arrive, so the daemon stops as on SIGTERM (draining, saving checkpoints that do not pass
/// what was not written) rather than retrying forever.
fn stop_daemon() {
    if let Err(e) = signal_hook::low_level::raise(signal_hook::consts::SIGTERM) {
        tracing::error!("stdout is closed and the daemon cannot stop itself: {e}");
    }
}
