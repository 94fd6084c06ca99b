//! The regex engine of iLogtail's native processors and of multiline assembly: PCRE2 with its
//! JIT, standing in for the boost::regex iLogtail's C++ core uses.
//!
//! Why PCRE2 and not the `regex` crate: boost speaks Perl syntax (look-ahead, look-behind,
//! backreferences, atomic groups), which users' iLogtail configs rely on and RE2-style engines
//! reject; and PCRE2's JIT extracts a dozen capture groups from a line several times faster
//! than a capture-resolving automaton.
//!
//! Semantics follow boost on `char`, as iLogtail uses it:
//! * bytes, not characters (UTF off): `.` matches any byte, so a line that is not valid UTF-8
//!   still matches; `\d`, `\w`, `\s` are ASCII;
//! * `.` matches a newline too (boost's default), so a multi-line event matches as a whole;
//! * a pattern that asks for Unicode (`\p{Han}`, `\X`, a non-ASCII character) gets Unicode
//!   semantics instead (UTF and UCP on; invalid UTF-8 in a line then simply does not match);
//! * [`Anchor::Full`] is boost's `regex_match`: the whole value, `\z` (not `$`, which also
//!   matches before a final newline).
//!
//! A [`NativeRegex`] owns its match data (the ovector and JIT stack), so a processor matches
//! line after line without allocating or taking a lock (pcre2's shared pool would do both).

use pcre2::bytes::{CaptureLocations, Regex, RegexBuilder};

use super::one_pass_regex::OnePass;
use super::ProcessorError;

/// Where a pattern must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// The whole value (boost's `regex_match`).
    Full,
    /// From the value's start, ending anywhere (`X.*` as a whole-line match, cheaper).
    Start,
    /// Anywhere (boost's `regex_search`).
    Search,
}

/// The largest JIT stack a match may grow: a pattern that backtracks a lot over a long
/// multi-line event needs more than PCRE2's 32 KiB default; past this the match fails (the line
/// counts as not matching) instead of exhausting memory. PCRE2 reserves it as address space
/// per regex and touches only what a match uses, so it stays small: thousands of pipelines
/// each hold a few regexes.
const MAX_JIT_STACK: usize = 1 << 20;

/// A compiled pattern with its own match data: one per processor (or per multiline rule).
pub struct NativeRegex {
    regex: Regex,
    locations: CaptureLocations,
    /// Compiled with Unicode semantics.
    unicode: bool,
    /// Matches PCRE2 gave up on (match or JIT stack limit); they count as no match.
    failed_matches: u64,
    /// For a full match of a pattern of the one-pass shape (most access-log regexes): the
    /// matcher that gives PCRE2's groups with one scan, and the groups of its last match.
    one_pass: Option<OnePass>,
    one_pass_ranges: Vec<(usize, usize)>,
    /// The length of the value the one-pass matcher last matched as a whole, when the last
    /// match was its (`group` then reads its ranges).
    last_one_pass: Option<usize>,
}

impl NativeRegex {
    /// Compiles the option `field`'s `pattern`; an invalid pattern is an error naming the
    /// field and the pattern as the user wrote it.
    pub fn new(field: &str, pattern: &str, anchor: Anchor) -> Result<Self, ProcessorError> {
        let invalid = |e: &pcre2::Error| {
            ProcessorError::new(
                field,
                format!("{pattern:?} is not a valid regex: {}", problem(e)),
            )
        };
        let unicode = needs_unicode(pattern);
        // Checked as written first: the error then points into the user's pattern, and a
        // pattern that only compiles once wrapped (`a)|(b`) is rejected.
        builder(unicode, false)
            .build(pattern)
            .map_err(|e| invalid(&e))?;
        let mut last_error = None;
        for form in wrapped(pattern, anchor) {
            match builder(unicode, true).build(&form) {
                Ok(regex) => {
                    let one_pass = match anchor {
                        Anchor::Full if !unicode => OnePass::compile(pattern)
                            .filter(|one_pass| one_pass.groups() + 1 == regex.captures_len()),
                        _ => None,
                    };
                    return Ok(NativeRegex {
                        locations: regex.capture_locations(),
                        regex,
                        unicode,
                        failed_matches: 0,
                        one_pass,
                        one_pass_ranges: Vec::new(),
                        last_one_pass: None,
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(invalid(&last_error.expect("at least one form is tried")))
    }

    /// The number of capture groups (group 0, the whole match, not counted).
    pub fn groups(&self) -> usize {
        self.regex.captures_len() - 1
    }

    /// Whether `subject` matches.
    pub fn is_match(&mut self, subject: &[u8]) -> bool {
        self.find_at(subject, 0).is_some()
    }

    /// Matches `subject` from byte `start`; on a match, returns the whole match's range and
    /// leaves the groups readable through [`NativeRegex::group`].
    pub fn find_at(&mut self, subject: &[u8], start: usize) -> Option<(usize, usize)> {
        if let (Some(one_pass), 0) = (&self.one_pass, start) {
            let matched = one_pass.full_match(subject, &mut self.one_pass_ranges);
            self.last_one_pass = matched.then_some(subject.len());
            return matched.then_some((0, subject.len()));
        }
        self.last_one_pass = None;
        match self
            .regex
            .captures_read_at(&mut self.locations, subject, start)
        {
            Ok(found) => found.map(|m| (m.start(), m.end())),
            Err(e) => {
                self.failed_matches += 1;
                if self.failed_matches == 1 {
                    tracing::warn!(
                        pattern = self.regex.as_str(),
                        "a regex match gave up ({}): the value counts as not matching; \
                         further failures of this pattern are counted silently",
                        problem(&e)
                    );
                }
                None
            }
        }
    }

    /// The range of group `i` of the last successful match; `None` when the group took no
    /// part in it.
    pub fn group(&self, i: usize) -> Option<(usize, usize)> {
        if let Some(len) = self.last_one_pass {
            return match i {
                0 => Some((0, len)),
                i => self.one_pass_ranges.get(i - 1).copied(),
            };
        }
        self.locations.get(i)
    }

    /// Whether full matches take the one-pass matcher ([`super::one_pass_regex`]).
    pub fn is_one_pass(&self) -> bool {
        self.one_pass.is_some()
    }

    /// Matches with PCRE2 only (the one-pass matcher's tests compare the two).
    #[cfg(test)]
    pub fn disable_one_pass(&mut self) {
        self.one_pass = None;
    }

    /// Matches PCRE2 gave up on so far (resource limits), counted as no match.
    pub fn failed_matches(&self) -> u64 {
        self.failed_matches
    }

    /// Whether the pattern was compiled with Unicode semantics.
    pub fn is_unicode(&self) -> bool {
        self.unicode
    }
}

impl std::fmt::Debug for NativeRegex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NativeRegex")
            .field(&self.regex.as_str())
            .finish()
    }
}

fn builder(unicode: bool, jit: bool) -> RegexBuilder {
    let mut b = RegexBuilder::new();
    b.dotall(true)
        .ucp(unicode)
        .jit_if_available(jit)
        .max_jit_stack_size(jit.then_some(MAX_JIT_STACK));
    b
}

/// The forms to try for `pattern` under `anchor`, in order. `\E` closes a `\Q` quote left open
/// at the end (an isolated `\E` is ignored); the form with a newline closes a `(?x)` comment
/// that would otherwise swallow the closing parenthesis. Start-of-pattern settings such as
/// `(*UCP)` must stay at the very start, before the anchor.
fn wrapped(pattern: &str, anchor: Anchor) -> [String; 2] {
    let (settings, body) = split_leading_settings(pattern);
    let (open, close) = match anchor {
        Anchor::Full => (r"\A(?:", r")\z"),
        Anchor::Start => (r"\A(?:", ")"),
        Anchor::Search => ("(?:", ")"),
    };
    [
        format!("{settings}{open}{body}\\E{close}"),
        format!("{settings}{open}{body}\n{close}"),
    ]
}

/// `(*UTF)(*LIMIT_MATCH=10)abc` → (`(*UTF)(*LIMIT_MATCH=10)`, `abc`).
fn split_leading_settings(pattern: &str) -> (&str, &str) {
    let mut at = 0;
    while let Some(rest) = pattern[at..].strip_prefix("(*") {
        let Some(end) = rest.find(')') else { break };
        let item = &rest[..end];
        let is_setting = !item.is_empty()
            && item.starts_with(|c: char| c.is_ascii_uppercase())
            && item
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'=');
        if !is_setting {
            break;
        }
        at += 2 + end + 1;
    }
    pattern.split_at(at)
}

/// Whether a pattern needs Unicode semantics: a property class (`\p{..}`, `\P{..}`), an
/// extended grapheme (`\X`), or a non-ASCII character (in a class, `[日本]` means two
/// characters, not six bytes).
fn needs_unicode(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if matches!(chars.next(), Some('p' | 'P' | 'X')) {
                    return true;
                }
            }
            c if !c.is_ascii() => return true,
            _ => {}
        }
    }
    false
}

/// PCRE2's message, without its "error compiling pattern" preamble (the caller names the
/// pattern), with the offset into the pattern when there is one.
fn problem(e: &pcre2::Error) -> String {
    let text = e.to_string();
    let message = text.rsplit_once(": ").map_or(text.as_str(), |(_, m)| m);
    match e.offset() {
        Some(offset) => format!("{message} (at byte {offset})"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(pattern: &str) -> NativeRegex {
        NativeRegex::new("Regex", pattern, Anchor::Full).unwrap()
    }

    fn groups(re: &mut NativeRegex, subject: &[u8]) -> Option<Vec<Option<String>>> {
        re.find_at(subject, 0)?;
        Some(
            (1..=re.groups())
                .map(|i| {
                    re.group(i)
                        .map(|(s, e)| String::from_utf8_lossy(&subject[s..e]).into_owned())
                })
                .collect(),
        )
    }

    #[test]
    fn full_match_means_the_whole_value_even_before_a_final_newline() {
        let mut re = full(r"\d+");
        assert!(re.is_match(b"123"));
        assert!(
            !re.is_match(b"123\n"),
            "`$` would match here, `\\z` must not"
        );
        assert!(!re.is_match(b"a123"));
        // Alternation stays inside the anchors.
        let mut re = full("a|b");
        assert!(re.is_match(b"a") && re.is_match(b"b") && !re.is_match(b"ab"));
        let mut re = NativeRegex::new("P", "ab", Anchor::Start).unwrap();
        assert!(re.is_match(b"abc") && !re.is_match(b"xab"));
        let mut re = NativeRegex::new("P", "ab", Anchor::Search).unwrap();
        assert_eq!(re.find_at(b"xxabx", 0), Some((2, 4)));
        assert_eq!(re.find_at(b"xxabxab", 4), Some((5, 7)));
    }

    #[test]
    fn perl_syntax_look_around_backreferences_atomic_groups() {
        // Look-ahead: a number followed by "ms", without taking the unit.
        let mut re = full(r"took (\d+)(?=ms)ms");
        assert_eq!(groups(&mut re, b"took 35ms"), Some(vec![Some("35".into())]));
        assert!(!re.is_match(b"took 35s"));
        // Negative look-ahead: any level but DEBUG.
        let mut re = full(r"(?!DEBUG)(\w+) (.*)");
        assert!(re.is_match(b"ERROR boom") && !re.is_match(b"DEBUG noise"));
        // Look-behind: the value after "user=".
        let mut re = NativeRegex::new("Regex", r"(?<=user=)\w+", Anchor::Search).unwrap();
        assert_eq!(re.find_at(b"id=1 user=bob x", 0), Some((10, 13)));
        let mut re = full(r".*(?<!\.tmp)");
        assert!(re.is_match(b"a.log") && !re.is_match(b"a.tmp"));
        // Backreference: the same quote opens and closes.
        let mut re = full(r#"(['"])(.*?)\1"#);
        assert_eq!(
            groups(&mut re, b"'it'"),
            Some(vec![Some("'".into()), Some("it".into())])
        );
        assert!(!re.is_match(br#"'it""#));
        // Atomic group and possessive quantifier.
        assert!(!full(r"(?>a+)a").is_match(b"aaa"));
        assert!(full(r"a++b").is_match(b"aab"));
    }

    #[test]
    fn bytes_not_characters_and_dot_matches_newline() {
        let mut re = full(r"(\S+) (.*)");
        assert_eq!(
            groups(&mut re, b"\xff\xfe x\n\x80y"),
            Some(vec![
                Some("\u{fffd}\u{fffd}".into()),
                Some("x\n\u{fffd}y".into())
            ])
        );
        assert!(full(r"\w+").is_match(b"abc_1") && !full(r"\w+").is_match("é".as_bytes()));
        // One `.` is one byte: "é" is two.
        assert!(full("..").is_match("é".as_bytes()));
    }

    #[test]
    fn unicode_patterns_get_unicode_semantics() {
        let mut re = full(r"(\p{Han}+):(\d+)");
        assert!(re.is_unicode());
        assert_eq!(
            groups(&mut re, "日志:7".as_bytes()),
            Some(vec![Some("日志".into()), Some("7".into())])
        );
        // Invalid UTF-8 does not match, and does not fail.
        assert!(!re.is_match(b"\xff:7"));
        assert_eq!(re.failed_matches(), 0);
        let mut re = full("[日本]+");
        assert!(re.is_match("日本日".as_bytes()));
        // An escaped backslash before `p` is not a property class.
        assert!(!full(r"\\p").is_unicode());
    }

    #[test]
    fn verbose_comments_quotes_and_leading_settings_survive_the_anchors() {
        let mut re = full("(?x) a b  # comment");
        assert!(re.is_match(b"ab") && !re.is_match(b"abc"));
        let mut re = full(r"a\Q.*");
        assert!(re.is_match(b"a.*") && !re.is_match(b"abc"));
        let mut re = full("(*NO_JIT)(*LIMIT_MATCH=100000)a+");
        assert!(re.is_match(b"aaa") && !re.is_match(b"aab"));
        assert_eq!(split_leading_settings("(*UCP)(?:x)"), ("(*UCP)", "(?:x)"));
        assert_eq!(split_leading_settings("(*x)a"), ("", "(*x)a"));
    }

    #[test]
    fn invalid_patterns_name_the_field_and_the_users_pattern() {
        for (pattern, problem) in [
            ("(a", "missing closing parenthesis"),
            ("a)|(b", "unmatched closing parenthesis"),
            ("[a-", "missing terminating ] for character class"),
            (r"(?<=a+)b", "lookbehind assertion is not limited"),
            (r"\1(a)x\2", "non-existent subpattern"),
        ] {
            let e = NativeRegex::new("Include.level", pattern, Anchor::Full)
                .err()
                .unwrap_or_else(|| panic!("{pattern} compiled"));
            assert_eq!(e.field, "Include.level");
            let expected = format!("{pattern:?} is not a valid regex: ");
            assert!(e.message.starts_with(&expected), "{}", e.message);
            assert!(e.message.contains(problem), "{}", e.message);
            assert!(!e.message.contains("\\A(?:"), "{}", e.message);
        }
    }

    #[test]
    fn a_large_multiline_event_matches_within_the_jit_stack() {
        let mut event = b"2024-01-02 03:04:05.678 ERROR [main] c.e.App - boom\n".to_vec();
        while event.len() < 4 << 20 {
            event.extend_from_slice(b"\tat com.example.pkg.Handler.handle(Handler.java:10)\n");
        }
        let mut re = full(r"(\S+ \S+) (\w+) \[([^\]]+)\] (\S+) - (.*)");
        assert_eq!(
            groups(&mut re, &event).unwrap()[1].as_deref(),
            Some("ERROR")
        );
        // A group repeated once per character needs a frame each: past the stack it fails
        // cleanly, as no match.
        let mut re = full(r"((a|b)*)c");
        let deep = [b"ab".repeat(2 << 20), b"c".to_vec()].concat();
        assert!(!re.is_match(&deep));
        assert_eq!(re.failed_matches(), 1);
    }

    #[test]
    fn a_match_that_exhausts_its_limits_counts_as_no_match() {
        // Catastrophic backtracking, capped by a match limit the pattern sets itself.
        let mut re = full(r"(*LIMIT_MATCH=1000)(\w+)+\d");
        let mut subject = vec![b'a'; 64];
        subject.push(b'!');
        assert!(!re.is_match(&subject));
        assert_eq!(re.failed_matches(), 1);
        assert!(re.is_match(b"aa1"));
    }
}
