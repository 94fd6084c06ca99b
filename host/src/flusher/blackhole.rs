//! `flusher_blackhole`: discards what it gets, after serializing it to a LogGroup as a real
//! flusher would, so that benchmarks measure the whole path.

use tailrace::plugin::Flusher;
use tailrace::{LogGroup, PipelineEventGroup};

use crate::config::PluginConfig;

pub fn build(_plugin: &PluginConfig) -> Result<Box<dyn Flusher>, (String, String)> {
    Ok(Box::new(Blackhole { bytes: 0 }))
}

struct Blackhole {
    bytes: u64,
}

impl Flusher for Blackhole {
    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        for group in groups.drain(..) {
            let pb = LogGroup::from_event_group(&group).encode_to_bytes();
            self.bytes += pb.len() as u64;
        }
        Ok(())
    }
}
