//! A sender queue: the bounded queue in front of one flusher instance (a native flusher, or the
//! feed of a pipeline's part in the plugin base). The flusher runner's shared threads take
//! batches from it; the queue remembers when a failed flush may be retried, so that no thread
//! ever sleeps on behalf of one destination.
//!
//! Its length counts batches queued *and* being flushed, so that "room" means memory: the
//! process queue upstream pops only while every one of its sender queues has room (the
//! feedback of DESIGN §6), and `SendPb` answers -1 when one has none.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tailrace::plugin::Flusher;
use tailrace::PipelineEventGroup;

/// The first wait after a failed flush; doubled on each failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How soon a flusher that said it is not ready is asked again.
const NOT_READY_RETRY: Duration = Duration::from_millis(50);

/// Called when a full queue gets room again (wakes the processor runner).
pub type RoomHook = Arc<dyn Fn() + Send + Sync>;

/// Builds a fresh instance of a queue's flusher from its config, to replace one that panicked:
/// a panic may have left the instance's state broken (a half-written buffer, a poisoned
/// connection), so its batch is retried on a new instance, as LoongCollector restarts a crashed
/// plugin.
pub type Rebuild = Box<dyn Fn() -> Result<Box<dyn Flusher>, String> + Send + Sync>;

pub struct SenderQueue {
    pub pipeline: String,
    pub flusher_type: String,
    capacity: usize,
    /// Batches queued or being flushed.
    len: AtomicUsize,
    state: Mutex<State>,
    flusher: Mutex<Box<dyn Flusher>>,
    /// The flusher needs only serialized LogGroups (`Flusher::takes_encoded`; a rebuilt
    /// instance is of the same type).
    takes_encoded: bool,
    /// How to replace the flusher after it panicked (none: the same instance is retried).
    rebuild: std::sync::OnceLock<Rebuild>,
    /// Wakes the flusher runner when a batch arrives.
    wake: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    on_room: Mutex<Option<RoomHook>>,
    /// Counters for logs and, later, /metrics.
    pub flushed_batches: AtomicU64,
    /// Events in the batches delivered.
    pub flushed_events: AtomicU64,
    pub failed_flushes: AtomicU64,
    pub panics: AtomicU64,
    /// Flushers rebuilt after a panic.
    pub restarts: AtomicU64,
    /// Set once the flusher's `stop` ran.
    stopped: AtomicBool,
}

struct State {
    items: VecDeque<PipelineEventGroup>,
    /// A runner thread is flushing this queue's batches.
    busy: bool,
    /// Not before this instant (after a failure or a "not ready").
    retry_at: Option<Instant>,
    backoff: Duration,
    /// No more batches are taken (the pipeline is stopping).
    closed: bool,
    /// Given up: what is left is dropped undelivered, and the flusher stops after the flush in
    /// progress, if any.
    abandoned: bool,
}

/// What a runner thread takes from a queue to flush.
pub struct Batch {
    pub groups: Vec<PipelineEventGroup>,
}

impl SenderQueue {
    pub fn new(
        pipeline: &str,
        flusher_type: &str,
        flusher: Box<dyn Flusher>,
        capacity: usize,
    ) -> Arc<SenderQueue> {
        Arc::new(SenderQueue {
            takes_encoded: flusher.takes_encoded(),
            pipeline: pipeline.to_owned(),
            flusher_type: flusher_type.to_owned(),
            capacity,
            len: AtomicUsize::new(0),
            state: Mutex::new(State {
                items: VecDeque::new(),
                busy: false,
                retry_at: None,
                backoff: MIN_BACKOFF,
                closed: false,
                abandoned: false,
            }),
            flusher: Mutex::new(flusher),
            rebuild: std::sync::OnceLock::new(),
            wake: Mutex::new(None),
            on_room: Mutex::new(None),
            flushed_batches: AtomicU64::new(0),
            flushed_events: AtomicU64::new(0),
            failed_flushes: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How to rebuild the flusher after a panic (set once, before the queue is used).
    pub fn set_rebuild(&self, rebuild: Rebuild) {
        let _ = self.rebuild.set(rebuild);
    }

    /// Who to wake when a batch arrives (set by the runner that serves this queue).
    pub fn set_wake(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        *self.wake.lock().unwrap_or_else(|e| e.into_inner()) = Some(wake);
    }

    /// Who to tell when the queue has room again (the processor runner).
    pub fn set_on_room(&self, hook: RoomHook) {
        *self.on_room.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Whether batches should come serialized ([`Flusher::takes_encoded`]).
    pub fn takes_encoded(&self) -> bool {
        self.takes_encoded
    }

    /// Whether another batch may be queued: the upstream checks this before it pops (soft
    /// capacity: a batch already popped is always taken, so the queue may pass its capacity by
    /// the number of processor threads at most).
    pub fn has_room(&self) -> bool {
        self.len.load(Ordering::Acquire) < self.capacity
    }

    /// Batches queued or being flushed.
    pub fn depth(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.depth()
    }

    /// Queues a batch whatever the capacity (the caller checked [`SenderQueue::has_room`]);
    /// hands it back when the queue is closed.
    pub fn push(&self, group: PipelineEventGroup) -> Result<(), PipelineEventGroup> {
        {
            let mut state = self.state();
            if state.closed {
                return Err(group);
            }
            state.items.push_back(group);
            self.len.fetch_add(1, Ordering::AcqRel);
        }
        self.wake_runner();
        Ok(())
    }

    fn wake_runner(&self) {
        let wake = self.wake.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(wake) = wake {
            wake();
        }
    }

    /// For the runner: takes every queued batch when the queue is idle and due. `Err` holds
    /// when it will be due (a retry wait), or None when there is nothing to do.
    pub fn begin(&self, now: Instant) -> Result<Batch, Option<Instant>> {
        let mut state = self.state();
        if state.busy || state.items.is_empty() || state.abandoned {
            return Err(None);
        }
        if let Some(at) = state.retry_at {
            if at > now {
                return Err(Some(at));
            }
        }
        state.busy = true;
        Ok(Batch {
            groups: state.items.drain(..).collect(),
        })
    }

    /// For the runner: flushes a batch taken by [`SenderQueue::begin`], acknowledges what was
    /// delivered, puts the rest back in front, and sets the retry time after a failure. A
    /// flusher that panics is caught, counted and logged, replaced by a new instance when the
    /// queue knows how to build one, and its batch retried.
    pub fn flush(&self, batch: Batch) {
        // Groups left empty by their processors keep their place in line but are not given to
        // the flusher: each counts as delivered once everything before it was.
        let takes_acks = self
            .flusher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .takes_acks();
        let acks: Vec<_> = batch.groups.iter().map(|g| g.acks.clone()).collect();
        let mut empties: Vec<Option<PipelineEventGroup>> = Vec::with_capacity(acks.len());
        let mut full = Vec::with_capacity(acks.len());
        for group in batch.groups {
            if group.is_empty() && !takes_acks {
                empties.push(Some(group));
            } else {
                empties.push(None);
                full.push(group);
            }
        }
        let before = full.len();
        let sizes: Vec<usize> = full.iter().map(PipelineEventGroup::len).collect();
        let outcome = {
            let mut flusher = self.flusher.lock().unwrap_or_else(|e| e.into_inner());
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if before == 0 {
                    Some(Ok(()))
                } else if flusher.is_ready() {
                    Some(flusher.flush(&mut full))
                } else {
                    None
                }
            }))
        };
        // A flusher delivers in order and leaves the rest: the first ones went.
        let mut went = before - full.len().min(before);
        let events: usize = sizes[..went].iter().sum();
        self.flushed_events
            .fetch_add(events as u64, Ordering::Relaxed);
        let mut delivered = 0;
        for (ack, empty) in acks.iter().zip(&empties) {
            if empty.is_none() {
                if went == 0 {
                    break;
                }
                went -= 1;
            }
            if !takes_acks {
                ack.delivered();
            }
            delivered += 1;
        }
        // What is left goes back in order: the undelivered groups and the empty ones among them.
        let mut rest = full.into_iter();
        let batch = Batch {
            groups: empties
                .into_iter()
                .skip(delivered)
                .filter_map(|empty| empty.or_else(|| rest.next()))
                .collect(),
        };
        self.flushed_batches
            .fetch_add(delivered as u64, Ordering::Relaxed);
        let was_full = !self.has_room();
        self.len.fetch_sub(delivered, Ordering::AcqRel);
        let mut state = self.state();
        state.busy = false;
        let now = Instant::now();
        match outcome {
            Ok(Some(Ok(()))) if batch.groups.is_empty() => {
                state.retry_at = None;
                state.backoff = MIN_BACKOFF;
            }
            Ok(Some(result)) => {
                let why = result
                    .err()
                    .unwrap_or_else(|| "partly delivered".to_owned());
                self.failed(&mut state, now, &why);
            }
            Ok(None) => state.retry_at = Some(now + NOT_READY_RETRY),
            Err(panic) => {
                self.panics.fetch_add(1, Ordering::Relaxed);
                let mut why = format!("the flusher panicked: {}", panic_message(&panic));
                if let Some(outcome) = self.restart() {
                    why.push_str("; ");
                    why.push_str(&outcome);
                }
                self.failed(&mut state, now, &why);
            }
        }
        for group in batch.groups.into_iter().rev() {
            state.items.push_front(group);
        }
        if state.abandoned {
            self.drop_abandoned(&mut state);
        }
        let has_more = !state.items.is_empty();
        drop(state);
        if was_full && self.has_room() {
            let hook = self
                .on_room
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(hook) = hook {
                hook();
            }
        }
        if has_more {
            self.wake_runner();
        }
    }

    /// Replaces a flusher that panicked with a new instance (its `stop` is tried first, so that
    /// what it buffered is written); says what happened, or None when there is no rebuild.
    fn restart(&self) -> Option<String> {
        let rebuild = self.rebuild.get()?;
        let mut flusher = self.flusher.lock().unwrap_or_else(|e| e.into_inner());
        let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| flusher.stop()));
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(rebuild))
            .unwrap_or_else(|panic| Err(format!("it panicked: {}", panic_message(&panic))));
        Some(match built {
            Ok(fresh) => {
                // The old instance is dropped here, after its `stop`.
                *flusher = fresh;
                self.restarts.fetch_add(1, Ordering::Relaxed);
                match stopped {
                    Ok(()) => "restarted it".to_owned(),
                    Err(panic) => format!(
                        "restarted it (stopping the old instance panicked too: {})",
                        panic_message(&panic)
                    ),
                }
            }
            Err(e) => format!("could not restart it ({e}); the same instance is retried"),
        })
    }

    fn failed(&self, state: &mut State, now: Instant, why: &str) {
        self.failed_flushes.fetch_add(1, Ordering::Relaxed);
        state.retry_at = Some(now + state.backoff);
        // Logged each time: the backoff bounds it to one line per MAX_BACKOFF.
        tracing::warn!(
            pipeline = self.pipeline,
            flusher = self.flusher_type,
            retry_in_ms = state.backoff.as_millis() as u64,
            "flush failed, will retry: {why}"
        );
        state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
    }

    /// Takes no more batches (the pipeline is stopping); what is queued is still delivered.
    pub fn close(&self) {
        self.state().closed = true;
    }

    /// Whether everything queued was delivered.
    pub fn is_drained(&self) -> bool {
        let state = self.state();
        state.items.is_empty() && !state.busy
    }

    /// Gives up: what is still queued is dropped undelivered, and the flusher is stopped once no
    /// flush runs. Returns how many batches were dropped, and how many of them nothing upstream
    /// waits for (data that came back from the plugin base's own inputs: lost, unlike file data,
    /// whose checkpoints did not pass it and which is read again after a restart).
    pub fn abandon(&self) -> (usize, usize) {
        let mut state = self.state();
        state.closed = true;
        state.abandoned = true;
        let dropped = state.items.len();
        let lost = state.items.iter().filter(|g| g.acks.is_empty()).count();
        self.drop_abandoned(&mut state);
        (dropped, lost)
    }

    fn drop_abandoned(&self, state: &mut State) {
        let n = state.items.len();
        state.items.clear();
        self.len.fetch_sub(n, Ordering::AcqRel);
        if !state.busy && !self.stopped.swap(true, Ordering::AcqRel) {
            self.flusher
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stop();
        }
    }

    /// Stops the flusher after its last flush (the queue is drained and closed).
    pub fn stop_flusher(&self) {
        let state = self.state();
        if !state.busy && !self.stopped.swap(true, Ordering::AcqRel) {
            drop(state);
            self.flusher
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stop();
        }
    }
}

/// The text of a caught panic.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A flusher that fails its first `fail` calls, then delivers.
    struct Flaky {
        fail: usize,
        delivered: Arc<AtomicUsize>,
    }

    impl Flusher for Flaky {
        fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
            if self.fail > 0 {
                self.fail -= 1;
                return Err("down".into());
            }
            self.delivered.fetch_add(groups.len(), Ordering::SeqCst);
            groups.clear();
            Ok(())
        }
    }

    struct Panicky;

    impl Flusher for Panicky {
        fn flush(&mut self, _: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
            panic!("boom");
        }
    }

    fn one_event() -> PipelineEventGroup {
        let mut group = PipelineEventGroup::default();
        group
            .events
            .push(tailrace::PipelineEvent::Log(tailrace::LogEvent::new(
                1, None,
            )));
        group
    }

    #[test]
    fn a_failed_flush_keeps_the_batch_and_waits_before_retrying() {
        let delivered = Arc::new(AtomicUsize::new(0));
        let q = SenderQueue::new(
            "p",
            "f",
            Box::new(Flaky {
                fail: 1,
                delivered: delivered.clone(),
            }),
            2,
        );
        q.push(one_event()).unwrap();
        q.push(one_event()).unwrap();
        assert!(!q.has_room());
        let now = Instant::now();
        let batch = q.begin(now).unwrap();
        assert!(q.begin(now).is_err(), "busy while flushing");
        q.flush(batch);
        assert_eq!(q.len(), 2, "nothing delivered, nothing dropped");
        let due = q
            .begin(Instant::now())
            .err()
            .flatten()
            .expect("a retry time");
        assert!(due > now);
        let batch = q.begin(due).unwrap();
        q.flush(batch);
        assert_eq!(delivered.load(Ordering::SeqCst), 2);
        assert_eq!(q.len(), 0);
        assert!(q.is_drained());
    }

    #[test]
    fn a_panicking_flusher_is_caught_and_its_batch_kept() {
        let q = SenderQueue::new("p", "f", Box::new(Panicky), 4);
        q.push(one_event()).unwrap();
        let batch = q.begin(Instant::now()).unwrap();
        q.flush(batch);
        assert_eq!(q.panics.load(Ordering::Relaxed), 1);
        assert_eq!(q.len(), 1);
        assert_eq!(q.abandon(), (1, 1));
        assert_eq!(q.len(), 0);
    }

    /// A flusher that panics once and then refuses everything: only a new instance delivers.
    struct Broken {
        panicked: bool,
        delivered: Arc<AtomicUsize>,
    }

    impl Flusher for Broken {
        fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
            if self.panicked {
                return Err("broken since the panic".into());
            }
            if self.delivered.load(Ordering::SeqCst) == 0 {
                self.panicked = true;
                panic!("first flush");
            }
            self.delivered.fetch_add(groups.len(), Ordering::SeqCst);
            groups.clear();
            Ok(())
        }
    }

    #[test]
    fn a_panicked_flusher_is_rebuilt_and_the_new_instance_delivers_the_batch() {
        let delivered = Arc::new(AtomicUsize::new(0));
        let broken = |delivered: &Arc<AtomicUsize>| Broken {
            panicked: false,
            delivered: delivered.clone(),
        };
        let q = SenderQueue::new("p", "f", Box::new(broken(&delivered)), 4);
        let counter = delivered.clone();
        q.set_rebuild(Box::new(move || {
            // The new instance finds the count non-zero, so it does not panic.
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(broken(&counter)))
        }));
        q.push(one_event()).unwrap();
        q.flush(q.begin(Instant::now()).unwrap());
        assert_eq!(q.panics.load(Ordering::Relaxed), 1);
        assert_eq!(q.restarts.load(Ordering::Relaxed), 1);
        assert_eq!(q.len(), 1, "the batch waits for its retry");
        let due = q
            .begin(Instant::now())
            .err()
            .flatten()
            .expect("a retry time");
        q.flush(q.begin(due).unwrap());
        assert_eq!(
            delivered.load(Ordering::SeqCst),
            2,
            "one rebuild + one event"
        );
        assert!(q.is_drained());
    }

    #[test]
    fn a_closed_queue_refuses_batches() {
        let q = SenderQueue::new("p", "f", Box::new(Panicky), 4);
        q.close();
        assert!(q.push(PipelineEventGroup::default()).is_err());
        assert!(q.is_drained());
    }
}
