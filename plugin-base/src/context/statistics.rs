//! Per-pipeline counters, reported to the host under iLogtail's `shennong_log_profile` config and
//! returned by `GetGoMetrics`.

use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl PipelineStats {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Name/value pairs, in a stable order.
    pub fn snapshot(&self) -> [(&'static str, u64); 5] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("events_in", get(&self.events_in)),
            ("events_out", get(&self.events_out)),
            ("groups_flushed", get(&self.groups_flushed)),
            ("flush_retries", get(&self.flush_retries)),
            ("plugin_panics", get(&self.plugin_panics)),
        ]
    }
}
