//! `flusher_stdout`: one JSON line per event (DESIGN §7) on stdout, or appended to `FileName`.

use std::fs::{File, OpenOptions};
use std::io::Write;

use serde::Deserialize;
use tailrace::plugin::Flusher;
use tailrace::stdout_format::write_group;
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
    let file = if config.file_name.is_empty() {
        None
    } else {
        Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&config.file_name)
                .map_err(|e| {
                    (
                        format!("{}.FileName", plugin.field),
                        format!("cannot open {:?}: {e}", config.file_name),
                    )
                })?,
        )
    };
    Ok(Box::new(StdoutFlusher {
        file,
        buf: Vec::with_capacity(64 * 1024),
    }))
}

struct StdoutFlusher {
    file: Option<File>,
    buf: Vec<u8>,
}

impl Flusher for StdoutFlusher {
    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        self.buf.clear();
        for group in groups.iter() {
            write_group(&mut self.buf, group);
        }
        let result = match &mut self.file {
            Some(file) => file.write_all(&self.buf),
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(&self.buf).and_then(|()| out.flush())
            }
        };
        result.map_err(|e| format!("write failed: {e}"))?;
        groups.clear();
        Ok(())
    }
}
