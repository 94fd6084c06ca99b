//! Multiline assembly for `input_file`, with iLogtail 2.0's `Multiline` options.
//!
//! iLogtail splits events in two places: the reader holds back the incomplete last event of
//! each buffer until more data or a timeout comes (`LogFileReader::RemoveLastIncompleteLog`),
//! and `ProcessorSplitMultilineLogStringNative` cuts the rest into events. Here both are one
//! streaming state machine fed block by block: the "held back" part is the pending event,
//! which survives from one block to the next, and a timeout becomes [`flush`].
//!
//! [`flush`]: MultilineAssembler::flush

use std::ops::Range;

use bytes::Bytes;
// The engine of iLogtail's native processors (PCRE2, boost's Perl syntax), for the same reason:
// iLogtail's multiline patterns are boost regexes too.
use tailrace::processor::native_regex::{Anchor, NativeRegex as Regex};

/// Largest pending event before it is forced out as if the file had timed out. iLogtail has the
/// same kind of limit through its 512 KiB read buffer ("log is too long and forced to be
/// split"); without one, an EndPattern that never matches would hold a whole file in memory.
pub const DEFAULT_MAX_EVENT_BYTES: u64 = 2 * 1024 * 1024;

/// A pending event left at the end of a block of at most this size keeps pointing into the
/// block; in a bigger block it does so only if it is at least a quarter of it, and is copied
/// otherwise, so that an idle file does not pin a whole large block for a few held lines.
const RETAIN_WHOLE_BLOCK: usize = 64 * 1024;

/// `Multiline` options as they appear in the config (serde, PascalCase, iLogtail defaults).
#[derive(Clone, Debug, Default, serde::Deserialize, PartialEq)]
#[serde(default, rename_all = "PascalCase")]
pub struct MultilineConfig {
    pub mode: String,
    pub start_pattern: String,
    pub continue_pattern: String,
    pub end_pattern: String,
    pub unmatched_content_treatment: String,
}

/// The five pattern sets iLogtail accepts; the others are refused by [`MultilineAssembler::new`].
#[derive(Debug)]
enum Rules {
    Start { start: Regex },
    StartContinue { start: Regex, cont: Regex },
    StartEnd { start: Regex, end: Regex },
    End { end: Regex },
    ContinueEnd { cont: Regex, end: Regex },
}

impl Rules {
    /// With an EndPattern an event is only complete once its end line is seen, so whatever is
    /// still pending when it has to go out is unmatched content, not an event.
    fn needs_end(&self) -> bool {
        matches!(
            self,
            Rules::StartEnd { .. } | Rules::End { .. } | Rules::ContinueEnd { .. }
        )
    }
}

/// The part of the pending event that lies in the block being fed.
#[derive(Debug)]
struct Cur {
    start: usize,
    end: usize,
    /// Past the last held line's newline: what the event occupies in the file.
    extent: usize,
}

#[derive(Debug)]
struct State {
    discard: bool,
    max_event_bytes: u64,
    /// Whether the reader leaves `\r` out of its lines; lines recovered from held bytes then
    /// leave it out as well, so an unmatched line looks the same whichever way it was held.
    cr_stripped: bool,
    /// Bytes of the pending event from earlier blocks, exactly as in the file (newlines
    /// included, also the last one, whose length is `carry_term`): copied because the event
    /// spans blocks.
    carry: Vec<u8>,
    carry_term: usize,
    /// The pending event, still pointing into the block it was left in (never together with
    /// `carry`); `tail_term` is the length of its last newline.
    tail: Option<Bytes>,
    tail_term: usize,
    /// Only set while a block is being fed.
    cur: Option<Cur>,
    lines: u64,
    bytes: u64,
    discarded: u64,
}

/// Joins the lines of a file into events by StartPattern / ContinuePattern / EndPattern.
#[derive(Debug)]
pub struct MultilineAssembler {
    rules: Rules,
    state: State,
}

impl MultilineAssembler {
    /// None when the config asks for no multiline (no pattern set). Err names the option and
    /// the value (an invalid regex, an invalid combination, or an unknown Mode or
    /// UnmatchedContentTreatment), where iLogtail only warns and falls back: a collector that
    /// silently joins or splits lines differently from what was asked is worse than one that
    /// refuses the config.
    pub fn new(config: &MultilineConfig) -> Result<Option<MultilineAssembler>, (String, String)> {
        match config.mode.as_str() {
            "" | "custom" => {}
            "JSON" => {
                return Err((
                    "Mode".to_string(),
                    "\"JSON\" (joining lines into JSON objects) is not supported; \
                     use \"custom\" with StartPattern, ContinuePattern or EndPattern"
                        .to_string(),
                ))
            }
            other => {
                return Err((
                    "Mode".to_string(),
                    format!("{other:?} is not a valid mode (expected \"custom\")"),
                ))
            }
        }
        let discard = match config.unmatched_content_treatment.as_str() {
            "" | "single_line" => false,
            "discard" => true,
            other => {
                return Err((
                    "UnmatchedContentTreatment".to_string(),
                    format!("{other:?} is not valid (expected \"single_line\" or \"discard\")"),
                ))
            }
        };
        let start = compile("StartPattern", &config.start_pattern)?;
        let cont = compile("ContinuePattern", &config.continue_pattern)?;
        let end = compile("EndPattern", &config.end_pattern)?;
        let rules = match (start, cont, end) {
            (None, None, None) => return Ok(None),
            (Some(start), None, None) => Rules::Start { start },
            (Some(start), Some(cont), None) => Rules::StartContinue { start, cont },
            (Some(start), None, Some(end)) => Rules::StartEnd { start, end },
            (None, None, Some(end)) => Rules::End { end },
            (None, Some(cont), Some(end)) => Rules::ContinueEnd { cont, end },
            (None, Some(_), None) => {
                return Err((
                    "ContinuePattern".to_string(),
                    "needs a StartPattern or an EndPattern: alone it cannot tell where an \
                     event begins (a pattern that is empty or \".*\" counts as unset)"
                        .to_string(),
                ))
            }
            (Some(_), Some(_), Some(_)) => {
                return Err((
                    "ContinuePattern".to_string(),
                    "cannot be combined with both StartPattern and EndPattern; use \
                     StartPattern+ContinuePattern, StartPattern+EndPattern or \
                     ContinuePattern+EndPattern"
                        .to_string(),
                ))
            }
        };
        Ok(Some(MultilineAssembler {
            rules,
            state: State {
                discard,
                max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
                cr_stripped: false,
                carry: Vec::new(),
                carry_term: 0,
                tail: None,
                tail_term: 0,
                cur: None,
                lines: 0,
                bytes: 0,
                discarded: 0,
            },
        }))
    }

    /// Lets the reader match the limit to its own buffer size (see [`DEFAULT_MAX_EVENT_BYTES`]).
    #[cfg(test)]
    pub fn set_max_event_bytes(&mut self, limit: u64) {
        self.state.max_event_bytes = limit.max(1);
    }

    /// Feeds the lines of one block. `block` holds whole lines; `lines` are the byte ranges of
    /// each line in it, without the newline, in order. Complete events are appended to `out`
    /// (each one a Bytes: a single line, or several lines joined with "\n"). An event whose
    /// lines all lie in this block is a zero-copy `block.slice(..)`, so it holds what the file
    /// holds between its lines (a `\r` before a newline included); only events that span
    /// blocks are copied.
    pub fn push_block(&mut self, block: &Bytes, lines: &[Range<usize>], out: &mut Vec<Bytes>) {
        let MultilineAssembler { rules, state } = self;
        let needs_end = rules.needs_end();
        for (i, range) in lines.iter().enumerate() {
            // Ranges come from another module: a bad one must not take the thread down.
            let hi = range.end.min(block.len());
            let lo = range.start.min(hi);
            // Where the line's newline ends: what it occupies in the file.
            let extent = match lines.get(i + 1) {
                Some(next) => next.start.clamp(hi, block.len()),
                None => memchr::memchr(b'\n', &block[hi..]).map_or(hi, |p| hi + p + 1),
            };
            let r = lo..hi;
            let line = &block[lo..hi];
            match rules {
                Rules::Start { start } => {
                    if start.is_match(line) {
                        state.emit_event(block, out);
                        state.hold(block, r, extent);
                    } else if state.is_pending() {
                        state.hold(block, r, extent);
                    } else {
                        state.unmatched_line(block, r, out);
                    }
                }
                Rules::StartContinue { start, cont } => {
                    if state.is_pending() && cont.is_match(line) {
                        state.hold(block, r, extent);
                    } else {
                        state.emit_event(block, out);
                        if start.is_match(line) {
                            state.hold(block, r, extent);
                        } else {
                            state.unmatched_line(block, r, out);
                        }
                    }
                }
                Rules::StartEnd { start, end } => {
                    // The start line itself is never tested against EndPattern (as in iLogtail):
                    // a line matching both opens an event that the next end line closes.
                    if state.is_pending() {
                        state.hold(block, r, extent);
                        if end.is_match(line) {
                            state.emit_event(block, out);
                        }
                    } else if start.is_match(line) {
                        state.hold(block, r, extent);
                    } else {
                        state.unmatched_line(block, r, out);
                    }
                }
                Rules::End { end } => {
                    state.hold(block, r, extent);
                    if end.is_match(line) {
                        state.emit_event(block, out);
                    }
                }
                Rules::ContinueEnd { cont, end } => {
                    if cont.is_match(line) {
                        state.hold(block, r, extent);
                    } else if state.is_pending() {
                        state.hold(block, r, extent);
                        if end.is_match(line) {
                            state.emit_event(block, out);
                        } else {
                            state.emit_unmatched(block, out);
                        }
                    } else if end.is_match(line) {
                        out.push(block.slice(r));
                    } else {
                        state.unmatched_line(block, r, out);
                    }
                }
            }
            if state.bytes > state.max_event_bytes {
                state.emit_pending(needs_end, block, out);
            }
        }
        state.park(block);
    }

    /// Emits whatever event is still pending (end of file after a timeout, or shutdown). With
    /// an EndPattern the pending lines never saw their end, so, as in iLogtail, they are
    /// unmatched content: one event per line with `single_line`, dropped with `discard`. A
    /// reader that wants the event completed after a restart should keep its checkpoint at the
    /// pending event (see [`pending_bytes`]) and not flush on shutdown.
    ///
    /// [`pending_bytes`]: MultilineAssembler::pending_bytes
    pub fn flush(&mut self, out: &mut Vec<Bytes>) {
        let needs_end = self.rules.needs_end();
        self.state.emit_pending(needs_end, &Bytes::new(), out);
    }

    /// Bytes of the file held in the pending event, from its first byte through the newline of
    /// its last line, so that the reader can keep its checkpoint at the start of the pending
    /// event (at-least-once). Measured from the line ranges' positions in their blocks, so a
    /// `\r` the reader left out of its lines is still counted.
    pub fn pending_bytes(&self) -> u64 {
        self.state.bytes
    }

    /// Whether `line` (without its newline) begins an event by the StartPattern; None without a
    /// StartPattern. Where a tail start moves to (see `resume.rs`).
    pub fn starts_event(&mut self, line: &[u8]) -> Option<bool> {
        match &mut self.rules {
            Rules::Start { start }
            | Rules::StartContinue { start, .. }
            | Rules::StartEnd { start, .. } => Some(start.is_match(line)),
            Rules::End { .. } | Rules::ContinueEnd { .. } => None,
        }
    }

    /// Lines dropped because UnmatchedContentTreatment is discard (a counter for statistics).
    pub fn discarded_lines(&self) -> u64 {
        self.state.discarded
    }
}

impl State {
    fn is_pending(&self) -> bool {
        self.lines > 0
    }

    /// Adds a line of `block` to the pending event (opening one if there is none).
    fn hold(&mut self, block: &Bytes, r: Range<usize>, extent: usize) {
        if extent >= r.end + 2 && block[r.end] == b'\r' {
            self.cr_stripped = true;
        }
        match &mut self.cur {
            Some(cur) => {
                let before = cur.extent;
                cur.end = cur.end.max(r.end);
                cur.extent = cur.extent.max(extent);
                self.bytes += (cur.extent - before) as u64;
            }
            None => {
                // The event continues from an earlier block: from now on it is a copy.
                if let Some(tail) = self.tail.take() {
                    self.carry.extend_from_slice(&tail);
                    self.carry_term = self.tail_term;
                }
                self.bytes += (extent - r.start) as u64;
                self.cur = Some(Cur {
                    start: r.start,
                    end: r.end,
                    extent,
                });
            }
        }
        self.lines += 1;
    }

    /// Takes the pending event out, without the newline after its last line.
    fn take(&mut self, block: &Bytes) -> Option<Bytes> {
        if self.lines == 0 {
            return None;
        }
        self.lines = 0;
        self.bytes = 0;
        let seg = if let Some(cur) = self.cur.take() {
            Some(block.slice(cur.start..cur.end))
        } else if let Some(mut tail) = self.tail.take() {
            tail.truncate(tail.len().saturating_sub(self.tail_term));
            Some(tail)
        } else {
            None
        };
        if self.carry.is_empty() {
            return Some(seg.unwrap_or_default());
        }
        let mut data = std::mem::take(&mut self.carry);
        match seg {
            Some(seg) => data.extend_from_slice(&seg),
            None => data.truncate(data.len().saturating_sub(self.carry_term)),
        }
        Some(Bytes::from(data))
    }

    fn emit_event(&mut self, block: &Bytes, out: &mut Vec<Bytes>) {
        if let Some(event) = self.take(block) {
            out.push(event);
        }
    }

    /// The pending lines turned out not to form an event: each line goes out on its own, or
    /// is dropped, as UnmatchedContentTreatment says.
    fn emit_unmatched(&mut self, block: &Bytes, out: &mut Vec<Bytes>) {
        if self.discard {
            self.discarded += self.lines;
            self.lines = 0;
            self.bytes = 0;
            self.cur = None;
            self.tail = None;
            self.carry = Vec::new();
            return;
        }
        let Some(held) = self.take(block) else {
            return;
        };
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &held) {
            out.push(self.line_of(&held, start, nl));
            start = nl + 1;
        }
        out.push(self.line_of(&held, start, held.len()));
    }

    fn line_of(&self, held: &Bytes, start: usize, mut end: usize) -> Bytes {
        if self.cr_stripped && end > start && held[end - 1] == b'\r' {
            end -= 1;
        }
        held.slice(start..end)
    }

    /// Sends out the pending event before it is complete (timeout, shutdown, size limit).
    fn emit_pending(&mut self, needs_end: bool, block: &Bytes, out: &mut Vec<Bytes>) {
        if needs_end {
            self.emit_unmatched(block, out);
        } else {
            self.emit_event(block, out);
        }
    }

    fn unmatched_line(&mut self, block: &Bytes, r: Range<usize>, out: &mut Vec<Bytes>) {
        if self.discard {
            self.discarded += 1;
        } else {
            out.push(block.slice(r));
        }
    }

    /// Keeps the part of the pending event that lies in `block` once the block is done.
    fn park(&mut self, block: &Bytes) {
        let Some(cur) = self.cur.take() else {
            return;
        };
        let size = cur.extent - cur.start;
        let term = cur.extent - cur.end;
        let retain = block.len() <= RETAIN_WHOLE_BLOCK || size >= block.len() / 4;
        if self.carry.is_empty() && retain {
            self.tail = Some(block.slice(cur.start..cur.extent));
            self.tail_term = term;
        } else {
            self.carry.extend_from_slice(&block[cur.start..cur.extent]);
            self.carry_term = term;
        }
    }
}

/// Compiles a pattern so that it has to match a whole line. None for a pattern that iLogtail
/// treats as unset: empty, or nothing but `.*` (which every line matches).
///
/// Patterns have boost's Perl syntax and byte semantics, as iLogtail's (see
/// [`tailrace::processor::native_regex`]): `.` matches any byte, so a line that is not valid
/// UTF-8 can still match `\d{4}.*`, and `\d`, `\w`, `\s` are ASCII; a pattern that asks for
/// Unicode (`\p{Han}`, a non-ASCII character) gets Unicode semantics instead.
fn compile(option: &str, pattern: &str) -> Result<Option<Regex>, (String, String)> {
    let body = strip_match_all_suffix(pattern);
    if body.is_empty() {
        return Ok(None);
    }
    let invalid = |e: tailrace::processor::ProcessorError| (option.to_string(), e.message);
    // `X.*` matching a whole line is `X` matching at its start, which stops at the end of `X`
    // instead of scanning a long line to its end (iLogtail makes the same rewrite). Only
    // without `|`: `a|b.*` is not `a|b` followed by `.*`. The pattern as written is checked
    // first, so that an invalid one is reported as the user wrote it.
    let full = Regex::new(option, pattern, Anchor::Full).map_err(invalid)?;
    if body.len() < pattern.len() && !pattern.contains('|') {
        if let Ok(start) = Regex::new(option, body, Anchor::Start) {
            return Ok(Some(start));
        }
    }
    Ok(Some(full))
}

/// `pattern` without its trailing `.*`s; an escaped `\.*` is kept.
fn strip_match_all_suffix(pattern: &str) -> &str {
    let mut body = pattern;
    while let Some(rest) = body.strip_suffix(".*") {
        let backslashes = rest.bytes().rev().take_while(|&b| b == b'\\').count();
        if backslashes % 2 == 1 {
            break;
        }
        body = rest;
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = r"\d{4}-\d{2}-\d{2}.*";

    fn config(start: &str, cont: &str, end: &str, treatment: &str) -> MultilineConfig {
        MultilineConfig {
            mode: String::new(),
            start_pattern: start.to_string(),
            continue_pattern: cont.to_string(),
            end_pattern: end.to_string(),
            unmatched_content_treatment: treatment.to_string(),
        }
    }

    fn assembler(start: &str, cont: &str, end: &str, treatment: &str) -> MultilineAssembler {
        MultilineAssembler::new(&config(start, cont, end, treatment))
            .expect("valid config")
            .expect("multiline")
    }

    /// A block as the reader makes it: lines joined by `\n`, the last one ended too.
    fn block_of(lines: &[&[u8]]) -> (Bytes, Vec<Range<usize>>) {
        let mut data = Vec::new();
        let mut ranges = Vec::new();
        for line in lines {
            let start = data.len();
            data.extend_from_slice(line);
            ranges.push(start..data.len());
            data.push(b'\n');
        }
        (Bytes::from(data), ranges)
    }

    fn push(a: &mut MultilineAssembler, lines: &[&str]) -> (Bytes, Vec<Bytes>) {
        let raw: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        let (block, ranges) = block_of(&raw);
        let mut out = Vec::new();
        a.push_block(&block, &ranges, &mut out);
        (block, out)
    }

    fn strings(out: &[Bytes]) -> Vec<String> {
        out.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    fn flushed(a: &mut MultilineAssembler) -> Vec<String> {
        let mut out = Vec::new();
        a.flush(&mut out);
        strings(&out)
    }

    fn inside(event: &Bytes, block: &Bytes) -> bool {
        let e = event.as_ptr() as usize;
        let b = block.as_ptr() as usize;
        e >= b && e + event.len() <= b + block.len()
    }

    const TRACE: &[&str] = &[
        "2024-05-01 10:00:00.123 ERROR [main] c.e.App - request failed",
        "java.lang.IllegalStateException: boom",
        "\tat com.example.App.handle(App.java:42)",
        "\tat com.example.App.main(App.java:10)",
        "Caused by: java.io.IOException: disk full",
        "\tat com.example.Store.write(Store.java:7)",
        "\t... 2 more",
        "2024-05-01 10:00:01.000 INFO [main] c.e.App - recovered",
    ];

    #[test]
    fn java_stack_trace_with_start_pattern() {
        let mut a = assembler(DATE, "", "", "");
        let (_, out) = push(&mut a, TRACE);
        assert_eq!(strings(&out), vec![TRACE[..7].join("\n")]);
        // The last event waits: the next line may still continue it.
        assert_eq!(flushed(&mut a), vec![TRACE[7].to_string()]);
        assert_eq!(a.pending_bytes(), 0);
    }

    #[test]
    fn start_only_lines_before_the_first_start_are_unmatched() {
        let lines = ["orphan 1", "", "2024-01-01 a", "  more", "2024-01-02 b"];
        let mut a = assembler(DATE, "", "", "single_line");
        let (_, out) = push(&mut a, &lines);
        assert_eq!(strings(&out), ["orphan 1", "", "2024-01-01 a\n  more"]);
        assert_eq!(flushed(&mut a), ["2024-01-02 b"]);
        assert_eq!(a.discarded_lines(), 0);

        let mut a = assembler(DATE, "", "", "discard");
        let (_, out) = push(&mut a, &lines);
        assert_eq!(strings(&out), ["2024-01-01 a\n  more"]);
        assert_eq!(flushed(&mut a), ["2024-01-02 b"]);
        assert_eq!(a.discarded_lines(), 2);
    }

    #[test]
    fn start_continue_java_trace() {
        let cont = r"\s+at .*|\s+\.\.\. \d+ more|Caused by:.*|java\..*";
        let lines = [
            "stray before any start",
            TRACE[0],
            TRACE[1],
            TRACE[2],
            TRACE[4],
            TRACE[6],
            "not a continuation",
            "2024-05-01 10:00:02 WARN x",
            "\tat a.B.c(B.java:1)",
        ];
        let mut a = assembler(DATE, cont, "", "");
        let (_, out) = push(&mut a, &lines);
        assert_eq!(
            strings(&out),
            [
                "stray before any start".to_string(),
                lines[1..6].join("\n"),
                "not a continuation".to_string(),
            ]
        );
        // No EndPattern: what is pending at the end is a complete event.
        assert_eq!(flushed(&mut a), [lines[7..].join("\n")]);

        let mut a = assembler(DATE, cont, "", "discard");
        let (_, out) = push(&mut a, &lines);
        assert_eq!(strings(&out), [lines[1..6].join("\n")]);
        assert_eq!(a.discarded_lines(), 2);
    }

    #[test]
    fn start_continue_a_start_line_ends_the_event_and_opens_the_next() {
        let mut a = assembler("S.*", " .*", "", "");
        let (_, out) = push(&mut a, &["S1", " a", "S2", "S3", " b"]);
        assert_eq!(strings(&out), ["S1\n a", "S2"]);
        assert_eq!(flushed(&mut a), ["S3\n b"]);
    }

    #[test]
    fn start_continue_continue_is_tested_before_start() {
        // A line matching both patterns continues the pending event.
        let mut a = assembler("S.*", "S.*|.*x", "", "");
        let (_, out) = push(&mut a, &["S1", "Sx", "y"]);
        assert_eq!(strings(&out), ["S1\nSx", "y"]);
    }

    #[test]
    fn start_end_as_in_the_ilogtail_docs() {
        let start = r"\[\d+-\d+-\w+:\d+:\d+.\d+].*Exception.*";
        let end = r".*\.\.\. \d+ more";
        let lines = [
            "[2022-07-07T10:43:27.360266763] [ERROR] java.lang.Exception: exception happened",
            "[2022-07-07T10:43:27.360266763]    at com.aliyun.RegexMultiLog.f2(RegexMultiLog.java:108)",
            "[2022-07-07T10:43:27.360266763]    at java.base/java.lang.Thread.run(Thread.java:833)",
            "[2022-07-07T10:43:27.360266763]    ... 23 more",
            "[2022-07-07T10:43:27.360266763] Some user custom log",
            "[2022-07-07T10:43:27.360266763] Some user custom log",
            "[2022-07-07T10:43:27.360266763] [ERROR] java.lang.Exception: exception happened",
        ];
        let mut a = assembler(start, "", end, "");
        let (_, out) = push(&mut a, &lines);
        assert_eq!(
            strings(&out),
            [
                lines[..4].join("\n"),
                lines[4].to_string(),
                lines[5].to_string()
            ]
        );
        assert!(a.pending_bytes() > 0);
        // Never ended: unmatched content, one line per event.
        assert_eq!(flushed(&mut a), [lines[6]]);

        let mut a = assembler(start, "", end, "discard");
        let (_, out) = push(&mut a, &lines);
        assert_eq!(strings(&out), [lines[..4].join("\n")]);
        assert_eq!(a.discarded_lines(), 2);
        assert!(flushed(&mut a).is_empty());
        assert_eq!(a.discarded_lines(), 3);
        assert_eq!(a.pending_bytes(), 0);
    }

    #[test]
    fn start_end_rules_of_ilogtail() {
        let mut a = assembler("B.*", "", ".*E", "");
        // A start inside an open event is just a line of it; the start line is not tested
        // against EndPattern; the end line belongs to the event.
        let (_, out) = push(&mut a, &["BE", "x", "B2", "yE", "z", "B3", "w"]);
        assert_eq!(strings(&out), ["BE\nx\nB2\nyE", "z"]);
        assert_eq!(flushed(&mut a), ["B3", "w"]);
    }

    #[test]
    fn end_only() {
        let mut a = assembler("", "", "END.*", "");
        let (_, out) = push(&mut a, &["a", "b", "END 1", "END 2", "c", "END 3", "d", ""]);
        assert_eq!(strings(&out), ["a\nb\nEND 1", "END 2", "c\nEND 3"]);
        assert_eq!(a.pending_bytes(), 3);
        assert_eq!(flushed(&mut a), ["d", ""]);

        let mut a = assembler("", "", "END.*", "discard");
        let (_, out) = push(&mut a, &["a", "END", "d", "e"]);
        assert_eq!(strings(&out), ["a\nEND"]);
        assert!(flushed(&mut a).is_empty());
        assert_eq!(a.discarded_lines(), 2);
    }

    #[test]
    fn continue_end() {
        let lines = [
            "> a", "> b", "END 1", // continue lines closed by an end line
            "END 2", // an end line alone is an event
            "x",     // neither: unmatched
            "> c", "y", // continue lines not closed: all unmatched
            "> d",
        ];
        let mut a = assembler("", ">.*", "END.*", "");
        let (_, out) = push(&mut a, &lines);
        assert_eq!(strings(&out), ["> a\n> b\nEND 1", "END 2", "x", "> c", "y"]);
        assert_eq!(flushed(&mut a), ["> d"]);

        let mut a = assembler("", ">.*", "END.*", "discard");
        let (_, out) = push(&mut a, &lines);
        assert_eq!(strings(&out), ["> a\n> b\nEND 1", "END 2"]);
        assert_eq!(a.discarded_lines(), 3);
        assert!(flushed(&mut a).is_empty());
        assert_eq!(a.discarded_lines(), 4);
    }

    #[test]
    fn event_spanning_two_blocks_is_copied() {
        let mut a = assembler(DATE, "", "", "");
        let (b1, out1) = push(&mut a, &["2024-01-01 first", "\tat one"]);
        assert!(out1.is_empty());
        assert_eq!(a.pending_bytes(), b1.len() as u64);
        let (b2, out2) = push(&mut a, &["\tat two", "2024-01-02 second"]);
        assert_eq!(strings(&out2), ["2024-01-01 first\n\tat one\n\tat two"]);
        assert!(!inside(&out2[0], &b1) && !inside(&out2[0], &b2));
        assert_eq!(a.pending_bytes(), "2024-01-02 second\n".len() as u64);
        assert_eq!(flushed(&mut a), ["2024-01-02 second"]);
    }

    #[test]
    fn event_spanning_three_blocks_with_end_pattern() {
        let mut a = assembler("", "", "END", "");
        let mut out = Vec::new();
        for part in [&["a", "b"][..], &["c"][..], &[][..], &["d", "END", "e"][..]] {
            let (_, o) = push(&mut a, part);
            out.extend(o);
        }
        assert_eq!(strings(&out), ["a\nb\nc\nd\nEND"]);
        assert_eq!(a.pending_bytes(), 2);
    }

    #[test]
    fn events_inside_a_block_are_zero_copy() {
        let mut a = assembler(DATE, r"\s+at .*", "", "");
        let (block, out) = push(&mut a, &["junk", TRACE[0], TRACE[2], TRACE[3], TRACE[7]]);
        assert_eq!(out.len(), 2);
        for event in &out {
            assert!(inside(event, &block));
        }
        // Pending at the end of a small block, flushed later: still a view of the block.
        let mut rest = Vec::new();
        a.flush(&mut rest);
        assert_eq!(strings(&rest), [TRACE[7]]);
        assert!(inside(&rest[0], &block));
    }

    #[test]
    fn a_small_event_left_in_a_large_block_is_copied() {
        let mut a = assembler("S.*", "", "", "");
        let filler = "f".repeat(100 * 1024);
        let (block, out) = push(&mut a, &["S1", &filler, "S2"]);
        assert_eq!(out.len(), 1);
        assert!(inside(&out[0], &block));
        let mut rest = Vec::new();
        a.flush(&mut rest);
        assert_eq!(strings(&rest), ["S2"]);
        assert!(!inside(&rest[0], &block));
    }

    #[test]
    fn pending_bytes_before_and_after_flush() {
        let mut a = assembler(DATE, "", "", "");
        assert_eq!(a.pending_bytes(), 0);
        push(&mut a, &["2024-01-01 x", "  y", ""]);
        assert_eq!(a.pending_bytes(), (12 + 1 + 3 + 1 + 1) as u64);
        push(&mut a, &["  z"]);
        assert_eq!(a.pending_bytes(), 18 + 4);
        assert_eq!(flushed(&mut a), ["2024-01-01 x\n  y\n\n  z"]);
        assert_eq!(a.pending_bytes(), 0);
        assert!(flushed(&mut a).is_empty());
    }

    #[test]
    fn crlf_lines_keep_file_bytes_and_are_counted_whole() {
        // The reader leaves `\r` out of its lines.
        let data = Bytes::from_static(b"2024-01-01 a\r\n  b\r\n2024-01-02 c\r\n");
        let lines = [0..12, 14..17, 19..31];
        let mut a = assembler(DATE, "", "", "");
        let mut out = Vec::new();
        a.push_block(&data, &lines, &mut out);
        assert_eq!(strings(&out), ["2024-01-01 a\r\n  b"]);
        assert_eq!(a.pending_bytes(), 14);

        let mut a = assembler("", "", "E", "");
        let mut out = Vec::new();
        a.push_block(&data, &lines, &mut out);
        assert!(out.is_empty());
        assert_eq!(a.pending_bytes(), data.len() as u64);
        a.flush(&mut out);
        assert_eq!(strings(&out), ["2024-01-01 a", "  b", "2024-01-02 c"]);
    }

    #[test]
    fn a_line_cut_at_a_block_end_is_joined_without_a_newline() {
        // The reader cuts an over-long line and sends its first piece without a newline.
        let mut a = assembler("S.*", "", "", "");
        let b1 = Bytes::from_static(b"S1\nlong-");
        let mut out = Vec::new();
        a.push_block(&b1, &[0..2, 3..8], &mut out);
        assert_eq!(a.pending_bytes(), 8);
        let b2 = Bytes::from_static(b"line\nS2\n");
        a.push_block(&b2, &[0..4, 5..7], &mut out);
        assert_eq!(strings(&out), ["S1\nlong-line"]);
    }

    #[test]
    fn invalid_regex_names_the_option() {
        for (i, option) in ["StartPattern", "ContinuePattern", "EndPattern"]
            .iter()
            .enumerate()
        {
            let mut c = config("S", "", "E", "");
            match i {
                0 => c.start_pattern = "(".into(),
                1 => c.continue_pattern = "(".into(),
                _ => c.end_pattern = "(".into(),
            }
            let (name, message) = MultilineAssembler::new(&c).unwrap_err();
            assert_eq!(name, *option);
            assert!(
                message.starts_with("\"(\" is not a valid regex"),
                "{message}"
            );
        }
    }

    #[test]
    fn invalid_combinations_name_the_option() {
        let (name, message) = MultilineAssembler::new(&config("", "C", "", "")).unwrap_err();
        assert_eq!(name, "ContinuePattern");
        assert!(
            message.contains("StartPattern or an EndPattern"),
            "{message}"
        );
        // ".*" counts as unset, so this is ContinuePattern alone too.
        let (name, _) = MultilineAssembler::new(&config(".*", "C", "", "")).unwrap_err();
        assert_eq!(name, "ContinuePattern");
        let (name, message) = MultilineAssembler::new(&config("S", "C", "E", "")).unwrap_err();
        assert_eq!(name, "ContinuePattern");
        assert!(
            message.contains("both StartPattern and EndPattern"),
            "{message}"
        );
    }

    #[test]
    fn unknown_mode_and_treatment() {
        let mut c = config("S", "", "", "");
        c.mode = "regex".into();
        let (name, message) = MultilineAssembler::new(&c).unwrap_err();
        assert_eq!(name, "Mode");
        assert!(message.contains("\"regex\""), "{message}");
        c.mode = "JSON".into();
        assert_eq!(MultilineAssembler::new(&c).unwrap_err().0, "Mode");
        c.mode = "custom".into();
        assert!(MultilineAssembler::new(&c).unwrap().is_some());
        c.unmatched_content_treatment = "drop".into();
        let (name, message) = MultilineAssembler::new(&c).unwrap_err();
        assert_eq!(name, "UnmatchedContentTreatment");
        assert!(message.contains("\"drop\""), "{message}");
        // A typo is reported even when no pattern is set.
        let c = config("", "", "", "singleline");
        assert!(MultilineAssembler::new(&c).is_err());
    }

    #[test]
    fn no_pattern_means_no_multiline() {
        assert!(MultilineAssembler::new(&MultilineConfig::default())
            .unwrap()
            .is_none());
        assert!(
            MultilineAssembler::new(&config(".*", "", ".*.*", "discard"))
                .unwrap()
                .is_none()
        );
        // `.*` as EndPattern is unset too, so this is StartPattern alone.
        let mut a = assembler("S.*", "", ".*", "");
        let (_, out) = push(&mut a, &["S1", "x", "S2"]);
        assert_eq!(strings(&out), ["S1\nx"]);
    }

    #[test]
    fn config_deserializes_with_ilogtail_names_and_defaults() {
        let c: MultilineConfig =
            serde_json::from_str(r#"{"Mode":"custom","StartPattern":"\\d+.*"}"#).unwrap();
        assert_eq!(c.mode, "custom");
        assert_eq!(c.start_pattern, r"\d+.*");
        assert_eq!(c.unmatched_content_treatment, "");
        let c: MultilineConfig = serde_json::from_str(
            r#"{"EndPattern":"E","ContinuePattern":"C","UnmatchedContentTreatment":"discard"}"#,
        )
        .unwrap();
        assert_eq!(c, config("", "C", "E", "discard"));
        assert_eq!(
            serde_json::from_str::<MultilineConfig>("{}").unwrap(),
            MultilineConfig::default()
        );
    }

    #[test]
    fn patterns_match_whole_lines() {
        let mut re = compile("StartPattern", r"\d+").unwrap().unwrap();
        assert!(re.is_match(b"123"));
        assert!(!re.is_match(b"123a"));
        assert!(!re.is_match(b"a123"));
        let mut re = compile("StartPattern", "abc.*").unwrap().unwrap();
        assert!(re.is_match(b"abc") && re.is_match(b"abcdef"));
        assert!(!re.is_match(b"xabc"));
        // Alternation keeps its meaning: "a", or anything starting with "b".
        let mut re = compile("StartPattern", "a|b.*").unwrap().unwrap();
        assert!(re.is_match(b"a") && re.is_match(b"bxyz"));
        assert!(!re.is_match(b"ax"));
        // An escaped dot is not "match anything".
        let mut re = compile("StartPattern", r"a\.*").unwrap().unwrap();
        assert!(re.is_match(b"a...") && !re.is_match(b"ab"));
        let mut re = compile("StartPattern", r"a\\.*").unwrap().unwrap();
        assert!(re.is_match(br"a\anything") && !re.is_match(b"a"));
        // A verbose pattern ending in a comment.
        let mut re = compile("StartPattern", "(?x) a b  # comment")
            .unwrap()
            .unwrap();
        assert!(re.is_match(b"ab") && !re.is_match(b"abc"));
        let mut re = compile("StartPattern", "(?x) a b  # comment .*")
            .unwrap()
            .unwrap();
        assert!(re.is_match(b"ab"));
    }

    /// iLogtail's patterns are boost (Perl) regexes: look-around and backreferences work.
    #[test]
    fn perl_syntax_in_patterns() {
        // A start line is a date not followed by " DEBUG".
        let mut a = assembler(r"\d{4}-\d\d-\d\d(?! DEBUG).*", "", "", "");
        let (_, out) = push(
            &mut a,
            &[
                "2024-01-02 ERROR a",
                "  at x",
                "2024-01-02 DEBUG b",
                "2024-01-03 INFO c",
            ],
        );
        assert_eq!(
            strings(&out),
            ["2024-01-02 ERROR a\n  at x\n2024-01-02 DEBUG b"]
        );
        let mut re = compile("EndPattern", r"(?<=\})(\w)\1").unwrap().unwrap();
        assert!(
            !re.is_match(b"}xx"),
            "a whole-line match cannot start inside a look-behind"
        );
        let mut re = compile("EndPattern", r".*(?<=\})(\w)\1").unwrap().unwrap();
        assert!(re.is_match(b"end}xx") && !re.is_match(b"end}xy"));
    }

    #[test]
    fn lines_that_are_not_utf8() {
        let mut re = compile("StartPattern", DATE).unwrap().unwrap();
        assert!(re.is_match(b"2024-01-01 \xff\xfe\xc3"));
        let mut re = compile("StartPattern", ".*ERROR.*").unwrap().unwrap();
        assert!(re.is_match(b"\xff\xfe ERROR \x80"));
        let mut re = compile("StartPattern", r"\d+ \w+").unwrap().unwrap();
        assert!(!re.is_match("12 é".as_bytes()), "\\w is ASCII, as in boost");
        // Non-ASCII literals still match their UTF-8 bytes.
        let mut re = compile("StartPattern", "错误.*").unwrap().unwrap();
        assert!(re.is_match("错误: x".as_bytes()) && !re.is_match(b"x"));
        // Only valid with Unicode: falls back to it.
        let mut re = compile("StartPattern", r"\p{Han}+.*").unwrap().unwrap();
        assert!(re.is_match("日志 \u{1}".as_bytes()));
        assert!(re.is_match(b"\xe6\x97\xa5 \xff"));

        let mut a = assembler(DATE, "", "", "");
        let (_, out) = push(&mut a, &["2024-01-01 a", "\u{fffd}", "2024-01-02 b"]);
        assert_eq!(out.len(), 1);
        let raw: [&[u8]; 3] = [b"2024-01-01 \xff", b"\xfe\xfe", b"2024-01-02 \x80"];
        let (block, ranges) = block_of(&raw);
        let mut out = Vec::new();
        a.push_block(&block, &ranges, &mut out);
        assert_eq!(
            out,
            [
                Bytes::from_static(b"2024-01-02 b"),
                Bytes::from_static(b"2024-01-01 \xff\n\xfe\xfe")
            ]
        );
    }

    #[test]
    #[allow(clippy::reversed_empty_ranges)]
    fn empty_blocks_and_bad_ranges_do_not_panic() {
        let mut a = assembler("S.*", "", "E", "");
        let mut out = Vec::new();
        a.push_block(&Bytes::new(), &[], &mut out);
        a.push_block(&Bytes::new(), &[0..0, 3..1, 5..9], &mut out);
        let b = Bytes::from_static(b"S1\nx\nE\n");
        let weird = [0..2, 10..20, 4..2, 3..4, 0..7, 5..6, usize::MAX..usize::MAX];
        a.push_block(&b, &weird, &mut out);
        a.flush(&mut out);
        assert_eq!(a.pending_bytes(), 0);
        for config in [
            config("S.*", "", "", ""),
            config("S.*", "C.*", "", ""),
            config("", "C.*", "E", ""),
            config("", "", "E", "discard"),
        ] {
            let mut a = MultilineAssembler::new(&config).unwrap().unwrap();
            a.push_block(&b, &weird, &mut out);
            a.push_block(&Bytes::new(), &weird, &mut out);
            a.flush(&mut out);
        }
    }

    #[test]
    fn huge_line_and_event_size_limit() {
        let huge = format!("2024-01-01 {}", "x".repeat(3 * 1024 * 1024));
        let mut a = assembler(DATE, "", "", "");
        let (block, out) = push(&mut a, &[&huge, "  y"]);
        // Over the default limit: forced out as an event of its own, after which a
        // continuation line has no event to join (as after iLogtail's forced split).
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), huge.len());
        assert!(inside(&out[0], &block));
        assert_eq!(out[1], "  y");
        assert!(flushed(&mut a).is_empty());

        let mut a = assembler("S.*", "", "", "");
        a.set_max_event_bytes(10);
        let (_, out) = push(&mut a, &["S1", "aaaa", "bbbb", "cccc", "S2"]);
        assert_eq!(strings(&out), ["S1\naaaa\nbbbb", "cccc"]);

        let mut a = assembler("", "", "END", "discard");
        a.set_max_event_bytes(10);
        // Without its end an event over the limit is unmatched content, dropped here.
        let (_, out) = push(&mut a, &["aaaa", "bbbb", "cccc", "dd", "END"]);
        assert_eq!(strings(&out), ["dd\nEND"]);
        assert_eq!(a.discarded_lines(), 3);
        assert_eq!(a.pending_bytes(), 0);
    }

    /// A small deterministic generator, so that failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Feeding a file in one block or cut anywhere between lines gives the same events; after a
    /// flush every line is accounted for; pending_bytes always points at what flush emits.
    #[test]
    fn block_boundaries_do_not_change_events() {
        let vocabulary: [&[u8]; 8] = [b"S1", b"S2 x", b"C a", b"C b", b"E", b"x", b"", b"\xff"];
        let configs = [
            ("S.*", "", ""),
            ("S.*", "C.*", ""),
            ("S.*", "", "E"),
            ("", "", "E"),
            ("", "C.*", "E"),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let count = rng.below(40);
            let lines: Vec<&[u8]> = (0..count).map(|_| vocabulary[rng.below(8)]).collect();
            let (file, ranges) = block_of(&lines);
            let (start, cont, end) = configs[round % configs.len()];
            for treatment in ["single_line", "discard"] {
                let mut whole = assembler(start, cont, end, treatment);
                let mut expected = Vec::new();
                whole.push_block(&file, &ranges, &mut expected);
                whole.flush(&mut expected);

                let mut split = assembler(start, cont, end, treatment);
                let mut got = Vec::new();
                let mut fed = 0;
                while fed < count || (fed == count && rng.below(3) == 0) {
                    let n = rng.below(count - fed + 1);
                    let lo = ranges.get(fed).map_or(file.len(), |r| r.start);
                    let hi = ranges.get(fed + n).map_or(file.len(), |r| r.start);
                    let block = file.slice(lo..hi);
                    let local: Vec<Range<usize>> = ranges[fed..fed + n]
                        .iter()
                        .map(|r| r.start - lo..r.end - lo)
                        .collect();
                    split.push_block(&block, &local, &mut got);
                    fed += n;
                    // What is held starts at a line of the input.
                    let pending = split.pending_bytes() as usize;
                    assert!(pending <= hi);
                    assert!(pending == 0 || hi == pending || file[hi - pending - 1] == b'\n');
                    if fed == count && rng.below(2) == 0 {
                        break;
                    }
                }
                split.flush(&mut got);
                assert_eq!(
                    got, expected,
                    "round {round} {start}/{cont}/{end} {treatment}"
                );
                assert_eq!(split.discarded_lines(), whole.discarded_lines());
                let emitted: usize = expected
                    .iter()
                    .map(|e| memchr::memchr_iter(b'\n', e).count() + 1)
                    .sum();
                assert_eq!(
                    emitted as u64 + whole.discarded_lines(),
                    count as u64,
                    "round {round}"
                );
                assert_eq!(split.pending_bytes(), 0);
            }
        }
    }

    /// What pending_bytes covers is exactly what a flush sends out.
    #[test]
    fn pending_bytes_cover_what_flush_emits() {
        let vocabulary: [&[u8]; 6] = [b"S1", b"C a", b"E", b"x", b"", b"\xfe\xff"];
        let configs = [
            ("S.*", "", ""),
            ("S.*", "C.*", ""),
            ("S.*", "", "E"),
            ("", "", "E"),
            ("", "C.*", "E"),
        ];
        let mut rng = Rng(12345);
        for round in 0..300 {
            let count = 1 + rng.below(30);
            let lines: Vec<&[u8]> = (0..count).map(|_| vocabulary[rng.below(6)]).collect();
            let (file, ranges) = block_of(&lines);
            let (start, cont, end) = configs[round % configs.len()];
            let cut = rng.below(count + 1);
            let mut a = assembler(start, cont, end, "single_line");
            let mut out = Vec::new();
            let lo = ranges.get(cut).map_or(file.len(), |r| r.start);
            a.push_block(&file.slice(..lo), &ranges[..cut], &mut out);
            let local: Vec<Range<usize>> = ranges[cut..]
                .iter()
                .map(|r| r.start - lo..r.end - lo)
                .collect();
            a.push_block(&file.slice(lo..), &local, &mut out);
            let pending = a.pending_bytes() as usize;
            let mut rest = Vec::new();
            a.flush(&mut rest);
            if pending == 0 {
                assert!(rest.is_empty());
                continue;
            }
            let held = &file[file.len() - pending..file.len() - 1];
            assert_eq!(rest.join(&b"\n"[..]), held, "round {round}");
        }
    }
}
