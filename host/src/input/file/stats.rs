//! What the FileServer tells `/metrics`: per input, the files it tracks and holds open, how far
//! reading lags behind the files' ends, and the bytes files lost before they were read to their
//! end (rotated away while closed, truncated, unreadable: LoongCollector users ask for this
//! figure, its issue #2192). Asked for through the server's command channel, so the numbers
//! are taken on its own thread, between two rounds.

use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::Command;

/// One input's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputStats {
    pub pipeline: String,
    pub tracked_files: usize,
    pub open_files: usize,
    /// Bytes written to its files and not read yet, all files together.
    pub lag_bytes: u64,
    /// Bytes its files lost before they were read (see the module doc).
    pub lost_bytes: u64,
    /// The files that lag, most behind first, at most [`MAX_LAGGING_FILES`].
    pub lagging: Vec<(PathBuf, u64)>,
}

/// Files listed per input in [`InputStats::lagging`]: enough to find the slow ones, bounded so
/// that a scrape stays small with 10,000s of files.
pub const MAX_LAGGING_FILES: usize = 20;

/// Asks the FileServer for its figures; cheap to clone.
#[derive(Clone)]
pub struct FileStatsHandle {
    pub(super) commands: Sender<Command>,
}

impl FileStatsHandle {
    /// Every input's figures; None when the server does not answer within a second (it is busy
    /// with a long round, or stopping).
    pub fn stats(&self) -> Option<Vec<InputStats>> {
        let (reply, wait) = crossbeam_channel::bounded(1);
        self.commands.send(Command::Stats { reply }).ok()?;
        wait.recv_timeout(Duration::from_secs(1)).ok()
    }
}

/// The size of the file at `path` now, if it is still the file `inode` (else what was last
/// seen of it).
pub(super) fn current_size(path: &std::path::Path, inode: u64, last_size: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.ino() == inode => meta.len(),
        _ => last_size,
    }
}
