//! The ConfigWatcher: polls the config dirs and yields what changed. A file is read again only
//! when its size or mtime changed, and counts as modified only when its content hash changed.
//! With [`ConfigWatcher::watch_dirs`], inotify says when something in a config dir changed, so
//! the daemon polls at once then and otherwise only rarely: a poll stats every config file,
//! and a thousand pipelines polled every second cost more than everything else an idle daemon
//! does.
//! A file that fails validation never replaces a running pipeline: its errors are logged once
//! (until the file changes again) and the running version keeps running. Warnings (ignored
//! options) are logged the same way. The watcher also remembers which files are invalid right
//! now, for `--once`'s exit code.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use notify::event::{AccessKind, AccessMode, EventKind};

use crate::config::{self, is_config_file, pipeline_name, PipelineConfig};
use crate::inotify::{self, Inotify, SinkId};

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
    /// Inotify on the config dirs, once [`ConfigWatcher::watch_dirs`] was called.
    inotify: Option<DirWatch>,
}

/// An inotify watch on each config dir (on the daemon's one instance), raising `changed` when
/// an entry is created, written, renamed or removed there (a ConfigMap update renames its
/// `..data` link: that too).
struct DirWatch {
    inotify: &'static Inotify,
    sink: SinkId,
    changed: Arc<AtomicBool>,
    /// Set when a config dir itself was removed or renamed: its watch followed the old inode,
    /// and what is at the path now is watched again.
    renew: Arc<AtomicBool>,
    /// The dirs watched now; one that could not be listed loses its watch and is watched again
    /// once it can be (a dir removed and made again is a new inode).
    watched: BTreeSet<PathBuf>,
}

/// Whether an inotify event on a config dir can mean a changed config. Opening or reading one
/// cannot: the poll itself opens the dir and the changed files, and must not wake itself.
fn is_change(event: &notify::Result<notify::Event>) -> bool {
    // An error means events may have been lost.
    let Ok(event) = event else {
        return true;
    };
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
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
            inotify: None,
        }
    }

    /// Watches the config dirs with inotify. True when every dir is watched: then a change is
    /// seen at once ([`ConfigWatcher::changed`]) and a periodic poll is only the safety net
    /// (for an edit inotify cannot see, such as a symlinked config whose target lives in
    /// another dir). False (logged) when inotify cannot be had: polling alone sees changes.
    pub fn watch_dirs(&mut self) -> bool {
        if self.inotify.is_none() {
            let changed = Arc::new(AtomicBool::new(false));
            let renew = Arc::new(AtomicBool::new(false));
            let (flag, moved, dirs) = (changed.clone(), renew.clone(), self.dirs.clone());
            let handler = move |event: &notify::Result<notify::Event>| {
                if is_change(event) {
                    flag.store(true, Ordering::Release);
                }
                if let Ok(event) = event {
                    let gone = matches!(
                        event.kind,
                        EventKind::Remove(_)
                            | EventKind::Modify(notify::event::ModifyKind::Name(_))
                    );
                    if gone && event.paths.iter().any(|p| dirs.contains(p)) {
                        moved.store(true, Ordering::Release);
                    }
                }
            };
            match inotify::shared() {
                Ok(inotify) => {
                    self.inotify = Some(DirWatch {
                        inotify,
                        sink: inotify.subscribe(Arc::new(handler)),
                        changed,
                        renew,
                        watched: BTreeSet::new(),
                    })
                }
                Err(e) => {
                    tracing::warn!("config dirs: no inotify ({e}): they are polled for changes");
                    return false;
                }
            }
        }
        self.rewatch()
    }

    /// Adds the watches missing on readable dirs; true when every dir is watched.
    fn rewatch(&mut self) -> bool {
        let Some(inotify) = &mut self.inotify else {
            return false;
        };
        if inotify.renew.swap(false, Ordering::AcqRel) {
            for dir in std::mem::take(&mut inotify.watched) {
                inotify.inotify.unwatch(&dir, inotify.sink);
            }
        }
        for dir in &self.dirs {
            if self.unreadable.contains(dir) {
                if inotify.watched.remove(dir) {
                    inotify.inotify.unwatch(dir, inotify.sink);
                }
                continue;
            }
            if inotify.watched.contains(dir) {
                continue;
            }
            match inotify.inotify.watch(dir, inotify.sink) {
                Ok(()) => {
                    inotify.watched.insert(dir.clone());
                    // Whatever happened before the watch was there is seen by a poll now.
                    inotify.changed.store(true, Ordering::Release);
                }
                Err(e) => tracing::debug!("config dir {}: no inotify watch: {e}", dir.display()),
            }
        }
        inotify.watched.len() == self.dirs.len()
    }

    /// Whether every config dir is watched by inotify now.
    pub fn fully_watched(&self) -> bool {
        self.inotify
            .as_ref()
            .is_some_and(|i| i.watched.len() == self.dirs.len())
    }

    /// Whether inotify saw a change in a config dir since the last call (the flag is cleared).
    pub fn changed(&self) -> bool {
        self.inotify
            .as_ref()
            .is_some_and(|i| i.changed.swap(false, Ordering::AcqRel))
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
        if self.inotify.is_some() {
            self.rewatch();
        }
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

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        if let Some(inotify) = &self.inotify {
            inotify.inotify.unsubscribe(inotify.sink);
        }
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

    fn wait_changed(watcher: &ConfigWatcher) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !watcher.changed() {
            assert!(std::time::Instant::now() < deadline, "inotify said nothing");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Inotify says when a config is added, edited in place or removed, and the watcher's own
    /// reads of the dir and its files do not count as changes (or every poll would wake the
    /// next). A config dir removed and made again is watched again.
    #[test]
    fn inotify_tells_of_changes_but_not_of_the_watchers_own_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("conf");
        std::fs::create_dir(&dir).unwrap();
        let mut watcher = ConfigWatcher::new(vec![dir.clone()]);
        assert!(watcher.watch_dirs());
        assert!(watcher.fully_watched());
        let _ = watcher.changed();
        let path = dir.join("p.yaml");
        std::fs::write(&path, VALID).unwrap();
        wait_changed(&watcher);
        assert_eq!(watcher.poll().added.len(), 1);
        std::fs::write(&path, VALID.replace("stdout", "STDOUT")).unwrap();
        wait_changed(&watcher);
        let _ = watcher.poll();
        // The poll listed the dir and read the file: no change follows from that.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!watcher.changed(), "the watcher's own reads woke it");

        std::fs::remove_file(&path).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        wait_changed(&watcher);
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(watcher.poll().removed, vec!["p".to_string()]);
        assert!(watcher.fully_watched(), "the new dir is watched");
        let _ = watcher.changed();
        std::fs::write(&path, VALID).unwrap();
        wait_changed(&watcher);
        assert_eq!(watcher.poll().added.len(), 1);
    }
}
