//! Processors that take whole blocks (iLogtail 1.x's raw-log splitters and its regex
//! accelerator): when one of them is the first processor of a file pipeline, the reader hands
//! the chain one event per block read (the block as `content`) instead of one per line, and the
//! processor cuts it into events (DESIGN §5, whole-block compatibility).
//!
//! This module holds what the reader and those processors must agree on:
//! * [`BlockRule`]: where a block may end so that no event is cut in two. A block always ends
//!   after a newline; with an event-start regex it ends before the last line that starts an
//!   event (that event waits for the next read, or for the reader's flush timeout), so a
//!   multi-line event that straddles two reads reaches the processor whole. iLogtail 1.x cut
//!   such an event in two when the split regex was a processor's and not the reader's.
//! * [`LineMatcher`]: whether a line starts an event, the same test for the reader and the
//!   processor.
//! * [`FieldSplitter`]: how a raw-log splitter turns one field of a log into several logs
//!   (which field, what else is kept, the time, the file position).

use std::ops::Range;

use bytes::Bytes;
use memchr::memmem;
use regex::bytes::Regex;

use super::{Options, ProcessorError};
use crate::{LogEvent, PipelineEvent, PipelineEventGroup};

/// The key iLogtail adds for a log's file offset (`EnableLogPositionMeta`); splitters move it
/// to each piece's own offset.
const FILE_OFFSET_KEY: &[u8] = b"__file_offset__";

/// Whether a line starts an event.
#[derive(Clone, Debug)]
pub struct LineMatcher {
    regex: Regex,
    /// Compiled as `^(?:...)$`: a match is a full match (boost's `regex_match`). Otherwise
    /// compiled as `^(?:...)`, and the leftmost-first match must cover the line (Go's test in
    /// iLogtail's split processors).
    anchored: bool,
}

impl LineMatcher {
    /// Go's semantics (RE2 syntax, leftmost-first match covering the whole line), as iLogtail's
    /// extended split processors test lines.
    pub fn go(field: &str, pattern: &str) -> Result<LineMatcher, ProcessorError> {
        let invalid = |e: regex::Error| {
            ProcessorError::new(
                field,
                format!(
                    "{pattern:?} is not a valid regex: {}",
                    super::regex_problem(&e)
                ),
            )
        };
        // Checked alone first, so that an error is about the user's pattern.
        Regex::new(pattern).map_err(invalid)?;
        // Anchored at the start only: a match that starts at 0 is the leftmost one, found
        // leftmost-first as Go finds it; and a line that cannot start with the pattern is
        // rejected at its first bytes instead of being searched to its end. Without Unicode
        // classes when the pattern allows it: Go's `\d`, `\w` and `\s` are ASCII, and the
        // byte automaton is several times faster on the head line of every event.
        let anchored = format!("^(?:{pattern})");
        let build = |unicode: bool| {
            regex::bytes::RegexBuilder::new(&anchored)
                .unicode(unicode)
                .build()
        };
        let regex = build(false).or_else(|_| build(true)).map_err(invalid)?;
        Ok(LineMatcher {
            regex,
            anchored: false,
        })
    }

    /// The native processors' semantics (a full match on bytes). On the `regex` crate, not
    /// PCRE2 like the native parsers: a block rule is cloned into every reader and matched
    /// through `&self`, which PCRE2's per-matcher match data does not allow; look-around in
    /// `LogBeginRegex` is therefore not supported yet.
    pub fn native(field: &str, pattern: &str) -> Result<LineMatcher, ProcessorError> {
        // Checked as written, so that an error quotes the user's pattern.
        super::go_regex(field, pattern)?;
        Ok(LineMatcher {
            regex: super::go_regex(field, &format!("^(?:{pattern})$"))?,
            anchored: true,
        })
    }

    pub fn matches(&self, line: &[u8]) -> bool {
        if self.anchored {
            self.regex.is_match(line)
        } else {
            self.regex.find(line).is_some_and(|m| m.end() == line.len())
        }
    }
}

/// Where the reader may end a block for a whole-block processor.
#[derive(Clone, Debug)]
pub enum BlockRule {
    /// After the last newline: every line is an event, or events are cut anywhere a line ends.
    Line,
    /// After the last separator (`processor_split_log_string`'s `SplitSep`).
    Separator(Bytes),
    /// Before the last complete line that starts an event.
    EventStart(LineMatcher),
}

impl BlockRule {
    /// How many bytes of `held` (what was read and not yet emitted) form complete events, or
    /// None when none does yet. `new_from` is where the bytes not looked at before start: what
    /// lies before it was looked at by an earlier call and held no cut.
    pub fn cut(&self, held: &[u8], new_from: usize) -> Option<usize> {
        match self {
            BlockRule::Line => memchr::memrchr(b'\n', &held[new_from..]).map(|i| new_from + i + 1),
            BlockRule::Separator(sep) => {
                // A separator may straddle what was held and what is new.
                let from = new_from.saturating_sub(sep.len().saturating_sub(1));
                memmem::rfind(&held[from..], sep).map(|i| from + i + sep.len())
            }
            BlockRule::EventStart(matcher) => {
                // Complete lines, last first, down to those already looked at (a line is
                // looked at once it has its newline).
                let mut end = memchr::memrchr(b'\n', held)?;
                while end >= new_from {
                    let start = memchr::memrchr(b'\n', &held[..end]).map_or(0, |i| i + 1);
                    if start == 0 {
                        // The first line held starts the block: nothing before it to emit.
                        return None;
                    }
                    if matcher.matches(&held[start..end]) {
                        return Some(start);
                    }
                    end = start - 1;
                }
                None
            }
        }
    }
}

impl BlockRule {
    /// What of a block ended by this rule is the event's `content`: the block without its last
    /// newline when blocks end at line ends (the newline ends the last event, it is not part of
    /// it); the block as it is when a separator other than a newline ends it (the processor
    /// drops what the separator leaves empty).
    pub fn content(&self, block: &Bytes) -> Bytes {
        let at_line_end = match self {
            BlockRule::Separator(sep) => &sep[..] == b"\n",
            BlockRule::Line | BlockRule::EventStart(_) => true,
        };
        match block.last() {
            Some(b'\n') if at_line_end => block.slice(..block.len() - 1),
            _ => block.clone(),
        }
    }
}

/// The block rule of the processor `kind` when it takes whole blocks, given its options; None
/// for a processor that takes lines. Options that do not build the processor are an error.
pub fn block_rule(kind: &str, options: &Options) -> Option<Result<BlockRule, ProcessorError>> {
    match kind {
        "processor_split_log_regex" => Some(super::split_log_regex::block_rule(options)),
        "processor_split_log_string" => Some(super::split_log_string::block_rule(options)),
        "processor_regex_accelerate" => Some(super::regex_accelerate::block_rule(options)),
        _ => None,
    }
}

/// How a raw-log splitter turns one field of each log into several logs, as iLogtail's
/// `processor_split_log_regex` and `processor_split_log_string` do: the field is `SplitKey`
/// (or the first content when it is empty); each piece becomes a log with the other contents
/// when `PreserveOthers`, then the piece under the field's key; a log without time gets the
/// current time. The pieces are views into the field's value: nothing is copied.
#[derive(Debug)]
pub struct FieldSplitter {
    pub key: Bytes,
    pub preserve_others: bool,
    pub no_key_error: bool,
    /// Move `__file_offset__` to each piece's offset (`EnableLogPositionMeta`).
    pub position_meta: bool,
    /// Logs without the field.
    pub missing_key: u64,
    /// The processor's name, for its warnings.
    pub name: &'static str,
}

impl FieldSplitter {
    /// A splitter of field `key` (empty: the first content) for processor `name`.
    pub fn new(
        name: &'static str,
        key: String,
        preserve_others: bool,
        no_key_error: bool,
        position_meta: bool,
    ) -> Self {
        FieldSplitter {
            key: Bytes::from(key),
            preserve_others,
            no_key_error,
            position_meta,
            missing_key: 0,
            name,
        }
    }

    /// Splits every log of `group`; `cut(value, pieces)` pushes the ranges of `value` that
    /// become logs. Other events pass unchanged, in their place.
    pub fn split(
        &mut self,
        group: &mut PipelineEventGroup,
        mut cut: impl FnMut(&[u8], &mut Vec<Range<usize>>),
    ) {
        let mut out = Vec::with_capacity(group.events.len());
        let mut pieces = Vec::new();
        for event in std::mem::take(&mut group.events) {
            let PipelineEvent::Log(log) = event else {
                out.push(event);
                continue;
            };
            let field = super::go_source_index(
                &log,
                &self.key,
                &mut self.missing_key,
                self.no_key_error,
                self.name,
            );
            let mut base = LogEvent::new(log.time, log.time_ns);
            if log.time == 0 {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                base.time = now.as_secs() as u32;
                base.time_ns = Some(now.subsec_nanos());
            }
            if self.preserve_others {
                base.contents.extend(
                    log.contents
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| Some(*i) != field)
                        .map(|(_, kv)| kv.clone()),
                );
            }
            let Some(field) = field else {
                if self.preserve_others {
                    out.push(PipelineEvent::Log(base));
                }
                continue;
            };
            let (key, value) = &log.contents[field];
            pieces.clear();
            cut(value, &mut pieces);
            for range in pieces.drain(..) {
                let mut piece = base.clone();
                if self.position_meta {
                    revise_file_offset(&mut piece, range.start as u64);
                }
                piece.position = log
                    .position
                    .map(|(offset, _)| (offset + range.start as u64, range.len() as u64));
                piece
                    .contents
                    .push((key.clone(), value.slice(range.clone())));
                out.push(PipelineEvent::Log(piece));
            }
        }
        group.events = out;
    }
}

/// Adds `by` to the log's `__file_offset__` content, when it has a numeric one.
fn revise_file_offset(log: &mut LogEvent, by: u64) {
    if let Some((_, value)) = log.contents.iter_mut().find(|(k, _)| k == FILE_OFFSET_KEY) {
        if let Some(offset) = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            *value = Bytes::from((offset + by).to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin(pattern: &str) -> BlockRule {
        BlockRule::EventStart(LineMatcher::go("SplitRegex", pattern).unwrap())
    }

    #[test]
    fn line_and_separator_blocks_end_after_the_last_one() {
        assert_eq!(BlockRule::Line.cut(b"a\nb\nc", 0), Some(4));
        assert_eq!(BlockRule::Line.cut(b"abc", 0), None);
        let sep = BlockRule::Separator(Bytes::from_static(b"||"));
        assert_eq!(sep.cut(b"a||b||c", 0), Some(6));
        // The separator straddles what was held and what came.
        assert_eq!(sep.cut(b"ab||c", 3), Some(4));
        assert_eq!(sep.cut(b"ab|", 0), None);
    }

    #[test]
    fn block_content_drops_the_last_newline_of_line_blocks_only() {
        let block = Bytes::from_static(b"a\n\nb\n");
        assert_eq!(&BlockRule::Line.content(&block)[..], b"a\n\nb");
        assert_eq!(&begin(".*").content(&block)[..], b"a\n\nb");
        let newline = BlockRule::Separator(Bytes::from_static(b"\n"));
        assert_eq!(&newline.content(&block)[..], b"a\n\nb");
        let paragraphs = BlockRule::Separator(Bytes::from_static(b"\n\n"));
        assert_eq!(&paragraphs.content(&block)[..], b"a\n\nb\n");
        assert_eq!(
            &BlockRule::Line.content(&Bytes::from_static(b"half"))[..],
            b"half"
        );
    }

    #[test]
    fn event_start_blocks_hold_the_last_event_back() {
        let rule = begin(r"\d{4}-\d{2}-\d{2}.*");
        let held = b"2024-01-01 a\n  at x\n2024-01-02 b\n  at y\n";
        // The second event may go on: it waits.
        assert_eq!(rule.cut(held, 0), Some(20));
        // One event only, however long: nothing to emit yet.
        assert_eq!(rule.cut(b"2024-01-01 a\n  at x\n  at y\n", 0), None);
        // An incomplete last line is not tested: it may not be whole.
        assert_eq!(rule.cut(b"2024-01-01 a\n2024-01", 0), None);
        // Lines looked at before are not tested again.
        assert_eq!(rule.cut(b"2024-01-01 a\n  at x\n  at y\n", 20), None);
        assert_eq!(
            rule.cut(b"2024-01-01 a\n  at x\n2024-01-02 b\n", 15),
            Some(20)
        );
    }

    #[test]
    fn go_and_native_matchers_test_whole_lines() {
        let go = LineMatcher::go("SplitRegex", r"\[.*").unwrap();
        assert!(go.matches(b"[2017] x"));
        assert!(!go.matches(b" [2017] x"));
        // Leftmost-first, as Go: `a|ab` finds `a`, which does not cover `ab`.
        assert!(!LineMatcher::go("SplitRegex", "a|ab")
            .unwrap()
            .matches(b"ab"));
        assert!(LineMatcher::native("LogBeginRegex", "a|ab")
            .unwrap()
            .matches(b"ab"));
        assert!(LineMatcher::go("SplitRegex", "(").is_err());
        // Go's classes are ASCII; Unicode ones still work, and so do non-ASCII literals.
        assert!(!LineMatcher::go("SplitRegex", r"\d+")
            .unwrap()
            .matches("٣".as_bytes()));
        assert!(LineMatcher::go("SplitRegex", r"\p{Han}+ .*")
            .unwrap()
            .matches("中文 x".as_bytes()));
        assert!(LineMatcher::go("SplitRegex", r"\[中\].*")
            .unwrap()
            .matches("[中] x".as_bytes()));
    }

    #[test]
    fn pieces_keep_time_position_and_other_fields() {
        let mut log = LogEvent::new(0, None);
        log.set_content("host", "h");
        log.set_content("content", "ab|cd");
        log.set_content(Bytes::from_static(FILE_OFFSET_KEY), "100");
        log.position = Some((100, 5));
        let mut group = PipelineEventGroup::default();
        group.events.push(PipelineEvent::Log(log));
        let mut splitter = FieldSplitter {
            key: Bytes::from_static(b"content"),
            preserve_others: true,
            no_key_error: true,
            position_meta: true,
            missing_key: 0,
            name: "test",
        };
        splitter.split(&mut group, |v, out| {
            let bar = v.iter().position(|&b| b == b'|').unwrap();
            out.push(0..bar);
            out.push(bar + 1..v.len());
        });
        assert_eq!(group.events.len(), 2);
        let PipelineEvent::Log(second) = &group.events[1] else {
            panic!()
        };
        assert!(second.time > 0, "a log without time gets the current time");
        assert_eq!(second.position, Some((103, 2)));
        assert_eq!(&second.content(b"content").unwrap()[..], b"cd");
        assert_eq!(&second.content(FILE_OFFSET_KEY).unwrap()[..], b"103");
        assert_eq!(&second.contents[0].0[..], b"host");
        assert_eq!(
            &second.contents[2].0[..],
            b"content",
            "the piece comes last"
        );
    }
}
