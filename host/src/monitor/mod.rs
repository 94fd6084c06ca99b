//! Self-monitoring (LoongCollector's `monitor/`): what the daemon is doing, for a person or a
//! scraper. The [`Monitor`] holds views of the live pipelines (their counters and queues, which
//! the pipelines update themselves) and of what is wrong (configs that did not load, a plugin
//! base that is not there); `--metrics-addr` serves it as Prometheus text on `/metrics` and as
//! a health verdict on `/healthz` ([`server`]).
//!
//! Nothing here is kept per pipeline once the pipeline is gone: a scrape reads the live views,
//! so memory follows what runs now.

pub mod alarms;
pub mod metrics;
pub mod server;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::input::file::stats::{FileStatsHandle, InputStats};
use crate::plugin::go_metrics::GetGoMetricsFn;
use crate::queue::{ProcessQueues, SenderQueue};

/// A pipeline's counters, updated by the processor runner.
#[derive(Default)]
pub struct PipelineStats {
    /// Events taken from the process queue (read by the input).
    pub events_in: AtomicU64,
    /// Bytes of those events' contents (keys and values).
    pub bytes_in: AtomicU64,
    /// Events left after the processors, handed to the flushers (or the plugin base).
    pub events_out: AtomicU64,
    /// Batches dropped because a processor panicked.
    pub processor_panics: AtomicU64,
    /// The `Type`s of the processors the host runs for it, in order.
    pub processor_types: Vec<String>,
    /// Each one's counters so far, in the same order.
    pub processors: Mutex<Vec<ProcessorCounts>>,
}

/// What one processor the host runs did so far (LoongCollector's per-plugin
/// `in_events_total`, `out_events_total`, `total_process_time_ms`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessorCounts {
    pub events_in: u64,
    pub events_out: u64,
    /// Time spent in its `process`, in nanoseconds.
    pub process_nanos: u64,
    /// Values it failed to parse (its own count).
    pub parse_failures: u64,
}

impl PipelineStats {
    pub fn with_processors(processor_types: Vec<String>) -> PipelineStats {
        PipelineStats {
            processor_types,
            ..PipelineStats::default()
        }
    }

    /// Adds one batch's figures of each processor (in their order): events in and out and
    /// time; the parse failures are each processor's own running total.
    pub fn note_batch(&self, batch: impl Iterator<Item = ProcessorCounts>) {
        let mut kept = self.processors.lock().unwrap_or_else(|e| e.into_inner());
        for (i, b) in batch.enumerate() {
            if kept.len() <= i {
                kept.push(ProcessorCounts::default());
            }
            let slot = &mut kept[i];
            slot.events_in += b.events_in;
            slot.events_out += b.events_out;
            slot.process_nanos += b.process_nanos;
            slot.parse_failures = b.parse_failures;
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a scrape reads of one running pipeline.
#[derive(Clone)]
pub struct PipelineView {
    pub stats: Arc<PipelineStats>,
    /// Its process queue (None: its input runs in the plugin base).
    pub process_queue: Option<u64>,
    /// Its sender queues: native flushers and the feed to the plugin base.
    pub outputs: Vec<Arc<SenderQueue>>,
}

/// The plugin base as a scrape sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseStatus {
    Loading,
    Loaded,
    /// Missing or broken libraries: plugin features are off, file collection goes on.
    Unavailable,
    /// Loaded, but a config window has been waiting on it for seconds.
    Hung,
}

impl BaseStatus {
    pub const ALL: [BaseStatus; 4] = [
        BaseStatus::Loading,
        BaseStatus::Loaded,
        BaseStatus::Unavailable,
        BaseStatus::Hung,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BaseStatus::Loading => "loading",
            BaseStatus::Loaded => "loaded",
            BaseStatus::Unavailable => "unavailable",
            BaseStatus::Hung => "hung",
        }
    }
}

#[derive(Default)]
struct State {
    pipelines: BTreeMap<String, PipelineView>,
    /// Pipelines (by name) that do not run as configured, and why.
    problems: BTreeMap<String, String>,
    /// Config files that do not parse or validate, and why.
    invalid_configs: BTreeMap<String, String>,
    base: Option<BaseStatus>,
    /// The loaded base's `GetGoMetrics`.
    base_metrics: Option<GetGoMetricsFn>,
}

/// The shared views; cheap to clone.
#[derive(Clone)]
pub struct Monitor {
    state: Arc<Mutex<State>>,
    queues: ProcessQueues,
    files: Option<FileStatsHandle>,
}

impl Monitor {
    pub fn new(queues: ProcessQueues, files: Option<FileStatsHandle>) -> Monitor {
        Monitor {
            state: Arc::default(),
            queues,
            files,
        }
    }

    /// The file inputs' figures (None: no FileServer, or it did not answer in time).
    pub fn file_stats(&self) -> Option<Vec<InputStats>> {
        self.files.as_ref()?.stats()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `name` runs (again) as configured.
    pub fn running(&self, name: &str, view: PipelineView) {
        let mut state = self.state();
        state.problems.remove(name);
        state.pipelines.insert(name.to_owned(), view);
    }

    /// `name` stopped (removed, disabled, or replaced: [`Monitor::running`] follows then).
    pub fn stopped(&self, name: &str) {
        let mut state = self.state();
        state.pipelines.remove(name);
        state.problems.remove(name);
    }

    /// `name` does not run as configured (its running version, if any, may go on).
    pub fn problem(&self, name: &str, why: impl Into<String>) {
        self.state().problems.insert(name.to_owned(), why.into());
    }

    /// The config files that are invalid now (replaces the last list).
    pub fn invalid_configs(&self, invalid: BTreeMap<String, String>) {
        self.state().invalid_configs = invalid;
    }

    pub fn base(&self, status: Option<BaseStatus>) {
        self.state().base = status;
    }

    /// The loaded base's statistics come from its `GetGoMetrics`.
    pub fn base_metrics(&self, get: Option<GetGoMetricsFn>) {
        self.state().base_metrics = get;
    }

    /// The plugin base's `direct` statistics (none without a base that has them).
    pub fn base_rows(&self) -> Vec<crate::plugin::go_metrics::DirectRow> {
        let get = self.state().base_metrics;
        match get {
            Some(get) => crate::plugin::go_metrics::direct_rows(crate::plugin::go_metrics::read(
                get, "direct",
            )),
            None => Vec::new(),
        }
    }

    /// Why the daemon is not healthy (empty: every pipeline runs as configured).
    pub fn unhealthy_reasons(&self) -> Vec<String> {
        let state = self.state();
        let mut reasons: Vec<String> = state
            .invalid_configs
            .iter()
            .map(|(file, why)| format!("config {file} is invalid: {why}"))
            .collect();
        if state.base == Some(BaseStatus::Hung) {
            reasons.push(
                "the plugin base has not returned from a config window for seconds: its \
                 pipelines are stalled (native ones run on)"
                    .to_owned(),
            );
        }
        reasons.extend(
            state
                .problems
                .iter()
                .map(|(name, why)| format!("pipeline {name:?}: {why}")),
        );
        reasons
    }

    /// Depth and capacity of a process queue.
    pub fn process_queue(&self, id: u64) -> Option<(usize, usize)> {
        self.queues.depth(id)
    }

    /// A copy of the views, for one scrape.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.state();
        Snapshot {
            pipelines: state
                .pipelines
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            problems: state.problems.len() + state.invalid_configs.len(),
            base: state.base,
        }
    }
}

/// What one scrape reads.
pub struct Snapshot {
    pub pipelines: Vec<(String, PipelineView)>,
    /// Configs or pipelines that do not run as configured.
    pub problems: usize,
    pub base: Option<BaseStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_make_the_daemon_unhealthy_until_fixed_or_removed() {
        let monitor = Monitor::new(ProcessQueues::new(), None);
        assert!(monitor.unhealthy_reasons().is_empty());
        monitor.problem("a", "its output cannot be opened");
        let mut invalid = BTreeMap::new();
        invalid.insert("/c/b.yaml".to_owned(), "inputs[0]: no Type".to_owned());
        monitor.invalid_configs(invalid);
        let reasons = monitor.unhealthy_reasons();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("/c/b.yaml") && reasons[1].contains("\"a\""));
        monitor.running(
            "a",
            PipelineView {
                stats: Arc::default(),
                process_queue: None,
                outputs: Vec::new(),
            },
        );
        monitor.invalid_configs(BTreeMap::new());
        assert!(monitor.unhealthy_reasons().is_empty());
        assert_eq!(monitor.snapshot().pipelines.len(), 1);
        monitor.stopped("a");
        assert!(monitor.snapshot().pipelines.is_empty());
    }
}
