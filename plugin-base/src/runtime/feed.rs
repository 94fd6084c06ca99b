//! The queue in front of a pipeline's processors, bounded by groups *and* by bytes.
//!
//! A count of groups alone bounds nothing: a syslog or HTTP input batches up to a thousand
//! events or a megabyte per group, so iLogtail's 1,000-deep queue could hold a gigabyte under a
//! flood (a 200,000-message burst into syslog → Kafka peaked at 343 MiB of RSS). Each queued
//! group therefore also holds its estimated size in memory from a byte budget
//! (`DefaultLogQueueBytes`, 16 MiB by default), and a sender waits for room: the input stops
//! reading its sockets, the clients' kernels buffer, and TCP pushes back. A group larger than the
//! whole budget is let in alone once the queue is empty, never refused.

use std::mem::size_of;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tailrace::{PipelineEvent, PipelineEventGroup};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::context::statistics::{GroupSize, PluginStats};

/// A queued group and the room it takes from the budget (given back when it is taken out).
struct Queued {
    group: PipelineEventGroup,
    _room: OwnedSemaphorePermit,
}

/// Where inputs (and the host, through `ProcessLogGroup`) put groups for a pipeline.
#[derive(Clone)]
pub struct Feed {
    tx: mpsc::Sender<Queued>,
    room: Arc<Semaphore>,
    budget: u32,
    /// The input this end belongs to: what it queues counts as the input's output.
    stats: Option<Arc<PluginStats>>,
}

/// The processor task's end of the queue.
pub struct FeedReceiver {
    rx: mpsc::Receiver<Queued>,
}

/// Why a group could not be queued; it is handed back.
#[derive(Debug)]
pub enum FeedError {
    /// The pipeline is stopping.
    Closed(PipelineEventGroup),
    /// The queue stayed full (for the time allowed).
    Full(PipelineEventGroup),
}

impl FeedError {
    pub fn into_group(self) -> PipelineEventGroup {
        match self {
            FeedError::Closed(group) | FeedError::Full(group) => group,
        }
    }
}

/// A queue of at most `groups` groups and about `bytes` bytes of them.
pub fn channel(groups: usize, bytes: usize) -> (Feed, FeedReceiver) {
    let (tx, rx) = mpsc::channel(groups.max(1));
    let budget = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
    let feed = Feed {
        tx,
        room: Arc::new(Semaphore::new(budget as usize)),
        budget,
        stats: None,
    };
    (feed, FeedReceiver { rx })
}

// The error hands the group back (as tokio's own `SendError<T>` does): boxing it would cost an
// allocation on the path that matters, a full queue.
#[allow(clippy::result_large_err)]
impl Feed {
    /// This feed for one input: the groups it queues are counted as its `plugin_out_*`.
    pub fn for_input(&self, stats: Arc<PluginStats>) -> Feed {
        Feed {
            stats: Some(stats),
            ..self.clone()
        }
    }

    /// Puts the group in a reserved slot, counting it for the input.
    fn put(
        &self,
        slot: mpsc::Permit<'_, Queued>,
        group: PipelineEventGroup,
        room: OwnedSemaphorePermit,
    ) {
        if let Some(stats) = &self.stats {
            stats.add_out(GroupSize::of(&group));
        }
        slot.send(Queued { group, _room: room });
    }

    /// The room a group takes: its estimate, capped so that any group fits an empty queue.
    fn room_for(&self, group: &PipelineEventGroup) -> u32 {
        u32::try_from(footprint(group))
            .unwrap_or(u32::MAX)
            .clamp(1, self.budget)
    }

    /// Queues the group, waiting for room.
    pub async fn send(&self, group: PipelineEventGroup) -> Result<(), FeedError> {
        let need = self.room_for(&group);
        let Ok(room) = self.room.clone().acquire_many_owned(need).await else {
            return Err(FeedError::Closed(group));
        };
        match self.tx.reserve().await {
            Ok(slot) => {
                self.put(slot, group, room);
                Ok(())
            }
            Err(_) => Err(FeedError::Closed(group)),
        }
    }

    /// Queues the group, waiting at most `wait` for room.
    pub async fn send_timeout(
        &self,
        group: PipelineEventGroup,
        wait: Duration,
    ) -> Result<(), FeedError> {
        // The group stays here while waiting, so a timeout can hand it back.
        let need = self.room_for(&group);
        let queued = tokio::time::timeout(wait, async {
            let room = self.room.clone().acquire_many_owned(need).await.ok()?;
            let slot = self.tx.reserve().await.ok()?;
            Some((room, slot))
        })
        .await;
        match queued {
            Ok(Some((room, slot))) => {
                self.put(slot, group, room);
                Ok(())
            }
            Ok(None) => Err(FeedError::Closed(group)),
            Err(_) if self.tx.is_closed() => Err(FeedError::Closed(group)),
            Err(_) => Err(FeedError::Full(group)),
        }
    }

    /// Queues the group if there is room now.
    pub fn try_send(&self, group: PipelineEventGroup) -> Result<(), FeedError> {
        let need = self.room_for(&group);
        let room = match self.room.clone().try_acquire_many_owned(need) {
            Ok(room) => room,
            Err(TryAcquireError::NoPermits) if !self.tx.is_closed() => {
                return Err(FeedError::Full(group))
            }
            Err(_) => return Err(FeedError::Closed(group)),
        };
        match self.tx.try_reserve() {
            Ok(slot) => {
                self.put(slot, group, room);
                Ok(())
            }
            Err(TrySendError::Full(())) => Err(FeedError::Full(group)),
            Err(TrySendError::Closed(())) => Err(FeedError::Closed(group)),
        }
    }

    /// Whether the pipeline stopped taking groups.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl FeedReceiver {
    /// The next group; None once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<PipelineEventGroup> {
        self.rx.recv().await.map(|q| q.group)
    }

    /// The next group if one is queued (errors as tokio's `mpsc` has them).
    pub fn try_recv(&mut self) -> Result<PipelineEventGroup, mpsc::error::TryRecvError> {
        self.rx.try_recv().map(|q| q.group)
    }
}

/// What a group costs in memory, about: each event and its fields' views, plus the bytes they
/// view (counted per view: views into one shared buffer overstate it, which errs on the safe
/// side), plus a group's own buffer.
pub fn footprint(group: &PipelineEventGroup) -> usize {
    let pair = size_of::<(Bytes, Bytes)>();
    let fields = |pairs: &[(Bytes, Bytes)]| {
        pairs
            .iter()
            .map(|(k, v)| pair + k.len() + v.len())
            .sum::<usize>()
    };
    let events: usize = group
        .events
        .iter()
        .map(|event| {
            size_of::<PipelineEvent>()
                + match event {
                    PipelineEvent::Log(log) => fields(&log.contents),
                    PipelineEvent::Raw(raw) => raw.content.len(),
                    PipelineEvent::Metric(m) => 128 + m.name.len() + fields(&m.tags),
                    PipelineEvent::Span(s) => {
                        256 + s.name.len()
                            + s.trace_id.len()
                            + s.span_id.len()
                            + fields(&s.attributes)
                    }
                }
        })
        .sum();
    size_of::<PipelineEventGroup>() + events + fields(&group.tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailrace::LogEvent;

    fn group_of(lines: usize, line: &'static [u8]) -> PipelineEventGroup {
        let mut group = PipelineEventGroup::default();
        for _ in 0..lines {
            let mut log = LogEvent::new(1, None);
            log.contents
                .push((Bytes::from_static(b"content"), Bytes::from_static(line)));
            group.events.push(PipelineEvent::Log(log));
        }
        group
    }

    #[tokio::test]
    async fn a_full_byte_budget_holds_senders_until_the_receiver_takes_a_group() {
        let one = footprint(&group_of(10, b"0123456789"));
        let (feed, mut rx) = channel(1000, one * 2);
        feed.try_send(group_of(10, b"0123456789")).unwrap();
        feed.try_send(group_of(10, b"0123456789")).unwrap();
        // The group count has room; the bytes do not.
        assert!(matches!(
            feed.try_send(group_of(10, b"0123456789")),
            Err(FeedError::Full(_))
        ));
        let waited = feed
            .send_timeout(group_of(10, b"0123456789"), Duration::from_millis(20))
            .await;
        assert!(matches!(waited, Err(FeedError::Full(g)) if g.len() == 10));
        let sender = feed.clone();
        let blocked = tokio::spawn(async move { sender.send(group_of(10, b"abc")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!blocked.is_finished());
        assert_eq!(rx.recv().await.unwrap().len(), 10);
        blocked.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_inputs_feed_counts_what_it_queued_and_nothing_it_could_not() {
        let stats = Arc::new(PluginStats::default());
        let (feed, _rx) = channel(2, 1 << 20);
        let input = feed.for_input(stats.clone());
        input.send(group_of(3, b"abc")).await.unwrap();
        input.try_send(group_of(2, b"abc")).unwrap();
        assert!(input.try_send(group_of(5, b"abc")).is_err());
        feed.try_send(group_of(7, b"abc")).unwrap_err();
        assert_eq!(
            stats.events_out.load(std::sync::atomic::Ordering::Relaxed),
            5
        );
    }

    #[tokio::test]
    async fn a_group_larger_than_the_budget_goes_in_alone() {
        let (feed, mut rx) = channel(1000, 100);
        feed.try_send(group_of(100, b"a long line")).unwrap();
        assert!(matches!(
            feed.try_send(group_of(1, b"x")),
            Err(FeedError::Full(_))
        ));
        assert_eq!(rx.recv().await.unwrap().len(), 100);
        feed.try_send(group_of(1, b"x")).unwrap();
    }

    #[tokio::test]
    async fn a_dropped_receiver_closes_the_feed_and_gives_the_room_back() {
        let (feed, rx) = channel(4, 1 << 20);
        feed.try_send(group_of(1, b"x")).unwrap();
        drop(rx);
        assert!(feed.is_closed());
        assert!(matches!(
            feed.send(group_of(1, b"y")).await,
            Err(FeedError::Closed(_))
        ));
        assert!(matches!(
            feed.try_send(group_of(1, b"z")),
            Err(FeedError::Closed(_))
        ));
    }
}
