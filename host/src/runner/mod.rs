//! The fixed thread pools that move batches for every pipeline (bus mode): the processor
//! runner takes batches from the process queues, the flusher runner delivers what the sender
//! queues hold. Neither grows with the number of pipelines.

pub mod flusher;
pub mod processor;

/// Default size of each pool: one thread per core, at most four.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
}

use crate::queue::ProcessQueues;

/// The runners every pipeline shares.
pub struct Runners {
    pub queues: ProcessQueues,
    /// Held for its threads: dropping it ends them.
    _processors: processor::ProcessorRunner,
    pub flushers: flusher::FlusherRunner,
}

impl Runners {
    /// `threads` processor threads and as many flusher threads.
    pub fn start(threads: usize) -> Runners {
        let queues = ProcessQueues::new();
        Runners {
            _processors: processor::ProcessorRunner::start(queues.clone(), threads),
            flushers: flusher::FlusherRunner::start(threads),
            queues,
        }
    }
}
