//! The PipelineManager: applies the ConfigWatcher's diffs. A new or modified pipeline is built
//! first; only if it builds is the old one stopped and the new one started. The base parts of
//! all pipelines then go through one hold-on window per diff, which reloads every live base
//! pipeline (iLogtail's base forgets those not reloaded).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::watcher::Diff;
use crate::config::PipelineConfig;
use crate::input::file::FileServer;
use crate::monitor::{BaseStatus, Monitor};
use crate::pipeline::{stop_all, Built, Pipeline};
use crate::plugin::base::{BaseConfig, BaseConfigs};
use crate::plugin::BaseState;
use crate::runner::Runners;

/// How long a stopping pipeline gets to drain.
const STOP_LIMIT: Duration = Duration::from_secs(5);

pub struct PipelineManager {
    files: FileServer,
    runners: Runners,
    base: BaseState,
    pipelines: BTreeMap<String, Pipeline>,
    /// Pipelines that need the plugin base, waiting for it to load.
    waiting: BTreeMap<String, PipelineConfig>,
    /// The base configs of the last window sent.
    base_configs: BaseConfigs,
    next_key: i64,
    /// What /metrics and /healthz show.
    monitor: Monitor,
}

impl PipelineManager {
    pub fn new(
        files: FileServer,
        runners: Runners,
        base: BaseState,
        monitor: Monitor,
    ) -> PipelineManager {
        monitor.base(Some(base_status(&base)));
        PipelineManager {
            monitor,
            files,
            runners,
            base,
            pipelines: BTreeMap::new(),
            waiting: BTreeMap::new(),
            base_configs: BaseConfigs::new(),
            next_key: 1,
        }
    }

    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// Whether pipeline `name` runs or waits for the plugin base; false when it was not loaded
    /// (its build failed), which `--once` reports as a failure.
    pub fn is_loaded(&self, name: &str) -> bool {
        self.pipelines.contains_key(name) || self.waiting.contains_key(name)
    }

    pub fn update(&mut self, diff: Diff) {
        for name in diff.removed {
            self.waiting.remove(&name);
            self.monitor.stopped(&name);
            if let Some(pipeline) = self.pipelines.remove(&name) {
                tracing::info!(pipeline = name, "config removed: pipeline stopped");
                pipeline.stop(&self.files, &self.runners, STOP_LIMIT);
            }
        }
        for config in diff.added.into_iter().chain(diff.modified) {
            self.replace(config);
        }
        self.sync_base();
    }

    fn replace(&mut self, config: PipelineConfig) {
        let name = config.name.clone();
        if !config.enable {
            if let Some(old) = self.pipelines.remove(&name) {
                old.stop(&self.files, &self.runners, STOP_LIMIT);
            }
            self.monitor.stopped(&name);
            tracing::info!(pipeline = name, "disabled (enable: false)");
            return;
        }
        // Before it is built: building opens the flusher's output.
        let loops = crate::pipeline::feedback::loops_with(
            &config,
            self.pipelines.values().map(|p| &p.config),
        );
        if !loops.is_empty() {
            self.monitor.problem(&name, loops[0].to_string());
            for e in &loops {
                tracing::error!(
                    pipeline = name,
                    "not loaded: {e}; the running version (if any) keeps running"
                );
            }
            self.waiting.remove(&name);
            return;
        }
        let built = match Built::new(config) {
            Ok(built) => built,
            Err(e) => {
                self.monitor.problem(&name, format!("not loaded: {e}"));
                tracing::error!(
                    pipeline = name,
                    "not loaded: {e}; the running version (if any) keeps running"
                );
                return;
            }
        };
        if built.base.is_some() {
            match &self.base {
                BaseState::Ready(_) => {}
                BaseState::Loading { .. } => {
                    tracing::info!(
                        pipeline = name,
                        "waits for the plugin libraries to load (it needs the plugin base)"
                    );
                    self.monitor
                        .problem(&name, "waits for the plugin libraries to load");
                    self.waiting.insert(name, built.config);
                    return;
                }
                BaseState::Unavailable(why) => {
                    self.monitor.problem(
                        &name,
                        format!("needs the plugin base, which is unavailable ({why})"),
                    );
                    tracing::error!(
                        pipeline = name,
                        "not loaded: it needs the plugin base, which is unavailable ({why})"
                    );
                    return;
                }
            }
        }
        let missing = crate::config::plugins_not_implemented(&built.config);
        if !missing.is_empty() {
            match self.base.client() {
                Some(base) if !base.reports_delivery() => {
                    for e in &missing {
                        tracing::warn!(
                            pipeline = name,
                            "{e}; handed to the loaded third-party plugin base, which may have it"
                        );
                    }
                }
                _ => {
                    self.monitor.problem(&name, missing[0].to_string());
                    for e in &missing {
                        tracing::error!(
                            pipeline = name,
                            "not loaded: {e}; the running version (if any) keeps running"
                        );
                    }
                    self.waiting.remove(&name);
                    return;
                }
            }
        }
        self.waiting.remove(&name);
        let key = match self.pipelines.remove(&name) {
            Some(old) => {
                let key = old.logstore_key;
                old.stop(&self.files, &self.runners, STOP_LIMIT);
                key
            }
            None => {
                self.next_key += 1;
                self.next_key
            }
        };
        let pipeline = Pipeline::start(built, key, &self.files, self.base.client(), &self.runners);
        tracing::info!(
            pipeline = name,
            plugins = pipeline
                .base
                .as_ref()
                .map(|b| b.config_name.as_str())
                .unwrap_or("-"),
            "pipeline started"
        );
        self.monitor.running(&name, pipeline.view());
        self.pipelines.insert(name, pipeline);
    }

    /// Sends a hold-on window when the set of base configs changed.
    fn sync_base(&mut self) {
        let wanted: BaseConfigs = self
            .pipelines
            .values()
            .filter_map(|p| {
                p.base.as_ref().map(|b| {
                    (
                        b.config_name.clone(),
                        BaseConfig {
                            json: b.json.clone(),
                            logstore_key: p.logstore_key,
                        },
                    )
                })
            })
            .collect();
        if wanted == self.base_configs {
            return;
        }
        if let BaseState::Ready(base) = &mut self.base {
            base.apply(wanted.clone());
            self.base_configs = wanted;
        }
    }

    /// Reports of the base's windows; call regularly.
    pub fn poll_base(&mut self) {
        if self.base.poll() {
            self.monitor.base(Some(base_status(&self.base)));
            self.monitor
                .base_metrics(self.base.client().and_then(|b| b.go_metrics()));
            // The libraries loaded (or failed to): the pipelines that waited for them start
            // now (or are reported).
            for (_, config) in std::mem::take(&mut self.waiting) {
                self.replace(config);
            }
            self.sync_base();
        }
        let BaseState::Ready(base) = &mut self.base else {
            return;
        };
        let reports = base.poll();
        self.monitor.base(Some(if base.is_stalled() {
            BaseStatus::Hung
        } else {
            BaseStatus::Loaded
        }));
        for report in reports {
            match report.failures {
                Ok(failures) => {
                    for (name, why) in failures {
                        let pipeline = name.rsplit_once('/').map_or(name.as_str(), |(p, _)| p);
                        self.monitor
                            .problem(pipeline, format!("plugin part not loaded: {why}"));
                        tracing::error!(config = name, "plugin part not loaded: {why}");
                    }
                }
                Err(e) => tracing::error!("{e}"),
            }
        }
    }

    /// Whether every file input read its files to the end and had everything delivered (and
    /// no pipeline still waits for the plugin libraries to load).
    pub fn files_drained(&self) -> bool {
        !matches!(self.base, BaseState::Loading { .. }) && self.files.drained()
    }

    /// Stops everything, every pipeline at once under one deadline: inputs first, then the
    /// base gets `HoldOn(1)` (it flushes what it holds back to the native flushers, or persists
    /// it), then the native flushers drain.
    pub fn shutdown(mut self) {
        let pipelines: Vec<Pipeline> = std::mem::take(&mut self.pipelines).into_values().collect();
        let base = self.base;
        stop_all(pipelines, &self.files, &self.runners, STOP_LIMIT, || {
            if let BaseState::Ready(base) = base {
                base.exit(Duration::from_secs(5));
            }
        });
    }
}

/// The base's state as /metrics shows it.
fn base_status(base: &BaseState) -> BaseStatus {
    match base {
        BaseState::Loading { .. } => BaseStatus::Loading,
        BaseState::Ready(_) => BaseStatus::Loaded,
        BaseState::Unavailable(_) => BaseStatus::Unavailable,
    }
}
