//! `input_file` and the FileServer: one reader thread serves every file input of every
//! pipeline ("bus mode", as LoongCollector's). Starting or stopping an input only registers or
//! unregisters it with the server.
//!
//! Each round the thread applies delivery acknowledgements (advancing checkpoints), discovers
//! files by glob (every `DISCOVERY_INTERVAL`), then reads what is new in each tracked file,
//! block by block, and hands each block's lines to the pipeline's process queue. When that
//! queue is full the file's batch waits and the file is not read further: a slow pipeline
//! pauses its own reading, nothing is dropped.
//!
//! Files are followed through rename rotation (the old file is read to its end through the open
//! descriptor, then the new one from 0), deletion (read to the end, the descriptor released
//! once everything is delivered and a grace period passed), copytruncate (the file shrank, or
//! its first bytes changed: read again from 0) and inode reuse (a checkpoint whose signature
//! does not match is not resumed).

pub mod checkpoint;
pub mod config;
pub mod discovery;
pub mod identity;
pub mod multiline;
pub mod reader;
pub mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use tailrace::{DeliveryHook, PipelineEventGroup};

use checkpoint::{CheckpointStore, FileCheckpoint};
pub use config::{FileInputSpec, InputFileConfig};
use identity::DevInode;
use reader::{Read, ReadSettings, TailedFile};

/// How often the thread looks at its files when nothing else wakes it.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How soon a batch that found its process queue full is offered again.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(2);
/// How often globs are walked again for new files.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// Blocks read from one file per round before the next file gets its turn.
const BLOCKS_PER_ROUND: usize = 16;
/// How long a line without its newline waits before it is sent as it is (iLogtail's default).
const PARTIAL_LINE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a deleted or rotated-away file is kept open after it was read to its end.
const RELEASE_GRACE: Duration = Duration::from_secs(3);
/// How often checkpoints are written when they changed.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// A file with no new data for this long has its descriptor closed (reopened when it grows).
const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// Open descriptors the server keeps at most, beyond which files idle for a second are closed.
const MAX_OPEN_FILES: usize = 1024;
/// How often a closed file is checked for new data.
const CLOSED_CHECK: Duration = Duration::from_secs(1);
/// Longest line; longer ones are cut into pieces of this size.
const MAX_LINE: usize = 512 * 1024;

/// Where an input's batches go: the pipeline's process queue. `try_send` never blocks; Err hands the batch back when the queue has no room (or is closed).
pub trait BatchSink: Send {
    fn try_send(&self, group: PipelineEventGroup) -> Result<(), PipelineEventGroup>;
}

impl BatchSink for Sender<PipelineEventGroup> {
    fn try_send(&self, group: PipelineEventGroup) -> Result<(), PipelineEventGroup> {
        Sender::try_send(self, group).map_err(|e| e.into_inner())
    }
}

/// Identifies a registered input.
pub type InputId = u64;

enum Command {
    Register {
        id: InputId,
        pipeline: String,
        spec: Box<FileInputSpec>,
        sink: Box<dyn BatchSink>,
    },
    Unregister {
        id: InputId,
        done: Sender<()>,
    },
    /// Something changed in a watched directory: look for new files now.
    Wake,
    /// Whether every file is read to its end and every batch delivered (for `--once`).
    Drained {
        reply: Sender<bool>,
    },
    Shutdown,
}

/// Handle to the reader thread.
pub struct FileServer {
    commands: Sender<Command>,
    thread: Option<JoinHandle<()>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// How the server behaves.
pub struct FileServerOptions {
    pub data_dir: PathBuf,
    /// `--once`: lines without their newline are sent at once at the end of a file.
    pub once: bool,
    /// Where the checkpoint store reports whether its last save failed.
    pub checkpoint_health: checkpoint::SaveHealth,
}

impl FileServer {
    pub fn start(options: FileServerOptions) -> FileServer {
        let (commands, rx) = crossbeam_channel::unbounded();
        let woken = Arc::new(AtomicBool::new(false));
        let server = Server::new(rx, options, commands.clone(), woken.clone());
        let thread = std::thread::Builder::new()
            .name("file-server".into())
            .spawn(move || server.run())
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
        sink: Box<dyn BatchSink>,
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

    /// Whether everything matched was read to its end and delivered.
    pub fn drained(&self) -> bool {
        let (reply, wait) = crossbeam_channel::bounded(1);
        self.commands.send(Command::Drained { reply }).is_ok()
            && wait.recv_timeout(Duration::from_secs(5)).unwrap_or(false)
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

/// An acknowledgement: everything of file `file` before `offset` was delivered.
struct Ack {
    input: InputId,
    file: u64,
    offset: u64,
}

/// The hook a group carries back to the server.
struct FileAck {
    ack: Ack,
    tx: Sender<Ack>,
}

impl DeliveryHook for FileAck {
    fn delivered(&self) {
        let _ = self.tx.send(Ack { ..self.ack });
    }
}

struct Input {
    pipeline: String,
    spec: FileInputSpec,
    /// inotify on the globs' directories (dropped with the input).
    _watch: watch::DirWatch,
    sink: Box<dyn BatchSink>,
    /// Tracked files by their own id (a file keeps its id through renames).
    files: HashMap<u64, Tracked>,
    /// Files seen by the first discovery existed before the input started.
    first_discovery_done: bool,
}

struct Tracked {
    file: TailedFile,
    /// A batch the process queue had no room for.
    waiting: Option<PipelineEventGroup>,
    /// Everything before this offset was delivered.
    committed: u64,
    /// The path no longer names this file (rotated away or deleted): read it to its end, then
    /// release it.
    detached: bool,
    /// When it was last seen at the end of its data.
    at_eof_since: Option<Instant>,
    /// When its (closed) file was last checked for changes.
    last_checked: Instant,
}

struct Server {
    commands: Receiver<Command>,
    options: FileServerOptions,
    inputs: HashMap<InputId, Input>,
    hostname: Bytes,
    last_discovery: Option<Instant>,
    store: CheckpointStore,
    last_checkpoint: Instant,
    acks_tx: Sender<Ack>,
    acks_rx: Receiver<Ack>,
    next_file: u64,
    /// Where directory watches send their wake-ups, and their coalescing flag.
    wake_tx: Sender<Command>,
    woken: Arc<AtomicBool>,
}

impl Server {
    fn new(
        commands: Receiver<Command>,
        options: FileServerOptions,
        wake_tx: Sender<Command>,
        woken: Arc<AtomicBool>,
    ) -> Server {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let (acks_tx, acks_rx) = crossbeam_channel::unbounded();
        Server {
            commands,
            store: CheckpointStore::load(&options.data_dir)
                .with_health(options.checkpoint_health.clone()),
            options,
            inputs: HashMap::new(),
            hostname: Bytes::from(hostname),
            last_discovery: None,
            last_checkpoint: Instant::now(),
            acks_tx,
            acks_rx,
            next_file: 0,
            wake_tx,
            woken,
        }
    }

    fn run(mut self) {
        let mut wait = POLL_INTERVAL;
        loop {
            match self.commands.recv_timeout(wait) {
                Ok(command) => {
                    if !self.handle(command) {
                        break;
                    }
                    while let Ok(command) = self.commands.try_recv() {
                        if !self.handle(command) {
                            self.apply_acks();
                            self.save_checkpoints();
                            return;
                        }
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            self.apply_acks();
            if self
                .last_discovery
                .is_none_or(|t| t.elapsed() >= DISCOVERY_INTERVAL)
            {
                self.discover();
                self.last_discovery = Some(Instant::now());
            }
            self.read_all();
            self.close_idle();
            wait = self.next_wait();
            if self.last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
                self.save_checkpoints();
            }
        }
        self.apply_acks();
        self.save_checkpoints();
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
                let wake_tx = self.wake_tx.clone();
                let watch =
                    watch::DirWatch::new(&discovery::roots(&spec), self.woken.clone(), move || {
                        let _ = wake_tx.send(Command::Wake);
                    });
                self.inputs.insert(
                    id,
                    Input {
                        pipeline,
                        _watch: watch,
                        spec: *spec,
                        sink,
                        files: HashMap::new(),
                        first_discovery_done: false,
                    },
                );
                self.last_discovery = None;
            }
            Command::Unregister { id, done } => {
                self.apply_acks();
                self.inputs.remove(&id);
                self.save_checkpoints();
                let _ = done.send(());
            }
            Command::Drained { reply } => {
                self.apply_acks();
                let drained = self.last_discovery.is_some()
                    && self.inputs.values().all(|input| {
                        input.first_discovery_done
                            && input.files.values().all(|t| {
                                t.waiting.is_none()
                                    && t.at_eof_since.is_some()
                                    && !t.file.has_partial()
                                    && t.committed == t.file.emitted_offset()
                            })
                    });
                let _ = reply.send(drained);
            }
            Command::Wake => {
                self.woken.store(false, Ordering::Release);
                self.last_discovery = None;
            }
            Command::Shutdown => return false,
        }
        true
    }

    fn apply_acks(&mut self) {
        for ack in self.acks_rx.try_iter() {
            let Some(input) = self.inputs.get_mut(&ack.input) else {
                continue;
            };
            let Some(tracked) = input.files.get_mut(&ack.file) else {
                continue;
            };
            if ack.offset > tracked.committed && ack.offset <= tracked.file.emitted_offset() {
                tracked.committed = ack.offset;
                self.store.put(checkpoint_of(&input.pipeline, tracked));
            }
        }
    }

    fn save_checkpoints(&mut self) {
        self.last_checkpoint = Instant::now();
        if let Err(e) = self.store.save() {
            tracing::error!(
                "cannot write checkpoints under {}: {e}",
                self.options.data_dir.display()
            );
        }
    }

    fn discover(&mut self) {
        let tracked_before = self.next_file;
        for input in self.inputs.values_mut() {
            let existed_before = !input.first_discovery_done;
            input.first_discovery_done = true;
            let mut attached: HashMap<PathBuf, DevInode> = input
                .files
                .values()
                .filter(|t| !t.detached)
                .map(|t| (t.file.path.clone(), t.file.id))
                .collect();
            let mut found = discovery::matched_files(&input.spec);
            if existed_before {
                forget_vanished(&mut self.store, &input.pipeline);
                // After a restart, files rotated away while we were down are found through
                // their checkpoints, so that their last lines are not lost.
                found.extend(rotated_while_down(&self.store, &input.pipeline, &found));
            }
            for path in found {
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                let id = DevInode::of(&meta);
                if attached.get(&path) == Some(&id) || input.files.values().any(|t| t.file.id == id)
                {
                    continue;
                }
                let (size, once) = (meta.len(), self.options.once);
                let start = start_offset(&self.store, input, &path, id, size, existed_before, once);
                let multiline = input.spec.multiline();
                match TailedFile::open(path.clone(), start, multiline) {
                    Ok(mut file) => {
                        file.set_gbk(input.spec.is_gbk());
                        tracing::info!(pipeline = %input.pipeline, path = %path.display(), offset = start, "tailing file");
                        attached.insert(path, file.id);
                        let tracked = Tracked {
                            committed: file.offset,
                            file,
                            waiting: None,
                            detached: false,
                            at_eof_since: None,
                            last_checked: Instant::now(),
                        };
                        self.store.put(checkpoint_of(&input.pipeline, &tracked));
                        input.files.insert(self.next_file, tracked);
                        self.next_file += 1;
                    }
                    Err(e) => {
                        tracing::warn!(pipeline = %input.pipeline, path = %path.display(), "cannot open: {e}")
                    }
                }
            }
        }
        if self.next_file != tracked_before {
            // A new file's checkpoint is written at once: if the daemon dies before the next
            // periodic save and the file is rotated meanwhile, the checkpoint is how it is
            // found again after the restart.
            self.save_checkpoints();
        }
    }

    /// How long to wait before the next round: not at all while a file has more to read, a
    /// moment while a batch waits for room in its queue, else the poll interval.
    fn next_wait(&self) -> Duration {
        let files = || self.inputs.values().flat_map(|i| i.files.values());
        if files().any(|t| t.waiting.is_none() && t.at_eof_since.is_none()) {
            Duration::ZERO
        } else if files().any(|t| t.waiting.is_some()) {
            QUEUE_FULL_RETRY
        } else {
            POLL_INTERVAL
        }
    }

    /// Bounds open descriptors: files idle for `IDLE_CLOSE` are closed, and while more than
    /// `MAX_OPEN_FILES` are open, the longest-idle ones idle for a second are closed too. Only
    /// files whose path still names them, fully handed on, with nothing held back.
    fn close_idle(&mut self) {
        let closable = |t: &Tracked, idle: Duration| {
            t.file.is_open()
                && !t.detached
                && t.waiting.is_none()
                && !t.file.has_partial()
                && t.at_eof_since.is_some_and(|since| since.elapsed() >= idle)
        };
        let mut open = 0;
        for t in self.inputs.values_mut().flat_map(|i| i.files.values_mut()) {
            if closable(t, IDLE_CLOSE) {
                t.file.close();
            } else if t.file.is_open() {
                open += 1;
            }
        }
        if open <= MAX_OPEN_FILES {
            return;
        }
        let mut idle: Vec<&mut Tracked> = self
            .inputs
            .values_mut()
            .flat_map(|i| i.files.values_mut())
            .filter(|t| closable(t, Duration::from_secs(1)))
            .collect();
        idle.sort_by_key(|t| t.file.last_data);
        for t in idle.into_iter().take(open - MAX_OPEN_FILES) {
            t.file.close();
        }
    }

    fn read_all(&mut self) {
        let settings = ReadSettings {
            hostname: &self.hostname,
            max_line: MAX_LINE,
        };
        for (&input_id, input) in self.inputs.iter_mut() {
            let mut released = Vec::new();
            for (&file_id, tracked) in input.files.iter_mut() {
                let ctx = ReadCtx {
                    settings: &settings,
                    sink: input.sink.as_ref(),
                    acks: &self.acks_tx,
                    input: input_id,
                    file: file_id,
                    once: self.options.once,
                };
                if !read_file(tracked, &ctx) {
                    released.push(file_id);
                }
            }
            for file_id in released {
                if let Some(t) = input.files.remove(&file_id) {
                    // The checkpoint stays: a rotated file may still match the globs under its
                    // new name, and must not be read again. Checkpoints of files that are gone
                    // are dropped at the next start.
                    tracing::info!(
                        pipeline = %input.pipeline,
                        path = %t.file.path.display(),
                        cut_lines = t.file.cut_lines,
                        discarded_lines = t.file.discarded_lines(),
                        "file released"
                    );
                }
            }
        }
    }
}

/// Where reading a newly found file starts: its checkpoint when the signature still matches;
/// else, for a file that existed before the input started, what its config says
/// ([`InputFileConfig::start_of_existing`]: the `--once` rule differs); else 0.
fn start_offset(
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
        input.spec.config.start_of_existing(size, once)
    } else {
        0
    }
}

/// Files of `pipeline`'s checkpoints that are no longer at their checkpointed path but still in
/// its directory under another name (rotated while the daemon was down) and not fully read.
fn rotated_while_down(store: &CheckpointStore, pipeline: &str, found: &[PathBuf]) -> Vec<PathBuf> {
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
fn forget_vanished(store: &mut CheckpointStore, pipeline: &str) {
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
fn find_in_dir(path: &Path, id: DevInode) -> Option<PathBuf> {
    let entries = std::fs::read_dir(path.parent()?).ok()?;
    entries
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::metadata(p).is_ok_and(|m| DevInode::of(&m) == id))
}

fn checkpoint_of(pipeline: &str, tracked: &Tracked) -> FileCheckpoint {
    FileCheckpoint {
        pipeline: pipeline.to_owned(),
        path: tracked.file.path.clone(),
        id: tracked.file.id,
        signature: tracked.file.signature,
        offset: tracked.committed,
    }
}

struct ReadCtx<'a> {
    settings: &'a ReadSettings<'a>,
    sink: &'a dyn BatchSink,
    acks: &'a Sender<Ack>,
    input: InputId,
    file: u64,
    once: bool,
}

impl ReadCtx<'_> {
    fn with_ack(&self, mut group: PipelineEventGroup, end: u64) -> PipelineEventGroup {
        group.acks.push(Arc::new(FileAck {
            ack: Ack {
                input: self.input,
                file: self.file,
                offset: end,
            },
            tx: self.acks.clone(),
        }));
        group
    }
}

/// Offers a batch to the process queue; false when it has to wait (the queue is full).
fn offer(tracked: &mut Tracked, sink: &dyn BatchSink, group: PipelineEventGroup) -> bool {
    match sink.try_send(group) {
        Ok(()) => true,
        Err(group) => {
            tracked.waiting = Some(group);
            false
        }
    }
}

/// Reads what is new in one file; false when the file is finished and can be released.
fn read_file(tracked: &mut Tracked, ctx: &ReadCtx<'_>) -> bool {
    if !tracked.file.is_open() {
        if tracked.last_checked.elapsed() < CLOSED_CHECK {
            return true;
        }
        tracked.last_checked = Instant::now();
        if !tracked.file.changed_while_closed() {
            return true;
        }
        if tracked.file.path_moved_on() {
            // Renamed or deleted while closed: read the rest where it is now, if it still is.
            let Some(path) = find_in_dir(&tracked.file.path, tracked.file.id) else {
                return false;
            };
            tracked.file.moved_to(path);
            tracked.detached = true;
        }
    }
    if let Some(group) = tracked.waiting.take() {
        if !offer(tracked, ctx.sink, group) {
            return true;
        }
    }
    match tracked.file.was_truncated() {
        Ok(true) => {
            tracing::warn!(path = %tracked.file.path.display(), "file truncated or replaced in place; reading it again from the start");
            if tracked.file.rewind().is_err() {
                return false;
            }
            tracked.committed = 0;
        }
        Ok(false) => {}
        Err(_) => return false,
    }
    for _ in 0..BLOCKS_PER_ROUND {
        match tracked.file.read(ctx.settings) {
            Ok(Read::Lines(group, end)) => {
                tracked.at_eof_since = None;
                let group = ctx.with_ack(group, end);
                if !offer(tracked, ctx.sink, group) {
                    return true;
                }
            }
            Ok(Read::Partial) => tracked.at_eof_since = None,
            Ok(Read::Eof) => {
                tracked.at_eof_since.get_or_insert_with(Instant::now);
                break;
            }
            Err(e) => {
                tracing::warn!(path = %tracked.file.path.display(), "read failed: {e}");
                return false;
            }
        }
    }
    let Some(eof_since) = tracked.at_eof_since else {
        return true;
    };
    // At the end of the data: a line without its newline waits, unless it waited long enough,
    // the file will not grow any more (detached), or this is a `--once` run.
    if tracked.file.has_partial()
        && (ctx.once
            || tracked.detached
            || tracked.file.last_data.elapsed() >= PARTIAL_LINE_TIMEOUT)
    {
        if let Some((group, end)) = tracked.file.flush_partial(ctx.settings) {
            let group = ctx.with_ack(group, end);
            if !offer(tracked, ctx.sink, group) {
                return true;
            }
        }
    }
    if !tracked.detached && tracked.file.path_moved_on() {
        tracing::info!(path = %tracked.file.path.display(), "file rotated or deleted; reading the rest of the old one");
        tracked.detached = true;
        // Read once more: lines may have been written just before the rename.
        tracked.at_eof_since = None;
        return true;
    }
    let finished = tracked.detached
        && !tracked.file.has_partial()
        && tracked.committed == tracked.file.emitted_offset()
        && eof_since.elapsed() >= RELEASE_GRACE;
    !finished
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::Signature;

    #[test]
    fn signature_mismatch_means_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"new content\n").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let mut store = CheckpointStore::load(dir.path());
        store.put(FileCheckpoint {
            pipeline: "p".into(),
            path: path.clone(),
            id: DevInode::of(&meta),
            signature: Signature { len: 5, hash: 1 },
            offset: 7,
        });
        let spec = crate::input::file::InputFileConfig::from_plugin(&crate::config::PluginConfig {
            plugin_type: "input_file".into(),
            field: "inputs[0]".into(),
            placement: crate::config::Placement::Native,
            options: serde_json::json!({"FilePaths": ["/x/*.log"]})
                .as_object()
                .unwrap()
                .clone(),
        })
        .unwrap();
        let (sink, _rx) = crossbeam_channel::bounded::<PipelineEventGroup>(1);
        let input = Input {
            pipeline: "p".into(),
            spec,
            sink: Box::new(sink),
            files: HashMap::new(),
            first_discovery_done: true,
            _watch: watch::DirWatch::new(&[], Arc::new(AtomicBool::new(false)), || {}),
        };
        assert_eq!(
            start_offset(&store, &input, &path, DevInode::of(&meta), 12, true, false),
            0
        );
        let file = std::fs::File::open(&path).unwrap();
        let mut cp = store.get("p", DevInode::of(&meta)).unwrap().clone();
        cp.signature = Signature::read(&file).unwrap();
        store.put(cp);
        assert_eq!(
            start_offset(&store, &input, &path, DevInode::of(&meta), 12, true, false),
            7
        );
    }
}
