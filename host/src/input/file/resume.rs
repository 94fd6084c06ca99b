//! Where reading resumes: from a file's checkpoint when it is still the same file, from the
//! right place when it is new, and through files rotated away while the daemon was down.

use std::path::{Path, PathBuf};

use crate::input::file::checkpoint::{CheckpointStore, FileCheckpoint};
use crate::input::file::identity::DevInode;
use crate::input::file::multiline::MultilineAssembler;
use crate::input::file::{Input, Tracked};

/// Where reading a newly found file starts: its checkpoint when the signature still matches;
/// else, for a file that existed before the input started, what its config says
/// ([`InputFileConfig::start_of_existing`](super::InputFileConfig::start_of_existing): the
/// `--once` rule differs); else 0.
pub(super) fn start_offset(
    store: &CheckpointStore,
    input: &Input,
    path: &Path,
    id: DevInode,
    size: u64,
    existed_before: bool,
    once: bool,
) -> u64 {
    if let Some(cp) = store.get(&input.pipeline, id) {
        let same = std::fs::File::open(path)
            .and_then(|f| cp.signature.matches(&f))
            .unwrap_or(false);
        if same && cp.offset <= size {
            return cp.offset;
        }
        tracing::info!(path = %path.display(), "checkpoint does not match the file (inode reused or truncated): reading from the start");
        return 0;
    }
    if existed_before {
        let start = input.spec.config.start_of_existing(size, once);
        let line = line_start_from(path, start).unwrap_or(start);
        match input.spec.multiline() {
            Some(mut multiline) if start > 0 && line < size => {
                event_start_from(path, line, &mut multiline).unwrap_or_else(|| {
                    tracing::warn!(
                        pipeline = %input.pipeline,
                        path = %path.display(),
                        offset = line,
                        "no line matching Multiline.StartPattern within {} KiB of the tail start: \
                         reading from the next line, the first event may be a fragment",
                        WINDOW / 1024
                    );
                    line
                })
            }
            _ => line,
        }
    } else {
        0
    }
}

/// How far past a tail start the next line (or event start) is looked for; a longer line is
/// entered where the tail starts (and cut like any overlong line).
const WINDOW: usize = 512 * 1024;

/// Up to [`WINDOW`] bytes of `path` from `from`. None when unreadable.
fn read_window(path: &Path, from: u64) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::with_capacity(WINDOW + 1);
    file.take(WINDOW as u64 + 1).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// The first line start at or after `offset` (as iLogtail moves a tail start to the next line,
/// so that the first event is never a fragment cut inside a line or a UTF-8 character): `offset`
/// itself when a newline precedes it, else just past the next newline. None when unreadable or
/// no newline comes within [`WINDOW`].
fn line_start_from(path: &Path, offset: u64) -> Option<u64> {
    if offset == 0 {
        return Some(0);
    }
    let buf = read_window(path, offset - 1)?;
    let newline = memchr::memchr(b'\n', &buf)?;
    Some(offset + newline as u64)
}

/// The start of the first complete line at or after `offset` (a line start) that begins an
/// event by the StartPattern, as iLogtail's `LogFileReader::FixLastFilePos` moves a tail start
/// with a multiline config: the first event delivered is then whole, not the end of a stack
/// trace. `offset` itself without a StartPattern. None when no such line comes within
/// [`WINDOW`] (iLogtail then keeps the tail start as it was and warns; here it stays on the
/// line start, which is never worse).
fn event_start_from(path: &Path, offset: u64, multiline: &mut MultilineAssembler) -> Option<u64> {
    if multiline.starts_event(b"").is_none() {
        return Some(offset);
    }
    let buf = read_window(path, offset)?;
    let mut line_start = 0;
    for newline in memchr::memchr_iter(b'\n', &buf) {
        let mut line = &buf[line_start..newline];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if multiline.starts_event(line) == Some(true) {
            return Some(offset + line_start as u64);
        }
        line_start = newline + 1;
    }
    None
}

/// Files of `pipeline`'s checkpoints that are no longer at their checkpointed path but still in
/// its directory under another name (rotated while the daemon was down) and not fully read.
pub(super) fn rotated_while_down(
    store: &CheckpointStore,
    pipeline: &str,
    found: &[PathBuf],
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for cp in store.of_pipeline(pipeline) {
        let at_path = std::fs::metadata(&cp.path).map(|m| DevInode::of(&m)).ok();
        if at_path == Some(cp.id) {
            continue;
        }
        let Some(dir) = cp.path.parent() else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if DevInode::of(&meta) == cp.id && meta.len() > cp.offset && !found.contains(&path) {
                out.push(path);
            }
        }
    }
    out
}

/// Drops the checkpoints of `pipeline` whose file is neither at its path nor in its directory.
pub(super) fn forget_vanished(store: &mut CheckpointStore, pipeline: &str) {
    let gone: Vec<DevInode> = store
        .of_pipeline(pipeline)
        .filter(|cp| {
            let at_path = std::fs::metadata(&cp.path).map(|m| DevInode::of(&m)).ok();
            at_path != Some(cp.id) && !in_dir(&cp.path, cp.id)
        })
        .map(|cp| cp.id)
        .collect();
    for id in gone {
        store.remove(pipeline, id);
    }
}

/// Whether the directory of `path` holds a file with identity `id`.
fn in_dir(path: &Path, id: DevInode) -> bool {
    find_in_dir(path, id).is_some()
}

/// The file with identity `id` in the directory of `path`, if there is one.
pub(super) fn find_in_dir(path: &Path, id: DevInode) -> Option<PathBuf> {
    let entries = std::fs::read_dir(path.parent()?).ok()?;
    entries
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::metadata(p).is_ok_and(|m| DevInode::of(&m) == id))
}

pub(super) fn checkpoint_of(pipeline: &str, tracked: &Tracked) -> FileCheckpoint {
    FileCheckpoint {
        pipeline: pipeline.to_owned(),
        path: tracked.file.path.clone(),
        id: tracked.file.id,
        signature: tracked.file.signature,
        offset: tracked.committed,
    }
}

#[cfg(test)]
mod line_start_tests {
    use super::*;

    #[test]
    fn a_tail_start_moves_to_the_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "first line\nsecond\nthird\n").unwrap();
        // Inside "first line": moves past its newline.
        assert_eq!(line_start_from(&path, 3), Some(11));
        // Just after a newline: stays.
        assert_eq!(line_start_from(&path, 11), Some(11));
        assert_eq!(line_start_from(&path, 0), Some(0));
        // Inside the last line: the end of the file.
        assert_eq!(line_start_from(&path, 20), Some(24));
        // No newline after it at all: left to the caller.
        std::fs::write(&path, "no newline here").unwrap();
        assert_eq!(line_start_from(&path, 3), None);
    }

    fn assembler(options: serde_json::Value) -> MultilineAssembler {
        let config = serde_json::from_value(options).unwrap();
        MultilineAssembler::new(&config).unwrap().unwrap()
    }

    #[test]
    fn a_tail_start_moves_to_the_next_start_pattern_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let text = "2024-01-01 one\n  at a\r\n  at b\n2024-01-02 two\r\n  at c\n";
        std::fs::write(&path, text).unwrap();
        let mut start = assembler(serde_json::json!({"StartPattern": "\\d{4}-.*"}));
        let second = text.find("2024-01-02").unwrap() as u64;
        // From a continuation line: on to the next event's first line (`\r\n` or not).
        assert_eq!(event_start_from(&path, 15, &mut start), Some(second));
        // Already on an event's first line: stays.
        assert_eq!(event_start_from(&path, 0, &mut start), Some(0));
        assert_eq!(event_start_from(&path, second, &mut start), Some(second));
        // No event starts after it: left to the caller.
        let last = text.find("  at c").unwrap() as u64;
        assert_eq!(event_start_from(&path, last, &mut start), None);
        // Without a StartPattern, the line start is the event start.
        let mut end_only = assembler(serde_json::json!({"EndPattern": "  at c"}));
        assert_eq!(event_start_from(&path, 15, &mut end_only), Some(15));
    }
}
