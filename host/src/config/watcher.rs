//! The ConfigWatcher: polls the config dirs and yields what changed. A file is read again only
//! when its size or mtime changed, and counts as modified only when its content hash changed.
//! A file that fails validation never replaces a running pipeline: its errors are logged once
//! (until the file changes again) and the running version keeps running. Warnings (ignored
//! options) are logged the same way. The watcher also remembers which files are invalid right
//! now, for `--once`'s exit code.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::{self, is_config_file, pipeline_name, PipelineConfig};

/// What changed since the last poll.
#[derive(Debug, Default)]
pub struct Diff {
    pub added: Vec<PipelineConfig>,
    pub modified: Vec<PipelineConfig>,
    pub removed: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

struct Seen {
    size: u64,
    mtime: Option<SystemTime>,
    hash: u64,
}

pub struct ConfigWatcher {
    dirs: Vec<PathBuf>,
    seen: HashMap<PathBuf, Seen>,
    /// Pipeline name → the file of its running (valid) version.
    live: BTreeMap<String, PathBuf>,
    /// Files whose current content is not a valid pipeline (or that cannot be used).
    /// Invalid files, with the first error of each.
    invalid: BTreeMap<PathBuf, String>,
    /// Config dirs that could not be listed at the last poll (logged once, until they can).
    unreadable: BTreeSet<PathBuf>,
}

/// Checks, at start, that every config dir is a directory that can be listed: a typo in
/// `--config-dir` must be an error, not a daemon that waits forever for configs.
pub fn check_dirs(dirs: &[PathBuf]) -> Result<(), String> {
    for dir in dirs {
        let shown = dir.display();
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("--config-dir {shown}: no such directory"));
            }
            Err(e) => return Err(format!("--config-dir {shown}: {e}")),
            Ok(meta) if !meta.is_dir() => {
                return Err(format!(
                    "--config-dir {shown}: not a directory (it takes a directory of pipeline \
                     configs; to check one file, run `tailrace validate {shown}`)"
                ));
            }
            Ok(_) => {
                std::fs::read_dir(dir)
                    .map_err(|e| format!("--config-dir {shown}: cannot list it: {e}"))?;
            }
        }
    }
    Ok(())
}

impl ConfigWatcher {
    pub fn new(dirs: Vec<PathBuf>) -> ConfigWatcher {
        ConfigWatcher {
            dirs,
            seen: HashMap::new(),
            live: BTreeMap::new(),
            invalid: BTreeMap::new(),
            unreadable: BTreeSet::new(),
        }
    }

    /// How many config files are invalid right now.
    pub fn invalid_count(&self) -> usize {
        self.invalid.len()
    }

    /// The invalid files now, each with its first error (for `/healthz`).
    pub fn invalid_files(&self) -> BTreeMap<String, String> {
        self.invalid
            .iter()
            .map(|(path, why)| (path.display().to_string(), why.clone()))
            .collect()
    }

    /// Polls at once, reading every file again even if its size and mtime look unchanged (for
    /// SIGHUP: an edit within the mtime's granularity that kept the size is still seen). Files
    /// whose content did not change still yield nothing.
    pub fn reload(&mut self) -> Diff {
        for seen in self.seen.values_mut() {
            seen.mtime = None;
        }
        self.poll()
    }

    fn list(&mut self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for dir in &self.dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => {
                    self.unreadable.remove(dir);
                    entries
                }
                Err(e) => {
                    if self.unreadable.insert(dir.clone()) {
                        tracing::error!(
                            "config dir {}: cannot list it: {e}; its pipelines are stopped until it can be",
                            dir.display()
                        );
                    }
                    continue;
                }
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if !is_config_file(&path) {
                    continue;
                }
                // The listing says the type; only a symlink needs a stat to know.
                let is_file = match entry.file_type() {
                    Ok(t) if t.is_symlink() => path.is_file(),
                    Ok(t) => t.is_file(),
                    Err(_) => path.is_file(),
                };
                if is_file {
                    files.push(path);
                }
            }
        }
        // By bytes: cheaper than by path components, and as stable.
        files.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        files
    }

    pub fn poll(&mut self) -> Diff {
        let mut diff = Diff::default();
        let files = self.list();
        let mut names_now: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in &files {
            let name = pipeline_name(path);
            if let Some(first) = names_now.get(&name) {
                self.invalid.insert(
                    path.clone(),
                    format!(
                        "pipeline name {name:?} is already used by {}",
                        first.display()
                    ),
                );
                if !self.seen.contains_key(path) {
                    tracing::error!(
                        "{}: pipeline name {name:?} is already used by {}; file ignored",
                        path.display(),
                        first.display()
                    );
                    self.seen.insert(
                        path.clone(),
                        Seen {
                            size: 0,
                            mtime: None,
                            hash: 0,
                        },
                    );
                }
                continue;
            }
            names_now.insert(name.clone(), path.clone());
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let (size, mtime) = (meta.len(), meta.modified().ok());
            if let Some(seen) = self.seen.get(path) {
                if seen.size == size && seen.mtime == mtime {
                    continue;
                }
            }
            let text = match std::fs::read(path) {
                Ok(text) => text,
                Err(e) => {
                    if self
                        .invalid
                        .insert(path.clone(), format!("cannot read: {e}"))
                        .is_none()
                    {
                        tracing::error!("invalid config: {}: cannot read: {e}", path.display());
                    }
                    continue;
                }
            };
            let hash = content_hash(&text);
            let unchanged = self.seen.get(path).is_some_and(|s| s.hash == hash);
            self.seen.insert(path.clone(), Seen { size, mtime, hash });
            if unchanged {
                continue;
            }
            let checked = config::check(path, &text);
            for w in &checked.warnings {
                tracing::warn!("config: {w}");
            }
            match checked.result {
                Ok(config) => {
                    self.invalid.remove(path);
                    let was_live = self.live.insert(name, path.clone()).is_some();
                    if was_live {
                        diff.modified.push(config);
                    } else {
                        diff.added.push(config);
                    }
                }
                Err(errors) => {
                    let first = errors.first().map(|e| e.to_string()).unwrap_or_default();
                    self.invalid.insert(path.clone(), first);
                    let running = if self.live.contains_key(&name) {
                        "; the running version keeps running"
                    } else {
                        ""
                    };
                    for e in errors {
                        tracing::error!("invalid config: {e}{running}");
                    }
                }
            }
        }
        // `files` is sorted: a binary search keeps this linear-logarithmic with 1,000s of configs.
        let listed = |path: &PathBuf| {
            files
                .binary_search_by(|p| p.as_os_str().cmp(path.as_os_str()))
                .is_ok()
        };
        self.seen.retain(|path, _| listed(path));
        self.invalid.retain(|path, _| listed(path));
        let gone: Vec<String> = self
            .live
            .iter()
            .filter(|(name, path)| {
                names_now.get(*name).map(|p| p.as_os_str()) != Some(path.as_os_str())
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.live.remove(&name);
            diff.removed.push(name);
        }
        diff
    }
}

fn content_hash(text: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// What `tailrace validate` found in its files.
#[derive(Debug, Default)]
pub struct Validation {
    pub errors: Vec<config::ConfigError>,
    pub warnings: Vec<config::ConfigError>,
    /// The configs that loaded, for the checks across files.
    pub configs: Vec<config::PipelineConfig>,
}

/// Validates files for `tailrace validate`: every error and warning of every file.
pub fn validate_files(paths: &[PathBuf]) -> Validation {
    let mut found = Validation::default();
    for path in paths {
        let mut checked = config::load(Path::new(path));
        found.warnings.append(&mut checked.warnings);
        match checked.result {
            Ok(config) => {
                found
                    .errors
                    .append(&mut config::plugins_not_implemented(&config));
                found.configs.push(config);
            }
            Err(mut e) => found.errors.append(&mut e),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "inputs: [{Type: metric_mock}]\nflushers: [{Type: flusher_stdout}]\n";

    #[test]
    fn config_dirs_are_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        check_dirs(&[dir.path().to_owned()]).unwrap();
        let missing = dir.path().join("nope");
        let e = check_dirs(&[dir.path().to_owned(), missing.clone()]).unwrap_err();
        assert!(
            e.contains(&missing.display().to_string()) && e.contains("no such directory"),
            "{e}"
        );
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, VALID).unwrap();
        let e = check_dirs(std::slice::from_ref(&file)).unwrap_err();
        assert!(
            e.contains("not a directory") && e.contains("validate"),
            "{e}"
        );
    }

    #[test]
    fn invalid_files_are_counted_until_fixed_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = ConfigWatcher::new(vec![dir.path().to_owned()]);
        std::fs::write(dir.path().join("good.yaml"), VALID).unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "inputs: [").unwrap();
        std::fs::write(dir.path().join("good.yml"), VALID).unwrap();
        let diff = watcher.poll();
        assert_eq!(diff.added.len(), 1);
        // bad.yaml is invalid; good.yml has the name of a pipeline already taken.
        assert_eq!(watcher.invalid_count(), 2);
        std::fs::remove_file(dir.path().join("good.yml")).unwrap();
        std::fs::write(dir.path().join("bad.yaml"), VALID).unwrap();
        let diff = watcher.poll();
        assert_eq!(diff.added.len(), 1);
        assert_eq!(watcher.invalid_count(), 0);
    }

    #[test]
    fn reload_reads_again_but_yields_only_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, VALID).unwrap();
        let mut watcher = ConfigWatcher::new(vec![dir.path().to_owned()]);
        assert_eq!(watcher.poll().added.len(), 1);
        assert!(watcher.reload().is_empty());
        // Same size, mtime set back: a poll does not look, a reload does.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, VALID.replace("stdout", "STDOUT")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(watcher.poll().is_empty());
        let diff = watcher.reload();
        assert_eq!(diff.modified.len() + watcher.invalid_count(), 1);
    }
}
