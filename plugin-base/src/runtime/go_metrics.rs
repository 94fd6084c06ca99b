//! What `GetGoMetrics(metricType)` returns: the base's statistics as rows of key/value strings,
//! in the layouts LoongCollector's C++ side reads (`core/monitor/MetricManager.cpp`):
//!
//! * `"direct"`: one row per pipeline and one per plugin, each with three keys holding JSON
//!   objects: `labels` (with `metric_category`: `pipeline` or `plugin`, and `project`,
//!   `logstore`, `pipeline_name`, for plugins `plugin_type` and `plugin_id`), `counters`
//!   (`plugin_in_events_total`, `plugin_in_size_bytes`, `plugin_out_events_total`,
//!   `plugin_out_size_bytes`, `plugin_errors_total`, `plugin_total_process_time_ms`; for
//!   pipelines `pipeline_*`) and `gauges`. Counters are cumulative since the instance started.
//! * `"cpp_provided"`: one row of process-level figures the C++ side folds into its own
//!   (`agent_go_routines_total`: here the runtime's live tasks). `agent_go_memory_used_mb` is
//!   left out: the base shares the host's heap and cannot tell its own part.
//! * anything else (Tailrace's original layout, kept for hosts that use it): one flat row per
//!   running pipeline, `config_name` and its counters.

use serde_json::{json, Map, Value};

use super::pipeline::PipelineInstance;

/// LoongCollector's `METRIC_EXPORT_TYPE_GO`.
pub const DIRECT: &str = "direct";
/// LoongCollector's `METRIC_EXPORT_TYPE_CPP`.
pub const CPP_PROVIDED: &str = "cpp_provided";

pub type Row = Vec<(String, String)>;

/// The `direct` rows of the running instances.
pub fn direct<'a>(
    running: impl IntoIterator<Item = (&'a String, &'a PipelineInstance)>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (name, instance) in running {
        let ctx = &instance.ctx;
        let mut labels = Map::new();
        labels.insert("project".into(), json!(ctx.project));
        labels.insert("logstore".into(), json!(ctx.logstore));
        labels.insert("pipeline_name".into(), json!(ctx.real_name));
        labels.insert("config_name".into(), json!(name));
        let pipeline_counters: Map<String, Value> = instance
            .stats
            .snapshot()
            .into_iter()
            .map(|(k, v)| (format!("pipeline_{k}_total"), json!(v)))
            .collect();
        rows.push(row("pipeline", labels.clone(), pipeline_counters));
        for plugin in instance.stats.plugins() {
            let mut plugin_labels = labels.clone();
            plugin_labels.insert("plugin_type".into(), json!(plugin.plugin_type));
            plugin_labels.insert("plugin_id".into(), json!(plugin.plugin_id));
            let counters = plugin
                .counters()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), json!(v)))
                .chain(
                    plugin
                        .extra_counters()
                        .into_iter()
                        .map(|(k, v)| (k, json!(v))),
                )
                .collect();
            rows.push(row("plugin", plugin_labels, counters));
        }
    }
    rows
}

fn row(category: &str, mut labels: Map<String, Value>, counters: Map<String, Value>) -> Row {
    labels.insert("metric_category".into(), json!(category));
    vec![
        ("labels".to_owned(), Value::Object(labels).to_string()),
        ("counters".to_owned(), Value::Object(counters).to_string()),
        ("gauges".to_owned(), "{}".to_owned()),
    ]
}

/// The `cpp_provided` row.
pub fn cpp_provided(live_tasks: usize) -> Vec<Row> {
    vec![vec![(
        "agent_go_routines_total".to_owned(),
        live_tasks.to_string(),
    )]]
}

/// Tailrace's flat rows.
pub fn flat<'a>(running: impl IntoIterator<Item = (&'a String, &'a PipelineInstance)>) -> Vec<Row> {
    running
        .into_iter()
        .map(|(name, instance)| {
            let mut row = vec![("config_name".to_owned(), name.clone())];
            for (k, v) in instance.stats.snapshot() {
                row.push((k.to_owned(), v.to_string()));
            }
            row
        })
        .collect()
}
