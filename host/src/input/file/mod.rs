//! `input_file` and the FileServer: one reader thread serves every file input of every
//! pipeline ("bus mode", as LoongCollector's). Starting or stopping an input only registers or
//! unregisters it with the server.
//!
//! Each round the thread (re)discovers files by glob (every `DISCOVERY_INTERVAL`), then reads
//! what is new in each tracked file, block by block, and hands each block's lines to the
//! pipeline's process queue. When that queue is full the file's batch waits and the file is
//! not read further: a slow pipeline pauses its own reading, nothing is dropped.

pub mod config;
pub mod discovery;
pub mod reader;

use std::collections::HashMap;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use tailrace::PipelineEventGroup;

pub use config::{FileInputSpec, InputFileConfig};
use reader::TailedFile;

/// How often the thread looks at its files when nothing else wakes it.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often globs are walked again for new files.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// Blocks read from one file per round before the next file gets its turn.
const BLOCKS_PER_ROUND: usize = 8;

/// Identifies a registered input.
pub type InputId = u64;

enum Command {
    Register {
        id: InputId,
        pipeline: String,
        spec: Box<FileInputSpec>,
        sink: Sender<PipelineEventGroup>,
    },
    Unregister {
        id: InputId,
        done: Sender<()>,
    },
    Shutdown,
}

/// Handle to the reader thread.
pub struct FileServer {
    commands: Sender<Command>,
    thread: Option<JoinHandle<()>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl FileServer {
    pub fn start() -> FileServer {
        let (commands, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("file-server".into())
            .spawn(move || Server::new(rx).run())
            .expect("spawn the file-server thread");
        FileServer {
            commands,
            thread: Some(thread),
            next_id: Default::default(),
        }
    }

    /// Starts collecting for a pipeline; its batches go to `sink`.
    pub fn register(
        &self,
        pipeline: &str,
        spec: FileInputSpec,
        sink: Sender<PipelineEventGroup>,
    ) -> InputId {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.commands.send(Command::Register {
            id,
            pipeline: pipeline.to_owned(),
            spec: Box::new(spec),
            sink,
        });
        id
    }

    /// Stops collecting for an input; returns once the thread no longer reads for it.
    pub fn unregister(&self, id: InputId) {
        let (done, wait) = crossbeam_channel::bounded(1);
        if self.commands.send(Command::Unregister { id, done }).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Input {
    pipeline: String,
    spec: FileInputSpec,
    sink: Sender<PipelineEventGroup>,
    files: HashMap<PathBuf, Tracked>,
    /// Files seen by the first discovery existed before the input started.
    first_discovery_done: bool,
}

struct Tracked {
    file: TailedFile,
    /// A batch the process queue had no room for.
    waiting: Option<PipelineEventGroup>,
}

struct Server {
    commands: Receiver<Command>,
    inputs: HashMap<InputId, Input>,
    hostname: Bytes,
    last_discovery: Option<Instant>,
}

impl Server {
    fn new(commands: Receiver<Command>) -> Server {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        Server {
            commands,
            inputs: HashMap::new(),
            hostname: Bytes::from(hostname),
            last_discovery: None,
        }
    }

    fn run(mut self) {
        loop {
            match self.commands.recv_timeout(POLL_INTERVAL) {
                Ok(command) => {
                    if !self.handle(command) {
                        return;
                    }
                    while let Ok(command) = self.commands.try_recv() {
                        if !self.handle(command) {
                            return;
                        }
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
            if self
                .last_discovery
                .is_none_or(|t| t.elapsed() >= DISCOVERY_INTERVAL)
            {
                self.discover();
                self.last_discovery = Some(Instant::now());
            }
            self.read_all();
        }
    }

    /// False on shutdown.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Register {
                id,
                pipeline,
                spec,
                sink,
            } => {
                self.inputs.insert(
                    id,
                    Input {
                        pipeline,
                        spec: *spec,
                        sink,
                        files: HashMap::new(),
                        first_discovery_done: false,
                    },
                );
                self.last_discovery = None;
                true
            }
            Command::Unregister { id, done } => {
                self.inputs.remove(&id);
                let _ = done.send(());
                true
            }
            Command::Shutdown => false,
        }
    }

    fn discover(&mut self) {
        for input in self.inputs.values_mut() {
            let existed_before = !input.first_discovery_done;
            input.first_discovery_done = true;
            for path in discovery::matched_files(&input.spec) {
                if input.files.contains_key(&path) {
                    continue;
                }
                let start = if existed_before && !input.spec.config.tailing_all_matched_files {
                    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    len.saturating_sub(input.spec.config.tail_size_kb * 1024)
                } else {
                    0
                };
                match TailedFile::open(path.clone(), start) {
                    Ok(file) => {
                        tracing::info!(pipeline = %input.pipeline, path = %path.display(), offset = start, "tailing file");
                        input.files.insert(
                            path,
                            Tracked {
                                file,
                                waiting: None,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::warn!(pipeline = %input.pipeline, path = %path.display(), "cannot open: {e}")
                    }
                }
            }
        }
    }

    fn read_all(&mut self) {
        for input in self.inputs.values_mut() {
            let mut gone = Vec::new();
            for (path, tracked) in input.files.iter_mut() {
                if !read_file(tracked, &input.sink, &self.hostname) {
                    gone.push(path.clone());
                }
            }
            for path in gone {
                input.files.remove(&path);
            }
        }
    }
}

/// Reads what is new in one file; false when the file should be forgotten.
fn read_file(tracked: &mut Tracked, sink: &Sender<PipelineEventGroup>, hostname: &Bytes) -> bool {
    if let Some(group) = tracked.waiting.take() {
        match sink.try_send(group) {
            Ok(()) => {}
            Err(TrySendError::Full(group)) => {
                tracked.waiting = Some(group);
                return true;
            }
            Err(TrySendError::Disconnected(_)) => return false,
        }
    }
    let file = &mut tracked.file;
    match file.len() {
        Ok(len) if len < file.offset => {
            tracing::info!(path = %file.path.display(), "file truncated, reading it again from the start");
            if file.rewind().is_err() {
                return false;
            }
        }
        Ok(_) => {}
        Err(_) => return false,
    }
    for _ in 0..BLOCKS_PER_ROUND {
        match file.read_lines(hostname) {
            Ok(None) => {
                if file.replaced() {
                    // Rename rotation: the old file is read to its end; the new one starts at 0.
                    tracing::info!(path = %file.path.display(), "file rotated, reading the new one");
                    match TailedFile::open(file.path.clone(), 0) {
                        Ok(new) => *file = new,
                        Err(_) => return false,
                    }
                    continue;
                }
                break;
            }
            Ok(Some(group)) if group.is_empty() => continue,
            Ok(Some(group)) => match sink.try_send(group) {
                Ok(()) => {}
                Err(TrySendError::Full(group)) => {
                    tracked.waiting = Some(group);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            },
            Err(e) => {
                tracing::warn!(path = %file.path.display(), "read failed: {e}");
                return false;
            }
        }
    }
    true
}
