//! A pipeline's native part, and how a config is split between the host and the plugin base
//! (DESIGN §5): native input → the processors up to the first one the host lacks → (the rest
//! of the chain → aggregators → extended flushers, in the base) → native flushers. Data crosses to the base once per batch
//! (`ProcessLogGroup` as `P/2`) and comes back once per batch (`SendPb` under `P`); a pipeline
//! whose input is extended runs in the base as `P/1` and flushes back to the host.

pub mod feedback;
pub mod manager;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tailrace::plugin::Flusher;

use crate::config::{PipelineConfig, Placement, PluginConfig};
use crate::input::file::{FileServer, InputFileConfig, InputId};
use crate::monitor::{PipelineStats, PipelineView};
use crate::plugin::delivery::Deliveries;
use crate::plugin::{router, BaseClient};
use crate::queue::sender::Rebuild;
use crate::queue::{self, SenderQueue, Work};
use crate::runner::Runners;
use crate::{flusher, processor};

/// The plugin-base part of a pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct BasePart {
    /// `P/1` (it holds the input) or `P/2` (fed by the host).
    pub config_name: String,
    /// The plugin manager's JSON (DESIGN §3).
    pub json: String,
}

/// The extended part of `config`, if it has one.
pub fn base_part(config: &PipelineConfig) -> Option<BasePart> {
    let extended = |plugins: &[PluginConfig]| -> Vec<Value> {
        plugins
            .iter()
            .filter(|p| p.placement.in_base())
            .map(|p| json!({"type": p.plugin_type, "detail": Value::Object(p.options.clone())}))
            .collect()
    };
    let inputs = extended(&config.inputs);
    let processors = extended(&config.processors);
    let aggregators = extended(&config.aggregators);
    let mut flushers = extended(&config.flushers);
    let extensions = extended(&config.extensions);
    if inputs.is_empty() && processors.is_empty() && aggregators.is_empty() && flushers.is_empty() {
        return None;
    }
    if config
        .flushers
        .iter()
        .any(|p| p.placement == Placement::Native)
    {
        // Data comes back to the host's native flushers.
        flushers.push(json!({"type": "flusher_sls", "detail": {}}));
    }
    let suffix = if inputs.is_empty() { 2 } else { 1 };
    let mut plugin_json = Map::new();
    plugin_json.insert("global".into(), Value::Object(config.global.clone()));
    if !inputs.is_empty() {
        plugin_json.insert("inputs".into(), Value::Array(inputs));
    }
    plugin_json.insert("processors".into(), Value::Array(processors));
    plugin_json.insert("aggregators".into(), Value::Array(aggregators));
    plugin_json.insert("flushers".into(), Value::Array(flushers));
    if !extensions.is_empty() {
        plugin_json.insert("extensions".into(), Value::Array(extensions));
    }
    Some(BasePart {
        config_name: format!("{}/{suffix}", config.name),
        json: Value::Object(plugin_json).to_string(),
    })
}

/// How the file input reads for `config`: in whole blocks when its first processor takes them
/// (iLogtail 1.x's split processors and its regex accelerator), as 1.x handed such a processor
/// the blocks it read. The host runs that processor (every one of them is native), so blocks
/// never cross to the plugin base: a base gets raw blocks only from a core that sends them with
/// `ProcessRawLogV2`, which Tailrace's base takes as one `content` for its first processor.
fn whole_block(
    config: &PipelineConfig,
) -> Result<Option<tailrace::processor::whole_block::BlockRule>, (String, String)> {
    let Some(first) = config
        .processors
        .first()
        .filter(|p| p.placement == Placement::Native)
    else {
        return Ok(None);
    };
    let Some(rule) = tailrace::processor::whole_block::block_rule(first.kind(), &first.options)
    else {
        return Ok(None);
    };
    let rule = rule.map_err(|e| (format!("{}.{}", first.field, e.field), e.message))?;
    let multiline = config
        .inputs
        .iter()
        .any(|p| p.options.get("Multiline").is_some_and(|m| !m.is_null()));
    tracing::info!(
        pipeline = config.name,
        processor = first.kind(),
        "files are read in whole blocks: the first processor cuts them into events"
    );
    if multiline {
        tracing::warn!(
            pipeline = config.name,
            processor = first.kind(),
            "the input's Multiline options are not used: the first processor takes whole blocks \
             and cuts the events itself"
        );
    }
    Ok(Some(rule))
}

/// A pipeline's native plugins, built (options checked, files opened) but not started.
pub struct Built {
    pub config: PipelineConfig,
    pub base: Option<BasePart>,
    flushers: Vec<(String, Box<dyn Flusher>, Rebuild)>,
    processors: Vec<Box<dyn tailrace::plugin::Processor>>,
    input: Option<crate::input::file::FileInputSpec>,
}

impl Built {
    pub fn new(config: PipelineConfig) -> Result<Built, String> {
        let fail = |(field, message): (String, String)| {
            format!("{}: {field}: {message}", config.file.display())
        };
        let mut flushers = Vec::new();
        for p in config
            .flushers
            .iter()
            .filter(|p| p.placement == Placement::Native)
        {
            let built = flusher::build(p).map_err(fail)?;
            let config = p.clone();
            let rebuild: Rebuild = Box::new(move || flusher::build(&config).map_err(|(_, e)| e));
            flushers.push((p.plugin_type.clone(), built, rebuild));
        }
        let mut processors = Vec::new();
        for (position, p) in config
            .processors
            .iter()
            .enumerate()
            .filter(|(_, p)| p.placement == Placement::Native)
        {
            let mut built = processor::build(p).map_err(fail)?;
            built.init(processor::services::for_processor(
                &config.name,
                &p.plugin_type,
                position,
            ));
            processors.push(built);
        }
        let mut input = match config
            .inputs
            .iter()
            .find(|p| p.placement == Placement::Native)
        {
            Some(p) => Some(InputFileConfig::from_plugin(p).map_err(fail)?),
            None => None,
        };
        if let Some(spec) = &mut input {
            spec.whole_block = whole_block(&config).map_err(fail)?;
            // Lines without events for a processor that writes LogGroups from them; the
            // processor runner makes them into events whenever it does not hand them to it.
            spec.hand_lines = matches!(&processors[..], [one] if one.takes_lines());
        }
        Ok(Built {
            base: base_part(&config),
            config,
            flushers,
            processors,
            input,
        })
    }
}

/// A running pipeline's native part: its queues (the shared runners do the work).
pub struct Pipeline {
    pub config: PipelineConfig,
    pub base: Option<BasePart>,
    pub logstore_key: i64,
    input: Option<InputId>,
    /// Its process queue, while it has an input.
    process_queue: Option<u64>,
    /// Its sender queues: native flushers, and the feed to the base.
    outputs: Vec<Arc<SenderQueue>>,
    stats: Arc<PipelineStats>,
}

/// `global.Priority` (LoongCollector's: 1 highest … 3, 0 or absent the default, lowest).
fn priority(config: &PipelineConfig) -> usize {
    let value = config.global.get("Priority");
    match value.and_then(|v| v.as_u64()) {
        Some(p @ 0..=3) => queue::process::level_of_priority(p),
        None if value.is_none() => queue::process::level_of_priority(0),
        _ => {
            tracing::warn!(
                pipeline = config.name,
                "global.Priority {:?} is not 0, 1, 2 or 3; the default (0, lowest) is used",
                value
            );
            queue::process::level_of_priority(0)
        }
    }
}

impl Pipeline {
    /// Starts a built pipeline, outputs first. `base` must be given when it has a base part.
    pub fn start(
        built: Built,
        logstore_key: i64,
        files: &FileServer,
        base: Option<&BaseClient>,
        runners: &Runners,
    ) -> Pipeline {
        let name = built.config.name.clone();
        let mut flushers = Vec::new();
        for (flusher_type, flusher, rebuild) in built.flushers {
            let q = SenderQueue::new(&name, &flusher_type, flusher, queue::SENDER_QUEUE_CAPACITY);
            q.set_rebuild(rebuild);
            runners.flushers.add(q.clone());
            flushers.push(q);
        }
        // With Tailrace's base, batches fed to it wait for its delivery reports (and for what it
        // sends back to be delivered here) before their checkpoints move.
        let deliveries = (built.base.is_some()
            && built.input.is_some()
            && base.is_some_and(|b| b.reports_delivery()))
        .then(|| Deliveries::new(&name, logstore_key as u64));
        if built.base.is_some() {
            router::add(
                &name,
                router::Route {
                    logstore_key,
                    flushers: flushers.clone(),
                    deliveries: deliveries.clone(),
                },
            );
        }
        let level = priority(&built.config);
        let processor_types = built
            .config
            .processors
            .iter()
            .filter(|p| p.placement == Placement::Native)
            .map(|p| p.plugin_type.clone())
            .collect();
        let mut pipeline = Pipeline {
            config: built.config,
            base: built.base,
            logstore_key,
            input: None,
            process_queue: None,
            outputs: flushers.clone(),
            stats: Arc::new(PipelineStats::with_processors(processor_types)),
        };
        if let Some(spec) = built.input {
            let destinations = match (&pipeline.base, base) {
                (Some(part), Some(base)) => {
                    let feed = SenderQueue::new(
                        &name,
                        "plugin-base",
                        base.feed_for(&part.config_name, deliveries),
                        queue::SENDER_QUEUE_CAPACITY,
                    );
                    runners.flushers.add(feed.clone());
                    pipeline.outputs.push(feed.clone());
                    vec![feed]
                }
                _ => flushers,
            };
            let handle = runners.queues.add(
                Work {
                    pipeline: name.clone(),
                    stats: pipeline.stats.clone(),
                    processors: Mutex::new(built.processors),
                    outputs: destinations,
                },
                queue::PROCESS_QUEUE_CAPACITY,
                level,
            );
            pipeline.process_queue = Some(handle.id);
            pipeline.input = Some(files.register(&name, spec, Box::new(handle)));
        }
        pipeline
    }

    /// What /metrics reads of it.
    pub fn view(&self) -> PipelineView {
        PipelineView {
            stats: self.stats.clone(),
            process_queue: self.process_queue,
            outputs: self.outputs.clone(),
        }
    }

    /// Stops the pipeline: its input first, then what is queued drains to the flushers (for at
    /// most `limit`).
    pub fn stop(self, files: &FileServer, runners: &Runners, limit: Duration) {
        stop_all(vec![self], files, runners, limit, || {});
    }
}

/// Stops `pipelines` together under one deadline, `limit` from now: every input stops, their
/// process queues drain, then `between` runs (the base's HoldOn, which flushes what it holds
/// back to the native flushers), then the sender queues drain (given at least a moment after
/// `between`, however long it took); what is left then is dropped undelivered — its checkpoints
/// did not pass it, so it is read again after a restart.
pub fn stop_all(
    mut pipelines: Vec<Pipeline>,
    files: &FileServer,
    runners: &Runners,
    limit: Duration,
    between: impl FnOnce(),
) {
    for p in &mut pipelines {
        if let Some(id) = p.input.take() {
            files.unregister(id);
        }
        if let Some(id) = p.process_queue {
            runners.queues.close(id);
        }
    }
    let deadline = Instant::now() + limit;
    wait_until(deadline, || {
        pipelines
            .iter()
            .filter_map(|p| p.process_queue)
            .all(|id| runners.queues.is_drained(id))
    });
    for p in &mut pipelines {
        if let Some(id) = p.process_queue.take() {
            let dropped = runners.queues.remove(id);
            if dropped > 0 {
                tracing::warn!(
                    pipeline = p.config.name,
                    batches = dropped,
                    "stopped with batches unprocessed; they are read again after a restart"
                );
            }
        }
    }
    between();
    for p in &pipelines {
        router::remove(&p.config.name);
        for q in &p.outputs {
            q.close();
        }
    }
    let deadline = deadline.max(Instant::now() + LAST_MOMENT);
    wait_until(deadline, || {
        pipelines
            .iter()
            .flat_map(|p| &p.outputs)
            .all(|q| q.is_drained())
    });
    for q in pipelines.iter().flat_map(|p| &p.outputs) {
        runners.flushers.remove(q);
        let (dropped, lost) = q.abandon();
        if dropped > lost {
            tracing::warn!(
                pipeline = q.pipeline,
                flusher = q.flusher_type,
                batches = dropped - lost,
                "stopped with file batches undelivered; they are read again after a restart"
            );
        }
        if lost > 0 {
            tracing::error!(
                pipeline = q.pipeline,
                flusher = q.flusher_type,
                batches = lost,
                "stopped with batches from the plugin base undelivered: they are lost"
            );
        }
        q.stop_flusher();
    }
}

/// What the sender queues get at least after the base's HoldOn, to take what it flushed back.
const LAST_MOMENT: Duration = Duration::from_secs(2);

/// Polls `done` until it holds or `deadline` passed.
fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> PipelineConfig {
        crate::config::parse(Path::new("/c/p.yaml"), text.as_bytes()).unwrap()
    }

    #[test]
    fn extended_input_runs_in_the_base_and_flushes_back() {
        let part = base_part(&config(
            "inputs: [{Type: metric_mock, Fields: {a: b}}]\nflushers: [{Type: flusher_stdout}]\n",
        ))
        .unwrap();
        assert_eq!(part.config_name, "p/1");
        let json: Value = serde_json::from_str(&part.json).unwrap();
        assert_eq!(json["inputs"][0]["type"], "metric_mock");
        assert_eq!(json["inputs"][0]["detail"]["Fields"]["a"], "b");
        assert_eq!(json["flushers"][0]["type"], "flusher_sls");
        assert_eq!(json["flushers"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn native_input_with_extended_aggregator_is_fed_as_p2() {
        let part = base_part(&config(
            "inputs: [{Type: input_file, FilePaths: [/a/*.log]}]\nprocessors: [{Type: processor_add_fields, Fields: {a: b}}]\naggregators: [{Type: aggregator_default}]\nflushers: [{Type: flusher_stdout}]\n",
        ))
        .unwrap();
        assert_eq!(part.config_name, "p/2");
        let json: Value = serde_json::from_str(&part.json).unwrap();
        assert!(json.get("inputs").is_none());
        // The host runs the processor it has.
        assert_eq!(json["processors"], json!([]));
        assert_eq!(json["aggregators"][0]["type"], "aggregator_default");
    }

    #[test]
    fn the_host_runs_the_prefix_and_the_base_the_rest_of_the_chain() {
        let config = config(
            "inputs: [{Type: input_file, FilePaths: [/a/*.log]}]\nprocessors:\n  - {Type: processor_parse_json_native}\n  - {Type: processor_geoip, SourceKey: ip}\n  - {Type: processor_add_fields, Fields: {a: b}}\nflushers: [{Type: flusher_stdout}]\n",
        );
        let part = base_part(&config).unwrap();
        let json: Value = serde_json::from_str(&part.json).unwrap();
        let types: Vec<&str> = json["processors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["processor_geoip", "processor_add_fields"]);
        let built = Built::new(config).unwrap();
        assert_eq!(built.processors.len(), 1);
    }

    #[test]
    fn with_an_extended_input_the_base_runs_every_processor() {
        let part = base_part(&config(
            "inputs: [{Type: metric_mock}]\nprocessors: [{Type: processor_parse_json_native, SourceKey: f1}]\nflushers: [{Type: flusher_stdout}]\n",
        ))
        .unwrap();
        let json: Value = serde_json::from_str(&part.json).unwrap();
        assert_eq!(json["processors"][0]["type"], "processor_parse_json_native");
        assert_eq!(json["processors"][0]["detail"]["SourceKey"], "f1");
    }

    #[test]
    fn a_first_split_processor_makes_the_input_read_whole_blocks() {
        let with = |processors: &str| {
            let built = Built::new(config(&format!(
                "inputs: [{{Type: input_file, FilePaths: [/a/*.log]}}]\nprocessors: {processors}\nflushers: [{{Type: flusher_stdout}}]\n"
            )))
            .unwrap();
            built.input.unwrap().whole_block
        };
        assert!(matches!(
            with(r"[{Type: processor_split_log_regex, SplitRegex: '\d+.*'}]"),
            Some(tailrace::processor::whole_block::BlockRule::EventStart(_))
        ));
        assert!(matches!(
            with("[{Type: processor_split_log_string}]"),
            Some(tailrace::processor::whole_block::BlockRule::Separator(_))
        ));
        assert!(matches!(
            with("[{Type: processor_regex_accelerate, Regex: '(.*)', Keys: [a]}]"),
            Some(tailrace::processor::whole_block::BlockRule::Line)
        ));
        // Not first, or not a splitter: lines.
        assert!(with(
            "[{Type: processor_add_fields, Fields: {a: b}}, {Type: processor_split_log_string}]"
        )
        .is_none());
        assert!(with("[{Type: processor_split_string, SplitSep: ','}]").is_none());
        assert!(with("[]").is_none());
    }

    #[test]
    fn one_parser_that_takes_lines_makes_the_input_hand_lines() {
        let with = |processors: &str| {
            let built = Built::new(config(&format!(
                "inputs: [{{Type: input_file, FilePaths: [/a/*.log]}}]\nprocessors: {processors}\nflushers: [{{Type: flusher_blackhole}}]\n"
            )))
            .unwrap();
            built.input.unwrap().hand_lines
        };
        assert!(with(
            "[{Type: processor_parse_delimiter_native, Separator: ',', Keys: [a]}]"
        ));
        assert!(with(
            "[{Type: processor_parse_regex_native, Regex: '(.*) (.*)', Keys: [a, b]}]"
        ));
        assert!(with("[{Type: processor_parse_json_native}]"));
        // A second processor, whole-line mode, or no processor: events.
        assert!(!with(
            "[{Type: processor_parse_json_native}, {Type: processor_add_fields, Fields: {a: b}}]"
        ));
        assert!(!with(
            "[{Type: processor_parse_regex_native, Regex: '(.*)', Keys: [a]}]"
        ));
        assert!(!with("[]"));
    }

    #[test]
    fn all_native_has_no_base_part() {
        assert!(base_part(&config(
            "inputs: [{Type: input_file, FilePaths: [/a/*.log]}]\nflushers: [{Type: flusher_blackhole}]\n"
        ))
        .is_none());
    }
}
