//! The flusher runner: a fixed pool of threads serving every sender queue (every native
//! flusher of every pipeline, and every pipeline's feed to the plugin base). A thread takes all
//! a due queue holds, flushes it, and moves on; a failed flush sets the queue's retry time
//! instead of sleeping, so one unreachable destination never holds a thread.
//!
//! A flusher can still block inside its write (a FIFO nobody reads, a hung plugin base). A
//! watchdog notices a thread that has been in one flush for [`BLOCKED_AFTER`], lets it leave
//! the pool (it ends once its flush returns) and starts a fresh thread in its place: a blocked
//! flusher occupies its own queue, never the shared pool. Threads grow only while flushes are
//! blocked, by one per blocked flush, never with the number of pipelines.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::queue::SenderQueue;

/// A flush taking longer than this moves its thread out of the pool.
pub const BLOCKED_AFTER: Duration = Duration::from_secs(2);
/// How often the watchdog looks.
const WATCHDOG_INTERVAL: Duration = Duration::from_millis(500);

pub struct FlusherRunner {
    shared: Arc<Shared>,
    watchdog: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a queue may have become due, and at shutdown.
    work: Condvar,
    /// Signalled at shutdown (the watchdog's sleep).
    stop: Condvar,
    pool_size: usize,
}

#[derive(Default)]
struct State {
    queues: Vec<Arc<SenderQueue>>,
    cursor: usize,
    workers: Vec<Worker>,
    next_worker: u64,
    shutdown: bool,
}

struct Worker {
    id: u64,
    /// When its current flush started, and of which queue.
    busy: Option<(Instant, Arc<SenderQueue>)>,
    /// Left the pool for a blocked flush; ends when the flush returns.
    detached: bool,
    thread: Option<JoinHandle<()>>,
}

impl FlusherRunner {
    pub fn start(pool_size: usize) -> FlusherRunner {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            stop: Condvar::new(),
            pool_size: pool_size.max(1),
        });
        {
            let mut state = shared.lock();
            for _ in 0..shared.pool_size {
                spawn_worker(&shared, &mut state);
            }
        }
        let watchdog = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("flusher-watchdog".into())
                .spawn(move || watchdog(&shared))
                .expect("spawn the flusher watchdog")
        };
        FlusherRunner {
            shared,
            watchdog: Some(watchdog),
        }
    }

    /// Serves `queue` from now on.
    pub fn add(&self, queue: Arc<SenderQueue>) {
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        queue.set_wake(Arc::new(move || {
            if let Some(shared) = weak.upgrade() {
                shared.wake();
            }
        }));
        self.shared.lock().queues.push(queue);
        self.shared.wake();
    }

    /// No longer serves `queue` (a flush in progress finishes).
    pub fn remove(&self, queue: &Arc<SenderQueue>) {
        self.shared.lock().queues.retain(|q| !Arc::ptr_eq(q, queue));
    }

    /// Threads in the pool (not counting those out for a blocked flush).
    #[cfg(test)]
    fn pool_threads(&self) -> usize {
        self.shared
            .lock()
            .workers
            .iter()
            .filter(|w| !w.detached)
            .count()
    }
}

impl Drop for FlusherRunner {
    fn drop(&mut self) {
        let threads: Vec<JoinHandle<()>> = {
            let mut state = self.shared.lock();
            state.shutdown = true;
            state
                .workers
                .iter_mut()
                .filter(|w| w.busy.is_none())
                .filter_map(|w| w.thread.take())
                .collect()
        };
        self.shared.work.notify_all();
        self.shared.stop.notify_all();
        // Threads blocked in a flush are left behind: the process is ending.
        for thread in threads {
            let _ = thread.join();
        }
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        // Taking the lock orders this after a worker's scan, so the wake-up is not lost.
        drop(self.lock());
        self.work.notify_all();
    }
}

fn spawn_worker(shared: &Arc<Shared>, state: &mut State) {
    let id = state.next_worker;
    state.next_worker += 1;
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("flusher-{id}"))
            .spawn(move || work(&shared, id))
            .expect("spawn a flusher thread")
    };
    state.workers.push(Worker {
        id,
        busy: None,
        detached: false,
        thread: Some(thread),
    });
}

fn work(shared: &Shared, id: u64) {
    let mut state = shared.lock();
    loop {
        let me = state.workers.iter().position(|w| w.id == id);
        if state.shutdown || me.is_none_or(|i| state.workers[i].detached) {
            state.workers.retain(|w| w.id != id);
            return;
        }
        let now = Instant::now();
        let n = state.queues.len();
        let mut due: Option<Instant> = None;
        let mut found = None;
        for i in 0..n {
            let at = (state.cursor + i) % n;
            match state.queues[at].begin(now) {
                Ok(batch) => {
                    found = Some((at, batch));
                    break;
                }
                Err(Some(at)) => due = Some(due.map_or(at, |d| d.min(at))),
                Err(None) => {}
            }
        }
        let Some((at, batch)) = found else {
            state = match due {
                Some(due) => {
                    shared
                        .work
                        .wait_timeout(state, due.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => shared.work.wait(state).unwrap_or_else(|e| e.into_inner()),
            };
            continue;
        };
        state.cursor = (at + 1) % n;
        let queue = state.queues[at].clone();
        if let Some(me) = state.workers.iter_mut().find(|w| w.id == id) {
            me.busy = Some((now, queue.clone()));
        }
        drop(state);
        queue.flush(batch);
        state = shared.lock();
        if let Some(me) = state.workers.iter_mut().find(|w| w.id == id) {
            me.busy = None;
            if me.detached {
                tracing::info!(
                    pipeline = queue.pipeline,
                    flusher = queue.flusher_type,
                    "the blocked flush returned after {:.1}s",
                    now.elapsed().as_secs_f64()
                );
            }
        }
    }
}

fn watchdog(shared: &Arc<Shared>) {
    let mut state = shared.lock();
    loop {
        state = shared
            .stop
            .wait_timeout(state, WATCHDOG_INTERVAL)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        if state.shutdown {
            return;
        }
        let mut blocked = 0;
        for worker in state.workers.iter_mut().filter(|w| !w.detached) {
            let Some((since, queue)) = &worker.busy else {
                continue;
            };
            if since.elapsed() < BLOCKED_AFTER {
                continue;
            }
            worker.detached = true;
            // Its handle is dropped: the thread ends by itself once the flush returns.
            worker.thread = None;
            blocked += 1;
            tracing::warn!(
                pipeline = queue.pipeline,
                flusher = queue.flusher_type,
                "a flush has been blocked for {:.1}s; its thread leaves the shared flusher pool \
                 (the other pipelines are not held up)",
                since.elapsed().as_secs_f64()
            );
        }
        for _ in 0..blocked {
            spawn_worker(shared, &mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tailrace::plugin::Flusher;
    use tailrace::PipelineEventGroup;

    struct Counting(Arc<AtomicUsize>);

    impl Flusher for Counting {
        fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
            self.0.fetch_add(groups.len(), Ordering::SeqCst);
            groups.clear();
            Ok(())
        }
    }

    /// Blocks in its flush until released.
    struct Stuck(Arc<AtomicBool>);

    impl Flusher for Stuck {
        fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
            while !self.0.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            groups.clear();
            Ok(())
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

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_blocked_flusher_leaves_the_pool_and_the_others_keep_flowing() {
        let runner = FlusherRunner::start(1);
        let release = Arc::new(AtomicBool::new(false));
        let stuck = SenderQueue::new("stuck", "f", Box::new(Stuck(release.clone())), 8);
        let count = Arc::new(AtomicUsize::new(0));
        let fine = SenderQueue::new("fine", "f", Box::new(Counting(count.clone())), 8);
        runner.add(stuck.clone());
        runner.add(fine.clone());
        stuck.push(one_event()).unwrap();
        // With a pool of one, the healthy queue is served only once the stuck thread left.
        for i in 1..=20 {
            fine.push(one_event()).unwrap();
            wait_for("the healthy flusher", || count.load(Ordering::SeqCst) == i);
        }
        assert_eq!(runner.pool_threads(), 1, "the pool keeps its size");
        release.store(true, Ordering::SeqCst);
        wait_for("the stuck flusher", || stuck.is_drained());
        assert_eq!(stuck.len(), 0);
    }
}
