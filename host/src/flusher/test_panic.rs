//! `flusher_test_panic` (feature `test-faults`, tests only): `flusher_file` that panics on the
//! flush after every `FlushesBeforePanic` good ones and then refuses everything, like a flusher
//! whose state a panic broke. Only a new instance delivers again, so a test through it tells a
//! restarted flusher from one retried in place. Never in a release build of the daemon.

use serde::Deserialize;
use tailrace::plugin::Flusher;
use tailrace::PipelineEventGroup;

use crate::config::PluginConfig;
use crate::flusher::parse_options;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TestPanicConfig {
    /// Good flushes of each instance before it panics.
    flushes_before_panic: u64,
}

struct TestPanic {
    inner: Box<dyn Flusher>,
    left: u64,
    broken: bool,
}

pub fn build(plugin: &PluginConfig) -> Result<Box<dyn Flusher>, (String, String)> {
    let mut file_options = plugin.clone();
    let config: TestPanicConfig = parse_options(plugin)?;
    file_options.options.remove("FlushesBeforePanic");
    Ok(Box::new(TestPanic {
        inner: crate::flusher::file::build(&file_options)?,
        left: config.flushes_before_panic,
        broken: false,
    }))
}

impl Flusher for TestPanic {
    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        if self.broken {
            return Err("broken by its panic".to_owned());
        }
        if self.left == 0 {
            self.broken = true;
            panic!("flusher_test_panic: the injected panic");
        }
        self.left -= 1;
        self.inner.flush(groups)
    }

    fn stop(&mut self) {
        self.inner.stop();
    }
}
