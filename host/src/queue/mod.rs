//! Bounded queues between the stages, LoongCollector's shape: a process queue per pipeline
//! (input → processor runner, [`process`]) and a sender queue per flusher instance (processor
//! runner or the plugin base → flusher runner, [`sender`]). Bounded means backpressure: a full
//! sender queue pauses its process queue, whose fullness pauses reading for that pipeline only;
//! memory stays bounded whatever the input rate, and no thread belongs to one pipeline.

pub mod process;
pub mod sender;

pub use process::{ProcessQueues, Work};
pub use sender::SenderQueue;

/// Batches a pipeline's process queue holds.
pub const PROCESS_QUEUE_CAPACITY: usize = 8;
/// Batches a flusher's sender queue holds (queued and being flushed).
pub const SENDER_QUEUE_CAPACITY: usize = 8;
