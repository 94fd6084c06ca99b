//! The grok pattern library: named patterns (`NAME pattern`), the ones shipped with the binary,
//! the user's `CustomPatternDir` files and `CustomPatterns`, and their expansion into regexes.
//!
//! A reference is `%{SYNTAX}`, `%{SYNTAX:name}` or `%{SYNTAX:name:type}` (iLogtail's syntax). It
//! expands to the pattern `SYNTAX` names, itself expanded, wrapped in a group: a named group
//! when the reference has a name (the field to emit), an unnamed one otherwise. The type is
//! accepted and ignored, as iLogtail ignores it. A field name may hold `.` and `-`, which a
//! regex group name cannot: the group gets a name with `_` instead, and [`Expansion::field`]
//! gives the name back.
//!
//! Like iLogtail, building a library checks every pattern it holds, used or not: a reference to
//! an unknown pattern or a loop of references is an error naming where the pattern came from.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The pattern files shipped with the binary, in loading order. `grok-patterns` is iLogtail's
/// default set, name for name; `linux-syslog` adds the syslog line patterns it lacks.
const BUILTIN: &[(&str, &str)] = &[
    ("grok-patterns", include_str!("patterns/grok-patterns")),
    ("linux-syslog", include_str!("patterns/linux-syslog")),
];

/// Where a pattern was defined, for error messages.
#[derive(Clone, Debug)]
enum Origin {
    Builtin(&'static str),
    /// `CustomPatternDir[index]`, this file, this line.
    File {
        index: usize,
        path: PathBuf,
        line: usize,
    },
    CustomPatterns,
}

impl Origin {
    /// The option to blame, and the place within it.
    fn describe(&self, name: &str) -> (String, String) {
        match self {
            Origin::Builtin(file) => (
                "Match".to_owned(),
                format!("built-in pattern {name} (file {file})"),
            ),
            Origin::File { index, path, line } => (
                format!("CustomPatternDir[{index}]"),
                format!("pattern {name} in {}, line {line}", path.display()),
            ),
            Origin::CustomPatterns => (format!("CustomPatterns.{name}"), format!("pattern {name}")),
        }
    }
}

/// A problem with one option of the library, as (option, message).
pub type LibraryError = (String, String);

/// Named patterns, as written (not yet expanded).
#[derive(Clone, Debug, Default)]
pub struct PatternLibrary {
    patterns: HashMap<String, (String, Origin)>,
}

impl PatternLibrary {
    /// The patterns shipped with the binary.
    pub fn builtin() -> Self {
        static BUILTIN_LIBRARY: OnceLock<PatternLibrary> = OnceLock::new();
        BUILTIN_LIBRARY
            .get_or_init(|| {
                let mut library = PatternLibrary::default();
                for (file, text) in BUILTIN {
                    for (_, name, pattern) in pattern_lines(text)
                        .map(|line| line.expect("the built-in pattern files are well formed"))
                    {
                        library.add(name, pattern, Origin::Builtin(file));
                    }
                }
                library
            })
            .clone()
    }

    /// Adds the patterns of `CustomPatternDir[index]`: every file of a directory, in name
    /// order, or one file. Later definitions of a name replace earlier ones.
    pub fn add_path(&mut self, index: usize, path: &Path) -> Result<(), LibraryError> {
        let option = format!("CustomPatternDir[{index}]");
        let problem = |what: String| (option.clone(), what);
        let metadata =
            std::fs::metadata(path).map_err(|e| problem(format!("{}: {e}", path.display())))?;
        let files = if metadata.is_dir() {
            let mut files = Vec::new();
            let entries =
                std::fs::read_dir(path).map_err(|e| problem(format!("{}: {e}", path.display())))?;
            for entry in entries {
                let entry = entry.map_err(|e| problem(format!("{}: {e}", path.display())))?;
                // Sub-directories hold no patterns (iLogtail reads nothing from them either).
                if entry.path().is_file() {
                    files.push(entry.path());
                }
            }
            files.sort();
            files
        } else {
            vec![path.to_owned()]
        };
        for file in files {
            let bytes =
                std::fs::read(&file).map_err(|e| problem(format!("{}: {e}", file.display())))?;
            let text = String::from_utf8_lossy(&bytes);
            for line in pattern_lines(&text) {
                let (line, name, pattern) = line.map_err(|(line, what)| {
                    problem(format!("{}, line {line}: {what}", file.display()))
                })?;
                let origin = Origin::File {
                    index,
                    path: file.clone(),
                    line,
                };
                self.add(name, pattern, origin);
            }
        }
        Ok(())
    }

    /// Adds `CustomPatterns` (they replace patterns of the same name).
    pub fn add_custom(&mut self, patterns: &BTreeMap<String, String>) {
        for (name, pattern) in patterns {
            self.add(name, pattern, Origin::CustomPatterns);
        }
    }

    fn add(&mut self, name: &str, pattern: &str, origin: Origin) {
        self.patterns
            .insert(name.to_owned(), (pattern.to_owned(), origin));
    }

    /// Expands every pattern (checking them all, as iLogtail does).
    pub fn expand_all(&self) -> Result<Expansion<'_>, LibraryError> {
        let mut expansion = Expansion {
            library: self,
            expanded: HashMap::new(),
            fields: HashMap::new(),
        };
        let mut names: Vec<&String> = self.patterns.keys().collect();
        names.sort();
        for name in names {
            let mut stack = Vec::new();
            expansion.expand_named(name, &mut stack).map_err(|e| {
                // Blame the pattern whose text holds the bad reference.
                let culprit = e.culprit().unwrap_or(name);
                let (option, place) = self.patterns[culprit].1.describe(culprit);
                (option, format!("{place}: {e}"))
            })?;
        }
        Ok(expansion)
    }
}

/// The `(line number, name, pattern)` of each pattern line of a pattern file. Empty lines and
/// comments (lines starting with `"` as in iLogtail's files, or `#` as in logstash's) are
/// skipped; a name without a pattern is an error (iLogtail crashes on it).
fn pattern_lines(text: &str) -> impl Iterator<Item = Result<(usize, &str, &str), (usize, String)>> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('"') || line.starts_with('#') {
            return None;
        }
        Some(match line.split_once(' ') {
            Some((name, pattern)) => Ok((i + 1, name, pattern)),
            None => Err((
                i + 1,
                format!("{line:?} has no pattern after its name (expected `NAME pattern`)"),
            )),
        })
    })
}

/// What is wrong with a reference.
#[derive(Debug)]
pub enum ExpandError {
    /// `%{token}` is not `SYNTAX[:name[:type]]`; in the pattern named, if any.
    Invalid {
        token: String,
        in_pattern: Option<String>,
    },
    /// `%{reference}` names no pattern; in the pattern named, if any.
    Unknown {
        reference: String,
        in_pattern: Option<String>,
    },
    /// The patterns refer to each other in a loop, listed from its start back to it.
    Loop(Vec<String>),
}

impl ExpandError {
    /// The pattern whose text is wrong, when it is a library pattern.
    fn culprit(&self) -> Option<&str> {
        match self {
            ExpandError::Invalid { in_pattern, .. } | ExpandError::Unknown { in_pattern, .. } => {
                in_pattern.as_deref()
            }
            ExpandError::Loop(names) => names.first().map(String::as_str),
        }
    }
}

impl std::fmt::Display for ExpandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpandError::Invalid { token, .. } => write!(
                f,
                "%{{{token}}} is not a valid reference (expected %{{PATTERN}}, %{{PATTERN:field}} or %{{PATTERN:field:int|float|string}})"
            ),
            ExpandError::Unknown { reference, .. } => {
                write!(f, "%{{{reference}}} names no known pattern")
            }
            ExpandError::Loop(names) => {
                write!(f, "patterns refer to each other in a loop: {}", names.join(" -> "))
            }
        }
    }
}

/// Regexes of a library's patterns, expanded; the field name of each group name made.
pub struct Expansion<'a> {
    library: &'a PatternLibrary,
    expanded: HashMap<String, String>,
    /// Group name → field name, where they differ (`client_ip` → `client.ip`).
    fields: HashMap<String, String>,
}

/// `%{...}` with the characters iLogtail's reference syntax allows (Go `\w` is ASCII).
fn reference_regex() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"(?-u)%\{([\w.\-]+(?::[\w.\-]+(?::[\w.\-]+)?)?)\}")
            .expect("a valid regex")
    })
}

/// A well-formed reference: `SYNTAX[:name[:type]]`.
fn valid_reference() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"(?-u)^\w+([-.]\w+)*(:([-.\w]+)(:(string|float|int))?)?$")
            .expect("a valid regex")
    })
}

impl Expansion<'_> {
    /// `text` (a `Match` entry) with every reference expanded.
    pub fn expand_text(&mut self, text: &str) -> Result<String, ExpandError> {
        self.expand_in(text, None, &mut Vec::new())
    }

    /// The field a group of an expanded regex stands for.
    pub fn field<'n>(&'n self, group: &'n str) -> &'n str {
        self.fields.get(group).map_or(group, String::as_str)
    }

    /// `text` expanded; `in_pattern` names the library pattern it is the text of (for errors),
    /// `stack` the patterns being expanded (to find loops).
    fn expand_in(
        &mut self,
        text: &str,
        in_pattern: Option<&str>,
        stack: &mut Vec<String>,
    ) -> Result<String, ExpandError> {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for found in reference_regex().captures_iter(text) {
            let whole = found.get(0).expect("group 0");
            let token = &found[1];
            if !valid_reference().is_match(token) {
                return Err(ExpandError::Invalid {
                    token: token.to_owned(),
                    in_pattern: in_pattern.map(str::to_owned),
                });
            }
            let mut parts = token.split(':');
            let syntax = parts.next().unwrap_or_default();
            let field = parts.next();
            let sub = match self.expand_named(syntax, stack) {
                Err(ExpandError::Unknown {
                    reference,
                    in_pattern: None,
                }) => {
                    return Err(ExpandError::Unknown {
                        reference,
                        in_pattern: in_pattern.map(str::to_owned),
                    })
                }
                other => other?,
            };
            out.push_str(&text[last..whole.start()]);
            match field {
                Some(field) => {
                    let group: String = field
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                        .collect();
                    if group != field {
                        self.fields.insert(group.clone(), field.to_owned());
                    }
                    out.push_str("(?P<");
                    out.push_str(&group);
                    out.push('>');
                }
                None => out.push('('),
            }
            out.push_str(&sub);
            out.push(')');
            last = whole.end();
        }
        out.push_str(&text[last..]);
        Ok(out)
    }

    /// The regex of the pattern `name`, expanded once and remembered.
    fn expand_named(&mut self, name: &str, stack: &mut Vec<String>) -> Result<String, ExpandError> {
        if let Some(done) = self.expanded.get(name) {
            return Ok(done.clone());
        }
        if let Some(at) = stack.iter().position(|n| n == name) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(name.to_owned());
            return Err(ExpandError::Loop(cycle));
        }
        let library = self.library;
        let Some((pattern, _)) = library.patterns.get(name) else {
            return Err(ExpandError::Unknown {
                reference: name.to_owned(),
                in_pattern: None,
            });
        };
        stack.push(name.to_owned());
        let result = self.expand_in(pattern, Some(name), stack);
        stack.pop();
        let expanded = result?;
        self.expanded.insert(name.to_owned(), expanded.clone());
        Ok(expanded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_library_expands_whole() {
        let library = PatternLibrary::builtin();
        assert!(library.patterns.len() > 80, "{}", library.patterns.len());
        let mut expansion = library.expand_all().unwrap();
        // iLogtail's own expectation for this pattern (processor_grok_test.go).
        assert_eq!(
            expansion
                .expand_text("%{WORD:word1} %{NUMBER:request_time} %{WORD:word2}")
                .unwrap(),
            r"(?P<word1>\b\w+\b) (?P<request_time>(?:((?<![0-9.+-])(?>[+-]?(?:(?:[0-9]+(?:\.[0-9]+)?)|(?:\.[0-9]+)))))) (?P<word2>\b\w+\b)"
        );
    }

    #[test]
    fn field_names_with_dots_get_group_names_and_back() {
        let library = PatternLibrary::builtin();
        let mut expansion = library.expand_all().unwrap();
        let regex = expansion.expand_text("%{INT:http.status-code}").unwrap();
        assert!(regex.starts_with("(?P<http_status_code>"), "{regex}");
        assert_eq!(expansion.field("http_status_code"), "http.status-code");
        assert_eq!(expansion.field("plain"), "plain");
    }

    #[test]
    fn unknown_references_and_loops_name_the_pattern_and_option() {
        let mut library = PatternLibrary::builtin();
        library.add_custom(&BTreeMap::from([("A".to_owned(), "%{NOPE}".to_owned())]));
        let (option, message) = library.expand_all().err().unwrap();
        assert_eq!(option, "CustomPatterns.A");
        assert_eq!(message, "pattern A: %{NOPE} names no known pattern");

        let mut library = PatternLibrary::builtin();
        library.add_custom(&BTreeMap::from([
            ("A".to_owned(), "x%{B}".to_owned()),
            ("B".to_owned(), "%{INT}%{A:a}".to_owned()),
        ]));
        let (option, message) = library.expand_all().err().unwrap();
        assert_eq!(option, "CustomPatterns.A");
        assert!(message.ends_with("loop: A -> B -> A"), "{message}");

        let mut library = PatternLibrary::builtin();
        library.add_custom(&BTreeMap::from([("S".to_owned(), "%{S}".to_owned())]));
        let (_, message) = library.expand_all().err().unwrap();
        assert!(message.ends_with("loop: S -> S"), "{message}");

        let mut library = PatternLibrary::builtin();
        library.add_custom(&BTreeMap::from([(
            "T".to_owned(),
            "%{INT:a:long}".to_owned(),
        )]));
        let (option, message) = library.expand_all().err().unwrap();
        assert_eq!(option, "CustomPatterns.T");
        assert!(
            message.contains("%{INT:a:long} is not a valid reference"),
            "{message}"
        );
    }

    #[test]
    fn pattern_files_from_a_directory_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a"),
            "\"\"\" iLogtail comment\"\"\"\n# logstash comment\r\nMYNUM %{INT}\r\n\nMYPAIR %{MYNUM:x}=%{MYNUM:y}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("b"), "MYNUM [0-9]+\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut library = PatternLibrary::builtin();
        library.add_path(0, dir.path()).unwrap();
        let mut expansion = library.expand_all().unwrap();
        // File b comes after a: its MYNUM wins.
        assert_eq!(
            expansion.expand_text("%{MYPAIR}").unwrap(),
            "((?P<x>[0-9]+)=(?P<y>[0-9]+))"
        );

        std::fs::write(dir.path().join("c"), "OK x\nBROKEN\n").unwrap();
        let (option, message) = PatternLibrary::builtin()
            .add_path(2, dir.path())
            .err()
            .unwrap();
        assert_eq!(option, "CustomPatternDir[2]");
        assert!(
            message.contains("/c, line 2: \"BROKEN\" has no pattern"),
            "{message}"
        );

        std::fs::remove_file(dir.path().join("c")).unwrap();
        std::fs::write(dir.path().join("d"), "BAD %{MISSING}\n").unwrap();
        let mut library = PatternLibrary::builtin();
        library.add_path(1, dir.path()).unwrap();
        let (option, message) = library.expand_all().err().unwrap();
        assert_eq!(option, "CustomPatternDir[1]");
        assert!(
            message.contains("/d, line 1: %{MISSING} names no known pattern"),
            "{message}"
        );

        let (option, message) = PatternLibrary::builtin()
            .add_path(0, &dir.path().join("absent"))
            .err()
            .unwrap();
        assert_eq!(option, "CustomPatternDir[0]");
        assert!(message.contains("absent: No such file"), "{message}");
    }
}
