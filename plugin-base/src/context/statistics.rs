//! Statistics: counters per pipeline instance and per plugin instance, reported to the host
//! under iLogtail's `shennong_log_profile` config and returned by `GetGoMetrics` (in the keys
//! LoongCollector's C++ side reads: see `ffi::GetGoMetrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tailrace::{PipelineEvent, PipelineEventGroup};

/// The config name (and logstore) statistics are sent under, as iLogtail's plugin base does.
pub const STATISTICS_CONFIG_NAME: &str = "shennong_log_profile";

/// Counters of one pipeline instance.
#[derive(Default, Debug)]
pub struct PipelineStats {
    /// Events that entered the pipeline (from its inputs or from the host).
    pub events_in: AtomicU64,
    /// Events handed to the flushers (after processing and aggregation).
    pub events_out: AtomicU64,
    /// Groups the flushers delivered.
    pub groups_flushed: AtomicU64,
    /// Flush attempts that failed or found the destination not ready.
    pub flush_retries: AtomicU64,
    /// Panics caught in the pipeline's plugins.
    pub plugin_panics: AtomicU64,
    /// Batches a flusher gave up on after its retry limit (each one also raised an alarm).
    pub groups_dropped: AtomicU64,
    /// Every plugin of the instance, in pipeline order.
    plugins: Mutex<Vec<Arc<PluginStats>>>,
}

impl PipelineStats {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Name/value pairs, in a stable order.
    pub fn snapshot(&self) -> [(&'static str, u64); 6] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("events_in", get(&self.events_in)),
            ("events_out", get(&self.events_out)),
            ("groups_flushed", get(&self.groups_flushed)),
            ("flush_retries", get(&self.flush_retries)),
            ("plugin_panics", get(&self.plugin_panics)),
            ("groups_dropped", get(&self.groups_dropped)),
        ]
    }

    /// Counters for one more plugin of this instance.
    pub fn plugin(&self, plugin_type: &str, plugin_id: &str) -> Arc<PluginStats> {
        let stats = Arc::new(PluginStats {
            plugin_type: plugin_type.to_owned(),
            plugin_id: plugin_id.to_owned(),
            ..Default::default()
        });
        self.plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stats.clone());
        stats
    }

    /// Every plugin's counters, in pipeline order.
    pub fn plugins(&self) -> Vec<Arc<PluginStats>> {
        self.plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Counters of one plugin instance, with LoongCollector's names (`plugin_in_events_total`, ...).
#[derive(Default, Debug)]
pub struct PluginStats {
    /// The plugin's `type`, suffixes stripped (`processor_regex`).
    pub plugin_type: String,
    /// Its id in the pipeline (`processor_regex/2`): what its checkpoints are saved under.
    pub plugin_id: String,
    pub events_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub events_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Failures: a panic, a flush error, a batch dropped.
    pub errors: AtomicU64,
    /// Time spent in the plugin's own code.
    pub process_time_ns: AtomicU64,
    /// Counters a plugin keeps itself (`flusher_http_status_200_total`, ...), by name, in the
    /// order they were first counted.
    extra: Mutex<Vec<(String, u64)>>,
}

impl PluginStats {
    /// Counts a group going in.
    pub fn record_in(&self, group: &PipelineEventGroup) {
        self.add_in(GroupSize::of(group));
    }

    /// Counts groups coming out.
    pub fn record_out<'a>(&self, groups: impl IntoIterator<Item = &'a PipelineEventGroup>) {
        for group in groups {
            self.add_out(GroupSize::of(group));
        }
    }

    /// Counts a group going in whose size is known (measured once between two processors).
    pub fn add_in(&self, size: GroupSize) {
        self.events_in.fetch_add(size.events, Ordering::Relaxed);
        self.bytes_in.fetch_add(size.bytes, Ordering::Relaxed);
    }

    pub fn add_out(&self, size: GroupSize) {
        self.events_out.fetch_add(size.events, Ordering::Relaxed);
        self.bytes_out.fetch_add(size.bytes, Ordering::Relaxed);
    }

    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_time(&self, spent: Duration) {
        self.process_time_ns
            .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Adds `n` to the plugin's own counter `name` (created at 0 the first time).
    pub fn add_counter(&self, name: &str, n: u64) {
        let mut extra = self.extra.lock().unwrap_or_else(|e| e.into_inner());
        match extra.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v += n,
            None => extra.push((name.to_owned(), n)),
        }
    }

    /// The plugin's own counters, reported after [`PluginStats::counters`].
    pub fn extra_counters(&self) -> Vec<(String, u64)> {
        self.extra.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counter name/value pairs with LoongCollector's plugin metric names.
    pub fn counters(&self) -> [(&'static str, u64); 6] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("plugin_in_events_total", get(&self.events_in)),
            ("plugin_in_size_bytes", get(&self.bytes_in)),
            ("plugin_out_events_total", get(&self.events_out)),
            ("plugin_out_size_bytes", get(&self.bytes_out)),
            ("plugin_errors_total", get(&self.errors)),
            (
                "plugin_total_process_time_ms",
                get(&self.process_time_ns) / 1_000_000,
            ),
        ]
    }
}

/// The size of an event as iLogtail estimates a log's (6 bytes, plus 5 and the key and value of
/// each content): what `MaxLogGroupSize`-style limits and the byte counters measure.
pub fn event_bytes(event: &PipelineEvent) -> usize {
    match event {
        PipelineEvent::Log(log) => {
            6 + log
                .contents
                .iter()
                .map(|(k, v)| 5 + k.len() + v.len())
                .sum::<usize>()
        }
        PipelineEvent::Raw(raw) => 6 + raw.content.len(),
        PipelineEvent::Metric(m) => {
            6 + m.name.len()
                + m.tags
                    .iter()
                    .map(|(k, v)| 5 + k.len() + v.len())
                    .sum::<usize>()
        }
        PipelineEvent::Span(s) => {
            6 + s.name.len()
                + s.attributes
                    .iter()
                    .map(|(k, v)| 5 + k.len() + v.len())
                    .sum::<usize>()
        }
    }
}

/// A group's event count and byte size.
#[derive(Clone, Copy, Debug, Default)]
pub struct GroupSize {
    pub events: u64,
    pub bytes: u64,
}

impl GroupSize {
    pub fn of(group: &PipelineEventGroup) -> GroupSize {
        GroupSize {
            events: group.len() as u64,
            bytes: group_bytes(group),
        }
    }
}

pub fn group_bytes(group: &PipelineEventGroup) -> u64 {
    group.events.iter().map(event_bytes).sum::<usize>() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailrace::LogEvent;

    #[test]
    fn plugin_counters_count_events_bytes_errors_and_time() {
        let pipeline = PipelineStats::default();
        let stats = pipeline.plugin("processor_x", "processor_x/1");
        let mut group = PipelineEventGroup::default();
        let mut log = LogEvent::new(1, None);
        log.set_content("k", "vv");
        group.events.push(PipelineEvent::Log(log));
        stats.record_in(&group);
        stats.record_out([&group, &group]);
        stats.record_error();
        stats.record_time(Duration::from_millis(3));
        let counters: std::collections::BTreeMap<_, _> = stats.counters().into_iter().collect();
        assert_eq!(counters["plugin_in_events_total"], 1);
        assert_eq!(counters["plugin_in_size_bytes"], 6 + 5 + 1 + 2);
        assert_eq!(counters["plugin_out_events_total"], 2);
        assert_eq!(counters["plugin_errors_total"], 1);
        assert_eq!(counters["plugin_total_process_time_ms"], 3);
        assert_eq!(pipeline.plugins().len(), 1);
        assert_eq!(pipeline.plugins()[0].plugin_id, "processor_x/1");
    }
}
