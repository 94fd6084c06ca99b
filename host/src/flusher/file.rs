//! `flusher_file`: appends one JSON line per event (the stdout format) to `FilePath`.

use serde::Deserialize;
use tailrace::plugin::Flusher;
use tailrace::stdout_format::JsonLinesWriter;
use tailrace::PipelineEventGroup;

use crate::config::PluginConfig;
use crate::flusher::parse_options;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileFlusherConfig {
    /// The file to append to (required).
    pub file_path: String,
}

pub fn build(plugin: &PluginConfig) -> Result<Box<dyn Flusher>, (String, String)> {
    let config: FileFlusherConfig = parse_options(plugin)?;
    let field = format!("{}.FilePath", plugin.field);
    if config.file_path.is_empty() {
        return Err((field, "must not be empty".to_owned()));
    }
    let out = JsonLinesWriter::append_to(config.file_path.as_ref())
        .map_err(|e| (field, format!("cannot open {:?}: {e}", config.file_path)))?;
    Ok(Box::new(FileFlusher(out)))
}

struct FileFlusher(JsonLinesWriter);

impl Flusher for FileFlusher {
    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        self.0
            .write(groups)
            .map_err(|e| format!("write failed: {e}"))?;
        groups.clear();
        Ok(())
    }
}
