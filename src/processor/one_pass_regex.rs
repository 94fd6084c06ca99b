//! A one-pass matcher for the shape most access-log regexes have: literal text and capture
//! groups of one repeated class, each group followed by a literal byte its class cannot match
//! (`(\S+) - (\S+) \[([^\]]+)\] "(\S+) ...`). Such a pattern has at most one way to match a
//! value, found by one scan left to right with no backtracking; the native processors use it
//! for full matches instead of PCRE2 (iLogtail's `processor_regex_accelerate` idea: same
//! fields, less work). Anything outside that shape (alternation, look-around, optional
//! parts, flags, Unicode, classes outside groups, two groups in a row) is left to PCRE2:
//! [`OnePass::compile`] returns `None`.
//!
//! Semantics are PCRE2's without UTF/UCP, as [`super::native_regex`] compiles them: bytes,
//! `\d` `[0-9]`, `\w` `[A-Za-z0-9_]`, `\s` space, tab, LF, VT, FF, CR, `.` any byte.

/// A set of bytes, as a table (a lookup per byte scanned).
#[derive(Clone, Debug)]
struct Class([bool; 256]);

impl Class {
    fn empty() -> Class {
        Class([false; 256])
    }

    fn add_range(&mut self, from: u8, to: u8) {
        for b in from..=to {
            self.0[usize::from(b)] = true;
        }
    }

    fn add_class(&mut self, other: &Class) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine |= *theirs;
        }
    }

    fn negated(mut self) -> Class {
        for b in self.0.iter_mut() {
            *b = !*b;
        }
        self
    }

    #[inline(always)]
    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b)]
    }

    /// The class of an escape (`d`, `D`, `w`, `W`, `s`, `S`), if it is one.
    fn escape(letter: u8) -> Option<Class> {
        let mut class = Class::empty();
        match letter.to_ascii_lowercase() {
            b'd' => class.add_range(b'0', b'9'),
            b'w' => {
                class.add_range(b'0', b'9');
                class.add_range(b'A', b'Z');
                class.add_range(b'a', b'z');
                class.add_range(b'_', b'_');
            }
            b's' => {
                class.add_range(b'\t', b'\r');
                class.add_range(b' ', b' ');
            }
            _ => return None,
        }
        Some(if letter.is_ascii_uppercase() {
            class.negated()
        } else {
            class
        })
    }
}

#[derive(Clone, Debug)]
enum Step {
    Literal(Vec<u8>),
    /// A capture group of one class repeated at least `min` (0 or 1) times; `stop` is the one
    /// byte the class lacks, when it lacks only one (`[^"]`): the group then ends at the next
    /// such byte, found with `memchr`.
    Group {
        class: Box<Class>,
        min: usize,
        stop: Option<u8>,
    },
}

/// A compiled one-pass pattern (see the module's documentation).
#[derive(Clone, Debug)]
pub struct OnePass {
    steps: Vec<Step>,
    groups: usize,
}

/// Punctuation that an escape turns into itself.
fn escaped_literal(b: u8) -> bool {
    b.is_ascii_punctuation() || b == b' '
}

impl OnePass {
    /// The matcher for `pattern`, when it has the one-pass shape.
    pub fn compile(pattern: &str) -> Option<OnePass> {
        let p = pattern.as_bytes();
        if !p.is_ascii() {
            return None;
        }
        let mut steps: Vec<Step> = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        while i < p.len() {
            match p[i] {
                b'(' => {
                    let (class, end) = group_class(p, i + 1)?;
                    let min = match p.get(end)? {
                        b'+' => 1,
                        b'*' => 0,
                        _ => return None,
                    };
                    if p.get(end + 1) != Some(&b')') {
                        return None;
                    }
                    i = end + 2;
                    if !literal.is_empty() {
                        steps.push(Step::Literal(std::mem::take(&mut literal)));
                    }
                    let mut outside = (0..=255u8).filter(|&b| !class.contains(b));
                    let stop = match (outside.next(), outside.next()) {
                        (Some(b), None) => Some(b),
                        _ => None,
                    };
                    steps.push(Step::Group {
                        class: Box::new(class),
                        min,
                        stop,
                    });
                }
                b'\\' => {
                    let b = *p.get(i + 1)?;
                    if !escaped_literal(b) {
                        return None;
                    }
                    literal.push(b);
                    i += 2;
                }
                b'.' | b'[' | b']' | b'|' | b'?' | b'*' | b'+' | b'{' | b'}' | b'^' | b'$'
                | b')' => return None,
                b => {
                    literal.push(b);
                    i += 1;
                }
            }
            // A quantifier after a literal or a group: not this shape.
            if matches!(p.get(i), Some(b'?' | b'*' | b'+' | b'{')) {
                return None;
            }
        }
        if !literal.is_empty() {
            steps.push(Step::Literal(literal));
        }
        // Each group must end where its class stops: at a literal whose first byte it cannot
        // match, or at the end of the value.
        for (at, step) in steps.iter().enumerate() {
            if let Step::Group { class, .. } = step {
                match steps.get(at + 1) {
                    None => {}
                    Some(Step::Literal(next)) if !class.contains(next[0]) => {}
                    Some(_) => return None,
                }
            }
        }
        let groups = steps
            .iter()
            .filter(|s| matches!(s, Step::Group { .. }))
            .count();
        if groups == 0 {
            return None;
        }
        Some(OnePass { steps, groups })
    }

    /// The number of capture groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Whether the whole of `subject` matches; on a match, `ranges` holds each group's range.
    pub fn full_match(&self, subject: &[u8], ranges: &mut Vec<(usize, usize)>) -> bool {
        ranges.clear();
        let mut pos = 0;
        for step in &self.steps {
            match step {
                Step::Literal(text) => {
                    // Literals are mostly a byte or two: compared inline, not by `memcmp`.
                    let Some(here) = subject.get(pos..pos + text.len()) else {
                        return false;
                    };
                    if here.iter().zip(text).any(|(a, b)| a != b) {
                        return false;
                    }
                    pos += text.len();
                }
                Step::Group { class, min, stop } => {
                    let start = pos;
                    let rest = &subject[pos..];
                    pos += match stop {
                        Some(stop) => memchr::memchr(*stop, rest).unwrap_or(rest.len()),
                        None => {
                            let mut n = 0;
                            while n < rest.len() && class.contains(rest[n]) {
                                n += 1;
                            }
                            n
                        }
                    };
                    if pos - start < *min {
                        return false;
                    }
                    ranges.push((start, pos));
                }
            }
        }
        pos == subject.len()
    }
}

/// The class of the group that starts at `p[at]` (just after its `(`) and the position just
/// after the class.
fn group_class(p: &[u8], at: usize) -> Option<(Class, usize)> {
    match *p.get(at)? {
        b'\\' => Some((Class::escape(*p.get(at + 1)?)?, at + 2)),
        b'.' => Some((Class::empty().negated(), at + 1)),
        b'[' => bracket(p, at + 1),
        _ => None,
    }
}

/// A bracket class whose body starts at `p[at]`; the class and the position after its `]`.
fn bracket(p: &[u8], mut at: usize) -> Option<(Class, usize)> {
    let negate = p.get(at) == Some(&b'^');
    if negate {
        at += 1;
    }
    let mut class = Class::empty();
    let mut first = true;
    loop {
        let b = *p.get(at)?;
        // One member: a byte (maybe escaped) or an escape class.
        let single = match b {
            b']' if !first => {
                at += 1;
                break;
            }
            b'[' => return None, // POSIX classes and the like
            b'\\' => {
                let e = *p.get(at + 1)?;
                at += 2;
                if let Some(escape) = Class::escape(e) {
                    // `[\d-z]`: Perl reads the `-` as itself, PCRE2 may not; left to PCRE2.
                    if p.get(at) == Some(&b'-') && p.get(at + 1) != Some(&b']') {
                        return None;
                    }
                    class.add_class(&escape);
                    first = false;
                    continue;
                }
                if !escaped_literal(e) {
                    return None;
                }
                e
            }
            b => {
                at += 1;
                b
            }
        };
        first = false;
        // A range `a-z` (a `-` before `]` is a literal).
        if p.get(at) == Some(&b'-') && p.get(at + 1).is_some_and(|&n| n != b']') {
            let to = match *p.get(at + 1)? {
                b'\\' => {
                    let e = *p.get(at + 2)?;
                    if !escaped_literal(e) {
                        return None;
                    }
                    at += 3;
                    e
                }
                b'[' => return None,
                n => {
                    at += 2;
                    n
                }
            };
            if to < single {
                return None;
            }
            class.add_range(single, to);
        } else {
            class.add_range(single, single);
        }
    }
    Some((if negate { class.negated() } else { class }, at))
}

#[cfg(test)]
mod tests {
    use super::super::native_regex::{Anchor, NativeRegex};
    use super::*;

    const NGINX: &str = r#"(\S+) - (\S+) \[([^\]]+)\] "(\S+) (\S+) ([^"]+)" (\d+) (\d+) "([^"]*)" "([^"]*)" ([\d.]+) ([\d.]+)"#;

    #[test]
    fn the_shape_is_recognised_and_anything_else_left_to_pcre2() {
        assert_eq!(OnePass::compile(NGINX).map(|p| p.groups()), Some(12));
        for accepted in [
            r"(\d+)",
            r"(.*)",
            r"a(\w*)-(\S+)",
            r"([a-z0-9_\-]+)=(\S*)",
            r"([a-]+)x",
        ] {
            assert!(OnePass::compile(accepted).is_some(), "{accepted}");
        }
        for rejected in [
            r"(\S+)(\d+)",      // two groups in a row
            r"(\S+)a",          // `a` is in \S: the group could end earlier
            r"(.*) (\S+)",      // `.` takes the space too
            r"(\d+)?",          // optional group
            r"(?:\d+)",         // not capturing
            r"(\d+|x)",         // alternation
            r"a|b(\d+)",        // alternation outside
            r"x+(\d+)",         // a repeated literal
            r"(\d{2})",         // a counted repetition
            r"(\d+)\b",         // an assertion
            r"^(\d+)$",         // anchors
            r"(?i)(\d+)",       // flags
            r"(\p{Han}+)",      // Unicode
            r"([[:alpha:]]+) ", // POSIX class
            r"(\d+)(?=x)",      // look-ahead
            "abc",              // no group
            r"(\d+",            // unclosed
            r"([\]a]+)]",       // `]` is in the class
            r"([\d-z]+) ",      // a range from a class
        ] {
            assert!(OnePass::compile(rejected).is_none(), "{rejected}");
        }
    }

    /// Every accepted pattern gives PCRE2's answer and groups on every subject: nginx lines,
    /// their mutations, and random bytes.
    #[test]
    fn the_one_pass_matcher_agrees_with_pcre2() {
        let patterns = [
            NGINX,
            r"(\d+)",
            r"(.*)",
            r"(\w*)-(\S+) x",
            r#"([^"]*)"(\s+)\[([a-c\\-]+)\]([\D]*)"#,
            r"k=([^,]*),v=([^\s,]*)",
            r"([\W\d]+)a(\S*)",
        ];
        let samples: [&[u8]; 6] = [
            br#"10.1.2.3 - alice [24/Nov/2026:10:01:02 +0000] "GET /api?id=1 HTTP/1.1" 200 1234 "-" "curl/8.5.0" 0.123 0.456"#,
            br#"10.1.2.3 - - [x] "a b c d" 1 2 "" "" . ."#,
            b"12345",
            b"abc_1-\xff\x80z x",
            b"\"\t\x0b [a\\]-]\xc3\xa9 ",
            b"k=,v=abc",
        ];
        let alphabet: &[u8] = b" -[]\"\\.,;=:/0123456789abckvxz_\t\n\x0b\x0c\r\xff\x80";
        let mut seed: u32 = 5;
        let mut rand = |n: usize| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as usize % n
        };
        let mut ranges = Vec::new();
        let mut matched = 0;
        for pattern in patterns {
            let fast = OnePass::compile(pattern).expect(pattern);
            let mut pcre = NativeRegex::new("Regex", pattern, Anchor::Full).unwrap();
            let mut native = NativeRegex::new("Regex", pattern, Anchor::Full).unwrap();
            assert!(native.is_one_pass() && pcre.is_one_pass(), "{pattern}");
            pcre.disable_one_pass();
            for sample in samples {
                for round in 0..3000 {
                    let mut subject = sample.to_vec();
                    for _ in 0..round % 5 {
                        let at = rand(subject.len() + 1);
                        let b = alphabet[rand(alphabet.len())];
                        match rand(3) {
                            0 if at < subject.len() => {
                                subject.remove(at);
                            }
                            1 if at < subject.len() => subject[at] = b,
                            _ => subject.insert(at, b),
                        }
                    }
                    let groups = |re: &mut NativeRegex| {
                        re.find_at(&subject, 0).map(|_| {
                            (0..=re.groups())
                                .map(|g| re.group(g).unwrap())
                                .collect::<Vec<_>>()
                        })
                    };
                    let expected = groups(&mut pcre);
                    assert_eq!(groups(&mut native), expected, "{pattern} as NativeRegex");
                    let expected = expected.map(|all| all[1..].to_vec());
                    let got = fast
                        .full_match(&subject, &mut ranges)
                        .then(|| ranges.clone());
                    assert_eq!(
                        got,
                        expected,
                        "{pattern} on {:?}",
                        String::from_utf8_lossy(&subject)
                    );
                    matched += usize::from(expected.is_some());
                }
            }
        }
        assert!(matched > 5000, "only {matched} subjects matched");
    }
}
