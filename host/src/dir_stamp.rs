//! Whether a directory's listing can have changed, without reading it: creating, removing or
//! renaming an entry sets the directory's mtime and ctime, and a directory made again is
//! another inode. The file discovery and the config watcher read a directory again only when
//! its stamp moved (iLogtail's polling also compares directory mtimes), so that thousands of
//! idle directories cost a stat each, not a listing.
//!
//! A stamp taken within `RACY` of a change is not trusted: a second change within the file
//! system's timestamp granularity (a second on some, two on FAT) would leave it as it was.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How recent a directory's last change may be for its stamp to be trusted.
const RACY: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirStamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl DirStamp {
    pub fn of(meta: &std::fs::Metadata) -> DirStamp {
        DirStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// `dir`'s stamp now; `None` when it is not there.
    pub fn now(dir: &Path) -> Option<DirStamp> {
        std::fs::metadata(dir).ok().map(|m| DirStamp::of(&m))
    }

    /// Whether this stamp can be trusted, `limit` being the [`trust_limit`] taken just before
    /// it: the directory's last change is older than the timestamp granularity.
    pub fn trusted(&self, limit: TrustLimit) -> bool {
        self.mtime.0 < limit.0 && self.ctime.0 < limit.0
    }
}

/// Seconds since the epoch before which a change is old enough for a stamp to be trusted.
#[derive(Clone, Copy, Debug)]
pub struct TrustLimit(i64);

impl TrustLimit {
    /// Trusts every stamp (for tests: as if the changes were long ago).
    #[cfg(test)]
    pub const ANY: TrustLimit = TrustLimit(i64::MAX);
}

/// The trust limit for stamps taken now (take it before the stamps).
pub fn trust_limit() -> TrustLimit {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    TrustLimit(now.saturating_sub(RACY).as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_made_or_removed_moves_the_stamp_and_a_fresh_change_is_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let first = DirStamp::now(dir).unwrap();
        assert!(
            !first.trusted(trust_limit()),
            "just made: too recent to trust"
        );
        assert!(first.trusted(TrustLimit::ANY));
        // Changes within one tick of the file system's clock may keep the times: the entries
        // change until the stamp moves, which it must within a second.
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        let mut n = 0;
        while DirStamp::now(dir) == Some(first) {
            assert!(std::time::Instant::now() < deadline, "stamp never moved");
            std::fs::write(dir.join(format!("{n}.log")), b"x").unwrap();
            std::fs::remove_file(dir.join(format!("{n}.log"))).unwrap();
            n += 1;
        }
        // Writing to a file in it is not a change of the listing.
        std::fs::write(dir.join("kept.log"), b"x").unwrap();
        let listed = DirStamp::now(dir).unwrap();
        std::fs::write(dir.join("kept.log"), b"more").unwrap();
        assert_eq!(DirStamp::now(dir), Some(listed));
        assert!(DirStamp::now(&dir.join("gone")).is_none());
    }
}
