//! The stdout format (DESIGN §7, a contract): one JSON object per event per line, contents as
//! keys, tags as `__tag__:KEY`, and `"__time__"` as a string of seconds. Shared by every
//! `flusher_stdout` and `flusher_file`, native or extended.
//!
//! Non-UTF-8 bytes are written as U+FFFD: the line is still valid JSON and nothing else is lost.
//!
//! `escape` is the hot loop (word-at-a-time); `writer` is where the lines go
//! ([`JsonLinesWriter`]: a file that follows its path, failed writes taken back per group, a
//! closed stdout that stops the daemon).

mod escape;
mod writer;

use escape::escape_into;
pub use writer::JsonLinesWriter;

use crate::event::{PipelineEvent, PipelineEventGroup};
use crate::proto::event_to_log;

/// Appends one line per event of `group` to `out`.
///
/// The group's tags are escaped once here, not once per event: they end every line of the
/// group the same way.
pub fn write_group(out: &mut Vec<u8>, group: &PipelineEventGroup) {
    let mut tags = Vec::new();
    escape_tags(&mut tags, group);
    for event in &group.events {
        write_line(out, event, &tags);
    }
}

/// Appends one line for `event` (tags from its `group`) to `out`.
pub fn write_event(out: &mut Vec<u8>, event: &PipelineEvent, group: &PipelineEventGroup) {
    let mut tags = Vec::new();
    escape_tags(&mut tags, group);
    write_line(out, event, &tags);
}

/// The group's tags as they appear in every line: `,"__tag__:KEY":"VALUE"` each.
fn escape_tags(out: &mut Vec<u8>, group: &PipelineEventGroup) {
    for (k, v) in &group.tags {
        out.extend_from_slice(b",\"__tag__:");
        escape_into(out, k);
        out.extend_from_slice(b"\":\"");
        escape_into(out, v);
        out.push(b'"');
    }
}

/// Appends `"KEY":"VALUE"` (after a comma unless it is the line's first field).
#[inline]
fn field(out: &mut Vec<u8>, first: &mut bool, key: &[u8], value: &[u8]) {
    if *first {
        *first = false;
        out.push(b'"');
    } else {
        out.extend_from_slice(b",\"");
    }
    escape_into(out, key);
    out.extend_from_slice(b"\":\"");
    escape_into(out, value);
    out.push(b'"');
}

/// One line: the contents, then the pre-escaped `tags` (each with its leading comma), then
/// `"__time__"`.
fn write_line(out: &mut Vec<u8>, event: &PipelineEvent, tags: &[u8]) {
    out.push(b'{');
    let mut first = true;
    let time = match event {
        PipelineEvent::Log(log) => {
            for (k, v) in &log.contents {
                field(out, &mut first, k, v);
            }
            log.time
        }
        other => {
            let log = event_to_log(other);
            for c in &log.contents {
                field(out, &mut first, &c.key, &c.value);
            }
            log.time
        }
    };
    if !tags.is_empty() {
        // Without contents the first tag is the line's first field: no comma before it.
        out.extend_from_slice(if first { &tags[1..] } else { tags });
        first = false;
    }
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(b"\"__time__\":\"");
    out.extend_from_slice(itoa_buf(time).as_bytes());
    out.extend_from_slice(b"\"}\n");
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
