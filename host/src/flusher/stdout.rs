//! `flusher_stdout`: one JSON line per event (DESIGN §7) on stdout, or appended to `FileName`.

use serde::Deserialize;
use tailrace::plugin::Flusher;
use tailrace::stdout_format::JsonLinesWriter;
use tailrace::PipelineEventGroup;

use crate::config::PluginConfig;
use crate::flusher::parse_options;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct StdoutConfig {
    /// Append to this file instead of stdout.
    pub file_name: String,
    /// iLogtail's switch between stdout and its own log file; output here is always stdout (or
    /// `FileName`), so it is accepted for compatibility.
    pub only_stdout: bool,
}

pub fn build(plugin: &PluginConfig) -> Result<Box<dyn Flusher>, (String, String)> {
    let config: StdoutConfig = parse_options(plugin)?;
    let out = if config.file_name.is_empty() {
        JsonLinesWriter::stdout()
    } else {
        JsonLinesWriter::append_to(config.file_name.as_ref()).map_err(|e| {
            (
                format!("{}.FileName", plugin.field),
                format!("cannot open {:?}: {e}", config.file_name),
            )
        })?
    };
    Ok(Box::new(StdoutFlusher(out)))
}

struct StdoutFlusher(JsonLinesWriter);

impl Flusher for StdoutFlusher {
    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        self.0
            .write(groups)
            .map_err(|e| format!("write failed: {e}"))?;
        groups.clear();
        Ok(())
    }
}
