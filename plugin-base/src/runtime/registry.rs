//! The plugin registry: maps a config `type` (suffixes stripped) to the constructor of its
//! plugin, whatever its kind. Each plugin file exports one `PLUGIN` entry; `plugins::all` lists
//! them, so adding a plugin touches its own file plus one line.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tailrace::plugin::{Aggregator, Flusher, MetricInput, Processor};
use tailrace::plugin_config::GlobalConfig;
use tokio::sync::watch;

use crate::context::alarm::AlarmScope;
use crate::context::statistics::PluginStats;
use crate::context::{AlarmLevel, Alarms, CheckpointStore, Checkpoints};
use crate::host_link::HostLink;
use crate::runtime::feed::Feed;

/// What a plugin may know about the pipeline it belongs to, and the services it may use:
/// alarms, and a checkpoint store of its own (statistics are kept by the runtime around each
/// call, so a plugin cannot forget them).
#[derive(Clone)]
pub struct PluginContext {
    /// The name the pipeline was loaded under (`P/1`, `P/2` or `P`).
    pub config_name: String,
    /// The pipeline's name, suffix stripped: what data goes back to the host under.
    pub real_name: String,
    pub project: String,
    pub logstore: String,
    pub logstore_key: i64,
    pub global: GlobalConfig,
    pub host: Arc<dyn HostLink>,
    pub alarms: Arc<Alarms>,
    /// The plugin's id in its pipeline (`metric_mock/1`); empty in the pipeline's own context.
    pub plugin_id: String,
    /// The plugin's statistics, for the counters a plugin keeps itself
    /// ([`PluginStats::add_counter`]); the pipeline's own context has a detached one.
    pub plugin_stats: Arc<PluginStats>,
    pub checkpoint_store: Arc<CheckpointStore>,
}

impl PluginContext {
    pub fn alarm_scope(&self) -> AlarmScope {
        AlarmScope {
            project: self.project.clone(),
            logstore: self.logstore.clone(),
            config: self.real_name.clone(),
        }
    }

    /// The same context, for the plugin `plugin_id` of the pipeline.
    pub fn for_plugin(&self, plugin_id: &str) -> PluginContext {
        PluginContext {
            plugin_id: plugin_id.to_owned(),
            ..self.clone()
        }
    }

    /// The plugin's checkpoints: namespaced by the pipeline's real name (what survives a
    /// reload, whatever the suffix) and the plugin's id.
    pub fn checkpoints(&self) -> Checkpoints {
        Checkpoints::new(
            self.checkpoint_store.clone(),
            &self.real_name,
            &self.plugin_id,
        )
    }

    /// Raises an alarm about this pipeline.
    pub fn alarm(&self, alarm_type: &str, level: AlarmLevel, message: impl Into<String>) {
        self.alarms
            .record(alarm_type, level, &self.alarm_scope(), message);
    }
}

/// A plugin's services as the core's processors ask for them (`tailrace::context::Services`,
/// the API the host gives them too): alarms go to the pipeline's alarms, checkpoints to its
/// store.
pub struct BaseServices {
    ctx: PluginContext,
    checkpoints: Checkpoints,
}

impl BaseServices {
    pub fn of(ctx: &PluginContext) -> BaseServices {
        BaseServices {
            checkpoints: ctx.checkpoints(),
            ctx: ctx.clone(),
        }
    }
}

impl tailrace::context::Services for BaseServices {
    fn pipeline(&self) -> &str {
        &self.ctx.real_name
    }

    fn plugin_id(&self) -> &str {
        &self.ctx.plugin_id
    }

    fn alarm(&self, kind: &str, message: &str) {
        self.ctx.alarm(kind, AlarmLevel::Warning, message);
    }

    fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }
}

/// A push input that runs until told to stop (iLogtail's ServiceInput: syslog, HTTP, ...).
pub trait ServiceInput: Send {
    /// Runs until `stop` turns true, sending what it receives to `out`.
    fn run(
        self: Box<Self>,
        out: Feed,
        stop: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Builds a plugin from its context and its `detail` options.
pub type Build<T> = fn(&PluginContext, &Value) -> Result<T, String>;

/// A constructor, by kind of plugin.
#[derive(Clone, Copy)]
pub enum PluginFactory {
    MetricInput(Build<Box<dyn MetricInput>>),
    ServiceInput(Build<Box<dyn ServiceInput>>),
    Processor(Build<Box<dyn Processor>>),
    /// A processor of the core, the same code the host runs (DESIGN §5).
    CoreProcessor(tailrace::processor::Constructor),
    Aggregator(Build<Box<dyn Aggregator>>),
    Flusher(Build<Box<dyn Flusher>>),
}

/// Every plugin the base knows, by registry name.
#[derive(Default)]
pub struct Registry {
    plugins: HashMap<&'static str, PluginFactory>,
}

impl Registry {
    pub fn with(entries: impl IntoIterator<Item = (&'static str, PluginFactory)>) -> Self {
        Registry {
            plugins: entries.into_iter().collect(),
        }
    }

    pub fn get(&self, kind: &str) -> Option<PluginFactory> {
        self.plugins.get(kind).copied()
    }
}

/// Parses a plugin's `detail` into its config struct; the error names the field and the value's
/// problem (`Fields.a: invalid type: integer 1, expected a string`).
pub fn parse_detail<T: DeserializeOwned>(detail: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(detail).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "PascalCase")]
    #[allow(dead_code)]
    struct Opts {
        fields: BTreeMap<String, String>,
    }

    #[test]
    fn detail_errors_name_the_field() {
        let err = parse_detail::<Opts>(&serde_json::json!({"Fields": {"a": 1}})).unwrap_err();
        assert!(
            err.starts_with("Fields.a: invalid type: integer `1`"),
            "{err}"
        );
    }
}

/// Contexts and a recording host for the plugins' unit tests.
#[cfg(test)]
pub mod tests_support {
    use super::*;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Mutex;
    use tailrace::LogGroup;

    /// A host that records what it is sent and answers with a settable code.
    #[derive(Default)]
    pub struct RecordingHost {
        sent: Mutex<Vec<(String, String, LogGroup)>>,
        code: AtomicI32,
    }

    impl RecordingHost {
        pub fn sent(&self) -> Vec<(String, String, LogGroup)> {
            self.sent.lock().unwrap().clone()
        }
        /// What send_pb returns from now on (0: accepted); non-zero also makes the host "full".
        pub fn set_code(&self, code: i32) {
            self.code.store(code, Ordering::SeqCst);
        }
    }

    impl HostLink for RecordingHost {
        fn ctl_cmd(&self, _name: &str, _cmd: i32, _params: &str) -> i32 {
            -2
        }
        fn is_valid_to_send(&self, _key: i64) -> bool {
            self.code.load(Ordering::SeqCst) == 0
        }
        fn send_pb(
            &self,
            name: &str,
            store: &str,
            pb: &mut [u8],
            _lines: usize,
            _hash: Option<&str>,
        ) -> i32 {
            let code = self.code.load(Ordering::SeqCst);
            if code == 0 {
                let group = LogGroup::decode_bytes(pb).expect("valid LogGroup");
                self.sent
                    .lock()
                    .unwrap()
                    .push((name.to_owned(), store.to_owned(), group));
            }
            code
        }
    }

    pub fn context_with(name: &str, host: Arc<dyn HostLink>) -> PluginContext {
        PluginContext {
            config_name: name.to_owned(),
            real_name: tailrace::plugin_config::real_config_name(name).to_owned(),
            project: "proj".to_owned(),
            logstore: "store".to_owned(),
            logstore_key: 1,
            global: GlobalConfig::default(),
            host,
            alarms: Arc::new(Alarms::default()),
            plugin_id: String::new(),
            plugin_stats: Arc::default(),
            checkpoint_store: Arc::new(CheckpointStore::under(&fresh_dir())),
        }
    }

    /// A directory no other test uses (under the system's temp dir).
    pub fn fresh_dir() -> std::path::PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("tailrace-plugin-test-{}-{n}", std::process::id()))
    }

    pub fn context(name: &str) -> PluginContext {
        context_with(name, Arc::new(RecordingHost::default()))
    }
}
