//! Writing a log whose keys are known before the data (a parser's configured keys) and whose
//! values are mostly ranges of one line: each field is written once, from where it was found,
//! without building it first (see `Processor::process_encoded`).
//!
//! Why a writer of its own: [`super::encode_group`] copies keys and values of any length from
//! anywhere, which costs a branch by length, or a call to `memcpy`, per key and per value. Here a
//! key's whole prefix is copied as one fixed block from a padded array, and a short value as one
//! fixed 16-byte block from its line when the line goes on for 16 bytes past its start; the
//! buffer has room past the log for what such a block writes beyond it. The bytes are those
//! [`super::encode_group`] writes for the same log (a test checks it).

use bytes::Bytes;

use super::{pair_len, varint_len, SliceWriter};

/// A key as the start of a `LogContent`: `0x0a`, its length, the key, and the value's tag
/// `0x12`, padded to a fixed block. `None` from [`KeyField::new`] for a key of 29 bytes or
/// more (such keys take the general writer).
#[derive(Clone, Debug)]
pub struct KeyField {
    block: [u8; Self::BLOCK],
    /// Bytes of `block` that are the prefix.
    len: usize,
}

impl KeyField {
    const BLOCK: usize = 32;

    pub fn new(key: &[u8]) -> Option<KeyField> {
        if key.len() + 3 > Self::BLOCK {
            return None;
        }
        let mut block = [0u8; Self::BLOCK];
        block[0] = 0x0a;
        block[1] = key.len() as u8;
        block[2..2 + key.len()].copy_from_slice(key);
        block[2 + key.len()] = 0x12;
        Some(KeyField {
            block,
            len: key.len() + 3,
        })
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.block[2..self.len - 1]
    }
}

/// A value found in a line: a range of it, or a range of the values made for it (unescaped,
/// joined) in [`LineValues`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineValue {
    Range(usize, usize),
    Made(usize, usize),
}

/// The values found in one line, in order. Values that are not a range of the line are made
/// into one buffer of its own: nothing to allocate or free per value, and clearing it is
/// setting two lengths (a line's values are written, then read back, for every line).
#[derive(Debug, Default)]
pub struct LineValues {
    values: Vec<LineValue>,
    made: Vec<u8>,
}

impl LineValues {
    pub fn with_capacity(values: usize) -> Self {
        LineValues {
            values: Vec::with_capacity(values),
            made: Vec::new(),
        }
    }

    pub fn clear(&mut self) {
        self.values.clear();
        self.made.clear();
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Keeps the first `len` values (those made after them stay in the buffer, unused).
    pub fn truncate(&mut self, len: usize) {
        self.values.truncate(len);
    }

    /// Adds the value `line[start..end]`.
    #[inline(always)]
    pub fn push_range(&mut self, start: usize, end: usize) {
        self.values.push(LineValue::Range(start, end));
    }

    /// Adds a value made of `pieces`, one after the other.
    pub fn push_made(&mut self, pieces: &[&[u8]]) {
        let start = self.made.len();
        for piece in pieces {
            self.made.extend_from_slice(piece);
        }
        self.values.push(LineValue::Made(start, self.made.len()));
    }

    /// Starts a value made piece by piece ([`LineValues::extend_made`]), ended by
    /// [`LineValues::end_made`] with what this returns.
    pub fn begin_made(&mut self) -> usize {
        self.made.len()
    }

    pub fn extend_made(&mut self, piece: &[u8]) {
        self.made.extend_from_slice(piece);
    }

    pub fn end_made(&mut self, start: usize) {
        self.values.push(LineValue::Made(start, self.made.len()));
    }

    /// The values, each with its text (`line` being the line they were found in).
    pub fn texts<'a>(&'a self, line: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
        self.values.iter().map(move |value| self.text(*value, line))
    }

    #[inline(always)]
    fn text<'a>(&'a self, value: LineValue, line: &'a [u8]) -> &'a [u8] {
        match value {
            LineValue::Range(start, end) => &line[start..end],
            LineValue::Made(start, end) => &self.made[start..end],
        }
    }

    /// The values as `Bytes`: views of `line`, or copies of those made.
    pub fn to_bytes<'a>(&'a self, line: &'a Bytes) -> impl Iterator<Item = Bytes> + 'a {
        self.values.iter().map(move |value| match *value {
            LineValue::Range(start, end) => line.slice(start..end),
            LineValue::Made(start, end) => Bytes::copy_from_slice(&self.made[start..end]),
        })
    }

    /// The kinds of the values, in order (whether each is a range of the line).
    pub fn values(&self) -> &[LineValue] {
        &self.values
    }
}

/// The part of the buffer a short field is written in: its tag and size, the key block, the
/// value's length and a 16-byte block of the value.
const WINDOW: usize = 64;

/// Room past a log for the fixed blocks written beyond its end: a window starts before it.
const SLACK: usize = WINDOW;

/// Bytes reserved for a log's length before its fields are written: a log of 128 bytes to
/// 16 KiB. Another length moves the fields once it is known.
const LENGTH_GUESS: usize = 2;

/// Writes one log (a LogGroup's field 1) of `time`, the fields `keys[i] = values[i]` (values
/// found in `line`; `keys` at least as many) and `time_ns`, into `out`: the bytes
/// `encode_group` writes for a `LogEvent` with those contents.
pub fn encode_keyed_log(
    out: &mut Vec<u8>,
    time: u32,
    time_ns: Option<u32>,
    line: &[u8],
    keys: &[KeyField],
    found: &LineValues,
) {
    let values = &found.values[..];
    let keys = &keys[..values.len()];
    // Room for the most it can take, zeroed here, just before it is written: still in the cache
    // then. The fields are written first, after room for a length of two bytes (a log of 128
    // bytes to 16 KiB): the sizes of the fields are not needed before.
    let sizes: usize = keys
        .iter()
        .zip(values)
        .map(|(key, value)| {
            key.len
                + match *value {
                    LineValue::Range(start, end) | LineValue::Made(start, end) => end - start,
                }
        })
        .sum();
    let at = out.len();
    let time_len = varint_len(u64::from(time));
    let body = at + 1 + LENGTH_GUESS + 1 + time_len;
    // Per field, beyond its key block and value: the LogContent's tag and size and the value's
    // size (no size is larger than `sizes` and the ten bytes of a varint).
    let most = sizes + values.len() * (1 + 2 * varint_len(sizes as u64 + 10)) + 5;
    out.resize(body + most + SLACK, 0);
    let mut w = SliceWriter {
        buf: &mut out[body..],
        pos: 0,
    };
    for (key, value) in keys.iter().zip(values) {
        let v = found.text(*value, line);
        // The LogContent's size when the value's length is one byte: the key field (tag,
        // length, key: the block's prefix less its last byte) and the value field (tag,
        // length, value).
        let pair = key.len + 1 + v.len();
        if pair < 0x80 {
            // Every length one byte: tag, size, the key block, the value's length, the value,
            // in one window of the buffer (one bounds check; the slack covers it).
            let pos = w.pos;
            let window: &mut [u8; WINDOW] = (&mut w.buf[pos..pos + WINDOW])
                .try_into()
                .expect("a window");
            window[0] = 0x12;
            window[1] = pair as u8;
            window[2..2 + KeyField::BLOCK].copy_from_slice(&key.block);
            let vpos = 2 + key.len;
            window[vpos] = v.len() as u8;
            let dst = vpos + 1;
            match value {
                LineValue::Range(start, _) if v.len() <= 16 && start + 16 <= line.len() => {
                    window[dst..dst + 16].copy_from_slice(&line[*start..*start + 16]);
                }
                _ => w.buf[pos + dst..pos + dst + v.len()].copy_from_slice(v),
            }
            w.pos = pos + dst + v.len();
            continue;
        }
        let k = key.key();
        w.pair(k, v, pair_len(k, v));
    }
    w.nanos(time_ns);
    let body_len = w.pos;
    let len = 1 + time_len + body_len;
    let head = 1 + varint_len(len as u64) + 1 + time_len;
    if at + head != body {
        // Not the length guessed: the fields move (the room covers a longer length too).
        out.copy_within(body..body + body_len, at + head);
    }
    let mut w = SliceWriter {
        buf: &mut out[at..at + head],
        pos: 0,
    };
    w.byte(0x0a);
    w.varint(len as u64);
    w.byte(0x08);
    w.varint(u64::from(time));
    out.truncate(at + head + body_len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogEvent, PipelineEvent, PipelineEventGroup};

    #[test]
    fn a_keyed_log_is_the_log_encode_group_writes() {
        let mut seed: u32 = 5;
        let mut random = |n: usize| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as usize % n
        };
        assert!(
            KeyField::new(&[b'k'; 30]).is_none(),
            "too long for the block"
        );
        for _ in 0..2_000 {
            // Values short and long, near the line's end or not, ranges and bytes of their own.
            let line: Vec<u8> = (0..random(300)).map(|i| b'a' + (i % 26) as u8).collect();
            let fields = random(12);
            let keys: Vec<KeyField> = (0..fields)
                .map(|i| KeyField::new(&vec![b'k'; 1 + (i * 7) % 29]).unwrap())
                .collect();
            let mut values = LineValues::default();
            for _ in 0..fields {
                match random(4) {
                    0 => values.push_made(&[&vec![b'o'; random(200)], b"p"]),
                    _ => {
                        let start = random(line.len() + 1);
                        values.push_range(start, start + random(line.len() - start + 1))
                    }
                }
            }
            let time = [0, 1_700_000_000, u32::MAX][random(3)];
            let time_ns = [None, Some(random(1_000_000_000) as u32)][random(2)];

            let mut log = LogEvent::new(time, time_ns);
            for (key, value) in keys.iter().zip(values.texts(&line)) {
                log.contents.push((
                    Bytes::copy_from_slice(key.key()),
                    Bytes::copy_from_slice(value),
                ));
            }
            let mut group = PipelineEventGroup::default();
            group.events.push(PipelineEvent::Log(log));
            let mut expected = vec![7u8; 3];
            crate::proto::encode_group(&group, &mut expected);

            let mut got = vec![7u8; 3];
            encode_keyed_log(&mut got, time, time_ns, &line, &keys, &values);
            assert_eq!(got, expected);
        }
    }
}
