//! Delivery across the boundary (DESIGN §5): a batch a file pipeline hands to its part in the
//! plugin base counts as delivered only when it is, so that its checkpoint never passes data
//! the base still holds (a `kill -9` then loses nothing).
//!
//! Each batch goes to `ProcessLogGroup` with a pack id of its own (iLogtail's `packId`
//! argument). Tailrace's base reports, through `LogtailCtlCmd` with
//! [`TAILRACE_CTL_DELIVERED`](tailrace::adapter_abi::TAILRACE_CTL_DELIVERED), when every flusher
//! of its pipeline delivered that pack. One of those flushers may be `flusher_sls`, which sends
//! the data back to the host with `SendPb`; for the base, that is delivery once the host took
//! it, so the host also waits for its own native flushers: the groups that came back are
//! numbered in the order they arrived, and a pack reported when `n` groups had come back is
//! delivered once the first `n` are. (The base calls `SendPb` for a pack's data before it
//! reports the pack, so those `n` hold all of it; they may hold later packs' data too, which
//! only makes the wait a little longer.) Packs are acknowledged to the file input in the order
//! they were sent, so a checkpoint always advances over a contiguous prefix.
//!
//! A base that never reports (iLogtail's own) is told apart at load time, and its acceptance
//! counts as delivery.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tailrace::{Acks, DeliveryHook};

/// The delivery bookkeeping of one pipeline that sends data through the base.
pub struct Deliveries {
    /// Prefix of this pipeline's pack ids (unique per pipeline instance and process).
    prefix: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_pack: u64,
    /// Packs the base accepted and has not finished with yet, by sequence number.
    packs: BTreeMap<u64, Pack>,
    /// Groups that came back through `SendPb`: how many so far, and every one below
    /// `returned_done` was delivered by the native flushers (those above it in `returned_early`).
    returned: u64,
    returned_done: u64,
    returned_early: BTreeSet<u64>,
}

struct Pack {
    acks: Acks,
    /// Set by the base's report: delivered once this many returned groups are.
    after_returned: Option<u64>,
}

impl Deliveries {
    pub fn new(pipeline: &str, instance: u64) -> Arc<Deliveries> {
        // Pack ids look like iLogtail's: a hex source id, a dash, a sequence number.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in pipeline.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Arc::new(Deliveries {
            prefix: format!(
                "{:016X}",
                h ^ instance ^ u64::from(std::process::id()) << 32
            ),
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pack id for the next batch, and its sequence number.
    pub fn next_pack(&self) -> (u64, String) {
        let mut state = self.state();
        let seq = state.next_pack;
        state.next_pack += 1;
        (seq, format!("{}-{seq}", self.prefix))
    }

    /// Pack `seq` is about to go to the base: its acknowledgements wait for the base's report.
    /// Registered before `ProcessLogGroup` is called, because the base may process the pack
    /// and report it delivered before that call even returns (a report for a pack not yet
    /// known would be lost, and its checkpoint would wait for ever).
    pub fn sending(&self, seq: u64, acks: Acks) {
        self.state().packs.insert(
            seq,
            Pack {
                acks,
                after_returned: None,
            },
        );
    }

    /// The base refused pack `seq` (so it will never report it): forgotten, without its
    /// acknowledgements running. The batch is offered again later, as a new pack.
    pub fn refused(&self, seq: u64) {
        self.release(|state| {
            state.packs.remove(&seq);
        });
    }

    /// The base reports pack `pack_id` delivered; false when it is not one of this pipeline's.
    pub fn reported(&self, pack_id: &str) -> bool {
        let Some(seq) = pack_id
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|seq| seq.parse::<u64>().ok())
        else {
            return false;
        };
        self.release(|state| {
            let returned = state.returned;
            if let Some(pack) = state.packs.get_mut(&seq) {
                pack.after_returned = Some(returned);
            }
        });
        true
    }

    /// A group came back through `SendPb`: the hook its native deliveries run.
    pub fn returned(self: &Arc<Self>) -> Arc<dyn DeliveryHook> {
        let mut state = self.state();
        let seq = state.returned;
        state.returned += 1;
        Arc::new(Returned {
            deliveries: self.clone(),
            seq,
        })
    }

    /// Packs still waiting (for tests and, later, metrics).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.state().packs.len()
    }

    /// Applies `change`, then acknowledges (outside the lock) every pack at the front that is
    /// delivered now.
    fn release(&self, change: impl FnOnce(&mut State)) {
        let mut done = Vec::new();
        {
            let mut state = self.state();
            change(&mut state);
            let returned_done = state.returned_done;
            while let Some(entry) = state.packs.first_entry() {
                match entry.get().after_returned {
                    Some(n) if n <= returned_done => done.push(entry.remove().acks),
                    _ => break,
                }
            }
        }
        for acks in done {
            acks.delivered();
        }
    }
}

/// The hook of a group that came back through `SendPb`.
struct Returned {
    deliveries: Arc<Deliveries>,
    seq: u64,
}

impl DeliveryHook for Returned {
    fn delivered(&self) {
        self.deliveries.release(|state| {
            state.returned_early.insert(self.seq);
            while state.returned_early.remove(&state.returned_done) {
                state.returned_done += 1;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);

    impl DeliveryHook for Count {
        fn delivered(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn acks(count: &Arc<Count>) -> Acks {
        let mut acks = Acks::default();
        acks.push(count.clone());
        acks
    }

    #[test]
    fn a_refused_pack_is_forgotten_and_holds_nothing_up() {
        let d = Deliveries::new("p", 1);
        let (refused, later) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (s1, _) = d.next_pack();
        d.sending(s1, acks(&refused));
        let (s2, id2) = d.next_pack();
        d.sending(s2, acks(&later));
        d.refused(s1);
        assert!(d.reported(&id2));
        assert_eq!(
            refused.0.load(Ordering::SeqCst),
            0,
            "refused: not delivered"
        );
        assert_eq!(later.0.load(Ordering::SeqCst), 1);
        assert_eq!(d.waiting(), 0);
    }

    #[test]
    fn a_pack_waits_for_the_report_and_for_what_came_back() {
        let d = Deliveries::new("p", 1);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let (seq, id) = d.next_pack();
        d.sending(seq, acks(&count));
        // The base sends the pack's data back, then reports it.
        let back = d.returned();
        assert!(d.reported(&id));
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "not yet delivered natively"
        );
        back.delivered();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(d.waiting(), 0);
    }

    #[test]
    fn packs_are_acknowledged_in_order() {
        let d = Deliveries::new("p", 1);
        let first = Arc::new(Count(AtomicUsize::new(0)));
        let second = Arc::new(Count(AtomicUsize::new(0)));
        let (s1, id1) = d.next_pack();
        let (s2, id2) = d.next_pack();
        d.sending(s1, acks(&first));
        d.sending(s2, acks(&second));
        assert!(d.reported(&id2));
        assert_eq!(second.0.load(Ordering::SeqCst), 0, "waits for the first");
        assert!(d.reported(&id1));
        assert_eq!(first.0.load(Ordering::SeqCst), 1);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn out_of_order_native_deliveries_count_as_a_prefix() {
        let d = Deliveries::new("p", 1);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let (seq, id) = d.next_pack();
        d.sending(seq, acks(&count));
        let a = d.returned();
        let b = d.returned();
        assert!(d.reported(&id));
        b.delivered();
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        a.delivered();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn foreign_pack_ids_are_not_ours() {
        let d = Deliveries::new("p", 1);
        assert!(!d.reported("0000000000000000-1"));
        assert!(!d.reported("garbage"));
        let (seq, _) = d.next_pack();
        d.sending(seq, Acks::default());
        assert_eq!(d.waiting(), 1, "a foreign report releases nothing");
    }
}
