//! Change detection, two ways (as Fluent Bit's tail input): inotify wakes the FileServer as
//! soon as a file is created, renamed or removed under a watched directory, and a periodic
//! poll finds what inotify misses (some file systems, queue overflow, directories that did not
//! exist yet). The poll alone is correct; inotify makes new files show up at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use notify::{EventKind, RecursiveMode, Watcher};

/// Watches the directories an input's globs start from. Dropping it stops watching.
pub struct DirWatch {
    _watcher: Option<notify::RecommendedWatcher>,
}

impl DirWatch {
    /// Calls `wake` (coalesced: at most once until `woken` is reset) when something is created,
    /// renamed or removed under one of `roots` (`recursive` for globs with `**` or a search
    /// depth). A failure to watch is logged; the poll still finds everything.
    pub fn new(
        roots: &[(PathBuf, bool)],
        woken: Arc<AtomicBool>,
        wake: impl Fn() + Send + 'static,
    ) -> DirWatch {
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let structural = matches!(
                event.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(notify::event::ModifyKind::Name(_))
            );
            if structural && !woken.swap(true, Ordering::AcqRel) {
                wake();
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("inotify unavailable ({e}); new files are found by polling");
                return DirWatch { _watcher: None };
            }
        };
        for (root, recursive) in roots {
            let mode = if *recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            if let Err(e) = watcher.watch(root, mode) {
                tracing::debug!(dir = %root.display(), "not watched ({e}); polled instead");
            }
        }
        DirWatch {
            _watcher: Some(watcher),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_new_file_wakes_the_server_once_until_handled() {
        let dir = tempfile::tempdir().unwrap();
        let woken = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::unbounded();
        let _watch = DirWatch::new(
            &[(dir.path().to_owned(), false)],
            woken.clone(),
            move || {
                let _ = tx.send(());
            },
        );
        for i in 0..3 {
            std::fs::write(dir.path().join(format!("{i}.log")), b"x\n").unwrap();
        }
        let started = Instant::now();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("inotify woke nobody");
        assert!(woken.load(Ordering::Acquire));
        // Coalesced: no second wake-up until the flag is reset.
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        woken.store(false, Ordering::Release);
        std::fs::write(dir.path().join("later.log"), b"x\n").unwrap();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("no wake-up after the reset");
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
