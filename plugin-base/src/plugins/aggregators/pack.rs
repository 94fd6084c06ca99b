//! Packing events into batches, the part every aggregator shares: events with the same key go
//! to the same open batch, in arrival order; a batch leaves when it holds `max_events` events
//! or one more would take it past `max_bytes` (iLogtail's 1024 logs and 3 MiB), and every open
//! batch leaves at `flush` (each aggregation interval, and when the pipeline stops). Batches
//! leave in the order their keys first came, oldest first within a key, so each source's
//! events stay in order.

use std::collections::HashMap;
use std::hash::Hash;

use tailrace::{PipelineEvent, PipelineEventGroup};

use crate::context::statistics::event_bytes;

/// iLogtail's `MaxLogCount` default.
pub const DEFAULT_MAX_EVENTS: usize = 1024;
/// iLogtail's `MaxLogGroupSize`: 3 MiB.
pub const DEFAULT_MAX_BYTES: usize = 3 * 1024 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_events: usize,
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events: DEFAULT_MAX_EVENTS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl Limits {
    /// Checks the options; the error names them.
    pub fn checked(self, count_option: &str, size_option: &str) -> Result<Limits, String> {
        if self.max_events == 0 {
            return Err(format!("{count_option}: must be at least 1, got 0"));
        }
        if self.max_bytes == 0 {
            return Err(format!("{size_option}: must be at least 1, got 0"));
        }
        Ok(self)
    }
}

struct Open {
    group: PipelineEventGroup,
    bytes: usize,
}

/// Open batches by key.
pub struct Packer<K> {
    limits: Limits,
    index: HashMap<K, usize>,
    open: Vec<Open>,
}

impl<K: Hash + Eq> Packer<K> {
    pub fn new(limits: Limits) -> Self {
        Packer {
            limits,
            index: HashMap::new(),
            open: Vec::new(),
        }
    }

    /// Adds the events of `group` under `key`; `empty` makes the (event-less) batch they go
    /// into when the key has none open. Returns the batches that became full. The group's
    /// acknowledgements go with the batch that holds its last event.
    pub fn add(
        &mut self,
        key: K,
        mut group: PipelineEventGroup,
        empty: impl Fn() -> PipelineEventGroup,
    ) -> Vec<PipelineEventGroup> {
        let limits = self.limits;
        let slot = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.open.push(Open {
                    group: empty(),
                    bytes: 0,
                });
                self.index.insert(key, self.open.len() - 1);
                self.open.len() - 1
            }
        };
        let mut full = Vec::new();
        for event in std::mem::take(&mut group.events) {
            let size = event_bytes(&event);
            let batch = &mut self.open[slot];
            if !batch.group.is_empty() && batch.bytes + size > limits.max_bytes {
                full.push(close(batch, &empty));
            }
            let batch = &mut self.open[slot];
            batch.bytes += size;
            batch.group.events.push(event);
            if batch.group.len() >= limits.max_events || batch.bytes >= limits.max_bytes {
                full.push(close(batch, &empty));
            }
        }
        let batch = &mut self.open[slot];
        match full.last_mut() {
            Some(last) if batch.group.is_empty() => last.acks.append(&mut group.acks),
            _ => batch.group.acks.append(&mut group.acks),
        }
        full
    }

    /// Every open batch, in the order their keys came; groups that had no event are
    /// acknowledged (nothing of theirs is left to deliver).
    pub fn flush(&mut self) -> Vec<PipelineEventGroup> {
        self.index.clear();
        std::mem::take(&mut self.open)
            .into_iter()
            .map(|open| open.group)
            .filter(|g| {
                if g.is_empty() {
                    g.acks.delivered();
                }
                !g.is_empty()
            })
            .collect()
    }
}

/// Takes the batch out, leaving an empty one of the same key.
fn close(batch: &mut Open, empty: &impl Fn() -> PipelineEventGroup) -> PipelineEventGroup {
    batch.bytes = 0;
    std::mem::replace(&mut batch.group, empty())
}

/// An event-less group with `group`'s tags and metadata (but not its pack id: a batch is not
/// any one of the groups it packs).
pub fn shape_of(group: &PipelineEventGroup) -> PipelineEventGroup {
    PipelineEventGroup {
        tags: group.tags.clone(),
        metadata: metadata_without_pack_id(group),
        ..Default::default()
    }
}

/// Cuts `group` into runs of consecutive events with the same key, each with the group's shape;
/// the group's acknowledgements then wait for every run to be delivered.
pub fn split_by_key<K: PartialEq>(
    mut group: PipelineEventGroup,
    mut key_of: impl FnMut(&PipelineEvent) -> K,
) -> Vec<(K, PipelineEventGroup)> {
    let mut runs: Vec<(K, PipelineEventGroup)> = Vec::new();
    for event in std::mem::take(&mut group.events) {
        let key = key_of(&event);
        match runs.last_mut() {
            Some((last, run)) if *last == key => run.events.push(event),
            _ => {
                let mut run = shape_of(&group);
                run.metadata = group.metadata.clone();
                run.events.push(event);
                runs.push((key, run));
            }
        }
    }
    group.acks.split(runs.len());
    for (_, run) in &mut runs {
        run.acks = group.acks.clone();
    }
    if runs.is_empty() {
        // No event: nothing to wait for.
        group.acks.delivered();
    }
    runs
}

/// A group's metadata without its pack id (which differs for every batch the host sends, and
/// would keep any two from being packed together).
pub fn metadata_without_pack_id(
    group: &PipelineEventGroup,
) -> std::collections::BTreeMap<String, String> {
    let mut metadata = group.metadata.clone();
    metadata.remove(tailrace::proto::meta::PACK_ID);
    metadata
}

/// iLogtail's `__pack_id__` tags: `PREFIX-SEQ`, a prefix unique to the aggregator instance (and
/// source), and a sequence number per prefix, both in upper-case hex.
pub struct PackIds {
    prefix: String,
    next: HashMap<String, u64>,
}

impl PackIds {
    pub fn new(seed: &str) -> PackIds {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write(seed.as_bytes());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        hasher.write_u128(nanos);
        PackIds {
            prefix: format!("{:016X}", hasher.finish()),
            next: HashMap::new(),
        }
    }

    /// Tags `group` with the next pack id of `source` (the instance's own prefix when empty).
    pub fn tag(&mut self, group: &mut PipelineEventGroup, source: &str) {
        if group
            .tag(tailrace::proto::meta::PACK_ID.as_bytes())
            .is_some()
        {
            return;
        }
        let prefix = if source.is_empty() {
            self.prefix.clone()
        } else {
            source.to_owned()
        };
        let seq = self.next.entry(prefix.clone()).or_insert(0);
        let value = format!("{prefix}-{seq:X}");
        *seq += 1;
        group.set_tag(tailrace::proto::meta::PACK_ID, value);
    }
}

/// What an aggregator writes on every batch it sends: its `Topic` (when set) and, with its
/// pack flag, a `__pack_id__`.
pub struct BatchLabels {
    topic: String,
    pack_ids: Option<PackIds>,
}

impl BatchLabels {
    /// `seed` (the config name) makes the pack-id prefix of the instance.
    pub fn new(topic: String, pack_flag: bool, seed: &str) -> BatchLabels {
        BatchLabels {
            topic,
            pack_ids: pack_flag.then(|| PackIds::new(seed)),
        }
    }

    /// Labels `batches`; `source` names the source each pack id counts under ("" for the
    /// instance's own prefix).
    pub fn apply(
        &mut self,
        mut batches: Vec<PipelineEventGroup>,
        source: impl Fn(&PipelineEventGroup) -> String,
    ) -> Vec<PipelineEventGroup> {
        for batch in &mut batches {
            if !self.topic.is_empty() {
                batch.set_metadata(tailrace::proto::meta::TOPIC, self.topic.clone());
            }
            if let Some(ids) = &mut self.pack_ids {
                let source = source(batch);
                ids.tag(batch, &source);
            }
        }
        batches
    }
}

/// iLogtail's `MaxLogGroupCount`: full batches held per key before the oldest is sent.
/// Tailrace sends a batch as soon as it is full, so the option is only checked.
pub fn check_max_log_group_count(count: usize) -> Result<(), String> {
    if count == 0 {
        return Err("MaxLogGroupCount: must be at least 1, got 0".to_owned());
    }
    Ok(())
}

/// A test group of `n` logs with content `k=v` and tag `t`.
#[cfg(test)]
pub fn test_group(n: usize, tag: &str, value: &str) -> PipelineEventGroup {
    let mut g = PipelineEventGroup::default();
    g.set_tag("t", tag.to_owned());
    for _ in 0..n {
        let mut log = tailrace::LogEvent::new(1, None);
        log.set_content("k", value.to_owned());
        g.events.push(PipelineEvent::Log(log));
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_leave_by_count_size_and_flush_in_key_order() {
        let mut packer = Packer::new(Limits {
            max_events: 3,
            max_bytes: 1000,
        });
        let g = test_group(2, "a", "x");
        assert!(packer.add("a", g.clone(), || shape_of(&g)).is_empty());
        let h = test_group(1, "b", "y");
        assert!(packer.add("b", h.clone(), || shape_of(&h)).is_empty());
        let full = packer.add("a", test_group(5, "a", "z"), || shape_of(&g));
        assert_eq!(full.iter().map(|g| g.len()).collect::<Vec<_>>(), [3, 3]);
        let rest = packer.flush();
        assert_eq!(rest.iter().map(|g| g.len()).collect::<Vec<_>>(), [1, 1]);
        assert_eq!(&rest[0].tag(b"t").unwrap()[..], b"a");
        assert_eq!(&rest[1].tag(b"t").unwrap()[..], b"b");
        assert!(packer.flush().is_empty());

        // Each log of test_group is 6 + 5 + 1 + 1 = 13 bytes: 3 fit in 40, a 4th does not.
        let mut by_size = Packer::new(Limits {
            max_events: 100,
            max_bytes: 40,
        });
        let full = by_size.add((), test_group(7, "a", "x"), || shape_of(&g));
        assert_eq!(full.iter().map(|g| g.len()).collect::<Vec<_>>(), [3, 3]);
        assert_eq!(by_size.flush()[0].len(), 1);
    }

    #[test]
    fn split_runs_share_the_acknowledgement() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        struct Count(Arc<AtomicUsize>);
        impl tailrace::DeliveryHook for Count {
            fn delivered(&self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(AtomicUsize::new(0));
        let mut g = test_group(1, "a", "x");
        g.events.extend(test_group(2, "a", "y").events);
        g.events.extend(test_group(1, "a", "x").events);
        g.acks.push(Arc::new(Count(count.clone())));
        let runs = split_by_key(g, |e| match e {
            PipelineEvent::Log(l) => l.content(b"k").cloned(),
            _ => None,
        });
        assert_eq!(
            runs.iter().map(|r| r.1.len()).collect::<Vec<_>>(),
            [1, 2, 1]
        );
        runs[0].1.acks.delivered();
        runs[2].1.acks.delivered();
        assert_eq!(count.load(Ordering::SeqCst), 0);
        runs[1].1.acks.delivered();
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn pack_ids_count_per_source() {
        let mut ids = PackIds::new("cfg");
        let mut a = PipelineEventGroup::default();
        let mut b = PipelineEventGroup::default();
        let mut c = PipelineEventGroup::default();
        ids.tag(&mut a, "SRC");
        ids.tag(&mut b, "SRC");
        ids.tag(&mut c, "");
        assert_eq!(&a.tag(b"__pack_id__").unwrap()[..], b"SRC-0");
        assert_eq!(&b.tag(b"__pack_id__").unwrap()[..], b"SRC-1");
        assert!(String::from_utf8_lossy(c.tag(b"__pack_id__").unwrap()).ends_with("-0"));
    }
}
