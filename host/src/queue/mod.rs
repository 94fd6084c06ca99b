//! Bounded queues between the stages: a process queue per pipeline (input → processor runner)
//! and a sender queue per flusher (processor runner or the plugin base → flusher runner).
//! Bounded means backpressure: a full sender queue blocks the processor runner, whose full
//! process queue pauses reading; memory stays bounded whatever the input rate.

use crossbeam_channel::{Receiver, Sender};
use tailrace::PipelineEventGroup;

/// Batches a pipeline's process queue holds.
pub const PROCESS_QUEUE_CAPACITY: usize = 8;
/// Batches a flusher's sender queue holds.
pub const SENDER_QUEUE_CAPACITY: usize = 8;

pub type QueueSender = Sender<PipelineEventGroup>;
pub type QueueReceiver = Receiver<PipelineEventGroup>;

pub fn process_queue() -> (QueueSender, QueueReceiver) {
    crossbeam_channel::bounded(PROCESS_QUEUE_CAPACITY)
}

pub fn sender_queue() -> (QueueSender, QueueReceiver) {
    crossbeam_channel::bounded(SENDER_QUEUE_CAPACITY)
}
