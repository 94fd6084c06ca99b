//! The glob matchers of `FilePaths`, `ExcludeFilePaths`, `ExcludeFiles` and `ExcludeDirs`: `*`
//! and `?` stay within one path component, `**` crosses them, `[...]` is a class.
//!
//! Plain globs are matched by the `glob` crate, which keeps a pattern as a short token list
//! (about 2 KiB); `globset` compiles each into a regex (about 24 KiB), which with 1,000
//! pipelines alone was a third of the daemon's memory. Globs with `{a,b}` alternatives, which
//! only `globset` understands, are still compiled by it.

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

const OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

pub enum PathGlob {
    Plain(glob::Pattern),
    Alternatives(GlobMatcher),
}

impl PathGlob {
    /// Compiles `glob`; the error says why it is not one.
    pub fn new(glob: &str) -> Result<PathGlob, String> {
        if glob.contains('{') {
            return GlobBuilder::new(glob)
                .literal_separator(true)
                .build()
                .map(|g| PathGlob::Alternatives(g.compile_matcher()))
                .map_err(|e| e.to_string());
        }
        glob::Pattern::new(glob)
            .map(PathGlob::Plain)
            .map_err(|e| e.to_string())
    }

    pub fn is_match(&self, path: impl AsRef<Path>) -> bool {
        let path = path.as_ref();
        match self {
            PathGlob::Plain(p) => match path.to_str() {
                Some(s) => p.matches_with(s, OPTIONS),
                None => p.matches_with(&path.to_string_lossy(), OPTIONS),
            },
            PathGlob::Alternatives(m) => m.is_match(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stays_in_a_component_and_double_star_crosses_them() {
        let one = PathGlob::new("/var/log/*.log").unwrap();
        assert!(one.is_match("/var/log/a.log"));
        assert!(!one.is_match("/var/log/sub/a.log"));
        let deep = PathGlob::new("/var/**/*.log").unwrap();
        for p in ["/var/a.log", "/var/log/a.log", "/var/log/x/y/a.log"] {
            assert!(deep.is_match(p), "{p}");
        }
        assert!(!deep.is_match("/var/log/a.txt"));
        let q = PathGlob::new("/l/app-?.[0-9]").unwrap();
        assert!(q.is_match("/l/app-a.7"));
        assert!(!q.is_match("/l/app-ab.7"));
    }

    #[test]
    fn alternatives_and_file_names() {
        let alt = PathGlob::new("/l/{a,b}.log").unwrap();
        assert!(alt.is_match("/l/a.log") && alt.is_match("/l/b.log"));
        assert!(!alt.is_match("/l/c.log"));
        let name = PathGlob::new("*.gz").unwrap();
        assert!(name.is_match("old.log.gz"));
        assert!(PathGlob::new("/l/[").is_err());
    }
}
