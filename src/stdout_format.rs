//! The stdout format (DESIGN §7, a contract): one JSON object per event per line, contents as
//! keys, tags as `__tag__:KEY`, and `"__time__"` as a string of seconds. Shared by every
//! `flusher_stdout` and `flusher_file`, native or extended.
//!
//! Non-UTF-8 bytes are written as U+FFFD: the line is still valid JSON and nothing else is lost.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::event::{PipelineEvent, PipelineEventGroup};
use crate::proto::event_to_log;

/// Where the JSON lines of `flusher_stdout` and `flusher_file` go: stdout, or a file appended
/// to. Each call writes whole batches with one write, so lines from two flushers never mix.
pub struct JsonLinesWriter {
    file: Option<File>,
    buf: Vec<u8>,
}

impl JsonLinesWriter {
    pub fn stdout() -> JsonLinesWriter {
        JsonLinesWriter {
            file: None,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// Appends to `path` (created, with its directory, if missing).
    pub fn append_to(path: &Path) -> std::io::Result<JsonLinesWriter> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonLinesWriter {
            file: Some(file),
            ..JsonLinesWriter::stdout()
        })
    }

    /// Writes one line per event of every group.
    pub fn write(&mut self, groups: &[PipelineEventGroup]) -> std::io::Result<()> {
        self.buf.clear();
        for group in groups {
            write_group(&mut self.buf, group);
        }
        match &mut self.file {
            Some(file) => file.write_all(&self.buf),
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(&self.buf).and_then(|()| out.flush())
            }
        }
    }
}

/// Appends one line per event of `group` to `out`.
pub fn write_group(out: &mut Vec<u8>, group: &PipelineEventGroup) {
    for event in &group.events {
        write_event(out, event, group);
    }
}

/// Appends one line for `event` (tags from its `group`) to `out`.
pub fn write_event(out: &mut Vec<u8>, event: &PipelineEvent, group: &PipelineEventGroup) {
    out.push(b'{');
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, prefix: &str, key: &[u8], value: &[u8]| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        escape_into(out, prefix.as_bytes());
        escape_into(out, key);
        out.extend_from_slice(b"\":\"");
        escape_into(out, value);
        out.push(b'"');
    };
    let time = match event {
        PipelineEvent::Log(log) => {
            for (k, v) in &log.contents {
                field(out, "", k, v);
            }
            log.time
        }
        other => {
            let log = event_to_log(other);
            for c in &log.contents {
                field(out, "", &c.key, &c.value);
            }
            log.time
        }
    };
    for (k, v) in &group.tags {
        field(out, "__tag__:", k, v);
    }
    let seconds = itoa_buf(time);
    field(out, "", b"__time__", seconds.as_bytes());
    out.extend_from_slice(b"}\n");
}

struct SmallNum([u8; 10], usize);

impl SmallNum {
    fn as_bytes(&self) -> &[u8] {
        &self.0[self.1..]
    }
}

fn itoa_buf(mut n: u32) -> SmallNum {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    SmallNum(buf, i)
}

/// JSON string escaping of raw bytes; invalid UTF-8 sequences become U+FFFD.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut start = 0;
        for (i, &b) in valid.iter().enumerate() {
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f => {
                    out.extend_from_slice(&valid[start..i]);
                    let _ = write!(out, "\\u{b:04x}");
                    start = i + 1;
                    continue;
                }
                _ => continue,
            };
            out.extend_from_slice(&valid[start..i]);
            out.extend_from_slice(escape);
            start = i + 1;
        }
        out.extend_from_slice(&valid[start..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LogEvent;

    #[test]
    fn contents_tags_and_time_as_string() {
        let mut group = PipelineEventGroup::default();
        group.set_tag("__path__", "/var/log/a.log");
        let mut log = LogEvent::new(1_700_000_000, None);
        log.set_content("content", "say \"hi\"\n\x01");
        group.events.push(PipelineEvent::Log(log));
        let mut out = Vec::new();
        write_group(&mut out, &group);
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "{\"content\":\"say \\\"hi\\\"\\n\\u0001\",\"__tag__:__path__\":\"/var/log/a.log\",\"__time__\":\"1700000000\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["__time__"], "1700000000");
    }

    #[test]
    fn invalid_utf8_stays_valid_json() {
        let mut group = PipelineEventGroup::default();
        let mut log = LogEvent::new(0, None);
        log.set_content("content", &b"a\xffb"[..]);
        group.events.push(PipelineEvent::Log(log));
        let mut out = Vec::new();
        write_group(&mut out, &group);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["content"], "a\u{fffd}b");
        assert_eq!(v["__time__"], "0");
    }
}
