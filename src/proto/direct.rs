//! The fast path of [`LogGroup::decode_event_group`](super::LogGroup::decode_event_group):
//! the wire format read straight into a `PipelineEventGroup`.
//!
//! It only has to be right when it answers: whatever it does not take (`None`: an invalid
//! buffer, a group-encoded field, a length past its enclosing message) is decoded again by
//! prost, whose value or error is then the answer. So it is stricter than prost where that is
//! simpler, and exactly prost's semantics wherever it returns a group: unknown fields skipped,
//! the last of a repeated singular field wins, strings checked for UTF-8, `time` truncated to
//! 32 bits as prost does.

use bytes::Bytes;

use crate::event::{Contents, LogEvent, PipelineEvent, PipelineEventGroup};

use super::meta;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const FIXED32: u8 = 5;

/// At most this many events are reserved ahead; a larger group grows as it is read.
const MAX_EVENTS_HINT: usize = 8192;

/// A cursor over the buffer; each message is read up to its own `end`.
struct Reader<'a> {
    owned: &'a Bytes,
    buf: &'a [u8],
    pos: usize,
}

pub(super) fn decode(owned: &Bytes) -> Option<PipelineEventGroup> {
    let mut r = Reader {
        owned,
        buf: owned.as_ref(),
        pos: 0,
    };
    r.group()
}

/// How many logs a valid LogGroup holds, read without building anything: for a LogGroup passed
/// on as it is (`SendPb`'s data to flushers that send LogGroups). `None` where [`decode`] would
/// not answer either (prost then decides).
pub(super) fn count_logs(buf: &[u8]) -> Option<usize> {
    let owned = Bytes::new();
    let mut r = Reader {
        owned: &owned,
        buf,
        pos: 0,
    };
    r.check_group()
}

impl Reader<'_> {
    /// [`Reader::group`]'s checks, with nothing kept but the count of logs.
    fn check_group(&mut self) -> Option<usize> {
        let end = self.buf.len();
        let mut logs = 0;
        while self.pos < end {
            let (tag, wire_type) = self.key(end)?;
            match tag {
                1 => {
                    let log_end = self.delimited(wire_type, end)?;
                    self.check_log(log_end)?;
                    logs += 1;
                }
                2..=5 => {
                    let to = self.delimited(wire_type, end)?;
                    let from = std::mem::replace(&mut self.pos, to);
                    std::str::from_utf8(&self.buf[from..to]).ok()?;
                }
                6 => {
                    let tag_end = self.delimited(wire_type, end)?;
                    self.check_pair(tag_end)?;
                }
                _ => self.skip(wire_type, end)?,
            }
        }
        Some(logs)
    }

    /// [`Reader::log`]'s checks.
    fn check_log(&mut self, end: usize) -> Option<()> {
        while self.pos < end {
            if let Some(pair_end) = self.short_field(0x12, end) {
                self.check_pair(pair_end)?;
                continue;
            }
            let (tag, wire_type) = self.key(end)?;
            match tag {
                1 if wire_type == VARINT => {
                    self.varint(end)?;
                }
                2 => {
                    let pair_end = self.delimited(wire_type, end)?;
                    self.check_pair(pair_end)?;
                }
                4 if wire_type == FIXED32 => {
                    self.buf[..end].get(self.pos..self.pos + 4)?;
                    self.pos += 4;
                }
                1 | 4 => return None,
                _ => self.skip(wire_type, end)?,
            }
        }
        Some(())
    }

    /// [`Reader::pair`]'s checks.
    fn check_pair(&mut self, end: usize) -> Option<()> {
        if self.short_pair(end).is_some() {
            return Some(());
        }
        while self.pos < end {
            let (tag, wire_type) = self.key(end)?;
            match tag {
                1 | 2 => self.pos = self.delimited(wire_type, end)?,
                _ => self.skip(wire_type, end)?,
            }
        }
        Some(())
    }

    /// A LEB128 varint of at most 10 bytes whose 10th byte is 0 or 1 (prost's rule), not past
    /// `end`.
    #[inline(always)]
    fn varint(&mut self, end: usize) -> Option<u64> {
        let b = *self.buf[..end].get(self.pos)?;
        self.pos += 1;
        if b < 0x80 {
            return Some(u64::from(b));
        }
        let mut value = u64::from(b & 0x7f);
        for i in 1..10 {
            let b = *self.buf[..end].get(self.pos)?;
            self.pos += 1;
            if i == 9 && b > 1 {
                return None;
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(value);
            }
        }
        None
    }

    /// A field key: (tag, wire type), as prost validates them.
    #[inline(always)]
    fn key(&mut self, end: usize) -> Option<(u32, u8)> {
        let key = self.varint(end)?;
        let key = u32::try_from(key).ok()?;
        let wire_type = (key & 7) as u8;
        let tag = key >> 3;
        if tag == 0 || wire_type > FIXED32 {
            return None;
        }
        Some((tag, wire_type))
    }

    /// The end of a length-delimited field's payload, which must lie within `end`.
    #[inline(always)]
    fn delimited(&mut self, wire_type: u8, end: usize) -> Option<usize> {
        if wire_type != LENGTH_DELIMITED {
            return None;
        }
        let len = self.varint(end)?;
        let len = usize::try_from(len).ok()?;
        if len > end - self.pos {
            return None;
        }
        Some(self.pos + len)
    }

    /// A `bytes` field: a view into the one copy of the buffer.
    #[inline(always)]
    fn bytes(&mut self, wire_type: u8, end: usize) -> Option<Bytes> {
        let to = self.delimited(wire_type, end)?;
        let from = std::mem::replace(&mut self.pos, to);
        Some(self.view((from, to)))
    }

    /// A `string` field.
    fn string(&mut self, wire_type: u8, end: usize) -> Option<String> {
        let to = self.delimited(wire_type, end)?;
        let from = std::mem::replace(&mut self.pos, to);
        std::str::from_utf8(&self.buf[from..to])
            .ok()
            .map(str::to_owned)
    }

    /// Skips an unknown field (groups are left to prost).
    fn skip(&mut self, wire_type: u8, end: usize) -> Option<()> {
        let to = match wire_type {
            VARINT => {
                self.varint(end)?;
                return Some(());
            }
            FIXED64 => self.pos + 8,
            FIXED32 => self.pos + 4,
            LENGTH_DELIMITED => self.delimited(wire_type, end)?,
            _ => return None,
        };
        if to > end {
            return None;
        }
        self.pos = to;
        Some(())
    }

    fn group(&mut self) -> Option<PipelineEventGroup> {
        let end = self.buf.len();
        let mut events: Vec<PipelineEvent> = Vec::new();
        let mut tags: Vec<(Bytes, Bytes)> = Vec::new();
        let (mut category, mut topic, mut source, mut machine_uuid) = (None, None, None, None);
        // Each log's contents are allocated once, at the size of the previous log's.
        let mut contents_hint = 0;
        while self.pos < end {
            let (tag, wire_type) = self.key(end)?;
            match tag {
                1 => {
                    let start = self.pos;
                    let log_end = self.delimited(wire_type, end)?;
                    let log = self.log(log_end, contents_hint)?;
                    contents_hint = log.contents.len();
                    if events.capacity() == 0 {
                        // The first log's size tells about how many follow (capped: a small
                        // first log before a large unknown field must not reserve a lot).
                        let per_log = self.pos - start + 1;
                        events.reserve((1 + (end - self.pos) / per_log).min(MAX_EVENTS_HINT));
                    }
                    events.push(PipelineEvent::Log(log));
                }
                2 => category = Some(self.string(wire_type, end)?),
                3 => topic = Some(self.string(wire_type, end)?),
                4 => source = Some(self.string(wire_type, end)?),
                5 => machine_uuid = Some(self.string(wire_type, end)?),
                6 => {
                    let tag_end = self.delimited(wire_type, end)?;
                    tags.push(self.pair(tag_end)?);
                }
                _ => self.skip(wire_type, end)?,
            }
        }
        // As `LogGroup::into_event_group` builds it.
        let mut group = PipelineEventGroup {
            events,
            ..Default::default()
        };
        for (key, value) in tags {
            group.set_tag(key, value);
        }
        let meta_fields = [
            (meta::TOPIC, topic),
            (meta::SOURCE, source),
            (meta::CATEGORY, category),
            (meta::MACHINE_UUID, machine_uuid),
        ];
        for (key, value) in meta_fields {
            if let Some(value) = value {
                group.set_metadata(key, value);
            }
        }
        Some(group)
    }

    /// One `Log`, whose payload ends at `end`.
    fn log(&mut self, end: usize, contents_hint: usize) -> Option<LogEvent> {
        let mut log = LogEvent::new(0, None);
        log.contents = Contents::with_capacity(contents_hint);
        while self.pos < end {
            if let Some(pair_end) = self.short_field(0x12, end) {
                log.contents.push(self.pair(pair_end)?);
                continue;
            }
            let (tag, wire_type) = self.key(end)?;
            match tag {
                1 if wire_type == VARINT => log.time = self.varint(end)? as u32,
                2 => {
                    let pair_end = self.delimited(wire_type, end)?;
                    log.contents.push(self.pair(pair_end)?);
                }
                4 if wire_type == FIXED32 => {
                    let word = self.buf[..end].get(self.pos..self.pos + 4)?;
                    log.time_ns = Some(u32::from_le_bytes(word.try_into().ok()?));
                    self.pos += 4;
                }
                1 | 4 => return None,
                _ => self.skip(wire_type, end)?,
            }
        }
        Some(log)
    }

    /// The end of a length-delimited field with key byte `key` and a one-byte length at the
    /// cursor (a log's contents, as every encoder writes them), the cursor moved to its
    /// payload; otherwise nothing moves. The same answer as [`Reader::key`] then
    /// [`Reader::delimited`] give for that shape, in a few instructions.
    #[inline(always)]
    fn short_field(&mut self, key: u8, end: usize) -> Option<usize> {
        let &[found, len] = self.buf[..end].get(self.pos..)?.first_chunk::<2>()?;
        let to = self.pos + 2 + usize::from(len);
        if found != key || len >= 0x80 || to > end {
            return None;
        }
        self.pos += 2;
        Some(to)
    }

    /// The common shape of a pair, as every encoder writes it: the key field, then the value
    /// field, each with a one-byte length, and nothing else up to `end`. Their ranges, when the
    /// pair has that shape (the cursor then moves to `end`); otherwise nothing moves and the
    /// general reading follows. A shape the general reading takes too, so nothing changes but
    /// the cost (a third of the instructions of a LogGroup's check).
    #[inline(always)]
    fn short_pair(&mut self, end: usize) -> Option<((usize, usize), (usize, usize))> {
        let p = self.pos;
        let buf = &self.buf[..end];
        let (&[0x0a, key_len], rest) = buf.get(p..)?.split_first_chunk::<2>()? else {
            return None;
        };
        let key_len = usize::from(key_len);
        let (&[0x12, value_len], value) = rest.get(key_len..)?.split_first_chunk::<2>()? else {
            return None;
        };
        if key_len >= 0x80 || usize::from(value_len) != value.len() || value_len >= 0x80 {
            return None;
        }
        let key = (p + 2, p + 2 + key_len);
        self.pos = end;
        Some((key, (key.1 + 2, end)))
    }

    /// A view of `range` of the buffer (no copy).
    #[inline(always)]
    fn view(&self, (from, to): (usize, usize)) -> Bytes {
        if from == to {
            Bytes::new()
        } else {
            self.owned.slice(from..to)
        }
    }

    /// A `{Key = 1; Value = 2}` message (`LogContent`, `LogTag`) ending at `end`.
    #[inline(always)]
    fn pair(&mut self, end: usize) -> Option<(Bytes, Bytes)> {
        if let Some((key, value)) = self.short_pair(end) {
            return Some((self.view(key), self.view(value)));
        }
        let (mut key, mut value) = (Bytes::new(), Bytes::new());
        while self.pos < end {
            let (tag, wire_type) = self.key(end)?;
            match tag {
                1 => key = self.bytes(wire_type, end)?,
                2 => value = self.bytes(wire_type, end)?,
                _ => self.skip(wire_type, end)?,
            }
        }
        Some((key, value))
    }
}
