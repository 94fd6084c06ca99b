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
    rolling: Option<Rolling>,
}

/// Size-based rolling of an output file: `path` is renamed `path.1` (and `path.1` `path.2`,
/// ...) once it would grow past `max_bytes`; at most `keep` rolled files are kept.
struct Rolling {
    path: std::path::PathBuf,
    max_bytes: u64,
    keep: usize,
    size: u64,
}

impl JsonLinesWriter {
    pub fn stdout() -> JsonLinesWriter {
        JsonLinesWriter {
            file: None,
            buf: Vec::with_capacity(64 * 1024),
            rolling: None,
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

    /// Appends to `path`, rolling it over once it would pass `max_bytes` (0: never), keeping
    /// `keep` rolled files.
    pub fn rolling(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<JsonLinesWriter> {
        let mut writer = JsonLinesWriter::append_to(path)?;
        if max_bytes > 0 {
            writer.rolling = Some(Rolling {
                path: path.to_owned(),
                max_bytes,
                keep: keep.max(1),
                size: std::fs::metadata(path)?.len(),
            });
        }
        Ok(writer)
    }

    /// Renames the file to `.1` (shifting older ones, dropping the oldest) and starts anew.
    fn roll(&mut self) -> std::io::Result<()> {
        let Some(rolling) = &mut self.rolling else {
            return Ok(());
        };
        let rolled = |n: usize| {
            let mut name = rolling.path.clone().into_os_string();
            name.push(format!(".{n}"));
            std::path::PathBuf::from(name)
        };
        let _ = std::fs::remove_file(rolled(rolling.keep));
        for n in (1..rolling.keep).rev() {
            let _ = std::fs::rename(rolled(n), rolled(n + 1));
        }
        std::fs::rename(&rolling.path, rolled(1))?;
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&rolling.path)?,
        );
        rolling.size = 0;
        Ok(())
    }

    /// Writes the buffer to a rolling file: whole lines only, rolling over before a line that
    /// would not fit (a line longer than the maximum gets a file of its own).
    fn write_rolling(&mut self) -> std::io::Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let mut start = 0;
        let result = loop {
            if start >= buf.len() {
                break Ok(());
            }
            let (max, size) = match &self.rolling {
                Some(r) => (r.max_bytes, r.size),
                None => break Ok(()),
            };
            let room = max.saturating_sub(size) as usize;
            let limit = (start + room).min(buf.len());
            let fitting = buf[start..limit].iter().rposition(|&b| b == b'\n');
            let end = match fitting {
                Some(p) => start + p + 1,
                None if size == 0 => buf[start..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(buf.len(), |p| start + p + 1),
                None => {
                    if let Err(e) = self.roll() {
                        break Err(e);
                    }
                    continue;
                }
            };
            let file = self.file.as_mut().expect("a rolling writer has a file");
            if let Err(e) = file.write_all(&buf[start..end]) {
                break Err(e);
            }
            if let Some(r) = &mut self.rolling {
                r.size += (end - start) as u64;
            }
            start = end;
        };
        self.buf = buf;
        result
    }

    /// Writes one line per event of every group.
    pub fn write(&mut self, groups: &[PipelineEventGroup]) -> std::io::Result<()> {
        self.buf.clear();
        for group in groups {
            write_group(&mut self.buf, group);
        }
        if self.rolling.is_some() {
            return self.write_rolling();
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

/// A JSON-lines writer is a flusher as it is (`flusher_stdout`, `flusher_file`).
impl crate::plugin::Flusher for JsonLinesWriter {
    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        self.write(groups)
            .map_err(|e| format!("write failed: {e}"))?;
        groups.clear();
        Ok(())
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
    fn rolling_files_keep_every_line_and_at_most_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut writer = JsonLinesWriter::rolling(&path, 200, 2).unwrap();
        for i in 0..10 {
            let mut group = PipelineEventGroup::default();
            let mut log = LogEvent::new(i, None);
            log.set_content("content", format!("line {i} {}", "x".repeat(60)));
            group.events.push(PipelineEvent::Log(log));
            writer.write(&[group]).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let rolled1 = dir.path().join("out.jsonl.1");
        let rolled2 = dir.path().join("out.jsonl.2");
        assert!(!dir.path().join("out.jsonl.3").exists());
        for p in [&path, &rolled1, &rolled2] {
            assert!(std::fs::metadata(p).unwrap().len() <= 200);
        }
        let all = format!("{}{}{}", read(&rolled2), read(&rolled1), read(&path));
        let last: Vec<&str> = all.lines().collect();
        assert!(last.last().unwrap().contains("line 9 "));
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
