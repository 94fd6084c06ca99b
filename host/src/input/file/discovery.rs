//! Finding the files an input's globs match: each glob is walked from its fixed prefix (the
//! directories before the first wildcard), to the depth the glob needs plus
//! `MaxDirSearchDepth`; below a `**`, to `MaxDirSearchDepth` levels when it is set, else to
//! `MAX_RECURSIVE_DEPTH`.
//!
//! A walk always terminates and never starves reading: symlinked directories are followed,
//! but each directory (by device and inode) is entered once per glob, so a link back up the
//! tree is a dead end, not a loop; and a walk is done in steps under a deadline, resumed where
//! it stopped on the server's next round.
//!
//! A walk also stamps every directory it looked at ([`DirStamp`]): while none of them changed,
//! the next periodic walk would find the same files, and is skipped (iLogtail's polling also
//! compares directory mtimes).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::dir_stamp::{trust_limit, DirStamp, TrustLimit};

use crate::input::file::config::FileInputSpec;
use crate::input::file::identity::DevInode;

/// Deepest walk under a `**` when `MaxDirSearchDepth` does not say.
const MAX_RECURSIVE_DEPTH: usize = 64;

/// The stamps of every directory a walk looked at, that tell whether a walk now would find
/// what it found.
#[derive(Debug, Default)]
pub struct Stamps(Vec<(PathBuf, Option<DirStamp>)>);

impl Stamps {
    /// Whether every directory is as it was (none appeared, vanished or changed).
    pub fn unchanged(&self) -> bool {
        self.0
            .iter()
            .all(|(dir, stamp)| DirStamp::now(dir) == *stamp)
    }
}

/// One discovery pass over an input's globs, resumable.
pub struct Walk {
    /// Directories still to read: path, levels allowed below it, glob index.
    pending: Vec<(PathBuf, usize, usize)>,
    /// Directories entered, per glob.
    visited: HashSet<(usize, DevInode)>,
    /// Matched regular files (sorted and deduplicated once finished).
    pub files: Vec<PathBuf>,
    /// Every directory entered: where new files could appear (what to watch).
    pub dirs: Vec<PathBuf>,
    /// The stamp of every directory looked at; `None` once one changed too close to the walk
    /// to be trusted.
    stamps: Option<Stamps>,
    /// A stamp of a change after this is too recent to trust.
    trust: TrustLimit,
}

impl Walk {
    pub fn new(spec: &FileInputSpec) -> Walk {
        let pending = spec
            .config
            .file_paths
            .iter()
            .enumerate()
            .map(|(i, pattern)| {
                let (root, depth) = walk_plan(pattern, spec.config.max_dir_search_depth);
                (root, depth, i)
            })
            .rev()
            .collect();
        Walk {
            pending,
            visited: HashSet::new(),
            files: Vec::new(),
            dirs: Vec::new(),
            stamps: Some(Stamps::default()),
            trust: trust_limit(),
        }
    }

    /// The stamps of the directories this (finished) walk looked at, when they can be trusted
    /// to tell that a new walk would find the same.
    pub fn take_stamps(&mut self) -> Option<Stamps> {
        self.stamps.take()
    }

    fn stamp(&mut self, dir: &Path, stamp: Option<DirStamp>) {
        if stamp.is_some_and(|s| !s.trusted(self.trust)) {
            self.stamps = None;
        }
        if let Some(stamps) = &mut self.stamps {
            stamps.0.push((dir.to_owned(), stamp));
        }
    }

    /// Walks on until done (true) or `deadline` passes (false: call again later).
    pub fn step(&mut self, spec: &FileInputSpec, deadline: Instant) -> bool {
        while let Some((dir, depth, glob)) = self.pending.pop() {
            self.enter(spec, &dir, depth, glob);
            if self.pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
        self.files.sort();
        self.files.dedup();
        self.dirs.sort();
        self.dirs.dedup();
        true
    }

    fn enter(&mut self, spec: &FileInputSpec, dir: &Path, depth: usize, glob: usize) {
        let Ok(meta) = std::fs::metadata(dir) else {
            // Not there (yet): still a place where files will appear.
            self.stamp(dir, None);
            self.dirs.push(dir.to_owned());
            return;
        };
        self.stamp(dir, Some(DirStamp::of(&meta)));
        if !meta.is_dir() || !self.visited.insert((glob, DevInode::of(&meta))) {
            return;
        }
        self.dirs.push(dir.to_owned());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let matcher = &spec.include[glob];
        for entry in entries.flatten() {
            let path = entry.path();
            // The entry's type comes with the directory listing: a regular file costs no stat.
            // Links are followed: a linked file or directory counts as what it links to.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_file() {
                if matcher.is_match(&path) && !excluded(spec, &path) {
                    self.files.push(path);
                }
                continue;
            }
            if !kind.is_dir() && !kind.is_symlink() {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_file() {
                if matcher.is_match(&path) && !excluded(spec, &path) {
                    self.files.push(path);
                }
            } else if meta.is_dir()
                && depth > 0
                && !spec.exclude_dirs.iter().any(|m| m.is_match(&path))
                && !self.visited.contains(&(glob, DevInode::of(&meta)))
            {
                self.pending.push((path, depth - 1, glob));
            }
        }
    }
}

/// Every regular file `spec` matches now (one walk without deadline).
#[cfg(test)]
pub fn matched_files(spec: &FileInputSpec) -> Vec<PathBuf> {
    let mut walk = Walk::new(spec);
    while !walk.step(spec, Instant::now() + std::time::Duration::from_secs(3600)) {}
    walk.files
}

/// Whether `spec` collects the file at `path` (an include glob matches it and no exclude
/// does), whether or not it exists.
pub fn collects(spec: &FileInputSpec, path: &Path) -> bool {
    match_depth(spec, path).is_some()
}

/// Whether `spec` collects `path` (a glob matches it, no exclusion does) and, if so, how many
/// directories deep the fixed prefix of the matching glob is (the deepest when several match):
/// iLogtail's "matched path depth", which ranks the inputs that match one file.
pub fn match_depth(spec: &FileInputSpec, path: &Path) -> Option<usize> {
    if excluded(spec, path) {
        return None;
    }
    spec.include
        .iter()
        .zip(&spec.config.file_paths)
        .filter(|(glob, _)| glob.is_match(path))
        .map(|(_, pattern)| walk_plan(pattern, 0).0.components().count())
        .max()
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
    let levels = components.len() - 1 - first_wild;
    let depth = if components[first_wild..].contains(&"**") {
        // `**` is one component of the pattern but any number of levels.
        let recursive = if extra_depth > 0 {
            extra_depth
        } else {
            MAX_RECURSIVE_DEPTH
        };
        levels.saturating_sub(1) + recursive
    } else {
        levels + extra_depth
    };
    (PathBuf::from(root), depth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    fn spec(paths: &[&str], depth: usize) -> FileInputSpec {
        crate::input::file::InputFileConfig::from_plugin(&crate::config::PluginConfig {
            plugin_type: "input_file".into(),
            field: "inputs[0]".into(),
            placement: crate::config::Placement::Native,
            options: serde_json::json!({"FilePaths": paths, "MaxDirSearchDepth": depth})
                .as_object()
                .unwrap()
                .clone(),
        })
        .unwrap()
    }

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
        assert_eq!(walk_plan("/var/**/*.log", 3).1, 3);
        assert_eq!(
            walk_plan("/var/log/app.log", 0),
            (PathBuf::from("/var/log"), 0)
        );
    }

    /// The stamps of a walk say "unchanged" until a file appears in a directory it looked at,
    /// or a directory that was missing appears; a walk right after a change gives no stamps
    /// (they could miss a second change within the same tick of the file system's clock).
    #[test]
    fn stamps_tell_when_a_walk_would_find_something_else() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a")).unwrap();
        let spec = spec(
            &[
                &format!("{}/*/*.log", root.display()),
                &format!("{}/later/*.log", root.display()),
            ],
            0,
        );
        let walk = |trust: TrustLimit| {
            let mut walk = Walk::new(&spec);
            walk.trust = trust;
            while !walk.step(&spec, Instant::now() + Duration::from_secs(60)) {}
            walk.take_stamps()
        };
        assert!(walk(trust_limit()).is_none(), "just changed: not trusted");
        // Changes until the stamps move: within one tick of the clock they may not.
        let moves = |stamps: &Stamps, change: &dyn Fn(usize)| {
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut n = 0;
            while stamps.unchanged() {
                assert!(Instant::now() < deadline, "stamps did not move");
                change(n);
                n += 1;
            }
        };
        let stamps = walk(TrustLimit::ANY).expect("trusted");
        assert!(stamps.unchanged());
        moves(&stamps, &|n| {
            std::fs::write(root.join(format!("a/{n}.log")), b"x").unwrap()
        });
        let stamps = walk(TrustLimit::ANY).expect("trusted");
        assert!(stamps.unchanged());
        std::fs::create_dir(root.join("later")).unwrap();
        assert!(!stamps.unchanged(), "a missing directory appeared");
    }

    /// `sub/loop -> ..` and `sub/loop2 -> ../sub`: the walk ends, each real file once.
    #[test]
    fn symlink_loops_end_and_find_each_file_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("a.log"), b"a\n").unwrap();
        std::fs::write(root.join("sub/b.log"), b"b\n").unwrap();
        std::fs::write(root.join("sub/deeper/c.log"), b"c\n").unwrap();
        symlink("..", root.join("sub/loop")).unwrap();
        symlink("../sub", root.join("sub/loop2")).unwrap();
        symlink("..", root.join("sub/deeper/up")).unwrap();
        let spec = spec(&[&format!("{}/**/*.log", root.display())], 0);
        let started = Instant::now();
        let files = matched_files(&spec);
        assert!(started.elapsed() < Duration::from_secs(5));
        let ids: HashSet<DevInode> = files
            .iter()
            .map(|p| DevInode::of(&std::fs::metadata(p).unwrap()))
            .collect();
        assert_eq!(ids.len(), 3, "{files:?}");
        assert_eq!(files.len(), 3, "each file once: {files:?}");
    }

    #[test]
    fn max_dir_search_depth_bounds_a_double_star() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("1/2/3")).unwrap();
        for (i, dir) in ["", "1", "1/2", "1/2/3"].iter().enumerate() {
            std::fs::write(root.join(dir).join(format!("{i}.log")), b"x\n").unwrap();
        }
        let pattern = format!("{}/**/*.log", root.display());
        assert_eq!(matched_files(&spec(&[&pattern], 0)).len(), 4);
        assert_eq!(matched_files(&spec(&[&pattern], 2)).len(), 3);
    }

    #[test]
    fn a_walk_resumes_after_its_deadline() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for i in 0..20 {
            std::fs::create_dir_all(root.join(format!("d{i}"))).unwrap();
            std::fs::write(root.join(format!("d{i}/x.log")), b"x\n").unwrap();
        }
        let spec = spec(&[&format!("{}/*/*.log", root.display())], 0);
        let mut walk = Walk::new(&spec);
        let mut steps = 0;
        // A deadline already passed: one directory per step.
        while !walk.step(&spec, Instant::now()) {
            steps += 1;
        }
        assert!(steps >= 20, "{steps} steps");
        assert_eq!(walk.files.len(), 20);
        assert_eq!(walk.dirs.len(), 21);
    }
}
