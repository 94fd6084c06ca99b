//! Reading one tracked file in a round: offering the batch that waited, noticing truncation,
//! reading up to `BLOCKS_PER_ROUND` blocks into batches for the process queue, flushing a line
//! that waited too long for its newline, and telling when a rotated-away file is done.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tailrace::PipelineEventGroup;

use crate::input::file::reader::{Read, ReadSettings};
use crate::input::file::resume::find_in_dir;
use crate::input::file::{
    Ack, BatchSink, FileAck, InputId, Tracked, BLOCKS_PER_ROUND, RELEASE_GRACE,
};

pub(super) struct ReadCtx<'a> {
    pub(super) settings: &'a ReadSettings<'a>,
    pub(super) sink: &'a dyn BatchSink,
    pub(super) acks: &'a Sender<Ack>,
    pub(super) input: InputId,
    pub(super) file: u64,
    pub(super) once: bool,
    /// How long a line without its newline waits for it (`FlushTimeoutSecs`).
    pub(super) flush_timeout: Duration,
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
pub(super) fn read_file(tracked: &mut Tracked, ctx: &ReadCtx<'_>) -> bool {
    if !tracked.file.is_open() {
        // Closed with nothing held back and nothing new: nothing to do (a closed file may also
        // hold a waiting batch or a partial line: those are handled below, reopening it).
        let quiet = tracked.waiting.is_none() && !tracked.file.has_partial();
        if quiet && !tracked.file.changed_while_closed() {
            tracked.at_eof_since.get_or_insert_with(Instant::now);
            return true;
        }
        if tracked.file.path_moved_on() {
            // Renamed or deleted while closed: read the rest where it is now, if it still is.
            let Some(path) = find_in_dir(&tracked.file.path, tracked.file.id) else {
                return false;
            };
            tracked.moved_from = Some(tracked.file.path.clone());
            tracked.file.moved_to(path);
            tracked.detached = true;
        }
    }
    if let Some(group) = tracked.waiting.take() {
        if !offer(tracked, ctx.sink, group) {
            return true;
        }
    }
    let size_before = tracked.file.last_size();
    match tracked.file.was_truncated() {
        Ok(true) => {
            // What was written past the read position before the truncation is gone.
            tracked.lost_bytes += size_before.saturating_sub(tracked.file.read_pos());
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
        && (ctx.once || tracked.detached || tracked.file.last_data.elapsed() >= ctx.flush_timeout)
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
