//! The ConfigWatcher: polls the config dirs and yields what changed. A file is read again only
//! when its size or mtime changed, and counts as modified only when its content hash changed.
//! A file that fails validation never replaces a running pipeline: its errors are logged once
//! (until the file changes again) and the running version keeps running.

use std::collections::{BTreeMap, HashMap};
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
}

impl ConfigWatcher {
    pub fn new(dirs: Vec<PathBuf>) -> ConfigWatcher {
        ConfigWatcher {
            dirs,
            seen: HashMap::new(),
            live: BTreeMap::new(),
        }
    }

    fn list(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if is_config_file(&path) && path.is_file() {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    pub fn poll(&mut self) -> Diff {
        let mut diff = Diff::default();
        let files = self.list();
        let mut names_now: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in &files {
            let name = pipeline_name(path);
            if let Some(first) = names_now.get(&name) {
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
            let Ok(text) = std::fs::read(path) else {
                continue;
            };
            let hash = content_hash(&text);
            let unchanged = self.seen.get(path).is_some_and(|s| s.hash == hash);
            self.seen.insert(path.clone(), Seen { size, mtime, hash });
            if unchanged {
                continue;
            }
            match config::parse(path, &text) {
                Ok(config) => {
                    let was_live = self.live.insert(name, path.clone()).is_some();
                    if was_live {
                        diff.modified.push(config);
                    } else {
                        diff.added.push(config);
                    }
                }
                Err(errors) => {
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
        self.seen.retain(|path, _| files.contains(path));
        let gone: Vec<String> = self
            .live
            .iter()
            .filter(|(name, path)| names_now.get(*name) != Some(*path))
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

/// Validates files for `tailrace validate`: every error of every file.
pub fn validate_files(paths: &[PathBuf]) -> Vec<config::ConfigError> {
    let mut errors = Vec::new();
    for path in paths {
        if let Err(mut e) = config::load(Path::new(path)) {
            errors.append(&mut e);
        }
    }
    errors
}
