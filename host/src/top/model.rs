//! What `tailrace top` shows, computed from two scrapes of `/metrics` a moment apart: per
//! pipeline the event rate, bytes/s, errors, queue fill and input blocking; per flusher its
//! delivery rate, errors and queue fill. Pure functions of the scrapes, so they are tested
//! without a terminal.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};

/// Counters and gauges of one scrape, by metric name and label set.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    values: BTreeMap<(String, Vec<(String, String)>), f64>,
}

impl Sample {
    /// Parses Prometheus text.
    pub fn parse(text: &str) -> Result<Sample, String> {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .map_err(|e| format!("not Prometheus text: {e}"))?;
        Ok(Sample::from_scrape(&scrape))
    }

    fn from_scrape(scrape: &Scrape) -> Sample {
        let mut values = BTreeMap::new();
        for s in &scrape.samples {
            let value = match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => continue,
            };
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            values.insert((s.metric.clone(), labels), value);
        }
        Sample { values }
    }

    fn get(&self, metric: &str, labels: &[(String, String)]) -> Option<f64> {
        self.values
            .get(&(metric.to_owned(), labels.to_vec()))
            .copied()
    }

    /// Every label set of `metric`.
    fn label_sets<'a>(&'a self, metric: &'a str) -> impl Iterator<Item = &'a [(String, String)]> {
        self.values
            .keys()
            .filter(move |(m, _)| m == metric)
            .map(|(_, labels)| labels.as_slice())
    }
}

/// One pipeline's row.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineRow {
    pub name: String,
    pub events_in_per_s: f64,
    pub events_out_per_s: f64,
    pub bytes_in_per_s: f64,
    pub events_in: f64,
    /// Processor panics plus flusher failures and panics, in total.
    pub errors: f64,
    /// Process queue depth / capacity, 0..=1.
    pub queue_fill: f64,
    pub blocked: bool,
}

/// One flusher's row.
#[derive(Clone, Debug, PartialEq)]
pub struct FlusherRow {
    pub pipeline: String,
    pub flusher: String,
    pub events_per_s: f64,
    pub events: f64,
    pub failures: f64,
    pub panics: f64,
    pub queue_fill: f64,
}

/// The whole view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    pub pipelines: Vec<PipelineRow>,
    pub flushers: Vec<FlusherRow>,
    pub base_state: String,
    pub rss_bytes: f64,
    /// CPU use of the daemon over the interval, in cores.
    pub cpu_cores: f64,
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// A counter's rate between two scrapes (0 on the first, or after a restart reset it).
fn rate(
    now: &Sample,
    before: Option<&Sample>,
    metric: &str,
    labels: &[(String, String)],
    dt: f64,
) -> f64 {
    let Some(current) = now.get(metric, labels) else {
        return 0.0;
    };
    let previous = before
        .and_then(|b| b.get(metric, labels))
        .unwrap_or(current);
    if dt <= 0.0 || current < previous {
        0.0
    } else {
        (current - previous) / dt
    }
}

fn fill(depth: Option<f64>, capacity: Option<f64>) -> f64 {
    match (depth, capacity) {
        (Some(d), Some(c)) if c > 0.0 => (d / c).clamp(0.0, 1.0),
        _ => 0.0,
    }
}

impl Model {
    /// The view of `now`, with rates against `before` taken `interval` earlier.
    pub fn new(now: &Sample, before: Option<&Sample>, interval: Duration) -> Model {
        let dt = interval.as_secs_f64();
        let mut model = Model::default();
        let pipeline_sets: Vec<Vec<(String, String)>> = now
            .label_sets("tailrace_pipeline_events_in_total")
            .map(<[_]>::to_vec)
            .collect();
        for labels in &pipeline_sets {
            let name = label(labels, "pipeline").to_owned();
            let flusher_errors: f64 = now
                .label_sets("tailrace_flusher_failures_total")
                .filter(|l| label(l, "pipeline") == name)
                .map(|l| {
                    now.get("tailrace_flusher_failures_total", l).unwrap_or(0.0)
                        + now.get("tailrace_flusher_panics_total", l).unwrap_or(0.0)
                })
                .sum();
            model.pipelines.push(PipelineRow {
                events_in_per_s: rate(now, before, "tailrace_pipeline_events_in_total", labels, dt),
                events_out_per_s: rate(
                    now,
                    before,
                    "tailrace_pipeline_events_out_total",
                    labels,
                    dt,
                ),
                bytes_in_per_s: rate(now, before, "tailrace_pipeline_bytes_in_total", labels, dt),
                events_in: now
                    .get("tailrace_pipeline_events_in_total", labels)
                    .unwrap_or(0.0),
                errors: now
                    .get("tailrace_pipeline_processor_panics_total", labels)
                    .unwrap_or(0.0)
                    + flusher_errors,
                queue_fill: fill(
                    now.get("tailrace_process_queue_depth", labels),
                    now.get("tailrace_process_queue_capacity", labels),
                ),
                blocked: now.get("tailrace_pipeline_input_blocked", labels) == Some(1.0),
                name,
            });
        }
        let flusher_sets: Vec<Vec<(String, String)>> = now
            .label_sets("tailrace_flusher_events_total")
            .map(<[_]>::to_vec)
            .collect();
        for labels in &flusher_sets {
            model.flushers.push(FlusherRow {
                pipeline: label(labels, "pipeline").to_owned(),
                flusher: label(labels, "flusher").to_owned(),
                events_per_s: rate(now, before, "tailrace_flusher_events_total", labels, dt),
                events: now
                    .get("tailrace_flusher_events_total", labels)
                    .unwrap_or(0.0),
                failures: now
                    .get("tailrace_flusher_failures_total", labels)
                    .unwrap_or(0.0),
                panics: now
                    .get("tailrace_flusher_panics_total", labels)
                    .unwrap_or(0.0),
                queue_fill: fill(
                    now.get("tailrace_sender_queue_depth", labels),
                    now.get("tailrace_sender_queue_capacity", labels),
                ),
            });
        }
        model.base_state = now
            .label_sets("tailrace_plugin_base")
            .find(|l| now.get("tailrace_plugin_base", l) == Some(1.0))
            .map_or("absent", |l| label(l, "state"))
            .to_owned();
        model.rss_bytes = now
            .get("tailrace_process_resident_memory_bytes", &[])
            .unwrap_or(0.0);
        model.cpu_cores = rate(now, before, "tailrace_process_cpu_seconds_total", &[], dt);
        model
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(events_in: u64, cpu: f64) -> Sample {
        Sample::parse(&format!(
            "# TYPE tailrace_pipeline_events_in counter\n\
             tailrace_pipeline_events_in_total{{pipeline=\"web\"}} {events_in}\n\
             tailrace_pipeline_events_out_total{{pipeline=\"web\"}} {events_in}\n\
             tailrace_pipeline_processor_panics_total{{pipeline=\"web\"}} 1\n\
             tailrace_process_queue_depth{{pipeline=\"web\"}} 2\n\
             tailrace_process_queue_capacity{{pipeline=\"web\"}} 8\n\
             tailrace_pipeline_input_blocked{{pipeline=\"web\"}} 1\n\
             tailrace_flusher_events_total{{pipeline=\"web\",flusher=\"flusher_file\",index=\"0\"}} {events_in}\n\
             tailrace_flusher_failures_total{{pipeline=\"web\",flusher=\"flusher_file\",index=\"0\"}} 3\n\
             tailrace_flusher_panics_total{{pipeline=\"web\",flusher=\"flusher_file\",index=\"0\"}} 0\n\
             tailrace_plugin_base{{state=\"loaded\"}} 1\n\
             tailrace_plugin_base{{state=\"loading\"}} 0\n\
             tailrace_process_cpu_seconds_total {cpu}\n\
             tailrace_process_resident_memory_bytes 1048576\n"
        ))
        .unwrap()
    }

    #[test]
    fn rates_come_from_two_scrapes() {
        let before = scrape(100, 1.0);
        let now = scrape(300, 1.5);
        let model = Model::new(&now, Some(&before), Duration::from_secs(2));
        let web = &model.pipelines[0];
        assert_eq!(web.name, "web");
        assert_eq!(web.events_in_per_s, 100.0);
        assert_eq!(web.events_in, 300.0);
        assert_eq!(web.errors, 4.0, "a processor panic and 3 flush failures");
        assert_eq!(web.queue_fill, 0.25);
        assert!(web.blocked);
        assert_eq!(model.flushers[0].events_per_s, 100.0);
        assert_eq!(model.base_state, "loaded");
        assert_eq!(model.cpu_cores, 0.25);
        // The first scrape has no rates yet; a restarted daemon's reset counters give 0, not
        // a negative rate.
        assert_eq!(
            Model::new(&now, None, Duration::from_secs(1)).pipelines[0].events_in_per_s,
            0.0
        );
        assert_eq!(
            Model::new(&before, Some(&now), Duration::from_secs(1)).pipelines[0].events_in_per_s,
            0.0
        );
    }
}
