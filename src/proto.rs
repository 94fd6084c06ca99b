//! The `sls_logs.LogGroup` wire format (proto2), written by hand with prost's derive so that no
//! `protoc` is needed to build.
//!
//! Key and Value are `bytes` here where iLogtail declares `string`: the two are identical on the
//! wire, and `bytes` means a non-UTF-8 log line never fails to decode. `Time`, `Key` and `Value`
//! are `required`, so prost always writes them, even when zero or empty, as iLogtail's C++ side
//! insists.

use bytes::Bytes;
use prost::Message;

use crate::event::{LogEvent, MetricValue, PipelineEvent, PipelineEventGroup};

mod direct;
mod keyed;

pub use keyed::{encode_keyed_log, KeyField, LineValue, LineValues};

/// One key/value pair of a log.
#[derive(Clone, PartialEq, Message)]
pub struct LogContent {
    #[prost(bytes = "bytes", required, tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", required, tag = "2")]
    pub value: Bytes,
}

/// One log: a time in seconds, its contents, and optionally the nanosecond part of the time.
#[derive(Clone, PartialEq, Message)]
pub struct Log {
    #[prost(uint32, required, tag = "1")]
    pub time: u32,
    #[prost(message, repeated, tag = "2")]
    pub contents: Vec<LogContent>,
    #[prost(fixed32, optional, tag = "4")]
    pub time_ns: Option<u32>,
}

/// A tag shared by every log of a group.
#[derive(Clone, PartialEq, Message)]
pub struct LogTag {
    #[prost(bytes = "bytes", required, tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", required, tag = "2")]
    pub value: Bytes,
}

/// `sls_logs.LogGroup`: what crosses the ABI (SendPb, ProcessLogGroup) and goes to SLS.
#[derive(Clone, PartialEq, Message)]
pub struct LogGroup {
    #[prost(message, repeated, tag = "1")]
    pub logs: Vec<Log>,
    #[prost(string, optional, tag = "2")]
    pub category: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub topic: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub source: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub machine_uuid: Option<String>,
    #[prost(message, repeated, tag = "6")]
    pub log_tags: Vec<LogTag>,
}

/// Metadata keys under which a group decoded from a LogGroup keeps the group-level fields that
/// have no tag of their own, so that encoding it again gives them back.
pub mod meta {
    pub const TOPIC: &str = "__topic__";
    pub const SOURCE: &str = "__source__";
    pub const CATEGORY: &str = "__category__";
    pub const MACHINE_UUID: &str = "__machine_uuid__";
    /// The `packId` a batch was handed to the plugin base with (not written out).
    pub const PACK_ID: &str = "__pack_id__";
}

impl Log {
    /// Builds a log from `key, value` pairs (handy in tests and plugins).
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(time: u32, pairs: &[(K, V)]) -> Log {
        Log {
            time,
            contents: pairs
                .iter()
                .map(|(k, v)| LogContent {
                    key: Bytes::copy_from_slice(k.as_ref()),
                    value: Bytes::copy_from_slice(v.as_ref()),
                })
                .collect(),
            time_ns: None,
        }
    }
}

impl LogGroup {
    /// Decodes a serialized LogGroup; the returned error says why the buffer is not one.
    ///
    /// The buffer is copied once, whole, and every key and value becomes a view into that copy:
    /// decoding the borrowed slice directly made each one an allocation of its own (malloc was
    /// the largest cost of the plugin base's `ProcessLogGroup` path and of the host's `SendPb`).
    pub fn decode_bytes(buf: &[u8]) -> Result<LogGroup, prost::DecodeError> {
        LogGroup::decode(Bytes::copy_from_slice(buf))
    }

    /// Decodes a serialized LogGroup straight into the in-memory group: the same result as
    /// `decode_bytes(buf).map(LogGroup::into_event_group)` (a test checks it on valid, random
    /// and corrupted buffers), without building the prost structs first. Those cost an
    /// allocation (and its growth) per log and a conversion pass, and were most of the time of
    /// both decodes of a batch's trip through the plugin base (`ProcessLogGroup` in the base,
    /// `SendPb` back in the host).
    ///
    /// The buffer is copied once, whole, and every key and value is a view into that copy. A
    /// buffer the fast path does not take (anything invalid, or rare encodings such as groups)
    /// goes to prost, whose answer, value or error, is then the answer.
    pub fn decode_event_group(buf: &[u8]) -> Result<PipelineEventGroup, prost::DecodeError> {
        let owned = Bytes::copy_from_slice(buf);
        match direct::decode(&owned) {
            Some(group) => Ok(group),
            None => LogGroup::decode(owned).map(LogGroup::into_event_group),
        }
    }

    /// How many logs `buf` holds, when it is a valid LogGroup (prost's verdict), checked
    /// without building the logs: for a LogGroup passed on as it is.
    pub fn count_logs(buf: &[u8]) -> Result<usize, prost::DecodeError> {
        match direct::count_logs(buf) {
            Some(logs) => Ok(logs),
            None => LogGroup::decode(buf).map(|group| group.logs.len()),
        }
    }

    /// Encodes to a fresh buffer.
    pub fn encode_to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// The in-memory group this LogGroup describes: one `LogEvent` per log, its `LogTags` as
    /// tags, Topic/Source/Category/MachineUUID kept in metadata.
    pub fn into_event_group(self) -> PipelineEventGroup {
        let mut group = PipelineEventGroup::with_capacity(self.logs.len());
        for tag in self.log_tags {
            group.set_tag(tag.key, tag.value);
        }
        let meta_fields = [
            (meta::TOPIC, self.topic),
            (meta::SOURCE, self.source),
            (meta::CATEGORY, self.category),
            (meta::MACHINE_UUID, self.machine_uuid),
        ];
        for (key, value) in meta_fields {
            if let Some(value) = value {
                group.set_metadata(key, value);
            }
        }
        for log in self.logs {
            let mut event = LogEvent::new(log.time, log.time_ns);
            event.contents = log.contents.into_iter().map(|c| (c.key, c.value)).collect();
            group.events.push(PipelineEvent::Log(event));
        }
        group
    }

    /// The LogGroup for an in-memory group. Log events keep their contents; metrics become
    /// iLogtail's metric logs (`__name__`, `__labels__`, `__time_nano__`, `__value__`); spans
    /// become one log each with their fields; raw events become a log with `content`.
    pub fn from_event_group(group: &PipelineEventGroup) -> LogGroup {
        let mut out = LogGroup {
            logs: Vec::with_capacity(group.events.len()),
            topic: group.metadata(meta::TOPIC).map(str::to_owned),
            source: group.metadata(meta::SOURCE).map(str::to_owned),
            category: group.metadata(meta::CATEGORY).map(str::to_owned),
            machine_uuid: group.metadata(meta::MACHINE_UUID).map(str::to_owned),
            log_tags: group
                .tags
                .iter()
                .map(|(k, v)| LogTag {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        };
        for event in &group.events {
            out.logs.push(event_to_log(event));
        }
        out
    }
}

/// Serializes `group` as an `sls_logs.LogGroup` straight from the events, without building the
/// prost structs first: no allocation per log, no reference-count traffic. The bytes are the
/// same as `LogGroup::from_event_group(group).encode_to_vec()` (a test checks it); this is the
/// serializer of the hot path. Anchor: LoongCollector's direct serialization.
pub fn encode_group(group: &PipelineEventGroup, out: &mut Vec<u8>) {
    if let Some(encoded) = &group.encoded {
        // Its metadata and tags are in there already; logs added since follow.
        out.extend_from_slice(&encoded.log_group);
        encode_logs(&group.events, out);
        return;
    }
    encode_logs(&group.events, out);
    encode_group_tail(group, out);
}

/// Writes the part of `group`'s LogGroup that follows its logs: its category, topic, source,
/// machine and tags. [`encode_group`] is the logs of its events, then this.
pub fn encode_group_tail(group: &PipelineEventGroup, out: &mut Vec<u8>) {
    let strings = [
        (0x12, meta::CATEGORY),
        (0x1a, meta::TOPIC),
        (0x22, meta::SOURCE),
        (0x2a, meta::MACHINE_UUID),
    ];
    for (tag, key) in strings {
        if let Some(value) = group.metadata(key) {
            out.push(tag);
            put_varint(out, value.len() as u64);
            out.extend_from_slice(value.as_bytes());
        }
    }
    for (k, v) in &group.tags {
        out.push(0x32);
        put_pair(out, k, v);
    }
}

/// The LogGroup bytes of `group`: its encoded form when it has one and no event was added
/// since (no copy), else `buf` filled by [`encode_group`].
pub fn log_group_bytes<'a>(group: &'a PipelineEventGroup, buf: &'a mut Vec<u8>) -> &'a [u8] {
    match &group.encoded {
        Some(encoded) if group.events.is_empty() => &encoded.log_group,
        _ => {
            buf.clear();
            encode_group(group, buf);
            buf
        }
    }
}

/// Writes `events` as a LogGroup's logs (field 1, repeated).
fn encode_logs(events: &[PipelineEvent], out: &mut Vec<u8>) {
    for event in events {
        match event {
            PipelineEvent::Log(log) => encode_log(
                out,
                log.time,
                log.time_ns,
                log.contents.iter().map(|(k, v)| (&k[..], &v[..])),
            ),
            other => {
                out.push(0x0a);
                event_to_log(other)
                    .encode_length_delimited(out)
                    .expect("a Vec grows");
            }
        }
    }
}

/// Writes `event` as one of a LogGroup's logs (field 1), as [`encode_group`] writes it.
pub fn encode_event(event: &PipelineEvent, out: &mut Vec<u8>) {
    encode_logs(std::slice::from_ref(event), out);
}

/// Writes one log (a LogGroup's field 1) of `time`, `contents` and `time_ns`: the bytes
/// [`encode_group`] writes for a `LogEvent` of those contents. A parser whose output is only
/// going to be serialized writes its fields through this, without building them (see
/// `Processor::process_encoded`).
#[inline(always)]
pub fn encode_log<'a, I>(out: &mut Vec<u8>, time: u32, time_ns: Option<u32>, contents: I)
where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    // The log's exact size first, so that it is then written into a slice of the right length
    // with no capacity check per byte (the hot loop of every flusher).
    let len = 1
        + varint_len(u64::from(time))
        + contents
            .clone()
            .map(|(k, v)| field_len(pair_len(k, v)))
            .sum::<usize>()
        + if time_ns.is_some() { 5 } else { 0 };
    let at = out.len();
    out.resize(at + field_len(len), 0);
    let mut w = SliceWriter {
        buf: &mut out[at..],
        pos: 0,
    };
    w.byte(0x0a);
    w.varint(len as u64);
    w.byte(0x08);
    w.varint(u64::from(time));
    for (k, v) in contents {
        let len = pair_len(k, v);
        if len < 0x80 {
            w.short_pair(k, v, len);
            continue;
        }
        w.pair(k, v, len);
    }
    w.nanos(time_ns);
    debug_assert_eq!(w.pos, w.buf.len());
}

/// Writes into a slice sized exactly beforehand.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl SliceWriter<'_> {
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.buf[self.pos] = b;
        self.pos += 1;
    }

    #[inline(always)]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    #[inline(always)]
    fn bytes(&mut self, src: &[u8]) {
        let n = src.len();
        copy_into(&mut self.buf[self.pos..self.pos + n], src);
        self.pos += n;
    }

    /// A `LogContent` (tag, length, key field, value field) of size `len`, whatever its lengths.
    #[inline(always)]
    fn pair(&mut self, k: &[u8], v: &[u8], len: usize) {
        self.byte(0x12);
        self.varint(len as u64);
        self.byte(0x0a);
        self.varint(k.len() as u64);
        self.bytes(k);
        self.byte(0x12);
        self.varint(v.len() as u64);
        self.bytes(v);
    }

    /// A log's `time_ns` field, when it has one.
    #[inline(always)]
    fn nanos(&mut self, time_ns: Option<u32>) {
        if let Some(ns) = time_ns {
            self.byte(0x25);
            self.bytes(&ns.to_le_bytes());
        }
    }

    /// A `LogContent` (tag, length, key field, value field) whose `len` is under 128, the common
    /// case: every length is then one byte, and the whole field is one slice of the buffer,
    /// written with one bounds check instead of one per byte.
    #[inline(always)]
    fn short_pair(&mut self, k: &[u8], v: &[u8], len: usize) {
        debug_assert!(len < 0x80 && len == 4 + k.len() + v.len());
        let dst = &mut self.buf[self.pos..self.pos + 2 + len];
        dst[..4].copy_from_slice(&[0x12, len as u8, 0x0a, k.len() as u8]);
        let (key, rest) = dst[4..].split_at_mut(k.len());
        copy_into(key, k);
        rest[0] = 0x12;
        rest[1] = v.len() as u8;
        copy_into(&mut rest[2..], v);
        self.pos += 2 + len;
    }
}

/// Copies `src` into `dst` (of the same length). Most keys and many values are a few bytes
/// long, where a call to `memcpy` costs more than the copy: those are copied inline.
#[inline(always)]
fn copy_into(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    match n {
        0 => {}
        // First, middle and last byte: no loop (which the compiler would make a call to
        // `memcpy`).
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        // Two overlapping words cover every length from 4 to 16.
        4..=7 => {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..].copy_from_slice(&src[n - 4..]);
        }
        8..=16 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

/// Size of a `{Key = 1; Value = 2}` message.
fn pair_len(k: &[u8], v: &[u8]) -> usize {
    field_len(k.len()) + field_len(v.len())
}

/// Size of a length-delimited field (one-byte tag) whose payload is `len` bytes.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn put_pair(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    put_varint(out, pair_len(k, v) as u64);
    out.push(0x0a);
    put_varint(out, k.len() as u64);
    out.extend_from_slice(k);
    out.push(0x12);
    put_varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

/// The length of `v` as a varint. Keys and most values are shorter than 128 bytes and most
/// logs shorter than 16 KiB: those take a predictable branch instead of a bit scan (whose
/// latency, in a chain per field, was the encoder's largest cost).
#[inline(always)]
fn varint_len(v: u64) -> usize {
    if v < 1 << 7 {
        1
    } else if v < 1 << 14 {
        2
    } else {
        prost::encoding::encoded_len_varint(v)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn content(key: &'static str, value: impl Into<Bytes>) -> LogContent {
    LogContent {
        key: Bytes::from_static(key.as_bytes()),
        value: value.into(),
    }
}

/// The log an event is written as (see [`LogGroup::from_event_group`]).
pub fn event_to_log(event: &PipelineEvent) -> Log {
    match event {
        PipelineEvent::Log(log) => Log {
            time: log.time,
            time_ns: log.time_ns,
            contents: log
                .contents
                .iter()
                .map(|(k, v)| LogContent {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        },
        PipelineEvent::Raw(raw) => Log {
            time: raw.time,
            time_ns: raw.time_ns,
            contents: vec![content("content", raw.content.clone())],
        },
        PipelineEvent::Metric(metric) => {
            let labels = metric
                .tags
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}#$#{}",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    )
                })
                .collect::<Vec<_>>()
                .join("|");
            let value = match &metric.value {
                MetricValue::Untyped(v) => v.to_string(),
                MetricValue::Multi(values) => values
                    .iter()
                    .map(|(k, v)| format!("{}#$#{}", String::from_utf8_lossy(k), v))
                    .collect::<Vec<_>>()
                    .join("|"),
            };
            let nanos =
                u64::from(metric.time) * 1_000_000_000 + u64::from(metric.time_ns.unwrap_or(0));
            Log {
                time: metric.time,
                time_ns: metric.time_ns,
                contents: vec![
                    content("__name__", metric.name.clone()),
                    content("__labels__", labels),
                    content("__time_nano__", nanos.to_string()),
                    content("__value__", value),
                ],
            }
        }
        PipelineEvent::Span(span) => {
            let mut contents = vec![
                content("traceID", span.trace_id.clone()),
                content("spanID", span.span_id.clone()),
                content("parentSpanID", span.parent_span_id.clone()),
                content("spanName", span.name.clone()),
                content("kind", span.kind.clone()),
                content("start", span.start_time_ns.to_string()),
                content("end", span.end_time_ns.to_string()),
                content(
                    "duration",
                    span.end_time_ns
                        .saturating_sub(span.start_time_ns)
                        .to_string(),
                ),
                content("statusCode", span.status.clone()),
            ];
            for (k, v) in &span.attributes {
                contents.push(LogContent {
                    key: k.clone(),
                    value: v.clone(),
                });
            }
            Log {
                time: (span.start_time_ns / 1_000_000_000) as u32,
                time_ns: Some((span.start_time_ns % 1_000_000_000) as u32),
                contents,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{MetricEvent, RawEvent, SpanEvent};

    #[test]
    fn decoded_values_are_views_into_one_copy_of_the_buffer() {
        let log = |value: &'static str| Log {
            time: 1,
            contents: vec![content("content", value)],
            time_ns: None,
        };
        let buf = LogGroup {
            logs: vec![log("first-value"), log("second-value")],
            ..Default::default()
        }
        .encode_to_bytes();
        let at = |needle: &[u8]| buf.windows(needle.len()).position(|w| w == needle).unwrap();
        let group = LogGroup::decode_bytes(&buf).unwrap();
        let (a, b) = (
            &group.logs[0].contents[0].value,
            &group.logs[1].contents[0].value,
        );
        assert_eq!(
            (&a[..], &b[..]),
            (&b"first-value"[..], &b"second-value"[..])
        );
        // Where they are relative to each other is where they were in the buffer: one copy.
        assert_eq!(
            b.as_ptr() as usize - a.as_ptr() as usize,
            at(b"second-value") - at(b"first-value")
        );
    }

    #[test]
    fn required_fields_are_written_even_when_empty() {
        let group = LogGroup {
            logs: vec![Log {
                time: 0,
                contents: vec![LogContent::default()],
                time_ns: None,
            }],
            ..Default::default()
        };
        let buf = group.encode_to_bytes();
        // Logs(1){ Time(1)=0, Contents(2){ Key(1)="", Value(2)="" } }
        assert_eq!(
            buf,
            vec![0x0a, 0x08, 0x08, 0x00, 0x12, 0x04, 0x0a, 0x00, 0x12, 0x00]
        );
    }

    #[test]
    fn non_utf8_values_round_trip() {
        let log = Log::from_pairs(1, &[(b"content".as_slice(), b"\xff\xfe bad".as_slice())]);
        let group = LogGroup {
            logs: vec![log],
            ..Default::default()
        };
        let decoded = LogGroup::decode_bytes(&group.encode_to_bytes()).unwrap();
        assert_eq!(&decoded.logs[0].contents[0].value[..], b"\xff\xfe bad");
    }

    #[test]
    fn an_encoded_group_writes_its_bytes_and_then_the_logs_added_since() {
        let log = |i: u32| {
            let mut log = LogEvent::new(i, None);
            log.set_content("n", i.to_string());
            PipelineEvent::Log(log)
        };
        let mut whole = PipelineEventGroup::default();
        whole.set_tag("__path__", "/var/log/a.log");
        whole.set_metadata(meta::TOPIC, "t");
        whole.events = vec![log(1), log(2), log(3)];
        let mut first = whole.clone();
        let third = first.events.pop().unwrap();
        let mut first_bytes = Vec::new();
        encode_group(&first, &mut first_bytes);
        first.events.clear();
        first.encoded = Some(crate::EncodedLogs {
            log_group: Bytes::from(first_bytes.clone()),
            events: 2,
        });
        assert_eq!(first.len(), 2);
        // As the flusher gets it: the bytes themselves, not a copy.
        let mut buf = Vec::new();
        let bytes = log_group_bytes(&first, &mut buf);
        assert_eq!(bytes, first_bytes.as_slice());
        assert_eq!(
            bytes.as_ptr(),
            first.encoded.as_ref().unwrap().log_group.as_ptr()
        );
        // With a log added afterwards: one LogGroup holding the three.
        first.events.push(third);
        assert_eq!(first.len(), 3);
        let mut out = Vec::new();
        encode_group(&first, &mut out);
        assert_eq!(
            LogGroup::decode(out.as_slice()).unwrap(),
            LogGroup::from_event_group(&whole)
        );
        assert_eq!(log_group_bytes(&first, &mut buf), out.as_slice());
    }

    #[test]
    fn direct_encoding_is_byte_identical_to_prost() {
        let mut group = PipelineEventGroup::default();
        group.set_tag("__path__", "/var/log/a.log");
        group.set_metadata(meta::TOPIC, "t");
        group.set_metadata(meta::SOURCE, "10.0.0.1");
        for i in 0..300u32 {
            let mut log = LogEvent::new(1_700_000_000 + i, (i % 2 == 0).then_some(i));
            log.set_content("content", "x".repeat(i as usize * 3));
            log.set_content("k", "");
            log.set_content("short", "y".repeat(i as usize % 20));
            group.events.push(PipelineEvent::Log(log));
        }
        // Around a pair of 128 bytes, where the pair's length takes a second varint byte.
        for len in 110..=125 {
            let mut log = LogEvent::new(1, None);
            log.set_content("content", "z".repeat(len));
            group.events.push(PipelineEvent::Log(log));
        }
        group.events.push(PipelineEvent::Raw(RawEvent {
            time: 1,
            time_ns: None,
            content: Bytes::from_static(b"raw"),
        }));
        let mut direct = Vec::new();
        encode_group(&group, &mut direct);
        assert_eq!(direct, LogGroup::from_event_group(&group).encode_to_bytes());
        let mut empty = Vec::new();
        encode_group(&PipelineEventGroup::default(), &mut empty);
        assert!(empty.is_empty());
    }

    /// A small deterministic PRNG (xorshift64*) for the fuzz tests: reproducible, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }

        /// Random bytes, fewer than `max`.
        fn blob(&mut self, max: usize) -> Vec<u8> {
            let len = self.below(max);
            self.bytes(len)
        }
    }

    /// A valid LogGroup with every kind of field, sizes and contents drawn from `rng`.
    fn sample_group(rng: &mut Rng) -> LogGroup {
        let text = |rng: &mut Rng| String::from_utf8_lossy(&rng.blob(12)).into_owned();
        let logs = (0..rng.below(4))
            .map(|_| Log {
                time: rng.next() as u32,
                contents: (0..rng.below(4))
                    .map(|_| LogContent {
                        key: Bytes::from(rng.blob(8)),
                        value: Bytes::from(rng.blob(40)),
                    })
                    .collect(),
                time_ns: (rng.below(2) == 0).then(|| rng.next() as u32),
            })
            .collect();
        LogGroup {
            logs,
            category: (rng.below(2) == 0).then(|| text(rng)),
            topic: (rng.below(2) == 0).then(|| text(rng)),
            source: (rng.below(2) == 0).then(|| text(rng)),
            machine_uuid: (rng.below(2) == 0).then(|| text(rng)),
            log_tags: (0..rng.below(3))
                .map(|_| LogTag {
                    key: Bytes::from(rng.blob(8)),
                    value: Bytes::from(rng.blob(8)),
                })
                .collect(),
        }
    }

    /// `buf` changed in one of the ways a corrupt or hostile buffer differs from a valid one.
    fn mutate(rng: &mut Rng, mut buf: Vec<u8>) -> Vec<u8> {
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(buf.len() + 1);
            match rng.below(6) {
                // A flipped bit.
                0 if !buf.is_empty() => {
                    let i = rng.below(buf.len());
                    buf[i] ^= 1 << rng.below(8);
                }
                // A byte set to a length-like or tag-like value.
                1 if !buf.is_empty() => {
                    let i = rng.below(buf.len());
                    buf[i] = [0x00, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x25][rng.below(7)];
                }
                // Cut short.
                2 => buf.truncate(at),
                // Random bytes inserted.
                3 => {
                    let len = 1 + rng.below(6);
                    let extra = rng.bytes(len);
                    buf.splice(at..at, extra);
                }
                // A huge varint (a length or a field number) inserted.
                4 => {
                    let varint = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
                    buf.splice(at..at, varint[rng.below(4)..].iter().copied());
                }
                // A slice of the buffer repeated (valid pieces in invalid places).
                _ if !buf.is_empty() => {
                    let from = rng.below(buf.len());
                    let to = (from + 1 + rng.below(16)).min(buf.len());
                    let piece = buf[from..to].to_vec();
                    buf.splice(at..at, piece);
                }
                _ => buf.push(rng.next() as u8),
            }
        }
        buf
    }

    /// Whatever a buffer holds, decoding returns a value or an error, never panics; what decodes
    /// survives the trip to events and back to the wire, by both serializers alike.
    fn check_decoders(buf: &[u8]) -> bool {
        let _ = Log::decode(buf);
        let _ = LogContent::decode(buf);
        check_direct_decoder(buf);
        let Ok(group) = LogGroup::decode_bytes(buf) else {
            return false;
        };
        let encoded = group.encode_to_bytes();
        assert_eq!(LogGroup::decode_bytes(&encoded).as_ref(), Ok(&group));
        let events = group.into_event_group();
        let mut direct = Vec::new();
        encode_group(&events, &mut direct);
        assert_eq!(
            direct,
            LogGroup::from_event_group(&events).encode_to_bytes()
        );
        true
    }

    /// The direct decoder gives prost's answer: the same group whenever its fast path takes a
    /// buffer, the same value or error through the fallback. True when the fast path took it.
    fn check_direct_decoder(buf: &[u8]) -> bool {
        let by_prost = LogGroup::decode_bytes(buf).map(LogGroup::into_event_group);
        let fast = direct::decode(&Bytes::copy_from_slice(buf));
        if let Some(fast) = &fast {
            assert_eq!(Ok(fast), by_prost.as_ref(), "fast path on {buf:02x?}");
        }
        // The counter takes what the decoder takes, and agrees with prost on the rest.
        assert_eq!(
            direct::count_logs(buf),
            fast.as_ref().map(PipelineEventGroup::len),
            "counter on {buf:02x?}"
        );
        match (LogGroup::count_logs(buf), &by_prost) {
            (Ok(logs), Ok(group)) => assert_eq!(logs, group.len()),
            (Err(counted), Err(by_prost)) => assert_eq!(counted.to_string(), by_prost.to_string()),
            (counted, by_prost) => panic!("{counted:?} but prost says {by_prost:?} on {buf:02x?}"),
        }
        match (LogGroup::decode_event_group(buf), by_prost) {
            (Ok(direct), Ok(by_prost)) => assert_eq!(direct, by_prost),
            (Err(direct), Err(by_prost)) => assert_eq!(direct.to_string(), by_prost.to_string()),
            (direct, by_prost) => panic!("{direct:?} but prost says {by_prost:?} on {buf:02x?}"),
        }
        fast.is_some()
    }

    #[test]
    fn the_direct_decoder_takes_every_valid_group() {
        let mut rng = Rng(0x5eed_0003);
        for _ in 0..5_000 {
            let buf = sample_group(&mut rng).encode_to_bytes();
            assert!(check_direct_decoder(&buf), "fast path refused {buf:02x?}");
        }
    }

    #[test]
    fn the_direct_decoder_reads_lengths_around_one_varint_byte() {
        // Pairs whose key or value length takes one varint byte, or two: the short paths take
        // the first, the general reading the second, with the same answers as prost.
        for key_len in [0, 1, 126, 127, 128, 129] {
            for value_len in [0, 1, 121, 122, 123, 124, 127, 128, 200] {
                let buf = LogGroup {
                    logs: vec![Log {
                        time: 1,
                        contents: vec![
                            LogContent {
                                key: Bytes::from(vec![b'k'; key_len]),
                                value: Bytes::from(vec![b'v'; value_len]),
                            },
                            content("short", "x"),
                        ],
                        time_ns: None,
                    }],
                    ..Default::default()
                }
                .encode_to_bytes();
                assert!(check_direct_decoder(&buf), "{key_len} {value_len}");
            }
        }
    }

    #[test]
    fn the_direct_decoder_keeps_prost_semantics_on_unusual_encodings() {
        let valid = LogGroup {
            logs: vec![Log {
                time_ns: Some(7),
                ..Log::from_pairs(5, &[("k", "v"), ("k", "w")])
            }],
            topic: Some("t".into()),
            log_tags: vec![
                LogTag {
                    key: Bytes::from_static(b"a"),
                    value: Bytes::from_static(b"1"),
                },
                LogTag {
                    key: Bytes::from_static(b"a"),
                    value: Bytes::from_static(b"2"),
                },
            ],
            ..Default::default()
        }
        .encode_to_bytes();
        let with = |extra: &[u8]| [valid.as_slice(), extra].concat();
        let cases: Vec<(Vec<u8>, bool)> = vec![
            // Duplicate tags are set in order (the last value wins), as into_event_group does.
            (valid.clone(), true),
            // Unknown fields of every wire type, at the group's level, are skipped.
            (with(&[0x38, 0x96, 0x01]), true),
            (with(&[0x41, 1, 2, 3, 4, 5, 6, 7, 8]), true),
            (with(&[0x4d, 1, 2, 3, 4]), true),
            (with(&[0x52, 2, b'x', b'y']), true),
            // ... and a group-encoded one goes to prost, which skips it too.
            (with(&[0x5b, 0x08, 0x01, 0x5c]), false),
            // A second topic wins over the first.
            (with(&[0x1a, 1, b'u']), true),
            // A log with an unknown field, time written twice (the last wins), and a time
            // wider than 32 bits (truncated, as prost does).
            (
                with(&[
                    0x0a, 10, 0x08, 1, 0x18, 9, 0x08, 0x80, 0x80, 0x80, 0x80, 0x10,
                ]),
                true,
            ),
            // A log whose time has the wrong wire type: an error.
            (with(&[0x0a, 2, 0x0d, 1]), false),
            // A content whose length runs past its log: an error.
            (with(&[0x0a, 4, 0x12, 5, 0x0a, 0]), false),
            // A topic that is not UTF-8: an error.
            (with(&[0x1a, 1, 0xff]), false),
            // An overlong varint: an error.
            (
                with(&[
                    0x38, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
                ]),
                false,
            ),
        ];
        for (buf, fast) in cases {
            assert_eq!(check_direct_decoder(&buf), fast, "on {buf:02x?}");
        }
    }

    #[test]
    fn random_bytes_never_panic_the_decoders() {
        let mut rng = Rng(0x5eed_0001);
        let mut decoded = 0;
        for round in 0..20_000 {
            let buf = rng.bytes(round % 97);
            decoded += usize::from(check_decoders(&buf));
        }
        // Short buffers decode often enough for the round trip to be exercised.
        assert!(decoded > 100, "only {decoded} random buffers decoded");
    }

    #[test]
    fn mutated_valid_log_groups_never_panic_the_decoders() {
        let mut rng = Rng(0x5eed_0002);
        let (mut decoded, mut rejected) = (0, 0);
        for _ in 0..20_000 {
            let valid = sample_group(&mut rng);
            let buf = valid.encode_to_bytes();
            assert!(check_decoders(&buf));
            if check_decoders(&mutate(&mut rng, buf)) {
                decoded += 1;
            } else {
                rejected += 1;
            }
        }
        // Both outcomes are exercised: a fuzzer that never hits an error proves nothing.
        assert!(
            decoded > 1000 && rejected > 1000,
            "{decoded} decoded, {rejected} rejected"
        );
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(LogGroup::decode_bytes(&[0xff, 0xff, 0xff, 0x07, 0x01]).is_err());
    }

    #[test]
    fn event_group_round_trip_keeps_tags_topic_and_time() {
        let group = LogGroup {
            logs: vec![Log {
                time_ns: Some(5),
                ..Log::from_pairs(1_700_000_000, &[("msg", "hello")])
            }],
            topic: Some("t1".into()),
            source: Some("10.0.0.1".into()),
            log_tags: vec![LogTag {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
            }],
            ..Default::default()
        };
        let back = LogGroup::from_event_group(&group.clone().into_event_group());
        assert_eq!(back, group);
    }

    #[test]
    fn every_event_kind_serialises() {
        let mut group = PipelineEventGroup::default();
        group.events.push(PipelineEvent::Raw(RawEvent {
            time: 3,
            time_ns: None,
            content: Bytes::from_static(b"raw line"),
        }));
        let mut metric = MetricEvent::new("cpu", 4, MetricValue::Untyped(0.5));
        metric
            .tags
            .push((Bytes::from_static(b"host"), Bytes::from_static(b"a")));
        group.events.push(PipelineEvent::Metric(Box::new(metric)));
        group.events.push(PipelineEvent::Span(Box::new(SpanEvent {
            name: Bytes::from_static(b"GET /"),
            start_time_ns: 5_000_000_001,
            end_time_ns: 5_000_000_011,
            ..Default::default()
        })));
        let out = LogGroup::from_event_group(&group);
        assert_eq!(out.logs.len(), 3);
        assert_eq!(&out.logs[0].contents[0].value[..], b"raw line");
        let m = &out.logs[1].contents;
        assert_eq!(&m[0].value[..], b"cpu");
        assert_eq!(&m[1].value[..], b"host#$#a");
        assert_eq!(&m[2].value[..], b"4000000000");
        assert_eq!(&m[3].value[..], b"0.5");
        assert_eq!(out.logs[2].time, 5);
        assert_eq!(out.logs[2].time_ns, Some(1));
    }
}
