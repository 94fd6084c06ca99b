//! `flusher_stdout`: prints each event as one JSON line (DESIGN §7), to stdout or, with
//! `FileName`, appended to a file.

use std::fs::{File, OpenOptions};
use std::io::Write;

use serde::Deserialize;
use serde_json::Value;
use tailrace::plugin::Flusher;
use tailrace::stdout_format::write_group;
use tailrace::PipelineEventGroup;

use crate::runtime::registry::{parse_detail, PluginContext, PluginFactory};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct StdoutConfig {
    /// Append to this file instead of writing to stdout.
    pub file_name: String,
    /// iLogtail's switch between stdout and its own log; here output always goes to stdout
    /// (or `FileName`), so it is accepted and has no effect.
    pub only_stdout: bool,
}

pub const PLUGIN: (&str, PluginFactory) = ("flusher_stdout", PluginFactory::Flusher(build));

fn build(_ctx: &PluginContext, detail: &Value) -> Result<Box<dyn Flusher>, String> {
    let config: StdoutConfig = parse_detail(detail)?;
    let file = if config.file_name.is_empty() {
        None
    } else {
        Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&config.file_name)
                .map_err(|e| format!("FileName: cannot open {:?}: {e}", config.file_name))?,
        )
    };
    Ok(Box::new(StdoutFlusher {
        file,
        buf: Vec::new(),
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
        let written = match &mut self.file {
            Some(file) => file.write_all(&self.buf),
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(&self.buf).and_then(|()| out.flush())
            }
        };
        written.map_err(|e| format!("write failed: {e}"))?;
        groups.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::registry::tests_support::context;
    use tailrace::{LogEvent, PipelineEvent};

    #[test]
    fn writes_json_lines_to_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let detail = serde_json::json!({"FileName": path.to_str().unwrap()});
        let mut flusher = build(&context("c"), &detail).unwrap();
        let mut group = PipelineEventGroup::default();
        group.set_tag("host", "h1");
        let mut log = LogEvent::new(7, None);
        log.set_content("content", "hello");
        group.events.push(PipelineEvent::Log(log));
        flusher.flush(&mut vec![group]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"content\":\"hello\",\"__tag__:host\":\"h1\",\"__time__\":\"7\"}\n"
        );
    }
}
