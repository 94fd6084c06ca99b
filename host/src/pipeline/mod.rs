//! A pipeline's native part, and how a config is split between the host and the plugin base
//! (DESIGN §5): native input → native processors → (extended processors → aggregators →
//! extended flushers, in the base) → native flushers. Data crosses to the base once per batch
//! (`ProcessLogGroup` as `P/2`) and comes back once per batch (`SendPb` under `P`); a pipeline
//! whose input is extended runs in the base as `P/1` and flushes back to the host.

pub mod manager;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tailrace::plugin::Flusher;

use crate::config::{PipelineConfig, Placement, PluginConfig};
use crate::input::file::{FileServer, InputFileConfig, InputId};
use crate::plugin::{router, BaseClient};
use crate::queue;
use crate::runner::processor::Destination;
use crate::{flusher, processor, runner};

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
            .filter(|p| p.placement == Placement::Extended)
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

/// A pipeline's native plugins, built (options checked, files opened) but not started.
pub struct Built {
    pub config: PipelineConfig,
    pub base: Option<BasePart>,
    flushers: Vec<(String, Box<dyn Flusher>)>,
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
            flushers.push((p.plugin_type.clone(), flusher::build(p).map_err(fail)?));
        }
        let mut processors = Vec::new();
        for p in config
            .processors
            .iter()
            .filter(|p| p.placement == Placement::Native)
        {
            processors.push(processor::build(p).map_err(fail)?);
        }
        let input = match config
            .inputs
            .iter()
            .find(|p| p.placement == Placement::Native)
        {
            Some(p) => Some(InputFileConfig::from_plugin(p).map_err(fail)?),
            None => None,
        };
        Ok(Built {
            base: base_part(&config),
            config,
            flushers,
            processors,
            input,
        })
    }
}

/// A running pipeline's native part.
pub struct Pipeline {
    pub config: PipelineConfig,
    pub base: Option<BasePart>,
    pub logstore_key: i64,
    input: Option<InputId>,
    processor: Option<JoinHandle<()>>,
    flushers: Vec<JoinHandle<()>>,
    /// Tells the flusher runners to stop retrying (set when a stop's time is up).
    give_up: Arc<AtomicBool>,
}

impl Pipeline {
    /// Starts a built pipeline, outputs first. `base` must be given when it has a base part.
    pub fn start(
        built: Built,
        logstore_key: i64,
        files: &FileServer,
        base: Option<&BaseClient>,
    ) -> Pipeline {
        let name = built.config.name.clone();
        let mut senders = Vec::new();
        let mut flushers = Vec::new();
        let give_up = Arc::new(AtomicBool::new(false));
        for (flusher_type, flusher) in built.flushers {
            let (tx, rx) = queue::sender_queue();
            flushers.push(runner::flusher::spawn(
                &name,
                &flusher_type,
                flusher,
                rx,
                give_up.clone(),
            ));
            senders.push(tx);
        }
        if built.base.is_some() && !senders.is_empty() {
            router::add(
                &name,
                router::Route {
                    logstore_key,
                    flushers: senders.clone(),
                },
            );
        }
        let mut pipeline = Pipeline {
            config: built.config,
            base: built.base,
            logstore_key,
            input: None,
            processor: None,
            flushers,
            give_up,
        };
        if let Some(spec) = built.input {
            let destination = match (&pipeline.base, base) {
                (Some(part), Some(base)) => Destination::Base(base.feed_for(&part.config_name)),
                _ => Destination::Flushers(senders),
            };
            let (tx, rx) = queue::process_queue();
            pipeline.processor = Some(runner::processor::spawn(
                &name,
                built.processors,
                rx,
                destination,
            ));
            pipeline.input = Some(files.register(&name, spec, Box::new(tx)));
        }
        pipeline
    }

    /// Stops the pipeline: its input first, then what is queued drains to the flushers (for at
    /// most `limit`).
    pub fn stop(mut self, files: &FileServer, limit: Duration) {
        self.stop_input(files, limit);
        self.finish(limit);
    }

    /// Stops reading and lets the processor runner hand on what it has (for at most `limit`).
    pub fn stop_input(&mut self, files: &FileServer, limit: Duration) {
        let deadline = Instant::now() + limit;
        if let Some(id) = self.input.take() {
            files.unregister(id);
        }
        if let Some(thread) = self.processor.take() {
            if join_until(&thread, deadline) {
                let _ = thread.join();
            } else {
                tracing::warn!(
                    pipeline = self.config.name,
                    "the processor runner did not finish in time; left behind"
                );
            }
        }
    }

    /// Stops taking data back from the base and lets the flushers drain (for at most `limit`).
    pub fn finish(mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        router::remove(&self.config.name);
        for thread in std::mem::take(&mut self.flushers) {
            if !join_until(&thread, deadline) {
                self.give_up.store(true, Ordering::Relaxed);
                // A runner checks between two attempts; give it one more moment.
                if !join_until(&thread, Instant::now() + Duration::from_millis(500)) {
                    tracing::warn!(
                        pipeline = self.config.name,
                        "a flusher did not stop in time; left behind"
                    );
                    continue;
                }
            }
            let _ = thread.join();
        }
    }
}

/// Waits until `thread` finished or `deadline`; true when it finished.
fn join_until(thread: &JoinHandle<()>, deadline: Instant) -> bool {
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
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
    fn native_input_with_extended_processor_is_fed_as_p2() {
        let part = base_part(&config(
            "inputs: [{Type: input_file, FilePaths: [/a/*.log]}]\nprocessors: [{Type: processor_add_fields, Fields: {a: b}}]\nflushers: [{Type: flusher_stdout}]\n",
        ))
        .unwrap();
        assert_eq!(part.config_name, "p/2");
        let json: Value = serde_json::from_str(&part.json).unwrap();
        assert!(json.get("inputs").is_none());
        assert_eq!(json["processors"][0]["type"], "processor_add_fields");
    }

    #[test]
    fn all_native_has_no_base_part() {
        assert!(base_part(&config(
            "inputs: [{Type: input_file, FilePaths: [/a/*.log]}]\nflushers: [{Type: flusher_blackhole}]\n"
        ))
        .is_none());
    }
}
