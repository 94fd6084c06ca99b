//! `flusher_blackhole`: discards what it gets, after serializing it to a LogGroup as a real
//! flusher would, so that benchmarks measure the whole path.

use tailrace::plugin::Flusher;
use tailrace::proto::encode_group;
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
            self.buf.clear();
            encode_group(&group, &mut self.buf);
            self.bytes += self.buf.len() as u64;
        }
        Ok(())
    }
}
