//! The services every plugin gets from whichever side runs it — the host or the plugin base —
//! through one API ([`Services`]): a checkpoint store of its own and alarms. Statistics are the
//! third service, kept by each side's runner around every call, so a plugin cannot forget them.
//!
//! A processor of the core is the same code on both sides (DESIGN §5); it is handed its
//! services once, by [`crate::plugin::Processor::init`], and uses them the same way wherever it
//! runs.

pub mod checkpoint;
pub mod failure_alarm;

pub use checkpoint::{CheckpointStore, Checkpoints};
pub use failure_alarm::FailureAlarm;

/// What a plugin may ask of the side that runs it.
pub trait Services: Send + Sync {
    /// The pipeline's name (a reload's `/1` `/2` suffix stripped).
    fn pipeline(&self) -> &str;
    /// The plugin's id in its pipeline (`processor_parse_regex_native/2`).
    fn plugin_id(&self) -> &str;
    /// Raises an alarm of `kind` (iLogtail's `alarm_type`, e.g. `REGEX_MATCH_ALARM`): logged,
    /// counted on the host's /metrics by kind, and from the base sent to the host's alarm
    /// pipeline.
    fn alarm(&self, kind: &str, message: &str);
    /// The plugin's own checkpoints, namespaced by pipeline and plugin id, kept under the data
    /// dir: the same files whichever side saves them.
    fn checkpoints(&self) -> &Checkpoints;
}

/// The plugin id both sides give the plugin of `plugin_type` at `position` (0-based) in its
/// section: its `type` when it carries iLogtail's `/id` suffix (`processor_regex/3`), else the
/// type and its position (`metric_mock/1`). Checkpoints are saved under it, so it must not
/// change when the same config is reloaded.
pub fn plugin_id(plugin_type: &str, position: usize) -> String {
    let without_priority = plugin_type.split('#').next().unwrap_or_default();
    if without_priority.contains('/') {
        without_priority.to_owned()
    } else {
        format!("{without_priority}/{}", position + 1)
    }
}

/// Services for unit tests: alarms recorded in memory, checkpoints under a temporary dir.
#[cfg(test)]
pub mod test_support {
    use super::*;
    use std::sync::{Arc, Mutex};

    pub struct Recorded {
        pub alarms: Mutex<Vec<(String, String)>>,
        checkpoints: Checkpoints,
        _dir: tempfile::TempDir,
    }

    impl Recorded {
        pub fn new() -> Arc<Recorded> {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(CheckpointStore::under(dir.path()));
            Arc::new(Recorded {
                alarms: Mutex::new(Vec::new()),
                checkpoints: Checkpoints::new(store, "p", "plugin/1"),
                _dir: dir,
            })
        }

        pub fn alarms(&self) -> Vec<(String, String)> {
            self.alarms.lock().unwrap().clone()
        }
    }

    impl Services for Recorded {
        fn pipeline(&self) -> &str {
            "p"
        }
        fn plugin_id(&self) -> &str {
            "plugin/1"
        }
        fn alarm(&self, kind: &str, message: &str) {
            self.alarms
                .lock()
                .unwrap()
                .push((kind.to_owned(), message.to_owned()));
        }
        fn checkpoints(&self) -> &Checkpoints {
            &self.checkpoints
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_ids_follow_ilogtail_suffixes() {
        assert_eq!(plugin_id("processor_regex/3", 0), "processor_regex/3");
        assert_eq!(plugin_id("metric_mock", 0), "metric_mock/1");
        assert_eq!(plugin_id("metric_mock#2", 1), "metric_mock/2");
    }
}
