//! `/metrics`: the [`Monitor`]'s views as Prometheus text (prometheus-client does the
//! exposition format). The registry is built afresh for each scrape from the live views, so a
//! removed pipeline's series go with it.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::monitor::{BaseStatus, Monitor};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabel {
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlusherLabels {
    pipeline: String,
    /// The flusher's `Type`, or `plugin-base` for the feed to the base.
    flusher: String,
    /// Its place among the pipeline's outputs (two flushers may have one type).
    index: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessorLabels {
    pipeline: String,
    /// The processor's `Type`.
    processor: String,
    /// Its place among the processors the host runs.
    index: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

type Counters = Family<PipelineLabel, Counter>;
type Gauges = Family<PipelineLabel, Gauge>;
type FlusherCounters = Family<FlusherLabels, Counter>;
type FlusherGauges = Family<FlusherLabels, Gauge>;

/// The Prometheus text of everything the monitor sees now.
pub fn render(monitor: &Monitor) -> String {
    let snapshot = monitor.snapshot();
    let mut registry = Registry::with_prefix("tailrace");

    let events_in = Counters::default();
    let bytes_in = Counters::default();
    let events_out = Counters::default();
    let processor_panics = Counters::default();
    let queue_depth = Gauges::default();
    let queue_capacity = Gauges::default();
    let blocked = Gauges::default();
    let flushed_batches = FlusherCounters::default();
    let flushed_events = FlusherCounters::default();
    let failed = FlusherCounters::default();
    let panics = FlusherCounters::default();
    let restarts = FlusherCounters::default();
    let sender_depth = FlusherGauges::default();
    let sender_capacity = FlusherGauges::default();
    let parse_failures = Family::<ProcessorLabels, Counter>::default();
    let processor_in = Family::<ProcessorLabels, Counter>::default();
    let processor_out = Family::<ProcessorLabels, Counter>::default();
    let processor_seconds = Family::<ProcessorLabels, Counter<f64, AtomicU64>>::default();

    for (name, view) in &snapshot.pipelines {
        let label = PipelineLabel {
            pipeline: name.clone(),
        };
        let stats = &view.stats;
        events_in
            .get_or_create(&label)
            .inc_by(stats.events_in.load(Ordering::Relaxed));
        bytes_in
            .get_or_create(&label)
            .inc_by(stats.bytes_in.load(Ordering::Relaxed));
        events_out
            .get_or_create(&label)
            .inc_by(stats.events_out.load(Ordering::Relaxed));
        processor_panics
            .get_or_create(&label)
            .inc_by(stats.processor_panics.load(Ordering::Relaxed));
        let counts = stats
            .processors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (index, processor) in stats.processor_types.iter().enumerate() {
            let labels = ProcessorLabels {
                pipeline: name.clone(),
                processor: processor.clone(),
                index: index.to_string(),
            };
            let c = counts.get(index).copied().unwrap_or_default();
            parse_failures
                .get_or_create(&labels)
                .inc_by(c.parse_failures);
            processor_in.get_or_create(&labels).inc_by(c.events_in);
            processor_out.get_or_create(&labels).inc_by(c.events_out);
            processor_seconds
                .get_or_create(&labels)
                .inc_by(c.process_nanos as f64 / 1e9);
        }
        let mut is_blocked = view.outputs.iter().any(|q| !q.has_room());
        if let Some((depth, capacity)) = view.process_queue.and_then(|id| monitor.process_queue(id))
        {
            queue_depth.get_or_create(&label).set(depth as i64);
            queue_capacity.get_or_create(&label).set(capacity as i64);
            is_blocked |= depth >= capacity;
        }
        blocked.get_or_create(&label).set(i64::from(is_blocked));
        for (index, q) in view.outputs.iter().enumerate() {
            let labels = FlusherLabels {
                pipeline: name.clone(),
                flusher: q.flusher_type.clone(),
                index: index.to_string(),
            };
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            flushed_batches
                .get_or_create(&labels)
                .inc_by(get(&q.flushed_batches));
            flushed_events
                .get_or_create(&labels)
                .inc_by(get(&q.flushed_events));
            failed.get_or_create(&labels).inc_by(get(&q.failed_flushes));
            panics.get_or_create(&labels).inc_by(get(&q.panics));
            restarts.get_or_create(&labels).inc_by(get(&q.restarts));
            sender_depth.get_or_create(&labels).set(q.depth() as i64);
            sender_capacity
                .get_or_create(&labels)
                .set(q.capacity() as i64);
        }
    }

    registry.register(
        "pipeline_events_in",
        "Events read by a pipeline's input and taken by its processors",
        events_in,
    );
    registry.register(
        "pipeline_bytes_in",
        "Bytes of those events' contents",
        bytes_in,
    );
    registry.register(
        "pipeline_events_out",
        "Events left after a pipeline's processors, handed to its flushers or the plugin base",
        events_out,
    );
    registry.register(
        "pipeline_processor_panics",
        "Batches dropped because a processor panicked (file data is read again after a restart)",
        processor_panics,
    );
    registry.register(
        "processor_in_events",
        "Events a processor the host runs was given",
        processor_in,
    );
    registry.register(
        "processor_out_events",
        "Events a processor the host runs passed on (fewer: it filtered; more: it split)",
        processor_out,
    );
    registry.register(
        "processor_seconds",
        "Time a processor the host runs spent processing",
        processor_seconds,
    );
    registry.register(
        "processor_parse_failures",
        "Values a processor the host runs failed to parse (the Keep* options say what became of them)",
        parse_failures,
    );
    registry.register(
        "process_queue_depth",
        "Batches waiting in a pipeline's process queue",
        queue_depth,
    );
    registry.register(
        "process_queue_capacity",
        "Batches a pipeline's process queue holds before its input pauses",
        queue_capacity,
    );
    registry.register(
        "pipeline_input_blocked",
        "1 while a full queue holds a pipeline's input back (backpressure)",
        blocked,
    );
    registry.register(
        "flusher_batches",
        "Batches a flusher delivered",
        flushed_batches,
    );
    registry.register(
        "flusher_events",
        "Events a flusher delivered",
        flushed_events,
    );
    registry.register(
        "flusher_failures",
        "Failed flushes (each retried after a backoff)",
        failed,
    );
    registry.register(
        "flusher_panics",
        "Flushes that panicked (the batch is retried)",
        panics,
    );
    registry.register(
        "flusher_restarts",
        "Flusher instances rebuilt after a panic",
        restarts,
    );
    registry.register(
        "sender_queue_depth",
        "Batches queued or being flushed in front of a flusher",
        sender_depth,
    );
    registry.register(
        "sender_queue_capacity",
        "Batches a sender queue holds before its pipeline pauses",
        sender_capacity,
    );

    let pipelines = Family::<StateLabel, Gauge>::default();
    pipelines
        .get_or_create(&StateLabel {
            state: "running".into(),
        })
        .set(snapshot.pipelines.len() as i64);
    pipelines
        .get_or_create(&StateLabel {
            state: "failed".into(),
        })
        .set(snapshot.problems as i64);
    registry.register(
        "pipelines",
        "Pipelines running, and configs or pipelines that do not run as configured",
        pipelines,
    );

    let base = Family::<StateLabel, Gauge>::default();
    for status in BaseStatus::ALL {
        base.get_or_create(&StateLabel {
            state: status.as_str().into(),
        })
        .set(i64::from(snapshot.base == Some(status)));
    }
    registry.register(
        "plugin_base",
        "1 for the plugin base's state (all 0: no plugin libraries in the plugin dir)",
        base,
    );

    file_metrics(monitor, &mut registry);
    base_metrics(monitor, &mut registry);

    let alarms = Family::<KindLabel, Counter>::default();
    for (kind, n) in crate::monitor::alarms::counts() {
        alarms.get_or_create(&KindLabel { kind }).inc_by(n);
    }
    registry.register(
        "alarms",
        "Alarms the plugin base raised, by kind (iLogtail's alarm_type)",
        alarms,
    );

    process_metrics(&mut registry);

    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    pipeline: String,
    path: String,
}

/// The file inputs: files tracked and open, read lag (per input, and for its most lagging
/// files), bytes lost before they were read.
fn file_metrics(monitor: &Monitor, registry: &mut Registry) {
    let Some(inputs) = monitor.file_stats() else {
        return;
    };
    let tracked = Gauges::default();
    let open = Gauges::default();
    let lag = Gauges::default();
    let lost = Counters::default();
    let file_lag = Family::<FileLabels, Gauge>::default();
    for input in inputs {
        let label = PipelineLabel {
            pipeline: input.pipeline.clone(),
        };
        tracked
            .get_or_create(&label)
            .set(input.tracked_files as i64);
        open.get_or_create(&label).set(input.open_files as i64);
        lag.get_or_create(&label).set(input.lag_bytes as i64);
        lost.get_or_create(&label).inc_by(input.lost_bytes);
        for (path, bytes) in input.lagging {
            file_lag
                .get_or_create(&FileLabels {
                    pipeline: input.pipeline.clone(),
                    path: path.display().to_string(),
                })
                .set(bytes as i64);
        }
    }
    registry.register("input_files", "Files a pipeline's input tracks", tracked);
    registry.register(
        "input_open_files",
        "Files a pipeline's input holds open",
        open,
    );
    registry.register(
        "input_read_lag_bytes",
        "Bytes written to a pipeline's files and not read yet",
        lag,
    );
    registry.register(
        "file_read_lag_bytes",
        "Bytes written to a file and not read yet (the 20 most lagging files of each input)",
        file_lag,
    );
    registry.register(
        "input_lost_bytes",
        "Bytes files lost before they were read to their end (rotated away while closed, truncated, unreadable)",
        lost,
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BaseLabels {
    pipeline: String,
    /// The base's config name (`P/1`, `P/2`).
    config: String,
    plugin_type: String,
    plugin_id: String,
}

/// Distinct series names taken from the base per scrape: a third-party base could send any
/// number of them.
const MAX_BASE_NAMES: usize = 64;

/// The plugin base's own statistics (its `GetGoMetrics("direct")`), per pipeline and per
/// plugin instance: `tailrace_base_<counter>` with the counter names the base gives
/// (`plugin_in_events_total` → `tailrace_base_plugin_in_events_total`).
fn base_metrics(monitor: &Monitor, registry: &mut Registry) {
    type F64Counter = Counter<f64, std::sync::atomic::AtomicU64>;
    type F64Gauge = Gauge<f64, std::sync::atomic::AtomicU64>;
    let mut families: std::collections::BTreeMap<String, Family<BaseLabels, F64Counter>> =
        std::collections::BTreeMap::new();
    let mut gauges: std::collections::BTreeMap<String, Family<BaseLabels, F64Gauge>> =
        std::collections::BTreeMap::new();
    for row in monitor.base_rows() {
        let text = |key: &str| {
            row.labels
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let labels = BaseLabels {
            pipeline: text("pipeline_name"),
            config: text("config_name"),
            plugin_type: text("plugin_type"),
            plugin_id: text("plugin_id"),
        };
        for (name, value) in &row.counters {
            let name = series_name(name.strip_suffix("_total").unwrap_or(name));
            if name.is_empty()
                || (!families.contains_key(&name) && families.len() >= MAX_BASE_NAMES)
            {
                continue;
            }
            families
                .entry(name)
                .or_default()
                .get_or_create(&labels)
                .inc_by(value.max(0.0));
        }
        for (name, value) in &row.gauges {
            let name = series_name(name);
            if name.is_empty()
                || families.contains_key(&name)
                || (!gauges.contains_key(&name) && families.len() + gauges.len() >= MAX_BASE_NAMES)
            {
                continue;
            }
            gauges
                .entry(name)
                .or_default()
                .get_or_create(&labels)
                .set(*value);
        }
    }
    for (name, family) in gauges {
        registry.register(
            format!("base_{name}"),
            "The plugin base's statistics (GetGoMetrics \"direct\")",
            family,
        );
    }
    for (name, family) in families {
        registry.register(
            format!("base_{name}"),
            "The plugin base's statistics (GetGoMetrics \"direct\")",
            family,
        );
    }
}

/// `name` with what Prometheus does not allow in a name replaced by `_`.
fn series_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The daemon process: CPU seconds, resident memory, open descriptors (from /proc/self).
fn process_metrics(registry: &mut Registry) {
    let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
    if let Some(seconds) = cpu_seconds() {
        cpu.inc_by(seconds);
    }
    registry.register(
        "process_cpu_seconds",
        "User and system CPU time of the daemon",
        cpu,
    );
    let rss = Gauge::<i64>::default();
    rss.set(resident_bytes().unwrap_or(0) as i64);
    registry.register(
        "process_resident_memory_bytes",
        "Resident memory of the daemon",
        rss,
    );
    let fds = Gauge::<i64>::default();
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    fds.set(open as i64);
    registry.register(
        "process_open_fds",
        "Open file descriptors of the daemon",
        fds,
    );
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) / ticks)
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{PipelineStats, PipelineView};
    use crate::queue::ProcessQueues;
    use std::sync::Arc;

    #[test]
    fn series_follow_the_live_pipelines() {
        let monitor = Monitor::new(ProcessQueues::new(), None);
        let stats = Arc::new(PipelineStats::default());
        PipelineStats::add(&stats.events_in, 7);
        monitor.running(
            "web",
            PipelineView {
                stats,
                process_queue: None,
                outputs: Vec::new(),
            },
        );
        monitor.base(Some(BaseStatus::Loaded));
        let text = render(&monitor);
        assert!(
            text.contains("tailrace_pipeline_events_in_total{pipeline=\"web\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("tailrace_plugin_base{state=\"loaded\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tailrace_process_resident_memory_bytes "),
            "{text}"
        );
        monitor.stopped("web");
        assert!(!render(&monitor).contains("pipeline=\"web\""));
    }
}
