//! Finding the files an input's globs match: each glob is walked from its fixed prefix (the
//! directories before the first wildcard), to the depth the glob needs plus
//! `MaxDirSearchDepth`, or without limit below a `**`.

use std::path::{Path, PathBuf};

use crate::input::file::config::FileInputSpec;

/// Deepest walk under a `**`, so that a symlink loop cannot run forever.
const MAX_RECURSIVE_DEPTH: usize = 64;

/// Every regular file `spec` matches now.
pub fn matched_files(spec: &FileInputSpec) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (pattern, matcher) in spec.config.file_paths.iter().zip(&spec.include) {
        let (root, depth) = walk_plan(pattern, spec.config.max_dir_search_depth);
        walk(
            &root,
            depth,
            &mut |path| {
                if matcher.is_match(path) && !excluded(spec, path) {
                    out.push(path.to_owned());
                }
            },
            &|dir| spec.exclude_dirs.iter().any(|m| m.is_match(dir)),
        );
    }
    out.sort();
    out.dedup();
    out
}

fn excluded(spec: &FileInputSpec, path: &Path) -> bool {
    if spec.exclude_paths.iter().any(|m| m.is_match(path)) {
        return true;
    }
    if let Some(name) = path.file_name() {
        if spec.exclude_files.iter().any(|m| m.is_match(name)) {
            return true;
        }
    }
    path.ancestors()
        .skip(1)
        .any(|dir| spec.exclude_dirs.iter().any(|m| m.is_match(dir)))
}

/// The directories `spec`'s globs start from, and whether anything below their first level can
/// match (so a watch on them must be recursive).
pub fn roots(spec: &FileInputSpec) -> Vec<(PathBuf, bool)> {
    let mut roots: Vec<(PathBuf, bool)> = spec
        .config
        .file_paths
        .iter()
        .map(|p| {
            let (root, depth) = walk_plan(p, spec.config.max_dir_search_depth);
            (root, depth > 0)
        })
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

/// The directory to walk from, and how deep (in directory levels below it) files may be.
fn walk_plan(pattern: &str, extra_depth: usize) -> (PathBuf, usize) {
    let components: Vec<&str> = pattern.split('/').collect();
    let first_wild = components
        .iter()
        .position(|c| c.contains(['*', '?', '[', '{']))
        .unwrap_or(components.len() - 1);
    let root = components[..first_wild].join("/");
    let root = if root.is_empty() {
        "/".to_owned()
    } else {
        root
    };
    let depth = if components[first_wild..].contains(&"**") {
        MAX_RECURSIVE_DEPTH
    } else {
        components.len() - 1 - first_wild + extra_depth
    };
    (PathBuf::from(root), depth)
}

fn walk(dir: &Path, depth: usize, found: &mut dyn FnMut(&Path), skip_dir: &dyn Fn(&Path) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() {
            found(&path);
        } else if meta.is_dir() && depth > 0 && !skip_dir(&path) {
            walk(&path, depth - 1, found, skip_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_start_at_the_fixed_prefix() {
        assert_eq!(
            walk_plan("/var/log/*.log", 0),
            (PathBuf::from("/var/log"), 0)
        );
        assert_eq!(
            walk_plan("/var/log/*/a.log", 1),
            (PathBuf::from("/var/log"), 2)
        );
        assert_eq!(walk_plan("/var/**/*.log", 0).1, MAX_RECURSIVE_DEPTH);
        assert_eq!(
            walk_plan("/var/log/app.log", 0),
            (PathBuf::from("/var/log"), 0)
        );
    }
}
