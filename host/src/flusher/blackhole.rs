//! `flusher_blackhole`: discards what it gets, after serializing it to a LogGroup as a real
//! flusher would (in the processor thread, as for every flusher that sends LogGroups), so
//! that benchmarks measure the whole path.

use tailrace::plugin::Flusher;
use tailrace::proto::log_group_bytes;
use tailrace::PipelineEventGroup;

use crate::config::PluginConfig;

pub fn build(_plugin: &PluginConfig) -> Result<Box<dyn Flusher>, (String, String)> {
    Ok(Box::new(Blackhole {
        bytes: 0,
        buf: Vec::new(),
    }))
}

struct Blackhole {
    bytes: u64,
    buf: Vec<u8>,
}

impl Flusher for Blackhole {
    fn flush(&mut self, groups: &mut Vec<PipelineEventGroup>) -> Result<(), String> {
        for group in groups.drain(..) {
            self.bytes += log_group_bytes(&group, &mut self.buf).len() as u64;
        }
        Ok(())
    }

    /// It measures the serialized size only.
    fn takes_encoded(&self) -> bool {
        true
    }
}
