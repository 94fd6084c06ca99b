//! The FileServer's watches, on the daemon's one inotify instance ([`crate::inotify`], as
//! LoongCollector's): every input that needs a directory shares its watch, counted by the
//! inputs holding it, and the watch is removed when none does. Inotify tells the server both that files appeared, moved or vanished in a
//! directory (rediscover the inputs holding it) and that a file was written to (read it now).
//!
//! The periodic poll stays as the fallback: when inotify cannot be had (no instance, the
//! per-user watch limit, a file system without it, a queue overflow) the server polls, and says
//! so once in the log rather than degrading silently.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::event::{EventKind, ModifyKind};

use crate::inotify::{self, Inotify, SinkId};
use crate::input::file::InputId;

/// How long a directory whose watch could not be added waits before it is tried again.
const RETRY_FAILED_WATCH: Duration = Duration::from_secs(10);

/// What inotify reported since the server last looked.
#[derive(Default, Debug)]
pub struct WatchChanges {
    /// Paths written to (or created, moved, removed): tracked files there may have new data or
    /// may have moved on.
    pub touched: HashSet<PathBuf>,
    /// Directories where something was created, moved or removed: the inputs holding them
    /// look for new files.
    pub dirs: HashSet<PathBuf>,
    /// Events were lost (queue overflow) or a watch broke: look at everything.
    pub rescan: bool,
    /// Paths removed or renamed away: a watch on such a directory is gone or follows it
    /// elsewhere.
    gone: HashSet<PathBuf>,
}

/// Collected by inotify's thread, taken by the server's.
struct Collected {
    changes: Mutex<WatchChanges>,
    /// Set when the server was woken and has not taken the changes yet (coalescing).
    woken: AtomicBool,
}

struct WatchedDir {
    /// The inputs holding the watch: it is removed when this empties.
    holders: HashSet<InputId>,
    /// Whether inotify watches it (else it is polled).
    ok: bool,
    /// When adding the watch last failed.
    failed_at: Option<Instant>,
}

/// The server's inotify instance and the directories it watches.
pub struct WatchTable {
    /// The daemon's inotify instance and this table's subscription to it.
    inotify: Option<(&'static Inotify, SinkId)>,
    dirs: HashMap<PathBuf, WatchedDir>,
    collected: Arc<Collected>,
    /// The watch limit was reported already (once is enough, it is the same for every dir).
    limit_reported: bool,
}

impl WatchTable {
    /// One inotify instance; `wake` is called (coalesced: once until the changes are taken)
    /// when something happens in a watched directory. Without inotify (instance limit,
    /// unsupported) it logs one warning and every directory is polled.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> WatchTable {
        let collected = Arc::new(Collected {
            changes: Mutex::new(WatchChanges::default()),
            woken: AtomicBool::new(false),
        });
        let sink = collected.clone();
        let handler = move |event: &notify::Result<notify::Event>| {
            if collect(&sink, event) && !sink.woken.swap(true, Ordering::AcqRel) {
                wake();
            }
        };
        let inotify = match inotify::shared() {
            Ok(inotify) => Some((inotify, inotify.subscribe(Arc::new(handler)))),
            Err(e) => {
                tracing::warn!(
                    "cannot create an inotify instance ({e}; see /proc/sys/fs/inotify/max_user_instances): \
                     every log directory is polled (new data and new files are seen within a second)"
                );
                None
            }
        };
        WatchTable {
            inotify,
            dirs: HashMap::new(),
            collected,
            limit_reported: false,
        }
    }

    /// `input` needs `dir` watched; true when inotify watches it.
    pub fn acquire(&mut self, dir: &Path, input: InputId) -> bool {
        let entry = self
            .dirs
            .entry(dir.to_owned())
            .or_insert_with(|| WatchedDir {
                holders: HashSet::new(),
                ok: false,
                failed_at: None,
            });
        entry.holders.insert(input);
        if entry.ok
            || entry
                .failed_at
                .is_some_and(|t| t.elapsed() < RETRY_FAILED_WATCH)
        {
            return entry.ok;
        }
        let Some((inotify, sink)) = self.inotify else {
            entry.failed_at = Some(Instant::now());
            return false;
        };
        match inotify.watch(dir, sink) {
            Ok(()) => {
                entry.ok = true;
                entry.failed_at = None;
            }
            Err(e) => {
                entry.failed_at = Some(Instant::now());
                if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    if !self.limit_reported {
                        self.limit_reported = true;
                        tracing::warn!(
                            dir = %dir.display(),
                            "inotify watch limit reached: {} and the directories after it are polled \
                             (new data seen within a second, not at once); raise \
                             /proc/sys/fs/inotify/max_user_watches",
                            dir.display()
                        );
                    } else {
                        tracing::debug!(dir = %dir.display(), "inotify watch limit: polled");
                    }
                } else {
                    tracing::debug!(dir = %dir.display(), "not watched ({e}); polled");
                }
            }
        }
        entry.ok
    }

    /// `input` no longer needs `dir`; the watch goes when nobody holds it.
    pub fn release(&mut self, dir: &Path, input: InputId) {
        let Some(entry) = self.dirs.get_mut(dir) else {
            return;
        };
        entry.holders.remove(&input);
        if !entry.holders.is_empty() {
            return;
        }
        let entry = self.dirs.remove(dir).expect("present");
        if entry.ok {
            if let Some((inotify, sink)) = self.inotify {
                inotify.unwatch(dir, sink);
            }
        }
    }

    /// Whether inotify watches `dir`.
    pub fn is_watched(&self, dir: &Path) -> bool {
        self.dirs.get(dir).is_some_and(|d| d.ok)
    }

    /// The inputs holding `dir`.
    pub fn holders(&self, dir: &Path) -> impl Iterator<Item = InputId> + '_ {
        self.dirs
            .get(dir)
            .into_iter()
            .flat_map(|d| d.holders.iter().copied())
    }

    /// Directories watched by inotify now.
    pub fn watched_dirs(&self) -> usize {
        self.dirs.values().filter(|d| d.ok).count()
    }

    /// What happened since the last call; the next event wakes the server again. Watched
    /// directories that were removed or renamed away lose their watch (a watch follows an
    /// inode, not a path): the next [`WatchTable::acquire`] watches what is there now.
    pub fn take_changes(&mut self) -> WatchChanges {
        self.collected.woken.store(false, Ordering::Release);
        let changes = std::mem::take(&mut *self.collected.changes.lock().expect("not poisoned"));
        for path in &changes.gone {
            let Some(entry) = self.dirs.get_mut(path) else {
                continue;
            };
            if std::mem::take(&mut entry.ok) {
                entry.failed_at = None;
                if let Some((inotify, sink)) = self.inotify {
                    inotify.unwatch(path, sink);
                }
            }
        }
        changes
    }
}

impl Drop for WatchTable {
    fn drop(&mut self) {
        if let Some((inotify, sink)) = self.inotify {
            inotify.unsubscribe(sink);
        }
    }
}

/// Records one inotify event; false when it is nothing the server needs to know about (the
/// daemon's own opens and closes of the files it reads, attribute changes).
fn collect(into: &Collected, event: &notify::Result<notify::Event>) -> bool {
    let mut changes = into.changes.lock().expect("not poisoned");
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            tracing::debug!("inotify: {e}; looking at everything");
            changes.rescan = true;
            return true;
        }
    };
    if event.need_rescan() {
        changes.rescan = true;
        return true;
    }
    match event.kind {
        EventKind::Modify(ModifyKind::Data(_)) | EventKind::Modify(ModifyKind::Any) => {
            changes.touched.extend(event.paths.iter().cloned());
        }
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
            let gone = match event.kind {
                EventKind::Remove(_) => event.paths.len(),
                // A rename's paths are (from) or (to) or (from, to): the first is gone then.
                EventKind::Modify(ModifyKind::Name(notify::event::RenameMode::To)) => 0,
                EventKind::Modify(ModifyKind::Name(_)) => 1,
                _ => 0,
            };
            changes.gone.extend(event.paths.iter().take(gone).cloned());
            for path in &event.paths {
                if let Some(dir) = path.parent() {
                    changes.dirs.insert(dir.to_owned());
                }
                // The watched directory itself went away or moved.
                changes.dirs.insert(path.clone());
                changes.touched.insert(path.clone());
            }
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// How many inotify watches of this process are on `dir`'s inode (from /proc/self/fdinfo).
    fn kernel_watches_on(dir: &Path) -> usize {
        let ino = format!("ino:{:x} ", std::fs::metadata(dir).unwrap().ino());
        let mut n = 0;
        for fd in std::fs::read_dir("/proc/self/fdinfo").unwrap().flatten() {
            let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
            n += info
                .lines()
                .filter(|l| l.starts_with("inotify wd:") && l.contains(&ino))
                .count();
        }
        n
    }

    fn wait_change(table: &mut WatchTable, what: impl Fn(&WatchChanges) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = WatchChanges::default();
        while Instant::now() < deadline {
            let c = table.take_changes();
            seen.touched.extend(c.touched);
            seen.dirs.extend(c.dirs);
            seen.rescan |= c.rescan;
            if what(&seen) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn inputs_share_one_watch_removed_with_the_last_holder() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut table = WatchTable::new(|| {});
        assert!(table.acquire(d, 1));
        assert!(table.acquire(d, 2));
        assert_eq!(kernel_watches_on(d), 1, "one watch for both inputs");
        assert_eq!(table.holders(d).count(), 2);
        table.release(d, 1);
        assert_eq!(kernel_watches_on(d), 1, "still held by input 2");
        assert!(table.is_watched(d));
        std::fs::write(d.join("a.log"), b"x\n").unwrap();
        assert!(wait_change(&mut table, |c| c.dirs.contains(d)
            && c.touched.contains(&d.join("a.log"))));
        table.release(d, 2);
        assert!(!table.is_watched(d));
        // The kernel drops the watch once notify's thread has processed the removal.
        let deadline = Instant::now() + Duration::from_secs(5);
        while kernel_watches_on(d) != 0 {
            assert!(Instant::now() < deadline, "watch not removed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(table.watched_dirs(), 0);
    }

    #[test]
    fn writes_are_reported_and_wake_once_until_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"x\n").unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut table = WatchTable::new(move || {
            let _ = tx.send(());
        });
        assert!(table.acquire(dir.path(), 7));
        for _ in 0..3 {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(b"more\n")
                .unwrap();
        }
        rx.recv_timeout(Duration::from_secs(5)).expect("no wake-up");
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "woken twice before the changes were taken"
        );
        assert!(wait_change(&mut table, |c| c.touched.contains(&path)));
    }

    #[test]
    fn a_directory_made_again_is_watched_again() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("logs");
        std::fs::create_dir(&d).unwrap();
        let mut table = WatchTable::new(|| {});
        assert!(table.acquire(&d, 1));
        std::fs::remove_dir(&d).unwrap();
        std::fs::create_dir(&d).unwrap();
        // The removal is reported (the directory itself, through its own watch).
        assert!(wait_change(&mut table, |c| c.dirs.contains(&d)));
        assert!(!table.is_watched(&d), "the watch on the removed directory");
        assert!(table.acquire(&d, 1));
        let _ = table.take_changes();
        std::fs::write(d.join("new.log"), b"x\n").unwrap();
        assert!(wait_change(&mut table, |c| c
            .touched
            .contains(&d.join("new.log"))));
    }

    #[test]
    fn a_missing_directory_is_polled_not_watched() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = WatchTable::new(|| {});
        let missing = dir.path().join("not-yet");
        assert!(!table.acquire(&missing, 1));
        assert!(!table.is_watched(&missing));
        assert_eq!(table.holders(&missing).count(), 1);
        table.release(&missing, 1);
        assert_eq!(table.holders(&missing).count(), 0);
    }
}
