//! `flusher_file`: appends one JSON line per event (the stdout format) to `FilePath`.
//!
//! The output may be rotated by others (logrotate): when `FilePath` is removed or renamed, the
//! next flush creates it anew. A failed write (a full disk) is taken back to the last whole
//! group, so that the retry neither breaks a line nor duplicates one (see `JsonLinesWriter`).

use serde::Deserialize;
use tailrace::plugin::Flusher;
use tailrace::stdout_format::JsonLinesWriter;

use crate::config::PluginConfig;
use crate::flusher::parse_options;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileFlusherConfig {
    /// The file to append to (required).
    pub file_path: String,
    /// Roll the file over when it would pass this size (default 0: never; the file is the
    /// user's to rotate, e.g. with logrotate).
    #[serde(default = "default_max_size_kb", rename = "MaxSizeKB")]
    pub max_size_kb: u64,
    /// How many rolled files (`FilePath.1`, `.2`, ...) are kept.
    #[serde(default = "default_max_rolls")]
    pub max_rolls: usize,
}

pub fn default_max_size_kb() -> u64 {
    0
}

pub fn default_max_rolls() -> usize {
    7
}

/// Checks the options without opening the file: `validate` creates nothing.
pub fn check(plugin: &PluginConfig) -> Result<FileFlusherConfig, (String, String)> {
    let config: FileFlusherConfig = parse_options(plugin)?;
    if config.file_path.is_empty() {
        let field = format!("{}.FilePath", plugin.field);
        return Err((field, "must not be empty".to_owned()));
    }
    Ok(config)
}

pub fn build(plugin: &PluginConfig) -> Result<Box<dyn Flusher>, (String, String)> {
    let config = check(plugin)?;
    let field = format!("{}.FilePath", plugin.field);
    let out = JsonLinesWriter::rolling(
        config.file_path.as_ref(),
        config.max_size_kb * 1024,
        config.max_rolls,
    )
    .map_err(|e| (field, format!("cannot open {:?}: {e}", config.file_path)))?;
    Ok(Box::new(out))
}
