//! `processor_grok`: extracts fields from one content with grok expressions, as iLogtail's
//! extended (Go) processor of that name. Each `Match` entry is a grok expression
//! (`%{IPORHOST:client} %{WORD:method} ...`); they are tried in order and the first that yields a
//! field wins. Every named reference becomes a field, including those inside library patterns
//! (`%{COMBINEDAPACHELOG}` gives `clientip`, `verb`, `agent` ...); unnamed ones give nothing, nor
//! do empty captures. As in iLogtail, an expression is searched for (not anchored) and every
//! match in the value is collected; where iLogtail would then append a second content of the
//! same key, a field keeps one value, the last (one key, one value, as elsewhere in Tailrace).
//!
//! The patterns use look-behind and atomic groups, which only a backtracking engine has: they
//! are compiled once, at build, with PCRE2 (JIT when the platform has it) in byte mode, so a value
//! that is not UTF-8 is matched byte-wise rather than rejected, and `\w`, `\d`, `\b` are ASCII as
//! under iLogtail's engine (regexp2 in RE2 mode).
//!
//! `TimeoutMilliSeconds`: iLogtail's engine aborts a match that runs longer. PCRE2 has no clock;
//! it bounds every match by its backtracking limit instead (a catastrophic expression ends with
//! a limit error, which counts as a time-out), and a value whose matching took longer than
//! `TimeoutMilliSeconds` counts as timed out too: it is left unparsed, as iLogtail leaves it.

mod library;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pcre2::bytes::{CaptureLocations, Regex, RegexBuilder};
use serde::Deserialize;

use super::{parse_options, Options, ProcessorError, Registration};
use crate::plugin::Processor;
use crate::{LogEvent, PipelineEvent, PipelineEventGroup};
use library::PatternLibrary;

pub const REGISTRATION: Registration = Registration::new::<GrokConfig>("processor_grok", build);

/// iLogtail's options and defaults.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct GrokConfig {
    /// Directories (or files) of pattern files, `NAME pattern` per line, read once at build.
    pub custom_pattern_dir: Vec<String>,
    /// More patterns, by name; they replace library patterns of the same name.
    pub custom_patterns: BTreeMap<String, String>,
    /// The content to parse (default `content`); empty means every content.
    pub source_key: String,
    /// The grok expressions, tried in order. Required.
    pub r#match: Vec<String>,
    /// Longest a value may take to match, in ms; 0 (the default) means no limit but PCRE2's.
    pub timeout_milli_seconds: i64,
    /// Keep the source content when no expression matches (default true).
    pub ignore_parse_failure: bool,
    /// Keep the source content when an expression matches (default true).
    pub keep_source: bool,
    /// Report logs without the source content (default false; counted).
    pub no_key_error: bool,
    /// Report values no expression matches (default true; counted either way).
    pub no_match_error: bool,
    /// Report values whose matching timed out (default true; counted either way).
    pub timeout_error: bool,
}

impl Default for GrokConfig {
    fn default() -> Self {
        GrokConfig {
            custom_pattern_dir: Vec::new(),
            custom_patterns: BTreeMap::new(),
            source_key: "content".to_owned(),
            r#match: Vec::new(),
            timeout_milli_seconds: 0,
            ignore_parse_failure: true,
            keep_source: true,
            no_key_error: false,
            no_match_error: true,
            timeout_error: true,
        }
    }
}

fn build(options: &Options) -> Result<Box<dyn Processor>, ProcessorError> {
    Ok(Box::new(ProcessorGrok::new(parse_options(options)?)?))
}

/// The most stack PCRE2's JIT may use for one match: the default 32 KiB is too little for the
/// long alternations of grok patterns on long values (a deeper match would fail, not crash).
const JIT_STACK_BYTES: usize = 4 << 20;

/// One compiled `Match` entry.
struct Matcher {
    regex: Regex,
    locations: CaptureLocations,
    /// The fields, in the order of their first group; each with its groups (a name used twice,
    /// as in alternatives, has several).
    fields: Vec<(Bytes, Vec<usize>)>,
    /// Whether one of the fields is named like the source content.
    names_source: bool,
}

/// What became of one value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// By the matcher at this index, which matched this many times.
    Parsed {
        matcher: usize,
        matches: usize,
    },
    NoMatch,
    TimedOut,
}

/// A field found in a value: which of its matcher's fields, and where in the value.
#[derive(Clone, Copy, Debug)]
struct Found {
    field: usize,
    from: usize,
    to: usize,
}

pub struct ProcessorGrok {
    matchers: Vec<Matcher>,
    /// Empty: every content.
    source_key: Bytes,
    timeout: Option<Duration>,
    ignore_parse_failure: bool,
    keep_source: bool,
    no_key_error: bool,
    /// The fields found in the current value (kept to reuse its allocation).
    found: Vec<Found>,
    /// Values no expression matched.
    pub parse_failures: u64,
    /// Values whose matching timed out or hit PCRE2's limits.
    pub timeouts: u64,
    /// Logs without the source content (with `NoKeyError`).
    pub missing_key: u64,
}

impl ProcessorGrok {
    pub fn new(config: GrokConfig) -> Result<Self, ProcessorError> {
        if config.r#match.is_empty() {
            return Err(ProcessorError::new(
                "Match",
                "must hold at least one grok expression",
            ));
        }
        if config.timeout_milli_seconds < 0 {
            return Err(ProcessorError::new(
                "TimeoutMilliSeconds",
                format!(
                    "{} is negative (0 means no time limit)",
                    config.timeout_milli_seconds
                ),
            ));
        }
        let mut library = PatternLibrary::builtin();
        for (i, dir) in config.custom_pattern_dir.iter().enumerate() {
            library
                .add_path(i, Path::new(dir))
                .map_err(|(field, message)| ProcessorError::new(field, message))?;
        }
        library.add_custom(&config.custom_patterns);
        let mut expansion = library
            .expand_all()
            .map_err(|(field, message)| ProcessorError::new(field, message))?;
        let mut matchers = Vec::with_capacity(config.r#match.len());
        for (i, expression) in config.r#match.iter().enumerate() {
            let field = format!("Match[{i}]");
            let pattern = expansion
                .expand_text(expression)
                .map_err(|e| ProcessorError::new(&field, format!("{expression:?}: {e}")))?;
            // Duplicate names are allowed: library patterns reuse field names across
            // alternatives (HTTPD_ERRORLOG), which iLogtail's engine accepts.
            let regex = RegexBuilder::new()
                .jit_if_available(true)
                .max_jit_stack_size(Some(JIT_STACK_BYTES))
                .build(&format!("(?J){pattern}"))
                .map_err(|e| {
                    ProcessorError::new(
                        &field,
                        format!("{expression:?} is not a valid regex once expanded: {e}"),
                    )
                })?;
            let mut fields: Vec<(Bytes, Vec<usize>)> = Vec::new();
            for (group, name) in regex.capture_names().iter().enumerate() {
                // iLogtail skips groups whose name is a number (its engine's unnamed groups).
                let Some(name) = name.as_deref().filter(|n| n.parse::<i32>().is_err()) else {
                    continue;
                };
                let key = expansion.field(name).as_bytes();
                match fields.iter_mut().find(|(k, _)| k == key) {
                    Some((_, groups)) => groups.push(group),
                    None => fields.push((Bytes::copy_from_slice(key), vec![group])),
                }
            }
            matchers.push(Matcher {
                locations: regex.capture_locations(),
                regex,
                names_source: fields
                    .iter()
                    .any(|(k, _)| k[..] == *config.source_key.as_bytes()),
                fields,
            });
        }
        Ok(ProcessorGrok {
            matchers,
            source_key: Bytes::from(config.source_key),
            timeout: (config.timeout_milli_seconds > 0)
                .then(|| Duration::from_millis(config.timeout_milli_seconds as u64)),
            ignore_parse_failure: config.ignore_parse_failure,
            keep_source: config.keep_source,
            no_key_error: config.no_key_error,
            found: Vec::new(),
            parse_failures: 0,
            timeouts: 0,
            missing_key: 0,
        })
    }

    /// Matches `value`, and counts a value not parsed.
    fn outcome(&mut self, value: &[u8]) -> Outcome {
        let outcome = grok(&mut self.matchers, value, self.timeout, &mut self.found);
        match outcome {
            Outcome::Parsed { .. } => {}
            Outcome::NoMatch => self.parse_failures += 1,
            Outcome::TimedOut => self.timeouts += 1,
        }
        outcome
    }

    /// Whether the source stays after `outcome`.
    fn keeps_source(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Parsed { .. } => self.keep_source,
            _ => self.ignore_parse_failure,
        }
    }

    /// Parses one content of `log`, then keeps or drops it as the options say.
    fn process_content(&mut self, log: &mut LogEvent, key: &Bytes, value: &Bytes) {
        let outcome = self.outcome(value);
        // The source goes before the fields come, so a field named like it stays.
        if !self.keeps_source(outcome) {
            log.remove_content(key);
        }
        if let Outcome::Parsed { matcher, .. } = outcome {
            let fields = &self.matchers[matcher].fields;
            // One allocation for all the fields, not one per doubling of the inline contents.
            log.contents.reserve(self.found.len());
            for found in self.found.drain(..) {
                log.set_content(
                    fields[found.field].0.clone(),
                    value.slice(found.from..found.to),
                );
            }
        }
    }

    /// Processes one log: its source content, or every content when the source key is empty.
    fn process_log(&mut self, log: &mut LogEvent) {
        if self.source_key.is_empty() {
            // iLogtail parses every content of the log as it was before this processor.
            let sources: Vec<(Bytes, Bytes)> = log.contents.iter().cloned().collect();
            if sources.is_empty() && self.no_key_error {
                self.missing_key += 1;
            }
            for (key, value) in &sources {
                self.process_content(log, key, value);
            }
            return;
        }
        let key = self.source_key.clone();
        match log.content(&key).cloned() {
            Some(value) => self.process_content(log, &key, &value),
            None if self.no_key_error => self.missing_key += 1,
            None => {}
        }
    }
}

/// Tries each matcher on `value` in turn; the first whose matches (all of them, left to right)
/// give at least one field wins, and `found` holds its fields.
fn grok(
    matchers: &mut [Matcher],
    value: &[u8],
    timeout: Option<Duration>,
    found: &mut Vec<Found>,
) -> Outcome {
    let started = timeout.map(|_| Instant::now());
    let timed_out = |found: &mut Vec<Found>| {
        found.clear();
        Outcome::TimedOut
    };
    for (index, matcher) in matchers.iter_mut().enumerate() {
        found.clear();
        let mut start = 0;
        let mut matches = 0;
        while start <= value.len() {
            let span = match matcher
                .regex
                .captures_read_at(&mut matcher.locations, value, start)
            {
                // PCRE2's match or JIT stack limit: the expression backtracks too much here.
                Err(_) => return timed_out(found),
                Ok(None) => break,
                Ok(Some(span)) => (span.start(), span.end()),
            };
            matches += 1;
            for (field, (_, groups)) in matcher.fields.iter().enumerate() {
                let last = groups
                    .iter()
                    .rev()
                    .find_map(|&group| matcher.locations.get(group));
                if let Some((from, to)) = last.filter(|(from, to)| from < to) {
                    found.push(Found { field, from, to });
                }
            }
            // After an empty match, the next one starts a byte further.
            start = if span.1 == span.0 { span.1 + 1 } else { span.1 };
        }
        if let (Some(limit), Some(started)) = (timeout, started) {
            if started.elapsed() > limit {
                return timed_out(found);
            }
        }
        if !found.is_empty() {
            return Outcome::Parsed {
                matcher: index,
                matches,
            };
        }
    }
    Outcome::NoMatch
}

impl super::EncodingParser for ProcessorGrok {
    type Scratch = ();

    fn process_log(&mut self, log: &mut LogEvent, _: &mut ()) -> bool {
        ProcessorGrok::process_log(self, log);
        true
    }

    /// Writes the log a line becomes straight into `out`: the source when it stays, then the
    /// fields, as [`ProcessorGrok::process_content`] sets them on a log that holds only the
    /// line. Not in every-content mode (an empty source key).
    fn encode_line(&mut self, line: &super::Line<'_>, _: &mut (), out: &mut Vec<u8>) -> bool {
        if self.source_key.is_empty() || !super::same_name(line.key, &self.source_key) {
            return false;
        }
        let value = line.text();
        let outcome = self.outcome(value);
        let source = self
            .keeps_source(outcome)
            .then_some((&self.source_key[..], value));
        let Outcome::Parsed { matcher, matches } = outcome else {
            crate::proto::encode_log(out, line.time, line.time_ns, source.into_iter());
            return true;
        };
        let matcher = &self.matchers[matcher];
        let fields = self
            .found
            .iter()
            .map(|f| (&matcher.fields[f.field].0[..], &value[f.from..f.to]));
        if matches == 1 && !(source.is_some() && matcher.names_source) {
            // Distinct keys (one match), none of them the kept source's: in order.
            crate::proto::encode_log(
                out,
                line.time,
                line.time_ns,
                source.into_iter().chain(fields),
            );
        } else {
            // A key met again takes its new value in its first place (`set_content`).
            let mut pairs: smallvec::SmallVec<[(&[u8], &[u8]); 32]> = source.into_iter().collect();
            for (key, text) in fields {
                match pairs.iter_mut().find(|(k, _)| *k == key) {
                    Some(pair) => pair.1 = text,
                    None => pairs.push((key, text)),
                }
            }
            crate::proto::encode_log(out, line.time, line.time_ns, pairs.iter().copied());
        }
        true
    }
}

impl Processor for ProcessorGrok {
    fn parse_failures(&self) -> u64 {
        self.parse_failures
    }

    fn process(&mut self, group: &mut PipelineEventGroup) {
        group.make_events();
        for event in &mut group.events {
            if let PipelineEvent::Log(log) = event {
                self.process_log(log);
            }
        }
    }

    fn takes_lines(&self) -> bool {
        !self.source_key.is_empty()
    }

    fn process_encoded(
        &mut self,
        group: &mut PipelineEventGroup,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let (written, _) = super::encode_logs(self, &mut (), group, out);
        Some(written)
    }
}

#[cfg(test)]
mod tests;
