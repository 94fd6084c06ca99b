//! `input_file` and the FileServer: one reader thread serves every file input of every
//! pipeline ("bus mode", as LoongCollector's). Starting or stopping an input only registers or
//! unregisters it with the server.
//!
//! The cost of a round follows what is happening, not how much is tailed. Each round the
//! thread applies delivery acknowledgements (advancing checkpoints), takes what inotify
//! reported (a write makes that file active; a file created, moved or removed makes the inputs
//! holding that directory look for files), walks the globs of the inputs that are due (within a
//! time budget), and reads the active files, block by block, handing each block's lines to the
//! pipeline's process queue. When that queue is full the file's batch waits and the file is not
//! read further: a slow pipeline pauses its own reading, nothing is dropped. While one file of an
//! input holds a refused batch, the input's other files do not read either, and all of them are
//! set aside ("parked") until the queue has room: a full queue holds up one batch per input, and
//! costs one check per input per retry, whatever the number of files. A file read to its
//! end with nothing held back becomes idle and is not looked at again until inotify says it
//! changed, or the slow sweep (every `SAFETY_SWEEP`) finds it did; files in directories inotify
//! does not watch are stat-checked every `POLL_SWEEP`.
//!
//! Files are followed through rename rotation (the old file is read to its end through the open
//! descriptor, then the new one from 0), deletion (read to the end, the descriptor released
//! once everything is delivered and a grace period passed), copytruncate (the file shrank, or
//! its first bytes changed: read again from 0) and inode reuse (a checkpoint whose signature
//! does not match is not resumed).

pub mod active;
pub mod checkpoint;
pub mod config;
pub mod discovery;
pub mod glob;
pub mod identity;
mod multi_config;
pub mod multiline;
pub mod reader;
mod resume;
pub mod stats;
mod tail;
pub mod watch;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use tailrace::{DeliveryHook, PipelineEventGroup};

use active::{ActiveSet, FileKey};
use checkpoint::CheckpointStore;
pub use config::{FileInputSpec, InputFileConfig};
use discovery::{Stamps, Walk};
use identity::DevInode;
use reader::{ReadSettings, TailedFile};
use resume::{checkpoint_of, forget_vanished, rotated_while_down, start_offset};
use tail::{read_file, ReadCtx};
use watch::WatchTable;

/// How long the thread waits while files are active but at their end (a line still being
/// written, a rotated file's grace period).
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How soon a batch that found its process queue full is offered again.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(2);
/// The longest the thread sleeps when nothing is active (acknowledgements are applied and
/// checkpoints saved at least this often).
const MAX_IDLE_WAIT: Duration = Duration::from_secs(1);
/// How often an input whose directories inotify watches walks its globs again anyway.
const WATCHED_DISCOVERY: Duration = Duration::from_secs(10);
/// How often an input with a directory inotify does not watch (or that does not exist yet)
/// walks its globs again.
const POLLED_DISCOVERY: Duration = Duration::from_secs(1);
/// A periodic walk is skipped while the directories of the last one are unchanged; where
/// inotify does not watch, one is made at least this often all the same (a file system might
/// not keep directory times).
const POLLED_FULL_WALK: Duration = Duration::from_secs(60);
/// How often idle files in directories inotify does not watch are stat-checked.
const POLL_SWEEP: Duration = Duration::from_secs(1);
/// How often every idle file is stat-checked, inotify or not (what inotify may miss: some file
/// systems, writes through another mount), and idle descriptors closed.
const SAFETY_SWEEP: Duration = Duration::from_secs(10);
/// The least time between two walks of an input that inotify asked for: a directory where
/// files are created all the time costs a walk per this, not one per event.
const EVENT_WALK_SPACING: Duration = Duration::from_millis(100);
/// How long glob walks may take per round; a walk not done by then resumes next round.
const DISCOVERY_BUDGET: Duration = Duration::from_millis(200);
/// How long reading may take per round before commands and acknowledgements get their turn.
const READ_BUDGET: Duration = Duration::from_millis(200);
/// Blocks read from one file per round before the next file gets its turn.
const BLOCKS_PER_ROUND: usize = 16;
/// How long a deleted or rotated-away file is kept open after it was read to its end.
const RELEASE_GRACE: Duration = Duration::from_secs(3);
/// How often checkpoints are written when they changed.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// How soon the checkpoints of newly found files (or of a removed input) are written: soon, so
/// that a file rotated while the daemon is down is found again through its checkpoint, but
/// coalesced, so that 1,000 inputs starting together cost a few writes, not 1,000.
const NEW_FILE_SAVE: Duration = Duration::from_millis(200);
/// A file with no new data for this long has its descriptor closed (reopened when it grows).
const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// Open descriptors the server keeps at most: beyond this, a file read to its end is closed at
/// once (and reopened where it was when it grows).
const MAX_OPEN_FILES: usize = 1024;
/// Longest line; longer ones are cut into pieces of this size.
const MAX_LINE: usize = 512 * 1024;

/// How long the acknowledgements of a removed input's files are still awaited.
const RETIRED_FOR: Duration = Duration::from_secs(120);

/// A file of a removed input with batches still on their way (see `Server::retired`).
struct Retired {
    checkpoint: checkpoint::FileCheckpoint,
    emitted: u64,
    since: Instant,
}

/// Identifies a registered input.
pub type InputId = u64;

/// Where an input's batches go: the pipeline's process queue. `try_send` never blocks; Err hands
/// the batch back when the queue has no room (or is closed).
pub trait BatchSink: Send {
    // The refused batch comes back by value, as crossbeam's `TrySendError` does: it waits in
    // its file until the queue has room, and is never copied or boxed per offer.
    #[allow(clippy::result_large_err)]
    fn try_send(&self, group: PipelineEventGroup) -> Result<(), PipelineEventGroup>;

    /// Whether a batch offered now would likely be taken: lets the server leave an input's
    /// files parked while its queue is full, with one call per input per retry. A hint;
    /// `try_send` decides. The default (always true) is correct but retries the waiting batch
    /// every round.
    fn has_room(&self) -> bool {
        true
    }
}

impl BatchSink for Sender<PipelineEventGroup> {
    fn try_send(&self, group: PipelineEventGroup) -> Result<(), PipelineEventGroup> {
        Sender::try_send(self, group).map_err(|e| e.into_inner())
    }

    fn has_room(&self) -> bool {
        !self.is_full()
    }
}

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
    /// Inotify reported something: the round takes it from the watch table.
    Wake,
    /// Whether every file is read to its end and every batch delivered (for `--once`).
    Drained {
        reply: Sender<bool>,
    },
    /// The figures for /metrics.
    Stats {
        reply: Sender<Vec<stats::InputStats>>,
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
        let server = Server::new(rx, options, commands.clone());
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

    /// A handle /metrics asks for the server's figures through.
    pub fn stats_handle(&self) -> stats::FileStatsHandle {
        stats::FileStatsHandle {
            commands: self.commands.clone(),
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
    sink: Box<dyn BatchSink>,
    /// Tracked files by their own id (a file keeps its id through renames).
    files: HashMap<u64, Tracked>,
    /// Tracked files by identity: a file found again under another path is not tracked twice.
    ids: HashMap<DevInode, u64>,
    /// Files seen by the first discovery existed before the input started.
    first_discovery_done: bool,
    /// The glob walk under way.
    walk: Option<Walk>,
    /// Something changed while the walk was under way: walk again when it is done.
    walk_again: bool,
    /// When the next walk is due (its entry in the server's timetable).
    due: Option<Instant>,
    /// The directories whose watch this input holds (the last walk's, sorted).
    dirs: Vec<PathBuf>,
    /// When its last walk ended.
    last_walked: Option<Instant>,
    /// When its last walk started that was not skipped.
    last_full_walk: Option<Instant>,
    /// Whether inotify watches every directory of its last walk.
    fully_watched: bool,
    /// Set while the next walk due is a periodic one and the last walk left nothing to retry:
    /// the stamps of the directories it looked at. While they are unchanged the walk is
    /// skipped (it would find the same files).
    unchanged: Option<Stamps>,
    /// Its files holding a batch the queue refused. While one does, no other file of the input
    /// reads a new block: what a full queue holds up is one batch per input, not one per file.
    waiting_files: usize,
    /// Files its last walk found that another input collects (see `multi_config.rs`).
    left_to_others: HashSet<DevInode>,
    /// Bytes of files released before they were read to their end.
    lost_bytes: u64,
}

impl Input {
    fn new(pipeline: String, spec: FileInputSpec, sink: Box<dyn BatchSink>) -> Input {
        Input {
            pipeline,
            spec,
            sink,
            files: HashMap::new(),
            ids: HashMap::new(),
            first_discovery_done: false,
            walk: None,
            walk_again: false,
            due: None,
            dirs: Vec::new(),
            waiting_files: 0,
            last_walked: None,
            last_full_walk: None,
            fully_watched: false,
            unchanged: None,
            left_to_others: HashSet::new(),
            lost_bytes: 0,
        }
    }
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
    /// Its directory is watched by inotify: when idle, it waits for an event (or the safety
    /// sweep) rather than being polled.
    watched: bool,
    /// The path it was tracked under before it was found renamed (to update the path index).
    moved_from: Option<PathBuf>,
    /// Bytes it lost before they were read (truncated in place while unread).
    lost_bytes: u64,
}

impl Tracked {
    /// Whether the server must look at it every round.
    fn is_busy(&self) -> bool {
        self.waiting.is_some()
            || self.at_eof_since.is_none()
            || self.detached
            || self.file.has_partial()
    }

    /// Whether its descriptor can be closed: its path still names it, everything read was
    /// handed on, and it has been at its end for `idle`.
    fn closable(&self, idle: Duration) -> bool {
        self.file.is_open()
            && !self.detached
            && self.waiting.is_none()
            && !self.file.has_partial()
            && self
                .at_eof_since
                .is_some_and(|since| since.elapsed() >= idle)
    }
}

struct Server {
    commands: Receiver<Command>,
    options: FileServerOptions,
    inputs: HashMap<InputId, Input>,
    hostname: Bytes,
    store: CheckpointStore,
    last_checkpoint: Instant,
    /// When the server started (periodic walks are aligned to whole seconds since).
    started: Instant,
    /// New files (or a removed input) wait for their checkpoints to be written.
    save_soon: bool,
    acks_tx: Sender<Ack>,
    acks_rx: Receiver<Ack>,
    next_file: u64,
    /// The one inotify instance, and who holds which directory.
    watches: WatchTable,
    /// Files looked at every round.
    active: ActiveSet,
    /// Idle files whose directory inotify does not watch: stat-checked every `POLL_SWEEP`.
    polled: HashSet<FileKey>,
    /// Tracked files by the path they are tracked under, for inotify's events.
    by_path: HashMap<PathBuf, Vec<FileKey>>,
    /// When each input's next glob walk is due.
    timetable: BTreeSet<(Instant, InputId)>,
    /// Inputs whose walk is under way, in turn.
    walking: VecDeque<InputId>,
    /// Files whose batch waits for a full queue, by input: set aside rather than visited
    /// every round, and made active again when their queue has room (one check per input).
    parked: HashMap<InputId, HashSet<u64>>,
    /// Files of removed inputs whose batches were still on their way: their acknowledgements
    /// keep moving the checkpoints (a pipeline stops its input first and drains after, so a
    /// clean stop saves what was delivered, not what had been acknowledged when reading
    /// stopped). Dropped once everything emitted is acknowledged, or after `RETIRED_FOR`.
    retired: HashMap<FileKey, Retired>,
    next_poll_sweep: Instant,
    next_safety_sweep: Instant,
}

impl Server {
    fn new(
        commands: Receiver<Command>,
        options: FileServerOptions,
        wake_tx: Sender<Command>,
    ) -> Server {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let (acks_tx, acks_rx) = crossbeam_channel::unbounded();
        let now = Instant::now();
        Server {
            commands,
            store: CheckpointStore::load(&options.data_dir)
                .with_health(options.checkpoint_health.clone()),
            options,
            inputs: HashMap::new(),
            hostname: Bytes::from(hostname),
            last_checkpoint: now,
            started: now,
            save_soon: false,
            acks_tx,
            acks_rx,
            next_file: 0,
            watches: WatchTable::new(move || {
                let _ = wake_tx.send(Command::Wake);
            }),
            active: ActiveSet::default(),
            polled: HashSet::new(),
            by_path: HashMap::new(),
            timetable: BTreeSet::new(),
            walking: VecDeque::new(),
            parked: HashMap::new(),
            retired: HashMap::new(),
            next_poll_sweep: now + POLL_SWEEP,
            next_safety_sweep: now + SAFETY_SWEEP,
        }
    }

    fn run(mut self) {
        'serve: loop {
            match self.commands.recv_timeout(self.next_wait()) {
                Ok(command) => {
                    if !self.handle(command) {
                        break;
                    }
                    while let Ok(command) = self.commands.try_recv() {
                        if !self.handle(command) {
                            break 'serve;
                        }
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            self.round();
        }
        self.apply_acks();
        self.save_checkpoints();
    }

    fn round(&mut self) {
        self.apply_acks();
        self.take_watch_changes();
        let now = Instant::now();
        if now >= self.next_poll_sweep {
            self.next_poll_sweep = now + POLL_SWEEP;
            self.poll_sweep();
        }
        if now >= self.next_safety_sweep {
            self.next_safety_sweep = now + SAFETY_SWEEP;
            self.safety_sweep();
        }
        self.discover();
        self.read_active();
        let since = self.last_checkpoint.elapsed();
        if since >= CHECKPOINT_INTERVAL || (self.save_soon && since >= NEW_FILE_SAVE) {
            self.save_checkpoints();
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
                self.inputs.insert(id, Input::new(pipeline, *spec, sink));
                self.schedule_walk(id, Instant::now());
            }
            Command::Unregister { id, done } => {
                self.apply_acks();
                self.remove_input(id);
                self.save_soon = true;
                let _ = done.send(());
            }
            Command::Drained { reply } => {
                self.apply_acks();
                let drained = self.walking.is_empty()
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
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Command::Wake => {}
            Command::Shutdown => return false,
        }
        true
    }

    fn stats(&self) -> Vec<stats::InputStats> {
        self.inputs
            .values()
            .map(|input| {
                let mut lagging = Vec::new();
                let mut lag_bytes = 0;
                let mut lost_bytes = input.lost_bytes;
                for t in input.files.values() {
                    lost_bytes += t.lost_bytes;
                    let size =
                        stats::current_size(&t.file.path, t.file.id.inode, t.file.last_size());
                    let lag = size.saturating_sub(t.file.read_pos());
                    if lag > 0 {
                        lag_bytes += lag;
                        lagging.push((t.file.path.clone(), lag));
                    }
                }
                lagging.sort_by_key(|(_, lag)| std::cmp::Reverse(*lag));
                lagging.truncate(stats::MAX_LAGGING_FILES);
                stats::InputStats {
                    pipeline: input.pipeline.clone(),
                    tracked_files: input.files.len(),
                    open_files: input.files.values().filter(|t| t.file.is_open()).count(),
                    lag_bytes,
                    lost_bytes,
                    lagging,
                }
            })
            .collect()
    }

    fn remove_input(&mut self, id: InputId) {
        self.parked.remove(&id);
        let Some(input) = self.inputs.remove(&id) else {
            return;
        };
        for dir in &input.dirs {
            self.watches.release(dir, id);
        }
        if let Some(due) = input.due {
            self.timetable.remove(&(due, id));
        }
        let now = Instant::now();
        self.retired
            .retain(|_, r| now.duration_since(r.since) < RETIRED_FOR);
        for (file_id, tracked) in input.files {
            self.forget_file((id, file_id), &tracked.file.path);
            let emitted = tracked.file.emitted_offset();
            if tracked.committed < emitted {
                self.retired.insert(
                    (id, file_id),
                    Retired {
                        checkpoint: checkpoint_of(&input.pipeline, &tracked),
                        emitted,
                        since: now,
                    },
                );
            }
        }
    }

    /// Drops a file from the round, the poll and the path index.
    fn forget_file(&mut self, key: FileKey, path: &Path) {
        self.active.retire(key);
        self.polled.remove(&key);
        unindex(&mut self.by_path, path, key);
    }

    fn activate(&mut self, key: FileKey) {
        self.polled.remove(&key);
        self.active.insert(key);
    }

    /// Makes input `id` walk its globs at `at` (or earlier, if it is due earlier already).
    fn schedule_walk(&mut self, id: InputId, at: Instant) {
        let Some(input) = self.inputs.get_mut(&id) else {
            return;
        };
        // Something may have changed: the walk is made, whatever the stamps say.
        input.unchanged = None;
        if let Some(due) = input.due {
            if due <= at {
                return;
            }
            self.timetable.remove(&(due, id));
        }
        input.due = Some(at);
        self.timetable.insert((at, id));
    }

    /// When a periodic walk made or skipped `now` is next due. The walks fall on whole seconds
    /// since the start, so that the walks of 1,000 inputs share a few wake-ups instead of
    /// spreading one each over the interval.
    fn periodic_walk(&self, fully_watched: bool, now: Instant) -> Instant {
        let interval = if fully_watched {
            WATCHED_DISCOVERY
        } else {
            POLLED_DISCOVERY
        };
        let since = (now + interval).saturating_duration_since(self.started);
        self.started + Duration::from_secs(since.as_secs() + 1)
    }

    /// Acts on what inotify reported: written files become active; the inputs holding a
    /// directory where files appeared, moved or vanished walk their globs now.
    fn take_watch_changes(&mut self) {
        let changes = self.watches.take_changes();
        let now = Instant::now();
        if changes.rescan {
            tracing::info!("inotify lost events (queue overflow): looking at every file");
            let ids: Vec<InputId> = self.inputs.keys().copied().collect();
            for id in ids {
                self.schedule_walk(id, now);
            }
            self.next_safety_sweep = now;
        }
        let mut due = HashSet::new();
        for dir in &changes.dirs {
            due.extend(self.watches.holders(dir));
        }
        for id in due {
            let at = self
                .inputs
                .get(&id)
                .and_then(|i| i.last_walked)
                .map_or(now, |last| now.max(last + EVENT_WALK_SPACING));
            self.schedule_walk(id, at);
        }
        for path in &changes.touched {
            if let Some(keys) = self.by_path.get(path) {
                for &key in keys {
                    self.polled.remove(&key);
                    self.active.insert(key);
                }
            }
        }
    }

    /// Stat-checks the idle files inotify does not cover.
    fn poll_sweep(&mut self) {
        let changed: Vec<FileKey> = self
            .polled
            .iter()
            .filter(|(input, file)| {
                self.inputs
                    .get(input)
                    .and_then(|i| i.files.get(file))
                    .is_none_or(|t| t.file.has_news())
            })
            .copied()
            .collect();
        for key in changed {
            self.activate(key);
        }
    }

    /// Stat-checks every idle file, and closes the descriptors of files idle for long (or, over
    /// the bound on open files, of the longest idle ones).
    fn safety_sweep(&mut self) {
        let mut changed = Vec::new();
        let mut open = 0;
        for (&input_id, input) in self.inputs.iter_mut() {
            for (&file_id, t) in input.files.iter_mut() {
                let key = (input_id, file_id);
                if self.active.contains(&key) {
                    open += usize::from(t.file.is_open());
                    continue;
                }
                if t.file.has_news() {
                    changed.push(key);
                } else if t.closable(IDLE_CLOSE) {
                    t.file.close();
                }
                open += usize::from(t.file.is_open());
            }
        }
        tracing::debug!(
            inputs = self.inputs.len(),
            watched_dirs = self.watches.watched_dirs(),
            active = self.active.len() + changed.len(),
            polled = self.polled.len(),
            open,
            "file server sweep"
        );
        for key in changed {
            self.activate(key);
        }
        if open > MAX_OPEN_FILES {
            let mut idle: Vec<&mut Tracked> = self
                .inputs
                .values_mut()
                .flat_map(|i| i.files.values_mut())
                .filter(|t| t.closable(Duration::from_secs(1)))
                .collect();
            idle.sort_by_key(|t| t.file.last_data);
            for t in idle.into_iter().take(open - MAX_OPEN_FILES) {
                t.file.close();
            }
        }
    }

    /// How long to wait before the next round: not at all while a file has more to read or a
    /// walk is under way, a moment while a batch waits for room in its queue, the poll interval
    /// while files are active at their end; else until the next timer.
    fn next_wait(&self) -> Duration {
        if !self.walking.is_empty() {
            return Duration::ZERO;
        }
        let mut waiting = false;
        for (input, file) in self.active.iter() {
            let Some(t) = self.inputs.get(input).and_then(|i| i.files.get(file)) else {
                continue;
            };
            if t.waiting.is_none() && t.at_eof_since.is_none() {
                return Duration::ZERO;
            }
            waiting |= t.waiting.is_some();
        }
        if waiting || !self.parked.is_empty() {
            return QUEUE_FULL_RETRY;
        }
        if !self.active.is_empty() {
            return POLL_INTERVAL;
        }
        let now = Instant::now();
        let mut until = (now + MAX_IDLE_WAIT).min(self.next_safety_sweep);
        if !self.polled.is_empty() {
            until = until.min(self.next_poll_sweep);
        }
        if let Some(&(due, _)) = self.timetable.first() {
            until = until.min(due);
        }
        until.saturating_duration_since(now)
    }

    fn apply_acks(&mut self) {
        let acks: Vec<Ack> = self.acks_rx.try_iter().collect();
        for ack in acks {
            let Some(input) = self.inputs.get_mut(&ack.input) else {
                self.retired_ack(&ack);
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

    /// An acknowledgement for a file of a removed input.
    fn retired_ack(&mut self, ack: &Ack) {
        let key = (ack.input, ack.file);
        let Some(retired) = self.retired.get_mut(&key) else {
            return;
        };
        let cp = &mut retired.checkpoint;
        if ack.offset <= cp.offset || ack.offset > retired.emitted {
            return;
        }
        cp.offset = ack.offset;
        // Never behind what a newer input of the same pipeline has saved for the file.
        let newer = self
            .store
            .get(&cp.pipeline, cp.id)
            .is_some_and(|now| now.offset >= cp.offset && now.signature == cp.signature);
        if !newer {
            self.store.put(cp.clone());
        }
        if cp.offset == retired.emitted {
            self.retired.remove(&key);
        }
    }

    fn save_checkpoints(&mut self) {
        self.last_checkpoint = Instant::now();
        self.save_soon = false;
        if let Err(e) = self.store.save() {
            tracing::error!(
                "cannot write checkpoints under {}: {e}",
                self.options.data_dir.display()
            );
        }
    }

    /// Starts the walks that are due and walks on, for at most `DISCOVERY_BUDGET`.
    fn discover(&mut self) {
        let now = Instant::now();
        while let Some(&(due, id)) = self.timetable.first() {
            if due > now {
                break;
            }
            self.timetable.pop_first();
            let Some(input) = self.inputs.get_mut(&id) else {
                continue;
            };
            input.due = None;
            if input.walk.is_some() {
                input.walk_again = true;
            } else if let Some(stamps) = input.unchanged.take().filter(|stamps| {
                (input.fully_watched
                    || input
                        .last_full_walk
                        .is_some_and(|t| now.duration_since(t) < POLLED_FULL_WALK))
                    && stamps.unchanged()
            }) {
                let fully_watched = input.fully_watched;
                let next = self.periodic_walk(fully_watched, now);
                self.schedule_walk(id, next);
                self.inputs.get_mut(&id).expect("due").unchanged = Some(stamps);
            } else {
                input.walk = Some(Walk::new(&input.spec));
                input.last_full_walk = Some(now);
                self.walking.push_back(id);
            }
        }
        let deadline = now + DISCOVERY_BUDGET;
        while let Some(&id) = self.walking.front() {
            let Some(input) = self.inputs.get_mut(&id) else {
                self.walking.pop_front();
                continue;
            };
            let Some(walk) = input.walk.as_mut() else {
                self.walking.pop_front();
                continue;
            };
            if !walk.step(&input.spec, deadline) {
                return;
            }
            let walk = input.walk.take().expect("walking");
            self.walking.pop_front();
            self.walked(id, walk);
            if Instant::now() >= deadline {
                return;
            }
        }
    }

    /// A walk of input `id` is done: watch what it entered, track the new files it found, and
    /// schedule the next walk.
    fn walked(&mut self, id: InputId, mut walk: Walk) {
        let stamps = walk.take_stamps();
        // Whether every file the walk found is tracked now: else the next walk retries.
        let mut all_tracked = true;
        let Some(input) = self.inputs.get_mut(&id) else {
            return;
        };
        let mut fully_watched = true;
        for dir in &walk.dirs {
            fully_watched &= self.watches.acquire(dir, id);
        }
        for dir in &input.dirs {
            if walk.dirs.binary_search(dir).is_err() {
                self.watches.release(dir, id);
            }
        }
        input.dirs = walk.dirs;

        let existed_before = !input.first_discovery_done;
        input.first_discovery_done = true;
        // Paths whose file is tracked need no stat: if such a path comes to name another file
        // (rotation), inotify or the sweep finds the tracked one moved on, and that schedules
        // a walk which attaches the new one.
        let attached: HashSet<&Path> = input
            .files
            .values()
            .filter(|t| !t.detached)
            .map(|t| t.file.path.as_path())
            .collect();
        let mut found = walk.files;
        if existed_before {
            forget_vanished(&mut self.store, &input.pipeline);
            // After a restart, files rotated away while we were down are found through
            // their checkpoints, so that their last lines are not lost.
            found.extend(rotated_while_down(&self.store, &input.pipeline, &found));
        }
        let mut new_files = Vec::new();
        for path in found {
            if attached.contains(path.as_path()) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                all_tracked = false;
                continue;
            };
            let file_id = DevInode::of(&meta);
            if input.ids.contains_key(&file_id) {
                continue;
            }
            new_files.push((path, file_id, meta.len()));
        }
        drop(attached);
        // Files another input collects (`AllowingIncludedByMultiConfigs`) are left to it; said
        // once per file, not at every walk.
        let mut left = HashSet::new();
        new_files.retain(|(path, file_id, _)| {
            let others = path
                .parent()
                .into_iter()
                .flat_map(|dir| self.watches.holders(dir));
            let Some(winner) =
                multi_config::collected_elsewhere(&self.inputs, id, others, path, *file_id)
            else {
                return true;
            };
            if !self.inputs[&id].left_to_others.contains(file_id) {
                multi_config::warn_left_to(&self.inputs, id, winner, path);
            }
            left.insert(*file_id);
            false
        });
        let Some(input) = self.inputs.get_mut(&id) else {
            return;
        };
        input.left_to_others = left;
        let tracked_before = self.next_file;
        for (path, file_id, size) in new_files {
            if input.ids.contains_key(&file_id) {
                continue;
            }
            let start = start_offset(
                &self.store,
                input,
                &path,
                file_id,
                size,
                existed_before,
                self.options.once,
            );
            match TailedFile::open(path.clone(), start, input.spec.multiline()) {
                Ok(mut file) => {
                    file.set_gbk(input.spec.is_gbk());
                    file.set_position_meta(input.spec.config.appending_log_position_meta);
                    file.set_whole_block(input.spec.whole_block.clone());
                    file.set_hand_lines(input.spec.hand_lines);
                    tracing::info!(pipeline = %input.pipeline, path = %path.display(), offset = start, "tailing file");
                    if reader::open_descriptors() > MAX_OPEN_FILES {
                        // Reopened when it is read: thousands of new files at once must not
                        // exhaust the descriptors.
                        file.close();
                    }
                    let watched = path
                        .parent()
                        .is_some_and(|dir| self.watches.is_watched(dir));
                    let tracked = Tracked {
                        committed: file.offset,
                        file,
                        waiting: None,
                        detached: false,
                        at_eof_since: None,
                        watched,
                        moved_from: None,
                        lost_bytes: 0,
                    };
                    self.store.put(checkpoint_of(&input.pipeline, &tracked));
                    let key = (id, self.next_file);
                    input.ids.insert(tracked.file.id, key.1);
                    input.files.insert(key.1, tracked);
                    self.by_path.entry(path).or_default().push(key);
                    self.active.insert(key);
                    self.next_file += 1;
                }
                Err(e) => {
                    all_tracked = false;
                    tracing::warn!(pipeline = %input.pipeline, path = %path.display(), "cannot open: {e}")
                }
            }
        }
        let now = Instant::now();
        input.last_walked = Some(now);
        input.fully_watched = fully_watched;
        let periodic = !std::mem::take(&mut input.walk_again);
        let trusted = periodic && all_tracked && input.left_to_others.is_empty();
        let next = if periodic {
            self.periodic_walk(fully_watched, now)
        } else {
            now + EVENT_WALK_SPACING
        };
        self.schedule_walk(id, next);
        if trusted {
            if let Some(input) = self.inputs.get_mut(&id) {
                input.unchanged = stamps;
            }
        }
        if self.next_file != tracked_before {
            // A new file's checkpoint is written soon: if the daemon dies before the next
            // periodic save and the file is rotated meanwhile, the checkpoint is how it is
            // found again after the restart.
            self.save_soon = true;
        }
    }

    /// Reads the active files in turn, for at most `READ_BUDGET`; those that are at their end
    /// with nothing held back become idle.
    fn read_active(&mut self) {
        self.unpark();
        let settings = ReadSettings {
            hostname: &self.hostname,
            max_line: MAX_LINE,
        };
        let deadline = Instant::now() + READ_BUDGET;
        // Inputs with a file found rotated away or deleted: their path may name a new file.
        let mut walk_now = Vec::new();
        for _ in 0..self.active.len() {
            let Some(key) = self.active.pop() else {
                break;
            };
            let (input_id, file_id) = key;
            let Some(input) = self.inputs.get_mut(&input_id) else {
                self.active.retire(key);
                continue;
            };
            let Some(tracked) = input.files.get_mut(&file_id) else {
                self.active.retire(key);
                continue;
            };
            let held_up = if tracked.waiting.is_some() {
                !input.sink.has_room()
            } else {
                input.waiting_files > 0
            };
            if held_up {
                self.active.retire(key);
                self.parked.entry(input_id).or_default().insert(file_id);
                continue;
            }
            let ctx = ReadCtx {
                settings: &settings,
                sink: input.sink.as_ref(),
                acks: &self.acks_tx,
                input: input_id,
                file: file_id,
                once: self.options.once,
                flush_timeout: input.spec.flush_timeout(),
            };
            let was_detached = tracked.detached;
            let was_waiting = tracked.waiting.is_some();
            let keep = read_file(tracked, &ctx);
            match (was_waiting, tracked.waiting.is_some()) {
                (false, true) => input.waiting_files += 1,
                (true, false) => input.waiting_files -= 1,
                _ => {}
            }
            if tracked.detached && !was_detached {
                walk_now.push(input_id);
            }
            if let Some(old) = tracked.moved_from.take() {
                unindex(&mut self.by_path, &old, key);
                self.by_path
                    .entry(tracked.file.path.clone())
                    .or_default()
                    .push(key);
            }
            if !keep {
                let t = input.files.remove(&file_id).expect("present");
                input.ids.remove(&t.file.id);
                // A file released before its end (gone while closed, unreadable) lost the rest.
                input.lost_bytes += t.lost_bytes + t.file.unread_bytes();
                if t.waiting.is_some() {
                    // Given up (a read error): its batch goes with it, and so does its hold.
                    input.waiting_files -= 1;
                }
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
                self.active.retire(key);
                self.polled.remove(&key);
                unindex(&mut self.by_path, &t.file.path, key);
            } else if tracked.waiting.is_some() {
                self.active.retire(key);
                self.parked.entry(input_id).or_default().insert(file_id);
            } else if tracked.is_busy() {
                self.active.requeue(key);
            } else {
                self.active.retire(key);
                if !tracked.watched {
                    self.polled.insert(key);
                }
                if reader::open_descriptors() > MAX_OPEN_FILES && tracked.closable(Duration::ZERO) {
                    tracked.file.close();
                }
            }
            if tracked_waits_over_limit(input, file_id) {
                // Its queue is full: it may wait long, and thousands of files waiting on one
                // queue must not hold thousands of descriptors. It reopens where it was.
                if let Some(t) = input.files.get_mut(&file_id) {
                    t.file.close();
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        let now = Instant::now();
        for id in walk_now {
            self.schedule_walk(id, now);
        }
    }
}

impl Server {
    /// Makes the parked files of inputs whose queue has room active again.
    fn unpark(&mut self) {
        let inputs = &self.inputs;
        let active = &mut self.active;
        self.parked.retain(|id, files| {
            let Some(input) = inputs.get(id) else {
                return false;
            };
            if !input.sink.has_room() {
                return true;
            }
            for &file in files.iter() {
                active.insert((*id, file));
            }
            false
        });
    }
}

/// Whether file `file_id` of `input` waits for room in its queue while the server holds more
/// descriptors than it should (and its path still names it, so that it can be reopened).
fn tracked_waits_over_limit(input: &Input, file_id: u64) -> bool {
    input.files.get(&file_id).is_some_and(|t| {
        t.waiting.is_some()
            && t.file.is_open()
            && !t.detached
            && reader::open_descriptors() > MAX_OPEN_FILES
    })
}

/// Removes `key` from the files tracked under `path`.
fn unindex(by_path: &mut HashMap<PathBuf, Vec<FileKey>>, path: &Path, key: FileKey) {
    if let Some(keys) = by_path.get_mut(path) {
        keys.retain(|k| *k != key);
        if keys.is_empty() {
            by_path.remove(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkpoint::FileCheckpoint;
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
        let mut input = Input::new("p".into(), spec, Box::new(sink));
        input.first_discovery_done = true;
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
