//! [`JsonLinesWriter`]: the flusher behind `flusher_stdout` and `flusher_file`.
//!
//! What it guarantees, because the runner retries whatever a flusher leaves in `groups`:
//!
//! * **A group is written whole or not at all.** A write that fails part-way (ENOSPC, EIO, a
//!   pipe closed) is undone: a regular file is truncated back to where the failed group began,
//!   so the retry neither leaves half a JSON line nor duplicates lines. Where that is not
//!   possible (stdout, a pipe, a file that cannot be truncated), the unwritten rest of the group
//!   is kept and written first at the next call, which completes the broken line; the group
//!   then counts as delivered. Groups written entirely before the error are delivered.
//! * **The output follows its path.** Removing or renaming the output file (logrotate of the
//!   output) is noticed at the next call, by comparing the device and inode of the path with
//!   those of the open file, and the file is created anew: nothing is written into an unlinked
//!   inode while checkpoints advance.
//! * **A closed stdout stops the daemon.** A write failing with EPIPE cannot succeed later: the
//!   writer says so once, runs the broken-pipe hook (the daemon raises SIGTERM on itself, so
//!   `tailrace --once | head` ends), and from then on is never ready, so the runner neither spins
//!   nor logs while the daemon stops. What was not written stays undelivered.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::event::PipelineEventGroup;

/// Groups are written once their lines reach this size (and at the end of a call).
const WRITE_CHUNK: usize = 256 * 1024;

thread_local! {
    /// The lines of the groups being written, and where each group's lines end in them. Kept
    /// per thread, not per writer: with a writer per pipeline (a `flusher_stdout` in each of a
    /// thousand), buffers kept by each would cost memory by the number of pipelines; flushes
    /// run on a fixed pool of threads.
    static SCRATCH: std::cell::Cell<(Vec<u8>, Vec<usize>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// Linux's ENOSPC, the error the write-limit test hook fails with.
const ENOSPC: i32 = 28;

/// Where the JSON lines of `flusher_stdout` and `flusher_file` go: stdout, a stream, or a file
/// appended to. Lines are written a chunk of whole groups at a time (holding stdout's lock), so
/// lines from two flushers never mix.
pub struct JsonLinesWriter {
    out: Output,
    /// The unwritten rest of the first pending group, after a write broke off inside it and
    /// could not be undone: written before anything else, it completes the broken line.
    carry: Vec<u8>,
    /// Run once when stdout (or a stream) is closed under us.
    on_broken_pipe: Option<Box<dyn Fn() + Send>>,
    /// Stdout or the stream failed with EPIPE: nothing will be written any more.
    closed: bool,
    /// Fault injection for tests: how many more bytes may be written before writes fail with
    /// ENOSPC (`None`: no limit).
    write_limit: Option<usize>,
}

enum Output {
    /// A duplicate of fd 1, made at the first write (written directly, so that no byte waits in
    /// the standard library's buffer when a write fails).
    Stdout(Option<File>),
    /// Any other non-seekable output.
    Stream(Box<dyn Write + Send>),
    File(FileOutput),
}

/// An output file, appended to.
struct FileOutput {
    path: PathBuf,
    file: File,
    /// Device and inode of `file`, to notice when `path` no longer names it.
    id: (u64, u64),
    /// Whether `file` is a regular file (one that can be truncated back after a failed write).
    regular: bool,
    /// The file's length as far as this writer knows (read again at every call).
    size: u64,
    rolling: Option<Rolling>,
}

/// Size-based rolling of an output file: `path` is renamed `path.1` (and `path.1` `path.2`,
/// ...) once it would grow past `max_bytes`; at most `keep` rolled files are kept.
struct Rolling {
    max_bytes: u64,
    keep: usize,
}

/// A write that broke off: everything before `resume` in the data is in the output (and
/// stays), nothing after it is.
struct Broken {
    resume: usize,
    error: io::Error,
}

impl JsonLinesWriter {
    pub fn stdout() -> JsonLinesWriter {
        JsonLinesWriter::with_output(Output::Stdout(None))
    }

    /// Writes to `out`, a non-seekable output (a pipe, a socket): a failed write is completed
    /// at the next call rather than undone.
    pub fn stream(out: Box<dyn Write + Send>) -> JsonLinesWriter {
        JsonLinesWriter::with_output(Output::Stream(out))
    }

    /// Appends to `path` (created, with its directory, if missing).
    pub fn append_to(path: &Path) -> io::Result<JsonLinesWriter> {
        JsonLinesWriter::rolling(path, 0, 1)
    }

    /// Appends to `path`, rolling it over once it would pass `max_bytes` (0: never), keeping
    /// `keep` rolled files.
    pub fn rolling(path: &Path, max_bytes: u64, keep: usize) -> io::Result<JsonLinesWriter> {
        let mut out = FileOutput::open(path)?;
        if max_bytes > 0 {
            out.rolling = Some(Rolling {
                max_bytes,
                keep: keep.max(1),
            });
        }
        Ok(JsonLinesWriter::with_output(Output::File(out)))
    }

    fn with_output(out: Output) -> JsonLinesWriter {
        JsonLinesWriter {
            out,
            carry: Vec::new(),
            on_broken_pipe: None,
            closed: false,
            write_limit: None,
        }
    }

    /// Runs `hook` once when stdout (or the stream) turns out to be closed (EPIPE): the host
    /// stops the daemon with it.
    pub fn on_broken_pipe(mut self, hook: impl Fn() + Send + 'static) -> JsonLinesWriter {
        self.on_broken_pipe = Some(Box::new(hook));
        self
    }

    /// Test hook: after `bytes` more bytes, every write fails with ENOSPC (`None`: no limit).
    #[doc(hidden)]
    pub fn set_write_limit(&mut self, bytes: Option<usize>) {
        self.write_limit = bytes;
    }

    /// Writes `data`, whose groups end at `ends`, to the output.
    fn write_data(&mut self, data: &[u8], ends: &[usize]) -> Result<(), Broken> {
        let limit = &mut self.write_limit;
        match &mut self.out {
            Output::File(file) => file.write(data, ends, limit),
            Output::Stream(out) => write_counted(out, data, limit).map_err(broken_at(0)),
            Output::Stdout(dup) => {
                // Held for the whole write: two flushers' lines never interleave.
                let lock = io::stdout().lock();
                if dup.is_none() {
                    let fd = lock
                        .as_fd()
                        .try_clone_to_owned()
                        .map_err(|error| Broken { resume: 0, error })?;
                    *dup = Some(File::from(fd));
                }
                let Some(out) = dup else {
                    return Ok(());
                };
                write_counted(out, data, limit).map_err(broken_at(0))
            }
        }
    }

    /// What to say about a failed write; a broken pipe on stdout or a stream closes the
    /// writer for good (said once).
    fn failed(&mut self, error: io::Error) -> String {
        let stream = matches!(self.out, Output::Stdout(_) | Output::Stream(_));
        if stream && error.kind() == io::ErrorKind::BrokenPipe {
            self.closed = true;
            tracing::warn!(
                "the output is closed (broken pipe): stopping; what was not written stays undelivered"
            );
            if let Some(hook) = &self.on_broken_pipe {
                hook();
            }
            return "the output is closed (broken pipe)".to_owned();
        }
        format!("write failed: {error}")
    }
}

/// Writes all of `data` to `out`; on error, also says how many bytes were written before it.
fn write_counted(
    out: &mut impl Write,
    data: &[u8],
    limit: &mut Option<usize>,
) -> Result<(), (usize, io::Error)> {
    let mut written = 0;
    while written < data.len() {
        let mut chunk = &data[written..];
        if let Some(left) = *limit {
            if left == 0 {
                return Err((written, io::Error::from_raw_os_error(ENOSPC)));
            }
            chunk = &chunk[..chunk.len().min(left)];
        }
        match out.write(chunk) {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                written += n;
                if let Some(left) = limit {
                    *left -= n.min(*left);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    Ok(())
}

/// Turns a broken write of the bytes from `start` on into a [`Broken`] that resumes where it
/// stopped (for outputs that cannot take bytes back).
fn broken_at(start: usize) -> impl Fn((usize, io::Error)) -> Broken {
    move |(written, error)| Broken {
        resume: start + written,
        error,
    }
}

impl FileOutput {
    fn open(path: &Path) -> io::Result<FileOutput> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let meta = file.metadata()?;
        Ok(FileOutput {
            path: path.to_owned(),
            file,
            id: (meta.dev(), meta.ino()),
            regular: meta.file_type().is_file(),
            size: meta.len(),
            rolling: None,
        })
    }

    /// Opens the file at the path anew (keeping the rolling settings).
    fn reopen(&mut self) -> io::Result<()> {
        let rolling = self.rolling.take();
        let fresh = FileOutput::open(&self.path);
        self.rolling = rolling;
        let fresh = fresh?;
        self.file = fresh.file;
        self.id = fresh.id;
        self.regular = fresh.regular;
        self.size = fresh.size;
        Ok(())
    }

    /// Reopens the file when its path no longer names it (removed, or renamed away and maybe
    /// replaced): one `stat` per call.
    fn follow_path(&mut self) -> io::Result<()> {
        let why = match std::fs::metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.id => return Ok(()),
            Ok(_) => "was replaced (renamed away, another file in its place)",
            Err(e) if e.kind() == io::ErrorKind::NotFound => "was removed or renamed",
            // Cannot tell (e.g. a directory not searchable any more): keep the open file.
            Err(_) => return Ok(()),
        };
        self.reopen()?;
        tracing::info!(path = %self.path.display(), "the output file {why}; writing to a new one at its path");
        Ok(())
    }

    /// Renames the file to `.1` (shifting older ones, dropping the oldest) and starts anew.
    fn roll(&mut self, keep: usize) -> io::Result<()> {
        let rolled = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let _ = std::fs::remove_file(rolled(keep));
        for n in (1..keep).rev() {
            let _ = std::fs::rename(rolled(n), rolled(n + 1));
        }
        std::fs::rename(&self.path, rolled(1))?;
        self.reopen()
    }

    /// Appends `data` (whose groups end at `ends`): whole lines only when rolling, rolling over
    /// before a line that would not fit (a line longer than the maximum gets a file of its own).
    /// A write that breaks off inside a group is truncated back to the group's start (or to the
    /// start of this file, when the group began in a file rolled since).
    fn write(
        &mut self,
        data: &[u8],
        ends: &[usize],
        limit: &mut Option<usize>,
    ) -> Result<(), Broken> {
        if let Ok(meta) = self.file.metadata() {
            // Someone may have truncated it (logrotate's copytruncate).
            self.size = meta.len();
        }
        // Where this file's part of `data` begins, and the file's size there.
        let (mut segment, mut segment_size) = (0, self.size);
        let mut pos = 0;
        while pos < data.len() {
            let end = match &self.rolling {
                None => data.len(),
                Some(rolling) => {
                    let room = rolling.max_bytes.saturating_sub(self.size);
                    let fits = data.len().min(pos.saturating_add(room as usize));
                    match last_newline(&data[pos..fits]) {
                        Some(p) => pos + p + 1,
                        None if self.size == 0 => data[pos..]
                            .iter()
                            .position(|&b| b == b'\n')
                            .map_or(data.len(), |p| pos + p + 1),
                        None => {
                            let keep = rolling.keep;
                            if let Err(error) = self.roll(keep) {
                                return Err(Broken { resume: pos, error });
                            }
                            (segment, segment_size) = (pos, 0);
                            continue;
                        }
                    }
                }
            };
            match write_counted(&mut self.file, &data[pos..end], limit) {
                Ok(()) => {
                    self.size += (end - pos) as u64;
                    pos = end;
                }
                Err((written, error)) => {
                    self.size += written as u64;
                    let at = pos + written;
                    return Err(self.undo(at, error, ends, segment, segment_size));
                }
            }
        }
        Ok(())
    }

    /// After a write broke off at `at`: truncates the file back to the start of the group that
    /// was being written (or of this file's part of it). When that fails, the bytes stay, and
    /// the write resumes at `at`.
    fn undo(
        &mut self,
        at: usize,
        error: io::Error,
        ends: &[usize],
        segment: usize,
        segment_size: u64,
    ) -> Broken {
        let group = ends.partition_point(|&end| end <= at);
        let group_start = match group {
            0 => 0,
            g => ends[g - 1],
        };
        let back_to = group_start.max(segment);
        if at == back_to || !self.regular {
            return Broken { resume: at, error };
        }
        let length = segment_size + (back_to - segment) as u64;
        match self.file.set_len(length) {
            Ok(()) => {
                self.size = length;
                Broken {
                    resume: back_to,
                    error,
                }
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "cannot take back a partial write ({e}); the line will be completed");
                Broken { resume: at, error }
            }
        }
    }
}

fn last_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().rposition(|&b| b == b'\n')
}

/// A JSON-lines writer is a flusher as it is (`flusher_stdout`, `flusher_file`).
impl crate::plugin::Flusher for JsonLinesWriter {
    /// Never ready once stdout is closed: the runner then holds what is left without retrying
    /// (and without logging) until the daemon, told by the broken-pipe hook, stops.
    fn is_ready(&mut self) -> bool {
        !self.closed
    }

    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        if self.closed {
            return Err("the output is closed (broken pipe)".to_owned());
        }
        if !self.carry.is_empty() {
            let carry = std::mem::take(&mut self.carry);
            match self.write_data(&carry, &[carry.len()]) {
                Ok(()) => {
                    // The first group is written whole now.
                    if !groups.is_empty() {
                        groups.remove(0);
                    }
                }
                Err(broken) => {
                    self.carry = carry[broken.resume.min(carry.len())..].to_vec();
                    return Err(self.failed(broken.error));
                }
            }
        }
        if groups.is_empty() {
            return Ok(());
        }
        if let Output::File(file) = &mut self.out {
            file.follow_path().map_err(|e| {
                format!(
                    "cannot open {} again after it was removed or renamed: {e}",
                    file.path.display()
                )
            })?;
        }
        let (mut buf, mut ends) = SCRATCH.take();
        buf.clear();
        ends.clear();
        // Written a chunk of whole groups at a time: the chunk is still in the CPU's cache when
        // the kernel copies it, and a huge batch needs no huge buffer.
        let mut first = 0;
        let mut result = Ok(());
        for (i, group) in groups.iter().enumerate() {
            super::write_group(&mut buf, group);
            ends.push(buf.len());
            if buf.len() < WRITE_CHUNK && i + 1 < groups.len() {
                continue;
            }
            if let Err(broken) = self.write_data(&buf, &ends) {
                let written = ends.partition_point(|&end| end <= broken.resume);
                if let Some(&end) = ends.get(written) {
                    let start = if written == 0 { 0 } else { ends[written - 1] };
                    if broken.resume > start {
                        self.carry = buf[broken.resume..end].to_vec();
                    }
                }
                result = Err((first + written, broken.error));
                break;
            }
            first = i + 1;
            buf.clear();
            ends.clear();
        }
        buf.clear();
        ends.clear();
        SCRATCH.set((buf, ends));
        match result {
            Ok(()) => {
                groups.clear();
                Ok(())
            }
            Err((delivered, error)) => {
                groups.drain(..delivered.min(groups.len()));
                Err(self.failed(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{LogEvent, PipelineEvent};
    use crate::plugin::Flusher;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// `groups` groups of `per_group` events each, numbered from `first`: `{"seq":"N",...}`.
    fn numbered(first: u32, groups: u32, per_group: u32) -> Vec<PipelineEventGroup> {
        (0..groups)
            .map(|g| {
                let mut group = PipelineEventGroup::default();
                group.set_tag("host", "h1");
                for e in 0..per_group {
                    let seq = first + g * per_group + e;
                    let mut log = LogEvent::new(seq, None);
                    log.set_content("seq", seq.to_string());
                    log.set_content("content", format!("line {seq} {}", "x".repeat(40)));
                    group.events.push(PipelineEvent::Log(log));
                }
                group
            })
            .collect()
    }

    /// The sequence numbers of `text`'s lines, each of which must be a whole JSON object.
    fn seqs(text: &[u8]) -> Vec<u32> {
        assert!(
            text.is_empty() || text.ends_with(b"\n"),
            "a partial last line"
        );
        text.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|line| {
                let v: serde_json::Value = serde_json::from_slice(line)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)));
                v["seq"].as_str().unwrap().parse().unwrap()
            })
            .collect()
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap_or_default()
    }

    #[test]
    fn rolling_files_keep_every_line_and_at_most_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut writer = JsonLinesWriter::rolling(&path, 200, 2).unwrap();
        for i in 0..10 {
            let mut group = PipelineEventGroup::default();
            let mut log = LogEvent::new(i, None);
            log.set_content("content", format!("line {i} {}", "x".repeat(60)));
            group.events.push(PipelineEvent::Log(log));
            writer.flush(&mut vec![group]).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let rolled1 = dir.path().join("out.jsonl.1");
        let rolled2 = dir.path().join("out.jsonl.2");
        assert!(!dir.path().join("out.jsonl.3").exists());
        for p in [&path, &rolled1, &rolled2] {
            assert!(std::fs::metadata(p).unwrap().len() <= 200);
        }
        let all = format!("{}{}{}", read(&rolled2), read(&rolled1), read(&path));
        let last: Vec<&str> = all.lines().collect();
        assert!(last.last().unwrap().contains("line 9 "));
    }

    #[test]
    fn a_removed_output_is_created_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        let mut writer = JsonLinesWriter::append_to(&path).unwrap();
        writer.flush(&mut numbered(0, 2, 3)).unwrap();
        assert_eq!(seqs(&read(&path)), (0..6).collect::<Vec<_>>());
        // Even its directory.
        std::fs::remove_dir_all(dir.path().join("sub")).unwrap();
        let mut groups = numbered(6, 2, 3);
        writer.flush(&mut groups).unwrap();
        assert!(groups.is_empty());
        assert_eq!(seqs(&read(&path)), (6..12).collect::<Vec<_>>());
    }

    #[test]
    fn a_renamed_output_is_created_anew_and_the_old_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let rotated = dir.path().join("out.jsonl.old");
        let mut writer = JsonLinesWriter::append_to(&path).unwrap();
        writer.flush(&mut numbered(0, 1, 4)).unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        writer.flush(&mut numbered(4, 1, 4)).unwrap();
        assert_eq!(seqs(&read(&rotated)), vec![0, 1, 2, 3]);
        assert_eq!(seqs(&read(&path)), vec![4, 5, 6, 7]);
        // Renamed away and replaced by another file (logrotate's `create`): that one is used.
        std::fs::rename(&path, &rotated).unwrap();
        std::fs::write(&path, b"").unwrap();
        writer.flush(&mut numbered(8, 1, 2)).unwrap();
        assert_eq!(seqs(&read(&path)), vec![8, 9]);
    }

    #[test]
    fn a_failed_write_is_truncated_back_to_the_group_and_retried_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut writer = JsonLinesWriter::append_to(&path).unwrap();
        writer.flush(&mut numbered(0, 1, 2)).unwrap();
        let before = read(&path).len();
        let mut groups = numbered(2, 4, 3);
        let mut one = Vec::new();
        super::super::write_group(&mut one, &groups[0]);
        // The disk fills up in the middle of the third group's second line.
        writer.set_write_limit(Some(2 * one.len() + one.len() / 2));
        let err = writer.flush(&mut groups).unwrap_err();
        assert!(err.contains("No space left"), "{err}");
        assert_eq!(groups.len(), 2, "the first two groups are delivered");
        assert_eq!(read(&path).len(), before + 2 * one.len());
        assert_eq!(seqs(&read(&path)), (0..8).collect::<Vec<_>>());
        // Still full: nothing changes, nothing is left behind.
        writer.set_write_limit(Some(10));
        writer.flush(&mut groups).unwrap_err();
        assert_eq!(groups.len(), 2);
        assert_eq!(seqs(&read(&path)), (0..8).collect::<Vec<_>>());
        // Space again: the retry writes each line once.
        writer.set_write_limit(None);
        writer.flush(&mut groups).unwrap();
        assert!(groups.is_empty());
        assert_eq!(seqs(&read(&path)), (0..14).collect::<Vec<_>>());
    }

    #[test]
    fn a_failure_in_a_later_chunk_delivers_the_groups_written_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut writer = JsonLinesWriter::append_to(&path).unwrap();
        let mut groups = numbered(0, 60, 100);
        let sizes: Vec<usize> = groups
            .iter()
            .map(|g| {
                let mut out = Vec::new();
                super::super::write_group(&mut out, g);
                out.len()
            })
            .collect();
        assert!(
            sizes.iter().sum::<usize>() > 2 * WRITE_CHUNK,
            "several chunks"
        );
        // Fails in the middle of a group of the second chunk.
        let limit = WRITE_CHUNK + WRITE_CHUNK / 2 + 37;
        let whole = sizes
            .iter()
            .scan(0, |sum, s| {
                *sum += s;
                Some(*sum)
            })
            .take_while(|&end| end <= limit)
            .count();
        writer.set_write_limit(Some(limit));
        writer.flush(&mut groups).unwrap_err();
        assert_eq!(groups.len(), 60 - whole);
        let n = (whole * 100) as u32;
        assert_eq!(seqs(&read(&path)), (0..n).collect::<Vec<_>>());
        writer.set_write_limit(None);
        writer.flush(&mut groups).unwrap();
        assert_eq!(seqs(&read(&path)), (0..6000).collect::<Vec<_>>());
    }

    #[test]
    fn the_size_known_for_a_rollback_follows_an_outside_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut writer = JsonLinesWriter::append_to(&path).unwrap();
        writer.flush(&mut numbered(0, 3, 3)).unwrap();
        // logrotate's copytruncate empties the file under the writer.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let mut groups = numbered(9, 2, 3);
        writer.set_write_limit(Some(100));
        writer.flush(&mut groups).unwrap_err();
        assert_eq!(read(&path), b"");
        writer.set_write_limit(None);
        writer.flush(&mut groups).unwrap();
        assert_eq!(seqs(&read(&path)), (9..15).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_write_across_a_roll_keeps_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut groups = numbered(0, 3, 4);
        let mut line = Vec::new();
        super::super::write_event(&mut line, &groups[0].events[0], &groups[0]);
        // Room for six lines per file: the second group starts in the first file and goes on
        // in the second, where the disk is full after one more line and a half.
        let mut writer = JsonLinesWriter::rolling(&path, 6 * line.len() as u64, 5).unwrap();
        writer.set_write_limit(Some(7 * line.len() + line.len() / 2));
        writer.flush(&mut groups).unwrap_err();
        assert_eq!(groups.len(), 2, "the first group is delivered");
        let rolled = dir.path().join("out.jsonl.1");
        assert_eq!(seqs(&read(&rolled)), (0..6).collect::<Vec<_>>());
        assert_eq!(seqs(&read(&path)), Vec::<u32>::new());
        writer.set_write_limit(None);
        writer.flush(&mut groups).unwrap();
        // (Lines 10 and 11 are a byte longer: the file may have rolled again.)
        let mut all = Vec::new();
        for n in (1..=5).rev() {
            all.extend(read(&dir.path().join(format!("out.jsonl.{n}"))));
        }
        all.extend(read(&path));
        assert_eq!(seqs(&all), (0..12).collect::<Vec<_>>());
    }

    /// A pipe: takes `budget` bytes, then fails with `error` (and takes nothing).
    #[derive(Clone)]
    struct Pipe {
        data: Arc<Mutex<Vec<u8>>>,
        budget: Arc<Mutex<usize>>,
        error: io::ErrorKind,
    }

    impl Pipe {
        fn new(budget: usize, error: io::ErrorKind) -> Pipe {
            Pipe {
                data: Arc::default(),
                budget: Arc::new(Mutex::new(budget)),
                error,
            }
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut budget = self.budget.lock().unwrap();
            if *budget == 0 {
                return Err(self.error.into());
            }
            // Short writes, as a pipe does.
            let n = buf.len().min(*budget).min(100);
            *budget -= n;
            self.data.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_to_a_pipe_is_completed_first_at_the_retry() {
        let pipe = Pipe::new(0, io::ErrorKind::Other);
        let mut writer = JsonLinesWriter::stream(Box::new(pipe.clone()));
        let mut groups = numbered(0, 4, 3);
        let mut one = Vec::new();
        super::super::write_group(&mut one, &groups[0]);
        *pipe.budget.lock().unwrap() = one.len() + one.len() / 3;
        writer.flush(&mut groups).unwrap_err();
        assert_eq!(groups.len(), 3, "the first group is delivered");
        // The second group broke off and cannot be taken back; a retry that fails again
        // writes a bit more of it.
        *pipe.budget.lock().unwrap() = 10;
        writer.flush(&mut groups).unwrap_err();
        assert_eq!(groups.len(), 3);
        *pipe.budget.lock().unwrap() = usize::MAX;
        writer.flush(&mut groups).unwrap();
        assert!(groups.is_empty());
        assert_eq!(
            seqs(&pipe.data.lock().unwrap()),
            (0..12).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_broken_pipe_closes_the_writer_once() {
        let pipe = Pipe::new(250, io::ErrorKind::BrokenPipe);
        let hooked = Arc::new(AtomicUsize::new(0));
        let counter = hooked.clone();
        let mut writer =
            JsonLinesWriter::stream(Box::new(pipe.clone())).on_broken_pipe(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            });
        let mut groups = numbered(0, 5, 1);
        assert!(writer.is_ready());
        let err = writer.flush(&mut groups).unwrap_err();
        assert!(err.contains("broken pipe"), "{err}");
        assert_eq!(hooked.load(Ordering::SeqCst), 1);
        assert!(
            !writer.is_ready(),
            "never ready again: the runner holds, no retries"
        );
        assert!(!groups.is_empty(), "what was not written stays undelivered");
        let left = groups.len();
        *pipe.budget.lock().unwrap() = usize::MAX;
        writer.flush(&mut groups).unwrap_err();
        assert_eq!(groups.len(), left, "nothing is written once closed");
        assert_eq!(hooked.load(Ordering::SeqCst), 1, "the hook runs once");
    }

    #[test]
    fn an_error_other_than_broken_pipe_does_not_close() {
        let pipe = Pipe::new(0, io::ErrorKind::Other);
        let hooked = Arc::new(AtomicUsize::new(0));
        let counter = hooked.clone();
        let mut writer =
            JsonLinesWriter::stream(Box::new(pipe.clone())).on_broken_pipe(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            });
        let mut groups = numbered(0, 2, 1);
        writer.flush(&mut groups).unwrap_err();
        assert!(writer.is_ready());
        assert_eq!(hooked.load(Ordering::SeqCst), 0);
        *pipe.budget.lock().unwrap() = usize::MAX;
        writer.flush(&mut groups).unwrap();
        assert_eq!(seqs(&pipe.data.lock().unwrap()), vec![0, 1]);
    }
}
