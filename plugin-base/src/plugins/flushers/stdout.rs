//! `flusher_stdout`: prints each event as one JSON line (DESIGN §7), to stdout or, with
//! `FileName`, appended to a file.

use serde::Deserialize;
use serde_json::Value;
use tailrace::plugin::Flusher;
use tailrace::stdout_format::JsonLinesWriter;

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
    let out = if config.file_name.is_empty() {
        JsonLinesWriter::stdout()
    } else {
        JsonLinesWriter::append_to(config.file_name.as_ref())
            .map_err(|e| format!("FileName: cannot open {:?}: {e}", config.file_name))?
    };
    Ok(Box::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::registry::tests_support::context;
    use tailrace::{LogEvent, PipelineEvent, PipelineEventGroup};

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
