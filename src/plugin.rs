//! The plugin interfaces shared by the host's native plugins and the plugin base's extended
//! ones. They are synchronous and work on whole groups: a processor sees a batch, never a single
//! event, so a batch crosses every stage (and the ABI) whole.

use crate::event::PipelineEventGroup;

/// Turns a group into another group in place (parse, add fields, filter, ...).
pub trait Processor: Send {
    /// Hands the processor its services (alarms, checkpoints) from the side that runs it, once,
    /// before the first batch.
    fn init(&mut self, services: std::sync::Arc<dyn crate::context::Services>) {
        let _ = services;
    }
    fn process(&mut self, group: &mut PipelineEventGroup);
    /// Does what [`Processor::process`] does, but writes the logs it leaves straight into
    /// `out` as a LogGroup's logs (field 1, repeated; the bytes `proto::encode_group` would
    /// write for them), and leaves `group.events` empty. Returns how many logs it wrote, or
    /// `None`, with `group` untouched, when it has no such path.
    ///
    /// Why: the host calls it for the last processor of a chain whose outputs all take
    /// LogGroups (`Flusher::takes_encoded`). A parser then writes each field once, where it
    /// found it, instead of building it (a view, a reference count, a slot in a list on the
    /// heap), reading it back to serialize it, and freeing it: for a line split into ten
    /// columns, most of the cost.
    fn process_encoded(
        &mut self,
        group: &mut PipelineEventGroup,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let _ = (group, out);
        None
    }
    /// Whether [`Processor::process_encoded`] takes a group's [`crate::Lines`] as they are
    /// (else the runner makes them into events first). Only a parser of a line at a time that
    /// writes LogGroups does: the file reader then hands it lines, when it is the pipeline's one
    /// processor, and no event is ever made for them.
    fn takes_lines(&self) -> bool {
        false
    }
    /// Values it failed to parse so far (statistics; 0 for a processor that does not parse).
    fn parse_failures(&self) -> u64 {
        0
    }
}

/// A pull input: called once per interval to collect what it has (iLogtail's MetricInput).
pub trait MetricInput: Send {
    fn collect(&mut self, out: &mut Vec<PipelineEventGroup>);
    /// The input's own collect interval; None: the pipeline's `InputIntervalMs` (iLogtail's
    /// MetricInput returns it from `Init`, 0 meaning the global one).
    fn interval(&self) -> Option<std::time::Duration> {
        None
    }
    /// Called once when the pipeline stops, after the last `collect`: the place to save a
    /// checkpoint that the next instance (after a reload or a restart) continues from.
    fn stop(&mut self) {}
}

/// Packs processed groups into the batches the flushers send.
pub trait Aggregator: Send {
    /// Takes a group; returns the batches that became full.
    fn add(&mut self, group: PipelineEventGroup) -> Vec<PipelineEventGroup>;
    /// Everything still held, at each aggregation interval and at stop.
    fn flush(&mut self) -> Vec<PipelineEventGroup>;
}

/// Delivers batches somewhere.
pub trait Flusher: Send {
    /// Whether the destination takes data now; when false the runner keeps the data and asks
    /// again later (backpressure).
    fn is_ready(&mut self) -> bool {
        true
    }
    /// Delivers `groups`, in order. On return `groups` holds what was *not* delivered (empty
    /// after `Ok`), in order, and the runner retries it later: nothing is dropped, and a flusher
    /// that panics half-way leaves the rest in place too. A flusher that sends several groups
    /// at once may leave any of them, not only a tail.
    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String>;
    /// Called once when the pipeline stops, after the last flush.
    fn stop(&mut self) {}
    /// True for a flusher that acknowledges delivery itself, later than the flush returns (the
    /// feed to the plugin base, which reports delivery afterwards): the runner then leaves the
    /// acknowledgements of the groups it hands over to the flusher, and gives it every group,
    /// empty ones included, so that they stay in order.
    fn takes_acks(&self) -> bool {
        false
    }
    /// True for a flusher that needs only the LogGroup wire form of what it gets (what
    /// `proto::encode_group` writes; read it with `proto::log_group_bytes`). The host's
    /// processor thread then serializes each batch and drops its events before handing it
    /// over (see [`crate::EncodedLogs`] for why): the flusher gets groups whose `encoded` holds
    /// their logs and whose `events` are empty.
    fn takes_encoded(&self) -> bool {
        false
    }
}
