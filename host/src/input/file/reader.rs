//! One tailed file: its identity, its offset, and reading whole lines from it in large blocks.
//! Lines become events whose contents are views into the block they were read into.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use tailrace::{LogEvent, PipelineEvent, PipelineEventGroup};

/// How much is read at once.
pub const READ_BLOCK: usize = 512 * 1024;

/// A file being tailed.
pub struct TailedFile {
    pub path: PathBuf,
    pub dev: u64,
    pub inode: u64,
    file: File,
    /// Offset of the first byte not yet turned into an event.
    pub offset: u64,
    /// Bytes after the last newline read so far (a line still being written).
    partial: BytesMut,
    path_tag: Bytes,
}

impl TailedFile {
    /// Opens `path`, starting at `offset`.
    pub fn open(path: PathBuf, offset: u64) -> std::io::Result<TailedFile> {
        let mut file = File::open(&path)?;
        let meta = file.metadata()?;
        let offset = offset.min(meta.len());
        file.seek(SeekFrom::Start(offset))?;
        Ok(TailedFile {
            path_tag: Bytes::from(path.to_string_lossy().into_owned()),
            path,
            dev: meta.dev(),
            inode: meta.ino(),
            file,
            offset,
            partial: BytesMut::new(),
        })
    }

    /// The size of the open file now.
    pub fn len(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether the path now names another file than the one open (rotated or re-created).
    pub fn replaced(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(meta) => meta.dev() != self.dev || meta.ino() != self.inode,
            Err(_) => false,
        }
    }

    /// Starts again at the beginning (the file was truncated).
    pub fn rewind(&mut self) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.offset = 0;
        self.partial.clear();
        Ok(())
    }

    /// Reads one block and returns its complete lines as a group (None at the end of the file).
    pub fn read_lines(&mut self, hostname: &Bytes) -> std::io::Result<Option<PipelineEventGroup>> {
        let start = self.partial.len();
        self.partial.resize(start + READ_BLOCK, 0);
        let n = self.file.read(&mut self.partial[start..])?;
        self.partial.truncate(start + n);
        if n == 0 {
            return Ok(None);
        }
        let Some(last_newline) = memchr::memrchr(b'\n', &self.partial) else {
            return Ok(Some(PipelineEventGroup::default()));
        };
        let block = self.partial.split_to(last_newline + 1).freeze();
        self.offset += block.len() as u64;
        let (secs, nanos) = now();
        let mut group = PipelineEventGroup::with_capacity(block.len() / 64);
        group.set_tag(Bytes::from_static(b"__path__"), self.path_tag.clone());
        group.set_tag(Bytes::from_static(b"__hostname__"), hostname.clone());
        let mut line_start = 0;
        for nl in memchr::memchr_iter(b'\n', &block) {
            let mut line = block.slice(line_start..nl);
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            line_start = nl + 1;
            let mut event = LogEvent::new(secs, Some(nanos));
            event.contents.push((Bytes::from_static(b"content"), line));
            group.events.push(PipelineEvent::Log(event));
        }
        group.source_buffer = Some(block);
        Ok(Some(group))
    }
}

fn now() -> (u32, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as u32, d.subsec_nanos())
}
