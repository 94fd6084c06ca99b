//! The plugin runtime: one tokio runtime and every pipeline instance, driven through the
//! hold-on cycle exactly as iLogtail's core drives its plugin base (DESIGN §3):
//!
//! * `hold_on` stops every running instance (inputs first, flushers last) and sets it aside;
//!   with `exit`, what could not be delivered is persisted for the next start.
//! * `load_config` (only while held on) builds a new instance; one whose name matches a
//!   set-aside instance takes over its undelivered data.
//! * `resume` starts the loaded instances, outputs first, and discards set-aside instances that
//!   were not reloaded.
//!
//! Generation-2 calls (`load_pipeline`, `start`, `stop`, ...) drive single pipelines the way
//! LoongCollector 3.x does. Everything here is safe Rust, tested without the ABI; `ffi.rs` only
//! translates arguments.

pub mod clock;
pub mod feed;
pub mod go_metrics;
pub mod pipeline;
pub mod raw_log;
pub mod raw_tags;
pub mod registry;
pub mod undelivered;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use feed::FeedError;
use serde_json::Value;
use tailrace::plugin_config::{real_config_name, PluginManagerConfig};
use tailrace::{LogGroup, PipelineEventGroup};
use tokio::runtime::Runtime;

use crate::context::alarm::{AlarmScope, ALARM_CONFIG_NAME};
use crate::context::statistics::STATISTICS_CONFIG_NAME;
use crate::context::{AlarmLevel, Alarms, CheckpointStore};
use crate::host_link::HostLink;
use pipeline::PipelineInstance;
use registry::{PluginContext, Registry};

/// How long a host call that feeds a pipeline waits for room in its queue.
const FEED_WAIT: Duration = Duration::from_secs(1);

/// Settings from the global config (`InitPluginBaseV2`, `LoadGlobalConfig`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where undelivered data is persisted at exit.
    pub data_dir: PathBuf,
    /// How often alarms are sent to the host.
    pub alarm_interval: Duration,
    /// How often statistics are sent to the host.
    pub statistics_interval: Duration,
    /// The whole global config, as given.
    pub raw: Value,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("."),
            alarm_interval: Duration::from_secs(30),
            statistics_interval: Duration::from_secs(60),
            raw: Value::Object(Default::default()),
        }
    }
}

impl Settings {
    /// Reads iLogtail's and LoongCollector's global-config names: the data dir (undelivered
    /// data, plugin checkpoints) from `DataDir` (Tailrace), `LoongcollectorDataDir` (3.x),
    /// `LoongcollectorSysConfDir` (where LoongCollector's Go side keeps its checkpoint
    /// database) or `LogtailSysConfDir` (1.x);
    /// `AlarmIntervalMs` and `StatisticsIntervalMs` are Tailrace's (defaults 30 s and 60 s, as
    /// iLogtail's built-in alarm and statistics pipelines).
    pub fn from_json(json: &str) -> Result<Settings, String> {
        let raw: Value = if json.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(json).map_err(|e| format!("global config: invalid JSON: {e}"))?
        };
        let obj = raw
            .as_object()
            .ok_or_else(|| "global config: expected a JSON object".to_owned())?;
        let mut settings = Settings::default();
        for key in [
            "DataDir",
            "LoongcollectorDataDir",
            "LoongcollectorSysConfDir",
            "LogtailSysConfDir",
        ] {
            if let Some(dir) = obj.get(key).and_then(Value::as_str) {
                if !dir.is_empty() {
                    settings.data_dir = PathBuf::from(dir);
                    break;
                }
            }
        }
        let millis = |key: &str| -> Result<Option<Duration>, String> {
            match obj.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .filter(|ms| *ms > 0)
                    .map(|ms| Some(Duration::from_millis(ms)))
                    .ok_or_else(|| {
                        format!("global config: {key}: expected a positive integer, got {v}")
                    }),
            }
        };
        if let Some(d) = millis("AlarmIntervalMs")? {
            settings.alarm_interval = d;
        }
        if let Some(d) = millis("StatisticsIntervalMs")? {
            settings.statistics_interval = d;
        }
        settings.raw = raw;
        Ok(settings)
    }

    fn undelivered_dir(&self) -> PathBuf {
        self.data_dir.join("plugin_base").join("undelivered")
    }
}

/// Which pipelines `LoadConfig` et al. name.
pub struct LoadRequest<'a> {
    pub project: &'a str,
    pub logstore: &'a str,
    pub config_name: &'a str,
    pub logstore_key: i64,
    pub json: &'a str,
}

#[derive(Default)]
struct State {
    /// True between HoldOn and Resume, and before the first Resume.
    held_on: bool,
    /// Built, waiting for Resume (or Start).
    loaded: BTreeMap<String, PipelineInstance>,
    running: BTreeMap<String, PipelineInstance>,
    /// Stopped by HoldOn; discarded at Resume unless reloaded.
    set_aside: BTreeMap<String, PipelineInstance>,
}

/// The whole plugin base.
pub struct PluginBase {
    rt: Runtime,
    host: Arc<dyn HostLink>,
    alarms: Arc<Alarms>,
    registry: Registry,
    settings: Arc<RwLock<Settings>>,
    state: Arc<Mutex<State>>,
}

impl PluginBase {
    pub fn new(
        host: Arc<dyn HostLink>,
        registry: Registry,
        settings: Settings,
    ) -> std::io::Result<PluginBase> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("plugin-base")
            .enable_all()
            .build()?;
        let base = PluginBase {
            rt,
            host,
            alarms: Arc::new(Alarms::default()),
            registry,
            settings: Arc::new(RwLock::new(settings)),
            state: Arc::new(Mutex::new(State {
                held_on: true,
                ..Default::default()
            })),
        };
        base.spawn_reporter();
        Ok(base)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = settings;
    }

    pub fn alarms(&self) -> &Arc<Alarms> {
        &self.alarms
    }

    /// Raises an alarm that belongs to no pipeline in particular.
    pub fn alarm(&self, alarm_type: &str, level: AlarmLevel, config: &str, message: String) {
        let scope = AlarmScope {
            config: config.to_owned(),
            ..Default::default()
        };
        self.alarms.record(alarm_type, level, &scope, message);
    }

    /// `LoadConfig`: only while held on. An empty `json` deletes the pipeline.
    pub fn load_config(&self, req: &LoadRequest<'_>) -> Result<(), String> {
        let mut state = self.state();
        if !state.held_on {
            return Err(format!(
                "config {:?}: LoadConfig is only valid between HoldOn and Resume",
                req.config_name
            ));
        }
        self.load_locked(&mut state, req)
    }

    /// `LoadPipeline`: like `load_config`, at any time; `start` runs it.
    pub fn load_pipeline(&self, req: &LoadRequest<'_>) -> Result<(), String> {
        let mut state = self.state();
        self.load_locked(&mut state, req)
    }

    fn load_locked(&self, state: &mut State, req: &LoadRequest<'_>) -> Result<(), String> {
        let name = req.config_name;
        if req.json.trim().is_empty() {
            state.loaded.remove(name);
            return Ok(());
        }
        let built = PluginManagerConfig::from_json(req.json)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|config| {
                let ctx = PluginContext {
                    config_name: name.to_owned(),
                    real_name: real_config_name(name).to_owned(),
                    project: req.project.to_owned(),
                    logstore: req.logstore.to_owned(),
                    logstore_key: req.logstore_key,
                    global: config.global.clone(),
                    host: self.host.clone(),
                    alarms: self.alarms.clone(),
                    plugin_id: String::new(),
                    plugin_stats: Arc::default(),
                    checkpoint_store: Arc::new(CheckpointStore::under(&self.settings().data_dir)),
                };
                PipelineInstance::build(ctx, &config, &self.registry)
            });
        let mut instance = match built {
            Ok(instance) => instance,
            Err(e) => {
                let message = format!("config {name:?}: {e}");
                self.alarm(
                    "CONFIG_LOAD_ALARM",
                    AlarmLevel::Error,
                    name,
                    message.clone(),
                );
                return Err(message);
            }
        };
        if let Some(mut previous) = state.loaded.remove(name) {
            instance.take_over(previous.take_carried());
        } else if let Some(old) = state.set_aside.get_mut(name) {
            instance.take_over(old.take_carried());
        } else {
            let dir = self.settings().undelivered_dir();
            match undelivered::take(&dir, name) {
                Ok(carried) => instance.take_over(carried),
                Err(e) => self.alarm(
                    "CHECKPOINT_ALARM",
                    AlarmLevel::Error,
                    name,
                    format!("cannot replay undelivered data: {e}"),
                ),
            }
        }
        state.loaded.insert(name.to_owned(), instance);
        Ok(())
    }

    /// `UnloadConfig` / `UnloadPipeline`: forgets a loaded, not yet started pipeline.
    pub fn unload(&self, config_name: &str) {
        self.state().loaded.remove(config_name);
    }

    /// `HoldOn`: stops every running pipeline and sets it aside; with `exit`, persists what
    /// could not be delivered.
    pub fn hold_on(&self, exit: bool) {
        #[cfg(feature = "test-faults")]
        if std::env::var_os("TAILRACE_TEST_HOLDON_HANG").is_some() {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let running = {
            let mut state = self.state();
            state.held_on = true;
            std::mem::take(&mut state.running)
        };
        let stopped = self.stop_all(running, exit);
        let mut state = self.state();
        for (name, instance) in stopped {
            state.set_aside.insert(name, instance);
        }
        if exit {
            let names: Vec<String> = state.set_aside.keys().cloned().collect();
            for name in names {
                if let Some(instance) = state.set_aside.get_mut(&name) {
                    let carried = instance.take_carried();
                    self.persist(&name, &carried);
                }
            }
            drop(state);
            self.report_alarms();
        }
    }

    /// `Resume`: starts what was loaded, outputs first; discards what was set aside.
    pub fn resume(&self) {
        let mut state = self.state();
        let loaded = std::mem::take(&mut state.loaded);
        for (name, mut instance) in loaded {
            instance.start(self.rt.handle());
            state.running.insert(name, instance);
        }
        for (name, mut old) in std::mem::take(&mut state.set_aside) {
            let lost: usize = old.take_carried().iter().map(|c| c.groups.len()).sum();
            if lost > 0 {
                self.alarm(
                    "DISCARD_DATA_ALARM",
                    AlarmLevel::Warning,
                    &name,
                    format!("pipeline removed with {lost} undelivered batches"),
                );
            }
        }
        state.held_on = false;
    }

    /// `Start`: runs one loaded pipeline.
    pub fn start(&self, config_name: &str) -> bool {
        let mut state = self.state();
        let Some(mut instance) = state.loaded.remove(config_name) else {
            return false;
        };
        state.set_aside.remove(config_name);
        instance.start(self.rt.handle());
        state.running.insert(config_name.to_owned(), instance);
        true
    }

    /// `Stop`: stops one pipeline; unless `removed`, it is set aside for a reload to take over.
    pub fn stop(&self, config_name: &str, removed: bool) {
        let Some(instance) = self.state().running.remove(config_name) else {
            return;
        };
        let stopped = self.stop_all(BTreeMap::from([(config_name.to_owned(), instance)]), false);
        if !removed {
            self.state().set_aside.extend(stopped);
        }
    }

    /// `StopAllPipelines`: stops the running pipelines that have inputs (or those that have
    /// none), persisting what they could not deliver: LoongCollector calls it at exit.
    pub fn stop_all_pipelines(&self, with_input: bool) {
        let selected = {
            let mut state = self.state();
            let names: Vec<String> = state
                .running
                .iter()
                .filter(|(_, i)| i.has_input() == with_input)
                .map(|(n, _)| n.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| state.running.remove(&n).map(|i| (n, i)))
                .collect()
        };
        for (name, mut instance) in self.stop_all(selected, true) {
            let carried = instance.take_carried();
            self.persist(&name, &carried);
        }
    }

    /// `StopBuiltInModules`: sends the last alarms.
    pub fn stop_builtin_modules(&self) {
        self.report_alarms();
    }

    fn stop_all(
        &self,
        instances: BTreeMap<String, PipelineInstance>,
        exit: bool,
    ) -> Vec<(String, PipelineInstance)> {
        let handles: Vec<_> = instances
            .into_iter()
            .map(|(name, mut instance)| {
                self.rt.spawn(async move {
                    instance.stop(exit).await;
                    (name, instance)
                })
            })
            .collect();
        self.rt.block_on(async {
            let mut stopped = Vec::with_capacity(handles.len());
            for handle in handles {
                match handle.await {
                    Ok(done) => stopped.push(done),
                    Err(e) => tracing::error!("stopping a pipeline failed: {e}"),
                }
            }
            stopped
        })
    }

    fn persist(&self, name: &str, carried: &[pipeline::Carried]) {
        let dir = self.settings().undelivered_dir();
        if let Err(e) = undelivered::save(&dir, name, carried) {
            self.alarm(
                "CHECKPOINT_ALARM",
                AlarmLevel::Critical,
                name,
                format!("cannot persist undelivered data in {}: {e}", dir.display()),
            );
        }
    }

    /// Hands a group to a pipeline fed by the host (`Process*`). Err: no such pipeline, or its
    /// queue stayed full.
    pub fn feed(&self, config_name: &str, mut group: PipelineEventGroup) -> Result<(), String> {
        if let Some(pack_id) = group.metadata(tailrace::proto::meta::PACK_ID) {
            let report = crate::host_link::ReportDelivery {
                host: self.host.clone(),
                config_name: config_name.to_owned(),
                pack_id: pack_id.to_owned(),
            };
            group.acks.push(Arc::new(report));
        }
        let sender = {
            let state = self.state();
            let find = |map: &BTreeMap<String, PipelineInstance>| {
                map.get(config_name).and_then(PipelineInstance::feed)
            };
            find(&state.running).or_else(|| find(&state.loaded))
        };
        let Some(sender) = sender else {
            return Err(format!("config {config_name:?} is not loaded"));
        };
        // Neither blocking_send nor block_on may run on a runtime thread, and a host may call
        // back from one: wait by polling instead.
        let started = std::time::Instant::now();
        let mut group = group;
        loop {
            match sender.try_send(group) {
                Ok(()) => return Ok(()),
                Err(FeedError::Closed(_)) => {
                    return Err(format!("config {config_name:?} is stopping"))
                }
                Err(FeedError::Full(back)) => {
                    if started.elapsed() >= FEED_WAIT {
                        return Err(format!("config {config_name:?}: process queue full"));
                    }
                    group = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    /// `GetGoMetrics(metric_type)`: the statistics of every running pipeline and plugin, in the
    /// layout `metric_type` names (see [`go_metrics`]).
    pub fn metrics(&self, metric_type: &str) -> Vec<go_metrics::Row> {
        match metric_type {
            go_metrics::DIRECT => go_metrics::direct(&self.state().running),
            go_metrics::CPP_PROVIDED => {
                go_metrics::cpp_provided(self.rt.metrics().num_alive_tasks())
            }
            _ => go_metrics::flat(&self.state().running),
        }
    }

    /// Sends pending alarms to the host now; keeps them if it does not take them.
    pub fn report_alarms(&self) {
        send_alarms(&self.alarms, self.host.as_ref());
    }

    /// The built-in alarm and statistics pipelines: periodic reports to the host.
    fn spawn_reporter(&self) {
        let alarms = self.alarms.clone();
        let host = self.host.clone();
        let settings = self.settings.clone();
        let state = self.state.clone();
        self.rt.spawn(async move {
            // Short ticks, so that a changed interval takes effect at once.
            let tick = Duration::from_millis(50);
            let (mut since_alarms, mut since_stats) = (Duration::ZERO, Duration::ZERO);
            loop {
                tokio::time::sleep(tick).await;
                since_alarms += tick;
                since_stats += tick;
                let (alarm_every, stats_every) = {
                    let s = settings.read().unwrap_or_else(|e| e.into_inner());
                    (s.alarm_interval, s.statistics_interval)
                };
                if since_alarms >= alarm_every {
                    since_alarms = Duration::ZERO;
                    send_alarms(&alarms, host.as_ref());
                }
                if since_stats >= stats_every {
                    since_stats = Duration::ZERO;
                    let group = statistics_group(&lock(&state));
                    if let Some(group) = group {
                        send_builtin(host.as_ref(), STATISTICS_CONFIG_NAME, &group);
                    }
                }
            }
        });
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// One log per running pipeline with its counters, then one per plugin of it (with
/// `plugin_type`, `plugin_id` and LoongCollector's plugin counter names).
fn statistics_group(state: &State) -> Option<PipelineEventGroup> {
    if state.running.is_empty() {
        return None;
    }
    let (secs, _) = clock::now();
    let mut group = PipelineEventGroup::with_capacity(state.running.len());
    for (name, instance) in &state.running {
        let labelled = || {
            let mut log = tailrace::LogEvent::new(secs, None);
            log.set_content("config_name", name.clone());
            log.set_content("project", instance.ctx.project.clone());
            log.set_content("logstore", instance.ctx.logstore.clone());
            log
        };
        let mut log = labelled();
        for (k, v) in instance.stats.snapshot() {
            log.set_content(k, v.to_string());
        }
        group.events.push(tailrace::PipelineEvent::Log(log));
        for plugin in instance.stats.plugins() {
            let mut log = labelled();
            log.set_content("plugin_type", plugin.plugin_type.clone());
            log.set_content("plugin_id", plugin.plugin_id.clone());
            for (k, v) in plugin.counters() {
                log.set_content(k, v.to_string());
            }
            for (k, v) in plugin.extra_counters() {
                log.set_content(k, v.to_string());
            }
            group.events.push(tailrace::PipelineEvent::Log(log));
        }
    }
    Some(group)
}

fn send_alarms(alarms: &Alarms, host: &dyn HostLink) {
    let (secs, _) = clock::now();
    if let Some(group) = alarms.take_group(secs) {
        if !send_builtin(host, ALARM_CONFIG_NAME, &group) {
            alarms.restore(group);
        }
    }
}

/// Sends a built-in pipeline's report under its reserved config name (logstore of the same
/// name, iLogtail's); true when the host took it.
fn send_builtin(host: &dyn HostLink, name: &str, group: &PipelineEventGroup) -> bool {
    let mut pb = LogGroup::from_event_group(group).encode_to_bytes();
    host.send_pb(name, name, &mut pb, group.len(), None) == 0
}

#[cfg(test)]
mod tests {
    use super::registry::tests_support::RecordingHost;
    use super::*;
    use std::time::Instant;

    fn base_with(host: Arc<RecordingHost>, data_dir: &std::path::Path) -> PluginBase {
        let settings = Settings {
            data_dir: data_dir.to_owned(),
            alarm_interval: Duration::from_millis(100),
            ..Settings::default()
        };
        PluginBase::new(host, Registry::with(crate::plugins::all()), settings).unwrap()
    }

    fn mock_json(field: &str) -> String {
        format!(
            r#"{{"global":{{"InputIntervalMs":20,"AggregatIntervalMs":20,"FlushIntervalMs":20}},
               "inputs":[{{"type":"metric_mock/1","detail":{{"Fields":{{"f":"{field}"}}}}}}],
               "processors":[{{"type":"processor_add_fields/2","detail":{{"Fields":{{"added":"yes"}}}}}}],
               "flushers":[{{"type":"flusher_sls#100"}}]}}"#
        )
    }

    fn req<'a>(name: &'a str, json: &'a str) -> LoadRequest<'a> {
        LoadRequest {
            project: "proj",
            logstore: "store",
            config_name: name,
            logstore_key: 3,
            json,
        }
    }

    /// What the host received under `config`.
    fn sent_to(host: &RecordingHost, config: &str) -> Vec<LogGroup> {
        host.sent()
            .into_iter()
            .filter(|(name, _, _)| name == config)
            .map(|(_, _, g)| g)
            .collect()
    }

    /// Waits until `pred` holds for what the host received under `config`.
    fn wait_for(host: &RecordingHost, config: &str, pred: impl Fn(&[LogGroup]) -> bool) {
        let start = Instant::now();
        loop {
            let groups = sent_to(host, config);
            if pred(&groups) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {config}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn values(groups: &[LogGroup], key: &str) -> Vec<String> {
        groups
            .iter()
            .flat_map(|g| &g.logs)
            .flat_map(|l| &l.contents)
            .filter(|c| c.key == key.as_bytes())
            .map(|c| String::from_utf8_lossy(&c.value).into_owned())
            .collect()
    }

    #[test]
    fn hold_on_cycle_reloads_and_strips_the_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(RecordingHost::default());
        let base = base_with(host.clone(), dir.path());
        base.load_config(&req("mock/1", &mock_json("a"))).unwrap();
        base.resume();
        wait_for(&host, "mock", |g| values(g, "f").contains(&"a".to_owned()));
        assert!(values(
            &host.sent().iter().map(|s| s.2.clone()).collect::<Vec<_>>(),
            "added"
        )
        .iter()
        .all(|v| v == "yes"));
        assert!(
            base.load_config(&req("mock/1", &mock_json("b"))).is_err(),
            "not held on"
        );

        base.hold_on(false);
        base.load_config(&req("mock/1", &mock_json("b"))).unwrap();
        base.resume();
        let before = host.sent().len();
        wait_for(&host, "mock", |g| {
            g.len() > before && values(&g[before..], "f").contains(&"b".to_owned())
        });
        let after_reload: Vec<LogGroup> =
            host.sent()[before..].iter().map(|s| s.2.clone()).collect();
        assert!(!values(&after_reload, "f").contains(&"a".to_owned()));
        base.hold_on(true);
    }

    /// A raw block fed as `ProcessRawLogV2` feeds it, to a pipeline whose first processor is a
    /// split processor: the base cuts it into the events the host would have cut.
    #[test]
    fn raw_blocks_are_cut_by_a_first_split_processor() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(RecordingHost::default());
        let base = base_with(host.clone(), dir.path());
        let json = r#"{"global":{"AggregatIntervalMs":10},
            "processors":[{"type":"processor_split_log_regex","detail":{"SplitRegex":"\\d{4}-\\d{2}-\\d{2}.*"}}],
            "flushers":[{"type":"flusher_sls"}]}"#;
        base.load_config(&req("raw/2", json)).unwrap();
        base.resume();
        let block = "2024-01-01 a failed\n\tat x.Y(Y.java:1)\n2024-01-01 b\n2024-01-01 c\n\tat z";
        base.feed("raw/2", raw_log::group(block.as_bytes()))
            .unwrap();
        wait_for(&host, "raw", |g| values(g, "content").len() == 3);
        assert_eq!(
            values(
                &host.sent().into_iter().map(|s| s.2).collect::<Vec<_>>(),
                "content"
            ),
            [
                "2024-01-01 a failed\n\tat x.Y(Y.java:1)",
                "2024-01-01 b",
                "2024-01-01 c\n\tat z"
            ]
        );
        base.hold_on(true);
    }

    #[test]
    fn undelivered_data_survives_a_reload_and_an_exit() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(RecordingHost::default());
        let base = base_with(host.clone(), dir.path());
        let fed = r#"{"global":{"AggregatIntervalMs":10},"flushers":[{"type":"flusher_sls"}]}"#;
        base.load_config(&req("fed/2", fed)).unwrap();
        base.resume();
        host.set_code(-1); // the host is full
        let mut group = PipelineEventGroup::default();
        let mut log = tailrace::LogEvent::new(1, None);
        log.set_content("seq", "1");
        group.events.push(tailrace::PipelineEvent::Log(log));
        base.feed("fed/2", group.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(100));

        // A reload while the host is full: the new instance takes the batch over.
        base.hold_on(false);
        base.load_config(&req("fed/2", fed)).unwrap();
        base.resume();
        // Exit while still full: the batch is persisted...
        let started = Instant::now();
        base.hold_on(true);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(host.sent().iter().all(|s| s.0 != "fed"));
        drop(base);

        // ...and replayed after a restart.
        host.set_code(0);
        let base = base_with(host.clone(), dir.path());
        base.load_config(&req("fed/2", fed)).unwrap();
        base.resume();
        wait_for(&host, "fed", |g| values(g, "seq") == vec!["1".to_owned()]);
        base.hold_on(true);
    }

    #[test]
    fn go_metrics_in_loongcollector_layout_count_every_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(RecordingHost::default());
        let base = base_with(host.clone(), dir.path());
        base.load_config(&req("mock/1", &mock_json("a"))).unwrap();
        base.resume();
        wait_for(&host, "mock", |g| values(g, "f").len() >= 3);
        let direct = base.metrics(go_metrics::DIRECT);
        let parse = |row: &go_metrics::Row, key: &str| -> Value {
            let (_, v) = row.iter().find(|(k, _)| k == key).expect(key);
            serde_json::from_str(v).unwrap()
        };
        let plugin_rows: Vec<(Value, Value)> = direct
            .iter()
            .map(|r| (parse(r, "labels"), parse(r, "counters")))
            .filter(|(labels, _)| labels["metric_category"] == "plugin")
            .collect();
        let types: Vec<&str> = plugin_rows
            .iter()
            .map(|(l, _)| l["plugin_type"].as_str().unwrap())
            .collect();
        for expected in [
            "metric_mock",
            "processor_add_fields",
            "aggregator_default",
            "flusher_sls",
        ] {
            assert!(types.contains(&expected), "{types:?}");
        }
        for (labels, counters) in &plugin_rows {
            assert_eq!(labels["pipeline_name"], "mock");
            assert_eq!(labels["project"], "proj");
            let moved = if labels["plugin_type"] == "metric_mock" {
                "plugin_out_events_total"
            } else {
                "plugin_in_events_total"
            };
            assert!(counters[moved].as_u64().unwrap() > 0, "{labels} {counters}");
        }
        let processor = &plugin_rows
            .iter()
            .find(|(l, _)| l["plugin_type"] == "processor_add_fields")
            .unwrap();
        assert_eq!(processor.0["plugin_id"], "processor_add_fields/2");
        assert!(direct
            .iter()
            .any(|r| parse(r, "labels")["metric_category"] == "pipeline"));
        let cpp = base.metrics(go_metrics::CPP_PROVIDED);
        let tasks: usize = cpp[0][0].1.parse().unwrap();
        assert_eq!(cpp[0][0].0, "agent_go_routines_total");
        assert!(tasks > 0);
        base.hold_on(true);
    }

    /// Every aggregator sends what it holds at each aggregation interval, and at HoldOn even
    /// when the interval is far away.
    #[test]
    fn every_aggregator_flushes_on_its_interval_and_on_hold_on() {
        let aggregators = [
            r#"{"type":"aggregator_default","detail":{}}"#,
            r#"{"type":"aggregator_base","detail":{}}"#,
            r#"{"type":"aggregator_context","detail":{}}"#,
            r#"{"type":"aggregator_content_value_group","detail":{"GroupKeys":["seq"]}}"#,
            r#"{"type":"aggregator_metadata_group","detail":{"GroupMetadataKeys":["m"]}}"#,
        ];
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(RecordingHost::default());
        let base = base_with(host.clone(), dir.path());
        let feed_three = |name: &str, tag: &str| {
            for seq in 0..3 {
                let mut group = PipelineEventGroup::default();
                let mut log = tailrace::LogEvent::new(1, None);
                log.set_content("seq", seq.to_string());
                log.set_content("run", tag.to_owned());
                group.events.push(tailrace::PipelineEvent::Log(log));
                base.feed(name, group).unwrap();
            }
        };
        for (i, aggregator) in aggregators.iter().enumerate() {
            let config = |interval_ms: u64| {
                format!(
                    r#"{{"global":{{"AggregatIntervalMs":{interval_ms}}},
                        "aggregators":[{aggregator}],"flushers":[{{"type":"flusher_sls"}}]}}"#
                )
            };
            let name = format!("agg{i}/2");
            let real = format!("agg{i}");
            base.hold_on(false);
            base.load_config(&req(&name, &config(20))).unwrap();
            base.resume();
            feed_three(&name, "interval");
            wait_for(&host, &real, |g| {
                values(g, "run").iter().filter(|r| *r == "interval").count() == 3
            });

            base.hold_on(false);
            base.load_config(&req(&name, &config(3_600_000))).unwrap();
            base.resume();
            feed_three(&name, "holdon");
            std::thread::sleep(Duration::from_millis(100));
            let held = |host: &RecordingHost| {
                values(&sent_to(host, &real), "run")
                    .iter()
                    .filter(|r| *r == "holdon")
                    .count()
            };
            assert_eq!(held(&host), 0, "{aggregator}: sent before its interval");
            base.hold_on(false);
            assert_eq!(held(&host), 3, "{aggregator}: not flushed at HoldOn");
            base.resume();
        }
        base.hold_on(true);
    }

    #[test]
    fn a_flusher_drops_only_after_its_retry_limit_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(RecordingHost::default());
        let base = base_with(host.clone(), dir.path());
        let fed = r#"{"global":{"AggregatIntervalMs":10,"MaxFlushRetryTimes":3},
            "flushers":[{"type":"flusher_sls"}]}"#;
        base.load_config(&req("drop/2", fed)).unwrap();
        base.resume();
        host.set_code(-1);
        let mut group = PipelineEventGroup::default();
        group
            .events
            .push(tailrace::PipelineEvent::Log(tailrace::LogEvent::new(
                1, None,
            )));
        base.feed("drop/2", group).unwrap();
        let dropped = || -> String {
            let rows = base.metrics("");
            let row = rows.iter().find(|r| r[0].1 == "drop/2").unwrap();
            row.iter()
                .find(|(k, _)| k == "groups_dropped")
                .unwrap()
                .1
                .clone()
        };
        let start = Instant::now();
        while dropped() != "1" {
            assert!(start.elapsed() < Duration::from_secs(10), "never dropped");
            std::thread::sleep(Duration::from_millis(10));
        }
        host.set_code(0);
        wait_for(&host, ALARM_CONFIG_NAME, |g| {
            values(g, "alarm_type").contains(&"DISCARD_DATA_ALARM".to_owned())
        });
        assert!(sent_to(&host, "drop").is_empty());

        // Without a limit (the default), the batch waits for the host however long it takes.
        let fed = r#"{"global":{"AggregatIntervalMs":10},"flushers":[{"type":"flusher_sls"}]}"#;
        base.hold_on(false);
        base.load_config(&req("keep/2", fed)).unwrap();
        base.resume();
        host.set_code(-1);
        let mut group = PipelineEventGroup::default();
        let mut log = tailrace::LogEvent::new(1, None);
        log.set_content("kept", "yes");
        group.events.push(tailrace::PipelineEvent::Log(log));
        base.feed("keep/2", group).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        host.set_code(0);
        wait_for(&host, "keep", |g| values(g, "kept") == ["yes"]);
        base.hold_on(true);
    }

    /// Every Index the host received, in arrival order.
    fn indexes(host: &RecordingHost, config: &str) -> Vec<i64> {
        values(&sent_to(host, config), "Index")
            .iter()
            .map(|v| v.parse().unwrap())
            .collect()
    }

    #[test]
    fn metric_mock_continues_its_index_across_reloads_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(RecordingHost::default());
        let json = r#"{"global":{"InputIntervalMs":1,"AggregatIntervalMs":5,
            "InputMaxFirstCollectDelayMs":0},
            "inputs":[{"type":"metric_mock","detail":{}}],"flushers":[{"type":"flusher_sls"}]}"#;
        let base = base_with(host.clone(), dir.path());
        base.load_config(&req("idx/1", json)).unwrap();
        base.resume();
        for _ in 0..10 {
            wait_for(&host, "idx", |g| !g.is_empty());
            base.hold_on(false);
            base.load_config(&req("idx/1", json)).unwrap();
            base.resume();
        }
        base.hold_on(true);
        drop(base);
        let before_restart = indexes(&host, "idx").len();
        let base = base_with(host.clone(), dir.path());
        base.load_config(&req("idx/1", json)).unwrap();
        base.resume();
        wait_for(&host, "idx", |g| {
            values(g, "Index").len() > before_restart + 5
        });
        base.hold_on(true);
        let got = indexes(&host, "idx");
        let expected: Vec<i64> = (1..=got.len() as i64).collect();
        assert_eq!(got, expected, "every Index once, in order");
    }

    #[test]
    fn bad_configs_load_nothing_and_raise_alarms() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(RecordingHost::default());
        let base = base_with(host.clone(), dir.path());
        assert!(base.load_config(&req("x/2", "{not json")).is_err());
        let unknown_flusher = r#"{"flushers":[{"type":"flusher_nope"}]}"#;
        let err = base.load_config(&req("x/2", unknown_flusher)).unwrap_err();
        assert!(err.contains("flusher_nope"), "{err}");
        let bad_option =
            r#"{"processors":[{"type":"processor_add_fields","detail":{"Fields":3}}]}"#;
        let err = base.load_config(&req("x/2", bad_option)).unwrap_err();
        assert!(err.contains("Fields"), "{err}");
        // An unknown processor is skipped with an alarm; the pipeline loads.
        let unknown_processor = r#"{"processors":[{"type":"processor_nope"}]}"#;
        base.load_config(&req("y/2", unknown_processor)).unwrap();
        base.resume();
        wait_for(&host, ALARM_CONFIG_NAME, |g| {
            values(g, "alarm_message")
                .iter()
                .any(|m| m.contains("processor_nope"))
        });
        assert!(base.feed("x/2", PipelineEventGroup::default()).is_err());
        base.hold_on(true);
    }
}
