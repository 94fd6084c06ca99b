//! The in-memory event model: a `PipelineEventGroup` holds events of any kind (log, metric,
//! span, raw) that share tags and metadata.
//!
//! Keys and values are `bytes::Bytes`, so an event's fields can be views into the buffer a line
//! was read into (or a LogGroup was decoded from): a line crosses the pipeline to the serializer
//! without being copied. Anchor: LoongCollector's SourceBuffer/StringView.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

/// A batch of events that share tags (written to the output) and metadata (not written).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineEventGroup {
    pub events: Vec<PipelineEvent>,
    /// Tags shared by every event; they become the LogGroup's `LogTags`.
    pub tags: Vec<(Bytes, Bytes)>,
    /// Facts about the group that plugins may read but that are not output as such
    /// (the LogGroup's topic and source, a file's path and offset, ...).
    pub metadata: BTreeMap<String, String>,
    /// The buffer the events' fields point into, when they were cut from one (kept so that the
    /// group owns what its views borrow, and so that its size can be accounted).
    pub source_buffer: Option<Bytes>,
    /// Who to tell once the group is delivered (a file input advancing its checkpoint).
    pub acks: Acks,
    /// Logs of this group already serialized, whose events are gone (see [`EncodedLogs`]).
    pub encoded: Option<EncodedLogs>,
    /// Lines read from a file and not made into events yet: the group's first logs, before
    /// `events` (see [`Lines`]).
    pub lines: Option<Box<Lines>>,
}

/// Lines read from a file that are not events yet: each stands for a log whose only content is
/// `key` = the line, with the time it was read at, as the file reader makes them.
///
/// Why: a pipeline whose one processor parses each line straight into a LogGroup
/// (`Processor::takes_lines`) needs no events at all. Making one per line (176 bytes written
/// on the reader's core and read on the processor's, a counted view of the block cloned and
/// dropped) and freeing it was a sixth of the CPU of a delimiter pipeline. Only the file reader
/// makes lines, and only the processor runner takes them: it hands them to such a processor, or
/// makes them into events ([`PipelineEventGroup::make_events`]) before anything else sees the
/// group.
#[derive(Clone, Debug, PartialEq)]
pub struct Lines {
    /// The block the lines were cut from.
    pub block: Bytes,
    /// Where `block` starts in its file.
    pub offset: u64,
    /// The content key of each line (`content`).
    pub key: Bytes,
    pub time: u32,
    pub time_ns: Option<u32>,
    /// Each line's range in `block`, in order, without its newline.
    pub ranges: Vec<std::ops::Range<usize>>,
}

impl Lines {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The bytes of the logs' contents, keys and values (what a pipeline counts as `bytes_in`).
    pub fn content_bytes(&self) -> usize {
        self.ranges.iter().map(|r| self.key.len() + r.len()).sum()
    }

    /// The logs, appended to `events` as the file reader makes them: what a line occupies in
    /// its file (up to the next line, its newline included) is the log's position.
    pub fn push_events(&self, events: &mut Vec<PipelineEvent>) {
        // Empty events first, then each filled where it is: an event built aside and moved
        // into the list was a copy of its whole size (a call to `memcpy`) per line.
        let first = events.len();
        events.resize_with(first + self.ranges.len(), || {
            PipelineEvent::Log(LogEvent::default())
        });
        for (i, slot) in events[first..].iter_mut().enumerate() {
            let PipelineEvent::Log(log) = slot else {
                unreachable!("made as logs just above")
            };
            self.fill(i, log);
        }
    }

    /// Line `i` as its log.
    pub fn event(&self, i: usize) -> LogEvent {
        let mut log = LogEvent::default();
        self.fill(i, &mut log);
        log
    }

    #[inline(always)]
    fn fill(&self, i: usize, log: &mut LogEvent) {
        let range = self.ranges[i].clone();
        let next = self.ranges.get(i + 1).map_or(self.block.len(), |n| n.start);
        log.time = self.time;
        log.time_ns = self.time_ns;
        log.position = Some((
            self.offset + range.start as u64,
            (next - range.start) as u64,
        ));
        log.contents
            .push((self.key.clone(), self.block.slice(range)));
    }
}

/// A group's events serialized as one `sls_logs.LogGroup` (its logs, metadata and tags, as
/// `proto::encode_group` writes them), and how many events that was.
///
/// Why: the host serializes a batch in the processor thread that parsed it, for the flushers
/// that send LogGroups (`Flusher::takes_encoded`), and drops the events there. The thread that
/// built the fields then frees them, and only the compact bytes cross to the flusher thread.
/// This is LoongCollector's split (its serializers run in the processor threads). Measured on
/// the 12-field regex pipeline, it cut the CPU by about a sixth: handing hundreds of bytes of
/// fields per line to another core, and freeing them there, cost more than the encoding.
///
/// Events pushed after the encoding are kept in `events` and written after these logs (a
/// LogGroup's logs are a repeated field: two encodings concatenated are one LogGroup).
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedLogs {
    pub log_group: Bytes,
    pub events: usize,
}

/// Told when a group has been delivered (by a flusher, or accepted by the plugin base).
pub trait DeliveryHook: Send + Sync {
    fn delivered(&self);
}

/// The delivery hooks of a group. Cloning a group clones the hooks: a group sent to several
/// flushers must be [`Acks::split`] first, so that the hooks run once, after the last delivery.
#[derive(Clone, Default)]
pub struct Acks(Vec<Arc<dyn DeliveryHook>>);

impl Acks {
    pub fn push(&mut self, hook: Arc<dyn DeliveryHook>) {
        self.0.push(hook);
    }

    /// Runs the hooks: the group was delivered.
    pub fn delivered(&self) {
        for hook in &self.0 {
            hook.delivered();
        }
    }

    /// Makes the hooks wait for `ways` deliveries (one per copy of the group) before running.
    pub fn split(&mut self, ways: usize) {
        if ways <= 1 || self.0.is_empty() {
            return;
        }
        let inner = Acks(std::mem::take(&mut self.0));
        self.0.push(Arc::new(Countdown {
            remaining: AtomicUsize::new(ways),
            inner,
        }));
    }

    /// Whether both hold the very same hooks (and at least one): how a runner tells which of
    /// the groups it handed over came back undelivered.
    pub fn same_hooks(&self, other: &Acks) -> bool {
        !self.0.is_empty()
            && self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)))
    }

    /// Moves `other`'s hooks into `self` (when groups are merged).
    pub fn append(&mut self, other: &mut Acks) {
        self.0.append(&mut other.0);
    }

    /// No hook waits for this group: nothing upstream (a file checkpoint) can send it again.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Acks({})", self.0.len())
    }
}

/// Hooks are not part of a group's value.
impl PartialEq for Acks {
    fn eq(&self, _: &Acks) -> bool {
        true
    }
}

struct Countdown {
    remaining: AtomicUsize,
    inner: Acks,
}

impl DeliveryHook for Countdown {
    fn delivered(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.delivered();
        }
    }
}

/// One event of any kind. The rarer, larger kinds are boxed so that a batch of logs (the
/// common case) stays a compact array.
#[derive(Clone, Debug, PartialEq)]
pub enum PipelineEvent {
    Log(LogEvent),
    Metric(Box<MetricEvent>),
    Span(Box<SpanEvent>),
    Raw(RawEvent),
}

/// A log: a time and an ordered list of key/value contents.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogEvent {
    /// Seconds since the epoch.
    pub time: u32,
    /// Nanosecond part of the time, when known.
    pub time_ns: Option<u32>,
    /// Key/value pairs, in order. Up to two live inside the event: a line read from a file
    /// costs no allocation of its own.
    pub contents: Contents,
    /// Where the log came from in its file (offset, length in bytes), when it came from one.
    /// Metadata: not output.
    pub position: Option<(u64, u64)>,
}

/// The contents of a log.
pub type Contents = SmallVec<[(Bytes, Bytes); 2]>;

/// The value of a metric: one number, or several named ones (iLogtail's multi-value metrics).
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    Untyped(f64),
    Multi(Vec<(Bytes, f64)>),
}

/// A metric sample.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricEvent {
    pub name: Bytes,
    pub time: u32,
    pub time_ns: Option<u32>,
    pub value: MetricValue,
    pub tags: Vec<(Bytes, Bytes)>,
}

/// A trace span.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanEvent {
    pub trace_id: Bytes,
    pub span_id: Bytes,
    pub parent_span_id: Bytes,
    pub name: Bytes,
    pub kind: Bytes,
    pub start_time_ns: u64,
    pub end_time_ns: u64,
    pub status: Bytes,
    pub attributes: Vec<(Bytes, Bytes)>,
}

/// Bytes not yet parsed into fields: a line, or a whole block read from a file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawEvent {
    pub time: u32,
    pub time_ns: Option<u32>,
    pub content: Bytes,
}

impl PipelineEventGroup {
    pub fn with_capacity(events: usize) -> Self {
        PipelineEventGroup {
            events: Vec::with_capacity(events),
            ..Default::default()
        }
    }

    /// Sets a tag, replacing a tag of the same key.
    pub fn set_tag(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        set_pair(&mut self.tags, key.into(), value.into());
    }

    pub fn tag(&self, key: &[u8]) -> Option<&Bytes> {
        get_pair(&self.tags, key)
    }

    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// The number of events, those already encoded and the lines not made into events yet
    /// included.
    pub fn len(&self) -> usize {
        self.events.len()
            + self.encoded.as_ref().map_or(0, |e| e.events)
            + self.lines.as_ref().map_or(0, |l| l.len())
    }

    /// Makes the group's [`Lines`] into events, in their place before the other events.
    pub fn make_events(&mut self) {
        let Some(lines) = self.lines.take() else {
            return;
        };
        if self.events.is_empty() {
            self.events.reserve_exact(lines.len());
            lines.push_events(&mut self.events);
            return;
        }
        let mut events = Vec::with_capacity(lines.len() + self.events.len());
        lines.push_events(&mut events);
        events.append(&mut self.events);
        self.events = events;
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves `other`'s events (and delivery hooks) into `self` (tags and metadata of `self`
    /// win).
    pub fn append(&mut self, other: &mut PipelineEventGroup) {
        // Groups are encoded only on their way to a flusher, after every merge.
        debug_assert!(other.encoded.is_none(), "appending an encoded group");
        self.make_events();
        other.make_events();
        self.events.append(&mut other.events);
        self.acks.append(&mut other.acks);
    }

    /// The group's logs, for processors that only handle logs.
    pub fn logs_mut(&mut self) -> impl Iterator<Item = &mut LogEvent> {
        self.make_events();
        self.events.iter_mut().filter_map(|e| match e {
            PipelineEvent::Log(log) => Some(log),
            _ => None,
        })
    }
}

impl LogEvent {
    pub fn new(time: u32, time_ns: Option<u32>) -> Self {
        LogEvent {
            time,
            time_ns,
            contents: Contents::new(),
            position: None,
        }
    }

    pub fn content(&self, key: &[u8]) -> Option<&Bytes> {
        get_pair(&self.contents, key)
    }

    pub fn has_content(&self, key: &[u8]) -> bool {
        self.content(key).is_some()
    }

    /// Sets a content, replacing one of the same key (keeping its position).
    pub fn set_content(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        set_pair(&mut self.contents, key.into(), value.into());
    }

    /// Removes a content; returns its value.
    pub fn remove_content(&mut self, key: &[u8]) -> Option<Bytes> {
        let pos = self.contents.iter().position(|(k, _)| k == key)?;
        Some(self.contents.remove(pos).1)
    }
}

impl MetricEvent {
    pub fn new(name: impl Into<Bytes>, time: u32, value: MetricValue) -> Self {
        MetricEvent {
            name: name.into(),
            time,
            time_ns: None,
            value,
            tags: Vec::new(),
        }
    }
}

fn get_pair<'a>(pairs: &'a [(Bytes, Bytes)], key: &[u8]) -> Option<&'a Bytes> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn set_pair<P>(pairs: &mut P, key: Bytes, value: Bytes)
where
    P: std::ops::DerefMut<Target = [(Bytes, Bytes)]> + Extend<(Bytes, Bytes)>,
{
    match pairs.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => *v = value,
        None => pairs.extend(std::iter::once((key, value))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count(AtomicUsize);
    impl DeliveryHook for Count {
        fn delivered(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn split_hooks_run_once_after_every_copy_is_delivered() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let mut group = PipelineEventGroup::default();
        group.acks.push(count.clone());
        group.acks.split(3);
        let copies = [group.clone(), group.clone(), group];
        copies[0].acks.delivered();
        copies[1].acks.delivered();
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        copies[2].acks.delivered();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn set_content_replaces_in_place() {
        let mut log = LogEvent::new(1, None);
        log.set_content("a", "1");
        log.set_content("b", "2");
        log.set_content("a", "3");
        assert_eq!(log.contents.len(), 2);
        assert_eq!(log.contents[0].1, Bytes::from_static(b"3"));
        assert_eq!(log.remove_content(b"a"), Some(Bytes::from_static(b"3")));
        assert!(!log.has_content(b"a"));
    }

    #[test]
    fn lines_become_the_first_events_of_their_group_with_their_places_in_the_file() {
        let block = Bytes::from_static(b"a\nbb\r\nccc");
        let lines = Lines {
            block: block.clone(),
            offset: 100,
            key: Bytes::from_static(b"content"),
            time: 7,
            time_ns: Some(9),
            ranges: vec![0..1, 2..4, 6..9],
        };
        assert_eq!(lines.content_bytes(), 3 * 7 + 1 + 2 + 3);
        let mut group = PipelineEventGroup::default();
        group
            .events
            .push(PipelineEvent::Log(LogEvent::new(1, None)));
        group.lines = Some(Box::new(lines));
        assert_eq!(group.len(), 4);
        group.make_events();
        assert!(group.lines.is_none());
        assert_eq!(group.len(), 4);
        let logs: Vec<_> = group
            .events
            .iter()
            .map(|e| match e {
                PipelineEvent::Log(log) => (
                    log.time,
                    log.time_ns,
                    log.position,
                    log.content(b"content").map(|v| v.to_vec()),
                ),
                _ => panic!("not a log"),
            })
            .collect();
        assert_eq!(
            logs,
            [
                (7, Some(9), Some((100, 2)), Some(b"a".to_vec())),
                (7, Some(9), Some((102, 4)), Some(b"bb".to_vec())),
                (7, Some(9), Some((106, 3)), Some(b"ccc".to_vec())),
                (1, None, None, None),
            ]
        );
        // Views of the block, not copies.
        let PipelineEvent::Log(first) = &group.events[0] else {
            unreachable!()
        };
        assert_eq!(first.contents[0].1.as_ptr(), block.as_ptr());
    }

    #[test]
    fn views_share_the_source_buffer() {
        let buf = Bytes::from_static(b"line one\nline two\n");
        let mut log = LogEvent::new(0, None);
        log.set_content(Bytes::from_static(b"content"), buf.slice(0..8));
        assert_eq!(log.content(b"content").unwrap().as_ptr(), buf.as_ptr());
    }
}
