//! The process queues: one bounded queue per pipeline between its input and the processor
//! runner, all held by one [`ProcessQueues`] so that a fixed pool of processor threads serves
//! any number of pipelines (iLogtail's bus mode, LoongCollector's ProcessQueueManager).
//!
//! A queue is popped only when it is not being processed already (a pipeline's batches are
//! processed one at a time, in order, so that checkpoints advance in order) and when every
//! sender queue downstream has room (a full sender queue pauses its process queue; the full
//! process queue in turn pauses reading for that pipeline only). Queues are served by priority
//! — LoongCollector's levels: `global.Priority` 1 is the highest, then 2, then 3, and 0 (the
//! default) the lowest — and round robin within a level.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tailrace::plugin::Processor;
use tailrace::PipelineEventGroup;

use crate::queue::sender::SenderQueue;

/// Priority levels, highest first.
pub const LEVELS: usize = 4;

/// The level of a pipeline's `global.Priority` (LoongCollector's mapping): 1..=3 are levels
/// 0..=2, and 0 (unset) the lowest level.
pub fn level_of_priority(priority: u64) -> usize {
    match priority {
        1..=3 => priority as usize - 1,
        _ => LEVELS - 1,
    }
}

/// What the processor runner does with a pipeline's batches: its processors, then its sender
/// queues.
pub struct Work {
    pub pipeline: String,
    /// Its counters (events in and out), shown on /metrics.
    pub stats: Arc<crate::monitor::PipelineStats>,
    pub processors: Mutex<Vec<Box<dyn Processor>>>,
    pub outputs: Vec<Arc<SenderQueue>>,
}

impl Work {
    fn outputs_have_room(&self) -> bool {
        self.outputs.iter().all(|q| q.has_room())
    }
}

/// The shared set of process queues.
#[derive(Clone)]
pub struct ProcessQueues {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a queue may have become poppable.
    ready: Condvar,
}

#[derive(Default)]
struct State {
    queues: HashMap<u64, Slot>,
    /// Queue ids by level, served round robin from `cursor`.
    levels: [Vec<u64>; LEVELS],
    cursors: [usize; LEVELS],
    next_id: u64,
    shutdown: bool,
}

struct Slot {
    items: VecDeque<PipelineEventGroup>,
    capacity: usize,
    level: usize,
    /// A processor thread holds a batch of this queue.
    busy: bool,
    closed: bool,
    work: Arc<Work>,
}

/// A batch taken by a processor thread; give it back with [`ProcessQueues::done`].
pub struct Job {
    pub id: u64,
    pub group: PipelineEventGroup,
    pub work: Arc<Work>,
}

impl Default for ProcessQueues {
    fn default() -> Self {
        ProcessQueues::new()
    }
}

impl ProcessQueues {
    pub fn new() -> ProcessQueues {
        ProcessQueues {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                ready: Condvar::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a pipeline's queue; returns the handle its input pushes to.
    pub fn add(&self, work: Work, capacity: usize, level: usize) -> ProcessQueueHandle {
        let level = level.min(LEVELS - 1);
        let work = Arc::new(work);
        for q in &work.outputs {
            let queues = self.clone();
            q.set_on_room(Arc::new(move || queues.wake()));
        }
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        state.queues.insert(
            id,
            Slot {
                items: VecDeque::new(),
                capacity,
                level,
                busy: false,
                closed: false,
                work,
            },
        );
        state.levels[level].push(id);
        ProcessQueueHandle {
            id,
            queues: self.clone(),
        }
    }

    /// Batches queued in process queue `id`, and its capacity (None once it is removed).
    pub fn depth(&self, id: u64) -> Option<(usize, usize)> {
        let state = self.state();
        let slot = state.queues.get(&id)?;
        Some((slot.items.len(), slot.capacity))
    }

    /// Wakes the processor threads: a queue may have become poppable.
    pub fn wake(&self) {
        // Taking the lock orders this after a thread's scan, so the wake-up is not lost.
        drop(self.state());
        self.shared.ready.notify_all();
    }

    fn push(&self, id: u64, group: PipelineEventGroup) -> Result<(), PipelineEventGroup> {
        let mut state = self.state();
        let Some(slot) = state.queues.get_mut(&id) else {
            return Err(group);
        };
        if slot.closed || slot.items.len() >= slot.capacity {
            return Err(group);
        }
        slot.items.push_back(group);
        drop(state);
        self.shared.ready.notify_one();
        Ok(())
    }

    fn has_room(&self, id: u64) -> bool {
        self.state()
            .queues
            .get(&id)
            .is_some_and(|s| !s.closed && s.items.len() < s.capacity)
    }

    /// For a processor thread: the next batch to process, by priority and round robin; waits
    /// while there is none. None once [`ProcessQueues::shutdown`] was called.
    pub fn next_job(&self) -> Option<Job> {
        let mut state = self.state();
        loop {
            if state.shutdown {
                return None;
            }
            if let Some(job) = state.pop() {
                return Some(job);
            }
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// For a processor thread: the job's batch was handed on.
    pub fn done(&self, id: u64) {
        let mut state = self.state();
        let more = match state.queues.get_mut(&id) {
            Some(slot) => {
                slot.busy = false;
                !slot.items.is_empty()
            }
            None => false,
        };
        drop(state);
        if more {
            self.shared.ready.notify_one();
        }
    }

    /// Takes no more batches into queue `id`; what it holds is still processed.
    pub fn close(&self, id: u64) {
        if let Some(slot) = self.state().queues.get_mut(&id) {
            slot.closed = true;
        }
    }

    /// Whether queue `id` is empty and none of its batches is being processed.
    pub fn is_drained(&self, id: u64) -> bool {
        self.state()
            .queues
            .get(&id)
            .is_none_or(|s| s.items.is_empty() && !s.busy)
    }

    /// Removes queue `id`; what it still holds is dropped undelivered (its checkpoints did not
    /// pass it, so it is read again). Returns how many batches were dropped.
    pub fn remove(&self, id: u64) -> usize {
        let mut state = self.state();
        let Some(slot) = state.queues.remove(&id) else {
            return 0;
        };
        let level = slot.level;
        state.levels[level].retain(|&q| q != id);
        let len = state.levels[level].len();
        if state.cursors[level] >= len {
            state.cursors[level] = 0;
        }
        slot.items.len()
    }

    /// Ends every processor thread's wait.
    pub fn shutdown(&self) {
        self.state().shutdown = true;
        self.shared.ready.notify_all();
    }
}

impl State {
    fn pop(&mut self) -> Option<Job> {
        for level in 0..LEVELS {
            let n = self.levels[level].len();
            let start = self.cursors[level];
            for i in 0..n {
                let at = (start + i) % n;
                let id = self.levels[level][at];
                let slot = self.queues.get_mut(&id).expect("listed queues exist");
                if slot.busy || slot.items.is_empty() || !slot.work.outputs_have_room() {
                    continue;
                }
                let group = slot.items.pop_front().expect("not empty");
                slot.busy = true;
                self.cursors[level] = (at + 1) % n;
                return Some(Job {
                    id,
                    group,
                    work: slot.work.clone(),
                });
            }
        }
        None
    }
}

/// What an input holds to push into its pipeline's process queue.
pub struct ProcessQueueHandle {
    pub id: u64,
    queues: ProcessQueues,
}

impl ProcessQueueHandle {
    /// Queues a batch; hands it back when the queue is full or closed (never blocks).
    pub fn try_push(&self, group: PipelineEventGroup) -> Result<(), PipelineEventGroup> {
        self.queues.push(self.id, group)
    }
}

impl crate::input::file::BatchSink for ProcessQueueHandle {
    fn try_send(&self, group: PipelineEventGroup) -> Result<(), PipelineEventGroup> {
        self.try_push(group)
    }

    fn has_room(&self) -> bool {
        self.queues.has_room(self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(name: &str, outputs: Vec<Arc<SenderQueue>>) -> Work {
        Work {
            pipeline: name.into(),
            stats: Arc::default(),
            processors: Mutex::new(Vec::new()),
            outputs,
        }
    }

    fn group(tag: &str) -> PipelineEventGroup {
        let mut g = PipelineEventGroup::default();
        g.set_metadata("which", tag.to_owned());
        g
    }

    fn which(job: &Job) -> String {
        job.group.metadata("which").unwrap_or_default().to_owned()
    }

    #[test]
    fn priority_levels_follow_loongcollector() {
        assert_eq!(level_of_priority(1), 0);
        assert_eq!(level_of_priority(3), 2);
        assert_eq!(level_of_priority(0), LEVELS - 1);
        assert_eq!(level_of_priority(9), LEVELS - 1);
    }

    #[test]
    fn higher_priority_first_then_round_robin() {
        let queues = ProcessQueues::new();
        let low_a = queues.add(work("a", vec![]), 8, level_of_priority(0));
        let low_b = queues.add(work("b", vec![]), 8, level_of_priority(0));
        let high = queues.add(work("h", vec![]), 8, level_of_priority(1));
        for _ in 0..2 {
            low_a.try_push(group("a")).unwrap();
            low_b.try_push(group("b")).unwrap();
        }
        high.try_push(group("h")).unwrap();
        let mut order = Vec::new();
        for _ in 0..5 {
            let job = queues.next_job().unwrap();
            order.push(which(&job));
            queues.done(job.id);
        }
        assert_eq!(order, ["h", "a", "b", "a", "b"]);
    }

    #[test]
    fn one_batch_of_a_pipeline_at_a_time() {
        let queues = ProcessQueues::new();
        let a = queues.add(work("a", vec![]), 8, 0);
        let b = queues.add(work("b", vec![]), 8, 0);
        a.try_push(group("a")).unwrap();
        a.try_push(group("a")).unwrap();
        b.try_push(group("b")).unwrap();
        let first = queues.next_job().unwrap();
        let second = queues.next_job().unwrap();
        assert_eq!((which(&first), which(&second)), ("a".into(), "b".into()));
        queues.done(first.id);
        assert_eq!(which(&queues.next_job().unwrap()), "a");
    }

    #[test]
    fn a_full_queue_hands_the_batch_back_and_a_full_output_pauses_it() {
        struct Sink;
        impl tailrace::plugin::Flusher for Sink {
            fn flush(&mut self, g: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
                g.clear();
                Ok(())
            }
        }
        let out = SenderQueue::new("a", "sink", Box::new(Sink), 1);
        let queues = ProcessQueues::new();
        let a = queues.add(work("a", vec![out.clone()]), 1, 0);
        a.try_push(group("1")).unwrap();
        assert!(a.try_push(group("2")).is_err(), "capacity 1");
        out.push(group("x")).unwrap();
        // The output is full: nothing to pop.
        let state = &mut queues.state();
        assert!(state.pop().is_none());
    }

    #[test]
    fn removed_queue_drops_what_it_held() {
        let queues = ProcessQueues::new();
        let a = queues.add(work("a", vec![]), 8, 0);
        a.try_push(group("a")).unwrap();
        queues.close(a.id);
        assert!(a.try_push(group("a")).is_err());
        assert!(!queues.is_drained(a.id));
        assert_eq!(queues.remove(a.id), 1);
        assert!(queues.is_drained(a.id));
    }
}
