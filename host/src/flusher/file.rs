//! `flusher_file`: appends one JSON line per event (the stdout format) to `FilePath`.

use std::fs::{File, OpenOptions};
use std::io::Write;

use serde::Deserialize;
use tailrace::plugin::Flusher;
use tailrace::stdout_format::write_group;
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
    let path = std::path::Path::new(&config.file_path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            (
                field.clone(),
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| (field, format!("cannot open {:?}: {e}", config.file_path)))?;
    Ok(Box::new(FileFlusher {
        file,
        buf: Vec::with_capacity(64 * 1024),
    }))
}

struct FileFlusher {
    file: File,
    buf: Vec<u8>,
}

impl Flusher for FileFlusher {
    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        self.buf.clear();
        for group in groups.iter() {
            write_group(&mut self.buf, group);
        }
        self.file
            .write_all(&self.buf)
            .map_err(|e| format!("write failed: {e}"))?;
        groups.clear();
        Ok(())
    }
}
