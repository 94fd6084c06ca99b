//! The daemon's one inotify instance (as LoongCollector's), shared by the file server (log
//! directories) and the config watcher (config dirs). The per-user instance limit is 128 by
//! default: a daemon must not take more than one.
//!
//! Each user subscribes a sink and watches the directories it needs; a sink is given the
//! events of its own directories (an event on a directory's entry or on the directory itself)
//! and every error. Watches are counted: a directory two users watch is watched once and
//! unwatched with the last.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use notify::{RecursiveMode, Watcher};

/// What a user is told: an event in one of its directories, or an error (events may be lost).
pub type Sink = Arc<dyn Fn(&notify::Result<notify::Event>) + Send + Sync>;

/// A subscriber's number.
pub type SinkId = u64;

pub struct Inotify {
    /// Never held while an event is handed out (notify's `watch` waits for its event thread,
    /// which may be handing out an event).
    watcher: Mutex<notify::RecommendedWatcher>,
    route: Arc<RwLock<Route>>,
}

#[derive(Default)]
struct Route {
    sinks: HashMap<SinkId, Sink>,
    /// Directory → the sinks watching it, with how many times each did.
    dirs: HashMap<PathBuf, HashMap<SinkId, usize>>,
    next: SinkId,
}

impl Route {
    fn deliver(&self, event: &notify::Result<notify::Event>) {
        let Ok(ev) = event else {
            self.sinks.values().for_each(|sink| sink(event));
            return;
        };
        if ev.need_rescan() {
            self.sinks.values().for_each(|sink| sink(event));
            return;
        }
        let mut to: HashSet<SinkId> = HashSet::new();
        for path in &ev.paths {
            for dir in [Some(path.as_path()), path.parent()].into_iter().flatten() {
                if let Some(holders) = self.dirs.get(dir) {
                    to.extend(holders.keys());
                }
            }
        }
        for id in to {
            if let Some(sink) = self.sinks.get(&id) {
                sink(event);
            }
        }
    }
}

/// The daemon's instance, made at the first call; the error (the instance limit, no inotify)
/// is the same for every call.
pub fn shared() -> Result<&'static Inotify, String> {
    static SHARED: OnceLock<Result<Inotify, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let route = Arc::new(RwLock::new(Route::default()));
            let deliver = route.clone();
            let handler = move |event: notify::Result<notify::Event>| {
                deliver.read().expect("not poisoned").deliver(&event);
            };
            notify::recommended_watcher(handler)
                .map(|watcher| Inotify {
                    watcher: Mutex::new(watcher),
                    route,
                })
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl Inotify {
    pub fn subscribe(&self, sink: Sink) -> SinkId {
        let mut route = self.route.write().expect("not poisoned");
        route.next += 1;
        let id = route.next;
        route.sinks.insert(id, sink);
        id
    }

    /// Removes the sink and its watches.
    pub fn unsubscribe(&self, id: SinkId) {
        let dirs: Vec<PathBuf> = {
            let route = self.route.read().expect("not poisoned");
            route
                .dirs
                .iter()
                .filter(|(_, holders)| holders.contains_key(&id))
                .map(|(dir, _)| dir.clone())
                .collect()
        };
        for dir in dirs {
            while self.holds(&dir, id) {
                self.unwatch(&dir, id);
            }
        }
        self.route.write().expect("not poisoned").sinks.remove(&id);
    }

    fn holds(&self, dir: &Path, id: SinkId) -> bool {
        let route = self.route.read().expect("not poisoned");
        route.dirs.get(dir).is_some_and(|h| h.contains_key(&id))
    }

    /// Watches `dir` for sink `id` (again: a directory made anew at the same path is another
    /// inode, and the watch follows the inode). Counted: each call is undone by one
    /// [`Inotify::unwatch`].
    pub fn watch(&self, dir: &Path, id: SinkId) -> Result<(), notify::Error> {
        *self
            .route
            .write()
            .expect("not poisoned")
            .dirs
            .entry(dir.to_owned())
            .or_default()
            .entry(id)
            .or_default() += 1;
        let added = self
            .watcher
            .lock()
            .expect("not poisoned")
            .watch(dir, RecursiveMode::NonRecursive);
        if added.is_err() {
            self.forget(dir, id);
        }
        added
    }

    /// Undoes one [`Inotify::watch`] of `dir` by sink `id`; the watch goes with the last.
    pub fn unwatch(&self, dir: &Path, id: SinkId) {
        let last = {
            let route = self.route.read().expect("not poisoned");
            route
                .dirs
                .get(dir)
                .is_some_and(|h| h.len() == 1 && h.get(&id) == Some(&1))
        };
        if last {
            let _ = self.watcher.lock().expect("not poisoned").unwatch(dir);
        }
        self.forget(dir, id);
    }

    fn forget(&self, dir: &Path, id: SinkId) {
        let mut route = self.route.write().expect("not poisoned");
        let Some(holders) = route.dirs.get_mut(dir) else {
            return;
        };
        if let Some(n) = holders.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                holders.remove(&id);
            }
        }
        if holders.is_empty() {
            route.dirs.remove(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A sink that keeps the paths it was told of.
    fn recorder(inotify: &Inotify) -> (SinkId, Arc<Mutex<Vec<PathBuf>>>) {
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = paths.clone();
        let id = inotify.subscribe(Arc::new(move |event| {
            if let Ok(event) = event {
                seen.lock().unwrap().extend(event.paths.iter().cloned());
            }
        }));
        (id, paths)
    }

    fn wait_for(paths: &Mutex<Vec<PathBuf>>, path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !paths.lock().unwrap().iter().any(|p| p == path) {
            assert!(Instant::now() < deadline, "no event on {}", path.display());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Two users of one directory: both are told, and the watch stays until both let go;
    /// a user is not told of another's directory.
    #[test]
    fn users_share_watches_and_hear_only_their_own_directories() {
        let inotify = shared().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let (both, own) = (tmp.path().join("both"), tmp.path().join("own"));
        std::fs::create_dir(&both).unwrap();
        std::fs::create_dir(&own).unwrap();
        let (a, a_seen) = recorder(inotify);
        let (b, b_seen) = recorder(inotify);
        inotify.watch(&both, a).unwrap();
        inotify.watch(&both, b).unwrap();
        inotify.watch(&own, b).unwrap();

        std::fs::write(own.join("x.log"), b"x").unwrap();
        wait_for(&b_seen, &own.join("x.log"));
        std::fs::write(both.join("y.log"), b"y").unwrap();
        wait_for(&a_seen, &both.join("y.log"));
        wait_for(&b_seen, &both.join("y.log"));

        inotify.unwatch(&both, a);
        std::fs::write(both.join("z.log"), b"z").unwrap();
        wait_for(&b_seen, &both.join("z.log"));
        let a_saw = a_seen.lock().unwrap().clone();
        assert!(!a_saw.contains(&own.join("x.log")), "not a's directory");
        assert!(!a_saw.contains(&both.join("z.log")), "a let go of it");

        inotify.unsubscribe(a);
        inotify.unsubscribe(b);
        let route = inotify.route.read().unwrap();
        assert!(!route.dirs.contains_key(&own) && !route.dirs.contains_key(&both));
    }
}
