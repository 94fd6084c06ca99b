//! One tailed file: its identity, how far it was read, and reading whole lines from it in
//! large blocks. Lines become events whose contents are views into the block they were read
//! into: no copy, no per-line allocation but the event itself.
//!
//! Memory follows what is being read, not how many files are tailed: the size is looked at
//! before reading, so a file at its end allocates nothing, and a block is allocated for what
//! is there (up to `READ_BLOCK`), never zero-filled, and owned by the events made from it.
//! Between reads a file holds only the bytes of a line still being written.

use std::fs::File;
use std::io::{Read as _, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tailrace::processor::whole_block::BlockRule;
use tailrace::{LogEvent, PipelineEvent, PipelineEventGroup};

use crate::input::file::identity::{DevInode, Signature, SIGNATURE_MAX};
use crate::input::file::multiline::MultilineAssembler;

/// A block read from a file, as the owner of the `Bytes` its lines and fields are views of.
/// Every view counts a reference in the owner's header; aligned to two cache lines, the headers
/// of blocks read one after the other never share a line, so the reader counting the views
/// of one block and the processors those of the previous one do not contend for it.
#[repr(align(128))]
struct Block(Vec<u8>);

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// How much is read at once.
pub const READ_BLOCK: usize = 512 * 1024;

/// Metadata keys of the groups a file produces.
pub const META_PATH: &str = "file.path";
pub const META_DEV_INODE: &str = "file.dev_inode";
pub const META_OFFSET: &str = "file.offset";

/// Descriptors held open by tailed files in this process: what the server's bound on open
/// files counts.
static OPEN_DESCRIPTORS: AtomicUsize = AtomicUsize::new(0);

/// How many tailed files are open now.
pub fn open_descriptors() -> usize {
    OPEN_DESCRIPTORS.load(Ordering::Relaxed)
}

/// An open tailed file, counted in [`OPEN_DESCRIPTORS`] for as long as it is open.
struct OpenFile(File);

impl OpenFile {
    fn new(file: File) -> OpenFile {
        OPEN_DESCRIPTORS.fetch_add(1, Ordering::Relaxed);
        OpenFile(file)
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        OPEN_DESCRIPTORS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What reading a file gave.
pub enum Read {
    /// Complete lines, and the file offset just past them.
    Lines(PipelineEventGroup, u64),
    /// Data, but no complete line yet (a line still being written).
    Partial,
    /// Nothing new.
    Eof,
}

/// Per-read settings shared by every file of an input.
pub struct ReadSettings<'a> {
    pub hostname: &'a Bytes,
    /// A line longer than this is cut into pieces of this size.
    pub max_line: usize,
}

/// A file being tailed.
pub struct TailedFile {
    /// The path the file was opened under.
    pub path: PathBuf,
    pub id: DevInode,
    pub signature: Signature,
    /// None while closed for being idle (see [`TailedFile::close`]).
    file: Option<OpenFile>,
    /// Offset just past the last line turned into an event.
    pub offset: u64,
    /// Bytes after the last newline read so far (a line still being written): a view into
    /// the last block read, or empty (holding nothing).
    partial: Bytes,
    path_tag: Bytes,
    /// When new bytes last came.
    pub last_data: Instant,
    /// Lines cut because they were longer than the maximum.
    pub cut_lines: u64,
    /// Joins lines into multi-line events, when the input asks for it.
    /// Boxed: most files have none, and an assembler is 600 bytes (memory per tracked file).
    multiline: Option<Box<MultilineAssembler>>,
    /// The file is GBK: contents are transcoded to UTF-8.
    gbk: bool,
    /// The file's size when last looked at.
    last_size: u64,
    /// `AppendingLogPositionMeta`: events say where they start in the file.
    position_meta: bool,
    /// Whole-block mode: one event per block, ended where this rule allows.
    whole_block: Option<BlockRule>,
    /// Hand complete lines as `tailrace::Lines` rather than events (see
    /// [`TailedFile::set_hand_lines`]).
    hand_lines: bool,
}

impl TailedFile {
    /// Opens `path`, starting at `offset` (clamped to the file's size).
    pub fn open(
        path: PathBuf,
        offset: u64,
        multiline: Option<MultilineAssembler>,
    ) -> std::io::Result<TailedFile> {
        let mut file = File::open(&path)?;
        let meta = file.metadata()?;
        let offset = offset.min(meta.len());
        file.seek(SeekFrom::Start(offset))?;
        let signature = Signature::read(&file)?;
        Ok(TailedFile {
            path_tag: Bytes::from(path.to_string_lossy().into_owned()),
            path,
            id: DevInode::of(&meta),
            signature,
            file: Some(OpenFile::new(file)),
            offset,
            partial: Bytes::new(),
            last_data: Instant::now(),
            cut_lines: 0,
            multiline: multiline.map(Box::new),
            gbk: false,
            last_size: 0,
            position_meta: false,
            whole_block: None,
            hand_lines: false,
        })
    }

    /// The open file, reopened (and checked to be the same file) if it was closed.
    fn handle(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            let mut file = File::open(&self.path)?;
            if DevInode::of(&file.metadata()?) != self.id {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the path names another file now",
                ));
            }
            file.seek(SeekFrom::Start(self.read_pos()))?;
            self.file = Some(OpenFile::new(file));
        }
        Ok(&mut self.file.as_mut().expect("just opened").0)
    }

    /// Releases the descriptor of an idle file; the next read reopens it. Only for a file whose
    /// path still names it (a rotated-away file could not be found again).
    pub fn close(&mut self) {
        self.file = None;
    }

    /// Follows a closed file that was renamed while closed: it is read on from `path`.
    pub fn moved_to(&mut self, path: PathBuf) {
        self.path = path;
    }

    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// For a closed file: whether it changed since (grew, shrank, or its path names another
    /// file now) and must be looked at, which reopens it.
    pub fn changed_while_closed(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(meta) => DevInode::of(&meta) != self.id || meta.len() != self.read_pos(),
            Err(_) => true,
        }
    }

    /// For an idle file: whether it must be looked at (it grew or shrank, or its path names
    /// another file now). One or two stats, no read.
    pub fn has_news(&self) -> bool {
        match &self.file {
            Some(open) => {
                open.0
                    .metadata()
                    .map_or(true, |m| m.len() != self.read_pos())
                    || self.path_moved_on()
            }
            None => self.changed_while_closed(),
        }
    }

    /// The size of the file now.
    pub fn size(&mut self) -> std::io::Result<u64> {
        let size = self.handle()?.metadata()?.len();
        self.last_size = size;
        Ok(size)
    }

    /// The size last seen (by [`TailedFile::size`]).
    pub fn last_size(&self) -> u64 {
        self.last_size
    }

    /// Bytes of the file, as last seen, not read yet.
    pub fn unread_bytes(&self) -> u64 {
        self.last_size.saturating_sub(self.read_pos())
    }

    /// Where the next read starts.
    pub fn read_pos(&self) -> u64 {
        self.offset + self.partial.len() as u64
    }

    /// Whether the content was replaced under the same inode (copytruncate, even when it grew
    /// back past the old offset): the file shrank below what was read, or its first bytes
    /// changed. Also extends the signature while the file is shorter than its maximum.
    pub fn was_truncated(&mut self) -> std::io::Result<bool> {
        let size = self.size()?;
        if size < self.read_pos() {
            return Ok(true);
        }
        let signature = self.signature;
        if !signature.matches(self.handle()?)? {
            return Ok(true);
        }
        if self.signature.len < SIGNATURE_MAX && size > self.signature.len {
            self.signature = Signature::read(self.handle()?)?;
        }
        Ok(false)
    }

    /// Starts again at the beginning.
    pub fn rewind(&mut self) -> std::io::Result<()> {
        self.handle()?.seek(SeekFrom::Start(0))?;
        self.offset = 0;
        self.partial = Bytes::new();
        if let Some(ml) = &mut self.multiline {
            // What it held belongs to the content that is gone.
            ml.flush(&mut Vec::new());
        }
        self.signature = Signature::read(self.handle()?)?;
        Ok(())
    }

    /// Reads the file as GBK (`FileEncoding: gbk`): events carry UTF-8.
    pub fn set_gbk(&mut self, gbk: bool) {
        self.gbk = gbk;
    }

    /// `AppendingLogPositionMeta`: each event gets the content `__file_offset__` (where it
    /// starts in the file) and its group the tag `__inode__`, as iLogtail adds them.
    pub fn set_position_meta(&mut self, on: bool) {
        self.position_meta = on;
    }

    /// Reads the file in whole blocks (the first processor of its pipeline cuts them into
    /// events): each read gives one event holding what was read up to where `rule` lets a block
    /// end (see [`BlockRule::content`]).
    pub fn set_whole_block(&mut self, rule: Option<BlockRule>) {
        self.whole_block = rule;
    }

    /// Lines as `tailrace::Lines`, not events, for a pipeline whose one processor writes
    /// LogGroups from them (`Processor::takes_lines`): no event is made per line. Not for a
    /// multiline, GBK or position-meta file, whose events are made here.
    pub fn set_hand_lines(&mut self, on: bool) {
        self.hand_lines = on;
    }

    /// Whether the path now names another file than the one open (rotated, deleted, re-created).
    pub fn path_moved_on(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(meta) => DevInode::of(&meta) != self.id,
            Err(_) => true,
        }
    }

    /// Whether something read is not yet an event: a line still being written, or lines held
    /// by the multiline assembler.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
            || self
                .multiline
                .as_ref()
                .is_some_and(|m| m.pending_bytes() > 0)
    }

    /// Lines the multiline assembler dropped (`UnmatchedContentTreatment: discard`).
    pub fn discarded_lines(&self) -> u64 {
        self.multiline.as_ref().map_or(0, |m| m.discarded_lines())
    }

    /// The offset just past the last byte that is in an emitted event: what a delivery of
    /// everything emitted so far allows the checkpoint to advance to.
    pub fn emitted_offset(&self) -> u64 {
        self.offset - self.multiline.as_ref().map_or(0, |m| m.pending_bytes())
    }

    /// Reads one block and returns its complete lines as one group.
    pub fn read(&mut self, settings: &ReadSettings<'_>) -> std::io::Result<Read> {
        let pos = self.read_pos();
        self.handle()?;
        let file = &self.file.as_ref().expect("opened by handle()").0;
        // The size first: at the end (the common case of an idle file) nothing is allocated.
        // A file that shrank is seen by `was_truncated`.
        let size = file.metadata()?.len();
        if size <= pos {
            return Ok(Read::Eof);
        }
        let want = (size - pos).min(READ_BLOCK as u64) as usize;
        let start = self.partial.len();
        let mut block = Vec::with_capacity(start + want);
        block.extend_from_slice(&self.partial);
        // `read_to_end` reads into the spare capacity without zero-filling it first.
        let n = file.take(want as u64).read_to_end(&mut block)?;
        if n == 0 {
            return Ok(Read::Eof);
        }
        self.partial = Bytes::from_owner(Block(block));
        self.last_data = Instant::now();
        if let Some(rule) = &self.whole_block {
            let cut = match rule.cut(&self.partial, start) {
                Some(cut) => cut,
                // An event that outgrew the maximum goes as it is, up to its last newline.
                None if self.partial.len() >= settings.max_line => {
                    self.cut_lines += 1;
                    memchr::memrchr(b'\n', &self.partial).map_or(self.partial.len(), |i| i + 1)
                }
                None => return Ok(Read::Partial),
            };
            return Ok(self.emit_block(cut, settings));
        }
        let cut = match memchr::memrchr(b'\n', &self.partial[start..]) {
            Some(i) => start + i + 1,
            None if self.partial.len() >= settings.max_line => {
                self.cut_lines += 1;
                settings.max_line
            }
            None => return Ok(Read::Partial),
        };
        Ok(self.emit(cut, settings))
    }

    /// Emits what is held after the last newline as a line of its own: the writer stopped in
    /// the middle of a line and did not finish it in time (or the input is draining).
    pub fn flush_partial(
        &mut self,
        settings: &ReadSettings<'_>,
    ) -> Option<(PipelineEventGroup, u64)> {
        if !self.has_partial() {
            return None;
        }
        if self.whole_block.is_some() {
            return match self.emit_block(self.partial.len(), settings) {
                Read::Lines(group, end) => Some((group, end)),
                _ => None,
            };
        }
        match self.emit_with(self.partial.len(), settings, true) {
            Read::Lines(group, end) => Some((group, end)),
            _ => None,
        }
    }

    /// Turns the first `len` bytes held into events: one per line, the last one possibly
    /// without its newline (a cut or flushed line); lines longer than the maximum are cut.
    fn emit(&mut self, len: usize, settings: &ReadSettings<'_>) -> Read {
        self.emit_with(len, settings, false)
    }

    /// [`TailedFile::emit`]; with `flush_all`, the multiline assembler also gives up what it
    /// holds.
    fn emit_with(&mut self, len: usize, settings: &ReadSettings<'_>, flush_all: bool) -> Read {
        let (block, block_offset) = self.take(len);
        // Built per block, not kept per file: with thousands of files, kept scratch vectors
        // would cost what the blocks no longer do.
        let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
        let mut line_start = 0;
        for nl in memchr::memchr_iter(b'\n', &block) {
            let mut end = nl;
            if end > line_start && block[end - 1] == b'\r' {
                end -= 1;
            }
            cut_long(line_start, end, settings.max_line, &mut |s, e| {
                ranges.push(s..e)
            });
            line_start = nl + 1;
        }
        if line_start < block.len() {
            cut_long(line_start, block.len(), settings.max_line, &mut |s, e| {
                ranges.push(s..e)
            });
        }
        let (secs, nanos) = now();
        // The interned name, as processors hold it: a key compared with theirs is then the
        // same pointer (see `tailrace::processor::field_names`).
        let content_key = tailrace::processor::field_names::field_name("content");
        if self.multiline.is_none() {
            let lines = tailrace::Lines {
                block: block.clone(),
                offset: block_offset,
                key: content_key,
                time: secs,
                time_ns: Some(nanos),
                ranges,
            };
            // As lines when the pipeline's processor takes them and nothing here has to change
            // the events (transcoding, offsets as contents).
            let group = if self.hand_lines && !self.gbk && !self.position_meta {
                let mut group = self.new_group(0, block_offset, settings);
                group.lines = Some(Box::new(lines));
                group
            } else {
                let mut group = self.new_group(lines.len(), block_offset, settings);
                lines.push_events(&mut group.events);
                group
            };
            return self.finish(group, block);
        }
        let mut group = self.new_group(ranges.len(), block_offset, settings);
        let event =
            |content: Bytes, position| line_event(secs, nanos, &content_key, content, position);
        let ml = self.multiline.as_mut().expect("checked just above");
        // Events that are not views into this block began in earlier ones: the pending
        // event carried over, which starts this far before the block (and, when it
        // comes out as unmatched lines, each line follows the one before).
        let mut carried_at = block_offset.saturating_sub(ml.pending_bytes());
        let mut joined = Vec::new();
        ml.push_block(&block, &ranges, &mut joined);
        if flush_all {
            ml.flush(&mut joined);
        }
        let base = block.as_ptr() as usize;
        for content in joined {
            // In-block events are views into the block: their offset is where they start.
            let at = (content.as_ptr() as usize).wrapping_sub(base);
            let len = content.len() as u64;
            let position = if at < block.len() {
                (block_offset + at as u64, len)
            } else {
                let position = (carried_at, len);
                carried_at += len + 1;
                position
            };
            group.events.push(event(content, Some(position)));
        }
        self.finish(group, block)
    }

    /// Takes the first `len` bytes held, to be emitted; with the offset they start at.
    fn take(&mut self, len: usize) -> (Bytes, u64) {
        let block = self.partial.split_to(len);
        if self.partial.is_empty() {
            // Nothing held back: do not keep the block alive through an empty view.
            self.partial = Bytes::new();
        }
        let block_offset = self.offset;
        self.offset += len as u64;
        (block, block_offset)
    }

    /// An empty group for events read from `block_offset` on: the file's tags and metadata.
    fn new_group(
        &self,
        events: usize,
        block_offset: u64,
        settings: &ReadSettings<'_>,
    ) -> PipelineEventGroup {
        let mut group = PipelineEventGroup::with_capacity(events);
        group.set_tag(Bytes::from_static(b"__path__"), self.path_tag.clone());
        group.set_tag(
            Bytes::from_static(b"__hostname__"),
            settings.hostname.clone(),
        );
        group.set_metadata(META_PATH, self.path.to_string_lossy());
        group.set_metadata(META_DEV_INODE, format!("{}:{}", self.id.dev, self.id.inode));
        group.set_metadata(META_OFFSET, block_offset.to_string());
        group
    }

    /// Transcodes the events of `group` (GBK files) and hands it the block they point into.
    fn finish(&self, mut group: PipelineEventGroup, block: Bytes) -> Read {
        if self.gbk {
            for event in &mut group.events {
                if let PipelineEvent::Log(log) = event {
                    for (_, value) in log.contents.iter_mut() {
                        *value = gbk_to_utf8(value);
                    }
                }
            }
        }
        if self.position_meta {
            self.add_position_meta(&mut group);
        }
        group.source_buffer = Some(block);
        Read::Lines(group, self.emitted_offset())
    }

    /// `AppendingLogPositionMeta`: the inode as the group's tag `__inode__` (shown as
    /// `__tag__:__inode__`), each event's offset in the file as its content `__file_offset__`.
    fn add_position_meta(&self, group: &mut PipelineEventGroup) {
        group.set_tag(
            Bytes::from_static(b"__inode__"),
            Bytes::from(self.id.inode.to_string()),
        );
        let key = Bytes::from_static(b"__file_offset__");
        for event in &mut group.events {
            if let PipelineEvent::Log(log) = event {
                if let Some((offset, _)) = log.position {
                    log.contents
                        .push((key.clone(), Bytes::from(offset.to_string())));
                }
            }
        }
    }

    /// Whole-block mode: the first `len` bytes held become one event, the block as `content`
    /// (without its last newline when blocks end at line ends: the newline still counts in
    /// its position and the offset).
    fn emit_block(&mut self, len: usize, settings: &ReadSettings<'_>) -> Read {
        let (block, block_offset) = self.take(len);
        let content = match &self.whole_block {
            Some(rule) => rule.content(&block),
            None => block.clone(),
        };
        let (secs, nanos) = now();
        let mut event = LogEvent::new(secs, Some(nanos));
        event
            .contents
            .push((Bytes::from_static(b"content"), content));
        event.position = Some((block_offset, len as u64));
        let mut group = self.new_group(1, block_offset, settings);
        group.events.push(PipelineEvent::Log(event));
        self.finish(group, block)
    }
}

/// GBK bytes as UTF-8; ASCII stays a view, anything else is transcoded (invalid sequences
/// become U+FFFD, nothing is dropped).
fn gbk_to_utf8(bytes: &Bytes) -> Bytes {
    match encoding_rs::GBK.decode_without_bom_handling(bytes).0 {
        std::borrow::Cow::Borrowed(_) => bytes.clone(),
        std::borrow::Cow::Owned(text) => Bytes::from(text),
    }
}

/// Calls `piece(start, end)` for `[start, end)` cut into pieces of at most `max` bytes.
fn cut_long(mut start: usize, end: usize, max: usize, piece: &mut dyn FnMut(usize, usize)) {
    if end == start {
        piece(start, end);
        return;
    }
    while start < end {
        let stop = (start + max.max(1)).min(end);
        piece(start, stop);
        start = stop;
    }
}

fn now() -> (u32, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as u32, d.subsec_nanos())
}

/// The event of one line. Inlined where it is pushed, so that the event is written in place
/// in the group's list rather than built aside and copied there (a call to `memcpy` per line,
/// a tenth of the reader's time).
#[inline(always)]
fn line_event(
    secs: u32,
    nanos: u32,
    key: &Bytes,
    content: Bytes,
    position: Option<(u64, u64)>,
) -> PipelineEvent {
    let mut contents = tailrace::event::Contents::new();
    contents.push((key.clone(), content));
    PipelineEvent::Log(LogEvent {
        time: secs,
        time_ns: Some(nanos),
        contents,
        position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn contents(group: &PipelineEventGroup) -> Vec<Vec<u8>> {
        group
            .events
            .iter()
            .map(|e| match e {
                PipelineEvent::Log(l) => l.content(b"content").unwrap().to_vec(),
                _ => panic!(),
            })
            .collect()
    }

    /// Each event's `__file_offset__`, in order.
    fn offsets(group: &PipelineEventGroup) -> Vec<u64> {
        group
            .events
            .iter()
            .map(|e| match e {
                PipelineEvent::Log(l) => {
                    std::str::from_utf8(l.content(b"__file_offset__").unwrap())
                        .unwrap()
                        .parse()
                        .unwrap()
                }
                _ => panic!(),
            })
            .collect()
    }

    #[test]
    fn position_meta_gives_each_event_its_offset_also_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"S one\n  more\nS two\n").unwrap();
        let host = Bytes::from_static(b"h");
        let settings = ReadSettings {
            hostname: &host,
            max_line: 1024,
        };
        let config = serde_json::from_value(serde_json::json!({"StartPattern": "S .*"})).unwrap();
        let multiline = MultilineAssembler::new(&config).unwrap();
        let mut file = TailedFile::open(path.clone(), 0, multiline).unwrap();
        file.set_position_meta(true);
        let Read::Lines(group, _) = file.read(&settings).unwrap() else {
            panic!()
        };
        assert_eq!(contents(&group), vec![b"S one\n  more".to_vec()]);
        assert_eq!(offsets(&group), vec![0]);
        let inode =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap()).to_string();
        assert_eq!(group.tag(b"__inode__").unwrap().as_ref(), inode.as_bytes());
        // "S two" waited in the first block; it comes out with the next one, at its own offset.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"  three\nS four\n")
            .unwrap();
        let Read::Lines(group, _) = file.read(&settings).unwrap() else {
            panic!()
        };
        assert_eq!(contents(&group), vec![b"S two\n  three".to_vec()]);
        assert_eq!(offsets(&group), vec![13]);
        let (group, _) = file.flush_partial(&settings).unwrap();
        assert_eq!(contents(&group), vec![b"S four".to_vec()]);
        assert_eq!(offsets(&group), vec![27]);
    }

    #[test]
    fn reads_whole_lines_and_waits_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"one\r\ntwo\nthr").unwrap();
        let host = Bytes::from_static(b"h");
        let settings = ReadSettings {
            hostname: &host,
            max_line: 1024,
        };
        let mut file = TailedFile::open(path.clone(), 0, None).unwrap();
        let Read::Lines(group, end) = file.read(&settings).unwrap() else {
            panic!()
        };
        assert_eq!(contents(&group), vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(end, 9);
        let PipelineEvent::Log(first) = &group.events[0] else {
            panic!()
        };
        assert_eq!(first.position, Some((0, 5)));
        assert!(matches!(file.read(&settings).unwrap(), Read::Eof));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"ee\n")
            .unwrap();
        let Read::Lines(group, end) = file.read(&settings).unwrap() else {
            panic!()
        };
        assert_eq!(contents(&group), vec![b"three".to_vec()]);
        assert_eq!(end, 15);
    }

    #[test]
    fn handed_lines_are_the_events_read_otherwise_unless_the_reader_changes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let data: &[u8] = b"one\r\n\ntwo,2\n\xff\xfe\nthree is longer than ten\nlast";
        std::fs::write(&path, data).unwrap();
        let host = Bytes::from_static(b"h");
        let settings = ReadSettings {
            hostname: &host,
            max_line: 10,
        };
        let read_all = |hand_lines: bool, position_meta: bool| {
            let mut file = TailedFile::open(path.clone(), 0, None).unwrap();
            file.set_hand_lines(hand_lines);
            file.set_position_meta(position_meta);
            let Read::Lines(group, end) = file.read(&settings).unwrap() else {
                panic!()
            };
            let (last, _) = file.flush_partial(&settings).unwrap();
            assert_eq!(end, data.len() as u64 - 4);
            (group, last)
        };
        let (events, events_last) = read_all(false, false);
        assert!(events.lines.is_none() && !events.events.is_empty());
        let (lines, lines_last) = read_all(true, false);
        assert!(lines.events.is_empty());
        assert_eq!(lines.len(), events.len());
        assert_eq!(lines.tags, events.tags);
        assert_eq!(lines.metadata, events.metadata);
        for (mut handed, mut made) in [(lines, events), (lines_last, events_last)] {
            handed.make_events();
            // The read time differs from one read to the next.
            for g in [&mut handed, &mut made] {
                for log in g.logs_mut() {
                    log.time_ns = None;
                    log.time = 0;
                }
            }
            assert_eq!(handed.events, made.events);
        }
        // Offsets as contents are made by the reader: events then.
        let (with_offsets, _) = read_all(true, true);
        assert!(with_offsets.lines.is_none());
        assert_eq!(offsets(&with_offsets)[..3], [0, 5, 6]);
    }

    /// Counts allocations made on the thread that turned counting on (the test's own).
    struct CountingAlloc;

    thread_local! {
        static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        static ALLOCATED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            if COUNTING.with(|c| c.get()) {
                ALLOCATED.with(|a| a.set(a.get() + layout.size()));
            }
            std::alloc::System.alloc(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            std::alloc::System.dealloc(ptr, layout)
        }
    }

    #[global_allocator]
    static ALLOC: CountingAlloc = CountingAlloc;

    /// Bytes allocated on this thread while `f` runs.
    fn allocated_by(f: impl FnOnce()) -> usize {
        ALLOCATED.with(|a| a.set(0));
        COUNTING.with(|c| c.set(true));
        f();
        COUNTING.with(|c| c.set(false));
        ALLOCATED.with(|a| a.get())
    }

    #[test]
    fn a_file_at_its_end_allocates_nothing_and_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"one line\n").unwrap();
        let host = Bytes::from_static(b"h");
        let settings = ReadSettings {
            hostname: &host,
            max_line: 1024,
        };
        let mut file = TailedFile::open(path.clone(), 0, None).unwrap();
        let mut group = None;
        // A one-line file costs a block of its size, not READ_BLOCK.
        let first = allocated_by(|| match file.read(&settings).unwrap() {
            Read::Lines(g, _) => group = Some(g),
            _ => panic!("no line"),
        });
        assert!(
            first < 8 * 1024,
            "{first} bytes allocated for a 9-byte file"
        );
        assert_eq!(group.unwrap().events.len(), 1);
        assert!(!file.has_partial());
        for _ in 0..3 {
            let n = allocated_by(|| assert!(matches!(file.read(&settings).unwrap(), Read::Eof)));
            assert_eq!(n, 0, "bytes allocated at the end of the file");
        }
        // A line still being written is held, and only it.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"half")
            .unwrap();
        assert!(matches!(file.read(&settings).unwrap(), Read::Partial));
        assert_eq!(file.partial.len(), 4);
        assert_eq!(
            allocated_by(|| assert!(matches!(file.read(&settings).unwrap(), Read::Eof))),
            0
        );
    }

    #[test]
    fn long_lines_are_cut_and_partial_lines_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"abcdefghij\nxyz").unwrap();
        let host = Bytes::from_static(b"h");
        let settings = ReadSettings {
            hostname: &host,
            max_line: 4,
        };
        let mut file = TailedFile::open(path, 0, None).unwrap();
        let Read::Lines(group, _) = file.read(&settings).unwrap() else {
            panic!()
        };
        assert_eq!(
            contents(&group),
            vec![b"abcd".to_vec(), b"efgh".to_vec(), b"ij".to_vec()]
        );
        assert!(file.has_partial());
        let (group, end) = file.flush_partial(&settings).unwrap();
        assert_eq!(contents(&group), vec![b"xyz".to_vec()]);
        assert_eq!(end, 14);
    }

    fn append(path: &std::path::Path, data: &[u8]) {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(data)
            .unwrap();
    }

    /// A Java stack trace written in two parts: the reader never hands out half of it.
    #[test]
    fn whole_blocks_hold_an_event_that_goes_on_in_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(
            &path,
            b"2024-01-01 one\n2024-01-02 two failed\n\tat a.B(B.java:1)\n",
        )
        .unwrap();
        let host = Bytes::from_static(b"h");
        let settings = ReadSettings {
            hostname: &host,
            max_line: 1024,
        };
        let options = serde_json::json!({"SplitRegex": r"\d{4}-\d{2}-\d{2}.*"});
        let rule = tailrace::processor::whole_block::block_rule(
            "processor_split_log_regex",
            options.as_object().unwrap(),
        )
        .unwrap()
        .unwrap();
        let mut file = TailedFile::open(path.clone(), 0, None).unwrap();
        file.set_whole_block(Some(rule));
        let Read::Lines(group, end) = file.read(&settings).unwrap() else {
            panic!()
        };
        // One event: the block up to the last event start, without its newline.
        assert_eq!(contents(&group), vec![b"2024-01-01 one".to_vec()]);
        assert_eq!(end, 15);
        let PipelineEvent::Log(block) = &group.events[0] else {
            panic!()
        };
        assert_eq!(block.position, Some((0, 15)));
        assert!(file.has_partial());
        // The rest of the trace, then the next event: the trace goes out whole.
        append(&path, b"\tat a.C(C.java:2)\n");
        assert!(matches!(file.read(&settings).unwrap(), Read::Partial));
        append(&path, b"2024-01-03 three\n");
        let Read::Lines(group, end) = file.read(&settings).unwrap() else {
            panic!()
        };
        assert_eq!(
            contents(&group),
            vec![b"2024-01-02 two failed\n\tat a.B(B.java:1)\n\tat a.C(C.java:2)".to_vec()]
        );
        assert_eq!(end, 15 + 58);
        // The last event goes when the writer is done (the flush timeout, or the end of a
        // --once run).
        let (group, end) = file.flush_partial(&settings).unwrap();
        assert_eq!(contents(&group), vec![b"2024-01-03 three".to_vec()]);
        assert_eq!(end, std::fs::metadata(&path).unwrap().len());
        assert!(!file.has_partial());
    }

    #[test]
    fn whole_blocks_by_line_end_after_the_last_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"a\r\nb\nhalf").unwrap();
        let host = Bytes::from_static(b"h");
        let settings = ReadSettings {
            hostname: &host,
            max_line: 1024,
        };
        let mut file = TailedFile::open(path, 0, None).unwrap();
        file.set_whole_block(Some(tailrace::processor::whole_block::BlockRule::Line));
        let Read::Lines(group, end) = file.read(&settings).unwrap() else {
            panic!()
        };
        assert_eq!(contents(&group), vec![b"a\r\nb".to_vec()]);
        assert_eq!(end, 5);
    }

    #[test]
    fn gbk_files_become_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        // "中文 ok" in GBK
        std::fs::write(&path, b"\xd6\xd0\xce\xc4 ok\nascii\n").unwrap();
        let host = Bytes::from_static(b"h");
        let settings = ReadSettings {
            hostname: &host,
            max_line: 1024,
        };
        let mut file = TailedFile::open(path, 0, None).unwrap();
        file.set_gbk(true);
        let Read::Lines(group, _) = file.read(&settings).unwrap() else {
            panic!()
        };
        assert_eq!(
            contents(&group),
            vec!["中文 ok".as_bytes().to_vec(), b"ascii".to_vec()]
        );
    }

    #[test]
    fn closed_files_reopen_where_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"one\n").unwrap();
        let host = Bytes::from_static(b"h");
        let settings = ReadSettings {
            hostname: &host,
            max_line: 1024,
        };
        let mut file = TailedFile::open(path.clone(), 0, None).unwrap();
        assert!(matches!(file.read(&settings).unwrap(), Read::Lines(..)));
        file.close();
        assert!(!file.is_open());
        assert!(!file.changed_while_closed());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"two\n")
            .unwrap();
        assert!(file.changed_while_closed());
        let Read::Lines(group, _) = file.read(&settings).unwrap() else {
            panic!()
        };
        assert_eq!(contents(&group), vec![b"two".to_vec()]);
        assert!(file.is_open());
    }

    #[test]
    fn truncation_is_seen_even_when_the_file_grew_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"0001 first\n").unwrap();
        let host = Bytes::from_static(b"h");
        let settings = ReadSettings {
            hostname: &host,
            max_line: 1024,
        };
        let mut file = TailedFile::open(path.clone(), 0, None).unwrap();
        assert!(matches!(file.read(&settings).unwrap(), Read::Lines(..)));
        assert!(!file.was_truncated().unwrap());
        // copytruncate, then more than before written again
        std::fs::write(&path, b"0002 second, longer line\n").unwrap();
        assert!(file.was_truncated().unwrap());
        file.rewind().unwrap();
        let Read::Lines(group, _) = file.read(&settings).unwrap() else {
            panic!()
        };
        assert_eq!(contents(&group), vec![b"0002 second, longer line".to_vec()]);
    }
}
