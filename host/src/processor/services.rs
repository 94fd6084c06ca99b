//! The host's side of the plugin services ([`tailrace::context::Services`]), the same API the
//! plugin base gives: a processor the host runs raises alarms (logged, and counted on /metrics
//! by kind with the base's) and keeps checkpoints in the store the base uses, under the data
//! dir.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use tailrace::context::{plugin_id, CheckpointStore, Checkpoints, Services};

/// The checkpoint store, under the daemon's data dir (set at start).
static STORE: OnceLock<Arc<CheckpointStore>> = OnceLock::new();

/// Where plugins' checkpoints are kept: under `data_dir`, as the plugin base keeps them.
pub fn set_data_dir(data_dir: &Path) {
    let _ = STORE.set(Arc::new(CheckpointStore::under(data_dir)));
}

fn store() -> Arc<CheckpointStore> {
    STORE
        .get_or_init(|| Arc::new(CheckpointStore::under(Path::new("./data"))))
        .clone()
}

/// The services of the processor of `plugin_type` at `position` in pipeline `pipeline`.
pub fn for_processor(pipeline: &str, plugin_type: &str, position: usize) -> Arc<dyn Services> {
    let plugin_id = plugin_id(plugin_type, position);
    Arc::new(HostServices {
        checkpoints: Checkpoints::new(store(), pipeline, &plugin_id),
        pipeline: pipeline.to_owned(),
        plugin_id,
    })
}

struct HostServices {
    pipeline: String,
    plugin_id: String,
    checkpoints: Checkpoints,
}

impl Services for HostServices {
    fn pipeline(&self) -> &str {
        &self.pipeline
    }

    fn plugin_id(&self) -> &str {
        &self.plugin_id
    }

    fn alarm(&self, kind: &str, message: &str) {
        tracing::warn!(
            pipeline = self.pipeline,
            plugin = self.plugin_id,
            alarm_type = kind,
            "{message}"
        );
        crate::monitor::alarms::count(kind, 1);
    }

    fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_kept_per_pipeline_and_plugin_under_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::under(dir.path()));
        let services = HostServices {
            pipeline: "web".into(),
            plugin_id: "processor_x/1".into(),
            checkpoints: Checkpoints::new(store.clone(), "web", "processor_x/1"),
        };
        services.checkpoints().save_typed("cursor", &42u64).unwrap();
        // What the base would read for the same pipeline and plugin.
        let same = Checkpoints::new(store, "web", "processor_x/1");
        assert_eq!(same.get_typed::<u64>("cursor").unwrap(), Some(42));
        services.alarm("TEST_SERVICES_ALARM", "raised by a test");
        assert!(crate::monitor::alarms::counts()
            .iter()
            .any(|(kind, n)| kind == "TEST_SERVICES_ALARM" && *n == 1));
    }
}
